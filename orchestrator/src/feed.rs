//! The local cluster's side of the [`Source`] interface: each round's update goes over a
//! channel to the consumer (the control plane), and the round waits for its answer before it
//! signals a Pod to stop or keeps a configuration as the last good one.

use ferry_objects::source::{Source, Update};
use tokio::sync::{mpsc, oneshot};

/// An update and where its answer goes.
#[derive(Debug)]
struct Delivery {
    update: Update,
    answer: oneshot::Sender<bool>,
}

/// The local cluster's updates, as a [`Source`]: the first is the list (the first round,
/// made at build), each later one the cluster after a change.
#[derive(Debug)]
pub struct Feed {
    rx: mpsc::UnboundedReceiver<Delivery>,
    unanswered: Option<oneshot::Sender<bool>>,
}

/// The sending side, held by the rounds.
#[derive(Debug)]
pub(crate) struct Sender {
    tx: mpsc::UnboundedSender<Delivery>,
}

pub(crate) fn channel() -> (Sender, Feed) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Sender { tx },
        Feed {
            rx,
            unanswered: None,
        },
    )
}

impl Sender {
    /// Hands an update over and waits for its answer: `false` when it was rejected, or when
    /// nobody consumes the feed any more.
    pub(crate) async fn send(&self, update: Update) -> bool {
        let (answer, answered) = oneshot::channel();
        if self.tx.send(Delivery { update, answer }).is_err() {
            return false;
        }
        answered.await.unwrap_or(false)
    }

    /// Hands an update over without waiting for its answer.
    pub(crate) fn hand_over(&self, update: Update) {
        let (answer, _) = oneshot::channel();
        let _ = self.tx.send(Delivery { update, answer });
    }
}

impl Source for Feed {
    async fn next(&mut self) -> Option<Update> {
        let delivery = self.rx.recv().await?;
        // An update taken without an answer to the one before counts that one as rejected.
        if let Some(previous) = self.unanswered.replace(delivery.answer) {
            let _ = previous.send(false);
        }
        Some(delivery.update)
    }

    fn acknowledge(&mut self, published: bool) {
        if let Some(answer) = self.unanswered.take() {
            let _ = answer.send(published);
        }
    }
}

#[cfg(test)]
mod tests;
