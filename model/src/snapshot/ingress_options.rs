//! What Ingress annotations ask of the gateway, typed and checked by the control plane.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A reference to an Ingress: the route, canary or default backend it contributed, or the
/// Ingress whose options these are. In JSON it keeps the shape of a
/// [`TargetRef`](super::TargetRef), `{"kind":"Ingress","namespace":…,"name":…}`; reading one
/// of another kind is an error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "IngressRefJson", into = "IngressRefJson")]
pub struct IngressRef {
    pub namespace: String,
    pub name: String,
}

impl IngressRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> IngressRef {
        IngressRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// `namespace/name`.
impl fmt::Display for IngressRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The JSON form of an [`IngressRef`].
#[derive(Clone, Serialize, Deserialize)]
struct IngressRefJson {
    kind: String,
    namespace: String,
    name: String,
}

impl TryFrom<IngressRefJson> for IngressRef {
    type Error = String;

    fn try_from(json: IngressRefJson) -> Result<IngressRef, String> {
        if json.kind != "Ingress" {
            return Err(format!(
                "a reference to an Ingress has kind {:?} (for {}/{}); expected \"Ingress\"",
                json.kind, json.namespace, json.name
            ));
        }
        Ok(IngressRef {
            namespace: json.namespace,
            name: json.name,
        })
    }
}

impl From<IngressRef> for IngressRefJson {
    fn from(r: IngressRef) -> IngressRefJson {
        IngressRefJson {
            kind: "Ingress".to_owned(),
            namespace: r.namespace,
            name: r.name,
        }
    }
}

/// What an Ingress's annotations ask of the gateway, for every route it contributes (the
/// routes whose `ingress` is this one). Only Ingresses with at least one recognised
/// annotation that changes something appear. Read from `nginx.ingress.kubernetes.io/NAME`,
/// or `ferry.dev/NAME`, which wins when both are set; every value is checked and typed by the
/// control plane, none is passed on as text to interpret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IngressOptions {
    pub ingress: IngressRef,
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
