//! Ingress rules → virtual hosts and routes (`translate::routes`).

use ferry_model::{Backend, ClusterKey, PathType, Protocol};

use super::*;

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
