//! The gateway as a whole, in process, on 127.0.0.1:0.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ferry_model::Snapshot;
use ferry_runtime::SnapshotBus;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// A gateway on 127.0.0.1:0 serving `snapshot`, its config adjusted by `adjust`: the plain
/// listener's address, what stops it, its task and its metrics.
pub(crate) async fn start(
    snapshot: Snapshot,
    adjust: impl FnOnce(&mut Config),
) -> (
    std::net::SocketAddr,
    ferry_runtime::ShutdownTrigger,
    tokio::task::JoinHandle<()>,
    crate::metrics::Metrics,
) {
    let (addr, _, trigger, running, metrics) = start_both(snapshot, adjust).await;
    (addr, trigger, running, metrics)
}

/// As [`start`], with the TLS listener's address after the plain one's.
pub(crate) async fn start_both(
    snapshot: Snapshot,
    adjust: impl FnOnce(&mut Config),
) -> (
    std::net::SocketAddr,
    std::net::SocketAddr,
    ferry_runtime::ShutdownTrigger,
    tokio::task::JoinHandle<()>,
    crate::metrics::Metrics,
) {
    let bus = SnapshotBus::new();
    let subscription = bus.subscribe("gateway");
    bus.publish(snapshot);
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = Config::new(loopback, loopback);
    adjust(&mut config);
    let gateway = Gateway::build(config, subscription, &mut Registry::default())
        .await
        .unwrap();
    let addr = gateway.http_addr().unwrap();
    let tls = gateway.https_addr().unwrap();
    let metrics = gateway.metrics.clone();
    let (trigger, shutdown) = ferry_runtime::shutdown::channel();
    (
        addr,
        tls,
        trigger,
        tokio::spawn(gateway.run(shutdown)),
        metrics,
    )
}

/// Waits until the gateway has no client connection open: each closed one has parked its idle
/// upstream connection by then (it parks before its task ends).
async fn until_all_closed(metrics: &crate::metrics::Metrics) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.connections.get() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "client connections still open after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_for_a_free_slot() {
    let empty = Snapshot {
        version: 1,
        ..Snapshot::default()
    };
    let (addr, trigger, running, _) = start(empty, |c| c.max_connections = 1).await;

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

/// A snapshot routing every request to one endpoint.
pub(crate) fn to(endpoint: std::net::SocketAddr) -> Snapshot {
    let key = serde_json::json!({"namespace": "t", "service": "slow", "port": 80});
    serde_json::from_value(serde_json::json!({
        "version": 1,
        "services": [{"namespace": "t", "name": "slow", "type": "ClusterIP", "cluster_ips": [],
            "headless": false,
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "target_port": endpoint.port()}],
            "session_affinity": {"type": "None"}, "publish_not_ready_addresses": false,
            "endpoints": [{"address": endpoint.ip(), "ready": true, "serving": true, "terminating": false}]}],
        "clusters": [{"key": key, "port_name": "http", "protocol": "TCP",
            "session_affinity": {"type": "None"},
            "endpoints": [{"address": endpoint.ip(), "port": endpoint.port(), "ready": true,
                "serving": true, "terminating": false}]}],
        "virtual_hosts": [{"host": "*", "tls": false, "routes": [{"path": "/", "path_type": "Prefix",
            "backend": {"kind": "Service", "namespace": "t", "name": "slow", "port": 80, "cluster": key},
            "ingress": {"kind": "Ingress", "namespace": "t", "name": "t"}}]}],
        "certificates": []
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish_and_takes_no_new_ones() {
    // An upstream that says when a request arrived and answers once the test lets it.
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let released = std::sync::Arc::new(tokio::sync::Mutex::new(Some(released)));
    let (arrived_tx, arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut arrived = arrived;
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = upstream.accept().await {
            let (released, arrived_tx) = (released.clone(), arrived_tx.clone());
            let service = hyper::service::service_fn(move |_req| {
                let released = released.clone();
                let _ = arrived_tx.send(());
                async move {
                    if let Some(rx) = released.lock().await.take() {
                        let _ = rx.await;
                    }
                    Ok::<_, std::convert::Infallible>(http::Response::new(Empty::<Bytes>::new()))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });

    let (addr, trigger, running, _) = start(to(endpoint), |_| {}).await;

    let mut sender = connect(addr).await;
    let in_flight = tokio::spawn(async move { send_get(&mut sender).await });
    // Once the request is at the upstream, shutdown begins.
    tokio::time::timeout(Duration::from_secs(10), arrived.recv())
        .await
        .expect("the request reaches the upstream");
    trigger.trigger();
    // New connections are no longer taken once the listener is closed.
    let refused = async {
        loop {
            if TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), refused)
        .await
        .expect("the listener closes at shutdown");
    // The request in flight still gets its answer.
    release.send(()).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight request finishes")
        .unwrap();
    assert_eq!(status, 200);
    tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("the gateway stops once drained")
        .unwrap();
}

/// An HTTP/1.1 upstream that answers every request with 200 on a kept-alive connection and
/// counts the connections it accepted.
async fn counting_upstream() -> (std::net::SocketAddr, std::sync::Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// RFC 9112 section 3.2 asks Host of HTTP/1.1 only: an HTTP/1.0 request without one is routed
/// by the rules for any host (as nginx serves it from its default server) and sent on with an
/// empty Host, while HTTP/1.1 without Host stays a 400.
#[tokio::test]
async fn an_http_1_0_request_without_host_is_routed_and_1_1_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap();
    let (heads, mut received) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = stream.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    let (addr, trigger, running, _) = start(to(endpoint), |_| {}).await;

    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /old HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).await.unwrap();
    // HTTP/1.1's status line, as nginx answers an HTTP/1.0 client (RFC 9110 section 6.2).
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
    let head = received.recv().await.unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /old http/1.1\r\n"), "{head}");
    assert!(
        head.contains("\r\nhost: \r\n"),
        "an empty Host upstream: {head}"
    );

    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /new HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    trigger.trigger();
    running.await.unwrap();
}

#[tokio::test]
async fn an_upstream_connection_serves_a_client_connection_and_outlives_it() {
    let (endpoint, accepted) = counting_upstream().await;
    let (addr, trigger, running, metrics) = start(to(endpoint), |_| {}).await;

    let mut first = connect(addr).await;
    for _ in 0..10 {
        assert_eq!(send_get(&mut first).await, 200);
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "ten requests of one client connection over one upstream connection"
    );

    // The client goes; its upstream connection is parked for the next client connection.
    drop(first);
    until_all_closed(&metrics).await;
    for _ in 0..3 {
        let mut next = connect(addr).await;
        for _ in 0..3 {
            assert_eq!(send_get(&mut next).await, 200);
        }
        drop(next);
        until_all_closed(&metrics).await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "client connections one after another take the same upstream connection over"
    );
    trigger.trigger();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_the_port_and_the_routes() {
    let (endpoint, _) = counting_upstream().await;
    let (addr, trigger, running, _) = start(to(endpoint), |c| c.workers = 3).await;
    // Connections land on any worker; each serves the routes.
    for _ in 0..12 {
        let mut sender = connect(addr).await;
        assert_eq!(send_get(&mut sender).await, 200);
    }
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("every worker stops at shutdown")
        .unwrap();
}

/// An upstream that switches every WebSocket request to a raw echo, as a WebSocket server
/// does, and answers others `ok` (once per connection).
async fn upgrade_echo() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(n @ 1..) => seen.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                if !seen
                    .to_ascii_lowercase()
                    .windows(18)
                    .any(|w| w == b"upgrade: websocket")
                {
                    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    let _ = stream.write_all(ok.as_bytes()).await;
                    return;
                }
                let switch = "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
                if stream.write_all(switch.as_bytes()).await.is_ok() {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
        }
    });
    addr
}

/// A WebSocket switch through the gateway at `addr`: the client's connection, switched.
async fn tunnel(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("the switch's answer")
            .unwrap();
        assert_eq!(n, 1, "closed: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// Sends `ping` through a tunnel and reads it back.
async fn ping(stream: &mut TcpStream) -> std::io::Result<()> {
    stream.write_all(b"ping").await?;
    let mut echoed = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut echoed))
        .await
        .map_err(|_| std::io::Error::other("no echo within 10 s"))??;
    assert_eq!(&echoed, b"ping");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_tunnel_holds_its_connection_slot_until_it_ends() {
    let (addr, trigger, running, metrics) =
        start(to(upgrade_echo().await), |c| c.max_connections = 1).await;
    let mut open = tunnel(addr).await;
    ping(&mut open).await.unwrap();
    assert_eq!(
        metrics.connections.get(),
        1,
        "the tunnel's connection is counted"
    );
    assert_eq!(metrics.tunnels.get(), 1);

    // At the cap: the next client waits in the kernel's queue while the tunnel is open.
    let mut second = tokio::spawn(async move {
        let mut sender = connect(addr).await;
        send_get(&mut sender).await
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut second)
            .await
            .is_err(),
        "a connection was served past the limit while a tunnel held a slot"
    );
    ping(&mut open).await.unwrap();

    // The tunnel ends (the client closes it): its slot is free for the waiting client.
    drop(open);
    let status = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("served once the tunnel ended")
        .unwrap();
    assert_eq!(status, 200);
    until_all_closed(&metrics).await;
    assert_eq!(metrics.tunnels.get(), 0);
    trigger.trigger();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_tunnel_is_closed_after_the_read_timeout_and_a_busy_one_is_not() {
    let (addr, trigger, running, metrics) = start(to(upgrade_echo().await), |c| {
        c.timeouts.response = Duration::from_millis(500);
    })
    .await;
    let mut quiet = tunnel(addr).await;
    let mut busy = tunnel(addr).await;
    // The busy one sends without a pause until the quiet one is closed.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let pinging = tokio::spawn(async move {
        let mut pings = 0u64;
        while stopped.try_recv().is_err() {
            ping(&mut busy).await.unwrap();
            pings += 1;
        }
        (busy, pings)
    });
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), quiet.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the quiet tunnel was not closed");
    stop.send(()).unwrap();
    let (mut busy, pings) = pinging.await.unwrap();
    assert!(pings > 0);
    ping(&mut busy).await.expect("the busy tunnel is open");
    assert_eq!(
        metrics.tunnels.get(),
        1,
        "the quiet one ended, the busy one did not"
    );
    drop(busy);
    until_all_closed(&metrics).await;
    trigger.trigger();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_after_a_refused_websocket_upgrade_has_the_header_timeout() {
    let (endpoint, _) = counting_upstream().await;
    let (addr, trigger, running, _) = start(to(endpoint), |c| {
        c.client_header_timeout = Duration::from_millis(300);
        c.keepalive_timeout = Duration::from_secs(3600);
    })
    .await;
    // The upstream answers 200, not 101: the connection stays HTTP/1, though the framing
    // stopped following it at the upgrade's head.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !seen.ends_with(b"ok") {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the answer")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 200"));
    // Half a head, then nothing: cut at the header timeout, not the keep-alive one.
    stream.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "half a head after a refused upgrade was not cut"
    );
    trigger.trigger();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_an_open_tunnel_after_the_drain_timeout() {
    let (addr, trigger, running, metrics) = start(to(upgrade_echo().await), |_| {}).await;
    let mut open = tunnel(addr).await;
    ping(&mut open).await.unwrap();
    trigger.trigger();
    let begun = tokio::time::Instant::now();
    // Open through the grace period (a ping is an answer, not a sleep)...
    ping(&mut open).await.unwrap();
    // ...and closed at its end, with the gateway stopped.
    let limit = crate::listener::DRAIN_TIMEOUT + Duration::from_secs(5);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(limit, open.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the tunnel outlived the drain timeout");
    assert!(
        begun.elapsed() >= crate::listener::DRAIN_TIMEOUT - Duration::from_secs(1),
        "closed before the grace period ended"
    );
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the gateway stops once its tunnel closed")
        .unwrap();
    assert_eq!(metrics.tunnels.get(), 0);
}
