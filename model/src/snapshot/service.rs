//! Services as DNS and the L4 proxy see them: type, cluster IPs, ports, session affinity and
//! the endpoints behind them, with what each endpoint stands for.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::ClusterKey;

/// The kinds of Service (`spec.type`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
            Self::ExternalName => "ExternalName",
        }
    }
}

/// Transport protocol of a port.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum Protocol {
    #[default]
    TCP,
    UDP,
    SCTP,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TCP => "TCP",
            Self::UDP => "UDP",
            Self::SCTP => "SCTP",
        }
    }
}

/// `spec.sessionAffinity` with its timeout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum SessionAffinity {
    #[default]
    None,
    ClientIP {
        timeout_seconds: u32,
    },
}

/// A Service, with what DNS and the L4 proxy need.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    #[serde(rename = "type")]
    pub service_type: ServiceType,
    /// The cluster IPs as written (`spec.clusterIPs`, else `spec.clusterIP`); empty for headless
    /// and ExternalName Services, and for Services that name none.
    pub cluster_ips: Vec<IpAddr>,
    /// `clusterIP: None`: DNS answers with the endpoints' addresses.
    pub headless: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_name: Option<String>,
    pub ports: Vec<ServicePort>,
    pub session_affinity: SessionAffinity,
    pub publish_not_ready_addresses: bool,
    /// One entry per endpoint address, sorted by address.
    pub endpoints: Vec<ServiceEndpoint>,
}

impl Service {
    /// The key of the cluster that serves `port` of this Service.
    pub fn cluster_key(&self, port: &ServicePort) -> ClusterKey {
        ClusterKey {
            namespace: self.namespace.clone(),
            service: self.name.clone(),
            port: port.port,
            protocol: port.protocol,
        }
    }
}

/// A port of a Service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServicePort {
    /// Empty when the Service has a single unnamed port.
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    pub target_port: TargetPort,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
}

/// `targetPort`: a number, or the name of a container port resolved per Pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

impl fmt::Display for TargetPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(s) => f.write_str(s),
        }
    }
}

/// What an endpoint stands for (`targetRef`), usually a Pod.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TargetRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The Pod's ServiceAccount (`spec.serviceAccountName`, `default` when it names none): the
    /// workload identity the endpoint presents in the mesh. `None` when the target is not a
    /// Pod the control plane holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The Pod runs the mesh's sidecar (an initContainer named
    /// [`SIDECAR_CONTAINER`](crate::mesh::SIDECAR_CONTAINER) with `restartPolicy: Always`): a
    /// client's sidecar reaches it over mutual TLS, and others in plaintext.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub meshed: bool,
}

/// One address behind a Service, with the EndpointSlice conditions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceEndpoint {
    pub address: IpAddr,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetRef>,
}
