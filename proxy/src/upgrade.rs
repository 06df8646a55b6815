//! Upgrades: which requests may switch protocols (WebSocket only), the 101 answer passed on,
//! and the tunnel that copies bytes both ways once both sides switched. The tunnel is its own
//! task and outlives configuration changes.

use http::header;
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::body::{ProxyBody, empty};

/// Whether a request asks for a WebSocket (`Connection: upgrade` with `Upgrade: websocket`,
/// HTTP/1.1): the only upgrade tunnelled. Any other (`h2c`, deprecated by RFC 9113 section
/// 3.1, or an unknown token) is forwarded as a plain request without its Upgrade header, so a
/// backend cannot switch the client's connection into a protocol that reaches what the
/// Ingress does not route.
pub fn websocket_upgrade<B>(req: &Request<B>) -> bool {
    let tokens = |name: header::HeaderName| {
        req.headers()
            .get_all(name)
            .into_iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
    };
    req.version() == Version::HTTP_11
        && tokens(header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"))
        && tokens(header::UPGRADE).any(|t| t.eq_ignore_ascii_case("websocket"))
}

/// A 101 answer passes with its Upgrade and Connection headers: they are the switch itself.
pub fn upgraded(response: Response<Incoming>) -> Response<ProxyBody> {
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, empty())
}

/// After a 101 both sides speak the new protocol (WebSocket, say): bytes are copied both ways
/// until either side closes. The tunnel outlives configuration changes.
pub async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
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

#[cfg(test)]
mod tests {
    use http::header::{HeaderMap, HeaderValue};

    use super::*;
    use crate::forwarding::remove_hop_by_hop;

    #[test]
    fn only_websocket_upgrades_are_tunnelled() {
        for (connection, upgrade, want) in [
            ("Upgrade", "websocket", true),
            ("keep-alive, upgrade", "WebSocket", true),
            ("upgrade", "h2c, websocket", true),
            ("Upgrade, HTTP2-Settings", "h2c", false),
            ("upgrade", "foo/1", false),
            ("keep-alive", "websocket", false),
        ] {
            let r = Request::get("/")
                .header(header::CONNECTION, connection)
                .header(header::UPGRADE, upgrade)
                .body(())
                .unwrap();
            assert_eq!(websocket_upgrade(&r), want, "{connection} / {upgrade}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, HTTP2-Settings"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert(
            "http2-settings",
            HeaderValue::from_static("AAMAAABkAAQAAP__"),
        );
        remove_hop_by_hop(&mut h);
        assert!(h.is_empty(), "{h:?}");
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert(
            "http2-settings",
            HeaderValue::from_static("AAMAAABkAAQAAP__"),
        );
        remove_hop_by_hop(&mut h);
        assert!(h.is_empty(), "without Connection naming them: {h:?}");
    }
}
