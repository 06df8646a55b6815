//! What one snapshot compiles into for the request path: the routes with their Ingress
//! options ([`Routes`]), a pool per cluster (its balancer, which carries the previous
//! snapshot's endpoint state over, its protocol and affinity), and the labels metrics and
//! the access log use, made once here so counting a request allocates nothing.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ferry_model::{ClusterKey, IngressRef, SessionAffinity, Snapshot};
use ferry_proxy::{Balancer, BalancerConfig, Policy, Protocol};

use crate::select::Routes;

/// The maps looked up per request, hashed with foldhash rather than SipHash: their keys come
/// from the snapshot, so a request cannot lengthen a probe.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// What one snapshot routes to: its routes with their options, and each cluster's ready
/// endpoints.
#[derive(Debug)]
pub struct Compiled {
    pub(super) routes: Routes,
    pub(super) pools: HashMap<ClusterKey, Pool>,
    /// `namespace/name` of each Ingress with a route, for metrics and the access log.
    pub(super) ingresses: HashMap<IngressRef, Arc<str>>,
}

#[derive(Debug)]
pub(super) struct Pool {
    /// `namespace/service:port`, for metrics and the access log.
    pub(super) label: Arc<str>,
    pub(super) balancer: Balancer,
    pub(super) protocol: Protocol,
    /// The Service's `sessionAffinity: ClientIP`.
    pub(super) client_ip_affinity: bool,
}

impl Compiled {
    /// Compiles `snapshot`; the balancers of `previous` carry their endpoints' latency,
    /// in-flight counts and ejections over to the endpoints that remain.
    pub fn compile(snapshot: &Snapshot, previous: Option<&Compiled>) -> Compiled {
        let now = Instant::now();
        // Clusters some Ingress reaches with cookie affinity hash by the cookie.
        let cookie_clusters: HashSet<&ClusterKey> = snapshot
            .virtual_hosts
            .iter()
            .flat_map(|vh| &vh.routes)
            .filter(|r| {
                snapshot
                    .ingress_options(&r.ingress)
                    .is_some_and(|o| o.affinity.is_some())
            })
            .flat_map(|r| {
                std::iter::once(r.backend.cluster()).chain(std::iter::once(
                    r.canary.as_ref().and_then(|c| c.backend.cluster()),
                ))
            })
            .flatten()
            .collect();
        let pools = snapshot
            .clusters
            .iter()
            .map(|c| {
                let endpoints: Vec<SocketAddr> = c
                    .ready_endpoints()
                    .map(|e| SocketAddr::new(e.address, e.port))
                    .collect();
                let client_ip_affinity =
                    matches!(c.session_affinity, SessionAffinity::ClientIP { .. });
                let config = BalancerConfig {
                    policy: if client_ip_affinity || cookie_clusters.contains(&c.key) {
                        Policy::ConsistentHash
                    } else {
                        Policy::P2cPeakEwma
                    },
                    ..BalancerConfig::default()
                };
                let balancer = match previous.and_then(|p| p.pools.get(&c.key)) {
                    Some(prev) => prev.balancer.update(&endpoints, &config, now),
                    None => Balancer::new(&endpoints, &config, now),
                };
                (
                    c.key.clone(),
                    Pool {
                        label: Arc::from(c.key.to_string()),
                        balancer,
                        protocol: Protocol::from_app_protocol(c.app_protocol.as_deref()),
                        client_ip_affinity,
                    },
                )
            })
            .collect();
        // The label of every Ingress that can serve a request: routes' and default backends'.
        let ingresses = snapshot
            .virtual_hosts
            .iter()
            .flat_map(|vh| {
                vh.routes
                    .iter()
                    .map(|r| &r.ingress)
                    .chain(&vh.default_backend_ingress)
            })
            .chain(&snapshot.default_backend_ingress)
            .map(|i| {
                let name = format!("{}/{}", i.namespace, i.name);
                (i.clone(), Arc::from(name))
            })
            .collect();
        Compiled {
            routes: Routes::compile(snapshot),
            pools,
            ingresses,
        }
    }

    pub fn version(&self) -> u64 {
        self.routes.version()
    }
}
