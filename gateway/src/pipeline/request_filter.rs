//! The checks of the `request_filter` step: what the gateway refuses before routing, as nginx
//! (ingress-nginx's defaults) refuses it, and the path normalized by `ferry_proxy::uri`. Pure
//! functions over the request's head: no I/O.
//!
//! Most are HTTP's own rules that any proxy keeps (RFC 9112's framing and Host rules, a loop
//! found by the `Via` entry): a sidecar would want them too, and they can move to `proxy/`
//! when it comes. The 8 KiB target limit, refusing CONNECT and TRACE, and nginx's `$uri`
//! normalization are an edge's choices, nginx's as an Ingress controller.

use std::borrow::Cow;

use http::header;
use http::uri::PathAndQuery;
use http::{Method, Request, Uri, Version};

use ferry_proxy::uri::{self, PathError};

use ferry_proxy::Failure;
use ferry_proxy::forwarding::Via;

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
    match normalized_target(raw.as_str())? {
        Cow::Borrowed(_) => Ok(raw),
        Cow::Owned(path) => {
            PathAndQuery::try_from(path).map_err(|_| Failure::BadPath(PathError::BadEscape))
        }
    }
}

/// An origin-form target's path normalized, with the query as sent: the target itself, not
/// a copy, when it is normal already.
pub(super) fn normalized_target(target: &str) -> Result<Cow<'_, str>, Failure> {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    match uri::normalize_path(path).map_err(Failure::BadPath)? {
        Cow::Borrowed(_) => Ok(Cow::Borrowed(target)),
        Cow::Owned(mut normal) => {
            if let Some(query) = query {
                normal.push('?');
                normal.push_str(query);
            }
            Ok(Cow::Owned(normal))
        }
    }
}

#[cfg(test)]
mod tests;
