//! Checks on the types the macros record in the system database: workflow arguments, and the
//! outputs and errors of workflows, steps and transactions.
//!
//! The trait bounds (`Portable`, `WorkflowError`) are checked by the compiler in the
//! expansion, with a message of ours. These checks catch, from the syntax alone, the mistakes
//! whose compiler errors would instead name serde's lifetimes or the macro's internals
//! (`Deserialize is not general enough`, `__dbos_arg0 escapes the closure body`) or give
//! serde's generic advice ("add #[derive(Serialize)] to your dyn Error type"): a borrowed type,
//! a trait object, `String` or a foreign error type as the error.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::visit::Visit;
use syn::{GenericArgument, PathArguments, Type, TypePath};

use crate::error::Errors;

/// What a recorded type is to the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A workflow argument: recorded when the workflow starts, decoded again on recovery.
    Argument,
    /// `T` of `Result<T, E>`.
    Output,
    /// `E` of `Result<T, E>`.
    Error,
}

/// Reports, in `errors`, what is wrong with `ty` in `role` for the macro `what` (e.g.
/// `"#[workflow]"`). At most one error per type.
pub(crate) fn check(ty: &Type, role: Role, what: &str, errors: &mut Errors) {
    if let Some(error) = borrowed(ty, role, what) {
        errors.push(error);
    } else if role == Role::Error {
        if let Some(error) = unsuitable_error(ty, what) {
            errors.push(error);
        }
    }
}

/// The first reference, or lifetime other than `'static`, inside a type: its tokens, to
/// span the error over.
fn first_borrow(ty: &Type) -> Option<TokenStream> {
    struct Finder(Option<TokenStream>);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
            if self.0.is_none() {
                self.0 = Some(r.to_token_stream());
            }
        }
        fn visit_lifetime(&mut self, l: &'ast syn::Lifetime) {
            if self.0.is_none() && l.ident != "static" {
                self.0 = Some(l.to_token_stream());
            }
        }
        // A trait object's or a function pointer's own lifetimes are reported as what they
        // are (a trait object, a type that is not storable), not as borrows.
        fn visit_type_bare_fn(&mut self, _: &'ast syn::TypeBareFn) {}
    }
    let mut finder = Finder(None);
    finder.visit_type(ty);
    finder.0
}

/// The owned type to suggest for a borrowed one.
fn owned_suggestion(ty: &Type) -> String {
    if let Type::Reference(r) = ungroup(ty) {
        let inner = ungroup(&r.elem);
        if is_path(inner, &["str"]) {
            return "`String`".to_owned();
        }
        if let Type::Slice(s) = inner {
            return format!("`Vec<{}>`", tokens(&s.elem));
        }
        if is_path(inner, &["Path"]) {
            return "`PathBuf`".to_owned();
        }
        return format!("`{}`", tokens(inner));
    }
    "a type that owns its data (`String`, `Vec<T>`, or a lifetime-free struct)".to_owned()
}

/// The error for a borrowed `ty`, if it is one.
fn borrowed(ty: &Type, role: Role, what: &str) -> Option<syn::Error> {
    let borrow = first_borrow(ty)?;
    let (subject, why) = match role {
        Role::Argument => (
            format!("{what} arguments must own their data"),
            "arguments are recorded in the system database when the workflow starts, and after a \
             crash they are decoded again into new values, which have nothing to borrow from",
        ),
        Role::Output => (
            format!("a {what} output must own its data"),
            "the output is recorded in the system database, and a replay or a caller decodes \
             it again into a new value, which has nothing to borrow from",
        ),
        Role::Error => (
            format!("a {what} error must own its data"),
            "the error is recorded in the system database, and a replay or a caller decodes it \
             again into a new value, which has nothing to borrow from",
        ),
    };
    Some(syn::Error::new_spanned(
        borrow,
        format!(
            "{subject}, so `{}` cannot be one: {why}; use {} instead",
            tokens(ty),
            owned_suggestion(ty)
        ),
    ))
}

/// What to write instead of an unsuitable error type.
const USE_INSTEAD: &str = "use `dbos_core::Error` (e.g. \
     `dbos_core::Error::new(dbos_core::ErrorKind::WorkflowFailed, message)`), or an error type of \
     your own that derives `Serialize` and `Deserialize` and implements `Display` and \
     `From<dbos_core::Error>`";

/// The error for an error type known not to qualify: a trait object (boxed or not), `String`
/// or `str`, or a foreign error type without serde support.
fn unsuitable_error(ty: &Type, what: &str) -> Option<syn::Error> {
    let written = tokens(ty);
    let why = if is_trait_object(ty) {
        "the error is recorded in the system database, and a replay must rebuild the same typed \
         value from the record, which a trait object cannot be (it has no `Deserialize`)"
            .to_owned()
    } else if is_path(ty, &["String"]) || is_path(ty, &["str"]) {
        "durability failures (a lost database connection, a cancellation) reach the body as \
         `dbos_core::Error` and travel through `?` into the error type, so it must implement \
         `From<dbos_core::Error>`, which a string cannot"
            .to_owned()
    } else if [["anyhow", "Error"], ["eyre", "Report"], ["io", "Error"]]
        .iter()
        .any(|known| is_path(ty, known))
    {
        format!(
            "the error is recorded in the system database, and a replay must rebuild the same \
             typed value from the record, so it must implement `Serialize` and `Deserialize`, \
             which `{written}` does not"
        )
    } else {
        return None;
    };
    Some(syn::Error::new_spanned(
        ty,
        format!("`{written}` cannot be a {what} error: {why}; {USE_INSTEAD}"),
    ))
}

/// `dyn Trait`, or a smart pointer (`Box`, `Arc`, `Rc`) of one.
fn is_trait_object(ty: &Type) -> bool {
    match ungroup(ty) {
        Type::TraitObject(_) => true,
        Type::Path(p) => {
            let Some(last) = p.path.segments.last() else {
                return false;
            };
            let PathArguments::AngleBracketed(args) = &last.arguments else {
                return false;
            };
            ["Box", "Arc", "Rc"].iter().any(|ptr| last.ident == ptr)
                && args.args.len() == 1
                && matches!(args.args.first(), Some(GenericArgument::Type(inner)) if is_trait_object(inner))
        }
        _ => false,
    }
}

/// Whether `ty` is a path without generic arguments whose last segments are `names`. A
/// one-name match also requires the prefix, if any, to be a standard one (`std::string::String`).
fn is_path(ty: &Type, names: &[&str]) -> bool {
    let Type::Path(TypePath { qself: None, path }) = ungroup(ty) else {
        return false;
    };
    let segments: Vec<_> = path.segments.iter().collect();
    if segments.len() < names.len()
        || segments
            .iter()
            .any(|s| !matches!(s.arguments, PathArguments::None))
    {
        return false;
    }
    let (prefix, tail) = segments.split_at(segments.len() - names.len());
    let tail_matches = tail.iter().zip(names).all(|(s, n)| s.ident == n);
    let prefix_ok = names.len() > 1
        || prefix.first().is_none_or(|first| {
            ["std", "alloc", "core"]
                .iter()
                .any(|root| first.ident == root)
        });
    tail_matches && prefix_ok
}

/// Removes the invisible groups `macro_rules!` wraps around captured types, and parentheses.
fn ungroup(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => ungroup(&g.elem),
        Type::Paren(p) => ungroup(&p.elem),
        other => other,
    }
}

/// The type as the user would write it.
fn tokens(ty: &impl ToTokens) -> String {
    let text = ty.to_token_stream().to_string();
    // `quote` spaces every token; close the common gaps so the message reads like code.
    text.replace(" < ", "<")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace(" :: ", "::")
        .replace(":: ", "::")
        .replace("& ", "&")
        .replace(" ,", ",")
        .replace("' ", "'")
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn errors(ty: Type, role: Role) -> Vec<String> {
        let mut errors = Errors::default();
        check(&ty, role, "#[workflow]", &mut errors);
        match errors.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn one(ty: Type, role: Role) -> String {
        let e = errors(ty, role);
        assert_eq!(e.len(), 1, "{e:#?}");
        e[0].clone()
    }

    #[test]
    fn owned_types_pass() {
        for ty in [
            parse_quote!(String),
            parse_quote!(Vec<u8>),
            parse_quote!(std::borrow::Cow<'static, str>),
            parse_quote!(Option<(u32, String)>),
            parse_quote!(fn(&str) -> u32),
            parse_quote!(my::String),
        ] {
            assert!(errors(ty, Role::Argument).is_empty());
        }
        for ty in [
            parse_quote!(dbos_core::Error),
            parse_quote!(ShopError),
            parse_quote!(my::String),
            parse_quote!(Box<ShopError>),
            parse_quote!(Error),
        ] {
            assert!(errors(ty, Role::Error).is_empty());
        }
    }

    #[test]
    fn borrowed_arguments_name_the_owned_type() {
        let e = one(parse_quote!(&str), Role::Argument);
        assert!(
            e.starts_with("#[workflow] arguments must own their data, so `&str` cannot be one"),
            "{e}"
        );
        assert!(e.contains("use `String` instead"), "{e}");
        assert!(one(parse_quote!(&'static str), Role::Argument).contains("use `String`"));
        assert!(one(parse_quote!(&[u8]), Role::Argument).contains("use `Vec<u8>`"));
        assert!(one(parse_quote!(&Order), Role::Argument).contains("use `Order` instead"));
        assert!(one(parse_quote!(&std::path::Path), Role::Argument).contains("use `PathBuf`"));
        let e = one(parse_quote!(Cow<'a, str>), Role::Argument);
        assert!(
            e.contains("`Cow<'a, str>` cannot be one") && e.contains("owns its data"),
            "{e}"
        );
        assert!(one(parse_quote!(Vec<&str>), Role::Argument).contains("`Vec<&str>`"));
        assert!(one(parse_quote!(Record<'_>), Role::Argument).contains("`Record<'_>`"));
    }

    #[test]
    fn borrowed_outputs_and_errors_say_what_they_are() {
        let e = one(parse_quote!(&str), Role::Output);
        assert!(
            e.starts_with("a #[workflow] output must own its data"),
            "{e}"
        );
        let e = one(parse_quote!(&str), Role::Error);
        assert!(e.starts_with("a #[workflow] error must own"), "{e}");
        assert!(
            !e.contains("cannot be a #[workflow] error"),
            "one error per type: {e}"
        );
    }

    #[test]
    fn trait_objects_are_refused_as_errors() {
        for ty in [
            parse_quote!(Box<dyn std::error::Error>),
            parse_quote!(Box<dyn std::error::Error + Send + Sync>),
            parse_quote!(std::sync::Arc<dyn Error>),
            parse_quote!(Rc<dyn Error>),
        ] {
            let e = one(ty, Role::Error);
            assert!(e.contains("cannot be a #[workflow] error"), "{e}");
            assert!(e.contains("trait object"), "{e}");
            assert!(e.contains("dbos_core::Error::new"), "{e}");
        }
        // Only as errors: an output's bounds are the compiler's to report.
        assert!(errors(parse_quote!(Box<dyn Error>), Role::Output).is_empty());
        assert!(errors(parse_quote!(Box<dyn Error>), Role::Argument).is_empty());
    }

    #[test]
    fn strings_are_refused_as_errors_with_the_reason() {
        for ty in [
            parse_quote!(String),
            parse_quote!(std::string::String),
            parse_quote!(alloc::string::String),
        ] {
            let e = one(ty, Role::Error);
            assert!(e.contains("From<dbos_core::Error>"), "{e}");
            assert!(e.contains("use `dbos_core::Error`"), "{e}");
        }
        assert!(errors(parse_quote!(String), Role::Output).is_empty());
    }

    #[test]
    fn foreign_errors_without_serde_are_refused() {
        for (ty, name) in [
            (parse_quote!(anyhow::Error), "anyhow::Error"),
            (parse_quote!(eyre::Report), "eyre::Report"),
            (parse_quote!(std::io::Error), "std::io::Error"),
            (parse_quote!(io::Error), "io::Error"),
        ] {
            let e = one(ty, Role::Error);
            assert!(e.starts_with(&format!("`{name}` cannot be")), "{e}");
            assert!(e.contains("`Serialize` and `Deserialize`"), "{e}");
        }
    }
}
