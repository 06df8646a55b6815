//! The Kubernetes API of `ferry up`, read side, driven by the real `kubectl` (skipped, with the
//! reason printed, where it is not installed): `version`, `get` of every kind served, `-o
//! wide|yaml|json`, `-A`, `-l`, `-w`, a missing object's NotFound; a raw watch from 0 and
//! from a version too old (410); the API refusing requests without the token; the
//! kubeconfig surviving a restart on the same state directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry::up::Up;
use ferry_runtime::ShutdownTrigger;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tempfile::TempDir;

use crate::{DEADLINE, eventually, up_config};

/// How long one kubectl run may take.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(30);

/// Two Deployments of the echo app: `web` (2 replicas) in `shop` with its Service and
/// Ingress, `api` (1 replica) in `default`.
const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: ferry/echo
          ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
spec:
  rules:
    - host: web.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
        - name: api
          image: ferry/echo
          ports: [{containerPort: 8080}]
"#;

/// A `ferry up` with its API on 127.0.0.1:0 and its state in `state`.
pub(crate) struct Cluster {
    pub(crate) api: SocketAddr,
    pub(crate) kubeconfig: PathBuf,
    /// The snapshots the control plane publishes.
    pub(crate) bus: ferry_runtime::SnapshotBus,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
}

impl Cluster {
    pub(crate) async fn start(manifests: &Path, state: &Path, write: Option<PathBuf>) -> Cluster {
        Cluster::start_with(manifests, state, write, |_| {}).await
    }

    /// As [`Cluster::start`], with the configuration changed by `change` first.
    pub(crate) async fn start_with(
        manifests: &Path,
        state: &Path,
        write: Option<PathBuf>,
        change: impl FnOnce(&mut ferry::up::UpConfig),
    ) -> Cluster {
        let mut config = up_config(vec![manifests.to_owned()]);
        change(&mut config);
        config.api = Some(ferry_orchestrator::apiserver::Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: state.to_owned(),
            kubeconfig: write,
        });
        let up = Up::build(config).await.unwrap();
        let api = up.api_addr().unwrap();
        let kubeconfig = up.kubeconfig().unwrap().to_owned();
        let bus = up.bus().clone();
        let (trigger, shutdown) = ferry_runtime::shutdown::channel();
        let task = tokio::spawn(async move { up.run(shutdown).await.unwrap() });
        Cluster {
            api,
            kubeconfig,
            bus,
            trigger,
            task,
        }
    }

    pub(crate) async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap();
    }
}

/// Whether the real kubectl is here; says why a test skips when not.
pub(crate) async fn have_kubectl(test: &str) -> bool {
    let found = tokio::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipping {test}: kubectl is not installed");
    }
    found
}

/// Runs kubectl against a kubeconfig, with a discovery cache of the test's own.
pub(crate) async fn kubectl(kubeconfig: &Path, cache: &Path, args: &[&str]) -> Output {
    let run = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(KUBECTL_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} took longer than {KUBECTL_TIMEOUT:?}"))
        .unwrap()
}

/// kubectl's stdout when it succeeds; fails the test with its stderr otherwise.
pub(crate) async fn ok(kubeconfig: &Path, cache: &Path, args: &[&str]) -> String {
    let out = kubectl(kubeconfig, cache, args).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "kubectl {args:?}: {stderr}{stdout}");
    stdout
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[tokio::test]
async fn kubectl_gets_the_local_clusters_objects_as_from_a_real_cluster() {
    if !have_kubectl("kubectl_gets_the_local_clusters_objects_as_from_a_real_cluster").await {
        return;
    }
    let (manifests, state, cache) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    std::fs::write(manifests.path().join("app.yaml"), MANIFESTS).unwrap();
    let cluster = Cluster::start(manifests.path(), state.path(), None).await;
    let (kc, cache) = (cluster.kubeconfig.clone(), cache.path().to_owned());
    assert_eq!(kc, state.path().join("kubeconfig"));

    // version: the server answers as Kubernetes 1.32.
    let version: Value =
        serde_json::from_str(&ok(&kc, &cache, &["version", "-o", "json"]).await).unwrap();
    assert_eq!(version["serverVersion"]["major"], "1", "{version}");
    assert_eq!(version["serverVersion"]["minor"], "32", "{version}");

    // get pods -o wide: kubectl's columns, every Pod running and ready, on its own address.
    let wide = eventually(DEADLINE, "three running ready Pods", || async {
        let out = ok(&kc, &cache, &["get", "pods", "-A", "-o", "wide"]).await;
        let rows = out
            .lines()
            .skip(1)
            .filter(|l| words(l)[2..4] == ["1/1", "Running"])
            .count();
        (rows == 3).then_some(out)
    })
    .await;
    let mut lines = wide.lines();
    assert_eq!(
        words(lines.next().unwrap()),
        [
            "NAMESPACE",
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ],
        "{wide}"
    );
    for line in lines {
        let w = words(line);
        assert!(w[6].starts_with("127."), "the Pod's IP: {line}");
        assert_eq!(w[7], "ferry", "the node: {line}");
        assert_eq!(w[8..], ["<none>", "<none>"], "{line}");
    }

    // Several kinds at once, each in its own table.
    let out = ok(
        &kc,
        &cache,
        &["get", "svc,deploy,rs,ing,endpointslices", "-n", "shop"],
    )
    .await;
    for name in [
        "service/web",
        "deployment.apps/web",
        "replicaset.apps/web-",
        "ingress.networking.k8s.io/web",
        "endpointslice.discovery.k8s.io/web-",
    ] {
        assert!(out.contains(name), "{name} in {out}");
    }
    assert!(
        out.contains("NAME                  READY   UP-TO-DATE   AVAILABLE   AGE"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("deployment.apps/web") && words(l)[1] == "2/2"),
        "{out}"
    );

    // -A -l: across namespaces, by label.
    let out = ok(&kc, &cache, &["get", "pods", "-A", "-l", "app=web"]).await;
    let rows: Vec<Vec<&str>> = out.lines().skip(1).map(words).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows.iter()
            .all(|r| r[0] == "shop" && r[1].starts_with("web-")),
        "{out}"
    );
    let out = ok(
        &kc,
        &cache,
        &[
            "get",
            "pods",
            "-A",
            "-l",
            "app notin (web)",
            "--field-selector",
            "status.phase=Running",
        ],
    )
    .await;
    let rows: Vec<Vec<&str>> = out.lines().skip(1).map(words).collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0][0], "default", "{out}");

    // -o yaml: a List of the Pods as they are.
    let yaml = ok(&kc, &cache, &["get", "pods", "-n", "shop", "-o", "yaml"]).await;
    let list: Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(list["kind"], "List", "{yaml}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for pod in items {
        assert_eq!(pod["kind"], "Pod");
        assert_eq!(pod["status"]["phase"], "Running");
        assert!(
            pod["metadata"]["resourceVersion"]
                .as_str()
                .is_some_and(|v| !v.is_empty())
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
    }

    // -o json of one Deployment.
    let json = ok(
        &kc,
        &cache,
        &["get", "deploy", "web", "-n", "shop", "-o", "json"],
    )
    .await;
    let deploy: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(deploy["apiVersion"], "apps/v1");
    assert_eq!(deploy["kind"], "Deployment");
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(deploy["status"]["readyReplicas"], 2);
    assert!(deploy["metadata"]["uid"].is_string(), "{json}");

    // The Endpoints the endpoints controller would write, from the Service's slices.
    let out = ok(&kc, &cache, &["get", "endpoints", "web", "-n", "shop"]).await;
    let row = words(out.lines().nth(1).unwrap()).join(" ");
    assert_eq!(row.matches(":8080").count(), 2, "{out}");

    // describe reads the Pod and its Events by field selector.
    let name = items[0]["metadata"]["name"].as_str().unwrap();
    let out = ok(&kc, &cache, &["describe", "pod", name, "-n", "shop"]).await;
    for line in ["Status:", "Port:", "Events:"] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(line)),
            "{line} in {out}"
        );
    }
    assert!(out.contains("8080/TCP"), "the port defaulted to TCP: {out}");
    // get events: the Pods' scheduling (kubectl_ops.rs tests the Events themselves).
    let out = ok(&kc, &cache, &["get", "events", "-A"]).await;
    assert!(out.contains("Scheduled"), "{out}");

    // A missing object: NotFound, as kubectl prints it.
    let out = kubectl(&kc, &cache, &["get", "pod", "missing"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        r#"Error from server (NotFound): pods "missing" not found"#
    );

    cluster.stop().await;
}

/// A GET over HTTPS with an optional bearer token, trusting any certificate (what is checked
/// here is the token, not the certificate; kubectl checks that against the kubeconfig's CA).
async fn https_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Value) {
    let (status, _, body) = https_get_raw(addr, path, token).await;
    (status, serde_json::from_slice(&body).unwrap())
}

/// A GET as [`https_get`]'s, its body read to its end, with the response's headers.
async fn https_get_raw(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> (u16, http::HeaderMap, Bytes) {
    https_request(addr, http::Method::GET, path, token, None).await
}

/// A request as [`https_get_raw`]'s, with a method and a JSON body (`content type`, body).
pub(crate) async fn https_request(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, String)>,
) -> (u16, http::HeaderMap, Bytes) {
    let config = ferry_runtime::tls::any_server_client_config().unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some((content_type, body)) => {
            req = req.header("content-type", content_type);
            Full::new(Bytes::from(body))
        }
        None => Full::new(Bytes::new()),
    };
    let res = sender.send_request(req.body(body).unwrap()).await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

pub(crate) fn token_of(kubeconfig: &str) -> String {
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_api_answers_401_without_the_token() {
    let (manifests, state) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let cluster = Cluster::start(manifests.path(), state.path(), None).await;
    let token = token_of(&std::fs::read_to_string(&cluster.kubeconfig).unwrap());
    for (path, given) in [
        ("/api/v1/pods", None),
        ("/version", None),
        ("/api/v1/pods", Some("not-the-token")),
    ] {
        let (status, body) = https_get(cluster.api, path, given).await;
        assert_eq!(status, 401, "{path} {given:?}");
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["reason"], "Unauthorized");
        assert_eq!(body["code"], 401);
    }
    let (status, body) = https_get(cluster.api, "/api/v1/namespaces", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kind"], "NamespaceList");
    cluster.stop().await;
}

#[tokio::test]
async fn the_kubeconfig_survives_a_restart_on_the_same_state_dir() {
    let (manifests, state, cache, out) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    let written = out.path().join("ferry.kubeconfig");
    let cluster = Cluster::start(manifests.path(), state.path(), Some(written.clone())).await;
    assert_eq!(cluster.kubeconfig, written);
    let first = std::fs::read_to_string(&written).unwrap();
    assert_eq!(
        first,
        std::fs::read_to_string(state.path().join("kubeconfig")).unwrap(),
        "a copy is kept in the state dir"
    );
    assert!(
        first.contains(&format!("server: https://{}", cluster.api)),
        "{first}"
    );
    cluster.stop().await;

    // Restarted on another port: the CA and the token are the same, so the old kubeconfig
    // keeps working once pointed at the new address.
    let cluster = Cluster::start(manifests.path(), state.path(), Some(written.clone())).await;
    let second = std::fs::read_to_string(&written).unwrap();
    assert_eq!(token_of(&first), token_of(&second));
    let ca = |k: &str| {
        k.lines()
            .find(|l| l.contains("certificate-authority-data"))
            .unwrap()
            .to_owned()
    };
    assert_eq!(ca(&first), ca(&second));

    // `ferry kubeconfig` prints the one in the state dir.
    let printed = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("kubeconfig")
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .await
        .unwrap();
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&printed.stdout), second);

    // A state dir ferry up never used: the error names the file and what writes it.
    let empty = out.path().join("never-used");
    let printed = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("kubeconfig")
        .arg("--state-dir")
        .arg(&empty)
        .output()
        .await
        .unwrap();
    assert_eq!(printed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&printed.stderr);
    assert!(
        stderr.contains(&empty.join("kubeconfig").display().to_string())
            && stderr.contains("ferry up --state-dir"),
        "{stderr}"
    );

    if have_kubectl("the_kubeconfig_survives_a_restart_on_the_same_state_dir (its kubectl part)")
        .await
    {
        let old = out.path().join("old.kubeconfig");
        std::fs::write(&old, &first).unwrap();
        let server = format!("https://{}", cluster.api);
        let ns = ok(
            &old,
            cache.path(),
            &["--server", &server, "get", "ns", "default", "-o", "name"],
        )
        .await;
        assert_eq!(ns.trim(), "namespace/default");
    }
    cluster.stop().await;
}

/// The next line kubectl prints, within the deadline.
async fn next_line(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> String {
    tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("no line from kubectl get -w within {DEADLINE:?}"))
        .unwrap()
        .expect("kubectl get -w ended")
}

#[tokio::test]
async fn kubectl_get_pods_w_prints_the_pods_then_a_new_one() {
    if !have_kubectl("kubectl_get_pods_w_prints_the_pods_then_a_new_one").await {
        return;
    }
    let (manifests, state, cache) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    let file = manifests.path().join("app.yaml");
    std::fs::write(&file, MANIFESTS).unwrap();
    let cluster = Cluster::start(manifests.path(), state.path(), None).await;
    let (kc, cache) = (cluster.kubeconfig.clone(), cache.path().to_owned());
    let running: Vec<String> = eventually(DEADLINE, "two running web Pods", || async {
        let out = ok(&kc, &cache, &["get", "pods", "-n", "shop", "--no-headers"]).await;
        let names: Vec<String> = out
            .lines()
            .filter(|l| words(l)[1..3] == ["1/1", "Running"])
            .map(|l| words(l)[0].to_owned())
            .collect();
        (names.len() == 2).then_some(names)
    })
    .await;

    let mut watch = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kc)
        .arg("--cache-dir")
        .arg(&cache)
        .args(["get", "pods", "-w", "-n", "shop"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    // The list first, as against a real cluster.
    assert_eq!(
        words(&next_line(&mut lines).await),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    let mut listed = vec![
        words(&next_line(&mut lines).await)[0].to_owned(),
        words(&next_line(&mut lines).await)[0].to_owned(),
    ];
    listed.sort();
    assert_eq!(listed, running);

    // A third replica in the manifest: its Pod comes on the watch, running in the end.
    std::fs::write(&file, MANIFESTS.replacen("replicas: 2", "replicas: 3", 1)).unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut new = None;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no third Pod running on the watch within {DEADLINE:?} (saw {new:?})"
        );
        let line = next_line(&mut lines).await;
        let w = words(&line);
        assert_eq!(w.len(), 5, "a row of the Pod table: {line}");
        if listed.iter().any(|n| n == w[0]) {
            continue;
        }
        assert!(w[0].starts_with("web-"), "{line}");
        new = Some(w[0].to_owned());
        if w[1..3] == ["1/1", "Running"] {
            break;
        }
    }
    watch.kill().await.unwrap();
    cluster.stop().await;
}

#[tokio::test]
async fn a_raw_watch_streams_from_0_and_answers_an_expired_error_to_a_version_too_old() {
    let (manifests, state) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    std::fs::write(manifests.path().join("app.yaml"), MANIFESTS).unwrap();
    let cluster = Cluster::start(manifests.path(), state.path(), None).await;
    let token = token_of(&std::fs::read_to_string(&cluster.kubeconfig).unwrap());
    let names: Vec<String> = eventually(DEADLINE, "two web Pods listed", || async {
        let (_, list) = https_get(cluster.api, "/api/v1/namespaces/shop/pods", Some(&token)).await;
        let names: Vec<String> = list["items"]
            .as_array()?
            .iter()
            .filter_map(|p| Some(p["metadata"]["name"].as_str()?.to_owned()))
            .collect();
        (names.len() == 2).then_some(names)
    })
    .await;

    // From 0: the state as ADDED events, one JSON object a line, until timeoutSeconds ends it.
    let (status, headers, body) = https_get_raw(
        cluster.api,
        "/api/v1/namespaces/shop/pods?watch=true&resourceVersion=0&timeoutSeconds=1",
        Some(&token),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["transfer-encoding"], "chunked");
    let text = String::from_utf8(body.to_vec()).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let added: Vec<&str> = events
        .iter()
        .take_while(|e| e["type"] == "ADDED")
        .map(|e| e["object"]["metadata"]["name"].as_str().unwrap())
        .collect();
    for name in &names {
        assert!(added.contains(&name.as_str()), "{name} ADDED first: {text}");
    }
    for e in &events {
        assert_eq!(e["object"]["kind"], "Pod", "{text}");
        assert_eq!(e["object"]["metadata"]["namespace"], "shop", "{text}");
    }

    // From a version older than any this run keeps: an ERROR event with 410 Expired (as the
    // API server's watch cache answers), and the client relists.
    let (status, event) = https_get(
        cluster.api,
        "/api/v1/pods?watch=true&resourceVersion=1",
        Some(&token),
    )
    .await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["type"], "ERROR", "{event}");
    let body = &event["object"];
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Expired");
    assert_eq!(body["code"], 410);
    cluster.stop().await;
}
