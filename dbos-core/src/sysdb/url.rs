//! Connection URLs: the libpq parameters tokio-postgres does not parse (TLS), checks on
//! several-host URLs, and redaction.

use std::path::PathBuf;
use std::str::FromStr;

use tokio_postgres::config::TargetSessionAttrs;

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

/// libpq's `target_session_attrs`, as far as a database that is written to can use it.
fn parse_session_attrs(value: &str, what: &str) -> Result<TargetSessionAttrs> {
    match value {
        "any" => Ok(TargetSessionAttrs::Any),
        // libpq's `primary` (not in recovery) and `read-write` (writes allowed) pick the
        // same server in every setup we support: the primary.
        "read-write" | "primary" => Ok(TargetSessionAttrs::ReadWrite),
        "read-only" | "standby" | "prefer-standby" => Err(Error::config(format!(
            "target_session_attrs={value} in {what} would connect to a standby, which cannot take the \
             writes this library makes there: use target_session_attrs=read-write to follow the primary"
        ))),
        other => Err(Error::config(format!(
            "unknown target_session_attrs `{other}` in {what}: use read-write (follow the primary among \
             several hosts) or any"
        ))),
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
    /// (`sslmode`, `sslrootcert`) that are handled here rather than by tokio-postgres, and
    /// `target_session_attrs`, which defaults to `read-write` when the URL names several
    /// hosts (the database is written to, so a standby is never what is wanted).
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
        let mut session_attrs = None;
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
                "target_session_attrs" => session_attrs = Some(parse_session_attrs(value, what)?),
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
        let hosts = check_hosts(&config, what, &redacted)?;
        config.target_session_attrs(session_attrs.unwrap_or(if hosts > 1 {
            TargetSessionAttrs::ReadWrite
        } else {
            TargetSessionAttrs::Any
        }));
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

/// The number of servers the URL names, after checking that its host, `hostaddr` and port
/// lists line up (tokio-postgres would only find out when connecting, and its error would
/// be retried as if the server were down).
fn check_hosts(config: &tokio_postgres::Config, what: &str, redacted: &str) -> Result<usize> {
    let (hosts, addrs, ports) = (
        config.get_hosts().len(),
        config.get_hostaddrs().len(),
        config.get_ports().len(),
    );
    if hosts == 0 && addrs == 0 {
        return Err(Error::config(format!(
            "{what} `{redacted}` names no host: expected postgres://user:password@host:port/database"
        )));
    }
    if hosts > 0 && addrs > 0 && hosts != addrs {
        return Err(Error::config(format!(
            "{what} `{redacted}` names {hosts} hosts but {addrs} hostaddr values: give one hostaddr per host, in the same order"
        )));
    }
    if hosts == 0 {
        return Err(Error::config(format!(
            "{what} `{redacted}` gives hostaddr without host names: name each host too \
             (postgres://user:password@db1:5432,db2:5432/database?hostaddr=10.0.0.1,10.0.0.2); TLS needs the names"
        )));
    }
    if let Some(tokio_postgres::config::Host::Unix(path)) = config
        .get_hosts()
        .iter()
        .find(|h| matches!(h, tokio_postgres::config::Host::Unix(_)))
    {
        return Err(Error::config(format!(
            "{what} `{redacted}` names the Unix socket folder {}: connect over TCP instead \
             (host 127.0.0.1 or localhost for a server on this machine)",
            path.display()
        )));
    }
    let servers = hosts.max(addrs);
    if ports > 1 && ports != servers {
        return Err(Error::config(format!(
            "{what} `{redacted}` names {servers} hosts but {ports} ports: write each port beside its host \
             (postgres://user:password@host1:5432,host2:5432/database) or give a single port"
        )));
    }
    Ok(servers)
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

/// Replaces every secret in a Postgres connection string with `***`, for logs and errors:
/// the password of the URL's user info, the `password` and `sslpassword` query parameters,
/// and `password=` in a `key=value` connection string. Every other part is kept as written.
///
/// The user info is taken generously, so a password with an unescaped `@`, `/` or `?` is
/// hidden too: it ends at the first `@` (where tokio-postgres ends it) or, if the host
/// part after that holds another `@`, at the last one.
///
/// ```
/// use dbos_core::sysdb::redact_url;
///
/// assert_eq!(
///     redact_url("postgres://app:s3cret@db:5432/sys"),
///     "postgres://app:***@db:5432/sys"
/// );
/// assert_eq!(
///     redact_url("postgres://app:s3cret@db1:5432,db2:5432/sys?target_session_attrs=read-write"),
///     "postgres://app:***@db1:5432,db2:5432/sys?target_session_attrs=read-write"
/// );
/// assert_eq!(
///     redact_url("postgres://app@db/sys?password=s3cret&sslmode=require"),
///     "postgres://app@db/sys?password=***&sslmode=require"
/// );
/// assert_eq!(
///     redact_url("host=db user=app password='s 3cret' dbname=sys"),
///     "host=db user=app password=*** dbname=sys"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return redact_key_values(url);
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let (userinfo, after) = match rest.find('@') {
        Some(first_at) => {
            let host_part = &rest[first_at + 1..];
            let host_end = host_part.find(['/', '?']).unwrap_or(host_part.len());
            let end = match host_part[..host_end].rfind('@') {
                Some(last) => first_at + 1 + last,
                None => first_at,
            };
            (Some(&rest[..end]), &rest[end + 1..])
        }
        None => (None, rest),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _password)) => {
                out.push_str(user);
                out.push_str(":***");
            }
            None => out.push_str(userinfo),
        }
        out.push('@');
    }
    match after.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if SECRET_PARAMS.contains(&percent_decode(key).as_str()) => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(after),
    }
    out
}

/// Redacts `password=value` in a libpq `key=value` connection string (the value may be
/// quoted with `'`, with `\` escapes, and spaces may surround the `=`).
fn redact_key_values(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        let at_word_start = i == 0 || bytes[i - 1].is_ascii_whitespace();
        if at_word_start && s[i..].starts_with("password") {
            let mut j = i + "password".len();
            while j < bytes.len() && bytes[j] == b' ' {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b'=' {
                j += 1;
                while j < bytes.len() && bytes[j] == b' ' {
                    j += 1;
                }
                // Skip the value: quoted (with escapes) or up to the next space.
                if j < bytes.len() && bytes[j] == b'\'' {
                    j += 1;
                    while j < bytes.len() && bytes[j] != b'\'' {
                        j += if bytes[j] == b'\\' { 2 } else { 1 };
                    }
                    j = (j + 1).min(bytes.len());
                } else {
                    while j < bytes.len() && !bytes[j].is_ascii_whitespace() {
                        j += 1;
                    }
                }
                out.push_str("password=***");
                i = j;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
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
    use tokio_postgres::config::Host;

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
        assert_eq!(u.config.get_target_session_attrs(), TargetSessionAttrs::Any);
    }

    #[test]
    fn several_hosts_parse_in_order_with_their_ports() {
        let u = DatabaseUrl::parse(
            "postgres://u:p%40ss@db-a:5432,db-b:6543,[::1]:7000/sys?target_session_attrs=read-write&sslmode=require",
        )
        .unwrap();
        assert_eq!(
            u.config.get_hosts(),
            &[
                Host::Tcp("db-a".into()),
                Host::Tcp("db-b".into()),
                Host::Tcp("::1".into())
            ]
        );
        assert_eq!(u.config.get_ports(), &[5432, 6543, 7000]);
        assert_eq!(u.config.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(
            u.config.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        assert_eq!(u.ssl_mode, SslMode::Require);
        assert_eq!(u.database(), "sys");
        assert_eq!(
            u.redacted,
            "postgres://u:***@db-a:5432,db-b:6543,[::1]:7000/sys?target_session_attrs=read-write&sslmode=require"
        );

        // A host without a port gets 5432; hostaddr pairs with the hosts by position.
        let u = DatabaseUrl::parse(
            "postgresql://u@db-a,db-b:6543/sys?hostaddr=10.0.0.1,10.0.0.2&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(u.config.get_ports(), &[5432, 6543]);
        assert_eq!(u.config.get_hostaddrs().len(), 2);
        assert_eq!(
            u.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(3))
        );
    }

    #[test]
    fn several_hosts_default_to_the_primary() {
        let u = DatabaseUrl::parse("postgres://u@db-a,db-b/sys").unwrap();
        assert_eq!(
            u.config.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        let u = DatabaseUrl::parse("postgres://u@db-a,db-b/sys?target_session_attrs=any").unwrap();
        assert_eq!(u.config.get_target_session_attrs(), TargetSessionAttrs::Any);
        let u =
            DatabaseUrl::parse("postgres://u@db-a,db-b/sys?target_session_attrs=primary").unwrap();
        assert_eq!(
            u.config.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        let u = DatabaseUrl::parse("postgres://u@db-a/sys").unwrap();
        assert_eq!(u.config.get_target_session_attrs(), TargetSessionAttrs::Any);
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
        let e = DatabaseUrl::parse("postgres://u:secret@/db").unwrap_err();
        assert!(e.to_string().contains("names no host"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = DatabaseUrl::parse("postgres://u:secret@h1,h2/db?hostaddr=10.0.0.1").unwrap_err();
        assert!(
            e.to_string().contains("2 hosts but 1 hostaddr values"),
            "{e}"
        );
        let e = DatabaseUrl::parse("postgres://u:secret@h1,h2/db?port=5433").unwrap_err();
        assert!(e.to_string().contains("2 hosts but 3 ports"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        for standby in ["read-only", "standby", "prefer-standby"] {
            let e = DatabaseUrl::parse(&format!(
                "postgres://u@h1,h2/db?target_session_attrs={standby}"
            ))
            .unwrap_err();
            assert!(e.to_string().contains("cannot take the writes"), "{e}");
        }
        let e = DatabaseUrl::parse("postgres://u@/db?hostaddr=127.0.0.1").unwrap_err();
        assert!(e.to_string().contains("hostaddr without host names"), "{e}");
        let e = DatabaseUrl::parse("postgres://u@/db?host=%2Fvar%2Frun%2Fpostgresql").unwrap_err();
        assert!(
            e.to_string()
                .contains("Unix socket folder /var/run/postgresql"),
            "{e}"
        );
        let e = DatabaseUrl::parse("postgres://u@h1,h2/db?target_session_attrs=rw").unwrap_err();
        assert!(
            e.to_string().contains("unknown target_session_attrs `rw`"),
            "{e}"
        );
    }

    #[test]
    fn redaction_hides_every_form_of_password() {
        let cases = [
            ("postgres://h/db", "postgres://h/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://u:p@h/db", "postgres://u:***@h/db"),
            ("postgres://u:@h/db", "postgres://u:***@h/db"),
            ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
            ("postgres://u:a/b?c@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u:p%40ss@h1:1,h2:2/db",
                "postgres://u:***@h1:1,h2:2/db",
            ),
            (
                "postgres://u:p@h1:1,h2:2/db?target_session_attrs=read-write",
                "postgres://u:***@h1:1,h2:2/db?target_session_attrs=read-write",
            ),
            (
                "postgres://u@h/db?password=p&sslmode=require",
                "postgres://u@h/db?password=***&sslmode=require",
            ),
            (
                "postgres://u@h1,h2/db?sslmode=require&password=p",
                "postgres://u@h1,h2/db?sslmode=require&password=***",
            ),
            (
                "postgres://u@h/db?pass%77ord=p",
                "postgres://u@h/db?pass%77ord=***",
            ),
            (
                "postgres://u:p@h/db?password=q",
                "postgres://u:***@h/db?password=***",
            ),
            ("postgres://h/db?passwords=x", "postgres://h/db?passwords=x"),
            ("host=h password=p user=u", "host=h password=*** user=u"),
            (
                "host=h password = 'a b\\' c' user=u",
                "host=h password=*** user=u",
            ),
            ("password=p", "password=***"),
            ("host=h mypassword=p", "host=h mypassword=p"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
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

    #[test]
    fn redaction_matches_what_tokio_postgres_takes_as_the_password() {
        // Whatever tokio-postgres reads as the password must not survive redaction.
        for url in [
            "postgres://u:s3/cr?et@h/db",
            "postgres://u:s3cr@et@h/db",
            "postgres://u:s3cr3t@h1:1,h2:2/db",
            "postgres://u@h/db?password=s3cr3t",
            "postgres://u@h/db?sslmode=disable&password=s3cr3t&application_name=y",
        ] {
            let config = tokio_postgres::Config::from_str(url).unwrap();
            let password = String::from_utf8_lossy(config.get_password().unwrap()).into_owned();
            assert!(password.starts_with("s3"), "{url}: {password}");
            assert!(
                !redact_url(url).contains(&password),
                "{url} → {} shows {password}",
                redact_url(url)
            );
        }
    }
}
