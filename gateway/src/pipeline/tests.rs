//! The request path's unit tests: the future's size, and the redirects' host.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use ferry_model::Snapshot;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

use super::*;

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
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), service),
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
