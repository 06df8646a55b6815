//! Upgrades: which requests may switch protocols (WebSocket only), the 101 answer passed on,
//! and the [`Tunnel`] that copies bytes both ways once both sides switched. The tunnel is run
//! by whoever serves the client connection (so it keeps that connection's place in the
//! listener's count), outlives configuration changes, and ends when either side closes, when
//! neither sent anything for its idle timeout (nginx's `proxy_read_timeout` on an upgraded
//! connection), when a side took nothing for its send timeout, or a grace period after
//! shutdown begins.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use ferry_runtime::Shutdown;
use http::header;
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::body::{ProxyBody, empty};

/// Whether a request asks for a WebSocket (`Connection: upgrade` with `Upgrade: websocket`,
/// HTTP/1.1): the only upgrade tunnelled. Any other (`h2c`, deprecated by RFC 9113 section
/// 3.1, or an unknown token) is forwarded as a plain request without its Upgrade header, so a
/// backend cannot switch the client's connection into a protocol that reaches what the
/// Ingress does not route.
pub fn websocket_upgrade<B>(req: &Request<B>) -> bool {
    let tokens = |name: header::HeaderName| {
        req.headers()
            .get_all(name)
            .into_iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
    };
    req.version() == Version::HTTP_11
        && tokens(header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"))
        && tokens(header::UPGRADE).any(|t| t.eq_ignore_ascii_case("websocket"))
}

/// A 101 answer passes with its Upgrade and Connection headers: they are the switch itself.
pub fn upgraded(response: Response<Incoming>) -> Response<ProxyBody> {
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, empty())
}

/// A switch both sides agreed to (the upstream answered 101): the client's and the upstream's
/// connections, each available once its side has switched, and the tunnel's timeouts. Travels
/// in the 101 answer's extensions to whoever serves the client connection.
#[derive(Clone, Debug)]
pub struct Tunnel {
    client: OnUpgrade,
    upstream: OnUpgrade,
    timeouts: TunnelTimeouts,
}

/// How long a tunnel may stay quiet, and a write in it stay stuck.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelTimeouts {
    /// Neither side sent anything (nginx's `proxy_read_timeout` on an upgraded connection).
    pub idle: Duration,
    /// A write to either side made no progress (nginx's `proxy_send_timeout` towards the
    /// upstream, `send_timeout` towards the client).
    pub send: Duration,
}

/// Why a tunnel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelEnd {
    /// A side closed (or failed).
    Closed,
    /// Neither side sent anything for the idle timeout.
    Idle,
    /// A side took nothing of what the other sent for the send timeout.
    Stuck,
    /// The grace period after shutdown began passed.
    Shutdown,
    /// A side never switched (the client left before the 101 reached it, say).
    NotSwitched,
}

impl Tunnel {
    pub fn new(client: OnUpgrade, upstream: OnUpgrade, timeouts: TunnelTimeouts) -> Tunnel {
        Tunnel {
            client,
            upstream,
            timeouts,
        }
    }

    /// Copies bytes both ways once both sides switched, until the tunnel ends (see
    /// [`splice`]).
    pub async fn run(self, shutdown: Shutdown, grace: Duration) -> TunnelEnd {
        let (client, upstream) = match tokio::try_join!(self.client, self.upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return TunnelEnd::NotSwitched;
            }
        };
        splice(
            TokioIo::new(client),
            TokioIo::new(upstream),
            self.timeouts,
            shutdown,
            grace,
        )
        .await
    }
}

/// Copies bytes between `client` and `upstream` until either side closes (a half close is
/// passed on, and the other way goes on), until neither sent anything for the idle timeout,
/// until a write to either side made no progress for the send timeout, or until `grace` after
/// `shutdown` begins. Each read stores the time in an atomic, and so does a write that has to
/// wait; the one timer fires at the earliest the tunnel can be due and, when something came
/// since, is armed again for the new earliest: no timer work per read or write. A write that
/// begins to wait moves the timer earlier when its send deadline is earlier.
pub async fn splice<C, U>(
    client: C,
    upstream: U,
    timeouts: TunnelTimeouts,
    mut shutdown: Shutdown,
    grace: Duration,
) -> TunnelEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let clock = Clock::new();
    let (mut client, mut upstream) = (
        Watched {
            io: client,
            clock: &clock,
            side: 0,
        },
        Watched {
            io: upstream,
            clock: &clock,
            side: 1,
        },
    );
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    let mut copy = std::pin::pin!(copy);
    let mut armed = clock.origin + timeouts.idle;
    let timer = tokio::time::sleep_until(armed);
    let mut timer = std::pin::pin!(timer);
    let stop = shutdown.wait();
    let mut stop = std::pin::pin!(stop);
    let mut drained_at: Option<Instant> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(copied) = copy.as_mut().poll(cx) {
            if let Err(e) = copied {
                tracing::debug!(error = %e, "tunnel ended");
            }
            return Poll::Ready(TunnelEnd::Closed);
        }
        if drained_at.is_none() && stop.as_mut().poll(cx).is_ready() {
            drained_at = Some(Instant::now() + grace);
        }
        // Only a deadline that moved earlier moves the timer.
        let sooner = [drained_at, clock.stuck_since().map(|t| t + timeouts.send)];
        if let Some(due) = sooner.into_iter().flatten().min()
            && due < armed
        {
            armed = due;
            timer.as_mut().reset(due);
        }
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            let quiet = clock.last_read() + timeouts.idle;
            let stuck = clock.stuck_since().map(|t| t + timeouts.send);
            if drained_at.is_some_and(|at| at <= now) {
                return Poll::Ready(TunnelEnd::Shutdown);
            }
            if quiet <= now {
                return Poll::Ready(TunnelEnd::Idle);
            }
            if stuck.is_some_and(|at| at <= now) {
                return Poll::Ready(TunnelEnd::Stuck);
            }
            armed = [Some(quiet), stuck, drained_at]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(quiet);
            timer.as_mut().reset(armed);
        }
    })
    .await
}

/// When either side of a tunnel last sent something, and since when a write to each side has
/// been waiting: nanoseconds since `origin` (plus one for the writes; 0 when not waiting).
#[derive(Debug)]
struct Clock {
    origin: Instant,
    last_read: AtomicU64,
    stuck: [AtomicU64; 2],
}

impl Clock {
    fn new() -> Clock {
        Clock {
            origin: Instant::now(),
            last_read: AtomicU64::new(0),
            stuck: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    fn read(&self) {
        self.last_read.store(self.now(), Ordering::Relaxed);
    }

    fn last_read(&self) -> Instant {
        self.origin + Duration::from_nanos(self.last_read.load(Ordering::Relaxed))
    }

    /// A write to `side` had to wait (`true`), or made progress (`false`).
    fn write(&self, side: usize, waiting: bool) {
        let stuck = &self.stuck[side];
        match (waiting, stuck.load(Ordering::Relaxed)) {
            (true, 0) => stuck.store(self.now() + 1, Ordering::Relaxed),
            (false, since) if since != 0 => stuck.store(0, Ordering::Relaxed),
            _ => {}
        }
    }

    /// Since when the longest-waiting write has waited.
    fn stuck_since(&self) -> Option<Instant> {
        self.stuck
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|&s| s != 0)
            .min()
            .map(|s| self.origin + Duration::from_nanos(s - 1))
    }
}

/// One side of a tunnel, noting in the clock when it sends something and when a write to it
/// has to wait.
struct Watched<'c, S> {
    io: S,
    clock: &'c Clock,
    side: usize,
}

impl<S> Watched<'_, S> {
    fn wrote(&self, polled: &Poll<std::io::Result<usize>>) {
        match polled {
            Poll::Pending => self.clock.write(self.side, true),
            Poll::Ready(Ok(n)) if *n > 0 => self.clock.write(self.side, false),
            Poll::Ready(_) => {}
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use http::header::{HeaderMap, HeaderValue};

    use super::*;
    use crate::forwarding::remove_hop_by_hop;

    #[test]
    fn only_websocket_upgrades_are_tunnelled() {
        for (connection, upgrade, want) in [
            ("Upgrade", "websocket", true),
            ("keep-alive, upgrade", "WebSocket", true),
            ("upgrade", "h2c, websocket", true),
            ("Upgrade, HTTP2-Settings", "h2c", false),
            ("upgrade", "foo/1", false),
            ("keep-alive", "websocket", false),
        ] {
            let r = Request::get("/")
                .header(header::CONNECTION, connection)
                .header(header::UPGRADE, upgrade)
                .body(())
                .unwrap();
            assert_eq!(websocket_upgrade(&r), want, "{connection} / {upgrade}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, HTTP2-Settings"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert(
            "http2-settings",
            HeaderValue::from_static("AAMAAABkAAQAAP__"),
        );
        remove_hop_by_hop(&mut h);
        assert!(h.is_empty(), "{h:?}");
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert(
            "http2-settings",
            HeaderValue::from_static("AAMAAABkAAQAAP__"),
        );
        remove_hop_by_hop(&mut h);
        assert!(h.is_empty(), "without Connection naming them: {h:?}");
    }

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// A tunnel between two in-memory connections: the client's and the upstream's far ends,
    /// and the tunnel's task.
    fn spliced(
        idle: Duration,
        shutdown: Shutdown,
        grace: Duration,
    ) -> (
        DuplexStream,
        DuplexStream,
        tokio::task::JoinHandle<TunnelEnd>,
    ) {
        spliced_with(
            TunnelTimeouts {
                idle,
                send: Duration::from_secs(60),
            },
            shutdown,
            grace,
        )
    }

    fn spliced_with(
        timeouts: TunnelTimeouts,
        shutdown: Shutdown,
        grace: Duration,
    ) -> (
        DuplexStream,
        DuplexStream,
        tokio::task::JoinHandle<TunnelEnd>,
    ) {
        let (client, client_far) = tokio::io::duplex(1024);
        let (upstream, upstream_far) = tokio::io::duplex(1024);
        let task = tokio::spawn(splice(client, upstream, timeouts, shutdown, grace));
        (client_far, upstream_far, task)
    }

    async fn pass(from: &mut DuplexStream, to: &mut DuplexStream) {
        from.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        to.read_exact(&mut byte).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_tunnel_is_closed_after_its_idle_timeout_and_either_side_keeps_it_open() {
        let idle = Duration::from_secs(60);
        let (_trigger, shutdown) = ferry_runtime::shutdown::channel();
        let (mut client, mut upstream, task) = spliced(idle, shutdown, Duration::from_secs(10));
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(59)).await;
            pass(&mut client, &mut upstream).await;
            tokio::time::advance(Duration::from_secs(59)).await;
            pass(&mut upstream, &mut client).await;
        }
        assert!(!task.is_finished(), "busy both ways, then one way: open");
        // Quiet from now: closed once the idle timeout passed, both ends told.
        let ended = task.await.unwrap();
        assert_eq!(ended, TunnelEnd::Idle);
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
        assert_eq!(upstream.read_to_end(&mut rest).await.unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_timeout_counts_from_the_last_byte() {
        let idle = Duration::from_secs(60);
        let (_trigger, shutdown) = ferry_runtime::shutdown::channel();
        let (mut client, mut upstream, task) = spliced(idle, shutdown, Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(30)).await;
        pass(&mut client, &mut upstream).await;
        let last = Instant::now();
        assert_eq!(task.await.unwrap(), TunnelEnd::Idle);
        assert_eq!(
            Instant::now(),
            last + idle,
            "closed when quiet for the idle timeout"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_busy_tunnel_after_the_grace_period() {
        let (grace, idle) = (Duration::from_secs(10), Duration::from_secs(60));
        let (trigger, shutdown) = ferry_runtime::shutdown::channel();
        let (mut client, mut upstream, task) = spliced(idle, shutdown, grace);
        pass(&mut client, &mut upstream).await;
        trigger.trigger();
        // The tunnel's task runs once more, and sees it.
        pass(&mut client, &mut upstream).await;
        let began = Instant::now();
        tokio::time::advance(grace - Duration::from_secs(1)).await;
        pass(&mut upstream, &mut client).await;
        assert!(!task.is_finished(), "open during the grace period");
        assert_eq!(task.await.unwrap(), TunnelEnd::Shutdown);
        assert_eq!(Instant::now(), began + grace);
    }

    #[tokio::test]
    async fn a_side_that_closes_ends_the_tunnel() {
        let (_trigger, shutdown) = ferry_runtime::shutdown::channel();
        let (mut client, upstream, task) =
            spliced(Duration::from_secs(60), shutdown, Duration::from_secs(10));
        drop(upstream);
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
        client.shutdown().await.unwrap();
        assert_eq!(task.await.unwrap(), TunnelEnd::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_side_that_takes_nothing_for_the_send_timeout_ends_the_tunnel() {
        let timeouts = TunnelTimeouts {
            idle: Duration::from_secs(3600),
            send: Duration::from_secs(60),
        };
        let (_trigger, shutdown) = ferry_runtime::shutdown::channel();
        let (mut client, mut upstream, task) =
            spliced_with(timeouts, shutdown, Duration::from_secs(10));
        // The upstream stops reading: the client's bytes fill the buffers until the tunnel's
        // write to the upstream waits.
        let filler = vec![b'x'; 64 * 1024];
        let filled = tokio::spawn(async move {
            let _ = client.write_all(&filler).await;
            client
        });
        tokio::task::yield_now().await;
        // The other way stays busy, so the tunnel is not quiet.
        let mut ticks = 0;
        while !task.is_finished() && ticks < 100 {
            tokio::time::advance(Duration::from_secs(10)).await;
            if upstream.write_all(b"y").await.is_err() {
                break;
            }
            ticks += 1;
        }
        assert_eq!(task.await.unwrap(), TunnelEnd::Stuck);
        assert!(
            (6..=8).contains(&ticks),
            "closed about a minute after the write began to wait, not {ticks} ticks of 10 s"
        );
        drop(filled);
    }
}
