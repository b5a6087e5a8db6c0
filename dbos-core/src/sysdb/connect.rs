//! Opening connections, host by host.
//!
//! A URL may name several servers (`postgres://u:p@db1:5432,db2:5432/sys`): a primary and
//! its standbys, of which any may become the primary after a failover. With
//! `target_session_attrs=read-write` (the default with several hosts, see
//! [`DatabaseUrl::parse`](super::DatabaseUrl::parse)) a connection is made to the first one
//! that accepts writes. tokio-postgres can do that on its own, but it bounds only the TCP
//! handshake of each host by `connect_timeout` (a server that accepts and then never
//! answers holds the whole attempt), and when every host fails it reports only the last
//! host's error. So here each host gets its own attempt, bounded as a whole by
//! `connect_timeout` as libpq does; the host that last accepted is tried first (after a
//! failover the dead primary is not waited for on every new connection); and when no host
//! accepts, what each one answered is kept for the error message. (With
//! `load_balance_hosts=random` tokio-postgres' own random order is used instead.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use tokio_postgres::config::{Host, LoadBalanceHosts};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{
    chain_text, classify, is_connection_error, is_missing_password, tls_failure, Error, ErrorKind,
};

type TlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// Connects to the servers of a URL one after another; shared by the pool, the
/// connections outside it (executor locks) and the database-creation path.
#[derive(Clone)]
pub(crate) struct HostByHost {
    tls: MakeRustlsConnect,
    /// The host that accepted the last connection, tried first next time.
    preferred: Arc<AtomicUsize>,
    /// What each host answered in the last attempt that found none, for error messages.
    last_failure: Arc<Mutex<Option<String>>>,
}

impl HostByHost {
    pub(crate) fn new(tls: MakeRustlsConnect) -> Self {
        HostByHost {
            tls,
            preferred: Arc::new(AtomicUsize::new(0)),
            last_failure: Arc::new(Mutex::new(None)),
        }
    }

    /// Opens one connection to the first server of `config` that accepts the session.
    pub(crate) async fn connect(
        &self,
        config: &Config,
    ) -> Result<(Client, Connection<Socket, TlsStream>), tokio_postgres::Error> {
        let servers = server_count(config);
        if servers <= 1 || config.get_load_balance_hosts() == LoadBalanceHosts::Random {
            return config.connect(self.tls.clone()).await;
        }
        let first = self.preferred.load(Ordering::Relaxed) % servers;
        let mut order: Vec<usize> = std::iter::once(first)
            .chain((0..servers).filter(|&i| i != first))
            .collect();
        let Some(last) = order.pop() else {
            return config.connect(self.tls.clone()).await;
        };
        let timeout = config.get_connect_timeout().copied();
        let mut failures: Vec<String> = Vec::with_capacity(servers);
        let mut transient: Option<tokio_postgres::Error> = None;
        let mut missing_database: Option<tokio_postgres::Error> = None;
        for i in order {
            let label = host_label(config, i);
            let one = single_host(config, i);
            let attempt = one.connect(self.tls.clone());
            let result = match timeout {
                Some(t) => match tokio::time::timeout(t, attempt).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::debug!(host = %label, "no answer within the connect timeout; trying the next host");
                        failures.push(format!("{label}: no answer within {t:?}"));
                        continue;
                    }
                },
                None => attempt.await,
            };
            match result {
                Ok(connected) => return Ok(self.connected(i, &label, &failures, connected)),
                Err(e) => {
                    tracing::debug!(host = %label, error = %e, "host refused the system database connection");
                    failures.push(format!("{label}: {}", describe(&e, config, i)));
                    if is_missing_database(&e) {
                        missing_database = Some(e);
                    } else if is_connection_error(&e) {
                        transient = Some(e);
                    }
                }
            }
        }
        // The last host is bounded by the pool's create timeout: say where the attempt was
        // waiting in case it is cut short there.
        let label = host_label(config, last);
        let mut waiting = failures.clone();
        waiting.push(format!("{label}: no answer within the connect timeout"));
        self.set_failure(Some(waiting.join("; ")));
        let one = single_host(config, last);
        let e = match one.connect(self.tls.clone()).await {
            Ok(connected) => return Ok(self.connected(last, &label, &failures, connected)),
            Err(e) => e,
        };
        failures.push(format!("{label}: {}", describe(&e, config, last)));
        self.set_failure(Some(failures.join("; ")));
        // A host that says the database does not exist answers for every host (standbys
        // share the primary's catalog): the caller creates it. Otherwise a transient
        // failure on any host is what is reported, and retried: another attempt may find
        // that host back, or promoted.
        if is_missing_database(&e) {
            return Err(e);
        }
        Err(match (missing_database, transient) {
            (Some(missing), _) => missing,
            (None, Some(t)) if !is_connection_error(&e) => t,
            _ => e,
        })
    }

    /// A connection outside the pool (its task spawned), as this library's error when it
    /// fails. The whole attempt is bounded by the connect timeout once per host, as the
    /// pool's create timeout bounds a pooled one.
    pub(crate) async fn open(
        &self,
        context: &str,
        config: &Config,
    ) -> crate::Result<(Client, tokio::task::JoinHandle<()>)> {
        let attempt = HostByHost::connect(self, config);
        let connected = match config.get_connect_timeout() {
            Some(t) => {
                let bound = *t * server_count(config).max(1) as u32;
                match tokio::time::timeout(bound, attempt).await {
                    Ok(r) => r,
                    Err(_) => {
                        let detail = self
                            .last_failure(config)
                            .unwrap_or_else(|| "is the server running and reachable?".to_owned());
                        return Err(Error::new(
                            ErrorKind::Connection,
                            format!("{context}: timed out after {bound:?}: {detail}"),
                        ));
                    }
                }
            }
            None => attempt.await,
        };
        let (client, connection) = connected.map_err(|e| self.error(context, config, e))?;
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a system database connection outside the pool ended");
            }
        });
        Ok((client, task))
    }

    fn connected<T>(&self, i: usize, label: &str, skipped: &[String], connected: T) -> T {
        if !skipped.is_empty() {
            tracing::info!(host = %label, skipped = %skipped.join("; "), "connected to the system database on another host");
        }
        self.preferred.store(i, Ordering::Relaxed);
        self.set_failure(None);
        connected
    }

    fn set_failure(&self, report: Option<String>) {
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = report;
    }

    /// A connection failure as this library's error: with several hosts, the message says
    /// what each host answered.
    pub(crate) fn error(&self, context: &str, config: &Config, e: tokio_postgres::Error) -> Error {
        if server_count(config) <= 1 {
            if e.as_db_error().is_some() || tls_failure(&e).is_some() {
                return Error::db(context, e);
            }
            // Refused, unresolvable, no password: said in words, not tokio-postgres' label.
            return Error::new(
                classify(&e),
                format!("{context}: {}", describe(&e, config, 0)),
            )
            .with_source(e);
        }
        let report = self
            .last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match report {
            Some(report) => {
                // Classified as `Error::db` would: the reported host's failure decides.
                Error::new(
                    classify(&e),
                    format!("{context}: no host accepted the connection: {report}"),
                )
                .with_source(e)
            }
            None => Error::db(context, e),
        }
    }

    /// With several hosts: what each host answered in the last attempt that found none.
    pub(crate) fn last_failure(&self, config: &Config) -> Option<String> {
        if server_count(config) <= 1 {
            return None;
        }
        self.last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl deadpool_postgres::Connect for HostByHost {
    fn connect(
        &self,
        pg_config: &Config,
    ) -> BoxFuture<'_, Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>> {
        let config = pg_config.clone();
        Box::pin(async move {
            let (client, connection) = HostByHost::connect(self, &config).await?;
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    // The statement that notices retries; the outage is logged there once.
                    tracing::debug!(error = %e, "a system database connection ended");
                }
            });
            Ok((client, task))
        })
    }
}

/// How many servers `config` names.
pub(crate) fn server_count(config: &Config) -> usize {
    config.get_hosts().len().max(config.get_hostaddrs().len())
}

/// `config` reduced to its `i`-th server (host, hostaddr and port), every other setting kept.
fn single_host(config: &Config, i: usize) -> Config {
    let mut one = Config::new();
    if let Some(user) = config.get_user() {
        one.user(user);
    }
    if let Some(password) = config.get_password() {
        one.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        one.dbname(dbname);
    }
    if let Some(options) = config.get_options() {
        one.options(options);
    }
    if let Some(name) = config.get_application_name() {
        one.application_name(name);
    }
    one.ssl_mode(config.get_ssl_mode())
        .ssl_negotiation(config.get_ssl_negotiation());
    match config.get_hosts().get(i) {
        Some(Host::Tcp(host)) => {
            one.host(host);
        }
        Some(Host::Unix(path)) => {
            one.host_path(path);
        }
        None => {}
    }
    if let Some(addr) = config.get_hostaddrs().get(i) {
        one.hostaddr(*addr);
    }
    let ports = config.get_ports();
    if let Some(port) = ports.get(i).or(ports.first()) {
        one.port(*port);
    }
    if let Some(t) = config.get_connect_timeout() {
        one.connect_timeout(*t);
    }
    if let Some(t) = config.get_tcp_user_timeout() {
        one.tcp_user_timeout(*t);
    }
    one.keepalives(config.get_keepalives())
        .keepalives_idle(config.get_keepalives_idle());
    if let Some(interval) = config.get_keepalives_interval() {
        one.keepalives_interval(interval);
    }
    if let Some(retries) = config.get_keepalives_retries() {
        one.keepalives_retries(retries);
    }
    one.target_session_attrs(config.get_target_session_attrs())
        .channel_binding(config.get_channel_binding())
        .load_balance_hosts(config.get_load_balance_hosts());
    one
}

/// `host:port` of the `i`-th server, as written in the URL (no password is ever part of it).
pub(crate) fn host_label(config: &Config, i: usize) -> String {
    let ports = config.get_ports();
    let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let host = match config.get_hosts().get(i) {
        Some(Host::Tcp(h)) if h.contains(':') => format!("[{h}]"),
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => String::new(),
    };
    match config.get_hostaddrs().get(i) {
        Some(addr) if host.is_empty() => format!("{addr}:{port}"),
        Some(addr) => format!("{host} ({addr}):{port}"),
        None => format!("{host}:{port}"),
    }
}

fn is_missing_database(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME)
}

/// One host's (the `i`-th server's) failure in a few words: the server's message, or what
/// went wrong on the way there (connection refused, a host name that does not resolve, a
/// password the URL lacks) instead of tokio-postgres' label ("error connecting to server").
fn describe(e: &tokio_postgres::Error, config: &Config, i: usize) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    if is_missing_password(e) {
        return "the server asks for a password and the URL has none: put it in the URL \
                (postgres://user:PASSWORD@host:port/database, percent-encoding any special character)"
            .to_owned();
    }
    let io = std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>());
    let read_only = io.is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied);
    if read_only
        && config.get_target_session_attrs()
            == tokio_postgres::config::TargetSessionAttrs::ReadWrite
    {
        return "read-only (a standby, or a primary not promoted yet): skipped for target_session_attrs=read-write".to_owned();
    }
    if let Some(io) = io {
        if io.kind() == std::io::ErrorKind::ConnectionRefused {
            return format!(
                "connection refused: nothing listens on {} (is the server running, on that port?)",
                host_label(config, i)
            );
        }
        if io.to_string().starts_with("failed to lookup address") {
            let host = match config.get_hosts().get(i) {
                Some(Host::Tcp(h)) => h.clone(),
                _ => host_label(config, i),
            };
            return format!(
                "could not resolve the host name `{host}` (no such host? check the URL): {io}"
            );
        }
    }
    chain_text(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn a_single_host_keeps_every_setting() {
        let url = "postgres://u:p@db-a:6543/sys?application_name=app&options=-c%20x%3Dy&connect_timeout=3\
                   &keepalives=0&keepalives_idle=7&tcp_user_timeout=9&channel_binding=disable\
                   &target_session_attrs=read-write&sslmode=require&hostaddr=10.0.0.1";
        let config = Config::from_str(url).unwrap();
        assert_eq!(single_host(&config, 0), config);
    }

    #[test]
    fn each_server_keeps_its_own_host_address_and_port() {
        let config = Config::from_str(
            "postgres://u:p@db-a:5432,db-b:6543,[::1]:7000/sys?hostaddr=10.0.0.1,10.0.0.2,::1&target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(server_count(&config), 3);
        let b = single_host(&config, 1);
        assert_eq!(b.get_hosts(), &[Host::Tcp("db-b".into())]);
        assert_eq!(
            b.get_hostaddrs(),
            &["10.0.0.2".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(b.get_ports(), &[6543]);
        assert_eq!(b.get_password(), Some(&b"p"[..]));
        assert_eq!(
            b.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
        assert_eq!(host_label(&config, 1), "db-b (10.0.0.2):6543");
        assert_eq!(host_label(&config, 2), "[::1] (::1):7000");

        let one_port = Config::from_str("host=db-a,db-b port=6000 user=u dbname=sys").unwrap();
        assert_eq!(single_host(&one_port, 1).get_ports(), &[6000]);
        assert_eq!(host_label(&one_port, 1), "db-b:6000");
    }
}
