//! The cross-process write lock: a [`LockedFile`] on `.claude/unified_state.json.lock`.
//!
//! Holding a [`StateLock`] is holding the right to write the state; the internals that
//! write take it as proof (`&StateLock`). Dropping it (or the process dying, even by
//! SIGKILL) releases it. Readers never take it: writes are atomic renames, so a reader
//! always sees a whole old or a whole new file.

use std::path::Path;

use super::StateError;
use crate::cancel::Cancel;
use crate::fs::{LockError, LockTimeout, LockedFile};
use crate::project::Project;

/// What a wait for [`Project::restore_lock_file`] names in its lines.
pub(crate) const RESTORE_TO_END: &str = "a state restore (`qw state-backup --restore`) to end";

/// Wait until no `qw state-backup --restore` runs in `project`, and keep it so while the
/// returned guard lives: every command that writes a workflow's or a run's record into the
/// state takes it (a workflow start, `workflow-reset`, `qw exec`), so its write never lands
/// between a restore's look for running workflows and its write of the restored state.
/// Waits like every lock of qw: at most `QW_LOCK_TIMEOUT`, ended by a signal (`cancel`),
/// saying after a second who holds it. Creates `.claude/runs/` (never through a link).
pub(crate) fn wait_out_restore(
    project: &Project,
    cancel: &Cancel,
) -> Result<LockedFile, LockError> {
    crate::fs::NoFollowDir::create(&project.claude_dir(), Path::new("runs"))?;
    LockedFile::acquire(
        project.restore_lock_file(),
        RESTORE_TO_END,
        &LockTimeout::from_env(),
        cancel,
    )
}

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
