//! TLS pieces every part's clients share.
//!
//! [`AnyServerCertificate`] is the verifier of clients that must talk TLS to a server whose
//! certificate they cannot check: the gateway to HTTPS upstreams (ingress-nginx's
//! `proxy-ssl-verify` is off by default), the kubelet's HTTPS probes (a probe asks "are you
//! up", not "are you who you say"), and `ferry load --insecure`.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

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
