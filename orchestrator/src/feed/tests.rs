use ferry_objects::files::Reading;
use ferry_objects::source::{Cause, Source, Update};

use super::*;

fn update() -> Update {
    Update {
        reading: Reading::default(),
        cause: Cause::Observed,
    }
}

/// Hands an update over by hand, keeping its answer's receiving end.
fn deliver(sender: &Sender) -> oneshot::Receiver<bool> {
    let (answer, answered) = oneshot::channel();
    sender
        .tx
        .send(Delivery {
            update: update(),
            answer,
        })
        .unwrap();
    answered
}

#[tokio::test]
async fn a_round_gets_the_answer_its_update_was_given() {
    let (sender, mut feed) = channel();
    let consumer = tokio::spawn(async move {
        for published in [true, false] {
            feed.next().await.unwrap();
            feed.acknowledge(published);
        }
        feed
    });
    assert!(sender.send(update()).await, "published");
    assert!(!sender.send(update()).await, "rejected");
    drop(consumer.await.unwrap());
}

#[tokio::test]
async fn an_update_taken_without_an_answer_to_the_last_counts_that_one_rejected() {
    let (sender, mut feed) = channel();
    let first = deliver(&sender);
    let second = deliver(&sender);
    feed.next().await.unwrap();
    feed.next().await.unwrap();
    feed.acknowledge(true);
    assert!(!first.await.unwrap());
    assert!(second.await.unwrap());
}

#[tokio::test]
async fn with_nobody_consuming_the_feed_an_update_counts_as_not_published() {
    let (sender, feed) = channel();
    drop(feed);
    assert!(!sender.send(update()).await);
}
