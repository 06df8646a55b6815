//! The proxy over real sockets: backends on 127.0.0.1:0, each test's cluster IPs picked at random
//! in 127.2.0.0/16 so that tests running at once never want the same address.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ferry_model::{
    Cluster, ClusterKey, Endpoint, Protocol, Service, ServicePort, ServiceType, SessionAffinity,
    Snapshot, TargetPort,
};
use ferry_runtime::{ShutdownTrigger, SnapshotBus};
use ferry_testing::{DEADLINE, eventually};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use super::*;

fn random() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// A random address in `127.<first>.64-250.1-254`.
fn random_ip(first: u8) -> IpAddr {
    let r = random();
    IpAddr::V4(Ipv4Addr::new(
        127,
        first,
        64 + (r % 187) as u8,
        1 + ((r >> 8) % 254) as u8,
    ))
}

/// A cluster IP no other test uses (in all likelihood).
fn cluster_ip() -> IpAddr {
    random_ip(2)
}

/// A port below the ephemeral range.
fn random_port() -> u16 {
    20_000 + (random() % 12_000) as u16
}

// --- snapshots -------------------------------------------------------------------------------

/// A TCP Service with one port and its cluster of endpoints.
#[derive(Clone, Debug)]
pub(crate) struct Svc {
    pub name: &'static str,
    pub service_type: ServiceType,
    pub cluster_ips: Vec<IpAddr>,
    pub port: u16,
    pub node_port: Option<u16>,
    pub affinity: SessionAffinity,
    pub protocol: Protocol,
    /// Address and readiness.
    pub endpoints: Vec<(SocketAddr, bool)>,
}

impl Svc {
    pub fn new(name: &'static str, ip: IpAddr, port: u16, endpoints: &[SocketAddr]) -> Svc {
        Svc {
            name,
            service_type: ServiceType::ClusterIP,
            cluster_ips: vec![ip],
            port,
            node_port: None,
            affinity: SessionAffinity::None,
            protocol: Protocol::TCP,
            endpoints: endpoints.iter().map(|e| (*e, true)).collect(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.cluster_ips[0], self.port)
    }
}

pub(crate) fn snapshot(version: u64, services: &[Svc]) -> Snapshot {
    let mut snapshot = Snapshot {
        version,
        ..Snapshot::default()
    };
    for s in services {
        snapshot.services.push(Arc::new(Service {
            namespace: "test".into(),
            name: s.name.into(),
            service_type: s.service_type,
            cluster_ips: s.cluster_ips.clone(),
            headless: false,
            external_name: None,
            ports: vec![ServicePort {
                name: String::new(),
                port: s.port,
                protocol: s.protocol,
                app_protocol: None,
                target_port: TargetPort::Number(1),
                node_port: s.node_port,
            }],
            session_affinity: s.affinity,
            publish_not_ready_addresses: false,
            endpoints: Vec::new(),
        }));
        snapshot.clusters.push(Arc::new(Cluster {
            key: ClusterKey {
                namespace: "test".into(),
                service: s.name.into(),
                port: s.port,
                protocol: s.protocol,
            },
            port_name: String::new(),
            app_protocol: None,
            session_affinity: s.affinity,
            endpoints: s
                .endpoints
                .iter()
                .map(|(addr, ready)| Endpoint {
                    address: addr.ip(),
                    port: addr.port(),
                    ready: *ready,
                    serving: *ready,
                    terminating: false,
                    zone: None,
                })
                .collect(),
        }));
    }
    snapshot
        .services
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    snapshot.clusters.sort_by(|a, b| a.key.cmp(&b.key));
    snapshot.validate().expect("a valid test snapshot");
    snapshot
}

// --- backends and clients --------------------------------------------------------------------

/// A backend on 127.0.0.1:0 that greets each connection with `tag\n`, echoes what it reads and
/// closes its side once the client has closed its own.
async fn backend(tag: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                w.write_all(format!("{tag}\n").as_bytes()).await?;
                tokio::io::copy(&mut r, &mut w).await?;
                w.shutdown().await
            });
        }
    });
    addr
}

/// An address nothing listens on.
async fn dead_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Connects from `source` (an address of 127/8 as the client IP) to `addr`.
async fn connect_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

/// Reads the greeting line of a backend.
async fn tag(stream: &mut TcpStream) -> String {
    let mut line = String::new();
    let mut reader = BufReader::new(stream);
    tokio::time::timeout(DEADLINE, reader.read_line(&mut line))
        .await
        .expect("a greeting in time")
        .expect("a greeting");
    assert!(reader.buffer().is_empty(), "nothing past the greeting yet");
    line.trim_end().to_owned()
}

/// Connects and returns the greeting of the backend it reached.
async fn greeting_from(source: IpAddr, addr: SocketAddr) -> String {
    let mut stream = connect_from(source, addr).await.expect("connects");
    tag(&mut stream).await
}

/// Sends `data`, closes the write side and reads the rest: the echo, then end of stream.
async fn echo(stream: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    stream.write_all(data).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut back))
        .await
        .expect("the echo in time")
        .expect("the echo");
    back
}

fn client() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

// --- the proxy -------------------------------------------------------------------------------

struct Running {
    bus: SnapshotBus,
    handle: Handle,
    registry: Registry,
    trigger: ShutdownTrigger,
    task: JoinHandle<()>,
}

async fn start(config: Config, first: Snapshot) -> Running {
    let bus = SnapshotBus::new();
    let subscription = bus.subscribe("l4");
    let version = first.version;
    assert!(bus.publish(first));
    let mut registry = Registry::default();
    let proxy = ServiceProxy::build(config, subscription, &mut registry)
        .await
        .unwrap();
    let handle = proxy.handle();
    assert_eq!(handle.version(), version);
    assert!(bus.ready(), "served once built");
    let (trigger, shutdown) = ferry_runtime::shutdown::channel();
    let task = tokio::spawn(proxy.run(shutdown));
    Running {
        bus,
        handle,
        registry,
        trigger,
        task,
    }
}

impl Running {
    /// Publishes and waits until the proxy serves it.
    async fn publish(&self, snapshot: Snapshot) {
        let version = snapshot.version;
        assert!(self.bus.publish(snapshot));
        let handle = &self.handle;
        eventually(DEADLINE, "the new snapshot served", || async move {
            (handle.version() == version).then_some(())
        })
        .await;
        assert!(self.bus.ready());
    }

    fn listening(&self) -> HashSet<SocketAddr> {
        self.handle.listening().into_iter().collect()
    }

    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text
    }

    /// The value of one metric line, `0` when absent.
    fn metric(&self, line_start: &str) -> u64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(line_start))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("stops in time")
            .unwrap();
    }
}

// --- tests ------------------------------------------------------------------------------------

#[tokio::test]
async fn forwards_both_ways_and_passes_half_closes_on() {
    let web = Svc::new(
        "web",
        cluster_ip(),
        random_port(),
        &[backend("web-0").await],
    );
    let p = start(Config::default(), snapshot(1, std::slice::from_ref(&web))).await;
    assert_eq!(p.handle.listening(), vec![web.addr()]);

    // The client closes first: the backend sees the end, finishes the echo, then closes.
    let mut stream = TcpStream::connect(web.addr()).await.unwrap();
    assert_eq!(tag(&mut stream).await, "web-0");
    let data = vec![7u8; 300_000];
    assert_eq!(echo(&mut stream, &data).await, data);

    // The server closes first: the client reads the end, and can still send.
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let early = Svc::new(
        "early",
        cluster_ip(),
        random_port(),
        &[server.local_addr().unwrap()],
    );
    p.publish(snapshot(2, &[web.clone(), early.clone()])).await;
    let (got, received) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = server.accept().await.unwrap();
        s.write_all(b"bye").await.unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        let _ = got.send(rest);
    });
    let mut stream = TcpStream::connect(early.addr()).await.unwrap();
    let mut first = Vec::new();
    stream.read_to_end(&mut first).await.unwrap();
    assert_eq!(first, b"bye");
    stream.write_all(b"still here").await.unwrap();
    stream.shutdown().await.unwrap();
    let rest = tokio::time::timeout(DEADLINE, received)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest, b"still here");

    let forwarded = format!(
        "ferry_l4_connections_total{{service=\"test/web:{}\",result=\"forwarded\"}}",
        web.port
    );
    assert_eq!(p.metric(&forwarded), 1);
    let sent = format!(
        "ferry_l4_sent_bytes_total{{service=\"test/web:{}\"}}",
        web.port
    );
    assert_eq!(p.metric(&sent), 300_000 + "web-0\n".len() as u64);
    let received = format!(
        "ferry_l4_received_bytes_total{{service=\"test/web:{}\"}}",
        web.port
    );
    assert_eq!(p.metric(&received), 300_000);
    eventually(DEADLINE, "no connection open", || async {
        (p.metric("ferry_l4_open_connections ") == 0).then_some(())
    })
    .await;
    p.stop().await;
}

async fn three_backends() -> Vec<SocketAddr> {
    vec![backend("a").await, backend("b").await, backend("c").await]
}

#[tokio::test]
async fn round_robin_takes_each_endpoint_in_turn() {
    let svc = Svc::new("rr", cluster_ip(), random_port(), &three_backends().await);
    let config = Config {
        balance: Balance::RoundRobin,
        ..Config::default()
    };
    let p = start(config, snapshot(1, std::slice::from_ref(&svc))).await;
    let mut counts = HashMap::new();
    for _ in 0..9 {
        *counts
            .entry(greeting_from(client(), svc.addr()).await)
            .or_insert(0) += 1;
    }
    assert_eq!(
        counts,
        HashMap::from([("a".into(), 3), ("b".into(), 3), ("c".into(), 3)])
    );
    p.stop().await;
}

#[tokio::test]
async fn random_spreads_over_every_endpoint() {
    let svc = Svc::new(
        "random",
        cluster_ip(),
        random_port(),
        &three_backends().await,
    );
    let p = start(Config::default(), snapshot(1, std::slice::from_ref(&svc))).await;
    let mut seen = HashSet::new();
    // Missing one of three in 60 tries: 3 × (2/3)^60 ≈ 1e-10.
    for _ in 0..60 {
        seen.insert(greeting_from(client(), svc.addr()).await);
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    p.stop().await;
}

#[tokio::test]
async fn client_ip_affinity_sticks_then_expires() {
    let mut svc = Svc::new(
        "sticky",
        cluster_ip(),
        random_port(),
        &three_backends().await,
    );
    svc.affinity = SessionAffinity::ClientIP { timeout_seconds: 1 };
    // In turn, so that who gets what is certain: only unremembered clients move the turn.
    let config = Config {
        balance: Balance::RoundRobin,
        ..Config::default()
    };
    let p = start(config, snapshot(1, std::slice::from_ref(&svc))).await;
    let (alice, bob) = (random_ip(3), random_ip(4));
    let first = greeting_from(alice, svc.addr()).await;
    for _ in 0..5 {
        assert_eq!(greeting_from(alice, svc.addr()).await, first);
    }
    let second = greeting_from(bob, svc.addr()).await;
    assert_ne!(second, first, "a new client takes the next turn");
    assert_eq!(greeting_from(alice, svc.addr()).await, first);
    assert_eq!(greeting_from(bob, svc.addr()).await, second);
    // The timeout runs from the last connection; waiting past it is what is under test.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let third = greeting_from(alice, svc.addr()).await;
    assert!(third != first && third != second, "expired: balanced again");
    assert_eq!(greeting_from(alice, svc.addr()).await, third);
    p.stop().await;
}

#[tokio::test]
async fn a_dead_endpoint_is_skipped_and_no_client_fails() {
    let live = [backend("live-0").await, backend("live-1").await];
    let dead = dead_port().await;
    let svc = Svc::new(
        "flaky",
        cluster_ip(),
        random_port(),
        &[live[0], dead, live[1]],
    );
    let p = start(Config::default(), snapshot(1, std::slice::from_ref(&svc))).await;
    for _ in 0..30 {
        let tag = greeting_from(client(), svc.addr()).await;
        assert!(tag.starts_with("live-"), "{tag}");
    }
    let label = format!("service=\"test/flaky:{}\"", svc.port);
    assert_eq!(
        p.metric(&format!(
            "ferry_l4_connections_total{{{label},result=\"forwarded\"}}"
        )),
        30
    );
    assert_eq!(
        p.metric(&format!(
            "ferry_l4_connections_total{{{label},result=\"failed\"}}"
        )),
        0
    );
    // 30 random first picks all missing the dead one: (2/3)^30 ≈ 5e-6.
    assert!(
        p.metric(&format!(
            "ferry_l4_endpoint_connect_errors_total{{{label}}}"
        )) > 0
    );

    // With every endpoint dead the client's connection is accepted, then reset.
    let gone = Svc::new("gone", cluster_ip(), random_port(), &[dead]);
    p.publish(snapshot(2, &[svc, gone.clone()])).await;
    let mut stream = TcpStream::connect(gone.addr()).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(read.is_err() || buf.is_empty(), "{read:?}");
    let label = format!("service=\"test/gone:{}\"", gone.port);
    assert_eq!(
        p.metric(&format!(
            "ferry_l4_connections_total{{{label},result=\"failed\"}}"
        )),
        1
    );
    p.stop().await;
}

async fn refused(addr: SocketAddr) -> bool {
    matches!(TcpStream::connect(addr).await, Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

#[tokio::test]
async fn no_ready_endpoint_refuses_until_one_is_ready() {
    let be = backend("back").await;
    let mut svc = Svc::new("waiting", cluster_ip(), random_port(), &[be]);
    svc.endpoints[0].1 = false;
    let p = start(Config::default(), snapshot(1, std::slice::from_ref(&svc))).await;
    assert!(p.handle.listening().is_empty());
    assert!(
        refused(svc.addr()).await,
        "ECONNREFUSED, as kube-proxy's REJECT"
    );

    svc.endpoints[0].1 = true;
    p.publish(snapshot(2, std::slice::from_ref(&svc))).await;
    assert_eq!(p.handle.listening(), vec![svc.addr()]);
    let mut open = TcpStream::connect(svc.addr()).await.unwrap();
    assert_eq!(tag(&mut open).await, "back");

    // Not ready again: refused again, and the connection in progress goes on.
    svc.endpoints[0].1 = false;
    p.publish(snapshot(3, std::slice::from_ref(&svc))).await;
    assert!(p.handle.listening().is_empty());
    assert!(refused(svc.addr()).await);
    assert_eq!(echo(&mut open, b"on").await, b"on");
    p.stop().await;
}

#[tokio::test]
async fn a_snapshot_change_keeps_established_connections() {
    let old = Svc::new("old", cluster_ip(), random_port(), &[backend("old").await]);
    let stay = Svc::new(
        "stay",
        cluster_ip(),
        random_port(),
        &[backend("stay").await],
    );
    let p = start(Config::default(), snapshot(1, &[old.clone(), stay.clone()])).await;
    assert_eq!(p.listening(), HashSet::from([old.addr(), stay.addr()]));
    let mut to_old = TcpStream::connect(old.addr()).await.unwrap();
    assert_eq!(tag(&mut to_old).await, "old");
    let mut to_stay = TcpStream::connect(stay.addr()).await.unwrap();
    assert_eq!(tag(&mut to_stay).await, "stay");

    let new = Svc::new("new", cluster_ip(), random_port(), &[backend("new").await]);
    // `stay` moves to another endpoint: its listener stays, new connections go there.
    let mut moved = stay.clone();
    moved.endpoints = vec![(backend("moved").await, true)];
    p.publish(snapshot(2, &[moved.clone(), new.clone()])).await;
    assert_eq!(p.listening(), HashSet::from([stay.addr(), new.addr()]));
    assert!(refused(old.addr()).await);
    assert_eq!(greeting_from(client(), new.addr()).await, "new");
    assert_eq!(greeting_from(client(), stay.addr()).await, "moved");

    // Both connections made before the change still work, both ways.
    to_old.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    to_old.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    assert_eq!(echo(&mut to_old, b"more").await, b"more");
    assert_eq!(echo(&mut to_stay, b"too").await, b"too");

    // And the removed Service comes back on its old address.
    p.publish(snapshot(3, &[old.clone(), moved, new])).await;
    assert_eq!(greeting_from(client(), old.addr()).await, "old");
    p.stop().await;
}

#[tokio::test]
async fn node_ports_listen_on_the_node_host() {
    let node_host = random_ip(5);
    let config = Config {
        node_host,
        ..Config::default()
    };
    let be = backend("np").await;
    let mut np = Svc::new("np", cluster_ip(), random_port(), &[be]);
    np.service_type = ServiceType::NodePort;
    np.node_port = Some(30_000 + (random() % 2768) as u16);
    let mut lb = Svc::new("lb", cluster_ip(), random_port(), &[be]);
    lb.service_type = ServiceType::LoadBalancer;
    lb.node_port = Some(np.node_port.unwrap() + 1);
    // A node port on a ClusterIP Service (left from a type change) is not served.
    let mut plain = Svc::new("plain", cluster_ip(), random_port(), &[be]);
    plain.node_port = Some(np.node_port.unwrap() + 2);
    let p = start(
        config,
        snapshot(1, &[np.clone(), lb.clone(), plain.clone()]),
    )
    .await;
    let node = |s: &Svc| SocketAddr::new(node_host, s.node_port.unwrap());
    assert_eq!(
        p.listening(),
        HashSet::from([np.addr(), node(&np), lb.addr(), node(&lb), plain.addr()])
    );
    assert_eq!(greeting_from(client(), node(&np)).await, "np");
    assert_eq!(greeting_from(client(), node(&lb)).await, "np");
    assert!(refused(node(&plain)).await);
    p.stop().await;
}

#[tokio::test]
async fn only_cluster_ips_in_the_service_range_are_served() {
    let be = backend("in").await;
    let port = random_port();
    let inside = Svc::new("inside", cluster_ip(), port, &[be]);
    let outside = Svc::new("outside", random_ip(6), port, &[be]);
    let mut v6 = Svc::new("v6", cluster_ip(), random_port(), &[be]);
    v6.cluster_ips.push("::1".parse().unwrap());
    let mut udp = Svc::new("udp", cluster_ip(), random_port(), &[be]);
    udp.protocol = Protocol::UDP;
    let services = [inside.clone(), outside, v6.clone(), udp];
    let p = start(Config::default(), snapshot(1, &services)).await;
    assert_eq!(
        p.listening(),
        HashSet::from([inside.addr(), v6.addr()]),
        "no IPv6 range given"
    );
    p.stop().await;

    // With an IPv6 range, the IPv6 cluster IP too (where this machine has IPv6 loopback).
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        let config = Config {
            service_cidrs: vec!["127.2.0.0/16".parse().unwrap(), "::1/128".parse().unwrap()],
            ..Config::default()
        };
        let p = start(config, snapshot(1, &services)).await;
        let v6_addr = SocketAddr::new(v6.cluster_ips[1], v6.port);
        assert!(p.listening().contains(&v6_addr));
        assert_eq!(greeting_from_v6(v6_addr).await, "in");
        p.stop().await;
    }
}

async fn greeting_from_v6(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    tag(&mut stream).await
}

#[tokio::test]
async fn an_address_in_use_is_counted_and_bound_once_free() {
    let be = backend("busy").await;
    let busy = Svc::new("busy", cluster_ip(), random_port(), &[be]);
    let fine = Svc::new("fine", cluster_ip(), random_port(), &[be]);
    let squatter = std::net::TcpListener::bind(busy.addr()).unwrap();
    let p = start(
        Config::default(),
        snapshot(1, &[busy.clone(), fine.clone()]),
    )
    .await;
    assert_eq!(
        p.handle.listening(),
        vec![fine.addr()],
        "the rest is served"
    );
    assert!(p.metric("ferry_l4_bind_errors_total ") >= 1);
    assert_eq!(p.metric("ferry_l4_unbound_addresses "), 1);
    assert_eq!(p.metric("ferry_l4_listeners "), 1);
    assert_eq!(greeting_from(client(), fine.addr()).await, "busy");

    drop(squatter);
    p.publish(snapshot(2, &[busy.clone(), fine.clone()])).await;
    assert_eq!(p.listening(), HashSet::from([busy.addr(), fine.addr()]));
    assert_eq!(greeting_from(client(), busy.addr()).await, "busy");
    assert_eq!(p.metric("ferry_l4_unbound_addresses "), 0);
    p.stop().await;
}

#[tokio::test]
async fn shutdown_stops_listening_then_drains() {
    let svc = Svc::new("drain", cluster_ip(), random_port(), &[backend("d").await]);
    let config = Config {
        drain_timeout: Duration::from_millis(1500),
        ..Config::default()
    };
    let p = start(config, snapshot(1, std::slice::from_ref(&svc))).await;
    let mut open = TcpStream::connect(svc.addr()).await.unwrap();
    assert_eq!(tag(&mut open).await, "d");
    let Running {
        handle,
        trigger,
        task,
        ..
    } = p;
    trigger.trigger();
    eventually(DEADLINE, "listeners closed", || async {
        handle.listening().is_empty().then_some(())
    })
    .await;
    assert!(refused(svc.addr()).await);
    // Within the drain the connection still works…
    open.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    open.read_exact(&mut one).await.unwrap();
    // …and past it, it is closed.
    tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
    let mut rest = Vec::new();
    let read = open.read_to_end(&mut rest).await;
    assert!(read.is_err() || rest.is_empty(), "{read:?}");
}

#[test]
fn balance_parses_from_the_command_line() {
    assert_eq!("random".parse::<Balance>().unwrap(), Balance::Random);
    assert_eq!(
        "round-robin".parse::<Balance>().unwrap(),
        Balance::RoundRobin
    );
    assert_eq!(
        "rr".parse::<Balance>().unwrap_err().to_string(),
        "balance \"rr\": expected random or round-robin"
    );
}

#[tokio::test]
async fn a_zero_connect_timeout_is_refused() {
    let bus = SnapshotBus::new();
    let config = Config {
        connect_timeout: Duration::ZERO,
        ..Config::default()
    };
    let err = ServiceProxy::build(config, bus.subscribe("l4"), &mut Registry::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the L4 connect timeout must be more than zero"
    );
}

#[tokio::test]
async fn a_connection_idle_for_the_idle_timeout_is_closed() {
    let web = Svc::new(
        "web",
        cluster_ip(),
        random_port(),
        &[backend("web-0").await],
    );
    let config = Config {
        idle_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let p = start(config, snapshot(1, std::slice::from_ref(&web))).await;
    // Server-first: the client says nothing and still hears the backend (no first-byte
    // deadline); then nothing moves either way, and the proxy closes both sides.
    let mut stream = TcpStream::connect(web.addr()).await.unwrap();
    assert_eq!(tag(&mut stream).await, "web-0");
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest))
        .await
        .expect("the idle connection is closed")
        .unwrap();
    assert!(rest.is_empty());
    // What moved before is counted, though the copy did not end by itself.
    let sent = format!(
        "ferry_l4_sent_bytes_total{{service=\"test/web:{}\"}}",
        web.port
    );
    eventually(DEADLINE, "the bytes counted", || async {
        (p.metric(&sent) == "web-0\n".len() as u64).then_some(())
    })
    .await;
    p.stop().await;
}

#[tokio::test]
async fn a_zero_idle_timeout_is_refused() {
    let bus = SnapshotBus::new();
    let config = Config {
        idle_timeout: Duration::ZERO,
        ..Config::default()
    };
    let err = ServiceProxy::build(config, bus.subscribe("l4"), &mut Registry::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the L4 idle timeout must be more than zero"
    );
}

/// Connections waiting in the kernel's accept queue of the IPv4 listener at `addr` (the
/// `rx_queue` /proc/net/tcp shows for a listening socket); `None` when it cannot be read.
fn accept_queue(addr: SocketAddr) -> Option<u64> {
    let IpAddr::V4(ip) = addr.ip() else {
        return None;
    };
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(ip.octets()),
        addr.port()
    );
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx_queue:rx_queue ...; 0A is LISTEN.
        if fields.get(1) != Some(&local.as_str()) || fields.get(3) != Some(&"0A") {
            return None;
        }
        let (_, rx) = fields.get(4)?.split_once(':')?;
        u64::from_str_radix(rx, 16).ok()
    })
}

#[tokio::test]
async fn at_the_cap_a_listener_stops_accepting_until_a_connection_ends() {
    let svc = Svc::new(
        "capped",
        cluster_ip(),
        random_port(),
        &[backend("cap").await],
    );
    let config = Config {
        max_connections: 2,
        ..Config::default()
    };
    let p = start(config, snapshot(1, std::slice::from_ref(&svc))).await;
    let mut a = TcpStream::connect(svc.addr()).await.unwrap();
    assert_eq!(tag(&mut a).await, "cap");
    let mut b = TcpStream::connect(svc.addr()).await.unwrap();
    assert_eq!(tag(&mut b).await, "cap");
    assert_eq!(p.metric("ferry_l4_open_connections "), 2);

    // The third completes its handshake in the kernel and waits there, not accepted: nothing
    // reaches it during a quiet spell in which an accepting listener would have forwarded it,
    // and the kernel still holds it in the listener's accept queue afterwards.
    let mut c = TcpStream::connect(svc.addr()).await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(300), c.peek(&mut [0u8; 1])).await;
    assert!(quiet.is_err(), "forwarded past the cap: {quiet:?}");
    if std::fs::metadata("/proc/net/tcp").is_ok() {
        eventually(DEADLINE, "the third connection in the backlog", || async {
            (accept_queue(svc.addr()) == Some(1)).then_some(())
        })
        .await;
    } else {
        eprintln!("skipping the backlog check: no /proc/net/tcp to read it from");
    }
    assert_eq!(p.metric("ferry_l4_open_connections "), 2);

    // One ends: the waiting one is accepted and forwarded.
    drop(a);
    assert_eq!(tag(&mut c).await, "cap");
    assert_eq!(echo(&mut c, b"hello").await, b"hello");
    assert_eq!(echo(&mut b, b"still").await, b"still");
    assert_eq!(
        p.metric(&format!(
            "ferry_l4_connections_total{{service=\"test/capped:{}\",result=\"forwarded\"}}",
            svc.port
        )),
        3
    );
    p.stop().await;
}

#[tokio::test]
async fn a_zero_connection_cap_is_refused() {
    let bus = SnapshotBus::new();
    let config = Config {
        max_connections: 0,
        ..Config::default()
    };
    let err = ServiceProxy::build(config, bus.subscribe("l4"), &mut Registry::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the L4 connection cap (max connections) must be at least 1"
    );
}
