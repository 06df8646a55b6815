use std::net::IpAddr;

use k8s_openapi::api::core::v1::{EnvVar, Pod};
use serde_json::json;

use super::{EnvSource, container_env, expand};

fn lookup(name: &str) -> Option<&'static str> {
    match name {
        "A" => Some("alpha"),
        "EMPTY" => Some(""),
        _ => None,
    }
}

#[test]
fn expansion_follows_kubernetes() {
    assert_eq!(expand("x $(A) y", lookup), "x alpha y");
    assert_eq!(expand("$(A)$(A)", lookup), "alphaalpha");
    assert_eq!(expand("$$(A)", lookup), "$(A)");
    assert_eq!(expand("$$$(A)", lookup), "$alpha");
    assert_eq!(expand("$(UNKNOWN)", lookup), "$(UNKNOWN)");
    assert_eq!(expand("$(EMPTY)!", lookup), "!");
    assert_eq!(expand("$(A", lookup), "$(A");
    assert_eq!(expand("$A $", lookup), "$A $");
    assert_eq!(expand("cost: $5 or $é", lookup), "cost: $5 or $é");
    assert_eq!(expand("", lookup), "");
    assert_eq!(expand("$()", lookup), "$()");
}

fn pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1",
                     "labels": {"app": "web"}, "annotations": {"note": "hi"}},
        "spec": {"containers": [{"name": "c"}]}
    }))
    .expect("a pod")
}

fn vars(v: serde_json::Value) -> Vec<EnvVar> {
    serde_json::from_value(v).expect("env vars")
}

#[test]
fn container_env_layers_and_refers_back() {
    let pod = pod();
    let service_env = vec![
        ("API_SERVICE_HOST".to_owned(), "127.2.0.11".to_owned()),
        ("OVERRIDDEN".to_owned(), "by service".to_owned()),
    ];
    let host_env = vec![("PATH".to_owned(), "/usr/bin:/bin".to_owned())];
    let source = EnvSource {
        pod: &pod,
        pod_ip: "127.1.0.7".parse::<IpAddr>().expect("ip"),
        host_ip: "127.0.0.1".parse::<IpAddr>().expect("ip"),
        node_name: "node-a",
        service_env: &service_env,
        host_env: &host_env,
    };
    let env = container_env(
        &source,
        &vars(json!([
            {"name": "GREETING", "value": "hello $(POD_NAME) at $(API_SERVICE_HOST)"},
            {"name": "LATER_REF", "value": "$(DEFINED_LATER)"},
            {"name": "DEFINED_LATER", "value": "x"},
            {"name": "OVERRIDDEN", "value": "by container"},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
            {"name": "MISSING", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['nope']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ])),
    )
    .expect("an environment");
    let get = |k| env.get(k);
    assert_eq!(get("PATH"), Some("/usr/bin:/bin"));
    assert_eq!(get("POD_IP"), Some("127.1.0.7"));
    assert_eq!(get("POD_NAME"), Some("web-1"));
    assert_eq!(get("POD_NAMESPACE"), Some("shop"));
    assert_eq!(get("HOSTNAME"), Some("web-1"));
    assert_eq!(get("GREETING"), Some("hello web-1 at 127.2.0.11"));
    // Only earlier variables can be referred to, as in Kubernetes.
    assert_eq!(get("LATER_REF"), Some("$(DEFINED_LATER)"));
    assert_eq!(get("OVERRIDDEN"), Some("by container"));
    assert_eq!(get("NODE"), Some("node-a"));
    assert_eq!(get("UID"), Some("u-1"));
    assert_eq!(get("APP"), Some("web"));
    assert_eq!(get("NOTE"), Some("hi"));
    assert_eq!(get("MISSING"), Some(""));
    assert_eq!(get("IP"), Some("127.1.0.7"));
    assert_eq!(get("HOST"), Some("127.0.0.1"));
    assert_eq!(get("NS"), Some("shop"));
    assert_eq!(
        get("HOME"),
        None,
        "only what the host passes on is inherited"
    );
}

#[test]
fn unsupported_sources_name_the_variable() {
    let pod = pod();
    let source = EnvSource {
        pod: &pod,
        pod_ip: "127.1.0.7".parse::<IpAddr>().expect("ip"),
        host_ip: "127.0.0.1".parse::<IpAddr>().expect("ip"),
        node_name: "n",
        service_env: &[],
        host_env: &[],
    };
    let secret = vars(json!([
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    ]));
    let err = container_env(&source, &secret).expect_err("secrets are not supported");
    assert!(
        err.contains("TOKEN") && err.contains("secretKeyRef"),
        "{err}"
    );
    let field = vars(json!([
        {"name": "WHAT", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}
    ]));
    let err = container_env(&source, &field).expect_err("an unknown fieldRef");
    assert!(err.contains("WHAT") && err.contains("spec.nope"), "{err}");
}
