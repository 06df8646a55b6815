use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::*;
use crate::forwarding::forwarding_headers;
use crate::h1::framing;
use crate::h1::head::{Limits, Parser};

fn down() -> Downstream {
    Downstream::new(
        "10.0.0.7:5555".parse().unwrap(),
        "127.0.0.1:8443".parse().unwrap(),
        true,
    )
}

/// The head this codec sends upstream for `client`, routed to `target` on `host`.
fn edited(client: &str, target: &str, host: &str, ids: &RequestIds, via: &Via) -> (String, String) {
    let mut parser = Parser::requests(Limits::default());
    let head = parser.request(client.as_bytes()).unwrap().unwrap();
    let framing = framing::request(&head).unwrap();
    let edit = Edit {
        target: target.as_bytes(),
        host: host.as_bytes(),
        framing: &framing,
    };
    let mut out = Vec::new();
    let id = request_head(&mut out, &head, &edit, &down(), ids, via);
    let out = String::from_utf8(out).unwrap();
    let id = out[id].to_owned();
    (out, id)
}

/// The headers of a serialized head, lower-cased and sorted (the order is not compared).
fn fields_of(head: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = head
        .split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    fields.sort();
    fields
}

/// What the hyper path sends for the same client head: `crate::forwarding`'s edits (the
/// gateway's `outgoing`), and the framing hyper's client writes for the body.
fn hyper_path(client: &str, host: &str, ids: &RequestIds, via: &Via) -> Vec<(String, String)> {
    let mut parser = Parser::requests(Limits::default());
    let head = parser.request(client.as_bytes()).unwrap().unwrap();
    let framing = framing::request(&head).unwrap();
    let mut headers = HeaderMap::new();
    for f in head.fields.iter() {
        headers.append(
            HeaderName::from_bytes(f.name).unwrap(),
            HeaderValue::from_bytes(f.value).unwrap(),
        );
    }
    let host = HeaderValue::from_str(host).unwrap();
    forwarding_headers(&mut headers, &host, &down(), ids);
    headers.append(http::header::VIA, via.value(head.version));
    if framing.upgrade {
        headers.insert("connection", HeaderValue::from_static("upgrade"));
        headers.insert("upgrade", HeaderValue::from_static("websocket"));
    }
    if framing.body == Body::Chunked {
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    }
    let mut fields: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect();
    fields.sort();
    fields
}

#[test]
fn the_edited_head_has_the_headers_the_hyper_path_sends() {
    let (ids, via) = (RequestIds::new(), Via::new());
    for client in [
        "GET /a HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: shop.example.com\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-For: 192.0.2.2\r\nX-Real-IP: 1.2.3.4\r\nX-Forwarded-Proto: gopher\r\nX-Request-Id: given\r\nX-Request-Id: twice\r\n\r\n",
        "POST /up HTTP/1.1\r\nHost: shop.example.com\r\nTransfer-Encoding: chunked\r\nTE: gzip, trailers\r\nTrailer: X-Sum\r\n\r\n",
        "POST /up HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 3\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\n\r\n",
        "GET /ws HTTP/1.1\r\nHost: shop.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: shop.example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nVia: 1.1 other\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: shop.example.com\r\nX-Forwarded-For:\r\n\r\n",
    ] {
        let (out, id) = edited(client, "/a", "shop.example.com", &ids, &via);
        let mut ours = fields_of(&out);
        let mut theirs = hyper_path(client, "shop.example.com", &ids, &via);
        // Ids made for each path differ; a client's is kept by both.
        for fields in [&mut ours, &mut theirs] {
            for (name, value) in fields.iter_mut() {
                if name == "x-request-id" && value.len() == 32 {
                    *value = "made".into();
                }
            }
        }
        assert_eq!(ours, theirs, "{client:?}\n{out}");
        assert!(
            out.starts_with(&format!(
                "{} /a HTTP/1.1\r\nHost: shop.example.com\r\n",
                &client[..client.find(' ').unwrap()]
            )),
            "{out}"
        );
        assert!(out.ends_with("\r\n\r\n"));
        let given = client.contains("X-Request-Id: given");
        assert_eq!(id == "given", given, "{id}");
        assert!(given || id.len() == 32, "{id}");
    }
}

#[test]
fn the_framing_headers_stay_even_when_connection_names_them() {
    let (ids, via) = (RequestIds::new(), Via::new());
    let client =
        "POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 3\r\n\r\n";
    let (out, _) = edited(client, "/", "a", &ids, &via);
    assert!(out.contains("\r\nContent-Length: 3\r\n"), "{out}");
    let client = "POST / HTTP/1.1\r\nHost: a\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (out, _) = edited(client, "/", "a", &ids, &via);
    assert!(out.contains("\r\nTransfer-Encoding: chunked\r\n"), "{out}");
}

#[test]
fn the_edited_head_parses_back_with_the_routed_target_and_host() {
    let (ids, via) = (RequestIds::new(), Via::new());
    let client = "GET /x/../b?q=1 HTTP/1.1\r\nHost: Shop.Example.com:80\r\nCookie: a=b\r\n\r\n";
    let (out, _) = edited(client, "/rewritten?q=1", "shop.example.com", &ids, &via);
    let mut parser = Parser::requests(Limits::default());
    let head = parser.request(out.as_bytes()).unwrap().unwrap();
    assert_eq!((head.method, head.target), ("GET", "/rewritten?q=1"));
    assert_eq!(head.fields.get("host"), Some(&b"shop.example.com"[..]));
    assert_eq!(
        head.fields.get("x-forwarded-host"),
        Some(&b"shop.example.com"[..])
    );
    assert_eq!(head.fields.get("x-forwarded-proto"), Some(&b"https"[..]));
    assert_eq!(head.fields.get("x-forwarded-port"), Some(&b"8443"[..]));
    assert_eq!(head.fields.get("cookie"), Some(&b"a=b"[..]));
    assert_eq!(head.len, out.len());
}

fn answered(upstream: &str, method: &str, upgrade: bool, close: bool) -> String {
    let mut parser = Parser::responses(Limits::default());
    let head = parser.response(upstream.as_bytes()).unwrap().unwrap();
    let framing = framing::response(&head, method, upgrade).unwrap();
    let mut out = Vec::new();
    response_head(&mut out, &head, &framing, close, false, b"");
    String::from_utf8(out).unwrap()
}

#[test]
fn the_response_head_loses_hop_by_hop_headers_and_keeps_its_framing() {
    let out = answered(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nServer: web\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
        "GET",
        false,
        false,
    );
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: web\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"
    );
    // Chunked decides: the length goes, so the client cannot read the body two ways.
    let out = answered(
        "HTTP/1.1 201 Created\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST",
        false,
        true,
    );
    assert_eq!(
        out,
        "HTTP/1.1 201 Created\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    // A switch keeps the headers that are the switch.
    let out = answered(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
        "GET",
        true,
        false,
    );
    assert_eq!(
        out,
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"
    );
}

#[test]
fn an_answer_without_a_date_gets_one_and_one_with_a_date_keeps_it() {
    let out = answered(
        "HTTP/1.1 204 No Content\r\nServer: web\r\n\r\n",
        "GET",
        false,
        false,
    );
    let date = out
        .strip_prefix("HTTP/1.1 204 No Content\r\nServer: web\r\nDate: ")
        .and_then(|rest| rest.strip_suffix("\r\n\r\n"))
        .unwrap_or_else(|| panic!("{out:?}"));
    let parsed = httpdate::parse_http_date(date).unwrap();
    let age = std::time::SystemTime::now().duration_since(parsed).unwrap();
    assert!(age.as_secs() < 60, "{date}");
    let out = answered(
        "HTTP/1.1 204 No Content\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
        "GET",
        false,
        false,
    );
    assert_eq!(out.matches("ate: ").count(), 1, "{out}");
}

/// A writer that takes at most `max` bytes per call and counts its calls.
struct Slow {
    written: Vec<u8>,
    max: usize,
    calls: usize,
}

impl AsyncWrite for Slow {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(self.get_mut().take(&[IoSlice::new(buf)])))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(self.get_mut().take(bufs)))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Slow {
    fn take(&mut self, bufs: &[IoSlice<'_>]) -> usize {
        self.calls += 1;
        let mut n = 0;
        for buf in bufs {
            let take = buf.len().min(self.max - n);
            self.written.extend_from_slice(&buf[..take]);
            n += take;
        }
        n
    }
}

#[tokio::test]
async fn head_and_first_body_bytes_leave_in_one_vectored_write() {
    let head = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
    let mut w = Slow {
        written: Vec::new(),
        max: usize::MAX,
        calls: 0,
    };
    send(&mut w, head, b"hello").await.unwrap();
    assert_eq!(w.calls, 1);
    assert_eq!(w.written, [&head[..], b"hello"].concat());
    // A writer that takes a few bytes at a time still gets all of it, in order.
    let mut w = Slow {
        written: Vec::new(),
        max: 3,
        calls: 0,
    };
    send(&mut w, head, b"hello").await.unwrap();
    assert_eq!(w.written, [&head[..], b"hello"].concat());
    let mut w = Slow {
        written: Vec::new(),
        max: 7,
        calls: 0,
    };
    send(&mut w, head, b"").await.unwrap();
    assert_eq!(w.written, head);
    // A writer that takes nothing is an error, not a loop.
    let mut w = Slow {
        written: Vec::new(),
        max: 0,
        calls: 0,
    };
    assert_eq!(
        send(&mut w, head, b"x").await.unwrap_err().kind(),
        io::ErrorKind::WriteZero
    );
}

#[test]
fn a_written_request_id_is_the_one_next_would_make() {
    let ids = RequestIds::new();
    let mut written = Vec::new();
    ids.write_next(&mut written);
    let next = ids.next();
    let (written, next) = (
        std::str::from_utf8(&written).unwrap(),
        next.to_str().unwrap(),
    );
    assert_eq!((written.len(), &written[..16]), (32, &next[..16]));
    let counter = |id: &str| u64::from_str_radix(&id[16..], 16).unwrap();
    assert_eq!(counter(written) + 1, counter(next));
}

/// The head a sidecar passes on for `client`, with `target`, dropping `x-mesh-*`.
fn passed(client: &str, target: &str, extra: &str) -> String {
    let mut parser = Parser::requests(Limits::default());
    let head = parser.request(client.as_bytes()).unwrap().unwrap();
    let framing = framing::request(&head).unwrap();
    let mut out = Vec::new();
    let mesh = |name: &[u8]| name.len() > 7 && name[..7].eq_ignore_ascii_case(b"x-mesh-");
    pass_request_head(
        &mut out,
        &head,
        target.as_bytes(),
        &framing,
        mesh,
        extra.as_bytes(),
    );
    String::from_utf8(out).unwrap()
}

#[test]
fn a_passed_head_keeps_the_clients_fields_in_order_without_hop_by_hop_ones() {
    let out = passed(
        "POST /a/./b?q=1 HTTP/1.1\r\nHost: api.shop\r\nX-Forwarded-For: 10.0.0.1\r\n\
         Connection: keep-alive, x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\
         X-Mesh-Peer: forged\r\nTE: trailers, deflate\r\nProxy-Authorization: secret\r\n\
         Content-Length: 3\r\nAccept: */*\r\n\r\n",
        "/a/b?q=1",
        "x-forwarded-client-cert: By=a;URI=b\r\n",
    );
    assert_eq!(
        out,
        "POST /a/b?q=1 HTTP/1.1\r\nHost: api.shop\r\nX-Forwarded-For: 10.0.0.1\r\n\
         Content-Length: 3\r\nAccept: */*\r\nTE: trailers\r\n\
         x-forwarded-client-cert: By=a;URI=b\r\n\r\n"
    );
}

#[test]
fn a_passed_head_keeps_its_framing_and_a_websocket_upgrade() {
    let out = passed(
        "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: k\r\n\r\n",
        "/ws",
        "",
    );
    assert_eq!(
        out,
        "GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: k\r\nConnection: upgrade\r\n\
         Upgrade: websocket\r\n\r\n"
    );
    let out = passed(
        "PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        "/x",
        "",
    );
    assert_eq!(
        out,
        "PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
}

#[test]
fn an_own_answer_has_a_date_its_length_and_no_body_for_head() {
    let mut out = Vec::new();
    own_answer(
        &mut out,
        http::StatusCode::FORBIDDEN,
        None,
        "denied\n",
        true,
        false,
    );
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 403 Forbidden\r\nDate: "),
        "{text}"
    );
    assert!(
        text.ends_with(
            "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 7\r\n\
             Connection: close\r\n\r\ndenied\n"
        ),
        "{text}"
    );
    own_answer(
        &mut out,
        http::StatusCode::PERMANENT_REDIRECT,
        Some(b"https://h/"),
        "",
        false,
        true,
    );
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.ends_with("\r\nContent-Length: 0\r\nLocation: https://h/\r\n\r\n"),
        "{text}"
    );
}

#[test]
fn an_http10_clients_expect_is_not_sent_on_and_an_http11_clients_is() {
    let (ids, via) = (RequestIds::new(), Via::new());
    for (version, sent) in [("1.0", false), ("1.1", true)] {
        let client = format!(
            "PUT /a HTTP/{version}\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
        );
        let (edited, _) = edited(&client, "/a", "a", &ids, &via);
        let passed = passed(&client, "/a", "");
        for head in [edited, passed] {
            assert_eq!(
                head.contains("\r\nExpect: 100-continue\r\n"),
                sent,
                "{head}"
            );
            assert!(head.starts_with("PUT /a HTTP/1.1\r\n"), "{head}");
        }
    }
}
