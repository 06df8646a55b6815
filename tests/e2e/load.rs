//! `ferry load` against purpose-built servers on 127.0.0.1:0: exact request counts, HTTP/1.1,
//! HTTP/2 and TLS, status and failure accounting, the open model's correction for a stall,
//! `--compare`, and the JSON and HTML reports. Runs are short (a second or two) and small.

use std::future::Future;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use ferry_load::{Config, Results};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: ferry_load::Args,
}

fn config(argv: &[&str]) -> Config {
    let cli = Cli::parse_from(std::iter::once("load").chain(argv.iter().copied()));
    Config::from_args(cli.args).unwrap()
}

fn load(argv: &[&str]) -> Results {
    ferry_load::run(&config(argv)).unwrap()
}

fn ferry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
}

type Reply = Result<Response<Full<Bytes>>, std::io::Error>;

/// A test server with its own runtime; stops when dropped.
struct Server {
    addr: SocketAddr,
    /// Requests that reached the handler.
    hits: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// An HTTP/1.1 + h2c server (HTTP/1.1 + h2 by ALPN with `tls`) answering with `handler`.
fn serve<F, Fut>(tls: Option<Arc<rustls::ServerConfig>>, handler: F) -> Server
where
    F: Fn(Request<Incoming>, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let runtime = runtime();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let handler = Arc::new(handler);
    let counter = hits.clone();
    runtime.spawn(async move {
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (handler, hits, acceptor) = (handler.clone(), counter.clone(), acceptor.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let n = hits.fetch_add(1, Ordering::SeqCst);
                    handler(req, n)
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    });
    Server {
        addr,
        hits,
        _runtime: runtime,
    }
}

fn ok(body: &'static str) -> Reply {
    Ok(Response::new(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))))
}

fn status(code: u16) -> Reply {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::from_u16(code).unwrap();
    Ok(res)
}

/// A raw TCP server: `each` gets every accepted connection.
fn raw<F, Fut>(each: F) -> (SocketAddr, tokio::runtime::Runtime)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let runtime = runtime();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(each(stream));
        }
    });
    (addr, runtime)
}

/// Reads until the end of the request head, or until the client goes away.
async fn read_head(stream: &mut tokio::net::TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

#[test]
fn requests_mode_sends_exactly_n_over_http1_and_h2() {
    let server = serve(None, |_, _| async { ok("hello") });
    let r = load(&["-n", "537", "-c", "7", "-t", "2", &server.url("/")]);
    assert_eq!(server.hits.load(Ordering::SeqCst), 537);
    assert_eq!(r.target.responses, 537);
    assert_eq!(r.target.requests, 537);
    assert_eq!(r.target.status_codes.get("200"), Some(&537));
    assert_eq!(r.target.failures(), 0);
    assert_eq!(r.target.bytes_received, 537 * 5);
    assert_eq!(r.target.protocol, "HTTP/1.1");

    // HTTP/2 with several streams per connection; a Host header becomes :authority.
    let authorities = Arc::new(Mutex::new(Vec::new()));
    let seen = authorities.clone();
    let server = serve(None, move |req, _| {
        seen.lock().unwrap().push((
            req.version(),
            req.uri().authority().map(|a| a.to_string()),
            req.method().clone(),
        ));
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"payload");
            ok("hi")
        }
    });
    let r = load(&[
        "--h2",
        "--streams",
        "4",
        "-n",
        "301",
        "-c",
        "3",
        "-t",
        "1",
        "-H",
        "Host: shop.example.com",
        "-m",
        "POST",
        "--body",
        "payload",
        &server.url("/orders"),
    ]);
    assert_eq!(server.hits.load(Ordering::SeqCst), 301);
    assert_eq!(r.target.responses, 301);
    assert_eq!(r.target.protocol, "HTTP/2");
    let seen = authorities.lock().unwrap();
    assert!(seen.iter().all(|(v, a, m)| *v == http::Version::HTTP_2
        && a.as_deref() == Some("shop.example.com")
        && m == http::Method::POST));
}

#[test]
fn open_model_requests_mode_is_exact_too() {
    let server = serve(None, |_, _| async { ok("") });
    let r = load(&[
        "--rate",
        "400",
        "-n",
        "123",
        "-c",
        "3",
        "-t",
        "1",
        &server.url("/"),
    ]);
    assert_eq!(server.hits.load(Ordering::SeqCst), 123);
    assert_eq!(r.target.responses, 123);
    assert_eq!(r.target.target_rate, Some(400.0));
}

/// A self-signed certificate for `load.test` and a server config offering h2 and HTTP/1.1.
fn tls_server() -> (Arc<rustls::ServerConfig>, String) {
    crate::tls_server_config("load.test")
}

#[test]
fn tls_with_sni_and_alpn_over_http1_and_h2() {
    let (tls, pem) = tls_server();
    let versions = Arc::new(Mutex::new(Vec::new()));
    let seen = versions.clone();
    let server = serve(Some(tls), move |req, _| {
        seen.lock().unwrap().push(req.version());
        async { ok("secret") }
    });
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let url = format!("https://{}/", server.addr);
    let ca = ca.to_str().unwrap();

    // Verified against --cacert, with the name from --sni (the URL is an IP).
    let r = load(&[
        "-n",
        "20",
        "-c",
        "2",
        "-t",
        "1",
        "--cacert",
        ca,
        "--sni",
        "load.test",
        &url,
    ]);
    assert_eq!(r.target.responses, 20);
    let r = load(&[
        "--h2",
        "-n",
        "20",
        "-c",
        "2",
        "-t",
        "1",
        "--cacert",
        ca,
        "--sni",
        "load.test",
        &url,
    ]);
    assert_eq!(r.target.responses, 20);
    {
        let versions = versions.lock().unwrap();
        assert_eq!(versions.len(), 40);
        assert!(versions[..20].iter().all(|v| *v == http::Version::HTTP_11));
        assert!(versions[20..].iter().all(|v| *v == http::Version::HTTP_2));
    }

    // --insecure needs no CA.
    let r = load(&["-n", "5", "-c", "1", "-t", "1", "--insecure", &url]);
    assert_eq!(r.target.responses, 5);

    // The wrong name, or no trust in the CA, stops the run before it starts.
    let wrong = ferry_load::run(&config(&[
        "-n",
        "5",
        "--cacert",
        ca,
        "--sni",
        "other.test",
        &url,
    ]))
    .unwrap_err();
    assert!(matches!(wrong, ferry_load::Error::Tls { .. }), "{wrong}");
    let untrusted = ferry_load::run(&config(&["-n", "5", "--sni", "load.test", &url])).unwrap_err();
    assert!(untrusted.to_string().contains("TLS"), "{untrusted}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 45);
}

#[test]
fn status_codes_are_counted_per_code() {
    let server = serve(None, |_, n| async move {
        match n % 4 {
            0 => status(200),
            1 => status(404),
            2 => status(503),
            _ => status(200),
        }
    });
    let r = load(&["-n", "400", "-c", "1", "-t", "1", &server.url("/")]);
    let codes: Vec<(&str, u64)> = r
        .target
        .status_codes
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(codes, vec![("200", 200), ("404", 100), ("503", 100)]);
    assert_eq!(r.target.failures(), 0);
}

#[test]
fn a_server_that_resets_counts_as_reset_over_http1_and_h2() {
    // Failing the service makes hyper close an HTTP/1.1 connection without an answer and
    // reset an HTTP/2 stream.
    let server = serve(None, |_, _| async { Err(std::io::Error::other("no")) });
    for h2 in [false, true] {
        let mut argv = vec!["-n", "10", "-c", "2", "-t", "1"];
        if h2 {
            argv.push("--h2");
        }
        let url = server.url("/");
        argv.push(&url);
        let r = load(&argv);
        assert_eq!(
            r.target.errors["reset"], 10,
            "h2: {h2}: {:?}",
            r.target.errors
        );
        assert_eq!(r.target.responses, 0);
    }

    // A TCP reset right after the request.
    let (addr, _rt) = raw(|mut stream| async move {
        if read_head(&mut stream).await {
            #[allow(deprecated)] // a zero linger never blocks: it sends RST at once
            stream.set_linger(Some(Duration::ZERO)).unwrap();
            drop(stream);
        }
    });
    let r = load(&["-n", "6", "-c", "2", "-t", "1", &format!("http://{addr}/")]);
    assert_eq!(r.target.errors["reset"], 6, "{:?}", r.target.errors);
}

#[test]
fn a_server_that_never_answers_counts_as_timeout() {
    let server = serve(None, |_, _| async {
        std::future::pending::<()>().await;
        ok("")
    });
    let r = load(&[
        "-n",
        "4",
        "-c",
        "2",
        "-t",
        "1",
        "--timeout",
        "200ms",
        &server.url("/"),
    ]);
    assert_eq!(r.target.errors["timeout"], 4, "{:?}", r.target.errors);
    assert_eq!(r.target.responses, 0);
}

#[test]
fn garbage_counts_as_protocol_and_a_closed_port_as_connect() {
    let (addr, _rt) = raw(|mut stream| async move {
        if read_head(&mut stream).await {
            let _ = stream.write_all(b"NOT HTTP AT ALL\r\n\r\n").await;
        }
    });
    let r = load(&["-n", "5", "-c", "1", "-t", "1", &format!("http://{addr}/")]);
    assert_eq!(r.target.errors["protocol"], 5, "{:?}", r.target.errors);

    // The listener takes the first connection (the reachability check) and then goes away:
    // every request after that fails to connect. The run's first connection may reach the
    // kernel's accept queue before the listener is dropped (the check returns as soon as it
    // connects); the listener's close then resets it. With one connection at a time, that
    // can happen to one request only.
    let runtime = runtime();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        let first = listener.accept().await;
        drop(listener);
        drop(first);
    });
    let r = load(&["-n", "5", "-c", "1", "-t", "1", &format!("http://{addr}/")]);
    let errors = &r.target.errors;
    let connect = errors.get("connect").copied().unwrap_or(0);
    let reset = errors.get("reset").copied().unwrap_or(0);
    assert!(connect >= 4 && connect + reset == 5, "{errors:?}");
}

#[test]
fn open_model_counts_a_stall_in_the_tail() {
    // The 40th request stalls for 300 ms; every other answer is immediate.
    let server = serve(None, |_, n| async move {
        if n == 40 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        ok("")
    });
    let r = load(&[
        "--rate",
        "100",
        "-d",
        "1500ms",
        "-c",
        "2",
        "-t",
        "1",
        &server.url("/"),
    ]);
    let l = &r.target.latency_ms;
    assert!(l.max >= 250.0, "the stall itself: {l:?}");
    assert!(l.p99_9 >= 250.0, "{l:?}");
    // The requests that should have gone out on that connection during the stall waited for
    // it: wrk2's correction counts each from its intended send time.
    let h = &r.histograms[0];
    let delayed = h.count_between(100_000, u64::MAX);
    assert!(delayed >= 6, "only {delayed} requests saw the stall: {l:?}");
    // The schedule goes on through the stall: most of the rate is still reached. (Widened from
    // 20 %: how close a shared, busy machine comes to the rate is not what is under test.)
    assert!(
        r.target.rate_shortfall_percent.unwrap() < 50.0,
        "{:?}",
        r.target
    );

    // The closed model counts the stall once: the stalled request is slow, and the requests
    // that queued behind it are not counted from when they were due. (Compared with the open
    // model's count rather than asserted to be exactly 1: a busy machine may slow another
    // request past 100 ms, but not the six the open model charges with the stall.)
    let server = serve(None, |_, n| async move {
        if n == 40 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        ok("")
    });
    let r = load(&["-n", "200", "-c", "2", "-t", "1", &server.url("/")]);
    assert!(r.target.latency_ms.max >= 250.0);
    let slow = r.histograms[0].count_between(100_000, u64::MAX);
    assert!(
        slow >= 1 && slow < delayed,
        "{slow} slow, {delayed} in the open model"
    );
}

#[test]
fn compare_shows_the_latency_a_slow_target_adds() {
    let baseline = serve(None, |_, _| async { ok("fast") });
    let target = serve(None, |_, _| async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        ok("slow")
    });
    let r = load(&[
        "-d",
        "2s",
        "-c",
        "2",
        "-t",
        "1",
        "--compare",
        &baseline.url("/"),
        &target.url("/"),
    ]);
    let o = r.overhead.as_ref().unwrap();
    let p50 = o.latency_ms.iter().find(|a| a.percentile == "p50").unwrap();
    // No answer of the target comes sooner than its 20 ms wait, and the overhead is the
    // target's figure less the baseline's. The slices alternate, so a busy machine slows both
    // sides alike: the slow target still shows as slower. (Was: added >= 15 ms and baseline
    // p50 < 15 ms, figures about the machine.)
    assert!(p50.target >= 20.0, "{o:?}");
    assert_eq!(p50.added, p50.target - p50.baseline, "{o:?}");
    assert!(p50.added > 0.0, "{o:?}");
    // Two connections waiting 20 ms per answer serve at most 100 a second (a little more for
    // the answers in flight when a slice ends); the instant baseline serves more. (Was: ratio
    // below 0.8.)
    assert!(o.target_requests_per_second <= 110.0, "{o:?}");
    assert!(o.throughput_ratio < 1.0, "{o:?}");
    let b = r.baseline.as_ref().unwrap();
    // Each side ran half the time, alternating: at least its planned second, and never the
    // other side's half too. (Was: within 0.3 s of 1 s.)
    assert!((1.0..2.0).contains(&b.duration_seconds), "{b:?}");
    assert!(
        (1.0..2.0).contains(&r.target.duration_seconds),
        "{:?}",
        r.target
    );
    assert!(baseline.hits.load(Ordering::SeqCst) > 0 && target.hits.load(Ordering::SeqCst) > 0);
    let html = r.html();
    assert!(html.contains("Overhead of the target over the baseline"));
    assert!(html.contains(&baseline.url("/")));
    assert!(r.summary().contains("overhead of"));
}

#[test]
fn json_report_has_the_documented_schema() {
    let server = serve(None, |_, _| async { ok("x") });
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let html = dir.path().join("out.html");
    let out = ferry()
        .args([
            "load", "--rate", "200", "-d", "1s", "-c", "2", "-t", "1", "--json",
        ])
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .arg(server.url("/x"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("latency ms") && stdout.contains("target 200.0 req/s"),
        "{stdout}"
    );
    // Not a terminal: no progress line.
    assert!(!stdout.contains('\r'));

    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["url"], server.url("/x"));
    assert_eq!(v["model"], "open");
    assert_eq!(v["target_rate"], 200.0);
    let rps = v["requests_per_second"].as_f64().unwrap();
    // The open model never sends faster than the rate; how close a busy machine comes to it
    // is no behaviour (was: more than 150).
    assert!(rps > 0.0 && rps <= 201.0, "{rps}");
    assert!(v["rate_shortfall_percent"].as_f64().is_some());
    for p in ["p50", "p90", "p99", "p99.9", "p99.99", "max", "min", "mean"] {
        assert!(v["latency_ms"][p].as_f64().unwrap() > 0.0, "{p}");
    }
    let ok = v["status_codes"]["200"].as_u64().unwrap();
    assert_eq!(ok, v["responses"].as_u64().unwrap());
    for kind in ["connect", "tls", "timeout", "reset", "protocol"] {
        assert_eq!(v["errors"][kind], 0, "{kind}");
    }
    let timeline = v["timeline"].as_array().unwrap();
    assert!(!timeline.is_empty());
    let per_second: u64 = timeline
        .iter()
        .map(|s| s["responses"].as_u64().unwrap())
        .sum();
    assert_eq!(per_second, ok);
    assert!(v["spectrum"].as_array().unwrap().len() > 10);
    assert!(v.get("baseline").is_none());

    // The HTML stands alone: no scripts, no links, nothing fetched; it has the four plots.
    let page = std::fs::read_to_string(&html).unwrap();
    for id in [
        "spectrum",
        "latency-over-time",
        "throughput-over-time",
        "status-codes",
    ] {
        assert!(page.contains(&format!("<svg id=\"{id}\"")), "{id}");
    }
    assert!(page.matches("<polyline").count() >= 4);
    assert!(page.contains("<rect class=\"bar\""));
    let without_ours = page
        .replace("http://www.w3.org/2000/svg", "")
        .replace(&server.url("/x"), "");
    for fetch in [
        "http:", "https:", "<script", "<link", "src=", "url(", "@import",
    ] {
        assert!(!without_ours.contains(fetch), "{fetch}");
    }
}

#[test]
fn bad_url_unreachable_target_and_tls_failure_exit_non_zero_with_a_message() {
    let run = |args: &[&str]| {
        let out = ferry().arg("load").args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["-n", "1", "ftp://127.0.0.1/"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("bad URL") && err.contains("scheme"), "{err}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (code, err) = run(&["-n", "1", &format!("http://127.0.0.1:{port}/")]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot connect"), "{err}");

    let (tls, _) = tls_server();
    let server = serve(Some(tls), |_, _| async { ok("") });
    let (code, err) = run(&["-n", "1", &format!("https://{}/", server.addr)]);
    assert_eq!(code, Some(1));
    assert!(err.contains("TLS"), "{err}");

    let (code, err) = run(&["-n", "1", "--streams", "2", &server.url("/")]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--streams needs --h2"), "{err}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 0);
}

#[test]
fn a_connection_the_server_closes_between_requests_is_reopened_not_counted() {
    let server = serve(None, |_, _| async {
        let mut res = Response::new(Full::new(Bytes::from_static(b"bye")));
        res.headers_mut()
            .insert(http::header::CONNECTION, "close".parse().unwrap());
        Ok(res)
    });
    let r = load(&["-n", "50", "-c", "2", "-t", "1", &server.url("/")]);
    assert_eq!(r.target.responses, 50);
    assert_eq!(r.target.failures(), 0, "{:?}", r.target.errors);
    assert_eq!(server.hits.load(Ordering::SeqCst), 50);
}

/// A raw HTTP/1.1 server that answers every request on a connection with `response`, written
/// `piece` bytes at a time, and counts the connections it accepted.
fn keep_alive(
    response: &'static [u8],
    piece: usize,
) -> (SocketAddr, Arc<AtomicU64>, tokio::runtime::Runtime) {
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    let (addr, rt) = raw(move |mut stream| {
        count.fetch_add(1, Ordering::SeqCst);
        async move {
            stream.set_nodelay(true).unwrap();
            while read_head(&mut stream).await {
                for part in response.chunks(piece) {
                    if stream.write_all(part).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    (addr, accepted, rt)
}

#[test]
fn http1_framing_chunked_with_trailers_in_small_writes_and_bodiless_responses() {
    // Chunked, with an extension and trailers, arriving 3 bytes per write: every response is
    // read whole and the connections are kept (one more for the reachability check).
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n8\r\n, world!\r\n0\r\nX-Trailer: done\r\n\r\n";
    let (addr, accepted, _rt) = keep_alive(chunked, 3);
    let r = load(&["-n", "40", "-c", "2", "-t", "1", &format!("http://{addr}/")]);
    assert_eq!(r.target.responses, 40, "{:?}", r.target.errors);
    assert_eq!(r.target.failures(), 0);
    assert_eq!(r.target.bytes_received, 40 * 13);
    assert_eq!(accepted.load(Ordering::SeqCst), 3);

    // 204 and 304 have no body whatever their headers say, nor has an answer to HEAD: a
    // client that waited for those 13 bytes would time out instead.
    for (response, argv) in [
        (&b"HTTP/1.1 204 No Content\r\n\r\n"[..], &[][..]),
        (
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 13\r\n\r\n",
            &[][..],
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n",
            &["-m", "HEAD"][..],
        ),
    ] {
        let (addr, accepted, _rt) = keep_alive(response, 1000);
        let url = format!("http://{addr}/");
        let mut args = vec!["-n", "25", "-c", "1", "-t", "1", "--timeout", "5s"];
        args.extend_from_slice(argv);
        args.push(&url);
        let r = load(&args);
        assert_eq!(r.target.responses, 25, "{:?}", r.target.errors);
        assert_eq!(r.target.failures(), 0);
        assert_eq!(r.target.bytes_received, 0);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    // A malformed status line is the server breaking HTTP.
    let (addr, _, _rt) = keep_alive(b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n", 1000);
    let r = load(&["-n", "5", "-c", "1", "-t", "1", &format!("http://{addr}/")]);
    assert_eq!(r.target.errors["protocol"], 5, "{:?}", r.target.errors);
    assert_eq!(r.target.responses, 0);
}

#[test]
fn bodies_until_close_and_connections_closed_while_idle_are_not_failures() {
    // No length: the body runs until the server closes, then a new connection is opened.
    let (addr, accepted, _rt) = raw_counted(b"HTTP/1.1 200 OK\r\n\r\nuntil the end");
    let r = load(&["-n", "10", "-c", "1", "-t", "1", &format!("http://{addr}/")]);
    assert_eq!(r.target.responses, 10, "{:?}", r.target.errors);
    assert_eq!(r.target.failures(), 0);
    assert_eq!(r.target.bytes_received, 10 * 13);
    assert_eq!(accepted.load(Ordering::SeqCst), 11);

    // A server that closes each connection after one response without saying so (as a short
    // keep-alive timeout does): the next request finds it closed, and goes out again on a
    // fresh connection.
    let (addr, accepted, _rt) = raw_counted(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let r = load(&["-n", "20", "-c", "2", "-t", "1", &format!("http://{addr}/")]);
    assert_eq!(r.target.responses, 20, "{:?}", r.target.errors);
    assert_eq!(r.target.failures(), 0);
    assert_eq!(accepted.load(Ordering::SeqCst), 21);
}

/// A raw server that answers one request per connection with `response`, then closes it.
fn raw_counted(response: &'static [u8]) -> (SocketAddr, Arc<AtomicU64>, tokio::runtime::Runtime) {
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    let (addr, rt) = raw(move |mut stream| {
        count.fetch_add(1, Ordering::SeqCst);
        async move {
            if read_head(&mut stream).await {
                let _ = stream.write_all(response).await;
            }
        }
    });
    (addr, accepted, rt)
}
