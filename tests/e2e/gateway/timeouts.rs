//! Upstream timeouts: an upstream that stops taking the body, the read timeout that waits for
//! the body and then between reads of the answer, and the same timeout closing a quiet
//! WebSocket tunnel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;

use super::{annotated, open_tunnel, read_to_close, service, up_with, upgrade_echo};
use crate::{DEADLINE, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stops_taking_the_body_times_out_with_504() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An upstream that reads the request head and then never reads again; a small receive
    // buffer, so the gateway's writes back up soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let stuck = socket.listen(16).unwrap();
    let stuck_addr = stuck.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = stuck.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let upload = annotated(
        "upload",
        &[("proxy-body-size", "0"), ("proxy-send-timeout", "1")],
        &[("/", "Prefix", "stuck")],
    );
    let up = up_with(
        dir.path(),
        &[
            ("stuck.yaml", service("stuck", &[stuck_addr.port()])),
            ("upload.yaml", upload),
        ],
    )
    .await;
    let total: usize = 64 * 1024 * 1024;
    let stream = TcpStream::connect(up.http).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        let head = format!(
            "POST /big HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: {total}\r\n\r\n"
        );
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b'a'; 1024 * 1024];
        for _ in 0..total / chunk.len() {
            writer.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut reply = vec![0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(30), reader.read(&mut reply))
        .await
        .expect("an answer while the body is stuck")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 504"), "{reply}");
    writing.abort();
    // Closed, so shutdown has no connection to drain.
    drop(reader);
    let _ = writing.await;
    up.stop().await;
}

/// A raw upstream for the read timeout, by path: `/upload` reads the whole body (by its
/// `Content-Length`), answers with its size and closes; `/late` reads it and never answers;
/// `/quiet-body` sends a head and a few bytes of a long body, `/quiet-head` a head for a short
/// body and nothing of it, then both hold the connection; `/broken` sends a head for a short
/// body and closes. `open` counts its open connections.
async fn slow_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = Arc::new(AtomicUsize::new(0));
    let counted = open.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                let end = loop {
                    if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(end + 4);
                    }
                    match stream.read(&mut buf).await {
                        Ok(n @ 1..) => seen.extend_from_slice(&buf[..n]),
                        _ => break None,
                    }
                };
                if let Some(end) = end {
                    let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    let mut body = seen.len() - end;
                    while body < length {
                        match stream.read(&mut buf).await {
                            Ok(n @ 1..) => body += n,
                            _ => break,
                        }
                    }
                    let answer = match path.as_str() {
                        "/upload" => {
                            // Closed after: the next request gets a connection of its own.
                            let text = format!("got {body}");
                            let answer = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                                text.len()
                            );
                            let _ = stream.write_all(answer.as_bytes()).await;
                            counted.fetch_sub(1, Ordering::SeqCst);
                            return;
                        }
                        "/quiet-body" => {
                            "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\npartial".into()
                        }
                        "/quiet-head" => "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n".into(),
                        "/broken" => {
                            // A head for a short body, then the connection closes.
                            let cut = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
                            let _ = stream.write_all(cut.as_bytes()).await;
                            counted.fetch_sub(1, Ordering::SeqCst);
                            return;
                        }
                        _ => String::new(),
                    };
                    let _ = stream.write_all(answer.as_bytes()).await;
                    // Hold the connection until the gateway closes it.
                    while let Ok(1..) = stream.read(&mut buf).await {}
                }
                counted.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_timeout_waits_for_the_body_and_between_reads_of_the_answer() {
    use tokio::io::AsyncWriteExt;
    let (upstream, open) = slow_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let slow = annotated(
        "slow",
        &[("proxy-read-timeout", "1")],
        &[("/", "Prefix", "slow")],
    );
    let up = up_with(
        dir.path(),
        &[
            ("slow.yaml", service("slow", &[upstream.port()])),
            ("ingress.yaml", slow),
        ],
    )
    .await;
    let upload = |path: &'static str| async move {
        let mut stream = TcpStream::connect(up.http).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 8\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream
    };

    // An upload that keeps moving for twice the read timeout: the wait for the answer starts
    // once it is sent, as nginx's.
    let mut stream = upload("/upload").await;
    for _ in 0..8 {
        stream.write_all(b"a").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let reply = read_to_close(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("got 8"), "{reply}");

    // Sent whole and then no answer: 504 after the read timeout.
    let mut stream = upload("/late").await;
    stream.write_all(b"abcdefgh").await.unwrap();
    let reply = read_to_close(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 504"), "{reply}");

    // A head and no body: nothing has gone to the client yet, so 504 too.
    let mut stream = TcpStream::connect(up.http).await.unwrap();
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n\r\n")
    };
    stream
        .write_all(get("/quiet-head").as_bytes())
        .await
        .unwrap();
    let reply = read_to_close(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 504"), "{reply}");

    // A short answer that breaks off before anything went to the client: 502, as nginx's.
    let mut stream = TcpStream::connect(up.http).await.unwrap();
    stream.write_all(get("/broken").as_bytes()).await.unwrap();
    let reply = read_to_close(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");

    // Part of a body, then quiet: the answer is cut off after the read timeout (its head went
    // out already), and the upstream connection is closed.
    let mut stream = TcpStream::connect(up.http).await.unwrap();
    stream
        .write_all(get("/quiet-body").as_bytes())
        .await
        .unwrap();
    let reply = read_to_close(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("\r\n\r\npartial"), "{reply}");
    eventually(DEADLINE, "every upstream connection closed", || async {
        (open.load(Ordering::SeqCst) == 0).then_some(())
    })
    .await;

    // Answers that go quiet before anything went to the client count against the endpoint:
    // five in a row eject it (the part-answer above was a success, and reset the count).
    let quiet: Vec<_> = (0..5)
        .map(|_| {
            let (addr, get) = (up.http, get("/quiet-head"));
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream.write_all(get.as_bytes()).await.unwrap();
                read_to_close(&mut stream).await
            })
        })
        .collect();
    for reply in quiet {
        let reply = reply.await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 504"), "{reply}");
    }
    let (_, metrics) = crate::get(up.admin, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "ferry_gateway_ejections_total 1"),
        "{metrics}"
    );
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_tunnel_quiet_for_the_routes_read_timeout_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ws = upgrade_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let ingress = annotated(
        "ws",
        &[("proxy-read-timeout", "1")],
        &[("/", "Prefix", "ws")],
    );
    let up = up_with(
        dir.path(),
        &[
            ("ws.yaml", service("ws", &[ws.port()])),
            ("ingress.yaml", ingress),
        ],
    )
    .await;
    let mut tunnel = open_tunnel(up.http, "shop.example.com", "/chat").await;
    tunnel.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    tunnel.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
    // Quiet from now on: closed a second later, both ways.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, tunnel.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the quiet tunnel was not closed");
    assert!(rest.is_empty());
    up.stop().await;
}
