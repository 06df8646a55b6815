//! The `ferry` binary: parses the command line and hands each subcommand to its crate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ferry::get::{self, Output, Resource};
use ferry::up::{ConnectionLimits, Up, UpConfig};
use ferry::workloads;
use ferry_orchestrator::ipam::Cidr;
use ferry_runtime::Limits;
use ferry_runtime::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "A Kubernetes service mesh and ingress gateway"
)]
struct Cli {
    /// Log line format (filter with RUST_LOG).
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PodNetworkArg {
    Auto,
    Netns,
    Loopback,
}

#[derive(Debug, Subcommand)]
enum Command {
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
        /// How Pods are networked: netns (a network namespace per Pod on a node bridge),
        /// loopback (an address per Pod on the host's loopback), auto (netns when ferry may
        /// create network namespaces, else loopback). Loopback is the default until Pods in
        /// namespaces reach cluster IPs and cluster DNS.
        #[arg(long, value_enum, value_name = "MODE", default_value_t = PodNetworkArg::Loopback)]
        pod_network: PodNetworkArg,
        /// Pod addresses, one per Pod [default: 10.244.0.0/16 in netns mode, 127.1.0.0/16 in
        /// loopback mode].
        #[arg(long, value_name = "CIDR")]
        pod_cidr: Option<Cidr>,
        /// Cluster IPs of Services, where the L4 Service proxy listens.
        #[arg(long, value_name = "CIDR", default_value = "127.2.0.0/16")]
        service_cidr: Cidr,
        /// The most Pods the local runtime runs at once; more wait, Pending.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        max_pods: usize,
        /// Boxed, as `l4_args`.
        #[command(flatten)]
        api_args: Box<ApiArgs>,
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
        /// Manifest file or directory (repeatable), watched for changes.
        #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
        paths: Vec<PathBuf>,
        /// Where parts subscribe (gRPC over TLS).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7443")]
        listen: SocketAddr,
        /// Holds the CA (ca.crt, ca.key) and the join-token, made on first start.
        #[arg(long, value_name = "DIR")]
        state_dir: PathBuf,
        /// Admin API: /live /ready /config /status /metrics.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
    },
    /// Validate manifests: exit 0 if valid, else 1 with one line per problem.
    Check {
        #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
        paths: Vec<PathBuf>,
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
}

/// Which running ferry, and which namespace (found from the name when left out).
#[derive(Debug, Args)]
struct Target {
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
}

#[derive(Debug, Subcommand)]
enum Rollout {
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
struct ControlArgs {
    /// The control plane to subscribe to, https://HOST:PORT (instead of --snapshot).
    #[arg(long, value_name = "URL", requires_all = ["control_ca", "token_file"])]
    control: Option<http::Uri>,
    /// The CA that signed the control plane's certificate (its state dir's ca.crt).
    #[arg(long, value_name = "FILE", requires = "control")]
    control_ca: Option<PathBuf>,
    /// The join token (its state dir's join-token).
    #[arg(long, value_name = "FILE", requires = "control")]
    token_file: Option<PathBuf>,
    /// This part's name, shown by `ferry get proxies` [default: HOSTNAME-PID].
    #[arg(long, value_name = "NAME", requires = "control")]
    name: Option<String>,
    /// The node this part runs on [default: the host's name].
    #[arg(long, value_name = "NAME", requires = "control")]
    node: Option<String>,
}

impl ControlArgs {
    /// The part's snapshot source: the file, or the control plane with its CA and token read.
    fn source(
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
struct DnsArgs {
    /// Where names outside the cluster domain go, IP or IP:PORT (repeatable; default: the
    /// nameservers in /etc/resolv.conf).
    #[arg(long, value_name = "ADDR", value_parser = ferry::dns::parse_upstream)]
    dns_upstream: Vec<SocketAddr>,
    /// Walk a Pod's search path server-side: one round trip instead of one per search domain.
    #[arg(long)]
    dns_autopath: bool,
    /// Close a DNS-over-TCP connection whose first query has not arrived in this long.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = positive_duration)]
    dns_tcp_first_query_timeout: Duration,
    /// Close a DNS-over-TCP connection with no query in progress for this long.
    #[arg(long, value_name = "DURATION", default_value = "8s", value_parser = positive_duration)]
    dns_tcp_idle_timeout: Duration,
    /// DNS-over-TCP connections open at once; at the limit the longest idle one is closed to
    /// make room.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    dns_tcp_max_connections: u32,
}

impl DnsArgs {
    fn tcp_limits(&self) -> Limits {
        Limits {
            first_request: self.dns_tcp_first_query_timeout,
            idle: self.dns_tcp_idle_timeout,
            max_connections: self.dns_tcp_max_connections as usize,
        }
    }
}

/// The L4 Service proxy's connections (`ferry up`).
#[derive(Debug, Args)]
struct L4Args {
    /// Close an L4 Service proxy connection with no byte either way for this long (nginx
    /// stream's proxy_timeout).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = positive_duration)]
    l4_idle_timeout: Duration,
    /// L4 Service proxy connections open at once per listening address (cluster IP:port,
    /// node port); at the limit it stops accepting until one ends (the gateway's cap).
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    l4_max_connections: u32,
}

/// Where ferry keeps its state (the API server's CA, token and kubeconfig).
#[derive(Debug, Args)]
struct StateDirArg {
    /// Default: $XDG_STATE_HOME/ferry, else ~/.local/state/ferry.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

impl StateDirArg {
    fn dir(&self) -> Result<PathBuf, String> {
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
struct ApiArgs {
    /// The Kubernetes API (HTTPS, bearer token), for kubectl; `none` serves none.
    #[arg(long, value_name = "ADDR|none", default_value = "127.0.0.1:6443", value_parser = api_addr)]
    api: ApiAddr,
    #[command(flatten)]
    state: StateDirArg,
    /// Where to write the admin kubeconfig (default: <state-dir>/kubeconfig; ~/.kube/config is
    /// never touched).
    #[arg(long, value_name = "FILE")]
    write_kubeconfig: Option<PathBuf>,
}

/// `--api`: an address, or `none` (no Kubernetes API served).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ApiAddr(Option<SocketAddr>);

fn api_addr(value: &str) -> Result<ApiAddr, String> {
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
struct AdminArgs {
    /// Close an admin connection whose first request has not arrived in this long.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = positive_duration)]
    admin_first_request_timeout: Duration,
    /// Close an admin connection with no request in progress for this long.
    #[arg(long, value_name = "DURATION", default_value = "75s", value_parser = positive_duration)]
    admin_idle_timeout: Duration,
    /// Admin connections open at once; at the limit the longest idle one is closed to make room.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    admin_max_connections: u32,
}

impl AdminArgs {
    fn limits(&self) -> Limits {
        Limits {
            first_request: self.admin_first_request_timeout,
            idle: self.admin_idle_timeout,
            max_connections: self.admin_max_connections as usize,
        }
    }
}

/// A duration such as `2s`, `500ms`, `10m` (a bare number is seconds), more than zero.
fn positive_duration(text: &str) -> Result<Duration, String> {
    match ferry_load::duration::parse(text)? {
        d if d.is_zero() => Err(format!("{text:?}: must be more than zero")),
        d => Ok(d),
    }
}

/// The gateway's client connection timeouts, shared by `up` and `gateway` (nginx's names and
/// defaults; `60s`, `500ms`, `2m`, a bare number is seconds).
#[derive(Debug, Args)]
struct ClientTimeoutArgs {
    /// A connection's first request head, and any head once begun, must be complete within
    /// this, else the connection is closed.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = positive_duration)]
    client_header_timeout: Duration,
    /// A connection with no request in progress (an HTTP/2 one with no open stream) is closed
    /// after this (HTTP/2 with GOAWAY).
    #[arg(long, value_name = "DURATION", default_value = "75s", value_parser = positive_duration)]
    keepalive_timeout: Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match cli.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    if let Err(e) = telemetry::init(format) {
        eprintln!("ferry: {e}");
        return ExitCode::FAILURE;
    }
    // As Go does at start: the soft limit of 1,024 descriptors is far below what the hard limit
    // allows, and every connection, Pod pipe and DNS socket takes one.
    ferry_runtime::descriptors::raise_nofile_limit();
    if let Command::Check { paths } = cli.command {
        return check(paths);
    }
    if let Command::Load(args) = cli.command {
        return load(*args);
    }
    if let Command::Kubeconfig { state } = &cli.command {
        return kubeconfig(state);
    }
    if let Command::Exec {
        pod,
        container,
        target,
        command,
    } = cli.command
    {
        return exec(&pod, container.as_deref(), &target, &command);
    }
    // The gateway alone runs its workers on current-thread runtimes (the first on this one):
    // no work stealing, no wake-ups across threads.
    let mut builder = match cli.command {
        Command::Gateway { .. } => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async_main(cli.command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `ferry kubeconfig`: prints the kubeconfig `ferry up` keeps in its state directory.
fn kubeconfig(state: &StateDirArg) -> ExitCode {
    let dir = match state.dir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = ferry_orchestrator::apiserver::kubeconfig_path(&dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "ferry: {}: {e} (`ferry up --state-dir {}` writes it)",
                path.display(),
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}

fn check(paths: Vec<PathBuf>) -> ExitCode {
    let problems = ferry_control::check(paths);
    let errors = problems.iter().filter(|p| p.is_error()).count();
    for p in &problems {
        if p.is_error() {
            println!("{p}");
        } else {
            eprintln!("warning: {p}");
        }
    }
    if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `ferry load` runs its own worker threads, so it does not use the shared runtime.
fn load(args: ferry_load::Args) -> ExitCode {
    use std::io::IsTerminal;
    let result = ferry_load::Config::from_args(args).and_then(|mut config| {
        config.progress = std::io::stdout().is_terminal();
        ferry_load::run(&config)
    });
    match result {
        Ok(results) => {
            print!("{}", results.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferry load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A shutdown that also comes once `parent` is no longer this process's parent (it died and
/// this process was re-parented). Polled, since a parent-death signal needs unsafe code between
/// fork and exec; the parent names itself, so a parent gone before this runs is noticed too.
fn with_parent(parent: u32, shutdown: ferry_runtime::Shutdown) -> ferry_runtime::Shutdown {
    let (trigger, both) = ferry_runtime::shutdown::channel();
    tokio::spawn(async move {
        let mut shutdown = shutdown;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                _ = tick.tick() => if std::os::unix::process::parent_id() != parent {
                    tracing::info!(parent, "the parent process is gone; shutting down");
                    break;
                },
            }
        }
        trigger.trigger();
    });
    both
}

/// `ferry exec`: asks the running ferry how, then runs the command here, with the terminal's
/// stdin, stdout and stderr, and exits as it did (128 + the signal when one ended it).
fn exec(
    pod: &str,
    container: Option<&str>,
    target: &Target,
    command: &[std::ffi::OsString],
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ns = target.namespace.as_deref();
    let planned = runtime.block_on(workloads::exec_plan(target.admin, ns, pod, container));
    drop(runtime);
    let plan = match planned {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("ferry: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !plan.defaulted_from.is_empty() {
        eprintln!(
            "Defaulted container {:?} out of: {}",
            plan.container,
            plan.defaulted_from.join(", ")
        );
    }
    let status = workloads::exec_command(&plan, command).map(|mut c| c.status());
    match status {
        Err(e) => {
            eprintln!("ferry: {e}");
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!(
                "ferry: cannot run {:?}: {e}",
                command.first().unwrap_or(&"".into())
            );
            ExitCode::from(127)
        }
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt as _;
            let code = status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(1);
            ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
        }
    }
}

async fn async_main(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    let (trigger, shutdown) = ferry_runtime::shutdown::channel();
    tokio::spawn(async move {
        ferry_runtime::shutdown::signal().await;
        tracing::info!("shutting down");
        trigger.trigger();
    });
    match command {
        Command::Up {
            paths,
            http,
            https,
            dns,
            admin,
            admin_args,
            cluster_domain,
            dns_args,
            l4_args,
            access_log,
            client_timeouts,
            pod_network,
            pod_cidr,
            service_cidr,
            max_pods,
            api_args,
        } => {
            use ferry_orchestrator::network;
            let mode = match pod_network {
                PodNetworkArg::Auto => network::Mode::Auto,
                PodNetworkArg::Netns => network::Mode::Netns,
                PodNetworkArg::Loopback => network::Mode::Loopback,
            };
            let choice = network::choose(mode, pod_cidr, network::can_create_namespaces)?;
            match choice.network {
                network::PodNetwork::Netns => {
                    tracing::info!(pod_cidr = %choice.pod_cidr, "pod network: a network namespace per Pod ({})", choice.why)
                }
                network::PodNetwork::Loopback => {
                    tracing::info!(pod_cidr = %choice.pod_cidr, "pod network: Pods on loopback addresses of the host ({})", choice.why)
                }
            }
            let connections = ConnectionLimits {
                admin: admin_args.limits(),
                dns_tcp: dns_args.tcp_limits(),
                l4_idle: l4_args.l4_idle_timeout,
                l4_max_connections: l4_args.l4_max_connections as usize,
            };
            let (dns_upstreams, dns_search) = ferry::dns::host_resolver(dns_args.dns_upstream);
            let mut local = ferry_orchestrator::Config::default();
            local.cluster.pod_cidr = choice.pod_cidr;
            local.cluster.service_cidr = service_cidr;
            local.cluster.max_pods = max_pods;
            let config = UpConfig {
                paths,
                http,
                https,
                dns,
                dns_upstreams,
                dns_search,
                dns_autopath: dns_args.dns_autopath,
                access_log,
                client_header_timeout: client_timeouts.client_header_timeout,
                keepalive_timeout: client_timeouts.keepalive_timeout,
                admin,
                cluster_domain,
                debounce: Duration::from_millis(100),
                local,
                pod_network: choice.network,
                connections,
                api: match api_args.api.0 {
                    Some(addr) => Some(ferry_orchestrator::apiserver::Config {
                        addr,
                        state_dir: api_args.state.dir()?,
                        kubeconfig: api_args.write_kubeconfig,
                    }),
                    None => None,
                },
            };
            Up::build(config).await?.run(shutdown).await?;
        }
        Command::Dns {
            snapshot,
            control,
            listen,
            admin,
            cluster_domain,
            dns_args,
        } => {
            let tcp = dns_args.tcp_limits();
            let (upstreams, search) = ferry::dns::host_resolver(dns_args.dns_upstream);
            let dns = ferry_dns::Config {
                tcp,
                upstreams,
                search,
                autopath: dns_args.dns_autopath,
                ..ferry_dns::Config::new(listen, cluster_domain)
            };
            let config = ferry::dns::DnsConfig {
                source: control.source(snapshot, ferry_runtime::subscribe::Role::Dns)?,
                dns,
                admin,
            };
            ferry::dns::run(config, shutdown).await?;
        }
        Command::Gateway {
            snapshot,
            control,
            http,
            https,
            admin,
            access_log,
            client_timeouts,
            workers,
        } => {
            let workers = workers.map_or_else(
                || std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
                usize::from,
            );
            let config = ferry::gateway::GatewayConfig {
                source: control.source(snapshot, ferry_runtime::subscribe::Role::Gateway)?,
                gateway: ferry_gateway::Config {
                    access_log,
                    client_header_timeout: client_timeouts.client_header_timeout,
                    keepalive_timeout: client_timeouts.keepalive_timeout,
                    workers,
                    ..ferry_gateway::Config::new(http, https)
                },
                admin,
            };
            ferry::gateway::run(config, shutdown).await?;
        }
        Command::Control {
            paths,
            listen,
            state_dir,
            admin,
        } => {
            let config = ferry::control::ControlConfig {
                paths,
                push: ferry_control::push::PushConfig::new(listen, state_dir),
                admin,
                debounce: Duration::from_millis(100),
            };
            ferry::control::run(config, shutdown).await?;
        }
        Command::Get {
            resource,
            output,
            admin,
        } => {
            if let Some(workload) = resource.workload() {
                print!("{}", workloads::get(admin, workload, output).await?);
            } else if resource == Resource::Proxies {
                let proxies = ferry::proxies::fetch(admin).await?;
                let now = ferry_runtime::status::now_ms();
                print!("{}", ferry::proxies::render(&proxies, output, now)?);
            } else {
                let snapshot = get::fetch(admin).await?;
                print!("{}", get::render(&snapshot, resource, output)?);
            }
        }
        Command::Logs {
            pod,
            container,
            follow,
            target,
        } => {
            let ns = target.namespace.as_deref();
            let mut out = std::io::stdout();
            workloads::logs(
                target.admin,
                ns,
                &pod,
                container.as_deref(),
                follow,
                &mut out,
            )
            .await?;
        }
        Command::Scale {
            deployment,
            replicas,
            target,
        } => {
            let ns = target.namespace.as_deref();
            print!(
                "{}",
                workloads::scale(target.admin, ns, &deployment, replicas).await?
            );
        }
        Command::Rollout { action } => match action {
            Rollout::Status {
                deployment,
                timeout,
                target,
            } => {
                let ns = target.namespace.as_deref();
                let mut out = std::io::stdout();
                workloads::status(target.admin, ns, &deployment, timeout, &mut out).await?;
            }
            Rollout::History { deployment, target } => {
                let ns = target.namespace.as_deref();
                print!(
                    "{}",
                    workloads::history(target.admin, ns, &deployment).await?
                );
            }
            Rollout::Undo {
                deployment,
                to_revision,
                target,
            } => {
                let ns = target.namespace.as_deref();
                print!(
                    "{}",
                    workloads::undo(target.admin, ns, &deployment, to_revision).await?
                );
            }
        },
        Command::Echo {
            listen,
            name,
            parent_pid,
        } => {
            let pod = std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| name.clone());
            let echo = ferry::echo::Echo::build(listen, name, pod).await?;
            tracing::info!(listen = %echo.local_addr()?, "echo is up");
            let shutdown = match parent_pid {
                Some(parent) => with_parent(parent, shutdown),
                None => shutdown,
            };
            echo.run(shutdown).await;
        }
        Command::Check { .. }
        | Command::Load(_)
        | Command::Exec { .. }
        | Command::Kubeconfig { .. } => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags' defaults are the parts' own.
    #[test]
    fn connection_flags_default_to_the_parts_defaults() {
        let cli = Cli::try_parse_from(["ferry", "up"]).unwrap();
        let Command::Up {
            admin_args,
            dns_args,
            l4_args,
            ..
        } = cli.command
        else {
            panic!("not up");
        };
        let defaults = ConnectionLimits::default();
        assert_eq!(admin_args.limits(), defaults.admin);
        assert_eq!(dns_args.tcp_limits(), defaults.dns_tcp);
        assert_eq!(l4_args.l4_idle_timeout, defaults.l4_idle);
        assert_eq!(
            l4_args.l4_max_connections as usize,
            defaults.l4_max_connections
        );
    }

    /// `--pod-network` is loopback unless named (until Pods in namespaces reach Services), and
    /// `--pod-cidr` has no default of its own: the mode chosen gives it.
    #[test]
    fn the_pod_network_is_loopback_unless_named_and_its_range_follows_the_mode() {
        let cli = Cli::try_parse_from(["ferry", "up"]).unwrap();
        let Command::Up {
            pod_network,
            pod_cidr,
            ..
        } = cli.command
        else {
            panic!("not up");
        };
        assert!(matches!(pod_network, PodNetworkArg::Loopback));
        assert_eq!(pod_cidr, None);
        let cli = Cli::try_parse_from([
            "ferry",
            "up",
            "--pod-network",
            "netns",
            "--pod-cidr",
            "10.9.0.0/16",
        ])
        .unwrap();
        let Command::Up {
            pod_network,
            pod_cidr,
            ..
        } = cli.command
        else {
            panic!("not up");
        };
        assert!(matches!(pod_network, PodNetworkArg::Netns));
        assert_eq!(pod_cidr, Some("10.9.0.0/16".parse().unwrap()));
        let err = Cli::try_parse_from(["ferry", "up", "--pod-network", "bridge"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("possible values: auto, netns, loopback"),
            "{err}"
        );
    }

    /// `ferry exec` takes the command after `--`, its own flags before.
    #[test]
    fn exec_takes_the_command_after_the_double_dash() {
        let cli = Cli::try_parse_from([
            "ferry",
            "exec",
            "-n",
            "shop",
            "web-1",
            "-c",
            "app",
            "--",
            "sh",
            "-c",
            "echo -n hi",
        ])
        .unwrap();
        let Command::Exec {
            pod,
            container,
            target,
            command,
        } = cli.command
        else {
            panic!("not exec");
        };
        assert_eq!((pod.as_str(), container.as_deref()), ("web-1", Some("app")));
        assert_eq!(target.namespace.as_deref(), Some("shop"));
        assert_eq!(command, ["sh", "-c", "echo -n hi"]);
        assert!(
            Cli::try_parse_from(["ferry", "exec", "web-1"]).is_err(),
            "no command"
        );
    }

    #[test]
    fn the_api_flags_default_to_6443_and_the_state_dir() {
        let cli = Cli::try_parse_from(["ferry", "up"]).unwrap();
        let Command::Up { api_args, .. } = cli.command else {
            panic!("not up");
        };
        assert_eq!(
            api_args.api,
            ApiAddr(Some("127.0.0.1:6443".parse().unwrap()))
        );
        assert_eq!(api_args.write_kubeconfig, None);
        assert_eq!(api_args.state.state_dir, None);
        let cli = Cli::try_parse_from([
            "ferry",
            "up",
            "--api",
            "127.0.0.1:0",
            "--state-dir",
            "/tmp/s",
            "--write-kubeconfig",
            "/tmp/k",
        ])
        .unwrap();
        let Command::Up { api_args, .. } = cli.command else {
            panic!("not up");
        };
        assert_eq!(api_args.state.dir(), Ok(PathBuf::from("/tmp/s")));
        assert_eq!(api_args.write_kubeconfig, Some(PathBuf::from("/tmp/k")));
        let cli = Cli::try_parse_from(["ferry", "kubeconfig", "--state-dir", "/tmp/s"]).unwrap();
        let Command::Kubeconfig { state } = cli.command else {
            panic!("not kubeconfig");
        };
        assert_eq!(state.dir(), Ok(PathBuf::from("/tmp/s")));
        // `none` serves no API (a machine whose 6443 is taken, by k3s say).
        let cli = Cli::try_parse_from(["ferry", "up", "--api", "none"]).unwrap();
        let Command::Up { api_args, .. } = cli.command else {
            panic!("not up");
        };
        assert_eq!(api_args.api, ApiAddr(None));
        let err = Cli::try_parse_from(["ferry", "up", "--api", "6443"]).unwrap_err();
        assert!(err.to_string().contains("or none"), "{err}");
    }

    #[test]
    fn durations_read_as_nginx_writes_them_and_never_zero() {
        assert_eq!(positive_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(positive_duration("75"), Ok(Duration::from_secs(75)));
        assert_eq!(positive_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(positive_duration("2m"), Ok(Duration::from_secs(120)));
        let zero = positive_duration("0s").unwrap_err();
        assert!(zero.contains("more than zero"), "{zero}");
        let junk = positive_duration("soon").unwrap_err();
        assert!(junk.contains("invalid duration"), "{junk}");
    }

    #[test]
    fn zero_timeouts_are_refused() {
        let err = Cli::try_parse_from(["ferry", "up", "--dns-tcp-idle-timeout", "0s"]).unwrap_err();
        assert!(err.to_string().contains("must be more than zero"), "{err}");
        let err = Cli::try_parse_from([
            "ferry",
            "dns",
            "--snapshot",
            "s.json",
            "--dns-tcp-max-connections",
            "0",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("dns-tcp-max-connections"), "{err}");
        let err = Cli::try_parse_from(["ferry", "up", "--l4-max-connections", "0"]).unwrap_err();
        assert!(err.to_string().contains("l4-max-connections"), "{err}");
    }

    #[test]
    fn a_part_alone_takes_a_snapshot_file_or_a_control_plane_with_its_ca_and_token() {
        for part in ["gateway", "dns"] {
            let err = Cli::try_parse_from(["ferry", part]).unwrap_err();
            assert!(err.to_string().contains("--snapshot"), "{err}");
            let err =
                Cli::try_parse_from(["ferry", part, "--control", "https://c:7443"]).unwrap_err();
            assert!(err.to_string().contains("--control-ca"), "{err}");
            let err = Cli::try_parse_from([
                "ferry",
                part,
                "--snapshot",
                "s.json",
                "--control",
                "https://c:7443",
                "--control-ca",
                "ca.crt",
                "--token-file",
                "t",
            ])
            .unwrap_err();
            assert!(err.to_string().contains("cannot be used with"), "{err}");
            Cli::try_parse_from([
                "ferry",
                part,
                "--control",
                "https://c:7443",
                "--control-ca",
                "ca.crt",
                "--token-file",
                "t",
            ])
            .unwrap();
        }
        let err = Cli::try_parse_from(["ferry", "control", "-f", "m"]).unwrap_err();
        assert!(err.to_string().contains("--state-dir"), "{err}");
    }

    #[test]
    fn control_args_read_the_ca_and_the_token_and_name_the_file_they_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), "CA").unwrap();
        std::fs::write(dir.path().join("join-token"), "abc\n").unwrap();
        let args = |token: &str| ControlArgs {
            control: Some("https://c:7443".parse().unwrap()),
            control_ca: Some(dir.path().join("ca.crt")),
            token_file: Some(dir.path().join(token)),
            name: Some("edge-1".to_owned()),
            node: None,
        };
        let Ok(ferry::alone::SnapshotSource::Control(config)) =
            args("join-token").source(None, ferry_runtime::subscribe::Role::Gateway)
        else {
            panic!("a control source");
        };
        assert_eq!(
            (config.token.as_str(), config.name.as_str()),
            ("abc", "edge-1")
        );
        assert_eq!(config.ca_pem, b"CA");
        let err = args("missing")
            .source(None, ferry_runtime::subscribe::Role::Gateway)
            .unwrap_err();
        assert!(
            err.contains("--token-file") && err.contains("missing"),
            "{err}"
        );
    }
}
