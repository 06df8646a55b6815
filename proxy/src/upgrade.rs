//! Upgrades: which requests may switch protocols (WebSocket only), the 101 answer passed on,
//! and the [`Tunnel`] that copies bytes both ways once both sides switched. The tunnel is run
//! by whoever serves the client connection (so it keeps that connection's place in the
//! listener's count), outlives configuration changes, and ends when either side closes, when
//! neither sent anything for its idle timeout (nginx's `proxy_read_timeout` on an upgraded
//! connection), or a grace period after shutdown begins.

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
/// connections, each available once its side has switched, and how long the tunnel may stay
/// quiet. Travels in the 101 answer's extensions to whoever serves the client connection.
#[derive(Clone, Debug)]
pub struct Tunnel {
    client: OnUpgrade,
    upstream: OnUpgrade,
    idle: Duration,
}

/// Why a tunnel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelEnd {
    /// A side closed (or failed).
    Closed,
    /// Neither side sent anything for the idle timeout.
    Idle,
    /// The grace period after shutdown began passed.
    Shutdown,
    /// A side never switched (the client left before the 101 reached it, say).
    NotSwitched,
}

impl Tunnel {
    pub fn new(client: OnUpgrade, upstream: OnUpgrade, idle: Duration) -> Tunnel {
        Tunnel {
            client,
            upstream,
            idle,
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
            self.idle,
            shutdown,
            grace,
        )
        .await
    }
}

/// Copies bytes between `client` and `upstream` until either side closes (a half close is
/// passed on, and the other way goes on), until neither sent anything for `idle`, or until
/// `grace` after `shutdown` begins. Each read stores the time in one atomic; the one timer
/// fires at the earliest the tunnel can be idle and, when something came since, is armed again
/// for the new earliest: no timer work per read.
pub async fn splice<C, U>(
    client: C,
    upstream: U,
    idle: Duration,
    mut shutdown: Shutdown,
    grace: Duration,
) -> TunnelEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let clock = LastRead::new();
    let (mut client, mut upstream) = (
        Watched {
            io: client,
            clock: &clock,
        },
        Watched {
            io: upstream,
            clock: &clock,
        },
    );
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    let mut copy = std::pin::pin!(copy);
    let quiet = tokio::time::sleep_until(clock.origin + idle);
    let mut quiet = std::pin::pin!(quiet);
    let draining = tokio::time::sleep(Duration::MAX);
    let mut draining = std::pin::pin!(draining);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            copied = &mut copy => {
                if let Err(e) = copied {
                    tracing::debug!(error = %e, "tunnel ended");
                }
                return TunnelEnd::Closed;
            }
            () = &mut quiet => {
                let due = clock.last() + idle;
                if due <= Instant::now() {
                    return TunnelEnd::Idle;
                }
                quiet.as_mut().reset(due);
            }
            () = shutdown.wait(), if !shutting_down => {
                shutting_down = true;
                draining.as_mut().reset(Instant::now() + grace);
            }
            () = &mut draining, if shutting_down => return TunnelEnd::Shutdown,
        }
    }
}

/// When either side of a tunnel last sent something: nanoseconds since `origin`.
#[derive(Debug)]
struct LastRead {
    origin: Instant,
    nanos: AtomicU64,
}

impl LastRead {
    fn new() -> LastRead {
        LastRead {
            origin: Instant::now(),
            nanos: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.store(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.origin + Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

/// One side of a tunnel, noting in the clock when it sends something.
struct Watched<'c, S> {
    io: S,
    clock: &'c LastRead,
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
            self.clock.touch();
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
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
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
        let (client, client_far) = tokio::io::duplex(1024);
        let (upstream, upstream_far) = tokio::io::duplex(1024);
        let task = tokio::spawn(splice(client, upstream, idle, shutdown, grace));
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
}
