//! The `request_filter` step: what the gateway refuses before routing, as nginx (ingress-nginx's
//! defaults) refuses it, and the two things it takes from a request before routing it: the
//! path normalized by `ferry_proxy::uri` and whether it asks for a WebSocket. Also this
//! gateway's `Via`, which marks what it forwards and finds what comes back. Pure functions
//! over the request's head: no I/O.

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Uri, Version};

use ferry_proxy::uri::{self, PathError};

use super::Failure;

/// What is refused before routing, as nginx refuses it (RFC 9112's framing and Host rules,
/// the methods a gateway does not forward, a request that loops back here: `via` is this
/// gateway's).
pub(super) fn check<B>(req: &Request<B>, via: &Via) -> Result<(), Failure> {
    if req
        .extensions()
        .get::<crate::smuggling::LengthAndChunked>()
        .is_some()
    {
        return Err(Failure::LengthAndChunked);
    }
    if target_len(req.uri()) > MAX_TARGET {
        return Err(Failure::UriTooLong);
    }
    check_host(req)?;
    let headers = req.headers();
    // hyper reads the body as chunked when chunked is the last coding; nginx refuses any
    // coding but chunked alone.
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(first) = codings.next()
        && (codings.next().is_some()
            || !first
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked"))
    {
        return Err(Failure::UnknownCoding);
    }
    if matches!(*req.method(), Method::CONNECT | Method::TRACE) {
        return Err(Failure::MethodNotAllowed);
    }
    if headers.contains_key(header::VIA) && via.seen_in(headers) {
        return Err(Failure::Loop);
    }
    Ok(())
}

/// Whether a request asks for a WebSocket (`Connection: upgrade` with `Upgrade: websocket`,
/// HTTP/1.1): the only upgrade tunnelled. Any other (`h2c`, deprecated by RFC 9113 section
/// 3.1, or an unknown token) is forwarded as a plain request without its Upgrade header, so a
/// backend cannot switch the client's connection into a protocol that reaches what the
/// Ingress does not route.
pub(super) fn websocket_upgrade<B>(req: &Request<B>) -> bool {
    let tokens = |name: header::HeaderName| {
        req.headers()
            .get_all(name)
            .into_iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
    };
    req.version() == Version::HTTP_11
        && tokens(header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"))
        && tokens(header::UPGRADE).any(|t| t.eq_ignore_ascii_case("websocket"))
}

/// The longest request target (nginx's request line buffer, `large_client_header_buffers`'
/// 8 KiB): 414 beyond. The head as a whole may be larger (431 past the listener's limit).
pub const MAX_TARGET: usize = 8 * 1024;

/// The request target's length as the client sent it (origin or absolute form).
fn target_len(uri: &Uri) -> usize {
    let path = uri.path_and_query().map_or(0, |p| p.as_str().len());
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => scheme.len() + 3 + authority.as_str().len() + path,
        (None, Some(authority)) => authority.as_str().len() + path,
        _ => path,
    }
}

/// RFC 9112 section 3.2: an HTTP/1.1 request has exactly one Host, and it is `host[:port]`;
/// an absolute-form target's authority is checked the same way (it replaces the Host,
/// section 3.2.2).
fn check_host<B>(req: &Request<B>) -> Result<(), Failure> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(Failure::DuplicateHost);
    }
    if let Some(host) = first
        && !uri::valid_host(host.as_bytes())
    {
        return Err(Failure::BadHost);
    }
    match req.uri().authority() {
        Some(a) if !uri::valid_host(a.as_str().as_bytes()) => Err(Failure::BadHost),
        None if first.is_none() && req.version() == Version::HTTP_11 => Err(Failure::NoHost),
        _ => Ok(()),
    }
}

/// The path normalized (see `ferry_proxy::uri`) with the query as sent; the same value, not a
/// copy, when it is normal already.
pub(super) fn normalized(raw: PathAndQuery) -> Result<PathAndQuery, Failure> {
    let normal = uri::normalize_path(raw.path()).map_err(Failure::BadPath)?;
    let std::borrow::Cow::Owned(mut path) = normal else {
        return Ok(raw);
    };
    if let Some(query) = raw.query() {
        path.push('?');
        path.push_str(query);
    }
    PathAndQuery::try_from(path).map_err(|_| Failure::BadPath(PathError::BadEscape))
}

/// This gateway's `Via` entry (RFC 9110 section 7.6.3): the received protocol and a pseudonym
/// made at start, unique to this gateway instance (`ferry-` and 16 hex digits).
#[derive(Debug)]
pub(super) struct Via {
    pseudonym: Box<str>,
    http10: HeaderValue,
    http11: HeaderValue,
    http2: HeaderValue,
}

impl Via {
    pub(super) fn new() -> Via {
        let pseudonym = format!("ferry-{:016x}", ferry_runtime::random::u64());
        let value = |protocol: &str| {
            HeaderValue::from_str(&format!("{protocol} {pseudonym}"))
                .unwrap_or(HeaderValue::from_static("1.1 ferry"))
        };
        Via {
            http10: value("1.0"),
            http11: value("1.1"),
            http2: value("2"),
            pseudonym: pseudonym.into(),
        }
    }

    /// The entry for a request received over `version`.
    pub(super) fn value(&self, version: Version) -> HeaderValue {
        match version {
            Version::HTTP_10 | Version::HTTP_09 => self.http10.clone(),
            Version::HTTP_2 | Version::HTTP_3 => self.http2.clone(),
            _ => self.http11.clone(),
        }
    }

    /// Whether one of the `Via` entries in `headers` is this gateway's.
    fn seen_in(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::VIA)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .any(|entry| {
                // `[protocol-name "/"] protocol-version RWS received-by [RWS comment]`
                entry
                    .split(|b| b.is_ascii_whitespace())
                    .filter(|t| !t.is_empty())
                    .nth(1)
                    .is_some_and(|by| by == self.pseudonym.as_bytes())
            })
    }
}

#[cfg(test)]
mod tests;
