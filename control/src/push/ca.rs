//! The control channel's credentials: the join token parts present (`join-token` in the state
//! directory, mode 0600, made on first start, `--token-file`), and the serving certificate,
//! issued from the mesh CA ([`crate::identity`]) at every start and again whenever the CA is
//! rotated, for the names and addresses parts may dial. Parts trust `ca.crt`, the mesh CA's
//! trust bundle (`--control-ca`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::identity::Hierarchy;
use crate::identity::files;

pub const CA_CERT: &str = files::BUNDLE;
pub const JOIN_TOKEN: &str = "join-token";

/// A state-directory problem: which file, and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("--state-dir: {}: {message}", path.display())]
pub struct StateError {
    pub path: PathBuf,
    pub message: String,
}

fn fail(path: &Path, message: impl ToString) -> StateError {
    StateError {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    ferry_runtime::tls::provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|e| format!("no secure randomness: {e:?}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Reads the join token from `dir`, making it (and `dir`) on first start.
pub fn join_token(dir: &Path) -> Result<String, StateError> {
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    let path = dir.join(JOIN_TOKEN);
    if path.exists() {
        let token = std::fs::read_to_string(&path).map_err(|e| fail(&path, e))?;
        let token = token.trim().to_owned();
        if token.is_empty() {
            return Err(fail(&path, "empty"));
        }
        Ok(token)
    } else {
        let token = new_token().map_err(|e| fail(&path, e))?;
        files::replace(&path, &format!("{token}\n"), true).map_err(|e| fail(&path, e))?;
        Ok(token)
    }
}

/// The serving certificate, replaced whole when the CA rotates (a handshake takes the one
/// current when it starts).
#[derive(Debug)]
pub struct ServingCertificate {
    names: Vec<String>,
    addresses: Vec<IpAddr>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServingCertificate {
    /// Issues the first certificate for these names and addresses.
    pub fn issue(
        hierarchy: &Hierarchy,
        names: Vec<String>,
        addresses: Vec<IpAddr>,
    ) -> Result<ServingCertificate, String> {
        let key = certified(hierarchy, &names, &addresses)?;
        Ok(ServingCertificate {
            names,
            addresses,
            current: RwLock::new(key),
        })
    }

    /// Issues anew from a rotated CA.
    pub fn reissue(&self, hierarchy: &Hierarchy) -> Result<(), String> {
        let key = certified(hierarchy, &self.names, &self.addresses)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
        Ok(())
    }
}

fn certified(
    hierarchy: &Hierarchy,
    names: &[String],
    addresses: &[IpAddr],
) -> Result<Arc<CertifiedKey>, String> {
    let (chain, key) = hierarchy
        .issue_server(names, addresses)
        .map_err(|e| e.to_string())?;
    ferry_runtime::tls::certified_key(chain.as_bytes(), key.as_bytes())
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

impl ResolvesServerCert for ServingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The names and addresses the serving certificate holds: loopback, the listen address, the
/// host's name.
pub fn server_names(listen: SocketAddr) -> (Vec<String>, Vec<IpAddr>) {
    let mut names = vec!["localhost".to_owned()];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            names.push(host.to_owned());
        }
    }
    let mut addresses: Vec<IpAddr> = vec![
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ];
    if !listen.ip().is_unspecified() && !addresses.contains(&listen.ip()) {
        addresses.push(listen.ip());
    }
    (names, addresses)
}

pub fn server_config(serving: Arc<ServingCertificate>) -> Result<rustls::ServerConfig, String> {
    let mut config =
        rustls::ServerConfig::builder_with_provider(ferry_runtime::tls::provider().clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(serving);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = join_token(dir.path()).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(join_token(dir.path()).unwrap(), first);
        let mode = std::fs::metadata(dir.path().join(JOIN_TOKEN))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let other = tempfile::tempdir().unwrap();
        assert_ne!(join_token(other.path()).unwrap(), first);
        std::fs::write(dir.path().join(JOIN_TOKEN), "\n").unwrap();
        let e = join_token(dir.path()).unwrap_err();
        assert!(e.to_string().contains(JOIN_TOKEN), "{e}");
    }
}
