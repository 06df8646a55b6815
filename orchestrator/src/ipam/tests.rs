use std::net::IpAddr;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn usable_addresses_leave_out_the_first_and_last() {
    assert_eq!(usable("127.1.0.0/16".parse().unwrap()), 65534);
    assert_eq!(usable("127.1.0.0/31".parse().unwrap()), 0);
    assert_eq!(usable("fd00:2::/112".parse().unwrap()), 65534);
}

#[test]
fn allocates_skipping_network_and_broadcast_and_reuses_late() {
    let mut a = IpAllocator::new("10.0.0.0/30".parse().unwrap());
    assert_eq!(a.allocate(), Some(ip("10.0.0.1")));
    assert_eq!(a.allocate(), Some(ip("10.0.0.2")));
    assert_eq!(a.allocate(), None, "only two usable addresses in a /30");
    a.release(ip("10.0.0.1"));
    assert_eq!(a.allocate(), Some(ip("10.0.0.1")));

    let mut a = IpAllocator::new("127.1.0.0/16".parse().unwrap());
    let first = a.allocate().unwrap();
    let second = a.allocate().unwrap();
    a.release(first);
    assert_ne!(a.allocate(), Some(first), "a freed address waits its turn");
    assert!(a.reserve(ip("127.1.9.9")));
    assert!(!a.reserve(ip("127.1.9.9")), "taken");
    assert!(!a.reserve(ip("127.2.0.1")), "outside");
    assert!(!a.reserve(ip("127.1.0.0")), "the network address");
    assert!(!a.reserve(second));
    assert_eq!(a.in_use(), 3);
}

#[test]
fn node_ports_stay_in_range() {
    let mut p = PortAllocator::default();
    assert!(p.reserve(30000));
    assert_eq!(p.allocate(), Some(30001));
    assert!(!p.reserve(8080));
    for _ in 0..(32767 - 30001) {
        assert!(p.allocate().is_some());
    }
    assert_eq!(p.allocate(), None);
    p.release(31000);
    assert_eq!(p.allocate(), Some(31000));
}
