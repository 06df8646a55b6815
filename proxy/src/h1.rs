//! HTTP/1 framing of our own for the forwarding fast path (issue 18), over `httparse` as
//! Pingora's is: hyper keeps HTTP/2, the admin API and every other HTTP.
//!
//! A codec, not a server: pure functions and state machines over byte buffers the caller
//! owns and reuses. No sockets of its own (only [`write::send`] and [`relay`] do I/O, on
//! streams they are handed), no clock, no allocation per request once the buffers are warm.
//!
//! - [`head`]: a request or response head parsed in place into borrowed views, within the
//!   gateway's limits (8 KiB target: 414; 64 KiB head or 100 fields: 431), bare LF, obs-fold
//!   and control characters refused (RFC 9112 sections 2.2 and 5.2).
//! - [`framing`]: which body follows a head (RFC 9112 section 6): Content-Length, chunked,
//!   until close, none, or a tunnel after a switch; the smuggling rules (a length with chunked,
//!   differing or duplicate lengths, a coding that is not chunked) refused.
//! - [`body`]: the body delimited as it passes through, chunked validated byte by byte and
//!   never re-chunked.
//! - [`write`]: the edited head (hop-by-hop headers out, forwarding headers and `Via` in, as
//!   [`crate::forwarding`] edits them for hyper) serialized into one reused buffer, and sent
//!   with the first body bytes in one vectored write.
//! - [`relay`]: the above over two connections: a head read into a reused buffer, a request
//!   and its answer passed through with their bodies as framed, a switch run as a tunnel.
//! - [`quiet`]: per-operation read and write timeouts on a connection; [`pool`]: a worker's
//!   idle upstream connections, for the next client connection; [`rewind`]: a connection
//!   handed to another server with the bytes read from it; [`alarm`]: a deadline moved per
//!   request without a timer-wheel operation per request.
//!
//! Every refusal is a [`Malformed`], which knows its status.

pub mod alarm;
pub mod body;
pub mod framing;
pub mod head;
mod names;
pub mod pool;
pub mod quiet;
pub mod relay;
pub mod rewind;
pub mod write;

pub use body::{Delimiter, Run, Step};
pub use framing::{Body, RequestFraming, ResponseFraming};
pub use head::{Field, Fields, Limits, Parser, RequestHead, ResponseHead};

use http::StatusCode;

/// Why a message is refused: each a rule of RFC 9112 or a limit the gateway keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// The request target is longer than [`Limits::target`] (nginx's 414).
    #[error("the request target is longer than the limit")]
    TargetTooLong,
    /// The head is larger than [`Limits::head_bytes`] (431).
    #[error("the head is larger than the limit")]
    HeadTooLarge,
    /// More header fields than [`head::MAX_FIELDS`] (431, as hyper).
    #[error("the head has too many header fields")]
    TooManyFields,
    /// A line ends in LF without CR (RFC 9112 section 2.2).
    #[error("a line ends in a bare LF")]
    BareLf,
    /// A field line folded onto the next (obs-fold, RFC 9112 section 5.2).
    #[error("a header field is folded over lines (obs-fold)")]
    ObsFold,
    /// NUL, CR or another control character in a field value (RFC 9110 section 5.5).
    #[error("a control character in a header field value")]
    ControlInField,
    /// A field name that is not a token, or whitespace before the colon (RFC 9112 5.1).
    #[error("an invalid header field name")]
    FieldName,
    /// The method, target or version of the start line is not valid.
    #[error("an invalid start line")]
    StartLine,
    /// `Content-Length` with `Transfer-Encoding` (nginx refuses it; RFC 9112 6.3).
    #[error("Content-Length and Transfer-Encoding together")]
    LengthAndChunked,
    /// A `Content-Length` that is not a number, or more than one (nginx: duplicate header).
    #[error("an invalid or repeated Content-Length")]
    BadLength,
    /// A request's `Transfer-Encoding` whose last coding is not chunked: its length cannot be
    /// known (RFC 9112 section 6.3, rule 4).
    #[error("a Transfer-Encoding whose last coding is not chunked")]
    NotChunked,
    /// Chunked after other codings, or in more than one field: nginx reads chunked alone (501).
    #[error("only Transfer-Encoding: chunked is read")]
    UnknownCoding,
    /// `Transfer-Encoding` in an HTTP/1.0 message (RFC 9112 section 6.1).
    #[error("Transfer-Encoding in an HTTP/1.0 message")]
    CodingInHttp10,
    /// A chunk-size line, chunk end or trailer section that breaks the chunked coding.
    #[error("the chunked coding is broken")]
    BadChunk,
    /// The connection ended inside a body whose end was known.
    #[error("the body broke off")]
    Truncated,
    /// An HTTP/1.1 request without a Host, or with more than one (RFC 9112 section 3.2). The
    /// framing does not check it: the gateway answers it with its own failures.
    #[error("a request needs exactly one Host")]
    Host,
    /// An upstream switched protocols without being asked to.
    #[error("a switch of protocols nobody asked for")]
    UnaskedSwitch,
}

impl Malformed {
    /// The status a client gets when its request is refused for this (what the gateway
    /// answers today). For a malformed response the client's answer is the caller's to
    /// give (the gateway's is 502); only [`Malformed::UnaskedSwitch`] says so here.
    pub fn status(self) -> StatusCode {
        match self {
            Self::TargetTooLong => StatusCode::URI_TOO_LONG,
            Self::HeadTooLarge | Self::TooManyFields => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UnknownCoding => StatusCode::NOT_IMPLEMENTED,
            Self::UnaskedSwitch => StatusCode::BAD_GATEWAY,
            Self::BareLf
            | Self::ObsFold
            | Self::ControlInField
            | Self::FieldName
            | Self::StartLine
            | Self::LengthAndChunked
            | Self::BadLength
            | Self::NotChunked
            | Self::CodingInHttp10
            | Self::BadChunk
            | Self::Truncated
            | Self::Host => StatusCode::BAD_REQUEST,
        }
    }
}

/// Whether a comma-separated field value lists `token` (case-insensitive).
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests;
