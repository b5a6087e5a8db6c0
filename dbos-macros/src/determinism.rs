//! The determinism guard: finds, in a workflow body, the calls whose result or effect would
//! differ when the workflow is replayed after a crash.
//!
//! A workflow is recovered by running its body again from the top, with every completed step
//! returning its recorded result. That only works if the body itself takes the same path on
//! every run, so reading the clock, drawing random numbers, spawning concurrent tasks and
//! racing futures must happen inside steps (which are recorded), not in the body.
//!
//! # How paths are matched
//!
//! A path matches a rule when it *ends with* the rule's segments, whatever precedes them:
//! `tokio::spawn`, `::tokio::spawn` and `my_reexport::tokio::spawn` all match `tokio::spawn`,
//! and `std::time::Instant::now` matches `Instant::now`. A macro cannot resolve names, so a
//! call through a `use` import that leaves too little of the path (`use tokio::spawn;` then a
//! bare `spawn(..)`) is *not* flagged: a bare `spawn` could be anything. Rules whose last
//! segment is distinctive on its own (`thread_rng`, `OsRng`, `from_entropy`) match even bare.
//! Method calls (`rng.gen()`, `handle.spawn(..)`) are not seen either.
//!
//! Macro invocations whose arguments parse as comma-separated expressions (`println!`,
//! `format!`, `vec!`, `assert!`, ...) are searched too.
//!
//! # Opting out
//!
//! A statement annotated `#[nondeterministic]` is skipped, with everything inside it. The
//! attribute is not a real attribute: [`strip_opt_out`] removes it from the emitted code.

use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};
use syn::{Attribute, Block, Expr, Item, Macro, Stmt, Token};

use crate::error::Errors;

/// The name of the opt-out attribute.
pub(crate) const OPT_OUT: &str = "nondeterministic";

/// What a flagged call does wrong.
#[derive(Debug, Clone, Copy)]
enum Reason {
    Spawn,
    Select,
    Instant,
    Clock,
    Random,
}

/// Path rules: a path ending with these segments is flagged.
const PATH_RULES: &[(&str, Reason)] = &[
    ("tokio::spawn", Reason::Spawn),
    ("task::spawn", Reason::Spawn),
    ("task::spawn_blocking", Reason::Spawn),
    ("task::spawn_local", Reason::Spawn),
    ("thread::spawn", Reason::Spawn),
    ("Instant::now", Reason::Instant),
    ("SystemTime::now", Reason::Clock),
    ("Utc::now", Reason::Clock),
    ("Local::now", Reason::Clock),
    ("OffsetDateTime::now_utc", Reason::Clock),
    ("OffsetDateTime::now_local", Reason::Clock),
    ("Zoned::now", Reason::Clock),
    ("rand::random", Reason::Random),
    ("rand::random_range", Reason::Random),
    ("rand::random_bool", Reason::Random),
    ("rand::random_ratio", Reason::Random),
    ("rand::random_iter", Reason::Random),
    ("rand::rng", Reason::Random),
    ("thread_rng", Reason::Random),
    ("OsRng", Reason::Random),
    ("from_entropy", Reason::Random),
    ("from_os_rng", Reason::Random),
    ("Uuid::new_v4", Reason::Random),
    ("Uuid::now_v7", Reason::Random),
];

/// Macro rules: a macro whose path ends with these segments is flagged.
const MACRO_RULES: &[(&str, Reason)] = &[
    ("select", Reason::Select),
    ("select_biased", Reason::Select),
];

/// Reports every non-deterministic call in `block` (one error each, spanned at the path or
/// macro), skipping statements marked `#[nondeterministic]`, and every `#[nondeterministic]`
/// that is not on a statement.
pub(crate) fn check(block: &Block, errors: &mut Errors) {
    Guard { errors }.visit_block(block);
}

/// Whether an attribute is `#[nondeterministic]`.
pub(crate) fn is_opt_out(attr: &Attribute) -> bool {
    attr.path().is_ident(OPT_OUT)
}

/// Removes every `#[nondeterministic]` (also with a note: `#[nondeterministic = ".."]`) from a token stream, at any depth (also inside macro
/// invocations, which a syntax-tree pass could not reach).
pub(crate) fn strip_opt_out(tokens: TokenStream) -> TokenStream {
    let mut out = Vec::new();
    let mut iter = tokens.into_iter().peekable();
    while let Some(tree) = iter.next() {
        match tree {
            TokenTree::Punct(p) if p.as_char() == '#' => {
                if let Some(TokenTree::Group(g)) = iter.peek() {
                    if g.delimiter() == Delimiter::Bracket && is_opt_out_tokens(g.stream()) {
                        iter.next();
                        continue;
                    }
                }
                out.push(TokenTree::Punct(p));
            }
            TokenTree::Group(g) => {
                let mut stripped = Group::new(g.delimiter(), strip_opt_out(g.stream()));
                stripped.set_span(g.span());
                out.push(TokenTree::Group(stripped));
            }
            other => out.push(other),
        }
    }
    out.into_iter().collect()
}

/// `nondeterministic`, `nondeterministic(..)` or `nondeterministic = ..`: the same attributes
/// [`is_opt_out`] recognizes (a note such as `#[nondeterministic = "only logged"]` is allowed).
fn is_opt_out_tokens(tokens: TokenStream) -> bool {
    let mut iter = tokens.into_iter();
    match (iter.next(), iter.next()) {
        (Some(TokenTree::Ident(i)), None) => i == OPT_OUT,
        (Some(TokenTree::Ident(i)), Some(TokenTree::Group(_))) => i == OPT_OUT,
        (Some(TokenTree::Ident(i)), Some(TokenTree::Punct(p))) => {
            i == OPT_OUT && p.as_char() == '='
        }
        _ => false,
    }
}

struct Guard<'a> {
    errors: &'a mut Errors,
}

impl Guard<'_> {
    /// Reports one occurrence, spanned over the whole path (`new_spanned` covers every segment,
    /// where a joined span would only show the first one on stable compilers).
    fn report(&mut self, at: &syn::Path, written: &str, reason: Reason) {
        let why = match reason {
            Reason::Spawn => format!(
                "`{written}` in a workflow body: the spawned task runs concurrently with the \
                 workflow, so a replay after a crash cannot reproduce its interleaving; call a \
                 #[step] or a child #[workflow] instead (use `.start()` to run a child in the \
                 background)"
            ),
            Reason::Select => format!(
                "`{written}!` in a workflow body: it takes whichever branch is ready first, a \
                 non-deterministic choice that a replay after a crash cannot reproduce; await a \
                 #[step] instead (its result is recorded, so it may race futures inside), or \
                 start child workflows with `.start()` and await their handles"
            ),
            Reason::Instant => format!(
                "`{written}` in a workflow body: the clock differs on replay, so code that \
                 depends on it takes another path after a crash; use `dbos_core::now()` \
                 (recorded as a step) to read the time, and the durable `dbos_core::sleep()` to \
                 wait"
            ),
            Reason::Clock => format!(
                "`{written}` in a workflow body: the clock differs on replay, so code that \
                 depends on it takes another path after a crash; use `dbos_core::now()` \
                 (recorded as a step)"
            ),
            Reason::Random => format!(
                "`{written}` in a workflow body: random values differ on replay, so code that \
                 depends on them takes another path after a crash; use `dbos_core::random()` / \
                 `dbos_core::uuid()` (recorded as steps)"
            ),
        };
        self.errors.push(syn::Error::new_spanned(
            at,
            format!(
                "{why}\nhelp: if this cannot change what the workflow does on replay (a log \
                 line, say), put `#[{OPT_OUT}]` on the statement"
            ),
        ));
    }
}

/// The path as written (idents only), and whether it ends with `rule`'s segments.
fn matches_suffix(path: &syn::Path, rule: &str) -> bool {
    let rule: Vec<&str> = rule.split("::").collect();
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    segments.len() >= rule.len()
        && segments[segments.len() - rule.len()..]
            .iter()
            .zip(&rule)
            .all(|(a, b)| a == b)
}

fn written(path: &syn::Path) -> String {
    let joined = path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::");
    if path.leading_colon.is_some() {
        format!("::{joined}")
    } else {
        joined
    }
}

impl<'ast> Visit<'ast> for Guard<'_> {
    fn visit_stmt(&mut self, stmt: &'ast Stmt) {
        if stmt_attrs(stmt).iter().any(is_opt_out) {
            return;
        }
        visit::visit_stmt(self, stmt);
    }

    fn visit_attribute(&mut self, attr: &'ast Attribute) {
        // Statements carrying the attribute are skipped before their attributes are visited,
        // so any `#[nondeterministic]` reaching this point is somewhere else.
        if is_opt_out(attr) {
            self.errors.push(syn::Error::new_spanned(
                attr,
                format!(
                    "`#[{OPT_OUT}]` goes on a statement of the workflow body (a `let`, or an \
                     expression followed by `;`): it exempts that whole statement from the \
                     determinism check, and has no meaning elsewhere"
                ),
            ));
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if let Some((_, reason)) = PATH_RULES
            .iter()
            .find(|(rule, _)| matches_suffix(path, rule))
        {
            self.report(path, &written(path), *reason);
        }
        visit::visit_path(self, path);
    }

    fn visit_type(&mut self, _: &'ast syn::Type) {
        // Naming a type (`let rng: OsRng`) does nothing non-deterministic by itself.
    }

    fn visit_macro(&mut self, mac: &'ast Macro) {
        if let Some((_, reason)) = MACRO_RULES
            .iter()
            .find(|(rule, _)| matches_suffix(&mac.path, rule))
        {
            self.report(&mac.path, &written(&mac.path), *reason);
            return;
        }
        self.visit_path(&mac.path);
        // Look inside macros whose arguments are plain expressions (`println!`, `vec!`, ...).
        if let Ok(args) = Punctuated::<Expr, Token![,]>::parse_terminated.parse2(mac.tokens.clone())
        {
            for arg in &args {
                self.visit_expr(arg);
            }
        } else if let Ok((value, _, count)) = (|input: syn::parse::ParseStream<'_>| {
            Ok((
                input.parse::<Expr>()?,
                input.parse::<Token![;]>()?,
                input.parse::<Expr>()?,
            ))
        })
        .parse2(mac.tokens.clone())
        {
            self.visit_expr(&value);
            self.visit_expr(&count);
        }
    }

    fn visit_item(&mut self, item: &'ast Item) {
        if item_attrs(item).iter().any(is_opt_out) {
            return;
        }
        visit::visit_item(self, item);
    }
}

/// The outer attributes of a statement (for an expression statement, the expression's).
fn stmt_attrs(stmt: &Stmt) -> &[Attribute] {
    match stmt {
        Stmt::Local(local) => &local.attrs,
        Stmt::Item(item) => item_attrs(item),
        Stmt::Expr(expr, _) => expr_attrs(expr),
        Stmt::Macro(mac) => &mac.attrs,
    }
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

fn expr_attrs(expr: &Expr) -> &[Attribute] {
    match expr {
        Expr::Array(e) => &e.attrs,
        Expr::Assign(e) => &e.attrs,
        Expr::Async(e) => &e.attrs,
        Expr::Await(e) => &e.attrs,
        Expr::Binary(e) => &e.attrs,
        Expr::Block(e) => &e.attrs,
        Expr::Break(e) => &e.attrs,
        Expr::Call(e) => &e.attrs,
        Expr::Cast(e) => &e.attrs,
        Expr::Closure(e) => &e.attrs,
        Expr::Const(e) => &e.attrs,
        Expr::Continue(e) => &e.attrs,
        Expr::Field(e) => &e.attrs,
        Expr::ForLoop(e) => &e.attrs,
        Expr::Group(e) => &e.attrs,
        Expr::If(e) => &e.attrs,
        Expr::Index(e) => &e.attrs,
        Expr::Infer(e) => &e.attrs,
        Expr::Let(e) => &e.attrs,
        Expr::Lit(e) => &e.attrs,
        Expr::Loop(e) => &e.attrs,
        Expr::Macro(e) => &e.attrs,
        Expr::Match(e) => &e.attrs,
        Expr::MethodCall(e) => &e.attrs,
        Expr::Paren(e) => &e.attrs,
        Expr::Path(e) => &e.attrs,
        Expr::Range(e) => &e.attrs,
        Expr::RawAddr(e) => &e.attrs,
        Expr::Reference(e) => &e.attrs,
        Expr::Repeat(e) => &e.attrs,
        Expr::Return(e) => &e.attrs,
        Expr::Struct(e) => &e.attrs,
        Expr::Try(e) => &e.attrs,
        Expr::TryBlock(e) => &e.attrs,
        Expr::Tuple(e) => &e.attrs,
        Expr::Unary(e) => &e.attrs,
        Expr::Unsafe(e) => &e.attrs,
        Expr::While(e) => &e.attrs,
        Expr::Yield(e) => &e.attrs,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;
    use syn::parse_quote;

    fn errors_in(block: Block) -> Vec<String> {
        let mut errors = Errors::default();
        check(&block, &mut errors);
        match errors.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn flags_spawns_clocks_randomness_and_select() {
        let errors = errors_in(parse_quote!({
            tokio::spawn(async {});
            ::tokio::task::spawn_blocking(|| ());
            std::thread::spawn(|| ());
            let t = std::time::Instant::now();
            let s = SystemTime::now();
            let u = chrono::Utc::now();
            let r: u8 = rand::random();
            let g = rand::thread_rng();
            let id = uuid::Uuid::new_v4();
            let rng = <StdRng as SeedableRng>::from_entropy();
            tokio::select! { _ = a => {} }
        }));
        let expected = [
            "`tokio::spawn`",
            "`::tokio::task::spawn_blocking`",
            "`std::thread::spawn`",
            "`std::time::Instant::now`",
            "`SystemTime::now`",
            "`chrono::Utc::now`",
            "`rand::random`",
            "`rand::thread_rng`",
            "`uuid::Uuid::new_v4`",
            "`SeedableRng::from_entropy`",
            "`tokio::select!`",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (e, want) in errors.iter().zip(expected) {
            assert!(e.starts_with(want), "{e} should start with {want}");
        }
        assert!(errors[0].contains("runs concurrently"));
        assert!(errors[3].contains("dbos_core::sleep()"));
        assert!(errors[4].contains("dbos_core::now()"));
        assert!(errors[6].contains("dbos_core::random()"));
        assert!(errors[10].contains("non-deterministic choice"));
    }

    #[test]
    fn looks_into_closures_async_blocks_nested_blocks_and_macros() {
        let errors = errors_in(parse_quote!({
            let f = || Instant::now();
            let g = async {
                if x {
                    loop {
                        tokio::spawn(y);
                    }
                }
            };
            println!("{:?}", Instant::now());
            let v = vec![rand::random(); 3];
            let s = select! { _ = a => {} };
        }));
        assert_eq!(errors.len(), 5, "{errors:#?}");
    }

    #[test]
    fn bare_or_unrelated_paths_are_not_flagged() {
        let errors = errors_in(parse_quote!({
            spawn(async {});
            let now = dbos_core::now().await?;
            let r = dbos_core::random().await?;
            let t: Instant = start;
            let x = my_now();
            handle.spawn(async {});
            let s = spawner::spawn_later();
        }));
        assert!(errors.is_empty(), "{errors:#?}");
    }

    #[test]
    fn opt_out_skips_statements() {
        let errors = errors_in(parse_quote!({
            #[nondeterministic]
            let started = Instant::now();
            #[nondeterministic]
            tokio::spawn(async { Instant::now() });
            #[nondeterministic]
            tracing::info!(at = ?SystemTime::now());
            #[nondeterministic]
            {
                let r: u8 = rand::random();
            }
        }));
        assert!(errors.is_empty(), "{errors:#?}");
    }

    #[test]
    fn misplaced_opt_out_is_reported() {
        let errors = errors_in(parse_quote!({
            match x {
                #[nondeterministic]
                _ => {}
            }
        }));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].contains("goes on a statement"));
    }

    #[test]
    fn strip_removes_the_attribute_everywhere() {
        let tokens = quote! {
            #[nondeterministic]
            let a = 1;
            { #[nondeterministic] b(); }
            println!("{}", { #[nondeterministic] let c = 2; c });
            #[allow(unused)]
            let d = 3;
            #[nondeterministic = "only logged"]
            let e = 4;
            #[nondeterministic(x)]
            let f = 5;
        };
        let stripped = strip_opt_out(tokens).to_string();
        assert_eq!(stripped.matches(OPT_OUT).count(), 0, "{stripped}");
        assert!(stripped.contains("# [allow (unused)]"), "{stripped}");
    }
}
