//! translate: the store's objects to one Snapshot. Pure and deterministic: the same objects
//! give the same snapshot, byte for byte.
//!
//! Ingress semantics (networking.k8s.io/v1, with ingress-nginx's choices where the spec is
//! silent): rules of every ferry Ingress merge by host; on the same host, path and match kind
//! the oldest Ingress wins (creationTimestamp, then namespace/name) and the others are warned
//! about; routes are ordered longest path first, Exact before Prefix on a tie. An Ingress's
//! `defaultBackend` serves its own hosts' unmatched paths, and, when it has no rules, every
//! request no host matches. A missing Service, port or Secret is a warning on the referring
//! object: the route answers 503, the host serves the default certificate.
//!
//! Annotations (read and checked in `validate`) become [`IngressOptions`], one per Ingress that
//! asks anything. A canary Ingress (`canary: "true"`) adds no routes of its own: each of its
//! paths attaches as the [`Canary`] of the route with the same host, path and match kind
//! (Exact, or Prefix/ImplementationSpecific, as conflicts are decided), that is of the oldest
//! non-canary Ingress routing it. A canary without such a route is warned about and ignored,
//! as ingress-nginx does; a canary never wins or loses a conflict; the oldest canary of a
//! route wins. A canary Ingress's `defaultBackend` and `tls` are ignored (with a warning): the
//! main Ingress's apply.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferry_model::{
    Backend, BackendPort, Canary, Certificate, Cluster, ClusterKey, Endpoint, HostMatch,
    IngressOptions, IngressRef, PathType, Problem, Protocol, Route, Service, ServiceEndpoint,
    ServicePort, ServiceType, SessionAffinity, Snapshot, TargetPort, VirtualHost,
};
use k8s_openapi::api::core::v1::Service as K8sService;
use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress, IngressBackend};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::endpoints::{self, EndpointSet, PodIndex};
use ferry_objects::ingress_annotations::{Annotations, CanaryAnnotations};
use ferry_objects::object::Manifest;
use ferry_objects::store::Store;
use ferry_objects::validate::{self, TLS_CERT_KEY, TLS_PRIVATE_KEY};

/// ferry's IngressClass controller name.
pub const CONTROLLER_NAME: &str = "ferry.dev/ingress";
/// Marks the cluster's default IngressClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The class annotation from before `spec.ingressClassName`, still honoured.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// Kubernetes' default for `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// A snapshot (version 0: the publisher numbers it) and the warnings met on the way.
#[derive(Debug, Default)]
pub struct Translation {
    pub snapshot: Snapshot,
    pub problems: Vec<Problem>,
}

pub fn translate(store: &Store) -> Translation {
    let mut problems = Vec::new();
    let (services, clusters) = services(store);
    let mut snapshot = Snapshot {
        services,
        namespaces: namespaces(store),
        clusters,
        ..Snapshot::default()
    };
    ingresses(store, &mut snapshot, &mut problems);
    problems.sort();
    Translation { snapshot, problems }
}

/// Namespaces every Kubernetes cluster has, whether or not a manifest declares them.
const BUILT_IN_NAMESPACES: [&str; 4] = ["default", "kube-node-lease", "kube-public", "kube-system"];

/// The namespaces that exist: the built-in ones, every Namespace object, and the namespace of
/// every namespaced object (an object cannot exist outside its namespace, and manifests often
/// leave the Namespace out).
fn namespaces(store: &Store) -> Vec<String> {
    let mut all: BTreeSet<&str> = BUILT_IN_NAMESPACES.into_iter().collect();
    all.extend(store.namespaces());
    all.into_iter().map(str::to_owned).collect()
}

fn services(store: &Store) -> (Vec<Service>, Vec<Cluster>) {
    let pods = PodIndex::new(store);
    let mut services = Vec::new();
    let mut clusters = Vec::new();
    for (m, svc) in store.services() {
        let sets = endpoints::for_service(store, &pods, m.namespace(), m.name(), svc);
        let service = service(m, svc, &sets);
        clusters.extend(service.ports.iter().map(|p| cluster(&service, p, &sets)));
        services.push(service);
    }
    // The store iterates in (namespace, name) order and (port, protocol) is unique per Service
    // (validated), so services are sorted; a Service's ports are in written order, so sort.
    clusters.sort_by(|a, b| a.key.cmp(&b.key));
    (services, clusters)
}

fn service(m: &Manifest, svc: &K8sService, sets: &[EndpointSet]) -> Service {
    let spec = svc.spec.clone().unwrap_or_default();
    let service_type = match spec.type_.as_deref() {
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        _ => ServiceType::ClusterIP,
    };
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let written = match spec.cluster_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.to_vec(),
        _ => spec.cluster_ip.into_iter().collect(),
    };
    let cluster_ips = written
        .iter()
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .collect();
    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|p| ServicePort {
            name: p.name.clone().unwrap_or_default(),
            port: u16::try_from(p.port).unwrap_or_default(),
            protocol: endpoints::protocol(p.protocol.as_deref()),
            app_protocol: p.app_protocol.clone(),
            target_port: match &p.target_port {
                Some(IntOrString::String(s)) => TargetPort::Name(s.clone()),
                Some(IntOrString::Int(n)) => {
                    TargetPort::Number(u16::try_from(*n).unwrap_or_default())
                }
                None => TargetPort::Number(u16::try_from(p.port).unwrap_or_default()),
            },
            node_port: p
                .node_port
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| n != 0),
        })
        .collect();
    let session_affinity = match spec.session_affinity.as_deref() {
        Some("ClientIP") => SessionAffinity::ClientIP {
            timeout_seconds: spec
                .session_affinity_config
                .and_then(|c| c.client_ip)
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT),
        },
        _ => SessionAffinity::None,
    };

    // One entry per address: an address in several sets is ready if any set says so.
    let mut endpoints: Vec<ServiceEndpoint> = sets
        .iter()
        .flat_map(|s| &s.endpoints)
        .map(|e| ServiceEndpoint {
            address: e.address,
            ready: e.ready,
            serving: e.serving,
            terminating: e.terminating,
            hostname: e.hostname.clone(),
            node_name: e.node_name.clone(),
            zone: e.zone.clone(),
            target: e.target.clone(),
        })
        .collect();
    endpoints.sort_by_key(|e| e.address);
    endpoints.dedup_by(|later, first| {
        let same = later.address == first.address;
        if same {
            first.ready |= later.ready;
            first.serving |= later.serving;
            first.terminating &= later.terminating;
            first.hostname = first.hostname.take().or(later.hostname.take());
            first.node_name = first.node_name.take().or(later.node_name.take());
            first.zone = first.zone.take().or(later.zone.take());
            first.target = first.target.take().or(later.target.take());
        }
        same
    });

    Service {
        namespace: m.namespace().to_owned(),
        name: m.name().to_owned(),
        service_type,
        cluster_ips: if headless || service_type == ServiceType::ExternalName {
            Vec::new()
        } else {
            cluster_ips
        },
        headless,
        external_name: (service_type == ServiceType::ExternalName).then(|| {
            spec.external_name
                .unwrap_or_default()
                .trim_end_matches('.')
                .to_owned()
        }),
        ports,
        session_affinity,
        publish_not_ready_addresses: spec.publish_not_ready_addresses.unwrap_or(false),
        endpoints,
    }
}

/// The endpoints of one Service port: from every set, the port of the same name and protocol.
fn cluster(svc: &Service, port: &ServicePort, sets: &[EndpointSet]) -> Cluster {
    let mut endpoints = Vec::new();
    for set in sets {
        let Some(sp) = set
            .ports
            .iter()
            .find(|p| p.name == port.name && p.protocol == port.protocol)
        else {
            continue;
        };
        endpoints.extend(set.endpoints.iter().map(|e| Endpoint {
            address: e.address,
            port: sp.port,
            ready: e.ready,
            serving: e.serving,
            terminating: e.terminating,
            zone: e.zone.clone(),
        }));
    }
    endpoints.sort_by_key(|e| (e.address, e.port));
    endpoints.dedup_by(|later, first| {
        let same = (later.address, later.port) == (first.address, first.port);
        if same {
            first.ready |= later.ready;
            first.serving |= later.serving;
            first.terminating &= later.terminating;
        }
        same
    });
    Cluster {
        key: svc.cluster_key(port),
        port_name: port.name.clone(),
        app_protocol: port.app_protocol.clone(),
        session_affinity: svc.session_affinity,
        endpoints,
    }
}

/// Which Ingresses are ferry's (see the module docs of `control`).
fn ferry_ingresses<'a>(
    store: &'a Store,
    problems: &mut Vec<Problem>,
) -> Vec<(&'a Manifest, &'a Ingress)> {
    let mut classes = BTreeSet::new();
    let mut all_classes = BTreeSet::new();
    let mut ferry_default = false;
    for (m, class) in store.ingress_classes() {
        all_classes.insert(m.name());
        if class.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER_NAME) {
            classes.insert(m.name());
            let annotations = class.metadata.annotations.as_ref();
            ferry_default |= annotations
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true");
        }
    }
    let mut ours: Vec<_> = store
        .ingresses()
        .filter(|(m, ing)| {
            let annotation = ing
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION));
            let class = ing
                .spec
                .as_ref()
                .and_then(|s| s.ingress_class_name.as_deref())
                .or(annotation.map(String::as_str));
            match class {
                Some(c) if classes.contains(c) => true,
                Some(c) => {
                    if !all_classes.contains(c) {
                        problems.push(m.warning(
                            "spec.ingressClassName",
                            format!(
                                "IngressClass {c:?} does not exist; this Ingress is not served"
                            ),
                        ));
                    }
                    false
                }
                None => ferry_default || all_classes.is_empty(),
            }
        })
        .collect();
    ours.sort_by(|(a, ai), (b, bi)| {
        let created = |i: &Ingress| i.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(ai)
            .cmp(&created(bi))
            .then_with(|| (a.namespace(), a.name()).cmp(&(b.namespace(), b.name())))
    });
    ours
}

fn ingress_ref(m: &Manifest) -> IngressRef {
    IngressRef::new(m.namespace(), m.name())
}

/// Resolves an Ingress backend to a cluster, warning when it cannot be.
fn backend(
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

fn path_type(s: &str) -> PathType {
    match s {
        "Exact" => PathType::Exact,
        "Prefix" => PathType::Prefix,
        _ => PathType::ImplementationSpecific,
    }
}

/// Routes in precedence order: longest path first, Exact before Prefix on a tie.
fn route_order(a: &Route, b: &Route) -> std::cmp::Ordering {
    b.path
        .len()
        .cmp(&a.path.len())
        .then_with(|| b.path_type.is_exact().cmp(&a.path_type.is_exact()))
        .then_with(|| a.path.cmp(&b.path))
}

fn ingresses(store: &Store, snapshot: &mut Snapshot, problems: &mut Vec<Problem>) {
    let ours = ferry_ingresses(store, problems);
    let annotations: Vec<Annotations> = ours
        .iter()
        .map(|(m, ing)| validate::ingress_annotations(m, ing))
        .collect();
    snapshot.ingress_options = ingress_options(&ours, &annotations);
    let mut hosts: BTreeMap<HostMatch, VirtualHost> = BTreeMap::new();
    // (host, path, exact?) -> the Ingress that routes it.
    let mut taken: BTreeMap<(HostMatch, String, bool), IngressRef> = BTreeMap::new();
    let mut tls_hosts: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut certificates: BTreeMap<(String, String), Certificate> = BTreeMap::new();

    for ((m, ing), a) in ours.iter().zip(&annotations) {
        if a.canary.is_some() {
            continue;
        }
        let Some(spec) = &ing.spec else { continue };
        let rules = spec.rules.as_deref().unwrap_or_default();
        let default_backend = spec
            .default_backend
            .as_ref()
            .map(|b| backend(snapshot, m, "spec.defaultBackend", b, problems));
        // The owner comes along: its annotations apply to its default backend too.
        let owner = default_backend.as_ref().map(|_| ingress_ref(m));
        if rules.is_empty() && snapshot.default_backend.is_none() {
            snapshot.default_backend = default_backend.clone();
            snapshot.default_backend_ingress = owner.clone();
        }
        for (i, rule) in rules.iter().enumerate() {
            let host = HostMatch::parse(rule.host.as_deref().unwrap_or_default());
            let vh = hosts.entry(host.clone()).or_insert_with(|| VirtualHost {
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
        for (i, tls) in spec.tls.iter().flatten().enumerate() {
            let entry_hosts: Vec<String> = tls
                .hosts
                .iter()
                .flatten()
                .map(|h| h.to_ascii_lowercase())
                .collect();
            let secret = tls.secret_name.as_deref().unwrap_or_default();
            let field = format!("spec.tls[{i}].secretName");
            let mut new_hosts = Vec::new();
            for h in &entry_hosts {
                match tls_hosts.get(h) {
                    Some((ns, s)) if (ns.as_str(), s.as_str()) != (m.namespace(), secret) => {
                        problems.push(m.warning(
                            format!("spec.tls[{i}].hosts"),
                            format!("host {h} already has the certificate of Secret {ns}/{s} from an older Ingress; ignored"),
                        ));
                    }
                    _ => {
                        tls_hosts.insert(h.clone(), (m.namespace().to_owned(), secret.to_owned()));
                        new_hosts.push(h.clone());
                    }
                }
            }
            if secret.is_empty() {
                continue; // TLS with the default certificate
            }
            let Some(pem) = tls_pair(store, m, secret, &field, problems) else {
                continue;
            };
            let cert = certificates
                .entry((m.namespace().to_owned(), secret.to_owned()))
                .or_insert_with(|| Certificate {
                    namespace: m.namespace().to_owned(),
                    secret: secret.to_owned(),
                    hosts: Vec::new(),
                    cert_pem: pem.0,
                    key_pem: pem.1,
                });
            cert.hosts.extend(new_hosts);
        }
    }

    for ((m, ing), a) in ours.iter().zip(&annotations) {
        if let Some(settings) = &a.canary {
            attach_canary(snapshot, &mut hosts, m, ing, settings, problems);
        }
    }

    for vh in hosts.values_mut() {
        vh.routes.sort_by(route_order);
        vh.tls = match &vh.host {
            HostMatch::Exact(h) => {
                tls_hosts.contains_key(h)
                    || h.split_once('.')
                        .is_some_and(|(_, parent)| tls_hosts.contains_key(&format!("*.{parent}")))
            }
            HostMatch::Wildcard(suffix) => tls_hosts.contains_key(&format!("*{suffix}")),
            HostMatch::Any => false,
        };
    }
    let mut virtual_hosts: Vec<VirtualHost> = hosts.into_values().collect();
    virtual_hosts.sort_by(|a, b| a.host.precedence_cmp(&b.host));
    snapshot.virtual_hosts = virtual_hosts;
    snapshot.certificates = certificates
        .into_values()
        .map(|mut c| {
            c.hosts.sort();
            c.hosts.dedup();
            c
        })
        .collect();
}

/// The options of every Ingress whose annotations ask anything, sorted by Ingress.
fn ingress_options(
    ours: &[(&Manifest, &Ingress)],
    annotations: &[Annotations],
) -> Vec<IngressOptions> {
    let mut options: Vec<IngressOptions> = ours
        .iter()
        .zip(annotations)
        .filter_map(|((m, _), a)| {
            let none = IngressOptions {
                ingress: ingress_ref(m),
                ..IngressOptions::default()
            };
            let asked = IngressOptions {
                ingress: ingress_ref(m),
                ..a.options.clone()
            };
            (asked != none).then_some(asked)
        })
        .collect();
    options.sort_by(|a, b| a.ingress.cmp(&b.ingress));
    options
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

/// The PEM pair of a Secret named in `spec.tls`, or a warning saying why there is none.
fn tls_pair(
    store: &Store,
    m: &Manifest,
    secret: &str,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<(String, String)> {
    let ns = m.namespace();
    let Some(s) = store.secret(ns, secret) else {
        problems.push(m.warning(
            field,
            format!("Secret \"{ns}/{secret}\" not found; its hosts serve the default certificate"),
        ));
        return None;
    };
    let get = |k: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| b.0.as_slice())
    };
    let (Some(cert), Some(key)) = (get(TLS_CERT_KEY), get(TLS_PRIVATE_KEY)) else {
        problems.push(m.warning(field, format!("Secret \"{ns}/{secret}\" has no {TLS_CERT_KEY} and {TLS_PRIVATE_KEY}; its hosts serve the default certificate")));
        return None;
    };
    // Secrets of type kubernetes.io/tls were checked when read; others are checked here.
    let typed = s.type_.as_deref() == Some(ferry_objects::validate::TLS_TYPE);
    let checked = if typed {
        Ok(())
    } else {
        ferry_objects::certificate::check_pair(cert, key)
    };
    let checked = checked.and_then(|()| {
        let text =
            |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| "PEM is not UTF-8".to_owned());
        Ok((text(cert)?, text(key)?))
    });
    match checked {
        Ok(pair) => Some(pair),
        Err(e) => {
            problems.push(m.warning(
                field,
                format!("Secret \"{ns}/{secret}\": {e}; its hosts serve the default certificate"),
            ));
            None
        }
    }
}

/// An Ingress path as routes hold it: as written, `/` when left empty.
fn route_path(p: &HTTPIngressPath) -> String {
    p.path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into())
}

#[cfg(test)]
mod tests;
