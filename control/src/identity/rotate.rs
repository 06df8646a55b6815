//! Rotating a generated mesh CA in its state directory (`ferry identity rotate`), and reading
//! how long its certificates have left (`ferry check --identity`).
//!
//! The state directory is the truth: a rotation changes its files ([`super::files`]) and
//! bumps `identity.generation` last; a running control plane notices within a second, checks
//! the new CA whole and issues from it (a CA that fails the check is logged and the old one
//! keeps issuing). A restarted control plane reads the same files.
//!
//! - The intermediate: a new one under the same root, issuing at once. Leaves issued from the
//!   old one stay valid (they chain to the same root, and each sidecar sends its intermediate
//!   with its leaf); sidecars renew from the new one within seconds all the same.
//! - The root, in three steps, as no peer may ever distrust a chain another peer presents:
//!   1. [`rotate_root`]: the new root joins the trust bundle (old and new trusted together); the
//!      new intermediate under it waits as `next-intermediate.*`, and the old one keeps issuing.
//!      Every sidecar renews within seconds (the control plane announces each generation:
//!      `Identity.WatchAuthority`), so it learns the two-root bundle.
//!   2. [`switch_issuing_if_settled`], done by the running control plane: once no live
//!      certificate was issued before step 1 ([`super::holders`]), every workload trusts the
//!      new root, and the new intermediate starts issuing. Sidecars renew from it at once.
//!   3. [`finish_root_rotation`] (`--finish`, by the operator): refused until issuing has
//!      switched and no live certificate was issued before the switch; then the old root leaves
//!      the bundle, and sidecars renew again to drop it.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::authority::{CaError, ca_error, certificates, parse, pem_of, system_time};
use super::files::{self, BUNDLE, INTERMEDIATE_CERT, ROOT_CERT, ROOT_KEY};
use super::holders::{self, Holders};

/// Below this much life left, `ferry check --identity` warns.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

fn what(path: &Path) -> String {
    format!("--state-dir: {}", path.display())
}

fn refuse_while_switch_pending(dir: &Path, doing: &str) -> Result<(), CaError> {
    if files::next_intermediate_pending(dir) {
        let waiting = Holders::read(dir)?;
        let behind = waiting.behind(files::generation(dir), SystemTime::now());
        return Err(ca_error(
            &what(&dir.join(files::NEXT_INTERMEDIATE_CERT)),
            format!(
                "a root rotation waits to switch issuing to the new root; {doing} once it has. The running control plane switches as soon as every workload holds the two-root trust bundle; still waiting for {}",
                holders::describe(&behind)
            ),
        ));
    }
    Ok(())
}

/// A new intermediate under the same root; returns the new generation.
pub fn rotate_intermediate(dir: &Path) -> Result<u64, CaError> {
    require_generated(dir)?;
    refuse_while_switch_pending(dir, "rotate the intermediate")?;
    files::new_intermediate(dir)?;
    files::bump_generation(dir)
}

/// Step 1 of a root rotation: a new root, trusted beside the old, and a new intermediate under
/// it waiting to issue; returns the new generation.
pub fn rotate_root(dir: &Path) -> Result<u64, CaError> {
    require_generated(dir)?;
    refuse_while_switch_pending(
        dir,
        "finish it with `ferry identity rotate --root --finish`",
    )?;
    let bundle_path = dir.join(BUNDLE);
    let bundle = certificates(&what(&bundle_path), &files::read(&bundle_path)?)?;
    if bundle.len() > 1 {
        return Err(ca_error(
            &what(&bundle_path),
            format!(
                "holds {} roots: a root rotation is under way; finish it with `ferry identity rotate --root --finish`",
                bundle.len()
            ),
        ));
    }
    let (cert, key) = files::new_root(dir)?;
    // Trust first, then sign: a reader at any step trusts every chain being issued.
    let mut trusted = cert.clone();
    trusted.extend(bundle.iter().map(pem_of));
    files::replace(&bundle_path, &trusted, false)?;
    files::replace(&dir.join(ROOT_KEY), &key, true)?;
    files::replace(&dir.join(ROOT_CERT), &cert, false)?;
    files::new_intermediate_as(
        dir,
        files::NEXT_INTERMEDIATE_CERT,
        files::NEXT_INTERMEDIATE_KEY,
    )?;
    let generation = files::bump_generation(dir)?;
    // Last: until this exists the control plane does not switch (it could otherwise switch
    // between the files above and the bump, before any sidecar was told of the new root).
    files::replace(
        &dir.join(files::SWITCH_AFTER),
        &format!("{generation}\n"),
        false,
    )?;
    Ok(generation)
}

/// Step 2 of a root rotation, by the control plane that issued at `generation` (the one it has
/// loaded) and recorded `holders`: when a new intermediate waits and no live certificate was
/// issued before `generation`, it becomes the issuing one. Returns the new generation when it
/// switched.
pub fn switch_issuing_if_settled(
    dir: &Path,
    generation: u64,
    holders: &Holders,
    now: SystemTime,
) -> Result<Option<u64>, CaError> {
    let Some(after) = files::switch_after(dir) else {
        return Ok(None);
    };
    if !dir.join(files::NEXT_INTERMEDIATE_CERT).exists() {
        // A switch stopped between its steps (the process ended): finish it.
        if files::generation(dir) > after {
            files::remove(&dir.join(files::SWITCH_AFTER))?;
        }
        return Ok(None);
    }
    if generation < after
        || files::generation(dir) != generation
        || !holders.behind(generation, now).is_empty()
    {
        return Ok(None);
    }
    files::promote_next_intermediate(dir)?;
    let switched = files::bump_generation(dir)?;
    // Last, so `--finish` stays refused until the new generation is written.
    files::remove(&dir.join(files::SWITCH_AFTER))?;
    Ok(Some(switched))
}

/// Step 3 of a root rotation: only the current root stays trusted; returns the new
/// generation. Refused while a live certificate (as the control plane recorded them) may
/// chain to the old root.
pub fn finish_root_rotation(dir: &Path) -> Result<u64, CaError> {
    require_generated(dir)?;
    let bundle_path = dir.join(BUNDLE);
    let bundle = certificates(&what(&bundle_path), &files::read(&bundle_path)?)?;
    if bundle.len() < 2 {
        return Err(ca_error(
            &what(&bundle_path),
            "holds one root: no root rotation to finish (start one with `ferry identity rotate --root`)",
        ));
    }
    refuse_while_switch_pending(dir, "finish it")?;
    let generation = files::generation(dir);
    let recorded = Holders::read(dir)?;
    let behind = recorded.behind(generation, SystemTime::now());
    if !behind.is_empty() {
        return Err(ca_error(
            &what(&dir.join(holders::FILE)),
            format!(
                "not yet: {} hold a certificate issued before generation {generation}, which may chain to the old root; the control plane has told their sidecars to renew (retry in a few seconds; a sidecar that cannot reach it keeps its certificate until that expires)",
                holders::describe(&behind)
            ),
        ));
    }
    files::replace(&bundle_path, &files::read(&dir.join(ROOT_CERT))?, false)?;
    files::bump_generation(dir)
}

fn require_generated(dir: &Path) -> Result<(), CaError> {
    let key = dir.join(ROOT_KEY);
    if key.exists() {
        Ok(())
    } else {
        Err(ca_error(
            &what(&key),
            "missing: only a CA ferry generated can be rotated by ferry (with --identity-root and --identity-intermediate, give new files and restart)",
        ))
    }
}

/// One CA certificate and when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// `root` or `intermediate`.
    pub role: &'static str,
    pub subject: String,
    pub file: String,
    pub not_after: SystemTime,
}

impl Expiry {
    /// Whether it expires within [`EXPIRY_WARNING`] of `now` (or has expired).
    pub fn soon(&self, now: SystemTime) -> bool {
        self.not_after <= now + EXPIRY_WARNING
    }
}

/// The roots of the bundle and the intermediate(s), with their expiry.
pub fn expiries(bundle: &Path, intermediate: &Path) -> Result<Vec<Expiry>, CaError> {
    let mut out = Vec::new();
    for (role, path) in [("root", bundle), ("intermediate", intermediate)] {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ca_error(&name, e))?;
        for der in certificates(&name, &text)? {
            let cert = parse(&name, &der)?;
            out.push(Expiry {
                role,
                subject: cert.subject().to_string(),
                file: name.clone(),
                not_after: system_time(cert.validity().not_after.timestamp()),
            });
        }
    }
    Ok(out)
}

/// [`expiries`] of a generated CA's state directory.
pub fn state_dir_expiries(dir: &Path) -> Result<Vec<Expiry>, CaError> {
    expiries(&dir.join(BUNDLE), &dir.join(INTERMEDIATE_CERT))
}
