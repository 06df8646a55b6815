use std::ffi::OsString;
use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::json;

use super::{echo_argv, is_echo_image, plan};
use crate::kubelet::env::EnvSource;

fn argv(items: &[&str]) -> Vec<OsString> {
    items.iter().map(OsString::from).collect()
}

fn source(pod: &Pod) -> EnvSource<'_> {
    EnvSource {
        pod,
        pod_ip: "127.1.0.7".parse::<IpAddr>().expect("ip"),
        host_ip: "127.0.0.1".parse::<IpAddr>().expect("ip"),
        node_name: "n",
        service_env: &[],
        host_env: &[],
    }
}

fn pod_with(container: serde_json::Value) -> (Pod, Container) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"containers": [container]}
    }))
    .expect("a pod");
    let container = pod.spec.as_ref().expect("spec").containers[0].clone();
    (pod, container)
}

#[test]
fn echo_argv_listens_on_the_pod_ip() {
    let ip: IpAddr = "127.1.0.7".parse().expect("ip");
    assert_eq!(
        echo_argv(Path::new("/bin/ferry"), ip, 8080, "web", 42),
        argv(&[
            "/bin/ferry",
            "echo",
            "--listen",
            "127.1.0.7:8080",
            "--name",
            "web",
            "--parent-pid",
            "42"
        ])
    );
    let v6: IpAddr = "::1".parse().expect("ip");
    assert_eq!(
        echo_argv(Path::new("ferry"), v6, 80, "x", 1)[3],
        OsString::from("[::1]:80")
    );
}

#[test]
fn echo_in_a_network_namespace_of_its_own_listens_on_every_address() {
    let (pod, c) =
        pod_with(json!({"name": "web", "image": "ferry/echo", "ports": [{"containerPort": 9000}]}));
    let any: IpAddr = "0.0.0.0".parse().expect("ip");
    let planned = plan(&source(&pod), &c, Path::new("/bin/ferry"), any).expect("a plan");
    assert_eq!(planned.argv[3], "0.0.0.0:9000", "{:?}", planned.argv);
    // The Pod's IP is still its POD_IP.
    assert_eq!(planned.env.get("POD_IP"), Some("127.1.0.7"));
    assert!(planned.enter.is_empty(), "the kubelet sets where it runs");
}

#[test]
fn echo_image_runs_the_builtin_on_its_first_port() {
    for image in ["ferry/echo", "ferry/echo:latest", "ferry/echo@sha256:abc"] {
        assert!(is_echo_image(image), "{image}");
    }
    for image in ["ferry/echoes", "nginx:1.27", "", "docker.io/ferry/echo2"] {
        assert!(!is_echo_image(image), "{image}");
    }
    let (pod, c) = pod_with(json!({
        "name": "web", "image": "ferry/echo:latest",
        "ports": [{"containerPort": 9000, "name": "http"}, {"containerPort": 9001}]
    }));
    let planned = plan(
        &source(&pod),
        &c,
        Path::new("/bin/ferry"),
        source(&pod).pod_ip,
    )
    .expect("a plan");
    assert_eq!(
        planned.argv,
        argv(&[
            "/bin/ferry",
            "echo",
            "--listen",
            "127.1.0.7:9000",
            "--name",
            "web",
            "--parent-pid",
            &std::process::id().to_string()
        ])
    );
    let (pod, c) = pod_with(json!({"name": "api", "image": "ferry/echo"}));
    let planned = plan(&source(&pod), &c, Path::new("ferry"), source(&pod).pod_ip).expect("a plan");
    assert_eq!(planned.argv[3], OsString::from("127.1.0.7:8080"));
}

#[test]
fn a_command_runs_with_expanded_args() {
    let (pod, c) = pod_with(json!({
        "name": "c", "image": "busybox", "command": ["sh", "-c"],
        "args": ["echo $(GREETING) $$(GREETING) $(NOPE) $POD_IP"],
        "env": [{"name": "GREETING", "value": "hi"}],
        "workingDir": "/tmp"
    }));
    let planned = plan(&source(&pod), &c, Path::new("ferry"), source(&pod).pod_ip).expect("a plan");
    assert_eq!(
        planned.argv,
        argv(&["sh", "-c", "echo hi $(GREETING) $(NOPE) $POD_IP"])
    );
    assert_eq!(planned.working_dir.as_deref(), Some("/tmp"));
}

#[test]
fn other_images_without_a_command_never_pull() {
    let (pod, c) = pod_with(json!({"name": "web", "image": "nginx:1.27"}));
    let waiting = plan(&source(&pod), &c, Path::new("ferry"), source(&pod).pod_ip)
        .expect_err("no image runs");
    assert_eq!(waiting.reason, "ErrImageNeverPull");
    assert_eq!(
        waiting.message,
        "ferry runs no images: image \"nginx:1.27\" needs a command (only ferry/echo runs without one)"
    );
    let (pod, c) = pod_with(json!({
        "name": "web", "image": "x", "command": ["true"],
        "env": [{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "m", "key": "k"}}}]
    }));
    let waiting = plan(&source(&pod), &c, Path::new("ferry"), source(&pod).pod_ip)
        .expect_err("a config error");
    assert_eq!(waiting.reason, "CreateContainerConfigError");
    assert!(waiting.message.contains("\"K\""), "{}", waiting.message);
}
