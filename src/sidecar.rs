//! `ferry sidecar`: the mesh's data plane in one Pod. Inbound on 4143, outbound on 4140, admin
//! (`/live`, `/ready`, `/metrics`) on 4191; destinations from `ferry control`'s
//! `Destination.Get`.
//!
//! Credentials come from a PEM trio (`--certificate`, `--key`, `--trust-bundle`) until the
//! runtime's identity client (CSR over the control channel, renewal) is wired in its place:
//! whatever fills the `CredentialsWatch` is what the sidecar serves with. Authorization allows
//! everything until the inbound policy evaluator is plugged into [`ferry_sidecar::Authorize`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::ValueEnum;
use ferry_model::mesh;
use ferry_proxy::BalancerConfig;
use ferry_runtime::Shutdown;
use ferry_sidecar::discover::{ControlConfig, ControlDiscover};
use ferry_sidecar::tls::pem::credentials_from_pem;
use ferry_sidecar::upstream::Identities;
use ferry_sidecar::{AllowAll, Config, InboundConfig, MtlsMode, OutboundConfig, Parts, Sidecar};
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
    /// The join token (its state dir's join-token).
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,
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
    /// Whether plaintext clients are taken (until the inbound policy carries the mode).
    #[arg(long, value_enum, default_value_t = ModeArg::Permissive)]
    pub mtls_mode: ModeArg,
    /// Mark the sidecar's own sockets (SO_MARK) so the Pod's interception lets them pass; needs
    /// CAP_NET_ADMIN.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub mark: Switch,
    /// The workload certificate chain (PEM, leaf first; its URI SAN is the identity).
    #[arg(long, value_name = "FILE")]
    pub certificate: PathBuf,
    /// The workload certificate's key (PEM).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The roots peers' chains may end at (PEM, one or more).
    #[arg(long, value_name = "FILE")]
    pub trust_bundle: PathBuf,
    /// The app's port for inbound connections that were not redirected (no original
    /// destination), e.g. a client that dials the inbound port itself.
    #[arg(long, value_name = "PORT")]
    pub app_port: Option<u16>,
    /// Where outbound connections that were not redirected go (an IP:port the control plane
    /// knows, such as a Service's cluster IP and port).
    #[arg(long, value_name = "ADDR")]
    pub outbound_target: Option<SocketAddr>,
}

fn read(flag: &str, path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

/// Runs the sidecar until shutdown.
pub async fn run(args: Args, shutdown: Shutdown) -> Result<(), String> {
    let (cert, key) = (
        read("--certificate", &args.certificate)?,
        read("--key", &args.key)?,
    );
    let bundle = read("--trust-bundle", &args.trust_bundle)?;
    let credentials = credentials_from_pem(&cert, &key, &bundle).map_err(|e| {
        format!(
            "--certificate {} --key {} --trust-bundle {}: {e}",
            args.certificate.display(),
            args.key.display(),
            args.trust_bundle.display()
        )
    })?;
    tracing::info!(identity = %credentials.id, "workload credentials loaded");
    // Held for the whole run: the identity client will keep sending renewals through it.
    let (_credentials, watch) = tokio::sync::watch::channel(Some(Arc::new(credentials)));
    let token = String::from_utf8(read("--token-file", &args.token_file)?)
        .map_err(|_| format!("--token-file {}: not UTF-8", args.token_file.display()))?
        .trim()
        .to_owned();
    let node = args.node.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned())
    });
    let identities = Arc::new(Identities::default());
    let discover = ControlDiscover::new(
        ControlConfig {
            url: args.control.clone(),
            ca_pem: read("--control-ca", &args.control_ca)?,
            token,
            caller: format!("{}/{}", args.namespace, args.pod),
            node,
        },
        BalancerConfig::default(),
        identities.clone(),
    );
    let mark = (args.mark == Switch::On).then_some(mesh::SOCKET_MARK);
    let mut inbound = InboundConfig::new(args.inbound);
    inbound.mode = match args.mtls_mode {
        ModeArg::Strict => MtlsMode::Strict,
        ModeArg::Permissive => MtlsMode::Permissive,
    };
    inbound.mark = mark;
    inbound.app_port = args.app_port;
    let mut outbound = OutboundConfig::new(args.outbound);
    outbound.mark = mark;
    outbound.target = args.outbound_target;
    let config = Config {
        inbound,
        outbound,
        admin: args.admin,
    };
    let parts = Parts {
        credentials: watch,
        discover: Arc::new(discover.clone()),
        identities,
        authorize: Arc::new(AllowAll),
        registry: Registry::default(),
    };
    let sidecar = Sidecar::build(config, parts)
        .await
        .map_err(|e| e.to_string())?;
    let addrs = sidecar.addrs().map_err(|e| e.to_string())?;
    tracing::info!(inbound = %addrs.inbound, outbound = %addrs.outbound, admin = %addrs.admin, "ferry sidecar is up");
    let sweeper = tokio::spawn(discover.sweep_until(shutdown.clone()));
    sidecar.run(shutdown).await;
    let _ = sweeper.await;
    Ok(())
}
