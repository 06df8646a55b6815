//! Two sidecars on loopback, a client side and a server side, with a fixed destination answer:
//! what the app behind the server side sees, and what is refused.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use ferry_model::mesh::WorkloadId;
use ferry_model::proto::{self, destination_update::Update};
use ferry_proxy::BalancerConfig;
use ferry_runtime::{Shutdown, ShutdownTrigger};
use ferry_testing::{DEADLINE, eventually};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::authorize::{AllowAll, Authorize};
use crate::detect::Detection;
use crate::discover::{Answer, Discover, compile};
use crate::test_pki::{Ca, id, watch_of};
use crate::upstream::Identities;
use crate::{Config, InboundConfig, MtlsMode, OutboundConfig, Parts, Sidecar};

/// The Service address the client app dials (never connected to: the client sidecar has it
/// as the original destination of every connection).
const SERVICE: &str = "10.96.0.10:80";

/// Answers every authority with one Service whose endpoints are `endpoints`.
#[derive(Debug)]
struct Fixed(HashMap<String, Answer>);

impl Discover for Fixed {
    fn get(&self, authority: &str) -> watch::Receiver<Answer> {
        let answer = self
            .0
            .get(authority)
            .cloned()
            .unwrap_or_else(|| Answer::NotService(format!("no Service at {authority}")));
        watch::channel(answer).1
    }
}

fn fixed(
    endpoints: &[(SocketAddr, Option<&WorkloadId>)],
    app_protocol: Option<&str>,
) -> (Arc<Fixed>, Arc<Identities>) {
    let identities = Arc::new(Identities::default());
    let update = proto::DestinationUpdate {
        version: 1,
        update: Some(Update::Endpoints(proto::DestinationEndpoints {
            port: 80,
            app_protocol: app_protocol.map(str::to_owned),
            endpoints: endpoints
                .iter()
                .map(|(addr, id)| proto::DestinationEndpoint {
                    address: match addr.ip() {
                        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
                        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
                    },
                    port: u32::from(addr.port()),
                    ready: true,
                    identity: id.map(ToString::to_string),
                    meshed: id.is_some(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })),
    };
    let answer = compile(&update, None, &BalancerConfig::default());
    if let Answer::Service(s) = &answer {
        for e in &s.endpoints {
            if let Some(id) = &e.identity {
                identities.add(e.addr, id);
            }
        }
    }
    (
        Arc::new(Fixed(HashMap::from([(SERVICE.to_owned(), answer)]))),
        identities,
    )
}

/// An HTTP/1 app that answers with what it was told of the client.
async fn echo_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let header = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_owned()
                        };
                        let text = format!(
                            "xfcc={} host={} forged={}",
                            header("x-forwarded-client-cert"),
                            header("host"),
                            header("l5d-client-id")
                        );
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(text))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A server-first app: writes a banner at once, then echoes.
async fn banner_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                stream.write_all(b"220 ready\r\n").await.unwrap();
                let mut buf = [0; 64];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

struct Running {
    addrs: crate::Addrs,
    _trigger: ShutdownTrigger,
    _credentials: watch::Sender<Option<Arc<ferry_runtime::identity::Credentials>>>,
}

async fn sidecar(
    credentials: watch::Sender<Option<Arc<ferry_runtime::identity::Credentials>>>,
    discover: Arc<dyn Discover>,
    identities: Arc<Identities>,
    authorize: Arc<dyn Authorize>,
    app_port: u16,
    mode: MtlsMode,
    server_first: bool,
) -> Running {
    let parts = (credentials, discover, identities, authorize);
    sidecar_with(parts, app_port, mode, server_first, |_| {}).await
}

/// What a test sidecar is given: its credentials, destinations, endpoint identities, policy.
type Given = (
    watch::Sender<Option<Arc<ferry_runtime::identity::Credentials>>>,
    Arc<dyn Discover>,
    Arc<Identities>,
    Arc<dyn Authorize>,
);

/// [`sidecar`], its config changed by `tweak` before it starts.
async fn sidecar_with(
    (credentials, discover, identities, authorize): Given,
    app_port: u16,
    mode: MtlsMode,
    server_first: bool,
    tweak: impl FnOnce(&mut Config),
) -> Running {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut inbound = InboundConfig::new(loopback);
    inbound.app_port = Some(app_port);
    inbound.mode = mode;
    if server_first {
        // The test apps listen on random ports: the banner one is listed as server-first.
        inbound.detection = Detection {
            opaque_ports: [app_port].into(),
            ..Detection::default()
        };
    }
    let mut outbound = OutboundConfig::new(loopback);
    outbound.target = Some(SERVICE.parse().unwrap());
    let config = Config {
        inbound,
        outbound,
        admin: loopback,
        app_health: crate::AppHealthConfig::default(),
    };
    let mut config = config;
    tweak(&mut config);
    let parts = Parts {
        credentials: credentials.subscribe(),
        discover,
        identities,
        authorize,
        registry: Registry::default(),
        report_expiry: true,
    };
    let sidecar = Sidecar::build(config, parts).await.unwrap();
    let addrs = sidecar.addrs().unwrap();
    let (trigger, shutdown): (ShutdownTrigger, Shutdown) = ferry_runtime::shutdown::channel();
    tokio::spawn(sidecar.run(shutdown));
    Running {
        addrs,
        _trigger: trigger,
        _credentials: credentials,
    }
}

/// An HTTP/1 GET through `addr`, with `headers`; the status and body.
async fn get(addr: SocketAddr, headers: &[(&str, &str)]) -> Result<(u16, String), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = http::Request::get("/items").header("host", "api.shop.svc");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = send
        .send_request(req.body(http_body_util::Empty::<Bytes>::new()).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[derive(Debug)]
struct DenyPath(&'static str);

impl Authorize for DenyPath {
    fn authorize(
        &self,
        _: Option<&WorkloadId>,
        _: u16,
        http: Option<(&http::Method, &str)>,
    ) -> bool {
        http.is_none_or(|(_, path)| path != self.0)
    }
}

/// The server side for the app on `app_port`, with identity `api` (`shop`), allowing all.
async fn server_side(ca: &Ca, app_port: u16, mode: MtlsMode) -> Running {
    let (tx, _) = watch_of(ca.issue(&id("shop", "api")));
    let (none, ids) = fixed(&[], None);
    sidecar(tx, none, ids, Arc::new(AllowAll), app_port, mode, false).await
}

/// The server side for `app` with identity `api`, and the client side pointed at it.
async fn pair(
    ca: &Ca,
    app: SocketAddr,
    expected: &WorkloadId,
    mode: MtlsMode,
    authorize: Arc<dyn Authorize>,
    server_first: bool,
) -> (Running, Running) {
    let (api, web) = (id("shop", "api"), id("shop", "web"));
    let (tx, _) = watch_of(ca.issue(&api));
    let (none, ids) = fixed(&[], None);
    let server = sidecar(tx, none, ids, authorize, app.port(), mode, server_first).await;
    let (discover, identities) = fixed(&[(server.addrs.inbound, Some(expected))], None);
    let (tx, _) = watch_of(ca.issue(&web));
    let client = sidecar(
        tx,
        discover,
        identities,
        Arc::new(AllowAll),
        1,
        MtlsMode::Permissive,
        false,
    )
    .await;
    (client, server)
}

#[tokio::test]
async fn http_goes_through_both_sidecars_over_mtls_with_the_peer_identity() {
    let ca = Ca::new();
    let app = echo_app().await;
    let (client, _server) = pair(
        &ca,
        app,
        &id("shop", "api"),
        MtlsMode::Strict,
        Arc::new(AllowAll),
        false,
    )
    .await;
    let (status, body) = get(
        client.addrs.outbound,
        &[
            ("l5d-client-id", "forged"),
            (
                "x-forwarded-client-cert",
                "By=x;URI=spiffe://evil/ns/a/sa/b",
            ),
        ],
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "xfcc=By=spiffe://cluster.local/ns/shop/sa/api;URI=spiffe://cluster.local/ns/shop/sa/web host=api.shop.svc forged=-"
    );
}

#[tokio::test]
async fn a_server_with_the_wrong_identity_is_refused() {
    let ca = Ca::new();
    let app = echo_app().await;
    let (client, _server) = pair(
        &ca,
        app,
        &id("shop", "payments"),
        MtlsMode::Strict,
        Arc::new(AllowAll),
        false,
    )
    .await;
    let (status, _) = get(client.addrs.outbound, &[]).await.unwrap();
    assert_eq!(status, 502);
}

#[tokio::test]
async fn strict_refuses_plaintext_and_permissive_takes_it_without_xfcc() {
    let ca = Ca::new();
    let app = echo_app().await;
    let (_c, strict) = pair(
        &ca,
        app,
        &id("shop", "api"),
        MtlsMode::Strict,
        Arc::new(AllowAll),
        false,
    )
    .await;
    assert!(
        get(strict.addrs.inbound, &[]).await.is_err(),
        "closed without an answer"
    );
    let (_c, permissive) = pair(
        &ca,
        app,
        &id("shop", "api"),
        MtlsMode::Permissive,
        Arc::new(AllowAll),
        false,
    )
    .await;
    let (status, body) = get(
        permissive.addrs.inbound,
        &[("x-forwarded-client-cert", "By=x;URI=forged")],
    )
    .await
    .unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "xfcc=- host=api.shop.svc forged=-")
    );
}

#[tokio::test]
async fn the_mode_of_the_policy_applies_from_the_next_connection() {
    let (ca, app) = (Ca::new(), echo_app().await);
    let policy = Arc::new(crate::InboundPolicy::new(MtlsMode::Permissive));
    let api = id("shop", "api");
    let (_c, server) = pair(&ca, app, &api, MtlsMode::Permissive, policy.clone(), false).await;
    assert_eq!(get(server.addrs.inbound, &[]).await.unwrap().0, 200);
    let strict = proto::InboundPolicy {
        mtls_mode: proto::MtlsMode::Strict as i32,
        ..Default::default()
    };
    policy.apply(strict).unwrap();
    assert!(get(server.addrs.inbound, &[]).await.is_err(), "strict now");
}

#[tokio::test]
async fn the_authorization_hook_denies_with_403() {
    let ca = Ca::new();
    let app = echo_app().await;
    let (client, server) = pair(
        &ca,
        app,
        &id("shop", "api"),
        MtlsMode::Strict,
        Arc::new(DenyPath("/items")),
        false,
    )
    .await;
    let (status, _) = get(client.addrs.outbound, &[]).await.unwrap();
    assert_eq!(status, 403);
    let metrics = metrics_of(server.addrs.admin).await;
    assert!(
        metrics.contains(
            "ferry_sidecar_authz_decisions_total{direction=\"inbound\",outcome=\"deny_http\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_server_first_protocol_passes_through_both_sidecars() {
    let ca = Ca::new();
    let app = banner_app().await;
    let (client, _server) = pair(
        &ca,
        app,
        &id("shop", "api"),
        MtlsMode::Strict,
        Arc::new(AllowAll),
        true,
    )
    .await;
    // The client's side of an unlisted port waits at most the detection timeout, then the
    // banner must come without the client sending anything.
    let mut stream = TcpStream::connect(client.addrs.outbound).await.unwrap();
    let mut banner = [0; 11];
    stream.read_exact(&mut banner).await.unwrap();
    assert_eq!(&banner, b"220 ready\r\n");
    stream.write_all(b"HELO x\r\n").await.unwrap();
    let mut echo = [0; 8];
    stream.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"HELO x\r\n");
}

#[tokio::test]
async fn ready_only_once_credentials_are_held() {
    let (tx, _) = watch::channel(None);
    let (discover, identities) = fixed(&[], None);
    let running = sidecar(
        tx.clone(),
        discover,
        identities,
        Arc::new(AllowAll),
        1,
        MtlsMode::Permissive,
        false,
    )
    .await;
    assert_eq!(admin_status(running.addrs.admin, "/ready").await, 503);
    tx.send_replace(Some(Arc::new(Ca::new().issue(&id("shop", "api")))));
    eventually(DEADLINE, "/ready once credentials are held", || async {
        (admin_status(running.addrs.admin, "/ready").await == 200).then_some(())
    })
    .await;
}

async fn admin(addr: SocketAddr, path: &str) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "127.0.0.1")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let response = send.send_request(req).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn admin_status(addr: SocketAddr, path: &str) -> u16 {
    admin(addr, path).await.0
}

async fn metrics_of(addr: SocketAddr) -> String {
    admin(addr, "/metrics").await.1
}

#[tokio::test]
async fn a_request_to_an_endpoint_that_refuses_connections_is_retried_on_another() {
    let ca = Ca::new();
    let app = echo_app().await;
    let (api, web) = (id("shop", "api"), id("shop", "web"));
    let server = server_side(&ca, app.port(), MtlsMode::Strict).await;
    // A port nobody listens on any more.
    let gone = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (discover, identities) = fixed(
        &[(gone, Some(&api)), (server.addrs.inbound, Some(&api))],
        None,
    );
    let (tx, _) = watch_of(ca.issue(&web));
    let client = sidecar(
        tx,
        discover,
        identities,
        Arc::new(AllowAll),
        1,
        MtlsMode::Permissive,
        false,
    )
    .await;
    for _ in 0..10 {
        let (status, body) = get(client.addrs.outbound, &[]).await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
}

#[test]
fn an_opaque_app_protocol_or_port_name_skips_detection() {
    let service = |app_protocol: Option<&str>, port_name: &str| crate::discover::Service {
        name: "shop/db:5432".into(),
        app_protocol: app_protocol.map(str::to_owned),
        port_name: port_name.into(),
        endpoints: Vec::new(),
        balancer: Arc::new(ferry_proxy::Balancer::new(
            &[],
            &BalancerConfig::default(),
            std::time::Instant::now(),
        )),
    };
    assert!(crate::outbound::opaque_hint(&service(Some("mysql"), "")));
    assert!(crate::outbound::opaque_hint(&service(None, "tcp-db")));
    assert!(!crate::outbound::opaque_hint(&service(Some("http"), "web")));
    assert!(!crate::outbound::opaque_hint(&service(None, "")));
}

/// An h2c app (as a gRPC server) that answers with the XFCC it was given.
async fn h2c_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| {
                let xfcc = req
                    .headers()
                    .get("x-forwarded-client-cert")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned();
                async move { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(xfcc)))) }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    addr
}

#[tokio::test]
async fn h2_streams_on_one_connection_go_through_both_sidecars() {
    let ca = Ca::new();
    let app = h2c_app().await;
    let (client, _server) = pair(
        &ca,
        app,
        &id("shop", "api"),
        MtlsMode::Strict,
        Arc::new(AllowAll),
        false,
    )
    .await;
    let stream = TcpStream::connect(client.addrs.outbound).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let requests = (0..5).map(|i| {
        let mut send = send.clone();
        async move {
            let req = http::Request::post(format!("http://api.shop.svc/Echo/{i}"))
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap();
            let response = send.send_request(req).await.unwrap();
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.unwrap().to_bytes()
        }
    });
    for body in concurrently(requests).await {
        assert_eq!(
            body,
            "By=spiffe://cluster.local/ns/shop/sa/api;URI=spiffe://cluster.local/ns/shop/sa/web"
        );
    }
}

/// Runs the futures concurrently (streams of one h2 connection) and returns their outputs.
async fn concurrently<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

mod fast;
