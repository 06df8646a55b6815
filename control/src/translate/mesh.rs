//! The mesh's part of the snapshot: each Pod as a workload (identity, whether it runs the
//! sidecar, its mTLS mode) with the AuthorizationPolicies that select it, and the policies in
//! the model's form. Matching selectors to labels happens here, once per change, so answering
//! a sidecar is a lookup.
//!
//! A policy selects the Pods of its own namespace whose labels its `selector.matchLabels`
//! match (all of them without a selector); a policy in the root namespace
//! ([`ROOT_NAMESPACE`]) does the same across every namespace, as Istio's root namespace does.

use std::collections::BTreeMap;

use ferry_model::mesh::{MTLS_MODE_ANNOTATION, SIDECAR_CONTAINER};
use ferry_model::policy::{
    Action, AuthorizationPolicy, Operation, PolicyRef, ROOT_NAMESPACE, Rule, Source,
};
use ferry_model::{Mesh, MtlsMode, Workload};
use ferry_objects::authorization_policy as istio;
use ferry_objects::object::Manifest;
use ferry_objects::selector;
use ferry_objects::store::Store;
use k8s_openapi::api::core::v1::Pod;

/// The Pod runs the mesh's sidecar: an initContainer named [`SIDECAR_CONTAINER`] with
/// `restartPolicy: Always` (a Kubernetes native sidecar), the injection's contract.
pub(super) fn meshed(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.name == SIDECAR_CONTAINER && c.restart_policy.as_deref() == Some("Always")
            })
        })
}

/// The Pod's ServiceAccount, as its identity names it
/// ([`crate::identity::pods::service_account`]).
pub(super) fn service_account(pod: &Pod) -> &str {
    crate::identity::pods::service_account(pod)
}

fn mtls_annotation(annotations: Option<&BTreeMap<String, String>>) -> Option<MtlsMode> {
    // A value that is neither is reported by validation and read as absent.
    annotations
        .and_then(|a| a.get(MTLS_MODE_ANNOTATION))
        .and_then(|v| MtlsMode::parse(v))
}

fn strings(values: Option<&Vec<String>>) -> Vec<String> {
    values.cloned().unwrap_or_default()
}

fn ports(values: Option<&Vec<String>>) -> Vec<u16> {
    // Validation refused anything else, so nothing is dropped here.
    values
        .into_iter()
        .flatten()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The model's form of a (validated) policy.
fn policy(m: &Manifest, p: &istio::AuthorizationPolicy) -> AuthorizationPolicy {
    let rule = |r: &istio::Rule| Rule {
        from: r
            .from
            .iter()
            .flatten()
            .filter_map(|f| f.source.as_ref())
            .map(|s| Source {
                principals: strings(s.principals.as_ref()),
                not_principals: strings(s.not_principals.as_ref()),
                namespaces: strings(s.namespaces.as_ref()),
                not_namespaces: strings(s.not_namespaces.as_ref()),
            })
            .collect(),
        to: r
            .to
            .iter()
            .flatten()
            .filter_map(|t| t.operation.as_ref())
            .map(|o| Operation {
                ports: ports(o.ports.as_ref()),
                not_ports: ports(o.not_ports.as_ref()),
                methods: strings(o.methods.as_ref()),
                not_methods: strings(o.not_methods.as_ref()),
                paths: strings(o.paths.as_ref()),
                not_paths: strings(o.not_paths.as_ref()),
            })
            .collect(),
    };
    AuthorizationPolicy {
        policy: PolicyRef {
            namespace: m.namespace().to_owned(),
            name: m.name().to_owned(),
        },
        action: match p.spec.action.as_deref() {
            Some("DENY") => Action::Deny,
            _ => Action::Allow,
        },
        rules: p.spec.rules.iter().flatten().map(rule).collect(),
    }
}

/// A policy's selector: `None` selects every Pod in reach.
type Selector = Option<BTreeMap<String, String>>;

pub(super) fn mesh(store: &Store) -> Mesh {
    let mut authorization_policies = Vec::new();
    let mut by_namespace: BTreeMap<&str, Vec<(PolicyRef, Selector)>> = BTreeMap::new();
    for (m, p) in store.authorization_policies() {
        let model = policy(m, p);
        let selector = p
            .spec
            .selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            .filter(|labels| !labels.is_empty());
        by_namespace
            .entry(m.namespace())
            .or_default()
            .push((model.policy.clone(), selector));
        authorization_policies.push(model);
    }
    authorization_policies.sort_by(|a, b| a.policy.cmp(&b.policy));

    let namespace_modes: BTreeMap<&str, MtlsMode> = store
        .namespace_objects()
        .filter_map(|(m, ns)| Some((m.name(), mtls_annotation(ns.metadata.annotations.as_ref())?)))
        .collect();
    let no_labels = BTreeMap::new();
    let workloads = store
        .pods()
        .map(|(m, pod)| {
            let labels = pod.metadata.labels.as_ref().unwrap_or(&no_labels);
            let namespace = m.namespace();
            let mut authorization: Vec<PolicyRef> = [namespace, ROOT_NAMESPACE]
                .iter()
                .enumerate()
                // The root namespace's policies once, even for its own Pods.
                .filter(|(i, ns)| *i == 0 || **ns != namespace)
                .filter_map(|(_, ns)| by_namespace.get(ns))
                .flatten()
                .filter(|(_, sel)| sel.as_ref().is_none_or(|s| selector::equality(s, labels)))
                .map(|(p, _)| p.clone())
                .collect();
            authorization.sort();
            Workload {
                namespace: namespace.to_owned(),
                name: m.name().to_owned(),
                service_account: service_account(pod).to_owned(),
                meshed: meshed(pod),
                mtls_mode: mtls_annotation(pod.metadata.annotations.as_ref())
                    .or_else(|| namespace_modes.get(namespace).copied())
                    .unwrap_or_default(),
                authorization,
            }
        })
        .collect();
    // The store iterates by (namespace, name): already sorted.
    Mesh {
        workloads,
        authorization_policies,
    }
}
