use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Message, Recorder, Tally, Window};
use crate::failure::Failure;

#[test]
fn a_tally_counts_statuses_failures_and_bytes_and_merges() {
    let mut a = Tally::default();
    a.response(1_000, 200, 10);
    a.response(3_000, 200, 10);
    a.response(2_000, 503, 0);
    a.failure(Failure::Timeout);
    let mut b = Tally::default();
    b.response(10_000, 404, 5);
    b.failure(Failure::Timeout);
    b.failure(Failure::Reset);
    b.missed = 3;
    a.merge(&b);
    assert_eq!(a.responses(), 4);
    assert_eq!(a.failures(), 3);
    assert_eq!(a.errors[Failure::Timeout.index()], 2);
    assert_eq!(a.errors[Failure::Reset.index()], 1);
    assert_eq!(a.bytes, 25);
    assert_eq!(a.missed, 3);
    let mut statuses = a.statuses.clone();
    statuses.sort_unstable();
    assert_eq!(statuses, vec![(200, 2), (404, 1), (503, 1)]);
    assert_eq!(a.latency.max(), a.latency.highest_equivalent(10_000));
    assert_eq!(
        a.latency.value_at_quantile(0.5),
        a.latency.highest_equivalent(2_000)
    );
}

#[test]
fn latencies_beyond_an_hour_saturate_instead_of_failing() {
    let mut t = Tally::default();
    t.response(u64::MAX, 200, 0);
    t.response(0, 200, 0);
    assert_eq!(t.responses(), 2);
    assert!(t.latency.max() >= 3_600_000_000);
}

#[test]
fn the_recorder_hands_over_each_second_once_it_is_past() {
    let (tx, rx) = mpsc::channel();
    let epoch = Instant::now();
    let mut r = Recorder::new(3, epoch, 2, 1, tx);
    let at = |ms: u64| epoch + Duration::from_millis(ms);
    r.response(0, at(100), at(90), 200, 1);
    r.response(1, at(900), at(800), 200, 1);
    assert!(rx.try_recv().is_err(), "second 0 is not over yet");
    r.failure(0, at(2_500), Failure::Reset);
    let Ok(Message::Second {
        thread,
        second,
        windows,
        upto,
    }) = rx.try_recv()
    else {
        panic!("second 0 should have been handed over");
    };
    assert_eq!((thread, second, upto), (3, 0, 2));
    assert_eq!(windows[0].latency.len(), 1);
    assert_eq!(
        windows[0].latency.max(),
        windows[0].latency.highest_equivalent(10_000)
    );
    assert_eq!(windows[1].latency.len(), 1);
    // Idle ticks hand over nothing until the second changes.
    r.roll(at(2_900));
    assert!(rx.try_recv().is_err());
    r.phase_done(0, at(3_000));
    r.phase_done(0, at(2_950));
    r.finish();
    let Ok(Message::Second {
        second,
        windows,
        upto,
        ..
    }) = rx.try_recv()
    else {
        panic!("the last second");
    };
    assert_eq!((second, upto), (2, u64::MAX));
    assert_eq!(windows[0].errors, 1);
    let Ok(Message::Done {
        thread,
        tallies,
        finished,
    }) = rx.try_recv()
    else {
        panic!("done");
    };
    assert_eq!(thread, 3);
    assert_eq!(tallies[0].responses(), 1);
    assert_eq!(tallies[0].failures(), 1);
    assert_eq!(tallies[1].responses(), 1);
    assert_eq!(finished, vec![Some(at(3_000))]);
}

#[test]
fn a_window_summary_reports_milliseconds() {
    let mut w = Window::default();
    for us in [1_000, 2_000, 3_000, 4_000] {
        w.latency.record(us).unwrap();
    }
    w.errors = 2;
    let s = w.summary(7);
    assert_eq!(s.second, 7);
    assert_eq!(s.responses, 4);
    assert_eq!(s.errors, 2);
    assert!((s.p50_ms - 2.0).abs() < 0.05, "{s:?}");
    assert!((s.max_ms - 4.0).abs() < 0.05, "{s:?}");
    assert!(!w.is_empty());
    assert!(Window::default().is_empty());
}
