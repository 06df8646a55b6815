//! `ferry sidecar`: the mesh's data plane in one Pod. Inbound on 4143, outbound on 4140, admin
//! (`/live`, `/ready`, `/metrics`) on 4191; destinations from `ferry control`'s
//! `Destination.Get`, and the Pod's inbound policy (AuthorizationPolicies, mTLS mode) from
//! `Destination.GetInboundPolicy`, both with the join token.
//!
//! Credentials come one of two ways, never both: with `--token-file` (the per-Pod token the
//! kubelet hands the injected sidecar) the runtime's identity client asks the control plane's
//! `Identity` service for the workload certificate and renews it; with the PEM trio
//! (`--certificate`, `--key`, `--trust-bundle`) they are read once from files. Whatever fills
//! the `CredentialsWatch` is what the sidecar serves with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::ValueEnum;
use ferry_model::mesh;
use ferry_proxy::BalancerConfig;
use ferry_runtime::Shutdown;
use ferry_runtime::identity::{Credentials, CredentialsWatch, IdentityClient, IdentityConfig};
use ferry_sidecar::discover::{ControlConfig, ControlDiscover};
use ferry_sidecar::policy::{self, PolicyConfig};
use ferry_sidecar::tls::pem::credentials_from_pem;
use ferry_sidecar::upstream::Identities;
use ferry_sidecar::{
    Config, InboundConfig, InboundPolicy, MtlsMode, OutboundConfig, Parts, Sidecar,
};
use prometheus_client::registry::Registry;

/// On or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// The `--mtls-mode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Strict,
    Permissive,
}

/// Everything `ferry sidecar` takes.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The control plane, https://HOST:PORT: destinations are asked of it.
    #[arg(long, value_name = "URL")]
    pub control: http::Uri,
    /// The CA that signed the control plane's certificate (its state dir's ca.crt).
    #[arg(long, value_name = "FILE")]
    pub control_ca: PathBuf,
    /// The control channel's join token (its state dir's join-token), for `Destination` calls
    /// when there is no Pod token (tests, an operator's sidecar run by hand). Never give it to
    /// a Pod: it would let the Pod subscribe as a gateway, private keys included.
    #[arg(long, value_name = "FILE")]
    pub join_token_file: Option<PathBuf>,
    /// The Pod's token (minted by the control plane, written by the kubelet): the workload
    /// certificate is then issued and renewed by the control plane's `Identity` service, and
    /// `Destination` calls present it (the control plane answers it for its own Pod only).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["certificate", "key", "trust_bundle"])]
    pub token_file: Option<PathBuf>,
    /// The Pod's namespace.
    #[arg(long, env = "FERRY_POD_NAMESPACE")]
    pub namespace: String,
    /// The Pod's name.
    #[arg(long, env = "FERRY_POD_NAME")]
    pub pod: String,
    /// The node [default: the host's name].
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Where redirected inbound connections arrive.
    #[arg(long, value_name = "ADDR", default_value_t = SocketAddr::from(([0, 0, 0, 0], mesh::INBOUND_PORT)))]
    pub inbound: SocketAddr,
    /// Where the app's redirected outbound connections arrive.
    #[arg(long, value_name = "ADDR", default_value_t = SocketAddr::from(([127, 0, 0, 1], mesh::OUTBOUND_PORT)))]
    pub outbound: SocketAddr,
    /// Admin: /live /ready /metrics.
    #[arg(long, value_name = "ADDR", default_value_t = SocketAddr::from(([0, 0, 0, 0], mesh::ADMIN_PORT)))]
    pub admin: SocketAddr,
    /// Whether plaintext clients are taken until the control plane's first inbound policy
    /// answer; then the answer's mode (the Pod's `ferry.dev/mtls-mode`) applies.
    #[arg(long, value_enum, default_value_t = ModeArg::Permissive)]
    pub mtls_mode: ModeArg,
    /// Mark the sidecar's own sockets (SO_MARK) so the Pod's interception lets them pass; needs
    /// CAP_NET_ADMIN.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub mark: Switch,
    /// The workload certificate chain (PEM, leaf first; its URI SAN is the identity), instead
    /// of `--token-file`.
    #[arg(long, value_name = "FILE", requires_all = ["key", "trust_bundle"])]
    pub certificate: Option<PathBuf>,
    /// The workload certificate's key (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["certificate", "trust_bundle"])]
    pub key: Option<PathBuf>,
    /// The roots peers' chains may end at (PEM, one or more).
    #[arg(long, value_name = "FILE", requires_all = ["certificate", "key"])]
    pub trust_bundle: Option<PathBuf>,
    /// The app's port for inbound connections that were not redirected (no original
    /// destination), e.g. a client that dials the inbound port itself.
    #[arg(long, value_name = "PORT")]
    pub app_port: Option<u16>,
    /// Where outbound connections that were not redirected go (an IP:port the control plane
    /// knows, such as a Service's cluster IP and port).
    #[arg(long, value_name = "ADDR")]
    pub outbound_target: Option<SocketAddr>,
    /// Threads carrying traffic: 1 runs the whole sidecar on one current-thread runtime (as
    /// Linkerd's proxy does with one core), N > 1 on a multi-thread runtime with N workers.
    /// One Pod's traffic rarely needs more, and each worker costs memory (benches/mesh).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: u16,
    /// The app's original probes, run for the kubelet at /app-health/ on the admin port (JSON
    /// keyed by path; the injection sets it).
    #[arg(long, env = mesh::app_probe::APP_PROBERS_ENV, value_name = "JSON", value_parser = mesh::app_probe::parse)]
    pub app_probers: Option<mesh::app_probe::AppProbers>,
    /// The Pod's address, where app probes that name no host connect [default: 127.0.0.1].
    #[arg(long, env = "FERRY_POD_IP", value_name = "IP")]
    pub pod_ip: Option<std::net::IpAddr>,
}

/// The runtime `ferry sidecar` runs on, for `--workers`.
pub fn runtime(workers: u16) -> tokio::runtime::Builder {
    if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(usize::from(workers));
        builder
    }
}

fn read(flag: &str, path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

/// A token file's content, trimmed; an empty or non-UTF-8 file is named.
fn read_token(flag: &str, path: &PathBuf) -> Result<String, String> {
    let token = String::from_utf8(read(flag, path)?)
        .map_err(|_| format!("{flag} {}: not UTF-8", path.display()))?
        .trim()
        .to_owned();
    if token.is_empty() {
        return Err(format!("{flag} {}: empty", path.display()));
    }
    Ok(token)
}

/// Where the workload credentials come from.
#[derive(Debug, PartialEq, Eq)]
enum CredentialSource<'a> {
    /// The control plane's `Identity` service, with this Pod token file.
    Control(&'a PathBuf),
    /// The PEM trio.
    Files {
        certificate: &'a PathBuf,
        key: &'a PathBuf,
        trust_bundle: &'a PathBuf,
    },
}

/// One way, and only one (clap refuses most mixes already; this is the rule in one place).
fn credential_source(args: &Args) -> Result<CredentialSource<'_>, String> {
    match (
        &args.token_file,
        &args.certificate,
        &args.key,
        &args.trust_bundle,
    ) {
        (Some(token), None, None, None) => Ok(CredentialSource::Control(token)),
        (None, Some(certificate), Some(key), Some(trust_bundle)) => Ok(CredentialSource::Files {
            certificate,
            key,
            trust_bundle,
        }),
        (None, None, None, None) => Err(
            "no workload credentials: give --token-file (certificates from the control plane) or --certificate, --key and --trust-bundle".to_owned(),
        ),
        (Some(_), ..) => Err(
            "--token-file cannot be used with --certificate, --key or --trust-bundle: the certificate comes from the control plane or from files, not both".to_owned(),
        ),
        (None, ..) => Err("--certificate, --key and --trust-bundle go together".to_owned()),
    }
}

/// The credentials' receiver, and what keeps them coming: the identity client's task, or the
/// sender of the PEM trio (held so the watch stays open).
enum Publisher {
    Control(tokio::task::JoinHandle<()>),
    Files(tokio::sync::watch::Sender<Option<Arc<Credentials>>>),
}

async fn credentials(
    args: &Args,
    ca_pem: &[u8],
    registry: &mut Registry,
    shutdown: &Shutdown,
) -> Result<(CredentialsWatch, Publisher), String> {
    match credential_source(args)? {
        CredentialSource::Control(path) => {
            let client = IdentityClient::build(IdentityConfig {
                control: args.control.clone(),
                ca_pem: ca_pem.to_vec(),
                token: read_token("--token-file", path)?,
            })
            .map_err(|e| format!("--token-file {}: {e}", path.display()))?;
            client.register_metrics(registry);
            let watch = client.watch();
            tracing::info!(control = %args.control, "workload certificate from the control plane");
            let task = tokio::spawn(client.run(shutdown.clone()));
            Ok((watch, Publisher::Control(task)))
        }
        CredentialSource::Files {
            certificate,
            key,
            trust_bundle,
        } => {
            let loaded = credentials_from_pem(
                &read("--certificate", certificate)?,
                &read("--key", key)?,
                &read("--trust-bundle", trust_bundle)?,
            )
            .map_err(|e| {
                format!(
                    "--certificate {} --key {} --trust-bundle {}: {e}",
                    certificate.display(),
                    key.display(),
                    trust_bundle.display()
                )
            })?;
            tracing::info!(identity = %loaded.id, "workload credentials loaded");
            let (tx, watch) = tokio::sync::watch::channel(Some(Arc::new(loaded)));
            Ok((watch, Publisher::Files(tx)))
        }
    }
}

/// Runs the sidecar until shutdown.
pub async fn run(args: Args, shutdown: Shutdown) -> Result<(), String> {
    let ca_pem = read("--control-ca", &args.control_ca)?;
    // Destination calls prove themselves with the Pod's token, or else the join token.
    let control_token = match (&args.join_token_file, &args.token_file) {
        (Some(join), _) => read_token("--join-token-file", join)?,
        (None, Some(pod)) => read_token("--token-file", pod)?,
        (None, None) => {
            return Err(
                "the control plane's Destination calls need --token-file (the Pod's token) or --join-token-file".to_owned(),
            );
        }
    };
    let mut registry = Registry::default();
    let (credentials, publisher) = credentials(&args, &ca_pem, &mut registry, &shutdown).await?;
    let node = args.node.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned())
    });
    let control = ControlConfig {
        url: args.control.clone(),
        ca_pem,
        // The identity client's trust bundle covers the control channel after a root
        // rotation; from files, `--control-ca` alone.
        trust: matches!(publisher, Publisher::Control(_)).then(|| credentials.clone()),
        token: control_token,
        caller: format!("{}/{}", args.namespace, args.pod),
        node,
    };
    let identities = Arc::new(Identities::default());
    let discover = ControlDiscover::new(
        control.clone(),
        BalancerConfig::default(),
        identities.clone(),
    );
    let mode = match args.mtls_mode {
        ModeArg::Strict => MtlsMode::Strict,
        ModeArg::Permissive => MtlsMode::Permissive,
    };
    let policy = Arc::new(InboundPolicy::new(mode));
    policy.register_metrics(&mut registry);
    let mark = (args.mark == Switch::On).then_some(mesh::SOCKET_MARK);
    let mut inbound = InboundConfig::new(args.inbound);
    inbound.mode = mode;
    inbound.mark = mark;
    inbound.app_port = args.app_port;
    let mut outbound = OutboundConfig::new(args.outbound);
    outbound.mark = mark;
    outbound.target = args.outbound_target;
    let config = Config {
        inbound,
        outbound,
        admin: args.admin,
        app_health: ferry_sidecar::AppHealthConfig {
            probers: args.app_probers.clone().unwrap_or_default(),
            pod_ip: args.pod_ip.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
        },
    };
    let parts = Parts {
        credentials,
        discover: Arc::new(discover.clone()),
        identities,
        authorize: policy.clone(),
        registry,
        report_expiry: matches!(publisher, Publisher::Files(_)),
    };
    let sidecar = Sidecar::build(config, parts)
        .await
        .map_err(|e| e.to_string())?;
    let addrs = sidecar.addrs().map_err(|e| e.to_string())?;
    tracing::info!(inbound = %addrs.inbound, outbound = %addrs.outbound, admin = %addrs.admin, "ferry sidecar is up");
    let sweeper = tokio::spawn(discover.sweep_until(shutdown.clone()));
    let follower = tokio::spawn(policy::follow(
        PolicyConfig {
            control,
            namespace: args.namespace.clone(),
            pod: args.pod.clone(),
        },
        policy,
        shutdown.clone(),
    ));
    sidecar.run(shutdown).await;
    let _ = tokio::join!(sweeper, follower);
    match publisher {
        Publisher::Control(task) => {
            let _ = task.await;
        }
        Publisher::Files(sender) => drop(sender),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
