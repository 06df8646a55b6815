use super::*;

fn receiver(bus: &SnapshotBus, check: Check) -> Receiver {
    Receiver::new(bus.clone(), check)
}

fn push(version: u64, namespaces: &[&str]) -> proto::Push {
    let snapshot = Snapshot {
        version,
        namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
        ..Snapshot::default()
    };
    proto::Push {
        version,
        nonce: format!("n{version}"),
        snapshot: Some(proto::Snapshot::from(&snapshot)),
        delta: None,
    }
}

fn view(version: u64, namespaces: &[&str]) -> Snapshot {
    Snapshot {
        version,
        namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
        ..Snapshot::default()
    }
}

/// The delta from one view to the next, as the control plane sends it.
fn delta(from: (u64, &[&str]), to: (u64, &[&str])) -> proto::Push {
    let (old, new) = (view(from.0, from.1), view(to.0, to.1));
    proto::Push {
        version: to.0,
        nonce: format!("d{}", to.0),
        snapshot: None,
        delta: Some(proto::delta::diff(&old, &new).unwrap()),
    }
}

fn accept_all() -> Check {
    Arc::new(|_| Ok(()))
}

#[test]
fn a_push_is_published_and_acknowledged_by_its_nonce() {
    let bus = SnapshotBus::new();
    let answer = receiver(&bus, accept_all()).take(push(3, &["shop"]));
    assert_eq!(
        answer.message,
        Some(Message::Ack(proto::Ack {
            nonce: "n3".to_owned(),
            version: 3
        }))
    );
    assert_eq!(bus.current().version, 3);
    assert_eq!(bus.current().namespaces, ["shop"]);
}

#[test]
fn a_push_the_part_cannot_take_is_refused_with_the_reason_and_the_last_good_one_stays() {
    let bus = SnapshotBus::new();
    let check: Check = Arc::new(|s: &Snapshot| {
        if s.namespaces.iter().any(|n| n == "bad") {
            Err("namespace bad cannot be compiled".to_owned())
        } else {
            Ok(())
        }
    });
    let mut sub = receiver(&bus, check);
    sub.take(push(1, &["shop"]));
    let answer = sub.take(push(2, &["bad"]));
    let Some(Message::Nack(nack)) = answer.message else {
        panic!("expected a NACK, got {answer:?}");
    };
    assert_eq!((nack.nonce.as_str(), nack.version), ("n2", 2));
    assert_eq!(nack.reason, "namespace bad cannot be compiled");
    assert_eq!(bus.current().version, 1);
    assert_eq!(bus.current().namespaces, ["shop"]);

    // A snapshot that fails the model's own checks is refused too, by a wire error.
    let mut wire = push(3, &["shop"]);
    wire.snapshot
        .as_mut()
        .unwrap()
        .services
        .push(proto::Service::default());
    let Some(Message::Nack(nack)) = sub.take(wire).message else {
        panic!("expected a NACK");
    };
    assert!(
        nack.reason.contains("snapshot.services[0].type"),
        "{}",
        nack.reason
    );
    assert_eq!(bus.current().version, 1);
}

#[test]
fn a_restarted_control_planes_low_versions_still_reach_the_bus() {
    let bus = SnapshotBus::new();
    let mut sub = receiver(&bus, accept_all());
    sub.take(push(7, &["a"]));
    // The control plane restarted: it numbers from 1 again.
    sub.take(push(1, &["b"]));
    assert_eq!(bus.current().version, 8);
    assert_eq!(bus.current().namespaces, ["b"]);
    // The same view again (a resync) is acknowledged without a new publish.
    let answer = sub.take(push(2, &["b"]));
    assert!(matches!(answer.message, Some(Message::Ack(_))));
    assert_eq!(bus.current().version, 8);
}

#[test]
fn a_delta_is_applied_to_the_view_held_and_published_whole() {
    let bus = SnapshotBus::new();
    let mut sub = receiver(&bus, accept_all());
    sub.take(push(4, &["a", "b"]));
    let answer = sub.take(delta((4, &["a", "b"]), (5, &["a", "c"])));
    assert_eq!(
        answer.message,
        Some(Message::Ack(proto::Ack {
            nonce: "d5".to_owned(),
            version: 5
        }))
    );
    assert_eq!(bus.current().version, 5);
    assert_eq!(bus.current().namespaces, ["a", "c"]);
    assert_eq!(
        (sub.taken(PushKind::full), sub.taken(PushKind::delta)),
        (1, 1)
    );
}

#[test]
fn a_delta_on_another_base_is_refused_naming_both_versions_and_changes_nothing() {
    let bus = SnapshotBus::new();
    let mut sub = receiver(&bus, accept_all());
    sub.take(push(4, &["a"]));
    let answer = sub.take(delta((3, &["a"]), (5, &["b"])));
    let Some(Message::Nack(nack)) = answer.message else {
        panic!("expected a NACK, got {answer:?}");
    };
    assert_eq!((nack.nonce.as_str(), nack.version), ("d5", 5));
    assert!(
        nack.reason.contains("applies to version 3") && nack.reason.contains("holds version 4"),
        "{}",
        nack.reason
    );
    assert_eq!(bus.current().namespaces, ["a"]);
    // The whole view the control plane answers with is taken.
    sub.take(push(5, &["b"]));
    assert_eq!(bus.current().namespaces, ["b"]);
}

#[test]
fn a_new_stream_takes_no_delta_before_its_whole_view() {
    let bus = SnapshotBus::new();
    let mut sub = receiver(&bus, accept_all());
    sub.take(push(4, &["a"]));
    sub.restart();
    let answer = sub.take(delta((4, &["a"]), (5, &["b"])));
    let Some(Message::Nack(nack)) = answer.message else {
        panic!("expected a NACK, got {answer:?}");
    };
    assert!(
        nack.reason.contains("before any whole view"),
        "{}",
        nack.reason
    );
    assert_eq!(bus.current().namespaces, ["a"]);
}

#[test]
fn a_delta_whose_result_the_part_cannot_compile_is_refused_and_the_view_held_stays() {
    let bus = SnapshotBus::new();
    let check: Check = Arc::new(|s: &Snapshot| {
        if s.namespaces.iter().any(|n| n == "bad") {
            Err("namespace bad cannot be compiled".to_owned())
        } else {
            Ok(())
        }
    });
    let mut sub = receiver(&bus, check);
    sub.take(push(1, &["a"]));
    let answer = sub.take(delta((1, &["a"]), (2, &["a", "bad"])));
    let Some(Message::Nack(nack)) = answer.message else {
        panic!("expected a NACK, got {answer:?}");
    };
    assert_eq!(nack.reason, "namespace bad cannot be compiled");
    assert_eq!(bus.current().namespaces, ["a"]);
    // The part still holds version 1: a delta on it applies.
    let answer = sub.take(delta((1, &["a"]), (3, &["c"])));
    assert!(
        matches!(answer.message, Some(Message::Ack(_))),
        "{answer:?}"
    );
    assert_eq!(bus.current().namespaces, ["c"]);
}

#[test]
fn bad_urls_cas_and_tokens_are_refused_at_build() {
    let bus = SnapshotBus::new();
    let ca = rcgen::generate_simple_self_signed(vec!["control".to_owned()]).unwrap();
    let config = Config {
        control: "http://control:7443".parse().unwrap(),
        ca_pem: ca.cert.pem().into_bytes(),
        token: "t".to_owned(),
        role: Role::Gateway,
        node: String::new(),
        name: String::new(),
    };
    let e = Subscriber::build(config.clone(), bus.clone(), accept_all()).unwrap_err();
    assert!(e.to_string().contains("https://HOST:PORT"), "{e}");
    let no_ca = Config {
        ca_pem: b"not a pem".to_vec(),
        control: "https://control:7443".parse().unwrap(),
        ..config.clone()
    };
    let e = Subscriber::build(no_ca, bus.clone(), accept_all()).unwrap_err();
    assert!(e.to_string().contains("--control-ca"), "{e}");
    let no_token = Config {
        token: String::new(),
        control: "https://control:7443".parse().unwrap(),
        ..config
    };
    let e = Subscriber::build(no_token, bus, accept_all()).unwrap_err();
    assert!(e.to_string().contains("--token-file"), "{e}");
}

// ---- deltas on views with Services: sharing, and the checks of what changed ----

use ferry_model::snapshot::{
    Cluster, ClusterKey, Endpoint, HostMatch, Protocol, Service, ServicePort, ServiceType,
    SessionAffinity, TargetPort, VirtualHost,
};

/// Services `x/<name>` on port 80 with one endpoint each, and their clusters.
fn services_view(version: u64, names: &[&str], ready: bool) -> Snapshot {
    let address = "10.0.0.1".parse().unwrap();
    let service = |name: &str| Service {
        namespace: "x".into(),
        name: name.into(),
        service_type: ServiceType::ClusterIP,
        cluster_ips: vec![],
        headless: false,
        external_name: None,
        ports: vec![ServicePort {
            name: "http".into(),
            port: 80,
            protocol: Protocol::TCP,
            app_protocol: None,
            target_port: TargetPort::Number(8080),
            node_port: None,
        }],
        session_affinity: SessionAffinity::None,
        publish_not_ready_addresses: false,
        endpoints: vec![],
    };
    let cluster = |name: &str| Cluster {
        key: ClusterKey {
            namespace: "x".into(),
            service: name.into(),
            port: 80,
            protocol: Protocol::TCP,
        },
        port_name: "http".into(),
        app_protocol: None,
        session_affinity: SessionAffinity::None,
        endpoints: vec![Endpoint {
            address,
            port: 8080,
            ready,
            serving: true,
            terminating: false,
            zone: None,
        }],
    };
    Snapshot {
        version,
        services: names.iter().map(|n| Arc::new(service(n))).collect(),
        clusters: names.iter().map(|n| Arc::new(cluster(n))).collect(),
        ..Snapshot::default()
    }
}

fn whole(snapshot: &Snapshot) -> proto::Push {
    proto::Push {
        version: snapshot.version,
        nonce: format!("n{}", snapshot.version),
        snapshot: Some(proto::Snapshot::from(snapshot)),
        delta: None,
    }
}

fn delta_between(old: &Snapshot, new: &Snapshot) -> proto::Push {
    proto::Push {
        version: new.version,
        nonce: format!("d{}", new.version),
        snapshot: None,
        delta: Some(proto::delta::diff(old, new).unwrap()),
    }
}

fn nack_reason(answer: proto::SubscribeRequest) -> String {
    match answer.message {
        Some(Message::Nack(nack)) => nack.reason,
        other => panic!("expected a NACK, got {other:?}"),
    }
}

#[test]
fn a_delta_shares_what_it_does_not_change_with_the_view_held() {
    let bus = SnapshotBus::new();
    let mut sub = receiver(&bus, accept_all());
    let old = services_view(1, &["a", "b", "c"], true);
    sub.take(whole(&old));
    let held = bus.current();
    let mut new = old.clone();
    new.version = 2;
    Arc::make_mut(&mut new.clusters[1]).endpoints[0].ready = false;
    let answer = sub.take(delta_between(&old, &new));
    assert!(
        matches!(answer.message, Some(Message::Ack(_))),
        "{answer:?}"
    );
    let taken = bus.current();
    assert_eq!(taken.clusters, new.clusters);
    assert!(Arc::ptr_eq(&taken.clusters[0], &held.clusters[0]));
    assert!(Arc::ptr_eq(&taken.clusters[2], &held.clusters[2]));
    assert!(!Arc::ptr_eq(&taken.clusters[1], &held.clusters[1]));
    assert!(
        taken
            .services
            .iter()
            .zip(&held.services)
            .all(|(a, b)| Arc::ptr_eq(a, b))
    );
}

#[test]
fn a_delta_that_breaks_an_invariant_is_refused_and_the_view_held_stays() {
    let bus = SnapshotBus::new();
    let mut sub = receiver(&bus, accept_all());
    let old = services_view(1, &["a", "b"], true);
    sub.take(whole(&old));
    // Service b goes, its cluster stays.
    let mut new = old.clone();
    new.version = 2;
    new.services.remove(1);
    let reason = nack_reason(sub.take(delta_between(&old, &new)));
    assert!(
        reason.contains("cluster x/b:80 has no service port"),
        "{reason}"
    );
    assert_eq!(*bus.current(), old);
    // Both go: taken.
    new.clusters.remove(1);
    let answer = sub.take(delta_between(&old, &new));
    assert!(
        matches!(answer.message, Some(Message::Ack(_))),
        "{answer:?}"
    );
    assert_eq!(bus.current().services.len(), 1);
}

#[test]
fn a_whole_view_out_of_canonical_order_takes_no_delta() {
    let bus = SnapshotBus::new();
    let mut sub = receiver(&bus, accept_all());
    // Valid (hosts unique), but the catch-all before an exact host is not the canonical order.
    let host = |h: &str| {
        Arc::new(VirtualHost {
            host: HostMatch::parse(h),
            tls: false,
            routes: vec![],
            default_backend: None,
            default_backend_ingress: None,
        })
    };
    let mut hand_written = services_view(1, &["a"], true);
    hand_written.virtual_hosts = vec![host(""), host("a.example")];
    let answer = sub.take(whole(&hand_written));
    assert!(
        matches!(answer.message, Some(Message::Ack(_))),
        "{answer:?}"
    );
    let delta = proto::Push {
        version: 2,
        nonce: "d2".into(),
        snapshot: None,
        delta: Some(proto::Delta {
            base_version: 1,
            namespaces: Some(proto::Namespaces {
                names: vec!["x".into()],
            }),
            ..proto::Delta::default()
        }),
    };
    let reason = nack_reason(sub.take(delta));
    assert!(reason.contains("not in canonical order"), "{reason}");
    assert_eq!(bus.current().version, 1);
}
