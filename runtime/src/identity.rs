//! A workload's credentials, as the sidecar holds them: its certificate chain and key, and the
//! roots it trusts. They are published through a `tokio::sync::watch` (Linkerd meshtls's
//! publisher/receiver pair), so TLS configs are rebuilt when the certificate is renewed or the
//! trust bundle rotates, without a restart and without closing a connection.

use std::sync::Arc;
use std::time::SystemTime;

use ferry_model::mesh::WorkloadId;
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;

/// What a workload proves itself with and whom it trusts.
#[derive(Debug)]
pub struct Credentials {
    /// The identity the certificate carries as its URI SAN.
    pub id: WorkloadId,
    /// Leaf first, then the intermediates; the key never left the process.
    pub key: Arc<CertifiedKey>,
    /// The trust bundle: every root a peer's chain may end at (two during a root rotation).
    pub roots: Vec<CertificateDer<'static>>,
    /// The leaf's `notAfter`.
    pub expires: SystemTime,
}

/// The receiving end: `None` until the first certificate is issued.
pub type CredentialsWatch = tokio::sync::watch::Receiver<Option<Arc<Credentials>>>;
