//! The TLS client of HTTPS probes. Like the kubelet's, it does not verify the container's
//! certificate (a probe asks "are you up", not "are you who you say"); it still checks the
//! handshake signature so a broken server fails the probe.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;

/// A client configuration for HTTPS probes: the runtime's client that accepts any server
/// certificate, with its one crypto provider (no process-wide default needed).
pub(crate) fn client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    ferry_runtime::tls::any_server_client_config().map(Arc::new)
}

/// The name the probe's TLS client sends: the host's IP address, or its DNS name.
pub(crate) fn server_name(host: &str) -> ServerName<'static> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ServerName::IpAddress(ip.into());
    }
    ServerName::try_from(host.to_owned())
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into()))
}
