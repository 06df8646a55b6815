//! The compiled form of a snapshot: every address this proxy listens on, with the Service port
//! behind it and that port's [`Balancer`]. Immutable; swapped in whole.
//!
//! Which addresses: for each TCP port of each Service with a cluster IP, `clusterIP:port` for
//! every cluster IP inside the configured service ranges, and `node_host:nodePort` for NodePort
//! and LoadBalancer Services. Only while the port has an endpoint to send to: an address without
//! one is left out, so its listener closes and the kernel refuses connections, as kube-proxy's
//! REJECT rule does.
//!
//! UDP and SCTP ports are not proxied: each is logged as a warning once, when it first appears,
//! and everything else carries on (kube-dns's `53/UDP` sits next to its `53/TCP`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_model::{Cluster, ClusterKey, Protocol, ServiceType, SessionAffinity, Snapshot};

use crate::Config;
use crate::balancer::Balancer;

/// What one listening address forwards to.
#[derive(Clone, Debug)]
pub struct Route {
    /// `namespace/service:port`, as metrics and logs name it.
    pub service: Arc<str>,
    pub balancer: Arc<Balancer>,
}

/// Every address to listen on and its route.
#[derive(Debug, Default)]
pub struct Table {
    routes: HashMap<SocketAddr, Route>,
    /// The balancer of each Service port, for the next snapshot to carry state over from.
    balancers: HashMap<ClusterKey, Arc<Balancer>>,
    /// Service ports this proxy does not carry (UDP, SCTP), so each is warned about once.
    unproxied: HashSet<ClusterKey>,
    /// Those first seen by this compile: the ones just warned about.
    warned: Vec<ClusterKey>,
}

impl Table {
    pub fn compile(snapshot: &Snapshot, config: &Config, previous: Option<&Table>) -> Table {
        let mut table = Table::default();
        for service in &snapshot.services {
            if service.headless || service.service_type == ServiceType::ExternalName {
                continue;
            }
            let node_ports = matches!(
                service.service_type,
                ServiceType::NodePort | ServiceType::LoadBalancer
            );
            for port in &service.ports {
                let key = service.cluster_key(port);
                if port.protocol != Protocol::TCP {
                    if !previous.is_some_and(|p| p.unproxied.contains(&key)) {
                        tracing::warn!(service = %key, "the L4 proxy carries TCP only: this {} port is not proxied; its endpoints are still reachable directly and in DNS", port.protocol.as_str());
                        table.warned.push(key.clone());
                    }
                    table.unproxied.insert(key);
                    continue;
                }
                let Some(cluster) = snapshot.cluster(&key) else {
                    continue;
                };
                let endpoints = endpoints(cluster);
                if endpoints.is_empty() {
                    continue;
                }
                let affinity = match service.session_affinity {
                    SessionAffinity::None => None,
                    SessionAffinity::ClientIP { timeout_seconds } => {
                        Some(Duration::from_secs(timeout_seconds.into()))
                    }
                };
                let before = previous.and_then(|p| p.balancers.get(&key));
                let balancer = Arc::new(Balancer::new(endpoints, affinity, before.map(|b| &**b)));
                let route = Route {
                    service: key.to_string().into(),
                    balancer: balancer.clone(),
                };
                let cluster_addrs = service
                    .cluster_ips
                    .iter()
                    .filter(|ip| config.service_cidrs.iter().any(|c| c.contains(**ip)))
                    .map(|ip| SocketAddr::new(*ip, port.port));
                let node_addr = port
                    .node_port
                    .filter(|_| node_ports)
                    .map(|p| SocketAddr::new(config.node_host, p));
                for addr in cluster_addrs.chain(node_addr) {
                    if let Some(other) = table.routes.get(&addr) {
                        tracing::warn!(%addr, service = %route.service, taken_by = %other.service, "two Service ports claim one address; the first keeps it");
                        continue;
                    }
                    table.routes.insert(addr, route.clone());
                }
                table.balancers.insert(key, balancer);
            }
        }
        table
    }

    /// The route of a listening address.
    pub fn route(&self, addr: SocketAddr) -> Option<&Route> {
        self.routes.get(&addr)
    }

    /// The Service ports this compile warned about: UDP and SCTP ports not seen before.
    pub fn warned(&self) -> &[ClusterKey] {
        &self.warned
    }

    /// Every address to listen on, unordered.
    pub fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.routes.keys().copied()
    }
}

/// Where a Service port sends connections: its ready endpoints, else the ones still serving
/// while they terminate (kube-proxy's fallback since Kubernetes 1.28, so a rolling update that
/// replaces the last Pod does not refuse connections in between).
fn endpoints(cluster: &Cluster) -> Vec<SocketAddr> {
    let addr = |e: &ferry_model::Endpoint| SocketAddr::new(e.address, e.port);
    let ready: Vec<_> = cluster.ready_endpoints().map(addr).collect();
    if !ready.is_empty() {
        return ready;
    }
    cluster
        .endpoints
        .iter()
        .filter(|e| e.serving && e.terminating)
        .map(addr)
        .collect()
}

#[cfg(test)]
mod tests;
