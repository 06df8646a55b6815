//! `ferry get mesh` end to end in `ferry up` (netns mode): a meshed client Pod sends requests
//! through its sidecar to a meshed Deployment's, and `ferry get mesh -n top`, scraping the
//! sidecars at their Pods' addresses, shows the Deployment with its sidecar ready, every
//! request a success, a request rate and latencies; `-o json` gives the same as fields,
//! `-o wide` the outbound side and the certificates.
//!
//! Root (CAP_NET_ADMIN), `ip`, `nft` and curl are needed; without them the test says why it is
//! skipped. Pod range 10.201.37.0/24, service range 10.211.37.0/24.

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

use crate::mesh::{Meshed, can_run};
use crate::pod_network::{wait_ready, write};
use crate::{DEADLINE, eventually};

const YAML: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: top
  annotations: {ferry.dev/inject: enabled}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: top}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: echo
          image: ferry/echo
          ports: [{name: http, containerPort: 8080}]
          readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: top}
spec:
  clusterIP: 10.211.37.20
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: top}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: sh, image: busybox, command: [sleep, "3600"]}]
"#;

const URL: &str = "http://echo.top.svc.cluster.local/hello";

/// `sh -c script` in the client Pod (its network namespace, as its app).
fn client(admin: SocketAddr, script: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.args(["exec", "-n", "top", "client", "--admin", &admin.to_string()])
        .args(["--", "sh", "-c", script]);
    c
}

/// `ferry get mesh -n top ARGS`, off the runtime's threads (it watches for a window while the
/// in-process `ferry up` serves).
async fn get_mesh(admin: SocketAddr, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .args(["get", "mesh", "-n", "top", "--admin", &admin.to_string()])
        .args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// Requests from the client, one after another, until `stop` exists (at most 3000).
fn load(admin: SocketAddr, stop: &std::path::Path) -> Child {
    let script = format!(
        "i=0; while [ ! -e {stop} ] && [ $i -lt 3000 ]; do curl -s -m 5 -o /dev/null {URL}; i=$((i+1)); done",
        stop = stop.display()
    );
    client(admin, &script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn row<'a>(rows: &'a Value, kind: &str, name: &str) -> Option<&'a Value> {
    rows.as_array()?
        .iter()
        .find(|r| r["kind"] == kind && r["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_mesh_shows_the_golden_signals_of_a_meshed_deployment() {
    let test = "get_mesh_shows_the_golden_signals_of_a_meshed_deployment";
    if !can_run(test, &["curl"]) {
        return;
    }
    let dir = TempDir::new().unwrap();
    write(dir.path(), YAML);
    let mesh = Meshed::start("10.201.37.0/24", vec![dir.path().to_owned()]).await;
    let (admin, state) = (mesh.running.admin, &mesh.state);
    wait_ready(admin, 2, "two ready meshed Pods").await;

    // Before any request: the workloads are listed, with dashes for what did not happen.
    let idle = get_mesh(admin, &["--window", "200ms"]).await;
    assert!(idle.status.success(), "{}", text(&idle));
    let idle_text = String::from_utf8_lossy(&idle.stdout).into_owned();
    let echo_idle = idle_text
        .lines()
        .find(|l| l.contains("deploy/echo"))
        .unwrap_or_else(|| panic!("deploy/echo in:\n{idle_text}"));
    assert!(echo_idle.contains("1/1"), "{idle_text}");
    assert!(idle_text.contains("pod/client"), "{idle_text}");

    // The path works before it is measured.
    eventually(DEADLINE, "an answer through both sidecars", || async {
        client(admin, &format!("curl -sf -m 5 -o /dev/null {URL}"))
            .output()
            .unwrap()
            .status
            .success()
            .then_some(())
    })
    .await;

    let stop = state.path().join("stop-load");
    let mut requests = load(admin, &stop);
    // Requests flow while the sidecars are watched: every window sees some.
    let rows = eventually(DEADLINE, "requests to deploy/echo in a window", || async {
        let out = get_mesh(admin, &["--window", "2s", "-o", "json"]).await;
        assert!(out.status.success(), "{}", text(&out));
        let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
        let echo = row(&rows, "Deployment", "echo")?;
        (echo["requests"].as_f64()? > 0.0).then_some(rows)
    })
    .await;
    let echo = row(&rows, "Deployment", "echo").unwrap();
    assert_eq!(echo["namespace"], "top", "{rows:#}");
    assert_eq!(echo["meshed_ready"], 1, "{rows:#}");
    assert_eq!(echo["pods"], 1, "{rows:#}");
    assert_eq!(echo["unreachable"], 0, "{rows:#}");
    assert_eq!(echo["success_rate"].as_f64(), Some(1.0), "{rows:#}");
    assert!(echo["rps"].as_f64().unwrap() > 0.0, "{rows:#}");
    let p50 = echo["latency_p50_ms"].as_f64().unwrap();
    let p99 = echo["latency_p99_ms"].as_f64().unwrap();
    assert!(p50 > 0.0 && p99 >= p50, "{rows:#}");
    assert!(
        echo["certificate_expiry"].as_f64().unwrap() > 0.0,
        "{rows:#}"
    );
    // The client is a workload of its own (a Pod without an owner), sending.
    let client_row = row(&rows, "Pod", "client").unwrap();
    assert_eq!(client_row["meshed_ready"], 1, "{rows:#}");
    assert!(
        client_row["outbound_rps"].as_f64().unwrap() > 0.0,
        "{rows:#}"
    );
    assert_eq!(
        client_row["outbound_success_rate"].as_f64(),
        Some(1.0),
        "{rows:#}"
    );

    // The table, as linkerd viz stat prints it.
    let wide = eventually(DEADLINE, "deploy/echo's row with requests", || async {
        let out = get_mesh(admin, &["-o", "wide"]).await;
        assert!(out.status.success(), "{}", text(&out));
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        table
            .lines()
            .any(|l| l.contains("deploy/echo") && l.contains("100.00%"))
            .then_some(table)
    })
    .await;
    std::fs::write(&stop, "").unwrap();
    let _ = requests.wait();
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "MESHED",
            "SUCCESS",
            "RPS",
            "LATENCY_P50",
            "LATENCY_P95",
            "LATENCY_P99",
            "TCP_CONN",
            "OUT_SUCCESS",
            "OUT_RPS",
            "MTLS_FAILED",
            "CERT_EXPIRES"
        ],
        "{wide}"
    );
    let echo_line: Vec<&str> = wide
        .lines()
        .find(|l| l.contains("deploy/echo"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(echo_line[..3], ["top", "deploy/echo", "1/1"], "{wide}");
    assert!(echo_line[4].ends_with("rps"), "{wide}");
    assert!(echo_line[5].ends_with("ms"), "{wide}");
    assert_eq!(echo_line[11], "0", "no failed mTLS handshakes: {wide}");
    assert_ne!(echo_line[12], "-", "{wide}");

    mesh.stop().await;
}
