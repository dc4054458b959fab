//! `qw state-backup`: create, list, restore and clean state backups (CONTRACT §5).

use clap::Args;

use super::out::outln;
use super::{CliError, CmdResult, Ctx};
use crate::names::{NameKind, validate};
use crate::state::{StateStore, backup};

/// Arguments of `qw state-backup`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Backups live in .claude/backups/state/NAME.json. Restoring backs up the current state
first (pre_restore_<time>.json). While a workflow of the project runs, --restore refuses
(exit 2, naming each running workflow's spec and pid: the restore would drop the tasks it
completed); with --wait it waits for them to end (up to QW_LOCK_TIMEOUT; Ctrl-C stops the
wait) and holds their workflow locks while it restores. A workflow starting during a
restore, of any spec, waits for the restore to end (it says so after a second).
--clean (7 days unless --days) also removes old copies of spec folders in
.claude/backups/workflows/; it never deletes the newest state backup nor the newest copy
of a spec.

Examples:
  qw state-backup before-upgrade
  qw state-backup --list
  qw state-backup --restore before-upgrade
  qw state-backup --restore before-upgrade --wait
  qw state-backup --clean
  qw state-backup --clean --days 30")]
pub struct StateBackupArgs {
    /// Backup name (default `state_backup_<YYYYmmdd_HHMMSS>`).
    pub name: Option<String>,
    /// List backups (name, time, size, phase summary).
    #[arg(long, conflicts_with_all = ["restore", "clean", "name"])]
    pub list: bool,
    /// Restore a backup (the current state is backed up first).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["clean", "name"])]
    pub restore: Option<String>,
    /// With --restore: wait for running workflows to end instead of refusing.
    #[arg(long, requires = "restore")]
    pub wait: bool,
    /// Delete backups (and spec-folder copies) older than `--days`, 7 by default; never the newest.
    #[arg(long, conflicts_with = "name")]
    pub clean: bool,
    /// Age in days for `--clean` (default 7).
    #[arg(long, value_name = "N", requires = "clean")]
    pub days: Option<u32>,
}

/// Run `qw state-backup`.
pub(crate) fn run(ctx: &Ctx, args: StateBackupArgs) -> CmdResult {
    let json = ctx.global.json;
    if args.list {
        let list = backup::list(&ctx.project)?;
        if json {
            outln!("{}", to_json(&list)?)?;
        } else if list.is_empty() {
            crate::diag!(
                "qw: no backups in `{}`",
                ctx.project.state_backups_dir().display()
            );
        } else {
            let width = list.iter().map(|b| b.name.len()).max().unwrap_or(4).max(4);
            outln!("{:width$}  {:19}  {:>9}  SUMMARY", "NAME", "TIME", "SIZE")?;
            for b in &list {
                outln!(
                    "{:width$}  {}  {:>9}  {}",
                    b.name,
                    b.modified.format("%Y-%m-%d %H:%M:%S"),
                    b.size,
                    b.summary
                )?;
            }
        }
        return Ok(0);
    }
    if let Some(name) = &args.restore {
        validate(NameKind::Backup, backup::strip_json(name))?;
        handle_signals()?;
        // Held until the restore is done: a running workflow would go on recording
        // into the restored state, which has lost what it completed meanwhile.
        let stem = backup::strip_json(name);
        // Taken before looking for running workflows and held until the state is
        // restored: a workflow starting meanwhile (of any spec, also one with no lock
        // file yet) waits for it (`Project::restore_lock_file`).
        let restoring = hold_restore(&ctx.project)?;
        let workflows = super::workflow_reset::hold_all_workflows(
            ctx,
            args.wait,
            "restoring the state now would drop what it records (the tasks it completed, their runs and costs)",
            &format!("qw state-backup --restore {stem} --wait"),
        )?;
        let r = backup::restore(&StateStore::new(&ctx.project), name)?;
        drop(workflows);
        drop(restoring);
        if json {
            outln!("{}", to_json(&r)?)?;
        } else {
            outln!("restored `{}`", r.restored.display())?;
            if let Some(p) = &r.previous_saved_to {
                outln!("the previous state was saved to `{}`", p.display())?;
            }
        }
        return Ok(0);
    }
    if args.clean {
        let days = args.days.unwrap_or(backup::DEFAULT_CLEAN_DAYS);
        let r = backup::clean(&ctx.project, days)?;
        if json {
            outln!("{}", to_json(&r)?)?;
        } else {
            for p in &r.removed {
                outln!("removed `{}`", p.display())?;
            }
            for p in &r.removed_workflows {
                outln!("removed `{}`", p.display())?;
            }
            if !r.skipped.is_empty() {
                let names: Vec<String> = r
                    .skipped
                    .iter()
                    .map(|p| format!("`{}`", p.display()))
                    .collect();
                outln!(
                    "left {} entr{} qw did not make alone: {}",
                    names.len(),
                    if names.len() == 1 { "y" } else { "ies" },
                    crate::fmt::escaped_line(&names.join(", "))
                )?;
            }
            outln!(
                "{} backup(s) older than {days} day(s) removed, {} kept; {} spec-folder copy(ies) removed, {} kept",
                r.removed.len(),
                r.kept,
                r.removed_workflows.len(),
                r.kept_workflows
            )?;
        }
        return Ok(0);
    }
    if let Some(name) = &args.name {
        validate(NameKind::Backup, backup::strip_json(name))?;
    }
    handle_signals()?;
    // Made after the handlers: a store's waits end on the process's signal token.
    let path = StateStore::new(&ctx.project).backup(args.name.as_deref())?;
    if json {
        outln!("{}", serde_json::json!({ "backup": path }))?;
    } else {
        outln!("backed up the state to `{}`", path.display())?;
    }
    if let Some(word) = args.name.as_deref().and_then(action_word) {
        // `qw state-backup list` is a valid name (CONTRACT §5), and a likely slip.
        crate::diag!(
            "qw: note: `{word}` was taken as the backup's name; the actions are flags: `qw state-backup --list`, `--restore NAME`, `--clean [--days N]`"
        );
    }
    Ok(0)
}

/// From here SIGINT, SIGTERM and SIGHUP end every wait for a lock (the state's, a
/// restore's, a workflow's) with 128+N and nothing changed; after a second of waiting a
/// line names what is awaited and who holds it. Not for `--list` and `--clean`, which wait
/// for nothing: a signal ends them as usual.
fn handle_signals() -> Result<(), CliError> {
    crate::cancel::Cancel::on_signals()
        .map(drop)
        .map_err(|e| CliError::failed(format!("cannot handle signals: {e}")))
}

/// A backup name that reads like one of the actions (`list`, `restore`, …).
fn action_word(name: &str) -> Option<&str> {
    const ACTIONS: [&str; 6] = ["create", "list", "ls", "restore", "clean", "delete"];
    let stem = backup::strip_json(name);
    ACTIONS
        .iter()
        .any(|a| stem.eq_ignore_ascii_case(a))
        .then_some(name)
}

/// Serialize a report for `--json`.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, CliError> {
    serde_json::to_string(v).map_err(|e| CliError::failed(format!("cannot write JSON: {e}")))
}

/// Take `.claude/runs/.state-restore.lock` (`Project::restore_lock_file`), waiting for
/// another restore. `.claude/runs` is made as every writer of qw's makes it: never through
/// a link there (refused, naming it), even one made after the command checked.
fn hold_restore(project: &crate::project::Project) -> Result<crate::fs::LockedFile, CliError> {
    crate::fs::NoFollowDir::create(&project.claude_dir(), std::path::Path::new("runs"))
        .map_err(|e| CliError::failed(e.to_string()))?;
    crate::fs::LockedFile::acquire(
        project.restore_lock_file(),
        "another state restore to end",
        &crate::fs::LockTimeout::from_env(),
        &crate::cancel::Cancel::process(),
    )
    .map_err(super::workflow_reset::lock_failed)
}

#[cfg(test)]
mod tests {
    use super::hold_restore;
    use crate::project::Project;

    #[test]
    fn the_restore_lock_is_never_made_through_a_linked_runs_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (project, victim) = Project::with_linked_runs(dir.path());
        let Err(e) = hold_restore(&project) else {
            panic!("a linked `.claude/runs` was followed");
        };
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(crate::fs::read_dir(&victim).unwrap().count(), 0);
        // A real folder (made when missing): the lock is taken there.
        crate::fs::remove_file(project.runs_dir()).unwrap();
        let held = hold_restore(&project).unwrap();
        assert!(project.restore_lock_file().is_file());
        drop(held);
    }
}
