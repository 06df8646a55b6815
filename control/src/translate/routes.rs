//! Ingress → virtual hosts and routes: the rules of ferry's main (non-canary) Ingresses merge
//! by host, each path a route to the cluster of its backend. Reads the Ingresses' rules and
//! `defaultBackend`, and the snapshot's Services to resolve backends; TLS, canaries and
//! annotations are other steps'.
//!
//! Semantics (networking.k8s.io/v1, with ingress-nginx's choices where the spec is silent): on
//! the same host, path and match kind the oldest Ingress wins (the order [`super::class`]
//! gives) and the others are warned about; routes are ordered longest path first, Exact before
//! Prefix on a tie. An Ingress's `defaultBackend` serves its own hosts' unmatched paths, and,
//! when it has no rules, every request no host matches. A backend naming a missing Service or
//! port is a warning: its route answers 503.

use std::collections::BTreeMap;

use ferry_model::{
    Backend, BackendPort, ClusterKey, HostMatch, IngressRef, PathType, Problem, Protocol, Route,
    Snapshot, VirtualHost,
};
use ferry_objects::object::Manifest;
use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress, IngressBackend};

use super::ingress_ref;

/// The virtual hosts of ferry's Ingresses, and the catch-all default backend.
pub(super) struct Hosts {
    pub by_host: BTreeMap<HostMatch, VirtualHost>,
    /// The `defaultBackend` of the oldest Ingress without rules: every request no host matches.
    pub default_backend: Option<Backend>,
    pub default_backend_ingress: Option<IngressRef>,
}

/// Merges the rules of the main Ingresses (oldest first) into virtual hosts; routes are in
/// written order until [`in_precedence_order`].
pub(super) fn virtual_hosts(
    snapshot: &Snapshot,
    mains: &[(&Manifest, &Ingress)],
    problems: &mut Vec<Problem>,
) -> Hosts {
    let mut hosts = Hosts {
        by_host: BTreeMap::new(),
        default_backend: None,
        default_backend_ingress: None,
    };
    // (host, path, exact?) -> the Ingress that routes it.
    let mut taken: BTreeMap<(HostMatch, String, bool), IngressRef> = BTreeMap::new();
    for &(m, ing) in mains {
        let Some(spec) = &ing.spec else { continue };
        let rules = spec.rules.as_deref().unwrap_or_default();
        let default_backend = spec
            .default_backend
            .as_ref()
            .map(|b| backend(snapshot, m, "spec.defaultBackend", b, problems));
        // The owner comes along: its annotations apply to its default backend too.
        let owner = default_backend.as_ref().map(|_| ingress_ref(m));
        if rules.is_empty() && hosts.default_backend.is_none() {
            hosts.default_backend = default_backend.clone();
            hosts.default_backend_ingress = owner.clone();
        }
        for (i, rule) in rules.iter().enumerate() {
            let host = HostMatch::parse(rule.host.as_deref().unwrap_or_default());
            let vh = hosts
                .by_host
                .entry(host.clone())
                .or_insert_with(|| VirtualHost {
                    host: host.clone(),
                    tls: false,
                    routes: Vec::new(),
                    default_backend: None,
                    default_backend_ingress: None,
                });
            if vh.default_backend.is_none() {
                vh.default_backend = default_backend.clone();
                vh.default_backend_ingress = owner.clone();
            }
            for (j, p) in rule.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
                let field = format!("spec.rules[{i}].http.paths[{j}]");
                let path = route_path(p);
                let path_type = path_type(&p.path_type);
                let key = (host.clone(), path.clone(), path_type.is_exact());
                if let Some(owner) = taken.get(&key) {
                    problems.push(m.warning(
                        &field,
                        format!(
                            "host {host} path {path} ({}) is already routed by the older Ingress {}/{}; ignored",
                            path_type.as_str(),
                            owner.namespace,
                            owner.name
                        ),
                    ));
                    continue;
                }
                taken.insert(key, ingress_ref(m));
                let backend = backend(
                    snapshot,
                    m,
                    &format!("{field}.backend"),
                    &p.backend,
                    problems,
                );
                vh.routes.push(Route {
                    path,
                    path_type,
                    backend,
                    ingress: ingress_ref(m),
                    canary: None,
                });
            }
        }
    }
    hosts
}

/// The virtual hosts in precedence order (exact, then wildcard, then any), each one's routes
/// in theirs.
pub(super) fn in_precedence_order(hosts: BTreeMap<HostMatch, VirtualHost>) -> Vec<VirtualHost> {
    let mut virtual_hosts: Vec<VirtualHost> = hosts.into_values().collect();
    for vh in &mut virtual_hosts {
        vh.routes.sort_by(route_order);
    }
    virtual_hosts.sort_by(|a, b| a.host.precedence_cmp(&b.host));
    virtual_hosts
}

/// Routes in precedence order: longest path first, Exact before Prefix on a tie.
fn route_order(a: &Route, b: &Route) -> std::cmp::Ordering {
    b.path
        .len()
        .cmp(&a.path.len())
        .then_with(|| b.path_type.is_exact().cmp(&a.path_type.is_exact()))
        .then_with(|| a.path.cmp(&b.path))
}

/// Resolves an Ingress backend to a cluster, warning when it cannot be.
pub(super) fn backend(
    snapshot: &Snapshot,
    m: &Manifest,
    field: &str,
    b: &IngressBackend,
    problems: &mut Vec<Problem>,
) -> Backend {
    let ns = m.namespace().to_owned();
    if let Some(r) = &b.resource {
        problems.push(m.warning(
            format!("{field}.resource"),
            "resource backends are not served by ferry; the route answers 503",
        ));
        return Backend::Resource {
            namespace: ns,
            api_group: r.api_group.clone(),
            resource_kind: r.kind.clone(),
            name: r.name.clone(),
        };
    }
    let svc = b.service.clone().unwrap_or_default();
    let port = svc.port.unwrap_or_default();
    let port = match (port.name.filter(|n| !n.is_empty()), port.number) {
        (Some(n), _) => BackendPort::Name(n),
        (None, n) => BackendPort::Number(n.and_then(|n| u16::try_from(n).ok()).unwrap_or_default()),
    };
    let cluster = match snapshot.service(&ns, &svc.name) {
        None => {
            problems.push(m.warning(
                format!("{field}.service.name"),
                format!(
                    "Service \"{ns}/{}\" not found; the route answers 503",
                    svc.name
                ),
            ));
            None
        }
        Some(s) => {
            // HTTP is TCP: a number names the TCP port of that number (kube-dns has 53/UDP and
            // 53/TCP); a name names one port, which must be TCP to carry HTTP.
            let named = s.ports.iter().find(|p| match &port {
                BackendPort::Number(n) => p.port == *n && p.protocol == Protocol::TCP,
                BackendPort::Name(n) => &p.name == n,
            });
            let other = s.ports.iter().find(|p| match &port {
                BackendPort::Number(n) => p.port == *n,
                BackendPort::Name(_) => false,
            });
            let found = named.filter(|p| p.protocol == Protocol::TCP);
            match (found, named.or(other)) {
                (Some(_), _) => {}
                (None, Some(p)) => problems.push(m.warning(
                    format!("{field}.service.port"),
                    format!(
                        "Service \"{ns}/{}\" port {port} is {}/{}, and HTTP needs TCP; the route answers 503",
                        svc.name,
                        p.port,
                        p.protocol.as_str()
                    ),
                )),
                (None, None) => problems.push(m.warning(
                    format!("{field}.service.port"),
                    format!(
                        "Service \"{ns}/{}\" has no port {port}; the route answers 503",
                        svc.name
                    ),
                )),
            }
            found.map(|p| ClusterKey {
                namespace: ns.clone(),
                service: svc.name.clone(),
                port: p.port,
                protocol: p.protocol,
            })
        }
    };
    Backend::Service {
        namespace: ns,
        name: svc.name,
        port,
        cluster,
    }
}

/// The match kind of an Ingress path's `pathType`.
pub(super) fn path_type(s: &str) -> PathType {
    match s {
        "Exact" => PathType::Exact,
        "Prefix" => PathType::Prefix,
        _ => PathType::ImplementationSpecific,
    }
}

/// An Ingress path as routes hold it: as written, `/` when left empty.
pub(super) fn route_path(p: &HTTPIngressPath) -> String {
    p.path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into())
}
