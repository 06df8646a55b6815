use std::time::{Duration, Instant};

use super::Collector;
use crate::config::Limit;
use crate::schedule::Schedule;
use crate::stats::{Message, Tally, Window};

fn window(latencies_us: &[u64]) -> Window {
    let mut w = Window::default();
    for &us in latencies_us {
        w.latency.record(us).unwrap();
    }
    w
}

#[test]
fn a_second_is_summarised_once_every_thread_is_past_it() {
    let mut c = Collector::new(2, 1, 1, false);
    c.handle(Message::Second {
        thread: 0,
        second: 0,
        windows: vec![window(&[1_000, 2_000])],
        upto: 1,
    });
    assert!(
        c.seconds[0].is_empty(),
        "thread 1 may still add to second 0"
    );
    c.handle(Message::Second {
        thread: 1,
        second: 0,
        windows: vec![window(&[3_000])],
        upto: 3,
    });
    assert_eq!(c.seconds[0].len(), 1);
    assert_eq!(c.seconds[0][0].responses, 3);
    // Thread 0 then reports second 2 (nothing in second 1): second 1 is empty, not missing.
    c.handle(Message::Second {
        thread: 0,
        second: 2,
        windows: vec![window(&[5_000])],
        upto: 4,
    });
    assert_eq!(c.seconds[0].len(), 3);
    assert_eq!(c.seconds[0][1].responses, 0);
    assert_eq!(c.seconds[0][2].responses, 1);
}

#[test]
fn the_end_merges_tallies_and_measures_each_target_from_its_phases() {
    let t0 = Instant::now();
    let schedule = Schedule::build(
        Limit::Duration(Duration::from_secs(4)),
        Duration::from_secs(1),
        true,
    );
    let phases = schedule.phases.len();
    let mut c = Collector::new(2, 2, phases, false);
    let mut a = Tally::default();
    a.response(1_000, 200, 0);
    let mut b = Tally::default();
    b.response(2_000, 200, 0);
    // Thread 0 finished the last phase 200 ms late (an answer in flight); thread 1 on time.
    let mut finished: Vec<Option<Instant>> = schedule
        .phases
        .iter()
        .map(|p| p.end.map(|e| t0 + e))
        .collect();
    let last = phases - 1;
    finished[last] = finished[last].map(|t| t + Duration::from_millis(200));
    c.handle(Message::Second {
        thread: 0,
        second: 0,
        windows: vec![window(&[1_000]), Window::default()],
        upto: u64::MAX,
    });
    c.handle(Message::Done {
        thread: 0,
        tallies: vec![a.clone(), b.clone()],
        finished,
    });
    c.handle(Message::Done {
        thread: 1,
        tallies: vec![a, b],
        finished: vec![None; phases],
    });
    let m = c.finish(t0, &schedule);
    assert_eq!(m.tallies[0].responses(), 2);
    assert_eq!(m.tallies[1].responses(), 2);
    let last_target = schedule.phases[last].target;
    let expected = |t: usize| {
        Duration::from_secs(2)
            + if t == last_target {
                Duration::from_millis(200)
            } else {
                Duration::ZERO
            }
    };
    assert_eq!(m.durations[0], expected(0));
    assert_eq!(m.durations[1], expected(1));
    // Both series cover the same seconds.
    assert_eq!(m.seconds[0].len(), 1);
    assert_eq!(m.seconds[1].len(), 1);
    assert_eq!(m.seconds[1][0].responses, 0);
}
