//! The local cluster's event recorder: core/v1 `Event`s about its objects (a Pod scheduled,
//! its containers started, a probe failing, a crash loop backing off, a Deployment scaling a
//! ReplicaSet, a ReplicaSet creating a Pod), as client-go's recorder makes them, so `kubectl
//! get events` and `kubectl describe` show them.
//!
//! Like client-go's correlator, an event with the same object, type, reason, message and
//! source as a kept one is not kept twice: the kept one's `count` rises and its
//! `lastTimestamp` moves. The recorder is bounded: at most [`CAPACITY`] events (the oldest
//! seen go first), and an event not seen again for [`TTL`] expires (the API server's default
//! `--event-ttl`), by a task of the recorder's when nothing else is recorded. Each change is
//! written to the API server's store ([`Store::replace`]), which serves them by list, watch and
//! get.
//!
//! It may touch only its own ring and the store's `events`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::apiserver::Store;

/// How many events are kept.
pub const CAPACITY: usize = 1000;
/// How long an event not seen again is kept (the API server's `--event-ttl` default).
pub const TTL: Duration = Duration::from_secs(3600);

/// `Normal` or `Warning`, as Kubernetes types events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// The object an event is about (`involvedObject`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Involved {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The part of it (`spec.containers{web}`), if any.
    pub field_path: Option<String>,
}

impl Involved {
    pub fn pod(namespace: &str, name: &str, uid: &str) -> Involved {
        Involved {
            api_version: "v1",
            kind: "Pod",
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: uid.to_owned(),
            field_path: None,
        }
    }

    /// One of a Pod's containers.
    #[must_use]
    pub fn container(mut self, container: &str) -> Involved {
        self.field_path = Some(format!("spec.containers{{{container}}}"));
        self
    }

    pub fn apps(kind: &'static str, namespace: &str, name: &str, uid: &str) -> Involved {
        Involved {
            api_version: "apps/v1",
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: uid.to_owned(),
            field_path: None,
        }
    }
}

/// Who reports an event (`source.component`).
pub mod source {
    pub const SCHEDULER: &str = "default-scheduler";
    pub const KUBELET: &str = "kubelet";
    pub const DEPLOYMENT: &str = "deployment-controller";
    pub const REPLICA_SET: &str = "replicaset-controller";
}

#[derive(Debug)]
struct Kept {
    involved: Involved,
    type_: EventType,
    reason: String,
    message: String,
    component: &'static str,
    name: String,
    first: Timestamp,
    last: Timestamp,
    count: u32,
}

impl Kept {
    fn same(&self, e: &Kept) -> bool {
        self.involved == e.involved
            && self.type_ == e.type_
            && self.reason == e.reason
            && self.message == e.message
            && self.component == e.component
    }

    fn to_json(&self, host: &str) -> Value {
        let i = &self.involved;
        let mut involved = json!({
            "apiVersion": i.api_version,
            "kind": i.kind,
            "namespace": i.namespace,
            "name": i.name,
            "uid": i.uid,
        });
        if let Some(path) = &i.field_path {
            involved["fieldPath"] = json!(path);
        }
        let mut source = json!({"component": self.component});
        if self.component == source::KUBELET {
            source["host"] = json!(host);
        }
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": self.name,
                "namespace": i.namespace,
                "creationTimestamp": self.first.to_string(),
            },
            "involvedObject": involved,
            "reason": self.reason,
            "message": self.message,
            "source": source,
            "firstTimestamp": self.first.to_string(),
            "lastTimestamp": self.last.to_string(),
            "count": self.count,
            "type": self.type_.as_str(),
            "eventTime": null,
            "reportingComponent": self.component,
            "reportingInstance": if self.component == source::KUBELET { host } else { "" },
        })
    }
}

#[derive(Debug, Default)]
struct Ring {
    kept: VecDeque<Kept>,
    /// Makes names unique within one clock tick.
    seq: u64,
}

/// The recorder. Cheap to clone; every clone records into the same ring.
#[derive(Clone, Debug)]
pub struct Recorder {
    ring: Arc<Mutex<Ring>>,
    store: Option<Arc<Store>>,
    host: String,
    capacity: usize,
    ttl: Duration,
    /// Wakes the expiry task: the oldest event may have changed.
    recorded: Arc<tokio::sync::Notify>,
}

impl Recorder {
    /// A recorder writing to `store` (none: kept only, for tests); `host` is the node's name.
    pub fn new(store: Option<Arc<Store>>, host: &str) -> Recorder {
        Recorder::bounded(store, host, CAPACITY, TTL)
    }

    /// A recorder keeping at most `capacity` events, each for `ttl` after it was last seen.
    pub fn bounded(
        store: Option<Arc<Store>>,
        host: &str,
        capacity: usize,
        ttl: Duration,
    ) -> Recorder {
        let recorder = Recorder {
            ring: Arc::default(),
            store,
            host: host.to_owned(),
            capacity: capacity.max(1),
            ttl,
            recorded: Arc::new(tokio::sync::Notify::new()),
        };
        recorder.expire_in_time();
        recorder
    }

    /// With a store and a runtime: a task that removes each event from the store when it
    /// expires, whether or not anything else is recorded; it ends with the last clone.
    fn expire_in_time(&self) {
        let (Some(store), Ok(runtime)) =
            (self.store.clone(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let ring = Arc::downgrade(&self.ring);
        let recorded = self.recorded.clone();
        let (ttl, host) = (self.ttl, self.host.clone());
        runtime.spawn(async move {
            loop {
                let oldest = {
                    let Some(ring) = ring.upgrade() else {
                        return;
                    };
                    let ring = ring.lock().unwrap_or_else(PoisonError::into_inner);
                    ring.kept.iter().map(|k| k.last).min()
                };
                // Until the oldest expires (or, with none, a TTL: then the recorder is looked
                // at again, so the task ends soon after it), or something is recorded.
                let wait = oldest.map_or(ttl, |last| {
                    let left = jiff::SignedDuration::try_from(ttl)
                        .unwrap_or(jiff::SignedDuration::MAX)
                        - Timestamp::now().duration_since(last);
                    Duration::try_from(left).unwrap_or_default()
                });
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = recorded.notified() => continue,
                }
                let Some(ring) = ring.upgrade() else {
                    return;
                };
                let mut ring = ring.lock().unwrap_or_else(PoisonError::into_inner);
                if expire(&mut ring, ttl, Timestamp::now()) {
                    store.replace("events", objects(&ring, &host));
                }
            }
        });
    }

    pub fn normal(
        &self,
        involved: Involved,
        component: &'static str,
        reason: &str,
        message: String,
    ) {
        self.record(
            EventType::Normal,
            involved,
            component,
            reason,
            message,
            Timestamp::now(),
        );
    }

    pub fn warning(
        &self,
        involved: Involved,
        component: &'static str,
        reason: &str,
        message: String,
    ) {
        self.record(
            EventType::Warning,
            involved,
            component,
            reason,
            message,
            Timestamp::now(),
        );
    }

    /// Records one occurrence at `now`.
    pub fn record(
        &self,
        type_: EventType,
        involved: Involved,
        component: &'static str,
        reason: &str,
        message: String,
        now: Timestamp,
    ) {
        {
            let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
            expire(&mut ring, self.ttl, now);
            ring.seq += 1;
            let event = Kept {
                name: format!(
                    "{}.{:x}",
                    involved.name,
                    u128::try_from(now.as_nanosecond()).unwrap_or(0) + u128::from(ring.seq)
                ),
                involved,
                type_,
                reason: reason.to_owned(),
                message,
                component,
                first: now,
                last: now,
                count: 1,
            };
            match ring.kept.iter().position(|k| k.same(&event)) {
                Some(i) => {
                    if let Some(mut kept) = ring.kept.remove(i) {
                        kept.count += 1;
                        kept.last = now;
                        // The newest seen go last, so the oldest seen are dropped first.
                        ring.kept.push_back(kept);
                    }
                }
                None => {
                    while ring.kept.len() >= self.capacity {
                        ring.kept.pop_front();
                    }
                    ring.kept.push_back(event);
                }
            }
            // Under the ring's lock, so concurrent records reach the store in their order.
            if let Some(store) = &self.store {
                store.replace("events", objects(&ring, &self.host));
            }
        }
        self.recorded.notify_one();
    }

    /// The events kept at `now` (expired ones dropped), oldest seen first.
    pub fn events(&self, now: Timestamp) -> Vec<Value> {
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        expire(&mut ring, self.ttl, now);
        objects(&ring, &self.host)
    }
}

/// Drops the events not seen for `ttl`; whether any were.
fn expire(ring: &mut Ring, ttl: Duration, now: Timestamp) -> bool {
    let ttl = jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::MAX);
    let before = ring.kept.len();
    ring.kept.retain(|k| now.duration_since(k.last) < ttl);
    ring.kept.len() != before
}

fn objects(ring: &Ring, host: &str) -> Vec<Value> {
    ring.kept.iter().map(|k| k.to_json(host)).collect()
}

/// The Deployment controller's Event for scaling one of its ReplicaSets.
pub fn scaling_replica_set(
    recorder: Option<&Recorder>,
    deployment: &ObjectMeta,
    replica_set: &str,
    from: i32,
    to: i32,
) {
    let Some(recorder) = recorder.filter(|_| from != to) else {
        return;
    };
    let way = if to > from { "up" } else { "down" };
    recorder.normal(
        Involved::apps(
            "Deployment",
            ns(deployment),
            name(deployment),
            uid(deployment),
        ),
        source::DEPLOYMENT,
        "ScalingReplicaSet",
        format!("Scaled {way} replica set {replica_set} from {from} to {to}"),
    );
}

/// The ReplicaSet controller's Event for a Pod it created (or deleted).
pub fn replica_set_pod(
    recorder: Option<&Recorder>,
    replica_set: &ObjectMeta,
    pod: &str,
    created: bool,
) {
    let Some(recorder) = recorder else {
        return;
    };
    let (reason, verb) = if created {
        ("SuccessfulCreate", "Created")
    } else {
        ("SuccessfulDelete", "Deleted")
    };
    recorder.normal(
        Involved::apps(
            "ReplicaSet",
            ns(replica_set),
            name(replica_set),
            uid(replica_set),
        ),
        source::REPLICA_SET,
        reason,
        format!("{verb} pod: {pod}"),
    );
}

/// The ReplicaSet controller's Event for a Pod it could not create.
pub fn replica_set_failed_create(
    recorder: Option<&Recorder>,
    replica_set: &ObjectMeta,
    error: &str,
) {
    let Some(recorder) = recorder else {
        return;
    };
    recorder.warning(
        Involved::apps(
            "ReplicaSet",
            ns(replica_set),
            name(replica_set),
            uid(replica_set),
        ),
        source::REPLICA_SET,
        "FailedCreate",
        format!("Error creating: {error}"),
    );
}

fn ns(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn uid(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or_default()
}

#[cfg(test)]
mod tests;
