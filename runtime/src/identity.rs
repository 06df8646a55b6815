//! A workload's credentials, as the sidecar holds them: its certificate chain and key, and the
//! roots it trusts. They are published through a `tokio::sync::watch` (Linkerd meshtls's
//! publisher/receiver pair), so TLS configs are rebuilt when the certificate is renewed or the
//! trust bundle rotates, without a restart and without closing a connection.
//!
//! [`IdentityClient`] is the publisher: it keeps a sidecar's certificate from the control
//! plane's `ferry.control.v1.Identity` service current: at 65–75 % of its life (jittered), and at once when
//! the control plane announces a CA generation other than the one the certificate was issued
//! at (`WatchAuthority`: a rotation), so a new trust bundle or issuing chain reaches it within
//! seconds. The identity and expiry are the leaf's own (its URI SAN and notAfter), never only
//! what the answer says.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferry_model::mesh::WorkloadId;
use ferry_model::proto::{AuthorityRequest, CertifyRequest, CertifyResponse};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::shutdown::Shutdown;
use crate::subscribe::backoff::Backoff;
use crate::subscribe::grpc;

/// What a workload proves itself with and whom it trusts.
#[derive(Debug)]
pub struct Credentials {
    /// The identity the certificate carries as its URI SAN.
    pub id: WorkloadId,
    /// Leaf first, then the intermediates; the key never left the process.
    pub key: Arc<CertifiedKey>,
    /// The trust bundle: every root a peer's chain may end at (two during a root rotation).
    pub roots: Vec<CertificateDer<'static>>,
    /// The leaf's `notAfter`.
    pub expires: SystemTime,
}

/// The receiving end: `None` until the first certificate is issued.
pub type CredentialsWatch = tokio::sync::watch::Receiver<Option<Arc<Credentials>>>;

/// The part of a certificate's life after which it is renewed: a point drawn uniformly in
/// this range for each certificate, so sidecars started (or renewed by a rotation) together do
/// not all come back at once; 70 % on average, as Linkerd's proxy renews, spread like Istio's
/// jittered grace period. The latest point still leaves a quarter of the life to retry in.
pub const RENEW_WINDOW: (f64, f64) = (0.65, 0.75);

/// Where the identity service is and how the sidecar proves its Pod.
#[derive(Clone, Debug)]
pub struct IdentityConfig {
    /// The control channel, `https://HOST:PORT`.
    pub control: http::Uri,
    /// The control channel's trust bundle (its `ca.crt`).
    pub ca_pem: Vec<u8>,
    /// The per-Pod token the kubelet handed the sidecar.
    pub token: String,
}

/// Errors of setting the client up (each call's own errors are logged and retried).
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("--control {0}: expected https://HOST:PORT")]
    Url(http::Uri),
    #[error("--control-ca: no certificate in the file")]
    Ca,
    #[error("the Pod token is empty")]
    EmptyToken,
}

/// What one Certify call may end with.
#[derive(Debug, thiserror::Error)]
enum CertifyError {
    #[error("cannot reach the control plane: {0}")]
    Channel(String),
    #[error("{}: {}", .0.code(), .0.message())]
    Grpc(tonic::Status),
    #[error("cannot make a key or CSR: {0}")]
    Key(rcgen::Error),
    #[error("the answer is unusable: {0}")]
    Answer(String),
}

/// The sidecar's metrics of its certificate.
#[derive(Clone, Debug, Default)]
struct Metrics {
    expiry: Gauge,
    renewals: Family<ResultLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Keeps a workload's certificate: a key made in memory, a CSR sent to the control plane's
/// `Identity` service with the per-Pod token, the answer published as [`Credentials`]; again
/// at a jittered point of each certificate's life ([`RENEW_WINDOW`]) (a new key each time). While the control plane
/// is away, the current certificate stays in use and the call is retried with jittered
/// back-off.
pub struct IdentityClient {
    config: IdentityConfig,
    /// The trust bundle of the last answer, PEM: the control channel is trusted by it as well
    /// as by `config.ca_pem`, so it stays reachable when a root rotation reissues its
    /// certificate under the new root.
    bundle: std::sync::Mutex<String>,
    publish: tokio::sync::watch::Sender<Option<Arc<Credentials>>>,
    metrics: Metrics,
}

impl std::fmt::Debug for IdentityClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityClient")
            .field("control", &self.config.control)
            .finish_non_exhaustive()
    }
}

impl IdentityClient {
    /// Checks the URL, the CA and the token; nothing is connected yet.
    pub fn build(config: IdentityConfig) -> Result<IdentityClient, IdentityError> {
        let url = || IdentityError::Url(config.control.clone());
        if config.control.scheme_str() != Some("https") {
            return Err(url());
        }
        config
            .control
            .authority()
            .and_then(http::uri::Authority::port_u16)
            .ok_or_else(url)?;
        if CertificateDer::pem_slice_iter(&config.ca_pem)
            .next()
            .is_none_or(|c| c.is_err())
        {
            return Err(IdentityError::Ca);
        }
        if config.token.trim().is_empty() {
            return Err(IdentityError::EmptyToken);
        }
        Ok(IdentityClient {
            config,
            bundle: std::sync::Mutex::default(),
            publish: tokio::sync::watch::channel(None).0,
            metrics: Metrics::default(),
        })
    }

    /// The credentials as they are issued: `None` until the first certificate.
    pub fn watch(&self) -> CredentialsWatch {
        self.publish.subscribe()
    }

    /// Registers `ferry_sidecar_certificate_expiry_timestamp_seconds` (the current
    /// certificate's notAfter) and `ferry_sidecar_certificate_renewals` (by result).
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "ferry_sidecar_certificate_expiry_timestamp_seconds",
            "When the workload certificate in use expires (seconds since the Unix epoch)",
            self.metrics.expiry.clone(),
        );
        registry.register(
            "ferry_sidecar_certificate_renewals",
            "Certificate requests to the control plane, by result (issued, failed)",
            self.metrics.renewals.clone(),
        );
    }

    /// Keeps the certificate current until shutdown.
    pub async fn run(self, mut shutdown: Shutdown) {
        let (announce, mut announced) = tokio::sync::watch::channel(None);
        tokio::select! {
            () = shutdown.wait() => {}
            () = self.follow_authority(announce) => {}
            () = self.renew(&mut announced) => {}
        }
    }

    /// Certify, then again at renewal time or when `announced` (the control plane's CA
    /// generation) differs from the one the certificate was issued at.
    async fn renew(&self, announced: &mut tokio::sync::watch::Receiver<Option<u64>>) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            let (wait, issued_at) = match self.certify().await {
                Ok((credentials, generation)) => {
                    backoff.reset();
                    let wait = renewal_delay(SystemTime::now(), credentials.expires);
                    tracing::info!(id = %credentials.id, renew_in = ?wait, ca_generation = generation, "workload certificate issued");
                    self.metrics.expiry.set(unix_seconds(credentials.expires));
                    self.metrics
                        .renewals
                        .get_or_create(&ResultLabels { result: "issued" })
                        .inc();
                    self.publish.send_replace(Some(Arc::new(credentials)));
                    (wait, Some(generation))
                }
                Err(e) => {
                    self.metrics
                        .renewals
                        .get_or_create(&ResultLabels { result: "failed" })
                        .inc();
                    let wait = backoff.next_delay();
                    let current = self.publish.borrow().as_ref().map(|c| c.expires);
                    match current {
                        Some(expires) if expires > SystemTime::now() => {
                            tracing::warn!(error = %e, retry_in = ?wait, "cannot renew the workload certificate; the current one stays in use");
                        }
                        Some(_) => {
                            tracing::error!(error = %e, retry_in = ?wait, "the workload certificate expired and cannot be renewed")
                        }
                        None => {
                            tracing::warn!(error = %e, retry_in = ?wait, "no workload certificate yet")
                        }
                    }
                    (wait, None)
                }
            };
            match issued_at {
                Some(issued_at) => {
                    let rotated = announced.wait_for(|g| g.is_some_and(|g| g != issued_at));
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        Ok(g) = rotated => {
                            tracing::info!(ca_generation = *g, issued_at, "the mesh CA changed: renewing now");
                        }
                    }
                }
                None => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Follows `Identity.WatchAuthority`, reconnecting with back-off, into `announce`.
    async fn follow_authority(&self, announce: tokio::sync::watch::Sender<Option<u64>>) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            match self.watch_authority(&announce, &mut backoff).await {
                Ok(()) => tracing::debug!("the control plane ended the CA watch; reconnecting"),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot follow the mesh CA; renewals keep their schedule")
                }
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    async fn watch_authority(
        &self,
        announce: &tokio::sync::watch::Sender<Option<u64>>,
        backoff: &mut Backoff,
    ) -> Result<(), CertifyError> {
        let mut client = self.client().await?;
        let mut stream = client
            .watch_authority(AuthorityRequest {
                token: self.config.token.trim().to_owned(),
            })
            .await
            .map_err(CertifyError::Grpc)?
            .into_inner();
        while let Some(authority) = stream.message().await.map_err(CertifyError::Grpc)? {
            backoff.reset();
            announce.send_replace(Some(authority.generation));
        }
        Ok(())
    }

    /// The Identity client on a fresh connection to the control channel, trusted by the
    /// configured CA and the last trust bundle.
    async fn client(
        &self,
    ) -> Result<grpc::identity_client::IdentityClient<crate::subscribe::H2>, CertifyError> {
        let mut ca = self.config.ca_pem.clone();
        ca.push(b'\n');
        ca.extend_from_slice(
            self.bundle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_bytes(),
        );
        let channel = crate::subscribe::channel(&self.config.control, &ca)
            .await
            .map_err(CertifyError::Channel)?;
        Ok(grpc::identity_client::IdentityClient::with_origin(
            channel,
            self.config.control.clone(),
        ))
    }

    /// One Certify call with a fresh key.
    async fn certify(&self) -> Result<(Credentials, u64), CertifyError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(CertifyError::Key)?;
        let mut params = rcgen::CertificateParams::default();
        // The control plane names the certificate; the CSR carries only the key.
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key).map_err(CertifyError::Key)?;
        let mut client = self.client().await?;
        let answer = tokio::time::timeout(
            CERTIFY_TIMEOUT,
            client.certify(CertifyRequest {
                csr: csr.der().to_vec(),
                token: self.config.token.trim().to_owned(),
            }),
        )
        .await
        .map_err(|_| CertifyError::Channel("no answer in time".to_owned()))?
        .map_err(CertifyError::Grpc)?
        .into_inner();
        let credentials =
            credentials(&answer, &key.serialize_pem()).map_err(CertifyError::Answer)?;
        *self
            .bundle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = answer.trust_bundle_pem;
        Ok((credentials, answer.ca_generation))
    }
}

/// How long one Certify call may take.
const CERTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// The credentials of a Certify answer and the key the CSR was made with: the identity is the
/// leaf's one `spiffe://` URI SAN, and must be the answer's `identity`; the expiry is the
/// leaf's notAfter.
fn credentials(answer: &CertifyResponse, key_pem: &str) -> Result<Credentials, String> {
    let key =
        crate::tls::certified_key(answer.certificate_chain_pem.as_bytes(), key_pem.as_bytes())
            .map_err(|e| format!("certificate_chain_pem: {e}"))?;
    let (id, expires) = leaf_identity(&key.cert[0])?;
    if answer.identity != id.to_string() {
        return Err(format!(
            "the leaf of certificate_chain_pem names {id}, while identity says {:?}",
            answer.identity
        ));
    }
    let roots = CertificateDer::pem_slice_iter(answer.trust_bundle_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("trust_bundle_pem: {e}"))?;
    if roots.is_empty() {
        return Err("trust_bundle_pem holds no certificate".to_owned());
    }
    Ok(Credentials {
        id,
        key: Arc::new(key),
        roots,
        expires,
    })
}

/// A leaf's one `spiffe://` URI SAN, as a workload identity, and its notAfter.
fn leaf_identity(leaf: &CertificateDer<'_>) -> Result<(WorkloadId, SystemTime), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("certificate_chain_pem: the leaf cannot be read: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("certificate_chain_pem: the leaf's subjectAltName: {e}"))?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with("spiffe://") => {
                Some(*uri)
            }
            _ => None,
        })
        .collect();
    let [uri] = uris.as_slice() else {
        return Err(format!(
            "certificate_chain_pem: the leaf carries {} spiffe:// URI SANs; exactly one is expected",
            uris.len()
        ));
    };
    let id = uri
        .parse()
        .map_err(|e| format!("certificate_chain_pem: the leaf's URI SAN: {e}"))?;
    let expires = u64::try_from(cert.validity().not_after.timestamp())
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
        .map_err(|_| "certificate_chain_pem: the leaf's notAfter is before 1970".to_owned())?;
    Ok((id, expires))
}

/// How many steps the renewal window is drawn in (fine enough for any lifetime in use).
const RENEW_STEPS: u64 = 1 << 20;

/// When to renew a certificate that expires at `expires`: at a uniformly random point of
/// [`RENEW_WINDOW`] of the life left, and never sooner than a second from now.
pub fn renewal_delay(now: SystemTime, expires: SystemTime) -> Duration {
    renewal_delay_drawn(now, expires, crate::random::below(RENEW_STEPS))
}

/// [`renewal_delay`] with the draw given: `draw` in `0..RENEW_STEPS` picks the point of the
/// window (0 its start, the largest its end; larger ones count as the end).
fn renewal_delay_drawn(now: SystemTime, expires: SystemTime, draw: u64) -> Duration {
    let life = expires.duration_since(now).unwrap_or_default();
    let (low, high) = RENEW_WINDOW;
    let at = low + (high - low) * draw.min(RENEW_STEPS - 1) as f64 / (RENEW_STEPS - 1) as f64;
    life.mul_f64(at).max(Duration::from_secs(1))
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_at_a_random_point_between_65_and_75_percent_of_the_life() {
        let now = SystemTime::now();
        let life = now + Duration::from_secs(1000);
        // The window's ends and middle, drawn.
        assert_eq!(renewal_delay_drawn(now, life, 0), Duration::from_secs(650));
        assert_eq!(
            renewal_delay_drawn(now, life, RENEW_STEPS - 1),
            Duration::from_secs(750)
        );
        assert_eq!(
            renewal_delay_drawn(now, life, u64::MAX),
            Duration::from_secs(750)
        );
        let middle = renewal_delay_drawn(now, life, RENEW_STEPS / 2);
        assert!(middle.abs_diff(Duration::from_secs(700)) < Duration::from_millis(1));
        // Drawn for real: inside the window, and spread over it (not one instant for all).
        let mut seen = Vec::new();
        for _ in 0..200 {
            let d = renewal_delay(now, life);
            assert!(
                d >= Duration::from_secs(650) && d <= Duration::from_secs(750),
                "{d:?}"
            );
            seen.push(d);
        }
        let (min, max) = (seen.iter().min().unwrap(), seen.iter().max().unwrap());
        assert!(
            *min < Duration::from_secs(670) && *max > Duration::from_secs(730),
            "{min:?}..{max:?}"
        );
        assert_eq!(
            renewal_delay(now, now - Duration::from_secs(5)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_bad_setup_is_refused_at_build() {
        let config = IdentityConfig {
            control: "https://127.0.0.1:4000".parse().unwrap(),
            ca_pem: Vec::new(),
            token: "t".into(),
        };
        assert!(matches!(
            IdentityClient::build(config.clone()),
            Err(IdentityError::Ca)
        ));
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_owned()]).unwrap();
        let ok = IdentityConfig {
            ca_pem: ca.cert.pem().into_bytes(),
            ..config
        };
        assert!(IdentityClient::build(ok.clone()).is_ok());
        assert!(matches!(
            IdentityClient::build(IdentityConfig {
                control: "http://127.0.0.1:4000".parse().unwrap(),
                ..ok.clone()
            }),
            Err(IdentityError::Url(_))
        ));
        assert!(matches!(
            IdentityClient::build(IdentityConfig {
                token: " ".into(),
                ..ok
            }),
            Err(IdentityError::EmptyToken)
        ));
    }

    /// A self-signed certificate naming `uri` (a stand-in for a leaf), and its key.
    fn leaf(uri: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn an_answer_for_another_key_is_unusable() {
        let (cert, key) = leaf("spiffe://cluster.local/ns/shop/sa/web");
        let other = rcgen::KeyPair::generate().unwrap();
        let answer = CertifyResponse {
            identity: "spiffe://cluster.local/ns/shop/sa/web".into(),
            certificate_chain_pem: cert.clone(),
            trust_bundle_pem: cert,
            not_after_unix_seconds: 2_000_000_000,
            ca_generation: 3,
        };
        let e = credentials(&answer, &other.serialize_pem()).unwrap_err();
        assert!(e.contains("certificate_chain_pem"), "{e}");
        let good = credentials(&answer, &key).unwrap();
        assert_eq!(good.id.service_account, "web");
        assert_eq!(good.roots.len(), 1);
    }

    #[test]
    fn the_identity_is_the_leafs_and_an_answer_naming_another_is_refused() {
        let (cert, key) = leaf("spiffe://cluster.local/ns/shop/sa/api");
        let answer = CertifyResponse {
            identity: "spiffe://cluster.local/ns/shop/sa/web".into(),
            certificate_chain_pem: cert.clone(),
            trust_bundle_pem: cert.clone(),
            not_after_unix_seconds: 2_000_000_000,
            ca_generation: 0,
        };
        let e = credentials(&answer, &key).unwrap_err();
        assert!(
            e.contains("names spiffe://cluster.local/ns/shop/sa/api") && e.contains("sa/web"),
            "{e}"
        );
        // A leaf without a SPIFFE identity names nobody, whatever the answer says.
        let plain = rcgen::generate_simple_self_signed(vec!["web".to_owned()]).unwrap();
        let e = credentials(
            &CertifyResponse {
                certificate_chain_pem: plain.cert.pem(),
                ..answer
            },
            &plain.signing_key.serialize_pem(),
        )
        .unwrap_err();
        assert!(e.contains("0 spiffe:// URI SANs"), "{e}");
    }
}
