//! Outbound HTTP: each request of the app's connection is balanced on its own over the
//! destination's endpoints (P2C over peak-EWMA from `proxy/`), sent over a pooled connection
//! (mTLS to a meshed endpoint, expecting its identity; plaintext to one without), under the
//! response timeout, and tried again on another endpoint when that is safe and the retry
//! budget allows: after a connect error, or a reset of an idempotent request, and only when
//! the request has no body to replay.
//!
//! The steps of one request: `pick_endpoint` → `upstream_request` → `finish` (the balancer
//! learns the latency and the outcome, passive health with it) → retry or answer.
//!
//! HTTP/1.1 takes the same steps on the fast path ([`fast`], over `ferry_proxy::h1`); hyper
//! serves HTTP/2 and what the fast path hands over (HTTP/1.0) here.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ferry_proxy::body::{ProxyBody, empty, full};
use ferry_proxy::forwarding::remove_hop_by_hop;
use ferry_proxy::health::AttemptOutcome;
use http::header::HOST;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::{Shared, service_of};
use crate::detect::Detected;
use crate::discover::Answer;
use crate::metrics::Direction;

mod fast;
pub(super) use fast::sweep;

struct Conn {
    shared: Arc<Shared>,
    answers: watch::Receiver<Answer>,
    h2: bool,
}

pub(super) async fn serve<I>(
    shared: Arc<Shared>,
    answers: watch::Receiver<Answer>,
    detected: Detected,
    io: I,
    client: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let h2 = detected == Detected::H2;
    let conn = Arc::new(Conn {
        shared,
        answers,
        h2,
    });
    if h2 {
        return hyper_serve(conn, io, client).await;
    }
    if let Some(rest) = fast::serve(&conn, io).await {
        hyper_serve(conn, rest, client).await;
    }
}

/// Serves the connection on hyper's path: HTTP/2, and what the fast path hands over.
async fn hyper_serve<I>(conn: Arc<Conn>, io: I, client: SocketAddr)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let h2 = conn.h2;
    let svc = service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handle(&conn, req).await) }
    });
    if let Err(e) = crate::fast::hyper(io, h2, svc).await {
        tracing::debug!(%client, error = %e, "outbound HTTP connection ended with an error");
    }
}

/// What is sent again on each attempt.
struct Head {
    method: Method,
    path: String,
    version: Version,
    headers: HeaderMap,
}

async fn handle(conn: &Conn, req: Request<Incoming>) -> Response<ProxyBody> {
    let start = Instant::now();
    let metrics = &conn.shared.metrics;
    let Some(service) = service_of(&conn.answers) else {
        metrics.outbound_http(None, None).observe(Some(503), 0.0);
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "the destination is no longer a Service\n",
        );
    };
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    remove_hop_by_hop(&mut headers);
    if !headers.contains_key(HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(HOST, host);
    }
    let head = Head {
        method: parts.method,
        path: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned(),
        version: if conn.h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        },
        headers,
    };
    let idempotent = matches!(
        head.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    );
    // Only a request without a body can be sent twice: the first attempt consumes it.
    let replayable = body.is_end_stream();
    let mut body = Some(body.map_err(Into::into).boxed());
    let budget = service.balancer.retry_budget();
    budget.deposit(Instant::now());
    let mut tried = Vec::new();
    let mut last = None;
    loop {
        // pick_endpoint
        let Some(pick) = service.balancer.pick(None, &tried, Instant::now()) else {
            metrics
                .outbound_http(None, Some(&service.name))
                .observe(None, start.elapsed().as_secs_f64());
            return match last {
                Some(outcome) => failed(outcome),
                None => status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the Service has no endpoints\n",
                ),
            };
        };
        let addr = pick.addr();
        let expected = conn.shared.connector.identities.get(&addr);
        let peer = expected.as_ref().map(ToString::to_string);
        // upstream_request
        let scheme = if expected.is_some() { "https" } else { "http" };
        if expected.is_none() {
            conn.shared
                .metrics
                .plaintext(Direction::Outbound, "unmeshed_endpoint");
        }
        let attempt_body = body.take().unwrap_or_else(empty);
        let sent = send(conn, &head, scheme, addr, attempt_body).await;
        // finish
        let outcome = match &sent {
            Ok(response) => AttemptOutcome::from_status(response.status().as_u16()),
            Err(outcome) => *outcome,
        };
        pick.finish(outcome, Instant::now());
        match sent {
            Ok(response) => {
                metrics
                    .outbound_http(peer.as_deref(), Some(&service.name))
                    .observe(
                        Some(response.status().as_u16()),
                        start.elapsed().as_secs_f64(),
                    );
                return response;
            }
            Err(outcome) => {
                tracing::info!(endpoint = %addr, service = %service.name, ?outcome, "attempt failed");
                tried.push(addr);
                last = Some(outcome);
                let retry = replayable
                    && outcome.retry_safe(idempotent)
                    && budget.try_withdraw(Instant::now());
                if !retry {
                    metrics
                        .outbound_http(peer.as_deref(), Some(&service.name))
                        .observe(None, start.elapsed().as_secs_f64());
                    return failed(outcome);
                }
            }
        }
    }
}

/// One attempt on `addr`.
async fn send(
    conn: &Conn,
    head: &Head,
    scheme: &str,
    addr: SocketAddr,
    body: ProxyBody,
) -> Result<Response<ProxyBody>, AttemptOutcome> {
    let uri: Uri = format!("{scheme}://{addr}{}", head.path)
        .parse()
        .map_err(|_| AttemptOutcome::ConnectError)?;
    let mut request = Request::new(body);
    *request.method_mut() = head.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers.clone();
    let client = conn.shared.clients.for_h2(conn.h2);
    match tokio::time::timeout(conn.shared.config.response_timeout, client.request(request)).await {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(
                parts,
                body.map_err(Into::into).boxed(),
            ))
        }
        Ok(Err(e)) if e.is_connect() => {
            tracing::debug!(endpoint = %addr, error = %e, "connect failed");
            Err(AttemptOutcome::ConnectError)
        }
        Ok(Err(e)) => {
            tracing::debug!(endpoint = %addr, error = %e, "request failed");
            Err(AttemptOutcome::Reset)
        }
        Err(_) => Err(AttemptOutcome::Timeout),
    }
}

/// The answer when the last attempt failed with `outcome`.
fn failed(outcome: AttemptOutcome) -> Response<ProxyBody> {
    let (code, text) = fast::failed(outcome);
    status(code, text)
}

fn status(code: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(full(text));
    *response.status_mut() = code;
    response
}
