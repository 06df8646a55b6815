//! The mesh's injection through the live cluster: a Deployment in a meshed Namespace gets
//! Pods with the sidecar while its template stays as written; without a mesh that can serve
//! (loopback mode) the Pods run as written and say why. The netns test runs a stand-in
//! sidecar (python3 answering `/ready` on the admin port once it has read its token) in real
//! Pod namespaces, so it needs root.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ferry_model::mesh::SIDECAR_CONTAINER;
use k8s_openapi::api::core::v1::Pod;

use super::*;
use crate::inject::{Mesh, PodClaims};
use crate::kubelet;
use ferry_objects::manifest;

fn reading(yaml: &str) -> Reading {
    let loaded = manifest::parse("t.yaml", yaml.as_bytes());
    assert!(loaded.problems.is_empty(), "{:#?}", loaded.problems);
    Reading {
        manifests: loaded.manifests.into_iter().map(Arc::new).collect(),
        problems: Vec::new(),
    }
}

const MESHED: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, annotations: {ferry.dev/inject: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: app, image: busybox, command: [sleep, "1000"]}]
"#;

fn live_pods(r: &Reading) -> Vec<Pod> {
    r.manifests
        .iter()
        .filter_map(|m| match &m.object {
            Object::Pod(p) => Some((**p).clone()),
            _ => None,
        })
        .collect()
}

fn init_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .map(|c| c.name.clone())
        .collect()
}

fn templates_have_no_sidecar(c: &LocalCluster) {
    for d in c.deployments() {
        let t = d.spec.and_then(|s| s.template.spec).expect("a template");
        assert!(
            t.init_containers.is_none(),
            "the Deployment's template is untouched"
        );
    }
    for rs in c.replica_sets() {
        let t = rs.spec.and_then(|s| s.template).and_then(|t| t.spec);
        assert!(t.expect("a template").init_containers.is_none());
    }
}

#[tokio::test]
async fn without_the_netns_network_a_meshed_namespace_runs_its_pods_as_written_and_says_why() {
    let config = Config {
        pod_cidr: "127.251.0.0/24".parse().unwrap(),
        service_cidr: "127.251.1.0/24".parse().unwrap(),
        termination_delay: Duration::ZERO,
        ..Config::default()
    };
    let store = Arc::new(crate::apiserver::Store::new());
    let kubelet = kubelet::Kubelet::new(kubelet::Config {
        mesh: Some(Mesh {
            program: PathBuf::from("/bin/false"),
            args: Vec::new(),
            run_dir: std::env::temp_dir(),
            mint_token: Arc::new(|_: &PodClaims| String::new()),
        }),
        ..kubelet::Config::default()
    });
    let recorder = crate::events::Recorder::new(Some(store.clone()), "ferry");
    kubelet.record_events_to(recorder.clone());
    let mut c = LocalCluster::new(config, kubelet);
    let r = c.reconcile(&reading(MESHED));
    let pods = live_pods(&r);
    assert_eq!(pods.len(), 1);
    assert!(init_names(&pods[0]).is_empty(), "no sidecar without netns");
    let events = recorder.events(jiff::Timestamp::now());
    let why = events
        .iter()
        .find(|e| e["reason"] == "SidecarNotInjected")
        .expect("a warning on the Pod");
    assert_eq!(why["type"], "Warning");
    assert_eq!(why["involvedObject"]["kind"], "Pod");
    assert!(
        why["message"]
            .as_str()
            .is_some_and(|m| m.contains("netns pod network")),
        "{why}"
    );
    templates_have_no_sidecar(&c);
    c.kubelet().shutdown(Duration::from_secs(1)).await;
}

/// Answers `/ready` with 200 on the admin port once the token file holds a token.
const STAND_IN: &str = r#"
import http.server, sys
token = open(sys.argv[sys.argv.index("--token-file") + 1]).read()
class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if token and self.path == "/ready" else 503)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("0.0.0.0", 4191), Ready).serve_forever()
"#;

#[tokio::test]
async fn a_meshed_pod_gets_its_sidecar_token_and_interception_before_the_app_starts() {
    let test = "a_meshed_pod_gets_its_sidecar_token_and_interception_before_the_app_starts";
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped {test}: Pod network namespaces need root");
        return;
    }
    if Command::new("python3").arg("-V").output().is_err() {
        eprintln!("skipped {test}: the stand-in sidecar needs python3");
        return;
    }
    let (pod_cidr, service_cidr) = (
        "10.217.0.0/24".parse().unwrap(),
        "10.217.1.0/24".parse().unwrap(),
    );
    let node = match crate::network::Node::setup(pod_cidr, service_cidr) {
        Ok(node) => Arc::new(node),
        Err(e) => {
            eprintln!("skipped {test}: no pod network here: {e}");
            return;
        }
    };
    let run_dir = tempfile::tempdir().expect("a temporary directory");
    let kubelet = kubelet::Kubelet::new(kubelet::Config {
        network: Some(node.clone()),
        mesh: Some(Mesh {
            program: PathBuf::from("python3"),
            args: vec!["-c".into(), STAND_IN.into()],
            run_dir: run_dir.path().to_owned(),
            mint_token: Arc::new(|c: &PodClaims| {
                format!("{}/{}/{}", c.namespace, c.pod, c.service_account)
            }),
        }),
        ..kubelet::Config::default()
    });
    let config = Config {
        pod_cidr,
        service_cidr,
        termination_delay: Duration::ZERO,
        ..Config::default()
    };
    let mut c = LocalCluster::new(config, kubelet);
    let r = c.reconcile(&reading(MESHED));
    let pod = live_pods(&r).pop().expect("a Pod");
    assert_eq!(init_names(&pod), [SIDECAR_CONTAINER]);
    templates_have_no_sidecar(&c);
    let name = pod.metadata.name.clone().expect("a name");
    let uid = pod.metadata.uid.clone().expect("a uid");

    // Ready: the sidecar started (its startupProbe passed through the interception's
    // exemption for the admin port), then the app.
    let status = ferry_testing::eventually(Duration::from_secs(30), "the meshed Pod Ready", || {
        let status = c.kubelet().status("shop", &name).filter(|s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        std::future::ready(status)
    })
    .await;
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .find(|s| s.name == SIDECAR_CONTAINER)
        .expect("the sidecar's status");
    assert_eq!(sidecar.started, Some(true));
    let sidecar_started = sidecar
        .state
        .as_ref()
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.clone())
        .expect("the sidecar runs");
    let app_started = status
        .container_statuses
        .iter()
        .flatten()
        .find_map(|s| s.state.as_ref()?.running.as_ref()?.started_at.clone())
        .expect("the app runs");
    assert!(sidecar_started.0 <= app_started.0);

    // The token, readable by its owner only.
    let token = c.kubelet().mesh().expect("a mesh").token_file(&uid);
    assert_eq!(
        std::fs::read_to_string(&token).expect("the token file"),
        "shop/".to_owned() + &name + "/default"
    );
    let mode = std::fs::metadata(&token)
        .expect("its metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The interception table in the Pod's namespace.
    let pod_ip: std::net::Ipv4Addr = status.pod_ip.as_deref().expect("an IP").parse().unwrap();
    let netns = node.names().netns(pod_ip);
    let listed = Command::new("ip")
        .args([
            "netns",
            "exec",
            &netns,
            "nft",
            "list",
            "table",
            "inet",
            "ferry_mesh",
        ])
        .output()
        .expect("nft runs");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("redirect to :4143") && listed.contains("redirect to :4140"),
        "{listed}"
    );
    // With the policy route that brings the app's replies to the client's address back.
    let rules = Command::new("ip")
        .args(["-n", &netns, "rule"])
        .output()
        .expect("ip runs");
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(rules.contains("fwmark 0x666573 lookup 4143"), "{rules}");

    // Deleted: the token goes with the Pod.
    let _ = c.reconcile(&reading(""));
    c.stop_terminating();
    ferry_testing::eventually(Duration::from_secs(30), "the Pod gone", || {
        std::future::ready((!c.kubelet().is_running("shop", &name)).then_some(()))
    })
    .await;
    assert!(!token.exists(), "the token is removed with the Pod");
    c.kubelet().shutdown(Duration::from_secs(1)).await;
}
