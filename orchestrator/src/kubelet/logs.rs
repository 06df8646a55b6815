//! A container's log: a bounded ring of the bytes its processes wrote to stdout and stderr.
//!
//! One ring per container, kept across restarts (as `kubectl logs` shows the current run and
//! `--previous` the last one, ferry shows them in one stream). Offsets are absolute over the
//! container's life so a follower resumes where it stopped even when old bytes were dropped.
//! The ring lives in a `watch` channel: writers modify it in place, followers wait on it.

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
}

impl Ring {
    fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    fn append(&mut self, data: &[u8]) {
        let end = self.end() + data.len() as u64;
        // Only the newest `limit` bytes of `data` can survive.
        let data = &data[data.len().saturating_sub(self.limit)..];
        let overflow = (self.bytes.len() + data.len()).saturating_sub(self.limit);
        self.bytes.drain(..overflow.min(self.bytes.len()));
        self.bytes.extend(data);
        self.start = end - self.bytes.len() as u64;
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
                ring.append(data);
            }
        });
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
}

#[cfg(test)]
mod tests;
