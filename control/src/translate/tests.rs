use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_model::{BackendProtocol, Severity};

use super::*;
use ferry_objects::{manifest, validate};

fn store(yaml: &str) -> Store {
    let loaded = manifest::parse("t.yaml", yaml.as_bytes());
    let mut problems = loaded.problems.clone();
    for m in &loaded.manifests {
        problems.extend(validate::object(m));
    }
    assert!(problems.iter().all(|p| !p.is_error()), "{problems:#?}");
    Store::from_manifests(loaded.manifests.into_iter().map(Arc::new))
}

fn warnings(t: &Translation) -> Vec<String> {
    t.problems.iter().map(ToString::to_string).collect()
}

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: ["127.0.0.1"]}]
ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  ports: [{name: grpc, port: 9000, appProtocol: kubernetes.io/h2c}]
---
"#;

fn ingress(name: &str, created: &str, body: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: shop, creationTimestamp: \"{created}\"}}\nspec:\n{body}\n---\n"
    )
}

fn path(host: &str, path: &str, ty: &str, svc: &str, port: &str) -> String {
    format!(
        "  rules:\n  - host: \"{host}\"\n    http:\n      paths:\n      - path: {path}\n        pathType: {ty}\n        backend:\n          service: {{name: {svc}, port: {port}}}\n"
    )
}

#[test]
fn same_host_and_path_the_oldest_ingress_wins() {
    let yaml = [
        SERVICES.to_owned(),
        ingress(
            "b-newer",
            "2026-02-01T00:00:00Z",
            &path("shop.example.com", "/", "Prefix", "api", "{number: 9000}"),
        ),
        ingress(
            "a-older",
            "2026-01-01T00:00:00Z",
            &path("shop.example.com", "/", "Prefix", "web", "{name: http}"),
        ),
    ]
    .concat();
    let t = translate(&store(&yaml));
    let vh = &t.snapshot.virtual_hosts[0];
    assert_eq!(vh.routes.len(), 1);
    assert_eq!(vh.routes[0].ingress.name, "a-older");
    assert_eq!(
        vh.routes[0].backend.cluster().unwrap(),
        &ClusterKey {
            namespace: "shop".into(),
            service: "web".into(),
            port: 80,
            protocol: Protocol::TCP,
        },
        "a port named http resolves through the Service's ports"
    );
    assert_eq!(
        warnings(&t),
        vec![
            "t.yaml:4: Ingress shop/b-newer: spec.rules[0].http.paths[0]: host shop.example.com path / (Prefix) \
             is already routed by the older Ingress shop/a-older; ignored"
        ]
    );
}

#[test]
fn several_ingresses_merge_by_host_in_precedence_order() {
    let rules = |paths: &[(&str, &str)]| {
        let mut s = "  rules:\n  - host: shop.example.com\n    http:\n      paths:\n".to_owned();
        for (p, ty) in paths {
            s += &format!(
                "      - path: {p}\n        pathType: {ty}\n        backend:\n          service: {{name: web, port: {{number: 80}}}}\n"
            );
        }
        s
    };
    let yaml = [
        SERVICES.to_owned(),
        ingress(
            "one",
            "2026-01-01T00:00:00Z",
            &rules(&[("/", "Prefix"), ("/foo", "Prefix")]),
        ),
        ingress(
            "two",
            "2026-01-02T00:00:00Z",
            &rules(&[("/foo", "Exact"), ("/foo/bar", "ImplementationSpecific")]),
        ),
    ]
    .concat();
    let t = translate(&store(&yaml));
    assert_eq!(t.snapshot.virtual_hosts.len(), 1);
    let order: Vec<_> = t.snapshot.virtual_hosts[0]
        .routes
        .iter()
        .map(|r| (r.path.as_str(), r.path_type, r.ingress.name.as_str()))
        .collect();
    assert_eq!(
        order,
        vec![
            ("/foo/bar", PathType::ImplementationSpecific, "two"),
            ("/foo", PathType::Exact, "two"),
            ("/foo", PathType::Prefix, "one"),
            ("/", PathType::Prefix, "one"),
        ],
        "longest first; Exact before Prefix on a tie; list order does not matter"
    );
    assert!(t.problems.is_empty(), "{:?}", warnings(&t));
}

#[test]
fn hosts_order_exact_then_wildcard_then_any() {
    let yaml = [
        SERVICES.to_owned(),
        ingress(
            "a",
            "2026-01-01T00:00:00Z",
            &path("", "/", "Prefix", "web", "{number: 80}"),
        ),
        ingress(
            "b",
            "2026-01-01T00:00:00Z",
            &path("*.example.com", "/", "Prefix", "web", "{number: 80}"),
        ),
        ingress(
            "c",
            "2026-01-01T00:00:00Z",
            &path("shop.example.com", "/", "Prefix", "web", "{number: 80}"),
        ),
    ]
    .concat();
    let t = translate(&store(&yaml));
    let hosts: Vec<String> = t
        .snapshot
        .virtual_hosts
        .iter()
        .map(|v| v.host.to_string())
        .collect();
    assert_eq!(hosts, vec!["shop.example.com", "*.example.com", "*"]);
}

#[test]
fn missing_service_port_or_secret_are_warnings_and_answer_503() {
    let body = format!(
        "  tls:\n  - hosts: [shop.example.com]\n    secretName: nope\n{}",
        path("shop.example.com", "/", "Prefix", "gone", "{number: 80}")
    );
    let yaml = [
        SERVICES.to_owned(),
        ingress("a", "2026-01-01T00:00:00Z", &body),
        ingress(
            "b",
            "2026-01-01T00:00:00Z",
            &path("b.example.com", "/", "Prefix", "web", "{number: 81}"),
        ),
    ]
    .concat();
    let t = translate(&store(&yaml));
    assert!(t.problems.iter().all(|p| p.severity == Severity::Warning));
    assert_eq!(
        warnings(&t),
        vec![
            "t.yaml:4: Ingress shop/a: spec.rules[0].http.paths[0].backend.service.name: Service \"shop/gone\" not found; the route answers 503",
            "t.yaml:4: Ingress shop/a: spec.tls[0].secretName: Secret \"shop/nope\" not found; its hosts serve the default certificate",
            "t.yaml:5: Ingress shop/b: spec.rules[0].http.paths[0].backend.service.port: Service \"shop/web\" has no port 81; the route answers 503",
        ]
    );
    for vh in &t.snapshot.virtual_hosts {
        assert_eq!(vh.routes[0].backend.cluster(), None);
    }
    let a = t
        .snapshot
        .virtual_hosts
        .iter()
        .find(|v| v.host.to_string() == "shop.example.com")
        .unwrap();
    assert!(
        a.tls,
        "a TLS host without a usable Secret still redirects and serves the default certificate"
    );
    t.snapshot.validate().unwrap();
}

#[test]
fn ingress_class_decides_which_ingresses_are_ferrys() {
    let class = |name: &str, controller: &str, default: bool| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: {name}\n  annotations: {{ingressclass.kubernetes.io/is-default-class: \"{default}\"}}\nspec: {{controller: {controller}}}\n---\n"
        )
    };
    let classed = |name: &str, class: &str| {
        let rule = path(
            &format!("{name}.example.com"),
            "/",
            "Prefix",
            "web",
            "{number: 80}",
        );
        let class = if class.is_empty() {
            String::new()
        } else {
            format!("  ingressClassName: {class}\n")
        };
        ingress(name, "2026-01-01T00:00:00Z", &format!("{class}{rule}"))
    };
    let served = |yaml: &str| -> Vec<String> {
        let t = translate(&store(yaml));
        t.snapshot
            .virtual_hosts
            .iter()
            .map(|v| v.host.to_string())
            .collect()
    };

    // No IngressClass at all: Ingresses without a class are ferry's.
    assert_eq!(
        served(&[SERVICES.to_owned(), classed("plain", "")].concat()),
        vec!["plain.example.com"]
    );

    // Ours by name; another controller's is not; no class and ferry not default: not ours.
    let yaml = [
        SERVICES.to_owned(),
        class("ferry", "ferry.dev/ingress", false),
        class("nginx", "k8s.io/ingress-nginx", true),
        classed("ours", "ferry"),
        classed("theirs", "nginx"),
        classed("plain", ""),
    ]
    .concat();
    assert_eq!(served(&yaml), vec!["ours.example.com"]);

    // ferry's class is the default: Ingresses without a class are ferry's.
    let yaml = [
        SERVICES.to_owned(),
        class("ferry", "ferry.dev/ingress", true),
        classed("plain", ""),
        classed("missing", "nope"),
    ]
    .concat();
    let t = translate(&store(&yaml));
    assert_eq!(t.snapshot.virtual_hosts.len(), 1);
    assert_eq!(
        warnings(&t),
        vec![
            "t.yaml:6: Ingress shop/missing: spec.ingressClassName: IngressClass \"nope\" does not exist; this Ingress is not served"
        ]
    );
}

#[test]
fn default_backends_per_host_and_catch_all() {
    let with_rules = format!(
        "  defaultBackend:\n    service: {{name: api, port: {{number: 9000}}}}\n{}",
        path("shop.example.com", "/web", "Prefix", "web", "{number: 80}")
    );
    let without_rules = "  defaultBackend:\n    service: {name: web, port: {number: 80}}\n";
    // Newer Ingresses with default backends of their own: the oldest keeps each.
    let newer_with_rules = format!(
        "  defaultBackend:\n    service: {{name: web, port: {{number: 80}}}}\n{}",
        path("shop.example.com", "/new", "Prefix", "web", "{number: 80}")
    );
    let newer_without_rules = "  defaultBackend:\n    service: {name: api, port: {number: 9000}}\n";
    let yaml = [
        SERVICES.to_owned(),
        ingress("a", "2026-01-01T00:00:00Z", &with_rules),
        ingress("b", "2026-01-01T00:00:00Z", without_rules),
        ingress("c", "2026-02-01T00:00:00Z", &newer_with_rules),
        ingress("d", "2026-02-01T00:00:00Z", newer_without_rules),
    ]
    .concat();
    let t = translate(&store(&yaml));
    let owner = |o: &Option<IngressRef>| o.as_ref().map(|i| i.name.clone());
    let vh = &t.snapshot.virtual_hosts[0];
    assert_eq!(owner(&vh.default_backend_ingress), Some("a".into()));
    assert_eq!(owner(&t.snapshot.default_backend_ingress), Some("b".into()));
    t.snapshot.validate().unwrap();
    assert_eq!(
        vh.default_backend
            .as_ref()
            .and_then(Backend::cluster)
            .map(|k| k.service.as_str()),
        Some("api")
    );
    assert_eq!(
        t.snapshot
            .default_backend
            .as_ref()
            .and_then(Backend::cluster)
            .map(|k| k.service.as_str()),
        Some("web")
    );
}

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
fn translate_is_deterministic() {
    let yaml = std::fs::read_to_string(fixtures().join("ingress.yaml")).unwrap();
    let a = translate(&store(&yaml));
    let b = translate(&store(&yaml));
    assert_eq!(
        serde_json::to_string(&a.snapshot).unwrap(),
        serde_json::to_string(&b.snapshot).unwrap()
    );
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Every `fixtures/*.yaml` translates to exactly its `*.golden.json` (snapshot and warnings).
/// Regenerate after an intended change with `FERRY_UPDATE_GOLDEN=1 cargo test -p ferry-control`.
#[test]
fn golden_snapshots() {
    let update = std::env::var_os("FERRY_UPDATE_GOLDEN").is_some();
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for yaml_path in entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    {
        seen += 1;
        let name = yaml_path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let loaded = manifest::parse(&name, &std::fs::read(yaml_path).unwrap());
        let store = Store::from_manifests(loaded.manifests.into_iter().map(Arc::new));
        let t = translate(&store);
        t.snapshot.validate().unwrap();
        let golden = serde_json::json!({
            "warnings": warnings(&t),
            "snapshot": t.snapshot.without_private_keys(),
        });
        let text = serde_json::to_string_pretty(&golden).unwrap() + "\n";
        let golden_path = yaml_path.with_extension("golden.json");
        if update {
            std::fs::write(&golden_path, &text).unwrap();
        }
        let want = std::fs::read_to_string(&golden_path).unwrap_or_else(|_| {
            panic!(
                "{} missing; run with FERRY_UPDATE_GOLDEN=1",
                golden_path.display()
            )
        });
        assert_eq!(
            text, want,
            "{name} no longer translates to its golden snapshot"
        );
    }
    assert!(seen >= 2, "fixtures missing");
}

fn annotated(name: &str, created: &str, annotations: &str, body: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: shop, creationTimestamp: \"{created}\", annotations: {{{annotations}}}}}\nspec:\n{body}\n---\n"
    )
}

fn shop_ingress(name: &str) -> IngressRef {
    IngressRef::new("shop", name)
}

const NGINX: &str = "nginx.ingress.kubernetes.io";

#[test]
fn annotations_become_ingress_options_sorted_by_ingress() {
    let yaml = [
        SERVICES.to_owned(),
        annotated(
            "z-first",
            "2026-01-01T00:00:00Z",
            &format!("{NGINX}/proxy-body-size: 8m, ferry.dev/proxy-read-timeout: 90s"),
            &path("z.example.com", "/", "Prefix", "web", "{number: 80}"),
        ),
        annotated(
            "a-second",
            "2026-01-02T00:00:00Z",
            &format!("{NGINX}/rewrite-target: /$2, {NGINX}/backend-protocol: GRPC"),
            &path(
                "a.example.com",
                "/api(/|$)(.*)",
                "ImplementationSpecific",
                "api",
                "{number: 9000}",
            ),
        ),
        // Only annotations that change nothing: no entry.
        annotated(
            "m-plain",
            "2026-01-03T00:00:00Z",
            &format!("{NGINX}/use-regex: \"false\", example.com/owner: shop"),
            &path("m.example.com", "/", "Prefix", "web", "{number: 80}"),
        ),
    ]
    .concat();
    let t = translate(&store(&yaml));
    assert!(t.problems.is_empty(), "{:?}", warnings(&t));
    let s = &t.snapshot;
    s.validate().unwrap();
    assert_eq!(
        s.ingress_options,
        vec![
            IngressOptions {
                ingress: shop_ingress("a-second"),
                rewrite_target: Some("/$2".into()),
                use_regex: true,
                backend_protocol: Some(BackendProtocol::GRPC),
                ..IngressOptions::default()
            },
            IngressOptions {
                ingress: shop_ingress("z-first"),
                proxy_body_size: Some(8 << 20),
                proxy_read_timeout_ms: Some(90_000),
                ..IngressOptions::default()
            },
        ]
    );
    let route = &s.virtual_hosts[0].routes[0];
    assert_eq!(route.path, "/api(/|$)(.*)");
    assert_eq!(
        s.ingress_options(&route.ingress)
            .and_then(|o| o.backend_protocol),
        Some(BackendProtocol::GRPC)
    );
    assert!(s.ingress_options(&shop_ingress("m-plain")).is_none());
}

#[test]
fn a_snapshot_without_annotations_serializes_as_before() {
    let yaml = std::fs::read_to_string(fixtures().join("ingress.yaml")).unwrap();
    let t = translate(&store(&yaml));
    assert!(t.snapshot.ingress_options.is_empty());
    let json = serde_json::to_string(&t.snapshot).unwrap();
    for key in ["ingress_options", "canary", "use_regex", "rewrite_target"] {
        assert!(!json.contains(key), "{key} in {json}");
    }
}

fn canary_annotations(extra: &str) -> String {
    format!("{NGINX}/canary: \"true\"{extra}")
}

#[test]
fn canary_attaches_to_the_route_of_the_oldest_main_ingress() {
    let yaml = [
        SERVICES.to_owned(),
        // The canary is older than both: it still never wins, and causes no conflict warning.
        annotated(
            "canary",
            "2025-01-01T00:00:00Z",
            &canary_annotations(&format!(
                ", {NGINX}/canary-weight: \"20\", {NGINX}/canary-by-header: X-Canary, {NGINX}/canary-by-cookie: beta"
            )),
            &path("shop.example.com", "/", "ImplementationSpecific", "api", "{number: 9000}"),
        ),
        ingress(
            "b-newer",
            "2026-02-01T00:00:00Z",
            &path("shop.example.com", "/", "Prefix", "api", "{number: 9000}"),
        ),
        ingress(
            "a-older",
            "2026-01-01T00:00:00Z",
            &path("shop.example.com", "/", "Prefix", "web", "{number: 80}"),
        ),
    ]
    .concat();
    let t = translate(&store(&yaml));
    assert_eq!(
        warnings(&t),
        vec![
            "t.yaml:5: Ingress shop/b-newer: spec.rules[0].http.paths[0]: host shop.example.com path / (Prefix) \
             is already routed by the older Ingress shop/a-older; ignored"
        ]
    );
    let vh = &t.snapshot.virtual_hosts[0];
    assert_eq!(vh.routes.len(), 1, "a canary adds no route of its own");
    let route = &vh.routes[0];
    assert_eq!(route.ingress.name, "a-older");
    assert_eq!(
        route.canary,
        Some(Canary {
            backend: Backend::Service {
                namespace: "shop".into(),
                name: "api".into(),
                port: BackendPort::Number(9000),
                cluster: Some(ClusterKey {
                    namespace: "shop".into(),
                    service: "api".into(),
                    port: 9000,
                    protocol: Protocol::TCP,
                }),
            },
            ingress: shop_ingress("canary"),
            weight: 20,
            weight_total: 100,
            by_header: Some("X-Canary".into()),
            by_header_value: None,
            by_cookie: Some("beta".into()),
        }),
        "ImplementationSpecific matches Prefix, as in conflicts"
    );
    assert!(t.snapshot.ingress_options.is_empty());
    t.snapshot.validate().unwrap();
}

#[test]
fn canary_without_a_main_route_is_ignored_with_a_warning() {
    let canary_body = format!(
        "  tls:\n  - hosts: [shop.example.com]\n    secretName: nope\n  defaultBackend:\n    service: {{name: api, port: {{number: 9000}}}}\n{}      - path: /\n        pathType: Exact\n        backend:\n          service: {{name: api, port: {{number: 9000}}}}\n  - host: other.example.com\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service: {{name: gone, port: {{number: 1}}}}\n",
        path(
            "shop.example.com",
            "/api",
            "Prefix",
            "api",
            "{number: 9000}"
        )
    );
    let yaml = [
        SERVICES.to_owned(),
        ingress(
            "main",
            "2026-01-01T00:00:00Z",
            &path("shop.example.com", "/", "Prefix", "web", "{number: 80}"),
        ),
        annotated(
            "canary",
            "2026-01-02T00:00:00Z",
            &canary_annotations(""),
            &canary_body,
        ),
    ]
    .concat();
    let t = translate(&store(&yaml));
    assert_eq!(
        warnings(&t),
        vec![
            "t.yaml:5: Ingress shop/canary: spec.defaultBackend: ignored on a canary Ingress: a canary only joins routes of a main Ingress",
            "t.yaml:5: Ingress shop/canary: spec.rules[0].http.paths[0]: canary for host shop.example.com path /api (Prefix), which no other Ingress routes; ignored",
            "t.yaml:5: Ingress shop/canary: spec.rules[0].http.paths[1]: canary for host shop.example.com path / (Exact), which no other Ingress routes; ignored",
            "t.yaml:5: Ingress shop/canary: spec.rules[1].http.paths[0]: canary for host other.example.com path / (Prefix), which no other Ingress routes; ignored",
            "t.yaml:5: Ingress shop/canary: spec.tls: ignored on a canary Ingress: the main Ingress's TLS applies",
        ]
    );
    let s = &t.snapshot;
    assert_eq!(s.virtual_hosts.len(), 1, "no host of the canary's own");
    assert!(!s.virtual_hosts[0].tls, "the canary's tls is not read");
    assert!(s.virtual_hosts[0].routes.iter().all(|r| r.canary.is_none()));
    assert_eq!(s.default_backend, None);
    assert_eq!(s.default_backend_ingress, None);
    assert_eq!(s.virtual_hosts[0].default_backend, None);
    assert_eq!(s.virtual_hosts[0].default_backend_ingress, None);
    assert!(s.certificates.is_empty());
}

#[test]
fn the_oldest_canary_of_a_route_wins() {
    let yaml = [
        SERVICES.to_owned(),
        ingress(
            "main",
            "2026-01-01T00:00:00Z",
            &path("shop.example.com", "/", "Prefix", "web", "{number: 80}"),
        ),
        annotated(
            "canary-new",
            "2026-01-03T00:00:00Z",
            &canary_annotations(&format!(", {NGINX}/canary-weight: \"50\"")),
            &path("shop.example.com", "/", "Prefix", "api", "{number: 9000}"),
        ),
        annotated(
            "canary-old",
            "2026-01-02T00:00:00Z",
            &canary_annotations(&format!(
                ", {NGINX}/canary-weight: \"1\", {NGINX}/canary-weight-total: \"1000\""
            )),
            &path("shop.example.com", "/", "Prefix", "gone", "{number: 80}"),
        ),
    ]
    .concat();
    let t = translate(&store(&yaml));
    assert_eq!(
        warnings(&t),
        vec![
            "t.yaml:5: Ingress shop/canary-new: spec.rules[0].http.paths[0]: host shop.example.com path / (Prefix) already has the canary of the older Ingress shop/canary-old; ignored",
            "t.yaml:6: Ingress shop/canary-old: spec.rules[0].http.paths[0].backend.service.name: Service \"shop/gone\" not found; the route answers 503",
        ]
    );
    let canary = t.snapshot.virtual_hosts[0].routes[0]
        .canary
        .as_ref()
        .unwrap();
    assert_eq!(canary.ingress.name, "canary-old");
    assert_eq!((canary.weight, canary.weight_total), (1, 1000));
    assert_eq!(
        canary.backend.cluster(),
        None,
        "a missing Service: the canary answers 503"
    );
    t.snapshot.validate().unwrap();
}

#[test]
fn the_annotations_fixture_passes_validation() {
    let yaml = std::fs::read_to_string(fixtures().join("annotations.yaml")).unwrap();
    // `store` refuses any validation error.
    let t = translate(&store(&yaml));
    assert_eq!(t.snapshot.ingress_options.len(), 2);
}

/// kube-system's kube-dns and default/kubernetes as every cluster has them (issue 12).
const KUBE_SYSTEM: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: 10.96.0.10
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
  - {name: metrics, port: 9153, protocol: TCP, targetPort: 9153}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: kube-dns-1, namespace: kube-system, labels: {kubernetes.io/service-name: kube-dns}}
addressType: IPv4
endpoints: [{addresses: ["127.0.0.53"]}]
ports:
- {name: dns-tcp, port: 5353, protocol: TCP}
- {name: dns, port: 5354, protocol: UDP}
- {name: metrics, port: 9153, protocol: TCP}
---
"#;

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
fn an_ingress_backend_port_number_means_the_tcp_port() {
    let backend = |port: &str| {
        let yaml = [
            KUBE_SYSTEM.to_owned(),
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: dns, namespace: kube-system}\nspec:\n".to_owned(),
            path("dns.example.com", "/", "Prefix", "kube-dns", port),
        ]
        .concat();
        let t = translate(&store(&yaml));
        t.snapshot.validate().unwrap();
        let cluster = t.snapshot.virtual_hosts[0].routes[0]
            .backend
            .cluster()
            .cloned();
        (cluster.map(|c| c.to_string()), warnings(&t))
    };
    assert_eq!(
        backend("{number: 53}"),
        (Some("kube-system/kube-dns:53".to_owned()), vec![])
    );
    assert_eq!(
        backend("{name: dns-tcp}"),
        (Some("kube-system/kube-dns:53".to_owned()), vec![])
    );
    assert_eq!(
        backend("{name: dns}"),
        (
            None,
            vec![
                "t.yaml:3: Ingress kube-system/dns: spec.rules[0].http.paths[0].backend.service.port: \
                 Service \"kube-system/kube-dns\" port dns is 53/UDP, and HTTP needs TCP; the route answers 503"
                    .to_owned()
            ]
        )
    );
}

#[test]
fn namespaces_are_the_built_in_ones_and_those_objects_name() {
    let yaml = [
        KUBE_SYSTEM,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: empty}\n---\n",
        SERVICES,
    ]
    .concat();
    let t = translate(&store(&yaml));
    assert_eq!(
        t.snapshot.namespaces,
        [
            "default",
            "empty",
            "kube-node-lease",
            "kube-public",
            "kube-system",
            "shop"
        ]
    );
}
