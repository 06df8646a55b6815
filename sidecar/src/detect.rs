//! Protocol detection without a stall: what a new connection speaks, from its first bytes.
//!
//! The first bytes are read (not peeked: a peek returns at once with what is there and would
//! spin) into a buffer that [`Prefixed`] replays in front of the rest of the stream, so whoever
//! serves the connection next sees it whole. [`detect`] decides:
//!
//! - a port where the server speaks first ([`Detection::opaque_ports`], Linkerd's defaults:
//!   SMTP, MySQL, PostgreSQL, Redis, memcached…) is opaque at once, without reading: the client
//!   is waiting for the server's banner and would never send a byte;
//! - the HTTP/2 preface is [`Detected::H2`]; a valid HTTP/1 request line is [`Detected::Http1`];
//! - a TLS ClientHello is [`Detected::MeshTls`] when it offers [`mesh::ALPN`] (another sidecar)
//!   and [`Detected::Tls`] otherwise (the app's own TLS, carried opaque);
//! - anything else is opaque as soon as it cannot be one of these, and bytes that could still
//!   become one are waited for at most [`Detection::timeout`] (100 ms by default: Linkerd waits
//!   10 s, which is the stall a server-first protocol on an unlisted port suffers there).
//!
//! This module only reads; counting the outcomes is the caller's ([`Detected::label`]).

use std::collections::HashSet;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use ferry_model::mesh;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The longest ClientHello waited for (the handshake message, in as many records as it takes).
const MAX_HELLO: usize = 16 * 1024;
/// The most read before giving up: the longest ClientHello in records of one byte each would
/// be more, but no client fragments that finely; this is two full records.
const MAX_PREFIX: usize = 2 * (5 + 16 * 1024);
/// An HTTP/1 request line longer than this is not waited for.
const MAX_REQUEST_LINE: usize = 8 * 1024;

/// Linkerd's default opaque ports: protocols whose server speaks first.
pub const SERVER_FIRST_PORTS: [u16; 8] = [25, 587, 3306, 4444, 5432, 6379, 9300, 11211];

/// How detection is done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    /// The longest wait for bytes that could still be HTTP or TLS.
    pub timeout: Duration,
    /// Ports that are opaque without reading anything.
    pub opaque_ports: HashSet<u16>,
}

impl Default for Detection {
    fn default() -> Self {
        Detection {
            timeout: Duration::from_millis(100),
            opaque_ports: SERVER_FIRST_PORTS.into_iter().collect(),
        }
    }
}

/// What a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Detected {
    Http1,
    H2,
    /// TLS offering the mesh's ALPN: another sidecar.
    MeshTls,
    /// TLS without the mesh's ALPN: the app's own, carried as bytes.
    Tls,
    Opaque(Opaque),
}

/// Why a connection is carried as bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opaque {
    /// A server-speaks-first port: nothing was read.
    Port,
    /// Not waited for: was told so (appProtocol, a hint).
    Hint,
    /// The bytes are no protocol we know.
    Unknown,
    /// Nothing decisive came within the timeout.
    Timeout,
    /// The client closed before anything decisive came.
    Closed,
}

impl Detected {
    /// The label of the outcome in `ferry_sidecar_detections_total`.
    pub fn label(self) -> &'static str {
        match self {
            Detected::Http1 => "http1",
            Detected::H2 => "h2",
            Detected::MeshTls => "mesh_tls",
            Detected::Tls => "tls",
            Detected::Opaque(Opaque::Port) => "opaque_port",
            Detected::Opaque(Opaque::Hint) => "opaque_hint",
            Detected::Opaque(Opaque::Unknown) => "opaque_unknown",
            Detected::Opaque(Opaque::Timeout) => "opaque_timeout",
            Detected::Opaque(Opaque::Closed) => "opaque_closed",
        }
    }

    pub fn is_http(self) -> bool {
        matches!(self, Detected::Http1 | Detected::H2)
    }
}

/// Reads the first bytes of `io` until the protocol is known or the timeout passes, and returns
/// the stream with those bytes put back in front.
pub async fn detect<I: AsyncRead + Unpin>(
    mut io: I,
    port: u16,
    config: &Detection,
) -> io::Result<(Detected, Prefixed<I>)> {
    if config.opaque_ports.contains(&port) {
        return Ok((
            Detected::Opaque(Opaque::Port),
            Prefixed::new(BytesMut::new(), io),
        ));
    }
    let mut buf = BytesMut::with_capacity(1024);
    let deadline = tokio::time::Instant::now() + config.timeout;
    let detected = loop {
        if let Some(found) = classify(&buf) {
            break found;
        }
        if buf.len() >= MAX_PREFIX {
            break Detected::Opaque(Opaque::Unknown);
        }
        buf.reserve(1024);
        match tokio::time::timeout_at(deadline, io.read_buf(&mut buf)).await {
            Err(_) => break Detected::Opaque(Opaque::Timeout),
            Ok(Ok(0)) => break Detected::Opaque(Opaque::Closed),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    };
    Ok((detected, Prefixed::new(buf, io)))
}

/// What `buf` is, or `None` while more bytes could still decide.
fn classify(buf: &[u8]) -> Option<Detected> {
    let first = *buf.first()?;
    if first == 0x16 {
        return client_hello(buf).map(|alpn| match alpn {
            Some(true) => Detected::MeshTls,
            Some(false) => Detected::Tls,
            None => Detected::Opaque(Opaque::Unknown),
        });
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return (n == H2_PREFACE.len()).then_some(Detected::H2);
    }
    request_line(buf)
}

/// An HTTP/1 request line: `Some(Http1)` once a whole valid one is there, `Some(Opaque)` as
/// soon as the bytes cannot start one.
fn request_line(buf: &[u8]) -> Option<Detected> {
    let method_len = buf.iter().position(|&b| b == b' ').unwrap_or(buf.len());
    // A method is a token; every method in use is upper-case letters (and '-' in a few).
    if method_len > 32
        || !buf[..method_len]
            .iter()
            .all(|b| b.is_ascii_uppercase() || *b == b'-')
    {
        return Some(Detected::Opaque(Opaque::Unknown));
    }
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return (buf.len() > MAX_REQUEST_LINE).then_some(Detected::Opaque(Opaque::Unknown));
    };
    // The line alone, ended as a head with no headers, so httparse judges just the line.
    let mut line = buf[..end]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..end])
        .to_vec();
    line.extend_from_slice(b"\r\n\r\n");
    let mut request = httparse::Request::new(&mut []);
    match request.parse(&line) {
        Ok(httparse::Status::Complete(_)) => Some(Detected::Http1),
        _ => Some(Detected::Opaque(Opaque::Unknown)),
    }
}

/// Reads a TLS ClientHello's ALPN offer: `None` while it is incomplete, `Some(None)` when it
/// is not a ClientHello, `Some(Some(offers_mesh))` otherwise. The handshake message may span
/// several records (RFC 8446 §5.1 lets a sender fragment it) and the records several reads:
/// both are waited for, never taken for opaque bytes.
fn client_hello(buf: &[u8]) -> Option<Option<bool>> {
    let mut rest = buf;
    let mut handshake: Vec<u8> = Vec::new();
    loop {
        let header = rest.get(..5)?;
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if header[0] != 0x16 || header[1] != 3 || len == 0 || len > 16 * 1024 {
            return Some(None);
        }
        let fragment = rest.get(5..5 + len)?;
        rest = &rest[5 + len..];
        // One record holding the whole message (the usual case) is read in place.
        let message = if handshake.is_empty() {
            fragment
        } else {
            handshake.extend_from_slice(fragment);
            &handshake
        };
        if let Some(head) = message.get(..4) {
            let need =
                4 + (usize::from(head[1]) << 16 | usize::from(head[2]) << 8 | usize::from(head[3]));
            if need > MAX_HELLO {
                return Some(None);
            }
            if let Some(whole) = message.get(..need) {
                return Some(alpn_offers_mesh(whole));
            }
        }
        if handshake.is_empty() {
            handshake.extend_from_slice(fragment);
        }
    }
}

/// The ALPN extension of a ClientHello handshake message (RFC 8446 §4.1.2).
fn alpn_offers_mesh(record: &[u8]) -> Option<bool> {
    let mut r = Reader(record);
    if r.u8()? != 1 {
        return None; // not a ClientHello
    }
    let len = r.u24()?;
    let body = r.take(len)?;
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    let session = usize::from(r.u8()?);
    r.take(session)?;
    let suites = usize::from(r.u16()?);
    r.take(suites)?;
    let compression = usize::from(r.u8()?);
    r.take(compression)?;
    if r.0.is_empty() {
        return Some(false); // no extensions at all
    }
    let extensions = usize::from(r.u16()?);
    let mut ext = Reader(r.take(extensions)?);
    while !ext.0.is_empty() {
        let kind = ext.u16()?;
        let data = usize::from(ext.u16()?);
        let data = ext.take(data)?;
        if kind == 16 {
            let mut alpn = Reader(data);
            let list = usize::from(alpn.u16()?);
            let mut list = Reader(alpn.take(list)?);
            while !list.0.is_empty() {
                let n = usize::from(list.u8()?);
                if list.take(n)? == mesh::ALPN {
                    return Some(true);
                }
            }
            return Some(false);
        }
    }
    Some(false)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        Some(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
}

/// A stream with bytes already read from it put back in front.
#[derive(Debug)]
pub struct Prefixed<I> {
    prefix: BytesMut,
    io: I,
}

impl<I> Prefixed<I> {
    pub fn new(prefix: BytesMut, io: I) -> Prefixed<I> {
        Prefixed { prefix, io }
    }

    pub fn get_ref(&self) -> &I {
        &self.io
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(out.remaining());
            out.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, out)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
