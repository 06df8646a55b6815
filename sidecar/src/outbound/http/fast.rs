//! Outbound HTTP/1.1 on the fast path ([`crate::fast`]): each request of the app's connection
//! balanced on its own over the destination's endpoints, sent over a connection to the chosen
//! endpoint (mTLS expecting its identity, or plaintext to one without) that this connection
//! keeps (a few, by endpoint) and, when it closes, parks for the next of the app's
//! connections; tried again on another endpoint when that is safe and the retry budget allows.
//! The steps are hyper's path's ([`super::handle`]): the same answers, the same metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ferry_proxy::h1::pool::{Kept, MAX_KEPT, Parking};
use ferry_proxy::h1::relay::Error as RelayError;
use ferry_proxy::h1::rewind::Rewind;
use ferry_proxy::h1::write::pass_request_head;
use ferry_proxy::h1::{Malformed, RequestHead};
use ferry_proxy::health::AttemptOutcome;
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite};

use super::super::service_of;
use super::Conn;
use crate::discover::Service;
use crate::fast::{self, Next, Request};
use crate::metrics::{Direction, HttpMetrics};
use crate::upstream;
use ferry_model::mesh::WorkloadId;

/// One app connection's state on the fast path.
struct Client<I> {
    conn: fast::Conn<I>,
    /// Idle endpoint connections, a few by endpoint.
    kept: Kept<upstream::Conn>,
    /// The destination answer the metric handles below were resolved under.
    resolved_for: Option<Arc<Service>>,
    /// Per endpoint: the identity it must prove (none: plaintext), and its request metrics
    /// (peer and route labels), resolved at its first request under the answer (at most
    /// [`MAX_KEPT`]).
    resolved: Vec<(SocketAddr, Option<WorkloadId>, Arc<HttpMetrics>)>,
}

/// Serves the app connection's HTTP/1.1 requests until it ends; returns it, with the bytes
/// read, when hyper's path is to serve the rest.
pub(super) async fn serve<I>(conn: &Conn, io: I) -> Option<Rewind<I>>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut client = Client {
        conn: fast::Conn::new(io),
        kept: Kept::default(),
        resolved_for: None,
        resolved: Vec::with_capacity(MAX_KEPT),
    };
    let mut handoff = false;
    while client.conn.next().await {
        match request(conn, &mut client).await {
            Next::KeepAlive => {}
            Next::Close => break,
            Next::Handoff => {
                handoff = true;
                break;
            }
        }
    }
    client.kept.park(&conn.shared.parking);
    if handoff {
        return Some(client.conn.into_rewind());
    }
    client.conn.close().await;
    None
}

/// The endpoints one request may try: more than the gateway's 3, as hyper's path here tried
/// every endpoint the retry budget allowed (with 5 endpoints of which 4 refuse connections,
/// the fifth is reached).
const MAX_ATTEMPTS: usize = 8;

/// One request, its head buffered whole.
async fn request<I>(conn: &Conn, client: &mut Client<I>) -> Next
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let metrics = &conn.shared.metrics;
    let decided = match client.conn.client.request() {
        Ok(head) if !fast::served(&head) => return Next::Handoff,
        Ok(head) => decide(&head, &mut client.conn.request_head),
        Err(RelayError::Malformed(_, m)) => Err((m, false)),
        Err(_) => return Next::Close,
    };
    let request = match decided {
        Ok(request) => request,
        Err((m, head_only)) => {
            client.conn.refuse(m, head_only).await;
            return Next::Close;
        }
    };
    client.conn.client.consume(request.head_len);
    let close = request.closes_after_own();
    let replayable = request.replayable();
    let Request {
        framing,
        head_only,
        idempotent,
        ..
    } = request;
    let Some(service) = service_of(&conn.answers) else {
        metrics.outbound_http(None, None).observe(Some(503), 0.0);
        let text = "the destination is no longer a Service\n";
        return client
            .conn
            .answer(StatusCode::SERVICE_UNAVAILABLE, text, close, head_only)
            .await;
    };
    let budget = service.balancer.retry_budget();
    budget.deposit(Instant::now());
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut tried = [unspecified; MAX_ATTEMPTS];
    let mut attempts = 0;
    let mut last: Option<AttemptOutcome> = None;
    // A request without a body on a reused connection the endpoint closed (as keep-alives
    // end) goes once more on a new one, without counting against the endpoint.
    let mut stale_retry = replayable && idempotent;
    let may_retry = |outcome: AttemptOutcome, attempts: usize| {
        replayable
            && outcome.retry_safe(idempotent)
            && attempts < MAX_ATTEMPTS
            && budget.try_withdraw(Instant::now())
    };
    loop {
        let Some(pick) = service
            .balancer
            .pick(None, &tried[..attempts], Instant::now())
        else {
            metrics
                .outbound_http(None, Some(&service.name))
                .observe(None, start.elapsed().as_secs_f64());
            let (status, text) = match last {
                Some(outcome) => failed(outcome),
                None => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the Service has no endpoints\n",
                ),
            };
            return client.conn.answer(status, text, close, head_only).await;
        };
        let addr = pick.addr();
        let (slot, handles) = client.resolve(conn, &service, addr);
        let expected = &client.resolved[slot].1;
        if expected.is_none() {
            metrics.plaintext(Direction::Outbound, "unmeshed_endpoint");
        }
        let observe = |status: Option<u16>| handles.observe(status, start.elapsed().as_secs_f64());
        // A connection made to another identity (or in plaintext) than the endpoint's now is
        // not used: the address was listed anew.
        let kept = client
            .kept
            .take(addr, &conn.shared.parking)
            .filter(|up| up.io.get_ref().identity() == expected.as_ref());
        let (mut up, reused) = match kept {
            Some(up) => (up, true),
            None => match conn.shared.connector.open(addr, expected.as_ref()).await {
                Ok(opened) => (fast::upstream(opened), false),
                Err(e) => {
                    tracing::info!(endpoint = %addr, service = %service.name, error = %e, "connect failed");
                    pick.finish(AttemptOutcome::ConnectError, Instant::now());
                    tried[attempts] = addr;
                    attempts += 1;
                    last = Some(AttemptOutcome::ConnectError);
                    if may_retry(AttemptOutcome::ConnectError, attempts) {
                        continue;
                    }
                    observe(None);
                    let (status, text) = failed(AttemptOutcome::ConnectError);
                    return client.conn.answer(status, text, close, head_only).await;
                }
            },
        };
        // From the request going out to its answer's head, as hyper's path's timeout; the
        // answer's body then takes what it takes.
        let within = Some(conn.shared.config.response_timeout);
        match client
            .conn
            .exchange(&mut up, &framing, head_only, within)
            .await
        {
            Ok(begun) => {
                let status = begun.status();
                pick.finish(AttemptOutcome::from_status(status), Instant::now());
                observe(Some(status));
                let (next, reusable) = client.conn.finish(&mut up, begun).await;
                if reusable {
                    client.kept.keep(addr, up, &conn.shared.parking);
                }
                return next;
            }
            Err(failure) if reused && stale_retry && failure.stale() => {
                stale_retry = false;
                drop(pick);
            }
            Err(failure) if failure.clients() => {
                // Nothing counts against the endpoint; what went upstream is cut off.
                drop(pick);
                observe(None);
                tracing::debug!(error = %failure.error, "the app's request broke off");
                return Next::Close;
            }
            Err(failure) => {
                let outcome = if failure.error.timed_out() {
                    AttemptOutcome::Timeout
                } else {
                    AttemptOutcome::Reset
                };
                tracing::info!(endpoint = %addr, service = %service.name, error = %failure.error, "attempt failed");
                pick.finish(outcome, Instant::now());
                tried[attempts] = addr;
                attempts += 1;
                last = Some(outcome);
                if !failure.answered && may_retry(outcome, attempts) {
                    continue;
                }
                observe(None);
                let (status, text) = failed(outcome);
                let close = close || !failure.whole;
                return client.conn.answer(status, text, close, head_only).await;
            }
        }
    }
}

impl<I> Client<I> {
    /// Where in [`Client::resolved`] `addr` is (its identity), and the metrics of requests
    /// to it under `service`: resolved once per endpoint and destination answer (a new answer
    /// may change identities).
    fn resolve(
        &mut self,
        conn: &Conn,
        service: &Arc<Service>,
        addr: SocketAddr,
    ) -> (usize, Arc<HttpMetrics>) {
        if !self
            .resolved_for
            .as_ref()
            .is_some_and(|known| Arc::ptr_eq(known, service))
        {
            self.resolved.clear();
            self.resolved_for = Some(service.clone());
        }
        if let Some(slot) = self.resolved.iter().position(|(at, ..)| *at == addr) {
            return (slot, self.resolved[slot].2.clone());
        }
        let expected = conn.shared.connector.identities.get(&addr);
        let peer = expected.as_ref().map(ToString::to_string);
        let handles = conn
            .shared
            .metrics
            .outbound_http(peer.as_deref(), Some(&service.name));
        if self.resolved.len() == MAX_KEPT {
            self.resolved.remove(0);
        }
        self.resolved.push((addr, expected, handles.clone()));
        (self.resolved.len() - 1, handles)
    }
}

/// The request's framing and its head as the endpoint gets it (hop-by-hop headers out), or
/// why it is refused and whether it was a HEAD.
fn decide(head: &RequestHead<'_>, out: &mut Vec<u8>) -> Result<Request, (Malformed, bool)> {
    let request = Request::of(head)?;
    let target = fast::target(head);
    pass_request_head(
        out,
        head,
        target.as_bytes(),
        &request.framing,
        |_| false,
        b"",
    );
    Ok(request)
}

/// The answer when the last attempt failed with `outcome`.
pub(super) fn failed(outcome: AttemptOutcome) -> (StatusCode, &'static str) {
    match outcome {
        AttemptOutcome::Timeout => (
            StatusCode::GATEWAY_TIMEOUT,
            "the endpoint did not answer in time\n",
        ),
        _ => (
            StatusCode::BAD_GATEWAY,
            "the endpoint could not be reached\n",
        ),
    }
}

/// The sweep of the outbound side's parked connections: every idle limit while the side
/// lives.
pub(in crate::outbound) fn sweep(parking: &Arc<Parking<upstream::Conn>>) {
    let weak = Arc::downgrade(parking);
    let period = parking.limit();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            match weak.upgrade() {
                Some(parking) => parking.sweep(),
                None => return,
            }
        }
    });
}
