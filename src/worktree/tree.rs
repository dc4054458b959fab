//! One task worktree as git knows it: saving what it holds on its branch, whatever its
//! agent did to it, and taking it away.
//!
//! Every command here names the worktree's git dir and work tree explicitly
//! (`--git-dir <common>/worktrees/<id> --work-tree <path>`), so a worktree whose `.git`
//! file was deleted, or replaced by a directory (`git init` inside it), is still read
//! and saved — and `git -C <path>` can never wander into another repository above it.
//!
//! Saving (`capture` = [`stage`] then [`point_branch`]): everything in the work tree
//! (`git add -A`, ignored files excepted) is committed on top of its HEAD — the task's
//! branch, another branch the agent switched to, or a detached HEAD — and the task's
//! branch is pointed at that commit. The spec folder (a link to the main tree's) is
//! kept as the integration branch has it, whatever the agent staged or committed there.
//! Commits the HEAD visited that the result lacks (another branch, a reset, a rebase's
//! originals with other content) are named; when no branch holds them they are kept on
//! `qw/<spec>/<task>@<sha>` — after the worktree is gone, nothing else would.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use super::{Repo, Result, WorktreeError, git, git_command, git_error, spawn_output};

/// The prefix of the `git worktree lock` reason qw gives its worktrees.
pub(crate) const LOCK_REASON_PREFIX: &str = "qw:";

/// git's empty tree (SHA-1).
const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// The marker qw writes in a task worktree's git dir: `spec\ntask\n`.
pub(crate) const MARKER: &str = "qw-task";

/// A task worktree: its directory, its git dir and the task's branch.
#[derive(Debug, Clone)]
pub(crate) struct Tree<'a> {
    path: &'a Path,
    admin: &'a Path,
    branch: &'a str,
}

impl<'a> Tree<'a> {
    pub(crate) fn new(path: &'a Path, admin: &'a Path, branch: &'a str) -> Tree<'a> {
        Tree {
            path,
            admin,
            branch,
        }
    }

    /// Run git on this worktree, from inside it. When its directory is gone, an empty
    /// temporary directory stands in as the work tree (what is committed is then only
    /// what its HEAD and index hold).
    fn output(&self, args: &[&str]) -> Result<Output> {
        let stand_in;
        let work_tree = if self.path.is_dir() {
            self.path
        } else {
            stand_in = tempfile::tempdir().map_err(|e| {
                crate::fs::with_path(e, "create a temporary directory in", &std::env::temp_dir())
            })?;
            stand_in.path()
        };
        let pre = [
            std::ffi::OsStr::new("--git-dir"),
            self.admin.as_os_str(),
            std::ffi::OsStr::new("--work-tree"),
            work_tree.as_os_str(),
        ];
        spawn_output(git_command(work_tree, &pre, args, &[]), work_tree)
    }

    pub(crate) fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.output(args)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(git_error(self.path, args, &out))
        }
    }

    /// The task's branch.
    pub(crate) fn branch(&self) -> &'a str {
        self.branch
    }

    /// Its git dir.
    pub(crate) fn admin(&self) -> &'a Path {
        self.admin
    }

    /// Its directory.
    pub(crate) fn path(&self) -> &'a Path {
        self.path
    }

    fn rev(&self, rev: &str) -> Result<Option<String>> {
        let out = self.output(&["rev-parse", "-q", "--verify", rev])?;
        let sha = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok((out.status.success() && !sha.is_empty()).then_some(sha))
    }
}

/// Mark the tracked files of the spec folder `skip-worktree` in this worktree's index, so
/// the link qw puts in their place does not make the worktree look dirty to the agent's
/// git (a rebase or a switch would refuse), and the link survives them.
pub(crate) fn hide_spec_files(t: &Tree<'_>, spec_rel: &str) -> Result<()> {
    use std::io::Write;
    let files = t.run(&["ls-files", "-z", "--", spec_rel])?;
    if files.is_empty() {
        return Ok(());
    }
    let work_tree = t.path;
    let pre = [
        std::ffi::OsStr::new("--git-dir"),
        t.admin.as_os_str(),
        std::ffi::OsStr::new("--work-tree"),
        work_tree.as_os_str(),
    ];
    let args = ["update-index", "--skip-worktree", "-z", "--stdin"];
    let mut cmd = git_command(work_tree, &pre, args, &[]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| crate::fs::with_path(e, "run git in", work_tree))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(files.as_bytes())
            .map_err(|e| crate::fs::with_path(e, "write to git in", work_tree))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| crate::fs::with_path(e, "run git in", work_tree))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(git_error(work_tree, &args, &out))
    }
}

/// What saving a worktree did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    /// The commit the task's branch now points at (None: nothing at all was committed).
    pub commit: Option<String>,
    /// Uncommitted changes were committed.
    pub saved_changes: bool,
    /// Commits the agent left outside the result: where they are.
    pub strays: Vec<String>,
    /// The worktree held a history of its own (no commit in common with the target):
    /// where it is kept and where the task's branch went.
    pub own_history: Option<String>,
    /// The task's branch was moved from outside its worktree: the worktree's own work
    /// was saved on it instead, and this line says who moved it and where each piece is
    /// (see `worktree/cross.rs`); not to be merged.
    pub crossed: Option<String>,
    /// Commits the agent made and then dropped from its result (a `reset --hard`, a
    /// rebase that left them out) whose changes the result lacks: where they are kept
    /// and how to merge them. The task fails instead of being reported completed with
    /// its work left aside (rev11a F1).
    pub dropped: Option<String>,
    /// Paths of repositories nested in the worktree (and gitlinks it staged or committed)
    /// that were left out of the result: what the merge does not bring (see
    /// `Worktrees::not_merged`).
    pub left_out: Vec<String>,
}

/// The result of [`stage`]: a commit holding HEAD plus the files, not yet on a branch.
#[derive(Debug, Clone)]
pub(crate) struct Staged {
    pub(crate) commit: Option<String>,
    pub(crate) saved_changes: bool,
    /// The branch HEAD names was moved from outside the worktree: the commit is on the
    /// worktree's own last commit instead (see [`super::cross::moved_outside`]).
    pub(crate) moved: Option<super::cross::Moved>,
    /// Nested repositories and new gitlinks left out of the commit.
    pub(crate) left_out: Vec<String>,
}

/// Save everything: [`stage`] then [`point_branch`] (the repository lock is held),
/// once more from the worktree's files when an object went missing meanwhile (a
/// concurrent `git gc --prune=now`).
pub(crate) fn capture(
    repo: &Repo,
    t: &Tree<'_>,
    spec: &str,
    message: &str,
    base: &str,
) -> Result<Capture> {
    super::salvage::retry_missing(|| {
        let staged = stage(repo, t, spec, message, base)?;
        point_branch(repo, t, staged, base)
    })
}

/// Commit what the work tree holds on top of its HEAD (whatever branch or detached HEAD
/// that is), keeping the spec folder as `base` has it. Touches only this worktree's
/// index and the object store, so it needs no lock.
pub(crate) fn stage(
    repo: &Repo,
    t: &Tree<'_>,
    spec: &str,
    message: &str,
    base: &str,
) -> Result<Staged> {
    // The agent's processes are all gone when qw saves its worktree, so an index.lock
    // or HEAD.lock in its git dir is stale (a git the agent started and that was
    // killed): only this worktree's gits take them.
    for name in ["index.lock", "HEAD.lock"] {
        let stale = t.admin.join(name);
        if stale.is_file() {
            crate::fs::remove_file(&stale)?;
        }
    }
    // A half-done merge or rebase, or unresolved conflicts: the work is not saved
    // (its conflict markers would be committed as the task's result); kept as it is.
    if let Some(why) = unfinished(t, spec)? {
        return Err(WorktreeError::Unsaved {
            path: t.path.to_path_buf(),
            why,
        });
    }
    // The branch HEAD names moved by a git outside the worktree (its index and files
    // stayed): the files are the worktree's own work on its own last commit.
    let moved = super::cross::moved_outside(repo, t)?;
    let head = match moved
        .as_ref()
        .map_or(t.rev("HEAD^{commit}")?, |m| Some(m.own.clone()))
    {
        Some(h) => Some(h),
        // HEAD names a branch that no longer exists (the agent deleted it): the last
        // commit HEAD held is the newest entry of its reflog.
        None => reflog(t.admin)
            .into_iter()
            .rev()
            .find(|c| is_commit(repo, c)),
    };
    let spec_rel = repo.spec_rel(spec);
    // A wiped worktree's files are not the task's work (staging them would delete every
    // tracked file): only what its HEAD and index hold is saved.
    let mut left_out = Vec::new();
    if t.path.is_dir() && !wiped(t, &spec_rel) {
        // Repositories and worktrees the agent nested in it are not the task's work.
        left_out = super::nested::find_staged(t)?;
        let excl = super::nested::exclusions(&left_out);
        let mut args = vec!["add", "-A"];
        if !excl.is_empty() {
            args.extend(["--", ":/"]);
            args.extend(excl.iter().map(String::as_str));
        }
        t.run(&args)?;
    }
    // A nested repository the worktree was kept for, moved out since (`mv src …` of a
    // `git init src`): the project's tracked files that went with it are not deleted
    // by the task (rev4 F2).
    if let Some(h) = &head {
        let gone = super::nested::vanished(t);
        if !gone.is_empty() {
            let mut args = vec![
                "diff".to_owned(),
                "--cached".to_owned(),
                "--name-only".to_owned(),
                "--no-renames".to_owned(),
                "--diff-filter=D".to_owned(),
                "-z".to_owned(),
                h.clone(),
                "--".to_owned(),
            ];
            args.extend(gone.iter().map(|g| format!(":(literal){g}")));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let deleted: Vec<String> = t
                .run(&args)?
                .split('\0')
                .filter(|p| !p.is_empty())
                .map(|p| format!(":(literal){p}"))
                .collect();
            if !deleted.is_empty() {
                let mut args = vec!["reset", "-q", h.as_str(), "--"];
                args.extend(deleted.iter().map(String::as_str));
                t.run(&args)?;
            }
        }
    }
    let base_commit = repo.commit_of(base)?;
    for p in super::nested::unstage_new_gitlinks(t, base_commit.as_deref())? {
        if !left_out.contains(&p) {
            left_out.push(p);
        }
    }
    super::nested::unstage_dangling_gitmodules(repo, t, base_commit.as_deref())?;
    // The spec folder is the main tree's: never part of a task's result, even when the
    // agent staged or committed the link qw put there. It stays as the common ancestor
    // of HEAD and `base` has it, so merging the result never touches it.
    let keep_from = match (&head, repo.commit_of(base)?) {
        (Some(h), Some(b)) => {
            let out = super::git_output(&repo.top, ["merge-base", h.as_str(), b.as_str()], &[])?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
                .filter(|s| !s.is_empty())
        }
        _ => None,
    };
    // So are the read-only copies of the user's Claude Code files qw put there
    // (`copies`): neither a `git add -A` nor a commit of the agent's brings one in.
    let copies = super::copies::pathspecs(t.admin);
    let mut paths: Vec<&str> = vec![spec_rel.as_str()];
    paths.extend(copies.iter().map(String::as_str));
    match &keep_from {
        Some(b) => {
            let mut args = vec!["reset", "-q", b, "--"];
            args.extend(&paths);
            t.run(&args)?;
        }
        None => {
            let mut args = vec!["rm", "--cached", "-r", "-q", "--ignore-unmatch", "--"];
            args.extend(&paths);
            t.run(&args)?;
        }
    }
    let tree = t.run(&["write-tree"])?;
    let head_tree = match &head {
        Some(h) => t.rev(&format!("{h}^{{tree}}"))?,
        None => None,
    };
    if head.is_some() && head_tree.as_deref() == Some(tree.as_str()) {
        return Ok(Staged {
            commit: head,
            saved_changes: false,
            moved,
            left_out,
        });
    }
    if head.is_none() && tree == EMPTY_TREE {
        return Ok(Staged {
            commit: None,
            saved_changes: false,
            moved,
            left_out,
        });
    }
    let mut args = vec!["commit-tree", tree.as_str()];
    if let Some(h) = &head {
        args.extend(["-p", h.as_str()]);
    }
    args.extend(["-m", message]);
    let commit = t.run(&args)?;
    Ok(Staged {
        commit: Some(commit),
        saved_changes: true,
        moved,
        left_out,
    })
}

/// Point the task's branch (and the worktree's HEAD) at the staged commit, and find the
/// commits the agent left elsewhere (the repository lock is held: this moves refs).
pub(crate) fn point_branch(
    repo: &Repo,
    t: &Tree<'_>,
    staged: Staged,
    base: &str,
) -> Result<Capture> {
    let old_tip = repo.commit_of(&format!("refs/heads/{}", t.branch))?;
    // A history of its own cannot be merged: kept apart, the branch put back.
    let (staged, own_history) = match super::salvage::own_history(repo, t, &staged, base)? {
        Some((s, line)) => (s, Some(line)),
        None => (staged, None),
    };
    if let Some(c) = &staged.commit {
        // Through the worktree's HEAD, so its reflog says where qw put the branch (a
        // later save tells qw's move from one made outside the worktree).
        let r = format!("refs/heads/{}", t.branch);
        if t.run(&["symbolic-ref", "-q", "HEAD"]).ok().as_deref() != Some(r.as_str()) {
            t.run(&["symbolic-ref", "HEAD", &r])?;
        }
        if repo
            .commit_of(&format!("refs/heads/{}", t.branch))?
            .as_deref()
            != Some(c.as_str())
        {
            t.run(&["update-ref", "-m", "qw: the task's result", "HEAD", c])?;
        }
        super::owned::record(repo, t.branch)?;
    }
    // The moved-to commit is told (and kept) by the line below, not as a stray.
    let crossed = match &staged.moved {
        Some(m) => Some(super::cross::moved_line(
            repo,
            t,
            m,
            staged.commit.as_deref(),
            base,
        )?),
        None => None,
    };
    let old_tip = if crossed.is_some() { None } else { old_tip };
    let (mut strays, dropped) = strays(repo, t, staged.commit.as_deref(), old_tip, base)?;
    strays.extend(own_history.clone());
    strays.extend(super::cross::below_start(
        repo,
        t,
        staged.commit.as_deref(),
        base,
        &repo.spec_rel(super::parse_branch(t.branch).map_or("", |(s, _)| s)),
    )?);
    strays.extend(crossed.clone());
    Ok(Capture {
        commit: staged.commit,
        saved_changes: staged.saved_changes,
        strays,
        own_history,
        crossed,
        dropped,
        left_out: staged.left_out,
    })
}

/// The task part of the name a lost commit of unknown task is kept under
/// (`qw/<spec>/unknown@<sha7>`): it names no task.
const UNKNOWN_TASK: &str = "unknown";

/// Commits the worktree's HEAD visited (and the branch's previous tip) that are in
/// neither the result nor `base`: named where a branch holds them, else kept on a new
/// branch `<task branch>@<sha>`. The second value: the line for the commits the agent
/// itself left outside its result (their changes missing from it), which fail the task.
fn strays(
    repo: &Repo,
    t: &Tree<'_>,
    result: Option<&str>,
    old_tip: Option<String>,
    base: &str,
) -> Result<(Vec<String>, Option<String>)> {
    let log = head_log(t.admin);
    let mut candidates: Vec<String> = log.iter().rev().map(|l| l.to.clone()).collect();
    candidates.extend(old_tip);
    // Left where no reflog tells of them (expired, or never written): whose they are,
    // git does not say.
    let lost: Vec<super::lost::Lost> = super::lost::since_start(repo, t.admin, base)
        .into_iter()
        .filter(|l| !candidates.contains(&l.commit))
        .collect();
    let unknown: std::collections::BTreeSet<String> =
        lost.iter().map(|l| l.commit.clone()).collect();
    // Written while other worktrees ran and none tells whose (rev5b F15): kept under a
    // name that charges no task.
    let nobodys = |c: &str| {
        lost.iter()
            .find(|l| l.commit == c)
            .and_then(|l| l.unknown.clone())
    };
    candidates.extend(unknown.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    let mut kept: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    // The same commits said as a warning, for a result that did the work again.
    let mut redone: Vec<String> = Vec::new();
    let rescue_prefix = format!("{}@", t.branch);
    for c in candidates {
        if !seen.insert(c.clone()) || !is_commit(repo, &c) {
            continue;
        }
        if result.is_some_and(|r| repo.is_ancestor(&c, r).unwrap_or(false))
            || repo.is_ancestor(&c, base)?
        {
            continue;
        }
        let mut covered = false;
        for k in &kept {
            if repo.is_ancestor(&c, k)? {
                covered = true;
                break;
            }
        }
        if covered {
            continue;
        }
        // What of it is not in `base`, and not in the result either (`git cherry`
        // also recognises changes a rebase gave other ids).
        let upstream = result.unwrap_or(base);
        let cherry = git(&repo.top, &["cherry", upstream, &c, base])?;
        let mut plus: Vec<&str> = cherry
            .lines()
            .filter_map(|l| l.strip_prefix("+ "))
            .collect();
        if result.is_some() && !plus.is_empty() {
            // Nor on the target by another id: a sibling task's rebase original, whose
            // copy that task merged (found among the loose commits once its worktree,
            // and the reflog that told it was its own, is gone).
            let on_base = git(&repo.top, &["cherry", base, &c])?;
            let merged: std::collections::BTreeSet<&str> = on_base
                .lines()
                .filter_map(|l| l.strip_prefix("- "))
                .collect();
            plus.retain(|s| !merged.contains(s));
        }
        let missing = plus.len();
        if missing == 0 {
            continue;
        }
        // Superseded by the result (its agent's `commit --amend`, a `reset --soft` then
        // a commit, a squash): every path it changed, the result changed too. Only what
        // the result really lacks is kept and named.
        if let Some(r) = result
            && rewritten_later(&log, &c)
            && superseded(repo, &c, r)?
        {
            continue;
        }
        let holders: Vec<String> = git(
            &repo.top,
            &[
                "for-each-ref",
                "--contains",
                &c,
                "--format=%(refname:lstrip=2)",
                "refs/heads/",
            ],
        )?
        .lines()
        .filter(|b| *b != t.branch)
        .map(str::to_owned)
        .collect();
        if holders.iter().any(|b| b.starts_with(&rescue_prefix)) {
            // Kept earlier (when the task's result was merged); said then.
            kept.push(c.clone());
            continue;
        }
        kept.push(c.clone());
        let short = &c[..c.len().min(10)];
        if holders.is_empty() {
            let neutral = nobodys(&c);
            // A longer id when the name is taken by another commit.
            let name = match (&neutral, super::parse_branch(t.branch)) {
                (Some(_), Some((spec, _))) => {
                    super::salvage::keep_branch(repo, &super::task_branch(spec, UNKNOWN_TASK), &c)?
                }
                _ => super::salvage::keep_branch(repo, t.branch, &c)?,
            };
            let see = format!(
                "see what its result lacks with `git diff {} {name}`",
                result.map_or_else(|| base.to_owned(), |r| r[..r.len().min(10)].to_owned())
            );
            if let Some(who) = neutral {
                out.push(format!(
                    "{missing} commit(s) of unknown task (up to {short}: written while the task ran beside {}, named by no branch, no reflog and no worktree's `ORIG_HEAD` — an agent's after a reflog expire, or another git's) are kept on branch `{name}`, charged to no task; {see}",
                    who.iter()
                        .map(|w| format!("`{w}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            } else if unknown.contains(&c) {
                out.push(format!(
                    "{missing} commit(s) of unknown origin (up to {short}: written while the task ran, named by no branch and no reflog — this task's agent's after a reflog expire, or another git's) are kept on branch `{name}`; {see}"
                ));
            } else if shares_history(repo, &c, base)? {
                redone.push(format!(
                    "{missing} commit(s) the agent left outside its result (up to {short}, by a reset, a rebase or a branch switch) are kept on branch `{name}`; {see}"
                ));
                dropped.push(format!(
                    "{missing} commit(s) the agent made and then left outside its result (up to {short}, by a reset, a rebase or a branch switch) hold work the result lacks: kept on branch `{name}`, not merged; {see}, and merge it with `git merge {name}`"
                ));
            } else {
                // Another history (the branch moved to an unrelated commit): nothing a
                // merge could bring back; kept and said, the task's files saved as usual.
                out.push(format!(
                    "{missing} commit(s) of another history the task's branch was moved to (up to {short}) are kept on branch `{name}`, not merged; {see}"
                ));
            }
        } else {
            // Only the commits this worktree's git made count as its agent's (the branch
            // may hold another task's below them).
            let made = super::origin::made_in(t.admin);
            let own = cherry
                .lines()
                .filter_map(|l| l.strip_prefix("+ "))
                .filter(|c| made.contains(c.trim()))
                .count();
            if own == 0 {
                continue;
            }
            out.push(format!(
                "{own} commit(s) of the agent on branch `{}` (up to {short}) are not in its result and were not merged",
                holders.join("`, `")
            ));
        }
    }
    // The agent that dropped commits and then did the work again (its result changes
    // files): merged, the dropped commits kept and said. Only a result that brings
    // nothing of its own (outside `.claude/`) fails the task (rev11a F1).
    if !dropped.is_empty()
        && let Some(r) = result
        && brings_changes(repo, base, r)?
    {
        dropped.clear();
        out.append(&mut redone);
    }
    Ok((out, (!dropped.is_empty()).then(|| dropped.join("; "))))
}

/// Does `result` change any file outside `.claude/` since its merge base with `base`?
fn brings_changes(repo: &Repo, base: &str, result: &str) -> Result<bool> {
    let range = format!("{base}...{result}");
    let out = super::git_output(
        &repo.top,
        [
            "diff",
            "--quiet",
            "--no-ext-diff",
            &range,
            "--",
            ".",
            ":(exclude).claude",
        ],
        &[],
    )?;
    Ok(out.status.code() == Some(1))
}

/// Do `c` and `base` have a common ancestor (is `c` of the project's history)?
fn shares_history(repo: &Repo, c: &str, base: &str) -> Result<bool> {
    let out = super::git_output(&repo.top, ["merge-base", c, base], &[])?;
    Ok(out.status.success() && !out.stdout.trim_ascii().is_empty())
}

/// Did the worktree's own git rewrite `c` after it was there: a `commit --amend`, a
/// squash or fixup, or a reset followed by a commit (`reset --soft HEAD~n` then
/// `commit`), in its HEAD reflog after the last entry that went to `c`?
fn rewritten_later(log: &[LogLine], c: &str) -> bool {
    let Some(at) = log.iter().rposition(|l| l.to == c) else {
        return false;
    };
    let after = &log[at + 1..];
    after.iter().enumerate().any(|(i, l)| {
        let m = l.message.as_str();
        m.starts_with("commit (amend)")
            || m.contains("(squash)")
            || m.contains("(fixup)")
            || (m.starts_with("reset: moving to")
                && after[i + 1..]
                    .iter()
                    .any(|n| n.message.starts_with("commit")))
    })
}

/// Did `result`'s history (from its merge base with `c`) change every path `c` changed?
/// Then `c` was rewritten into it (amended, squashed, redone): nothing of it is lacking
/// there. Each commit's paths count, not only the net diff: an agent's `git add -A`
/// of the spec link qw takes back out in its own commit on top is still the agent's.
fn superseded(repo: &Repo, c: &str, result: &str) -> Result<bool> {
    let out = super::git_output(&repo.top, ["merge-base", c, result], &[])?;
    let mb = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || mb.is_empty() {
        return Ok(false);
    }
    let split = |text: String| -> BTreeSet<String> {
        text.split('\0')
            .map(|p| p.trim_matches('\n'))
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mine = split(git(
        &repo.top,
        &["diff", "--name-only", "--no-renames", "-z", &mb, c, "--"],
    )?);
    let range = format!("{mb}..{result}");
    let theirs = split(git(
        &repo.top,
        &[
            "log",
            "-z",
            "--format=",
            "--name-only",
            "--no-renames",
            &range,
            "--",
        ],
    )?);
    Ok(!mine.is_empty() && mine.is_subset(&theirs))
}

pub(crate) fn is_commit(repo: &Repo, sha: &str) -> bool {
    !sha.is_empty()
        && sha.bytes().any(|b| b != b'0')
        && repo.commit_of(sha).ok().flatten().is_some()
}

/// The commits a worktree's HEAD pointed at, oldest first (from `<admin>/logs/HEAD`,
/// read directly: it still answers when HEAD names a branch that was deleted), all of
/// them.
pub(crate) fn reflog(admin: &Path) -> Vec<String> {
    reflog_entries(admin).into_iter().map(|(c, _)| c).collect()
}

/// `(commit, message)` of each move of a worktree's HEAD, oldest first (from
/// `<admin>/logs/HEAD`; empty when it is gone).
pub(crate) fn reflog_entries(admin: &Path) -> Vec<(String, String)> {
    head_log(admin)
        .into_iter()
        .map(|l| (l.to, l.message))
        .collect()
}

/// One move of a worktree's HEAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogLine {
    /// The commit HEAD was at before (what git read through HEAD: all zeros for the
    /// first entry).
    pub(crate) from: String,
    /// The commit HEAD moved to.
    pub(crate) to: String,
    /// When (seconds since the epoch).
    pub(crate) time: i64,
    /// git's message (`commit: …`, `checkout: moving from A to B`, `reset: moving to HEAD`).
    pub(crate) message: String,
}

/// Each move of a worktree's HEAD, oldest first, from `<git dir>/logs/HEAD` read
/// directly (it still answers when HEAD names a branch that was deleted); a line that
/// is not git's `<old> <new> <who> <time> <tz>\t<message>` is skipped; empty when the
/// file is gone. With the reftable backend, through git ([`super::reflog::head_log`]).
pub(crate) fn head_log(git_dir: &Path) -> Vec<LogLine> {
    if super::reflog::is_reftable(git_dir) {
        // No log files there: git reads the tables.
        return super::reflog::head_log(git_dir);
    }
    let Ok(text) = crate::fs::read_to_string(git_dir.join("logs").join("HEAD")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let (head, message) = l.split_once('\t').unwrap_or((l, ""));
            let from = head.split(' ').next()?;
            let to = head.split(' ').nth(1)?;
            // `… <email> <time> <tz>`: the time is the second word from the end.
            let time = head.rsplit(' ').nth(1)?.parse().ok()?;
            (to.len() >= 40 && to.bytes().all(|b| b.is_ascii_hexdigit())).then(|| LogLine {
                from: from.to_owned(),
                to: to.to_owned(),
                time,
                message: message.to_owned(),
            })
        })
        .collect()
}

/// An operation left half done in a git dir: `a merge`, `a rebase`, ….
pub fn in_progress(git_dir: &Path) -> Option<&'static str> {
    [
        ("MERGE_HEAD", "a merge"),
        ("rebase-merge", "a rebase"),
        ("rebase-apply", "a rebase (or `git am`)"),
        ("CHERRY_PICK_HEAD", "a cherry-pick"),
        ("REVERT_HEAD", "a revert"),
    ]
    .into_iter()
    .find(|(f, _)| git_dir.join(f).symlink_metadata().is_ok())
    .map(|(_, what)| what)
}

/// The `git` subcommand that finishes or aborts the operation a task's worktree holds
/// half done (`merge`, `rebase`, `am`, `cherry-pick`, `revert`, `bisect`): what a printed
/// way on runs. Beyond [`in_progress`]: a `git bisect` (`BISECT_LOG`: HEAD is the commit
/// git picked to test, not the agent's result) and a cherry-pick or revert of several
/// commits whose stop the agent ended with `git commit` (the sequencer still holds
/// picks to do, `CHERRY_PICK_HEAD` is gone) — rev6b G2, G8.
fn in_progress_verb(git_dir: &Path) -> Option<&'static str> {
    let has = |f: &str| git_dir.join(f).symlink_metadata().is_ok();
    if has("MERGE_HEAD") {
        Some("merge")
    } else if has("rebase-merge") {
        Some("rebase")
    } else if has("rebase-apply") {
        Some(if has("rebase-apply/applying") {
            "am"
        } else {
            "rebase"
        })
    } else if has("CHERRY_PICK_HEAD") {
        Some("cherry-pick")
    } else if has("REVERT_HEAD") {
        Some("revert")
    } else if has("BISECT_LOG") || has("BISECT_START") {
        Some("bisect")
    } else {
        sequencer_verb(git_dir)
    }
}

/// `cherry-pick` or `revert` when `<git dir>/sequencer/todo` still lists commits to do.
fn sequencer_verb(git_dir: &Path) -> Option<&'static str> {
    let todo = crate::fs::read_regular_text(&git_dir.join("sequencer/todo"), 1 << 20).ok()?;
    let first = todo
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    Some(if first.starts_with("revert") || first.starts_with("r ") {
        "revert"
    } else {
        "cherry-pick"
    })
}

/// Why the worktree's state is not the task's work and must not be committed: an
/// operation its agent left half done (a merge, rebase, `git am`, cherry-pick or revert
/// stopped on a conflict or an `edit`, a cherry-pick of several commits with picks still
/// to do, a `git bisect` not reset) or paths with unresolved conflicts (a `git stash pop`
/// that conflicted) — committing it would save the conflict markers (or the bisect's
/// midpoint) as the task's result, and a rebase's progress would go with the worktree.
/// The line names it, the worktree and the commands that finish or abort it, then `qw
/// workflow-continue <spec>` (`spec`); `None` when there is nothing of the kind.
///
/// Its git dir is made whole first ([`repair_admin`]); the work tree is not walked: the
/// caller that is first to run git there after the agent (or the `_Verify:_`) ran
/// removes what git would block on ([`defuse_special`]) before calling this.
pub(crate) fn unfinished(t: &Tree<'_>, spec: &str) -> Result<Option<String>> {
    // Every save and every look at a left worktree starts here: its git dir is whole
    // (the lines are told by `Worktrees::defuse` after the agent).
    repair_admin(t);
    let dir = super::shell::quote(&t.path.to_string_lossy()).into_owned();
    let then = format!(
        "then run `{}`; nothing of it is saved, merged or removed until then",
        super::shell::continue_cmd(spec)
    );
    let conflicted = || -> Result<Vec<String>> {
        if !t.path.is_dir() {
            return Ok(Vec::new());
        }
        let mut paths: Vec<String> = t
            .run(&["ls-files", "-u", "-z"])?
            .split('\0')
            .filter_map(|l| l.split_once('\t').map(|(_, p)| p.to_owned()))
            .collect();
        paths.dedup();
        Ok(paths)
    };
    if let Some(verb) = in_progress_verb(t.admin) {
        if verb == "bisect" {
            return Ok(Some(format!(
                "the agent left a `git bisect` in progress there (its HEAD is the commit the bisect checked out, not the agent's result): end it (`git -C {dir} bisect reset` puts HEAD back where the bisect started), {then}"
            )));
        }
        let sequencer = !t.admin.join("CHERRY_PICK_HEAD").exists()
            && !t.admin.join("REVERT_HEAD").exists()
            && matches!(verb, "cherry-pick" | "revert");
        if sequencer {
            return Ok(Some(format!(
                "the agent left a {verb} of several commits in progress there (it committed where one stopped; more are still to do: `git -C {dir} status` shows them): go on with it (`git -C {dir} {verb} --continue`), keep what is done (`git -C {dir} {verb} --quit`) or undo it all (`git -C {dir} {verb} --abort`), {then}"
            )));
        }
        let what = match verb {
            "am" => "a `git am`",
            "cherry-pick" => "a cherry-pick",
            "revert" => "a revert",
            "merge" => "a merge",
            _ => "a rebase",
        };
        let finish = if conflicted()?.is_empty() {
            format!(
                "where it stopped: no conflict, an `edit` or `break`, or conflicts already resolved): finish it (`git -C {dir} {verb} --continue`)"
            )
        } else {
            format!(
                "where it stopped on conflicts): finish it (resolve the conflicts, `git -C {dir} add` them, then `git -C {dir} {verb} --continue`)"
            )
        };
        return Ok(Some(format!(
            "the agent left {what} in progress there (`git -C {dir} status` shows {finish} or abort it (`git -C {dir} {verb} --abort`), {then}"
        )));
    }
    let paths = conflicted()?;
    if paths.is_empty() {
        return Ok(None);
    }
    let named: Vec<String> = paths.iter().map(|p| format!("`{p}`")).collect();
    let words: Vec<String> = paths
        .iter()
        .map(|p| super::shell::quote(&format!(":(top,literal){p}")).into_owned())
        .collect();
    Ok(Some(format!(
        "the agent left unresolved conflicts there (a `git stash pop` or `git checkout -m` that conflicted) in {}: resolve them and `git -C {dir} add -- {}`, or take the committed version back (`git -C {dir} checkout HEAD -- {}`), {then}",
        named.join(", "),
        words.join(" "),
        words.join(" "),
    )))
}

/// Untracked files of the worktree that git ignores only by a
/// rule outside the project's own `.gitignore` files — `info/exclude`, the user's
/// `core.excludesFile` — and not by one of `qw_ignores` (qw's runtime lines, the spec
/// link): a save skips them and removing the worktree would delete them (rev6b G16).
/// What the project's `.gitignore` files ignore (`target/`, `node_modules/`) is build
/// output by the project's own rules and goes with the worktree.
pub(crate) fn ignored_outside_project(t: &Tree<'_>, qw_ignores: &[String]) -> Result<Vec<String>> {
    if !t.path.is_dir() {
        return Ok(Vec::new());
    }
    let list = |args: &[&str]| -> Result<BTreeSet<String>> {
        let mut full = vec!["ls-files", "-z", "--others"];
        full.extend_from_slice(args);
        Ok(t.run(&full)?
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect())
    };
    // Untracked files the project's own rules (and qw's lines) do not ignore, less those
    // the save stages (not ignored by any rule): what a rule elsewhere hides.
    let mut project: Vec<String> = vec!["--exclude-per-directory=.gitignore".to_owned()];
    project.extend(qw_ignores.iter().map(|p| format!("--exclude={p}")));
    let project = list(&project.iter().map(String::as_str).collect::<Vec<_>>())?;
    if project.is_empty() {
        return Ok(Vec::new());
    }
    let saved = list(&["--exclude-standard"])?;
    Ok(project.difference(&saved).cloned().collect())
}

/// The line that keeps a worktree holding [`ignored_outside_project`] files, naming them
/// (at most five) and the way on; `None` when there are none (or git cannot tell: the
/// worktree is then removed as before).
pub(crate) fn keep_ignored(t: &Tree<'_>, qw_ignores: &[String]) -> Option<String> {
    let paths = ignored_outside_project(t, qw_ignores).ok()?;
    if paths.is_empty() {
        return None;
    }
    let mut named: Vec<String> = paths.iter().take(5).map(|p| format!("`{p}`")).collect();
    if paths.len() > 5 {
        named.push(format!("{} more", paths.len() - 5));
    }
    let dir = super::shell::quote(&t.path.to_string_lossy()).into_owned();
    Some(format!(
        "kept the worktree `{}` (not removed; its work is saved on branch `{}`): it holds new files git ignores only by a rule outside the project's `.gitignore` files (`.git/info/exclude` or your `core.excludesFile`), so they were not saved, and removing the worktree would delete them: {}; take what you want (`git -C {dir} status --ignored` lists them; `git -C {dir} add -f -- <path>` and commit saves one on the branch), move the rest out or delete it, then run `qw worktrees --prune`",
        t.path.display(),
        t.branch,
        named.join(", ")
    ))
}

/// Is the worktree intact: its directory there, its `.git` a file pointing to `admin`?
/// A git dir that is a link (to a sibling task's, rev9 N9) is no sound one: never
/// followed.
pub(crate) fn sound(path: &Path, admin: &Path) -> bool {
    if is_link(admin) {
        return false;
    }
    let dotgit = path.join(".git");
    let Ok(meta) = dotgit.symlink_metadata() else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    let Ok(text) = crate::fs::read_to_string(&dotgit) else {
        return false;
    };
    let Some(target) = text.trim().strip_prefix("gitdir:").map(str::trim) else {
        return false;
    };
    let target = Path::new(target);
    let target = if target.is_absolute() {
        target.to_path_buf()
    } else {
        path.join(target)
    };
    match (target.canonicalize(), admin.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Is `p` a symbolic link (not followed)?
pub(crate) fn is_link(p: &Path) -> bool {
    p.symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
}

/// Was the worktree wiped by its agent: its directory is there, but its `.git` no longer
/// is the file pointing to its git dir (deleted, or the directory deleted and made
/// again) and files its index tracks are gone from it? Its files then are not the task's
/// work — staging them would commit the deletion of every tracked file — so it counts
/// as deleted while the task ran. A worktree whose `.git` alone was deleted or replaced,
/// its files all there, is not wiped (its work is saved as usual). The spec folder (a
/// link qw put there) does not count.
pub(crate) fn wiped(t: &Tree<'_>, spec_rel: &str) -> bool {
    repair_admin(t);
    if !t.path.is_dir() || sound(t.path, t.admin) {
        return false;
    }
    let Ok(out) = t.output(&["ls-files", "--deleted", "-z"]) else {
        return true;
    };
    if !out.status.success() {
        return true;
    }
    let spec_dir = format!("{spec_rel}/");
    String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter(|p| !p.is_empty())
        .any(|p| p != spec_rel && !p.starts_with(&spec_dir))
}

/// The worktree's `.git` naming (a `gitdir:` file), or being a link to, another git
/// dir of this repository than its own — a sibling task's, or the main worktree's
/// (rev9 N9): damage, never followed. Written again to name its own git dir, so a git
/// run there later (the user's, in a worktree kept for them) works on this task and no
/// other; not when the worktree counts as wiped ([`wiped`]: its files are not the
/// task's). The line saying so.
pub(crate) fn repoint_dotgit(t: &Tree<'_>, spec_rel: &str) -> Option<String> {
    let worktrees = t
        .admin
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "worktrees"))?;
    let common = worktrees.parent()?;
    if !t.path.is_dir() || is_link(t.admin) || !t.admin.is_dir() || sound(t.path, t.admin) {
        return None;
    }
    let dotgit = t.path.join(".git");
    let meta = dotgit.symlink_metadata().ok()?;
    let named = if meta.file_type().is_symlink() {
        fs_err::read_link(&dotgit).ok()?
    } else if meta.is_file() {
        let text = crate::fs::read_regular_text(&dotgit, 4096).ok()?;
        PathBuf::from(text.trim().strip_prefix("gitdir:")?.trim())
    } else {
        return None;
    };
    let named = if named.is_absolute() {
        named
    } else {
        t.path.join(named)
    };
    let named_c = named.canonicalize().ok()?;
    let another = named_c.parent() == worktrees.canonicalize().ok().as_deref()
        || Some(&named_c) == common.canonicalize().ok().as_ref();
    if !another || wiped(t, spec_rel) {
        return None;
    }
    crate::fs::remove_file(&dotgit).ok()?;
    crate::fs::write_durable(
        &dotgit,
        format!("gitdir: {}\n", t.admin.display()).as_bytes(),
    )
    .ok()?;
    Some(format!(
        "the `.git` of its worktree `{}` named another git dir of the repository, `{}`, when its agent was done (its agent's doing?): qw never follows it, and made it name the task's own `{}` again",
        t.path.display(),
        named.display(),
        t.admin.display()
    ))
}

/// The git dir of a worktree git just made.
pub(crate) fn admin_of(path: &Path) -> Result<PathBuf> {
    Ok(PathBuf::from(
        git(path, &["rev-parse", "--absolute-git-dir"])?.trim(),
    ))
}

/// Mark a worktree's git dir as qw's, for `spec`'s task `task`.
pub(crate) fn write_marker(admin: &Path, spec: &str, task: &str) -> Result<()> {
    crate::fs::write(admin.join(MARKER), format!("{spec}\n{task}\n"))?;
    Ok(())
}

/// `(spec, task)` from a worktree's git dir, if qw made it.
pub(crate) fn read_marker(admin: &Path) -> Option<(String, String)> {
    let text = crate::fs::read_to_string(admin.join(MARKER)).ok()?;
    let mut lines = text.lines();
    let spec = lines.next()?.trim().to_owned();
    let task = lines.next()?.trim().to_owned();
    (!spec.is_empty() && !task.is_empty()).then_some((spec, task))
}

/// Take a worktree away (its work already saved): `git worktree remove`, else by hand —
/// the directory (made writable first), then its git dir. Returns warnings for what
/// could not be removed; nothing here fails.
pub(crate) fn remove_tree(repo: &Repo, path: &Path, admin: Option<&Path>) -> Vec<String> {
    let mut warnings = Vec::new();
    // What its reflog named stays its own (said when it was saved), not a later task's.
    if let Some(a) = admin {
        super::lost::remember_reflog(a);
    }
    // Not when another git dir's `gitdir` names the same place (an agent's, rev9 N9):
    // git would remove the one it finds first, perhaps a running sibling's record.
    if let Some(a) = admin
        && sound(path, a)
        && !claimed_elsewhere(path, a)
    {
        let p = path.to_string_lossy();
        let out = super::git_output(
            &repo.top,
            ["worktree", "remove", "--force", "--force", p.as_ref()],
            &[],
        );
        if out.is_ok_and(|o| o.status.success()) && path.symlink_metadata().is_err() {
            remove_empty_parent(path);
            return warnings;
        }
    }
    if path.symlink_metadata().is_ok() {
        make_writable(path);
        if let Err(e) = crate::fs::remove_dir_all(path) {
            warnings.push(format!(
                "could not remove the worktree directory `{}` ({e}); its work is saved on its branch — remove the directory by hand",
                path.display()
            ));
        }
    }
    // Its git dir goes too, so git no longer counts the branch as checked out there.
    if let Some(a) = admin
        && a.symlink_metadata().is_ok()
        && let Err(e) = crate::fs::remove_dir_all(a)
    {
        warnings.push(format!(
            "could not remove `{}` ({e}); `git worktree prune` will",
            a.display()
        ));
    }
    remove_empty_parent(path);
    warnings
}

/// Does a git dir beside `admin` (`<common>/worktrees/*`) name the worktree `path` in
/// its `gitdir` file too?
fn claimed_elsewhere(path: &Path, admin: &Path) -> bool {
    let Some(dir) = admin.parent() else {
        return false;
    };
    let Ok(entries) = crate::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let other = e.path();
        other != admin
            && crate::fs::read_regular_text(&other.join("gitdir"), 4096).is_ok_and(|text| {
                let named = Path::new(text.trim());
                let named = if named.is_absolute() {
                    named.to_path_buf()
                } else {
                    other.join(named)
                };
                super::same_path(&crate::fs::parent_dir(&named), path)
            })
    })
}

/// Remove the container when its last worktree is gone (tidy; failures ignored).
fn remove_empty_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        let _ = fs_err::remove_dir(parent);
    }
}

/// Give the owner write and search permission on every directory under `dir` (not
/// following links), so a tree the agent made read-only can be removed.
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = dir.symlink_metadata() else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = fs_err::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(entries) = crate::fs::read_dir(dir) {
        for e in entries.flatten() {
            make_writable(&e.path());
        }
    }
}

/// Does `dir` hold any file (anything but folders and links)?
pub(crate) fn holds_files(dir: &Path) -> Result<bool> {
    let meta = crate::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(!meta.file_type().is_symlink());
    }
    for entry in crate::fs::read_dir(dir)? {
        let entry = entry?;
        if holds_files(&entry.path())? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Put back what git needs of a task worktree's git dir (`<common>/worktrees/<id>`) when
/// its agent deleted or damaged it: the directory, `commondir`, `gitdir`, `HEAD` (the
/// task's branch), an index git can read (the branch's tree: the files are then compared
/// with it and saved as usual) and qw's marker. Returns what was put back, empty when
/// nothing was missing.
///
/// Without it a deleted git dir made every git of qw's fail there, so the worktree
/// counted as wiped and was removed with the agent's files in it ("they are not there",
/// rev8a F1), and a deleted `HEAD` or a garbled `commondir` or `index` failed every
/// `workflow-continue` until the user repaired git by hand (rev8a F9). Only for a worktree
/// of qw's own (a `qw/<spec>/<id>` branch that exists, or that qw recorded leaving
/// somewhere: `qw-left`) whose directory is there.
///
/// The task's branch deleted too (rev9 N5): made again where the worktree's HEAD
/// reflog last had it (the git dir still there), else where qw last left it (its
/// `qw-left` record: the task's start, or its last save). Its git dir gone and the
/// branch moved meanwhile to a commit that does not hold that start: nothing tells
/// where the worktree's HEAD was, so HEAD is put back detached at the recorded start
/// (the save then points the branch at the result, and keeps the commit it was moved
/// to apart, as for any moved branch).
///
/// A link in place of the git dir (to a sibling task's, rev9 N9) is never followed:
/// it is removed (a link holds nothing) and the git dir made again as if deleted. A
/// `gitdir` file naming another place than the worktree (a sibling's `.git`), when the
/// worktree was not moved there by `git worktree move`, is written again.
pub(crate) fn repair_admin(t: &Tree<'_>) -> Vec<String> {
    let mut done = Vec::new();
    let Some((spec, task)) = super::parse_branch(t.branch) else {
        return done;
    };
    let Some(common) = t
        .admin
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "worktrees"))
        .and_then(Path::parent)
    else {
        return done;
    };
    if !t.path.is_dir() {
        return done;
    }
    let branch_ref = format!("refs/heads/{}", t.branch);
    let commit_in = |rev: &str| -> Option<String> {
        let out = super::git_output(
            common,
            ["rev-parse", "-q", "--verify", &format!("{rev}^{{commit}}")],
            &[],
        )
        .ok()
        .filter(|o| o.status.success())?;
        let sha = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (!sha.is_empty()).then_some(sha)
    };
    let holds = |a: &str, b: &str| {
        super::git_output(common, ["merge-base", "--is-ancestor", a, b], &[])
            .is_ok_and(|o| o.status.success())
    };
    let mut tip = commit_in(&branch_ref);
    let start = super::owned::left_in(common, t.branch).and_then(|s| commit_in(&s));
    if tip.is_none() && start.is_none() {
        return done;
    }
    // A link where the git dir was (to a sibling task's): never followed, not even by
    // the clean-up below; removed (it holds nothing) and the git dir made again.
    if is_link(t.admin) {
        let to =
            fs_err::read_link(t.admin).map_or_else(|_| "?".to_owned(), |p| p.display().to_string());
        if crate::fs::remove_file(t.admin).is_err() {
            return done;
        }
        done.push(format!(
            "its git dir (a link to `{to}` was in its place: removed, not followed)"
        ));
    }
    // A FIFO, socket or device where git (and qw) read a file of the git dir would block
    // every git reading it, qw's `rev-list --all` in the main repository too (rev9 N2):
    // taken away, and put back below as git needs it.
    done.extend(
        defuse_admin(t.admin)
            .into_iter()
            .map(|name| format!("`{name}` (a named pipe or device was there)")),
    );
    let meta = t.admin.symlink_metadata();
    if meta.as_ref().is_ok_and(|m| !m.is_dir()) {
        // Something else in its place (a file): left alone, git says why.
        return done;
    }
    let fresh = meta.is_err();
    if fresh {
        if crate::fs::create_dir_all(t.admin).is_err() {
            return done;
        }
        if !done.iter().any(|d| d.starts_with("its git dir")) {
            done.push("its git dir".to_owned());
        }
    }
    // The branch deleted as well (rev9 N5): made again where HEAD's reflog last had it
    // (a commit on the recorded start's history), else at the recorded start.
    if tip.is_none() {
        let from = reflog(t.admin)
            .into_iter()
            .rev()
            .filter_map(|c| commit_in(&c))
            .find(|c| start.as_deref().is_none_or(|s| holds(s, c)))
            .or_else(|| start.clone());
        let Some(from) = from else {
            return done;
        };
        let made = super::git_output(
            common,
            [
                "update-ref",
                "-m",
                "qw: the task's branch, deleted while it ran, made again",
                &branch_ref,
                &from,
                "",
            ],
            &[],
        )
        .is_ok_and(|o| o.status.success());
        if !made {
            return done;
        }
        done.push(format!(
            "its branch `{}` (deleted while it ran: made again at {})",
            t.branch,
            super::short(&from)
        ));
        tip = Some(from);
    }
    // Written whole (temp file, rename): a git reading it meanwhile (another task's
    // look at every worktree) never sees it empty.
    let mut put = |name: &str, text: String, why: &str| {
        if crate::fs::write_durable(&t.admin.join(name), text.as_bytes()).is_ok() {
            done.push(why.to_owned());
        }
    };
    let common_ok = crate::fs::read_to_string(t.admin.join("commondir"))
        .ok()
        .map(|c| {
            let c = Path::new(c.trim());
            if c.is_absolute() {
                c.to_path_buf()
            } else {
                t.admin.join(c)
            }
        })
        .and_then(|c| c.canonicalize().ok())
        .zip(common.canonicalize().ok())
        .is_some_and(|(a, b)| a == b)
        // Unreadable for a moment is not garbled: only a file that names no git dir.
        || crate::fs::read_to_string(t.admin.join("commondir"))
            .is_ok_and(|c| {
                let c = std::path::Path::new(c.trim());
                let c = if c.is_absolute() { c.to_path_buf() } else { t.admin.join(c) };
                c.join("objects").is_dir()
            });
    if !common_ok {
        put("commondir", "../..\n".to_owned(), "`commondir`");
    }
    let dotgit = t.path.join(".git");
    match crate::fs::read_to_string(t.admin.join("gitdir")) {
        Err(_) => put("gitdir", format!("{}\n", dotgit.display()), "`gitdir`"),
        // Naming another place (a sibling task's worktree): git would take that
        // worktree for this one (`git worktree remove` of it, `list`). Not when the
        // agent moved its worktree there (`git worktree move`: a sound worktree).
        Ok(text) => {
            let named = Path::new(text.trim());
            let named = if named.is_absolute() {
                named.to_path_buf()
            } else {
                t.admin.join(named)
            };
            let named_dir = crate::fs::parent_dir(&named);
            if !super::same_path(&named_dir, t.path)
                && super::salvage::moved_to(t.path, t.admin).is_none()
            {
                put(
                    "gitdir",
                    format!("{}\n", dotgit.display()),
                    &format!("`gitdir` (it named `{}`)", named.display()),
                );
            }
        }
    }
    let head_ok = !fresh
        && crate::fs::read_to_string(t.admin.join("HEAD")).is_ok_and(|h| {
            let h = h.trim();
            h.starts_with("ref: refs/")
                || (h.len() >= 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        });
    if !head_ok {
        match (&tip, &start) {
            // The branch moved, while its git dir was gone, to a commit of another
            // history (neither holding where qw left it nor held by it): HEAD where qw
            // last left the branch.
            (Some(tip), Some(start)) if !holds(start, tip) && !holds(tip, start) => put(
                "HEAD",
                format!("{start}\n"),
                &format!(
                    "`HEAD` (at {}, where qw last left the task's branch: the branch had been moved to {}, a commit of another history)",
                    super::short(start),
                    super::short(tip)
                ),
            ),
            _ => put(
                "HEAD",
                format!("ref: {branch_ref}\n"),
                "`HEAD` (its branch)",
            ),
        }
    }
    if read_marker(t.admin).is_none() && write_marker(t.admin, spec, task).is_ok() {
        done.push("qw's marker".to_owned());
    }
    // An index git cannot read (deleted, garbled): HEAD's tree (the branch's), so the
    // files are compared with it and what differs is saved.
    let index_ok = t.admin.join("index").is_file()
        && t.output(&["ls-files", "-z", "--", ":(literal).git-never"])
            .is_ok_and(|o| o.status.success());
    if !index_ok {
        let _ = crate::fs::remove_file(t.admin.join("index"));
        if t.output(&["read-tree", "HEAD"])
            .is_ok_and(|o| o.status.success())
        {
            done.push("its index (from its branch)".to_owned());
        }
    }
    done
}

/// The files of a worktree's git dir git reads (every git with `--all` reads each
/// worktree's `HEAD` and reflog).
const ADMIN_READS: [&str; 10] = [
    "HEAD",
    "commondir",
    "gitdir",
    "index",
    "ORIG_HEAD",
    "FETCH_HEAD",
    "MERGE_HEAD",
    "logs/HEAD",
    MARKER,
    "locked",
];

/// A FIFO, socket or device: a file git (or qw) opening would wait on for good.
fn special(ty: std::fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    ty.is_fifo() || ty.is_socket() || ty.is_block_device() || ty.is_char_device()
}

/// What `p` is (not followed) is [`special`].
fn special_at(p: &Path) -> bool {
    p.symlink_metadata().is_ok_and(|m| special(m.file_type()))
}

/// Remove FIFOs, sockets and devices where git reads a file of the worktree git dir
/// `admin` ([`ADMIN_READS`]); the names removed. They hold nothing, and git (or qw)
/// opening one would wait forever (rev9 N2).
pub(crate) fn defuse_admin(admin: &Path) -> Vec<String> {
    ADMIN_READS
        .iter()
        .filter(|name| {
            let p = admin.join(name);
            special_at(&p) && crate::fs::remove_file(&p).is_ok()
        })
        .map(|n| (*n).to_owned())
        .collect()
}

/// [`defuse_admin`] for every worktree of the common git dir `common`, and its shared
/// `packed-refs`: before a git of qw's that reads every worktree's refs (`--all`,
/// `worktree list`), which an agent's FIFO in any of them (its own or a sibling's) would
/// hang for good.
pub(crate) fn defuse_common(common: &Path) {
    let packed = common.join("packed-refs");
    if special_at(&packed) {
        let _ = crate::fs::remove_file(&packed);
    }
    if let Ok(dirs) = crate::fs::read_dir(common.join("worktrees")) {
        for d in dirs.flatten() {
            defuse_admin(&d.path());
        }
    }
}

/// The line telling what [`repair_admin`] put back, `None` when nothing.
pub(crate) fn repaired_line(t: &Tree<'_>, done: &[String]) -> Option<String> {
    (!done.is_empty()).then(|| {
        format!(
            "the git dir `{}` of its worktree `{}` was deleted or damaged while it ran (by its agent?): qw put back {}, so its files are saved as usual",
            t.admin.display(),
            t.path.display(),
            done.join(", ")
        )
    })
}

/// The names git opens with a plain blocking `open()` wherever it meets them in a work
/// tree (per directory while walking it, or for `git add`/`status`/`check-attr`).
pub(crate) const GIT_READS: [&str; 3] = [".gitignore", ".gitattributes", ".gitmodules"];

/// Remove FIFOs, sockets and devices named like the files git reads in every directory
/// ([`GIT_READS`]) from the work tree at `path`, and return their paths (relative).
///
/// git opens each `.gitignore` it meets with a blocking `open()`: a FIFO there (a build
/// tool's named pipe, or an agent's `mkfifo`) made qw's save — `git ls-files --others`,
/// `git add -A` — wait forever holding the repository lock, past Ctrl-C, and every
/// `workflow-continue` after it (rev8b F11). Such a file holds no work (git cannot commit
/// it, and a FIFO keeps no bytes), so taking it away loses nothing; the caller says so.
/// Called when the agent's processes are gone (nothing else writes the work tree), and
/// before qw's own git reads a worktree that was left behind. Links are not followed
/// (git opens these names with `O_NOFOLLOW`); `.git` directories are not entered.
pub(crate) fn defuse_special(path: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = crate::fs::read_dir(path.join(&rel)) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(ty) = entry.file_type() else { continue };
            let name = entry.file_name();
            if ty.is_dir() {
                if name != ".git" {
                    stack.push(rel.join(&name));
                }
                continue;
            }
            if special(ty)
                && GIT_READS.iter().any(|n| name == *n)
                && crate::fs::remove_file(entry.path()).is_ok()
            {
                removed.push(rel.join(&name).to_string_lossy().into_owned());
            }
        }
    }
    removed.sort();
    removed
}

/// The line telling what [`defuse_special`] took away, `None` when nothing.
pub(crate) fn defused_line(path: &Path, removed: &[String]) -> Option<String> {
    (!removed.is_empty()).then(|| {
        format!(
            "removed {} from the worktree `{}`: a named pipe, socket or device git would block reading (it holds no work and git cannot commit it)",
            removed
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", "),
            path.display()
        )
    })
}

/// Uncommitted changes in a worktree, leaving out the spec link qw put there and the
/// copies of the user's Claude Code files.
pub(crate) fn dirty(repo: &Repo, path: &Path, admin: &Path, spec: &str) -> Result<bool> {
    if !path.is_dir() {
        return Ok(false);
    }
    defuse_special(path);
    let t = Tree::new(path, admin, "");
    let out = t.output(&["status", "--porcelain=v1", "-z"])?;
    if !out.status.success() {
        return Err(WorktreeError::Git {
            args: "status --porcelain=v1 -z".into(),
            dir: path.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let spec_rel = repo.spec_rel(spec);
    // The copies of the user's Claude Code files are not the task's work either.
    let copies = super::copies::recorded(admin);
    Ok(super::parse_status_z(&String::from_utf8_lossy(&out.stdout))
        .iter()
        .any(|p| {
            let p = p.trim_end_matches('/');
            p != spec_rel
                && !p.starts_with(&format!("{spec_rel}/"))
                && !super::copies::is_copy(&copies, p)
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(to: &str, message: &str) -> LogLine {
        LogLine {
            from: String::new(),
            to: to.to_owned(),
            time: 0,
            message: message.to_owned(),
        }
    }

    #[test]
    fn rewritten_later_sees_amends_squashes_and_reset_then_commit_only_after_the_commit() {
        let amend = [entry("a", "commit: a"), entry("b", "commit (amend): a")];
        assert!(rewritten_later(&amend, "a"));
        assert!(!rewritten_later(&amend, "b"));
        let squash = [
            entry("a", "commit: a"),
            entry("b", "commit: b"),
            entry("s", "reset: moving to HEAD~2"),
            entry("c", "commit: squashed"),
        ];
        assert!(rewritten_later(&squash, "a") && rewritten_later(&squash, "b"));
        // A reset with no commit after it, a rebase, a plain move: no rewrite.
        let moved = [
            entry("s", "reset: moving to HEAD"),
            entry("a", "commit: a"),
            entry("d", "checkout: moving from x to HEAD~1"),
            entry("t", "commit: theirs"),
            entry("a", "rebase (start): checkout x"),
            entry("r", "reset: moving to HEAD~1"),
        ];
        assert!(!rewritten_later(&moved, "t"));
        assert!(!rewritten_later(&moved, "zz"));
    }

    #[test]
    fn in_progress_names_the_operation() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(in_progress(d.path()), None);
        crate::fs::create_dir_all(d.path().join("rebase-merge")).unwrap();
        assert_eq!(in_progress(d.path()), Some("a rebase"));
        crate::fs::write(d.path().join("MERGE_HEAD"), "x").unwrap();
        assert_eq!(in_progress(d.path()), Some("a merge"));
    }

    #[test]
    fn in_progress_verb_names_the_command_that_finishes_it() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(in_progress_verb(d.path()), None);
        crate::fs::create_dir_all(d.path().join("rebase-apply")).unwrap();
        assert_eq!(in_progress_verb(d.path()), Some("rebase"));
        crate::fs::write(d.path().join("rebase-apply/applying"), "").unwrap();
        assert_eq!(in_progress_verb(d.path()), Some("am"));
        crate::fs::write(d.path().join("REVERT_HEAD"), "x").unwrap();
        assert_eq!(in_progress_verb(d.path()), Some("am"));
        crate::fs::write(d.path().join("MERGE_HEAD"), "x").unwrap();
        assert_eq!(in_progress_verb(d.path()), Some("merge"));
    }

    #[test]
    fn marker_round_trips() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_marker(d.path()), None);
        write_marker(d.path(), "user-auth", "2.1").unwrap();
        assert_eq!(
            read_marker(d.path()),
            Some(("user-auth".into(), "2.1".into()))
        );
    }

    #[test]
    fn reflog_reads_new_values_and_skips_junk() {
        let d = tempfile::tempdir().unwrap();
        crate::fs::create_dir_all(d.path().join("logs")).unwrap();
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        crate::fs::write(
            d.path().join("logs/HEAD"),
            format!(
                "{} {a} T <t> 1 +0000\tcreate\n{a} {b} T <t> 2 +0000\tcommit\ngarbage\n",
                "0".repeat(40)
            ),
        )
        .unwrap();
        assert_eq!(reflog(d.path()), vec![a, b]);
    }

    #[test]
    fn make_writable_then_remove() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let inner = d.path().join("t/a/b");
        crate::fs::create_dir_all(&inner).unwrap();
        crate::fs::write(inner.join("f"), "x").unwrap();
        for p in [
            d.path().join("t/a/b"),
            d.path().join("t/a"),
            d.path().join("t"),
        ] {
            fs_err::set_permissions(&p, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        make_writable(&d.path().join("t"));
        crate::fs::remove_dir_all(d.path().join("t")).unwrap();
    }
}
