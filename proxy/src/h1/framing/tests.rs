use super::*;
use crate::h1::head::{Limits, Parser};

fn framing(head: &str) -> Result<RequestFraming, Malformed> {
    let mut parser = Parser::requests(Limits::default());
    let parsed = parser.request(head.as_bytes())?.expect("a whole head");
    request(&parsed)
}

fn body(fields: &str) -> Result<Body, Malformed> {
    framing(&format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n")).map(|f| f.body)
}

#[test]
fn length_with_chunked_is_refused_in_either_order() {
    for fields in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "transfer-encoding: chunked\r\ncontent-length: 5\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n",
        "Content-Length: 0\r\nTransfer-Encoding: gzip\r\n",
    ] {
        assert_eq!(body(fields), Err(Malformed::LengthAndChunked), "{fields:?}");
    }
    assert_eq!(Malformed::LengthAndChunked.status(), 400);
}

#[test]
fn differing_duplicate_or_invalid_lengths_are_refused() {
    for fields in [
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5x\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: \r\n",
        "Content-Length: 0x10\r\n",
        "Content-Length: 99999999999999999999999\r\n",
    ] {
        assert_eq!(body(fields), Err(Malformed::BadLength), "{fields:?}");
    }
    assert_eq!(body("Content-Length:  42 \r\n"), Ok(Body::Length(42)));
    assert_eq!(body("Content-Length: 0\r\n"), Ok(Body::Empty));
}

#[test]
fn a_coding_that_is_not_last_chunked_is_refused_with_400() {
    for fields in [
        "Transfer-Encoding: gzip\r\n",
        "Transfer-Encoding: chunked, gzip\r\n",
        "Transfer-Encoding: \r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
        "Transfer-Encoding: xchunked\r\n",
    ] {
        assert_eq!(body(fields), Err(Malformed::NotChunked), "{fields:?}");
    }
}

#[test]
fn chunked_after_other_codings_or_repeated_is_not_implemented() {
    for fields in [
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    ] {
        assert_eq!(body(fields), Err(Malformed::UnknownCoding), "{fields:?}");
    }
    assert_eq!(Malformed::UnknownCoding.status(), 501);
    assert_eq!(body("Transfer-Encoding: Chunked \r\n"), Ok(Body::Chunked));
}

#[test]
fn http_10_with_a_coding_is_refused() {
    let head = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(framing(head), Err(Malformed::CodingInHttp10));
    let head = "POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n";
    assert_eq!(framing(head).unwrap().body, Body::Length(3));
}

#[test]
fn a_request_without_framing_has_no_body() {
    assert_eq!(body(""), Ok(Body::Empty));
    let get = framing("GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(get.body, Body::Empty);
    assert!(get.keep_alive && !get.upgrade && !get.expect_continue);
}

#[test]
fn connection_options_and_websocket_upgrades() {
    let f = framing("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    assert!(!f.keep_alive);
    let f = framing("GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(!f.keep_alive, "HTTP/1.0 closes by default");
    let f = framing("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
    assert!(f.keep_alive);
    // Every token counts, in any case and any place; a token that only contains one does not.
    let f = framing("GET / HTTP/1.1\r\nConnection: keep-alive , CLOSE\r\n\r\n").unwrap();
    assert!(!f.keep_alive);
    let f = framing("GET / HTTP/1.0\r\nConnection: x-trace,keep-alive\r\n\r\n").unwrap();
    assert!(f.keep_alive);
    for not in ["closed", "xclose", "keep-alive2", "close-ish"] {
        let f = framing(&format!("GET / HTTP/1.1\r\nConnection: {not}\r\n\r\n")).unwrap();
        assert!(f.keep_alive, "{not}");
    }
    let ws = "GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert!(framing(ws).unwrap().upgrade);
    // Only a WebSocket upgrade over HTTP/1.1 with both headers is one.
    for not in [
        "GET / HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n",
        "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    ] {
        assert!(!framing(not).unwrap().upgrade, "{not:?}");
    }
    let expect = "POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-Continue\r\n\r\n";
    assert!(framing(expect).unwrap().expect_continue);
}

fn answer(head: &str, method: &str, upgrade: bool) -> Result<ResponseFraming, Malformed> {
    let mut parser = Parser::responses(Limits::default());
    let parsed = parser.response(head.as_bytes())?.expect("a whole head");
    response(&parsed, method, upgrade)
}

fn message(body: Body, keep_alive: bool) -> Result<ResponseFraming, Malformed> {
    Ok(ResponseFraming::Message { body, keep_alive })
}

#[test]
fn interim_answers_and_switches() {
    assert_eq!(
        answer("HTTP/1.1 100 Continue\r\n\r\n", "POST", false),
        Ok(ResponseFraming::Interim)
    );
    let switch =
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert_eq!(answer(switch, "GET", true), Ok(ResponseFraming::Switch));
    assert_eq!(answer(switch, "GET", false), Err(Malformed::UnaskedSwitch));
    assert_eq!(Malformed::UnaskedSwitch.status(), 502);
}

#[test]
fn answers_without_a_body() {
    let length = "Content-Length: 10\r\n";
    for (status, method) in [
        ("204 No Content", "GET"),
        ("304 Not Modified", "GET"),
        ("200 OK", "HEAD"),
    ] {
        let head = format!("HTTP/1.1 {status}\r\n{length}\r\n");
        assert_eq!(
            answer(&head, method, false),
            message(Body::Empty, true),
            "{status} {method}"
        );
    }
}

#[test]
fn answers_by_length_chunked_or_until_close() {
    let ok = |fields: &str| answer(&format!("HTTP/1.1 200 OK\r\n{fields}\r\n"), "GET", false);
    assert_eq!(ok("Content-Length: 3\r\n"), message(Body::Length(3), true));
    assert_eq!(
        ok("Content-Length: 3\r\nContent-Length: 3, 3\r\n"),
        message(Body::Length(3), true)
    );
    assert_eq!(
        ok("Content-Length: 3\r\nContent-Length: 4\r\n"),
        Err(Malformed::BadLength)
    );
    assert_eq!(ok("Content-Length: x\r\n"), Err(Malformed::BadLength));
    assert_eq!(
        ok("Transfer-Encoding: chunked\r\n"),
        message(Body::Chunked, true)
    );
    // Chunked decides over a length (RFC 9112 section 6.3, rule 3).
    assert_eq!(
        ok("Content-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n"),
        message(Body::Chunked, true)
    );
    assert_eq!(
        ok("Transfer-Encoding: gzip\r\n"),
        message(Body::UntilClose, false)
    );
    assert_eq!(ok(""), message(Body::UntilClose, false));
    assert_eq!(
        ok("Content-Length: 0\r\nConnection: close\r\n"),
        message(Body::Empty, false)
    );
    assert_eq!(
        answer(
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET",
            false
        ),
        Err(Malformed::CodingInHttp10)
    );
    assert_eq!(
        answer("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", "GET", false),
        message(Body::Length(1), false)
    );
}
