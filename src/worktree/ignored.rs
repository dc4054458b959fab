//! What a task's result may not bring into the target unseen: files the main worktree
//! ignores (rev8b F3), and changes under the project's `.claude/` (rev8a F5, rev8b F8).
//!
//! Owns: telling, before a merge, which paths a task's result adds that the main
//! worktree's ignore rules (`.gitignore`, `info/exclude` — where qw lists its own
//! runtime files —, `core.excludesFile`) hide. qw saves a task with `git add -A`, which
//! never adds an ignored file, so such a path is an agent's `git add -f`; and `git merge`
//! replaces an ignored file silently (`--overwrite-ignore` is its default): the user's
//! `.env`, `.claude/settings.local.json` in a repository that ignores `.claude/`, or qw's
//! own state backups would be overwritten or deleted by the merge without a word.
//! Must not: refuse a path the target already tracks (a file force-added long ago is the
//! user's to change), or change anything: the caller refuses the merge and keeps the
//! branch.

use super::{Repo, Result, WorktreeHandle, lost, quote, shell};

/// Paths `result` adds (against its merge base with `target`) that the main worktree
/// ignores and the result's own rules ignore too (the task's `worktree`, whose files are
/// the result, is asked), sorted; empty when none. A path the result itself stops
/// ignoring (a task that edits `.gitignore` to track `docs/*.pdf`) was not forced: it is
/// merged, and git's `--no-overwrite-ignore` refuses it if a file of the user's is there
/// (rev9 N3).
fn added_ignored(
    repo: &Repo,
    result: &str,
    target: &str,
    (worktree, admin): (&std::path::Path, &std::path::Path),
) -> Result<Vec<String>> {
    let range = format!("{target}...{result}");
    let added = super::git(
        &repo.top,
        &[
            "diff",
            "--no-renames",
            "--no-ext-diff",
            "--no-textconv",
            "--name-only",
            "--diff-filter=A",
            "-z",
            &range,
            "--",
        ],
    )?;
    let input: String = added
        .split('\0')
        .filter(|p| !p.is_empty())
        .flat_map(|p| [p, "\0"])
        .collect();
    if input.is_empty() {
        return Ok(Vec::new());
    }
    // `--no-index`: the rules alone (the paths are not in the main index anyway).
    let out = lost::git_stdin(
        repo,
        &["check-ignore", "--no-index", "-z", "--stdin"],
        &input,
    )?;
    let in_main: Vec<&str> = out.split('\0').filter(|p| !p.is_empty()).collect();
    if in_main.is_empty() {
        return Ok(Vec::new());
    }
    let input: String = in_main.iter().flat_map(|p| [*p, "\0"]).collect();
    let out = check_ignore_in(worktree, admin, &input)?;
    let mut paths: Vec<String> = out
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// `git check-ignore --no-index -z --stdin` in `dir` with `input`: the paths ignored.
fn check_ignore_in(dir: &std::path::Path, admin: &std::path::Path, input: &str) -> Result<String> {
    // Named explicitly: a worktree whose `.git` was deleted is still read as itself.
    let pre = [
        std::ffi::OsStr::new("--git-dir"),
        admin.as_os_str(),
        std::ffi::OsStr::new("--work-tree"),
        dir.as_os_str(),
    ];
    let out = super::git_stdin_in(
        dir,
        &pre,
        &["check-ignore", "--no-index", "-z", "--stdin"],
        input.as_bytes().to_vec(),
    )?;
    // Exit 1: none ignored.
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Paths under the project's `.claude/` that `result` adds, changes or deletes (against
/// its merge base with `target`), its own spec folder (`own_spec`, kept as the target
/// has it by the save) left out; sorted, empty when none.
///
/// `.claude/` is where Claude Code reads its permissions, hooks, commands and subagents
/// and qw its settings and every spec's task list and checks: a change there merged with
/// a task's work would take effect in every later session and run without anyone having
/// looked at it (an agent granting itself `Bash(*)`, weakening another spec's
/// `_Verify:_`, rev8a F5, rev8b F8).
fn claude_paths(repo: &Repo, result: &str, target: &str, own_spec: &str) -> Result<Vec<String>> {
    let range = format!("{target}...{result}");
    let dir = format!("{}.claude/", repo.prefix);
    let own = format!("{own_spec}/");
    let changed = super::git(
        &repo.top,
        &[
            "diff",
            "--no-renames",
            "--no-ext-diff",
            "--no-textconv",
            "--name-only",
            "-z",
            &range,
            "--",
            &format!(":(literal){dir}"),
        ],
    )?;
    let mut paths: Vec<String> = changed
        .split('\0')
        .filter(|p| !p.is_empty() && p.starts_with(&dir) && !p.starts_with(&own))
        .map(str::to_owned)
        .collect();
    paths.sort();
    Ok(paths)
}

/// The line refusing `h`'s `result` (not merged into `integration`, its branch kept)
/// when it forces in paths the main worktree ignores ([`added_ignored`]) or changes the
/// project's `.claude/` ([`claude_paths`]); `None` when it does neither.
pub(crate) fn refusal(
    repo: &Repo,
    h: &WorktreeHandle,
    result: &str,
    target: &str,
    integration: &str,
    spec: &str,
) -> Result<Option<String>> {
    let task_id = &h.task_id;
    let tail = |take: &str| kept_tail(&h.branch, integration, spec, take);
    let forced = added_ignored(repo, result, target, (&h.path, &h.admin))?;
    if !forced.is_empty() {
        return Ok(Some(format!(
            "task {task_id}'s result adds {}, which the main worktree ignores (its `.gitignore`, `.git/info/exclude` or `core.excludesFile`): qw never commits an ignored file, so the agent forced it in (`git add -f`), and merging would overwrite or delete the ignored file of that name in the main worktree without a word; {}",
            shown(&forced),
            tail("to take it anyway"),
        )));
    }
    let claude = claude_paths(repo, result, target, &repo.spec_rel(spec))?;
    if !claude.is_empty() {
        return Ok(Some(format!(
            "task {task_id}'s result changes {}, under `.claude/`, where Claude Code reads its permissions, hooks and commands and qw every spec's tasks and checks: merged unseen, such a change would take effect in every later session; {}",
            shown(&claude),
            tail("to take it"),
        )));
    }
    Ok(None)
}

/// The end of a refusal's line: not merged, the branch kept, how to look at it, merge
/// it by hand (`take`: "to take it") or run the task again.
fn kept_tail(branch: &str, integration: &str, spec: &str, take: &str) -> String {
    format!(
        "not merged into `{integration}`, the branch `{branch}` is kept — look at it (`git show --stat {b}`), and {take} merge it by hand (`git merge {b}`) and run `{c}`; or delete it (`git branch -D {b}`) and run `{c}` to run the task again",
        b = quote(branch),
        c = shell::continue_cmd(spec),
    )
}

/// The first paths, quoted, and how many more.
fn shown(paths: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut shown = paths
        .iter()
        .take(SHOWN)
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > SHOWN {
        shown.push_str(&format!(" and {} more", paths.len() - SHOWN));
    }
    shown
}
