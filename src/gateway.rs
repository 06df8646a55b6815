//! `ferry gateway`: the ingress gateway alone, serving a snapshot file, with its admin server.

use std::net::SocketAddr;
use std::path::PathBuf;

use ferry_gateway::{Config, Gateway};
use ferry_runtime::Shutdown;

use crate::alone::Alone;

/// Everything `ferry gateway` takes.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub snapshot: PathBuf,
    pub gateway: Config,
    pub admin: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] ferry_runtime::Error),
    #[error(transparent)]
    Gateway(#[from] ferry_gateway::Error),
}

/// A client connection timeout on the command line (`--client-header-timeout`,
/// `--keepalive-timeout`): `60s`, `500ms`, `2m`, a bare number is seconds; never zero.
pub fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    let timeout = ferry_load::duration::parse(text)?;
    if timeout.is_zero() {
        return Err(format!("invalid timeout {text:?}: must be more than zero"));
    }
    Ok(timeout)
}

/// Serves the snapshot file's routes until shutdown, then drains.
pub async fn run(config: GatewayConfig, shutdown: Shutdown) -> Result<(), Error> {
    let Alone {
        bus,
        subscription,
        mut registry,
    } = Alone::load(&config.snapshot, "gateway")?;
    let gateway = Gateway::build(config.gateway, subscription, &mut registry).await?;
    tracing::info!(http = ?gateway.http_addr().ok(), https = ?gateway.https_addr().ok(), "ferry gateway is up");
    let admin = Alone::serve_admin(bus, registry, config.admin, shutdown.clone()).await?;
    gateway.run(shutdown).await;
    let _ = admin.await;
    Ok(())
}
