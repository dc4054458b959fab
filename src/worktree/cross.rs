//! A task's branch crossed with work from outside its worktree.
//!
//! - *Its branch moved from outside* ([`moved_outside`]): another task's agent ran `git
//!   update-ref refs/heads/qw/<spec>/<id> …`, or `git switch --ignore-other-worktrees`
//!   to the branch and committed there; the worktree's index and files stayed where
//!   they were. Committing the files on top of the moved tip would make the task's
//!   result delete whatever the tip holds that the worktree never had (another task's
//!   merged files). The worktree's HEAD reflog (`<common>/worktrees/<id>/logs/HEAD`)
//!   says where its own git last left the branch — before the first entry whose old
//!   value is not the previous entry's new one, which is how a move shows once the
//!   agent committed, stashed or checked out again after it (with reftable, whose logs
//!   git prints without old values: a commit whose parent is not where HEAD was): the
//!   files are committed on that commit instead, the commit the move landed on is kept
//!   (on the target, on another branch, else on `qw/<spec>/<id>@<sha7>`), and the task
//!   fails `workspace_error` naming who moved the branch (the worktree whose git made or
//!   visited that commit, else the branch's reflog entry that put it there) and where
//!   each piece is ([`moved_line`]). The agent's own commits made on the moved tip were
//!   made with the old index (they undo what was moved in): never offered for a merge,
//!   kept with a commit on top that puts back what they undid. qw's own moves of the
//!   branch go through the worktree's HEAD, so they are in that reflog too. The safety
//!   net ([`unheld_deletions`]): a task's result that would delete from the target paths
//!   that no held commit has ([`held_commits`]: what its worktree's HEAD was put on, and
//!   the history a resumed task started from) is not merged, they are named, and they
//!   are put back on its branch ([`put_back_unheld`]) so the next run merges it.
//! - *Another task's unmerged commits in a result* ([`Worktrees::brings_other_tasks`]):
//!   the agent rebased onto, or merged, a sibling's branch. Refused (`workspace_error`,
//!   the result kept on its branch): the other task's work reaches the target only
//!   through its own check and merge.
//! - *Copies of another task's unmerged commits in a result* (`copied.rs`): the agent
//!   cherry-picked, `git am`ed or squashed a sibling's commits. Refused the same way.
//! - *History rewritten below the task's start* ([`below_start`]): `git commit --amend`
//!   of the commit the worktree started from, a `reset --soft HEAD~1` then a commit, a
//!   rebase or hard reset past it. Merging the result keeps the target's version of
//!   every path the rewrite reverted (a deletion of a file the start commit added is
//!   silently not taken): the task is merged as usual, and those paths are named with
//!   the command that takes the worktree's version of them.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::origin::made_in;

/// Commits the result brings, not made by the task, asked about by
/// [`Worktrees::brings_user_branches`] (which refs hold them).
const FOREIGN: usize = 50;
/// Reflog entries read there to tell where a moved branch of the user's was.
const USER_TIPS: usize = 50;
/// Commits of a result compared there.
const BROUGHT: usize = 5000;
use super::shell::quote as shell_quote;
use super::tree::{self, Tree};
use super::{Repo, Result, WorktreeHandle, Worktrees, git, git_output, parse_branch, short};

/// The branch a worktree's HEAD names was moved from outside the worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Moved {
    /// The worktree's own last commit: the newest entry of its HEAD reflog.
    pub(crate) own: String,
    /// Where the branch is now.
    pub(crate) now: String,
    /// The commit the move landed on, when the worktree's own git went on from there
    /// (committed, stashed or checked out again on the moved tip): what was moved in.
    /// `None` when the branch was moved after the worktree's last command (`now`).
    pub(crate) landed: Option<String>,
    /// Who moved it, as far as git tells (read before qw moves the branch).
    pub(crate) by: String,
}

/// Was the branch the worktree's HEAD names moved by a git that did not run in the
/// worktree? Its HEAD reflog (from qw's last save on) says so two ways: an entry whose
/// old value is not where the previous entry left HEAD (the branch jumped between two
/// of the worktree's own commands: its agent committed, stashed or checked out again
/// on the moved tip, with the index the worktree had before the jump), or a newest
/// entry that is not the branch's tip (moved after the worktree's last command). The
/// worktree's own last commit is where HEAD was before the first jump. `None` for a
/// detached HEAD, a deleted branch, or no reflog to compare with.
pub(crate) fn moved_outside(repo: &Repo, t: &Tree<'_>) -> Result<Option<Moved>> {
    let Ok(r) = t.run(&["symbolic-ref", "-q", "HEAD"]) else {
        return Ok(None);
    };
    if !r.starts_with("refs/heads/") {
        return Ok(None);
    }
    let Some(now) = repo.commit_of(&r)? else {
        return Ok(None);
    };
    // With the reftable backend git prints no entry's old value: a jump shows as a
    // commit whose parent is not where HEAD was, or a `reset: moving to HEAD` (a
    // stash) or a checkout of the same branch that landed elsewhere.
    let trust_from = !super::reflog::is_reftable(t.admin());
    let parent = |c: &str| repo.commit_of(&format!("{c}^1")).ok().flatten();
    let Some((own, jumped_to)) = own_before_jump(&tree::head_log(t.admin()), trust_from, &parent)
    else {
        return Ok(None);
    };
    if own == now || !tree::is_commit(repo, &own) {
        return Ok(None);
    }
    let landed = jumped_to.filter(|j| *j != now && tree::is_commit(repo, j));
    // Who moved it: to the commit the jump landed on (the worktree's own commands
    // may have moved it further since).
    let by = who(
        repo,
        t,
        r.trim_start_matches("refs/heads/"),
        landed.as_deref().unwrap_or(&now),
    );
    Ok(Some(Moved {
        own,
        now,
        landed,
        by,
    }))
}

/// Where the worktree's own git last left HEAD, from its HEAD reflog: the commit
/// before the first jump since qw's last save (a `qw:` entry: qw's own move, after
/// which the worktree's files are the branch's again), else the newest entry; with the
/// commit the jump landed on. A jump is an entry whose old value is not the previous
/// entry's new one (`trust_from`: the files backend writes old values), or, read from
/// the commits (`parent` gives a commit's first parent), a `commit`/`commit (merge)`
/// whose parent is not where HEAD was, or a `reset: moving to HEAD` (what `git stash`
/// writes) or a checkout of the branch HEAD was on that landed elsewhere. `None` for
/// an empty log.
fn own_before_jump(
    log: &[tree::LogLine],
    trust_from: bool,
    parent: &dyn Fn(&str) -> Option<String>,
) -> Option<(String, Option<String>)> {
    let from = log
        .iter()
        .rposition(|l| l.message.starts_with("qw:"))
        .unwrap_or(0);
    let seg = &log[from..];
    let jumped = |w: &[tree::LogLine]| -> Option<String> {
        let (prev, l) = (&w[0], &w[1]);
        if trust_from {
            return (l.from != prev.to && l.from.bytes().any(|b| b != b'0'))
                .then(|| l.from.clone());
        }
        let m = l.message.as_str();
        if m.starts_with("commit:") || m.starts_with("commit (merge):") {
            return parent(&l.to).filter(|p| *p != prev.to);
        }
        let same_branch = m
            .strip_prefix("checkout: moving from ")
            .and_then(|r| r.split_once(" to "))
            .is_some_and(|(a, b)| a == b);
        ((m == "reset: moving to HEAD" || same_branch) && l.to != prev.to).then(|| l.to.clone())
    };
    for w in seg.windows(2) {
        if let Some(landed) = jumped(w) {
            return Some((w[0].to.clone(), Some(landed)));
        }
    }
    seg.last().map(|l| (l.to.clone(), None))
}

/// Where a `commit` is (said after "it is"): on the target, on other branches, else
/// kept on `<branch>@<sha7>` (made here).
fn keep(repo: &Repo, branch: &str, commit: &str, base: &str) -> Result<String> {
    if let Some(at) = holders(repo, branch, commit, base)? {
        return Ok(at);
    }
    let kept = super::salvage::keep_branch(repo, branch, commit)?;
    Ok(format!(
        "kept on branch `{kept}` (`git merge {}` takes it)",
        shell_quote(&kept)
    ))
}

/// "already on the target" or "on branch `…`" when something but `branch` holds
/// `commit`; `None` when nothing does.
fn holders(repo: &Repo, branch: &str, commit: &str, base: &str) -> Result<Option<String>> {
    if repo.is_ancestor(commit, base)? {
        return Ok(Some("already on the target".to_owned()));
    }
    let holders: Vec<String> = git(
        &repo.top,
        &[
            "for-each-ref",
            "--contains",
            commit,
            "--format=%(refname:lstrip=2)",
            "refs/heads/",
        ],
    )?
    .lines()
    .filter(|b| *b != branch)
    .map(str::to_owned)
    .collect();
    Ok((!holders.is_empty()).then(|| format!("on branch `{}`", holders.join("`, `"))))
}

/// Who moved the branch to `now`: the worktree whose HEAD made or visited it (its
/// reflog), else what the branch's own reflog says.
fn who(repo: &Repo, t: &Tree<'_>, branch: &str, now: &str) -> String {
    let mut found = Vec::new();
    for (admin, path) in repo.admin_dirs() {
        if super::same_path(&admin, t.admin()) {
            continue;
        }
        if tree::reflog_entries(&admin).iter().any(|(c, _)| c == now) {
            found.push(match tree::read_marker(&admin) {
                Some((_, task)) => format!("task {task}'s worktree `{}`", path.display()),
                None => format!("the worktree `{}`", path.display()),
            });
        }
    }
    if tree::reflog_entries(&repo.git_dir)
        .iter()
        .any(|(c, _)| c == now)
    {
        found.push(format!("the main worktree `{}`", repo.top.display()));
    }
    if !found.is_empty() {
        return format!("by a git in {}", found.join(" or "));
    }
    // The branch's own reflog: the entry that put it there (not its newest, which may
    // be the worktree's own commit on top of it).
    let said = super::reflog::branch_log(repo, branch)
        .into_iter()
        .find(|(c, _)| c == now)
        .map(|(_, m)| m.trim().to_owned())
        .filter(|s| !s.is_empty());
    match said {
        Some(s) => format!("by someone else (its reflog says `{s}`)"),
        None => "by someone else (a `git update-ref`?)".to_owned(),
    }
}

/// The line for a branch moved from outside its worktree, after the worktree's own work
/// was put on it (`result`): who moved it, where the commit it was moved to is kept,
/// and the way on. The worktree's own commits made on the moved tip (with the index it
/// had before the move: they undo what was moved in) are kept so nothing is lost, but
/// never offered for a merge; their own changes are in `result`. No `git merge` is
/// printed of a commit that would delete from the target paths the worktree never held.
pub(crate) fn moved_line(
    repo: &Repo,
    t: &Tree<'_>,
    m: &Moved,
    result: Option<&str>,
    base: &str,
) -> Result<String> {
    let branch = t.branch();
    let task = parse_branch(branch).map_or(branch, |(_, task)| task);
    let landed = m.landed.as_deref().unwrap_or(&m.now);
    let held = held_commits(repo, t, base)?;
    let landed_at = keep_safe(repo, t, &held, landed, base)?;
    let who = &m.by;
    let mut after = String::new();
    if landed != m.now {
        let on_top: Vec<String> = git(&repo.top, &["rev-list", &format!("{landed}..{}", m.now)])?
            .lines()
            .map(str::to_owned)
            .collect();
        let made = made_in(t.admin());
        if !on_top.is_empty() && on_top.iter().all(|c| made.contains(c)) {
            after = own_on_moved(
                repo,
                t,
                &held,
                &m.own,
                landed,
                &m.now,
                on_top.len(),
                result,
                base,
            )?;
        } else {
            after = format!(
                "; the branch went on from there to {}, which is {}",
                short(&m.now),
                keep_safe(repo, t, &held, &m.now, base)?
            );
        }
    }
    Ok(format!(
        "task {task}'s branch `{branch}` was moved while the task ran, not from its worktree ({who}): its worktree was at {} and the branch was moved to {}, so its result was not merged (it would have undone what the branch was moved to); the worktree's own work (its last commit {} and its files) is on `{branch}`{}, and what the branch was moved to ({}) is {landed_at}{after}; `{}` runs the task again from `{branch}`",
        short(&m.own),
        short(landed),
        short(&m.own),
        result
            .map(|r| format!(" ({})", short(r)))
            .unwrap_or_default(),
        short(landed),
        super::shell::continue_of(branch),
    ))
}

/// What the line says of the worktree's own `count` commits made on the moved tip
/// (`landed..now`, with the index it had at `own`): what they would delete, that their
/// own changes (`own` to `now`) are in `result` (or which paths are not), and where they
/// are kept (with a commit on top that puts back what they undid, never as they are).
#[allow(clippy::too_many_arguments)]
fn own_on_moved(
    repo: &Repo,
    t: &Tree<'_>,
    held: &BTreeSet<String>,
    own: &str,
    landed: &str,
    now: &str,
    count: usize,
    result: Option<&str>,
    base: &str,
) -> Result<String> {
    let branch = t.branch();
    let deletes = unheld_in(repo, held, now, base, "")?;
    // Their own changes: from the commit the worktree's index was on, not from the
    // moved tip (against which they also undo what the move brought in).
    let changed: Vec<String> = git(
        &repo.top,
        &["diff", "--name-only", "--no-renames", "-z", own, now, "--"],
    )?
    .split('\0')
    .filter(|p| !p.is_empty() && !deletes.contains(&(*p).to_owned()))
    .map(str::to_owned)
    .collect();
    let lacking: Vec<String> = match result {
        Some(r) if !changed.is_empty() => {
            let mut args = vec!["diff", "--name-only", "--no-renames", "-z", now, r, "--"];
            args.extend(changed.iter().map(String::as_str));
            git(&repo.top, &args)?
                .split('\0')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        }
        Some(_) => Vec::new(),
        None => changed,
    };
    let kept = match holders(repo, branch, now, base)? {
        Some(at) => at,
        None => match safe_on_top(repo, own, landed, now)? {
            // On top of them, what the move brought in back: merging that branch
            // takes only their own changes.
            Some(safe) => {
                let kept = super::salvage::keep_branch(repo, branch, &safe)?;
                format!(
                    "kept on branch `{kept}`, with a commit on top that puts back what they undid (merging it takes only their own changes)"
                )
            }
            None => keep_quiet(repo, branch, now, base)?,
        },
    };
    let undo = if deletes.is_empty() {
        "undo what the branch was moved to".to_owned()
    } else {
        format!(
            "delete {}, which its worktree never held",
            deletes
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let in_saved = if lacking.is_empty() {
        format!("their own changes are all in its saved work on `{branch}`")
    } else {
        format!(
            "their changes to {} are not in its saved work (`git show {}` shows them)",
            lacking
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", "),
            short(now)
        )
    };
    Ok(format!(
        "; its agent then made {count} commit(s) on the moved branch (up to {}) with the index it had before the move, so they {undo}: not to be merged as they are ({in_saved}); they are {kept}",
        short(now)
    ))
}

/// A commit on top of `now` (the worktree's own commits made on the moved tip
/// `landed`, with the index it had at `own`) whose tree is `landed` with their own
/// changes (from `own` to `now`) merged in: what they undid of the move is put back.
/// `None` when those changes do not merge cleanly.
fn safe_on_top(repo: &Repo, own: &str, landed: &str, now: &str) -> Result<Option<String>> {
    let base = format!("--merge-base={own}");
    let out = git_output(
        &repo.top,
        ["merge-tree", "--write-tree", base.as_str(), landed, now],
        &[],
    )?;
    let tree = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if !out.status.success() || tree.is_empty() {
        return Ok(None);
    }
    let commit = git(
        &repo.top,
        &[
            "commit-tree",
            &tree,
            "-p",
            now,
            "-m",
            "qw: put back what these commits undid of a move of their branch (made with the index it had before the move)",
        ],
    )?;
    Ok(Some(commit.trim().to_owned()))
}

/// Where `commit` is, said after "it is", when it must not be merged: on the target,
/// on another branch, else kept on `<branch>@<sha7>` (made here) with no merge advice.
fn keep_quiet(repo: &Repo, branch: &str, commit: &str, base: &str) -> Result<String> {
    match holders(repo, branch, commit, base)? {
        Some(at) => Ok(at),
        None => {
            let kept = super::salvage::keep_branch(repo, branch, commit)?;
            Ok(format!("kept on branch `{kept}` so nothing is lost"))
        }
    }
}

/// [`keep`], without the `git merge` advice when a merge of `commit` would delete from
/// the target paths the worktree never held (`held`): those are named instead.
fn keep_safe(
    repo: &Repo,
    t: &Tree<'_>,
    held: &BTreeSet<String>,
    commit: &str,
    base: &str,
) -> Result<String> {
    let deletes = unheld_in(repo, held, commit, base, "")?;
    if deletes.is_empty() {
        return keep(repo, t.branch(), commit, base);
    }
    let at = keep_quiet(repo, t.branch(), commit, base)?;
    Ok(format!(
        "{at} — not to be merged as it is: it would delete {} from the target, which the worktree never held (`git diff {}...{}` shows what it changes)",
        deletes
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", "),
        short(base),
        short(commit)
    ))
}

/// The other tasks a result is compared with (every workflow's), read once per merge
/// ([`Worktrees::other_task_tips`]) for [`Worktrees::brings_other_tasks`] and
/// [`Worktrees::copies_other_tasks`].
pub(crate) struct OtherTasks {
    /// `(branch, tip)` of every task branch but the task's own.
    pub(crate) tips: Vec<(String, String)>,
    /// Every registered worktree of a task, the task's own one marked.
    pub(crate) worktrees: Vec<TaskWorktree>,
}

/// A registered worktree with qw's marker, as [`OtherTasks`] holds it.
pub(crate) struct TaskWorktree {
    /// The branch of the task it was made for (`qw/<spec>/<id>`).
    pub(crate) branch: String,
    /// Its git dir, when found.
    pub(crate) admin: Option<PathBuf>,
    /// The commit it has checked out.
    pub(crate) head: Option<String>,
    /// It is the worktree of the task being merged.
    pub(crate) own: bool,
}

impl Worktrees {
    /// The other tasks' branch tips and every task's registered worktree, for the
    /// checks of `h`'s result against its siblings (one `git worktree list`).
    pub(crate) fn other_task_tips(&self, h: &WorktreeHandle) -> Result<OtherTasks> {
        let tips: Vec<(String, String)> = self
            .all_task_branch_tips()?
            .into_iter()
            .filter(|(b, _)| b != &h.branch)
            .collect();
        let worktrees = self
            .repo
            .registered()?
            .into_iter()
            .filter_map(|w| {
                let (spec, task) = w.task?;
                Some(TaskWorktree {
                    own: spec == self.spec && task == h.task_id,
                    branch: super::task_branch(&spec, &task),
                    admin: w.admin,
                    head: w.head,
                })
            })
            .collect();
        Ok(OtherTasks { tips, worktrees })
    }
}

impl Worktrees {
    /// Commits of another task, of this spec or another workflow's (made in its worktree,
    /// or its branch's tip)
    /// that `result` holds and the target lacks, and that `h`'s own worktree did not
    /// make: its agent rebased onto or merged a sibling's work. One line naming them and
    /// where the result is kept (the repository lock is held).
    pub(crate) fn brings_other_tasks(
        &self,
        h: &WorktreeHandle,
        result: &str,
        others_of: &OtherTasks,
    ) -> Result<Option<String>> {
        let target = self.target();
        let own = made_in(&h.admin);
        let mut others: Vec<(String, String)> = Vec::new();
        for w in others_of.worktrees.iter().filter(|w| !w.own) {
            if let Some(admin) = &w.admin {
                others.extend(made_in(admin).into_iter().map(|c| (w.branch.clone(), c)));
            }
        }
        others.extend(others_of.tips.iter().cloned());
        let mut found: Vec<(String, String)> = Vec::new();
        let mut seen = BTreeSet::new();
        for (b, c) in others {
            if own.contains(&c) || !seen.insert(c.clone()) || !tree::is_commit(&self.repo, &c) {
                continue;
            }
            if self.repo.is_ancestor(&c, result)? && !self.repo.is_ancestor(&c, &target)? {
                found.push((b, c));
            }
        }
        if found.is_empty() {
            return Ok(None);
        }
        let task = &h.task_id;
        let named: Vec<String> = found
            .iter()
            .map(|(b, c)| format!("{} (task branch `{b}`)", short(c)))
            .collect();
        Ok(Some(format!(
            "task {task}'s result brings in commits of another task that qw has not merged: {} (its agent's rebase onto or merge of another task's branch?), so it was not merged: another task's work reaches `{}` only through that task's own check and merge; task {task}'s result is kept on branch `{}` ({}); {}",
            named.join(", "),
            self.integration,
            h.branch,
            short(result),
            self.own_only_hint(h, result, &own, &BTreeSet::new())?
        )))
    }

    /// A result that brings in commits its worktree did not make and that a ref of the
    /// user's holds — a local branch (but the target and qw's own), a remote-tracking
    /// branch, a tag: its agent switched to a branch that was there before and committed
    /// on it, merged it, or merged `origin/feature` (rev8a F8, rev9 N1). Those commits
    /// are the user's (or a colleague's) unmerged work, not the task's: not merged, named
    /// with the ref — and, when the agent moved a branch of the user's, where it was.
    /// Looked at: the commits the result brings that the target (where qw left it, or
    /// where it is now) lacks and the task did not make (at most [`BROUGHT`] read, at
    /// most [`FOREIGN`] asked about), each asked which refs contain it.
    pub(crate) fn brings_user_branches(
        &self,
        h: &WorktreeHandle,
        result: &str,
    ) -> Result<Option<String>> {
        let target = self.target();
        let max = format!("--max-count={BROUGHT}");
        let not_target = format!("^{target}");
        let mut args = vec!["rev-list", max.as_str(), result, not_target.as_str()];
        // What the target holds now is no one's to refuse (the user merged `feature` into
        // it mid-run, and the agent merged the target); a target deleted or renamed is
        // told by the target check.
        let now = self
            .repo
            .commit_of(&format!("refs/heads/{}", self.integration))?
            .map(|c| format!("^{c}"));
        args.extend(now.as_deref());
        args.push("--");
        let brought: Vec<String> = git(&self.repo.top, &args)?
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if brought.is_empty() {
            return Ok(None);
        }
        let own = super::origin::made_by_task(&self.repo, &h.branch, Some(&h.admin));
        let qw_ref = |r: &str| {
            r == format!("refs/heads/{}", self.integration)
                || r == "refs/heads/qw"
                || r.starts_with("refs/heads/qw/")
                || r.starts_with("refs/heads/qw-kept/")
        };
        // ref → the newest foreign commit it holds.
        let mut found: std::collections::BTreeMap<String, String> = Default::default();
        for c in brought.iter().filter(|c| !own.contains(*c)).take(FOREIGN) {
            let out = git(
                &self.repo.top,
                &[
                    "for-each-ref",
                    "--format=%(refname)",
                    "--contains",
                    c,
                    "refs/heads/",
                    "refs/remotes/",
                    "refs/tags/",
                ],
            )?;
            for r in out
                .lines()
                .map(str::trim)
                .filter(|r| !r.is_empty() && !qw_ref(r))
            {
                found.entry(r.to_owned()).or_insert_with(|| c.clone());
            }
        }
        if found.is_empty() {
            return Ok(None);
        }
        let mut named = Vec::new();
        for (r, theirs) in &found {
            let name = r
                .strip_prefix("refs/heads/")
                .or_else(|| r.strip_prefix("refs/"))
                .unwrap_or(r);
            // A branch of the user's the agent committed on: where it was before.
            let mut moved = String::new();
            if let Some(b) = r.strip_prefix("refs/heads/")
                && let Some(now) = self.repo.commit_of(r)?
                && own.contains(&now)
            {
                let was = git_output(
                    &self.repo.top,
                    [
                        "reflog",
                        "show",
                        &format!("-n{USER_TIPS}"),
                        "--format=%H",
                        r.as_str(),
                        "--",
                    ],
                    &[],
                )
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .find(|c| !own.contains(*c))
                        .map(str::to_owned)
                });
                if let Some(was) = was {
                    moved = format!(
                        "; its agent committed on `{b}` itself (now at {}; it was at {} before: `git branch -f {} {}` puts it back)",
                        short(&now),
                        short(&was),
                        shell_quote(b),
                        short(&was)
                    );
                }
            }
            named.push(format!("`{name}` ({}){moved}", short(theirs)));
        }
        let task = &h.task_id;
        Ok(Some(format!(
            "task {task}'s result brings in commits its worktree did not make, from your branch {} (its agent switched to or merged a branch that was there before), so it was not merged: that work reaches `{}` only when you merge it; task {task}'s result is kept on branch `{}` ({}); {}",
            named.join(", "),
            self.integration,
            h.branch,
            short(result),
            self.own_only_hint(h, result, &made_in(&h.admin), &BTreeSet::new())?
        )))
    }

    /// The way on after [`Worktrees::brings_other_tasks`]: the task's branch remade on
    /// the target with only the commits its own worktree made (`own`; merges left out:
    /// they are what brought the other task in), oldest first, cherry-picked in a
    /// scratch worktree so the user's main worktree is neither switched nor touched
    /// (dirty or not), then `qw workflow-continue <spec>`, which takes the remade branch
    /// (its commits are on the branch's own reflog, see `owned.rs`). Without such
    /// commits: delete the branch, and the task runs again from the target. Commits in
    /// `leave_out` (its copies of another task's commits, `copied.rs`) are not its own.
    pub(super) fn own_only_hint(
        &self,
        h: &WorktreeHandle,
        result: &str,
        own: &BTreeSet<String>,
        leave_out: &BTreeSet<String>,
    ) -> Result<String> {
        let target = self.target();
        let mine: Vec<String> = git(
            &self.repo.top,
            &[
                "rev-list",
                "--reverse",
                "--topo-order",
                "--no-merges",
                result,
                "--not",
                &target,
            ],
        )?
        .split_whitespace()
        .filter(|c| own.contains(*c) && !leave_out.contains(*c))
        .map(str::to_owned)
        .collect();
        let cont = super::shell::continue_cmd(&self.spec);
        if mine.is_empty() {
            return Ok(format!(
                "its worktree made no commit of its own to keep, so to run it again from `{}`: `git branch -D {}`, then `{cont}`",
                self.integration,
                shell_quote(&h.branch)
            ));
        }
        Ok(format!(
            "{} (should qw keep task {}'s worktree for what it holds, as a line then says: run this after the `qw worktrees --prune` that line names, since git gives no other worktree a branch that one holds)",
            remake_hint(
                &self.repo,
                &self.spec,
                &h.task_id,
                &h.branch,
                &self.integration,
                &mine
            ),
            h.task_id
        ))
    }
}

/// The way to keep only a task's own commits (`mine`, oldest first): its branch remade on
/// `onto` with them, cherry-picked in a scratch worktree so the user's main worktree is
/// neither switched nor touched (dirty or not), then `qw workflow-continue <spec>`, which
/// takes the remade branch (its commits are on the branch's own reflog, see `owned.rs`).
fn remake_hint(
    repo: &Repo,
    spec: &str,
    task: &str,
    branch: &str,
    onto: &str,
    mine: &[String],
) -> String {
    let container = repo.container();
    let base = format!("{spec}-{task}-own");
    let scratch = (1..)
        .map(|n| {
            container.join(if n == 1 {
                base.clone()
            } else {
                format!("{base}{n}")
            })
        })
        .find(|p| p.symlink_metadata().is_err())
        .unwrap_or_else(|| container.join(base));
    let scratch = shell_quote(&scratch.to_string_lossy()).into_owned();
    let picks: Vec<&str> = mine.iter().map(|c| short(c)).collect();
    format!(
        "to keep only its own {} commit(s), remade on `{onto}` in a scratch worktree (yours is not touched): `git worktree add -q -B {} {scratch} {} && git -C {scratch} cherry-pick {} && git worktree remove {scratch}` (should a pick conflict: resolve it there, `git -C {scratch} cherry-pick --continue`, then the removal), then `{}`",
        mine.len(),
        shell_quote(branch),
        shell_quote(onto),
        picks.join(" "),
        super::shell::continue_cmd(spec)
    )
}

/// For `qw worktrees --prune`'s line of a kept task branch (rev5b F9): when `branch`
/// holds commits `head` lacks that another task branch holds too (its agent rebased onto
/// or merged a sibling's unchecked work), the line that replaces "merge it": those
/// commits named, and the way to keep only the task's own commits (remade on `head`'s
/// branch, then `qw workflow-continue`), or to delete the branch when it has none.
/// `None` when it holds no other task's commit.
pub(crate) fn others_in_kept(repo: &Repo, branch: &str, head: &str) -> Option<String> {
    parse_branch(branch)?;
    let same_task = format!("{branch}@");
    let own_base = branch.split('@').next().unwrap_or(branch);
    let out = git_output(
        &repo.top,
        [
            "for-each-ref",
            "--format=%(refname:lstrip=2)",
            "refs/heads/qw/",
        ],
        &[],
    )
    .ok()?;
    let others: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        // The task's own branches (`qw/<spec>/<id>` and its `@<sha>` keeps) are not
        // another task's, whichever of them this is.
        .filter(|b| {
            *b != branch
                && *b != own_base
                && !b.starts_with(&same_task)
                && !b.starts_with(&format!("{own_base}@"))
                && parse_branch(b).is_some()
        })
        .map(str::to_owned)
        .collect();
    if others.is_empty() {
        return None;
    }
    let not_head = format!("^{head}");
    let branch_ref = super::qualified(branch);
    let branch_ref = branch_ref.as_ref();
    let all = git(&repo.top, &["rev-list", branch_ref, &not_head]).ok()?;
    let mut args = vec![
        "rev-list",
        "--reverse",
        "--topo-order",
        branch_ref,
        &not_head,
    ];
    let nots: Vec<String> = others.iter().map(|o| format!("^refs/heads/{o}")).collect();
    args.extend(nots.iter().map(String::as_str));
    let own_all = git(&repo.top, &args).ok()?;
    let own_all: Vec<&str> = own_all.split_whitespace().collect();
    let theirs: Vec<&str> = all
        .split_whitespace()
        .filter(|c| !own_all.contains(c))
        .collect();
    if theirs.is_empty() {
        // None by ancestry; copies of them (a cherry-pick, `git am`, a squash)?
        return super::copied::copies_in_kept(repo, branch, head, &others);
    }
    let whose: Vec<String> = others
        .iter()
        .filter(|o| {
            theirs.iter().any(|c| {
                repo.is_ancestor(c, &format!("refs/heads/{o}"))
                    .unwrap_or(false)
            })
        })
        .map(|o| format!("`{o}`"))
        .collect();
    // Merges are left out: they are what brought the other task in.
    let mut args = vec!["rev-list", "--no-merges", "--no-walk=unsorted"];
    args.extend(own_all.iter().copied());
    let mine: Vec<String> = if own_all.is_empty() {
        Vec::new()
    } else {
        git(&repo.top, &args)
            .ok()?
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let onto = kept_onto(repo, head);
    let way = kept_way(repo, branch, &onto, &mine)?;
    Some(format!(
        "kept branch `{branch}`: it holds {} commit(s) of another task that qw has not merged ({}: up to {}), so do not merge it as it is — another task's work reaches `{onto}` only through that task's own check and merge; {way}",
        theirs.len(),
        whose.join(", "),
        short(theirs[0])
    ))
}

/// Where a kept branch's own commits are remade: the main worktree's branch, else `head`.
pub(super) fn kept_onto(repo: &Repo, head: &str) -> String {
    repo.current_branch()
        .ok()
        .flatten()
        .unwrap_or_else(|| head.to_owned())
}

/// The way on for a kept task `branch` holding another task's work: its own commits
/// (`mine`, oldest first) remade on `onto`, or, without any, the branch deleted.
pub(super) fn kept_way(repo: &Repo, branch: &str, onto: &str, mine: &[String]) -> Option<String> {
    let (spec, task) = parse_branch(branch)?;
    Some(if mine.is_empty() {
        format!(
            "it has no commit of its own, so delete it (`git branch -D {}`) and `{}` runs the task again",
            shell_quote(branch),
            super::shell::continue_cmd(spec)
        )
    } else {
        remake_hint(repo, spec, task, branch, onto, mine)
    })
}

/// The paths a merge of `result` into `target` would delete that the task's worktree
/// never held: in their merge base, not in `result`, and in no commit of
/// [`held_commits`]. Such a deletion came with a branch moved from outside the
/// worktree, whatever the reflog shows of the move (the safety net of
/// [`moved_outside`]). Empty when the worktree has no reflog to tell (it cannot judge)
/// or nothing is deleted.
pub(crate) fn unheld_deletions(
    repo: &Repo,
    t: &Tree<'_>,
    result: &str,
    target: &str,
    spec_rel: &str,
) -> Result<Vec<String>> {
    // The held commits are read only when the result deletes something (rarely).
    if deleted_paths(repo, result, target, spec_rel)?.is_empty() {
        return Ok(Vec::new());
    }
    let held = held_commits(repo, t, target)?;
    unheld_in(repo, &held, result, target, spec_rel)
}

/// The commits the worktree's index and files were on: every commit its HEAD reflog
/// says its own commands put it on (its first entry, and every entry with git's
/// message: a bare `git update-ref` of HEAD moves no index or files), and the commit it
/// started from with its first-parent chain down to the first commit `target` holds —
/// the history earlier runs of the task (qw's own tips, resumed from) held, so a
/// resumed task's deletion of a file is its own (rev4 F6). Empty when it has no reflog.
pub(crate) fn held_commits(repo: &Repo, t: &Tree<'_>, target: &str) -> Result<BTreeSet<String>> {
    let log = tree::head_log(t.admin());
    let mut held: BTreeSet<String> = log
        .iter()
        .filter(|l| !l.message.is_empty() || l.from.bytes().all(|b| b == b'0'))
        .map(|l| l.to.clone())
        .filter(|c| tree::is_commit(repo, c))
        .collect();
    // Where it started: the first entry's old value (a log qw made empty before the
    // first move), else its new one (`git worktree add`).
    let start = log.first().and_then(|l| {
        [&l.from, &l.to]
            .into_iter()
            .find(|c| tree::is_commit(repo, c))
            .cloned()
    });
    if let Some(start) = start {
        let chain = git(
            &repo.top,
            &["rev-list", "--first-parent", &start, &format!("^{target}")],
        )?;
        let chain: Vec<&str> = chain.lines().collect();
        let below = match chain.last() {
            Some(last) => repo.commit_of(&format!("{last}^1"))?,
            None => Some(start.clone()),
        };
        held.extend(chain.iter().map(|c| (*c).to_owned()));
        held.extend(below);
    }
    Ok(held)
}

/// The paths a merge of `result` into `target` would delete (in their merge base, not
/// in `result`) that no commit of `held` has; the spec folder `spec_rel` left out.
fn unheld_in(
    repo: &Repo,
    held: &BTreeSet<String>,
    result: &str,
    target: &str,
    spec_rel: &str,
) -> Result<Vec<String>> {
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let deleted = deleted_paths(repo, result, target, spec_rel)?;
    if deleted.is_empty() {
        return Ok(Vec::new());
    }
    // One `cat-file` for every (held commit, path) pair; paths with a newline cannot
    // be asked this way and count as held.
    let asked: Vec<&String> = deleted.iter().filter(|p| !p.contains('\n')).collect();
    let mut input = String::new();
    for p in &asked {
        for c in held {
            input.push_str(&format!("{c}:{p}\n"));
        }
    }
    let answer =
        super::lost::git_stdin(repo, &["cat-file", "--batch-check=%(objecttype)"], &input)?;
    let answers: Vec<&str> = answer.lines().collect();
    if answers.len() != asked.len() * held.len() {
        return Ok(Vec::new());
    }
    Ok(asked
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            answers[i * held.len()..(i + 1) * held.len()]
                .iter()
                .all(|a| a.ends_with("missing"))
        })
        .map(|(_, p)| (*p).clone())
        .collect())
}

/// The paths a merge of `result` into `target` would delete (in their merge base, not in
/// `result`), the spec folder `spec_rel` left out (none when empty). A path the result
/// holds under another name is moved, not deleted (rev5b F13: a directory rename merged
/// with the target carries a sibling's new file along): git's rename detection between
/// the merge base and the result says so, and so does its content being at another
/// path of the result.
fn deleted_paths(repo: &Repo, result: &str, target: &str, spec_rel: &str) -> Result<Vec<String>> {
    let out = git_output(&repo.top, ["merge-base", result, target], &[])?;
    let mb = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || mb.is_empty() {
        return Ok(Vec::new());
    }
    let spec_dir = format!("{spec_rel}/");
    // `D\0<path>\0` for a deletion, `R<score>\0<old>\0<new>\0` for a rename (left out).
    let text = git(
        &repo.top,
        &[
            "diff",
            "--name-status",
            "--find-renames",
            "-z",
            "--diff-filter=D",
            &mb,
            result,
            "--",
        ],
    )?;
    let deleted: Vec<String> = text
        .split('\0')
        .collect::<Vec<_>>()
        .chunks(2)
        .filter(|c| c.len() == 2 && c[0] == "D")
        .map(|c| c[1])
        .filter(|p| {
            !p.is_empty() && (spec_rel.is_empty() || (*p != spec_rel && !p.starts_with(&spec_dir)))
        })
        .map(str::to_owned)
        .collect();
    if deleted.is_empty() {
        return Ok(deleted);
    }
    moved_elsewhere(repo, &mb, result, deleted)
}

/// `paths` (of `base`) less those whose content `result` holds at another path: moved
/// there (a rename git's detection missed, its limit reached, or a copy kept).
fn moved_elsewhere(
    repo: &Repo,
    base: &str,
    result: &str,
    paths: Vec<String>,
) -> Result<Vec<String>> {
    let blobs = |rev: &str| -> Result<Vec<(String, String)>> {
        // `<mode> <type> <sha>\t<path>`
        Ok(git(&repo.top, &["ls-tree", "-r", "-z", rev])?
            .split('\0')
            .filter_map(|l| {
                let (meta, path) = l.split_once('\t')?;
                let mut m = meta.split(' ');
                let (_, kind, sha) = (m.next()?, m.next()?, m.next()?);
                (kind == "blob").then(|| (sha.to_owned(), path.to_owned()))
            })
            .collect())
    };
    let was: std::collections::BTreeMap<String, String> =
        blobs(base)?.into_iter().map(|(sha, p)| (p, sha)).collect();
    // Content at a path where `base` did not have it: a copy already beside it in
    // `base` (two equal files) is no sign of a move.
    let held: BTreeSet<String> = blobs(result)?
        .into_iter()
        .filter(|(sha, p)| was.get(p) != Some(sha))
        .map(|(sha, _)| sha)
        .collect();
    Ok(paths
        .into_iter()
        .filter(|p| !was.get(p).is_some_and(|sha| held.contains(sha)))
        .collect())
}

/// A result that deletes paths its worktree never held (`paths`): put those paths back
/// as the merge base of `result` and `target` has them, in a commit on top of `result`
/// that the task's branch and the worktree's HEAD, index and files move to (so saving
/// the worktree again keeps them, and `qw workflow-continue` resumes from a branch whose
/// merge deletes nothing it never held). Returns that commit.
pub(crate) fn put_back_unheld(
    repo: &Repo,
    t: &Tree<'_>,
    paths: &[String],
    result: &str,
    target: &str,
    message: &str,
) -> Result<String> {
    let mb = git(&repo.top, &["merge-base", result, target])?
        .trim()
        .to_owned();
    // Never a path whose content the result holds elsewhere (moved by a rename): put
    // back, it would stand beside its moved copy and be merged twice.
    let paths = moved_elsewhere(repo, &mb, result, paths.to_vec())?;
    if paths.is_empty() {
        return Ok(result.to_owned());
    }
    commit_paths_on_top(
        repo,
        t,
        result,
        &mb,
        &paths,
        Missing::Keep,
        message,
        "qw: the task's result, with the paths it never held put back",
    )
}

/// What [`commit_paths_on_top`] does with a path its source lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// Left as the result has it.
    Keep,
    /// Removed (from the commit, the worktree's index and its files).
    Remove,
}

/// Commit on top of `result` each of `paths` as `source` has it (a path `source` lacks:
/// see `missing`), through a temporary index, and move the task's branch and its
/// worktree's HEAD, index and files to that commit (`reflog` names the move). Returns
/// the commit.
#[allow(clippy::too_many_arguments)]
pub(crate) fn commit_paths_on_top(
    repo: &Repo,
    t: &Tree<'_>,
    result: &str,
    source: &str,
    paths: &[String],
    missing: Missing,
    message: &str,
    reflog: &str,
) -> Result<String> {
    let index = tempfile::Builder::new()
        .prefix("qw-put-back-")
        .tempfile_in(&repo.common_dir)
        .map_err(|e| crate::fs::with_path(e, "create a temporary index in", &repo.common_dir))?;
    let env = [("GIT_INDEX_FILE", index.path().as_os_str())];
    let run = |args: &[&str]| -> Result<String> {
        let out = git_output(&repo.top, args, &env)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(super::git_error(&repo.top, args, &out))
        }
    };
    run(&["read-tree", result])?;
    for p in paths {
        // `<mode> <type> <sha>\t<path>`
        let entry = git(&repo.top, &["ls-tree", "-z", source, "--", p])?;
        match entry.trim_end_matches('\0').split_once('\t') {
            Some((meta, _)) => {
                let words: Vec<&str> = meta.split(' ').collect();
                if let [mode, "blob", sha] = words.as_slice() {
                    run(&[
                        "update-index",
                        "--add",
                        "--cacheinfo",
                        &format!("{mode},{sha},{p}"),
                    ])?;
                }
            }
            None if missing == Missing::Remove => {
                run(&["update-index", "--force-remove", "--", p])?;
            }
            None => {}
        }
    }
    let tree = run(&["write-tree"])?;
    let commit = run(&["commit-tree", &tree, "-p", result, "-m", message])?;
    t.run(&["update-ref", "-m", reflog, "HEAD", &commit, result])?;
    // Paths the commit holds come out of it; the others (removed) leave the index and
    // the worktree.
    let (held, gone): (Vec<&String>, Vec<&String>) = match missing {
        Missing::Keep => (paths.iter().collect(), Vec::new()),
        Missing::Remove => paths.iter().partition(|p| {
            git_output(&repo.top, ["cat-file", "-e", &format!("{commit}:{p}")], &[])
                .is_ok_and(|o| o.status.success())
        }),
    };
    if !held.is_empty() {
        let mut args = vec!["checkout", "-q", "HEAD", "--"];
        args.extend(held.iter().map(|p| p.as_str()));
        t.run(&args)?;
    }
    if !gone.is_empty() {
        let mut args = vec!["rm", "-q", "--cached", "--ignore-unmatch", "--"];
        args.extend(gone.iter().map(|p| p.as_str()));
        t.run(&args)?;
        for p in gone {
            match crate::fs::remove_file(t.path().join(p)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    super::owned::record(repo, t.branch())?;
    Ok(commit)
}

/// The line for a result that deletes paths its worktree never held
/// ([`unheld_deletions`]): not merged, kept on its branch with those paths put back
/// (`put_back`, see [`put_back_unheld`]), and the command that goes on ([`refused_line`]).
pub(crate) fn unheld_line(
    t: &Tree<'_>,
    paths: &[String],
    result: &str,
    put_back: Option<&str>,
    target: &str,
    spec: &str,
) -> String {
    let named: Vec<String> = paths.iter().map(|p| format!("`{p}`")).collect();
    refused_line(
        t,
        &format!(
            "deletes {} from `{target}`, which its worktree never held (they came with a move of its branch that its worktree's index and files did not follow: another task's `git update-ref` of it?), so it was not merged: a task's result never deletes files its worktree did not have",
            named.join(", "),
        ),
        result,
        put_back.map(|commit| PutBack {
            commit,
            paths: format!("put back as they are where it meets `{target}`"),
            so: ", so its merge deletes nothing it never held",
        }),
        target,
        spec,
    )
}

/// A commit on top of a refused result that puts the paths it named back
/// ([`commit_paths_on_top`]), for [`refused_line`].
pub(crate) struct PutBack<'a> {
    /// The commit.
    pub(crate) commit: &'a str,
    /// How the paths are in it (`as `main` has them`).
    pub(crate) paths: String,
    /// What that gives, said after the commits (`, so …`; may be empty).
    pub(crate) so: &'static str,
}

/// The line for a task's result qw refused to merge and kept on its branch: "task T's
/// result {refused}; {kept}" — `refused` says what the result would do and why it was not
/// merged; then the branch, with the named paths put back (`put_back`) and the command
/// that runs the task again from there, or without one the `git diff` that shows what
/// the result changes.
pub(crate) fn refused_line(
    t: &Tree<'_>,
    refused: &str,
    result: &str,
    put_back: Option<PutBack<'_>>,
    target: &str,
    spec: &str,
) -> String {
    let branch = t.branch();
    let task = parse_branch(branch).map_or(branch, |(_, task)| task);
    let kept = match put_back {
        Some(p) => format!(
            "it is kept on branch `{branch}` with those paths {} ({} on top of {}){}; `{}` runs the task again from there and merges it",
            p.paths,
            short(p.commit),
            short(result),
            p.so,
            super::shell::continue_cmd(spec)
        ),
        None => format!(
            "it is kept on branch `{branch}` ({}); see what it changes with `git diff {}...{}`",
            short(result),
            shell_quote(target),
            shell_quote(branch),
        ),
    };
    format!("task {task}'s result {refused}; {kept}")
}

/// The commit a worktree's HEAD started at (the first entry of its HEAD reflog).
fn start_of(admin: &std::path::Path) -> Option<String> {
    tree::reflog(admin).into_iter().next()
}

/// When `result` no longer descends from the commit the worktree started at (history
/// rewritten below it) yet shares history with it: the paths the rewrite reverted that
/// a merge of `result` does not take (the target keeps its version), named with the
/// command that takes the worktree's version. `None` otherwise.
pub(crate) fn below_start(
    repo: &Repo,
    t: &Tree<'_>,
    result: Option<&str>,
    base: &str,
    spec_rel: &str,
) -> Result<Option<String>> {
    // Already merged: said when it was.
    let Some(result) = result.filter(|r| !repo.is_ancestor(r, base).unwrap_or(false)) else {
        return Ok(None);
    };
    let Some(start) = start_of(t.admin()).filter(|s| tree::is_commit(repo, s)) else {
        return Ok(None);
    };
    if repo.is_ancestor(&start, result)? {
        return Ok(None);
    }
    let out = git_output(&repo.top, ["merge-base", start.as_str(), result], &[])?;
    let below = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || below.is_empty() {
        return Ok(None);
    }
    let spec_dir = format!("{spec_rel}/");
    let rewritten = repo.changed_paths(&below, &start)?;
    let taken = repo.changed_paths(&below, result)?;
    let dropped: Vec<String> = rewritten
        .difference(&taken)
        .filter(|p| *p != spec_rel && !p.starts_with(&spec_dir))
        .cloned()
        .collect();
    if dropped.is_empty() {
        return Ok(None);
    }
    let (gone, other): (Vec<&String>, Vec<&String>) = dropped.iter().partition(|p| {
        repo.commit_of(result).ok().flatten().is_some() && !in_tree(repo, result, p)
    });
    let quote = |ps: &[&String]| {
        ps.iter()
            .map(|p| shell_quote(p).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut cmds = Vec::new();
    if !gone.is_empty() {
        cmds.push(format!("git rm -q -- {}", quote(&gone)));
    }
    if !other.is_empty() {
        cmds.push(format!(
            "git checkout {} -- {}",
            short(result),
            quote(&other)
        ));
    }
    cmds.push("git commit".to_owned());
    let branch = t.branch();
    let task = parse_branch(branch).map_or(branch, |(_, task)| task);
    Ok(Some(format!(
        "task {task}'s result no longer descends from the commit its worktree started from ({}): its agent rewrote history below it (a `git commit --amend`, a reset or a rebase past it), so the merge keeps the target's version of {} ({} in the worktree); to take the worktree's version: `{}`",
        short(&start),
        dropped.join(", "),
        match (gone.is_empty(), other.is_empty()) {
            (false, true) => "deleted",
            (true, false) => "other content",
            _ => "deleted or other content",
        },
        cmds.join(" && ")
    )))
}

/// Is `path` in `commit`'s tree?
fn in_tree(repo: &Repo, commit: &str, path: &str) -> bool {
    git_output(
        &repo.top,
        ["cat-file", "-e", &format!("{commit}:{path}")],
        &[],
    )
    .is_ok_and(|o| o.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both refusals say what they said before they shared [`refused_line`].
    #[test]
    fn the_refusal_lines_keep_their_words() {
        let (p, a) = (std::path::Path::new("/w"), std::path::Path::new("/a"));
        let t = Tree::new(p, a, "qw/demo/2");
        let (result, fix) = ("1".repeat(40), "2".repeat(40));
        let paths = ["a.txt".to_owned(), "b c.txt".to_owned()];
        assert_eq!(
            unheld_line(&t, &paths, &result, Some(&fix), "main", "demo"),
            "task 2's result deletes `a.txt`, `b c.txt` from `main`, which its worktree never held (they came with a move of its branch that its worktree's index and files did not follow: another task's `git update-ref` of it?), so it was not merged: a task's result never deletes files its worktree did not have; it is kept on branch `qw/demo/2` with those paths put back as they are where it meets `main` (2222222222 on top of 1111111111), so its merge deletes nothing it never held; `qw workflow-continue demo` runs the task again from there and merges it"
        );
        assert_eq!(
            unheld_line(&t, &paths, &result, None, "main", "demo"),
            "task 2's result deletes `a.txt`, `b c.txt` from `main`, which its worktree never held (they came with a move of its branch that its worktree's index and files did not follow: another task's `git update-ref` of it?), so it was not merged: a task's result never deletes files its worktree did not have; it is kept on branch `qw/demo/2` (1111111111); see what it changes with `git diff main...qw/demo/2`"
        );
        let undone = [
            super::super::gained::Undone {
                path: "x".into(),
                deleted: true,
                revived: false,
                by: Some("qw(demo): merge task 1 One (succeeded)".into()),
            },
            super::super::gained::Undone {
                path: "y".into(),
                deleted: false,
                revived: true,
                by: None,
            },
        ];
        assert_eq!(
            super::super::gained::undone_line(&t, &undone, &result, Some(&fix), "main", "demo"),
            "task 2's result would undo what `main` gained while it ran: `x` (deleted, changed on `main` by \"qw(demo): merge task 1 One (succeeded)\"), `y` (brought back after it was deleted) (its history holds `main`'s newer commits without their files: a `git reset --soft main` and commit, a squash or a revert?), so it was not merged; it is kept on branch `qw/demo/2` with those paths as `main` has them (2222222222 on top of 1111111111); `qw workflow-continue demo` runs the task again from there and merges it"
        );
        assert_eq!(
            super::super::gained::undone_line(&t, &undone[1..], &result, None, "main", "demo"),
            "task 2's result would undo what `main` gained while it ran: `y` (brought back after it was deleted) (its history holds `main`'s newer commits without their files: a `git reset --soft main` and commit, a squash or a revert?), so it was not merged; it is kept on branch `qw/demo/2` (1111111111); see what it changes with `git diff main...qw/demo/2`"
        );
    }

    fn line(from: &str, to: &str, message: &str) -> tree::LogLine {
        tree::LogLine {
            from: from.repeat(40),
            to: to.repeat(40),
            time: 0,
            message: message.to_owned(),
        }
    }

    #[test]
    fn own_before_jump_finds_the_first_jump_since_qws_last_save() {
        assert_eq!(own_before_jump(&[], true, &|_| None), None);
        let plain = [
            line("0", "a", ""),
            line("a", "b", "commit: b"),
            line("b", "c", "commit: c"),
        ];
        assert_eq!(
            own_before_jump(&plain, true, &|_| None),
            Some(("c".repeat(40), None))
        );
        // The branch moved to m after b; the agent committed c on it, then d.
        let jumped = [
            line("0", "a", ""),
            line("a", "b", "commit: b"),
            line("m", "c", "commit: c"),
            line("c", "d", "commit: d"),
        ];
        assert_eq!(
            own_before_jump(&jumped, true, &|_| None),
            Some(("b".repeat(40), Some("m".repeat(40))))
        );
        // qw saved on top of the moved tip: judged from there on.
        let saved = [
            line("0", "a", ""),
            line("m", "c", "commit: c"),
            line("m", "q", "qw: the task's result"),
            line("q", "r", "commit: r"),
        ];
        assert_eq!(
            own_before_jump(&saved, true, &|_| None),
            Some(("r".repeat(40), None))
        );
    }

    #[test]
    fn own_before_jump_reads_a_reftable_log_by_the_commits_parents() {
        // git prints no old values there: each entry's is the previous one's new one.
        let chained = |lines: &[(&str, &str)]| -> Vec<tree::LogLine> {
            let mut prev = "0".to_owned();
            lines
                .iter()
                .map(|(to, m)| line(&std::mem::replace(&mut prev, (*to).to_owned()), to, m))
                .collect()
        };
        // c's parent is m, not b: the branch was moved to m, then the agent committed c.
        let parent = |c: &str| match &c[..1] {
            "b" => Some("a".repeat(40)),
            "c" => Some("m".repeat(40)),
            "d" => Some("c".repeat(40)),
            _ => None,
        };
        let committed = chained(&[
            ("a", ""),
            ("b", "commit: b"),
            ("c", "commit: c"),
            ("d", "commit: d"),
        ]);
        assert_eq!(
            own_before_jump(&committed, false, &parent),
            Some(("b".repeat(40), Some("m".repeat(40))))
        );
        // A stash after the move: `reset: moving to HEAD` lands on the moved tip.
        let stashed = chained(&[
            ("a", ""),
            ("b", "commit: b"),
            ("m", "reset: moving to HEAD"),
        ]);
        assert_eq!(
            own_before_jump(&stashed, false, &parent),
            Some(("b".repeat(40), Some("m".repeat(40))))
        );
        // Its own commits and a checkout of another branch: no jump.
        let plain = chained(&[
            ("a", ""),
            ("b", "commit: b"),
            ("x", "checkout: moving from qw/demo/2 to main"),
        ]);
        assert_eq!(
            own_before_jump(&plain, false, &parent),
            Some(("x".repeat(40), None))
        );
    }
}
