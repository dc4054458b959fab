//! The `_Verify:_` checks a run uses are the ones the user wrote: an agent must not be
//! able to weaken its own check, or a sibling's, by editing tasks.md (through the spec
//! link in its worktree, or the main tree's file by its absolute path).
//!
//! A run uses the task list it read when the implementation phase started (in memory;
//! nothing re-reads it). So that a later run does not take a list an agent changed during
//! this one, the run records its shape in `.claude/runs/.<spec>.checks.json` when the
//! phase starts (`open`): every task's id, title, parent, whether it has subtasks, its
//! `_Depends:` and its `_Verify:_`. When the run ends (`close`) tasks.md is compared with
//! it: unchanged, the record is deleted; changed — a check or dependency changed, a task
//! gone, added, renumbered, retitled, moved or given subtasks (its check would never run
//! again), or tasks.md deleted — the run says so, the record stays, and the next run of
//! the spec is refused (exit 2) until tasks.md is put back — or the user, whose change it
//! was, deletes the record. A record left open (qw killed) is checked the same way at the
//! next start. Only ticks may change during a run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::project::Project;
use crate::spec::tasks::TaskList;
use crate::workflow::WorkflowError;
use crate::workflow::reporter::Events;

/// One task as the run read it: what its checks and its order hang on (not its tick).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Shape {
    title: String,
    verify: Option<String>,
    #[serde(default)]
    parent: Option<String>,
    leaf: bool,
    #[serde(default)]
    depends: Vec<String>,
}

/// What the record holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    /// Task id → its check as the run read it (`None`: no `_Verify:_`). The only field
    /// of records written before `tasks`; kept for them (and for an older qw).
    checks: BTreeMap<String, Option<String>>,
    /// Whether the run that wrote it ended.
    finished: bool,
    /// Records of older qw: task id → its check when the run ended (changed ones only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    changed_to: BTreeMap<String, Option<String>>,
    /// Task id → the task as the run read it: the whole list.
    #[serde(default)]
    tasks: BTreeMap<String, Shape>,
    /// tasks.md was gone when the run ended.
    #[serde(default)]
    deleted: bool,
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

fn shape_of(list: &TaskList) -> BTreeMap<String, Shape> {
    list.tasks()
        .iter()
        .map(|t| {
            (
                t.id.clone(),
                Shape {
                    title: crate::fmt::fold_whitespace(&t.title),
                    verify: t.verify.clone(),
                    parent: list.parent(&t.id).map(|p| p.id.clone()),
                    leaf: list.is_leaf(&t.id),
                    depends: t.depends.clone(),
                },
            )
        })
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

fn title(t: &str) -> String {
    format!("\"{}\"", crate::fmt::one_line(t, 60))
}

fn ids(list: &[String]) -> String {
    if list.is_empty() {
        "(none)".to_owned()
    } else {
        list.join(", ")
    }
}

/// What differs between the list a run read (`was`) and tasks.md now, one phrase each.
fn changes(was: &BTreeMap<String, Shape>, now: &BTreeMap<String, Shape>) -> Vec<String> {
    let mut out = Vec::new();
    for (id, w) in was {
        let Some(n) = now.get(id) else {
            out.push(format!("task {id} {} is gone", title(&w.title)));
            continue;
        };
        if n.verify != w.verify {
            out.push(format!(
                "task {id}'s _Verify:_ {} → {}",
                shown(w.verify.as_ref()),
                shown(n.verify.as_ref())
            ));
        }
        if n.leaf != w.leaf {
            out.push(if w.leaf {
                format!("task {id} has subtasks now (its own check no longer runs)")
            } else {
                format!("task {id} has no subtasks now")
            });
        }
        if n.parent != w.parent {
            out.push(format!(
                "task {id}'s parent {} → {}",
                w.parent.as_deref().unwrap_or("(none)"),
                n.parent.as_deref().unwrap_or("(none)")
            ));
        }
        if n.depends != w.depends {
            out.push(format!(
                "task {id}'s _Depends:_ {} → {}",
                ids(&w.depends),
                ids(&n.depends)
            ));
        }
        if n.title != w.title {
            out.push(format!(
                "task {id}'s title {} → {}",
                title(&w.title),
                title(&n.title)
            ));
        }
    }
    for (id, n) in now {
        if !was.contains_key(id) {
            out.push(format!("task {id} {} was added", title(&n.title)));
        }
    }
    out
}

/// A record of an older qw holds only the checks it read: compared by the ids it read.
fn check_changes(
    was: &BTreeMap<String, Option<String>>,
    now: &BTreeMap<String, Option<String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (id, was) in was {
        if let Some(current) = now.get(id)
            && current != was
        {
            out.push(format!(
                "task {id}'s _Verify:_ {} → {}",
                shown(was.as_ref()),
                shown(current.as_ref())
            ));
        }
    }
    out
}

/// Before a run (its workflow lock held, nothing written yet): refuse when tasks.md is not
/// the list a record says the user wrote (changed, or deleted, while an earlier run went
/// on); otherwise forget the record.
pub(crate) fn at_start(project: &Project, spec: &str, tasks: &Path) -> Result<(), WorkflowError> {
    let path = record_path(project, spec);
    let Some(record) = read_record(&path)? else {
        remove(&path);
        return Ok(());
    };
    let when = if record.finished {
        "while an earlier run of the spec went on (an agent's edit?)"
    } else {
        "since a run of the spec that did not finish began (an agent's edit?)"
    };
    if matches!(tasks.symlink_metadata(), Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
        if record.tasks.is_empty() && record.checks.is_empty() {
            remove(&path);
            return Ok(());
        }
        // Not taken as "no task list yet": a new one would be generated, and the old
        // tasks' records credited to its tasks by id (rev8b F12).
        return Err(WorkflowError::TasksDeleted {
            tasks: tasks.to_path_buf(),
            when,
            record: path,
        });
    }
    let list = super::runner::load_tasks_at(tasks)?;
    let changes = if record.tasks.is_empty() {
        check_changes(&record.checks, &checks_of(&list))
    } else {
        changes(&record.tasks, &shape_of(&list))
    };
    if changes.is_empty() {
        remove(&path);
        return Ok(());
    }
    Err(WorkflowError::ChecksChanged {
        tasks: tasks.to_path_buf(),
        changes: changes.join(", "),
        when,
        record: path,
    })
}

/// The checks a run opened, carried by the run ([`super::runner`]'s `Run`): `close`
/// compares with these, not with the file, which an agent can delete or rewrite while the
/// run goes on (rev7 R2).
#[derive(Debug, Default)]
pub(crate) struct Opened(std::sync::Mutex<Option<BTreeMap<String, Shape>>>);

impl Opened {
    fn set(&self, checks: BTreeMap<String, Shape>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(checks);
    }

    fn take(&self) -> Option<BTreeMap<String, Shape>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// The implementation phase starts with `list`: record its shape, in the file and in
/// `opened`.
pub(crate) fn open(
    project: &Project,
    spec: &str,
    list: &TaskList,
    opened: &Opened,
) -> Result<(), WorkflowError> {
    let record = Record {
        checks: checks_of(list),
        tasks: shape_of(list),
        ..Record::default()
    };
    opened.set(record.tasks.clone());
    write(&record_path(project, spec), &record)
}

/// The run ends: compare tasks.md with the list it ran with. Unchanged: the record is
/// deleted. Changed or deleted: said, and the record (what the run read) stays for the
/// next start.
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
    let read = match opened.take() {
        // What this run read, whatever the file holds now (gone, rewritten).
        Some(shape) => shape,
        None => match read_record(&path) {
            Ok(Some(record)) if !record.finished && !record.tasks.is_empty() => record.tasks,
            _ => return,
        },
    };
    let kept = |deleted: bool| Record {
        checks: read
            .iter()
            .map(|(id, s)| (id.clone(), s.verify.clone()))
            .collect(),
        finished: true,
        changed_to: BTreeMap::new(),
        tasks: read.clone(),
        deleted,
    };
    let keep = |record: &Record| {
        if let Err(e) = write(&path, record) {
            tracing::warn!("could not write `{}`: {e}", path.display());
        }
    };
    let now = match super::runner::load_tasks_at(tasks) {
        Ok(list) => shape_of(&list),
        Err(_) if matches!(tasks.symlink_metadata(), Err(e) if e.kind() == std::io::ErrorKind::NotFound) =>
        {
            keep(&kept(true));
            let _ = events.note(format!(
                "warning: `{}` was deleted while this run went on (an agent's edit?); this run used the tasks as it read them, and the next run of `{spec}` is refused until it is put back (`git checkout -- {}` if it is tracked; if the deletion is yours, delete `{}`)",
                tasks.display(),
                tasks.display(),
                path.display()
            ));
            return;
        }
        // Unreadable: the next start says why, and compares once it reads again.
        Err(_) => {
            keep(&kept(false));
            return;
        }
    };
    let changes = changes(&read, &now);
    if changes.is_empty() {
        remove(&path);
        return;
    }
    keep(&kept(false));
    let _ = events.note(format!(
        "warning: `{}` was changed while this run went on (an agent's edit?): {}; this run used the tasks and checks as it read them, and the next run of `{spec}` is refused until they are put back (if the change is yours, delete `{}`)",
        tasks.display(),
        changes.join(", "),
        path.display()
    ));
}

/// Forget the spec's record (a hard reset: the task list it speaks of is gone on purpose).
/// Returns the record's path if there was one.
pub(crate) fn forget(project: &Project, spec: &str) -> Option<PathBuf> {
    let path = record_path(project, spec);
    path.symlink_metadata().is_ok().then(|| {
        remove(&path);
        path
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(was: &str, now: &str) -> Vec<String> {
        let shape = |t: &str| shape_of(&TaskList::parse(t).unwrap());
        changes(&shape(was), &shape(now))
    }

    const LIST: &str =
        "- [ ] 1. One\n  - _Verify: `a`_\n- [ ] 2. Two\n  - _Depends: 1_\n  - _Verify: `b`_\n";

    #[test]
    fn only_ticks_may_change() {
        assert!(diff(LIST, LIST).is_empty());
        assert!(diff(LIST, &LIST.replace("[ ]", "[x]")).is_empty());
        assert!(diff(LIST, &LIST.replace("Two", "Two ")).is_empty());
    }

    #[test]
    fn every_change_of_the_lists_shape_is_one() {
        assert_eq!(
            diff(
                LIST,
                &LIST
                    .replace("2. Two", "4. Two")
                    .replace("_Depends: 1_\n  - ", "")
            ),
            ["task 2 \"Two\" is gone", "task 4 \"Two\" was added"]
        );
        assert_eq!(
            diff(LIST, &format!("{LIST}  - [ ] 2.1. Part\n")),
            [
                "task 2 has subtasks now (its own check no longer runs)",
                "task 2.1 \"Part\" was added"
            ]
        );
        assert_eq!(
            diff(LIST, &LIST.replace("  - _Depends: 1_\n", "")),
            ["task 2's _Depends:_ 1 → (none)"]
        );
        assert_eq!(
            diff(LIST, &LIST.replace("`b`", "`true`")),
            ["task 2's _Verify:_ `b` → `true`"]
        );
        assert_eq!(
            diff(LIST, &LIST.replace("Two", "One again")),
            ["task 2's title \"Two\" → \"One again\""]
        );
        assert_eq!(
            diff(LIST, "- [ ] 1. One\n  - _Verify: `a`_\n"),
            ["task 2 \"Two\" is gone"]
        );
    }

    #[test]
    fn a_record_of_an_older_qw_is_still_read() {
        let r: Record =
            serde_json::from_str(r#"{"checks":{"1":"a"},"finished":true,"changed_to":{"1":"b"}}"#)
                .unwrap();
        assert!(r.tasks.is_empty() && !r.deleted);
        let now = checks_of(&TaskList::parse("- [ ] 1. One\n  - _Verify: `b`_\n").unwrap());
        assert_eq!(
            check_changes(&r.checks, &now),
            ["task 1's _Verify:_ `a` → `b`"]
        );
    }
}
