//! Services → services and clusters: each Service with its ports, addresses and endpoints
//! (what DNS and the L4 proxy read), and one cluster per Service port (what a route forwards
//! to), with the endpoints [`crate::endpoints`] finds behind it. Reads Services and their
//! endpoint sets; nothing of Ingresses.

use std::net::IpAddr;

use ferry_model::{
    Cluster, Endpoint, Service, ServiceEndpoint, ServicePort, ServiceType, SessionAffinity,
    TargetPort,
};
use ferry_objects::object::Manifest;
use ferry_objects::store::Store;
use k8s_openapi::api::core::v1::Service as K8sService;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::endpoints::{self, EndpointSet, SliceIndex};

/// Kubernetes' default for `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// Every Service, in (namespace, name) order, and every cluster, in key order.
pub(super) fn services_and_clusters(store: &Store) -> (Vec<Service>, Vec<Cluster>) {
    let slices = SliceIndex::new(store);
    let mut services = Vec::new();
    let mut clusters = Vec::new();
    for (m, svc) in store.services() {
        let sets = endpoints::for_service(store, &slices, m.namespace(), m.name(), svc);
        let mut service = service(m, svc, &sets);
        service_accounts(store, &mut service);
        clusters.extend(service.ports.iter().map(|p| cluster(&service, p, &sets)));
        services.push(service);
    }
    // The store iterates in (namespace, name) order and (port, protocol) is unique per Service
    // (validated), so services are sorted; a Service's ports are in written order, so sort.
    clusters.sort_by(|a, b| a.key.cmp(&b.key));
    (services, clusters)
}

/// Each endpoint that stands for a Pod the store holds gets that Pod's ServiceAccount (`default`
/// when `spec.serviceAccountName` names none, as the ServiceAccount admission sets it): the
/// identity a sidecar expects the endpoint to present, and whether it runs the sidecar.
fn service_accounts(store: &Store, service: &mut Service) {
    for target in service
        .endpoints
        .iter_mut()
        .filter_map(|e| e.target.as_mut())
    {
        if target.kind != "Pod" {
            continue;
        }
        let namespace = if target.namespace.is_empty() {
            &service.namespace
        } else {
            &target.namespace
        };
        if let Some(pod) = store.pod(namespace, &target.name) {
            target.service_account = Some(super::mesh::service_account(pod).to_owned());
            target.meshed = super::mesh::meshed(pod);
        }
    }
}

fn service(m: &Manifest, svc: &K8sService, sets: &[EndpointSet]) -> Service {
    let spec = svc.spec.clone().unwrap_or_default();
    let service_type = match spec.type_.as_deref() {
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        _ => ServiceType::ClusterIP,
    };
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let written = match spec.cluster_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.to_vec(),
        _ => spec.cluster_ip.into_iter().collect(),
    };
    let cluster_ips = written
        .iter()
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .collect();
    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|p| ServicePort {
            name: p.name.clone().unwrap_or_default(),
            port: u16::try_from(p.port).unwrap_or_default(),
            protocol: endpoints::protocol(p.protocol.as_deref()),
            app_protocol: p.app_protocol.clone(),
            target_port: match &p.target_port {
                Some(IntOrString::String(s)) => TargetPort::Name(s.clone()),
                Some(IntOrString::Int(n)) => {
                    TargetPort::Number(u16::try_from(*n).unwrap_or_default())
                }
                None => TargetPort::Number(u16::try_from(p.port).unwrap_or_default()),
            },
            node_port: p
                .node_port
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| n != 0),
        })
        .collect();
    let session_affinity = match spec.session_affinity.as_deref() {
        Some("ClientIP") => SessionAffinity::ClientIP {
            timeout_seconds: spec
                .session_affinity_config
                .and_then(|c| c.client_ip)
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT),
        },
        _ => SessionAffinity::None,
    };

    // One entry per address: an address in several sets is ready if any set says so.
    let mut endpoints: Vec<ServiceEndpoint> = sets
        .iter()
        .flat_map(|s| &s.endpoints)
        .map(|e| ServiceEndpoint {
            address: e.address,
            ready: e.ready,
            serving: e.serving,
            terminating: e.terminating,
            hostname: e.hostname.clone(),
            node_name: e.node_name.clone(),
            zone: e.zone.clone(),
            target: e.target.clone(),
        })
        .collect();
    endpoints.sort_by_key(|e| e.address);
    endpoints.dedup_by(|later, first| {
        let same = later.address == first.address;
        if same {
            first.ready |= later.ready;
            first.serving |= later.serving;
            first.terminating &= later.terminating;
            first.hostname = first.hostname.take().or(later.hostname.take());
            first.node_name = first.node_name.take().or(later.node_name.take());
            first.zone = first.zone.take().or(later.zone.take());
            first.target = first.target.take().or(later.target.take());
        }
        same
    });

    Service {
        namespace: m.namespace().to_owned(),
        name: m.name().to_owned(),
        service_type,
        cluster_ips: if headless || service_type == ServiceType::ExternalName {
            Vec::new()
        } else {
            cluster_ips
        },
        headless,
        external_name: (service_type == ServiceType::ExternalName).then(|| {
            spec.external_name
                .unwrap_or_default()
                .trim_end_matches('.')
                .to_owned()
        }),
        ports,
        session_affinity,
        publish_not_ready_addresses: spec.publish_not_ready_addresses.unwrap_or(false),
        endpoints,
    }
}

/// The endpoints of one Service port: from every set, the port of the same name and protocol.
fn cluster(svc: &Service, port: &ServicePort, sets: &[EndpointSet]) -> Cluster {
    let mut endpoints = Vec::new();
    for set in sets {
        let Some(sp) = set
            .ports
            .iter()
            .find(|p| p.name == port.name && p.protocol == port.protocol)
        else {
            continue;
        };
        endpoints.extend(set.endpoints.iter().map(|e| Endpoint {
            address: e.address,
            port: sp.port,
            ready: e.ready,
            serving: e.serving,
            terminating: e.terminating,
            zone: e.zone.clone(),
        }));
    }
    endpoints.sort_by_key(|e| (e.address, e.port));
    endpoints.dedup_by(|later, first| {
        let same = (later.address, later.port) == (first.address, first.port);
        if same {
            first.ready |= later.ready;
            first.serving |= later.serving;
            first.terminating &= later.terminating;
        }
        same
    });
    Cluster {
        key: svc.cluster_key(port),
        port_name: port.name.clone(),
        app_protocol: port.app_protocol.clone(),
        session_affinity: svc.session_affinity,
        endpoints,
    }
}
