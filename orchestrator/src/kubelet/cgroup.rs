//! A cgroup (v2) per container run, so a container's processes die together however they
//! detach: a child that calls `setsid` leaves the process group, never the cgroup. As the
//! kubelet does with its `kubepods` tree, ferry makes a subtree of its own,
//! `<cgroup2 mount>/ferry/<pid>-<starttime>-<n>/` (one per kubelet), and one cgroup in it for each run of
//! each container; stopping the container writes `1` to its `cgroup.kill` (Linux 5.14), and the
//! cgroup is removed once empty.
//!
//! A process must be in its cgroup before it can start children, which needs code between
//! `fork` and `exec`; ferry forbids `unsafe`, so the container starts under `/bin/sh`, which
//! moves itself into the cgroup (writing `0` to `cgroup.procs` moves the writer) and `exec`s
//! the container's program, resolved beforehand so a missing program is still a start error.
//! The same shell gives the container back the soft descriptor limit ferry was started with
//! ([`wrap`]), with or without a cgroup.
//!
//! Each kubelet's subtree is named `<pid>-<starttime>-<n>`: its process's pid, that process's
//! start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot) and a number per
//! kubelet. A subtree is an orphan when no process with that pid *and* start time runs: a pid
//! reused by an unrelated process does not keep it alive.
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
/// Moves the shell into the cgroup named by `$0`.
const ENTER: &str = "echo 0 > \"$0/cgroup.procs\"";
/// Becomes the container's program.
const EXEC: &str = "exec \"$@\"";
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
        let pid = std::process::id();
        let started = start_time(pid).ok_or_else(|| {
            format!("cannot read this process's start time from /proc/{pid}/stat")
        })?;
        let path = ferry.join(format!(
            "{pid}-{started}-{}",
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

/// The argv that runs `argv` through the shell, which first enters `cgroup` (when there is
/// one) and sets its soft descriptor limit to `nofile` (when given: the limit ferry was started
/// with, before it raised its own), then execs the program, found on `path` (the container's
/// `PATH`) as `execvp` would, behind `enter` (`ip netns exec NAME`, which enters the Pod's
/// network namespace and execs the program: after the cgroup, since it remounts `/sys`). The
/// argv itself when there is nothing to do first. An error when the program cannot be found,
/// as starting it directly would give.
pub(crate) fn wrap(
    argv: &[OsString],
    path: Option<&str>,
    cwd: Option<&Path>,
    cgroup: Option<&Cgroup>,
    nofile: Option<u64>,
    enter: &[OsString],
) -> io::Result<Vec<OsString>> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    if cgroup.is_none() && nofile.is_none() && enter.is_empty() {
        return Ok(argv.to_vec());
    }
    let program = resolve(Path::new(program), path, cwd)?;
    if cgroup.is_none() && nofile.is_none() {
        let mut entered = enter.to_vec();
        entered.push(program.into_os_string());
        entered.extend(args.iter().cloned());
        return Ok(entered);
    }
    let mut steps: Vec<String> = Vec::with_capacity(3);
    if cgroup.is_some() {
        steps.push(ENTER.to_owned());
    }
    if let Some(n) = nofile {
        steps.push(format!("ulimit -S -n {n}"));
    }
    steps.push(EXEC.to_owned());
    let mut wrapped: Vec<OsString> = vec![
        SHELL.into(),
        "-c".into(),
        steps.join(" && ").into(),
        cgroup.map_or_else(|| SHELL.into(), |c| c.path.clone().into_os_string()),
    ];
    wrapped.extend(enter.iter().cloned());
    wrapped.push(program.into_os_string());
    wrapped.extend(args.iter().cloned());
    Ok(wrapped)
}

/// When process `pid` started (field 22 of `/proc/<pid>/stat`, clock ticks after boot), if it
/// runs (a zombie has ended: its children are orphans).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses, so fields are counted
    // from the last `)`: the state is field 3, the start time field 22.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&("Z" | "X" | "x"))) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether the ferry that made the subtree `name` has gone: no process with its pid and start
/// time (`<pid>-<starttime>-<n>`) runs, so a pid reused since does not keep it. Names of
/// ferries before the start time was part of them (`<pid>-<n>`) count as gone when no process
/// has that pid. `None` for a name that is not a subtree's.
fn is_orphan(name: &str) -> Option<bool> {
    let parts: Vec<u64> = name
        .split('-')
        .map(|p| p.parse::<u64>().ok())
        .collect::<Option<_>>()?;
    match parts[..] {
        [pid, started, _] => {
            let pid = u32::try_from(pid).ok()?;
            Some(start_time(pid) != Some(started))
        }
        [pid, _] => Some(!Path::new(&format!("/proc/{pid}")).exists()),
        _ => None,
    }
}

/// Kills and removes what a ferry that is gone (killed outright, or a test that panicked) left
/// in `ferry`: the subtrees whose process no longer runs ([`is_orphan`]), and the container
/// processes still in them, which would hold the addresses and ports the new Pods need. Best
/// effort: a cgroup still emptying is left for the next start.
fn clean_orphans(ferry: &Path) {
    let Ok(entries) = std::fs::read_dir(ferry) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_str().and_then(is_orphan) != Some(true) {
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
            // Written, never created: cgroupfs has the file.
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .open(cgroup.join("cgroup.kill"))
                .and_then(|mut f| std::io::Write::write_all(&mut f, b"1"));
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
    use rustix::process::{Resource, Rlimit};

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
        // Above the kernel's highest pid (2^22), so never a running process; and this very
        // process's pid with another start time, as when a pid has been reused.
        let pid = std::process::id();
        let started = start_time(pid).unwrap();
        let ferry = mount.join("ferry");
        let orphans = [
            ferry.join("4194305-1-0"),
            ferry.join(format!("{pid}-{}-0", started + 1)),
            ferry.join("4194305-0"),
        ];
        for orphan in &orphans {
            if let Err(e) = std::fs::create_dir_all(orphan.join("shop_web_1")) {
                eprintln!("skipped: cannot make cgroups here ({e}); needs root");
                return;
            }
        }
        let root = Root::create().unwrap();
        for orphan in &orphans {
            assert!(!orphan.exists(), "{} is left", orphan.display());
        }
        assert!(root.path().exists());
        let name = root
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            name.starts_with(&format!("{pid}-{started}-")),
            "{name}: named by pid and start time"
        );
        // A second kubelet of this same process keeps the first's subtree.
        let second = Root::create().unwrap();
        assert!(root.path().exists() && second.path().exists());
    }

    /// The orphan rule on a plain directory standing in for the cgroup tree: a subtree is kept
    /// only while a process with its pid and its start time runs.
    #[test]
    fn a_subtree_is_an_orphan_unless_its_pid_runs_with_its_start_time() {
        let pid = std::process::id();
        let started = start_time(pid).expect("this process's start time");
        let ferry = tempfile::tempdir().unwrap();
        let ours = format!("{pid}-{started}-7");
        let reused = format!("{pid}-{}-7", started + 1);
        let gone = "4194305-1-0";
        let legacy_live = format!("{pid}-3");
        let legacy_gone = "4194305-3";
        for name in [
            &ours,
            &reused,
            gone,
            &legacy_live,
            legacy_gone,
            "not-a-ferry",
        ] {
            std::fs::create_dir_all(ferry.path().join(name).join("shop_web_1")).unwrap();
        }
        assert_eq!(is_orphan(&ours), Some(false));
        assert_eq!(is_orphan(&reused), Some(true), "a reused pid");
        assert_eq!(is_orphan(gone), Some(true));
        assert_eq!(is_orphan("not-a-ferry"), None);
        assert_eq!(is_orphan("1-2-3-4"), None);

        clean_orphans(ferry.path());
        let mut left: Vec<String> = std::fs::read_dir(ferry.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected = vec![ours, legacy_live, "not-a-ferry".to_owned()];
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn a_process_start_time_is_field_22_of_its_stat() {
        let pid = std::process::id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after_comm = stat.rsplit_once(')').unwrap().1;
        assert_eq!(
            start_time(pid).unwrap().to_string(),
            after_comm.split_whitespace().nth(19).unwrap()
        );
        assert_eq!(start_time(4_194_305), None);
    }

    #[test]
    fn the_wrapped_argv_enters_the_cgroup_then_runs_the_program() {
        let cgroup = Cgroup {
            path: PathBuf::from("/sys/fs/cgroup/ferry/1-0/shop_web_1"),
        };
        let command: [OsString; 3] = ["sh".into(), "-c".into(), "echo hi".into()];
        let argv = wrap(&command, Some("/bin"), None, Some(&cgroup), None, &[]).unwrap();
        assert_eq!(
            argv,
            [
                SHELL,
                "-c",
                "echo 0 > \"$0/cgroup.procs\" && exec \"$@\"",
                "/sys/fs/cgroup/ferry/1-0/shop_web_1",
                "/bin/sh",
                "-c",
                "echo hi"
            ]
            .map(OsString::from)
        );
        let argv = wrap(&command, Some("/bin"), None, Some(&cgroup), Some(1024), &[]).unwrap();
        assert_eq!(
            argv[2],
            "echo 0 > \"$0/cgroup.procs\" && ulimit -S -n 1024 && exec \"$@\""
        );
        // Nothing to do first: the program is started as it is.
        assert_eq!(
            wrap(&command, Some("/bin"), None, None, None, &[]).unwrap(),
            command
        );
        // A Pod's network namespace is entered after the cgroup (`ip netns exec` remounts
        // /sys, where the cgroup is), and the program goes behind it, resolved.
        let enter: Vec<OsString> = ["/usr/sbin/ip", "netns", "exec", "ferry-1-10.0.0.2"]
            .map(OsString::from)
            .to_vec();
        let argv = wrap(&command, Some("/bin"), None, Some(&cgroup), None, &enter).unwrap();
        assert_eq!(
            argv,
            [
                SHELL,
                "-c",
                "echo 0 > \"$0/cgroup.procs\" && exec \"$@\"",
                "/sys/fs/cgroup/ferry/1-0/shop_web_1",
                "/usr/sbin/ip",
                "netns",
                "exec",
                "ferry-1-10.0.0.2",
                "/bin/sh",
                "-c",
                "echo hi"
            ]
            .map(OsString::from)
        );
        // Without a cgroup or a limit to set, no shell: the namespace is entered directly.
        assert_eq!(
            wrap(&command, Some("/bin"), None, None, None, &enter).unwrap(),
            [
                "/usr/sbin/ip",
                "netns",
                "exec",
                "ferry-1-10.0.0.2",
                "/bin/sh",
                "-c",
                "echo hi"
            ]
            .map(OsString::from)
        );
        assert!(
            wrap(
                &["no-such-program-here".into()],
                Some("/bin"),
                None,
                None,
                None,
                &enter
            )
            .is_err(),
            "a missing program is a start error in a namespace too"
        );
        assert!(
            wrap(
                &["no-such-program-here".into()],
                Some("/bin"),
                None,
                None,
                Some(1),
                &[]
            )
            .is_err()
        );
    }

    /// The container gets the soft descriptor limit it is given, not the one ferry runs with,
    /// arguments passed through untouched.
    #[test]
    fn the_wrapped_program_starts_with_the_given_soft_descriptor_limit() {
        let Rlimit { current, maximum } = rustix::process::getrlimit(Resource::Nofile);
        let Some(soft) = current.filter(|&s| s > 64) else {
            eprintln!("skipped: the soft descriptor limit ({current:?}) leaves no room below it");
            return;
        };
        let lower = soft - 1;
        let argv = wrap(
            &[
                "sh".into(),
                "-c".into(),
                "echo $(ulimit -S -n) $(ulimit -H -n) \"$0\"".into(),
                "a b".into(),
            ],
            Some("/bin:/usr/bin"),
            None,
            None,
            Some(lower),
            &[],
        )
        .unwrap();
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let hard = maximum.map_or_else(|| "unlimited".to_owned(), |h| h.to_string());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{lower} {hard} a b\n"),
            "the hard limit is left alone"
        );
    }
}
