//! `qw workflow-reset`: soft or hard reset of one spec's workflow (CONTRACT §5).

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;

use super::out::outln;
use super::state_backup::to_json;
use super::{CliError, CmdResult, Ctx};
use crate::names::{NameKind, validate};
use crate::state::StateStore;
use crate::state::reset::{ResetMode, ResetReport, reset};

/// Arguments of `qw workflow-reset`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
The state is backed up first (.claude/backups/state/pre_reset_<spec>_<time>.json).
Soft: tasks in_progress/failed/blocked become pending, the phase returns to the one after
the last completed phase, the spec's errors are cleared; no file is touched.
Hard: the spec folder is copied to .claude/backups/workflows/<spec>_<time>/, then
design.md, tasks.md and reports are removed (requirements.md stays), the spec's tasks are
cleared and it returns to design_creation. Asks on a terminal unless --yes.

Example:
  qw workflow-reset user-auth
  qw workflow-reset user-auth --hard --yes")]
pub struct WorkflowResetArgs {
    /// The spec to reset.
    pub spec: String,
    /// Also remove generated design.md, tasks.md and reports (after copying the folder to backups).
    #[arg(long)]
    pub hard: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Run `qw workflow-reset`.
pub fn run(ctx: &Ctx, args: WorkflowResetArgs) -> CmdResult {
    validate(NameKind::Spec, &args.spec)?;
    let mode = if args.hard {
        ResetMode::Hard
    } else {
        ResetMode::Soft
    };
    if args.hard && !args.yes {
        confirm(ctx, &args.spec)?;
    }
    let report = reset(&StateStore::new(&ctx.project), &args.spec, mode)?;
    if ctx.global.json {
        outln!("{}", to_json(&report)?)?;
    } else {
        print_report(&report)?;
    }
    // The spec's task worktrees go too (their unmerged work stays on its branches). The
    // reset is done by now: what cannot be pruned is a warning, not a failure.
    if let Ok(Some(repo)) = crate::worktree::Repo::discover(&ctx.project) {
        match crate::worktree::prune(&repo, Some(&args.spec)) {
            Ok(pruned) => super::worktrees::print_prune(&pruned),
            Err(e) => crate::diag!(
                "qw: warning: the worktrees of `{}` were not pruned: {e}; run `qw worktrees --prune --spec {}` later (nothing was discarded)",
                args.spec,
                args.spec
            ),
        }
    }
    Ok(0)
}

fn confirm(ctx: &Ctx, spec: &str) -> Result<(), CliError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::usage(format!(
            "`qw workflow-reset {spec} --hard` removes generated documents and needs confirmation, but stdin is not a terminal"
        ))
        .hint("pass --yes to confirm"));
    }
    let _ = write!(
        std::io::stderr(),
        "Hard reset of `{spec}`: copy `{}` to backups, then remove design.md, tasks.md and reports. Continue? [y/N] ",
        ctx.project.spec_dir(spec).display()
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::failed(format!("cannot read the answer from stdin: {e}")))?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "hard reset of `{spec}` cancelled; nothing was changed"
        )))
    }
}

fn print_report(r: &ResetReport) -> Result<(), CliError> {
    let c = &r.changes;
    match r.mode {
        ResetMode::Soft => outln!(
            "soft reset of `{}`: {} task(s) back to pending{}, {} error(s) cleared, phase {}",
            r.spec,
            c.tasks.len(),
            list_ids(&c.tasks),
            c.errors_cleared,
            c.phase
        )?,
        ResetMode::Hard => {
            if let Some(p) = &r.workflow_backup {
                outln!("copied the spec folder to `{}`", p.display())?;
            }
            for f in &r.removed_files {
                outln!("removed `{}`", f.display())?;
            }
            outln!(
                "hard reset of `{}`: {} task(s) cleared, {} error(s) cleared, phase {}",
                r.spec,
                c.tasks.len(),
                c.errors_cleared,
                c.phase
            )?;
        }
    }
    if let Some(p) = &r.state_backup {
        outln!("the state was backed up to `{}`", p.display())?;
    }
    Ok(())
}

fn list_ids(ids: &[String]) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        format!(" ({})", ids.join(", "))
    }
}
