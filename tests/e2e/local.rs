//! The local runtime end to end: Deployments run as real `ferry echo` processes on their own
//! loopback addresses, their readiness drives the endpoints, the L4 Service proxy and the
//! gateway reach them, and rollouts, scaling, restarts and rollbacks work under load.
//!
//! The L4 proxy listens on the Services' cluster IPs at port 80, which takes root or the
//! sysctl `net.ipv4.ip_unprivileged_port_start` at 80 or lower (`.ci/run` sets it); without
//! either, the checks through it are skipped with the reason printed, and the rest still run.

use std::collections::BTreeSet;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use hickory_proto::rr::RecordType;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tempfile::TempDir;

use crate::{DEADLINE, Running, eventually, get_json};

/// A namespace, a Deployment of the echo app with a readiness probe, its Service (cluster IP
/// allocated) and an Ingress for `web.test`.
fn app(replicas: u32, version: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: shop}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: shop}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  strategy:
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: web
          image: ferry/echo
          env: [{{name: VERSION, value: "{version}"}}]
          ports: [{{name: http, containerPort: 8080}}]
          readinessProbe:
            httpGet: {{path: /healthz, port: http}}
            periodSeconds: 1
{extra}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: web, namespace: shop}}
spec:
  rules:
    - host: web.test
      http:
        paths:
          - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"#
    )
}

fn write(dir: &Path, yaml: &str) {
    // Written aside and renamed, so the watcher never reads half a file.
    let tmp = dir.join(".app.yaml.tmp");
    fs::write(&tmp, yaml).unwrap();
    fs::rename(tmp, dir.join("app.yaml")).unwrap();
}

async fn start(yaml: &str) -> (TempDir, Running) {
    let dir = TempDir::new().unwrap();
    write(dir.path(), yaml);
    let running = Running::start(vec![dir.path().to_owned()]).await;
    (dir, running)
}

async fn pods(admin: SocketAddr) -> Vec<Value> {
    get_json(admin, "/api/v1/pods").await["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        && pod.pointer("/metadata/deletionTimestamp").is_none()
}

fn name(pod: &Value) -> String {
    pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn env(pod: &Value, key: &str) -> Option<String> {
    pod.pointer("/spec/containers/0/env")?
        .as_array()?
        .iter()
        .find(|e| e["name"] == key)
        .and_then(|e| e["value"].as_str())
        .map(str::to_owned)
}

/// Waits until exactly `n` Pods exist, all ready, all matching `check`; returns them.
async fn wait_ready(
    admin: SocketAddr,
    n: usize,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    eventually(DEADLINE, what, || async {
        let all = pods(admin).await;
        (all.len() == n && all.iter().all(|p| ready(p) && check(p))).then_some(all)
    })
    .await
}

async fn service(admin: SocketAddr, name: &str) -> Value {
    let config = get_json(admin, "/config").await;
    config["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap()
}

/// The ready endpoint addresses the served snapshot has for a Service.
async fn ready_endpoints(admin: SocketAddr, name: &str) -> BTreeSet<String> {
    service(admin, name).await["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ready"] == true)
        .map(|e| e["address"].as_str().unwrap().to_owned())
        .collect()
}

async fn cluster_ip(admin: SocketAddr, name: &str) -> IpAddr {
    service(admin, name).await["cluster_ips"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// One request on a fresh connection: the status and the echo's `pod`, or why it failed.
pub(crate) async fn one_request(addr: SocketAddr, host: &str) -> Result<(u16, String), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = res.status().as_u16();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok((status, json["pod"].as_str().unwrap_or_default().to_owned()))
}

/// A POST to the admin API, with the CLI's own client.
async fn post(admin: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = ferry::get::request(admin, http::Method::POST, path)
        .await
        .unwrap();
    (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_reaches_its_replicas_and_serves_through_l4_gateway_and_dns() {
    let (_dir, running) = start(&app(3, "1", "")).await;
    let all = wait_ready(running.admin, 3, "3 ready pods", |_| true).await;
    let ips: BTreeSet<String> = all
        .iter()
        .map(|p| p["status"]["podIP"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ips.len(), 3, "each Pod has its own address: {ips:?}");
    let hash = all[0]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_owned();
    for p in &all {
        assert!(name(p).starts_with(&format!("web-{hash}-")), "{}", name(p));
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        assert_eq!(env(p, "VERSION").as_deref(), Some("1"));
    }
    eventually(DEADLINE, "the endpoints are the Pods", || async {
        (ready_endpoints(running.admin, "web").await == ips).then_some(())
    })
    .await;

    // The L4 proxy on the cluster IP spreads connections over the Pods.
    let ip = cluster_ip(running.admin, "web").await;
    match port_80() {
        Ok(()) => {
            let via_l4 = SocketAddr::new(ip, 80);
            let seen = std::sync::Mutex::new(BTreeSet::new());
            eventually(DEADLINE, "the L4 proxy reaches every Pod", || async {
                if let Ok((200, pod)) = one_request(via_l4, "web").await {
                    seen.lock().unwrap().insert(pod);
                }
                (seen.lock().unwrap().len() == 3).then_some(())
            })
            .await;
        }
        Err(why) => eprintln!("skipping the L4 checks on {ip}:80: {why}"),
    }
    // The gateway too.
    let (status, pod) = one_request(running.http, "web.test").await.unwrap();
    assert_eq!(status, 200);
    assert!(all.iter().any(|p| name(p) == pod), "{pod}");
    // DNS answers the cluster IP.
    let answer = crate::dns::ask(running.dns, "web.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(crate::dns::data(&answer), vec![ip.to_string()]);

    let deployments = get_json(running.admin, "/api/v1/deployments").await;
    let d = &deployments["items"][0];
    assert_eq!(d["status"]["readyReplicas"], 3);
    assert_eq!(d["status"]["updatedReplicas"], 3);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_restarts_and_its_endpoint_returns_only_when_ready() {
    let probe_delay = "            initialDelaySeconds: 2";
    let (_dir, running) = start(&app(1, "1", probe_delay)).await;
    let pod = wait_ready(running.admin, 1, "a ready pod", |_| true)
        .await
        .remove(0);
    let ip = pod["status"]["podIP"].as_str().unwrap().to_owned();
    let id = pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap();
    let pid = id.rsplit('/').next().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", pid])
        .status()
        .unwrap();
    assert!(killed.success());

    let restarted = eventually(DEADLINE, "the container restarts", || async {
        let p = pods(running.admin).await.into_iter().next()?;
        let c = &p["status"]["containerStatuses"][0];
        (c["restartCount"] == 1 && c["state"].get("running").is_some()).then_some(p)
    })
    .await;
    assert_eq!(
        restarted["status"]["containerStatuses"][0]["lastState"]["terminated"]["signal"], 9,
        "{restarted}"
    );
    assert!(!ready(&restarted), "not ready before its probe passes");
    assert!(
        !ready_endpoints(running.admin, "web").await.contains(&ip),
        "the endpoint waits for readiness"
    );
    eventually(DEADLINE, "ready again", || async {
        ready_endpoints(running.admin, "web")
            .await
            .contains(&ip)
            .then_some(())
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_up_and_down() {
    let (_dir, running) = start(&app(1, "1", "")).await;
    wait_ready(running.admin, 1, "one pod", |_| true).await;
    let (status, body) = post(running.admin, "/api/v1/scale?name=web&replicas=4").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "deployment.apps/web scaled\n");
    wait_ready(running.admin, 4, "four pods", |_| true).await;
    eventually(DEADLINE, "four endpoints", || async {
        (ready_endpoints(running.admin, "web").await.len() == 4).then_some(())
    })
    .await;
    post(
        running.admin,
        "/api/v1/scale?namespace=shop&name=web&replicas=1",
    )
    .await;
    wait_ready(running.admin, 1, "one pod left, the others gone", |_| true).await;
    assert_eq!(ready_endpoints(running.admin, "web").await.len(), 1);
    let (status, body) = post(running.admin, "/api/v1/scale?name=nope&replicas=1").await;
    assert_eq!(
        (status, body.as_str()),
        (404, "deployment nope not found\n")
    );
    running.stop().await;
}

/// Whether this process may listen on port 80, as the L4 proxy must to serve the cluster IPs
/// of these Services: as root (`CAP_NET_BIND_SERVICE`), or where the sysctl
/// `net.ipv4.ip_unprivileged_port_start` is 80 or lower (`.ci/run` sets it). Asks the kernel
/// by binding UDP port 80 on loopback, which takes nothing from a TCP server there; a port
/// already in use passed the permission check.
fn port_80() -> Result<(), String> {
    match std::net::UdpSocket::bind(("127.0.0.1", 80)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(()),
        Err(e) => Err(format!(
            "listening on port 80 needs root or `sysctl -w net.ipv4.ip_unprivileged_port_start=80` ({e})"
        )),
    }
}

/// Requests in a loop until `stop`: each on a fresh connection through the L4 proxy, and
/// each through the gateway; failures are counted with their reason.
fn client(
    target: SocketAddr,
    host: &'static str,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            match one_request(target, host).await {
                Ok((200, _)) => {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok((status, _)) => failures
                    .lock()
                    .unwrap()
                    .push(format!("{host}: status {status}")),
                Err(e) => failures.lock().unwrap().push(format!("{host}: {e}")),
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_keeps_every_request_succeeding_and_rollback_restores_the_template() {
    let (dir, running) = start(&app(3, "1", "")).await;
    wait_ready(running.admin, 3, "three v1 pods", |p| {
        env(p, "VERSION").as_deref() == Some("1")
    })
    .await;
    let ip = cluster_ip(running.admin, "web").await;
    eventually(DEADLINE, "three endpoints", || async {
        (ready_endpoints(running.admin, "web").await.len() == 3).then_some(())
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut clients = vec![client(
        running.http,
        "web.test",
        stop.clone(),
        ok.clone(),
        failures.clone(),
    )];
    match port_80() {
        Ok(()) => clients.push(client(
            SocketAddr::new(ip, 80),
            "web",
            stop.clone(),
            ok.clone(),
            failures.clone(),
        )),
        Err(why) => eprintln!("skipping the client through the L4 proxy on {ip}:80: {why}"),
    }

    write(dir.path(), &app(3, "2", ""));
    wait_ready(running.admin, 3, "three v2 pods, the v1 ones gone", |p| {
        env(p, "VERSION").as_deref() == Some("2")
    })
    .await;
    let during_update = ok.load(Ordering::Relaxed);

    // Back to v1 with `rollout undo`, still under load.
    let (status, body) = post(running.admin, "/api/v1/rollout/undo?name=web").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "deployment.apps/web rolled back to revision 1\n");
    wait_ready(running.admin, 3, "three v1 pods again", |p| {
        env(p, "VERSION").as_deref() == Some("1")
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert!(
        during_update > 20,
        "the client ran: {during_update} requests"
    );

    let history = get_json(running.admin, "/api/v1/rollout/history?name=web").await;
    let revisions: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revisions, vec![2, 3], "v1 came back as revision 3");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_liveness_probe_restarts_the_container() {
    let liveness = "          livenessProbe:\n            tcpSocket: {port: 9}\n            periodSeconds: 1\n            failureThreshold: 1";
    let (_dir, running) = start(&app(1, "1", liveness)).await;
    let p = eventually(DEADLINE, "a restart by the liveness probe", || async {
        let p = pods(running.admin).await.into_iter().next()?;
        (p["status"]["containerStatuses"][0]["restartCount"].as_i64()? >= 1).then_some(p)
    })
    .await;
    assert!(
        p["status"]["containerStatuses"][0]["lastState"]
            .get("terminated")
            .is_some(),
        "{p}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_pod_spec_is_reported_on_its_status_and_disturbs_nothing_else() {
    let bad = r#"
---
apiVersion: v1
kind: Pod
metadata: {name: nginx, namespace: shop}
spec:
  containers:
    - {name: nginx, image: "nginx:1.27"}
"#;
    let (_dir, running) = start(&(app(2, "1", "") + bad)).await;
    let reason = eventually(DEADLINE, "the bad Pod's waiting reason", || async {
        let all = pods(running.admin).await;
        let p = all.iter().find(|p| name(p) == "nginx")?;
        let waiting = &p["status"]["containerStatuses"][0]["state"]["waiting"];
        Some((
            waiting["reason"].as_str()?.to_owned(),
            waiting["message"].as_str()?.to_owned(),
        ))
    })
    .await;
    assert_eq!(reason.0, "ErrImageNeverPull");
    assert!(reason.1.contains("nginx:1.27"), "{}", reason.1);
    eventually(DEADLINE, "the good Pods are ready", || async {
        let all = pods(running.admin).await;
        (all.iter().filter(|p| ready(p)).count() == 2).then_some(())
    })
    .await;
    let status = get_json(running.admin, "/status").await;
    assert_eq!(status["state"], "ok", "{status}");
    assert_eq!(one_request(running.http, "web.test").await.unwrap().0, 200);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_selecting_one_release_gets_only_its_pods() {
    let (running, summer) = {
        let running = Running::start(vec![crate::repo().join("configs/demo")]).await;
        let all = eventually(DEADLINE, "the demo's six pods ready", || async {
            let all = pods(running.admin).await;
            (all.len() == 6 && all.iter().all(ready)).then_some(all)
        })
        .await;
        let summer: BTreeSet<String> = all
            .iter()
            .filter(|p| p["metadata"]["labels"]["release"] == "summer")
            .map(|p| p["status"]["podIP"].as_str().unwrap().to_owned())
            .collect();
        (running, summer)
    };
    assert_eq!(summer.len(), 2);
    eventually(DEADLINE, "web's endpoints are the summer pods", || async {
        (ready_endpoints(running.admin, "web").await == summer).then_some(())
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_logs_scales_and_rolls_out() {
    let (dir, running) = start(&app(2, "1", "")).await;
    wait_ready(running.admin, 2, "two pods", |_| true).await;
    let admin = running.admin.to_string();
    let ferry = |args: &[&str]| {
        let admin = admin.clone();
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
                    .args(&args)
                    .args(["--admin", &admin])
                    .output()
                    .unwrap();
                (
                    out.status.success(),
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            })
            .await
            .unwrap()
        }
    };
    let (ok, out, err) = ferry(&["get", "pods", "-o", "wide"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NAMESPACE") && lines[0].contains("RESTARTS"),
        "{out}"
    );
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[1].contains("1/1") && lines[1].contains("Running"),
        "{out}"
    );
    let pod = lines[1].split_whitespace().nth(1).unwrap().to_owned();

    let (ok, out, err) = ferry(&["get", "deploy"]).await;
    assert!(
        ok && out.contains("web") && out.contains("2/2"),
        "{out}{err}"
    );
    let (ok, out, _) = ferry(&["get", "rs"]).await;
    assert!(ok && out.lines().count() == 2, "{out}");

    // The echo logs a line when it starts.
    let (ok, out, err) = ferry(&["logs", &pod]).await;
    assert!(ok && !out.is_empty(), "{out}{err}");
    let (ok, _, err) = ferry(&["logs", "no-such-pod"]).await;
    assert!(!ok && err.contains("pod no-such-pod not found"), "{err}");
    // `logs -f` follows until Ctrl-C (SIGINT), as the README's walk-through stops it.
    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["logs", "-f", &pod, "--admin", &admin])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let first = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        line
    })
    .await
    .unwrap();
    assert!(!first.is_empty());
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &follow.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let follow = std::sync::Mutex::new(follow);
    let status = eventually(DEADLINE, "logs -f stopped by SIGINT", || async {
        follow.lock().unwrap().try_wait().unwrap()
    })
    .await;
    assert!(status.success(), "{status:?}");

    let (ok, out, err) = ferry(&["scale", "deployment/web", "--replicas", "3", "-n", "shop"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "deployment.apps/web scaled\n");
    let (ok, out, err) = ferry(&["rollout", "status", "deployment/web", "--timeout", "20s"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.ends_with("deployment \"web\" successfully rolled out\n"),
        "{out}"
    );

    write(dir.path(), &app(3, "2", ""));
    eventually(DEADLINE, "the change is read", || async {
        let history = get_json(running.admin, "/api/v1/rollout/history?name=web").await;
        (history.as_array()?.len() == 2).then_some(())
    })
    .await;
    let (ok, out, err) = ferry(&["rollout", "status", "deploy/web", "--timeout", "20s"]).await;
    assert!(ok, "{out}{err}");
    let (ok, out, _) = ferry(&["rollout", "history", "deployment/web"]).await;
    assert!(
        ok && out.contains("REVISION") && out.lines().count() == 4,
        "{out}"
    );
    let (ok, out, err) = ferry(&["rollout", "undo", "deployment/web", "--to-revision", "1"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "deployment.apps/web rolled back to revision 1\n");
    let (ok, _, err) = ferry(&["rollout", "undo", "deployment/web", "--to-revision", "9"]).await;
    assert!(!ok && err.contains("revision 9"), "{err}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_change_acts_on_nothing() {
    let (dir, running) = start(&app(2, "1", "")).await;
    let before: BTreeSet<String> = wait_ready(running.admin, 2, "two v1 pods", |_| true)
        .await
        .iter()
        .map(name)
        .collect();
    let taken = cluster_ip(running.admin, "web").await;
    // A new template, and a Service naming the cluster IP web holds: the API server would
    // refuse the Service, so the whole change is refused and no Pod is touched.
    let clash = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: other, namespace: shop}}\n\
         spec: {{clusterIP: {taken}, ports: [{{port: 81}}]}}\n"
    );
    write(dir.path(), &(app(2, "2", "") + &clash));
    let status = eventually(DEADLINE, "the change is rejected", || async {
        let status = get_json(running.admin, "/status").await;
        (status["state"] == "rejected").then_some(status)
    })
    .await;
    assert!(
        status
            .to_string()
            .contains("provided IP is already allocated"),
        "{status}"
    );
    let after: BTreeSet<String> = pods(running.admin).await.iter().map(name).collect();
    assert_eq!(after, before, "no Pod started or stopped");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_web_pages() {
    let dir = TempDir::new().unwrap();
    let running = Running::start(vec![dir.path().to_owned()]).await;
    let raw = |request: String| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(running.admin).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    };
    let cross_site = raw(format!(
        "POST /api/v1/scale?name=web&replicas=0 HTTP/1.1\r\nHost: {}\r\nOrigin: http://evil.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        running.admin
    ))
    .await;
    assert!(cross_site.starts_with("HTTP/1.1 403"), "{cross_site}");
    let rebound = raw(
        "GET /api/v1/pods HTTP/1.1\r\nHost: evil.example:9901\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    let cli = raw(format!(
        "GET /api/v1/pods HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        running.admin
    ))
    .await;
    assert!(cli.starts_with("HTTP/1.1 200"), "{cli}");
    running.stop().await;
}

/// A Pod without probes is Ready as soon as its process runs, which can be before the control
/// loop starts watching the kubelet: that first change must not be lost. Many starts, since
/// the race is won or lost by scheduling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_without_probes_become_ready_on_every_start() {
    let yaml = app(1, "v1", "").replace(
        "          readinessProbe:\n            httpGet: {path: /healthz, port: http}\n            periodSeconds: 1\n",
        "",
    );
    assert!(!yaml.contains("Probe"), "the template has no probe: {yaml}");
    for start_number in 1..=20 {
        let (_dir, running) = start(&yaml).await;
        eventually(
            DEADLINE,
            &format!("start {start_number}: the Pod's endpoint ready in the served snapshot"),
            || async { (ready_endpoints(running.admin, "web").await.len() == 1).then_some(()) },
        )
        .await;
        running.stop().await;
    }
}

/// A Pod's child that leaves its process group (`setsid`) does not outlive ferry: each
/// container runs in a cgroup of its own, killed whole when the Pod stops. Needs root and
/// cgroup v2; says why it skips otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setsid_child_does_not_outlive_ferry() {
    let cgroup2 = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .contains(" - cgroup2 ");
    let root = fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if !root || !cgroup2 {
        eprintln!("skipped: Pods run in cgroups only as root with cgroup v2 mounted");
        return;
    }
    let dir = TempDir::new().unwrap();
    let marker = dir.path().join("child.pid");
    let yaml = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: forker, namespace: default}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: busybox
      command: [sh, -c, 'setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > {}; exec sleep 1000']
"#,
        marker.display()
    );
    fs::write(dir.path().join("pod.yaml"), yaml).unwrap();
    let running = Running::start(vec![dir.path().to_owned()]).await;
    let pid: i32 = eventually(DEADLINE, "the child's pid", || async {
        fs::read_to_string(&marker).ok()?.trim().parse().ok()
    })
    .await;
    let alive = |pid: i32| {
        fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
    };
    assert!(alive(pid), "the setsid child runs");
    running.stop().await;
    let survived = alive(pid);
    if survived {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    assert!(
        !survived,
        "the setsid child {pid} outlived ferry's shutdown"
    );
}

/// A Pod starts with the soft descriptor limit ferry itself was started with, not the one ferry
/// raised for itself at start (as containerd gives a container the node's default, not its own
/// raised limit). ferry runs as its own process here, started with a low soft limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_start_with_the_descriptor_limit_ferry_was_started_with() {
    let hard = ferry_runtime::descriptors::nofile_limit().hard;
    let Some(hard) = hard.filter(|&h| h > 256) else {
        eprintln!("skipped: the hard descriptor limit ({hard:?}) leaves nothing to raise");
        return;
    };
    let dir = TempDir::new().unwrap();
    let manifests = dir.path().join("manifests");
    fs::create_dir(&manifests).unwrap();
    let seen = dir.path().join("limits");
    let probed = dir.path().join("probe-limits");
    let yaml = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: limits, namespace: default}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: busybox
      command: [sh, -c, 'echo $(ulimit -S -n) $(ulimit -H -n) > {0}.tmp && mv {0}.tmp {0}; exec sleep 1000']
      readinessProbe:
        exec:
          command: [sh, -c, 'echo $(ulimit -S -n) > {1}.tmp && mv {1}.tmp {1}']
        periodSeconds: 1
"#,
        seen.display(),
        probed.display()
    );
    fs::write(manifests.join("pod.yaml"), yaml).unwrap();
    let local = crate::local_config();
    let mut ferry = std::process::Command::new("sh")
        .args(["-c", "ulimit -S -n 256 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_ferry"))
        .arg("up")
        .arg("-f")
        .arg(&manifests)
        .args(["--http", "127.0.0.1:0", "--https", "127.0.0.1:0"])
        .args(["--dns", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--pod-cidr", &local.cluster.pod_cidr.to_string()])
        .args(["--service-cidr", &local.cluster.service_cidr.to_string()])
        .args(["--api", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path().join("state"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let limits = eventually(DEADLINE, "the Pod's limits written", || async {
        fs::read_to_string(&seen).ok()
    })
    .await;
    let probe_limit = eventually(DEADLINE, "the exec probe's limit written", || async {
        fs::read_to_string(&probed).ok()
    })
    .await;
    // SIGTERM: ferry stops its Pods and exits.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &ferry.id().to_string()])
        .status();
    // Bounded here rather than by `eventually`'s panic, so that ferry is killed either way.
    let exited = tokio::time::timeout(
        DEADLINE,
        eventually(DEADLINE * 2, "ferry exits", || {
            std::future::ready(ferry.try_wait().ok().flatten())
        }),
    )
    .await;
    if exited.is_err() {
        let _ = ferry.kill();
        let _ = ferry.wait();
    }
    assert_eq!(limits.trim(), format!("256 {hard}"), "soft and hard");
    assert_eq!(
        probe_limit.trim(),
        "256",
        "an exec probe runs with the container's limit"
    );
}

/// A `ferry up` that fails to start after its Pods began (here: its admin port is taken)
/// stops them before it returns the error, rather than leaving them running; and a port the
/// data planes need taken fails before any Pod starts.
#[tokio::test]
async fn a_ferry_up_that_fails_to_start_leaves_no_pod_running() {
    let dir = TempDir::new().unwrap();
    let marker = format!("ferry-failed-start-{}", std::process::id());
    fs::write(
        dir.path().join("pod.yaml"),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: lonely, namespace: default}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: busybox\n    command: [sh, -c, 'exec -a {marker} sleep 1000']\n"
        ),
    )
    .unwrap();
    let running = || {
        std::process::Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    // The admin port is bound after the local cluster starts its Pods.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = crate::up_config(vec![dir.path().to_owned()]);
    config.admin = taken.local_addr().unwrap();
    let err = ferry::up::Up::build(config).await.unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    assert!(!running(), "a Pod outlived the failed start");
    // The gateway's port is bound before any Pod starts.
    let mut config = crate::up_config(vec![dir.path().to_owned()]);
    config.http = taken.local_addr().unwrap();
    ferry::up::Up::build(config).await.unwrap_err();
    assert!(!running(), "a Pod ran for a start that could not bind");
}
