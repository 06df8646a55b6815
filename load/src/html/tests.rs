use super::{escape, number, percentile_x, render, step};
use crate::report::tests::sample;

#[test]
fn the_page_stands_alone_and_has_every_plot() {
    let page = render(&sample());
    assert!(page.starts_with("<!DOCTYPE html>"));
    for id in [
        "spectrum",
        "latency-over-time",
        "throughput-over-time",
        "status-codes",
    ] {
        assert!(page.contains(&format!("<svg id=\"{id}\"")), "{id}");
    }
    // Both targets on the spectrum, the overhead table, bars for statuses and errors.
    assert!(page.contains("Overhead of the target over the baseline"));
    assert!(page.contains("<td>p99.9</td>"));
    assert!(page.matches("<polyline").count() >= 2 + 4 + 2);
    assert!(page.contains("target 503") && page.contains("baseline timeout error"));
    // The URL is escaped, and nothing is fetched.
    assert!(page.contains("base?a=1&amp;b=2") && !page.contains("a=1&b"));
    let page = page.replace("http://www.w3.org/2000/svg", "");
    let page = page
        .replace("http://127.0.0.1:1/base", "")
        .replace("http://127.0.0.1:2/", "");
    for fetch in [
        "http:", "https:", "<script", "<link", "src=", "url(", "@import",
    ] {
        assert!(!page.contains(fetch), "{fetch}");
    }
}

#[test]
fn axes_get_round_steps_and_the_tail_gets_room() {
    assert_eq!(step(10.0), 2.0);
    assert_eq!(step(0.7), 0.2);
    assert_eq!(step(4500.0), 1000.0);
    assert_eq!(step(0.0), 1.0);
    assert_eq!(percentile_x(0.0), 0.0);
    assert!((percentile_x(99.0) - 2.0).abs() < 1e-9);
    assert!((percentile_x(99.9) - 3.0).abs() < 1e-6);
    assert_eq!(percentile_x(100.0), 5.5);
    assert_eq!(number(0.5), "0.5");
    assert_eq!(number(0.25), "0.25");
    assert_eq!(number(2.0), "2");
    assert_eq!(number(1.5), "1.5");
    assert_eq!(
        escape("<a href=\"x\">&'"),
        "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
    );
}
