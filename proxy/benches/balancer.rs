//! Balancer hot path: one attempt's `pick` + `finish` for each policy over 10 and 1,000
//! endpoints, a retry's pick with the first endpoint excluded, a pick while one endpoint in ten
//! is ejected, `Balancer::update` over 1,000 endpoints (the reload cost, ring build included for
//! consistent hashing), and the retry budget's per-request deposit.
//!
//! `cargo bench -p ferry-proxy --bench balancer`

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ferry_proxy::{AttemptOutcome, Balancer, BalancerConfig, Policy};

fn addrs(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250) as u8 + 1], 8080)))
        .collect()
}

fn balancer(n: usize, policy: Policy, t0: Instant) -> Balancer {
    let config = BalancerConfig {
        policy,
        ..BalancerConfig::default()
    };
    Balancer::new(&addrs(n), &config, t0).seeded(1)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("balancer");
    let t0 = Instant::now();
    for n in [10, 1_000] {
        for (name, policy) in [
            ("p2c", Policy::P2cPeakEwma),
            ("round-robin", Policy::RoundRobin),
            ("consistent-hash", Policy::ConsistentHash),
        ] {
            let b = balancer(n, policy, t0);
            let mut i = 0u64;
            g.bench_function(format!("{name}, {n} endpoints: pick + finish"), |bench| {
                bench.iter(|| {
                    // A microsecond between requests, 2-3 ms each: the EWMA moves every time.
                    i += 1;
                    let now = t0 + Duration::from_micros(i);
                    let pick = b.pick(black_box(Some(i)), &[], now).expect("an endpoint");
                    let rtt = Duration::from_micros(2_000 + i % 1_000);
                    pick.finish(AttemptOutcome::Success, now + rtt)
                })
            });
        }
    }

    let b = balancer(10, Policy::P2cPeakEwma, t0);
    let first = b.endpoints().next().expect("an endpoint");
    let mut i = 0u64;
    g.bench_function(
        "p2c, 10 endpoints: retry pick + finish, 1 excluded",
        |bench| {
            bench.iter(|| {
                i += 1;
                let now = t0 + Duration::from_micros(i);
                let pick = b.pick(None, black_box(&[first]), now).expect("an endpoint");
                pick.finish(AttemptOutcome::Success, now + Duration::from_millis(2))
            })
        },
    );

    // One endpoint in ten ejected for the whole run (30 s ejections, instants within 1 s).
    let b = balancer(1_000, Policy::P2cPeakEwma, t0);
    let mut config = b.config().clone();
    config.health.failure_threshold = 1;
    config.health.base_ejection = Duration::from_secs(30);
    let b = b.update(&addrs(1_000), &config, t0);
    let all: Vec<SocketAddr> = b.endpoints().collect();
    for (k, target) in all.iter().enumerate().filter(|(k, _)| k % 10 == 0) {
        let others: Vec<SocketAddr> = all.iter().copied().filter(|a| a != target).collect();
        let pick = b.pick(None, &others, t0).expect("the target");
        assert_eq!(pick.addr(), all[k]);
        pick.finish(AttemptOutcome::ConnectError, t0);
    }
    let mut i = 0u64;
    g.bench_function("p2c, 1000 endpoints, 100 ejected: pick + finish", |bench| {
        bench.iter(|| {
            i += 1;
            let now = t0 + Duration::from_nanos(i);
            let pick = b.pick(None, &[], now).expect("an endpoint");
            pick.finish(AttemptOutcome::Success, now + Duration::from_millis(2))
        })
    });

    let next = addrs(1_001)[1..].to_vec();
    for (name, policy) in [
        ("p2c", Policy::P2cPeakEwma),
        ("consistent-hash", Policy::ConsistentHash),
    ] {
        let b = balancer(1_000, policy, t0);
        g.bench_function(
            format!("{name}: update 1000 endpoints (1 out, 1 in)"),
            |bench| bench.iter(|| b.update(black_box(&next), b.config(), t0)),
        );
    }

    let b = balancer(10, Policy::P2cPeakEwma, t0);
    let mut i = 0u64;
    g.bench_function("retry budget: deposit", |bench| {
        bench.iter(|| {
            i += 1;
            b.retry_budget().deposit(t0 + Duration::from_micros(i))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
