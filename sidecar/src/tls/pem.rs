//! Credentials from PEM files: a workload certificate chain, its key and a trust bundle, as an
//! operator (or a test) hands them to `ferry sidecar` before the identity client issues them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_runtime::identity::Credentials;
use ferry_runtime::tls::{KeyPairError, certified_key};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::{TlsError, peer_identity};

/// Why PEM files make no credentials; the caller names the files.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("certificate and key: {0}")]
    KeyPair(#[from] KeyPairError),
    #[error("certificate: {0}")]
    Identity(TlsError),
    #[error("trust bundle: {0}")]
    Bundle(String),
}

/// The credentials the three PEM texts make: the identity is the leaf's URI SAN, the expiry
/// its `notAfter`.
pub fn credentials_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    bundle_pem: &[u8],
) -> Result<Credentials, PemError> {
    let key = certified_key(cert_pem, key_pem)?;
    let id = peer_identity(&key.cert).map_err(PemError::Identity)?;
    let (_, leaf) = x509_parser::parse_x509_certificate(&key.cert[0])
        .map_err(|e| PemError::Identity(TlsError::Certificate(e.to_string())))?;
    let not_after = leaf.validity().not_after.timestamp();
    let expires = UNIX_EPOCH + Duration::from_secs(u64::try_from(not_after).unwrap_or(0));
    let roots = CertificateDer::pem_slice_iter(bundle_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Bundle(e.to_string()))?;
    if roots.is_empty() {
        return Err(PemError::Bundle("no CERTIFICATE block".to_owned()));
    }
    if expires <= SystemTime::now() {
        tracing::warn!(identity = %id, "the workload certificate has expired");
    }
    Ok(Credentials {
        id,
        key: Arc::new(key),
        roots,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pki::{Ca, id};

    #[test]
    fn a_pem_trio_reads_back_as_the_credentials_it_was_made_from() {
        let ca = Ca::new();
        let (cert, key) = ca.issue_pem(&id("shop", "api"));
        let bundle = ca.root_pem();
        let creds =
            credentials_from_pem(cert.as_bytes(), key.as_bytes(), bundle.as_bytes()).unwrap();
        assert_eq!(creds.id, id("shop", "api"));
        assert_eq!(creds.roots.len(), 1);
        assert!(creds.expires > SystemTime::now());
        assert!(matches!(
            credentials_from_pem(cert.as_bytes(), key.as_bytes(), b""),
            Err(PemError::Bundle(_))
        ));
        let plain = rcgen::generate_simple_self_signed(vec!["a".to_owned()]).unwrap();
        assert!(matches!(
            credentials_from_pem(
                plain.cert.pem().as_bytes(),
                plain.signing_key.serialize_pem().as_bytes(),
                bundle.as_bytes()
            ),
            Err(PemError::Identity(TlsError::NoIdentity))
        ));
    }
}
