use std::net::IpAddr;

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn parses_and_prints_both_families() {
    let v4: Cidr = "127.2.0.0/16".parse().unwrap();
    assert_eq!((v4.addr(), v4.prefix()), (ip("127.2.0.0"), 16));
    assert_eq!(v4.to_string(), "127.2.0.0/16");
    let v6: Cidr = " fd00:2::/108 ".parse().unwrap();
    assert_eq!(v6.to_string(), "fd00:2::/108");
    assert_eq!("10.0.0.7/32".parse::<Cidr>().unwrap().prefix(), 32);
    assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix(), 0);
}

#[test]
fn contains_only_its_own_addresses() {
    let v4: Cidr = "127.2.0.0/16".parse().unwrap();
    assert!(v4.contains(ip("127.2.0.0")));
    assert!(v4.contains(ip("127.2.255.255")));
    assert!(!v4.contains(ip("127.3.0.1")));
    assert!(!v4.contains(ip("127.1.255.255")));
    assert!(
        !v4.contains(ip("::ffff:127.2.0.1")),
        "never across families"
    );
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains(ip("203.0.113.9")));
    let host: Cidr = "10.0.0.7/32".parse().unwrap();
    assert!(host.contains(ip("10.0.0.7")) && !host.contains(ip("10.0.0.6")));
    let v6: Cidr = "fd00:2::/108".parse().unwrap();
    assert!(v6.contains(ip("fd00:2::1")));
    assert!(v6.contains(ip("fd00:2::f:ffff")));
    assert!(!v6.contains(ip("fd00:2::10:0")));
    assert!(!v6.contains(ip("127.2.0.1")));
}

#[test]
fn rejects_with_a_clear_reason() {
    let err = |s: &str| s.parse::<Cidr>().unwrap_err().to_string();
    assert_eq!(
        err("127.2.0.0"),
        "CIDR 127.2.0.0: expected ADDRESS/PREFIX, e.g. 127.2.0.0/16"
    );
    assert!(err("127.2.0/16").contains("not an IPv4 or IPv6 address"));
    assert!(err("127.2.0.0/x").contains("prefix length is not a number"));
    assert!(err("127.2.0.0/33").contains("at most 32 for IPv4"));
    assert!(err("fd00::/129").contains("at most 128 for IPv6"));
    assert_eq!(
        err("127.2.0.1/16"),
        "CIDR 127.2.0.1/16: host bits are set past the prefix (the network is 127.2.0.0/16)"
    );
    assert!(Cidr::new(ip("fd00:2::1"), 108).is_err());
}
