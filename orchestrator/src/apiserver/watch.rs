//! The watch verb (`?watch=true` on a list path): a chunked stream of JSON lines
//! `{"type": ..., "object": ...}`, as the API server's.
//!
//! From `resourceVersion` empty or `0` (or with `sendInitialEvents=true`) the current state
//! comes first as ADDED events; from a version the ring holds, the events after it; from an
//! older one the stream is one ERROR event with a `410 Expired` `Status` (as the API server's
//! watch cache answers: 200, then the error), and a watcher that falls behind the ring later
//! gets the same ERROR event and its stream ends (the client relists). Label and field selectors apply to each event: an object
//! coming into the selection is ADDED, one leaving it DELETED, as the API server's watch
//! cache sends. `timeoutSeconds` ends the stream (default [`DEFAULT_TIMEOUT`]); with
//! `allowWatchBookmarks=true` a BOOKMARK with the current resourceVersion comes every
//! [`BOOKMARK_INTERVAL`]. Under `as=Table` each object is a `Table` of its one row (what
//! `kubectl get -w` prints).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use ferry_runtime::connections::InProgress;
use ferry_runtime::serve::Body;
use hyper::body::Frame;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::resources::Resource;
use super::selector::{self, FieldRequirement};
use super::store::{Event, EventType, Expired, Store};
use super::table::{self, Include};

/// How long a watch lasts without `timeoutSeconds` (the API server's `--min-request-timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// How often a watch that allows bookmarks gets one.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// Lines queued for a slow client before its watch waits (and may fall behind the ring).
const QUEUE: usize = 64;

/// Where a watch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The current state as ADDED events, then what changes.
    Current,
    /// The events after this revision.
    After(u64),
}

/// One watch request.
#[derive(Debug)]
pub struct Watch {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub labels: Option<LabelSelector>,
    pub fields: Vec<FieldRequirement>,
    pub table: bool,
    pub include: Include,
    pub bookmarks: bool,
    /// How often a bookmark comes ([`BOOKMARK_INTERVAL`]).
    pub bookmark_interval: Duration,
    /// With `sendInitialEvents=true`: a bookmark marks the end of the initial events.
    pub initial_events_end: bool,
    pub timeout: Duration,
    pub start: Start,
}

/// The `Status` of a watch from a revision the ring no longer holds.
pub fn expired_status(requested: u64, expired: Expired) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("too old resource version: {requested} ({})", expired.oldest),
        "reason": "Expired",
        "code": 410,
    })
}

impl Watch {
    fn matches(&self, object: &Value) -> bool {
        self.labels
            .as_ref()
            .is_none_or(|l| selector::labels_match(l, object))
            && selector::fields_match(&self.fields, object)
    }

    /// What this watcher is sent of an event: its type and object, if anything (an object
    /// entering the selection is ADDED, one leaving it DELETED with its last state).
    pub fn view(&self, event: &Event) -> Option<(EventType, Value)> {
        let now = self.matches(&event.object);
        let before = event.previous.as_ref().is_some_and(|p| self.matches(p));
        match (event.kind, before, now) {
            (EventType::Added, _, true) => Some((EventType::Added, event.object.clone())),
            (EventType::Modified, true, true) => Some((EventType::Modified, event.object.clone())),
            (EventType::Modified, false, true) => Some((EventType::Added, event.object.clone())),
            (EventType::Modified, true, false) => {
                let mut last = event.previous.clone().unwrap_or(Value::Null);
                if let Some(meta) = last.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("resourceVersion".into(), json!(event.revision.to_string()));
                }
                Some((EventType::Deleted, last))
            }
            (EventType::Deleted, _, true) => Some((EventType::Deleted, event.object.clone())),
            _ => None,
        }
    }

    /// One line of the stream.
    fn line(&self, kind: &str, mut object: Value) -> Bytes {
        if kind != "ERROR" && kind != "BOOKMARK" {
            super::resources::as_version(self.resource, &mut object);
        }
        let object = if self.table && kind != "ERROR" && kind != "BOOKMARK" {
            let metadata = json!({"resourceVersion": object.pointer("/metadata/resourceVersion")});
            table::table(
                self.resource.kind,
                &[object],
                metadata,
                self.include,
                jiff::Timestamp::now(),
            )
        } else {
            object
        };
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn bookmark(&self, revision: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = if self.table {
            json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": [], "rows": []})
        } else {
            json!({"kind": self.resource.kind, "apiVersion": self.resource.group_version(), "metadata": metadata})
        };
        self.line("BOOKMARK", object)
    }

    /// Starts the stream on a task of its own; it ends at the timeout, on `stopping`, when
    /// the client goes, or after an ERROR.
    pub fn start(self, store: Arc<Store>, stopping: watch::Receiver<bool>) -> WatchBody {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(async move {
            let mut stopping = stopping;
            let timeout = self.timeout;
            tokio::select! {
                () = self.stream(&store, &tx) => {}
                () = tokio::time::sleep(timeout) => {}
                _ = stopping.wait_for(|s| *s) => {}
                () = tx.closed() => {}
            }
        });
        WatchBody { rx, _guard: None }
    }

    async fn stream(&self, store: &Store, tx: &mpsc::Sender<Bytes>) {
        let namespace = self.namespace.as_deref();
        // Subscribed before the first read: no change after it is missed.
        let mut changed = store.subscribe();
        let mut at = match self.start {
            Start::After(revision) => revision,
            Start::Current => {
                let (revision, items) = store.list(self.resource, namespace);
                for object in items.into_iter().filter(|o| self.matches(o)) {
                    if tx.send(self.line("ADDED", object)).await.is_err() {
                        return;
                    }
                }
                if self.initial_events_end && tx.send(self.bookmark(revision, true)).await.is_err()
                {
                    return;
                }
                revision
            }
        };
        let every = self.bookmark_interval.max(Duration::from_millis(1));
        let mut bookmarks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            match store.events_after(self.resource, namespace, at) {
                Err(expired) => {
                    let _ = tx
                        .send(self.line("ERROR", expired_status(at, expired)))
                        .await;
                    return;
                }
                Ok((revision, events)) => {
                    for event in &events {
                        let Some((kind, object)) = self.view(event) else {
                            continue;
                        };
                        if tx.send(self.line(kind.as_str(), object)).await.is_err() {
                            return;
                        }
                    }
                    at = at.max(revision);
                }
            }
            tokio::select! {
                changed = changed.changed() => if changed.is_err() {
                    return;
                },
                _ = bookmarks.tick(), if self.bookmarks => {
                    if tx.send(self.bookmark(at, false)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// A watch's stream of lines; holds its connection's request open while it lasts (so the
/// connection's idle timeout does not close it).
#[derive(Debug)]
pub struct WatchBody {
    rx: mpsc::Receiver<Bytes>,
    _guard: Option<InProgress>,
}

impl WatchBody {
    /// A stream of what `rx` gives (a followed log), until its sender is dropped.
    pub(super) fn from_receiver(rx: mpsc::Receiver<Bytes>) -> WatchBody {
        WatchBody { rx, _guard: None }
    }

    /// The next line, for tests.
    pub async fn next_line(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }
}

/// The API server's response body: whole, or a watch's stream.
#[derive(Debug)]
pub enum ApiBody {
    Full(Body),
    Watch(WatchBody),
}

impl ApiBody {
    /// Keeps the request counted as in progress while a watch streams.
    pub fn guarded(self, guard: InProgress) -> ApiBody {
        match self {
            ApiBody::Watch(w) => ApiBody::Watch(WatchBody {
                rx: w.rx,
                _guard: Some(guard),
            }),
            full => full,
        }
    }
}

impl From<Body> for ApiBody {
    fn from(body: Body) -> ApiBody {
        ApiBody::Full(body)
    }
}

impl hyper::body::Body for ApiBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ApiBody::Full(body) => Pin::new(body).poll_frame(cx),
            ApiBody::Watch(w) => {
                w.rx.poll_recv(cx)
                    .map(|line| line.map(|l| Ok(Frame::data(l))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ApiBody::Full(body) => body.is_end_stream(),
            ApiBody::Watch(_) => false,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            ApiBody::Full(body) => body.size_hint(),
            ApiBody::Watch(_) => hyper::body::SizeHint::default(),
        }
    }
}
