//! The declared objects: what the manifest files and the Kubernetes API's writes ask the local
//! cluster to have, each knowing where it came from. The live cluster reconciles towards it
//! ([`crate::LocalCluster::reconcile`] takes [`Declared::reading`]).
//!
//! A change of the files (read, validated and admitted whole) is applied as `kubectl apply -f`
//! would apply them ([`Declared::with_files`]): an object new in the files, or changed there,
//! is set from its file with the `kubectl.kubernetes.io/last-applied-configuration`
//! annotation (the object as in the file, compact JSON, as kubectl writes it); an object whose
//! file text did not change is left as the API may have changed it (scaled, rolled back); an
//! object that left the files is deleted. Objects created through the API are never deleted
//! by a file change; an object a file declares is the files' from then on.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_model::Problem;
use ferry_objects::files::Reading;
use ferry_objects::object::{Manifest, Object, ObjectKey};
use serde_json::{Value, json};

/// The annotation `kubectl apply` keeps the applied object in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Where a declared object came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A manifest file (`ferry up -f`).
    File,
    /// A write through the Kubernetes API.
    Api,
}

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    /// The object as declared now.
    manifest: Arc<Manifest>,
    source: Source,
    /// For a file's object: the object as its file last said (without the annotation), so a
    /// file change that leaves it alone does not undo what the API did to it.
    from_file: Option<Arc<Manifest>>,
}

/// The declared objects, by kind, namespace and name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Declared {
    objects: BTreeMap<ObjectKey, Entry>,
    /// The last applied file reading's problems (warnings), handed on with each reading.
    problems: Vec<Problem>,
}

impl Declared {
    /// What the cluster reconciles towards: every declared object, with the files' problems.
    pub fn reading(&self) -> Reading {
        Reading {
            manifests: self.objects.values().map(|e| e.manifest.clone()).collect(),
            problems: self.problems.clone(),
        }
    }

    /// The declared objects after a change of the files, applied as `kubectl apply -f`.
    pub fn with_files(&self, files: &Reading) -> Declared {
        let mut objects: BTreeMap<ObjectKey, Entry> = self
            .objects
            .iter()
            .filter(|(_, e)| e.source == Source::Api)
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        for m in &files.manifests {
            let key = m.key();
            let old = self.objects.get(&key);
            let unchanged = old.is_some_and(|e| {
                e.source == Source::File
                    && e.from_file.as_ref().is_some_and(|f| f.object == m.object)
            });
            let entry = match old {
                Some(e) if unchanged => Entry {
                    from_file: Some(m.clone()),
                    ..e.clone()
                },
                _ => Entry {
                    manifest: Arc::new(applied(m, old.map(|e| &*e.manifest))),
                    source: Source::File,
                    from_file: Some(m.clone()),
                },
            };
            objects.insert(key, entry);
        }
        Declared {
            objects,
            problems: files.problems.clone(),
        }
    }

    /// The declared object under `key`.
    pub fn get(&self, key: &ObjectKey) -> Option<&Arc<Manifest>> {
        self.objects.get(key).map(|e| &e.manifest)
    }

    /// Where the object under `key` came from.
    pub fn source(&self, key: &ObjectKey) -> Option<Source> {
        self.objects.get(key).map(|e| e.source)
    }

    /// Declares an object through the API: a new one is the API's; one already declared keeps
    /// its source (a file's object changed through the API is still its file's).
    pub fn put(&mut self, manifest: Manifest) {
        let key = manifest.key();
        let manifest = Arc::new(manifest);
        match self.objects.get_mut(&key) {
            Some(e) => e.manifest = manifest,
            None => {
                self.objects.insert(
                    key,
                    Entry {
                        manifest,
                        source: Source::Api,
                        from_file: None,
                    },
                );
            }
        }
    }

    /// Deletes a declared object; what it was.
    pub fn remove(&mut self, key: &ObjectKey) -> Option<Arc<Manifest>> {
        self.objects.remove(key).map(|e| e.manifest)
    }

    /// Removes the objects deleted in the foreground whose dependents are gone (`dependents`
    /// says whether a Deployment or ReplicaSet still has some); whether any went.
    pub fn finish_foreground(&mut self, dependents: impl Fn(&ObjectKey) -> bool) -> bool {
        let done: Vec<ObjectKey> = self
            .objects
            .iter()
            .filter(|(_, e)| {
                let meta = e.manifest.object.metadata();
                meta.deletion_timestamp.is_some()
                    && meta
                        .finalizers
                        .iter()
                        .flatten()
                        .any(|f| f == crate::cluster::FOREGROUND)
            })
            .filter(|(k, _)| !dependents(k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &done {
            self.objects.remove(k);
        }
        !done.is_empty()
    }

    /// The keys of the objects declared in a namespace.
    pub fn in_namespace(&self, namespace: &str) -> Vec<ObjectKey> {
        self.objects
            .keys()
            .filter(|k| k.namespace == namespace)
            .cloned()
            .collect()
    }
}

/// Changes a declared Deployment (`ferry scale`, `ferry rollout undo`).
pub fn change_deployment(
    declared: &mut Declared,
    namespace: &str,
    name: &str,
    change: impl FnOnce(&mut k8s_openapi::api::apps::v1::Deployment),
) -> Result<(), crate::ApiError> {
    let key = ObjectKey {
        kind: ferry_objects::object::Kind::Deployment,
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    let mut m = declared
        .get(&key)
        .map(|m| (**m).clone())
        .ok_or_else(|| crate::ApiError::NotFound(format!("deployment {namespace}/{name}")))?;
    if let Object::Deployment(d) = &mut m.object {
        change(d);
    }
    declared.put(m);
    Ok(())
}

/// Sets the replicas of a declared Deployment or ReplicaSet (the `scale` subresource);
/// false when no such object is declared.
pub fn set_replicas(declared: &mut Declared, key: &ObjectKey, replicas: i32) -> bool {
    let Some(mut m) = declared.get(key).map(|m| (**m).clone()) else {
        return false;
    };
    match &mut m.object {
        Object::Deployment(d) => {
            d.spec.get_or_insert_with(Default::default).replicas = Some(replicas)
        }
        Object::ReplicaSet(rs) => {
            rs.spec.get_or_insert_with(Default::default).replicas = Some(replicas)
        }
        _ => return false,
    }
    declared.put(m);
    true
}

/// A file's object as `kubectl apply` leaves it: with the last-applied annotation, and the
/// status the API gave the object before (an Ingress' `status.loadBalancer`) when the file
/// gives none.
fn applied(file: &Manifest, before: Option<&Manifest>) -> Manifest {
    let mut object = file.object.clone();
    canonical(&mut object);
    let annotation = last_applied(file);
    object
        .metadata_mut()
        .annotations
        .get_or_insert_with(Default::default)
        .insert(LAST_APPLIED.to_owned(), annotation);
    if let Some(before) = before {
        keep_status(&mut object, &before.object);
    }
    Manifest {
        origin: file.origin.clone(),
        object,
    }
}

/// A Pod template in one form whoever wrote it: a container port's `protocol: TCP` (the
/// default, which the API shows on every port) and an empty `resources` (a Go client's zero
/// value) are left out. So the template `kubectl rollout undo` sends back (read from the
/// API, with both) is the very one of the revision it names, and its ReplicaSet is used again
/// (the template hash is the same), as in Kubernetes.
pub fn canonical(object: &mut Object) {
    let spec = match object {
        Object::Deployment(d) => d.spec.as_mut().and_then(|s| s.template.spec.as_mut()),
        Object::ReplicaSet(rs) => rs
            .spec
            .as_mut()
            .and_then(|s| s.template.as_mut())
            .and_then(|t| t.spec.as_mut()),
        _ => None,
    };
    let Some(spec) = spec else {
        return;
    };
    let init = spec.init_containers.iter_mut().flatten();
    for c in spec.containers.iter_mut().chain(init) {
        for p in c.ports.iter_mut().flatten() {
            if p.protocol.as_deref() == Some("TCP") {
                p.protocol = None;
            }
        }
        if c.resources
            .as_ref()
            .is_some_and(|r| *r == Default::default())
        {
            c.resources = None;
        }
    }
}

/// Keeps `before`'s status in `object` when `object` has none.
fn keep_status(object: &mut Object, before: &Object) {
    macro_rules! keep {
        ($($kind:ident),*) => {
            match (object, before) {
                $((Object::$kind(o), Object::$kind(b)) if o.status.is_none() => {
                    o.status = b.status.clone();
                })*
                _ => {}
            }
        };
    }
    keep!(Namespace, Service, Pod, ReplicaSet, Deployment, Ingress);
}

/// The value of the last-applied annotation for a file's object: the object as in the file
/// (its namespace filled in, as kubectl does), `metadata.annotations` present without this
/// one, compact JSON with sorted keys and a final newline, as kubectl writes it.
pub fn last_applied(file: &Manifest) -> String {
    let mut value = object_json(&file.object);
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        let mut annotations = meta
            .get("annotations")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        annotations.remove(LAST_APPLIED);
        meta.insert("annotations".into(), Value::Object(annotations));
        if file.object.kind().namespaced() && meta.get("namespace").is_none_or(Value::is_null) {
            meta.insert(
                "namespace".into(),
                json!(ferry_objects::object::DEFAULT_NAMESPACE),
            );
        }
    }
    let mut text = serde_json::to_string(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// An object as JSON (its `apiVersion` and `kind` included).
pub fn object_json(object: &Object) -> Value {
    let value = match object {
        Object::Namespace(o) => serde_json::to_value(&**o),
        Object::Service(o) => serde_json::to_value(&**o),
        Object::Endpoints(o) => serde_json::to_value(&**o),
        Object::EndpointSlice(o) => serde_json::to_value(&**o),
        Object::Pod(o) => serde_json::to_value(&**o),
        Object::ReplicaSet(o) => serde_json::to_value(&**o),
        Object::Deployment(o) => serde_json::to_value(&**o),
        Object::IngressClass(o) => serde_json::to_value(&**o),
        Object::Ingress(o) => serde_json::to_value(&**o),
        Object::Secret(o) => serde_json::to_value(&**o),
        Object::ServiceAccount(o) => serde_json::to_value(&**o),
        Object::AuthorizationPolicy(o) => serde_json::to_value(&**o),
    };
    value.unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests;
