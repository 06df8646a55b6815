//! How long a client connection may stay open without a request in progress: nginx's
//! `client_header_timeout` and `keepalive_timeout`, for HTTP/1.1 and HTTP/2, plain and TLS.
//!
//! - The first request's head must be complete within the header timeout of the connection
//!   being handed to HTTP (after its TLS handshake, which has its own limit), whether nothing
//!   came or only part of a head.
//! - After an answer, the next request must begin within the keep-alive timeout; once its first
//!   byte came (HTTP/1), its head must be complete within the header timeout of that byte.
//! - An HTTP/2 connection with no open stream for the keep-alive timeout is idle too.
//!
//! A connection with a request in progress (its answer not yet handed over whole: a long
//! answer, an upload, a stream) has no deadline here; the proxy timeouts bound those. A
//! connection upgraded to a WebSocket tunnel has left HTTP and this with it. When a deadline
//! passes the connection is shut down gracefully: an HTTP/2 one gets GOAWAY and closes once the
//! client acknowledges it, an idle HTTP/1 one closes once what it was sent is flushed; one that
//! does not finish so (a client that does not answer, half a head) is dropped [`CLOSE_GRACE`]
//! later. The same loop starts a graceful shutdown when the gateway shuts down.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// After its deadline, the longest a connection stays open to finish gracefully (hyper's
/// two-step GOAWAY needs the client's PING answer; an HTTP/1 answer may still be flushing).
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The connection preface every HTTP/2 client starts with (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The limits of every client connection of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// Client connections open at once, per listener and worker.
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
/// for HTTP/2) and the loop that enforces its deadline.
#[derive(Debug)]
pub struct Activity(Mutex<State>);

#[derive(Debug)]
struct State {
    /// Requests whose answer has not been handed over whole.
    busy: usize,
    /// When the connection was handed to HTTP, then when its last answer ended.
    quiet_since: Instant,
    /// No request has begun yet.
    first: bool,
    /// HTTP/1: when the first byte of the next head came, while quiet.
    head_began: Option<Instant>,
    /// Bytes of the HTTP/2 preface matched so far; `None` once decided.
    preface: Option<usize>,
    h2: bool,
    /// The connection's task, woken when its last request ends elsewhere.
    waker: Option<Waker>,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity(Mutex::new(State {
            busy: 0,
            quiet_since: Instant::now(),
            first: true,
            head_began: None,
            preface: Some(0),
            h2: false,
            waker: None,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request has begun; it stays in progress until the returned guard is dropped (with
    /// its answer's body, see [`Tracked`]).
    pub fn begin(self: &Arc<Self>) -> Busy {
        let mut state = self.lock();
        state.busy += 1;
        state.first = false;
        state.head_began = None;
        Busy(self.clone())
    }

    /// `bytes` were read from the client.
    fn read(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut state = self.lock();
        if let Some(matched) = state.preface {
            let want = &H2_PREFACE[matched..];
            let n = want.len().min(bytes.len());
            state.preface = if bytes[..n] != want[..n] {
                None
            } else if matched + n == H2_PREFACE.len() {
                state.h2 = true;
                None
            } else {
                Some(matched + n)
            };
        }
        if state.busy == 0 && !state.first && !state.h2 && state.head_began.is_none() {
            state.head_began = Some(Instant::now());
        }
    }

    /// When the connection is due to close, if it is quiet; keeps `cx`'s waker.
    fn due(&self, cx: &Context<'_>, limits: &ClientLimits) -> Option<Instant> {
        let mut state = self.lock();
        if !state
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        if state.busy > 0 {
            return None;
        }
        Some(match state.head_began {
            _ if state.first => state.quiet_since + limits.header,
            Some(began) => began + limits.header,
            None => state.quiet_since + limits.keepalive,
        })
    }
}

/// A request in progress; dropping it ends it.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.busy -= 1;
        if state.busy == 0 {
            state.quiet_since = Instant::now();
            if let Some(waker) = state.waker.take() {
                waker.wake();
            }
        }
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

/// The client's stream, telling [`Activity`] what it reads.
#[derive(Debug)]
pub struct Reads<S> {
    io: S,
    activity: Arc<Activity>,
}

impl<S> Reads<S> {
    pub fn new(io: S, activity: Arc<Activity>) -> Self {
        Reads { io, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Reads<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.activity.read(&buf.filled()[before..]);
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
    armed: Option<Instant>,
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
        let first = Instant::now() + limits.header;
        Deadline {
            activity,
            limits,
            sleep: Box::pin(tokio::time::sleep_until(first)),
            armed: Some(first),
            closing: None,
            shutdown: Some(Box::pin(async move { shutdown.wait().await })),
        }
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
            // Also keeps the waker: the end of a request in another task wakes this one.
            let quiet = self.activity.due(cx, &self.limits);
            let due = match (quiet, self.closing) {
                (None, _) => return Poll::Pending,
                (Some(_), Some(since)) => since + CLOSE_GRACE,
                (Some(due), None) => due,
            };
            if self.armed != Some(due) {
                self.sleep.as_mut().reset(due);
                self.armed = Some(due);
            }
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
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

    fn due(activity: &Activity, limits: &ClientLimits) -> Option<Instant> {
        activity.due(&Context::from_waker(Waker::noop()), limits)
    }

    #[tokio::test(start_paused = true)]
    async fn the_header_timeout_runs_from_the_start_then_from_a_heads_first_byte() {
        let limits = ClientLimits {
            max_connections: 1,
            header: Duration::from_secs(10),
            keepalive: Duration::from_secs(30),
        };
        let start = Instant::now();
        let activity = Activity::new();
        activity.read(b"GET / HT");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(
            due(&activity, &limits),
            Some(start + limits.header),
            "first head"
        );

        let busy = activity.begin();
        assert_eq!(due(&activity, &limits), None, "busy: no deadline");
        tokio::time::advance(Duration::from_secs(100)).await;
        drop(busy);
        let ended = Instant::now();
        assert_eq!(due(&activity, &limits), Some(ended + limits.keepalive));

        tokio::time::advance(Duration::from_secs(5)).await;
        activity.read(b"G");
        let began = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        activity.read(b"ET / HTTP/1.1\r\n");
        assert_eq!(
            due(&activity, &limits),
            Some(began + limits.header),
            "a head begun on a keep-alive connection"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn h2_frames_between_streams_do_not_start_the_header_timeout() {
        let limits = ClientLimits::default();
        let activity = Activity::new();
        // The preface may come in pieces.
        activity.read(&H2_PREFACE[..5]);
        activity.read(&H2_PREFACE[5..]);
        drop(activity.begin());
        let ended = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        activity.read(b"\0\0\x08\x06\0\0\0\0\0pingping");
        assert_eq!(due(&activity, &limits), Some(ended + limits.keepalive));
    }
}
