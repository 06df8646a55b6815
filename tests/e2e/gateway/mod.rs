//! The ingress gateway end to end: `ferry up` on manifests whose endpoints are echo servers on
//! 127.0.0.1, requests over real sockets, TLS with certificates made by the test. One module
//! per topic; the helpers they share are here.

mod annotations;
mod bodies;
mod changes;
mod limits;
mod protocols;
mod requests;
mod routing;
mod timeouts;
mod tls;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use ferry::echo::Echo;
use ferry_runtime::ShutdownTrigger;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::Running;

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
            rustls::ClientConfig::builder_with_provider(ferry_runtime::tls::provider().clone())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth()
        }
        // Whatever the server presents: the gateway's own client for unverified upstreams.
        None => ferry_runtime::tls::any_server_client_config().unwrap(),
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
