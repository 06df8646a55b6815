//! The parts subscribed to this control plane: what `/status` shows and `ferry get proxies`
//! prints. A part is listed from its `Hello` until its stream ends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ferry_model::proto::{Role, subscribe_request::Message};
use ferry_runtime::StatusBoard;
use ferry_runtime::status::{ProxyNack, ProxyStatus, now_ms};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The role as `/status` writes it.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Gateway => "gateway",
        Role::Dns => "dns",
        Role::Unspecified => "unspecified",
    }
}

#[derive(Clone, Debug, Default)]
struct Metrics {
    connected: Gauge,
    pushes: Counter,
    nacks: Counter,
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
            "Snapshots pushed to subscribed parts",
            metrics.pushes.clone(),
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

    pub fn sent(&self, id: u64, version: u64) {
        self.metrics.pushes.inc();
        self.update(|parts| {
            if let Some(p) = parts.get_mut(&id) {
                p.sent_version = version;
            }
        });
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
