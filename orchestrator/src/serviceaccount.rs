//! ServiceAccounts as Kubernetes keeps them: the ServiceAccount controller, which makes the
//! `default` ServiceAccount in every Namespace (and makes it again when it is deleted), and
//! the ServiceAccount admission on Pods, which defaults `spec.serviceAccountName` (and the
//! deprecated `spec.serviceAccount`) to `default` and refuses a Pod that names a
//! ServiceAccount that does not exist.
//!
//! Pure: the round adds [`defaults`] to the declared objects it reconciles; the API server's
//! Pod create and the ReplicaSet controller call [`admit`]. A `default` deleted through the
//! API is replaced at once by [`made_again`]: a new object with a new uid, as the controller
//! creates one (the same uid would look to `kubectl delete`, which waits for the object to be
//! gone or replaced, as if nothing had happened, and it would wait forever).

use std::collections::BTreeSet;
use std::sync::Arc;

use ferry_objects::object::{Manifest, Object, Origin};

use crate::apiserver::new_uid;
use k8s_openapi::api::core::v1::{Pod, PodSpec, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The ServiceAccount a Pod runs as when it names none.
pub const DEFAULT: &str = "default";
/// Where the controller's ServiceAccounts say they come from, in problems.
pub const ORIGIN: &str = "<serviceaccount controller>";
/// The Namespaces an API server always has.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-node-lease", "kube-public", "kube-system"];

/// The ServiceAccounts that exist among these objects: (namespace, name).
pub fn existing<'a>(
    manifests: impl IntoIterator<Item = &'a Manifest>,
) -> BTreeSet<(String, String)> {
    manifests
        .into_iter()
        .filter(|m| matches!(m.object, Object::ServiceAccount(_)))
        .map(|m| (m.namespace().to_owned(), m.name().to_owned()))
        .collect()
}

/// The `default` ServiceAccounts the controller makes: one in every Namespace that exists
/// (declared, used by an object, or the API server's own) and has none.
pub fn defaults(manifests: &[Arc<Manifest>]) -> Vec<Arc<Manifest>> {
    let mut namespaces: BTreeSet<&str> = SYSTEM_NAMESPACES.iter().copied().collect();
    for m in manifests {
        match &m.object {
            Object::Namespace(_) => {
                namespaces.insert(m.name());
            }
            _ if m.object.kind().namespaced() && !m.namespace().is_empty() => {
                namespaces.insert(m.namespace());
            }
            _ => {}
        }
    }
    let have = existing(manifests.iter().map(|m| &**m));
    namespaces
        .into_iter()
        .filter(|ns| !have.contains(&((*ns).to_owned(), DEFAULT.to_owned())))
        .map(|ns| {
            Arc::new(Manifest {
                origin: Origin {
                    file: ORIGIN.into(),
                    doc: None,
                },
                object: Object::ServiceAccount(Box::new(ServiceAccount {
                    metadata: ObjectMeta {
                        name: Some(DEFAULT.to_owned()),
                        namespace: Some(ns.to_owned()),
                        ..ObjectMeta::default()
                    },
                    ..ServiceAccount::default()
                })),
            })
        })
        .collect()
}

/// The `default` ServiceAccount of `namespace` as the controller makes it again after a
/// deletion: a new uid and creation time (given here, so the API server's store does not keep
/// the deleted object's).
pub fn made_again(namespace: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT.to_owned()),
            namespace: Some(namespace.to_owned()),
            uid: Some(new_uid()),
            creation_timestamp: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                jiff::Timestamp::now(),
            )),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    }
}

/// The ServiceAccount a Pod names, defaulted as the admission does: `serviceAccountName`,
/// else the deprecated `serviceAccount`, else `default`; both fields set to it.
pub fn default_pod_spec(spec: &mut PodSpec) -> String {
    let name = [&spec.service_account_name, &spec.service_account]
        .into_iter()
        .flatten()
        .find(|n| !n.is_empty())
        .cloned()
        .unwrap_or_else(|| DEFAULT.to_owned());
    spec.service_account_name = Some(name.clone());
    spec.service_account = Some(name.clone());
    name
}

/// The ServiceAccount admission on a Pod being created in `namespace`: defaults its
/// ServiceAccount, and refuses it (the message the API server's 403 says) when that
/// ServiceAccount does not exist among `service_accounts`.
pub fn admit(
    pod: &mut Pod,
    namespace: &str,
    service_accounts: &BTreeSet<(String, String)>,
) -> Result<(), String> {
    let sa = default_pod_spec(pod.spec.get_or_insert_with(PodSpec::default));
    if service_accounts.contains(&(namespace.to_owned(), sa.clone())) {
        return Ok(());
    }
    Err(format!(
        "error looking up service account {namespace}/{sa}: serviceaccount \"{sa}\" not found"
    ))
}

#[cfg(test)]
mod tests;
