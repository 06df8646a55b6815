use std::time::Duration;

use super::{Backoff, go_duration};

#[test]
fn first_restart_at_once_then_doubling_to_the_cap() {
    let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(300));
    let delays: Vec<u64> = (0..8).map(|_| b.next_delay().as_secs()).collect();
    assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300]);
    b.reset();
    assert_eq!(b.next_delay(), Duration::ZERO);
    assert_eq!(b.next_delay(), Duration::from_secs(10));
}

#[test]
fn durations_read_as_go_writes_them() {
    assert_eq!(go_duration(Duration::from_secs(20)), "20s");
    assert_eq!(go_duration(Duration::from_secs(160)), "2m40s");
    assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    assert_eq!(go_duration(Duration::from_millis(200)), "200ms");
    assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    assert_eq!(go_duration(Duration::ZERO), "0s");
}
