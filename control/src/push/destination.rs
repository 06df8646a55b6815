//! A sidecar's subscriptions (`ferry.control.v1.Destination`, `destination.proto`): one
//! destination's endpoints, or one workload's inbound ports, computed from the snapshot for that
//! subscription alone, so a sidecar is sent only what it asked for (never the whole view,
//! another Service's data, nor a private key).
//!
//! Each answer is whole and sent only when it differs from the last one sent on the stream, so
//! a change elsewhere in the cluster sends nothing. A stream's queue is bounded: when it is
//! full, nothing is computed until the sidecar reads again, and then the answer is computed from
//! the newest snapshot (every step in between is skipped). Each stream follows the bus on its
//! own, so a slow sidecar never holds up another.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use ferry_model::proto::{self, destination_update::Update};
use ferry_model::{ClusterKey, Protocol, Service, ServiceEndpoint, Snapshot};
use ferry_runtime::SnapshotBus;
use tokio::sync::mpsc;

use super::parts::{Parts, PushKind};

/// What a `GetDestination.authority` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authority {
    /// `name.namespace.svc[.<cluster domain>]:port`.
    Name {
        namespace: String,
        service: String,
        port: u16,
    },
    /// A cluster IP and a Service port.
    ClusterIp(SocketAddr),
}

/// Reads an authority as `GetDestination.authority` documents it.
pub fn parse_authority(authority: &str, cluster_domain: &str) -> Result<Authority, String> {
    let invalid = |why: &str| {
        format!(
            "GetDestination.authority {authority:?}: {why}; expected name.namespace.svc.{cluster_domain}:port or CLUSTER_IP:port"
        )
    };
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(invalid("port 0"));
        }
        return Ok(Authority::ClusterIp(addr));
    }
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| invalid("no port"))?;
    let port = match port.parse::<u16>() {
        Ok(port) if port > 0 => port,
        _ => return Err(invalid("the port is not a number from 1 to 65535")),
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let domain = cluster_domain.trim_end_matches('.').to_ascii_lowercase();
    let name = host
        .strip_suffix(&format!(".svc.{domain}"))
        .or_else(|| host.strip_suffix(".svc"))
        .ok_or_else(|| invalid("not a Service name"))?;
    match name.split_once('.') {
        Some((service, namespace))
            if !service.is_empty() && !namespace.is_empty() && !namespace.contains('.') =>
        {
            Ok(Authority::Name {
                namespace: namespace.to_owned(),
                service: service.to_owned(),
                port,
            })
        }
        _ => Err(invalid("not a Service name")),
    }
}

/// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// The Pod an endpoint stands for, and its identity when its ServiceAccount is known.
fn pod_and_identity(
    endpoint: &ServiceEndpoint,
    service_namespace: &str,
    trust_domain: &str,
) -> (Option<String>, Option<String>) {
    let Some(target) = endpoint.target.as_ref().filter(|t| t.kind == "Pod") else {
        return (None, None);
    };
    let namespace = if target.namespace.is_empty() {
        service_namespace
    } else {
        &target.namespace
    };
    let identity = target
        .service_account
        .as_deref()
        .map(|sa| spiffe_id(trust_domain, namespace, sa));
    (Some(target.name.clone()), identity)
}

fn service_endpoint(service: &Service, address: IpAddr) -> Option<&ServiceEndpoint> {
    service
        .endpoints
        .binary_search_by(|e| e.address.cmp(&address))
        .ok()
        .map(|i| &service.endpoints[i])
}

fn no_destination(reason: String) -> Update {
    Update::NoDestination(proto::NoDestination { reason })
}

/// The answer for `authority` in `snapshot`: that Service port's endpoints, with the identity
/// each presents, or why there is none. Reads that Service and its cluster only.
pub fn destination(snapshot: &Snapshot, authority: &Authority, trust_domain: &str) -> Update {
    let (service, port) = match authority {
        Authority::Name {
            namespace,
            service,
            port,
        } => match snapshot.service(namespace, service) {
            Some(s) => (s, *port),
            None => return no_destination(format!("no Service {namespace}/{service}")),
        },
        Authority::ClusterIp(addr) => {
            let ip = addr.ip();
            match snapshot
                .services
                .iter()
                .find(|s| s.cluster_ips.contains(&ip))
            {
                Some(s) => (&**s, addr.port()),
                None => return no_destination(format!("no Service has the cluster IP {ip}")),
            }
        }
    };
    let Some(service_port) = service
        .ports
        .iter()
        .find(|p| p.port == port && p.protocol == Protocol::TCP)
    else {
        return no_destination(format!(
            "Service {}/{} has no TCP port {port}",
            service.namespace, service.name
        ));
    };
    let key = ClusterKey {
        namespace: service.namespace.clone(),
        service: service.name.clone(),
        port,
        protocol: Protocol::TCP,
    };
    let endpoints = snapshot
        .cluster(&key)
        .map(|c| c.endpoints.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let known = service_endpoint(service, e.address);
            let (pod, identity) = known.map_or((None, None), |s| {
                pod_and_identity(s, &service.namespace, trust_domain)
            });
            proto::DestinationEndpoint {
                address: ip_bytes(e.address),
                port: u32::from(e.port),
                ready: e.ready,
                serving: e.serving,
                terminating: e.terminating,
                zone: e.zone.clone(),
                node_name: known.and_then(|s| s.node_name.clone()),
                pod,
                identity,
            }
        })
        .collect();
    Update::Endpoints(proto::DestinationEndpoints {
        service: Some(proto::ServiceKey {
            namespace: service.namespace.clone(),
            name: service.name.clone(),
        }),
        port: u32::from(port),
        port_name: service_port.name.clone(),
        app_protocol: service_port.app_protocol.clone(),
        endpoints,
    })
}

fn protocol(p: Protocol) -> proto::Protocol {
    match p {
        Protocol::TCP => proto::Protocol::Tcp,
        Protocol::UDP => proto::Protocol::Udp,
        Protocol::SCTP => proto::Protocol::Sctp,
    }
}

/// What arrives on one inbound port: the app protocol, and the Services that send it.
type Served = (Option<String>, BTreeSet<(String, String)>);

/// The inbound policy of Pod `namespace/pod`: the ports the Services of its namespace send it
/// traffic on (their clusters' endpoints at the Pod's address), with their protocol, and the
/// identity it presents. Reads the Services of that namespace only.
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
                    if entry.0.is_none() {
                        entry.0.clone_from(&service_port.app_protocol);
                    }
                    entry
                        .1
                        .insert((service.namespace.clone(), service.name.clone()));
                }
            }
        }
    }
    proto::InboundPolicy {
        version: 0,
        identity,
        ports: ports
            .into_iter()
            .map(|((port, p), (app_protocol, services))| proto::InboundPort {
                port: u32::from(port),
                protocol: protocol(p) as i32,
                app_protocol,
                services: services
                    .into_iter()
                    .map(|(namespace, name)| proto::ServiceKey { namespace, name })
                    .collect(),
            })
            .collect(),
    }
}

/// An answer of a sidecar subscription: whole, stamped with the snapshot's version when sent.
pub trait Answer: prost::Message + Clone + PartialEq + Send + 'static {
    fn with_version(self, version: u64) -> Self;
}

impl Answer for proto::DestinationUpdate {
    fn with_version(self, version: u64) -> Self {
        proto::DestinationUpdate { version, ..self }
    }
}

impl Answer for proto::InboundPolicy {
    fn with_version(self, version: u64) -> Self {
        proto::InboundPolicy { version, ..self }
    }
}

/// Sends `compute`'s answer (computed with version 0) for the newest snapshot, then again each
/// time it changes, until the subscriber goes away. `id` is its entry in [`Parts`].
pub async fn serve<T: Answer>(
    bus: SnapshotBus,
    parts: Parts,
    id: u64,
    compute: impl Fn(&Snapshot) -> T + Send,
    outbound: mpsc::Sender<Result<T, tonic::Status>>,
) {
    let mut watch = bus.watch();
    let mut last: Option<T> = None;
    loop {
        let newest = watch.borrow_and_update().clone();
        if newest.version > 0 {
            let answer = compute(&newest);
            if last.as_ref() != Some(&answer) {
                match outbound.try_reserve() {
                    Ok(permit) => {
                        let push = answer.clone().with_version(newest.version);
                        let bytes = push.encoded_len();
                        permit.send(Ok(push));
                        parts.sent(id, newest.version, PushKind::full, bytes);
                        last = Some(answer);
                    }
                    Err(mpsc::error::TrySendError::Closed(())) => return,
                    Err(mpsc::error::TrySendError::Full(())) => {
                        // Behind: wait for room, then answer from the newest snapshot (the
                        // steps in between are never sent).
                        parts.queue_full(id);
                        match outbound.reserve().await {
                            Ok(permit) => drop(permit),
                            Err(_) => return,
                        }
                        continue;
                    }
                }
            }
        }
        tokio::select! {
            changed = watch.changed() => if changed.is_err() { return },
            () = outbound.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests;
