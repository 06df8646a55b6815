//! Services → services and clusters (`translate::services`).

use ferry_model::{ClusterKey, Protocol};

use super::*;

#[test]
fn services_become_clusters_with_their_endpoints() {
    let t = translate(&store(SERVICES));
    let s = &t.snapshot;
    assert_eq!(
        s.services
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        vec!["api", "web"]
    );
    let web = s
        .cluster(&ClusterKey {
            namespace: "shop".into(),
            service: "web".into(),
            port: 80,
            protocol: Protocol::TCP,
        })
        .unwrap();
    assert_eq!(web.endpoints.len(), 1);
    assert_eq!(
        (web.endpoints[0].address.to_string(), web.endpoints[0].port),
        ("127.0.0.1".into(), 8080)
    );
    let api = s
        .cluster(&ClusterKey {
            namespace: "shop".into(),
            service: "api".into(),
            port: 9000,
            protocol: Protocol::TCP,
        })
        .unwrap();
    assert_eq!(api.app_protocol.as_deref(), Some("kubernetes.io/h2c"));
    assert!(api.endpoints.is_empty());
    s.validate().unwrap();
}

#[test]
fn one_port_number_on_two_protocols_translates_to_two_clusters() {
    let t = translate(&store(KUBE_SYSTEM));
    t.snapshot.validate().unwrap();
    let keys: Vec<String> = t
        .snapshot
        .clusters
        .iter()
        .map(|c| c.key.to_string())
        .collect();
    assert_eq!(
        keys,
        [
            "kube-system/kube-dns:53",
            "kube-system/kube-dns:53/UDP",
            "kube-system/kube-dns:9153"
        ]
    );
    // Each cluster takes the endpoint port of its own name and protocol.
    let ports: Vec<(u16, Protocol, &str)> = t
        .snapshot
        .clusters
        .iter()
        .map(|c| (c.endpoints[0].port, c.key.protocol, c.port_name.as_str()))
        .collect();
    assert_eq!(
        ports,
        [
            (5353, Protocol::TCP, "dns-tcp"),
            (5354, Protocol::UDP, "dns"),
            (9153, Protocol::TCP, "metrics")
        ]
    );
}

#[test]
fn an_endpoint_for_a_pod_carries_the_pods_service_account() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: shop}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-0
  namespace: shop
  labels: {kubernetes.io/service-name: echo}
addressType: IPv4
endpoints:
- addresses: [10.1.0.1]
  targetRef: {kind: Pod, namespace: shop, name: echo-a}
- addresses: [10.1.0.2]
  targetRef: {kind: Pod, namespace: shop, name: echo-b}
- addresses: [10.1.0.3]
  targetRef: {kind: Pod, namespace: shop, name: echo-gone}
ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: echo-a, namespace: shop}
spec:
  serviceAccountName: echo
  containers: [{name: echo, image: echo}]
---
apiVersion: v1
kind: Pod
metadata: {name: echo-b, namespace: shop}
spec:
  containers: [{name: echo, image: echo}]
"#;
    let t = translate(&store(yaml));
    let echo = &t.snapshot.services[0];
    let accounts: Vec<Option<&str>> = echo
        .endpoints
        .iter()
        .map(|e| e.target.as_ref().unwrap().service_account.as_deref())
        .collect();
    // A Pod that names none runs as `default`; a Pod the store does not hold is unknown.
    assert_eq!(accounts, [Some("echo"), Some("default"), None]);
    t.snapshot.validate().unwrap();
}
