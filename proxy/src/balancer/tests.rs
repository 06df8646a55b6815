use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use ferry_model::SessionAffinity;

use super::peak_ewma::PeakEwma;
use super::*;
use crate::health::AttemptOutcome::{ConnectError, Status5xx, Success};

const ALL: [Policy; 3] = [
    Policy::P2cPeakEwma,
    Policy::RoundRobin,
    Policy::ConsistentHash,
];

fn addrs(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 8080)))
        .collect()
}

fn config(policy: Policy) -> BalancerConfig {
    BalancerConfig {
        policy,
        ..BalancerConfig::default()
    }
}

fn balancer(n: usize, policy: Policy) -> (Balancer, Vec<SocketAddr>, Instant) {
    let t0 = Instant::now();
    let a = addrs(n);
    let b = Balancer::new(&a, &config(policy), t0).seeded(7);
    (b, a, t0)
}

fn index(addrs: &[SocketAddr], addr: SocketAddr) -> usize {
    addrs
        .iter()
        .position(|a| *a == addr)
        .expect("a known endpoint")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Sequential requests one millisecond apart, each finished successfully `latency(endpoint,
/// request)` after its pick; returns the requests each endpoint took.
fn simulate(
    b: &Balancer,
    addrs: &[SocketAddr],
    t0: Instant,
    requests: u64,
    latency: impl Fn(usize, u64) -> Duration,
) -> Vec<u64> {
    let mut counts = vec![0; addrs.len()];
    for r in 0..requests {
        let now = t0 + ms(r);
        let pick = b.pick(None, &[], now).expect("an endpoint");
        let i = index(addrs, pick.addr());
        counts[i] += 1;
        pick.finish(Success, now + latency(i, r));
    }
    counts
}

/// Ejects `target` by failing `threshold` attempts on it (the others excluded) at `now`.
fn eject(b: &Balancer, addrs: &[SocketAddr], target: SocketAddr, now: Instant) {
    let others: Vec<SocketAddr> = addrs.iter().copied().filter(|a| *a != target).collect();
    for _ in 0..b.config().health.failure_threshold {
        let pick = b.pick(Some(0), &others, now).expect("the target");
        assert_eq!(pick.addr(), target);
        pick.finish(ConnectError, now);
    }
    let stats: Vec<EndpointStats> = b.stats(now).collect();
    let s = &stats[index(addrs, target)];
    assert!(matches!(s.health, Status::Ejected { .. }), "{s:?}");
}

// ---------------------------------------------------------------- peak-EWMA

#[test]
fn peak_ewma_jumps_to_a_peak_and_decays_toward_lower_samples() {
    let tau = 10e9;
    let e = PeakEwma::new(30e6, 0);
    assert_eq!(e.get(0, tau), 30e6);
    // A peak replaces the estimate.
    e.observe(100e6, 1_000, tau, false);
    assert_eq!(e.get(1_000, tau), 100e6);
    // A lower sample τ later pulls it 1 - 1/e of the way.
    let t = 1_000 + 10_000_000_000;
    e.observe(10e6, t, tau, false);
    let expected = 100e6 / std::f64::consts::E + 10e6 * (1.0 - 1.0 / std::f64::consts::E);
    assert!((e.get(t, tau) - expected).abs() < 1.0, "{}", e.get(t, tau));
    // A lower sample at the same instant moves nothing: no time, no weight.
    e.observe(1e6, t, tau, false);
    assert!((e.get(t, tau) - expected).abs() < 1.0);
}

#[test]
fn peak_ewma_read_decays_toward_zero_between_samples() {
    let tau = 10e9;
    let e = PeakEwma::new(80e6, 0);
    let half_life = (tau * std::f64::consts::LN_2) as u64;
    assert!((e.get(half_life, tau) - 40e6).abs() < 1.0);
    assert!((e.get(2 * half_life, tau) - 20e6).abs() < 1.0);
    // Reading changes nothing: a sample later decays from the stored value.
    assert_eq!(e.get(0, tau), 80e6);
}

#[test]
fn peak_ewma_failures_raise_but_never_lower() {
    let tau = 10e9;
    let e = PeakEwma::new(50e6, 0);
    e.observe(1e6, 20_000_000_000, tau, true);
    // Two τ later a fast failure leaves the stored estimate and restarts the decay.
    assert_eq!(e.get(20_000_000_000, tau), 50e6);
    e.observe(90e6, 20_000_000_001, tau, true);
    assert_eq!(e.get(20_000_000_001, tau), 90e6);
}

#[test]
fn peak_ewma_out_of_order_samples_do_not_decay() {
    let tau = 10e9;
    let e = PeakEwma::new(50e6, 5_000_000_000);
    // A sample stamped before the last one gets no weight and does not move the stamp back.
    e.observe(10e6, 1_000_000_000, tau, false);
    assert_eq!(e.get(5_000_000_000, tau), 50e6);
}

// ---------------------------------------------------------------- P2C

#[test]
fn p2c_sends_little_traffic_to_a_slow_endpoint() {
    let (b, a, t0) = balancer(5, Policy::P2cPeakEwma);
    let counts = simulate(&b, &a, t0, 10_000, |i, _| ms(if i == 0 { 100 } else { 10 }));
    // A fair share would be 2,000.
    assert!(counts[0] < 200, "{counts:?}");
    for &c in &counts[1..] {
        assert!((2_100..=2_900).contains(&c), "{counts:?}");
    }
}

/// Open-loop traffic: `per_ms` requests arrive each millisecond for `millis`, each finished
/// successfully `latency(endpoint, request)` after its pick, so requests overlap and in-flight
/// counts weigh as they do in a real proxy. Returns the requests each endpoint took.
fn simulate_open(
    b: &Balancer,
    addrs: &[SocketAddr],
    t0: Instant,
    per_ms: u64,
    millis: u64,
    latency: impl Fn(usize, u64) -> Duration,
) -> Vec<u64> {
    let mut counts = vec![0; addrs.len()];
    let mut in_flight: Vec<(Instant, Pick)> = Vec::new();
    let mut r = 0;
    for m in 0..millis {
        let now = t0 + ms(m);
        let (done, going): (Vec<_>, Vec<_>) = in_flight.drain(..).partition(|(at, _)| *at <= now);
        in_flight = going;
        for (at, pick) in done {
            pick.finish(Success, at);
        }
        for _ in 0..per_ms {
            let pick = b.pick(None, &[], now).expect("an endpoint");
            let i = index(addrs, pick.addr());
            counts[i] += 1;
            in_flight.push((now + latency(i, r), pick));
            r += 1;
        }
    }
    counts
}

#[test]
fn p2c_spreads_evenly_among_equals() {
    let (b, a, t0) = balancer(10, Policy::P2cPeakEwma);
    // 2 requests a millisecond of 5-15 ms each: about 20 in flight.
    let counts = simulate_open(&b, &a, t0, 2, 10_000, |i, r| {
        Duration::from_micros(5_000 + (ring::mix(r * 31 + i as u64) % 10_000))
    });
    for &c in &counts {
        assert!((1_700..=2_300).contains(&c), "{counts:?}");
    }
}

#[test]
fn p2c_sends_little_concurrent_traffic_to_a_slow_endpoint() {
    let (b, a, t0) = balancer(10, Policy::P2cPeakEwma);
    let counts = simulate_open(&b, &a, t0, 2, 10_000, |i, _| {
        ms(if i == 0 { 200 } else { 10 })
    });
    // A fair share would be 2,000.
    assert!(counts[0] < 400, "{counts:?}");
}

#[test]
fn p2c_in_flight_requests_spread_evenly() {
    let (b, a, t0) = balancer(4, Policy::P2cPeakEwma);
    // Nobody finishes: in-flight counts alone steer.
    let held: Vec<Pick> = (0..400)
        .map(|_| b.pick(None, &[], t0).expect("an endpoint"))
        .collect();
    for s in b.stats(t0) {
        assert!((80..=120).contains(&s.in_flight), "{s:?}");
    }
    assert_eq!(held.len(), 400);
    drop(held);
    assert!(b.stats(t0).all(|s| s.in_flight == 0));
    let _ = a;
}

#[test]
fn p2c_avoids_a_busy_endpoint() {
    let (b, a, t0) = balancer(4, Policy::P2cPeakEwma);
    // 20 long requests on endpoint 0.
    let held: Vec<Pick> = (0..20)
        .map(|_| b.pick(None, &a[1..], t0).expect("endpoint 0"))
        .collect();
    assert!(held.iter().all(|p| p.addr() == a[0]));
    let counts = simulate(&b, &a, t0, 3_000, |_, _| ms(10));
    assert!(counts[0] < 60, "{counts:?}");
}

#[test]
fn p2c_with_one_endpoint_picks_it() {
    let (b, a, t0) = balancer(1, Policy::P2cPeakEwma);
    for _ in 0..10 {
        assert_eq!(b.pick(None, &[], t0).map(|p| p.addr()), Some(a[0]));
    }
}

#[test]
fn new_endpoints_start_at_the_default_rtt() {
    let (b, _, t0) = balancer(3, Policy::P2cPeakEwma);
    assert!(
        b.stats(t0)
            .all(|s| s.rtt == ms(30) && s.health == Status::Healthy)
    );
}

#[test]
fn a_dropped_pick_records_nothing() {
    let (b, a, t0) = balancer(2, Policy::RoundRobin);
    let pick = b.pick(None, &[], t0).expect("an endpoint");
    assert_eq!(pick.addr(), a[0]);
    assert_eq!(b.stats(t0).next().map(|s| s.in_flight), Some(1));
    drop(pick);
    let s = b.stats(t0).next().expect("endpoint 0");
    assert_eq!((s.in_flight, s.rtt), (0, ms(30)));
}

#[test]
fn finish_records_latency_and_health() {
    let (b, a, t0) = balancer(2, Policy::RoundRobin);
    let pick = b.pick(None, &[], t0).expect("an endpoint");
    assert_eq!(pick.started(), t0);
    assert_eq!(pick.finish(Success, t0 + ms(250)), Transition::Unchanged);
    let s = b.stats(t0 + ms(250)).next().expect("endpoint 0");
    assert_eq!((s.addr, s.rtt, s.in_flight), (a[0], ms(250), 0));
}

// ---------------------------------------------------------------- round-robin

#[test]
fn round_robin_is_exact() {
    let (b, a, t0) = balancer(3, Policy::RoundRobin);
    for round in 0..100 {
        for (i, addr) in a.iter().enumerate() {
            let pick = b.pick(Some(round), &[], t0).expect("an endpoint");
            assert_eq!(pick.addr(), *addr, "round {round}, turn {i}");
            pick.finish(if round % 2 == 0 { Success } else { Status5xx }, t0);
        }
    }
}

#[test]
fn round_robin_skips_excluded_and_ejected() {
    let (b, a, t0) = balancer(4, Policy::RoundRobin);
    eject(&b, &a, a[2], t0);
    // The ejections took turns 0-4: the cycle goes on from turn 5, and a skipped endpoint's
    // turn goes to the next usable one.
    let picked: Vec<SocketAddr> = (0..8)
        .map(|_| b.pick(None, &[a[0]], t0).expect("an endpoint").addr())
        .collect();
    assert_eq!(picked, [a[1], a[3], a[3], a[1], a[1], a[3], a[3], a[1]]);
}

// ---------------------------------------------------------------- every policy

#[test]
fn excluded_endpoints_are_never_picked() {
    for policy in ALL {
        let (b, a, t0) = balancer(10, policy);
        let exclude = [a[0], a[3], a[9]];
        for k in 0..2_000 {
            let key = (k % 2 == 0).then_some(k);
            let pick = b.pick(key, &exclude, t0).expect("an endpoint");
            assert!(!exclude.contains(&pick.addr()), "{policy:?}");
            pick.finish(Success, t0);
        }
    }
}

#[test]
fn ejected_endpoints_are_not_picked_until_probation() {
    for policy in ALL {
        let (b, a, t0) = balancer(5, policy);
        eject(&b, &a, a[1], t0);
        let during = t0 + ms(999);
        for k in 0..2_000 {
            let pick = b.pick(Some(k), &[], during).expect("an endpoint");
            assert_ne!(pick.addr(), a[1], "{policy:?}");
        }
        // The 1 s ejection is over: it is tried again, and a success readmits it.
        let after = t0 + ms(1_000);
        let pick = (0..2_000)
            .filter_map(|k| b.pick(Some(k), &[], after))
            .find(|p| p.addr() == a[1])
            .expect("endpoint 1 on probation is picked");
        assert_eq!(
            pick.finish(Success, after),
            Transition::Readmitted,
            "{policy:?}"
        );
    }
}

#[test]
fn panic_mode_picks_among_ejected_endpoints() {
    for policy in ALL {
        let (b, a, t0) = balancer(4, policy);
        for addr in &a {
            eject(&b, &a, *addr, t0);
        }
        let mut seen = std::collections::HashSet::new();
        for k in 0..400 {
            let pick = b.pick(Some(k), &[a[0]], t0).expect("panic mode picks");
            assert_ne!(pick.addr(), a[0], "{policy:?}: excluded even in panic mode");
            seen.insert(pick.addr());
        }
        assert_eq!(seen.len(), 3, "{policy:?}: {seen:?}");
        // One healthy endpoint ends panic mode: it takes everything.
        let (b, a, t0) = balancer(4, policy);
        for addr in &a[1..] {
            eject(&b, &a, *addr, t0);
        }
        for k in 0..100 {
            assert_eq!(b.pick(Some(k), &[], t0).map(|p| p.addr()), Some(a[0]));
        }
    }
}

#[test]
fn nothing_to_pick() {
    for policy in ALL {
        let t0 = Instant::now();
        let empty = Balancer::new(&[], &config(policy), t0);
        assert!(empty.is_empty());
        assert!(empty.pick(Some(1), &[], t0).is_none());
        let (b, a, t0) = balancer(3, policy);
        assert!(b.pick(Some(1), &a, t0).is_none(), "{policy:?}");
        assert!(b.pick(None, &a, t0).is_none(), "{policy:?}");
    }
}

#[test]
fn duplicates_are_dropped() {
    let t0 = Instant::now();
    let a = addrs(2);
    let b = Balancer::new(&[a[0], a[1], a[0]], &config(Policy::RoundRobin), t0);
    assert_eq!(b.len(), 2);
    assert_eq!(b.endpoints().collect::<Vec<_>>(), a);
}

#[test]
fn concurrent_picks_settle_in_flight_to_zero() {
    for policy in ALL {
        let (b, a, t0) = balancer(8, policy);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let b = &b;
                let a = &a;
                s.spawn(move || {
                    for r in 0..5_000u64 {
                        let now = t0 + Duration::from_micros(r * 10);
                        let exclude = if r % 7 == 0 { &a[..2] } else { &[][..] };
                        let pick = b.pick(Some(r * 4 + t), exclude, now).expect("an endpoint");
                        let outcome = if r % 11 == 0 { ConnectError } else { Success };
                        pick.finish(outcome, now + Duration::from_micros(500));
                    }
                });
            }
        });
        assert!(b.stats(t0).all(|s| s.in_flight == 0), "{policy:?}");
    }
}

// ---------------------------------------------------------------- consistent hashing

fn owners(b: &Balancer, keys: u64, t0: Instant) -> Vec<SocketAddr> {
    (0..keys)
        .map(|k| {
            b.pick(Some(affinity_key(&k.to_le_bytes())), &[], t0)
                .expect("an endpoint")
                .addr()
        })
        .collect()
}

#[test]
fn consistent_hash_is_stable_per_key() {
    let (b, a, t0) = balancer(10, Policy::ConsistentHash);
    // Another balancer over the same endpoints, another seed, in another order: same owners.
    let mut reversed = a.clone();
    reversed.reverse();
    let other = Balancer::new(&reversed, &config(Policy::ConsistentHash), t0).seeded(99);
    for k in 0..1_000u64 {
        let key = affinity_key(&k.to_le_bytes());
        let first = b.pick(Some(key), &[], t0).expect("an endpoint").addr();
        for _ in 0..5 {
            let pick = b.pick(Some(key), &[], t0).expect("an endpoint");
            assert_eq!(pick.addr(), first);
            pick.finish(Success, t0 + ms(k % 50));
        }
        assert_eq!(
            other.pick(Some(key), &[], t0).map(|p| p.addr()),
            Some(first)
        );
    }
}

#[test]
fn consistent_hash_spreads_keys() {
    let (b, a, t0) = balancer(10, Policy::ConsistentHash);
    let mut counts = vec![0u32; 10];
    for owner in owners(&b, 100_000, t0) {
        counts[index(&a, owner)] += 1;
    }
    for &c in &counts {
        assert!((7_000..=13_000).contains(&c), "{counts:?}");
    }
}

#[test]
fn consistent_hash_remaps_about_one_nth_on_removal_and_addition() {
    let (b, a, t0) = balancer(10, Policy::ConsistentHash);
    let keys = 50_000;
    let before = owners(&b, keys, t0);

    let removed = a[4];
    let fewer: Vec<SocketAddr> = a.iter().copied().filter(|x| *x != removed).collect();
    let after = owners(&b.update(&fewer, b.config(), t0), keys, t0);
    let mut moved = 0;
    for (x, y) in before.iter().zip(&after) {
        if x != y {
            // Only the removed endpoint's keys move.
            assert_eq!(*x, removed);
            moved += 1;
        } else {
            assert_ne!(*x, removed);
        }
    }
    let share = f64::from(moved) / keys as f64;
    assert!((0.06..=0.14).contains(&share), "{share}");

    let added = SocketAddr::from(([10, 9, 9, 9], 8080));
    let mut more = a.clone();
    more.push(added);
    let after = owners(&b.update(&more, b.config(), t0), keys, t0);
    let mut moved = 0;
    for (x, y) in before.iter().zip(&after) {
        if x != y {
            // Only keys the new endpoint takes move.
            assert_eq!(*y, added);
            moved += 1;
        }
    }
    let share = f64::from(moved) / keys as f64;
    assert!((0.05..=0.13).contains(&share), "{share}");
}

#[test]
fn consistent_hash_walks_past_an_unusable_owner_only_for_its_keys() {
    let (b, a, t0) = balancer(6, Policy::ConsistentHash);
    let keys = 5_000;
    let before = owners(&b, keys, t0);
    eject(&b, &a, a[2], t0);
    let ejected = owners(&b, keys, t0);
    let mut excluded = Vec::new();
    for k in 0..keys {
        let key = affinity_key(&k.to_le_bytes());
        excluded.push(b.pick(Some(key), &[a[2]], t0).expect("an endpoint").addr());
    }
    let mut successors = std::collections::HashSet::new();
    for i in 0..before.len() {
        if before[i] == a[2] {
            assert_ne!(ejected[i], a[2]);
            successors.insert(ejected[i]);
        } else {
            assert_eq!(ejected[i], before[i]);
        }
        // Excluded or ejected, the next owner is the same endpoint clockwise.
        assert_eq!(excluded[i], ejected[i]);
    }
    // The owner's points are scattered: its keys spread over the others, not onto one.
    assert!(successors.len() >= 4, "{successors:?}");
}

#[test]
fn consistent_hash_without_a_key_balances() {
    let (b, a, t0) = balancer(4, Policy::ConsistentHash);
    let counts = simulate(&b, &a, t0, 4_000, |_, _| ms(5));
    for &c in &counts {
        assert!((700..=1_300).contains(&c), "{counts:?}");
    }
}

#[test]
fn affinity_keys_are_stable() {
    // Pinned: the key of the same bytes must not change across processes or releases, or
    // gateway replicas would disagree on owners.
    assert_eq!(affinity_key(b""), ring::mix(0xcbf2_9ce4_8422_2325));
    assert_eq!(affinity_key(b"session-42"), affinity_key(b"session-42"));
    assert_ne!(affinity_key(b"session-42"), affinity_key(b"session-43"));
    let v4 = Ipv4Addr::new(192, 0, 2, 7);
    assert_eq!(
        client_ip_key(IpAddr::V4(v4)),
        client_ip_key(IpAddr::V6(v4.to_ipv6_mapped()))
    );
    assert_eq!(client_ip_key(IpAddr::V4(v4)), affinity_key(&[192, 0, 2, 7]));
    assert_ne!(
        client_ip_key(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        client_ip_key(IpAddr::V4(Ipv4Addr::LOCALHOST))
    );
}

#[test]
fn policy_for_session_affinity() {
    assert_eq!(
        Policy::for_affinity(&SessionAffinity::None),
        Policy::P2cPeakEwma
    );
    assert_eq!(
        Policy::for_affinity(&SessionAffinity::ClientIP {
            timeout_seconds: 10_800
        }),
        Policy::ConsistentHash
    );
}

// ---------------------------------------------------------------- update

#[test]
fn update_keeps_the_state_of_surviving_endpoints() {
    let (b, a, t0) = balancer(4, Policy::P2cPeakEwma);
    eject(&b, &a, a[0], t0);
    // A slow response on endpoint 1, and a request still in flight on endpoint 2.
    let others = [a[0], a[2], a[3]];
    b.pick(None, &others, t0)
        .expect("endpoint 1")
        .finish(Success, t0 + ms(400));
    let in_flight = b.pick(None, &[a[0], a[1], a[3]], t0).expect("endpoint 2");
    assert!(b.retry_budget().try_withdraw(t0));
    let budget_left = b.retry_budget().remaining(t0);

    let now = t0 + ms(500);
    let new_addr = SocketAddr::from(([10, 9, 9, 9], 8080));
    let next = b.update(&[a[2], a[1], a[0], new_addr], b.config(), now);
    let old_stats: Vec<EndpointStats> = b.stats(now).collect();
    let stats: Vec<EndpointStats> = next.stats(now).collect();
    assert_eq!(stats.len(), 4);
    assert_eq!(stats[0], old_stats[2]);
    assert_eq!(stats[1], old_stats[1]);
    assert_eq!(stats[2], old_stats[0]);
    assert!(matches!(stats[2].health, Status::Ejected { .. }));
    assert!(stats[1].rtt > ms(300));
    assert_eq!(stats[0].in_flight, 1);
    assert_eq!(
        (stats[3].rtt, stats[3].in_flight, stats[3].health),
        (ms(30), 0, Status::Healthy)
    );
    // The old balancer's pick finishes into the shared state.
    in_flight.finish(Success, now);
    assert_eq!(next.stats(now).next().map(|s| s.in_flight), Some(0));
    assert_eq!(next.retry_budget().remaining(now), budget_left);

    // The ejected endpoint stays out of the new balancer's picks.
    for _ in 0..500 {
        assert_ne!(next.pick(None, &[], now).map(|p| p.addr()), Some(a[0]));
    }
}

#[test]
fn update_with_another_config_switches_policy_and_budget() {
    let (b, a, t0) = balancer(3, Policy::P2cPeakEwma);
    eject(&b, &a, a[1], t0);
    while b.retry_budget().try_withdraw(t0) {}
    let mut c = config(Policy::RoundRobin);
    c.budget.min_per_second = 1;
    let next = b.update(&a, &c, t0);
    assert_eq!(next.config().policy, Policy::RoundRobin);
    assert_eq!(next.retry_budget().remaining(t0), 10);
    // Round-robin now, still without the ejected endpoint.
    let picked: Vec<SocketAddr> = (0..4)
        .map(|_| next.pick(None, &[], t0).expect("an endpoint").addr())
        .collect();
    assert_eq!(picked, [a[0], a[2], a[2], a[0]]);
}

#[test]
fn picks_outlive_their_balancer() {
    let (b, a, t0) = balancer(2, Policy::RoundRobin);
    let next = b.update(&a, b.config(), t0);
    let pick = b.pick(None, &[], t0).expect("an endpoint");
    drop(b);
    assert_eq!(next.stats(t0).next().map(|s| s.in_flight), Some(1));
    pick.finish(Success, t0 + ms(1));
    assert!(next.stats(t0).all(|s| s.in_flight == 0));
}

#[test]
fn update_reuses_the_ring_only_for_the_same_endpoints() {
    let (b, a, t0) = balancer(5, Policy::ConsistentHash);
    let same = b.update(&a, b.config(), t0);
    assert!(Arc::ptr_eq(&b.ring, &same.ring));
    // Otherwise it is derived from the old one, and is the ring a build makes.
    let fewer = b.update(&a[1..], b.config(), t0);
    assert!(!Arc::ptr_eq(&b.ring, &fewer.ring));
    assert_eq!(*fewer.ring, Ring::build(a[1..].iter().copied()));
    let extra = SocketAddr::from(([10, 9, 9, 9], 8080));
    for list in [
        vec![a[3], extra, a[0]],
        vec![extra],
        vec![],
        vec![a[4], a[3], a[2], a[1], a[0], extra],
    ] {
        let next = fewer.update(&list, b.config(), t0);
        assert_eq!(*next.ring, Ring::build(list.iter().copied()), "{list:?}");
    }
    // Another order is another ring (indexes differ), owning the same keys.
    let mut reversed = a.clone();
    reversed.reverse();
    let other = b.update(&reversed, b.config(), t0);
    assert!(!Arc::ptr_eq(&b.ring, &other.ring));
    assert_eq!(owners(&b, 2_000, t0), owners(&other, 2_000, t0));
    // From another policy the ring is built.
    let (p2c, a, t0) = balancer(5, Policy::P2cPeakEwma);
    let ch = p2c.update(&a, &config(Policy::ConsistentHash), t0);
    assert_eq!(*ch.ring, Ring::build(a.iter().copied()));
    assert_eq!(*p2c.ring, Ring::default());
}

#[test]
fn ring_buckets_agree_with_a_plain_search() {
    for n in [1, 2, 3, 10, 100] {
        let ring = Ring::build(addrs(n).into_iter());
        let mut pairs: Vec<(u64, u32)> = ring
            .points
            .iter()
            .copied()
            .zip(ring.owners.iter().copied())
            .collect();
        pairs.sort_unstable();
        for k in 0..2_000u64 {
            let key = k.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (k << 60);
            let h = ring::mix(key);
            let i = pairs.partition_point(|&(p, _)| p < h) % pairs.len();
            assert_eq!(
                ring.walk(key).next(),
                Some(pairs[i].1 as usize),
                "n {n}, key {key}"
            );
        }
        // The walk goes once round the ring.
        assert_eq!(ring.walk(0).count(), n * ring::POINTS as usize);
    }
}

use proptest::prelude::Strategy as _;

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever the old and new endpoint lists, a ring derived from the old one is the ring a
    /// build makes.
    #[test]
    fn ring_rebuild_is_a_build(
        old in proptest::sample::subsequence((0..30).collect::<Vec<usize>>(), 0..30)
            .prop_shuffle(),
        new in proptest::sample::subsequence((0..30).collect::<Vec<usize>>(), 0..30)
            .prop_shuffle(),
    ) {
        let all = addrs(30);
        let old: Vec<SocketAddr> = old.iter().map(|&i| all[i]).collect();
        let new: Vec<SocketAddr> = new.iter().map(|&i| all[i]).collect();
        let ring = Ring::build(old.iter().copied());
        proptest::prop_assert_eq!(ring.rebuild(&old, &new), Ring::build(new.iter().copied()));
    }
}

#[test]
fn the_request_path_types_cross_threads() {
    // The gateway holds these across awaits on a multi-threaded runtime, and a pick may move
    // into a response body that outlives the request's function.
    fn send_sync_static<T: Send + Sync + 'static>() {}
    send_sync_static::<Balancer>();
    send_sync_static::<Pick>();
    send_sync_static::<RetryBudget>();
    send_sync_static::<crate::health::Health>();
}
