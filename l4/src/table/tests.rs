use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ferry_model::{ServiceType, SessionAffinity};

use super::*;
use crate::tests::{Svc, snapshot};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn addrs(table: &Table) -> Vec<SocketAddr> {
    let mut v: Vec<_> = table.addrs().collect();
    v.sort();
    v
}

#[test]
fn one_address_per_cluster_ip_in_range_and_node_port() {
    let mut svc = Svc::new("web", ip("127.2.0.10"), 80, &[addr("10.0.0.1:8080")]);
    svc.cluster_ips.push(ip("10.96.0.10"));
    svc.service_type = ServiceType::NodePort;
    svc.node_port = Some(30080);
    let table = Table::compile(&snapshot(1, &[svc]), &Config::default(), None);
    assert_eq!(
        addrs(&table),
        [addr("127.0.0.1:30080"), addr("127.2.0.10:80")]
    );
    let route = table.route(addr("127.0.0.1:30080")).unwrap();
    assert_eq!(&*route.service, "test/web:80");
    assert_eq!(route.balancer.endpoints(), [addr("10.0.0.1:8080")]);
    assert!(Arc::ptr_eq(
        &route.balancer,
        &table.route(addr("127.2.0.10:80")).unwrap().balancer
    ));
}

#[test]
fn ready_endpoints_else_serving_terminating_ones() {
    let mut svc = Svc::new(
        "web",
        ip("127.2.0.10"),
        80,
        &[addr("10.0.0.1:80"), addr("10.0.0.2:80")],
    );
    svc.endpoints[1].1 = false;
    let mut s = snapshot(1, std::slice::from_ref(&svc));
    let table = Table::compile(&s, &Config::default(), None);
    let route = table.route(svc.addr()).unwrap();
    assert_eq!(route.balancer.endpoints(), [addr("10.0.0.1:80")]);

    // The last Pod is terminating but still serving: kube-proxy keeps sending to it.
    let e = &mut Arc::make_mut(&mut s.clusters[0]).endpoints;
    e[0].ready = false;
    e[0].terminating = true;
    e[0].serving = true;
    let table = Table::compile(&s, &Config::default(), None);
    let route = table.route(svc.addr()).unwrap();
    assert_eq!(route.balancer.endpoints(), [addr("10.0.0.1:80")]);

    Arc::make_mut(&mut s.clusters[0]).endpoints[0].serving = false;
    let table = Table::compile(&s, &Config::default(), None);
    assert!(addrs(&table).is_empty(), "nothing to send to: no listener");
}

#[test]
fn headless_external_name_and_clashes() {
    let be = [addr("10.0.0.1:80")];
    let first = Svc::new("a", ip("127.2.0.10"), 80, &be);
    let clash = Svc::new("b", ip("127.2.0.10"), 80, &be);
    let mut s = snapshot(1, &[first, clash]);
    let table = Table::compile(&s, &Config::default(), None);
    assert_eq!(addrs(&table), [addr("127.2.0.10:80")]);
    assert_eq!(
        &*table.route(addr("127.2.0.10:80")).unwrap().service,
        "test/a:80",
        "the first keeps it"
    );
    Arc::make_mut(&mut s.services[0]).headless = true;
    Arc::make_mut(&mut s.services[1]).service_type = ServiceType::ExternalName;
    Arc::make_mut(&mut s.services[1]).external_name = Some("example.com".into());
    let table = Table::compile(&s, &Config::default(), None);
    assert!(addrs(&table).is_empty());
}

#[test]
fn state_carries_over_to_the_next_table() {
    let mut svc = Svc::new(
        "web",
        ip("127.2.0.10"),
        80,
        &[addr("10.0.0.1:80"), addr("10.0.0.2:80")],
    );
    svc.affinity = SessionAffinity::ClientIP {
        timeout_seconds: 60,
    };
    let s = snapshot(1, std::slice::from_ref(&svc));
    let old = Table::compile(&s, &Config::default(), None);
    let client = ip("127.0.0.5");
    let now = std::time::Instant::now();
    old.route(svc.addr())
        .unwrap()
        .balancer
        .connected(client, addr("10.0.0.2:80"), now);
    let new = Table::compile(&s, &Config::default(), Some(&old));
    let picked = new
        .route(svc.addr())
        .unwrap()
        .balancer
        .pick(crate::Balance::Random, client, now)
        .next();
    assert_eq!(picked, Some(addr("10.0.0.2:80")));
}

/// kube-dns: 53/UDP and 53/TCP on one cluster IP. The TCP port is proxied; the UDP port is not,
/// which is said once (a warning when it first appears), and nothing else changes.
#[test]
fn a_udp_port_next_to_its_tcp_twin_is_warned_about_once_and_not_proxied() {
    let tcp = Svc::new("kube-dns", ip("127.2.0.10"), 53, &[addr("127.1.0.53:5353")]);
    let mut udp = tcp.clone();
    udp.protocol = ferry_model::Protocol::UDP;
    udp.endpoints = vec![(addr("127.1.0.53:5354"), true)];
    let mut s = snapshot(1, &[tcp]);
    let with_udp = snapshot(1, &[udp]);
    // One Service with both ports: merge the UDP port and cluster into the TCP one's.
    Arc::make_mut(&mut s.services[0])
        .ports
        .push(with_udp.services[0].ports[0].clone());
    s.clusters.push(with_udp.clusters[0].clone());
    s.validate().unwrap();

    let table = Table::compile(&s, &Config::default(), None);
    assert_eq!(addrs(&table), [addr("127.2.0.10:53")]);
    let route = table.route(addr("127.2.0.10:53")).unwrap();
    assert_eq!(&*route.service, "test/kube-dns:53");
    assert_eq!(route.balancer.endpoints(), [addr("127.1.0.53:5353")]);
    let warned: Vec<String> = table.warned().iter().map(ToString::to_string).collect();
    assert_eq!(warned, ["test/kube-dns:53/UDP"]);

    let again = Table::compile(&s, &Config::default(), Some(&table));
    assert!(
        again.warned().is_empty(),
        "warned once, not on every snapshot"
    );
    assert_eq!(addrs(&again), [addr("127.2.0.10:53")]);
}
