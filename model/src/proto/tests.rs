use std::net::IpAddr;

use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::snapshot as m;

/// Model → proto → bytes → proto → model.
fn round_trip(snapshot: &m::Snapshot) -> m::Snapshot {
    let bytes = Snapshot::from(snapshot).encode_to_vec();
    let decoded = Snapshot::decode(bytes.as_slice()).expect("decodes");
    m::Snapshot::try_from(decoded).expect("converts back")
}

#[test]
fn golden_snapshots_survive_the_wire() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../control/fixtures");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("control/fixtures") {
        let path = entry.expect("entry").path();
        if !path.to_string_lossy().ends_with(".golden.json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        // `{"snapshot": …, "warnings": …}`: what translate gives for the fixture.
        let golden: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let snapshot: m::Snapshot =
            serde_json::from_value(golden["snapshot"].clone()).expect("a snapshot");
        assert_eq!(round_trip(&snapshot), snapshot, "{}", path.display());
        seen += 1;
    }
    assert!(
        seen >= 4,
        "found only {seen} golden snapshots in {}",
        dir.display()
    );
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,6}"
}

fn opt_name() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(name())
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn protocol() -> impl Strategy<Value = m::Protocol> {
    prop_oneof![
        Just(m::Protocol::TCP),
        Just(m::Protocol::UDP),
        Just(m::Protocol::SCTP)
    ]
}

fn affinity() -> impl Strategy<Value = m::SessionAffinity> {
    prop_oneof![
        Just(m::SessionAffinity::None),
        any::<u32>().prop_map(|timeout_seconds| m::SessionAffinity::ClientIP { timeout_seconds }),
    ]
}

fn ingress_ref() -> impl Strategy<Value = m::IngressRef> {
    (name(), name()).prop_map(|(namespace, name)| m::IngressRef { namespace, name })
}

fn cluster_key() -> impl Strategy<Value = m::ClusterKey> {
    (name(), name(), any::<u16>(), protocol()).prop_map(|(namespace, service, port, protocol)| {
        m::ClusterKey {
            namespace,
            service,
            port,
            protocol,
        }
    })
}

fn backend() -> impl Strategy<Value = m::Backend> {
    prop_oneof![
        (
            name(),
            name(),
            prop_oneof![
                any::<u16>().prop_map(m::BackendPort::Number),
                name().prop_map(m::BackendPort::Name)
            ],
            proptest::option::of(cluster_key())
        )
            .prop_map(|(namespace, name, port, cluster)| m::Backend::Service {
                namespace,
                name,
                port,
                cluster
            }),
        (name(), opt_name(), name(), name()).prop_map(
            |(namespace, api_group, resource_kind, name)| m::Backend::Resource {
                namespace,
                api_group,
                resource_kind,
                name
            }
        ),
    ]
}

fn service() -> impl Strategy<Value = m::Service> {
    let port = (
        name(),
        any::<u16>(),
        protocol(),
        opt_name(),
        prop_oneof![
            any::<u16>().prop_map(m::TargetPort::Number),
            name().prop_map(m::TargetPort::Name)
        ],
        proptest::option::of(any::<u16>()),
    )
        .prop_map(
            |(name, port, protocol, app_protocol, target_port, node_port)| m::ServicePort {
                name,
                port,
                protocol,
                app_protocol,
                target_port,
                node_port,
            },
        );
    let endpoint = (
        ip(),
        any::<[bool; 3]>(),
        opt_name(),
        opt_name(),
        opt_name(),
        proptest::option::of((name(), name(), name())),
    )
        .prop_map(
            |(address, [ready, serving, terminating], hostname, node_name, zone, target)| {
                m::ServiceEndpoint {
                    address,
                    ready,
                    serving,
                    terminating,
                    hostname,
                    node_name,
                    zone,
                    target: target.map(|(kind, namespace, name)| m::TargetRef {
                        kind,
                        namespace,
                        name,
                    }),
                }
            },
        );
    let service_type = prop_oneof![
        Just(m::ServiceType::ClusterIP),
        Just(m::ServiceType::NodePort),
        Just(m::ServiceType::LoadBalancer),
        Just(m::ServiceType::ExternalName)
    ];
    (
        (
            name(),
            name(),
            service_type,
            proptest::collection::vec(ip(), 0..3),
        ),
        (
            any::<bool>(),
            opt_name(),
            proptest::collection::vec(port, 0..3),
        ),
        (
            affinity(),
            any::<bool>(),
            proptest::collection::vec(endpoint, 0..3),
        ),
    )
        .prop_map(
            |(
                (namespace, name, service_type, cluster_ips),
                (headless, external_name, ports),
                (session_affinity, publish_not_ready_addresses, endpoints),
            )| m::Service {
                namespace,
                name,
                service_type,
                cluster_ips,
                headless,
                external_name,
                ports,
                session_affinity,
                publish_not_ready_addresses,
                endpoints,
            },
        )
}

fn cluster() -> impl Strategy<Value = m::Cluster> {
    let endpoint = (ip(), any::<u16>(), any::<[bool; 3]>(), opt_name()).prop_map(
        |(address, port, [ready, serving, terminating], zone)| m::Endpoint {
            address,
            port,
            ready,
            serving,
            terminating,
            zone,
        },
    );
    (
        cluster_key(),
        name(),
        opt_name(),
        affinity(),
        proptest::collection::vec(endpoint, 0..3),
    )
        .prop_map(
            |(key, port_name, app_protocol, session_affinity, endpoints)| m::Cluster {
                key,
                port_name,
                app_protocol,
                session_affinity,
                endpoints,
            },
        )
}

fn virtual_host() -> impl Strategy<Value = m::VirtualHost> {
    let host = prop_oneof![
        name().prop_map(m::HostMatch::Exact),
        name().prop_map(|n| m::HostMatch::Wildcard(format!(".{n}"))),
        Just(m::HostMatch::Any),
    ];
    let path_type = prop_oneof![
        Just(m::PathType::Exact),
        Just(m::PathType::Prefix),
        Just(m::PathType::ImplementationSpecific)
    ];
    let canary = (
        backend(),
        ingress_ref(),
        any::<u32>(),
        any::<u32>(),
        opt_name(),
        opt_name(),
        opt_name(),
    )
        .prop_map(
            |(backend, ingress, weight, weight_total, by_header, by_header_value, by_cookie)| {
                m::Canary {
                    backend,
                    ingress,
                    weight,
                    weight_total,
                    by_header,
                    by_header_value,
                    by_cookie,
                }
            },
        );
    let route = (
        "/[a-z/]{0,8}",
        path_type,
        backend(),
        ingress_ref(),
        proptest::option::of(canary),
    )
        .prop_map(|(path, path_type, backend, ingress, canary)| m::Route {
            path,
            path_type,
            backend,
            ingress,
            canary,
        });
    (
        host,
        any::<bool>(),
        proptest::collection::vec(route, 0..3),
        proptest::option::of(backend()),
        proptest::option::of(ingress_ref()),
    )
        .prop_map(
            |(host, tls, routes, default_backend, default_backend_ingress)| m::VirtualHost {
                host,
                tls,
                routes,
                default_backend,
                default_backend_ingress,
            },
        )
}

fn ingress_options() -> impl Strategy<Value = m::IngressOptions> {
    let protocol = prop_oneof![
        Just(m::BackendProtocol::HTTP),
        Just(m::BackendProtocol::HTTPS),
        Just(m::BackendProtocol::GRPC),
        Just(m::BackendProtocol::GRPCS),
        Just(m::BackendProtocol::H2C)
    ];
    let cookie = (name(), proptest::option::of(any::<u64>()), opt_name()).prop_map(
        |(name, max_age_seconds, path)| m::CookieAffinity {
            name,
            max_age_seconds,
            path,
        },
    );
    (
        (
            ingress_ref(),
            opt_name(),
            any::<bool>(),
            proptest::option::of(protocol),
        ),
        proptest::option::of(any::<[u64; 4]>()),
        (
            proptest::option::of(any::<bool>()),
            any::<bool>(),
            opt_name(),
            proptest::option::of(cookie),
        ),
    )
        .prop_map(
            |(
                (ingress, rewrite_target, use_regex, backend_protocol),
                limits,
                (ssl_redirect, force_ssl_redirect, app_root, affinity),
            )| m::IngressOptions {
                ingress,
                rewrite_target,
                use_regex,
                backend_protocol,
                proxy_body_size: limits.map(|l| l[0]),
                proxy_connect_timeout_ms: limits.map(|l| l[1]),
                proxy_read_timeout_ms: limits.map(|l| l[2]),
                proxy_send_timeout_ms: limits.map(|l| l[3]),
                ssl_redirect,
                force_ssl_redirect,
                app_root,
                affinity,
            },
        )
}

fn snapshot() -> impl Strategy<Value = m::Snapshot> {
    let certificate = (
        name(),
        name(),
        proptest::collection::vec(name(), 0..3),
        ".{0,20}",
        ".{0,20}",
    )
        .prop_map(
            |(namespace, secret, hosts, cert_pem, key_pem)| m::Certificate {
                namespace,
                secret,
                hosts,
                cert_pem,
                key_pem,
            },
        );
    (
        (
            any::<u64>(),
            proptest::collection::vec(service(), 0..3),
            proptest::collection::vec(name(), 0..3),
            proptest::collection::vec(cluster(), 0..3),
        ),
        (
            proptest::collection::vec(virtual_host(), 0..3),
            proptest::option::of(backend()),
            proptest::option::of(ingress_ref()),
        ),
        (
            proptest::collection::vec(certificate, 0..3),
            proptest::collection::vec(ingress_options(), 0..3),
        ),
    )
        .prop_map(
            |(
                (version, services, namespaces, clusters),
                (virtual_hosts, default_backend, default_backend_ingress),
                (certificates, ingress_options),
            )| m::Snapshot {
                version,
                services,
                namespaces,
                clusters,
                virtual_hosts,
                default_backend,
                default_backend_ingress,
                certificates,
                ingress_options,
            },
        )
}

proptest! {
    #[test]
    fn any_snapshot_survives_the_wire(snapshot in snapshot()) {
        prop_assert_eq!(round_trip(&snapshot), snapshot);
    }
}

#[test]
fn a_port_past_65535_names_its_field() {
    let mut wire = Snapshot::from(&m::Snapshot {
        clusters: vec![m::Cluster {
            key: m::ClusterKey {
                namespace: "default".into(),
                service: "web".into(),
                port: 80,
                protocol: m::Protocol::TCP,
            },
            port_name: String::new(),
            app_protocol: None,
            session_affinity: m::SessionAffinity::None,
            endpoints: Vec::new(),
        }],
        ..m::Snapshot::default()
    });
    wire.clusters[0].key.as_mut().expect("key").port = 70_000;
    let e = m::Snapshot::try_from(wire).expect_err("refused");
    assert_eq!(e.field, "snapshot.clusters[0].key.port");
    assert!(e.reason.contains("70000"), "{e}");
}

#[test]
fn bad_addresses_and_missing_parts_are_refused_by_field() {
    let wire = Snapshot {
        services: vec![Service {
            cluster_ips: vec![vec![10, 0, 0]],
            r#type: ServiceType::ClusterIp as i32,
            ..Service::default()
        }],
        ..Snapshot::default()
    };
    let e = m::Snapshot::try_from(wire).expect_err("refused");
    assert_eq!(e.field, "snapshot.services[0].cluster_ips[0]");
    assert!(e.reason.contains("3"), "{e}");

    let wire = Snapshot {
        services: vec![Service::default()],
        ..Snapshot::default()
    };
    let e = m::Snapshot::try_from(wire).expect_err("an unspecified type is refused");
    assert_eq!(e.field, "snapshot.services[0].type");

    let wire = Snapshot {
        virtual_hosts: vec![VirtualHost {
            host: "a.example".into(),
            routes: vec![Route {
                path: "/".into(),
                path_type: PathType::Prefix as i32,
                backend: None,
                ..Route::default()
            }],
            ..VirtualHost::default()
        }],
        ..Snapshot::default()
    };
    let e = m::Snapshot::try_from(wire).expect_err("a route needs a backend");
    assert_eq!(e.field, "snapshot.virtual_hosts[0].routes[0].backend");
    assert_eq!(e.reason, "missing");
}
