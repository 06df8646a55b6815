//! What a compiled zone costs per Service: the process's resident memory before and after
//! compiling the zone of N Services (the shape of benches/dns/gen.py: a cluster IP and one named
//! port each, one in ten headless with two ready endpoints), the snapshot already built.
//!
//! The snapshot's own cost is printed too (what the snapshot bus keeps while DNS serves),
//! measured the same way, with whatever building it left in the allocator.
//!
//! `cargo run --release -p ferry-dns --example zone_memory -- 10000`

#![allow(clippy::unwrap_used)] // a measurement: a failed unwrap is a failed run

use std::net::{IpAddr, Ipv4Addr};

use ferry_dns::ZoneIndex;
use ferry_model::{
    Cluster, ClusterKey, Endpoint, Protocol, Service, ServiceEndpoint, ServicePort, ServiceType,
    SessionAffinity, Snapshot, TargetPort,
};

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a60_0000 + i))
}

fn cluster(n: u32) -> Snapshot {
    let mut services = Vec::new();
    let mut clusters = Vec::new();
    for i in 0..n {
        let headless = i % 10 == 9;
        let namespace = format!("ns-{}", i % (n / 100).max(1));
        let name = format!("svc-{i}");
        let eps: Vec<IpAddr> = if headless {
            vec![ip(n + 2 * i), ip(n + 2 * i + 1)]
        } else {
            vec![]
        };
        if headless {
            clusters.push(Cluster {
                key: ClusterKey {
                    namespace: namespace.clone(),
                    service: name.clone(),
                    port: 80,
                    protocol: Protocol::TCP,
                },
                port_name: "http".into(),
                app_protocol: None,
                session_affinity: SessionAffinity::None,
                endpoints: eps
                    .iter()
                    .map(|a| Endpoint {
                        address: *a,
                        port: 8080,
                        ready: true,
                        serving: true,
                        terminating: false,
                        zone: None,
                    })
                    .collect(),
            });
        }
        services.push(Service {
            namespace,
            name,
            service_type: ServiceType::ClusterIP,
            cluster_ips: if headless { vec![] } else { vec![ip(i)] },
            headless,
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
            endpoints: eps
                .iter()
                .map(|a| ServiceEndpoint {
                    address: *a,
                    ready: true,
                    serving: true,
                    terminating: false,
                    hostname: None,
                    node_name: None,
                    zone: None,
                    target: None,
                })
                .collect(),
        });
    }
    services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    clusters.sort_by(|a, b| a.key.cmp(&b.key));
    Snapshot {
        version: 1,
        services: services.into_iter().map(std::sync::Arc::new).collect(),
        clusters: clusters.into_iter().map(std::sync::Arc::new).collect(),
        ..Snapshot::default()
    }
}

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().unwrap());
    let start = rss_kb();
    let snapshot = cluster(n);
    let before = rss_kb();
    println!(
        "{n} Services: snapshot {} KB, {:.0} bytes per Service (a Service is {} bytes and \
         its Arc's 16, a ServicePort {}, a ServiceEndpoint {}, a Cluster {}; each String and \
         Vec a heap block of its own)",
        before - start,
        (before - start) as f64 * 1024.0 / f64::from(n),
        std::mem::size_of::<Service>(),
        std::mem::size_of::<ServicePort>(),
        std::mem::size_of::<ServiceEndpoint>(),
        std::mem::size_of::<Cluster>(),
    );
    let zone = ZoneIndex::compile(&snapshot, "cluster.local", 30).unwrap();
    let after = rss_kb();
    println!(
        "{n} Services, {} names: zone {} KB, {:.0} bytes per Service ({:.0} in its arena and index)",
        zone.len(),
        after - before,
        (after - before) as f64 * 1024.0 / f64::from(n),
        zone.size() as f64 / f64::from(n),
    );
}
