//! The sidecar's golden signals, registered into the registry the process hands in (never
//! global). Every name is `ferry_sidecar_*`; `direction` is `inbound` or `outbound`.
//!
//! HTTP requests and their latency are labelled by direction, `peer` and `route`. The peer is
//! the client's identity on the inbound side and the expected server identity on the outbound
//! side; `-` when there is none (plaintext). The route is the app port on the inbound side and
//! the Service as routed (`name.namespace.svc:port`) on the outbound side; `-` when the
//! destination is no longer a Service.
//!
//! Cardinality is bounded twice: peers and routes are bounded by the workloads that talk to
//! this one and the Services it calls, and each direction keeps at most [`MAX_ROUTE_SERIES`]
//! (peer, route) pairs; requests past that are counted under `peer="overflow",
//! route="overflow"`, so a scan over many ports or Services cannot grow the registry.
//!
//! The (peer, route) handles are resolved once ([`Metrics::inbound_http`] per connection,
//! [`Metrics::outbound_http`] per request through one map read) and count without a family
//! lookup after the first request of each status class.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::detect::Detected;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// The most (peer, route) pairs one direction labels; the rest count as `overflow`.
pub const MAX_ROUTE_SERIES: usize = 256;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub direction: &'static str,
    pub peer: String,
    pub route: String,
    /// `2xx` … `5xx`, or `error` when no response came.
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub direction: &'static str,
    pub peer: String,
    pub route: String,
}

/// The status classes, in the order of [`HttpMetrics`]'s counters.
const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

fn status_class(status: Option<u16>) -> usize {
    match status {
        Some(100..=199) => 0,
        Some(200..=299) => 1,
        Some(300..=399) => 2,
        Some(400..=499) => 3,
        Some(_) => 4,
        None => 5,
    }
}

/// The request counters and latency histogram of one (direction, peer, route).
#[derive(Debug)]
pub struct HttpMetrics {
    labels: RouteLabels,
    requests: Family<RequestLabels, Counter>,
    /// Resolved at the first request of each status class (a series appears when it counts).
    statuses: [OnceLock<Counter>; 6],
    latency: Histogram,
}

impl HttpMetrics {
    /// One request: its status (`None` when no response came) and the time to the response
    /// head.
    pub fn observe(&self, status: Option<u16>, seconds: f64) {
        let class = status_class(status);
        self.statuses[class]
            .get_or_init(|| {
                self.requests
                    .get_or_create(&RequestLabels {
                        direction: self.labels.direction,
                        peer: self.labels.peer.clone(),
                        route: self.labels.route.clone(),
                        status: STATUS_CLASSES[class],
                    })
                    .clone()
            })
            .inc();
        self.latency.observe(seconds);
    }
}

/// The resolved handles of one direction: route key → peer → handles.
#[derive(Debug, Default)]
struct Routes {
    by_route: HashMap<String, HashMap<String, Arc<HttpMetrics>>>,
    count: usize,
    overflow: Option<Arc<HttpMetrics>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub direction: &'static str,
    pub outcome: &'static str,
}

/// What the sidecar counts.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    inbound_routes: RwLock<Routes>,
    outbound_routes: RwLock<Routes>,
    tcp_connections: Family<DirectionLabels, Counter>,
    tcp_open: Family<DirectionLabels, Gauge>,
    /// Bytes from the client towards the server side.
    tcp_sent: Family<DirectionLabels, Counter>,
    /// Bytes from the server side back to the client.
    tcp_received: Family<DirectionLabels, Counter>,
    handshakes: Family<OutcomeLabels, Counter>,
    detections: Family<OutcomeLabels, Counter>,
    authz: Family<OutcomeLabels, Counter>,
    plaintext: Family<OutcomeLabels, Counter>,
    client_address_fallbacks: Counter,
    certificate_expiry: Gauge,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~26 s: a hop's added latency is in the first buckets, a slow app in the last.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 19,
    ))
}

impl Metrics {
    /// Registers the metrics into `registry` (under the `ferry_sidecar` prefix).
    /// `report_expiry` false leaves `certificate_expiry_timestamp_seconds` to whoever publishes
    /// the credentials and registers it under the same name (the runtime's `IdentityClient`).
    pub fn new(registry: &mut Registry, report_expiry: bool) -> Metrics {
        let m = Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            inbound_routes: RwLock::default(),
            outbound_routes: RwLock::default(),
            tcp_connections: Family::default(),
            tcp_open: Family::default(),
            tcp_sent: Family::default(),
            tcp_received: Family::default(),
            handshakes: Family::default(),
            detections: Family::default(),
            authz: Family::default(),
            plaintext: Family::default(),
            client_address_fallbacks: Counter::default(),
            certificate_expiry: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("ferry_sidecar");
        r.register(
            "requests",
            "HTTP requests by direction, peer identity, route and status class",
            m.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "HTTP request latency to the response head, by direction, peer identity and route",
            m.latency.clone(),
        );
        r.register(
            "tcp_connections",
            "Connections accepted, by direction",
            m.tcp_connections.clone(),
        );
        r.register(
            "tcp_open_connections",
            "Connections open now, by direction",
            m.tcp_open.clone(),
        );
        r.register(
            "tcp_sent_bytes",
            "Opaque bytes carried from the client towards the server",
            m.tcp_sent.clone(),
        );
        r.register(
            "tcp_received_bytes",
            "Opaque bytes carried from the server back to the client",
            m.tcp_received.clone(),
        );
        r.register(
            "tls_handshakes",
            "Mesh mTLS handshakes by outcome (ok, failed)",
            m.handshakes.clone(),
        );
        r.register(
            "detections",
            "Protocol detection outcomes",
            m.detections.clone(),
        );
        r.register(
            "authz_decisions",
            "Inbound authorization decisions (allow, deny_http, deny_tcp, deny_other_destination: redirected but addressed to another host)",
            m.authz.clone(),
        );
        r.register(
            "client_address_fallbacks",
            "Inbound connections to the app made from the sidecar's own address, not the client's (the kernel refused it, or the connection was not redirected)",
            m.client_address_fallbacks.clone(),
        );
        r.register("plaintext_connections", "Connections without mTLS, by why (permissive, refused_strict, unmeshed_endpoint, no_destination)", m.plaintext.clone());
        if report_expiry {
            r.register(
                "certificate_expiry_timestamp_seconds",
                "The workload certificate's notAfter, in seconds since the epoch",
                m.certificate_expiry.clone(),
            );
        }
        m
    }

    /// The handles of inbound requests from `peer` to the app's `port`: resolved once per
    /// connection.
    pub fn inbound_http(&self, peer: Option<&str>, port: u16) -> Arc<HttpMetrics> {
        let route = port.to_string();
        self.resolve(Direction::Inbound, peer, &route, || route.clone())
    }

    /// The handles of outbound requests to `peer` through `service` (`namespace/name:port`, as
    /// the destination names it; `None` when the destination is no longer a Service).
    pub fn outbound_http(&self, peer: Option<&str>, service: Option<&str>) -> Arc<HttpMetrics> {
        let key = service.unwrap_or("-");
        self.resolve(Direction::Outbound, peer, key, || service_route(key))
    }

    fn resolve(
        &self,
        direction: Direction,
        peer: Option<&str>,
        key: &str,
        route: impl FnOnce() -> String,
    ) -> Arc<HttpMetrics> {
        let peer = peer.unwrap_or("-");
        let routes = match direction {
            Direction::Inbound => &self.inbound_routes,
            Direction::Outbound => &self.outbound_routes,
        };
        {
            let read = routes.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(found) = read.by_route.get(key).and_then(|peers| peers.get(peer)) {
                return found.clone();
            }
        }
        let mut write = routes.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = write.by_route.get(key).and_then(|peers| peers.get(peer)) {
            return found.clone();
        }
        if write.count >= MAX_ROUTE_SERIES {
            let overflow = write.overflow.get_or_insert_with(|| {
                Arc::new(self.handles(direction, "overflow", "overflow".to_owned()))
            });
            return overflow.clone();
        }
        let handles = Arc::new(self.handles(direction, peer, route()));
        write.count += 1;
        write
            .by_route
            .entry(key.to_owned())
            .or_default()
            .insert(peer.to_owned(), handles.clone());
        handles
    }

    fn handles(&self, direction: Direction, peer: &str, route: String) -> HttpMetrics {
        let labels = RouteLabels {
            direction: direction.label(),
            peer: peer.to_owned(),
            route,
        };
        let latency = self.latency.get_or_create(&labels).clone();
        HttpMetrics {
            labels,
            requests: self.requests.clone(),
            statuses: Default::default(),
            latency,
        }
    }

    /// A connection accepted; the guard counts it open until dropped.
    pub fn connection(&self, direction: Direction) -> OpenGuard {
        let labels = DirectionLabels {
            direction: direction.label(),
        };
        self.tcp_connections.get_or_create(&labels).inc();
        let gauge = self.tcp_open.get_or_create(&labels).clone();
        gauge.inc();
        OpenGuard(gauge)
    }

    pub fn bytes(&self, direction: Direction, sent: u64, received: u64) {
        let labels = DirectionLabels {
            direction: direction.label(),
        };
        self.tcp_sent.get_or_create(&labels).inc_by(sent);
        self.tcp_received.get_or_create(&labels).inc_by(received);
    }

    pub fn handshake(&self, direction: Direction, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.handshakes
            .get_or_create(&OutcomeLabels {
                direction: direction.label(),
                outcome,
            })
            .inc();
    }

    pub fn detected(&self, direction: Direction, detected: Detected) {
        self.detections
            .get_or_create(&OutcomeLabels {
                direction: direction.label(),
                outcome: detected.label(),
            })
            .inc();
    }

    pub fn authz(&self, outcome: &'static str) {
        self.authz
            .get_or_create(&OutcomeLabels {
                direction: "inbound",
                outcome,
            })
            .inc();
    }

    /// The counter of connections to the app that could not come from their client's address.
    pub fn client_address_fallbacks(&self) -> Counter {
        self.client_address_fallbacks.clone()
    }

    pub fn plaintext(&self, direction: Direction, outcome: &'static str) {
        self.plaintext
            .get_or_create(&OutcomeLabels {
                direction: direction.label(),
                outcome,
            })
            .inc();
    }

    pub fn certificate_expires(&self, unix_seconds: i64) {
        self.certificate_expiry.set(unix_seconds);
    }
}

/// The route label of a Service port the destination names `namespace/name:port`:
/// `name.namespace.svc:port`, the authority an app in the cluster dials; anything else as it
/// is.
pub fn service_route(service: &str) -> String {
    match service.split_once('/') {
        Some((namespace, name_port)) => match name_port.rsplit_once(':') {
            Some((name, port)) => format!("{name}.{namespace}.svc:{port}"),
            None => format!("{name_port}.{namespace}.svc"),
        },
        None => service.to_owned(),
    }
}

/// Counts a connection as open while it lives.
#[derive(Debug)]
pub struct OpenGuard(Gauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn requests_and_latency_carry_direction_peer_and_route() {
        let mut registry = Registry::default();
        let m = Metrics::new(&mut registry, false);
        let inbound = m.inbound_http(Some("spiffe://cluster.local/ns/a/sa/web"), 8080);
        inbound.observe(Some(200), 0.002);
        inbound.observe(Some(503), 0.002);
        m.outbound_http(None, Some("shop/api:80"))
            .observe(None, 0.1);
        let out = text(&registry);
        for line in [
            r#"ferry_sidecar_requests_total{direction="inbound",peer="spiffe://cluster.local/ns/a/sa/web",route="8080",status="2xx"} 1"#,
            r#"ferry_sidecar_requests_total{direction="inbound",peer="spiffe://cluster.local/ns/a/sa/web",route="8080",status="5xx"} 1"#,
            r#"ferry_sidecar_requests_total{direction="outbound",peer="-",route="api.shop.svc:80",status="error"} 1"#,
            r#"ferry_sidecar_request_duration_seconds_count{direction="inbound",peer="spiffe://cluster.local/ns/a/sa/web",route="8080"} 2"#,
            r#"ferry_sidecar_request_duration_seconds_bucket{le="0.0032",direction="inbound",peer="spiffe://cluster.local/ns/a/sa/web",route="8080"} 2"#,
            r#"ferry_sidecar_request_duration_seconds_count{direction="outbound",peer="-",route="api.shop.svc:80"} 1"#,
        ] {
            assert!(out.contains(line), "{line} in:\n{out}");
        }
        // No status class is listed before it counts.
        assert!(!out.contains(r#"status="4xx""#), "{out}");
    }

    #[test]
    fn the_same_peer_and_route_share_their_handles() {
        let mut registry = Registry::default();
        let m = Metrics::new(&mut registry, false);
        let a = m.outbound_http(Some("spiffe://x/ns/a/sa/b"), Some("a/b:80"));
        let b = m.outbound_http(Some("spiffe://x/ns/a/sa/b"), Some("a/b:80"));
        assert!(Arc::ptr_eq(&a, &b));
        let other = m.outbound_http(Some("spiffe://x/ns/a/sa/b"), Some("a/c:80"));
        assert!(!Arc::ptr_eq(&a, &other));
    }

    #[test]
    fn series_past_the_bound_count_as_overflow() {
        let mut registry = Registry::default();
        let m = Metrics::new(&mut registry, false);
        for port in 0..(MAX_ROUTE_SERIES as u16 + 10) {
            m.inbound_http(None, port).observe(Some(200), 0.001);
        }
        let out = text(&registry);
        let series = out
            .lines()
            .filter(|l| l.starts_with("ferry_sidecar_requests_total{direction=\"inbound\""))
            .count();
        assert_eq!(series, MAX_ROUTE_SERIES + 1, "{out}");
        assert!(
            out.contains(r#"ferry_sidecar_requests_total{direction="inbound",peer="overflow",route="overflow",status="2xx"} 10"#),
            "{out}"
        );
        // The outbound side has its own bound.
        m.outbound_http(None, Some("a/b:1"))
            .observe(Some(200), 0.001);
        assert!(text(&registry).contains(r#"route="b.a.svc:1",status="2xx"} 1"#));
    }

    #[test]
    fn service_routes_read_as_the_authority_apps_dial() {
        assert_eq!(service_route("shop/api:8080"), "api.shop.svc:8080");
        assert_eq!(service_route("?:80"), "?:80");
        assert_eq!(service_route("-"), "-");
    }
}
