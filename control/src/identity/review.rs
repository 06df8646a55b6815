//! Kubernetes ServiceAccount tokens as a sidecar's proof of its Pod, when the control plane
//! watches a real cluster (`ferry control --source kubernetes`), as Linkerd's and Istio's
//! identity services take them: the sidecar presents its Pod's projected token (audience
//! [`AUDIENCE`]), the control plane asks the API server (`TokenReview`,
//! `authentication.k8s.io/v1`, through [`TokenReviewer`]) who it is, and takes the identity
//! from the answer: user `system:serviceaccount:<ns>:<sa>` and the bound Pod's name and uid
//! (`authentication.kubernetes.io/pod-name`, `pod-uid`). The Pod must still be in the control
//! plane's view with that uid and ServiceAccount ([`PodView`]), so a token outliving its Pod
//! proves nothing here even while the API server's answer is cached.
//!
//! A token the API server does not authenticate, or authenticates for another audience, or
//! without a bound Pod, is refused. Positive answers are cached ([`ReviewCache`]: at most
//! [`CACHE_ENTRIES`], each for [`CACHE_TTL`] and never past the token's own expiry) so a
//! sidecar's calls (Certify, WatchAuthority, Destination) cost one review a minute, not one
//! each; refusals are not cached (a token just projected may not be valid yet at the first
//! try), and the cache is keyed by the token's SHA-256, so it holds no token.
//!
//! What any client of the control port can make the API server do is bounded: only a token
//! shaped like a JWT (three base64url parts, at most 8 KiB) is sent for review, at most
//! [`REVIEWS_AT_ONCE`] reviews are in flight, and one without an answer within
//! [`REVIEW_TIMEOUT`] is UNAVAILABLE to the caller.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use ferry_model::mesh::WorkloadId;

use super::pods::PodView;
use super::tokens::TokenError;

/// The audience ferry asks of a ServiceAccount token (Istio's is `istio-ca`, Linkerd's
/// `identity.l5d.io`): a token projected for the API server or another system is refused, so
/// a token this control plane sees cannot be replayed against the API server by it, nor one
/// meant for something else against it.
pub const AUDIENCE: &str = "ferry";
/// How long a positive review is kept.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// How many reviews are kept at most (a cluster's meshed Pods, with room).
pub const CACHE_ENTRIES: usize = 16_384;
const USER_PREFIX: &str = "system:serviceaccount:";
/// How long a review may take before the caller is told UNAVAILABLE (the kube client's own
/// read timeout is a watch's, minutes).
pub const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);
/// Reviews in flight at once: any client of the control port can present a token, so what it
/// makes the API server do is bounded.
pub const REVIEWS_AT_ONCE: usize = 16;
/// The longest token sent for review (Kubernetes' bound tokens are about 1 KiB).
pub const TOKEN_MAX_BYTES: usize = 8 * 1024;
/// The extra fields of a Pod-bound token's user.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";
pub const POD_UID_EXTRA: &str = "authentication.kubernetes.io/pod-uid";

/// What the API server said of a token it authenticated (`TokenReview.status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Review {
    pub authenticated: bool,
    pub username: String,
    /// The audiences the token was accepted for (of those asked).
    pub audiences: Vec<String>,
    /// `user.extra`, as given.
    pub extra: Vec<(String, Vec<String>)>,
    /// `status.error`.
    pub error: String,
}

/// Who a reviewed token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reviewed {
    pub namespace: String,
    pub service_account: String,
    pub pod: String,
    pub pod_uid: String,
}

/// Sends TokenReviews (the Kubernetes source's client does: [`crate::kubernetes::review`]).
#[tonic::async_trait]
pub trait TokenReviewer: Send + Sync + std::fmt::Debug {
    /// The API server's review of `token` for `audience`; `Err` when it could not be asked
    /// (unreachable, refused the review itself).
    async fn review(&self, token: &str, audience: &str) -> Result<Review, String>;
}

impl Review {
    /// Who it authenticates, when it authenticates a Pod-bound ServiceAccount token for
    /// `audience`.
    pub fn reviewed(&self, audience: &str) -> Result<Reviewed, TokenError> {
        let refused = |why: String| TokenError::Review(why);
        if !self.authenticated {
            let error = if self.error.is_empty() {
                "not authenticated"
            } else {
                self.error.as_str()
            };
            return Err(refused(format!(
                "the API server did not authenticate it: {error}"
            )));
        }
        if !self.audiences.iter().any(|a| a == audience) {
            return Err(refused(format!(
                "the API server authenticated it for audiences {:?}, not {audience:?}",
                self.audiences
            )));
        }
        let (namespace, service_account) = self
            .username
            .strip_prefix(USER_PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty() && !sa.contains(':'))
            .ok_or_else(|| {
                refused(format!(
                    "user {:?} is not a ServiceAccount ({USER_PREFIX}<namespace>:<name>)",
                    self.username
                ))
            })?;
        let extra = |key: &str| {
            self.extra
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| match v.as_slice() {
                    [one] if !one.is_empty() => Some(one.clone()),
                    _ => None,
                })
                .ok_or_else(|| {
                    refused(format!(
                        "the token is bound to no Pod (user.extra {key} missing): project one for the Pod (serviceAccountToken, audience {audience:?})"
                    ))
                })
        };
        Ok(Reviewed {
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            pod: extra(POD_NAME_EXTRA)?,
            pod_uid: extra(POD_UID_EXTRA)?,
        })
    }
}

impl Reviewed {
    /// The identity it proves, when its Pod is in `pods` with its uid and ServiceAccount.
    pub fn verify(&self, pods: &PodView, trust_domain: &str) -> Result<WorkloadId, TokenError> {
        let pod = pods
            .get(&self.namespace, &self.pod)
            .ok_or_else(|| TokenError::UnknownPod {
                namespace: self.namespace.clone(),
                pod: self.pod.clone(),
            })?;
        if pod.uid != self.pod_uid {
            return Err(TokenError::Uid {
                namespace: self.namespace.clone(),
                pod: self.pod.clone(),
                token: self.pod_uid.clone(),
                current: pod.uid.clone(),
            });
        }
        if pod.service_account != self.service_account {
            return Err(TokenError::ServiceAccount {
                namespace: self.namespace.clone(),
                pod: self.pod.clone(),
                token: self.service_account.clone(),
                current: pod.service_account.clone(),
            });
        }
        Ok(WorkloadId::new(
            trust_domain,
            &self.namespace,
            &self.service_account,
        ))
    }
}

/// ServiceAccount tokens reviewed through a [`TokenReviewer`], the answers cached.
#[derive(Debug)]
pub struct ServiceAccountTokens {
    reviewer: std::sync::Arc<dyn TokenReviewer>,
    cache: ReviewCache,
    in_flight: tokio::sync::Semaphore,
    timeout: Duration,
}

impl ServiceAccountTokens {
    pub fn new(reviewer: std::sync::Arc<dyn TokenReviewer>) -> ServiceAccountTokens {
        ServiceAccountTokens {
            reviewer,
            cache: ReviewCache::default(),
            in_flight: tokio::sync::Semaphore::new(REVIEWS_AT_ONCE),
            timeout: REVIEW_TIMEOUT,
        }
    }

    /// Waits `timeout` for each review instead of [`REVIEW_TIMEOUT`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> ServiceAccountTokens {
        self.timeout = timeout;
        self
    }

    /// Who the API server says a token is (for [`AUDIENCE`], bound to a Pod); the Pod is not
    /// checked here ([`Reviewed::verify`]).
    pub async fn reviewed(&self, token: &str) -> Result<Reviewed, TokenError> {
        if let Some(reviewed) = self.cache.get(token, Instant::now()) {
            return Ok(reviewed);
        }
        shaped_like_a_jwt(token)?;
        let _slot = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| TokenError::ReviewUnavailable("the reviewer is closed".to_owned()))?;
        let review = tokio::time::timeout(self.timeout, self.reviewer.review(token, AUDIENCE))
            .await
            .map_err(|_| {
                TokenError::ReviewUnavailable(format!("no answer within {:?}", self.timeout))
            })?
            .map_err(TokenError::ReviewUnavailable)?;
        let reviewed = review.reviewed(AUDIENCE)?;
        self.cache.insert(token, reviewed.clone(), Instant::now());
        Ok(reviewed)
    }
}

/// A token worth asking the API server about: at most [`TOKEN_MAX_BYTES`], three base64url
/// parts (a JWS in compact form), so what any client sends does not all become reviews.
fn shaped_like_a_jwt(token: &str) -> Result<(), TokenError> {
    if token.len() > TOKEN_MAX_BYTES {
        return Err(TokenError::Malformed("longer than 8 KiB"));
    }
    let base64url = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
    };
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || !parts.iter().all(|p| base64url(p)) {
        return Err(TokenError::Malformed(
            "neither a ferry token nor a JWT (three base64url parts)",
        ));
    }
    Ok(())
}

/// Positive reviews by the token's SHA-256, bounded in number and age.
#[derive(Debug, Default)]
pub struct ReviewCache {
    entries: Mutex<HashMap<[u8; 32], (Reviewed, Instant)>>,
}

fn key(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut key = [0; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

/// When a JWT says it expires (`exp`), read without checking it: only ever used to keep a
/// cached answer for less time.
fn token_expiry(token: &str) -> Option<SystemTime> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    let exp = u64::try_from(claims.get("exp")?.as_i64()?).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(exp))
}

impl ReviewCache {
    pub fn get(&self, token: &str, now: Instant) -> Option<Reviewed> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (reviewed, until) = entries.get(&key(token))?;
        (now < *until).then(|| reviewed.clone())
    }

    /// Keeps a positive review until [`CACHE_TTL`] from `now` or the token's expiry, whichever
    /// is first. When full, the expired entries go, and if none had, the one that expires
    /// first.
    pub fn insert(&self, token: &str, reviewed: Reviewed, now: Instant) {
        let mut ttl = CACHE_TTL;
        match token_expiry(token).map(|exp| exp.duration_since(SystemTime::now())) {
            Some(Ok(left)) => ttl = ttl.min(left),
            Some(Err(_)) => return,
            None => {}
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CACHE_ENTRIES {
            entries.retain(|_, (_, until)| now < *until);
        }
        if entries.len() >= CACHE_ENTRIES
            && let Some(first) = entries
                .iter()
                .min_by_key(|(_, (_, until))| *until)
                .map(|(k, _)| *k)
        {
            entries.remove(&first);
        }
        entries.insert(key(token), (reviewed, now + ttl));
    }

    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
