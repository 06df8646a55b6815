//! The real client address in `ferry up` (netns mode): the app behind a sidecar sees the
//! address of the Pod that called it, not the sidecar's 127.0.0.1, both through the client
//! Pod's sidecar (mutual TLS) and from a client without one (the node, in plaintext, the
//! permissive mode). The echo app answers with its connection's peer (`peer`).
//!
//! Root (CAP_NET_ADMIN), `ip`, `nft` and curl are needed; without them the test says why it is
//! skipped. Pod range 10.201.38.0/24, service range 10.211.38.0/24.

use std::net::SocketAddr;
use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

use crate::mesh::{Meshed, can_run};
use crate::pod_network::{wait_ready, write};
use crate::{DEADLINE, eventually};

const YAML: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: addr
  annotations: {ferry.dev/inject: enabled}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: addr}
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
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: addr}
spec:
  clusterIP: 10.211.38.20
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: addr}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: sh, image: busybox, command: [sleep, "3600"]}]
"#;

/// Runs `sh -c script` in the Pod `addr/<pod>` (its network namespace, as its app).
fn exec(admin: SocketAddr, pod: &str, script: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["exec", "-n", "addr", pod, "--admin", &admin.to_string()])
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap()
}

/// The peer address the echo app reports in `answer`, without its port.
fn peer_ip(answer: &str) -> String {
    let echoed: Value = serde_json::from_str(answer).unwrap_or_default();
    let peer = echoed["peer"].as_str().unwrap_or_default();
    peer.parse::<SocketAddr>()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| format!("no peer in {answer:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_sees_its_clients_pod_address() {
    let test = "the_app_sees_its_clients_pod_address";
    if !can_run(test, &["curl"]) {
        return;
    }
    let dir = TempDir::new().unwrap();
    write(dir.path(), YAML);
    let cidr = "10.201.38.0/24";
    let mesh = Meshed::start(cidr, vec![dir.path().to_owned()]).await;
    let admin = mesh.running.admin;
    let all = wait_ready(admin, 2, "two ready meshed Pods").await;
    let ip_of = |app: bool| {
        all.iter()
            .find(|p| (p["metadata"]["labels"]["app"] == "echo") == app)
            .and_then(|p| p.pointer("/status/podIP"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (server_ip, client_ip) = (ip_of(true), ip_of(false));

    // Through both sidecars: the client Pod's address, not 127.0.0.1.
    let answer = eventually(DEADLINE, "an answer through both sidecars", || async {
        let out = exec(
            admin,
            "client",
            "curl -sf -m 5 http://echo.addr.svc.cluster.local/who",
        );
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await;
    assert_eq!(peer_ip(&answer), client_ip, "{answer}");
    let echoed: Value = serde_json::from_str(&answer).unwrap();
    assert!(
        echoed["headers"]["x-forwarded-client-cert"]
            .as_str()
            .is_some_and(|x| x.contains("URI=spiffe://cluster.local/ns/addr/sa/default")),
        "the identity is in the header: {answer}"
    );

    // Plaintext from the node (permissive): the node's address on the pod network.
    let node_ip = ferry_orchestrator::network::gateway(cidr.parse().unwrap())
        .unwrap()
        .to_string();
    let url = format!("http://{server_ip}:8080/who");
    let answer = eventually(DEADLINE, "an answer from the node", || async {
        let out = Command::new("curl")
            .args(["-sf", "-m", "5", &url])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await;
    assert_eq!(peer_ip(&answer), node_ip, "{answer}");

    mesh.stop().await;
}
