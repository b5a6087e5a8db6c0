//! The source hash of a workflow or step definition, which feeds the application version:
//! recovery only resumes a workflow on an executor whose code has the same version.

use crate::func::AnnotatedFn;

/// FNV-1a (64 bit) of the function's tokens as a string, as 16 lowercase hex digits.
///
/// Doc comments are left out (see [`AnnotatedFn::source_tokens`]), so editing documentation
/// does not change the application version, which would leave in-flight workflows to
/// executors still running the old version.
pub(crate) fn source_hash(func: &AnnotatedFn) -> String {
    format!(
        "{:016x}",
        fnv1a64(func.source_tokens().to_string().as_bytes())
    )
}

/// The 64-bit FNV-1a hash.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn parse(tokens: proc_macro2::TokenStream) -> AnnotatedFn {
        syn::parse2(tokens).unwrap()
    }

    #[test]
    fn fnv_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn hash_ignores_docs_and_whitespace_but_not_code() {
        let a = parse(quote! { async fn f() -> u32 { 1 } });
        let b = parse(quote! {
            /// Documented.
            async fn f() -> u32 {
                1
            }
        });
        let c = parse(quote! { async fn f() -> u32 { 2 } });
        assert_eq!(source_hash(&a), source_hash(&b));
        assert_ne!(source_hash(&a), source_hash(&c));
        assert_eq!(source_hash(&a).len(), 16);
        assert!(source_hash(&a)
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }
}
