//! The cross-process write lock: a [`LockedFile`] on `.claude/unified_state.json.lock`.
//!
//! Holding a [`StateLock`] is holding the right to write the state; the internals that
//! write take it as proof (`&StateLock`). Dropping it (or the process dying, even by
//! SIGKILL) releases it. Readers never take it: writes are atomic renames, so a reader
//! always sees a whole old or a whole new file.

use std::path::Path;

use super::StateError;
use crate::cancel::Cancel;
use crate::fs::{LockTimeout, LockedFile};

/// An exclusive lock on `.claude/unified_state.json.lock`, released on drop.
#[derive(Debug)]
pub struct StateLock(LockedFile);

impl StateLock {
    /// Wait until the lock on `path` (created if missing) is ours: at most
    /// `QW_LOCK_TIMEOUT` (see [`LockTimeout::from_env`]), and only until `cancel` asks
    /// to stop. `resource` names the state for messages.
    pub fn acquire(path: &Path, resource: &str, cancel: &Cancel) -> Result<StateLock, StateError> {
        LockedFile::acquire(path, resource, &LockTimeout::from_env(), cancel)
            .map(StateLock)
            .map_err(StateError::Lock)
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_waits_for_the_first_to_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        let first = StateLock::acquire(&path, "the state", &Cancel::new()).unwrap();
        assert!(
            LockedFile::try_acquire(&path).unwrap().is_none(),
            "lock is exclusive"
        );
        drop(first);
        assert!(
            LockedFile::try_acquire(&path).unwrap().is_some(),
            "drop releases the lock"
        );
    }

    #[test]
    fn a_waiting_writer_is_interrupted_with_the_signal() {
        let err = crate::fs::locked_file::stopped_wait(1, |path, cancel| {
            StateLock::acquire(path, "the state", cancel)
        })
        .err;
        assert_eq!(err.interrupted(), Some(1), "{err}");
        assert!(err.to_string().contains("the state"), "{err}");
        assert!(!err.hints().is_empty());
    }
}
