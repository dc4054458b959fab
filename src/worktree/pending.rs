//! "Saved, merge pending": a task whose agent and `_Verify:_` passed and whose result
//! passed every check of qw's is saved on its branch; only its merge into the target is
//! missing. That is recorded before qw merges, in a file of its own,
//! `<git-common-dir>/qw-pending/<spec>/<id>` (lines `tip <commit>`, `branch <name>`,
//! `subject <the merge's first message line>`), so that whatever stops the merge — qw
//! killed before, during or after it, the main worktree busy (a merge or rebase qw did
//! not start, HEAD on another branch, `index.lock`) past the wait, the user's own
//! uncommitted edit in the way, a signal — the next `workflow-continue` only merges the
//! branch and never runs the task's agent again (rev5b F5, F6, F10, F12, F19):
//!
//! - the tip is in the target already (qw was killed after its merge, before recording
//!   it): the task is recorded completed, said in one line;
//! - the main worktree is in the middle of a merge of the tip whose `MERGE_MSG` starts
//!   with the recorded subject (qw was killed during its own conflicting merge; a merge
//!   the user starts by hand, `git merge <branch>`, has git's own message): when the
//!   state vouches for the record and the merge is exactly as git left it, qw aborts
//!   that merge itself, under the repository lock (so no live qw is merging), and merges
//!   the branch again — never a merge it did not start (issue 14 item 3), never one the
//!   user has changed since (a resolution: left, and the start refused saying so);
//! - otherwise the task is merged without its agent.
//!
//! A record counts only while the task branch is still at the recorded tip (a record
//! left behind after `workflow-reset --hard`, or by a branch qw no longer holds, is
//! ignored and removed). It is removed once the task is recorded completed, and when
//! the merge conflicts (then the branch waits for the user's merge by hand, as before).
//!
//! Must not: decide anything about a branch whose tip is not the recorded one, or abort
//! a merge whose `MERGE_HEAD`/`MERGE_MSG` are not the ones qw recorded.

use std::path::{Path, PathBuf};

use super::{Repo, Result, git};

/// One record: what qw was merging (or will merge) for a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    /// The spec.
    pub(crate) spec: String,
    /// The task id.
    pub(crate) task_id: String,
    /// The task branch (`qw/<spec>/<id>`).
    pub(crate) branch: String,
    /// The saved tip qw merges.
    pub(crate) tip: String,
    /// The first line of qw's merge message (tells qw's own merge from the user's).
    pub(crate) subject: String,
}

fn dir(repo: &Repo, spec: &str) -> PathBuf {
    repo.common_dir.join("qw-pending").join(spec)
}

/// A task id usable as a file name (ids are `1`, `2.3`; anything else is not recorded).
fn file_of(repo: &Repo, spec: &str, task_id: &str) -> Option<PathBuf> {
    let ok = !task_id.is_empty()
        && !task_id.starts_with('.')
        && task_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    ok.then(|| dir(repo, spec).join(task_id))
}

/// Record that `branch` at `tip` is saved and about to be merged (before qw's merge).
pub(crate) fn write(repo: &Repo, p: &Pending) -> Result<()> {
    let Some(file) = file_of(repo, &p.spec, &p.task_id) else {
        return Ok(());
    };
    crate::fs::create_dir_all(crate::fs::parent_dir(&file))?;
    let subject = p.subject.lines().next().unwrap_or_default();
    crate::fs::write_durable(
        &file,
        format!("tip {}\nbranch {}\nsubject {subject}\n", p.tip, p.branch).as_bytes(),
    )?;
    Ok(())
}

/// Forget the record of `task_id` (recorded completed, or its merge conflicted).
pub(crate) fn remove(repo: &Repo, spec: &str, task_id: &str) {
    if let Some(file) = file_of(repo, spec, task_id) {
        let _ = crate::fs::remove_file(file);
    }
}

fn parse(spec: &str, task_id: &str, text: &str) -> Option<Pending> {
    let mut tip = None;
    let mut branch = None;
    let mut subject = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("tip ") {
            tip = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("branch ") {
            branch = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("subject ") {
            subject = v.to_owned();
        }
    }
    let tip = tip.filter(|t| t.len() >= 40 && t.chars().all(|c| c.is_ascii_hexdigit()))?;
    Some(Pending {
        spec: spec.to_owned(),
        task_id: task_id.to_owned(),
        branch: branch?,
        tip,
        subject,
    })
}

fn read_dir_of(repo: &Repo, spec: &str, d: &Path) -> Vec<Pending> {
    let Ok(entries) = crate::fs::read_dir(d) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        let Some(file) = file_of(repo, spec, &id) else {
            continue;
        };
        let Ok(text) = crate::fs::read_regular_text(&file, 64 << 10) else {
            continue;
        };
        if let Some(p) = parse(spec, &id, &text) {
            out.push(p);
        }
    }
    out.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    out
}

/// The records of `spec` whose branch is still at the recorded tip; the others are
/// removed (they no longer say anything).
pub(crate) fn live(repo: &Repo, spec: &str) -> Vec<Pending> {
    let mut out = Vec::new();
    for p in read_dir_of(repo, spec, &dir(repo, spec)) {
        let at = repo
            .commit_of(&format!("refs/heads/{}", p.branch))
            .ok()
            .flatten();
        if at.as_deref() == Some(p.tip.as_str()) {
            out.push(p);
        } else {
            remove(repo, spec, &p.task_id);
        }
    }
    out
}

/// Every spec's records (for the merge a killed qw left in the main worktree).
fn all(repo: &Repo) -> Vec<Pending> {
    let root = repo.common_dir.join("qw-pending");
    let Ok(entries) = crate::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let spec = e.file_name().to_string_lossy().into_owned();
        out.extend(read_dir_of(repo, &spec, &e.path()));
    }
    out
}

/// The merge in progress in the main worktree, when it is qw's own — a killed qw's, since
/// the caller holds the repository lock every qw merges under: its `MERGE_HEAD` is a
/// record's tip (the branch still there) and its `MERGE_MSG` starts with the record's
/// subject. A merge the user started (even of the same branch) has git's own message.
pub(crate) fn own_half_merge(repo: &Repo) -> Option<Pending> {
    let head = crate::fs::read_to_string(repo.git_dir.join("MERGE_HEAD")).ok()?;
    let head = head.lines().next()?.trim().to_owned();
    let msg = crate::fs::read_regular_text(&repo.git_dir.join("MERGE_MSG"), 64 << 10).ok()?;
    let first = msg.lines().next().unwrap_or_default();
    all(repo).into_iter().find(|p| {
        // The record lives where agents can write: only qw's own subject for that very
        // task makes it qw's merge (a record naming git's "Merge branch …" would let an
        // agent have qw abort the user's merge by hand: rev7 R4).
        let ours = format!("qw({}): merge task {} ", p.spec, p.task_id);
        p.tip == head
            && p.subject.starts_with(&ours)
            && first == p.subject
            && repo
                .commit_of(&format!("refs/heads/{}", p.branch))
                .ok()
                .flatten()
                .as_deref()
                == Some(p.tip.as_str())
    })
}

/// What [`abort_own_half_merge`] did with the merge a killed qw left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HalfMerge {
    /// Aborted (it was exactly as git left it): the line saying so.
    Aborted(String),
    /// Left as it is: changed since git left it (the user's resolution, staged or not),
    /// so aborting it would throw that away. The line saying what to do.
    Kept(String),
}

/// Abort qw's own half-done merge (see [`own_half_merge`]; the repository lock is held)
/// when the state vouches for its record (`vouched`: qw wrote it, rev8b F5) and it is
/// still exactly as git left it ([`as_git_left`]); a merge changed since is left alone
/// and said ([`HalfMerge::Kept`]): aborting it would discard the user's resolution.
/// `None` when there is no such merge, or the state does not vouch for its record (then
/// it is not qw's to abort).
pub(crate) fn abort_own_half_merge(
    repo: &Repo,
    vouched: &dyn Fn(&Pending) -> bool,
) -> Result<Option<HalfMerge>> {
    let Some(p) = own_half_merge(repo) else {
        return Ok(None);
    };
    if !vouched(&p) {
        return Ok(None);
    }
    if !as_git_left(repo) {
        return Ok(Some(HalfMerge::Kept(format!(
            "the main worktree `{}` holds the merge of task branch `{}` (task {} of `{}`) that a qw stopped in the middle of it left, changed since git left it (a resolution, staged or not): qw leaves it as it is; commit your resolution (`git commit`), or undo the merge yourself (`git merge --abort`), then run `{}`",
            repo.top.display(),
            p.branch,
            p.task_id,
            p.spec,
            super::shell::continue_cmd(&p.spec)
        ))));
    }
    git(&repo.top, &["merge", "--abort"])?;
    Ok(Some(HalfMerge::Aborted(format!(
        "qw was stopped in the middle of its own merge of task branch `{}` (task {} of `{}`) into the main worktree `{}`; undid that merge, untouched since (`git merge --abort`): the main worktree is as it was before it, and the task's saved work is kept on its branch and merged again (its agent does not run again)",
        p.branch,
        p.task_id,
        p.spec,
        repo.top.display()
    ))))
}

/// Is the merge in progress in the main worktree exactly as git left it — nothing the
/// user did since would be lost by `git merge --abort`? git writes the merge's result,
/// conflict markers included, as the tree `AUTO_MERGE`; the merge is untouched when
/// paths are still unmerged, the files the merge wrote equal that tree, and the index
/// differs from it only in those unmerged paths (a resolution `git add`ed, another path staged, a file
/// edited: changed). No `AUTO_MERGE` (an older git) or a git that cannot say: changed —
/// the safe side, the merge is left to the user.
fn as_git_left(repo: &Repo) -> bool {
    let top = &repo.top;
    let paths = |args: &[&str]| -> Option<std::collections::BTreeSet<String>> {
        git(top, args).ok().map(|out| {
            out.split('\0')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        })
    };
    if git(
        top,
        &["rev-parse", "--verify", "--quiet", "AUTO_MERGE^{tree}"],
    )
    .is_err()
    {
        return false;
    }
    let Some(unmerged) = paths(&[
        "diff",
        "--no-ext-diff",
        "--name-only",
        "--diff-filter=U",
        "-z",
    ]) else {
        return false;
    };
    // The paths the merge wrote (a file it did not touch may hold your edit, or qw's
    // tick in tasks.md: `git merge --abort` keeps those).
    let Some(merged) = paths(&[
        "diff",
        "--no-ext-diff",
        "--name-only",
        "-z",
        "HEAD",
        "AUTO_MERGE",
        "--",
    ]) else {
        return false;
    };
    let files = paths(&[
        "diff",
        "--no-ext-diff",
        "--name-only",
        "-z",
        "AUTO_MERGE",
        "--",
    ])
    .map(|f| {
        f.into_iter()
            .filter(|p| merged.contains(p) || unmerged.contains(p))
            .collect::<std::collections::BTreeSet<_>>()
    });
    let index = paths(&[
        "diff",
        "--no-ext-diff",
        "--cached",
        "--name-only",
        "-z",
        "AUTO_MERGE",
        "--",
    ]);
    match (files, index) {
        (Some(files), Some(index)) => {
            !unmerged.is_empty() && files.is_empty() && index.is_subset(&unmerged)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_record_and_refuses_a_short_tip() {
        let tip = "a".repeat(40);
        let p = parse(
            "demo",
            "2",
            &format!("tip {tip}\nbranch qw/demo/2\nsubject qw(demo): merge task 2 T (succeeded)\n"),
        )
        .unwrap();
        assert_eq!(p.branch, "qw/demo/2");
        assert_eq!(p.subject, "qw(demo): merge task 2 T (succeeded)");
        assert!(parse("demo", "2", "tip abc\nbranch qw/demo/2\n").is_none());
        assert!(parse("demo", "2", &format!("tip {tip}\n")).is_none());
    }
}
