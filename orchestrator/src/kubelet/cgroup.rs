//! A cgroup (v2) per container run, so a container's processes die together however they
//! detach: a child that calls `setsid` leaves the process group, never the cgroup. As the
//! kubelet does with its `kubepods` tree, ferry makes a subtree of its own,
//! `<cgroup2 mount>/ferry/<pid>-<n>/` (one per kubelet), and one cgroup in it for each run of
//! each container; stopping the container writes `1` to its `cgroup.kill` (Linux 5.14), and the
//! cgroup is removed once empty.
//!
//! A process must be in its cgroup before it can start children, which needs code between
//! `fork` and `exec`; ferry forbids `unsafe`, so the container starts under `/bin/sh`, which
//! moves itself into the cgroup (writing `0` to `cgroup.procs` moves the writer) and `exec`s
//! the container's program, resolved beforehand so a missing program is still a start error.
//!
//! Where this is not possible (no cgroup2 mount, not root, no `cgroup.kill`) [`Root::create`]
//! says why, and containers run as before: in their own process group only.
//!
//! It may touch: its own subtree of the cgroup2 hierarchy.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The shell that moves a container's process into its cgroup before `exec`.
const SHELL: &str = "/bin/sh";
/// Moves the shell into the cgroup named by `$0`, then becomes the container's program.
const ENTER: &str = "echo 0 > \"$0/cgroup.procs\" && exec \"$@\"";
/// How long a killed cgroup may take to empty before it is left behind (with a warning).
const EMPTY_WAIT: Duration = Duration::from_secs(5);

/// Numbers kubelets (tests run many in one process) and cgroups.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// One kubelet's subtree; removed when dropped (once its cgroups are gone).
#[derive(Debug)]
pub(crate) struct Root {
    path: PathBuf,
}

impl Root {
    /// Makes the kubelet's subtree under the cgroup2 hierarchy, or says why it cannot.
    pub(crate) fn create() -> Result<Root, String> {
        let mount = cgroup2_mount().ok_or("no cgroup2 file system is mounted")?;
        if !Path::new(SHELL).exists() {
            return Err(format!("{SHELL} is missing"));
        }
        let ferry = mount.join("ferry");
        clean_orphans(&ferry);
        let path = ferry.join(format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let root = Root { path };
        if !root.path.join("cgroup.kill").exists() {
            return Err(format!(
                "{} has no cgroup.kill (Linux 5.14 or later is needed)",
                root.path.display()
            ));
        }
        Ok(root)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A new, empty cgroup for one run of a container, named after it for whoever looks.
    pub(crate) fn cgroup(&self, pod: &str, container: &str) -> io::Result<Cgroup> {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        let name = format!(
            "{}_{}_{}",
            clean(pod),
            clean(container),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.path.join(name);
        std::fs::create_dir(&path)?;
        Ok(Cgroup { path })
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        // Empty by now unless a cgroup could not be emptied, which was reported then.
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// The cgroup of one container run.
#[derive(Debug)]
pub(crate) struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The argv that runs `argv` inside this cgroup: the shell enters it, then execs the
    /// program, found on `path` (the container's `PATH`) as `execvp` would. An error when the
    /// program cannot be found, as starting it directly would give.
    pub(crate) fn wrap(
        &self,
        argv: &[OsString],
        path: Option<&str>,
        cwd: Option<&Path>,
    ) -> io::Result<Vec<OsString>> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let program = resolve(Path::new(program), path, cwd)?;
        let mut wrapped: Vec<OsString> = vec![
            SHELL.into(),
            "-c".into(),
            ENTER.into(),
            self.path.clone().into_os_string(),
            program.into_os_string(),
        ];
        wrapped.extend(args.iter().cloned());
        Ok(wrapped)
    }

    /// Kills every process in the cgroup at once.
    pub(crate) fn kill(&self) {
        if let Err(e) = std::fs::write(self.path.join("cgroup.kill"), "1") {
            tracing::warn!(cgroup = %self.path.display(), error = %e, "cannot kill the container's cgroup");
        }
    }

    /// Kills what is left in the cgroup, waits for it to empty and removes it.
    pub(crate) async fn remove(self) {
        self.kill();
        let deadline = tokio::time::Instant::now() + EMPTY_WAIT;
        loop {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                // Busy while killed processes are still exiting.
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(cgroup = %self.path.display(), error = %e, "the container's cgroup did not empty; left behind");
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }
}

/// Kills and removes what a ferry that is gone (killed outright, or a test that panicked) left
/// in `ferry`: the subtrees `<pid>-<n>` whose process no longer runs, and the container
/// processes still in them, which would hold the addresses and ports the new Pods need. Best
/// effort: a cgroup still emptying is left for the next start.
fn clean_orphans(ferry: &Path) {
    let Ok(entries) = std::fs::read_dir(ferry) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let subtree = entry.path();
        let cgroups: Vec<PathBuf> = std::fs::read_dir(&subtree)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        for cgroup in &cgroups {
            let _ = std::fs::write(cgroup.join("cgroup.kill"), "1");
        }
        let left = cgroups
            .iter()
            .filter(|c| std::fs::remove_dir(c).is_err())
            .count();
        if left == 0 && std::fs::remove_dir(&subtree).is_ok() {
            tracing::info!(cgroup = %subtree.display(), "removed the cgroups of a ferry that is gone");
        }
    }
}

/// Where a cgroup2 file system is mounted: `/sys/fs/cgroup` on a unified host, else the
/// hybrid layout's v2 mount (`/sys/fs/cgroup/unified`).
fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut found: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|line| {
            // `id parent major:minor root mount-point options [optional...] - fstype source ...`
            let (left, right) = line.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
        })
        .collect();
    found.sort_by_key(|p| p != Path::new("/sys/fs/cgroup"));
    found.into_iter().next()
}

/// The program as `execvp` finds it: a name with a `/` as it is (relative to `cwd`, the
/// directory it will run in), else the first executable file of that name in `path`.
fn resolve(program: &Path, path: Option<&str>, cwd: Option<&Path>) -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.as_os_str().is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "empty program name",
        ));
    }
    if program.to_string_lossy().contains('/') {
        let at = cwd.map_or_else(|| program.to_owned(), |cwd| cwd.join(program));
        return if executable(&at) {
            Ok(program.to_owned())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                "No such file or directory (or not executable)",
            ))
        };
    }
    path.unwrap_or("/usr/local/bin:/usr/bin:/bin")
        .split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(program))
        .find(|p| executable(&cwd.map_or_else(|| p.clone(), |cwd| cwd.join(p))))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_as_execvp_finds_them() {
        assert_eq!(
            resolve(Path::new("sh"), Some("/nonexistent:/bin"), None).unwrap(),
            Path::new("/bin/sh")
        );
        assert_eq!(
            resolve(Path::new("/bin/sh"), None, None).unwrap(),
            Path::new("/bin/sh")
        );
        // Relative to the directory the container runs in, and passed on as written.
        assert_eq!(
            resolve(Path::new("./sh"), None, Some(Path::new("/bin"))).unwrap(),
            Path::new("./sh")
        );
        assert!(resolve(Path::new("./sh"), None, Some(Path::new("/etc"))).is_err());
        assert!(resolve(Path::new("no-such-program-here"), Some("/bin"), None).is_err());
        let plain = std::env::temp_dir().join(format!("ferry-plain-{}", std::process::id()));
        std::fs::write(&plain, "").unwrap();
        let found = resolve(&plain, None, None);
        let _ = std::fs::remove_file(&plain);
        assert!(found.is_err(), "not executable");
        assert!(resolve(Path::new(""), None, None).is_err());
    }

    /// What a ferry killed outright leaves is cleaned up by the next one. Needs root and
    /// cgroup v2.
    #[test]
    fn the_cgroups_of_a_ferry_that_is_gone_are_removed() {
        let Some(mount) = cgroup2_mount() else {
            eprintln!("skipped: no cgroup2 file system is mounted");
            return;
        };
        // Above the kernel's highest pid (2^22), so never a running process.
        let orphan = mount.join("ferry").join("4194305-0");
        if let Err(e) = std::fs::create_dir_all(orphan.join("shop_web_1")) {
            eprintln!("skipped: cannot make cgroups here ({e}); needs root");
            return;
        }
        let root = Root::create().unwrap();
        assert!(!orphan.exists(), "{} is left", orphan.display());
        assert!(root.path().exists());
    }

    #[test]
    fn the_wrapped_argv_enters_the_cgroup_then_runs_the_program() {
        let cgroup = Cgroup {
            path: PathBuf::from("/sys/fs/cgroup/ferry/1-0/shop_web_1"),
        };
        let argv = cgroup
            .wrap(
                &["sh".into(), "-c".into(), "echo hi".into()],
                Some("/bin"),
                None,
            )
            .unwrap();
        assert_eq!(
            argv,
            [
                SHELL,
                "-c",
                ENTER,
                "/sys/fs/cgroup/ferry/1-0/shop_web_1",
                "/bin/sh",
                "-c",
                "echo hi"
            ]
            .map(OsString::from)
        );
    }
}
