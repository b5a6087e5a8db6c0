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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
    /// Armed by [`Proxy::lose_reply_to`]: the marker, taken by the first connection whose
    /// client sends it.
    lose_reply_to: Mutex<Option<Vec<u8>>>,
    replies_lost: AtomicUsize,
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

    /// Arms a lost acknowledgement: the next time a client sends bytes containing `marker`
    /// (for example in a statement's parameter), they reach the server, but everything the
    /// server answers on that connection is dropped and the connection is cut 200 ms later.
    /// The statement commits; its client never hears so, and retries. One-shot.
    pub fn lose_reply_to(&self, marker: &[u8]) {
        *self
            .state
            .lose_reply_to
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(marker.to_vec());
    }

    /// How many replies [`lose_reply_to`](Self::lose_reply_to) dropped.
    pub fn replies_lost(&self) -> usize {
        self.state.replies_lost.load(Ordering::SeqCst)
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
    let up_dir = Direction::Up {
        state: state.clone(),
        mute: mute.clone(),
    };
    let mut up = tokio::spawn(pump(ri, wo, budget, carried.clone(), over.clone(), up_dir));
    let mut down = tokio::spawn(pump(
        ro,
        wi,
        budget,
        carried,
        over.clone(),
        Direction::Down { mute },
    ));
    let cut = tokio::select! {
        biased;
        _ = state.cut_all.notified() => true,
        _ = over.notified() => true,
        _ = &mut up => false,
        _ = &mut down => false,
    };
    up.abort();
    down.abort();
    if cut {
        state.cut.fetch_add(1, Ordering::SeqCst);
    }
}

/// Which way a pump copies, and what it watches for.
enum Direction {
    /// Client to server: watches for the armed lost-reply marker.
    Up {
        state: Arc<State>,
        mute: Arc<std::sync::atomic::AtomicBool>,
    },
    /// Server to client: drops everything once muted.
    Down {
        mute: Arc<std::sync::atomic::AtomicBool>,
    },
}

/// Copies `from` to `to` until either side closes or the connection's byte budget is spent
/// (then `over` is notified, after forwarding up to the budget).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    budget: Option<usize>,
    carried: Arc<AtomicUsize>,
    over: Arc<Notify>,
    direction: Direction,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match &direction {
            Direction::Down { mute } if mute.load(Ordering::SeqCst) => continue,
            Direction::Up { state, mute } => {
                let mut armed = state
                    .lose_reply_to
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let hit = armed.as_ref().is_some_and(|m| {
                    !m.is_empty() && buf[..n].windows(m.len()).any(|w| w == m.as_slice())
                });
                if hit {
                    *armed = None;
                    drop(armed);
                    // Muted before the statement reaches the server: none of its reply leaks.
                    mute.store(true, Ordering::SeqCst);
                    state.replies_lost.fetch_add(1, Ordering::SeqCst);
                    let over = over.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        over.notify_one();
                    });
                }
            }
            Direction::Down { .. } => {}
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
