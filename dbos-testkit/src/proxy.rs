//! A TCP proxy in front of a Postgres server that cuts connections on command: what a
//! network blip, a load balancer timing out or a failover looks like to a client.
//!
//! ```no_run
//! # async fn demo(db: dbos_testkit::TestDatabase) {
//! use dbos_testkit::proxy::Proxy;
//!
//! let proxy = Proxy::start(db.cluster().postgres().port()).await;
//! let url = proxy.url(&db.url()); // the same database, through the proxy
//! proxy.cut_after(&[4_000, 20_000]); // the next two connections die mid-conversation
//! // ... connect with `url` ...
//! proxy.cut_all(); // every open connection dies now
//! # let _ = url;
//! # }
//! ```
//!
//! It also reads the Postgres messages clients send, so a test can cut at a precise point of
//! the conversation: [`Proxy::cut_when_sent`] (the server goes away just before a statement
//! carrying a marker reaches it) and [`Proxy::cut_after_commit`] (a `COMMIT` reaches the
//! server but its acknowledgement never reaches the client).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// A running proxy; dropping it stops accepting (open connections live on until cut).
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    target_port: u16,
    state: Arc<State>,
    accept_task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct State {
    /// For the next connections: cut each after this many bytes (both directions).
    cut_after: Mutex<VecDeque<usize>>,
    /// Cuts every open connection when notified.
    cut_all: Notify,
    /// While set, new connections are closed at once.
    refusing: std::sync::atomic::AtomicBool,
    accepted: AtomicUsize,
    cut: AtomicUsize,
    /// Armed by [`Proxy::cut_when_sent`].
    cut_on: Mutex<Option<Vec<u8>>>,
    /// Armed by [`Proxy::cut_after_commit`]: the marker, the delay, and how many more
    /// commits to hold.
    commit_trigger: Mutex<Option<(Vec<u8>, Duration, usize)>>,
    /// Armed by [`Proxy::lose_reply_to`].
    lose_reply_to: Mutex<Option<Vec<u8>>>,
    /// How many armed triggers fired.
    fired: AtomicUsize,
    /// How many statements clients sent (simple queries and extended-protocol executions).
    statements: AtomicUsize,
}

impl Proxy {
    /// Starts a proxy on a free local port, forwarding to `127.0.0.1:target_port`.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("dbos-testkit: cannot bind the proxy");
        let port = listener
            .local_addr()
            .expect("dbos-testkit: proxy address")
            .port();
        let state = Arc::new(State::default());
        let st = state.clone();
        let accept_task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                st.accepted.fetch_add(1, Ordering::SeqCst);
                if st.refusing.load(Ordering::SeqCst) {
                    st.cut.fetch_add(1, Ordering::SeqCst);
                    drop(inbound);
                    continue;
                }
                let budget = st
                    .cut_after
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop_front();
                tokio::spawn(forward(st.clone(), inbound, target_port, budget));
            }
        });
        Proxy {
            port,
            target_port,
            state,
            accept_task,
        }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `url` (a URL of the proxied server) rewritten to go through the proxy, with TLS off
    /// so byte counts are those of the Postgres protocol.
    pub fn url(&self, url: &str) -> String {
        let through = url.replace(
            &format!(":{}/", self.target_port),
            &format!(":{}/", self.port),
        );
        let sep = if through.contains('?') { '&' } else { '?' };
        format!("{through}{sep}sslmode=disable")
    }

    /// The next connections are each cut after carrying the given number of bytes (in
    /// both directions together), in order; later ones are not cut.
    pub fn cut_after(&self, bytes: &[usize]) {
        self.state
            .cut_after
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(bytes.iter().copied());
    }

    /// Cuts every open connection now.
    pub fn cut_all(&self) {
        self.state.cut_all.notify_waiters();
    }

    /// While on, new connections are accepted and closed at once (the server seems down).
    pub fn refuse(&self, on: bool) {
        self.state.refusing.store(on, Ordering::SeqCst);
        if on {
            self.cut_all();
        }
    }

    /// While on, new connections are accepted and closed at once, and open ones live on:
    /// a pool keeps working while anything that reconnects (a listener) cannot.
    pub fn refuse_new(&self, on: bool) {
        self.state.refusing.store(on, Ordering::SeqCst);
    }

    /// The first client message containing `marker` (in a statement's text or its
    /// parameters) is not forwarded: its connection is cut, every other open connection too,
    /// and new connections are refused until [`refuse(false)`](Self::refuse). To the client
    /// the server went away just before that statement.
    pub fn cut_when_sent(&self, marker: &[u8]) {
        *lock(&self.state.cut_on) = Some(marker.to_vec());
    }

    /// On the first connection whose transaction (since its `BEGIN`) sent `marker`, the
    /// `COMMIT` is held: the client's side of the connection is cut at once, and the `COMMIT`
    /// reaches the server `delay` later (the server then commits; the client never hears of
    /// it). A lost commit acknowledgement, with the transaction still in progress on the
    /// server for `delay` after the client noticed.
    pub fn cut_after_commit(&self, marker: &[u8], delay: Duration) {
        self.cut_after_commits(marker, delay, 1);
    }

    /// [`cut_after_commit`](Self::cut_after_commit) for the first `times` connections whose
    /// transaction sent `marker` (each `COMMIT` held for `delay`).
    pub fn cut_after_commits(&self, marker: &[u8], delay: Duration, times: usize) {
        *lock(&self.state.commit_trigger) = (times > 0).then(|| (marker.to_vec(), delay, times));
    }

    /// A lost acknowledgement of a statement outside an explicit transaction: the first
    /// client message containing `marker` reaches the server, but everything the server
    /// answers on that connection is dropped, and the connection is cut 200 ms later. The
    /// statement commits; its client never hears so, and retries.
    pub fn lose_reply_to(&self, marker: &[u8]) {
        *lock(&self.state.lose_reply_to) = Some(marker.to_vec());
    }

    /// How many armed triggers ([`cut_when_sent`](Self::cut_when_sent),
    /// [`cut_after_commit`](Self::cut_after_commit), [`lose_reply_to`](Self::lose_reply_to))
    /// fired.
    pub fn fired(&self) -> usize {
        self.state.fired.load(Ordering::SeqCst)
    }

    /// How many statements the clients sent through the proxy, on every connection: each
    /// simple query (`Q`) and each execution of a prepared or unnamed statement (`E`) counts
    /// one; preparing a statement counts nothing. A test can bound the round trips an
    /// operation makes.
    pub fn statements(&self) -> usize {
        self.state.statements.load(Ordering::SeqCst)
    }

    /// How many connections the proxy accepted.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// How many connections the proxy cut or refused.
    pub fn cut(&self) -> usize {
        self.state.cut.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.state.cut_all.notify_waiters();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn forward(state: Arc<State>, inbound: TcpStream, target_port: u16, budget: Option<usize>) {
    let Ok(outbound) = TcpStream::connect(("127.0.0.1", target_port)).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (ri, wi) = inbound.into_split();
    let (ro, wo) = outbound.into_split();
    let carried = Arc::new(AtomicUsize::new(0));
    let over = Arc::new(Notify::new());
    let mute = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut up = tokio::spawn(pump_frontend(
        state.clone(),
        ri,
        wo,
        budget,
        carried.clone(),
        over.clone(),
        mute.clone(),
    ));
    let mut down = tokio::spawn(pump(ro, wi, budget, carried, over.clone(), mute));
    let (cut, held) = tokio::select! {
        biased;
        _ = state.cut_all.notified() => (true, None),
        _ = over.notified() => (true, None),
        r = &mut up => match r {
            Ok(Stop::Held(commit)) => (true, Some(commit)),
            Ok(Stop::Cut) => (true, None),
            _ => (false, None),
        },
        _ = &mut down => (false, None),
    };
    up.abort();
    down.abort();
    if cut {
        state.cut.fetch_add(1, Ordering::SeqCst);
    }
    if let Some(HeldCommit {
        mut to,
        message,
        delay,
    }) = held
    {
        // The client's side is gone (both its halves dropped with the pumps); the server
        // gets the COMMIT later, and its answer goes nowhere.
        tokio::time::sleep(delay).await;
        let _ = to.write_all(&message).await;
        let _ = to.flush().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A `COMMIT` held back from the server.
struct HeldCommit {
    to: tokio::net::tcp::OwnedWriteHalf,
    message: Vec<u8>,
    delay: Duration,
}

/// Why the client-to-server pump stopped early.
enum Stop {
    /// The client or the server closed, or the byte budget ran out.
    Closed,
    /// A [`Proxy::cut_when_sent`] marker was seen: cut everything.
    Cut,
    /// A [`Proxy::cut_after_commit`] trigger fired: cut the client, send this later.
    Held(HeldCommit),
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Copies the client's messages to the server one by one, watching for armed triggers
/// (and the byte budget, as [`pump`] does).
async fn pump_frontend(
    state: Arc<State>,
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    budget: Option<usize>,
    carried: Arc<AtomicUsize>,
    over: Arc<Notify>,
    mute: Arc<std::sync::atomic::AtomicBool>,
) -> Stop {
    // SSLRequest and GSSENCRequest: the client sends its startup message after the answer.
    const SSL_REQUEST: u32 = 80_877_103;
    const GSSENC_REQUEST: u32 = 80_877_104;
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut started = false;
    let mut marker_in_transaction = false;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return Stop::Closed,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        loop {
            let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            let (total, kind, code) = if started {
                if pending.len() < 5 {
                    break;
                }
                (1 + be32(&pending[1..5]), pending[0], 0)
            } else {
                if pending.len() < 8 {
                    break;
                }
                (be32(&pending[0..4]), 0, be32(&pending[4..8]) as u32)
            };
            if pending.len() < total.max(1) {
                break;
            }
            let message: Vec<u8> = pending.drain(..total.max(1)).collect();
            if !started {
                started = code != SSL_REQUEST && code != GSSENC_REQUEST;
            } else {
                if kind == b'Q' || kind == b'E' {
                    state.statements.fetch_add(1, Ordering::SeqCst);
                }
                let cut_marker = lock(&state.cut_on).clone();
                if let Some(marker) = cut_marker {
                    if contains(&message, &marker) {
                        *lock(&state.cut_on) = None;
                        state.fired.fetch_add(1, Ordering::SeqCst);
                        state.refusing.store(true, Ordering::SeqCst);
                        state.cut_all.notify_waiters();
                        return Stop::Cut;
                    }
                }
                let lose_marker = lock(&state.lose_reply_to).clone();
                if let Some(marker) = lose_marker {
                    if contains(&message, &marker) {
                        *lock(&state.lose_reply_to) = None;
                        state.fired.fetch_add(1, Ordering::SeqCst);
                        // Muted before the statement reaches the server: none of its reply
                        // leaks to the client.
                        mute.store(true, Ordering::SeqCst);
                        let over = over.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            over.notify_one();
                        });
                    }
                }
                let commit_trigger = lock(&state.commit_trigger).clone();
                if let Some((marker, delay, _)) = commit_trigger {
                    if contains(&message, &marker) {
                        marker_in_transaction = true;
                    }
                    if kind == b'Q' {
                        let text = String::from_utf8_lossy(&message[5..])
                            .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                            .to_ascii_uppercase();
                        if text.starts_with("BEGIN")
                            || text.starts_with("START TRANSACTION")
                            || text.starts_with("ROLLBACK")
                        {
                            marker_in_transaction = false;
                        } else if text.starts_with("COMMIT") && marker_in_transaction {
                            {
                                let mut trigger = lock(&state.commit_trigger);
                                match trigger.as_mut() {
                                    Some((_, _, left)) if *left > 1 => *left -= 1,
                                    _ => *trigger = None,
                                }
                            }
                            state.fired.fetch_add(1, Ordering::SeqCst);
                            return Stop::Held(HeldCommit { to, message, delay });
                        }
                    }
                }
            }
            if let Some(limit) = budget {
                let m = message.len();
                let before = carried.fetch_add(m, Ordering::SeqCst);
                if before + m >= limit {
                    let keep = limit.saturating_sub(before).min(m);
                    let _ = to.write_all(&message[..keep]).await;
                    over.notify_one();
                    return Stop::Closed;
                }
            }
            if to.write_all(&message).await.is_err() {
                return Stop::Closed;
            }
        }
    }
}

/// Copies `from` to `to` until either side closes or the connection's byte budget is spent
/// (then `over` is notified, after forwarding up to the budget); drops everything once
/// `mute` is set.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    budget: Option<usize>,
    carried: Arc<AtomicUsize>,
    over: Arc<Notify>,
    mute: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if mute.load(Ordering::SeqCst) {
            continue;
        }
        if let Some(limit) = budget {
            let before = carried.fetch_add(n, Ordering::SeqCst);
            if before + n >= limit {
                let keep = limit.saturating_sub(before).min(n);
                let _ = to.write_all(&buf[..keep]).await;
                over.notify_one();
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
