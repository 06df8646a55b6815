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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_timeout;

    #[test]
    fn timeouts_read_as_nginx_writes_them_and_never_zero() {
        assert_eq!(parse_timeout("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_timeout("75"), Ok(Duration::from_secs(75)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        let zero = parse_timeout("0s").unwrap_err();
        assert!(zero.contains("more than zero"), "{zero}");
        let junk = parse_timeout("soon").unwrap_err();
        assert!(junk.contains("invalid duration"), "{junk}");
    }
}
