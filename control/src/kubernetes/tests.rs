use ferry_objects::object::{Kind, Object};
use ferry_objects::source::Cause;
use kube::runtime::watcher::Event;
use serde_json::json;

use super::status::{self, IngressNow, StatusAddress};
use super::{Objects, WatchKey};

const SERVER: &str = "https://127.0.0.1:6443";

fn service(ns: &str, name: &str) -> Object {
    Object::Service(Box::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"port": 80}]}
        }))
        .unwrap(),
    ))
}

fn slice(ns: &str, name: &str) -> Object {
    Object::EndpointSlice(Box::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"]}]
        }))
        .unwrap(),
    ))
}

fn ferry_class() -> Object {
    Object::IngressClass(Box::new(
        serde_json::from_value(json!({
            "metadata": {"name": "ferry"},
            "spec": {"controller": "ferry.dev/ingress"}
        }))
        .unwrap(),
    ))
}

fn ingress(ns: &str, name: &str, class: &str, secret: &str, path: &str) -> Object {
    Object::Ingress(Box::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "resourceVersion": "7"},
            "spec": {
                "ingressClassName": class,
                "tls": [{"hosts": ["web.test"], "secretName": secret}],
                "rules": [{"host": "web.test", "http": {"paths": [
                    {"path": path, "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 80}}}}
                ]}}]
            }
        }))
        .unwrap(),
    ))
}

fn kind(k: Kind) -> WatchKey {
    WatchKey::Kind(k)
}

/// Lists every kind: the services given, nothing else.
fn listed(services: &[Object]) -> Objects {
    let mut objects = Objects::new(SERVER);
    for k in super::KINDS {
        objects.apply(&kind(k), Event::Init);
        if k == Kind::Service {
            for s in services {
                objects.apply(&kind(k), Event::InitApply(s.clone()));
            }
        }
        objects.apply(&kind(k), Event::InitDone);
    }
    objects
}

fn names(objects: &mut Objects) -> Vec<String> {
    let (update, _) = objects.relist();
    let mut names: Vec<_> = update
        .reading
        .manifests
        .iter()
        .map(|m| m.key().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn no_relist_until_every_kind_has_listed() {
    let mut objects = Objects::new(SERVER);
    for k in super::KINDS {
        assert!(!objects.ready(), "ready before {k} listed");
        objects.apply(&kind(k), Event::Init);
        objects.apply(&kind(k), Event::InitDone);
    }
    assert!(objects.ready());
}

#[test]
fn a_relist_replaces_a_kind_in_one_step() {
    let mut objects = listed(&[service("shop", "web"), service("shop", "api")]);
    assert_eq!(
        names(&mut objects),
        ["Service shop/api", "Service shop/web"]
    );
    // A relist under way (the watch restarted): the old objects serve until InitDone.
    assert!(!objects.apply(&kind(Kind::Service), Event::Init));
    assert!(!objects.apply(
        &kind(Kind::Service),
        Event::InitApply(service("shop", "web"))
    ));
    assert_eq!(
        names(&mut objects),
        ["Service shop/api", "Service shop/web"]
    );
    assert!(objects.apply(&kind(Kind::Service), Event::InitDone));
    assert_eq!(names(&mut objects), ["Service shop/web"]);
}

#[test]
fn a_failed_watch_keeps_the_objects_last_seen() {
    let mut objects = listed(&[service("shop", "web")]);
    objects.failed(&kind(Kind::Service));
    objects.failed(&kind(Kind::EndpointSlice));
    assert!(objects.ready());
    assert_eq!(names(&mut objects), ["Service shop/web"]);
    // A watch that restarts and fails midway through its list changes nothing either.
    objects.apply(&kind(Kind::Service), Event::Init);
    objects.failed(&kind(Kind::Service));
    assert_eq!(names(&mut objects), ["Service shop/web"]);
}

#[test]
fn changes_apply_and_delete_single_objects() {
    let mut objects = listed(&[service("shop", "web")]);
    assert!(objects.apply(&kind(Kind::Service), Event::Apply(service("shop", "api"))));
    assert!(objects.apply(&kind(Kind::Service), Event::Delete(service("shop", "web"))));
    assert!(!objects.apply(&kind(Kind::Service), Event::Delete(service("shop", "gone"))));
    assert_eq!(names(&mut objects), ["Service shop/api"]);
}

#[test]
fn endpoint_changes_alone_are_observed_others_applied() {
    let mut objects = listed(&[]);
    assert_eq!(objects.relist().0.cause, Cause::Applied, "the first list");
    objects.apply(
        &kind(Kind::EndpointSlice),
        Event::Apply(slice("shop", "web-1")),
    );
    assert_eq!(objects.relist().0.cause, Cause::Observed);
    objects.apply(&kind(Kind::Service), Event::Apply(service("shop", "web")));
    objects.apply(
        &kind(Kind::EndpointSlice),
        Event::Apply(slice("shop", "web-2")),
    );
    assert_eq!(objects.relist().0.cause, Cause::Applied);
}

#[test]
fn only_the_secrets_ferrys_ingresses_name_are_watched() {
    let mut objects = listed(&[]);
    objects.apply(&kind(Kind::IngressClass), Event::Apply(ferry_class()));
    let ours = ingress("shop", "web", "ferry", "web-tls", "/");
    objects.apply(&kind(Kind::Ingress), Event::Apply(ours.clone()));
    let theirs = ingress("shop", "other", "nginx", "other-tls", "/");
    objects.apply(&kind(Kind::Ingress), Event::Apply(theirs));
    let (start, stop) = objects.secret_changes();
    assert_eq!(start, [("shop".to_owned(), "web-tls".to_owned())]);
    assert!(stop.is_empty());
    // The new Secret watch is waited for before the first relist, unless it fails.
    assert!(!objects.ready());
    let secret_key = WatchKey::Secret("shop".into(), "web-tls".into());
    objects.failed(&secret_key);
    assert!(objects.ready());
    assert_eq!(objects.secret_changes(), (vec![], vec![]));
    objects.apply(&kind(Kind::Ingress), Event::Delete(ours));
    let (start, stop) = objects.secret_changes();
    assert!(start.is_empty());
    assert_eq!(stop, [("shop".to_owned(), "web-tls".to_owned())]);
}

#[test]
fn problems_name_the_server_the_object_and_the_field() {
    let mut objects = listed(&[]);
    objects.apply(&kind(Kind::IngressClass), Event::Apply(ferry_class()));
    let bad = ingress("shop", "web", "ferry", "web-tls", "foo");
    objects.apply(&kind(Kind::Ingress), Event::Apply(bad));
    let (update, _) = objects.relist();
    let lines: Vec<String> = update
        .reading
        .problems
        .iter()
        .filter(|p| p.is_error())
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "<kubernetes https://127.0.0.1:6443>: Ingress shop/web: spec.rules[0].http.paths[0].path: Invalid value: \"foo\": must be an absolute path"
        ]
    );
}

#[test]
fn statuses_are_those_of_ferrys_ingresses_and_written_only_when_they_differ() {
    let mut objects = listed(&[]);
    objects.apply(&kind(Kind::IngressClass), Event::Apply(ferry_class()));
    objects.apply(
        &kind(Kind::Ingress),
        Event::Apply(ingress("shop", "web", "ferry", "web-tls", "/")),
    );
    objects.apply(
        &kind(Kind::Ingress),
        Event::Apply(ingress("shop", "other", "nginx", "x", "/")),
    );
    let (_, statuses) = objects.relist();
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].name, "web");
    let address = StatusAddress::parse("127.0.0.1").unwrap();
    let mut written = status::Written::new();
    assert_eq!(status::due(&statuses, &address, &written).len(), 1);
    // Written at resourceVersion 7 (the write made 8), not seen back yet: not written again.
    let versions = [Some("7".to_owned()), Some("8".to_owned())];
    written.insert(("shop".to_owned(), "web".to_owned()), versions);
    assert!(status::due(&statuses, &address, &written).is_empty());
    // Seen back with the address (and an empty ports list): nothing to write.
    let shown = IngressNow {
        resource_version: Some("8".into()),
        load_balancer: vec![json!({"ip": "127.0.0.1", "ports": []})],
        ..statuses[0].clone()
    };
    assert!(
        status::due(
            std::slice::from_ref(&shown),
            &address,
            &status::Written::new()
        )
        .is_empty()
    );
    // Seen back in a form ferry does not read as its own: not written again either (no loop).
    let other_form = IngressNow {
        load_balancer: vec![json!({"ip": "127.0.0.1", "ports": [{"port": 80, "protocol": "TCP"}]})],
        ..shown.clone()
    };
    assert!(status::due(std::slice::from_ref(&other_form), &address, &written).is_empty());
    // Someone changed it since: written again.
    let changed = IngressNow {
        resource_version: Some("9".into()),
        load_balancer: vec![json!({"ip": "10.0.0.9"})],
        ..shown
    };
    assert_eq!(status::due(&[changed], &address, &written).len(), 1);
}

#[test]
fn the_status_patch_replaces_the_list_with_the_address() {
    let ip = StatusAddress::parse("192.0.2.7").unwrap();
    assert_eq!(
        status::patch(&ip),
        json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}}})
    );
    let host = StatusAddress::parse("lb.example.com").unwrap();
    assert_eq!(
        status::patch(&host),
        json!({"status": {"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}]}}})
    );
    let err = StatusAddress::parse("not an address").unwrap_err();
    assert!(
        err.contains("neither an IP address nor a DNS name"),
        "{err}"
    );
}

#[test]
fn a_watch_refused_as_expired_is_started_anew_other_failures_back_off() {
    use kube::core::Status;
    use kube::runtime::watcher::Error;
    let status = |code| {
        kube::Error::Api(
            Status::failure("too old", "Expired")
                .with_code(code)
                .boxed(),
        )
    };
    assert!(super::expired(&Error::WatchStartFailed(status(410))));
    assert!(!super::expired(&Error::WatchStartFailed(status(403))));
    assert!(!super::expired(&Error::InitialListFailed(status(410))));
}

/// A stand-in API server for the status writer: counts the PATCHes of `status` it gets and
/// fails the first `fail` of them with 500 (503 kube-rs retries by itself).
async fn status_server(
    fail: usize,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use http_body_util::{BodyExt, Full};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            let service = hyper::service::service_fn(
                move |req: http::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let line = format!(
                            "{} {} {}",
                            req.method(),
                            req.uri().path(),
                            req.headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                        );
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let n = {
                            let mut log = log.lock().unwrap();
                            log.push(format!("{line} {}", String::from_utf8_lossy(&body)));
                            log.len()
                        };
                        let (code, answer) = if n <= fail {
                            (
                                500,
                                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd away", "reason": "InternalError", "code": 500}),
                            )
                        } else {
                            (
                                200,
                                json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": "shop"}}),
                            )
                        };
                        let res = http::Response::builder()
                            .status(code)
                            .header("content-type", "application/json")
                            .body(Full::new(bytes_of(&answer)))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(res)
                    }
                },
            );
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (addr, seen)
}

fn bytes_of(v: &serde_json::Value) -> hyper::body::Bytes {
    hyper::body::Bytes::from(v.to_string())
}

#[tokio::test]
async fn a_failed_status_write_is_retried_and_never_fatal() {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    let (addr, seen) = status_server(1).await;
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let writes: Family<Vec<(&'static str, String)>, Counter> = Family::default();
    let (tx, rx) = tokio::sync::watch::channel(Vec::new());
    let address = StatusAddress::parse("192.0.2.7").unwrap();
    let writer = tokio::spawn(status::write(client, address, rx, writes.clone()));
    tx.send_replace(vec![IngressNow {
        namespace: "shop".into(),
        name: "web".into(),
        resource_version: Some("7".into()),
        load_balancer: Vec::new(),
    }]);
    let count = |result: &str| {
        writes
            .get_or_create(&vec![("result", result.to_owned())])
            .get()
    };
    ferry_testing::eventually(
        ferry_testing::DEADLINE,
        "a write after a failed one",
        || async { (count("ok") == 1).then_some(()) },
    )
    .await;
    assert_eq!(count("error"), 1);
    let seen = seen.lock().unwrap().clone();
    let patch = "PATCH /apis/networking.k8s.io/v1/namespaces/shop/ingresses/web/status application/merge-patch+json {\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"192.0.2.7\"}]}}}";
    assert_eq!(seen, [patch, patch]);
    assert!(!writer.is_finished(), "the writer stopped");
    drop(tx);
    writer.await.unwrap();
}

#[test]
fn an_error_in_another_controllers_ingress_is_only_a_warning() {
    use ferry_model::{ObjectRef, Problem, Severity};
    let problem = |name: &str| Problem {
        severity: Severity::Error,
        file: "<kubernetes https://127.0.0.1:6443>".into(),
        doc: None,
        object: Some(ObjectRef::new("Ingress", Some("shop"), name)),
        field: "metadata.annotations".into(),
        message: "backend-protocol: FCGI is not served".into(),
    };
    let mut problems = vec![problem("nginx-one"), problem("ours")];
    let ours = vec![super::status::IngressNow {
        namespace: "shop".into(),
        name: "ours".into(),
        resource_version: None,
        load_balancer: Vec::new(),
    }];
    super::objects::not_ours_is_no_error(&mut problems, &ours);
    assert_eq!(problems[0].severity, Severity::Warning);
    assert!(
        problems[0]
            .message
            .ends_with("(not ferry's Ingress: ignored)")
    );
    assert_eq!(
        problems[1].severity,
        Severity::Error,
        "ferry's own stays an error"
    );
}

#[test]
fn pods_are_kept_as_far_as_identity_needs_and_come_and_go_as_observed_state() {
    let full: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {"name": "web-0", "namespace": "shop", "uid": "u-1",
                     "labels": {"app": "web"}, "annotations": {"big": "x".repeat(4096)}},
        "spec": {"serviceAccountName": "web",
                 "containers": [{"name": "app", "image": "ferry/echo", "args": ["a", "b"]}]},
        "status": {"phase": "Running", "podIP": "10.244.0.5"}
    }))
    .unwrap();
    let kept = super::pod_identity(full);
    assert_eq!(
        serde_json::to_value(&kept).unwrap(),
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "shop", "uid": "u-1"},
            "spec": {"serviceAccountName": "web", "containers": []}
        })
    );
    let mut objects = listed(&[]);
    objects.relist();
    objects.apply(&kind(Kind::Pod), Event::Apply(Object::Pod(Box::new(kept))));
    let (update, _) = objects.relist();
    assert_eq!(update.cause, Cause::Observed);
    // Kept without its containers, it is no configuration error.
    assert!(
        update.reading.problems.is_empty(),
        "{:?}",
        update.reading.problems
    );
    assert_eq!(update.reading.manifests.len(), 1);
}
