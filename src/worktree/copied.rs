//! A task's result holding *copies* of another task's unmerged commits (rev6b G9).
//!
//! [`Worktrees::brings_other_tasks`] refuses a result that holds a sibling's commits by
//! ancestry (a rebase onto or a merge of its branch). A copy has a new id and the same
//! change: `git cherry-pick` (with or without `-x`), `git rebase --onto` of the sibling's
//! commits, `git format-patch | git am`, `git cherry-pick -n` then a commit of the task's
//! own, `git merge --squash` of the sibling's branch. Merging it would bring a sibling's
//! work — maybe the work of a task that failed its check — into the target, which it must
//! reach only through its own check and merge. This compares changes, not ids: `git
//! patch-id --stable` (line numbers and whitespace left out) of each of the result's own
//! commits against each unmerged commit of every other task branch and task worktree, and
//! against each run of such commits squashed (from the oldest the target lacks up to
//! each later one, along the first parents: a squash of the first `k`). A match is
//! refused like a sibling's commit held by ancestry.
//!
//! What it does not count:
//! - a change the target already has (its commits past the result, read as patch-ids):
//!   two tasks both picking the same commit of the target copy nobody's unmerged work;
//! - a sibling whose commits are on the target (it passed and merged): the copy is then
//!   a change both sides made, which git's merge takes once;
//! - a result's commit made *before* the sibling's (committer time, whole seconds): the
//!   sibling copied the result's, not the other way round (the sibling's own merge is
//!   refused for it then). Made in the same second, the reflogs decide: the result's
//!   commit made by `commit` and the sibling's by a `cherry-pick`, a rebase or `git am`
//!   is the original; otherwise it counts as a copy (refusing loses nothing).
//!
//! Author and date are not compared: `cherry-pick -n` and a squash make a new author
//! date, and every task's agent usually commits as the same user. So an independent
//! change that is byte for byte a sibling's whole commit (or its first `k` squashed) is
//! refused as well; it is kept on its branch, and merges once the sibling merged or its
//! branch is deleted, as the line says. A change only partly a sibling's (the sibling's
//! commit squashed together with the task's own edits, a run of the sibling's commits
//! not starting at its oldest unmerged one) is not found.
//!
//! Bounded: at most [`MAX_COMMITS`] commits on each side are read — the result's past
//! the target, each other task tip's past the target and the result, the target's past
//! the result — as two `git diff-tree --stdin | git patch-id --stable` pipelines for all
//! of them, plus one `git log` per other task tip.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::origin::made_in;
use super::tree;
use super::{Repo, Result, WorktreeHandle, Worktrees, git, parse_branch, short};

/// At most this many commits are read on each side (see the module's doc).
pub(crate) const MAX_COMMITS: usize = 300;

/// The empty tree: the base of a run that starts at a root commit.
const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// A commit of the result whose change is another task's unmerged commit, or a run of
/// them squashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Copied {
    /// The result's commit.
    pub(crate) ours: String,
    /// The other task's branch (or the branch its worktree's HEAD names).
    pub(crate) branch: String,
    /// The other task's commit(s) it copies, oldest first (more than one: squashed).
    pub(crate) theirs: Vec<String>,
}

/// One commit as `git log --format='%H %ct %P'` tells it.
#[derive(Debug, Clone)]
struct Commit {
    id: String,
    time: i64,
    parents: Vec<String>,
}

/// What a sibling's change can be copied as: one commit, or its commits from the
/// oldest unmerged one up to `commits.last()` squashed.
#[derive(Debug, Clone)]
struct Unit {
    branch: String,
    commits: Vec<String>,
    /// When its newest commit was made (the copy cannot be older).
    time: i64,
}

/// The commits `git log --format='%H %ct %P' <args>` lists (newest first).
fn log(repo: &Repo, args: &[&str]) -> Result<Vec<Commit>> {
    let max = format!("--max-count={MAX_COMMITS}");
    let mut all = vec!["log", "--format=%H %ct %P", max.as_str()];
    all.extend_from_slice(args);
    Ok(git(&repo.top, &all)?
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let id = w.next()?.to_owned();
            let time = w.next()?.parse().ok()?;
            Some(Commit {
                id,
                time,
                parents: w.map(str::to_owned).collect(),
            })
        })
        .collect())
}

/// Run git with `input` on stdin; its stdout as bytes, or the error naming the command.
fn piped(repo: &Repo, args: &[&str], input: Vec<u8>) -> Result<Vec<u8>> {
    let out = super::git_stdin_in(&repo.top, &[], args, input)?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(super::git_error(&repo.top, args, &out))
    }
}

/// `key → patch-id` of the diffs `git diff-tree --stdin` makes of `lines` (each a commit,
/// or `<tip> <base>`: the diff from base to tip, keyed by the tip). A change that is
/// empty has no patch-id.
fn patch_ids(repo: &Repo, lines: &[String]) -> Result<BTreeMap<String, String>> {
    if lines.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut input = lines.join("\n").into_bytes();
    input.push(b'\n');
    // `--binary`: two different changes of one binary file are not the same patch.
    // The project's `.claude/` left out: qw's own put-back of the spec link an agent's
    // `git add -A` committed is the same change in every task (rev9 N6: one failed task
    // made every later sibling "a copy" of it), and a result changing `.claude/` is
    // refused on its own (`ignored::claude_paths`).
    let claude = format!(":(top,exclude){}.claude/", repo.prefix);
    let diffs = piped(
        repo,
        &[
            "diff-tree",
            "--stdin",
            "-r",
            "-p",
            "--root",
            "--binary",
            "--no-renames",
            "--",
            ":(top)",
            &claude,
        ],
        input,
    )?;
    let ids = piped(repo, &["patch-id", "--stable"], diffs)?;
    Ok(String::from_utf8_lossy(&ids)
        .lines()
        .filter_map(|l| {
            let (pid, key) = l.split_once(' ')?;
            Some((key.trim().to_owned(), pid.to_owned()))
        })
        .collect())
}

/// The commits of `result` (on `our_branch`, past `target`) that copy another task's
/// unmerged work: each of `others` (`(branch, tip)`) read past the target and the
/// result, commits `own` (made in the task's worktree) left out. Made in the same
/// second as the sibling's, a commit is the copy unless `made_by_copy(branch, commit)`
/// says the sibling's was made by a copying command and the result's was not.
pub(crate) fn copies(
    repo: &Repo,
    (result, our_branch): (&str, &str),
    target: &str,
    others: &[(String, String)],
    own: &BTreeSet<String>,
    made_by_copy: &dyn Fn(&str, &str) -> bool,
) -> Result<Vec<Copied>> {
    let ours = log(repo, &["--no-merges", result, "--not", target, "--"])?;
    if ours.is_empty() {
        return Ok(Vec::new());
    }
    let mut units: Vec<Unit> = Vec::new();
    let mut ranges: Vec<(Unit, String)> = Vec::new();
    let mut seen_tips = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (branch, tip) in others {
        // An unborn HEAD (`git checkout --orphan`) reads as zeros: nothing to compare.
        if !seen_tips.insert(tip.clone()) || !tree::is_commit(repo, tip) {
            continue;
        }
        let theirs = log(repo, &[tip, "--not", target, result, "--"])?;
        let by_id: BTreeMap<&str, &Commit> = theirs.iter().map(|c| (c.id.as_str(), c)).collect();
        for c in &theirs {
            if c.parents.len() < 2 && !own.contains(&c.id) && seen.insert(c.id.clone()) {
                units.push(Unit {
                    branch: branch.clone(),
                    commits: vec![c.id.clone()],
                    time: c.time,
                });
            }
        }
        // The first-parent chain from the tip down to the oldest commit read.
        let mut chain: Vec<&Commit> = Vec::new();
        let mut at = by_id.get(tip.as_str()).copied();
        while let Some(c) = at {
            chain.push(c);
            at = c
                .parents
                .first()
                .and_then(|p| by_id.get(p.as_str()).copied());
        }
        chain.reverse();
        let Some(first) = chain.first() else {
            continue;
        };
        let base = first
            .parents
            .first()
            .cloned()
            .unwrap_or_else(|| EMPTY_TREE.to_owned());
        let mut time = first.time;
        for k in 1..chain.len() {
            time = time.max(chain[k].time);
            let commits: Vec<String> = chain[..=k].iter().map(|c| c.id.clone()).collect();
            if commits.iter().any(|c| own.contains(c)) {
                break;
            }
            ranges.push((
                Unit {
                    branch: branch.clone(),
                    commits,
                    time,
                },
                base.clone(),
            ));
        }
    }
    if units.is_empty() && ranges.is_empty() {
        return Ok(Vec::new());
    }
    let in_target = log(repo, &["--no-merges", target, "--not", result, "--"])?;
    let singles: Vec<String> = ours
        .iter()
        .map(|c| c.id.clone())
        .chain(units.iter().map(|u| u.commits[0].clone()))
        .chain(in_target.iter().map(|c| c.id.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let single_ids = patch_ids(repo, &singles)?;
    // Keyed by the run's newest commit: the first run found for it is kept.
    let mut range_lines: Vec<String> = Vec::new();
    let mut range_units: BTreeMap<String, Unit> = BTreeMap::new();
    for (u, base) in ranges {
        let tip = u.commits[u.commits.len() - 1].clone();
        if let std::collections::btree_map::Entry::Vacant(e) = range_units.entry(tip) {
            range_lines.push(format!("{} {base}", e.key()));
            e.insert(u);
        }
    }
    let range_ids = patch_ids(repo, &range_lines)?;
    let known: BTreeSet<&String> = in_target
        .iter()
        .filter_map(|c| single_ids.get(&c.id))
        .collect();
    let candidates = units
        .iter()
        .filter_map(|u| single_ids.get(&u.commits[0]).map(|p| (p, u)))
        .chain(
            range_units
                .iter()
                .filter_map(|(tip, u)| range_ids.get(tip).map(|p| (p, u))),
        );
    let mut by_patch: BTreeMap<&String, Vec<&Unit>> = BTreeMap::new();
    for (p, u) in candidates {
        if !known.contains(p) {
            by_patch.entry(p).or_default().push(u);
        }
    }
    let mut found = Vec::new();
    // Oldest first, as the result's history reads.
    for c in ours.iter().rev() {
        let Some(p) = single_ids.get(&c.id) else {
            continue;
        };
        let Some(u) = by_patch.get(p).and_then(|us| {
            us.iter().find(|u| {
                c.time > u.time
                    || c.time == u.time
                        && (made_by_copy(our_branch, &c.id)
                            || !u.commits.iter().any(|t| made_by_copy(&u.branch, t)))
            })
        }) else {
            continue;
        };
        found.push(Copied {
            ours: c.id.clone(),
            branch: u.branch.clone(),
            theirs: u.commits.clone(),
        });
    }
    Ok(found)
}

/// Was `commit` made by a command that copies a commit — `cherry-pick`, a rebase's
/// pick, `git am` — as the reflogs of `branch` and of the worktree whose git dir is
/// `admin` say? Only asked of two matching commits made in the same second.
fn made_by_copy(repo: &Repo, branch: &str, admin: Option<&PathBuf>, commit: &str) -> bool {
    let copying = |m: &str| {
        let m = m.trim_start();
        m.starts_with("cherry-pick") || m.starts_with("am:") || m.starts_with("rebase")
    };
    if admin.is_some_and(|a| {
        tree::reflog_entries(a)
            .iter()
            .any(|(c, m)| c == commit && copying(m))
    }) {
        return true;
    }
    let r = format!("refs/heads/{branch}");
    git(
        &repo.top,
        &["reflog", "show", "--format=%H%x09%gs", r.as_str(), "--"],
    )
    .is_ok_and(|out| {
        out.lines()
            .filter_map(|l| l.split_once('\t'))
            .any(|(c, m)| c == commit && copying(m))
    })
}

/// For `qw worktrees --prune`'s line of a kept task `branch` (as
/// [`super::cross::others_in_kept`] for commits held by ancestry): when some of its
/// commits past `head` copy commits of the other task branches `others` that `head`
/// lacks, the line that replaces "merge it": the copies named, and the way to keep only
/// the rest (or to delete the branch). `None` when it holds no copy.
pub(crate) fn copies_in_kept(
    repo: &Repo,
    branch: &str,
    head: &str,
    others: &[String],
) -> Option<String> {
    let tip = repo.commit_of(&format!("refs/heads/{branch}")).ok()??;
    let tips: Vec<(String, String)> = others
        .iter()
        .filter_map(|o| {
            let c = repo.commit_of(&format!("refs/heads/{o}")).ok()??;
            Some((o.clone(), c))
        })
        .collect();
    let by_copy = |b: &str, c: &str| made_by_copy(repo, b, None, c);
    let found = copies(
        repo,
        (&tip, branch),
        head,
        &tips,
        &BTreeSet::new(),
        &by_copy,
    )
    .ok()?;
    if found.is_empty() {
        return None;
    }
    let copied: BTreeSet<&str> = found.iter().map(|c| c.ours.as_str()).collect();
    let not_head = format!("^{head}");
    let mine: Vec<String> = git(
        &repo.top,
        &[
            "rev-list",
            "--reverse",
            "--topo-order",
            "--no-merges",
            branch,
            &not_head,
        ],
    )
    .ok()?
    .split_whitespace()
    .filter(|c| !copied.contains(c))
    .map(str::to_owned)
    .collect();
    let onto = super::cross::kept_onto(repo, head);
    let way = super::cross::kept_way(repo, branch, &onto, &mine)?;
    Some(format!(
        "kept branch `{branch}`: it holds {} copy(ies) of commits of another task that qw has not merged ({}), so do not merge it as it is — another task's work reaches `{onto}` only through that task's own check and merge; {way}",
        found.len(),
        named(&found, None).join(", ")
    ))
}

/// Each copy as `<ours> is a copy of <theirs> of task <t> (task branch `…`)`; the
/// task named with its spec unless it is `spec`'s.
fn named(found: &[Copied], spec: Option<&str>) -> Vec<String> {
    found
        .iter()
        .map(|c| {
            let whose = match parse_branch(&c.branch) {
                Some((s, t)) if Some(s) == spec => format!("task {t}"),
                Some((s, t)) => format!("task {t} of spec `{s}`"),
                None => format!("branch `{}`", c.branch),
            };
            let theirs = copies_of(&c.theirs);
            format!(
                "{} is {theirs} of {whose} (task branch `{}`)",
                short(&c.ours),
                c.branch
            )
        })
        .collect()
}

impl Worktrees {
    /// A result holding copies of another task's unmerged commits (see the module's
    /// doc): the line that refuses it — naming each copy, the other task's branch and
    /// commit(s), and the way on — or `None`.
    pub(crate) fn copies_other_tasks(
        &self,
        h: &WorktreeHandle,
        result: &str,
        others_of: &super::cross::OtherTasks,
    ) -> Result<Option<String>> {
        let target = self.target();
        let own = made_in(&h.admin);
        let mut others: Vec<(String, String)> = others_of.tips.clone();
        // A sibling's worktree whose HEAD is not its branch (detached, another branch).
        for w in others_of.worktrees.iter().filter(|w| !w.own) {
            if let Some(head) = &w.head {
                others.push((w.branch.clone(), head.clone()));
            }
        }
        let mut admins: BTreeMap<String, PathBuf> = BTreeMap::new();
        admins.insert(h.branch.clone(), h.admin.clone());
        for w in &others_of.worktrees {
            if let Some(admin) = &w.admin {
                admins
                    .entry(w.branch.clone())
                    .or_insert_with(|| admin.clone());
            }
        }
        let by_copy = |branch: &str, commit: &str| {
            made_by_copy(&self.repo, branch, admins.get(branch), commit)
        };
        let found = copies(
            &self.repo,
            (result, &h.branch),
            &target,
            &others,
            &own,
            &by_copy,
        )?;
        if found.is_empty() {
            return Ok(None);
        }
        let task = &h.task_id;
        let named = named(&found, Some(&self.spec));
        let tasks: BTreeSet<String> = found.iter().map(|c| format!("`{}`", c.branch)).collect();
        let copies: BTreeSet<String> = found.iter().map(|c| c.ours.clone()).collect();
        let tasks: Vec<String> = tasks.into_iter().collect();
        Ok(Some(format!(
            "task {task}'s result copies commits of another task that qw has not merged: {} (its agent's cherry-pick, rebase, `git am` or squash of another task's commits?), so it was not merged: another task's work reaches `{}` only through that task's own check and merge; task {task}'s result is kept on branch `{}` ({}); {}; or, should it be task {task}'s own change that only matches, `{}` merges it once {} is merged into `{}` or deleted",
            named.join(", "),
            self.integration,
            h.branch,
            short(result),
            self.own_only_hint(h, result, &own, &copies)?,
            super::shell::continue_cmd(&self.spec),
            tasks.join(", "),
            self.integration,
        )))
    }
}

/// At most this many of the user's unmerged local branches (the most recently committed
/// first) are compared with a result (see [`Worktrees::copies_user_branches`]).
pub(crate) const MAX_USER_BRANCHES: usize = 50;

/// What [`Worktrees::copies_user_branches`] found.
#[derive(Debug, Clone, Default)]
pub(crate) struct UserCopies {
    /// The line refusing the result, when it copies a user branch's commits.
    pub(crate) refused: Option<String>,
    /// Branches left out of the comparison (over the bounds), said as a note.
    pub(crate) skipped: Option<String>,
}

impl Worktrees {
    /// A result holding copies of commits of the user's own unmerged local branches
    /// (rev8a F8 rest): the agent's `git cherry-pick <commit of userfeat>` or `git merge
    /// --squash userfeat` then a commit. The commits themselves are refused by
    /// [`Worktrees::brings_user_branches`] (by ancestry); a copy has a new id, so the
    /// changes are compared as for another task's ([`copies`]: patch-ids of the result's
    /// commits against each unmerged commit of the branch, and each run of them squashed
    /// from its oldest). qw's branches (the target, `qw/…`, `qw-kept/…`) are not the
    /// user's. Bounded: the [`MAX_USER_BRANCHES`] most recently committed branches the
    /// target has not merged, each only when it holds at most [`MAX_COMMITS`] commits
    /// the target and the result lack; the others are named in `skipped`.
    ///
    /// A file copied out of the branch (`git checkout userfeat -- file`) is no commit's
    /// change: it is found only when it makes up a whole commit of the result that is
    /// the same change as one of the branch's commits (or a run of them).
    pub(crate) fn copies_user_branches(
        &self,
        h: &WorktreeHandle,
        result: &str,
    ) -> Result<UserCopies> {
        let target = self.target();
        let no_merged = format!("--no-merged={target}");
        let listed = git(
            &self.repo.top,
            &[
                "for-each-ref",
                "--sort=-committerdate",
                "--format=%(objectname) %(refname:lstrip=2)",
                no_merged.as_str(),
                "refs/heads/",
            ],
        )?;
        let qw_branch = |b: &str| {
            b == self.integration || b == "qw" || b.starts_with("qw/") || b.starts_with("qw-kept/")
        };
        let mut branches: Vec<(String, String)> = listed
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, b)| !qw_branch(b))
            .map(|(c, b)| (b.to_owned(), c.to_owned()))
            .collect();
        let mut skipped: Vec<String> = branches
            .iter()
            .skip(MAX_USER_BRANCHES)
            .map(|(b, _)| format!("`{b}`"))
            .collect();
        let too_many = skipped.len();
        branches.truncate(MAX_USER_BRANCHES);
        let over = format!("--max-count={}", MAX_COMMITS + 1);
        let not_target = format!("^{target}");
        let not_result = format!("^{result}");
        let mut others = Vec::new();
        for (b, tip) in branches {
            let count: usize = git(
                &self.repo.top,
                &[
                    "rev-list",
                    "--count",
                    over.as_str(),
                    tip.as_str(),
                    not_target.as_str(),
                    not_result.as_str(),
                    "--",
                ],
            )?
            .trim()
            .parse()
            .unwrap_or(0);
            if count > MAX_COMMITS {
                skipped.push(format!("`{b}`"));
            } else if count > 0 {
                others.push((b, tip));
            }
        }
        let skipped = (!skipped.is_empty()).then(|| {
            format!(
                "task {}'s result was not compared with your branch(es) {} ({}), so a copy of their commits in it would not be found",
                h.task_id,
                skipped.join(", "),
                if too_many > 0 {
                    format!(
                        "qw compares at most the {MAX_USER_BRANCHES} most recently committed branches `{}` lacks, and branches with at most {MAX_COMMITS} such commits",
                        self.integration
                    )
                } else {
                    format!(
                        "each holds over {MAX_COMMITS} commits `{}` lacks",
                        self.integration
                    )
                }
            )
        });
        if others.is_empty() {
            return Ok(UserCopies {
                refused: None,
                skipped,
            });
        }
        let own = made_in(&h.admin);
        // The task's own reflogs are its worktree's; the user's branches have only theirs.
        let by_copy = |branch: &str, commit: &str| {
            let admin = (branch == h.branch).then_some(&h.admin);
            made_by_copy(&self.repo, branch, admin, commit)
        };
        let found = copies(
            &self.repo,
            (result, &h.branch),
            &target,
            &others,
            &own,
            &by_copy,
        )?;
        if found.is_empty() {
            return Ok(UserCopies {
                refused: None,
                skipped,
            });
        }
        let task = &h.task_id;
        let named: Vec<String> = found
            .iter()
            .map(|c| {
                let theirs = copies_of(&c.theirs);
                format!(
                    "{} is {theirs} of your branch `{}`",
                    short(&c.ours),
                    c.branch
                )
            })
            .collect();
        let branches: BTreeSet<String> = found.iter().map(|c| format!("`{}`", c.branch)).collect();
        let branches: Vec<String> = branches.into_iter().collect();
        let copied: BTreeSet<String> = found.iter().map(|c| c.ours.clone()).collect();
        Ok(UserCopies {
            refused: Some(format!(
                "task {task}'s result copies commits of your branch {} that `{}` does not have: {} (its agent's cherry-pick or `merge --squash` of your branch?), so it was not merged: that work reaches `{}` only when you merge your branch; task {task}'s result is kept on branch `{}` ({}); {}; or, should it be task {task}'s own change that only matches, merge the branch by hand (`git merge {}`)",
                branches.join(", "),
                self.integration,
                named.join(", "),
                self.integration,
                h.branch,
                short(result),
                self.own_only_hint(h, result, &own, &copied)?,
                super::shell::quote(&h.branch),
            )),
            skipped,
        })
    }
}

/// "a copy of X" or "the N commits A..B squashed": what a copy in a result copies.
fn copies_of(theirs: &[String]) -> String {
    match theirs {
        [one] => format!("a copy of {}", short(one)),
        [first, .., last] => format!(
            "the {} commits {}..{} squashed",
            theirs.len(),
            short(first),
            short(last)
        ),
        [] => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A commit for `git fast-import` on `branch` (from `from` when given) at `time`,
    /// writing each `(path, content)`.
    fn commit(s: &mut String, branch: &str, from: Option<&str>, time: i64, files: &[(&str, &str)]) {
        use std::fmt::Write;
        let _ = writeln!(s, "commit refs/heads/{branch}");
        let _ = writeln!(s, "committer T <t@e> {time} +0000\ndata 1\nc");
        if let Some(f) = from {
            let _ = writeln!(s, "from refs/heads/{f}");
        }
        for (p, c) in files {
            let _ = writeln!(s, "M 100644 inline {p}\ndata {}\n{c}", c.len());
        }
        s.push('\n');
    }

    /// A repository whose history `stream` (fast-import) writes; its `Repo`.
    fn repo_of(d: &Path, stream: &str) -> Repo {
        let top = d.join("repo");
        crate::fs::create_dir_all(&top).unwrap();
        git(&top, &["init", "-q", "-b", "main"]);
        let mut c = std::process::Command::new("git")
            .arg("-C")
            .arg(&top)
            .args(["fast-import", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin
            .take()
            .unwrap()
            .write_all(stream.as_bytes())
            .unwrap();
        assert!(c.wait().unwrap().success());
        git(&top, &["reset", "-q", "--hard", "main"]);
        let project = crate::project::Project::at(&top);
        Repo::discover(&project).unwrap().unwrap()
    }

    fn tip(r: &Repo, b: &str) -> String {
        git(&r.top, &["rev-parse", b])
    }

    fn found(r: &Repo, ours: &str, theirs: &[&str]) -> Vec<Copied> {
        let others: Vec<(String, String)> = theirs
            .iter()
            .map(|b| ((*b).to_owned(), tip(r, b)))
            .collect();
        copies(
            r,
            (&tip(r, ours), ours),
            &tip(r, "main"),
            &others,
            &BTreeSet::new(),
            &|_, _| false,
        )
        .unwrap()
    }

    /// Both tasks picked the same commit the target gained: nobody's unmerged work.
    /// A squash of a sibling's two commits is found as the two; the sibling's copy of the
    /// result's older commit is not the result's copy.
    #[test]
    fn copies_are_told_from_changes_the_target_has_and_from_originals() {
        let d = tempfile::tempdir().unwrap();
        let mut s = String::new();
        commit(&mut s, "main", None, 1000, &[("base", "0\n")]);
        commit(&mut s, "side", Some("main"), 1001, &[("m", "m\n")]);
        commit(&mut s, "qw/d/2", Some("main"), 1002, &[("b1", "1\n")]);
        commit(&mut s, "qw/d/2", None, 1003, &[("b2", "2\n")]);
        commit(&mut s, "qw/d/2", None, 1004, &[("m", "m\n")]);
        commit(&mut s, "qw/d/1", Some("main"), 1005, &[("m", "m\n")]);
        commit(&mut s, "qw/d/3", Some("main"), 1001, &[("o", "o\n")]);
        commit(&mut s, "qw/d/4", Some("main"), 1009, &[("o", "o\n")]);
        commit(&mut s, "main", Some("side"), 1006, &[]);
        let r = repo_of(d.path(), &s);
        // `m` came to main from `side`: task 1's and task 2's picks of it are no copy.
        assert_eq!(found(&r, "qw/d/1", &["qw/d/2"]), vec![]);
        // Task 3's `o` is older than task 4's: task 4 copied it, not the reverse.
        assert_eq!(found(&r, "qw/d/3", &["qw/d/4"]), vec![]);
        let f = found(&r, "qw/d/4", &["qw/d/3"]);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].theirs, vec![tip(&r, "qw/d/3")]);
        // Task 5 squashes task 2's b1 and b2 into one commit of its own.
        let mut s2 = String::new();
        commit(
            &mut s2,
            "qw/d/5",
            Some("main"),
            1010,
            &[("b1", "1\n"), ("b2", "2\n")],
        );
        let r = {
            let mut c = std::process::Command::new("git")
                .arg("-C")
                .arg(&r.top)
                .args(["fast-import", "--quiet"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            c.stdin.take().unwrap().write_all(s2.as_bytes()).unwrap();
            assert!(c.wait().unwrap().success());
            r
        };
        let f = found(&r, "qw/d/5", &["qw/d/2"]);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            f[0].theirs,
            vec![tip(&r, "qw/d/2~2"), tip(&r, "qw/d/2~1")],
            "{f:?}"
        );
    }

    /// `qw worktrees --prune`'s line of a kept branch holding a copy: no "merge it", the
    /// copy named, and the remake keeps only the branch's own commit.
    #[test]
    fn a_kept_branch_holding_a_copy_is_not_offered_for_a_merge() {
        let d = tempfile::tempdir().unwrap();
        let mut s = String::new();
        commit(&mut s, "main", None, 1000, &[("base", "0\n")]);
        commit(&mut s, "qw/d/2", Some("main"), 1001, &[("b1", "1\n")]);
        commit(&mut s, "qw/d/1", Some("main"), 1002, &[("a1", "1\n")]);
        commit(&mut s, "qw/d/1", None, 1003, &[("b1", "1\n")]);
        let r = repo_of(d.path(), &s);
        let line = super::super::cross::others_in_kept(&r, "qw/d/1", &tip(&r, "main"))
            .unwrap_or_else(|| panic!("no line"));
        let ours = tip(&r, "qw/d/1");
        let theirs = tip(&r, "qw/d/2");
        assert!(
            line.contains("do not merge it as it is")
                && line.contains(&format!(
                    "{} is a copy of {} of task 2 of spec `d` (task branch `qw/d/2`)",
                    &ours[..10],
                    &theirs[..10]
                )),
            "{line}"
        );
        let own = tip(&r, "qw/d/1~1");
        // Its own commit alone is picked, not the copy.
        assert!(
            line.contains(&format!("cherry-pick {} &&", &own[..10])),
            "{line}"
        );
        // Without the copy: nothing to say.
        assert_eq!(
            super::super::cross::others_in_kept(&r, "qw/d/1", &tip(&r, "qw/d/2")),
            None
        );
    }

    /// The cost on a big history: 3 000 target commits below the task's start, 300 the
    /// target gained, 300 of the result's own and 300 of a sibling's (the bound), one of
    /// the result's a copy of the sibling's 150th. Prints the time it took (no timed
    /// assertion): `cargo test --lib copied -- --nocapture`.
    #[test]
    fn a_copy_is_found_among_hundreds_of_commits() {
        let d = tempfile::tempdir().unwrap();
        let mut s = String::new();
        for i in 0..3000 {
            let f = format!("h{}", i % 50);
            commit(&mut s, "main", None, 1000 + i, &[(&f, &format!("{i}\n"))]);
        }
        let start = 5000;
        s.push_str("reset refs/heads/start\nfrom refs/heads/main\n\n");
        for i in 0..300 {
            let from = (i == 0).then_some("start");
            let f = format!("b{i}");
            commit(
                &mut s,
                "qw/d/2",
                from,
                start + i,
                &[(&f, &format!("{i}\n"))],
            );
        }
        for i in 0..300 {
            let from = (i == 0).then_some("start");
            let (f, c) = if i == 200 {
                ("b150".to_owned(), "150\n".to_owned())
            } else {
                (format!("a{i}"), format!("{i}\n"))
            };
            commit(&mut s, "qw/d/1", from, start + 1000 + i, &[(&f, &c)]);
        }
        for i in 0..300 {
            let f = format!("t{i}");
            commit(
                &mut s,
                "main",
                None,
                start + 2000 + i,
                &[(&f, &format!("{i}\n"))],
            );
        }
        let r = repo_of(d.path(), &s);
        let t = std::time::Instant::now();
        let f = found(&r, "qw/d/1", &["qw/d/2"]);
        // The figure, printed where a test's output goes (`--nocapture`).
        #[allow(clippy::print_stderr)]
        {
            eprintln!("copies() over 300 + 300 + 300 commits: {:?}", t.elapsed());
        }
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].ours, tip(&r, "qw/d/1~99"));
        assert_eq!(f[0].theirs, vec![tip(&r, "qw/d/2~149")]);
    }
}
