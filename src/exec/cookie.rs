//! The run cookie: an environment variable every process of a run inherits, so that qw
//! (or a later `qw sweep`) can find the run's processes even after they `setsid()` away
//! or lose their parent.
//!
//! Format: `QW_RUN_ID=<owner-pid>.<owner-start-ticks>.<nonce>`. The owner is the `qw`
//! process supervising the run; a process whose cookie names an owner that no longer
//! exists (pid gone, or reused with another start time) is an orphan.

use std::fmt;

/// Environment variable carrying the run id.
pub(crate) const COOKIE_VAR: &str = "QW_RUN_ID";
/// Environment variable carrying the project root, to scope automatic sweeps.
pub(crate) const PROJECT_VAR: &str = "QW_PROJECT";

/// A parsed run id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunId {
    /// pid of the supervising qw.
    pub owner_pid: i32,
    /// start time of the supervising qw, in clock ticks since boot (0 if unknown).
    pub owner_start: u64,
    /// random part, unique per run.
    pub nonce: String,
}

impl RunId {
    /// A new run id owned by the current process (fails only when the OS gives no
    /// random bytes: see [`crate::random`]).
    pub fn new_for_self() -> std::io::Result<RunId> {
        let pid = std::process::id() as i32;
        Ok(RunId {
            owner_pid: pid,
            owner_start: owner_start_time(pid),
            nonce: crate::random::hex(6)?,
        })
    }

    /// Parse a cookie value; `None` if it is not of qw's form.
    pub fn parse(s: &str) -> Option<RunId> {
        let mut parts = s.splitn(3, '.');
        let owner_pid = parts.next()?.parse().ok()?;
        let owner_start = parts.next()?.parse().ok()?;
        let nonce = parts.next()?;
        if nonce.is_empty() || !nonce.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return None;
        }
        Some(RunId {
            owner_pid,
            owner_start,
            nonce: nonce.to_owned(),
        })
    }

    /// True while the owning qw process is alive (same pid *and* same start time).
    pub fn owner_alive(&self) -> bool {
        owner_alive(self.owner_pid, self.owner_start)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.owner_pid, self.owner_start, self.nonce)
    }
}

#[cfg(target_os = "linux")]
fn owner_start_time(pid: i32) -> u64 {
    super::procs::start_time_of(pid).unwrap_or(0)
}

#[cfg(not(target_os = "linux"))]
fn owner_start_time(_pid: i32) -> u64 {
    0
}

#[cfg(target_os = "linux")]
fn owner_alive(pid: i32, start: u64) -> bool {
    match super::procs::start_time_of(pid) {
        Some(t) => start == 0 || t == start,
        None => false,
    }
}

#[cfg(not(target_os = "linux"))]
fn owner_alive(pid: i32, _start: u64) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let id = RunId::new_for_self().unwrap();
        assert_eq!(RunId::parse(&id.to_string()), Some(id.clone()));
        assert!(id.owner_alive());
    }

    #[test]
    fn rejects_foreign_values() {
        for s in ["", "abc", "1.2", "1.x.abc", "1.2.", "1.2.a b"] {
            assert!(RunId::parse(s).is_none(), "{s:?}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reused_pid_is_not_the_owner() {
        // Same pid, another start time: the pid was reused, the owner is gone.
        let me = RunId::new_for_self().unwrap();
        let reused = RunId {
            owner_start: me.owner_start + 1,
            ..me
        };
        assert!(!reused.owner_alive());
    }
}
