//! The gateway as a whole, in process, on 127.0.0.1:0.

use std::time::Duration;

use bytes::Bytes;
use ferry_model::Snapshot;
use ferry_runtime::SnapshotBus;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpStream;

use super::{Config, Gateway};

async fn send_get(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>) -> u16 {
    let req = http::Request::get("/")
        .header("host", "nowhere.example")
        .body(Empty::new())
        .unwrap();
    sender.send_request(req).await.unwrap().status().as_u16()
}

async fn connect(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_for_a_free_slot() {
    let bus = SnapshotBus::new();
    let subscription = bus.subscribe("gateway");
    bus.publish(Snapshot {
        version: 1,
        ..Snapshot::default()
    });
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let config = Config {
        max_connections: 1,
        ..Config::new(loopback, loopback)
    };
    let gateway = Gateway::build(config, subscription, &mut Registry::default())
        .await
        .unwrap();
    let addr = gateway.http_addr().unwrap();
    let (trigger, shutdown) = ferry_runtime::shutdown::channel();
    let running = tokio::spawn(gateway.run(shutdown));

    let mut first = connect(addr).await;
    assert_eq!(
        send_get(&mut first).await,
        404,
        "the first connection is served"
    );

    // The second is accepted by the kernel but not by the gateway while the first is open.
    let mut second = tokio::spawn(async move {
        let mut sender = connect(addr).await;
        send_get(&mut sender).await
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut second)
            .await
            .is_err(),
        "a second connection was served past the limit"
    );
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("served once the first connection closed")
        .unwrap();
    assert_eq!(status, 404);
    trigger.trigger();
    running.await.unwrap();
}
