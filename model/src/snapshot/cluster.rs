//! Clusters: the endpoints of one Service port, named by [`ClusterKey`], which routes and the
//! L4 proxy balance over.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Protocol, SessionAffinity};

/// Names a cluster: a Service port, which is unique by (port, protocol) within its Service, as
/// the API server validates it (kube-dns has `53/UDP` and `53/TCP`). Ordered by namespace,
/// Service, port, then protocol (TCP first).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClusterKey {
    pub namespace: String,
    pub service: String,
    pub port: u16,
    /// TCP when absent (snapshot files written before the protocol was part of the key).
    #[serde(default)]
    pub protocol: Protocol,
}

impl fmt::Display for ClusterKey {
    /// `ns/svc:80` for TCP (what metrics and logs have always shown), `ns/svc:53/UDP` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.service, self.port)?;
        match self.protocol {
            Protocol::TCP => Ok(()),
            other => write!(f, "/{}", other.as_str()),
        }
    }
}

/// The endpoints of one Service port: what a route balances over.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cluster {
    /// The protocol is the key's.
    pub key: ClusterKey,
    pub port_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    pub session_affinity: SessionAffinity,
    /// Sorted by (address, port).
    pub endpoints: Vec<Endpoint>,
}

impl Cluster {
    pub fn ready_endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.iter().filter(|e| e.ready)
    }
}

/// One address and port of a cluster. What the address stands for (its Pod) is in the
/// Service's [`ServiceEndpoint`](super::ServiceEndpoint)s, once per address rather than once
/// per port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    pub address: IpAddr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}
