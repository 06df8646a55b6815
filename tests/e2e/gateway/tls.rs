//! TLS termination: certificates chosen by SNI, h2 by ALPN, the default certificate
//! and the redirects to HTTPS.

use std::fs;

use http::Version;

use super::{backend, h1, ingress, request, secret, service, tls_get, up_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_by_sni_with_h2_a_default_certificate_and_redirects() {
    let web = backend("web").await;
    let cert = rcgen::generate_simple_self_signed(vec!["shop.example.com".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let up = up_with(
        dir.path(),
        &[
            ("web.yaml", service("web", &[web.addr.port()])),
            ("tls.yaml", secret(&cert)),
            ("ingress.yaml", ingress(&[("/", "web")], true)),
        ],
    )
    .await;

    // Verified against the Secret's certificate, by SNI, over h2 (ALPN).
    let (status, body, version, presented) =
        tls_get(up.https, "shop.example.com", Some(cert.cert.der()), "/cart").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(presented, cert.cert.der().to_vec());
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["headers"]["x-forwarded-proto"], "https");
    assert_eq!(reply["path"], "/cart");

    let (_, metrics) = crate::get(up.admin, "/metrics").await;
    assert!(
        metrics.contains("ferry_gateway_tls_handshakes_total 1"),
        "{metrics}"
    );

    // Another name gets the self-signed default certificate (and no route: 404).
    let (status, _, _, presented) = tls_get(up.https, "unknown.example", None, "/").await;
    assert_ne!(presented, cert.cert.der().to_vec());
    assert_eq!(status, 404);

    // Plain HTTP to a TLS host: 308 to HTTPS, path and query kept.
    let mut sender = h1(up.http).await;
    let res = sender
        .send_request(request("shop.example.com", "/cart?id=7"))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 308);
    assert_eq!(
        res.headers()["location"],
        format!("https://shop.example.com:{}/cart?id=7", up.https.port())
    );

    // A certificate change applies to the next handshake.
    let renewed = rcgen::generate_simple_self_signed(vec!["shop.example.com".to_owned()]).unwrap();
    fs::write(dir.path().join("tls.yaml"), secret(&renewed)).unwrap();
    up.wait_version(2).await;
    let (_, _, _, presented) =
        tls_get(up.https, "shop.example.com", Some(renewed.cert.der()), "/").await;
    assert_eq!(presented, renewed.cert.der().to_vec());
    up.stop().await;
}
