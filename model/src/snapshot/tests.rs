use super::*;

fn service(name: &str, port: u16) -> Service {
    Service {
        namespace: "shop".into(),
        name: name.into(),
        service_type: ServiceType::ClusterIP,
        cluster_ips: vec!["10.0.0.1".parse().unwrap()],
        headless: false,
        external_name: None,
        ports: vec![ServicePort {
            name: "http".into(),
            port,
            protocol: Protocol::TCP,
            app_protocol: None,
            target_port: TargetPort::Name("http".into()),
            node_port: None,
        }],
        session_affinity: SessionAffinity::None,
        publish_not_ready_addresses: false,
        endpoints: vec![],
    }
}

fn cluster(name: &str, port: u16) -> Cluster {
    Cluster {
        key: ClusterKey {
            namespace: "shop".into(),
            service: name.into(),
            port,
        },
        port_name: "http".into(),
        protocol: Protocol::TCP,
        app_protocol: None,
        session_affinity: SessionAffinity::None,
        endpoints: vec![Endpoint {
            address: "127.0.0.1".parse().unwrap(),
            port: 8080,
            ready: true,
            serving: true,
            terminating: false,
            zone: None,
        }],
    }
}

fn route(path: &str, cluster: Option<ClusterKey>) -> Route {
    Route {
        path: path.into(),
        path_type: PathType::Prefix,
        backend: Backend::Service {
            namespace: "shop".into(),
            name: "web".into(),
            port: BackendPort::Number(80),
            cluster,
        },
        ingress: TargetRef {
            kind: "Ingress".into(),
            namespace: "shop".into(),
            name: "web".into(),
        },
    }
}

fn snapshot() -> Snapshot {
    let web = cluster("web", 80);
    Snapshot {
        version: 3,
        services: vec![service("api", 80), service("web", 80)],
        clusters: vec![cluster("api", 80), web.clone()],
        virtual_hosts: vec![VirtualHost {
            host: HostMatch::parse("Shop.Example.com"),
            tls: false,
            routes: vec![route("/", Some(web.key))],
            default_backend: None,
        }],
        default_backend: None,
        certificates: vec![],
    }
}

#[test]
fn a_consistent_snapshot_validates_and_round_trips_through_json() {
    let s = snapshot();
    s.validate().unwrap();
    let json = serde_json::to_string(&s).unwrap();
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    assert!(json.contains(r#""host":"shop.example.com""#), "{json}");
}

#[test]
fn dangling_cluster_reference_is_refused() {
    let mut s = snapshot();
    s.virtual_hosts[0].routes.push(route(
        "/x",
        Some(ClusterKey {
            namespace: "shop".into(),
            service: "gone".into(),
            port: 80,
        }),
    ));
    let err = s.validate().unwrap_err();
    assert!(err.to_string().contains("shop/gone:80"), "{err}");
}

#[test]
fn unsorted_or_duplicate_keys_are_refused() {
    let mut s = snapshot();
    s.services.reverse();
    assert!(s.validate().is_err());
    let mut s = snapshot();
    s.clusters.push(s.clusters[1].clone());
    assert!(s.validate().is_err());
    let mut s = snapshot();
    s.virtual_hosts.push(s.virtual_hosts[0].clone());
    assert!(s.validate().is_err());
}

#[test]
fn relative_paths_and_port_zero_are_refused() {
    let mut s = snapshot();
    s.virtual_hosts[0].routes[0].path = "foo".into();
    assert!(s.validate().is_err());
    let mut s = snapshot();
    s.clusters[0].endpoints[0].port = 0;
    assert!(s.validate().is_err());
}

#[test]
fn host_matches_parse_and_order_by_precedence() {
    let mut hosts = vec![
        HostMatch::parse(""),
        HostMatch::parse("*.foo.com"),
        HostMatch::parse("bar.foo.com"),
    ];
    hosts.sort_by(HostMatch::precedence_cmp);
    assert_eq!(
        hosts,
        vec![
            HostMatch::Exact("bar.foo.com".into()),
            HostMatch::Wildcard(".foo.com".into()),
            HostMatch::Any
        ]
    );
    assert_eq!(HostMatch::parse("*.foo.com").to_string(), "*.foo.com");
}

#[test]
fn private_keys_are_redacted_for_display_only() {
    let mut s = snapshot();
    s.certificates.push(Certificate {
        namespace: "shop".into(),
        secret: "tls".into(),
        hosts: vec!["shop.example.com".into()],
        cert_pem: "-----BEGIN CERTIFICATE-----".into(),
        key_pem: "-----BEGIN PRIVATE KEY-----k3y-bytes".into(),
    });
    let shown = s.without_private_keys();
    assert_eq!(shown.certificates[0].key_pem, REDACTED);
    assert!(s.certificates[0].key_pem.contains("k3y-bytes"));
    assert!(!format!("{:?}", s.certificates[0]).contains("k3y-bytes"));
    assert!(s.same_content(&Snapshot {
        version: 9,
        ..s.clone()
    }));
}
