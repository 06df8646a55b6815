//! The mesh CA: a trust bundle (the roots), an issuing intermediate and its key, checked as a
//! whole before anything is issued from them; and the certificates issued from them (workload
//! leaves and the control channel's own serving certificate).
//!
//! Where they come from is a [`CaSource`]: made by ferry in `--state-dir` on first start
//! (`root.crt`/`root.key`, `intermediate.crt`/`intermediate.key`, keys 0600; [`files`]), or the
//! user's own PEM files (`--identity-root`, `--identity-intermediate`,
//! `--identity-intermediate-key`). Either way `ca.crt` in the state directory is the trust
//! bundle: what parts pass as `--control-ca`, and the roots a workload trusts peers by.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ferry_model::mesh::WorkloadId;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::files;

/// A CA problem: which file, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct CaError {
    /// The flag and file (`--identity-root /etc/ca.pem`, `--state-dir: /var/ferry/root.crt`).
    pub what: String,
    pub message: String,
}

pub(super) fn ca_error(what: &str, message: impl ToString) -> CaError {
    CaError {
        what: what.to_owned(),
        message: message.to_string(),
    }
}

/// Where the CA's files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaSource {
    /// Made and kept by ferry in this state directory.
    Generated(PathBuf),
    /// The user's own: the roots (one file, any number of certificates), the intermediate
    /// (first certificate; any others are the chain up to a root) and its key.
    Files {
        root: PathBuf,
        intermediate: PathBuf,
        intermediate_key: PathBuf,
    },
}

/// What the CA was made of, checked: the chain verifies, the key matches, every CA
/// certificate says CA:TRUE and is within its validity.
pub struct Hierarchy {
    /// The trust bundle, PEM (every root).
    pub bundle_pem: String,
    pub roots: Vec<CertificateDer<'static>>,
    /// The issuing intermediate first, then any further intermediates up to a root.
    pub chain: Vec<CertificateDer<'static>>,
    pub chain_pem: String,
    issuer: Issuer<'static, KeyPair>,
    /// The intermediate's notAfter: nothing issued outlives it.
    pub intermediate_expires: SystemTime,
}

impl std::fmt::Debug for Hierarchy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hierarchy")
            .field("roots", &self.roots.len())
            .field("chain", &self.chain.len())
            .field("intermediate_expires", &self.intermediate_expires)
            .finish_non_exhaustive()
    }
}

/// A certificate issued to a workload.
#[derive(Clone, Debug)]
pub struct Issued {
    /// PEM: the leaf, then the intermediates.
    pub chain_pem: String,
    pub not_after: SystemTime,
}

/// The CA parameters of a generated root or intermediate.
pub(super) fn ca_params(common_name: &str, lifetime: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "ferry");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    let now = SystemTime::now();
    // A minute back, so a peer whose clock is slightly behind accepts it at once.
    params.not_before = (now - Duration::from_secs(60)).into();
    params.not_after = (now + lifetime).into();
    params.serial_number = Some(random_serial());
    params
}

/// 16 random bytes, the top bit clear (a positive INTEGER), as RFC 5280 asks of CAs.
pub(super) fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // ring's system randomness cannot fail on Linux; were it to, the hash-derived serial
    // rcgen would use is no worse than zeros plus a unique key.
    let _ = ferry_runtime::tls::provider()
        .secure_random
        .fill(&mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

/// Every CERTIFICATE block of a PEM file, at least one.
pub(super) fn certificates(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ca_error(what, format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(ca_error(what, "holds no CERTIFICATE"));
    }
    Ok(certs)
}

pub(super) fn parse<'a>(what: &str, der: &'a [u8]) -> Result<X509Certificate<'a>, CaError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| ca_error(what, format!("not an X.509 certificate: {e}")))
}

/// A Unix timestamp (x509's) as a SystemTime.
pub(super) fn system_time(seconds: i64) -> SystemTime {
    if seconds >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
    }
}

/// CA:TRUE and within its validity now.
fn check_ca(what: &str, cert: &X509Certificate<'_>) -> Result<(), CaError> {
    if !cert.is_ca() {
        return Err(ca_error(
            what,
            format!(
                "{} is not a CA (no basicConstraints CA:TRUE)",
                cert.subject()
            ),
        ));
    }
    if !cert.validity().is_valid() {
        return Err(ca_error(
            what,
            format!(
                "{} is not valid now (notBefore {}, notAfter {})",
                cert.subject(),
                cert.validity().not_before,
                cert.validity().not_after
            ),
        ));
    }
    Ok(())
}

impl Hierarchy {
    /// Reads and checks the CA from its source; a generated one is made first if missing.
    pub fn load(source: &CaSource) -> Result<Hierarchy, CaError> {
        match source {
            CaSource::Generated(dir) => {
                files::create_missing(dir)?;
                let what = |name: &str| format!("--state-dir: {}", dir.join(name).display());
                Hierarchy::from_pem(
                    (
                        &what(files::BUNDLE),
                        &files::read(&dir.join(files::BUNDLE))?,
                    ),
                    (
                        &what(files::INTERMEDIATE_CERT),
                        &files::read(&dir.join(files::INTERMEDIATE_CERT))?,
                    ),
                    (
                        &what(files::INTERMEDIATE_KEY),
                        &files::read(&dir.join(files::INTERMEDIATE_KEY))?,
                    ),
                )
            }
            CaSource::Files {
                root,
                intermediate,
                intermediate_key,
            } => {
                let what = |flag: &str, path: &Path| format!("{flag} {}", path.display());
                let read = |flag: &str, path: &Path| {
                    std::fs::read_to_string(path).map_err(|e| ca_error(&what(flag, path), e))
                };
                Hierarchy::from_pem(
                    (
                        &what("--identity-root", root),
                        &read("--identity-root", root)?,
                    ),
                    (
                        &what("--identity-intermediate", intermediate),
                        &read("--identity-intermediate", intermediate)?,
                    ),
                    (
                        &what("--identity-intermediate-key", intermediate_key),
                        &read("--identity-intermediate-key", intermediate_key)?,
                    ),
                )
            }
        }
    }

    /// Checks a bundle, an intermediate (with its chain) and its key, each `(name, PEM)`.
    pub fn from_pem(
        bundle: (&str, &str),
        intermediate: (&str, &str),
        key: (&str, &str),
    ) -> Result<Hierarchy, CaError> {
        let roots = certificates(bundle.0, bundle.1)?;
        let parsed_roots = roots
            .iter()
            .map(|der| parse(bundle.0, der))
            .collect::<Result<Vec<_>, _>>()?;
        for root in &parsed_roots {
            check_ca(bundle.0, root)?;
        }
        let chain = certificates(intermediate.0, intermediate.1)?;
        let parsed_chain = chain
            .iter()
            .map(|der| parse(intermediate.0, der))
            .collect::<Result<Vec<_>, _>>()?;
        for cert in &parsed_chain {
            check_ca(intermediate.0, cert)?;
        }
        // Each certificate of the chain is signed by the next; the last by a root.
        for pair in parsed_chain.windows(2) {
            pair[0]
                .verify_signature(Some(pair[1].public_key()))
                .map_err(|e| {
                    ca_error(
                        intermediate.0,
                        format!(
                            "{} is not signed by {}: {e}",
                            pair[0].subject(),
                            pair[1].subject()
                        ),
                    )
                })?;
        }
        let last = parsed_chain
            .last()
            .ok_or_else(|| ca_error(intermediate.0, "empty"))?;
        if !parsed_roots
            .iter()
            .any(|root| last.verify_signature(Some(root.public_key())).is_ok())
        {
            return Err(ca_error(
                intermediate.0,
                format!(
                    "{} is not signed by any root of {}",
                    last.subject(),
                    bundle.0
                ),
            ));
        }
        let signing_key = KeyPair::from_pem(key.1)
            .map_err(|e| ca_error(key.0, format!("not a private key rcgen can sign with: {e}")))?;
        let issuing = &parsed_chain[0];
        if rcgen::PublicKeyData::subject_public_key_info(&signing_key) != issuing.public_key().raw {
            return Err(ca_error(
                key.0,
                format!(
                    "the key does not belong to {} ({})",
                    issuing.subject(),
                    intermediate.0
                ),
            ));
        }
        let intermediate_expires = system_time(issuing.validity().not_after.timestamp());
        let issuer = Issuer::from_ca_cert_der(&chain[0], signing_key)
            .map_err(|e| ca_error(intermediate.0, e))?;
        let chain_pem = chain.iter().map(pem_of).collect::<String>();
        Ok(Hierarchy {
            bundle_pem: roots.iter().map(pem_of).collect(),
            roots,
            chain,
            chain_pem,
            issuer,
            intermediate_expires,
        })
    }

    /// A workload's certificate for this public key (a CSR's SubjectPublicKeyInfo): the
    /// identity as its only name (a URI SAN; the subject is empty, so the SAN is critical),
    /// client and server authentication, not a CA; it expires after `ttl` or with the
    /// intermediate, whichever is first.
    pub fn issue_workload(
        &self,
        public_key: &rcgen::SubjectPublicKeyInfo,
        id: &WorkloadId,
        ttl: Duration,
    ) -> Result<Issued, rcgen::Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(id.to_string().try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = SystemTime::now();
        let not_after = (now + ttl).min(self.intermediate_expires);
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = not_after.into();
        params.serial_number = Some(random_serial());
        let leaf = params.signed_by(public_key, &self.issuer)?;
        Ok(Issued {
            chain_pem: format!("{}{}", leaf.pem(), self.chain_pem),
            // Whole seconds, as the certificate holds them.
            not_after: system_time(
                not_after
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            ),
        })
    }

    /// The control channel's serving certificate (chain PEM, key PEM) for these names and
    /// addresses, from the same intermediate as the workloads'.
    pub fn issue_server(
        &self,
        names: &[String],
        addresses: &[std::net::IpAddr],
    ) -> Result<(String, String), rcgen::Error> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params
            .subject_alt_names
            .extend(addresses.iter().map(|ip| SanType::IpAddress(*ip)));
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "ferry control");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = (now + SERVER_LIFETIME)
            .min(self.intermediate_expires)
            .into();
        params.serial_number = Some(random_serial());
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((
            format!("{}{}", cert.pem(), self.chain_pem),
            key.serialize_pem(),
        ))
    }
}

/// The control channel's certificate is issued at every start and every CA reload, so a year
/// is only a ceiling.
const SERVER_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

pub(super) fn pem_of(der: &CertificateDer<'_>) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}
