//! Canary Ingresses (`nginx.ingress.kubernetes.io/canary: "true"`) join the routes of main
//! Ingresses; they add no routes, hosts, default backends or certificates of their own.
//!
//! Each path of a canary attaches as the [`Canary`] of the route with the same host, path and
//! match kind (Exact, or Prefix/ImplementationSpecific, as conflicts are decided), that is of
//! the oldest non-canary Ingress routing it. A canary without such a route is warned about and
//! ignored, as ingress-nginx does; a canary never wins or loses a conflict; the oldest canary
//! of a route wins. A canary Ingress's `defaultBackend` and `tls` are ignored (with a
//! warning): the main Ingress's apply.

use std::collections::BTreeMap;

use ferry_model::{Canary, HostMatch, Problem, Snapshot, VirtualHost};
use ferry_objects::ingress_annotations::CanaryAnnotations;
use ferry_objects::object::Manifest;
use k8s_openapi::api::networking::v1::Ingress;

use super::ingress_ref;
use super::routes::{backend, path_type, route_path};

/// Attaches every canary Ingress, oldest first, to the routes of `hosts`.
pub(super) fn attach_canaries(
    snapshot: &Snapshot,
    hosts: &mut BTreeMap<HostMatch, VirtualHost>,
    canaries: &[(&Manifest, &Ingress, &CanaryAnnotations)],
    problems: &mut Vec<Problem>,
) {
    for &(m, ing, settings) in canaries {
        attach_canary(snapshot, hosts, m, ing, settings, problems);
    }
}

/// Attaches each path of a canary Ingress to the main route with the same host, path and match
/// kind, or warns that there is none.
fn attach_canary(
    snapshot: &Snapshot,
    hosts: &mut BTreeMap<HostMatch, VirtualHost>,
    m: &Manifest,
    ing: &Ingress,
    settings: &CanaryAnnotations,
    problems: &mut Vec<Problem>,
) {
    let Some(spec) = &ing.spec else { return };
    if spec.default_backend.is_some() {
        problems.push(m.warning(
            "spec.defaultBackend",
            "ignored on a canary Ingress: a canary only joins routes of a main Ingress",
        ));
    }
    if spec.tls.as_ref().is_some_and(|t| !t.is_empty()) {
        problems.push(m.warning(
            "spec.tls",
            "ignored on a canary Ingress: the main Ingress's TLS applies",
        ));
    }
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        let host = HostMatch::parse(rule.host.as_deref().unwrap_or_default());
        for (j, p) in rule.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
            let field = format!("spec.rules[{i}].http.paths[{j}]");
            let path = route_path(p);
            let path_type = path_type(&p.path_type);
            let main = hosts.get_mut(&host).and_then(|vh| {
                vh.routes
                    .iter_mut()
                    .find(|r| r.path == path && r.path_type.is_exact() == path_type.is_exact())
            });
            let Some(route) = main else {
                problems.push(m.warning(
                    &field,
                    format!(
                        "canary for host {host} path {path} ({}), which no other Ingress routes; ignored",
                        path_type.as_str()
                    ),
                ));
                continue;
            };
            if let Some(older) = &route.canary {
                problems.push(m.warning(
                    &field,
                    format!(
                        "host {host} path {path} ({}) already has the canary of the older Ingress {}/{}; ignored",
                        path_type.as_str(),
                        older.ingress.namespace,
                        older.ingress.name
                    ),
                ));
                continue;
            }
            let backend = backend(
                snapshot,
                m,
                &format!("{field}.backend"),
                &p.backend,
                problems,
            );
            route.canary = Some(Canary {
                backend,
                ingress: ingress_ref(m),
                weight: settings.weight,
                weight_total: settings.weight_total,
                by_header: settings.by_header.clone(),
                by_header_value: settings.by_header_value.clone(),
                by_cookie: settings.by_cookie.clone(),
            });
        }
    }
}
