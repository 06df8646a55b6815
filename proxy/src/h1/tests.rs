//! The gateway's smuggling cases (gateway/src/smuggling/tests.rs and the e2e
//! tests/e2e/gateway/bodies.rs) reproduced on the codec: a connection's bytes followed head,
//! framing and body in turn, in reads of every size; and properties over any head and any
//! chunking.

use proptest::prelude::*;

use super::*;
use crate::h1::head::{MAX_FIELDS, MAX_HEAD, MAX_TARGET};

/// What a connection's requests came to: `METHOD target` for each one taken, up to the first
/// refusal (after which the connection closes) or a tunnel.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Request(String),
    Refused(Malformed),
    Tunnel,
}

/// Follows `stream` in reads of `step` bytes, as a connection would.
fn follow(stream: &[u8], step: usize) -> Vec<Seen> {
    let mut parser = Parser::requests(Limits::default());
    let mut buf: Vec<u8> = Vec::new();
    let mut body: Option<Delimiter> = None;
    let mut seen = Vec::new();
    for piece in stream.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            if let Some(delimiter) = body.as_mut() {
                match delimiter.feed(&buf) {
                    Ok(s) => {
                        buf.drain(..s.used);
                        if !s.done {
                            break;
                        }
                        body = None;
                    }
                    Err(e) => {
                        seen.push(Seen::Refused(e));
                        return seen;
                    }
                }
            }
            let (len, framing) = match parser.request(&buf) {
                Ok(None) => break,
                Ok(Some(head)) => {
                    seen.push(Seen::Request(format!("{} {}", head.method, head.target)));
                    (head.len, framing::request(&head))
                }
                Err(e) => {
                    seen.push(Seen::Refused(e));
                    return seen;
                }
            };
            match framing {
                Ok(f) if f.upgrade => {
                    seen.push(Seen::Tunnel);
                    return seen;
                }
                Ok(f) => body = Some(Delimiter::new(f.body)),
                Err(e) => {
                    seen.pop();
                    seen.push(Seen::Refused(e));
                    return seen;
                }
            }
            buf.drain(..len);
        }
    }
    seen
}

fn every_step(stream: &[u8], want: &[Seen]) {
    for step in [1, 2, 3, 7, 64, 4096, stream.len().max(1)] {
        assert_eq!(follow(stream, step), want, "step {step}");
    }
}

fn req(line: &str) -> Seen {
    Seen::Request(line.to_owned())
}

#[test]
fn length_with_chunked_is_refused_and_nothing_after_it_is_read() {
    for head in [
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    ] {
        let stream = format!("{head}0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n");
        every_step(
            stream.as_bytes(),
            &[Seen::Refused(Malformed::LengthAndChunked)],
        );
        // After an ordinary request on the same connection (the e2e case).
        let stream = format!("GET /first HTTP/1.1\r\nHost: a\r\n\r\n{stream}");
        every_step(
            stream.as_bytes(),
            &[
                req("GET /first"),
                Seen::Refused(Malformed::LengthAndChunked),
            ],
        );
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
        &[
            req("GET /one"),
            req("POST /two"),
            req("POST /three"),
            req("POST /four"),
            req("POST /five"),
            Seen::Refused(Malformed::LengthAndChunked),
        ],
    );
}

#[test]
fn a_body_that_looks_like_a_head_is_not_one() {
    let inner = "GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let stream = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{inner}GET /next HTTP/1.1\r\nHost: a\r\n\r\n",
        inner.len()
    );
    every_step(stream.as_bytes(), &[req("POST /"), req("GET /next")]);
}

#[test]
fn what_hyper_refuses_is_refused_and_a_websocket_upgrade_becomes_a_tunnel() {
    let both = "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (before, want) in [
        (
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            vec![Seen::Refused(Malformed::StartLine)],
        ),
        (
            "GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            vec![req("GET /ws"), Seen::Tunnel],
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            vec![req("POST /"), Seen::Refused(Malformed::BadChunk)],
        ),
    ] {
        every_step(format!("{before}{both}").as_bytes(), &want);
    }
}

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
        let line = before.split(" HTTP/").next().unwrap();
        every_step(
            format!("{before}{both}").as_bytes(),
            &[req(line), Seen::Refused(Malformed::LengthAndChunked)],
        );
    }
}

#[test]
fn heads_past_the_limits_are_refused() {
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(MAX_HEAD));
    every_step(big.as_bytes(), &[Seen::Refused(Malformed::HeadTooLarge)]);
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    every_step(many.as_bytes(), &[Seen::Refused(Malformed::TooManyFields)]);
    for (target_len, method) in [
        (70_000, "GET"),
        (200_000, "OPTIONS"),
        (MAX_TARGET + 2, "GET"),
    ] {
        let stream = format!(
            "\r\n{method} /{} HTTP/1.1\r\nHost: a\r\n\r\n",
            "a".repeat(target_len - 1)
        );
        every_step(
            stream.as_bytes(),
            &[Seen::Refused(Malformed::TargetTooLong)],
        );
    }
}

#[test]
fn targets_up_to_the_limit_long_headers_and_bodies_pass() {
    let at_limit = format!("/{}", "a".repeat(MAX_TARGET - 1));
    let cases = [
        (
            format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000)),
            vec![req("GET /")],
        ),
        (
            format!("GET {at_limit} HTTP/1.1\r\nHost: a\r\n\r\n"),
            vec![req(&format!("GET {at_limit}"))],
        ),
        (
            format!(
                "POST / HTTP/1.1\r\nContent-Length: 20000\r\n\r\n{}GET / HTTP/1.1\r\n\r\n",
                "GET /".repeat(4000)
            ),
            vec![req("POST /"), req("GET /")],
        ),
    ];
    for (stream, want) in cases {
        every_step(stream.as_bytes(), &want);
    }
}

#[test]
fn the_e2e_refusals_get_the_gateways_statuses() {
    let head = "POST / HTTP/1.1\r\nHost: shop.example.com\r\n";
    for (bad, status) in [
        (
            format!("{head}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
            400,
        ),
        (format!("{head}Content-Length: 5x\r\n\r\nhello"), 400),
        (format!("{head}Transfer-Encoding: gzip\r\n\r\nhello"), 400),
        (
            format!("{head}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
            501,
        ),
        (
            format!("{head}Content-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            format!("{head}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
                "a".repeat(70_000)
            ),
            431,
        ),
        (
            format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(70_000)),
            414,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n".to_owned(),
            400,
        ),
        ("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n".to_owned(), 400),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n".to_owned(),
            400,
        ),
        (
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_owned(),
            400,
        ),
    ] {
        let seen = follow(bad.as_bytes(), bad.len());
        let Some(Seen::Refused(e)) = seen.last() else {
            panic!("{bad:?} was taken: {seen:?}");
        };
        assert_eq!(e.status().as_u16(), status, "{bad:?}: {e}");
    }
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}"
}

/// Field values as httparse gives them back: visible characters with inner spaces and
/// tabs, no whitespace at either end.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[!-~\u{80}-\u{ff}]([ \t!-~\u{80}-\u{ff}]{0,40}[!-~])?"
    ]
}

proptest! {
    #[test]
    fn a_serialized_head_parses_back_to_its_fields(
        method in token(),
        target in "/[!-~]{0,60}",
        minor in 0u8..=1,
        fields in prop::collection::vec((token(), value()), 0..MAX_FIELDS),
    ) {
        let mut head = format!("{method} {target} HTTP/1.{minor}\r\n").into_bytes();
        for (name, value) in &fields {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            // Latin-1 bytes as themselves (obs-text), not as UTF-8.
            head.extend(value.chars().map(|c| c as u32 as u8));
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\nbody");
        let mut parser = Parser::requests(Limits::default());
        let parsed = parser.request(&head).unwrap().unwrap();
        prop_assert_eq!(parsed.method, method.as_str());
        prop_assert_eq!(parsed.target, target.as_str());
        prop_assert_eq!(parsed.version, if minor == 0 { http::Version::HTTP_10 } else { http::Version::HTTP_11 });
        prop_assert_eq!(parsed.len, head.len() - 4);
        let got: Vec<(Vec<u8>, Vec<u8>)> =
            parsed.fields.iter().map(|f| (f.name.to_vec(), f.value.to_vec())).collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> = fields
            .iter()
            .map(|(n, v)| (n.clone().into_bytes(), v.chars().map(|c| c as u32 as u8).collect()))
            .collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn any_chunking_of_a_body_is_delimited_the_same_at_every_split(
        body in prop::collection::vec(any::<u8>(), 0..300),
        cuts in prop::collection::vec(1usize..64, 1..20),
        extension in prop::option::of("[a-z]{1,8}(=[a-z0-9]{1,8})?"),
        trailers in prop::collection::vec((token(), value()), 0..3),
    ) {
        let mut stream = Vec::new();
        let mut rest = &body[..];
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cut.next().unwrap()).min(rest.len());
            stream.extend_from_slice(format!("{n:x}").as_bytes());
            if let Some(ext) = &extension {
                stream.extend_from_slice(format!(";{ext}").as_bytes());
            }
            stream.extend_from_slice(b"\r\n");
            stream.extend_from_slice(&rest[..n]);
            stream.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        stream.extend_from_slice(b"0\r\n");
        for (name, value) in &trailers {
            stream.extend_from_slice(format!("{name}: ").as_bytes());
            stream.extend(value.chars().map(|c| c as u32 as u8));
            stream.extend_from_slice(b"\r\n");
        }
        stream.extend_from_slice(b"\r\n");
        let end = stream.len();
        stream.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
        for split in 0..=stream.len() {
            let mut d = Delimiter::new(Body::Chunked);
            let first = d.feed(&stream[..split]).unwrap();
            let used = if first.done {
                first.used
            } else {
                prop_assert_eq!(first.used, split);
                let second = d.feed(&stream[split..]).unwrap();
                prop_assert!(second.done, "split at {}", split);
                split + second.used
            };
            prop_assert_eq!(used, end, "split at {}", split);
        }
        // A byte at a time.
        let mut d = Delimiter::new(Body::Chunked);
        let mut used = 0;
        for b in stream.chunks(1) {
            used += d.feed(b).unwrap().used;
            if d.is_done() {
                break;
            }
        }
        prop_assert_eq!(used, end);
    }
}

/// A head as one read: accepted (target, length, fields) or refused.
fn whole(head: &[u8]) -> Result<Option<(String, usize, usize)>, Malformed> {
    let mut parser = Parser::requests(Limits::default());
    Ok(parser
        .request(head)?
        .map(|h| (h.target.to_owned(), h.len, h.fields.len())))
}

/// The same head in two reads, cut at `cut`.
fn split(head: &[u8], cut: usize) -> Result<Option<(String, usize, usize)>, Malformed> {
    let mut parser = Parser::requests(Limits::default());
    if let Some(h) = parser.request(&head[..cut])? {
        return Ok(Some((h.target.to_owned(), h.len, h.fields.len())));
    }
    Ok(parser
        .request(head)?
        .map(|h| (h.target.to_owned(), h.len, h.fields.len())))
}

proptest! {
    /// A valid head with one byte that may break it put anywhere: however the bytes arrive,
    /// the same head is taken, or it is refused either way.
    #[test]
    fn a_head_is_taken_or_refused_the_same_in_any_two_reads(
        at in any::<prop::sample::Index>(),
        byte in prop::sample::select(&b"\r\n \t\0:a\x7f\x80/"[..]),
    ) {
        let mut head = b"GET /a?b HTTP/1.1\r\nHost: a\r\nX-A: one two\r\nContent-Length: 0\r\n\r\n".to_vec();
        let at = at.index(head.len());
        head.insert(at, byte);
        head.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
        let want = whole(&head);
        for cut in 0..=head.len() {
            let got = split(&head, cut);
            prop_assert_eq!(got.is_ok(), want.is_ok(), "cut {}: {:?} {:?}", cut, got, want);
            if want.is_ok() {
                prop_assert_eq!(&got, &want, "cut {}", cut);
            }
        }
    }

    /// Any bytes, in any reads: a refusal or a result, never a panic.
    #[test]
    fn any_bytes_are_refused_or_taken_without_a_panic(
        bytes in prop::collection::vec(
            prop_oneof![any::<u8>(), prop::sample::select(&b"\r\n :;0aA"[..])],
            0..400,
        ),
        step in 1usize..50,
    ) {
        let _ = follow(&bytes, step);
        let mut responses = Parser::responses(Limits::default());
        let mut buf = Vec::new();
        for piece in bytes.chunks(step) {
            buf.extend_from_slice(piece);
            match responses.response(&buf) {
                Ok(Some(head)) => {
                    let _ = framing::response(&head, "GET", true);
                    break;
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
        let mut chunked = Delimiter::new(Body::Chunked);
        for piece in bytes.chunks(step) {
            match chunked.feed(piece) {
                Ok(s) if s.done => break,
                Ok(s) => prop_assert_eq!(s.used, piece.len()),
                Err(_) => break,
            }
        }
    }
}
