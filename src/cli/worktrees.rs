//! `qw worktrees [--prune] [--spec NAME]`: list qw's task worktrees and `qw/` branches,
//! wherever they are (beside the repository, in the cache, under
//! `quantumwala.worktree_root`, or the old `.claude/worktrees/`), and clean up what no
//! running qw holds.

use clap::Args;

use super::out::outln;
use super::{CliError, CmdResult, Ctx};
use crate::worktree::{self, Entry, EntryState, PruneReport, Repo};

/// Arguments of `qw worktrees`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Task worktrees live outside `.claude/`: beside the repository in `<parent>/<repo>.qw-worktrees/`
(in your cache directory when that parent is not writable), or under the setting
`quantumwala.worktree_root`. Those made under the old `.claude/worktrees/` are listed and
pruned too.

States: locked (a running qw holds it — its workflow, in any checkout of the repository,
the qw that made it, or its agent still running — or `git worktree lock`), orphaned (a
worktree no running qw holds), merged / unmerged (a branch without worktree, with or
without commits its target lacks: the branch its run was made onto, else the main
worktree's branch — never a detached HEAD; a branch moved off qw's tip is unmerged), snapshot (saved by --allow-dirty; never pruned), elsewhere (a task branch checked out in a
worktree qw did not make, listed with that worktree; never pruned).

--prune removes orphaned worktrees and their `git worktree` entries, broken ones too (the
directory gone, `.git` deleted or replaced, read-only). What a worktree holds is first
committed on its branch; a branch is deleted only when its target holds all its commits and
its task is completed in the state (or it never moved since it was made), otherwise it
is kept and named. What cannot be
removed is named, never fails the command.

Exit: 0 done; 2 bad input.

Example:
  qw worktrees --prune")]
pub struct WorktreesArgs {
    /// Remove orphaned worktrees (keeps branches with unmerged commits).
    #[arg(long)]
    pub prune: bool,
    /// Only this spec's worktrees and branches.
    #[arg(long, value_name = "NAME")]
    pub spec: Option<String>,
}

/// Run `qw worktrees`.
pub(crate) fn run(ctx: &Ctx, args: WorktreesArgs) -> CmdResult {
    if let Some(s) = &args.spec {
        crate::names::validate(crate::names::NameKind::Spec, s)?;
    }
    let repo = match Repo::discover(&ctx.project) {
        Ok(Some(r)) => r,
        Ok(None) | Err(worktree::WorktreeError::NoGit) => {
            if ctx.global.json {
                outln!("{}", serde_json::json!({"git": false, "worktrees": []}))?;
            } else {
                crate::diag!(
                    "qw: `{}` is not in a git repository; qw makes no worktrees here",
                    ctx.project.root().display()
                );
            }
            return Ok(0);
        }
        Err(e @ worktree::WorktreeError::Placement(_)) => {
            return Err(CliError::usage(e.to_string())
                .hint("`quantumwala.worktree_root` in `.claude/settings.local.json` must be a directory path"));
        }
        Err(e) => return Err(e.into()),
    };
    let report = if args.prune {
        Some(prune(&ctx.project, &repo, args.spec.as_deref())?)
    } else {
        None
    };
    let entries = worktree::list(&repo, args.spec.as_deref())?;
    // What prune did goes to stderr (diagnostics) in both modes.
    if let Some(r) = &report {
        print_prune(r);
    }
    if ctx.global.json {
        let v = serde_json::json!({"git": true, "worktrees": entries, "pruned": report});
        outln!("{v}")?;
        return Ok(0);
    }
    print_entries(&entries)?;
    // The branches a put-back hint made keep commits no other branch may hold: named
    // until merged or deleted (rev5b F8).
    for (b, n) in repo.kept_by_put_back().unwrap_or_default() {
        let q = worktree::quote(&b);
        crate::diag!(
            "kept branch `{b}` (made as a refused run's put-back said): {n} commit(s) HEAD lacks; take what you want (`git merge {q}`, or `git cherry-pick <commit>`), then delete it (`git branch -D {q}`)"
        );
    }
    Ok(0)
}

/// Prune (used by `workflow-reset` too); errors become exit 1.
pub(crate) fn prune(
    project: &crate::project::Project,
    repo: &Repo,
    spec: Option<&str>,
) -> Result<PruneReport, CliError> {
    worktree::prune(repo, spec, &completed_tasks(project)).map_err(|e| {
        CliError::from(e)
            .hint("nothing was discarded: uncommitted work is committed on its branch before a worktree is removed")
    })
}

/// Is a task `completed` in the state? A task branch is deleted by a prune only then:
/// HEAD holding a failed task's branch is no merge of qw's. A state that cannot be read
/// counts no task as completed (every branch is kept).
pub(crate) fn completed_tasks(project: &crate::project::Project) -> impl Fn(&str, &str) -> bool {
    let state = crate::state::StateStore::new(project).load().ok();
    move |spec: &str, task: &str| {
        state.as_ref().is_some_and(|s| {
            s.specifications
                .get(spec)
                .and_then(|sp| sp.tasks.get(task))
                .is_some_and(|t| t.status == crate::state::TaskStatus::Completed)
        })
    }
}

/// One line per action of a prune, on stderr (diagnostics), data stays on stdout.
pub(crate) fn print_prune(r: &PruneReport) {
    for b in &r.salvaged {
        crate::diag!("committed uncommitted work on `{b}` before removing its worktree");
    }
    for p in &r.removed_worktrees {
        crate::diag!("removed worktree `{}`", p.display());
    }
    for b in &r.deleted_branches {
        crate::diag!("deleted merged branch `{b}`");
    }
    for k in &r.kept_branches {
        let (b, n) = (&k.branch, k.unmerged_commits);
        let lines: Vec<&String> = [&k.other_tasks, &k.note].into_iter().flatten().collect();
        if !lines.is_empty() {
            for line in lines {
                crate::diag!("{line}");
            }
            continue;
        }
        if k.task_not_completed && n == 0 {
            let t = k.target.as_deref().unwrap_or("HEAD");
            crate::diag!(
                "kept branch `{b}`: its task is not completed, so qw never merged it (`{t}` holds it: was `{t}` moved onto it?); delete it (`git branch -D {b}`) if you do not need it"
            );
            continue;
        }
        if k.changes_merged {
            let t = k.target.as_deref().unwrap_or("HEAD");
            crate::diag!(
                "kept branch `{b}`: `{t}` lacks its {n} commit(s) but already holds all their changes (merged by squash or cherry-pick): nothing is left to merge; delete it (`git branch -D {b}`) if you do not need it"
            );
            continue;
        }
        let merge = if k.unrelated {
            "git merge --allow-unrelated-histories"
        } else {
            "git merge"
        };
        crate::diag!(
            "kept branch `{b}`: {n} unmerged commit(s); merge it (`{merge} {b}`) or delete it (`git branch -D {b}`)"
        );
    }
    if !r.forgotten_kept.is_empty() {
        crate::diag!(
            "forgot qw's record of {} kept branch(es) now deleted or merged: {}",
            r.forgotten_kept.len(),
            r.forgotten_kept
                .iter()
                .map(|b| format!("`{b}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if r.forgotten_merge_notes > 0 {
        crate::diag!(
            "forgot qw's notes of {} merge(s) no branch holds any more",
            r.forgotten_merge_notes
        );
    }
    for (i, b) in r.skipped_locked.iter().enumerate() {
        match r.held_by.get(i).filter(|h| !h.is_empty()) {
            Some(h) => crate::diag!("left `{b}` alone: {h}"),
            None => {
                crate::diag!("left `{b}` alone: a running qw (or `git worktree lock`) holds it");
            }
        }
    }
    for (b, p) in &r.checked_out_elsewhere {
        let free = if p.is_dir() {
            format!(
                "`git -C {} switch --detach`",
                worktree::quote(&p.to_string_lossy())
            )
        } else {
            "`git worktree prune` (its directory is gone)".to_owned()
        };
        crate::diag!(
            "left `{b}` alone: it is checked out in the worktree `{}`, which qw did not make; its task does not start until {free} frees it",
            p.display()
        );
    }
    for s in r.strays.iter().chain(&r.notes) {
        crate::diag!("{s}");
    }
    for w in &r.warnings {
        crate::diag!("warning: {w}");
    }
}

fn print_entries(entries: &[Entry]) -> Result<(), CliError> {
    if entries.is_empty() {
        crate::diag!("no qw worktrees or task branches");
        return Ok(());
    }
    outln!(
        "{:<20} {:<10} {:<9} {:<28} PATH",
        "SPEC",
        "TASK",
        "STATE",
        "BRANCH"
    )?;
    for e in entries {
        let state = match e.state {
            EntryState::Locked => "locked",
            EntryState::Orphaned => "orphaned",
            EntryState::Merged => "merged",
            EntryState::Unmerged => "unmerged",
            EntryState::Snapshot => "snapshot",
            EntryState::Elsewhere => "elsewhere",
        };
        let mut path = e
            .path
            .as_ref()
            .map_or_else(|| "-".to_owned(), |p| p.display().to_string());
        if let Some(o) = &e.moved_off {
            path.push_str(&format!(
                "  (moved off qw's tip {}: `qw workflow-continue {}` puts it back)",
                &o[..10.min(o.len())],
                e.spec
            ));
        }
        if e.unmerged_commits > 0 {
            path.push_str(&format!("  ({} unmerged commit(s))", e.unmerged_commits));
        }
        if e.uncommitted_changes {
            path.push_str("  (uncommitted changes)");
        }
        if let Some(p) = &e.problem {
            path.push_str(&format!("  (broken: {p})"));
        }
        if let Some(h) = e.held_by.as_ref().filter(|_| e.state == EntryState::Locked) {
            path.push_str(&format!("  ({h})"));
        }
        if e.state == EntryState::Elsewhere {
            path.push_str("  (checked out in this worktree, which qw did not make)");
        }
        outln!(
            "{:<20} {:<10} {:<9} {:<28} {path}",
            e.spec,
            e.task,
            state,
            e.branch
        )?;
    }
    Ok(())
}
