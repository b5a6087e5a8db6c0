//! The executor's one dedicated connection that `LISTEN`s on DBOS's channels.
//!
//! It is not pooled: it lives as long as the runtime, reconnects with backoff when it breaks,
//! and says so (`Connected`, `Disconnected`), so the waiters it serves can fall back to polling
//! while it is gone and re-check everything once it is back: a notification sent while it was
//! away is lost, the row it announced is not. It is exempt from the server's
//! `idle_session_timeout` and pings every 15 s. Its backend is named
//! [`LISTENER_APPLICATION_NAME`] in `pg_stat_activity`.

use std::time::Duration;

use futures_util::future::poll_fn;
use tokio::sync::mpsc::UnboundedSender;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use super::executors::NO_IDLE_SESSION_TIMEOUT;
use super::{tls, SystemDatabase};
use crate::error::{Error, ErrorKind, Result};

/// `pg_stat_activity.application_name` of the listener connection.
pub const LISTENER_APPLICATION_NAME: &str = "dbos_listener";

/// The channels: messages (notified by the `notifications` trigger), events and streams
/// (notified by their writers after commit).
pub(crate) const NOTIFICATIONS_CHANNEL: &str = "dbos_notifications_channel";
pub(crate) const EVENTS_CHANNEL: &str = "dbos_workflow_events_channel";
pub(crate) const STREAMS_CHANNEL: &str = "dbos_streams_channel";

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(5);
/// How often the idle connection is checked, so a silently dead one is noticed.
const PING_EVERY: Duration = Duration::from_secs(15);

/// What the listener reports.
#[derive(Debug)]
pub(crate) enum ListenerEvent {
    /// Listening (again): anything sent while it was away was missed.
    Connected,
    /// A notification.
    Notification { channel: String, payload: String },
    /// The connection broke; it reconnects with backoff.
    Disconnected,
}

impl SystemDatabase {
    /// Keeps one connection listening on the three channels and reports to `events`, until
    /// `stop` is cancelled (or nobody receives the events any more).
    pub(crate) async fn listen(
        &self,
        events: UnboundedSender<ListenerEvent>,
        stop: CancellationToken,
    ) {
        let mut delay = FIRST_DELAY;
        loop {
            if stop.is_cancelled() || events.is_closed() {
                return;
            }
            match self.listen_once(&events, &stop, &mut delay).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "the notification listener is disconnected; waits poll until it is back");
                    if events.send(ListenerEvent::Disconnected).is_err() {
                        return;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => return,
            }
            delay = (delay * 2).min(MAX_DELAY);
        }
    }

    /// One connection's life: `Ok` when stopped, `Err` when the connection broke.
    async fn listen_once(
        &self,
        events: &UnboundedSender<ListenerEvent>,
        stop: &CancellationToken,
        delay: &mut Duration,
    ) -> Result<()> {
        let tls = tls::connector(&self.session)?;
        let mut config = self.session.config.clone();
        config.application_name(LISTENER_APPLICATION_NAME);
        let (client, mut connection) = tokio::select! {
            c = config.connect(tls) => c.map_err(|e| Error::db("could not connect the notification listener", e))?,
            _ = stop.cancelled() => return Ok(()),
        };
        let forward = events.clone();
        let mut driver = tokio::spawn(async move {
            loop {
                match poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        let _ = forward.send(ListenerEvent::Notification {
                            channel: n.channel().to_owned(),
                            payload: n.payload().to_owned(),
                        });
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        return Error::db("the notification listener's connection failed", e)
                    }
                    None => {
                        return Error::new(
                            ErrorKind::Connection,
                            "the notification listener's connection closed",
                        )
                    }
                }
            }
        });
        let result = async {
            let listen = format!(
                "{NO_IDLE_SESSION_TIMEOUT}; LISTEN {NOTIFICATIONS_CHANNEL}; LISTEN {EVENTS_CHANNEL}; LISTEN {STREAMS_CHANNEL}"
            );
            tokio::select! {
                r = client.batch_execute(&listen) => r.map_err(|e| Error::db("could not LISTEN", e))?,
                _ = stop.cancelled() => return Ok(()),
            }
            tracing::debug!("the notification listener is listening");
            *delay = FIRST_DELAY;
            if events.send(ListenerEvent::Connected).is_err() {
                return Ok(());
            }
            loop {
                tokio::select! {
                    ended = &mut driver => {
                        return Err(ended.unwrap_or_else(|_| Error::new(ErrorKind::Connection, "the listener's driver stopped")));
                    }
                    _ = tokio::time::sleep(PING_EVERY) => {
                        match tokio::time::timeout(PING_EVERY, client.simple_query("SELECT 1")).await {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => return Err(Error::db("the notification listener's connection failed", e)),
                            Err(_) => return Err(Error::new(ErrorKind::Connection, "the notification listener's connection stopped answering")),
                        }
                    }
                    _ = stop.cancelled() => return Ok(()),
                }
            }
        }
        .await;
        driver.abort();
        result
    }
}
