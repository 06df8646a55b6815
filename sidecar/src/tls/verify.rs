//! The outbound verifier: a server certificate is good when its chain ends at one of our roots
//! (webpki, as rustls's own verifier checks it: validity period, `serverAuth`, signatures) and
//! its URI SAN is the workload the destination answer names. The server name rustls passes is
//! ignored: endpoints are reached by address, and an address proves nothing about a Pod.

use std::sync::Arc;

use ferry_model::mesh::WorkloadId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::ParsedCertificate;
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
