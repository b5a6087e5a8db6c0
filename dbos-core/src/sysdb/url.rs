//! Connection URLs: the libpq TLS parameters tokio-postgres does not parse, and redaction.

use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The libpq `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(Error::config(format!(
                    "unknown sslmode `{other}` in the database URL: use disable, prefer, require, verify-ca or verify-full"
                )))
            }
        })
    }
}

/// A parsed system database URL.
#[derive(Debug, Clone)]
pub(crate) struct DatabaseUrl {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) ssl_mode: SslMode,
    pub(crate) root_cert: Option<PathBuf>,
    pub(crate) redacted: String,
}

impl DatabaseUrl {
    /// Parses a `postgres://` / `postgresql://` URL, taking out the TLS parameters
    /// (`sslmode`, `sslrootcert`) that are handled here rather than by tokio-postgres.
    pub(crate) fn parse(url: &str) -> Result<Self> {
        Self::parse_as(url, "the system database URL")
    }

    /// [`parse`](Self::parse), naming the URL `what` in errors (e.g. "the URL of data
    /// source `app`").
    pub(crate) fn parse_as(url: &str, what: &str) -> Result<Self> {
        let redacted = redact_url(url);
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::config(format!(
                "{what} `{redacted}` is not a Postgres URL: expected postgres://user:password@host:port/database"
            )));
        }
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (url, None),
        };
        let mut ssl_mode = SslMode::Prefer;
        let mut root_cert = None;
        let mut kept = Vec::new();
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => ssl_mode = SslMode::parse(value)?,
                "sslrootcert" => root_cert = Some(PathBuf::from(percent_decode(value))),
                _ => kept.push(pair),
            }
        }
        let rebuilt = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config = tokio_postgres::Config::from_str(&rebuilt).map_err(|e| {
            Error::config(format!("{what} `{redacted}` is invalid: {e}")).with_source(e)
        })?;
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        if config.get_dbname().is_none() {
            return Err(Error::config(format!(
                "{what} `{redacted}` names no database: append /<database> to the URL"
            )));
        }
        Ok(DatabaseUrl {
            config,
            ssl_mode,
            root_cert,
            redacted,
        })
    }

    /// The database name (always present after `parse`).
    pub(crate) fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters whose values are secrets (libpq's names).
const SECRET_PARAMS: &[&str] = &["password", "sslpassword"];

/// Replaces the secrets of a Postgres URL with `***`, for logs and errors: the password of
/// the user info, and the values of the `password` and `sslpassword` query parameters. Every
/// other part of the URL is kept as written.
///
/// ```
/// assert_eq!(
///     dbos_core::sysdb::redact_url("postgres://app:s3cret@db:5432/sys"),
///     "postgres://app:***@db:5432/sys"
/// );
/// assert_eq!(
///     dbos_core::sysdb::redact_url("postgres://app@db/sys?password=s3cret&sslmode=require"),
///     "postgres://app@db/sys?password=***&sslmode=require"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let (head, tail) = url.split_at(scheme_end + 3 + authority_end);
    let head = match authority.rfind('@') {
        Some(at) => match authority[..at].split_once(':') {
            Some((user, _password)) => {
                format!(
                    "{}{}:***@{}",
                    &url[..scheme_end + 3],
                    user,
                    &authority[at + 1..]
                )
            }
            None => head.to_owned(),
        },
        None => head.to_owned(),
    };
    let tail = match tail.split_once('?') {
        None => tail.to_owned(),
        Some((path, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if SECRET_PARAMS.contains(&key) => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", pairs.join("&"))
        }
    };
    head + &tail
}

/// `url` with its database replaced by `database` (query parameters kept): another database
/// on the same server, with the same credentials and TLS settings.
pub(crate) fn with_database(url: &str, database: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let after = &rest[authority_end..];
    let query = after.find('?').map_or("", |q| &after[q..]);
    format!(
        "{}{}/{database}{query}",
        &url[..scheme_end + 3],
        &rest[..authority_end]
    )
}

/// Quotes a Postgres identifier (`dbos` → `"dbos"`).
pub(crate) fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_database_on_the_same_server() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/sys?sslmode=require", "shop"),
            "postgres://u:p@h:5432/shop?sslmode=require"
        );
        assert_eq!(
            with_database("postgres://u@h/sys", "shop"),
            "postgres://u@h/shop"
        );
        assert_eq!(
            with_database("postgres://u@h", "shop"),
            "postgres://u@h/shop"
        );
        assert_eq!(
            with_database("postgres://u@h?x=1", "shop"),
            "postgres://u@h/shop?x=1"
        );
    }

    #[test]
    fn tls_parameters_are_taken_out() {
        let u = DatabaseUrl::parse("postgres://u:p@localhost:5433/sys?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x").unwrap();
        assert_eq!(u.ssl_mode, SslMode::VerifyFull);
        assert_eq!(u.root_cert, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(u.database(), "sys");
        assert_eq!(u.config.get_application_name(), Some("x"));
        assert_eq!(u.redacted, "postgres://u:***@localhost:5433/sys?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let e = DatabaseUrl::parse("mysql://u:secret@h/db").unwrap_err();
        assert!(e.to_string().contains("not a Postgres URL"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = DatabaseUrl::parse("postgres://u@h/db?sslmode=sometimes").unwrap_err();
        assert!(e.to_string().contains("unknown sslmode `sometimes`"), "{e}");
        let e = DatabaseUrl::parse("postgres://u@h:5432").unwrap_err();
        assert!(e.to_string().contains("names no database"), "{e}");
    }

    #[test]
    fn redaction() {
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgresql://u:p@ss@h/db"),
            "postgresql://u:***@h/db"
        );
        assert_eq!(quote_ident("my\"schema"), "\"my\"\"schema\"");
    }

    #[test]
    fn password_parameters_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redact_url("postgres://u@h:5432/db?password=s3cret"),
            "postgres://u@h:5432/db?password=***"
        );
        assert_eq!(
            redact_url("postgres://u:p@h/db?sslmode=require&password=s3cret&application_name=x&sslpassword=k3y"),
            "postgres://u:***@h/db?sslmode=require&password=***&application_name=x&sslpassword=***"
        );
        // Without a path, and with no user info at all.
        assert_eq!(
            redact_url("postgres://h?user=u&password=s3cret"),
            "postgres://h?user=u&password=***"
        );
        // Only these exact names: others, and look-alikes, are kept.
        assert_eq!(
            redact_url("postgres://h/db?passfile=/x&password_hint=y&sslmode=verify-full"),
            "postgres://h/db?passfile=/x&password_hint=y&sslmode=verify-full"
        );
        // Parsed URLs carry the redacted form into every error and log line.
        let e = DatabaseUrl::parse("mysql://h/db?password=s3cret").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let u = DatabaseUrl::parse("postgres://u@h/db?password=s3cret&sslmode=disable").unwrap();
        assert_eq!(u.redacted, "postgres://u@h/db?password=***&sslmode=disable");
        assert_eq!(
            u.config.get_password(),
            Some(&b"s3cret"[..]),
            "the real one is used"
        );
    }
}
