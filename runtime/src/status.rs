//! The status board: what admin `/status` shows about configuration changes.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_model::Problem;
use serde::Serialize;

/// Whether the newest configuration on disk is the one being served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigState {
    /// Nothing read yet.
    #[default]
    Pending,
    /// The newest change was accepted.
    Ok,
    /// The newest change was rejected; an older snapshot keeps serving.
    Rejected,
}

/// A rejected change: when, and every problem that made it so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub at_unix_ms: u64,
    pub problems: Vec<Problem>,
}

/// The state `/status` serves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    pub state: ConfigState,
    /// The version of the newest accepted snapshot.
    pub version: u64,
    /// Warnings of the configuration being served.
    pub warnings: Vec<Problem>,
    /// The last rejected change, kept after later good ones.
    pub last_rejected: Option<Rejection>,
    /// The parts subscribed to this control plane over the network (`ferry control`), by
    /// role and name; absent where none can subscribe.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub proxies: Vec<ProxyStatus>,
}

/// One part subscribed to `ferry control`: what `ferry get proxies` lists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ProxyStatus {
    /// `gateway` or `dns`.
    pub role: String,
    pub name: String,
    pub node: String,
    /// The part's address as the control plane sees it.
    pub address: String,
    /// The control plane's version the part last acknowledged; 0: none yet.
    pub version: u64,
    /// The version last pushed to it.
    pub sent_version: u64,
    pub connected_at_unix_ms: u64,
    pub last_ack_unix_ms: Option<u64>,
    /// The last refused push, kept after later acknowledged ones.
    pub last_nack: Option<ProxyNack>,
}

/// A push a part refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ProxyNack {
    pub version: u64,
    pub reason: String,
    pub at_unix_ms: u64,
}

/// Shared, cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct StatusBoard(Arc<Mutex<Status>>);

/// Milliseconds since the Unix epoch, as `/status` shows times.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl StatusBoard {
    fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    pub fn accepted(&self, version: u64, warnings: Vec<Problem>) {
        self.update(|s| {
            s.state = ConfigState::Ok;
            s.version = version;
            s.warnings = warnings;
        });
    }

    /// A newer snapshot of the same configuration is served (the local runtime's Pods
    /// changed): the state of the newest configuration change stays as it is.
    pub fn refreshed(&self, version: u64, warnings: Vec<Problem>) {
        self.update(|s| {
            if s.state == ConfigState::Pending {
                s.state = ConfigState::Ok;
            }
            s.version = version;
            s.warnings = warnings;
        });
    }

    pub fn rejected(&self, problems: Vec<Problem>) {
        self.update(|s| {
            s.state = ConfigState::Rejected;
            s.last_rejected = Some(Rejection {
                at_unix_ms: now_ms(),
                problems,
            });
        });
    }

    /// The parts subscribed now.
    pub fn set_proxies(&self, proxies: Vec<ProxyStatus>) {
        self.update(|s| s.proxies = proxies);
    }

    pub fn status(&self) -> Status {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
