//! v1 Secret (`validate/secret.rs`).

use super::*;

/// A Secret in `shop`; `rest` holds its type and data.
fn secret(rest: &str) -> String {
    format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: shop-tls, namespace: shop}}\n{rest}\n")
}

/// A YAML (JSON) double-quoted string holding `s`.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// `bytes` as a Secret's `data` writes them: base64, quoted.
fn base64(bytes: &[u8]) -> String {
    serde_json::to_string(&k8s_openapi::ByteString(bytes.to_vec())).unwrap()
}

struct Pair {
    cert: String,
    key: String,
}

fn keypair() -> Pair {
    let ck = rcgen::generate_simple_self_signed(vec!["a.example.com".to_owned()]).unwrap();
    Pair {
        cert: ck.cert.pem(),
        key: ck.signing_key.serialize_pem(),
    }
}

fn tls_secret(cert: &str, key: &str) -> String {
    secret(&format!(
        "type: kubernetes.io/tls\nstringData: {{tls.crt: {}, tls.key: {}}}",
        quoted(cert),
        quoted(key)
    ))
}

#[test]
fn tls_secret_cert_required() {
    let pair = keypair();
    check(
        &secret(&format!(
            "type: kubernetes.io/tls\nstringData: {{tls.key: {}}}",
            quoted(&pair.key)
        )),
        &["t.yaml: Secret shop/shop-tls: data[tls.crt]: Required value"],
    );
}

#[test]
fn tls_secret_key_required() {
    let pair = keypair();
    check(
        &secret(&format!(
            "type: kubernetes.io/tls\nstringData: {{tls.crt: {}}}",
            quoted(&pair.cert)
        )),
        &["t.yaml: Secret shop/shop-tls: data[tls.key]: Required value"],
    );
    check(
        &secret("type: kubernetes.io/tls"),
        &[
            "t.yaml: Secret shop/shop-tls: data[tls.crt]: Required value",
            "t.yaml: Secret shop/shop-tls: data[tls.key]: Required value",
        ],
    );
}

#[test]
fn tls_secret_cert_not_pem() {
    let pair = keypair();
    check(
        &tls_secret("not a certificate", &pair.key),
        &[
            "t.yaml: Secret shop/shop-tls: data[tls.crt]: Invalid value: tls.crt holds no PEM CERTIFICATE block",
        ],
    );
}

#[test]
fn tls_secret_key_not_pem() {
    let pair = keypair();
    let problems = problems(&tls_secret(&pair.cert, "not a key"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(
            "t.yaml: Secret shop/shop-tls: data[tls.key]: Invalid value: tls.key is not a valid PEM private key: "
        ),
        "{problems:?}"
    );
}

#[test]
fn tls_secret_key_does_not_match_cert() {
    let (a, b) = (keypair(), keypair());
    check(
        &tls_secret(&a.cert, &b.key),
        &[
            "t.yaml: Secret shop/shop-tls: data[tls.key]: Invalid value: tls.key does not match the certificate in tls.crt",
        ],
    );
}

#[test]
fn tls_secret_matching_pair_accepted() {
    let pair = keypair();
    check(&tls_secret(&pair.cert, &pair.key), &[]);
}

#[test]
fn tls_secret_base64_data_accepted() {
    let pair = keypair();
    let yaml = secret(&format!(
        "type: kubernetes.io/tls\ndata: {{tls.crt: {}, tls.key: {}}}",
        base64(pair.cert.as_bytes()),
        base64(pair.key.as_bytes())
    ));
    check(&yaml, &[]);
    // The same data, but the key replaced through stringData: no longer a pair.
    let other = keypair();
    let yaml = format!("{yaml}stringData: {{tls.key: {}}}\n", quoted(&other.key));
    check(
        &yaml,
        &[
            "t.yaml: Secret shop/shop-tls: data[tls.key]: Invalid value: tls.key does not match the certificate in tls.crt",
        ],
    );
}

#[test]
fn secret_data_key_invalid() {
    check(
        &secret(&format!("data: {{'a b': {}}}", base64(b"x"))),
        &[
            "t.yaml: Secret shop/shop-tls: data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name')",
        ],
    );
    check(
        &secret("stringData: {'tls/crt': x}"),
        &[
            "t.yaml: Secret shop/shop-tls: data[tls/crt]: Invalid value: \"tls/crt\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name')",
        ],
    );
}

#[test]
fn secret_data_key_may_not_be_a_directory_name() {
    for key in [".", "..", "..data"] {
        let problems = all(&secret(&format!("stringData: {{{key:?}: x}}")));
        assert_eq!(problems.len(), 1, "{key}: {problems:?}");
        assert_eq!(problems[0].field, format!("data[{key}]"));
        assert!(problems[0].is_error());
    }
    // A dot inside or at the start of a name is fine.
    check(&secret("stringData: {.dockercfg: x, tls.crt: v}"), &[]);
}

#[test]
fn secret_too_large() {
    let big = "x".repeat(600 * 1024);
    check(
        &secret(&format!("stringData: {{a: {big}, b: {big}}}")),
        &["t.yaml: Secret shop/shop-tls: data: Too long: may not be more than 1048576 bytes"],
    );
}

#[test]
fn opaque_secret_is_not_checked_as_tls() {
    check(&secret("type: Opaque\nstringData: {tls.crt: hello}"), &[]);
}
