//! `ferry up` on the kube-system objects every cluster has (issue 12): kube-dns with one port
//! number on UDP and TCP, default/kubernetes, headless and dual-stack Services, checked with
//! hickory and with dig; and an Ingress to a port number UDP and TCP share.

use std::fs;
use std::net::SocketAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::{ask, data, question, running, tcp};
use crate::get;

/// The kube-system objects of a kubeadm cluster, as `kubectl get -o yaml` shows them: the
/// kube-dns Service (53/UDP `dns`, 53/TCP `dns-tcp`, 9153/TCP `metrics`) and its EndpointSlice,
/// and default/kubernetes with its EndpointSlice.
const KUBE_SYSTEM: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/cluster-service: "true", kubernetes.io/name: CoreDNS}
  annotations: {prometheus.io/port: "9153", prometheus.io/scrape: "true"}
spec:
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  internalTrafficPolicy: Cluster
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
  - {name: metrics, port: 9153, protocol: TCP, targetPort: 9153}
  selector: {k8s-app: kube-dns}
  sessionAffinity: None
  type: ClusterIP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-2vbwl
  namespace: kube-system
  labels:
    k8s-app: kube-dns
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
addressType: IPv4
endpoints:
- addresses: [10.244.0.2]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: control-plane
  targetRef: {kind: Pod, name: coredns-668d6bf9bc-8xq7n, namespace: kube-system}
- addresses: [10.244.0.3]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: control-plane
  targetRef: {kind: Pod, name: coredns-668d6bf9bc-tzw5m, namespace: kube-system}
ports:
- {name: dns-tcp, port: 53, protocol: TCP}
- {name: dns, port: 53, protocol: UDP}
- {name: metrics, port: 9153, protocol: TCP}
---
apiVersion: v1
kind: Service
metadata:
  name: kubernetes
  namespace: default
  labels: {component: apiserver, provider: kubernetes}
spec:
  clusterIP: 10.96.0.1
  clusterIPs: [10.96.0.1]
  internalTrafficPolicy: Cluster
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
  ports:
  - {name: https, port: 443, protocol: TCP, targetPort: 6443}
  sessionAffinity: None
  type: ClusterIP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes
  namespace: default
  labels: {kubernetes.io/service-name: kubernetes, endpointslice.kubernetes.io/managed-by: endpointslicemirroring-controller.k8s.io}
addressType: IPv4
endpoints:
- addresses: [172.18.0.2]
  conditions: {ready: true}
ports:
- {name: https, port: 6443, protocol: TCP}
"#;

/// Headless Services for spec 2.4: one whose only endpoint is not ready, and one endpoint in an
/// IPv4 and an IPv6 EndpointSlice under one hostname.
const HEADLESS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: quiet}
---
apiVersion: v1
kind: Service
metadata: {name: starting, namespace: default}
spec:
  clusterIP: None
  ports: [{name: pg, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: starting-1, namespace: default, labels: {kubernetes.io/service-name: starting}}
addressType: IPv4
endpoints: [{addresses: [10.244.1.9], conditions: {ready: false}}]
ports: [{name: pg, port: 5432, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: None
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  ports: [{name: pg, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-v4, namespace: default, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
endpoints: [{addresses: [10.244.1.5], hostname: db-0}]
ports: [{name: pg, port: 5432, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-v6, namespace: default, labels: {kubernetes.io/service-name: db}}
addressType: IPv6
endpoints: [{addresses: ["fd00:10:244:1::5"], hostname: db-0}]
ports: [{name: pg, port: 5432, protocol: TCP}]
"#;

/// `dig +short` against ferry, or None (with the reason printed) when dig is not installed.
fn dig(server: SocketAddr, args: &[&str]) -> Option<Vec<String>> {
    let out = match std::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args([
            "-p",
            &server.port().to_string(),
            "+short",
            "+time=5",
            "+tries=1",
        ])
        .args(args)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipping the dig checks: cannot run dig ({e}); install dnsutils");
            return None;
        }
    };
    assert!(out.status.success(), "dig {args:?}: {out:?}");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    Some(lines)
}

/// Issue 12's "done when": `ferry up` starts on the standard kube-system objects, and DNS
/// answers for them as the spec and CoreDNS do, over UDP and TCP, to hickory and to dig.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_up_serves_the_standard_kube_system_objects() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("kube-system.yaml"), KUBE_SYSTEM).unwrap();
    fs::write(dir.path().join("headless.yaml"), HEADLESS).unwrap();
    let up = running(dir.path()).await;
    let (_, status) = get(up.admin, "/status").await;
    assert!(!status.contains("invalid snapshot"), "{status}");
    let dns = up.dns;

    let r = ask(
        dns,
        "kube-dns.kube-system.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(data(&r), ["10.96.0.10"]);
    let r = ask(dns, "kubernetes.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(data(&r), ["10.96.0.1"]);
    let r = ask(
        dns,
        "_https._tcp.kubernetes.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(
        data(&r),
        ["0 100 443 kubernetes.default.svc.cluster.local."]
    );

    // Item 1: each protocol's SRV name answers its own port, over UDP and TCP.
    let svc = "kube-dns.kube-system.svc.cluster.local.";
    for (srv_name, want) in [
        (
            "_dns._udp",
            "0 100 53 kube-dns.kube-system.svc.cluster.local.",
        ),
        (
            "_dns-tcp._tcp",
            "0 100 53 kube-dns.kube-system.svc.cluster.local.",
        ),
        (
            "_metrics._tcp",
            "0 100 9153 kube-dns.kube-system.svc.cluster.local.",
        ),
    ] {
        let q = format!("{srv_name}.{svc}");
        assert_eq!(data(&ask(dns, &q, RecordType::SRV).await), [want], "{q}");
        let r = tcp(dns, &question(&q, RecordType::SRV, None)).await;
        assert_eq!(data(&r), [want], "{q} over TCP");
    }
    let wrong = ask(dns, &format!("_dns._tcp.{svc}"), RecordType::SRV).await;
    assert_eq!(wrong.metadata.response_code, ResponseCode::NXDomain);
    // SRV for the Service's own name: every port, 53 once (one record per target and port).
    let r = ask(dns, svc, RecordType::SRV).await;
    assert_eq!(
        data(&r),
        [
            "0 33 53 kube-dns.kube-system.svc.cluster.local.",
            "0 33 9153 kube-dns.kube-system.svc.cluster.local."
        ]
    );

    // The apex: NS ns.dns.<zone>, its address kube-dns's cluster IP.
    let r = ask(dns, "cluster.local.", RecordType::NS).await;
    assert_eq!(data(&r), ["ns.dns.cluster.local."]);
    assert_eq!(r.additionals[0].data.to_string(), "10.96.0.10");
    let r = ask(dns, "ns.dns.cluster.local.", RecordType::A).await;
    assert_eq!(data(&r), ["10.96.0.10"]);

    // Endpoints of a ClusterIP Service have names, and their PTRs point back.
    let r = ask(
        dns,
        "10-244-0-2.kube-dns.kube-system.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(data(&r), ["10.244.0.2"]);
    let host = "10-244-0-2.kube-dns.kube-system.svc.cluster.local.";
    let r = ask(dns, host, RecordType::SRV).await;
    assert_eq!(
        data(&r),
        [format!("0 33 53 {host}"), format!("0 33 9153 {host}")],
        "an endpoint's own name lists the ports it serves, as CoreDNS"
    );
    let r = ask(dns, "3.0.244.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(
        data(&r),
        ["10-244-0-3.kube-dns.kube-system.svc.cluster.local."]
    );

    // Namespaces: one that exists without Services is NODATA, others NXDOMAIN.
    for (q, rcode) in [
        ("kube-public.svc.cluster.local.", ResponseCode::NoError),
        ("quiet.svc.cluster.local.", ResponseCode::NoError),
        ("nowhere.svc.cluster.local.", ResponseCode::NXDomain),
        (
            "10-244-1-5.nowhere.pod.cluster.local.",
            ResponseCode::NXDomain,
        ),
    ] {
        let r = ask(dns, q, RecordType::A).await;
        assert_eq!(r.metadata.response_code, rcode, "{q}");
        assert!(r.answers.is_empty(), "{q}");
        assert_eq!(r.authorities[0].record_type(), RecordType::SOA, "{q}");
    }
    let r = ask(dns, "10-244-1-5.quiet.pod.cluster.local.", RecordType::A).await;
    assert_eq!(data(&r), ["10.244.1.5"]);

    // Spec 2.4.1: a headless Service without ready endpoints is NXDOMAIN, with the SOA.
    let r = ask(dns, "starting.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    // Spec 2.4.2: one SRV per (target, port); the target's A and AAAA as additionals.
    let r = ask(
        dns,
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(data(&r), ["0 50 5432 db-0.db.default.svc.cluster.local."]);
    let mut extra: Vec<String> = r
        .additionals
        .iter()
        .map(|a| format!("{} {}", a.name, a.data))
        .collect();
    extra.sort();
    assert_eq!(
        extra,
        [
            "db-0.db.default.svc.cluster.local. 10.244.1.5",
            "db-0.db.default.svc.cluster.local. fd00:10:244:1::5"
        ]
    );

    // The same through dig, over UDP and TCP.
    if let Some(srv) = dig(
        dns,
        &["SRV", "_dns._udp.kube-dns.kube-system.svc.cluster.local"],
    ) {
        assert_eq!(srv, ["0 100 53 kube-dns.kube-system.svc.cluster.local."]);
        let srv = dig(
            dns,
            &[
                "+tcp",
                "SRV",
                "_dns-tcp._tcp.kube-dns.kube-system.svc.cluster.local",
            ],
        );
        assert_eq!(
            srv.unwrap(),
            ["0 100 53 kube-dns.kube-system.svc.cluster.local."]
        );
        let a = dig(dns, &["A", "kubernetes.default.svc.cluster.local"]);
        assert_eq!(a.unwrap(), ["10.96.0.1"]);
        let ns = dig(dns, &["NS", "cluster.local"]);
        assert_eq!(ns.unwrap(), ["ns.dns.cluster.local."]);
        let ptr = dig(dns, &["-x", "10.244.0.2"]);
        assert_eq!(
            ptr.unwrap(),
            ["10-244-0-2.kube-dns.kube-system.svc.cluster.local."]
        );
    }
    up.stop().await;
}

/// Item 1 for the gateway: an Ingress backend's port number means the TCP port when a UDP port
/// shares it (HTTP is TCP), whichever the Service and its EndpointSlice list first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_to_a_port_number_shared_by_udp_and_tcp_reaches_the_tcp_endpoints() {
    let echo = ferry::echo::Echo::build(([127, 0, 0, 1], 0).into(), "tcp".into(), "tcp".into())
        .await
        .unwrap();
    let port = echo.local_addr().unwrap().port();
    let (stop, shutdown) = ferry_runtime::shutdown::channel();
    tokio::spawn(echo.run(shutdown));
    let yaml = format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: both, namespace: default}}
spec:
  ports:
  - {{name: http-udp, port: 80, protocol: UDP}}
  - {{name: http, port: 80, protocol: TCP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: both-1, namespace: default, labels: {{kubernetes.io/service-name: both}}}}
addressType: IPv4
endpoints: [{{addresses: [127.0.0.1]}}]
ports:
- {{name: http-udp, port: 9, protocol: UDP}}
- {{name: http, port: {port}, protocol: TCP}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: both, namespace: default}}
spec:
  rules:
  - http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service: {{name: both, port: {{number: 80}}}}
"#
    );
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("both.yaml"), yaml).unwrap();
    let up = running(dir.path()).await;
    let (status, body) = get(up.http, "/").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["name"], "tcp", "{body}");
    up.stop().await;
    stop.trigger();
}
