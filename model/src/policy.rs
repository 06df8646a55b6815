//! Authorization of inbound mesh traffic, with the semantics of Istio's `AuthorizationPolicy`
//! (`security.istio.io/v1`), a format users already write: the policies that select a workload,
//! and the pure evaluator a sidecar runs per request or connection ([`Authorizer`]).
//!
//! The control plane reads the objects (`ferry-objects`), decides which policies select which
//! workload (`ferry-control`'s translate), and sends each sidecar only its own
//! (`InboundPolicy.authorization`); the sidecar rebuilds an [`Authorizer`] from them.
//!
//! Evaluation, as Istio documents it:
//! 1. if any DENY policy matches the request, deny;
//! 2. if no ALLOW policy selects the workload, allow;
//! 3. if any ALLOW policy matches the request, allow;
//! 4. otherwise deny.
//!
//! A policy matches when one of its rules does; so an ALLOW policy with no rules (`spec: {}`)
//! matches nothing and, by step 4, denies everything, while `rules: [{}]` matches everything.
//! Within a rule, `from` and `to` must both match (an empty list matches anything), one entry
//! of each list is enough, every field given in an entry must match, and one value of a field
//! is enough (`notX`: none of them may match).
//!
//! Values match as Istio's do: exactly, `prefix*`, `*suffix`, or `*` alone for "present" (so
//! `principals: ["*"]` means any authenticated peer, and a plaintext peer matches no principal
//! nor namespace, but does match every `notPrincipals` and `notNamespaces`).
//!
//! TCP (a request with no HTTP part): a rule that names HTTP-only fields (`methods`,
//! `notMethods`, `paths`, `notPaths`) never matches in an ALLOW policy, while in a DENY policy
//! those fields are left out and the rest of the rule decides. That is Istio's choice, made so
//! that a mistake fails closed: an ALLOW rule cannot let TCP through on a condition TCP cannot
//! meet, and a DENY rule still denies.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The namespace whose policies apply to the whole mesh (Istio's root namespace, which Istio
/// calls `istio-system`): a policy there without a selector selects every workload, one with a
/// selector the matching workloads of every namespace. ferry's own namespace, where
/// `configs/kubernetes` installs the control plane.
pub const ROOT_NAMESPACE: &str = "ferry-system";

/// `spec.action`. AUDIT and CUSTOM are refused when the object is read.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum Action {
    #[default]
    Allow,
    Deny,
}

/// Names one AuthorizationPolicy, for logs and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyRef {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One AuthorizationPolicy, as it applies to the workloads it selects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuthorizationPolicy {
    pub policy: PolicyRef,
    pub action: Action,
    /// `spec.rules`, in order (the order does not change the outcome).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// `spec.rules[]`: who (`from`) may do what (`to`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// `from[].source`: one must match; empty matches any peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<Source>,
    /// `to[].operation`: one must match; empty matches any operation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Operation>,
}

/// `source`: the peer. Every non-empty field must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Source {
    /// Peer identities without `spiffe://` (`cluster.local/ns/shop/sa/web`), patterns allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    /// The peer identity's namespace, patterns allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
}

/// `operation`: what the request does. Every non-empty field must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Operation {
    /// The workload's port the traffic arrives on (a container port).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<u16>,
    /// HTTP only: the request method, patterns allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    /// HTTP only: the request's path without its query, patterns allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

impl Operation {
    fn has_http_fields(&self) -> bool {
        !(self.methods.is_empty()
            && self.not_methods.is_empty()
            && self.paths.is_empty()
            && self.not_paths.is_empty())
    }
}

impl Rule {
    /// Names a field TCP cannot match (see the module doc for what that does).
    pub fn has_http_fields(&self) -> bool {
        self.to.iter().any(Operation::has_http_fields)
    }
}

/// Why a value is not a pattern Istio accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: a `*` may only be the whole value, its first or its last character")]
pub struct PatternError(pub String);

/// Checks a value of `principals`, `namespaces`, `methods` or `paths` (and their `not`s):
/// exact, `prefix*`, `*suffix` or `*`; an empty value is refused too.
pub fn check_pattern(pattern: &str) -> Result<(), PatternError> {
    let inner = pattern
        .strip_prefix('*')
        .or_else(|| pattern.strip_suffix('*'))
        .unwrap_or(pattern);
    if pattern.is_empty() || inner.contains('*') {
        return Err(PatternError(pattern.to_owned()));
    }
    Ok(())
}

/// Istio's string match: `*` is "present", `x*` a prefix, `*x` a suffix, else exact.
fn matches(pattern: &str, value: Option<&str>) -> bool {
    let Some(value) = value else {
        return false;
    };
    if pattern == "*" {
        !value.is_empty()
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        value.ends_with(suffix)
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        value.starts_with(prefix)
    } else {
        value == pattern
    }
}

fn any(patterns: &[String], value: Option<&str>) -> bool {
    patterns.iter().any(|p| matches(p, value))
}

/// `field` matches `value` when empty or one pattern does; `not_field` when none does.
fn field(patterns: &[String], not_patterns: &[String], value: Option<&str>) -> bool {
    (patterns.is_empty() || any(patterns, value)) && !any(not_patterns, value)
}

/// The HTTP part of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// The request target's path; a query (`?…`) is not part of what `paths` match.
    pub path: &'a str,
}

/// What a sidecar knows of an inbound request or connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The peer's verified identity without `spiffe://` (`cluster.local/ns/shop/sa/web`);
    /// `None` for a plaintext peer.
    pub principal: Option<&'a str>,
    /// The namespace of the peer's identity; `None` for a plaintext peer.
    pub namespace: Option<&'a str>,
    /// The workload's port the traffic arrived on.
    pub port: u16,
    /// `None` for TCP.
    pub http: Option<HttpRequest<'a>>,
}

impl Source {
    fn matches(&self, request: &Request<'_>) -> bool {
        field(&self.principals, &self.not_principals, request.principal)
            && field(&self.namespaces, &self.not_namespaces, request.namespace)
    }
}

impl Operation {
    /// With no HTTP part, the HTTP-only fields are left out (the caller has already decided
    /// that a rule naming them may be read so).
    fn matches(&self, request: &Request<'_>) -> bool {
        let ports = (self.ports.is_empty() || self.ports.contains(&request.port))
            && !self.not_ports.contains(&request.port);
        let Some(http) = request.http else {
            return ports;
        };
        let path = http.path.split_once('?').map_or(http.path, |(p, _)| p);
        ports
            && field(&self.methods, &self.not_methods, Some(http.method))
            && field(&self.paths, &self.not_paths, Some(path))
    }
}

impl Rule {
    fn matches(&self, action: Action, request: &Request<'_>) -> bool {
        if request.http.is_none() && action == Action::Allow && self.has_http_fields() {
            return false;
        }
        (self.from.is_empty() || self.from.iter().any(|s| s.matches(request)))
            && (self.to.is_empty() || self.to.iter().any(|o| o.matches(request)))
    }
}

impl AuthorizationPolicy {
    /// One of its rules matches (none when it has no rules).
    pub fn matches(&self, request: &Request<'_>) -> bool {
        self.rules.iter().any(|r| r.matches(self.action, request))
    }
}

/// The outcome of [`Authorizer::authorize`], with the policy that decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No policy denied and no ALLOW policy selects the workload.
    AllowedByDefault,
    /// This ALLOW policy matched.
    Allowed(PolicyRef),
    /// This DENY policy matched.
    Denied(PolicyRef),
    /// ALLOW policies select the workload and none matched.
    NotAllowed,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::AllowedByDefault | Decision::Allowed(_))
    }

    /// The policy that decided, if one did.
    pub fn policy(&self) -> Option<&PolicyRef> {
        match self {
            Decision::Allowed(p) | Decision::Denied(p) => Some(p),
            Decision::AllowedByDefault | Decision::NotAllowed => None,
        }
    }
}

/// The policies that select one workload, ready to decide requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Authorizer {
    deny: Vec<AuthorizationPolicy>,
    allow: Vec<AuthorizationPolicy>,
}

impl Authorizer {
    /// From the policies that select the workload (in any order: the outcome does not depend
    /// on it, only which policy is named when several match).
    pub fn new(policies: impl IntoIterator<Item = AuthorizationPolicy>) -> Authorizer {
        let (deny, allow) = policies
            .into_iter()
            .partition(|p: &AuthorizationPolicy| p.action == Action::Deny);
        Authorizer { deny, allow }
    }

    pub fn authorize(&self, request: &Request<'_>) -> Decision {
        if let Some(p) = self.deny.iter().find(|p| p.matches(request)) {
            return Decision::Denied(p.policy.clone());
        }
        if self.allow.is_empty() {
            return Decision::AllowedByDefault;
        }
        match self.allow.iter().find(|p| p.matches(request)) {
            Some(p) => Decision::Allowed(p.policy.clone()),
            None => Decision::NotAllowed,
        }
    }
}

#[cfg(test)]
mod tests;
