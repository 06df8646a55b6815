//! The control plane's CA and join token, kept in its state directory: `ca.crt` (what parts
//! trust, `--control-ca`), `ca.key` (mode 0600) and `join-token` (mode 0600, what parts present,
//! `--token-file`). Made on first start, read back on every later one, so parts configured
//! once keep working across restarts. The serving certificate is issued afresh at each start,
//! for the names and addresses parts may dial.
//!
//! The same CA will issue the mesh's workload certificates.

use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const JOIN_TOKEN: &str = "join-token";

/// A state-directory problem: which file, and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("--state-dir: {}: {message}", path.display())]
pub struct StateError {
    pub path: PathBuf,
    pub message: String,
}

fn fail(path: &Path, message: impl ToString) -> StateError {
    StateError {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// The CA and token of one state directory.
pub struct Authority {
    key: KeyPair,
    pub ca_pem: String,
    pub token: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// The CA's own parameters: the same at every start, so a CA key read back signs as the
/// `ca.crt` written at first start (same subject, same key identifier).
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "ferry control CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Writes a new file readable by its owner only; never overwrites one.
fn write_private(path: &Path, contents: &str) -> Result<(), StateError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| fail(path, e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| fail(path, e))
}

fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    ferry_runtime::tls::provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|e| format!("no secure randomness: {e:?}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Authority {
    /// Reads the CA and token from `dir`, making whatever is missing (and `dir` itself).
    pub fn load_or_create(dir: &Path) -> Result<Authority, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
        let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
        let (key, ca_pem) = match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let key_pem = std::fs::read_to_string(&key_path).map_err(|e| fail(&key_path, e))?;
                let key = KeyPair::from_pem(&key_pem).map_err(|e| fail(&key_path, e))?;
                let ca_pem =
                    std::fs::read_to_string(&cert_path).map_err(|e| fail(&cert_path, e))?;
                (key, ca_pem)
            }
            (false, false) => {
                let key = KeyPair::generate().map_err(|e| fail(&key_path, e))?;
                let cert = ca_params()
                    .self_signed(&key)
                    .map_err(|e| fail(&cert_path, e))?;
                write_private(&key_path, &key.serialize_pem())?;
                std::fs::write(&cert_path, cert.pem()).map_err(|e| fail(&cert_path, e))?;
                (key, cert.pem())
            }
            (true, false) => return Err(fail(&key_path, "missing, while ca.crt exists")),
            (false, true) => return Err(fail(&cert_path, "missing, while ca.key exists")),
        };
        let token_path = dir.join(JOIN_TOKEN);
        let token = if token_path.exists() {
            let token = std::fs::read_to_string(&token_path).map_err(|e| fail(&token_path, e))?;
            let token = token.trim().to_owned();
            if token.is_empty() {
                return Err(fail(&token_path, "empty"));
            }
            token
        } else {
            let token = new_token().map_err(|e| fail(&token_path, e))?;
            write_private(&token_path, &format!("{token}\n"))?;
            token
        };
        Ok(Authority { key, ca_pem, token })
    }

    /// A serving certificate (chain PEM, key PEM) for these DNS names and addresses.
    pub fn issue_server(
        &self,
        names: &[String],
        addresses: &[IpAddr],
    ) -> Result<(String, String), rcgen::Error> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params
            .subject_alt_names
            .extend(addresses.iter().map(|ip| SanType::IpAddress(*ip)));
        params
            .distinguished_name
            .push(DnType::CommonName, "ferry control");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let issuer = Issuer::new(ca_params(), &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_dir_is_made_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = Authority::load_or_create(dir.path()).unwrap();
        assert_eq!(first.token.len(), 64);
        let again = Authority::load_or_create(dir.path()).unwrap();
        assert_eq!(again.token, first.token);
        assert_eq!(again.ca_pem, first.ca_pem);
        for private in [CA_KEY, JOIN_TOKEN] {
            let mode = std::fs::metadata(dir.path().join(private))
                .unwrap()
                .permissions();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
                0o600,
                "{private}"
            );
        }
        // Another directory, another token.
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            Authority::load_or_create(other.path()).unwrap().token,
            first.token
        );
    }

    #[test]
    fn a_half_made_state_dir_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        Authority::load_or_create(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join(CA_KEY)).unwrap();
        let e = Authority::load_or_create(dir.path()).unwrap_err();
        assert!(e.to_string().contains("ca.key"), "{e}");
    }
}
