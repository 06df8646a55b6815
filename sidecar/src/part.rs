//! The sidecar as one part: inbound, outbound and the admin server (with the app's probes at
//! `/app-health/`, [`crate::probe`]), built together and run until shutdown. The binary (`ferry sidecar`) and the tests wire it the same way.
//!
//! Readiness is "holds credentials": a sidecar without a certificate can neither accept mesh
//! traffic nor reach meshed endpoints, so the kubelet must not start the app before. The admin
//! server's `/ready` reads the runtime's snapshot bus; the sidecar has no snapshot of its own,
//! so it publishes one empty version to a private bus when the first credentials arrive.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use ferry_model::Snapshot;
use ferry_model::mesh::app_probe::APP_HEALTH_PREFIX;
use ferry_runtime::admin::{Admin, AdminState};
use ferry_runtime::identity::CredentialsWatch;
use ferry_runtime::{Shutdown, SnapshotBus, StatusBoard, Subscription};
use prometheus_client::registry::Registry;

use crate::Error;
use crate::authorize::Authorize;
use crate::discover::Discover;
use crate::inbound::{Inbound, InboundConfig};
use crate::metrics::Metrics;
use crate::outbound::{Outbound, OutboundConfig};
use crate::probe::{AppHealth, AppHealthConfig};
use crate::tls::MeshTls;
use crate::upstream::Identities;

/// Where each listener binds, and how each side runs.
#[derive(Clone, Debug)]
pub struct Config {
    pub inbound: InboundConfig,
    pub outbound: OutboundConfig,
    pub admin: SocketAddr,
    /// The app's probes the admin server runs at `/app-health/` (from the inbound side's
    /// mark).
    pub app_health: AppHealthConfig,
}

/// What the sidecar is given: its credentials, where destinations come from, and the policy.
#[derive(Debug)]
pub struct Parts {
    pub credentials: CredentialsWatch,
    pub discover: Arc<dyn Discover>,
    /// The map `discover` fills with each endpoint's expected identity.
    pub identities: Arc<Identities>,
    pub authorize: Arc<dyn Authorize>,
    pub registry: Registry,
    /// Whether the sidecar registers `ferry_sidecar_certificate_expiry_timestamp_seconds`:
    /// false when the credentials' publisher already does (the runtime's `IdentityClient`),
    /// so the name is not exposed twice.
    pub report_expiry: bool,
}

/// The addresses the sidecar listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addrs {
    pub inbound: SocketAddr,
    pub outbound: SocketAddr,
    pub admin: SocketAddr,
}

/// A bound sidecar.
#[derive(Debug)]
pub struct Sidecar {
    inbound: Inbound,
    outbound: Outbound,
    admin: Admin,
    credentials: CredentialsWatch,
    metrics: Arc<Metrics>,
    ready: Readiness,
}

#[derive(Debug)]
struct Readiness {
    bus: SnapshotBus,
    part: Subscription,
}

impl Sidecar {
    pub async fn build(config: Config, parts: Parts) -> Result<Sidecar, Error> {
        let Parts {
            credentials,
            discover,
            identities,
            authorize,
            mut registry,
            report_expiry,
        } = parts;
        let metrics = Arc::new(Metrics::new(&mut registry, report_expiry));
        let app_health = AppHealth::new(config.app_health, config.inbound.mark, &mut registry);
        let tls = Arc::new(MeshTls::new(credentials.clone()));
        let inbound =
            Inbound::build(config.inbound, tls.clone(), authorize, metrics.clone()).await?;
        let outbound =
            Outbound::build(config.outbound, tls, discover, identities, metrics.clone()).await?;
        let bus = SnapshotBus::new();
        let part = bus.subscribe("credentials");
        let state = AdminState {
            bus: bus.clone(),
            status: StatusBoard::default(),
            registry,
            api: None,
        };
        let admin = Admin::build(config.admin, state)
            .await?
            .with_routes(APP_HEALTH_PREFIX, Arc::new(app_health));
        Ok(Sidecar {
            inbound,
            outbound,
            admin,
            credentials,
            metrics,
            ready: Readiness { bus, part },
        })
    }

    pub fn addrs(&self) -> std::io::Result<Addrs> {
        Ok(Addrs {
            inbound: self.inbound.local_addr()?,
            outbound: self.outbound.local_addr()?,
            admin: self.admin.local_addr()?,
        })
    }

    /// Serves until shutdown.
    pub async fn run(self, shutdown: Shutdown) {
        let follow =
            follow_credentials(self.credentials, self.metrics, self.ready, shutdown.clone());
        tokio::join!(
            self.inbound.run(shutdown.clone()),
            self.outbound.run(shutdown.clone()),
            self.admin.run(shutdown),
            follow,
        );
    }
}

/// Marks the sidecar ready once it holds credentials, and keeps the expiry metric current.
async fn follow_credentials(
    mut credentials: CredentialsWatch,
    metrics: Arc<Metrics>,
    ready: Readiness,
    mut shutdown: Shutdown,
) {
    loop {
        let held = credentials.borrow_and_update().clone();
        if let Some(held) = held {
            let expires = held
                .expires
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            metrics.certificate_expires(i64::try_from(expires).unwrap_or(i64::MAX));
            if ready.bus.publish(Snapshot {
                version: 1,
                ..Snapshot::default()
            }) {
                tracing::info!(identity = %held.id, "credentials held: ready");
            }
            ready.part.served(1);
        }
        tokio::select! {
            changed = credentials.changed() => if changed.is_err() { break },
            () = shutdown.wait() => break,
        }
    }
}
