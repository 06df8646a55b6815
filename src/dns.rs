//! `ferry dns`: cluster DNS alone, serving a snapshot file or what `ferry control` pushes, with
//! its admin server; and the DNS settings `ferry up` shares with it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ferry_dns::zone::ZoneIndex;
use ferry_dns::{Config, Dns};
use ferry_runtime::Shutdown;
use ferry_runtime::subscribe::Check;

use crate::alone::{Alone, SnapshotSource, SourceError};

/// Where the host's resolver settings are, for default upstreams and search domains.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Parses `--dns-upstream`: `IP` (port 53) or `IP:PORT`.
pub fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    s.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("{s:?} is not an IP address or IP:PORT"))
}

/// The upstreams (those given, else resolv.conf's nameservers) and the host's search domains.
pub fn host_resolver(given: Vec<SocketAddr>) -> (Vec<SocketAddr>, Vec<String>) {
    let conf = std::fs::read_to_string(RESOLV_CONF)
        .map(|text| ferry_dns::resolv::parse(&text))
        .unwrap_or_default();
    let upstreams = if given.is_empty() {
        conf.nameservers
    } else {
        given
    };
    (upstreams, conf.search)
}

/// Everything `ferry dns` takes.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    pub source: SnapshotSource,
    pub dns: Config,
    pub admin: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Runtime(#[from] ferry_runtime::Error),
    #[error(transparent)]
    Dns(#[from] ferry_dns::Error),
}

/// What cluster DNS cannot serve, so it refuses a pushed snapshot (NACK): a zone that does
/// not compile.
pub fn check(config: &Config) -> Check {
    let (domain, ttl) = (config.cluster_domain.clone(), config.ttl);
    Arc::new(move |snapshot: &ferry_model::Snapshot| {
        ZoneIndex::compile(snapshot, &domain, ttl).map(drop)
    })
}

/// Serves the snapshot file's zone, or the control plane's, until shutdown.
pub async fn run(config: DnsConfig, shutdown: Shutdown) -> Result<(), Error> {
    let check = check(&config.dns);
    let (
        Alone {
            bus,
            subscription,
            mut registry,
        },
        subscriber,
    ) = Alone::start(&config.source, "dns", check)?;
    let dns = Dns::build(config.dns, subscription, &mut registry)?;
    tracing::info!(dns = %dns.local_addr(), "ferry dns is up");
    let admin = Alone::serve_admin(bus, registry, config.admin, shutdown.clone()).await?;
    let subscriber = subscriber.map(|s| tokio::spawn(s.run(shutdown.clone())));
    dns.run(shutdown).await;
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
    fn upstreams_default_to_port_53() {
        assert_eq!(
            parse_upstream("10.0.0.2"),
            Ok("10.0.0.2:53".parse().unwrap())
        );
        assert_eq!(
            parse_upstream("[::1]:5300"),
            Ok("[::1]:5300".parse().unwrap())
        );
        assert!(
            parse_upstream("dns.example")
                .unwrap_err()
                .contains("dns.example")
        );
    }
}
