//! The Kubernetes API of `ferry up`, operations side, driven by the real `kubectl` (skipped,
//! with the reason printed, where it is not installed): `logs` (the default container,
//! `-c`, `--tail`, `--timestamps`, `--since`, `-p`, `-f` seeing a line written after it started), `exec` (output and exit
//! code; stdin with `-i`), `get events`, `describe pod|deployment` with their Events and
//! conditions, `rollout status`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::kubectl::{Cluster, have_kubectl, kubectl, ok};
use crate::{DEADLINE, eventually};

/// A Deployment `web` of one Pod with two containers: `web` writes two lines, then a third
/// once the file `$GO` exists; `side` writes three.
fn manifests(go: &Path) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: default}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
        - name: web
          image: sh
          env: [{{name: GO, value: "{go}"}}]
          command: ["sh", "-c", "echo hello from web; echo line two; while [ ! -e \"$GO\" ]; do sleep 0.1; done; echo after go; exec sleep 600"]
        - name: side
          image: sh
          command: ["sh", "-c", "echo side 1; echo side 2; echo side 3; exec sleep 600"]
"#,
        go = go.display()
    )
}

/// The running `web` Pod's name, once both its containers have written their first lines.
async fn web_pod(kc: &Path, cache: &Path) -> String {
    eventually(DEADLINE, "the web Pod running with its logs", || async {
        let out = kubectl(
            kc,
            cache,
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={.items[0].metadata.name}",
            ],
        )
        .await;
        let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if name.is_empty() {
            return None;
        }
        let side = kubectl(kc, cache, &["logs", &name, "-c", "side"]).await;
        String::from_utf8_lossy(&side.stdout)
            .contains("side 3")
            .then_some(name)
    })
    .await
}

#[tokio::test]
async fn kubectl_logs_and_exec_work_as_against_a_real_cluster() {
    if !have_kubectl("kubectl_logs_and_exec_work_as_against_a_real_cluster").await {
        return;
    }
    let (dir, state, cache) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    let go = dir.path().join("go");
    let manifest_dir = dir.path().join("manifests");
    std::fs::create_dir(&manifest_dir).unwrap();
    std::fs::write(manifest_dir.join("app.yaml"), manifests(&go)).unwrap();
    let cluster = Cluster::start(&manifest_dir, state.path(), None).await;
    let (kc, cache) = (cluster.kubeconfig.clone(), cache.path().to_owned());
    let pod = web_pod(&kc, &cache).await;

    // logs: kubectl picks the first container of two, and says so.
    let out = kubectl(&kc, &cache, &["logs", &pod]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from web\nline two\n"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Defaulted container \"web\" out of: web, side"),
        "{out:?}"
    );
    assert_eq!(
        ok(&kc, &cache, &["logs", &pod, "-c", "side", "--tail", "1"]).await,
        "side 3\n"
    );
    // --timestamps: each line behind when it was written; --since=1h is all of them.
    let stamped = ok(
        &kc,
        &cache,
        &["logs", &pod, "-c", "side", "--timestamps", "--since=1h"],
    )
    .await;
    let lines: Vec<(&str, &str)> = stamped
        .lines()
        .map(|l| l.split_once(' ').expect("a time, then the line"))
        .collect();
    assert_eq!(
        lines.iter().map(|(_, l)| *l).collect::<Vec<_>>(),
        ["side 1", "side 2", "side 3"]
    );
    assert!(
        lines
            .iter()
            .all(|(t, _)| t.ends_with('Z') && t.starts_with("20") && t.contains('T')),
        "{stamped}"
    );
    // A container the Pod does not have: the API server's error.
    let out = kubectl(&kc, &cache, &["logs", &pod, "-c", "nope"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("container nope is not valid for pod"),
        "{out:?}"
    );
    // --previous: the container has not restarted.
    let out = kubectl(&kc, &cache, &["logs", &pod, "-c", "side", "--previous"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("previous terminated container \"side\" in pod"),
        "{out:?}"
    );

    // logs -f: what is there, then a line written after kubectl started.
    let mut follow = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kc)
        .arg("--cache-dir")
        .arg(&cache)
        .args(["logs", "-f", &pod, "-c", "web"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut next = async || {
        tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("kubectl logs -f prints within the deadline")
            .unwrap()
            .expect("kubectl logs -f still follows")
    };
    assert_eq!(next().await, "hello from web");
    assert_eq!(next().await, "line two");
    std::fs::write(&go, b"").unwrap();
    assert_eq!(next().await, "after go");
    follow.kill().await.unwrap();

    // exec: the output and the exit code.
    let out = kubectl(
        &kc,
        &cache,
        &[
            "exec",
            &pod,
            "-c",
            "web",
            "--",
            "sh",
            "-c",
            "echo hi; echo oops >&2; exit 3",
        ],
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n", "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("oops"),
        "{out:?}"
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // In the container's environment: its own variables.
    assert_eq!(
        ok(
            &kc,
            &cache,
            &["exec", &pod, "-c", "web", "--", "sh", "-c", "echo $GO"]
        )
        .await,
        format!("{}\n", go.display())
    );

    // A container the Pod does not have: the same error through kubectl's SPDY fallback.
    let out = kubectl(&kc, &cache, &["exec", &pod, "-c", "nope", "--", "true"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("container nope is not valid for pod"),
        "{out:?}"
    );

    // SPDY, kubectl's fallback, is refused plainly; so is a request that upgrades nothing.
    let path = format!(
        "/api/v1/namespaces/default/pods/{pod}/exec?command=true&container=web&stdout=true"
    );
    let (code, body) = exec_request(
        &cluster,
        &path,
        &[
            ("upgrade", "SPDY/3.1"),
            ("connection", "Upgrade"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
        ],
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["reason"], "BadRequest");
    assert!(
        body["message"].as_str().unwrap().contains(
            "speaks exec over a WebSocket (v5.channel.k8s.io, v4.channel.k8s.io), not SPDY/3.1"
        ),
        "{body}"
    );
    let (code, _) = exec_request(&cluster, &path, &[]).await;
    assert_eq!(code, 400);

    // exec -i: stdin is carried, and its end reaches the command (v5's close).
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kc)
        .arg("--cache-dir")
        .arg(&cache)
        .args([
            "exec",
            "-i",
            &pod,
            "-c",
            "side",
            "--",
            "sh",
            "-c",
            "read x; echo got $x; cat | wc -l",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"abc\none\ntwo\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("kubectl exec -i ends once its stdin is done")
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["got", "abc", "2"]
    );

    cluster.stop().await;
}

/// A Deployment `web` of two Pods that sleep, a Pod `probed` whose readiness probe fails, and
/// a Deployment `stuck` whose one Pod never gets ready, with a progress deadline of 2 s.
const EVENTFUL: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - {name: web, image: sh, command: ["sleep", "600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: probed, namespace: default}
spec:
  containers:
    - name: app
      image: sh
      command: ["sleep", "600"]
      readinessProbe:
        exec: {command: ["false"]}
        periodSeconds: 1
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck, namespace: default}
spec:
  replicas: 1
  progressDeadlineSeconds: 2
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec:
      containers:
        - name: app
          image: sh
          command: ["sleep", "600"]
          readinessProbe: {exec: {command: ["false"]}, periodSeconds: 1}
"#;

#[tokio::test]
async fn kubectl_shows_events_in_get_and_describe_and_rollout_status_ends() {
    if !have_kubectl("kubectl_shows_events_in_get_and_describe_and_rollout_status_ends").await {
        return;
    }
    let (manifests, state, cache) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    std::fs::write(manifests.path().join("app.yaml"), EVENTFUL).unwrap();
    let cluster = Cluster::start(manifests.path(), state.path(), None).await;
    let (kc, cache) = (cluster.kubeconfig.clone(), cache.path().to_owned());

    // rollout status: kubectl follows the Deployment until it is rolled out.
    let out = ok(
        &kc,
        &cache,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    )
    .await;
    assert!(
        out.trim_end()
            .ends_with("deployment \"web\" successfully rolled out"),
        "{out}"
    );

    // A rollout that makes no progress for its deadline: kubectl says so and fails.
    let out = kubectl(
        &kc,
        &cache,
        &["rollout", "status", "deployment/stuck", "--timeout=60s"],
    )
    .await;
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("deployment \"stuck\" exceeded its progress deadline"),
        "{out:?}"
    );
    let described = ok(&kc, &cache, &["describe", "deployment", "stuck"]).await;
    assert!(
        described
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["Progressing", "False", "ProgressDeadlineExceeded"]),
        "{described}"
    );

    // get events: the scheduler's, the kubelet's and the controllers'.
    let events = eventually(
        DEADLINE,
        "the events of the rollout and the probe",
        || async {
            let out = ok(&kc, &cache, &["get", "events"]).await;
            [
                "Scheduled",
                "Started",
                "ScalingReplicaSet",
                "SuccessfulCreate",
                "Unhealthy",
            ]
            .iter()
            .all(|r| out.contains(r))
            .then_some(out)
        },
    )
    .await;
    let header: Vec<&str> = events.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    );
    assert!(events.contains("Scaled up replica set web-"), "{events}");
    assert!(events.contains("deployment/web"), "{events}");

    // describe pod: its own events, found by kubectl's field selector on involvedObject.
    let described = ok(&kc, &cache, &["describe", "pod", "probed"]).await;
    let tail = &described[described.find("Events:").expect("an Events section")..];
    assert!(
        tail.contains("Successfully assigned default/probed to"),
        "{tail}"
    );
    assert!(tail.contains("Started container: app"), "{tail}");
    assert!(tail.contains("Readiness probe failed: command"), "{tail}");
    assert!(!tail.contains("web-"), "only the Pod's own events: {tail}");

    // describe deployment: its conditions and the scaling.
    let described = ok(&kc, &cache, &["describe", "deployment", "web"]).await;
    let rows: Vec<Vec<&str>> = described
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        rows.contains(&vec!["Available", "True", "MinimumReplicasAvailable"]),
        "{described}"
    );
    assert!(
        rows.contains(&vec!["Progressing", "True", "NewReplicaSetAvailable"]),
        "{described}"
    );
    assert!(described.contains("ScalingReplicaSet"), "{described}");
    assert!(
        described.contains("Scaled up replica set web-"),
        "{described}"
    );
    cluster.stop().await;
}

/// A POST to an exec path over HTTPS with the cluster's token and these headers: the status
/// and the `Status` body.
async fn exec_request(
    cluster: &Cluster,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    use http_body_util::BodyExt;
    let kubeconfig = std::fs::read_to_string(&cluster.kubeconfig).unwrap();
    let token = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap()
        .to_owned();
    let config = ferry_runtime::tls::any_server_client_config().unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(cluster.api).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::post(path)
        .header("host", cluster.api.to_string())
        .header("authorization", format!("Bearer {token}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = sender
        .send_request(
            req.body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let code = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&body).unwrap())
}

/// In netns mode, `kubectl exec` runs the command in the Pod's own network namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_runs_in_the_pods_network_namespace() {
    let test = "kubectl_exec_runs_in_the_pods_network_namespace";
    if !have_kubectl(test).await {
        return;
    }
    if let Err(why) = ferry_orchestrator::network::can_create_namespaces() {
        eprintln!("skipped {test}: netns mode cannot run here: {why}");
        return;
    }
    use std::os::unix::fs::MetadataExt as _;
    let (manifests, state, cache) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    std::fs::write(
        manifests.path().join("app.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: own, namespace: default}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{name: app, image: sh, command: [sleep, \"600\"]}]\n",
    )
    .unwrap();
    let cidr = "10.201.14.0/24";
    let cluster = Cluster::start_with(manifests.path(), state.path(), None, |c| {
        c.pod_network = ferry_orchestrator::network::PodNetwork::Netns;
        c.local.cluster.pod_cidr = cidr.parse().unwrap();
        c.local.cluster.service_cidr = crate::pod_network::service_cidr_of(cidr).parse().unwrap();
    })
    .await;
    let (kc, cache) = (cluster.kubeconfig.clone(), cache.path().to_owned());
    let ip = eventually(DEADLINE, "the Pod running on its own IP", || async {
        let out = kubectl(
            &kc,
            &cache,
            &[
                "get",
                "pod",
                "own",
                "-o",
                "jsonpath={.status.phase} {.status.podIP}",
            ],
        )
        .await;
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        let (phase, ip) = out.split_once(' ')?;
        (phase == "Running")
            .then(|| ip.parse::<std::net::Ipv4Addr>().ok())
            .flatten()
    })
    .await;
    let names = ferry_orchestrator::network::Names::of(cidr.parse().unwrap());
    let inode = std::fs::metadata(Path::new("/run/netns").join(names.netns(ip)))
        .unwrap()
        .ino();
    let out = ok(
        &kc,
        &cache,
        &["exec", "own", "--", "readlink", "/proc/self/ns/net"],
    )
    .await;
    assert_eq!(out, format!("net:[{inode}]\n"));
    cluster.stop().await;
}
