//! The one request-smuggling signal hyper does not hand the service: an HTTP/1 request head
//! with both `Content-Length` and `Transfer-Encoding`. hyper reads such a body as chunked,
//! removes `Content-Length` from the headers and closes the connection after the answer
//! (RFC 9112 section 6.3); nginx refuses the request with 400, and so do we.
//!
//! [`Observed`] wraps a client connection and shows every byte hyper reads to a [`Framing`],
//! which follows the request framing with httparse (the parser hyper uses): each head, then
//! the body its `Content-Length` or chunked coding delimits. It numbers the heads and notes the
//! first that has both headers; the connection's service numbers its requests the same way
//! ([`Verdicts::next_request`]) and marks that one with [`LengthAndChunked`]. hyper serves
//! nothing after it (it closes), so only that request can be affected.
//!
//! The framing also keeps a request line within nginx's limit where hyper cannot: a request
//! target longer than [`MAX_TARGET`] is cut to its first `MAX_TARGET + 1` bytes before hyper
//! reads it (the rest of the target is dropped up to the space before the version), so a line
//! of any length reaches the pipeline, which answers 414 and closes, instead of hyper's 431
//! once the line passes its 64 KiB buffer. Only a target is cut, never a header or a body.
//!
//! Anything the framing cannot follow (a WebSocket upgrade, HTTP/2, a head or chunk hyper
//! itself would refuse) stops it for the connection: from then on requests are left to
//! hyper's own rules, which are safe, as above.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The request extension that marks a request whose head had both headers.
#[derive(Clone, Copy, Debug)]
pub struct LengthAndChunked;

use crate::pipeline::MAX_TARGET;

/// What the reading side and the service of one connection share.
#[derive(Debug)]
pub struct Verdicts {
    /// The number of the first head with both headers; `u64::MAX` while none.
    flagged: AtomicU64,
    /// Requests the service has been handed so far.
    served: AtomicU64,
}

impl Verdicts {
    pub fn new() -> Arc<Verdicts> {
        Arc::new(Verdicts {
            flagged: AtomicU64::new(u64::MAX),
            served: AtomicU64::new(0),
        })
    }

    /// Called once per request the service is handed, in order: whether its head had both
    /// `Content-Length` and `Transfer-Encoding`.
    pub fn next_request(&self) -> bool {
        let n = self.served.fetch_add(1, Ordering::Relaxed);
        self.flagged.load(Ordering::Acquire) == n
    }
}

/// The largest head, chunk-size line or trailer section followed (as hyper's buffer limit).
const MAX_PENDING: usize = 64 * 1024;
/// Header fields per head or trailer section (hyper refuses more than 100).
const MAX_FIELDS: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before a request head.
    Head,
    /// In a body of known length: this many bytes left.
    Fixed(u64),
    /// Before a chunk-size line.
    ChunkSize,
    /// In a chunk's data: this many bytes left.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// The trailer section after the last chunk.
    Trailers,
    /// Not followed any more.
    Stopped,
}

/// What is known of the current head's request line.
#[derive(Clone, Copy, Debug, Default)]
struct LineScan {
    /// Bytes of the head looked at so far.
    scanned: usize,
    /// Bytes of the line counted so far (empty lines before it not counted).
    len: usize,
    /// Where in the line the target starts, once its space came.
    target_start: Option<usize>,
    /// The target ended (or the line did): nothing to cut in this head.
    done: bool,
}

/// Follows the request framing of one HTTP/1 connection from the bytes read off it.
#[derive(Debug)]
pub struct Framing {
    state: State,
    /// A piece (head, chunk-size line, trailers, chunk CRLF) split across reads.
    pending: Vec<u8>,
    /// Heads seen so far.
    heads: u64,
    /// The rest of an over-long request target is being dropped (see the module docs).
    dropping: bool,
    /// How far the current head's request line has been looked at, so each read looks only
    /// at its new bytes (a line sent a byte at a time costs no rescan per byte).
    line: LineScan,
    verdicts: Arc<Verdicts>,
}

impl Framing {
    pub fn new(verdicts: Arc<Verdicts>) -> Framing {
        Framing {
            state: State::Head,
            pending: Vec::new(),
            heads: 0,
            dropping: false,
            line: LineScan::default(),
            verdicts,
        }
    }

    /// The next bytes read from the client. Returns where in `bytes` an over-long request
    /// target must be cut: the bytes before that index were followed; from it up to the next
    /// space or line end they must not reach hyper ([`Framing::drop_target`]), and what comes
    /// after is fed again.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Option<usize> {
        let whole = bytes.len();
        while !bytes.is_empty() {
            if self.state == State::Head
                && let Some(cut) = self.cut_at(bytes)
            {
                // No line end before the cut: the head goes on, so the bytes are kept.
                self.keep(&bytes[..cut]);
                self.dropping = self.state != State::Stopped;
                return self.dropping.then_some(whole - bytes.len() + cut);
            }
            match self.state {
                State::Stopped => return None,
                State::Fixed(left) | State::ChunkData(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[n..];
                    let left = left - n as u64;
                    self.state = match (self.state, left) {
                        (State::Fixed(_), 0) => State::Head,
                        (State::Fixed(_), left) => State::Fixed(left),
                        (_, 0) => State::ChunkEnd,
                        (_, left) => State::ChunkData(left),
                    };
                }
                State::Head | State::ChunkSize | State::ChunkEnd | State::Trailers => {
                    if self.pending.is_empty() {
                        match self.piece(bytes) {
                            Some(used) => bytes = &bytes[used..],
                            None => {
                                self.keep(bytes);
                                return None;
                            }
                        }
                    } else {
                        let before = self.pending.len();
                        let tail = before.saturating_sub(2);
                        self.keep(bytes);
                        // A head is complete only with its empty line: parse again only
                        // when one may have come, so a head sent a byte at a time costs no
                        // parse per byte.
                        if self.state == State::Head && !has_empty_line(&self.pending[tail..]) {
                            return None;
                        }
                        let pending = std::mem::take(&mut self.pending);
                        match self.piece(&pending) {
                            Some(used) => {
                                bytes = &bytes[used.saturating_sub(before).min(bytes.len())..];
                            }
                            None => {
                                self.pending = pending;
                                return None;
                            }
                        }
                    }
                }
            }
        }
        None
    }

    /// Where in `bytes`, the next bytes of a head after `pending`, its request target passes
    /// `MAX_TARGET + 1` bytes; none when the line ends first (or the method is not a method:
    /// hyper refuses that line anyway). Looks at the request line only, never the headers,
    /// and at each byte once.
    fn cut_at(&mut self, bytes: &[u8]) -> Option<usize> {
        let scan = &mut self.line;
        if scan.done {
            return None;
        }
        let at = scan.scanned;
        let unseen = self.pending.get(at..).unwrap_or_default();
        for (i, &b) in unseen.iter().chain(bytes).enumerate() {
            match (b, scan.target_start) {
                // Empty lines before a request line are skipped (as httparse does).
                (b'\r' | b'\n', _) if scan.len == 0 => continue,
                (b'\r' | b'\n', _) | (b' ', Some(_)) => {
                    scan.done = true;
                    return None;
                }
                (b' ', None) => scan.target_start = Some(scan.len + 1),
                // One byte past the longest target: cut here. `pending` never holds more
                // than that, so this is in `bytes`.
                (_, Some(start)) if scan.len - start > MAX_TARGET => {
                    scan.scanned = at + i;
                    return (at + i).checked_sub(self.pending.len());
                }
                _ => {}
            }
            scan.len += 1;
            if scan.target_start.is_none() && scan.len > 64 {
                scan.done = true;
                return None;
            }
        }
        scan.scanned = self.pending.len() + bytes.len();
        None
    }

    /// While an over-long target is being cut: how many of `bytes` (the next read) to drop,
    /// up to the space or line end that ends the target.
    pub fn drop_target(&mut self, bytes: &[u8]) -> usize {
        if !self.dropping {
            return 0;
        }
        match bytes
            .iter()
            .position(|&b| matches!(b, b' ' | b'\r' | b'\n'))
        {
            Some(end) => {
                self.dropping = false;
                end
            }
            None => bytes.len(),
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        if self.state == State::Stopped {
            return;
        }
        if self.pending.len() + bytes.len() > MAX_PENDING {
            self.stop();
        } else {
            self.pending.extend_from_slice(bytes);
        }
    }

    fn stop(&mut self) {
        self.state = State::Stopped;
        self.pending = Vec::new();
        self.line = LineScan::default();
        self.dropping = false;
    }

    /// Reads the piece the state expects from the start of `buf`: the bytes it took, or none
    /// when `buf` holds only part of it (or the framing stopped).
    fn piece(&mut self, buf: &[u8]) -> Option<usize> {
        match self.state {
            State::Head => self.head(buf),
            State::ChunkSize => match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((used, 0))) => {
                    self.state = State::Trailers;
                    Some(used)
                }
                Ok(httparse::Status::Complete((used, size))) => {
                    self.state = State::ChunkData(size);
                    Some(used)
                }
                Ok(httparse::Status::Partial) => None,
                Err(_) => {
                    self.stop();
                    None
                }
            },
            State::ChunkEnd => {
                if buf.len() < 2 {
                    // A lone CR so far; anything else is broken.
                    if buf != b"\r" {
                        self.stop();
                    }
                    return None;
                }
                if &buf[..2] == b"\r\n" {
                    self.state = State::ChunkSize;
                    Some(2)
                } else {
                    self.stop();
                    None
                }
            }
            State::Trailers => {
                let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
                match httparse::parse_headers(buf, &mut fields) {
                    Ok(httparse::Status::Complete((used, _))) => {
                        self.state = State::Head;
                        Some(used)
                    }
                    Ok(httparse::Status::Partial) => None,
                    Err(_) => {
                        self.stop();
                        None
                    }
                }
            }
            State::Fixed(_) | State::ChunkData(_) | State::Stopped => None,
        }
    }

    fn head(&mut self, buf: &[u8]) -> Option<usize> {
        // Left uninitialised for httparse to fill: zeroing 128 fields costs more than the parse.
        let mut fields =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut req = httparse::Request::new(&mut []);
        let used = match req.parse_with_uninit_headers(buf, &mut fields) {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) => return None,
            // hyper refuses it too, or it is not HTTP/1 (the HTTP/2 preface).
            Err(_) => {
                self.stop();
                return None;
            }
        };
        let number = self.heads;
        self.heads += 1;
        self.line = LineScan::default();
        let mut length: Option<Option<u64>> = None;
        let mut chunked: Option<bool> = None;
        // Only a WebSocket upgrade can switch the connection (the pipeline answers CONNECT 405
        // and forwards other upgrades as plain requests): after anything else, HTTP/1 goes on.
        let (mut connection_upgrade, mut websocket) = (false, false);
        let has_token = |value: &[u8], token: &[u8]| {
            value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
        };
        for field in req.headers.iter() {
            if field.name.eq_ignore_ascii_case("content-length") {
                let value = std::str::from_utf8(field.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
                length = match length {
                    Some(prior) if prior != value => Some(None),
                    _ => Some(value),
                };
            } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
                // As hyper: the last coding of the last field decides.
                let last = field
                    .value
                    .rsplit(|b| *b == b',')
                    .next()
                    .unwrap_or_default();
                chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if field.name.eq_ignore_ascii_case("upgrade") {
                websocket |= has_token(field.value, b"websocket");
            } else if field.name.eq_ignore_ascii_case("connection") {
                connection_upgrade |= has_token(field.value, b"upgrade");
            }
        }
        let upgrade = req.version == Some(1) && connection_upgrade && websocket;
        self.state = match (length, chunked) {
            (Some(_), Some(_)) => {
                self.verdicts.flagged.store(number, Ordering::Release);
                // hyper closes the connection after this request.
                State::Stopped
            }
            // What follows may be another protocol.
            _ if upgrade => State::Stopped,
            (None, Some(true)) => State::ChunkSize,
            (Some(Some(0)) | None, None) => State::Head,
            (Some(Some(n)), None) => State::Fixed(n),
            // hyper refuses these.
            (Some(None), None) | (None, Some(false)) => State::Stopped,
        };
        if self.state == State::Stopped {
            self.pending = Vec::new();
        }
        Some(used)
    }
}

impl Framing {
    /// Follows the bytes just read, in place: cuts what [`Framing::feed`] says must not reach
    /// hyper and moves the rest together. Returns how many bytes are left.
    pub fn follow(&mut self, bytes: &mut [u8]) -> usize {
        let (mut read, mut write) = (0, 0);
        while read < bytes.len() {
            read += self.drop_target(&bytes[read..]);
            let fed = match self.feed(&bytes[read..]) {
                Some(cut) => cut,
                None => bytes.len() - read,
            };
            bytes.copy_within(read..read + fed, write);
            read += fed;
            write += fed;
        }
        write
    }
}

/// Whether `bytes` hold a line end followed by an empty line.
fn has_empty_line(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .enumerate()
        .any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && bytes.get(i + 2) == Some(&b'\n')))
}

/// A client connection whose bytes, as hyper reads them, go through a [`Framing`] too.
#[derive(Debug)]
pub struct Observed<S> {
    io: S,
    framing: Framing,
}

impl<S> Observed<S> {
    pub fn new(io: S, verdicts: Arc<Verdicts>) -> Self {
        Observed {
            io,
            framing: Framing::new(verdicts),
        }
    }
}

impl<S> crate::deadline::Heads for Observed<S> {
    /// A head is in progress when its first bytes wait in `pending` (a complete head leaves
    /// none there).
    fn progress(&self) -> crate::deadline::HeadProgress {
        use crate::deadline::HeadProgress;
        match self.framing.state {
            // Stopped at the first bytes: HTTP/2's preface (or a head hyper refuses).
            State::Stopped if self.framing.heads == 0 => HeadProgress::NotHttp1,
            State::Stopped => HeadProgress::Unfollowed,
            State::Head if !self.framing.pending.is_empty() => HeadProgress::Partial,
            _ => HeadProgress::Between,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Observed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        loop {
            let polled = Pin::new(&mut this.io).poll_read(cx, buf);
            let Poll::Ready(Ok(())) = polled else {
                return polled;
            };
            let end = buf.filled().len();
            if end == before {
                return polled;
            }
            let kept = this.framing.follow(&mut buf.filled_mut()[before..]);
            buf.set_filled(before + kept);
            // Only dropped bytes came: read again, as no bytes would mean the end.
            if kept > 0 {
                return polled;
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Observed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
