//! Virtual hosts: the Ingress rules merged by host, their routes (path, match kind, backend,
//! canary) and where a backend points.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ClusterKey, IngressRef};

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
    /// The Ingress that owns `default_backend`; its [`IngressOptions`](super::IngressOptions) apply to the requests
    /// it serves. None (with a backend: a hand-written snapshot) means the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend_ingress: Option<IngressRef>,
}

/// One Ingress path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    /// As written; `/` when the Ingress left it empty.
    pub path: String,
    pub path_type: PathType,
    pub backend: Backend,
    /// The Ingress this route came from; its [`IngressOptions`](super::IngressOptions) apply to the route.
    pub ingress: IngressRef,
    /// A canary Ingress's backend for the same host, path and match kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
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
    pub ingress: IngressRef,
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
