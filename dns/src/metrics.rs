//! The DNS part's metrics, registered into the registry handed to it. Label values are small
//! enums, so counting a query allocates nothing; the counters the hot path adds to (answers
//! with NOERROR) are resolved once, so it does not look labels up either.

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

/// How many `QType`s there are, and each in the order of its discriminant.
const QTYPES: usize = QType::other as usize + 1;
const QTYPE_ORDER: [QType; QTYPES] = [
    QType::A,
    QType::AAAA,
    QType::CNAME,
    QType::PTR,
    QType::SRV,
    QType::TXT,
    QType::SOA,
    QType::NS,
    QType::MX,
    QType::ANY,
    QType::other,
];

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
    /// `queries`' NOERROR counters, by transport (UDP, TCP), then type.
    answered: [[Counter; QTYPES]; 2],
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
        let queries = Family::<QueryLabels, Counter>::default();
        let answered = [Proto::udp, Proto::tcp].map(|proto| {
            QTYPE_ORDER.map(|qtype| {
                queries
                    .get_or_create(&QueryLabels {
                        proto,
                        qtype,
                        rcode: Rcode::NOERROR,
                    })
                    .clone()
            })
        });
        let m = Metrics {
            queries,
            answered,
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

    /// As [`Metrics::query`] for a NOERROR answer, through the counters resolved at start.
    pub(crate) fn answered(&self, tcp: bool, qtype: RecordType, seconds: f64) {
        self.answered[usize::from(tcp)][QType::from(qtype) as usize].inc();
        self.duration.observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;

    use super::*;

    /// The hot path's counters are the family's own series, each under its own labels.
    #[test]
    fn resolved_counters_count_under_their_labels() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.answered(false, RecordType::AAAA, 0.0);
        m.answered(false, RecordType::AAAA, 0.0);
        m.answered(true, RecordType::SRV, 0.0);
        m.answered(false, RecordType::NULL, 0.0);
        m.query(false, Some(RecordType::AAAA), ResponseCode::NoError, 0.0);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            r#"ferry_dns_queries_total{proto="udp",qtype="AAAA",rcode="NOERROR"} 3"#,
            r#"ferry_dns_queries_total{proto="tcp",qtype="SRV",rcode="NOERROR"} 1"#,
            r#"ferry_dns_queries_total{proto="udp",qtype="other",rcode="NOERROR"} 1"#,
            r#"ferry_dns_queries_total{proto="udp",qtype="A",rcode="NOERROR"} 0"#,
            "ferry_dns_query_duration_seconds_count 5",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
    }
}
