//! `ferry control`: the control plane alone, over manifest files (or a Kubernetes API server's
//! objects, `--source kubernetes`), pushing snapshots to
//! gateways and DNS servers that subscribe over gRPC+TLS (`ferry gateway|dns --control`), and
//! issuing sidecars their workload certificates on the same channel (the mesh CA), with
//! its admin server (`/status` lists the subscribed parts; `ferry get proxies` prints them).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ferry_control::Control;
use ferry_control::kubernetes::{self, KubernetesSource};
use ferry_control::push::{PushConfig, PushServer};
use ferry_objects::files::FileFeed;
use ferry_objects::source::Source;
use ferry_runtime::admin::{Admin, AdminState};
use ferry_runtime::{Shutdown, SnapshotBus, StatusBoard};
use prometheus_client::registry::Registry;

/// Everything `ferry control` takes.
#[derive(Clone, Debug)]
pub struct ControlConfig {
    /// The manifests read when `kubernetes` is `None`.
    pub paths: Vec<PathBuf>,
    /// `--source kubernetes`: the API server to read instead of `paths`.
    pub kubernetes: Option<crate::up::kubernetes::Source>,
    pub push: PushConfig,
    pub admin: SocketAddr,
    /// How long the files must be quiet before a change is read.
    pub debounce: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot watch the manifests: {0}")]
    Watch(#[from] notify::Error),
    #[error(transparent)]
    Control(#[from] ferry_control::Error),
    #[error(transparent)]
    Push(#[from] ferry_control::push::PushError),
    #[error(transparent)]
    Runtime(#[from] ferry_runtime::Error),
    #[error("--cluster-domain {0:?}: {1}")]
    ClusterDomain(String, String),
}

/// Serves the push and the admin API until shutdown.
pub async fn run(config: ControlConfig, shutdown: Shutdown) -> Result<(), Error> {
    let domain = &config.push.cluster_domain;
    ferry_model::name::dns1123_subdomain(domain)
        .map_err(|e| Error::ClusterDomain(domain.clone(), e))?;
    let mut registry = Registry::default();
    match config.kubernetes.clone() {
        Some(source) => {
            let connection = kubernetes::connect(source.kubeconfig.as_ref())
                .await
                .map_err(ferry_control::Error::from)?;
            // Sidecars in the cluster prove their Pod with its ServiceAccount token.
            let mut config = config;
            config.push.identity.reviewer = Some(std::sync::Arc::new(
                kubernetes::review::KubeReviewer::new(&connection),
            ));
            let settings = kubernetes::Config {
                debounce: config.debounce,
                // No gateway here to take its address from: only --publish-address is written.
                status_address: source.publish_address,
            };
            let feed = KubernetesSource::start(connection, &settings, &mut registry);
            serve(feed, config, registry, shutdown).await
        }
        None => {
            let feed = FileFeed::start(config.paths.clone(), config.debounce)?;
            serve(feed, config, registry, shutdown).await
        }
    }
}

async fn serve<S: Source>(
    feed: S,
    config: ControlConfig,
    mut registry: Registry,
    shutdown: Shutdown,
) -> Result<(), Error> {
    let bus = SnapshotBus::new();
    let status = StatusBoard::default();
    let control = Control::build(feed, bus.clone(), status.clone(), &mut registry).await?;
    let mut push_config = config.push;
    // Per-Pod tokens are good while their Pods are in the control plane's view.
    push_config.identity.pods = control.pods();
    let push = PushServer::build(push_config, bus.clone(), status.clone(), &mut registry).await?;
    let admin = Admin::build(
        config.admin,
        AdminState {
            bus,
            status,
            registry,
            api: None,
        },
    )
    .await?;
    let (push_addr, admin_addr) = (push.local_addr(), admin.local_addr());
    if let (Ok(push), Ok(admin)) = (push_addr, admin_addr) {
        tracing::info!(%push, %admin, "ferry control is up");
    }
    let admin = tokio::spawn(admin.run(shutdown.clone()));
    let push = tokio::spawn(push.run(shutdown.clone()));
    let result = control.run(shutdown).await;
    let _ = push.await;
    let _ = admin.await;
    Ok(result?)
}
