//! Upstream connections of the fast path that outlive their client connection: one pool per
//! worker (a connection stays with the runtime that polls its socket), by endpoint, as
//! nginx's upstream `keepalive`. A client connection keeps its own upstream connection while
//! it lives; when it closes (or needs another endpoint), an idle one is parked here for the
//! next client connection to that endpoint, so short client connections do not open and
//! close an upstream connection each.
//!
//! [`Kept`] is what one client connection keeps for itself, a few by endpoint.
//!
//! A parked connection is not polled. Before one is handed out, a non-blocking read checks
//! that the upstream has neither closed it nor sent anything since (either way it is
//! dropped); one parked longer than the idle limit is dropped too (the upstream may be
//! closing it), and a sweep closes those nobody took.
//!
//! What it may touch: the connections parked in it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::quiet::Quiet;
use super::relay::Side;

/// An upstream connection of the fast path: its timers and its read buffer. Plain TCP for
/// the gateway; the sidecar's may be mutual TLS over it. Boxed once, as it connects: it
/// moves in and out of the pools for every request, and its state is a few hundred bytes
/// (a move of it was a copy, 3% of the gateway's instructions per request).
pub type Upstream<S = TcpStream> = Box<Side<Quiet<S>>>;

/// A connection an idle check can read without waiting.
pub trait Socket {
    /// Whether there is nothing to read now: the peer neither closed the connection nor sent
    /// anything since. Bytes a layer over the socket holds count (a TLS stream's plaintext
    /// decrypted and not yet read, its close_notify). What it reads is lost: a connection
    /// with something to read is not used again.
    fn nothing_to_read(&mut self) -> bool;
}

impl Socket for TcpStream {
    fn nothing_to_read(&mut self) -> bool {
        nothing_on(self)
    }
}

/// Whether a TCP socket has nothing to read now (one non-blocking `recv`).
pub fn nothing_on(socket: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(
        socket.try_read(&mut probe),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    )
}

/// At most this many idle connections per endpoint (the hyper path's limit too); more close.
pub const MAX_IDLE_PER_ENDPOINT: usize = 128;

/// Idle connections by endpoint, each with when its last answer ended.
type Parked<S> = HashMap<SocketAddr, Vec<(Upstream<S>, Instant)>>;

/// One worker's idle upstream connections.
#[derive(Debug)]
pub struct Parking<S = TcpStream> {
    parked: Mutex<Parked<S>>,
    limit: Duration,
}

impl<S: Socket> Parking<S> {
    /// Connections idle longer than `limit` are not used again.
    pub fn new(limit: Duration) -> Parking<S> {
        Parking {
            parked: Mutex::new(HashMap::new()),
            limit,
        }
    }

    /// How long a connection may stay idle and still be used.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Parked<S>> {
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Parks `conn`, idle since `since` (its last answer), for the next client connection.
    pub fn put(&self, endpoint: SocketAddr, conn: Upstream<S>, since: Instant) {
        if since.elapsed() >= self.limit || !conn.buffered().is_empty() {
            return;
        }
        let mut all = self.lock();
        let list = all.entry(endpoint).or_default();
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push((conn, since));
        }
    }

    /// The most recently parked connection to `endpoint` that is fresh and still open.
    pub fn take(&self, endpoint: SocketAddr) -> Option<(Upstream<S>, Instant)> {
        let mut all = self.lock();
        let list = all.get_mut(&endpoint)?;
        while let Some((mut conn, since)) = list.pop() {
            if since.elapsed() < self.limit && still_open(&mut conn) {
                return Some((conn, since));
            }
        }
        None
    }

    /// Closes the connections idle past the limit.
    pub fn sweep(&self) {
        self.lock().retain(|_, list| {
            list.retain(|(_, since)| since.elapsed() < self.limit);
            !list.is_empty()
        });
    }

    /// Sweeps every `limit` until shutdown.
    pub async fn sweep_until(self: Arc<Parking<S>>, shutdown: ferry_runtime::Shutdown) {
        crate::connect::every(self.limit, shutdown, || self.sweep()).await;
    }

    /// Idle connections to `endpoint`.
    pub fn parked(&self, endpoint: SocketAddr) -> usize {
        self.lock().get(&endpoint).map_or(0, Vec::len)
    }
}

/// The upstream connections one client connection keeps at most, each to its own endpoint.
pub const MAX_KEPT: usize = 4;

/// The idle upstream connections one client connection keeps, each to its own endpoint, at
/// most [`MAX_KEPT`]: requests balanced over a few endpoints find theirs without going
/// through the pool; past it, the longest idle is parked.
#[derive(Debug)]
pub struct Kept<S = TcpStream> {
    /// The endpoint, the connection, when its last answer ended.
    conns: Vec<(SocketAddr, Upstream<S>, Instant)>,
}

impl<S: Socket> Default for Kept<S> {
    fn default() -> Self {
        Kept {
            conns: Vec::with_capacity(MAX_KEPT),
        }
    }
}

impl<S: Socket> Kept<S> {
    /// A connection to `endpoint` that can carry a request: a kept one that is fresh and
    /// still open (see [`still_open`]), else one `parking` holds.
    pub fn take(&mut self, endpoint: SocketAddr, parking: &Parking<S>) -> Option<Upstream<S>> {
        if let Some(i) = self.conns.iter().position(|(at, ..)| *at == endpoint) {
            let (_, mut up, since) = self.conns.swap_remove(i);
            if since.elapsed() < parking.limit() && still_open(&mut up) {
                return Some(up);
            }
        }
        parking.take(endpoint).map(|(up, _)| up)
    }

    /// Keeps `up`, idle from now, for the next requests to `endpoint`.
    pub fn keep(&mut self, endpoint: SocketAddr, up: Upstream<S>, parking: &Parking<S>) {
        if self.conns.len() == MAX_KEPT
            && let Some(oldest) = (0..self.conns.len()).min_by_key(|&i| self.conns[i].2)
        {
            let (at, conn, since) = self.conns.swap_remove(oldest);
            parking.put(at, conn, since);
        }
        self.conns.push((endpoint, up, Instant::now()));
    }

    /// When the first kept connection gets too old to use, idle `limit` (upstreams close
    /// idle connections of their own accord): a client connection's idle wait drops it then
    /// ([`Kept::drop_stale`]), so an idle client does not hold a dead upstream socket.
    pub fn stale_at(&self, limit: Duration) -> Option<Instant> {
        self.conns.iter().map(|(_, _, since)| *since + limit).min()
    }

    /// Closes the kept connections idle `limit` or longer.
    pub fn drop_stale(&mut self, limit: Duration) {
        self.conns.retain(|(_, _, since)| since.elapsed() < limit);
    }

    /// The client connection ends: its idle connections go to `parking`.
    pub fn park(&mut self, parking: &Parking<S>) {
        for (endpoint, conn, since) in self.conns.drain(..) {
            parking.put(endpoint, conn, since);
        }
    }
}

/// Whether an idle connection can carry a request: nothing buffered and nothing to read on
/// it (a close, or bytes nobody asked for, mean it cannot: over TLS too).
pub fn still_open<S: Socket>(conn: &mut Upstream<S>) -> bool {
    conn.buffered().is_empty() && conn.io.get_mut().nothing_to_read()
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;
    use crate::h1::head::Limits;

    async fn pair() -> (Upstream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let conn = Side::upstream(Quiet::new(ours.unwrap()), Limits::default());
        (Box::new(conn), theirs.unwrap().0)
    }

    /// Polls `check` until it holds (the FIN or the bytes take a moment to arrive).
    async fn until(mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "not within 10 s");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_parked_connection_is_handed_out_once_and_only_while_open() {
        let endpoint: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let parking = Parking::new(Duration::from_secs(60));
        let (conn, _peer) = pair().await;
        parking.put(endpoint, conn, Instant::now());
        assert_eq!(parking.parked(endpoint), 1);
        let (conn, _) = parking.take(endpoint).expect("fresh and open");
        assert!(parking.take(endpoint).is_none(), "handed out once");

        // The upstream closes it while parked: not handed out.
        let (mut closed, peer) = pair().await;
        drop(peer);
        until(|| !still_open(&mut closed)).await;
        parking.put(endpoint, closed, Instant::now());
        assert!(parking.take(endpoint).is_none());

        // The upstream sent bytes nobody asked for: not handed out either.
        let (mut chatty, mut peer) = pair().await;
        peer.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        until(|| !still_open(&mut chatty)).await;
        parking.put(endpoint, chatty, Instant::now());
        assert!(parking.take(endpoint).is_none());
        drop(conn);
    }

    #[tokio::test]
    async fn stale_connections_are_neither_parked_nor_handed_out_and_the_sweep_closes_them() {
        let endpoint: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let parking = Parking::new(Duration::from_millis(50));
        let (conn, _peer) = pair().await;
        let old = Instant::now() - Duration::from_secs(1);
        parking.put(endpoint, conn, old);
        assert_eq!(parking.parked(endpoint), 0, "idle past the limit already");
        let (conn, _peer2) = pair().await;
        parking.put(endpoint, conn, Instant::now());
        assert_eq!(parking.parked(endpoint), 1);
        until(|| {
            parking.sweep();
            parking.parked(endpoint) == 0
        })
        .await;
        assert!(parking.take(endpoint).is_none());
    }

    #[tokio::test]
    async fn a_client_connection_keeps_a_few_by_endpoint_and_parks_the_oldest_past_them() {
        let parking = Parking::new(Duration::from_secs(60));
        let mut kept = Kept::default();
        let endpoint = |n: u16| SocketAddr::from(([127, 0, 0, 1], n));
        let mut peers = Vec::new();
        for n in 0..=MAX_KEPT as u16 {
            let (conn, peer) = pair().await;
            peers.push(peer);
            kept.keep(endpoint(n), conn, &parking);
        }
        // One past the limit: the first kept (the oldest) went to the pool.
        assert_eq!(parking.parked(endpoint(0)), 1);
        assert!(kept.take(endpoint(2), &parking).is_some(), "kept");
        assert!(
            kept.take(endpoint(2), &parking).is_none(),
            "handed out once"
        );
        assert!(kept.take(endpoint(0), &parking).is_some(), "from the pool");
        // One whose upstream closed it is not handed out.
        let (mut closed, peer) = pair().await;
        drop(peer);
        until(|| !still_open(&mut closed)).await;
        kept.keep(endpoint(9), closed, &parking);
        assert!(kept.take(endpoint(9), &parking).is_none());
        // The park at the end, and what gets stale.
        let limit = Duration::from_secs(60);
        assert!(kept.stale_at(limit).is_some());
        kept.drop_stale(Duration::ZERO);
        assert!(kept.stale_at(limit).is_none(), "all idle past a zero limit");
        let (conn, _peer) = pair().await;
        kept.keep(endpoint(7), conn, &parking);
        kept.park(&parking);
        assert_eq!(parking.parked(endpoint(7)), 1);
        assert!(kept.stale_at(limit).is_none());
    }

    #[tokio::test]
    async fn at_most_the_limit_per_endpoint_is_kept() {
        let endpoint: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let parking = Parking::new(Duration::from_secs(60));
        let mut peers = Vec::new();
        for _ in 0..MAX_IDLE_PER_ENDPOINT + 3 {
            let (conn, peer) = pair().await;
            peers.push(peer);
            parking.put(endpoint, conn, Instant::now());
        }
        assert_eq!(parking.parked(endpoint), MAX_IDLE_PER_ENDPOINT);
    }
}
