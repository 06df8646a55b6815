//! The objects the watchers have seen, by watch: pure state, no I/O, so the relist rules are
//! tested without an API server. A watch's `Init … InitDone` replaces its objects in one step
//! (never half a list); a failed watch keeps what it had.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use ferry_model::{Problem, Severity};
use ferry_objects::files::Reading;
use ferry_objects::object::{Kind, Manifest, Object, Origin};
use ferry_objects::source::{Cause, Update};
use ferry_objects::store::Store;
use ferry_objects::validate;
use kube::runtime::watcher::Event;

use super::KINDS;
use super::status::IngressNow;

/// What a watcher watches: a kind cluster-wide, or one Secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WatchKey {
    Kind(Kind),
    Secret(String, String),
}

impl fmt::Display for WatchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchKey::Kind(kind) => write!(f, "{kind}"),
            WatchKey::Secret(namespace, name) => write!(f, "Secret {namespace}/{name}"),
        }
    }
}

/// An object as read, with the problems validating it found.
#[derive(Clone, Debug)]
struct Seen {
    manifest: Arc<Manifest>,
    problems: Vec<Problem>,
}

type ByName = BTreeMap<(String, String), Seen>;

/// A Secret's namespace and name.
pub type SecretName = (String, String);

#[derive(Debug, Default)]
struct Watched {
    objects: ByName,
    /// The list under way (`Init` seen, `InitDone` not yet).
    listing: Option<ByName>,
    /// Listed at least once.
    synced: bool,
    /// Failed before it ever listed (a Secret ferry may not read): nothing to wait for.
    failed: bool,
}

/// Every watch's objects.
#[derive(Debug)]
pub struct Objects {
    origin: Origin,
    watches: BTreeMap<WatchKey, Watched>,
    /// The Secrets whose watchers run.
    secrets: BTreeSet<(String, String)>,
    /// A change since the last relist that is more than EndpointSlices.
    applied: bool,
}

impl Objects {
    /// `server` names where the objects come from in problems.
    pub fn new(server: &str) -> Objects {
        Objects {
            origin: Origin {
                file: super::origin_name(server),
                doc: None,
            },
            watches: KINDS
                .into_iter()
                .map(|k| (WatchKey::Kind(k), Watched::default()))
                .collect(),
            secrets: BTreeSet::new(),
            applied: false,
        }
    }

    fn seen(&self, object: Object) -> ((String, String), Seen) {
        let mut manifest = Manifest {
            origin: self.origin.clone(),
            object,
        };
        // The watch's bookkeeping; nothing ferry reads, and it would churn every relist.
        manifest.object.metadata_mut().managed_fields = None;
        let key = manifest.key();
        // A Pod is kept only as far as identity needs it (`pod_identity`: no containers):
        // the API server validated it whole, and nothing of it is translated.
        let problems = if key.kind == Kind::Pod {
            Vec::new()
        } else {
            validate::object(&manifest)
        };
        (
            (key.namespace, key.name),
            Seen {
                manifest: Arc::new(manifest),
                problems,
            },
        )
    }

    /// Applies one watcher event; `true` when the objects changed.
    pub fn apply(&mut self, key: &WatchKey, event: Event<Object>) -> bool {
        let (step, object) = match event {
            Event::Init => (Step::Init, None),
            Event::InitApply(o) => (Step::InitApply, Some(o)),
            Event::InitDone => (Step::InitDone, None),
            Event::Apply(o) => (Step::Apply, Some(o)),
            Event::Delete(o) => (Step::Delete, Some(o)),
        };
        let seen = object.map(|o| self.seen(o));
        // A Secret whose watch stopped meanwhile is no longer kept.
        let Some(watched) = self.watches.get_mut(key) else {
            return false;
        };
        let changed = match (step, seen) {
            (Step::Init, _) => {
                watched.listing = Some(ByName::new());
                false
            }
            (Step::InitApply, Some((name, seen))) => {
                watched.listing.get_or_insert_default().insert(name, seen);
                false
            }
            (Step::InitDone, _) => {
                watched.objects = watched.listing.take().unwrap_or_default();
                watched.synced = true;
                true
            }
            (Step::Apply, Some((name, seen))) => {
                watched.objects.insert(name, seen);
                true
            }
            (Step::Delete, Some((name, _))) => watched.objects.remove(&name).is_some(),
            _ => false,
        };
        // Endpoints and Pods coming and going are live state, not a configuration change.
        if changed && !matches!(key, WatchKey::Kind(Kind::EndpointSlice | Kind::Pod)) {
            self.applied = true;
        }
        changed
    }

    /// A watch failed: it keeps its objects; one that never listed is no longer waited for.
    pub fn failed(&mut self, key: &WatchKey) {
        if let Some(watched) = self.watches.get_mut(key)
            && !watched.synced
        {
            watched.failed = true;
        }
    }

    /// Whether the first relist can be made: every kind listed, every Secret listed or
    /// failed.
    pub fn ready(&self) -> bool {
        self.watches.iter().all(|(key, w)| match key {
            WatchKey::Kind(_) => w.synced,
            WatchKey::Secret(..) => w.synced || w.failed,
        })
    }

    fn store(&self, kinds: &[Kind]) -> Store {
        Store::from_manifests(
            kinds
                .iter()
                .filter_map(|k| self.watches.get(&WatchKey::Kind(*k)))
                .flat_map(|w| w.objects.values().map(|s| s.manifest.clone())),
        )
    }

    /// The Secrets to start and stop watching: those ferry's Ingresses name in
    /// `spec.tls[].secretName`, in the Ingress's namespace.
    pub fn secret_changes(&mut self) -> (Vec<SecretName>, Vec<SecretName>) {
        let store = self.store(&[Kind::IngressClass, Kind::Ingress]);
        let mut ignored = Vec::new();
        let wanted: BTreeSet<(String, String)> =
            crate::translate::ferry_ingresses(&store, &mut ignored)
                .into_iter()
                .flat_map(|(m, ingress)| {
                    let namespace = m.namespace().to_owned();
                    ingress
                        .spec
                        .iter()
                        .flat_map(|s| s.tls.iter().flatten())
                        .filter_map(|t| t.secret_name.clone().filter(|n| !n.is_empty()))
                        .map(move |name| (namespace.clone(), name))
                })
                .collect();
        let start: Vec<_> = wanted.difference(&self.secrets).cloned().collect();
        let stop: Vec<_> = self.secrets.difference(&wanted).cloned().collect();
        for (namespace, name) in &stop {
            let key = WatchKey::Secret(namespace.clone(), name.clone());
            if self
                .watches
                .remove(&key)
                .is_some_and(|w| !w.objects.is_empty())
            {
                self.applied = true;
            }
        }
        for (namespace, name) in &start {
            let key = WatchKey::Secret(namespace.clone(), name.clone());
            self.watches.insert(key, Watched::default());
        }
        self.secrets = wanted;
        (start, stop)
    }

    /// Every object now, as one relist, and the status of each Ingress ferry serves.
    pub fn relist(&mut self) -> (Update, Vec<IngressNow>) {
        let mut reading = Reading::default();
        for watched in self.watches.values() {
            for seen in watched.objects.values() {
                reading.manifests.push(seen.manifest.clone());
                reading.problems.extend(seen.problems.iter().cloned());
            }
        }
        reading
            .problems
            .extend(validate::across_arcs(&reading.manifests));
        let store = self.store(&[Kind::IngressClass, Kind::Ingress]);
        let mut ignored = Vec::new();
        let statuses: Vec<IngressNow> = crate::translate::ferry_ingresses(&store, &mut ignored)
            .into_iter()
            .map(|(m, ingress)| IngressNow::of(m, ingress))
            .collect();
        not_ours_is_no_error(&mut reading.problems, &statuses);
        let cause = if std::mem::take(&mut self.applied) {
            Cause::Applied
        } else {
            Cause::Observed
        };
        (Update { reading, cause }, statuses)
    }
}

/// A watcher event without its object.
#[derive(Clone, Copy, Debug)]
enum Step {
    Init,
    InitApply,
    InitDone,
    Apply,
    Delete,
}

/// An error in an Ingress of another class (an ingress-nginx annotation value ferry does not
/// serve, say) is another controller's business: in a shared cluster it must not stop ferry
/// from taking every other change, so it becomes a warning.
pub(super) fn not_ours_is_no_error(problems: &mut [Problem], ours: &[IngressNow]) {
    for p in problems.iter_mut() {
        let Some(object) = &p.object else { continue };
        let namespace = object.namespace.as_deref().unwrap_or("");
        let served = ours
            .iter()
            .any(|i| i.namespace == namespace && i.name == object.name);
        if object.kind == "Ingress" && !served && p.severity == Severity::Error {
            p.severity = Severity::Warning;
            p.message = format!("{} (not ferry's Ingress: ignored)", p.message);
        }
    }
}
