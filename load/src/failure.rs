//! Why a request got no response, sorted into the kinds a report counts.

use std::error::Error as StdError;
use std::io;

use serde::Serialize;

#[cfg(test)]
mod tests;

/// The kinds of failed requests, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Failure {
    /// The TCP connection could not be opened (refused, unreachable, connect timeout).
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// No complete response within `--timeout`.
    Timeout,
    /// The server closed or reset the connection or stream before the response was complete.
    Reset,
    /// The server broke HTTP: a malformed response, an HTTP/2 protocol error.
    Protocol,
}

impl Failure {
    pub const ALL: [Failure; 5] = [
        Failure::Connect,
        Failure::Tls,
        Failure::Timeout,
        Failure::Reset,
        Failure::Protocol,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Tls => "tls",
            Failure::Timeout => "timeout",
            Failure::Reset => "reset",
            Failure::Protocol => "protocol",
        }
    }

    /// Sorts an error from hyper (or below it) by walking its source chain.
    pub fn classify(error: &(dyn StdError + 'static)) -> Failure {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(io) = e.downcast_ref::<io::Error>() {
                return Failure::from_io(io);
            }
            if let Some(h2) = e.downcast_ref::<h2::Error>() {
                if let Some(io) = h2.get_io() {
                    return Failure::from_io(io);
                }
                return if h2.is_reset() || h2.is_go_away() {
                    Failure::Reset
                } else {
                    Failure::Protocol
                };
            }
            if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
                if hyper.is_timeout() {
                    return Failure::Timeout;
                }
                if (hyper.is_incomplete_message() || hyper.is_canceled() || hyper.is_closed())
                    && hyper.source().is_none()
                {
                    return Failure::Reset;
                }
            }
            next = e.source();
        }
        if let Some(hyper) = error.downcast_ref::<hyper::Error>()
            && (hyper.is_incomplete_message() || hyper.is_canceled() || hyper.is_closed())
        {
            return Failure::Reset;
        }
        Failure::Protocol
    }

    pub fn from_io(e: &io::Error) -> Failure {
        use io::ErrorKind::*;
        match e.kind() {
            TimedOut => Failure::Timeout,
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected => {
                Failure::Reset
            }
            ConnectionRefused | AddrNotAvailable | HostUnreachable | NetworkUnreachable => {
                Failure::Connect
            }
            // rustls reports alerts and bad records as InvalidData.
            InvalidData => Failure::Protocol,
            _ => Failure::Reset,
        }
    }
}
