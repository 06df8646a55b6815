//! A container's process on the host: started from a [`Plan`] in its own process group with its
//! output copied into the log ring, signalled, waited for, and read back as Kubernetes reads a
//! container's end (exit code, signal).
//!
//! A container's processes die together, as a PID namespace does when its first process exits:
//! termination signals the main process, and once it is gone whatever it left in its cgroup
//! (see `cgroup`), or without one its process group, is killed, so no orphan keeps the log
//! pipes open or a port bound.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::cgroup::{Cgroup, wrap};
use super::logs::LogWriter;
use super::plan::Plan;

/// How long the log copiers may take to drain after the process ended (a daemonized
/// grandchild in another group could hold the pipes forever).
const DRAIN: Duration = Duration::from_secs(1);

/// A started container process.
#[derive(Debug)]
pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) pid: u32,
    copiers: Vec<JoinHandle<()>>,
    cgroup: Option<Cgroup>,
}

/// Starts the plan's process, its stdout and stderr going to `log`; inside `cgroup` when there
/// is one (removed again if the process does not start). It starts with the soft descriptor
/// limit ferry was started with, not the one ferry raised for itself, as containerd gives a
/// container the node's default rather than its own.
pub(crate) fn spawn(plan: &Plan, log: &LogWriter, cgroup: Option<Cgroup>) -> io::Result<Process> {
    let nofile = ferry_runtime::descriptors::child_soft_limit();
    let cwd = plan.working_dir.as_deref().map(std::path::Path::new);
    let argv = match wrap(
        &plan.argv,
        plan.env.get("PATH"),
        cwd,
        cgroup.as_ref(),
        nofile,
        &plan.enter,
    ) {
        Ok(argv) => argv,
        Err(e) => {
            if let Some(cgroup) = &cgroup {
                let _ = std::fs::remove_dir(cgroup.path());
            }
            return Err(e);
        }
    };
    let mut command = plan
        .command(&argv)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            if let Some(cgroup) = &cgroup {
                let _ = std::fs::remove_dir(cgroup.path());
            }
            return Err(e);
        }
    };
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other("the process exited before it was seen"))?;
    let mut copiers = Vec::with_capacity(2);
    if let Some(out) = child.stdout.take() {
        copiers.push(tokio::spawn(log.clone().copy_from(out)));
    }
    if let Some(err) = child.stderr.take() {
        copiers.push(tokio::spawn(log.clone().copy_from(err)));
    }
    Ok(Process {
        child,
        pid,
        copiers,
        cgroup,
    })
}

impl Process {
    /// Sends SIGTERM to the main process, then SIGKILL to the group at `deadline`, which a
    /// later stop may bring forward; returns how the process ended.
    pub(crate) async fn terminate(
        &mut self,
        mut deadline: Instant,
        stop: &mut watch::Receiver<Option<Instant>>,
    ) -> io::Result<ExitStatus> {
        signal(self.pid, Signal::TERM);
        loop {
            tokio::select! {
                status = self.child.wait() => return status,
                () = tokio::time::sleep_until(deadline) => {
                    kill_group(self.pid);
                    if let Some(cgroup) = &self.cgroup {
                        cgroup.kill();
                    }
                    return self.child.wait().await;
                }
                Ok(()) = stop.changed() => {
                    if let Some(sooner) = *stop.borrow_and_update() {
                        deadline = deadline.min(sooner);
                    }
                }
            }
        }
    }

    /// After the main process ended: kills what is left of its cgroup and group and lets the
    /// log copiers take the last output.
    pub(crate) async fn reap(self) {
        kill_group(self.pid);
        if let Some(cgroup) = self.cgroup {
            cgroup.remove().await;
        }
        for copier in self.copiers {
            // A copier still running after the drain time is left to finish on its own.
            let _ = tokio::time::timeout(DRAIN, copier).await;
        }
    }
}

fn signal(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        // The process may have exited already; there is nothing to do then.
        let _ = rustix::process::kill_process(pid, signal);
    }
}

fn kill_group(pid: u32) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    }
}

/// A process's end as Kubernetes reports it: the exit code (128 + the signal for a process a
/// signal ended) and the signal.
pub(crate) fn exit_of(status: &ExitStatus) -> (i32, Option<i32>) {
    match (status.code(), status.signal()) {
        (Some(code), _) => (code, None),
        (None, Some(signal)) => (128 + signal, Some(signal)),
        (None, None) => (-1, None),
    }
}
