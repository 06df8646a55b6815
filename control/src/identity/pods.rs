//! The Pods the control plane knows, as much of each as a per-Pod token is checked against:
//! uid and ServiceAccount, by namespace and name. The publisher replaces the whole view
//! whenever it takes a new store ([`crate::publish::Publisher`]), so a Pod deleted from the
//! cluster leaves the view with the relist that no longer lists it.

use std::collections::HashMap;
use std::sync::Arc;

use ferry_objects::store::Store;
use k8s_openapi::api::core::v1::Pod;

/// A Pod's identity-relevant facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRecord {
    pub uid: String,
    /// `default` when the Pod's spec names none, as the API server defaults it.
    pub service_account: String,
}

impl PodRecord {
    pub fn new(uid: &str, service_account: &str) -> PodRecord {
        PodRecord {
            uid: uid.to_owned(),
            service_account: service_account.to_owned(),
        }
    }
}

/// The ServiceAccount a Pod runs as: `spec.serviceAccountName`, else the deprecated
/// `spec.serviceAccount`, else `default`, as the ServiceAccount admission defaults it (a Pod
/// the control plane sees may not have been through admission: a file Pod, an old object).
pub fn service_account(pod: &Pod) -> &str {
    let spec = pod.spec.as_ref();
    [
        spec.and_then(|s| s.service_account_name.as_deref()),
        spec.and_then(|s| s.service_account.as_deref()),
    ]
    .into_iter()
    .flatten()
    .find(|sa| !sa.is_empty())
    .unwrap_or("default")
}

/// Pods by (namespace, name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodView {
    pods: HashMap<(String, String), PodRecord>,
}

impl PodView {
    /// The Pods of a store that have a uid (one without cannot be told from its successor,
    /// so no token can be bound to it).
    pub fn from_store(store: &Store) -> PodView {
        let mut view = PodView::default();
        for (manifest, pod) in store.pods() {
            let Some(uid) = pod.metadata.uid.as_deref().filter(|u| !u.is_empty()) else {
                continue;
            };
            let service_account = service_account(pod);
            view.insert(
                manifest.namespace(),
                manifest.name(),
                PodRecord::new(uid, service_account),
            );
        }
        view
    }

    pub fn insert(&mut self, namespace: &str, name: &str, record: PodRecord) {
        self.pods
            .insert((namespace.to_owned(), name.to_owned()), record);
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<&PodRecord> {
        self.pods.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// Whether the Pod `namespace/name` with this uid exists; an empty `uid` (a record that
    /// predates uids) matches any Pod of that name.
    pub fn has(&self, namespace: &str, name: &str, uid: &str) -> bool {
        self.get(namespace, name)
            .is_some_and(|p| uid.is_empty() || p.uid == uid)
    }

    /// The Pods, as (namespace, name, record).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &PodRecord)> {
        self.pods
            .iter()
            .map(|((namespace, name), record)| (namespace.as_str(), name.as_str(), record))
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }
}

/// The current [`PodView`], shared between the publisher (which replaces it) and the identity
/// service (which reads it, and follows its changes: [`PodDirectory::subscribe`]).
#[derive(Clone, Debug)]
pub struct PodDirectory(Arc<tokio::sync::watch::Sender<Option<Arc<PodView>>>>);

impl Default for PodDirectory {
    fn default() -> PodDirectory {
        PodDirectory(Arc::new(tokio::sync::watch::channel(None).0))
    }
}

impl PodDirectory {
    pub fn replace(&self, view: PodView) {
        self.0.send_replace(Some(Arc::new(view)));
    }

    /// The view; empty until the first [`PodDirectory::replace`].
    pub fn current(&self) -> Arc<PodView> {
        self.0.borrow().clone().unwrap_or_default()
    }

    /// The view once one was published: `None` before, when an empty view means "not known
    /// yet" rather than "no Pods".
    pub fn published(&self) -> Option<Arc<PodView>> {
        self.0.borrow().clone()
    }

    /// Changes to come (each [`PodDirectory::replace`]).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Option<Arc<PodView>>> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn pod(name: Option<&str>, deprecated: Option<&str>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                service_account_name: name.map(str::to_owned),
                service_account: deprecated.map(str::to_owned),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn the_service_account_is_the_name_then_the_deprecated_field_then_default() {
        assert_eq!(service_account(&pod(Some("web"), Some("old"))), "web");
        assert_eq!(service_account(&pod(None, Some("old"))), "old");
        assert_eq!(service_account(&pod(Some(""), Some("old"))), "old");
        assert_eq!(service_account(&pod(Some(""), Some(""))), "default");
        assert_eq!(service_account(&pod(None, None)), "default");
        assert_eq!(service_account(&Pod::default()), "default");
    }
}
