//! `ferry up`'s parts subscribe without a socket: each in-process part (the gateway, cluster
//! DNS) is fed through the same [`stream::serve`] that serves a remote part's gRPC stream
//! (whole view, then deltas, the bounded queue, NACK handling) and the same
//! [`Receiver`] a remote part runs (apply the delta, check, publish as one swap, answer), over
//! in-memory channels instead of HTTP/2. The parts are listed with the remote ones in
//! `/status` (address `in-process`), so the two paths cannot drift.

use std::sync::Arc;

use ferry_model::proto::{self, Role};
use ferry_runtime::subscribe::{Check, Receiver};
use ferry_runtime::{Shutdown, SnapshotBus, StatusBoard, Subscription};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;

use super::parts::{self, Parts};
use super::stream::{self, QUEUE_DEPTH, StreamContext, Views};

/// What a part's answers travel on: a part answers each push before it reads the next, so a
/// few slots are plenty.
const ANSWERS: usize = 4;

/// The in-process parts of a control plane, each fed from its bus through a stream. The
/// streams start as each part connects (so the first view is on its way while the rest of the
/// process is built) and stop at shutdown, or when this is dropped.
pub struct LocalParts {
    bus: SnapshotBus,
    parts: Parts,
    views: Arc<Views>,
    tasks: JoinSet<()>,
    /// Per part: the version of the last push it answered (`Ack` or `Nack`).
    answered: Vec<watch::Receiver<u64>>,
}

impl std::fmt::Debug for LocalParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalParts")
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl LocalParts {
    /// The parts fed from `bus`, listed on `status` and counted in `registry` as a remote
    /// part would be.
    pub fn new(bus: SnapshotBus, status: StatusBoard, registry: &mut Registry) -> LocalParts {
        LocalParts {
            bus,
            parts: Parts::new(status, registry),
            views: Arc::default(),
            tasks: JoinSet::new(),
            answered: Vec::new(),
        }
    }

    /// A part named `name` in `role`: its subscription reads a bus of its own that the stream
    /// fills, and counts toward the control bus's readiness. `check` is its compile step, as
    /// for a remote part (a view it fails is refused with a NACK; it keeps the last good one).
    pub fn connect(&mut self, role: Role, name: &'static str, check: Check) -> Subscription {
        let part_bus = SnapshotBus::new();
        let subscription = self.bus.subscribe_from(name, &part_bus);
        let mut receiver = Receiver::mirror(part_bus, check);
        let id = self.parts.connect(
            role,
            name.to_owned(),
            String::new(),
            "in-process".to_owned(),
        );
        let (answers, inbound) = mpsc::channel(ANSWERS);
        let (outbound, mut pushes) = mpsc::channel(QUEUE_DEPTH);
        let cx = StreamContext {
            role,
            id,
            bus: self.bus.clone(),
            parts: self.parts.clone(),
            views: self.views.clone(),
        };
        self.tasks
            .spawn(stream::serve(cx, ReceiverStream::new(inbound), outbound));
        let (answered, answered_rx) = watch::channel(0);
        self.answered.push(answered_rx);
        self.tasks.spawn(async move {
            while let Some(Ok(push)) = pushes.recv().await {
                let version = push.version;
                let answer: proto::SubscribeRequest = receiver.take(push);
                answered.send_replace(version);
                if answers.send(Ok(answer)).await.is_err() {
                    break;
                }
            }
        });
        tracing::debug!(
            role = parts::role_name(role),
            name,
            "in-process part subscribed"
        );
        subscription
    }

    /// Waits until every part has answered (taken, or refused) a push of `version` or newer,
    /// so that a process that starts serving has handed its parts their first view. Bounded
    /// by `limit`: a part that has not answered by then is left to catch up (logged).
    pub async fn settled(&self, version: u64, limit: std::time::Duration) {
        let all = async {
            for answered in &self.answered {
                let mut answered = answered.clone();
                let _ = answered.wait_for(|v| *v >= version).await;
            }
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!(
                version,
                ?limit,
                "an in-process part has not taken the first view yet"
            );
        }
    }

    /// Keeps every part's stream going until shutdown.
    pub async fn run(mut self, mut shutdown: Shutdown) {
        shutdown.wait().await;
        self.tasks.shutdown().await;
    }
}
