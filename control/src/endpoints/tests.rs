use std::sync::Arc;

use super::*;
use ferry_objects::manifest;

fn store(yaml: &str) -> Store {
    let loaded = manifest::parse("t.yaml", yaml.as_bytes());
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    Store::from_manifests(loaded.manifests.into_iter().map(Arc::new))
}

fn sets(store: &Store, name: &str) -> Vec<EndpointSet> {
    let pods = PodIndex::new(store);
    let svc = store.service("shop", name).unwrap();
    for_service(store, &pods, "shop", name, svc)
}

fn pod(name: &str, release: &str, ip: &str, ready: bool) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: shop
  labels: {{app: web, release: {release}}}
spec:
  containers:
    - name: web
      image: ferry/echo
      ports: [{{name: http, containerPort: 8080}}]
status:
  podIP: {ip}
  conditions: [{{type: Ready, status: "{}"}}]
---
"#,
        if ready { "True" } else { "False" }
    )
}

const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web, release: summer}
  ports: [{name: http, port: 80, targetPort: http}]
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

#[test]
fn selects_only_the_summer_replica_set() {
    let yaml = [
        pod("web-spring-a", "spring", "127.1.0.1", true),
        pod("web-spring-b", "spring", "127.1.0.2", true),
        pod("web-summer-a", "summer", "127.1.0.3", true),
        pod("web-summer-b", "summer", "127.1.0.4", false),
        WEB.to_owned(),
    ]
    .concat();
    let s = store(&yaml);
    let sets = sets(&s, "web");
    assert_eq!(
        addresses(&sets),
        vec![("127.1.0.3".into(), true), ("127.1.0.4".into(), false)],
        "only summer Pods; only ready Pods are ready"
    );
    assert_eq!(sets.len(), 1);
    assert_eq!(
        sets[0].ports,
        vec![SetPort {
            name: "http".into(),
            port: 8080,
            protocol: Protocol::TCP,
            app_protocol: None
        }]
    );
    let target = sets[0].endpoints[0].target.as_ref().unwrap();
    assert_eq!(
        (target.kind.as_str(), target.name.as_str()),
        ("Pod", "web-summer-a")
    );
    assert!(!sets[0].endpoints[1].serving);
}

#[test]
fn named_target_port_resolves_per_pod() {
    let yaml = format!(
        r#"{}
apiVersion: v1
kind: Pod
metadata: {{name: web-summer-c, namespace: shop, labels: {{app: web, release: summer}}}}
spec:
  containers:
    - name: web
      image: ferry/echo
      ports: [{{name: http, containerPort: 9000}}]
status:
  podIP: 127.1.0.9
  conditions: [{{type: Ready, status: "True"}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: web-summer-d, namespace: shop, labels: {{app: web, release: summer}}}}
spec:
  containers:
    - name: web
      image: ferry/echo
      ports: [{{name: other, containerPort: 7000}}]
status:
  podIP: 127.1.0.10
  conditions: [{{type: Ready, status: "True"}}]
---
{WEB}"#,
        pod("web-summer-a", "summer", "127.1.0.3", true)
    );
    let s = store(&yaml);
    let mut sets = sets(&s, "web");
    sets.sort_by_key(|s| s.ports.first().map(|p| p.port));
    let by_port: Vec<(Option<u16>, Vec<String>)> = sets
        .iter()
        .map(|s| {
            (
                s.ports.first().map(|p| p.port),
                s.endpoints.iter().map(|e| e.address.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(
        by_port,
        vec![
            (None, vec!["127.1.0.10".to_owned()]),
            (Some(8080), vec!["127.1.0.3".to_owned()]),
            (Some(9000), vec!["127.1.0.9".to_owned()]),
        ],
        "Pods whose port names resolve differently land in different sets; a Pod without the \
         named port is kept without that port"
    );
}

#[test]
fn terminating_terminal_and_ipless_pods() {
    let mut yaml = pod("web-summer-a", "summer", "127.1.0.3", true);
    yaml = yaml.replace(
        "namespace: shop\n",
        "namespace: shop\n  deletionTimestamp: \"2026-01-01T00:00:00Z\"\n",
    );
    let failed = pod("web-summer-b", "summer", "127.1.0.4", false)
        .replace("status:\n", "status:\n  phase: Failed\n");
    let no_ip = pod("web-summer-c", "summer", "", true).replace("  podIP: \n", "");
    let s = store(&[yaml, failed, no_ip, WEB.to_owned()].concat());
    let sets = sets(&s, "web");
    let e = &sets[0].endpoints;
    assert_eq!(e.len(), 1, "failed and IP-less Pods are not endpoints");
    assert!(e[0].terminating && e[0].serving && !e[0].ready);
}

#[test]
fn publish_not_ready_addresses_makes_every_pod_ready() {
    let svc = WEB.replace(
        "  selector:",
        "  publishNotReadyAddresses: true\n  selector:",
    );
    let s = store(&[pod("web-summer-b", "summer", "127.1.0.4", false), svc].concat());
    assert_eq!(
        addresses(&sets(&s, "web")),
        vec![("127.1.0.4".into(), true)]
    );
}

#[test]
fn hostname_only_when_subdomain_names_the_service() {
    let with = pod("db-0", "summer", "127.1.0.5", true).replace(
        "  containers:",
        "  hostname: db-0\n  subdomain: web\n  containers:",
    );
    let other = pod("db-1", "summer", "127.1.0.6", true).replace(
        "  containers:",
        "  hostname: db-1\n  subdomain: other\n  containers:",
    );
    let s = store(&[with, other, WEB.to_owned()].concat());
    let sets = sets(&s, "web");
    let hostnames: Vec<_> = sets[0]
        .endpoints
        .iter()
        .map(|e| e.hostname.clone())
        .collect();
    assert_eq!(hostnames, vec![Some("db-0".to_owned()), None]);
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
