//! The one interface through which the control plane learns a cluster's objects: a
//! [`Source`] hands over [`Update`]s, each every object it holds at that moment (an explicit
//! relist, as kube-rs' watcher marks its `Init`…`InitDone`), so the reader swaps its state in one
//! step and never sees half a cluster. The first update is the list; each later one follows a
//! change.
//!
//! The sources: manifest files alone ([`crate::files::FileFeed`], `ferry control -f` and the
//! parts run apart), the local cluster of `ferry up` (ferry-orchestrator's feed), and a
//! Kubernetes API server. The reader says what became of each update
//! ([`Source::acknowledge`]): the local cluster signals a Pod to stop only once the snapshot
//! without its endpoints is out, and keeps a rejected configuration from acting.

use std::future::Future;

use crate::files::Reading;

/// Why a source's objects changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The configuration changed: a manifest was added, edited or removed, or an API call
    /// changed an object.
    Applied,
    /// Only live state changed: a Pod started, turned ready or stopped.
    Observed,
}

/// One relist: every object the source holds now, and every problem found reading them.
#[derive(Clone, Debug)]
pub struct Update {
    pub reading: Reading,
    pub cause: Cause,
}

/// A source of objects: list, then watch.
pub trait Source: Send + 'static {
    /// The next update: the list first, then a relist after each change. `None` once the
    /// source has ended. Cancel-safe: an update is not lost when the future is dropped.
    fn next(&mut self) -> impl Future<Output = Option<Update>> + Send;

    /// What became of the last update: `true` when it was published (or changed nothing the
    /// data planes see), `false` when it was rejected and the last good state keeps serving.
    fn acknowledge(&mut self, published: bool);
}
