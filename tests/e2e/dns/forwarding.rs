//! Names outside the cluster: forwarded to an upstream (a stub the test runs) with a cache and
//! TCP on truncation, autopath, and forwarding loops found.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ferry::up::UpConfig;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{RData, Record, RecordType};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use super::{ask, data, free_port, name, udp_raw, write_cluster};
use crate::{DEADLINE, Running, eventually, get};

/// A stub upstream on 127.0.0.1 (UDP and TCP on one port) that counts what it is asked.
struct Stub {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<(String, RecordType, bool)>>>,
    /// Relay everything to this server instead of answering (to build a loop), with new ids
    /// (as dnsmasq does) or the same.
    relay: Arc<Mutex<Option<(SocketAddr, bool)>>>,
}

impl Stub {
    async fn start() -> Stub {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let relay = Arc::new(Mutex::new(None));
        let (a, r) = (asked.clone(), relay.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                let relay_to = *r.lock().unwrap();
                let answer = match relay_to {
                    Some((to, new_id)) => {
                        let mut query = buf[..n].to_vec();
                        if new_id {
                            query[0] ^= 0x5a;
                        }
                        udp_raw(to, &query).await.map(|mut answer| {
                            answer[..2].copy_from_slice(&buf[..2]);
                            answer
                        })
                    }
                    None => stub_answer(&buf[..n], false, &a),
                };
                if let Some(answer) = answer {
                    let _ = udp.send_to(&answer, peer).await;
                }
            }
        });
        let a = asked.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = tcp.accept().await {
                let a = a.clone();
                tokio::spawn(async move {
                    let len = s.read_u16().await.unwrap();
                    let mut buf = vec![0u8; len as usize];
                    s.read_exact(&mut buf).await.unwrap();
                    if let Some(answer) = stub_answer(&buf, true, &a) {
                        s.write_u16(answer.len() as u16).await.unwrap();
                        s.write_all(&answer).await.unwrap();
                    }
                });
            }
        });
        Stub { addr, asked, relay }
    }

    fn asked(&self, qname: &str) -> usize {
        let want = name(qname);
        self.asked
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _, _)| name(n) == want)
            .count()
    }
}

/// `ferry up` on the test cluster forwarding to a stub; `adjust` goes on top. When the test
/// sets `dns` in advance, the stub relays everything there with new ids (a loop).
async fn with_stub(adjust: impl FnOnce(&mut UpConfig)) -> (TempDir, Stub, Running) {
    let dir = tempfile::tempdir().unwrap();
    write_cluster(dir.path());
    let stub = Stub::start().await;
    let up = Running::start_with(vec![dir.path().to_owned()], |c| {
        c.dns_upstreams = vec![stub.addr];
        adjust(c);
        if c.dns.port() != 0 {
            *stub.relay.lock().unwrap() = Some((c.dns, true));
        }
    })
    .await;
    up.wait_version(1).await;
    (dir, stub, up)
}

/// example.com and big.example exist (big only in full over TCP); everything else is NXDOMAIN.
fn stub_answer(
    bytes: &[u8],
    over_tcp: bool,
    asked: &Mutex<Vec<(String, RecordType, bool)>>,
) -> Option<Vec<u8>> {
    let q = Message::from_vec(bytes).ok()?;
    let query = q.queries.first()?.clone();
    asked
        .lock()
        .unwrap()
        .push((query.name().to_ascii(), query.query_type(), over_tcp));
    let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    r.metadata.recursion_available = true;
    r.add_query(query.clone());
    let lower = query.name().to_lowercase().to_ascii();
    let a = |ip: [u8; 4]| Record::from_rdata(query.name().clone(), 300, RData::A(A(ip.into())));
    match (lower.as_str(), query.query_type()) {
        ("example.com.", RecordType::A) => {
            r.add_answer(a([192, 0, 2, 1]));
        }
        ("big.example.", RecordType::A) if !over_tcp => r.metadata.truncation = true,
        ("big.example.", RecordType::A) => {
            for i in 1..=3 {
                r.add_answer(a([192, 0, 2, i]));
            }
        }
        _ => {
            r.metadata.response_code = ResponseCode::NXDomain;
            r.add_authority(Record::from_rdata(
                name("example."),
                60,
                RData::SOA(SOA::new(
                    name("ns.example."),
                    name("h.example."),
                    1,
                    1,
                    1,
                    1,
                    60,
                )),
            ));
        }
    }
    r.to_vec().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_other_names_with_a_cache_and_tcp_on_truncation() {
    let (_dir, stub, up) = with_stub(|_| {}).await;

    let r = ask(up.dns, "Example.com.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(!r.metadata.authoritative);
    assert!(r.metadata.recursion_available);
    assert_eq!(data(&r), vec!["192.0.2.1"]);
    assert_eq!(r.answers[0].name.to_ascii(), "Example.com.");
    // The cache answers the second time, its TTL capped at 30.
    let r = ask(up.dns, "example.com.", RecordType::A).await;
    assert_eq!(data(&r), vec!["192.0.2.1"]);
    assert!(r.answers[0].ttl <= 30);
    assert_eq!(stub.asked("example.com."), 1, "the upstream is asked once");

    // Negative answers are cached too.
    for _ in 0..2 {
        let r = ask(up.dns, "nope.example.", RecordType::A).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    }
    assert_eq!(stub.asked("nope.example."), 1);

    // A truncated upstream answer is fetched again over TCP.
    let r = ask(up.dns, "big.example.", RecordType::A).await;
    assert_eq!(r.answers.len(), 3);
    let tcp_asks = stub
        .asked
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, tcp)| *tcp)
        .count();
    assert_eq!(tcp_asks, 1);

    // An ExternalName's target is chased upstream.
    let r = ask(up.dns, "ext.shop.svc.cluster.local.", RecordType::A).await;
    let types: Vec<_> = r.answers.iter().map(|r| r.record_type()).collect();
    assert_eq!(types, vec![RecordType::CNAME, RecordType::A]);
    assert!(r.metadata.authoritative);

    // Reverse names the cluster does not own are forwarded.
    let r = ask(up.dns, "1.2.0.192.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(stub.asked("1.2.0.192.in-addr.arpa."), 1);

    let (_, metrics) = get(up.admin, "/metrics").await;
    // Hits: example.com and nope.example asked again, and example.com as ext's target.
    for line in [
        "ferry_dns_cache_hits_total 3",
        "ferry_dns_forwarded_total 4",
    ] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autopath_answers_the_end_of_the_search_walk() {
    let (_dir, stub, up) = with_stub(|c| {
        c.dns_search = vec!["corp.example".into()];
        c.dns_autopath = true;
    })
    .await;

    // A Pod in `shop` looking up example.com (ndots:5) first asks this.
    let r = ask(up.dns, "example.com.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(r.answers.len(), 2, "{r}");
    assert_eq!(
        r.answers[0].name.to_ascii(),
        "example.com.shop.svc.cluster.local."
    );
    assert_eq!(r.answers[0].data.to_string(), "example.com.");
    assert_eq!(r.answers[1].data.to_string(), "192.0.2.1");
    // It walked the host's search domain before the name itself, as the resolver would.
    assert_eq!(stub.asked("example.com.corp.example."), 1);
    assert_eq!(stub.asked("example.com."), 1);

    // A Service in another namespace is found at the next step, inside the cluster.
    let r = ask(up.dns, "web.shop.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(r.answers[0].data.to_string(), "web.shop.svc.cluster.local.");
    assert_eq!(r.answers[1].data.to_string(), "10.96.0.10");

    // Nothing resolves: the plain NXDOMAIN, and the client walks on by itself.
    let r = ask(up.dns, "nothing.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.answers.is_empty());

    // Names that exist are answered as they are.
    let r = ask(up.dns, "web.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(data(&r), vec!["10.96.0.10"]);
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarding_loop_is_detected() {
    let (_dir, stub, up) = with_stub(|_| {}).await;
    // The upstream sends everything back to ferry.
    *stub.relay.lock().unwrap() = Some((up.dns, false));
    let r = ask(up.dns, "loop.example.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    let (_, metrics) = get(up.admin, "/metrics").await;
    assert!(
        metrics.contains("ferry_dns_forward_loops_total 1"),
        "{metrics}"
    );
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_through_a_resolver_that_rewrites_ids_is_found_by_the_start_probe() {
    let dns: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let (_dir, stub, up) = with_stub(|c| c.dns = dns).await;
    eventually(DEADLINE, "the probe came back", || async {
        let (_, metrics) = get(up.admin, "/metrics").await;
        metrics
            .contains("ferry_dns_forward_loops_total 1")
            .then_some(())
    })
    .await;
    // The only upstream loops: it is left out, and other names fail at once.
    let r = ask(up.dns, "example.com.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(stub.asked("example.com."), 0, "not sent into the loop");
    // The cluster is still answered.
    let r = ask(up.dns, "web.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(data(&r), vec!["10.96.0.10"]);
    up.stop().await;
}
