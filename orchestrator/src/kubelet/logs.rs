//! A container's log: a bounded ring of the bytes its processes wrote to stdout and stderr.
//!
//! One ring per container, kept across restarts: `ferry logs` shows every run in one stream;
//! the ring also marks where each run began, so the Kubernetes API's `pods/log` shows the
//! current (or last) run and `previous=true` the one before it, while it is kept. Offsets are
//! absolute over the container's life so a follower resumes where it stopped even when old
//! bytes were dropped. The ring lives in a `watch` channel: writers modify it in place,
//! followers wait on it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

/// A line longer than this is cut into pieces so one stream without newlines cannot hold back
/// the other or grow without bound.
const MAX_LINE: usize = 16 * 1024;

/// The ring's contents.
#[derive(Debug, Default)]
struct Ring {
    bytes: VecDeque<u8>,
    /// The absolute offset of `bytes[0]`.
    start: u64,
    limit: usize,
    /// The pod is gone: nothing more will be written.
    closed: bool,
    /// How many runs of the container began (0: none yet).
    runs: u64,
    /// The offset where the current (or last) run began.
    run_start: u64,
    /// Where the run before it began and ended.
    previous: Option<(u64, u64)>,
    /// The current run's process has not ended yet.
    running: bool,
    /// Where each piece appended (a line, or a cut piece of a long one) begins and when it
    /// was written, oldest first; a piece whose bytes are all dropped is dropped too, so there
    /// are never more than bytes kept.
    pieces: VecDeque<(u64, jiff::Timestamp)>,
}

impl Ring {
    fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    fn append(&mut self, data: &[u8], at: jiff::Timestamp) {
        let end = self.end() + data.len() as u64;
        self.pieces.push_back((self.end(), at));
        // Only the newest `limit` bytes of `data` can survive.
        let data = &data[data.len().saturating_sub(self.limit)..];
        let overflow = (self.bytes.len() + data.len()).saturating_sub(self.limit);
        self.bytes.drain(..overflow.min(self.bytes.len()));
        self.bytes.extend(data);
        self.start = end - self.bytes.len() as u64;
        // A piece is gone once the next one begins at or before the first kept byte.
        while self
            .pieces
            .get(1)
            .is_some_and(|(next, _)| *next <= self.start)
        {
            self.pieces.pop_front();
        }
    }
}

/// The writing side, held by the kubelet.
#[derive(Clone, Debug)]
pub(crate) struct LogWriter {
    ring: Arc<watch::Sender<Ring>>,
}

impl LogWriter {
    pub(crate) fn new(limit: usize) -> LogWriter {
        let ring = Ring {
            limit: limit.max(1),
            ..Ring::default()
        };
        LogWriter {
            ring: Arc::new(watch::Sender::new(ring)),
        }
    }

    /// Appends whole lines (or a cut piece of a long one) in one step, so lines of stdout and
    /// stderr interleave but never mix.
    pub(crate) fn append(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.ring.send_modify(|ring| {
            if !ring.closed {
                ring.append(data, jiff::Timestamp::now());
            }
        });
    }

    /// A new run of the container begins: what follows is its log, and the run before becomes
    /// the previous one.
    pub(crate) fn start_run(&self) {
        self.ring.send_modify(|ring| {
            if ring.runs > 0 {
                ring.previous = Some((ring.run_start, ring.end()));
            }
            ring.run_start = ring.end();
            ring.runs += 1;
            ring.running = true;
        });
    }

    /// The current run ended (its output drained): a follower of it ends.
    pub(crate) fn end_run(&self) {
        self.ring.send_modify(|ring| ring.running = false);
    }

    /// The pod is gone: followers end.
    pub(crate) fn close(&self) {
        self.ring.send_modify(|ring| ring.closed = true);
    }

    /// A reader of this ring.
    pub(crate) fn reader(&self) -> Logs {
        Logs {
            ring: self.ring.subscribe(),
            seen: AtomicU64::new(0),
        }
    }

    /// Copies one stream of a process into the ring, line by line, until it ends.
    pub(crate) async fn copy_from(self, mut stream: impl AsyncRead + Unpin) {
        let mut line: Vec<u8> = Vec::with_capacity(256);
        let mut chunk = [0u8; 8192];
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut rest = &chunk[..n];
            while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
                if line.is_empty() {
                    self.append(&rest[..=newline]);
                } else {
                    line.extend_from_slice(&rest[..=newline]);
                    self.append(&line);
                    line.clear();
                }
                rest = &rest[newline + 1..];
            }
            line.extend_from_slice(rest);
            if line.len() >= MAX_LINE {
                self.append(&line);
                line.clear();
            }
        }
        // A last line without its newline still belongs to the log.
        self.append(&line);
    }
}

/// A reader of one container's log ring (stdout and stderr interleaved as lines arrive, kept
/// across restarts, oldest bytes dropped past the limit).
#[derive(Debug)]
pub struct Logs {
    ring: watch::Receiver<Ring>,
    /// The offset this reader has read up to, for [`Logs::changed`].
    seen: AtomicU64,
}

impl Clone for Logs {
    fn clone(&self) -> Self {
        Logs {
            ring: self.ring.clone(),
            seen: AtomicU64::new(self.seen.load(Ordering::Relaxed)),
        }
    }
}

impl Logs {
    /// The bytes from `offset` to the end and the offset after them. Offsets are absolute over
    /// the container's life; reading below the oldest kept byte starts at the oldest.
    pub fn read_from(&self, offset: u64) -> (Bytes, u64) {
        let ring = self.ring.borrow();
        let from = offset.clamp(ring.start, ring.end());
        let skip = usize::try_from(from - ring.start).unwrap_or(usize::MAX);
        let bytes: Vec<u8> = ring.bytes.iter().skip(skip).copied().collect();
        let next = ring.end();
        drop(ring);
        self.seen.store(next, Ordering::Relaxed);
        (Bytes::from(bytes), next)
    }

    /// The pieces (lines, or cut pieces of long ones) from `offset` up to `to`, each with when
    /// it was written, and the offset after them; as [`Logs::read_from`] otherwise.
    pub fn read_pieces(
        &self,
        offset: u64,
        to: Option<u64>,
    ) -> (Vec<(jiff::Timestamp, Bytes)>, u64) {
        let ring = self.ring.borrow();
        let end = to.map_or(ring.end(), |t| t.clamp(ring.start, ring.end()));
        let from = offset.clamp(ring.start, end);
        let mut out = Vec::new();
        // The piece holding `from`, found by its start.
        let first = ring
            .pieces
            .partition_point(|(begin, _)| *begin <= from)
            .saturating_sub(1);
        for (i, (begin, at)) in ring.pieces.iter().enumerate().skip(first) {
            if *begin >= end {
                break;
            }
            let finish = ring.pieces.get(i + 1).map_or(ring.end(), |(next, _)| *next);
            let (a, b) = ((*begin).max(from), finish.min(end));
            if a >= b {
                continue;
            }
            let skip = usize::try_from(a - ring.start).unwrap_or(usize::MAX);
            let take = usize::try_from(b - a).unwrap_or(0);
            let bytes: Vec<u8> = ring.bytes.range(skip..skip + take).copied().collect();
            out.push((*at, Bytes::from(bytes)));
        }
        drop(ring);
        self.seen.store(end, Ordering::Relaxed);
        (out, end)
    }

    /// The offset after the newest byte.
    pub fn end(&self) -> u64 {
        self.ring.borrow().end()
    }

    /// Resolves when bytes past what this reader last read were written, or the pod is gone.
    pub async fn changed(&self) {
        let seen = self.seen.load(Ordering::Relaxed);
        let mut ring = self.ring.clone();
        // The sender lives as long as the pod's kubelet state; if it is dropped the log is over.
        let _ = ring.wait_for(|ring| ring.closed || ring.end() > seen).await;
    }

    /// The pod is gone: a follow ends.
    pub fn is_closed(&self) -> bool {
        self.ring.borrow().closed || self.ring.has_changed().is_err()
    }

    /// The current (or last) run of the container; `None` before its first.
    pub fn current_run(&self) -> Option<Run> {
        let ring = self.ring.borrow();
        (ring.runs > 0).then(|| Run {
            number: ring.runs,
            start: ring.run_start.max(ring.start),
        })
    }

    /// The bytes of the run before the current one, as far as they are kept; `None` when there
    /// was none or none of it is kept.
    pub fn previous_run(&self) -> Option<Bytes> {
        let (start, end) = self.previous_range()?;
        let ring = self.ring.borrow();
        let from = start.max(ring.start);
        let skip = usize::try_from(from - ring.start).unwrap_or(usize::MAX);
        let take = usize::try_from(end.saturating_sub(from)).unwrap_or(usize::MAX);
        Some(ring.bytes.iter().skip(skip).take(take).copied().collect())
    }

    /// Where the run before the current one began and ended, while some of it (or all, when
    /// it wrote nothing) is kept.
    pub fn previous_range(&self) -> Option<(u64, u64)> {
        let ring = self.ring.borrow();
        let (start, end) = ring.previous?;
        (end > ring.start || end == start).then_some((start, end))
    }

    /// Where the log of `run` ends: `None` while it may still grow (it runs, and the pod is
    /// not gone), else its end offset.
    pub fn run_end(&self, run: &Run) -> Option<u64> {
        let ring = self.ring.borrow();
        if ring.runs != run.number {
            // A later run began: this one ended where that one's previous ended.
            return Some(ring.previous.map_or(ring.run_start, |(_, end)| end));
        }
        (!ring.running || ring.closed || self.ring.has_changed().is_err()).then(|| ring.end())
    }

    /// Resolves when bytes past `offset` were written, or `run` ended, or the pod is gone.
    pub async fn changed_after(&self, offset: u64, run: &Run) {
        let mut ring = self.ring.clone();
        let _ = ring
            .wait_for(|ring| {
                ring.closed || ring.end() > offset || ring.runs != run.number || !ring.running
            })
            .await;
    }
}

/// One run of a container, as its log knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// 1 for the first run, counting restarts.
    pub number: u64,
    /// The offset of its first kept byte.
    pub start: u64,
}

#[cfg(test)]
mod tests;
