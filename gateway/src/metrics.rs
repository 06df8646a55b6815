//! The gateway's metrics, registered into the registry handed to it.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use std::fmt::Write;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::pipeline::Context;

/// A status class: `1xx` … `5xx`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Class(u8);

impl EncodeLabelValue for Class {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        write!(encoder, "{}xx", self.0)
    }
}

/// The request's method, as sent.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct MethodLabel(Method);

impl EncodeLabelValue for MethodLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.0.as_str())
    }
}

/// Label values are shared strings made when a snapshot compiles, so counting a request
/// allocates nothing (a standard method's `Method` is inline too).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// `namespace/name` of the Ingress whose route served it; empty for none (404, defaults).
    ingress: Arc<str>,
    /// `namespace/service:port`; empty when no backend was reached.
    service: Arc<str>,
    method: MethodLabel,
    class: Class,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: Arc<str>,
}

/// A connection's handles for the labels of its last request ([`Metrics::request_on`]).
#[derive(Debug, Default)]
pub(crate) struct Handles {
    last: Option<Handle>,
}

#[derive(Debug)]
struct Handle {
    ingress: Arc<str>,
    service: Arc<str>,
    method: Method,
    class: Class,
    counter: Counter,
    duration: Histogram,
}

/// Counters of the gateway. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<ServiceLabels, Histogram, fn() -> Histogram>,
    connect_errors: Counter,
    retries: Counter,
    ejections: Counter,
    pub(crate) connections: Gauge,
    pub(crate) tunnels: Gauge,
    pub(crate) tls_handshakes: Counter,
    pub(crate) tls_handshake_failures: Counter,
    /// The label value for none.
    none: Arc<str>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| {
                // 0.5 ms to ~16 s.
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            connect_errors: Counter::default(),
            retries: Counter::default(),
            ejections: Counter::default(),
            connections: Gauge::default(),
            tunnels: Gauge::default(),
            tls_handshakes: Counter::default(),
            tls_handshake_failures: Counter::default(),
            none: Arc::from(""),
        };
        let r = registry.sub_registry_with_prefix("ferry_gateway");
        r.register(
            "requests",
            "Requests answered, by Ingress, Service, method and status class",
            m.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response head, by Service",
            m.duration.clone(),
        );
        r.register(
            "upstream_connect_errors",
            "Connections to endpoints that failed",
            m.connect_errors.clone(),
        );
        r.register(
            "retries",
            "Requests tried again on another endpoint",
            m.retries.clone(),
        );
        r.register(
            "ejections",
            "Endpoints ejected by passive health (failing in a row)",
            m.ejections.clone(),
        );
        r.register(
            "connections",
            "Client connections open",
            m.connections.clone(),
        );
        r.register(
            "tunnels",
            "WebSocket tunnels open (each also counts in connections)",
            m.tunnels.clone(),
        );
        r.register(
            "tls_handshakes",
            "TLS handshakes completed",
            m.tls_handshakes.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            m.tls_handshake_failures.clone(),
        );
        m
    }

    /// Counts a request on a connection that keeps the handles of its last request's labels
    /// in `handles`: the next request with the same labels (the common case on a keep-alive
    /// connection) is counted without looking its labels up (no hashing, no lock).
    pub(crate) fn request_on(
        &self,
        handles: &mut Handles,
        cx: &Context,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let class = Class((status.as_u16() / 100).clamp(1, 5) as u8);
        let same = |a: &Option<Arc<str>>, b: &Arc<str>| match a {
            Some(a) => Arc::ptr_eq(a, b),
            None => Arc::ptr_eq(&self.none, b),
        };
        let hit = handles.last.as_ref().filter(|h| {
            h.class == class
                && h.method == cx.method
                && same(&cx.ingress, &h.ingress)
                && same(&cx.service, &h.service)
        });
        let handle = match hit {
            Some(handle) => handle,
            None => {
                let label = |v: &Option<Arc<str>>| v.clone().unwrap_or_else(|| self.none.clone());
                let (ingress, service) = (label(&cx.ingress), label(&cx.service));
                let labels = RequestLabels {
                    ingress: ingress.clone(),
                    service: service.clone(),
                    method: MethodLabel(cx.method.clone()),
                    class,
                };
                let counter = self.requests.get_or_create(&labels).clone();
                let duration = self
                    .duration
                    .get_or_create(&ServiceLabels {
                        service: service.clone(),
                    })
                    .clone();
                handles.last.insert(Handle {
                    ingress,
                    service,
                    method: cx.method.clone(),
                    class,
                    counter,
                    duration,
                })
            }
        };
        handle.counter.inc();
        handle.duration.observe(elapsed.as_secs_f64());
    }

    pub(crate) fn request(&self, cx: &Context, status: StatusCode, elapsed: Duration) {
        let class = Class((status.as_u16() / 100).clamp(1, 5) as u8);
        let label = |v: &Option<Arc<str>>| v.clone().unwrap_or_else(|| self.none.clone());
        let service = label(&cx.service);
        self.requests
            .get_or_create(&RequestLabels {
                ingress: label(&cx.ingress),
                service: service.clone(),
                method: MethodLabel(cx.method.clone()),
                class,
            })
            .inc();
        self.duration
            .get_or_create(&ServiceLabels { service })
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn connect_error(&self) {
        self.connect_errors.inc();
    }

    pub(crate) fn ejection(&self) {
        self.ejections.inc();
    }

    pub(crate) fn retry(&self) {
        self.retries.inc();
    }
}
