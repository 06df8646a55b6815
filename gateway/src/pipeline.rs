//! The gateway's request path, as a named sequence of steps (Pingora's phases), each a
//! function over one [`Context`] that collects what the request learned for metrics and the
//! access log:
//!
//! 1. [`Pipeline::request_filter`]: what nginx refuses before routing ([`request_filter`]: one
//!    valid Host, a target of at most 8 KiB, no coding but chunked, no CONNECT or TRACE, no
//!    request this gateway forwarded before by its `Via`), the path normalized by
//!    `ferry_proxy::uri`, and whether it asks for a WebSocket.
//! 2. [`Pipeline::route`]: [`crate::select`] on the normalized path, on the snapshot the request
//!    started with: the route and its Ingress options; the Ingress-only answers (redirects to
//!    HTTPS and to the app root); the cluster, protocol and timeouts of the backend.
//! 3. [`Pipeline::pick_endpoint`]: `ferry-proxy`'s balancer (P2C over peak-EWMA, or the hash
//!    ring for session affinity by cookie or client IP), never an endpoint this request tried.
//! 4. [`Pipeline::upstream_request`]: one attempt on that endpoint (`ferry_proxy::upstream`),
//!    the request's head made once before the first ([`Pipeline::outgoing`]: hop-by-hop
//!    headers out, forwarding headers and `Via` in, the body limit). An endpoint's failure is
//!    fed back to its health and, when safe and within the retry budget, steps 3 and 4 run
//!    again.
//! 5. [`Pipeline::response_filter`]: a WebSocket switch handed back as a
//!    `ferry_proxy::upgrade::Tunnel` for the listener to run, the answer made ready
//!    (`ferry_proxy::response`), the outcome fed back to the endpoint, the affinity cookie set.
//! 6. [`Pipeline::log`]: metrics and the access log.
//!
//! A failure at any step is a [`Failure`], which decides the status in one place. An HTTP/1
//! client connection's plain HTTP/1.1 exchanges go over an upstream connection of its own
//! ([`Owned`]). Counting a request allocates nothing (label values are made when a snapshot
//! compiles), and the request future stays small, as hyper moves it into place for every
//! request: the rare parts (the pools, connecting, the send-timeout watchdog) are boxed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ferry_model::{BackendProtocol, CookieAffinity, IngressOptions};
use ferry_proxy::balancer::{Pick, affinity_key, client_ip_key};
use ferry_proxy::body::{ProxyBody, empty};
use ferry_proxy::connect::{Idle, Owned};
use ferry_proxy::forwarding::{Downstream, RequestIds, Via, forwarding_headers};
use ferry_proxy::health::Transition;
use ferry_proxy::upgrade::{Tunnel, TunnelTimeouts};
use ferry_proxy::upstream::{
    self, Clients, Exchange, Limits, Protocol, RequestBody, Sent, Timeouts,
};
use ferry_proxy::{AttemptOutcome, Failure};
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Version};
use hyper::body::{Body, Incoming};
use hyper::upgrade::OnUpgrade;

use crate::metrics::Metrics;
use crate::select;

mod compiled;
mod fast;
mod request_filter;
pub use compiled::Compiled;
use compiled::Pool;
pub(crate) use fast::{Conn, H2_PREFACE, Next};
pub use request_filter::MAX_TARGET;
use request_filter::normalized;

/// The request pipeline, shared by every connection of both listeners.
#[derive(Debug)]
pub struct Pipeline {
    state: Arc<ArcSwap<Compiled>>,
    clients: Clients,
    timeouts: Timeouts,
    /// Where redirects to HTTPS point.
    https_port: u16,
    request_ids: RequestIds,
    /// This gateway's name in the `Via` header: how it knows a request it forwarded before.
    via: Via,
    metrics: Metrics,
    access_log: bool,
}

/// What one request learned on its way through the steps, for metrics and the access log.
#[derive(Debug, Default)]
pub struct Context {
    pub method: http::Method,
    /// The Host and the path with the query: kept only for the access log.
    pub host: String,
    pub path: String,
    /// `namespace/name` of the Ingress whose route served it.
    pub ingress: Option<Arc<str>>,
    /// `namespace/service:port`.
    pub service: Option<Arc<str>>,
    pub endpoint: Option<SocketAddr>,
    pub request_id: Option<HeaderValue>,
    pub retries: u32,
}

/// What `request_filter` takes from a request for the steps after it.
struct Head {
    /// The Host to route by, shared with the request's buffers.
    host: HeaderValue,
    /// The path and query, normalized: routed and forwarded so, as nginx's `$uri`.
    path: PathAndQuery,
    /// The client's side of a WebSocket upgrade it asks for.
    upgrade: Option<OnUpgrade>,
}

/// What `route` decided: a redirect of the gateway's own, or a backend.
enum Routed<'s> {
    Redirect(Redirect),
    To(Route<'s>),
}

/// A redirect the gateway answers itself: ingress-nginx's `ssl-redirect` (308, which keeps
/// the method and body) and `app-root` (302).
struct Redirect {
    status: StatusCode,
    location: String,
}

impl Redirect {
    /// The `Location`, when it is a valid field value (else the answer goes without one).
    fn location(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&self.location).ok()
    }

    fn response(self) -> Response<ProxyBody> {
        let mut r = Response::new(empty());
        *r.status_mut() = self.status;
        if let Some(v) = self.location() {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    }
}

/// A request's backend and how to reach it, borrowed from the snapshot it started with.
struct Route<'s> {
    pool: &'s Pool,
    options: Option<&'s IngressOptions>,
    /// The matched route's path (the affinity cookie's default `Path`).
    route_path: &'s str,
    /// The path and query sent upstream when the route rewrites it; else the normalized one.
    rewritten: Option<String>,
    protocol: Protocol,
    limits: Limits,
    /// The largest request body.
    max_body: u64,
}

/// The upstream request, made once for all of its attempts.
struct Outgoing {
    parts: http::request::Parts,
    body: RequestBody,
    /// The session-affinity key, when the route or the Service pins clients to endpoints.
    key: Option<u64>,
    /// The affinity cookie for the answer, when the client had none.
    set_cookie: Option<HeaderValue>,
    /// A WebSocket upgrade is forwarded.
    upgrade: bool,
}

impl Pipeline {
    pub fn new(
        state: Arc<ArcSwap<Compiled>>,
        timeouts: Timeouts,
        https_port: u16,
        metrics: Metrics,
        access_log: bool,
    ) -> Result<Self, String> {
        Ok(Pipeline {
            state,
            clients: Clients::new(&timeouts)?,
            timeouts,
            https_port,
            request_ids: RequestIds::new(),
            via: Via::new(),
            metrics,
            access_log,
        })
    }

    /// A pool for the owned upstream connections of one worker's client connections.
    pub fn idle_pool(&self) -> Arc<Idle> {
        self.clients.idle_pool()
    }

    /// Serves one request to its end; then counts it and logs it. `owned` is the client
    /// connection's own upstream connection, used when it can be. A WebSocket switch's 101
    /// carries its [`Tunnel`] in its extensions, for the caller to run once the client
    /// connection has switched.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        down: &Downstream,
        owned: &Owned,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let mut cx = Context {
            method: req.method().clone(),
            ..Context::default()
        };
        let response = match self.forward(req, down, owned, &mut cx).await {
            Ok(r) => r,
            Err(failure) => failure.respond(),
        };
        self.log(&cx, down, &response, started);
        response
    }

    /// The steps in their order (see the module docs).
    async fn forward(
        &self,
        mut req: Request<Incoming>,
        down: &Downstream,
        owned: &Owned,
        cx: &mut Context,
    ) -> Result<Response<ProxyBody>, Failure> {
        let Head {
            host,
            path,
            mut upgrade,
        } = self.request_filter(&mut req, cx)?;
        // On the snapshot this request started with, whatever changes meanwhile.
        let state = self.state.load_full();
        let host_text = host.to_str().map_err(|_| Failure::NoHost)?;
        let mut route =
            match self.route(&state, host_text, path.as_str(), req.headers(), down, cx)? {
                Routed::Redirect(redirect) => return Ok(redirect.response()),
                Routed::To(route) => route,
            };
        let path = match route.rewritten.take() {
            Some(rewritten) => PathAndQuery::try_from(rewritten).map_err(|_| Failure::NoRoute)?,
            None => path,
        };
        let mut outgoing = self.outgoing(req, &host, upgrade.is_some(), &route, down, cx)?;
        let exchange = Exchange {
            protocol: route.protocol,
            // The client connection's own upstream connection serves plain HTTP/1.1
            // exchanges of HTTP/1 clients; upgrades (they take the connection over) and
            // HTTP/2 use the pools.
            own: route.protocol == Protocol::Http1
                && !outgoing.upgrade
                && outgoing.parts.version != Version::HTTP_2,
            path: &path,
            limits: route.limits,
        };
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut last = Failure::NoEndpoint;
        loop {
            let Some(pick) = self.pick_endpoint(&route, &outgoing, &tried, cx) else {
                return Err(last);
            };
            match self
                .upstream_request(&exchange, &mut outgoing, &pick, owned)
                .await
            {
                Sent::Answer(response) => {
                    let upgrade = upgrade.take();
                    let cookie = outgoing.set_cookie.take();
                    return self
                        .response_filter(response, pick, upgrade, &route, cookie)
                        .await;
                }
                Sent::Failed(failure, outcome) => {
                    if matches!(failure, Failure::Connect | Failure::ConnectTimeout) {
                        self.metrics.connect_error();
                    }
                    tried.push(pick.addr());
                    self.judge(pick, outcome, &route.pool.label);
                    let again = upstream::may_retry(
                        outcome,
                        &outgoing.body,
                        &outgoing.parts.method,
                        tried.len(),
                    ) && route
                        .pool
                        .balancer
                        .retry_budget()
                        .try_withdraw(Instant::now());
                    if !again {
                        return Err(failure);
                    }
                    last = failure;
                    self.metrics.retry();
                    cx.retries += 1;
                }
                // Not the endpoint's fault: nothing is held against it.
                Sent::ClientFailed(failure) => {
                    drop(pick);
                    return Err(failure);
                }
            }
        }
    }

    /// Step 1: what is refused before routing (see [`request_filter::check`]), and what the
    /// later steps take from the request: its Host, its normalized path, its upgrade.
    fn request_filter(
        &self,
        req: &mut Request<Incoming>,
        cx: &mut Context,
    ) -> Result<Head, Failure> {
        request_filter::check(req, &self.via)?;
        let upgrade =
            ferry_proxy::upgrade::websocket_upgrade(req).then(|| hyper::upgrade::on(&mut *req));
        // Shared with the request's buffers, not copied. HTTP/1.0 may leave Host out (RFC 9112
        // section 3.2 asks it of HTTP/1.1 only, refused by the filter): that request is routed
        // as to no host (the rules for any host, then the default backend, as nginx serves it
        // from its default server) and sent on with an empty Host, as RFC 9112 says a request
        // without an authority is.
        let host = match request_host(req) {
            Some(host) => host,
            None if req.version() < Version::HTTP_11 => HeaderValue::from_static(""),
            None => return Err(Failure::NoHost),
        };
        let host_text = host.to_str().map_err(|_| Failure::NoHost)?;
        let raw = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        if self.access_log {
            cx.host = host_text.to_owned();
            cx.path = raw.as_str().to_owned();
        }
        Ok(Head {
            path: normalized(raw)?,
            host,
            upgrade,
        })
    }

    /// Step 2: the route on `state`, with the Ingress-only answers (redirects, app root), else
    /// the backend's pool and how to reach it.
    /// `normal` is the normalized path with the query.
    fn route<'s>(
        &self,
        state: &'s Compiled,
        host: &str,
        normal: &str,
        fields: &impl select::RequestFields,
        down: &Downstream,
        cx: &mut Context,
    ) -> Result<Routed<'s>, Failure> {
        let path = normal;
        let vhost = state.routes.virtual_host(host);
        let selected = state.routes.select_in(vhost, path, fields, random);
        let options = selected.as_ref().and_then(|s| s.options);
        // ssl-redirect: TLS hosts by default, unless the Ingress says "false"; any host with
        // force-ssl-redirect.
        let redirect = match options {
            Some(o) if o.force_ssl_redirect => true,
            Some(o) if o.ssl_redirect == Some(false) => false,
            _ => vhost.is_some_and(|h| h.tls()),
        };
        if !down.tls && redirect {
            return Ok(Routed::Redirect(self.redirect(host, path)));
        }
        let selected = selected.ok_or(Failure::NoRoute)?;
        if let Some(root) = options.and_then(|o| o.app_root.as_deref())
            && normal.split_once('?').map_or(normal, |(p, _)| p) == "/"
        {
            return Ok(Routed::Redirect(app_root(down, host, root)));
        }
        cx.ingress = selected
            .ingress
            .and_then(|i| state.ingresses.get(i).cloned());
        let key = selected.backend.cluster().ok_or(Failure::NoService)?;
        let pool = state.pools.get(key).ok_or(Failure::NoService)?;
        let protocol = match options.and_then(|o| o.backend_protocol) {
            Some(BackendProtocol::HTTP) => Protocol::Http1,
            Some(BackendProtocol::GRPC | BackendProtocol::H2C) => Protocol::H2c,
            Some(BackendProtocol::HTTPS) => Protocol::Https,
            Some(BackendProtocol::GRPCS) => Protocol::H2Tls,
            None => pool.protocol,
        };
        let ms = |ms: Option<u64>, default: Duration| ms.map_or(default, Duration::from_millis);
        let limits = Limits {
            connect: ms(
                options.and_then(|o| o.proxy_connect_timeout_ms),
                self.timeouts.connect,
            ),
            response: ms(
                options.and_then(|o| o.proxy_read_timeout_ms),
                self.timeouts.response,
            ),
            send: ms(
                options.and_then(|o| o.proxy_send_timeout_ms),
                self.timeouts.send,
            ),
        };
        cx.service = Some(pool.label.clone());
        if pool.balancer.is_empty() {
            return Err(Failure::NoEndpoint);
        }
        let max_body = match options.and_then(|o| o.proxy_body_size) {
            Some(0) => u64::MAX,
            Some(limit) => limit,
            None => self.timeouts.max_body,
        };
        Ok(Routed::To(Route {
            pool,
            options,
            route_path: selected.route.map_or("/", |r| r.path.as_str()),
            rewritten: selected.rewritten,
            protocol,
            limits,
            max_body,
        }))
    }

    /// The upstream request's head and body, made once before the first attempt: the body
    /// limit, hop-by-hop headers out, forwarding headers and this gateway's `Via` in, the
    /// upgrade put back, the session-affinity key.
    fn outgoing(
        &self,
        req: Request<Incoming>,
        host: &HeaderValue,
        upgrade: bool,
        route: &Route<'_>,
        down: &Downstream,
        cx: &mut Context,
    ) -> Result<Outgoing, Failure> {
        let (mut parts, body) = req.into_parts();
        if body.size_hint().lower() > route.max_body {
            return Err(Failure::BodyTooLarge);
        }
        cx.request_id = Some(forwarding_headers(
            &mut parts.headers,
            host,
            down,
            &self.request_ids,
        ));
        parts
            .headers
            .append(header::VIA, self.via.value(parts.version));
        if upgrade {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts
                .headers
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        // Session affinity: the Ingress's cookie (set on the first answer), else the Service's
        // ClientIP; both hash onto the cluster's ring.
        let mut set_cookie = None;
        let key = match route.options.and_then(|o| o.affinity.as_ref()) {
            Some(affinity) => Some(match select::cookie(&parts.headers, &affinity.name) {
                Some(value) => affinity_key(value.as_bytes()),
                None => {
                    let value = format!("{:016x}", random());
                    set_cookie = Some(affinity_cookie(affinity, &value, route.route_path));
                    affinity_key(value.as_bytes())
                }
            }),
            None if route.pool.client_ip_affinity => Some(client_ip_key(down.peer.ip())),
            None => None,
        };
        route.pool.balancer.retry_budget().deposit(Instant::now());
        Ok(Outgoing {
            parts,
            // A body without a declared length is cut off at the limit while it streams.
            body: RequestBody::new(body, route.max_body),
            key,
            set_cookie,
            upgrade,
        })
    }

    /// Step 3: the endpoint for the next attempt, never one this request already tried.
    fn pick_endpoint(
        &self,
        route: &Route<'_>,
        outgoing: &Outgoing,
        tried: &[SocketAddr],
        cx: &mut Context,
    ) -> Option<Pick> {
        let pick = route
            .pool
            .balancer
            .pick(outgoing.key, tried, Instant::now())?;
        cx.endpoint = Some(pick.addr());
        Some(pick)
    }

    /// Step 4: one attempt on the picked endpoint, under the request's timeouts.
    async fn upstream_request(
        &self,
        exchange: &Exchange<'_>,
        outgoing: &mut Outgoing,
        pick: &Pick,
        owned: &Owned,
    ) -> Sent {
        let Outgoing { parts, body, .. } = outgoing;
        self.clients
            .send(parts, body, pick.addr(), exchange, owned)
            .await
    }

    /// Step 5: the answer on its way back. A WebSocket switch is tunnelled; a switch nobody
    /// asked for is refused. The endpoint is judged once a small answer's first body frame
    /// came: one that goes quiet or breaks off before anything went to the client counts
    /// against it. It is not tried again: nginx retries only before the head.
    async fn response_filter(
        &self,
        mut response: Response<Incoming>,
        pick: Pick,
        client_upgrade: Option<OnUpgrade>,
        route: &Route<'_>,
        set_cookie: Option<HeaderValue>,
    ) -> Result<Response<ProxyBody>, Failure> {
        let outcome = AttemptOutcome::from_status(response.status().as_u16());
        if let Some(client) = client_upgrade
            && response.status() == StatusCode::SWITCHING_PROTOCOLS
        {
            self.judge(pick, outcome, &route.pool.label);
            let upstream = hyper::upgrade::on(&mut response);
            // Run by the client connection's server once the 101 is sent, quiet no longer
            // than the route's read timeout and stuck no longer than its send timeout.
            let timeouts = TunnelTimeouts {
                idle: route.limits.response,
                send: route.limits.send,
            };
            let tunnel = Tunnel::new(client, upstream, timeouts);
            let mut answer = ferry_proxy::upgrade::upgraded(response);
            answer.extensions_mut().insert(tunnel);
            return Ok(answer);
        }
        // A switch nobody asked for (or one that is not tunnelled, h2c) is not passed on: the
        // client would read the new protocol as HTTP/1.
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            self.judge(pick, AttemptOutcome::Reset, &route.pool.label);
            return Err(Failure::Upstream);
        }
        let filtered = ferry_proxy::response::filter(response, route.limits.response).await;
        let outcome = match filtered {
            Ok(_) => outcome,
            Err(Failure::Timeout) => AttemptOutcome::Timeout,
            Err(_) => AttemptOutcome::Reset,
        };
        self.judge(pick, outcome, &route.pool.label);
        let mut response = filtered?;
        if let Some(cookie) = set_cookie {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        Ok(response)
    }

    /// Step 6: counts the request and writes its access log line.
    fn log(
        &self,
        cx: &Context,
        down: &Downstream,
        response: &Response<ProxyBody>,
        started: Instant,
    ) {
        let elapsed = started.elapsed();
        self.metrics.request(cx, response.status(), elapsed);
        if self.access_log {
            crate::access_log::write(cx, down, response.status(), response.version(), elapsed);
        }
    }

    /// Feeds an exchange's outcome back to its endpoint's health and latency.
    fn judge(&self, pick: Pick, outcome: AttemptOutcome, service: &str) {
        let endpoint = pick.addr();
        if let Transition::Ejected { duration, times } = pick.finish(outcome, Instant::now()) {
            self.metrics.ejection();
            tracing::warn!(%endpoint, service, ?duration, times, "endpoint ejected after failing in a row");
        }
    }

    /// ingress-nginx's `ssl-redirect`: 308 keeps the method and body.
    fn redirect(&self, host: &str, path: &str) -> Redirect {
        let name = strip_port(host);
        let location = if self.https_port == 443 {
            format!("https://{name}{path}")
        } else {
            format!("https://{name}:{}{path}", self.https_port)
        };
        Redirect {
            status: StatusCode::PERMANENT_REDIRECT,
            location,
        }
    }
}

/// The `Set-Cookie` that pins a client to an endpoint (ingress-nginx's `affinity: cookie`).
fn affinity_cookie(affinity: &CookieAffinity, value: &str, route_path: &str) -> HeaderValue {
    let path = affinity.path.as_deref().unwrap_or(route_path);
    let mut cookie = format!("{}={value}; Path={path}; HttpOnly", affinity.name);
    if let Some(age) = affinity.max_age_seconds {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// ingress-nginx's `app-root`: a request for `/` is sent to the application's root with 302.
fn app_root(down: &Downstream, host: &str, root: &str) -> Redirect {
    let scheme = if down.tls { "https" } else { "http" };
    Redirect {
        status: StatusCode::FOUND,
        location: format!("{scheme}://{host}{root}"),
    }
}

/// A draw for weighted canaries.
fn random() -> u64 {
    ferry_runtime::random::u64()
}

/// The Host to route by: HTTP/2's `:authority`, else the Host header.
fn request_host(req: &Request<Incoming>) -> Option<HeaderValue> {
    let host = match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok()?,
        None => req.headers().get(header::HOST)?.clone(),
    };
    (!host.is_empty()).then_some(host)
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests;
