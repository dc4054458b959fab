//! `qw workflow-reset`: soft or hard reset of one spec's workflow (CONTRACT §5).

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;

use super::out::outln;
use super::state_backup::to_json;
use super::{CliError, CmdResult, Ctx};
use crate::cancel::Cancel;
use crate::fs::{Holder, LockError, LockTimeout, LockedFile};
use crate::names::{NameKind, validate};
use crate::project::Project;
use crate::state::StateStore;
use crate::state::reset::{ResetMode, ResetReport, reset};

/// Arguments of `qw workflow-reset`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
The state is backed up first (.claude/backups/state/pre_reset_<spec>_<time>.json).
Soft: tasks in_progress/failed/blocked become pending, the phase returns to the one after
the last completed phase, the spec's errors are cleared; no file is touched. Completed
tasks stay completed, so `workflow-continue` runs only the reset ones. A spec whose every
task is completed has nothing to soft-reset: refused (exit 2), nothing changed, no backup;
use --hard to run it again from a new design and task list.
Hard: the spec folder is copied to .claude/backups/workflows/<spec>_<time>/, then
design.md, tasks.md and reports are removed (requirements.md stays), the spec's tasks are
cleared and it returns to design_creation. Asks on a terminal unless --yes or the setting
development_mode.confirmation_prompts is false. A pending suggestion
(.claude/next_command.txt) that names the spec is moved to next_command.failed.txt, so a
consumer does not run it against the reset spec.
While a workflow of the spec runs, the reset is refused (exit 2, naming the workflow's
pid); with --wait it waits for that workflow to end (up to QW_LOCK_TIMEOUT; Ctrl-C stops
the wait) and holds the spec's workflow lock while it resets, so none starts meanwhile. A state restore
(`state-backup --restore`) running is waited for first, the same way; a signal during
either wait exits 128+N with nothing changed.

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
    /// If the spec's workflow is running, wait for it to end instead of refusing.
    #[arg(long)]
    pub wait: bool,
}

/// Run `qw workflow-reset`.
pub(crate) fn run(ctx: &Ctx, args: WorkflowResetArgs) -> CmdResult {
    validate(NameKind::Spec, &args.spec)?;
    let mode = if args.hard {
        ResetMode::Hard
    } else {
        ResetMode::Soft
    };
    let prompts = ctx.settings()?.development_mode.confirmation_prompts();
    if args.hard && !args.yes && prompts {
        confirm(ctx, &args.spec)?;
    }
    // From here SIGINT, SIGTERM and SIGHUP end the waits below with 128+N and a line
    // naming what was awaited; once the reset has begun it is finished, never left half
    // done. (Not before the question above: Ctrl-C must end a pending answer at once.)
    Cancel::on_signals().map_err(|e| CliError::failed(format!("cannot handle signals: {e}")))?;
    // A restore running now ends first (it would write its state over this reset's, or
    // drop it); one starting later finds the spec's workflow lock held and waits or
    // refuses, as for a running workflow. Taken before the workflow lock, as a workflow
    // start does, so the two never wait for each other crosswise.
    let gate = wait_out_restore(ctx)?;
    // Held until the reset is done: a running workflow would die on a missing tasks.md
    // and leave the state claiming it finished.
    let (workflow, _gate) = hold_workflow(ctx, &args.spec, args.wait, gate)?;
    // Task worktrees and branches are the repository's: a workflow of the spec running in
    // another checkout of it (or started from a task worktree) holds them (rev6b G13).
    if let Ok(Some(repo)) = crate::worktree::Repo::discover(&ctx.project)
        && let Some(who) = crate::worktree::workflow_runner(
            &repo,
            &args.spec,
            &[ctx.project.workflow_lock_file(&args.spec)],
        )
    {
        return Err(CliError::usage(format!(
            "the workflow of spec `{}` is running in another checkout of this repository ({who}); a reset now would remove its task worktrees and set its branches aside from under it",
            args.spec
        ))
        .hint("wait for it or stop it, then run the reset again; nothing was changed"));
    }
    if let Some(sig) = Cancel::process().pending() {
        return Err(CliError::with_code(
            crate::exit::EXEC_SIGNAL_BASE + sig,
            format!(
                "interrupted by signal {sig} before the reset of `{}` began; nothing was changed",
                args.spec
            ),
        ));
    }
    let mut report = reset(&StateStore::new(&ctx.project), &args.spec, mode)?;
    if args.hard {
        // The task list a run recorded is gone on purpose: the next run generates a new one.
        report
            .removed_files
            .extend(crate::workflow::forget_checks_record(
                &ctx.project,
                &args.spec,
            ));
    }
    let cleared = if args.hard {
        clear_suggestion(&ctx.project, &args.spec)?
    } else {
        None
    };
    // `prune` takes the lock itself (a lock of ours would look like a running workflow).
    drop(workflow);
    if ctx.global.json {
        let mut v = serde_json::to_value(&report)
            .map_err(|e| CliError::failed(format!("cannot write JSON: {e}")))?;
        v["cleared_suggestion"] = serde_json::json!(cleared);
        outln!("{}", to_json(&v)?)?;
    } else {
        print_report(&report)?;
        if let Some(text) = &cleared {
            outln!(
                "cleared the pending suggestion `{text}` (moved to `{}`)",
                ctx.project.next_command_failed_file().display()
            )?;
        }
    }
    // The spec's task worktrees go too (their unmerged work stays on its branches). The
    // reset is done by now: what cannot be pruned is a warning, not a failure.
    if let Ok(Some(repo)) = crate::worktree::Repo::discover(&ctx.project) {
        let completed = super::worktrees::completed_tasks(&ctx.project);
        match crate::worktree::prune(&repo, Some(&args.spec), &completed) {
            Ok(mut pruned) if args.hard => {
                // The old tasks' branches are set aside: the new tasks, which may have
                // the same ids, start from the target (rev5b F3).
                match crate::worktree::set_aside_spec_branches(&repo, &args.spec) {
                    Ok(aside) => {
                        pruned.kept_branches.retain(|k| {
                            !aside
                                .iter()
                                .any(|a| a.kept.is_some() && a.branch == k.branch)
                        });
                        super::worktrees::print_prune(&pruned);
                        for a in &aside {
                            crate::diag!("{}", a.line);
                        }
                    }
                    Err(e) => {
                        super::worktrees::print_prune(&pruned);
                        crate::diag!(
                            "qw: warning: the task branches of `{}` were not set aside: {e}; a new task with the same id resumes from its old branch — rename them (`git branch -m qw/{}/<id> qw/{}/<id>@old`) first",
                            args.spec,
                            args.spec,
                            args.spec
                        );
                    }
                }
            }
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

/// Wait until no `qw state-backup --restore` runs ([`Project::restore_lock_file`]; bounded
/// by `QW_LOCK_TIMEOUT`, ended by a signal with 128+N). `None` in a folder without
/// `.claude/`: no restore can run there, and nothing is created.
fn wait_out_restore(ctx: &Ctx) -> Result<Option<LockedFile>, CliError> {
    if !ctx.project.claude_dir().is_dir() {
        return Ok(None);
    }
    crate::state::lock::wait_out_restore(&ctx.project, &Cancel::process())
        .map(Some)
        .map_err(lock_failed)
}

/// Take the spec's workflow lock (the one every running workflow of it holds): at once,
/// or refuse naming the workflow's pid; with `wait`, wait for it like any lock (bounded by
/// `QW_LOCK_TIMEOUT`, ended by a signal). `None` when no workflow ever ran and the spec
/// has no folder (nothing can be pulled from under anyone, and nothing is created).
///
/// `gate` (the restore lock) is given back to be held through the reset only when there
/// is no workflow lock for a restore to find; otherwise it is released once the workflow
/// lock is ours, or before a `--wait` for it — the lock file exists by then, so a restore
/// starting meanwhile sees it, and no workflow start of another spec waits on the gate
/// while this reset waits for its spec.
fn hold_workflow(
    ctx: &Ctx,
    spec: &str,
    wait: bool,
    gate: Option<LockedFile>,
) -> Result<(Option<LockedFile>, Option<LockedFile>), CliError> {
    let path = ctx.project.workflow_lock_file(spec);
    if !path.exists() && !ctx.project.spec_dir(spec).is_dir() {
        return Ok((None, gate));
    }
    crate::fs::create_dir_all(crate::fs::parent_dir(&path))
        .map_err(|e| CliError::failed(e.to_string()))?;
    let held = LockedFile::try_acquire(&path).map_err(lock_failed)?;
    drop(gate);
    if let Some(lock) = held {
        return Ok((Some(lock), None));
    }
    if !wait {
        let holder = LockedFile::probe(&path)
            .ok()
            .flatten()
            .unwrap_or_else(Holder::unknown);
        let err = CliError::usage(format!(
            "the workflow of spec `{spec}` is running ({holder}); a reset now would pull its files from under it"
        ))
        .hint(format!(
            "wait for it, stop it, or pass --wait: `qw workflow-reset {spec} --wait`"
        ));
        return Err(holder.hints(&path).into_iter().fold(err, CliError::hint));
    }
    LockedFile::acquire(
        &path,
        format!("the workflow of spec `{spec}`"),
        &LockTimeout::from_env(),
        &Cancel::process(),
    )
    .map(|lock| (Some(lock), None))
    .map_err(lock_failed)
}

/// A lock that could not be taken, as the command's error: interrupted by a signal, or failed.
pub(crate) fn lock_failed(e: LockError) -> CliError {
    let code = match e.interrupted() {
        Some(sig) => crate::exit::EXEC_SIGNAL_BASE + sig,
        None => crate::exit::FAILED,
    };
    e.hints()
        .into_iter()
        .fold(CliError::with_code(code, e.to_string()), CliError::hint)
}

/// Take the workflow lock of every spec of the project that has one (every workflow that
/// ever ran, or runs now, holds its spec's), for a command that changes every spec's
/// record at once (`state-backup --restore`). A workflow running now is refused (exit 2)
/// naming each one's spec and pid, with `what` saying what the command would do to it and
/// `retry` the command to wait instead; with `wait`, each is waited for like any lock
/// (bounded by `QW_LOCK_TIMEOUT`, ended by a signal). The locks are held until dropped.
/// A spec that never ran has no lock file to find: the caller holds
/// [`Project::restore_lock_file`] first, which every workflow start takes before its own.
pub(crate) fn hold_all_workflows(
    ctx: &Ctx,
    wait: bool,
    what: &str,
    retry: &str,
) -> Result<Vec<LockedFile>, CliError> {
    let dir = ctx.project.runs_dir();
    let mut specs: Vec<String> = match crate::fs::read_dir(&dir) {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let spec = name.strip_prefix('.')?.strip_suffix(".workflow.lock")?;
                crate::names::validate(NameKind::Spec, spec)
                    .is_ok()
                    .then(|| spec.to_owned())
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(CliError::failed(e.to_string())),
    };
    specs.sort();
    let mut held = Vec::new();
    let mut busy = Vec::new();
    for spec in specs {
        let path = ctx.project.workflow_lock_file(&spec);
        match LockedFile::try_acquire(&path).map_err(lock_failed)? {
            Some(lock) => held.push(lock),
            None => busy.push((spec, path)),
        }
    }
    if busy.is_empty() {
        return Ok(held);
    }
    if !wait {
        let mut hints = Vec::new();
        let running: Vec<String> = busy
            .iter()
            .map(|(spec, path)| {
                let holder = LockedFile::probe(path)
                    .ok()
                    .flatten()
                    .unwrap_or_else(Holder::unknown);
                hints.extend(holder.hints(path));
                format!("`{spec}` ({holder})")
            })
            .collect();
        let (these, are) = if running.len() == 1 {
            ("the workflow of spec", "is")
        } else {
            ("the workflows of specs", "are")
        };
        let err = CliError::usage(format!(
            "{these} {} {are} running; {what}",
            running.join(", ")
        ))
        .hint(format!("wait for it, stop it, or pass --wait: `{retry}`"));
        return Err(hints.into_iter().fold(err, CliError::hint));
    }
    for (spec, path) in busy {
        let lock = LockedFile::acquire(
            &path,
            format!("the workflow of spec `{spec}`"),
            &LockTimeout::from_env(),
            &Cancel::process(),
        )
        .map_err(lock_failed)?;
        held.push(lock);
    }
    Ok(held)
}

/// A hard reset makes a pending `next_command.txt` that names `spec` stale (it would
/// continue or implement documents that are gone): move it to `next_command.failed.txt`
/// with the reason, as `consume` does with a refused one. Returns the command cleared.
fn clear_suggestion(project: &Project, spec: &str) -> Result<Option<String>, CliError> {
    let path = project.next_command_file();
    // Only a regular file, bounded as `consume` reads it: a FIFO or a link to /dev/zero
    // there must not hang the reset (it is `consume`'s to refuse).
    let text = match crate::fs::read_regular_text(&path, super::consume::MAX_SUGGESTION_BYTES) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if crate::fs::is_refused(&e) => return Ok(None),
        Err(e) => return Err(CliError::failed(e.to_string())),
    };
    let command = text.trim();
    let names_spec = command
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .any(|w| w == spec);
    if !names_spec {
        return Ok(None);
    }
    let record = format!(
        "{}\n# cleared at {}: `qw workflow-reset {spec} --hard` reset the spec it names\n",
        crate::fmt::escaped_line(command),
        chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
    );
    crate::fs::append_regular(&project.next_command_failed_file(), record.as_bytes())
        .map_err(|e| CliError::failed(e.to_string()))?;
    crate::fs::remove_file(&path).map_err(|e| CliError::failed(e.to_string()))?;
    Ok(Some(command.to_owned()))
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
            for f in &r.skipped_files {
                outln!(
                    "not copied to the backup (not a regular file, folder or symlink): `{}`",
                    f.display()
                )?;
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
