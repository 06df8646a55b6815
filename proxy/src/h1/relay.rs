//! The I/O of HTTP/1 exchanges on the fast path (issue 18): the codec's heads, framing and
//! bodies over real connections, for a per-connection loop that owns both sides.
//!
//! A [`Side`] is one connection and the buffer its bytes arrive in, reused for every message
//! (heads are parsed in place there, bodies pass through it). An exchange, as the loop runs it:
//!
//! 1. [`Side::read_head`] on the client, [`Side::request`] to parse it in place, the caller
//!    routes on the borrowed head and edits it ([`super::write::request_head`]), then
//!    [`Side::consume`]s it;
//! 2. [`send_request`]: the edited head with the body's first buffered bytes in one vectored
//!    write, then the rest of the body as it comes, delimited by its framing, never
//!    re-chunked (`100 Continue` first when the client waits for it, as hyper's server does
//!    when a body is first read);
//! 3. [`relay_response`]: the upstream's head (interim 1xx answers dropped, as hyper's client
//!    does), edited ([`super::write::response_head`]) and sent with its first body bytes in
//!    one write, the body passed as framed; a WebSocket switch left for [`tunnel`].
//!
//! [`exchange`] is steps 2 and the start of 3 as the gateway and the sidecar run them (an
//! upstream's early answer passed on), [`finish_response`] the rest.
//!
//! What follows a message in a buffer stays there: the next pipelined request, or a
//! tunnel's first bytes. The request body is sent whole before the answer is read, as nginx
//! does with its request buffering off, but for an upstream that answers early: one that
//! begins its answer (or closes) while it takes no more of the body stops the sending
//! ([`Error::AnsweredEarly`]) and its answer is passed on.
//!
//! The framing of the answer is passed on as it came: a chunked answer goes to the client
//! chunked; but to an HTTP/1.0 client, which cannot read chunks, as its content alone, ended by
//! the close.
//! Timeouts are the caller's (it wraps each step); so are the answers of its own (404, 502).
//!
//! What it may touch: the two connections it is handed, their buffers.

use std::io;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::Malformed;
use super::body::Delimiter;
use super::framing::{self, Body, ResponseFraming};
use super::quiet::Quiet;
use super::write;

mod side;
pub use side::Side;

/// How long an answer's head is awaited before the client is watched for leaving.
const CLIENT_WATCH_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// `100 Continue`, for a client that waits for it before sending its body.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Which end of the exchange a failure is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Client,
    Upstream,
}

impl Peer {
    fn other(self) -> Peer {
        match self {
            Peer::Client => Peer::Upstream,
            Peer::Upstream => Peer::Client,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Peer::Client => "client",
            Peer::Upstream => "upstream",
        })
    }
}

/// Why an exchange stopped: the side it failed on, and how. Either way the connection that
/// failed cannot carry another message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading from the {0}: {1}")]
    Read(Peer, #[source] io::Error),
    #[error("writing to the {0}: {1}")]
    Write(Peer, #[source] io::Error),
    /// The connection ended where a message or its end was due.
    #[error("the {0} closed the connection mid-message")]
    Closed(Peer),
    #[error("the {0}'s message is malformed: {1}")]
    Malformed(Peer, #[source] Malformed),
    /// The client's body has more content than the limit it was sent with.
    #[error("the request body is larger than the limit")]
    TooLarge,
    /// The upstream began to answer (or closed) while the request's body was still on its way
    /// and it took no more of it (a 413, a 401): what it sent is buffered for
    /// [`start_response`], and the rest of the body is not sent.
    #[error("the upstream answered before the request's body was sent whole")]
    AnsweredEarly,
    /// The client closed its connection while its answer was awaited (nginx's 499).
    #[error("the client closed its connection before its answer came")]
    ClientGone,
}

impl Error {
    /// The side whose fault it is.
    pub fn peer(&self) -> Peer {
        match self {
            Error::Read(p, _) | Error::Write(p, _) | Error::Closed(p) | Error::Malformed(p, _) => {
                *p
            }
            Error::TooLarge | Error::ClientGone => Peer::Client,
            Error::AnsweredEarly => Peer::Upstream,
        }
    }

    /// Whether it is a read or a write that took longer than its limit (an
    /// `io::ErrorKind::TimedOut`, as [`super::quiet::Quiet`] reports it).
    pub fn timed_out(&self) -> bool {
        matches!(self, Error::Read(_, e) | Error::Write(_, e) if e.kind() == io::ErrorKind::TimedOut)
    }
}

/// How an answer went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    /// Passed on whole.
    Message {
        status: u16,
        /// The client connection may carry another request (the client's wish, and an
        /// answer whose end the client can tell without a close).
        client_keep_alive: bool,
        /// The upstream connection may carry another request.
        upstream_keep_alive: bool,
        /// Body bytes passed on: as framed, or the content alone to an HTTP/1.0 client.
        body_bytes: u64,
    },
    /// A `101 Switching Protocols` went to the client: both connections are a tunnel now
    /// ([`tunnel`]).
    Switched,
}

/// How far [`relay_response`] got: what the caller may still do when it fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The final answer's status, once its head came: the request is answered, not to be
    /// sent again.
    pub status: Option<u16>,
    /// Something went to the client: the client's answer has begun.
    pub sent: bool,
}

/// What the answer depends on of the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asked {
    /// A HEAD request: its answer has no body whatever it says.
    pub head: bool,
    /// A WebSocket upgrade: only then may the answer be a switch.
    pub upgrade: bool,
    /// The client may send another request after this one.
    pub keep_alive: bool,
    /// An HTTP/1.0 client: a chunked answer goes to it without its framing, ended by the
    /// close, and a kept connection says so (`Connection: keep-alive`).
    pub http10: bool,
}

/// Sends the edited request `head` upstream with the body `client` has buffered after the
/// request head (already consumed), then the rest of the body as it arrives, delimited by
/// `body` and never re-chunked, the upstream watched for an early answer meanwhile; what
/// follows the body stays buffered in `client`. With
/// `expect_continue`, `100 Continue` goes to the client first when none of the body came yet.
/// A body with more content than `max_body` is cut there with [`Error::TooLarge`] (a length
/// past it is refused before anything is sent). Returns the body bytes passed on.
pub async fn send_request<C, U>(
    client: &mut Side<C>,
    upstream: &mut Side<U>,
    head: &[u8],
    body: Body,
    expect_continue: bool,
    max_body: u64,
) -> Result<u64, Error>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    if matches!(body, Body::Length(n) if n > max_body) {
        return Err(Error::TooLarge);
    }
    let mut delimiter = Delimiter::new(body);
    if expect_continue && !delimiter.is_done() && client.buffered().is_empty() {
        client
            .io
            .write_all(CONTINUE)
            .await
            .map_err(|e| Error::Write(Peer::Client, e))?;
    }
    let first = first_piece(client, &mut delimiter)?;
    if delimiter.data() > max_body {
        return Err(Error::TooLarge);
    }
    write::send(&mut upstream.io, head, &client.buffered()[..first])
        .await
        .map_err(|e| Error::Write(Peer::Upstream, e))?;
    client.consume(first);
    let rest = if delimiter.is_done() {
        0
    } else {
        pass_request_body(client, upstream, &mut delimiter, max_body).await?
    };
    upstream
        .io
        .flush()
        .await
        .map_err(|e| Error::Write(Peer::Upstream, e))?;
    Ok(first as u64 + rest)
}

/// [`pass_body`] for a request's body, with the upstream watched while it takes no more of
/// it and while the client is slow to send more; interim answers are dropped. An upstream
/// that answers while it takes no more of the body, or that answers with a refusal (4xx,
/// 5xx) while the client is slow, or that closes, stops the sending ([`Error::AnsweredEarly`];
/// what it sent stays buffered for [`start_response`]): one that refuses a large upload (413)
/// and stops reading would otherwise hold the exchange until the send timeout, and one that
/// refuses a slow upload would wait for all of it. Another answer while the client is slow
/// lets the body go on as long as the upstream takes it. A read timeout ends the watch.
async fn pass_request_body<C, U>(
    client: &mut Side<C>,
    upstream: &mut Side<U>,
    delimiter: &mut Delimiter,
    limit: u64,
) -> Result<u64, Error>
where
    C: AsyncRead + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut passed = 0u64;
    let mut watching = true;
    // A final answer that does not refuse the body came while the client was slow: the body
    // goes on while the upstream takes it, the answer held past its head.
    let mut answered = false;
    while !delimiter.is_done() {
        if client.buffered().is_empty() {
            // What went out so far leaves before the wait (TLS holds it until flushed).
            upstream
                .io
                .flush()
                .await
                .map_err(|e| Error::Write(Peer::Upstream, e))?;
            // The upstream is watched while the client is slow to send, too: an answer
            // (a 401 to an upload) is heard then, not once the client has sent it all.
            let came = if watching && !answered {
                tokio::select! {
                    biased;
                    came = client.fill() => came?,
                    heard = upstream.fill() => {
                        match heard {
                            Ok(0) => return Err(Error::Closed(Peer::Upstream)),
                            Ok(_) => match upstream.early_answer()? {
                                Some(true) => return Err(Error::AnsweredEarly),
                                Some(false) => answered = true,
                                None => {}
                            },
                            Err(e) if e.timed_out() => watching = false,
                            Err(e) => return Err(e),
                        }
                        continue;
                    }
                }
            } else {
                client.fill().await?
            };
            if came == 0 {
                // The end of the stream: the end of a body until close, else a cut one.
                return match delimiter.finish() {
                    Ok(()) => Ok(passed),
                    Err(_) => Err(Error::Closed(Peer::Client)),
                };
            }
        }
        let used = first_piece(client, delimiter)?;
        if delimiter.data() > limit {
            return Err(Error::TooLarge);
        }
        let mut piece = &client.buffered()[..used];
        while !piece.is_empty() {
            let n = std::future::poll_fn(|cx| {
                if let Poll::Ready(written) = Pin::new(&mut upstream.io).poll_write(cx, piece) {
                    return Poll::Ready(written.map_err(|e| Error::Write(Peer::Upstream, e)));
                }
                // An upstream that answered and takes no more of the body: its answer is
                // passed on now, whatever it is, rather than after the send timeout.
                if answered {
                    return Poll::Ready(Err(Error::AnsweredEarly));
                }
                while watching {
                    match upstream.poll_fill(cx) {
                        Poll::Ready(Err(e)) if e.timed_out() => watching = false,
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err(Error::Closed(Peer::Upstream)));
                        }
                        Poll::Ready(Ok(_)) => match upstream.early_answer() {
                            Ok(Some(_)) => return Poll::Ready(Err(Error::AnsweredEarly)),
                            Ok(None) => {}
                            Err(e) => return Poll::Ready(Err(e)),
                        },
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => break,
                    }
                }
                Poll::Pending
            })
            .await?;
            if n == 0 {
                return Err(Error::Write(
                    Peer::Upstream,
                    io::ErrorKind::WriteZero.into(),
                ));
            }
            piece = &piece[n..];
        }
        client.consume(used);
        passed += used as u64;
    }
    Ok(passed)
}

/// Reads the answer to a request sent with [`send_request`] and passes it to the client:
/// [`start_response`], then [`finish_response`].
pub async fn relay_response<U, C>(
    upstream: &mut Side<U>,
    client: &mut Side<C>,
    asked: Asked,
    extra: &[u8],
    out: &mut Vec<u8>,
    progress: &mut Progress,
) -> Result<Answered, Error>
where
    U: AsyncRead + Unpin,
    C: AsyncRead + AsyncWrite + Unpin,
{
    match start_response(upstream, client, asked, extra, out, progress, &|| false).await? {
        Started::Switched => Ok(Answered::Switched),
        Started::Message(started) => finish_response(upstream, client, started).await,
    }
}

/// What an [`exchange`] needs besides the two connections.
#[derive(Clone, Copy, Debug)]
pub struct Exchange<'a> {
    /// The edited request head to send.
    pub head: &'a [u8],
    pub framing: &'a framing::RequestFraming,
    /// Whether the request is HEAD.
    pub head_only: bool,
    /// Request body content past this is refused ([`Error::TooLarge`]).
    pub max_body: u64,
    /// Field lines of the proxy's own for the answer.
    pub extra: &'a [u8],
}

/// One request and the start of its answer: [`send_request`], then [`start_response`]. An
/// upstream that stops taking the body by closing (not by stalling: that is a timeout) may
/// have answered first (a 413, a 401): its answer, when one came, is the client's, and the
/// client connection closes after it (its body was not read whole). Returns whether the
/// request went upstream whole (else its connection must not carry another), and how the
/// answer started (`progress` says how far it got when it failed).
pub async fn exchange<C, U>(
    client: &mut Side<C>,
    upstream: &mut Side<Quiet<U>>,
    request: Exchange<'_>,
    out: &mut Vec<u8>,
    progress: &mut Progress,
    closing: &(dyn Fn() -> bool + Sync),
) -> (bool, Result<Started, Error>)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let asked = Asked {
        head: request.head_only,
        upgrade: request.framing.upgrade,
        keep_alive: request.framing.keep_alive,
        http10: request.framing.http10,
    };
    let sent = send_request(
        client,
        upstream,
        request.head,
        request.framing.body,
        request.framing.expect_continue,
        request.max_body,
    )
    .await;
    // A read watch armed while the body was on its way is not the answer's.
    upstream.io.restart_read();
    let whole = sent.is_ok();
    let started = match sent {
        Ok(_) => {
            start_response(
                upstream,
                client,
                asked,
                request.extra,
                out,
                progress,
                closing,
            )
            .await
        }
        Err(e @ (Error::Write(Peer::Upstream, _) | Error::AnsweredEarly)) if !e.timed_out() => {
            let early = Asked {
                keep_alive: false,
                ..asked
            };
            start_response(
                upstream,
                client,
                early,
                request.extra,
                out,
                progress,
                closing,
            )
            .await
            .map_err(|_| e)
        }
        Err(e) => Err(e),
    };
    (whole, started)
}

/// An answer whose head went to the client, and what is left of it.
#[derive(Debug)]
pub enum Started {
    /// A `101 Switching Protocols` went to the client: both connections are a tunnel now.
    Switched,
    Message(Message),
}

/// An answer under way: its head and first body bytes sent, the rest to pass.
#[derive(Debug)]
pub struct Message {
    pub status: u16,
    pub client_keep_alive: bool,
    upstream_keep_alive: bool,
    delimiter: Delimiter,
    sent: u64,
    /// A chunked body for an HTTP/1.0 client: passed on without its framing.
    unframed: bool,
}

/// Reads the answer to a request sent with [`send_request`] and starts passing it to the
/// client: its head edited into `out` (hop-by-hop headers out, the field lines of `extra` in,
/// `Connection: close` when the client connection ends after it: the client's wish, an
/// answer until close, or `closing()` when the head is written) and sent with the body's
/// first bytes in one write. Interim answers (`100 Continue` included) are dropped; a switch
/// the request asked for goes to the client with the bytes after it, and the caller runs the
/// [`tunnel`].
///
/// A small answer of known length (up to [`COALESCE_MAX`]) whose body has not come with its
/// head waits for its first bytes before anything is sent, as nginx's buffering does: head and
/// body leave in one write, and an upstream that breaks off before them still leaves the
/// client unanswered, for the caller to answer. `progress` says how far it got when it fails.
pub async fn start_response<U, C>(
    upstream: &mut Side<U>,
    client: &mut Side<C>,
    asked: Asked,
    extra: &[u8],
    out: &mut Vec<u8>,
    progress: &mut Progress,
    closing: &(dyn Fn() -> bool + Sync),
) -> Result<Started, Error>
where
    U: AsyncRead + Unpin,
    C: AsyncRead + AsyncWrite + Unpin,
{
    let method = if asked.head { "HEAD" } else { "GET" };
    // The client is watched while the answer's head is awaited: one that closes its
    // connection meanwhile has left ([`Error::ClientGone`]), as hyper's server and nginx
    // see it; bytes it sends (a pipelined request) stay buffered, and end the watch, as do
    // bytes it sent already. The watch begins once the answer is slow
    // ([`CLIENT_WATCH_AFTER`]): a quick one costs no read of the client.
    let mut can_watch = client.buffered().is_empty();
    let mut watching = false;
    if can_watch {
        client.alarm.set(Instant::now() + CLIENT_WATCH_AFTER);
    }
    loop {
        let read = if can_watch && !watching {
            tokio::select! {
                biased;
                read = upstream.read_head() => read?,
                () = client.alarm.expired() => {
                    watching = true;
                    continue;
                }
            }
        } else if can_watch {
            tokio::select! {
                biased;
                read = upstream.read_head() => read?,
                came = client.fill() => {
                    match came {
                        Ok(0) => return Err(Error::ClientGone),
                        Err(e) if !e.timed_out() => return Err(Error::ClientGone),
                        // More of it, or a read limit that ran out: not a leaving client.
                        _ => can_watch = false,
                    }
                    continue;
                }
            }
        } else {
            upstream.read_head().await?
        };
        if read.is_none() {
            return Err(Error::Closed(Peer::Upstream));
        }
        let head = upstream.response()?;
        let (len, status) = (head.len, head.status);
        let framing = framing::response(&head, method, asked.upgrade)
            .map_err(|e| Error::Malformed(Peer::Upstream, e))?;
        let (body, upstream_keep_alive) = match framing {
            ResponseFraming::Interim => {
                upstream.consume(len);
                continue;
            }
            ResponseFraming::Switch => {
                write::response_head(out, &head, &framing, false, false, b"");
                upstream.consume(len);
                let after = upstream.buffered().len();
                progress.status = Some(status);
                progress.sent = true;
                write::send(&mut client.io, out, upstream.buffered())
                    .await
                    .map_err(|e| Error::Write(Peer::Client, e))?;
                client
                    .io
                    .flush()
                    .await
                    .map_err(|e| Error::Write(Peer::Client, e))?;
                upstream.consume(after);
                return Ok(Started::Switched);
            }
            ResponseFraming::Message { body, keep_alive } => (body, keep_alive),
        };
        // An answer until close ends the client's connection too: that is how it ends; so
        // does a chunked one to an HTTP/1.0 client, which gets the content alone.
        let unframed = asked.http10 && body == Body::Chunked;
        let client_keep_alive =
            asked.keep_alive && body != Body::UntilClose && !unframed && !closing();
        write::response_head(
            out,
            &head,
            &framing,
            !client_keep_alive,
            asked.http10,
            extra,
        );
        upstream.consume(len);
        progress.status = Some(status);
        if unframed {
            // The head alone: [`finish_response`] passes the content.
            progress.sent = true;
            write::send(&mut client.io, out, b"")
                .await
                .map_err(|e| Error::Write(Peer::Client, e))?;
            return Ok(Started::Message(Message {
                status,
                client_keep_alive,
                upstream_keep_alive,
                delimiter: Delimiter::new(body),
                sent: 0,
                unframed,
            }));
        }
        if matches!(body, Body::Length(n) if n <= COALESCE_MAX) && upstream.buffered().is_empty() {
            // The head is in `out`: the buffer may move.
            if upstream.fill().await? == 0 {
                return Err(Error::Closed(Peer::Upstream));
            }
        }
        let mut delimiter = Delimiter::new(body);
        let first = first_piece(upstream, &mut delimiter)?;
        progress.sent = true;
        write::send(&mut client.io, out, &upstream.buffered()[..first])
            .await
            .map_err(|e| Error::Write(Peer::Client, e))?;
        upstream.consume(first);
        return Ok(Started::Message(Message {
            status,
            client_keep_alive,
            upstream_keep_alive,
            delimiter,
            sent: first as u64,
            unframed,
        }));
    }
}

/// Passes the rest of an answer [`start_response`] began, and flushes the client (a TLS
/// connection holds what it was last given until then).
pub async fn finish_response<U, C>(
    upstream: &mut Side<U>,
    client: &mut Side<C>,
    message: Message,
) -> Result<Answered, Error>
where
    U: AsyncRead + Unpin,
    C: AsyncWrite + Unpin,
{
    let Message {
        status,
        client_keep_alive,
        upstream_keep_alive,
        mut delimiter,
        sent,
        unframed,
    } = message;
    let rest = if delimiter.is_done() {
        0
    } else {
        pass(upstream, &mut client.io, &mut delimiter, u64::MAX, unframed).await?
    };
    client
        .io
        .flush()
        .await
        .map_err(|e| Error::Write(Peer::Client, e))?;
    Ok(Answered::Message {
        status,
        client_keep_alive,
        // Bytes after the answer were never asked for: the connection is not trusted.
        upstream_keep_alive: upstream_keep_alive && upstream.buffered().is_empty(),
        body_bytes: sent + rest,
    })
}

/// Answers with a declared length up to this wait for their first body bytes before their
/// head is sent (`crate::response`'s limit for hyper's path).
pub const COALESCE_MAX: u64 = 64 * 1024;

/// How many of `side`'s buffered bytes belong to the body `delimiter` follows.
fn first_piece<S>(side: &Side<S>, delimiter: &mut Delimiter) -> Result<usize, Error> {
    delimiter
        .feed(side.buffered())
        .map(|step| step.used)
        .map_err(|e| Error::Malformed(side.peer, e))
}

/// Passes the rest of a body from `from` to `to`, each read written as it came, up to the
/// body's end; returns the bytes passed. What `from` sends after the body stays buffered.
/// Content past `limit` is not passed: [`Error::TooLarge`].
pub async fn pass_body<R, W>(
    from: &mut Side<R>,
    to: &mut W,
    delimiter: &mut Delimiter,
    limit: u64,
) -> Result<u64, Error>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    pass(from, to, delimiter, limit, false).await
}

/// [`pass_body`], or with `unframed` its content only, without the chunked framing (for an
/// HTTP/1.0 client; the trailers go too). Returns the bytes passed (content bytes when
/// `unframed`).
async fn pass<R, W>(
    from: &mut Side<R>,
    to: &mut W,
    delimiter: &mut Delimiter,
    limit: u64,
    unframed: bool,
) -> Result<u64, Error>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut passed = 0u64;
    while !delimiter.is_done() {
        if from.buffered().is_empty() {
            // What went out so far leaves before the wait (TLS holds it until flushed).
            to.flush()
                .await
                .map_err(|e| Error::Write(from.peer.other(), e))?;
            if from.fill().await? == 0 {
                // The end of the stream: the end of a body until close, else a cut one.
                return match delimiter.finish() {
                    Ok(()) => Ok(passed),
                    Err(_) => Err(Error::Closed(from.peer)),
                };
            }
        }
        // The bytes to write (at the front of the buffered ones) and the bytes they took.
        let (used, taken) = if unframed {
            from.unframe_buffered(delimiter)
                .map_err(|e| Error::Malformed(from.peer, e))?
        } else {
            let used = first_piece(from, delimiter)?;
            (used, used)
        };
        if delimiter.data() > limit {
            return Err(Error::TooLarge);
        }
        if used > 0 {
            to.write_all(&from.buffered()[..used])
                .await
                .map_err(|e| Error::Write(from.peer.other(), e))?;
        }
        from.consume(taken);
        passed += used as u64;
    }
    Ok(passed)
}

/// Runs a switched exchange as a tunnel until either side closes: first what each side had
/// buffered past the switch goes to the other, then bytes both ways as they come. Returns the
/// bytes sent client → upstream and upstream → client after the buffered ones.
pub async fn tunnel<C, U>(client: &mut Side<C>, upstream: &mut Side<U>) -> io::Result<(u64, u64)>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let pending = client.buffered().len();
    upstream.io.write_all(client.buffered()).await?;
    client.consume(pending);
    let pending = upstream.buffered().len();
    client.io.write_all(upstream.buffered()).await?;
    upstream.consume(pending);
    tokio::io::copy_bidirectional(&mut client.io, &mut upstream.io).await
}

#[cfg(test)]
mod tests;
