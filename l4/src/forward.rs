//! One client connection, in named steps: `route` (the listening address's Service port, from
//! the table of the moment) → `pick_endpoint` (affinity, else random or in turn) → `connect`
//! (each endpoint at most once, a refusal or a timeout moves on to the next) → `copy` both ways
//! until both sides have closed (a half-close is passed on), or until no byte has gone either way
//! for the idle timeout (nginx stream's `proxy_timeout`) → `log` (metrics).
//!
//! There is no deadline for a first byte: in server-first protocols (SMTP, MySQL, SSH banners)
//! the client rightly waits for the endpoint to speak. A connection whose endpoint says nothing
//! either is closed by the idle timeout.
//!
//! Once connected, a connection no longer looks at the table: a new snapshot never closes it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::Balance;
use crate::metrics::{ConnectionOutcome, Metrics};
use crate::table::{Route, Table};

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Forwarder {
    pub table: Arc<ArcSwap<Table>>,
    pub balance: Balance,
    pub connect_timeout: Duration,
    /// A connection with no byte either way for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once per listening address.
    pub max_connections: usize,
    pub metrics: Metrics,
}

/// Serves one accepted connection on `local` until it ends, or until `kill` turns true (the end
/// of the shutdown drain).
pub(crate) async fn connection(
    forwarder: Arc<Forwarder>,
    client: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    mut kill: watch::Receiver<bool>,
) {
    let _open = Open::new(&forwarder.metrics);
    tokio::select! {
        () = forward(&forwarder, client, peer, local) => {}
        _ = kill.wait_for(|&k| k) => {
            tracing::debug!(%peer, %local, "connection closed at the end of the shutdown drain");
        }
    }
}

async fn forward(forwarder: &Forwarder, client: TcpStream, peer: SocketAddr, local: SocketAddr) {
    let metrics = &forwarder.metrics;
    // route: clone out of the guard, which must not be held across awaits.
    let Some(route) = forwarder.table.load().route(local).cloned() else {
        metrics.connection("", ConnectionOutcome::NoEndpoint);
        reset(&client);
        return;
    };
    let Some((endpoint, upstream)) = connect(forwarder, &route, peer).await else {
        metrics.connection(&route.service, ConnectionOutcome::Failed);
        tracing::debug!(%peer, service = %route.service, "no endpoint answered");
        reset(&client);
        return;
    };
    metrics.connection(&route.service, ConnectionOutcome::Forwarded);
    copy(
        client,
        upstream,
        forwarder.idle_timeout,
        &route,
        metrics,
        peer,
        endpoint,
    )
    .await;
}

/// pick_endpoint and connect: the first endpoint that accepts, trying each at most once.
async fn connect(
    forwarder: &Forwarder,
    route: &Route,
    peer: SocketAddr,
) -> Option<(SocketAddr, TcpStream)> {
    let picks = route
        .balancer
        .pick(forwarder.balance, peer.ip(), Instant::now());
    for endpoint in picks {
        match tokio::time::timeout(forwarder.connect_timeout, TcpStream::connect(endpoint)).await {
            Ok(Ok(stream)) => {
                route
                    .balancer
                    .connected(peer.ip(), endpoint, Instant::now());
                return Some((endpoint, stream));
            }
            Ok(Err(e)) => {
                tracing::debug!(%endpoint, service = %route.service, error = %e, "endpoint refused");
            }
            Err(_) => {
                tracing::debug!(%endpoint, service = %route.service, "endpoint connect timed out");
            }
        }
        forwarder.metrics.connect_error(&route.service);
    }
    None
}

/// copy both ways; each side's end of stream becomes a write shutdown on the other side, and
/// the connection ends once both directions have, or once it has been idle for `idle`.
async fn copy(
    client: TcpStream,
    mut upstream: TcpStream,
    idle: Duration,
    route: &Route,
    metrics: &Metrics,
    peer: SocketAddr,
    endpoint: SocketAddr,
) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    // Every byte either way passes the client's side, so watching it sees all activity.
    let mut client = Watched::new(client);
    let activity = client.activity.clone();
    tokio::select! {
        result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => if let Err(e) = result {
            tracing::debug!(%peer, %endpoint, service = %route.service, error = %e, "connection ended with an error");
            // One side reset: reset the other too, as a NAT between them would pass it on.
            reset(&client.stream);
            reset(&upstream);
        },
        () = activity.idle_for(idle) => {
            tracing::debug!(%peer, %endpoint, service = %route.service, ?idle, "closing an idle connection");
        }
    }
    metrics.bytes(
        &route.service,
        activity.received.load(Ordering::Relaxed),
        activity.sent.load(Ordering::Relaxed),
    );
}

/// When bytes last moved, and how many each way.
#[derive(Debug)]
struct Activity {
    start: tokio::time::Instant,
    /// Nanoseconds from `start` to the last byte either way.
    last: AtomicU64,
    received: AtomicU64,
    sent: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> tokio::time::Instant {
        self.start + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }

    /// Resolves once no byte has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let deadline = self.last() + idle;
            tokio::time::sleep_until(deadline).await;
            if self.last() + idle <= tokio::time::Instant::now() {
                return;
            }
        }
    }
}

/// The client's stream, counting bytes and noting when they moved.
#[derive(Debug)]
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl Watched {
    fn new(stream: TcpStream) -> Watched {
        Watched {
            stream,
            activity: Arc::new(Activity {
                start: tokio::time::Instant::now(),
                last: AtomicU64::new(0),
                received: AtomicU64::new(0),
                sent: AtomicU64::new(0),
            }),
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
        let n = buf.filled().len() - before;
        if n > 0 {
            self.activity
                .received
                .fetch_add(n as u64, Ordering::Relaxed);
            self.activity.touch();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.stream).poll_write(cx, buf))?;
        if n > 0 {
            self.activity.sent.fetch_add(n as u64, Ordering::Relaxed);
            self.activity.touch();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Makes the coming close a reset (RST) rather than an orderly FIN.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Counts a connection as open while alive, however its task ends.
struct Open(Metrics);

impl Open {
    fn new(metrics: &Metrics) -> Open {
        metrics.open.inc();
        Open(metrics.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each byte that moves starts the idle timeout again.
    #[tokio::test(start_paused = true)]
    async fn activity_puts_the_idle_deadline_off() {
        let activity = Activity {
            start: tokio::time::Instant::now(),
            last: AtomicU64::new(0),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        };
        let idle = Duration::from_secs(600);
        let start = tokio::time::Instant::now();
        let toucher = async {
            tokio::time::sleep(Duration::from_secs(500)).await;
            activity.touch();
        };
        let ((), ()) = tokio::join!(activity.idle_for(idle), toucher);
        assert_eq!(start.elapsed(), Duration::from_secs(1100));
    }
}
