//! TLS for the system database, with libpq's `sslmode` semantics:
//! `prefer`/`require` encrypt without checking the certificate, `verify-ca` checks the chain,
//! `verify-full` checks the chain and the host name. Roots come from `sslrootcert` or the
//! platform's trust store.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::url::{DatabaseUrl, SslMode};
use crate::error::{Error, Result};

/// The rustls crypto provider: the process default when the application installed one
/// (`CryptoProvider::install_default`), else the one rustls picks from its crate features
/// (*ring*, which dbos-core enables), installed as the process default. (Not
/// `rustls::crypto::ring::default_provider()`, deprecated since rustls 0.23.48.)
pub(crate) fn provider() -> Result<Arc<CryptoProvider>> {
    if let Some(installed) = CryptoProvider::get_default() {
        return Ok(installed.clone());
    }
    // `ClientConfig::builder` installs the crate features' provider; it panics when they
    // name two (the application enabled `aws-lc-rs` too) and none is installed.
    let picked = std::panic::catch_unwind(|| drop(ClientConfig::builder()));
    match (picked, CryptoProvider::get_default()) {
        (Ok(()), Some(installed)) => Ok(installed.clone()),
        _ => Err(Error::config(
            "TLS setup failed: rustls cannot choose a crypto provider (both `ring` and \
             `aws-lc-rs` are enabled in this build): install one at the start of `main`, e.g. \
             `rustls::crypto::aws_lc_rs::default_provider().install_default()`",
        )),
    }
}

/// Builds the TLS connector for a URL. With `sslmode=disable` it is never used.
pub(crate) fn connector(url: &DatabaseUrl) -> Result<MakeRustlsConnect> {
    let provider = provider()?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("TLS setup failed: {e}")).with_source(e))?;
    let config = match url.ssl_mode {
        SslMode::Disable | SslMode::Allow | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly { provider }))
            .with_no_client_auth(),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(root_store(url)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| Error::config(format!("TLS setup failed: {e}")).with_source(e))?;
            let verifier: Arc<dyn ServerCertVerifier> = if url.ssl_mode == SslMode::VerifyCa {
                Arc::new(ChainOnly { inner: webpki })
            } else {
                webpki
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

fn root_store(url: &DatabaseUrl) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match &url.root_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| {
                    Error::config(format!(
                        "could not read sslrootcert `{}`: {e}",
                        path.display()
                    ))
                })?;
            if certs.is_empty() {
                return Err(Error::config(format!(
                    "sslrootcert `{}` holds no PEM certificate",
                    path.display()
                )));
            }
            roots.add_parsable_certificates(certs);
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(Error::config(
                    "sslmode verify-ca/verify-full needs trusted roots: none were found in the system trust store; \
                     add sslrootcert=/path/to/ca.pem to the URL",
                ));
            }
        }
    }
    Ok(roots)
}

/// `sslmode=require`: encrypted, certificate not checked (libpq's behaviour).
#[derive(Debug)]
struct EncryptOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod provider_tests {
    use super::*;

    #[test]
    fn the_provider_is_the_process_default_not_a_deprecated_constructor() {
        let first = provider().unwrap();
        let installed = CryptoProvider::get_default().expect("installed as the process default");
        assert!(Arc::ptr_eq(&first, installed));
        assert!(Arc::ptr_eq(&provider().unwrap(), &first));
        // rustls 0.23.48 deprecates `ring::default_provider()`: a build outside the workspace
        // lock would warn in every application using dbos-core by path.
        let source = include_str!("tls.rs");
        let calls = source
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .filter(|l| l.contains(concat!("ring::default_", "provider(")))
            .count();
        assert_eq!(calls, 0);
    }
}
