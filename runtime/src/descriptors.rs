//! The process's file descriptor limit. Every accepted connection, upstream connection, Pod
//! pipe and DNS socket is a descriptor; the common soft limit of 1,024 lets one busy part starve
//! the others long before the hard limit. So at start the soft `RLIMIT_NOFILE` is raised to the
//! hard limit, as Go's runtime does for every program since Go 1.19.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

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
        let after = raise_nofile_limit();
        assert_eq!(after, nofile_limit());
        if hard.is_some() {
            assert_eq!(after.soft, hard, "{after}");
        }
        assert_eq!(after.hard, hard, "the hard limit is left alone");
    }
}
