//! `ferry identity rotate [--root [--finish]]` and `ferry check --identity`: the mesh CA of a
//! `ferry control` state directory, rotated in place and checked for expiry.
//!
//! A rotation changes the state directory's files and bumps `identity.generation`
//! ([`ferry_control::identity::rotate`]); a `ferry control` running on that directory reloads
//! the CA within a second (and logs `mesh CA reloaded`), a stopped one reads it at its next
//! start. No network and no admin endpoint are involved: whoever may write the state directory
//! may rotate, as whoever may read it holds the keys.

use std::path::Path;
use std::time::SystemTime;

use ferry_control::identity::rotate;

/// Which rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// A new intermediate under the same root.
    Intermediate,
    /// Phase 1: a new root trusted beside the old one, issuing from a new intermediate.
    Root,
    /// Phase 2: the old root leaves the trust bundle.
    FinishRoot,
}

/// Rotates and says what happened and what comes next.
pub fn rotate(dir: &Path, rotation: Rotation) -> Result<String, String> {
    let result = match rotation {
        Rotation::Intermediate => rotate::rotate_intermediate(dir),
        Rotation::Root => rotate::rotate_root(dir),
        Rotation::FinishRoot => rotate::finish_root_rotation(dir),
    };
    let generation = result.map_err(|e| e.to_string())?;
    let what = match rotation {
        Rotation::Intermediate => {
            "a new intermediate issues every certificate from now on; the running control plane tells every sidecar to renew at once, and certificates from the old one stay valid meanwhile"
        }
        Rotation::Root => {
            "the new root is trusted beside the old one; every sidecar renews at once to learn it, and the running control plane switches issuing to the new root as soon as every workload holds the two-root bundle (it logs `root rotation: every workload trusts the new root`); then run `ferry identity rotate --root --finish`, which refuses, naming the workloads, until every workload holds a certificate from the new root"
        }
        Rotation::FinishRoot => {
            "the old root is no longer trusted; every sidecar renews at once to drop it; parts started with --control-ca take the new ca.crt at their next start"
        }
    };
    Ok(format!(
        "{} (generation {generation}): {what}\n",
        dir.display()
    ))
}

/// `ferry check --identity`: each CA certificate and its expiry, a warning for those within
/// 30 days; `Err` only when the files cannot be read.
pub fn check(dir: &Path, now: SystemTime) -> Result<(String, usize), String> {
    let expiries = rotate::state_dir_expiries(dir).map_err(|e| e.to_string())?;
    let mut out = String::new();
    let mut warnings = 0;
    for e in &expiries {
        let left = e.not_after.duration_since(now).unwrap_or_default();
        let days = left.as_secs() / 86_400;
        let expired = e.not_after <= now;
        let line = format!(
            "{} {} ({}): {}",
            e.role,
            e.subject,
            e.file,
            if expired {
                "EXPIRED".to_owned()
            } else {
                format!("expires in {days} days")
            }
        );
        if e.soon(now) {
            warnings += 1;
            let fix = if e.role == "root" {
                "`ferry identity rotate --root`"
            } else {
                "`ferry identity rotate`"
            };
            out.push_str(&format!("warning: {line}; rotate it with {fix}\n"));
        } else {
            out.push_str(&format!("{line}\n"));
        }
    }
    Ok((out, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn check_warns_within_thirty_days_and_rotation_replaces_the_intermediate() {
        let dir = tempfile::tempdir().unwrap();
        ferry_control::identity::files::create_missing(dir.path()).unwrap();
        let (report, warnings) = check(dir.path(), SystemTime::now()).unwrap();
        assert_eq!(warnings, 0, "{report}");
        assert!(
            report.contains("root") && report.contains("intermediate"),
            "{report}"
        );
        // 340 days on, the one-year intermediate has under 30 days left; the root does not.
        let later = SystemTime::now() + Duration::from_secs(340 * 86_400);
        let (report, warnings) = check(dir.path(), later).unwrap();
        assert_eq!(warnings, 1, "{report}");
        assert!(report.contains("warning: intermediate"), "{report}");
        assert!(report.contains("`ferry identity rotate`"), "{report}");
        let intermediate = dir
            .path()
            .join(ferry_control::identity::files::INTERMEDIATE_CERT);
        let before = std::fs::read_to_string(&intermediate).unwrap();
        let said = rotate(dir.path(), Rotation::Intermediate).unwrap();
        assert!(said.contains("generation 1"), "{said}");
        assert_ne!(std::fs::read_to_string(&intermediate).unwrap(), before);
        let (report, warnings) = check(dir.path(), SystemTime::now()).unwrap();
        assert_eq!(warnings, 0, "{report}");
        assert_eq!(report.lines().count(), 2, "{report}");
        assert!(rotate(dir.path(), Rotation::FinishRoot).is_err());
    }

    #[test]
    fn a_missing_state_dir_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nothing");
        let e = check(&missing, SystemTime::now()).unwrap_err();
        assert!(e.contains("nothing"), "{e}");
        let e = rotate(&missing, Rotation::Intermediate).unwrap_err();
        assert!(e.contains("root.key"), "{e}");
    }
}
