//! A sidecar's certificate signing request, checked: PKCS#10 DER whose signature verifies
//! under its own public key (so the caller holds the private key), with a key the mesh
//! issues for. Nothing else the request asks for is taken: the certificate's names and
//! extensions are the control plane's ([`super::authority::Hierarchy::issue_workload`]).

use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PublicKeyData};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

/// The public key of a CSR whose signature verifies; `Err` says what is wrong, naming the
/// field (`CertifyRequest.csr`).
pub fn public_key(der: &[u8]) -> Result<rcgen::SubjectPublicKeyInfo, String> {
    if der.is_empty() {
        return Err("CertifyRequest.csr is empty".to_owned());
    }
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| format!("CertifyRequest.csr is not a PKCS#10 request (DER): {e}"))?;
    if !rest.is_empty() {
        return Err(format!(
            "CertifyRequest.csr has {} bytes after the request",
            rest.len()
        ));
    }
    csr.verify_signature().map_err(|e| {
        format!("CertifyRequest.csr: the signature does not verify under its public key: {e}")
    })?;
    let spki = csr.certification_request_info.subject_pki.raw;
    let key = rcgen::SubjectPublicKeyInfo::from_der(spki).map_err(|e| {
        format!("CertifyRequest.csr: unsupported public key (use ECDSA P-256): {e}")
    })?;
    let supported = [
        &PKCS_ECDSA_P256_SHA256,
        &PKCS_ECDSA_P384_SHA384,
        &PKCS_ED25519,
    ];
    if !supported.contains(&key.algorithm()) {
        return Err(format!(
            "CertifyRequest.csr: a {:?} key; the mesh issues for ECDSA P-256, P-384 or Ed25519",
            key.algorithm()
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn csr(key: &KeyPair, params: &CertificateParams) -> Vec<u8> {
        params.serialize_request(key).unwrap().der().to_vec()
    }

    #[test]
    fn a_signed_csr_gives_its_key() {
        let key = KeyPair::generate().unwrap();
        let der = csr(&key, &CertificateParams::default());
        let public = public_key(&der).unwrap();
        assert_eq!(public.der_bytes(), key.public_key_raw());
    }

    #[test]
    fn what_the_csr_asks_for_besides_its_key_does_not_matter() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["admin.example.com".to_owned()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        assert!(public_key(&csr(&key, &params)).is_ok());
    }

    #[test]
    fn a_csr_signed_by_another_key_is_refused() {
        let key = KeyPair::generate().unwrap();
        let mut der = csr(&key, &CertificateParams::default());
        // Flip a bit of the signature (the DER's last bytes).
        let last = der.len() - 1;
        der[last] ^= 1;
        let e = public_key(&der).unwrap_err();
        assert!(e.contains("CertifyRequest.csr"), "{e}");
        assert!(e.contains("signature") || e.contains("PKCS#10"), "{e}");
    }

    #[test]
    fn junk_is_refused_naming_the_field() {
        for junk in [&b""[..], b"not a csr", &[0x30, 0x03, 0x02, 0x01, 0x00]] {
            let e = public_key(junk).unwrap_err();
            assert!(e.starts_with("CertifyRequest.csr"), "{e}");
        }
    }
}
