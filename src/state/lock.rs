//! The cross-process write lock: an exclusive `flock` on a lock file beside the state.
//!
//! Holding a [`StateLock`] is holding the right to write the state; dropping it (or the
//! process dying, even by SIGKILL) releases it. Readers never take it: writes are atomic
//! renames, so a reader always sees a whole old or a whole new file.

use std::path::{Path, PathBuf};

use super::StateError;

/// An exclusive lock on `.claude/unified_state.json.lock`, released on drop.
#[derive(Debug)]
pub struct StateLock {
    file: crate::fs::File,
    path: PathBuf,
}

impl StateLock {
    /// Block until the lock on `path` (created if missing) is ours.
    pub fn acquire(path: &Path) -> Result<StateLock, StateError> {
        let file = crate::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        file.file().lock().map_err(|source| StateError::Lock {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(StateLock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; unlocking first makes it explicit.
        let _ = self.file.file().unlock();
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_waits_for_the_first_to_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        let first = StateLock::acquire(&path).unwrap();
        let probe = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert!(probe.try_lock().is_err(), "lock is exclusive");
        drop(first);
        assert!(probe.try_lock().is_ok(), "drop releases the lock");
    }
}
