//! Which program the kubelet runs as a meshed Pod's sidecar.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The sidecar-only program, installed next to `ferry`.
pub const SIDECAR_PROGRAM: &str = "ferry-sidecar";

/// The program and its first arguments for a meshed Pod's sidecar: `ferry-sidecar` next to
/// `ferry` (it links the sidecar alone, so a Pod maps a fraction of `ferry`'s pages:
/// benches/mesh), or else `ferry sidecar` (same flags), the reason logged.
pub fn sidecar_command(ferry: &Path) -> (PathBuf, Vec<String>) {
    let fallback = |reason: String| {
        tracing::warn!(
            %reason,
            program = %ferry.display(),
            "meshed Pods run `ferry sidecar`, not {SIDECAR_PROGRAM}, which maps all of ferry"
        );
        (ferry.to_owned(), vec!["sidecar".to_owned()])
    };
    // A bare name is found on the PATH when the Pod starts; nothing to look next to.
    let Some(dir) = ferry.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return fallback(format!("{} has no directory", ferry.display()));
    };
    let alone = dir.join(SIDECAR_PROGRAM);
    match std::fs::metadata(&alone) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => (alone, Vec::new()),
        Ok(_) => fallback(format!("{} is not an executable file", alone.display())),
        Err(e) => fallback(format!("{}: {e}", alone.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &Path, mode: u32) {
        std::fs::write(path, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn ferry_sidecar_next_to_ferry_is_run_without_the_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let ferry = dir.path().join("ferry");
        file(&ferry, 0o755);
        file(&dir.path().join(SIDECAR_PROGRAM), 0o755);
        assert_eq!(
            sidecar_command(&ferry),
            (dir.path().join(SIDECAR_PROGRAM), Vec::new())
        );
    }

    #[test]
    fn without_an_executable_ferry_sidecar_ferry_runs_the_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let ferry = dir.path().join("ferry");
        file(&ferry, 0o755);
        let subcommand = (ferry.clone(), vec!["sidecar".to_owned()]);
        assert_eq!(sidecar_command(&ferry), subcommand, "absent");
        file(&dir.path().join(SIDECAR_PROGRAM), 0o644);
        assert_eq!(sidecar_command(&ferry), subcommand, "not executable");
        std::fs::remove_file(dir.path().join(SIDECAR_PROGRAM)).unwrap();
        std::fs::create_dir(dir.path().join(SIDECAR_PROGRAM)).unwrap();
        assert_eq!(sidecar_command(&ferry), subcommand, "a directory");
        let bare = PathBuf::from("ferry");
        assert_eq!(
            sidecar_command(&bare),
            (bare.clone(), vec!["sidecar".to_owned()]),
            "a bare name"
        );
    }
}
