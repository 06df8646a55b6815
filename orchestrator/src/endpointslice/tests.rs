use std::sync::Arc;

use super::*;
use ferry_objects::manifest;

fn parse(yaml: &str) -> Vec<Arc<Manifest>> {
    let loaded = manifest::parse("t.yaml", yaml.as_bytes());
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    loaded.manifests.into_iter().map(Arc::new).collect()
}

fn origin() -> Origin {
    Origin {
        file: "<test>".into(),
        doc: None,
    }
}

/// The slices the controller writes for Service `name` in `shop`, over every Pod given.
fn slices_of(yaml: &str, name: &str) -> Vec<EndpointSlice> {
    slices_clear_of(yaml, name, &mut HashSet::new())
}

/// [`slices_of`], named clear of `taken`.
fn slices_clear_of(yaml: &str, name: &str, taken: &mut HashSet<String>) -> Vec<EndpointSlice> {
    let manifests = parse(yaml);
    let pods: Vec<&Pod> = manifests
        .iter()
        .filter_map(|m| match &m.object {
            Object::Pod(p) => Some(&**p),
            _ => None,
        })
        .collect();
    let index = PodIndex::new(pods);
    let svc = manifests
        .iter()
        .find_map(|m| match &m.object {
            Object::Service(s) if m.name() == name => Some(&**s),
            _ => None,
        })
        .unwrap();
    let selected = selector_of(svc).map_or(Vec::new(), |sel| index.select("shop", sel));
    slices_named(svc, &selected, taken)
}

fn pod(name: &str, release: &str, ip: &str, ready: bool) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: shop
  uid: uid-{name}
  labels: {{app: web, release: {release}}}
spec:
  nodeName: node-1
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
metadata: {name: web, namespace: shop, uid: uid-web, labels: {tier: front}}
spec:
  selector: {app: web, release: summer}
  ports: [{name: http, port: 80, targetPort: http}]
---
"#;

/// One ready Pod that [`WEB`] selects, and WEB.
fn one_ready_pod() -> String {
    pod("web-summer-a", "summer", "127.1.0.3", true) + WEB
}

/// (address, ready) of every endpoint of every slice, sorted.
fn addresses(slices: &[EndpointSlice]) -> Vec<(String, bool)> {
    let mut out: Vec<_> = slices
        .iter()
        .flat_map(|s| &s.endpoints)
        .map(|e| {
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap();
            (e.addresses[0].clone(), ready)
        })
        .collect();
    out.sort();
    out
}

fn conditions(e: &Endpoint) -> (bool, bool, bool) {
    let c = e.conditions.as_ref().unwrap();
    (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
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
    let slices = slices_of(&yaml, "web");
    assert_eq!(
        addresses(&slices),
        vec![("127.1.0.3".into(), true), ("127.1.0.4".into(), false)],
        "only summer Pods; only ready Pods are ready"
    );
    assert_eq!(slices.len(), 1);
    let s = &slices[0];
    assert_eq!(s.address_type, "IPv4");
    assert_eq!(
        s.ports,
        Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            app_protocol: None,
        }])
    );
    let e = &s.endpoints[0];
    assert_eq!(
        e.target_ref,
        Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some("shop".into()),
            name: Some("web-summer-a".into()),
            uid: Some("uid-web-summer-a".into()),
            ..ObjectReference::default()
        })
    );
    assert_eq!(e.node_name.as_deref(), Some("node-1"));
    assert_eq!(conditions(&s.endpoints[1]), (false, false, false));
}

#[test]
fn a_slice_is_labelled_and_owned_as_kubernetes_writes_it() {
    let yaml = one_ready_pod();
    let slices = slices_of(&yaml, "web");
    let meta = &slices[0].metadata;
    assert_eq!(meta.namespace.as_deref(), Some("shop"));
    assert_eq!(meta.generate_name.as_deref(), Some("web-"));
    assert_eq!(
        meta.labels,
        Some(BTreeMap::from([
            ("tier".to_owned(), "front".to_owned()),
            (SERVICE_NAME_LABEL.to_owned(), "web".to_owned()),
            (MANAGED_BY_LABEL.to_owned(), CONTROLLER_NAME.to_owned()),
        ])),
        "the Service's labels, its name and the controller's"
    );
    assert_eq!(
        meta.owner_references,
        Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Service".into(),
            name: "web".into(),
            uid: "uid-web".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }])
    );
    let headless = one_ready_pod().replace("  selector:", "  clusterIP: None\n  selector:");
    let slices = slices_of(&headless, "web");
    let labels = slices[0].metadata.labels.as_ref().unwrap();
    assert_eq!(labels.get(HEADLESS_LABEL).map(String::as_str), Some(""));

    // A Service that never went through an API server has no uid to own by.
    let no_uid = one_ready_pod().replace(" uid: uid-web,", "");
    let slices = slices_of(&no_uid, "web");
    assert_eq!(slices[0].metadata.owner_references, None);
}

#[test]
fn named_target_port_resolves_per_pod() {
    let yaml = [
        pod("web-summer-a", "summer", "127.1.0.3", true),
        pod("web-summer-c", "summer", "127.1.0.9", true).replace("8080", "9000"),
        pod("web-summer-d", "summer", "127.1.0.10", true).replace(
            "{name: http, containerPort: 8080}",
            "{name: other, containerPort: 7000}",
        ),
        WEB.to_owned(),
    ]
    .concat();
    let mut slices = slices_of(&yaml, "web");
    slices.sort_by_key(|s| s.ports.as_ref().unwrap().first().and_then(|p| p.port));
    let by_port: Vec<(Option<i32>, Vec<String>)> = slices
        .iter()
        .map(|s| {
            (
                s.ports.as_ref().unwrap().first().and_then(|p| p.port),
                s.endpoints.iter().map(|e| e.addresses[0].clone()).collect(),
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
        "Pods whose port names resolve differently land in different slices; a Pod without the \
         named port is kept without that port"
    );
    let names: BTreeSet<_> = slices.iter().map(|s| s.metadata.name.clone()).collect();
    assert_eq!(
        names.len(),
        3,
        "each slice has a name of its own: {names:?}"
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
    let slices = slices_of(&[yaml, failed, no_ip, WEB.to_owned()].concat(), "web");
    let e = &slices[0].endpoints;
    assert_eq!(e.len(), 1, "failed and IP-less Pods are not endpoints");
    assert_eq!(
        conditions(&e[0]),
        (false, true, true),
        "terminating: serving but not ready"
    );
}

#[test]
fn publish_not_ready_addresses_makes_every_pod_ready() {
    let svc = WEB.replace(
        "  selector:",
        "  publishNotReadyAddresses: true\n  selector:",
    );
    let slices = slices_of(
        &[pod("web-summer-b", "summer", "127.1.0.4", false), svc].concat(),
        "web",
    );
    assert_eq!(addresses(&slices), vec![("127.1.0.4".into(), true)]);
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
    let slices = slices_of(&[with, other, WEB.to_owned()].concat(), "web");
    let hostnames: Vec<_> = slices[0]
        .endpoints
        .iter()
        .map(|e| e.hostname.clone())
        .collect();
    assert_eq!(hostnames, vec![Some("db-0".to_owned()), None]);
}

#[test]
fn one_slice_per_address_family_the_service_serves() {
    let dual = pod("web-summer-a", "summer", "127.1.0.3", true).replace(
        "  podIP: 127.1.0.3\n",
        "  podIP: 127.1.0.3\n  podIPs: [{ip: 127.1.0.3}, {ip: \"fd00::3\"}]\n",
    );
    let families = |svc: &str| -> Vec<(String, Vec<String>)> {
        slices_of(&[dual.clone(), svc.to_owned()].concat(), "web")
            .into_iter()
            .map(|s| (s.address_type, s.endpoints[0].addresses.clone()))
            .collect()
    };
    assert_eq!(
        families(WEB),
        vec![
            ("IPv4".into(), vec!["127.1.0.3".into()]),
            ("IPv6".into(), vec!["fd00::3".into()]),
        ],
        "a Service naming no family gets both"
    );
    let v6 = WEB.replace("  selector:", "  ipFamilies: [IPv6]\n  selector:");
    assert_eq!(families(&v6), vec![("IPv6".into(), vec!["fd00::3".into()])]);
}

#[test]
fn external_name_and_selectorless_services_have_no_slices() {
    let yaml = [
        pod("web-summer-a", "summer", "127.1.0.3", true),
        r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec: {type: ExternalName, externalName: db.example.com, selector: {app: web}}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec: {selector: {}, ports: [{port: 80}]}
"#
        .to_owned(),
    ]
    .concat();
    assert!(slices_of(&yaml, "db").is_empty());
    assert!(slices_of(&yaml, "ext").is_empty());
}

fn many_pods(n: usize) -> String {
    (0..n)
        .map(|i| {
            pod(
                &format!("web-summer-{i:03}"),
                "summer",
                &format!("127.1.{}.{}", i / 200, i % 200 + 1),
                true,
            )
        })
        .collect()
}

#[test]
fn at_most_100_endpoints_a_slice() {
    let slices = slices_of(&[many_pods(250), WEB.to_owned()].concat(), "web");
    let sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
    assert_eq!(sizes, vec![100, 100, 50]);
    assert_eq!(addresses(&slices).len(), 250, "every Pod once");
    let names: BTreeSet<_> = slices.iter().map(|s| s.metadata.name.clone()).collect();
    assert_eq!(names.len(), 3, "each chunk has a name of its own");
}

#[test]
fn names_are_deterministic() {
    let yaml = [many_pods(120), WEB.to_owned()].concat();
    let a = slices_of(&yaml, "web");
    // The same Pods in another order, in another run of the controller.
    let mut reversed: Vec<String> = (0..120)
        .rev()
        .map(|i| {
            pod(
                &format!("web-summer-{i:03}"),
                "summer",
                &format!("127.1.{}.{}", i / 200, i % 200 + 1),
                true,
            )
        })
        .collect();
    reversed.push(WEB.to_owned());
    let b = slices_of(&reversed.concat(), "web");
    assert_eq!(a, b, "the same Pods give identical slices");
    for s in &a {
        let name = s.metadata.name.as_deref().unwrap();
        let suffix = name.strip_prefix("web-").unwrap();
        assert_eq!(suffix.len(), 5, "{name}");
        assert!(suffix.bytes().all(|c| ALPHANUMS.contains(&c)), "{name}");
    }
    // Another Service's slices are named apart.
    let other = WEB.replace("name: web,", "name: web2,");
    let c = slices_of(&[many_pods(1), other].concat(), "web2");
    assert_ne!(c[0].metadata.name, a[0].metadata.name);
    // A long Service name is cut as generateName cuts it.
    let long = "w".repeat(63);
    let long_svc = WEB.replace("name: web,", &format!("name: {long},"));
    let d = slices_of(&[many_pods(1), long_svc].concat(), &long);
    assert_eq!(d[0].metadata.name.as_ref().unwrap().len(), 63);
}

#[test]
fn a_name_a_declared_slice_holds_is_not_reused() {
    let yaml = one_ready_pod();
    let first = slices_of(&yaml, "web")[0].metadata.name.clone().unwrap();
    let mut taken = HashSet::from([first.clone()]);
    let again = slices_clear_of(&yaml, "web", &mut taken);
    let name = again[0].metadata.name.clone().unwrap();
    assert_ne!(name, first);
    assert!(taken.contains(&name));
}

fn declared_slice(name: &str, service: &str, managed: bool, ip: &str) -> String {
    let managed_by = if managed {
        format!(", {MANAGED_BY_LABEL}: {CONTROLLER_NAME}")
    } else {
        String::new()
    };
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: shop, labels: {{{SERVICE_NAME_LABEL}: {service}{managed_by}}}}}\naddressType: IPv4\nendpoints: [{{addresses: [\"{ip}\"]}}]\nports: [{{name: http, port: 8080}}]\n---\n"
    )
}

/// (name, first address of each endpoint) of every EndpointSlice in the manifests.
fn slice_addresses(manifests: &[Arc<Manifest>]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<_> = manifests
        .iter()
        .filter_map(|m| match &m.object {
            Object::EndpointSlice(s) => Some((
                m.name().to_owned(),
                s.endpoints.iter().map(|e| e.addresses[0].clone()).collect(),
            )),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

#[test]
fn reconcile_adds_slices_and_replaces_only_its_own() {
    let yaml = [
        pod("web-summer-a", "summer", "127.1.0.3", true),
        WEB.to_owned(),
        // The controller's earlier output: replaced.
        declared_slice("web-old", "web", true, "127.9.0.1"),
        // Another controller's slice for the same Service: kept.
        declared_slice("web-mirror", "web", false, "127.9.0.2"),
        // A selectorless Service's slice: kept.
        declared_slice("ext-1", "ext", true, "127.9.0.3"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: shop}\nspec: {ports: [{port: 80}]}\n---\n".to_owned(),
    ]
    .concat();
    let manifests = parse(&yaml);
    let out = reconcile(&manifests, &origin());
    let own = slices_of(&yaml, "web")[0].metadata.name.clone().unwrap();
    let mut want = vec![
        ("ext-1".to_owned(), vec!["127.9.0.3".to_owned()]),
        ("web-mirror".to_owned(), vec!["127.9.0.2".to_owned()]),
        (own, vec!["127.1.0.3".to_owned()]),
    ];
    want.sort();
    assert_eq!(slice_addresses(&out), want);
    let written = out
        .iter()
        .find(|m| m.origin == origin())
        .expect("the controller's slice, with its origin");
    assert!(matches!(written.object, Object::EndpointSlice(_)));
    assert_eq!(
        out.len(),
        manifests.len(),
        "one slice replaced by one, nothing else touched"
    );
    assert_eq!(reconcile(&manifests, &origin()), out, "no churn");
}

#[test]
fn reconcile_keeps_declared_slices_of_a_service_selecting_no_pod() {
    // kube-system as `kubectl get svc,endpointslices -o yaml` shows it: the Pods run elsewhere.
    let yaml = [
        WEB.to_owned(),
        declared_slice("web-x7k2p", "web", true, "10.244.0.2"),
        pod("web-spring-a", "spring", "127.1.0.1", true),
    ]
    .concat();
    let manifests = parse(&yaml);
    let out = reconcile(&manifests, &origin());
    assert_eq!(
        slice_addresses(&out),
        vec![("web-x7k2p".to_owned(), vec!["10.244.0.2".to_owned()])]
    );
}

/// The endpoints of Service `ns/web` in the slices of a reading: (address, ready).
fn web_endpoints(r: &ferry_objects::files::Reading) -> Vec<(String, bool)> {
    let slices: Vec<EndpointSlice> = r
        .manifests
        .iter()
        .filter_map(|m| match &m.object {
            Object::EndpointSlice(s) => Some((**s).clone()),
            _ => None,
        })
        .filter(|s| managed_for(s) == Some("web"))
        .collect();
    addresses(&slices)
}

/// `LocalCluster::reconcile` hands over the controller's slices for the live Pods: one it runs
/// (its address once allocated, terminating as soon as it is to go) and one bound to another
/// node (as its manifest says).
#[tokio::test]
async fn the_local_cluster_writes_slices_for_the_pods_it_runs_and_passes_through() {
    use std::time::{Duration, Instant};

    use crate::cluster::{Config, LocalCluster};
    use crate::kubelet;
    use ferry_objects::files::Reading;

    let reading = |yaml: &str| Reading {
        manifests: parse(yaml),
        problems: Vec::new(),
    };
    let remote = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: remote, namespace: ns, labels: {app: web}}
spec:
  nodeName: node-7
  containers: [{name: c, image: x}]
status:
  podIP: 10.1.0.5
  conditions: [{type: Ready, status: "True"}]
"#;
    let both = remote.to_owned()
        + r#"
---
apiVersion: v1
kind: Pod
metadata: {name: local, namespace: ns, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: busybox, command: [sleep, "30"]}]
"#;
    let config = Config {
        pod_cidr: "127.251.0.0/24".parse().unwrap(),
        service_cidr: "127.251.1.0/24".parse().unwrap(),
        termination_delay: Duration::ZERO,
        ..Config::default()
    };
    let mut c = LocalCluster::new(config, kubelet::Kubelet::new(kubelet::Config::default()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let local_ip = loop {
        let r = c.reconcile(&reading(&both));
        let endpoints = web_endpoints(&r);
        if let Some((ip, true)) = endpoints.iter().find(|(ip, _)| ip.starts_with("127.251.")) {
            assert!(
                endpoints.contains(&("10.1.0.5".into(), true)),
                "{endpoints:?}"
            );
            assert_eq!(endpoints.len(), 2, "{endpoints:?}");
            break ip.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the local Pod never got ready: {endpoints:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Reconciling again changes no slice.
    let slices = |r: &Reading| -> Vec<Arc<Manifest>> {
        r.manifests
            .iter()
            .filter(|m| matches!(m.object, Object::EndpointSlice(_)))
            .cloned()
            .collect()
    };
    let r = c.reconcile(&reading(&both));
    assert_eq!(slices(&r), slices(&c.reconcile(&reading(&both))));
    // Owned by the live Service, by the uid the cluster gave it.
    let uid = r
        .manifests
        .iter()
        .find_map(|m| match &m.object {
            Object::Service(s) => s.metadata.uid.clone(),
            _ => None,
        })
        .expect("the live Service has a uid");
    for m in slices(&r) {
        let owners = m.object.metadata().owner_references.clone().unwrap();
        assert_eq!(owners[0].uid, uid);
        assert_eq!(owners[0].kind, "Service");
    }

    // Gone from the manifests: not ready at once, gone once it stopped.
    let r = c.reconcile(&reading(remote));
    assert!(web_endpoints(&r).contains(&(local_ip.clone(), false)));
    c.stop_terminating();
    loop {
        let r = c.reconcile(&reading(remote));
        if web_endpoints(&r) == vec![("10.1.0.5".to_owned(), true)] {
            break;
        }
        assert!(Instant::now() < deadline, "the Pod never went away");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
