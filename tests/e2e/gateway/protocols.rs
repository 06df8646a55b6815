//! The protocols on both sides: h2c from clients, upgrades tunnelled both ways, gRPC
//! over h2c upstreams with trailers, and TLS to upstreams (HTTPS, GRPCS).

use std::fs;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::{
    annotated, get, grpc_echo, ingress, open_tunnel, served_by, service, text, up_with,
    upgrade_echo, web_only,
};

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
