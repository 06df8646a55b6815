//! One subscriber's stream of pushes, whatever carries it (a gRPC stream of `ferry control`,
//! or `ferry up`'s in-process channel): the whole view first, then one delta per accepted
//! change, through a bounded queue.
//!
//! - A push is queued only when the queue has room. When it is full (the part reads more
//!   slowly than the views change) nothing more is queued; once there is room again the part
//!   is sent the whole view of the newest version, not every step it missed (coalescing).
//!   Other subscribers never wait for it: each stream follows the bus on its own.
//! - A NACK of a delta (the part holds another view) is answered at once with the whole view.
//!   A NACK of a whole view is not (the part could not take it; sending it again would not
//!   help): the next change is sent whole.
//! - Deltas and role views are computed once per version and shared by every stream
//!   ([`Views`]), so a change costs one diff however many parts subscribe.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use ferry_model::Snapshot;
use ferry_model::proto::{self, Role, subscribe_request::Message};
use ferry_runtime::SnapshotBus;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};

use super::parts::{Parts, PushKind};

/// The pushes a subscriber may have queued and not yet read, by default.
pub const QUEUE_DEPTH: usize = 16;

/// The view fit for a role: only a gateway is sent certificates, so a DNS server never holds
/// a private key.
pub fn view_for_role(snapshot: &Arc<Snapshot>, role: Role) -> Arc<Snapshot> {
    if role == Role::Gateway || snapshot.certificates.is_empty() {
        snapshot.clone()
    } else {
        Arc::new(Snapshot {
            certificates: Vec::new(),
            ..(**snapshot).clone()
        })
    }
}

/// How many recent role views and deltas are kept for the streams to share.
const CACHED: usize = 8;

type DeltaKey = (Role, u64, u64);

/// Role views and deltas computed once and shared by every stream.
#[derive(Debug, Default)]
pub struct Views {
    views: Mutex<VecDeque<(Role, Arc<Snapshot>)>>,
    deltas: Mutex<VecDeque<(DeltaKey, Option<Arc<proto::Delta>>)>>,
}

impl Views {
    /// `snapshot` as `role` is sent it.
    pub fn view(&self, snapshot: &Arc<Snapshot>, role: Role) -> Arc<Snapshot> {
        if role == Role::Gateway || snapshot.certificates.is_empty() {
            return snapshot.clone();
        }
        let mut views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, v)) = views
            .iter()
            .find(|(r, v)| *r == role && v.version == snapshot.version)
        {
            return v.clone();
        }
        let view = view_for_role(snapshot, role);
        if views.len() == CACHED {
            views.pop_front();
        }
        views.push_back((role, view.clone()));
        view
    }

    /// The delta from `old` to `new` (both `role`'s views); `None` when there is none (a view
    /// out of canonical order): the whole view is sent.
    pub fn delta(&self, old: &Snapshot, new: &Snapshot, role: Role) -> Option<Arc<proto::Delta>> {
        let key = (role, old.version, new.version);
        let mut deltas = self.deltas.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, d)) = deltas.iter().find(|(k, _)| *k == key) {
            return d.clone();
        }
        let delta = proto::delta::diff(old, new).map(Arc::new);
        if deltas.len() == CACHED {
            deltas.pop_front();
        }
        deltas.push_back((key, delta.clone()));
        delta
    }
}

/// What a stream is told to do with one subscriber.
#[derive(Clone, Debug)]
pub struct StreamContext {
    pub role: Role,
    /// The subscriber's entry in [`Parts`].
    pub id: u64,
    pub bus: SnapshotBus,
    pub parts: Parts,
    pub views: Arc<Views>,
}

/// The nonce names the push's version, its number on the stream and its kind, so that an
/// answer can be traced to what it answers.
fn nonce(version: u64, seq: u64, kind: PushKind) -> String {
    let kind = match kind {
        PushKind::full => "full",
        PushKind::delta => "delta",
    };
    format!("{version}-{seq}-{kind}")
}

/// The push number and kind of a nonce this module made.
fn parse_nonce(nonce: &str) -> Option<(u64, PushKind)> {
    let mut fields = nonce.rsplitn(3, '-');
    let kind = match fields.next()? {
        "full" => PushKind::full,
        "delta" => PushKind::delta,
        _ => return None,
    };
    Some((fields.next()?.parse().ok()?, kind))
}

/// The state of one stream, between pushes.
#[derive(Debug, Default)]
struct State {
    /// The view the part holds once it has taken every push queued.
    sent: Option<Arc<Snapshot>>,
    /// The next push is the whole view.
    whole_next: bool,
    /// Send the whole view even if the version is the one sent (the part lost track).
    resync: bool,
    /// Pushes numbered on the stream.
    seq: u64,
    /// The number of the last whole view sent: answers to pushes before it are stale.
    last_whole: u64,
}

impl State {
    fn answer(&mut self, parts: &Parts, id: u64, message: Message) {
        if let Message::Nack(nack) = &message {
            match parse_nonce(&nack.nonce) {
                // The part does not hold the view the delta was on: send it the whole view.
                Some((seq, PushKind::delta)) if seq > self.last_whole => {
                    self.whole_next = true;
                    self.resync = true;
                }
                // It could not take the whole view: the next change goes whole.
                Some((seq, PushKind::full)) if seq >= self.last_whole => self.whole_next = true,
                _ => {}
            }
        }
        parts.answer(id, message);
    }
}

/// Pushes to one subscriber until either side ends: `inbound` is what the part answers,
/// `outbound` its bounded queue of pushes.
pub async fn serve<S>(
    cx: StreamContext,
    mut inbound: S,
    outbound: mpsc::Sender<Result<proto::Push, tonic::Status>>,
) where
    S: Stream<Item = Result<proto::SubscribeRequest, tonic::Status>> + Unpin,
{
    let mut watch = cx.bus.watch();
    let mut state = State {
        whole_next: true,
        ..State::default()
    };
    loop {
        let newest = watch.borrow_and_update().clone();
        let due = newest.version > 0
            && (state.resync || state.sent.as_ref().map(|s| s.version) != Some(newest.version));
        if due {
            let permit = match outbound.try_reserve() {
                Ok(permit) => permit,
                Err(mpsc::error::TrySendError::Closed(())) => return,
                Err(mpsc::error::TrySendError::Full(())) => {
                    // The part is behind: it will be sent the newest whole view, not every
                    // step, once it has read what is queued.
                    cx.parts.queue_full(cx.id);
                    let behind_from = state.sent.as_ref().map_or(0, |s| s.version);
                    state.whole_next = true;
                    let permit = loop {
                        tokio::select! {
                            permit = outbound.reserve() => match permit {
                                Ok(permit) => break permit,
                                Err(_) => return,
                            },
                            message = inbound.next() => match message {
                                Some(Ok(proto::SubscribeRequest { message: Some(m) })) => state.answer(&cx.parts, cx.id, m),
                                Some(Ok(_)) => {}
                                None | Some(Err(_)) => return,
                            },
                        }
                    };
                    let newest = watch.borrow().version;
                    cx.parts
                        .coalesced(newest.saturating_sub(behind_from).saturating_sub(1));
                    permit
                }
            };
            let newest = watch.borrow_and_update().clone();
            let view = cx.views.view(&newest, cx.role);
            let delta = match &state.sent {
                Some(sent) if !state.whole_next => cx.views.delta(sent, &view, cx.role),
                _ => None,
            };
            state.seq += 1;
            let (kind, push) = match delta {
                Some(delta) => (
                    PushKind::delta,
                    proto::Push {
                        version: view.version,
                        nonce: nonce(view.version, state.seq, PushKind::delta),
                        snapshot: None,
                        delta: Some((*delta).clone()),
                    },
                ),
                None => {
                    state.last_whole = state.seq;
                    (
                        PushKind::full,
                        proto::Push {
                            version: view.version,
                            nonce: nonce(view.version, state.seq, PushKind::full),
                            snapshot: Some(proto::Snapshot::from(&*view)),
                            delta: None,
                        },
                    )
                }
            };
            let bytes = push.encoded_len();
            permit.send(Ok(push));
            cx.parts.sent(cx.id, view.version, kind, bytes);
            state.sent = Some(view);
            state.whole_next = false;
            state.resync = false;
            continue;
        }
        tokio::select! {
            changed = watch.changed() => if changed.is_err() { return },
            message = inbound.next() => match message {
                Some(Ok(proto::SubscribeRequest { message: Some(m) })) => state.answer(&cx.parts, cx.id, m),
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return,
            },
            () = outbound.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferry_runtime::StatusBoard;
    use ferry_runtime::subscribe::{self, Receiver};
    use ferry_testing::{DEADLINE, eventually};
    use prometheus_client::registry::Registry;
    use tokio_stream::wrappers::ReceiverStream;

    use super::*;

    #[test]
    fn nonces_name_their_push_and_kind() {
        assert_eq!(nonce(12, 3, PushKind::delta), "12-3-delta");
        assert_eq!(parse_nonce("12-3-delta"), Some((3, PushKind::delta)));
        assert_eq!(parse_nonce("12-1-full"), Some((1, PushKind::full)));
        assert_eq!(parse_nonce("someone else's"), None);
        assert_eq!(parse_nonce("1-x-full"), None);
    }

    fn view(version: u64, namespaces: &[String]) -> Snapshot {
        Snapshot {
            version,
            namespaces: namespaces.to_vec(),
            ..Snapshot::default()
        }
    }

    type Answers = mpsc::Sender<Result<proto::SubscribeRequest, tonic::Status>>;
    type Pushes = mpsc::Receiver<Result<proto::Push, tonic::Status>>;

    /// A stream served as `ferry control` serves one, without a socket: the part's answers in,
    /// the queue of `depth` pushes out.
    fn subscribe(
        bus: &SnapshotBus,
        parts: &Parts,
        views: &Arc<Views>,
        depth: usize,
    ) -> (Answers, Pushes) {
        let (answers, inbound) = mpsc::channel(64);
        let (outbound, pushes) = mpsc::channel(depth);
        let cx = StreamContext {
            role: Role::Dns,
            id: parts.connect(Role::Dns, "dns".to_owned(), String::new(), String::new()),
            bus: bus.clone(),
            parts: parts.clone(),
            views: views.clone(),
        };
        tokio::spawn(serve(cx, ReceiverStream::new(inbound), outbound));
        (answers, pushes)
    }

    /// A part reading its stream: each push goes through the Receiver the remote parts run.
    fn read(mut pushes: Pushes, answers: Answers) -> (SnapshotBus, Receiver) {
        let bus = SnapshotBus::new();
        let receiver = Receiver::new(bus.clone(), Arc::new(|_: &Snapshot| Ok(())));
        let mut taking = receiver.clone();
        tokio::spawn(async move {
            while let Some(Ok(push)) = pushes.recv().await {
                if answers.send(Ok(taking.take(push))).await.is_err() {
                    return;
                }
            }
        });
        (bus, receiver)
    }

    #[tokio::test]
    async fn a_slow_subscriber_does_not_slow_the_others_and_then_gets_the_newest_whole_view() {
        let bus = SnapshotBus::new();
        let parts = Parts::new(StatusBoard::default(), &mut Registry::default());
        let views = Arc::new(Views::default());
        // One part never reads; its queue holds two pushes.
        let (_slow_answers, slow_pushes) = subscribe(&bus, &parts, &views, 2);
        let fast: Vec<_> = (0..3)
            .map(|_| {
                let (answers, pushes) = subscribe(&bus, &parts, &views, 2);
                read(pushes, answers)
            })
            .collect();
        let mut names = vec!["ns-000".to_owned()];
        bus.publish(view(1, &names));
        eventually(DEADLINE, "every part is sent version 1", || async {
            (parts.pushes(PushKind::full) == 4).then_some(())
        })
        .await;
        const CHANGES: u64 = 40;
        for version in 2..=CHANGES + 1 {
            names.push(format!("ns-{version:03}"));
            bus.publish(view(version, &names));
            for (i, (part, _)) in fast.iter().enumerate() {
                eventually(
                    DEADLINE,
                    &format!("fast part {i} serves version {version}"),
                    || async { (part.current().version == version).then_some(()) },
                )
                .await;
            }
        }
        // Every change reached each reading part as a delta, one by one.
        for (part, receiver) in &fast {
            assert_eq!(part.current().namespaces, names);
            assert_eq!(receiver.taken(subscribe::PushKind::full), 1);
            assert_eq!(receiver.taken(subscribe::PushKind::delta), CHANGES);
        }
        let (full_queues, _) = parts.queue_full_and_coalesced();
        assert_eq!(full_queues, 1, "the slow part's queue filled once");

        // The slow part reads at last: what was queued, then the newest view whole.
        let (slow, receiver) = read(slow_pushes, _slow_answers.clone());
        eventually(DEADLINE, "the slow part serves the newest view", || async {
            (slow.current().namespaces == names).then_some(())
        })
        .await;
        assert_eq!(receiver.taken(subscribe::PushKind::full), 2);
        assert_eq!(receiver.taken(subscribe::PushKind::delta), 1);
        let (_, coalesced) = parts.queue_full_and_coalesced();
        assert_eq!(
            coalesced,
            CHANGES - 2,
            "versions 3..{CHANGES} were never sent to it one by one"
        );
    }

    /// The next push queued, within the deadline.
    async fn next(pushes: &mut Pushes) -> proto::Push {
        tokio::time::timeout(DEADLINE, pushes.recv())
            .await
            .expect("a push within the deadline")
            .expect("the stream is open")
            .expect("a push, not an error")
    }

    #[tokio::test]
    async fn a_nack_of_a_delta_is_answered_with_the_whole_view_at_once() {
        let bus = SnapshotBus::new();
        let status = StatusBoard::default();
        let parts = Parts::new(status.clone(), &mut Registry::default());
        let (answers, mut pushes) = subscribe(&bus, &parts, &Arc::new(Views::default()), 4);
        bus.publish(view(1, &["a".to_owned()]));
        let first = next(&mut pushes).await;
        assert!(first.snapshot.is_some() && first.delta.is_none());
        bus.publish(view(2, &["b".to_owned()]));
        let second = next(&mut pushes).await;
        assert_eq!(second.delta.as_ref().map(|d| d.base_version), Some(1));
        // The part says it holds another view.
        let nack = proto::SubscribeRequest {
            message: Some(Message::Nack(proto::Nack {
                nonce: second.nonce.clone(),
                version: 2,
                reason: "the delta applies to version 1, the part holds version 9".to_owned(),
            })),
        };
        answers.send(Ok(nack)).await.unwrap();
        let third = next(&mut pushes).await;
        assert_eq!(third.version, 2);
        assert_eq!(
            third.snapshot.map(|s| s.namespaces),
            Some(vec!["b".to_owned()])
        );
        // A NACK of that whole view is not answered with it again: nothing more is sent.
        let nack = proto::SubscribeRequest {
            message: Some(Message::Nack(proto::Nack {
                nonce: third.nonce.clone(),
                version: 2,
                reason: "cannot compile".to_owned(),
            })),
        };
        answers.send(Ok(nack)).await.unwrap();
        eventually(DEADLINE, "the NACK is recorded", || async {
            let proxies = status.status().proxies;
            (proxies[0].last_nack.as_ref()?.reason == "cannot compile").then_some(())
        })
        .await;
        // The next change goes whole.
        bus.publish(view(3, &["c".to_owned()]));
        let fourth = next(&mut pushes).await;
        assert_eq!(fourth.version, 3);
        assert!(fourth.snapshot.is_some(), "{fourth:?}");
        assert_eq!(parts.pushes(PushKind::delta), 1);
        assert_eq!(parts.pushes(PushKind::full), 3);
    }
}
