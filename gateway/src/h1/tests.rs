//! The gateway's HTTP/1 fast path end to end, in process: raw bytes from a client over TCP,
//! a scripted upstream that records what reaches it byte for byte.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::tests::{start, start_both, to};

/// What the upstream received: each request's bytes, head and body, as they came.
type Received = Arc<Mutex<Vec<Vec<u8>>>>;

/// An upstream that answers the n-th request it reads (over all its connections) with
/// `answers[n]` (the last one again past the end); an empty answer closes the connection
/// without one, and an answer ending in `\0` is sent without it and the connection closed.
async fn scripted(
    answers: Vec<&'static [u8]>,
) -> (std::net::SocketAddr, Received, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Received = Arc::default();
    let accepted = Arc::new(Mutex::new(0usize));
    let (seen, count) = (received.clone(), accepted.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            *count.lock().unwrap() += 1;
            let (seen, answers) = (seen.clone(), answers.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(request) = read_request(&mut stream, &mut buf).await else {
                        return;
                    };
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(request);
                        seen.len() - 1
                    };
                    let answer = answers[n.min(answers.len() - 1)];
                    if answer.is_empty() {
                        return;
                    }
                    if let Some(last) = answer.strip_suffix(b"\0") {
                        let _ = stream.write_all(last).await;
                        return;
                    }
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, received, accepted)
}

/// One request's bytes from `stream` (what follows stays in `buf`): its head, and its body by
/// Content-Length or to the chunked body's last chunk. `None` at the end of the stream.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().unwrap());
            let total = if head.contains("transfer-encoding: chunked") {
                chunked_end(&buf[end + 4..]).map(|n| end + 4 + n)
            } else {
                Some(end + 4 + length.unwrap_or(0)).filter(|&t| buf.len() >= t)
            };
            if let Some(total) = total {
                return Some(buf.drain(..total).collect());
            }
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Where a chunked body that starts `body` ends (its last chunk and trailer section), if it
/// is all there.
fn chunked_end(body: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line = at + body[at..].windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&body[at..line]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // The trailer section ends with an empty line.
            let mut from = line + 2;
            loop {
                let next = from + body[from..].windows(2).position(|w| w == b"\r\n")?;
                if next == from {
                    return Some(next + 2);
                }
                from = next + 2;
            }
        }
        at = line + 2 + size + 2;
        if at > body.len() {
            return None;
        }
    }
}

/// Sends `request` on `stream` and reads its answer ([`read_answer`]).
async fn ask(stream: &mut TcpStream, buf: &mut Vec<u8>, request: &[u8]) -> (String, Vec<u8>) {
    stream.write_all(request).await.unwrap();
    read_answer(stream, buf).await
}

/// One answer from `stream`: its head (lower-cased) and body, by Content-Length, chunked
/// (decoded) or until the close.
async fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> (String, Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut closed = false;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>().unwrap());
            let body = &buf[end + 4..];
            if head.contains("transfer-encoding: chunked") {
                if let Some(n) = chunked_end(body) {
                    let decoded = dechunk(&body[..n]);
                    buf.drain(..end + 4 + n);
                    return (head, decoded);
                }
            } else if let Some(length) = length {
                if body.len() >= length {
                    let body = body[..length].to_vec();
                    buf.drain(..end + 4 + length);
                    return (head, body);
                }
            } else if closed {
                let body = body.to_vec();
                buf.clear();
                return (head, body);
            }
        }
        assert!(!closed, "the connection closed mid-answer: {buf:?}");
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        closed = n == 0;
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = std::str::from_utf8(&body[..line]).unwrap();
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[line + 2..line + 2 + size]);
        body = &body[line + 2 + size + 2..];
    }
}

/// What `stream` sends until it closes (within 10 s), as text.
async fn until_close<R: tokio::io::AsyncRead + Unpin>(stream: &mut R) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut all))
        .await
        .expect("the answer and the close within 10 s")
        .unwrap();
    String::from_utf8_lossy(&all).into_owned()
}

/// Whether the gateway closes `stream` (within 10 s), whatever it sends before.
async fn closes(stream: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

fn status(head: &str) -> u16 {
    head[9..12].parse().unwrap()
}

const OK_A: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na";
const OK_BB: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nbb";

#[tokio::test]
async fn pipelined_requests_get_their_answers_in_order_over_one_upstream_connection() {
    let (endpoint, received, accepted) = scripted(vec![OK_A, OK_BB]).await;
    let (addr, trigger, running, _) = start(to(endpoint), |_| {}).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(
            b"GET /one HTTP/1.1\r\nHost: shop.example\r\n\r\n\
              GET /two HTTP/1.1\r\nHost: shop.example\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    let (head, body) = read_answer(&mut client, &mut buf).await;
    assert_eq!((status(&head), body.as_slice()), (200, &b"a"[..]), "{head}");
    let (head, body) = read_answer(&mut client, &mut buf).await;
    assert_eq!(
        (status(&head), body.as_slice()),
        (200, &b"bb"[..]),
        "{head}"
    );
    assert!(!head.contains("connection: close"), "{head}");
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    let first = String::from_utf8_lossy(&received[0]);
    assert!(
        first.starts_with("GET /one HTTP/1.1\r\nHost: shop.example\r\n"),
        "{first}"
    );
    for header in [
        "X-Forwarded-For: 127.0.0.1\r\n",
        "X-Forwarded-Proto: http\r\n",
        "Via: 1.1 ferry-",
    ] {
        assert!(first.contains(header), "{header} in {first}");
    }
    assert!(String::from_utf8_lossy(&received[1]).starts_with("GET /two "));
    assert_eq!(*accepted.lock().unwrap(), 1, "one upstream connection");
    trigger.trigger();
    running.await.unwrap();
}

#[tokio::test]
async fn malformed_heads_are_refused_with_their_status_and_never_reach_the_upstream() {
    let (endpoint, received, _) = scripted(vec![OK_A]).await;
    let (addr, trigger, running, _) = start(to(endpoint), |_| {}).await;
    let cases: [(&[u8], u16); 8] = [
        (b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Nul: a\0b\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
    ];
    for (request, want) in cases {
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(request).await.unwrap();
        let mut buf = Vec::new();
        let (head, _) = read_answer(&mut client, &mut buf).await;
        let shown = String::from_utf8_lossy(request);
        assert_eq!(status(&head), want, "{shown:?}: {head}");
        assert!(head.contains("connection: close"), "{shown:?}: {head}");
        assert!(closes(&mut client).await, "{shown:?}: still open");
    }
    assert!(received.lock().unwrap().is_empty(), "nothing went upstream");
    trigger.trigger();
    running.await.unwrap();
}

#[tokio::test]
async fn a_chunked_body_passes_byte_identical_and_one_past_the_limit_gets_413() {
    let (endpoint, received, _) = scripted(vec![OK_A]).await;
    let (addr, trigger, running, _) = start(to(endpoint), |c| c.timeouts.max_body = 16).await;
    let body: &[u8] = b"4;ext=1\r\nwiki\r\n6\r\npedia \r\n0\r\nX-Trailer: t\r\n\r\n";
    let mut client = TcpStream::connect(addr).await.unwrap();
    let mut request =
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    request.extend_from_slice(body);
    client.write_all(&request).await.unwrap();
    let mut buf = Vec::new();
    let (head, _) = read_answer(&mut client, &mut buf).await;
    assert_eq!(status(&head), 200, "{head}");
    let got = received.lock().unwrap()[0].clone();
    assert!(got.ends_with(body), "{:?}", String::from_utf8_lossy(&got));
    assert!(String::from_utf8_lossy(&got).contains("Transfer-Encoding: chunked\r\n"));

    // 10 + 10 bytes of content: past the 16-byte limit.
    let (head, _) = ask(&mut client, &mut buf, b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n").await;
    assert_eq!(status(&head), 413, "{head}");
    assert!(closes(&mut client).await);
    // A declared length past the limit is refused before anything goes upstream.
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_answer(&mut client, &mut Vec::new()).await;
    assert_eq!(status(&head), 413, "{head}");
    // The body past the limit came in one read with its head: nothing of it went upstream.
    assert_eq!(received.lock().unwrap().len(), 1, "the first only");
    trigger.trigger();
    running.await.unwrap();
}

#[tokio::test]
async fn an_http10_client_gets_a_chunked_answer_it_can_read() {
    let chunked: &[u8] =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let (endpoint, _, _) = scripted(vec![chunked]).await;
    let (addr, trigger, running, _) = start(to(endpoint), |_| {}).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let text = until_close(&mut client).await.to_ascii_lowercase();
    assert!(!text.contains("transfer-encoding"), "{text}");
    assert!(text.ends_with("\r\n\r\nhello"), "{text}");
    trigger.trigger();
    running.await.unwrap();
}

/// HTTP/1.0 on the fast path (ab and health checkers speak it): a client that asks to keep
/// its connection gets answers that say it stays, over one upstream connection; one that
/// does not ask gets `Connection: close` and the close; a Host-less one is sent on with an
/// empty Host.
#[tokio::test]
async fn http10_keep_alive_is_kept_and_said_and_without_it_the_connection_closes() {
    let (endpoint, received, accepted) = scripted(vec![OK_A, OK_BB]).await;
    let (addr, trigger, running, _) = start(to(endpoint), |_| {}).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    let keep = b"GET /one HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n";
    for body in [&b"a"[..], b"bb", b"bb"] {
        let (head, got) = ask(&mut client, &mut buf, keep).await;
        // HTTP/1.1's status line, as nginx answers HTTP/1.0 (hyper's path said HTTP/1.0).
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("\r\nconnection: keep-alive"), "{head}");
        assert_eq!(got, body);
    }
    assert_eq!(*accepted.lock().unwrap(), 1, "one upstream connection");
    let (head, got) = ask(&mut client, &mut buf, b"GET /last HTTP/1.0\r\n\r\n").await;
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert_eq!(got, b"bb");
    assert!(closes(&mut client).await);
    let upstream = received.lock().unwrap().clone();
    let last = String::from_utf8_lossy(&upstream[3]).to_ascii_lowercase();
    assert!(
        last.starts_with("get /last http/1.1\r\nhost: \r\n"),
        "{last}"
    );
    assert!(last.contains("\r\nvia: 1.0 ferry-"), "{last}");
    trigger.trigger();
    running.await.unwrap();
}

#[tokio::test]
async fn an_upstream_connection_closed_while_idle_is_replaced_without_an_error() {
    // The first answer says keep-alive, then the upstream closes its connection anyway.
    let closing: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na\0";
    let (endpoint, received, accepted) = scripted(vec![closing, OK_BB]).await;
    let (addr, trigger, running, _) = start(to(endpoint), |_| {}).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    let (head, _) = ask(&mut client, &mut buf, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(status(&head), 200);
    let (head, body) = ask(&mut client, &mut buf, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(
        (status(&head), body.as_slice()),
        (200, &b"bb"[..]),
        "{head}"
    );
    assert_eq!(*accepted.lock().unwrap(), 2, "a new upstream connection");
    assert_eq!(received.lock().unwrap().len(), 2);
    trigger.trigger();
    running.await.unwrap();
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_in_time_gets_504_and_one_that_breaks_off_502() {
    // An answer whose head comes and then the connection closes, before its body.
    let (endpoint, _, _) = scripted(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n\0"]).await;
    let (addr, trigger, running, _) = start(to(endpoint), |c| {
        c.timeouts.response = Duration::from_millis(300);
    })
    .await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_answer(&mut client, &mut Vec::new()).await;
    // Nothing went to the client yet: it is answered 502.
    assert_eq!(status(&head), 502, "{head}");
    // An upstream that accepts and never answers: 504 after the read timeout.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr2, trigger2, running2, _) = start(to(silent.local_addr().unwrap()), |c| {
        c.timeouts.response = Duration::from_millis(300);
    })
    .await;
    let mut client = TcpStream::connect(addr2).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_answer(&mut client, &mut Vec::new()).await;
    assert_eq!(status(&head), 504, "{head}");
    assert!(String::from_utf8_lossy(&body).contains("did not answer in time"));
    for (t, r) in [(trigger, running), (trigger2, running2)] {
        t.trigger();
        r.await.unwrap();
    }
}

#[tokio::test]
async fn a_head_that_does_not_come_in_time_closes_the_connection() {
    let (endpoint, received, _) = scripted(vec![OK_A]).await;
    let (addr, trigger, running, _) = start(to(endpoint), |c| {
        c.client_header_timeout = Duration::from_millis(300);
    })
    .await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    assert!(closes(&mut client).await, "half a head is not waited for");
    assert!(received.lock().unwrap().is_empty());
    trigger.trigger();
    running.await.unwrap();
}

#[tokio::test]
async fn h2c_with_prior_knowledge_is_served_by_hyper() {
    let (endpoint, received, _) = scripted(vec![OK_A]).await;
    let (addr, trigger, running, _) = start(to(endpoint), |_| {}).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://a/h2")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let answer = sender.send_request(req).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.version(), http::Version::HTTP_2);
    assert!(String::from_utf8_lossy(&received.lock().unwrap()[0]).starts_with("GET /h2 "));
    trigger.trigger();
    running.await.unwrap();
}

/// An answer larger than the socket buffers, over TLS on a keep-alive connection, read only
/// once the gateway has taken all of it from the upstream: its tail must leave the TLS
/// connection's buffer without the client sending anything (the answer is flushed), and the
/// next request on the connection is served.
#[tokio::test]
async fn a_large_answer_over_tls_arrives_whole_before_the_next_request() {
    const SIZE: usize = 4 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap();
    let (taken, mut all_taken) = tokio::sync::mpsc::channel::<()>(4);
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let body = vec![b'x'; SIZE];
        while read_request(&mut stream, &mut buf).await.is_some() {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n");
            stream.write_all(head.as_bytes()).await.unwrap();
            stream.write_all(&body).await.unwrap();
            let _ = taken.send(()).await;
        }
    });
    let (_, tls_addr, trigger, running, _) = start_both(to(endpoint), |_| {}).await;
    let mut config = ferry_runtime::tls::any_server_client_config().unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(tls_addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("shop.example").unwrap();
    let mut client = connector.connect(name, tcp).await.unwrap();
    for round in 0..2 {
        client
            .write_all(b"GET /big HTTP/1.1\r\nHost: shop.example\r\n\r\n")
            .await
            .unwrap();
        // Nothing is read until the upstream's last byte went into the gateway.
        tokio::time::timeout(Duration::from_secs(10), all_taken.recv())
            .await
            .expect("the upstream's answer taken within 10 s");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut byte))
                .await
                .expect("the head within 10 s")
                .unwrap();
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 200 OK\r\n"), "round {round}");
        let mut body = vec![0u8; SIZE];
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut body))
            .await
            .unwrap_or_else(|_| panic!("round {round}: the body's tail stayed in the gateway"))
            .unwrap();
        assert!(body.iter().all(|b| *b == b'x'));
    }
    trigger.trigger();
    running.await.unwrap();
}

/// A TLS client that offers only `http/1.0` by ALPN (`curl --http1.0`) gets its handshake
/// (nginx's list has it) and its answer, on the fast path.
#[tokio::test]
async fn an_http10_client_over_tls_is_served() {
    let (endpoint, _, _) = scripted(vec![OK_BB]).await;
    let (_, tls_addr, trigger, running, _) = start_both(to(endpoint), |_| {}).await;
    let mut config = ferry_runtime::tls::any_server_client_config().unwrap();
    config.alpn_protocols = vec![b"http/1.0".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(tls_addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("shop.example").unwrap();
    let mut client = connector.connect(name, tcp).await.unwrap();
    assert_eq!(client.get_ref().1.alpn_protocol(), Some(&b"http/1.0"[..]));
    client
        .write_all(b"GET / HTTP/1.0\r\nHost: shop.example\r\n\r\n")
        .await
        .unwrap();
    let text = until_close(&mut client).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nbb"), "{text}");
    trigger.trigger();
    running.await.unwrap();
}

/// An upstream that answers (413) before taking a large body, and closes: the client gets
/// that answer, not a 502, and its connection closes (its body was not read whole).
#[tokio::test]
async fn an_upstream_answering_before_the_whole_body_is_passed_on() {
    early_answer(TOO_LARGE, true).await;
}

/// The same from an upstream that keeps its connection open and stops reading (as a server
/// that refuses an upload and waits for the client to stop): the answer is seen while the
/// body waits for room, not after the send timeout.
#[tokio::test]
async fn an_upstream_answering_early_and_reading_no_more_is_passed_on_at_once() {
    early_answer(TOO_LARGE, false).await;
    // Whatever the answer: one that is not a refusal is passed on too, not held until the
    // send timeout ends the exchange with a 504.
    early_answer(
        b"HTTP/1.1 303 See Other\r\nLocation: /x\r\nContent-Length: 3\r\n\r\nbig",
        false,
    )
    .await;
}

const TOO_LARGE: &[u8] = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig";

/// An upstream that reads each request's head only, answers it with `answer` at once, and
/// then closes (`closes`: with the body unread, a reset) or keeps the connection open,
/// reading nothing more.
async fn upstream_answering_early(answer: &'static [u8], closes: bool) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut chunk = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut chunk).await.unwrap();
                head.extend_from_slice(&chunk[..n]);
            }
            let _ = stream.write_all(answer).await;
            if closes {
                drop(stream);
            } else {
                tokio::spawn(async move {
                    let _open = stream;
                    std::future::pending::<()>().await;
                });
            }
        }
    });
    endpoint
}

/// An upstream that refuses an upload from its head (a 401) while the client is slow to send
/// the body: the answer reaches the client then, not once it has sent the whole body (or
/// after the client body timeout, 60 s).
#[tokio::test]
async fn an_upstream_answering_while_the_client_is_slow_to_send_is_heard_at_once() {
    let endpoint = upstream_answering_early(
        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\nno",
        false,
    )
    .await;
    let (addr, trigger, running, _) = start(to(endpoint), |_| {}).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    // Ten bytes of a thousand, then nothing more (the connection stays open).
    client
        .write_all(b"PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n0123456789")
        .await
        .unwrap();
    let text = until_close(&mut client).await.to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 401 "), "{text}");
    assert!(
        text.contains("connection: close") && text.ends_with("no"),
        "{text}"
    );
    trigger.trigger();
    running.await.unwrap();
}

/// A 16 MiB upload to an upstream that sends `answer` (its body `big`) after the head and
/// then closes (with unread bytes: a reset, so writes upstream fail) or reads no more.
async fn early_answer(answer: &'static [u8], closes: bool) {
    let endpoint = upstream_answering_early(answer, closes).await;
    let (addr, trigger, running, _) = start(to(endpoint), |c| c.timeouts.max_body = 64 << 20).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    const SIZE: usize = 16 << 20;
    let head = format!("PUT /up HTTP/1.1\r\nHost: a\r\nContent-Length: {SIZE}\r\n\r\n");
    client.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, writer) = client.into_split();
    let upload = ferry_testing::peers::upload(writer, SIZE);
    let text = until_close(&mut reader).await.to_ascii_lowercase();
    let status = String::from_utf8_lossy(&answer[..12]).to_ascii_lowercase();
    assert!(text.starts_with(&status), "{text}");
    assert!(
        text.contains("connection: close") && text.ends_with("big"),
        "{text}"
    );
    upload.abort();
    trigger.trigger();
    running.await.unwrap();
}

/// A request without a body on a reused connection that breaks before any answer is sent
/// again on a new connection only when its method is idempotent: a POST is not (it may have
/// been processed), and gets 502.
#[tokio::test]
async fn a_post_is_not_sent_twice_when_its_reused_connection_breaks() {
    let closing: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na";
    // The second request read is dropped unanswered with its connection.
    let (endpoint, received, _) = scripted(vec![closing, b"", OK_BB]).await;
    let (addr, trigger, running, _) = start(to(endpoint), |_| {}).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    let (head, _) = ask(&mut client, &mut buf, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(status(&head), 200);
    let (head, _) = ask(
        &mut client,
        &mut buf,
        b"POST /charge HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(status(&head), 502, "{head}");
    assert_eq!(
        received.lock().unwrap().len(),
        2,
        "the POST went upstream once"
    );
    trigger.trigger();
    running.await.unwrap();
}

/// Shutdown beginning while a request waits for its answer: the answer says
/// `Connection: close`, and the connection closes after it.
#[tokio::test]
async fn an_answer_written_after_shutdown_began_closes_the_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap();
    let (arrived, mut request_in) = tokio::sync::mpsc::channel::<()>(1);
    let (go, mut answer) = tokio::sync::mpsc::channel::<()>(1);
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        read_request(&mut stream, &mut buf).await.unwrap();
        arrived.send(()).await.unwrap();
        answer.recv().await;
        stream.write_all(OK_A).await.unwrap();
        // Held open: the gateway's client connection must close by itself.
        let _ = read_request(&mut stream, &mut buf).await;
    });
    let (addr, trigger, running, _) = start(to(endpoint), |_| {}).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    request_in.recv().await.unwrap();
    trigger.trigger();
    go.send(()).await.unwrap();
    let (head, body) = read_answer(&mut client, &mut Vec::new()).await;
    assert_eq!((status(&head), body.as_slice()), (200, &b"a"[..]));
    assert!(head.contains("connection: close"), "{head}");
    assert!(closes(&mut client).await);
    running.await.unwrap();
}

/// A client connection idle past the upstream pool's idle limit closes the upstream
/// connection it kept (the upstream would close it anyway), and stays open itself.
#[tokio::test]
async fn an_idle_client_connection_closes_its_stale_upstream_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap();
    let (closed, mut upstream_closed) = tokio::sync::mpsc::channel::<()>(1);
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        while read_request(&mut stream, &mut buf).await.is_some() {
            stream.write_all(OK_A).await.unwrap();
        }
        closed.send(()).await.unwrap();
    });
    let (addr, trigger, running, _) = start(to(endpoint), |c| {
        c.timeouts.pool_idle = Duration::from_millis(200);
    })
    .await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_answer(&mut client, &mut Vec::new()).await;
    assert_eq!(status(&head), 200);
    tokio::time::timeout(Duration::from_secs(10), upstream_closed.recv())
        .await
        .expect("the kept upstream connection closed within 10 s");
    // The client connection is still served (over a new upstream connection: the test's
    // upstream accepts one, so a 502 would say the old one was used).
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_answer(&mut client, &mut Vec::new()).await;
    assert_eq!(status(&head), 502, "{head}");
    trigger.trigger();
    running.await.unwrap();
}

/// A client that closes its connection while its answer is awaited has left: the upstream
/// connection goes at once (nginx's 499), not after the response timeout.
#[tokio::test]
async fn a_client_leaving_before_its_answer_ends_the_upstream_request() {
    // The request comes, no answer goes; then the gateway's close.
    let (endpoint, closed_rx) = ferry_testing::peers::silent().await;
    let (addr, trigger, running, _) = start(to(endpoint), |_| {}).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    // Once the request is upstream, the client goes.
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        drop(client);
        closed_rx.await.unwrap()
    })
    .await
    .expect("the upstream connection closed within 10 s of the client's");
    assert!(seen.starts_with(b"GET /slow HTTP/1.1\r\n"), "{seen:?}");
    trigger.trigger();
    running.await.unwrap();
}
