use std::path::PathBuf;

use super::{TlsOptions, build, server_name};
use crate::config::Protocol;

#[test]
fn alpn_offers_exactly_the_protocol_spoken() {
    let insecure = TlsOptions {
        insecure: true,
        ..TlsOptions::default()
    };
    assert_eq!(
        build(&insecure, Protocol::Http2).unwrap().alpn_protocols,
        vec![b"h2".to_vec()]
    );
    assert_eq!(
        build(&insecure, Protocol::Http1).unwrap().alpn_protocols,
        vec![b"http/1.1".to_vec()]
    );
}

#[test]
fn a_ca_file_is_read_and_a_bad_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["load.test".to_string()]).unwrap();
    let good = dir.path().join("ca.pem");
    std::fs::write(&good, cert.cert.pem()).unwrap();
    let options = |path: PathBuf| TlsOptions {
        cacert: Some(path),
        ..TlsOptions::default()
    };
    assert!(build(&options(good), Protocol::Http1).is_ok());

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = build(&options(empty), Protocol::Http1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no certificates found"), "{err}");

    let err = build(&options(dir.path().join("missing.pem")), Protocol::Http1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.pem"), "{err}");
}

#[test]
fn sni_comes_from_the_option_or_the_host() {
    let none = TlsOptions::default();
    assert_eq!(
        server_name(&none, "example.com").unwrap().to_str(),
        "example.com"
    );
    let sni = TlsOptions {
        sni: Some("api.example.com".into()),
        ..TlsOptions::default()
    };
    assert_eq!(
        server_name(&sni, "127.0.0.1").unwrap().to_str(),
        "api.example.com"
    );
    let bad = TlsOptions {
        sni: Some("bad name!".into()),
        ..TlsOptions::default()
    };
    assert!(
        server_name(&bad, "x")
            .unwrap_err()
            .to_string()
            .contains("invalid TLS server name")
    );
}
