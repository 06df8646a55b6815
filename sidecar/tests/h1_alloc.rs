//! Allocations per request through both sides of the sidecar on the HTTP/1 fast path (issue
//! 18: the goal is none): an app's keep-alive requests over loopback TCP to the outbound side,
//! balanced onto an endpoint that is the inbound side, authorized there and passed to the app,
//! answered, counted in both sides' metrics; all in one current-thread runtime, counted by
//! dhat's allocator in a binary of its own. Twice: in plaintext (an unmeshed endpoint, a
//! permissive inbound side), where nothing may allocate; and over mutual TLS between the sides
//! (a meshed endpoint, a strict inbound side), where rustls 0.23's buffered connection
//! allocates for each record: two for each it encrypts (the written slices gathered, and the
//! record) and one for each it decrypts (the plaintext), six a request, all of them rustls's
//! (found with dhat's heap profile): one of ours would show as a seventh.
//!
//! `cargo test -p ferry-sidecar --test h1_alloc` prints the figures and fails on any other
//! count once the connection is warm (on fewer too: an allowance grown stale would hide one of
//! ours). The count rests on each request and each answer going as one TLS record, as they do
//! here: the head and body of each are written together. No libtest harness (`harness = false`): the harness's own thread
//! allocates now and then, and dhat counts every thread.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use ferry_model::mesh::WorkloadId;
use ferry_model::proto::{self, destination_update::Update};
use ferry_proxy::BalancerConfig;
use ferry_sidecar::discover::{Answer, Discover, compile};
use ferry_sidecar::upstream::Identities;
use ferry_sidecar::{
    AllowAll, Inbound, InboundConfig, MeshTls, Metrics, MtlsMode, Outbound, OutboundConfig,
};
use ferry_testing::alloc;
use prometheus_client::registry::Registry;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

// The crate's test CA (a root issuing workload leaves as the control plane's CA does).
#[path = "../src/test_pki.rs"]
#[allow(dead_code)]
mod test_pki;
use test_pki::{Ca, id};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// The Service address the app dials (the outbound side's target: nothing is intercepted).
const SERVICE: &str = "10.96.0.10:80";

const REQUEST: &[u8] = b"GET /api/v1/orders?x=1 HTTP/1.1\r\n\
Host: web.shop.svc.cluster.local\r\n\
User-Agent: Go-http-client/1.1\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip\r\n\
X-Request-Id: 3f2a9c1e-8b7d-4a6f-9e21-5c0d7b3a1f42\r\n\r\n";

const ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";

/// One Service whose one endpoint is `endpoint`, without a sidecar.
#[derive(Debug)]
struct Fixed(HashMap<String, Answer>);

impl Discover for Fixed {
    fn get(&self, authority: &str) -> watch::Receiver<Answer> {
        let answer = self.0.get(authority).cloned().unwrap();
        watch::channel(answer).1
    }
}

/// The Service with `endpoint`, meshed with identity `id` when given.
fn destination(endpoint: SocketAddr, id: Option<&WorkloadId>) -> Arc<Fixed> {
    let std::net::IpAddr::V4(ip) = endpoint.ip() else {
        unreachable!("loopback is IPv4 here")
    };
    let update = proto::DestinationUpdate {
        version: 1,
        update: Some(Update::Endpoints(proto::DestinationEndpoints {
            port: 80,
            endpoints: vec![proto::DestinationEndpoint {
                address: ip.octets().to_vec(),
                port: u32::from(endpoint.port()),
                ready: true,
                identity: id.map(ToString::to_string),
                meshed: id.is_some(),
                ..Default::default()
            }],
            ..Default::default()
        })),
    };
    let answer = compile(&update, None, &BalancerConfig::default());
    Arc::new(Fixed(HashMap::from([(SERVICE.to_owned(), answer)])))
}

fn main() {
    alloc::run(
        "both_sides_allocate_nothing_of_their_own_per_request_once_warm",
        async {
            println!("plaintext between the sides:");
            through_both_sides(None, 0).await;
            println!("mutual TLS between the sides:");
            let ca = Ca::new();
            through_both_sides(Some(&ca), RUSTLS_PER_REQUEST).await;
        },
    );
}

/// rustls's allocations per request over mutual TLS: the request's record encrypted by the
/// outbound side (two) and decrypted by the inbound side (one), the answer's the other way.
/// Should a rustls upgrade change them, the test fails either way and this is to be counted
/// again: `ferry_testing::alloc::run`'s profiler built without `.testing()` and with
/// `.trim_backtraces(None)` writes dhat-heap.json, where each allocation came from.
const RUSTLS_PER_REQUEST: u64 = 6;

/// Requests through the outbound side to the inbound side and the app: over mutual TLS when
/// `ca` is given (each side with a workload identity it issued), else plaintext; exactly
/// `per_request` allocations each once warm.
async fn through_both_sides(ca: Option<&Ca>, per_request: u64) {
    let app = alloc::answering(ANSWER).await;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let (web, api) = (id("shop", "web"), id("shop", "api"));
    let credentials = |who: &WorkloadId| watch::channel(ca.map(|ca| Arc::new(ca.issue(who))));
    let ((_web_credentials, web_watch), (_api_credentials, api_watch)) =
        (credentials(&web), credentials(&api));
    let metrics = Arc::new(Metrics::new(&mut Registry::default(), false));
    let mut inbound = InboundConfig::new(loopback);
    inbound.app_port = Some(app.port());
    inbound.mode = if ca.is_some() {
        MtlsMode::Strict
    } else {
        MtlsMode::Permissive
    };
    let inbound = Inbound::build(
        inbound,
        Arc::new(MeshTls::new(api_watch)),
        Arc::new(AllowAll),
        metrics.clone(),
    )
    .await
    .unwrap();
    let endpoint = inbound.local_addr().unwrap();
    let identities = Arc::new(Identities::default());
    let meshed = ca.map(|_| &api);
    if let Some(api) = meshed {
        identities.add(endpoint, api);
    }
    let mut outbound = OutboundConfig::new(loopback);
    outbound.target = Some(SERVICE.parse().unwrap());
    let outbound = Outbound::build(
        outbound,
        Arc::new(MeshTls::new(web_watch)),
        destination(endpoint, meshed),
        identities,
        metrics,
    )
    .await
    .unwrap();
    let addr = outbound.local_addr().unwrap();
    let (trigger, shutdown) = ferry_runtime::shutdown::channel();
    let sides = [
        tokio::spawn(inbound.run(shutdown.clone())),
        tokio::spawn(outbound.run(shutdown)),
    ];

    let mut client = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 8192];
    let whole = |b: &[u8]| b.ends_with(b"{\"ok\":true}");
    let exchange = async || {
        client.write_all(REQUEST).await.unwrap();
        let len = alloc::read_until(&mut client, &mut buf, whole).await;
        assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\n"), "{:?}", &buf[..len]);
        len
    };
    alloc::exactly_per_request(exchange, per_request).await;
    drop(client);
    drop(trigger);
    for side in sides {
        side.await.unwrap();
    }
}
