use std::sync::Arc;

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
            protocol: Protocol::TCP,
        },
        port_name: "http".into(),
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
        ingress: IngressRef::new("shop", "web"),
        canary: None,
    }
}

fn snapshot() -> Snapshot {
    let web = cluster("web", 80);
    Snapshot {
        version: 3,
        services: vec![Arc::new(service("api", 80)), Arc::new(service("web", 80))],
        namespaces: vec![],
        clusters: vec![Arc::new(cluster("api", 80)), Arc::new(web.clone())],
        virtual_hosts: vec![Arc::new(VirtualHost {
            host: HostMatch::parse("Shop.Example.com"),
            tls: false,
            routes: vec![route("/", Some(web.key))],
            default_backend: None,
            default_backend_ingress: None,
        })],
        default_backend: None,
        default_backend_ingress: None,
        certificates: vec![],
        ingress_options: vec![],
        mesh: crate::Mesh::default(),
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
    Arc::make_mut(&mut s.virtual_hosts[0]).routes.push(route(
        "/x",
        Some(ClusterKey {
            namespace: "shop".into(),
            service: "gone".into(),
            port: 80,
            protocol: Protocol::TCP,
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
    Arc::make_mut(&mut s.virtual_hosts[0]).routes[0].path = "foo".into();
    assert!(s.validate().is_err());
    let mut s = snapshot();
    Arc::make_mut(&mut s.clusters[0]).endpoints[0].port = 0;
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
    s.certificates.push(Arc::new(Certificate {
        namespace: "shop".into(),
        secret: "tls".into(),
        hosts: vec!["shop.example.com".into()],
        cert_pem: "-----BEGIN CERTIFICATE-----".into(),
        key_pem: "-----BEGIN PRIVATE KEY-----k3y-bytes".into(),
    }));
    let shown = s.without_private_keys();
    assert_eq!(shown.certificates[0].key_pem, REDACTED);
    assert!(s.certificates[0].key_pem.contains("k3y-bytes"));
    assert!(!format!("{:?}", s.certificates[0]).contains("k3y-bytes"));
    assert!(s.same_content(&Snapshot {
        version: 9,
        ..s.clone()
    }));
}

fn ingress(name: &str) -> IngressRef {
    IngressRef::new("shop", name)
}

fn canary(cluster: Option<ClusterKey>) -> Canary {
    Canary {
        backend: route("/", cluster).backend,
        ingress: ingress("web-canary"),
        weight: 10,
        weight_total: 100,
        by_header: Some("X-Canary".into()),
        by_header_value: None,
        by_cookie: None,
    }
}

#[test]
fn without_annotations_the_json_has_no_new_keys() {
    let json = serde_json::to_string(&snapshot()).unwrap();
    for key in [
        "ingress_options",
        "canary",
        "use_regex",
        "force_ssl_redirect",
        "default_backend_ingress",
    ] {
        assert!(!json.contains(key), "{key} in {json}");
    }
    let defaults = serde_json::to_string(&IngressOptions {
        ingress: ingress("web"),
        ..IngressOptions::default()
    })
    .unwrap();
    assert_eq!(
        defaults,
        r#"{"ingress":{"kind":"Ingress","namespace":"shop","name":"web"}}"#
    );
}

#[test]
fn ingress_options_are_found_by_ingress_and_round_trip() {
    let mut s = snapshot();
    let web = s.clusters[1].key.clone();
    Arc::make_mut(&mut s.virtual_hosts[0]).routes[0].canary = Some(canary(Some(web)));
    s.ingress_options = ["api", "web"]
        .into_iter()
        .map(|n| IngressOptions {
            ingress: ingress(n),
            rewrite_target: Some("/$1".into()),
            use_regex: true,
            backend_protocol: Some(BackendProtocol::GRPC),
            proxy_body_size: Some(8 << 20),
            proxy_connect_timeout_ms: Some(5000),
            proxy_read_timeout_ms: Some(60_000),
            proxy_send_timeout_ms: Some(60_000),
            ssl_redirect: Some(false),
            force_ssl_redirect: true,
            app_root: Some("/app".into()),
            affinity: Some(CookieAffinity {
                name: "INGRESSCOOKIE".into(),
                max_age_seconds: Some(3600),
                path: Some("/".into()),
            }),
        })
        .map(Arc::new)
        .collect();
    s.validate().unwrap();
    assert_eq!(
        s.ingress_options(&ingress("web")).map(|o| &o.ingress.name),
        Some(&"web".to_owned())
    );
    assert!(s.ingress_options(&ingress("gone")).is_none());
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains(r#""backend_protocol":"GRPC""#), "{json}");
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    assert!(!s.same_content(&snapshot()), "options are content");
}

#[test]
fn ingress_options_unsorted_duplicate_or_inconsistent_are_refused() {
    let opts = |n: &str| IngressOptions {
        ingress: ingress(n),
        use_regex: true,
        ..IngressOptions::default()
    };
    let mut s = snapshot();
    s.ingress_options = vec![Arc::new(opts("web")), Arc::new(opts("api"))];
    assert!(s.validate().unwrap_err().to_string().contains("not sorted"));
    s.ingress_options = vec![Arc::new(opts("web")), Arc::new(opts("web"))];
    assert!(s.validate().is_err());

    let broken = [
        IngressOptions {
            rewrite_target: Some("/$1".into()),
            use_regex: false,
            ..opts("web")
        },
        IngressOptions {
            app_root: Some("//evil.example.com".into()),
            ..opts("web")
        },
        IngressOptions {
            affinity: Some(CookieAffinity {
                name: String::new(),
                max_age_seconds: None,
                path: None,
            }),
            ..opts("web")
        },
    ];
    for o in broken {
        let mut s = snapshot();
        s.ingress_options = vec![Arc::new(o.clone())];
        assert!(s.validate().is_err(), "{o:?}");
    }
}

#[test]
fn default_backends_name_their_ingress() {
    let mut s = snapshot();
    let backend = route("/", Some(s.clusters[1].key.clone())).backend;
    s.default_backend = Some(backend.clone());
    s.default_backend_ingress = Some(ingress("fallback"));
    Arc::make_mut(&mut s.virtual_hosts[0]).default_backend = Some(backend.clone());
    Arc::make_mut(&mut s.virtual_hosts[0]).default_backend_ingress = Some(ingress("web"));
    s.validate().unwrap();
    let json = serde_json::to_string(&s).unwrap();
    assert!(
        json.contains(
            r#""default_backend_ingress":{"kind":"Ingress","namespace":"shop","name":"fallback"}"#
        ),
        "{json}"
    );
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    let mut other = s.clone();
    other.default_backend_ingress = Some(ingress("web"));
    assert!(!s.same_content(&other), "the owner is content");

    // A backend without its owner: a hand-written snapshot, served with the defaults.
    let mut unowned = s.clone();
    unowned.default_backend_ingress = None;
    Arc::make_mut(&mut unowned.virtual_hosts[0]).default_backend_ingress = None;
    unowned.validate().unwrap();

    let mut ownerless = snapshot();
    ownerless.default_backend_ingress = Some(ingress("fallback"));
    let err = ownerless.validate().unwrap_err().to_string();
    assert!(err.contains("the catch-all"), "{err}");
    let mut ownerless = snapshot();
    Arc::make_mut(&mut ownerless.virtual_hosts[0]).default_backend_ingress = Some(ingress("web"));
    let err = ownerless.validate().unwrap_err().to_string();
    assert!(err.contains("virtual host shop.example.com"), "{err}");
}

/// An Ingress reference is an `IngressRef`, so a snapshot cannot hold one of another kind; a
/// hand-written snapshot that names one does not read, wherever the reference is.
#[test]
fn an_ingress_reference_of_another_kind_does_not_read() {
    let mut s = snapshot();
    let backend = route("/", Some(s.clusters[1].key.clone())).backend;
    Arc::make_mut(&mut s.virtual_hosts[0]).default_backend = Some(backend);
    Arc::make_mut(&mut s.virtual_hosts[0]).default_backend_ingress = Some(ingress("web"));
    s.ingress_options = vec![Arc::new(IngressOptions {
        ingress: ingress("web"),
        use_regex: true,
        ..IngressOptions::default()
    })];
    let json = serde_json::to_string(&s).unwrap();
    let ingress_json = r#"{"kind":"Ingress","namespace":"shop","name":"web"}"#;
    assert_eq!(json.matches(ingress_json).count(), 3, "{json}");
    assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), s);
    let service_json = r#"{"kind":"Service","namespace":"shop","name":"web"}"#;
    for at in 0..3 {
        let mut n = 0;
        let edited =
            json.split(ingress_json)
                .enumerate()
                .fold(String::new(), |mut out, (i, part)| {
                    if i > 0 {
                        out.push_str(if n == at { service_json } else { ingress_json });
                        n += 1;
                    }
                    out.push_str(part);
                    out
                });
        let err = serde_json::from_str::<Snapshot>(&edited)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(r#"a reference to an Ingress has kind "Service" (for shop/web)"#),
            "{err}"
        );
    }
}

#[test]
fn canary_weights_and_clusters_are_checked() {
    let web = snapshot().clusters[1].key.clone();
    let gone = ClusterKey {
        namespace: "shop".into(),
        service: "gone".into(),
        port: 80,
        protocol: Protocol::TCP,
    };
    for (c, ok) in [
        (canary(Some(web.clone())), true),
        (canary(None), true),
        (canary(Some(gone)), false),
        (
            Canary {
                weight: 101,
                ..canary(Some(web.clone()))
            },
            false,
        ),
        (
            Canary {
                weight: 0,
                weight_total: 0,
                ..canary(Some(web.clone()))
            },
            false,
        ),
    ] {
        let mut s = snapshot();
        Arc::make_mut(&mut s.virtual_hosts[0]).routes[0].canary = Some(c.clone());
        assert_eq!(s.validate().is_ok(), ok, "{c:?}");
    }
}

#[test]
fn path_pattern_anchors_and_ignores_case() {
    assert_eq!(
        IngressOptions::path_pattern("/api(/|$)(.*)"),
        "(?i)^(?:/api(/|$)(.*))"
    );
}

/// kube-system/kube-dns: `53/UDP` and `53/TCP` are two ports, two clusters (issue 12, item 1).
#[test]
fn one_port_number_on_two_protocols_is_two_clusters() {
    let mut s = snapshot();
    let mut dns = service("dns", 53);
    dns.ports.push(ServicePort {
        name: "dns-tcp".into(),
        ..dns.ports[0].clone()
    });
    dns.ports[0].name = "dns".into();
    dns.ports[0].protocol = Protocol::UDP;
    s.services.insert(1, Arc::new(dns));
    let mut udp = cluster("dns", 53);
    udp.key.protocol = Protocol::UDP;
    s.clusters.insert(1, Arc::new(cluster("dns", 53)));
    s.clusters.insert(2, Arc::new(udp));
    assert_eq!(s.validate(), Ok(()));
    assert_eq!(s.clusters[1].key.to_string(), "shop/dns:53");
    assert_eq!(s.clusters[2].key.to_string(), "shop/dns:53/UDP");

    // The same (port, protocol) twice in one Service is not two ports.
    let mut twice = s.clone();
    Arc::make_mut(&mut twice.services[1]).ports[1].protocol = Protocol::UDP;
    let err = twice.validate().unwrap_err().to_string();
    assert!(err.contains("shop/dns has port 53/UDP twice"), "{err}");

    // A cluster needs a Service port of its own protocol.
    let mut sctp = s.clone();
    Arc::make_mut(&mut sctp.clusters[2]).key.protocol = Protocol::SCTP;
    let err = sctp.validate().unwrap_err().to_string();
    assert!(
        err.contains("cluster shop/dns:53/SCTP has no service port"),
        "{err}"
    );
}

#[test]
fn a_cluster_key_without_protocol_reads_as_tcp() {
    let key: ClusterKey =
        serde_json::from_str(r#"{"namespace":"shop","service":"web","port":80}"#).unwrap();
    assert_eq!(key.protocol, Protocol::TCP);
}

#[test]
fn namespaces_are_sorted_and_unique() {
    let mut s = snapshot();
    s.namespaces = vec!["default".into(), "shop".into()];
    assert_eq!(s.validate(), Ok(()));
    s.namespaces = vec!["shop".into(), "default".into()];
    let err = s.validate().unwrap_err().to_string();
    assert!(
        err.contains("namespaces not sorted or not unique at default"),
        "{err}"
    );
}
