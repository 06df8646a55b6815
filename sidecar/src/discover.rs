//! Which endpoints stand behind a destination, and whom to expect at each: the outbound
//! side's subscriptions to `Destination.Get`, one per authority (`ip:port` of the original
//! destination), shared by every connection to it and dropped once no connection has used it
//! for a sweep or two.
//!
//! Each answer is compiled once, where it arrives, into an [`Answer::Service`]: the endpoints,
//! the expected identity of each ([`meshed`], the one place that decides whether an endpoint
//! is reached over mTLS), and the [`Balancer`] updated from the previous answer's (so latency
//! estimates and ejections survive an endpoint change). Connections read the newest answer from
//! a `watch`; nothing on the request path waits for the control plane.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ferry_model::mesh::WorkloadId;
use ferry_model::proto::{self, destination_update::Update};
use ferry_proxy::{Balancer, BalancerConfig};
use ferry_runtime::Shutdown;
use ferry_runtime::identity::CredentialsWatch;
use ferry_runtime::subscribe::backoff::Backoff;
use ferry_runtime::subscribe::grpc::destination_client::DestinationClient;
use ferry_runtime::subscribe::{H2, channel, with_token};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::upstream::Identities;

/// What is known of a destination.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Asked, not answered yet.
    Pending,
    /// No Service port answers to it (the reason, for logs): reached directly, in plaintext.
    NotService(String),
    Service(Arc<Service>),
}

/// A Service port's endpoints, compiled for the request path.
#[derive(Debug)]
pub struct Service {
    /// `namespace/name:port`, for logs.
    pub name: String,
    pub app_protocol: Option<String>,
    pub port_name: String,
    pub endpoints: Vec<Endpoint>,
    /// Over the endpoints to send to (the ready ones; every one when none is ready).
    pub balancer: Arc<Balancer>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The identity it must present: set when it is reached over mTLS.
    pub identity: Option<WorkloadId>,
    pub ready: bool,
}

/// Whether an endpoint is reached over mesh mTLS, and then the identity it must present: when
/// the control plane says it runs a sidecar (`meshed`) and names its identity. An endpoint
/// without a sidecar is reached in plaintext even when its identity is known (a Pod outside
/// the mesh has an identity but nothing that would terminate mTLS); a meshed endpoint whose
/// identity is absent or not a SPIFFE ID cannot be verified, so it is not dialled as one.
pub fn meshed(endpoint: &proto::DestinationEndpoint) -> Option<WorkloadId> {
    if !endpoint.meshed {
        return None;
    }
    endpoint.identity.as_deref()?.parse().ok()
}

/// Where the outbound side learns what a destination is.
pub trait Discover: Send + Sync + std::fmt::Debug {
    /// The answers for `authority` (`ip:port`), the newest first in the receiver.
    fn get(&self, authority: &str) -> watch::Receiver<Answer>;
}

/// Compiles an answer, updating `previous`'s balancer.
pub fn compile(
    update: &proto::DestinationUpdate,
    previous: Option<&Service>,
    config: &BalancerConfig,
) -> Answer {
    let endpoints = match &update.update {
        Some(Update::Endpoints(e)) => e,
        Some(Update::NoDestination(none)) => return Answer::NotService(none.reason.clone()),
        None => return Answer::NotService("an empty answer".to_owned()),
    };
    let list: Vec<Endpoint> = endpoints
        .endpoints
        .iter()
        .filter_map(|e| {
            let ip: IpAddr = match e.address.len() {
                4 => <[u8; 4]>::try_from(e.address.as_slice()).ok()?.into(),
                16 => <[u8; 16]>::try_from(e.address.as_slice()).ok()?.into(),
                _ => return None,
            };
            Some(Endpoint {
                addr: SocketAddr::new(ip, u16::try_from(e.port).ok()?),
                identity: meshed(e),
                ready: e.ready,
            })
        })
        .collect();
    let mut targets: Vec<SocketAddr> = list.iter().filter(|e| e.ready).map(|e| e.addr).collect();
    if targets.is_empty() {
        targets = list.iter().map(|e| e.addr).collect();
    }
    let now = Instant::now();
    let balancer = match previous {
        Some(p) => p.balancer.update(&targets, config, now),
        None => Balancer::new(&targets, config, now),
    };
    let name = endpoints.service.as_ref().map_or_else(
        || format!("?:{}", endpoints.port),
        |s| format!("{}/{}:{}", s.namespace, s.name, endpoints.port),
    );
    Answer::Service(Arc::new(Service {
        name,
        app_protocol: endpoints.app_protocol.clone(),
        port_name: endpoints.port_name.clone(),
        endpoints: list,
        balancer: Arc::new(balancer),
    }))
}

/// How to reach the control plane.
#[derive(Clone, Debug)]
pub struct ControlConfig {
    /// `https://host:port` of `ferry control`.
    pub url: http::Uri,
    /// The control plane's CA certificate (PEM): `--control-ca`, read at start.
    pub ca_pem: Vec<u8>,
    /// The workload credentials from the control plane's `Identity` service, whose trust
    /// bundle is trusted for the control channel as well (as the identity client does): after
    /// a root rotation's `--finish` the control plane's certificate chains only to the new
    /// root, which `ca_pem` may predate. `None` with credentials from files.
    pub trust: Option<CredentialsWatch>,
    pub token: String,
    /// Who asks (`namespace/pod`), listed by `ferry get proxies`.
    pub caller: String,
    pub node: String,
}

impl ControlConfig {
    /// What a new connection to the control channel is verified against (PEM): `ca_pem` and
    /// the latest trust bundle, read at each connection so a reconnect after a rotation
    /// trusts the new root.
    pub fn roots_pem(&self) -> Vec<u8> {
        let mut pem = self.ca_pem.clone();
        let latest = self.trust.as_ref().and_then(|t| t.borrow().clone());
        if let Some(credentials) = latest {
            for root in &credentials.roots {
                pem.push(b'\n');
                pem.extend_from_slice(
                    pem::encode(&pem::Pem::new("CERTIFICATE", root.as_ref().to_vec())).as_bytes(),
                );
            }
        }
        pem
    }
}

#[derive(Debug)]
struct Entry {
    tx: watch::Sender<Answer>,
    task: AbortHandle,
    /// Seen unused by the last sweep: the next one drops it.
    idle: AtomicBool,
}

/// `Destination.Get` subscriptions to the control plane, cached per authority.
#[derive(Debug)]
pub struct ControlDiscover {
    config: ControlConfig,
    balancer: BalancerConfig,
    identities: Arc<Identities>,
    client: tokio::sync::Mutex<Option<DestinationClient<H2>>>,
    entries: Mutex<HashMap<String, Entry>>,
}

/// How often unused subscriptions are looked for.
pub const SWEEP: Duration = Duration::from_secs(10);

impl ControlDiscover {
    pub fn new(
        config: ControlConfig,
        balancer: BalancerConfig,
        identities: Arc<Identities>,
    ) -> Arc<ControlDiscover> {
        Arc::new(ControlDiscover {
            config,
            balancer,
            identities,
            client: tokio::sync::Mutex::new(None),
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// Drops the subscriptions no connection used since the previous sweep, until shutdown.
    pub async fn sweep_until(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut tick = tokio::time::interval(SWEEP);
        loop {
            tokio::select! {
                _ = tick.tick() => self.sweep(),
                () = shutdown.wait() => break,
            }
        }
        for (_, entry) in self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
        {
            entry.task.abort();
        }
    }

    /// One sweep: an entry without receivers is marked, and dropped if it already was.
    pub fn sweep(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|authority, entry| {
            if entry.tx.receiver_count() > 0 {
                entry.idle.store(false, Ordering::Relaxed);
                return true;
            }
            if entry.idle.swap(true, Ordering::Relaxed) {
                tracing::debug!(%authority, "dropping an unused destination subscription");
                entry.task.abort();
                return false;
            }
            true
        });
    }

    /// How many destinations are subscribed to.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn client(&self) -> Result<DestinationClient<H2>, String> {
        let mut client = self.client.lock().await;
        if let Some(c) = client.as_ref() {
            return Ok(c.clone());
        }
        let h2 = channel(&self.config.url, &self.config.roots_pem()).await?;
        let c = DestinationClient::with_origin(h2, self.config.url.clone());
        *client = Some(c.clone());
        Ok(c)
    }

    /// Follows one authority's answers, reconnecting with back-off, until aborted.
    async fn follow(self: Arc<Self>, authority: String, tx: watch::Sender<Answer>) {
        let _listed = Listed {
            identities: self.identities.clone(),
            tx: tx.clone(),
        };
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            match self.stream(&authority, &tx, &mut backoff).await {
                Ok(()) => tracing::debug!(%authority, "the control plane ended the subscription"),
                Err(e) => {
                    tracing::warn!(%authority, error = %e, "destination subscription failed");
                    // A broken channel is rebuilt by the next attempt.
                    *self.client.lock().await = None;
                }
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    async fn stream(
        &self,
        authority: &str,
        tx: &watch::Sender<Answer>,
        backoff: &mut Backoff,
    ) -> Result<(), String> {
        let mut client = self.client().await?;
        let request = proto::GetDestination {
            caller: Some(proto::Caller {
                node: self.config.node.clone(),
                name: self.config.caller.clone(),
            }),
            authority: authority.to_owned(),
        };
        let mut stream = client
            .get(with_token(request, &self.config.token)?)
            .await
            .map_err(|s| format!("Destination.Get {authority}: {}", s.message()))?
            .into_inner();
        while let Some(update) = stream.message().await.map_err(|s| s.message().to_owned())? {
            backoff.reset();
            let previous = match &*tx.borrow() {
                Answer::Service(s) => Some(s.clone()),
                _ => None,
            };
            let answer = compile(&update, previous.as_deref(), &self.balancer);
            let now: Vec<&Endpoint> = match &answer {
                Answer::Service(s) => s.endpoints.iter().collect(),
                _ => Vec::new(),
            };
            // This destination's endpoints replace what it listed before; another
            // destination's listing of the same address stands (see `Identities`).
            self.identities.change(
                previous
                    .iter()
                    .flat_map(|p| p.endpoints.iter())
                    .map(|e| (e.addr, e.identity.as_ref())),
                now.iter().map(|e| (e.addr, e.identity.as_ref())),
            );
            tx.send_replace(answer);
        }
        Ok(())
    }
}

/// Releases the identities a subscription listed when it ends (swept, or shut down): the
/// task is aborted between updates, so the answer it holds is the one it listed.
struct Listed {
    identities: Arc<Identities>,
    tx: watch::Sender<Answer>,
}

impl Drop for Listed {
    fn drop(&mut self) {
        if let Answer::Service(s) = &*self.tx.borrow() {
            self.identities.change(
                s.endpoints.iter().map(|e| (e.addr, e.identity.as_ref())),
                [],
            );
        }
    }
}

impl Discover for Arc<ControlDiscover> {
    fn get(&self, authority: &str) -> watch::Receiver<Answer> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get(authority) {
            entry.idle.store(false, Ordering::Relaxed);
            return entry.tx.subscribe();
        }
        let (tx, rx) = watch::channel(Answer::Pending);
        let task = tokio::spawn(self.clone().follow(authority.to_owned(), tx.clone()));
        entries.insert(
            authority.to_owned(),
            Entry {
                tx,
                task: task.abort_handle(),
                idle: AtomicBool::new(false),
            },
        );
        rx
    }
}

#[cfg(test)]
mod rotation_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(ip: [u8; 4], identity: Option<&str>, ready: bool) -> proto::DestinationEndpoint {
        proto::DestinationEndpoint {
            address: ip.to_vec(),
            port: 9000,
            ready,
            identity: identity.map(str::to_owned),
            meshed: identity.is_some(),
            ..Default::default()
        }
    }

    fn update(endpoints: Vec<proto::DestinationEndpoint>) -> proto::DestinationUpdate {
        proto::DestinationUpdate {
            version: 1,
            update: Some(Update::Endpoints(proto::DestinationEndpoints {
                port: 8080,
                endpoints,
                ..Default::default()
            })),
        }
    }

    #[test]
    fn only_an_endpoint_with_a_sidecar_and_an_identity_is_reached_over_mtls() {
        let id = "spiffe://cluster.local/ns/shop/sa/api";
        assert_eq!(
            meshed(&endpoint([10, 0, 0, 1], Some(id), true)),
            Some(id.parse().unwrap())
        );
        assert_eq!(meshed(&endpoint([10, 0, 0, 1], None, true)), None);
        // A Pod without a sidecar: its identity is known, but nothing would terminate mTLS.
        let unmeshed = proto::DestinationEndpoint {
            meshed: false,
            ..endpoint([10, 0, 0, 1], Some(id), true)
        };
        assert_eq!(meshed(&unmeshed), None);
        // Meshed, but with no identity to verify: not dialled as a mesh peer.
        let anonymous = proto::DestinationEndpoint {
            meshed: true,
            ..endpoint([10, 0, 0, 1], None, true)
        };
        assert_eq!(meshed(&anonymous), None);
        assert_eq!(
            meshed(&endpoint([10, 0, 0, 1], Some("not-spiffe"), true)),
            None
        );
    }

    #[test]
    fn answers_compile_to_endpoints_and_a_balancer_over_the_ready_ones() {
        let config = BalancerConfig::default();
        let first = compile(
            &update(vec![
                endpoint(
                    [10, 0, 0, 1],
                    Some("spiffe://cluster.local/ns/shop/sa/api"),
                    true,
                ),
                endpoint([10, 0, 0, 2], None, false),
                endpoint([10, 0, 0, 3], None, true),
            ]),
            None,
            &config,
        );
        let Answer::Service(first) = first else {
            panic!("{first:?}")
        };
        assert_eq!(first.endpoints.len(), 3);
        let now = Instant::now();
        for _ in 0..50 {
            let pick = first.balancer.pick(None, &[], now).unwrap();
            assert_ne!(pick.addr(), "10.0.0.2:9000".parse().unwrap(), "not ready");
        }
        // None ready: every endpoint is a target rather than none.
        let Answer::Service(second) = compile(
            &update(vec![endpoint([10, 0, 0, 2], None, false)]),
            Some(&first),
            &config,
        ) else {
            panic!()
        };
        assert_eq!(
            second.balancer.pick(None, &[], now).unwrap().addr(),
            "10.0.0.2:9000".parse().unwrap()
        );
        let none = proto::DestinationUpdate {
            version: 2,
            update: Some(Update::NoDestination(proto::NoDestination {
                reason: "no Service shop/x".into(),
            })),
        };
        assert!(
            matches!(compile(&none, None, &config), Answer::NotService(r) if r.contains("shop/x"))
        );
    }
}
