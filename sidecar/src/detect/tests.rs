use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

/// A real ClientHello, as rustls writes it, offering `alpn`.
fn client_hello_offering(alpn: &[&[u8]]) -> Vec<u8> {
    let mut config = ferry_runtime::tls::any_server_client_config().unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from("api.shop.svc").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

/// Detects what `chunks` (written one by one) are on `port`, and reads back everything the
/// prefixed stream replays.
async fn run(port: u16, chunks: &[&[u8]], close: bool) -> (Detected, Vec<u8>) {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
    let writer = tokio::spawn(async move {
        for c in chunks {
            client.write_all(&c).await.unwrap();
            tokio::task::yield_now().await;
        }
        if close {
            client.shutdown().await.unwrap();
        }
        client
    });
    let (detected, mut stream) = detect(server, port, &Detection::default()).await.unwrap();
    let client: DuplexStream = writer.await.unwrap();
    drop(client);
    let mut replayed = Vec::new();
    stream.read_to_end(&mut replayed).await.unwrap();
    (detected, replayed)
}

#[tokio::test]
async fn an_http1_request_line_in_pieces_is_http1_and_replayed_whole() {
    let req: &[&[u8]] = &[b"GE", b"T /items?id=1 HT", b"TP/1.1\r\nHost: a\r\n\r\n"];
    let (detected, bytes) = run(8080, req, false).await;
    assert_eq!(detected, Detected::Http1);
    assert_eq!(bytes, req.concat());
}

#[tokio::test]
async fn the_h2_preface_is_h2() {
    let (detected, bytes) = run(8080, &[&H2_PREFACE[..10], &H2_PREFACE[10..]], false).await;
    assert_eq!(detected, Detected::H2);
    assert_eq!(bytes, H2_PREFACE);
}

#[tokio::test]
async fn a_client_hello_with_the_mesh_alpn_is_mesh_tls_and_without_it_tls() {
    let mesh = client_hello_offering(&[b"h2", mesh::ALPN]);
    let (detected, bytes) = run(8080, &[&mesh[..7], &mesh[7..]], false).await;
    assert_eq!(detected, Detected::MeshTls);
    assert_eq!(bytes, mesh);
    let app = client_hello_offering(&[b"h2", b"http/1.1"]);
    assert_eq!(run(8080, &[&app], false).await.0, Detected::Tls);
    let none = client_hello_offering(&[]);
    assert_eq!(run(8080, &[&none], false).await.0, Detected::Tls);
}

#[tokio::test]
async fn a_server_first_port_is_opaque_without_reading() {
    // The client sends nothing (it waits for the banner): detection must not wait either.
    let (client, server) = tokio::io::duplex(1024);
    let (detected, _) = detect(server, 5432, &Detection::default()).await.unwrap();
    assert_eq!(detected, Detected::Opaque(Opaque::Port));
    drop(client);
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_on_another_port_is_opaque_after_the_timeout_only() {
    let (client, server) = tokio::io::duplex(1024);
    let start = tokio::time::Instant::now();
    let (detected, _) = detect(server, 9000, &Detection::default()).await.unwrap();
    assert_eq!(detected, Detected::Opaque(Opaque::Timeout));
    assert_eq!(start.elapsed(), Detection::default().timeout);
    drop(client);
}

#[tokio::test]
async fn bytes_that_cannot_be_http_or_tls_are_opaque_at_once() {
    for junk in [
        &b"\x00\x01\x02"[..],
        b"get / HTTP/1.1\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ] {
        let (detected, bytes) = run(9000, &[junk], false).await;
        assert_eq!(detected, Detected::Opaque(Opaque::Unknown), "{junk:?}");
        assert_eq!(bytes, junk);
    }
    // A request line that breaks the grammar is not HTTP.
    let (detected, _) = run(9000, &[b"GET /a b HTTP/1.1\r\n"], false).await;
    assert_eq!(detected, Detected::Opaque(Opaque::Unknown));
}

#[tokio::test]
async fn a_client_that_closes_early_is_opaque_and_its_bytes_kept() {
    let (detected, bytes) = run(9000, &[b"GET /"], true).await;
    assert_eq!(detected, Detected::Opaque(Opaque::Closed));
    assert_eq!(bytes, b"GET /");
}

#[test]
fn a_truncated_or_broken_client_hello_is_never_a_panic() {
    let hello = client_hello_offering(&[mesh::ALPN]);
    for n in 0..hello.len() {
        let _ = classify(&hello[..n]);
    }
    let mut broken = hello.clone();
    broken[6] = 0xff; // the handshake length overruns the record
    assert_eq!(classify(&broken), Some(Detected::Opaque(Opaque::Unknown)));
}

/// `hello` (one record) as two records, the handshake message cut after `at` of its bytes.
fn in_two_records(hello: &[u8], at: usize) -> Vec<u8> {
    let message = &hello[5..];
    let mut out = Vec::new();
    for part in [&message[..at], &message[at..]] {
        out.extend_from_slice(&hello[..3]);
        out.extend_from_slice(&u16::try_from(part.len()).unwrap().to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[tokio::test(start_paused = true)]
async fn a_client_hello_written_in_two_pieces_is_waited_for() {
    let hello = client_hello_offering(&[b"h2", mesh::ALPN]);
    let fragmented = in_two_records(&hello, 40);
    for bytes in [&hello, &fragmented] {
        for split in [1, 4, 5, 6, 45, 50, bytes.len() / 2, bytes.len() - 1] {
            let (mut client, server) = tokio::io::duplex(64 * 1024);
            let (first, second) = (bytes[..split].to_vec(), bytes[split..].to_vec());
            let writer = tokio::spawn(async move {
                client.write_all(&first).await.unwrap();
                // The second segment comes later, well within the detection timeout.
                tokio::time::sleep(Detection::default().timeout / 2).await;
                client.write_all(&second).await.unwrap();
                client
            });
            let (detected, mut stream) = detect(server, 8080, &Detection::default()).await.unwrap();
            assert_eq!(
                detected,
                Detected::MeshTls,
                "split at {split} of {}",
                bytes.len()
            );
            drop(writer.await.unwrap());
            let mut replayed = Vec::new();
            stream.read_to_end(&mut replayed).await.unwrap();
            assert_eq!(&replayed, bytes);
        }
    }
}

#[test]
fn a_client_hello_fragmented_over_records_is_read_whole_and_never_decided_early() {
    let mesh = client_hello_offering(&[mesh::ALPN]);
    let app = client_hello_offering(&[b"h2"]);
    for at in [1, 3, 4, 40, mesh.len() - 6] {
        let fragmented = in_two_records(&mesh, at);
        for n in 0..fragmented.len() {
            assert_eq!(
                classify(&fragmented[..n]),
                None,
                "cut at {at}, {n} bytes read"
            );
        }
        assert_eq!(
            classify(&fragmented),
            Some(Detected::MeshTls),
            "cut at {at}"
        );
    }
    assert_eq!(classify(&in_two_records(&app, 40)), Some(Detected::Tls));
    // A record that is not a handshake after the first fragment: not a ClientHello.
    let mut broken = in_two_records(&mesh, 40);
    broken[5 + 40] = 0x17;
    assert_eq!(classify(&broken), Some(Detected::Opaque(Opaque::Unknown)));
}
