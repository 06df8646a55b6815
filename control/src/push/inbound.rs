//! A sidecar's inbound subscription (`Destination.GetInboundPolicy`): for one Pod, the
//! identity it presents, the ports Services send it traffic on, how it takes plaintext
//! (`mtls_mode`) and the AuthorizationPolicies that select it, computed from the snapshot for
//! that Pod alone (its namespace's Services and its own workload entry), so a change
//! elsewhere in the cluster leaves its answer equal and nothing is sent.

use std::collections::{BTreeMap, BTreeSet};

use ferry_model::mesh::protocol_hint;
use ferry_model::proto;
use ferry_model::{ClusterKey, Protocol, Snapshot};

use super::destination::{pod_and_identity, spiffe_id};

fn protocol(p: Protocol) -> proto::Protocol {
    match p {
        Protocol::TCP => proto::Protocol::Tcp,
        Protocol::UDP => proto::Protocol::Udp,
        Protocol::SCTP => proto::Protocol::Sctp,
    }
}

/// What arrives on one inbound port: the app protocol and name of the first Service port that
/// names them, and the Services that send it.
#[derive(Default)]
struct Served {
    app_protocol: Option<String>,
    port_name: String,
    services: BTreeSet<(String, String)>,
}

/// The inbound policy of Pod `namespace/pod`. The identity comes from the Pod itself when the
/// control plane holds it, else from the endpoints that stand for it.
pub fn inbound(
    snapshot: &Snapshot,
    namespace: &str,
    pod: &str,
    trust_domain: &str,
) -> proto::InboundPolicy {
    let from = snapshot
        .services
        .partition_point(|s| s.namespace.as_str() < namespace);
    let mut identity = None;
    let mut ports: BTreeMap<(u16, Protocol), Served> = BTreeMap::new();
    for service in snapshot.services[from..]
        .iter()
        .take_while(|s| s.namespace == namespace)
    {
        for endpoint in &service.endpoints {
            let Some(target) = &endpoint.target else {
                continue;
            };
            let target_namespace = if target.namespace.is_empty() {
                namespace
            } else {
                &target.namespace
            };
            if target.kind != "Pod" || target.name != pod || target_namespace != namespace {
                continue;
            }
            if identity.is_none() {
                identity = pod_and_identity(endpoint, namespace, trust_domain).1;
            }
            for service_port in &service.ports {
                let key = ClusterKey {
                    namespace: service.namespace.clone(),
                    service: service.name.clone(),
                    port: service_port.port,
                    protocol: service_port.protocol,
                };
                let Some(cluster) = snapshot.cluster(&key) else {
                    continue;
                };
                for e in cluster
                    .endpoints
                    .iter()
                    .filter(|e| e.address == endpoint.address)
                {
                    let entry = ports.entry((e.port, service_port.protocol)).or_default();
                    if entry.app_protocol.is_none() {
                        entry.app_protocol.clone_from(&service_port.app_protocol);
                    }
                    if entry.port_name.is_empty() {
                        entry.port_name.clone_from(&service_port.name);
                    }
                    entry
                        .services
                        .insert((service.namespace.clone(), service.name.clone()));
                }
            }
        }
    }
    let workload = snapshot.mesh.workload(namespace, pod);
    if let Some(w) = workload {
        identity = Some(spiffe_id(trust_domain, namespace, &w.service_account));
    }
    proto::InboundPolicy {
        version: 0,
        identity,
        ports: ports
            .into_iter()
            .map(|((port, p), served)| {
                let hint =
                    protocol_hint(served.app_protocol.as_deref(), &served.port_name, &[port]);
                proto::InboundPort {
                    port: u32::from(port),
                    protocol: protocol(p) as i32,
                    app_protocol: served.app_protocol,
                    services: served
                        .services
                        .into_iter()
                        .map(|(namespace, name)| proto::ServiceKey { namespace, name })
                        .collect(),
                    protocol_hint: proto::ProtocolHint::from(hint) as i32,
                }
            })
            .collect(),
        mtls_mode: proto::MtlsMode::from(workload.map(|w| w.mtls_mode).unwrap_or_default()) as i32,
        authorization: workload
            .map(|w| snapshot.mesh.policies_of(w).map(Into::into).collect())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests;
