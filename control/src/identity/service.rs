//! `ferry.control.v1.Identity/Certify` on the control channel: a per-Pod token and a CSR in,
//! the Pod's workload certificate out. The token is checked first (UNAUTHENTICATED: a
//! malformed, forged or dead token; UNAVAILABLE: a ServiceAccount token the API server could
//! not be asked about), then the CSR (INVALID_ARGUMENT naming the field); only
//! the CSR's public key is used. Issuances and refusals are counted
//! (`ferry_control_identity_certificates_issued`, `ferry_control_identity_certify_failures`
//! by reason) and each issuance is logged at info with the identity, and recorded with the CA
//! generation it was issued at ([`Ca::issued`]).
//!
//! `WatchAuthority` streams the CA generation to each sidecar (the same token check), so a
//! rotation reaches every sidecar within seconds: it renews when the generation is not the one
//! its certificate was issued at. The caller is checked again whenever the Pod view changes
//! and before each generation sent: once its Pod is gone (or recreated under a new uid) the
//! stream ends with UNAUTHENTICATED, so a deleted Pod's sidecar (or whoever kept its token) is
//! not told of rotations any longer.
//!
//! A token is ferry's per-Pod token ([`super::tokens`], minted by `ferry up`'s kubelet) or,
//! when the control plane watches a Kubernetes cluster ([`IdentityService::with_reviewer`]),
//! the Pod's projected ServiceAccount token, reviewed by the API server ([`super::review`]).

use std::sync::Arc;

use std::time::{Duration, SystemTime};
use tokio_stream::wrappers::ReceiverStream;

use ferry_model::proto::{Authority, AuthorityRequest, CertifyRequest, CertifyResponse};
use ferry_runtime::subscribe::grpc::identity_server::Identity;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::review::{ServiceAccountTokens, TokenReviewer};
use super::tokens::TokenError;
use super::{Ca, Hierarchy, Holding, PodDirectory, PodTokens, PodView, csr};
use ferry_model::mesh::WorkloadId;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the label values, as Prometheus conventions spell them
enum Reason {
    token,
    csr,
    internal,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: Reason,
}

/// The identity service's metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    issued: Counter,
    failures: Family<ReasonLabels, Counter>,
    intermediate_expiry: Gauge,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            issued: Counter::default(),
            failures: Family::default(),
            intermediate_expiry: Gauge::default(),
        };
        registry.register(
            "ferry_control_identity_certificates_issued",
            "Workload certificates issued",
            m.issued.clone(),
        );
        registry.register(
            "ferry_control_identity_certify_failures",
            "Certify calls refused, by reason (token, csr, internal)",
            m.failures.clone(),
        );
        registry.register(
            "ferry_control_identity_intermediate_expiry_timestamp_seconds",
            "When the issuing intermediate CA expires (seconds since the Unix epoch)",
            m.intermediate_expiry.clone(),
        );
        m
    }

    /// Follows the CA in use.
    pub fn ca_changed(&self, hierarchy: &Hierarchy) {
        self.intermediate_expiry
            .set(unix_seconds(hierarchy.intermediate_expires));
    }

    fn failed(&self, reason: Reason) {
        self.failures.get_or_create(&ReasonLabels { reason }).inc();
    }
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The service, shared by every connection of the control channel.
#[derive(Clone, Debug)]
pub struct IdentityService {
    ca: Arc<Ca>,
    tokens: Arc<PodTokens>,
    pods: PodDirectory,
    trust_domain: String,
    ttl: Duration,
    metrics: Metrics,
    /// Kubernetes ServiceAccount tokens, when the control plane watches a cluster.
    accounts: Option<Arc<ServiceAccountTokens>>,
}

/// Who a token proves a caller is: a Pod and its workload identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub id: WorkloadId,
    pub namespace: String,
    pub pod: String,
    /// The Pod's uid: its record, and what a later check of the same caller compares.
    pub uid: String,
}

impl IdentityService {
    pub fn new(
        ca: Arc<Ca>,
        tokens: Arc<PodTokens>,
        pods: PodDirectory,
        trust_domain: String,
        ttl: Duration,
        metrics: Metrics,
    ) -> IdentityService {
        metrics.ca_changed(&ca.current());
        IdentityService {
            ca,
            tokens,
            pods,
            trust_domain,
            ttl,
            metrics,
            accounts: None,
        }
    }

    /// Also takes Kubernetes ServiceAccount tokens, reviewed by this reviewer (the API
    /// server of `--source kubernetes`).
    #[must_use]
    pub fn with_reviewer(mut self, reviewer: Option<Arc<dyn TokenReviewer>>) -> IdentityService {
        self.accounts = reviewer.map(|r| Arc::new(ServiceAccountTokens::new(r)));
        self
    }

    /// The CA it issues from.
    pub fn ca(&self) -> Arc<Ca> {
        self.ca.clone()
    }

    /// The minter of the tokens this service checks.
    pub fn tokens(&self) -> Arc<PodTokens> {
        self.tokens.clone()
    }

    /// The Pod a token speaks for, when the token holds for a Pod that exists now (the check
    /// `Certify` makes).
    pub async fn authenticate(&self, token: &str) -> Result<Caller, TokenError> {
        match &self.accounts {
            // ferry's own tokens say their version first; anything else is for the API server.
            Some(accounts) if !token.trim().starts_with("v1.") => {
                let reviewed = accounts.reviewed(token.trim()).await?;
                let id = reviewed.verify(&self.pods.current(), &self.trust_domain)?;
                Ok(Caller {
                    id,
                    namespace: reviewed.namespace,
                    pod: reviewed.pod,
                    uid: reviewed.pod_uid,
                })
            }
            _ => self.pod_token(token),
        }
    }

    /// The Pod one of ferry's per-Pod tokens speaks for.
    fn pod_token(&self, token: &str) -> Result<Caller, TokenError> {
        let id = self
            .tokens
            .verify(token, &self.pods.current(), &self.trust_domain)?;
        let claims = self.tokens.claims(token)?;
        Ok(Caller {
            id,
            namespace: claims.namespace,
            pod: claims.pod,
            uid: claims.uid,
        })
    }

    /// A token refused, counted and logged, as the status the caller gets.
    fn refused(&self, e: &TokenError) -> tonic::Status {
        self.metrics.failed(Reason::token);
        tracing::warn!(error = %e, "identity: token refused");
        match e {
            TokenError::ReviewUnavailable(_) => tonic::Status::unavailable(e.to_string()),
            _ => tonic::Status::unauthenticated(e.to_string()),
        }
    }

    /// One Certify call with one of ferry's per-Pod tokens, without the transport (what the
    /// tests call).
    pub fn certify(&self, request: &CertifyRequest) -> Result<CertifyResponse, tonic::Status> {
        let caller = self
            .pod_token(&request.token)
            .map_err(|e| self.refused(&e))?;
        self.issue(&caller, &request.csr)
    }

    /// Issues the certificate of an authenticated caller for its CSR's key.
    pub fn issue(&self, caller: &Caller, der: &[u8]) -> Result<CertifyResponse, tonic::Status> {
        let id = &caller.id;
        let public_key = csr::public_key(der).map_err(|e| {
            self.metrics.failed(Reason::csr);
            tracing::warn!(%id, error = %e, "identity: CSR refused");
            tonic::Status::invalid_argument(e)
        })?;
        let (generation, hierarchy) = self.ca.issuing();
        let issued = hierarchy
            .issue_workload(&public_key, id, self.ttl)
            .map_err(|e| {
                self.metrics.failed(Reason::internal);
                tracing::error!(%id, error = %e, "identity: cannot issue");
                tonic::Status::internal(format!("cannot issue: {e}"))
            })?;
        self.metrics.issued.inc();
        self.metrics.ca_changed(&hierarchy);
        self.ca.issued(Holding {
            namespace: caller.namespace.clone(),
            pod: caller.pod.clone(),
            uid: caller.uid.clone(),
            generation,
            not_after: issued.not_after,
        });
        let not_after = unix_seconds(issued.not_after);
        tracing::info!(%id, not_after, generation, "identity: certificate issued");
        Ok(CertifyResponse {
            identity: id.to_string(),
            certificate_chain_pem: issued.chain_pem,
            trust_bundle_pem: hierarchy.bundle_pem.clone(),
            not_after_unix_seconds: not_after,
            ca_generation: generation,
        })
    }

    /// One WatchAuthority call, without the transport: the generations from now on, once the
    /// token holds.
    pub async fn watch_authority(
        &self,
        request: &AuthorityRequest,
    ) -> Result<(tokio::sync::watch::Receiver<u64>, Caller), tonic::Status> {
        let caller = self
            .authenticate(&request.token)
            .await
            .map_err(|e| self.refused(&e))?;
        Ok((self.ca.generations(), caller))
    }
}

/// The generations of a watch as a stream: the current one, then each change, until the
/// caller goes away, or `still_allowed` (checked at each change of `pods` and before each
/// generation) refuses: then the refusal, and the end.
fn authority_stream(
    mut generations: tokio::sync::watch::Receiver<u64>,
    mut pods: tokio::sync::watch::Receiver<Option<Arc<PodView>>>,
    still_allowed: impl Fn() -> Result<(), tonic::Status> + Send + 'static,
) -> ReceiverStream<Result<Authority, tonic::Status>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        let mut following_pods = true;
        let mut send = true;
        loop {
            if let Err(refused) = still_allowed() {
                // Best effort: the caller may be gone already.
                let _ = tx.send(Err(refused)).await;
                return;
            }
            if send {
                let generation = *generations.borrow_and_update();
                if tx.send(Ok(Authority { generation })).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                () = tx.closed() => return,
                changed = generations.changed() => {
                    if changed.is_err() { return }
                    send = true;
                }
                changed = pods.changed(), if following_pods => {
                    following_pods = changed.is_ok();
                    send = false;
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn certify(
        &self,
        request: tonic::Request<CertifyRequest>,
    ) -> Result<tonic::Response<CertifyResponse>, tonic::Status> {
        let service = self.clone();
        let request = request.into_inner();
        let caller = service
            .authenticate(&request.token)
            .await
            .map_err(|e| service.refused(&e))?;
        // Signing is a few hundred microseconds of CPU: off the async threads.
        tokio::task::spawn_blocking(move || service.issue(&caller, &request.csr))
            .await
            .map_err(|e| tonic::Status::internal(e.to_string()))?
            .map(tonic::Response::new)
    }

    type WatchAuthorityStream = ReceiverStream<Result<Authority, tonic::Status>>;

    async fn watch_authority(
        &self,
        request: tonic::Request<AuthorityRequest>,
    ) -> Result<tonic::Response<Self::WatchAuthorityStream>, tonic::Status> {
        let (generations, caller) =
            IdentityService::watch_authority(self, request.get_ref()).await?;
        let pods = self.pods.clone();
        let still_allowed = move || {
            if pods
                .current()
                .has(&caller.namespace, &caller.pod, &caller.uid)
            {
                Ok(())
            } else {
                Err(tonic::Status::unauthenticated(format!(
                    "Pod {}/{} (uid {}) no longer exists",
                    caller.namespace, caller.pod, caller.uid
                )))
            }
        };
        Ok(tonic::Response::new(authority_stream(
            generations,
            self.pods.subscribe(),
            still_allowed,
        )))
    }
}
