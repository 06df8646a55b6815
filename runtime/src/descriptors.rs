//! The process's file descriptor limit. Every accepted connection, upstream connection, Pod
//! pipe and DNS socket is a descriptor; the common soft limit of 1,024 lets one busy part starve
//! the others long before the hard limit. So at start the soft `RLIMIT_NOFILE` is raised to the
//! hard limit, as Go's runtime does for every program since Go 1.19.
//!
//! The raised limit is ferry's own, not its children's: as Go restores the original soft limit
//! in the processes it starts, and as containerd gives containers the node's default rather
//! than its own raised one, the limit ferry was started with is kept
//! ([`child_soft_limit`]) for the local runtime's containers to start with.

use std::sync::OnceLock;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The limits before the first [`raise_nofile_limit`].
static STARTED_WITH: OnceLock<NofileLimit> = OnceLock::new();

/// The soft and hard descriptor limits (`None` is unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NofileLimit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

impl std::fmt::Display for NofileLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_owned(), |v| v.to_string());
        write!(f, "soft {}, hard {}", show(self.soft), show(self.hard))
    }
}

/// The limits now.
pub fn nofile_limit() -> NofileLimit {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    NofileLimit {
        soft: current,
        hard: maximum,
    }
}

/// Raises the soft descriptor limit to the hard one and returns the limits then in force.
/// Failing is not fatal (a hard limit of "unlimited" cannot be the soft one on Linux, which
/// caps descriptors at `fs.nr_open`): the soft limit stays as it was, and the error is logged
/// at debug.
pub fn raise_nofile_limit() -> NofileLimit {
    let before = nofile_limit();
    let _ = STARTED_WITH.set(before);
    if before.soft != before.hard {
        let raised = Rlimit {
            current: before.hard,
            maximum: before.hard,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(limit = %before, error = %e, "cannot raise the soft descriptor limit to the hard one");
        }
    }
    let after = nofile_limit();
    tracing::debug!(before = %before, after = %after, "file descriptor limit (RLIMIT_NOFILE)");
    after
}

/// The limits the process was started with, before [`raise_nofile_limit`] first raised them
/// (`None` if it never ran).
pub fn started_with() -> Option<NofileLimit> {
    STARTED_WITH.get().copied()
}

/// The soft limit a child process must be given to start with the one this process was
/// started with: `Some` only when [`raise_nofile_limit`] has raised it since (a child inherits
/// the raised one otherwise).
pub fn child_soft_limit() -> Option<u64> {
    restore_to(started_with()?, nofile_limit())
}

/// The soft limit to set back to, going from `now` to `original`.
fn restore_to(original: NofileLimit, now: NofileLimit) -> Option<u64> {
    // An unlimited soft limit was not raised: nothing to give back.
    let soft = original.soft?;
    (now.soft != Some(soft)).then_some(soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let hard = nofile_limit().hard;
        // Lower the soft limit first (always allowed), so the raise has something to do.
        if let Some(hard) = hard {
            let low = hard.min(256);
            setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(low),
                    maximum: Some(hard),
                },
            )
            .unwrap();
            assert_eq!(nofile_limit().soft, Some(low));
        }
        let before = nofile_limit();
        let after = raise_nofile_limit();
        assert_eq!(after, nofile_limit());
        if hard.is_some() {
            assert_eq!(after.soft, hard, "{after}");
        }
        assert_eq!(after.hard, hard, "the hard limit is left alone");
        // What children are to get back: the limit before the raise.
        assert_eq!(started_with(), Some(before));
        if hard.is_some() {
            assert_eq!(child_soft_limit(), before.soft);
        }
    }

    #[test]
    fn children_get_back_the_soft_limit_only_when_it_was_raised() {
        let limit = |soft, hard| NofileLimit { soft, hard };
        let raised = limit(Some(4096), Some(4096));
        assert_eq!(
            restore_to(limit(Some(1024), Some(4096)), raised),
            Some(1024)
        );
        assert_eq!(restore_to(raised, raised), None, "not raised");
        assert_eq!(restore_to(limit(None, None), limit(None, None)), None);
    }
}
