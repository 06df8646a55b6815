//! Services and cluster DNS for Pods in netns mode, end to end: a Pod resolves `echo`,
//! `echo.<ns>` and `echo.<ns>.svc.cluster.local` through the kube-dns Service and its search
//! path and reaches the Service by name; a cluster IP balances over the ready Pods in the
//! kernel (ferry's nftables table) and stops sending to a Pod that turns unready; a Pod
//! reaches itself through its Service (hairpin); NodePorts answer on the node's addresses;
//! `sessionAffinity: ClientIP` keeps a client on one Pod; a Service without endpoints refuses;
//! a terminating Pod still serves while no Pod is ready (kube-proxy's fallback).
//!
//! Root (CAP_NET_ADMIN), `ip` and `nft` are needed; without them each test says why it is
//! skipped. Each test has its own pod range 10.201.N.0/24 and service range 10.211.N.0/24.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Output};

use ferry_orchestrator::network::Names;

use crate::local::one_request;
use crate::pod_network::{
    assert_nothing_left, field, netns_or_skip, pods, ready, start, wait_ready, write,
};
use crate::{DEADLINE, eventually};

/// Runs `sh -c script` in the Pod (through `ferry exec`, in its network namespace).
fn exec(admin: SocketAddr, pod: &str, script: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["exec", "-n", "shop", pod, "--admin", &admin.to_string()])
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether a program is on this machine's `PATH`.
pub(crate) fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_resolves_and_reaches_a_service_by_name_through_cluster_dns() {
    if !netns_or_skip("a_pod_resolves_and_reaches_a_service_by_name_through_cluster_dns") {
        return;
    }
    let ferry = env!("CARGO_BIN_EXE_ferry");
    let yaml = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: echo
          image: ferry/echo
          ports: [{name: http, containerPort: 8080}]
          readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: shop}
spec:
  clusterIP: 10.211.20.20
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: sh, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: node-dns, namespace: shop}
spec:
  dnsPolicy: Default
  terminationGracePeriodSeconds: 1
  containers: [{name: sh, image: busybox, command: [sleep, "3600"]}]
"#;
    let cidr = "10.201.20.0/24";
    let names = Names::of(cidr.parse().unwrap());
    let (_dir, running) = start(yaml, cidr).await;
    wait_ready(running.admin, 4, "four ready Pods").await;
    let admin = running.admin;

    // The kubelet's ClusterFirst resolv.conf: the kube-dns Service (.10 of the range, made
    // by ferry as the manifests have none), the namespace's search path, ndots:5.
    assert_eq!(
        stdout(&exec(admin, "client", "cat /etc/resolv.conf")),
        "nameserver 10.211.20.10\n\
         search shop.svc.cluster.local svc.cluster.local cluster.local\n\
         options ndots:5\n"
    );
    // dnsPolicy: Default keeps the node's.
    assert_eq!(
        stdout(&exec(admin, "node-dns", "cat /etc/resolv.conf")),
        std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
    );
    for name in ["echo", "echo.shop", "echo.shop.svc.cluster.local"] {
        let found = stdout(&exec(admin, "client", &format!("getent hosts {name}")));
        assert_eq!(
            found.split_whitespace().next(),
            Some("10.211.20.20"),
            "{name}: {found}"
        );
    }
    // Reached by name, through the cluster IP's DNAT in the kernel.
    let load = exec(
        admin,
        "client",
        &format!("{ferry} load http://echo/ --requests 1 --timeout 2s"),
    );
    assert!(load.status.success(), "{load:?}");
    if installed("curl") {
        let answer = stdout(&exec(admin, "client", "curl -sf -m 5 http://echo.shop/"));
        assert!(answer.contains("\"pod\":\"echo-"), "{answer}");
    } else {
        eprintln!("curl is not installed: the request by name is ferry load's only");
    }
    // DNS over TCP reaches the cluster DNS Service too.
    if installed("dig") {
        let tcp = stdout(&exec(
            admin,
            "client",
            "dig +tcp +short +time=2 +tries=1 echo.shop.svc.cluster.local",
        ));
        assert_eq!(tcp.trim(), "10.211.20.20");
    } else {
        eprintln!("dig is not installed: DNS over TCP is not tried from a Pod");
    }
    running.stop().await;
    assert_nothing_left(&names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_ip_balances_over_ready_pods_and_stops_sending_to_one_turned_unready() {
    if !netns_or_skip(
        "a_cluster_ip_balances_over_ready_pods_and_stops_sending_to_one_turned_unready",
    ) {
        return;
    }
    let ferry = env!("CARGO_BIN_EXE_ferry");
    let flags = tempfile::TempDir::new().unwrap();
    let yaml = format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: echo, namespace: shop}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: echo}}}}
  template:
    metadata: {{labels: {{app: echo}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: echo
          image: ferry/echo
          ports: [{{name: http, containerPort: 8080}}]
          env: [{{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}]
          readinessProbe:
            exec: {{command: [sh, -c, 'test ! -e {}/$POD_NAME']}}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: shop}}
spec:
  clusterIP: 10.211.21.20
  selector: {{app: echo}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"#,
        flags.path().display()
    );
    let cidr = "10.201.21.0/24";
    let names = Names::of(cidr.parse().unwrap());
    let (_dir, running) = start(&yaml, cidr).await;
    let all = wait_ready(running.admin, 2, "two ready Pods").await;
    let cluster_ip: SocketAddr = "10.211.21.20:80".parse().unwrap();

    // From the node: each new connection picks a ready Pod at random; both answer.
    let seen = std::sync::Mutex::new(BTreeSet::new());
    let seen = &seen;
    eventually(
        DEADLINE,
        "both Pods answer on the cluster IP",
        || async move {
            let answer = one_request(cluster_ip, "echo").await;
            let mut seen = seen.lock().unwrap();
            if let Ok((200, pod)) = answer {
                seen.insert(pod);
            }
            (seen.len() == 2).then_some(())
        },
    )
    .await;

    // A Pod through its own Service: every connection is answered, those DNATed back to the
    // Pod itself too (hairpin, masqueraded inside the node).
    let first = field(&all[0], "/metadata/name").to_owned();
    let hairpin = exec(
        running.admin,
        &first,
        &format!(
            "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do {ferry} load http://10.211.21.20/ --requests 1 --timeout 2s >/dev/null || exit 1; done"
        ),
    );
    assert!(hairpin.status.success(), "{hairpin:?}");

    // The first Pod turns unready: once the API says so, the kernel sends it nothing new.
    std::fs::write(flags.path().join(&first), "").unwrap();
    let admin = running.admin;
    let first_ref = &first;
    eventually(DEADLINE, "the first Pod is unready", || async move {
        pods(admin)
            .await
            .iter()
            .any(|p| field(p, "/metadata/name") == first_ref && !ready(p))
            .then_some(())
    })
    .await;
    let second = field(&all[1], "/metadata/name").to_owned();
    for _ in 0..20 {
        let (status, pod) = one_request(cluster_ip, "echo").await.unwrap();
        assert_eq!((status, pod.as_str()), (200, second.as_str()));
    }
    running.stop().await;
    assert_nothing_left(&names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ports_answer_on_the_nodes_addresses_and_client_ip_affinity_sticks() {
    if !netns_or_skip("node_ports_answer_on_the_nodes_addresses_and_client_ip_affinity_sticks") {
        return;
    }
    let yaml = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: echo
          image: ferry/echo
          ports: [{name: http, containerPort: 8080}]
          readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: shop}
spec:
  type: NodePort
  clusterIP: 10.211.22.20
  selector: {app: echo}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 31222}]
---
apiVersion: v1
kind: Service
metadata: {name: idle, namespace: shop}
spec:
  clusterIP: 10.211.22.21
  selector: {app: nobody}
  ports: [{name: http, port: 80}]
"#;
    let cidr = "10.201.22.0/24";
    let names = Names::of(cidr.parse().unwrap());
    let (_dir, running) = start(yaml, cidr).await;
    wait_ready(running.admin, 3, "three ready Pods").await;

    // On the node's loopback and on its address on the pod network.
    for node in ["127.0.0.1:31222", "10.201.22.1:31222"] {
        let (status, pod) = one_request(node.parse().unwrap(), "echo").await.unwrap();
        assert_eq!(status, 200, "{node}");
        assert!(pod.starts_with("echo-"), "{node}: {pod}");
    }
    // ClientIP affinity: one client (the node, from its gateway address) lands on one Pod
    // every time.
    let mut seen = BTreeSet::new();
    for _ in 0..12 {
        let (_, pod) = one_request("10.211.22.20:80".parse().unwrap(), "echo")
            .await
            .unwrap();
        seen.insert(pod);
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    // A Service without endpoints refuses at once rather than leaving the client hanging.
    let refused = one_request("10.211.22.21:80".parse().unwrap(), "idle")
        .await
        .unwrap_err();
    assert!(refused.contains("refused"), "{refused}");
    running.stop().await;
    assert_nothing_left(&names);
}

/// kube-proxy's fallback: a Service whose only Pod is terminating (removed from the manifests,
/// still serving through its preStop sleep) keeps sending to it rather than refusing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_pod_still_serves_while_no_pod_is_ready() {
    if !netns_or_skip("a_terminating_pod_still_serves_while_no_pod_is_ready") {
        return;
    }
    let service = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.211.23.20
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"#;
    let pod = r#"
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 700
  containers:
    - name: web
      image: ferry/echo
      ports: [{name: http, containerPort: 8080}]
      readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
      lifecycle: {preStop: {sleep: {seconds: 600}}}
"#;
    let cidr = "10.201.23.0/24";
    let names = Names::of(cidr.parse().unwrap());
    let (dir, running) = start(&format!("{service}{pod}"), cidr).await;
    wait_ready(running.admin, 1, "the Pod ready").await;
    let cluster_ip: SocketAddr = "10.211.23.20:80".parse().unwrap();
    assert_eq!(
        one_request(cluster_ip, "web").await.unwrap(),
        (200, "web".to_owned())
    );
    // Removed from the manifests: terminating, serving through its preStop sleep.
    write(dir.path(), service);
    let admin = running.admin;
    eventually(DEADLINE, "the Pod terminating", || async move {
        pods(admin)
            .await
            .iter()
            .any(|p| p.pointer("/metadata/deletionTimestamp").is_some())
            .then_some(())
    })
    .await;
    for _ in 0..5 {
        assert_eq!(
            one_request(cluster_ip, "web").await.unwrap(),
            (200, "web".to_owned())
        );
    }
    running.stop().await;
    assert_nothing_left(&names);
}
