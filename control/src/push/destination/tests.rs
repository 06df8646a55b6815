//! The per-destination and per-workload answers computed from a snapshot, and their streams.

use ferry_model::proto::Role;
use ferry_model::{
    Cluster, Endpoint, ServicePort, ServiceType, SessionAffinity, TargetPort, TargetRef,
};
use ferry_runtime::StatusBoard;
use ferry_testing::{DEADLINE, eventually};
use prometheus_client::registry::Registry;
use prost::Message as _;
use std::sync::Arc;

use super::*;

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A Service with one TCP port `port` → `target`, a cluster IP, and one endpoint per
/// `(address, ready, Pod, ServiceAccount)`, with its cluster.
pub(crate) fn service(
    namespace: &str,
    name: &str,
    cluster_ip: &str,
    port: u16,
    target: u16,
    endpoints: &[(&str, bool, &str, Option<&str>)],
) -> (Service, Cluster) {
    let service_port = ServicePort {
        name: "http".to_owned(),
        port,
        protocol: Protocol::TCP,
        app_protocol: Some("http".to_owned()),
        target_port: TargetPort::Number(target),
        node_port: None,
    };
    let mut service_endpoints: Vec<ServiceEndpoint> = endpoints
        .iter()
        .map(|(address, ready, pod, sa)| ServiceEndpoint {
            address: ip(address),
            ready: *ready,
            serving: *ready,
            terminating: false,
            hostname: None,
            node_name: Some("node-1".to_owned()),
            zone: None,
            target: Some(TargetRef {
                kind: "Pod".to_owned(),
                namespace: namespace.to_owned(),
                name: (*pod).to_owned(),
                service_account: sa.map(str::to_owned),
                meshed: sa.is_some(),
            }),
        })
        .collect();
    service_endpoints.sort_by_key(|e| e.address);
    let service = Service {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        service_type: ServiceType::ClusterIP,
        cluster_ips: vec![ip(cluster_ip)],
        headless: false,
        external_name: None,
        ports: vec![service_port.clone()],
        session_affinity: SessionAffinity::None,
        publish_not_ready_addresses: false,
        endpoints: service_endpoints,
    };
    let mut cluster_endpoints: Vec<Endpoint> = endpoints
        .iter()
        .map(|(address, ready, _, _)| Endpoint {
            address: ip(address),
            port: target,
            ready: *ready,
            serving: *ready,
            terminating: false,
            zone: Some("zone-a".to_owned()),
        })
        .collect();
    cluster_endpoints.sort_by_key(|e| (e.address, e.port));
    let cluster = Cluster {
        key: service.cluster_key(&service_port),
        port_name: "http".to_owned(),
        app_protocol: Some("http".to_owned()),
        session_affinity: SessionAffinity::None,
        endpoints: cluster_endpoints,
    };
    (service, cluster)
}

pub(crate) fn snapshot(version: u64, services: Vec<(Service, Cluster)>) -> Snapshot {
    let (mut services, mut clusters): (Vec<_>, Vec<_>) = services.into_iter().unzip();
    services.sort_by(|a: &Service, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    clusters.sort_by(|a: &Cluster, b| a.key.cmp(&b.key));
    Snapshot {
        version,
        services: services.into_iter().map(Arc::new).collect(),
        clusters: clusters.into_iter().map(Arc::new).collect(),
        ..Snapshot::default()
    }
}

pub(crate) fn echo(endpoints: &[(&str, bool, &str, Option<&str>)]) -> (Service, Cluster) {
    service("shop", "echo", "10.96.0.20", 8080, 9000, endpoints)
}

pub(crate) fn other() -> (Service, Cluster) {
    service(
        "bank",
        "vault",
        "10.96.0.99",
        8080,
        7777,
        &[("10.9.9.9", true, "vault-0", Some("vault-secret-sa"))],
    )
}

fn echo_authority() -> Authority {
    parse_authority("echo.shop.svc.cluster.local:8080", "cluster.local").unwrap()
}

#[test]
fn authorities_are_service_names_or_cluster_ips() {
    let name = |ns: &str, svc: &str, port| Authority::Name {
        namespace: ns.to_owned(),
        service: svc.to_owned(),
        port,
    };
    assert_eq!(echo_authority(), name("shop", "echo", 8080));
    for (authority, want) in [
        ("echo.shop.svc:80", name("shop", "echo", 80)),
        ("Echo.Shop.svc.cluster.local.:80", name("shop", "echo", 80)),
        (
            "10.96.0.20:8080",
            Authority::ClusterIp("10.96.0.20:8080".parse().unwrap()),
        ),
        (
            "[fd00::20]:80",
            Authority::ClusterIp("[fd00::20]:80".parse().unwrap()),
        ),
    ] {
        assert_eq!(
            parse_authority(authority, "cluster.local"),
            Ok(want),
            "{authority}"
        );
    }
    assert_eq!(
        parse_authority("echo.shop.svc.corp.example:80", "corp.example"),
        Ok(name("shop", "echo", 80))
    );
    for bad in [
        "echo.shop.svc.cluster.local",
        "echo.shop.svc.cluster.local:0",
        "echo.shop.svc.cluster.local:http",
        "echo.shop.svc.other.domain:80",
        "echo.svc.cluster.local:80",
        "a.b.shop.svc.cluster.local:80",
        "10.96.0.20:0",
        "",
    ] {
        let error = parse_authority(bad, "cluster.local").unwrap_err();
        assert!(
            error.starts_with("GetDestination.authority ") && error.contains("expected"),
            "{bad}: {error}"
        );
    }
}

fn endpoints_of(update: Update) -> proto::DestinationEndpoints {
    match update {
        Update::Endpoints(e) => e,
        Update::NoDestination(n) => panic!("no destination: {}", n.reason),
    }
}

#[test]
fn a_destination_is_its_service_ports_endpoints_with_their_identities() {
    let s = snapshot(
        3,
        vec![
            echo(&[
                ("10.1.0.2", false, "echo-b", None),
                ("10.1.0.1", true, "echo-a", Some("echo")),
            ]),
            other(),
        ],
    );
    let e = endpoints_of(destination(
        &s,
        &echo_authority(),
        "cluster.local",
        &ClusterIps::default(),
    ));
    assert_eq!(
        e.service,
        Some(proto::ServiceKey {
            namespace: "shop".into(),
            name: "echo".into()
        })
    );
    assert_eq!((e.port, e.port_name.as_str()), (8080, "http"));
    assert_eq!(e.app_protocol.as_deref(), Some("http"));
    let got: Vec<_> = e
        .endpoints
        .iter()
        .map(|e| {
            (
                e.address.clone(),
                e.port,
                e.ready,
                e.pod.as_deref(),
                e.identity.as_deref(),
                e.node_name.as_deref(),
                e.zone.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                vec![10, 1, 0, 1],
                9000,
                true,
                Some("echo-a"),
                Some("spiffe://cluster.local/ns/shop/sa/echo"),
                Some("node-1"),
                Some("zone-a")
            ),
            // A Pod the control plane does not know: no identity is expected.
            (
                vec![10, 1, 0, 2],
                9000,
                false,
                Some("echo-b"),
                None,
                Some("node-1"),
                Some("zone-a")
            ),
        ]
    );
    // By cluster IP, the same answer.
    let by_ip = Authority::ClusterIp("10.96.0.20:8080".parse().unwrap());
    assert_eq!(
        endpoints_of(destination(
            &s,
            &by_ip,
            "cluster.local",
            &ClusterIps::default()
        )),
        e
    );
}

#[test]
fn a_destination_carries_nothing_of_another_service() {
    let s = snapshot(
        3,
        vec![echo(&[("10.1.0.1", true, "echo-a", Some("echo"))]), other()],
    );
    let answer = proto::DestinationUpdate {
        version: 3,
        update: Some(destination(
            &s,
            &echo_authority(),
            "cluster.local",
            &ClusterIps::default(),
        )),
    };
    let bytes = answer.encode_to_vec();
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    for needle in [
        &b"bank"[..],
        b"vault",
        b"vault-secret-sa",
        &[10, 9, 9, 9],
        &[10, 96, 0, 99],
    ] {
        assert!(!has(needle), "{needle:?} in {answer:?}");
    }
    // Only echo's own data: one Service key, one endpoint.
    assert!(has(b"echo-a") && has(b"shop"));
    // Its size does not grow with the rest of the mesh.
    let more: Vec<_> = (0..200)
        .map(|i| {
            service(
                "bank",
                &format!("svc-{i:03}"),
                &format!("10.97.{}.{}", i / 250, i % 250 + 1),
                8080,
                7777,
                &[("10.9.9.9", true, "vault-0", Some("sa"))],
            )
        })
        .chain([echo(&[("10.1.0.1", true, "echo-a", Some("echo"))])])
        .collect();
    let bigger = proto::DestinationUpdate {
        version: 3,
        update: Some(destination(
            &snapshot(3, more),
            &echo_authority(),
            "cluster.local",
            &ClusterIps::default(),
        )),
    };
    assert_eq!(bigger.encoded_len(), answer.encoded_len());
}

#[test]
fn an_unknown_destination_is_answered_with_the_reason() {
    let s = snapshot(1, vec![other()]);
    let reason = |authority: &str| match destination(
        &s,
        &parse_authority(authority, "cluster.local").unwrap(),
        "cluster.local",
        &ClusterIps::default(),
    ) {
        Update::NoDestination(n) => n.reason,
        Update::Endpoints(e) => panic!("{authority}: endpoints {e:?}"),
    };
    assert_eq!(
        reason("echo.shop.svc.cluster.local:8080"),
        "no Service shop/echo"
    );
    assert_eq!(
        reason("vault.bank.svc.cluster.local:9090"),
        "Service bank/vault has no TCP port 9090"
    );
    assert_eq!(
        reason("10.96.0.1:443"),
        "no Service has the cluster IP 10.96.0.1"
    );
}

type Updates = mpsc::Receiver<Result<proto::DestinationUpdate, tonic::Status>>;

fn subscribe(bus: &SnapshotBus, parts: &Parts, depth: usize) -> Updates {
    let (tx, rx) = mpsc::channel(depth);
    let id = parts.connect(
        Role::Sidecar,
        "sidecar".into(),
        String::new(),
        String::new(),
    );
    let target = echo_authority();
    let ips = ClusterIps::default();
    tokio::spawn(serve(
        bus.clone(),
        parts.clone(),
        id,
        move |s: &Snapshot| proto::DestinationUpdate {
            version: 0,
            update: Some(destination(s, &target, "cluster.local", &ips)),
        },
        tx,
    ));
    rx
}

async fn next(updates: &mut Updates) -> proto::DestinationUpdate {
    tokio::time::timeout(DEADLINE, updates.recv())
        .await
        .expect("an update within the deadline")
        .expect("the stream is open")
        .expect("an update, not an error")
}

fn ready_addresses(update: &proto::DestinationUpdate) -> Vec<Vec<u8>> {
    match &update.update {
        Some(Update::Endpoints(e)) => e
            .endpoints
            .iter()
            .filter(|e| e.ready)
            .map(|e| e.address.clone())
            .collect(),
        other => panic!("not endpoints: {other:?}"),
    }
}

#[tokio::test]
async fn a_destination_stream_sends_only_its_changes_and_a_slow_one_gets_the_newest() {
    let bus = SnapshotBus::new();
    let parts = Parts::new(StatusBoard::default(), &mut Registry::default());
    let mut fast = subscribe(&bus, &parts, 2);
    // Never read until the end; its queue holds one answer.
    let mut slow = subscribe(&bus, &parts, 1);

    // Unknown first, then filled when the Service appears.
    bus.publish(snapshot(1, vec![other()]));
    let first = next(&mut fast).await;
    assert_eq!(first.version, 1);
    assert!(
        matches!(first.update, Some(Update::NoDestination(_))),
        "{first:?}"
    );
    let a = ("10.1.0.1", true, "echo-a", Some("echo"));
    bus.publish(snapshot(2, vec![other(), echo(&[a])]));
    let second = next(&mut fast).await;
    assert_eq!(
        (second.version, ready_addresses(&second)),
        (2, vec![vec![10, 1, 0, 1]])
    );

    // A change to another Service sends nothing; the next change of echo's is the next answer.
    let (mut changed, cluster) = other();
    changed.cluster_ips = vec![ip("10.96.0.98")];
    bus.publish(snapshot(3, vec![(changed, cluster), echo(&[a])]));
    // The test runs on one thread: yielding lets the streams see version 3 before version 4
    // is published (an answer for it would be read next).
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
    for version in 4..=20u64 {
        let n = u8::try_from(version).unwrap();
        let scaled: Vec<(String, bool, String, Option<&str>)> = (1..=n)
            .map(|i| {
                (
                    format!("10.1.0.{i}"),
                    true,
                    format!("echo-{i}"),
                    Some("echo"),
                )
            })
            .collect();
        let scaled: Vec<(&str, bool, &str, Option<&str>)> = scaled
            .iter()
            .map(|(a, r, p, s)| (a.as_str(), *r, p.as_str(), *s))
            .collect();
        bus.publish(snapshot(version, vec![other(), echo(&scaled)]));
        let update = next(&mut fast).await;
        assert_eq!(
            update.version, version,
            "version 3 changed nothing of echo's"
        );
        assert_eq!(ready_addresses(&update).len(), usize::from(n));
    }
    // The slow one had its queue full; it is sent the newest set once it reads, not each step.
    eventually(DEADLINE, "the slow stream's queue filled", || async {
        (parts.queue_full_and_coalesced().0 >= 1).then_some(())
    })
    .await;
    let queued = next(&mut slow).await;
    assert_eq!(queued.version, 1);
    let newest = next(&mut slow).await;
    assert_eq!(newest.version, 20);
    assert_eq!(ready_addresses(&newest).len(), 20);
    assert!(slow.try_recv().is_err(), "nothing more queued");
}

#[test]
fn a_destination_says_which_endpoints_run_the_sidecar_and_what_protocol_to_expect() {
    // echo-a has a ServiceAccount and the sidecar (the fixture marks both together); echo-b is
    // a Pod the control plane does not hold.
    let s = snapshot(
        3,
        vec![echo(&[
            ("10.1.0.1", true, "echo-a", Some("echo")),
            ("10.1.0.2", true, "echo-b", None),
        ])],
    );
    let e = endpoints_of(destination(
        &s,
        &echo_authority(),
        "cluster.local",
        &ClusterIps::default(),
    ));
    let meshed: Vec<_> = e
        .endpoints
        .iter()
        .map(|e| (e.pod.as_deref(), e.meshed))
        .collect();
    assert_eq!(meshed, [(Some("echo-a"), true), (Some("echo-b"), false)]);
    assert_eq!(e.protocol_hint, proto::ProtocolHint::Http1 as i32);

    let hint = |app_protocol: Option<&str>, name: &str, port: u16, target: u16| {
        let (mut svc, mut cluster) = service("db", "pg", "10.96.0.50", port, target, &[]);
        svc.ports[0].app_protocol = app_protocol.map(str::to_owned);
        svc.ports[0].name = name.to_owned();
        cluster.key = svc.cluster_key(&svc.ports[0]);
        let s = snapshot(1, vec![(svc, cluster)]);
        let authority = Authority::ClusterIp(SocketAddr::new(ip("10.96.0.50"), port));
        endpoints_of(destination(
            &s,
            &authority,
            "cluster.local",
            &ClusterIps::default(),
        ))
        .protocol_hint
    };
    assert_eq!(
        hint(None, "", 5432, 5432),
        proto::ProtocolHint::Opaque as i32
    );
    // The target port is the server's: a well-known one behind another Service port.
    assert_eq!(hint(None, "", 80, 3306), proto::ProtocolHint::Opaque as i32);
    assert_eq!(
        hint(Some("kubernetes.io/h2c"), "", 80, 8080),
        proto::ProtocolHint::Http2 as i32
    );
    assert_eq!(
        hint(None, "grpc-api", 80, 8080),
        proto::ProtocolHint::Http2 as i32
    );
    assert_eq!(
        hint(None, "web", 80, 8080),
        proto::ProtocolHint::Detect as i32
    );
}

#[test]
fn the_cluster_ip_index_follows_the_snapshot() {
    let ips = ClusterIps::default();
    let by_ip = Authority::ClusterIp("10.96.0.20:8080".parse().unwrap());
    let first = snapshot(1, vec![echo(&[("10.1.0.1", true, "echo-a", Some("echo"))])]);
    assert!(matches!(
        destination(&first, &by_ip, "cluster.local", &ips),
        Update::Endpoints(_)
    ));
    // The next snapshot moves echo to another cluster IP: the index is built anew.
    let (mut moved, cluster) = echo(&[("10.1.0.1", true, "echo-a", Some("echo"))]);
    moved.cluster_ips = vec![ip("10.96.0.21")];
    let second = snapshot(2, vec![(moved, cluster), other()]);
    assert!(matches!(
        destination(&second, &by_ip, "cluster.local", &ips),
        Update::NoDestination(_)
    ));
    let new_ip = Authority::ClusterIp("10.96.0.21:8080".parse().unwrap());
    let e = endpoints_of(destination(&second, &new_ip, "cluster.local", &ips));
    assert_eq!(e.service.unwrap().name, "echo");
    let vault = Authority::ClusterIp("10.96.0.99:8080".parse().unwrap());
    let v = endpoints_of(destination(&second, &vault, "cluster.local", &ips));
    assert_eq!(v.service.unwrap().name, "vault");
}
