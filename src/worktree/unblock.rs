//! Releasing a git of qw's that a named pipe, made while it ran, holds (rev9 N10).
//!
//! Owns: the places where an agent's FIFO can hold a git of qw's — the repository's
//! common git dir (every worktree's `HEAD`, reflogs and index, `packed-refs`, the refs:
//! `git worktree add`, `git branch` and `--all` read every worktree's), the spec folders
//! (the agent reaches the main worktree's through qw's link) and the task worktree the
//! git works in — and, for a git that runs longer than [`GRACE`], the FIFOs found there
//! (never followed through a link, `objects/` not entered): each is opened for writing
//! without blocking, which lets a git waiting in `open()` for a writer go on (it reads
//! an empty file, as from a file that is not there), then removed. qw removes such
//! files before its gits already (`tree::defuse_common`, `tree::defuse_special`); a
//! sibling agent still running can make one again the moment after, and the git that
//! opened it waited until `QW_GIT_TIMEOUT_S` (600 s) ended it.
//! Must not: open anything but a FIFO (a device is never opened), or look at the main
//! worktree's own files (the user's, however odd).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// How long a git runs before the FIFOs are looked for (then every [`GRACE`] again).
pub(crate) const GRACE: Duration = Duration::from_secs(2);

/// Git dirs (walked whole but `objects/`) and work dirs (only the names git opens in
/// every directory) looked at when a git of qw's is slow.
static WATCHED: Mutex<(BTreeSet<PathBuf>, BTreeSet<PathBuf>)> =
    Mutex::new((BTreeSet::new(), BTreeSet::new()));

fn watched() -> std::sync::MutexGuard<'static, (BTreeSet<PathBuf>, BTreeSet<PathBuf>)> {
    WATCHED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Look in the git dir `dir` (a repository's common dir) when a git is slow.
pub(crate) fn watch_git_dir(dir: &Path) {
    // Not in unit tests: they share one process, and one test's slow git would take
    // away the FIFOs another test made on purpose.
    if !cfg!(test) {
        watched().0.insert(dir.to_path_buf());
    }
}

/// Look in the work dir `dir` (a spec folder) when a git is slow.
pub(crate) fn watch_work_dir(dir: &Path) {
    if !cfg!(test) {
        watched().1.insert(dir.to_path_buf());
    }
}

/// The FIFOs in the watched places and in `work` (the task worktree a git works in),
/// each released and removed; their paths, sorted.
pub(crate) fn release(work: Option<&Path>) -> Vec<PathBuf> {
    let (git_dirs, mut work_dirs) = watched().clone();
    if let Some(w) = work.filter(|_| !cfg!(test)) {
        work_dirs.insert(w.to_path_buf());
    }
    release_in(&git_dirs, &work_dirs)
}

pub(super) fn release_in(
    git_dirs: &BTreeSet<PathBuf>,
    work_dirs: &BTreeSet<PathBuf>,
) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for d in git_dirs {
        fifos(d, &mut |_| true, &mut found);
    }
    for d in work_dirs {
        let named = |name: &std::ffi::OsStr| super::tree::GIT_READS.iter().any(|n| name == *n);
        fifos(d, &mut |name| named(name), &mut found);
    }
    found.sort();
    found.dedup();
    found.retain(|p| free(p));
    found
}

/// Push the FIFOs under `root` whose name `wanted` takes; `objects/` and `.git/` are
/// not entered, links not followed.
fn fifos(root: &Path, wanted: &mut dyn FnMut(&std::ffi::OsStr) -> bool, out: &mut Vec<PathBuf>) {
    use std::os::unix::fs::FileTypeExt;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = crate::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(ty) = entry.file_type() else { continue };
            let name = entry.file_name();
            if ty.is_dir() {
                if name != "objects" && name != ".git" {
                    stack.push(entry.path());
                }
            } else if ty.is_fifo() && wanted(&name) {
                out.push(entry.path());
            }
        }
    }
}

/// Open the FIFO at `p` for writing without blocking (a reader waiting in `open()`
/// goes on, and reads nothing once it is closed), then remove it: `true` when removed.
fn free(p: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    // No reader: ENXIO, nothing to release.
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW | nix::libc::O_NOCTTY)
        .open(p);
    crate::fs::remove_file(p).is_ok()
}

/// What the child `pid` waits to open, quoted, when it waits on a FIFO: its kernel
/// wait is a FIFO's (`/proc/<pid>/wchan`), or it is in the very same `open()` as at the
/// last look ([`GRACE`] ago; `seen` keeps that look). `None` otherwise.
pub(crate) fn waiting_on_fifo(pid: u32, seen: &mut Option<String>) -> Option<String> {
    let syscall = crate::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    let syscall = syscall.trim().to_owned();
    let same = seen.as_deref() == Some(syscall.as_str());
    *seen = Some(syscall.clone());
    let wchan = crate::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    let fifo_wait = wchan.contains("fifo") || wchan.contains("wait_for_partner");
    let fields: Vec<&str> = syscall.split_whitespace().collect();
    let nr: i64 = fields.first()?.parse().ok()?;
    let path_arg = if nr == nix::libc::SYS_openat {
        fields.get(2)
    } else {
        #[cfg(target_arch = "x86_64")]
        let open = nr == nix::libc::SYS_open;
        #[cfg(not(target_arch = "x86_64"))]
        let open = false;
        open.then(|| fields.get(1)).flatten()
    }?;
    if !(fifo_wait || same) {
        return None;
    }
    Some(
        path_in(pid, path_arg)
            .map(|p| format!("`{p}`"))
            .unwrap_or_else(|| "a file".to_owned()),
    )
}

/// The NUL-ended path at `addr` (`0x…`) in the memory of the child `pid`.
fn path_in(pid: u32, addr: &str) -> Option<String> {
    use std::os::unix::fs::FileExt;
    let addr = u64::from_str_radix(addr.trim_start_matches("0x"), 16).ok()?;
    let mem = std::fs::OpenOptions::new()
        .read(true)
        .open(format!("/proc/{pid}/mem"))
        .ok()?;
    let mut buf = vec![0u8; 4096];
    let n = mem.read_at(&mut buf, addr).ok()?;
    let end = buf[..n].iter().position(|b| *b == 0)?;
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// The line telling what [`release`] freed, for the git's error.
pub(crate) fn released_line(paths: &[PathBuf]) -> String {
    format!(
        "qw removed {}, made while this git ran (by an agent?): a named pipe git waited on for good when it opened it",
        paths
            .iter()
            .map(|p| format!("`{}`", p.display()))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_waiting_on_a_fifo_goes_on_and_the_fifo_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let admin = dir.path().join("worktrees/demo-1");
        crate::fs::create_dir_all(&admin).unwrap();
        let head = admin.join("HEAD");
        nix::unistd::mkfifo(&head, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let objects = dir.path().join("objects");
        crate::fs::create_dir_all(&objects).unwrap();
        let spared = objects.join("fifo");
        nix::unistd::mkfifo(&spared, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // A reader that blocks in `open()` as git does (and opens again when the FIFO
        // was taken away before it got there).
        let reader = {
            let head = head.clone();
            std::thread::spawn(move || {
                use std::io::Read;
                loop {
                    match std::fs::OpenOptions::new().read(true).open(&head) {
                        Ok(mut f) => {
                            let mut s = String::new();
                            f.read_to_string(&mut s).unwrap();
                            return s;
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        let start = std::time::Instant::now();
        let mut freed = Vec::new();
        let git_dirs = BTreeSet::from([dir.path().to_path_buf()]);
        // The reader may not have reached its `open()` yet: look again, as the bound does.
        while !reader.is_finished() && start.elapsed() < Duration::from_secs(30) {
            freed.extend(release_in(&git_dirs, &BTreeSet::new()));
            std::thread::sleep(Duration::from_millis(50));
            if !reader.is_finished() {
                // Removed before the reader opened it: make it again.
                let _ = nix::unistd::mkfifo(&head, nix::sys::stat::Mode::S_IRWXU);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        assert!(reader.is_finished(), "the reader still waits");
        assert_eq!(reader.join().unwrap(), "");
        assert!(freed.contains(&head));
        assert!(spared.symlink_metadata().is_ok(), "objects/ is not entered");
    }

    #[test]
    fn only_the_names_git_opens_are_looked_for_in_a_work_dir() {
        let dir = tempfile::tempdir().unwrap();
        crate::fs::create_dir_all(dir.path().join("sub")).unwrap();
        let gi = dir.path().join("sub/.gitignore");
        let other = dir.path().join("sub/pipe");
        for p in [&gi, &other] {
            nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap();
        }
        let freed = release_in(
            &BTreeSet::new(),
            &BTreeSet::from([dir.path().to_path_buf()]),
        );
        assert!(freed.contains(&gi), "{freed:?}");
        assert!(!freed.contains(&other), "{freed:?}");
        assert!(other.symlink_metadata().is_ok());
        assert!(released_line(&freed).contains(".gitignore"));
    }
}
