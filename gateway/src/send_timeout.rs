//! `proxy-send-timeout`, as nginx means it: the upstream must take the next piece of the request
//! body within the timeout of taking the last one. A body that waits on the client is not the
//! upstream's fault; a body whose last piece the upstream has not come back for is.
//!
//! [`Watched`] wraps the request body and notes when it hands a piece to the connection and
//! when the connection asks for the next; [`stalled`] resolves once a handed piece has waited
//! longer than the timeout.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// What the body and the watchdog share.
#[derive(Debug)]
pub struct Progress {
    epoch: Instant,
    /// Milliseconds after `epoch` when the last piece was handed over.
    handed_at: AtomicU64,
    /// A piece was handed over and the connection has not asked for the next yet.
    waiting: AtomicBool,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress {
            epoch: Instant::now(),
            handed_at: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A request body that reports its progress. The body itself sits in a slot the request
/// keeps a handle to ([`Watched::slot`]): when the upstream stalls, the request takes the body
/// back and drops it, so the client's connection is released even while the stuck upstream
/// connection still holds this wrapper.
#[derive(Debug)]
pub struct Watched<B> {
    inner: Arc<Mutex<Option<B>>>,
    progress: Arc<Progress>,
}

impl<B> Watched<B> {
    pub fn new(inner: B, progress: Arc<Progress>) -> Self {
        Watched {
            inner: Arc::new(Mutex::new(Some(inner))),
            progress,
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

impl<B> Body for Watched<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        // Asked again: the upstream took what it was given.
        self.progress.waiting.store(false, Ordering::Relaxed);
        let mut slot = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        // Taken back after a stall: the exchange is over, end the body.
        let Some(inner) = slot.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            let now = self.progress.now_ms();
            self.progress.handed_at.store(now, Ordering::Relaxed);
            self.progress.waiting.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// Resolves once the upstream has left a handed piece waiting longer than `timeout`.
pub async fn stalled(progress: Arc<Progress>, timeout: Duration) {
    let limit = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let tick = (timeout / 4).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(tick).await;
        let waited = progress
            .now_ms()
            .saturating_sub(progress.handed_at.load(Ordering::Relaxed));
        if progress.waiting.load(Ordering::Relaxed) && waited > limit {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_piece_left_waiting_trips_the_watchdog_and_taking_it_does_not() {
        let progress = Progress::new();
        let mut body = Watched::new(Full::new(Bytes::from_static(b"piece")), progress.clone());
        // Nothing handed over yet: no stall however long it takes.
        let quiet = tokio::time::timeout(
            Duration::from_secs(5),
            stalled(progress.clone(), Duration::from_secs(1)),
        )
        .await;
        assert!(quiet.is_err(), "nothing was waiting on the upstream");

        // A piece is handed over and not followed by another ask: a stall after the timeout.
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "piece");
        let started = tokio::time::Instant::now();
        stalled(progress.clone(), Duration::from_secs(1)).await;
        assert!(started.elapsed() >= Duration::from_secs(1));

        // Asked again (the upstream took it): no longer waiting.
        assert!(body.frame().await.is_none());
        let quiet = tokio::time::timeout(
            Duration::from_secs(5),
            stalled(progress, Duration::from_secs(1)),
        )
        .await;
        assert!(quiet.is_err());
    }
}
