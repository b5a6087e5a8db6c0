//! The rules a `#[transaction]` function must follow. Every problem is reported together,
//! each spanned and saying why.

use syn::spanned::Spanned;
use syn::{FnArg, PatType, Receiver, Type};

use super::parse::{Isolation, TransactionFn};
use crate::error::Errors;
use crate::func::Param;
use crate::recorded::{self, Role};
use crate::signature;
use crate::step::validate::{retry_policy, Policy};

/// A transaction that follows every rule: the pieces the expansion needs.
#[derive(Debug)]
pub(crate) struct ValidTransaction<'a> {
    /// The parsed function.
    pub(crate) tx: &'a TransactionFn,
    /// `T` of `Result<T, E>`.
    pub(crate) ok: &'a Type,
    /// `E` of `Result<T, E>`.
    pub(crate) err: &'a Type,
    /// The transaction parameter (`tx: &Transaction<'_>`).
    pub(crate) tx_param: &'a PatType,
    /// Its index in the signature's inputs.
    pub(crate) tx_index: usize,
    /// The name recorded for the transaction.
    pub(crate) name: String,
    /// The isolation level.
    pub(crate) isolation: Isolation,
    /// The data source, if not the system database.
    pub(crate) datasource: Option<String>,
    /// The retry policy for the function's own errors.
    pub(crate) policy: Policy,
}

/// What the transaction parameter is written as.
const TX_EXAMPLE: &str = "`tx: &Transaction<'_>` (`dbos_core::Transaction`)";

/// The referenced type's last path segment is `Transaction`: `&Transaction<'_>`,
/// `&dbos_core::Transaction<'_>`, `&tokio_postgres::Transaction<'_>`, `&mut ...`.
fn transaction_reference(ty: &Type) -> Option<&syn::TypeReference> {
    let Type::Reference(r) = ty else { return None };
    let Type::Path(p) = &*r.elem else { return None };
    let last = p.path.segments.last()?;
    (last.ident == "Transaction").then_some(r)
}

/// Whether a parameter type is a reference to a `Transaction`.
pub(crate) fn is_transaction_type(ty: &Type) -> bool {
    transaction_reference(ty).is_some()
}

/// Checks the signature and the options. Returns the validated pieces when this pass found no
/// problem.
pub(crate) fn validate<'a>(
    tx: &'a TransactionFn,
    all_errors: &mut Errors,
) -> Option<ValidTransaction<'a>> {
    let mut errors = Errors::default();
    let sig = &tx.func.sig;
    let o = &tx.options;
    let policy = retry_policy(
        &o.retries,
        "the transaction's own errors are not retried",
        &mut errors,
    );

    if sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            "#[transaction] functions must be `async fn`: the transaction's statements, its \
             record and its commit are awaited before the workflow goes on",
        ));
    }

    let result = signature::result_types(&sig.output);
    match result {
        Some((ok, err)) => {
            for (ty, role) in [(ok, Role::Output), (err, Role::Error)] {
                recorded::check(ty, role, "#[transaction]", &mut errors);
                if let Some(span) = signature::impl_trait_in(ty) {
                    errors.push(syn::Error::new(
                        span,
                        "a #[transaction] output or error cannot be `impl Trait`: it is recorded, \
                         and decoded into a concrete type when a recovered workflow replays the \
                         transaction",
                    ));
                }
            }
        }
        None => errors.push(signature::not_result_error(
            sig,
            "#[transaction] functions",
            "the output `T` is recorded in the same database transaction as the statements, so \
             a workflow replayed after a crash gets the same value without running them again",
        )),
    }

    // The transaction parameter: first, after an optional `&self`.
    let first_typed = tx
        .params
        .iter()
        .position(|p| !matches!(p, Param::Receiver(_)));
    let mut found: Option<(usize, &PatType)> = None;
    for (index, input) in sig.inputs.iter().enumerate() {
        let FnArg::Typed(pt) = input else { continue };
        let Some(reference) = transaction_reference(&pt.ty) else {
            continue;
        };
        if Some(index) != first_typed {
            errors.push(syn::Error::new_spanned(
                pt,
                format!(
                    "the transaction must be the first argument of a #[transaction] function{}: \
                     the library begins it and passes it in, and callers call the function with \
                     the remaining arguments only",
                    if first_typed == Some(0) {
                        ""
                    } else {
                        " (after `&self`)"
                    }
                ),
            ));
            continue;
        }
        if let Some(m) = reference.mutability {
            errors.push(syn::Error::new_spanned(
                m,
                format!(
                    "take the transaction by shared reference, {TX_EXAMPLE}: the library commits \
                     or rolls it back after the body returns (`Ok` commits, `Err` rolls back), \
                     so the body cannot end it itself"
                ),
            ));
            continue;
        }
        found = Some((index, pt));
    }
    let missing_message = format!(
        "a #[transaction] function takes the open transaction as its first argument, \
         {TX_EXAMPLE}: the library begins the transaction, runs the body in it and commits it \
         together with the operation's record; callers call the function without it"
    );
    let any_transaction = sig
        .inputs
        .iter()
        .any(|i| matches!(i, FnArg::Typed(pt) if transaction_reference(&pt.ty).is_some()));
    if !any_transaction {
        let span = match first_typed.and_then(|i| sig.inputs.iter().nth(i)) {
            Some(first) => first.span(),
            None => sig.paren_token.span.join(),
        };
        errors.push(syn::Error::new(span, missing_message));
    }

    for param in &tx.params {
        if let Param::Receiver(receiver) = param {
            if !is_shared_reference(receiver) {
                errors.push(syn::Error::new_spanned(
                    receiver,
                    "a #[transaction] can take `self` only as `&self`: its body may run more than \
                     once (the database can ask for a serialization failure to be retried), and \
                     each run needs its own access to `self`",
                ));
            }
        }
    }

    let name = match &o.name {
        Some(lit) if lit.value().trim().is_empty() => {
            errors.push(syn::Error::new_spanned(
                lit,
                "the transaction name cannot be empty: it is recorded with the transaction's \
                 result, and shown by DBOS's tools",
            ));
            String::new()
        }
        Some(lit) => lit.value(),
        None => {
            use syn::ext::IdentExt;
            sig.ident.unraw().to_string()
        }
    };
    let datasource = match &o.datasource {
        Some(lit) if lit.value().trim().is_empty() => {
            errors.push(syn::Error::new_spanned(
                lit,
                "the data source name cannot be empty: name a data source configured with \
                 `Config::data_source(name, url)`, or leave `datasource` out to run in the \
                 system database",
            ));
            None
        }
        Some(lit) => Some(lit.value()),
        None => None,
    };

    let found_none = errors.is_empty();
    all_errors.append(errors);
    if !found_none {
        return None;
    }
    let (ok, err) = result?;
    let (tx_index, tx_param) = found?;
    Some(ValidTransaction {
        tx,
        ok,
        err,
        tx_param,
        tx_index,
        name,
        isolation: o
            .isolation
            .map_or(Isolation::Serializable, |(level, _)| level),
        datasource,
        policy,
    })
}

/// `&self` or `self: &Self` (any shared reference).
fn is_shared_reference(receiver: &Receiver) -> bool {
    matches!(&*receiver.ty, Type::Reference(r) if r.mutability.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::parse;
    use proc_macro2::TokenStream;
    use quote::quote;

    fn check(args: TokenStream, item: TokenStream) -> Result<(String, usize), Vec<String>> {
        let mut errors = Errors::default();
        let options = parse::options(args, &mut errors);
        let tx = parse::function(item, options).unwrap();
        let valid = validate(&tx, &mut errors);
        match errors.finish() {
            Ok(()) => {
                let v = valid.unwrap();
                Ok((v.name, v.tx_index))
            }
            Err(e) => Err(e.into_iter().map(|e| e.to_string()).collect()),
        }
    }

    #[test]
    fn the_transaction_comes_first() {
        let ok = check(
            quote!(),
            quote!(
                async fn reserve(tx: &Transaction<'_>, sku: String) -> Result<i32, E> {
                    Ok(1)
                }
            ),
        );
        assert_eq!(ok, Ok(("reserve".to_owned(), 0)));
        let ok = check(
            quote!(name = "r"),
            quote!(
                async fn reserve(&self, tx: &dbos_core::Transaction<'_>) -> Result<i32, E> {
                    Ok(1)
                }
            ),
        );
        assert_eq!(ok, Ok(("r".to_owned(), 1)));
        let e = check(
            quote!(),
            quote!(
                async fn reserve(sku: String, tx: &Transaction<'_>) -> Result<i32, E> {
                    Ok(1)
                }
            ),
        )
        .unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("must be the first argument"), "{e:?}");
        let e = check(
            quote!(),
            quote!(
                async fn reserve(sku: String) -> Result<i32, E> {
                    Ok(1)
                }
            ),
        )
        .unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("takes the open transaction as its first argument"),
            "{e:?}"
        );
        let e = check(
            quote!(),
            quote!(
                async fn reserve(tx: &mut Transaction<'_>) -> Result<i32, E> {
                    Ok(1)
                }
            ),
        )
        .unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("by shared reference"), "{e:?}");
    }

    #[test]
    fn other_rules() {
        let e = check(
            quote!(interval = "1s", datasource = ""),
            quote!(
                fn reserve(mut self, tx: &Transaction<'_>) -> u32 {
                    1
                }
            ),
        )
        .unwrap_err();
        assert_eq!(e.len(), 5, "{e:?}");
        assert!(
            e.iter().any(|m| m.contains(
                "`interval` has no effect: the transaction's own errors are not retried"
            )),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.contains("must be `async fn`")), "{e:?}");
        assert!(
            e.iter().any(|m| m.contains("must return `Result<T, E>`")),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.contains("only as `&self`")), "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.contains("data source name cannot be empty")),
            "{e:?}"
        );
    }
}
