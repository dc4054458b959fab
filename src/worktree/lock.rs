//! The repository lock: one `flock` in the repository's common git dir
//! (`<git-common-dir>/qw-worktrees.lock`), held by every qw — any process, any thread —
//! while it changes what all of them share: merges into the main worktree, creating and
//! removing worktrees, moving `qw/` branches, `info/exclude`. So two workflows in one
//! repository never interleave their merges (CONTRACT §10).
//!
//! It is a [`crate::fs::LockedFile`]: the holder's record notes what it does; a waiter
//! says after a second what it waits for and who holds it, and gives up when the cancel
//! token fires. The lock dies with its process (flock), so a SIGKILLed qw never leaves
//! it held. The wait has no time limit: a merge holds it only while it runs.

use std::path::{Path, PathBuf};

use super::WorktreeError;
use crate::exec::Cancel;
use crate::fs::{LockOptions, LockTimeout, LockedFile};

/// What the lock protects, for messages.
const RESOURCE: &str =
    "the repository lock (one merge at a time across every qw in this repository)";

/// Held while it lives; released on drop (closing the file releases the flock).
#[derive(Debug)]
pub struct RepoLock {
    _lock: LockedFile,
}

/// The lock file of a repository whose common dir is `common_dir`.
pub(crate) fn path_in(common_dir: &Path) -> PathBuf {
    common_dir.join("qw-worktrees.lock")
}

/// Take the lock at `path`, waiting as long as another holds it. `doing` names what we
/// do (recorded for waiters). After a second of waiting `on_wait` gets one line saying
/// what we wait for and who holds it (once). Err on cancel (the waiting is abandoned,
/// nothing was changed) or I/O. Without a token of its own the wait ends on the
/// process's signals ([`Cancel::process`]).
pub(crate) fn acquire(
    path: &Path,
    doing: &str,
    cancel: Option<&Cancel>,
    on_wait: &dyn Fn(&str),
) -> Result<RepoLock, WorktreeError> {
    let process = Cancel::process();
    let options = LockOptions {
        note: Some(doing),
        on_wait: Some(on_wait),
        ..LockOptions::default()
    };
    LockedFile::acquire_with(
        path,
        RESOURCE,
        &LockTimeout::new(None, ""),
        cancel.unwrap_or(&process),
        options,
    )
    .map(|lock| RepoLock { _lock: lock })
    .map_err(|e| match e.interrupted() {
        Some(_) => WorktreeError::Interrupted(e.to_string(), e.hints()),
        None => WorktreeError::Lock(Box::new(e)),
    })
}

/// Like [`acquire`], but only when the lock file already exists (`None` otherwise: no
/// qw ever changed this repository, so nothing can be half done) — for readers that
/// must not create files, such as the checks before a workflow starts. (Lock files are
/// never deleted, so one that exists now still does when it is opened.)
pub(crate) fn acquire_existing(
    path: &Path,
    doing: &str,
    cancel: Option<&Cancel>,
    on_wait: &dyn Fn(&str),
) -> Result<Option<RepoLock>, WorktreeError> {
    match crate::fs::symlink_metadata(path) {
        Ok(_) => acquire(path, doing, cancel, on_wait).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    #[test]
    fn second_holder_waits_says_who_holds_and_gets_it_after_release() {
        let d = tempfile::tempdir().unwrap();
        let p = path_in(d.path());
        let first = acquire(&p, "merging task 1", None, &|_| {}).unwrap();
        let said = Arc::new(Mutex::new(Vec::<String>::new()));
        let waiter = {
            let (p, said) = (p.clone(), said.clone());
            std::thread::spawn(move || {
                let on_wait = |m: &str| said.lock().unwrap().push(m.to_owned());
                acquire(&p, "merging task 2", None, &on_wait).map(|_| ())
            })
        };
        // Released only once the waiter has said what it waits for.
        let start = Instant::now();
        while said.lock().unwrap().is_empty() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(first);
        waiter.join().unwrap().unwrap();
        let said = said.lock().unwrap();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("merging task 1"), "{said:?}");
        assert!(
            said[0].contains(&format!("pid {}", std::process::id())),
            "{said:?}"
        );
    }

    #[test]
    fn waiting_ends_on_cancel() {
        let d = tempfile::tempdir().unwrap();
        let p = path_in(d.path());
        let _held = acquire(&p, "holding", None, &|_| {}).unwrap();
        let cancel = Cancel::new();
        cancel.request(15);
        let e = acquire(&p, "waiting", Some(&cancel), &|_| {}).unwrap_err();
        assert!(matches!(e, WorktreeError::Interrupted(..)), "{e}");
        let msg = e.to_string();
        assert!(
            msg.starts_with("interrupted by signal 15 while waiting for the repository lock"),
            "{msg}"
        );
        assert!(msg.contains("holding"), "{msg}");
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        // What to do about the holder comes along, as for the other locks.
        let hints = crate::exit::UserError::hints(&e);
        let pid = std::process::id();
        assert!(
            hints.iter().any(|h| h.contains(&format!("kill {pid}"))),
            "{hints:?}"
        );
    }

    #[test]
    fn an_existing_lock_only_is_taken_by_readers() {
        let d = tempfile::tempdir().unwrap();
        let p = path_in(d.path());
        assert!(
            acquire_existing(&p, "reading", None, &|_| {})
                .unwrap()
                .is_none()
        );
        assert!(!p.exists(), "a reader creates no lock file");
        drop(acquire(&p, "writing", None, &|_| {}).unwrap());
        let held = acquire_existing(&p, "reading", None, &|_| {}).unwrap();
        assert!(held.is_some());
        let holder = LockedFile::probe(&p).unwrap().expect("held");
        assert_eq!(holder.note.as_deref(), Some("reading"));
    }
}
