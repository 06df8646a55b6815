#![allow(clippy::unwrap_used)]

use std::time::Duration;

use http::HeaderValue;
use http_body_util::BodyExt;
use tempfile::TempDir;

use super::*;
use crate::apiserver::resources::RESOURCES;
use crate::{Admission, Orchestrator};

/// The node takes no Pod (`max_pods: 0`, below): every Pod stays Pending, so no process
/// starts in these tests.
const APP: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeName: elsewhere
      containers: [{name: web, image: ferry/echo}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: default}
spec:
  defaultBackend: {service: {name: web, port: {number: 80}}}
";

const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"one","labels":{"app":"one"}},"spec":{"nodeName":"elsewhere","containers":[{"name":"c","image":"busybox"}]}}"#;

struct Api {
    state: State,
    orchestrator: Orchestrator,
    dir: TempDir,
}

async fn api(admission: Admission) -> Api {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("app.yaml");
    std::fs::write(&file, APP).unwrap();
    let files =
        ferry_objects::files::WatchedFiles::start(vec![file], Duration::from_millis(10)).unwrap();
    let config = crate::Config {
        cluster: crate::cluster::Config {
            pod_cidr: "127.251.0.0/24".parse().unwrap(),
            service_cidr: "127.251.1.0/24".parse().unwrap(),
            termination_delay: Duration::ZERO,
            max_pods: 0,
            ..Default::default()
        },
        kubelet: Default::default(),
    };
    // The feed is dropped: nothing consumes the updates (each is "not published").
    let (orchestrator, _feed) = Orchestrator::build(config, files, admission);
    let handle = orchestrator.handle();
    let state = State {
        store: handle.store(),
        token: "t".into(),
        server: "https://127.0.0.1:6443".into(),
        cluster: Some(handle),
        stopping: tokio::sync::watch::Sender::new(false),
        kubelet: std::sync::OnceLock::new(),
        signer: crate::apiserver::tokens::tests::signer(),
    };
    Api {
        state,
        orchestrator,
        dir,
    }
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &str,
        content_type: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t"),
        );
        if !content_type.is_empty() {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_str(content_type).unwrap(),
            );
        }
        let r = respond(
            &self.state,
            &method,
            path,
            query,
            &headers,
            Bytes::from(body.to_owned()),
        )
        .await;
        let code = r.status();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (code, serde_json::from_slice(&body).unwrap())
    }

    fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let r = RESOURCES.iter().find(|r| r.plural == plural).unwrap();
        self.state.store.get(r, namespace, name)
    }

    fn names(&self, plural: &str) -> Vec<String> {
        let r = RESOURCES.iter().find(|r| r.plural == plural).unwrap();
        let (_, items) = self.state.store.list(r, None);
        items
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn create_gives_uid_time_and_generation_and_refuses_a_name_taken() {
    let api = api(Admission::default()).await;
    let (code, pod) = api.call(Method::POST, PODS, "", JSON, POD).await;
    assert_eq!(code, StatusCode::CREATED, "{pod}");
    assert!(
        pod["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );
    assert!(pod["metadata"]["creationTimestamp"].is_string());
    assert!(pod["metadata"]["resourceVersion"].is_string());
    assert!(api.get("pods", "default", "one").is_some());

    let (code, status) = api.call(Method::POST, PODS, "", JSON, POD).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(status["reason"], "AlreadyExists");
    assert_eq!(status["message"], "pods \"one\" already exists");

    let d = APP_DEPLOYMENT.replace("\"name\":\"web\"", "\"name\":\"api\"");
    let (code, d) = api.call(Method::POST, DEPLOYMENTS, "", JSON, &d).await;
    assert_eq!(code, StatusCode::CREATED, "{d}");
    assert_eq!(d["metadata"]["generation"], 1);

    let generated = POD.replace("\"name\":\"one\"", "\"generateName\":\"one-\"");
    let (code, pod) = api.call(Method::POST, PODS, "", JSON, &generated).await;
    assert_eq!(code, StatusCode::CREATED, "{pod}");
    let name = pod["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("one-") && name.len() == 9, "{name}");
}

const APP_DEPLOYMENT: &str = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":1,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"nodeName":"elsewhere","containers":[{"name":"web","image":"ferry/echo"}]}}}}"#;

#[tokio::test]
async fn create_checks_the_namespace_as_the_api_server() {
    let api = api(Admission::default()).await;
    let (code, status) = api
        .call(Method::POST, "/api/v1/namespaces/nope/pods", "", JSON, POD)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(status["message"], "namespaces \"nope\" not found");

    let other = POD.replace(
        "\"name\":\"one\"",
        "\"name\":\"one\",\"namespace\":\"kube-system\"",
    );
    let (code, status) = api.call(Method::POST, PODS, "", JSON, &other).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("does not match the namespace")
    );

    let ns = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop"}}"#;
    let (code, _) = api
        .call(Method::POST, "/api/v1/namespaces", "", JSON, ns)
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, _) = api
        .call(Method::POST, "/api/v1/namespaces/shop/pods", "", JSON, POD)
        .await;
    assert_eq!(code, StatusCode::CREATED);
}

/// A write that fails the validation files get is 422 Invalid with the field in its causes,
/// and changes nothing; under fieldValidation=Strict an unknown field is 400.
#[tokio::test]
async fn an_invalid_write_is_422_with_the_field_and_changes_nothing() {
    let api = api(Admission::default()).await;
    let bad = APP_DEPLOYMENT.replace("\"replicas\":1", "\"replicas\":-1");
    let (code, status) = api.call(Method::POST, DEPLOYMENTS, "", JSON, &bad).await;
    assert_eq!(code, StatusCode::CONFLICT, "web exists: {status}");

    let bad = bad.replace("\"name\":\"web\"", "\"name\":\"bad\"");
    let (code, status) = api.call(Method::POST, DEPLOYMENTS, "", JSON, &bad).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    assert_eq!(status["reason"], "Invalid");
    let causes = status["details"]["causes"].as_array().unwrap();
    assert!(
        causes.iter().any(|c| c["field"] == "spec.replicas"),
        "{status}"
    );
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("Deployment.apps \"bad\" is invalid: spec.replicas"),
        "{status}"
    );
    assert!(api.get("deployments", "default", "bad").is_none());

    let unknown = POD.replace("\"spec\":{", "\"spec\":{\"containerz\":[],");
    let (code, status) = api
        .call(Method::POST, PODS, "fieldValidation=Strict", JSON, &unknown)
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");
    assert_eq!(
        status["message"],
        "strict decoding error: unknown field \"spec.containerz\""
    );
}

/// The admission (the control plane's check) refusing a write: 422, nothing changes.
#[tokio::test]
async fn a_write_the_admission_refuses_is_422_and_changes_nothing() {
    let admission = Admission::new(|r| !r.manifests.iter().any(|m| m.name() == "refused"));
    let api = api(admission).await;
    let pod = POD.replace("\"name\":\"one\"", "\"name\":\"refused\"");
    let (code, status) = api.call(Method::POST, PODS, "", JSON, &pod).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert!(api.get("pods", "default", "refused").is_none());
}

/// PUT with a stale resourceVersion is 409 Conflict; without one (or the current one) it
/// updates, the generation rising only when the spec changes.
#[tokio::test]
async fn update_is_optimistic_and_bumps_the_generation_on_spec_changes_only() {
    let api = api(Admission::default()).await;
    let path = format!("{DEPLOYMENTS}/web");
    let current = api.get("deployments", "default", "web").unwrap();
    assert_eq!(current["metadata"]["generation"], 1);

    let mut labelled = current.clone();
    labelled["metadata"]["labels"] = json!({"team": "a"});
    let (code, d) = api
        .call(Method::PUT, &path, "", JSON, &labelled.to_string())
        .await;
    assert_eq!(code, StatusCode::OK, "{d}");
    assert_eq!(d["metadata"]["labels"]["team"], "a");
    assert_eq!(d["metadata"]["generation"], 1, "no spec change");
    assert_eq!(d["metadata"]["uid"], current["metadata"]["uid"]);

    // The first version again: stale now.
    let mut stale = current.clone();
    stale["spec"]["replicas"] = json!(4);
    let (code, status) = api
        .call(Method::PUT, &path, "", JSON, &stale.to_string())
        .await;
    assert_eq!(code, StatusCode::CONFLICT, "{status}");
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["message"],
        "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again"
    );

    let mut fresh = d.clone();
    fresh["spec"]["replicas"] = json!(4);
    let (code, d) = api
        .call(Method::PUT, &path, "", JSON, &fresh.to_string())
        .await;
    assert_eq!(code, StatusCode::OK, "{d}");
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(d["metadata"]["generation"], 2);
}

/// JSON patch (what `kubectl rollout undo` sends) and merge patch act; strategic merge patch
/// and server-side apply are 415 until served.
#[tokio::test]
async fn json_merge_and_strategic_merge_patches_apply() {
    let api = api(Admission::default()).await;
    let path = format!("{DEPLOYMENTS}/web");
    let (code, d) = api
        .call(
            Method::PATCH,
            &path,
            "",
            "application/json-patch+json",
            r#"[{"op":"replace","path":"/spec/replicas","value":3},{"op":"add","path":"/metadata/annotations","value":{"a":"b"}}]"#,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{d}");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["annotations"]["a"], "b");

    let (code, d) = api
        .call(
            Method::PATCH,
            &path,
            "",
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"tier":"front"}}}"#,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{d}");
    assert_eq!(d["metadata"]["labels"]["tier"], "front");
    assert_eq!(d["spec"]["replicas"], 3);

    // A strategic merge patch merges the containers by name (a JSON merge patch would
    // replace the list and lose the image).
    let (code, d) = api
        .call(
            Method::PATCH,
            &path,
            "",
            "application/strategic-merge-patch+json",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"A","value":"1"}]}]}}}}"#,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{d}");
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["env"][0]["name"], "A", "{d}");
    assert!(container["image"].is_string(), "kept: {d}");
    // A media type no patch has.
    let (code, status) = api
        .call(Method::PATCH, &path, "", "application/x-yaml", "{}")
        .await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(status["reason"], "UnsupportedMediaType");
}

/// The scale subresource reads and writes a Deployment's replicas as an autoscaling/v1 Scale.
#[tokio::test]
async fn scale_reads_and_writes_the_replicas() {
    let api = api(Admission::default()).await;
    let path = format!("{DEPLOYMENTS}/web/scale");
    let (code, scale) = api.call(Method::GET, &path, "", "", "").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=web");

    let (code, scale) = api
        .call(
            Method::PATCH,
            &path,
            "",
            "application/merge-patch+json",
            r#"{"spec":{"replicas":3}}"#,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{scale}");
    assert_eq!(scale["spec"]["replicas"], 3);
    let d = api.get("deployments", "default", "web").unwrap();
    assert_eq!(d["spec"]["replicas"], 3);
    let rs = api.names("replicasets");
    let (_, pods) = api
        .state
        .store
        .list(resources::of_kind("Pod").unwrap(), None);
    assert_eq!(rs.len(), 1);
    assert_eq!(pods.len(), 3, "the controller made the third Pod");

    let (code, status) = api
        .call(
            Method::PATCH,
            &path,
            "",
            "application/merge-patch+json",
            r#"{"spec":{"replicas":-1}}"#,
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    assert_eq!(status["details"]["causes"][0]["field"], "spec.replicas");
}

/// A write to /status changes only the status (an Ingress' load balancer), and the main
/// resource's update leaves the status alone.
#[tokio::test]
async fn status_changes_only_through_its_subresource() {
    let api = api(Admission::default()).await;
    let path = "/apis/networking.k8s.io/v1/namespaces/default/ingresses/web";
    let lb = r#"{"status":{"loadBalancer":{"ingress":[{"ip":"127.0.0.1"}]}},"spec":{"defaultBackend":{"service":{"name":"other","port":{"number":81}}}}}"#;
    let (code, ing) = api
        .call(
            Method::PATCH,
            &format!("{path}/status"),
            "",
            "application/merge-patch+json",
            lb,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{ing}");
    assert_eq!(
        ing["status"]["loadBalancer"]["ingress"][0]["ip"],
        "127.0.0.1"
    );
    assert_eq!(
        ing["spec"]["defaultBackend"]["service"]["name"], "web",
        "spec ignored"
    );

    let (code, ing) = api
        .call(
            Method::PATCH,
            path,
            "",
            "application/merge-patch+json",
            r#"{"status":{"loadBalancer":{}},"metadata":{"labels":{"a":"b"}}}"#,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{ing}");
    assert_eq!(ing["metadata"]["labels"]["a"], "b");
    assert_eq!(
        ing["status"]["loadBalancer"]["ingress"][0]["ip"], "127.0.0.1",
        "status kept"
    );
}

/// Deleting a Deployment takes its ReplicaSets and their Pods (Background); with Orphan they
/// stay, without the ownerReference.
#[tokio::test]
async fn delete_collects_the_dependents_or_orphans_them() {
    let api = api(Admission::default()).await;
    let d = APP_DEPLOYMENT
        .replace("\"name\":\"web\"", "\"name\":\"api\"")
        .replace("\"app\":\"web\"", "\"app\":\"api\"");
    let (code, _) = api.call(Method::POST, DEPLOYMENTS, "", JSON, &d).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(api.names("replicasets").len(), 2);

    let (code, gone) = api
        .call(
            Method::DELETE,
            &format!("{DEPLOYMENTS}/web"),
            "",
            JSON,
            r#"{"propagationPolicy":"Background"}"#,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{gone}");
    assert_eq!(gone["metadata"]["name"], "web");
    assert!(api.get("deployments", "default", "web").is_none());
    assert!(
        api.names("replicasets")
            .iter()
            .all(|n| n.starts_with("api-"))
    );
    assert!(
        api.names("pods").iter().all(|n| n.starts_with("api-")),
        "{:?}",
        api.names("pods")
    );

    let (code, _) = api
        .call(
            Method::DELETE,
            &format!("{DEPLOYMENTS}/api"),
            "propagationPolicy=Orphan",
            "",
            "",
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert!(api.get("deployments", "default", "api").is_none());
    let rs = api.names("replicasets");
    assert_eq!(rs.len(), 1, "the orphan stays");
    let rs = api.get("replicasets", "default", &rs[0]).unwrap();
    assert!(rs["metadata"]["ownerReferences"].is_null(), "{rs}");
    assert_eq!(api.names("pods").len(), 1);

    let (code, status) = api
        .call(Method::DELETE, "/api/v1/namespaces/default", "", "", "")
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{status}");
}

/// A Pod the ReplicaSet made is deleted (a Pending one at once: no container to wait for)
/// and its ReplicaSet makes another; a missing one is 404.
#[tokio::test]
async fn a_deleted_pod_is_replaced_by_its_replica_set() {
    let api = api(Admission::default()).await;
    let pods = api.names("pods");
    assert_eq!(pods.len(), 2);
    let (code, pod) = api
        .call(
            Method::DELETE,
            &format!("{PODS}/{}", pods[0]),
            "",
            JSON,
            r#"{"gracePeriodSeconds":7}"#,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{pod}");
    assert_eq!(pod["metadata"]["name"], pods[0].as_str());
    let now = api.names("pods");
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(!now.contains(&pods[0]));
    let (code, status) = api
        .call(Method::DELETE, &format!("{PODS}/nope"), "", "", "")
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(status["message"], "pods \"nope\" not found");
}

/// An object created through the API survives a change of the files; the file's objects
/// carry the last-applied annotation in the store.
#[tokio::test]
async fn an_api_object_survives_a_file_edit_which_reaches_the_store_annotated() {
    let mut api = api(Admission::default()).await;
    let (code, _) = api.call(Method::POST, PODS, "", JSON, POD).await;
    assert_eq!(code, StatusCode::CREATED);
    let web = api.get("deployments", "default", "web").unwrap();
    let applied = web["metadata"]["annotations"][crate::declared::LAST_APPLIED]
        .as_str()
        .unwrap();
    assert!(applied.contains("\"replicas\":2"), "{applied}");

    std::fs::write(
        api.dir.path().join("app.yaml"),
        APP.replace("replicas: 2", "replicas: 1"),
    )
    .unwrap();
    let reading = api.orchestrator.files.read();
    api.orchestrator.handle.reload(reading).await;
    let web = api.get("deployments", "default", "web").unwrap();
    assert_eq!(web["spec"]["replicas"], 1);
    let applied = web["metadata"]["annotations"][crate::declared::LAST_APPLIED]
        .as_str()
        .unwrap();
    assert!(applied.contains("\"replicas\":1"), "{applied}");
    assert!(
        api.get("pods", "default", "one").is_some(),
        "the API's Pod stays"
    );
}

/// Discovery lists exactly the verbs served: the writes on the kinds the cluster keeps, reads
/// only on Events, and the scale and status subresources.
#[test]
fn discovery_lists_the_write_verbs_and_subresources_served() {
    let core = resources::aggregated(true);
    let list = core["items"][0]["versions"][0]["resources"]
        .as_array()
        .unwrap();
    let find = |name: &str| list.iter().find(|r| r["resource"] == name).unwrap().clone();
    assert_eq!(
        find("pods")["verbs"],
        json!([
            "create", "delete", "get", "list", "patch", "update", "watch"
        ])
    );
    assert_eq!(find("events")["verbs"], json!(["get", "list", "watch"]));
    assert_eq!(find("pods")["subresources"][0]["subresource"], "status");
    let apps = resources::aggregated(false);
    let apps = apps["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "apps")
        .unwrap()
        .clone();
    let deployments = &apps["versions"][0]["resources"][0];
    assert_eq!(deployments["subresources"][0]["subresource"], "scale");
    assert_eq!(
        deployments["subresources"][0]["responseKind"]["kind"],
        "Scale"
    );
    assert_eq!(
        deployments["subresources"][0]["verbs"],
        json!(["get", "patch", "update"])
    );
}

/// `dryRun=All` answers as the write would, and changes nothing.
#[tokio::test]
async fn a_dry_run_changes_nothing() {
    let api = api(Admission::default()).await;
    let (code, pod) = api.call(Method::POST, PODS, "dryRun=All", JSON, POD).await;
    assert_eq!(code, StatusCode::CREATED, "{pod}");
    assert_eq!(pod["metadata"]["name"], "one");
    assert!(api.get("pods", "default", "one").is_none());
    let (code, _) = api
        .call(
            Method::DELETE,
            &format!("{DEPLOYMENTS}/web"),
            "dryRun=All",
            "",
            "",
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert!(api.get("deployments", "default", "web").is_some());
}

/// Deleting a Namespace deletes the objects in it.
#[tokio::test]
async fn a_deleted_namespace_takes_its_objects() {
    let api = api(Admission::default()).await;
    let ns = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop"}}"#;
    let (code, _) = api
        .call(Method::POST, "/api/v1/namespaces", "", JSON, ns)
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let shop = "/api/v1/namespaces/shop/pods";
    let (code, _) = api.call(Method::POST, shop, "", JSON, POD).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, _) = api
        .call(Method::DELETE, "/api/v1/namespaces/shop", "", "", "")
        .await;
    assert_eq!(code, StatusCode::OK);
    assert!(api.get("pods", "shop", "one").is_none());
    assert!(api.get("namespaces", "", "shop").is_none());
    assert!(
        api.get("deployments", "default", "web").is_some(),
        "other namespaces stay"
    );
}

/// Server-side apply of an object that does not exist yet creates it (not a 404), with its
/// manager's fields; without a fieldManager it is refused.
#[tokio::test]
async fn server_side_apply_of_a_new_object_creates_it() {
    let api = api(Admission::default()).await;
    let (code, status) = api
        .call(
            Method::PATCH,
            &format!("{PODS}/one"),
            "",
            "application/apply-patch+yaml",
            POD,
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");
    let (code, pod) = api
        .call(
            Method::PATCH,
            &format!("{PODS}/one"),
            "fieldManager=kubectl",
            "application/apply-patch+yaml",
            POD,
        )
        .await;
    assert!(code.is_success(), "{pod}");
    assert_eq!(pod["metadata"]["name"], "one", "{pod}");
    assert_eq!(
        pod["metadata"]["managedFields"][0]["manager"], "kubectl",
        "{pod}"
    );
}

/// Foreground: the Deployment goes once its ReplicaSets and Pods are gone. Every Pod here is
/// Pending and goes at once, so the cascade completes in the deleting round (the e2e test
/// sees the owner wait, marked, for a running Pod).
#[tokio::test]
async fn a_foreground_deletion_completes_once_the_dependents_are_gone() {
    let api = api(Admission::default()).await;
    let (code, d) = api
        .call(
            Method::DELETE,
            &format!("{DEPLOYMENTS}/web"),
            "",
            JSON,
            r#"{"propagationPolicy":"Foreground"}"#,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{d}");
    assert!(api.get("deployments", "default", "web").is_none());
    assert!(api.names("replicasets").is_empty());
    assert!(api.names("pods").is_empty());
}

/// A ReplicaSet a Deployment made, scaled or relabelled through the API: its Deployment
/// scales it back, as in Kubernetes; the labels stay.
#[tokio::test]
async fn a_controller_made_replica_set_is_reconciled_back() {
    let api = api(Admission::default()).await;
    let rs = api.names("replicasets").pop().unwrap();
    let path = format!("/apis/apps/v1/namespaces/default/replicasets/{rs}");
    let (code, scale) = api
        .call(
            Method::PATCH,
            &format!("{path}/scale"),
            "",
            "application/merge-patch+json",
            r#"{"spec":{"replicas":5}}"#,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{scale}");
    assert_eq!(
        scale["spec"]["replicas"], 2,
        "scaled back by its Deployment"
    );
    let (code, r) = api
        .call(
            Method::PATCH,
            &path,
            "",
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"extra":"yes"}}}"#,
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{r}");
    assert_eq!(r["metadata"]["labels"]["extra"], "yes");
    assert_eq!(api.names("pods").len(), 2);
}

/// `kubectl delete sa default` completes: the controller makes `default` again at once, as a
/// new object (another uid), which is what the client's wait looks for.
#[tokio::test]
async fn a_deleted_default_service_account_comes_back_as_a_new_object() {
    let api = api(Admission::default()).await;
    let before = api
        .get("serviceaccounts", "default", "default")
        .expect("the controller's default");
    for _ in 0..2 {
        let uid =
            api.get("serviceaccounts", "default", "default").unwrap()["metadata"]["uid"].clone();
        let (code, gone) = api
            .call(
                Method::DELETE,
                "/api/v1/namespaces/default/serviceaccounts/default",
                "",
                "",
                "",
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{gone}");
        assert_eq!(gone["metadata"]["uid"], uid);
        let again = api
            .get("serviceaccounts", "default", "default")
            .expect("made again");
        assert!(again["metadata"]["uid"].is_string(), "{again}");
        assert_ne!(again["metadata"]["uid"], uid, "a new object");
        assert_ne!(again["metadata"]["uid"], before["metadata"]["uid"]);
    }
}
