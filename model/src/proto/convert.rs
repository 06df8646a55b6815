//! Snapshot ⇄ wire messages. Model → proto cannot fail; proto → model checks what the wire
//! allows and the model does not, naming the field (`services[2].ports[0].port`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::proto as pb;
use crate::snapshot as m;

/// A wire snapshot the model cannot hold: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("snapshot field {field}: {reason}")]
pub struct ProtoError {
    pub field: String,
    pub reason: String,
}

pub(super) fn err<T>(field: &str, reason: impl Into<String>) -> Result<T, ProtoError> {
    Err(ProtoError {
        field: field.to_owned(),
        reason: reason.into(),
    })
}

pub(super) fn at(base: &str, field: &str) -> String {
    format!("{base}.{field}")
}

pub(super) fn at_index(base: &str, field: &str, i: usize) -> String {
    format!("{base}.{field}[{i}]")
}

/// Converts every item of a list, each named by its index for the error
/// (`snapshot.clusters[3]`).
pub(super) fn each<P, M>(
    items: Vec<P>,
    base: &str,
    field: &str,
    convert: impl Fn(P, &str) -> Result<M, ProtoError>,
) -> Result<Vec<M>, ProtoError> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| convert(item, &at_index(base, field, i)))
        .collect()
}

/// A conversion whose item a snapshot holds shared (`Arc`).
pub(super) fn shared<P, M>(
    convert: impl Fn(P, &str) -> Result<M, ProtoError>,
) -> impl Fn(P, &str) -> Result<Arc<M>, ProtoError> {
    move |item, field| convert(item, field).map(Arc::new)
}

// ---- model → proto ----

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn protocol(p: m::Protocol) -> i32 {
    (match p {
        m::Protocol::TCP => pb::Protocol::Tcp,
        m::Protocol::UDP => pb::Protocol::Udp,
        m::Protocol::SCTP => pb::Protocol::Sctp,
    }) as i32
}

fn affinity(a: m::SessionAffinity) -> pb::SessionAffinity {
    pb::SessionAffinity {
        client_ip: match a {
            m::SessionAffinity::None => None,
            m::SessionAffinity::ClientIP { timeout_seconds } => {
                Some(pb::ClientIpAffinity { timeout_seconds })
            }
        },
    }
}

pub(super) fn ingress_ref(r: &m::IngressRef) -> pb::IngressRef {
    pb::IngressRef {
        namespace: r.namespace.clone(),
        name: r.name.clone(),
    }
}

pub(super) fn cluster_key(k: &m::ClusterKey) -> pb::ClusterKey {
    pb::ClusterKey {
        namespace: k.namespace.clone(),
        service: k.service.clone(),
        port: k.port.into(),
        protocol: protocol(k.protocol),
    }
}

pub(super) fn backend(b: &m::Backend) -> pb::Backend {
    let kind = match b {
        m::Backend::Service {
            namespace,
            name,
            port,
            cluster,
        } => pb::backend::Kind::Service(pb::ServiceBackend {
            namespace: namespace.clone(),
            name: name.clone(),
            port: Some(match port {
                m::BackendPort::Number(n) => pb::service_backend::Port::PortNumber((*n).into()),
                m::BackendPort::Name(s) => pb::service_backend::Port::PortName(s.clone()),
            }),
            cluster: cluster.as_ref().map(cluster_key),
        }),
        m::Backend::Resource {
            namespace,
            api_group,
            resource_kind,
            name,
        } => pb::backend::Kind::Resource(pb::ResourceBackend {
            namespace: namespace.clone(),
            api_group: api_group.clone(),
            resource_kind: resource_kind.clone(),
            name: name.clone(),
        }),
    };
    pb::Backend { kind: Some(kind) }
}

pub(super) fn service(s: &m::Service) -> pb::Service {
    pb::Service {
        namespace: s.namespace.clone(),
        name: s.name.clone(),
        r#type: (match s.service_type {
            m::ServiceType::ClusterIP => pb::ServiceType::ClusterIp,
            m::ServiceType::NodePort => pb::ServiceType::NodePort,
            m::ServiceType::LoadBalancer => pb::ServiceType::LoadBalancer,
            m::ServiceType::ExternalName => pb::ServiceType::ExternalName,
        }) as i32,
        cluster_ips: s.cluster_ips.iter().map(|ip| ip_bytes(*ip)).collect(),
        headless: s.headless,
        external_name: s.external_name.clone(),
        ports: s
            .ports
            .iter()
            .map(|p| pb::ServicePort {
                name: p.name.clone(),
                port: p.port.into(),
                protocol: protocol(p.protocol),
                app_protocol: p.app_protocol.clone(),
                target_port: Some(match &p.target_port {
                    m::TargetPort::Number(n) => {
                        pb::service_port::TargetPort::TargetPortNumber((*n).into())
                    }
                    m::TargetPort::Name(s) => {
                        pb::service_port::TargetPort::TargetPortName(s.clone())
                    }
                }),
                node_port: p.node_port.map(u32::from),
            })
            .collect(),
        session_affinity: Some(affinity(s.session_affinity)),
        publish_not_ready_addresses: s.publish_not_ready_addresses,
        endpoints: s
            .endpoints
            .iter()
            .map(|e| pb::ServiceEndpoint {
                address: ip_bytes(e.address),
                ready: e.ready,
                serving: e.serving,
                terminating: e.terminating,
                hostname: e.hostname.clone(),
                node_name: e.node_name.clone(),
                zone: e.zone.clone(),
                target: e.target.as_ref().map(|t| pb::TargetRef {
                    kind: t.kind.clone(),
                    namespace: t.namespace.clone(),
                    name: t.name.clone(),
                    service_account: t.service_account.clone(),
                    meshed: t.meshed,
                }),
            })
            .collect(),
    }
}

pub(super) fn cluster(c: &m::Cluster) -> pb::Cluster {
    pb::Cluster {
        key: Some(cluster_key(&c.key)),
        port_name: c.port_name.clone(),
        app_protocol: c.app_protocol.clone(),
        session_affinity: Some(affinity(c.session_affinity)),
        endpoints: c
            .endpoints
            .iter()
            .map(|e| pb::Endpoint {
                address: ip_bytes(e.address),
                port: e.port.into(),
                ready: e.ready,
                serving: e.serving,
                terminating: e.terminating,
                zone: e.zone.clone(),
            })
            .collect(),
    }
}

fn path_type(p: m::PathType) -> i32 {
    (match p {
        m::PathType::Exact => pb::PathType::Exact,
        m::PathType::Prefix => pb::PathType::Prefix,
        m::PathType::ImplementationSpecific => pb::PathType::ImplementationSpecific,
    }) as i32
}

pub(super) fn virtual_host(v: &m::VirtualHost) -> pb::VirtualHost {
    pb::VirtualHost {
        host: v.host.to_string(),
        tls: v.tls,
        routes: v
            .routes
            .iter()
            .map(|r| pb::Route {
                path: r.path.clone(),
                path_type: path_type(r.path_type),
                backend: Some(backend(&r.backend)),
                ingress: Some(ingress_ref(&r.ingress)),
                canary: r.canary.as_ref().map(|c| pb::Canary {
                    backend: Some(backend(&c.backend)),
                    ingress: Some(ingress_ref(&c.ingress)),
                    weight: c.weight,
                    weight_total: c.weight_total,
                    by_header: c.by_header.clone(),
                    by_header_value: c.by_header_value.clone(),
                    by_cookie: c.by_cookie.clone(),
                }),
            })
            .collect(),
        default_backend: v.default_backend.as_ref().map(backend),
        default_backend_ingress: v.default_backend_ingress.as_ref().map(ingress_ref),
    }
}

pub(super) fn ingress_options(o: &m::IngressOptions) -> pb::IngressOptions {
    pb::IngressOptions {
        ingress: Some(ingress_ref(&o.ingress)),
        rewrite_target: o.rewrite_target.clone(),
        use_regex: o.use_regex,
        backend_protocol: o.backend_protocol.map(|p| {
            (match p {
                m::BackendProtocol::HTTP => pb::BackendProtocol::Http,
                m::BackendProtocol::HTTPS => pb::BackendProtocol::Https,
                m::BackendProtocol::GRPC => pb::BackendProtocol::Grpc,
                m::BackendProtocol::GRPCS => pb::BackendProtocol::Grpcs,
                m::BackendProtocol::H2C => pb::BackendProtocol::H2c,
            }) as i32
        }),
        proxy_body_size: o.proxy_body_size,
        proxy_connect_timeout_ms: o.proxy_connect_timeout_ms,
        proxy_read_timeout_ms: o.proxy_read_timeout_ms,
        proxy_send_timeout_ms: o.proxy_send_timeout_ms,
        ssl_redirect: o.ssl_redirect,
        force_ssl_redirect: o.force_ssl_redirect,
        app_root: o.app_root.clone(),
        affinity: o.affinity.as_ref().map(|a| pb::CookieAffinity {
            name: a.name.clone(),
            max_age_seconds: a.max_age_seconds,
            path: a.path.clone(),
        }),
    }
}

pub(super) fn certificate(c: &m::Certificate) -> pb::Certificate {
    pb::Certificate {
        namespace: c.namespace.clone(),
        secret: c.secret.clone(),
        hosts: c.hosts.clone(),
        cert_pem: c.cert_pem.clone(),
        key_pem: c.key_pem.clone(),
    }
}

impl From<&m::Snapshot> for pb::Snapshot {
    fn from(s: &m::Snapshot) -> pb::Snapshot {
        pb::Snapshot {
            version: s.version,
            services: s.services.iter().map(|x| service(x)).collect(),
            namespaces: s.namespaces.clone(),
            clusters: s.clusters.iter().map(|x| cluster(x)).collect(),
            virtual_hosts: s.virtual_hosts.iter().map(|x| virtual_host(x)).collect(),
            default_backend: s.default_backend.as_ref().map(backend),
            default_backend_ingress: s.default_backend_ingress.as_ref().map(ingress_ref),
            certificates: s.certificates.iter().map(|x| certificate(x)).collect(),
            ingress_options: s
                .ingress_options
                .iter()
                .map(|x| ingress_options(x))
                .collect(),
        }
    }
}

// ---- proto → model ----

fn to_ip(bytes: &[u8], field: &str) -> Result<IpAddr, ProtoError> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Ok(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Ok(IpAddr::V6(Ipv6Addr::from(v6)))
    } else {
        err(
            field,
            format!("an address is 4 or 16 bytes, not {}", bytes.len()),
        )
    }
}

fn to_port(n: u32, field: &str) -> Result<u16, ProtoError> {
    u16::try_from(n).or_else(|_| err(field, format!("{n} is not a port (at most 65535)")))
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, ProtoError> {
    value.map_or_else(|| err(field, "missing"), Ok)
}

fn to_protocol(p: i32, field: &str) -> Result<m::Protocol, ProtoError> {
    match pb::Protocol::try_from(p) {
        Ok(pb::Protocol::Tcp) => Ok(m::Protocol::TCP),
        Ok(pb::Protocol::Udp) => Ok(m::Protocol::UDP),
        Ok(pb::Protocol::Sctp) => Ok(m::Protocol::SCTP),
        _ => err(field, format!("unknown protocol {p}")),
    }
}

fn to_affinity(a: Option<pb::SessionAffinity>) -> m::SessionAffinity {
    match a.and_then(|a| a.client_ip) {
        None => m::SessionAffinity::None,
        Some(c) => m::SessionAffinity::ClientIP {
            timeout_seconds: c.timeout_seconds,
        },
    }
}

pub(super) fn to_ingress_ref(
    r: Option<pb::IngressRef>,
    field: &str,
) -> Result<m::IngressRef, ProtoError> {
    let r = required(r, field)?;
    Ok(m::IngressRef {
        namespace: r.namespace,
        name: r.name,
    })
}

pub(super) fn to_cluster_key(
    k: Option<pb::ClusterKey>,
    field: &str,
) -> Result<m::ClusterKey, ProtoError> {
    let k = required(k, field)?;
    Ok(m::ClusterKey {
        namespace: k.namespace,
        service: k.service,
        port: to_port(k.port, &at(field, "port"))?,
        protocol: to_protocol(k.protocol, &at(field, "protocol"))?,
    })
}

pub(super) fn to_backend(b: Option<pb::Backend>, field: &str) -> Result<m::Backend, ProtoError> {
    match required(required(b, field)?.kind, &at(field, "kind"))? {
        pb::backend::Kind::Service(s) => Ok(m::Backend::Service {
            namespace: s.namespace,
            name: s.name,
            port: match required(s.port, &at(field, "service.port"))? {
                pb::service_backend::Port::PortNumber(n) => {
                    m::BackendPort::Number(to_port(n, &at(field, "service.port_number"))?)
                }
                pb::service_backend::Port::PortName(name) => m::BackendPort::Name(name),
            },
            cluster: s
                .cluster
                .map(|k| to_cluster_key(Some(k), &at(field, "service.cluster")))
                .transpose()?,
        }),
        pb::backend::Kind::Resource(r) => Ok(m::Backend::Resource {
            namespace: r.namespace,
            api_group: r.api_group,
            resource_kind: r.resource_kind,
            name: r.name,
        }),
    }
}

pub(super) fn to_service(s: pb::Service, field: &str) -> Result<m::Service, ProtoError> {
    let service_type = match pb::ServiceType::try_from(s.r#type) {
        Ok(pb::ServiceType::ClusterIp) => m::ServiceType::ClusterIP,
        Ok(pb::ServiceType::NodePort) => m::ServiceType::NodePort,
        Ok(pb::ServiceType::LoadBalancer) => m::ServiceType::LoadBalancer,
        Ok(pb::ServiceType::ExternalName) => m::ServiceType::ExternalName,
        _ => return err(&at(field, "type"), format!("unknown type {}", s.r#type)),
    };
    let cluster_ips = s
        .cluster_ips
        .iter()
        .enumerate()
        .map(|(i, ip)| to_ip(ip, &at_index(field, "cluster_ips", i)))
        .collect::<Result<_, _>>()?;
    let ports = s
        .ports
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let f = at_index(field, "ports", i);
            Ok(m::ServicePort {
                name: p.name,
                port: to_port(p.port, &at(&f, "port"))?,
                protocol: to_protocol(p.protocol, &at(&f, "protocol"))?,
                app_protocol: p.app_protocol,
                target_port: match required(p.target_port, &at(&f, "target_port"))? {
                    pb::service_port::TargetPort::TargetPortNumber(n) => {
                        m::TargetPort::Number(to_port(n, &at(&f, "target_port_number"))?)
                    }
                    pb::service_port::TargetPort::TargetPortName(name) => m::TargetPort::Name(name),
                },
                node_port: p
                    .node_port
                    .map(|n| to_port(n, &at(&f, "node_port")))
                    .transpose()?,
            })
        })
        .collect::<Result<_, ProtoError>>()?;
    let endpoints = s
        .endpoints
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let f = at_index(field, "endpoints", i);
            Ok(m::ServiceEndpoint {
                address: to_ip(&e.address, &at(&f, "address"))?,
                ready: e.ready,
                serving: e.serving,
                terminating: e.terminating,
                hostname: e.hostname,
                node_name: e.node_name,
                zone: e.zone,
                target: e.target.map(|t| m::TargetRef {
                    kind: t.kind,
                    namespace: t.namespace,
                    name: t.name,
                    service_account: t.service_account,
                    meshed: t.meshed,
                }),
            })
        })
        .collect::<Result<_, ProtoError>>()?;
    Ok(m::Service {
        namespace: s.namespace,
        name: s.name,
        service_type,
        cluster_ips,
        headless: s.headless,
        external_name: s.external_name,
        ports,
        session_affinity: to_affinity(s.session_affinity),
        publish_not_ready_addresses: s.publish_not_ready_addresses,
        endpoints,
    })
}

pub(super) fn to_cluster(c: pb::Cluster, field: &str) -> Result<m::Cluster, ProtoError> {
    Ok(m::Cluster {
        key: to_cluster_key(c.key, &at(field, "key"))?,
        port_name: c.port_name,
        app_protocol: c.app_protocol,
        session_affinity: to_affinity(c.session_affinity),
        endpoints: c
            .endpoints
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let f = at_index(field, "endpoints", i);
                Ok(m::Endpoint {
                    address: to_ip(&e.address, &at(&f, "address"))?,
                    port: to_port(e.port, &at(&f, "port"))?,
                    ready: e.ready,
                    serving: e.serving,
                    terminating: e.terminating,
                    zone: e.zone,
                })
            })
            .collect::<Result<_, ProtoError>>()?,
    })
}

fn to_route(r: pb::Route, field: &str) -> Result<m::Route, ProtoError> {
    let path_type = match pb::PathType::try_from(r.path_type) {
        Ok(pb::PathType::Exact) => m::PathType::Exact,
        Ok(pb::PathType::Prefix) => m::PathType::Prefix,
        Ok(pb::PathType::ImplementationSpecific) => m::PathType::ImplementationSpecific,
        _ => {
            return err(
                &at(field, "path_type"),
                format!("unknown path type {}", r.path_type),
            );
        }
    };
    let canary = match r.canary {
        None => None,
        Some(c) => {
            let f = at(field, "canary");
            Some(m::Canary {
                backend: to_backend(c.backend, &at(&f, "backend"))?,
                ingress: to_ingress_ref(c.ingress, &at(&f, "ingress"))?,
                weight: c.weight,
                weight_total: c.weight_total,
                by_header: c.by_header,
                by_header_value: c.by_header_value,
                by_cookie: c.by_cookie,
            })
        }
    };
    Ok(m::Route {
        path: r.path,
        path_type,
        backend: to_backend(r.backend, &at(field, "backend"))?,
        ingress: to_ingress_ref(r.ingress, &at(field, "ingress"))?,
        canary,
    })
}

pub(super) fn to_virtual_host(
    v: pb::VirtualHost,
    field: &str,
) -> Result<m::VirtualHost, ProtoError> {
    Ok(m::VirtualHost {
        host: m::HostMatch::parse(&v.host),
        tls: v.tls,
        routes: each(v.routes, field, "routes", to_route)?,
        default_backend: v
            .default_backend
            .map(|b| to_backend(Some(b), &at(field, "default_backend")))
            .transpose()?,
        default_backend_ingress: v
            .default_backend_ingress
            .map(|r| to_ingress_ref(Some(r), &at(field, "default_backend_ingress")))
            .transpose()?,
    })
}

pub(super) fn to_ingress_options(
    o: pb::IngressOptions,
    field: &str,
) -> Result<m::IngressOptions, ProtoError> {
    let backend_protocol = match o.backend_protocol {
        None => None,
        Some(p) => Some(match pb::BackendProtocol::try_from(p) {
            Ok(pb::BackendProtocol::Http) => m::BackendProtocol::HTTP,
            Ok(pb::BackendProtocol::Https) => m::BackendProtocol::HTTPS,
            Ok(pb::BackendProtocol::Grpc) => m::BackendProtocol::GRPC,
            Ok(pb::BackendProtocol::Grpcs) => m::BackendProtocol::GRPCS,
            Ok(pb::BackendProtocol::H2c) => m::BackendProtocol::H2C,
            _ => {
                return err(
                    &at(field, "backend_protocol"),
                    format!("unknown backend protocol {p}"),
                );
            }
        }),
    };
    Ok(m::IngressOptions {
        ingress: to_ingress_ref(o.ingress, &at(field, "ingress"))?,
        rewrite_target: o.rewrite_target,
        use_regex: o.use_regex,
        backend_protocol,
        proxy_body_size: o.proxy_body_size,
        proxy_connect_timeout_ms: o.proxy_connect_timeout_ms,
        proxy_read_timeout_ms: o.proxy_read_timeout_ms,
        proxy_send_timeout_ms: o.proxy_send_timeout_ms,
        ssl_redirect: o.ssl_redirect,
        force_ssl_redirect: o.force_ssl_redirect,
        app_root: o.app_root,
        affinity: o.affinity.map(|a| m::CookieAffinity {
            name: a.name,
            max_age_seconds: a.max_age_seconds,
            path: a.path,
        }),
    })
}

pub(super) fn to_certificate(c: pb::Certificate) -> m::Certificate {
    m::Certificate {
        namespace: c.namespace,
        secret: c.secret,
        hosts: c.hosts,
        cert_pem: c.cert_pem,
        key_pem: c.key_pem,
    }
}

impl TryFrom<pb::Snapshot> for m::Snapshot {
    type Error = ProtoError;

    fn try_from(s: pb::Snapshot) -> Result<m::Snapshot, ProtoError> {
        let f = "snapshot";
        Ok(m::Snapshot {
            version: s.version,
            services: each(s.services, f, "services", shared(to_service))?,
            namespaces: s.namespaces,
            clusters: each(s.clusters, f, "clusters", shared(to_cluster))?,
            virtual_hosts: each(s.virtual_hosts, f, "virtual_hosts", shared(to_virtual_host))?,
            default_backend: s
                .default_backend
                .map(|b| to_backend(Some(b), &at(f, "default_backend")))
                .transpose()?,
            default_backend_ingress: s
                .default_backend_ingress
                .map(|r| to_ingress_ref(Some(r), &at(f, "default_backend_ingress")))
                .transpose()?,
            certificates: s
                .certificates
                .into_iter()
                .map(|c| Arc::new(to_certificate(c)))
                .collect(),
            ingress_options: each(
                s.ingress_options,
                f,
                "ingress_options",
                shared(to_ingress_options),
            )?,
            // Not on the wire (see `Snapshot::mesh`).
            mesh: m::Mesh::default(),
        })
    }
}
