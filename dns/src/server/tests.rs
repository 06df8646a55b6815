use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use arc_swap::ArcSwap;
use ferry_testing::{DEADLINE, eventually};
use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;

use super::{BATCH, Sockets, bind, spawn};
use crate::handler::{Handler, Transport};
use crate::metrics::Metrics;
use crate::zone::ZoneIndex;
use crate::zone::tests::cluster;

fn handler() -> Arc<Handler> {
    let zone = ZoneIndex::compile(&cluster(), "cluster.local", 30).unwrap();
    let metrics = Metrics::register(&mut Registry::default());
    Arc::new(Handler::new(
        Arc::new(ArcSwap::from_pointee(zone)),
        None,
        None,
        metrics,
    ))
}

fn query(id: u16, name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn client() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    socket
}

/// Starts the workers on `sockets`; they stop when the returned guard drops.
fn serve(sockets: Sockets, handler: Arc<Handler>) -> (StopOnDrop, JoinSet<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    spawn(
        sockets,
        handler,
        crate::TCP_LIMITS,
        &mut tasks,
        stop.clone(),
    )
    .unwrap();
    (StopOnDrop(stop), tasks)
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Reads `count` answers, by id. UDP keeps no order, and the workers may send answers in
/// another order than their queries (GSO groups), so the count says when a batch is done.
fn answers(client: &UdpSocket, count: usize) -> BTreeMap<u16, Vec<u8>> {
    let mut answers = BTreeMap::new();
    let mut buf = [0u8; 65535];
    while answers.len() < count {
        let n = client
            .recv(&mut buf)
            .expect("an answer before the deadline");
        let id = u16::from_be_bytes([buf[0], buf[1]]);
        assert!(
            answers.insert(id, buf[..n].to_vec()).is_none(),
            "one answer for query {id}"
        );
    }
    answers
}

/// One batch (the datagrams are queued before the worker reads): valid queries of every kind
/// around malformed ones. Each gets the answer it would get alone; those without an answer
/// (a runt, a response) do not stop the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_mixed_queries_is_answered_each_as_alone() {
    let h = handler();
    let sockets = bind("127.0.0.1:0".parse().unwrap(), 1).unwrap();
    let server = sockets.local_addr();
    let client = client();

    let mut response = query(90, "web.shop.svc.cluster.local.", RecordType::A, false);
    response[2] |= 0x80;
    let mut oversized = query(7, "web.shop.svc.cluster.local.", RecordType::A, true);
    oversized.resize(5000, 0);
    let batch: Vec<(u16, Vec<u8>)> = vec![
        (
            1,
            query(1, "web.shop.svc.cluster.local.", RecordType::A, false),
        ),
        (0, vec![1, 2, 3]),
        (
            2,
            query(2, "WEB.shop.svc.cluster.local.", RecordType::AAAA, true),
        ),
        (3, vec![0, 3, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, b'x']),
        (
            4,
            query(
                4,
                "_http._tcp.web.shop.svc.cluster.local.",
                RecordType::SRV,
                false,
            ),
        ),
        (90, response),
        (
            5,
            query(5, "nope.shop.svc.cluster.local.", RecordType::A, false),
        ),
        (6, query(6, "example.com.", RecordType::A, false)),
        (7, oversized),
        (
            8,
            query(8, "db.shop.svc.cluster.local.", RecordType::A, true),
        ),
    ];
    assert!(batch.len() <= BATCH);
    for (_, datagram) in &batch {
        client.send_to(datagram, server).unwrap();
    }
    let (_stop, _tasks) = serve(sockets, h.clone());
    let client = tokio::task::spawn_blocking(move || answers(&client, 8));
    let answers = client.await.unwrap();

    for (id, datagram) in &batch {
        if *id == 7 {
            continue;
        }
        let alone = h.handle(datagram, Transport::Udp).await;
        assert_eq!(answers.get(id), alone.as_ref(), "query {id}");
    }
    let ids: Vec<u16> = answers.keys().copied().collect();
    assert_eq!(
        ids,
        [1, 2, 3, 4, 5, 6, 7, 8],
        "no answer to the runt or the response"
    );
    let rcode = |id: u16| {
        Message::from_vec(&answers[&id])
            .unwrap()
            .metadata
            .response_code
    };
    assert_eq!(rcode(1), ResponseCode::NoError);
    assert_eq!(rcode(3), ResponseCode::FormErr);
    assert_eq!(rcode(5), ResponseCode::NXDomain);
    assert_eq!(rcode(6), ResponseCode::Refused, "no upstreams");
    // Longer than a batch buffer: cut short by the kernel, so FORMERR rather than a guess.
    assert_eq!(rcode(7), ResponseCode::FormErr);
}

/// More queries than one batch takes, from many clients at once: every one is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_queries_than_a_batch_are_all_answered() {
    let sockets = bind("127.0.0.1:0".parse().unwrap(), 1).unwrap();
    let server = sockets.local_addr();
    let clients: Vec<UdpSocket> = (0..4).map(|_| client()).collect();
    // 160 queued at once: more than a batch, fewer than the kernel's default receive buffer
    // holds (~270 such datagrams).
    let per_client = BATCH as u16 / 2 + 8;
    for (c, socket) in clients.iter().enumerate() {
        for i in 0..per_client {
            let id = c as u16 * 1000 + i;
            let q = query(id, "web.shop.svc.cluster.local.", RecordType::A, false);
            socket.send_to(&q, server).unwrap();
        }
    }
    let (_stop, _tasks) = serve(sockets, handler());
    let read = tokio::task::spawn_blocking(move || {
        clients
            .iter()
            .map(|socket| answers(socket, usize::from(per_client)).len())
            .collect::<Vec<_>>()
    });
    assert_eq!(read.await.unwrap(), vec![usize::from(per_client); 4]);
}

/// Many answers of one length to one client (sent as GSO groups where the kernel takes them)
/// arrive as datagrams of their own, each byte for byte the answer to its query alone, around
/// answers of other lengths to the same client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_grouped_for_one_client_arrive_each_whole() {
    let h = handler();
    let sockets = bind("127.0.0.1:0".parse().unwrap(), 1).unwrap();
    let server = sockets.local_addr();
    let client = client();
    let mut queries = Vec::new();
    for id in 0..(BATCH as u16 * 2) {
        let q = match id % 5 {
            0 => query(
                id,
                "_http._tcp.web.shop.svc.cluster.local.",
                RecordType::SRV,
                true,
            ),
            1 => query(id, "nope.shop.svc.cluster.local.", RecordType::A, false),
            _ => query(
                id,
                "WeB.shop.svc.cluster.local.",
                RecordType::A,
                id % 2 == 0,
            ),
        };
        client.send_to(&q, server).unwrap();
        queries.push(q);
    }
    let (_stop, _tasks) = serve(sockets, h.clone());
    let count = queries.len();
    let got = tokio::task::spawn_blocking(move || answers(&client, count))
        .await
        .unwrap();
    for q in &queries {
        let id = u16::from_be_bytes([q[0], q[1]]);
        let alone = h.handle(q, Transport::Udp).await;
        assert_eq!(got.get(&id), alone.as_ref(), "query {id}");
    }
}

/// SO_REUSEPORT: two workers on one port, and the kernel gives each some clients; all are
/// answered, so both workers answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_port_both_answer() {
    let sockets = bind("127.0.0.1:0".parse().unwrap(), 2).unwrap();
    assert_eq!(sockets.udp.len(), 2);
    let server = sockets.local_addr();
    for s in &sockets.udp {
        assert_eq!(s.local_addr().unwrap(), server, "the same address");
    }
    // 64 clients: the kernel picks a socket by a hash of each client's address, so both get
    // some (all on one would be a 1 in 2^63 chance).
    let clients: Vec<UdpSocket> = (0..64).map(|_| client()).collect();
    for (i, c) in clients.iter().enumerate() {
        let q = query(
            i as u16,
            "web.shop.svc.cluster.local.",
            RecordType::A,
            false,
        );
        c.send_to(&q, server).unwrap();
    }
    let queued = |s: &UdpSocket| s.peek_from(&mut [0u8; 12]).is_ok();
    eventually(DEADLINE, "queries queued on both sockets", || async {
        sockets.udp.iter().all(queued).then_some(())
    })
    .await;

    let (_stop, _tasks) = serve(sockets, handler());
    let read = tokio::task::spawn_blocking(move || {
        clients.iter().map(|c| answers(c, 1).len()).sum::<usize>()
    });
    assert_eq!(read.await.unwrap(), 64, "every client answered");
}

/// The portable loop (non-Linux, or a kernel refusing recvmmsg) answers as the batched one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_by_one_fallback_answers_the_same() {
    let h = handler();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let server: SocketAddr = socket.local_addr().unwrap();
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let worker = super::udp::Worker {
        socket: Arc::new(socket),
        handler: h.clone(),
        pending: Arc::new(tokio::sync::Semaphore::new(1)),
        runtime: tokio::runtime::Handle::current(),
        stop: stop.0.clone(),
    };
    let thread = std::thread::spawn(move || worker.one_by_one());
    let client = client();
    let queries = [
        query(1, "web.shop.svc.cluster.local.", RecordType::A, true),
        vec![0, 2, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, b'x'],
        query(3, "nope.shop.svc.cluster.local.", RecordType::A, false),
    ];
    for q in &queries {
        client.send_to(q, server).unwrap();
    }
    let answers = tokio::task::spawn_blocking(move || answers(&client, 3))
        .await
        .unwrap();
    for q in &queries {
        let id = u16::from_be_bytes([q[0], q[1]]);
        let alone = h.handle(q, Transport::Udp).await;
        assert_eq!(answers.get(&id), alone.as_ref(), "query {id}");
    }
    drop(stop);
    thread.join().unwrap();
}
