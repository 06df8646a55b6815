//! Inbound HTTP: each request is authorized (method and path), cleaned of the mesh headers a
//! client may have forged, given `x-forwarded-client-cert` when the peer is a verified
//! workload, and sent to the app over a pooled connection in the protocol it arrived in.
//!
//! The connections to the app come from the client's address (see [`super`]), so they are
//! pooled per inbound connection: one client's requests never ride a connection that shows
//! the app another client's address (Envoy partitions its pools by source address for the
//! same reason). `x-forwarded-for` and `forwarded` are passed as the client sent them and
//! nothing is added, as Istio's and Linkerd's inbound sidecars do (Envoy's
//! `use_remote_address: false`): the app reads the client's address from its connection.
//!
//! HTTP/1.1 is served on the fast path ([`fast`], over `ferry_proxy::h1`), HTTP/2 and what
//! the fast path hands over (HTTP/1.0) by hyper here.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ferry_model::mesh::WorkloadId;
use ferry_proxy::body::{ProxyBody, full};
use ferry_proxy::forwarding::remove_hop_by_hop;
use http::header::HOST;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Shared;
use crate::detect::Detected;
use crate::metrics::HttpMetrics;

mod fast;

/// Envoy's header for the client's certificate identity.
pub const XFCC: &str = "x-forwarded-client-cert";
/// Header name prefixes that only sidecars may set: dropped from what clients send.
const MESH_PREFIXES: [&str; 2] = ["l5d-", "x-ferry-"];

/// What the requests of one connection share.
struct Conn {
    shared: Arc<Shared>,
    peer: Option<WorkloadId>,
    peer_label: Option<String>,
    /// The request metrics of this peer and port, resolved once.
    metrics: Arc<HttpMetrics>,
    /// `By=<us>;URI=<peer>`, when the peer is a verified workload.
    xfcc: Option<HeaderValue>,
    h2: bool,
    port: u16,
    /// Where the app is reached.
    app: SocketAddr,
    /// The pools to it: this connection's own when it comes from the client's address.
    clients: crate::upstream::Clients,
    /// How the fast path opens its connection to it.
    connector: crate::upstream::Connector,
}

pub(super) async fn serve<I>(
    shared: Arc<Shared>,
    peer: Option<WorkloadId>,
    detected: Detected,
    io: I,
    app: super::App,
    client: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let own = shared.tls.credentials().map(|c| c.id.to_string());
    let xfcc = match (&peer, own) {
        (Some(peer), Some(own)) => HeaderValue::try_from(format!("By={own};URI={peer}")).ok(),
        _ => None,
    };
    let h2 = detected == Detected::H2;
    let clients = if app.connector.source.is_some() {
        crate::upstream::Clients::new(&app.connector)
    } else {
        shared.app.clone()
    };
    let peer_label = peer.as_ref().map(ToString::to_string);
    let metrics = shared
        .metrics
        .inbound_http(peer_label.as_deref(), app.addr.port());
    let conn = Arc::new(Conn {
        shared,
        peer_label,
        metrics,
        peer,
        xfcc,
        h2,
        port: app.addr.port(),
        app: app.addr,
        clients,
        connector: app.connector,
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
        tracing::debug!(%client, error = %e, "inbound HTTP connection ended with an error");
    }
}

async fn handle(conn: &Conn, req: Request<Incoming>) -> Response<ProxyBody> {
    let start = Instant::now();
    let shared = &conn.shared;
    let (mut parts, body) = req.into_parts();
    // Policies match the normalized path, and the app is sent that path, so the two agree.
    if let Some(normal) = super::path::normalize(parts.uri.path()) {
        let with_query = match parts.uri.query() {
            Some(query) => format!("{normal}?{query}"),
            None => normal,
        };
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        match with_query.parse() {
            Ok(path_and_query) => {
                uri.path_and_query = Some(path_and_query);
                match Uri::from_parts(uri) {
                    Ok(normalized) => parts.uri = normalized,
                    Err(_) => return status(StatusCode::BAD_REQUEST, "bad request path\n"),
                }
            }
            Err(_) => return status(StatusCode::BAD_REQUEST, "bad request path\n"),
        }
    }
    let allowed = shared.authorize.authorize(
        conn.peer.as_ref(),
        conn.port,
        Some((&parts.method, parts.uri.path())),
    );
    let response = if allowed {
        shared.metrics.authz("allow");
        prepare(conn, &mut parts.headers, &mut parts.uri, &mut parts.version);
        let client = conn.clients.for_h2(conn.h2);
        let request = Request::from_parts(parts, body.map_err(Into::into).boxed());
        match client.request(request).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                remove_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, body.map_err(Into::into).boxed())
            }
            Err(e) => {
                tracing::info!(port = conn.port, error = %e, "the app did not answer");
                conn.metrics.observe(None, start.elapsed().as_secs_f64());
                return status(StatusCode::BAD_GATEWAY, "the app did not answer\n");
            }
        }
    } else {
        shared.metrics.authz("deny_http");
        tracing::info!(port = conn.port, peer = ?conn.peer_label, method = %parts.method, path = parts.uri.path(), "request denied by policy");
        status(
            StatusCode::FORBIDDEN,
            "denied by the workload's authorization policy\n",
        )
    };
    conn.metrics.observe(
        Some(response.status().as_u16()),
        start.elapsed().as_secs_f64(),
    );
    response
}

/// The request as the app gets it: mesh headers only we set, hop-by-hop headers out, the
/// Host kept, sent to the app's address.
fn prepare(conn: &Conn, headers: &mut HeaderMap, uri: &mut Uri, version: &mut Version) {
    strip_mesh_headers(headers);
    remove_hop_by_hop(headers);
    if let Some(xfcc) = &conn.xfcc {
        headers.insert(XFCC, xfcc.clone());
    }
    if !headers.contains_key(HOST)
        && let Some(authority) = uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(HOST, host);
    }
    let app = conn.app;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if let Ok(to_app) = format!("http://{app}{path}").parse() {
        *uri = to_app;
    }
    *version = if conn.h2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
}

/// Drops `x-forwarded-client-cert` and the mesh's own headers from a client's request: only
/// this sidecar says who the peer is.
pub fn strip_mesh_headers(headers: &mut HeaderMap) {
    headers.remove(XFCC);
    let forged: Vec<_> = headers
        .keys()
        .filter(|name| MESH_PREFIXES.iter().any(|p| name.as_str().starts_with(p)))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
}

fn status(code: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(full(text));
    *response.status_mut() = code;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_mesh_headers_are_dropped_and_others_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(
            XFCC,
            HeaderValue::from_static("By=x;URI=spiffe://evil/ns/a/sa/b"),
        );
        headers.insert("l5d-client-id", HeaderValue::from_static("evil"));
        headers.insert("x-ferry-peer", HeaderValue::from_static("evil"));
        headers.insert("x-request-id", HeaderValue::from_static("1"));
        strip_mesh_headers(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-request-id"));
    }
}
