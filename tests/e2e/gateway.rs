//! The ingress gateway end to end: `ferry up` on manifests whose endpoints are echo servers on
//! 127.0.0.1, requests over real sockets, TLS with certificates made by the test.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use ferry_runtime::ShutdownTrigger;
use ferry_runtime::echo::Echo;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::{DEADLINE, Running, eventually};

/// An echo server answering as `name`, stopped when dropped.
pub(crate) struct Backend {
    pub(crate) addr: SocketAddr,
    _stop: ShutdownTrigger,
}

pub(crate) async fn backend(name: &str) -> Backend {
    let echo = Echo::build(([127, 0, 0, 1], 0).into(), name.into(), name.into())
        .await
        .unwrap();
    let addr = echo.local_addr().unwrap();
    let (trigger, shutdown) = ferry_runtime::shutdown::channel();
    tokio::spawn(echo.run(shutdown));
    Backend {
        addr,
        _stop: trigger,
    }
}

/// A Service `name` in `shop` whose endpoints are the given ports on 127.0.0.1.
pub(crate) fn service(name: &str, ports: &[u16]) -> String {
    // One slice per port: an endpoint's port is its slice's.
    let mut out = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  ports: [{{name: http, port: 80}}]\n"
    );
    for (i, port) in ports.iter().enumerate() {
        out.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-{i}\n  namespace: shop\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nendpoints:\n- addresses: [127.0.0.1]\nports: [{{name: http, port: {port}}}]\n"
        ));
    }
    out
}

fn ingress(paths: &[(&str, &str)], tls: bool) -> String {
    let paths: String = paths
        .iter()
        .map(|(path, svc)| {
            format!(
                "      - path: {path}\n        pathType: Prefix\n        backend:\n          service: {{name: {svc}, port: {{number: 80}}}}\n"
            )
        })
        .collect();
    let tls = if tls {
        "  tls:\n  - hosts: [shop.example.com]\n    secretName: shop-tls\n"
    } else {
        ""
    };
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: shop, namespace: shop}}\nspec:\n{tls}  rules:\n  - host: shop.example.com\n    http:\n      paths:\n{paths}"
    )
}

/// One request over a fresh HTTP/1.1 connection: status, and the body as text.
async fn get(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let res = sender.send_request(request(host, path)).await.unwrap();
    text(res).await
}

fn request(host: &str, path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header("host", host)
        .body(Empty::new())
        .unwrap()
}

async fn text(res: Response<Incoming>) -> (u16, String) {
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The echo reply's `name`.
pub(crate) fn served_by(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{body}"));
    v["name"].as_str().unwrap().to_owned()
}

pub(crate) async fn up_with(dir: &Path, files: &[(&str, String)]) -> Running {
    for (name, text) in files {
        fs::write(dir.join(name), text).unwrap();
    }
    let up = Running::start(vec![dir.to_owned()]).await;
    up.wait_version(1).await;
    up
}

/// `ferry up` with one echo backend, `web`, behind `shop.example.com/` over plain HTTP.
async fn web_only() -> (Backend, tempfile::TempDir, Running) {
    let web = backend("web").await;
    let dir = tempfile::tempdir().unwrap();
    let up = up_with(
        dir.path(),
        &[
            ("web.yaml", service("web", &[web.addr.port()])),
            ("ingress.yaml", ingress(&[("/", "web")], false)),
        ],
    )
    .await;
    (web, dir, up)
}

/// An HTTP/1.1 keep-alive connection to `addr`.
async fn h1(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_path_with_forwarding_headers() {
    let (web, api) = (backend("web").await, backend("api").await);
    let dir = tempfile::tempdir().unwrap();
    let empty = "apiVersion: v1\nkind: Service\nmetadata: {name: empty, namespace: shop}\nspec:\n  ports: [{name: http, port: 80}]\n";
    let up = up_with(
        dir.path(),
        &[
            ("web.yaml", service("web", &[web.addr.port()])),
            ("api.yaml", service("api", &[api.addr.port()])),
            ("empty.yaml", empty.into()),
            (
                "ingress.yaml",
                ingress(
                    &[
                        ("/", "web"),
                        ("/api", "api"),
                        ("/gone", "nothing"),
                        ("/empty", "empty"),
                    ],
                    false,
                ),
            ),
        ],
    )
    .await;

    let (status, body) = get(up.http, "shop.example.com", "/api/orders?x=1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(served_by(&body), "api");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["path"], "/api/orders");
    assert_eq!(reply["query"], "x=1");
    assert_eq!(
        reply["host"], "shop.example.com",
        "the client's Host reaches the app"
    );
    let headers = &reply["headers"];
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "shop.example.com");
    assert_eq!(headers["x-real-ip"], "127.0.0.1");
    assert_eq!(headers["x-request-id"].as_str().unwrap().len(), 32);

    let (_, body) = get(up.http, "SHOP.example.com:8080", "/").await;
    assert_eq!(served_by(&body), "web", "case and port do not matter");

    // W3C trace context and a client's request id pass through untouched.
    let mut sender = h1(up.http).await;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let req = Request::get("/")
        .header("host", "shop.example.com")
        .header("traceparent", traceparent)
        .header("x-request-id", "client-id-1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (_, body) = text(sender.send_request(req).await.unwrap()).await;
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["headers"]["traceparent"], traceparent);
    assert_eq!(reply["headers"]["x-request-id"], "client-id-1");
    let (status, body) = get(up.http, "shop.example.com", "/apix").await;
    assert_eq!(
        (status, served_by(&body).as_str()),
        (200, "web"),
        "/apix is not under /api"
    );

    let (status, body) = get(up.http, "other.example.com", "/").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(up.http, "shop.example.com", "/gone").await;
    assert_eq!(status, 503, "a Service that does not exist: {body}");
    assert!(body.contains("does not exist"), "{body}");
    let (status, body) = get(up.http, "shop.example.com", "/empty").await;
    assert_eq!(status, 503, "no ready endpoint: {body}");
    assert!(body.contains("no ready endpoint"), "{body}");
    up.stop().await;
}

/// A TLS client that trusts `root`, offers h2 and http/1.1, and reports what the server
/// presented.
async fn tls_get(
    addr: SocketAddr,
    sni: &str,
    root: Option<&CertificateDer<'static>>,
    path: &str,
) -> (u16, String, Version, Vec<u8>) {
    let mut config = match root {
        Some(root) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(root.clone()).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth()
        }
        // Whatever the server presents: the gateway's own client for unverified upstreams.
        None => ferry_gateway::tls::upstream_client_config().unwrap(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = connector
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
        .unwrap();
    let (_, session) = stream.get_ref();
    let presented = session.peer_certificates().unwrap()[0].to_vec();
    let h2 = session.alpn_protocol() == Some(b"h2");
    let req = Request::get(format!("https://{sni}{path}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(request(sni, path)).await.unwrap()
    };
    let version = res.version();
    let (status, body) = text(res).await;
    (status, body, version, presented)
}

fn secret(cert: &rcgen::CertifiedKey<rcgen::KeyPair>) -> String {
    let indent = |pem: String| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: shop-tls, namespace: shop}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(cert.cert.pem()),
        indent(cert.signing_key.serialize_pem())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_by_sni_with_h2_a_default_certificate_and_redirects() {
    let web = backend("web").await;
    let cert = rcgen::generate_simple_self_signed(vec!["shop.example.com".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let up = up_with(
        dir.path(),
        &[
            ("web.yaml", service("web", &[web.addr.port()])),
            ("tls.yaml", secret(&cert)),
            ("ingress.yaml", ingress(&[("/", "web")], true)),
        ],
    )
    .await;

    // Verified against the Secret's certificate, by SNI, over h2 (ALPN).
    let (status, body, version, presented) =
        tls_get(up.https, "shop.example.com", Some(cert.cert.der()), "/cart").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(presented, cert.cert.der().to_vec());
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["headers"]["x-forwarded-proto"], "https");
    assert_eq!(reply["path"], "/cart");

    let (_, metrics) = crate::get(up.admin, "/metrics").await;
    assert!(
        metrics.contains("ferry_gateway_tls_handshakes_total 1"),
        "{metrics}"
    );

    // Another name gets the self-signed default certificate (and no route: 404).
    let (status, _, _, presented) = tls_get(up.https, "unknown.example", None, "/").await;
    assert_ne!(presented, cert.cert.der().to_vec());
    assert_eq!(status, 404);

    // Plain HTTP to a TLS host: 308 to HTTPS, path and query kept.
    let mut sender = h1(up.http).await;
    let res = sender
        .send_request(request("shop.example.com", "/cart?id=7"))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 308);
    assert_eq!(
        res.headers()["location"],
        format!("https://shop.example.com:{}/cart?id=7", up.https.port())
    );

    // A certificate change applies to the next handshake.
    let renewed = rcgen::generate_simple_self_signed(vec!["shop.example.com".to_owned()]).unwrap();
    fs::write(dir.path().join("tls.yaml"), secret(&renewed)).unwrap();
    up.wait_version(2).await;
    let (_, _, _, presented) =
        tls_get(up.https, "shop.example.com", Some(renewed.cert.der()), "/").await;
    assert_eq!(presented, renewed.cert.der().to_vec());
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_with_prior_knowledge_on_the_plain_port() {
    let (_web, _dir, up) = web_only().await;
    let stream = TcpStream::connect(up.http).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://shop.example.com/h2c")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.version(), Version::HTTP_2);
    let (status, body) = text(res).await;
    assert_eq!((status, served_by(&body).as_str()), (200, "web"));
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_routes_and_keeps_open_connections() {
    let (web, api) = (backend("web").await, backend("api").await);
    let dir = tempfile::tempdir().unwrap();
    let up = up_with(
        dir.path(),
        &[
            ("web.yaml", service("web", &[web.addr.port()])),
            ("api.yaml", service("api", &[api.addr.port()])),
            ("ingress.yaml", ingress(&[("/v1", "web")], false)),
        ],
    )
    .await;
    let mut sender = h1(up.http).await;
    let res = sender
        .send_request(request("shop.example.com", "/v1"))
        .await
        .unwrap();
    assert_eq!(served_by(&text(res).await.1), "web");

    fs::write(
        dir.path().join("ingress.yaml"),
        ingress(&[("/v2", "api")], false),
    )
    .unwrap();
    up.wait_version(2).await;
    // The same keep-alive connection, now on the new routes.
    sender.ready().await.expect("the connection is still open");
    let res = sender
        .send_request(request("shop.example.com", "/v2"))
        .await
        .unwrap();
    assert_eq!(served_by(&text(res).await.1), "api");
    sender.ready().await.unwrap();
    let res = sender
        .send_request(request("shop.example.com", "/v1"))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_costs_no_failed_get() {
    let web = backend("web").await;
    // A port nothing listens on: connections to it are refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let up = up_with(
        dir.path(),
        &[
            ("web.yaml", service("web", &[dead, web.addr.port()])),
            ("ingress.yaml", ingress(&[("/", "web")], false)),
        ],
    )
    .await;
    for _ in 0..20 {
        let (status, body) = get(up.http, "shop.example.com", "/").await;
        assert_eq!(status, 200, "{body}");
    }
    let metrics = eventually(DEADLINE, "retries counted", || async {
        let (_, m) = crate::get(up.admin, "/metrics").await;
        m.contains("ferry_gateway_retries_total").then_some(m)
    })
    .await;
    assert!(
        !metrics.contains("ferry_gateway_retries_total 0\n"),
        "{metrics}"
    );
    let served = r#"ferry_gateway_requests_total{ingress="shop/shop",service="shop/web:80",method="GET",class="2xx"} 20"#;
    assert!(metrics.contains(served), "{metrics}");
    let timed = r#"ferry_gateway_request_duration_seconds_count{service="shop/web:80"} 20"#;
    assert!(metrics.contains(timed), "{metrics}");
    up.stop().await;
}

/// A server that switches every request to a raw echo protocol, as a WebSocket server does
/// after its handshake.
pub(crate) async fn upgrade_echo() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|mut req: Request<Incoming>| async move {
                let on = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    if let Ok(up) = on.await {
                        let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    }
                });
                Response::builder()
                    .status(101)
                    .header("connection", "upgrade")
                    .header("upgrade", "websocket")
                    .body(Empty::<Bytes>::new())
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades(),
            );
        }
    });
    addr
}

/// A WebSocket-style upgrade through the gateway: the 101 checked, the tunnel's bytes.
async fn open_tunnel(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> TokioIo<hyper::upgrade::Upgraded> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    let req = Request::get(path)
        .header("host", host)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status().as_u16(), 101);
    assert_eq!(res.headers()["upgrade"], "websocket");
    TokioIo::new(hyper::upgrade::on(res).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_tunnel_both_ways_and_outlive_a_reload() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ws = upgrade_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let up = up_with(
        dir.path(),
        &[
            ("ws.yaml", service("ws", &[ws.port()])),
            ("ingress.yaml", ingress(&[("/", "ws")], false)),
        ],
    )
    .await;
    let mut io = open_tunnel(up.http, "shop.example.com", "/chat").await;
    let mut buf = [0u8; 4];
    io.write_all(b"ping").await.unwrap();
    io.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");

    // A new snapshot without the route: the open tunnel is not touched.
    fs::write(
        dir.path().join("ingress.yaml"),
        ingress(&[("/other", "ws")], false),
    )
    .unwrap();
    up.wait_version(2).await;
    io.write_all(b"pong").await.unwrap();
    io.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
    up.stop().await;
}

/// Writes raw bytes to the gateway and reads until it closes (or 5 s pass).
pub(crate) async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut out),
    )
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_and_oversized_requests_are_refused() {
    let (_web, _dir, up) = web_only().await;
    let head = "POST / HTTP/1.1\r\nHost: shop.example.com\r\n";
    let status = |reply: &str| reply.split(' ').nth(1).unwrap_or("closed").to_owned();

    // Two different lengths, a length that is no number, a coding that is not chunked: 400.
    for bad in [
        format!("{head}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        format!("{head}Content-Length: 5x\r\n\r\nhello"),
        format!("{head}Transfer-Encoding: gzip\r\n\r\nhello"),
    ] {
        let reply = raw(up.http, bad.as_bytes()).await;
        assert_eq!(status(&reply), "400", "{bad:?} → {reply}");
    }

    // Length and chunked together: 400 and the connection closed (see
    // `length_with_chunked_gets_400_and_a_close_before_anything_is_forwarded`).
    let smuggle = format!(
        "{head}Content-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: shop.example.com\r\n\r\n"
    );
    let reply = raw(up.http, smuggle.as_bytes()).await;
    assert_eq!(status(&reply), "400", "{reply}");
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");
    assert!(!reply.contains("/smuggled"), "{reply}");

    // A broken chunk: never a success.
    let reply = raw(
        up.http,
        format!("{head}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(!status(&reply).starts_with('2'), "{reply}");

    // Headers too large, or too many: 431.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: shop.example.com\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    assert_eq!(status(&raw(up.http, big.as_bytes()).await), "431");
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: shop.example.com\r\n{many}\r\n");
    assert_eq!(status(&raw(up.http, many.as_bytes()).await), "431");

    // A body over 1 MiB: 413, declared or streamed.
    let declared = format!("{head}Content-Length: 2000000\r\n\r\n");
    assert_eq!(status(&raw(up.http, declared.as_bytes()).await), "413");
    let chunk = "a".repeat(64 * 1024);
    let mut streamed = format!("{head}Transfer-Encoding: chunked\r\n\r\n");
    for _ in 0..20 {
        streamed.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    streamed.push_str("0\r\n\r\n");
    assert_eq!(status(&raw(up.http, streamed.as_bytes()).await), "413");

    // And an ordinary request still works.
    let (code, _) = get(up.http, "shop.example.com", "/").await;
    assert_eq!(code, 200);
    up.stop().await;
}

/// A raw TCP upstream that counts its open connections and the request heads it was sent.
/// It answers a GET head with 200 "ok" and nothing else: the bodies these tests send
/// never complete.
struct Counting {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    heads: Arc<AtomicUsize>,
}

async fn counting() -> Counting {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let counting = Counting {
        addr: listener.local_addr().unwrap(),
        open: Arc::default(),
        heads: Arc::default(),
    };
    let (open, heads) = (counting.open.clone(), counting.heads.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            open.fetch_add(1, Ordering::SeqCst);
            let (open, heads) = (open.clone(), heads.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen: Vec<u8> = Vec::new();
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = seen.drain(..end + 4).collect();
                        heads.fetch_add(1, Ordering::SeqCst);
                        if head.starts_with(b"GET ") {
                            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            let _ = stream.write_all(ok).await;
                        }
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    counting
}

/// Reads from `stream` until the peer closes it, within the test deadline.
async fn read_to_close(stream: &mut TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    tokio::time::timeout(crate::DEADLINE, stream.read_to_end(&mut out))
        .await
        .expect("the gateway closes the connection")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_with_chunked_gets_400_and_a_close_before_anything_is_forwarded() {
    use tokio::io::AsyncWriteExt;
    let upstream = counting().await;
    let dir = tempfile::tempdir().unwrap();
    let up = up_with(
        dir.path(),
        &[
            ("up.yaml", service("up", &[upstream.addr.port()])),
            ("ingress.yaml", ingress(&[("/", "up")], false)),
        ],
    )
    .await;
    // The route reaches the upstream.
    let (status, body) = get(up.http, "shop.example.com", "/").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let heads = upstream.heads.load(Ordering::SeqCst);

    for lengths in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ] {
        let mut stream = TcpStream::connect(up.http).await.unwrap();
        // An ordinary request first: the framing is followed across requests.
        let smuggle = format!(
            "GET /first HTTP/1.1\r\nHost: shop.example.com\r\n\r\nPOST / HTTP/1.1\r\nHost: shop.example.com\r\n{lengths}\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: shop.example.com\r\n\r\n"
        );
        stream.write_all(smuggle.as_bytes()).await.unwrap();
        let reply = read_to_close(&mut stream).await;
        let answers: Vec<&str> = reply
            .match_indices("HTTP/1.1 ")
            .map(|(i, _)| &reply[i..i + 12])
            .collect();
        assert_eq!(answers, ["HTTP/1.1 200", "HTTP/1.1 400"], "{reply}");
        let refusal = &reply[reply.rfind("HTTP/1.1 400").unwrap()..];
        assert!(
            refusal
                .to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "{refusal}"
        );
        assert!(!reply.contains("/smuggled"), "{reply}");
    }
    // The upstream saw the two GETs and nothing of the refused requests.
    assert_eq!(upstream.heads.load(Ordering::SeqCst), heads + 2);
    let (status, _) = get(up.http, "shop.example.com", "/").await;
    assert_eq!(status, 200);
    assert_eq!(upstream.heads.load(Ordering::SeqCst), heads + 3);
    up.stop().await;
}

/// A POST whose head and first bytes go out, and then nothing.
async fn start_upload(gateway: SocketAddr, path: &str) -> TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = TcpStream::connect(gateway).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 100000\r\n\r\nfirst bytes"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_abandoned_upload_releases_its_upstream_connection() {
    let upstream = counting().await;
    let dir = tempfile::tempdir().unwrap();
    let stall = annotated(
        "stall",
        &[("proxy-send-timeout", "1")],
        &[("/stall", "Prefix", "up")],
    );
    let up = up_with(
        dir.path(),
        &[
            ("up.yaml", service("up", &[upstream.addr.port()])),
            ("stall.yaml", stall),
            // The default send timeout (60 s): only the client's going closes the upstream's.
            ("ingress.yaml", ingress(&[("/drop", "up")], false)),
        ],
    )
    .await;
    let open = || upstream.open.load(Ordering::SeqCst);
    let got_first_bytes = |heads: usize| {
        let (upstream, want) = (&upstream, heads);
        move || async move {
            (upstream.heads.load(Ordering::SeqCst) == want
                && upstream.open.load(Ordering::SeqCst) == 1)
                .then_some(())
        }
    };

    // The client stalls: after the send timeout a 504, both connections closed.
    let mut client = start_upload(up.http, "/stall").await;
    eventually(
        DEADLINE,
        "the upload reaches the upstream",
        got_first_bytes(1),
    )
    .await;
    let reply = read_to_close(&mut client).await;
    assert!(reply.starts_with("HTTP/1.1 504"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
    eventually(
        DEADLINE,
        "the upstream connection closed after the stall",
        || async { (open() == 0).then_some(()) },
    )
    .await;

    // The client goes away mid-body: the upstream request is aborted at once, long before
    // the 60 s send timeout.
    let client = start_upload(up.http, "/drop").await;
    eventually(
        DEADLINE,
        "the upload reaches the upstream",
        got_first_bytes(2),
    )
    .await;
    drop(client);
    eventually(
        DEADLINE,
        "the upstream connection closed after the client left",
        || async { (open() == 0).then_some(()) },
    )
    .await;

    // Neither cost the endpoint anything.
    let (status, body) = get(up.http, "shop.example.com", "/drop").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    up.stop().await;
}

/// A gRPC-style h2c server: answers with the request's bytes and a `grpc-status` trailer.
async fn grpc_echo() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let version = format!("{:?}", req.version());
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", "0".parse().unwrap());
                trailers.insert("x-upstream-version", version.parse().unwrap());
                let body = http_body_util::Full::new(body)
                    .with_trailers(async move { Some(Ok(trailers)) });
                Response::builder()
                    .header("content-type", "application/grpc")
                    .body(body)
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_h2c_upstreams_keeps_trailers() {
    let grpc = grpc_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let svc = service("grpc", &[grpc.port()])
        .replacen(
            "ports: [{name: http, port: 80}]",
            "ports: [{name: grpc, port: 80, appProtocol: kubernetes.io/h2c}]",
            1,
        )
        .replace("ports: [{name: http, port:", "ports: [{name: grpc, port:");
    let up = up_with(
        dir.path(),
        &[
            ("grpc.yaml", svc),
            ("ingress.yaml", ingress(&[("/", "grpc")], false)),
        ],
    )
    .await;
    let stream = TcpStream::connect(up.http).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let message = Bytes::from_static(b"\0\0\0\0\x05hello");
    let req = Request::post("http://shop.example.com/echo.Echo/Say")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(message.clone()))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let collected = res.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers arrive");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(
        trailers["x-upstream-version"], "HTTP/2.0",
        "h2c to the upstream"
    );
    assert_eq!(collected.to_bytes(), message);
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_changes_under_load_fail_no_request_and_keep_a_tunnel() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (web, ws) = (backend("web").await, upgrade_echo().await);
    let cert = rcgen::generate_simple_self_signed(vec!["shop.example.com".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let up = up_with(
        dir.path(),
        &[
            ("web.yaml", service("web", &[web.addr.port()])),
            ("ws.yaml", service("ws", &[ws.port()])),
            ("tls.yaml", secret(&cert)),
            (
                "ingress.yaml",
                ingress(&[("/", "web"), ("/ws", "ws")], true),
            ),
        ],
    )
    .await;

    // A host without TLS for the plain-HTTP clients and the tunnel (shop.example.com
    // redirects), published straight onto the bus like every change below.
    let base = up.bus.current();
    let mut snapshot = (*base).clone();
    let mut plain = snapshot.virtual_hosts[0].clone();
    plain.host = ferry_model::HostMatch::parse("plain.example.com");
    plain.tls = false;
    snapshot.virtual_hosts.push(plain);
    snapshot.version += 1;
    assert!(up.bus.publish(snapshot.clone()));
    up.wait_version(snapshot.version).await;
    let mut tunnel = open_tunnel(up.http, "plain.example.com", "/ws").await;

    // Clients on keep-alive connections, over TLS (h2) and plain HTTP/1.1, all the while.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (stop, served, addr) = (stop.clone(), served.clone(), up.http);
        clients.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            while !stop.load(Ordering::Relaxed) {
                sender.ready().await.unwrap();
                let res = sender
                    .send_request(request("plain.example.com", "/"))
                    .await
                    .unwrap();
                let (status, body) = text(res).await;
                assert_eq!(status, 200, "{body}");
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let tls_client = {
        let (stop, served, addr) = (stop.clone(), served.clone(), up.https);
        let root = cert.cert.der().clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, body, _, _) =
                    tls_get(addr, "shop.example.com", Some(&root), "/").await;
                assert_eq!(status, 200, "{body}");
                served.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // 300 changes: routes added and removed on both hosts, and the certificate's hosts list
    // rewritten, each a new snapshot the gateway compiles and swaps.
    for i in 0..300u32 {
        let mut next = snapshot.clone();
        next.version += 1;
        for vh in &mut next.virtual_hosts {
            let mut extra = vh.routes[0].clone();
            extra.path = format!("/extra-{i}");
            vh.routes.insert(0, extra);
        }
        if i % 10 == 0 {
            for c in &mut next.certificates {
                c.hosts = vec!["shop.example.com".into(), format!("h{i}.example.com")];
            }
        }
        assert!(up.bus.publish(next.clone()));
        snapshot = next;
        if i % 30 == 0 {
            up.wait_version(snapshot.version).await;
        }
    }
    up.wait_version(snapshot.version).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    tls_client.await.unwrap();
    assert!(
        served.load(Ordering::Relaxed) > 50,
        "the clients ran during the changes"
    );

    // The tunnel opened before all that still carries bytes.
    let mut buf = [0u8; 5];
    tunnel.write_all(b"still").await.unwrap();
    tunnel.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"still");
    up.stop().await;
}

pub(crate) fn annotated(
    name: &str,
    annotations: &[(&str, &str)],
    paths: &[(&str, &str, &str)],
) -> String {
    let annotations: String = annotations
        .iter()
        .map(|(k, v)| format!("    nginx.ingress.kubernetes.io/{k}: \"{v}\"\n"))
        .collect();
    let paths: String = paths
        .iter()
        .map(|(path, kind, svc)| {
            format!(
                "      - path: \"{path}\"\n        pathType: {kind}\n        backend:\n          service: {{name: {svc}, port: {{number: 80}}}}\n"
            )
        })
        .collect();
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: shop\n  annotations:\n{annotations}spec:\n  rules:\n  - host: shop.example.com\n    http:\n      paths:\n{paths}"
    )
}

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
async fn a_backend_killed_under_load_costs_no_failed_get() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let (a, b) = (backend("a").await, backend("b").await);
    let dir = tempfile::tempdir().unwrap();
    let up = up_with(
        dir.path(),
        &[
            ("web.yaml", service("web", &[a.addr.port(), b.addr.port()])),
            ("ingress.yaml", ingress(&[("/", "web")], false)),
        ],
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, served, addr) = (stop.clone(), served.clone(), up.http);
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // A new connection each time, so every request picks an endpoint afresh.
                let (status, body) = get(addr, "shop.example.com", "/").await;
                assert_eq!(status, 200, "{body}");
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let before = served.load(Ordering::Relaxed);
    eventually(DEADLINE, "traffic flows", || async {
        (served.load(Ordering::Relaxed) > before + 50).then_some(())
    })
    .await;
    // Kill b: its listener closes, connections to it are refused.
    drop(b);
    let killed = served.load(Ordering::Relaxed);
    eventually(DEADLINE, "traffic goes on without b", || async {
        (served.load(Ordering::Relaxed) > killed + 200).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (_, metrics) = crate::get(up.admin, "/metrics").await;
    assert!(!metrics.contains("class=\"5xx\""), "{metrics}");
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

/// An upstream that speaks only TLS (h2 and HTTP/1.1 by ALPN) with a self-signed certificate,
/// answering with the HTTP version it saw.
async fn tls_upstream() -> SocketAddr {
    let (config, _) = crate::tls_server_config("upstream.local");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let text = format!("tls upstream saw {:?}", req.version());
                    Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                        Bytes::from(text),
                    )))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_protocol_https_and_grpcs_speak_tls_upstream() {
    let upstream = tls_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let https = annotated(
        "https",
        &[("backend-protocol", "HTTPS")],
        &[("/h1", "Prefix", "secure")],
    );
    let grpcs = annotated(
        "grpcs",
        &[("backend-protocol", "GRPCS")],
        &[("/h2", "Prefix", "secure")],
    );
    let up = up_with(
        dir.path(),
        &[
            ("secure.yaml", service("secure", &[upstream.port()])),
            ("https.yaml", https),
            ("grpcs.yaml", grpcs),
        ],
    )
    .await;
    let (status, body) = get(up.http, "shop.example.com", "/h1").await;
    assert_eq!((status, body.as_str()), (200, "tls upstream saw HTTP/1.1"));
    let (status, body) = get(up.http, "shop.example.com", "/h2").await;
    assert_eq!((status, body.as_str()), (200, "tls upstream saw HTTP/2.0"));
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_gets_its_interim_answer_then_the_body_goes_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_web, _dir, up) = web_only().await;
    let mut stream = TcpStream::connect(up.http).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    // The client waits for the interim answer before it sends the body.
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("an interim answer")
            .unwrap();
        assert_eq!(n, 1, "closed early: {}", String::from_utf8_lossy(&interim));
        interim.push(byte[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    stream.write_all(b"hello").await.unwrap();
    let mut reply = vec![0u8; 4096];
    let n = stream.read(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"body_bytes\":5"), "{reply}");
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stops_taking_the_body_times_out_with_504() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An upstream that reads the request head and then never reads again; a small receive
    // buffer, so the gateway's writes back up soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let stuck = socket.listen(16).unwrap();
    let stuck_addr = stuck.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = stuck.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let upload = annotated(
        "upload",
        &[("proxy-body-size", "0"), ("proxy-send-timeout", "1")],
        &[("/", "Prefix", "stuck")],
    );
    let up = up_with(
        dir.path(),
        &[
            ("stuck.yaml", service("stuck", &[stuck_addr.port()])),
            ("upload.yaml", upload),
        ],
    )
    .await;
    let total: usize = 64 * 1024 * 1024;
    let stream = TcpStream::connect(up.http).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        let head = format!(
            "POST /big HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: {total}\r\n\r\n"
        );
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b'a'; 1024 * 1024];
        for _ in 0..total / chunk.len() {
            writer.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut reply = vec![0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(30), reader.read(&mut reply))
        .await
        .expect("an answer while the body is stuck")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 504"), "{reply}");
    writing.abort();
    // Closed, so shutdown has no connection to drain.
    drop(reader);
    let _ = writing.await;
    up.stop().await;
}

/// A raw upstream for the read timeout, by path: `/upload` reads the whole body (by its
/// `Content-Length`), answers with its size and closes; `/late` reads it and never answers;
/// `/quiet-body` sends a head and a few bytes of a long body, `/quiet-head` a head for a short
/// body and nothing of it, then both hold the connection; `/broken` sends a head for a short
/// body and closes. `open` counts its open connections.
async fn slow_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let counted = open.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                let end = loop {
                    if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(end + 4);
                    }
                    match stream.read(&mut buf).await {
                        Ok(n @ 1..) => seen.extend_from_slice(&buf[..n]),
                        _ => break None,
                    }
                };
                if let Some(end) = end {
                    let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    let mut body = seen.len() - end;
                    while body < length {
                        match stream.read(&mut buf).await {
                            Ok(n @ 1..) => body += n,
                            _ => break,
                        }
                    }
                    let answer = match path.as_str() {
                        "/upload" => {
                            // Closed after: the next request gets a connection of its own.
                            let text = format!("got {body}");
                            let answer = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                                text.len()
                            );
                            let _ = stream.write_all(answer.as_bytes()).await;
                            counted.fetch_sub(1, Ordering::SeqCst);
                            return;
                        }
                        "/quiet-body" => {
                            "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial".into()
                        }
                        "/quiet-head" => "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n".into(),
                        "/broken" => {
                            // A head for a short body, then the connection closes.
                            let cut = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
                            let _ = stream.write_all(cut.as_bytes()).await;
                            counted.fetch_sub(1, Ordering::SeqCst);
                            return;
                        }
                        _ => String::new(),
                    };
                    let _ = stream.write_all(answer.as_bytes()).await;
                    // Hold the connection until the gateway closes it.
                    while let Ok(1..) = stream.read(&mut buf).await {}
                }
                counted.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_timeout_waits_for_the_body_and_between_reads_of_the_answer() {
    use tokio::io::AsyncWriteExt;
    let (upstream, open) = slow_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let slow = annotated(
        "slow",
        &[("proxy-read-timeout", "1")],
        &[("/", "Prefix", "slow")],
    );
    let up = up_with(
        dir.path(),
        &[
            ("slow.yaml", service("slow", &[upstream.port()])),
            ("ingress.yaml", slow),
        ],
    )
    .await;
    let upload = |path: &'static str| async move {
        let mut stream = TcpStream::connect(up.http).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 8\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream
    };

    // An upload that keeps moving for twice the read timeout: the wait for the answer starts
    // once it is sent, as nginx's.
    let mut stream = upload("/upload").await;
    for _ in 0..8 {
        stream.write_all(b"a").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let reply = read_to_close(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("got 8"), "{reply}");

    // Sent whole and then no answer: 504 after the read timeout.
    let mut stream = upload("/late").await;
    stream.write_all(b"abcdefgh").await.unwrap();
    let reply = read_to_close(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 504"), "{reply}");

    // A head and no body: nothing has gone to the client yet, so 504 too.
    let mut stream = TcpStream::connect(up.http).await.unwrap();
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n\r\n")
    };
    stream
        .write_all(get("/quiet-head").as_bytes())
        .await
        .unwrap();
    let reply = read_to_close(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 504"), "{reply}");

    // A short answer that breaks off before anything went to the client: 502, as nginx's.
    let mut stream = TcpStream::connect(up.http).await.unwrap();
    stream.write_all(get("/broken").as_bytes()).await.unwrap();
    let reply = read_to_close(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");

    // Part of a body, then quiet: the answer is cut off after the read timeout (its head went
    // out already), and the upstream connection is closed.
    let mut stream = TcpStream::connect(up.http).await.unwrap();
    stream
        .write_all(get("/quiet-body").as_bytes())
        .await
        .unwrap();
    let reply = read_to_close(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("\r\n\r\npartial"), "{reply}");
    eventually(DEADLINE, "every upstream connection closed", || async {
        (open.load(Ordering::SeqCst) == 0).then_some(())
    })
    .await;

    // Answers that go quiet before anything went to the client count against the endpoint:
    // five in a row eject it (the part-answer above was a success, and reset the count).
    let quiet: Vec<_> = (0..5)
        .map(|_| {
            let (addr, get) = (up.http, get("/quiet-head"));
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream.write_all(get.as_bytes()).await.unwrap();
                read_to_close(&mut stream).await
            })
        })
        .collect();
    for reply in quiet {
        let reply = reply.await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 504"), "{reply}");
    }
    let (_, metrics) = crate::get(up.admin, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "ferry_gateway_ejections_total 1"),
        "{metrics}"
    );
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
