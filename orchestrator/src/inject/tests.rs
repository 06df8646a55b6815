use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use ferry_model::mesh::{ADMIN_PORT, SIDECAR_CONTAINER};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use super::*;

fn mesh() -> Mesh {
    Mesh {
        program: PathBuf::from("/usr/bin/ferry"),
        args: vec![
            "sidecar".into(),
            "--control".into(),
            "https://10.0.0.1:8443".into(),
        ],
        run_dir: PathBuf::from("/run/ferry/pods"),
        mint_token: Arc::new(|c: &PodClaims| format!("token-for-{}", c.pod)),
    }
}

fn pod(annotation: Option<&str>) -> Pod {
    let mut meta = json!({"name": "web-1", "namespace": "shop", "uid": "u-1"});
    if let Some(a) = annotation {
        meta["annotations"] = json!({"ferry.dev/inject": a});
    }
    serde_json::from_value(json!({
        "metadata": meta,
        "spec": {"containers": [{"name": "app", "image": "ferry/echo"}]},
    }))
    .expect("a pod")
}

fn namespace(annotation: Option<&str>) -> Option<BTreeMap<String, String>> {
    annotation.map(|a| BTreeMap::from([("ferry.dev/inject".to_owned(), a.to_owned())]))
}

#[test]
fn the_pod_annotation_wins_over_its_namespaces() {
    // (namespace, pod) -> a sidecar?
    let matrix = [
        (None, None, false),
        (None, Some("enabled"), true),
        (None, Some("disabled"), false),
        (Some("enabled"), None, true),
        (Some("enabled"), Some("disabled"), false),
        (Some("enabled"), Some("enabled"), true),
        (Some("disabled"), Some("enabled"), true),
        (Some("disabled"), None, false),
        // Only `enabled` asks.
        (Some("yes"), None, false),
        (None, Some("true"), false),
    ];
    let mesh = mesh();
    for (ns, own, wanted) in matrix {
        let mut p = pod(own);
        let outcome = inject(&mut p, namespace(ns).as_ref(), Ok(&mesh));
        let expected = if wanted {
            Outcome::Injected
        } else {
            Outcome::NotAsked
        };
        assert_eq!(outcome, expected, "namespace {ns:?}, pod {own:?}");
        assert_eq!(is_meshed(&p), wanted, "namespace {ns:?}, pod {own:?}");
    }
}

#[test]
fn the_sidecar_is_a_native_sidecar_with_its_token_identity_and_startup_probe() {
    let mut p = pod(Some("enabled"));
    assert_eq!(inject(&mut p, None, Ok(&mesh())), Outcome::Injected);
    let spec = p.spec.as_ref().expect("spec");
    let inits = spec.init_containers.as_ref().expect("init containers");
    assert_eq!(inits.len(), 1);
    let c = &inits[0];
    assert_eq!(c.name, SIDECAR_CONTAINER);
    assert_eq!(c.restart_policy.as_deref(), Some("Always"));
    assert_eq!(
        c.command.as_deref().expect("a command"),
        [
            "/usr/bin/ferry",
            "sidecar",
            "--control",
            "https://10.0.0.1:8443",
            "--token-file",
            "/run/ferry/pods/u-1/token"
        ]
    );
    let env: Vec<(&str, &str)> = c
        .env
        .iter()
        .flatten()
        .map(|e| {
            let path = e.value_from.as_ref().and_then(|v| v.field_ref.as_ref());
            (e.name.as_str(), path.map_or("", |f| f.field_path.as_str()))
        })
        .collect();
    assert_eq!(
        env,
        [
            ("FERRY_POD_NAMESPACE", "metadata.namespace"),
            ("FERRY_POD_NAME", "metadata.name"),
            ("FERRY_POD_IP", "status.podIP")
        ]
    );
    let startup = c.startup_probe.as_ref().and_then(|p| p.http_get.as_ref());
    assert_eq!(startup.and_then(|h| h.path.as_deref()), Some("/ready"));
    assert_eq!(
        startup.map(|h| h.port.clone()),
        Some(IntOrString::Int(i32::from(ADMIN_PORT)))
    );
    let annotations = p.metadata.annotations.as_ref().expect("annotations");
    assert_eq!(
        annotations.get(INJECTED_ANNOTATION).map(String::as_str),
        Some(env!("CARGO_PKG_VERSION"))
    );
    // The app containers are untouched.
    assert_eq!(spec.containers.len(), 1);
    assert_eq!(spec.containers[0].name, "app");
}

#[test]
fn injection_is_idempotent_and_goes_before_other_init_containers() {
    let mut p = pod(Some("enabled"));
    p.spec.as_mut().expect("spec").init_containers = Some(vec![
        serde_json::from_value(json!({"name": "setup"})).expect("a container"),
    ]);
    assert_eq!(inject(&mut p, None, Ok(&mesh())), Outcome::Injected);
    let once = p.clone();
    assert_eq!(inject(&mut p, None, Ok(&mesh())), Outcome::AlreadyInjected);
    assert_eq!(p, once);
    let names: Vec<&str> = p
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, [SIDECAR_CONTAINER, "setup"]);
}

#[test]
fn without_a_mesh_the_pod_runs_unchanged_and_says_why() {
    let mut p = pod(Some("enabled"));
    let before = p.clone();
    let outcome = inject(&mut p, None, Err("the mesh needs the netns pod network"));
    assert_eq!(
        outcome,
        Outcome::Ignored(
            "ferry.dev/inject asks for a sidecar, but the Pod runs without one: the mesh needs \
             the netns pod network"
                .to_owned()
        )
    );
    assert_eq!(p, before);
}

#[test]
fn claims_default_the_service_account() {
    let mut p = pod(None);
    assert_eq!(
        PodClaims::of(&p),
        PodClaims {
            namespace: "shop".into(),
            pod: "web-1".into(),
            uid: "u-1".into(),
            service_account: "default".into(),
        }
    );
    p.spec.as_mut().expect("spec").service_account_name = Some("web".into());
    assert_eq!(PodClaims::of(&p).service_account, "web");
    let m = mesh();
    assert_eq!((m.mint_token)(&PodClaims::of(&p)), "token-for-web-1");
    // The deprecated serviceAccount counts when serviceAccountName is not set, as admission.
    p.spec.as_mut().expect("spec").service_account = Some("old".into());
    assert_eq!(PodClaims::of(&p).service_account, "web");
    p.spec.as_mut().expect("spec").service_account_name = Some(String::new());
    assert_eq!(PodClaims::of(&p).service_account, "old");
}

/// A meshed Pod with these containers and annotations.
fn pod_with(containers: serde_json::Value, annotations: serde_json::Value) -> Pod {
    let mut annotations = annotations;
    annotations["ferry.dev/inject"] = json!("enabled");
    serde_json::from_value(json!({
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1", "annotations": annotations},
        "spec": {"containers": containers},
    }))
    .expect("a pod")
}

/// The sidecar's `FERRY_APP_PROBERS`, decoded.
fn probers(p: &Pod) -> Option<ferry_model::mesh::app_probe::AppProbers> {
    let sidecar = &p.spec.as_ref()?.init_containers.as_ref()?[0];
    let env = sidecar
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "FERRY_APP_PROBERS")?;
    Some(ferry_model::mesh::app_probe::parse(env.value.as_deref()?).expect("valid JSON"))
}

fn probe_json(p: &Pod, container: usize, kind: &str) -> serde_json::Value {
    let c = &p.spec.as_ref().expect("spec").containers[container];
    serde_json::to_value(c).expect("encodes")[kind].clone()
}

#[test]
fn http_and_tcp_probes_go_through_the_sidecar_with_their_timing() {
    let mut p = pod_with(
        json!([{
            "name": "web",
            "ports": [{"name": "http", "containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "healthz", "port": "http", "scheme": "HTTPS",
                "host": "10.9.9.9", "httpHeaders": [{"name": "x-a", "value": "b"}]},
                "periodSeconds": 2, "timeoutSeconds": 3, "failureThreshold": 4,
                "successThreshold": 2, "initialDelaySeconds": 1},
            "livenessProbe": {"tcpSocket": {"port": 8080}, "terminationGracePeriodSeconds": 7},
            "startupProbe": {"httpGet": {"port": "9090"}},
        }]),
        json!({}),
    );
    assert_eq!(inject(&mut p, None, Ok(&mesh())), Outcome::Injected);
    assert_eq!(
        probe_json(&p, 0, "readinessProbe"),
        json!({"httpGet": {"path": "/app-health/web/readyz", "port": 4191, "scheme": "HTTP"},
            "periodSeconds": 2, "timeoutSeconds": 3, "failureThreshold": 4,
            "successThreshold": 2, "initialDelaySeconds": 1})
    );
    assert_eq!(
        probe_json(&p, 0, "livenessProbe"),
        json!({"httpGet": {"path": "/app-health/web/livez", "port": 4191, "scheme": "HTTP"},
            "terminationGracePeriodSeconds": 7})
    );
    let probers = serde_json::to_value(probers(&p).expect("probers")).expect("encodes");
    assert_eq!(
        probers,
        json!({
            "/app-health/web/readyz": {"httpGet": {"path": "/healthz", "port": 8080,
                "scheme": "HTTPS", "host": "10.9.9.9",
                "httpHeaders": [{"name": "x-a", "value": "b"}]}, "timeoutSeconds": 3},
            "/app-health/web/livez": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 1},
            "/app-health/web/startupz": {"httpGet": {"path": "/", "port": 9090,
                "scheme": "HTTP"}, "timeoutSeconds": 1},
        })
    );
}

#[test]
fn exec_probes_unknown_port_names_and_the_sidecar_itself_stay_as_written() {
    let mut p = pod_with(
        json!([
            {"name": "a", "livenessProbe": {"exec": {"command": ["true"]}},
             "readinessProbe": {"httpGet": {"port": "nope"}}},
            {"name": "b"},
        ]),
        json!({}),
    );
    let before = p.spec.as_ref().expect("spec").containers.clone();
    assert_eq!(inject(&mut p, None, Ok(&mesh())), Outcome::Injected);
    assert_eq!(p.spec.as_ref().expect("spec").containers, before);
    // Nothing to hand over: no env var.
    assert_eq!(probers(&p), None);
    let sidecar = &p
        .spec
        .as_ref()
        .expect("spec")
        .init_containers
        .as_ref()
        .expect("inits")[0];
    assert_eq!(
        sidecar
            .startup_probe
            .as_ref()
            .and_then(|s| s.http_get.as_ref())
            .and_then(|h| h.path.as_deref()),
        Some("/ready")
    );
}

#[test]
fn the_pod_may_keep_its_probes() {
    let containers = json!([{"name": "web", "readinessProbe": {"httpGet": {"port": 8080}}}]);
    let mut p = pod_with(
        containers.clone(),
        json!({"ferry.dev/rewrite-probes": "false"}),
    );
    assert!(!rewrites_probes(&p));
    assert_eq!(inject(&mut p, None, Ok(&mesh())), Outcome::Injected);
    assert_eq!(
        probe_json(&p, 0, "readinessProbe"),
        json!({"httpGet": {"port": 8080}})
    );
    assert_eq!(probers(&p), None);
    // Any other value rewrites, as the default does.
    let mut p = pod_with(containers, json!({"ferry.dev/rewrite-probes": "true"}));
    assert!(rewrites_probes(&p));
    assert_eq!(inject(&mut p, None, Ok(&mesh())), Outcome::Injected);
    assert_eq!(
        probe_json(&p, 0, "readinessProbe")["httpGet"]["path"],
        json!("/app-health/web/readyz")
    );
}

#[test]
fn a_pod_injected_twice_is_rewritten_once() {
    let mut p = pod_with(
        json!([{"name": "web", "readinessProbe": {"httpGet": {"port": 8080}}}]),
        json!({}),
    );
    assert_eq!(inject(&mut p, None, Ok(&mesh())), Outcome::Injected);
    let once = p.clone();
    assert_eq!(inject(&mut p, None, Ok(&mesh())), Outcome::AlreadyInjected);
    assert_eq!(p, once);
    // A rewritten probe is never taken for an original, even on a spec without the sidecar
    // (a Pod made from an injected one's containers).
    let mut spec = once.spec.clone().expect("spec");
    spec.init_containers = None;
    assert!(probes::rewrite(&mut spec).is_empty());
    assert_eq!(
        spec.containers,
        once.spec.as_ref().expect("spec").containers
    );
}
