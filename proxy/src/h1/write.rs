//! The edited head, serialized into one buffer reused for every request of a connection, and
//! sent with the body's first bytes in one vectored write ([`send`]).
//!
//! The request head gets the edits [`crate::forwarding`] makes for hyper, so an upstream sees
//! the same headers on either path: hop-by-hop headers out (`Connection` and the fields it
//! names, `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`, `Proxy-Authorization`,
//! `Trailer`, `Transfer-Encoding`, `HTTP2-Settings`, `Upgrade`, `TE` but for `trailers`);
//! `Host` and X-Forwarded-For (appended to the client's first), -Proto, -Host, -Port and
//! X-Real-IP set; the client's X-Request-Id kept, else a new one; this proxy's `Via` entry
//! added; a WebSocket upgrade's `Connection` and `Upgrade` put back. `Content-Length` is never
//! dropped, even when `Connection` names it: the body is passed on as framed, so its framing
//! headers must go with it (a chunked body gets `Transfer-Encoding: chunked` back). The
//! upstream request is HTTP/1.1 whatever the client spoke: the upstream connection is ours.
//!
//! What it may touch: the output buffer, and the writer [`send`] is handed.

use std::io::{self, IoSlice};
use std::ops::Range;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::framing::{Body, RequestFraming, ResponseFraming};
use super::has_token;
use super::head::{Fields, RequestHead, ResponseHead};
use super::names::Name;
use crate::forwarding::{Downstream, RequestIds, Via};

/// What the request head sent upstream takes besides the client's head.
#[derive(Clone, Copy, Debug)]
pub struct Edit<'a> {
    /// The target sent upstream: the path and query, normalized or rewritten.
    pub target: &'a [u8],
    /// The Host routed by.
    pub host: &'a [u8],
    pub framing: &'a RequestFraming,
}

/// Writes the request head sent upstream into `out` (cleared first); returns where in `out`
/// the request's X-Request-Id value is.
pub fn request_head(
    out: &mut Vec<u8>,
    head: &RequestHead<'_>,
    edit: &Edit<'_>,
    down: &Downstream,
    ids: &RequestIds,
    via: &Via,
) -> Range<usize> {
    out.clear();
    let line: [&[u8]; 4] = [head.method.as_bytes(), b" ", edit.target, b" HTTP/1.1\r\n"];
    for part in line {
        out.extend_from_slice(part);
    }
    field(out, b"Host", edit.host);
    let named = Named::of(head.fields);
    let mut prior_for: Option<&[u8]> = None;
    let mut request_id = None;
    let mut te_trailers: Option<bool> = None;
    for f in head.fields.iter() {
        let name = f.known;
        let hop = name != Name::ContentLength && named.names(f.name);
        match name {
            Name::Te if te_trailers.is_none() => {
                te_trailers = Some(!hop && has_token(f.value, b"trailers"));
            }
            Name::XForwardedFor if prior_for.is_none() && !hop => prior_for = Some(f.value),
            _ => {}
        }
        if hop || name.hop_by_hop() || name.set_by_proxy() || ignored(name, head) {
            continue;
        }
        if name == Name::XRequestId && request_id.is_none() {
            let start = out.len() + f.name.len() + 2;
            request_id = Some(start..start + f.value.len());
        }
        field(out, f.name, f.value);
    }
    let ip = down.real_ip().as_bytes();
    out.extend_from_slice(b"X-Forwarded-For: ");
    if let Some(prior) = prior_for.filter(|p| !p.is_empty()) {
        out.extend_from_slice(prior);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(ip);
    out.extend_from_slice(b"\r\n");
    field(out, b"X-Real-IP", ip);
    let proto: &[u8] = if down.tls { b"https" } else { b"http" };
    field(out, b"X-Forwarded-Proto", proto);
    field(out, b"X-Forwarded-Host", edit.host);
    field(out, b"X-Forwarded-Port", down.port().as_bytes());
    let request_id = request_id.unwrap_or_else(|| {
        out.extend_from_slice(b"X-Request-Id: ");
        let start = out.len();
        ids.write_next(out);
        let id = start..out.len();
        out.extend_from_slice(b"\r\n");
        id
    });
    field(out, b"Via", via.value(head.version).as_bytes());
    tail(out, edit.framing, te_trailers == Some(true));
    out.extend_from_slice(b"\r\n");
    request_id
}

/// Writes the request head a mesh sidecar sends on into `out` (cleared first): the client's
/// head as it came, with `target` as its target, but for the hop-by-hop headers (as
/// [`request_head`] drops them: `Content-Length` kept, `TE: trailers` and a WebSocket
/// upgrade's fields put back, `Transfer-Encoding: chunked` for a chunked body) and the fields
/// `dropped` says of; then `extra`, field lines of the sidecar's own (each ending in CRLF).
/// No forwarding headers: a sidecar is not a proxy the client chose (Linkerd's and Istio's
/// sidecars add none either), and the app reads the client's address from its connection.
pub fn pass_request_head(
    out: &mut Vec<u8>,
    head: &RequestHead<'_>,
    target: &[u8],
    framing: &RequestFraming,
    dropped: impl Fn(&[u8]) -> bool,
    extra: &[u8],
) {
    out.clear();
    let line: [&[u8]; 4] = [head.method.as_bytes(), b" ", target, b" HTTP/1.1\r\n"];
    for part in line {
        out.extend_from_slice(part);
    }
    let named = Named::of(head.fields);
    let mut te_trailers: Option<bool> = None;
    for f in head.fields.iter() {
        let name = f.known;
        let hop = name != Name::ContentLength && named.names(f.name);
        if name == Name::Te && te_trailers.is_none() {
            te_trailers = Some(!hop && has_token(f.value, b"trailers"));
        }
        if hop
            || name.hop_by_hop()
            || (name == Name::Other && dropped(f.name))
            || ignored(name, head)
        {
            continue;
        }
        field(out, f.name, f.value);
    }
    tail(out, framing, te_trailers == Some(true));
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
}

/// The hop-by-hop fields a request head gets back: a WebSocket upgrade's, `TE: trailers` when
/// the client asked for trailers, and the chunked coding of a body passed on chunked.
fn tail(out: &mut Vec<u8>, framing: &RequestFraming, te_trailers: bool) {
    if framing.upgrade {
        field(out, b"Connection", b"upgrade");
        field(out, b"Upgrade", b"websocket");
    }
    if te_trailers {
        field(out, b"TE", b"trailers");
    }
    if framing.body == Body::Chunked {
        field(out, b"Transfer-Encoding", b"chunked");
    }
}

/// Writes an answer of the proxy's own into `out` (cleared first): the status, a Date, the
/// text `body` (`text/plain`), a `Location`, and `Connection: close` when `close`; a HEAD
/// request's answer without the body.
pub fn own_answer(
    out: &mut Vec<u8>,
    status: http::StatusCode,
    location: Option<&[u8]>,
    body: &str,
    close: bool,
    head_only: bool,
) {
    use std::io::Write as _;
    out.clear();
    let reason = status.canonical_reason().unwrap_or("");
    let _ = write!(out, "HTTP/1.1 {} {reason}\r\nDate: ", status.as_u16());
    date(out);
    out.extend_from_slice(b"\r\n");
    if !body.is_empty() {
        out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
    }
    let _ = write!(out, "Content-Length: {}\r\n", body.len());
    if let Some(location) = location {
        field(out, b"Location", location);
    }
    if close {
        field(out, b"Connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
}

/// Writes the response head sent to the client into `out` (cleared first): hop-by-hop
/// headers out but for a switch's, which are the switch itself; the framing headers of the
/// body as it is passed on (a length dropped when chunked decides); `Connection: close` when
/// the client connection ends after it; then `extra`, field lines of the proxy's own
/// (each ending in CRLF). To an HTTP/1.0 client (`http10`) a chunked body goes without its
/// framing, so without `Transfer-Encoding` (the caller closes the connection after it, as
/// its end), and a connection that stays open says `Connection: keep-alive`, as that client
/// otherwise closes it (RFC 9112 section 9.3). The status line is HTTP/1.1's either way, as
/// nginx's is (RFC 9110 section 6.2: the highest minor version the server speaks).
pub fn response_head(
    out: &mut Vec<u8>,
    head: &ResponseHead<'_>,
    framing: &ResponseFraming,
    close: bool,
    http10: bool,
    extra: &[u8],
) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut status = [0u8; 3];
    let mut code = head.status;
    for digit in status.iter_mut().rev() {
        *digit = b'0' + (code % 10) as u8;
        code /= 10;
    }
    out.extend_from_slice(&status);
    out.push(b' ');
    out.extend_from_slice(head.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let switch = *framing == ResponseFraming::Switch;
    let body = match *framing {
        ResponseFraming::Message { body, .. } => Some(body),
        _ => None,
    };
    let named = Named::of(head.fields);
    let mut dated = false;
    for f in head.fields.iter() {
        let name = f.known;
        dated |= name == Name::Date;
        let kept = match name {
            // Chunked decides over a length (RFC 9112 section 6.3): the length must go.
            Name::ContentLength => body != Some(Body::Chunked),
            Name::Connection | Name::Upgrade if switch => true,
            _ => !name.hop_by_hop() && !named.names(f.name),
        };
        if kept {
            field(out, f.name, f.value);
        }
    }
    if body == Some(Body::Chunked) && !http10 {
        field(out, b"Transfer-Encoding", b"chunked");
    }
    if close && !switch {
        field(out, b"Connection", b"close");
    } else if http10 && !switch {
        field(out, b"Connection", b"keep-alive");
    }
    // RFC 9110 section 6.6.1: a proxy adds the Date an origin without a clock left out.
    if !dated {
        out.extend_from_slice(b"Date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
}

/// Whether a field of `head` is left out of the HTTP/1.1 request sent on: an HTTP/1.0
/// client's `Expect`, which a server ignores (RFC 9110 section 10.1.1) and an upstream would
/// read as an HTTP/1.1 client's.
fn ignored(name: Name, head: &RequestHead<'_>) -> bool {
    name == Name::Expect && head.version == http::Version::HTTP_10
}

/// The `Connection` fields of a head: which field names they declare hop-by-hop. Most name
/// only `keep-alive` or `upgrade`, hop-by-hop anyway: then no field is looked up.
struct Named<'a> {
    fields: Fields<'a>,
    any: bool,
}

impl<'a> Named<'a> {
    fn of(fields: Fields<'a>) -> Named<'a> {
        let any = fields.iter().any(|f| {
            f.known == Name::Connection
                && tokens(f.value).any(|t| {
                    !t.is_empty()
                        && !t.eq_ignore_ascii_case(b"keep-alive")
                        && !t.eq_ignore_ascii_case(b"upgrade")
                })
        });
        Named { fields, any }
    }

    fn names(&self, name: &[u8]) -> bool {
        self.any
            && self.fields.iter().any(|f| {
                f.known == Name::Connection && tokens(f.value).any(|t| t.eq_ignore_ascii_case(name))
            })
    }
}

fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(<[u8]>::trim_ascii)
}

/// Appends the current time as an HTTP date (IMF-fixdate, 29 bytes), made once a second per
/// thread: no allocation.
pub fn date(out: &mut Vec<u8>) {
    use std::cell::Cell;
    use std::io::Write as _;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static NOW: Cell<(u64, [u8; 29])> = const { Cell::new((0, [b' '; 29])) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    NOW.with(|cached| {
        let (at, mut text) = cached.get();
        if at != second {
            let _ = write!(&mut text[..], "{}", httpdate::HttpDate::from(now));
            cached.set((second, text));
        }
        out.extend_from_slice(&text);
    });
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Sends a head and the body bytes that came with it in vectored writes (one, unless the
/// writer takes less), so they leave together.
pub async fn send<W: AsyncWrite + Unpin>(io: &mut W, head: &[u8], body: &[u8]) -> io::Result<()> {
    let mut slices = [IoSlice::new(head), IoSlice::new(body)];
    let mut bufs = &mut slices[..];
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let n = io.write_vectored(bufs).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
