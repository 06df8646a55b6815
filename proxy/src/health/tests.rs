use std::time::{Duration, Instant};

use super::*;

use AttemptOutcome::{ConnectError, Reset, Status5xx, Success, Timeout};

fn config() -> HealthConfig {
    HealthConfig {
        failure_threshold: 3,
        base_ejection: Duration::from_secs(1),
        max_ejection: Duration::from_secs(30),
    }
}

fn secs(t0: Instant, s: f64) -> Instant {
    t0 + Duration::from_secs_f64(s)
}

#[test]
fn ejects_after_threshold_failures_in_a_row() {
    let t0 = Instant::now();
    let h = Health::new(t0);
    let c = config();
    assert_eq!(h.record(ConnectError, t0, &c), Transition::Unchanged);
    assert_eq!(h.record(Reset, t0, &c), Transition::Unchanged);
    assert!(!h.is_ejected(t0));
    assert_eq!(h.status(t0), Status::Healthy);
    assert_eq!(
        h.record(Status5xx, t0, &c),
        Transition::Ejected {
            duration: Duration::from_secs(1),
            times: 1
        }
    );
    assert!(h.is_ejected(t0));
    assert!(h.is_ejected(secs(t0, 0.999)));
    assert!(!h.is_ejected(secs(t0, 1.0)));
    assert_eq!(
        h.status(secs(t0, 0.25)),
        Status::Ejected {
            remaining: Duration::from_millis(750),
            times: 1
        }
    );
    assert_eq!(h.status(secs(t0, 1.0)), Status::Probation { times: 1 });
}

#[test]
fn interleaved_success_resets_the_count() {
    let t0 = Instant::now();
    let h = Health::new(t0);
    let c = config();
    for i in 0..100 {
        let outcome = if i % 3 == 2 { Success } else { Timeout };
        assert_eq!(
            h.record(outcome, t0, &c),
            Transition::Unchanged,
            "result {i}"
        );
    }
    assert_eq!(h.status(t0), Status::Healthy);
}

#[test]
fn four_xx_and_other_successes_do_not_count() {
    assert_eq!(AttemptOutcome::from_status(200), Success);
    assert_eq!(AttemptOutcome::from_status(404), Success);
    assert_eq!(AttemptOutcome::from_status(499), Success);
    assert_eq!(AttemptOutcome::from_status(500), Status5xx);
    assert_eq!(AttemptOutcome::from_status(503), Status5xx);
    assert_eq!(AttemptOutcome::from_status(599), Status5xx);
    assert_eq!(AttemptOutcome::from_status(600), Success);
    for o in [ConnectError, Reset, Status5xx, Timeout] {
        assert!(o.is_failure(), "{o:?}");
    }
    assert!(!Success.is_failure());
}

#[test]
fn retry_safety() {
    assert!(ConnectError.retry_safe(false));
    assert!(ConnectError.retry_safe(true));
    assert!(Reset.retry_safe(true));
    assert!(!Reset.retry_safe(false));
    for o in [Success, Status5xx, Timeout] {
        assert!(!o.retry_safe(true), "{o:?}");
    }
}

/// Ejects at `at` (probation or healthy with threshold 1 reached) and returns the transition.
fn fail(h: &Health, at: Instant, c: &HealthConfig) -> Transition {
    h.record(ConnectError, at, c)
}

#[test]
fn back_off_doubles_on_probation_failures_and_caps() {
    let t0 = Instant::now();
    let h = Health::new(t0);
    let c = HealthConfig {
        failure_threshold: 1,
        ..config()
    };
    let mut now = t0;
    let mut seen = Vec::new();
    for _ in 0..8 {
        match fail(&h, now, &c) {
            Transition::Ejected { duration, times } => {
                seen.push((duration.as_secs(), times));
                // Still ejected a moment before the end, on probation at the end.
                assert!(h.is_ejected(now + duration - Duration::from_millis(1)));
                now += duration;
                assert!(!h.is_ejected(now));
            }
            other => panic!("expected an ejection, got {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            (1, 1),
            (2, 2),
            (4, 3),
            (8, 4),
            (16, 5),
            (30, 6),
            (30, 7),
            (30, 8)
        ]
    );
}

#[test]
fn ejection_lengths() {
    let c = config();
    assert_eq!(c.ejection(1), Duration::from_secs(1));
    assert_eq!(c.ejection(2), Duration::from_secs(2));
    assert_eq!(c.ejection(5), Duration::from_secs(16));
    assert_eq!(c.ejection(6), Duration::from_secs(30));
    assert_eq!(c.ejection(40), Duration::from_secs(30));
    assert_eq!(c.ejection(u32::MAX), Duration::from_secs(30));
}

#[test]
fn probation_success_readmits_and_resets_the_back_off() {
    let t0 = Instant::now();
    let h = Health::new(t0);
    let c = config();
    for _ in 0..3 {
        fail(&h, t0, &c);
    }
    // Probation failure: 2 s. Then probation success.
    assert_eq!(
        fail(&h, secs(t0, 1.0), &c),
        Transition::Ejected {
            duration: Duration::from_secs(2),
            times: 2
        }
    );
    assert_eq!(h.record(Success, secs(t0, 3.0), &c), Transition::Readmitted);
    assert_eq!(h.status(secs(t0, 3.0)), Status::Healthy);
    // Healthy again: one failure does not eject, and the next ejection is the first again.
    assert_eq!(fail(&h, secs(t0, 4.0), &c), Transition::Unchanged);
    assert_eq!(fail(&h, secs(t0, 4.0), &c), Transition::Unchanged);
    assert_eq!(
        fail(&h, secs(t0, 4.0), &c),
        Transition::Ejected {
            duration: Duration::from_secs(1),
            times: 1
        }
    );
}

#[test]
fn results_while_ejected_are_ignored() {
    let t0 = Instant::now();
    let h = Health::new(t0);
    let c = config();
    for _ in 0..3 {
        fail(&h, t0, &c);
    }
    // Stragglers: a success does not readmit, failures do not lengthen.
    assert_eq!(h.record(Success, secs(t0, 0.5), &c), Transition::Unchanged);
    for _ in 0..10 {
        assert_eq!(fail(&h, secs(t0, 0.6), &c), Transition::Unchanged);
    }
    assert!(h.is_ejected(secs(t0, 0.9)));
    assert_eq!(h.status(secs(t0, 1.0)), Status::Probation { times: 1 });
}

#[test]
fn failure_count_restarts_after_an_ejection() {
    let t0 = Instant::now();
    let h = Health::new(t0);
    let c = config();
    for _ in 0..3 {
        fail(&h, t0, &c);
    }
    assert_eq!(h.record(Success, secs(t0, 1.0), &c), Transition::Readmitted);
    // Readmitted with a clean count: two failures are not enough.
    fail(&h, secs(t0, 1.0), &c);
    fail(&h, secs(t0, 1.0), &c);
    assert!(!h.is_ejected(secs(t0, 1.0)));
}

#[test]
fn instants_before_the_epoch_count_as_the_epoch() {
    let early = Instant::now();
    let t0 = early + Duration::from_secs(5);
    let h = Health::new(t0);
    let c = HealthConfig {
        failure_threshold: 1,
        ..config()
    };
    fail(&h, early, &c);
    assert!(h.is_ejected(early));
    assert!(h.is_ejected(t0 + Duration::from_millis(999)));
    assert!(!h.is_ejected(t0 + Duration::from_secs(1)));
}

#[test]
fn zero_threshold_is_one() {
    let t0 = Instant::now();
    let h = Health::new(t0);
    let c = HealthConfig {
        failure_threshold: 0,
        ..config()
    };
    assert_eq!(h.status(t0), Status::Healthy);
    assert!(matches!(
        fail(&h, t0, &c),
        Transition::Ejected { times: 1, .. }
    ));
}

#[test]
fn racing_failures_eject_once() {
    let t0 = Instant::now();
    let h = Health::new(t0);
    let c = config();
    let ejections = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..1_000 {
                    if let Transition::Ejected { .. } = h.record(Reset, t0, &c) {
                        ejections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    // Every result after the ejection is at t0, inside it: ignored.
    assert_eq!(ejections.into_inner(), 1);
    assert_eq!(
        h.status(t0),
        Status::Ejected {
            remaining: Duration::from_secs(1),
            times: 1
        }
    );
}
