//! Which body follows a head: RFC 9112 section 6, with the refusals the gateway makes today
//! (hyper's rules plus the request filter's and the smuggling tracker's, as nginx's):
//!
//! Requests:
//! - `Transfer-Encoding` in HTTP/1.0: 400 (section 6.1).
//! - `Content-Length` with `Transfer-Encoding`: 400, whatever their order (section 6.3 allows
//!   reading it as chunked; nginx refuses it, and so do we).
//! - a `Content-Length` that is not digits, or more than one of them (nginx's "duplicate
//!   header line", stricter than hyper, which takes identical copies): 400.
//! - a `Transfer-Encoding` whose last coding is not chunked: 400 (section 6.3, rule 4);
//!   chunked after other codings or in more than one field: 501 (nginx reads chunked alone).
//! - neither: no body (section 6.3, rule 7).
//!
//! Responses: 1xx is interim (101 a switch, only if the request asked for one), no body for
//! HEAD, 204 and 304; chunked when the last coding is, else until close; a length (copies of
//! one value allowed, as hyper); else until close.
//!
//! Pure functions over a parsed head.

use http::Version;

use super::head::{RequestHead, ResponseHead};
use super::names::Name;
use super::{Malformed, has_token};

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Empty,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// What a request head says about its body and its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestFraming {
    pub body: Body,
    /// An HTTP/1.1 WebSocket upgrade (`Connection: upgrade` and `Upgrade: websocket`, as
    /// `crate::upgrade::websocket_upgrade`): a 101 answer turns the connection into a tunnel.
    pub upgrade: bool,
    /// The client may send another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue`, from an HTTP/1.1 client (an HTTP/1.0 one's is ignored, RFC
    /// 9110 section 10.1.1).
    pub expect_continue: bool,
    /// An HTTP/1.0 request: its answer cannot be chunked, and a kept connection says
    /// `Connection: keep-alive`.
    pub http10: bool,
}

/// What a response head says comes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFraming {
    /// A 1xx other than 101: the final answer's head follows.
    Interim,
    /// 101 to a request that asked for it: the connection becomes a tunnel.
    Switch,
    Message {
        body: Body,
        /// The upstream connection may carry another request.
        keep_alive: bool,
    },
}

/// The connection options of a head's `Connection` fields.
#[derive(Clone, Copy, Debug, Default)]
struct Connection {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
}

impl Connection {
    /// Notes the options of a `Connection` field: one pass over its tokens.
    fn add(&mut self, value: &[u8]) {
        for token in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
            let (flag, name): (&mut bool, &[u8]) = match token.len() {
                5 => (&mut self.close, b"close"),
                7 => (&mut self.upgrade, b"upgrade"),
                10 => (&mut self.keep_alive, b"keep-alive"),
                _ => continue,
            };
            *flag |= token.eq_ignore_ascii_case(name);
        }
    }

    /// Whether the connection stays open after the message (RFC 9112 section 9.3).
    fn persists(&self, version: Version) -> bool {
        !self.close && (version != Version::HTTP_10 || self.keep_alive)
    }
}

/// The body and connection of a request, or why it is refused.
pub fn request(head: &RequestHead<'_>) -> Result<RequestFraming, Malformed> {
    let mut length = None;
    let mut lengths = 0usize;
    let mut codings = 0usize;
    let (mut last_chunked, mut chunked_alone) = (false, true);
    let mut connection = Connection::default();
    let (mut websocket, mut expect_continue) = (false, false);
    for field in head.fields.iter() {
        match field.known {
            Name::ContentLength => {
                lengths += 1;
                length = Some(parse_length(field.value)?);
            }
            Name::TransferEncoding => {
                if head.version == Version::HTTP_10 {
                    return Err(Malformed::CodingInHttp10);
                }
                codings += 1;
                // As hyper: the last coding of the last field decides whether it is chunked.
                last_chunked = last_coding_chunked(field.value);
                chunked_alone &= field.value.trim_ascii().eq_ignore_ascii_case(b"chunked");
            }
            Name::Connection => connection.add(field.value),
            Name::Upgrade => websocket |= has_token(field.value, b"websocket"),
            Name::Expect => {
                expect_continue = field.value.eq_ignore_ascii_case(b"100-continue");
            }
            _ => {}
        }
    }
    let body = match (codings, length) {
        (1.., Some(_)) => return Err(Malformed::LengthAndChunked),
        (1.., None) if !last_chunked => return Err(Malformed::NotChunked),
        (1.., None) if codings > 1 || !chunked_alone => return Err(Malformed::UnknownCoding),
        (1.., None) => Body::Chunked,
        (0, Some(_)) if lengths > 1 => return Err(Malformed::BadLength),
        (0, Some(0)) | (0, None) => Body::Empty,
        (0, Some(n)) => Body::Length(n),
    };
    Ok(RequestFraming {
        body,
        upgrade: head.version == Version::HTTP_11 && connection.upgrade && websocket,
        keep_alive: connection.persists(head.version),
        expect_continue: expect_continue && head.version == Version::HTTP_11,
        http10: head.version == Version::HTTP_10,
    })
}

/// What follows a response head, to a request with `method` that asked for an upgrade or not.
pub fn response(
    head: &ResponseHead<'_>,
    method: &str,
    upgrade_asked: bool,
) -> Result<ResponseFraming, Malformed> {
    match head.status {
        101 if upgrade_asked => return Ok(ResponseFraming::Switch),
        101 => return Err(Malformed::UnaskedSwitch),
        100..=199 => return Ok(ResponseFraming::Interim),
        _ => {}
    }
    let mut connection = Connection::default();
    let (mut coding, mut last_chunked) = (false, false);
    let mut length: Option<u64> = None;
    let mut bad_length = false;
    for field in head.fields.iter() {
        match field.known {
            Name::TransferEncoding => {
                if head.version == Version::HTTP_10 {
                    return Err(Malformed::CodingInHttp10);
                }
                coding = true;
                last_chunked = last_coding_chunked(field.value);
            }
            Name::ContentLength => {
                // `Content-Length: 5, 5` and repeated fields of one value are one length.
                for part in field.value.split(|b| *b == b',') {
                    match (parse_length(part), length) {
                        (Ok(n), Some(prior)) if n != prior => bad_length = true,
                        (Ok(n), _) => length = Some(n),
                        (Err(_), _) => bad_length = true,
                    }
                }
            }
            Name::Connection => connection.add(field.value),
            _ => {}
        }
    }
    let no_body = method.eq_ignore_ascii_case("HEAD") || matches!(head.status, 204 | 304);
    let body = match (no_body, coding, length) {
        (true, _, _) => Body::Empty,
        (false, true, _) if last_chunked => Body::Chunked,
        (false, true, _) => Body::UntilClose,
        (false, false, _) if bad_length => return Err(Malformed::BadLength),
        (false, false, Some(0)) => Body::Empty,
        (false, false, Some(n)) => Body::Length(n),
        (false, false, None) => Body::UntilClose,
    };
    Ok(ResponseFraming::Message {
        body,
        keep_alive: body != Body::UntilClose && connection.persists(head.version),
    })
}

/// A `Content-Length` value: digits only, whitespace around them allowed (RFC 9110 8.6).
fn parse_length(value: &[u8]) -> Result<u64, Malformed> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Malformed::BadLength);
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(Malformed::BadLength)
    })
}

/// Whether the last coding a `Transfer-Encoding` value lists is chunked.
fn last_coding_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|b| *b == b',')
        .next()
        .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

#[cfg(test)]
mod tests;
