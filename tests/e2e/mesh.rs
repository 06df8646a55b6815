//! The mesh end to end in `ferry up` (netns mode): Pods of a Namespace annotated
//! `ferry.dev/inject: enabled` get the `ferry-sidecar` native sidecar, which takes its
//! certificate from the control plane with its Pod's token; an app's plain HTTP request to a
//! Service by name leaves through its sidecar, crosses the node bridge as mutual TLS (a capture
//! on the bridge sees the mesh's ALPN and no plaintext of the request), and reaches the server
//! app with the client's SPIFFE identity in `x-forwarded-client-cert`.
//!
//! Root (CAP_NET_ADMIN), `ip`, `nft` and curl are needed; tcpdump for the capture. Without them
//! the test says why it is skipped. Pod range 10.201.30.0/24, service range 10.211.30.0/24.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use ferry_orchestrator::network::{Names, PodNetwork};
use serde_json::Value;
use tempfile::TempDir;

use crate::pod_network::{
    assert_nothing_left, netns_or_skip, pods, sbin, service_cidr_of, wait_ready, write,
};
use crate::pod_services::installed;
use crate::{DEADLINE, Running, eventually};

const YAML: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: mesh
  annotations: {ferry.dev/inject: enabled}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: mesh}
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
metadata: {name: echo, namespace: mesh}
spec:
  clusterIP: 10.211.30.20
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: shopper, namespace: mesh}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: mesh}
spec:
  serviceAccountName: shopper
  terminationGracePeriodSeconds: 1
  containers: [{name: sh, image: busybox, command: [sleep, "3600"]}]
"#;

/// `ferry up` in netns mode with the mesh: Pods on `cidr`, Services on its twin range, over
/// the manifests in `paths`, with a state directory for the mesh's CA (also the test's
/// scratch directory). [`Meshed::stop`] checks nothing is left on the machine.
pub(crate) struct Meshed {
    pub(crate) running: Running,
    pub(crate) state: TempDir,
    names: Names,
}

impl Meshed {
    pub(crate) async fn start(cidr: &str, paths: Vec<std::path::PathBuf>) -> Meshed {
        let state = TempDir::new().unwrap();
        let running = Running::start_with(paths, |c| {
            c.pod_network = PodNetwork::Netns;
            c.local.cluster.pod_cidr = cidr.parse().unwrap();
            c.local.cluster.service_cidr = service_cidr_of(cidr).parse().unwrap();
            c.mesh_state_dir = Some(state.path().to_owned());
        })
        .await;
        let names = Names::of(cidr.parse().unwrap());
        Meshed {
            running,
            state,
            names,
        }
    }

    pub(crate) async fn stop(self) {
        self.running.stop().await;
        assert_nothing_left(&self.names);
    }
}

/// Whether the mesh test `test` can run here (netns mode and `programs` installed); says why
/// not when it cannot.
pub(crate) fn can_run(test: &str, programs: &[&str]) -> bool {
    if !netns_or_skip(test) {
        return false;
    }
    match programs.iter().find(|p| !installed(p)) {
        Some(missing) => {
            eprintln!("skipped {test}: {missing} is not installed");
            false
        }
        None => true,
    }
}

/// Runs `sh -c script` in the Pod `<namespace>/<pod>` (its network namespace, as its app).
pub(crate) fn exec(admin: SocketAddr, namespace: &str, pod: &str, script: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["exec", "-n", namespace, pod, "--admin", &admin.to_string()])
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap()
}

pub(crate) fn has_sidecar(pod: &Value) -> bool {
    pod.pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["name"] == "ferry-sidecar" && c["restartPolicy"] == "Always")
        })
}

/// A capture of the TCP to and from one Pod on the node (its veth: what crosses the bridge)
/// while it lives; its packets as text once stopped.
pub(crate) struct Capture {
    child: std::process::Child,
    file: std::path::PathBuf,
}

/// What a [`Capture`] took.
pub(crate) struct Captured {
    /// The packets as `tcpdump -A` prints them.
    pub(crate) text: String,
    /// Whether a TLS handshake of the mesh crossed.
    pub(crate) handshake: bool,
}

impl Capture {
    pub(crate) fn start(pod_ip: &str, dir: &Path) -> Capture {
        let file = dir.join("bridge.pcap");
        // `any`: unicast between two ports of a bridge is not seen on the bridge device
        // itself, but on the Pods' veths.
        let child = sbin("tcpdump")
            // Each packet written as it comes (no kernel block timeout), as root (the
            // capture file is in the test's private directory).
            .args([
                "-i",
                "any",
                "--immediate-mode",
                "-Z",
                "root",
                "-U",
                "-s",
                "0",
                "-w",
            ])
            .arg(&file)
            // Not the sidecar's admin port: the kubelet's probes, rewritten to it (as Istio
            // rewrites them), are plaintext from the node by design, and come every second
            // (a "HTTP/1.1 200" of one was taken for the mesh's once).
            .args(["tcp", "and", "host", pod_ip, "and", "not", "port"])
            .arg(ferry_model::mesh::ADMIN_PORT.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = child;
        // Capturing once it says it listens (the file exists a little before).
        if let Some(stderr) = child.stderr.take() {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                if line.map_or(true, |l| l.contains("listening on")) {
                    break;
                }
            }
        }
        Capture { child, file }
    }

    /// Stops once the mesh's TLS handshake is in the file (or the deadline passed): tcpdump
    /// writes what it took as it goes, so the bytes that followed the handshake are in the
    /// file too, or never crossed in plaintext. What it took, as text, and whether a mesh
    /// handshake is in it: the ClientHello's ALPN, or, where the capture missed that one
    /// packet (seen once on a loaded machine: every other packet of the connection taken),
    /// the server's TLS 1.2-framed ServerHello record, or, where it missed both, the TLS
    /// records that followed.
    pub(crate) async fn stop_after_handshake(self) -> Captured {
        let deadline = std::time::Instant::now() + DEADLINE;
        let alpn = |bytes: &[u8]| {
            bytes
                .windows(ferry_model::mesh::ALPN.len())
                .any(|w| w == ferry_model::mesh::ALPN)
        };
        let read = || std::fs::read(&self.file).unwrap_or_default();
        while !alpn(&read()) && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let bytes = read();
        let server_hello = bytes
            .windows(6)
            .any(|w| w[..3] == [0x16, 0x03, 0x03] && w[5] == 0x02);
        // Where it missed both (seen on a loaded CI machine: the SYNs and the records after
        // the handshake taken, the handshake's packets not), TLS 1.3's application data
        // records, which go framed as TLS 1.2 records of type 23.
        let records = bytes
            .windows(3)
            .filter(|w| *w == [0x17, 0x03, 0x03])
            .count();
        let handshake = alpn(&bytes) || server_hello || records >= 2;
        if !alpn(&bytes) {
            eprintln!(
                "the capture missed the ClientHello; ServerHello seen: {server_hello}; \
                 application data records: {records}"
            );
        }
        Captured {
            text: self.stop(),
            handshake,
        }
    }

    fn stop(mut self) -> String {
        // SIGINT lets tcpdump flush and close the file.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let out = sbin("tcpdump")
            .args(["-nn", "-A", "-r"])
            .arg(&self.file)
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meshed_pods_speak_mutual_tls_with_their_workload_identities() {
    let test = "meshed_pods_speak_mutual_tls_with_their_workload_identities";
    if !can_run(test, &["curl"]) {
        return;
    }
    let dir = TempDir::new().unwrap();
    write(dir.path(), YAML);
    let mesh = Meshed::start("10.201.30.0/24", vec![dir.path().to_owned()]).await;
    let (admin, state) = (mesh.running.admin, &mesh.state);

    // Both Pods injected, and Ready only once their sidecars hold certificates.
    let all = wait_ready(admin, 2, "two ready meshed Pods").await;
    assert!(all.iter().all(has_sidecar), "{all:#?}");
    // The sidecar-only program next to `ferry` (cargo builds every bin of the package).
    let alone = Path::new(env!("CARGO_BIN_EXE_ferry")).with_file_name("ferry-sidecar");
    for pod in &all {
        let command = pod
            .pointer("/spec/initContainers/0/command/0")
            .and_then(Value::as_str);
        assert_eq!(command, alone.to_str(), "{pod:#}");
    }

    let server_ip = all
        .iter()
        .find(|p| p["metadata"]["labels"]["app"] == "echo")
        .and_then(|p| p.pointer("/status/podIP"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let capture = installed("tcpdump").then(|| Capture::start(&server_ip, state.path()));
    // The app sends plain HTTP; its sidecar carries it.
    let answer = eventually(DEADLINE, "an answer through both sidecars", || async {
        let out = exec(
            admin,
            "mesh",
            "client",
            "curl -sf -m 5 http://echo.mesh.svc.cluster.local/hello",
        );
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await;
    let echoed: Value = serde_json::from_str(&answer).unwrap();
    let xfcc = echoed
        .pointer("/headers/x-forwarded-client-cert")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(
        xfcc.contains("URI=spiffe://cluster.local/ns/mesh/sa/shopper")
            && xfcc.contains("By=spiffe://cluster.local/ns/mesh/sa/default"),
        "{answer}"
    );

    if let Some(capture) = capture {
        let captured = capture.stop_after_handshake().await;
        let packets = captured.text;
        assert!(
            captured.handshake,
            "the mesh's TLS handshake to {server_ip} crossed the bridge: {packets}"
        );
        for plain in ["GET /hello", "x-forwarded-client-cert", "HTTP/1.1 200"] {
            assert!(
                !packets.contains(plain),
                "{plain:?} crossed the bridge in plaintext"
            );
        }
    } else {
        eprintln!("tcpdump is not installed: the bridge is not captured");
    }

    // The Pods list the sidecar as a container of their own (kubectl's READY 2/2).
    let client = pods(admin)
        .await
        .into_iter()
        .find(|p| p["metadata"]["name"] == "client")
        .unwrap();
    assert_eq!(
        client["status"]["initContainerStatuses"][0]["ready"],
        Value::Bool(true),
        "{client:#}"
    );
    mesh.stop().await;
}
