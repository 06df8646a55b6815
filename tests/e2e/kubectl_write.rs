//! The Kubernetes API of `ferry up`, write side: the real `kubectl` (skipped, with the reason
//! printed, where it is not installed) creates, applies, deletes (waiting as against a real
//! cluster), scales and rolls back; over HTTPS, a stale resourceVersion is 409, an invalid
//! object 422 with its field, objects made through the API live next to the manifest files'
//! (a file edit reaches the store with the last-applied annotation, and leaves the API's
//! objects alone), and a running Pod is deleted gracefully.

use std::path::Path;

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::kubectl::{Cluster, have_kubectl, https_request, kubectl, ok, token_of};
use crate::{DEADLINE, eventually};

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: ferry/echo
          ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: one, labels: {app: one}}
spec:
  containers: [{name: one, image: ferry/echo, ports: [{containerPort: 8080}]}]
"#;

const EXTRA_SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: extra}
spec:
  selector: {app: one}
  ports: [{port: 81, targetPort: 8080}]
"#;

/// The names of the ready, not terminating Pods labelled `app=web`.
async fn ready_web_pods(kc: &Path, cache: &Path) -> Vec<String> {
    let out = ok(kc, cache, &["get", "pods", "-l", "app=web", "-o", "json"]).await;
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn kubectl_creates_applies_deletes_scales_and_rolls_back() {
    if !have_kubectl("kubectl_creates_applies_deletes_scales_and_rolls_back").await {
        return;
    }
    let (dir, state, cache) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let app = manifests.join("app.yaml");
    std::fs::write(&app, APP).unwrap();
    let (pod, extra) = (dir.path().join("pod.yaml"), dir.path().join("extra.yaml"));
    std::fs::write(&pod, POD).unwrap();
    std::fs::write(&extra, EXTRA_SERVICE).unwrap();
    let (pod, extra) = (pod.to_str().unwrap(), extra.to_str().unwrap());
    let cluster = Cluster::start(&manifests, state.path(), None).await;
    let (kc, cache) = (cluster.kubeconfig.clone(), cache.path());

    // The files' objects carry the last-applied annotation as kubectl writes it: applying
    // the same file finds nothing to change.
    let out = ok(&kc, cache, &["apply", "-f", app.to_str().unwrap()]).await;
    assert_eq!(
        out.trim(),
        "deployment.apps/web unchanged\nservice/web unchanged"
    );

    let out = ok(&kc, cache, &["create", "-f", pod]).await;
    assert_eq!(out.trim(), "pod/one created");
    let out = ok(
        &kc,
        cache,
        &["get", "pod", "one", "-o", "jsonpath={.metadata.uid}"],
    )
    .await;
    assert_eq!(out.len(), 36, "{out}");
    let again = kubectl(&kc, cache, &["create", "-f", pod]).await;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("(AlreadyExists)"),
        "{again:?}"
    );

    // The first apply of a file creates, with the last-applied annotation.
    let out = ok(&kc, cache, &["apply", "-f", extra]).await;
    assert_eq!(out.trim(), "service/extra created");
    let svc: Value =
        serde_json::from_str(&ok(&kc, cache, &["get", "svc", "extra", "-o", "json"]).await)
            .unwrap();
    let applied =
        svc["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap();
    assert!(applied.contains("\"name\":\"extra\""), "{applied}");
    assert!(svc["spec"]["clusterIP"].is_string(), "allocated: {svc}");

    // delete -f returns once the Pod is gone, as kubectl waits against a real cluster.
    let out = ok(&kc, cache, &["delete", "-f", pod, "-f", extra]).await;
    assert_eq!(out.trim(), "pod \"one\" deleted\nservice \"extra\" deleted");
    let gone = kubectl(&kc, cache, &["get", "pod", "one"]).await;
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("(NotFound)"),
        "{gone:?}"
    );

    // A deleted Pod of a Deployment is replaced.
    let first = eventually(DEADLINE, "the web Pod ready", || async {
        ready_web_pods(&kc, cache).await.pop()
    })
    .await;
    let out = ok(&kc, cache, &["delete", "pod", &first]).await;
    assert_eq!(out.trim(), format!("pod \"{first}\" deleted"));
    eventually(DEADLINE, "another web Pod ready", || async {
        let ready = ready_web_pods(&kc, cache).await;
        (ready.len() == 1 && ready[0] != first).then_some(())
    })
    .await;

    // scale: through the scale subresource.
    let out = ok(&kc, cache, &["scale", "deployment/web", "--replicas=3"]).await;
    assert_eq!(out.trim(), "deployment.apps/web scaled");
    eventually(DEADLINE, "3 web Pods ready", || async {
        (ready_web_pods(&kc, cache).await.len() == 3).then_some(())
    })
    .await;

    // A second revision from the file (which sets the replicas back to its 1), then undo.
    std::fs::write(
        &app,
        APP.replace(
            "containerPort: 8080}]",
            "containerPort: 8080}]\n          env: [{name: V, value: \"2\"}]",
        ),
    )
    .unwrap();
    eventually(DEADLINE, "revision 2", || async {
        let out = ok(&kc, cache, &["rollout", "history", "deployment/web"]).await;
        out.lines().any(|l| l.starts_with("2 ")).then_some(())
    })
    .await;
    let out = ok(&kc, cache, &["rollout", "undo", "deployment/web"]).await;
    assert_eq!(out.trim(), "deployment.apps/web rolled back");
    let out = ok(
        &kc,
        cache,
        &["rollout", "status", "deployment/web", "--timeout=20s"],
    )
    .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let d: Value =
        serde_json::from_str(&ok(&kc, cache, &["get", "deploy", "web", "-o", "json"]).await)
            .unwrap();
    assert!(
        d["spec"]["template"]["spec"]["containers"][0]["env"].is_null(),
        "back to revision 1's template: {d}"
    );
    // Revision 1's ReplicaSet is used again, as revision 3.
    let out = ok(&kc, cache, &["rollout", "history", "deployment/web"]).await;
    let revisions: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{out}");

    // Deleting the Deployment takes its ReplicaSets and Pods.
    let out = ok(&kc, cache, &["delete", "deployment", "web"]).await;
    assert_eq!(out.trim(), "deployment.apps \"web\" deleted");
    eventually(DEADLINE, "the ReplicaSets and Pods gone", || async {
        let rs = ok(&kc, cache, &["get", "rs", "-o", "name"]).await;
        let pods = ok(&kc, cache, &["get", "pods", "-o", "name"]).await;
        (rs.trim().is_empty() && pods.trim().is_empty()).then_some(())
    })
    .await;

    cluster.stop().await;
}

#[tokio::test]
async fn writes_are_optimistic_validated_and_live_next_to_the_files() {
    let (dir, state) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let app = manifests.join("app.yaml");
    std::fs::write(&app, APP.replace("replicas: 1", "replicas: 0")).unwrap();
    let cluster = Cluster::start(&manifests, state.path(), None).await;
    let token = token_of(&std::fs::read_to_string(&cluster.kubeconfig).unwrap());
    let token = Some(token.as_str());
    let call = |method: http::Method, path: &'static str, body: Option<Value>| async move {
        let body = body.map(|b| ("application/json", b.to_string()));
        let (code, _, body) = https_request(cluster.api, method, path, token, body).await;
        (code, serde_json::from_slice::<Value>(&body).unwrap())
    };
    let web = "/apis/apps/v1/namespaces/default/deployments/web";

    // A stale resourceVersion: 409 Conflict.
    let (_, current) = call(http::Method::GET, web, None).await;
    let mut changed = current.clone();
    changed["metadata"]["labels"] = json!({"v": "1"});
    let (code, _) = call(http::Method::PUT, web, Some(changed)).await;
    assert_eq!(code, 200);
    let mut stale = current.clone();
    stale["metadata"]["labels"] = json!({"v": "2"});
    let (code, status) = call(http::Method::PUT, web, Some(stale)).await;
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["reason"], "Conflict");

    // Invalid: 422 with the field.
    let mut bad = current.clone();
    bad["metadata"] = json!({"name": "bad"});
    bad["spec"]["replicas"] = json!(-2);
    let (code, status) = call(
        http::Method::POST,
        "/apis/apps/v1/namespaces/default/deployments",
        Some(bad),
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["details"]["causes"][0]["field"], "spec.replicas");

    // An object made through the API, then a file edit.
    let made = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "made"},
        "spec": {"ports": [{"port": 82}]}});
    let (code, _) = call(
        http::Method::POST,
        "/api/v1/namespaces/default/services",
        Some(made),
    )
    .await;
    assert_eq!(code, 201);
    let edited = APP.replace("replicas: 1", "replicas: 0").replace(
        "metadata: {name: web}\nspec:\n  replicas",
        "metadata: {name: web, labels: {edited: \"yes\"}}\nspec:\n  replicas",
    );
    assert_ne!(edited, APP.replace("replicas: 1", "replicas: 0"));
    std::fs::write(&app, edited).unwrap();
    eventually(DEADLINE, "the file edit in the store", || async {
        let (_, d) = call(http::Method::GET, web, None).await;
        let applied =
            d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        (d["metadata"]["labels"]["edited"] == "yes" && applied.contains("\"edited\":\"yes\""))
            .then_some(())
    })
    .await;
    let (code, _) = call(
        http::Method::GET,
        "/api/v1/namespaces/default/services/made",
        None,
    )
    .await;
    assert_eq!(code, 200, "the API's Service survives the file edit");

    // A running Pod is deleted gracefully: marked at once, gone once its container stopped.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "one"},
        "spec": {"containers": [{"name": "one", "image": "ferry/echo",
            "ports": [{"containerPort": 8080}]}]}});
    let one = "/api/v1/namespaces/default/pods/one";
    let (code, _) = call(
        http::Method::POST,
        "/api/v1/namespaces/default/pods",
        Some(pod),
    )
    .await;
    assert_eq!(code, 201);
    eventually(DEADLINE, "the Pod running", || async {
        let (_, p) = call(http::Method::GET, one, None).await;
        (p["status"]["phase"] == "Running").then_some(())
    })
    .await;
    let (code, deleted) = call(
        http::Method::DELETE,
        one,
        Some(json!({"gracePeriodSeconds": 5})),
    )
    .await;
    assert_eq!(code, 200, "{deleted}");
    assert!(
        deleted["metadata"]["deletionTimestamp"].is_string(),
        "{deleted}"
    );
    assert_eq!(deleted["metadata"]["deletionGracePeriodSeconds"], 5);
    eventually(DEADLINE, "the Pod gone", || async {
        (call(http::Method::GET, one, None).await.0 == 404).then_some(())
    })
    .await;

    // Foreground: the Deployment stays, marked, until its ReplicaSet and Pod are gone.
    let mut api = current.clone();
    api["metadata"] = json!({"name": "api"});
    api["spec"]["replicas"] = json!(1);
    api["spec"]["selector"] = json!({"matchLabels": {"app": "api"}});
    api["spec"]["template"]["metadata"] = json!({"labels": {"app": "api"}});
    let (code, created) = call(
        http::Method::POST,
        "/apis/apps/v1/namespaces/default/deployments",
        Some(api),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let deployment = "/apis/apps/v1/namespaces/default/deployments/api";
    eventually(DEADLINE, "the api Pod ready", || async {
        let (_, d) = call(http::Method::GET, deployment, None).await;
        (d["status"]["readyReplicas"] == 1).then_some(())
    })
    .await;
    let (code, deleting) = call(
        http::Method::DELETE,
        deployment,
        Some(json!({"propagationPolicy": "Foreground"})),
    )
    .await;
    assert_eq!(code, 200, "{deleting}");
    assert!(
        deleting["metadata"]["deletionTimestamp"].is_string(),
        "{deleting}"
    );
    assert_eq!(
        deleting["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    eventually(
        DEADLINE,
        "the Deployment gone after its dependents",
        || async {
            let (code, _) = call(http::Method::GET, deployment, None).await;
            let (_, rs) = call(
                http::Method::GET,
                "/apis/apps/v1/namespaces/default/replicasets",
                None,
            )
            .await;
            let api_rs = rs["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["metadata"]["name"].as_str().unwrap().starts_with("api-"));
            (code == 404 && !api_rs).then_some(())
        },
    )
    .await;

    cluster.stop().await;
}

/// A Deployment applied from a file outside the manifests, as a user's `kubectl apply` does.
fn api_deployment(value: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api}}}}
    spec:
      containers:
        - name: api
          image: ferry/echo
          env: [{{name: A, value: "{value}"}}]
          ports: [{{containerPort: 8080}}]
"#
    )
}

fn ssa_service(port: u16) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: ssa}}
spec:
  selector: {{app: api}}
  ports: [{{port: {port}, targetPort: 8080}}]
"#
    )
}

/// A changed object applied again: client-side (kubectl sends a strategic merge patch computed
/// from the last-applied annotation and our OpenAPI's patch metadata) and server-side (an
/// apply patch), each as against a real cluster.
#[tokio::test]
async fn kubectl_applies_changes_client_side_and_server_side() {
    if !have_kubectl("kubectl_applies_changes_client_side_and_server_side").await {
        return;
    }
    let (dir, state, cache) = (
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    );
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(manifests.join("app.yaml"), APP).unwrap();
    let cluster = Cluster::start(&manifests, state.path(), None).await;
    let (kc, cache) = (cluster.kubeconfig.clone(), cache.path());
    let file = dir.path().join("api.yaml");
    let file_arg = file.to_str().unwrap();

    std::fs::write(&file, api_deployment("1")).unwrap();
    let out = ok(&kc, cache, &["apply", "-f", file_arg]).await;
    assert_eq!(out.trim(), "deployment.apps/api created");
    std::fs::write(&file, api_deployment("2")).unwrap();
    let out = ok(&kc, cache, &["apply", "-f", file_arg]).await;
    assert_eq!(out.trim(), "deployment.apps/api configured");
    let out = ok(&kc, cache, &["apply", "-f", file_arg]).await;
    assert_eq!(out.trim(), "deployment.apps/api unchanged");
    let d: Value =
        serde_json::from_str(&ok(&kc, cache, &["get", "deployment", "api", "-o", "json"]).await)
            .unwrap();
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "api", "{d}");
    assert_eq!(
        container["env"],
        json!([{"name": "A", "value": "2"}]),
        "{d}"
    );
    assert_eq!(container["ports"][0]["containerPort"], 8080, "kept: {d}");
    let history = ok(&kc, cache, &["rollout", "history", "deployment/api"]).await;
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    let svc = dir.path().join("ssa.yaml");
    let svc_arg = svc.to_str().unwrap();
    std::fs::write(&svc, ssa_service(80)).unwrap();
    let out = ok(&kc, cache, &["apply", "--server-side", "-f", svc_arg]).await;
    assert_eq!(out.trim(), "service/ssa serverside-applied");
    std::fs::write(&svc, ssa_service(81)).unwrap();
    let out = ok(&kc, cache, &["apply", "--server-side", "-f", svc_arg]).await;
    assert_eq!(out.trim(), "service/ssa serverside-applied");
    let s: Value = serde_json::from_str(
        &ok(
            &kc,
            cache,
            &["get", "svc", "ssa", "-o", "json", "--show-managed-fields"],
        )
        .await,
    )
    .unwrap();
    assert_eq!(s["spec"]["ports"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(s["spec"]["ports"][0]["port"], 81, "{s}");
    let managers: Vec<&str> = s["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"kubectl"), "{s}");
    cluster.stop().await;
}
