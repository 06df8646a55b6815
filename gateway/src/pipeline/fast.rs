//! The request steps on the HTTP/1 fast path (issue 18): the same steps as for hyper's
//! requests (see the pipeline's docs), over a head parsed in place in the client
//! connection's buffer (`ferry_proxy::h1`), routed on borrowed text, its edited head written
//! into a buffer the connection reuses and sent with the first body bytes in one write, the
//! body and the answer passed through as framed ([`relay`]), over an upstream connection the
//! client connection owns ([`Conn`]). No allocation per request once the buffers are warm,
//! but for the access log's strings when it is on, and for the gateway's own answers.
//!
//! The fast path serves HTTP/1.1 requests in origin form to plain HTTP/1.1 backends. The rest
//! is handed, with the connection, to hyper's path ([`Next::Handoff`]) at the request's start,
//! its bytes unread: HTTP/1.0 (its answers cannot be chunked: hyper's server de-chunks them),
//! WebSocket upgrades (hyper's path runs the tunnel with its timeouts), absolute-form and
//! asterisk targets, and backends over TLS or HTTP/2.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferry_proxy::balancer::{affinity_key, client_ip_key};
use ferry_proxy::forwarding::Downstream;
use ferry_proxy::h1::framing::{self, Body, RequestFraming};
use ferry_proxy::h1::pool::{self, Parking, Upstream};
use ferry_proxy::h1::quiet::Quiet;
use ferry_proxy::h1::relay::{self, Answered, Asked, Error as RelayError, Peer, Progress, Side};
use ferry_proxy::h1::write::{self, Edit};
use ferry_proxy::h1::{Limits as HeadLimits, Malformed, RequestHead};
use ferry_proxy::upstream::{MAX_ATTEMPTS, Protocol};
use ferry_proxy::uri;
use ferry_proxy::{AttemptOutcome, Failure};
use http::{HeaderValue, Method, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::request_filter::normalized_target as normalized;
use super::{Context, Pipeline, Route, Routed, affinity_cookie, random};
use crate::metrics::Handles;
use crate::select;

/// An owned upstream connection idle at least this long is checked for a close before it
/// carries a request; one used more recently is trusted (a request without a body that meets
/// a close is sent again on a new connection).
const CHECK_AFTER: Duration = Duration::from_secs(1);

/// One client connection on the fast path: its side, the upstream connection it owns, and
/// the buffers its requests reuse.
#[derive(Debug)]
pub(crate) struct Conn<S> {
    pub client: Side<Quiet<S>>,
    /// The endpoint, the connection, and when its last answer ended.
    upstream: Option<(SocketAddr, Upstream, Instant)>,
    parking: std::sync::Arc<Parking>,
    /// The request head sent upstream (kept for another attempt).
    request_head: Vec<u8>,
    /// The answer's head sent to the client.
    answer_head: Vec<u8>,
    /// Field lines the gateway adds to the answer (the affinity cookie).
    extra: Vec<u8>,
    /// The metric handles of the last request's labels.
    handles: Handles,
}

impl<S> Conn<S> {
    pub(crate) fn new(io: S, parking: std::sync::Arc<Parking>) -> Conn<S> {
        Conn {
            client: Side::client(Quiet::new(io), HeadLimits::default()),
            upstream: None,
            parking,
            request_head: Vec::with_capacity(1024),
            answer_head: Vec::with_capacity(1024),
            extra: Vec::new(),
            handles: Handles::default(),
        }
    }

    /// The client connection ends: its idle upstream connection goes to the worker's pool.
    pub(crate) fn park(&mut self) {
        if let Some((endpoint, conn, since)) = self.upstream.take() {
            self.parking.put(endpoint, conn, since);
        }
    }

    /// The connection and its unread bytes, for hyper's path.
    pub(crate) fn into_parts(mut self) -> (S, Vec<u8>) {
        self.park();
        let (io, rest) = self.client.into_parts();
        (io.into_inner(), rest)
    }
}

/// What the connection does after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    KeepAlive,
    Close,
    /// hyper's path serves this request (still unread in the buffer) and the connection.
    Handoff,
}

/// What the steps before the upstream decided.
enum Decided<'s> {
    /// Refused, and whether the connection closes after the answer.
    Refuse(Failure, bool),
    Malformed(Malformed),
    Redirect(super::Redirect, bool),
    Handoff,
    Forward(Plan<'s>),
}

/// A request to forward, once its head is written.
struct Plan<'s> {
    route: Route<'s>,
    framing: RequestFraming,
    key: Option<u64>,
    head_len: usize,
    head_only: bool,
    idempotent: bool,
}

/// The start of an HTTP/2 connection's preface (h2c with prior knowledge).
pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

impl Pipeline {
    /// A pool for one worker's idle fast-path upstream connections.
    pub(crate) fn parking(&self) -> std::sync::Arc<Parking> {
        std::sync::Arc::new(Parking::new(self.timeouts.pool_idle))
    }

    /// Serves the request whose head `conn.client` holds (read whole), then counts and logs
    /// it; says what the connection does next.
    pub(crate) async fn serve_h1<S>(&self, conn: &mut Conn<S>, down: &Downstream) -> Next
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let started = Instant::now();
        let mut cx = Context::default();
        // On the snapshot this request started with, whatever changes meanwhile.
        let state = self.state.load();
        let (decided, head_len) = match conn.client.request() {
            Ok(head) => {
                let len = head.len;
                let decided = self.decide(
                    &state,
                    &head,
                    down,
                    &mut cx,
                    &mut conn.request_head,
                    &mut conn.extra,
                );
                (decided, len)
            }
            Err(RelayError::Malformed(_, m)) => (Decided::Malformed(m), 0),
            Err(_) => return Next::Close,
        };
        // An answer of the gateway's own takes the head (the body, if any, stays unread and
        // the connection closes after the answer).
        if matches!(decided, Decided::Refuse(..) | Decided::Redirect(..)) {
            conn.client.consume(head_len);
        }
        let head_only = cx.method == Method::HEAD;
        let (status, next) = match decided {
            Decided::Handoff => return Next::Handoff,
            Decided::Malformed(m) => return self.refuse_h1(conn, m, down).await,
            Decided::Refuse(failure, close) => {
                let status = failure.status();
                let out = &mut conn.answer_head;
                own_answer(out, status, None, failure.message(), close, head_only);
                (status, send_own(conn, close).await)
            }
            Decided::Redirect(redirect, close) => {
                let location = redirect.location();
                let out = &mut conn.answer_head;
                own_answer(
                    out,
                    redirect.status,
                    location.as_ref(),
                    "",
                    close,
                    head_only,
                );
                (redirect.status, send_own(conn, close).await)
            }
            Decided::Forward(plan) => self.forward_h1(conn, plan, &mut cx).await,
        };
        self.log_h1(&mut conn.handles, &cx, down, status, started);
        next
    }

    /// Answers a request whose head is malformed (400, 414, 431, 501: see [`Malformed`]),
    /// counts and logs it; the connection closes after it.
    pub(crate) async fn refuse_h1<S>(
        &self,
        conn: &mut Conn<S>,
        m: Malformed,
        down: &Downstream,
    ) -> Next
    where
        S: AsyncWrite + Unpin,
    {
        let started = Instant::now();
        let status = m.status();
        own_answer(
            &mut conn.answer_head,
            status,
            None,
            malformed_text(m),
            true,
            false,
        );
        let next = send_own(conn, true).await;
        self.log_h1(
            &mut conn.handles,
            &Context::default(),
            down,
            status,
            started,
        );
        next
    }

    /// Steps 1 and 2 and the upstream head: what is refused, the route, the affinity key,
    /// and the head sent upstream written into `request_head` (the answer's own field lines
    /// into `extra`).
    fn decide<'s>(
        &self,
        state: &'s super::Compiled,
        head: &RequestHead<'_>,
        down: &Downstream,
        cx: &mut Context,
        request_head: &mut Vec<u8>,
        extra: &mut Vec<u8>,
    ) -> Decided<'s> {
        // Standard methods cost no allocation; httparse let only tokens through.
        cx.method = Method::from_bytes(head.method.as_bytes()).unwrap_or_default();
        if head.version != Version::HTTP_11 || !head.target.starts_with('/') {
            return Decided::Handoff;
        }
        let framing = match framing::request(head) {
            Ok(framing) => framing,
            Err(m) => return Decided::Malformed(m),
        };
        if framing.upgrade {
            return Decided::Handoff;
        }
        // The body is not read when the gateway answers itself: the connection then closes,
        // as it does when the client asked for that.
        let close = framing.body != Body::Empty || !framing.keep_alive;
        let refuse = |f: Failure| Decided::Refuse(f, f.closes() || close);
        if matches!(head.method, "CONNECT" | "TRACE") {
            return refuse(Failure::MethodNotAllowed);
        }
        let mut hosts = head.fields.iter().filter(|f| f.is("host"));
        let host = match (hosts.next(), hosts.next()) {
            (_, Some(_)) => return refuse(Failure::DuplicateHost),
            (None, None) => return refuse(Failure::NoHost),
            (Some(host), None) => host.value,
        };
        if !uri::valid_host(host) {
            return refuse(Failure::BadHost);
        }
        let Some(host) = std::str::from_utf8(host).ok().filter(|h| !h.is_empty()) else {
            return refuse(Failure::NoHost);
        };
        let via = head.fields.iter().filter(|f| f.is("via")).map(|f| f.value);
        if self.via.seen_in_values(via) {
            return refuse(Failure::Loop);
        }
        let normal = match normalized(head.target) {
            Ok(normal) => normal,
            Err(failure) => return refuse(failure),
        };
        if self.access_log {
            cx.host = host.to_owned();
            cx.path = head.target.to_owned();
        }
        let route = match self.route(state, host, &normal, &head.fields, down, cx) {
            Ok(Routed::To(route)) => route,
            Ok(Routed::Redirect(redirect)) => return Decided::Redirect(redirect, close),
            Err(failure) => return refuse(failure),
        };
        if route.protocol != Protocol::Http1 {
            return Decided::Handoff;
        }
        if matches!(framing.body, Body::Length(n) if n > route.max_body) {
            return refuse(Failure::BodyTooLarge);
        }
        // Session affinity: the Ingress's cookie (set on the first answer), else the
        // Service's ClientIP; both hash onto the cluster's ring.
        extra.clear();
        let key = match route.options.and_then(|o| o.affinity.as_ref()) {
            Some(affinity) => Some(
                match select::RequestFields::cookie(&head.fields, &affinity.name) {
                    Some(value) => affinity_key(value.as_bytes()),
                    None => {
                        let value = format!("{:016x}", random());
                        let cookie = affinity_cookie(affinity, &value, route.route_path);
                        extra.extend_from_slice(b"Set-Cookie: ");
                        extra.extend_from_slice(cookie.as_bytes());
                        extra.extend_from_slice(b"\r\n");
                        affinity_key(value.as_bytes())
                    }
                },
            ),
            None if route.pool.client_ip_affinity => Some(client_ip_key(down.peer.ip())),
            None => None,
        };
        route.pool.balancer.retry_budget().deposit(Instant::now());
        let target = route.rewritten.as_deref().unwrap_or(&normal);
        let edit = Edit {
            target: target.as_bytes(),
            host: host.as_bytes(),
            framing: &framing,
        };
        let id = write::request_head(
            request_head,
            head,
            &edit,
            down,
            &self.request_ids,
            &self.via,
        );
        if self.access_log {
            cx.request_id = HeaderValue::from_bytes(&request_head[id]).ok();
        }
        Decided::Forward(Plan {
            framing,
            key,
            head_len: head.len,
            head_only: head.method == "HEAD",
            idempotent: matches!(
                head.method,
                "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
            ),
            route,
        })
    }

    /// Steps 3 to 5 on the fast path: an endpoint, the client connection's own upstream
    /// connection to it, the request and its answer passed through; another endpoint when
    /// one fails before answering and trying again is safe. The answer's status, and what
    /// the client connection does next.
    async fn forward_h1<S>(
        &self,
        conn: &mut Conn<S>,
        plan: Plan<'_>,
        cx: &mut Context,
    ) -> (StatusCode, Next)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Plan {
            route,
            framing,
            key,
            head_len,
            head_only,
            idempotent,
        } = plan;
        conn.client.consume(head_len);
        let asked = Asked {
            head: head_only,
            upgrade: false,
            keep_alive: framing.keep_alive,
        };
        let replayable = framing.body == Body::Empty;
        // After an answer of the gateway's own, the client connection closes when it asked
        // for that or its body is not read whole.
        let close = !replayable || !framing.keep_alive;
        let limits = route.limits;
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut tried = [unspecified; MAX_ATTEMPTS];
        let mut attempts = 0;
        let mut last = Failure::NoEndpoint;
        // A reused connection found closed is replaced once without counting against its
        // endpoint: the upstream closed it while it was idle, as keep-alives end.
        let mut stale_retry = true;
        loop {
            let Some(pick) = route
                .pool
                .balancer
                .pick(key, &tried[..attempts], Instant::now())
            else {
                return self.answer_failure(conn, last, head_only, close).await;
            };
            let endpoint = pick.addr();
            cx.endpoint = Some(endpoint);
            let (mut up, reused) = match self
                .upstream_conn(conn, endpoint, limits.connect, replayable)
                .await
            {
                Ok(found) => found,
                Err(failure) => {
                    self.metrics.connect_error();
                    self.judge(pick, AttemptOutcome::ConnectError, &route.pool.label);
                    tried[attempts] = endpoint;
                    attempts += 1;
                    if self.may_retry_h1(
                        &route,
                        AttemptOutcome::ConnectError,
                        replayable,
                        idempotent,
                        attempts,
                    ) {
                        last = failure;
                        self.metrics.retry();
                        cx.retries += 1;
                        continue;
                    }
                    return self.answer_failure(conn, failure, head_only, close).await;
                }
            };
            up.io.set_read_limit(Some(limits.response));
            up.io.set_write_limit(Some(limits.send));
            // A client that stops sending its body stalls the exchange as an upstream that
            // stops taking it does.
            conn.client.io.set_read_limit(Some(limits.send));
            conn.client.io.set_write_limit(Some(limits.response));
            let sent = relay::send_request(
                &mut conn.client,
                &mut up,
                &conn.request_head,
                framing.body,
                framing.expect_continue,
                route.max_body,
            )
            .await;
            let mut progress = Progress::default();
            let answered = match sent {
                Ok(_) => {
                    relay::relay_response(
                        &mut up,
                        &mut conn.client,
                        asked,
                        &conn.extra,
                        &mut conn.answer_head,
                        &mut progress,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            conn.client.io.set_read_limit(None);
            conn.client.io.set_write_limit(None);
            let error = match answered {
                Ok(Answered::Message {
                    status,
                    client_keep_alive,
                    upstream_keep_alive,
                    ..
                }) => {
                    self.judge(pick, AttemptOutcome::from_status(status), &route.pool.label);
                    if upstream_keep_alive {
                        conn.upstream = Some((endpoint, up, Instant::now()));
                    }
                    let next = if client_keep_alive {
                        Next::KeepAlive
                    } else {
                        Next::Close
                    };
                    return (status_code(status), next);
                }
                // Not asked for: the framing refuses a switch to a request without upgrade.
                Ok(Answered::Switched) => {
                    self.judge(pick, AttemptOutcome::Reset, &route.pool.label);
                    return (StatusCode::BAD_GATEWAY, Next::Close);
                }
                Err(e) => e,
            };
            // The client's own failure: nothing counts against the endpoint, and nothing is
            // tried again; what was sent upstream is cut off with its connection.
            if error.peer() == Peer::Client {
                drop(pick);
                if progress.sent {
                    let status = progress.status.map_or(StatusCode::BAD_GATEWAY, status_code);
                    return (status, Next::Close);
                }
                let failure = match error {
                    RelayError::TooLarge => Failure::BodyTooLarge,
                    e if e.timed_out() => Failure::SendTimeout,
                    _ => Failure::BodyBroken,
                };
                return self.answer_failure(conn, failure, head_only, close).await;
            }
            let outcome = if error.timed_out() {
                AttemptOutcome::Timeout
            } else {
                AttemptOutcome::Reset
            };
            if progress.sent {
                // The answer broke off on its way: the client learns it by the close.
                self.judge(pick, outcome, &route.pool.label);
                let status = progress.status.map_or(StatusCode::BAD_GATEWAY, status_code);
                return (status, Next::Close);
            }
            let unanswered = progress.status.is_none();
            let broke = matches!(
                error,
                RelayError::Closed(_) | RelayError::Read(..) | RelayError::Write(..)
            ) && !error.timed_out();
            if reused && unanswered && broke && replayable && stale_retry {
                stale_retry = false;
                drop(pick);
                continue;
            }
            self.judge(pick, outcome, &route.pool.label);
            let failure = match (&error, error.timed_out()) {
                (RelayError::Write(..), true) => Failure::SendTimeout,
                (_, true) => Failure::Timeout,
                _ => Failure::Upstream,
            };
            tried[attempts] = endpoint;
            attempts += 1;
            let malformed = matches!(error, RelayError::Malformed(..));
            if unanswered
                && !malformed
                && self.may_retry_h1(&route, outcome, replayable, idempotent, attempts)
            {
                last = failure;
                self.metrics.retry();
                cx.retries += 1;
                continue;
            }
            return self.answer_failure(conn, failure, head_only, close).await;
        }
    }

    /// Whether another endpoint may be tried (as `upstream::may_retry` decides for hyper's
    /// path, with the route's retry budget the last word).
    fn may_retry_h1(
        &self,
        route: &Route<'_>,
        outcome: AttemptOutcome,
        replayable: bool,
        idempotent: bool,
        attempts: usize,
    ) -> bool {
        replayable
            && outcome.retry_safe(idempotent)
            && attempts < MAX_ATTEMPTS
            && route
                .pool
                .balancer
                .retry_budget()
                .try_withdraw(Instant::now())
    }

    /// The client connection's own upstream connection to `endpoint`: the one it has, else
    /// an idle one of the worker's, else a new one; and whether it carried requests before.
    async fn upstream_conn<S>(
        &self,
        conn: &mut Conn<S>,
        endpoint: SocketAddr,
        connect_timeout: Duration,
        replayable: bool,
    ) -> Result<(Upstream, bool), Failure> {
        if let Some((at, up, since)) = conn.upstream.take() {
            let idle = since.elapsed();
            if at != endpoint {
                conn.parking.put(at, up, since);
            } else if idle < self.timeouts.pool_idle
                && ((replayable && idle < CHECK_AFTER) || pool::still_open(&up))
            {
                return Ok((up, true));
            }
        }
        if let Some((up, _)) = conn.parking.take(endpoint) {
            return Ok((up, true));
        }
        // Boxed: connecting is rare, and its state would weigh on every request's future.
        Box::pin(connect(endpoint, connect_timeout))
            .await
            .map(|up| (up, false))
    }

    /// Counts the request and writes its access log line (step 6).
    fn log_h1(
        &self,
        handles: &mut Handles,
        cx: &Context,
        down: &Downstream,
        status: StatusCode,
        started: Instant,
    ) {
        let elapsed = started.elapsed();
        self.metrics.request_on(handles, cx, status, elapsed);
        if self.access_log {
            crate::access_log::write(cx, down, status, Version::HTTP_11, elapsed);
        }
    }

    /// Answers `failure` to the client (its status and text, as hyper's path does); the
    /// connection closes after it when the failure says so or `close` (the client asked for
    /// it, or a request body was left unread or half read: it cannot be skipped to the next
    /// request).
    async fn answer_failure<S>(
        &self,
        conn: &mut Conn<S>,
        failure: Failure,
        head_only: bool,
        close: bool,
    ) -> (StatusCode, Next)
    where
        S: AsyncWrite + Unpin,
    {
        let close = failure.closes() || close;
        let status = failure.status();
        let out = &mut conn.answer_head;
        own_answer(out, status, None, failure.message(), close, head_only);
        (status, send_own(conn, close).await)
    }
}

/// Sends the gateway's own answer in `conn.answer_head`; the connection closes after it when
/// `close` (or when it cannot be written).
async fn send_own<S: AsyncWrite + Unpin>(conn: &mut Conn<S>, close: bool) -> Next {
    conn.client.io.set_write_limit(Some(OWN_ANSWER_WRITE));
    let written = conn.client.io.write_all(&conn.answer_head).await;
    conn.client.io.set_write_limit(None);
    match written {
        Ok(()) if !close => Next::KeepAlive,
        _ => {
            let _ = conn.client.io.shutdown().await;
            Next::Close
        }
    }
}

/// The longest the gateway's own answer waits for a client to take it.
const OWN_ANSWER_WRITE: Duration = Duration::from_secs(10);

/// Writes an answer of the gateway's own into `out`: the status, the text `body` (as
/// `Failure::respond` makes it for hyper's path), a `Location`, and `Connection: close`.
fn own_answer(
    out: &mut Vec<u8>,
    status: StatusCode,
    location: Option<&HeaderValue>,
    body: &str,
    close: bool,
    head_only: bool,
) {
    use std::io::Write as _;
    out.clear();
    let reason = status.canonical_reason().unwrap_or("");
    let _ = write!(out, "HTTP/1.1 {} {reason}\r\n", status.as_u16());
    if !body.is_empty() {
        out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
    }
    let _ = write!(out, "Content-Length: {}\r\n", body.len());
    if let Some(location) = location {
        out.extend_from_slice(b"Location: ");
        out.extend_from_slice(location.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
}

/// The text of a refusal for a malformed request: the failure's where hyper's path has one.
fn malformed_text(m: Malformed) -> &'static str {
    match m {
        Malformed::LengthAndChunked => Failure::LengthAndChunked.message(),
        Malformed::UnknownCoding => Failure::UnknownCoding.message(),
        Malformed::TargetTooLong => Failure::UriTooLong.message(),
        Malformed::HeadTooLarge | Malformed::TooManyFields => "request header fields too large\n",
        Malformed::BareLf => "bad request: a line ends in a bare LF\n",
        Malformed::ObsFold => "bad request: a header field is folded over lines\n",
        Malformed::ControlInField => "bad request: a control character in a header field\n",
        Malformed::FieldName => "bad request: an invalid header field name\n",
        Malformed::StartLine => "bad request: an invalid request line\n",
        Malformed::BadLength => "bad request: an invalid or repeated Content-Length\n",
        Malformed::NotChunked => {
            "bad request: a Transfer-Encoding whose last coding is not chunked\n"
        }
        Malformed::CodingInHttp10 => "bad request: Transfer-Encoding in an HTTP/1.0 request\n",
        Malformed::BadChunk | Malformed::Truncated => Failure::BodyBroken.message(),
        Malformed::UnaskedSwitch => Failure::Upstream.message(),
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY)
}

/// A new upstream connection to `endpoint` within `timeout`.
async fn connect(endpoint: SocketAddr, timeout: Duration) -> Result<Upstream, Failure> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(endpoint)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(%endpoint, error = %e, "cannot connect upstream");
            return Err(Failure::Connect);
        }
        Err(_) => return Err(Failure::ConnectTimeout),
    };
    let _ = stream.set_nodelay(true);
    Ok(Side::upstream(Quiet::new(stream), HeadLimits::default()))
}
