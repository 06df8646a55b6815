use super::*;

#[tokio::test]
async fn a_connection_without_a_handshake_is_closed_after_the_timeout() {
    let state = tempfile::tempdir().unwrap();
    let config = PushConfig {
        handshake_timeout: Duration::from_millis(100),
        ..PushConfig::new("127.0.0.1:0".parse().unwrap(), state.path().to_owned())
    };
    let server = PushServer::build(
        config,
        SnapshotBus::new(),
        StatusBoard::default(),
        &mut Registry::default(),
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    let (trigger, shutdown) = ferry_runtime::shutdown::channel();
    let task = tokio::spawn(server.run(shutdown));
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
    )
    .await
    .expect("closed before the test's deadline");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    trigger.trigger();
    task.await.unwrap();
}

#[tokio::test]
async fn a_connection_that_subscribes_to_nothing_is_closed_after_the_first_request_deadline() {
    let state = tempfile::tempdir().unwrap();
    let config = PushConfig {
        limits: Limits {
            first_request: Duration::from_millis(100),
            ..PUSH_LIMITS
        },
        ..PushConfig::new("127.0.0.1:0".parse().unwrap(), state.path().to_owned())
    };
    let server = PushServer::build(
        config,
        SnapshotBus::new(),
        StatusBoard::default(),
        &mut Registry::default(),
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    let (trigger, shutdown) = ferry_runtime::shutdown::channel();
    let task = tokio::spawn(server.run(shutdown));
    // The handshake done, nothing more: no HTTP/2 preface, no stream.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let client = ferry_runtime::tls::any_server_client_config().unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .unwrap();
    // The server's HTTP/2 SETTINGS may come first; then the connection must end.
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 256];
        loop {
            match tokio::io::AsyncReadExt::read(&mut tls, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "closed before the test's deadline");
    trigger.trigger();
    task.await.unwrap();
}

#[test]
fn tokens_compare_whole() {
    assert!(same_token(b"abc", b"abc"));
    assert!(!same_token(b"abd", b"abc"));
    assert!(!same_token(b"ab", b"abc"));
    assert!(!same_token(b"", b"abc"));
}

#[test]
fn a_dns_server_is_sent_no_private_key() {
    let snapshot = Snapshot {
        version: 1,
        certificates: vec![Arc::new(ferry_model::Certificate {
            namespace: "shop".into(),
            secret: "tls".into(),
            hosts: vec!["shop.example.com".into()],
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
        })],
        ..Snapshot::default()
    };
    let snapshot = Arc::new(snapshot);
    assert_eq!(
        stream::view_for_role(&snapshot, Role::Gateway).certificates[0].key_pem,
        "KEY"
    );
    let dns = stream::view_for_role(&snapshot, Role::Dns);
    assert!(dns.certificates.is_empty(), "{:?}", dns.certificates);
}
