//! The mesh's fixed points, shared by the parts that must agree on them: the orchestrator's
//! injection and interception, the sidecar, and the control plane's identity service.
//!
//! The ports follow Linkerd's proxy (so people who know one know the other); the socket mark
//! is what exempts the sidecar's own connections from interception in the Pod's nftables rules.

use std::fmt;

/// The sidecar's outbound listener: the app's outbound TCP is redirected here.
pub const OUTBOUND_PORT: u16 = 4140;
/// The sidecar's inbound listener: TCP arriving for the Pod is redirected here.
pub const INBOUND_PORT: u16 = 4143;
/// The sidecar's admin server (`/live`, `/ready`, `/metrics`), on the Pod's address.
pub const ADMIN_PORT: u16 = 4191;
/// `SO_MARK` on every socket the sidecar opens, so its own connections skip interception.
pub const SOCKET_MARK: u32 = 0x0066_6572;
/// The ALPN protocol that marks mesh traffic between sidecars (the app's own protocol is
/// carried inside, detected on the other side).
pub const ALPN: &[u8] = b"ferry.dev/mesh/v1";
/// The container the injection adds: an initContainer with `restartPolicy: Always` (a
/// Kubernetes native sidecar). A Pod that has it is meshed.
pub const SIDECAR_CONTAINER: &str = "ferry-sidecar";
/// The annotation on a Namespace or a Pod (template) that asks for a sidecar: `enabled`, or
/// `disabled` on a Pod to opt out of its Namespace's.
pub const INJECT_ANNOTATION: &str = "ferry.dev/inject";

/// A workload's identity: `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadId {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

/// Why a string is not a workload identity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not spiffe://<trust domain>/ns/<namespace>/sa/<service account>")]
pub struct WorkloadIdError(pub String);

impl WorkloadId {
    pub fn new(trust_domain: &str, namespace: &str, service_account: &str) -> WorkloadId {
        WorkloadId {
            trust_domain: trust_domain.to_owned(),
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
        }
    }

    /// The principal as Istio's AuthorizationPolicy writes it: the URI without `spiffe://`.
    pub fn principal(&self) -> String {
        format!(
            "{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}", self.principal())
    }
}

impl std::str::FromStr for WorkloadId {
    type Err = WorkloadIdError;

    fn from_str(s: &str) -> Result<WorkloadId, WorkloadIdError> {
        let bad = || WorkloadIdError(s.to_owned());
        let rest = s.strip_prefix("spiffe://").ok_or_else(bad)?;
        let mut parts = rest.split('/');
        let (Some(td), Some("ns"), Some(ns), Some("sa"), Some(sa), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        if [td, ns, sa].iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        Ok(WorkloadId::new(td, ns, sa))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_reads_back_as_written() {
        let id = WorkloadId::new("cluster.local", "shop", "web");
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/shop/sa/web");
        assert_eq!(id.principal(), "cluster.local/ns/shop/sa/web");
        assert_eq!(id.to_string().parse::<WorkloadId>(), Ok(id));
    }

    #[test]
    fn other_uris_are_not_identities() {
        for bad in [
            "cluster.local/ns/shop/sa/web",
            "spiffe://cluster.local/ns/shop",
            "spiffe://cluster.local/ns//sa/web",
            "spiffe://cluster.local/ns/shop/sa/web/extra",
            "spiffe://cluster.local/sa/web/ns/shop",
            "spiffe:///ns/shop/sa/web",
        ] {
            assert!(bad.parse::<WorkloadId>().is_err(), "{bad}");
        }
    }
}
