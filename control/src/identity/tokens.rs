//! Per-Pod tokens: what a sidecar proves which Pod it is with when it asks for a certificate.
//! Kubernetes' analogue is a bound ServiceAccount token checked by TokenReview: valid only
//! while the Pod it names exists, with the same uid and ServiceAccount (what the control plane
//! of a real cluster takes instead: [`super::review`]).
//!
//! The kubelet mints one when it starts a meshed Pod ([`PodTokens::mint`]) and hands it to the
//! sidecar; the control plane checks it ([`PodTokens::verify`]): its HMAC-SHA256 under the key
//! in `--state-dir/pod-token.key` (0600, made on first start), then the Pod in the control
//! plane's current view ([`super::pods`]). A deleted Pod's token is dead, and so is the token
//! of a Pod deleted and recreated under the same name (a new uid).
//!
//! The format is `v1.<hex of the claims' JSON>.<hex of the HMAC of what precedes it>`: opaque
//! to the sidecar, readable by whoever debugs it.

use std::path::Path;

use ferry_model::mesh::WorkloadId;
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::authority::{CaError, ca_error};
use super::files;
use super::pods::PodView;

/// The key's file in the state directory.
pub const KEY_FILE: &str = "pod-token.key";
const VERSION: &str = "v1";

/// What a token says about its Pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodClaims {
    #[serde(rename = "ns")]
    pub namespace: String,
    #[serde(rename = "pod")]
    pub pod: String,
    pub uid: String,
    /// The Pod's ServiceAccount (`default` when its spec names none).
    #[serde(rename = "sa")]
    pub service_account: String,
    /// Seconds since the Unix epoch.
    #[serde(rename = "iat")]
    pub issued_at: u64,
}

/// Why a token proves nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("the token's signature does not verify (not minted by this control plane)")]
    Signature,
    #[error("the token names Pod {namespace}/{pod}, which does not exist (deleted?)")]
    UnknownPod { namespace: String, pod: String },
    #[error(
        "the token names Pod {namespace}/{pod} with uid {token}, which now has uid {current} (recreated)"
    )]
    Uid {
        namespace: String,
        pod: String,
        token: String,
        current: String,
    },
    #[error(
        "the token names Pod {namespace}/{pod} with ServiceAccount {token}, which now runs as {current}"
    )]
    ServiceAccount {
        namespace: String,
        pod: String,
        token: String,
        current: String,
    },
    /// A Kubernetes ServiceAccount token the API server's review refused ([`super::review`]).
    #[error("ServiceAccount token refused: {0}")]
    Review(String),
    /// The API server could not be asked to review a ServiceAccount token (a retry may pass).
    #[error("cannot review the ServiceAccount token with the Kubernetes API server: {0}")]
    ReviewUnavailable(String),
}

/// Mints and verifies per-Pod tokens with one key.
pub struct PodTokens {
    key: hmac::Key,
}

impl std::fmt::Debug for PodTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodTokens").finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl PodTokens {
    /// Tokens under this secret (at least 32 bytes make a full-strength key).
    pub fn new(secret: &[u8]) -> PodTokens {
        PodTokens {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// The key of this state directory, made on first use.
    pub fn load_or_create(dir: &Path) -> Result<PodTokens, CaError> {
        let path = dir.join(KEY_FILE);
        let what = format!("--state-dir: {}", path.display());
        if !path.exists() {
            std::fs::create_dir_all(dir).map_err(|e| ca_error(&what, e))?;
            let mut secret = [0u8; 32];
            ferry_runtime::tls::provider()
                .secure_random
                .fill(&mut secret)
                .map_err(|e| ca_error(&what, format!("no secure randomness: {e:?}")))?;
            files::replace(&path, &format!("{}\n", hex(&secret)), true)?;
        }
        let text = files::read(&path)?;
        let secret = unhex(text.trim())
            .filter(|s| s.len() >= 32)
            .ok_or_else(|| ca_error(&what, "not a key (64 or more hex digits)"))?;
        Ok(PodTokens::new(&secret))
    }

    /// A token for this Pod.
    pub fn mint(&self, claims: &PodClaims) -> String {
        // Serializing plain strings and a number cannot fail.
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let signed = format!("{VERSION}.{}", hex(&json));
        let tag = hmac::sign(&self.key, signed.as_bytes());
        format!("{signed}.{}", hex(tag.as_ref()))
    }

    /// The claims of a token whose signature holds (the Pod is not checked).
    pub fn claims(&self, token: &str) -> Result<PodClaims, TokenError> {
        let token = token.trim();
        let (signed, tag) = token
            .rsplit_once('.')
            .ok_or(TokenError::Malformed("no signature"))?;
        let tag = unhex(tag).ok_or(TokenError::Malformed("the signature is not hex"))?;
        let (version, claims) = signed
            .split_once('.')
            .ok_or(TokenError::Malformed("no claims"))?;
        if version != VERSION {
            return Err(TokenError::Malformed("unknown version (expected v1)"));
        }
        // Constant time: ring compares the whole tag.
        hmac::verify(&self.key, signed.as_bytes(), &tag).map_err(|_| TokenError::Signature)?;
        let json = unhex(claims).ok_or(TokenError::Malformed("the claims are not hex"))?;
        serde_json::from_slice(&json).map_err(|_| TokenError::Malformed("the claims are not JSON"))
    }

    /// The identity a token proves: its signature holds and its Pod exists in `pods` with the
    /// same uid and ServiceAccount.
    pub fn verify(
        &self,
        token: &str,
        pods: &PodView,
        trust_domain: &str,
    ) -> Result<WorkloadId, TokenError> {
        let claims = self.claims(token)?;
        let pod =
            pods.get(&claims.namespace, &claims.pod)
                .ok_or_else(|| TokenError::UnknownPod {
                    namespace: claims.namespace.clone(),
                    pod: claims.pod.clone(),
                })?;
        if pod.uid != claims.uid {
            return Err(TokenError::Uid {
                namespace: claims.namespace,
                pod: claims.pod,
                token: claims.uid,
                current: pod.uid.clone(),
            });
        }
        if pod.service_account != claims.service_account {
            return Err(TokenError::ServiceAccount {
                namespace: claims.namespace,
                pod: claims.pod,
                token: claims.service_account,
                current: pod.service_account.clone(),
            });
        }
        Ok(WorkloadId::new(
            trust_domain,
            &claims.namespace,
            &claims.service_account,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::pods::PodRecord;

    fn claims() -> PodClaims {
        PodClaims {
            namespace: "shop".into(),
            pod: "web-1".into(),
            uid: "uid-1".into(),
            service_account: "web".into(),
            issued_at: 1_700_000_000,
        }
    }

    fn view() -> PodView {
        let mut view = PodView::default();
        view.insert("shop", "web-1", PodRecord::new("uid-1", "web"));
        view
    }

    #[test]
    fn a_minted_token_verifies_to_the_pods_identity() {
        let tokens = PodTokens::new(&[7; 32]);
        let token = tokens.mint(&claims());
        assert_eq!(tokens.claims(&token), Ok(claims()));
        assert_eq!(
            tokens.verify(&token, &view(), "cluster.local").unwrap(),
            WorkloadId::new("cluster.local", "shop", "web")
        );
    }

    #[test]
    fn a_deleted_pods_token_is_dead() {
        let tokens = PodTokens::new(&[7; 32]);
        let token = tokens.mint(&claims());
        let e = tokens
            .verify(&token, &PodView::default(), "cluster.local")
            .unwrap_err();
        assert!(matches!(e, TokenError::UnknownPod { .. }), "{e}");
        assert!(e.to_string().contains("shop/web-1"), "{e}");
    }

    #[test]
    fn a_recreated_pod_or_another_service_account_refuses_the_old_token() {
        let tokens = PodTokens::new(&[7; 32]);
        let token = tokens.mint(&claims());
        let mut recreated = PodView::default();
        recreated.insert("shop", "web-1", PodRecord::new("uid-2", "web"));
        assert!(matches!(
            tokens.verify(&token, &recreated, "cluster.local"),
            Err(TokenError::Uid { .. })
        ));
        let mut other_sa = PodView::default();
        other_sa.insert("shop", "web-1", PodRecord::new("uid-1", "admin"));
        assert!(matches!(
            tokens.verify(&token, &other_sa, "cluster.local"),
            Err(TokenError::ServiceAccount { .. })
        ));
    }

    #[test]
    fn a_tampered_token_or_another_key_fails_the_signature() {
        let tokens = PodTokens::new(&[7; 32]);
        let token = tokens.mint(&claims());
        // Claims of another Pod under the first token's signature.
        let other = tokens.mint(&PodClaims {
            service_account: "admin".into(),
            ..claims()
        });
        let (_, tag) = token.rsplit_once('.').unwrap();
        let (other_signed, _) = other.rsplit_once('.').unwrap();
        let forged = format!("{other_signed}.{tag}");
        assert_eq!(
            tokens.verify(&forged, &view(), "cluster.local"),
            Err(TokenError::Signature)
        );
        let stranger = PodTokens::new(&[8; 32]);
        assert_eq!(
            stranger.verify(&token, &view(), "cluster.local"),
            Err(TokenError::Signature)
        );
        // The signature is checked before the claims are read.
        assert_eq!(tokens.claims("v1.zz.00"), Err(TokenError::Signature));
        for junk in ["", "v1", "v2.00.00", "v1.00.xyz"] {
            assert!(
                matches!(tokens.claims(junk), Err(TokenError::Malformed(_))),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn the_key_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = PodTokens::load_or_create(dir.path()).unwrap();
        let token = first.mint(&claims());
        let again = PodTokens::load_or_create(dir.path()).unwrap();
        assert_eq!(again.claims(&token), Ok(claims()));
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        std::fs::write(dir.path().join(KEY_FILE), "short\n").unwrap();
        let e = PodTokens::load_or_create(dir.path()).unwrap_err();
        assert!(e.to_string().contains(KEY_FILE), "{e}");
    }
}
