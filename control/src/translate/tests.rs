//! Tests of the whole translation (determinism, the golden fixtures, warnings that several
//! steps give), and the fixtures the tests of each step share.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_model::Severity;

use super::*;
use ferry_objects::{manifest, validate};

mod canary;
mod class;
mod mesh;
mod namespaces;
mod options;
mod routes;
mod services;

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

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
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
fn translate_is_deterministic() {
    let yaml = std::fs::read_to_string(fixtures().join("ingress.yaml")).unwrap();
    let a = translate(&store(&yaml));
    let b = translate(&store(&yaml));
    assert_eq!(
        serde_json::to_string(&a.snapshot).unwrap(),
        serde_json::to_string(&b.snapshot).unwrap()
    );
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
