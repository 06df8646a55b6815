use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;

fn endpoints(n: u16) -> Vec<SocketAddr> {
    (1..=n)
        .map(|i| SocketAddr::from(([10, 0, 0, i as u8], 8080)))
        .collect()
}

fn client(i: u8) -> IpAddr {
    IpAddr::from([192, 168, 0, i])
}

#[test]
fn picks_try_every_endpoint_once_starting_anywhere() {
    let b = Balancer::new(endpoints(3), None, None);
    let now = Instant::now();
    for _ in 0..20 {
        let mut all: Vec<_> = b.pick(Balance::Random, client(1), now).collect();
        assert_eq!(all.len(), 3);
        all.sort();
        assert_eq!(all, endpoints(3));
    }
    let empty = Balancer::new(Vec::new(), None, None);
    assert_eq!(empty.pick(Balance::Random, client(1), now).count(), 0);
}

#[test]
fn round_robin_goes_in_turn_and_survives_a_new_snapshot() {
    let b = Balancer::new(endpoints(3), None, None);
    let now = Instant::now();
    let first = |b: &Balancer| b.pick(Balance::RoundRobin, client(1), now).next().unwrap();
    let picks: Vec<_> = (0..6).map(|_| first(&b)).collect();
    let e = endpoints(3);
    assert_eq!(picks, [e[0], e[1], e[2], e[0], e[1], e[2]]);
    let next = Balancer::new(endpoints(3), None, Some(&b));
    assert_eq!(first(&next), e[0], "the counter carries over");
    assert_eq!(first(&b), e[1], "and is shared with the old balancer");
}

#[test]
fn random_spreads_over_every_endpoint() {
    let b = Balancer::new(endpoints(3), None, None);
    let now = Instant::now();
    let mut counts = std::collections::HashMap::new();
    for _ in 0..3000 {
        let e = b.pick(Balance::Random, client(1), now).next().unwrap();
        *counts.entry(e).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 3);
    assert!(counts.values().all(|&c| c > 800), "{counts:?}");
}

#[test]
fn affinity_sticks_refreshes_and_expires() {
    let timeout = Duration::from_secs(10);
    let b = Balancer::new(endpoints(3), Some(timeout), None);
    let t0 = Instant::now();
    let first = b.pick(Balance::Random, client(1), t0).next().unwrap();
    b.connected(client(1), first, t0);
    for s in 1..30 {
        // Each connection refreshes the timeout: 29 s later it still sticks.
        let now = t0 + Duration::from_secs(s);
        assert_eq!(b.pick(Balance::Random, client(1), now).next(), Some(first));
        b.connected(client(1), first, now);
    }
    let last = t0 + Duration::from_secs(29);
    let mut seen = std::collections::HashSet::new();
    for i in 0..50 {
        let later = last + timeout + Duration::from_millis(i);
        seen.insert(b.pick(Balance::Random, client(1), later).next().unwrap());
    }
    assert!(seen.len() > 1, "expired: balanced again");
}

#[test]
fn affinity_forgets_an_endpoint_that_left_and_carries_over_otherwise() {
    let timeout = Duration::from_secs(10);
    let b = Balancer::new(endpoints(3), Some(timeout), None);
    let now = Instant::now();
    let e = endpoints(3);
    b.connected(client(1), e[2], now);
    let same = Balancer::new(endpoints(3), Some(timeout), Some(&b));
    assert_eq!(
        same.pick(Balance::RoundRobin, client(1), now).next(),
        Some(e[2])
    );
    let fewer = Balancer::new(endpoints(2), Some(timeout), Some(&b));
    let picked = fewer.pick(Balance::RoundRobin, client(1), now).next();
    assert_ne!(picked, Some(e[2]));
    let none = Balancer::new(endpoints(3), None, Some(&b));
    assert_eq!(none.remembered(), 0, "affinity off: nothing remembered");
}

#[test]
fn the_affinity_table_is_bounded() {
    let timeout = Duration::from_secs(10);
    let b = Balancer::new(endpoints(1), Some(timeout), None);
    let e = endpoints(1)[0];
    let t0 = Instant::now();
    for i in 0..AFFINITY_CAPACITY as u32 + 10 {
        b.connected(IpAddr::from(i.to_be_bytes()), e, t0);
    }
    assert_eq!(b.remembered(), AFFINITY_CAPACITY);
    // Once they expire, a newcomer sweeps them away.
    b.connected(client(7), e, t0 + timeout);
    assert_eq!(b.remembered(), 1);
}
