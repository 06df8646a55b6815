//! The EndpointSlice controller: a selector Service's endpoints, from the Pods it selects,
//! written as the EndpointSlices Kubernetes' controller (`pkg/controller/endpointslice`) writes.
//!
//! [`slices`] is the controller as a pure function of one Service and the Pods it selects:
//! only Pods with an IP and not `Succeeded`/`Failed` are endpoints (`ShouldPodBeInEndpoints`);
//! each endpoint is `podToEndpoint`: `serving` is the Pod's Ready condition, `terminating` its
//! deletionTimestamp, `ready` serving and not terminating (always, with
//! `publishNotReadyAddresses`), `hostname` the Pod's when its subdomain names the Service,
//! `nodeName`, and a `targetRef` to the Pod. A named targetPort resolves per Pod from its
//! container ports (`podutil.FindPort`), so Pods that name a port differently land in
//! different slices: there is one slice per (address family, resolved port set), of at most
//! [`MAX_ENDPOINTS_PER_SLICE`] endpoints. The address families are the Service's `ipFamilies`,
//! or both when it names none. No placeholder slice is written for a Service without
//! endpoints: nothing here reads one.
//!
//! A slice carries the Service's labels, `kubernetes.io/service-name`,
//! `endpointslice.kubernetes.io/managed-by` and an ownerReference to the Service (when it has a
//! uid, as every Service the local cluster runs has). Its name is
//! `<service>-<5 chars>` like the generated names Kubernetes gives it, but the 5 characters
//! come from a hash of (Service, family, port set, chunk), so reconciling the same Pods again
//! gives identical objects and a snapshot does not churn.
//!
//! [`reconcile`] runs the controller over a whole reading, as the controller manager runs it
//! over the API server's objects. Touches nothing but the objects it is given.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ferry_objects::object::{Manifest, Object, Origin, pod_ready};
use ferry_objects::selector;
use ferry_objects::validate::SERVICE_NAME_LABEL;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::deployment::ALPHANUMS;

/// The label naming the controller that manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's name in [`MANAGED_BY_LABEL`], as Kubernetes' controller names itself.
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Kubernetes' default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Set on the slices of a headless Service, as Kubernetes does.
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// `names.SimpleNameGenerator`: the base of a generated name is cut to 63 - 5 characters.
const MAX_GENERATED_BASE: usize = 58;

/// Pods by label, so a selector looks only at the Pods that can match.
#[derive(Debug, Default)]
pub struct PodIndex<'a> {
    by_label: HashMap<(&'a str, &'a str, &'a str), Vec<&'a Pod>>,
}

impl<'a> PodIndex<'a> {
    pub fn new(pods: impl IntoIterator<Item = &'a Pod>) -> Self {
        let mut index = PodIndex::default();
        for pod in pods {
            let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
            for (k, v) in pod.metadata.labels.iter().flatten() {
                index.by_label.entry((ns, k, v)).or_default().push(pod);
            }
        }
        index
    }

    /// The Pods an equality selector selects, in the order they were indexed; an empty
    /// selector selects none (a Service with `selector: {}` has no selector).
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

/// The selector the controller acts on: a non-empty one of a Service that is not ExternalName.
pub fn selector_of(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// The address families the Service's endpoints have: its `ipFamilies`, or both.
fn families(svc: &Service) -> Vec<&'static str> {
    let named = svc
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.as_deref())
        .unwrap_or_default();
    let mut out = Vec::new();
    for family in ["IPv4", "IPv6"] {
        if named.is_empty() || named.iter().any(|f| f == family) {
            out.push(family);
        }
    }
    out
}

/// The Pod's IPs: `status.podIPs`, or `status.podIP` when that list is empty.
fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
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

/// `getEndpointPorts`: the Service's ports this Pod serves, in the Service's order.
fn endpoint_ports(svc_ports: &[ServicePort], pod: &Pod) -> Vec<EndpointPort> {
    svc_ports
        .iter()
        .filter_map(|sp| {
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(i32::from(find_port(pod, sp)?)),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// The key a slice's endpoints share: the address family and the resolved ports. Ordered so
/// the slices come out in one order for the same Pods.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct SliceKey {
    family: &'static str,
    ports: Vec<(String, i32, String, Option<String>)>,
}

impl SliceKey {
    fn new(family: &'static str, ports: &[EndpointPort]) -> SliceKey {
        SliceKey {
            family,
            ports: ports
                .iter()
                .map(|p| {
                    (
                        p.name.clone().unwrap_or_default(),
                        p.port.unwrap_or_default(),
                        p.protocol.clone().unwrap_or_default(),
                        p.app_protocol.clone(),
                    )
                })
                .collect(),
        }
    }
}

/// FNV-1a (64 bits): a hash that stays the same across builds and machines.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        // Each part ends in a byte no name holds, so ("ab", "c") and ("a", "bc") differ.
        for &b in part.iter().chain(&[0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The slice's name: `<service>-` (cut as `generateName` is) and 5 characters of Kubernetes'
/// alphabet from a hash of what identifies the slice; `attempt` is raised on a clash.
fn slice_name(
    namespace: &str,
    service: &str,
    key: &SliceKey,
    chunk: usize,
    attempt: u32,
) -> String {
    let ports = format!("{:?}", key.ports);
    let (chunk, attempt) = (chunk.to_string(), attempt.to_string());
    let mut h = fnv1a(&[
        namespace.as_bytes(),
        service.as_bytes(),
        key.family.as_bytes(),
        ports.as_bytes(),
        chunk.as_bytes(),
        attempt.as_bytes(),
    ]);
    let mut base = format!("{service}-");
    if base.len() > MAX_GENERATED_BASE {
        base.truncate(MAX_GENERATED_BASE);
    }
    let n = ALPHANUMS.len() as u64;
    for _ in 0..5 {
        base.push(char::from(ALPHANUMS[(h % n) as usize]));
        h /= n;
    }
    base
}

/// `podToEndpoint` for one address family; None when the Pod has no address of it.
fn endpoint(svc: &Service, pod: &Pod, family: &str) -> Option<Endpoint> {
    let addresses: Vec<String> = pod_ips(pod)
        .into_iter()
        .filter(|ip| ip.is_ipv4() == (family == "IPv4"))
        .map(|ip| ip.to_string())
        .collect();
    if addresses.is_empty() {
        return None;
    }
    let spec = svc.spec.as_ref();
    let publish_not_ready = spec
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let serving = pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let pod_spec = pod.spec.as_ref();
    let hostname = pod_spec
        .filter(|s| s.subdomain.as_deref() == svc.metadata.name.as_deref())
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty());
    Some(Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(publish_not_ready || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname,
        node_name: pod_spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
        ..Endpoint::default()
    })
}

/// The labels of a slice: the Service's own (but the controller's), the headless label for a
/// headless Service, the Service's name and the controller's (`setEndpointSliceLabels`).
fn labels(svc: &Service, name: &str) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| {
            ![SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL].contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let headless = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    if headless {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels.insert(SERVICE_NAME_LABEL.into(), name.into());
    labels.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    labels
}

/// The slices the controller writes for one Service from the Pods it selects (any order),
/// named clear of `taken` (the names already used in the Service's namespace), which
/// receives theirs. None for a Service the controller does not act on ([`selector_of`]).
pub fn slices_named(
    svc: &Service,
    pods: &[&Pod],
    taken: &mut HashSet<String>,
) -> Vec<EndpointSlice> {
    if selector_of(svc).is_none() {
        return Vec::new();
    }
    let namespace = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let svc_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let mut pods = pods.to_vec();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let families = families(svc);
    let mut groups: BTreeMap<SliceKey, (Vec<EndpointPort>, Vec<Endpoint>)> = BTreeMap::new();
    for pod in pods {
        // `ShouldPodBeInEndpoints`, terminating Pods included.
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let ports = endpoint_ports(svc_ports, pod);
        for &family in &families {
            if let Some(e) = endpoint(svc, pod, family) {
                groups
                    .entry(SliceKey::new(family, &ports))
                    .or_insert_with(|| (ports.clone(), Vec::new()))
                    .1
                    .push(e);
            }
        }
    }
    // A Service read from a file that never went through an API server has no uid to name.
    let owner = svc.metadata.uid.as_ref().map(|uid| OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: name.clone(),
        uid: uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    });
    let labels = labels(svc, &name);
    let mut out = Vec::new();
    for (key, (ports, endpoints)) in groups {
        for (chunk, endpoints) in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE).enumerate() {
            let slice_name = (0..)
                .map(|attempt| slice_name(&namespace, &name, &key, chunk, attempt))
                .find(|n| !taken.contains(n))
                .unwrap_or_default();
            taken.insert(slice_name.clone());
            out.push(EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(slice_name),
                    generate_name: Some(format!("{name}-")),
                    namespace: Some(namespace.clone()),
                    labels: Some(labels.clone()),
                    owner_references: owner.clone().map(|o| vec![o]),
                    ..ObjectMeta::default()
                },
                address_type: key.family.into(),
                endpoints: endpoints.to_vec(),
                ports: Some(ports.clone()),
            });
        }
    }
    out
}

/// [`slices_named`] for a Service alone in its namespace.
pub fn slices(svc: &Service, pods: &[&Pod]) -> Vec<EndpointSlice> {
    slices_named(svc, pods, &mut HashSet::new())
}

/// The slice is this controller's and belongs to the Service `name`.
fn managed_for(slice: &EndpointSlice) -> Option<&str> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(CONTROLLER_NAME) {
        return None;
    }
    labels.get(SERVICE_NAME_LABEL).map(String::as_str)
}

/// The controller over a whole reading: the manifests with the slices of every selector
/// Service that selects at least one Pod among them, written with `origin`.
///
/// Other EndpointSlices pass through unchanged, as Kubernetes' controller ignores slices it
/// does not manage. A slice declared with this controller's managed-by label is its earlier
/// output (as `kubectl get -o yaml` shows a cluster): it is replaced by what the controller
/// writes now, unless the Service selects no Pod here at all — then the manifests describe
/// endpoints whose Pods this cluster does not see (a dump of Services and EndpointSlices
/// only, like kube-system's), and they stand, as a Pod bound to another node stands with the
/// status its manifest gives.
pub fn reconcile(manifests: &[Arc<Manifest>], origin: &Origin) -> Vec<Arc<Manifest>> {
    let index = PodIndex::new(manifests.iter().filter_map(|m| match &m.object {
        Object::Pod(p) => Some(&**p),
        _ => None,
    }));
    let mut selected: Vec<(&Manifest, &Service, Vec<&Pod>)> = Vec::new();
    for m in manifests {
        let Object::Service(svc) = &m.object else {
            continue;
        };
        let Some(sel) = selector_of(svc) else {
            continue;
        };
        let pods = index.select(m.namespace(), sel);
        if !pods.is_empty() {
            selected.push((m, svc, pods));
        }
    }
    let managed: BTreeSet<(&str, &str)> = selected
        .iter()
        .map(|(m, _, _)| (m.namespace(), m.name()))
        .collect();
    let mut out = Vec::with_capacity(manifests.len());
    let mut taken: HashMap<String, HashSet<String>> = HashMap::new();
    for m in manifests {
        if let Object::EndpointSlice(s) = &m.object {
            if managed_for(s).is_some_and(|svc| managed.contains(&(m.namespace(), svc))) {
                continue;
            }
            taken
                .entry(m.namespace().to_owned())
                .or_default()
                .insert(m.name().to_owned());
        }
        out.push(m.clone());
    }
    for (m, svc, pods) in selected {
        let taken = taken.entry(m.namespace().to_owned()).or_default();
        out.extend(slices_named(svc, &pods, taken).into_iter().map(|s| {
            Arc::new(Manifest {
                origin: origin.clone(),
                object: Object::EndpointSlice(Box::new(s)),
            })
        }));
    }
    out
}

#[cfg(test)]
mod tests;
