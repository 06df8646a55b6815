use std::sync::Arc;

use super::*;

fn pair(name: &str) -> (String, String) {
    let g = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    (g.cert.pem(), g.signing_key.serialize_pem())
}

#[test]
fn the_provider_is_built_once() {
    assert!(Arc::ptr_eq(provider(), provider()));
}

#[test]
fn the_any_certificate_client_uses_the_one_provider() {
    let config = any_server_client_config().unwrap();
    assert!(Arc::ptr_eq(config.crypto_provider(), provider()));
    assert!(config.alpn_protocols.is_empty());
}

#[test]
fn a_matching_pair_loads() {
    let (cert, key) = pair("shop.example");
    let loaded = certified_key(cert.as_bytes(), key.as_bytes()).unwrap();
    assert_eq!(loaded.cert.len(), 1);
}

#[test]
fn each_broken_pair_says_which_part_is_wrong() {
    let (cert, key) = pair("shop.example");
    let (_, other_key) = pair("other.example");
    let err = |c: &str, k: &str| certified_key(c.as_bytes(), k.as_bytes()).unwrap_err();
    assert!(matches!(err("", &key), KeyPairError::NoCertificate));
    assert!(matches!(
        err(
            "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
            &key
        ),
        KeyPairError::CertificatePem(_)
    ));
    assert!(matches!(err(&cert, "not a key"), KeyPairError::KeyPem(_)));
    assert!(matches!(err(&cert, &other_key), KeyPairError::Mismatch));
}
