//! What the target gained while a task ran, and a result that would take it away.
//!
//! A task's result normally meets the target at the commit the task started from, and a
//! three-way merge keeps whatever the target gained since (a sibling's merge). A result
//! that holds the target's newer commits in its history without their files — an
//! agent's squash, `git reset --soft main && git commit`, after a sibling merged; a
//! `git merge main` followed by a revert — meets the target higher up, and its merge
//! deletes or reverts the sibling's files, however the worktree's reflog reads
//! (`cross::unheld_deletions` counts every commit HEAD was put on as held, also by a
//! `reset --soft`). This looks at the files only: of the paths the target changed
//! between where the task started and now, the ones the merge would delete or put back
//! as they were when the task started.

use std::collections::BTreeMap;

use super::tree::{self, Tree};
use super::{Repo, Result, git, git_output};

/// A path the target gained since the task started that merging `result` would undo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Undone {
    /// The path, from the repository's top.
    pub(crate) path: String,
    /// Deleted (else put back as it was when the task started).
    pub(crate) deleted: bool,
    /// Brought back: the target deleted it while the task ran.
    pub(crate) revived: bool,
    /// The subject of the newest target commit that changed it (`qw(demo): merge task 1 …`).
    pub(crate) by: Option<String>,
}

/// The empty file's blob: a path deleted while an empty file is added elsewhere is no
/// rename (`__init__.py`).
const EMPTY_BLOB: &str = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391";

/// `path → (old blob, new blob, status letter)` of `git diff --raw -z a b`; with
/// `renames`, a path renamed (not an empty file) is keyed by its old path with `R`.
fn raw_diff(
    repo: &Repo,
    a: &str,
    b: &str,
    renames: bool,
) -> Result<BTreeMap<String, (String, String, char)>> {
    let text = git(
        &repo.top,
        &[
            "diff",
            "--raw",
            "-z",
            if renames {
                "--find-renames"
            } else {
                "--no-renames"
            },
            "--no-abbrev",
            a,
            b,
            "--",
        ],
    )?;
    let mut out = BTreeMap::new();
    let mut fields = text.split('\0');
    while let Some(meta) = fields.next() {
        let Some(path) = fields.next() else { break };
        if meta.ends_with(|c: char| c.is_ascii_digit())
            && (meta.contains(" R") || meta.contains(" C"))
        {
            // `R<score>`/`C<score>`: the new path follows.
            let _new = fields.next();
            let words: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
            if let [_, _, old, new, status] = words.as_slice() {
                let letter = if *old == EMPTY_BLOB { 'D' } else { 'R' };
                if status.starts_with('R') {
                    out.insert(
                        path.to_owned(),
                        ((*old).to_owned(), (*new).to_owned(), letter),
                    );
                }
            }
            continue;
        }
        // `:<mode> <mode> <old> <new> <status>`
        let words: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
        if let [_, _, old, new, status] = words.as_slice() {
            out.insert(
                path.to_owned(),
                (
                    (*old).to_owned(),
                    (*new).to_owned(),
                    status.chars().next().unwrap_or('M'),
                ),
            );
        }
    }
    Ok(out)
}

/// The paths the target gained since the worktree `t` started (from the merge base of
/// its first HEAD reflog entry and `target`) that a merge of `result` into `target`
/// would delete or put back as they were then; the spec folder `spec_rel` left out.
/// Empty when the target did not move since, when the merge would conflict (that is
/// said as a conflict), or when the worktree has no reflog to say where it started.
pub(crate) fn undone(
    repo: &Repo,
    t: &Tree<'_>,
    result: &str,
    target: &str,
    spec_rel: &str,
) -> Result<Vec<Undone>> {
    let Some(start) = tree::reflog(t.admin())
        .into_iter()
        .next()
        .filter(|c| tree::is_commit(repo, c))
    else {
        return Ok(Vec::new());
    };
    let target_tip = git(&repo.top, &["rev-parse", "--verify", "-q", target])?
        .trim()
        .to_owned();
    let out = git_output(&repo.top, ["merge-base", start.as_str(), &target_tip], &[])?;
    let base = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || base.is_empty() || base == target_tip {
        return Ok(Vec::new());
    }
    let gained = raw_diff(repo, &base, &target_tip, false)?;
    let spec_dir = format!("{spec_rel}/");
    let gained: BTreeMap<String, (String, String, char)> = gained
        .into_iter()
        // Deletions too: a result that brings back a file the target deleted meanwhile
        // (a sibling's `git rm`) undoes it as much (rev7 R10).
        .filter(|(p, _)| spec_rel.is_empty() || (p != spec_rel && !p.starts_with(&spec_dir)))
        .collect();
    if gained.is_empty() {
        return Ok(Vec::new());
    }
    // What the merge would make (a conflict is the merge step's to tell).
    let out = git_output(
        &repo.top,
        [
            "merge-tree",
            "--write-tree",
            "--no-messages",
            &target_tip,
            result,
        ],
        &[],
    )?;
    if !out.status.success() {
        return Ok(Vec::new());
    }
    let merged = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if merged.is_empty() {
        return Ok(Vec::new());
    }
    let brought = raw_diff(repo, &target_tip, &merged, true)?;
    let mut undone = Vec::new();
    for (path, (_, new, status)) in &brought {
        let Some((was, _, gained_status)) = gained.get(path) else {
            continue;
        };
        if *gained_status == 'D' && *status != 'A' {
            continue;
        }
        // Moved by a rename (a directory renamed, git's rename detection): not undone.
        if *status == 'R' {
            continue;
        }
        let deleted = *status == 'D';
        let reverted = !deleted && new == was && !was.bytes().all(|b| b == b'0');
        if deleted || reverted {
            let by = git(
                &repo.top,
                &[
                    "log",
                    "-1",
                    "--first-parent",
                    "--format=%s",
                    &format!("{base}..{target_tip}"),
                    "--",
                    path,
                ],
            )
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
            undone.push(Undone {
                path: path.clone(),
                deleted,
                revived: *gained_status == 'D',
                by,
            });
        }
    }
    Ok(undone)
}

/// The line for a result that would undo what the target gained: not merged, kept on its
/// branch (with those paths put back as the target has them, `put_back`), and the way on
/// ([`super::cross::refused_line`]).
pub(crate) fn undone_line(
    t: &Tree<'_>,
    undone: &[Undone],
    result: &str,
    put_back: Option<&str>,
    target: &str,
    spec: &str,
) -> String {
    let named: Vec<String> = undone
        .iter()
        .map(|u| {
            format!(
                "`{}` ({}{})",
                u.path,
                if u.deleted {
                    "deleted"
                } else if u.revived {
                    "brought back after it was deleted"
                } else {
                    "put back as it was when the task started"
                },
                u.by.as_deref()
                    .map(|s| format!(", changed on `{target}` by \"{s}\""))
                    .unwrap_or_default()
            )
        })
        .collect();
    super::cross::refused_line(
        t,
        &format!(
            "would undo what `{target}` gained while it ran: {} (its history holds `{target}`'s newer commits without their files: a `git reset --soft {target}` and commit, a squash or a revert?), so it was not merged",
            named.join(", ")
        ),
        result,
        put_back.map(|commit| super::cross::PutBack {
            commit,
            paths: format!("as `{target}` has them"),
            so: "",
        }),
        target,
        spec,
    )
}

/// Put `paths` back as `target` has them (deleted where it lacks them), in a commit on
/// top of `result` that the task's branch and its worktree's HEAD, index and files move
/// to, so `qw workflow-continue` resumes from a branch whose merge undoes nothing of
/// the target's. Returns that commit.
pub(crate) fn put_back(
    repo: &Repo,
    t: &Tree<'_>,
    paths: &[String],
    result: &str,
    target: &str,
    message: &str,
) -> Result<String> {
    super::cross::commit_paths_on_top(
        repo,
        t,
        result,
        target,
        paths,
        super::cross::Missing::Remove,
        message,
        "qw: the task's result, with what the target gained put back",
    )
}
