//! Criterion: the DNS hot path without sockets (parse, look up, encode one query against a zone
//! of 10,000 Services) and compiling that zone. `cargo bench -p ferry-dns --bench handler`.

#![allow(clippy::unwrap_used)] // setup: a failed unwrap is a failed run

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{Criterion, criterion_group, criterion_main};
use ferry_dns::ZoneIndex;
use ferry_dns::handler::{Handler, Step, Transport};
use ferry_dns::metrics::Metrics;
use ferry_model::{
    Protocol, Service, ServicePort, ServiceType, SessionAffinity, Snapshot, TargetPort,
};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use prometheus_client::registry::Registry;

fn cluster(n: u32) -> Snapshot {
    let mut services: Vec<Service> = (0..n)
        .map(|i| Service {
            namespace: format!("ns-{}", i % 100),
            name: format!("svc-{i}"),
            service_type: ServiceType::ClusterIP,
            cluster_ips: vec![IpAddr::V4(Ipv4Addr::from(0x0a60_0000 + i))],
            headless: false,
            external_name: None,
            ports: vec![ServicePort {
                name: "http".into(),
                port: 80,
                protocol: Protocol::TCP,
                app_protocol: None,
                target_port: TargetPort::Number(8080),
                node_port: None,
            }],
            session_affinity: SessionAffinity::None,
            publish_not_ready_addresses: false,
            endpoints: vec![],
        })
        .collect();
    services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Snapshot {
        version: 1,
        services: services.into_iter().map(Arc::new).collect(),
        ..Snapshot::default()
    }
}

fn query(name: &str, t: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    if edns {
        m.set_edns(Edns::new());
    }
    m.to_vec().unwrap()
}

fn bench(c: &mut Criterion) {
    let snapshot = cluster(10_000);
    let zone = ZoneIndex::compile(&snapshot, "cluster.local", 30).unwrap();
    let handler = Handler::new(
        Arc::new(ArcSwap::from_pointee(zone)),
        None,
        None,
        Metrics::register(&mut Registry::default()),
    );
    let mut group = c.benchmark_group("dns");
    let cases = [
        (
            "a",
            query("svc-4242.ns-42.svc.cluster.local.", RecordType::A, false),
        ),
        (
            "a_edns",
            query("svc-4242.ns-42.svc.cluster.local.", RecordType::A, true),
        ),
        (
            "srv",
            query(
                "_http._tcp.svc-4242.ns-42.svc.cluster.local.",
                RecordType::SRV,
                false,
            ),
        ),
        (
            "nxdomain",
            query("nope.ns-42.svc.cluster.local.", RecordType::A, false),
        ),
    ];
    for (label, bytes) in &cases {
        group.bench_function(*label, |b| {
            b.iter(|| match handler.start(black_box(bytes), Transport::Udp) {
                Step::Answer(a) => black_box(a),
                other => panic!("{other:?}"),
            })
        });
    }
    group.sample_size(10);
    group.bench_function("compile_10k", |b| {
        b.iter(|| black_box(ZoneIndex::compile(black_box(&snapshot), "cluster.local", 30).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
