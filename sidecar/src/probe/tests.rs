use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use ferry_model::mesh::app_probe::{Header, TcpSocket};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::*;

/// A server on 127.0.0.1:0 that answers every request with `response` (raw HTTP/1.1), or
/// never answers when it is `None`; it counts connections and keeps the last request.
struct App {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    last: Arc<std::sync::Mutex<String>>,
}

async fn app(response: Option<&'static str>) -> App {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let last = Arc::new(std::sync::Mutex::new(String::new()));
    let (count, keep) = (connections.clone(), last.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                *keep.lock().expect("lock") = String::from_utf8_lossy(&buf[..read]).into_owned();
                match response {
                    Some(r) => {
                        let _ = stream.write_all(r.as_bytes()).await;
                    }
                    // Holds the connection open without a word.
                    None => std::future::pending::<()>().await,
                }
            });
        }
    });
    App {
        addr,
        connections,
        last,
    }
}

fn http(port: u16, path: &str) -> AppProbe {
    AppProbe {
        check: AppCheck::HttpGet(HttpGet {
            path: path.to_owned(),
            port,
            scheme: "HTTP".to_owned(),
            host: None,
            http_headers: vec![Header {
                name: "x-probe".to_owned(),
                value: "yes".to_owned(),
            }],
        }),
        timeout_seconds: 1,
    }
}

fn tcp(port: u16) -> AppProbe {
    AppProbe {
        check: AppCheck::TcpSocket(TcpSocket { port, host: None }),
        timeout_seconds: 1,
    }
}

fn health(probers: Vec<(&str, AppProbe)>, registry: &mut Registry) -> AppHealth {
    let config = AppHealthConfig {
        probers: probers
            .into_iter()
            .map(|(path, p)| (path.to_owned(), p))
            .collect(),
        pod_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    AppHealth::new(config, None, registry)
}

async fn status(health: &AppHealth, path: &str) -> (u16, String) {
    let response = health
        .call(Method::GET, path.to_owned(), String::new())
        .await;
    let status = response.status().as_u16();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn metrics(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    text
}

#[tokio::test]
async fn an_http_probe_answers_the_apps_health() {
    let ok = app(Some("HTTP/1.1 204 No Content\r\n\r\n")).await;
    let failing = app(Some(
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
    ))
    .await;
    let mut registry = Registry::default();
    let health = health(
        vec![
            ("/app-health/web/readyz", http(ok.addr.port(), "/healthz")),
            ("/app-health/web/livez", http(failing.addr.port(), "/")),
        ],
        &mut registry,
    );
    assert_eq!(status(&health, "/app-health/web/readyz").await.0, 200);
    let request = ok.last.lock().expect("lock").clone();
    assert!(
        request.starts_with("GET /healthz HTTP/1.1\r\n"),
        "{request}"
    );
    let lower = request.to_ascii_lowercase();
    assert!(
        lower.contains(&format!("host: 127.0.0.1:{}\r\n", ok.addr.port())),
        "{request}"
    );
    assert!(lower.contains("x-probe: yes\r\n"), "{request}");
    assert!(lower.contains("user-agent: kube-probe/"), "{request}");

    let (code, body) = status(&health, "/app-health/web/livez").await;
    assert_eq!(code, 503);
    assert!(body.contains("statuscode: 500"), "{body}");

    let text = metrics(&registry);
    assert!(
        text.contains(r#"ferry_sidecar_app_probes_total{probe="web/readyz",result="success"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"ferry_sidecar_app_probes_total{probe="web/livez",result="failure"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_redirect_is_healthy_and_never_followed() {
    let elsewhere = app(Some("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")).await;
    let location = format!(
        "HTTP/1.1 302 Found\r\nlocation: http://{}/\r\ncontent-length: 0\r\n\r\n",
        elsewhere.addr
    );
    let redirecting = app(Some(Box::leak(location.into_boxed_str()))).await;
    let health = health(
        vec![("/app-health/web/readyz", http(redirecting.addr.port(), "/"))],
        &mut Registry::default(),
    );
    assert_eq!(status(&health, "/app-health/web/readyz").await.0, 200);
    assert_eq!(redirecting.connections.load(Ordering::SeqCst), 1);
    assert_eq!(elsewhere.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_http_probe_fails_after_its_timeout() {
    let silent = app(None).await;
    let health = health(
        vec![("/app-health/web/readyz", http(silent.addr.port(), "/"))],
        &mut Registry::default(),
    );
    let started = Instant::now();
    let (code, body) = status(&health, "/app-health/web/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("timed out after 1s"), "{body}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_tcp_probe_connects() {
    let open = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let health = health(
        vec![
            (
                "/app-health/db/livez",
                tcp(open.local_addr().expect("addr").port()),
            ),
            ("/app-health/db/readyz", tcp(closed)),
        ],
        &mut Registry::default(),
    );
    assert_eq!(status(&health, "/app-health/db/livez").await.0, 200);
    let (code, body) = status(&health, "/app-health/db/readyz").await;
    assert_eq!(code, 503);
    assert!(
        body.contains(&format!("dial tcp 127.0.0.1:{closed}")),
        "{body}"
    );
}

#[tokio::test]
async fn unknown_paths_and_other_methods_are_refused() {
    let health = health(
        vec![("/app-health/db/livez", tcp(1))],
        &mut Registry::default(),
    );
    assert_eq!(status(&health, "/app-health/db/startupz").await.0, 404);
    assert_eq!(status(&health, "/app-health/").await.0, 404);
    let post = health
        .call(
            Method::POST,
            "/app-health/db/livez".to_owned(),
            String::new(),
        )
        .await;
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
}
