use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
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

fn cluster() -> LocalCluster {
    let config = Config {
        pod_cidr: "127.250.0.0/24".parse().unwrap(),
        service_cidr: "127.250.1.0/24".parse().unwrap(),
        termination_delay: Duration::ZERO,
        ..Config::default()
    };
    LocalCluster::new(config, kubelet::Kubelet::new(kubelet::Config::default()))
}

fn service(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: ns}}\nspec: {spec}\n"
    )
}

fn services(r: &Reading) -> BTreeMap<String, Service> {
    r.manifests
        .iter()
        .filter_map(|m| match &m.object {
            Object::Service(s) => Some((m.name().to_owned(), (**s).clone())),
            _ => None,
        })
        .collect()
}

fn ip_of(s: &Service) -> Option<String> {
    s.spec.as_ref()?.cluster_ip.clone()
}

fn node_ports(s: &Service) -> Vec<Option<i32>> {
    let ports = s.spec.as_ref().and_then(|s| s.ports.as_ref());
    ports.into_iter().flatten().map(|p| p.node_port).collect()
}

/// A port number on two protocols (kube-dns's 53/UDP and 53/TCP) gets one node port, or keeps
/// the one it names for both, as the API server allocates them; changing the Service hands
/// back only what it no longer uses.
#[tokio::test]
async fn one_port_number_on_two_protocols_shares_its_node_port() {
    let mut c = cluster();
    let dns = |np: &str| {
        service(
            "dns",
            &format!(
                "{{type: NodePort, ports: [{{name: dns, port: 53, protocol: UDP{np}}}, {{name: dns-tcp, port: 53, protocol: TCP{np}}}, {{name: metrics, port: 9153}}]}}"
            ),
        )
    };
    let r = c.reconcile(&reading(&dns("")));
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert_eq!(
        node_ports(&services(&r)["dns"]),
        vec![Some(30000), Some(30000), Some(30001)]
    );

    // Named for both: accepted, and the ports it held before are released.
    let r = c.reconcile(&reading(&dns(", nodePort: 31053")));
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert_eq!(
        node_ports(&services(&r)["dns"]),
        vec![Some(31053), Some(31053), Some(30001)]
    );
    let other = c.reconcile(&reading(
        &(dns(", nodePort: 31053")
            + &service(
                "other",
                "{type: NodePort, ports: [{port: 80, nodePort: 30000}]}",
            )),
    ));
    assert!(
        other.problems.is_empty(),
        "30000 was handed back: {:#?}",
        other.problems
    );

    // Two port numbers may not share one.
    let clash = service(
        "clash",
        "{type: NodePort, ports: [{port: 80, nodePort: 31080}, {port: 81, nodePort: 31080, protocol: UDP}]}",
    );
    let r = c.admit(&reading(&clash));
    assert!(
        r.problems
            .iter()
            .any(|p| p.is_error() && p.to_string().contains("already allocated")),
        "{:#?}",
        r.problems
    );
}

#[tokio::test]
async fn services_get_cluster_ips_and_node_ports_that_stay_theirs() {
    let mut c = cluster();
    let yaml = [
        service("auto", "{ports: [{port: 80}]}"),
        service("named", "{clusterIP: 127.250.1.77, ports: [{port: 80}]}"),
        service("outside", "{clusterIP: 10.96.0.9, ports: [{port: 80}]}"),
        service(
            "node",
            "{type: NodePort, ports: [{port: 80}, {port: 81, nodePort: 31000}]}",
        ),
        service("headless", "{clusterIP: None, ports: [{port: 80}]}"),
        service(
            "external",
            "{type: ExternalName, externalName: example.com}",
        ),
    ]
    .concat();
    let first = c.reconcile(&reading(&yaml));
    let s = services(&first);
    assert_eq!(ip_of(&s["auto"]).as_deref(), Some("127.250.1.1"));
    assert_eq!(ip_of(&s["named"]).as_deref(), Some("127.250.1.77"));
    assert_eq!(ip_of(&s["outside"]).as_deref(), Some("10.96.0.9"));
    assert_eq!(ip_of(&s["headless"]).as_deref(), Some("None"));
    assert_eq!(ip_of(&s["external"]), None);
    let ports: Vec<Option<i32>> = s["node"]
        .spec
        .as_ref()
        .unwrap()
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.node_port)
        .collect();
    assert_eq!(ports, vec![Some(30000), Some(31000)]);
    let warnings: Vec<String> = first.problems.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("Service ns/outside")
            && warnings[0].contains("outside the service range 127.250.1.0/24"),
        "{warnings:?}"
    );

    // The same reading again: the same addresses.
    let again = services(&c.reconcile(&reading(&yaml)));
    for name in ["auto", "named", "node"] {
        assert_eq!(again[name], s[name], "{name}");
    }

    // A Service naming an address another holds is refused, as the API server refuses it;
    // `admit` says so without allocating anything.
    let clash = yaml.clone() + &service("clash", "{clusterIP: 127.250.1.1, ports: [{port: 80}]}");
    let admitted = c.admit(&reading(&clash));
    assert!(
        admitted
            .problems
            .iter()
            .any(|p| p.is_error() && p.to_string().contains("already allocated"))
    );
    let bad_named =
        yaml.clone() + &service("edge", "{clusterIP: 127.250.1.255, ports: [{port: 80}]}");
    let admitted = c.admit(&reading(&bad_named));
    assert!(
        admitted
            .problems
            .iter()
            .any(|p| p.to_string().contains("first and last address")),
        "{:#?}",
        admitted.problems
    );
    assert_eq!(
        services(&c.admit(&reading(&yaml)))["auto"],
        s["auto"],
        "admit changes nothing"
    );
    let r = c.reconcile(&reading(&clash));
    assert!(
        r.problems
            .iter()
            .any(|p| p.is_error() && p.to_string().contains("already allocated")),
        "{:#?}",
        r.problems
    );

    // A deleted Service frees its address; the next one does not get it at once.
    let without_auto = yaml.replace(&service("auto", "{ports: [{port: 80}]}"), "");
    c.reconcile(&reading(&without_auto));
    let newer = without_auto + &service("newer", "{ports: [{port: 80}]}");
    let s = services(&c.reconcile(&reading(&newer)));
    assert_ne!(ip_of(&s["newer"]).as_deref(), Some("127.250.1.1"));
}

const POD_ELSEWHERE: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: remote, namespace: ns}
spec:
  nodeName: node-7
  containers: [{name: c, image: x}]
status:
  podIP: 10.1.0.5
  conditions: [{type: Ready, status: "True"}]
"#;

const POD_HERE: &str = r#"
---
apiVersion: v1
kind: Pod
metadata: {name: local, namespace: ns}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: busybox, command: [sleep, "30"]}]
"#;

/// The Pods a reconciliation hands the translator.
fn pods(r: &Reading) -> Vec<&Pod> {
    r.manifests
        .iter()
        .filter_map(|m| match &m.object {
            Object::Pod(p) => Some(&**p),
            _ => None,
        })
        .collect()
}

fn pod<'a>(r: &'a Reading, name: &str) -> Option<&'a Pod> {
    pods(r)
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
}

#[tokio::test]
async fn pods_bound_elsewhere_pass_through_and_ours_run_and_stop() {
    let mut c = cluster();
    let yaml = POD_ELSEWHERE.to_owned() + POD_HERE;
    let r = c.reconcile(&reading(&yaml));
    let remote = pod(&r, "remote").unwrap();
    assert_eq!(
        remote.status.as_ref().unwrap().pod_ip.as_deref(),
        Some("10.1.0.5"),
        "as written"
    );
    assert!(!c.kubelet().is_running("ns", "remote"));
    let local = pod(&r, "local").unwrap();
    assert_eq!(
        local.spec.as_ref().unwrap().node_name.as_deref(),
        Some("ferry")
    );
    assert!(local.metadata.uid.is_some());
    assert!(c.kubelet().is_running("ns", "local"));
    let ip: IpAddr = c
        .kubelet()
        .status("ns", "local")
        .unwrap()
        .pod_ip
        .unwrap()
        .parse()
        .unwrap();
    assert!(c.config().pod_cidr.contains(ip), "{ip}");

    // Gone from the manifests: marked terminating first, stopped after the publish, then
    // forgotten once its process exited.
    let r = c.reconcile(&reading(POD_ELSEWHERE));
    assert!(
        pod(&r, "local")
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    assert!(
        c.kubelet().is_running("ns", "local"),
        "not signalled before the publish"
    );
    c.stop_terminating();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.reconcile(&reading(POD_ELSEWHERE));
        if pod(&r, "local").is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the Pod never went away");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(pod(&c.reconcile(&reading(POD_ELSEWHERE)), "remote").is_some());
}

const REPLICA_SET: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs, namespace: ns}
spec:
  replicas: 3
  selector: {matchLabels: {app: rs}}
  template:
    metadata: {labels: {app: rs}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: c, image: busybox, command: [sleep, "30"]}]
"#;

#[tokio::test]
async fn a_declared_replica_set_keeps_its_pods_and_takes_them_when_deleted() {
    let mut c = cluster();
    let r = c.reconcile(&reading(REPLICA_SET));
    let owned = pods(&r);
    assert_eq!(owned.len(), 3);
    for p in &owned {
        let name = p.metadata.name.as_deref().unwrap();
        assert!(name.starts_with("rs-") && name.len() == 8, "{name}");
        assert_eq!(p.metadata.owner_references.as_ref().unwrap()[0].name, "rs");
        assert_eq!(p.metadata.labels.as_ref().unwrap()["app"], "rs");
    }
    let scaled = REPLICA_SET.replace("replicas: 3", "replicas: 1");
    let r = c.reconcile(&reading(&scaled));
    let terminating = r
        .manifests
        .iter()
        .filter(|m| matches!(&m.object, Object::Pod(p) if p.metadata.deletion_timestamp.is_some()))
        .count();
    assert_eq!(terminating, 2);
    let r = c.reconcile(&reading(""));
    assert!(
        r.manifests.iter().all(|m| match &m.object {
            Object::Pod(p) => p.metadata.deletion_timestamp.is_some(),
            Object::ReplicaSet(_) => false,
            _ => true,
        }),
        "the ReplicaSet is gone and its Pods terminate"
    );
    c.stop_terminating();
    c.kubelet().shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn scale_and_undo_act_on_the_live_deployment_until_its_manifest_changes() {
    let deployment = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: ns}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: c, image: busybox, command: [sleep, "30"]}]
"#;
    let mut c = cluster();
    c.reconcile(&reading(deployment));
    assert_eq!(
        c.scale("ns", "web", -1),
        Err(ApiError::Invalid(
            "--replicas -1: must be greater than or equal to 0".into()
        ))
    );
    assert_eq!(
        c.scale("ns", "nope", 1),
        Err(ApiError::NotFound("deployment ns/nope".into()))
    );
    c.scale("ns", "web", 2).unwrap();
    c.reconcile(&reading(deployment));
    assert_eq!(
        c.deployments()[0].spec.as_ref().unwrap().replicas,
        Some(2),
        "the manifest did not change"
    );
    assert_eq!(c.replica_sets()[0].spec.as_ref().unwrap().replicas, Some(2));
    assert!(
        matches!(c.undo("ns", "web", None), Err(ApiError::Invalid(_))),
        "one revision only"
    );

    let v2 = deployment.replace("\"30\"", "\"31\"");
    c.reconcile(&reading(&v2));
    assert_eq!(
        c.deployments()[0].spec.as_ref().unwrap().replicas,
        Some(1),
        "the manifest changed: it wins"
    );
    assert_eq!(
        c.history("ns", "web")
            .unwrap()
            .iter()
            .map(|h| h.0)
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(c.undo("ns", "web", None), Ok(1));
    c.reconcile(&reading(&v2));
    let history: Vec<u64> = c
        .history("ns", "web")
        .unwrap()
        .iter()
        .map(|h| h.0)
        .collect();
    assert_eq!(
        history,
        vec![2, 3],
        "the old template comes back as a new revision"
    );
    assert_eq!(c.find_namespace("deployment", None, "web"), Ok("ns".into()));
    c.stop_terminating();
    c.kubelet().shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn pods_past_max_pods_wait_pending_as_unschedulable() {
    let mut c = LocalCluster::new(
        Config {
            pod_cidr: "127.250.2.0/24".parse().unwrap(),
            service_cidr: "127.250.3.0/24".parse().unwrap(),
            max_pods: 2,
            ..Config::default()
        },
        kubelet::Kubelet::new(kubelet::Config::default()),
    );
    let r = c.reconcile(&reading(REPLICA_SET));
    let pods = pods(&r);
    let waiting: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.type_ == "PodScheduled" && c.reason.as_deref() == Some("Unschedulable")
                    })
                })
        })
        .collect();
    assert_eq!((pods.len(), waiting.len()), (3, 1));
    assert!(waiting[0].status.as_ref().unwrap().pod_ip.is_none());
    assert!(
        r.problems.iter().any(|p| p
            .to_string()
            .contains("1 Pod(s) wait: this node runs at most 2 Pods")),
        "{:#?}",
        r.problems
    );
    c.kubelet().shutdown(Duration::from_secs(1)).await;
}

#[test]
fn file_pods_get_their_service_account_defaulted_as_api_pods_do() {
    let mut c = cluster();
    let yaml = POD_ELSEWHERE.to_owned()
        + "---\n"
        + &POD_ELSEWHERE
            .replace("name: remote", "name: old-style")
            .replace(
                "nodeName: node-7",
                "nodeName: node-7\n  serviceAccount: default",
            );
    let declared = reading(&yaml);
    let r = c.reconcile(&declared);
    for name in ["remote", "old-style"] {
        let spec = pod(&r, name).unwrap().spec.as_ref().unwrap();
        assert_eq!(
            spec.service_account_name.as_deref(),
            Some("default"),
            "{name}"
        );
        assert_eq!(spec.service_account.as_deref(), Some("default"), "{name}");
    }
    // The manifest as written is not changed, and the next round sees the same Pod.
    let written = pod(&declared, "remote").unwrap().spec.as_ref().unwrap();
    assert_eq!(written.service_account_name, None);
    let again = c.reconcile(&reading(&yaml));
    assert_eq!(pod(&again, "remote"), pod(&r, "remote"));
}
