//! Router compile and lookup: 10,000 hosts with a few paths each (whole `Router::route`), and
//! one host with 1,000 paths (`HostRoutes::route`, the path step alone) against a sorted scan
//! of the routes, the simpler design the trie was measured against.
//!
//! `cargo bench -p ferry-proxy --bench router`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use ferry_model::{
    Backend, BackendPort, ClusterKey, HostMatch, IngressRef, PathType, Route, Snapshot, VirtualHost,
};
use ferry_proxy::Router;

fn route(path: &str, path_type: PathType, service: &str) -> Route {
    Route {
        path: path.into(),
        path_type,
        backend: Backend::Service {
            namespace: "bench".into(),
            name: service.into(),
            port: BackendPort::Number(80),
            cluster: Some(ClusterKey {
                namespace: "bench".into(),
                service: service.into(),
                port: 80,
                protocol: ferry_model::Protocol::TCP,
            }),
        },
        ingress: IngressRef::new("bench", service),
        canary: None,
    }
}

/// 10,000 exact hosts `h{i}.example.com` with `/`, `/api`, `/static` (Prefix) and `/healthz`
/// (Exact), 100 wildcard hosts `*.w{i}.example.com` with `/` and `/api`, and a catch-all.
fn many_hosts() -> Snapshot {
    let mut virtual_hosts = Vec::new();
    for i in 0..10_000 {
        let svc = format!("web{i}");
        virtual_hosts.push(VirtualHost {
            host: HostMatch::parse(&format!("h{i}.example.com")),
            tls: false,
            routes: vec![
                route("/healthz", PathType::Exact, &svc),
                route("/static", PathType::Prefix, &svc),
                route("/api", PathType::Prefix, &svc),
                route("/", PathType::Prefix, &svc),
            ],
            default_backend: None,
            default_backend_ingress: None,
        });
    }
    for i in 0..100 {
        let svc = format!("wild{i}");
        virtual_hosts.push(VirtualHost {
            host: HostMatch::parse(&format!("*.w{i}.example.com")),
            tls: false,
            routes: vec![
                route("/api", PathType::Prefix, &svc),
                route("/", PathType::Prefix, &svc),
            ],
            default_backend: None,
            default_backend_ingress: None,
        });
    }
    Snapshot {
        virtual_hosts: virtual_hosts.into_iter().map(Arc::new).collect(),
        default_backend: Some(route("/", PathType::Prefix, "catch-all").backend),
        ..Snapshot::default()
    }
}

/// One host with 1,000 routes: `/svc{i}` and `/svc{i}/api` (Prefix) for 400 services, 199
/// Exact `/svc{i}/api/health`, and `/`.
fn many_paths() -> Vec<Route> {
    let mut routes = Vec::new();
    for i in 0..400 {
        let svc = format!("svc{i}");
        routes.push(route(&format!("/{svc}"), PathType::Prefix, &svc));
        routes.push(route(&format!("/{svc}/api"), PathType::Prefix, &svc));
        if i < 199 {
            routes.push(route(&format!("/{svc}/api/health"), PathType::Exact, &svc));
        }
    }
    routes.push(route("/", PathType::Prefix, "root"));
    assert_eq!(routes.len(), 1_000);
    routes
}

fn one_host(routes: Vec<Route>) -> Snapshot {
    Snapshot {
        virtual_hosts: vec![Arc::new(VirtualHost {
            host: HostMatch::parse("shop.example.com"),
            tls: false,
            routes,
            default_backend: None,
            default_backend_ingress: None,
        })],
        ..Snapshot::default()
    }
}

/// The alternative: routes sorted by precedence, the first that matches wins.
struct Scan {
    routes: Vec<Route>,
}

impl Scan {
    fn new(mut routes: Vec<Route>) -> Scan {
        let key = |r: &Route| {
            let exact = r.path_type.is_exact();
            let len = if exact {
                r.path.len()
            } else {
                r.path.trim_end_matches('/').len()
            };
            (std::cmp::Reverse(len), !exact)
        };
        routes.sort_by_key(key);
        Scan { routes }
    }

    fn route(&self, path: &str) -> Option<&Route> {
        let path = path.split('?').next().unwrap_or_default();
        self.routes.iter().find(|r| {
            if r.path_type.is_exact() {
                r.path == path
            } else {
                let p = r.path.trim_end_matches('/');
                path.starts_with(p) && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
            }
        })
    }
}

fn bench(c: &mut Criterion) {
    let hosts = many_hosts();
    let mut g = c.benchmark_group("router");

    g.bench_function("compile 10,000 hosts x 4 paths", |b| {
        b.iter(|| Router::compile(black_box(&hosts)))
    });
    let router = Router::compile(&hosts);
    g.bench_function("10,000 hosts: exact host, prefix path", |b| {
        b.iter(|| {
            router.route(
                black_box("h5000.example.com"),
                black_box("/api/v1/users?id=7"),
            )
        })
    });
    g.bench_function("10,000 hosts: exact host, exact path", |b| {
        b.iter(|| router.route(black_box("h5000.example.com"), black_box("/healthz")))
    });
    g.bench_function("10,000 hosts: mixed-case host with port", |b| {
        b.iter(|| {
            router.route(
                black_box("H5000.Example.com:8443"),
                black_box("/static/app.js"),
            )
        })
    });
    g.bench_function("10,000 hosts: wildcard host", |b| {
        b.iter(|| router.route(black_box("shop.w50.example.com"), black_box("/api/cart")))
    });
    g.bench_function("10,000 hosts: unknown host, catch-all", |b| {
        b.iter(|| router.route(black_box("nobody.example.org"), black_box("/")))
    });

    let paths = many_paths();
    let big = Router::compile(&one_host(paths.clone()));
    let big_host = big.virtual_host("shop.example.com").expect("the host");
    let scan = Scan::new(paths.clone());
    g.bench_function("compile 1 host x 1,000 paths", |b| {
        let s = one_host(paths.clone());
        b.iter(|| Router::compile(black_box(&s)))
    });
    for (name, path) in [
        ("deep prefix", "/svc300/api/v1/orders?page=2"),
        ("exact", "/svc150/api/health"),
        ("falls to /", "/unknown/page"),
    ] {
        g.bench_function(format!("1,000 paths, trie: {name}"), |b| {
            b.iter(|| big_host.route(black_box(path)))
        });
        g.bench_function(format!("1,000 paths, sorted scan: {name}"), |b| {
            b.iter(|| scan.route(black_box(path)))
        });
    }

    // A typical host: does the trie cost anything against a scan of four routes?
    let few = vec![
        route("/healthz", PathType::Exact, "web"),
        route("/static", PathType::Prefix, "web"),
        route("/api", PathType::Prefix, "api"),
        route("/", PathType::Prefix, "web"),
    ];
    let small = Router::compile(&one_host(few.clone()));
    let small_host = small.virtual_host("shop.example.com").expect("the host");
    let scan = Scan::new(few);
    g.bench_function("4 paths, trie: /api/v1/users", |b| {
        b.iter(|| small_host.route(black_box("/api/v1/users")))
    });
    g.bench_function("4 paths, sorted scan: /api/v1/users", |b| {
        b.iter(|| scan.route(black_box("/api/v1/users")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
