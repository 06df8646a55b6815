//! `ferry up --source kubernetes`: the control plane, the ingress gateway, cluster DNS and the
//! admin server over a Kubernetes API server's objects, instead of the local cluster. No Pods
//! run here, no API server is served and no L4 proxy listens: in a real cluster the kubelets
//! run the Pods and kube-proxy serves the cluster IPs.

use std::net::SocketAddr;
use std::path::PathBuf;

use ferry_control::Control;
use ferry_control::kubernetes::{self, KubernetesSource, StatusAddress};
use ferry_dns::Dns;
use ferry_gateway::Gateway;
use ferry_runtime::admin::{Admin, AdminState};
use ferry_runtime::{Shutdown, SnapshotBus, StatusBoard};
use prometheus_client::registry::Registry;

use super::{Error, UpConfig};

/// What `--source kubernetes` adds to `ferry up`'s flags.
#[derive(Clone, Debug, Default)]
pub struct Source {
    /// `--kubeconfig`; `None` infers as kubectl does (`KUBECONFIG`, `~/.kube/config`, the
    /// in-cluster service account).
    pub kubeconfig: Option<PathBuf>,
    /// `--publish-address`: written to the Ingresses' `status.loadBalancer`; `None` writes
    /// the gateway's listen IP, or nothing when that is unspecified (0.0.0.0, ::).
    pub publish_address: Option<StatusAddress>,
}

/// A built `ferry up --source kubernetes`: listeners bound, first snapshot published.
#[derive(Debug)]
pub struct UpKubernetes {
    control: Control<KubernetesSource>,
    admin: Admin,
    dns: Dns,
    gateway: Gateway,
    bus: SnapshotBus,
}

impl UpKubernetes {
    /// Builds from `ferry up`'s flags; those of the local cluster (`-f`, the pod network and
    /// ranges, `--api`, the L4 proxy's) are not used.
    pub async fn build(config: &UpConfig, source: Source) -> Result<UpKubernetes, Error> {
        ferry_model::name::dns1123_subdomain(&config.cluster_domain)
            .map_err(|e| Error::ClusterDomain(config.cluster_domain.clone(), e))?;
        let bus = SnapshotBus::new();
        let status = StatusBoard::default();
        let mut registry = Registry::default();
        let dns = Dns::build(
            ferry_dns::Config {
                upstreams: config.dns_upstreams.clone(),
                search: config.dns_search.clone(),
                autopath: config.dns_autopath,
                tcp: config.connections.dns_tcp,
                ..ferry_dns::Config::new(config.dns, config.cluster_domain.clone())
            },
            bus.subscribe("dns"),
            &mut registry,
        )?;
        let gateway = Gateway::build(
            ferry_gateway::Config {
                access_log: config.access_log,
                client_header_timeout: config.client_header_timeout,
                keepalive_timeout: config.keepalive_timeout,
                ..ferry_gateway::Config::new(config.http, config.https)
            },
            bus.subscribe("gateway"),
            &mut registry,
        )
        .await?;
        let status_address = source.publish_address.or_else(|| {
            let ip = gateway.http_addr().ok()?.ip();
            (!ip.is_unspecified()).then_some(StatusAddress::Ip(ip))
        });
        let connection = kubernetes::connect(source.kubeconfig.as_ref())
            .await
            .map_err(ferry_control::Error::from)?;
        let kube = KubernetesSource::start(
            connection,
            &kubernetes::Config {
                debounce: config.debounce,
                status_address,
            },
            &mut registry,
        );
        let control = Control::build(kube, bus.clone(), status.clone(), &mut registry).await?;
        let admin = Admin::build(
            config.admin,
            AdminState {
                bus: bus.clone(),
                status,
                registry,
                api: None,
            },
        )
        .await?
        .with_limits(config.connections.admin);
        Ok(UpKubernetes {
            control,
            admin,
            dns,
            gateway,
            bus,
        })
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
        tracing::info!(admin = %self.admin_addr(), version = self.bus.current().version, "ferry is up (source: kubernetes)");
        let admin = tokio::spawn(self.admin.run(shutdown.clone()));
        let dns = tokio::spawn(self.dns.run(shutdown.clone()));
        let gateway = tokio::spawn(self.gateway.run(shutdown.clone()));
        let control = tokio::spawn(self.control.run(shutdown)).await;
        let _ = admin.await;
        let _ = dns.await;
        let _ = gateway.await;
        match control {
            Ok(done) => Ok(done?),
            Err(e) => Err(Error::ControlPanicked(e.to_string())),
        }
    }
}
