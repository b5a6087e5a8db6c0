//! Signature helpers shared by `#[workflow]` and `#[step]`.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{GenericArgument, PathArguments, ReturnType, Signature, Type};

/// The `T` and `E` of a return type written `Result<T, E>` (any path whose last segment is
/// `Result` with exactly two type arguments: `Result`, `std::result::Result`, an alias with two
/// parameters). `None` for anything else.
pub(crate) fn result_types(output: &ReturnType) -> Option<(&Type, &Type)> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let Type::Path(path) = ungroup(ty) else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    match (types.next(), types.next(), types.next(), args.args.len()) {
        (Some(t), Some(e), None, 2) => Some((t, e)),
        _ => None,
    }
}

/// Removes the invisible groups `macro_rules!` wraps around captured types.
fn ungroup(ty: &Type) -> &Type {
    match ty {
        Type::Group(g) => ungroup(&g.elem),
        Type::Paren(p) => ungroup(&p.elem),
        other => other,
    }
}

/// The error for a return type that is not `Result<T, E>`, spanned at the return type (or at
/// the closing parenthesis of the arguments when there is none). `what` is e.g.
/// "#[workflow] functions" and `why_output` says what happens to `T`.
pub(crate) fn not_result_error(sig: &Signature, what: &str, why_output: &str) -> syn::Error {
    let common = format!(
        "{what} must return `Result<T, E>`: {why_output}, and `E` records a failure; `E` must \
         implement `dbos_core::WorkflowError` (Serialize, Deserialize, Display and \
         `From<dbos_core::Error>`, so a durability failure such as a lost database connection \
         can travel through `?`)"
    );
    match &sig.output {
        ReturnType::Default => syn::Error::new(
            sig.paren_token.span.close(),
            format!("{common}; this function returns `()`"),
        ),
        ReturnType::Type(_, ty) => {
            let one_argument_alias = matches!(ungroup(ty), Type::Path(p)
                if p.path.segments.last().is_some_and(|s| s.ident == "Result"
                    && matches!(&s.arguments, PathArguments::AngleBracketed(a) if a.args.len() == 1)));
            let message = if one_argument_alias {
                format!(
                    "{common}; a `Result` alias with one parameter hides the error type from the \
                     macro, so write it out, e.g. `Result<T, MyError>`"
                )
            } else {
                common
            };
            syn::Error::new_spanned(ty, message)
        }
    }
}

/// The first `impl Trait` inside a type, for "this makes the function generic" errors.
pub(crate) fn impl_trait_in(ty: &Type) -> Option<Span> {
    struct Finder(Option<Span>);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
            if self.0.is_none() {
                self.0 = Some(t.span());
            }
        }
    }
    let mut finder = Finder(None);
    finder.visit_type(ty);
    finder.0
}

/// The first `Self` inside a type: nested items (where a workflow's hidden items live) cannot
/// name it.
pub(crate) fn self_type_in(ty: &Type) -> Option<Span> {
    struct Finder(Option<Span>);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_path(&mut self, path: &'ast syn::Path) {
            if let Some(first) = path.segments.first() {
                if path.leading_colon.is_none() && first.ident == "Self" && self.0.is_none() {
                    self.0 = Some(first.ident.span());
                }
            }
            syn::visit::visit_path(self, path);
        }
    }
    let mut finder = Finder(None);
    finder.visit_type(ty);
    finder.0
}

/// Every `Self` in a function body, outside nested items (which have their own `Self`).
pub(crate) fn self_in_body(block: &syn::Block) -> Vec<Span> {
    struct Finder(Vec<Span>);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_path(&mut self, path: &'ast syn::Path) {
            if let Some(first) = path.segments.first() {
                if path.leading_colon.is_none() && first.ident == "Self" {
                    self.0.push(first.ident.span());
                }
            }
            syn::visit::visit_path(self, path);
        }
        fn visit_item(&mut self, _: &'ast syn::Item) {}
    }
    let mut finder = Finder(Vec::new());
    finder.visit_block(block);
    finder.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::ToTokens;
    use syn::parse_quote;

    fn type_string(ty: &Type) -> String {
        ty.to_token_stream().to_string().replace(' ', "")
    }

    fn output(sig: Signature) -> Option<(String, String)> {
        result_types(&sig.output).map(|(t, e)| (type_string(t), type_string(e)))
    }

    #[test]
    fn finds_result_types() {
        assert_eq!(
            output(parse_quote!(fn f() -> Result<u32, MyError>)),
            Some(("u32".into(), "MyError".into()))
        );
        assert_eq!(
            output(parse_quote!(fn f() -> std::result::Result<Vec<u8>, e::E>)),
            Some(("Vec<u8>".into(), "e::E".into()))
        );
        assert_eq!(output(parse_quote!(fn f())), None);
        assert_eq!(output(parse_quote!(fn f() -> u32)), None);
        assert_eq!(output(parse_quote!(fn f() -> io::Result<u32>)), None);
        assert_eq!(output(parse_quote!(fn f() -> Result<u32, E, F>)), None);
        assert_eq!(output(parse_quote!(fn f() -> Result<'a, u32>)), None);
    }

    #[test]
    fn one_argument_alias_gets_a_hint() {
        let sig: Signature = parse_quote!(fn f() -> io::Result<u32>);
        let e = not_result_error(&sig, "x", "y").to_string();
        assert!(e.contains("alias with one parameter"), "{e}");
        let sig: Signature = parse_quote!(fn f());
        let e = not_result_error(&sig, "x", "y").to_string();
        assert!(e.contains("returns `()`"), "{e}");
    }
}
