//! `proxy-read-timeout` on the answer's body, as nginx means it: "the timeout is set only
//! between two successive read operations, not for the transmission of the whole response".
//! An upstream that sends part of an answer and then nothing for that long is given up, so a
//! stuck upstream never holds a client (and its upstream connection) open for ever; an answer
//! that keeps moving, a long download or a stream of events, takes as long as it takes.
//!
//! [`ReadIdle`] wraps the answer's body. It arms a timer only when the body has nothing ready,
//! so an answer that arrives whole costs no timer at all.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;

/// An answer's body that fails once the upstream gives it nothing for `limit`.
#[derive(Debug)]
pub struct ReadIdle<B> {
    inner: B,
    limit: Duration,
    /// Armed on the first wait; boxed, as most answers never wait.
    timer: Option<Pin<Box<Sleep>>>,
    /// A frame came since the timer was last armed: the next wait re-arms it.
    moved: bool,
}

impl<B> ReadIdle<B> {
    pub fn new(inner: B, limit: Duration) -> Self {
        ReadIdle {
            inner,
            limit,
            timer: None,
            moved: false,
        }
    }
}

/// The error a body ends with when the upstream went quiet.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent nothing for {0:?}")]
pub struct ReadTimedOut(pub Duration);

impl<B> Body for ReadIdle<B>
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
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.moved = true;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let limit = this.limit;
        let timer = match &mut this.timer {
            Some(timer) => {
                if this.moved {
                    timer.as_mut().reset(Instant::now() + limit);
                }
                timer
            }
            None => this.timer.insert(Box::pin(tokio::time::sleep(limit))),
        };
        this.moved = false;
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(ReadTimedOut(limit).into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};

    use super::*;
    use crate::send_timeout::tests::pieces;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn a_moving_body_takes_its_time_and_a_quiet_one_fails_after_the_limit() {
        let (tx, inner) = pieces();
        let mut body = ReadIdle::new(inner, SECOND);
        let feeding = tokio::spawn(async move {
            // Five seconds in all, never more than 0.9 s between pieces.
            for _ in 0..6 {
                tx.send(Bytes::from_static(b"piece")).await.unwrap();
                tokio::time::sleep(SECOND * 9 / 10).await;
            }
            // Then quiet, without ending.
            std::future::pending::<()>().await;
        });
        for _ in 0..6 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), "piece");
        }
        let last = Instant::now();
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(error.is::<ReadTimedOut>(), "{error}");
        let waited = last.elapsed();
        assert!(
            waited >= SECOND && waited < SECOND + SECOND / 10,
            "{waited:?}"
        );
        feeding.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_whole_body_arms_no_timer() {
        let mut body = ReadIdle::new(Full::new(Bytes::from_static(b"all")), SECOND);
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.is_end_stream());
        assert!(body.timer.is_none());
    }

    /// A body whose upstream broke off.
    struct Broken;

    impl Body for Broken {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(Some(Err(std::io::ErrorKind::ConnectionReset.into())))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_error_passes_through() {
        let mut body = ReadIdle::new(Broken, SECOND);
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(!error.is::<ReadTimedOut>());
        let io = error.downcast::<std::io::Error>().unwrap();
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
    }
}
