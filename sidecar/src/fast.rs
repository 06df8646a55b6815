//! HTTP/1 on the fast path (issue 18) for both sides: the codec the gateway forwards with
//! (`ferry_proxy::h1`), instead of hyper's server and client state machines. A request head is
//! parsed in place in the client connection's buffer, its edited head written into a buffer
//! the connection reuses and sent with the body's first bytes in one write, and the body and
//! the answer passed through as framed; a WebSocket upgrade the upstream accepts becomes a
//! tunnel. What each side does with a request (authorization and the app's connection inbound,
//! a balanced endpoint over mTLS outbound) is in `inbound::fast` and `outbound::fast`.
//!
//! HTTP/1.1 and HTTP/1.0 requests in origin form are served here ([`served`]): an HTTP/1.0
//! client gets a chunked answer's content alone, ended by the close, and a kept connection's
//! answers say `Connection: keep-alive`. The first other request (an absolute-form target, an
//! HTTP/1.0 one without Host) is handed, with the connection and the bytes read, to hyper's
//! path, which serves the rest of it ([`Next::Handoff`]).
//!
//! Limits: a request head of up to 64 KiB (Envoy's default, and so Istio's sidecar's), the
//! target included, an answer's up to hyper's 408 KiB; the framing rules of RFC 9112 as the
//! gateway keeps them (bare LF, obs-fold, NUL, a length with chunked, a coding other than
//! chunked, no Host or two: refused, and the connection closed). No timeouts on the client
//! connection beyond hyper's path's (none): the app's connections are the app's to keep; but
//! a client that closes while its answer is slow ends the request, and an upstream that
//! answers before taking a whole body is heard at once (`ferry_proxy::h1::relay`).

use std::io;
use std::time::Duration;

use ferry_proxy::h1::alarm::{Alarm, Expired};
use ferry_proxy::h1::framing::{self, Body, RequestFraming};
use ferry_proxy::h1::pool::Upstream;
use ferry_proxy::h1::quiet::Quiet;
use ferry_proxy::h1::relay::{self, Answered, Error as RelayError, Exchange, Peer, Progress, Side};
use ferry_proxy::h1::rewind::Rewind;
use ferry_proxy::h1::write::own_answer;
use ferry_proxy::h1::{Limits, Malformed, RequestHead};
use http::{StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// The longest head (start line, fields, empty line) and target taken: Envoy's 60 KiB
/// default, rounded up as the gateway's.
pub(crate) const LIMITS: Limits = Limits {
    head_bytes: ferry_proxy::h1::head::MAX_HEAD,
    target: ferry_proxy::h1::head::MAX_HEAD,
};

/// The longest answer head taken from an app or an endpoint: hyper's client's default buffer
/// (8 KiB and 100 fields of 4 KiB), as the sidecar took before its HTTP/1 was its own.
pub(crate) const ANSWER_LIMITS: Limits = Limits {
    head_bytes: 8 * 1024 + 100 * 4 * 1024,
    target: 0,
};

/// A new connection to an app or an endpoint, for the fast path.
pub(crate) fn upstream<U>(io: U) -> Upstream<U> {
    Box::new(Side::upstream(Quiet::new(io), ANSWER_LIMITS))
}

/// One client connection on the fast path and the buffers its requests reuse.
#[derive(Debug)]
pub(crate) struct Conn<S> {
    pub client: Side<Quiet<S>>,
    /// The request head sent upstream (kept for another attempt).
    pub request_head: Vec<u8>,
    /// The answer's head sent to the client.
    pub answer_head: Vec<u8>,
    /// The response timeout, moved per request without a timer-wheel operation each.
    deadline: Alarm,
}

/// What the connection does after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    KeepAlive,
    Close,
    /// hyper's path serves this request (its head still buffered) and the connection.
    Handoff,
}

/// Whether the fast path serves a request with this head: HTTP/1.1 in origin form, or
/// HTTP/1.0 with a Host to send on (one without goes to hyper's path, whose client names the
/// endpoint).
pub(crate) fn served(head: &RequestHead<'_>) -> bool {
    let version = match head.version {
        Version::HTTP_11 => true,
        Version::HTTP_10 => head.fields.iter().any(|f| f.is("host")),
        _ => false,
    };
    version && head.target.starts_with('/')
}

/// What the steps of a request read of its head, once it is dealt with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request {
    pub head_len: usize,
    pub framing: RequestFraming,
    pub head_only: bool,
    pub idempotent: bool,
}

impl Request {
    /// The request `head` frames, or why it is refused (and whether it was a HEAD): besides
    /// the framing's rules, an HTTP/1.1 request carries exactly one Host (RFC 9112 section
    /// 3.2: a server answers 400 otherwise, and an app may well).
    pub(crate) fn of(head: &RequestHead<'_>) -> Result<Request, (Malformed, bool)> {
        let head_only = head.method == "HEAD";
        let framing = framing::request(head).map_err(|m| (m, head_only))?;
        if head.fields.iter().filter(|f| f.is("host")).count() != 1 {
            return Err((Malformed::Host, head_only));
        }
        Ok(Request {
            head_len: head.len,
            framing,
            head_only,
            idempotent: matches!(
                head.method,
                "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
            ),
        })
    }

    /// Without a body, so it can be sent again.
    pub(crate) fn replayable(&self) -> bool {
        self.framing.body == Body::Empty
    }

    /// Whether the client connection closes after an answer of the sidecar's own: when the
    /// client asked for that, its body was not read whole, or it speaks HTTP/1.0 (whose kept
    /// connection would need saying so).
    pub(crate) fn closes_after_own(&self) -> bool {
        !self.replayable() || !self.framing.keep_alive || self.framing.http10
    }
}

/// The request target without its fragment, which is not the server's (RFC 9110 section
/// 4.2.5).
pub(crate) fn target<'a>(head: &RequestHead<'a>) -> &'a str {
    head.target.split_once('#').map_or(head.target, |(t, _)| t)
}

/// Serves a connection on hyper's path: HTTP/2 when `h2`, else HTTP/1 (what the fast path
/// hands over).
pub(crate) async fn hyper<I, S>(io: I, h2: bool, svc: S) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Clone,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = hyper_util::rt::TokioIo::new(io);
    if h2 {
        hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .serve_connection(io, svc)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .await
    }
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
            deadline: Alarm::new(),
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
        let written = self
            .client
            .io
            .send_within(&self.answer_head, OWN_ANSWER_WRITE)
            .await;
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
    /// and closes has its answer passed on, and the client connection closes. `within`
    /// bounds all of it, from the request's first byte to the answer's head (hyper's path's
    /// response timeout): past it the exchange fails as timed out.
    pub(crate) async fn exchange<U>(
        &mut self,
        up: &mut Upstream<U>,
        framing: &RequestFraming,
        head_only: bool,
        within: Option<Duration>,
    ) -> Result<Begun, Failed>
    where
        U: AsyncRead + AsyncWrite + Unpin,
    {
        let mut progress = Progress::default();
        let request = Exchange {
            head: &self.request_head,
            framing,
            head_only,
            max_body: u64::MAX,
            extra: b"",
        };
        let exchanged = relay::exchange(
            &mut self.client,
            up,
            request,
            &mut self.answer_head,
            &mut progress,
            &|| false,
        );
        let (whole, started) = match within {
            None => exchanged.await,
            Some(limit) => match self
                .deadline
                .within(Instant::now() + limit, exchanged)
                .await
            {
                Ok(exchanged) => exchanged,
                Err(Expired) => {
                    let timed_out = io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no answer within the response timeout",
                    );
                    (false, Err(RelayError::Read(Peer::Upstream, timed_out)))
                }
            },
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
        self.client.io.close_within(CLOSE_WAIT).await;
    }
}

/// The longest an answer of the sidecar's own waits for the client to take it.
const OWN_ANSWER_WRITE: Duration = Duration::from_secs(10);

/// How long a closing client connection may take to take its last bytes.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
