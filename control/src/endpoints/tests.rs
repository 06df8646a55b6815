use std::sync::Arc;

use super::*;
use ferry_objects::manifest;

fn store(yaml: &str) -> Store {
    let loaded = manifest::parse("t.yaml", yaml.as_bytes());
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    Store::from_manifests(loaded.manifests.into_iter().map(Arc::new))
}

fn sets(store: &Store, name: &str) -> Vec<EndpointSet> {
    let slices = SliceIndex::new(store);
    let svc = store.service("shop", name).unwrap();
    for_service(store, &slices, "shop", name, svc)
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec:
  containers: [{name: web, image: ferry/echo, ports: [{name: http, containerPort: 8080}]}]
status:
  podIP: 127.1.0.3
  conditions: [{type: Ready, status: "True"}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: shop}
subsets:
  - addresses: [{ip: 127.0.0.7}]
    ports: [{name: http, port: 9}]
---
"#;

fn addresses(sets: &[EndpointSet]) -> Vec<(String, bool)> {
    let mut out: Vec<_> = sets
        .iter()
        .flat_map(|s| &s.endpoints)
        .map(|e| (e.address.to_string(), e.ready))
        .collect();
    out.sort();
    out
}

/// As kube-proxy: a selector Service's endpoints are its EndpointSlices, which the
/// EndpointSlice controller writes from the Pods; the Pods themselves are not read, nor are
/// the legacy Endpoints of a Service with a selector.
#[test]
fn a_selector_service_reads_its_slices_not_its_pods() {
    assert!(
        sets(&store(POD), "web").is_empty(),
        "Pods without slices are no endpoints"
    );
    let slice = r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abcde
  namespace: shop
  labels: {kubernetes.io/service-name: web, endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io}
addressType: IPv4
endpoints:
- addresses: [127.1.0.3]
  conditions: {ready: true, serving: true, terminating: false}
  hostname: web-0
  nodeName: node-1
  targetRef: {kind: Pod, namespace: shop, name: web-0, uid: u}
ports:
- {name: http, port: 8080, protocol: TCP, appProtocol: http}
"#;
    let s = store(&(POD.to_owned() + slice));
    let sets = sets(&s, "web");
    assert_eq!(addresses(&sets), vec![("127.1.0.3".into(), true)]);
    assert_eq!(
        sets[0].ports,
        vec![SetPort {
            name: "http".into(),
            port: 8080,
            protocol: Protocol::TCP,
            app_protocol: Some("http".into()),
        }]
    );
    let e = &sets[0].endpoints[0];
    assert_eq!(
        (e.hostname.as_deref(), e.node_name.as_deref()),
        (Some("web-0"), Some("node-1"))
    );
    assert_eq!(
        e.target,
        Some(TargetRef {
            kind: "Pod".into(),
            namespace: "shop".into(),
            name: "web-0".into(),
            service_account: None,
            meshed: false,
        })
    );
}

#[test]
fn service_without_selector_uses_its_slices_absent_ready_means_ready() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ext-1
  namespace: shop
  labels: {kubernetes.io/service-name: ext}
addressType: IPv4
endpoints:
  - addresses: ["127.0.0.1"]
  - addresses: ["127.0.0.2"]
    conditions: {ready: false, serving: true, terminating: true}
    zone: a
  - addresses: ["127.0.0.3"]
    conditions: {ready: false, terminating: true}
ports: [{name: http, port: 8000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: other
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
  - addresses: ["127.0.0.9"]
---
apiVersion: v1
kind: Endpoints
metadata: {name: ext, namespace: shop}
subsets:
  - addresses: [{ip: 127.0.0.7}]
    ports: [{name: http, port: 9}]
"#;
    let s = store(yaml);
    let sets = sets(&s, "ext");
    assert_eq!(sets.len(), 1, "slices win over the legacy Endpoints");
    let e = &sets[0].endpoints;
    assert_eq!(
        (e[0].ready, e[0].serving, e[0].terminating),
        (true, true, false)
    );
    assert_eq!(
        (e[1].ready, e[1].serving, e[1].terminating),
        (false, true, true)
    );
    // No `serving`: it means what `ready` says (discovery/v1), so not a fallback target.
    assert_eq!(
        (e[2].ready, e[2].serving, e[2].terminating),
        (false, false, true)
    );
    assert_eq!(e[1].zone.as_deref(), Some("a"));
    assert_eq!(sets[0].ports[0].port, 8000);
}

#[test]
fn legacy_endpoints_map_to_the_same_form() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: ext, namespace: shop}
subsets:
  - addresses: [{ip: 127.0.0.7, hostname: a}]
    notReadyAddresses: [{ip: 127.0.0.8}]
    ports: [{name: http, port: 9}]
"#;
    let s = store(yaml);
    let sets = sets(&s, "ext");
    assert_eq!(
        addresses(&sets),
        vec![("127.0.0.7".into(), true), ("127.0.0.8".into(), false)]
    );
    assert_eq!(sets[0].endpoints[0].hostname.as_deref(), Some("a"));
    assert_eq!(
        sets[0].ports[0],
        SetPort {
            name: "http".into(),
            port: 9,
            protocol: Protocol::TCP,
            app_protocol: None
        }
    );
}

#[test]
fn external_name_services_have_no_endpoints() {
    let yaml = r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec: {type: ExternalName, externalName: db.example.com}
"#;
    assert!(sets(&store(yaml), "db").is_empty());
}
