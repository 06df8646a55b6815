//! The rustls client setup: which roots verify the server, which name goes in SNI, which
//! protocol ALPN offers.
//!
//! Roots: `--cacert FILE` if given, else the system bundle (`$SSL_CERT_FILE`, or the usual
//! Debian, Fedora and Alpine paths); `--insecure` skips verification but still checks the
//! handshake signatures, so a run measures real TLS work.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_runtime::tls::{any_server_client_config, provider};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::Error;
use crate::config::Protocol;

#[cfg(test)]
mod tests;

/// Where the system keeps its CA bundle, in the order we look.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// How to verify the server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub insecure: bool,
    pub cacert: Option<PathBuf>,
    /// Server name for SNI and verification; default: the URL's host.
    pub sni: Option<String>,
}

/// The client config for one run: ALPN offers exactly the protocol we will speak.
pub fn build(options: &TlsOptions, protocol: Protocol) -> Result<Arc<ClientConfig>, Error> {
    let setup = |e: rustls::Error| Error::Invalid(format!("TLS setup: {e}"));
    let mut config = if options.insecure {
        // `--insecure`: any certificate, any name; handshake signatures still checked.
        any_server_client_config().map_err(setup)?
    } else {
        ClientConfig::builder_with_provider(provider().clone())
            .with_safe_default_protocol_versions()
            .map_err(setup)?
            .with_root_certificates(roots(options.cacert.as_deref())?)
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![protocol.alpn().to_vec()];
    Ok(Arc::new(config))
}

/// The name the handshake presents: `--sni`, else the URL's host (an IP sends no SNI).
pub fn server_name(options: &TlsOptions, host: &str) -> Result<ServerName<'static>, Error> {
    let name = options.sni.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_string())
        .map_err(|_| Error::Invalid(format!("invalid TLS server name {name:?}")))
}

fn roots(cacert: Option<&Path>) -> Result<RootCertStore, Error> {
    let (path, explicit) = match cacert {
        Some(path) => (path.to_path_buf(), true),
        None => match system_bundle() {
            Some(path) => (path, false),
            None => {
                return Err(Error::Invalid(
                    "no CA certificates found on this system: pass --cacert FILE or --insecure"
                        .into(),
                ));
            }
        },
    };
    let read = |e: rustls_pki_types::pem::Error| Error::Invalid(format!("{}: {e}", path.display()));
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&path).map_err(read)? {
        let cert = cert.map_err(read)?;
        // A system bundle may hold a certificate webpki cannot parse; skip it there, but a
        // file the user named must be right.
        if let Err(e) = store.add(cert)
            && explicit
        {
            return Err(Error::Invalid(format!("{}: {e}", path.display())));
        }
    }
    if store.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no certificates found",
            path.display()
        )));
    }
    Ok(store)
}

fn system_bundle() -> Option<PathBuf> {
    std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}
