//! A Kubernetes API server as a [`Source`] (`ferry up --source kubernetes`): kube-rs' client,
//! configured as `kubectl` is (`--kubeconfig FILE`, else `KUBECONFIG` or `~/.kube/config`, else
//! the in-cluster service account), and one kube-runtime watcher per kind ferry reads:
//! Services, EndpointSlices, Ingresses, IngressClasses and Namespaces, cluster-wide, and the
//! Secrets that ferry's Ingresses name in `spec.tls[].secretName`, each watched by itself
//! (`fieldSelector=metadata.name=NAME` in its namespace), so no other Secret is ever read.
//!
//! A watcher's `Init … InitApply … InitDone` replaces that kind's objects in one step; later
//! events change single objects. Every update handed to the control plane is still a whole
//! relist ([`Update`]): the first once every kind has listed, then one after each burst of
//! events (quiet for the debounce, at most [`ferry_objects::files::MAX_DELAY`] after its first
//! event). A watcher that fails (the API server away, a 403, a 410 on a resourceVersion too
//! old) backs off (0.8 s doubling to 30 s, jittered) and resumes; meanwhile its objects stay as
//! last seen, so the API server going away never makes an update without them.
//!
//! The Ingresses ferry serves get `status.loadBalancer` set to the gateway's address
//! ([`status`]), once the update that holds them is published.
//!
//! [`review`] sends the TokenReviews that check sidecars' ServiceAccount tokens.
//!
//! This module is the only user of kube and kube-runtime (the `kubernetes` feature).

mod objects;
pub mod review;
pub mod status;

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ferry_objects::files::MAX_DELAY;
use ferry_objects::object::{Kind, Object};
use ferry_objects::source::{Source, Update};
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_kind};
use kube::{Api, Client};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_stream::StreamMap;

pub use objects::{Objects, WatchKey};
pub use status::StatusAddress;

/// The kinds watched cluster-wide; Secrets are watched one by one. Pods are kept only as
/// far as identity needs them ([`pod_identity`]).
pub const KINDS: [Kind; 6] = [
    Kind::Namespace,
    Kind::Service,
    Kind::EndpointSlice,
    Kind::Pod,
    Kind::IngressClass,
    Kind::Ingress,
];

/// What the control plane keeps of a Pod: its name, namespace, uid and ServiceAccount (per-Pod
/// tokens are checked against them; an endpoint's identity is its Pod's ServiceAccount).
/// Everything else (containers, status, managed fields) is dropped at once, so a cluster's
/// Pods cost a few hundred bytes each.
pub fn pod_identity(pod: Pod) -> Pod {
    let (metadata, spec) = (pod.metadata, pod.spec);
    Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: metadata.name,
            namespace: metadata.namespace,
            uid: metadata.uid,
            resource_version: metadata.resource_version,
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::core::v1::PodSpec {
            service_account_name: spec.as_ref().and_then(|s| s.service_account_name.clone()),
            // Deprecated, but what an old object may name alone.
            service_account: spec.and_then(|s| s.service_account),
            ..Default::default()
        }),
        status: None,
    }
}

/// How the source reads and what it writes back.
#[derive(Clone, Debug)]
pub struct Config {
    /// The quiet time after an event before the next update.
    pub debounce: Duration,
    /// The address written to `status.loadBalancer` of ferry's Ingresses; `None` writes none.
    pub status_address: Option<StatusAddress>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error(
        "no Kubernetes configuration found (give --kubeconfig, set KUBECONFIG, or run in a Pod with a service account): {0}"
    )]
    Infer(#[from] kube::config::InferConfigError),
    #[error("cannot make a Kubernetes client for {server}: {source}")]
    Client { server: String, source: kube::Error },
    #[error("the Kubernetes API server {server} does not answer: {source}")]
    Unreachable { server: String, source: kube::Error },
}

/// The client configuration: the file given, else inferred (`KUBECONFIG`, `~/.kube/config`,
/// the in-cluster service account).
async fn client_config(kubeconfig: Option<&PathBuf>) -> Result<kube::Config, Error> {
    match kubeconfig {
        Some(path) => {
            let error = |source| Error::Kubeconfig {
                path: path.clone(),
                source,
            };
            let file = kube::config::Kubeconfig::read_from(path).map_err(error)?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(error)
        }
        None => Ok(kube::Config::infer().await?),
    }
}

/// A connected client and the server it talks to (as written in problems and logs).
#[derive(Clone)]
pub struct Connection {
    pub client: Client,
    pub server: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Makes the client and asks the server its version, so a wrong address, CA or token is an
/// error at start rather than a watcher retrying for ever.
pub async fn connect(kubeconfig: Option<&PathBuf>) -> Result<Connection, Error> {
    // kube's TLS takes the process's default provider: make it ferry's (ring), not whatever a
    // crate's features would pick.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let provider = rustls::crypto::CryptoProvider::clone(ferry_runtime::tls::provider());
        // Only fails when another thread installed one meanwhile, which is as good.
        let _ = provider.install_default();
    }
    let config = client_config(kubeconfig).await?;
    let server = config.cluster_url.to_string();
    let server = server.trim_end_matches('/').to_owned();
    let client = Client::try_from(config).map_err(|source| Error::Client {
        server: server.clone(),
        source,
    })?;
    let version = client
        .apiserver_version()
        .await
        .map_err(|source| Error::Unreachable {
            server: server.clone(),
            source,
        })?;
    tracing::info!(%server, version = %version.git_version, "Kubernetes API server");
    Ok(Connection { client, server })
}

type Labels = Vec<(&'static str, String)>;

/// What the source counts (passed in, never global).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Watch failures by kind (a Secret's watch counts as `Secret`).
    pub watch_errors: Family<Labels, Counter>,
    /// Relists handed to the control plane.
    pub updates: Counter,
    /// Ingress status writes by result (`ok`, `error`).
    pub status_writes: Family<Labels, Counter>,
}

impl Metrics {
    fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics::default();
        registry.register(
            "ferry_control_kubernetes_watch_errors",
            "Failed watches of the Kubernetes API server by kind, each retried with back-off",
            m.watch_errors.clone(),
        );
        registry.register(
            "ferry_control_kubernetes_updates",
            "Relists of the Kubernetes API server's objects handed to the control plane",
            m.updates.clone(),
        );
        registry.register(
            "ferry_control_kubernetes_status_writes",
            "Writes of Ingresses' status.loadBalancer by result",
            m.status_writes.clone(),
        );
        m
    }
}

/// One relist and the statuses its Ingresses want.
#[derive(Clone, Debug)]
struct Relist {
    update: Update,
    statuses: Vec<status::IngressNow>,
}

/// The API server's objects as the control plane's [`Source`]. Dropping it stops the watchers
/// and the status writer.
#[derive(Debug)]
pub struct KubernetesSource {
    relists: watch::Receiver<Option<Relist>>,
    /// The statuses of the update last handed out, sent on once it is published.
    handed: Option<Vec<status::IngressNow>>,
    statuses: watch::Sender<Vec<status::IngressNow>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for KubernetesSource {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl KubernetesSource {
    /// Starts the watchers (and the status writer, when an address is given) on a connection.
    pub fn start(
        connection: Connection,
        config: &Config,
        registry: &mut Registry,
    ) -> KubernetesSource {
        let metrics = Metrics::register(registry);
        let (relists_tx, relists) = watch::channel(None);
        let (statuses, statuses_rx) = watch::channel(Vec::new());
        let mut tasks = vec![tokio::spawn(inform(
            connection.clone(),
            config.debounce,
            relists_tx,
            metrics.clone(),
        ))];
        match &config.status_address {
            Some(address) => tasks.push(tokio::spawn(status::write(
                connection.client,
                address.clone(),
                statuses_rx,
                metrics.status_writes,
            ))),
            None => tracing::info!(
                "no address to publish: the Ingresses' status.loadBalancer is left as it is"
            ),
        }
        KubernetesSource {
            relists,
            handed: None,
            statuses,
            tasks,
        }
    }
}

impl Source for KubernetesSource {
    /// The newest relist (a consumer that falls behind skips to it). Cancel-safe: the relist
    /// stays in the channel until it is taken.
    async fn next(&mut self) -> Option<Update> {
        loop {
            if self.relists.changed().await.is_err() {
                return None;
            }
            if let Some(relist) = self.relists.borrow_and_update().clone() {
                self.handed = Some(relist.statuses);
                return Some(relist.update);
            }
        }
    }

    fn acknowledge(&mut self, published: bool) {
        if let Some(statuses) = self.handed.take()
            && published
        {
            self.statuses.send_replace(statuses);
        }
    }
}

type Events = Pin<Box<dyn Stream<Item = Result<Event<Object>, watcher::Error>> + Send>>;

/// One kind's watcher with back-off, its objects wrapped as [`Object`]s.
fn watch<K>(api: Api<K>, config: watcher::Config, wrap: fn(K) -> Object) -> Events
where
    K: kube::Resource
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    Box::pin(
        watch_kind(api, config)
            .default_backoff()
            .map(move |event| event.map(|e| map_event(e, wrap))),
    )
}

fn map_event<K>(event: Event<K>, wrap: fn(K) -> Object) -> Event<Object> {
    match event {
        Event::Apply(o) => Event::Apply(wrap(o)),
        Event::Delete(o) => Event::Delete(wrap(o)),
        Event::Init => Event::Init,
        Event::InitApply(o) => Event::InitApply(wrap(o)),
        Event::InitDone => Event::InitDone,
    }
}

fn kind_watch(client: &Client, kind: Kind) -> Events {
    let config = watcher::Config::default();
    match kind {
        Kind::Namespace => watch(Api::<Namespace>::all(client.clone()), config, |o| {
            Object::Namespace(Box::new(o))
        }),
        Kind::Service => watch(Api::<Service>::all(client.clone()), config, |o| {
            Object::Service(Box::new(o))
        }),
        Kind::EndpointSlice => watch(Api::<EndpointSlice>::all(client.clone()), config, |o| {
            Object::EndpointSlice(Box::new(o))
        }),
        Kind::Pod => watch(Api::<Pod>::all(client.clone()), config, |o| {
            Object::Pod(Box::new(pod_identity(o)))
        }),
        Kind::IngressClass => watch(Api::<IngressClass>::all(client.clone()), config, |o| {
            Object::IngressClass(Box::new(o))
        }),
        // KINDS are watched this way, and Ingress is the last of them.
        _ => watch(Api::<Ingress>::all(client.clone()), config, |o| {
            Object::Ingress(Box::new(o))
        }),
    }
}

/// One Secret, by name in its namespace: what RBAC's `get`/`list`/`watch` on secrets allows,
/// and all ferry reads of them.
fn secret_watch(client: &Client, namespace: &str, name: &str) -> Events {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    watch(
        Api::<Secret>::namespaced(client.clone(), namespace),
        config,
        |o| Object::Secret(Box::new(o)),
    )
}

fn watch_for(client: &Client, key: &WatchKey) -> Events {
    match key {
        WatchKey::Kind(kind) => kind_watch(client, *kind),
        WatchKey::Secret(namespace, name) => secret_watch(client, namespace, name),
    }
}

/// The least time between two new starts of one watch refused as too old.
const RESTART_EVERY: Duration = Duration::from_secs(1);

/// A watch refused because its resourceVersion is too old (`410 Gone`, reason `Expired`):
/// only a new list helps. The API server usually says so in the watch's stream, which kube's
/// watcher handles; a refusal of the request itself it retries unchanged.
pub fn expired(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::WatchStartFailed(kube::Error::Api(status)) if status.code == 410)
}

/// The watchers' loop: applies their events to [`Objects`], starts and stops the Secrets'
/// watchers as ferry's Ingresses name them, and hands out a relist after each burst.
async fn inform(
    connection: Connection,
    debounce: Duration,
    relists: watch::Sender<Option<Relist>>,
    metrics: Metrics,
) {
    let client = connection.client;
    let mut objects = Objects::new(&connection.server);
    let mut streams: StreamMap<WatchKey, Events> = StreamMap::new();
    for kind in KINDS {
        let key = WatchKey::Kind(kind);
        streams.insert(key.clone(), watch_for(&client, &key));
    }
    // When each watch was last started anew after a 410.
    let mut restarted: std::collections::HashMap<WatchKey, Instant> = Default::default();
    // The first event of the burst not yet handed out, and the last.
    let mut burst: Option<(Instant, Instant)> = None;
    loop {
        let due = burst
            .filter(|_| objects.ready())
            .map(|(first, last)| (last + debounce).min(first + MAX_DELAY));
        tokio::select! {
            Some((key, event)) = streams.next() => {
                match event {
                    Ok(event) => {
                        if objects.apply(&key, event) {
                            let now = Instant::now();
                            burst = Some(burst.map_or((now, now), |(first, _)| (first, now)));
                        }
                    }
                    Err(e) => {
                        objects.failed(&key);
                        // kube's watcher retries the same resourceVersion for ever when a
                        // watch is refused with HTTP 410 rather than an ERROR event: start
                        // that watch anew, which lists first; at most once a RESTART_EVERY
                        // per watch (meanwhile the old one's back-off spaces its retries),
                        // so a server that refuses every watch is not hammered.
                        let now = Instant::now();
                        let last = restarted.get(&key).copied();
                        if expired(&e) && last.is_none_or(|t| now >= t + RESTART_EVERY) {
                            restarted.insert(key.clone(), now);
                            let events = watch_for(&client, &key);
                            streams.insert(key.clone(), events);
                        }
                        let kind = match &key {
                            WatchKey::Kind(kind) => kind.as_str(),
                            WatchKey::Secret(..) => "Secret",
                        };
                        metrics.watch_errors.get_or_create(&vec![("kind", kind.to_owned())]).inc();
                        tracing::warn!(watch = %key, error = %e, "watch failed; retrying with back-off (the objects last seen keep serving)");
                    }
                }
                // Ingresses (or classes) may have changed which Secrets ferry needs.
                if !matches!(key, WatchKey::Kind(Kind::Ingress | Kind::IngressClass)) {
                    continue;
                }
                let (start, stop) = objects.secret_changes();
                for (namespace, name) in stop {
                    let key = WatchKey::Secret(namespace, name);
                    streams.remove(&key);
                    restarted.remove(&key);
                }
                for (namespace, name) in start {
                    let key = WatchKey::Secret(namespace, name);
                    streams.insert(key.clone(), watch_for(&client, &key));
                }
            }
            () = sleep_until(due) => {
                burst = None;
                let (update, statuses) = objects.relist();
                metrics.updates.inc();
                relists.send_replace(Some(Relist { update, statuses }));
            }
            () = relists.closed() => return,
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Where objects of the API server come from, in problems: `<kubernetes https://…>`.
pub fn origin_name(server: &str) -> Arc<str> {
    format!("<kubernetes {server}>").into()
}

#[cfg(test)]
mod tests;
