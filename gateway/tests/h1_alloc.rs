//! Allocations per request through the whole gateway on the HTTP/1 fast path (issue 18: the
//! goal is none): a client's keep-alive requests over loopback TCP, routed, forwarded over
//! the client connection's own upstream connection and answered, with the metrics counted;
//! all in one current-thread runtime, counted by dhat's allocator in a binary of its own (the
//! client and the upstream here allocate nothing per request either).
//!
//! `cargo test -p ferry-gateway --test h1_alloc` prints the figures and fails on any
//! allocation per request once the connection is warm. No libtest harness (`harness =
//! false`): the harness's own thread allocates now and then, and dhat counts every thread.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::SocketAddr;

use ferry_gateway::{Config, Gateway};
use ferry_model::Snapshot;
use ferry_runtime::SnapshotBus;
use ferry_testing::alloc;
use prometheus_client::registry::Registry;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const REQUEST: &[u8] = b"GET /api/v1/orders?x=1 HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Cookie: session=3f2a9c1e8b7d4a6f; theme=dark\r\n\r\n";

const ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";

/// Every host and path to `endpoint`.
fn snapshot(endpoint: SocketAddr) -> Snapshot {
    let key = serde_json::json!({"namespace": "shop", "service": "web", "port": 80});
    serde_json::from_value(serde_json::json!({
        "version": 1,
        "services": [{"namespace": "shop", "name": "web", "type": "ClusterIP", "cluster_ips": [],
            "headless": false,
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "target_port": endpoint.port()}],
            "session_affinity": {"type": "None"}, "publish_not_ready_addresses": false,
            "endpoints": [{"address": endpoint.ip(), "ready": true, "serving": true, "terminating": false}]}],
        "clusters": [{"key": key, "port_name": "http", "protocol": "TCP",
            "session_affinity": {"type": "None"},
            "endpoints": [{"address": endpoint.ip(), "port": endpoint.port(), "ready": true,
                "serving": true, "terminating": false}]}],
        "virtual_hosts": [{"host": "*", "tls": false, "routes": [{"path": "/", "path_type": "Prefix",
            "backend": {"kind": "Service", "namespace": "shop", "name": "web", "port": 80, "cluster": key},
            "ingress": {"kind": "Ingress", "namespace": "shop", "name": "web"}}]}],
        "certificates": []
    }))
    .unwrap()
}

fn main() {
    alloc::run(
        "the_gateway_allocates_nothing_per_request_once_warm",
        the_gateway_allocates_nothing_per_request_once_warm(),
    );
}

async fn the_gateway_allocates_nothing_per_request_once_warm() {
    let endpoint = alloc::answering(ANSWER).await;
    let bus = SnapshotBus::new();
    let subscription = bus.subscribe("gateway");
    bus.publish(snapshot(endpoint));
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let gateway = Gateway::build(
        Config::new(loopback, loopback),
        subscription,
        &mut Registry::default(),
    )
    .await
    .unwrap();
    let addr = gateway.http_addr().unwrap();
    let (trigger, shutdown) = ferry_runtime::shutdown::channel();
    let running = tokio::spawn(gateway.run(shutdown));

    let mut client = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 8192];
    let whole = |b: &[u8]| b.ends_with(b"{\"ok\":true}");
    let exchange = async || {
        client.write_all(REQUEST).await.unwrap();
        let len = alloc::read_until(&mut client, &mut buf, whole).await;
        assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\n"), "{:?}", &buf[..len]);
        len
    };
    alloc::none_per_request(exchange).await;
    drop(client);
    trigger.trigger();
    running.await.unwrap();
}
