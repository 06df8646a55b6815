//! The API server's credentials, kept in the state directory so that a kubeconfig written
//! once keeps working across restarts: a CA (`apiserver-ca.crt`, `apiserver-ca.key`), the admin bearer token
//! (`admin.token`), and the serving certificate, signed by the CA at each start for the
//! addresses served.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::ByteString;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Why the credentials cannot be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("making a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The state directory's credentials.
#[derive(Debug)]
pub struct Credentials {
    pub ca_pem: String,
    ca_key: String,
    pub token: String,
}

/// The CA's parameters; the same on every start, so a serving certificate signed with the
/// kept key names the kept certificate as its issuer.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "ferry-ca");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Writes a file only its owner can read: aside (`<file>.tmp`), then renamed over it, so a
/// reader never sees half of it. Errors name the file.
pub fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        // A leftover `.tmp` (or one planted in a shared directory) is removed, and the new
        // one made afresh, so it has mode 0600 and is no link to somewhere else.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io(path))
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// 32 bytes from the OS's secure random source, as hex.
fn new_token() -> Result<String, PkiError> {
    let mut bytes = [0u8; 32];
    ferry_runtime::tls::provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| PkiError::Invalid {
            path: PathBuf::from("<random>"),
            message: "no secure random source".into(),
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The API server's CA in the state directory: apart from `ferry control`'s `ca.crt` and
/// `ca.key`, so one state directory can serve both.
pub const CA_CERT: &str = "apiserver-ca.crt";
pub const CA_KEY: &str = "apiserver-ca.key";
/// The admin's bearer token.
pub const TOKEN: &str = "admin.token";

impl Credentials {
    /// Reads the state directory's CA and token, making (and keeping) what is missing.
    pub fn load_or_create(dir: &Path) -> Result<Credentials, PkiError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let (cert_path, key_path, token_path) =
            (dir.join(CA_CERT), dir.join(CA_KEY), dir.join(TOKEN));
        let (ca_pem, ca_key) = match (read(&cert_path)?, read(&key_path)?) {
            (Some(cert), Some(key)) => {
                KeyPair::from_pem(&key).map_err(|e| PkiError::Invalid {
                    path: key_path.clone(),
                    message: format!("not a private key in PEM: {e}"),
                })?;
                let parsed = CertificateDer::from_pem_slice(cert.as_bytes());
                if let Err(e) = parsed {
                    return Err(PkiError::Invalid {
                        path: cert_path,
                        message: format!("not a certificate in PEM: {e}"),
                    });
                }
                (cert, key)
            }
            // Half a pair: making a new CA over it would break every kubeconfig that trusts
            // the old one.
            (Some(_), None) => {
                return Err(PkiError::Invalid {
                    path: key_path,
                    message: format!("missing, while {} exists", cert_path.display()),
                });
            }
            (None, Some(_)) => {
                return Err(PkiError::Invalid {
                    path: cert_path,
                    message: format!("missing, while {} exists", key_path.display()),
                });
            }
            (None, None) => {
                let key = KeyPair::generate()?;
                let cert = ca_params().self_signed(&key)?;
                let (cert, key) = (cert.pem(), key.serialize_pem());
                write_private(&key_path, &key)?;
                write_private(&cert_path, &cert)?;
                (cert, key)
            }
        };
        let token = match read(&token_path)? {
            Some(t) if !t.trim().is_empty() => t.trim().to_owned(),
            Some(_) => {
                return Err(PkiError::Invalid {
                    path: token_path,
                    message: "empty token".into(),
                });
            }
            None => {
                let t = new_token()?;
                write_private(&token_path, &t)?;
                t
            }
        };
        Ok(Credentials {
            ca_pem,
            ca_key,
            token,
        })
    }

    /// A serving certificate for `localhost`, the loopback addresses and `ip`, signed by the
    /// CA: its chain (leaf, CA) and key, in PEM.
    pub fn serving(&self, ip: IpAddr) -> Result<(String, String), PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca_key)?;
        let issuer = Issuer::new(ca_params(), ca_key);
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        if !ip.is_unspecified() && !ip.is_loopback() {
            names.push(ip.to_string());
        }
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "ferry-apiserver");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok((
            format!("{}{}", cert.pem(), self.ca_pem),
            key.serialize_pem(),
        ))
    }

    /// The admin kubeconfig for a server at `server` (`https://…`).
    pub fn kubeconfig(&self, server: &str) -> String {
        let ca_data = serde_json::to_value(ByteString(self.ca_pem.clone().into_bytes()))
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        format!(
            "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca_data}
    server: {server}
  name: ferry
contexts:
- context:
    cluster: ferry
    namespace: default
    user: ferry-admin
  name: ferry
current-context: ferry
preferences: {{}}
users:
- name: ferry-admin
  user:
    token: {token}
",
            token = self.token
        )
    }
}
