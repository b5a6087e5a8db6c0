//! Attribute macros for `dbos-core` and `dbos-testkit`.
//!
//! Use them through their re-exports (`dbos_core::workflow`, `dbos_core::step`,
//! `dbos_core::transaction`,
//! `dbos_testkit::test`), which carry the user-facing documentation. Each macro is a thin entry
//! point: parse → validate → expand live in their own modules and work on `proc_macro2` types,
//! and every error is reported together with the user's original item (or a stub with the same
//! signature) so one mistake gives one error.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod attr;
mod determinism;
mod error;
mod func;
mod recorded;
mod signature;
mod source_hash;
mod step;
mod test_attr;
mod transaction;
mod workflow;

use proc_macro::TokenStream;

/// `#[workflow]`: turns an `async fn` into a durable workflow.
///
/// ```ignore
/// #[workflow(name = "checkout", max_recovery_attempts = 10)]
/// pub async fn checkout(order: Order) -> Result<Receipt, ShopError> {
///     let payment = charge(order.id.clone(), order.cents).await?;
///     Ok(Receipt { payment })
/// }
///
/// let receipt = checkout(order).id("order-42").await?;
/// ```
///
/// The function becomes a plain `fn` with the same arguments that returns
/// `dbos_core::WorkflowCall<T, E>`: awaiting it runs the workflow (or starts a child workflow
/// when called from inside one), `.start()` runs it in the background, `.id(..)` fixes its id.
///
/// # Options
///
/// - `name = ".."`: the durable name, recorded in the system database and used by recovery to
///   find this function. Defaults to the function's name, so renaming the function without
///   pinning `name` orphans workflows that are in flight.
/// - `max_recovery_attempts = N` (at least 1, default 100): how many times recovery may
///   start the workflow again before it is marked as having exceeded its recovery attempts.
/// - `required_roles = ["admin", ..]` (not empty): a start must be authenticated with one of
///   these roles (DBOS's `@DBOS.required_roles`); otherwise it is refused, nothing written.
///
/// # Rules
///
/// The function must be an `async fn` without `self` or generic parameters, each argument a
/// plain name (`order: Order`), returning `Result<T, E>`. It may be an associated function
/// of an `impl` block, but its signature and body must name the type instead of `Self`. Arguments and `T` must be
/// `Serialize + DeserializeOwned` (they are recorded as JSON), `E` must implement
/// `dbos_core::WorkflowError`, and the body's future must be `Send` (a workflow may resume on
/// any thread). Each rule is checked at compile time, with the error at the offending code.
///
/// # Determinism
///
/// After a crash the body runs again from the top, every completed step returning its recorded
/// result; so the body itself must take the same path every time. The macro rejects, in the
/// body, `tokio::spawn` / `std::thread::spawn` (and `spawn_blocking`, `spawn_local`),
/// `select!`, `Instant::now`, `SystemTime::now`, `Utc::now` / `Local::now`, `rand::random`,
/// `rand::thread_rng` / `rand::rng`, `OsRng`, `from_entropy` and `Uuid::new_v4`, matched by the
/// end of the path as written. Use steps, child workflows, `dbos_core::now()`,
/// `dbos_core::sleep()`, `dbos_core::random()` and `dbos_core::uuid()` instead. A name imported
/// so that too little of the path is left (`use tokio::spawn;` then `spawn(..)`) is not
/// recognized. Put `#[nondeterministic]` on a statement to exempt it, e.g. a log line with the
/// time; the macro removes that attribute.
///
/// # Equivalent code without `#[workflow]`
///
/// Roughly (the real expansion keeps every bounded use of the recorded types in the one
/// static's initializer, so a type that is not storable is reported once):
///
/// ```ignore
/// pub fn checkout(order: Order) -> dbos_core::WorkflowCall<Receipt, ShopError> {
///     use dbos_core::__private::*;
///     static DEF: WorkflowDef = WorkflowDef {
///         name: "checkout", file: file!(), line: line!(), source_hash: "…",
///         max_recovery_attempts: 100,
///         required_roles: &[],
///         invoke: |args| workflow_future_must_be_send(async move {
///             let order: Order = args.decode(0, "order")?;
///             let result: Result<Receipt, ShopError> = async move { /* body */ }.await;
///             erase_outcome(result)
///         }),
///     };
///     inventory::submit! { WorkflowRegistration(&DEF) }
///     workflow_call(&DEF, vec![encode_arg(&order)])
/// }
/// ```
#[proc_macro_attribute]
pub fn workflow(args: TokenStream, item: TokenStream) -> TokenStream {
    error::funnel(workflow::expand(args.into(), item.clone().into()), item)
}

/// `#[step]`: records an `async fn`'s result when it runs inside a workflow, and retries it.
///
/// ```ignore
/// #[step(max_attempts = 5, interval = "500ms", backoff = 2.0, retry_if = is_transient)]
/// async fn charge(order_id: String, cents: i64) -> Result<Payment, ShopError> {
///     payments::charge(&order_id, cents).await
/// }
/// ```
///
/// Inside a workflow, the first run records the result (its output, or its error after the
/// last attempt); a replay after a crash returns the recorded result without running the step
/// again. Outside a workflow the step is a plain call, with the same retries. The signature is
/// unchanged; the macro only wraps the body.
///
/// # Options
///
/// - `name = ".."`: the name recorded for the step (default: the function's name).
/// - `max_attempts = N` (at least 1, default 1): attempts in total, the first one included.
/// - `interval = ".."` (default `"1s"`): the wait before the second attempt, a number
///   followed by `ms`, `s`, `m` or `h` (`"500ms"`, `"1.5s"`).
/// - `backoff = x` (at least 1.0, default 2.0): the wait is multiplied by it after every
///   attempt.
/// - `max_interval = ".."` (default `"1h"`): the longest wait.
/// - `retry_if = path::to::function`: a `fn(&E) -> bool`; an error for which it returns
///   `false` is not retried.
///
/// The retry options other than `max_attempts` are rejected when the step runs once (they
/// would have no effect), and so is a `max_interval` shorter than `interval`.
///
/// # Rules
///
/// The function must be an `async fn` returning `Result<T, E>`, with `T` storable
/// (`Serialize + DeserializeOwned`) and `E` a `dbos_core::WorkflowError`. Methods and generic
/// functions are allowed, in `impl` blocks (trait implementations included). With retries,
/// each attempt runs the body on clones of the arguments, so they must be `Clone`, and a
/// receiver must be `&self`.
///
/// # Equivalent code without `#[step]`
///
/// The body runs through `dbos_core::run_step` (the macro also registers the step's source
/// hash, which feeds the application version):
///
/// ```ignore
/// async fn charge(order_id: String, cents: i64) -> Result<Payment, ShopError> {
///     dbos_core::run_step("charge", StepOptions::DEFAULT, || async {
///         /* body */
///     })
///     .await
/// }
/// ```
#[proc_macro_attribute]
pub fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    error::funnel(step::expand(args.into(), item.clone().into()), item)
}

/// `#[transaction]`: runs an `async fn`'s SQL in a database transaction that also commits
/// the operation's record, so inside a workflow it happens exactly once.
///
/// ```ignore
/// #[transaction(isolation = "serializable", datasource = "app")]
/// async fn reserve(tx: &Transaction<'_>, sku: String, qty: i32) -> Result<i32, ShopError> {
///     let row = tx.query_one("UPDATE shop.inventory SET stock = stock - $2 WHERE sku = $1 AND stock >= $2 RETURNING stock", &[&sku, &qty]).await?;
///     Ok(row.get(0))
/// }
///
/// let left = reserve(order.sku.clone(), 1).await?; // called without the transaction
/// ```
///
/// The first argument (after `&self`, if any) is the open transaction,
/// `tx: &dbos_core::Transaction<'_>`; callers call the function without it. The body runs in
/// a transaction begun at the given isolation level; `Ok` commits it together with the
/// operation's record, `Err` rolls it back (and the error is recorded). Serialization
/// failures and deadlocks run the body again, so every other argument must be `Clone`.
///
/// # Options
///
/// - `name = ".."`: the name recorded for the operation (default: the function's name).
/// - `isolation = ".."`: `"serializable"` (the default, as in DBOS), `"repeatable_read"` or
///   `"read_committed"`.
/// - `datasource = ".."`: run in the named application data source
///   (`Config::data_source(name, url)`) instead of the system database.
/// - `max_attempts`, `interval`, `backoff`, `max_interval`, `retry_if`: the retry policy for
///   the function's own errors, as for `#[step]`.
///
/// The user-facing documentation, with the equivalent code without the macro, is on
/// `dbos_core::transaction`.
#[proc_macro_attribute]
pub fn transaction(args: TokenStream, item: TokenStream) -> TokenStream {
    error::funnel(transaction::expand(args.into(), item.clone().into()), item)
}

/// `#[dbos_testkit::test]`: see `dbos_testkit::test`.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    error::funnel(test_attr::expand(args.into(), item.clone().into()), item)
}
