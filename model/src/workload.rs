//! Pods as the mesh sees them, and the authorization policies that select them: what the
//! control plane answers a sidecar's `GetInboundPolicy` from. Computed by translate (which
//! matches selectors to labels, so no labels are kept here) and read per workload.

use serde::{Deserialize, Serialize};

use crate::policy::{AuthorizationPolicy, PolicyRef};

/// How a workload's sidecar takes inbound traffic (`ferry.dev/mtls-mode`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum MtlsMode {
    /// Mutual TLS from other sidecars, and plaintext from the rest (Istio's default, for
    /// migration).
    #[default]
    Permissive,
    /// Mutual TLS only: a plaintext client is refused.
    Strict,
}

impl MtlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MtlsMode::Permissive => "permissive",
            MtlsMode::Strict => "strict",
        }
    }

    /// The annotation's value; `None` when it is neither `strict` nor `permissive`.
    pub fn parse(value: &str) -> Option<MtlsMode> {
        match value {
            "permissive" => Some(MtlsMode::Permissive),
            "strict" => Some(MtlsMode::Strict),
            _ => None,
        }
    }
}

/// One Pod, with what its sidecar is told about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
    /// `spec.serviceAccountName`, `default` when it names none: its identity.
    pub service_account: String,
    /// It runs the mesh's sidecar.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub meshed: bool,
    pub mtls_mode: MtlsMode,
    /// The AuthorizationPolicies that select it, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization: Vec<PolicyRef>,
}

/// The mesh's own part of a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mesh {
    /// Every Pod, sorted by (namespace, name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<Workload>,
    /// Every AuthorizationPolicy, sorted by [`PolicyRef`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_policies: Vec<AuthorizationPolicy>,
}

impl Mesh {
    pub fn is_empty(&self) -> bool {
        self.workloads.is_empty() && self.authorization_policies.is_empty()
    }

    pub fn workload(&self, namespace: &str, name: &str) -> Option<&Workload> {
        self.workloads
            .binary_search_by(|w| (w.namespace.as_str(), w.name.as_str()).cmp(&(namespace, name)))
            .ok()
            .map(|i| &self.workloads[i])
    }

    pub fn authorization_policy(&self, policy: &PolicyRef) -> Option<&AuthorizationPolicy> {
        self.authorization_policies
            .binary_search_by(|p| p.policy.cmp(policy))
            .ok()
            .map(|i| &self.authorization_policies[i])
    }

    /// The policies that select a workload, in [`PolicyRef`] order.
    pub fn policies_of<'a>(
        &'a self,
        workload: &'a Workload,
    ) -> impl Iterator<Item = &'a AuthorizationPolicy> + 'a {
        workload
            .authorization
            .iter()
            .filter_map(|p| self.authorization_policy(p))
    }
}
