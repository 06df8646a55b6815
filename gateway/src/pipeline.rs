//! The request path, as a named sequence of steps (Pingora's phases), with one [`Context`] per
//! request for metrics and the access log:
//!
//! `request_filter` (a module of its own: what nginx refuses before routing: one valid Host,
//! a target of at most 8 KiB, no coding but chunked, no CONNECT or TRACE, no request this
//! gateway forwarded before by its `Via`; the path normalized by `ferry_proxy::uri`, and only
//! WebSocket upgrades kept) → `route` ([`crate::select`] on the normalized path: the routes and Ingress
//! options of the snapshot the request started on; redirects to HTTPS and to the app root) →
//! `pick_endpoint` (`ferry-proxy`'s balancer: P2C over peak-EWMA, or the hash ring for session
//! affinity; never an endpoint this request already tried) → `upstream_request` (hop-by-hop
//! headers out, forwarding headers in, HTTP/1.1, h2c or TLS over pooled connections, the body
//! streamed, the outcome fed back to the endpoint's health) → `response_filter` → the answer.
//! An HTTP/1 client connection's plain HTTP/1.1 exchanges go over an upstream connection of its
//! own ([`crate::connect::Owned`], driven in the client connection's task, taken over from the
//! worker's idle ones when it can be): no pool lock, no hop to a connection task. Counting a
//! request allocates nothing (label values are made when a snapshot compiles), and the request
//! future stays small, as hyper moves it into place for every request: the rare parts (the
//! pools, connecting, the send-timeout watchdog) are boxed.
//!
//! Failures map to a status in one place ([`Failure`]): 400 without a Host, with two or an
//! invalid one, for a path nginx refuses, for an HTTP/1 head with both `Content-Length` and
//! `Transfer-Encoding` ([`crate::smuggling`]) or a body that breaks off, 405 for CONNECT and
//! TRACE, 414 for a long target, 501 for a coding other than chunked, 508 for a loop, 404
//! with no route, 413 for a body over the limit, 503 when the backend's Service
//! or port does not exist or has no ready endpoint, 502 when the upstream refuses the
//! connection or breaks the protocol, 504 when connecting takes longer than the connect
//! timeout (as nginx's), the answer does not come in time or the body stalls
//! ([`crate::send_timeout`], [`crate::read_timeout`]; an answer whose body goes quiet after
//! its head went out is cut off). The body names which, never an internal detail. A request
//! without a body is tried on another endpoint when connecting fails, or for idempotent
//! methods when the connection is reset, within the cluster's retry budget.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use ferry_model::{BackendProtocol, CookieAffinity, SessionAffinity};
use ferry_model::{ClusterKey, Snapshot, TargetRef};
use ferry_proxy::balancer::{Pick, affinity_key, client_ip_key};
use ferry_proxy::health::Transition;
use ferry_proxy::uri::PathError;
use ferry_proxy::{Balancer, BalancerConfig, Outcome, Policy};

use crate::connect::{ConnectTimedOut, Idle, Owned, TimedConnector, with_connect_timeout};
use crate::read_timeout::{ReadIdle, ReadTimedOut};
use crate::select::{self, Routes};
use crate::send_timeout;

mod request_filter;
pub use request_filter::MAX_TARGET;
use request_filter::{Via, normalized, websocket_upgrade};

/// Plain TCP to upstreams, with the request's connect timeout.
type Connector = TimedConnector<HttpConnector>;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::metrics::Metrics;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Request and response bodies: streamed from the peer, or made here.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Upstream connection and timing settings.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// To open a connection to an endpoint.
    pub connect: Duration,
    /// `proxy-read-timeout`: from sending the request (or the end of its body) to the
    /// response's head, and then between two reads of the response's body.
    pub response: Duration,
    /// `proxy-send-timeout`: once the upstream asks for the request body, the longest it may
    /// get nothing (the upstream stopped taking it, or the client stopped sending it) before
    /// the exchange is given up with 504.
    pub send: Duration,
    /// An idle pooled connection is closed after this: shorter than the keep-alive of common
    /// upstream servers (Node's 5 s), so we never send on a connection they are closing.
    pub pool_idle: Duration,
    /// The largest request body (ingress-nginx's `proxy-body-size` default, 1 MiB): 413 beyond.
    pub max_body: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(60),
            send: Duration::from_secs(60),
            pool_idle: Duration::from_secs(4),
            max_body: 1024 * 1024,
        }
    }
}

/// What one snapshot routes to: its routes with their options, and each cluster's ready
/// endpoints.
#[derive(Debug)]
pub struct Compiled {
    routes: Routes,
    pools: HashMap<ClusterKey, Pool>,
    /// `namespace/name` of each Ingress with a route, for metrics and the access log.
    ingresses: HashMap<TargetRef, Arc<str>>,
}

#[derive(Debug)]
struct Pool {
    /// `namespace/service:port`, for metrics and the access log.
    label: Arc<str>,
    balancer: Balancer,
    protocol: Upstream,
    /// The Service's `sessionAffinity: ClientIP`.
    client_ip_affinity: bool,
}

/// How the gateway speaks to a cluster's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upstream {
    Http1,
    /// HTTP/2 without TLS (prior knowledge): gRPC and h2c services.
    H2c,
    /// HTTP/1.1 over TLS (`backend-protocol: HTTPS`).
    Https,
    /// HTTP/2 over TLS (`backend-protocol: GRPCS`).
    H2Tls,
}

impl Upstream {
    /// From the Service port's `appProtocol`: `kubernetes.io/h2c` (the standard name), `h2c`
    /// or `grpc` mean HTTP/2 in clear text; anything else, HTTP/1.1.
    pub fn from_app_protocol(app_protocol: Option<&str>) -> Upstream {
        match app_protocol.map(str::to_ascii_lowercase).as_deref() {
            Some("kubernetes.io/h2c" | "h2c" | "grpc") => Upstream::H2c,
            _ => Upstream::Http1,
        }
    }
}

impl Compiled {
    /// Compiles `snapshot`; the balancers of `previous` carry their endpoints' latency,
    /// in-flight counts and ejections over to the endpoints that remain.
    pub fn compile(snapshot: &Snapshot, previous: Option<&Compiled>) -> Compiled {
        let now = Instant::now();
        // Clusters some Ingress reaches with cookie affinity hash by the cookie.
        let cookie_clusters: HashSet<&ClusterKey> = snapshot
            .virtual_hosts
            .iter()
            .flat_map(|vh| &vh.routes)
            .filter(|r| {
                snapshot
                    .ingress_options(&r.ingress)
                    .is_some_and(|o| o.affinity.is_some())
            })
            .flat_map(|r| {
                std::iter::once(r.backend.cluster()).chain(std::iter::once(
                    r.canary.as_ref().and_then(|c| c.backend.cluster()),
                ))
            })
            .flatten()
            .collect();
        let pools = snapshot
            .clusters
            .iter()
            .map(|c| {
                let endpoints: Vec<SocketAddr> = c
                    .ready_endpoints()
                    .map(|e| SocketAddr::new(e.address, e.port))
                    .collect();
                let client_ip_affinity =
                    matches!(c.session_affinity, SessionAffinity::ClientIP { .. });
                let config = BalancerConfig {
                    policy: if client_ip_affinity || cookie_clusters.contains(&c.key) {
                        Policy::ConsistentHash
                    } else {
                        Policy::P2cPeakEwma
                    },
                    ..BalancerConfig::default()
                };
                let balancer = match previous.and_then(|p| p.pools.get(&c.key)) {
                    Some(prev) => prev.balancer.update(&endpoints, &config, now),
                    None => Balancer::new(&endpoints, &config, now),
                };
                (
                    c.key.clone(),
                    Pool {
                        label: Arc::from(c.key.to_string()),
                        balancer,
                        protocol: Upstream::from_app_protocol(c.app_protocol.as_deref()),
                        client_ip_affinity,
                    },
                )
            })
            .collect();
        // The label of every Ingress that can serve a request: routes' and default backends'.
        let ingresses = snapshot
            .virtual_hosts
            .iter()
            .flat_map(|vh| {
                vh.routes
                    .iter()
                    .map(|r| &r.ingress)
                    .chain(&vh.default_backend_ingress)
            })
            .chain(&snapshot.default_backend_ingress)
            .map(|i| {
                let name = format!("{}/{}", i.namespace, i.name);
                (i.clone(), Arc::from(name))
            })
            .collect();
        Compiled {
            routes: Routes::compile(snapshot),
            pools,
            ingresses,
        }
    }

    pub fn version(&self) -> u64 {
        self.routes.version()
    }
}

/// Where a request came from: one per client connection, with the forwarding header values
/// that stay the same for all of its requests made once.
#[derive(Clone, Debug)]
pub struct Downstream {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// The peer's address (X-Real-IP, and X-Forwarded-For's last entry).
    real_ip: HeaderValue,
    /// The local port (X-Forwarded-Port).
    port: HeaderValue,
}

impl Downstream {
    pub fn new(peer: SocketAddr, local: SocketAddr, tls: bool) -> Downstream {
        let mut text = Text::new();
        let _ = write!(text, "{}", peer.ip());
        Downstream {
            peer,
            local,
            tls,
            real_ip: HeaderValue::from_bytes(text.as_bytes())
                .unwrap_or(HeaderValue::from_static("")),
            port: HeaderValue::from(local.port()),
        }
    }
}

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
    /// The request target is longer than [`MAX_TARGET`] (nginx's 414).
    UriTooLong,
    /// A `Transfer-Encoding` other than `chunked` alone (nginx's 501).
    UnknownCoding,
    /// CONNECT and TRACE are not forwarded (nginx's 405).
    MethodNotAllowed,
    /// The request went through this gateway before (its `Via`): a route points back here.
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

    fn message(self) -> &'static str {
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

    fn respond(self) -> Response<ProxyBody> {
        let mut r = Response::new(full(self.message()));
        *r.status_mut() = self.status();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if matches!(
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
        ) {
            // The body that follows is not read, or its framing is in doubt: the connection
            // cannot carry another request. nginx closes after every 400, 413, 414 and 501
            // too (a client that sends one is broken or hostile).
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

/// The request pipeline, shared by every connection of both listeners.
#[derive(Debug)]
pub struct Pipeline {
    state: Arc<ArcSwap<Compiled>>,
    client: Client<Connector, ProxyBody>,
    h2c: Client<Connector, ProxyBody>,
    https: Client<HttpsConnector<Connector>, ProxyBody>,
    h2_tls: Client<HttpsConnector<Connector>, ProxyBody>,
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
    pub method: Method,
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

impl Pipeline {
    pub fn new(
        state: Arc<ArcSwap<Compiled>>,
        timeouts: Timeouts,
        https_port: u16,
        metrics: Metrics,
        access_log: bool,
    ) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        // HTTPS upstreams take URIs of their own scheme; the TLS layer checks what it wraps.
        http.enforce_http(false);
        let connector = TimedConnector::new(http, timeouts.connect);
        let client = crate::h2_limits::upstream(Client::builder(TokioExecutor::new()))
            .pool_idle_timeout(timeouts.pool_idle)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector.clone());
        let h2c = crate::h2_limits::upstream(Client::builder(TokioExecutor::new()))
            .http2_only(true)
            .pool_idle_timeout(timeouts.pool_idle)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .build(connector.clone());
        let tls_connector = connector;
        let tls = crate::tls::upstream_client_config()?;
        let https = crate::h2_limits::upstream(Client::builder(TokioExecutor::new()))
            .pool_idle_timeout(timeouts.pool_idle)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(
                HttpsConnectorBuilder::new()
                    .with_tls_config(tls.clone())
                    .https_only()
                    .enable_http1()
                    .wrap_connector(tls_connector.clone()),
            );
        let h2_tls = crate::h2_limits::upstream(Client::builder(TokioExecutor::new()))
            .http2_only(true)
            .pool_idle_timeout(timeouts.pool_idle)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .build(
                HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_only()
                    .enable_http2()
                    .wrap_connector(tls_connector),
            );
        Ok(Pipeline {
            state,
            client,
            h2c,
            https,
            h2_tls,
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
        Arc::new(Idle::new(self.timeouts.pool_idle))
    }

    /// Serves one request to its end; then counts it and logs it. `owned` is the client
    /// connection's own upstream connection, used when it can be.
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
        let elapsed = started.elapsed();
        self.metrics.request(&cx, response.status(), elapsed);
        if self.access_log {
            crate::access_log::write(&cx, down, response.status(), response.version(), elapsed);
        }
        response
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        down: &Downstream,
        owned: &Owned,
        cx: &mut Context,
    ) -> Result<Response<ProxyBody>, Failure> {
        // request_filter
        self.request_filter(&req)?;
        let upgrade = websocket_upgrade(&req);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        // Both shared with the request's buffers, not copied.
        let host_value = request_host(&req).ok_or(Failure::NoHost)?;
        let host = host_value.to_str().map_err(|_| Failure::NoHost)?;
        let raw = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        if self.access_log {
            cx.host = host.to_owned();
            cx.path = raw.as_str().to_owned();
        }
        // Routed and forwarded normalized, as nginx's `$uri`: one spelling, one decision.
        let path = normalized(raw)?;

        // route: on the snapshot this request started with, whatever changes meanwhile.
        let state = self.state.load_full();
        let selected = state
            .routes
            .select(host, path.as_str(), req.headers(), random);
        let options = selected.as_ref().and_then(|s| s.options);
        // ssl-redirect: TLS hosts by default, unless the Ingress says "false"; any host with
        // force-ssl-redirect.
        let redirect = match options {
            Some(o) if o.force_ssl_redirect => true,
            Some(o) if o.ssl_redirect == Some(false) => false,
            _ => state.routes.tls_host(host),
        };
        if !down.tls && redirect {
            return Ok(self.redirect(host, path.as_str()));
        }
        let selected = selected.ok_or(Failure::NoRoute)?;
        if let Some(root) = options.and_then(|o| o.app_root.as_deref())
            && path.path() == "/"
        {
            return Ok(app_root(down, host, root));
        }
        cx.ingress = selected
            .ingress
            .and_then(|i| state.ingresses.get(i).cloned());
        let key = selected.backend.cluster().ok_or(Failure::NoService)?;
        let pool = state.pools.get(key).ok_or(Failure::NoService)?;
        let path = match &selected.rewritten {
            Some(rewritten) => {
                PathAndQuery::try_from(rewritten.as_str()).map_err(|_| Failure::NoRoute)?
            }
            None => path,
        };
        let protocol = match options.and_then(|o| o.backend_protocol) {
            Some(BackendProtocol::HTTP) => Upstream::Http1,
            Some(BackendProtocol::GRPC | BackendProtocol::H2C) => Upstream::H2c,
            Some(BackendProtocol::HTTPS) => Upstream::Https,
            Some(BackendProtocol::GRPCS) => Upstream::H2Tls,
            None => pool.protocol,
        };
        let response_timeout = options
            .and_then(|o| o.proxy_read_timeout_ms)
            .map_or(self.timeouts.response, Duration::from_millis);
        let connect_timeout = options
            .and_then(|o| o.proxy_connect_timeout_ms)
            .map_or(self.timeouts.connect, Duration::from_millis);
        cx.service = Some(pool.label.clone());
        if pool.balancer.is_empty() {
            return Err(Failure::NoEndpoint);
        }

        // upstream_request
        let (mut parts, body) = req.into_parts();
        let max_body = match options.and_then(|o| o.proxy_body_size) {
            Some(0) => u64::MAX,
            Some(limit) => limit,
            None => self.timeouts.max_body,
        };
        if body.size_hint().lower() > max_body {
            return Err(Failure::BodyTooLarge);
        }
        // Only a request without a body can be sent again: the first attempt consumed it.
        let replayable = body.is_end_stream();
        let idempotent = is_idempotent(&parts.method);
        cx.request_id = Some(forwarding_headers(
            &mut parts.headers,
            &host_value,
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
        let key = match options.and_then(|o| o.affinity.as_ref()) {
            Some(affinity) => Some(match select::cookie(&parts.headers, &affinity.name) {
                Some(value) => affinity_key(value.as_bytes()),
                None => {
                    let value = format!("{:016x}", random());
                    let route_path = selected.route.map_or("/", |r| r.path.as_str());
                    set_cookie = Some(affinity_cookie(affinity, &value, route_path));
                    affinity_key(value.as_bytes())
                }
            }),
            None if pool.client_ip_affinity => Some(client_ip_key(down.peer.ip())),
            None => None,
        };
        let now = Instant::now();
        pool.balancer.retry_budget().deposit(now);
        // A body without a declared length is cut off at the limit while it streams.
        let limited = usize::try_from(max_body).unwrap_or(usize::MAX);
        // proxy-send-timeout: the upstream must keep getting the body.
        let send_timeout = options
            .and_then(|o| o.proxy_send_timeout_ms)
            .map_or(self.timeouts.send, Duration::from_millis);
        let progress = (!replayable).then(send_timeout::Progress::new);
        let limited = Limited::new(body, limited);
        let mut held = None;
        let mut body = Some(match &progress {
            Some(progress) => {
                let watched = send_timeout::Watched::new(limited, progress.clone());
                held = Some(watched.slot());
                watched.boxed()
            }
            None => limited.boxed(),
        });
        // The client connection's own upstream connection serves plain HTTP/1.1 exchanges of
        // HTTP/1 clients; upgrades (they take the connection over) and HTTP/2 use the pools.
        let own = protocol == Upstream::Http1 && !upgrade && parts.version != Version::HTTP_2;
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut last = Failure::NoEndpoint;
        let mut now = Some(now);
        loop {
            // pick_endpoint: never one this request already tried.
            let now = now.take().unwrap_or_else(Instant::now);
            let Some(pick) = pool.balancer.pick(key, &tried, now) else {
                return Err(last);
            };
            let endpoint = pick.addr();
            cx.endpoint = Some(endpoint);
            let scheme = match protocol {
                Upstream::Http1 | Upstream::H2c => "http",
                Upstream::Https | Upstream::H2Tls => "https",
            };
            // An owned connection takes the origin form; the pools, the endpoint in the URI.
            let uri = if own {
                origin(&path)
            } else {
                absolute(scheme, endpoint, path.as_str()).map_err(|_| Failure::NoRoute)?
            };
            let mut upstream = Request::new(body.take().unwrap_or_else(empty));
            *upstream.method_mut() = parts.method.clone();
            *upstream.uri_mut() = uri;
            *upstream.headers_mut() = parts.headers.clone();
            *upstream.version_mut() = match protocol {
                Upstream::Http1 | Upstream::Https => Version::HTTP_11,
                Upstream::H2c | Upstream::H2Tls => Version::HTTP_2,
            };
            // The answer's head within the read timeout, which starts once the connection is
            // there (as nginx's; for a request with a body, once the body is sent: the
            // watchdog below keeps that time). A pool connects inside its request, so there
            // connecting gets its own limit on top.
            let head_limit = match progress {
                Some(_) => Duration::MAX,
                None => response_timeout,
            };
            let pooled_limit = connect_timeout.saturating_add(head_limit);
            // The owned connection inline (the common case); the pools boxed, so their state
            // does not weigh on every request's future, which hyper moves into place.
            let sent = async {
                if !own {
                    let pooled = self.pooled(protocol, upstream, connect_timeout);
                    return tokio::time::timeout(pooled_limit, pooled).await;
                }
                let mut sender = match owned.sender(endpoint, connect_timeout).await {
                    Ok(sender) => sender,
                    Err(error) => {
                        return Ok(Err(SendFailed {
                            connect: true,
                            error,
                        }));
                    }
                };
                let sending = sender.try_send_request(upstream);
                let mut e = match tokio::time::timeout(head_limit, sending).await? {
                    Ok(response) => {
                        owned.keep(endpoint, sender);
                        return Ok(Ok(response));
                    }
                    Err(e) => e,
                };
                // Its connection closed before it took the request: the pool sends it.
                let Some(mut upstream) = e.take_message() else {
                    return Ok(Err(SendFailed {
                        connect: false,
                        error: e.into_error().into(),
                    }));
                };
                match absolute(scheme, endpoint, path.as_str()) {
                    Ok(uri) => *upstream.uri_mut() = uri,
                    Err(e) => {
                        return Ok(Err(SendFailed {
                            connect: false,
                            error: e.into(),
                        }));
                    }
                }
                let pooled = self.pooled(protocol, upstream, connect_timeout);
                tokio::time::timeout(pooled_limit, pooled).await
            };
            // Only a request with a body can stall; boxed, as it is the rarer case.
            let watchdog = async {
                match &progress {
                    Some(progress) => {
                        let read = response_timeout;
                        let stalled = send_timeout::stalled(
                            progress.clone(),
                            send_timeout,
                            read,
                            connect_timeout,
                        );
                        Box::pin(stalled).await
                    }
                    None => std::future::pending().await,
                }
            };
            // The answer's head in time, the body going through within the send timeout:
            // either running out is a 504. Either way `sent` is dropped here, which aborts the
            // upstream request and closes its connection.
            let waited = tokio::select! {
                answered = sent => match answered {
                    Ok(answered) => Waited::Answered(answered),
                    Err(_) => Waited::ReadTimeout,
                },
                stall = watchdog => {
                    // Release the client's body: the upstream connection, if still alive,
                    // keeps only a wrapper that fails.
                    if let Some(slot) = &held {
                        send_timeout::abandon(slot);
                    }
                    Waited::Stalled(stall)
                }
            };
            let client_failed = progress.as_ref().is_some_and(|p| p.client_failed());
            let (outcome, result) = match waited {
                Waited::Answered(Ok(response)) => (
                    Outcome::from_status(response.status().as_u16()),
                    Ok(response),
                ),
                Waited::Answered(Err(e)) if e.connect => {
                    self.metrics.connect_error();
                    tracing::debug!(%endpoint, error = %e.error, "upstream connect failed");
                    let failure = if caused_by::<ConnectTimedOut>(&*e.error) {
                        Failure::ConnectTimeout
                    } else {
                        Failure::Connect
                    };
                    (Outcome::ConnectError, Err(failure))
                }
                // The client's body broke the limit: nothing to hold against the endpoint.
                Waited::Answered(Err(e)) if caused_by::<LengthLimitError>(&*e.error) => {
                    drop(pick);
                    return Err(Failure::BodyTooLarge);
                }
                // The client's body broke off: not the endpoint's fault either.
                Waited::Answered(Err(e)) if client_failed => {
                    tracing::debug!(%endpoint, error = %e.error, "request body broke off");
                    drop(pick);
                    return Err(Failure::BodyBroken);
                }
                Waited::Answered(Err(e)) => {
                    tracing::debug!(%endpoint, error = %e.error, "upstream failed");
                    (Outcome::Reset, Err(Failure::Upstream))
                }
                Waited::ReadTimeout | Waited::Stalled(send_timeout::Stall::NoAnswer) => {
                    (Outcome::Timeout, Err(Failure::Timeout))
                }
                Waited::Stalled(send_timeout::Stall::Upstream) => {
                    (Outcome::Timeout, Err(Failure::SendTimeout))
                }
                Waited::Stalled(send_timeout::Stall::Client) => {
                    drop(pick);
                    return Err(Failure::SendTimeout);
                }
            };
            match result {
                Ok(mut response) => {
                    if let Some(client) = client_upgrade
                        && response.status() == StatusCode::SWITCHING_PROTOCOLS
                    {
                        self.judge(pick, outcome, &pool.label);
                        let upstream = hyper::upgrade::on(&mut response);
                        tokio::spawn(tunnel(client, upstream));
                        return Ok(upgraded(response));
                    }
                    // A switch nobody asked for (or one that is not tunnelled, h2c) is not
                    // passed on: the client would read the new protocol as HTTP/1.
                    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                        self.judge(pick, Outcome::Reset, &pool.label);
                        return Err(Failure::Upstream);
                    }
                    // Judged once a small answer's first body frame came: one that goes quiet
                    // or breaks off before anything went to the client counts against the
                    // endpoint. It is not tried again: nginx retries only before the head.
                    let filtered = response_filter(response, response_timeout).await;
                    let outcome = match filtered {
                        Ok(_) => outcome,
                        Err(Failure::Timeout) => Outcome::Timeout,
                        Err(_) => Outcome::Reset,
                    };
                    self.judge(pick, outcome, &pool.label);
                    let mut response = filtered?;
                    if let Some(cookie) = set_cookie {
                        response.headers_mut().append(header::SET_COOKIE, cookie);
                    }
                    return Ok(response);
                }
                Err(failure) => {
                    self.judge(pick, outcome, &pool.label);
                    tried.push(endpoint);
                    let again = replayable
                        && outcome.retry_safe(idempotent)
                        && tried.len() < MAX_ATTEMPTS
                        && pool.balancer.retry_budget().try_withdraw(Instant::now());
                    if !again {
                        return Err(failure);
                    }
                    last = failure;
                    self.metrics.retry();
                    cx.retries += 1;
                }
            }
        }
    }

    /// request_filter: see [`request_filter::check`].
    fn request_filter<B>(&self, req: &Request<B>) -> Result<(), Failure> {
        request_filter::check(req, &self.via)
    }

    /// Feeds an exchange's outcome back to its endpoint's health and latency.
    fn judge(&self, pick: Pick, outcome: Outcome, service: &str) {
        let endpoint = pick.addr();
        if let Transition::Ejected { duration, times } = pick.finish(outcome, Instant::now()) {
            self.metrics.ejection();
            tracing::warn!(%endpoint, service, ?duration, times, "endpoint ejected after failing in a row");
        }
    }

    /// Sends `upstream` through the shared pool for `protocol`. The connection attempt starts
    /// inside the connect-timeout scope, so it gets the request's limit.
    fn pooled(
        &self,
        protocol: Upstream,
        upstream: Request<ProxyBody>,
        connect_timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Incoming>, SendFailed>> + Send + '_>> {
        Box::pin(with_connect_timeout(connect_timeout, async move {
            Ok(match protocol {
                Upstream::Http1 => self.client.request(upstream).await?,
                Upstream::H2c => self.h2c.request(upstream).await?,
                Upstream::Https => self.https.request(upstream).await?,
                Upstream::H2Tls => self.h2_tls.request(upstream).await?,
            })
        }))
    }

    /// ingress-nginx's `ssl-redirect`: 308 keeps the method and body.
    fn redirect(&self, host: &str, path: &str) -> Response<ProxyBody> {
        let name = strip_port(host);
        let location = if self.https_port == 443 {
            format!("https://{name}{path}")
        } else {
            format!("https://{name}:{}{path}", self.https_port)
        };
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    }
}

/// How the wait for an answer ended.
enum Waited<T> {
    Answered(T),
    /// No answer head within the read timeout.
    ReadTimeout,
    /// The request body stalled (the send timeout).
    Stalled(send_timeout::Stall),
}

/// Why an upstream exchange failed: while connecting (a connect error for health and retries),
/// or after.
struct SendFailed {
    connect: bool,
    error: BoxError,
}

impl From<hyper_util::client::legacy::Error> for SendFailed {
    fn from(e: hyper_util::client::legacy::Error) -> Self {
        SendFailed {
            connect: e.is_connect(),
            error: e.into(),
        }
    }
}

/// The URI a pooled client takes: the endpoint names the connection.
fn absolute(scheme: &str, endpoint: SocketAddr, path: &str) -> Result<Uri, http::Error> {
    Uri::builder()
        .scheme(scheme)
        .authority(endpoint.to_string())
        .path_and_query(path)
        .build()
}

/// The URI an owned connection takes: the path and query alone.
fn origin(path: &PathAndQuery) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(path.clone());
    Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/"))
}

/// A request is tried on at most this many endpoints.
const MAX_ATTEMPTS: usize = 3;

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
fn app_root(down: &Downstream, host: &str, root: &str) -> Response<ProxyBody> {
    let scheme = if down.tls { "https" } else { "http" };
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(&format!("{scheme}://{host}{root}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
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

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// RFC 9110 section 7.6.1: these describe one connection, not the message.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    // Only meaningful with an h2c upgrade, which is never forwarded (RFC 9113 section 3.1).
    HeaderName::from_static("http2-settings"),
];

/// Removes hop-by-hop headers, those the Connection header names included. `TE: trailers`
/// stays (gRPC needs it end to end); Upgrade goes (an upgrade puts it back, see `forward`).
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one look at each name instead of a lookup for each hop-by-hop
    // name.
    let hop = |name: &HeaderName| {
        HOP_BY_HOP.contains(name) || name == header::UPGRADE || name == header::TE
    };
    if !headers.keys().any(hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
    let te_trailers = headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    headers.remove(header::TE);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// What the upstream learns about the client: X-Forwarded-For (appended), -Proto, -Host,
/// -Port, X-Real-IP, and an X-Request-Id (kept when the client sent one). The Host header is
/// the client's, as nginx's `proxy_set_header Host $host`. Returns the request id.
fn forwarding_headers(
    headers: &mut HeaderMap,
    host: &HeaderValue,
    down: &Downstream,
    ids: &RequestIds,
) -> HeaderValue {
    remove_hop_by_hop(headers);
    let ip = down.real_ip.clone();
    let xff = match headers.get("x-forwarded-for").map(HeaderValue::as_bytes) {
        Some(prior) if !prior.is_empty() => {
            let mut both = Vec::with_capacity(prior.len() + 2 + ip.len());
            both.extend_from_slice(prior);
            both.extend_from_slice(b", ");
            both.extend_from_slice(ip.as_bytes());
            HeaderValue::from_bytes(&both).unwrap_or_else(|_| ip.clone())
        }
        _ => ip.clone(),
    };
    let proto = if down.tls { "https" } else { "http" };
    headers.insert(HeaderName::from_static("x-forwarded-for"), xff);
    headers.insert(HeaderName::from_static("x-real-ip"), ip);
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(proto),
    );
    headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    headers.insert(
        HeaderName::from_static("x-forwarded-port"),
        down.port.clone(),
    );
    headers.insert(header::HOST, host.clone());
    match headers.get("x-request-id") {
        Some(id) => id.clone(),
        None => {
            let id = ids.next();
            headers.insert(HeaderName::from_static("x-request-id"), id.clone());
            id
        }
    }
}

/// A short text formatted on the stack (an address, a request id), not in a `String`.
struct Text {
    bytes: [u8; 48],
    len: usize,
}

impl Text {
    fn new() -> Self {
        Text {
            bytes: [0; 48],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl std::fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let room = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A 101 answer passes with its Upgrade and Connection headers: they are the switch itself.
fn upgraded(response: Response<Incoming>) -> Response<ProxyBody> {
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, empty())
}

/// After a 101 both sides speak the new protocol (WebSocket, say): bytes are copied both ways
/// until either side closes. The tunnel outlives configuration changes.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}

/// Responses with a declared length up to this wait for their first body frame before the head
/// is sent, so head and body leave in one write (as nginx's buffering does), instead of the
/// head alone and the body in a second write and a second trip through the network stack.
const COALESCE_MAX: u64 = 64 * 1024;

async fn response_filter(
    response: Response<Incoming>,
    read_timeout: Duration,
) -> Result<Response<ProxyBody>, Failure> {
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    let mut body = ReadIdle::new(body, read_timeout);
    // Only for a known, small length: a streamed answer (SSE, gRPC, no length) is never held.
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > 0 && n <= COALESCE_MAX) && !body.is_end_stream() {
        // Nothing has gone to the client yet, so an upstream that goes quiet or breaks off
        // here still gets its status, as nginx's.
        let first = match body.frame().await {
            Some(Ok(frame)) => Some(frame),
            Some(Err(e)) if e.is::<ReadTimedOut>() => return Err(Failure::Timeout),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "upstream answer broke off");
                return Err(Failure::Upstream);
            }
            None => None,
        };
        let body = FirstFrame { first, rest: body };
        return Ok(Response::from_parts(parts, body.boxed()));
    }
    Ok(Response::from_parts(parts, body.boxed()))
}

/// A body whose first frame was read already (to send it with the head), then the rest.
#[derive(Debug)]
struct FirstFrame {
    first: Option<hyper::body::Frame<Bytes>>,
    rest: ReadIdle<Incoming>,
}

impl Body for FirstFrame {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            return std::task::Poll::Ready(Some(Ok(first)));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let mut hint = self.rest.size_hint();
        if let Some(data) = self.first.as_ref().and_then(|f| f.data_ref()) {
            let n = data.len() as u64;
            // The upper bound first: a lower bound above the upper one is refused.
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + n);
            }
            hint.set_lower(hint.lower() + n);
        }
        hint
    }
}

/// Whether `e` or an error it wraps is an `E`.
fn caused_by<E: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if err.is::<E>() {
            return true;
        }
        cause = err.source();
    }
    false
}

fn full(text: &'static str) -> ProxyBody {
    Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never| match never {})
        .boxed()
}

fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Request ids: 32 hex digits, unique per process (a random prefix and a counter).
#[derive(Debug)]
struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        RequestIds {
            prefix: ferry_runtime::random::u64(),
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut text = Text::new();
        let _ = write!(text, "{:016x}{n:016x}", self.prefix);
        HeaderValue::from_bytes(text.as_bytes()).unwrap_or(HeaderValue::from_static(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_te_trailers_stays() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::TE, HeaderValue::from_static("gzip, trailers"));
        h.insert("x-kept", HeaderValue::from_static("yes"));
        remove_hop_by_hop(&mut h);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, vec!["te", "x-kept"]);
        assert_eq!(h[header::TE], "trailers");
    }

    #[test]
    fn forwarding_headers_append_and_identify() {
        let ids = RequestIds::new();
        let down = Downstream::new(
            "10.0.0.7:5555".parse().unwrap(),
            "127.0.0.1:8443".parse().unwrap(),
            true,
        );
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("192.0.2.1"));
        let host = HeaderValue::from_static("shop.example.com");
        forwarding_headers(&mut h, &host, &down, &ids);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1, 10.0.0.7");
        assert_eq!(h["x-real-ip"], "10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "shop.example.com");
        assert_eq!(h["x-forwarded-port"], "8443");
        assert_eq!(h["host"], "shop.example.com");
        let id = h["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id.len(), 32);
        let mut again = HeaderMap::new();
        again.insert("x-request-id", HeaderValue::from_static("given"));
        forwarding_headers(&mut again, &HeaderValue::from_static("h"), &down, &ids);
        assert_eq!(
            again["x-request-id"], "given",
            "a client's id passes through"
        );
        assert_ne!(ids.next(), ids.next());
    }

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

    #[test]
    fn app_protocol_picks_the_upstream_protocol() {
        for (app, want) in [
            (Some("kubernetes.io/h2c"), Upstream::H2c),
            (Some("GRPC"), Upstream::H2c),
            (Some("h2c"), Upstream::H2c),
            (Some("http"), Upstream::Http1),
            (Some("kubernetes.io/ws"), Upstream::Http1),
            (None, Upstream::Http1),
        ] {
            assert_eq!(Upstream::from_app_protocol(app), want, "{app:?}");
        }
    }

    /// hyper moves each request's future into the connection's slot for it, so its size is
    /// copied once per request: the common path's state stays small, the rare parts (upgrades,
    /// the pools, TLS upstreams, the send-timeout watchdog, connecting) are boxed.
    #[tokio::test]
    async fn the_request_future_is_small() {
        let state = Arc::new(ArcSwap::from_pointee(Compiled::compile(
            &Snapshot::default(),
            None,
        )));
        let metrics = Metrics::register(&mut prometheus_client::registry::Registry::default());
        let pipeline =
            Arc::new(Pipeline::new(state, Timeouts::default(), 443, metrics, false).unwrap());
        let down = Arc::new(Downstream::new(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            false,
        ));
        let size = Arc::new(AtomicU64::new(0));
        let (client, server) = tokio::io::duplex(4096);
        let measured = size.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let (pipeline, measured, down) = (pipeline.clone(), measured.clone(), down.clone());
            async move {
                let owned = Owned::new(Arc::new(Idle::new(Duration::from_secs(4))));
                let handling = pipeline.handle(req, &down, &owned);
                measured.store(std::mem::size_of_val(&handling) as u64, Ordering::Relaxed);
                Ok::<_, std::convert::Infallible>(handling.await)
            }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server), service),
        );
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get("/")
            .header("host", "nowhere.example")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let status = sender.send_request(req).await.unwrap().status();
        assert_eq!(status, StatusCode::NOT_FOUND);
        let size = size.load(Ordering::Relaxed);
        eprintln!("Pipeline::handle's future: {size} bytes");
        assert!(size <= 4608, "Pipeline::handle's future is {size} bytes");
    }

    #[test]
    fn ports_are_stripped_for_redirects() {
        assert_eq!(strip_port("shop.example.com:8080"), "shop.example.com");
        assert_eq!(strip_port("shop.example.com"), "shop.example.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
    }
}
