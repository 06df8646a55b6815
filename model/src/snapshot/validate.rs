//! The invariants every data-plane part relies on, checked before a snapshot is published.
//!
//! The checks come in three kinds, so that a view made by a delta can be checked for what
//! changed only ([`Snapshot::validate_delta`]) with the same code the whole view is checked
//! with ([`Snapshot::validate`]): checks of one item alone (`Problems::service` and its
//! siblings), the order of neighbours in a keyed collection, and references between items
//! (a cluster to its Service's port, a route to its cluster).

use std::cmp::Ordering;
use std::collections::BTreeSet;

use super::{
    Backend, Certificate, Cluster, IngressOptions, Service, ServiceType, Snapshot, VirtualHost,
};

/// A snapshot that breaks one of the invariants the data plane relies on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid snapshot: {}", .0.join("; "))]
pub struct SnapshotError(pub Vec<String>);

/// The canonical order of each keyed collection: by key, strictly ascending.
pub(crate) mod order {
    use super::*;

    pub fn service(a: &Service, b: &Service) -> Ordering {
        (a.namespace.as_str(), a.name.as_str()).cmp(&(b.namespace.as_str(), b.name.as_str()))
    }

    pub fn cluster(a: &Cluster, b: &Cluster) -> Ordering {
        a.key.cmp(&b.key)
    }

    pub fn virtual_host(a: &VirtualHost, b: &VirtualHost) -> Ordering {
        a.host.cmp(&b.host)
    }

    pub fn certificate(a: &Certificate, b: &Certificate) -> Ordering {
        (a.namespace.as_str(), a.secret.as_str()).cmp(&(b.namespace.as_str(), b.secret.as_str()))
    }

    pub fn ingress_options(a: &IngressOptions, b: &IngressOptions) -> Ordering {
        a.ingress.cmp(&b.ingress)
    }

    /// Strictly ascending: no key twice.
    pub fn ascending<T>(items: &[impl AsRef<T>], cmp: fn(&T, &T) -> Ordering) -> bool {
        items
            .windows(2)
            .all(|w| cmp(w[0].as_ref(), w[1].as_ref()) == Ordering::Less)
    }
}

/// The problems found so far, one sentence each.
#[derive(Debug, Default)]
pub(super) struct Problems(pub(super) Vec<String>);

impl Problems {
    pub(super) fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.0.push(msg());
        }
    }

    pub(super) fn into_result(self) -> Result<(), SnapshotError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(SnapshotError(self.0))
        }
    }

    pub(super) fn service_order(&mut self, a: &Service, b: &Service) {
        self.check(order::service(a, b) == Ordering::Less, || {
            format!(
                "services not sorted or not unique at {}/{}",
                b.namespace, b.name
            )
        });
    }

    pub(super) fn cluster_order(&mut self, a: &Cluster, b: &Cluster) {
        self.check(order::cluster(a, b) == Ordering::Less, || {
            format!("clusters not sorted or not unique at {}", b.key)
        });
    }

    pub(super) fn ingress_options_order(&mut self, a: &IngressOptions, b: &IngressOptions) {
        self.check(order::ingress_options(a, b) == Ordering::Less, || {
            let i = &b.ingress;
            format!(
                "ingress options not sorted or not unique at {}/{}",
                i.namespace, i.name
            )
        });
    }

    pub(super) fn namespaces(&mut self, namespaces: &[String]) {
        for w in namespaces.windows(2) {
            self.check(w[0] < w[1], || {
                format!("namespaces not sorted or not unique at {}", w[1])
            });
        }
    }

    /// Ports unique by (port, protocol) and not zero; `externalName` exactly when the type
    /// says so.
    pub(super) fn service(&mut self, s: &Service) {
        let mut seen = BTreeSet::new();
        for p in &s.ports {
            self.check(seen.insert((p.port, p.protocol)), || {
                format!(
                    "service {}/{} has port {}/{} twice",
                    s.namespace,
                    s.name,
                    p.port,
                    p.protocol.as_str()
                )
            });
            self.check(p.port != 0, || {
                format!("service {}/{} has port 0", s.namespace, s.name)
            });
        }
        self.check(
            (s.service_type == ServiceType::ExternalName) == s.external_name.is_some(),
            || {
                format!(
                    "service {}/{}: externalName and type disagree",
                    s.namespace, s.name
                )
            },
        );
    }

    pub(super) fn cluster(&mut self, c: &Cluster) {
        for e in &c.endpoints {
            self.check(e.port != 0, || {
                format!("cluster {} has an endpoint on port 0", c.key)
            });
        }
    }

    /// The cluster is a port of a Service of `snapshot`.
    pub(super) fn cluster_port(&mut self, snapshot: &Snapshot, c: &Cluster) {
        let has_port = snapshot
            .service(&c.key.namespace, &c.key.service)
            .is_some_and(|s| {
                s.ports
                    .iter()
                    .any(|p| (p.port, p.protocol) == (c.key.port, c.key.protocol))
            });
        self.check(has_port, || {
            format!("cluster {} has no service port", c.key)
        });
    }

    /// Only a default backend has an owner (an Ingress, by its type); `host` is `None` for
    /// the catch-all.
    pub(super) fn default_owner(
        &mut self,
        host: Option<&dyn std::fmt::Display>,
        backend: &Option<Backend>,
        ingress_set: bool,
    ) {
        if !ingress_set {
            return;
        }
        self.check(backend.is_some(), || {
            let of = host.map_or("the catch-all".to_owned(), |h| format!("virtual host {h}"));
            format!("{of}: default backend owner without a default backend")
        });
    }

    /// Absolute paths, canary weights within their total, a default backend's owner.
    pub(super) fn virtual_host(&mut self, vh: &VirtualHost) {
        self.default_owner(
            Some(&vh.host),
            &vh.default_backend,
            vh.default_backend_ingress.is_some(),
        );
        for r in &vh.routes {
            self.check(r.path.starts_with('/'), || {
                format!("route {} {} is not an absolute path", vh.host, r.path)
            });
            if let Some(c) = &r.canary {
                self.check(c.weight_total > 0 && c.weight <= c.weight_total, || {
                    format!(
                        "route {} {}: canary weight {} of {}",
                        vh.host, r.path, c.weight, c.weight_total
                    )
                });
            }
        }
    }

    /// The backend's cluster, if it names one, is in `snapshot`.
    pub(super) fn backend(&mut self, snapshot: &Snapshot, b: &Backend) {
        if let Some(key) = b.cluster() {
            self.check(snapshot.cluster(key).is_some(), || {
                format!("a route points at cluster {key}, which does not exist")
            });
        }
    }

    /// Every backend of the virtual host (routes, canaries, its default) is in `snapshot`.
    pub(super) fn virtual_host_backends(&mut self, snapshot: &Snapshot, vh: &VirtualHost) {
        for r in &vh.routes {
            self.backend(snapshot, &r.backend);
            if let Some(c) = &r.canary {
                self.backend(snapshot, &c.backend);
            }
        }
        if let Some(b) = &vh.default_backend {
            self.backend(snapshot, b);
        }
    }

    pub(super) fn ingress_options(&mut self, o: &IngressOptions) {
        let i = &o.ingress;
        self.check(o.rewrite_target.is_none() || o.use_regex, || {
            format!(
                "ingress options {}/{}: rewrite target without use_regex",
                i.namespace, i.name
            )
        });
        let absolute = |p: &Option<String>| {
            p.as_deref()
                .is_none_or(|p| p.starts_with('/') && !p.starts_with("//"))
        };
        self.check(absolute(&o.app_root), || {
            format!(
                "ingress options {}/{}: app root is not an absolute path",
                i.namespace, i.name
            )
        });
        if let Some(a) = &o.affinity {
            self.check(!a.name.is_empty() && absolute(&a.path), || {
                format!(
                    "ingress options {}/{}: cookie without a name or with a relative path",
                    i.namespace, i.name
                )
            });
        }
    }

    pub(super) fn certificate(&mut self, c: &Certificate) {
        self.check(
            c.cert_pem.contains("-----BEGIN") && c.key_pem.contains("-----BEGIN"),
            || format!("certificate {}/{} is not PEM", c.namespace, c.secret),
        );
    }
}

impl Snapshot {
    /// Checks the invariants every data-plane part relies on: sorted unique keys, routes (and
    /// their canaries) that point at clusters that exist, ports that are not zero, absolute
    /// paths, canary weights within their total, default backends owned by Ingresses, real PEM.
    /// Virtual hosts need unique hosts, not the canonical order (they are served most
    /// specific first, which a hand-written view may spell differently).
    pub fn validate(&self) -> Result<(), SnapshotError> {
        let mut problems = Problems::default();

        for w in self.services.windows(2) {
            problems.service_order(&w[0], &w[1]);
        }
        problems.namespaces(&self.namespaces);
        for s in &self.services {
            problems.service(s);
        }
        for w in self.clusters.windows(2) {
            problems.cluster_order(&w[0], &w[1]);
        }
        for c in &self.clusters {
            problems.cluster_port(self, c);
            problems.cluster(c);
        }

        problems.default_owner(
            None,
            &self.default_backend,
            self.default_backend_ingress.is_some(),
        );
        if let Some(b) = &self.default_backend {
            problems.backend(self, b);
        }
        let mut hosts = BTreeSet::new();
        for vh in &self.virtual_hosts {
            problems.check(hosts.insert(&vh.host), || {
                format!("virtual host {} twice", vh.host)
            });
            problems.virtual_host(vh);
            problems.virtual_host_backends(self, vh);
        }

        for w in self.ingress_options.windows(2) {
            problems.ingress_options_order(&w[0], &w[1]);
        }
        for o in &self.ingress_options {
            problems.ingress_options(o);
        }
        for c in &self.certificates {
            problems.certificate(c);
        }
        problems.into_result()
    }

    /// Whether every keyed collection is in its canonical order (strictly ascending by key:
    /// Services by namespace and name, clusters by key, virtual hosts by host, certificates by
    /// Secret, Ingress options by Ingress), as translate makes them and as deltas need.
    pub fn is_canonical(&self) -> bool {
        order::ascending(&self.services, order::service)
            && self.namespaces.windows(2).all(|w| w[0] < w[1])
            && order::ascending(&self.clusters, order::cluster)
            && order::ascending(&self.virtual_hosts, order::virtual_host)
            && order::ascending(&self.certificates, order::certificate)
            && order::ascending(&self.ingress_options, order::ingress_options)
    }
}
