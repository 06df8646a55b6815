//! The snapshot bus: the control plane publishes each accepted [`Snapshot`]; every data-plane
//! part subscribes, compiles its own index, swaps it in and reports the version it serves.
//! Readiness is "every part serves the newest accepted snapshot".

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ferry_model::Snapshot;
use serde::Serialize;
use tokio::sync::watch;

#[derive(Debug)]
struct PartState {
    name: &'static str,
    served: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    tx: watch::Sender<Arc<Snapshot>>,
    parts: Mutex<Vec<Arc<PartState>>>,
}

/// Publishes snapshots to subscribers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SnapshotBus(Arc<Inner>);

/// What one part serves, for `/ready` and `/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartVersion {
    pub part: &'static str,
    pub version: u64,
}

impl Default for SnapshotBus {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotBus {
    /// A bus holding the empty snapshot, version 0: nothing accepted yet.
    pub fn new() -> Self {
        let (tx, _) = watch::channel(Arc::new(Snapshot::default()));
        Self(Arc::new(Inner {
            tx,
            parts: Mutex::new(Vec::new()),
        }))
    }

    /// Publishes a snapshot. Versions only grow: an older or equal one is ignored.
    pub fn publish(&self, snapshot: Snapshot) -> bool {
        let snapshot = Arc::new(snapshot);
        self.0.tx.send_if_modified(|current| {
            if snapshot.version > current.version {
                *current = snapshot;
                true
            } else {
                false
            }
        })
    }

    /// The newest accepted snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.0.tx.borrow().clone()
    }

    /// Registers a part that must serve the newest snapshot before the process is ready.
    pub fn subscribe(&self, part: &'static str) -> Subscription {
        let state = Arc::new(PartState {
            name: part,
            served: AtomicU64::new(0),
        });
        self.0
            .parts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(state.clone());
        Subscription {
            rx: self.0.tx.subscribe(),
            state,
        }
    }

    /// Registers a part that reads its snapshots from `source` (a bus of its own, fed from this
    /// one through a stream of pushes, as `ferry up`'s in-process parts are) and must serve
    /// this bus's newest version before the process is ready. `source` numbers its snapshots
    /// as this bus does.
    pub fn subscribe_from(&self, part: &'static str, source: &SnapshotBus) -> Subscription {
        let state = Arc::new(PartState {
            name: part,
            served: AtomicU64::new(0),
        });
        self.0
            .parts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(state.clone());
        Subscription {
            rx: source.0.tx.subscribe(),
            state,
        }
    }

    /// Follows the newest snapshot without registering a part (readiness does not wait for
    /// it): what the control plane's push streams read.
    pub fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.0.tx.subscribe()
    }

    /// The version each part serves.
    pub fn parts(&self) -> Vec<PartVersion> {
        let parts = self.0.parts.lock().unwrap_or_else(PoisonError::into_inner);
        parts
            .iter()
            .map(|p| PartVersion {
                part: p.name,
                version: p.served.load(Ordering::Acquire),
            })
            .collect()
    }

    /// A snapshot has been accepted and every part serves the newest one.
    pub fn ready(&self) -> bool {
        let newest = self.current().version;
        newest > 0 && self.parts().iter().all(|p| p.version == newest)
    }
}

/// Reads a snapshot file (the JSON admin `/config?private_keys=true` serves) for a data-plane
/// part run on its own (`--snapshot FILE`), and checks it as the control plane would.
pub fn load_snapshot(path: &std::path::Path) -> Result<Snapshot, crate::Error> {
    let fail = |message: String| crate::Error::Snapshot {
        path: path.to_owned(),
        message,
    };
    // Parsed as it is read, never held whole: glibc raises its mmap and trim thresholds to the
    // size of the largest mapped block freed, so freeing a whole file's text (17 MB at 50,000
    // Services) would leave up to twice that of free heap resident for good (benches/dns/rss.sh).
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let reader = std::io::BufReader::with_capacity(64 * 1024, file);
    let snapshot: Snapshot = serde_json::from_reader(reader).map_err(|e| fail(e.to_string()))?;
    snapshot.validate().map_err(|e| fail(e.to_string()))?;
    // A file holds one accepted snapshot: version 0 would mean "nothing accepted".
    Ok(Snapshot {
        version: snapshot.version.max(1),
        ..snapshot
    })
}

/// One part's view of the bus.
#[derive(Debug)]
pub struct Subscription {
    rx: watch::Receiver<Arc<Snapshot>>,
    state: Arc<PartState>,
}

impl Subscription {
    /// The newest snapshot, marking it seen.
    pub fn current(&mut self) -> Arc<Snapshot> {
        self.rx.borrow_and_update().clone()
    }

    /// Waits for a newer snapshot; `None` once the bus is gone.
    pub async fn changed(&mut self) -> Option<Arc<Snapshot>> {
        self.rx.changed().await.ok()?;
        Some(self.current())
    }

    /// Reports that the part now serves `version`.
    pub fn served(&self, version: u64) {
        self.state.served.store(version, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(version: u64) -> Snapshot {
        Snapshot {
            version,
            ..Snapshot::default()
        }
    }

    #[tokio::test]
    async fn ready_once_every_part_serves_the_newest() {
        let bus = SnapshotBus::new();
        assert!(!bus.ready(), "nothing accepted yet");
        let mut gateway = bus.subscribe("gateway");
        assert!(bus.publish(snapshot(1)));
        assert!(!bus.ready());
        let s = gateway.changed().await.unwrap();
        gateway.served(s.version);
        assert!(bus.ready());
        assert!(bus.publish(snapshot(2)));
        assert!(!bus.ready());
        assert!(!bus.publish(snapshot(2)), "versions only grow");
        assert_eq!(gateway.changed().await.unwrap().version, 2);
    }

    #[tokio::test]
    async fn a_part_fed_from_another_bus_counts_toward_this_ones_readiness() {
        let (control, own) = (SnapshotBus::new(), SnapshotBus::new());
        let mut part = control.subscribe_from("gateway", &own);
        assert!(control.publish(snapshot(1)));
        assert!(!control.ready());
        assert!(own.publish(snapshot(1)));
        let s = part.changed().await.unwrap();
        part.served(s.version);
        assert!(control.ready());
        assert!(
            own.parts().is_empty(),
            "the part counts on the control bus only"
        );
    }

    #[test]
    fn snapshot_files_are_read_and_checked() {
        let dir = std::env::temp_dir().join(format!("ferry-bus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(&good, serde_json::to_vec(&snapshot(0)).unwrap()).unwrap();
        assert_eq!(
            load_snapshot(&good).unwrap().version,
            1,
            "a file is an accepted snapshot"
        );
        let bad = dir.join("bad.json");
        std::fs::write(&bad, b"{\"version\": \"x\"}").unwrap();
        let err = load_snapshot(&bad).unwrap_err().to_string();
        assert!(
            err.starts_with("--snapshot ") && err.contains("bad.json"),
            "{err}"
        );
        let missing = load_snapshot(&dir.join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("missing.json"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
