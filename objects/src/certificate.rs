//! Checks a TLS certificate chain and key as the gateway will load them: PEM that parses, a
//! key rustls can use, and a key that belongs to the leaf certificate.

use ferry_runtime::tls::{KeyPairError, certified_key};

/// `Ok` when `cert_pem` holds a chain (leaf first) and `key_pem` the leaf's private key.
pub fn check_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<(), String> {
    certified_key(cert_pem, key_pem).map_err(|e| match e {
        KeyPairError::CertificatePem(e) => format!("tls.crt is not valid PEM: {e}"),
        KeyPairError::NoCertificate => "tls.crt holds no PEM CERTIFICATE block".to_owned(),
        KeyPairError::KeyPem(e) => format!("tls.key is not a valid PEM private key: {e}"),
        KeyPairError::Mismatch => "tls.key does not match the certificate in tls.crt".to_owned(),
        KeyPairError::Unusable(other) => {
            format!("tls.crt and tls.key cannot be used together: {other}")
        }
    })?;
    Ok(())
}
