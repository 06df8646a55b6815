use std::sync::Arc;

use super::*;

/// Feeds `stream` in pieces of `step` bytes; returns which requests the service refuses.
fn refused(stream: &[u8], requests: usize, step: usize) -> Vec<bool> {
    let verdicts = Verdicts::new();
    let mut framing = Framing::new(verdicts.clone());
    for piece in stream.chunks(step) {
        framing.feed(piece);
    }
    (0..requests).map(|_| verdicts.next_request()).collect()
}

fn every_step(stream: &[u8], requests: usize, want: &[bool]) {
    for step in [1, 2, 3, 7, 64, stream.len()] {
        assert_eq!(refused(stream, requests, step), want, "step {step}");
    }
}

#[test]
fn length_with_chunked_is_found_in_either_order() {
    for head in [
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    ] {
        let stream = format!("{head}0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n");
        every_step(stream.as_bytes(), 2, &[true, false]);
    }
}

#[test]
fn heads_after_bodies_of_every_kind_are_found() {
    let stream = concat!(
        "GET /one HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
        "POST /three HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n",
        "POST /four HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /five HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        "POST /six HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "0\r\n\r\n",
    );
    every_step(
        stream.as_bytes(),
        7,
        &[false, false, false, false, false, true, false],
    );
}

#[test]
fn a_body_that_looks_like_a_head_is_not_one() {
    let inner = "GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let stream = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{inner}GET /next HTTP/1.1\r\nHost: a\r\n\r\n",
        inner.len()
    );
    every_step(stream.as_bytes(), 2, &[false, false]);
}

#[test]
fn what_cannot_be_followed_stops_the_framing() {
    // HTTP/2's preface, an upgrade, a broken chunk: nothing is refused afterwards.
    let both = "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for before in [
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_owned(),
        "GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n".to_owned(),
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_owned(),
    ] {
        let stream = format!("{before}{both}");
        assert_eq!(
            refused(stream.as_bytes(), 2, 5),
            [false, false],
            "{before:?}"
        );
    }
}

/// Only a WebSocket upgrade is tunnelled: after an h2c or unknown upgrade, or a CONNECT (all
/// answered over HTTP/1), the next head is still followed and its smuggling caught.
#[test]
fn upgrades_that_are_not_tunnelled_keep_the_framing() {
    let both = "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for before in [
        "GET / HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: foo/2\r\n\r\n",
        "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    ] {
        let stream = format!("{before}{both}");
        every_step(stream.as_bytes(), 2, &[false, true]);
    }
}

#[test]
fn a_head_larger_than_the_limit_stops_the_framing() {
    let big = format!(
        "GET / HTTP/1.1\r\nX-Big: {}\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "a".repeat(MAX_PENDING)
    );
    assert_eq!(refused(big.as_bytes(), 2, 4096), [false, false]);
}

#[test]
fn empty_lines_are_found_across_reads() {
    assert!(has_empty_line(b"a\r\n\r\n"));
    assert!(has_empty_line(b"a\n\n"));
    assert!(!has_empty_line(b"a\r\nb\r\n"));
    assert!(has_empty_line(b"\n\r\n"));
}

/// Follows `stream` in reads of `step` bytes, as [`Observed`] does: what hyper would read.
fn followed(stream: &[u8], step: usize, verdicts: &Arc<Verdicts>) -> Vec<u8> {
    let mut framing = Framing::new(verdicts.clone());
    let mut out = Vec::new();
    for piece in stream.chunks(step) {
        let mut piece = piece.to_vec();
        let kept = framing.follow(&mut piece);
        out.extend_from_slice(&piece[..kept]);
    }
    out
}

#[test]
fn an_over_long_target_is_cut_to_one_byte_past_the_limit_and_the_framing_goes_on() {
    let smuggle = "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (target_len, method) in [
        (70_000, "GET"),
        (200_000, "OPTIONS"),
        (MAX_TARGET + 2, "GET"),
    ] {
        let target = format!("/{}", "a".repeat(target_len - 1));
        let stream = format!("\r\n{method} {target} HTTP/1.1\r\nHost: a\r\n\r\n{smuggle}");
        let want = format!(
            "\r\n{method} {} HTTP/1.1\r\nHost: a\r\n\r\n{smuggle}",
            &target[..MAX_TARGET + 1]
        );
        for step in [1, 7, 4096, 8 * 1024, 65_536, stream.len()] {
            let verdicts = Verdicts::new();
            let out = followed(stream.as_bytes(), step, &verdicts);
            assert!(
                out == want.as_bytes(),
                "{target_len} step {step}: {} bytes",
                out.len()
            );
            assert!(
                !verdicts.next_request() && verdicts.next_request(),
                "step {step}"
            );
        }
    }
}

#[test]
fn targets_up_to_the_limit_headers_and_bodies_are_never_cut() {
    let long_header = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let at_limit = format!(
        "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
        "a".repeat(MAX_TARGET)
    );
    let body = format!(
        "POST / HTTP/1.1\r\nContent-Length: 20000\r\n\r\n{}GET / HTTP/1.1\r\n\r\n",
        "GET /".repeat(4000)
    );
    let long_method = format!("{} /x HTTP/1.1\r\n\r\n", "A".repeat(20_000));
    for stream in [long_header, at_limit, body, long_method] {
        for step in [1, 100, 4096, stream.len()] {
            let out = followed(stream.as_bytes(), step, &Verdicts::new());
            assert!(out == stream.as_bytes(), "step {step}: {}", &stream[..40]);
        }
    }
}

#[tokio::test]
async fn observed_reads_give_hyper_the_cut_line_and_never_an_empty_read_before_the_end() {
    use tokio::io::AsyncReadExt;
    let stream = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(100_000));
    for size in [1, 3, 1000, 16 * 1024] {
        let mut observed = Observed::new(stream.as_bytes(), Verdicts::new());
        let mut out = Vec::new();
        let mut buf = vec![0u8; size];
        loop {
            let n = observed.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let want = format!(
            "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
            "a".repeat(MAX_TARGET)
        );
        assert!(
            out == want.as_bytes(),
            "reads of {size}: {} bytes",
            out.len()
        );
    }
}
