//! `proxy-send-timeout`, as nginx means it: "if the proxied server does not receive anything
//! within this time, the connection is closed". Once the upstream connection asks for the
//! request body, it must get another piece within the timeout of the last one, whether the
//! upstream stopped taking the body or the client stopped sending it. Either way the upstream
//! connection is dropped, so a stalled upload never holds an upstream connection longer.
//!
//! [`Watched`] wraps the request body and notes when the connection asks for it, when it hands
//! a piece over, and when the body ends; [`stalled`] resolves once a body that has not ended
//! gave the upstream nothing for longer than the timeout, and says whose fault that was.
//!
//! It also keeps `proxy-read-timeout` for a request with a body as nginx does: the wait for the
//! answer starts once the body is sent, so an upload that keeps moving may take longer than
//! the read timeout.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
// tokio's clock, so the tests can run on paused time.
use tokio::time::Instant;

use crate::body::BoxError;

/// What the body and the watchdog share.
#[derive(Debug)]
pub struct Progress {
    epoch: Instant,
    /// Milliseconds after `epoch` when the upstream last got something: the body was first
    /// asked for, or a piece was handed over.
    last_ms: AtomicU64,
    /// The body was asked for and has not ended: a stall is possible.
    sending: AtomicBool,
    /// A piece was handed over and the connection has not asked for the next yet: the
    /// upstream's turn.
    waiting: AtomicBool,
    /// The client's side of the body failed: it disconnected, or broke the framing or the
    /// size limit.
    client_failed: AtomicBool,
    /// The body was sent whole (at `last_ms`): the read timeout runs.
    sent: AtomicBool,
    /// Wakes the watchdog when the limit that applies changes: the body was first asked for,
    /// or went through.
    changed: Notify,
}

/// Whose side a stalled body stopped on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    /// The upstream did not take the last piece.
    Upstream,
    /// The client did not send the next piece.
    Client,
    /// The body went through, then no answer came within the read timeout.
    NoAnswer,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            sending: AtomicBool::new(false),
            waiting: AtomicBool::new(false),
            client_failed: AtomicBool::new(false),
            sent: AtomicBool::new(false),
            changed: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the client's side of the body failed (not the upstream's fault).
    pub fn client_failed(&self) -> bool {
        self.client_failed.load(Ordering::Relaxed)
    }

    // The body's side writes `last_ms` before the flags (Release), and the watchdog reads the
    // flags (Acquire) before `last_ms`: a watchdog that sees a new state sees its time too.

    fn ended(&self) {
        self.waiting.store(false, Ordering::Release);
        self.sending.store(false, Ordering::Release);
    }

    /// The body went through whole. Only the body's poller calls this.
    fn sent(&self) {
        if !self.sent.load(Ordering::Acquire) {
            self.last_ms.store(self.now_ms(), Ordering::Release);
            self.sent.store(true, Ordering::Release);
            self.ended();
            self.changed.notify_one();
        }
    }
}

/// A request body that reports its progress. The body itself sits in a slot the request
/// keeps a handle to ([`Watched::slot`]): when the body stalls, the request takes it back and
/// drops it, so the client's connection is released even while the upstream connection still
/// holds this wrapper, which from then on fails, so the upstream request is aborted, never
/// ended as if complete.
#[derive(Debug)]
pub struct Watched<B> {
    inner: Arc<Mutex<Option<B>>>,
    progress: Arc<Progress>,
    asked: bool,
}

impl<B> Watched<B> {
    pub fn new(inner: B, progress: Arc<Progress>) -> Self {
        Watched {
            inner: Arc::new(Mutex::new(Some(inner))),
            progress,
            asked: false,
        }
    }

    /// A handle to take the body back with.
    pub fn slot(&self) -> Arc<Mutex<Option<B>>> {
        self.inner.clone()
    }
}

/// Drops the body in `slot`, if the upstream connection has not finished with it.
pub fn abandon<B>(slot: &Mutex<Option<B>>) {
    drop(slot.lock().unwrap_or_else(PoisonError::into_inner).take());
}

/// The error a taken-back body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body was abandoned after a stall")]
pub struct Abandoned;

impl<B> Body for Watched<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let progress = self.progress.clone();
        if !self.asked {
            // The clock starts when the connection first wants the body.
            self.asked = true;
            progress.last_ms.store(progress.now_ms(), Ordering::Release);
            progress.sending.store(true, Ordering::Release);
            progress.changed.notify_one();
        }
        // Asked again: the upstream took what it was given.
        progress.waiting.store(false, Ordering::Relaxed);
        let mut slot = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(inner) = slot.as_mut() else {
            return Poll::Ready(Some(Err(Abandoned.into())));
        };
        match Pin::new(&mut *inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                progress.last_ms.store(progress.now_ms(), Ordering::Release);
                if inner.is_end_stream() {
                    progress.sent();
                } else {
                    progress.waiting.store(true, Ordering::Release);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                progress.client_failed.store(true, Ordering::Relaxed);
                progress.ended();
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                progress.sent();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        let slot = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        // Taken back: not ended, so the connection asks and gets the error.
        let end = slot.as_ref().is_some_and(Body::is_end_stream);
        if end {
            // The connection may never ask again once the body says it is complete.
            self.progress.sent();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or_else(SizeHint::default, Body::size_hint)
    }
}

/// Resolves once a body that has not ended gave the upstream nothing for longer than `send`,
/// with the side it stopped on, or once the body went through and no answer came within
/// `read` ([`Stall::NoAnswer`]). Before the body is first asked for (connecting, the head
/// going out) the answer may take `before + read`, so a slow connect meets its own timeout.
pub async fn stalled(
    progress: Arc<Progress>,
    send: Duration,
    read: Duration,
    before: Duration,
) -> Stall {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let (send, read, unasked) = (ms(send), ms(read), ms(before.saturating_add(read)));
    let floor = Duration::from_millis(10);
    loop {
        // The state first, then its time (see `Progress`).
        let (limit, stall) = if progress.sending.load(Ordering::Acquire) {
            let side = if progress.waiting.load(Ordering::Acquire) {
                Stall::Upstream
            } else {
                Stall::Client
            };
            (send, side)
        } else if progress.sent.load(Ordering::Acquire) {
            (read, Stall::NoAnswer)
        } else {
            (unasked, Stall::NoAnswer)
        };
        let idle = progress
            .now_ms()
            .saturating_sub(progress.last_ms.load(Ordering::Acquire));
        if idle > limit {
            return stall;
        }
        let wait = Duration::from_millis(limit - idle + 1);
        tokio::select! {
            () = tokio::time::sleep(wait.max(floor)) => {}
            () = progress.changed.notified() => {}
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use http_body_util::{BodyExt, Full};
    use tokio::sync::mpsc;

    use super::*;

    /// A body whose pieces the test sends; it ends when the sender is dropped.
    pub(crate) struct Pieces(mpsc::Receiver<Bytes>);

    impl Body for Pieces {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0.poll_recv(cx).map(|p| p.map(|p| Ok(Frame::data(p))))
        }
    }

    pub(crate) fn pieces() -> (mpsc::Sender<Bytes>, Pieces) {
        let (tx, rx) = mpsc::channel(4);
        (tx, Pieces(rx))
    }

    const SECOND: Duration = Duration::from_secs(1);
    const HOUR: Duration = Duration::from_secs(3600);

    /// The send timeout alone: a send timeout of a second, a read timeout of an hour.
    async fn send_stall(progress: &Arc<Progress>) -> Stall {
        stalled(progress.clone(), SECOND, HOUR, Duration::ZERO).await
    }

    async fn quiet(progress: &Arc<Progress>) -> bool {
        tokio::time::timeout(Duration::from_secs(5), send_stall(progress))
            .await
            .is_err()
    }

    #[tokio::test(start_paused = true)]
    async fn a_piece_left_waiting_trips_the_watchdog_and_a_finished_body_does_not() {
        let progress = Progress::new();
        let (tx, inner) = pieces();
        let mut body = Watched::new(inner, progress.clone());
        // Not asked for yet: no stall however long it takes.
        assert!(quiet(&progress).await, "nothing was asked for");

        // A piece is handed over and not followed by another ask: the upstream's stall.
        tx.send(Bytes::from_static(b"piece")).await.unwrap();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "piece");
        let started = tokio::time::Instant::now();
        let stall = send_stall(&progress).await;
        assert_eq!(stall, Stall::Upstream);
        assert!(started.elapsed() >= Duration::from_secs(1));

        // The body ends: complete, however long the answer takes.
        drop(tx);
        assert!(body.frame().await.is_none());
        assert!(quiet(&progress).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_sending_trips_the_watchdog() {
        let progress = Progress::new();
        let (tx, inner) = pieces();
        let mut body = Watched::new(inner, progress.clone());
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        assert!(body.frame().await.is_some());
        // The upstream asks for more; the client sends nothing.
        let asked = tokio::time::timeout(Duration::from_millis(10), body.frame()).await;
        assert!(asked.is_err());
        assert_eq!(send_stall(&progress).await, Stall::Client);
        // Taken back: the upstream's copy fails instead of ending as if complete.
        abandon(&body.slot());
        let after = body.frame().await.unwrap();
        assert!(after.unwrap_err().is::<Abandoned>());
        assert!(!progress.client_failed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_complete_by_its_length_needs_no_further_ask() {
        let progress = Progress::new();
        let mut body = Watched::new(Full::new(Bytes::from_static(b"all")), progress.clone());
        assert!(body.frame().await.is_some());
        // hyper does not ask again once the body says it is complete.
        assert!(body.is_end_stream());
        assert!(quiet(&progress).await);
    }

    #[tokio::test(start_paused = true)]
    async fn the_read_timeout_runs_from_the_end_of_the_body() {
        let progress = Progress::new();
        let (tx, inner) = pieces();
        let mut body = Watched::new(inner, progress.clone());
        // Long send and connect limits: the watchdog must notice the body's first ask and its
        // end, not sleep through them.
        let watchdog = tokio::spawn(stalled(progress.clone(), HOUR, SECOND, HOUR));
        // An upload that keeps moving for three times the read timeout.
        for _ in 0..6 {
            tx.send(Bytes::from_static(b"piece")).await.unwrap();
            assert!(body.frame().await.is_some());
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(!watchdog.is_finished(), "a moving upload is not timed out");
        }
        drop(tx);
        assert!(body.frame().await.is_none());
        let sent = Instant::now();
        assert_eq!(watchdog.await.unwrap(), Stall::NoAnswer);
        let waited = sent.elapsed();
        assert!(
            waited >= SECOND && waited < SECOND + SECOND / 10,
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_never_asked_for_waits_the_connect_and_read_timeouts() {
        let progress = Progress::new();
        let (_tx, inner) = pieces();
        let _body = Watched::new(inner, progress.clone());
        let started = Instant::now();
        let stall = stalled(progress.clone(), SECOND, SECOND, 2 * SECOND).await;
        assert_eq!(stall, Stall::NoAnswer);
        let waited = started.elapsed();
        assert!(
            waited >= 3 * SECOND && waited < 3 * SECOND + SECOND / 10,
            "{waited:?}"
        );
    }
}
