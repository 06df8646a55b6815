//! Exchanges over in-memory connections: the test holds the client's and the upstream's far
//! ends, writes what each sends and reads what the relay passed on, byte for byte.

use std::task::Context;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

use super::*;
use crate::forwarding::{Downstream, RequestIds, Via};
use crate::h1::head::Limits;
use crate::h1::write::Edit;

/// The relay's ends of both connections and the buffers one client connection keeps.
struct Relay {
    client: Side<DuplexStream>,
    upstream: Side<DuplexStream>,
    out: Vec<u8>,
    ids: RequestIds,
    via: Via,
    down: Downstream,
}

/// The test's ends: the user writes requests and reads answers; the app reads the requests
/// sent upstream and writes answers.
struct Ends {
    user: DuplexStream,
    app: DuplexStream,
}

fn rig() -> (Relay, Ends) {
    let (client, user) = duplex(256 * 1024);
    let (upstream, app) = duplex(256 * 1024);
    let relay = Relay {
        client: Side::client(client, Limits::default()),
        upstream: Side::upstream(upstream, Limits::default()),
        out: Vec::new(),
        ids: RequestIds::new(),
        via: Via::new(),
        down: Downstream::new(
            "10.0.0.7:5555".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
            false,
        ),
    };
    (relay, Ends { user, app })
}

impl Relay {
    /// One exchange as the gateway's loop runs it: `None` when the client closed between
    /// requests.
    async fn exchange(&mut self) -> Result<Option<Answered>, Error> {
        if self.client.read_head().await?.is_none() {
            return Ok(None);
        }
        let head = self.client.request()?;
        let framing = framing::request(&head).map_err(|e| Error::Malformed(Peer::Client, e))?;
        let edit = Edit {
            target: head.target.as_bytes(),
            host: b"shop.example",
            framing: &framing,
        };
        write::request_head(
            &mut self.out,
            &head,
            &edit,
            &self.down,
            &self.ids,
            &self.via,
        );
        let asked = Asked {
            head: head.method == "HEAD",
            upgrade: framing.upgrade,
            keep_alive: framing.keep_alive,
            http10: framing.http10,
        };
        let len = head.len;
        self.client.consume(len);
        send_request(
            &mut self.client,
            &mut self.upstream,
            &self.out,
            framing.body,
            framing.expect_continue,
            u64::MAX,
        )
        .await?;
        let mut progress = Progress::default();
        relay_response(
            &mut self.upstream,
            &mut self.client,
            asked,
            b"",
            &mut self.out,
            &mut progress,
        )
        .await
        .map(Some)
    }
}

impl Ends {
    async fn say(&mut self, bytes: &[u8]) {
        self.user.write_all(bytes).await.unwrap();
    }

    async fn answer(&mut self, bytes: &[u8]) {
        self.app.write_all(bytes).await.unwrap();
    }

    /// The user closes its connection.
    fn hang_up(&mut self) {
        self.user = duplex(1).0;
    }

    /// The app reads a request head, answers `bytes` and closes its connection.
    async fn answer_and_close(&mut self, bytes: &[u8]) {
        let mut app = std::mem::replace(&mut self.app, duplex(1).0);
        let mut seen = Vec::new();
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut buf = [0u8; 1024];
            let n = app.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request never came");
            seen.extend_from_slice(&buf[..n]);
        }
        app.write_all(bytes).await.unwrap();
    }

    async fn heard(&mut self) -> String {
        String::from_utf8(drain(&mut self.user).await).unwrap()
    }

    async fn sent_upstream(&mut self) -> String {
        String::from_utf8(drain(&mut self.app).await).unwrap()
    }
}

/// Everything that arrived at `end` until it is quiet (or closed).
async fn drain(end: &mut DuplexStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(20), end.read(&mut buf)).await
    {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    undated(got)
}

/// The bytes without the `Date` fields the proxy adds to answers that have none (the write
/// tests check those): each must be a date of the last minute.
fn undated(got: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8_lossy(&got).into_owned();
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("\r\nDate: ") {
        let (before, after) = rest.split_at(at + 2);
        let value = &after[6..after.find("\r\n").unwrap()];
        let when = httpdate::parse_http_date(value).unwrap();
        let age = std::time::SystemTime::now().duration_since(when).unwrap();
        assert!(age.as_secs() < 60, "{value}");
        out.push_str(before);
        rest = &after[6 + value.len() + 2..];
    }
    out.push_str(rest);
    out.into_bytes()
}

/// The body after a serialized head.
fn body_of(message: &str) -> &str {
    message.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_upstream_connection() {
    let (mut r, mut e) = rig();
    e.say(b"GET /a HTTP/1.1\r\nHost: shop.example\r\n\r\nGET /b HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        .await;
    e.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
        .await;
    let first = r.exchange().await.unwrap().unwrap();
    assert_eq!(
        first,
        Answered::Message {
            status: 200,
            client_keep_alive: true,
            upstream_keep_alive: true,
            body_bytes: 1
        }
    );
    // The second request waits in the client's buffer, untouched by the first.
    assert!(r.client.buffered().starts_with(b"GET /b "));
    e.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb")
        .await;
    r.exchange().await.unwrap().unwrap();
    assert_eq!(
        e.heard().await,
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"
    );
    let sent = e.sent_upstream().await;
    let lines: Vec<&str> = sent
        .split("\r\n\r\n")
        .filter(|h| !h.is_empty())
        .map(|h| h.lines().next().unwrap())
        .collect();
    assert_eq!(lines, ["GET /a HTTP/1.1", "GET /b HTTP/1.1"]);
    assert!(sent.contains("X-Forwarded-For: 10.0.0.7\r\n"), "{sent}");
    // The client closes: the loop ends cleanly.
    e.hang_up();
    assert!(r.exchange().await.unwrap().is_none());
}

#[tokio::test]
async fn chunked_bodies_pass_byte_identical_both_ways() {
    let (mut r, mut e) = rig();
    let request_body = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n";
    let request = format!(
        "POST /up HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n{request_body}"
    );
    e.say(request.as_bytes()).await;
    let answer_body = "3\r\nabc\r\n0\r\n\r\n";
    let answer = format!("HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n{answer_body}");
    e.answer(answer.as_bytes()).await;
    let answered = r.exchange().await.unwrap().unwrap();
    assert!(
        matches!(
            answered,
            Answered::Message {
                status: 201,
                client_keep_alive: true,
                ..
            }
        ),
        "{answered:?}"
    );
    let sent = e.sent_upstream().await;
    assert!(
        sent.contains("\r\nTransfer-Encoding: chunked\r\n"),
        "{sent}"
    );
    assert_eq!(body_of(&sent), request_body);
    assert_eq!(body_of(&e.heard().await), answer_body);
}

#[tokio::test]
async fn a_body_arriving_in_pieces_streams_through_and_what_follows_stays_buffered() {
    let (mut r, mut e) = rig();
    e.say(b"PUT /x HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 10\r\n\r\n01234")
        .await;
    let head = b"PUT /x HTTP/1.1\r\nHost: shop.example\r\n\r\n";
    let relay = async {
        r.client.read_head().await.unwrap();
        let len = r.client.request().unwrap().len;
        r.client.consume(len);
        send_request(
            &mut r.client,
            &mut r.upstream,
            head,
            Body::Length(10),
            false,
            u64::MAX,
        )
        .await
    };
    let user = async {
        // The relay has passed what it had and waits for the rest.
        let mut seen = Vec::new();
        while !seen.ends_with(b"01234") {
            let mut buf = [0u8; 256];
            let n = e.app.read(&mut buf).await.unwrap();
            seen.extend_from_slice(&buf[..n]);
        }
        e.user.write_all(b"56789GET /next").await.unwrap();
    };
    let (sent, ()) = tokio::join!(relay, user);
    assert_eq!(sent.unwrap(), 10);
    assert_eq!(e.sent_upstream().await, "56789");
    assert_eq!(r.client.buffered(), b"GET /next");
}

#[tokio::test]
async fn an_answer_until_close_closes_the_client_connection() {
    let (mut r, mut e) = rig();
    e.say(b"GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n").await;
    let (answered, ()) = tokio::join!(
        r.exchange(),
        e.answer_and_close(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
    );
    let answered = answered.unwrap().unwrap();
    assert_eq!(
        answered,
        Answered::Message {
            status: 200,
            client_keep_alive: false,
            upstream_keep_alive: false,
            body_bytes: 9
        }
    );
    assert_eq!(
        e.heard().await,
        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"
    );
}

#[tokio::test]
async fn an_upgrade_becomes_a_tunnel_with_the_bytes_either_side_had_buffered() {
    let (mut r, mut e) = rig();
    e.say(b"GET /ws HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nearly")
        .await;
    let switch =
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    e.answer(format!("{switch}hi").as_bytes()).await;
    assert_eq!(r.exchange().await.unwrap().unwrap(), Answered::Switched);
    assert_eq!(e.heard().await, format!("{switch}hi"));
    let sent = e.sent_upstream().await;
    assert!(sent.contains("\r\nUpgrade: websocket\r\n"), "{sent}");
    let mut running = tokio::spawn(async move { tunnel(&mut r.client, &mut r.upstream).await });
    let mut got = [0u8; 5];
    e.app.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"early");
    e.user.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    e.app.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
    e.app.write_all(b"pong").await.unwrap();
    e.user.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"pong");
    assert!(
        tokio::time::timeout(Duration::from_millis(10), &mut running)
            .await
            .is_err(),
        "the tunnel runs while both sides are open"
    );
    drop(e);
    let passed = running.await.unwrap().unwrap();
    assert_eq!(passed, (4, 4));
}

#[tokio::test]
async fn a_switch_nobody_asked_for_is_refused() {
    let (mut r, mut e) = rig();
    e.say(b"GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n").await;
    e.answer(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n")
        .await;
    let err = r.exchange().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Malformed(Peer::Upstream, Malformed::UnaskedSwitch)
        ),
        "{err}"
    );
    assert_eq!(e.heard().await, "");
}

#[tokio::test]
async fn a_client_closing_mid_body_is_the_clients_fault() {
    let (mut r, mut e) = rig();
    e.say(b"POST / HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 100\r\n\r\nonly this")
        .await;
    e.hang_up();
    let err = r.exchange().await.unwrap_err();
    assert!(matches!(err, Error::Closed(Peer::Client)), "{err}");
    assert_eq!(err.peer(), Peer::Client);
}

#[tokio::test]
async fn an_upstream_closing_mid_body_is_the_upstreams_fault() {
    let (mut r, mut e) = rig();
    e.say(b"GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n").await;
    let (answered, ()) = tokio::join!(
        r.exchange(),
        e.answer_and_close(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
    );
    let err = answered.unwrap_err();
    assert!(matches!(err, Error::Closed(Peer::Upstream)), "{err}");
}

#[tokio::test]
async fn bare_lf_obs_fold_nul_and_smuggling_heads_are_refused_before_anything_goes_upstream() {
    for (head, why) in [
        (&b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..], Malformed::BareLf),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n b\r\n\r\n",
            Malformed::ObsFold,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x002\r\n\r\n",
            Malformed::ControlInField,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            Malformed::LengthAndChunked,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            Malformed::BadLength,
        ),
    ] {
        let (mut r, mut e) = rig();
        e.say(head).await;
        let err = r.exchange().await.unwrap_err();
        let Error::Malformed(Peer::Client, got) = err else {
            panic!("{err}");
        };
        assert_eq!(got, why);
        assert_eq!(got.status().as_u16(), 400);
        assert_eq!(e.sent_upstream().await, "");
    }
}

#[tokio::test]
async fn a_bad_chunk_in_a_request_body_is_refused() {
    let (mut r, mut e) = rig();
    e.say(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
        .await;
    let err = r.exchange().await.unwrap_err();
    assert!(
        matches!(err, Error::Malformed(Peer::Client, Malformed::BadChunk)),
        "{err}"
    );
}

#[tokio::test]
async fn expect_continue_gets_100_first_and_the_upstreams_interim_is_dropped() {
    let (mut r, mut e) = rig();
    e.say(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        .await;
    e.answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .await;
    let user = async {
        let mut got = [0u8; CONTINUE.len()];
        e.user.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, CONTINUE);
        e.user.write_all(b"ok").await.unwrap();
    };
    let (answered, ()) = tokio::join!(r.exchange(), user);
    assert!(matches!(
        answered.unwrap().unwrap(),
        Answered::Message { status: 200, .. }
    ));
    assert_eq!(body_of(&e.sent_upstream().await), "ok");
    assert_eq!(
        e.heard().await,
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    );
}

#[tokio::test]
async fn head_204_and_304_answers_have_no_body_and_keep_both_connections() {
    for (request, answer) in [
        (
            "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n",
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "HTTP/1.1 204 No Content\r\n\r\n",
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
        ),
    ] {
        let (mut r, mut e) = rig();
        e.say(request.as_bytes()).await;
        e.answer(answer.as_bytes()).await;
        let answered = r.exchange().await.unwrap().unwrap();
        assert!(
            matches!(
                answered,
                Answered::Message {
                    client_keep_alive: true,
                    upstream_keep_alive: true,
                    body_bytes: 0,
                    ..
                }
            ),
            "{request}: {answered:?}"
        );
        assert_eq!(e.heard().await, answer);
    }
}

#[tokio::test]
async fn connection_close_and_http10_end_the_client_connection_only() {
    for request in [
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
    ] {
        let (mut r, mut e) = rig();
        e.say(request.as_bytes()).await;
        e.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await;
        let answered = r.exchange().await.unwrap().unwrap();
        assert!(
            matches!(
                answered,
                Answered::Message {
                    client_keep_alive: false,
                    upstream_keep_alive: true,
                    ..
                }
            ),
            "{request}: {answered:?}"
        );
        assert!(e.heard().await.contains("\r\nConnection: close\r\n"));
    }
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_read_and_a_stalled_one_waits_for_the_deadline() {
    let (mut r, mut e) = rig();
    let head = b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n";
    let user = async {
        for b in head {
            e.user.write_all(&[*b]).await.unwrap();
            tokio::task::yield_now().await;
        }
    };
    let (len, ()) = tokio::join!(r.client.read_head(), user);
    assert_eq!(len.unwrap(), Some(head.len()));
    assert_eq!(r.client.request().unwrap().target, "/slow");
    r.client.consume(head.len());
    // Half a head, then nothing: only the caller's deadline ends the wait.
    e.say(b"GET / HT").await;
    let waited = tokio::time::timeout(Duration::from_millis(30), r.client.read_head()).await;
    assert!(waited.is_err());
}

#[tokio::test]
async fn a_close_after_empty_lines_is_clean_and_one_inside_a_head_is_not() {
    let (mut r, mut e) = rig();
    e.say(b"\r\n\r\n").await;
    e.hang_up();
    assert!(r.client.read_head().await.unwrap().is_none());
    let (mut r, mut e) = rig();
    e.say(b"GET / HTTP/1.1\r\nHo").await;
    e.hang_up();
    assert!(matches!(
        r.client.read_head().await,
        Err(Error::Closed(Peer::Client))
    ));
}

#[tokio::test]
async fn a_head_past_the_limit_is_refused_with_431() {
    let (mut r, mut e) = rig();
    let mut head = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    while head.len() <= crate::h1::head::MAX_HEAD {
        head.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
    }
    e.say(&head).await;
    let err = r.client.read_head().await.unwrap_err();
    let Error::Malformed(Peer::Client, why) = err else {
        panic!("{err}");
    };
    assert_eq!(why.status().as_u16(), 431);
}

#[tokio::test]
async fn an_http10_client_gets_chunks_as_content_and_a_kept_connection_said() {
    const ASK: &[u8] = b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n";
    let chunked: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
    let length: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world";
    // A chunked answer: its content alone, ended by the close; one of known length: the
    // connection stays, and says so.
    for (answer, kept, said) in [
        (chunked, false, "Connection: close"),
        (length, true, "Connection: keep-alive"),
    ] {
        let (mut r, mut e) = rig();
        e.say(ASK).await;
        e.answer(answer).await;
        let answered = r.exchange().await.unwrap().unwrap();
        let Answered::Message {
            client_keep_alive,
            upstream_keep_alive,
            body_bytes,
            ..
        } = answered
        else {
            panic!("{answered:?}");
        };
        assert_eq!((client_keep_alive, upstream_keep_alive), (kept, true));
        assert_eq!(body_bytes, 11);
        let heard = e.heard().await;
        assert!(heard.starts_with("HTTP/1.1 200 OK\r\n"), "{heard}");
        assert!(heard.contains(&format!("\r\n{said}\r\n")), "{heard}");
        assert!(
            !heard.to_ascii_lowercase().contains("transfer-encoding"),
            "{heard}"
        );
        assert!(heard.ends_with("\r\n\r\nhello world"), "{heard}");
    }
}

/// A writer that keeps what it is given and counts the writes.
#[derive(Default)]
struct Counted {
    bytes: Vec<u8>,
    writes: usize,
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.writes += 1;
        self.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn chunks_read_together_reach_an_http10_client_in_one_write() {
    let (far, near) = duplex(64 * 1024);
    let mut upstream = Side::upstream(near, Limits::default());
    let mut far = far;
    // A hundred one-byte chunks with extensions, then the last chunk and a trailer, all in one
    // read; then what follows the body (not the body's) stays buffered.
    let mut body = Vec::new();
    for i in 0..100u8 {
        body.extend_from_slice(format!("1;n={i}\r\n{}\r\n", char::from(b'a' + i % 26)).as_bytes());
    }
    body.extend_from_slice(b"0\r\nX-T: 1\r\n\r\nNEXT");
    far.write_all(&body).await.unwrap();
    upstream.fill().await.unwrap();
    assert_eq!(
        upstream.buffered().len(),
        body.len(),
        "one read took it all"
    );
    let mut delimiter = Delimiter::new(Body::Chunked);
    let mut client = Counted::default();
    let passed = pass(&mut upstream, &mut client, &mut delimiter, u64::MAX, true)
        .await
        .unwrap();
    let content: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
    assert_eq!(passed, 100);
    assert_eq!(client.bytes, content);
    assert_eq!(client.writes, 1, "one write for the whole buffer");
    assert_eq!(upstream.buffered(), b"NEXT");
}

#[tokio::test]
async fn a_chunked_body_split_anywhere_is_unframed_the_same() {
    let body: &[u8] = b"5;x=y\r\nhello\r\n6\r\n world\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
    for cut in 1..body.len() {
        let (mut far, near) = duplex(64 * 1024);
        let mut upstream = Side::upstream(near, Limits::default());
        let mut delimiter = Delimiter::new(Body::Chunked);
        let mut client = Counted::default();
        let (first, rest) = body.split_at(cut);
        far.write_all(first).await.unwrap();
        let writer = async {
            // The rest once the first part is taken: the relay's read sees the two apart.
            tokio::task::yield_now().await;
            far.write_all(rest).await.unwrap();
            far
        };
        let (passed, _far) = tokio::join!(
            pass(&mut upstream, &mut client, &mut delimiter, u64::MAX, true),
            writer
        );
        assert_eq!(passed.unwrap(), 27, "cut at {cut}");
        assert_eq!(client.bytes, b"hello world0123456789abcdef", "cut at {cut}");
        assert!(upstream.buffered().is_empty(), "cut at {cut}");
    }
}
