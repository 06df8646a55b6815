//! HTTP/1.1 through both sidecars on the fast path, seen on the wire: raw bytes from the
//! client app, a raw app behind the server side that records what reached it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// What the raw app saw and how it answers.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    /// Each request as it arrived: its head and its body bytes as framed.
    requests: Mutex<Vec<(String, Vec<u8>)>>,
}

/// How the raw app answers a request.
#[derive(Clone, Copy)]
enum Answer {
    /// 200 with the request's target as a body of known length.
    Target,
    /// 200, the body `abc` chunked, as it is to come out of the client side.
    Chunked,
    /// 200, then the connection closes without a `Connection: close` to say so.
    CloseAfter,
    /// A WebSocket switch, then an echo of what comes.
    Switch,
}

/// A raw HTTP/1.1 app: reads heads with httparse and bodies by their framing, answers each
/// request as `answer` says.
async fn raw_app(answer: Answer) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            state.connections.fetch_add(1, Ordering::SeqCst);
            let state = state.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some((head, body, target)) = read_request(&mut stream, &mut buf).await {
                    state.requests.lock().unwrap().push((head, body));
                    let out = match answer {
                        Answer::Target => format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{target}",
                            target.len()
                        ),
                        Answer::Chunked => {
                            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                                .to_owned()
                        }
                        Answer::CloseAfter => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_owned(),
                        Answer::Switch => "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                             Upgrade: websocket\r\n\r\n"
                            .to_owned(),
                    };
                    if stream.write_all(out.as_bytes()).await.is_err() {
                        return;
                    }
                    match answer {
                        Answer::CloseAfter => return,
                        Answer::Switch => {
                            let mut chunk = [0u8; 64];
                            while let Ok(n) = stream.read(&mut chunk).await {
                                if n == 0 || stream.write_all(&chunk[..n]).await.is_err() {
                                    return;
                                }
                            }
                            return;
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// One request off `stream`: its head, its body bytes as framed (chunked ones up to the last
/// chunk's end) and its target; `None` at the end.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Option<(String, Vec<u8>, String)> {
    let (len, target, length, chunked) = loop {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut fields);
        if let Ok(httparse::Status::Complete(len)) = req.parse(buf) {
            let header = |name: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let length: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
            let chunked = header("transfer-encoding").is_some();
            break (len, req.path.unwrap().to_owned(), length, chunked);
        }
        if !fill(stream, buf).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..len]).into_owned();
    buf.drain(..len);
    let body_len = loop {
        if chunked {
            if let Some(end) = chunked_end(buf) {
                break end;
            }
        } else if buf.len() >= length {
            break length;
        }
        if !fill(stream, buf).await {
            return None;
        }
    };
    let body = buf.drain(..body_len).collect();
    Some((head, body, target))
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Where a chunked body in `buf` ends: after the last chunk (`0`) and its trailer section
/// (good enough for the bodies these tests send).
fn chunked_end(buf: &[u8]) -> Option<usize> {
    let last = if buf.starts_with(b"0\r\n") {
        0
    } else {
        find(buf, b"\n0\r\n")? + 1
    };
    find(&buf[last..], b"\r\n\r\n").map(|at| last + at + 4)
}

/// One answer off `stream`: its head and its body as framed (by length, chunked up to the
/// last chunk, or until close); `None` when the connection ended first.
async fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let (len, length, chunked) = loop {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut res = httparse::Response::new(&mut fields);
        if let Ok(httparse::Status::Complete(len)) = res.parse(buf) {
            let header = |name: &str| {
                res.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let length: Option<usize> = header("content-length").map(|v| v.parse().unwrap());
            let chunked = header("transfer-encoding").is_some();
            let length = if res.code == Some(101) {
                Some(0)
            } else {
                length
            };
            break (len, length, chunked);
        }
        if !fill(stream, buf).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..len]).into_owned();
    buf.drain(..len);
    let body_len = loop {
        match (chunked, length) {
            (true, _) => {
                if let Some(end) = chunked_end(buf) {
                    break end;
                }
            }
            (false, Some(n)) if buf.len() >= n => break n,
            _ => {}
        }
        if !fill(stream, buf).await {
            if length.is_none() && !chunked {
                break buf.len();
            }
            return None;
        }
    };
    Some((head, buf.drain(..body_len).collect()))
}

/// The client side (the app's own sidecar) and the server side for `app`, over mTLS.
async fn through(app: SocketAddr, authorize: Arc<dyn Authorize>) -> (Running, Running) {
    let ca = Ca::new();
    pair(
        &ca,
        app,
        &id("shop", "api"),
        MtlsMode::Strict,
        authorize,
        false,
    )
    .await
}

/// Whether `stream` is closed by the other side (after what was read).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut rest = [0u8; 16];
    matches!(
        tokio::time::timeout(DEADLINE, stream.read(&mut rest)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn keep_alive_requests_ride_one_connection_on_every_hop_and_outlive_the_apps_connection() {
    let (app, seen) = raw_app(Answer::Target).await;
    let (client, _server) = through(app, Arc::new(AllowAll)).await;
    for _ in 0..2 {
        let mut stream = TcpStream::connect(client.addrs.outbound).await.unwrap();
        let mut buf = Vec::new();
        for n in 0..3 {
            let request = format!("GET /items/{n} HTTP/1.1\r\nHost: api.shop.svc\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let (head, body) = read_answer(&mut stream, &mut buf).await.unwrap();
            assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
            assert_eq!(body, format!("/items/{n}").as_bytes());
        }
    }
    // Six requests over two of the app's connections: one mTLS connection between the
    // sidecars (kept, then parked and taken by the second), one connection to the app.
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    assert_eq!(seen.requests.lock().unwrap().len(), 6);
}

#[tokio::test]
async fn a_chunked_body_passes_both_ways_as_it_was_framed() {
    let (app, seen) = raw_app(Answer::Chunked).await;
    let (client, _server) = through(app, Arc::new(AllowAll)).await;
    let mut stream = TcpStream::connect(client.addrs.outbound).await.unwrap();
    let body = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: api.shop.svc\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let (head, answer) = read_answer(&mut stream, &mut buf).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    assert_eq!(answer, b"3\r\nabc\r\n0\r\n\r\n");
    let requests = seen.requests.lock().unwrap();
    let (app_head, app_body) = &requests[0];
    assert!(
        app_head.contains("Transfer-Encoding: chunked\r\n"),
        "{app_head}"
    );
    // The chunk extension and the trailer went through untouched: never re-chunked.
    assert_eq!(
        String::from_utf8_lossy(app_body),
        "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    );
}

#[tokio::test]
async fn heads_that_break_http1_rules_are_refused_and_never_reach_the_app() {
    let (app, seen) = raw_app(Answer::Target).await;
    let (client, _server) = through(app, Arc::new(AllowAll)).await;
    let cases = [
        (
            "obs-fold",
            "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n",
            400,
        ),
        ("bare LF", "GET / HTTP/1.1\nHost: a\n\n", 400),
        (
            "NUL",
            "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x002\r\n\r\n",
            400,
        ),
        (
            "length and chunked",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "two lengths",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            400,
        ),
        ("no Host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),
        (
            "two Hosts",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            400,
        ),
        (
            "gzip alone",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
        ),
    ];
    for (what, request, status) in cases {
        let mut stream = TcpStream::connect(client.addrs.outbound).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let (head, _) = read_answer(&mut stream, &mut buf)
            .await
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {head}"
        );
        assert!(head.contains("Connection: close\r\n"), "{what}: {head}");
        assert!(
            closed(&mut stream).await,
            "{what}: the connection stays open"
        );
    }
    assert_eq!(seen.requests.lock().unwrap().len(), 0);
}

#[tokio::test]
async fn http_1_0_gets_a_chunked_answer_s_content_and_a_kept_connection_said() {
    let (app, seen) = raw_app(Answer::Chunked).await;
    let (client, _server) = through(app, Arc::new(AllowAll)).await;
    let mut stream = TcpStream::connect(client.addrs.outbound).await.unwrap();
    stream
        .write_all(b"GET /old HTTP/1.0\r\nHost: api.shop.svc\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("the answer ends with the connection")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    // A 1.0 client cannot read chunked: the content alone, until the close; the fast path's
    // status line is HTTP/1.1's (hyper's path answered HTTP/1.0).
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    assert!(!answer.contains("chunked"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nabc"), "{answer}");
    let (head, _) = seen.requests.lock().unwrap()[0].clone();
    assert!(head.starts_with("GET /old HTTP/1.1\r\n"), "{head}");

    // Asking to keep the connection: kept, and said, over one connection to the app.
    let (app, seen) = raw_app(Answer::Target).await;
    let (client, _server) = through(app, Arc::new(AllowAll)).await;
    let mut stream = TcpStream::connect(client.addrs.outbound).await.unwrap();
    let mut buf = Vec::new();
    for target in ["/a", "/bb"] {
        let request = format!(
            "GET {target} HTTP/1.0\r\nHost: api.shop.svc\r\nConnection: keep-alive\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let (head, body) = read_answer(&mut stream, &mut buf).await.expect("an answer");
        assert!(head.contains("Connection: keep-alive\r\n"), "{head}");
        assert_eq!(body, target.as_bytes());
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_websocket_upgrade_becomes_a_tunnel_through_both_sidecars() {
    let (app, seen) = raw_app(Answer::Switch).await;
    let (client, _server) = through(app, Arc::new(AllowAll)).await;
    let mut stream = TcpStream::connect(client.addrs.outbound).await.unwrap();
    stream
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: api.shop.svc\r\nConnection: Upgrade\r\n\
              Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    let (head, _) = read_answer(&mut stream, &mut buf).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("Upgrade: websocket\r\n"), "{head}");
    let app_head = seen.requests.lock().unwrap()[0].0.clone();
    assert!(app_head.contains("Upgrade: websocket\r\n"), "{app_head}");
    assert!(app_head.contains("Sec-WebSocket-Key: "), "{app_head}");
    for word in ["ping", "pong"] {
        stream.write_all(word.as_bytes()).await.unwrap();
        while buf.len() < word.len() {
            assert!(fill(&mut stream, &mut buf).await, "the tunnel closed");
        }
        assert_eq!(std::mem::take(&mut buf), word.as_bytes());
    }
}

#[tokio::test]
async fn an_app_that_closes_its_kept_connection_gets_the_next_request_on_a_new_one() {
    let (app, seen) = raw_app(Answer::CloseAfter).await;
    let (client, _server) = through(app, Arc::new(AllowAll)).await;
    let mut stream = TcpStream::connect(client.addrs.outbound).await.unwrap();
    let mut buf = Vec::new();
    for n in 0..3 {
        let request = format!("GET /{n} HTTP/1.1\r\nHost: api.shop.svc\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let (head, body) = read_answer(&mut stream, &mut buf).await.unwrap();
        assert!(head.starts_with("HTTP/1.1 200 "), "request {n}: {head}");
        assert_eq!(body, b"ok");
    }
    assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn policies_match_the_normalized_path_and_the_app_gets_that_path() {
    let (app, seen) = raw_app(Answer::Target).await;
    let (client, _server) = through(app, Arc::new(DenyPath("/admin"))).await;
    let mut stream = TcpStream::connect(client.addrs.outbound).await.unwrap();
    let mut buf = Vec::new();
    for (target, status, body) in [
        ("/x/../admin", 403, None),
        ("/%61dmin?q=1", 403, None),
        ("/items/./a?q=1", 200, Some("/items/a?q=1")),
        ("/items", 200, Some("/items")),
    ] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: api.shop.svc\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let (head, answer) = read_answer(&mut stream, &mut buf).await.unwrap();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{target}: {head}"
        );
        if let Some(body) = body {
            assert_eq!(String::from_utf8_lossy(&answer), body, "{target}");
        }
    }
    assert_eq!(seen.requests.lock().unwrap().len(), 2);
}

/// A destination whose answer the test changes.
#[derive(Debug)]
struct Changing(watch::Sender<crate::discover::Answer>);

impl Discover for Changing {
    fn get(&self, _: &str) -> watch::Receiver<crate::discover::Answer> {
        self.0.subscribe()
    }
}

#[tokio::test]
async fn a_kept_connection_is_not_reused_once_its_endpoint_is_listed_with_another_identity() {
    let ca = Ca::new();
    let app = echo_app().await;
    let api = id("shop", "api");
    let server = server_side(&ca, app.port(), MtlsMode::Permissive).await;
    // First listed without a sidecar: reached in plaintext.
    let endpoint = server.addrs.inbound;
    let (plain, _) = fixed(&[(endpoint, None)], None);
    let (meshed, _) = fixed(&[(endpoint, Some(&api))], None);
    let answer = |d: &Fixed| d.0[SERVICE].clone();
    let (answers, _) = watch::channel(answer(&plain));
    let answers = Arc::new(Changing(answers));
    let identities = Arc::new(Identities::default());
    let (tx, _) = watch_of(ca.issue(&id("shop", "web")));
    let client = sidecar(
        tx,
        answers.clone(),
        identities.clone(),
        Arc::new(AllowAll),
        1,
        MtlsMode::Permissive,
        false,
    )
    .await;
    let mut stream = TcpStream::connect(client.addrs.outbound).await.unwrap();
    let mut buf = Vec::new();
    let mut ask = async |stream: &mut TcpStream| {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: api.shop.svc\r\n\r\n")
            .await
            .unwrap();
        let (head, body) = read_answer(stream, &mut buf).await.unwrap();
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        String::from_utf8(body).unwrap()
    };
    assert!(
        ask(&mut stream).await.starts_with("xfcc=- "),
        "plaintext first"
    );
    // Listed anew with its identity: the next request goes over mTLS, not over the plaintext
    // connection this app connection keeps.
    identities.add(endpoint, &api);
    answers.0.send_replace(answer(&meshed));
    let body = ask(&mut stream).await;
    assert!(
        body.starts_with("xfcc=By=spiffe://cluster.local/ns/shop/sa/api;URI=spiffe://cluster.local/ns/shop/sa/web "),
        "{body}"
    );
}

#[tokio::test]
async fn the_response_timeout_bounds_a_request_whose_body_stalls_with_504() {
    let (app, seen) = raw_app(Answer::Target).await;
    let ca = Ca::new();
    let api = id("shop", "api");
    let server = server_side(&ca, app.port(), MtlsMode::Strict).await;
    let (discover, identities) = fixed(&[(server.addrs.inbound, Some(&api))], None);
    let (tx, _) = watch_of(ca.issue(&id("shop", "web")));
    let given = (
        tx,
        discover as Arc<dyn Discover>,
        identities,
        Arc::new(AllowAll) as _,
    );
    let client = sidecar_with(given, 1, MtlsMode::Permissive, false, |config| {
        config.outbound.response_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let mut stream = TcpStream::connect(client.addrs.outbound).await.unwrap();
    // Ten bytes of a thousand, then nothing: each read waits for the next, none ever times
    // out on its own; the whole exchange does.
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: api.shop.svc\r\nContent-Length: 1000\r\n\r\n0123456789")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let (head, _) = tokio::time::timeout(DEADLINE, read_answer(&mut stream, &mut buf))
        .await
        .expect("an answer within the deadline")
        .expect("an answer before the close");
    assert!(head.starts_with("HTTP/1.1 504 "), "{head}");
    assert!(
        closed(&mut stream).await,
        "the body was not read whole: the connection closes"
    );
    assert_eq!(
        seen.requests.lock().unwrap().len(),
        0,
        "the app never had the whole request"
    );
}

#[tokio::test]
async fn an_app_refusing_a_large_upload_early_is_heard_through_both_sidecars() {
    // Reads the head only, answers 413, keeps the connection and reads no more.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while find(&head, b"\r\n\r\n").is_none() {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let refusal = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig";
                let _ = stream.write_all(refusal).await;
                std::future::pending::<()>().await;
            });
        }
    });
    let (client, _server) = through(app, Arc::new(AllowAll)).await;
    let mut stream = TcpStream::connect(client.addrs.outbound).await.unwrap();
    const SIZE: usize = 32 << 20;
    let head = format!("PUT /up HTTP/1.1\r\nHost: api.shop.svc\r\nContent-Length: {SIZE}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, writer) = stream.into_split();
    let upload = ferry_testing::peers::upload(writer, SIZE);
    let mut all = Vec::new();
    tokio::time::timeout(DEADLINE, reader.read_to_end(&mut all))
        .await
        .expect("answered and closed within the deadline, not after the 60 s timeouts")
        .unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(
        text.contains("Connection: close\r\n") && text.ends_with("big"),
        "{text}"
    );
    upload.abort();
}

#[tokio::test]
async fn an_app_connection_closed_while_its_answer_is_awaited_ends_the_request_on_every_hop() {
    // Takes the request, never answers, and reports when its connection closes.
    let (app, closed_rx) = ferry_testing::peers::silent().await;
    let (client, _server) = through(app, Arc::new(AllowAll)).await;
    let mut stream = TcpStream::connect(client.addrs.outbound).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: api.shop.svc\r\n\r\n")
        .await
        .unwrap();
    // The app has the request once it is through both sidecars; then the client goes.
    let seen = tokio::time::timeout(DEADLINE, async {
        drop(stream);
        closed_rx.await.unwrap()
    })
    .await
    .expect("the app's connection closed, not held until an answer that never comes");
    assert!(
        String::from_utf8_lossy(&seen).starts_with("GET /slow HTTP/1.1\r\n"),
        "{seen:?}"
    );
}
