//! The TLS client of HTTPS probes. Like the kubelet's, it does not verify the container's
//! certificate (a probe asks "are you up", not "are you who you say"); it still checks the
//! handshake signature so a broken server fails the probe.

use std::sync::Arc;

use ferry_runtime::tls::AnyServerCertificate;
use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::ServerName;

/// A client configuration for HTTPS probes. It names its crypto provider itself, so it does
/// not depend on a process-wide default being installed.
pub(crate) fn client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = AnyServerCertificate::new(&provider);
    let config = ClientConfig::builder_with_provider(provider as Arc<CryptoProvider>)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name the probe's TLS client sends: the host's IP address, or its DNS name.
pub(crate) fn server_name(host: &str) -> ServerName<'static> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ServerName::IpAddress(ip.into());
    }
    ServerName::try_from(host.to_owned())
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into()))
}
