//! Bounds on the connections one listener accepts, so that clients that connect and then say
//! nothing cannot hold a part's connections (or the process's descriptors) for good:
//!
//! - a deadline for the first request, counted from the accept (nginx's
//!   `client_header_timeout`; CoreDNS's 2 s read timeout for a first query over TCP);
//! - an idle timeout, counted from the end of the last request when none is in progress
//!   (nginx's `keepalive_timeout`; CoreDNS's 8 s TCP idle timeout, RFC 7766 §6.2.3);
//! - a cap on open connections. At the cap a new connection takes the place of the one that
//!   has been idle longest (one still waiting for its first request counts as idle since it
//!   was accepted), which is closed: RFC 7766 §6.2.3 lets a server under load close idle
//!   connections, and idle clients can then never lock others out. When every open connection
//!   has a request in progress, the new connection is closed at once instead. The idle
//!   connections are kept ordered by when they became idle, so finding the one idle longest
//!   takes O(log n) under the lock, not a scan of every connection.
//!
//! A request is in progress from the moment its head (or, for DNS, the whole query) has arrived
//! until its answer is ready; [`Connection::request`] marks one. [`Connection::expired`] resolves
//! once the connection should be closed, and says why.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The bounds of one listener's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long a new connection has to deliver its first request.
    pub first_request: Duration,
    /// How long a connection may stay open with no request in progress.
    pub idle: Duration,
    /// Connections open at once; at least 1.
    pub max_connections: usize,
}

impl Limits {
    /// The admin server's: nginx's `client_header_timeout` (60 s) and `keepalive_timeout`
    /// (75 s, longer than Prometheus's default 60 s scrape interval, so a scraper keeps its
    /// connection), and a cap of 256 of its own.
    pub const ADMIN: Limits = Limits {
        first_request: Duration::from_secs(60),
        idle: Duration::from_secs(75),
        max_connections: 256,
    };
}

/// Why a connection is to be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// No first request within [`Limits::first_request`].
    FirstRequest,
    /// No request in progress for [`Limits::idle`].
    Idle,
    /// Closed to make room for a new connection at the cap.
    Evicted,
}

impl std::fmt::Display for Expiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expiry::FirstRequest => "no first request in time",
            Expiry::Idle => "idle for too long",
            Expiry::Evicted => "closed at the connection limit to make room for a new one",
        })
    }
}

/// The open connections of one listener.
#[derive(Clone, Debug)]
pub struct Connections {
    limits: Limits,
    open: Arc<Mutex<Open>>,
}

#[derive(Debug, Default)]
struct Open {
    next: u64,
    by_id: HashMap<u64, Arc<watch::Sender<State>>>,
    /// `(since, id)` of each connection in `by_id` with no request in progress: the first is
    /// the one idle longest. Changed only under the lock, with the connection's `State`.
    idle: BTreeSet<(Instant, u64)>,
}

impl Open {
    /// Takes a connection out of the count (and the idle order) with its state as it is now.
    fn remove(&mut self, id: u64) {
        if let Some(state) = self.by_id.remove(&id) {
            let s = *state.borrow();
            if s.requests == 0 {
                self.idle.remove(&(s.since, id));
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct State {
    /// Requests in progress.
    requests: usize,
    /// When the connection was accepted, or its last request ended.
    since: Instant,
    /// Whether a request has ended yet (which deadline applies).
    served: bool,
    evicted: bool,
}

impl Connections {
    pub fn new(limits: Limits) -> Connections {
        Connections {
            limits,
            open: Arc::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        lock(&self.open)
    }

    /// Takes a newly accepted connection in. At the cap the connection idle longest is told to
    /// close (through its [`Connection::expired`]) and leaves the count at once; when none is
    /// idle, `None`: the caller closes the new connection.
    pub fn admit(&self) -> Option<Connection> {
        let mut open = self.lock();
        if open.by_id.len() >= self.limits.max_connections.max(1) {
            let (_, oldest) = open.idle.pop_first()?;
            if let Some(state) = open.by_id.remove(&oldest) {
                state.send_modify(|s| s.evicted = true);
            }
        }
        let id = open.next;
        open.next += 1;
        let since = Instant::now();
        let state = Arc::new(watch::Sender::new(State {
            requests: 0,
            since,
            served: false,
            evicted: false,
        }));
        open.by_id.insert(id, state.clone());
        open.idle.insert((since, id));
        Some(Connection {
            id,
            state,
            limits: self.limits,
            open: self.open.clone(),
        })
    }
}

/// One admitted connection; dropping it takes it out of the count.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    state: Arc<watch::Sender<State>>,
    limits: Limits,
    open: Arc<Mutex<Open>>,
}

impl Connection {
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Marks a request in progress until the returned guard is dropped.
    pub fn request(&self) -> InProgress {
        let mut open = lock(&self.open);
        self.state.send_modify(|s| {
            if s.requests == 0 {
                open.idle.remove(&(s.since, self.id));
            }
            s.requests += 1;
        });
        InProgress {
            id: self.id,
            state: self.state.clone(),
            open: self.open.clone(),
        }
    }

    /// Resolves once the connection should be closed: its first request or the next did not
    /// come in time, or it was evicted at the cap. Never while a request is in progress.
    pub async fn expired(&self) -> Expiry {
        let mut rx = self.state.subscribe();
        loop {
            let state = *rx.borrow_and_update();
            if state.evicted {
                return Expiry::Evicted;
            }
            if state.requests > 0 {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                continue;
            }
            let (wait, expiry) = if state.served {
                (self.limits.idle, Expiry::Idle)
            } else {
                (self.limits.first_request, Expiry::FirstRequest)
            };
            tokio::select! {
                () = tokio::time::sleep_until(state.since + wait) => return expiry,
                // The sender lives as long as `self`; a change means look again.
                _ = rx.changed() => {}
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        lock(&self.open).remove(self.id);
    }
}

fn lock(open: &Mutex<Open>) -> std::sync::MutexGuard<'_, Open> {
    open.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request in progress on a [`Connection`]; its end starts the idle timeout.
#[derive(Debug)]
pub struct InProgress {
    id: u64,
    state: Arc<watch::Sender<State>>,
    open: Arc<Mutex<Open>>,
}

impl Drop for InProgress {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        // Still counted (not evicted, its connection not dropped): back in the idle order once
        // no request is left.
        let counted = open.by_id.contains_key(&self.id);
        let now = Instant::now();
        self.state.send_modify(|s| {
            s.requests = s.requests.saturating_sub(1);
            s.since = now;
            s.served = true;
            if s.requests == 0 && counted {
                open.idle.insert((now, self.id));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    const LIMITS: Limits = Limits {
        first_request: Duration::from_secs(2),
        idle: Duration::from_secs(8),
        max_connections: 2,
    };

    /// Whether `expired` has resolved, without waiting.
    fn now_or_never(conn: &Connection) -> Option<Expiry> {
        let fut = conn.expired();
        let mut fut = std::pin::pin!(fut);
        let waker = std::task::Waker::noop();
        match fut
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker))
        {
            std::task::Poll::Ready(e) => Some(e),
            std::task::Poll::Pending => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_request_has_a_deadline_then_each_idle_spell() {
        let connections = Connections::new(LIMITS);
        let conn = connections.admit().unwrap();
        let start = Instant::now();
        assert_eq!(conn.expired().await, Expiry::FirstRequest);
        assert_eq!(start.elapsed(), LIMITS.first_request);

        let conn = connections.admit().unwrap();
        let request = conn.request();
        // In progress: no deadline at all, however long it takes.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(now_or_never(&conn), None);
        drop(request);
        let ended = Instant::now();
        assert_eq!(conn.expired().await, Expiry::Idle);
        assert_eq!(ended.elapsed(), LIMITS.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_idle_makes_room_and_busy_ones_never_do() {
        let connections = Connections::new(LIMITS);
        let a = connections.admit().unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let b = connections.admit().unwrap();
        assert_eq!(connections.len(), 2);

        // Full: a, idle longest, goes.
        let c = connections.admit().unwrap();
        assert_eq!(now_or_never(&a), Some(Expiry::Evicted));
        assert_eq!(now_or_never(&b), None);
        assert_eq!(connections.len(), 2);
        drop(a);
        assert_eq!(
            connections.len(),
            2,
            "an evicted connection is no longer counted"
        );

        // Both busy: the newcomer is turned away and nobody is evicted.
        let (_rb, _rc) = (b.request(), c.request());
        assert!(connections.admit().is_none());
        assert_eq!(now_or_never(&b), None);
        assert_eq!(now_or_never(&c), None);

        drop(c);
        assert_eq!(connections.len(), 1);
        assert!(connections.admit().is_some());
    }

    /// The idle order holds exactly the counted connections with no request in progress, each
    /// under the time it became idle.
    fn assert_idle_order_consistent(connections: &Connections) {
        let open = connections.lock();
        let expected: BTreeSet<(Instant, u64)> = open
            .by_id
            .iter()
            .filter_map(|(id, state)| {
                let s = *state.borrow();
                (s.requests == 0).then_some((s.since, *id))
            })
            .collect();
        assert_eq!(open.idle, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_longest_counts_from_the_end_of_the_last_request_not_the_accept() {
        let connections = Connections::new(LIMITS);
        let a = connections.admit().unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let b = connections.admit().unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        // a, accepted first, served a request since: b has been idle longer.
        drop(a.request());
        assert_idle_order_consistent(&connections);
        let _c = connections.admit().unwrap();
        assert_eq!(now_or_never(&b), Some(Expiry::Evicted));
        assert_eq!(now_or_never(&a), None);
        assert_idle_order_consistent(&connections);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_busy_again_is_not_chosen_until_idle_once_more() {
        let connections = Connections::new(LIMITS);
        let a = connections.admit().unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let b = connections.admit().unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        // a is the oldest, but busy: b goes.
        let busy = a.request();
        let c = connections.admit().unwrap();
        assert_eq!(now_or_never(&b), Some(Expiry::Evicted));
        assert_eq!(now_or_never(&a), None);
        drop(b);
        tokio::time::advance(Duration::from_millis(10)).await;
        // a idle again, now the newest idle one: c, idle since its accept, goes.
        drop(busy);
        assert_idle_order_consistent(&connections);
        let _d = connections.admit().unwrap();
        assert_eq!(now_or_never(&c), Some(Expiry::Evicted));
        assert_eq!(now_or_never(&a), None);
        assert_idle_order_consistent(&connections);
    }

    /// Requests that overlap, end in any order, outlive their connection or its eviction, keep
    /// the idle order in step with the connections' states.
    #[tokio::test(start_paused = true)]
    async fn the_idle_order_follows_every_change() {
        let connections = Connections::new(Limits {
            max_connections: 4,
            ..LIMITS
        });
        let mut conns: Vec<Connection> = Vec::new();
        let mut requests: Vec<InProgress> = Vec::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let pick = (seed >> 8) as usize;
            match seed % 5 {
                0 => conns.extend(connections.admit()),
                1 if !conns.is_empty() => {
                    let i = pick % conns.len();
                    requests.push(conns[i].request());
                }
                2 if !requests.is_empty() => drop(requests.swap_remove(pick % requests.len())),
                3 if !conns.is_empty() => drop(conns.swap_remove(pick % conns.len())),
                _ => tokio::time::advance(Duration::from_millis(1 + (pick % 3) as u64)).await,
            }
            assert_idle_order_consistent(&connections);
            assert!(connections.len() <= 4);
        }
    }
}
