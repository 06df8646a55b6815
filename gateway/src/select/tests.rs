use ferry_model::{Backend, HostMatch, IngressOptions, PathType, Route, Snapshot, VirtualHost};
use http::{HeaderMap, HeaderValue};
use std::sync::Arc;

use super::{Routes, cookie};

/// The control plane's annotations fixture: regex paths with a rewrite, a canary, options.
fn routes() -> Routes {
    let mut json: serde_json::Value = serde_json::from_str(include_str!(
        "../../../control/fixtures/annotations.golden.json"
    ))
    .unwrap();
    // The golden file holds the snapshot (without a version) and the warnings.
    let mut json = json["snapshot"].take();
    json["version"] = 1.into();
    let snapshot: Snapshot = serde_json::from_value(json).unwrap();
    Routes::compile(&snapshot)
}

fn service(b: &Backend) -> &str {
    match b {
        Backend::Service { name, .. } => name,
        Backend::Resource { name, .. } => name,
    }
}

fn no_headers() -> HeaderMap {
    HeaderMap::new()
}

#[test]
fn regex_routes_match_case_insensitively_and_rewrite_keeping_the_query() {
    let r = routes();
    let s = r
        .select(
            "shop.example.com",
            "/API/orders/7?full=1",
            &no_headers(),
            || 99,
        )
        .unwrap();
    assert_eq!(service(s.backend), "api");
    assert_eq!(s.rewritten.as_deref(), Some("/orders/7?full=1"));
    let s = r
        .select("shop.example.com", "/api", &no_headers(), || 99)
        .unwrap();
    assert_eq!(
        s.rewritten.as_deref(),
        Some("/"),
        "an empty rewrite is the root"
    );
    // Not under /api: the Prefix routes.
    let s = r
        .select("shop.example.com", "/apix", &no_headers(), || 99)
        .unwrap();
    assert_eq!(service(s.backend), "web");
    assert_eq!(s.rewritten, None);
}

#[test]
fn options_come_from_the_ingress_of_the_matched_route() {
    let r = routes();
    let s = r
        .select("shop.example.com", "/anything", &no_headers(), || 99)
        .unwrap();
    let o = s.options.unwrap();
    assert_eq!(o.proxy_body_size, Some(16 * 1024 * 1024), "ferry.dev/ wins");
    assert_eq!(o.app_root.as_deref(), Some("/store"));
    assert_eq!(o.ssl_redirect, Some(false));
    let s = r
        .select("shop.example.com", "/api/x", &no_headers(), || 99)
        .unwrap();
    assert!(s.options.unwrap().force_ssl_redirect);
    assert!(
        !r.tls_host("shop.example.com"),
        "the fixture has no tls entry"
    );
}

#[test]
fn exact_beats_regex_beats_prefix() {
    let r = routes();
    let s = r
        .select("shop.example.com", "/cart", &no_headers(), || 99)
        .unwrap();
    assert_eq!(s.route.unwrap().path, "/cart");
    assert_eq!(s.rewritten, None);
}

#[test]
fn canary_by_header_then_cookie_then_weight() {
    let r = routes();
    let mut h = HeaderMap::new();
    h.insert("x-canary", HeaderValue::from_static("v2"));
    let s = r.select("shop.example.com", "/", &h, || 99).unwrap();
    assert!(s.canary);
    assert_eq!(service(s.backend), "web-v2");

    let mut h = HeaderMap::new();
    h.insert("x-canary", HeaderValue::from_static("v1"));
    h.insert(
        "cookie",
        HeaderValue::from_static("a=1; shop-canary=always"),
    );
    assert!(
        r.select("shop.example.com", "/", &h, || 99).unwrap().canary,
        "the cookie decides"
    );

    let mut h = HeaderMap::new();
    h.insert("cookie", HeaderValue::from_static("shop-canary=never"));
    assert!(
        !r.select("shop.example.com", "/", &h, || 0).unwrap().canary,
        "never beats weight"
    );

    // Weight 10 of 100: draws below 10 go to the canary.
    assert!(
        r.select("shop.example.com", "/", &no_headers(), || 9)
            .unwrap()
            .canary
    );
    assert!(
        !r.select("shop.example.com", "/", &no_headers(), || 10)
            .unwrap()
            .canary
    );
    assert!(
        !r.select("shop.example.com", "/", &no_headers(), || 110)
            .unwrap()
            .canary
    );
    assert!(
        r.select("shop.example.com", "/", &no_headers(), || 105)
            .unwrap()
            .canary
    );
}

#[test]
fn unknown_hosts_and_paths() {
    let r = routes();
    assert!(
        r.select("nope.example.com", "/", &no_headers(), || 0)
            .is_none()
    );
}

#[test]
fn cookies_are_read_from_every_cookie_header() {
    let mut h = HeaderMap::new();
    h.append("cookie", HeaderValue::from_static("a=1; b=2"));
    h.append("cookie", HeaderValue::from_static("c=3"));
    assert_eq!(cookie(&h, "b"), Some("2"));
    assert_eq!(cookie(&h, "c"), Some("3"));
    assert_eq!(cookie(&h, "d"), None);
}

fn ingress(name: &str) -> ferry_model::IngressRef {
    ferry_model::IngressRef::new("shop", name)
}

fn backend(name: &str) -> Backend {
    Backend::Service {
        namespace: "shop".into(),
        name: name.into(),
        port: ferry_model::BackendPort::Number(80),
        cluster: None,
    }
}

/// Every option set, so the test sees which ones a default backend keeps.
fn all_options(name: &str, body_size: u64) -> IngressOptions {
    IngressOptions {
        ingress: ingress(name),
        rewrite_target: Some("/$1".into()),
        use_regex: true,
        backend_protocol: Some(ferry_model::BackendProtocol::H2C),
        proxy_body_size: Some(body_size),
        proxy_connect_timeout_ms: Some(1000),
        proxy_read_timeout_ms: Some(2000),
        proxy_send_timeout_ms: Some(3000),
        ssl_redirect: Some(false),
        force_ssl_redirect: true,
        app_root: Some("/app".into()),
        affinity: None,
    }
}

/// shop.example.com: `/api` of Ingress "api"; its default backend is Ingress "site"'s. The
/// catch-all is Ingress "fallback"'s. Every one of them has options.
fn with_default_backends() -> Routes {
    let host = VirtualHost {
        host: HostMatch::parse("shop.example.com"),
        tls: false,
        routes: vec![Route {
            path: "/api".into(),
            path_type: PathType::Prefix,
            backend: backend("api"),
            ingress: ingress("api"),
            canary: None,
        }],
        default_backend: Some(backend("site")),
        default_backend_ingress: Some(ingress("site")),
    };
    Routes::compile(&Snapshot {
        version: 1,
        virtual_hosts: vec![Arc::new(host)],
        default_backend: Some(backend("fallback")),
        default_backend_ingress: Some(ingress("fallback")),
        ingress_options: [
            IngressOptions {
                use_regex: false,
                rewrite_target: None,
                ..all_options("api", 1)
            },
            all_options("fallback", 3),
            all_options("site", 2),
        ]
        .map(Arc::new)
        .to_vec(),
        ..Snapshot::default()
    })
}

#[test]
fn a_host_default_backend_takes_its_ingress_options() {
    let r = with_default_backends();
    let s = r
        .select("shop.example.com", "/", &no_headers(), || 0)
        .unwrap();
    assert_eq!(service(s.backend), "site");
    assert!(s.route.is_none());
    assert_eq!(s.rewritten, None, "no regex matched: nothing to rewrite");
    assert_eq!(s.options, Some(&all_options("site", 2)), "every option");
    assert_eq!(
        s.ingress,
        Some(&ingress("site")),
        "metrics and the log name its Ingress"
    );
    // The route keeps its own Ingress's.
    let s = r
        .select("shop.example.com", "/api/x", &no_headers(), || 0)
        .unwrap();
    assert_eq!(s.options.and_then(|o| o.proxy_body_size), Some(1));
    assert_eq!(s.ingress, Some(&ingress("api")));
}

#[test]
fn the_catch_all_takes_its_ingress_options_but_the_rewrite_group() {
    let r = with_default_backends();
    let s = r
        .select("other.example.com", "/", &no_headers(), || 0)
        .unwrap();
    assert_eq!(service(s.backend), "fallback");
    assert_eq!(s.ingress, Some(&ingress("fallback")));
    let o = s.options.unwrap();
    assert_eq!(
        o,
        &IngressOptions {
            rewrite_target: None,
            use_regex: false,
            ssl_redirect: None,
            force_ssl_redirect: false,
            app_root: None,
            ..all_options("fallback", 3)
        },
        "as ingress-nginx's catch-all server: no redirects or rewrites"
    );
}

#[test]
fn a_default_backend_without_an_owner_takes_the_defaults() {
    let host = VirtualHost {
        host: HostMatch::parse("shop.example.com"),
        tls: false,
        routes: vec![],
        default_backend: Some(backend("site")),
        default_backend_ingress: None,
    };
    let r = Routes::compile(&Snapshot {
        virtual_hosts: vec![Arc::new(host)],
        default_backend: Some(backend("fallback")),
        ingress_options: vec![
            Arc::new(all_options("fallback", 3)),
            Arc::new(all_options("site", 2)),
        ],
        ..Snapshot::default()
    });
    for host in ["shop.example.com", "other.example.com"] {
        let s = r.select(host, "/", &no_headers(), || 0).unwrap();
        assert!(s.options.is_none(), "{host}");
    }
}
