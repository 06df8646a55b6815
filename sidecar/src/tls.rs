//! Mutual TLS between sidecars, built from the workload's [`Credentials`].
//!
//! [`MeshTls`] follows the [`CredentialsWatch`]: each time the certificate is renewed or the
//! trust bundle rotates, the next connection gets configs built from the new credentials, and
//! connections already open keep the configs they were made with (nothing is closed).
//!
//! - The server side ([`MeshTls::server`]) requires a client certificate that chains to one of
//!   `Credentials.roots` (webpki, through rustls's [`WebPkiClientVerifier`]) and names a
//!   workload of our own trust domain ([`verify::SameTrustDomain`]: a peer of another trust
//!   domain is refused in the handshake); the peer's identity is then read from its URI SAN
//!   ([`peer_identity`]).
//! - The client side ([`MeshTls::client`]) verifies the server's chain the same way and that
//!   its URI SAN is the identity the destination answer expects ([`verify::ExpectIdentity`]):
//!   a DNS name means nothing between Pods.
//!
//! Both speak TLS 1.3 only and offer the ALPN [`mesh::ALPN`] alone: a handshake without it is
//! not mesh traffic. Leaves need both the `serverAuth` and `clientAuth` extended key usages,
//! since every sidecar is a server to some and a client to others.
//!
//! The URI SAN is read with x509-parser (already built for rcgen, and the workspace's reader of
//! certificates); the chain is checked by webpki through rustls's public helpers, so there is
//! one chain verifier in the process.

pub mod pem;
pub mod verify;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;
use ferry_model::mesh::{self, WorkloadId};
use ferry_runtime::identity::{Credentials, CredentialsWatch};
use ferry_runtime::tls::provider;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use verify::{ExpectIdentity, SameTrustDomain};

/// Why mesh TLS cannot be set up, or a peer's certificate names no workload.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no credentials yet: the workload certificate has not been issued")]
    NoCredentials,
    #[error("the trust bundle holds no usable root: {0}")]
    Roots(String),
    #[error("cannot build the TLS config: {0}")]
    Config(String),
    #[error("the peer presented no certificate")]
    NoPeerCertificate,
    #[error("the peer's certificate cannot be read: {0}")]
    Certificate(String),
    #[error("the peer's certificate carries no spiffe:// URI SAN naming a workload")]
    NoIdentity,
    #[error("the peer's certificate carries {0} spiffe:// URI SANs; exactly one is expected")]
    ManyIdentities(usize),
}

/// The configs built from one version of the credentials.
#[derive(Debug)]
struct Generation {
    credentials: Arc<Credentials>,
    server: Arc<ServerConfig>,
    roots: Arc<RootCertStore>,
    /// One client config per expected server identity: the verifier carries the identity, and
    /// each config keeps its own session-resumption cache.
    clients: Mutex<HashMap<WorkloadId, Arc<ClientConfig>>>,
}

/// The mesh's TLS configs, rebuilt when the credentials change.
#[derive(Debug)]
pub struct MeshTls {
    watch: CredentialsWatch,
    current: ArcSwapOption<Generation>,
}

impl MeshTls {
    pub fn new(watch: CredentialsWatch) -> MeshTls {
        MeshTls {
            watch,
            current: ArcSwapOption::empty(),
        }
    }

    /// The credentials held now, if any (readiness, and `x-forwarded-client-cert`'s `By`).
    pub fn credentials(&self) -> Option<Arc<Credentials>> {
        self.watch.borrow().clone()
    }

    /// The server config for the next inbound mesh connection.
    pub fn server(&self) -> Result<Arc<ServerConfig>, TlsError> {
        Ok(self.generation()?.server.clone())
    }

    /// The client config for the next connection to a sidecar that must present `expected`.
    pub fn client(&self, expected: &WorkloadId) -> Result<Arc<ClientConfig>, TlsError> {
        let generation = self.generation()?;
        let mut clients = generation
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(config) = clients.get(expected) {
            return Ok(config.clone());
        }
        let config = Arc::new(client_config(
            &generation.credentials,
            generation.roots.clone(),
            expected,
            provider(),
        )?);
        clients.insert(expected.clone(), config.clone());
        Ok(config)
    }

    /// The configs of the credentials held now, built once per version of them.
    fn generation(&self) -> Result<Arc<Generation>, TlsError> {
        let credentials = self.watch.borrow().clone().ok_or(TlsError::NoCredentials)?;
        if let Some(current) = self.current.load_full()
            && Arc::ptr_eq(&current.credentials, &credentials)
        {
            return Ok(current);
        }
        let roots = Arc::new(root_store(&credentials.roots)?);
        let server = Arc::new(server_config(&credentials, roots.clone(), provider())?);
        let generation = Arc::new(Generation {
            credentials,
            server,
            roots,
            clients: Mutex::new(HashMap::new()),
        });
        self.current.store(Some(generation.clone()));
        Ok(generation)
    }
}

fn root_store(roots: &[CertificateDer<'static>]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(roots.iter().cloned());
    if added == 0 {
        return Err(TlsError::Roots(format!(
            "{ignored} certificate(s), none parsable as a trust anchor"
        )));
    }
    Ok(store)
}

/// The inbound side: TLS 1.3, a client certificate required, chained to `roots` and naming a
/// workload of our trust domain, ALPN [`mesh::ALPN`].
pub fn server_config(
    credentials: &Credentials,
    roots: Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
) -> Result<ServerConfig, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let verifier = Arc::new(SameTrustDomain::new(verifier, &credentials.id.trust_domain));
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(credentials.key.clone())));
    config.alpn_protocols = vec![mesh::ALPN.to_vec()];
    Ok(config)
}

/// The outbound side towards a sidecar that must present `expected`: TLS 1.3, our certificate
/// as the client's, ALPN [`mesh::ALPN`], no SNI (the server name given to rustls is the
/// endpoint's address, which identifies nothing).
pub fn client_config(
    credentials: &Credentials,
    roots: Arc<RootCertStore>,
    expected: &WorkloadId,
    provider: &Arc<CryptoProvider>,
) -> Result<ClientConfig, TlsError> {
    let verifier = ExpectIdentity::new(roots, expected.clone(), provider);
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(credentials.key.clone())));
    config.alpn_protocols = vec![mesh::ALPN.to_vec()];
    config.enable_sni = false;
    Ok(config)
}

/// The workload a peer's certificate chain names: the one `spiffe://` URI SAN of its leaf.
pub fn peer_identity(chain: &[CertificateDer<'_>]) -> Result<WorkloadId, TlsError> {
    let leaf = chain.first().ok_or(TlsError::NoPeerCertificate)?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some(*uri),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => Err(TlsError::NoIdentity),
        [uri] => uri.parse().map_err(|_| TlsError::NoIdentity),
        many => Err(TlsError::ManyIdentities(many.len())),
    }
}
