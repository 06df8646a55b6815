//! `validate_delta` against `validate`: on views made from a valid canonical one by random
//! edits (each of which may break an invariant), the two agree, whether the new view shares
//! its unchanged items with the old one or holds copies of them.

use std::sync::Arc;

use proptest::prelude::*;

use super::super::*;

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const NAMESPACES: [&str; 2] = ["x", "y"];
const PORTS: [u16; 3] = [80, 81, 0];

fn key(ns: &str, name: &str, port: u16, protocol: Protocol) -> ClusterKey {
    ClusterKey {
        namespace: ns.into(),
        service: name.into(),
        port,
        protocol,
    }
}

fn service(ns: &str, name: &str, ports: &[u16]) -> Service {
    Service {
        namespace: ns.into(),
        name: name.into(),
        service_type: ServiceType::ClusterIP,
        cluster_ips: vec![],
        headless: false,
        external_name: None,
        ports: ports
            .iter()
            .map(|&port| ServicePort {
                name: format!("p{port}"),
                port,
                protocol: Protocol::TCP,
                app_protocol: None,
                target_port: TargetPort::Number(8080),
                node_port: None,
            })
            .collect(),
        session_affinity: SessionAffinity::None,
        publish_not_ready_addresses: false,
        endpoints: vec![],
    }
}

fn cluster(key: ClusterKey, endpoint_port: u16) -> Cluster {
    Cluster {
        key,
        port_name: String::new(),
        app_protocol: None,
        session_affinity: SessionAffinity::None,
        endpoints: vec![Endpoint {
            address: "10.0.0.1".parse().unwrap(),
            port: endpoint_port,
            ready: true,
            serving: true,
            terminating: false,
            zone: None,
        }],
    }
}

fn backend(key: ClusterKey) -> Backend {
    Backend::Service {
        namespace: key.namespace.clone(),
        name: key.service.clone(),
        port: BackendPort::Number(key.port),
        cluster: Some(key),
    }
}

fn route(path: &str, key: ClusterKey, canary: Option<(ClusterKey, u32, u32)>) -> Route {
    Route {
        path: path.into(),
        path_type: PathType::Prefix,
        backend: backend(key),
        ingress: IngressRef::new("x", "ing"),
        canary: canary.map(|(key, weight, weight_total)| Canary {
            backend: backend(key),
            ingress: IngressRef::new("x", "canary"),
            weight,
            weight_total,
            by_header: None,
            by_header_value: None,
            by_cookie: None,
        }),
    }
}

fn host(name: &str, routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        host: HostMatch::parse(&format!("{name}.example")),
        tls: false,
        routes,
        default_backend: None,
        default_backend_ingress: None,
    }
}

fn certificate(name: &str, pem: bool) -> Certificate {
    let pem = if pem { "-----BEGIN X-----" } else { "garbage" };
    Certificate {
        namespace: "x".into(),
        secret: name.into(),
        hosts: vec![],
        cert_pem: pem.into(),
        key_pem: pem.into(),
    }
}

fn options(name: &str, rewrite: bool) -> IngressOptions {
    IngressOptions {
        ingress: IngressRef::new("x", name),
        rewrite_target: rewrite.then(|| "/$1".into()),
        ..IngressOptions::default()
    }
}

/// A valid, canonical view: three Services with a cluster each, two hosts (one with a
/// canary), a default backend, a certificate and Ingress options.
fn base() -> Snapshot {
    let a = key("x", "a", 80, Protocol::TCP);
    let b = key("x", "b", 80, Protocol::TCP);
    let c = key("y", "c", 80, Protocol::TCP);
    Snapshot {
        version: 1,
        services: vec![
            Arc::new(service("x", "a", &[80])),
            Arc::new(service("x", "b", &[80])),
            Arc::new(service("y", "c", &[80])),
        ],
        namespaces: vec!["x".into(), "y".into()],
        clusters: vec![
            Arc::new(cluster(a.clone(), 8080)),
            Arc::new(cluster(b.clone(), 8080)),
            Arc::new(cluster(c.clone(), 8080)),
        ],
        virtual_hosts: vec![
            Arc::new(host("a", vec![route("/", a.clone(), None)])),
            Arc::new(host("b", vec![route("/", b, Some((c, 10, 100)))])),
        ],
        default_backend: Some(backend(a)),
        default_backend_ingress: Some(IngressRef::new("x", "fallback")),
        certificates: vec![Arc::new(certificate("tls", true))],
        ingress_options: vec![Arc::new(options("ing", false))],
        mesh: Default::default(),
    }
}

/// One random edit of a view, by number, with three random parameters. Every edit goes
/// through `Arc::make_mut` or replaces one item, so the rest stays shared.
fn edit(s: &mut Snapshot, op: u8, p: u8, q: u8, r: u8) {
    let pick = |n: usize| usize::from(p) % n.max(1);
    let name = NAMES[usize::from(q) % NAMES.len()];
    let ns = NAMESPACES[usize::from(r) % NAMESPACES.len()];
    let port = PORTS[usize::from(r / 2) % PORTS.len()];
    let protocol = if q.is_multiple_of(5) {
        Protocol::UDP
    } else {
        Protocol::TCP
    };
    let some_key = key(ns, name, PORTS[usize::from(q) % 2], protocol);
    match op % 20 {
        0 if !s.services.is_empty() => {
            let i = pick(s.services.len());
            s.services.remove(i);
        }
        1 => {
            let svc = Arc::new(service(ns, name, &[port, PORTS[usize::from(p) % 2]]));
            let at = s
                .services
                .partition_point(|x| order::service(x, &svc) == std::cmp::Ordering::Less);
            s.services.insert(at, svc);
        }
        2 if !s.services.is_empty() => {
            let i = pick(s.services.len());
            Arc::make_mut(&mut s.services[i]).ports[0].port = port;
        }
        3 if !s.services.is_empty() => {
            let i = pick(s.services.len());
            let svc = Arc::make_mut(&mut s.services[i]);
            svc.service_type = ServiceType::ExternalName;
            svc.external_name = (q.is_multiple_of(2)).then(|| "ext.example".into());
        }
        4 if !s.clusters.is_empty() => {
            let i = pick(s.clusters.len());
            s.clusters.remove(i);
        }
        5 => {
            let c = Arc::new(cluster(some_key, 8080));
            let at = s
                .clusters
                .partition_point(|x| order::cluster(x, &c) == std::cmp::Ordering::Less);
            // Sometimes a duplicate key: inserted after its twin.
            let at = if r.is_multiple_of(7) {
                at.saturating_add(1).min(s.clusters.len())
            } else {
                at
            };
            s.clusters.insert(at, c);
        }
        6 if !s.clusters.is_empty() => {
            let i = pick(s.clusters.len());
            Arc::make_mut(&mut s.clusters[i]).endpoints[0].port = u16::from(q % 2) * 9090;
        }
        7 if !s.virtual_hosts.is_empty() => {
            let i = pick(s.virtual_hosts.len());
            s.virtual_hosts.remove(i);
        }
        8 => {
            let path = if q.is_multiple_of(4) { "rel" } else { "/p" };
            let vh = Arc::new(host(name, vec![route(path, some_key, None)]));
            let at = s
                .virtual_hosts
                .partition_point(|x| order::virtual_host(x, &vh) == std::cmp::Ordering::Less);
            s.virtual_hosts.insert(at, vh);
        }
        9 if !s.virtual_hosts.is_empty() => {
            let i = pick(s.virtual_hosts.len());
            let canary = (some_key, u32::from(q % 3) * 60, u32::from(r % 3) * 50);
            Arc::make_mut(&mut s.virtual_hosts[i]).routes.push(route(
                "/c",
                key(ns, "a", 80, Protocol::TCP),
                Some(canary),
            ));
        }
        10 if !s.virtual_hosts.is_empty() => {
            let i = pick(s.virtual_hosts.len());
            let vh = Arc::make_mut(&mut s.virtual_hosts[i]);
            vh.default_backend_ingress = Some(IngressRef::new("x", "d"));
            vh.default_backend = (q.is_multiple_of(2)).then(|| backend(some_key));
        }
        11 => {
            s.default_backend = (!q.is_multiple_of(3)).then(|| backend(some_key));
        }
        12 => s.default_backend_ingress = None,
        13 if s.services.len() > 1 => {
            let i = pick(s.services.len() - 1);
            s.services.swap(i, i + 1);
        }
        14 if s.clusters.len() > 1 => {
            let i = pick(s.clusters.len() - 1);
            s.clusters.swap(i, i + 1);
        }
        15 if s.virtual_hosts.len() > 1 => {
            let i = pick(s.virtual_hosts.len() - 1);
            s.virtual_hosts.swap(i, i + 1);
        }
        16 => {
            let c = Arc::new(certificate(name, !q.is_multiple_of(3)));
            let at = s
                .certificates
                .partition_point(|x| order::certificate(x, &c) == std::cmp::Ordering::Less);
            s.certificates.insert(at, c);
        }
        17 => {
            let o = Arc::new(options(name, q.is_multiple_of(3)));
            let at = s
                .ingress_options
                .partition_point(|x| order::ingress_options(x, &o) == std::cmp::Ordering::Less);
            s.ingress_options.insert(at, o);
        }
        18 => {
            s.namespaces = if q.is_multiple_of(3) {
                vec!["y".into(), "x".into()]
            } else {
                vec!["x".into(), ns.into()]
            };
        }
        19 if !s.virtual_hosts.is_empty() => {
            let i = pick(s.virtual_hosts.len());
            let path = if q.is_multiple_of(2) { "" } else { "/q" };
            Arc::make_mut(&mut s.virtual_hosts[i]).routes[0].path = path.into();
        }
        _ => {}
    }
}

fn edits() -> impl Strategy<Value = Vec<(u8, u8, u8, u8)>> {
    proptest::collection::vec(any::<(u8, u8, u8, u8)>(), 0..6)
}

/// A copy holding no item of the view it was made from.
fn unshared(s: &Snapshot) -> Snapshot {
    let json = serde_json::to_string(s).unwrap();
    serde_json::from_str(&json).unwrap()
}

fn accepts_whole(s: &Snapshot) -> bool {
    s.validate().is_ok() && s.is_canonical()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn validate_delta_agrees_with_validate(before in edits(), after in edits()) {
        // The base: the edits that keep it valid and canonical.
        let mut old = base();
        for (op, p, q, r) in before {
            let mut tried = old.clone();
            edit(&mut tried, op, p, q, r);
            if accepts_whole(&tried) {
                old = tried;
            }
        }
        let mut new = old.clone();
        new.version += 1;
        for &(op, p, q, r) in &after {
            edit(&mut new, op, p, q, r);
        }
        let expected = accepts_whole(&new);
        let shared = new.validate_delta(&old);
        prop_assert_eq!(shared.is_ok(), expected, "{:?} after {:?}", shared, after);
        let copied = unshared(&new).validate_delta(&old);
        prop_assert_eq!(copied.is_ok(), expected, "{:?} (unshared) after {:?}", copied, after);
    }
}

/// An edit that breaks one invariant.
type Breaks = dyn Fn(&mut Snapshot);

/// Each invariant, broken by a delta-sized edit, is refused by `validate_delta`, and the
/// reason names what broke.
#[test]
fn every_broken_invariant_is_refused() {
    let old = base();
    assert!(accepts_whole(&old));
    let cases: Vec<(&str, Box<Breaks>)> = vec![
        ("services not sorted", Box::new(|s| s.services.swap(0, 1))),
        (
            "has port 0",
            Box::new(|s| Arc::make_mut(&mut s.services[0]).ports[0].port = 0),
        ),
        (
            "twice",
            Box::new(|s| {
                let svc = Arc::make_mut(&mut s.services[0]);
                svc.ports.push(svc.ports[0].clone());
            }),
        ),
        (
            "externalName and type disagree",
            Box::new(|s| {
                Arc::make_mut(&mut s.services[2]).service_type = ServiceType::ExternalName;
            }),
        ),
        // A Service's port goes: its cluster is left without one.
        (
            "cluster x/a:80 has no service port",
            Box::new(|s| {
                Arc::make_mut(&mut s.services[0]).ports[0].port = 81;
            }),
        ),
        // A Service goes with its cluster left behind.
        (
            "cluster y/c:80 has no service port",
            Box::new(|s| {
                s.services.remove(2);
            }),
        ),
        ("clusters not sorted", Box::new(|s| s.clusters.swap(1, 2))),
        (
            "endpoint on port 0",
            Box::new(|s| {
                Arc::make_mut(&mut s.clusters[1]).endpoints[0].port = 0;
            }),
        ),
        // A cluster a canary points at goes (its Service and host unchanged).
        (
            "cluster y/c:80, which does not exist",
            Box::new(|s| {
                s.clusters.remove(2);
            }),
        ),
        // The catch-all's cluster goes.
        (
            "cluster x/a:80, which does not exist",
            Box::new(|s| {
                s.clusters.remove(0);
            }),
        ),
        (
            "not an absolute path",
            Box::new(|s| {
                Arc::make_mut(&mut s.virtual_hosts[0]).routes[0].path = "a".into();
            }),
        ),
        (
            "canary weight 200 of 100",
            Box::new(|s| {
                let vh = Arc::make_mut(&mut s.virtual_hosts[1]);
                vh.routes[0].canary.as_mut().unwrap().weight = 200;
            }),
        ),
        (
            "default backend owner without a default backend",
            Box::new(|s| {
                Arc::make_mut(&mut s.virtual_hosts[0]).default_backend_ingress =
                    Some(IngressRef::new("x", "d"));
            }),
        ),
        (
            "the catch-all: default backend owner",
            Box::new(|s| s.default_backend = None),
        ),
        (
            "virtual hosts not in canonical order or not unique",
            Box::new(|s| {
                let twin = s.virtual_hosts[0].clone();
                s.virtual_hosts.insert(1, Arc::new((*twin).clone()));
            }),
        ),
        (
            "namespaces not sorted",
            Box::new(|s| s.namespaces.reverse()),
        ),
        (
            "is not PEM",
            Box::new(|s| {
                Arc::make_mut(&mut s.certificates[0]).key_pem = "x".into();
            }),
        ),
        (
            "certificates not sorted",
            Box::new(|s| {
                s.certificates.push(Arc::new(certificate("a", true)));
            }),
        ),
        (
            "rewrite target without use_regex",
            Box::new(|s| {
                Arc::make_mut(&mut s.ingress_options[0]).rewrite_target = Some("/".into());
            }),
        ),
        (
            "ingress options not sorted",
            Box::new(|s| {
                s.ingress_options.push(Arc::new(options("a", false)));
            }),
        ),
    ];
    for (reason, breaks) in cases {
        let mut new = old.clone();
        breaks(&mut new);
        assert!(
            !accepts_whole(&new),
            "{reason}: the edit should break the view"
        );
        let err = new.validate_delta(&old).expect_err(reason).to_string();
        assert!(err.contains(reason), "{reason}: {err}");
    }
}

/// The point of it: a view that shares all but one item with its base is checked without
/// reading the rest (a poisoned shared item, which `validate` would refuse, goes unread).
#[test]
fn shared_items_are_not_read_again() {
    let mut old = base();
    // Break an item in place, then take it as the base: validate_delta trusts the base.
    Arc::make_mut(&mut old.clusters[0]).endpoints[0].port = 0;
    let mut new = old.clone();
    Arc::make_mut(&mut new.clusters[1]).endpoints[0].port = 9090;
    assert!(new.validate().is_err());
    assert_eq!(new.validate_delta(&old), Ok(()));
}
