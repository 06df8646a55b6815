//! The gateway's client connections under attack: quiet connections are closed (the header and
//! keep-alive timeouts), busy ones are not, a cap full of idle connections frees up, and
//! HTTP/2 streams hold bounded buffers both ways (the settings advertised, the window kept).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_model::Snapshot;
use ferry_runtime::{ShutdownTrigger, SnapshotBus};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{DEADLINE, Running, eventually};

/// Short enough for a test, long enough for a loaded machine to send a request within.
const QUIET: Duration = Duration::from_millis(400);

/// The gateway alone on 127.0.0.1:0 with no routes (every request gets 404), `QUIET` timeouts
/// and at most `max_connections` per listener: its plain and TLS addresses, its registry, and
/// what stops it.
async fn quiet_gateway(
    max_connections: usize,
) -> (SocketAddr, SocketAddr, Registry, ShutdownTrigger) {
    let bus = SnapshotBus::new();
    let subscription = bus.subscribe("gateway");
    bus.publish(Snapshot {
        version: 1,
        ..Snapshot::default()
    });
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let config = ferry_gateway::Config {
        max_connections,
        client_header_timeout: QUIET,
        keepalive_timeout: QUIET,
        ..ferry_gateway::Config::new(loopback, loopback)
    };
    let mut registry = Registry::default();
    let gateway = ferry_gateway::Gateway::build(config, subscription, &mut registry)
        .await
        .unwrap();
    let (http, https) = (gateway.http_addr().unwrap(), gateway.https_addr().unwrap());
    let (trigger, shutdown) = ferry_runtime::shutdown::channel();
    tokio::spawn(gateway.run(shutdown));
    (http, https, registry, trigger)
}

/// Reads until the peer closes; panics if it does not within [`DEADLINE`].
async fn closed_by_peer<S: AsyncRead + Unpin>(stream: &mut S, what: &str) -> Vec<u8> {
    let mut out = Vec::new();
    match tokio::time::timeout(DEADLINE, stream.read_to_end(&mut out)).await {
        Ok(_) => out,
        Err(_) => panic!("{what}: the gateway did not close it"),
    }
}

// HTTP/2 frames by hand (RFC 9113 §4.1), as an attacker's client would write them.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// SETTINGS with the given (identifier, value) pairs.
fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> = pairs
        .iter()
        .flat_map(|(id, value)| {
            let mut p = id.to_be_bytes().to_vec();
            p.extend_from_slice(&value.to_be_bytes());
            p
        })
        .collect();
    frame(SETTINGS, 0, 0, &payload)
}

/// A GET's HEADERS frame, every field a literal without indexing (RFC 7541 §6.2.2).
fn get_headers(stream: u32, authority: &str, path: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
    ] {
        block.push(0);
        block.push(u8::try_from(name.len()).unwrap());
        block.extend_from_slice(name.as_bytes());
        block.push(u8::try_from(value.len()).unwrap());
        block.extend_from_slice(value.as_bytes());
    }
    frame(HEADERS, END_STREAM | END_HEADERS, stream, &block)
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// The next frame, or `None` once the gateway closed the connection.
async fn read_frame(stream: &mut TcpStream) -> Option<Frame> {
    let mut head = [0u8; 9];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut head))
        .await
        .expect("a frame or the end within the deadline")
        .ok()?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).await.ok()?;
    Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    })
}

/// An h2c connection with its preface and `client_settings` sent, and the gateway's first
/// SETTINGS (identifier → value).
async fn h2c(addr: SocketAddr, client_settings: &[(u16, u32)]) -> (TcpStream, Vec<(u16, u32)>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(PREFACE).await.unwrap();
    stream.write_all(&settings(client_settings)).await.unwrap();
    let first = read_frame(&mut stream).await.unwrap();
    assert_eq!(first.kind, SETTINGS, "the server's preface is SETTINGS");
    let pairs = first
        .payload
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    (stream, pairs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_connections_are_closed_by_the_gateway() {
    let (http, https, _registry, _stop) = quiet_gateway(100).await;

    // A TCP connection that sends nothing.
    let mut silent = TcpStream::connect(http).await.unwrap();
    assert!(
        closed_by_peer(&mut silent, "a silent connection")
            .await
            .is_empty()
    );

    // A TLS connection that completes its handshake, then sends nothing.
    let mut config = ferry_runtime::tls::any_server_client_config().unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("shop.example.com").unwrap();
    let mut handshaken = tls.connect(name, tcp).await.unwrap();
    let mut out = Vec::new();
    // rustls reports a close without close_notify as an error: either way, it is closed.
    let read = tokio::time::timeout(DEADLINE, handshaken.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "a TLS connection after its handshake: not closed"
    );
    assert!(out.is_empty());

    // Half a request head, never finished (slowloris).
    let mut half = TcpStream::connect(http).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: shop.example.com\r\nX-A: b\r\n")
        .await
        .unwrap();
    closed_by_peer(&mut half, "a half-sent head").await;

    // h2c that opens no stream: GOAWAY, then closed.
    let (mut idle, _) = h2c(http, &[]).await;
    let mut goaway = None;
    while let Some(f) = read_frame(&mut idle).await {
        if f.kind == SETTINGS && f.flags & ACK == 0 {
            idle.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
        }
        if f.kind == PING && f.flags & ACK == 0 {
            idle.write_all(&frame(PING, ACK, 0, &f.payload))
                .await
                .unwrap();
        }
        if f.kind == GOAWAY {
            goaway = Some(f.payload);
        }
    }
    let goaway = goaway.expect("an idle h2c connection gets GOAWAY before the close");
    assert_eq!(&goaway[4..8], &[0, 0, 0, 0], "NO_ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_full_of_idle_connections_frees_up_for_a_new_client() {
    const CAP: usize = 3;
    let (http, _, registry, _stop) = quiet_gateway(CAP).await;
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(TcpStream::connect(http).await.unwrap());
    }
    eventually(DEADLINE, "the idle connections take every slot", || async {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text.contains(&format!("ferry_gateway_connections {CAP}"))
            .then_some(())
    })
    .await;

    // The kernel accepts it; the gateway takes it once an idle one is reaped.
    let stream = TcpStream::connect(http).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/")
        .header("host", "shop.example.com")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let answer = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("the new client is served once the idle connections are reaped")
        .unwrap();
    assert_eq!(answer.status(), 404, "no routes");
    for mut stream in idle {
        closed_by_peer(&mut stream, "an idle connection holding a slot").await;
    }
}

/// An HTTP/1.1 upstream: `/held` answers a head and `start`, then the rest (`12345`) once
/// `release` turns true; `/big` answers 1 MiB; `/fat-head` a 20 KiB head; anything else `ok`.
async fn held_upstream(release: tokio::sync::watch::Receiver<bool>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut release = release.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut buf).await {
                            Ok(n @ 1..) => seen.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&seen[..end]).into_owned();
                    seen.drain(..end + 4);
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    let written = match path.as_str() {
                        "/held" => {
                            let head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nstart";
                            let _ = stream.write_all(head.as_bytes()).await;
                            let _ = release.wait_for(|&r| r).await;
                            stream.write_all(b"12345").await
                        }
                        "/fat-head" => {
                            let fat = "x".repeat(20 * 1024);
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nX-Fat: {fat}\r\nContent-Length: 2\r\n\r\nok"
                            );
                            stream.write_all(head.as_bytes()).await
                        }
                        "/big" => {
                            let head = "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n";
                            let _ = stream.write_all(head.as_bytes()).await;
                            stream.write_all(&vec![b'x'; 1 << 20]).await
                        }
                        _ => {
                            let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            stream.write_all(ok.as_bytes()).await
                        }
                    };
                    if written.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A server that switches every request to a raw echo, as a WebSocket server does.
async fn upgrade_echo() -> SocketAddr {
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

/// A Service `name` in `shop` with one endpoint, 127.0.0.1:`port`, speaking `app_protocol`.
fn service(name: &str, port: u16, app_protocol: Option<&str>) -> String {
    let app = app_protocol.map_or(String::new(), |p| format!(", appProtocol: {p}"));
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  ports: [{{name: http, port: 80{app}}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}\n  namespace: shop\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nendpoints:\n- addresses: [127.0.0.1]\nports: [{{name: http, port: {port}{app}}}]\n"
    )
}

/// An Ingress for `shop.example.com` routing each (path prefix, Service).
fn ingress(paths: &[(&str, &str)]) -> String {
    let paths: String = paths
        .iter()
        .map(|(path, svc)| {
            format!(
                "      - path: {path}\n        pathType: Prefix\n        backend:\n          service: {{name: {svc}, port: {{number: 80}}}}\n"
            )
        })
        .collect();
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: shop, namespace: shop}}\nspec:\n  rules:\n  - host: shop.example.com\n    http:\n      paths:\n{paths}"
    )
}

/// `ferry up` on `files` with `QUIET` client timeouts.
async fn quiet_up(dir: &std::path::Path, files: &[(&str, String)]) -> Running {
    up_with_timeouts(dir, files, QUIET, QUIET).await
}

/// `ferry up` on `files` with these client header and keep-alive timeouts.
async fn up_with_timeouts(
    dir: &std::path::Path,
    files: &[(&str, String)],
    header: Duration,
    keepalive: Duration,
) -> Running {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let up = Running::start_with(vec![dir.to_owned()], |c| {
        c.client_header_timeout = header;
        c.keepalive_timeout = keepalive;
    })
    .await;
    up.wait_version(1).await;
    up
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_begun_while_busy_is_cut_at_the_header_timeout() {
    let (release, released) = tokio::sync::watch::channel(false);
    let web = held_upstream(released).await;
    let dir = tempfile::tempdir().unwrap();
    // The keep-alive timeout is far past the test's deadline: only the header timeout can
    // close these connections in time.
    let up = up_with_timeouts(
        dir.path(),
        &[
            ("web.yaml", service("web", web.port(), None)),
            ("ingress.yaml", ingress(&[("/", "web")])),
        ],
        QUIET,
        Duration::from_secs(3600),
    )
    .await;

    // Half of the next head in the same packet as a request: read while that one was served.
    let mut packed = TcpStream::connect(up.http).await.unwrap();
    packed
        .write_all(
            b"GET /quick HTTP/1.1\r\nHost: shop.example.com\r\n\r\nGET /quick HTTP/1.1\r\nHo",
        )
        .await
        .unwrap();
    let answered = closed_by_peer(&mut packed, "half a head after a request").await;
    let answered = String::from_utf8_lossy(&answered);
    assert!(
        answered.starts_with("HTTP/1.1 200") && answered.ends_with("\r\n\r\nok"),
        "the first request answered, then closed: {answered}"
    );

    // Half of the next head while the answer is still coming (longer than the header
    // timeout): it gets the header timeout once the answer ended.
    let mut busy = TcpStream::connect(up.http).await.unwrap();
    busy.write_all(b"GET /held HTTP/1.1\r\nHost: shop.example.com\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !seen.ends_with(b"start") {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(DEADLINE, busy.read(&mut buf))
            .await
            .expect("the answer's head and first bytes")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    busy.write_all(b"GET /quick HTTP/1.1\r\nHo").await.unwrap();
    release.send_replace(true);
    let rest = closed_by_peer(&mut busy, "half a head sent while busy").await;
    assert_eq!(
        &rest[..],
        b"12345",
        "the answer finished, then the connection closed"
    );
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alives_are_closed_and_busy_connections_are_not() {
    let (release, released) = tokio::sync::watch::channel(false);
    let (web, ws) = (held_upstream(released).await, upgrade_echo().await);
    let dir = tempfile::tempdir().unwrap();
    let up = quiet_up(
        dir.path(),
        &[
            ("web.yaml", service("web", web.port(), None)),
            ("ws.yaml", service("ws", ws.port(), None)),
            ("ingress.yaml", ingress(&[("/", "web"), ("/ws", "ws")])),
        ],
    )
    .await;

    // Busy: an HTTP/1.1 answer in the middle of its body.
    let stream = TcpStream::connect(up.http).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/held")
        .header("host", "shop.example.com")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let mut long = sender.send_request(req).await.unwrap().into_body();
    let first = long.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"start");

    // Busy: an h2c stream waiting for the rest of its answer.
    let (mut stream_open, _) = h2c(up.http, &[]).await;
    stream_open
        .write_all(&get_headers(1, "shop.example.com", "/held"))
        .await
        .unwrap();

    // Busy: a WebSocket tunnel, quiet.
    let stream = TcpStream::connect(up.http).await.unwrap();
    let (mut sender_ws, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    let req = Request::get("/ws")
        .header("host", "shop.example.com")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let switched = sender_ws.send_request(req).await.unwrap();
    assert_eq!(switched.status(), 101);
    let mut tunnel = TokioIo::new(hyper::upgrade::on(switched).await.unwrap());

    // Idle: a keep-alive connection after its answer, and an h2c one after its stream.
    let mut keep_alive = TcpStream::connect(up.http).await.unwrap();
    keep_alive
        .write_all(b"GET /quick HTTP/1.1\r\nHost: shop.example.com\r\n\r\n")
        .await
        .unwrap();
    let answered = closed_by_peer(&mut keep_alive, "an idle keep-alive connection").await;
    let answered = String::from_utf8_lossy(&answered);
    assert!(
        answered.starts_with("HTTP/1.1 200") && answered.ends_with("\r\n\r\nok"),
        "answered once, then closed: {answered}"
    );
    let (mut h2_idle, _) = h2c(up.http, &[]).await;
    h2_idle
        .write_all(&get_headers(1, "shop.example.com", "/quick"))
        .await
        .unwrap();
    let (mut answered, mut goaway) = (false, false);
    while let Some(f) = read_frame(&mut h2_idle).await {
        answered |= f.kind == DATA && f.stream == 1 && f.flags & END_STREAM != 0;
        goaway |= f.kind == GOAWAY && answered;
        if f.kind == PING && f.flags & ACK == 0 {
            h2_idle
                .write_all(&frame(PING, ACK, 0, &f.payload))
                .await
                .unwrap();
        }
    }
    assert!(answered && goaway, "h2c: answered, then GOAWAY and closed");

    // Past the keep-alive timeout (the idle ones are closed), the busy ones still work.
    tunnel.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    tunnel.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping", "the tunnel is open");
    release.send_replace(true);
    let rest = long.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"12345", "the long answer finished");
    let mut data = Vec::new();
    while let Some(f) = read_frame(&mut stream_open).await {
        if f.kind == DATA && f.stream == 1 {
            data.extend_from_slice(&f.payload);
            if f.flags & END_STREAM != 0 {
                break;
            }
        }
    }
    assert_eq!(&data[..], b"start12345", "the h2c stream finished");
    // Closed here, or shutdown would wait for it (a tunnel is closed at the drain's end).
    drop(tunnel);
    up.stop().await;
}

/// An h2c upstream that records the SETTINGS and the connection WINDOW_UPDATE the gateway
/// sends it, and answers nothing.
async fn settings_recorder() -> (
    SocketAddr,
    tokio::sync::mpsc::Receiver<(Vec<(u16, u32)>, u32)>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut preface = [0u8; 24];
                if stream.read_exact(&mut preface).await.is_err() || preface != PREFACE {
                    return;
                }
                let _ = stream.write_all(&settings(&[])).await;
                let (mut pairs, mut window) = (None, None);
                while let Some(f) = read_frame(&mut stream).await {
                    if f.kind == SETTINGS && f.flags & ACK == 0 {
                        pairs = Some(
                            f.payload
                                .chunks(6)
                                .map(|c| {
                                    (
                                        u16::from_be_bytes([c[0], c[1]]),
                                        u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                                    )
                                })
                                .collect::<Vec<_>>(),
                        );
                    }
                    if f.kind == WINDOW_UPDATE && f.stream == 0 {
                        let p = &f.payload;
                        window = Some(u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
                    }
                    if f.kind == HEADERS {
                        let _ = tx
                            .send((pairs.take().unwrap_or_default(), window.unwrap_or(0)))
                            .await;
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_windows_and_streams_are_bounded_towards_clients_and_upstreams() {
    let (release, released) = tokio::sync::watch::channel(false);
    let web = held_upstream(released).await;
    let (grpc, mut recorded) = settings_recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let up = quiet_up(
        dir.path(),
        &[
            ("web.yaml", service("web", web.port(), None)),
            (
                "grpc.yaml",
                service("grpc", grpc.port(), Some("kubernetes.io/h2c")),
            ),
            ("ingress.yaml", ingress(&[("/", "web"), ("/grpc", "grpc")])),
        ],
    )
    .await;

    // Towards clients: what the gateway advertises, and its connection window.
    let window = 1000;
    let (mut client, advertised) = h2c(up.http, &[(SETTINGS_INITIAL_WINDOW_SIZE, window)]).await;
    assert!(
        advertised.contains(&(SETTINGS_MAX_CONCURRENT_STREAMS, 128)),
        "{advertised:?}"
    );
    assert!(
        advertised.contains(&(SETTINGS_INITIAL_WINDOW_SIZE, 64 * 1024)),
        "{advertised:?}"
    );
    // The server sends nothing past the client's window: a 1 MiB answer stops at 1000
    // bytes, as a PING answered after them shows.
    client
        .write_all(&get_headers(1, "shop.example.com", "/big"))
        .await
        .unwrap();
    let mut received = 0;
    let mut connection_window = None;
    while received < window as usize {
        let f = read_frame(&mut client)
            .await
            .expect("DATA up to the window");
        if f.kind == DATA && f.stream == 1 {
            received += f.payload.len();
        }
        if f.kind == WINDOW_UPDATE && f.stream == 0 {
            let p = &f.payload;
            connection_window = Some(u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
        }
    }
    client
        .write_all(&frame(PING, 0, 0, b"12345678"))
        .await
        .unwrap();
    loop {
        let f = read_frame(&mut client).await.expect("the PING's answer");
        if f.kind == DATA {
            received += f.payload.len();
        }
        if f.kind == PING && f.flags & ACK != 0 {
            break;
        }
    }
    assert_eq!(received, window as usize, "nothing past the window");
    assert_eq!(
        connection_window,
        Some(1024 * 1024 - 65_535),
        "a 1 MiB connection window"
    );

    // An HTTP/2 client's request reads an HTTP/1.1 upstream 16 KiB at a time: a larger
    // answer head is refused (nginx's proxy_buffer_size refuses one over 4 or 8 KiB).
    let stream = TcpStream::connect(up.http).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://shop.example.com/fat-head")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(h2.send_request(req).await.unwrap().status(), 502);
    let req = Request::get("http://shop.example.com/quick")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(h2.send_request(req).await.unwrap().status(), 200);

    // Towards an h2c upstream: the gateway's windows as a client.
    let stream = TcpStream::connect(up.http).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/grpc")
        .header("host", "shop.example.com")
        .body(Empty::<Bytes>::new())
        .unwrap();
    tokio::spawn(sender.send_request(req));
    let (pairs, connection_window) = tokio::time::timeout(DEADLINE, recorded.recv())
        .await
        .expect("the upstream gets a request")
        .unwrap();
    assert!(
        pairs.contains(&(SETTINGS_INITIAL_WINDOW_SIZE, 64 * 1024)),
        "the gateway's window as a client: {pairs:?}"
    );
    assert_eq!(connection_window, 1024 * 1024 - 65_535);
    release.send_replace(true);
    // The stalled stream would hold the drain for its whole grace period.
    drop(client);
    up.stop().await;
}
