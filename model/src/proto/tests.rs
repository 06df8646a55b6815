use std::net::IpAddr;
use std::sync::Arc;

use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::snapshot as m;

/// Model → proto → bytes → proto → model.
fn shared<T>(items: Vec<T>) -> Vec<Arc<T>> {
    items.into_iter().map(Arc::new).collect()
}

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
        // The mesh's part is not on the wire (`Snapshot::mesh`): sidecars are sent theirs.
        let on_the_wire = m::Snapshot {
            mesh: m::Mesh::default(),
            ..snapshot.clone()
        };
        assert_eq!(round_trip(&snapshot), on_the_wire, "{}", path.display());
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
        proptest::option::of((name(), name(), name(), opt_name())),
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
                    target: target.map(|(kind, namespace, name, service_account)| m::TargetRef {
                        kind,
                        namespace,
                        name,
                        // Only a Pod the control plane holds can be known to run the sidecar.
                        meshed: service_account.is_some(),
                        service_account,
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
                services: shared(services),
                namespaces,
                clusters: shared(clusters),
                virtual_hosts: shared(virtual_hosts),
                default_backend,
                default_backend_ingress,
                certificates: shared(certificates),
                ingress_options: shared(ingress_options),
                mesh: m::Mesh::default(),
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
        clusters: vec![Arc::new(m::Cluster {
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
        })],
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

// ---- incremental updates ----

/// Sorted by key, one item per key: the canonical order translate makes.
fn canon<T, K: Ord>(mut items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    items.sort_by_key(&key);
    items.dedup_by(|a, b| key(a) == key(b));
    items
}

fn canonical(s: m::Snapshot) -> m::Snapshot {
    m::Snapshot {
        services: canon(s.services, |s| (s.namespace.clone(), s.name.clone())),
        namespaces: canon(s.namespaces, Clone::clone),
        clusters: canon(s.clusters, |c| c.key.clone()),
        virtual_hosts: canon(s.virtual_hosts, |v| v.host.clone()),
        certificates: canon(s.certificates, |c| (c.namespace.clone(), c.secret.clone())),
        ingress_options: canon(s.ingress_options, |o| o.ingress.clone()),
        ..s
    }
}

/// A changed collection: each old item kept, dropped, or given fresh content under its key
/// (by `choice`), then the fresh items added.
/// Kept items are shared with the old view, as a part's applied delta shares them.
fn mix<T: Clone>(
    old: &[Arc<T>],
    fresh: &[Arc<T>],
    choice: &[u8],
    rekey: impl Fn(&mut T, &T),
) -> Vec<Arc<T>> {
    let mut out = Vec::new();
    for (i, item) in old.iter().enumerate() {
        match choice.get(i).copied().unwrap_or(0) % 3 {
            0 => out.push(item.clone()),
            1 => {}
            _ => match fresh.get(i % fresh.len().max(1)) {
                Some(f) => {
                    let mut changed = (**f).clone();
                    rekey(&mut changed, item);
                    out.push(Arc::new(changed));
                }
                None => out.push(item.clone()),
            },
        }
    }
    out.extend(fresh.iter().cloned());
    out
}

/// Two views of one cluster: the new one keeps, drops, changes and adds items of the old.
fn views() -> impl Strategy<Value = (m::Snapshot, m::Snapshot)> {
    (
        snapshot(),
        snapshot(),
        proptest::collection::vec(any::<u8>(), 0..4),
        any::<[bool; 2]>(),
    )
        .prop_map(|(old, fresh, choice, [namespaces, default])| {
            let old = canonical(old);
            let new = m::Snapshot {
                version: old.version.wrapping_add(1),
                services: mix(&old.services, &fresh.services, &choice, |s, o| {
                    s.namespace.clone_from(&o.namespace);
                    s.name.clone_from(&o.name);
                }),
                namespaces: if namespaces {
                    fresh.namespaces
                } else {
                    old.namespaces.clone()
                },
                clusters: mix(&old.clusters, &fresh.clusters, &choice, |c, o| {
                    c.key = o.key.clone();
                }),
                virtual_hosts: mix(&old.virtual_hosts, &fresh.virtual_hosts, &choice, |v, o| {
                    v.host = o.host.clone();
                }),
                default_backend: if default {
                    fresh.default_backend
                } else {
                    old.default_backend.clone()
                },
                default_backend_ingress: if default {
                    fresh.default_backend_ingress
                } else {
                    old.default_backend_ingress.clone()
                },
                certificates: mix(&old.certificates, &fresh.certificates, &choice, |c, o| {
                    c.namespace.clone_from(&o.namespace);
                    c.secret.clone_from(&o.secret);
                }),
                ingress_options: mix(
                    &old.ingress_options,
                    &fresh.ingress_options,
                    &choice,
                    |i, o| {
                        i.ingress = o.ingress.clone();
                    },
                ),
                mesh: m::Mesh::default(),
            };
            (old, canonical(new))
        })
}

proptest! {
    #[test]
    fn applying_the_diff_to_the_old_view_gives_the_new_one((old, new) in views()) {
        let diff = delta::diff(&old, &new).expect("canonical views have a delta");
        // Through the wire, as a part receives it.
        let diff = Delta::decode(diff.encode_to_vec().as_slice()).expect("decodes");
        let applied = delta::apply(&old, old.version, diff, new.version).expect("applies");
        prop_assert_eq!(applied, new);
    }

    #[test]
    fn a_view_diffed_with_itself_changes_nothing(old in snapshot()) {
        let old = canonical(old);
        let diff = delta::diff(&old, &old).expect("canonical");
        prop_assert!(delta::is_empty(&diff), "{:?}", diff);
    }
}

fn big_snapshot(services: usize, endpoints: usize) -> m::Snapshot {
    let mut snapshot = m::Snapshot {
        version: 7,
        namespaces: vec!["default".to_owned()],
        ..m::Snapshot::default()
    };
    for s in 0..services {
        let name = format!("svc-{s:05}");
        let addresses: Vec<IpAddr> = (0..endpoints)
            .map(|e| IpAddr::from([10, (s >> 8) as u8, s as u8, e as u8]))
            .collect();
        snapshot.services.push(Arc::new(m::Service {
            namespace: "default".to_owned(),
            name: name.clone(),
            service_type: m::ServiceType::ClusterIP,
            cluster_ips: vec![IpAddr::from([10, 96, (s >> 8) as u8, s as u8])],
            headless: false,
            external_name: None,
            ports: vec![m::ServicePort {
                name: "http".to_owned(),
                port: 8080,
                protocol: m::Protocol::TCP,
                app_protocol: None,
                target_port: m::TargetPort::Number(8080),
                node_port: None,
            }],
            session_affinity: m::SessionAffinity::None,
            publish_not_ready_addresses: false,
            endpoints: addresses
                .iter()
                .map(|&address| m::ServiceEndpoint {
                    address,
                    ready: true,
                    serving: true,
                    terminating: false,
                    hostname: None,
                    node_name: Some("node-1".to_owned()),
                    zone: None,
                    target: Some(m::TargetRef {
                        kind: "Pod".to_owned(),
                        namespace: "default".to_owned(),
                        name: format!("{name}-{address}"),
                        service_account: Some("default".to_owned()),
                        meshed: true,
                    }),
                })
                .collect(),
        }));
        snapshot.clusters.push(Arc::new(m::Cluster {
            key: m::ClusterKey {
                namespace: "default".to_owned(),
                service: name,
                port: 8080,
                protocol: m::Protocol::TCP,
            },
            port_name: "http".to_owned(),
            app_protocol: None,
            session_affinity: m::SessionAffinity::None,
            endpoints: addresses
                .iter()
                .map(|&address| m::Endpoint {
                    address,
                    port: 8080,
                    ready: true,
                    serving: true,
                    terminating: false,
                    zone: None,
                })
                .collect(),
        }));
    }
    snapshot
}

/// The figure the issue asks for: bytes on the wire for one endpoint turning unready, in a
/// cluster of 10,000 Services with 100,000 endpoints, whole view against delta. Asserted
/// structurally: the delta carries the one Service and its one cluster, nothing else.
#[test]
fn one_endpoint_change_costs_one_service_and_one_cluster_on_the_wire() {
    let old = big_snapshot(10_000, 10);
    let mut new = old.clone();
    new.version += 1;
    Arc::make_mut(&mut new.services[4321]).endpoints[3].ready = false;
    Arc::make_mut(&mut new.clusters[4321]).endpoints[3].ready = false;
    let diff = delta::diff(&old, &new).expect("canonical");
    assert_eq!(diff.services.len(), 1);
    assert_eq!(diff.clusters.len(), 1);
    assert!(diff.removed_services.is_empty() && diff.removed_clusters.is_empty());
    let full = Snapshot::from(&new).encoded_len();
    let incremental = diff.encoded_len();
    println!(
        "one endpoint change, 10,000 Services / 100,000 endpoints: whole view {full} bytes, delta {incremental} bytes"
    );
    assert!(incremental * 1000 < full, "{incremental} of {full}");
    let applied = delta::apply(&old, old.version, diff, new.version).unwrap();
    assert_eq!(applied, new);
}

#[test]
fn a_delta_for_another_base_is_refused_naming_both_versions() {
    let old = canonical(big_snapshot(2, 1));
    let mut new = old.clone();
    new.version += 1;
    new.namespaces.push("shop".to_owned());
    let diff = delta::diff(&old, &new).unwrap();
    let e = delta::apply(&old, 3, diff, new.version).unwrap_err();
    assert_eq!(e.field, "delta.base_version");
    assert!(
        e.reason.contains("version 7") && e.reason.contains("version 3"),
        "{e}"
    );
}

#[test]
fn a_delta_that_does_not_fit_the_view_is_refused_by_field() {
    let old = big_snapshot(2, 1);
    let remove_absent = Delta {
        base_version: old.version,
        removed_services: vec![ServiceKey {
            namespace: "default".to_owned(),
            name: "nowhere".to_owned(),
        }],
        ..Delta::default()
    };
    let e = delta::apply(&old, old.version, remove_absent, 8).unwrap_err();
    assert_eq!(e.field, "delta.removed_services");
    assert!(
        e.reason.contains("nowhere") && e.reason.contains("not in the view"),
        "{e}"
    );

    let wire = Snapshot::from(&old).services[0].clone();
    let twice = Delta {
        base_version: old.version,
        services: vec![wire.clone(), wire],
        ..Delta::default()
    };
    let e = delta::apply(&old, old.version, twice, 8).unwrap_err();
    assert_eq!(e.field, "delta.services");

    let bad = Delta {
        base_version: old.version,
        services: vec![Service::default()],
        ..Delta::default()
    };
    let e = delta::apply(&old, old.version, bad, 8).unwrap_err();
    assert_eq!(e.field, "delta.services[0].type");
}

#[test]
fn a_view_out_of_canonical_order_has_no_delta() {
    let old = big_snapshot(2, 1);
    let mut new = old.clone();
    new.services.reverse();
    assert!(delta::diff(&old, &new).is_none());
    assert!(delta::diff(&new, &old).is_none());
}
