//! Who still holds a task worktree, asked of the whole repository rather than of the
//! checkout qw runs in (rev6b G12, G13, G17).
//!
//! A workflow's lock (`.claude/runs/.<spec>.workflow.lock`) belongs to the checkout it
//! runs in, but task worktrees and `qw/` branches belong to the repository: a `qw
//! worktrees --prune` run in another checkout (a `git worktree add` of the user's) or
//! from inside a task worktree sees a lock nobody holds. So a workflow that uses task
//! worktrees also holds `<git-common-dir>/qw-workflows/<spec>.lock`, and a worktree is
//! held while any of these lives: that lock, the workflow lock of any checkout of the
//! repository, the qw process named in the worktree's `qw:` lock reason, or an agent
//! process still running in it (its `QW_WORKTREE`).

use std::path::{Path, PathBuf};

use super::{ListedWorktree, Repo, Result};
use crate::fs::LockedFile;

/// `<git-common-dir>/qw-workflows/<spec>.lock`: held by every workflow of `spec` that
/// uses task worktrees, whichever checkout of the repository it runs in.
pub(crate) fn repo_lock_file(repo: &Repo, spec: &str) -> PathBuf {
    repo.common_dir
        .join("qw-workflows")
        .join(format!("{spec}.lock"))
}

/// Take the repository-wide lock of `spec` if nobody holds it (`None` if someone does),
/// noting which checkout and target it is held for.
pub(crate) fn try_hold(repo: &Repo, spec: &str, note: &str) -> Result<Option<LockedFile>> {
    let path = repo_lock_file(repo, spec);
    crate::fs::create_dir_all(crate::fs::parent_dir(&path))?;
    let lock =
        LockedFile::try_acquire(&path).map_err(|e| super::WorktreeError::Lock(Box::new(e)))?;
    Ok(lock.map(|mut l| {
        l.set_note(Some(note));
        l
    }))
}

/// The workflow lock file of `spec` in every checkout of the repository that is not a
/// task worktree of qw's (the main one, the user's `git worktree add` ones), the
/// current project's included: the same path below each checkout's top as the current
/// project's lock is below this checkout's top.
pub(crate) fn checkout_lock_files(repo: &Repo, spec: &str) -> Vec<PathBuf> {
    let own = repo.project.workflow_lock_file(spec);
    let mut out = vec![own.clone()];
    let top = repo.top.canonicalize().unwrap_or_else(|_| repo.top.clone());
    let Some(rel) = own
        .strip_prefix(&repo.top)
        .or_else(|_| own.strip_prefix(&top))
        .ok()
        .map(Path::to_path_buf)
    else {
        return out;
    };
    for w in repo.registered().unwrap_or_default() {
        if w.task.is_some() || w.locked.as_deref().is_some_and(is_qw_reason) {
            continue;
        }
        let file = w.path.join(&rel);
        if !out.contains(&file) {
            out.push(file);
        }
    }
    out
}

fn is_qw_reason(r: &str) -> bool {
    r.starts_with(super::tree::LOCK_REASON_PREFIX)
}

/// Who runs a workflow of `spec` in this repository, as a phrase (the pid and the note
/// of its lock, else the lock file), or `None` when no lock of it is held: the
/// repository-wide lock, or the
/// workflow lock of any checkout. `mine` lists lock files this process holds itself
/// (not asked: a lock of ours is no running workflow).
pub(crate) fn spec_runner(repo: &Repo, spec: &str, mine: &[PathBuf]) -> Option<String> {
    let mut files = vec![repo_lock_file(repo, spec)];
    files.extend(checkout_lock_files(repo, spec));
    for f in files {
        if mine.contains(&f) || f.symlink_metadata().is_err() {
            continue;
        }
        if held(&f) {
            let holder = LockedFile::probe(&f).ok().flatten();
            let pid = holder.as_ref().and_then(|h| h.pid);
            let note = holder.and_then(|h| h.note);
            return Some(match (pid, note) {
                (Some(pid), Some(note)) => format!("pid {pid}: {note}"),
                (Some(pid), None) => format!("pid {pid}, lock `{}`", f.display()),
                (None, _) => format!("lock `{}`", f.display()),
            });
        }
    }
    None
}

/// Is the lock on `path` held by someone (an `flock` we cannot take at once)?
fn held(path: &Path) -> bool {
    let Ok(file) = crate::fs::OpenOptions::new().read(true).open(path) else {
        return false;
    };
    match file.file().try_lock_shared() {
        Ok(()) => {
            let _ = file.file().unlock();
            false
        }
        Err(_) => true,
    }
}

/// The pid in qw's lock reason (`qw: workflow <spec> task <id> (pid <n>)`).
pub(crate) fn reason_pid(reason: &str) -> Option<i32> {
    let rest = reason.rsplit_once("(pid ")?.1;
    rest.strip_suffix(')')?.trim().parse().ok()
}

/// The qw process that made worktree `w` (the pid of its `qw:` lock reason), when it is
/// still alive: the same process, not a later one given the same pid (it started before
/// the lock reason was written). Never this process.
pub(crate) fn maker_alive(w: &ListedWorktree) -> Option<i32> {
    let pid = w
        .locked
        .as_deref()
        .filter(|r| is_qw_reason(r))
        .and_then(reason_pid)?;
    if pid <= 1 || i64::from(pid) == i64::from(std::process::id()) {
        return None;
    }
    let written = w
        .admin
        .as_ref()
        .and_then(|a| a.join("locked").symlink_metadata().ok())
        .and_then(|m| m.modified().ok());
    alive_since(pid, written).then_some(pid)
}

/// Is `pid` alive, started no later than `before` (give or take two seconds)?
#[cfg(target_os = "linux")]
fn alive_since(pid: i32, before: Option<std::time::SystemTime>) -> bool {
    let Some(start_ticks) = crate::exec::procs::start_time_of(pid) else {
        return false;
    };
    let Some(before) = before else {
        return true;
    };
    // Seconds since boot now, and when the process started (USER_HZ is 100 on Linux).
    #[allow(clippy::disallowed_methods)] // a /proc file: no path in errors needed
    let uptime = std::fs::read_to_string("/proc/uptime");
    let Some(uptime) = uptime
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
    else {
        return true;
    };
    #[allow(clippy::cast_precision_loss)]
    let age = uptime - start_ticks as f64 / 100.0;
    let started = std::time::SystemTime::now()
        .checked_sub(std::time::Duration::from_secs_f64(age.max(0.0)))
        .unwrap_or(std::time::UNIX_EPOCH);
    started <= before + std::time::Duration::from_secs(2)
}

#[cfg(not(target_os = "linux"))]
fn alive_since(pid: i32, _before: Option<std::time::SystemTime>) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// A process still running in a task worktree: started by qw for that task (its
/// `QW_WORKTREE` names the worktree), with the project it was started for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Agent {
    /// Its pid.
    pub pid: i32,
    /// Its `QW_PROJECT`, if set.
    pub project: Option<String>,
}

/// The live processes whose `QW_WORKTREE` is `path` (the agent of the worktree's task
/// and what it started), never this process nor its ancestors.
#[cfg(target_os = "linux")]
pub(crate) fn agents_in(path: &Path) -> Vec<Agent> {
    use crate::exec::procs;
    let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let protected = procs::ancestors_of(me);
    let mut out = Vec::new();
    for pid in procs::pids() {
        if protected.contains(&pid) {
            continue;
        }
        let Some(env) = procs::read_environ(pid) else {
            continue;
        };
        let Some(wt) = procs::environ_var(&env, "QW_WORKTREE") else {
            continue;
        };
        let wt = Path::new(wt);
        let same = wt == path
            || wt == canon
            || wt
                .canonicalize()
                .is_ok_and(|c| c == canon || c.as_path() == path);
        if !same || !procs::read_stat(pid).is_some_and(|s| s.alive()) {
            continue;
        }
        let project = procs::environ_var(&env, crate::exec::cookie::PROJECT_VAR).map(str::to_owned);
        out.push(Agent { pid, project });
    }
    out
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn agents_in(_path: &Path) -> Vec<Agent> {
    Vec::new()
}

/// End the agents a killed qw left running in `paths` as `workflow-continue` does (the
/// sweep of orphans, for each project they were started for): for each path, how many
/// were found, and the pids still alive after (processes whose owner lives: no orphans).
pub(crate) fn end_orphaned_agents(paths: &[&Path]) -> Vec<(usize, Vec<i32>)> {
    let found: Vec<Vec<Agent>> = paths.iter().map(|p| agents_in(p)).collect();
    let mut projects: Vec<String> = found
        .iter()
        .flatten()
        .filter_map(|a| a.project.clone())
        .collect();
    projects.sort();
    projects.dedup();
    #[cfg(target_os = "linux")]
    for p in &projects {
        let _ = crate::exec::sweep::sweep(Some(Path::new(p)), std::time::Duration::from_secs(3));
    }
    paths
        .iter()
        .zip(found)
        .map(|(p, f)| (f.len(), agents_in(p).into_iter().map(|a| a.pid).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_the_pid() {
        assert_eq!(
            reason_pid("qw: workflow demo task 1 (pid 3322)"),
            Some(3322)
        );
        assert_eq!(reason_pid("qw: workflow a b task 2.1 (pid 7)"), Some(7));
        assert_eq!(reason_pid("qw: held"), None);
        assert_eq!(reason_pid("qw: workflow demo task 1 (pid x)"), None);
    }
}
