//! Any bytes as a query, over UDP and over TCP: the handler answers or drops, never panics, and
//! an answer is a DNS message with the query's id, within the transport's limit.
#![no_main]

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use ferry_dns::handler::{Handler, Step, Transport};
use ferry_dns::metrics::Metrics;
use ferry_dns::ZoneIndex;
use libfuzzer_sys::fuzz_target;
use prometheus_client::registry::Registry;

/// A zone with every kind of record, built once.
fn handler() -> &'static Handler {
    static HANDLER: OnceLock<Handler> = OnceLock::new();
    HANDLER.get_or_init(|| {
        let snapshot: ferry_model::Snapshot =
            serde_json::from_str(include_str!("../snapshot.json")).expect("fuzz snapshot");
        let zone = ZoneIndex::compile(&snapshot, "cluster.local", 30).expect("zone");
        let metrics = Metrics::register(&mut Registry::default());
        Handler::new(Arc::new(ArcSwap::from_pointee(zone)), None, Some(Vec::new()), metrics)
    })
}

fuzz_target!(|data: &[u8]| {
    for transport in [Transport::Udp, Transport::Tcp] {
        match handler().start(data, transport) {
            Step::Answer(answer) => {
                assert!(answer.len() >= 12, "shorter than a header");
                assert_eq!(answer[..2], data[..2], "another id");
                assert_eq!(answer[2] & 0x80, 0x80, "not a response");
                if transport == Transport::Udp {
                    assert!(answer.len() <= usize::from(ferry_dns::handler::MAX_UDP_PAYLOAD));
                }
            }
            Step::Pending(_) | Step::Drop => {}
        }
    }
});
