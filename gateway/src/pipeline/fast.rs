//! The request steps on the HTTP/1 fast path (issue 18): the same steps as for hyper's
//! requests (see the pipeline's docs), over a head parsed in place in the client
//! connection's buffer (`ferry_proxy::h1`), routed on borrowed text, its edited head written
//! into a buffer the connection reuses and sent with the first body bytes in one write, the
//! body and the answer passed through as framed ([`relay`]), over an upstream connection the
//! client connection owns ([`Conn`]). No allocation per request once the buffers are warm,
//! but for the access log's strings when it is on, and for the gateway's own answers.
//!
//! The fast path serves HTTP/1.1 and HTTP/1.0 requests in origin form to plain HTTP/1.1
//! backends (an HTTP/1.0 client gets a chunked answer's content without the framing, ended
//! by the close, and a kept connection's answers say `Connection: keep-alive`; the gateway's
//! own answers close its connection). The rest is handed, with the connection, to hyper's path
//! ([`Next::Handoff`]) at the request's start, its bytes unread: WebSocket upgrades (hyper's
//! path runs the tunnel with its timeouts), absolute-form and asterisk targets, and backends
//! over TLS or HTTP/2.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferry_proxy::balancer::{affinity_key, client_ip_key};
use ferry_proxy::forwarding::Downstream;
use ferry_proxy::h1::framing::{self, Body, RequestFraming};
use ferry_proxy::h1::pool::{Parking, Upstream};
use ferry_proxy::h1::relay::{
    self, Answered, Error as RelayError, Exchange, Peer, Progress, Started,
};
use ferry_proxy::h1::write::{self, Edit, own_answer};
use ferry_proxy::h1::{Malformed, RequestHead};
use ferry_proxy::upstream::{MAX_ATTEMPTS, Protocol};
use ferry_proxy::{AttemptOutcome, Failure, uri};
use http::{HeaderValue, Method, StatusCode, Version};
use tokio::io::{AsyncRead, AsyncWrite};

use super::request_filter::normalized_target as normalized;
use super::{Context, Pipeline, Route, Routed, affinity_cookie, random};
use crate::select;

mod conn;
pub(crate) use conn::Conn;
use conn::{connect, malformed_text};

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
    /// A head that breaks HTTP/1's rules; counted when its method is known.
    Malformed(Malformed, bool),
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

/// What one request is logged with.
struct Request<'a> {
    cx: &'a mut Context,
    down: &'a Downstream,
    started: Instant,
    version: Version,
}

/// The start of an HTTP/2 connection's preface (h2c with prior knowledge).
pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

impl Pipeline {
    /// A pool for one worker's idle fast-path upstream connections.
    pub(crate) fn parking(&self) -> std::sync::Arc<Parking> {
        std::sync::Arc::new(Parking::new(self.timeouts.pool_idle))
    }

    /// Serves the request whose head `conn.client` holds (read whole), counts and logs it
    /// (once its answer's head went out); says what the connection does next.
    pub(crate) async fn serve_h1<S>(&self, conn: &mut Conn<S>, down: &Downstream) -> Next
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let started = Instant::now();
        let mut cx = Context::default();
        // On the snapshot this request started with, whatever changes meanwhile.
        let state = self.state.load();
        let (decided, head_len, version) = match conn.client.request() {
            Ok(head) => {
                let (len, version) = (head.len, head.version);
                let decided = self.decide(
                    &state,
                    &head,
                    down,
                    &mut cx,
                    &mut conn.request_head,
                    &mut conn.extra,
                );
                (decided, len, version)
            }
            Err(RelayError::Malformed(_, m)) => (Decided::Malformed(m, false), 0, Version::HTTP_11),
            Err(_) => return Next::Close,
        };
        let head_only = cx.method == Method::HEAD;
        let mut req = Request {
            cx: &mut cx,
            down,
            started,
            version,
        };
        match decided {
            Decided::Handoff => Next::Handoff,
            Decided::Malformed(m, counted) => {
                let status = m.status();
                own_answer(
                    &mut conn.answer_head,
                    status,
                    None,
                    malformed_text(m),
                    true,
                    head_only,
                );
                conn.send_own(true).await;
                if counted {
                    self.log_h1(conn, &mut req, status);
                }
                Next::Close
            }
            // An answer of the gateway's own takes the head (a body stays unread: the
            // connection then closes after the answer).
            Decided::Refuse(failure, close) => {
                conn.client.consume(head_len);
                self.fail(conn, &mut req, failure, head_only, close).await
            }
            Decided::Redirect(redirect, close) => {
                conn.client.consume(head_len);
                let location = redirect.location();
                let out = &mut conn.answer_head;
                own_answer(
                    out,
                    redirect.status,
                    location.as_ref().map(HeaderValue::as_bytes),
                    "",
                    close,
                    head_only,
                );
                let open = conn.send_own(close).await;
                self.log_h1(conn, &mut req, redirect.status);
                if open { Next::KeepAlive } else { Next::Close }
            }
            Decided::Forward(plan) => self.forward_h1(conn, plan, &mut req).await,
        }
    }

    /// Answers a request whose head cannot be read (400, 414, 431: see [`Malformed`]); the
    /// connection closes after it. Not counted: it has no method (hyper's path never counts
    /// these either).
    pub(crate) async fn refuse_h1<S>(&self, conn: &mut Conn<S>, m: Malformed)
    where
        S: AsyncWrite + Unpin,
    {
        own_answer(
            &mut conn.answer_head,
            m.status(),
            None,
            malformed_text(m),
            true,
            false,
        );
        conn.send_own(true).await;
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
        if !head.target.starts_with('/') {
            return Decided::Handoff;
        }
        let http10 = head.version == Version::HTTP_10;
        let framing = match framing::request(head) {
            Ok(framing) => framing,
            Err(m) => return Decided::Malformed(m, true),
        };
        if framing.upgrade {
            return Decided::Handoff;
        }
        // The body is not read when the gateway answers itself: the connection then closes,
        // as it does when the client asked for that.
        // An HTTP/1.0 client's connection closes after an own answer too (which would
        // otherwise have to say `Connection: keep-alive`).
        let close = framing.body != Body::Empty || !framing.keep_alive || http10;
        let refuse = |f: Failure| Decided::Refuse(f, f.closes() || close);
        if matches!(head.method, "CONNECT" | "TRACE") {
            return refuse(Failure::MethodNotAllowed);
        }
        let mut hosts = head.fields.iter().filter(|f| f.is("host"));
        // HTTP/1.0 may leave Host out (RFC 9112 section 3.2 asks it of HTTP/1.1 only): that
        // request is routed as to no host and sent on with an empty Host, as on hyper's path.
        let host = match (hosts.next(), hosts.next()) {
            (_, Some(_)) => return refuse(Failure::DuplicateHost),
            (None, None) if http10 => &b""[..],
            (None, None) => return refuse(Failure::NoHost),
            (Some(host), None) => host.value,
        };
        let valid = uri::valid_host(host) || (http10 && host.is_empty());
        if !valid {
            return refuse(Failure::BadHost);
        }
        let Some(host) = std::str::from_utf8(host)
            .ok()
            .filter(|h| !h.is_empty() || http10)
        else {
            return refuse(Failure::NoHost);
        };
        let via = head.fields.iter().filter(|f| f.is("via")).map(|f| f.value);
        if self.via.seen_in_values(via) {
            return refuse(Failure::Loop);
        }
        // A fragment is not the server's (RFC 9110 section 4.2.5): as `http::Uri`, it goes.
        let target = head.target.split_once('#').map_or(head.target, |(t, _)| t);
        let normal = match normalized(target) {
            Ok(normal) => normal,
            Err(failure) => return refuse(failure),
        };
        if self.access_log {
            cx.host = host.to_owned();
            cx.path = target.to_owned();
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

    /// Steps 3 to 6 on the fast path: an endpoint, an upstream connection to it the client
    /// connection keeps, the request and its answer passed through; another endpoint when one
    /// fails before answering and trying again is safe. The endpoint is judged, and the
    /// request counted and logged, once the answer's head (with a small answer's first body
    /// bytes) went to the client, as on hyper's path.
    async fn forward_h1<S>(&self, conn: &mut Conn<S>, plan: Plan<'_>, req: &mut Request<'_>) -> Next
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
        let replayable = framing.body == Body::Empty;
        // After an answer of the gateway's own, the client connection closes when it asked
        // for that, its body is not read whole, or it speaks HTTP/1.0.
        let close = !replayable || !framing.keep_alive || framing.http10;
        let limits = route.limits;
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut tried = [unspecified; MAX_ATTEMPTS];
        let mut attempts = 0;
        let mut last = Failure::NoEndpoint;
        // A request without a body on a reused connection that the upstream closed (as
        // keep-alives end) is sent once more on a new one, without counting against the
        // endpoint, when its method is idempotent.
        let mut stale_retry = idempotent && replayable;
        loop {
            // The request's start serves as now for its first pick: a clock read less.
            let now = if attempts == 0 {
                req.started
            } else {
                Instant::now()
            };
            let Some(pick) = route.pool.balancer.pick(key, &tried[..attempts], now) else {
                return self.fail(conn, req, last, head_only, close).await;
            };
            let endpoint = pick.addr();
            req.cx.endpoint = Some(endpoint);
            let (mut up, reused) = match self.upstream_conn(conn, endpoint, limits.connect).await {
                Ok(found) => found,
                Err(failure) => {
                    self.metrics.connect_error();
                    self.judge(pick, AttemptOutcome::ConnectError, &route.pool.label);
                    tried[attempts] = endpoint;
                    attempts += 1;
                    let outcome = AttemptOutcome::ConnectError;
                    if self.may_retry_h1(&route, outcome, replayable, idempotent, attempts) {
                        last = failure;
                        self.metrics.retry();
                        req.cx.retries += 1;
                        continue;
                    }
                    return self.fail(conn, req, failure, head_only, close).await;
                }
            };
            up.io.set_read_limit(Some(limits.response));
            up.io.set_write_limit(Some(limits.send));
            // A client that stops sending its body stalls the exchange as an upstream that
            // stops taking it does; one that stops reading its answer, as one that does not
            // answer.
            conn.client.io.set_read_limit(Some(limits.send));
            conn.client.io.set_write_limit(Some(limits.response));
            let mut progress = Progress::default();
            let shutdown = &conn.shutdown;
            let closing = || shutdown.is_triggered();
            let request = Exchange {
                head: &conn.request_head,
                framing: &framing,
                head_only,
                max_body: route.max_body,
                extra: &conn.extra,
            };
            // Whether the request went upstream whole: else its connection is not reused.
            let (whole, started) = relay::exchange(
                &mut conn.client,
                &mut up,
                request,
                &mut conn.answer_head,
                &mut progress,
                &closing,
            )
            .await;
            let error = match started {
                Ok(Started::Message(message)) => {
                    let status = message.status;
                    self.judge(pick, AttemptOutcome::from_status(status), &route.pool.label);
                    self.log_h1(conn, req, status_code(status));
                    let client_keep_alive = message.client_keep_alive;
                    let finished = relay::finish_response(&mut up, &mut conn.client, message).await;
                    conn.client.io.set_read_limit(None);
                    conn.client.io.set_write_limit(None);
                    return match finished {
                        Ok(Answered::Message {
                            upstream_keep_alive,
                            ..
                        }) => {
                            if upstream_keep_alive && whole {
                                conn.keep(endpoint, up);
                            }
                            if client_keep_alive {
                                Next::KeepAlive
                            } else {
                                Next::Close
                            }
                        }
                        // The answer broke off on its way: the client learns it by the close.
                        _ => Next::Close,
                    };
                }
                // Never asked for: the framing refuses a switch to a request without upgrade.
                Ok(Started::Switched) => {
                    self.judge(pick, AttemptOutcome::Reset, &route.pool.label);
                    self.log_h1(conn, req, StatusCode::BAD_GATEWAY);
                    return Next::Close;
                }
                Err(e) => e,
            };
            conn.client.io.set_read_limit(None);
            conn.client.io.set_write_limit(None);
            if progress.sent {
                // Something of the answer went out before it broke: only the close can say it.
                self.judge(pick, AttemptOutcome::Reset, &route.pool.label);
                let status = progress.status.map_or(StatusCode::BAD_GATEWAY, status_code);
                self.log_h1(conn, req, status);
                return Next::Close;
            }
            // The client's own failure: nothing counts against the endpoint, and nothing is
            // tried again; what was sent upstream is cut off with its connection. A client
            // that left before its answer came is logged as nginx logs it, 499, and gets
            // nothing.
            if matches!(error, RelayError::ClientGone) {
                drop(pick);
                self.log_h1(conn, req, CLIENT_CLOSED_REQUEST);
                return Next::Close;
            }
            if error.peer() == Peer::Client {
                drop(pick);
                let failure = match error {
                    RelayError::TooLarge => Failure::BodyTooLarge,
                    e if e.timed_out() => Failure::SendTimeout,
                    _ => Failure::BodyBroken,
                };
                return self.fail(conn, req, failure, head_only, true).await;
            }
            let unanswered = progress.status.is_none();
            let broke = matches!(
                error,
                RelayError::Closed(_) | RelayError::Read(..) | RelayError::Write(..)
            ) && !error.timed_out();
            if reused && unanswered && broke && stale_retry {
                stale_retry = false;
                drop(pick);
                continue;
            }
            let outcome = if error.timed_out() {
                AttemptOutcome::Timeout
            } else {
                AttemptOutcome::Reset
            };
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
                req.cx.retries += 1;
                continue;
            }
            return self
                .fail(conn, req, failure, head_only, close || !whole)
                .await;
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

    /// An upstream connection to `endpoint`: one the client connection keeps, else an idle
    /// one of the worker's, else a new one; and whether it carried requests before.
    async fn upstream_conn<S>(
        &self,
        conn: &mut Conn<S>,
        endpoint: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<(Upstream, bool), Failure> {
        if let Some(up) = conn.take(endpoint) {
            return Ok((up, true));
        }
        // Boxed: connecting is rare, and its state would weigh on every request's future.
        Box::pin(connect(endpoint, connect_timeout))
            .await
            .map(|up| (up, false))
    }

    /// Answers `failure` (its status and text, as hyper's path does), then counts and logs
    /// the request; the connection closes after it when the failure says so or `close` (the
    /// client asked for it, or a request body was left unread or half read: it cannot be
    /// skipped to the next request).
    async fn fail<S>(
        &self,
        conn: &mut Conn<S>,
        req: &mut Request<'_>,
        failure: Failure,
        head_only: bool,
        close: bool,
    ) -> Next
    where
        S: AsyncWrite + Unpin,
    {
        let close = failure.closes() || close;
        let status = failure.status();
        let out = &mut conn.answer_head;
        own_answer(out, status, None, failure.message(), close, head_only);
        let open = conn.send_own(close).await;
        self.log_h1(conn, req, status);
        if open { Next::KeepAlive } else { Next::Close }
    }

    /// Step 6: counts the request and writes its access log line.
    fn log_h1<S>(&self, conn: &mut Conn<S>, req: &mut Request<'_>, status: StatusCode) {
        let elapsed = req.started.elapsed();
        self.metrics
            .request_on(&mut conn.handles, req.cx, status, elapsed);
        if self.access_log {
            crate::access_log::write(req.cx, req.down, status, req.version, elapsed);
        }
    }
}

/// nginx's status for a request whose client closed its connection before the answer came.
const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => StatusCode::BAD_REQUEST,
};

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY)
}
