//! The write verbs of the API server, on the local cluster's declared objects
//! ([`crate::declared`]): create (POST), update (PUT), patch (PATCH: JSON patch, RFC 6902, and
//! JSON merge patch, RFC 7386), delete, and the `status` and `scale` subresources.
//!
//! Each write is one round of the orchestrator ([`crate::Handle::declare`]): it reads the
//! object as the store has it, checks what the API server checks (the namespace exists, the
//! name is free, `metadata.resourceVersion` is current: optimistic concurrency), decodes and
//! validates the new object exactly as a manifest file's (field paths in the problems), and
//! the changed declared objects go through the same admission as a file change. A refused
//! write is `422 Invalid` with `details.causes` and changes nothing.
//!
//! What clients may not set is the server's: `uid`, `creationTimestamp`, `generation` (1 on
//! create, one more when the spec changes), `status` (only through `/status`). Writes to
//! objects a controller made (a Deployment's ReplicaSets, their Pods) act on the live object
//! and the controller reconciles it back, as in Kubernetes; objects derived from others
//! (Endpoints, the EndpointSlice controller's slices) are made again at once.
//!
//! Deletion: Pods gracefully (`deletionTimestamp` and `deletionGracePeriodSeconds` set at
//! once, the object gone when its containers stopped; `gracePeriodSeconds=0` kills at once);
//! `propagationPolicy` Background (the default) and Foreground delete the dependents by their
//! ownerReferences (a Deployment's ReplicaSets and their Pods; the owner goes first, it does
//! not wait for them), Orphan leaves them without the ownerReference; a Namespace takes its
//! objects with it. `dryRun=All` checks and answers without changing anything.

use bytes::Bytes;
use ferry_model::Problem;
use ferry_objects::object::{Kind, Manifest, Object, ObjectKey, Origin};
use http_body_util::{BodyExt, Limited};

use super::requests::{
    self, JSON, Target, authorized, json_response, not_found_path, query_params, status, target,
};
use super::*;
use crate::cluster::NamespacedName;
use crate::declared::{self, Declared};
use crate::{LocalCluster, Refused};

/// Where objects written through the API say they come from, in problems.
pub const API_ORIGIN: &str = "<kubernetes API>";
/// The largest request body taken (the API server's `MaxRequestBodyBytes`).
const MAX_BODY: usize = ferry_objects::validate::MAX_OBJECT_BYTES;
/// The namespaces the API server never deletes.
const UNDELETABLE_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Whether a request is a write (or a read of a subresource this module serves).
pub(super) fn serves(method: &Method, path: &str) -> bool {
    match *method {
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE => true,
        Method::GET => path.ends_with("/scale") || path.ends_with("/status"),
        _ => false,
    }
}

/// A write refused, as the `Status` it is answered with.
#[derive(Debug)]
pub(super) struct Failure {
    code: StatusCode,
    reason: &'static str,
    message: String,
    details: Option<Value>,
    /// A refusal by the admission, named after the object once known.
    refused: Option<Vec<Problem>>,
}

impl Failure {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            reason,
            message: message.into(),
            details: None,
            refused: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    fn details(mut self, details: Value) -> Failure {
        self.details = Some(details);
        self
    }

    fn respond(self) -> Response<ApiBody> {
        status(self.code, self.reason, &self.message, self.details)
    }

    /// A refusal named after its object, as the API server's `422 Invalid`.
    fn for_object(self, resource: &Resource, name: &str) -> Failure {
        match self.refused {
            Some(problems) => invalid(resource, name, &problems),
            None => self,
        }
    }
}

impl From<Refused> for Failure {
    fn from(r: Refused) -> Failure {
        let mut f = Failure::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", "");
        f.refused = Some(r.0);
        f
    }
}

/// `Kind.group`, as the API server names a kind in `Invalid` messages.
fn qualified_kind(resource: &Resource) -> String {
    if resource.group.is_empty() {
        resource.kind.to_owned()
    } else {
        format!("{}.{}", resource.kind, resource.group)
    }
}

/// The API server's reason for a field error, from the message's opening words.
fn cause_reason(message: &str) -> &'static str {
    [
        ("Required value", "FieldValueRequired"),
        ("Unsupported value", "FieldValueNotSupported"),
        ("Duplicate value", "FieldValueDuplicate"),
        ("Forbidden", "FieldValueForbidden"),
        ("Too long", "FieldValueTooLong"),
        ("Too many", "FieldValueTooMany"),
        ("Not found", "FieldValueNotFound"),
    ]
    .iter()
    .find(|(start, _)| message.starts_with(start))
    .map_or("FieldValueInvalid", |(_, reason)| reason)
}

/// `422 Invalid` for these problems of one object, each a cause with its field.
fn invalid(resource: &Resource, name: &str, problems: &[Problem]) -> Failure {
    let one = |p: &Problem| {
        if p.field.is_empty() {
            p.message.clone()
        } else {
            format!("{}: {}", p.field, p.message)
        }
    };
    let errors: Vec<String> = problems.iter().map(one).collect();
    let listed = match errors.as_slice() {
        [] => "refused by the control plane's admission".to_owned(),
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let causes: Vec<Value> = problems
        .iter()
        .map(
            |p| json!({"reason": cause_reason(&p.message), "message": p.message, "field": p.field}),
        )
        .collect();
    Failure::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!(
            "{} \"{name}\" is invalid: {listed}",
            qualified_kind(resource)
        ),
    )
    .details(
        json!({"name": name, "group": resource.group, "kind": resource.kind, "causes": causes}),
    )
}

fn not_found(resource: &Resource, name: &str) -> Failure {
    Failure::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} \"{name}\" not found", resource.qualified()),
    )
    .details(json!({"name": name, "group": resource.group, "kind": resource.plural}))
}

fn conflict(resource: &Resource, name: &str) -> Failure {
    Failure::new(
        StatusCode::CONFLICT,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            resource.qualified()
        ),
    )
    .details(json!({"name": name, "group": resource.group, "kind": resource.plural}))
}

/// What a write asks, read from its request.
struct Write {
    resource: &'static Resource,
    /// "" when cluster-scoped.
    namespace: String,
    name: String,
    body: Bytes,
    /// The media type of the body, without parameters.
    content_type: String,
    /// `fieldValidation=Strict`: unknown fields are an error.
    strict: bool,
    dry_run: bool,
}

impl Write {
    fn key(&self) -> ObjectKey {
        ObjectKey {
            kind: Kind::from_name(self.resource.kind).unwrap_or(Kind::Namespace),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    fn live_name(&self) -> NamespacedName {
        NamespacedName::new(self.namespace.clone(), self.name.clone())
    }

    fn current(&self, store: &Store) -> Result<Value, Failure> {
        store
            .get(self.resource, &self.namespace, &self.name)
            .ok_or_else(|| not_found(self.resource, &self.name))
    }

    fn json_body(&self) -> Result<Value, Failure> {
        if !matches!(self.content_type.as_str(), "" | JSON) {
            return Err(unsupported_media_type(&self.content_type, &[JSON]));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| Failure::bad_request(format!("the request body is not valid JSON: {e}")))
    }
}

/// How a write is answered once its round is done.
struct Done {
    code: StatusCode,
    /// The object as the write left it when it is no longer stored (deleted), or as it would
    /// be (`dryRun`).
    last: Value,
    /// Answer with `last` rather than the stored object.
    use_last: bool,
    scale: bool,
}

impl Done {
    fn stored(code: StatusCode) -> Done {
        Done {
            code,
            last: Value::Null,
            use_last: false,
            scale: false,
        }
    }

    fn last(code: StatusCode, last: Value) -> Done {
        Done {
            code,
            last,
            use_last: true,
            scale: false,
        }
    }
}

/// Serves a write, or a read of `status`/`scale`.
pub(super) async fn handle(state: &State, req: Request<Incoming>) -> Response<ApiBody> {
    let (parts, body) = req.into_parts();
    if !authorized(&parts.headers, &state.token) {
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        );
    }
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &format!("Request entity too large: limit is {MAX_BODY}"),
                None,
            );
        }
    };
    let (path, query) = (parts.uri.path(), parts.uri.query().unwrap_or(""));
    respond(state, &parts.method, path, query, &parts.headers, body).await
}

/// The answer to a write (its body read whole), or to a read of `status`/`scale`.
pub(super) async fn respond(
    state: &State,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response<ApiBody> {
    if !authorized(headers, &state.token) {
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        );
    }
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] if resources::serves(group, version) => {
            (*group, *version, rest)
        }
        _ => return requests::answer(state, method, path, query, headers),
    };
    let Some(target) = target(group, version, rest) else {
        return not_found_path();
    };
    if method == Method::GET {
        return match target {
            Target::Subresource {
                resource,
                namespace,
                name,
                sub: sub @ ("status" | "scale"),
            } => read_subresource(state, resource, namespace, name, sub),
            _ => requests::answer(state, method, path, query, headers),
        };
    }
    let (resource, namespace, name, sub) = match target {
        Target::List {
            resource,
            namespace,
        } => (resource, namespace.unwrap_or(""), "", None),
        Target::Get {
            resource,
            namespace,
            name,
        } => (resource, namespace, name, None),
        Target::Subresource {
            resource,
            namespace,
            name,
            sub,
        } => (resource, namespace, name, Some(sub)),
        Target::Resources => return method_not_allowed(method),
    };
    let Some(cluster) = state.cluster.clone() else {
        return method_not_allowed(method);
    };
    if Kind::from_name(resource.kind).is_none() {
        return method_not_allowed(method);
    }
    let params = query_params(query);
    let param = |k: &str| {
        params
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
    };
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let write = Write {
        resource,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        body,
        content_type,
        strict: param("fieldValidation").is_some_and(|v| v == "Strict"),
        dry_run: param("dryRun").is_some_and(|v| v == "All"),
    };
    let answer = match (method, sub) {
        (&Method::POST, None) if name.is_empty() => create(&cluster, write).await,
        (&Method::PUT, None) if !name.is_empty() => update(&cluster, write, false).await,
        (&Method::PATCH, None) if !name.is_empty() => update(&cluster, write, true).await,
        (&Method::DELETE, None) if !name.is_empty() => {
            let options = delete_options(&write.body, &param);
            match options {
                Ok(options) => delete(&cluster, write, options).await,
                Err(e) => Err(e),
            }
        }
        (&Method::PUT | &Method::PATCH, Some("status")) => {
            status_write(&cluster, write, method == Method::PATCH).await
        }
        (&Method::PUT | &Method::PATCH, Some("scale"))
            if matches!(resource.kind, "Deployment" | "ReplicaSet") =>
        {
            scale_write(&cluster, write, method == Method::PATCH).await
        }
        (_, Some(sub)) if !matches!(sub, "status" | "scale") => {
            return not_found(resource, &format!("{name}/{sub}")).respond();
        }
        _ => return method_not_allowed(method),
    };
    let (done, (resource, namespace, name)) = match answer {
        Ok(done) => done,
        Err(f) => return f.respond(),
    };
    let object = if done.use_last {
        done.last
    } else {
        state
            .store
            .get(resource, &namespace, &name)
            .unwrap_or(done.last)
    };
    let object = if done.scale {
        to_scale(&object)
    } else {
        object
    };
    json_response(done.code, JSON, &object)
}

fn method_not_allowed(method: &Method) -> Response<ApiBody> {
    status(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        &format!("the server does not allow this method on the requested resource ({method})"),
        Some(json!({})),
    )
}

fn unsupported_media_type(given: &str, accepted: &[&str]) -> Failure {
    Failure::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
        format!(
            "the body of the request was in an unknown format ({given:?}) - accepted media types include: {}",
            accepted.join(", ")
        ),
    )
}

/// `GET .../status` (the object) and `GET .../scale` (its `Scale`).
fn read_subresource(
    state: &State,
    resource: &'static Resource,
    namespace: &str,
    name: &str,
    sub: &str,
) -> Response<ApiBody> {
    if sub == "scale" && !matches!(resource.kind, "Deployment" | "ReplicaSet") {
        return not_found(resource, &format!("{name}/scale")).respond();
    }
    match state.store.get(resource, namespace, name) {
        Some(o) if sub == "scale" => json_response(StatusCode::OK, JSON, &to_scale(&o)),
        Some(o) => json_response(StatusCode::OK, JSON, &o),
        None => not_found(resource, name).respond(),
    }
}

type Answer = Result<(Done, (&'static Resource, String, String)), Failure>;

/// Runs a write's round; names its refusal after the object.
async fn run(
    cluster: &crate::Handle,
    resource: &'static Resource,
    namespace: String,
    name: String,
    change: impl FnOnce(&mut Declared, &mut LocalCluster, &Store) -> Result<Done, Failure>
    + Send
    + 'static,
) -> Answer {
    match cluster.declare(change).await {
        Ok(done) => Ok((done, (resource, namespace, name))),
        Err(f) => Err(f.for_object(resource, &name)),
    }
}

/// POST on a list: creates the object.
async fn create(cluster: &crate::Handle, write: Write) -> Answer {
    let resource = write.resource;
    let mut object = write.json_body()?;
    let namespace = write.namespace.clone();
    let name = prepare_create(resource, &namespace, &mut object)?;
    let write = Write { name, ..write };
    let (ns, name) = (write.namespace.clone(), write.name.clone());
    run(cluster, resource, ns, name, move |declared, _, store| {
        if resource.namespaced {
            let namespaces = resources::of_kind("Namespace").unwrap_or(resource);
            if store.get(namespaces, "", &write.namespace).is_none() {
                return Err(not_found(namespaces, &write.namespace));
            }
        }
        let key = write.key();
        if store.get(resource, &write.namespace, &write.name).is_some()
            || declared.get(&key).is_some()
        {
            return Err(Failure::new(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} \"{}\" already exists", resource.qualified(), write.name),
            )
            .details(
                json!({"name": write.name, "group": resource.group, "kind": resource.plural}),
            ));
        }
        let m = decode(resource, &write.name, &object, write.strict)?;
        if write.dry_run {
            return Ok(Done::last(StatusCode::CREATED, object));
        }
        declared.put(m);
        Ok(Done::stored(StatusCode::CREATED))
    })
    .await
}

/// Checks and completes a new object's identity (kind, namespace, name or `generateName`) and
/// drops what only the server sets; its name.
fn prepare_create(
    resource: &Resource,
    namespace: &str,
    object: &mut Value,
) -> Result<String, Failure> {
    check_kind(resource, object)?;
    if resource.namespaced && namespace.is_empty() {
        return Err(Failure::bad_request(
            "a namespaced object is created under /namespaces/NAMESPACE/",
        ));
    }
    let meta = object
        .as_object_mut()
        .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| Failure::bad_request("metadata: must be an object"))?;
    if resource.namespaced {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != namespace => {
                return Err(Failure::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(namespace));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let name = match meta.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => match meta.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => {
                let name = format!("{prefix}{}", random_suffix());
                meta.insert("name".into(), json!(name));
                name
            }
            _ => {
                let p = Problem {
                    severity: ferry_model::Severity::Error,
                    file: API_ORIGIN.into(),
                    doc: None,
                    object: None,
                    field: "metadata.name".into(),
                    message: "Required value: name or generateName is required".into(),
                };
                return Err(invalid(resource, "", &[p]));
            }
        },
    };
    for field in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "managedFields",
        "selfLink",
    ] {
        meta.remove(field);
    }
    if matches!(resource.kind, "Ingress" | "Deployment" | "ReplicaSet") {
        meta.insert("generation".into(), json!(1));
    }
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
    }
    Ok(name)
}

/// Five characters, as the API server appends to a `generateName`.
fn random_suffix() -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = ferry_runtime::random::u64();
    (0..5)
        .map(|_| {
            let c = CHARS[(x % CHARS.len() as u64) as usize];
            x /= CHARS.len() as u64;
            char::from(c)
        })
        .collect()
}

/// The body's kind and apiVersion are the resource's (filled in when absent).
fn check_kind(resource: &Resource, object: &mut Value) -> Result<(), Failure> {
    let Some(o) = object.as_object_mut() else {
        return Err(Failure::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let gv = resource.group_version();
    match o.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            o.insert("kind".into(), json!(resource.kind));
        }
        Some(k) if k == resource.kind => {}
        Some(k) => {
            return Err(Failure::bad_request(format!(
                "the kind of the object ({k}) does not match the resource ({})",
                resource.qualified()
            )));
        }
    }
    match o.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            o.insert("apiVersion".into(), json!(gv));
        }
        Some(v) if v == gv => {}
        Some(v) => {
            return Err(Failure::bad_request(format!(
                "the apiVersion of the object ({v}) is not the resource's ({gv})"
            )));
        }
    }
    Ok(())
}

/// Decodes and validates an object exactly as a manifest file's document.
fn decode(
    resource: &Resource,
    name: &str,
    object: &Value,
    strict: bool,
) -> Result<Manifest, Failure> {
    let bytes = serde_json::to_vec(object).unwrap_or_default();
    // A `.json` name: the document is read as JSON.
    let loaded = ferry_objects::manifest::parse("<kubernetes API>.json", &bytes);
    let errors: Vec<Problem> = loaded
        .problems
        .iter()
        .filter(|p| p.is_error())
        .cloned()
        .collect();
    if !errors.is_empty() {
        return Err(invalid(resource, name, &errors));
    }
    if strict {
        let unknown: Vec<String> = loaded
            .problems
            .iter()
            .filter(|p| p.message.starts_with("unknown field"))
            .map(|p| format!("unknown field {:?}", p.field))
            .collect();
        if !unknown.is_empty() {
            return Err(Failure::bad_request(format!(
                "strict decoding error: {}",
                unknown.join(", ")
            )));
        }
    }
    let Some(mut m) = loaded.manifests.into_iter().next() else {
        return Err(Failure::bad_request(format!(
            "{} objects are not kept by ferry's local cluster",
            resource.kind
        )));
    };
    m.origin = Origin {
        file: API_ORIGIN.into(),
        doc: None,
    };
    declared::canonical(&mut m.object);
    let errors: Vec<Problem> = ferry_objects::validate::object(&m)
        .into_iter()
        .filter(Problem::is_error)
        .collect();
    if !errors.is_empty() {
        return Err(invalid(resource, name, &errors));
    }
    Ok(m)
}

fn resource_version(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
}

/// The new object's identity matches the path's, and its resourceVersion (when given) is
/// the current one.
fn check_identity(write: &Write, new: &mut Value, current: &Value) -> Result<(), Failure> {
    check_kind(write.resource, new)?;
    let given = |p: &str| new.pointer(p).and_then(Value::as_str).map(str::to_owned);
    match given("/metadata/name") {
        Some(n) if n != write.name => {
            return Err(Failure::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                write.name
            )));
        }
        _ => {}
    }
    if let Some(ns) = given("/metadata/namespace")
        && !ns.is_empty()
        && write.resource.namespaced
        && ns != write.namespace
    {
        return Err(Failure::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if let Some(rv) = resource_version(new)
        && Some(rv) != resource_version(current)
    {
        return Err(conflict(write.resource, &write.name));
    }
    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("name".into(), json!(write.name));
        if write.resource.namespaced {
            meta.insert("namespace".into(), json!(write.namespace));
        }
    }
    Ok(())
}

/// The new object given (PUT) or the current one patched (PATCH).
fn new_object(write: &Write, current: &Value, patch: bool) -> Result<Value, Failure> {
    if patch {
        patched(&write.content_type, &write.body, current)
    } else {
        write.json_body()
    }
}

/// A patch applied to the current object: JSON patch (RFC 6902) or JSON merge patch (RFC
/// 7386); strategic merge patch and server-side apply go to
/// [`strategic_or_server_side_apply`].
fn patched(content_type: &str, body: &[u8], current: &Value) -> Result<Value, Failure> {
    let mut doc = current.clone();
    match content_type {
        "application/json-patch+json" => {
            let patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| Failure::bad_request(format!("the JSON patch does not parse: {e}")))?;
            json_patch::patch(&mut doc, &patch).map_err(|e| {
                Failure::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!("the JSON patch could not be applied: {e}"),
                )
            })?;
            Ok(doc)
        }
        "application/merge-patch+json" => {
            let patch: Value = serde_json::from_slice(body).map_err(|e| {
                Failure::bad_request(format!("the merge patch is not valid JSON: {e}"))
            })?;
            json_patch::merge(&mut doc, &patch);
            Ok(doc)
        }
        "application/strategic-merge-patch+json" | "application/apply-patch+yaml" => {
            strategic_or_server_side_apply(content_type, body, current)
        }
        other => Err(unsupported_media_type(
            other,
            &[
                "application/json-patch+json",
                "application/merge-patch+json",
            ],
        )),
    }
}

/// Strategic merge patch (`kubectl apply`, `kubectl set image`) and server-side apply
/// (`kubectl apply --server-side`): not served yet, so 415 `UnsupportedMediaType`. The merge
/// functions are wired in here: (the patch's media type, its body, the current object) → the
/// merged object.
fn strategic_or_server_side_apply(
    content_type: &str,
    _body: &[u8],
    _current: &Value,
) -> Result<Value, Failure> {
    Err(unsupported_media_type(
        content_type,
        &[
            "application/json-patch+json",
            "application/merge-patch+json",
        ],
    ))
}

/// The fields of a declared object only the server sets, kept from what was declared before
/// (the generation one more when the spec changed); `status` only changes through `/status`.
fn keep_server_fields(new: &mut Value, old: &Value) {
    let spec_changed = new.get("spec") != old.get("spec");
    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "generation",
        ] {
            match old.pointer(&format!("/metadata/{field}")) {
                Some(v) if !v.is_null() => {
                    meta.insert(field.into(), v.clone());
                }
                _ => {
                    meta.remove(field);
                }
            }
        }
        if spec_changed && let Some(g) = old.pointer("/metadata/generation").and_then(Value::as_i64)
        {
            meta.insert("generation".into(), json!(g + 1));
        }
    }
    if let Some(o) = new.as_object_mut() {
        match old.get("status") {
            Some(s) if !s.is_null() => {
                o.insert("status".into(), s.clone());
            }
            _ => {
                o.remove("status");
            }
        }
    }
}

/// A Pod's spec is immutable (the API server allows a few fields; ferry none).
fn check_pod_spec(write: &Write, new: &Value, current: &Value) -> Result<(), Failure> {
    if write.resource.kind == "Pod" && new.get("spec") != current.get("spec") {
        let p = Problem {
            severity: ferry_model::Severity::Error,
            file: API_ORIGIN.into(),
            doc: None,
            object: None,
            field: "spec".into(),
            message: "Forbidden: pod updates may not change fields other than metadata.labels and metadata.annotations".into(),
        };
        return Err(invalid(write.resource, &write.name, &[p]));
    }
    Ok(())
}

/// PUT (`patch` false) or PATCH of an object.
async fn update(cluster: &crate::Handle, write: Write, patch: bool) -> Answer {
    let resource = write.resource;
    let (ns, name) = (write.namespace.clone(), write.name.clone());
    run(cluster, resource, ns, name, move |declared, live, store| {
        let current = write.current(store)?;
        let mut new = new_object(&write, &current, patch)?;
        check_identity(&write, &mut new, &current)?;
        check_pod_spec(&write, &new, &current)?;
        let key = write.key();
        let nn = write.live_name();
        match declared.get(&key).cloned() {
            Some(old) => {
                let old = declared::object_json(&old.object);
                if resource.kind == "Pod" {
                    // Only labels and annotations change: the rest stays as declared.
                    let mut pod = old.clone();
                    for field in ["labels", "annotations"] {
                        pod["metadata"][field] = new
                            .pointer(&format!("/metadata/{field}"))
                            .cloned()
                            .unwrap_or(Value::Null);
                    }
                    new = pod;
                }
                keep_server_fields(&mut new, &old);
                let m = decode(resource, &write.name, &new, write.strict)?;
                if write.dry_run {
                    return Ok(Done::last(StatusCode::OK, new));
                }
                declared.put(m);
            }
            None if live.controlled(resource.kind, &nn) => {
                let m = decode(resource, &write.name, &new, write.strict)?;
                if write.dry_run {
                    return Ok(Done::last(StatusCode::OK, new));
                }
                live.set_controlled_metadata(resource.kind, &nn, m.object.metadata());
                if let Object::ReplicaSet(rs) = &m.object
                    && let Some(replicas) = rs.spec.as_ref().and_then(|s| s.replicas)
                {
                    live.scale_controlled_replica_set(&nn, replicas);
                }
            }
            None if resource.kind == "Namespace" => {
                // A namespace the server made (one used by objects): declared from now on.
                keep_server_fields(&mut new, &json!({}));
                let m = decode(resource, &write.name, &new, write.strict)?;
                if write.dry_run {
                    return Ok(Done::last(StatusCode::OK, new));
                }
                declared.put(m);
            }
            None => {
                // Derived from other objects (Endpoints, the controller's EndpointSlices): its
                // controller makes it again at once; the write is still validated.
                decode(resource, &write.name, &new, write.strict)?;
            }
        }
        Ok(Done::stored(StatusCode::OK))
    })
    .await
}

/// What a DELETE asks (its body's `DeleteOptions` and the query's parameters).
#[derive(Debug, Default)]
struct DeleteOptions {
    grace: Option<i64>,
    orphan: bool,
    uid: Option<String>,
    resource_version: Option<String>,
}

fn delete_options(
    body: &[u8],
    param: &impl Fn(&str) -> Option<String>,
) -> Result<DeleteOptions, Failure> {
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| Failure::bad_request(format!("DeleteOptions: not valid JSON: {e}")))?
    };
    let grace = match param("gracePeriodSeconds") {
        Some(g) => Some(
            g.parse::<i64>()
                .map_err(|_| Failure::bad_request("gracePeriodSeconds: must be an integer"))?,
        ),
        None => body.get("gracePeriodSeconds").and_then(Value::as_i64),
    };
    let policy = param("propagationPolicy").or_else(|| {
        body.get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let orphan = match policy.as_deref() {
        None | Some("Background" | "Foreground") => {
            body.get("orphanDependents").and_then(Value::as_bool) == Some(true)
        }
        Some("Orphan") => true,
        Some(other) => {
            return Err(Failure::bad_request(format!(
                "propagationPolicy: Unsupported value: {other:?}: supported values: \"Background\", \"Foreground\", \"Orphan\""
            )));
        }
    };
    let pre = |f: &str| {
        body.pointer(&format!("/preconditions/{f}"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(DeleteOptions {
        grace,
        orphan,
        uid: pre("uid"),
        resource_version: pre("resourceVersion"),
    })
}

/// DELETE of an object, with its dependents as `propagationPolicy` says.
async fn delete(cluster: &crate::Handle, write: Write, options: DeleteOptions) -> Answer {
    let resource = write.resource;
    let (ns, name) = (write.namespace.clone(), write.name.clone());
    run(cluster, resource, ns, name, move |declared, live, store| {
        let current = write.current(store)?;
        let uid = current
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(want) = &options.uid
            && *want != uid
        {
            return Err(Failure::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                ),
            ));
        }
        if let Some(want) = &options.resource_version
            && Some(want.as_str()) != resource_version(&current)
        {
            return Err(conflict(resource, &write.name));
        }
        if write.dry_run {
            return Ok(Done::last(StatusCode::OK, current));
        }
        let key = write.key();
        let nn = write.live_name();
        let api_object = |object: Object| Manifest {
            origin: Origin {
                file: API_ORIGIN.into(),
                doc: None,
            },
            object,
        };
        match resource.kind {
            "Namespace" => {
                if UNDELETABLE_NAMESPACES.contains(&write.name.as_str()) {
                    return Err(Failure::new(
                        StatusCode::FORBIDDEN,
                        "Forbidden",
                        format!(
                            "namespaces \"{}\" is forbidden: this namespace may not be deleted",
                            write.name
                        ),
                    ));
                }
                for k in declared.in_namespace(&write.name) {
                    declared.remove(&k);
                }
                declared.remove(&key);
            }
            "Pod" => {
                live.delete_pod_with_grace(&nn, options.grace);
                declared.remove(&key);
            }
            "Deployment" => {
                if options.orphan {
                    for rs in live.orphan_replica_sets(&uid) {
                        declared.put(api_object(Object::ReplicaSet(Box::new(rs))));
                    }
                }
                declared.remove(&key);
            }
            "ReplicaSet" => {
                if options.orphan {
                    for pod in live.orphan_pods(&uid) {
                        declared.put(api_object(Object::Pod(Box::new(pod))));
                    }
                }
                if declared.remove(&key).is_none() && live.controlled("ReplicaSet", &nn) {
                    live.delete_controlled_replica_set(&nn);
                }
            }
            // An object derived from others (Endpoints, a controller's EndpointSlice) is made
            // again at once, as its controller would.
            _ => {
                declared.remove(&key);
            }
        }
        Ok(Done::last(StatusCode::OK, current))
    })
    .await
    .map(|(mut done, at)| {
        // A Pod stays, terminating, until its containers stopped: answer it as stored.
        done.use_last = resource.kind != "Pod";
        (done, at)
    })
}

/// PUT or PATCH of `/status`: only the status changes.
async fn status_write(cluster: &crate::Handle, write: Write, patch: bool) -> Answer {
    let resource = write.resource;
    let (ns, name) = (write.namespace.clone(), write.name.clone());
    run(cluster, resource, ns, name, move |declared, _, store| {
        let current = write.current(store)?;
        let mut new = new_object(&write, &current, patch)?;
        check_identity(&write, &mut new, &current)?;
        let status = new.get("status").cloned().unwrap_or(Value::Null);
        if let Some(old) = declared.get(&write.key()).cloned() {
            let mut object = declared::object_json(&old.object);
            object["status"] = status;
            let m = decode(resource, &write.name, &object, write.strict)?;
            if write.dry_run {
                return Ok(Done::last(StatusCode::OK, object));
            }
            declared.put(m);
        }
        // Otherwise its controller's status: reconciled back at once.
        Ok(Done::stored(StatusCode::OK))
    })
    .await
}

/// PUT or PATCH of `/scale` (an `autoscaling/v1` `Scale`) of a Deployment or ReplicaSet.
async fn scale_write(cluster: &crate::Handle, write: Write, patch: bool) -> Answer {
    let resource = write.resource;
    let (ns, name) = (write.namespace.clone(), write.name.clone());
    run(cluster, resource, ns, name, move |declared, live, store| {
        let current = write.current(store)?;
        let scale = to_scale(&current);
        let new = new_object(&write, &scale, patch)?;
        if let Some(rv) = resource_version(&new)
            && Some(rv) != resource_version(&current)
        {
            return Err(conflict(resource, &write.name));
        }
        let replicas = new.pointer("/spec/replicas").and_then(Value::as_i64);
        let replicas = match replicas.map(i32::try_from) {
            Some(Ok(n)) if n >= 0 => n,
            _ => {
                let given = new
                    .pointer("/spec/replicas")
                    .cloned()
                    .unwrap_or(Value::Null);
                let p = Problem {
                    severity: ferry_model::Severity::Error,
                    file: API_ORIGIN.into(),
                    doc: None,
                    object: None,
                    field: "spec.replicas".into(),
                    message: format!("Invalid value: {given}: must be greater than or equal to 0"),
                };
                let scale_resource = Resource {
                    group: "autoscaling",
                    kind: "Scale",
                    ..*resource
                };
                return Err(invalid(&scale_resource, &write.name, &[p]));
            }
        };
        if write.dry_run {
            let mut out = scale;
            out["spec"]["replicas"] = json!(replicas);
            let mut done = Done::last(StatusCode::OK, out);
            done.scale = false;
            return Ok(done);
        }
        let key = write.key();
        if !declared::set_replicas(declared, &key, replicas) {
            live.scale_controlled_replica_set(&write.live_name(), replicas);
        }
        let mut done = Done::stored(StatusCode::OK);
        done.scale = true;
        Ok(done)
    })
    .await
}

/// A Deployment's or ReplicaSet's `autoscaling/v1` `Scale`.
fn to_scale(object: &Value) -> Value {
    let meta = |f: &str| object.pointer(&format!("/metadata/{f}")).cloned();
    let mut metadata = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta(f) {
            metadata[f] = v;
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {
            "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector_string(object.pointer("/spec/selector")),
        },
    })
}

/// A label selector in its string form (`app=web,tier in (a,b)`), as `Scale.status.selector`.
fn selector_string(selector: Option<&Value>) -> String {
    let Some(s) = selector else {
        return String::new();
    };
    let mut parts: Vec<String> = s
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    for e in s
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e.get("operator").and_then(Value::as_str) {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("DoesNotExist") => format!("!{key}"),
            _ => key.to_owned(),
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests;
