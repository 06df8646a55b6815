//! Upstream connections of the fast path that outlive their client connection: one pool per
//! worker (a connection stays with the runtime that polls its socket), by endpoint, as
//! nginx's upstream `keepalive`. A client connection keeps its own upstream connection while
//! it lives; when it closes (or needs another endpoint), an idle one is parked here for the
//! next client connection to that endpoint, so short client connections do not open and
//! close an upstream connection each.
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
/// the gateway; the sidecar's may be mutual TLS over it.
pub type Upstream<S = TcpStream> = Side<Quiet<S>>;

/// A connection over a TCP socket, which a parked connection's check reads without taking
/// anything from the stream above it.
pub trait Socket {
    fn socket(&self) -> &TcpStream;
}

impl Socket for TcpStream {
    fn socket(&self) -> &TcpStream {
        self
    }
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
        while let Some((conn, since)) = list.pop() {
            if since.elapsed() < self.limit && still_open(&conn) {
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

/// Whether an idle connection can carry a request: nothing to read on its socket (a close, or
/// bytes nobody asked for, mean it cannot: over TLS too, once an answer was read whole).
pub fn still_open<S: Socket>(conn: &Upstream<S>) -> bool {
    let mut probe = [0u8; 1];
    matches!(
        conn.io.get_ref().socket().try_read(&mut probe),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    )
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
        (conn, theirs.unwrap().0)
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
        let (closed, peer) = pair().await;
        drop(peer);
        until(|| !still_open(&closed)).await;
        parking.put(endpoint, closed, Instant::now());
        assert!(parking.take(endpoint).is_none());

        // The upstream sent bytes nobody asked for: not handed out either.
        let (chatty, mut peer) = pair().await;
        peer.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        until(|| !still_open(&chatty)).await;
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
