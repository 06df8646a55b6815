//! Ingress annotations end to end: a default backend takes its Ingress's options, rewrite,
//! redirects, body limits, canaries, cookie affinity, regex paths, connect timeouts and h2
//! upstreams by annotation.

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::{
    annotated, backend, get, grpc_echo, h1, raw, request, secret, served_by, service, text, up_with,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_backend_takes_the_options_of_its_ingress() {
    let web = backend("web").await;
    let dir = tempfile::tempdir().unwrap();
    let fallback = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: fallback\n  namespace: shop\n  annotations:\n    nginx.ingress.kubernetes.io/proxy-body-size: 1k\nspec:\n  defaultBackend:\n    service: {name: web, port: {number: 80}}\n";
    let up = up_with(
        dir.path(),
        &[
            ("web.yaml", service("web", &[web.addr.port()])),
            ("fallback.yaml", fallback.to_owned()),
        ],
    )
    .await;
    let post = |size: usize| {
        format!(
            "POST / HTTP/1.1\r\nHost: any.example.com\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n{}",
            "a".repeat(size)
        )
    };
    let reply = raw(up.http, post(512).as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let reply = raw(up.http, post(2048).as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotations_rewrite_redirect_limit_and_split_traffic() {
    let (web, v2, api) = (
        backend("web").await,
        backend("web-v2").await,
        backend("api").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let main = annotated(
        "shop",
        &[("app-root", "/store"), ("proxy-body-size", "1k"), ("ssl-redirect", "false")],
        &[("/", "Prefix", "web")],
    )
    .replace("spec:\n", "  creationTimestamp: \"2026-01-01T00:00:00Z\"\nspec:\n  tls:\n  - hosts: [shop.example.com]\n    secretName: shop-tls\n");
    let api_ingress = annotated(
        "api",
        // ssl-redirect is the Ingress's own: without it the TLS host's paths redirect.
        &[("rewrite-target", "/$2"), ("ssl-redirect", "false")],
        &[("/api(/|$)(.*)", "ImplementationSpecific", "api")],
    );
    let canary = annotated(
        "shop-canary",
        &[
            ("canary", "true"),
            ("canary-by-header", "X-Canary"),
            ("canary-weight", "0"),
        ],
        &[("/", "Prefix", "web-v2")],
    );
    let cert = rcgen::generate_simple_self_signed(vec!["shop.example.com".to_owned()]).unwrap();
    let up = up_with(
        dir.path(),
        &[
            ("web.yaml", service("web", &[web.addr.port()])),
            ("v2.yaml", service("web-v2", &[v2.addr.port()])),
            ("api.yaml", service("api", &[api.addr.port()])),
            ("tls.yaml", secret(&cert)),
            ("main.yaml", main),
            ("api-ingress.yaml", api_ingress),
            ("canary.yaml", canary),
        ],
    )
    .await;

    // rewrite-target with a capture group; the query stays.
    let (status, body) = get(up.http, "shop.example.com", "/api/orders/7?full=1").await;
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["name"], "api");
    assert_eq!(reply["path"], "/orders/7");
    assert_eq!(reply["query"], "full=1");

    // ssl-redirect "false": a TLS host served over plain HTTP; app-root sends / to /store.
    let mut sender = h1(up.http).await;
    let res = sender
        .send_request(request("shop.example.com", "/"))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 302);
    assert_eq!(res.headers()["location"], "http://shop.example.com/store");
    let (status, body) = get(up.http, "shop.example.com", "/store").await;
    assert_eq!((status, served_by(&body).as_str()), (200, "web"));

    // The canary by header; weight 0 otherwise.
    let mut sender = h1(up.http).await;
    let req = Request::get("/store")
        .header("host", "shop.example.com")
        .header("x-canary", "always")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (_, body) = text(sender.send_request(req).await.unwrap()).await;
    assert_eq!(served_by(&body), "web-v2");

    // proxy-body-size 1k: a 2 KiB body is refused.
    let post = format!(
        "POST /store HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 2048\r\n\r\n{}",
        "a".repeat(2048)
    );
    let reply = raw(up.http, post.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_affinity_keeps_a_client_on_one_endpoint() {
    let (a, b) = (backend("a").await, backend("b").await);
    let dir = tempfile::tempdir().unwrap();
    let sticky = annotated(
        "shop",
        &[
            ("affinity", "cookie"),
            ("session-cookie-name", "route"),
            ("session-cookie-max-age", "60"),
        ],
        &[("/", "Prefix", "web")],
    );
    let up = up_with(
        dir.path(),
        &[
            ("web.yaml", service("web", &[a.addr.port(), b.addr.port()])),
            ("ingress.yaml", sticky),
        ],
    )
    .await;
    let mut sender = h1(up.http).await;
    let res = sender
        .send_request(request("shop.example.com", "/"))
        .await
        .unwrap();
    let set_cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with("route="), "{set_cookie}");
    assert!(
        set_cookie.contains("Path=/") && set_cookie.contains("Max-Age=60"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let first = served_by(&text(res).await.1);
    for _ in 0..20 {
        sender.ready().await.unwrap();
        let req = Request::get("/")
            .header("host", "shop.example.com")
            .header("cookie", cookie.as_str())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert!(
            !res.headers().contains_key("set-cookie"),
            "the cookie is set once"
        );
        assert_eq!(
            served_by(&text(res).await.1),
            first,
            "the same endpoint every time"
        );
    }
    // Other clients (other cookie values) land on both endpoints: the cookie is what decides.
    let mut seen = std::collections::HashSet::new();
    for i in 0..40 {
        sender.ready().await.unwrap();
        let req = Request::get("/")
            .header("host", "shop.example.com")
            .header("cookie", format!("route=client-{i}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        seen.insert(served_by(
            &text(sender.send_request(req).await.unwrap()).await.1,
        ));
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    up.stop().await;
}

/// An address whose connection attempts hang, as a host that drops SYNs: a listener that
/// never accepts, its queue filled. Keep what it returns while the address is used.
async fn blackhole() -> (SocketAddr, tokio::net::TcpListener, Vec<TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    // Fill the accept queue until an attempt hangs.
    loop {
        let attempt = TcpStream::connect(addr);
        match tokio::time::timeout(std::time::Duration::from_millis(200), attempt).await {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(e)) => panic!("filling the blackhole's queue: {e}"),
            Err(_) => return (addr, listener, held),
        }
        assert!(held.len() < 64, "the accept queue never filled");
    }
}

/// What an h2c client with prior knowledge gets for a gRPC-style POST to `path`: the body
/// and the trailers.
async fn grpc_call(gateway: SocketAddr, path: &str) -> (u16, Bytes, Option<http::HeaderMap>) {
    let stream = TcpStream::connect(gateway).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::post(format!("http://shop.example.com{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(Bytes::from_static(
            b"\0\0\0\0\x02hi",
        )))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    let collected = res.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (status, collected.to_bytes(), trailers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regex_paths_forced_redirects_connect_timeouts_and_h2_upstreams_by_annotation() {
    let web = backend("web").await;
    let grpc = grpc_echo().await;
    let (hole, _listener, _held) = blackhole().await;
    let dir = tempfile::tempdir().unwrap();
    let regex = annotated(
        "regex",
        &[("use-regex", "true")],
        &[("/items/[0-9]+$", "ImplementationSpecific", "web")],
    );
    // The same annotations under ferry.dev/.
    let secure = annotated(
        "secure",
        &[("force-ssl-redirect", "true")],
        &[("/secure", "Prefix", "web")],
    )
    .replace("nginx.ingress.kubernetes.io/", "ferry.dev/");
    let protocols =
        [("grpc", "GRPC", "/echo.Echo"), ("h2c", "H2C", "/h2c")].map(|(name, protocol, path)| {
            annotated(
                name,
                &[("backend-protocol", protocol)],
                &[(path, "Prefix", "grpc")],
            )
        });
    // A read timeout shorter than the connect timeout: it starts once the connection is there.
    let slow = annotated(
        "hole",
        &[("proxy-connect-timeout", "2"), ("proxy-read-timeout", "1")],
        &[("/hole", "Prefix", "hole")],
    );
    let [grpc_ingress, h2c_ingress] = protocols;
    let up = up_with(
        dir.path(),
        &[
            ("web.yaml", service("web", &[web.addr.port()])),
            // No appProtocol: only the annotations make these h2c.
            ("grpc.yaml", service("grpc", &[grpc.port()])),
            ("hole.yaml", service("hole", &[hole.port()])),
            ("regex.yaml", regex),
            ("secure.yaml", secure),
            ("grpc-ingress.yaml", grpc_ingress),
            ("h2c-ingress.yaml", h2c_ingress),
            ("hole-ingress.yaml", slow),
        ],
    )
    .await;

    // use-regex: anchored at the path's start, case-insensitive, `$` honoured.
    for (path, want) in [
        ("/items/42", 200),
        ("/ITEMS/7", 200),
        ("/items/abc", 404),
        ("/items/4x", 404),
    ] {
        let (status, body) = get(up.http, "shop.example.com", path).await;
        assert_eq!(status, want, "{path}: {body}");
    }

    // force-ssl-redirect (as ferry.dev/): a host without TLS is sent to HTTPS with 308.
    let mut sender = h1(up.http).await;
    let res = sender
        .send_request(request("shop.example.com", "/secure/cart?id=1"))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 308);
    let location = format!(
        "https://shop.example.com:{}/secure/cart?id=1",
        up.https.port()
    );
    assert_eq!(res.headers()["location"], location.as_str());

    // backend-protocol GRPC and H2C: HTTP/2 to an upstream whose Service says nothing.
    for path in ["/echo.Echo/Say", "/h2c/anything"] {
        let (status, body, trailers) = grpc_call(up.http, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body, Bytes::from_static(b"\0\0\0\0\x02hi"), "{path}");
        let trailers = trailers.expect("trailers arrive");
        assert_eq!(trailers["grpc-status"], "0", "{path}");
        assert_eq!(trailers["x-upstream-version"], "HTTP/2.0", "{path}");
    }

    // proxy-connect-timeout: an endpoint that never completes the handshake gets 504 once the
    // connect timeout is up, as nginx's, not when the shorter read timeout would be.
    let started = std::time::Instant::now();
    let (status, body) = get(up.http, "shop.example.com", "/hole").await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("connecting"), "{body}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    up.stop().await;
}
