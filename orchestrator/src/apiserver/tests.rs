#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ferry_objects::files::Reading;
use ferry_objects::object::{Manifest, Object, Origin};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::{Value, json};

use super::requests::*;
use super::selector::{fields_match, labels_match, parse_fields, parse_labels};
use super::table::{Include, columns, human_duration, table};
use super::*;

fn labels(pairs: &[(&str, &str)]) -> Value {
    let map: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    json!({"metadata": {"labels": map}})
}

#[test]
fn label_selectors_parse_every_operator_as_the_api_server() {
    let web = labels(&[("app", "web"), ("tier", "front")]);
    let api = labels(&[("app", "api")]);
    let cases: &[(&str, bool, bool)] = &[
        ("app=web", true, false),
        ("app==web", true, false),
        ("app!=web", false, true),
        ("app in (web, api)", true, true),
        ("app notin (web)", false, true),
        ("tier", true, false),
        ("!tier", false, true),
        ("app in (web),tier=front", true, false),
        ("tier!=back", true, true),
        ("tier notin (front)", false, true),
        ("", true, true),
    ];
    for (text, on_web, on_api) in cases {
        let s = parse_labels(text).unwrap();
        assert_eq!(labels_match(&s, &web), *on_web, "{text} on web");
        assert_eq!(labels_match(&s, &api), *on_api, "{text} on api");
    }
}

#[test]
fn bad_label_selectors_are_refused_with_the_reason() {
    for (text, says) in [
        ("app in web", "parenthesised"),
        ("app in ()", "can't be empty"),
        ("app in (a", "unclosed"),
        ("app) ", "unexpected ')'"),
        ("a b c", "expected one of"),
        ("-app=x", "invalid label key"),
        ("app=-x", "invalid label value"),
    ] {
        let e = parse_labels(text).unwrap_err();
        assert!(e.contains(says), "{text}: {e}");
    }
}

#[test]
fn field_selectors_know_the_fields_of_each_kind() {
    let pod = json!({"metadata": {"name": "web-1", "namespace": "shop"}, "spec": {"nodeName": "ferry"}, "status": {"phase": "Running"}});
    let f = parse_fields("status.phase=Running,spec.nodeName==ferry", "Pod").unwrap();
    assert!(fields_match(&f, &pod));
    let f = parse_fields("metadata.name!=web-1", "Pod").unwrap();
    assert!(!fields_match(&f, &pod));
    let f = parse_fields("metadata.namespace=shop", "Service").unwrap();
    assert!(fields_match(&f, &pod));
    let e = parse_fields("status.phase=Running", "Service").unwrap_err();
    assert_eq!(e, "field label not supported: status.phase");
    let rs = json!({"status": {"replicas": 3}});
    assert!(fields_match(
        &parse_fields("status.replicas=3", "ReplicaSet").unwrap(),
        &rs
    ));
    let event = json!({"involvedObject": {"name": "web-1", "kind": "Pod"}, "source": {"component": "kubelet"}});
    let f = parse_fields(
        "involvedObject.name=web-1,involvedObject.kind=Pod,source=kubelet",
        "Event",
    )
    .unwrap();
    assert!(fields_match(&f, &event));
    let e = parse_fields("metadata.name", "Pod").unwrap_err();
    assert!(e.contains("invalid selector"), "{e}");
}

#[test]
fn ages_read_as_kubectl_prints_them() {
    for (seconds, shown) in [
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 5 * 60, "3h5m"),
        (47 * 3600, "47h"),
        (3 * 86400 + 3600, "3d1h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400 + 86400, "3y1d"),
        (-5, "<invalid>"),
    ] {
        assert_eq!(human_duration(seconds), shown, "{seconds}");
    }
}

#[test]
fn pod_columns_are_kubectls_with_the_wide_ones_at_priority_one() {
    let cols: Vec<(&str, u8)> = columns("Pod").iter().map(|c| (c.0, c.2)).collect();
    assert_eq!(
        cols,
        [
            ("Name", 0),
            ("Ready", 0),
            ("Status", 0),
            ("Restarts", 0),
            ("Age", 0),
            ("IP", 1),
            ("Node", 1),
            ("Nominated Node", 1),
            ("Readiness Gates", 1),
        ]
    );
    let names = |kind| {
        columns(kind)
            .iter()
            .filter(|c| c.2 == 0)
            .map(|c| c.0)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names("Deployment"),
        ["Name", "Ready", "Up-to-date", "Available", "Age"]
    );
    assert_eq!(
        names("Service"),
        [
            "Name",
            "Type",
            "Cluster-IP",
            "External-IP",
            "Port(s)",
            "Age"
        ]
    );
    assert_eq!(
        names("ReplicaSet"),
        ["Name", "Desired", "Current", "Ready", "Age"]
    );
    assert_eq!(
        names("EndpointSlice"),
        ["Name", "AddressType", "Ports", "Endpoints", "Age"]
    );
    assert_eq!(
        names("Ingress"),
        ["Name", "Class", "Hosts", "Address", "Ports", "Age"]
    );
}

#[test]
fn a_pod_row_shows_readiness_the_waiting_reason_and_the_last_restart() {
    let now: jiff::Timestamp = "2026-12-06T10:10:00Z".parse().unwrap();
    let pod = json!({
        "metadata": {"name": "web-1", "namespace": "shop", "creationTimestamp": "2026-12-06T10:00:00Z"},
        "spec": {"nodeName": "ferry", "containers": [{"name": "a"}, {"name": "b"}]},
        "status": {
            "phase": "Running",
            "podIP": "127.1.0.5",
            "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 3,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"finishedAt": "2026-12-06T10:09:30Z", "exitCode": 1}}},
            ],
        },
    });
    let t = table(
        "Pod",
        &[pod],
        json!({"resourceVersion": "7"}),
        Include::Metadata,
        now,
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "web-1",
            "1/2",
            "CrashLoopBackOff",
            "3 (30s ago)",
            "10m",
            "127.1.0.5",
            "ferry",
            "<none>",
            "<none>"
        ])
    );
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "shop");
    assert_eq!(t["columnDefinitions"][0]["format"], "name");
}

#[test]
fn a_pod_row_counts_a_native_sidecar_and_shows_init_progress_as_kubectl() {
    let now: jiff::Timestamp = "2026-12-06T10:10:00Z".parse().unwrap();
    let row = |init_statuses: Value, app: Value, initialized: bool, phase: &str| {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "shop", "creationTimestamp": "2026-12-06T10:00:00Z"},
            "spec": {"containers": [{"name": "app"}], "initContainers": [
                {"name": "setup"},
                {"name": "ferry-sidecar", "restartPolicy": "Always"},
            ]},
            "status": {
                "phase": phase,
                "conditions": [{"type": "Initialized", "status": if initialized { "True" } else { "False" }}],
                "initContainerStatuses": init_statuses,
                "containerStatuses": [app],
            },
        });
        let t = table("Pod", &[pod], json!({}), Include::Metadata, now);
        (
            t["rows"][0]["cells"][1].clone(),
            t["rows"][0]["cells"][2].clone(),
        )
    };
    let done = json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
    let waiting = |r: &str| json!({"waiting": {"reason": r}});
    let app_waiting = json!({"name": "app", "ready": false, "state": waiting("PodInitializing")});
    // The first init container runs: Init:0/2.
    assert_eq!(
        row(
            json!([{"name": "setup", "state": {"running": {}}},
                   {"name": "ferry-sidecar", "state": waiting("PodInitializing")}]),
            app_waiting.clone(),
            false,
            "Pending"
        ),
        (json!("0/2"), json!("Init:0/2"))
    );
    // It crashes: Init:CrashLoopBackOff; it failed for good: Init:Error.
    assert_eq!(
        row(
            json!([{"name": "setup", "restartCount": 2, "state": waiting("CrashLoopBackOff")}]),
            app_waiting.clone(),
            false,
            "Pending"
        )
        .1,
        json!("Init:CrashLoopBackOff")
    );
    assert_eq!(
        row(
            json!([{"name": "setup", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]),
            app_waiting.clone(),
            false,
            "Failed"
        )
        .1,
        json!("Init:Error")
    );
    // The sidecar started, not ready yet: Init:1/2 is over, it is 0/2 while the app starts.
    // Everything up: 2/2 Running.
    assert_eq!(
        row(
            json!([{"name": "setup", "state": done},
                   {"name": "ferry-sidecar", "started": true, "ready": true, "state": {"running": {}}}]),
            json!({"name": "app", "ready": true, "state": {"running": {}}}),
            true,
            "Running"
        ),
        (json!("2/2"), json!("Running"))
    );
}

#[test]
fn service_and_deployment_rows() {
    let now: jiff::Timestamp = "2026-12-06T10:00:05Z".parse().unwrap();
    let svc = json!({
        "metadata": {"name": "web", "creationTimestamp": "2026-12-06T10:00:00Z"},
        "spec": {"type": "NodePort", "clusterIP": "127.2.0.10", "selector": {"app": "web"},
                 "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]},
    });
    let t = table("Service", &[svc], json!({}), Include::None, now);
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "web",
            "NodePort",
            "127.2.0.10",
            "<none>",
            "80:30080/TCP,53/UDP",
            "5s",
            "app=web"
        ])
    );
    assert!(t["rows"][0].get("object").is_none());
    let deploy = json!({
        "metadata": {"name": "web", "creationTimestamp": "2026-12-06T10:00:00Z"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"spec": {"containers": [{"name": "web", "image": "ferry/echo"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    });
    let t = table("Deployment", &[deploy], json!({}), Include::Object, now);
    assert_eq!(
        t["rows"][0]["cells"],
        json!(["web", "2/3", 3, 2, "5s", "web", "ferry/echo", "app=web"])
    );
    assert_eq!(t["rows"][0]["object"]["spec"]["replicas"], 3);
}

#[test]
fn aggregated_discovery_names_the_served_verbs_short_names_and_categories() {
    let core = resources::aggregated(true);
    assert_eq!(core["kind"], "APIGroupDiscoveryList");
    assert_eq!(core["apiVersion"], "apidiscovery.k8s.io/v2");
    let items = core["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert!(items[0]["metadata"].get("name").is_none());
    let pods = items[0]["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "pods")
        .unwrap();
    assert_eq!(
        pods["responseKind"],
        json!({"group": "", "version": "v1", "kind": "Pod"})
    );
    assert_eq!(pods["scope"], "Namespaced");
    assert_eq!(
        pods["verbs"],
        json!([
            "create", "delete", "get", "list", "patch", "update", "watch"
        ])
    );
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert_eq!(pods["categories"], json!(["all"]));
    let groups = resources::aggregated(false);
    let names: Vec<&str> = groups["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "apps",
            "discovery.k8s.io",
            "networking.k8s.io",
            "security.istio.io",
            "authentication.k8s.io"
        ]
    );
    // Istio's AuthorizationPolicy at both of its versions, v1 preferred (first).
    let versions: Vec<&str> = groups["items"][3]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v1", "v1beta1"]);
    let legacy = resources::api_group("security.istio.io");
    assert_eq!(
        legacy["preferredVersion"]["groupVersion"],
        "security.istio.io/v1"
    );
    let short: Vec<&str> = resources::RESOURCES
        .iter()
        .flat_map(|r| r.short_names.iter().copied())
        .collect();
    for s in ["po", "svc", "deploy", "rs", "ing", "ns", "ep", "sa", "ap"] {
        assert!(short.contains(&s), "{s}");
    }
    let ingressclasses = groups["items"][2]["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "ingressclasses")
        .unwrap();
    assert_eq!(ingressclasses["scope"], "Cluster");
}

#[test]
fn aggregated_discovery_is_chosen_by_kubectls_accept_header() {
    let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    assert!(resources::wants_aggregated(kubectl));
    assert!(!resources::wants_aggregated("application/json, */*"));
    assert!(!resources::wants_aggregated(
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
    ));
}

#[test]
fn legacy_discovery_documents() {
    let list = resources::api_resource_list("apps", "v1");
    assert_eq!(list["kind"], "APIResourceList");
    assert_eq!(list["groupVersion"], "apps/v1");
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status"
        ]
    );
    assert_eq!(list["resources"][0]["shortNames"], json!(["deploy"]));
    assert_eq!(list["resources"][1]["kind"], "Scale");
    assert_eq!(list["resources"][1]["group"], "autoscaling");
    let groups = resources::api_group_list();
    assert_eq!(
        groups["groups"][0]["preferredVersion"]["groupVersion"],
        "apps/v1"
    );
    assert_eq!(
        resources::api_versions("127.0.0.1:6443")["versions"],
        json!(["v1"])
    );
}

fn manifest(object: Object) -> Arc<Manifest> {
    Arc::new(Manifest {
        origin: Origin {
            file: "test.yaml".into(),
            doc: None,
        },
        object,
    })
}

fn pod(name: &str, app: &str, phase: &str) -> Arc<Manifest> {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
        "spec": {"nodeName": "ferry", "containers": [{"name": "c", "image": "ferry/echo"}]},
        "status": {"phase": phase},
    }))
    .unwrap();
    manifest(Object::Pod(Box::new(pod)))
}

fn service(name: &str) -> Arc<Manifest> {
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
    }))
    .unwrap();
    manifest(Object::Service(Box::new(svc)))
}

fn reading(manifests: Vec<Arc<Manifest>>) -> Reading {
    Reading {
        manifests,
        problems: Vec::new(),
    }
}

fn pods() -> &'static Resource {
    resources::find("", "v1", "pods").unwrap()
}

fn rv(o: &Value) -> u64 {
    o["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_resource_version_changes_when_its_object_changes_and_only_then() {
    let store = Store::new();
    store.record(&reading(vec![
        pod("a", "web", "Pending"),
        pod("b", "web", "Running"),
    ]));
    let a1 = store.get(pods(), "shop", "a").unwrap();
    let b1 = store.get(pods(), "shop", "b").unwrap();
    let uid = a1["metadata"]["uid"].clone();
    let created = a1["metadata"]["creationTimestamp"].clone();
    assert!(uid.is_string() && created.is_string(), "{a1}");
    let r1 = store.revision();
    // The same reading again: nothing changes, not even the store's revision.
    store.record(&reading(vec![
        pod("a", "web", "Pending"),
        pod("b", "web", "Running"),
    ]));
    assert_eq!(store.revision(), r1);
    assert_eq!(store.get(pods(), "shop", "a").unwrap(), a1);
    // a changes: its version moves past every earlier one; b keeps its own.
    store.record(&reading(vec![
        pod("a", "web", "Running"),
        pod("b", "web", "Running"),
    ]));
    let a2 = store.get(pods(), "shop", "a").unwrap();
    assert!(rv(&a2) > r1, "{a2}");
    assert_eq!(store.revision(), rv(&a2));
    assert_eq!(
        a2["metadata"]["uid"], uid,
        "the uid given on create is kept"
    );
    assert_eq!(a2["metadata"]["creationTimestamp"], created);
    assert_eq!(store.get(pods(), "shop", "b").unwrap(), b1);
    // b goes: the store's revision moves on, and a list carries it.
    store.record(&reading(vec![pod("a", "web", "Running")]));
    let (revision, items) = store.list(pods(), None);
    assert!(revision > rv(&a2));
    assert_eq!(items.len(), 1);
    assert!(store.get(pods(), "shop", "b").is_none());
}

/// `kubectl delete sa default`: the controller's replacement has a new uid, and a watcher sees
/// the deleted object go (DELETED) before the new one comes (ADDED), never a MODIFIED that
/// would leave `kubectl delete --wait` waiting.
#[test]
fn the_default_service_account_made_again_is_a_new_object() {
    let store = Store::new();
    let sa = |account: k8s_openapi::api::core::v1::ServiceAccount| {
        manifest(Object::ServiceAccount(Box::new(account)))
    };
    let derived = crate::serviceaccount::defaults(&[]);
    let shop_default = |ms: &[Arc<Manifest>]| {
        ms.iter()
            .find(|m| m.namespace() == "default")
            .cloned()
            .unwrap()
    };
    store.record(&reading(vec![shop_default(&derived)]));
    let accounts = resources::find("", "v1", "serviceaccounts").unwrap();
    let before = store.get(accounts, "default", "default").unwrap();
    let after_rv = store.revision();
    let again = crate::serviceaccount::made_again("default");
    assert_ne!(
        crate::serviceaccount::made_again("default").metadata.uid,
        again.metadata.uid
    );
    store.record(&reading(vec![sa(again.clone())]));
    let now = store.get(accounts, "default", "default").unwrap();
    assert_ne!(now["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(
        now["metadata"]["uid"].as_str(),
        again.metadata.uid.as_deref()
    );
    let (_, events) = store.events_after(accounts, None, after_rv).unwrap();
    let kinds: Vec<String> = events.iter().map(|e| format!("{:?}", e.kind)).collect();
    assert_eq!(kinds, ["Deleted", "Added"], "{kinds:?}");
    assert_eq!(
        events[0].object["metadata"]["uid"],
        before["metadata"]["uid"]
    );
}

#[test]
fn the_store_lists_the_namespaces_in_use_and_the_endpoints_of_services() {
    let store = Store::new();
    store.record(&reading(vec![service("web")]));
    let ns = resources::find("", "v1", "namespaces").unwrap();
    let (_, items) = store.list(ns, None);
    let names: Vec<&str> = items
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    assert!(items.iter().all(|n| n["status"]["phase"] == "Active"));
    // The Service has no namespace: it is in default, and its Endpoints (no slices: no subsets).
    let ep = resources::find("", "v1", "endpoints").unwrap();
    let e = store.get(ep, "default", "web").unwrap();
    assert!(e.get("subsets").is_none(), "{e}");
    // "shop" is used by the Pod.
    store.record(&reading(vec![pod("a", "web", "Running")]));
    let (_, items) = store.list(ns, None);
    assert!(items.iter().any(|n| n["metadata"]["name"] == "shop"));
    assert!(
        store.get(ep, "default", "web").is_none(),
        "its Service is gone"
    );
}

fn state() -> State {
    let store = Arc::new(Store::new());
    store.record(&reading(vec![
        pod("web-1", "web", "Running"),
        pod("web-2", "web", "Running"),
        pod("api-1", "api", "Pending"),
        service("web"),
    ]));
    State {
        store,
        token: "secret".into(),
        server: "https://127.0.0.1:6443".into(),
        cluster: None,
        stopping: tokio::sync::watch::Sender::new(false),
        kubelet: std::sync::OnceLock::new(),
        signer: crate::apiserver::tokens::tests::signer(),
    }
}

fn headers(accept: &str, token: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(http::header::ACCEPT, HeaderValue::from_str(accept).unwrap());
    if let Some(t) = token {
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
    }
    h
}

async fn call(
    method: Method,
    path: &str,
    query: &str,
    accept: &str,
    token: Option<&str>,
) -> (StatusCode, String, Value) {
    let r = answer(&state(), &method, path, query, &headers(accept, token));
    let status = r.status();
    let ct = r
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, ct, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn without_the_token_every_request_is_401_with_a_status() {
    for token in [None, Some("wrong"), Some("secre")] {
        let (code, _, body) =
            call(Method::GET, "/api/v1/pods", "", "application/json", token).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["reason"], "Unauthorized");
        assert_eq!(body["code"], 401);
    }
}

#[tokio::test]
async fn discovery_answers_with_the_exact_aggregated_content_type() {
    let accept =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let (code, ct, body) = call(Method::GET, "/apis", "timeout=32s", accept, Some("secret")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        ct,
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    assert_eq!(body["kind"], "APIGroupDiscoveryList");
    let (_, ct, body) = call(
        Method::GET,
        "/api",
        "",
        "application/json, */*",
        Some("secret"),
    )
    .await;
    assert_eq!(ct, "application/json");
    assert_eq!(body["kind"], "APIVersions");
    let (_, _, body) = call(
        Method::GET,
        "/version",
        "timeout=5s",
        "application/json",
        Some("secret"),
    )
    .await;
    assert_eq!(body["major"], "1");
}

#[tokio::test]
async fn get_list_selectors_and_pages() {
    let t = Some("secret");
    let (code, _, body) = call(
        Method::GET,
        "/api/v1/namespaces/shop/pods/web-1",
        "",
        "application/json",
        t,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["kind"], "Pod");
    let (code, _, body) = call(
        Method::GET,
        "/api/v1/namespaces/shop/pods/nope",
        "",
        "application/json",
        t,
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(body["reason"], "NotFound");
    assert_eq!(body["message"], "pods \"nope\" not found");
    assert_eq!(
        body["details"],
        json!({"name": "nope", "group": "", "kind": "pods"})
    );
    let (_, _, body) = call(
        Method::GET,
        "/api/v1/pods",
        "labelSelector=app%3Dweb&limit=500",
        "application/json",
        t,
    )
    .await;
    assert_eq!(body["kind"], "PodList");
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
    assert!(body["metadata"]["resourceVersion"].is_string());
    let (_, _, body) = call(
        Method::GET,
        "/api/v1/namespaces/shop/pods",
        "fieldSelector=status.phase%3DPending",
        "application/json",
        t,
    )
    .await;
    assert_eq!(body["items"][0]["metadata"]["name"], "api-1");
    let (code, _, body) = call(
        Method::GET,
        "/api/v1/pods",
        "labelSelector=app+in+web",
        "application/json",
        t,
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(body["reason"], "BadRequest");
    // Pages of one, in order, until no continue is given.
    let mut seen = Vec::new();
    let mut query = "limit=1".to_owned();
    loop {
        let (_, _, body) = call(
            Method::GET,
            "/api/v1/namespaces/shop/pods",
            &query,
            "application/json",
            t,
        )
        .await;
        let items = body["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        seen.push(items[0]["metadata"]["name"].as_str().unwrap().to_owned());
        match body["metadata"]["continue"].as_str() {
            Some(c) => query = format!("limit=1&continue={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["api-1", "web-1", "web-2"]);
    // Across namespaces and with a selector: the pages are the selection's, in order, each
    // saying how many of it remain.
    let (_, _, whole) = call(Method::GET, "/api/v1/pods", "", "application/json", t).await;
    let names = |b: &Value| -> Vec<String> {
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let everything = names(&whole);
    assert!(everything.len() >= 3, "{whole}");
    let mut paged = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let (_, _, body) = call(Method::GET, "/api/v1/pods", &query, "application/json", t).await;
        paged.extend(names(&body));
        match body["metadata"]["continue"].as_str() {
            Some(c) => {
                let remaining = body["metadata"]["remainingItemCount"].as_u64().unwrap();
                assert_eq!(remaining as usize, everything.len() - paged.len(), "{body}");
                query = format!("limit=2&continue={c}");
            }
            None => break,
        }
    }
    assert_eq!(paged, everything);
    let table_accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    let (_, _, body) = call(
        Method::GET,
        "/api/v1/namespaces/shop/pods",
        "limit=500",
        table_accept,
        t,
    )
    .await;
    assert_eq!(body["kind"], "Table");
    assert_eq!(body["rows"].as_array().unwrap().len(), 3);
    let (_, _, body) = call(
        Method::GET,
        "/api/v1/namespaces/shop/pods/web-1",
        "",
        table_accept,
        t,
    )
    .await;
    assert_eq!(body["rows"][0]["cells"][0], "web-1");
}

#[tokio::test]
async fn writes_are_not_served_yet() {
    let t = Some("secret");
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let (code, _, body) = call(
            method.clone(),
            "/api/v1/namespaces/shop/pods",
            "",
            "application/json",
            t,
        )
        .await;
        assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(body["reason"], "MethodNotAllowed");
    }
    let (code, _, body) = call(
        Method::GET,
        "/apis/batch/v1/jobs",
        "",
        "application/json",
        t,
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(body["reason"], "NotFound");
}

#[test]
fn query_parameters_are_percent_decoded() {
    let q = query_params("labelSelector=app%3Dweb%2Ctier+in+%28a%29&limit=500&bad=%zz&x");
    assert_eq!(q[0], ("labelSelector".into(), "app=web,tier in (a)".into()));
    assert_eq!(q[1], ("limit".into(), "500".into()));
    assert_eq!(q[2], ("bad".into(), "%zz".into()));
    assert_eq!(q[3], ("x".into(), String::new()));
}

#[test]
fn the_ca_and_token_are_kept_across_starts() {
    let dir = tempfile::tempdir().unwrap();
    let first = Credentials::load_or_create(dir.path()).unwrap();
    let again = Credentials::load_or_create(dir.path()).unwrap();
    assert_eq!(first.ca_pem, again.ca_pem);
    assert_eq!(first.token, again.token);
    assert_eq!(first.token.len(), 64);
    use std::os::unix::fs::PermissionsExt;
    for file in ["apiserver-ca.key", "admin.token"] {
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{file} is private");
    }
    let (chain, key) = again.serving("127.0.0.1".parse().unwrap()).unwrap();
    ferry_runtime::tls::certified_key(chain.as_bytes(), key.as_bytes()).unwrap();
    let kubeconfig = again.kubeconfig("https://127.0.0.1:6443");
    assert!(
        kubeconfig.contains("server: https://127.0.0.1:6443"),
        "{kubeconfig}"
    );
    assert!(kubeconfig.contains(&format!("token: {}", first.token)));
}

#[test]
fn a_broken_ca_key_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    Credentials::load_or_create(dir.path()).unwrap();
    std::fs::write(dir.path().join("apiserver-ca.key"), "junk").unwrap();
    let e = Credentials::load_or_create(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("apiserver-ca.key") && e.contains("not a private key"),
        "{e}"
    );
}

#[test]
fn a_broken_ca_certificate_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    Credentials::load_or_create(dir.path()).unwrap();
    std::fs::write(dir.path().join("apiserver-ca.crt"), "junk").unwrap();
    let e = Credentials::load_or_create(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("apiserver-ca.crt") && e.contains("not a certificate"),
        "{e}"
    );
}

#[test]
fn a_namespace_list_holds_that_namespace_only() {
    let store = Store::new();
    let other: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "z", "namespace": "a-shop"},
    }))
    .unwrap();
    store.record(&reading(vec![
        pod("a", "web", "Running"),
        manifest(Object::Pod(Box::new(other))),
        service("shop"),
    ]));
    let names = |ns| {
        store
            .list(pods(), ns)
            .1
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(Some("shop")), ["a"]);
    assert_eq!(names(Some("a-shop")), ["z"]);
    assert_eq!(names(Some("default")), Vec::<String>::new());
    assert_eq!(names(None), ["z", "a"]);
}

#[tokio::test]
async fn a_kubeconfig_that_cannot_be_written_is_an_error_naming_the_flag_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing/dir/kubeconfig");
    let config = Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        state_dir: dir.path().join("state"),
        kubeconfig: Some(path),
    };
    let e = ApiServer::build(config, Arc::new(Store::new()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("--write-kubeconfig: ") && e.contains("missing/dir/kubeconfig"),
        "{e}"
    );
}

#[test]
fn ports_without_a_protocol_are_tcp_as_the_api_server_defaults_them() {
    let store = Store::new();
    let with_port: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]}]},
    }))
    .unwrap();
    store.record(&reading(vec![
        manifest(Object::Pod(Box::new(with_port))),
        service("web"),
    ]));
    let pod = store.get(pods(), "shop", "p").unwrap();
    assert_eq!(pod["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
    assert_eq!(pod["spec"]["containers"][0]["ports"][1]["protocol"], "UDP");
    let svc = store
        .get(
            resources::find("", "v1", "services").unwrap(),
            "default",
            "web",
        )
        .unwrap();
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
}

#[test]
fn a_declared_namespace_is_active_and_labelled_with_its_name() {
    use k8s_openapi::api::core::v1::Namespace;
    let store = Store::new();
    let ns: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "a"}},
    }))
    .unwrap();
    store.record(&reading(vec![manifest(Object::Namespace(Box::new(ns)))]));
    let shop = store
        .get(resources::find("", "v1", "namespaces").unwrap(), "", "shop")
        .unwrap();
    assert_eq!(shop["status"]["phase"], "Active");
    assert_eq!(
        shop["metadata"]["labels"],
        json!({"team": "a", "kubernetes.io/metadata.name": "shop"})
    );
    assert_eq!(shop["spec"]["finalizers"], json!(["kubernetes"]));
}

#[test]
fn half_a_ca_is_an_error_not_a_new_ca() {
    let dir = tempfile::tempdir().unwrap();
    Credentials::load_or_create(dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("apiserver-ca.key")).unwrap();
    let e = Credentials::load_or_create(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("apiserver-ca.key") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn the_api_servers_ca_leaves_ferry_controls_files_alone() {
    // `ferry control` keeps its own CA as ca.crt/ca.key; one state directory serves both.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), "control's").unwrap();
    std::fs::write(dir.path().join("ca.key"), "control's").unwrap();
    Credentials::load_or_create(dir.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ca.crt")).unwrap(),
        "control's"
    );
}

#[test]
fn endpoints_leave_terminating_pods_out_and_keep_hostnames_as_the_endpoints_controller() {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let slice: EndpointSlice = serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-abcde", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.0.0.1"], "hostname": "web-0",
             "conditions": {"ready": true, "serving": true, "terminating": false}},
            {"addresses": ["10.0.0.2"],
             "conditions": {"ready": false, "serving": false, "terminating": false}},
            {"addresses": ["10.0.0.3"],
             "conditions": {"ready": false, "serving": true, "terminating": true}},
        ],
    }))
    .unwrap();
    let store = Store::new();
    store.record(&reading(vec![
        service("web"),
        manifest(Object::EndpointSlice(Box::new(slice))),
    ]));
    let ep = resources::find("", "v1", "endpoints").unwrap();
    let e = store.get(ep, "default", "web").unwrap();
    let subset = &e["subsets"][0];
    assert_eq!(
        subset["addresses"],
        json!([{"ip": "10.0.0.1", "hostname": "web-0"}])
    );
    assert_eq!(
        subset["notReadyAddresses"],
        json!([{"ip": "10.0.0.2"}]),
        "{e}"
    );
}

#[test]
fn a_private_file_is_written_afresh_over_a_leftover_aside() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    let aside = dir.path().join("kubeconfig.tmp");
    std::fs::write(&aside, "left over").unwrap();
    std::fs::set_permissions(&aside, std::fs::Permissions::from_mode(0o644)).unwrap();
    super::pki::write_private(&path, "secret").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}

fn kinds(events: &[store::Event]) -> Vec<(store::EventType, String)> {
    events
        .iter()
        .map(|e| (e.kind, e.key.name.clone()))
        .collect()
}

#[test]
fn the_ring_gives_the_events_after_a_version_and_expires_past_its_end() {
    use store::EventType::{Added, Deleted, Modified};
    let store = Store::with_ring(4);
    let mut woken = store.subscribe();
    store.record(&reading(vec![pod("a", "web", "Pending")]));
    let r1 = store.revision();
    assert!(woken.has_changed().unwrap(), "a change wakes the watchers");
    woken.mark_unchanged();
    store.record(&reading(vec![pod("a", "web", "Pending")]));
    assert!(!woken.has_changed().unwrap(), "no change, no wake-up");
    store.record(&reading(vec![
        pod("a", "web", "Running"),
        pod("b", "web", "Pending"),
    ]));
    store.record(&reading(vec![pod("a", "web", "Running")]));
    let (revision, events) = store.events_after(pods(), Some("shop"), r1).unwrap();
    assert_eq!(revision, store.revision());
    assert_eq!(
        kinds(&events),
        [
            (Modified, "a".into()),
            (Added, "b".into()),
            (Deleted, "b".into())
        ]
    );
    // Each event carries the object at its revision; DELETED the last state at the deletion.
    for e in &events {
        assert_eq!(rv(&e.object), e.revision);
    }
    assert_eq!(events[2].object["status"]["phase"], "Pending");
    assert_eq!(
        events[0].previous.as_ref().unwrap()["status"]["phase"],
        "Pending"
    );
    // Another namespace has none of them.
    assert!(
        store
            .events_after(pods(), Some("other"), r1)
            .unwrap()
            .1
            .is_empty()
    );
    // Enough changes to push r1's successors out of the ring of 4: 410, with the oldest.
    for phase in ["Failed", "Succeeded", "Unknown"] {
        store.record(&reading(vec![pod("a", "web", phase)]));
    }
    let expired = store.events_after(pods(), None, r1).unwrap_err();
    assert!(expired.oldest > r1);
    let (_, events) = store.events_after(pods(), None, expired.oldest).unwrap();
    assert_eq!(events.len(), 4, "the whole ring from its oldest revision");
}

#[test]
fn an_object_leaving_a_watchers_selector_is_deleted_for_it_and_added_on_its_return() {
    use store::EventType::{Added, Deleted, Modified};
    let store = Store::with_ring(store::RING);
    let watch = watch::Watch {
        resource: pods(),
        namespace: None,
        labels: Some(parse_labels("app=web").unwrap()),
        fields: Vec::new(),
        table: false,
        include: Include::Metadata,
        bookmarks: false,
        bookmark_interval: watch::BOOKMARK_INTERVAL,
        initial_events_end: false,
        timeout: watch::DEFAULT_TIMEOUT,
        start: watch::Start::After(0),
    };
    let seen = |from: u64| -> Vec<(store::EventType, String, String)> {
        let (_, events) = store.events_after(pods(), None, from).unwrap();
        events
            .iter()
            .filter_map(|e| watch.view(e))
            .map(|(kind, o)| {
                let name = o["metadata"]["name"].as_str().unwrap().to_owned();
                let app = o["metadata"]["labels"]["app"].as_str().unwrap().to_owned();
                (kind, name, app)
            })
            .collect()
    };
    store.record(&reading(vec![
        pod("a", "web", "Pending"),
        pod("x", "api", "Pending"),
    ]));
    let r1 = store.revision();
    assert_eq!(seen(0), [(Added, "a".into(), "web".into())]);
    store.record(&reading(vec![
        pod("a", "api", "Pending"),
        pod("x", "api", "Running"),
    ]));
    let r2 = store.revision();
    // a left the selection: DELETED, with its last matching state at the new revision.
    let left = seen(r1);
    assert_eq!(left, [(Deleted, "a".into(), "web".into())]);
    let (_, events) = store.events_after(pods(), None, r1).unwrap();
    let a = events.iter().find(|e| e.key.name == "a").unwrap();
    assert_eq!(rv(&watch.view(a).unwrap().1), a.revision);
    store.record(&reading(vec![
        pod("a", "web", "Pending"),
        pod("x", "api", "Running"),
    ]));
    let r3 = store.revision();
    assert_eq!(seen(r2), [(Added, "a".into(), "web".into())]);
    store.record(&reading(vec![
        pod("a", "web", "Running"),
        pod("x", "api", "Running"),
    ]));
    assert_eq!(seen(r3), [(Modified, "a".into(), "web".into())]);
}

fn watch_state(ring: usize) -> State {
    let store = Arc::new(Store::with_ring(ring));
    store.record(&reading(vec![
        pod("web-1", "web", "Running"),
        pod("api-1", "api", "Running"),
    ]));
    State {
        store,
        token: "secret".into(),
        server: "https://127.0.0.1:6443".into(),
        cluster: None,
        stopping: tokio::sync::watch::Sender::new(false),
        kubelet: std::sync::OnceLock::new(),
        signer: crate::apiserver::tokens::tests::signer(),
    }
}

async fn next_event(body: &mut watch::WatchBody) -> Value {
    let line = tokio::time::timeout(std::time::Duration::from_secs(10), body.next_line())
        .await
        .expect("an event within 10 s")
        .expect("the stream is open");
    assert_eq!(line.last(), Some(&b'\n'), "one event a line");
    serde_json::from_slice(&line).unwrap()
}

fn start(state: &State, path: &str, query: &str, accept: &str) -> (StatusCode, ApiBody) {
    let r = answer(
        state,
        &Method::GET,
        path,
        query,
        &headers(accept, Some("secret")),
    );
    (r.status(), r.into_body())
}

#[tokio::test]
async fn a_watch_from_0_sends_the_state_then_the_changes_matching_its_selector() {
    for query in [
        "watch=true&labelSelector=app%3Dweb",
        "watch=1&resourceVersion=0&labelSelector=app%3Dweb",
    ] {
        let state = watch_state(100);
        let (code, body) = start(&state, "/api/v1/namespaces/shop/pods", query, JSON);
        assert_eq!(code, StatusCode::OK, "{query}");
        let ApiBody::Watch(mut body) = body else {
            panic!("{query}: not a stream")
        };
        let first = next_event(&mut body).await;
        assert_eq!(first["type"], "ADDED");
        assert_eq!(first["object"]["metadata"]["name"], "web-1");
        assert_eq!(first["object"]["kind"], "Pod");
        store_change(&state, "Pending");
        // api-1's change is not selected.
        let next = next_event(&mut body).await;
        assert_eq!(next["type"], "ADDED", "{query}");
        assert_eq!(next["object"]["metadata"]["name"], "web-2");
        assert_eq!(next["object"]["status"]["phase"], "Pending");
        let next = next_event(&mut body).await;
        assert_eq!(next["type"], "MODIFIED", "{query}");
        assert_eq!(next["object"]["status"]["phase"], "Running");
        assert_eq!(
            next["object"]["metadata"]["resourceVersion"],
            state.store.revision().to_string()
        );
    }
}

/// Adds web-2 (in the given phase) beside web-1 and api-1, or changes it.
fn store_change(state: &State, phase: &str) {
    state.store.record(&reading(vec![
        pod("web-1", "web", "Running"),
        pod("api-1", "api", "Succeeded"),
        pod("web-2", "web", phase),
    ]));
    state.store.record(&reading(vec![
        pod("web-1", "web", "Running"),
        pod("api-1", "api", "Succeeded"),
        pod("web-2", "web", "Running"),
    ]));
}

#[tokio::test]
async fn a_watch_from_a_version_sends_what_followed_it_as_table_rows_across_namespaces() {
    let state = watch_state(100);
    let from = state.store.revision();
    store_change(&state, "Pending");
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let query = format!("watch=true&resourceVersion={from}");
    let (code, body) = start(&state, "/api/v1/pods", &query, accept);
    assert_eq!(code, StatusCode::OK);
    let ApiBody::Watch(mut body) = body else {
        panic!("not a stream")
    };
    let mut seen = Vec::new();
    for _ in 0..3 {
        let e = next_event(&mut body).await;
        assert_eq!(e["object"]["kind"], "Table");
        let row = &e["object"]["rows"][0];
        seen.push((
            e["type"].as_str().unwrap().to_owned(),
            row["cells"][0].as_str().unwrap().to_owned(),
            row["cells"][2].as_str().unwrap().to_owned(),
        ));
        assert!(e["object"]["columnDefinitions"].as_array().unwrap().len() > 1);
    }
    assert_eq!(
        seen,
        [
            ("MODIFIED".into(), "api-1".into(), "Succeeded".into()),
            ("ADDED".into(), "web-2".into(), "Pending".into()),
            ("MODIFIED".into(), "web-2".into(), "Running".into()),
        ]
    );
}

#[tokio::test]
async fn a_watch_from_a_version_past_the_ring_is_an_error_event_and_so_is_a_watcher_left_behind() {
    let state = watch_state(2);
    let from = state.store.revision();
    // A watcher at `from`, not reading yet.
    let (code, body) = start(
        &state,
        "/api/v1/namespaces/shop/pods",
        &format!("watch=true&resourceVersion={from}"),
        JSON,
    );
    assert_eq!(code, StatusCode::OK);
    let ApiBody::Watch(mut behind) = body else {
        panic!("not a stream")
    };
    for phase in ["Pending", "Failed"] {
        store_change(&state, phase);
    }
    let (code, body) = start(
        &state,
        "/api/v1/pods",
        &format!("watch=true&resourceVersion={from}"),
        JSON,
    );
    // Established, and its one event is the ERROR with the 410 Status.
    assert_eq!(code, StatusCode::OK);
    let event: Value = serde_json::from_slice(&body.collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(event["type"], "ERROR");
    let body = &event["object"];
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Expired");
    assert_eq!(body["code"], 410);
    // The watcher that started in time either got the events or, fallen behind, an ERROR
    // with the same Status and the end of its stream.
    loop {
        let e = next_event(&mut behind).await;
        if e["type"] == "ERROR" {
            assert_eq!(e["object"]["code"], 410);
            assert_eq!(e["object"]["reason"], "Expired");
            break;
        }
    }
    assert!(behind.next_line().await.is_none(), "the stream ends");
}

#[tokio::test]
async fn timeout_seconds_ends_a_watch_and_bad_parameters_are_400() {
    let state = watch_state(100);
    let (code, body) = start(
        &state,
        "/api/v1/pods",
        "watch=true&timeoutSeconds=1&labelSelector=app%3Dnone",
        JSON,
    );
    assert_eq!(code, StatusCode::OK);
    let ApiBody::Watch(mut body) = body else {
        panic!("not a stream")
    };
    let end = tokio::time::timeout(std::time::Duration::from_secs(10), body.next_line()).await;
    assert_eq!(end.unwrap(), None, "the stream ends after timeoutSeconds");
    for query in [
        "watch=true&resourceVersion=abc",
        "watch=true&timeoutSeconds=-1",
        "watch=true&labelSelector=app%3D%3D%3D",
    ] {
        let (code, _) = start(&state, "/api/v1/pods", query, JSON);
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}");
    }
}

#[tokio::test]
async fn shutdown_ends_the_watches_and_bookmarks_mark_the_end_of_initial_events() {
    let state = watch_state(100);
    let (code, body) = start(
        &state,
        "/api/v1/pods",
        "watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
        JSON,
    );
    assert_eq!(code, StatusCode::OK);
    let ApiBody::Watch(mut body) = body else {
        panic!("not a stream")
    };
    assert_eq!(next_event(&mut body).await["type"], "ADDED");
    assert_eq!(next_event(&mut body).await["type"], "ADDED");
    let bookmark = next_event(&mut body).await;
    assert_eq!(bookmark["type"], "BOOKMARK");
    assert_eq!(bookmark["object"]["kind"], "Pod");
    assert_eq!(
        bookmark["object"]["metadata"]["resourceVersion"],
        state.store.revision().to_string()
    );
    assert_eq!(
        bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    state.stopping.send_replace(true);
    let end = tokio::time::timeout(std::time::Duration::from_secs(10), body.next_line()).await;
    assert_eq!(end.unwrap(), None, "shutdown ends the stream");
}

#[test]
fn discovery_lists_the_watch_verb() {
    assert!(resources::VERBS.contains(&"watch"));
    let list = resources::api_resource_list("", "v1");
    let pods = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods")
        .unwrap();
    assert!(pods["verbs"].as_array().unwrap().contains(&json!("watch")));
}

#[test]
fn revisions_start_at_the_clock_so_a_version_from_an_earlier_run_is_expired() {
    let earlier = Store::new();
    earlier.record(&reading(vec![pod("a", "web", "Pending")]));
    let old = earlier.revision();
    let store = Store::new();
    assert!(store.revision() > old, "revisions rise across runs");
    store.record(&reading(vec![pod("a", "web", "Pending")]));
    assert!(store.events_after(pods(), None, old).is_err());
    assert!(store.events_after(pods(), None, 1).is_err());
    assert!(
        store
            .events_after(pods(), None, store.revision() + 1)
            .is_err(),
        "a version this run never gave"
    );
    let (_, events) = store
        .events_after(pods(), None, store.revision() - 1)
        .unwrap();
    assert_eq!(events.len(), 1);
}

#[tokio::test]
async fn a_streaming_watch_keeps_its_connection_from_the_idle_timeout() {
    use ferry_runtime::connections::{Connections, Expiry, Limits};
    use std::time::Duration;
    let limits = Limits {
        first_request: Duration::from_millis(50),
        idle: Duration::from_millis(50),
        max_connections: 4,
    };
    let connections = Connections::new(limits);
    let conn = connections.admit().unwrap();
    let state = watch_state(100);
    let (_, body) = start(&state, "/api/v1/pods", "watch=true", JSON);
    let body = body.guarded(conn.request());
    assert!(
        tokio::time::timeout(Duration::from_millis(500), conn.expired())
            .await
            .is_err(),
        "ten idle timeouts pass while the watch streams"
    );
    drop(body);
    let expiry = tokio::time::timeout(Duration::from_secs(10), conn.expired()).await;
    assert_eq!(expiry.unwrap(), Expiry::Idle, "idle once the watch is gone");
    // A whole answer does not hold it.
    let conn = connections.admit().unwrap();
    let (_, body) = start(&state, "/api/v1/pods", "", JSON);
    let _body = body.guarded(conn.request());
    let expiry = tokio::time::timeout(Duration::from_secs(10), conn.expired()).await;
    assert_eq!(expiry.unwrap(), Expiry::Idle);
}

#[tokio::test]
async fn a_watch_allowing_bookmarks_gets_one_with_the_current_version_now_and_then() {
    let state = watch_state(100);
    let from = state.store.revision();
    let watch = |bookmarks: bool| watch::Watch {
        resource: pods(),
        namespace: None,
        labels: None,
        fields: Vec::new(),
        table: false,
        include: Include::Metadata,
        bookmarks,
        bookmark_interval: std::time::Duration::from_millis(20),
        initial_events_end: false,
        timeout: std::time::Duration::from_secs(1),
        start: watch::Start::After(from),
    };
    let mut body = watch(true).start(state.store.clone(), state.stopping.subscribe());
    store_change(&state, "Pending");
    let mut bookmarks = 0;
    while let Some(line) = body.next_line().await {
        let e: Value = serde_json::from_slice(&line).unwrap();
        if e["type"] == "BOOKMARK" {
            assert_eq!(e["object"]["kind"], "Pod");
            assert_eq!(
                e["object"]["metadata"]["resourceVersion"],
                state.store.revision().to_string(),
                "after the changes, the current version"
            );
            bookmarks += 1;
        }
    }
    assert!(
        bookmarks >= 1,
        "bookmarks before the timeout ended the watch"
    );
    // Not asked for: none.
    let mut body = watch(false).start(state.store.clone(), state.stopping.subscribe());
    while let Some(line) = body.next_line().await {
        let e: Value = serde_json::from_slice(&line).unwrap();
        assert_ne!(e["type"], "BOOKMARK");
    }
}
