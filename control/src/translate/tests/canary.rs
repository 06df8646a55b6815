//! Canary Ingresses (`translate::canary`).

use ferry_model::{Backend, BackendPort, Canary, ClusterKey, Protocol};

use super::*;

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
