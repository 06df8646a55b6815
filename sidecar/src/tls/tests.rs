use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;
use crate::test_pki::{Ca, id, watch_of};

/// One handshake over an in-memory pipe: the client expects `expected`. Returns the identity
/// the server read from the client's certificate, or the first side's error.
async fn handshake(
    client: &MeshTls,
    server: &MeshTls,
    expected: &WorkloadId,
) -> Result<WorkloadId, String> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let connector = TlsConnector::from(client.client(expected).map_err(|e| e.to_string())?);
    let acceptor = TlsAcceptor::from(server.server().map_err(|e| e.to_string())?);
    let name = ServerName::from(std::net::IpAddr::from([127, 0, 0, 1]));
    let client_side = async move {
        let mut tls = connector
            .connect(name, a)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut pong = [0; 4];
        tls.read_exact(&mut pong).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    let server_side = async move {
        let mut tls = acceptor.accept(b).await.map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        assert_eq!(conn.alpn_protocol(), Some(mesh::ALPN));
        let peer = peer_identity(conn.peer_certificates().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let mut ping = [0; 4];
        tls.read_exact(&mut ping).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(peer)
    };
    let (c, s) = tokio::join!(client_side, server_side);
    c?;
    s
}

#[tokio::test]
async fn the_right_identity_is_accepted_and_read_by_the_server() {
    let ca = Ca::new();
    let (web, api) = (id("shop", "web"), id("shop", "api"));
    let (_c, client) = watch_of(ca.issue(&web));
    let (_s, server) = watch_of(ca.issue(&api));
    let (client, server) = (MeshTls::new(client), MeshTls::new(server));
    assert_eq!(handshake(&client, &server, &api).await, Ok(web));
}

#[tokio::test]
async fn a_server_with_another_identity_is_refused() {
    let ca = Ca::new();
    let (_c, client) = watch_of(ca.issue(&id("shop", "web")));
    let (_s, server) = watch_of(ca.issue(&id("shop", "impostor")));
    let (client, server) = (MeshTls::new(client), MeshTls::new(server));
    let err = handshake(&client, &server, &id("shop", "api"))
        .await
        .unwrap_err();
    assert!(err.contains("impostor"), "{err}");
}

#[tokio::test]
async fn a_server_or_a_client_from_another_root_is_refused() {
    let (ours, theirs) = (Ca::new(), Ca::new());
    let api = id("shop", "api");
    let (_a, good_client) = watch_of(ours.issue(&id("shop", "web")));
    let (_b, good_server) = watch_of(ours.issue(&api));
    let (_c, foreign_server) = watch_of(theirs.issue(&api));
    let mut foreign_client = theirs.issue(&id("shop", "web"));
    // It trusts our root, so only the server's check can stop it.
    foreign_client.roots = vec![ours.root()];
    let (_d, foreign_client) = watch_of(foreign_client);
    let good_client = MeshTls::new(good_client);
    let good_server = MeshTls::new(good_server);
    assert!(
        handshake(&good_client, &MeshTls::new(foreign_server), &api)
            .await
            .is_err()
    );
    assert!(
        handshake(&MeshTls::new(foreign_client), &good_server, &api)
            .await
            .is_err()
    );
    assert!(handshake(&good_client, &good_server, &api).await.is_ok());
}

#[tokio::test]
async fn an_expired_certificate_is_refused_on_either_side() {
    let ca = Ca::new();
    let api = id("shop", "api");
    let expire = |p: &mut rcgen::CertificateParams| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    };
    let (_a, client) = watch_of(ca.issue(&id("shop", "web")));
    let (_b, expired_server) = watch_of(ca.issue_with(&api, expire));
    let (_c, expired_client) = watch_of(ca.issue_with(&id("shop", "web"), expire));
    let (_d, server) = watch_of(ca.issue(&api));
    let err = handshake(&MeshTls::new(client), &MeshTls::new(expired_server), &api)
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("expired"), "{err}");
    assert!(
        handshake(&MeshTls::new(expired_client), &MeshTls::new(server), &api)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn new_credentials_build_new_configs_and_old_connections_keep_theirs() {
    let (old_ca, new_ca) = (Ca::new(), Ca::new());
    let (web, api) = (id("shop", "web"), id("shop", "api"));
    let (client_tx, client) = watch_of(old_ca.issue(&web));
    let (server_tx, server) = watch_of(old_ca.issue(&api));
    let (client, server) = (MeshTls::new(client), MeshTls::new(server));
    let before = server.server().unwrap();
    assert!(
        Arc::ptr_eq(&before, &server.server().unwrap()),
        "built once"
    );
    assert!(Arc::ptr_eq(
        &client.client(&api).unwrap(),
        &client.client(&api).unwrap()
    ));

    // A root rotation: first both trust both roots, then each gets a leaf of the new root.
    let trust_both = |mut c: Credentials| {
        c.roots = vec![old_ca.root(), new_ca.root()];
        Some(Arc::new(c))
    };
    client_tx.send_replace(trust_both(old_ca.issue(&web)));
    server_tx.send_replace(trust_both(new_ca.issue(&api)));
    let after = server.server().unwrap();
    assert!(!Arc::ptr_eq(&before, &after));
    // The client still holds an old-root leaf: the overlapping bundle lets it in.
    assert_eq!(handshake(&client, &server, &api).await, Ok(web.clone()));
    client_tx.send_replace(trust_both(new_ca.issue(&web)));
    assert_eq!(handshake(&client, &server, &api).await, Ok(web));
}

#[test]
fn no_credentials_yet_is_an_error_not_a_panic() {
    let (_tx, rx) = tokio::sync::watch::channel(None);
    let tls = MeshTls::new(rx);
    assert!(matches!(tls.server(), Err(TlsError::NoCredentials)));
    assert!(matches!(
        tls.client(&id("a", "b")),
        Err(TlsError::NoCredentials)
    ));
}

#[test]
fn a_certificate_without_a_spiffe_uri_names_no_workload() {
    let g = rcgen::generate_simple_self_signed(vec!["api.shop.svc".to_owned()]).unwrap();
    assert!(matches!(
        peer_identity(&[g.cert.der().clone()]),
        Err(TlsError::NoIdentity)
    ));
    assert!(matches!(
        peer_identity(&[]),
        Err(TlsError::NoPeerCertificate)
    ));
    assert!(matches!(
        peer_identity(&[CertificateDer::from(vec![1, 2, 3])]),
        Err(TlsError::Certificate(_))
    ));
}

#[tokio::test]
async fn a_client_of_another_trust_domain_is_refused_by_the_server() {
    // One CA for two meshes: the chain verifies, the trust domain does not match.
    let ca = Ca::new();
    let api = id("shop", "api");
    let stranger = WorkloadId::new("other.mesh", "shop", "web");
    let (_c, client) = watch_of(ca.issue(&stranger));
    let (_s, server) = watch_of(ca.issue(&api));
    let (client, server) = (MeshTls::new(client), MeshTls::new(server));
    // The client sees the server's alert; without the check the handshake would succeed.
    let err = handshake(&client, &server, &api).await.unwrap_err();
    assert!(err.contains("alert"), "{err}");
    // The verifier's own words.
    let verifier = SameTrustDomain::new(
        WebPkiClientVerifier::builder_with_provider(
            Arc::new(root_store(&[ca.root()]).unwrap()),
            provider().clone(),
        )
        .build()
        .unwrap(),
        "cluster.local",
    );
    let foreign = ca.issue(&stranger);
    let refused = rustls::server::danger::ClientCertVerifier::verify_client_cert(
        &verifier,
        &foreign.key.cert[0],
        &foreign.key.cert[1..],
        rustls_pki_types::UnixTime::now(),
    )
    .unwrap_err();
    let refused = format!("{refused:?}");
    assert!(
        refused.contains("TrustDomain") && refused.contains("other.mesh"),
        "{refused}"
    );
    // Ours still come in.
    let (_c2, ours) = watch_of(ca.issue(&id("shop", "web")));
    assert_eq!(
        handshake(&MeshTls::new(ours), &server, &api).await,
        Ok(id("shop", "web"))
    );
}
