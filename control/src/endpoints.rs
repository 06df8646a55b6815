//! The endpoints controller: what stands behind each Service, in one internal form.
//!
//! A Service with a selector gets its endpoints from the Pods it selects, exactly as the
//! Kubernetes EndpointSlice controller computes them (`podToEndpoint`): only Pods with an IP
//! and not in a terminal phase; `serving` is the Pod's Ready condition, `terminating` its
//! deletionTimestamp, `ready` is serving and not terminating (or always, with
//! `publishNotReadyAddresses`); a named targetPort resolves per Pod from its container ports,
//! so Pods that name a port differently land in different endpoint sets. A Service without a
//! selector uses the EndpointSlices labelled with its name, or failing those its Endpoints.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ferry_model::{Protocol, TargetRef};
use k8s_openapi::api::core::v1::{Endpoints, ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use ferry_objects::object::{Kind, pod_ready};
use ferry_objects::selector;
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

/// Endpoints that share their ports: an EndpointSlice, an Endpoints subset, or the Pods
/// whose named ports resolve alike.
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

/// Pods by label, so a selector looks only at the Pods that can match.
#[derive(Debug, Default)]
pub struct PodIndex<'a> {
    by_label: HashMap<(&'a str, &'a str, &'a str), Vec<&'a Pod>>,
}

impl<'a> PodIndex<'a> {
    pub fn new(store: &'a Store) -> Self {
        let mut index = PodIndex::default();
        for (m, pod) in store.pods() {
            let ns = m.namespace();
            for (k, v) in pod.metadata.labels.iter().flatten() {
                index.by_label.entry((ns, k, v)).or_default().push(pod);
            }
        }
        index
    }

    /// The Pods an equality selector selects; an empty selector selects none (a Service with
    /// `selector: {}` has no selector).
    pub fn select(&self, namespace: &str, sel: &BTreeMap<String, String>) -> Vec<&'a Pod> {
        let smallest = sel
            .iter()
            .map(|(k, v)| {
                self.by_label
                    .get(&(namespace, k.as_str(), v.as_str()))
                    .map_or(&[][..], Vec::as_slice)
            })
            .min_by_key(|pods| pods.len());
        let Some(candidates) = smallest else {
            return Vec::new();
        };
        candidates
            .iter()
            .copied()
            .filter(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| selector::equality(sel, l))
            })
            .collect()
    }
}

/// The Pod's IPs of the families the Service serves.
fn pod_ips(pod: &Pod, families: &[String]) -> Vec<IpAddr> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(
            status
                .pod_ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok()),
        );
    }
    if !families.is_empty() {
        ips.retain(|ip| families.iter().any(|f| (f == "IPv4") == ip.is_ipv4()));
    }
    ips
}

/// `podutil.FindPort`: a number as is, a name from the Pod's container ports.
fn find_port(pod: &Pod, sp: &ServicePort) -> Option<u16> {
    let protocol = sp.protocol.as_deref().unwrap_or("TCP");
    match &sp.target_port {
        None => u16::try_from(sp.port).ok(),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
        Some(IntOrString::String(name)) => pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| {
                p.name.as_deref() == Some(name)
                    && p.protocol.as_deref().unwrap_or("TCP") == protocol
            })
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// The endpoint sets of one Service.
pub fn for_service(
    store: &Store,
    pods: &PodIndex<'_>,
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
    let mut sets = match spec.selector.as_ref().filter(|s| !s.is_empty()) {
        Some(sel) => from_pods(namespace, name, svc, &pods.select(namespace, sel)),
        None => Vec::new(),
    };
    let slices: Vec<&EndpointSlice> = store
        .in_namespace(Kind::EndpointSlice, namespace)
        .filter_map(|m| match &m.object {
            ferry_objects::object::Object::EndpointSlice(s) => Some(&**s),
            _ => None,
        })
        .filter(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .is_some_and(|n| n == name)
        })
        .collect();
    if !slices.is_empty() {
        sets.extend(slices.into_iter().filter_map(from_slice));
    } else if spec.selector.as_ref().is_none_or(BTreeMap::is_empty) {
        let legacy = store
            .in_namespace(Kind::Endpoints, namespace)
            .find_map(|m| match &m.object {
                ferry_objects::object::Object::Endpoints(e) if m.name() == name => Some(&**e),
                _ => None,
            });
        sets.extend(legacy.into_iter().flat_map(from_endpoints));
    }
    sets
}

fn from_pods(namespace: &str, name: &str, svc: &Service, pods: &[&Pod]) -> Vec<EndpointSet> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    let ports = spec.ports.as_deref().unwrap_or_default();
    let families = spec.ip_families.as_deref().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let mut by_ports: BTreeMap<Vec<SetPort>, Vec<SetEndpoint>> = BTreeMap::new();
    for pod in pods {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let ips = pod_ips(pod, families);
        if ips.is_empty() {
            continue;
        }
        let set_ports: Vec<SetPort> = ports
            .iter()
            .filter_map(|sp| {
                Some(SetPort {
                    name: sp.name.clone().unwrap_or_default(),
                    port: find_port(pod, sp)?,
                    protocol: protocol(sp.protocol.as_deref()),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        let serving = pod_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let pod_spec = pod.spec.as_ref();
        let hostname = pod_spec
            .filter(|s| s.subdomain.as_deref() == Some(name))
            .and_then(|s| s.hostname.clone())
            .filter(|h| !h.is_empty());
        let target = TargetRef {
            kind: "Pod".into(),
            namespace: namespace.to_owned(),
            name: pod.metadata.name.clone().unwrap_or_default(),
        };
        let list = by_ports.entry(set_ports).or_default();
        for address in ips {
            list.push(SetEndpoint {
                address,
                ready: publish_not_ready || (serving && !terminating),
                serving,
                terminating,
                hostname: hostname.clone(),
                node_name: pod_spec.and_then(|s| s.node_name.clone()),
                zone: None,
                target: Some(target.clone()),
            });
        }
    }
    by_ports
        .into_iter()
        .map(|(ports, endpoints)| EndpointSet { ports, endpoints })
        .collect()
}

fn target_ref(t: &ObjectReference) -> TargetRef {
    TargetRef {
        kind: t.kind.clone().unwrap_or_default(),
        namespace: t.namespace.clone().unwrap_or_default(),
        name: t.name.clone().unwrap_or_default(),
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
                serving: conditions.and_then(|c| c.serving).unwrap_or(true),
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
