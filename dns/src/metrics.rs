//! The DNS part's metrics, registered into the registry handed to it. Label values are small
//! enums, so counting a query allocates nothing.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms, non_camel_case_types)] // as DNS spells them
enum QType {
    A,
    AAAA,
    CNAME,
    PTR,
    SRV,
    TXT,
    SOA,
    NS,
    MX,
    ANY,
    other,
}

impl From<RecordType> for QType {
    fn from(t: RecordType) -> Self {
        match t {
            RecordType::A => Self::A,
            RecordType::AAAA => Self::AAAA,
            RecordType::CNAME => Self::CNAME,
            RecordType::PTR => Self::PTR,
            RecordType::SRV => Self::SRV,
            RecordType::TXT => Self::TXT,
            RecordType::SOA => Self::SOA,
            RecordType::NS => Self::NS,
            RecordType::MX => Self::MX,
            RecordType::ANY => Self::ANY,
            _ => Self::other,
        }
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms, non_camel_case_types)]
enum Rcode {
    NOERROR,
    FORMERR,
    SERVFAIL,
    NXDOMAIN,
    NOTIMP,
    REFUSED,
    BADVERS,
    other,
}

impl From<ResponseCode> for Rcode {
    fn from(r: ResponseCode) -> Self {
        match r {
            ResponseCode::NoError => Self::NOERROR,
            ResponseCode::FormErr => Self::FORMERR,
            ResponseCode::ServFail => Self::SERVFAIL,
            ResponseCode::NXDomain => Self::NXDOMAIN,
            ResponseCode::NotImp => Self::NOTIMP,
            ResponseCode::Refused => Self::REFUSED,
            ResponseCode::BADVERS => Self::BADVERS,
            _ => Self::other,
        }
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Proto {
    udp,
    tcp,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    proto: Proto,
    qtype: QType,
    rcode: Rcode,
}

/// Counters and histograms of the DNS part. Cheap to clone (each metric is shared).
#[derive(Clone, Debug)]
pub struct Metrics {
    queries: Family<QueryLabels, Counter>,
    duration: Histogram,
    pub(crate) cache_hits: Counter,
    pub(crate) cache_misses: Counter,
    pub(crate) cache_entries: Gauge,
    pub(crate) forwarded: Counter,
    pub(crate) upstream_failures: Counter,
    pub(crate) loops: Counter,
    pub(crate) zone_names: Gauge,
    pub(crate) truncated: Counter,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            queries: Family::default(),
            // 10 µs to ~10 s.
            duration: Histogram::new(exponential_buckets(0.00001, 2.0, 21)),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_entries: Gauge::default(),
            forwarded: Counter::default(),
            upstream_failures: Counter::default(),
            loops: Counter::default(),
            zone_names: Gauge::default(),
            truncated: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("ferry_dns");
        r.register(
            "queries",
            "Queries answered, by transport, type and response code",
            m.queries.clone(),
        );
        r.register(
            "query_duration_seconds",
            "Time from a query's arrival to its answer",
            m.duration.clone(),
        );
        r.register(
            "cache_hits",
            "Forwarded names answered from the cache",
            m.cache_hits.clone(),
        );
        r.register(
            "cache_misses",
            "Forwarded names not in the cache",
            m.cache_misses.clone(),
        );
        r.register(
            "cache_entries",
            "Entries in the forwarding cache",
            m.cache_entries.clone(),
        );
        r.register(
            "forwarded",
            "Queries sent to an upstream server",
            m.forwarded.clone(),
        );
        r.register(
            "upstream_failures",
            "Upstream queries that timed out, failed or answered SERVFAIL/REFUSED",
            m.upstream_failures.clone(),
        );
        r.register(
            "forward_loops",
            "Queries that came back to ferry from its own upstream (answered SERVFAIL)",
            m.loops.clone(),
        );
        r.register(
            "zone_names",
            "Names in the cluster zone being served",
            m.zone_names.clone(),
        );
        r.register(
            "truncated",
            "UDP answers truncated (TC) because they did not fit",
            m.truncated.clone(),
        );
        m
    }

    pub(crate) fn query(
        &self,
        tcp: bool,
        qtype: Option<RecordType>,
        rcode: ResponseCode,
        seconds: f64,
    ) {
        let labels = QueryLabels {
            proto: if tcp { Proto::tcp } else { Proto::udp },
            qtype: qtype.map_or(QType::other, QType::from),
            rcode: rcode.into(),
        };
        self.queries.get_or_create(&labels).inc();
        self.duration.observe(seconds);
    }
}
