//! The kubelet's probes of a meshed Pod go through its sidecar (Istio's rewriteAppHTTPProbers):
//! a strict Pod whose readinessProbe is an httpGet on its Service's port becomes Ready, its
//! probe rewritten to `/app-health/echo/readyz` on the sidecar's admin port and counted there,
//! while a plaintext connection from the node to that port meets the sidecar and is refused
//! and a meshed client is served.
//!
//! Root (CAP_NET_ADMIN), `ip`, `nft` and curl are needed; without them the test says why it is
//! skipped. Pod range 10.201.39.0/24, service range 10.211.39.0/24.

use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::mesh::{Meshed, can_run, exec};
use crate::pod_network::{wait_ready, write};
use crate::{DEADLINE, eventually};

const YAML: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: probes
  annotations: {ferry.dev/inject: enabled, ferry.dev/mtls-mode: strict}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: probes}
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
          livenessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: probes}
spec:
  clusterIP: 10.211.39.20
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: probes}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: sh, image: busybox, command: [sleep, "3600"]}]
"#;

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl").args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_probes_go_through_the_sidecar_and_the_node_meets_strict_mtls() {
    let test = "mesh_probes_go_through_the_sidecar_and_the_node_meets_strict_mtls";
    if !can_run(test, &["curl"]) {
        return;
    }
    let dir = TempDir::new().unwrap();
    write(dir.path(), YAML);
    let mesh = Meshed::start("10.201.39.0/24", vec![dir.path().to_owned()]).await;
    let admin = mesh.running.admin;
    // Ready: the readiness probe passed through the sidecar (strict, so it could not have
    // reached the app any other way).
    let all = wait_ready(admin, 2, "two ready meshed Pods").await;
    let echo = all
        .iter()
        .find(|p| p["metadata"]["labels"]["app"] == "echo")
        .expect("the echo Pod");
    let container = &echo["spec"]["containers"][0];
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"], "/app-health/echo/readyz",
        "{container:#}"
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], 4191);
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"], "/app-health/echo/livez",
        "{container:#}"
    );
    let server_ip = echo
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .expect("a Pod IP")
        .to_owned();

    // The sidecar ran the app's probes and counts them.
    let metrics = format!("http://{server_ip}:4191/metrics");
    eventually(
        DEADLINE,
        "the app's probes counted by the sidecar",
        || async {
            let out = curl(&["-sf", "-m", "5", &metrics]);
            let text = String::from_utf8_lossy(&out.stdout);
            (text.contains(
                r#"ferry_sidecar_app_probes_total{probe="echo/readyz",result="success"}"#,
            ) && text
                .contains(r#"ferry_sidecar_app_probes_total{probe="echo/livez",result="success"}"#))
            .then_some(())
        },
    )
    .await;
    // Only the probes' own paths are answered.
    let unknown = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-m",
        "5",
        &format!("http://{server_ip}:4191/app-health/echo/nope"),
    ]);
    assert_eq!(String::from_utf8_lossy(&unknown.stdout), "404");

    // A meshed client is served over mutual TLS.
    eventually(DEADLINE, "a meshed client served", || async {
        exec(
            admin,
            "probes",
            "client",
            "curl -sf -m 5 http://echo.probes.svc.cluster.local/healthz",
        )
        .status
        .success()
        .then_some(())
    })
    .await;
    // Plaintext from the node to the app's (probe and Service) port meets the sidecar, which
    // refuses it in strict mode; the port is no longer exempt for the node.
    let app = format!("http://{server_ip}:8080/healthz");
    eventually(
        DEADLINE,
        "the node's plaintext refused (strict)",
        || async { (!curl(&["-sf", "-m", "5", &app]).status.success()).then_some(()) },
    )
    .await;
    for _ in 0..3 {
        let out = curl(&["-sf", "-m", "5", &app]);
        assert!(
            !out.status.success(),
            "plaintext from the node reached the app: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    mesh.stop().await;
}
