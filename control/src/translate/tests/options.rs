//! Ingress annotations → options (`translate::options`).

use ferry_model::{BackendProtocol, IngressOptions};

use super::*;

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
        [
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
        .map(std::sync::Arc::new)
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

#[test]
fn the_annotations_fixture_passes_validation() {
    let yaml = std::fs::read_to_string(fixtures().join("annotations.yaml")).unwrap();
    // `store` refuses any validation error.
    let t = translate(&store(&yaml));
    assert_eq!(t.snapshot.ingress_options.len(), 2);
}
