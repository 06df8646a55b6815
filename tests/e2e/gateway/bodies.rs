//! Request framing and bodies: smuggling and oversized requests refused, a length with
//! chunked refused before anything is forwarded, stalled uploads release their upstream, and
//! `Expect: 100-continue`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;

use super::{annotated, get, ingress, raw, read_to_close, service, up_with, web_only};
use crate::{DEADLINE, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_and_oversized_requests_are_refused() {
    let (_web, _dir, up) = web_only().await;
    let head = "POST / HTTP/1.1\r\nHost: shop.example.com\r\n";
    let status = |reply: &str| reply.split(' ').nth(1).unwrap_or("closed").to_owned();

    // Two different lengths, a length that is no number, a coding that is not chunked: 400.
    for bad in [
        format!("{head}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        format!("{head}Content-Length: 5x\r\n\r\nhello"),
        format!("{head}Transfer-Encoding: gzip\r\n\r\nhello"),
    ] {
        let reply = raw(up.http, bad.as_bytes()).await;
        assert_eq!(status(&reply), "400", "{bad:?} → {reply}");
    }

    // Length and chunked together: 400 and the connection closed (see
    // `length_with_chunked_gets_400_and_a_close_before_anything_is_forwarded`).
    let smuggle = format!(
        "{head}Content-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: shop.example.com\r\n\r\n"
    );
    let reply = raw(up.http, smuggle.as_bytes()).await;
    assert_eq!(status(&reply), "400", "{reply}");
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");
    assert!(!reply.contains("/smuggled"), "{reply}");

    // A broken chunk: never a success.
    let reply = raw(
        up.http,
        format!("{head}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(!status(&reply).starts_with('2'), "{reply}");

    // Headers too large, or too many: 431.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: shop.example.com\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    assert_eq!(status(&raw(up.http, big.as_bytes()).await), "431");
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: shop.example.com\r\n{many}\r\n");
    assert_eq!(status(&raw(up.http, many.as_bytes()).await), "431");

    // A body over 1 MiB: 413, declared or streamed.
    let declared = format!("{head}Content-Length: 2000000\r\n\r\n");
    assert_eq!(status(&raw(up.http, declared.as_bytes()).await), "413");
    let chunk = "a".repeat(64 * 1024);
    let mut streamed = format!("{head}Transfer-Encoding: chunked\r\n\r\n");
    for _ in 0..20 {
        streamed.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    streamed.push_str("0\r\n\r\n");
    assert_eq!(status(&raw(up.http, streamed.as_bytes()).await), "413");

    // And an ordinary request still works.
    let (code, _) = get(up.http, "shop.example.com", "/").await;
    assert_eq!(code, 200);
    up.stop().await;
}

/// A raw TCP upstream that counts its open connections and the request heads it was sent.
/// It answers a GET head with 200 "ok" and nothing else: the bodies these tests send
/// never complete.
struct Counting {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
    heads: Arc<AtomicUsize>,
}

async fn counting() -> Counting {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let counting = Counting {
        addr: listener.local_addr().unwrap(),
        open: Arc::default(),
        heads: Arc::default(),
    };
    let (open, heads) = (counting.open.clone(), counting.heads.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            open.fetch_add(1, Ordering::SeqCst);
            let (open, heads) = (open.clone(), heads.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen: Vec<u8> = Vec::new();
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = seen.drain(..end + 4).collect();
                        heads.fetch_add(1, Ordering::SeqCst);
                        if head.starts_with(b"GET ") {
                            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            let _ = stream.write_all(ok).await;
                        }
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    counting
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_with_chunked_gets_400_and_a_close_before_anything_is_forwarded() {
    use tokio::io::AsyncWriteExt;
    let upstream = counting().await;
    let dir = tempfile::tempdir().unwrap();
    let up = up_with(
        dir.path(),
        &[
            ("up.yaml", service("up", &[upstream.addr.port()])),
            ("ingress.yaml", ingress(&[("/", "up")], false)),
        ],
    )
    .await;
    // The route reaches the upstream.
    let (status, body) = get(up.http, "shop.example.com", "/").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let heads = upstream.heads.load(Ordering::SeqCst);

    for lengths in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ] {
        let mut stream = TcpStream::connect(up.http).await.unwrap();
        // An ordinary request first: the framing is followed across requests.
        let smuggle = format!(
            "GET /first HTTP/1.1\r\nHost: shop.example.com\r\n\r\nPOST / HTTP/1.1\r\nHost: shop.example.com\r\n{lengths}\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: shop.example.com\r\n\r\n"
        );
        stream.write_all(smuggle.as_bytes()).await.unwrap();
        let reply = read_to_close(&mut stream).await;
        let answers: Vec<&str> = reply
            .match_indices("HTTP/1.1 ")
            .map(|(i, _)| &reply[i..i + 12])
            .collect();
        assert_eq!(answers, ["HTTP/1.1 200", "HTTP/1.1 400"], "{reply}");
        let refusal = &reply[reply.rfind("HTTP/1.1 400").unwrap()..];
        assert!(
            refusal
                .to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "{refusal}"
        );
        assert!(!reply.contains("/smuggled"), "{reply}");
    }
    // The upstream saw the two GETs and nothing of the refused requests.
    assert_eq!(upstream.heads.load(Ordering::SeqCst), heads + 2);
    let (status, _) = get(up.http, "shop.example.com", "/").await;
    assert_eq!(status, 200);
    assert_eq!(upstream.heads.load(Ordering::SeqCst), heads + 3);
    up.stop().await;
}

/// A POST whose head and first bytes go out, and then nothing.
async fn start_upload(gateway: SocketAddr, path: &str) -> TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = TcpStream::connect(gateway).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 100000\r\n\r\nfirst bytes"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_abandoned_upload_releases_its_upstream_connection() {
    let upstream = counting().await;
    let dir = tempfile::tempdir().unwrap();
    let stall = annotated(
        "stall",
        &[("proxy-send-timeout", "1")],
        &[("/stall", "Prefix", "up")],
    );
    let up = up_with(
        dir.path(),
        &[
            ("up.yaml", service("up", &[upstream.addr.port()])),
            ("stall.yaml", stall),
            // The default send timeout (60 s): only the client's going closes the upstream's.
            ("ingress.yaml", ingress(&[("/drop", "up")], false)),
        ],
    )
    .await;
    let open = || upstream.open.load(Ordering::SeqCst);
    let got_first_bytes = |heads: usize| {
        let (upstream, want) = (&upstream, heads);
        move || async move {
            (upstream.heads.load(Ordering::SeqCst) == want
                && upstream.open.load(Ordering::SeqCst) == 1)
                .then_some(())
        }
    };

    // The client stalls: after the send timeout a 504, both connections closed.
    let mut client = start_upload(up.http, "/stall").await;
    eventually(
        DEADLINE,
        "the upload reaches the upstream",
        got_first_bytes(1),
    )
    .await;
    let reply = read_to_close(&mut client).await;
    assert!(reply.starts_with("HTTP/1.1 504"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
    eventually(
        DEADLINE,
        "the upstream connection closed after the stall",
        || async { (open() == 0).then_some(()) },
    )
    .await;

    // The client goes away mid-body: the upstream request is aborted at once, long before
    // the 60 s send timeout.
    let client = start_upload(up.http, "/drop").await;
    eventually(
        DEADLINE,
        "the upload reaches the upstream",
        got_first_bytes(2),
    )
    .await;
    drop(client);
    eventually(
        DEADLINE,
        "the upstream connection closed after the client left",
        || async { (open() == 0).then_some(()) },
    )
    .await;

    // Neither cost the endpoint anything.
    let (status, body) = get(up.http, "shop.example.com", "/drop").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_gets_its_interim_answer_then_the_body_goes_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_web, _dir, up) = web_only().await;
    let mut stream = TcpStream::connect(up.http).await.unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    // The client waits for the interim answer before it sends the body.
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("an interim answer")
            .unwrap();
        assert_eq!(n, 1, "closed early: {}", String::from_utf8_lossy(&interim));
        interim.push(byte[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    stream.write_all(b"hello").await.unwrap();
    let mut reply = vec![0u8; 4096];
    let n = stream.read(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"body_bytes\":5"), "{reply}");
    up.stop().await;
}
