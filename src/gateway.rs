//! `ferry gateway`: the ingress gateway alone, serving a snapshot file or what `ferry control`
//! pushes, with its admin server.

use std::net::SocketAddr;
use std::sync::Arc;

use ferry_gateway::{Config, Gateway};
use ferry_model::Snapshot;
use ferry_runtime::Shutdown;

use crate::alone::{Alone, SnapshotSource, SourceError};

/// Everything `ferry gateway` takes.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub source: SnapshotSource,
    pub gateway: Config,
    pub admin: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Runtime(#[from] ferry_runtime::Error),
    #[error(transparent)]
    Gateway(#[from] ferry_gateway::Error),
}

/// What the gateway cannot serve, so it refuses a pushed snapshot: a certificate whose chain
/// and key do not make a pair (the control plane checks them; a part checks what it takes).
pub fn check(snapshot: &Snapshot) -> Result<(), String> {
    for cert in &snapshot.certificates {
        ferry_runtime::tls::certified_key(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())
            .map_err(|e| format!("certificate {}/{}: {e}", cert.namespace, cert.secret))?;
    }
    Ok(())
}

/// Serves the snapshot file's routes, or the control plane's, until shutdown, then drains.
pub async fn run(config: GatewayConfig, shutdown: Shutdown) -> Result<(), Error> {
    let (
        Alone {
            bus,
            subscription,
            mut registry,
        },
        subscriber,
    ) = Alone::start(&config.source, "gateway", Arc::new(check))?;
    let gateway = Gateway::build(config.gateway, subscription, &mut registry).await?;
    tracing::info!(http = ?gateway.http_addr().ok(), https = ?gateway.https_addr().ok(), "ferry gateway is up");
    let admin = Alone::serve_admin(bus, registry, config.admin, shutdown.clone()).await?;
    let subscriber = subscriber.map(|s| tokio::spawn(s.run(shutdown.clone())));
    gateway.run(shutdown).await;
    if let Some(subscriber) = subscriber {
        let _ = subscriber.await;
    }
    let _ = admin.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_whose_key_does_not_match_is_refused_naming_its_secret() {
        let one = rcgen::generate_simple_self_signed(vec!["a.example".to_owned()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["a.example".to_owned()]).unwrap();
        let snapshot = |key: String| Snapshot {
            certificates: vec![std::sync::Arc::new(ferry_model::Certificate {
                namespace: "shop".into(),
                secret: "tls".into(),
                hosts: vec!["a.example".into()],
                cert_pem: one.cert.pem(),
                key_pem: key,
            })],
            ..Snapshot::default()
        };
        assert_eq!(check(&snapshot(one.signing_key.serialize_pem())), Ok(()));
        let err = check(&snapshot(other.signing_key.serialize_pem())).unwrap_err();
        assert!(err.starts_with("certificate shop/tls: "), "{err}");
    }
}
