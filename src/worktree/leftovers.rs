//! `qw worktrees [--prune]`: qw's task worktrees and `qw/` branches of a repository,
//! wherever they are (the current root, the other default one, the old
//! `.claude/worktrees/`), and cleaning up what no running qw holds — broken ones
//! included (directory gone, `.git` deleted or replaced, read-only).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use super::{
    ListedWorktree, Repo, Result, parse_branch, parse_dir_name, remove_one, task_branch, tree,
};
use crate::project::Project;

/// `(spec, task)` when qw made this worktree: its marker, else (a qw that wrote none)
/// its `qw:` lock reason or its place in the old `.claude/worktrees/`, with the task
/// named by the lock reason, its `qw/` branch or its `<spec>-<task>` name. Nothing else
/// counts — not a place in qw's worktree folder, nor a branch named like qw's: an
/// agent's own `git worktree add` there is not qw's to prune.
pub(crate) fn owner(repo: &Repo, w: &ListedWorktree) -> Option<(String, String)> {
    if let Some(t) = &w.task {
        return Some(t.clone());
    }
    w.admin.as_ref()?;
    let parent = w.path.parent()?;
    let parent = parent
        .canonicalize()
        .unwrap_or_else(|_| parent.to_path_buf());
    let reason = w
        .locked
        .as_deref()
        .filter(|r| r.starts_with(tree::LOCK_REASON_PREFIX));
    if reason.is_none() && parent != repo.legacy_dir() {
        return None;
    }
    if let Some(t) = reason.and_then(lock_owner) {
        return Some(t);
    }
    // A lock reason that merely starts like qw's, outside the old folder: not qw's.
    if parent != repo.legacy_dir() {
        return None;
    }
    if let Some((s, t)) = w.branch.as_deref().and_then(parse_branch) {
        return Some((s.to_owned(), t.to_owned()));
    }
    let name = w.path.file_name()?.to_string_lossy().into_owned();
    let name = name.split('~').next().unwrap_or_default();
    parse_dir_name(name).map(|(s, t)| (s.to_owned(), t.to_owned()))
}

/// `(spec, task)` from qw's lock reason `qw: workflow <spec> task <task> (pid <n>)`.
fn lock_owner(reason: &str) -> Option<(String, String)> {
    let words: Vec<&str> = reason.split_whitespace().collect();
    match words.as_slice() {
        [prefix, "workflow", spec, "task", task, ..] if *prefix == tree::LOCK_REASON_PREFIX => {
            Some(((*spec).to_owned(), (*task).to_owned()))
        }
        _ => None,
    }
}

/// Is a workflow of `spec` running in this repository: holding its repository-wide lock
/// or the workflow lock of any checkout of the repository (not only the one qw was
/// started in: rev6b G13)?
pub(crate) fn spec_running(repo: &Repo, spec: &str) -> Option<String> {
    super::alive::spec_runner(repo, spec, &[])
}

/// Is a workflow of `spec` running in this project (holding its workflow lock)? See
/// `spec_running` for the whole repository.
pub fn spec_is_running(project: &Project, spec: &str) -> bool {
    let path = project.workflow_lock_file(spec);
    let Ok(file) = crate::fs::OpenOptions::new().read(true).open(&path) else {
        return false;
    };
    match file.file().try_lock() {
        Ok(()) => {
            let _ = file.file().unlock();
            false
        }
        Err(_) => true,
    }
}

/// Take a spec's workflow lock if no workflow holds it (`None` if one does).
fn hold_spec(project: &Project, spec: &str) -> Result<Option<crate::fs::File>> {
    // Never through a link at `.claude/runs` (refused, naming it), as every writer there.
    crate::fs::NoFollowDir::create(&project.claude_dir(), std::path::Path::new("runs"))?;
    let file = crate::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(project.workflow_lock_file(spec))?;
    Ok(file.file().try_lock().is_ok().then_some(file))
}

/// The state of a qw worktree or branch, for `qw worktrees`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// A running qw holds it (or `git worktree lock` by hand): never pruned.
    Locked,
    /// A worktree no running qw holds: `--prune` removes it (keeping unmerged work on
    /// its branch).
    Orphaned,
    /// A branch without worktree whose commits are all in HEAD: `--prune` deletes it.
    Merged,
    /// A branch without worktree holding commits HEAD lacks (e.g. a merge conflict):
    /// kept for the user.
    Unmerged,
    /// A `--allow-dirty` snapshot branch: never pruned.
    Snapshot,
    /// A task branch checked out in a worktree qw did not make (an agent's `git
    /// worktree add`, or the user's): that worktree's, never pruned; its task does not
    /// start until it is freed.
    Elsewhere,
}

/// One row of `qw worktrees`.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The spec.
    pub spec: String,
    /// The task id (or `snapshot-…`, or `<id>@<sha>` for commits kept for a task).
    pub task: String,
    /// The branch.
    pub branch: String,
    /// The worktree directory, if there is one.
    pub path: Option<PathBuf>,
    /// See [`EntryState`].
    pub state: EntryState,
    /// Commits on the branch that its target lacks (see `target`).
    pub unmerged_commits: u64,
    /// The worktree holds uncommitted changes.
    pub uncommitted_changes: bool,
    /// What is wrong with the worktree, if anything (`--prune` still removes it, after
    /// saving what can be saved).
    pub problem: Option<String>,
    /// Who holds it (`locked`): the workflow of its spec (in whichever checkout of the
    /// repository), the qw process that made it, or its task's agent still running.
    pub held_by: Option<String>,
    /// The branch "merged" is measured against (`refs/heads/<target>`): the target its
    /// run was made for, else the main worktree's branch; `None`: no such branch (only a
    /// branch other than qw's holding a commit counts).
    pub target: Option<String>,
    /// qw's own last tip of the branch, when the branch was moved off it and it holds
    /// commits the target lacks (`unmerged_commits` counts those): never merged, and
    /// `workflow-continue` puts it back.
    pub moved_off: Option<String>,
    /// Held only by its task's agent, its qw gone: `--prune` ends the agent first.
    #[serde(skip)]
    pub(crate) agents_only: bool,
    /// Its git dir, when known.
    #[serde(skip)]
    pub(crate) admin: Option<PathBuf>,
}

/// Every qw worktree and `qw/` branch of the project (optionally of one spec).
pub fn list(repo: &Repo, spec: Option<&str>) -> Result<Vec<Entry>> {
    // Asked once per spec (each answer lists the repository's checkouts).
    let seen = std::cell::RefCell::new(BTreeMap::<String, Option<String>>::new());
    list_with(repo, spec, &|s| {
        if let Some(known) = seen.borrow().get(s) {
            return known.clone();
        }
        let who = spec_running(repo, s);
        seen.borrow_mut().insert(s.to_owned(), who.clone());
        who
    })
}

/// Who holds the task worktree `w` of `spec` besides its workflow's lock: the qw
/// process named in its `qw:` lock reason, still alive, or its task's agent still
/// running in it (after its qw was killed).
/// The phrase, and whether only the agent holds it.
fn worktree_holder(w: &ListedWorktree) -> Option<(String, bool)> {
    if let Some(pid) = super::alive::maker_alive(w) {
        return Some((format!("the qw that made it (pid {pid}) runs"), false));
    }
    let agents = super::alive::agents_in(&w.path);
    if agents.is_empty() {
        return None;
    }
    let pids = agents
        .iter()
        .map(|a| a.pid.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Some((
        format!("its task's agent still runs (pid {pids}), its qw gone"),
        true,
    ))
}

fn problem(w: &ListedWorktree) -> Option<String> {
    let admin = w.admin.as_ref()?;
    if w.path.symlink_metadata().is_err() {
        return Some("its directory is gone".into());
    }
    let dotgit = w.path.join(".git");
    match dotgit.symlink_metadata() {
        Err(_) => Some("its `.git` file is gone".into()),
        Ok(m) if m.is_dir() => Some("its `.git` was replaced by a directory".into()),
        Ok(_) if !tree::sound(&w.path, admin) => {
            Some("its `.git` does not point to its git dir".into())
        }
        Ok(_) => None,
    }
}

/// What "merged" is measured against for task `task` of `spec` (rev6b G3, G4, G6): the
/// target branch its run was made for (qw's record, `tied`), else the branch the main
/// worktree is on (`main`) — never a detached HEAD, a task branch, nor the HEAD of the
/// checkout qw runs in (a task worktree's, or another checkout's). `None` when there is
/// no such branch.
pub(crate) fn merge_target(
    repo: &Repo,
    spec: &str,
    task: &str,
    main: Option<&str>,
) -> Option<String> {
    let id = task.split('@').next().unwrap_or(task);
    if let Some((t, _)) = super::tied::recorded(repo, spec, id) {
        let r = format!("refs/heads/{t}");
        if repo.commit_of(&r).ok().flatten().is_some() {
            return Some(r);
        }
    }
    main.map(|b| format!("refs/heads/{b}"))
}

/// The branch the main worktree is on (the first of `git worktree list`), unless it is
/// detached or on a branch of qw's.
pub(crate) fn main_branch(repo: &Repo) -> Option<String> {
    let b = repo.registered().ok()?.first()?.branch.clone()?;
    (!b.starts_with("qw/") && !b.starts_with("qw-kept/")).then_some(b)
}

/// The commits on `branch` that `target` lacks; with no target, those no branch but
/// qw's own holds.
pub(crate) fn unmerged_in(repo: &Repo, branch: &str, target: Option<&str>) -> Result<u64> {
    match target {
        Some(t) => repo.unmerged_commits(branch, t),
        None => {
            let out = super::git(
                &repo.top,
                &[
                    "rev-list",
                    "--count",
                    branch,
                    "--not",
                    "--exclude=refs/heads/qw/*",
                    "--exclude=refs/heads/qw-kept/*",
                    "--branches",
                ],
            )?;
            Ok(out.trim().parse().unwrap_or(0))
        }
    }
}

/// Does `target` hold every change of `branch` (a merge of it would leave `target`'s
/// tree as it is)? Asked of git's own merge (`git merge-tree --write-tree`, git 2.38+,
/// which touches no worktree); no answer counts as no.
fn holds_changes(repo: &Repo, target: &str, branch: &str) -> bool {
    let tree_of = |rev: &str| {
        super::git(&repo.top, &["rev-parse", &format!("{rev}^{{tree}}")])
            .ok()
            .map(|t| t.trim().to_owned())
    };
    let merged = super::git_output(
        &repo.top,
        ["merge-tree", "--write-tree", target, branch],
        &[],
    )
    .ok()
    .filter(|o| o.status.success())
    .and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .map(|l| l.trim().to_owned())
    });
    merged.is_some() && merged == tree_of(target)
}

/// qw's own last tip of `branch` when the branch was moved off it and that tip holds
/// commits `target` lacks (an agent's `git branch -f <it> main`): no merged branch, and
/// `workflow-continue` puts it back (rev6b G4).
fn moved_off(repo: &Repo, branch: &str, target: Option<&str>) -> Option<String> {
    let t = target?;
    if !super::owned::moved_off_unmerged(repo, branch, t) {
        return None;
    }
    super::owned::left_tip(repo, branch)
}

/// `running(spec)`: who runs a workflow of `spec` (`None`: nobody).
pub(crate) fn list_with(
    repo: &Repo,
    spec: Option<&str>,
    running: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut with_worktree = BTreeSet::new();
    let main = main_branch(repo);
    for w in repo.registered()? {
        let Some((s, t)) = owner(repo, &w) else {
            // A branch checked out in a worktree not qw's (an agent's, the user's) is
            // theirs, whatever its name: listed (a task branch) with where it is, never
            // pruned.
            with_worktree.extend(w.branch.clone());
            let theirs = w.branch.as_deref().and_then(|b| {
                parse_branch(b)
                    .filter(|(s, _)| spec.is_none_or(|x| x == *s))
                    .map(|(s, t)| (s, t, b))
            });
            if let Some((s, t, b)) = theirs {
                let branch = b.to_owned();
                let target = merge_target(repo, s, t, main.as_deref());
                let unmerged = unmerged_in(repo, &branch, target.as_deref()).unwrap_or(0);
                out.push(Entry {
                    spec: s.to_owned(),
                    task: t.to_owned(),
                    branch,
                    path: Some(w.path.clone()),
                    state: EntryState::Elsewhere,
                    unmerged_commits: unmerged,
                    uncommitted_changes: false,
                    problem: None,
                    held_by: None,
                    agents_only: false,
                    target,
                    moved_off: None,
                    admin: None,
                });
            }
            continue;
        };
        if spec.is_some_and(|x| x != s) {
            continue;
        }
        let branch = task_branch(&s, &t);
        with_worktree.insert(branch.clone());
        let mut agents_only = false;
        let held_by = if w.locked_by_user() {
            Some("`git worktree lock`".to_owned())
        } else {
            running(&s)
                .map(|r| format!("its workflow runs ({r})"))
                .or_else(|| {
                    let (h, agents) = worktree_holder(&w)?;
                    agents_only = agents;
                    Some(h)
                })
        };
        let state = if held_by.is_some() {
            EntryState::Locked
        } else {
            EntryState::Orphaned
        };
        let target = merge_target(repo, &s, &t, main.as_deref());
        let moved = moved_off(repo, &branch, target.as_deref());
        let unmerged = match (&moved, repo.branch_exists(&branch)?) {
            (Some(o), _) => unmerged_in(repo, o, target.as_deref())?,
            (None, true) => unmerged_in(repo, &branch, target.as_deref())?,
            (None, false) => 0,
        };
        let problem = problem(&w);
        let uncommitted = match (&w.admin, &problem) {
            (Some(a), None) => tree::dirty(repo, &w.path, a, &s).unwrap_or(false),
            _ => false,
        };
        out.push(Entry {
            spec: s,
            task: t,
            unmerged_commits: unmerged,
            uncommitted_changes: uncommitted,
            path: Some(w.path.clone()),
            branch,
            state,
            problem,
            held_by,
            agents_only,
            target,
            moved_off: moved,
            admin: w.admin.clone(),
        });
    }
    for branch in repo.qw_branches()? {
        let Some((s, t)) = parse_branch(&branch) else {
            continue;
        };
        if with_worktree.contains(&branch) || spec.is_some_and(|x| x != s) {
            continue;
        }
        let target = merge_target(repo, s, t, main.as_deref());
        let moved = moved_off(repo, &branch, target.as_deref());
        let unmerged = match &moved {
            Some(o) => unmerged_in(repo, o, target.as_deref())?,
            None => unmerged_in(repo, &branch, target.as_deref())?,
        };
        let held_by = running(s).map(|r| format!("its workflow runs ({r})"));
        let state = if t.starts_with("snapshot-") {
            EntryState::Snapshot
        } else if held_by.is_some() {
            EntryState::Locked
        } else if unmerged > 0 {
            EntryState::Unmerged
        } else {
            EntryState::Merged
        };
        out.push(Entry {
            spec: s.to_owned(),
            task: t.to_owned(),
            branch: branch.clone(),
            path: None,
            state,
            unmerged_commits: unmerged,
            uncommitted_changes: false,
            problem: None,
            held_by,
            agents_only: false,
            target,
            moved_off: moved,
            admin: None,
        });
    }
    out.sort_by(|a, b| (&a.spec, &a.task).cmp(&(&b.spec, &b.task)));
    Ok(out)
}

/// A branch [`prune`] kept: it holds commits its target lacks, or its task is not
/// completed.
#[derive(Debug, Clone, Serialize)]
pub struct KeptBranch {
    /// The branch.
    pub branch: String,
    /// Commits on it that its target lacks.
    pub unmerged_commits: u64,
    /// Its task is not `completed` in the state: qw never merged it, whatever its target
    /// holds (the branch may have been moved onto it by someone else).
    pub task_not_completed: bool,
    /// It shares no commit with its target (a history of the agent's own): merged only
    /// with `git merge --allow-unrelated-histories`.
    pub unrelated: bool,
    /// It holds another task's commits HEAD lacks (its agent rebased onto or merged a
    /// sibling's branch): the line saying so and how to keep only its own commits,
    /// instead of a merge advice (rev5b F9).
    pub other_tasks: Option<String>,
    /// Its target holds all of its changes though not its commits (a squash merge, a
    /// cherry-pick, the same edit made there): merging it would add nothing, so no line
    /// tells to merge it.
    pub changes_merged: bool,
    /// The target branch it was measured against (`None`: the main worktree is detached
    /// and no run recorded one).
    pub target: Option<String>,
    /// Why it is kept, when the usual line would mislead (moved off qw's tip; no target).
    pub note: Option<String>,
}

/// `refs/heads/x` → `x`.
fn short(r: &str) -> &str {
    r.strip_prefix("refs/heads/").unwrap_or(r)
}

/// The line for a kept branch when the usual "N unmerged commit(s)" one would mislead.
fn kept_note(e: &Entry, branch: &str, n: u64) -> Option<String> {
    let q = super::quote;
    if let (Some(o), Some(t)) = (&e.moved_off, &e.target) {
        return Some(format!(
            "kept branch `{branch}`: it was moved off the tip qw left it at, {} ({n} commit(s) `{}` lacks), so it is no merged branch; `qw workflow-continue {}` puts it back, `git branch -f {} {o}` does it by hand",
            &o[..10.min(o.len())],
            short(t),
            e.spec,
            q(branch),
        ));
    }
    if e.target.is_none() {
        return Some(format!(
            "kept branch `{branch}`: the main worktree is on no branch (a detached HEAD holds nothing qw merged), so nothing counts as merged; `git switch <your branch>` in it, then `qw worktrees --prune` again"
        ));
    }
    None
}

/// What [`prune`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Worktree directories removed (with their `git worktree` entries).
    pub removed_worktrees: Vec<PathBuf>,
    /// Branches deleted (fully merged into HEAD).
    pub deleted_branches: Vec<String>,
    /// Branches kept because they hold commits HEAD lacks.
    pub kept_branches: Vec<KeptBranch>,
    /// Worktrees whose uncommitted changes were committed on their branch first.
    pub salvaged: Vec<String>,
    /// Entries left alone because a running qw holds them.
    pub skipped_locked: Vec<String>,
    /// Who holds each of `skipped_locked`, in the same order.
    pub held_by: Vec<String>,
    /// Kept branches (`qw/<spec>/<id>@<sha>`) whose record qw forgot: the branch is gone
    /// or merged into HEAD.
    pub forgotten_kept: Vec<String>,
    /// qw's notes of its merges (`qw-merges/`) forgotten: no branch holds those merges.
    pub forgotten_merge_notes: usize,
    /// Task branches left alone because a worktree qw did not make has them checked out:
    /// `(branch, that worktree)`.
    pub checked_out_elsewhere: Vec<(String, PathBuf)>,
    /// Commits the agents left outside their results, and where they are.
    pub strays: Vec<String>,
    /// What is worth telling and went right (nested repositories that were not the
    /// agents' work, removed with their worktrees).
    pub notes: Vec<String>,
    /// What could not be done; nothing was lost (a worktree whose work could not be saved
    /// is kept, a directory that could not be removed is named).
    pub warnings: Vec<String>,
}

/// Remove orphaned worktrees (not held by a running qw) and their `git worktree`
/// entries; delete their branches when merged into HEAD and their task is `completed`
/// (`completed(spec, task)`, from the state), keep them (and say so) when they hold
/// unmerged commits or their task is not completed and they moved since they were made
/// (failed, pending: HEAD holding the branch then is no merge of qw's — it may have been
/// moved there by an agent). What a worktree holds is saved on its branch first, so no work
/// is lost; broken worktrees are saved as far as git still can, then removed. Snapshot
/// branches are never touched. Failures to remove are warnings.
pub fn prune(
    repo: &Repo,
    spec: Option<&str>,
    completed: &dyn Fn(&str, &str) -> bool,
) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    // Hold the workflow lock of every spec we prune — the repository-wide one and this
    // checkout's — so no workflow starts (and reuses a worktree) while its worktrees are
    // being removed; a spec whose workflow runs in any checkout of the repository is
    // left alone (rev6b G13).
    let mut held = BTreeMap::new();
    let mut running: BTreeMap<String, String> = BTreeMap::new();
    for e in list_with(repo, spec, &|_| None)? {
        if held.contains_key(&e.spec) || running.contains_key(&e.spec) {
            continue;
        }
        let common = super::alive::try_hold(repo, &e.spec, "qw worktrees --prune")?;
        let own = hold_spec(&repo.project, &e.spec)?;
        let mine = [
            super::alive::repo_lock_file(repo, &e.spec),
            repo.project.workflow_lock_file(&e.spec),
        ];
        match (common, own) {
            (Some(c), Some(o)) => match super::alive::spec_runner(repo, &e.spec, &mine) {
                Some(r) => {
                    running.insert(e.spec.clone(), r);
                }
                None => {
                    held.insert(e.spec.clone(), (c, o));
                }
            },
            (c, o) => {
                drop((c, o));
                let who = super::alive::spec_runner(repo, &e.spec, &[])
                    .unwrap_or_else(|| "a running qw".to_owned());
                running.insert(e.spec.clone(), who);
            }
        }
    }
    // Agents a killed qw left running in its worktrees (each task's `qw exec` is a
    // process group of its own, so they outlive it): ended first, as `workflow-continue`
    // does, never removed from under them (rev6b G17).
    let orphans: Vec<Entry> = list_with(repo, spec, &|s| running.get(s).cloned())?
        .into_iter()
        .filter(|e| e.agents_only && e.path.is_some())
        .collect();
    let paths: Vec<&std::path::Path> = orphans.iter().filter_map(|e| e.path.as_deref()).collect();
    for ((e, path), (n, left)) in orphans
        .iter()
        .zip(&paths)
        .zip(super::alive::end_orphaned_agents(&paths))
    {
        if n > 0 && left.is_empty() {
            report.notes.push(format!(
                "ended {n} process(es) of task {}'s agent that a killed qw left running in `{}` (as `qw workflow-continue {}` would), before saving and removing the worktree",
                e.task,
                path.display(),
                e.spec
            ));
        }
    }
    let _g = repo.lock("qw worktrees --prune", None, &|m| crate::diag!("qw: {m}"))?;
    for e in list_with(repo, spec, &|s| running.get(s).cloned())? {
        match e.state {
            EntryState::Locked => {
                report.skipped_locked.push(e.branch.clone());
                report.held_by.push(e.held_by.clone().unwrap_or_default());
            }
            EntryState::Elsewhere => report
                .checked_out_elsewhere
                .push((e.branch.clone(), e.path.clone().unwrap_or_default())),
            EntryState::Snapshot => {}
            EntryState::Orphaned | EntryState::Merged | EntryState::Unmerged => {
                // A link put where qw's worktree was: what it leads to is not the task's,
                // and saving "its" changes would commit the deletion of every project file
                // and then empty that directory (rev8b F15).
                if let Some(p) = e.path.as_deref()
                    && p.symlink_metadata()
                        .is_ok_and(|m| m.file_type().is_symlink())
                {
                    report.warnings.push(format!(
                        "`{}` (task {}'s worktree) is a symbolic link to `{}`, not the directory qw made: left as it is, nothing saved or removed there; remove the link by hand, then `git worktree prune`",
                        p.display(),
                        e.task,
                        std::fs::read_link(p).unwrap_or_default().display()
                    ));
                    continue;
                }
                let salvage = format!(
                    "qw: {} task {} — uncommitted work saved by `qw worktrees --prune`",
                    e.spec, e.task
                );
                let before = repo.commit_of(&format!("refs/heads/{}", e.branch))?;
                // A task not completed: qw never merged its branch, whatever its target
                // holds — kept, unless it never moved since it was made (no work of the
                // task). A branch moved off qw's unmerged tip, or with no target branch
                // to be merged into (the main worktree detached), is kept too.
                let unfinished = !completed(&e.spec, &e.task) && repo.branch_moved(&e.branch);
                let keep = unfinished || e.moved_off.is_some() || e.target.is_none();
                let target = e.target.as_deref().unwrap_or("HEAD");
                let path = e.path.clone().unwrap_or_default();
                let removed = remove_one(
                    repo,
                    &path,
                    e.admin.as_deref(),
                    &e.branch,
                    &e.spec,
                    target,
                    &salvage,
                    keep,
                );
                let saved = !removed
                    .warnings
                    .iter()
                    .any(|w| w.starts_with("kept the worktree"));
                if e.path.is_some() && saved {
                    let after = repo.commit_of(&format!("refs/heads/{}", e.branch))?;
                    // Only when a commit was made: uncommitted changes that were not the
                    // task's (tracked files gone with a nested repository moved out) are not
                    // committed.
                    if before != after && after.is_some() {
                        report.salvaged.push(e.branch.clone());
                    }
                    if path.symlink_metadata().is_err() {
                        report.removed_worktrees.push(path);
                    }
                }
                report.strays.extend(removed.strays);
                report.notes.extend(removed.notes);
                report.warnings.extend(removed.warnings);
                match removed.kept_branch {
                    Some(b) => {
                        let n = match &e.moved_off {
                            Some(o) => unmerged_in(repo, o, e.target.as_deref())?,
                            None => unmerged_in(repo, &b, e.target.as_deref())?,
                        };
                        let unrelated =
                            !super::git_output(&repo.top, ["merge-base", target, b.as_str()], &[])
                                .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
                        let other_tasks = super::cross::others_in_kept(repo, &b, target);
                        let changes_merged = n > 0 && !unrelated && holds_changes(repo, target, &b);
                        report.kept_branches.push(KeptBranch {
                            changes_merged,
                            note: kept_note(&e, &b, n),
                            branch: b,
                            unmerged_commits: n,
                            task_not_completed: unfinished,
                            unrelated,
                            other_tasks,
                            target: e.target.as_deref().map(short).map(str::to_owned),
                        });
                    }
                    None if repo.branch_exists(&e.branch)? => {}
                    None => {
                        report.deleted_branches.push(e.branch.clone());
                        // Deleted as merged, yet work made on it may be in the stash.
                        report.warnings.extend(repo.stash_made_on(&e.branch));
                    }
                }
            }
        }
    }
    // Records of the kept branches that are gone or merged by now (never of a running
    // spec's: its checks read them).
    let busy = |s: &str| {
        running.contains_key(s) || (!held.contains_key(s) && spec_running(repo, s).is_some())
    };
    let main = main_branch(repo);
    let target_of = |s: &str, t: &str| merge_target(repo, s, t, main.as_deref());
    report.forgotten_kept = super::salvage::forget_kept(repo, spec, &busy, &target_of);
    // Notes of merges no branch holds (a running workflow notes its merge once it is on
    // its target branch, so none of its notes is forgotten).
    report.forgotten_merge_notes = super::origin::prune_merge_notes(repo);
    // Directories in a worktree container that git does not know (a creation cut short,
    // a removal that failed): removed when they hold no files, named otherwise.
    let known: BTreeSet<PathBuf> = repo
        .registered()?
        .into_iter()
        .map(|w| w.path.canonicalize().unwrap_or(w.path))
        .collect();
    for dir in repo.containers() {
        let Ok(entries) = crate::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let of = |s: &str| name.starts_with(&format!("{s}-"));
            let canon = p.canonicalize().unwrap_or_else(|_| p.clone());
            if known.contains(&canon)
                || running.keys().any(|s| of(s))
                || spec.is_some_and(|s| !of(s))
            {
                continue;
            }
            if p.is_dir() && !tree::holds_files(&p)? {
                crate::fs::remove_dir_all(&p)?;
                report.removed_worktrees.push(p);
            } else {
                report.warnings.push(format!(
                    "left `{}` alone: it is not a git worktree and holds files that may be on no branch (a task worktree moved there by hand, one qw could not remove, or something of yours); look through it before you remove it by hand",
                    p.display()
                ));
            }
        }
        // The container itself, once empty (never the legacy `.claude/worktrees/`'s
        // parent: only the directory itself).
        let _ = fs_err::remove_dir(&dir);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_is_never_held_through_a_linked_runs_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (project, victim) = Project::with_linked_runs(dir.path());
        let Err(e) = hold_spec(&project, "demo") else {
            panic!("a linked `.claude/runs` was followed");
        };
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(crate::fs::read_dir(&victim).unwrap().count(), 0);
        crate::fs::remove_file(project.runs_dir()).unwrap();
        assert!(hold_spec(&project, "demo").unwrap().is_some());
        assert!(project.workflow_lock_file("demo").is_file());
    }

    #[test]
    fn lock_reasons_name_spec_and_task() {
        assert_eq!(
            lock_owner("qw: workflow user-auth task 2.1 (pid 42)"),
            Some(("user-auth".into(), "2.1".into()))
        );
        assert_eq!(lock_owner("qw: held"), None);
        assert_eq!(lock_owner("mine: workflow a task 1"), None);
        assert_eq!(lock_owner(""), None);
    }
}
