use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::*;

/// What a sidecar serves, in the shape prometheus-client encodes it.
fn exposition(inbound_2xx: u64, inbound_5xx: u64, buckets: [u64; 3], open: u64) -> String {
    let count = buckets[2];
    format!(
        r#"# HELP ferry_sidecar_requests HTTP requests by direction, peer identity, route and status class.
# TYPE ferry_sidecar_requests counter
ferry_sidecar_requests_total{{direction="inbound",peer="spiffe://cluster.local/ns/a/sa/web",route="8080",status="2xx"}} {inbound_2xx}
ferry_sidecar_requests_total{{direction="inbound",peer="-",route="8080",status="5xx"}} {inbound_5xx}
ferry_sidecar_requests_total{{direction="outbound",peer="-",route="api.shop.svc:80",status="error"}} 1
ferry_sidecar_requests_total{{direction="outbound",peer="-",route="api.shop.svc:80",status="2xx"}} 3
# TYPE ferry_sidecar_request_duration_seconds histogram
ferry_sidecar_request_duration_seconds_sum{{direction="inbound",peer="-",route="8080"}} 0.5
ferry_sidecar_request_duration_seconds_count{{direction="inbound",peer="-",route="8080"}} {count}
ferry_sidecar_request_duration_seconds_bucket{{le="0.001",direction="inbound",peer="-",route="8080"}} {}
ferry_sidecar_request_duration_seconds_bucket{{le="0.01",direction="inbound",peer="-",route="8080"}} {}
ferry_sidecar_request_duration_seconds_bucket{{le="+Inf",direction="inbound",peer="-",route="8080"}} {}
ferry_sidecar_request_duration_seconds_bucket{{le="+Inf",direction="outbound",peer="-",route="api.shop.svc:80"}} 4
# TYPE ferry_sidecar_tcp_open_connections gauge
ferry_sidecar_tcp_open_connections{{direction="inbound"}} {open}
ferry_sidecar_tcp_open_connections{{direction="outbound"}} 7
ferry_sidecar_tls_handshakes_total{{direction="inbound",outcome="failed"}} 2
ferry_sidecar_tls_handshakes_total{{direction="inbound",outcome="ok"}} 9
ferry_sidecar_certificate_expiry_timestamp_seconds 1800000000
# EOF
"#,
        buckets[0], buckets[1], buckets[2]
    )
}

#[test]
fn the_parser_reads_names_labels_escapes_and_values() {
    let samples = parse(
        "# HELP x y\n\
         a_total{k=\"v\",q=\"say \\\"hi\\\"\\n\\\\\"} 3 1700000000\n\
         b 2.5\n\
         c{le=\"+Inf\"} +Inf\n\
         d{} NaN\n\
         # EOF\n",
    )
    .unwrap();
    assert_eq!(samples.len(), 4);
    assert_eq!(samples[0].name, "a_total");
    assert_eq!(samples[0].label("k"), "v");
    assert_eq!(samples[0].label("q"), "say \"hi\"\n\\");
    assert_eq!(samples[0].value, 3.0);
    assert_eq!(samples[1].labels, vec![]);
    assert_eq!(samples[1].value, 2.5);
    assert_eq!(samples[2].label("le"), "+Inf");
    assert!(samples[2].value.is_infinite());
    assert!(samples[3].value.is_nan());
    assert_eq!(samples[3].label("absent"), "");
}

#[test]
fn the_parser_names_the_line_it_cannot_read() {
    for (text, what) in [
        ("ok 1\nbad{k=\"v\" 1\n", "line 2"),
        ("x{k=\"v} 1", "unclosed"),
        ("x 1\ny{k} 2", "without"),
        ("x one", "not a number"),
        ("x", "no value"),
    ] {
        let e = parse(text).unwrap_err();
        assert!(e.contains(what), "{text:?}: {e}");
    }
}

#[test]
fn signals_sum_directions_outcomes_and_inbound_buckets() {
    let s = Signals::from_samples(&parse(&exposition(10, 2, [5, 9, 12], 3)).unwrap());
    assert_eq!(
        s.inbound,
        Requests {
            total: 12.0,
            failed: 2.0
        }
    );
    assert_eq!(
        s.outbound,
        Requests {
            total: 4.0,
            failed: 1.0
        }
    );
    assert_eq!(
        s.inbound_buckets,
        vec![(0.001, 5.0), (0.01, 9.0), (f64::INFINITY, 12.0)]
    );
    assert_eq!(s.tcp_open_inbound, 3.0);
    assert_eq!(s.tls_failed, 2.0);
    assert_eq!(s.certificate_expiry, Some(1_800_000_000.0));
}

#[test]
fn a_window_is_the_counters_delta_and_the_gauges_now() {
    let before = Signals::from_samples(&parse(&exposition(10, 2, [5, 9, 12], 3)).unwrap());
    let after = Signals::from_samples(&parse(&exposition(30, 2, [20, 29, 32], 1)).unwrap());
    let w = after.since(&before);
    assert_eq!(w.inbound.total, 20.0);
    assert_eq!(w.inbound.failed, 0.0);
    assert_eq!(w.outbound.total, 0.0);
    assert_eq!(
        w.inbound_buckets,
        vec![(0.001, 15.0), (0.01, 20.0), (f64::INFINITY, 20.0)]
    );
    assert_eq!(w.tcp_open_inbound, 1.0);
    // A sidecar that restarted counts from zero: all of it is new.
    let restarted = Signals::from_samples(&parse(&exposition(4, 0, [1, 4, 4], 0)).unwrap());
    assert_eq!(restarted.since(&after).inbound.total, 4.0);
}

#[test]
fn quantiles_interpolate_inside_the_bucket_as_prometheus_does() {
    let b = [
        (0.1, 50.0),
        (0.2, 90.0),
        (0.4, 100.0),
        (f64::INFINITY, 100.0),
    ];
    let near = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
    // 50th of 100 is the end of the first bucket.
    assert!(near(quantile(&b, 0.5), 0.1), "{:?}", quantile(&b, 0.5));
    // 70th: halfway into (0.1, 0.2].
    assert!(near(quantile(&b, 0.7), 0.15));
    // 95th: halfway into (0.2, 0.4].
    assert!(near(quantile(&b, 0.95), 0.3));
    // The first bucket starts at zero.
    assert!(near(quantile(&b, 0.25), 0.05));
    // In the +Inf bucket: the largest finite bound.
    let slow = [(0.1, 1.0), (f64::INFINITY, 10.0)];
    assert!(near(quantile(&slow, 0.99), 0.1));
    // Nothing counted: no latency.
    assert_eq!(quantile(&[(0.1, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
    assert_eq!(quantile(&[], 0.5), None);
}

fn pod(ns: &str, name: &str, owner: Option<(&str, &str)>, meshed: bool, ready: bool) -> Value {
    let mut p = json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": {"containers": [{"name": "app"}]},
        "status": {"phase": "Running", "podIP": "10.1.0.9"},
    });
    if let Some((kind, owner)) = owner {
        p["metadata"]["ownerReferences"] =
            json!([{"kind": kind, "name": owner, "controller": true}]);
    }
    if meshed {
        p["spec"]["initContainers"] = json!([{"name": "ferry-sidecar", "restartPolicy": "Always"}]);
        p["status"]["initContainerStatuses"] = json!([{"name": "ferry-sidecar", "ready": ready}]);
    }
    p
}

#[test]
fn pods_group_by_the_deployment_owning_their_replicaset_else_their_owner_else_themselves() {
    let replicasets = vec![
        json!({"metadata": {"namespace": "shop", "name": "api-7c9", "ownerReferences": [{"kind": "Deployment", "name": "api", "controller": true}]}}),
        json!({"metadata": {"namespace": "shop", "name": "lone-1"}}),
    ];
    let list = vec![
        pod(
            "shop",
            "api-7c9-a",
            Some(("ReplicaSet", "api-7c9")),
            true,
            true,
        ),
        pod(
            "shop",
            "lone-1-b",
            Some(("ReplicaSet", "lone-1")),
            true,
            false,
        ),
        pod("shop", "db-0", Some(("StatefulSet", "db")), false, false),
        pod("shop", "client", None, true, true),
        // The same ReplicaSet name in another namespace is another ReplicaSet.
        pod(
            "other",
            "api-7c9-c",
            Some(("ReplicaSet", "api-7c9")),
            true,
            true,
        ),
    ];
    let got: Vec<(String, bool, bool)> = pods(&list, &replicasets)
        .into_iter()
        .map(|p| (p.workload.display(), p.meshed, p.sidecar_ready))
        .collect();
    assert_eq!(
        got,
        vec![
            ("deploy/api".to_owned(), true, true),
            ("rs/lone-1".to_owned(), true, false),
            ("statefulset/db".to_owned(), false, false),
            ("pod/client".to_owned(), true, true),
            ("rs/api-7c9".to_owned(), true, true),
        ]
    );
    // A Pod that does not run has no address to scrape.
    let mut pending = pod("shop", "p", None, true, false);
    pending["status"]["phase"] = json!("Pending");
    assert_eq!(pods(&[pending], &[])[0].ip, None);
}

fn info(name: &str, workload: &str, meshed: bool, ready: bool) -> PodInfo {
    PodInfo {
        name: name.into(),
        workload: WorkloadKey {
            namespace: "shop".into(),
            kind: "Deployment".into(),
            name: workload.into(),
        },
        meshed,
        sidecar_ready: ready,
        ip: Some("10.1.0.2".parse().unwrap()),
    }
}

fn window(total: f64, failed: f64, buckets: Vec<(f64, f64)>, seconds: f64) -> Window {
    Window {
        signals: Signals {
            inbound: Requests { total, failed },
            inbound_buckets: buckets,
            tcp_open_inbound: 1.0,
            certificate_expiry: Some(2e9 + total),
            ..Signals::default()
        },
        seconds,
    }
}

#[test]
fn a_workload_row_sums_its_pods_windows() {
    let pods = vec![
        info("api-1", "api", true, true),
        info("api-2", "api", true, true),
        info("api-3", "api", true, false),
        info("web-1", "web", true, true),
        info("plain-1", "plain", false, false),
    ];
    let windows = vec![
        // Each rate over its own Pod's window: 8 in 2 s and 2 in 1 s.
        Some(window(
            8.0,
            0.0,
            vec![(0.01, 8.0), (f64::INFINITY, 8.0)],
            2.0,
        )),
        Some(window(
            2.0,
            1.0,
            vec![(0.01, 0.0), (f64::INFINITY, 2.0)],
            1.0,
        )),
        // Its sidecar did not answer.
        None,
        Some(Window {
            signals: Signals::default(),
            seconds: 2.0,
        }),
        None,
    ];
    let rows = aggregate(&pods, &windows, Duration::from_secs(2), None);
    // The unmeshed workload is not listed.
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let api = &rows[0];
    assert_eq!(
        (api.name.as_str(), api.meshed_ready, api.pods),
        ("api", 2, 3)
    );
    assert_eq!(api.unreachable, 1);
    assert_eq!(api.requests, 10.0);
    assert_eq!(api.success_rate, Some(0.9));
    assert_eq!(api.rps, Some(6.0));
    // p50 of 10 is the 5th, inside (0, 10ms]; p99 past the finite buckets.
    assert!((api.latency_p50_ms.unwrap() - 6.25).abs() < 1e-9, "{api:?}");
    assert_eq!(api.latency_p99_ms, Some(10.0));
    assert_eq!(api.tcp_open_connections, 2.0);
    assert_eq!(api.certificate_expiry, Some(2e9 + 2.0));
    // No requests in the window: dashes, not zeros.
    let web = &rows[1];
    assert_eq!(
        (web.success_rate, web.rps, web.latency_p50_ms),
        (None, None, None)
    );
    let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000 - 7200);
    let table = render(&rows, Output::Table, now).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAMESPACE   NAME"), "{table}");
    assert!(lines[0].ends_with("LATENCY_P99   TCP_CONN"), "{table}");
    let api_cells: Vec<&str> = lines[1].split("   ").map(str::trim).collect();
    assert!(lines[1].contains("deploy/api"), "{table}");
    assert!(lines[1].contains("2/3 (1 unreachable)"), "{table}");
    assert!(api_cells.contains(&"90.00%"), "{table}");
    assert!(api_cells.contains(&"6.0rps"), "{table}");
    assert!(api_cells.contains(&"6.25ms"), "{table}");
    assert!(lines[2].contains("deploy/web"), "{table}");
    assert_eq!(lines[2].matches(" - ").count(), 5, "{table}");
    let wide = render(&rows, Output::Wide, now).unwrap();
    assert!(
        wide.lines().next().unwrap().ends_with("CERT_EXPIRES"),
        "{wide}"
    );
    assert!(wide.lines().nth(1).unwrap().ends_with("2h"), "{wide}");
    let json: Value = serde_json::from_str(&render(&rows, Output::Json, now).unwrap()).unwrap();
    assert_eq!(json[0]["kind"], "Deployment");
    assert_eq!(json[0]["success_rate"], 0.9);
    assert_eq!(json[1]["rps"], Value::Null);
    // A namespace filter keeps the other namespaces' workloads out.
    assert!(aggregate(&pods, &windows, Duration::from_secs(2), Some("web")).is_empty());
    assert_eq!(
        render(&[], Output::Table, SystemTime::now()).unwrap(),
        "No meshed workloads found.\n"
    );
}

#[tokio::test]
async fn a_sidecar_that_does_not_answer_is_an_error_naming_why() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let e = scrape(addr).await.unwrap_err();
    assert!(e.contains(&addr.to_string()), "{e}");
}

/// A one-shot HTTP/1.1 server answering `head` and then `body_len` bytes of a valid metric
/// line repeated, and its address.
async fn serve_once(head: String, body_len: usize) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut request = [0; 1024];
        let _ = tcp.read(&mut request).await;
        let line = b"# a comment line of a metrics body, long enough to count\n";
        let body: Vec<u8> = line.iter().copied().cycle().take(body_len).collect();
        // The client stops reading at the limit: a failed write is expected then.
        let _ = tcp.write_all(head.as_bytes()).await;
        let _ = tcp.write_all(&body).await;
    });
    addr
}

#[tokio::test]
async fn a_metrics_body_over_the_limit_is_refused_not_read_whole() {
    let small = 64 * 1024;
    let ok = serve_once(
        format!("HTTP/1.1 200 OK\r\ncontent-length: {small}\r\n\r\n"),
        small,
    )
    .await;
    assert!(scrape(ok).await.is_ok());
    let big = METRICS_LIMIT + 1;
    for head in [
        // Announced: refused before reading.
        format!("HTTP/1.1 200 OK\r\ncontent-length: {big}\r\n\r\n"),
        // Not announced (read to the close): refused at the limit.
        "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_owned(),
    ] {
        let addr = serve_once(head.clone(), big).await;
        let e = scrape(addr).await.unwrap_err();
        assert!(e.contains("larger than 4 MiB"), "{head:?}: {e}");
    }
}
