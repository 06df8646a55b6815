//! Inbound HTTP/1.1 on the fast path ([`crate::fast`]): each request authorized on its method
//! and normalized path, cleaned of the mesh's headers, given `x-forwarded-client-cert`, and
//! sent to the app over the one connection this inbound connection keeps to it, from the
//! client's address (hyper's path keeps a pool per inbound connection for the same reason).
//! The steps are hyper's path's ([`super::handle`]); the app gets the same head either way.

use std::time::{Duration, Instant};

use ferry_proxy::h1::pool::{Upstream, still_open};
use ferry_proxy::h1::relay::Error as RelayError;
use ferry_proxy::h1::rewind::Rewind;
use ferry_proxy::h1::write::pass_request_head;
use ferry_proxy::h1::{Malformed, RequestHead};
use http::{Method, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Conn, MESH_PREFIXES, XFCC};
use crate::fast::{self, Next, Request};
use crate::upstream;

/// What the steps before the app decided.
enum Decided {
    Malformed(Malformed, bool),
    Denied(Request),
    Forward(Request),
}

/// The longest the app may leave a request's body untaken (each write's wait).
const APP_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves the connection's HTTP/1.1 requests until it ends; returns it, with the bytes read,
/// when hyper's path is to serve the rest.
pub(super) async fn serve<I>(conn: &Conn, io: I) -> Option<Rewind<I>>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut client = fast::Conn::new(io);
    let mut app = None;
    let xfcc = conn.xfcc.as_ref().map_or_else(Vec::new, |value| {
        [XFCC.as_bytes(), b": ", value.as_bytes(), b"\r\n"].concat()
    });
    while client.next().await {
        match request(conn, &mut client, &mut app, &xfcc).await {
            Next::KeepAlive => {}
            Next::Close => break,
            Next::Handoff => return Some(client.into_rewind()),
        }
    }
    client.close().await;
    None
}

/// One request, its head buffered whole in `client`.
async fn request<I>(
    conn: &Conn,
    client: &mut fast::Conn<I>,
    app: &mut Option<Upstream<upstream::Conn>>,
    xfcc: &[u8],
) -> Next
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let decided = match client.client.request() {
        Ok(head) if !fast::served(&head) => return Next::Handoff,
        Ok(head) => decide(conn, &head, &mut client.request_head, xfcc),
        Err(RelayError::Malformed(_, m)) => Decided::Malformed(m, false),
        Err(_) => return Next::Close,
    };
    let observe = |status: Option<u16>| conn.metrics.observe(status, start.elapsed().as_secs_f64());
    let request = match decided {
        Decided::Malformed(m, head_only) => {
            client.refuse(m, head_only).await;
            return Next::Close;
        }
        Decided::Denied(request) => {
            conn.shared.metrics.authz("deny_http");
            client.client.consume(request.head_len);
            observe(Some(403));
            let close = request.closes_after_own();
            let text = "denied by the workload's authorization policy\n";
            return client
                .answer(StatusCode::FORBIDDEN, text, close, request.head_only)
                .await;
        }
        Decided::Forward(request) => request,
    };
    conn.shared.metrics.authz("allow");
    client.client.consume(request.head_len);
    let close = request.closes_after_own();
    let Request {
        framing,
        head_only,
        idempotent,
        ..
    } = request;
    let replayable = request.replayable();
    // A request without a body on a kept connection the app closed (as its keep-alives end)
    // goes once more on a new one, when its method is idempotent.
    let mut stale_retry = replayable && idempotent;
    loop {
        let kept = app
            .take()
            .and_then(|mut up| still_open(&mut up).then_some(up));
        let reused = kept.is_some();
        let mut up = match kept {
            Some(up) => up,
            None => match conn.connector.open(conn.app, None).await {
                Ok(opened) => fast::upstream(opened),
                Err(e) => {
                    tracing::info!(port = conn.port, error = %e, "the app did not answer");
                    observe(None);
                    let text = "the app did not answer\n";
                    return client
                        .answer(StatusCode::BAD_GATEWAY, text, close, head_only)
                        .await;
                }
            },
        };
        // An app that stops taking the request's body fails the request, where one that
        // takes long to answer is waited for (the client side's timeout bounds that).
        up.io.set_write_limit(Some(APP_SEND_TIMEOUT));
        match client.exchange(&mut up, &framing, head_only, None).await {
            Ok(begun) => {
                up.io.set_write_limit(None);
                observe(Some(begun.status()));
                let (next, reusable) = client.finish(&mut up, begun).await;
                if reusable {
                    *app = Some(up);
                }
                return next;
            }
            Err(failed) if reused && stale_retry && failed.stale() => stale_retry = false,
            Err(failed) => {
                observe(None);
                if failed.clients() {
                    tracing::debug!(error = %failed.error, "the client's request broke off");
                    return Next::Close;
                }
                tracing::info!(port = conn.port, error = %failed.error, "the app did not answer");
                let text = "the app did not answer\n";
                let close = close || !failed.whole;
                return client.answer(failed.status(), text, close, head_only).await;
            }
        }
    }
}

/// Authorization on the method and normalized path, and the head the app gets written into
/// `out`: the mesh's headers only this sidecar sets, the normalized path (policies matched
/// it: the app must serve what was authorized), `x-forwarded-client-cert`.
fn decide(conn: &Conn, head: &RequestHead<'_>, out: &mut Vec<u8>, xfcc: &[u8]) -> Decided {
    let request = match Request::of(head) {
        Ok(request) => request,
        Err((m, head_only)) => return Decided::Malformed(m, head_only),
    };
    let target = fast::target(head);
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let normal = super::super::path::normalize(path);
    // Standard methods cost no allocation; httparse let only tokens through.
    let Ok(method) = Method::from_bytes(head.method.as_bytes()) else {
        return Decided::Malformed(Malformed::StartLine, request.head_only);
    };
    let checked = normal.as_deref().unwrap_or(path);
    let allowed =
        conn.shared
            .authorize
            .authorize(conn.peer.as_ref(), conn.port, Some((&method, checked)));
    if !allowed {
        tracing::info!(port = conn.port, peer = ?conn.peer_label, %method, path = checked, "request denied by policy");
        return Decided::Denied(request);
    }
    let rebuilt;
    let target = match (normal, query) {
        (None, _) => target,
        (Some(normal), None) => {
            rebuilt = normal;
            &rebuilt
        }
        (Some(normal), Some(query)) => {
            rebuilt = format!("{normal}?{query}");
            &rebuilt
        }
    };
    pass_request_head(
        out,
        head,
        target.as_bytes(),
        &request.framing,
        mesh_header,
        xfcc,
    );
    Decided::Forward(request)
}

/// Whether a field is one only sidecars set (`x-forwarded-client-cert`, `l5d-*`, `x-ferry-*`):
/// a client's is dropped.
fn mesh_header(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(XFCC.as_bytes())
        || MESH_PREFIXES.iter().any(|prefix| {
            name.len() >= prefix.len()
                && name[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_headers_are_known_in_any_case() {
        for name in [
            &b"X-Forwarded-Client-Cert"[..],
            b"l5d-client-id",
            b"L5D-Dst",
            b"X-Ferry-Peer",
        ] {
            assert!(mesh_header(name), "{name:?}");
        }
        for name in [&b"x-request-id"[..], b"l5", b"x-ferr", b"x-forwarded-for"] {
            assert!(!mesh_header(name), "{name:?}");
        }
    }
}
