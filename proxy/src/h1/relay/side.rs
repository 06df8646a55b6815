//! One connection of an exchange ([`Side`]): its stream, the bytes read from it that no step
//! has taken, the parser of its heads, and the alarm of a wait of the exchange's own.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::{Error, Peer};
use crate::h1::Malformed;
use crate::h1::alarm::Alarm;
use crate::h1::body::Delimiter;
use crate::h1::head::{Limits, Parser, RequestHead, ResponseHead};

/// A buffer's first size, and the free room it keeps for a read.
const READ_ROOM: usize = 16 * 1024;

/// One connection of an exchange and the bytes read from it that no step has taken yet.
#[derive(Debug)]
pub struct Side<S> {
    pub io: S,
    pub(super) peer: Peer,
    /// Bytes read; those before `start` are taken.
    buf: Vec<u8>,
    start: usize,
    parser: Parser,
    /// For a wait of the exchange's own on this side: when a slow answer begins the watch
    /// of the client ([`start_response`]).
    pub(super) alarm: Alarm,
}

impl<S> Side<S> {
    /// A client connection: requests arrive on it.
    pub fn client(io: S, limits: Limits) -> Side<S> {
        Side::new(io, Peer::Client, Parser::requests(limits))
    }

    /// An upstream connection: answers arrive on it.
    pub fn upstream(io: S, limits: Limits) -> Side<S> {
        Side::new(io, Peer::Upstream, Parser::responses(limits))
    }

    fn new(io: S, peer: Peer, parser: Parser) -> Side<S> {
        Side {
            io,
            peer,
            buf: Vec::with_capacity(READ_ROOM),
            start: 0,
            parser,
            alarm: Alarm::new(),
        }
    }

    /// The connection and the bytes read from it that nothing has taken: for whoever serves
    /// it next (another server, handed the connection at a message's start).
    pub fn into_parts(mut self) -> (S, Vec<u8>) {
        self.buf.drain(..self.start);
        (self.io, self.buf)
    }

    /// The bytes read and not yet taken: the rest of a message, or the next one.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Takes `n` buffered bytes (a head once it is dealt with, body bytes once passed on).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// A chunked body's content in the buffered bytes, as `delimiter` follows them: every
    /// chunk's data there moved together to the front of them, the framing between dropped,
    /// so all of it goes out in one write however small the chunks. The content's length, and
    /// how many buffered bytes it took (framing included), to [`Side::consume`] once written.
    pub(super) fn unframe_buffered(
        &mut self,
        delimiter: &mut Delimiter,
    ) -> Result<(usize, usize), Malformed> {
        let bytes = &mut self.buf[self.start..];
        let (mut content, mut taken) = (0, 0);
        while taken < bytes.len() && !delimiter.is_done() {
            let run = delimiter.unframe(&bytes[taken..])?;
            let data = taken + run.skip;
            bytes.copy_within(data..data + run.data, content);
            content += run.data;
            taken = data + run.data;
            if run.skip + run.data == 0 {
                break;
            }
        }
        Ok((content, taken))
    }

    /// The request head [`Side::read_head`] found, parsed in place.
    pub fn request(&mut self) -> Result<RequestHead<'_>, Error> {
        let peer = self.peer;
        self.parser
            .request(&self.buf[self.start..])
            .map_err(|e| Error::Malformed(peer, e))?
            .ok_or(Error::Closed(peer))
    }

    /// The response head [`Side::read_head`] found, parsed in place.
    pub fn response(&mut self) -> Result<ResponseHead<'_>, Error> {
        let peer = self.peer;
        self.parser
            .response(&self.buf[self.start..])
            .map_err(|e| Error::Malformed(peer, e))?
            .ok_or(Error::Closed(peer))
    }
}

impl<S: AsyncRead + Unpin> Side<S> {
    /// Reads until a whole head is buffered (what was buffered already counts); its length.
    /// `None` when the connection ended before the head's first byte: a client's clean close
    /// between requests. Bare LF, obs-fold and a head past its limits are refused as soon as
    /// they arrive.
    pub async fn read_head(&mut self) -> Result<Option<usize>, Error> {
        // The head goes to the front, so a head never makes the buffer grow past its limit
        // plus one read.
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        loop {
            let ready = self.parser.ready(&self.buf);
            match ready.map_err(|e| Error::Malformed(self.peer, e))? {
                Some(len) => return Ok(Some(len)),
                None if self.fill().await? == 0 => {
                    self.parser.reset();
                    // Empty lines before a request line are not a head.
                    let blank = self.buf.iter().all(|b| matches!(b, b'\r' | b'\n'));
                    return if blank {
                        self.buf.clear();
                        Ok(None)
                    } else {
                        Err(Error::Closed(self.peer))
                    };
                }
                None => {}
            }
        }
    }

    /// What an upstream's bytes that came while its request's body was still being sent
    /// say: `None` while they hold no whole head past the interim ones (`100 Continue`,
    /// dropped here as [`start_response`] drops them), `Some(true)` for a final answer that
    /// refuses the body (4xx or 5xx: RFC 9112 section 9.5 has the sender stop), `Some(false)`
    /// for another (the body goes on; the answer waits in the buffer).
    pub(super) fn early_answer(&mut self) -> Result<Option<bool>, Error> {
        loop {
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let ready = self.parser.ready(&self.buf);
            let Some(len) = ready.map_err(|e| Error::Malformed(self.peer, e))? else {
                return Ok(None);
            };
            match self.response()?.status {
                101 => return Ok(Some(false)),
                100..=199 => self.consume(len),
                status => return Ok(Some(status >= 400)),
            }
        }
    }

    /// [`Side::fill`] as a poll, through a small buffer of its own (for the rare read that
    /// races a write: an upstream's early answer).
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, Error>> {
        let mut room = [0u8; 2048];
        let mut read = ReadBuf::new(&mut room);
        match Pin::new(&mut self.io).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) => {
                self.buf.extend_from_slice(read.filled());
                Poll::Ready(Ok(read.filled().len()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(Error::Read(self.peer, e))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// One read onto the end of the buffer (compacted or grown first when it has little room
    /// left): how many bytes came, 0 at the end of the stream.
    pub async fn fill(&mut self) -> Result<usize, Error> {
        if self.buf.capacity() - self.buf.len() < READ_ROOM / 4 {
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            self.buf.reserve(READ_ROOM);
        }
        self.io
            .read_buf(&mut self.buf)
            .await
            .map_err(|e| Error::Read(self.peer, e))
    }
}
