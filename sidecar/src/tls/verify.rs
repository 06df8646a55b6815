//! The mesh's certificate verifiers.
//!
//! - Outbound ([`ExpectIdentity`]): a server certificate is good when its chain ends at one of
//!   our roots (webpki, as rustls's own verifier checks it: validity period, `serverAuth`,
//!   signatures) and its URI SAN is the workload the destination answer names. The server name
//!   rustls passes is ignored: endpoints are reached by address, and an address proves nothing
//!   about a Pod.
//! - Inbound ([`SameTrustDomain`]): a client certificate is good when its chain ends at one of
//!   our roots (rustls's [`rustls::server::WebPkiClientVerifier`]) and its one `spiffe://` URI
//!   SAN is in our own trust domain: a CA shared with another mesh must not let that mesh's
//!   workloads in under names our policies might match.

use std::sync::Arc;

use ferry_model::mesh::WorkloadId;
use rustls::DistinguishedName;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::peer_identity;

/// Why a server that chains to our roots is still refused.
#[derive(Debug, thiserror::Error)]
pub enum IdentityMismatch {
    #[error("the server presents {found}, expected {expected}")]
    Other {
        expected: WorkloadId,
        found: WorkloadId,
    },
    #[error("the server's certificate names no workload ({0}), expected {1}")]
    Unreadable(String, WorkloadId),
    #[error("the client presents {found}, outside the trust domain {expected}")]
    TrustDomain { expected: String, found: WorkloadId },
    #[error("the client's certificate names no workload: {0}")]
    NoClientIdentity(String),
}

/// Verifies a server's chain against the trust bundle and its identity against `expected`.
#[derive(Debug)]
pub struct ExpectIdentity {
    roots: Arc<RootCertStore>,
    expected: WorkloadId,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ExpectIdentity {
    pub fn new(
        roots: Arc<RootCertStore>,
        expected: WorkloadId,
        provider: &CryptoProvider,
    ) -> ExpectIdentity {
        ExpectIdentity {
            roots,
            expected,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

fn refuse(why: IdentityMismatch) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(why))))
}

impl ServerCertVerifier for ExpectIdentity {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        match peer_identity(std::slice::from_ref(end_entity)) {
            Ok(found) if found == self.expected => Ok(ServerCertVerified::assertion()),
            Ok(found) => Err(refuse(IdentityMismatch::Other {
                expected: self.expected.clone(),
                found,
            })),
            Err(e) => Err(refuse(IdentityMismatch::Unreadable(
                e.to_string(),
                self.expected.clone(),
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The inbound verifier: `inner` (the chain, against our roots), then the client's identity
/// must be in `trust_domain`.
#[derive(Debug)]
pub struct SameTrustDomain {
    inner: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
}

impl SameTrustDomain {
    pub fn new(inner: Arc<dyn ClientCertVerifier>, trust_domain: &str) -> SameTrustDomain {
        SameTrustDomain {
            inner,
            trust_domain: trust_domain.to_owned(),
        }
    }
}

impl ClientCertVerifier for SameTrustDomain {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        match peer_identity(std::slice::from_ref(end_entity)) {
            Ok(found) if found.trust_domain == self.trust_domain => Ok(verified),
            Ok(found) => Err(refuse(IdentityMismatch::TrustDomain {
                expected: self.trust_domain.clone(),
                found,
            })),
            Err(e) => Err(refuse(IdentityMismatch::NoClientIdentity(e.to_string()))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
