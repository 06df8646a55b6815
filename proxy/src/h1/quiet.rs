//! A connection whose reads and writes each give up after a time without progress: the
//! upstream read timeout (`proxy-read-timeout`, between two reads of an answer) and the send
//! timeout (`proxy-send-timeout`, between two writes of a request body) of the fast path, as
//! nginx arms them per operation.
//!
//! The timer is armed only when an operation has to wait (a read that finds bytes, or a write
//! the socket takes at once, costs no timer), as an [`Alarm`] (one allocation per connection,
//! none per operation, no timer-wheel operation per wait), and a wait past the limit ends the
//! operation with `io::ErrorKind::TimedOut`.
//!
//! What it may touch: the stream it wraps, its own timers.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use super::alarm::Alarm;

/// One direction's limit and its alarm.
#[derive(Debug, Default)]
struct Watch {
    limit: Option<Duration>,
    alarm: Alarm,
    armed: bool,
}

impl Watch {
    /// The operation is waiting: `Ready` once it has waited past the limit.
    fn poll_waiting(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(limit) = self.limit else {
            return Poll::Pending;
        };
        if !self.armed {
            self.alarm.set(Instant::now() + limit);
            self.armed = true;
        }
        match self.alarm.poll_expired(cx) {
            Poll::Ready(()) => {
                self.armed = false;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed(&mut self) {
        self.armed = false;
    }
}

/// A stream whose reads and writes each wait at most their limit (none: no limit).
#[derive(Debug)]
pub struct Quiet<S> {
    io: S,
    read: Watch,
    write: Watch,
}

impl<S> Quiet<S> {
    pub fn new(io: S) -> Quiet<S> {
        Quiet {
            io,
            read: Watch::default(),
            write: Watch::default(),
        }
    }

    /// The longest a read may wait for a byte, from now on.
    pub fn set_read_limit(&mut self, limit: Option<Duration>) {
        self.read.limit = limit;
        self.read.armed = false;
    }

    /// Forgets a read's wait that was given up (its future dropped, or a watch polled
    /// alongside a write): the next read waits its limit from its own start.
    pub fn restart_read(&mut self) {
        self.read.armed = false;
    }

    /// The longest a write may wait for room, from now on.
    pub fn set_write_limit(&mut self, limit: Option<Duration>) {
        self.write.limit = limit;
        self.write.armed = false;
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    pub fn into_inner(self) -> S {
        self.io
    }
}

impl<S: AsyncWrite + Unpin> Quiet<S> {
    /// Writes `bytes` whole and flushes them, each write waiting at most `limit` for room
    /// (an answer of the proxy's own); the write limit is none afterwards.
    pub async fn send_within(&mut self, bytes: &[u8], limit: Duration) -> io::Result<()> {
        self.set_write_limit(Some(limit));
        let written = match self.write_all(bytes).await {
            Ok(()) => self.flush().await,
            Err(e) => Err(e),
        };
        self.set_write_limit(None);
        written
    }

    /// Shuts the stream down, waiting at most `limit` for what it holds (a TLS connection's
    /// last records, its close_notify) to go out.
    pub async fn close_within(&mut self, limit: Duration) {
        self.set_write_limit(Some(limit));
        let _ = tokio::time::timeout(limit, self.shutdown()).await;
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no {what} within the limit"),
    )
}

/// An operation's poll, timed by `watch`: progress disarms it, a wait past the limit is
/// `TimedOut`.
fn timed<T>(
    watch: &mut Watch,
    cx: &mut Context<'_>,
    polled: Poll<io::Result<T>>,
    what: &str,
) -> Poll<io::Result<T>> {
    match polled {
        Poll::Ready(r) => {
            watch.progressed();
            Poll::Ready(r)
        }
        Poll::Pending => match watch.poll_waiting(cx) {
            Poll::Ready(()) => Poll::Ready(Err(timed_out(what))),
            Poll::Pending => Poll::Pending,
        },
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Quiet<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        timed(&mut this.read, cx, polled, "bytes arrived")
    }
}

// A flush or a shutdown writes what the stream holds (TLS records): timed as writes.
impl<S: AsyncWrite + Unpin> AsyncWrite for Quiet<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        timed(&mut this.write, cx, polled, "bytes were taken")
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        timed(&mut this.write, cx, polled, "bytes were taken")
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        timed(&mut this.write, cx, polled, "bytes were taken")
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        timed(&mut this.write, cx, polled, "the close went out")
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_read_waiting_past_its_limit_times_out_and_one_that_gets_bytes_does_not() {
        let (mine, mut theirs) = duplex(64);
        let mut quiet = Quiet::new(mine);
        quiet.set_read_limit(Some(Duration::from_secs(5)));
        let mut buf = [0u8; 8];
        // Bytes every 4 s: each read waits less than the limit.
        for _ in 0..3 {
            let reading = quiet.read(&mut buf);
            let writing = async {
                tokio::time::sleep(Duration::from_secs(4)).await;
                theirs.write_all(b"x").await.unwrap();
            };
            let (n, ()) = tokio::join!(reading, writing);
            assert_eq!(n.unwrap(), 1);
        }
        let started = Instant::now();
        let err = quiet.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        // No limit: it waits for as long as it takes.
        quiet.set_read_limit(None);
        let reading = quiet.read(&mut buf);
        let writing = async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            theirs.write_all(b"y").await.unwrap();
        };
        let (n, ()) = tokio::join!(reading, writing);
        assert_eq!(n.unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_takes_times_out() {
        let (mine, _theirs) = duplex(4);
        let mut quiet = Quiet::new(mine);
        quiet.set_write_limit(Some(Duration::from_secs(2)));
        let started = Instant::now();
        let err = quiet.write_all(b"more than four").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }
}
