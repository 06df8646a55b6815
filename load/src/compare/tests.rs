use crate::report::tests::sample;

#[test]
fn overhead_is_target_minus_baseline_at_each_percentile() {
    let r = sample();
    let o = r.overhead.unwrap();
    let names: Vec<_> = o.latency_ms.iter().map(|a| a.percentile).collect();
    assert_eq!(names, ["p50", "p90", "p99", "p99.9", "p99.99", "max"]);
    for a in &o.latency_ms {
        assert!((a.added - (a.target - a.baseline)).abs() < 1e-9);
        // The target was built 2 ms slower everywhere (histogram buckets blur it a little).
        assert!((a.added - 2.0).abs() < 0.3, "{a:?}");
    }
    // Same responses, the target measured for twice as long: half the throughput.
    assert!((o.throughput_ratio - 0.5).abs() < 1e-9, "{o:?}");
    assert_eq!(o.baseline_url, "http://127.0.0.1:1/base?a=1&b=2");
}
