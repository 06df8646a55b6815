//! The HTTP/1.1 side of the load generator, built for one thing: sending the same request over
//! and over, as cheaply as wrk does.
//!
//! The request never changes during a run, so it is serialized once ([`Wire`]) and each send is
//! one write of those bytes. Responses are read into one buffer per connection and parsed with
//! `httparse` (the parser hyper uses); the body is counted and skipped, never kept, so a
//! response costs no allocation. [`Reader`] is the framing (RFC 9112 section 6): no body for
//! HEAD, 1xx, 204 and 304; chunked (sizes parsed, data and trailers skipped); Content-Length;
//! otherwise the body runs until the server closes. It is pure, so the unit tests feed it bytes
//! in any split. [`Conn`] adds the socket (TCP or TLS). HTTP/2 stays with hyper.

use std::io;
use std::mem::MaybeUninit;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, Method, StatusCode};
use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::connect::Response;
use crate::failure::Failure;

#[cfg(test)]
mod tests;

/// The read buffer of each connection: a response head must fit in it (hyper's default limit
/// is larger, but heads near this size are not what a load test sends); bodies stream through.
pub const BUFFER: usize = 64 * 1024;

/// Header lines a response head may have (hyper's default limit too).
const MAX_HEADERS: usize = 100;

/// Trailer lines a chunked body may end with.
const MAX_TRAILERS: usize = 32;

/// The request, serialized once for the whole run.
#[derive(Clone, Debug)]
pub struct Wire {
    pub bytes: Bytes,
    /// A HEAD request: responses to it have no body whatever their headers say.
    pub head: bool,
}

impl Wire {
    /// Request line, headers (with `host` among them) and body, as hyper would write them:
    /// lower-case names in the header map's order, and a `content-length` for a non-empty body
    /// unless one was given.
    pub fn encode(
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Wire, String> {
        if headers.contains_key(TRANSFER_ENCODING) {
            return Err(
                "-H Transfer-Encoding is not supported over HTTP/1.1: the body is sent with \
                 Content-Length"
                    .into(),
            );
        }
        if !headers.contains_key(HOST) {
            return Err("an HTTP/1.1 request needs a Host header".into());
        }
        let mut out = BytesMut::with_capacity(256 + body.len());
        out.put_slice(method.as_str().as_bytes());
        out.put_u8(b' ');
        out.put_slice(path.as_bytes());
        out.put_slice(b" HTTP/1.1\r\n");
        for (name, value) in headers {
            out.put_slice(name.as_str().as_bytes());
            out.put_slice(b": ");
            out.put_slice(value.as_bytes());
            out.put_slice(b"\r\n");
        }
        if !body.is_empty() && !headers.contains_key(CONTENT_LENGTH) {
            out.put_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        }
        out.put_slice(b"\r\n");
        out.put_slice(body);
        Ok(Wire {
            bytes: out.freeze(),
            head: *method == Method::HEAD,
        })
    }
}

/// Where a response stands as its bytes arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for the status line and headers (again after a 1xx).
    Head,
    /// Body bytes still to come.
    Fixed(u64),
    /// A chunk-size line.
    ChunkSize,
    /// Chunk data still to come, then its CRLF.
    ChunkData(u64),
    /// The CRLF that ends a chunk's data.
    ChunkEnd,
    /// Trailer lines, up to the empty line that ends the message.
    Trailers,
    /// The body ends when the server closes the connection.
    UntilClose,
    Done,
}

/// The framing of one response, fed its bytes in whatever pieces they arrive.
#[derive(Debug)]
pub struct Reader {
    state: State,
    /// The request was HEAD.
    head: bool,
    status: u16,
    body: u64,
    /// The connection cannot carry another request after this response.
    close: bool,
}

impl Reader {
    pub fn new(head: bool) -> Reader {
        Reader {
            state: State::Head,
            head,
            status: 0,
            body: 0,
            close: false,
        }
    }

    /// Whether the whole response has been read.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the server must close after this response (`Connection: close`, HTTP/1.0, a
    /// body that runs until close).
    pub fn close(&self) -> bool {
        self.close
    }

    /// The response, once [`Reader::done`].
    pub fn response(&self) -> Result<Response, Failure> {
        let status = StatusCode::from_u16(self.status).map_err(|_| Failure::Protocol)?;
        Ok(Response {
            status,
            bytes: self.body,
        })
    }

    /// Consumes what it can of `buf` and returns how many bytes it used. Unless the response
    /// is done, every byte not used is the start of something that needs more bytes to parse.
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, Failure> {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            match self.state {
                State::Done => return Ok(at),
                State::Head => match self.parse_head(rest)? {
                    Some(n) => at += n,
                    None => return Ok(at),
                },
                State::Fixed(left) => {
                    let n = skip(left, rest);
                    self.body += n as u64;
                    at += n;
                    match left - n as u64 {
                        0 => self.state = State::Done,
                        left => {
                            self.state = State::Fixed(left);
                            return Ok(at);
                        }
                    }
                }
                State::ChunkSize => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((n, 0))) => {
                        at += n;
                        self.state = State::Trailers;
                    }
                    Ok(httparse::Status::Complete((n, size))) => {
                        at += n;
                        self.state = State::ChunkData(size);
                    }
                    Ok(httparse::Status::Partial) => return Ok(at),
                    Err(httparse::InvalidChunkSize) => return Err(Failure::Protocol),
                },
                State::ChunkData(left) => {
                    let n = skip(left, rest);
                    self.body += n as u64;
                    at += n;
                    match left - n as u64 {
                        0 => self.state = State::ChunkEnd,
                        left => {
                            self.state = State::ChunkData(left);
                            return Ok(at);
                        }
                    }
                }
                State::ChunkEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        at += 2;
                        self.state = State::ChunkSize;
                    }
                    [] | [b'\r'] => return Ok(at),
                    _ => return Err(Failure::Protocol),
                },
                State::Trailers => {
                    let mut trailers = [httparse::EMPTY_HEADER; MAX_TRAILERS];
                    match httparse::parse_headers(rest, &mut trailers) {
                        Ok(httparse::Status::Complete((n, _))) => {
                            at += n;
                            self.state = State::Done;
                        }
                        Ok(httparse::Status::Partial) => return Ok(at),
                        Err(_) => return Err(Failure::Protocol),
                    }
                }
                State::UntilClose => {
                    self.body += rest.len() as u64;
                    return Ok(buf.len());
                }
            }
        }
    }

    /// The server closed the connection: the end of a body that runs until close, a broken
    /// response otherwise.
    pub fn eof(&mut self) -> Result<(), Failure> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(Failure::Reset),
        }
    }

    /// Parses a response head from the start of `buf`: `Some(its length)` when complete.
    fn parse_head(&mut self, buf: &[u8]) -> Result<Option<usize>, Failure> {
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut []);
        let n = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut res,
            buf,
            &mut headers,
        ) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(Failure::Protocol),
        };
        let (Some(code), Some(version)) = (res.code, res.version) else {
            return Err(Failure::Protocol);
        };
        match code {
            // We never ask to switch protocols.
            101 => return Err(Failure::Protocol),
            // 100 Continue, 103 Early Hints: the real response follows.
            100..=199 => return Ok(Some(n)),
            _ => {}
        }
        self.status = code;
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut coded = false;
        // HTTP/1.0 closes unless told otherwise; HTTP/1.1 keeps the connection unless told.
        let mut close = version == 0;
        for h in res.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let value = std::str::from_utf8(h.value)
                    .ok()
                    .map(|v| v.trim_matches([' ', '\t']))
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or(Failure::Protocol)?;
                if length.is_some_and(|l| l != value) {
                    return Err(Failure::Protocol);
                }
                length = Some(value);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                coded = true;
                // Chunked must be the last coding for the length to be known.
                chunked = h
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && version == 0 {
                        close = false;
                    }
                }
            }
        }
        self.state = if self.head || code == 204 || code == 304 {
            State::Done
        } else if coded && version == 1 {
            if chunked {
                State::ChunkSize
            } else {
                State::UntilClose
            }
        } else if let Some(length) = length {
            State::Fixed(length)
        } else {
            State::UntilClose
        };
        if self.state == State::UntilClose {
            close = true;
        }
        self.close = close;
        Ok(Some(n))
    }
}

/// How many of `rest`'s bytes belong to a body with `left` bytes to go.
fn skip(left: u64, rest: &[u8]) -> usize {
    usize::try_from(left).map_or(rest.len(), |left| left.min(rest.len()))
}

/// The socket under a connection.
#[derive(Debug)]
pub enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Io {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Io::Plain(s) => s.read(buf).await,
            Io::Tls(s) => s.read(buf).await,
        }
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Io::Plain(s) => s,
            Io::Tls(s) => s.get_ref().0,
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Io::Plain(s) => s.write_all(bytes).await,
            Io::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }
}

/// Why a send failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    Failed(Failure),
    /// The server closed the connection while it was idle, before this request reached it:
    /// a connection that had answered before closed without a byte of answer (a keep-alive
    /// timeout as the request went out), or one found closed before its first request. Not a
    /// failure of the server: send again on a fresh connection.
    Stale,
}

/// One HTTP/1.1 connection: a socket and its read buffer.
#[derive(Debug)]
pub struct Conn {
    io: Io,
    buf: Box<[u8]>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Responses read whole on this connection.
    served: u64,
    open: bool,
}

impl Conn {
    pub fn new(io: Io) -> Conn {
        Conn {
            io,
            buf: vec![0; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            served: 0,
            open: true,
        }
    }

    /// Whether the connection can carry another request.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Whether the server closed or reset the connection, seen without reading: a peek,
    /// which costs a system call, so it is done only before a connection's first request.
    /// A connection may wait long before that (opened before the clock started, idle through
    /// the other side's slices of `--compare`); later, one closed while idle shows as stale
    /// when the request goes out, for free.
    pub fn closed_before_use(&self) -> bool {
        let mut byte = [MaybeUninit::uninit()];
        match SockRef::from(self.io.tcp()).peek(&mut byte) {
            Ok(0) => true,
            // Bytes waiting (over TLS, a session ticket): up to the exchange to judge.
            Ok(_) => false,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        }
    }

    /// Writes the request and reads its whole response. On any error the connection is
    /// closed: its state is unknown.
    pub async fn send(&mut self, wire: &Wire) -> Result<Response, SendError> {
        if !self.open {
            return Err(SendError::Failed(Failure::Reset));
        }
        if self.served == 0 && self.closed_before_use() {
            self.open = false;
            return Err(SendError::Stale);
        }
        let result = self.exchange(wire).await;
        match &result {
            Ok(_) => self.served += 1,
            Err(_) => self.open = false,
        }
        result
    }

    async fn exchange(&mut self, wire: &Wire) -> Result<Response, SendError> {
        // A stale connection shows as a reset or an end of stream before any answer.
        let stale = |served: u64, e: &io::Error| {
            let kind = Failure::from_io(e);
            if served > 0 && kind == Failure::Reset {
                SendError::Stale
            } else {
                SendError::Failed(kind)
            }
        };
        if let Err(e) = self.io.write_all(&wire.bytes).await {
            return Err(stale(self.served, &e));
        }
        let mut reader = Reader::new(wire.head);
        let mut answered = false;
        loop {
            let used = reader
                .feed(&self.buf[self.start..self.end])
                .map_err(SendError::Failed)?;
            self.start += used;
            if reader.done() {
                break;
            }
            // Whatever is left is an incomplete piece: make room after it and read more.
            if self.start == self.end {
                (self.start, self.end) = (0, 0);
            } else if self.end == self.buf.len() {
                if self.start == 0 {
                    // A head (or trailer, or chunk-size line) longer than the buffer.
                    return Err(SendError::Failed(Failure::Protocol));
                }
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            }
            let n = match self.io.read(&mut self.buf[self.end..]).await {
                Ok(n) => n,
                Err(e) if answered => return Err(SendError::Failed(Failure::from_io(&e))),
                Err(e) => return Err(stale(self.served, &e)),
            };
            if n == 0 {
                if !answered && self.served > 0 {
                    return Err(SendError::Stale);
                }
                reader.eof().map_err(SendError::Failed)?;
                self.open = false;
                break;
            }
            answered = true;
            self.end += n;
        }
        if reader.close() || self.start != self.end {
            // The server said it closes, or sent more than the response: bytes no request
            // asked for would be taken for the next response.
            self.open = false;
        }
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        reader.response().map_err(SendError::Failed)
    }
}
