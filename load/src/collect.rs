//! The main thread's side of a run: merges the worker threads' seconds as they finish (and
//! shows them on the progress line), then their whole-run figures.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::schedule::Schedule;
use crate::stats::{Message, Second, Tally, Window};

#[cfg(test)]
mod tests;

/// Everything a run measured, per target (index 0 is the target, 1 the baseline).
#[derive(Debug)]
pub struct Measured {
    pub tallies: Vec<Tally>,
    pub seconds: Vec<Vec<Second>>,
    /// Time each target was measured: its phases from start to the last response.
    pub durations: Vec<Duration>,
}

#[derive(Debug)]
pub struct Collector {
    /// Per thread: every second before this one is complete.
    upto: Vec<u64>,
    pending: BTreeMap<u64, Vec<Window>>,
    /// The next second to summarise (seconds nobody reported are empty).
    next: u64,
    seconds: Vec<Vec<Second>>,
    tallies: Vec<Tally>,
    finished: Vec<Option<Instant>>,
    progress: bool,
}

impl Collector {
    pub fn new(threads: usize, targets: usize, phases: usize, progress: bool) -> Collector {
        Collector {
            upto: vec![0; threads],
            pending: BTreeMap::new(),
            next: 0,
            seconds: vec![Vec::new(); targets],
            tallies: vec![Tally::default(); targets],
            finished: vec![None; phases],
            progress,
        }
    }

    pub fn handle(&mut self, message: Message) {
        match message {
            Message::Second {
                thread,
                second,
                windows,
                upto,
            } => {
                if windows.iter().any(|w| !w.is_empty()) {
                    let merged = self
                        .pending
                        .entry(second)
                        .or_insert_with(|| vec![Window::default(); windows.len()]);
                    for (into, from) in merged.iter_mut().zip(&windows) {
                        into.merge(from);
                    }
                }
                self.upto[thread] = self.upto[thread].max(upto);
                self.summarise(false);
            }
            Message::Done {
                thread,
                tallies,
                finished,
            } => {
                self.upto[thread] = u64::MAX;
                for (into, from) in self.tallies.iter_mut().zip(&tallies) {
                    into.merge(from);
                }
                for (into, from) in self.finished.iter_mut().zip(finished) {
                    *into = match (*into, from) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
        }
    }

    /// Summarises every second all threads are past (all of them, at the end).
    fn summarise(&mut self, all: bool) {
        let complete = if all {
            u64::MAX
        } else {
            self.upto.iter().copied().min().unwrap_or(0)
        };
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() >= complete {
                break;
            }
            let (second, windows) = entry.remove_entry();
            self.fill(second);
            for (series, window) in self.seconds.iter_mut().zip(&windows) {
                series.push(window.summary(second));
            }
            self.next = second + 1;
            self.show(second);
        }
        if !all && complete != u64::MAX {
            self.fill(complete);
        }
    }

    /// Empty seconds up to (not including) `second`.
    fn fill(&mut self, second: u64) {
        while self.next < second {
            for series in &mut self.seconds {
                series.push(Window::default().summary(self.next));
            }
            self.next += 1;
        }
    }

    fn show(&self, second: u64) {
        if !self.progress {
            return;
        }
        let mut line = format!("\r\x1b[K  {:>4}s", second + 1);
        for (i, series) in self.seconds.iter().enumerate() {
            if let Some(s) = series.last().filter(|s| s.responses + s.errors > 0) {
                let who = match (self.seconds.len(), i) {
                    (1, _) => "",
                    (_, 0) => "  target",
                    _ => "  baseline",
                };
                line += &format!(
                    "{who}  {} req/s  p50 {:.3} ms  p99 {:.3} ms  errors {}",
                    s.responses, s.p50_ms, s.p99_ms, s.errors
                );
            }
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }

    /// The run's figures once every thread is done.
    pub fn finish(mut self, t0: Instant, schedule: &Schedule) -> Measured {
        self.summarise(true);
        if self.progress {
            print!("\r\x1b[K");
        }
        // Trailing seconds with nothing in them (after the last response) say nothing.
        for series in &mut self.seconds {
            while series.last().is_some_and(|s| s.responses + s.errors == 0) {
                series.pop();
            }
        }
        let longest = self.seconds.iter().map(Vec::len).max().unwrap_or(0);
        for series in &mut self.seconds {
            while series.len() < longest {
                series.push(Window::default().summary(series.len() as u64));
            }
        }
        let mut durations = vec![Duration::ZERO; self.tallies.len()];
        for (i, phase) in schedule.phases.iter().enumerate() {
            if !phase.measure {
                continue;
            }
            let start = t0 + phase.start;
            let planned = phase.end.map(|e| t0 + e);
            let end = match (planned, self.finished[i]) {
                (Some(p), Some(f)) => p.max(f),
                (Some(p), None) => p,
                (None, Some(f)) => f,
                (None, None) => start,
            };
            durations[phase.target] += end.saturating_duration_since(start);
        }
        Measured {
            tallies: self.tallies,
            seconds: self.seconds,
            durations,
        }
    }
}
