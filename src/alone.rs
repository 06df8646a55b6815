//! A data-plane part run on its own (`ferry dns|gateway --snapshot FILE`): the snapshot file on
//! a bus of its own, and an admin server for /ready, /config and /metrics.

use std::net::SocketAddr;
use std::path::Path;

use ferry_runtime::admin::{Admin, AdminState};
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

impl Alone {
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
