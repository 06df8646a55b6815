use std::time::Duration;

use super::{BASELINE, Phase, Schedule, TARGET};
use crate::config::Limit;

const S: Duration = Duration::from_secs(1);

#[test]
fn a_plain_run_is_warmup_then_one_measured_phase() {
    let s = Schedule::build(Limit::Duration(10 * S), 2 * S, false);
    assert_eq!(
        s.phases,
        vec![
            Phase {
                target: TARGET,
                start: Duration::ZERO,
                end: Some(2 * S),
                measure: false
            },
            Phase {
                target: TARGET,
                start: 2 * S,
                end: Some(12 * S),
                measure: true
            },
        ]
    );
    assert_eq!(s.measure_start, 2 * S);

    let s = Schedule::build(Limit::Requests(5), Duration::ZERO, false);
    assert_eq!(
        s.phases,
        vec![Phase {
            target: TARGET,
            start: Duration::ZERO,
            end: None,
            measure: true
        }]
    );
}

#[test]
fn compare_alternates_equal_slices_that_tile_the_duration() {
    let s = Schedule::build(Limit::Duration(10 * S), S, true);
    let warm: Vec<_> = s
        .phases
        .iter()
        .filter(|p| !p.measure)
        .map(|p| p.target)
        .collect();
    assert_eq!(warm, vec![BASELINE, TARGET]);
    assert_eq!(s.measure_start, 2 * S);
    let measured: Vec<_> = s.phases.iter().filter(|p| p.measure).collect();
    assert_eq!(measured.len(), 10);
    let order: Vec<_> = measured.iter().map(|p| p.target).collect();
    assert_eq!(order, [1, 0, 0, 1, 1, 0, 0, 1, 1, 0]);
    // No gaps, no overlap, and each target gets half the time.
    let mut at = s.measure_start;
    let mut per_target = [Duration::ZERO; 2];
    for p in measured {
        assert_eq!(p.start, at);
        let end = p.end.unwrap();
        per_target[p.target] += end - p.start;
        at = end;
    }
    assert_eq!(at, 12 * S);
    assert_eq!(per_target, [5 * S, 5 * S]);

    // A short run still gets two slices each.
    let s = Schedule::build(Limit::Duration(S), Duration::ZERO, true);
    assert_eq!(s.phases.len(), 4);
    assert_eq!(s.of(TARGET).count(), 2);
    assert_eq!(s.of(BASELINE).count(), 2);
}
