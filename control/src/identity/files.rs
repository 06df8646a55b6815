//! The mesh CA's files in `--state-dir`, made on first start and changed only by a rotation
//! (`ferry identity rotate`, [`super::rotate`]):
//!
//! - `ca.crt`: the trust bundle, every root currently trusted (two during a root rotation).
//!   Parts pass it as `--control-ca`; workloads are sent it with their certificates.
//! - `root.crt`, `root.key` (0600): the root new intermediates are signed by.
//! - `intermediate.crt`, `intermediate.key` (0600): the issuing CA of every workload's
//!   certificate and of the control channel's own.
//! - `next-intermediate.crt`, `next-intermediate.key` (0600): only during phase 1 of a root
//!   rotation, the intermediate under the new root, waiting until every workload trusts that
//!   root; the control plane then moves it over `intermediate.*` ([`promote_next_intermediate`]).
//! - `identity.workloads`: which Pod (by uid) holds a certificate from which generation
//!   ([`super::holders`]).
//! - `identity.generation`: a counter a rotation bumps after its last file is in place; a
//!   running control plane watches it and reloads the CA ([`super::Ca::watch`]).
//!
//! Every file is replaced by writing a sibling and renaming it over the old one, so a reader
//! sees the old file or the new one, never half of one. A state directory from before the
//! hierarchy (a self-signed `ca.crt` with `ca.key`) keeps its CA: that becomes the root.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::Duration;

use rcgen::KeyPair;

use super::authority::{CaError, ca_error, ca_params};

pub const BUNDLE: &str = "ca.crt";
pub const ROOT_CERT: &str = "root.crt";
pub const ROOT_KEY: &str = "root.key";
pub const INTERMEDIATE_CERT: &str = "intermediate.crt";
pub const INTERMEDIATE_KEY: &str = "intermediate.key";
pub const NEXT_INTERMEDIATE_CERT: &str = "next-intermediate.crt";
pub const NEXT_INTERMEDIATE_KEY: &str = "next-intermediate.key";
pub const GENERATION: &str = "identity.generation";
/// Written last by `rotate --root` (the generation that published the two-root bundle) and
/// removed last by the switch: while it exists a root rotation's switch is pending, and the
/// switch may happen only once the control plane has loaded that generation.
pub const SWITCH_AFTER: &str = "next-intermediate.after";
/// The CA key of a state directory from before the hierarchy.
const LEGACY_KEY: &str = "ca.key";

/// A generated root lives ten years; an intermediate one (rotate it well before).
pub const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
pub const INTERMEDIATE_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

fn what(path: &Path) -> String {
    format!("--state-dir: {}", path.display())
}

pub(super) fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|e| ca_error(&what(path), e))
}

/// Replaces `path` with `contents` in one step (write a sibling, rename); `private` files are
/// readable by their owner only.
/// Removes `path`; one already gone is no error.
pub(crate) fn remove(path: &Path) -> Result<(), CaError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ca_error(&what(path), e)),
    }
}

pub(crate) fn replace(path: &Path, contents: &str, private: bool) -> Result<(), CaError> {
    let tmp = path.with_extension(format!("new-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(|e| ca_error(&what(&tmp), e))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| ca_error(&what(&tmp), e))?;
    std::fs::rename(&tmp, path).map_err(|e| ca_error(&what(path), e))
}

/// A new CA key pair (ECDSA P-256, rcgen's default).
pub(super) fn new_key(path: &Path) -> Result<KeyPair, CaError> {
    KeyPair::generate().map_err(|e| ca_error(&what(path), e))
}

/// A new intermediate signed by the root in `dir`, written over the old one (key first: a
/// reader between the two renames sees a key that does not match, refuses the pair and tries
/// again at the next generation).
pub(super) fn new_intermediate(dir: &Path) -> Result<(), CaError> {
    new_intermediate_as(dir, INTERMEDIATE_CERT, INTERMEDIATE_KEY)
}

/// Whether a root rotation waits to switch issuing (phase 1).
pub fn next_intermediate_pending(dir: &Path) -> bool {
    dir.join(NEXT_INTERMEDIATE_CERT).exists() || dir.join(SWITCH_AFTER).exists()
}

/// The generation [`SWITCH_AFTER`] names: `None` while `rotate --root` has not finished
/// writing (or no switch is pending).
pub fn switch_after(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join(SWITCH_AFTER))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// The waiting intermediate becomes the issuing one (key first, as in [`new_intermediate`]).
pub(super) fn promote_next_intermediate(dir: &Path) -> Result<(), CaError> {
    for (from, to) in [
        (NEXT_INTERMEDIATE_KEY, INTERMEDIATE_KEY),
        (NEXT_INTERMEDIATE_CERT, INTERMEDIATE_CERT),
    ] {
        std::fs::rename(dir.join(from), dir.join(to))
            .map_err(|e| ca_error(&what(&dir.join(from)), e))?;
    }
    Ok(())
}

/// A new intermediate signed by the root in `dir`, as the files `cert_name` and `key_name`.
pub(super) fn new_intermediate_as(
    dir: &Path,
    cert_name: &str,
    key_name: &str,
) -> Result<(), CaError> {
    let (root_cert, root_key) = (dir.join(ROOT_CERT), dir.join(ROOT_KEY));
    let key = KeyPair::from_pem(&read(&root_key)?).map_err(|e| ca_error(&what(&root_key), e))?;
    let root = rcgen::Issuer::from_ca_cert_pem(&read(&root_cert)?, key)
        .map_err(|e| ca_error(&what(&root_cert), e))?;
    let path = dir.join(cert_name);
    let key = new_key(&path)?;
    let cert = ca_params("ferry mesh intermediate CA", INTERMEDIATE_LIFETIME)
        .signed_by(&key, &root)
        .map_err(|e| ca_error(&what(&path), e))?;
    replace(&dir.join(key_name), &key.serialize_pem(), true)?;
    replace(&path, &cert.pem(), false)
}

/// A new self-signed root: (certificate PEM, key PEM).
pub(super) fn new_root(dir: &Path) -> Result<(String, String), CaError> {
    let path = dir.join(ROOT_CERT);
    let key = new_key(&path)?;
    let cert = ca_params("ferry mesh root CA", ROOT_LIFETIME)
        .self_signed(&key)
        .map_err(|e| ca_error(&what(&path), e))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Makes what is missing of a generated CA: the directory, a root (or the legacy CA taken as
/// the root), an intermediate, the trust bundle.
pub fn create_missing(dir: &Path) -> Result<(), CaError> {
    std::fs::create_dir_all(dir).map_err(|e| ca_error(&what(dir), e))?;
    let (root_cert, root_key) = (dir.join(ROOT_CERT), dir.join(ROOT_KEY));
    let (bundle, legacy_key) = (dir.join(BUNDLE), dir.join(LEGACY_KEY));
    if !root_key.exists() {
        if root_cert.exists() {
            return Err(ca_error(&what(&root_key), "missing, while root.crt exists"));
        }
        if legacy_key.exists() && bundle.exists() {
            // The self-signed CA parts already trust becomes the root, so they keep trusting.
            replace(&root_cert, &read(&bundle)?, false)?;
            std::fs::rename(&legacy_key, &root_key).map_err(|e| ca_error(&what(&root_key), e))?;
        } else {
            let (cert, key) = new_root(dir)?;
            replace(&root_key, &key, true)?;
            replace(&root_cert, &cert, false)?;
            replace(&bundle, &cert, false)?;
        }
    }
    if !bundle.exists() {
        replace(&bundle, &read(&root_cert)?, false)?;
    }
    let (cert, key) = (dir.join(INTERMEDIATE_CERT), dir.join(INTERMEDIATE_KEY));
    match (cert.exists(), key.exists()) {
        (true, true) => {}
        (false, false) => new_intermediate(dir)?,
        (true, false) => {
            return Err(ca_error(
                &what(&key),
                "missing, while intermediate.crt exists",
            ));
        }
        (false, true) => {
            return Err(ca_error(
                &what(&cert),
                "missing, while intermediate.key exists",
            ));
        }
    }
    Ok(())
}

/// The generation counter (0 when there is none yet).
pub fn generation(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join(GENERATION))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Bumps the generation: the last step of a rotation, what a running control plane reloads on.
pub(super) fn bump_generation(dir: &Path) -> Result<u64, CaError> {
    let next = generation(dir) + 1;
    replace(&dir.join(GENERATION), &format!("{next}\n"), false)?;
    Ok(next)
}
