//! The resources the API server serves, and the discovery documents made from them: the
//! aggregated form (`apidiscovery.k8s.io/v2`, what kubectl 1.32 asks for first) and the legacy
//! one (`APIVersions`, `APIGroupList`, `APIResourceList`).

use serde_json::{Value, json};

/// The verbs served on the kinds the local cluster keeps (declared through files or the API).
pub const VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
/// The verbs served on the kinds it only reports (Events).
pub const READ_VERBS: &[&str] = &["get", "list", "watch"];
/// The verbs of TokenReviews and of `serviceaccounts/token` (TokenRequest): create only.
pub const CREATE_VERBS: &[&str] = &["create"];
/// The verbs of the `status` and `scale` subresources.
pub const SUBRESOURCE_VERBS: &[&str] = &["get", "patch", "update"];

/// The verbs served on a resource; discovery says no more than this.
pub fn verbs(r: &Resource) -> &'static [&'static str] {
    if r.kind == "TokenReview" {
        CREATE_VERBS
    } else if ferry_objects::object::Kind::from_name(r.kind).is_some() {
        VERBS
    } else {
        READ_VERBS
    }
}

/// The subresources served on a resource (besides `pods/log` and `pods/exec`, which are not
/// listed by the API server's discovery either): `status` for the kinds with one, `scale` for
/// Deployments and ReplicaSets, `token` (TokenRequest) for ServiceAccounts.
pub fn subresources(r: &Resource) -> &'static [&'static str] {
    match r.kind {
        "ServiceAccount" => &["token"],
        "Deployment" | "ReplicaSet" => &["scale", "status"],
        "Pod" | "Service" | "Ingress" | "Namespace" => &["status"],
        _ => &[],
    }
}

/// One resource: where it lives and what discovery says of it.
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn group_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// How the API server names it in errors: `pods`, `deployments.apps`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

const fn core(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
) -> Resource {
    Resource {
        group: "",
        version: "v1",
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        categories,
    }
}

/// Every resource served, core group first (kubectl resolves a name to the first group that
/// has it, as against a real cluster: `events` is the core one).
pub const RESOURCES: &[Resource] = &[
    core("Namespace", "namespaces", "namespace", false, &["ns"], &[]),
    core("Pod", "pods", "pod", true, &["po"], &["all"]),
    core("Service", "services", "service", true, &["svc"], &["all"]),
    core("Endpoints", "endpoints", "endpoints", true, &["ep"], &[]),
    core("Secret", "secrets", "secret", true, &[], &[]),
    core(
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
        &[],
    ),
    core("Event", "events", "event", true, &["ev"], &[]),
    Resource {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        namespaced: true,
        short_names: &["rs"],
        categories: &["all"],
    },
    Resource {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        namespaced: true,
        short_names: &[],
        categories: &[],
    },
    Resource {
        group: "networking.k8s.io",
        version: "v1",
        kind: "Ingress",
        plural: "ingresses",
        singular: "ingress",
        namespaced: true,
        short_names: &["ing"],
        categories: &[],
    },
    Resource {
        group: "networking.k8s.io",
        version: "v1",
        kind: "IngressClass",
        plural: "ingressclasses",
        singular: "ingressclass",
        namespaced: false,
        short_names: &[],
        categories: &[],
    },
    istio_security("v1"),
    istio_security("v1beta1"),
    // Create-only: a review is answered, never kept ([`super::tokens`]).
    Resource {
        group: "authentication.k8s.io",
        version: "v1",
        kind: "TokenReview",
        plural: "tokenreviews",
        singular: "tokenreview",
        namespaced: false,
        short_names: &[],
        categories: &[],
    },
];

/// Istio's `AuthorizationPolicy` at one version of `security.istio.io` (both versions have
/// the same schema; `v1` is the preferred one and the one stored), with the short name and
/// categories of Istio's CustomResourceDefinition.
const fn istio_security(version: &'static str) -> Resource {
    Resource {
        group: "security.istio.io",
        version,
        kind: "AuthorizationPolicy",
        plural: "authorizationpolicies",
        singular: "authorizationpolicy",
        namespaced: true,
        short_names: &["ap"],
        categories: &["istio-io", "security-istio-io"],
    }
}

/// The resource at `group`/`version` named `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of a kind.
pub fn of_kind(kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind)
}

/// The named groups, in order of first appearance.
fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

/// The versions of a named group, preferred first.
fn versions(group: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group) {
        if !out.contains(&r.version) {
            out.push(r.version);
        }
    }
    out
}

/// An object read through `resource` says the resource's apiVersion: the store keeps one
/// version of a kind served at several (`security.istio.io/v1`), and a read through another
/// is converted, as the API server converts between a resource's versions (here the
/// schemas are the same, so only `apiVersion` changes).
pub fn as_version(resource: &Resource, object: &mut Value) {
    if versions(resource.group).len() > 1
        && let Some(o) = object.as_object_mut()
    {
        o.insert("apiVersion".into(), json!(resource.group_version()));
    }
}

/// Whether a group/version is served.
pub fn serves(group: &str, version: &str) -> bool {
    RESOURCES
        .iter()
        .any(|r| r.group == group && r.version == version)
}

/// The content type of an aggregated discovery answer. kubectl ignores the body unless the
/// answer says exactly this (with plain `application/json` it finds no resource types).
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for aggregated discovery v2.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

fn discovery_resource(r: &Resource) -> Value {
    let mut out = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": verbs(r),
    });
    let subresources: Vec<Value> = subresources(r)
        .iter()
        .map(|sub| {
            let (kind, verbs) = subresource_kind(r, sub);
            json!({"subresource": sub, "responseKind": kind, "verbs": verbs})
        })
        .collect();
    if !subresources.is_empty() {
        out["subresources"] = json!(subresources);
    }
    if !r.short_names.is_empty() {
        out["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        out["categories"] = json!(r.categories);
    }
    out
}

/// What a subresource answers with, and its verbs.
fn subresource_kind(r: &Resource, sub: &str) -> (Value, &'static [&'static str]) {
    match sub {
        "scale" => (
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
            SUBRESOURCE_VERBS,
        ),
        "token" => (
            json!({"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"}),
            CREATE_VERBS,
        ),
        _ => (
            json!({"group": r.group, "version": r.version, "kind": r.kind}),
            SUBRESOURCE_VERBS,
        ),
    }
}

fn discovery_group(group: &str) -> Value {
    let versions: Vec<Value> = versions(group)
        .into_iter()
        .map(|version| {
            let resources: Vec<Value> = RESOURCES
                .iter()
                .filter(|r| r.group == group && r.version == version)
                .map(discovery_resource)
                .collect();
            json!({"version": version, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = json!(group);
    }
    json!({"metadata": metadata, "versions": versions})
}

/// `/api` (`core`) or `/apis` as an `APIGroupDiscoveryList`.
pub fn aggregated(core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![discovery_group("")]
    } else {
        groups().into_iter().map(discovery_group).collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// `/api` in the legacy form.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// `/apis` in the legacy form.
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = groups().into_iter().map(group_versions).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// A group's name, versions and preferred version, as `APIGroup` and `APIGroupList` say.
fn group_versions(group: &str) -> Value {
    let versions: Vec<Value> = versions(group)
        .into_iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

/// `/apis/<group>`: one group as an `APIGroup`.
pub fn api_group(group: &str) -> Value {
    let mut out = group_versions(group);
    out["kind"] = json!("APIGroup");
    out["apiVersion"] = json!("v1");
    out
}

/// `/api/v1` or `/apis/<group>/<version>`: an `APIResourceList`.
pub fn api_resource_list(group: &str, version: &str) -> Value {
    let mut resources: Vec<Value> = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut out = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs(r),
        });
        if !r.short_names.is_empty() {
            out["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            out["categories"] = json!(r.categories);
        }
        resources.push(out);
        for sub in subresources(r) {
            let (kind, verbs) = subresource_kind(r, sub);
            let mut entry = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind["kind"],
                "verbs": verbs,
            });
            if kind["group"] != r.group {
                entry["group"] = kind["group"].clone();
                entry["version"] = kind["version"].clone();
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}
