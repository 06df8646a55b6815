//! OpenAPI v3 of the local API server: the index (`/openapi/v3`) and one document per
//! group-version (`/openapi/v3/api/v1`, `/openapi/v3/apis/apps/v1`, …), generated from the
//! k8s-openapi types (their `schemars` schemas carry the Kubernetes descriptions, so
//! `kubectl explain` prints them), with `x-kubernetes-group-version-kind` on each kind and each
//! operation, the patch metadata (`x-kubernetes-patch-merge-key`/`-patch-strategy`) of
//! [`PATCH_METADATA`], and PATCH operations that advertise `fieldValidation` (kubectl trusts the
//! server's validation only when it does, and validates nothing itself then).
//!
//! The same schemas drive the strategic merge patch ([`super::strategic`]), server-side apply and
//! strict field validation ([`unknown_fields`]): one source of what a field is.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use bytes::Bytes;
use ferry_runtime::serve::respond;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::core::v1::{
    Endpoints, Event, Namespace, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, Status};
use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use super::resources::{self, RESOURCES, Resource};
use super::watch::ApiBody;

/// The patch metadata of the Kubernetes API for the fields of the kinds served (from the Go
/// types' `patchStrategy`/`patchMergeKey` tags, which the real documents carry as
/// `x-kubernetes-patch-strategy`/`x-kubernetes-patch-merge-key`): (schema, field, strategy,
/// merge key). A list not named here is replaced whole by a strategic merge patch; a map is
/// merged.
pub const PATCH_METADATA: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "merge",
        None,
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "merge",
        Some("uid"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "containers",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        "merge,retainKeys",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "hostAliases",
        "merge",
        Some("ip"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        "merge",
        Some("topologyKey"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        "merge,retainKeys",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        "merge",
        Some("containerPort"),
    ),
    ("io.k8s.api.core.v1.Container", "env", "merge", Some("name")),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "merge",
        Some("mountPath"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "merge",
        Some("devicePath"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        "merge",
        Some("containerPort"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        "merge",
        Some("mountPath"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        "merge",
        Some("devicePath"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "podIPs",
        "merge",
        Some("ip"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "hostIPs",
        "merge",
        Some("ip"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "resourceClaimStatuses",
        "merge,retainKeys",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        "merge",
        Some("port"),
    ),
    (
        "io.k8s.api.core.v1.ServiceStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        "retainKeys",
        None,
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
];

const REF_PREFIX: &str = "#/components/schemas/";

/// The k8s-openapi schema name of a kind served.
fn schema_name(generator: &mut SchemaGenerator, kind: &str) -> Option<String> {
    let schema = match kind {
        "Namespace" => generator.subschema_for::<Namespace>(),
        "Pod" => generator.subschema_for::<Pod>(),
        "Service" => generator.subschema_for::<Service>(),
        "Endpoints" => generator.subschema_for::<Endpoints>(),
        "Secret" => generator.subschema_for::<Secret>(),
        "ServiceAccount" => generator.subschema_for::<ServiceAccount>(),
        "Event" => generator.subschema_for::<Event>(),
        "Deployment" => generator.subschema_for::<Deployment>(),
        "ReplicaSet" => generator.subschema_for::<ReplicaSet>(),
        "EndpointSlice" => generator.subschema_for::<EndpointSlice>(),
        "Ingress" => generator.subschema_for::<Ingress>(),
        "IngressClass" => generator.subschema_for::<IngressClass>(),
        "TokenReview" => generator.subschema_for::<TokenReview>(),
        _ => return None,
    };
    reference(schema.as_value()).map(str::to_owned)
}

/// The schema name of a custom resource's version, as the API server names a
/// CustomResourceDefinition's (`io.istio.security.v1.AuthorizationPolicy`).
fn custom_schema_name(r: &Resource) -> String {
    let reversed: Vec<&str> = r.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), r.version, r.kind)
}

/// Istio's AuthorizationPolicy as its CustomResourceDefinition describes it: the object's
/// frame, and `spec` open (what it may hold is checked on write by ferry's validation of
/// the policy, which names each field it refuses).
fn authorization_policy_schema(r: &Resource) -> Value {
    json!({
        "type": "object",
        "description": "Istio's AuthorizationPolicy: which requests a workload accepts (ALLOW) or refuses (DENY), by source identity, namespace, method, path and port.",
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
            "metadata": {"allOf": [{"$ref": format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")}], "default": {}},
            "spec": {
                "type": "object",
                "description": "Configuration for access control on workloads: selector, action (ALLOW or DENY) and rules (from, to, when).",
                "x-kubernetes-preserve-unknown-fields": true,
            },
        },
        "x-kubernetes-group-version-kind": [gvk(r)],
    })
}

/// The schema a `$ref` (or, as the real documents write a described reference, an
/// `allOf: [{$ref}]`) names.
fn reference(schema: &Value) -> Option<&str> {
    let named = schema
        .get("$ref")
        .or_else(|| schema.pointer("/allOf/0/$ref"))?;
    named.as_str()?.strip_prefix(REF_PREFIX)
}

/// Every schema, generated once.
pub(super) struct Schemas {
    /// `components.schemas`, all group-versions together.
    definitions: Map<String, Value>,
    /// The schema of each kind served.
    kinds: Vec<(&'static Resource, String)>,
    /// Each group-version's document, serialised, and its hash (the ETag).
    documents: Vec<(String, Bytes, String)>,
    /// The index, serialised, and its hash.
    index: (Bytes, String),
}

impl Schemas {
    /// The index's hash: it names every document's hash, so it changes when any does.
    pub(super) fn index_hash(&self) -> &str {
        &self.index.1
    }
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(generate)
}

pub(super) fn generate() -> Schemas {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let kinds: Vec<(&'static Resource, String)> = RESOURCES
        .iter()
        .filter_map(|r| {
            let name = match r.kind {
                "AuthorizationPolicy" => custom_schema_name(r),
                kind => schema_name(&mut generator, kind)?,
            };
            Some((r, name))
        })
        .collect();
    generator.subschema_for::<Status>();
    generator.subschema_for::<DeleteOptions>();
    let mut definitions = generator.take_definitions(true);
    for (r, name) in &kinds {
        if r.kind == "AuthorizationPolicy" {
            definitions.insert(name.clone(), authorization_policy_schema(r));
        }
    }
    for (schema, field, strategy, key) in PATCH_METADATA {
        if let Some(property) = definitions
            .get_mut(*schema)
            .and_then(|s| s.pointer_mut(&format!("/properties/{field}")))
            .and_then(Value::as_object_mut)
        {
            property.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
            if let Some(key) = key {
                property.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            }
        }
    }
    for (resource, name) in &kinds {
        if let Some(schema) = definitions.get_mut(name).and_then(Value::as_object_mut) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([gvk(resource)]),
            );
        }
    }
    let mut group_versions: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !group_versions.contains(&(r.group, r.version)) {
            group_versions.push((r.group, r.version));
        }
    }
    let documents: Vec<(String, Bytes, String)> = group_versions
        .iter()
        .map(|(group, version)| {
            let doc = document(&definitions, &kinds, group, version);
            let bytes = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
            let hash = etag(&bytes);
            (doc_path(group, version), bytes, hash)
        })
        .collect();
    let paths: Map<String, Value> = documents
        .iter()
        .map(|(path, _, hash)| {
            (
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
            )
        })
        .collect();
    let index = Bytes::from(serde_json::to_vec(&json!({"paths": paths})).unwrap_or_default());
    let index_hash = etag(&index);
    Schemas {
        definitions,
        kinds,
        documents,
        index: (index, index_hash),
    }
}

fn gvk(r: &Resource) -> Value {
    json!({"group": r.group, "version": r.version, "kind": r.kind})
}

/// `api/v1` or `apis/apps/v1`: where a group-version's document is under `/openapi/v3/`.
fn doc_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A 64-bit FNV-1a of the document, in upper-case hex: it changes when the document does
/// (the real server uses SHA-512; any content hash serves the clients' caches).
fn etag(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016X}")
}

/// The names of every schema `roots` refer to, transitively.
fn closure(definitions: &Map<String, Value>, roots: &[&str]) -> BTreeSet<String> {
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(name) = map
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix(REF_PREFIX))
                {
                    out.push(name.to_owned());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.iter().map(|r| (*r).to_owned()).collect();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = definitions.get(&name) {
            refs(schema, &mut todo);
        }
    }
    seen
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("{REF_PREFIX}{name}")})
}

fn content(name: &str, types: &[&str]) -> Value {
    let schema = schema_ref(name);
    Value::Object(
        types
            .iter()
            .map(|t| ((*t).to_owned(), json!({"schema": schema})))
            .collect(),
    )
}

fn query_param(name: &str, description: &str, kind: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": kind, "uniqueItems": true}})
}

const FIELD_VALIDATION: &str = "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.";

/// The operations of one resource: its collection (create) and its object (read, replace,
/// patch, delete), each with its kind; a create-only resource (TokenReview) has its
/// collection's only. `dryRun` is not advertised (nothing here honours it).
fn operations(r: &Resource, name: &str) -> Vec<(String, Value)> {
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let collection = if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{base}/{}", r.plural)
    };
    let gvk = gvk(r);
    let json_types = ["application/json", "application/yaml"];
    let ok = |status: &str| json!({status: {"description": "OK", "content": content(name, &json_types)}});
    let op = |action: &str, verb: &str, params: Vec<Value>, responses: Value| {
        let mut op = json!({
            "description": format!("{verb} the specified {}", r.kind),
            "operationId": format!("{verb}{}", r.kind),
            "tags": [r.group_version()],
            "parameters": params,
            "responses": responses,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        });
        if matches!(action, "post" | "put" | "patch") {
            let types: &[&str] = if action == "patch" && r.kind == "AuthorizationPolicy" {
                // A custom resource takes no strategic merge patch.
                &[
                    "application/apply-patch+yaml",
                    "application/json-patch+json",
                    "application/merge-patch+json",
                ]
            } else if action == "patch" {
                &[
                    "application/apply-patch+yaml",
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/strategic-merge-patch+json",
                ]
            } else {
                &["application/json", "application/yaml"]
            };
            op["requestBody"] = json!({"content": content(name, types), "required": true});
        }
        op
    };
    let manager = query_param(
        "fieldManager",
        "fieldManager is a name associated with the actor or entity that is making these changes.",
        "string",
    );
    let validation = query_param("fieldValidation", FIELD_VALIDATION, "string");
    let force = query_param(
        "force",
        "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
        "boolean",
    );
    let mut path_params = vec![
        json!({"name": "name", "in": "path", "required": true, "description": format!("name of the {}", r.kind), "schema": {"type": "string", "uniqueItems": true}}),
    ];
    if r.namespaced {
        path_params.push(json!({"name": "namespace", "in": "path", "required": true, "description": "object name and auth scope, such as for teams and projects", "schema": {"type": "string", "uniqueItems": true}}));
    }
    let collection_params = &path_params[1..];
    let item = json!({
        "get": op("get", "read", vec![], ok("200")),
        "put": op("put", "replace", vec![manager.clone(), validation.clone()], ok("200")),
        "patch": op("patch", "patch", vec![manager.clone(), validation.clone(), force], ok("200")),
        "delete": op("delete", "delete", vec![], json!({"200": {"description": "OK", "content": content("io.k8s.apimachinery.pkg.apis.meta.v1.Status", &json_types)}})),
        "parameters": path_params,
    });
    let list = json!({
        "post": op("post", "create", vec![manager, validation], ok("201")),
        "parameters": collection_params,
    });
    if resources::verbs(r) == resources::CREATE_VERBS {
        return vec![(collection, list)];
    }
    vec![(format!("{collection}/{{name}}"), item), (collection, list)]
}

/// One group-version's document.
fn document(
    definitions: &Map<String, Value>,
    kinds: &[(&'static Resource, String)],
    group: &str,
    version: &str,
) -> Value {
    let here: Vec<&(&Resource, String)> = kinds
        .iter()
        .filter(|(r, _)| r.group == group && r.version == version)
        .collect();
    let mut roots: Vec<&str> = here.iter().map(|(_, n)| n.as_str()).collect();
    roots.extend([
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    ]);
    let schemas: Map<String, Value> = closure(definitions, &roots)
        .into_iter()
        .filter_map(|n| Some((n.clone(), definitions.get(&n)?.clone())))
        .collect();
    let paths: Map<String, Value> = here.iter().flat_map(|(r, n)| operations(r, n)).collect();
    let title = if group.is_empty() {
        "Kubernetes".to_owned()
    } else {
        format!("Kubernetes {group}/{version}")
    };
    json!({
        "openapi": "3.0.0",
        "info": {"title": title, "version": format!("v{}.{}.0", super::KUBERNETES_VERSION.0, super::KUBERNETES_VERSION.1)},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
        },
        "security": [{"BearerToken": []}],
    })
}

/// A group-version's document as served (for tests and the lead's tools).
pub fn group_version_document(group: &str, version: &str) -> Option<Value> {
    let path = doc_path(group, version);
    let (_, bytes, _) = schemas().documents.iter().find(|(p, _, _)| *p == path)?;
    serde_json::from_slice(bytes).ok()
}

fn header(response: &mut Response<ApiBody>, name: http::header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, v);
    }
}

/// Whether an `Accept` header admits JSON (the documents are served as JSON only; protobuf
/// clients get 406 and fall back, as from a server without the protobuf form).
fn accepts_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    accept.trim().is_empty()
        || accept.split(',').any(|media| {
            let media = media.split(';').next().unwrap_or("").trim();
            matches!(media, "application/json" | "application/*" | "*/*")
        })
}

fn not_modified(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get(http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"))
}

/// The answer to `GET /openapi/v3[/<group-version>]` (`rest` is the path after `/openapi/v3`),
/// with the real server's caching: an `ETag` (`If-None-Match` → 304); a document asked for by
/// its current `?hash=` is `Cache-Control: public, immutable` (kubectl keeps it on disk), one
/// asked for by an old hash is redirected (301) to the current one.
pub(super) fn answer(rest: &[&str], query: &str, headers: &HeaderMap) -> Response<ApiBody> {
    let schemas = schemas();
    let (bytes, hash, current): (&Bytes, &str, Option<&String>) = if rest.is_empty() {
        (&schemas.index.0, schemas.index_hash(), None)
    } else {
        let path = rest.join("/");
        match schemas.documents.iter().find(|(p, _, _)| *p == path) {
            Some((p, bytes, hash)) => (bytes, hash.as_str(), Some(p)),
            None => return super::requests::not_found_path(),
        }
    };
    if !accepts_json(headers) {
        return super::requests::status(
            StatusCode::NOT_ACCEPTABLE,
            "NotAcceptable",
            "only application/json is served for OpenAPI v3",
            None,
        );
    }
    let tag = format!("\"{hash}\"");
    let asked = super::requests::query_params(query)
        .into_iter()
        .find(|(k, _)| k == "hash")
        .map(|(_, v)| v);
    if let (Some(asked), Some(path)) = (&asked, current)
        && asked != hash
    {
        let mut response: Response<ApiBody> =
            respond(StatusCode::MOVED_PERMANENTLY, "text/plain", Bytes::new()).map(ApiBody::from);
        header(
            &mut response,
            http::header::LOCATION,
            &format!("/openapi/v3/{path}?hash={hash}"),
        );
        return response;
    }
    let mut response: Response<ApiBody> = if not_modified(headers, &tag) {
        respond(StatusCode::NOT_MODIFIED, "application/json", Bytes::new()).map(ApiBody::from)
    } else {
        respond(StatusCode::OK, "application/json", bytes.clone()).map(ApiBody::from)
    };
    header(&mut response, http::header::ETAG, &tag);
    if asked.is_some() && current.is_some() {
        header(&mut response, http::header::VARY, "Accept");
        header(
            &mut response,
            http::header::CACHE_CONTROL,
            "public, immutable",
        );
        let expires = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(24 * 365))
            .unwrap_or(jiff::Timestamp::MAX);
        header(
            &mut response,
            http::header::EXPIRES,
            &jiff::fmt::rfc2822::DateTimePrinter::new()
                .timestamp_to_rfc9110_string(&expires)
                .unwrap_or_default(),
        );
    }
    response
}

/// The patch metadata of a field: its strategy (`merge`, `retainKeys`, `replace`, or
/// several, comma-separated) and merge key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PatchMeta<'a> {
    pub strategy: &'a str,
    pub merge_key: Option<&'a str>,
}

impl PatchMeta<'_> {
    pub fn has(&self, strategy: &str) -> bool {
        self.strategy.split(',').any(|s| s.trim() == strategy)
    }
}

/// A place in a kind's schema: what a value there is. `None` is a value of no known schema
/// (free-form, or past the end of what the types say): anything goes there.
#[derive(Clone, Copy, Debug)]
pub struct Node(Option<&'static Value>);

impl Node {
    /// The root of a kind served (`Deployment`, `Pod`, …); a free-form node for others.
    pub fn kind(kind: &str) -> Node {
        let schemas = schemas();
        Node(
            schemas
                .kinds
                .iter()
                .find(|(r, _)| r.kind == kind)
                .and_then(|(_, name)| schemas.definitions.get(name)),
        )
    }

    fn resolve(schema: &'static Value) -> Node {
        match reference(schema) {
            Some(name) => Node(schemas().definitions.get(name)),
            None => Node(Some(schema)),
        }
    }

    /// A field of an object: where it leads and its patch metadata.
    pub fn field(self, key: &str) -> (Node, PatchMeta<'static>) {
        let Some(property) = self.0.and_then(|s| s.get("properties")?.get(key)) else {
            let values = self.0.and_then(|s| s.get("additionalProperties"));
            return (
                values
                    .filter(|v| v.is_object())
                    .map_or(Node(None), Node::resolve),
                PatchMeta::default(),
            );
        };
        let meta = PatchMeta {
            strategy: property
                .get("x-kubernetes-patch-strategy")
                .and_then(Value::as_str)
                .unwrap_or(""),
            merge_key: property
                .get("x-kubernetes-patch-merge-key")
                .and_then(Value::as_str),
        };
        (Node::resolve(property), meta)
    }

    /// The items of a list.
    pub fn items(self) -> Node {
        self.0
            .and_then(|s| s.get("items"))
            .map_or(Node(None), Node::resolve)
    }

    /// The fields an object here may have; `None` when any are allowed.
    fn known_fields(self) -> Option<&'static Map<String, Value>> {
        let schema = self.0?;
        if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
            || schema.get("additionalProperties").is_some()
        {
            return None;
        }
        schema.get("properties")?.as_object()
    }
}

/// The fields of an object of `kind` its schema does not know, as the API server names them
/// under `fieldValidation=Strict` (`spec.template.spec.containers[0].imagee`), in document
/// order. A kind not served has no schema here, so nothing is unknown.
pub fn unknown_fields(kind: &str, object: &Value) -> Vec<String> {
    fn walk(node: Node, value: &Value, path: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                let known = node.known_fields();
                for (key, v) in map {
                    let here = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    if known.is_some_and(|k| !k.contains_key(key)) {
                        out.push(here);
                        continue;
                    }
                    walk(node.field(key).0, v, &here, out);
                }
            }
            Value::Array(items) => {
                let each = node.items();
                for (i, v) in items.iter().enumerate() {
                    walk(each, v, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if resources::of_kind(kind).is_some() {
        walk(Node::kind(kind), object, "", &mut out);
    }
    out
}

/// The message of a 400 to a create or update under `fieldValidation=Strict`, as the API
/// server words it: `Deployment in version "v1" cannot be handled as a Deployment: strict
/// decoding error: unknown field "spec.foo"`.
pub fn strict_decoding_error(kind: &str, version: &str, unknown: &[String]) -> String {
    format!(
        "{kind} in version {version:?} cannot be handled as a {kind}: {}",
        strict_error(unknown)
    )
}

/// The `Warning` header value for one unknown field under `fieldValidation=Warn`, as the API
/// server sends it (kubectl prints `Warning: unknown field "spec.foo"`).
pub fn unknown_field_warning(field: &str) -> String {
    format!("299 - \"unknown field \\\"{field}\\\"\"")
}

/// The message of a 400 under `fieldValidation=Strict` (a patch's; a create's or update's is
/// [`strict_decoding_error`]), as the API server words it:
/// `strict decoding error: unknown field "spec.foo", unknown field "spec.bar"`.
pub fn strict_error(unknown: &[String]) -> String {
    let fields: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    format!("strict decoding error: {}", fields.join(", "))
}
