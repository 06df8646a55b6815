//! The gateway's request checks end to end, against hostile input as nginx (ingress-nginx's
//! defaults) answers it: normalized paths, Host rules, h2c upgrades, loops back to the
//! gateway, codings, methods and long request lines. Raw sockets for the malformed requests,
//! curl where a real client helps (skipped with a reason when it is missing).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{annotated, backend, raw, served_by, service, up_with, upgrade_echo};
use crate::{Running, get};

/// One request with `Connection: close` over a fresh connection: the raw reply.
async fn send(addr: SocketAddr, method: &str, target: &str, headers: &str) -> String {
    let head = format!("{method} {target} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n");
    raw(addr, head.as_bytes()).await
}

fn status(reply: &str) -> &str {
    reply.split(' ').nth(1).unwrap_or("closed")
}

/// The echo reply's JSON, from a raw reply.
fn echoed(reply: &str) -> serde_json::Value {
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not an echo reply: {reply}"))
}

const HOST: &str = "Host: shop.example.com\r\n";

/// `/` → web, `/api` → api, `/admin` → admin, and a regex Ingress with `rewrite-target` on
/// `/app`.
async fn shop() -> (Vec<super::Backend>, tempfile::TempDir, Running) {
    let backends = vec![
        backend("web").await,
        backend("api").await,
        backend("admin").await,
        backend("app").await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<(&str, String)> = ["web.yaml", "api.yaml", "admin.yaml", "app.yaml"]
        .into_iter()
        .zip(&backends)
        .map(|(file, b)| {
            (
                file,
                service(file.trim_end_matches(".yaml"), &[b.addr.port()]),
            )
        })
        .collect();
    files.push((
        "shop.yaml",
        annotated(
            "shop",
            &[("proxy-body-size", "1m")],
            &[
                ("/", "Prefix", "web"),
                ("/api", "Prefix", "api"),
                ("/admin", "Prefix", "admin"),
            ],
        ),
    ));
    files.push((
        "app-ingress.yaml",
        annotated(
            "app",
            &[("rewrite-target", "/$2")],
            &[("/app(/|$)(.*)", "ImplementationSpecific", "app")],
        ),
    ));
    let up = up_with(dir.path(), &files).await;
    (backends, dir, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_routed_and_forwarded_normalized_and_nginx_s_400s_are_kept() {
    let (_backends, _dir, up) = shop().await;
    for (target, name, path, query) in [
        ("/api/../admin", "admin", "/admin", ""),
        ("//admin", "admin", "/admin", ""),
        ("/./admin", "admin", "/admin", ""),
        ("/%61dmin", "admin", "/admin", ""),
        ("/api/%2e%2E/admin/x", "admin", "/admin/x", ""),
        (
            "/api//v1/./items?q=/../x",
            "api",
            "/api/v1/items",
            "q=/../x",
        ),
        // An encoded slash is data: one segment, forwarded as it came.
        ("/api%2F..%2Fadmin", "web", "/api%2F..%2Fadmin", ""),
        // use-regex and rewrite-target see the normalized path.
        ("/x/../app/y", "app", "/y", ""),
        ("//app//y?z=1", "app", "/y", "z=1"),
        ("/%61pp/y", "app", "/y", ""),
    ] {
        let reply = send(up.http, "GET", target, HOST).await;
        assert_eq!(status(&reply), "200", "{target}: {reply}");
        let echo = echoed(&reply);
        assert_eq!(echo["name"], name, "{target}");
        assert_eq!(echo["path"], path, "{target}");
        assert_eq!(echo["query"], query, "{target}");
    }
    for target in [
        "/../admin",
        "/api/../../admin",
        "/admin%00",
        "/admin%00.html",
        "/a%zz",
        "/a%4",
    ] {
        let reply = send(up.http, "GET", target, HOST).await;
        assert_eq!(status(&reply), "400", "{target}: {reply}");
    }

    // curl as a real client, told not to squash the dot segments itself.
    match std::process::Command::new("curl")
        .args(["-s", "--path-as-is", "--resolve"])
        .arg(format!("shop.example.com:{}:127.0.0.1", up.http.port()))
        .arg(format!(
            "http://shop.example.com:{}/api/../admin",
            up.http.port()
        ))
        .output()
    {
        Ok(out) => {
            let body = String::from_utf8_lossy(&out.stdout);
            assert_eq!(served_by(&body), "admin", "curl: {body}");
        }
        Err(e) => eprintln!("skipping the curl case: curl cannot run ({e})"),
    }
    // curl speaking HTTP/1.0 and asking to keep its connection: both answered, the second
    // over the first's connection (the answers say `Connection: keep-alive`); over TLS too,
    // where curl offers only `http/1.0` by ALPN.
    for (scheme, port) in [("http", up.http.port()), ("https", up.https.port())] {
        let url = format!("{scheme}://shop.example.com:{port}/api/x");
        match std::process::Command::new("curl")
            .args(["-sk", "--http1.0", "-H", "Connection: keep-alive"])
            .args(["-o", "/dev/null", "-o", "/dev/null"])
            .args(["-w", "%{http_code} %{num_connects}\n", "--resolve"])
            .arg(format!("shop.example.com:{port}:127.0.0.1"))
            .args([&url, &url])
            .output()
        {
            Ok(out) => {
                let written = String::from_utf8_lossy(&out.stdout);
                assert_eq!(
                    written, "200 1\n200 0\n",
                    "curl --http1.0 {scheme}: {written}"
                );
            }
            Err(e) => eprintln!("skipping the curl --http1.0 case: curl cannot run ({e})"),
        }
    }
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_must_be_one_and_valid_and_an_absolute_target_s_authority_wins() {
    let (_backends, _dir, up) = shop().await;
    for headers in [
        "Host: shop.example.com\r\nHost: admin.example.com\r\n".to_owned(),
        "Host: shop.example.com\r\nHost: shop.example.com\r\n".to_owned(),
        "Host: user@shop.example.com\r\n".to_owned(),
        "Host: shop.example.com:80x\r\n".to_owned(),
        "Host: shop.example.com:99999\r\n".to_owned(),
        "Host: shop example.com\r\n".to_owned(),
        String::new(),
    ] {
        let reply = send(up.http, "GET", "/", &headers).await;
        assert_eq!(status(&reply), "400", "{headers:?}: {reply}");
    }
    // As nginx, a 400 closes the connection: the request behind it is not read.
    let reply = raw(
        up.http,
        format!("GET / HTTP/1.1\r\nHost: a@b\r\n\r\nGET /api HTTP/1.1\r\n{HOST}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
    let reply = send(up.http, "GET", "http://u:p@shop.example.com/", HOST).await;
    assert_eq!(status(&reply), "400", "userinfo in the target: {reply}");

    // RFC 9112 section 3.2.2: the target's authority replaces the Host.
    let reply = send(
        up.http,
        "GET",
        "http://shop.example.com/api",
        "Host: elsewhere.example\r\n",
    )
    .await;
    assert_eq!(status(&reply), "200", "{reply}");
    let echo = echoed(&reply);
    assert_eq!(echo["name"], "api");
    assert_eq!(echo["host"], "shop.example.com");
    let reply = send(up.http, "GET", "http://elsewhere.example/api", HOST).await;
    assert_eq!(
        status(&reply),
        "404",
        "routed by the target's authority: {reply}"
    );
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codings_methods_and_long_request_lines_get_nginx_s_answers() {
    let (_backends, _dir, up) = shop().await;
    // A coding the gateway cannot read: 501, and the connection closed.
    let reply = raw(
        up.http,
        format!("POST /api HTTP/1.1\r\n{HOST}Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(status(&reply), "501", "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");

    // CONNECT and TRACE: 405; the connection serves the next request.
    let reply = raw(
        up.http,
        format!(
            "TRACE / HTTP/1.1\r\n{HOST}\r\nCONNECT shop.example.com:443 HTTP/1.1\r\nHost: shop.example.com:443\r\n\r\nGET /api HTTP/1.1\r\n{HOST}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let statuses: Vec<&str> = reply.split("HTTP/1.1 ").skip(1).map(|r| &r[..3]).collect();
    assert_eq!(statuses, ["405", "405", "200"], "{reply}");
    assert!(
        !reply.contains("\"name\":\"web\""),
        "nothing reached a backend but the GET: {reply}"
    );

    // Request lines: a long one fits, past 8 KiB 414 (not 200, not 431); long headers 431.
    let fits = format!("/api/{}", "a".repeat(8000));
    assert_eq!(status(&send(up.http, "GET", &fits, HOST).await), "200");
    for len in [8 * 1024 + 1, 60_000, 70_000, 200_000] {
        let long = format!("/api/{}", "a".repeat(len));
        let reply = send(up.http, "GET", &long, HOST).await;
        assert_eq!(
            status(&reply),
            "414",
            "a {len}-byte target: {}",
            &reply[..reply.len().min(200)]
        );
    }
    let headers = format!("{HOST}X-Big: {}\r\n", "a".repeat(70_000));
    assert_eq!(status(&send(up.http, "GET", "/api", &headers).await), "431");
    up.stop().await;
}

/// An upstream that accepts `Upgrade: h2c` (101, then HTTP/2 on the connection, answering any
/// path) and answers plain requests over HTTP/1; it notes each plain request's Upgrade.
async fn h2c_upstream() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let noted = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let noted = noted.clone();
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let upgrade = req.headers().get("upgrade").cloned();
                noted.lock().unwrap().push(format!(
                    "{} upgrade={:?} http2-settings={:?}",
                    req.uri().path(),
                    upgrade,
                    req.headers().get("http2-settings")
                ));
                let h2c = upgrade.is_some_and(|u| u == "h2c");
                let on = h2c.then(|| hyper::upgrade::on(&mut req));
                let path = req.uri().path().to_owned();
                async move {
                    if let Some(on) = on {
                        tokio::spawn(async move {
                            if let Ok(up) = on.await {
                                let any_path =
                                    hyper::service::service_fn(|r: Request<Incoming>| async move {
                                        let body = format!("h2 {}", r.uri().path());
                                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                                            body,
                                        ))))
                                    });
                                let _ =
                                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                        .serve_connection(up, any_path)
                                        .await;
                            }
                        });
                        return Response::builder()
                            .status(101)
                            .header("connection", "upgrade")
                            .header("upgrade", "h2c")
                            .body(Full::new(Bytes::new()));
                    }
                    Response::builder().body(Full::new(Bytes::from(format!("plain {path}"))))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades(),
            );
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_and_unknown_upgrades_are_forwarded_as_plain_requests() {
    let (h2c, seen) = h2c_upstream().await;
    // And one that switches protocols whatever it is asked.
    let switch = upgrade_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let up = up_with(
        dir.path(),
        &[
            ("h2c.yaml", service("h2c", &[h2c.port()])),
            ("switch.yaml", service("switch", &[switch.port()])),
            (
                "ingress.yaml",
                annotated(
                    "h2c",
                    &[("proxy-body-size", "1m")],
                    &[
                        ("/public", "Prefix", "h2c"),
                        ("/switch", "Prefix", "switch"),
                    ],
                ),
            ),
        ],
    )
    .await;
    // The h2c upgrade is answered over HTTP/1 by the plain handler; the next request on the
    // connection is still HTTP/1 and still routed: /admin is not, so 404, never the backend.
    let reply = raw(
        up.http,
        format!(
            "GET /public HTTP/1.1\r\n{HOST}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\nGET /admin HTTP/1.1\r\n{HOST}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("plain /public"), "{reply}");
    assert!(
        !reply.contains(" 101 ") && !reply.contains("h2 /"),
        "{reply}"
    );
    assert_eq!(reply.matches("HTTP/1.1 404").count(), 1, "{reply}");
    // An unknown token, and one that names HTTP2-Settings without listing it in Connection.
    for headers in [
        "Connection: upgrade\r\nUpgrade: foo/2\r\n",
        "Connection: upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n",
    ] {
        let reply = send(up.http, "GET", "/public", &format!("{HOST}{headers}")).await;
        assert!(reply.contains("plain /public"), "{headers:?}: {reply}");
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for line in &seen {
        assert_eq!(line, "/public upgrade=None http2-settings=None");
    }

    // A 101 to a request that asked for no WebSocket is not passed on: 502.
    for headers in ["", "Connection: upgrade\r\nUpgrade: h2c\r\n"] {
        let reply = send(up.http, "GET", "/switch", &format!("{HOST}{headers}")).await;
        assert_eq!(status(&reply), "502", "{headers:?}: {reply}");
    }

    // curl's own h2c upgrade gets HTTP/1.1.
    match std::process::Command::new("curl")
        .args([
            "-s",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .args(["-H", "Host: shop.example.com"])
        .arg(format!("http://{}/public", up.http))
        .output()
    {
        Ok(out) => assert_eq!(String::from_utf8_lossy(&out.stdout), "1.1 200"),
        Err(e) => eprintln!("skipping the curl case: curl cannot run ({e})"),
    }
    up.stop().await;
}

/// The sum of `ferry_gateway_requests_total` over its labels.
async fn requests_served(up: &Running) -> u64 {
    let (_, metrics) = get(up.admin, "/metrics").await;
    metrics
        .lines()
        .filter(|l| l.starts_with("ferry_gateway_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_back_to_the_gateway_stops_at_the_second_visit_with_508() {
    let (_backends, _dir, up) = shop().await;
    // A route to a cluster whose endpoint is the gateway itself, published on the bus as
    // the control plane would (the gateway's port is known only once it runs).
    let mut snapshot = serde_json::to_value(&*up.bus.current()).unwrap();
    let version = snapshot["version"].as_u64().unwrap() + 1;
    let key = serde_json::json!({"namespace": "shop", "service": "loop", "port": 80});
    snapshot["version"] = version.into();
    snapshot["clusters"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
        "key": key, "port_name": "http", "protocol": "TCP",
        "session_affinity": {"type": "None"},
        "endpoints": [{"address": "127.0.0.1", "port": up.http.port(), "ready": true,
            "serving": true, "terminating": false}]}));
    // Its Service, so that the snapshot is valid (parts check what they are sent).
    let services = snapshot["services"].as_array_mut().unwrap();
    services.push(serde_json::json!({
        "namespace": "shop", "name": "loop", "type": "ClusterIP", "cluster_ips": [],
        "headless": true, "ports": [{"name": "http", "port": 80, "protocol": "TCP",
            "target_port": 80}],
        "session_affinity": {"type": "None"}, "publish_not_ready_addresses": false,
        "endpoints": []}));
    services.sort_by_key(|s| (s["namespace"].to_string(), s["name"].to_string()));
    snapshot["clusters"]
        .as_array_mut()
        .unwrap()
        .sort_by_key(|c| {
            (
                c["key"]["namespace"].to_string(),
                c["key"]["service"].to_string(),
            )
        });
    let shop_host = snapshot["virtual_hosts"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|vh| vh["host"] == "shop.example.com")
        .unwrap();
    shop_host["routes"].as_array_mut().unwrap().insert(
        0,
        serde_json::json!({
        "path": "/loop", "path_type": "Prefix",
        "backend": {"kind": "Service", "namespace": "shop", "name": "loop", "port": 80,
            "cluster": key},
        "ingress": {"kind": "Ingress", "namespace": "shop", "name": "shop"}}),
    );
    assert!(up.bus.publish(serde_json::from_value(snapshot).unwrap()));
    up.wait_version(version).await;
    let before = requests_served(&up).await;
    let reply = send(up.http, "GET", "/loop", HOST).await;
    assert_eq!(status(&reply), "508", "{reply}");
    assert!(reply.contains("loop detected"), "{reply}");
    // The client's request and its one forwarded copy, nothing more.
    assert_eq!(requests_served(&up).await - before, 2);

    // A Via from another proxy is kept and extended, not taken for a loop.
    let reply = send(
        up.http,
        "GET",
        "/api",
        &format!("{HOST}Via: 1.1 edge-proxy\r\n"),
    )
    .await;
    assert_eq!(status(&reply), "200", "{reply}");
    let via = echoed(&reply)["headers"]["via"]
        .as_str()
        .unwrap()
        .to_owned();
    let (first, ours) = via.split_once(", ").unwrap_or_else(|| panic!("{via}"));
    assert_eq!(first, "1.1 edge-proxy");
    assert!(ours.starts_with("1.1 ferry-"), "{via}");
    up.stop().await;
}
