//! The repository lock: one `flock` in the repository's common git dir
//! (`<git-common-dir>/qw-worktrees.lock`), held by every qw — any process, any thread —
//! while it changes what all of them share: merges into the main worktree, creating and
//! removing worktrees, moving `qw/` branches, `info/exclude`. So two workflows in one
//! repository never interleave their merges (CONTRACT §10).
//!
//! The holder writes its pid and what it does into the file; a waiter says after a second
//! what it waits for and who holds it, and gives up when the cancel token fires. The lock
//! dies with its process (flock), so a SIGKILLed qw never leaves it held.
//!
//! Kept to [`acquire`] so it can move onto `crate::fs::LockedFile` when that lands.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::WorktreeError;
use crate::exec::Cancel;

/// Held while it lives; released on drop (closing the file releases the flock).
#[derive(Debug)]
pub struct RepoLock {
    _file: crate::fs::File,
}

/// The lock file of a repository whose common dir is `common_dir`.
pub fn path_in(common_dir: &Path) -> PathBuf {
    common_dir.join("qw-worktrees.lock")
}

/// Take the lock at `path`, waiting as long as another holds it. `doing` names what we
/// do (written for waiters). After a second of waiting `on_wait` gets one line saying
/// what we wait for and who holds it (once). Err on cancel (the waiting is abandoned,
/// nothing was changed) or I/O.
pub fn acquire(
    path: &Path,
    doing: &str,
    cancel: Option<&Cancel>,
    on_wait: &dyn Fn(&str),
) -> Result<RepoLock, WorktreeError> {
    let file = crate::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    wait_for(file, path, doing, cancel, on_wait)
}

/// Like [`acquire`], but only when the lock file already exists (`None` otherwise: no
/// qw ever changed this repository, so nothing can be half done) — for readers that
/// must not write, such as the checks before a workflow starts.
pub fn acquire_existing(
    path: &Path,
    doing: &str,
    cancel: Option<&Cancel>,
    on_wait: &dyn Fn(&str),
) -> Result<Option<RepoLock>, WorktreeError> {
    let file = match crate::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    wait_for(file, path, doing, cancel, on_wait).map(Some)
}

fn wait_for(
    mut file: crate::fs::File,
    path: &Path,
    doing: &str,
    cancel: Option<&Cancel>,
    on_wait: &dyn Fn(&str),
) -> Result<RepoLock, WorktreeError> {
    let started = Instant::now();
    let mut told = false;
    let mut pause = Duration::from_millis(5);
    loop {
        match file.file().try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(crate::fs::with_path(e, "lock", path).into());
            }
        }
        if let Some(sig) = cancel.and_then(Cancel::pending) {
            return Err(WorktreeError::Interrupted(format!(
                "signal {sig} while waiting for the repository lock `{}`{}",
                path.display(),
                holder(path)
            )));
        }
        if !told && started.elapsed() >= Duration::from_secs(1) {
            told = true;
            on_wait(&format!(
                "waiting for the repository lock `{}`{} (one merge at a time across every qw in this repository)",
                path.display(),
                holder(path)
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
    // Name the holder for waiters; failing to is no reason to fail the work.
    let me = format!("pid {} ({doing})\n", std::process::id());
    let _ = file
        .file()
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(me.as_bytes()));
    Ok(RepoLock { _file: file })
}

/// `; held by pid N (…)` from the lock file, or nothing when unknown.
fn holder(path: &Path) -> String {
    let mut text = String::new();
    let read = crate::fs::File::open(path).and_then(|f| f.take(512).read_to_string(&mut text));
    match read {
        Ok(_) if !text.trim().is_empty() => format!(", held by {}", text.trim()),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

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
        assert!(matches!(e, WorktreeError::Interrupted(_)), "{e}");
        assert!(e.to_string().contains("holding"), "{e}");
    }
}
