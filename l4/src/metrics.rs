//! The L4 proxy's metrics, registered into the registry handed to it.

use std::fmt::Write;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// How a client connection ended up.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ConnectionOutcome {
    /// Connected to an endpoint and forwarded.
    Forwarded,
    /// Accepted while its address was being withdrawn: no endpoint to send it to. (While a
    /// Service port has no endpoint at all nothing listens, and the kernel refuses uncounted.)
    NoEndpoint,
    /// Every endpoint failed to connect.
    Failed,
}

impl ConnectionOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forwarded => "forwarded",
            Self::NoEndpoint => "no_endpoint",
            Self::Failed => "failed",
        }
    }
}

impl EncodeLabelValue for ConnectionOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    /// `namespace/service:port`; empty when the address had no route.
    service: String,
    result: ConnectionOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

/// Counters of the L4 proxy. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    connections: Family<ConnectionLabels, Counter>,
    connect_errors: Family<ServiceLabels, Counter>,
    received: Family<ServiceLabels, Counter>,
    sent: Family<ServiceLabels, Counter>,
    pub(crate) open: Gauge,
    pub(crate) listeners: Gauge,
    pub(crate) unbound: Gauge,
    pub(crate) bind_errors: Counter,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            connections: Family::default(),
            connect_errors: Family::default(),
            received: Family::default(),
            sent: Family::default(),
            open: Gauge::default(),
            listeners: Gauge::default(),
            unbound: Gauge::default(),
            bind_errors: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("ferry_l4");
        r.register(
            "connections",
            "Client connections accepted, by Service port and result (forwarded, no_endpoint, failed)",
            m.connections.clone(),
        );
        r.register(
            "open_connections",
            "Client connections open now",
            m.open.clone(),
        );
        r.register(
            "endpoint_connect_errors",
            "Connections to endpoints that were refused or timed out, by Service port",
            m.connect_errors.clone(),
        );
        r.register_with_unit(
            "received",
            "Bytes from clients forwarded to endpoints, by Service port, counted when a connection ends",
            Unit::Bytes,
            m.received.clone(),
        );
        r.register_with_unit(
            "sent",
            "Bytes from endpoints forwarded to clients, by Service port, counted when a connection ends",
            Unit::Bytes,
            m.sent.clone(),
        );
        r.register(
            "listeners",
            "Addresses listened on now (cluster IP and node ports)",
            m.listeners.clone(),
        );
        r.register(
            "unbound_addresses",
            "Addresses to listen on that would not bind, tried again every few seconds",
            m.unbound.clone(),
        );
        r.register(
            "bind_errors",
            "Attempts to listen on an address that failed (in use, not available, privileged port)",
            m.bind_errors.clone(),
        );
        m
    }

    pub(crate) fn connection(&self, service: &str, result: ConnectionOutcome) {
        self.connections
            .get_or_create(&ConnectionLabels {
                service: service.to_owned(),
                result,
            })
            .inc();
    }

    pub(crate) fn connect_error(&self, service: &str) {
        self.connect_errors
            .get_or_create(&ServiceLabels {
                service: service.to_owned(),
            })
            .inc();
    }

    pub(crate) fn bytes(&self, service: &str, received: u64, sent: u64) {
        let labels = ServiceLabels {
            service: service.to_owned(),
        };
        self.received.get_or_create(&labels).inc_by(received);
        self.sent.get_or_create(&labels).inc_by(sent);
    }
}
