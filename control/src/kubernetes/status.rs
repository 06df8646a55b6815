//! `status.loadBalancer` of the Ingresses ferry serves: set to the gateway's address (the
//! listen IP, or `--publish-address`, as ingress-nginx's `--publish-status-address`), with a
//! JSON merge patch on the `status` subresource, and only where it differs. A write that fails
//! is logged and tried again with back-off (1 s doubling to 30 s); it never stops ferry.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use ferry_objects::object::Manifest;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::watch;

const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What an Ingress's `status.loadBalancer.ingress` names: an IP, or a host name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusAddress {
    Ip(IpAddr),
    Hostname(String),
}

impl StatusAddress {
    /// An IP address, else a host name (as `--publish-status-address` reads it).
    pub fn parse(s: &str) -> Result<StatusAddress, String> {
        if let Ok(ip) = s.parse() {
            return Ok(StatusAddress::Ip(ip));
        }
        ferry_model::name::dns1123_subdomain(s)
            .map(|()| StatusAddress::Hostname(s.to_owned()))
            .map_err(|e| format!("{s:?} is neither an IP address nor a DNS name: {e}"))
    }

    /// The one entry ferry writes.
    fn entry(&self) -> serde_json::Value {
        match self {
            StatusAddress::Ip(ip) => serde_json::json!({ "ip": ip.to_string() }),
            StatusAddress::Hostname(h) => serde_json::json!({ "hostname": h }),
        }
    }
}

impl std::fmt::Display for StatusAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusAddress::Ip(ip) => write!(f, "{ip}"),
            StatusAddress::Hostname(h) => f.write_str(h),
        }
    }
}

/// One Ingress ferry serves, as last seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressNow {
    pub namespace: String,
    pub name: String,
    pub resource_version: Option<String>,
    /// `status.loadBalancer.ingress`, as JSON (empty when unset).
    pub load_balancer: Vec<serde_json::Value>,
}

impl IngressNow {
    pub fn of(m: &Manifest, ingress: &Ingress) -> IngressNow {
        let load_balancer = ingress
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|e| serde_json::to_value(e).ok())
                    .collect()
            })
            .unwrap_or_default();
        IngressNow {
            namespace: m.namespace().to_owned(),
            name: m.name().to_owned(),
            resource_version: ingress.metadata.resource_version.clone(),
            load_balancer,
        }
    }

    /// Whether its status already names exactly `address` (an empty `ports` list, as a
    /// server may write it back, counts as none).
    pub fn shows(&self, address: &StatusAddress) -> bool {
        let [only] = self.load_balancer.as_slice() else {
            return false;
        };
        let mut only = only.clone();
        if let Some(fields) = only.as_object_mut()
            && fields
                .get("ports")
                .is_some_and(|p| p.is_null() || p.as_array().is_some_and(Vec::is_empty))
        {
            fields.remove("ports");
        }
        only == address.entry()
    }
}

/// The resourceVersions of each Ingress ferry wrote: the one it wrote over and the one its
/// write made. Seen at either, the Ingress is not written again, so a server that writes the
/// status back in another form cannot make ferry write for ever.
pub type Written = HashMap<(String, String), [Option<String>; 2]>;

/// The merge patch that sets the status to `address` (a list is replaced whole).
pub fn patch(address: &StatusAddress) -> serde_json::Value {
    serde_json::json!({ "status": { "loadBalancer": { "ingress": [address.entry()] } } })
}

/// Which Ingresses to write: those whose status differs, leaving out those still at a
/// resourceVersion ferry's own write left them at or came from (the write not seen back yet).
pub fn due<'a>(
    ingresses: &'a [IngressNow],
    address: &StatusAddress,
    written: &Written,
) -> Vec<&'a IngressNow> {
    ingresses
        .iter()
        .filter(|i| !i.shows(address))
        .filter(|i| {
            let key = (i.namespace.clone(), i.name.clone());
            !written
                .get(&key)
                .is_some_and(|versions| versions.contains(&i.resource_version))
        })
        .collect()
}

/// Writes the statuses of each published update's Ingresses until the sender is gone.
pub(super) async fn write(
    client: Client,
    address: StatusAddress,
    mut ingresses: watch::Receiver<Vec<IngressNow>>,
    writes: Family<Vec<(&'static str, String)>, Counter>,
) {
    let count = |result: &str| {
        writes
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
    };
    let patch = patch(&address);
    let mut written = Written::new();
    let mut retry = RETRY_FIRST;
    loop {
        let now = ingresses.borrow_and_update().clone();
        let mut failed = false;
        for ingress in due(&now, &address, &written) {
            let api = Api::<Ingress>::namespaced(client.clone(), &ingress.namespace);
            let params = PatchParams::default();
            match api
                .patch_status(&ingress.name, &params, &Patch::Merge(&patch))
                .await
            {
                Ok(answer) => {
                    count("ok");
                    tracing::info!(ingress = %format!("{}/{}", ingress.namespace, ingress.name), %address, "Ingress status.loadBalancer set");
                    let versions = [
                        ingress.resource_version.clone(),
                        answer.metadata.resource_version,
                    ];
                    written.insert((ingress.namespace.clone(), ingress.name.clone()), versions);
                }
                Err(e) => {
                    count("error");
                    failed = true;
                    tracing::warn!(ingress = %format!("{}/{}", ingress.namespace, ingress.name), error = %e, retry_in = ?retry, "cannot set the Ingress's status.loadBalancer; retrying");
                }
            }
        }
        if failed {
            // A newer update is taken at once; otherwise the same is tried after the wait.
            tokio::select! {
                () = tokio::time::sleep(retry) => {}
                changed = ingresses.changed() => if changed.is_err() { return },
            }
            retry = (retry * 2).min(RETRY_MAX);
            continue;
        }
        retry = RETRY_FIRST;
        if ingresses.changed().await.is_err() {
            return;
        }
    }
}
