use super::{bytes, render};
use crate::report::tests::sample;

#[test]
fn the_summary_shows_each_target_and_the_overhead_table() {
    let text = render(&sample());
    assert!(
        text.starts_with("target http://127.0.0.1:2/  HTTP/1.1, open model"),
        "{text}"
    );
    assert!(
        text.contains("baseline http://127.0.0.1:1/base?a=1&b=2"),
        "{text}"
    );
    assert!(text.contains("1004 answered, 2 failed"), "{text}");
    assert!(
        text.contains("rate        target 600.0 req/s, achieved 502.0 req/s"),
        "{text}"
    );
    assert!(text.contains("status      200: 1001  503: 3"), "{text}");
    assert!(text.contains("errors      timeout: 2"), "{text}");
    assert!(text.contains("latency ms  p50 2.49"), "{text}");
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("overhead of"))
        .collect();
    assert_eq!(table.len(), 9, "{text}");
    assert!(table[2].trim_start().starts_with("p50"), "{text}");
    let added: f64 = table[2].split_whitespace().last().unwrap().parse().unwrap();
    assert!((added - 2.0).abs() < 0.01, "{text}");
    assert!(table[8].contains("ratio 0.500"), "{text}");
}

#[test]
fn byte_rates_use_binary_units() {
    assert_eq!(bytes(512.0), "512.0 B");
    assert_eq!(bytes(1536.0), "1.5 KiB");
    assert_eq!(bytes(3.0 * 1024.0 * 1024.0), "3.0 MiB");
}
