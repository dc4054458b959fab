//! Which task branches qw itself left where they are (rev1 L2).
//!
//! A task branch `qw/<spec>/<id>` holding commits the target lacks is resumed by the
//! task's next run as "an earlier run's" work. But anything can make such a branch: an
//! agent of another task running `git branch qw/demo/2` (or `update-ref`, or `branch
//! -f` of an earlier run's branch) would have its commits merged under task 2's name,
//! unchecked. So qw records the tip it leaves on each task branch, in a file of its own,
//! `<git-common-dir>/qw-left/<spec>/<id>` (written whenever qw points the branch: at
//! creation, at every save, and when the task's worktree was deleted under it — its
//! commits were the task's; removed when qw deletes the branch). When a task starts and no
//! worktree of qw's holds its branch, a tip that is not the recorded one was put there
//! by someone else ([`set_aside_foreign`]): its commits are kept on
//! `qw/<spec>/<id>@<sha7>` (never merged by qw, never deleted by it), said in a note,
//! and the task starts from qw's own last tip, or from the target.
//!
//! Must not: decide anything about branches of other specs or other names, or delete a
//! commit (a foreign tip is kept before the branch is moved).

use super::{Repo, Result, git, parse_branch, quote, salvage};

/// The file holding the tip qw left on `branch` (`qw/<spec>/<id>`):
/// `<common>/qw-left/<spec>/<id>`.
fn record_file(repo: &Repo, branch: &str) -> std::path::PathBuf {
    let dir = repo.common_dir.join("qw-left");
    match parse_branch(branch) {
        Some((spec, task)) => dir.join(spec).join(task),
        None => dir.join(branch.replace('/', "%")),
    }
}

/// Record that qw left `branch` at its current tip (nothing when it does not exist).
pub(crate) fn record(repo: &Repo, branch: &str) -> Result<()> {
    if let Some(tip) = repo.commit_of(&format!("refs/heads/{branch}"))? {
        let file = record_file(repo, branch);
        crate::fs::create_dir_all(crate::fs::parent_dir(&file))?;
        crate::fs::write_durable(&file, format!("{tip}\n").as_bytes())?;
    }
    Ok(())
}

/// qw deleted `branch`: its record goes too (a failure only leaves a stale record,
/// which [`set_aside_foreign`] ignores when the branch is absent).
pub(crate) fn forget(repo: &Repo, branch: &str) {
    let _ = crate::fs::remove_file(record_file(repo, branch));
}

/// The tip qw left on `branch`, if recorded (read as a small regular file only).
fn left(repo: &Repo, branch: &str) -> Result<Option<String>> {
    let Ok(text) = crate::fs::read_regular_text(&record_file(repo, branch), 128) else {
        return Ok(None);
    };
    let sha = text.trim();
    if sha.is_empty() || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    repo.commit_of(sha)
}

/// Before task `task` starts on `branch` (no worktree of qw's holds it, the repository
/// lock is held; `target` is the commit it starts from, `target_name` its branch): when the branch is not where qw left it and holds commits `target`
/// lacks, keep them on `<branch>@<sha7>`, put the branch back at qw's own last tip when
/// that held unmerged work (else remove it, so the task starts from `target`), and
/// return the line saying so. `None` when the branch is qw's (or absent, or holds
/// nothing to merge).
pub(crate) fn set_aside_foreign(
    repo: &Repo,
    branch: &str,
    task: &str,
    target: &str,
    target_name: &str,
) -> Result<Option<String>> {
    let Some(tip) = repo.commit_of(&format!("refs/heads/{branch}"))? else {
        forget(repo, branch);
        return Ok(None);
    };
    let ours = left(repo, branch)?;
    if ours.as_deref() == Some(tip.as_str()) {
        return Ok(None);
    }
    let foreign = repo.unmerged_commits(&tip, target)?;
    let ours = ours.filter(|c| repo.unmerged_commits(c, target).unwrap_or(0) > 0);
    if foreign == 0 {
        // Nothing the target lacks: the task starts from the target as usual (or from
        // qw's own unmerged tip, put back below).
        if let Some(o) = &ours {
            git(
                &repo.top,
                &["update-ref", &format!("refs/heads/{branch}"), o, &tip],
            )?;
        }
        return Ok(None);
    }
    let kept = salvage::keep_branch(repo, branch, &tip)?;
    let then = match &ours {
        Some(o) => {
            git(
                &repo.top,
                &["update-ref", &format!("refs/heads/{branch}"), o, &tip],
            )?;
            format!(
                "`{branch}` is back where qw left it ({}) and task {task} resumes from there",
                super::short(o)
            )
        }
        None => {
            git(
                &repo.top,
                &["update-ref", "-d", &format!("refs/heads/{branch}"), &tip],
            )?;
            format!("task {task} starts from `{target_name}`")
        }
    };
    let who = if record_file(repo, branch).symlink_metadata().is_ok() {
        "moved since qw left it"
    } else {
        "made by someone other than qw (another task's agent?)"
    };
    Ok(Some(format!(
        "branch `{branch}` was {who}: its {foreign} commit(s) not on `{target_name}` (up to {}) are not task {task}'s work as far as qw can tell, so they are not merged: they are kept on branch `{kept}` (`git merge {}` takes them); {then}",
        super::short(&tip),
        shell_words::quote(&kept)
    )))
}

/// Why task `task` cannot start when its `branch` is checked out in `w`, a worktree qw
/// did not make (rev1 L3), with the command that frees the branch and keeps everything
/// there: `git -C <it> switch --detach` (same commit, same files, its commits stay on
/// the branch), or, when its directory is gone, `git worktree prune` (after `unlock`).
pub(crate) fn held_elsewhere(
    w: &super::ListedWorktree,
    branch: &str,
    task: &str,
    spec: &str,
) -> String {
    let path = w.path.to_string_lossy();
    let fix = if w.path.is_dir() {
        format!(
            "`git -C {} switch --detach` frees it (that worktree stays, on the same commit with the same files; its commits stay on `{branch}`)",
            quote(&path)
        )
    } else if w.locked.is_some() {
        format!(
            "its directory is gone: `git worktree unlock {}` then `git worktree prune` forget it",
            quote(&path)
        )
    } else {
        "its directory is gone: `git worktree prune` forgets it".to_owned()
    };
    format!(
        "task {task} was not started: its branch `{branch}` is checked out in the worktree `{path}`, which qw did not make (an agent's `git worktree add`, or yours), and qw never takes a branch from a worktree it did not make; {fix}, then run `qw workflow-continue {spec}` (commits on the branch that qw did not leave there are then kept apart, not merged)"
    )
}
