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
//! `propagationPolicy` Background (the default) deletes the dependents by their
//! ownerReferences (a Deployment's ReplicaSets and their Pods) after the owner, Foreground
//! marks the owner and deletes it once they are gone, Orphan leaves them without the
//! ownerReference; a Namespace takes its objects with it. `dryRun=All` checks and answers
//! without changing anything.

use bytes::Bytes;
use ferry_model::Problem;
use ferry_objects::object::{Kind, Manifest, Object, ObjectKey, Origin};

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
    /// `fieldManager` (server-side apply requires one).
    field_manager: Option<String>,
    /// `force=true`: a server-side apply takes over the fields other managers applied.
    force: bool,
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
    let body = match super::requests::body_within(body, MAX_BODY).await {
        Ok(b) => b,
        Err(too_large) => return too_large,
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
        field_manager: param("fieldManager"),
        force: param("force").is_some_and(|v| v == "true"),
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
    let mut object = if done.scale {
        to_scale(&object)
    } else {
        object
    };
    if !done.scale {
        resources::as_version(resource, &mut object);
    }
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

/// The fields of a declared object only the server sets, kept from what was declared before
/// (the generation one more when the spec changed); `status` only changes through `/status`.
/// Puts back the `managedFields` a server-side apply computed (the server's own field
/// otherwise, which create and update keep from the client's reach).
fn keep_managed_fields(object: &mut Value, managed: Option<Value>) {
    if let (Some(meta), Some(managed)) = (
        object.get_mut("metadata").and_then(Value::as_object_mut),
        managed,
    ) {
        meta.insert("managedFields".into(), managed);
    }
}

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
        let current = match write.current(store) {
            Ok(current) => current,
            // Server-side apply creates what does not exist.
            Err(_) if patch && write.content_type == patch::APPLY_PATCH => {
                let mut object = patch::strategic_or_server_side_apply(&write, None)?;
                let applied_fields = object.pointer("/metadata/managedFields").cloned();
                let name = create::prepare_create(resource, &write.namespace, &mut object)?;
                keep_managed_fields(&mut object, applied_fields);
                if name != write.name {
                    return Err(Failure::bad_request(format!(
                        "the name of the object ({name}) does not match the name on the URL ({})",
                        write.name
                    )));
                }
                return create::create_in(declared, store, &write, &object);
            }
            Err(missing) => return Err(missing),
        };
        let mut new = new_object(&write, &current, patch)?;
        let mut applied_fields = new.pointer("/metadata/managedFields").cloned();
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
                if write.content_type == patch::APPLY_PATCH {
                    // The fields each manager applied, as the apply left them.
                    keep_managed_fields(&mut new, applied_fields.take());
                }
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

mod create;
mod delete;
mod failure;
mod patch;
mod subresources;

use create::create;
use delete::{delete, delete_options};
use failure::{Failure, conflict, invalid, not_found};
use patch::new_object;
use subresources::{read_subresource, scale_write, status_write, to_scale};

#[cfg(test)]
mod tests;
