//! `ferry up`: the control plane, the admin server and every data-plane part, in one process.
//! With `--source kubernetes` ([`kubernetes`]) the objects come from a Kubernetes API server
//! instead of the local cluster.

pub mod kubernetes;
pub mod program;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_control::Control;
use ferry_control::push::local::LocalParts;
use ferry_dns::Dns;
use ferry_gateway::Gateway;
use ferry_model::proto::Role;
use ferry_objects::files::WatchedFiles;
use ferry_orchestrator::apiserver::{self, ApiServer};
use ferry_orchestrator::network::{self, PodNetwork};
use ferry_orchestrator::{Admission, Feed, LocalApi, Orchestrator};
use ferry_runtime::admin::{Admin, AdminState};
use ferry_runtime::{Limits, Shutdown, SnapshotBus, StatusBoard};
use prometheus_client::registry::Registry;

/// Everything `ferry up` takes.
#[derive(Clone, Debug)]
pub struct UpConfig {
    pub paths: Vec<PathBuf>,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub dns: SocketAddr,
    /// Where names outside the cluster domain go (the caller reads /etc/resolv.conf for the
    /// default); empty refuses them.
    pub dns_upstreams: Vec<SocketAddr>,
    /// The host's search domains, the tail of a Pod's search path (for autopath).
    pub dns_search: Vec<String>,
    pub dns_autopath: bool,
    /// The gateway's access log: one JSON line per request on stdout.
    pub access_log: bool,
    /// The gateway's `--client-header-timeout` and `--keepalive-timeout`.
    pub client_header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub admin: SocketAddr,
    pub cluster_domain: String,
    pub debounce: Duration,
    /// The local cluster: pod and service ranges, the kubelet (what runs `ferry/echo`).
    pub local: ferry_orchestrator::Config,
    /// How Pods are networked (`--pod-network`, `auto` resolved by the caller with
    /// [`ferry_orchestrator::network::choose`]): netns mode makes the node's bridge and
    /// nftables table here, for `local.cluster.pod_cidr`.
    pub pod_network: PodNetwork,
    /// How long connections of the admin server, DNS over TCP and the L4 proxy may stay open.
    pub connections: ConnectionLimits,
    /// The Kubernetes API server (`--api`, `--state-dir`, `--write-kubeconfig`); none serves
    /// when absent.
    pub api: Option<apiserver::Config>,
    /// The service mesh's state (`--state-dir`: its CA, the per-Pod token key); with the netns
    /// pod network, Pods that ask for a sidecar get one, and the control channel is served to
    /// them on the node's bridge address. None: no mesh (Pods asking get a warning Event).
    pub mesh_state_dir: Option<PathBuf>,
}

/// The bounds on accepted connections of the parts other than the gateway, each its own, so
/// that none can take the descriptors the others need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `--admin-first-request-timeout`, `--admin-idle-timeout`, `--admin-max-connections`.
    pub admin: Limits,
    /// `--dns-tcp-first-query-timeout`, `--dns-tcp-idle-timeout`, `--dns-tcp-max-connections`.
    pub dns_tcp: Limits,
    /// `--l4-idle-timeout`.
    pub l4_idle: Duration,
    /// `--l4-max-connections`, per listening address.
    pub l4_max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            admin: Limits::ADMIN,
            dns_tcp: ferry_dns::TCP_LIMITS,
            l4_idle: ferry_l4::DEFAULT_IDLE_TIMEOUT,
            l4_max_connections: ferry_l4::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Control(#[from] ferry_control::Error),
    #[error("cannot watch the manifest paths: {0}")]
    Watch(#[from] notify::Error),
    #[error(transparent)]
    Runtime(#[from] ferry_runtime::Error),
    #[error(transparent)]
    Dns(#[from] ferry_dns::Error),
    #[error(transparent)]
    Gateway(#[from] ferry_gateway::Error),
    #[error(transparent)]
    L4(#[from] ferry_l4::Error),
    #[error(transparent)]
    Network(#[from] network::Error),
    #[error(transparent)]
    Api(#[from] apiserver::Error),
    #[error("the control plane stopped: {0}")]
    ControlPanicked(String),
    #[error("--cluster-domain {0:?}: {1}")]
    ClusterDomain(String, String),
    #[error("the mesh: {0}")]
    Mesh(String),
    #[error("the mesh's control channel: {0}")]
    Push(#[from] ferry_control::push::PushError),
}

/// What the kubelet injects into Pods that ask for a sidecar: `ferry-sidecar` (next to
/// `ferry`, else `ferry sidecar`: [`program::sidecar_command`]) reaching the
/// control channel at `listen` with the state directory's trust bundle, and a per-Pod token
/// signed with the state directory's key (the one the identity service checks). The mesh CA
/// is made here when missing, so the first sidecar finds its `--control-ca`.
fn mesh(
    state_dir: &std::path::Path,
    listen: SocketAddr,
    ferry: &std::path::Path,
) -> Result<ferry_orchestrator::inject::Mesh, Error> {
    use ferry_control::identity::{files, tokens::PodTokens};
    files::create_missing(state_dir).map_err(|e| Error::Mesh(e.to_string()))?;
    let tokens = PodTokens::load_or_create(state_dir).map_err(|e| Error::Mesh(e.to_string()))?;
    let (program, mut args) = program::sidecar_command(ferry);
    args.extend([
        "--control".to_owned(),
        format!("https://{listen}"),
        "--control-ca".to_owned(),
        state_dir.join("ca.crt").display().to_string(),
    ]);
    Ok(ferry_orchestrator::inject::Mesh {
        program,
        args,
        run_dir: state_dir.join("sidecars"),
        mint_token: Arc::new(move |claims: &ferry_orchestrator::inject::PodClaims| {
            tokens.mint(&ferry_control::identity::tokens::PodClaims {
                namespace: claims.namespace.clone(),
                pod: claims.pod.clone(),
                uid: claims.uid.clone(),
                service_account: claims.service_account.clone(),
                issued_at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            })
        }),
    })
}

/// A built `ferry up`: listeners bound, first snapshot published.
#[derive(Debug)]
pub struct Up {
    orchestrator: Orchestrator,
    control: Control<Feed>,
    admin: Admin,
    dns: Dns,
    gateway: Gateway,
    /// The L4 Service proxy, in loopback mode.
    l4: Option<ferry_l4::ServiceProxy>,
    api: Option<ApiServer>,
    bus: SnapshotBus,
    /// The gateway's and DNS's streams from the control plane (no sockets).
    local: LocalParts,
    /// The control channel the sidecars of meshed Pods reach (netns mode with a mesh).
    mesh: Option<ferry_control::push::PushServer>,
}

impl Up {
    pub async fn build(config: UpConfig) -> Result<Up, Error> {
        ferry_model::name::dns1123_subdomain(&config.cluster_domain)
            .map_err(|e| Error::ClusterDomain(config.cluster_domain.clone(), e))?;
        let bus = SnapshotBus::new();
        let status = StatusBoard::default();
        let mut registry = Registry::default();
        // The gateway and DNS take their views as a remote part does (the same stream and
        // receiver, whole view then deltas), over channels.
        let mut local_parts = LocalParts::new(bus.clone(), status.clone(), &mut registry);
        // The data planes bind their listeners first, so a port in use is found before any
        // Pod starts.
        let dns_config = ferry_dns::Config {
            upstreams: config.dns_upstreams.clone(),
            search: config.dns_search.clone(),
            autopath: config.dns_autopath,
            tcp: config.connections.dns_tcp,
            ..ferry_dns::Config::new(config.dns, config.cluster_domain.clone())
        };
        let dns_subscription =
            local_parts.connect(Role::Dns, "dns", crate::dns::check(&dns_config));
        let dns = Dns::build(dns_config, dns_subscription, &mut registry)?;
        let gateway = Gateway::build(
            ferry_gateway::Config {
                access_log: config.access_log,
                client_header_timeout: config.client_header_timeout,
                keepalive_timeout: config.keepalive_timeout,
                ..ferry_gateway::Config::new(config.http, config.https)
            },
            local_parts.connect(Role::Gateway, "gateway", Arc::new(crate::gateway::check)),
            &mut registry,
        )
        .await?;
        // In netns mode the kernel serves cluster IPs and node ports (the node's nftables
        // table); the L4 proxy serves them in loopback mode.
        let l4 = match config.pod_network {
            PodNetwork::Loopback => Some(
                ferry_l4::ServiceProxy::build(
                    ferry_l4::Config {
                        service_cidrs: vec![config.local.cluster.service_cidr],
                        idle_timeout: config.connections.l4_idle,
                        max_connections: config.connections.l4_max_connections,
                        ..ferry_l4::Config::default()
                    },
                    bus.subscribe("l4"),
                    &mut registry,
                )
                .await?,
            ),
            PodNetwork::Netns => None,
        };
        // The local cluster applies the files; the control plane learns what it runs through
        // its feed, and is asked before a change acts (as an admission webhook is).
        let files = WatchedFiles::start(config.paths.clone(), config.debounce)?;
        let mut local = config.local.clone();
        let mut mesh_listen = None;
        if config.pod_network == PodNetwork::Netns {
            // Torn down by the kubelet at shutdown, or when the last reference goes.
            let node = network::Node::setup(local.cluster.pod_cidr, local.cluster.service_cidr)?;
            // Pods resolve through the kube-dns Service (.10 of the service range), whose
            // port 53 the node DNATs to this DNS listener.
            let node = match network::cluster_dns_ip(local.cluster.service_cidr) {
                Some(ip) => {
                    let listener = dns.local_addr();
                    let host = match listener.ip() {
                        std::net::IpAddr::V4(v4) if !v4.is_unspecified() => v4,
                        _ => node.gateway(),
                    };
                    let listener = std::net::SocketAddrV4::new(host, listener.port());
                    node.with_cluster_dns(
                        network::ClusterDns { ip, listener },
                        &config.cluster_domain,
                    )
                }
                None => node,
            };
            let node = Arc::new(node);
            // The node's address on the pod network is the one Pods can reach.
            local.kubelet.host_ip = std::net::IpAddr::V4(node.gateway());
            if let Some(state_dir) = &config.mesh_state_dir {
                let listen = SocketAddr::from((node.gateway(), ferry_model::mesh::CONTROL_PORT));
                local.kubelet.mesh = Some(mesh(state_dir, listen, &local.kubelet.echo_program)?);
                mesh_listen = Some((listen, state_dir.clone()));
            }
            local.kubelet.network = Some(node);
        }
        let (orchestrator, feed) =
            Orchestrator::build(local, files, Admission::new(ferry_control::admits));
        // From here on Pods run: a failure stops them (within their grace) before it returns.
        let rest = async {
            let control = Control::build(feed, bus.clone(), status.clone(), &mut registry).await?;
            // Sidecars reach the control plane on the node's bridge address, as they would
            // reach `ferry control` in a cluster: the same TLS channel, subscriptions and CA.
            let mesh = match mesh_listen {
                Some((listen, state_dir)) => Some(
                    ferry_control::push::serve_for_pods(
                        listen,
                        state_dir,
                        config.cluster_domain.clone(),
                        control.pods(),
                        bus.clone(),
                        status.clone(),
                        &mut registry,
                    )
                    .await?,
                ),
                None => None,
            };
            let admin = Admin::build(
                config.admin,
                AdminState {
                    bus: bus.clone(),
                    status,
                    registry,
                    api: Some(Arc::new(LocalApi::new(orchestrator.handle()))),
                },
            )
            .await?
            .with_limits(config.connections.admin);
            let api = match config.api.clone() {
                Some(api) => Some(
                    ApiServer::build(api, orchestrator.handle().store())
                        .await?
                        .serving_writes(orchestrator.handle())
                        .with_kubelet(orchestrator.handle().kubelet().clone()),
                ),
                None => None,
            };
            Ok::<_, Error>((control, admin, api, mesh))
        };
        let (control, admin, api, mesh) = match rest.await {
            Ok(built) => built,
            Err(e) => {
                orchestrator.stop().await;
                return Err(e);
            }
        };
        // The gateway and DNS have their first view before `ferry up` is built.
        local_parts
            .settled(bus.current().version, Duration::from_secs(10))
            .await;
        Ok(Up {
            orchestrator,
            control,
            admin,
            dns,
            gateway,
            l4,
            api,
            bus,
            local: local_parts,
            mesh,
        })
    }

    /// Where the Kubernetes API listens, when it is served.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// The admin kubeconfig written, when the Kubernetes API is served.
    pub fn kubeconfig(&self) -> Option<&std::path::Path> {
        self.api.as_ref().map(ApiServer::kubeconfig)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The gateway's plain HTTP listener.
    pub fn http_addr(&self) -> SocketAddr {
        self.gateway
            .http_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The gateway's TLS listener.
    pub fn https_addr(&self) -> SocketAddr {
        self.gateway
            .https_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Where cluster DNS listens (UDP and TCP).
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns.local_addr()
    }

    pub fn bus(&self) -> &SnapshotBus {
        &self.bus
    }

    /// Runs until shutdown; then the admin server drains and everything stops.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), Error> {
        tracing::info!(admin = %self.admin_addr(), version = self.bus.current().version, "ferry is up");
        let admin = tokio::spawn(self.admin.run(shutdown.clone()));
        let dns = tokio::spawn(self.dns.run(shutdown.clone()));
        let gateway = tokio::spawn(self.gateway.run(shutdown.clone()));
        let l4 = self.l4.map(|l4| tokio::spawn(l4.run(shutdown.clone())));
        let api = self.api.map(|api| tokio::spawn(api.run(shutdown.clone())));
        let local = tokio::spawn(self.local.run(shutdown.clone()));
        let mesh = self.mesh.map(|m| tokio::spawn(m.run(shutdown.clone())));
        let control = tokio::spawn(self.control.run(shutdown.clone()));
        // The local cluster stops its Pods last of all (within their grace period).
        self.orchestrator.run(shutdown).await;
        let control = control.await;
        let _ = admin.await;
        let _ = dns.await;
        let _ = gateway.await;
        if let Some(l4) = l4 {
            let _ = l4.await;
        }
        let _ = local.await;
        if let Some(mesh) = mesh {
            let _ = mesh.await;
        }
        if let Some(api) = api {
            let _ = api.await;
        }
        match control {
            Ok(done) => done?,
            // A control plane that panicked is an error, not a clean exit.
            Err(e) => return Err(Error::ControlPanicked(e.to_string())),
        }
        Ok(())
    }
}
