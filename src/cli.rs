//! The command line: every subcommand and flag of `ferry`, with their defaults and the
//! parsers of the values clap cannot read by itself. `main.rs` wires what is parsed here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ferry::get::{Output, Resource};
use ferry_control::kubernetes::StatusAddress;
use ferry_orchestrator::ipam::Cidr;
use ferry_runtime::Limits;

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "A Kubernetes service mesh and ingress gateway"
)]
pub(crate) struct Cli {
    /// Log line format (filter with RUST_LOG).
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text)]
    pub(crate) log_format: LogFormatArg,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum LogFormatArg {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum PodNetworkArg {
    Auto,
    Netns,
    Loopback,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the control plane and every data-plane part in one process.
    Up {
        /// Manifest file or directory (repeatable).
        #[arg(
            short = 'f',
            long = "filename",
            value_name = "PATH",
            default_value = "configs/demo"
        )]
        paths: Vec<PathBuf>,
        /// Plain HTTP listener of the ingress gateway.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        http: SocketAddr,
        /// HTTPS listener of the ingress gateway.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
        https: SocketAddr,
        /// Cluster DNS, UDP and TCP.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5353")]
        dns: SocketAddr,
        /// Admin API: /live /ready /config /status /metrics.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        #[command(flatten)]
        admin_args: AdminArgs,
        #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
        cluster_domain: String,
        #[command(flatten)]
        dns_args: DnsArgs,
        /// Boxed: `up` has far more flags than any other command.
        #[command(flatten)]
        l4_args: Box<L4Args>,
        /// The gateway's access log: one JSON line per request on stdout.
        #[arg(long)]
        access_log: bool,
        #[command(flatten)]
        client_timeouts: ClientTimeoutArgs,
        /// How Pods are networked: netns (a network namespace per Pod on a node bridge,
        /// Services in the kernel's nftables), loopback (an address per Pod on the host's
        /// loopback, Services through the L4 proxy), auto (netns when ferry may create network
        /// namespaces, else loopback; one log line says which and why).
        #[arg(long, value_enum, value_name = "MODE", default_value_t = PodNetworkArg::Auto)]
        pod_network: PodNetworkArg,
        /// Pod addresses, one per Pod [default: 10.244.0.0/16 in netns mode, 127.1.0.0/16 in
        /// loopback mode].
        #[arg(long, value_name = "CIDR")]
        pod_cidr: Option<Cidr>,
        /// Cluster IPs of Services [default: 10.96.0.0/16 in netns mode, 127.2.0.0/16 (where
        /// the L4 Service proxy listens) in loopback mode].
        #[arg(long, value_name = "CIDR")]
        service_cidr: Option<Cidr>,
        /// The most Pods the local runtime runs at once; more wait, Pending.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        max_pods: usize,
        /// Boxed, as `l4_args`.
        #[command(flatten)]
        api_args: Box<ApiArgs>,
        /// Boxed, as `l4_args`.
        #[command(flatten)]
        source_args: Box<SourceArgs>,
    },
    /// Run cluster DNS alone, serving a snapshot file (the JSON of admin /config?private_keys=true)
    /// or what `ferry control` pushes.
    Dns {
        /// The snapshot to serve (or --control).
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "control",
            conflicts_with = "control"
        )]
        snapshot: Option<PathBuf>,
        #[command(flatten)]
        control: ControlArgs,
        /// UDP and TCP.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5353")]
        listen: SocketAddr,
        /// Admin API: /live /ready /config /metrics.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
        cluster_domain: String,
        #[command(flatten)]
        dns_args: DnsArgs,
        /// UDP worker threads, each with a socket of its own on the same address
        /// (SO_REUSEPORT) [default: the CPUs this process may use].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        workers: Option<u16>,
    },
    /// Run the ingress gateway alone, serving a snapshot file (the JSON of admin
    /// /config?private_keys=true) or what `ferry control` pushes.
    Gateway {
        /// The snapshot to serve (or --control).
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "control",
            conflicts_with = "control"
        )]
        snapshot: Option<PathBuf>,
        #[command(flatten)]
        control: ControlArgs,
        /// Plain HTTP listener.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        http: SocketAddr,
        /// HTTPS listener.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
        https: SocketAddr,
        /// Admin API: /live /ready /config /metrics.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        /// One JSON line per request on stdout.
        #[arg(long)]
        access_log: bool,
        #[command(flatten)]
        client_timeouts: ClientTimeoutArgs,
        /// Threads serving client connections, each with a current-thread runtime and
        /// listeners of its own (SO_REUSEPORT) [default: the CPUs this process may use].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        workers: Option<u16>,
    },
    /// Run the control plane alone over manifest files and push snapshots to the gateways and
    /// DNS servers that subscribe (`ferry gateway|dns --control`), over gRPC and TLS.
    Control {
        /// Manifest file or directory (repeatable), watched for changes; required unless
        /// --source kubernetes.
        #[arg(short = 'f', long = "filename", value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Where parts subscribe (gRPC over TLS).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
        /// Holds the mesh CA (ca.crt, the trust bundle parts pass as --control-ca; root.*,
        /// intermediate.*), the join-token and pod-token.key, made on first start.
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        /// Admin API: /live /ready /config /status /metrics.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        /// The suffix of the Service names sidecars subscribe to (name.namespace.svc.DOMAIN),
        /// and the trust domain of workload identities (spiffe://DOMAIN/ns/NS/sa/SA).
        #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
        cluster_domain: String,
        #[command(flatten)]
        source_args: SourceArgs,
        #[command(flatten)]
        identity_args: IdentityArgs,
    },
    /// Validate manifests: exit 0 if valid, else 1 with one line per problem. With
    /// --identity, check a `ferry control` state directory's mesh CA for expiry instead.
    Check {
        #[arg(
            short = 'f',
            long = "filename",
            value_name = "PATH",
            required_unless_present = "identity"
        )]
        paths: Vec<PathBuf>,
        /// Warn (exit 1) when the mesh CA's root or intermediate expires within 30 days.
        #[arg(long, requires = "state_dir")]
        identity: bool,
        /// The `ferry control` state directory (with --identity).
        #[arg(long, value_name = "DIR", requires = "identity")]
        state_dir: Option<PathBuf>,
    },
    /// The mesh CA of a `ferry control` state directory.
    Identity {
        #[command(subcommand)]
        action: IdentityCommand,
    },
    /// Print the admin kubeconfig `ferry up` wrote for its Kubernetes API.
    Kubeconfig {
        #[command(flatten)]
        state: StateDirArg,
    },
    /// List what a running ferry serves, read from its admin API.
    Get {
        #[arg(value_enum)]
        resource: Resource,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        /// Only this namespace's workloads (`get mesh`).
        #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
        namespace: Option<String>,
        /// Every namespace (the default of every `ferry get` list).
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// How long `get mesh` watches the sidecars (e.g. 1s, 500ms, 10s); default 1s.
        #[arg(long, value_parser = ferry_load::duration::parse)]
        window: Option<Duration>,
    },
    /// Print a Pod's container log (stdout and stderr), kept in a bounded ring.
    Logs {
        pod: String,
        /// The container, when the Pod has several.
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// Keep printing what the container writes until the Pod is gone.
        #[arg(short = 'f', long)]
        follow: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Run a command in a container of a Pod, on this machine: in the Pod's network namespace
    /// (netns mode) with the container's environment, as kubectl exec. Exits with the
    /// command's status.
    Exec {
        pod: String,
        /// The container [default: the kubectl.kubernetes.io/default-container annotation's,
        /// else the first].
        #[arg(short = 'c', long)]
        container: Option<String>,
        #[command(flatten)]
        target: Target,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<std::ffi::OsString>,
    },
    /// Set a Deployment's replicas: `ferry scale deployment/NAME --replicas N`.
    Scale {
        deployment: String,
        #[arg(long)]
        replicas: i32,
        #[command(flatten)]
        target: Target,
    },
    /// Follow, list or undo a Deployment's rollouts.
    Rollout {
        #[command(subcommand)]
        action: Rollout,
    },
    /// Run the echo app: answers every request with JSON describing it (HTTP/1.1 and h2c).
    Echo {
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
        listen: SocketAddr,
        /// Name in replies (default: "echo").
        #[arg(long, default_value = "echo")]
        name: String,
        /// Exit once this process's parent is no longer PID: how the local runtime runs
        /// `ferry/echo`, so a ferry killed outright leaves no Pod behind holding its address.
        #[arg(long, value_name = "PID")]
        parent_pid: Option<u32>,
    },
    /// Put a URL under HTTP load and report latency percentiles, status codes and errors.
    Load(Box<ferry_load::Args>),
    /// Run the mesh sidecar of one Pod: mTLS in and out, authorization, per-request balancing.
    Sidecar(Box<ferry::sidecar::Args>),
}

/// `ferry identity ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum IdentityCommand {
    /// Rotate the intermediate (new certificates chain to the same root; old ones stay valid),
    /// or with --root start a root rotation (old and new roots trusted together), finished
    /// with --root --finish once every workload has renewed. A running `ferry control` on the
    /// state directory picks the change up within a second.
    Rotate {
        /// Rotate the root (phase 1).
        #[arg(long)]
        root: bool,
        /// Phase 2 of a root rotation: stop trusting the old root.
        #[arg(long, requires = "root")]
        finish: bool,
        /// The `ferry control` state directory.
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
    },
}

/// The mesh CA and the workload certificates of `ferry control`.
#[derive(Debug, Args)]
pub(crate) struct IdentityArgs {
    /// The user's own root(s), PEM: the trust bundle, instead of a CA generated in --state-dir.
    #[arg(
        long,
        value_name = "FILE",
        requires_all = ["identity_intermediate", "identity_intermediate_key"]
    )]
    pub(crate) identity_root: Option<PathBuf>,
    /// The issuing intermediate, PEM (any further certificates: its chain up to a root).
    #[arg(long, value_name = "FILE", requires = "identity_root")]
    pub(crate) identity_intermediate: Option<PathBuf>,
    /// The intermediate's private key, PEM (PKCS#8, ECDSA, Ed25519 or RSA).
    #[arg(long, value_name = "FILE", requires = "identity_root")]
    pub(crate) identity_intermediate_key: Option<PathBuf>,
    /// How long a workload certificate lives (sidecars renew at 70 %), e.g. 24h, 90m, 6s.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = ferry_load::duration::parse)]
    pub(crate) workload_cert_ttl: Duration,
}

impl IdentityArgs {
    pub(crate) fn config(self) -> Result<ferry_control::identity::IdentityConfig, String> {
        if self.workload_cert_ttl < Duration::from_secs(2) {
            return Err("--workload-cert-ttl: at least 2s".to_owned());
        }
        let ca = match (
            self.identity_root,
            self.identity_intermediate,
            self.identity_intermediate_key,
        ) {
            (Some(root), Some(intermediate), Some(intermediate_key)) => {
                Some(ferry_control::identity::CaSource::Files {
                    root,
                    intermediate,
                    intermediate_key,
                })
            }
            (None, None, None) => None,
            _ => {
                return Err("--identity-root, --identity-intermediate and --identity-intermediate-key go together".to_owned());
            }
        };
        Ok(ferry_control::identity::IdentityConfig {
            ca,
            workload_ttl: self.workload_cert_ttl,
            ..Default::default()
        })
    }
}

/// Which running ferry, and which namespace (found from the name when left out).
#[derive(Debug, Args)]
pub(crate) struct Target {
    #[arg(short = 'n', long)]
    pub(crate) namespace: Option<String>,
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
    pub(crate) admin: SocketAddr,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Rollout {
    /// Wait until the Deployment's rollout completes, printing its progress.
    Status {
        deployment: String,
        /// Give up after this long (e.g. 90s, 5m); default: wait.
        #[arg(long, value_parser = ferry_load::duration::parse)]
        timeout: Option<Duration>,
        #[command(flatten)]
        target: Target,
    },
    /// List the Deployment's revisions.
    History {
        deployment: String,
        #[command(flatten)]
        target: Target,
    },
    /// Go back to the previous revision's pod template, or to --to-revision.
    Undo {
        deployment: String,
        #[arg(long)]
        to_revision: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
}

/// Subscribing to `ferry control` (`gateway` and `dns`).
#[derive(Debug, Args)]
pub(crate) struct ControlArgs {
    /// The control plane to subscribe to, https://HOST:PORT (instead of --snapshot).
    #[arg(long, value_name = "URL", requires_all = ["control_ca", "token_file"])]
    pub(crate) control: Option<http::Uri>,
    /// The CA that signed the control plane's certificate (its state dir's ca.crt).
    #[arg(long, value_name = "FILE", requires = "control")]
    pub(crate) control_ca: Option<PathBuf>,
    /// The join token (its state dir's join-token).
    #[arg(long, value_name = "FILE", requires = "control")]
    pub(crate) token_file: Option<PathBuf>,
    /// This part's name, shown by `ferry get proxies` [default: HOSTNAME-PID].
    #[arg(long, value_name = "NAME", requires = "control")]
    pub(crate) name: Option<String>,
    /// The node this part runs on [default: the host's name].
    #[arg(long, value_name = "NAME", requires = "control")]
    pub(crate) node: Option<String>,
}

impl ControlArgs {
    /// The part's snapshot source: the file, or the control plane with its CA and token read.
    pub(crate) fn source(
        self,
        snapshot: Option<PathBuf>,
        role: ferry_runtime::subscribe::Role,
    ) -> Result<ferry::alone::SnapshotSource, String> {
        use ferry::alone::SnapshotSource;
        let Some(control) = self.control else {
            return snapshot
                .map(SnapshotSource::File)
                .ok_or_else(|| "--snapshot FILE or --control URL is required".to_owned());
        };
        let ca = self.control_ca.ok_or("--control needs --control-ca FILE")?;
        let token = self.token_file.ok_or("--control needs --token-file FILE")?;
        let ca_pem =
            std::fs::read(&ca).map_err(|e| format!("--control-ca {}: {e}", ca.display()))?;
        let token = std::fs::read_to_string(&token)
            .map_err(|e| format!("--token-file {}: {e}", token.display()))?
            .trim()
            .to_owned();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned());
        Ok(SnapshotSource::Control(ferry_runtime::subscribe::Config {
            control,
            ca_pem,
            token,
            role,
            name: self
                .name
                .unwrap_or_else(|| format!("{host}-{}", std::process::id())),
            node: self.node.unwrap_or(host),
        }))
    }
}

/// Cluster DNS settings shared by `up` and `dns`.
#[derive(Debug, Args)]
pub(crate) struct DnsArgs {
    /// Where names outside the cluster domain go, IP or IP:PORT (repeatable; default: the
    /// nameservers in /etc/resolv.conf).
    #[arg(long, value_name = "ADDR", value_parser = ferry::dns::parse_upstream)]
    pub(crate) dns_upstream: Vec<SocketAddr>,
    /// Walk a Pod's search path server-side: one round trip instead of one per search domain.
    #[arg(long)]
    pub(crate) dns_autopath: bool,
    /// Close a DNS-over-TCP connection whose first query has not arrived in this long.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = positive_duration)]
    pub(crate) dns_tcp_first_query_timeout: Duration,
    /// Close a DNS-over-TCP connection with no query in progress for this long.
    #[arg(long, value_name = "DURATION", default_value = "8s", value_parser = positive_duration)]
    pub(crate) dns_tcp_idle_timeout: Duration,
    /// DNS-over-TCP connections open at once; at the limit the longest idle one is closed to
    /// make room.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) dns_tcp_max_connections: u32,
}

impl DnsArgs {
    pub(crate) fn tcp_limits(&self) -> Limits {
        Limits {
            first_request: self.dns_tcp_first_query_timeout,
            idle: self.dns_tcp_idle_timeout,
            max_connections: self.dns_tcp_max_connections as usize,
        }
    }
}

/// The L4 Service proxy's connections (`ferry up`).
#[derive(Debug, Args)]
pub(crate) struct L4Args {
    /// Close an L4 Service proxy connection with no byte either way for this long (nginx
    /// stream's proxy_timeout).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = positive_duration)]
    pub(crate) l4_idle_timeout: Duration,
    /// L4 Service proxy connections open at once per listening address (cluster IP:port,
    /// node port); at the limit it stops accepting until one ends (the gateway's cap).
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) l4_max_connections: u32,
}

/// Where ferry keeps its state (the API server's CA, token and kubeconfig).
#[derive(Debug, Args)]
pub(crate) struct StateDirArg {
    /// Default: $XDG_STATE_HOME/ferry, else ~/.local/state/ferry.
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
}

impl StateDirArg {
    pub(crate) fn dir(&self) -> Result<PathBuf, String> {
        if let Some(dir) = &self.state_dir {
            return Ok(dir.clone());
        }
        let var = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(state) = var("XDG_STATE_HOME") {
            return Ok(state.join("ferry"));
        }
        var("HOME")
            .map(|home| home.join(".local/state/ferry"))
            .ok_or_else(|| "--state-dir: HOME is not set; name the directory".to_owned())
    }
}

/// The Kubernetes API server of `ferry up`.
#[derive(Debug, Args)]
pub(crate) struct ApiArgs {
    /// The Kubernetes API (HTTPS, bearer token), for kubectl; `none` serves none.
    #[arg(long, value_name = "ADDR|none", default_value = "127.0.0.1:6443", value_parser = api_addr)]
    pub(crate) api: ApiAddr,
    #[command(flatten)]
    pub(crate) state: StateDirArg,
    /// Where to write the admin kubeconfig (default: <state-dir>/kubeconfig; ~/.kube/config is
    /// never touched).
    #[arg(long, value_name = "FILE")]
    pub(crate) write_kubeconfig: Option<PathBuf>,
}

/// Where `ferry up` reads its objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SourceArg {
    /// The local cluster, running the -f manifests.
    Local,
    /// A Kubernetes API server (--kubeconfig): no local cluster, no Pods, no L4 proxy.
    Kubernetes,
}

/// `ferry up --source`, and what `--source kubernetes` reads.
#[derive(Debug, Args)]
pub(crate) struct SourceArgs {
    /// Where the objects come from: local (the local cluster runs the -f manifests) or
    /// kubernetes (a Kubernetes API server's; the local cluster's flags are not used).
    #[arg(long, value_enum, value_name = "SOURCE", default_value_t = SourceArg::Local)]
    pub(crate) source: SourceArg,
    /// With --source kubernetes: the kubeconfig to use [default: KUBECONFIG, else
    /// ~/.kube/config, else the Pod's service account].
    #[arg(long, value_name = "FILE")]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// With --source kubernetes: the address (IP or DNS name) written to status.loadBalancer of
    /// ferry's Ingresses [default (up): the --http IP, none when unspecified; control: none].
    #[arg(long, value_name = "ADDR", value_parser = publish_address)]
    pub(crate) publish_address: Option<StatusAddress>,
}

impl SourceArgs {
    /// `--kubeconfig` and `--publish-address` without `--source kubernetes` are mistakes.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.source == SourceArg::Local {
            if self.kubeconfig.is_some() {
                return Err("--kubeconfig is read only with --source kubernetes".into());
            }
            if self.publish_address.is_some() {
                return Err("--publish-address is read only with --source kubernetes".into());
            }
        }
        Ok(())
    }
}

pub(crate) fn publish_address(value: &str) -> Result<StatusAddress, String> {
    StatusAddress::parse(value)
}

/// `--api`: an address, or `none` (no Kubernetes API served).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ApiAddr(pub(crate) Option<SocketAddr>);

pub(crate) fn api_addr(value: &str) -> Result<ApiAddr, String> {
    if value == "none" {
        return Ok(ApiAddr(None));
    }
    value
        .parse()
        .map(|addr| ApiAddr(Some(addr)))
        .map_err(|e| format!("{e}: an address such as 127.0.0.1:6443, or none"))
}

/// The admin server's connections (`ferry up`).
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    /// Close an admin connection whose first request has not arrived in this long.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = positive_duration)]
    pub(crate) admin_first_request_timeout: Duration,
    /// Close an admin connection with no request in progress for this long.
    #[arg(long, value_name = "DURATION", default_value = "75s", value_parser = positive_duration)]
    pub(crate) admin_idle_timeout: Duration,
    /// Admin connections open at once; at the limit the longest idle one is closed to make room.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) admin_max_connections: u32,
}

impl AdminArgs {
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            first_request: self.admin_first_request_timeout,
            idle: self.admin_idle_timeout,
            max_connections: self.admin_max_connections as usize,
        }
    }
}

/// A duration such as `2s`, `500ms`, `10m` (a bare number is seconds), more than zero.
pub(crate) fn positive_duration(text: &str) -> Result<Duration, String> {
    match ferry_load::duration::parse(text)? {
        d if d.is_zero() => Err(format!("{text:?}: must be more than zero")),
        d => Ok(d),
    }
}

/// The gateway's client connection timeouts, shared by `up` and `gateway` (nginx's names and
/// defaults; `60s`, `500ms`, `2m`, a bare number is seconds).
#[derive(Debug, Args)]
pub(crate) struct ClientTimeoutArgs {
    /// A connection's first request head, and any head once begun, must be complete within
    /// this, else the connection is closed.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = positive_duration)]
    pub(crate) client_header_timeout: Duration,
    /// A connection with no request in progress (an HTTP/2 one with no open stream) is closed
    /// after this (HTTP/2 with GOAWAY).
    #[arg(long, value_name = "DURATION", default_value = "75s", value_parser = positive_duration)]
    pub(crate) keepalive_timeout: Duration,
}

#[cfg(test)]
mod tests;
