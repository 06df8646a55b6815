use std::time::{Duration, Instant};

use super::*;

fn budget(ratio: f64, min_per_second: u32) -> (RetryBudget, Instant) {
    let t0 = Instant::now();
    let config = BudgetConfig {
        ratio,
        min_per_second,
        window: Duration::from_secs(10),
    };
    (RetryBudget::new(&config, t0), t0)
}

/// Withdraws until refused (at most `limit` times) and says how many were allowed.
fn drain(b: &RetryBudget, now: Instant, limit: u32) -> u32 {
    let mut n = 0;
    while n < limit && b.try_withdraw(now) {
        n += 1;
    }
    n
}

#[test]
fn the_floor_alone_allows_min_per_second_times_the_window() {
    let (b, t0) = budget(0.2, 10);
    assert_eq!(b.remaining(t0), 100);
    assert_eq!(drain(&b, t0, 1_000), 100);
    assert!(!b.try_withdraw(t0));
    assert_eq!(b.remaining(t0), 0);
}

#[test]
fn the_ratio_alone_allows_that_share_of_requests() {
    let (b, t0) = budget(0.2, 0);
    assert!(!b.try_withdraw(t0));
    for _ in 0..1_000 {
        b.deposit(t0);
    }
    assert_eq!(b.remaining(t0), 200);
    assert_eq!(drain(&b, t0, 1_000), 200);
    // Five more requests earn one more retry, four do not.
    for _ in 0..4 {
        b.deposit(t0);
    }
    assert!(!b.try_withdraw(t0));
    b.deposit(t0);
    assert!(b.try_withdraw(t0));
    assert!(!b.try_withdraw(t0));
}

#[test]
fn floor_then_ratio_then_refused() {
    let (b, t0) = budget(0.2, 10);
    let mut allowed = 0;
    let mut requests = 0;
    // A failing cluster: every request asks for a retry. Spread over 9 s of one window.
    for ms in 0..9_000u64 {
        let now = t0 + Duration::from_millis(ms);
        b.deposit(now);
        requests += 1;
        if b.try_withdraw(now) {
            allowed += 1;
        }
    }
    // 100 from the floor, then one per five requests.
    assert_eq!(requests, 9_000);
    assert_eq!(allowed, 100 + 9_000 / 5);
}

#[test]
fn withdrawals_and_deposits_slide_out_of_the_window() {
    let (b, t0) = budget(0.5, 1);
    for _ in 0..100 {
        b.deposit(t0);
    }
    // 10 from the floor + 50 from the deposits.
    assert_eq!(drain(&b, t0, 1_000), 60);
    let later = |s: f64| t0 + Duration::from_secs_f64(s);
    assert!(!b.try_withdraw(later(5.0)));
    assert!(!b.try_withdraw(later(9.9)));
    // Tick 0 has left the window: its deposits and withdrawals are forgotten, the floor is back.
    assert_eq!(b.remaining(later(10.0)), 10);
    assert_eq!(drain(&b, later(10.0), 1_000), 10);
    // Across several windows of silence nothing is remembered but the floor.
    assert_eq!(b.remaining(later(100.0)), 10);
    assert_eq!(b.remaining(later(10_000.0)), 10);
}

#[test]
fn deposits_in_later_buckets_add_up() {
    let (b, t0) = budget(1.0, 0);
    for s in 0..10u64 {
        b.deposit(t0 + Duration::from_secs(s));
    }
    assert_eq!(b.remaining(t0 + Duration::from_millis(9_500)), 10);
    // At 10 s the first second's deposit is gone; at 19.5 s all but the last.
    assert_eq!(b.remaining(t0 + Duration::from_secs(10)), 9);
    assert_eq!(b.remaining(t0 + Duration::from_millis(18_500)), 1);
    assert_eq!(b.remaining(t0 + Duration::from_secs(19)), 0);
}

#[test]
fn nothing_allowed_without_ratio_or_floor() {
    let (b, t0) = budget(0.0, 0);
    for _ in 0..1_000 {
        b.deposit(t0);
    }
    assert!(!b.try_withdraw(t0));
}

#[test]
fn odd_ratios_are_clamped() {
    for (ratio, per_request) in [
        (f64::NAN, 0),
        (-1.0, 0),
        (f64::INFINITY, 0),
        (5_000.0, 1_000),
    ] {
        let (b, t0) = budget(ratio, 0);
        b.deposit(t0);
        assert_eq!(b.remaining(t0), per_request, "ratio {ratio}");
    }
}

#[test]
fn racing_withdrawals_never_overdraw() {
    let (b, t0) = budget(0.2, 10);
    let allowed = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..100 {
                    b.deposit(t0);
                    if b.try_withdraw(t0) {
                        allowed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    // 100 from the floor and 80 from the 400 deposits are the most; a withdrawal can lose a
    // race only to a deposit not yet made, so at least the floor is allowed.
    let allowed = allowed.into_inner();
    assert!((100..=180).contains(&allowed), "{allowed}");
    assert_eq!(u64::from(allowed) + b.remaining(t0), 180);
}
