//! What stands behind each Service, in one internal form, read as kube-proxy and CoreDNS read
//! it: from the EndpointSlices labelled with the Service's name (`kubernetes.io/service-name`),
//! whoever wrote them (a cluster's EndpointSlice controller, the one of `ferry up`'s local
//! cluster, a manifest). A Service without a selector and without slices falls back to its v1
//! Endpoints. Pods are not read here: turning the Pods a selector selects into endpoints is the
//! EndpointSlice controller's work.

use std::collections::HashMap;
use std::net::IpAddr;

use ferry_model::{Protocol, TargetRef};
use k8s_openapi::api::core::v1::{Endpoints, ObjectReference, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use ferry_objects::object::Kind;
use ferry_objects::store::Store;
use ferry_objects::validate::SERVICE_NAME_LABEL;

/// A port of an endpoint set, named as the Service port it serves.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SetPort {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    pub app_protocol: Option<String>,
}

/// One address with its conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetEndpoint {
    pub address: IpAddr,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub hostname: Option<String>,
    pub node_name: Option<String>,
    pub zone: Option<String>,
    pub target: Option<TargetRef>,
}

/// Endpoints that share their ports: an EndpointSlice or an Endpoints subset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointSet {
    pub ports: Vec<SetPort>,
    pub endpoints: Vec<SetEndpoint>,
}

pub(crate) fn protocol(p: Option<&str>) -> Protocol {
    match p {
        Some("UDP") => Protocol::UDP,
        Some("SCTP") => Protocol::SCTP,
        _ => Protocol::TCP,
    }
}

/// EndpointSlices by the Service named in their `kubernetes.io/service-name` label, so each
/// Service finds its own without looking at the others (as kube-proxy's slice cache).
#[derive(Debug, Default)]
pub struct SliceIndex<'a> {
    by_service: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
}

impl<'a> SliceIndex<'a> {
    pub fn new(store: &'a Store) -> Self {
        let mut index = SliceIndex::default();
        for (m, slice) in store.endpoint_slices() {
            let service = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let Some(service) = service {
                index
                    .by_service
                    .entry((m.namespace(), service))
                    .or_default()
                    .push(slice);
            }
        }
        index
    }

    /// The endpoint sets of the Service's slices, in slice name order.
    fn sets(&self, namespace: &str, name: &str) -> Vec<EndpointSet> {
        self.by_service
            .get(&(namespace, name))
            .into_iter()
            .flatten()
            .copied()
            .filter_map(from_slice)
            .collect()
    }
}

/// The endpoint sets of one Service: its EndpointSlices, or for a Service without a selector
/// and without slices, its Endpoints.
pub fn for_service(
    store: &Store,
    slices: &SliceIndex<'_>,
    namespace: &str,
    name: &str,
    svc: &Service,
) -> Vec<EndpointSet> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    if slices.by_service.contains_key(&(namespace, name)) {
        return slices.sets(namespace, name);
    }
    if spec.selector.as_ref().is_some_and(|s| !s.is_empty()) {
        return Vec::new();
    }
    let legacy = store
        .in_namespace(Kind::Endpoints, namespace)
        .find_map(|m| match &m.object {
            ferry_objects::object::Object::Endpoints(e) if m.name() == name => Some(&**e),
            _ => None,
        });
    legacy.into_iter().flat_map(from_endpoints).collect()
}

fn target_ref(t: &ObjectReference) -> TargetRef {
    TargetRef {
        kind: t.kind.clone().unwrap_or_default(),
        namespace: t.namespace.clone().unwrap_or_default(),
        name: t.name.clone().unwrap_or_default(),
        // Filled from the Pod when the Service's endpoints are translated.
        service_account: None,
        meshed: false,
    }
}

fn from_slice(slice: &EndpointSlice) -> Option<EndpointSet> {
    if slice.address_type == "FQDN" {
        return None; // as kube-proxy: FQDN slices are not routed
    }
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(SetPort {
                name: p.name.clone().unwrap_or_default(),
                port: u16::try_from(p.port?).ok()?,
                protocol: protocol(p.protocol.as_deref()),
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect();
    let endpoints = slice
        .endpoints
        .iter()
        .filter_map(|e| {
            let conditions = e.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            Some(SetEndpoint {
                // Consumers use the first address, as kube-proxy does.
                address: e.addresses.first()?.parse().ok()?,
                ready,
                // A missing `serving` means the same as `ready` (discovery/v1's API doc).
                serving: conditions.and_then(|c| c.serving).unwrap_or(ready),
                terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
                hostname: e.hostname.clone(),
                node_name: e.node_name.clone(),
                zone: e.zone.clone(),
                target: e.target_ref.as_ref().map(target_ref),
            })
        })
        .collect();
    Some(EndpointSet { ports, endpoints })
}

fn from_endpoints(e: &Endpoints) -> Vec<EndpointSet> {
    e.subsets
        .iter()
        .flatten()
        .map(|subset| {
            let ports = subset
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    Some(SetPort {
                        name: p.name.clone().unwrap_or_default(),
                        port: u16::try_from(p.port).ok()?,
                        protocol: protocol(p.protocol.as_deref()),
                        app_protocol: p.app_protocol.clone(),
                    })
                })
                .collect();
            let lists = [
                (true, subset.addresses.as_deref()),
                (false, subset.not_ready_addresses.as_deref()),
            ];
            let endpoints = lists
                .into_iter()
                .flat_map(|(ready, list)| list.unwrap_or_default().iter().map(move |a| (ready, a)))
                .filter_map(|(ready, a)| {
                    Some(SetEndpoint {
                        address: a.ip.parse().ok()?,
                        ready,
                        serving: ready,
                        terminating: false,
                        hostname: a.hostname.clone(),
                        node_name: a.node_name.clone(),
                        zone: None,
                        target: a.target_ref.as_ref().map(target_ref),
                    })
                })
                .collect();
            EndpointSet { ports, endpoints }
        })
        .collect()
}

#[cfg(test)]
mod tests;
