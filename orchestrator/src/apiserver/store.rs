//! The API server's object store: every object the local cluster has, as JSON, under one
//! global revision counter (as etcd's, or k3s' kine): each change of an object (made, changed,
//! gone) takes the next revision, an object's `resourceVersion` is the revision of its last
//! change, and a list carries the store's revision. resourceVersions are opaque strings to
//! clients; a watch starts from one.
//!
//! Each change is also kept as an event (ADDED, MODIFIED, DELETED, with the object at that
//! revision) in a ring of the last [`RING`] events, and wakes the watchers
//! ([`Store::subscribe`]): a watcher reads the events after its revision on its own time, so a
//! slow one slows neither [`Store::record`] nor the others; one that fell behind the ring gets
//! [`Expired`] (410) and relists, as from the API server's watch cache.
//!
//! The orchestrator records each round's live reading here ([`Store::record`]); the API
//! server reads without waiting for a round. What the API server adds on create is added
//! here once and kept: a `uid` and a `creationTimestamp` for objects that came without one.
//! Namespaces used by objects but not declared are listed as the API server's own are
//! (`default`, `kube-system`, `kube-public`, `kube-node-lease` always), and a Service with a
//! selector gets the `Endpoints` the endpoints controller would write from its EndpointSlices.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::RwLock;

use ferry_objects::files::Reading;
use ferry_objects::object::Object;
use serde_json::{Value, json};

use super::resources::{self, Resource};

/// Where an object lives: its resource, namespace ("" when cluster-scoped) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub resource: &'static str,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug)]
struct Entry {
    /// The revision of its last change.
    revision: u64,
    /// The object without `metadata.resourceVersion`.
    object: Value,
}

#[derive(Debug, Default)]
struct Inner {
    revision: u64,
    objects: BTreeMap<Key, Entry>,
    /// The last events, oldest first, one per revision.
    events: VecDeque<Event>,
    /// The revision of the last event dropped from the ring (0: none dropped): a watch can
    /// start from this revision or a later one.
    compacted: u64,
}

/// Resources written by [`Store::replace`], which [`Store::record`] leaves alone.
pub const REPLACED: &[&str] = &["events"];

/// How many events the ring keeps (the API server's watch cache keeps 100 to a few
/// thousand per resource).
pub const RING: usize = 1000;

/// What an event says happened to its object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change of one object.
#[derive(Clone, Debug)]
pub struct Event {
    pub revision: u64,
    pub kind: EventType,
    pub key: Key,
    /// The object at this revision, with its resourceVersion; for DELETED its last state
    /// with the revision of the deletion (as the API server sends).
    pub object: Value,
    /// The object before (MODIFIED, DELETED): a selector's watcher sees whether it matched.
    pub previous: Option<Value>,
}

/// A watch from a revision the ring no longer holds: the oldest revision it can start from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expired {
    pub oldest: u64,
}

/// The store; shared by the orchestrator (writes) and the API server (reads).
#[derive(Debug)]
pub struct Store {
    inner: RwLock<Inner>,
    ring: usize,
    /// The revision, sent on each recorded change; watchers wait on it.
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for Store {
    fn default() -> Store {
        Store::with_ring(RING)
    }
}

/// The namespaces an API server always has.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-node-lease", "kube-public", "kube-system"];

impl Store {
    /// A store whose revisions start at the clock (microseconds since the epoch), so that
    /// they rise across restarts: a client's resourceVersion from an earlier run is older
    /// than any this run gives, and its watch gets 410 and relists instead of waiting for
    /// revisions that name other changes.
    pub fn new() -> Store {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2));
        let store = Store::default();
        {
            let mut inner = store
                .inner
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            inner.revision = now;
            inner.compacted = now;
        }
        store.changed.send_replace(now);
        store
    }

    /// A store whose ring keeps `ring` events (at least 1).
    pub fn with_ring(ring: usize) -> Store {
        Store {
            inner: RwLock::default(),
            ring: ring.max(1),
            changed: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Wakes on each change recorded; the value is the store's revision.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The events after `after` of a resource (in one namespace, or all), oldest first, and
    /// the store's revision; [`Expired`] when the ring no longer holds all of them.
    pub fn events_after(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        after: u64,
    ) -> Result<(u64, Vec<Event>), Expired> {
        let inner = self.read();
        // Older than the ring, or never given by this run (the clock went back between runs).
        if after < inner.compacted || after > inner.revision {
            return Err(Expired {
                oldest: inner.compacted,
            });
        }
        let events = inner
            .events
            .iter()
            .filter(|e| e.revision > after)
            .filter(|e| {
                e.key.resource == resource.plural
                    && namespace.is_none_or(|ns| e.key.namespace == ns)
            })
            .cloned()
            .collect();
        Ok((inner.revision, events))
    }

    /// The store's revision: that of its last change.
    pub fn revision(&self) -> u64 {
        self.read().revision
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes the store hold exactly the reading's objects (with the derived ones), each
    /// change taking the next revision.
    pub fn record(&self, reading: &Reading) {
        let mut next: BTreeMap<Key, Value> = BTreeMap::new();
        for m in &reading.manifests {
            if let Some((key, value)) = to_json(&m.object) {
                next.insert(key, value);
            }
        }
        derive_namespaces(&mut next);
        derive_endpoints(&mut next);
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let inner = &mut *inner;
        let before = inner.revision;
        let gone: Vec<Key> = inner
            .objects
            .keys()
            .filter(|k| !next.contains_key(*k) && !REPLACED.contains(&k.resource))
            .cloned()
            .collect();
        for key in gone {
            let Some(old) = inner.objects.remove(&key) else {
                continue;
            };
            inner.revision += 1;
            let revision = inner.revision;
            let mut object = old.object.clone();
            set_version(&mut object, revision);
            let event = Event {
                revision,
                kind: EventType::Deleted,
                key,
                object,
                previous: Some(with_version(&old)),
            };
            self.push(inner, event);
        }
        for (key, mut object) in next {
            // Another uid under the same name is another object (one deleted and made again
            // between two readings): watchers see the old one DELETED, then the new ADDED, as
            // from the API server (`kubectl delete --wait` waits for exactly that).
            let uid = |o: &Value| {
                o.pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            if let (Some(new), Some(old)) = (uid(&object), inner.objects.get(&key))
                && uid(&old.object).is_some_and(|u| u != new)
                && let Some(old) = inner.objects.remove(&key)
            {
                inner.revision += 1;
                let revision = inner.revision;
                let mut gone = old.object.clone();
                set_version(&mut gone, revision);
                let event = Event {
                    revision,
                    kind: EventType::Deleted,
                    key: key.clone(),
                    object: gone,
                    previous: Some(with_version(&old)),
                };
                self.push(inner, event);
            }
            let old = inner.objects.get(&key);
            keep_server_fields(&mut object, old.map(|e| &e.object));
            match old {
                Some(e) if e.object == object => {}
                _ => {
                    let previous = old.map(with_version);
                    inner.revision += 1;
                    let revision = inner.revision;
                    let entry = Entry { revision, object };
                    let event = Event {
                        revision,
                        kind: if previous.is_some() {
                            EventType::Modified
                        } else {
                            EventType::Added
                        },
                        key: key.clone(),
                        object: with_version(&entry),
                        previous,
                    };
                    inner.objects.insert(key, entry);
                    self.push(inner, event);
                }
            }
        }
        if inner.revision != before {
            self.changed.send_replace(inner.revision);
        }
    }

    /// Makes the store hold exactly `objects` of a resource no reading has (one of
    /// [`REPLACED`]: Events, from the event recorder), each change taking the next revision.
    pub fn replace(&self, resource: &'static str, objects: Vec<Value>) {
        debug_assert!(REPLACED.contains(&resource));
        let mut next: BTreeMap<Key, Value> = BTreeMap::new();
        for o in objects {
            let s = |p: &str| {
                o.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let key = Key {
                resource,
                namespace: s("/metadata/namespace"),
                name: s("/metadata/name"),
            };
            next.insert(key, o);
        }
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let inner = &mut *inner;
        let before = inner.revision;
        let gone: Vec<Key> = inner
            .objects
            .keys()
            .filter(|k| k.resource == resource && !next.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            let Some(old) = inner.objects.remove(&key) else {
                continue;
            };
            inner.revision += 1;
            let mut object = old.object.clone();
            set_version(&mut object, inner.revision);
            let event = Event {
                revision: inner.revision,
                kind: EventType::Deleted,
                key,
                object,
                previous: Some(with_version(&old)),
            };
            self.push(inner, event);
        }
        for (key, object) in next {
            let old = inner.objects.get(&key);
            if old.is_some_and(|e| e.object == object) {
                continue;
            }
            let previous = old.map(with_version);
            inner.revision += 1;
            let entry = Entry {
                revision: inner.revision,
                object,
            };
            let event = Event {
                revision: inner.revision,
                kind: if previous.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                },
                key: key.clone(),
                object: with_version(&entry),
                previous,
            };
            inner.objects.insert(key, entry);
            self.push(inner, event);
        }
        if inner.revision != before {
            self.changed.send_replace(inner.revision);
        }
    }

    /// Keeps an event, dropping the oldest when the ring is full.
    fn push(&self, inner: &mut Inner, event: Event) {
        while inner.events.len() >= self.ring {
            if let Some(dropped) = inner.events.pop_front() {
                inner.compacted = dropped.revision;
            }
        }
        inner.events.push_back(event);
    }

    /// The objects of a resource (in one namespace, or all), ordered by namespace and name,
    /// each with its resourceVersion; and the store's revision.
    pub fn list(&self, resource: &Resource, namespace: Option<&str>) -> (u64, Vec<Value>) {
        let inner = self.read();
        // Keys order by resource, then namespace: the objects wanted are one range.
        let from = Key {
            resource: resource.plural,
            namespace: namespace.unwrap_or_default().to_owned(),
            name: String::new(),
        };
        let items = inner
            .objects
            .range(from..)
            .take_while(|(k, _)| {
                k.resource == resource.plural && namespace.is_none_or(|ns| k.namespace == ns)
            })
            .map(|(_, e)| with_version(e))
            .collect();
        (inner.revision, items)
    }

    /// A page of a list: the objects of a kind (in one namespace, or all) after `after` (the
    /// namespace and name a continue token carries) that `keep` selects, at most `limit` of
    /// them, and how many more it selects. Only the objects returned are copied, so each page
    /// of a paged list costs its own size, not the whole list's.
    pub fn page(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        after: Option<&(String, String)>,
        limit: Option<usize>,
        keep: impl Fn(&Value) -> bool,
    ) -> (u64, Vec<Value>, usize) {
        use std::ops::Bound;
        let inner = self.read();
        let first = Key {
            resource: resource.plural,
            namespace: namespace.unwrap_or_default().to_owned(),
            name: String::new(),
        };
        let start = match after {
            Some((ns, name)) => {
                let last = Key {
                    resource: resource.plural,
                    namespace: ns.clone(),
                    name: name.clone(),
                };
                if last >= first {
                    Bound::Excluded(last)
                } else {
                    Bound::Included(first)
                }
            }
            None => Bound::Included(first),
        };
        let mut selected = inner
            .objects
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| {
                k.resource == resource.plural && namespace.is_none_or(|ns| k.namespace == ns)
            })
            .filter(|(_, e)| keep(&e.object));
        let items: Vec<Value> = selected
            .by_ref()
            .take(limit.unwrap_or(usize::MAX))
            .map(|(_, e)| with_version(e))
            .collect();
        let remaining = selected.count();
        (inner.revision, items, remaining)
    }

    /// One object, with its resourceVersion.
    pub fn get(&self, resource: &Resource, namespace: &str, name: &str) -> Option<Value> {
        let key = Key {
            resource: resource.plural,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.read().objects.get(&key).map(with_version)
    }
}

fn with_version(e: &Entry) -> Value {
    let mut object = e.object.clone();
    set_version(&mut object, e.revision);
    object
}

fn set_version(object: &mut Value, revision: u64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(revision.to_string()));
    }
}

/// What the API server sets on create and keeps: the uid and the creation time, from the
/// stored object when the new one has none.
fn keep_server_fields(object: &mut Value, old: Option<&Value>) {
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for field in ["uid", "creationTimestamp"] {
        if meta.get(field).is_some_and(|v| !v.is_null()) {
            continue;
        }
        let kept = old
            .and_then(|o| o.pointer(&format!("/metadata/{field}")))
            .cloned();
        let value = kept.unwrap_or_else(|| match field {
            "uid" => json!(super::new_uid()),
            _ => json!(
                jiff::Timestamp::now()
                    .round(jiff::Unit::Second)
                    .unwrap_or_else(|_| jiff::Timestamp::now())
                    .to_string()
            ),
        });
        meta.insert(field.into(), value);
    }
}

/// An object as JSON under its key; the namespace filled in for namespaced kinds.
fn to_json(object: &Object) -> Option<(Key, Value)> {
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
    let mut value = value.ok()?;
    let kind = value.get("kind")?.as_str()?.to_owned();
    let resource = resources::of_kind(&kind)?;
    // Kept at the kind's preferred version, whichever one it was written at.
    resources::as_version(resource, &mut value);
    let meta = value.get_mut("metadata")?.as_object_mut()?;
    let name = meta.get("name")?.as_str()?.to_owned();
    let namespace = if resource.namespaced {
        let ns = meta
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .unwrap_or("default")
            .to_owned();
        meta.insert("namespace".into(), json!(ns));
        ns
    } else {
        meta.remove("namespace");
        String::new()
    };
    default_protocols(&mut value, &kind);
    if kind == "Namespace" {
        default_namespace(&mut value, &name);
    }
    let key = Key {
        resource: resource.plural,
        namespace,
        name,
    };
    Some((key, value))
}

/// What the API server gives every Namespace: its name as the label
/// `kubernetes.io/metadata.name`, the `kubernetes` finalizer, and the phase `Active`.
fn default_namespace(value: &mut Value, name: &str) {
    let Some(object) = value.as_object_mut() else {
        return;
    };
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    let spec = object.entry("spec").or_insert_with(|| json!({}));
    if let Some(spec) = spec.as_object_mut() {
        spec.entry("finalizers")
            .or_insert_with(|| json!(["kubernetes"]));
    }
    let status = object.entry("status").or_insert_with(|| json!({}));
    if let Some(status) = status.as_object_mut() {
        status.entry("phase").or_insert_with(|| json!("Active"));
    }
}

/// The API server's defaulting that clients show: a port without a protocol is TCP
/// (`kubectl describe` prints `Port: 8080/TCP`).
fn default_protocols(value: &mut Value, kind: &str) {
    let ports: Vec<&str> = match kind {
        "Pod" => vec!["/spec/containers"],
        "Deployment" | "ReplicaSet" => vec!["/spec/template/spec/containers"],
        "Service" => vec!["/spec"],
        "EndpointSlice" => vec![""],
        _ => return,
    };
    let containers = matches!(kind, "Pod" | "Deployment" | "ReplicaSet");
    for pointer in ports {
        let Some(at) = value.pointer_mut(pointer) else {
            continue;
        };
        let holders: Vec<&mut Value> = if containers {
            at.as_array_mut().into_iter().flatten().collect()
        } else {
            vec![at]
        };
        for holder in holders {
            let list = holder.get_mut("ports").and_then(Value::as_array_mut);
            for port in list.into_iter().flatten() {
                if let Some(port) = port.as_object_mut() {
                    port.entry("protocol").or_insert_with(|| json!("TCP"));
                }
            }
        }
    }
}

/// The namespaces the API server has without being asked, and those objects use.
fn derive_namespaces(objects: &mut BTreeMap<Key, Value>) {
    let mut used: BTreeSet<String> = SYSTEM_NAMESPACES.iter().map(|s| (*s).to_owned()).collect();
    used.extend(
        objects
            .keys()
            .filter(|k| !k.namespace.is_empty())
            .map(|k| k.namespace.clone()),
    );
    for ns in used {
        let key = Key {
            resource: "namespaces",
            namespace: String::new(),
            name: ns.clone(),
        };
        objects.entry(key).or_insert_with(|| {
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            })
        });
    }
}

/// The Endpoints of each Service with a selector that has none declared: its EndpointSlices'
/// ready addresses and the rest as not ready, one subset per set of ports (what the
/// endpoints controller writes).
fn derive_endpoints(objects: &mut BTreeMap<Key, Value>) {
    let mut derived = Vec::new();
    for (key, svc) in objects.iter().filter(|(k, _)| k.resource == "services") {
        if svc.pointer("/spec/selector").is_none_or(Value::is_null) {
            continue;
        }
        let ep_key = Key {
            resource: "endpoints",
            ..key.clone()
        };
        if objects.contains_key(&ep_key) {
            continue;
        }
        let mut subsets: Vec<Value> = Vec::new();
        let slices = objects.iter().filter(|(k, s)| {
            k.resource == "endpointslices"
                && k.namespace == key.namespace
                && s.pointer("/metadata/labels/kubernetes.io~1service-name")
                    .and_then(Value::as_str)
                    == Some(key.name.as_str())
        });
        for (_, slice) in slices {
            let ports: Vec<Value> = slice
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| {
                    let mut port = json!({"port": p.get("port"), "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP"))});
                    if let Some(name) = p.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                        port["name"] = json!(name);
                    }
                    port
                })
                .collect();
            let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
            for e in slice
                .get("endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let is_ready =
                    e.pointer("/conditions/ready").and_then(Value::as_bool) != Some(false);
                // The endpoints controller leaves a terminating Pod out of Endpoints (the
                // slice's `ready` is already true for it under publishNotReadyAddresses).
                let terminating = e
                    .pointer("/conditions/terminating")
                    .and_then(Value::as_bool)
                    == Some(true);
                if terminating && !is_ready {
                    continue;
                }
                for ip in e
                    .get("addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let mut address = json!({"ip": ip});
                    if let Some(hostname) = e.get("hostname") {
                        address["hostname"] = hostname.clone();
                    }
                    if let Some(node) = e.get("nodeName") {
                        address["nodeName"] = node.clone();
                    }
                    if let Some(target) = e.get("targetRef") {
                        address["targetRef"] = target.clone();
                    }
                    if is_ready {
                        ready.push(address)
                    } else {
                        not_ready.push(address)
                    }
                }
            }
            if ready.is_empty() && not_ready.is_empty() {
                continue;
            }
            let mut subset = json!({"ports": ports});
            if !ready.is_empty() {
                subset["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] = json!(not_ready);
            }
            subsets.push(subset);
        }
        let mut labels = svc
            .pointer("/metadata/labels")
            .cloned()
            .unwrap_or(json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert(
                "endpoints.kubernetes.io/managed-by".into(),
                json!("endpoint-controller"),
            );
        }
        let mut ep = json!({
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": key.name, "namespace": key.namespace, "labels": labels},
        });
        if !subsets.is_empty() {
            ep["subsets"] = json!(subsets);
        }
        derived.push((ep_key, ep));
    }
    objects.extend(derived);
}
