//! Istio's `AuthorizationPolicy` (`security.istio.io/v1`, and `v1beta1`, the same schema), a
//! custom resource k8s-openapi does not define: its serde types, with every field Istio has so
//! that one ferry does not enforce is refused by name (validation) rather than ignored, which
//! would let through what the policy was written to stop.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// The API group.
pub const GROUP: &str = "security.istio.io";
/// The versions read, newest first (both have the same schema).
pub const API_VERSIONS: [&str; 2] = ["security.istio.io/v1", "security.istio.io/v1beta1"];

/// One AuthorizationPolicy object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicy {
    /// As written: one of [`API_VERSIONS`].
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: AuthorizationPolicySpec,
}

impl k8s_openapi::Resource for AuthorizationPolicy {
    const API_VERSION: &'static str = API_VERSIONS[0];
    const GROUP: &'static str = GROUP;
    const KIND: &'static str = "AuthorizationPolicy";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "authorizationpolicies";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for AuthorizationPolicy {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// `spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizationPolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// `ALLOW` (the default) or `DENY`; `AUDIT` and `CUSTOM` are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<Rule>>,
    /// Istio's; refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<serde_json::Value>,
    /// Istio's (Gateway API attachment); refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<serde_json::Value>,
    /// Istio's; refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_refs: Option<serde_json::Value>,
}

/// `spec.selector`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

/// `spec.rules[]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<From>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<To>>,
    /// Istio's conditions; refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<serde_json::Value>,
}

/// `spec.rules[].from[]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct From {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// `spec.rules[].to[]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct To {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

type Strings = Option<Vec<String>>;

/// `source`: the four fields ferry enforces, and Istio's others (refused).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principals: Strings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_principals: Strings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Strings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_namespaces: Strings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_principals: Strings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_request_principals: Strings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_blocks: Strings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ip_blocks: Strings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip_blocks: Strings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_remote_ip_blocks: Strings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Strings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_service_accounts: Strings,
}

/// `operation`: the six fields ferry enforces, and Istio's hosts (refused).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Strings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ports: Strings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Strings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_methods: Strings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Strings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_paths: Strings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Strings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_hosts: Strings,
}
