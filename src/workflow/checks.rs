//! The `_Verify:_` checks a run uses are the ones the user wrote: an agent must not be
//! able to weaken its own check, or a sibling's, by editing tasks.md (through the spec
//! link in its worktree, or the main tree's file by its absolute path).
//!
//! A run uses the checks it read when the implementation phase started (they are in
//! memory; nothing re-reads them). So that a later run does not take a check an agent
//! changed during this one, the run records them in `.claude/runs/.<spec>.checks.json`
//! when the phase starts (`open`), and compares tasks.md with them when it ends
//! (`close`): unchanged, the record is deleted; changed, the record keeps the changed
//! tasks' checks and the next run of the spec is refused (exit 2) until tasks.md holds
//! them again — or the user, whose change it was, deletes the record. A record left open
//! (qw killed) is checked the same way at the next start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::project::Project;
use crate::spec::tasks::TaskList;
use crate::workflow::WorkflowError;
use crate::workflow::reporter::Events;

/// What the record holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    /// Task id → its check as the run read it (`None`: no `_Verify:_`).
    checks: BTreeMap<String, Option<String>>,
    /// Whether the run that wrote it ended (then `checks` holds only the changed ones).
    finished: bool,
    /// Task id → its check as tasks.md held it when the run ended (changed ones only).
    #[serde(default)]
    changed_to: BTreeMap<String, Option<String>>,
}

/// `.claude/runs/.<spec>.checks.json`.
pub(crate) fn record_path(project: &Project, spec: &str) -> PathBuf {
    project.checks_record_file(spec)
}

fn checks_of(list: &TaskList) -> BTreeMap<String, Option<String>> {
    list.tasks()
        .iter()
        .map(|t| (t.id.clone(), t.verify.clone()))
        .collect()
}

fn read_record(path: &Path) -> Result<Option<Record>, WorkflowError> {
    match crate::fs::read_regular_text(path, 16 * 1024 * 1024) {
        Ok(text) => Ok(serde_json::from_str(&text).ok().or_else(|| {
            // Not qw's: nothing to hold the checks against; dropped at the start.
            tracing::warn!("`{}` is not a record qw wrote", path.display());
            None
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn shown(check: Option<&String>) -> String {
    check.map_or_else(|| "(no check)".to_owned(), |c| format!("`{c}`"))
}

/// Before a run (its workflow lock held, nothing written yet): refuse when tasks.md holds
/// a check other than the one a record says the user wrote (changed while an earlier run
/// went on); otherwise forget the record.
pub(crate) fn at_start(project: &Project, spec: &str, tasks: &Path) -> Result<(), WorkflowError> {
    let path = record_path(project, spec);
    let Some(record) = read_record(&path)? else {
        remove(&path);
        return Ok(());
    };
    if !tasks.is_file() {
        remove(&path);
        return Ok(());
    }
    let list = super::runner::load_tasks_at(tasks)?;
    let now = checks_of(&list);
    let mut changes = Vec::new();
    for (id, was) in &record.checks {
        let Some(current) = now.get(id) else {
            continue;
        };
        if current != was {
            changes.push(format!(
                "task {id}'s _Verify:_ {} → {}",
                shown(was.as_ref()),
                shown(current.as_ref())
            ));
        }
    }
    if changes.is_empty() {
        remove(&path);
        return Ok(());
    }
    Err(WorkflowError::ChecksChanged {
        tasks: tasks.to_path_buf(),
        changes: changes.join(", "),
        when: if record.finished {
            "while an earlier run of the spec went on (an agent's edit?)"
        } else {
            "since a run of the spec that did not finish began (an agent's edit?)"
        },
        record: path,
    })
}

/// The checks a run opened, carried by the run ([`super::runner`]'s `Run`): `close`
/// compares with these, not with the file, which an agent can delete or rewrite while the
/// run goes on (rev7 R2).
#[derive(Debug, Default)]
pub(crate) struct Opened(std::sync::Mutex<Option<BTreeMap<String, Option<String>>>>);

impl Opened {
    fn set(&self, checks: BTreeMap<String, Option<String>>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(checks);
    }

    fn take(&self) -> Option<BTreeMap<String, Option<String>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// The implementation phase starts with `list`: record its checks, in the file and in
/// `opened`.
pub(crate) fn open(
    project: &Project,
    spec: &str,
    list: &TaskList,
    opened: &Opened,
) -> Result<(), WorkflowError> {
    let record = Record {
        checks: checks_of(list),
        finished: false,
        changed_to: BTreeMap::new(),
    };
    opened.set(record.checks.clone());
    write(&record_path(project, spec), &record)
}

/// The run ends: compare tasks.md with the checks it ran with. Unchanged: the record is
/// deleted. Changed: said, and the record keeps the changed ones for the next start.
/// `opened`: what this run's `open` recorded (nothing when its implementation phase did
/// not start: then an open record in the file, a killed run's, is compared).
pub(crate) fn close(
    project: &Project,
    spec: &str,
    tasks: &Path,
    opened: &Opened,
    events: &Events<'_>,
) {
    let path = record_path(project, spec);
    let record = match opened.take() {
        // What this run read, whatever the file holds now (gone, rewritten).
        Some(checks) => Record {
            checks,
            ..Record::default()
        },
        None => match read_record(&path) {
            Ok(Some(record)) if !record.finished => record,
            _ => return,
        },
    };
    let now = match super::runner::load_tasks_at(tasks) {
        Ok(list) => checks_of(&list),
        // Gone or unreadable: the next start says so; the record stays open.
        Err(_) => return,
    };
    let mut kept = Record {
        finished: true,
        ..Record::default()
    };
    for (id, was) in &record.checks {
        if let Some(current) = now.get(id)
            && current != was
        {
            kept.checks.insert(id.clone(), was.clone());
            kept.changed_to.insert(id.clone(), current.clone());
        }
    }
    if kept.checks.is_empty() {
        remove(&path);
        return;
    }
    let changes: Vec<String> = kept
        .checks
        .iter()
        .map(|(id, was)| {
            format!(
                "task {id}'s _Verify:_ {} → {}",
                shown(was.as_ref()),
                shown(kept.changed_to.get(id).and_then(Option::as_ref))
            )
        })
        .collect();
    if let Err(e) = write(&path, &kept) {
        tracing::warn!("could not write `{}`: {e}", path.display());
    }
    let _ = events.note(format!(
        "warning: `{}` was changed while this run went on (an agent's edit?): {}; this run used the checks as they were, and the next run of `{spec}` is refused until they are put back (if the change is yours, delete `{}`)",
        tasks.display(),
        changes.join(", "),
        path.display()
    ));
}

fn write(path: &Path, record: &Record) -> Result<(), WorkflowError> {
    let text = serde_json::to_string_pretty(record).map_err(WorkflowError::Options)?;
    crate::fs::write_generated(path, text.as_bytes())?;
    Ok(())
}

fn remove(path: &Path) {
    match crate::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("could not remove `{}`: {e}", path.display()),
    }
}
