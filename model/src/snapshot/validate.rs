//! The invariants every data-plane part relies on, checked before a snapshot is published.

use std::collections::BTreeSet;

use super::{Backend, ServiceType, Snapshot};

/// A snapshot that breaks one of the invariants the data plane relies on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid snapshot: {}", .0.join("; "))]
pub struct SnapshotError(pub Vec<String>);

impl Snapshot {
    /// Checks the invariants every data-plane part relies on: sorted unique keys, routes (and
    /// their canaries) that point at clusters that exist, ports that are not zero, absolute
    /// paths, canary weights within their total, default backends owned by Ingresses, real PEM.
    pub fn validate(&self) -> Result<(), SnapshotError> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, msg: &dyn Fn() -> String| {
            if !ok {
                errors.push(msg());
            }
        };

        for w in self.services.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            check(
                (a.namespace.as_str(), a.name.as_str()) < (b.namespace.as_str(), b.name.as_str()),
                &|| {
                    format!(
                        "services not sorted or not unique at {}/{}",
                        b.namespace, b.name
                    )
                },
            );
        }
        for w in self.namespaces.windows(2) {
            check(w[0] < w[1], &|| {
                format!("namespaces not sorted or not unique at {}", w[1])
            });
        }
        for s in &self.services {
            let mut seen = BTreeSet::new();
            for p in &s.ports {
                check(seen.insert((p.port, p.protocol)), &|| {
                    format!(
                        "service {}/{} has port {}/{} twice",
                        s.namespace,
                        s.name,
                        p.port,
                        p.protocol.as_str()
                    )
                });
                check(p.port != 0, &|| {
                    format!("service {}/{} has port 0", s.namespace, s.name)
                });
            }
            check(
                (s.service_type == ServiceType::ExternalName) == s.external_name.is_some(),
                &|| {
                    format!(
                        "service {}/{}: externalName and type disagree",
                        s.namespace, s.name
                    )
                },
            );
        }
        for w in self.clusters.windows(2) {
            check(w[0].key < w[1].key, &|| {
                format!("clusters not sorted or not unique at {}", w[1].key)
            });
        }
        for c in &self.clusters {
            let has_port = self
                .service(&c.key.namespace, &c.key.service)
                .is_some_and(|s| {
                    s.ports
                        .iter()
                        .any(|p| (p.port, p.protocol) == (c.key.port, c.key.protocol))
                });
            check(has_port, &|| {
                format!("cluster {} has no service port", c.key)
            });
            for e in &c.endpoints {
                check(e.port != 0, &|| {
                    format!("cluster {} has an endpoint on port 0", c.key)
                });
            }
        }

        // Only a default backend has an owner (an Ingress, by its type).
        let defaults =
            std::iter::once((None, &self.default_backend, &self.default_backend_ingress)).chain(
                self.virtual_hosts.iter().map(|vh| {
                    (
                        Some(&vh.host),
                        &vh.default_backend,
                        &vh.default_backend_ingress,
                    )
                }),
            );
        for (host, backend, ingress) in defaults {
            if ingress.is_none() {
                continue;
            }
            let of = || host.map_or("the catch-all".to_owned(), |h| format!("virtual host {h}"));
            check(backend.is_some(), &|| {
                format!("{}: default backend owner without a default backend", of())
            });
        }

        let mut hosts = BTreeSet::new();
        let mut backends: Vec<&Backend> = self.default_backend.iter().collect();
        for vh in &self.virtual_hosts {
            check(hosts.insert(&vh.host), &|| {
                format!("virtual host {} twice", vh.host)
            });
            for r in &vh.routes {
                check(r.path.starts_with('/'), &|| {
                    format!("route {} {} is not an absolute path", vh.host, r.path)
                });
                backends.push(&r.backend);
                if let Some(c) = &r.canary {
                    check(c.weight_total > 0 && c.weight <= c.weight_total, &|| {
                        format!(
                            "route {} {}: canary weight {} of {}",
                            vh.host, r.path, c.weight, c.weight_total
                        )
                    });
                    backends.push(&c.backend);
                }
            }
            backends.extend(vh.default_backend.iter());
        }
        for b in backends {
            if let Some(key) = b.cluster() {
                check(self.cluster(key).is_some(), &|| {
                    format!("a route points at cluster {key}, which does not exist")
                });
            }
        }

        for w in self.ingress_options.windows(2) {
            check(w[0].ingress < w[1].ingress, &|| {
                let i = &w[1].ingress;
                format!(
                    "ingress options not sorted or not unique at {}/{}",
                    i.namespace, i.name
                )
            });
        }
        for o in &self.ingress_options {
            let i = &o.ingress;
            check(o.rewrite_target.is_none() || o.use_regex, &|| {
                format!(
                    "ingress options {}/{}: rewrite target without use_regex",
                    i.namespace, i.name
                )
            });
            let absolute = |p: &Option<String>| {
                p.as_deref()
                    .is_none_or(|p| p.starts_with('/') && !p.starts_with("//"))
            };
            check(absolute(&o.app_root), &|| {
                format!(
                    "ingress options {}/{}: app root is not an absolute path",
                    i.namespace, i.name
                )
            });
            if let Some(a) = &o.affinity {
                check(!a.name.is_empty() && absolute(&a.path), &|| {
                    format!(
                        "ingress options {}/{}: cookie without a name or with a relative path",
                        i.namespace, i.name
                    )
                });
            }
        }

        for c in &self.certificates {
            check(
                c.cert_pem.contains("-----BEGIN") && c.key_pem.contains("-----BEGIN"),
                &|| format!("certificate {}/{} is not PEM", c.namespace, c.secret),
            );
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(SnapshotError(errors))
        }
    }
}
