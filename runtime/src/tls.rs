//! TLS pieces every part shares: the one crypto provider, PEM → key pair, and the client
//! config that accepts any server certificate.
//!
//! [`provider`] is ring's provider, built once for the process; every TLS client and server
//! in ferry names it, so none depends on a process-wide default being installed.
//! [`certified_key`] turns a PEM chain and key into what rustls serves (the gateway's SNI
//! index) and checks a Secret's pair (control's validation) with the same code.
//! [`AnyServerCertificate`] is the verifier of clients that must talk TLS to a server whose
//! certificate they cannot check: the gateway to HTTPS upstreams (ingress-nginx's
//! `proxy-ssl-verify` is off by default), the kubelet's HTTPS probes (a probe asks "are you
//! up", not "are you who you say"), and `ferry load --insecure`;
//! [`any_server_client_config`] is the one client config built on it.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

#[cfg(test)]
mod tests;

/// The crypto provider (ring) of every TLS client and server in ferry, built once.
pub fn provider() -> &'static Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Why a PEM certificate chain and key cannot be served together. Callers word it for their
/// users (control names the Secret's `tls.crt` and `tls.key`).
#[derive(Debug, thiserror::Error)]
pub enum KeyPairError {
    #[error("certificate PEM: {0}")]
    CertificatePem(pem::Error),
    #[error("certificate PEM holds no CERTIFICATE block")]
    NoCertificate,
    #[error("key PEM: {0}")]
    KeyPem(pem::Error),
    #[error("the key does not belong to the leaf certificate")]
    Mismatch,
    /// rustls cannot use the key (an unsupported algorithm) or the certificate.
    #[error("{0}")]
    Unusable(rustls::Error),
}

/// A chain (leaf first) and the leaf's private key, from PEM, checked as rustls will use
/// them: PEM that parses, a key the provider supports, and a key that matches the leaf.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, KeyPairError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(KeyPairError::CertificatePem)?;
    if chain.is_empty() {
        return Err(KeyPairError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(KeyPairError::KeyPem)?;
    CertifiedKey::from_der(chain, key, provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => KeyPairError::Mismatch,
        other => KeyPairError::Unusable(other),
    })
}

/// The client config that accepts any server certificate ([`AnyServerCertificate`]): TLS 1.3
/// and 1.2, no client certificate, no ALPN (a caller sets the protocols it will speak on its
/// copy). Built once; each call returns a copy.
pub fn any_server_client_config() -> Result<ClientConfig, rustls::Error> {
    static CONFIG: OnceLock<Result<ClientConfig, rustls::Error>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            Ok(ClientConfig::builder_with_provider(provider().clone())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCertificate::new(provider())))
                .with_no_client_auth())
        })
        .clone()
}

/// Accepts any server certificate for any name, but still checks that the handshake's
/// signatures are valid for the certificate presented, so a broken server fails.
#[derive(Debug)]
pub struct AnyServerCertificate(WebPkiSupportedAlgorithms);

impl AnyServerCertificate {
    /// Checks signatures with the provider's algorithms.
    pub fn new(provider: &CryptoProvider) -> AnyServerCertificate {
        AnyServerCertificate(provider.signature_verification_algorithms)
    }
}

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
