//! The mesh's traffic end to end in `ferry up` (netns mode), on one cluster (one start, one
//! stop: each meshed Pod is two processes and a network namespace), and the meshed demo on a
//! second ([`the_demo_is_meshed_in_netns_mode`]):
//!
//! - gRPC over ONE h2c connection from a meshed client is balanced per request: every one of
//!   three meshed echo Pods behind the Service answers some (their sidecars' inbound
//!   `ferry_sidecar_requests`);
//! - opaque TCP crosses both sidecars as mutual TLS: a client-first line protocol on port 7000
//!   and a server-first one on 3306 (the server writes a banner before reading), which the
//!   client's sidecar classifies opaque by its port, without waiting for bytes that never come
//!   (`ferry_sidecar_detections{outcome="opaque_port"}`, never `opaque_timeout`); a capture on
//!   the node sees neither protocol's bytes;
//! - strict mTLS (`ferry.dev/mtls-mode: strict` on the Pod): a plaintext client in a Namespace
//!   outside the mesh is refused, a meshed one is served;
//! - AuthorizationPolicies given as manifest files: ALLOW by principal (one ServiceAccount
//!   allowed, another gets 403), DENY by namespace (over an ALLOW of the same principal), by
//!   path and by method;
//! - a Job-style Pod (`restartPolicy: Never`) in the meshed Namespace: its app reaches a
//!   Service through the sidecar (with its own identity), exits 0, the sidecar is stopped after
//!   it and the Pod is Succeeded (`ferry get pods`: Completed); the others show READY 2/2.
//!
//! Root (CAP_NET_ADMIN), `ip`, `nft`, curl and h2load are needed, and perl (Debian's
//! essential perl-base) runs the TCP apps; tcpdump for the capture. Without them the test says
//! why it is skipped. Pod range 10.201.47.0/24, service range 10.211.47.0/24.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Output};

use ferry_model::mesh::ADMIN_PORT;
use serde_json::Value;
use tempfile::TempDir;

use crate::mesh::{Capture, Meshed, can_run, exec, has_sidecar};
use crate::pod_network::{field, pods, wait_ready, write};
use crate::pod_services::installed;
use crate::{DEADLINE, eventually};

const CIDR: &str = "10.201.47.0/24";

/// A line protocol where the client speaks first: one line in, `got <line>` out.
const LINE_SERVER: &str = r#"use IO::Socket::INET; my $l = IO::Socket::INET->new(LocalPort => 7000, Listen => 16, ReuseAddr => 1) or die "listen: $!"; while (my $c = $l->accept) { my $line = <$c>; print $c "got $line" if defined $line; close $c }"#;
/// A protocol where the server speaks first (as MySQL and SMTP do): a banner, then the line one.
const BANNER_SERVER: &str = r#"use IO::Socket::INET; my $l = IO::Socket::INET->new(LocalPort => 3306, Listen => 16, ReuseAddr => 1) or die "listen: $!"; while (my $c = $l->accept) { print $c "220 ferry-banner\n"; my $line = <$c>; print $c "got $line" if defined $line; close $c }"#;

fn yaml() -> String {
    let echo = |name: &str, annotations: &str, replicas: u8| {
        format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: mt}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}, annotations: {{{annotations}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: echo
          image: ferry/echo
          ports: [{{name: http, containerPort: 8080}}]
          readinessProbe: {{httpGet: {{path: /healthz, port: http}}, periodSeconds: 1}}
---"#
        )
    };
    let client = |namespace: &str, name: &str, account: &str| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  serviceAccountName: {account}
  terminationGracePeriodSeconds: 1
  containers: [{{name: sh, image: busybox, command: [sleep, "3600"]}}]
---"#
        )
    };
    let quoted = |s: &str| serde_json::to_string(s).unwrap();
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: mt, annotations: {{ferry.dev/inject: enabled}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: mt-other, annotations: {{ferry.dev/inject: enabled}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: mt-plain}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: reader, namespace: mt}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: shopper, namespace: mt}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: batch, namespace: mt}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: reader, namespace: mt-other}}
---{echo}{guarded}
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: mt}}
spec:
  clusterIP: 10.211.47.20
  selector: {{app: echo}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: guarded, namespace: mt}}
spec:
  clusterIP: 10.211.47.21
  selector: {{app: guarded}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: tcp, namespace: mt, labels: {{app: tcp}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - {{name: line, image: perl, command: [perl, -e, {line}], ports: [{{containerPort: 7000}}]}}
    - {{name: banner, image: perl, command: [perl, -e, {banner}], ports: [{{containerPort: 3306}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: tcp, namespace: mt}}
spec:
  clusterIP: 10.211.47.22
  selector: {{app: tcp}}
  # Names that hint nothing: the banner port is opaque by its number alone.
  ports: [{{name: line, port: 7000}}, {{name: banner, port: 3306}}]
---{reader}{shopper}{other}{plain}
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: readers, namespace: mt}}
spec:
  selector: {{matchLabels: {{app: guarded}}}}
  rules:
    - from: [{{source: {{principals: [cluster.local/ns/mt/sa/reader, cluster.local/ns/mt-other/sa/reader]}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: not-other, namespace: mt}}
spec:
  selector: {{matchLabels: {{app: guarded}}}}
  action: DENY
  rules: [{{from: [{{source: {{namespaces: [mt-other]}}}}]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: no-admin-no-delete, namespace: mt}}
spec:
  selector: {{matchLabels: {{app: guarded}}}}
  action: DENY
  rules:
    - to: [{{operation: {{paths: ["/admin*"]}}}}]
    - to: [{{operation: {{methods: [DELETE]}}}}]
"#,
        echo = echo("echo", "", 3),
        guarded = echo("guarded", "ferry.dev/mtls-mode: strict", 1),
        line = quoted(LINE_SERVER),
        banner = quoted(BANNER_SERVER),
        reader = client("mt", "reader", "reader"),
        shopper = client("mt", "shopper", "shopper"),
        other = client("mt-other", "reader", "reader"),
        plain = client("mt-plain", "plain", "default"),
    )
}

/// The Job-style Pod: its app asks the echo Service once, through its sidecar, and exits.
fn job_yaml(out: &Path) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: job, namespace: mt}}
spec:
  restartPolicy: Never
  serviceAccountName: batch
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: busybox
      command: [curl, -sf, -m, "5", -o, {out:?}, http://echo/from-job]
"#,
        out = out.display().to_string()
    )
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The address of the Pod `namespace/name`, or of the one labelled `app: <name>`.
fn ip_of(all: &[Value], namespace: &str, name: &str) -> IpAddr {
    let pod = all
        .iter()
        .filter(|p| p["metadata"]["namespace"] == namespace)
        .find(|p| p["metadata"]["name"] == name || p["metadata"]["labels"]["app"] == name)
        .unwrap_or_else(|| panic!("no Pod {namespace}/{name}"));
    field(pod, "/status/podIP").parse().unwrap()
}

/// A sidecar's metrics, from its admin port on the Pod's address.
async fn metrics(pod_ip: IpAddr) -> String {
    let (status, body) = crate::get(SocketAddr::new(pod_ip, ADMIN_PORT), "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The sum of a metric's samples whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let matches = metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum::<f64>() as u64
}

/// HTTP status of `curl` in a Pod (`000` when there was no answer).
fn status(admin: SocketAddr, namespace: &str, pod: &str, args: &str) -> String {
    let out = exec(
        admin,
        namespace,
        pod,
        &format!("curl -s -m 5 -o /dev/null -w '%{{http_code}}' {args}"),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_traffic_grpc_opaque_tcp_strict_authorization_and_a_job() {
    let test = "mesh_traffic_grpc_opaque_tcp_strict_authorization_and_a_job";
    if !can_run(test, &["curl", "h2load", "perl"]) {
        return;
    }
    let dir = TempDir::new().unwrap();
    write(dir.path(), &yaml());
    let mesh = Meshed::start(CIDR, vec![dir.path().to_owned()]).await;
    let (admin, state) = (mesh.running.admin, &mesh.state);
    let all = wait_ready(admin, 9, "nine ready Pods").await;
    for pod in &all {
        let meshed = pod["metadata"]["namespace"] != "mt-plain";
        assert_eq!(has_sidecar(pod), meshed, "{pod:#}");
    }

    grpc_is_balanced_per_request(admin, &all).await;
    opaque_tcp_crosses_as_mutual_tls(admin, &all, state.path()).await;
    strict_refuses_plaintext(admin, &all).await;
    authorization_policies_decide(admin, &all).await;
    ready_two_of_two(admin);
    a_job_pod_completes(admin, dir.path(), state.path()).await;

    mesh.stop().await;
}

/// gRPC over one h2c connection (h2load -c1), balanced per request over the three echo Pods.
async fn grpc_is_balanced_per_request(admin: SocketAddr, all: &[Value]) {
    let servers: Vec<IpAddr> = all
        .iter()
        .filter(|p| p["metadata"]["labels"]["app"] == "echo")
        .map(|p| field(p, "/status/podIP").parse().unwrap())
        .collect();
    assert_eq!(servers.len(), 3);
    let inbound = |text: &str| {
        sample(
            text,
            "ferry_sidecar_requests_total",
            &[
                ("direction", "inbound"),
                ("peer", "spiffe://cluster.local/ns/mt/sa/shopper"),
                ("status", "2xx"),
            ],
        )
    };
    let mut before = Vec::new();
    for ip in &servers {
        before.push(inbound(&metrics(*ip).await));
    }
    // A gRPC call's shape: POST, application/grpc, te: trailers, a length-prefixed message
    // (an empty one: five bytes).
    let message = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(message.path(), [0u8; 5]).unwrap();
    let script = format!(
        "h2load -c1 -m10 -n200 -d {} -H 'content-type: application/grpc' -H 'te: trailers' \
         http://echo.mt.svc.cluster.local/ferry.test.Echo/Say",
        message.path().display()
    );
    let report = ok(&exec(admin, "mt", "shopper", &script));
    assert!(
        report.contains("200 succeeded, 0 failed") && report.contains("status codes: 200 2xx"),
        "{report}"
    );
    let mut got = Vec::new();
    for (ip, before) in servers.iter().zip(before) {
        got.push(inbound(&metrics(*ip).await) - before);
    }
    assert_eq!(got.iter().sum::<u64>(), 200, "{got:?}");
    assert!(
        got.iter().all(|&n| n > 0),
        "one connection's requests reach every Pod: {got:?}"
    );
}

/// A client-first and a server-first protocol through both sidecars, as mTLS on the bridge.
async fn opaque_tcp_crosses_as_mutual_tls(admin: SocketAddr, all: &[Value], dir: &Path) {
    let server = ip_of(all, "mt", "tcp");
    let client = ip_of(all, "mt", "shopper");
    let capture = installed("tcpdump").then(|| Capture::start(&server.to_string(), dir));

    let line = ok(&exec(
        admin,
        "mt",
        "shopper",
        r#"perl -MIO::Socket::INET -e 'alarm 10; my $s = IO::Socket::INET->new(PeerAddr => "tcp.mt.svc.cluster.local:7000") or die "connect: $!"; print $s "ping-opaque\n"; print scalar <$s>'"#,
    ));
    assert_eq!(line, "got ping-opaque\n");
    // The client waits for the banner and sends nothing before it.
    let banner = ok(&exec(
        admin,
        "mt",
        "shopper",
        r#"perl -MIO::Socket::INET -e 'alarm 10; my $s = IO::Socket::INET->new(PeerAddr => "tcp.mt.svc.cluster.local:3306") or die "connect: $!"; my $b = <$s>; print $s "after-banner\n"; print $b, scalar <$s>'"#,
    ));
    assert_eq!(banner, "220 ferry-banner\ngot after-banner\n");

    // Classified without waiting: the banner port by its number on both sides, the line
    // protocol by its first bytes; nothing waited for the detection timeout.
    let (out, inb) = (metrics(client).await, metrics(server).await);
    let detected = |text: &str, direction: &str, outcome: &str| {
        sample(
            text,
            "ferry_sidecar_detections_total",
            &[("direction", direction), ("outcome", outcome)],
        )
    };
    assert!(detected(&out, "outbound", "opaque_port") >= 1, "{out}");
    assert!(detected(&out, "outbound", "opaque_unknown") >= 1, "{out}");
    assert_eq!(detected(&out, "outbound", "opaque_timeout"), 0, "{out}");
    assert!(detected(&inb, "inbound", "mesh_tls") >= 2, "{inb}");
    assert!(detected(&inb, "inbound", "opaque_port") >= 1, "{inb}");
    assert_eq!(detected(&inb, "inbound", "opaque_timeout"), 0, "{inb}");
    assert_eq!(
        sample(&inb, "ferry_sidecar_plaintext_connections_total", &[]),
        0,
        "{inb}"
    );

    if let Some(capture) = capture {
        let captured = capture.stop_after_handshake().await;
        let packets = captured.text;
        assert!(captured.handshake, "{packets}");
        for plain in ["ping-opaque", "ferry-banner", "after-banner"] {
            assert!(
                !packets.contains(plain),
                "{plain:?} crossed the bridge in plaintext"
            );
        }
    } else {
        eprintln!("tcpdump is not installed: the bridge is not captured");
    }
}

/// `guarded` is strict: a Pod outside the mesh is refused, a meshed one served.
async fn strict_refuses_plaintext(admin: SocketAddr, all: &[Value]) {
    let guarded = ip_of(all, "mt", "guarded");
    // The plaintext client reaches a permissive Pod of the mesh.
    ok(&exec(
        admin,
        "mt-plain",
        "plain",
        "curl -sf -m 5 http://echo.mt.svc.cluster.local/",
    ));
    // Strict once the sidecar follows its Pod's policy.
    eventually(DEADLINE, "a plaintext client refused (strict)", || async {
        let out = exec(
            admin,
            "mt-plain",
            "plain",
            "curl -s -m 5 http://guarded.mt.svc.cluster.local/",
        );
        let refused = sample(
            &metrics(guarded).await,
            "ferry_sidecar_plaintext_connections_total",
            &[("direction", "inbound"), ("outcome", "refused_strict")],
        );
        (!out.status.success() && out.stdout.is_empty() && refused >= 1).then_some(())
    })
    .await;
    let answer = ok(&exec(
        admin,
        "mt",
        "reader",
        "curl -sf -m 5 http://guarded.mt.svc.cluster.local/hello",
    ));
    let echoed: Value = serde_json::from_str(&answer).unwrap();
    assert!(
        field(&echoed, "/headers/x-forwarded-client-cert")
            .contains("URI=spiffe://cluster.local/ns/mt/sa/reader"),
        "{answer}"
    );
}

/// ALLOW by principal, DENY by namespace, path and method, on `guarded`.
async fn authorization_policies_decide(admin: SocketAddr, all: &[Value]) {
    let url = "http://guarded.mt.svc.cluster.local";
    eventually(DEADLINE, "the policies applied", || async {
        let reader = status(admin, "mt", "reader", &format!("{url}/hello"));
        let shopper = status(admin, "mt", "shopper", &format!("{url}/hello"));
        (reader == "200" && shopper == "403").then_some(())
    })
    .await;
    let cases = [
        // The principal is allowed, its namespace denied: DENY first.
        ("mt-other", "reader", format!("{url}/hello"), "403"),
        ("mt", "reader", format!("{url}/admin/users"), "403"),
        // Normalized before matching: no way around the path rule.
        (
            "mt",
            "reader",
            format!("--path-as-is {url}/x/../admin"),
            "403",
        ),
        ("mt", "reader", format!("-X DELETE {url}/hello"), "403"),
        ("mt", "reader", format!("-X POST {url}/hello"), "200"),
    ];
    for (namespace, pod, args, want) in cases {
        assert_eq!(
            status(admin, namespace, pod, &args),
            want,
            "{namespace}/{pod}: {args}"
        );
    }
    let denied = sample(
        &metrics(ip_of(all, "mt", "guarded")).await,
        "ferry_sidecar_authz_decisions_total",
        &[("direction", "inbound"), ("outcome", "deny_http")],
    );
    assert!(denied >= 5, "{denied} denials counted");
}

/// `ferry get pods`: the sidecar is a container of every meshed Pod.
fn ready_two_of_two(admin: SocketAddr) {
    let out = ok(&Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["get", "pods", "--admin", &admin.to_string()])
        .output()
        .unwrap());
    for line in out.lines().skip(1) {
        let ready = if line.starts_with("mt-plain ") {
            "1/1"
        } else if line.contains(" tcp ") {
            "3/3"
        } else {
            "2/2"
        };
        assert!(
            line.split_whitespace().any(|c| c == ready),
            "{ready}: {out}"
        );
    }
}

/// A Job-style Pod added to the running cluster: it reaches a Service through its sidecar,
/// exits 0, its sidecar is stopped after it, and the Pod is Succeeded.
async fn a_job_pod_completes(admin: SocketAddr, dir: &Path, scratch: &Path) {
    let out = scratch.join("job.json");
    let tmp = dir.join(".job.yaml.tmp");
    std::fs::write(&tmp, job_yaml(&out)).unwrap();
    std::fs::rename(tmp, dir.join("job.yaml")).unwrap();
    let job = eventually(DEADLINE, "the Job-style Pod Succeeded", || async {
        pods(admin)
            .await
            .into_iter()
            .find(|p| p["metadata"]["name"] == "job" && field(p, "/status/phase") == "Succeeded")
    })
    .await;
    assert!(has_sidecar(&job), "{job:#}");
    assert_eq!(
        job.pointer("/status/containerStatuses/0/state/terminated/exitCode"),
        Some(&Value::from(0)),
        "{job:#}"
    );
    // The sidecar stopped after the app.
    let sidecar = job
        .pointer("/status/initContainerStatuses/0/state/terminated")
        .unwrap_or_else(|| panic!("the sidecar still runs: {job:#}"));
    let app_finished = field(
        &job,
        "/status/containerStatuses/0/state/terminated/finishedAt",
    );
    assert!(
        !app_finished.is_empty() && field(sidecar, "/finishedAt") >= app_finished,
        "{job:#}"
    );
    // What the app got, through its sidecar, with its identity.
    let answer = std::fs::read_to_string(&out).unwrap();
    let echoed: Value = serde_json::from_str(&answer).unwrap();
    assert!(
        field(&echoed, "/headers/x-forwarded-client-cert")
            .contains("URI=spiffe://cluster.local/ns/mt/sa/batch"),
        "{answer}"
    );
    let listed = ok(&Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["get", "pods", "--admin", &admin.to_string()])
        .output()
        .unwrap());
    let row = listed.lines().find(|l| l.contains(" job ")).unwrap_or("");
    assert!(row.contains("Completed") && row.contains("0/2"), "{listed}");
}

/// The demo (configs/demo) in netns mode is meshed, as the README's walk-through shows: its six
/// Pods READY 2/2, a Pod reaches the api Service by name with both identities in
/// `x-forwarded-client-cert`, and the gateway on the node reaches the meshed api Pods in
/// plaintext (permissive mode). Pod range 10.201.48.0/24, service range 10.211.48.0/24.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_is_meshed_in_netns_mode() {
    let test = "the_demo_is_meshed_in_netns_mode";
    if !can_run(test, &["curl"]) {
        return;
    }
    let mesh = Meshed::start("10.201.48.0/24", vec![crate::repo().join("configs/demo")]).await;
    let admin = mesh.running.admin;
    let all = wait_ready(admin, 6, "the demo's six ready Pods").await;
    assert!(all.iter().all(has_sidecar), "{all:#?}");
    let listed = ok(&Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["get", "pods", "--admin", &admin.to_string()])
        .output()
        .unwrap());
    assert_eq!(listed.matches(" 2/2 ").count(), 6, "{listed}");

    let web = all
        .iter()
        .find(|p| p["metadata"]["labels"]["release"] == "summer")
        .unwrap();
    let answer = ok(&exec(
        admin,
        "shop",
        field(web, "/metadata/name"),
        "curl -sf -m 5 http://api:8080/api",
    ));
    let echoed: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        field(&echoed, "/headers/x-forwarded-client-cert"),
        "By=spiffe://cluster.local/ns/shop/sa/default;URI=spiffe://cluster.local/ns/shop/sa/default",
        "{answer}"
    );
    // The gateway's plaintext is taken by the api Pods' sidecars (permissive): no identity.
    let port = mesh.running.https.port();
    let url = format!("https://shop.example.com:{port}/api");
    let resolve = format!("shop.example.com:{port}:127.0.0.1");
    let answer = eventually(DEADLINE, "the gateway reaches the api", || async {
        let out = Command::new("curl")
            .args(["-skf", "-m", "5", "--resolve", &resolve, &url])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await;
    let echoed: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(field(&echoed, "/name"), "api", "{answer}");
    assert_eq!(
        field(&echoed, "/headers/x-forwarded-client-cert"),
        "",
        "{answer}"
    );
    mesh.stop().await;
}
