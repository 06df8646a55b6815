//! translate: the store's objects to one Snapshot. Pure and deterministic: the same objects
//! give the same snapshot, byte for byte.
//!
//! [`translate`] is the outline; each step lives in the module of its concept:
//! - `services`: Services and their endpoints become services and clusters;
//! - `namespaces`: the namespaces that exist;
//! - `class`: which Ingresses are ferry's, oldest first;
//! - `options`: each Ingress's annotations become its [`ferry_model::IngressOptions`];
//! - `routes`: the rules of ferry's Ingresses merge into virtual hosts and routes;
//! - `tls`: `spec.tls` marks hosts as TLS and takes certificates from Secrets;
//! - `canary`: canary Ingresses join the routes of main ones;
//! - `mesh`: Pods as workloads of the mesh, and the AuthorizationPolicies that select them.
//!
//! A missing Service, port or Secret is a warning on the referring object, never an error:
//! the route answers 503, the host serves the default certificate. Warnings are sorted, so
//! the order the steps meet them in does not matter.

mod canary;
mod class;
mod mesh;
mod namespaces;
mod options;
mod routes;
mod services;
mod tls;

use std::sync::Arc;

use ferry_model::{IngressRef, Problem, Snapshot};
use ferry_objects::ingress_annotations::Annotations;
use ferry_objects::object::Manifest;
use ferry_objects::store::Store;
use ferry_objects::validate;

#[cfg(feature = "kubernetes")]
pub(crate) use class::ferry_ingresses;
pub use class::{CONTROLLER_NAME, DEFAULT_CLASS_ANNOTATION, LEGACY_CLASS_ANNOTATION};

/// A snapshot (version 0: the publisher numbers it) and the warnings met on the way.
#[derive(Debug, Default)]
pub struct Translation {
    pub snapshot: Snapshot,
    pub problems: Vec<Problem>,
}

/// The snapshot of every object in `store`, with the warnings met on the way.
pub fn translate(store: &Store) -> Translation {
    let mut problems = Vec::new();
    let (services, clusters) = services::services_and_clusters(store);
    let mut snapshot = Snapshot {
        services: shared(services),
        namespaces: namespaces::namespaces(store),
        clusters: shared(clusters),
        mesh: mesh::mesh(store),
        ..Snapshot::default()
    };

    let ingresses = class::ferry_ingresses(store, &mut problems);
    let annotations: Vec<Annotations> = ingresses
        .iter()
        .map(|(m, ing)| validate::ingress_annotations(m, ing))
        .collect();
    snapshot.ingress_options = shared(options::ingress_options(&ingresses, &annotations));

    // A canary adds no routes of its own: it joins the main Ingresses' routes once they exist.
    let mut mains = Vec::new();
    let mut canaries = Vec::new();
    for (&(m, ing), a) in ingresses.iter().zip(&annotations) {
        match &a.canary {
            None => mains.push((m, ing)),
            Some(settings) => canaries.push((m, ing, settings)),
        }
    }
    let mut hosts = routes::virtual_hosts(&snapshot, &mains, &mut problems);
    let tls = tls::ingress_tls(store, &mains, &mut problems);
    canary::attach_canaries(&snapshot, &mut hosts.by_host, &canaries, &mut problems);
    tls.mark_hosts(&mut hosts.by_host);

    snapshot.default_backend = hosts.default_backend;
    snapshot.default_backend_ingress = hosts.default_backend_ingress;
    snapshot.virtual_hosts = shared(routes::in_precedence_order(hosts.by_host));
    snapshot.certificates = shared(tls.certificates());
    problems.sort();
    Translation { snapshot, problems }
}

/// The items as a snapshot holds them (see `ferry_model::snapshot`: shared, so that the
/// views made from this one copy pointers).
fn shared<T>(items: Vec<T>) -> Vec<Arc<T>> {
    items.into_iter().map(Arc::new).collect()
}

/// How the snapshot refers to an Ingress (routes, canaries, options, default backends).
fn ingress_ref(m: &Manifest) -> IngressRef {
    IngressRef::new(m.namespace(), m.name())
}

#[cfg(test)]
mod tests;
