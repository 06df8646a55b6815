//! The store: the objects of one relist of a source ([`crate::source::Update`]), by kind,
//! namespace and name. A relist builds a new store whole ([`Store::from_manifests`]), which
//! replaces the old one only once it translated cleanly, so nothing downstream ever sees half
//! a cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use crate::object::{Kind, Manifest, Object};

type ByName = BTreeMap<(String, String), Arc<Manifest>>;

/// Objects by kind, then (namespace, name).
#[derive(Clone, Debug, Default)]
pub struct Store {
    kinds: [ByName; Kind::ALL.len()],
}

fn slot(kinds: &mut [ByName; Kind::ALL.len()], m: Arc<Manifest>) {
    let key = m.key();
    kinds[key.kind as usize].insert((key.namespace, key.name), m);
}

macro_rules! typed {
    ($fn:ident, $kind:ident, $ty:ty) => {
        pub fn $fn(&self) -> impl Iterator<Item = (&Manifest, &$ty)> {
            self.kinds[Kind::$kind as usize]
                .values()
                .filter_map(|m| match &m.object {
                    Object::$kind(o) => Some((&**m, &**o)),
                    _ => None,
                })
        }
    };
}

impl Store {
    /// A store holding exactly these objects.
    pub fn from_manifests(manifests: impl IntoIterator<Item = Arc<Manifest>>) -> Store {
        let mut store = Store::default();
        for m in manifests {
            slot(&mut store.kinds, m);
        }
        store
    }

    /// How many objects of each kind.
    pub fn counts(&self) -> impl Iterator<Item = (Kind, usize)> + '_ {
        Kind::ALL
            .into_iter()
            .map(|k| (k, self.kinds[k as usize].len()))
    }

    /// Objects of one kind in one namespace, by name.
    pub fn in_namespace(
        &self,
        kind: Kind,
        namespace: &str,
    ) -> impl Iterator<Item = &Arc<Manifest>> {
        let lo = (namespace.to_owned(), String::new());
        self.kinds[kind as usize]
            .range(lo..)
            .take_while(move |((ns, _), _)| ns == namespace)
            .map(|(_, m)| m)
    }

    /// Every namespace named by an object: the Namespace objects' names and the namespaces of
    /// namespaced objects, each once, sorted.
    pub fn namespaces(&self) -> std::collections::BTreeSet<&str> {
        let mut all = std::collections::BTreeSet::new();
        for kind in Kind::ALL {
            let objects = &self.kinds[kind as usize];
            if kind == Kind::Namespace {
                all.extend(objects.keys().map(|(_, name)| name.as_str()));
            } else {
                all.extend(objects.keys().map(|(ns, _)| ns.as_str()));
            }
        }
        all.remove("");
        all
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        match &self.kinds[Kind::Service as usize]
            .get(&(namespace.to_owned(), name.to_owned()))?
            .object
        {
            Object::Service(s) => Some(s),
            _ => None,
        }
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        match &self.kinds[Kind::Pod as usize]
            .get(&(namespace.to_owned(), name.to_owned()))?
            .object
        {
            Object::Pod(p) => Some(p),
            _ => None,
        }
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        match &self.kinds[Kind::Secret as usize]
            .get(&(namespace.to_owned(), name.to_owned()))?
            .object
        {
            Object::Secret(s) => Some(s),
            _ => None,
        }
    }

    typed!(namespace_objects, Namespace, Namespace);
    typed!(services, Service, Service);
    typed!(endpoints, Endpoints, Endpoints);
    typed!(endpoint_slices, EndpointSlice, EndpointSlice);
    typed!(pods, Pod, Pod);
    typed!(ingresses, Ingress, Ingress);
    typed!(ingress_classes, IngressClass, IngressClass);
    typed!(
        authorization_policies,
        AuthorizationPolicy,
        crate::authorization_policy::AuthorizationPolicy
    );
}

#[cfg(test)]
mod tests;
