//! Who made the commits a moved target branch gained: the main worktree's own git (a
//! commit, a merge or a cherry-pick made there — the user's, or qw's own merge), or a
//! task of the run (its worktree's HEAD reflog, its branch's reflog).
//!
//! [`super::target`] asks it which new commits of the target are a task's: a commit the
//! user made on the target is not a task's because a task later merged the target or
//! rebased onto it (an ordinary sync), and a task's commit is a task's even when the
//! user committed on top of it. It only reads reflogs and history, never writes; a
//! reflog that is gone or turned off makes nothing anyone's, and the caller falls back
//! on history alone.

use std::collections::BTreeSet;
use std::path::Path;

use super::{Repo, Result, git, git_output, tree};

/// Does a reflog message say the commit was made there (not only visited: a
/// checkout, a reset, a fast-forward)?
pub(crate) fn made(message: &str) -> bool {
    let m = message.trim_start();
    ["commit", "cherry-pick", "revert", "am:", "qw:"]
        .iter()
        .any(|p| m.starts_with(p))
        || m.contains("Merge made")
        || [
            "(pick)",
            "(squash)",
            "(fixup)",
            "(reword)",
            "(edit)",
            "(continue)",
        ]
        .iter()
        .any(|p| m.contains(p))
}

/// The moves of the main worktree's HEAD, oldest first: `(commit, message)`.
pub(crate) fn main_log(repo: &Repo) -> Vec<(String, String)> {
    tree::reflog_entries(&repo.git_dir)
}

/// The commits of `was..now`: what the target gained (at most 100 000; a range larger
/// than that is read as that many, newest first).
pub(crate) fn gained(repo: &Repo, was: &str, now: &str) -> Result<BTreeSet<String>> {
    let range = format!("{was}..{now}");
    Ok(git(&repo.top, &["rev-list", "--max-count=100000", &range])?
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// The commits a task made: its branch's reflog (either ref backend, through git) and,
/// while it runs, its worktree's HEAD reflog (`admin` is its git dir).
pub(crate) fn made_by_task(repo: &Repo, branch: &str, admin: Option<&Path>) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = admin
        .map(tree::reflog_entries)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, m)| made(m))
        .map(|(c, _)| c)
        .collect();
    let r = format!("refs/heads/{branch}");
    if let Ok(o) = git_output(
        &repo.top,
        ["reflog", "show", "--format=%H%x09%gs", &r, "--"],
        &[],
    ) && o.status.success()
    {
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if let Some((c, m)) = line.split_once('\t')
                && made(m)
            {
                out.insert(c.to_owned());
            }
        }
    }
    out
}

/// Does `tip` (a task's) hold commits of `gained` that are the task's: made by the task
/// (`by_task`) and not by the main worktree (`by_main`), or held by `tip` apart from
/// every commit the main worktree made (so not merely the target's own history, which
/// the task merged or rebased onto)? A commit the task made but its branch does not hold
/// (a side branch of its agent's) is not counted here.
pub(crate) fn brings(
    repo: &Repo,
    tip: &str,
    was: &str,
    gained: &BTreeSet<String>,
    by_main: &BTreeSet<String>,
    by_task: &BTreeSet<String>,
) -> Result<bool> {
    let held: BTreeSet<String> = git(&repo.top, &["rev-list", tip, "--not", was])?
        .split_whitespace()
        .filter(|c| gained.contains(*c))
        .map(str::to_owned)
        .collect();
    if held
        .iter()
        .any(|c| by_task.contains(c) && !by_main.contains(c))
    {
        return Ok(true);
    }
    if by_main.is_empty() {
        return Ok(!held.is_empty());
    }
    // `tip`'s commits that neither `was` nor a commit the main worktree made holds.
    let mut args: Vec<&str> = vec!["rev-list", tip, "--not", was];
    args.extend(by_main.iter().map(String::as_str));
    let apart = git(&repo.top, &args)?;
    Ok(apart.split_whitespace().any(|c| gained.contains(c)))
}

/// The paths of `paths` where a commit range `a..b` adds a line git calls a leftover
/// conflict marker (`git diff --check`); whitespace errors do not count.
pub(crate) fn conflict_markers(
    repo: &Repo,
    a: &str,
    b: &str,
    paths: &BTreeSet<String>,
) -> Result<BTreeSet<String>> {
    if paths.is_empty() {
        return Ok(BTreeSet::new());
    }
    // No pathspec (globs, argv length): the whole diff, then only those paths.
    let out = git_output(
        &repo.top,
        [
            "-c",
            "core.quotePath=false",
            "diff",
            "--check",
            "--no-renames",
            "--no-color",
            a,
            b,
            "--",
        ],
        &[],
    )?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": leftover conflict marker"))
        .filter_map(|l| l.rsplit_once(':').map(|(p, _)| p))
        .filter(|p| paths.contains(*p))
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_tells_new_commits_from_visits() {
        for m in [
            "commit: f1",
            "commit (amend): x",
            "commit (merge): m",
            "rebase (pick): f1",
            "cherry-pick: y",
            "merge qw/demo/2: Merge made by the 'ort' strategy.",
            "pull: Merge made by the 'ort' strategy.",
        ] {
            assert!(made(m), "{m}");
        }
        for m in [
            "checkout: moving from a to b",
            "reset: moving to HEAD~1",
            "merge qw/demo/2: Fast-forward",
            "pull: Fast-forward",
            "",
        ] {
            assert!(!made(m), "{m}");
        }
    }
}
