//! The sidecar's golden signals, registered into the registry the process hands in (never
//! global). Every name is `ferry_sidecar_*`; `direction` is `inbound` or `outbound`.
//!
//! Peer identity labels carry the client's identity on the inbound side and the expected
//! server identity on the outbound side; `-` when there is none (plaintext). Their number is
//! bounded by the workloads that talk to this one.

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub direction: &'static str,
    pub peer: String,
    /// `2xx` … `5xx`, or `error` when no response came.
    pub status: &'static str,
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
    latency: Family<DirectionLabels, Histogram>,
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
            tcp_connections: Family::default(),
            tcp_open: Family::default(),
            tcp_sent: Family::default(),
            tcp_received: Family::default(),
            handshakes: Family::default(),
            detections: Family::default(),
            authz: Family::default(),
            plaintext: Family::default(),
            certificate_expiry: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("ferry_sidecar");
        r.register(
            "requests",
            "HTTP requests by direction, peer identity and status class",
            m.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "HTTP request latency to the response head",
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
            "Inbound authorization decisions (allow, deny_http, deny_tcp)",
            m.authz.clone(),
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

    pub fn request(
        &self,
        direction: Direction,
        peer: Option<&str>,
        status: Option<u16>,
        seconds: f64,
    ) {
        let status = match status {
            Some(100..=199) => "1xx",
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(_) => "5xx",
            None => "error",
        };
        let peer = peer.unwrap_or("-").to_owned();
        self.requests
            .get_or_create(&RequestLabels {
                direction: direction.label(),
                peer,
                status,
            })
            .inc();
        self.latency
            .get_or_create(&DirectionLabels {
                direction: direction.label(),
            })
            .observe(seconds);
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

/// Counts a connection as open while it lives.
#[derive(Debug)]
pub struct OpenGuard(Gauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
