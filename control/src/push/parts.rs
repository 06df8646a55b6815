//! The parts subscribed to this control plane: what `/status` shows and `ferry get proxies`
//! prints. A part is listed from its `Hello` until its stream ends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ferry_model::proto::{Role, subscribe_request::Message};
use ferry_runtime::StatusBoard;
use ferry_runtime::status::{ProxyNack, ProxyStatus, now_ms};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The role as `/status` writes it.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Gateway => "gateway",
        Role::Dns => "dns",
        Role::Sidecar => "sidecar",
        Role::Unspecified => "unspecified",
    }
}

/// Whether a push carried the whole view or a delta, as the metrics label it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the label values, as Prometheus conventions spell them
pub enum PushKind {
    full,
    delta,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: PushKind,
}

#[derive(Clone, Debug, Default)]
struct Metrics {
    connected: Gauge,
    pushes: Family<KindLabels, Counter>,
    bytes: Family<KindLabels, Counter>,
    nacks: Counter,
    queue_full: Counter,
    coalesced: Counter,
}

/// Shared by every stream; cheap to clone.
#[derive(Clone, Debug)]
pub struct Parts {
    parts: Arc<Mutex<BTreeMap<u64, ProxyStatus>>>,
    next: Arc<AtomicU64>,
    status: StatusBoard,
    metrics: Metrics,
}

impl Parts {
    pub fn new(status: StatusBoard, registry: &mut Registry) -> Parts {
        let metrics = Metrics::default();
        registry.register(
            "ferry_control_subscribers",
            "Parts subscribed to the control plane now",
            metrics.connected.clone(),
        );
        registry.register(
            "ferry_control_pushes",
            "Pushes to subscribed parts, by kind (full: the whole view; delta: what changed)",
            metrics.pushes.clone(),
        );
        registry.register(
            "ferry_control_push_bytes",
            "Bytes of the pushes to subscribed parts (encoded messages), by kind",
            metrics.bytes.clone(),
        );
        registry.register(
            "ferry_control_push_queue_full",
            "Times a part's queue of pushes was full: it is sent the newest whole view next",
            metrics.queue_full.clone(),
        );
        registry.register(
            "ferry_control_push_coalesced",
            "Versions a part that was behind was not sent one by one (the whole view of a newer one instead)",
            metrics.coalesced.clone(),
        );
        registry.register(
            "ferry_control_nacks",
            "Pushed snapshots that a part refused",
            metrics.nacks.clone(),
        );
        Parts {
            parts: Arc::default(),
            next: Arc::new(AtomicU64::new(1)),
            status,
            metrics,
        }
    }

    fn update(&self, f: impl FnOnce(&mut BTreeMap<u64, ProxyStatus>)) {
        let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut parts);
        let mut list: Vec<ProxyStatus> = parts.values().cloned().collect();
        list.sort_by(|a, b| (&a.role, &a.name, &a.address).cmp(&(&b.role, &b.name, &b.address)));
        self.metrics
            .connected
            .set(i64::try_from(list.len()).unwrap_or(i64::MAX));
        self.status.set_proxies(list);
    }

    /// A part said hello; the id names its stream.
    pub fn connect(&self, role: Role, name: String, node: String, address: String) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.update(|parts| {
            parts.insert(
                id,
                ProxyStatus {
                    role: role_name(role).to_owned(),
                    name,
                    node,
                    address,
                    version: 0,
                    sent_version: 0,
                    connected_at_unix_ms: now_ms(),
                    last_ack_unix_ms: None,
                    last_nack: None,
                },
            );
        });
        id
    }

    /// A push was queued for the part.
    pub fn sent(&self, id: u64, version: u64, kind: PushKind, bytes: usize) {
        let kind = KindLabels { kind };
        self.metrics.pushes.get_or_create(&kind).inc();
        self.metrics
            .bytes
            .get_or_create(&kind)
            .inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
        self.update(|parts| {
            if let Some(p) = parts.get_mut(&id) {
                p.sent_version = version;
            }
        });
    }

    /// The part's queue of pushes was full.
    pub fn queue_full(&self, id: u64) {
        self.metrics.queue_full.inc();
        tracing::debug!(
            id,
            "push: a part's queue is full; it will be sent the newest whole view"
        );
    }

    /// `versions` were not sent one by one to a part that was behind.
    pub fn coalesced(&self, versions: u64) {
        self.metrics.coalesced.inc_by(versions);
    }

    /// The pushes of one kind queued so far.
    pub fn pushes(&self, kind: PushKind) -> u64 {
        self.metrics
            .pushes
            .get_or_create(&KindLabels { kind })
            .get()
    }

    /// Times a part's queue was full, and the versions not sent one by one.
    pub fn queue_full_and_coalesced(&self) -> (u64, u64) {
        (self.metrics.queue_full.get(), self.metrics.coalesced.get())
    }

    /// The part's answer to a push.
    pub fn answer(&self, id: u64, message: Message) {
        if matches!(message, Message::Nack(_)) {
            self.metrics.nacks.inc();
        }
        self.update(|parts| {
            let Some(p) = parts.get_mut(&id) else { return };
            match message {
                Message::Ack(ack) => {
                    p.version = ack.version;
                    p.last_ack_unix_ms = Some(now_ms());
                }
                Message::Nack(nack) => {
                    p.last_nack = Some(ProxyNack {
                        version: nack.version,
                        reason: nack.reason,
                        at_unix_ms: now_ms(),
                    });
                }
                Message::Hello(_) => {}
            }
        });
    }

    pub fn disconnect(&self, id: u64) {
        self.update(|parts| {
            parts.remove(&id);
        });
    }
}
