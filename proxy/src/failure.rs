//! The one failure type of the request path: why a request was not forwarded, or failed
//! upstream, and what the client gets for it (the status, a one-line text that names the
//! cause but no internal detail, whether the connection closes). The status is decided here
//! and nowhere else; whether an attempt may be tried again is decided from the endpoint's
//! [`AttemptOutcome`](crate::AttemptOutcome) in [`crate::upstream::may_retry`].

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{ProxyBody, full};
use crate::uri::PathError;

/// Why a request was not forwarded, or failed upstream: the status it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    NoHost,
    /// More than one Host header (RFC 9112 section 3.2).
    DuplicateHost,
    /// A Host (or an absolute-form target's authority) that is not `host[:port]`: userinfo,
    /// spaces, a bad port.
    BadHost,
    /// A path nginx refuses: a bad escape, `%00`, `..` above the root.
    BadPath(PathError),
    /// The request target is longer than the request filter allows (nginx's 414).
    UriTooLong,
    /// A `Transfer-Encoding` other than `chunked` alone (nginx's 501).
    UnknownCoding,
    /// CONNECT and TRACE are not forwarded (nginx's 405).
    MethodNotAllowed,
    /// The request went through this proxy before (its `Via`): a route points back here.
    Loop,
    /// HTTP/1 `Content-Length` with `Transfer-Encoding`: refused as nginx does, never read.
    LengthAndChunked,
    /// The client's body broke off (it disconnected, or broke the chunked framing).
    BodyBroken,
    BodyTooLarge,
    NoRoute,
    NoService,
    NoEndpoint,
    Connect,
    /// Connecting took longer than the connect timeout (nginx's 504, not 502).
    ConnectTimeout,
    Upstream,
    Timeout,
    /// The request body stalled (`proxy-send-timeout`) before an answer came.
    SendTimeout,
}

impl Failure {
    pub fn status(self) -> StatusCode {
        match self {
            Self::NoHost
            | Self::DuplicateHost
            | Self::BadHost
            | Self::BadPath(_)
            | Self::LengthAndChunked
            | Self::BodyBroken => StatusCode::BAD_REQUEST,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::UnknownCoding => StatusCode::NOT_IMPLEMENTED,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Loop => StatusCode::LOOP_DETECTED,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::NoService | Self::NoEndpoint => StatusCode::SERVICE_UNAVAILABLE,
            Self::Connect | Self::Upstream => StatusCode::BAD_GATEWAY,
            Self::Timeout | Self::SendTimeout | Self::ConnectTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The one-line text of the answer's body.
    pub fn message(self) -> &'static str {
        match self {
            Self::NoHost => "bad request: no Host\n",
            Self::DuplicateHost => "bad request: more than one Host\n",
            Self::BadHost => "bad request: invalid Host\n",
            Self::BadPath(PathError::BadEscape) => "bad request: a bad %-escape in the path\n",
            Self::BadPath(PathError::Nul) => "bad request: %00 in the path\n",
            Self::BadPath(PathError::AboveRoot) => "bad request: the path climbs above /\n",
            Self::BadPath(PathError::NotAbsolute) => "bad request: the path must start with /\n",
            Self::UriTooLong => "URI too long\n",
            Self::UnknownCoding => "not implemented: only Transfer-Encoding: chunked is read\n",
            Self::MethodNotAllowed => "method not allowed\n",
            Self::Loop => "loop detected: the request came through this gateway before\n",
            Self::LengthAndChunked => {
                "bad request: Content-Length and Transfer-Encoding together\n"
            }
            Self::BodyBroken => "bad request: the request body broke off\n",
            Self::BodyTooLarge => "payload too large: the request body exceeds the limit\n",
            Self::NoRoute => "not found: no route for this host and path\n",
            Self::NoService => "service unavailable: the backend service or port does not exist\n",
            Self::NoEndpoint => "service unavailable: no ready endpoint\n",
            Self::Connect => "bad gateway: the upstream cannot be reached\n",
            Self::ConnectTimeout => "gateway timeout: connecting to the upstream took too long\n",
            Self::Upstream => "bad gateway: the upstream failed\n",
            Self::Timeout => "gateway timeout: the upstream did not answer in time\n",
            Self::SendTimeout => "gateway timeout: the request body did not go through in time\n",
        }
    }

    /// The answer a client gets for it: the status, a one-line text, and `Connection: close`
    /// where the connection cannot carry another request.
    pub fn respond(self) -> Response<ProxyBody> {
        let mut r = Response::new(full(self.message()));
        *r.status_mut() = self.status();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.closes() {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }

    /// Whether the client connection closes after the answer: the body that follows is not
    /// read, or its framing is in doubt, so the connection cannot carry another request.
    /// nginx closes after every 400, 413, 414 and 501 too (a client that sends one is broken
    /// or hostile).
    pub fn closes(self) -> bool {
        matches!(
            self,
            Self::BodyTooLarge
                | Self::LengthAndChunked
                | Self::BodyBroken
                | Self::SendTimeout
                | Self::UnknownCoding
                | Self::UriTooLong
                | Self::NoHost
                | Self::DuplicateHost
                | Self::BadHost
                | Self::BadPath(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_statuses() {
        let table = [
            (Failure::NoHost, 400),
            (Failure::NoRoute, 404),
            (Failure::NoService, 503),
            (Failure::NoEndpoint, 503),
            (Failure::Connect, 502),
            (Failure::ConnectTimeout, 504),
            (Failure::Upstream, 502),
            (Failure::Timeout, 504),
            (Failure::SendTimeout, 504),
            (Failure::LengthAndChunked, 400),
            (Failure::BodyBroken, 400),
            (Failure::DuplicateHost, 400),
            (Failure::BadHost, 400),
            (Failure::BadPath(PathError::AboveRoot), 400),
            (Failure::UriTooLong, 414),
            (Failure::UnknownCoding, 501),
            (Failure::MethodNotAllowed, 405),
            (Failure::Loop, 508),
        ];
        for (f, code) in table {
            assert_eq!(f.status().as_u16(), code, "{f:?}");
            // As nginx: a 400, 413, 414 or 501 closes the connection; 405 and 508 do not
            // (nor a 504 but for a stalled body, whose framing is in doubt).
            let closes = f.respond().headers().get(header::CONNECTION).is_some();
            let nginx_closes = matches!(code, 400 | 413 | 414 | 501) || f == Failure::SendTimeout;
            assert_eq!(closes, nginx_closes, "{f:?}");
        }
    }
}
