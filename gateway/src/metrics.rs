//! The gateway's metrics, registered into the registry handed to it.

use http::StatusCode;
use std::fmt::Write;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A status class: `1xx` … `5xx`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Class(u8);

impl EncodeLabelValue for Class {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        write!(encoder, "{}xx", self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    class: Class,
}

/// Counters of the gateway. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    requests: Family<StatusLabels, Counter>,
    connect_errors: Counter,
    retries: Counter,
    pub(crate) connections: Gauge,
    pub(crate) tls_handshake_failures: Counter,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            requests: Family::default(),
            connect_errors: Counter::default(),
            retries: Counter::default(),
            connections: Gauge::default(),
            tls_handshake_failures: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("ferry_gateway");
        r.register(
            "requests",
            "Requests answered, by status class",
            m.requests.clone(),
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
            "connections",
            "Client connections open",
            m.connections.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            m.tls_handshake_failures.clone(),
        );
        m
    }

    pub(crate) fn request(&self, status: StatusCode) {
        let class = Class((status.as_u16() / 100).clamp(1, 5) as u8);
        self.requests.get_or_create(&StatusLabels { class }).inc();
    }

    pub(crate) fn connect_error(&self) {
        self.connect_errors.inc();
    }

    pub(crate) fn retry(&self) {
        self.retries.inc();
    }
}
