//! Saving a task's work when its branch or its worktree was moved or deleted under it.
//!
//! - *A history of its own*: the agent deleted the task's branch and committed on a
//!   fresh root (`git update-ref -d refs/heads/qw/<spec>/<id>` then `git commit`,
//!   `git checkout --orphan`, a `git branch -D` of the branch once it was no longer
//!   checked out). What its worktree holds shares no commit with the target, so it
//!   cannot be merged: it is kept as it is on `qw/<spec>/<id>@<sha7>`, and the task's
//!   branch goes back to its last commit on the target's history with the worktree's
//!   files saved on top ([`own_history`]); the task then fails `workspace_error` naming
//!   both, and `qw workflow-continue` runs it again from its branch. The `@` branch is
//!   never deleted by qw (it holds commits no target has). Files the fresh history lacks
//!   are not deleted on the task's branch: a history that starts empty (`checkout
//!   --orphan` then `git rm -r .`) would otherwise delete every file of the target.
//! - *Objects pruned under qw* (a concurrent `git gc --prune=now`): the commit qw staged
//!   is not referenced until qw points the task's branch at it, so a prune can take it
//!   away. The save is tried once more on a missing-object error, reading the
//!   worktree's files again ([`missing_object`]).
//! - *A worktree moved by its agent* (`git worktree move`): found where its git dir says
//!   it is now ([`moved_to`]); told as moved, not deleted; its work is saved on its
//!   branch from there when the task ends.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::tree::{self, Staged, Tree};
use super::{Repo, Result, WorktreeError, git, git_error, git_output, parse_branch};

/// Is this the error of a git command that found an object missing (pruned by a
/// concurrent `git gc --prune=now` between qw's commands)?
pub(crate) fn missing_object(e: &WorktreeError) -> bool {
    let WorktreeError::Git { stderr, .. } = e else {
        return false;
    };
    [
        "nonexistent object",
        "is not a valid object",
        "not a valid object name",
        "bad object",
        "unable to read",
        "missing object",
        "not a valid branch point",
        "invalid object",
    ]
    .iter()
    .any(|p| stderr.contains(p))
}

/// `f()`, once more when it failed on a missing object.
pub(crate) fn retry_missing<T>(f: impl Fn() -> Result<T>) -> Result<T> {
    match f() {
        Err(e) if missing_object(&e) => f(),
        r => r,
    }
}

/// Where a task's worktree is now when its agent moved it (`git worktree move`): the
/// directory its git dir names, when that is not `path` and is a sound worktree of it.
pub(crate) fn moved_to(path: &Path, admin: &Path) -> Option<PathBuf> {
    // Never through a link in place of the git dir (rev9 N9).
    if tree::is_link(admin) {
        return None;
    }
    let text = crate::fs::read_to_string(admin.join("gitdir")).ok()?;
    let dotgit = PathBuf::from(text.trim());
    let dotgit = if dotgit.is_absolute() {
        dotgit
    } else {
        admin.join(dotgit)
    };
    let now = crate::fs::parent_dir(&dotgit);
    (!super::same_path(&now, path) && now.is_dir() && tree::sound(&now, admin)).then_some(now)
}

/// Where a task's worktree is: where its agent moved it, else where qw made it.
pub(crate) fn where_now(path: &Path, admin: &Path) -> PathBuf {
    moved_to(path, admin).unwrap_or_else(|| path.to_path_buf())
}

/// One line when the task's agent moved its worktree: where to, and where its work goes.
pub(crate) fn moved_line(path: &Path, admin: &Path, task: &str, branch: &str) -> Option<String> {
    let now = moved_to(path, admin)?;
    Some(format!(
        "the worktree `{}` of task {task} was moved to `{}` while the task ran (its agent's `git worktree move`?); its _Verify:_ and merge need it where qw made it, so the task is not counted as done: its work there is saved on branch `{branch}` when the task ends (the moved worktree is then removed), and `{}` goes on from that branch",
        path.display(),
        now.display(),
        super::shell::continue_of(branch)
    ))
}

/// `git worktree add` of `path` on `branch` (made or reset at `start` when given),
/// locked with `reason` from its creation (`--lock --reason`, git 2.31), so there is no
/// moment when it is in qw's folder unmarked and unlocked: such a worktree is not qw's
/// (see `leftovers::owner`). An older git that does not know `--reason` (usage error
/// 129) gets `add`, then `lock`.
pub(crate) fn add_locked(
    top: &Path,
    path: &str,
    branch: &str,
    start: Option<&str>,
    reason: &str,
) -> Result<()> {
    let place: Vec<&str> = match start {
        Some(start) => vec!["-B", branch, path, start],
        None => vec![path, branch],
    };
    let mut args = vec!["worktree", "add", "-q", "--lock", "--reason", reason];
    args.extend(&place);
    let out = git_output(top, &args, &[])?;
    if out.status.success() {
        return Ok(());
    }
    if out.status.code() != Some(129) {
        return Err(git_error(top, &args, &out));
    }
    let mut args = vec!["worktree", "add", "-q"];
    args.extend(&place);
    git(top, &args)?;
    git(top, &["worktree", "lock", "--reason", reason, path])?;
    Ok(())
}

/// When the staged commit shares no history with `base` (the agent deleted the task's
/// branch and committed on a fresh root): keep it on `<branch>@<sha7>`, and stage
/// instead the task's last commit on `base`'s history with the worktree's files on top
/// (none deleted), the worktree's index and missing files made to match it. Returns the
/// new staged commit and the line saying where everything is; `None` when the history
/// is shared (or there is nothing to compare). The repository lock is held.
pub(crate) fn own_history(
    repo: &Repo,
    t: &Tree<'_>,
    staged: &Staged,
    base: &str,
) -> Result<Option<(Staged, String)>> {
    let Some(fresh) = staged.commit.as_deref() else {
        return Ok(None);
    };
    let Some(target) = repo.commit_of(base)? else {
        return Ok(None);
    };
    if shares_history(repo, fresh, &target)? {
        return Ok(None);
    }
    let branch = t.branch();
    // The task's last commit on the target's history: its branch (when it still has
    // that history), else the newest such commit its worktree's HEAD visited.
    let mut parent = None;
    let tip = repo.commit_of(&format!("refs/heads/{branch}"))?;
    for c in tip
        .into_iter()
        .chain(tree::reflog(t.admin()).into_iter().rev())
    {
        if tree::is_commit(repo, &c) && shares_history(repo, &c, &target)? {
            parent = Some(c);
            break;
        }
    }
    let parent = parent.unwrap_or_else(|| target.clone());
    // Keep the fresh history first: after the task's branch moves, nothing else holds it.
    let kept = keep_branch(repo, branch, fresh)?;
    let task = parse_branch(branch).map_or(branch, |(_, task)| task);
    let message = format!(
        "qw: task {task} — the worktree's files, saved from a history of its own (kept on `{kept}`)"
    );
    let commit = overlay(repo, &parent, fresh, &message)?;
    // The worktree now stands on the new commit: its index holds it, and the files the
    // fresh history lacked are put back, so a later save commits no deletion.
    t.run(&["read-tree", &commit])?;
    let spec_rel = spec_of(repo, branch);
    if let Some(spec_rel) = &spec_rel {
        tree::hide_spec_files(t, spec_rel)?;
    }
    if t.path().is_dir() {
        let deleted = t.run(&["ls-files", "--deleted", "-z"])?;
        let mut missing = Vec::new();
        for p in deleted.split('\0').filter(|p| !p.is_empty()) {
            if spec_rel
                .as_deref()
                .is_none_or(|s| p != s && !p.starts_with(&format!("{s}/")))
            {
                missing.extend_from_slice(p.as_bytes());
                missing.push(0);
            }
        }
        if !missing.is_empty() {
            let pre = [
                OsStr::new("--git-dir"),
                t.admin().as_os_str(),
                OsStr::new("--work-tree"),
                t.path().as_os_str(),
            ];
            let args = ["checkout-index", "-f", "-z", "--stdin"];
            let out = feed(t.path(), &pre, &args, &[], &missing)?;
            if !out.status.success() {
                return Err(git_error(t.path(), &args, &out));
            }
        }
    }
    let line = format!(
        "task {task}'s branch `{branch}` was deleted or moved onto a history of its own while the task ran (it shares no commit with the target), so it cannot be merged: that history, with the worktree's files, is kept on branch `{kept}` ({}); `{branch}` is back at its last commit on the target's history ({}) with the worktree's files saved on it (none deleted); `{}` runs the task again from there (`git merge --allow-unrelated-histories {kept}` takes the other history as it is)",
        super::short(fresh),
        super::short(&parent),
        super::shell::continue_of(branch)
    );
    Ok(Some((
        Staged {
            commit: Some(commit),
            saved_changes: true,
            moved: staged.moved.clone(),
            left_out: staged.left_out.clone(),
        },
        line,
    )))
}

/// Do `a` and `b` have a commit in common?
fn shares_history(repo: &Repo, a: &str, b: &str) -> Result<bool> {
    let out = git_output(&repo.top, ["merge-base", a, b], &[])?;
    Ok(out.status.success() && !out.stdout.is_empty())
}

/// The spec folder of a task branch's spec (relative to the worktree's top).
fn spec_of(repo: &Repo, branch: &str) -> Option<String> {
    parse_branch(branch).map(|(spec, _)| repo.spec_rel(spec))
}

/// `<branch>@<sha7>` holding `commit` (made when missing; a longer id when that name is
/// taken by another commit), recorded as qw's ([`kept_by_qw`]).
pub(crate) fn keep_branch(repo: &Repo, branch: &str, commit: &str) -> Result<String> {
    for len in [7, 12, 40] {
        let name = format!("{branch}@{}", &commit[..commit.len().min(len)]);
        match repo.commit_of(&format!("refs/heads/{name}"))? {
            Some(c) if c == commit => {
                record_kept(repo, &name, commit);
                return Ok(name);
            }
            Some(_) => continue,
            None => {
                git(&repo.top, &["branch", &name, commit])?;
                record_kept(repo, &name, commit);
                return Ok(name);
            }
        }
    }
    Err(WorktreeError::InTheWay(PathBuf::from(format!(
        "refs/heads/{branch}@{commit}"
    ))))
}

/// A task branch a hard reset set aside ([`set_aside_spec_branches`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// The task branch (`qw/<spec>/<id>`), gone now (unless `kept` is `None`).
    pub branch: String,
    /// Where its work is now (`qw/<spec>/<id>@<sha7>`); `None` when it was left as it is.
    pub kept: Option<String>,
    /// One line saying so, and how to take or drop the work.
    pub line: String,
}

/// `workflow-reset --hard` threw `spec`'s tasks away (rev5b F3): a regenerated task with
/// the same id must not resume from the old attempt's branch and merge it. Each
/// `qw/<spec>/<id>` branch left (unmerged work: merged ones were pruned) is renamed to
/// `qw/<spec>/<id>@<sha7>` (recorded as qw's, never merged or deleted by qw), and every
/// `qw-left/<spec>/` record goes. A branch a worktree still has checked out is left as it
/// is and said; the spec's merge-pending records (`qw-pending/<spec>/`) go too. Run after
/// the spec's worktrees were pruned, the spec's workflow not running.
pub fn set_aside_spec_branches(repo: &Repo, spec: &str) -> Result<Vec<SetAside>> {
    let held: std::collections::BTreeSet<String> = repo
        .registered()?
        .into_iter()
        .filter_map(|w| w.branch)
        .collect();
    let mut out = Vec::new();
    let mut others = false;
    let main = super::leftovers::main_branch(repo);
    for b in repo.qw_branches()? {
        let Some((s, t)) = parse_branch(&b) else {
            continue;
        };
        if s != spec || t.contains('@') || t.starts_with("snapshot-") {
            continue;
        }
        let Some(tip) = repo.commit_of(&format!("refs/heads/{b}"))? else {
            continue;
        };
        // A branch a run in another checkout of the repository made (the same spec name
        // there): that run's, not this reset's (rev6b G12).
        if let Some((target, checkout)) = super::tied::recorded(repo, spec, t)
            .filter(|(_, c)| !super::tied::same_dir(c, &repo.top))
        {
            others = true;
            out.push(SetAside {
                line: format!(
                    "left branch `{b}` as it is: a run of `{spec}` onto `{target}` in the checkout `{}` made it; reset that run there (`qw -C {} workflow-reset {spec}`)",
                    checkout.display(),
                    super::quote(&checkout.to_string_lossy())
                ),
                branch: b,
                kept: None,
            });
            continue;
        }
        if held.contains(&b) {
            out.push(SetAside {
                line: format!(
                    "kept branch `{b}` as it is: a worktree has it checked out (`git worktree list` names it); a new task {t} of `{spec}` would resume from it — free it and rename it (`git branch -m {} {}`) to keep it apart",
                    super::quote(&b),
                    super::quote(&format!("{b}@{}", &tip[..7]))
                ),
                branch: b,
                kept: None,
            });
            continue;
        }
        // Moved off qw's own tip, which holds commits the target lacks (an agent's `git
        // branch -f <it> main`): that tip is the task's work, set aside with the moved
        // one's own commits, if any (rev6b G3) — never only the moved tip, whose
        // deletion would leave the task's work in no ref nor reflog.
        let target = super::leftovers::merge_target(repo, spec, t, main.as_deref());
        let unmerged =
            |c: &str| super::leftovers::unmerged_in(repo, c, target.as_deref()).unwrap_or(1) > 0;
        let own = super::owned::left_tip(repo, &b).filter(|o| *o != tip && unmerged(o));
        let mut kept = Vec::new();
        if let Some(o) = &own {
            kept.push(keep_branch(repo, &b, o)?);
        }
        let tip_adds = match &own {
            Some(o) => {
                git(
                    &repo.top,
                    &[
                        "rev-list",
                        "--count",
                        &tip,
                        "--not",
                        o,
                        target.as_deref().unwrap_or(o),
                    ],
                )?
                .trim()
                .parse::<u64>()
                .unwrap_or(1)
                    > 0
            }
            None => true,
        };
        if tip_adds {
            kept.push(keep_branch(repo, &b, &tip)?);
        }
        git(
            &repo.top,
            &["update-ref", "-d", &format!("refs/heads/{b}"), &tip],
        )?;
        super::owned::forget(repo, &b);
        super::tied::forget(repo, spec, t);
        let names = kept
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(" and ");
        let moved = match &own {
            Some(o) => format!(
                " (it had been moved off qw's tip {}, which holds the task's work: that tip is kept)",
                &o[..10.min(o.len())]
            ),
            None => String::new(),
        };
        let first = kept.first().cloned().unwrap_or_default();
        out.push(SetAside {
            line: format!(
                "set branch `{b}` aside as {names}{moved} (the hard reset threw its task away, so a new task {t} starts from the target, not from this work): merge it (`git merge {}`) if you want it, or delete it (`git branch -D {}`)",
                super::quote(&first),
                super::quote(&first)
            ),
            branch: b,
            kept: Some(first),
        });
    }
    if others {
        return Ok(out);
    }
    super::tied::forget_spec(repo, spec);
    // The spec's own records of its thrown-away tasks: `qw-left/` (their branches' tips)
    // and `qw-pending/` (a merge qw was stopped before or in). A pending record whose
    // branch was kept as it is (checked out in a worktree) would have the next run merge
    // that old work as a new task's, its agent never run. Not touched: the lock of the
    // spec's workflow (`qw-workflows/<spec>.lock`, a lock file is never deleted), the
    // notes of merges in the target's history (`qw-merges/`, still true), the user's
    // files put aside (`qw-planted/`, never deleted), the records of the branches just set
    // aside (`qw-kept/`).
    for kind in ["qw-left", "qw-pending"] {
        let records = repo.common_dir.join(kind).join(spec);
        if records.is_dir() {
            let _ = std::fs::remove_dir_all(&records);
        }
    }
    Ok(out)
}

/// The file recording that qw made the kept branch `name` (`<task branch>@<sha>`):
/// `<git-common-dir>/qw-kept/<spec>/<id>@<sha>`, holding its commit.
fn kept_file(repo: &Repo, name: &str) -> PathBuf {
    let dir = repo.common_dir.join("qw-kept");
    match parse_branch(name) {
        Some((spec, task)) => dir.join(spec).join(task),
        None => dir.join(name.replace('/', "%")),
    }
}

/// Record that qw made the kept branch `name` at `commit` (it names it in a note, and the
/// user's merge of it is theirs: see `origin::users`). A record that cannot be written
/// only leaves that merge to be refused as before.
fn record_kept(repo: &Repo, name: &str, commit: &str) {
    let file = kept_file(repo, name);
    let written = crate::fs::create_dir_all(crate::fs::parent_dir(&file))
        .and_then(|()| crate::fs::write_durable(&file, format!("{commit}\n").as_bytes()));
    if let Err(e) = written {
        tracing::debug!("could not record the kept branch `{name}`: {e}");
    }
}

/// Forget the records of kept branches ([`record_kept`]) of `spec` (of every spec when
/// `None`; never of a spec `skip` names: a running workflow reads them) whose branch is
/// gone or merged into its target (`target(spec, id)`; none: kept): nothing is left for
/// them to vouch for. A record whose branch still holds commits the target lacks stays.
/// Returns the branches forgotten.
pub(crate) fn forget_kept(
    repo: &Repo,
    spec: Option<&str>,
    skip: &dyn Fn(&str) -> bool,
    target: &dyn Fn(&str, &str) -> Option<String>,
) -> Vec<String> {
    let root = repo.common_dir.join("qw-kept");
    let Ok(specs) = crate::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in specs.flatten() {
        let name = s.file_name().to_string_lossy().into_owned();
        let dir = s.path();
        if spec.is_some_and(|x| x != name) || skip(&name) || !dir.is_dir() {
            continue;
        }
        let Ok(records) = crate::fs::read_dir(&dir) else {
            continue;
        };
        for r in records.flatten() {
            let id = r.file_name().to_string_lossy().into_owned();
            let branch = super::task_branch(&name, &id);
            if !id.contains('@') || parse_branch(&branch).is_none() {
                continue;
            }
            let done = match repo.commit_of(&format!("refs/heads/{branch}")) {
                Ok(None) => true,
                // Merged only into the target branch its run was made for (else the main
                // worktree's branch): never into a detached HEAD (rev6b G6).
                Ok(Some(tip)) => target(&name, &id)
                    .is_some_and(|t| repo.unmerged_commits(&tip, &t).is_ok_and(|n| n == 0)),
                Err(_) => false,
            };
            if done && crate::fs::remove_file(r.path()).is_ok() {
                out.push(branch);
            }
        }
        // The spec's folder, once empty.
        let _ = fs_err::remove_dir(&dir);
    }
    out
}

/// Did qw make the kept branch `name` at `tip` (its record says so)?
pub(crate) fn kept_by_qw(repo: &Repo, name: &str, tip: &str) -> bool {
    crate::fs::read_regular_text(&kept_file(repo, name), 128).is_ok_and(|t| t.trim() == tip)
}

/// A commit on `parent` whose tree is `parent`'s with every file `fresh` adds or changes
/// (none it lacks deleted); `parent` itself when that changes nothing.
fn overlay(repo: &Repo, parent: &str, fresh: &str, message: &str) -> Result<String> {
    let index = tempfile::Builder::new()
        .prefix("qw-salvage-index")
        .tempfile_in(&repo.common_dir)
        .map_err(|e| crate::fs::with_path(e, "create a temporary index in", &repo.common_dir))?;
    let env = [("GIT_INDEX_FILE", index.path().as_os_str())];
    let run = |args: &[&str], input: Option<&[u8]>| -> Result<String> {
        let out = match input {
            None => git_output(&repo.top, args, &env)?,
            Some(bytes) => feed(&repo.top, &[], args, &env, bytes)?,
        };
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(git_error(&repo.top, args, &out))
        }
    };
    run(&["read-tree", parent], None)?;
    let diff = run(
        &[
            "diff-tree",
            "-r",
            "-z",
            "--no-renames",
            "--diff-filter=d",
            parent,
            fresh,
        ],
        None,
    )?;
    // `:<old mode> <new mode> <old sha> <new sha> <status>\0<path>\0` per path.
    let mut info = Vec::new();
    let mut fields = diff.split('\0');
    while let Some(head) = fields.next() {
        let Some(path) = fields.next() else { break };
        let parts: Vec<&str> = head.trim_start_matches(':').split(' ').collect();
        if let (Some(mode), Some(sha)) = (parts.get(1), parts.get(3)) {
            info.extend_from_slice(format!("{mode} {sha}\t{path}").as_bytes());
            info.push(0);
        }
    }
    if info.is_empty() {
        return Ok(parent.to_owned());
    }
    run(&["update-index", "-z", "--index-info"], Some(&info))?;
    let tree = run(&["write-tree"], None)?;
    run(&["commit-tree", &tree, "-p", parent, "-m", message], None)
}

/// Run `git -C dir PRE… ARGS…` with `input` on its stdin.
fn feed(
    dir: &Path,
    pre: &[&OsStr],
    args: &[&str],
    env: &[(&str, &OsStr)],
    input: &[u8],
) -> Result<std::process::Output> {
    use std::io::Write;
    let mut cmd = super::git_command(dir, pre, args, env);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            WorktreeError::NoGit
        } else {
            WorktreeError::Io(crate::fs::with_path(e, "run git in", dir))
        }
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|e| crate::fs::with_path(e, "write to git in", dir))?;
    }
    child
        .wait_with_output()
        .map_err(|e| WorktreeError::Io(crate::fs::with_path(e, "run git in", dir)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_objects_are_told_from_other_failures() {
        let e = |stderr: &str| WorktreeError::Git {
            args: "update-ref".into(),
            dir: PathBuf::from("/r"),
            stderr: stderr.into(),
        };
        assert!(missing_object(&e(
            "fatal: update_ref failed for ref 'refs/heads/qw/demo/1': cannot update ref 'refs/heads/qw/demo/1': trying to write ref 'refs/heads/qw/demo/1' with nonexistent object 647149b"
        )));
        assert!(missing_object(&e("fatal: 1234567 is not a valid object")));
        assert!(!missing_object(&e(
            "fatal: refusing to merge unrelated histories"
        )));
        assert!(!missing_object(&WorktreeError::NoGit));
        let tries = std::cell::Cell::new(0);
        let r: Result<()> = retry_missing(|| {
            tries.set(tries.get() + 1);
            Err(e("bad object HEAD"))
        });
        assert!(r.is_err());
        assert_eq!(tries.get(), 2, "retried once");
        tries.set(0);
        let _ = retry_missing(|| -> Result<()> {
            tries.set(tries.get() + 1);
            Err(e("index.lock: File exists"))
        });
        assert_eq!(tries.get(), 1, "other failures are not retried");
    }
}
