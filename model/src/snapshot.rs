//! The Snapshot: everything the data plane needs, immutable and versioned.
//!
//! The control plane builds one from the cluster's objects (`translate`), checks it with
//! [`Snapshot::validate`] and publishes it; each data-plane part compiles its own index from it
//! and swaps that in atomically. Collections are sorted, so two snapshots of the same cluster are
//! equal and serialize to the same bytes. The JSON form is what admin `/config` serves and what
//! `--snapshot FILE` reads.
//!
//! Every keyed collection holds its items behind an `Arc`, so that a view made from another
//! (a delta applied, a change translated) shares each item it did not change: building it
//! copies pointers, and comparing two such views ([`Snapshot::same_content`], `proto::delta`'s
//! diff, [`Snapshot::validate_delta`]) passes over shared items by pointer (`Arc`'s `==` for
//! `T: Eq` compares the pointers first). The serde form is the items' own.
//!
//! The parts live by family: `service` (Services and their endpoints), `cluster` (what a
//! route balances over), `route` (virtual hosts, routes, backends), `ingress_options` (what
//! annotations ask), `certificate` and `validate`. All are re-exported here and at the
//! crate root.

mod certificate;
mod cluster;
mod ingress_options;
mod route;
mod service;
mod validate;
mod validate_delta;

pub use certificate::{Certificate, REDACTED};
pub use cluster::{Cluster, ClusterKey, Endpoint};
pub use ingress_options::{BackendProtocol, CookieAffinity, IngressOptions, IngressRef};
pub use route::{Backend, BackendPort, Canary, HostMatch, PathType, Route, VirtualHost};
pub use service::{
    Protocol, Service, ServiceEndpoint, ServicePort, ServiceType, SessionAffinity, TargetPort,
    TargetRef,
};
pub use validate::SnapshotError;
pub(crate) use validate::order;
pub(crate) use validate_delta::changes;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::workload::{Mesh, MtlsMode, Workload};

/// One consistent view of the cluster, as the data plane serves it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Snapshot {
    /// Grows by one with each accepted change; 0 means nothing accepted yet.
    pub version: u64,
    /// Every Service with its addresses and endpoints: the DNS records come from here.
    pub services: Vec<Arc<Service>>,
    /// The namespaces that exist, sorted: DNS answers NODATA for `<ns>.svc.<zone>` of one of
    /// these without Services, NXDOMAIN for names in any other.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// One cluster per Service port (port and protocol): what a route forwards to.
    pub clusters: Vec<Arc<Cluster>>,
    /// Ingress rules merged by host, most specific host first.
    pub virtual_hosts: Vec<Arc<VirtualHost>>,
    /// Where a request that matches no virtual host goes (an Ingress `spec.defaultBackend`);
    /// none means 404.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<Backend>,
    /// The Ingress that owns `default_backend`; its [`IngressOptions`] apply to the requests
    /// it serves. None (with a backend: a hand-written snapshot) means the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend_ingress: Option<IngressRef>,
    /// TLS certificates from the Secrets Ingresses name, with the hosts they serve.
    pub certificates: Vec<Arc<Certificate>>,
    /// What Ingress annotations ask of the gateway, one entry per Ingress that asks anything,
    /// sorted by `ingress`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress_options: Vec<Arc<IngressOptions>>,
    /// The Pods as the mesh sees them and the AuthorizationPolicies: what sidecars are told
    /// of their own workload. Not on the wire to gateways and DNS servers, which do not use
    /// it (`convert` leaves it out): a sidecar receives its own part through
    /// `Destination.GetInboundPolicy`.
    #[serde(default, skip_serializing_if = "Mesh::is_empty")]
    pub mesh: Mesh,
}

impl Snapshot {
    /// Same cluster, whatever the version. Items two views share are equal by pointer, so
    /// comparing a view with the one it was made from costs a pointer compare per item.
    pub fn same_content(&self, other: &Snapshot) -> bool {
        self.services == other.services
            && self.namespaces == other.namespaces
            && self.clusters == other.clusters
            && self.virtual_hosts == other.virtual_hosts
            && self.default_backend == other.default_backend
            && self.default_backend_ingress == other.default_backend_ingress
            && self.certificates == other.certificates
            && self.ingress_options == other.ingress_options
            && self.mesh == other.mesh
    }

    /// The options of one Ingress, if its annotations ask anything.
    pub fn ingress_options(&self, ingress: &IngressRef) -> Option<&IngressOptions> {
        self.ingress_options
            .binary_search_by(|o| o.ingress.cmp(ingress))
            .ok()
            .map(|i| &*self.ingress_options[i])
    }

    pub fn cluster(&self, key: &ClusterKey) -> Option<&Cluster> {
        self.clusters
            .binary_search_by(|c| c.key.cmp(key))
            .ok()
            .map(|i| &*self.clusters[i])
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services
            .binary_search_by(|s| (s.namespace.as_str(), s.name.as_str()).cmp(&(namespace, name)))
            .ok()
            .map(|i| &*self.services[i])
    }

    /// A copy fit to show: private keys replaced by [`REDACTED`].
    pub fn without_private_keys(&self) -> Snapshot {
        let mut shown = self.clone();
        for cert in &mut shown.certificates {
            Arc::make_mut(cert).key_pem = REDACTED.to_owned();
        }
        shown
    }
}

#[cfg(test)]
mod tests;
