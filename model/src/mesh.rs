//! The mesh's fixed points, shared by the parts that must agree on them: the orchestrator's
//! injection and interception, the sidecar, and the control plane's identity service.
//!
//! The ports follow Linkerd's proxy (so people who know one know the other); the socket mark
//! is what exempts the sidecar's own connections from interception in the Pod's nftables rules.

use std::fmt;

pub mod app_probe;

/// The sidecar's outbound listener: the app's outbound TCP is redirected here.
pub const OUTBOUND_PORT: u16 = 4140;
/// The sidecar's inbound listener: TCP arriving for the Pod is redirected here.
pub const INBOUND_PORT: u16 = 4143;
/// The sidecar's admin server (`/live`, `/ready`, `/metrics`), on the Pod's address.
pub const ADMIN_PORT: u16 = 4191;
/// The control channel (`ferry control --listen`'s default port; `ferry up` serves it to its
/// Pods on the node's bridge address).
pub const CONTROL_PORT: u16 = 7443;
/// `SO_MARK` on every socket the sidecar opens, so its own connections skip interception.
pub const SOCKET_MARK: u32 = 0x0066_6572;
/// The ALPN protocol that marks mesh traffic between sidecars (the app's own protocol is
/// carried inside, detected on the other side).
pub const ALPN: &[u8] = b"ferry.dev/mesh/v1";
/// The container the injection adds: an initContainer with `restartPolicy: Always` (a
/// Kubernetes native sidecar). A Pod that has it is meshed.
pub const SIDECAR_CONTAINER: &str = "ferry-sidecar";
/// The annotation on a Namespace or a Pod (template) that asks for a sidecar: `enabled`, or
/// `disabled` on a Pod to opt out of its Namespace's.
pub const INJECT_ANNOTATION: &str = "ferry.dev/inject";

/// The annotation on a Pod or its Namespace that sets how the sidecar takes inbound traffic:
/// `strict` (mutual TLS only) or `permissive` (plaintext too); the Pod's wins.
pub const MTLS_MODE_ANNOTATION: &str = "ferry.dev/mtls-mode";

/// The ports whose protocols speak first from the server (or are otherwise not worth
/// detecting), carried as opaque TCP at once, with no protocol detection delay: Linkerd's
/// default opaque ports (`config.defaultOpaquePorts`): SMTP (25), SMTP submission (587), MySQL
/// (3306), Galera (4444), PostgreSQL (5432), Redis (6379), Elasticsearch transport (9300)
/// and memcached (11211).
pub const OPAQUE_PORTS: [u16; 8] = [25, 587, 3306, 4444, 5432, 6379, 9300, 11211];

/// What a sidecar should expect on a port before it looks at the bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolHint {
    /// Nothing says: detect (an HTTP/1 request line, the HTTP/2 preface, or opaque).
    #[default]
    Detect,
    /// HTTP/1.x, routed per request.
    Http1,
    /// HTTP/2 with prior knowledge (h2c, gRPC), routed per request.
    Http2,
    /// Opaque TCP: balanced per connection, never sniffed.
    Opaque,
}

/// The hint for a Service port: its `appProtocol` first, then its name in Istio's
/// `<protocol>[-<suffix>]` convention, then the well-known [`OPAQUE_PORTS`] (the Service's
/// port, or the number its `targetPort` names).
pub fn protocol_hint(app_protocol: Option<&str>, port_name: &str, ports: &[u16]) -> ProtocolHint {
    let by_word = |word: &str| match word {
        "http" | "http1" | "kubernetes.io/ws" | "grpc-web" => Some(ProtocolHint::Http1),
        "http2" | "h2c" | "kubernetes.io/h2c" | "grpc" => Some(ProtocolHint::Http2),
        "tcp" | "opaque" | "tls" | "https" | "kubernetes.io/wss" | "mysql" | "mongo" | "redis" => {
            Some(ProtocolHint::Opaque)
        }
        _ => None,
    };
    let app = app_protocol.map(str::to_ascii_lowercase);
    let name = port_name.to_ascii_lowercase();
    let named = if name.starts_with("grpc-web") {
        Some(ProtocolHint::Http1)
    } else {
        by_word(name.split('-').next().unwrap_or_default())
    };
    app.as_deref()
        .and_then(by_word)
        .or(named)
        .or_else(|| {
            ports
                .iter()
                .any(|p| OPAQUE_PORTS.contains(p))
                .then_some(ProtocolHint::Opaque)
        })
        .unwrap_or_default()
}

/// A workload's identity: `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadId {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

/// Why a string is not a workload identity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not spiffe://<trust domain>/ns/<namespace>/sa/<service account>")]
pub struct WorkloadIdError(pub String);

impl WorkloadId {
    pub fn new(trust_domain: &str, namespace: &str, service_account: &str) -> WorkloadId {
        WorkloadId {
            trust_domain: trust_domain.to_owned(),
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
        }
    }

    /// The principal as Istio's AuthorizationPolicy writes it: the URI without `spiffe://`.
    pub fn principal(&self) -> String {
        format!(
            "{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}", self.principal())
    }
}

impl std::str::FromStr for WorkloadId {
    type Err = WorkloadIdError;

    fn from_str(s: &str) -> Result<WorkloadId, WorkloadIdError> {
        let bad = || WorkloadIdError(s.to_owned());
        let rest = s.strip_prefix("spiffe://").ok_or_else(bad)?;
        let mut parts = rest.split('/');
        let (Some(td), Some("ns"), Some(ns), Some("sa"), Some(sa), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        if [td, ns, sa].iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        Ok(WorkloadId::new(td, ns, sa))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_reads_back_as_written() {
        let id = WorkloadId::new("cluster.local", "shop", "web");
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/shop/sa/web");
        assert_eq!(id.principal(), "cluster.local/ns/shop/sa/web");
        assert_eq!(id.to_string().parse::<WorkloadId>(), Ok(id));
    }

    #[test]
    fn protocol_hints_come_from_app_protocol_then_name_then_port() {
        for (app, name, ports, want) in [
            (Some("http"), "tcp-x", &[80u16][..], ProtocolHint::Http1),
            (
                Some("kubernetes.io/h2c"),
                "",
                &[80][..],
                ProtocolHint::Http2,
            ),
            (Some("GRPC"), "", &[80][..], ProtocolHint::Http2),
            (
                Some("kubernetes.io/wss"),
                "http",
                &[80][..],
                ProtocolHint::Opaque,
            ),
            // An appProtocol ferry does not know gives way to the name.
            (
                Some("example.com/custom"),
                "grpc-api",
                &[80][..],
                ProtocolHint::Http2,
            ),
            (None, "grpc-web", &[80][..], ProtocolHint::Http1),
            (None, "http-metrics", &[9090][..], ProtocolHint::Http1),
            (None, "mysql", &[13306][..], ProtocolHint::Opaque),
            (None, "db", &[3306][..], ProtocolHint::Opaque),
            (None, "", &[8080, 5432][..], ProtocolHint::Opaque),
            (None, "web", &[8080][..], ProtocolHint::Detect),
            // A name the hint knows wins over a well-known port.
            (None, "http", &[25][..], ProtocolHint::Http1),
        ] {
            assert_eq!(
                protocol_hint(app, name, ports),
                want,
                "{app:?} {name} {ports:?}"
            );
        }
    }

    #[test]
    fn other_uris_are_not_identities() {
        for bad in [
            "cluster.local/ns/shop/sa/web",
            "spiffe://cluster.local/ns/shop",
            "spiffe://cluster.local/ns//sa/web",
            "spiffe://cluster.local/ns/shop/sa/web/extra",
            "spiffe://cluster.local/sa/web/ns/shop",
            "spiffe:///ns/shop/sa/web",
        ] {
            assert!(bad.parse::<WorkloadId>().is_err(), "{bad}");
        }
    }
}
