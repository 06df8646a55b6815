//! Routing end to end: by host and path with the forwarding headers, and around
//! endpoints that are dead or die under load.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;

use super::{backend, get, h1, ingress, served_by, service, text, up_with};
use crate::{DEADLINE, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_path_with_forwarding_headers() {
    let (web, api) = (backend("web").await, backend("api").await);
    let dir = tempfile::tempdir().unwrap();
    let empty = "apiVersion: v1\nkind: Service\nmetadata: {name: empty, namespace: shop}\nspec:\n  ports: [{name: http, port: 80}]\n";
    let up = up_with(
        dir.path(),
        &[
            ("web.yaml", service("web", &[web.addr.port()])),
            ("api.yaml", service("api", &[api.addr.port()])),
            ("empty.yaml", empty.into()),
            (
                "ingress.yaml",
                ingress(
                    &[
                        ("/", "web"),
                        ("/api", "api"),
                        ("/gone", "nothing"),
                        ("/empty", "empty"),
                    ],
                    false,
                ),
            ),
        ],
    )
    .await;

    let (status, body) = get(up.http, "shop.example.com", "/api/orders?x=1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(served_by(&body), "api");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["path"], "/api/orders");
    assert_eq!(reply["query"], "x=1");
    assert_eq!(
        reply["host"], "shop.example.com",
        "the client's Host reaches the app"
    );
    let headers = &reply["headers"];
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "shop.example.com");
    assert_eq!(headers["x-real-ip"], "127.0.0.1");
    assert_eq!(headers["x-request-id"].as_str().unwrap().len(), 32);

    let (_, body) = get(up.http, "SHOP.example.com:8080", "/").await;
    assert_eq!(served_by(&body), "web", "case and port do not matter");

    // W3C trace context and a client's request id pass through untouched.
    let mut sender = h1(up.http).await;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let req = Request::get("/")
        .header("host", "shop.example.com")
        .header("traceparent", traceparent)
        .header("x-request-id", "client-id-1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (_, body) = text(sender.send_request(req).await.unwrap()).await;
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["headers"]["traceparent"], traceparent);
    assert_eq!(reply["headers"]["x-request-id"], "client-id-1");
    let (status, body) = get(up.http, "shop.example.com", "/apix").await;
    assert_eq!(
        (status, served_by(&body).as_str()),
        (200, "web"),
        "/apix is not under /api"
    );

    let (status, body) = get(up.http, "other.example.com", "/").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(up.http, "shop.example.com", "/gone").await;
    assert_eq!(status, 503, "a Service that does not exist: {body}");
    assert!(body.contains("does not exist"), "{body}");
    let (status, body) = get(up.http, "shop.example.com", "/empty").await;
    assert_eq!(status, 503, "no ready endpoint: {body}");
    assert!(body.contains("no ready endpoint"), "{body}");
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_costs_no_failed_get() {
    let web = backend("web").await;
    // A port nothing listens on: connections to it are refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let up = up_with(
        dir.path(),
        &[
            ("web.yaml", service("web", &[dead, web.addr.port()])),
            ("ingress.yaml", ingress(&[("/", "web")], false)),
        ],
    )
    .await;
    for _ in 0..20 {
        let (status, body) = get(up.http, "shop.example.com", "/").await;
        assert_eq!(status, 200, "{body}");
    }
    let metrics = eventually(DEADLINE, "retries counted", || async {
        let (_, m) = crate::get(up.admin, "/metrics").await;
        m.contains("ferry_gateway_retries_total").then_some(m)
    })
    .await;
    assert!(
        !metrics.contains("ferry_gateway_retries_total 0\n"),
        "{metrics}"
    );
    let served = r#"ferry_gateway_requests_total{ingress="shop/shop",service="shop/web:80",method="GET",class="2xx"} 20"#;
    assert!(metrics.contains(served), "{metrics}");
    let timed = r#"ferry_gateway_request_duration_seconds_count{service="shop/web:80"} 20"#;
    assert!(metrics.contains(timed), "{metrics}");
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_under_load_costs_no_failed_get() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let (a, b) = (backend("a").await, backend("b").await);
    let dir = tempfile::tempdir().unwrap();
    let up = up_with(
        dir.path(),
        &[
            ("web.yaml", service("web", &[a.addr.port(), b.addr.port()])),
            ("ingress.yaml", ingress(&[("/", "web")], false)),
        ],
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, served, addr) = (stop.clone(), served.clone(), up.http);
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // A new connection each time, so every request picks an endpoint afresh.
                let (status, body) = get(addr, "shop.example.com", "/").await;
                assert_eq!(status, 200, "{body}");
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let before = served.load(Ordering::Relaxed);
    eventually(DEADLINE, "traffic flows", || async {
        (served.load(Ordering::Relaxed) > before + 50).then_some(())
    })
    .await;
    // Kill b: its listener closes, connections to it are refused.
    drop(b);
    let killed = served.load(Ordering::Relaxed);
    eventually(DEADLINE, "traffic goes on without b", || async {
        (served.load(Ordering::Relaxed) > killed + 200).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (_, metrics) = crate::get(up.admin, "/metrics").await;
    assert!(!metrics.contains("class=\"5xx\""), "{metrics}");
    up.stop().await;
}
