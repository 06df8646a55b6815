//! A data-plane part run on its own (`ferry dns|gateway --snapshot FILE` or `--control URL`):
//! the snapshot file, or what `ferry control` pushes, on a bus of its own, and an admin server
//! for /ready, /config and /metrics.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ferry_runtime::admin::{Admin, AdminState};
use ferry_runtime::subscribe::{self, Check, Subscriber};
use ferry_runtime::{Shutdown, SnapshotBus, StatusBoard, Subscription};
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

/// The snapshot, published, and what the part registers its metrics into.
#[derive(Debug)]
pub struct Alone {
    pub bus: SnapshotBus,
    pub subscription: Subscription,
    pub registry: Registry,
}

/// Where a part run on its own gets its snapshots.
#[derive(Clone, Debug)]
pub enum SnapshotSource {
    /// `--snapshot FILE`: one snapshot, read at start.
    File(PathBuf),
    /// `--control URL`: what the control plane pushes, for as long as the part runs.
    Control(subscribe::Config),
}

/// Why a part could not start on its source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Runtime(#[from] ferry_runtime::Error),
    #[error(transparent)]
    Subscribe(#[from] subscribe::Error),
}

impl Alone {
    /// The part's bus on its source: the file published, or an empty bus (not ready) with the
    /// subscription that fills it, to be run beside the part. `check` is the part's own
    /// compile step: a push it fails is refused (NACK) and the bus keeps what it had.
    pub fn start(
        source: &SnapshotSource,
        part: &'static str,
        check: Check,
    ) -> Result<(Alone, Option<Subscriber>), SourceError> {
        match source {
            SnapshotSource::File(path) => Ok((Alone::load(path, part)?, None)),
            SnapshotSource::Control(config) => {
                let bus = SnapshotBus::new();
                let subscription = bus.subscribe(part);
                let subscriber = Subscriber::build(config.clone(), bus.clone(), check)?;
                let mut registry = Registry::default();
                subscriber.register_metrics(&mut registry);
                Ok((
                    Alone {
                        bus,
                        subscription,
                        registry,
                    },
                    Some(subscriber),
                ))
            }
        }
    }

    /// Reads and checks the snapshot file and publishes it for `part`.
    pub fn load(snapshot: &Path, part: &'static str) -> Result<Alone, ferry_runtime::Error> {
        let snapshot = ferry_runtime::bus::load_snapshot(snapshot)?;
        let bus = SnapshotBus::new();
        let subscription = bus.subscribe(part);
        bus.publish(snapshot);
        Ok(Alone {
            bus,
            subscription,
            registry: Registry::default(),
        })
    }

    /// Starts the admin server with the part's metrics; it stops at shutdown.
    pub async fn serve_admin(
        bus: SnapshotBus,
        registry: Registry,
        addr: SocketAddr,
        shutdown: Shutdown,
    ) -> Result<JoinHandle<()>, ferry_runtime::Error> {
        let admin = Admin::build(
            addr,
            AdminState {
                bus,
                status: StatusBoard::default(),
                registry,
                api: None,
            },
        )
        .await?;
        tracing::info!(admin = ?admin.local_addr().ok(), "admin is up");
        Ok(tokio::spawn(admin.run(shutdown)))
    }
}
