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

/// A second OpenSSL client connection resumes its first's session from the gateway's ticket,
/// over TLS 1.3 and over TLS 1.2 (`openssl s_client -sess_out`, then `-sess_in`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_clients_resume_their_sessions() {
    let found = tokio::process::Command::new("openssl")
        .arg("version")
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipping openssl_clients_resume_their_sessions: openssl is not installed");
        return;
    }
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
    for version in ["-tls1_3", "-tls1_2"] {
        let session = dir.path().join(format!("session{version}.pem"));
        let first = s_client(up.https, version, "-sess_out", &session).await;
        assert!(first.contains("\nNew, TLSv1."), "{version}: {first}");
        assert!(first.contains("HTTP/1.1 200 OK"), "{version}: {first}");
        let second = s_client(up.https, version, "-sess_in", &session).await;
        assert!(second.contains("\nReused, TLSv1."), "{version}: {second}");
        assert!(second.contains("HTTP/1.1 200 OK"), "{version}: {second}");
    }
    up.stop().await;
}

/// One request through `openssl s_client` (its session written to or read from `session` by
/// `flag`), read to the response's end: its output.
async fn s_client(
    addr: std::net::SocketAddr,
    version: &str,
    flag: &str,
    session: &std::path::Path,
) -> String {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string()])
        .args(["-servername", "shop.example.com", version, "-ign_eof", flag])
        .arg(session)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Connection: close ends it once the response (and with it TLS 1.3's tickets) is read.
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"GET / HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("openssl s_client did not finish in 20s")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}
