//! ServiceAccount tokens as Kubernetes issues them: JWTs (RFC 7519) with the claims of
//! `k8s.io/kubernetes/pkg/serviceaccount` (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti` and
//! the private `kubernetes.io` claim naming the ServiceAccount and the bound Pod).
//!
//! Signed ES256 (ECDSA P-256, SHA-256; RFC 7518 §3.4), which the Kubernetes API server accepts
//! as a service-account key: a verifier needs only the public key, so the key can be published
//! (OIDC discovery's JWKS) without giving anyone the power to mint; ring signs it and rcgen
//! makes and reads its PKCS#8 file, both already here. The key is made once and kept in the
//! state directory (`service-account.key`, 0600), so tokens outlive a restart, as a cluster's
//! do. `kid` is the base64url SHA-256 of the public key, as Kubernetes derives it.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};

use crate::apiserver::pki::{self, PkiError};

/// The signing key's file in the state directory.
pub const KEY_FILE: &str = "service-account.key";

/// The claims of a ServiceAccount token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
    pub aud: Vec<String>,
    /// Seconds since the Unix epoch, as are `iat` and `nbf`.
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    /// A random id: what the API server's audit log names a credential by.
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

/// The `kubernetes.io` claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectClaim,
    /// The Pod the token is bound to: it dies with that Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectClaim>,
}

/// An object a token names: name and uid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectClaim {
    pub name: String,
    pub uid: String,
}

/// Why a token's signature or times do not hold. The messages are what a TokenReview's
/// `status.error` says.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("token is not signed by this API server's service-account key")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued by {0:?}, not by this API server")]
    Issuer(String),
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    kid: String,
}

/// Signs and verifies ServiceAccount tokens with one key.
pub struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    issuer: String,
    random: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The state directory's key, made on first use; tokens say `issuer` as `iss`.
    pub fn load_or_create(dir: &Path, issuer: &str) -> Result<Signer, PkiError> {
        let path = dir.join(KEY_FILE);
        let invalid = |message: String| PkiError::Invalid {
            path: path.clone(),
            message,
        };
        let pem = match std::fs::read_to_string(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let made = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
                let pem = made.serialize_pem();
                pki::write_private(&path, &pem)?;
                pem
            }
            Err(source) => {
                return Err(PkiError::Io {
                    path: path.clone(),
                    source,
                });
            }
        };
        let pair = rcgen::KeyPair::from_pem(&pem)
            .map_err(|e| invalid(format!("not a PKCS#8 private key: {e}")))?;
        if pair.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(invalid("not an ECDSA P-256 key (ES256)".to_owned()));
        }
        Signer::from_pkcs8(&pair.serialize_der(), issuer)
            .map_err(|e| invalid(format!("not an ECDSA P-256 key: {e}")))
    }

    /// A signer with this PKCS#8 (DER) P-256 key.
    pub fn from_pkcs8(der: &[u8], issuer: &str) -> Result<Signer, String> {
        let random = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &random)
                .map_err(|e| e.to_string())?;
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        Ok(Signer {
            kid: URL_SAFE_NO_PAD.encode(digest.as_ref()),
            key,
            issuer: issuer.to_owned(),
            random,
        })
    }

    /// The issuer its tokens name.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The compact serialization of a signed token.
    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        let header = Header {
            alg: "ES256".to_owned(),
            kid: self.kid.clone(),
        };
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(to_json(&header)),
            URL_SAFE_NO_PAD.encode(to_json(claims))
        );
        let signature = self
            .key
            .sign(&self.random, signed.as_bytes())
            .map_err(|e| format!("cannot sign: {e}"))?;
        Ok(format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// The claims of a token this key signed, issued by this issuer and valid at `now`
    /// (seconds since the Unix epoch). The signature is checked before anything else is read.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, JwtError> {
        let mut parts = token.trim().split('.');
        let (Some(header), Some(payload), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("not three base64url parts"));
        };
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| JwtError::Malformed("the signature is not base64url"))?;
        let signed_len = header.len() + 1 + payload.len();
        let signed = &token.trim().as_bytes()[..signed_len];
        signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        )
        .verify(signed, &sig)
        .map_err(|_| JwtError::Signature)?;
        let header: Header = decode_part(header)?;
        if header.alg != "ES256" || header.kid != self.kid {
            return Err(JwtError::Signature);
        }
        let claims: Claims = decode_part(payload)?;
        if claims.iss != self.issuer {
            return Err(JwtError::Issuer(claims.iss));
        }
        if now >= claims.exp {
            return Err(JwtError::Expired);
        }
        if now < claims.nbf {
            return Err(JwtError::NotYetValid);
        }
        Ok(claims)
    }
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed("a part is not base64url"))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| JwtError::Malformed("a part is not the JSON expected"))
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain strings and numbers: serializing cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}
