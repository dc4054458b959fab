//! Accepting connections so that strangers cannot lock the owner out.
//!
//! Without a token nobody can read a page, but anyone who can reach the port can open
//! sockets and hold them: idle, half-sent headers, a byte a second. Left alone, 1 100 of
//! them under the usual 1 024 open-file limit make `accept` fail with `EMFILE` and the
//! owner's request is never answered. So:
//!
//! - **Timeouts.** hyper's header-read timeout is armed whenever a connection waits for
//!   a request head: before the first request (idle or slow-loris sockets), while headers
//!   trickle in, and between keep-alive requests — so it is also the idle timeout. A
//!   response in progress (the owner's server-sent event streams) is never waiting for a
//!   head, so it is never idle.
//! - **Caps.** At most `max_per_peer` connections per IP and `max_connections` in all,
//!   the latter bounded by the open-file limit (raised from soft to hard at start) minus
//!   the descriptors already open and a reserve for the state, logs and documents.
//! - **Shedding.** A connection is *authenticated* once one of its requests passed the
//!   token check ([`ConnHandle::authenticate`], called by the guard). When a cap is
//!   reached, the oldest unauthenticated connection (of that peer, or of all) is closed to
//!   make room; authenticated ones are never shed. If there is nothing to shed, the new
//!   connection is closed at once.
//! - **Accept errors never stop the loop.** Connection-level errors are skipped; running
//!   out of descriptors sheds the oldest stranger and waits (10 ms, doubling to 0.5 s)
//!   instead of spinning.
//!
//! Owns: the accept loop, the per-connection tasks and their registry. Must not: know
//! about tokens or pages (the router and its guard do).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

/// Connection limits; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnLimits {
    /// Connections in all (further bounded by the open-file limit).
    pub max_connections: usize,
    /// Connections from one IP address.
    pub max_per_peer: usize,
    /// Time a connection may take to send a request head, and may stay idle between
    /// requests.
    pub header_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 1024,
            max_per_peer: 256,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Descriptors kept free for everything but connections (state reads, the log, spec
/// documents, action children, the watcher).
const RESERVED_FDS: u64 = 64;

/// One accepted connection.
#[derive(Debug)]
struct Conn {
    id: u64,
    peer: IpAddr,
    opened: Instant,
    authenticated: AtomicBool,
    /// Wakes the connection's task to close it (it was shed).
    close: Notify,
}

/// A connection as request handlers see it (in the request's extensions).
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle(Arc<Conn>);

impl ConnHandle {
    /// A request on this connection passed the token check: never shed it.
    pub(crate) fn authenticate(&self) {
        self.0.authenticated.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct Registry {
    conns: HashMap<u64, Arc<Conn>>,
    per_peer: HashMap<IpAddr, usize>,
    next_id: u64,
}

impl Registry {
    /// The oldest unauthenticated connection (of `peer`, if given).
    fn victim(&self, peer: Option<IpAddr>) -> Option<u64> {
        self.conns
            .values()
            .filter(|c| !c.authenticated.load(Ordering::Relaxed))
            .filter(|c| peer.is_none_or(|p| c.peer == p))
            .min_by_key(|c| (c.opened, c.id))
            .map(|c| c.id)
    }

    fn remove(&mut self, id: u64) -> Option<Arc<Conn>> {
        let c = self.conns.remove(&id)?;
        if let Some(n) = self.per_peer.get_mut(&c.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_peer.remove(&c.peer);
            }
        }
        Some(c)
    }

    /// Close (and forget) one connection: its task drops the socket at once.
    fn shed(&mut self, id: u64) {
        if let Some(c) = self.remove(id) {
            c.close.notify_one();
        }
    }

    /// Make room for a connection from `peer` under `limits` (shedding strangers) and
    /// register it; None when there is no room.
    fn admit(&mut self, peer: IpAddr, max_total: usize, max_per_peer: usize) -> Option<Arc<Conn>> {
        if self.per_peer.get(&peer).copied().unwrap_or(0) >= max_per_peer {
            let id = self.victim(Some(peer))?;
            self.shed(id);
        }
        if self.conns.len() >= max_total {
            let id = self.victim(None)?;
            self.shed(id);
        }
        self.next_id += 1;
        let c = Arc::new(Conn {
            id: self.next_id,
            peer,
            opened: Instant::now(),
            authenticated: AtomicBool::new(false),
            close: Notify::new(),
        });
        self.conns.insert(c.id, Arc::clone(&c));
        *self.per_peer.entry(peer).or_default() += 1;
        Some(c)
    }
}

type Shared = Arc<Mutex<Registry>>;

fn lock(r: &Shared) -> std::sync::MutexGuard<'_, Registry> {
    r.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Raise the soft open-file limit to the hard one (so strangers' sockets do not exhaust
/// a low default); returns the soft limit in force.
pub(crate) fn raise_nofile_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

/// Descriptors open in this process now (Linux; a guess elsewhere).
fn open_fds() -> u64 {
    crate::fs::read_dir("/proc/self/fd").map_or(32, |d| d.count() as u64)
}

/// How many connections fit: the configured cap, bounded by the open-file limit.
fn connection_budget(configured: usize, soft_limit: Option<u64>) -> usize {
    let Some(soft) = soft_limit else {
        return configured;
    };
    let free = soft.saturating_sub(open_fds()).saturating_sub(RESERVED_FDS);
    configured
        .min(usize::try_from(free).unwrap_or(usize::MAX))
        .max(16)
}

/// Accept errors that concern one connection only: skip them and accept the next.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Serve `router` on `listener` until `stopping` turns true; then let every connection
/// finish its response (event streams end by themselves on shutdown) for at most
/// `grace`.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    mut stopping: watch::Receiver<bool>,
    grace: Duration,
) {
    let soft = raise_nofile_limit();
    let max_total = connection_budget(limits.max_connections, soft);
    let max_per_peer = limits.max_per_peer.min(max_total).max(1);
    tracing::debug!(
        "dashboard: at most {max_total} connections ({max_per_peer} per address), open-file limit {soft:?}"
    );
    let registry: Shared = Arc::default();
    let drained = Arc::new(Notify::new());
    let mut backoff = Duration::from_millis(10);
    let mut last_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = stopping.wait_for(|s| *s) => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                let conn = lock(&registry).admit(peer.ip(), max_total, max_per_peer);
                match conn {
                    Some(conn) => {
                        tokio::spawn(connection(
                            stream,
                            conn,
                            router.clone(),
                            limits.header_timeout,
                            Arc::clone(&registry),
                            Arc::clone(&drained),
                            stopping.clone(),
                        ));
                    }
                    // Everything is held by the owner: refuse the newcomer.
                    None => drop(stream),
                }
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // Out of descriptors (or memory): make room by closing the oldest
                // stranger, and wait a little so the loop does not spin on a backlog
                // it cannot take.
                {
                    let mut r = lock(&registry);
                    if let Some(id) = r.victim(None) {
                        r.shed(id);
                    }
                }
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!("dashboard: cannot accept a connection: {e}; retrying");
                    last_warning = Some(Instant::now());
                }
                tokio::select! {
                    _ = stopping.wait_for(|s| *s) => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }
    drop(listener);
    let wait = async {
        loop {
            let notified = drained.notified();
            if lock(&registry).conns.is_empty() {
                return;
            }
            notified.await;
        }
    };
    let _ = tokio::time::timeout(grace, wait).await;
}

/// Serve one connection until it ends, is shed, or the server stops.
async fn connection(
    stream: TcpStream,
    conn: Arc<Conn>,
    router: Router,
    header_timeout: Duration,
    registry: Shared,
    drained: Arc<Notify>,
    mut stopping: watch::Receiver<bool>,
) {
    let handle = ConnHandle(Arc::clone(&conn));
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(handle.clone());
        let svc = TowerToHyperService::new(router.clone());
        async move { hyper::service::Service::call(&svc, req).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let served = builder.serve_connection(TokioIo::new(stream), service);
    let mut served = std::pin::pin!(served);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            _ = served.as_mut() => break,
            () = conn.close.notified() => break,
            _ = stopping.wait_for(|s| *s), if !shutting_down => {
                served.as_mut().graceful_shutdown();
                shutting_down = true;
            }
        }
    }
    let mut r = lock(&registry);
    r.remove(conn.id);
    if r.conns.is_empty() {
        drained.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn strangers_are_shed_oldest_first_and_the_owner_never() {
        let mut r = Registry::default();
        let owner = r.admit(ip(1), 3, 3).unwrap();
        ConnHandle(Arc::clone(&owner)).authenticate();
        let s1 = r.admit(ip(1), 3, 3).unwrap();
        let s2 = r.admit(ip(2), 3, 3).unwrap();
        // Full: the newcomer takes the oldest stranger's place.
        let s3 = r.admit(ip(2), 3, 3).unwrap();
        assert!(!r.conns.contains_key(&s1.id), "oldest stranger shed");
        assert!(r.conns.contains_key(&owner.id));
        assert_eq!(r.conns.len(), 3);
        // Per peer: ip(2) is at its cap of 2, so its own oldest goes, not ip(1)'s.
        let s4 = r.admit(ip(2), 10, 2).unwrap();
        assert!(!r.conns.contains_key(&s2.id));
        assert!(r.conns.contains_key(&s3.id) && r.conns.contains_key(&s4.id));
        // Only owners left at the cap: refused.
        for c in [&s3, &s4] {
            ConnHandle(Arc::clone(c)).authenticate();
        }
        assert!(r.admit(ip(3), 3, 3).is_none());
        assert_eq!(r.per_peer.get(&ip(2)), Some(&2));
        r.remove(s3.id);
        r.remove(s4.id);
        assert_eq!(r.per_peer.get(&ip(2)), None, "counts return to zero");
    }

    #[test]
    fn the_budget_follows_the_open_file_limit() {
        assert_eq!(connection_budget(1024, None), 1024);
        let open = open_fds();
        assert_eq!(
            connection_budget(1024, Some(open + RESERVED_FDS + 100)),
            100
        );
        assert_eq!(connection_budget(1024, Some(10)), 16, "never below a floor");
        assert_eq!(connection_budget(50, Some(1_000_000)), 50);
    }

    #[test]
    fn accept_errors_are_classified() {
        assert!(is_connection_error(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        assert!(!is_connection_error(&io::Error::from_raw_os_error(
            nix::libc::EMFILE
        )));
    }
}
