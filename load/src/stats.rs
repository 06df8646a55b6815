//! What a run measures, in bounded memory: HDR histograms of latency in microseconds, status
//! and failure counts, and one small summary per second of the run (never a record per
//! request).
//!
//! Each worker thread records into its own `Recorder` (no lock on the hot path) and hands each
//! finished second to the collector, which merges the threads' seconds once all of them have
//! moved past it; the whole-run figures are merged once, at the end.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::failure::Failure;

#[cfg(test)]
mod tests;

/// The highest latency a histogram holds exactly (one hour, in microseconds); longer ones
/// saturate to it.
const HIGHEST_US: u64 = 3_600_000_000;

/// A histogram for whole-run latencies: 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    hist(3)
}

/// A histogram for one second of the run: 2 significant digits are plenty for a plot.
fn window_histogram() -> Histogram<u64> {
    hist(2)
}

fn hist(sigfig: u8) -> Histogram<u64> {
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, HIGHEST_US, sigfig)
        .expect("constant bounds that hdrhistogram accepts")
}

/// Whole-run figures for one target.
#[derive(Clone, Debug)]
pub struct Tally {
    /// Latency of complete responses, microseconds.
    pub latency: Histogram<u64>,
    /// (status, count); few distinct codes, so a short list beats a map.
    pub statuses: Vec<(u16, u64)>,
    /// Indexed by `Failure::index`.
    pub errors: [u64; 5],
    pub bytes: u64,
    /// Open model: sends scheduled inside the run that never went out because the connection
    /// was still behind when the run ended.
    pub missed: u64,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            latency: histogram(),
            statuses: Vec::new(),
            errors: [0; 5],
            bytes: 0,
            missed: 0,
        }
    }
}

impl Tally {
    pub fn response(&mut self, latency_us: u64, status: u16, bytes: u64) {
        self.latency.saturating_record(latency_us.max(1));
        self.bytes += bytes;
        match self.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => self.statuses.push((status, 1)),
        }
    }

    pub fn failure(&mut self, kind: Failure) {
        self.errors[kind.index()] += 1;
    }

    pub fn responses(&self) -> u64 {
        self.latency.len()
    }

    pub fn failures(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn merge(&mut self, other: &Tally) {
        merge_histogram(&mut self.latency, &other.latency);
        for &(status, n) in &other.statuses {
            match self.statuses.iter_mut().find(|(s, _)| *s == status) {
                Some((_, m)) => *m += n,
                None => self.statuses.push((status, n)),
            }
        }
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        self.bytes += other.bytes;
        self.missed += other.missed;
    }
}

/// Adds `from` into `into`; both have the same bounds, so this cannot fail, but a value out
/// of range would saturate rather than be lost.
fn merge_histogram(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    if into.add(from).is_err() {
        for v in from.iter_recorded() {
            into.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// One second of the run for one target, as recorded (mergeable).
#[derive(Clone, Debug)]
pub struct Window {
    pub latency: Histogram<u64>,
    pub errors: u64,
}

impl Default for Window {
    fn default() -> Window {
        Window {
            latency: window_histogram(),
            errors: 0,
        }
    }
}

impl Window {
    pub fn merge(&mut self, other: &Window) {
        merge_histogram(&mut self.latency, &other.latency);
        self.errors += other.errors;
    }

    pub fn is_empty(&self) -> bool {
        self.latency.is_empty() && self.errors == 0
    }

    pub fn summary(&self, second: u64) -> Second {
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        Second {
            second,
            responses: self.latency.len(),
            errors: self.errors,
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            max_ms: self.latency.max() as f64 / 1000.0,
        }
    }
}

/// One second of the run for one target, summarised: the throughput and latency-over-time
/// plots are drawn from these.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Second {
    /// Seconds since measuring began.
    pub second: u64,
    /// Responses completed in this second (its throughput).
    pub responses: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// What a worker thread sends the collector.
#[derive(Debug)]
pub enum Message {
    /// The thread's data for `second` (one window per target), and a promise: it will send
    /// nothing more for any second before `upto`.
    Second {
        thread: usize,
        second: u64,
        windows: Vec<Window>,
        upto: u64,
    },
    /// The thread is done: its whole-run figures, and when it finished each phase.
    Done {
        thread: usize,
        tallies: Vec<Tally>,
        finished: Vec<Option<Instant>>,
    },
}

/// One worker thread's recorder.
#[derive(Debug)]
pub struct Recorder {
    thread: usize,
    /// When measuring began: second 0.
    epoch: Instant,
    second: u64,
    tallies: Vec<Tally>,
    windows: Vec<Window>,
    /// Per phase: when this thread's last connection finished it.
    finished: Vec<Option<Instant>>,
    tx: std::sync::mpsc::Sender<Message>,
}

impl Recorder {
    pub fn new(
        thread: usize,
        epoch: Instant,
        targets: usize,
        phases: usize,
        tx: std::sync::mpsc::Sender<Message>,
    ) -> Recorder {
        Recorder {
            thread,
            epoch,
            second: 0,
            tallies: vec![Tally::default(); targets],
            windows: vec![Window::default(); targets],
            finished: vec![None; phases],
            tx,
        }
    }

    pub fn response(
        &mut self,
        target: usize,
        now: Instant,
        start: Instant,
        status: u16,
        bytes: u64,
    ) {
        self.roll(now);
        let us = micros(now.saturating_duration_since(start));
        self.tallies[target].response(us, status, bytes);
        self.windows[target].latency.saturating_record(us.max(1));
    }

    pub fn failure(&mut self, target: usize, now: Instant, kind: Failure) {
        self.roll(now);
        self.tallies[target].failure(kind);
        self.windows[target].errors += 1;
    }

    pub fn missed(&mut self, target: usize, n: u64) {
        self.tallies[target].missed += n;
    }

    pub fn phase_done(&mut self, phase: usize, now: Instant) {
        let slot = &mut self.finished[phase];
        *slot = Some(slot.map_or(now, |t| t.max(now)));
    }

    /// Hands the current second to the collector once `now` is past it.
    pub fn roll(&mut self, now: Instant) {
        let second = now.saturating_duration_since(self.epoch).as_secs();
        if second > self.second {
            self.flush(second);
        }
    }

    fn flush(&mut self, upto: u64) {
        let windows = std::mem::replace(
            &mut self.windows,
            vec![Window::default(); self.tallies.len()],
        );
        // The collector only goes away when the run is over; nothing is lost then.
        let _ = self.tx.send(Message::Second {
            thread: self.thread,
            second: self.second,
            windows,
            upto,
        });
        self.second = upto;
    }

    /// The end of this thread's run.
    pub fn finish(&mut self) {
        self.flush(u64::MAX);
        let _ = self.tx.send(Message::Done {
            thread: self.thread,
            tallies: std::mem::take(&mut self.tallies),
            finished: std::mem::take(&mut self.finished),
        });
    }
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
