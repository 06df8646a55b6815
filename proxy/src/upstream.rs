//! Sending a request upstream: the protocols a proxy speaks to endpoints, the shared pools
//! (HTTP/1.1, h2c, and both over TLS, with bounded HTTP/2 buffers from [`crate::h2_limits`]),
//! the client connection's own connection ([`crate::connect::Owned`]) for plain HTTP/1.1, and
//! one attempt on one endpoint under the connect, read and send timeouts
//! ([`Clients::send`]), whose end is classified once: an answer, the endpoint's failure (its
//! [`AttemptOutcome`] for health, and whether trying another endpoint is safe, [`may_retry`]), or the
//! client's. Choosing the endpoint is the caller's ([`crate::balancer`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri, Version};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::body::{BoxError, ProxyBody, empty};
use crate::connect::{ConnectTimedOut, Idle, Owned, TimedConnector, with_connect_timeout};
use crate::failure::Failure;
use crate::health::AttemptOutcome;
use crate::send_timeout::{self, Progress, Stall};

/// Plain TCP to upstreams, with the request's connect timeout.
type Connector = TimedConnector<HttpConnector>;

/// How a proxy speaks to a cluster's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    /// HTTP/2 without TLS (prior knowledge): gRPC and h2c services.
    H2c,
    /// HTTP/1.1 over TLS (`backend-protocol: HTTPS`).
    Https,
    /// HTTP/2 over TLS (`backend-protocol: GRPCS`).
    H2Tls,
}

impl Protocol {
    /// From the Service port's `appProtocol`: `kubernetes.io/h2c` (the standard name), `h2c`
    /// or `grpc` mean HTTP/2 in clear text; anything else, HTTP/1.1.
    pub fn from_app_protocol(app_protocol: Option<&str>) -> Protocol {
        match app_protocol.map(str::to_ascii_lowercase).as_deref() {
            Some("kubernetes.io/h2c" | "h2c" | "grpc") => Protocol::H2c,
            _ => Protocol::Http1,
        }
    }

    fn scheme(self) -> &'static str {
        match self {
            Protocol::Http1 | Protocol::H2c => "http",
            Protocol::Https | Protocol::H2Tls => "https",
        }
    }

    /// The HTTP version spoken to the upstream.
    pub fn version(self) -> Version {
        match self {
            Protocol::Http1 | Protocol::Https => Version::HTTP_11,
            Protocol::H2c | Protocol::H2Tls => Version::HTTP_2,
        }
    }
}

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

/// One request's limits for each of its attempts (a route may override the defaults).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub connect: Duration,
    pub response: Duration,
    pub send: Duration,
}

/// What stays the same over one request's attempts.
#[derive(Debug)]
pub struct Exchange<'a> {
    pub protocol: Protocol,
    /// The client connection's own upstream connection serves it, not a pool.
    pub own: bool,
    /// The path and query sent upstream.
    pub path: &'a PathAndQuery,
    pub limits: Limits,
}

/// The request body on its way up: cut off past the size limit while it streams, and, when
/// there is one, watched by the send timeout. Only a request without a body can be sent
/// again: the first attempt consumes it.
#[derive(Debug)]
pub struct RequestBody {
    body: Option<ProxyBody>,
    progress: Option<Arc<Progress>>,
    /// The body itself, to drop when it stalls.
    held: Option<Arc<Mutex<Option<Limited<Incoming>>>>>,
    replayable: bool,
}

impl RequestBody {
    pub fn new(body: Incoming, max: u64) -> RequestBody {
        let replayable = body.is_end_stream();
        let progress = (!replayable).then(Progress::new);
        let limited = Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX));
        let mut held = None;
        let body = Some(match &progress {
            Some(progress) => {
                let watched = send_timeout::Watched::new(limited, progress.clone());
                held = Some(watched.slot());
                watched.boxed()
            }
            None => limited.boxed(),
        });
        RequestBody {
            body,
            progress,
            held,
            replayable,
        }
    }

    /// Whether another attempt can send it (it is empty).
    pub fn replayable(&self) -> bool {
        self.replayable
    }

    /// The body for the next attempt: the body itself the first time, then empty.
    pub fn take(&mut self) -> ProxyBody {
        self.body.take().unwrap_or_else(empty)
    }
}

/// How one attempt ended.
#[derive(Debug)]
pub enum Sent {
    /// The answer's head.
    Answer(Response<Incoming>),
    /// The endpoint failed: its outcome counts against it, and another endpoint may be tried.
    Failed(Failure, AttemptOutcome),
    /// The client's side failed (its body broke off, stalled or was too large): nothing counts
    /// against the endpoint, and nothing is tried again.
    ClientFailed(Failure),
}

/// A request is tried on at most this many endpoints.
pub const MAX_ATTEMPTS: usize = 3;

/// Whether a request whose attempt ended with `outcome` may be tried on another endpoint,
/// after `tried` attempts: only one without a body (the first attempt consumed it), after a
/// connect error, or for an idempotent method after a reset (the retry budget is the caller's
/// last word).
pub fn may_retry(
    outcome: AttemptOutcome,
    body: &RequestBody,
    method: &Method,
    tried: usize,
) -> bool {
    body.replayable() && outcome.retry_safe(is_idempotent(method)) && tried < MAX_ATTEMPTS
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The shared upstream pools, one per protocol, over one connector.
#[derive(Debug)]
pub struct Clients {
    client: Client<Connector, ProxyBody>,
    h2c: Client<Connector, ProxyBody>,
    https: Client<HttpsConnector<Connector>, ProxyBody>,
    h2_tls: Client<HttpsConnector<Connector>, ProxyBody>,
    pool_idle: Duration,
}

impl Clients {
    pub fn new(timeouts: &Timeouts) -> Result<Clients, String> {
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
        // TLS to upstreams (`backend-protocol: HTTPS` or `GRPCS`): the upstream's certificate
        // is not verified, as ingress-nginx's `proxy-ssl-verify` is off by default (Pods
        // present self-signed certificates; the cluster network is the trust boundary). SNI
        // is the endpoint's address, so none is sent; hyper-rustls sets ALPN per client.
        let tls = ferry_runtime::tls::any_server_client_config().map_err(|e| e.to_string())?;
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
        Ok(Clients {
            client,
            h2c,
            https,
            h2_tls,
            pool_idle: timeouts.pool_idle,
        })
    }

    /// A pool for the owned upstream connections of one worker's client connections.
    pub fn idle_pool(&self) -> Arc<Idle> {
        Arc::new(Idle::new(self.pool_idle))
    }

    /// One attempt: the request with `head`'s method and headers and `body` (what is left of
    /// it) to `endpoint`, over the client connection's own connection when the exchange
    /// allows it, else a shared pool. The
    /// answer's head must come within the read timeout, and a body must keep going through
    /// within the send timeout; either running out drops the attempt, which aborts the upstream
    /// request and closes its connection.
    pub async fn send(
        &self,
        head: &http::request::Parts,
        body: &mut RequestBody,
        endpoint: SocketAddr,
        exchange: &Exchange<'_>,
        owned: &Owned,
    ) -> Sent {
        let mut upstream = Request::new(body.take());
        *upstream.method_mut() = head.method.clone();
        *upstream.headers_mut() = head.headers.clone();
        let body = &*body;
        let Exchange {
            protocol,
            own,
            path,
            limits,
        } = *exchange;
        // An owned connection takes the origin form; the pools, the endpoint in the URI.
        *upstream.uri_mut() = if own {
            origin(path)
        } else {
            match absolute(protocol.scheme(), endpoint, path.as_str()) {
                Ok(uri) => uri,
                Err(_) => return Sent::ClientFailed(Failure::NoRoute),
            }
        };
        *upstream.version_mut() = protocol.version();
        let progress = &body.progress;
        // The answer's head within the read timeout, which starts once the connection is
        // there (as nginx's; for a request with a body, once the body is sent: the
        // watchdog below keeps that time). A pool connects inside its request, so there
        // connecting gets its own limit on top.
        let head_limit = match progress {
            Some(_) => Duration::MAX,
            None => limits.response,
        };
        let pooled_limit = limits.connect.saturating_add(head_limit);
        // The owned connection inline (the common case); the pools boxed, so their state
        // does not weigh on every request's future, which hyper moves into place.
        let sent = async {
            if !own {
                let pooled = self.pooled(protocol, upstream, limits.connect);
                return tokio::time::timeout(pooled_limit, pooled).await;
            }
            let mut sender = match owned.sender(endpoint, limits.connect).await {
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
            match absolute(protocol.scheme(), endpoint, path.as_str()) {
                Ok(uri) => *upstream.uri_mut() = uri,
                Err(e) => {
                    return Ok(Err(SendFailed {
                        connect: false,
                        error: e.into(),
                    }));
                }
            }
            let pooled = self.pooled(protocol, upstream, limits.connect);
            tokio::time::timeout(pooled_limit, pooled).await
        };
        // Only a request with a body can stall; boxed, as it is the rarer case.
        let watchdog = async {
            match progress {
                Some(progress) => {
                    let stalled = send_timeout::stalled(
                        progress.clone(),
                        limits.send,
                        limits.response,
                        limits.connect,
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
                if let Some(slot) = &body.held {
                    send_timeout::abandon(slot);
                }
                Waited::Stalled(stall)
            }
        };
        let client_failed = progress.as_ref().is_some_and(|p| p.client_failed());
        match waited {
            Waited::Answered(Ok(response)) => Sent::Answer(response),
            Waited::Answered(Err(e)) if e.connect => {
                tracing::debug!(%endpoint, error = %e.error, "upstream connect failed");
                let failure = if caused_by::<ConnectTimedOut>(&*e.error) {
                    Failure::ConnectTimeout
                } else {
                    Failure::Connect
                };
                Sent::Failed(failure, AttemptOutcome::ConnectError)
            }
            // The client's body broke the limit: nothing to hold against the endpoint.
            Waited::Answered(Err(e)) if caused_by::<LengthLimitError>(&*e.error) => {
                Sent::ClientFailed(Failure::BodyTooLarge)
            }
            // The client's body broke off: not the endpoint's fault either.
            Waited::Answered(Err(e)) if client_failed => {
                tracing::debug!(%endpoint, error = %e.error, "request body broke off");
                Sent::ClientFailed(Failure::BodyBroken)
            }
            Waited::Answered(Err(e)) => {
                tracing::debug!(%endpoint, error = %e.error, "upstream failed");
                Sent::Failed(Failure::Upstream, AttemptOutcome::Reset)
            }
            Waited::ReadTimeout | Waited::Stalled(Stall::NoAnswer) => {
                Sent::Failed(Failure::Timeout, AttemptOutcome::Timeout)
            }
            Waited::Stalled(Stall::Upstream) => {
                Sent::Failed(Failure::SendTimeout, AttemptOutcome::Timeout)
            }
            Waited::Stalled(Stall::Client) => Sent::ClientFailed(Failure::SendTimeout),
        }
    }

    /// Sends `upstream` through the shared pool for `protocol`. The connection attempt starts
    /// inside the connect-timeout scope, so it gets the request's limit.
    fn pooled(
        &self,
        protocol: Protocol,
        upstream: Request<ProxyBody>,
        connect_timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Incoming>, SendFailed>> + Send + '_>> {
        Box::pin(with_connect_timeout(connect_timeout, async move {
            Ok(match protocol {
                Protocol::Http1 => self.client.request(upstream).await?,
                Protocol::H2c => self.h2c.request(upstream).await?,
                Protocol::Https => self.https.request(upstream).await?,
                Protocol::H2Tls => self.h2_tls.request(upstream).await?,
            })
        }))
    }
}

/// How the wait for an answer ended.
enum Waited<T> {
    Answered(T),
    /// No answer head within the read timeout.
    ReadTimeout,
    /// The request body stalled (the send timeout).
    Stalled(Stall),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_protocol_picks_the_upstream_protocol() {
        for (app, want) in [
            (Some("kubernetes.io/h2c"), Protocol::H2c),
            (Some("GRPC"), Protocol::H2c),
            (Some("h2c"), Protocol::H2c),
            (Some("http"), Protocol::Http1),
            (Some("kubernetes.io/ws"), Protocol::Http1),
            (None, Protocol::Http1),
        ] {
            assert_eq!(Protocol::from_app_protocol(app), want, "{app:?}");
        }
    }
}
