//! Runs the load: worker threads, the connections on them, the closed and open models.
//!
//! Like wrk, each worker thread runs its own single-threaded tokio runtime with its share of
//! the connections, and each connection is one task; a thread's connections record into the
//! thread's own `Recorder`, so the hot path takes no lock and no atomic (beyond the request
//! counter of `--requests`). The main thread collects each finished second and, at the end,
//! the threads' whole-run figures.
//!
//! The models:
//! - closed: each connection sends its next request as soon as the previous response is read
//!   (with `--h2 --streams S`, S such loops share a connection);
//! - open: the total `--rate` is split evenly over the connections, each connection's sends
//!   are scheduled at fixed intended times, staggered between connections, and latency is
//!   measured from the intended time — so time a connection spent stuck behind a slow response
//!   is counted for every request that should have gone out meanwhile (coordinated-omission
//!   correction, as wrk2 does). When the connection was idle at the intended time, latency
//!   starts when the timer actually fired instead: tokio's timer fires up to a millisecond
//!   late, and that lateness is ours, not the server's. Over HTTP/1.1 a connection carries one
//!   request at a time, so a rate needs enough connections; over HTTP/2 each send is its own
//!   stream and never waits for the previous one.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use tokio::task::{JoinSet, LocalSet};
use tokio::time::Sleep;

use crate::Error;
use crate::collect::{Collector, Measured};
use crate::config::{Config, Limit, Protocol};
use crate::connect::{Endpoint, Response, Sender, Unanswered};
use crate::failure::Failure;
use crate::schedule::Schedule;
use crate::stats::Recorder;

/// After a failed connect, wait this long before the next try, so that a closed port does not
/// turn the run into a busy loop.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// How often an idle thread hands its finished second to the collector.
const TICK: Duration = Duration::from_millis(100);

/// What every worker thread shares, read-only but for the request counter.
#[derive(Debug)]
struct Shared {
    endpoints: Vec<Endpoint>,
    schedule: Schedule,
    rate: Option<f64>,
    connections: usize,
    streams: usize,
    protocol: Protocol,
    /// `--requests N`: how many sends have been claimed.
    requests: Option<u64>,
    issued: AtomicU64,
    /// The start of the run, set once every thread has opened its connections.
    t0: OnceLock<Instant>,
}

impl Shared {
    /// Claims one of the `--requests`.
    fn ticket(&self) -> bool {
        match self.requests {
            None => true,
            Some(n) => self.issued.fetch_add(1, Ordering::Relaxed) < n,
        }
    }
}

/// Resolves each target and opens one connection to it, so that a bad host, a closed port or
/// a TLS failure stops the run with a clear message before any load is sent.
pub async fn probe(config: &Config) -> Result<Vec<Endpoint>, Error> {
    let mut endpoints = vec![Endpoint::build(&config.target, config).await?];
    if let Some(baseline) = &config.baseline {
        endpoints.push(Endpoint::build(baseline, config).await?);
    }
    for ep in &endpoints {
        if let Err(e) = ep.connect().await {
            let url = ep.target.url.clone();
            return Err(match e.kind {
                Failure::Tls => Error::Tls {
                    url,
                    message: e.message,
                },
                Failure::Connect | Failure::Timeout => Error::Connect {
                    url,
                    addr: ep.addr,
                    message: e.message,
                },
                Failure::Reset | Failure::Protocol => Error::Protocol {
                    url,
                    message: e.message,
                },
            });
        }
    }
    Ok(endpoints)
}

/// Runs the whole load against already-probed endpoints.
pub fn run(config: &Config, endpoints: Vec<Endpoint>) -> Result<Measured, Error> {
    let schedule = Schedule::build(config.limit, config.warmup, config.baseline.is_some());
    let targets = endpoints.len();
    let shared = Arc::new(Shared {
        endpoints,
        schedule,
        rate: config.rate,
        connections: config.connections,
        streams: config.streams,
        protocol: config.protocol,
        requests: match config.limit {
            Limit::Requests(n) => Some(n),
            Limit::Duration(_) => None,
        },
        issued: AtomicU64::new(0),
        t0: OnceLock::new(),
    });
    // Connection k of target t goes to thread (t * C + k) mod T: every thread gets an even
    // share of each target.
    let threads = config.threads.max(1);
    let mut jobs: Vec<Vec<(usize, usize)>> = vec![Vec::new(); threads];
    for t in 0..targets {
        for k in 0..config.connections {
            jobs[(t * config.connections + k) % threads].push((t, k));
        }
    }
    let (tx, rx) = mpsc::channel();
    // Every thread opens its connections, then all start together.
    let connected = Arc::new(Barrier::new(threads + 1));
    let started = Arc::new(Barrier::new(threads + 1));
    let mut handles = Vec::new();
    for (thread, jobs) in jobs.into_iter().enumerate() {
        let shared = shared.clone();
        let tx = tx.clone();
        let (connected, started) = (connected.clone(), started.clone());
        let handle = std::thread::Builder::new()
            .name(format!("ferry-load-{thread}"))
            .spawn(move || worker(thread, jobs, shared, tx, &connected, &started))
            .map_err(Error::Runtime)?;
        handles.push(handle);
    }
    drop(tx);
    connected.wait();
    let t0 = Instant::now();
    let _ = shared.t0.set(t0);
    started.wait();

    let mut collector = Collector::new(
        threads,
        targets,
        shared.schedule.phases.len(),
        config.progress,
    );
    for message in rx {
        collector.handle(message);
    }
    let mut failed = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = Some(e),
            Err(_) => {
                failed = Some(Error::Runtime(std::io::Error::other(
                    "a worker thread panicked",
                )))
            }
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(collector.finish(t0, &shared.schedule))
}

fn worker(
    thread: usize,
    jobs: Vec<(usize, usize)>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<crate::stats::Message>,
    connected: &Barrier,
    started: &Barrier,
) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            // The others wait for us at the barriers; let them go, then fail the run.
            connected.wait();
            started.wait();
            return Err(Error::Runtime(e));
        }
    };
    let local = LocalSet::new();
    // Open this thread's connections before the clock starts; one that fails is retried (and
    // counted) during the run.
    let senders: Vec<Option<Sender>> = local.block_on(&runtime, async {
        let mut set = JoinSet::new();
        for (i, &(target, _)) in jobs.iter().enumerate() {
            let shared = shared.clone();
            set.spawn_local(async move { (i, shared.endpoints[target].connect().await.ok()) });
        }
        let mut senders: Vec<Option<Sender>> = (0..jobs.len()).map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            if let Ok((i, sender)) = joined {
                senders[i] = sender;
            }
        }
        senders
    });
    connected.wait();
    started.wait();
    let Some(&t0) = shared.t0.get() else {
        return Err(Error::Runtime(std::io::Error::other(
            "the run did not start",
        )));
    };
    let recorder = Rc::new(RefCell::new(Recorder::new(
        thread,
        t0 + shared.schedule.measure_start,
        shared.endpoints.len(),
        shared.schedule.phases.len(),
        tx,
    )));
    local.block_on(&runtime, async {
        let ticker = {
            let recorder = recorder.clone();
            tokio::task::spawn_local(async move {
                let mut tick = tokio::time::interval(TICK);
                loop {
                    tick.tick().await;
                    recorder.borrow_mut().roll(Instant::now());
                }
            })
        };
        let mut set = JoinSet::new();
        for ((target, index), sender) in jobs.into_iter().zip(senders) {
            set.spawn_local(connection(
                shared.clone(),
                recorder.clone(),
                target,
                index,
                sender,
                t0,
            ));
        }
        while set.join_next().await.is_some() {}
        ticker.abort();
    });
    recorder.borrow_mut().finish();
    Ok(())
}

/// One phase as a connection sees it.
#[derive(Debug)]
struct Ctx {
    shared: Arc<Shared>,
    recorder: Rc<RefCell<Recorder>>,
    target: usize,
    /// This connection's index among the target's connections (for the open model's stagger).
    index: usize,
    start: Instant,
    end: Option<Instant>,
    measure: bool,
}

impl Ctx {
    fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoints[self.target]
    }

    /// Whether one more request may go out now.
    fn may_send(&self, now: Instant) -> bool {
        match self.end {
            Some(end) => now < end,
            None => self.shared.ticket(),
        }
    }

    fn record(&self, start: Instant, result: Result<Response, Failure>) {
        if !self.measure {
            return;
        }
        let now = Instant::now();
        let mut recorder = self.recorder.borrow_mut();
        match result {
            Ok(r) => recorder.response(self.target, now, start, r.status.as_u16(), r.bytes),
            Err(kind) => recorder.failure(self.target, now, kind),
        }
    }

    /// After a failed connect, pause briefly (never past the phase's end).
    async fn backoff(&self, result: &Result<Response, Failure>) {
        if let Err(Failure::Connect | Failure::Tls) = result {
            let until = Instant::now() + RECONNECT_BACKOFF;
            let until = self.end.map_or(until, |end| until.min(end));
            tokio::time::sleep_until(until.into()).await;
        }
    }
}

/// One load connection through all the phases of its target.
async fn connection(
    shared: Arc<Shared>,
    recorder: Rc<RefCell<Recorder>>,
    target: usize,
    index: usize,
    sender: Option<Sender>,
    t0: Instant,
) {
    let phases: Vec<_> = shared.schedule.of(target).map(|(i, p)| (i, *p)).collect();
    let mut link = match shared.protocol {
        Protocol::Http1 => Link::Serial(Conn::new(sender)),
        Protocol::Http2 => Link::Shared(Rc::new(Slot::new(sender))),
    };
    for (i, phase) in phases {
        let start = t0 + phase.start;
        tokio::time::sleep_until(start.into()).await;
        let ctx = Rc::new(Ctx {
            shared: shared.clone(),
            recorder: recorder.clone(),
            target,
            index,
            start,
            end: phase.end.map(|e| t0 + e),
            measure: phase.measure,
        });
        match (&mut link, shared.rate) {
            (Link::Serial(conn), None) => closed_serial(&ctx, conn).await,
            (Link::Serial(conn), Some(rate)) => open_serial(&ctx, conn, rate).await,
            (Link::Shared(slot), None) => closed_streams(&ctx, slot).await,
            (Link::Shared(slot), Some(rate)) => open_multiplexed(&ctx, slot, rate).await,
        }
        recorder.borrow_mut().phase_done(i, Instant::now());
    }
}

/// A connection as the models use it: HTTP/1.1 has one owner, HTTP/2 is shared by streams.
#[derive(Debug)]
enum Link {
    Serial(Conn),
    Shared(Rc<Slot>),
}

/// An HTTP/1.1 connection, reopened when it breaks.
#[derive(Debug)]
struct Conn {
    sender: Option<Sender>,
    /// The timeout of the request in flight. One timer per connection, pushed forward for
    /// each request: tokio extends a timer in place, where a fresh one per request would be
    /// registered and removed each time.
    deadline: Pin<Box<Sleep>>,
}

impl Conn {
    fn new(sender: Option<Sender>) -> Conn {
        Conn {
            sender,
            deadline: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }

    /// One request and its whole response, within the timeout (which includes a reconnect).
    async fn exchange(&mut self, ep: &Endpoint) -> Result<Response, Failure> {
        self.deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + ep.timeout());
        let result = tokio::select! {
            biased;
            result = exchange(&mut self.sender, ep) => result,
            () = &mut self.deadline => Err(Failure::Timeout),
        };
        if result.is_err() {
            // The connection's state is unknown (a late response may still arrive): drop it.
            self.sender = None;
        }
        result
    }
}

async fn exchange(sender: &mut Option<Sender>, ep: &Endpoint) -> Result<Response, Failure> {
    // A connection the server closed (`Connection: close`, a body read to its end) is
    // reopened, not counted as a failure; so is one it closed while idle (a keep-alive
    // timeout) just as the request went out, which shows as stale: at most once, as the
    // second try is on a fresh connection.
    for retry in [false, true] {
        let sender = match sender {
            Some(s) if !s.is_closed() => s,
            _ => sender.insert(ep.connect().await.map_err(|e| e.kind)?),
        };
        match sender.send(ep).await {
            Ok(response) => return Ok(response),
            Err(Unanswered::Failed(kind)) => return Err(kind),
            Err(Unanswered::Stale) if retry => return Err(Failure::Reset),
            Err(Unanswered::Stale) => {}
        }
    }
    Err(Failure::Reset)
}

/// An HTTP/2 connection shared by many streams; the first stream to find it broken reopens
/// it while the others wait.
#[derive(Debug)]
struct Slot {
    sender: RefCell<Option<Sender>>,
    connecting: tokio::sync::Mutex<()>,
}

impl Slot {
    fn new(sender: Option<Sender>) -> Slot {
        Slot {
            sender: RefCell::new(sender),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    fn live(&self) -> Option<Sender> {
        self.sender
            .borrow()
            .as_ref()
            .filter(|s| !s.is_closed())
            .and_then(Sender::share)
    }

    async fn get(&self, ep: &Endpoint) -> Result<Sender, Failure> {
        if let Some(s) = self.live() {
            return Ok(s);
        }
        let _turn = self.connecting.lock().await;
        if let Some(s) = self.live() {
            return Ok(s);
        }
        let fresh = ep.connect().await.map_err(|e| e.kind)?;
        let shared = fresh.share();
        *self.sender.borrow_mut() = Some(fresh);
        shared.ok_or(Failure::Protocol)
    }

    async fn exchange(&self, ep: &Endpoint) -> Result<Response, Failure> {
        let work = async {
            let mut sender = self.get(ep).await?;
            // An HTTP/2 send is never stale: a closed connection fails the stream.
            sender.send(ep).await.map_err(|e| match e {
                Unanswered::Failed(kind) => kind,
                Unanswered::Stale => Failure::Reset,
            })
        };
        match tokio::time::timeout(ep.timeout(), work).await {
            Ok(result) => result,
            // Dropping the stream resets it; the connection itself is fine.
            Err(_) => Err(Failure::Timeout),
        }
    }
}

async fn closed_serial(ctx: &Ctx, conn: &mut Conn) {
    while ctx.may_send(Instant::now()) {
        let start = Instant::now();
        let result = conn.exchange(ctx.endpoint()).await;
        ctx.record(start, result);
        ctx.backoff(&result).await;
    }
}

async fn closed_streams(ctx: &Rc<Ctx>, slot: &Rc<Slot>) {
    let mut set = JoinSet::new();
    for _ in 0..ctx.shared.streams {
        let (ctx, slot) = (ctx.clone(), slot.clone());
        set.spawn_local(async move {
            while ctx.may_send(Instant::now()) {
                let start = Instant::now();
                let result = slot.exchange(ctx.endpoint()).await;
                ctx.record(start, result);
                ctx.backoff(&result).await;
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// The open model's timetable for one connection in one phase.
#[derive(Debug)]
struct Timetable {
    next: Instant,
    interval: Duration,
}

impl Timetable {
    fn new(ctx: &Ctx, rate: f64) -> Timetable {
        let connections = ctx.shared.connections as f64;
        Timetable {
            next: ctx.start + Duration::from_secs_f64(ctx.index as f64 / rate),
            interval: Duration::from_secs_f64(connections / rate),
        }
    }

    /// Waits for the next intended send time and returns when latency starts counting, or
    /// `None` when the phase is over (counting the sends it had no time left for as missed).
    async fn next(&mut self, ctx: &Ctx) -> Option<Instant> {
        let intended = self.next;
        if ctx.end.is_some_and(|end| intended >= end) {
            return None;
        }
        let now = Instant::now();
        if let Some(end) = ctx.end
            && now >= end
        {
            let behind = (end - intended).as_secs_f64() / self.interval.as_secs_f64();
            if ctx.measure {
                ctx.recorder
                    .borrow_mut()
                    .missed(ctx.target, behind.ceil() as u64);
            }
            return None;
        }
        if ctx.end.is_none() && !ctx.shared.ticket() {
            return None;
        }
        self.next += self.interval;
        if now < intended {
            tokio::time::sleep_until(intended.into()).await;
            // Idle at the intended time: only the server's delay counts, not our timer's.
            Some(Instant::now())
        } else {
            // Late because the connection was busy: count from when it should have gone.
            Some(intended)
        }
    }
}

async fn open_serial(ctx: &Ctx, conn: &mut Conn, rate: f64) {
    let mut timetable = Timetable::new(ctx, rate);
    while let Some(start) = timetable.next(ctx).await {
        let result = conn.exchange(ctx.endpoint()).await;
        ctx.record(start, result);
    }
}

async fn open_multiplexed(ctx: &Rc<Ctx>, slot: &Rc<Slot>, rate: f64) {
    let mut timetable = Timetable::new(ctx, rate);
    let mut set = JoinSet::new();
    while let Some(start) = timetable.next(ctx).await {
        let (ctx, slot) = (ctx.clone(), slot.clone());
        set.spawn_local(async move {
            let result = slot.exchange(ctx.endpoint()).await;
            ctx.record(start, result);
        });
        // Finished streams leave a result behind until joined; keep the set small.
        while set.try_join_next().is_some() {}
    }
    while set.join_next().await.is_some() {}
}
