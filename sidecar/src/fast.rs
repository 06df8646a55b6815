//! HTTP/1 on the fast path (issue 18) for both sides: the codec the gateway forwards with
//! (`ferry_proxy::h1`), instead of hyper's server and client state machines. A request head is
//! parsed in place in the client connection's buffer, its edited head written into a buffer
//! the connection reuses and sent with the body's first bytes in one write, and the body and
//! the answer passed through as framed; a WebSocket upgrade the upstream accepts becomes a
//! tunnel. What each side does with a request (authorization and the app's connection inbound,
//! a balanced endpoint over mTLS outbound) is in `inbound::fast` and `outbound::fast`.
//!
//! HTTP/1.1 requests in origin form are served here ([`served`]); the first other request
//! (HTTP/1.0, whose answers cannot be chunked, or an absolute-form target) is handed, with the
//! connection and the bytes read, to hyper's path, which serves the rest of it
//! ([`Next::Handoff`]).
//!
//! Limits: a head of up to 64 KiB (Envoy's default, and so Istio's sidecar's), the target
//! included; the framing rules of RFC 9112 as the gateway keeps them (bare LF, obs-fold, NUL,
//! a length with chunked, a coding other than chunked: refused, and the connection closed).
//! No timeouts on the client connection beyond hyper's path's (none): the app's connections
//! are the app's to keep.

use ferry_proxy::h1::framing::RequestFraming;
use ferry_proxy::h1::pool::Upstream;
use ferry_proxy::h1::quiet::Quiet;
use ferry_proxy::h1::relay::{self, Answered, Asked, Error as RelayError, Peer, Progress, Side};
use ferry_proxy::h1::rewind::Rewind;
use ferry_proxy::h1::write::own_answer;
use ferry_proxy::h1::{Limits, Malformed, RequestHead};
use http::{StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// The longest head (start line, fields, empty line) and target taken: Envoy's 60 KiB
/// default, rounded up as the gateway's.
pub(crate) const LIMITS: Limits = Limits {
    head_bytes: ferry_proxy::h1::head::MAX_HEAD,
    target: ferry_proxy::h1::head::MAX_HEAD,
};

/// One client connection on the fast path and the buffers its requests reuse.
#[derive(Debug)]
pub(crate) struct Conn<S> {
    pub client: Side<Quiet<S>>,
    /// The request head sent upstream (kept for another attempt).
    pub request_head: Vec<u8>,
    /// The answer's head sent to the client.
    pub answer_head: Vec<u8>,
}

/// What the connection does after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    KeepAlive,
    Close,
    /// hyper's path serves this request (its head still buffered) and the connection.
    Handoff,
}

/// Whether the fast path serves a request with this head: HTTP/1.1 in origin form.
pub(crate) fn served(head: &RequestHead<'_>) -> bool {
    head.version == Version::HTTP_11 && head.target.starts_with('/')
}

/// An exchange whose answer reached the client, at least its head.
#[derive(Debug)]
pub(crate) enum Begun {
    /// The head and first bytes went out; [`Conn::finish`] passes the rest.
    Message {
        message: relay::Message,
        /// The request went upstream whole (else its connection is not used again).
        whole: bool,
    },
    /// `101 Switching Protocols` went out: [`Conn::finish`] runs the tunnel.
    Switched,
    /// Something went out and then the answer broke: only the close can tell the client.
    Broken { status: u16 },
}

impl Begun {
    /// The status the client got.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Begun::Message { message, .. } => message.status,
            Begun::Switched => 101,
            Begun::Broken { status } => *status,
        }
    }
}

/// An exchange that failed before anything of an answer went to the client.
#[derive(Debug)]
pub(crate) struct Failed {
    pub error: RelayError,
    /// The request went upstream whole (its body too).
    pub whole: bool,
    /// An answer's head came (then broke off): the request was answered.
    pub answered: bool,
}

impl Failed {
    /// The client's own failure: its body broke off, or it stopped reading.
    pub fn clients(&self) -> bool {
        self.error.peer() == Peer::Client
    }

    /// The upstream closed or reset the connection before answering (not a timeout): on a
    /// reused connection, what happens when an idle keep-alive ends as the request goes out.
    pub fn stale(&self) -> bool {
        !self.answered
            && matches!(
                self.error,
                RelayError::Closed(_) | RelayError::Read(..) | RelayError::Write(..)
            )
            && !self.error.timed_out()
    }

    /// The client's answer: 504 when the upstream took too long, else 502.
    pub fn status(&self) -> StatusCode {
        if self.error.timed_out() {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::BAD_GATEWAY
        }
    }
}

impl<S> Conn<S> {
    pub(crate) fn new(io: S) -> Conn<S> {
        Conn {
            client: Side::client(Quiet::new(io), LIMITS),
            request_head: Vec::with_capacity(1024),
            answer_head: Vec::with_capacity(1024),
        }
    }

    /// The connection with what was read of it, for hyper's path.
    pub(crate) fn into_rewind(self) -> Rewind<S> {
        let (io, read) = self.client.into_parts();
        Rewind::new(read, io.into_inner())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Waits for the next request's head: whether one is buffered whole. A malformed one is
    /// answered with its status, and the connection ends.
    pub(crate) async fn next(&mut self) -> bool {
        match self.client.read_head().await {
            Ok(Some(_)) => true,
            Ok(None) => false,
            Err(RelayError::Malformed(_, m)) => {
                self.refuse(m, false).await;
                false
            }
            Err(e) => {
                tracing::debug!(error = %e, "client connection ended");
                false
            }
        }
    }

    /// Answers a request that breaks HTTP/1's rules; the connection closes after it.
    pub(crate) async fn refuse(&mut self, m: Malformed, head_only: bool) {
        let text = format!("bad request: {m}\n");
        self.answer(m.status(), &text, true, head_only).await;
    }

    /// Sends an answer of the sidecar's own; the connection closes after it when `close` (or
    /// when it cannot be written). What the connection does next.
    pub(crate) async fn answer(
        &mut self,
        status: StatusCode,
        text: &str,
        close: bool,
        head_only: bool,
    ) -> Next {
        own_answer(&mut self.answer_head, status, None, text, close, head_only);
        self.client.io.set_write_limit(Some(OWN_ANSWER_WRITE));
        let written = match self.client.io.write_all(&self.answer_head).await {
            Ok(()) => self.client.io.flush().await,
            Err(e) => Err(e),
        };
        self.client.io.set_write_limit(None);
        match written {
            Ok(()) if !close => Next::KeepAlive,
            _ => {
                self.close().await;
                Next::Close
            }
        }
    }

    /// Sends the request whose edited head is in `request_head` (the client's head already
    /// taken) on `up` with its body, and starts passing the answer: its head and first bytes
    /// go to the client before this returns, so the caller counts the request then and
    /// calls [`Conn::finish`]. An upstream that answers before taking the whole body (a 413)
    /// has its answer passed on, and the client connection closes.
    pub(crate) async fn exchange<U>(
        &mut self,
        up: &mut Upstream<U>,
        framing: &RequestFraming,
        head_only: bool,
    ) -> Result<Begun, Failed>
    where
        U: AsyncRead + AsyncWrite + Unpin,
    {
        let asked = Asked {
            head: head_only,
            upgrade: framing.upgrade,
            keep_alive: framing.keep_alive,
        };
        let sent = relay::send_request(
            &mut self.client,
            up,
            &self.request_head,
            framing.body,
            framing.expect_continue,
            u64::MAX,
        )
        .await;
        let whole = sent.is_ok();
        let mut progress = Progress::default();
        let started = match sent {
            Ok(_) => {
                relay::start_response(
                    up,
                    &mut self.client,
                    asked,
                    b"",
                    &mut self.answer_head,
                    &mut progress,
                    &|| false,
                )
                .await
            }
            Err(e @ RelayError::Write(Peer::Upstream, _)) if !e.timed_out() => {
                let early = Asked {
                    keep_alive: false,
                    ..asked
                };
                relay::start_response(
                    up,
                    &mut self.client,
                    early,
                    b"",
                    &mut self.answer_head,
                    &mut progress,
                    &|| false,
                )
                .await
                .map_err(|_| e)
            }
            Err(e) => Err(e),
        };
        match started {
            Ok(relay::Started::Message(message)) => Ok(Begun::Message { message, whole }),
            Ok(relay::Started::Switched) => Ok(Begun::Switched),
            Err(error) if progress.sent => {
                tracing::debug!(%error, "an answer broke off");
                Ok(Begun::Broken {
                    status: progress.status.unwrap_or(502),
                })
            }
            Err(error) => Err(Failed {
                error,
                whole,
                answered: progress.status.is_some(),
            }),
        }
    }

    /// Passes the rest of an answer [`Conn::exchange`] began, or runs the tunnel of a switch;
    /// what the client connection does next, and whether `up` may carry another request.
    pub(crate) async fn finish<U>(&mut self, up: &mut Upstream<U>, begun: Begun) -> (Next, bool)
    where
        U: AsyncRead + AsyncWrite + Unpin,
    {
        match begun {
            Begun::Message { message, whole } => {
                match relay::finish_response(up, &mut self.client, message).await {
                    Ok(Answered::Message {
                        client_keep_alive,
                        upstream_keep_alive,
                        ..
                    }) => {
                        let next = if client_keep_alive {
                            Next::KeepAlive
                        } else {
                            Next::Close
                        };
                        (next, upstream_keep_alive && whole)
                    }
                    Ok(Answered::Switched) => (Next::Close, false),
                    Err(error) => {
                        tracing::debug!(%error, "an answer broke off");
                        (Next::Close, false)
                    }
                }
            }
            Begun::Switched => {
                // A tunnel is as quiet as its two ends make it.
                up.io.set_read_limit(None);
                up.io.set_write_limit(None);
                if let Err(error) = relay::tunnel(&mut self.client, up).await {
                    tracing::debug!(%error, "a tunnel ended with an error");
                }
                (Next::Close, false)
            }
            Begun::Broken { .. } => (Next::Close, false),
        }
    }

    /// Closes the client connection, waiting a moment at most for what it holds (a TLS
    /// connection's last records and close_notify) to go out.
    pub(crate) async fn close(&mut self) {
        self.client.io.set_write_limit(Some(CLOSE_WAIT));
        let _ = tokio::time::timeout(CLOSE_WAIT, self.client.io.shutdown()).await;
    }
}

/// The longest an answer of the sidecar's own waits for the client to take it.
const OWN_ANSWER_WRITE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a closing client connection may take to take its last bytes.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
