use std::time::Duration;

use clap::Parser;

use super::{Args, Config, DEFAULT_DURATION, Limit, Protocol, parse_header};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

fn parse(argv: &[&str]) -> Result<Config, String> {
    let cli = Cli::try_parse_from(std::iter::once("load").chain(argv.iter().copied()))
        .map_err(|e| e.to_string())?;
    Config::from_args(cli.args).map_err(|e| e.to_string())
}

#[test]
fn defaults_are_a_ten_second_closed_http1_run() {
    let c = parse(&["http://127.0.0.1:8080/"]).unwrap();
    assert_eq!(c.limit, Limit::Duration(DEFAULT_DURATION));
    assert_eq!(c.connections, 10);
    assert_eq!(c.streams, 1);
    assert_eq!(c.protocol, Protocol::Http1);
    assert_eq!(c.rate, None);
    assert_eq!(c.model(), "closed");
    assert_eq!(c.method, http::Method::GET);
    assert!(c.body.is_empty());
    assert_eq!(c.timeout, Duration::from_secs(10));
    assert_eq!(c.warmup, Duration::ZERO);
    assert!(c.threads >= 1 && c.threads <= 10);
    assert!(c.baseline.is_none());
}

#[test]
fn every_option_lands_in_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, b"{\"a\":1}").unwrap();
    let c = parse(&[
        "https://example.com/x",
        "-d",
        "2m",
        "-c",
        "64",
        "--rate",
        "10000",
        "-t",
        "3",
        "--h2",
        "--streams",
        "8",
        "--insecure",
        "--sni",
        "api.example.com",
        "-H",
        "X-A: 1",
        "-H",
        "x-a: 2",
        "--method",
        "PUT",
        "--body-file",
        body.to_str().unwrap(),
        "--timeout",
        "500ms",
        "--warmup",
        "1s",
        "--compare",
        "http://127.0.0.1:9000/x",
    ])
    .unwrap();
    assert_eq!(c.limit, Limit::Duration(Duration::from_secs(120)));
    assert_eq!((c.connections, c.threads, c.streams), (64, 3, 8));
    assert_eq!(c.rate, Some(10000.0));
    assert_eq!(c.model(), "open");
    assert_eq!(c.protocol, Protocol::Http2);
    assert!(c.tls.insecure);
    assert_eq!(c.tls.sni.as_deref(), Some("api.example.com"));
    assert_eq!(c.headers.get_all("x-a").iter().count(), 2);
    assert_eq!(c.method, http::Method::PUT);
    assert_eq!(&c.body[..], b"{\"a\":1}");
    assert_eq!(c.timeout, Duration::from_millis(500));
    assert_eq!(c.warmup, Duration::from_secs(1));
    assert_eq!(c.baseline.unwrap().port, 9000);

    let c = parse(&["http://h/", "-n", "100", "-t", "64", "-c", "4"]).unwrap();
    assert_eq!(c.limit, Limit::Requests(100));
    assert_eq!(c.threads, 4, "no more threads than connections");
}

#[test]
fn bad_input_is_a_clear_error() {
    for (argv, why) in [
        (&["nope"][..], "bad URL"),
        (&["http://h/", "-d", "10x"], "unknown unit"),
        (&["http://h/", "-d", "0s"], "--duration must be more than 0"),
        (&["http://h/", "-d", "1s", "-n", "5"], "cannot be used with"),
        (&["http://h/", "-n", "0"], "--requests must be at least 1"),
        (
            &["http://h/", "-c", "0"],
            "--connections must be at least 1",
        ),
        (&["http://h/", "-t", "0"], "--threads must be at least 1"),
        (&["http://h/", "--rate", "0"], "--rate must be a positive"),
        (&["http://h/", "--rate", "NaN"], "--rate must be a positive"),
        (&["http://h/", "--streams", "2"], "--streams needs --h2"),
        (
            &["http://h/", "--h2", "--streams", "0"],
            "--streams must be at least 1",
        ),
        (&["http://h/", "--http1", "--h2"], "cannot be used with"),
        (&["http://h/", "-H", "no colon"], "expected 'Name: value'"),
        (&["http://h/", "-H", "bad name: x"], "invalid header name"),
        (&["http://h/", "-m", "GE T"], "invalid method"),
        (
            &["http://h/", "--timeout", "0s"],
            "--timeout must be more than 0",
        ),
        (
            &["http://h/", "--body-file", "/does/not/exist"],
            "cannot read /does/not/exist",
        ),
        (&["http://h/", "--compare", "ftp://x/"], "bad URL"),
        (
            &["http://h/", "-n", "5", "--compare", "http://b/"],
            "use it with --duration",
        ),
    ] {
        let err = parse(argv).unwrap_err();
        assert!(err.contains(why), "{argv:?}: {err}");
    }
}

#[test]
fn headers_split_at_the_first_colon() {
    let (name, value) = parse_header("X-Forwarded-For:  10.0.0.1 ").unwrap();
    assert_eq!(name, "x-forwarded-for");
    assert_eq!(value, "10.0.0.1");
    let (name, value) = parse_header("Referer: http://a/b").unwrap();
    assert_eq!(
        (name.as_str(), value.to_str().unwrap()),
        ("referer", "http://a/b")
    );
    let (_, value) = parse_header("X-Empty:").unwrap();
    assert!(value.is_empty());
}
