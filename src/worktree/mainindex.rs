//! qw's hold on the main worktree's index for the whole of a merge.
//!
//! Owns: taking `<git dir>/index.lock` as git does (created exclusively), a copy of the
//! index that qw's git works on meanwhile (`GIT_INDEX_FILE`), and putting that copy in
//! place as git commits a lock (the copy renamed onto the lock, the lock onto the index).
//! While qw holds it, the user's `git add`, `git commit`, `git stash`, `git checkout`…
//! fail at once with git's own "index.lock exists" (and run again, by the user, after),
//! instead of landing in the middle of qw's merge: `git merge` reads HEAD and the index
//! without the lock and takes it only later, so a commit of the user's between the two
//! made qw's merge commit (or its index) from another state than its HEAD, and the
//! user's uncommitted edit could be set back (the open race of the tenth session).
//! Must not: take or remove a lock it did not create; leave its lock behind on any path
//! but a kill. Dropped, the copy is put in place all the same: it is what qw's git left
//! (a git ended half way wrote the files it wrote, and its index only whole), or the
//! index unchanged.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The copy of the index qw's git works on while qw holds the lock.
const COPY: &str = "qw-merge.index";

/// qw holding the main worktree's `index.lock`, with the copy of the index its git uses
/// ([`HeldIndex::env`]). Dropped: installed as by [`HeldIndex::install`] (errors
/// logged), else released.
#[derive(Debug)]
pub(crate) struct HeldIndex {
    lock: PathBuf,
    index: PathBuf,
    copy: PathBuf,
    done: bool,
}

impl HeldIndex {
    /// Take `<git_dir>/index.lock` and copy the index beside it. `Ok(None)`: another git
    /// holds the lock now (nothing changed).
    pub(crate) fn take(git_dir: &Path) -> std::io::Result<Option<HeldIndex>> {
        let lock = git_dir.join("index.lock");
        match crate::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(e),
        }
        let held = HeldIndex {
            lock,
            index: git_dir.join("index"),
            copy: git_dir.join(COPY),
            done: false,
        };
        // A killed qw's copy and its git's lock on it: qw's own, and nobody else's
        // while qw holds the index lock.
        remove_if_there(&held.copy)?;
        remove_if_there(&copy_lock(&held.copy))?;
        if held.index.symlink_metadata().is_ok() {
            crate::fs::copy(&held.index, &held.copy)?;
        }
        Ok(Some(held))
    }

    /// The environment of qw's git while it holds the lock: the copy as its index.
    pub(crate) fn env(&self) -> [(&'static str, &OsStr); 1] {
        [("GIT_INDEX_FILE", self.copy.as_os_str())]
    }

    /// Put the copy (as qw's git left it) in place as the index, releasing the lock —
    /// the two renames git's own commit of a lock makes. No copy (the repository had no
    /// index): only released.
    pub(crate) fn install(mut self) -> std::io::Result<()> {
        self.done = true;
        if self.copy.symlink_metadata().is_ok() {
            if let Err(e) = crate::fs::rename(&self.copy, &self.lock)
                .and_then(|()| crate::fs::rename(&self.lock, &self.index))
            {
                self.release();
                return Err(e);
            }
            return Ok(());
        }
        self.release();
        Ok(())
    }

    fn release(&self) {
        for p in [&self.copy, &copy_lock(&self.copy), &self.lock] {
            if let Err(e) = remove_if_there(p) {
                tracing::warn!("could not remove `{}`: {e}", p.display());
            }
        }
    }
}

impl Drop for HeldIndex {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let held = HeldIndex {
            lock: std::mem::take(&mut self.lock),
            index: std::mem::take(&mut self.index),
            copy: std::mem::take(&mut self.copy),
            done: false,
        };
        self.done = true;
        if let Err(e) = held.install() {
            tracing::warn!("could not put qw's copy of the main index in place: {e}");
        }
    }
}

fn copy_lock(copy: &Path) -> PathBuf {
    let mut name = copy.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

fn remove_if_there(p: &Path) -> std::io::Result<()> {
    match crate::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_then_dropped_leaves_the_index_and_no_lock_installed_puts_the_copy_in_place() {
        let d = tempfile::tempdir().unwrap();
        let g = d.path();
        crate::fs::write(g.join("index"), b"old").unwrap();
        let held = HeldIndex::take(g).unwrap().unwrap();
        assert!(g.join("index.lock").exists());
        assert!(
            HeldIndex::take(g).unwrap().is_none(),
            "held: not taken twice"
        );
        assert_eq!(crate::fs::read(g.join(COPY)).unwrap(), b"old");
        crate::fs::write(g.join(COPY), b"new").unwrap();
        drop(held);
        assert!(!g.join("index.lock").exists() && !g.join(COPY).exists());
        assert_eq!(crate::fs::read(g.join("index")).unwrap(), b"old");

        let held = HeldIndex::take(g).unwrap().unwrap();
        crate::fs::write(g.join(COPY), b"new").unwrap();
        held.install().unwrap();
        assert!(!g.join("index.lock").exists() && !g.join(COPY).exists());
        assert_eq!(crate::fs::read(g.join("index")).unwrap(), b"new");
    }

    #[test]
    fn another_gits_lock_is_neither_taken_nor_removed() {
        let d = tempfile::tempdir().unwrap();
        let g = d.path();
        crate::fs::write(g.join("index.lock"), b"theirs").unwrap();
        assert!(HeldIndex::take(g).unwrap().is_none());
        assert_eq!(crate::fs::read(g.join("index.lock")).unwrap(), b"theirs");
    }
}
