//! Whether the main worktree can be used now, and how long qw waits for it.
//!
//! Owns: what keeps the main worktree unusable for a moment — another git's
//! `index.lock` (named with its age and whether a git process runs in the repository),
//! an operation the user started there (a merge, rebase, cherry-pick, revert, bisect,
//! `git am`) — the wait for it at the start of a run, before any agent starts (rev7 R8:
//! a stale lock found only at the first merge cost every agent's run), and readings of
//! the main worktree's state that hold still ([`Snapshot`]: taken while no git writes
//! there, rev7 R11).
//! Must not: remove the user's lock or end the user's operation (the line says how),
//! or hold the repository lock while it waits.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::shell::quote;
use super::{MAIN_WAIT_ENV, Repo, Result, WorktreeError, main_wait_limit};
use crate::exec::Cancel;

/// What keeps the main worktree unusable: one clause, what to do, and what it is (two
/// findings with the same `key` are the same obstruction, however old).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Obstruction {
    /// `the main worktree's index is locked: `…` exists (…)`.
    pub(crate) line: String,
    /// What ends it (`rm -- …` once no git runs there; `git merge --abort`).
    pub(crate) hint: String,
    /// The file that says so.
    pub(crate) key: PathBuf,
    /// Old enough (or an operation in progress) to say at once, not after a second.
    settled: bool,
}

/// Operations git leaves half done in a git dir: the file that says so, what it is and
/// how it is finished or undone.
const OPERATIONS: [(&str, &str, &str); 7] = [
    (
        "MERGE_HEAD",
        "a merge",
        "finish it (`git commit` once the conflicts are resolved) or undo it (`git merge --abort`)",
    ),
    (
        "rebase-merge",
        "a rebase",
        "finish it (`git rebase --continue`) or undo it (`git rebase --abort`)",
    ),
    (
        "rebase-apply",
        "a rebase (or `git am`)",
        "finish it (`git rebase --continue`, `git am --continue`) or undo it (`--abort`)",
    ),
    (
        "CHERRY_PICK_HEAD",
        "a cherry-pick",
        "finish it (`git cherry-pick --continue`) or undo it (`git cherry-pick --abort`)",
    ),
    (
        "REVERT_HEAD",
        "a revert",
        "finish it (`git revert --continue`) or undo it (`git revert --abort`)",
    ),
    ("BISECT_START", "a bisect", "end it (`git bisect reset`)"),
    (
        "sequencer/todo",
        "a cherry-pick or revert of several commits",
        "finish it (`git cherry-pick --continue`) or undo it (`git cherry-pick --abort`)",
    ),
];

/// How long ago `path` was last changed (`None` when that cannot be told).
fn age_of(path: &Path) -> Option<Duration> {
    let m = path.symlink_metadata().ok()?.modified().ok()?;
    Some(SystemTime::now().duration_since(m).unwrap_or_default())
}

/// `3 s`, `4 min`, `2 h`, `5 days`.
fn shown_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// A git process whose working directory is in the repository (its top, its git dirs):
/// `(pid, command line)`. `Err(())` when processes cannot be listed here (no `/proc`).
#[allow(clippy::disallowed_methods)] // /proc entries come and go; unreadable ones are skipped
fn git_running_in(repo: &Repo) -> std::result::Result<Option<(i32, String)>, ()> {
    if !Path::new("/proc/self/cwd").exists() {
        return Err(());
    }
    let places: Vec<PathBuf> = [&repo.top, &repo.git_dir, &repo.common_dir]
        .iter()
        .map(|p| p.canonicalize().unwrap_or_else(|_| (*p).clone()))
        .collect();
    for pid in crate::exec::procs::pids() {
        let Some(stat) = crate::exec::procs::read_stat(pid) else {
            continue;
        };
        if !(stat.comm == "git" || stat.comm.starts_with("git-")) || !stat.alive() {
            continue;
        }
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
            continue;
        };
        if places.iter().any(|p| cwd.starts_with(p)) {
            return Ok(Some((
                pid,
                crate::exec::procs::command_line(pid, &stat.comm),
            )));
        }
    }
    Ok(None)
}

/// Another git's `index.lock` in the main worktree's git dir: named with its age and
/// whether a git process runs in the repository (when none does, it was left by a git
/// that crashed or was killed, and only the user may remove it).
pub(crate) fn index_lock(repo: &Repo) -> Option<Obstruction> {
    let path = repo.git_dir.join("index.lock");
    path.symlink_metadata().ok()?;
    let age = age_of(&path);
    let old = age
        .map(shown_age)
        .map_or_else(String::new, |a| format!("{a} old; "));
    let who = match git_running_in(repo) {
        Ok(Some((pid, cmd))) => format!("a git runs in the repository: pid {pid}, `{cmd}`"),
        Ok(None) => format!(
            "no git process runs in `{}`, so a git that crashed or was killed (or an editor's) left it",
            repo.top.display()
        ),
        Err(()) => "whether a git runs there cannot be told on this system".to_owned(),
    };
    Some(Obstruction {
        line: format!(
            "the main worktree's index is locked: `{}` exists ({old}{who})",
            path.display()
        ),
        hint: format!(
            "if no git is running there, remove it: `rm -- {}`",
            quote(&path.to_string_lossy())
        ),
        key: path,
        settled: age.is_none_or(|a| a >= Duration::from_secs(1)),
    })
}

/// An operation the user started in the main worktree and left half done (qw's own
/// half-done merge is not one: the run undoes it, see `pending.rs`).
pub(crate) fn operation(repo: &Repo) -> Option<Obstruction> {
    let (file, what, hint) = OPERATIONS
        .iter()
        .find(|(f, _, _)| repo.git_dir.join(f).symlink_metadata().is_ok())?;
    if *file == "MERGE_HEAD" && super::pending::own_half_merge(repo).is_some() {
        return None;
    }
    let path = repo.git_dir.join(file);
    let old = age_of(&path).map_or_else(String::new, |a| format!(", {} old", shown_age(a)));
    Some(Obstruction {
        line: format!(
            "the main worktree `{}` is in the middle of {what} that qw did not start (`{}`{old})",
            repo.top.display(),
            path.display()
        ),
        hint: hint.to_string(),
        key: path,
        settled: true,
    })
}

/// What keeps the main worktree from taking a run now: another git's `index.lock`, or
/// an operation the user left half done. `None`: usable.
pub(crate) fn at_start(repo: &Repo) -> Option<Obstruction> {
    index_lock(repo).or_else(|| operation(repo))
}

/// Wait, before a run starts any agent, until the main worktree is usable
/// ([`at_start`]): said at once when what is in the way is old enough to be no passing
/// git (else after a second, like the merge wait), again when it changes; the
/// repository lock is not held; a signal ends it (`Interrupted`). At most
/// [`main_wait_limit`]: `Some(obstruction)` when it is still there then, `None` when the
/// main worktree is usable. With `wait` false (a dry run) it is only said.
pub(crate) fn wait_at_start(
    repo: &Repo,
    spec: &str,
    wait: bool,
    cancel: &Cancel,
    say: &dyn Fn(&str),
) -> Result<Option<Obstruction>> {
    let limit = main_wait_limit();
    let started = Instant::now();
    let mut said: Option<PathBuf> = None;
    loop {
        let Some(o) = at_start(repo) else {
            return Ok(None);
        };
        if (o.settled || started.elapsed() >= Duration::from_secs(1) || !wait)
            && said.as_ref() != Some(&o.key)
        {
            say(&if wait {
                format!(
                    "{}: qw starts no agent of workflow `{spec}` until it is gone — waiting (up to {} s, `{MAIN_WAIT_ENV}`); {}",
                    o.line,
                    limit.as_secs(),
                    o.hint
                )
            } else {
                format!(
                    "{}: a run of workflow `{spec}` would wait for it (up to {} s, `{MAIN_WAIT_ENV}`) before starting any agent; {}",
                    o.line,
                    limit.as_secs(),
                    o.hint
                )
            });
            said = Some(o.key.clone());
        }
        if !wait || started.elapsed() >= limit {
            return Ok(Some(o));
        }
        if !cancel.sleep(Duration::from_millis(200)) {
            return Err(WorktreeError::Interrupted(
                format!(
                    "a signal ended the wait for the main worktree before workflow `{spec}` started any agent ({})",
                    o.line
                ),
                Vec::new(),
            ));
        }
    }
}

/// What a reading of the main worktree depends on, as it was: the branch checked out,
/// the target's commit, and the files git rewrites when it commits, checks out, stashes
/// or merges (the index, HEAD and its log, packed refs, reftable tables, the files of an
/// operation in progress) by size, change time and inode (git renames a new file over
/// the old one). Two equal snapshots with no `index.lock` at either end: no git wrote
/// there in between.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    branch: Option<String>,
    target: Option<String>,
    files: Vec<Option<(u64, i64, i64, u64)>>,
}

/// Size, change time (seconds, nanoseconds) and inode of `path`, if it is there.
fn stamp(path: &Path) -> Option<(u64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = path.symlink_metadata().ok()?;
    Some((m.len(), m.ctime(), m.ctime_nsec(), m.ino()))
}

/// The main worktree's state as qw's readings depend on it (see [`Snapshot`]); `None`
/// while another git holds its index (`index.lock`, before or after).
pub(crate) fn snapshot(repo: &Repo, integration: &str) -> Result<Option<Snapshot>> {
    let lock = repo.git_dir.join("index.lock");
    if lock.symlink_metadata().is_ok() {
        return Ok(None);
    }
    let g = &repo.git_dir;
    let c = &repo.common_dir;
    let files = [
        g.join("index"),
        g.join("HEAD"),
        g.join("logs/HEAD"),
        g.join("MERGE_HEAD"),
        g.join("CHERRY_PICK_HEAD"),
        g.join("REVERT_HEAD"),
        g.join("reftable/tables.list"),
        c.join("packed-refs"),
        c.join("reftable/tables.list"),
        c.join("refs/heads").join(integration),
    ]
    .iter()
    .map(|p| stamp(p))
    .collect();
    let branch = repo.current_branch()?;
    let target = repo.commit_of(&format!("refs/heads/{integration}"))?;
    if lock.symlink_metadata().is_ok() {
        return Ok(None);
    }
    Ok(Some(Snapshot {
        branch,
        target,
        files,
    }))
}

/// `read` (of the main worktree's state) when it held still: no `index.lock` before or
/// after, and the same [`Snapshot`] before and after. `None` when a git wrote there
/// meanwhile (a commit, a checkout, a stash of the user's): the reading may be half of
/// one state and half of the next — staged changes that are a commit being made.
pub(crate) fn still<T>(
    repo: &Repo,
    integration: &str,
    read: impl FnOnce() -> Result<T>,
) -> Result<Option<T>> {
    let Some(before) = snapshot(repo, integration)? else {
        return Ok(None);
    };
    let r = read()?;
    let Some(after) = snapshot(repo, integration)? else {
        return Ok(None);
    };
    Ok((before == after).then_some(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_said_in_the_unit_a_person_reads() {
        assert_eq!(shown_age(Duration::from_secs(3)), "3 s");
        assert_eq!(shown_age(Duration::from_secs(59)), "59 s");
        assert_eq!(shown_age(Duration::from_secs(119)), "1 min");
        assert_eq!(shown_age(Duration::from_secs(600)), "10 min");
        assert_eq!(shown_age(Duration::from_secs(3 * 3600)), "3 h");
        assert_eq!(shown_age(Duration::from_secs(5 * 86_400)), "5 days");
    }
}
