//! Cluster DNS end to end: `ferry up` on manifests, queried over real UDP and TCP sockets, with a
//! stub upstream the test runs for forwarding.

use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use ferry::up::UpConfig;
use tempfile::TempDir;

use crate::{DEADLINE, Running, eventually, get};

const CLUSTER: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00::10"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  ports: [{name: pg, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  namespace: shop
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
endpoints:
- addresses: [10.1.0.1]
  hostname: db-0
- addresses: [10.1.0.2]
- addresses: [10.1.0.3]
  conditions: {ready: false}
ports: [{name: pg, port: 15432, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: shop}
spec:
  type: ExternalName
  externalName: example.com
"#;

fn big_headless(count: usize) -> String {
    let endpoints: String = (1..=count)
        .map(|i| format!("- addresses: [10.2.{}.{}]\n", i / 250, i % 250 + 1))
        .collect();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: big, namespace: shop}}\nspec:\n  clusterIP: None\n  ports: [{{name: http, port: 80}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: big-1\n  namespace: shop\n  labels: {{kubernetes.io/service-name: big}}\naddressType: IPv4\nendpoints:\n{endpoints}ports: [{{name: http, port: 8080}}]\n"
    )
}

fn write_cluster(dir: &Path) {
    fs::write(dir.join("cluster.yaml"), CLUSTER).unwrap();
    fs::write(dir.join("big.yaml"), big_headless(60)).unwrap();
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn question(qname: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), qtype));
    if let Some(payload) = edns {
        let mut e = Edns::new();
        e.set_max_payload(payload);
        m.set_edns(e);
    }
    m
}

/// Sends raw bytes over UDP and waits for one answer.
async fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

async fn udp(server: SocketAddr, m: &Message) -> Message {
    let bytes = udp_raw(server, &m.to_vec().unwrap())
        .await
        .expect("an answer over UDP");
    let reply = Message::from_vec(&bytes).unwrap();
    assert_eq!(reply.metadata.id, m.metadata.id);
    reply
}

async fn tcp(server: SocketAddr, m: &Message) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let bytes = m.to_vec().unwrap();
    stream.write_u16(bytes.len() as u16).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

pub async fn ask(server: SocketAddr, qname: &str, qtype: RecordType) -> Message {
    udp(server, &question(qname, qtype, None)).await
}

pub fn data(m: &Message) -> Vec<String> {
    let mut out: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    out.sort();
    out
}

async fn running(dir: &Path) -> Running {
    let up = Running::start(vec![dir.to_owned()]).await;
    up.wait_version(1).await;
    up
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_kind_of_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    write_cluster(dir.path());
    let up = running(dir.path()).await;
    let dns = up.dns;

    let r = ask(dns, "web.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_eq!(data(&r), vec!["10.96.0.10"]);
    assert_eq!(r.answers[0].ttl, 30);
    let r = ask(dns, "web.shop.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(data(&r), vec!["fd00::10"]);

    let r = ask(
        dns,
        "_http._tcp.web.shop.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    // Two cluster IPs behind the target share the weight, as CoreDNS gives it.
    assert_eq!(data(&r), vec!["0 50 80 web.shop.svc.cluster.local."]);
    assert_eq!(r.additionals.len(), 2, "the target's A and AAAA: {r}");

    let r = ask(dns, "db.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(
        data(&r),
        vec!["10.1.0.1", "10.1.0.2"],
        "ready endpoints only"
    );
    let r = ask(dns, "db-0.db.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(data(&r), vec!["10.1.0.1"]);
    let r = ask(dns, "_pg._tcp.db.shop.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(
        data(&r),
        vec![
            "0 50 15432 10-1-0-2.db.shop.svc.cluster.local.",
            "0 50 15432 db-0.db.shop.svc.cluster.local.",
        ]
    );

    let r = ask(dns, "ext.shop.svc.cluster.local.", RecordType::CNAME).await;
    assert_eq!(data(&r), vec!["example.com."]);

    let r = ask(dns, "10.0.96.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(data(&r), vec!["web.shop.svc.cluster.local."]);
    let v6 = Name::from("fd00::10".parse::<IpAddr>().unwrap()).to_ascii();
    let r = ask(dns, &v6, RecordType::PTR).await;
    assert_eq!(data(&r), vec!["web.shop.svc.cluster.local."]);
    let r = ask(dns, "1.0.1.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(data(&r), vec!["db-0.db.shop.svc.cluster.local."]);

    let r = ask(dns, "10-244-0-7.shop.pod.cluster.local.", RecordType::A).await;
    assert_eq!(data(&r), vec!["10.244.0.7"]);

    let r = ask(dns, "dns-version.cluster.local.", RecordType::TXT).await;
    assert_eq!(data(&r), vec!["1.1.0"]);

    // Over TCP, the same answers.
    let r = tcp(
        dns,
        &question("web.shop.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    assert_eq!(data(&r), vec!["10.96.0.10"]);
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_and_nodata_with_the_soa_and_case_kept() {
    let dir = tempfile::tempdir().unwrap();
    write_cluster(dir.path());
    let up = running(dir.path()).await;

    let nx = ask(up.dns, "nope.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx.metadata.authoritative);
    let soa = &nx.authorities[0];
    assert_eq!(soa.name, name("cluster.local."));
    match &soa.data {
        RData::SOA(s) => {
            assert_eq!(s.mname, name("ns.dns.cluster.local."));
            assert_eq!(s.minimum, 30);
        }
        other => panic!("{other}"),
    }

    let nodata = ask(up.dns, "web.shop.svc.cluster.local.", RecordType::MX).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
    // A name with names below it exists too.
    let ent = ask(up.dns, "shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(ent.metadata.response_code, ResponseCode::NoError);

    let mixed = "WeB.sHoP.SVC.Cluster.LOCAL.";
    let r = ask(up.dns, mixed, RecordType::A).await;
    assert_eq!(r.queries[0].name().to_ascii(), mixed);
    assert_eq!(
        r.answers[0].name.to_ascii(),
        mixed,
        "answers keep the question's case"
    );

    // ANY as CoreDNS answers it: NODATA with the SOA where the name exists.
    let any = ask(up.dns, "web.shop.svc.cluster.local.", RecordType::ANY).await;
    assert_eq!(any.metadata.response_code, ResponseCode::NoError);
    assert!(any.answers.is_empty(), "{any}");
    assert_eq!(any.authorities[0].record_type(), RecordType::SOA);
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_edns_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_cluster(dir.path());
    let up = running(dir.path()).await;
    let big = "big.shop.svc.cluster.local.";

    // 60 addresses do not fit in 512 bytes: TC over UDP, complete over TCP (what a resolver
    // does next).
    let r = udp(up.dns, &question(big, RecordType::A, None)).await;
    assert!(r.metadata.truncation);
    assert!(r.answers.is_empty());
    let r = tcp(up.dns, &question(big, RecordType::A, None)).await;
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 60);
    // The client's EDNS payload size is honoured.
    let r = udp(up.dns, &question(big, RecordType::A, Some(4096))).await;
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 60);
    assert_eq!(r.edns.as_ref().unwrap().version(), 0);
    let r = udp(up.dns, &question(big, RecordType::A, Some(600))).await;
    assert!(r.metadata.truncation);

    // EDNS version 1: BADVERS.
    let mut q = question("web.shop.svc.cluster.local.", RecordType::A, Some(1232));
    q.edns.as_mut().unwrap().set_version(1);
    let r = udp(up.dns, &q).await;
    assert_eq!(u16::from(r.metadata.response_code), 16);

    // Garbage after a header: FORMERR with the same id.
    let bytes = udp_raw(
        up.dns,
        &[0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, b'x'],
    )
    .await
    .unwrap();
    assert_eq!(&bytes[..2], &[0x12, 0x34]);
    assert_eq!(bytes[3] & 0x0f, 1);
    // A class other than IN: REFUSED.
    let mut chaos = question("version.bind.", RecordType::TXT, None);
    chaos.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    assert_eq!(
        udp(up.dns, &chaos).await.metadata.response_code,
        ResponseCode::Refused
    );
    // And the server still answers after all that.
    let r = ask(up.dns, "web.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(data(&r), vec!["10.96.0.10"]);

    let (_, metrics) = get(up.admin, "/metrics").await;
    assert!(
        metrics.contains(r#"ferry_dns_queries_total{proto="udp",qtype="A",rcode="NOERROR"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("ferry_dns_truncated_total 2"), "{metrics}");
    up.stop().await;
}

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

/// A port free for both UDP and TCP on 127.0.0.1, for a server that must know it in advance.
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_under_query_load_never_fail_a_query() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    let service = |ip: u8| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\nspec:\n  clusterIP: 10.96.1.{ip}\n  ports: [{{port: 80}}]\n"
        )
    };
    fs::write(&file, service(1)).unwrap();
    let up = running(dir.path()).await;
    let dns = up.dns;

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    // Two clients on a two-thread runtime: load enough to interleave with every swap, not so
    // much that the control plane's reloads starve on a busy CI machine.
    for _ in 0..2 {
        let (stop, answered) = (stop.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = HashSet::new();
            while !stop.load(Ordering::Relaxed) {
                let r = ask(dns, "web.shop.svc.cluster.local.", RecordType::A).await;
                assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{r}");
                assert_eq!(
                    r.answers.len(),
                    1,
                    "one address, old or new, never none: {r}"
                );
                seen.insert(data(&r)[0].clone());
                answered.fetch_add(1, Ordering::Relaxed);
            }
            seen
        }));
    }
    for i in 2..=12u8 {
        fs::write(&file, service(i)).unwrap();
        up.wait_version(u64::from(i)).await;
    }
    eventually(DEADLINE, "the last address served", || async {
        let r = ask(dns, "web.shop.svc.cluster.local.", RecordType::A).await;
        (data(&r) == vec!["10.96.1.12"]).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = HashSet::new();
    for c in clients {
        seen.extend(c.await.unwrap());
    }
    assert!(answered.load(Ordering::Relaxed) > 100);
    assert!(seen.len() > 1, "the clients saw the changes: {seen:?}");
    up.stop().await;
}

#[test]
fn ferry_dns_serves_a_snapshot_file() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let snapshot = serde_json::json!({
        "version": 3,
        "services": [{
            "namespace": "shop", "name": "web", "type": "ClusterIP",
            "cluster_ips": ["10.96.0.10"], "headless": false, "ports": [],
            "session_affinity": {"type": "None"}, "publish_not_ready_addresses": false,
            "endpoints": []
        }],
        "clusters": [], "virtual_hosts": [], "certificates": []
    });
    let file = dir.path().join("snapshot.json");
    fs::write(&file, snapshot.to_string()).unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["dns", "--snapshot"])
        .arg(&file)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin",
            "127.0.0.1:0",
        ])
        .args(["--dns-upstream", "127.0.0.1:9"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let answer = rt.block_on(eventually(DEADLINE, "ferry dns answers", || async {
        let q = question("web.shop.svc.cluster.local.", RecordType::A, None);
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&q.to_vec().unwrap(), addr).await.unwrap();
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await {
            Ok(Ok(n)) => Message::from_vec(&buf[..n]).ok(),
            _ => None,
        }
    }));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(data(&answer), vec!["10.96.0.10"]);

    // A bad file is a clear error naming it.
    let bad = dir.path().join("bad.json");
    fs::write(&bad, "{").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["dns", "--snapshot"])
        .arg(&bad)
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--snapshot") && stderr.contains("bad.json"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_answers_what_the_readme_shows() {
    let up = Running::start(vec![crate::repo().join("configs/demo")]).await;
    let r = ask(up.dns, "web.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(data(&r), vec!["127.2.0.10"]);
    let r = ask(
        up.dns,
        "_http._tcp.api.shop.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(data(&r), vec!["0 100 8080 api.shop.svc.cluster.local."]);
    let r = ask(up.dns, "11.0.2.127.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(data(&r), vec!["api.shop.svc.cluster.local."]);
    up.stop().await;
}

/// The kube-system objects of a kubeadm cluster, as `kubectl get -o yaml` shows them: the
/// kube-dns Service (53/UDP `dns`, 53/TCP `dns-tcp`, 9153/TCP `metrics`) and its EndpointSlice,
/// and default/kubernetes with its EndpointSlice.
const KUBE_SYSTEM: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/cluster-service: "true", kubernetes.io/name: CoreDNS}
  annotations: {prometheus.io/port: "9153", prometheus.io/scrape: "true"}
spec:
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  internalTrafficPolicy: Cluster
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
  - {name: metrics, port: 9153, protocol: TCP, targetPort: 9153}
  selector: {k8s-app: kube-dns}
  sessionAffinity: None
  type: ClusterIP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-2vbwl
  namespace: kube-system
  labels:
    k8s-app: kube-dns
    kubernetes.io/service-name: kube-dns
    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
addressType: IPv4
endpoints:
- addresses: [10.244.0.2]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: control-plane
  targetRef: {kind: Pod, name: coredns-668d6bf9bc-8xq7n, namespace: kube-system}
- addresses: [10.244.0.3]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: control-plane
  targetRef: {kind: Pod, name: coredns-668d6bf9bc-tzw5m, namespace: kube-system}
ports:
- {name: dns-tcp, port: 53, protocol: TCP}
- {name: dns, port: 53, protocol: UDP}
- {name: metrics, port: 9153, protocol: TCP}
---
apiVersion: v1
kind: Service
metadata:
  name: kubernetes
  namespace: default
  labels: {component: apiserver, provider: kubernetes}
spec:
  clusterIP: 10.96.0.1
  clusterIPs: [10.96.0.1]
  internalTrafficPolicy: Cluster
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
  ports:
  - {name: https, port: 443, protocol: TCP, targetPort: 6443}
  sessionAffinity: None
  type: ClusterIP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes
  namespace: default
  labels: {kubernetes.io/service-name: kubernetes, endpointslice.kubernetes.io/managed-by: endpointslicemirroring-controller.k8s.io}
addressType: IPv4
endpoints:
- addresses: [172.18.0.2]
  conditions: {ready: true}
ports:
- {name: https, port: 6443, protocol: TCP}
"#;

/// Headless Services for spec 2.4: one whose only endpoint is not ready, and one endpoint in an
/// IPv4 and an IPv6 EndpointSlice under one hostname.
const HEADLESS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: quiet}
---
apiVersion: v1
kind: Service
metadata: {name: starting, namespace: default}
spec:
  clusterIP: None
  ports: [{name: pg, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: starting-1, namespace: default, labels: {kubernetes.io/service-name: starting}}
addressType: IPv4
endpoints: [{addresses: [10.244.1.9], conditions: {ready: false}}]
ports: [{name: pg, port: 5432, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: None
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  ports: [{name: pg, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-v4, namespace: default, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
endpoints: [{addresses: [10.244.1.5], hostname: db-0}]
ports: [{name: pg, port: 5432, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-v6, namespace: default, labels: {kubernetes.io/service-name: db}}
addressType: IPv6
endpoints: [{addresses: ["fd00:10:244:1::5"], hostname: db-0}]
ports: [{name: pg, port: 5432, protocol: TCP}]
"#;

/// `dig +short` against ferry, or None (with the reason printed) when dig is not installed.
fn dig(server: SocketAddr, args: &[&str]) -> Option<Vec<String>> {
    let out = match std::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args([
            "-p",
            &server.port().to_string(),
            "+short",
            "+time=5",
            "+tries=1",
        ])
        .args(args)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipping the dig checks: cannot run dig ({e}); install dnsutils");
            return None;
        }
    };
    assert!(out.status.success(), "dig {args:?}: {out:?}");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    Some(lines)
}

/// Issue 12's "done when": `ferry up` starts on the standard kube-system objects, and DNS
/// answers for them as the spec and CoreDNS do, over UDP and TCP, to hickory and to dig.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_up_serves_the_standard_kube_system_objects() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("kube-system.yaml"), KUBE_SYSTEM).unwrap();
    fs::write(dir.path().join("headless.yaml"), HEADLESS).unwrap();
    let up = running(dir.path()).await;
    let (_, status) = get(up.admin, "/status").await;
    assert!(!status.contains("invalid snapshot"), "{status}");
    let dns = up.dns;

    let r = ask(
        dns,
        "kube-dns.kube-system.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(data(&r), ["10.96.0.10"]);
    let r = ask(dns, "kubernetes.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(data(&r), ["10.96.0.1"]);
    let r = ask(
        dns,
        "_https._tcp.kubernetes.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(
        data(&r),
        ["0 100 443 kubernetes.default.svc.cluster.local."]
    );

    // Item 1: each protocol's SRV name answers its own port, over UDP and TCP.
    let svc = "kube-dns.kube-system.svc.cluster.local.";
    for (srv_name, want) in [
        (
            "_dns._udp",
            "0 100 53 kube-dns.kube-system.svc.cluster.local.",
        ),
        (
            "_dns-tcp._tcp",
            "0 100 53 kube-dns.kube-system.svc.cluster.local.",
        ),
        (
            "_metrics._tcp",
            "0 100 9153 kube-dns.kube-system.svc.cluster.local.",
        ),
    ] {
        let q = format!("{srv_name}.{svc}");
        assert_eq!(data(&ask(dns, &q, RecordType::SRV).await), [want], "{q}");
        let r = tcp(dns, &question(&q, RecordType::SRV, None)).await;
        assert_eq!(data(&r), [want], "{q} over TCP");
    }
    let wrong = ask(dns, &format!("_dns._tcp.{svc}"), RecordType::SRV).await;
    assert_eq!(wrong.metadata.response_code, ResponseCode::NXDomain);
    // SRV for the Service's own name: every port, 53 once (one record per target and port).
    let r = ask(dns, svc, RecordType::SRV).await;
    assert_eq!(
        data(&r),
        [
            "0 33 53 kube-dns.kube-system.svc.cluster.local.",
            "0 33 9153 kube-dns.kube-system.svc.cluster.local."
        ]
    );

    // The apex: NS ns.dns.<zone>, its address kube-dns's cluster IP.
    let r = ask(dns, "cluster.local.", RecordType::NS).await;
    assert_eq!(data(&r), ["ns.dns.cluster.local."]);
    assert_eq!(r.additionals[0].data.to_string(), "10.96.0.10");
    let r = ask(dns, "ns.dns.cluster.local.", RecordType::A).await;
    assert_eq!(data(&r), ["10.96.0.10"]);

    // Endpoints of a ClusterIP Service have names, and their PTRs point back.
    let r = ask(
        dns,
        "10-244-0-2.kube-dns.kube-system.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(data(&r), ["10.244.0.2"]);
    let host = "10-244-0-2.kube-dns.kube-system.svc.cluster.local.";
    let r = ask(dns, host, RecordType::SRV).await;
    assert_eq!(
        data(&r),
        [format!("0 33 53 {host}"), format!("0 33 9153 {host}")],
        "an endpoint's own name lists the ports it serves, as CoreDNS"
    );
    let r = ask(dns, "3.0.244.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(
        data(&r),
        ["10-244-0-3.kube-dns.kube-system.svc.cluster.local."]
    );

    // Namespaces: one that exists without Services is NODATA, others NXDOMAIN.
    for (q, rcode) in [
        ("kube-public.svc.cluster.local.", ResponseCode::NoError),
        ("quiet.svc.cluster.local.", ResponseCode::NoError),
        ("nowhere.svc.cluster.local.", ResponseCode::NXDomain),
        (
            "10-244-1-5.nowhere.pod.cluster.local.",
            ResponseCode::NXDomain,
        ),
    ] {
        let r = ask(dns, q, RecordType::A).await;
        assert_eq!(r.metadata.response_code, rcode, "{q}");
        assert!(r.answers.is_empty(), "{q}");
        assert_eq!(r.authorities[0].record_type(), RecordType::SOA, "{q}");
    }
    let r = ask(dns, "10-244-1-5.quiet.pod.cluster.local.", RecordType::A).await;
    assert_eq!(data(&r), ["10.244.1.5"]);

    // Spec 2.4.1: a headless Service without ready endpoints is NXDOMAIN, with the SOA.
    let r = ask(dns, "starting.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.authorities[0].record_type(), RecordType::SOA);
    // Spec 2.4.2: one SRV per (target, port); the target's A and AAAA as additionals.
    let r = ask(
        dns,
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(data(&r), ["0 50 5432 db-0.db.default.svc.cluster.local."]);
    let mut extra: Vec<String> = r
        .additionals
        .iter()
        .map(|a| format!("{} {}", a.name, a.data))
        .collect();
    extra.sort();
    assert_eq!(
        extra,
        [
            "db-0.db.default.svc.cluster.local. 10.244.1.5",
            "db-0.db.default.svc.cluster.local. fd00:10:244:1::5"
        ]
    );

    // The same through dig, over UDP and TCP.
    if let Some(srv) = dig(
        dns,
        &["SRV", "_dns._udp.kube-dns.kube-system.svc.cluster.local"],
    ) {
        assert_eq!(srv, ["0 100 53 kube-dns.kube-system.svc.cluster.local."]);
        let srv = dig(
            dns,
            &[
                "+tcp",
                "SRV",
                "_dns-tcp._tcp.kube-dns.kube-system.svc.cluster.local",
            ],
        );
        assert_eq!(
            srv.unwrap(),
            ["0 100 53 kube-dns.kube-system.svc.cluster.local."]
        );
        let a = dig(dns, &["A", "kubernetes.default.svc.cluster.local"]);
        assert_eq!(a.unwrap(), ["10.96.0.1"]);
        let ns = dig(dns, &["NS", "cluster.local"]);
        assert_eq!(ns.unwrap(), ["ns.dns.cluster.local."]);
        let ptr = dig(dns, &["-x", "10.244.0.2"]);
        assert_eq!(
            ptr.unwrap(),
            ["10-244-0-2.kube-dns.kube-system.svc.cluster.local."]
        );
    }
    up.stop().await;
}

/// Item 1 for the gateway: an Ingress backend's port number means the TCP port when a UDP port
/// shares it (HTTP is TCP), whichever the Service and its EndpointSlice list first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_to_a_port_number_shared_by_udp_and_tcp_reaches_the_tcp_endpoints() {
    let echo = ferry::echo::Echo::build(([127, 0, 0, 1], 0).into(), "tcp".into(), "tcp".into())
        .await
        .unwrap();
    let port = echo.local_addr().unwrap().port();
    let (stop, shutdown) = ferry_runtime::shutdown::channel();
    tokio::spawn(echo.run(shutdown));
    let yaml = format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: both, namespace: default}}
spec:
  ports:
  - {{name: http-udp, port: 80, protocol: UDP}}
  - {{name: http, port: 80, protocol: TCP}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: both-1, namespace: default, labels: {{kubernetes.io/service-name: both}}}}
addressType: IPv4
endpoints: [{{addresses: [127.0.0.1]}}]
ports:
- {{name: http-udp, port: 9, protocol: UDP}}
- {{name: http, port: {port}, protocol: TCP}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: both, namespace: default}}
spec:
  rules:
  - http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service: {{name: both, port: {{number: 80}}}}
"#
    );
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("both.yaml"), yaml).unwrap();
    let up = running(dir.path()).await;
    let (status, body) = get(up.http, "/").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["name"], "tcp", "{body}");
    up.stop().await;
    stop.trigger();
}
