//! How long a client connection may stay open without a request in progress: nginx's
//! `client_header_timeout` and `keepalive_timeout`, for HTTP/1.1 and HTTP/2, plain and TLS.
//!
//! - The first request's head must be complete within the header timeout of the connection
//!   being handed to HTTP (after its TLS handshake, which has its own limit), whether nothing
//!   came or only part of a head.
//! - After an answer, the next request must begin within the keep-alive timeout; a head of
//!   which part has been read (HTTP/1, as the connection's [`Framing`](crate::smuggling)
//!   follows it; where it stopped following, after a WebSocket upgrade the upstream refused,
//!   any byte read while quiet begins one) must be complete within the header timeout of its
//!   first byte, or of the previous answer's end when it began before that (sent while the
//!   connection was busy).
//! - An HTTP/2 connection with no open stream for the keep-alive timeout is idle too.
//!
//! A connection with a request in progress (its answer not yet handed over whole: a long
//! answer, an upload, a stream) has no deadline here; the proxy timeouts bound those. A
//! connection upgraded to a WebSocket tunnel has left HTTP and this with it: the listener then
//! runs the [`Tunnel`] it switched to, with timeouts of its own. When a deadline passes the
//! connection is shut down gracefully: an HTTP/2 one gets GOAWAY and closes once the client
//! acknowledges it, an idle HTTP/1 one closes once what it was sent is flushed; one that does
//! not finish so (a client that does not answer, half a head) is dropped [`CLOSE_GRACE`]
//! later. The same loop starts a graceful shutdown when the gateway shuts down.
//!
//! The hot path takes no lock and arms no timer: requests and reads update atomics in
//! [`Activity`], and the connection's one timer is moved only when its deadline moves earlier
//! (a head begins). A timer that fires before the deadline (the connection was busy, or its
//! last answer ended since) computes the deadline again and is armed for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use ferry_proxy::upgrade::Tunnel;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// After its deadline, the longest a connection stays open to finish gracefully (hyper's
/// two-step GOAWAY needs the client's PING answer; an HTTP/1 answer may still be flushing).
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The limits of every client connection of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// Client connections open at once, per listener and worker (a WebSocket tunnel keeps
    /// its connection's place until it ends).
    pub max_connections: usize,
    /// `--client-header-timeout`: the first request's head, and any head once begun.
    pub header: Duration,
    /// `--keepalive-timeout`: between requests (HTTP/1), with no open stream (HTTP/2).
    pub keepalive: Duration,
}

impl Default for ClientLimits {
    /// nginx's defaults, and ferry's connection cap.
    fn default() -> Self {
        ClientLimits {
            max_connections: 10_000,
            header: Duration::from_secs(60),
            keepalive: Duration::from_secs(75),
        }
    }
}

/// What one client connection is doing, shared by its requests (which may run in other tasks,
/// for HTTP/2), its reads and the loop that enforces its deadline. Times are nanoseconds
/// since `origin`.
#[derive(Debug)]
pub struct Activity {
    /// When the connection was handed to HTTP.
    origin: Instant,
    /// Requests whose answer has not been handed over whole.
    busy: AtomicUsize,
    /// When the last answer ended (0 before any).
    quiet_since: AtomicU64,
    /// No request has begun yet.
    first: AtomicBool,
    /// When the first byte of a head not yet complete was read, plus one; 0 when none.
    head_began: AtomicU64,
    /// The framing stopped following this HTTP/1 connection ([`HeadProgress::Unfollowed`]).
    unfollowed: AtomicBool,
    /// The WebSocket tunnel its last answer switched it to, run once HTTP is done with it.
    /// Locked once per upgrade and once at the connection's end, never per request.
    tunnel: Mutex<Option<Tunnel>>,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            origin: Instant::now(),
            busy: AtomicUsize::new(0),
            quiet_since: AtomicU64::new(0),
            first: AtomicBool::new(true),
            head_began: AtomicU64::new(0),
            unfollowed: AtomicBool::new(false),
            tunnel: Mutex::new(None),
        })
    }

    fn since_origin(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    fn at(&self, nanos: u64) -> Instant {
        self.origin + Duration::from_nanos(nanos)
    }

    /// A request has begun; it stays in progress until the returned guard is dropped (with
    /// its answer's body, see [`Tracked`]).
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        if self.first.load(Ordering::Relaxed) {
            self.first.store(false, Ordering::Relaxed);
        }
        if self.unfollowed.load(Ordering::Relaxed) {
            self.head_began.store(0, Ordering::Release);
        }
        Busy(self.clone())
    }

    /// The tunnel the connection switched to, if it did.
    pub fn take_tunnel(&self) -> Option<Tunnel> {
        self.tunnel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Bytes were read on a connection whose framing is not followed: the first while it is
    /// quiet begin a head, which ends when its request begins.
    fn unfollowed_read(&self) {
        if !self.unfollowed.load(Ordering::Relaxed) {
            self.unfollowed.store(true, Ordering::Relaxed);
        }
        if self.busy.load(Ordering::Acquire) == 0
            && !self.first.load(Ordering::Relaxed)
            && self.head_began.load(Ordering::Relaxed) == 0
        {
            self.head(true);
        }
    }

    /// Part of a request head has been read (`true`), or that head is complete (`false`).
    fn head(&self, in_progress: bool) {
        let began = if in_progress {
            self.since_origin() + 1
        } else {
            0
        };
        self.head_began.store(began, Ordering::Release);
    }

    /// When the connection is due to close, if it is quiet.
    fn due(&self, limits: &ClientLimits) -> Option<Instant> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.first.load(Ordering::Relaxed) {
            return Some(self.origin + limits.header);
        }
        let quiet = self.at(self.quiet_since.load(Ordering::Relaxed));
        Some(match self.head_began.load(Ordering::Acquire) {
            0 => quiet + limits.keepalive,
            // A head begun while busy has the whole header timeout once the answer ended.
            began => self.at(began - 1).max(quiet) + limits.header,
        })
    }
}

/// A request in progress; dropping it ends it.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Busy {
    /// Its answer switched the connection to a WebSocket `tunnel`.
    pub fn switched(&self, tunnel: Tunnel) {
        *self.0.tunnel.lock().unwrap_or_else(PoisonError::into_inner) = Some(tunnel);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        // Stored before the count falls, so whoever sees the connection quiet sees when it
        // became so (an HTTP/2 stream may end while another begins).
        let now = self.0.since_origin();
        self.0.quiet_since.store(now, Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer's body that keeps its request in progress until it is dropped (sent whole, or
/// abandoned).
#[derive(Debug)]
pub struct Tracked<B> {
    body: B,
    _busy: Busy,
}

impl<B> Tracked<B> {
    pub fn new(body: B, busy: Busy) -> Self {
        Tracked { body, _busy: busy }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// What a client stream's framing knows of the request heads read so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadProgress {
    /// Not inside a head: between requests, or in a body.
    Between,
    /// Part of a head has been read and not yet its end.
    Partial,
    /// HTTP/1 that the framing stopped following after a head (a WebSocket upgrade the
    /// upstream refused, and the connection goes on): any byte read while the connection is
    /// quiet begins a head.
    Unfollowed,
    /// Not HTTP/1 from its first bytes (HTTP/2): no head but the first request's to time.
    NotHttp1,
}

/// A client stream that follows the request framing.
pub trait Heads {
    fn progress(&self) -> HeadProgress;
}

/// The client's stream, telling [`Activity`] when a head begins and when it is complete.
#[derive(Debug)]
pub struct Reads<S> {
    io: S,
    activity: Arc<Activity>,
    /// What `activity` was last told.
    in_progress: bool,
}

impl<S> Reads<S> {
    pub fn new(io: S, activity: Arc<Activity>) -> Self {
        Reads {
            io,
            activity,
            in_progress: false,
        }
    }
}

impl<S: AsyncRead + Heads + Unpin> AsyncRead for Reads<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let progress = self.io.progress();
        if progress == HeadProgress::Unfollowed {
            if buf.filled().len() > before {
                self.activity.unfollowed_read();
            }
            return polled;
        }
        // Twice a request at most, and not at all for a head read whole at once.
        let in_progress = progress == HeadProgress::Partial;
        if in_progress != self.in_progress {
            self.in_progress = in_progress;
            self.activity.head(in_progress);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Reads<S> {
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

/// A served connection that can be asked to finish gracefully (GOAWAY on HTTP/2; close when
/// idle on HTTP/1).
pub trait Graceful {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, E> Graceful for hyper_util::server::conn::auto::UpgradeableConnection<'_, I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: Body + Send + 'static,
    <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper_util::server::conn::auto::UpgradeableConnection::graceful_shutdown(self);
    }
}

/// How a served connection ended.
#[derive(Debug)]
pub enum Ended<E> {
    /// By itself (the client closed, an error, an upgrade, a graceful shutdown that finished).
    Served(Result<(), E>),
    /// Closed here: it stayed quiet past its deadline.
    TimedOut,
}

/// Drives a served connection with its deadlines and the gateway's shutdown.
pub struct Deadline {
    activity: Arc<Activity>,
    limits: ClientLimits,
    sleep: Pin<Box<Sleep>>,
    /// When `sleep` fires: never later than the connection's deadline.
    armed: Instant,
    /// When its deadline passed and it was asked to finish.
    closing: Option<Instant>,
    shutdown: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl std::fmt::Debug for Deadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadline")
            .field("limits", &self.limits)
            .field("armed", &self.armed)
            .field("closing", &self.closing)
            .finish()
    }
}

impl Deadline {
    pub fn new(
        activity: Arc<Activity>,
        limits: ClientLimits,
        mut shutdown: ferry_runtime::Shutdown,
    ) -> Deadline {
        let first = activity.origin + limits.header;
        Deadline {
            activity,
            limits,
            sleep: Box::pin(tokio::time::sleep_until(first)),
            armed: first,
            closing: None,
            shutdown: Some(Box::pin(async move { shutdown.wait().await })),
        }
    }

    /// When the connection is due to close, if it is quiet.
    fn due(&self) -> Option<Instant> {
        let due = self.activity.due(&self.limits)?;
        Some(match self.closing {
            Some(since) => since + CLOSE_GRACE,
            None => due,
        })
    }

    fn arm(&mut self, at: Instant) {
        self.sleep.as_mut().reset(at);
        self.armed = at;
    }

    /// Polls `conn`, and closes it when its deadline passed: call it each time the
    /// connection's task is polled.
    pub fn poll<C, E>(&mut self, cx: &mut Context<'_>, mut conn: Pin<&mut C>) -> Poll<Ended<E>>
    where
        C: Future<Output = Result<(), E>> + Graceful,
    {
        if let Some(shutdown) = self.shutdown.as_mut()
            && shutdown.as_mut().poll(cx).is_ready()
        {
            self.shutdown = None;
            conn.as_mut().graceful_shutdown();
        }
        loop {
            if let Poll::Ready(ended) = conn.as_mut().poll(cx) {
                return Poll::Ready(Ended::Served(ended));
            }
            // Only a deadline that moved earlier moves the timer; a later one is found when
            // the timer fires.
            let due = self.due();
            if let Some(due) = due
                && due < self.armed
            {
                self.arm(due);
            }
            loop {
                if self.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let now = Instant::now();
                match self.due() {
                    // Busy: no deadline now, and none before this once it is quiet again.
                    None => self.arm(now + self.limits.header.min(self.limits.keepalive)),
                    Some(due) if due > now => self.arm(due),
                    Some(_) => break,
                }
            }
            if self.closing.is_none() {
                self.closing = Some(Instant::now());
                conn.as_mut().graceful_shutdown();
                continue;
            }
            return Poll::Ready(Ended::TimedOut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ClientLimits {
        ClientLimits {
            max_connections: 1,
            header: Duration::from_secs(10),
            keepalive: Duration::from_secs(30),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_header_timeout_runs_from_the_start_then_from_a_heads_first_byte() {
        let limits = limits();
        let start = Instant::now();
        let activity = Activity::new();
        activity.head(true);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(
            activity.due(&limits),
            Some(start + limits.header),
            "first head"
        );
        activity.head(false);

        let busy = activity.begin();
        assert_eq!(activity.due(&limits), None, "busy: no deadline");
        tokio::time::advance(Duration::from_secs(100)).await;
        drop(busy);
        let ended = Instant::now();
        assert_eq!(activity.due(&limits), Some(ended + limits.keepalive));

        tokio::time::advance(Duration::from_secs(5)).await;
        activity.head(true);
        let began = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            activity.due(&limits),
            Some(began + limits.header),
            "a head begun on a keep-alive connection"
        );
        activity.head(false);
        let _busy = activity.begin();
        assert_eq!(activity.due(&limits), None, "its request is in progress");
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_begun_while_busy_has_the_header_timeout_from_the_answers_end() {
        let limits = limits();
        let activity = Activity::new();
        let busy = activity.begin();
        tokio::time::advance(Duration::from_secs(1)).await;
        // The client sent part of its next head before this answer ended (pipelined, or
        // in the same packet as the request).
        activity.head(true);
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(activity.due(&limits), None, "busy: no deadline");
        drop(busy);
        let ended = Instant::now();
        assert_eq!(
            activity.due(&limits),
            Some(ended + limits.header),
            "the header timeout, not the keep-alive one"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_the_framing_a_byte_read_while_quiet_begins_a_head() {
        let limits = limits();
        let activity = Activity::new();
        drop(activity.begin());
        let ended = Instant::now();
        tokio::time::advance(Duration::from_secs(2)).await;
        activity.unfollowed_read();
        let began = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        activity.unfollowed_read();
        assert_eq!(activity.due(&limits), Some(began + limits.header));
        // Its request begins and ends: the keep-alive timeout again.
        drop(activity.begin());
        let ended_again = Instant::now();
        assert!(ended_again > ended);
        assert_eq!(activity.due(&limits), Some(ended_again + limits.keepalive));
    }

    #[tokio::test(start_paused = true)]
    async fn h2_streams_ending_elsewhere_leave_the_keepalive_deadline() {
        let limits = ClientLimits::default();
        let activity = Activity::new();
        // Two streams; the second ends last, in its own task.
        let (one, two) = (activity.begin(), activity.begin());
        drop(one);
        assert_eq!(activity.due(&limits), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(two);
        let ended = Instant::now();
        assert_eq!(activity.due(&limits), Some(ended + limits.keepalive));
    }

    /// A served connection that never ends by itself, counting graceful shutdowns.
    struct Open(usize);

    impl Future for Open {
        type Output = Result<(), ()>;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            Poll::Pending
        }
    }

    impl Graceful for Open {
        fn graceful_shutdown(mut self: Pin<&mut Self>) {
            self.0 += 1;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_moves_only_when_the_deadline_moves_earlier() {
        let limits = limits();
        let activity = Activity::new();
        let (_trigger, shutdown) = ferry_runtime::shutdown::channel();
        let mut deadline = Deadline::new(activity.clone(), limits, shutdown);
        let mut conn = std::pin::pin!(Open(0));
        let start = Instant::now();
        let poll = |deadline: &mut Deadline, conn: Pin<&mut Open>| {
            let polled = deadline.poll(&mut Context::from_waker(std::task::Waker::noop()), conn);
            assert!(polled.is_pending());
            deadline.armed
        };
        assert_eq!(poll(&mut deadline, conn.as_mut()), start + limits.header);
        // Requests come and go: the timer stays where it is.
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(1)).await;
            drop(activity.begin());
            assert_eq!(poll(&mut deadline, conn.as_mut()), start + limits.header);
        }
        let last = Instant::now();
        // It fires early, finds the connection quiet since `last`, and is armed for that.
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(poll(&mut deadline, conn.as_mut()), last + limits.keepalive);
        // A head begins: the deadline moves earlier, and the timer with it.
        tokio::time::advance(Duration::from_secs(1)).await;
        activity.head(true);
        let began = Instant::now();
        assert_eq!(poll(&mut deadline, conn.as_mut()), began + limits.header);
        // Past it: asked to finish, then dropped after the grace.
        tokio::time::advance(limits.header).await;
        assert_eq!(
            poll(&mut deadline, conn.as_mut()),
            began + limits.header + CLOSE_GRACE
        );
        assert_eq!(conn.0, 1, "asked to finish gracefully");
        tokio::time::advance(CLOSE_GRACE).await;
        let ended = deadline.poll(
            &mut Context::from_waker(std::task::Waker::noop()),
            conn.as_mut(),
        );
        assert!(matches!(ended, Poll::Ready(Ended::TimedOut)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_is_checked_again_but_not_closed() {
        let limits = limits();
        let activity = Activity::new();
        let (_trigger, shutdown) = ferry_runtime::shutdown::channel();
        let mut deadline = Deadline::new(activity.clone(), limits, shutdown);
        let mut conn = std::pin::pin!(Open(0));
        let busy = activity.begin();
        for _ in 0..10 {
            tokio::time::advance(limits.keepalive).await;
            let polled = deadline.poll(
                &mut Context::from_waker(std::task::Waker::noop()),
                conn.as_mut(),
            );
            assert!(polled.is_pending());
            assert!(deadline.armed > Instant::now(), "armed again");
        }
        assert_eq!(conn.0, 0, "never asked to close while busy");
        drop(busy);
        let ended = Instant::now();
        tokio::time::advance(limits.header).await;
        let polled = deadline.poll(
            &mut Context::from_waker(std::task::Waker::noop()),
            conn.as_mut(),
        );
        assert!(polled.is_pending());
        assert_eq!(deadline.armed, ended + limits.keepalive);
    }
}
