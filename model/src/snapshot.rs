//! The Snapshot: everything the data plane needs, immutable and versioned.
//!
//! The control plane builds one from the cluster's objects (`translate`), checks it with
//! [`Snapshot::validate`] and publishes it; each data-plane part compiles its own index from it
//! and swaps that in atomically. Collections are sorted, so two snapshots of the same cluster are
//! equal and serialize to the same bytes. The JSON form is what admin `/config` serves and what
//! `--snapshot FILE` reads.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// One consistent view of the cluster, as the data plane serves it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Snapshot {
    /// Grows by one with each accepted change; 0 means nothing accepted yet.
    pub version: u64,
    /// Every Service with its addresses and endpoints: the DNS records come from here.
    pub services: Vec<Service>,
    /// The namespaces that exist, sorted: DNS answers NODATA for `<ns>.svc.<zone>` of one of
    /// these without Services, NXDOMAIN for names in any other.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// One cluster per Service port (port and protocol): what a route forwards to.
    pub clusters: Vec<Cluster>,
    /// Ingress rules merged by host, most specific host first.
    pub virtual_hosts: Vec<VirtualHost>,
    /// Where a request that matches no virtual host goes (an Ingress `spec.defaultBackend`);
    /// none means 404.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<Backend>,
    /// The Ingress that owns `default_backend`; its [`IngressOptions`] apply to the requests
    /// it serves. None (with a backend: a hand-written snapshot) means the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend_ingress: Option<TargetRef>,
    /// TLS certificates from the Secrets Ingresses name, with the hosts they serve.
    pub certificates: Vec<Certificate>,
    /// What Ingress annotations ask of the gateway, one entry per Ingress that asks anything,
    /// sorted by `ingress`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress_options: Vec<IngressOptions>,
}

/// The kinds of Service (`spec.type`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
            Self::ExternalName => "ExternalName",
        }
    }
}

/// Transport protocol of a port.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum Protocol {
    #[default]
    TCP,
    UDP,
    SCTP,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TCP => "TCP",
            Self::UDP => "UDP",
            Self::SCTP => "SCTP",
        }
    }
}

/// `spec.sessionAffinity` with its timeout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum SessionAffinity {
    #[default]
    None,
    ClientIP {
        timeout_seconds: u32,
    },
}

/// A Service, with what DNS and the L4 proxy need.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    #[serde(rename = "type")]
    pub service_type: ServiceType,
    /// The cluster IPs as written (`spec.clusterIPs`, else `spec.clusterIP`); empty for headless
    /// and ExternalName Services, and for Services that name none.
    pub cluster_ips: Vec<IpAddr>,
    /// `clusterIP: None`: DNS answers with the endpoints' addresses.
    pub headless: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_name: Option<String>,
    pub ports: Vec<ServicePort>,
    pub session_affinity: SessionAffinity,
    pub publish_not_ready_addresses: bool,
    /// One entry per endpoint address, sorted by address.
    pub endpoints: Vec<ServiceEndpoint>,
}

/// A port of a Service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServicePort {
    /// Empty when the Service has a single unnamed port.
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    pub target_port: TargetPort,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
}

/// `targetPort`: a number, or the name of a container port resolved per Pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

impl fmt::Display for TargetPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(s) => f.write_str(s),
        }
    }
}

/// What an endpoint stands for (`targetRef`), usually a Pod.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TargetRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// One address behind a Service, with the EndpointSlice conditions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceEndpoint {
    pub address: IpAddr,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetRef>,
}

/// Names a cluster: a Service port, which is unique by (port, protocol) within its Service, as
/// the API server validates it (kube-dns has `53/UDP` and `53/TCP`). Ordered by namespace,
/// Service, port, then protocol (TCP first).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClusterKey {
    pub namespace: String,
    pub service: String,
    pub port: u16,
    /// TCP when absent (snapshot files written before the protocol was part of the key).
    #[serde(default)]
    pub protocol: Protocol,
}

impl fmt::Display for ClusterKey {
    /// `ns/svc:80` for TCP (what metrics and logs have always shown), `ns/svc:53/UDP` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.service, self.port)?;
        match self.protocol {
            Protocol::TCP => Ok(()),
            other => write!(f, "/{}", other.as_str()),
        }
    }
}

/// The endpoints of one Service port: what a route balances over.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cluster {
    /// The protocol is the key's.
    pub key: ClusterKey,
    pub port_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    pub session_affinity: SessionAffinity,
    /// Sorted by (address, port).
    pub endpoints: Vec<Endpoint>,
}

impl Cluster {
    pub fn ready_endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.iter().filter(|e| e.ready)
    }
}

/// One address and port of a cluster. What the address stands for (its Pod) is in the
/// Service's [`ServiceEndpoint`]s, once per address rather than once per port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    pub address: IpAddr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// Which requests a virtual host takes, by their Host.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostMatch {
    /// Lowercase host, matched case-insensitively.
    Exact(String),
    /// `*.foo.com`, stored as the suffix `.foo.com`: exactly one more label.
    Wildcard(String),
    /// Rules without a host.
    Any,
}

impl HostMatch {
    /// Parses an Ingress host: empty means any host.
    pub fn parse(host: &str) -> Self {
        if host.is_empty() || host == "*" {
            Self::Any
        } else if let Some(suffix) = host.strip_prefix('*') {
            Self::Wildcard(suffix.to_ascii_lowercase())
        } else {
            Self::Exact(host.to_ascii_lowercase())
        }
    }

    /// Order of precedence: exact hosts, then wildcards, then the catch-all.
    fn rank(&self) -> u8 {
        match self {
            Self::Exact(_) => 0,
            Self::Wildcard(_) => 1,
            Self::Any => 2,
        }
    }

    /// Precedence first, then name, so the order is total and stable.
    pub fn precedence_cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank()).then_with(|| self.cmp(other))
    }
}

impl fmt::Display for HostMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(h) => f.write_str(h),
            Self::Wildcard(s) => write!(f, "*{s}"),
            Self::Any => f.write_str("*"),
        }
    }
}

impl Serialize for HostMatch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostMatch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::parse(&s))
    }
}

/// `pathType` of an Ingress path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PathType {
    Exact,
    Prefix,
    /// ferry treats it as Prefix.
    ImplementationSpecific,
}

impl PathType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "Exact",
            Self::Prefix => "Prefix",
            Self::ImplementationSpecific => "ImplementationSpecific",
        }
    }

    /// Exact is the only exact match; the others match element-wise prefixes.
    pub fn is_exact(self) -> bool {
        self == Self::Exact
    }
}

/// The rules of all Ingresses for one host.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VirtualHost {
    pub host: HostMatch,
    /// The host is listed in some Ingress's `spec.tls`.
    pub tls: bool,
    /// In precedence order: longest path first; on a tie, Exact before Prefix.
    pub routes: Vec<Route>,
    /// The `spec.defaultBackend` of the oldest Ingress with rules for this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<Backend>,
    /// The Ingress that owns `default_backend`; its [`IngressOptions`] apply to the requests
    /// it serves. None (with a backend: a hand-written snapshot) means the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend_ingress: Option<TargetRef>,
}

/// One Ingress path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    /// As written; `/` when the Ingress left it empty.
    pub path: String,
    pub path_type: PathType,
    pub backend: Backend,
    /// The Ingress this route came from; its [`IngressOptions`] apply to the route.
    pub ingress: TargetRef,
    /// A canary Ingress's backend for the same host, path and match kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
}

/// What an Ingress's annotations ask of the gateway, for every route it contributes (the
/// routes whose `ingress` is this one). Only Ingresses with at least one recognised
/// annotation that changes something appear. Read from `nginx.ingress.kubernetes.io/NAME`,
/// or `ferry.dev/NAME`, which wins when both are set; every value is checked and typed by the
/// control plane, none is passed on as text to interpret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IngressOptions {
    /// kind "Ingress", namespace, name.
    pub ingress: TargetRef,
    /// `rewrite-target`: the upstream path, as written, where `$1`…`$9` stand for the capture
    /// groups of the matched path regex (empty when a group did not take part). The query
    /// string is kept. Implies `use_regex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_target: Option<String>,
    /// `use-regex` (or a `rewrite-target`): every path of this Ingress, Exact ones too, is a
    /// regular expression in Rust `regex` syntax, matched against the request path from its
    /// start and case-insensitively (nginx's `~*`); compile it with
    /// [`IngressOptions::path_pattern`]. Routes stay in their order: longest path first.
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_regex: bool,
    /// `backend-protocol`; none: by the Service port's `appProtocol`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_protocol: Option<BackendProtocol>,
    /// `proxy-body-size` in bytes; `Some(0)` = unlimited; none: the gateway's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_body_size: Option<u64>,
    /// `proxy-connect-timeout`: to open a connection to an upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_connect_timeout_ms: Option<u64>,
    /// `proxy-read-timeout`: between two reads from the upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_read_timeout_ms: Option<u64>,
    /// `proxy-send-timeout`: between two writes to the upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_send_timeout_ms: Option<u64>,
    /// `ssl-redirect`; none = the default (redirect TLS hosts to HTTPS); `Some(false)`: serve
    /// this Ingress's routes over plain HTTP too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_redirect: Option<bool>,
    /// `force-ssl-redirect`: redirect to HTTPS even when the host is not a TLS host.
    #[serde(default, skip_serializing_if = "is_false")]
    pub force_ssl_redirect: bool,
    /// `app-root`: a request for exactly `/` on a host this Ingress has routes for is
    /// redirected (302) here. An absolute path, never `//…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_root: Option<String>,
    /// `affinity: cookie` with its `session-cookie-*` settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<CookieAffinity>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl IngressOptions {
    /// The regular expression a `use_regex` path stands for: anchored at the path's start,
    /// case-insensitive, capture groups numbered as written. The control plane accepts only
    /// paths that compile on their own, so the wrapping cannot change their meaning.
    pub fn path_pattern(path: &str) -> String {
        format!("(?i)^(?:{path})")
    }
}

/// `backend-protocol`: how the gateway speaks to the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BackendProtocol {
    /// HTTP/1.1 in clear text.
    HTTP,
    /// HTTP over TLS (the upstream's certificate is not verified, as ingress-nginx).
    HTTPS,
    /// gRPC: HTTP/2 in clear text (prior knowledge).
    GRPC,
    /// gRPC over TLS (ALPN h2).
    GRPCS,
    /// HTTP/2 in clear text (prior knowledge).
    H2C,
}

impl BackendProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HTTP => "HTTP",
            Self::HTTPS => "HTTPS",
            Self::GRPC => "GRPC",
            Self::GRPCS => "GRPCS",
            Self::H2C => "H2C",
        }
    }
}

/// Cookie session affinity (`affinity: cookie`): a client keeps its upstream endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CookieAffinity {
    /// `session-cookie-name`, default `INGRESSCOOKIE`.
    pub name: String,
    /// `session-cookie-max-age`; none: a session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u64>,
    /// `session-cookie-path`; none: the route's path. With `use_regex` it is never none (`/`
    /// unless set), since a regex is no cookie path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A canary Ingress's backend for a route of the main Ingress (same host, path and pathType),
/// as ingress-nginx's canary: by header first, then cookie, then weight.
///
/// The header decides when set: `by_header_value` given, the request goes to the canary when
/// the header equals it; not given, a value `always` sends it there and `never` keeps it on
/// the main backend. Otherwise the cookie `by_cookie` decides the same way (`always`/`never`).
/// Otherwise `weight` of every `weight_total` requests go to the canary.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Canary {
    pub backend: Backend,
    /// The canary Ingress.
    pub ingress: TargetRef,
    /// Of `weight_total`; 0 (the default) sends traffic only by header or cookie.
    pub weight: u32,
    /// At least 1; default 100.
    pub weight_total: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_header: Option<String>,
    /// None: the header's value `always`/`never` decides, as ingress-nginx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_header_value: Option<String>,
    /// Cookie value `always`/`never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_cookie: Option<String>,
}

/// An Ingress backend port: by number or by the Service port's name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BackendPort {
    Number(u16),
    Name(String),
}

impl fmt::Display for BackendPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(s) => f.write_str(s),
        }
    }
}

/// Where a route sends its requests.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Backend {
    /// A Service port. `cluster` is none when the Service or port does not exist: 503.
    Service {
        namespace: String,
        name: String,
        port: BackendPort,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cluster: Option<ClusterKey>,
    },
    /// A `resource` backend: not served by ferry, answers 503.
    Resource {
        namespace: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        api_group: Option<String>,
        resource_kind: String,
        name: String,
    },
}

impl Backend {
    pub fn cluster(&self) -> Option<&ClusterKey> {
        match self {
            Self::Service { cluster, .. } => cluster.as_ref(),
            Self::Resource { .. } => None,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Service { name, port, .. } => write!(f, "{name}:{port}"),
            Self::Resource {
                resource_kind,
                name,
                ..
            } => write!(f, "{resource_kind}/{name}"),
        }
    }
}

/// A TLS certificate and key from a Secret, with the hosts it serves.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Certificate {
    pub namespace: String,
    pub secret: String,
    /// Sorted, lowercase; `*.foo.com` for wildcards. Empty: the default certificate, served
    /// when no other name matches (an Ingress `tls` entry without hosts).
    pub hosts: Vec<String>,
    /// The chain, leaf first.
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("namespace", &self.namespace)
            .field("secret", &self.secret)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

/// What placeholder replaces private keys where a snapshot is shown rather than used.
pub const REDACTED: &str = "<redacted>";

/// A snapshot that breaks one of the invariants the data plane relies on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid snapshot: {}", .0.join("; "))]
pub struct SnapshotError(pub Vec<String>);

impl Snapshot {
    /// Same cluster, whatever the version.
    pub fn same_content(&self, other: &Snapshot) -> bool {
        self.services == other.services
            && self.namespaces == other.namespaces
            && self.clusters == other.clusters
            && self.virtual_hosts == other.virtual_hosts
            && self.default_backend == other.default_backend
            && self.default_backend_ingress == other.default_backend_ingress
            && self.certificates == other.certificates
            && self.ingress_options == other.ingress_options
    }

    /// The options of one Ingress, if its annotations ask anything.
    pub fn ingress_options(&self, ingress: &TargetRef) -> Option<&IngressOptions> {
        self.ingress_options
            .binary_search_by(|o| o.ingress.cmp(ingress))
            .ok()
            .map(|i| &self.ingress_options[i])
    }

    pub fn cluster(&self, key: &ClusterKey) -> Option<&Cluster> {
        self.clusters
            .binary_search_by(|c| c.key.cmp(key))
            .ok()
            .map(|i| &self.clusters[i])
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services
            .binary_search_by(|s| (s.namespace.as_str(), s.name.as_str()).cmp(&(namespace, name)))
            .ok()
            .map(|i| &self.services[i])
    }

    /// A copy fit to show: private keys replaced by [`REDACTED`].
    pub fn without_private_keys(&self) -> Snapshot {
        let mut shown = self.clone();
        for cert in &mut shown.certificates {
            cert.key_pem = REDACTED.to_owned();
        }
        shown
    }

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

        // A default backend's owner, when named, is an Ingress; only a backend has one.
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
            let Some(i) = ingress else { continue };
            let of = || host.map_or("the catch-all".to_owned(), |h| format!("virtual host {h}"));
            check(backend.is_some(), &|| {
                format!("{}: default backend owner without a default backend", of())
            });
            check(i.kind == "Ingress", &|| {
                format!("{}: default backend owned by a {}", of(), i.kind)
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
                    check(c.ingress.kind == "Ingress", &|| {
                        format!("route {} {}: canary is not an Ingress", vh.host, r.path)
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
            check(i.kind == "Ingress", &|| {
                format!(
                    "ingress options for a {} {}/{}",
                    i.kind, i.namespace, i.name
                )
            });
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

#[cfg(test)]
mod tests;
