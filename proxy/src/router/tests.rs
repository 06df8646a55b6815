use ferry_model::{
    Backend, BackendPort, ClusterKey, HostMatch, IngressRef, PathType, Route, Snapshot, VirtualHost,
};
use proptest::prelude::*;
use std::sync::Arc;

use super::*;

use PathType::{Exact, ImplementationSpecific as Impl, Prefix};

fn backend(name: &str) -> Backend {
    Backend::Service {
        namespace: "default".into(),
        name: name.into(),
        port: BackendPort::Number(80),
        cluster: Some(ClusterKey {
            namespace: "default".into(),
            service: name.into(),
            port: 80,
            protocol: ferry_model::Protocol::TCP,
        }),
    }
}

/// A route whose backend is named after it (`Exact /foo`), so a match says which route it was.
fn route(path_type: PathType, path: &str) -> Route {
    Route {
        path: path.into(),
        path_type,
        backend: backend(&format!("{} {path}", path_type.as_str())),
        ingress: IngressRef::new("default", "web"),
        canary: None,
    }
}

fn vhost(host: &str, routes: Vec<Route>, default: Option<&str>) -> VirtualHost {
    VirtualHost {
        host: HostMatch::parse(host),
        tls: false,
        routes,
        default_backend: default.map(backend),
        default_backend_ingress: None,
    }
}

fn snapshot(virtual_hosts: Vec<VirtualHost>, default: Option<&str>) -> Snapshot {
    Snapshot {
        version: 7,
        virtual_hosts: virtual_hosts.into_iter().map(Arc::new).collect(),
        default_backend: default.map(backend),
        ..Snapshot::default()
    }
}

/// Routes of one host by type and path, as the tables below write them.
type Routes = &'static [(PathType, &'static str)];

/// The backend name that serves the request, prefixed by why: `route:`, `host-default:`,
/// `default:`; `404` when nothing does.
fn served(router: &Router, host: &str, path: &str) -> String {
    let Some(m) = router.route(host, path) else {
        return "404".into();
    };
    let why = match m.target {
        Target::Route(_) => "route",
        Target::HostDefault(_) => "host-default",
        Target::Default(_) => "default",
    };
    let Backend::Service { name, .. } = m.backend() else {
        panic!("test backends are Services");
    };
    format!("{why}:{name}")
}

/// Every row of the path-matching examples in the Kubernetes Ingress documentation
/// (concepts/services-networking/ingress, "Examples"), one host, in both route orders.
#[test]
fn kubernetes_path_examples() {
    // (routes, request path, the route that serves it, or "": the default backend).
    let rows: &[(Routes, &str, &str)] = &[
        (&[(Prefix, "/")], "/", "Prefix /"),
        (&[(Prefix, "/")], "/anything/at/all", "Prefix /"),
        (&[(Prefix, "/")], "/foo/bar?x=1", "Prefix /"),
        (&[(Exact, "/foo")], "/foo", "Exact /foo"),
        (&[(Exact, "/foo")], "/bar", ""),
        (&[(Exact, "/foo")], "/foo/", ""),
        (&[(Exact, "/foo/")], "/foo", ""),
        (&[(Prefix, "/foo")], "/foo", "Prefix /foo"),
        (&[(Prefix, "/foo")], "/foo/", "Prefix /foo"),
        (&[(Prefix, "/foo/")], "/foo", "Prefix /foo/"),
        (&[(Prefix, "/foo/")], "/foo/", "Prefix /foo/"),
        (&[(Prefix, "/aaa/bb")], "/aaa/bbb", ""),
        (&[(Prefix, "/aaa/bbb")], "/aaa/bbb", "Prefix /aaa/bbb"),
        (&[(Prefix, "/aaa/bbb/")], "/aaa/bbb", "Prefix /aaa/bbb/"),
        (&[(Prefix, "/aaa/bbb")], "/aaa/bbb/", "Prefix /aaa/bbb"),
        (&[(Prefix, "/aaa/bbb")], "/aaa/bbb/ccc", "Prefix /aaa/bbb"),
        (&[(Prefix, "/aaa/bbb")], "/aaa/bbbxyz", ""),
        (
            &[(Prefix, "/"), (Prefix, "/aaa")],
            "/aaa/ccc",
            "Prefix /aaa",
        ),
        (
            &[(Prefix, "/aaa"), (Prefix, "/")],
            "/aaa/ccc",
            "Prefix /aaa",
        ),
        (&[(Prefix, "/aaa"), (Prefix, "/")], "/ccc", "Prefix /"),
        (
            &[(Prefix, "/"), (Prefix, "/aaa"), (Prefix, "/aaa/bbb")],
            "/aaa/bbb",
            "Prefix /aaa/bbb",
        ),
        (
            &[(Prefix, "/"), (Prefix, "/aaa"), (Prefix, "/aaa/bbb")],
            "/ccc",
            "Prefix /",
        ),
        (&[(Prefix, "/aaa")], "/ccc", ""),
        (&[(Prefix, "/foo"), (Exact, "/foo")], "/foo", "Exact /foo"),
        (&[(Exact, "/foo"), (Prefix, "/foo")], "/foo", "Exact /foo"),
        (
            &[(Prefix, "/foo"), (Exact, "/foo")],
            "/foo/bar",
            "Prefix /foo",
        ),
        (&[(Prefix, "/foo"), (Exact, "/foo")], "/foo/", "Prefix /foo"),
    ];
    for (routes, request, want) in rows {
        let want = match *want {
            "" => "default:catch-all".to_string(),
            route => format!("route:{route}"),
        };
        let mut routes: Vec<Route> = routes.iter().map(|&(t, p)| route(t, p)).collect();
        for _ in 0..2 {
            let s = snapshot(
                vec![vhost("shop.example.com", routes.clone(), None)],
                Some("catch-all"),
            );
            let got = served(&Router::compile(&s), "shop.example.com", request);
            assert_eq!(got, want, "routes {routes:?} request {request}");
            routes.reverse();
        }
    }
}

/// Each case: (routes, request, the route that serves it, or "" for none).
fn check_paths(cases: &[(Routes, &str, &str)]) {
    for (routes, request, want) in cases {
        let routes: Vec<Route> = routes.iter().map(|&(t, p)| route(t, p)).collect();
        let s = snapshot(vec![vhost("", routes.clone(), None)], None);
        let router = Router::compile(&s);
        let got = router
            .route("any.host", request)
            .and_then(|m| m.route())
            .map(|r| format!("{} {}", r.path_type.as_str(), r.path));
        let want = (!want.is_empty()).then(|| want.to_string());
        assert_eq!(got, want, "routes {routes:?} request {request:?}");
    }
}

#[test]
fn paths_are_bytes_matched_case_sensitively() {
    check_paths(&[
        (&[(Exact, "/Foo")], "/foo", ""),
        (&[(Prefix, "/Foo")], "/foo/bar", ""),
        (&[(Prefix, "/foo")], "/FOO", ""),
        (&[(Exact, "/Foo")], "/Foo", "Exact /Foo"),
        // No percent-decoding: `%2F` is not an element separator.
        (&[(Prefix, "/a/b")], "/a%2Fb", ""),
        (&[(Prefix, "/a")], "/a%2Fb", ""),
        // Empty elements count.
        (&[(Prefix, "/a/b")], "/a//b", ""),
        (&[(Prefix, "/a//b")], "/a//b/c", "Prefix /a//b"),
        (&[(Prefix, "/a//b")], "/a/b", ""),
    ]);
}

#[test]
fn query_is_ignored_and_odd_targets() {
    check_paths(&[
        (&[(Exact, "/foo")], "/foo?x=1", "Exact /foo"),
        (&[(Exact, "/foo")], "/foo?", "Exact /foo"),
        (&[(Prefix, "/foo/bar")], "/foo?/bar", ""),
        (&[(Prefix, "/foo")], "/foo?/bar", "Prefix /foo"),
        (&[(Prefix, "/foo")], "/foobar?/foo", ""),
        // An empty path is `/`.
        (&[(Exact, "/")], "", "Exact /"),
        (&[(Exact, "/")], "?a", "Exact /"),
        (&[(Prefix, "/")], "", "Prefix /"),
        // The asterisk form and other paths without a leading slash match nothing.
        (&[(Prefix, "/")], "*", ""),
        (&[(Exact, "*")], "*", ""),
        (&[(Prefix, "/foo")], "foo", ""),
    ]);
}

#[test]
fn implementation_specific_is_prefix() {
    check_paths(&[
        (&[(Impl, "/foo")], "/foo/bar", "ImplementationSpecific /foo"),
        (&[(Impl, "/foo")], "/foobar", ""),
        (&[(Impl, "/foo"), (Exact, "/foo")], "/foo", "Exact /foo"),
        // Same path as a Prefix route: Prefix, whatever the order.
        (&[(Impl, "/foo"), (Prefix, "/foo")], "/foo/x", "Prefix /foo"),
        (&[(Prefix, "/foo"), (Impl, "/foo")], "/foo/x", "Prefix /foo"),
        (
            &[(Impl, "/foo/bar"), (Prefix, "/foo")],
            "/foo/bar",
            "ImplementationSpecific /foo/bar",
        ),
    ]);
}

#[test]
fn precedence_measures_prefixes_without_trailing_slashes() {
    check_paths(&[
        // Exact /foo matches the whole path; Prefix /foo/ matches only `/foo` of it.
        (&[(Prefix, "/foo/"), (Exact, "/foo")], "/foo", "Exact /foo"),
        (&[(Exact, "/foo"), (Prefix, "/foo/")], "/foo", "Exact /foo"),
        (
            &[(Prefix, "/foo"), (Exact, "/foo/")],
            "/foo/",
            "Exact /foo/",
        ),
        // Same elements: the longer as written, in either order.
        (
            &[(Prefix, "/foo"), (Prefix, "/foo/")],
            "/foo/x",
            "Prefix /foo/",
        ),
        (
            &[(Prefix, "/foo/"), (Prefix, "/foo")],
            "/foo",
            "Prefix /foo/",
        ),
        (&[(Prefix, "//"), (Prefix, "/")], "/x", "Prefix //"),
        // Deeper wins over longer-as-written-but-shallower.
        (
            &[(Prefix, "/a/b"), (Prefix, "/a////")],
            "/a/b/c",
            "Prefix /a/b",
        ),
        (
            &[(Prefix, "/aaaaaaa"), (Prefix, "/a/b")],
            "/a/b",
            "Prefix /a/b",
        ),
    ]);
}

#[test]
fn exact_host_ignores_case_port_and_trailing_dot() {
    let s = snapshot(
        vec![vhost("shop.example.com", vec![route(Prefix, "/")], None)],
        None,
    );
    let router = Router::compile(&s);
    for host in [
        "shop.example.com",
        "SHOP.Example.COM",
        "shop.example.com:8443",
        "shop.example.com:",
        "shop.example.com.",
        "Shop.Example.Com.:80",
    ] {
        assert_eq!(served(&router, host, "/"), "route:Prefix /", "{host}");
    }
    for host in [
        "shop.example.co",
        "shop.example.com..",
        "www.shop.example.com",
        "example.com",
        "shop.example.com.evil",
        "",
        ":80",
    ] {
        assert_eq!(served(&router, host, "/"), "404", "{host}");
    }
}

#[test]
fn a_host_written_in_capitals_still_matches() {
    // HostMatch::parse lowercases; a snapshot built by hand may not have.
    let mut vh = vhost("x", vec![route(Prefix, "/")], None);
    vh.host = HostMatch::Exact("Shop.Example.com.".into());
    let router = Router::compile(&snapshot(vec![vh], None));
    assert_eq!(served(&router, "shop.example.COM", "/"), "route:Prefix /");
}

#[test]
fn wildcard_takes_exactly_one_label() {
    let s = snapshot(
        vec![vhost("*.foo.com", vec![route(Prefix, "/")], None)],
        Some("catch-all"),
    );
    let router = Router::compile(&s);
    for host in ["bar.foo.com", "BAR.Foo.com:8080", "x.foo.com.", "1.foo.com"] {
        assert_eq!(served(&router, host, "/"), "route:Prefix /", "{host}");
    }
    for host in [
        "baz.bar.foo.com",
        "foo.com",
        ".foo.com",
        "barfoo.com",
        "bar.foo.co",
        "bar.foo.com.x",
    ] {
        assert_eq!(served(&router, host, "/"), "default:catch-all", "{host}");
    }
}

#[test]
fn exact_beats_wildcard_beats_any() {
    let s = snapshot(
        vec![
            // The snapshot's order is not relied on.
            vhost("", vec![route(Prefix, "/any")], None),
            vhost("*.example.com", vec![route(Prefix, "/wild")], None),
            vhost("shop.example.com", vec![route(Prefix, "/shop")], None),
        ],
        None,
    );
    let router = Router::compile(&s);
    assert_eq!(
        served(&router, "shop.example.com", "/shop"),
        "route:Prefix /shop"
    );
    assert_eq!(
        served(&router, "blog.example.com", "/wild"),
        "route:Prefix /wild"
    );
    assert_eq!(
        served(&router, "a.b.example.com", "/any"),
        "route:Prefix /any"
    );
    assert_eq!(served(&router, "other.org", "/any"), "route:Prefix /any");
    assert_eq!(served(&router, "", "/any"), "route:Prefix /any");
    assert_eq!(served(&router, "[::1]:8080", "/any"), "route:Prefix /any");
    // The host that takes the request decides alone: no falling through to another's routes.
    assert_eq!(served(&router, "shop.example.com", "/wild"), "404");
    assert_eq!(served(&router, "shop.example.com", "/any"), "404");
    assert_eq!(served(&router, "blog.example.com", "/any"), "404");
}

#[test]
fn ip_literal_hosts() {
    let s = snapshot(
        vec![
            vhost("", vec![route(Prefix, "/")], None),
            vhost("1.example.com", vec![route(Prefix, "/one")], None),
        ],
        None,
    );
    let router = Router::compile(&s);
    for host in [
        "[::1]:8080",
        "[::1]",
        "[2001:db8::1]:443",
        "127.0.0.1:8080",
        "::1",
    ] {
        let m = router.route(host, "/one");
        assert_eq!(
            m.and_then(|m| m.host).map(|h| h.host().clone()),
            Some(HostMatch::Any),
            "{host}"
        );
    }
}

#[test]
fn names_longer_than_dns_allows_match_only_any() {
    let long = format!("{}.example.com", "a".repeat(250));
    let mut exact = vhost("x", vec![route(Prefix, "/exact")], None);
    exact.host = HostMatch::Exact(long.clone());
    let s = snapshot(
        vec![exact, vhost("", vec![route(Prefix, "/any")], None)],
        None,
    );
    let router = Router::compile(&s);
    assert_eq!(served(&router, &long, "/any"), "route:Prefix /any");
    let max = format!("{}.example.com", "a".repeat(253 - 12));
    assert_eq!(max.len(), 253);
    let mut exact = vhost("x", vec![route(Prefix, "/exact")], None);
    exact.host = HostMatch::Exact(max.clone());
    let router = Router::compile(&snapshot(vec![exact], None));
    assert_eq!(
        served(&router, &format!("{max}.:443"), "/exact"),
        "route:Prefix /exact"
    );
}

#[test]
fn defaults_per_host_then_global_then_404() {
    let hosts = vec![
        vhost(
            "a.example.com",
            vec![route(Prefix, "/api")],
            Some("a-default"),
        ),
        vhost("b.example.com", vec![route(Prefix, "/api")], None),
    ];
    let with_global = Router::compile(&snapshot(hosts.clone(), Some("catch-all")));
    let without = Router::compile(&snapshot(hosts, None));
    let cases = [
        (
            "a.example.com",
            "/api/x",
            "route:Prefix /api",
            "route:Prefix /api",
        ),
        (
            "a.example.com",
            "/web",
            "host-default:a-default",
            "host-default:a-default",
        ),
        ("b.example.com", "/web", "default:catch-all", "404"),
        ("c.example.com", "/api", "default:catch-all", "404"),
    ];
    for (host, path, global, none) in cases {
        assert_eq!(served(&with_global, host, path), global, "{host}{path}");
        assert_eq!(served(&without, host, path), none, "{host}{path}");
    }
    let m = with_global.route("b.example.com", "/web").expect("served");
    assert_eq!(
        m.host.map(|h| h.host().clone()),
        Some(HostMatch::Exact("b.example.com".into()))
    );
    assert!(m.route().is_none());
    let m = with_global.route("c.example.com", "/").expect("served");
    assert!(m.host.is_none());
}

#[test]
fn default_backends_keep_their_owning_ingress() {
    let owner = |name: &str| IngressRef::new("shop", name);
    let mut owned = vhost("a.example.com", vec![], Some("a-default"));
    owned.default_backend_ingress = Some(owner("a"));
    let mut s = snapshot(
        vec![owned, vhost("b.example.com", vec![], Some("b-default"))],
        Some("catch-all"),
    );
    s.default_backend_ingress = Some(owner("fallback"));
    let router = Router::compile(&s);
    let name = |host: &str| {
        router
            .virtual_host(host)
            .and_then(HostRoutes::default_backend_ingress)
            .map(|i| i.name.as_str())
    };
    assert_eq!(name("a.example.com"), Some("a"));
    assert_eq!(
        name("b.example.com"),
        None,
        "a hand-written snapshot names none"
    );
    assert_eq!(
        router.default_backend_ingress().map(|i| i.name.as_str()),
        Some("fallback")
    );
}

#[test]
fn empty_router_is_all_404() {
    let router = Router::default();
    assert!(router.route("shop.example.com", "/").is_none());
    let router = Router::compile(&Snapshot::default());
    assert!(router.route("", "").is_none());
    assert_eq!(router.version(), 0);
}

#[test]
fn match_exposes_cluster_tls_and_route() {
    let mut vh = vhost(
        "shop.example.com",
        vec![route(Prefix, "/"), route(Prefix, "/api")],
        None,
    );
    vh.tls = true;
    vh.routes[1].backend = Backend::Service {
        namespace: "shop".into(),
        name: "api".into(),
        port: BackendPort::Name("http".into()),
        cluster: Some(ClusterKey {
            namespace: "shop".into(),
            service: "api".into(),
            port: 8080,
            protocol: ferry_model::Protocol::TCP,
        }),
    };
    vh.routes[0].backend = Backend::Resource {
        namespace: "shop".into(),
        api_group: Some("k8s.example.com".into()),
        resource_kind: "StorageBucket".into(),
        name: "static".into(),
    };
    let router = Router::compile(&snapshot(vec![vh], None));
    assert_eq!(router.version(), 7);

    let host = router.virtual_host("shop.example.com").expect("host");
    assert!(host.tls());
    assert_eq!(host.routes().len(), 2);
    assert!(host.default_backend().is_none());

    let m = router.route_on(Some(host), "/api/v1").expect("served");
    assert_eq!(m.route().map(|r| r.path.as_str()), Some("/api"));
    assert_eq!(
        m.cluster().map(ToString::to_string),
        Some("shop/api:8080".into())
    );
    let m = router
        .route("shop.example.com", "/index.html")
        .expect("served");
    assert!(m.cluster().is_none(), "a resource backend has no cluster");
}

#[test]
fn repeated_virtual_hosts_and_routes_keep_the_first() {
    let mut first = route(Exact, "/x");
    first.backend = backend("first");
    let mut second = route(Exact, "/x");
    second.backend = backend("second");
    let s = snapshot(
        vec![
            vhost("a.com", vec![first, second], None),
            vhost("A.com", vec![route(Prefix, "/")], None),
        ],
        None,
    );
    let router = Router::compile(&s);
    assert_eq!(served(&router, "a.com", "/x"), "route:first");
    assert_eq!(served(&router, "a.com", "/y"), "404");
}

#[test]
fn many_routes_on_one_host() {
    // Enough routes that the maps hash rather than scan.
    let mut routes = Vec::new();
    for i in 0..200 {
        routes.push(route(Prefix, &format!("/svc{i}")));
        routes.push(route(Prefix, &format!("/svc{i}/api")));
        routes.push(route(Exact, &format!("/svc{i}/api/health")));
    }
    routes.push(route(Prefix, "/"));
    routes.reverse();
    let router = Router::compile(&snapshot(vec![vhost("", routes, None)], None));
    assert_eq!(
        served(&router, "h", "/svc7/api/v1"),
        "route:Prefix /svc7/api"
    );
    assert_eq!(
        served(&router, "h", "/svc7/api/health"),
        "route:Exact /svc7/api/health"
    );
    assert_eq!(
        served(&router, "h", "/svc7/api/health/x"),
        "route:Prefix /svc7/api"
    );
    assert_eq!(served(&router, "h", "/svc7/apis"), "route:Prefix /svc7");
    assert_eq!(served(&router, "h", "/svc200"), "route:Prefix /");
}

// ---- The property test: the compiled router against a naive reading of the rules. ----

/// The module's rules, written for clarity and nothing else.
mod reference {
    use super::*;

    pub enum Expected {
        Route(usize, usize),
        HostDefault(usize),
        /// The snapshot's default, with the virtual host that took the request, if any.
        Default(Option<usize>),
        NotFound,
    }

    fn name(host: &str) -> String {
        let host = host.to_ascii_lowercase();
        let name = if host.starts_with('[') {
            match host.find(']') {
                Some(i) => &host[..=i],
                None => &host[..],
            }
        } else {
            host.split(':').next().unwrap_or_default()
        };
        name.strip_suffix('.').unwrap_or(name).to_string()
    }

    fn host_index(s: &Snapshot, host: &str) -> Option<usize> {
        let h = name(host);
        if h.len() > 253 {
            return s
                .virtual_hosts
                .iter()
                .position(|v| v.host == HostMatch::Any);
        }
        let exact = s.virtual_hosts.iter().position(|v| match &v.host {
            HostMatch::Exact(n) => name(n) == h,
            _ => false,
        });
        let wildcard = || {
            s.virtual_hosts.iter().position(|v| match &v.host {
                HostMatch::Wildcard(suffix) => {
                    let suffix = name(suffix);
                    suffix.starts_with('.')
                        && h.len() > suffix.len()
                        && h.ends_with(&suffix)
                        && !h[..h.len() - suffix.len()].contains('.')
                }
                _ => false,
            })
        };
        let any = || {
            s.virtual_hosts
                .iter()
                .position(|v| v.host == HostMatch::Any)
        };
        exact.or_else(wildcard).or_else(any)
    }

    fn elements(path: &str) -> Vec<&str> {
        path.trim_end_matches('/').split('/').collect()
    }

    fn route_index(routes: &[Route], path: &str) -> Option<usize> {
        let path = path.split('?').next().unwrap_or_default();
        let path = if path.is_empty() { "/" } else { path };
        if !path.starts_with('/') {
            return None;
        }
        routes
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                if r.path_type == PathType::Exact {
                    r.path == path
                } else {
                    elements(path).starts_with(&elements(&r.path))
                }
            })
            .max_by_key(|&(i, r)| {
                let exact = r.path_type == PathType::Exact;
                let matched = if exact {
                    r.path.len()
                } else {
                    r.path.trim_end_matches('/').len()
                };
                (
                    matched,
                    exact,
                    r.path.len(),
                    r.path_type == PathType::Prefix,
                    std::cmp::Reverse(i),
                )
            })
            .map(|(i, _)| i)
    }

    pub fn route(s: &Snapshot, host: &str, path: &str) -> Expected {
        let found = host_index(s, host);
        if let Some(h) = found {
            let vh = &s.virtual_hosts[h];
            if let Some(r) = route_index(&vh.routes, path) {
                return Expected::Route(h, r);
            }
            if vh.default_backend.is_some() {
                return Expected::HostDefault(h);
            }
        }
        if s.default_backend.is_some() {
            Expected::Default(found)
        } else {
            Expected::NotFound
        }
    }
}

/// What served the request, comparable between the router and the reference: the kind, the
/// virtual host's host and the backend (every backend in these snapshots is distinct).
fn outcome_of_router(
    router: &Router,
    host: &str,
    path: &str,
) -> Option<(u8, Option<HostMatch>, Backend)> {
    router.route(host, path).map(|m| {
        let kind = match m.target {
            Target::Route(_) => 0,
            Target::HostDefault(_) => 1,
            Target::Default(_) => 2,
        };
        (kind, m.host.map(|h| h.host().clone()), m.backend().clone())
    })
}

fn outcome_of_reference(
    s: &Snapshot,
    host: &str,
    path: &str,
) -> Option<(u8, Option<HostMatch>, Backend)> {
    let vh = |h: usize| &s.virtual_hosts[h];
    match reference::route(s, host, path) {
        reference::Expected::Route(h, r) => {
            Some((0, Some(vh(h).host.clone()), vh(h).routes[r].backend.clone()))
        }
        reference::Expected::HostDefault(h) => {
            Some((1, Some(vh(h).host.clone()), vh(h).default_backend.clone()?))
        }
        reference::Expected::Default(h) => {
            Some((2, h.map(|h| vh(h).host.clone()), s.default_backend.clone()?))
        }
        reference::Expected::NotFound => None,
    }
}

fn segment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "ab", "A", ""])
}

fn path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(segment(), 0..4),
        prop::sample::select(vec!["", "/", "//"]),
    )
        .prop_map(|(segments, tail)| {
            let mut p = String::new();
            for s in segments {
                p.push('/');
                p.push_str(s);
            }
            if p.is_empty() { "/".into() } else { p + tail }
        })
}

fn request_path() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (path(), prop::sample::select(vec!["", "?", "?q=/a/b", "?/a"]))
            .prop_map(|(p, q)| p + q),
        1 => prop::sample::select(vec!["", "*", "a", "?x", "a/b"]).prop_map(String::from),
    ]
}

fn path_type() -> impl Strategy<Value = PathType> {
    prop::sample::select(vec![Exact, Prefix, Impl])
}

fn label() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["x", "y", "xy", "X"])
}

fn host_name() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..4).prop_map(|l| l.join("."))
}

fn host_match() -> impl Strategy<Value = HostMatch> {
    prop_oneof![
        3 => host_name().prop_map(HostMatch::Exact),
        2 => host_name().prop_map(|n| HostMatch::Wildcard(format!(".{n}"))),
        1 => Just(HostMatch::Any),
    ]
}

fn request_host() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (
            prop::collection::vec(prop::sample::select(vec!["x", "y", "xy", "X", "Y", ""]), 0..5),
            prop::sample::select(vec!["", ".", ":8080", ".:80", ":"]),
        )
            .prop_map(|(labels, tail)| labels.join(".") + tail),
        1 => prop::sample::select(vec!["[::1]:8080", "[::1]", "::1", "10.0.0.1:80"])
            .prop_map(String::from),
    ]
}

/// Virtual hosts with distinct backends: `v{host}-{route}` and `v{host}-default`.
fn snapshot_strategy() -> impl Strategy<Value = Snapshot> {
    let vhost = (
        host_match(),
        prop::collection::vec((path_type(), path()), 0..8),
        any::<bool>(),
    );
    (prop::collection::vec(vhost, 0..6), any::<bool>()).prop_map(|(hosts, global)| {
        let virtual_hosts = hosts
            .into_iter()
            .enumerate()
            .map(|(h, (host, routes, default))| VirtualHost {
                host,
                tls: false,
                routes: routes
                    .into_iter()
                    .enumerate()
                    .map(|(i, (t, p))| Route {
                        backend: backend(&format!("v{h}-{i}")),
                        ..route(t, &p)
                    })
                    .collect(),
                default_backend: default.then(|| backend(&format!("v{h}-default"))),
                default_backend_ingress: None,
            })
            .map(Arc::new)
            .collect();
        Snapshot {
            virtual_hosts,
            default_backend: global.then(|| backend("global")),
            ..Snapshot::default()
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn router_agrees_with_the_reference(
        s in snapshot_strategy(),
        requests in prop::collection::vec((request_host(), request_path()), 1..24),
    ) {
        let router = Router::compile(&s);
        for (host, path) in &requests {
            prop_assert_eq!(
                outcome_of_router(&router, host, path),
                outcome_of_reference(&s, host, path),
                "host {:?} path {:?}", host, path
            );
        }
    }

    /// Shuffling the routes and the virtual hosts changes nothing, as long as no two routes
    /// repeat a path and type and no two virtual hosts a host (the control plane never sends
    /// those; the snapshot's order breaks those ties).
    #[test]
    fn order_does_not_matter(
        (s, shuffled) in snapshot_strategy()
            .prop_map(distinct)
            .prop_flat_map(|s| (Just(s.clone()), shuffle(s))),
        requests in prop::collection::vec((request_host(), request_path()), 1..24),
    ) {
        let (a, b) = (Router::compile(&s), Router::compile(&shuffled));
        for (host, path) in &requests {
            prop_assert_eq!(
                outcome_of_router(&a, host, path),
                outcome_of_router(&b, host, path),
                "host {:?} path {:?}", host, path
            );
        }
    }
}

/// Drops the routes and virtual hosts whose order would matter.
fn distinct(mut s: Snapshot) -> Snapshot {
    let mut seen_hosts = std::collections::HashSet::new();
    s.virtual_hosts.retain(|vh| {
        seen_hosts.insert(match &vh.host {
            HostMatch::Exact(n) => HostMatch::Exact(n.to_ascii_lowercase()),
            HostMatch::Wildcard(n) => HostMatch::Wildcard(n.to_ascii_lowercase()),
            HostMatch::Any => HostMatch::Any,
        })
    });
    for vh in &mut s.virtual_hosts {
        let mut seen = std::collections::HashSet::new();
        Arc::make_mut(vh)
            .routes
            .retain(|r| seen.insert((r.path.clone(), r.path_type)));
    }
    s
}

fn shuffle(s: Snapshot) -> impl Strategy<Value = Snapshot> {
    let hosts = s.virtual_hosts.clone();
    let per_host: Vec<_> = hosts
        .iter()
        .map(|vh| Just(vh.routes.clone()).prop_shuffle())
        .collect();
    (per_host, Just(hosts).prop_shuffle()).prop_map(move |(routes, hosts)| {
        let mut shuffled = s.clone();
        // Each host keeps its routes (shuffled), found by its (unique) host.
        shuffled.virtual_hosts = hosts
            .into_iter()
            .map(|mut vh| {
                let vh_mut = Arc::make_mut(&mut vh);
                let i = s
                    .virtual_hosts
                    .iter()
                    .position(|o| o.host == vh_mut.host)
                    .unwrap_or_default();
                vh_mut.routes = routes[i].clone();
                vh
            })
            .collect();
        shuffled
    })
}

#[test]
fn the_reference_is_not_trivially_agreeable() {
    // Guards the property test against a reference that cannot disagree: the rules pick
    // different answers here, and so must the reference.
    let s = snapshot(
        vec![vhost(
            "a.com",
            vec![route(Prefix, "/"), route(Prefix, "/x"), route(Exact, "/x")],
            Some("d"),
        )],
        Some("g"),
    );
    let answers: Vec<_> = [
        ("a.com", "/x"),
        ("a.com", "/x/y"),
        ("a.com", "/y"),
        ("b.com", "/x"),
    ]
    .iter()
    .map(|(h, p)| outcome_of_reference(&s, h, p))
    .collect();
    assert_eq!(
        answers[0].as_ref().map(|a| a.2.clone()),
        Some(backend("Exact /x"))
    );
    assert_eq!(
        answers[1].as_ref().map(|a| a.2.clone()),
        Some(backend("Prefix /x"))
    );
    assert_eq!(
        answers[2].as_ref().map(|a| a.2.clone()),
        Some(backend("Prefix /"))
    );
    assert_eq!(
        answers[3].as_ref().map(|a| (a.0, a.2.clone())),
        Some((2, backend("g")))
    );
}
