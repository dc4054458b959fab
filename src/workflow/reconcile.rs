//! Reconcile a spec's tasks in the unified state with its `tasks.md`, each time its
//! workflow starts or resumes.
//!
//! Owns: deciding, for every way the two can disagree, which side wins ([`plan`], pure,
//! unit-tested), applying the repairs through the normal durable paths (the state under
//! its lock; `tasks.md` through the byte-preserving ticker of [`crate::spec::tasks`],
//! which keeps the file's mode and writes through symlinks), and reporting every repair:
//! one progress line each and one `errors` entry (component `reconcile`) listing them.
//! Must not: run tasks, or write anything when `tasks.md` does not parse (the driver
//! refuses such a file before this runs).
//!
//! The state is the record. The rules, in the order they are applied:
//! - **Renumbered**: a state task whose id is gone from `tasks.md`, or now names a task
//!   with another title, while exactly one unmatched leaf carries its title (and no other
//!   unmatched state task does) → its record moves to the new id (`renumbered_from`).
//!   A same-id task with a new title and no such match is the same task, retitled —
//!   unless its record carries a completion (completed, or its checked work saved with
//!   only the merge missing): see **Another task**.
//! - **Another task**: a state record that carries a completion is carried only to a
//!   leaf that is the same task — the same title, and (completed) the same `_Verify:_`
//!   as the record says its attempt ran with (`verify`, written when the attempt starts;
//!   a record without it is compared by title alone; a merge-pending one whose check
//!   changed is the scheduler's, rev8b F13; a hand-ticked one whose leaf is still ticked
//!   stays the user's word). A leaf of the same id that differs is
//!   another task (tasks.md deleted and generated again, a task retitled while no checks
//!   record was kept, a check changed since the task passed its old one): the record
//!   moves whole to `orphaned_tasks`, the leaf is unticked if ticked, and it runs.
//! - **Gone**: a state task with no leaf left in `tasks.md` (deleted, or now a parent) →
//!   its record moves whole (attempts, costs, sessions, evidence) from `tasks` to the
//!   spec's `orphaned_tasks`, so progress counts only tasks that exist, and nothing is lost.
//! - **Completed in the state, unticked in the file** → ticked. qw writes the state before
//!   the tick, so a tick lost to a failed write (tasks.md edited into a parse error
//!   mid-run) or to a hand edit is restored; a completed task never runs again.
//! - **Ticked in the file, not completed in the state**, two cases:
//!   - the state records an attempt (`attempts > 0`: failed, interrupted, blocked after
//!     a try) → the state wins: the box (and any ticked parent of it) is unticked and the
//!     task runs again. qw tells agents not to edit `tasks.md`, so a tick contradicting a
//!     recorded unfinished attempt is most likely an agent's, and counting it would break
//!     "completed only when the agent succeeded and `_Verify:_` passed".
//!   - no attempt recorded (no entry, never run, or cleared by `qw workflow-reset`) → the
//!     file wins: a tick nobody contradicts is the user's word that the task is done (the
//!     documented way to skip a task). The state records it `completed` with
//!     `completed_by: "tasks.md"`.
//!
//! After the tasks of a run ran, [`ticks_taken`] applies the third rule once more, alone:
//! a tick taken from the file meanwhile (a `git stash` in the main worktree) is put back
//! before the report.
//!
//! A spec whose state knows no task yet has nothing to reconcile (the file is the only
//! record; the scheduler takes its ticks as completed, and the recorder marks them
//! `completed_by: "tasks.md"` too). Status, report and dashboard show such a task as
//! [`BY_HAND`], never as a run qw made. The first run says so, one `repaired:` line per
//! such task. A hand-ticked task with a `_Verify:_` has it run once by the scheduler
//! before it plans: passed → [`BY_HAND_VERIFIED`] (evidence under [`VERIFIED_KEY`]);
//! failed → unticked in the file and run as a normal task.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde_json::json;

use super::WorkflowError;
use super::reporter::Events;
use crate::spec::Spec;
use crate::spec::tasks::TaskList;
use crate::state::{self, StateStore, TaskStatus, Timestamp};

/// How status, report and run output describe a task completed by a tick in `tasks.md`
/// (`completed_by: "tasks.md"`): never as if qw ran or verified it.
pub(super) const BY_HAND: &str = "ticked by hand, not run by qw";

/// How a task ticked by hand whose `_Verify:_` qw ran once, and passed, is described.
pub(super) const BY_HAND_VERIFIED: &str = "ticked by hand, verified by qw";

/// Where the state's record of a task ticked by hand keeps the evidence of the one run of
/// its `_Verify:_` that passed (command, run folder, time).
pub(super) const VERIFIED_KEY: &str = "verified_by_qw";

/// How status, report and dashboard describe the task, if it was ticked by hand.
pub(super) fn hand_label(t: &state::Task) -> Option<&'static str> {
    ticked_by_hand(t).then(|| {
        if t.extra.contains_key(VERIFIED_KEY) {
            BY_HAND_VERIFIED
        } else {
            BY_HAND
        }
    })
}

/// Whether the state's record says the task was completed by a tick in `tasks.md`.
pub(super) fn ticked_by_hand(t: &state::Task) -> bool {
    t.status == TaskStatus::Completed
        && t.extra.get("completed_by").and_then(|v| v.as_str()) == Some("tasks.md")
}

/// Where a gone task's state record is kept, inside the spec's state entry.
pub(super) const ORPHANED_KEY: &str = "orphaned_tasks";

/// Where a task's state record keeps the `_Verify:_` its last attempt ran with (`null`:
/// none), written when the attempt starts: with the title, the task's identity.
pub(crate) const VERIFY_KEY: &str = "verify";

/// One disagreement between the state and `tasks.md`, and its repair.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Repair {
    /// Completed in the state, unticked in the file: tick it.
    Tick { id: String },
    /// Ticked in the file, but the state records an attempt that did not complete: untick.
    Untick {
        id: String,
        status: String,
        attempts: u32,
    },
    /// Ticked in the file, no attempt in the state: record it completed.
    CompletedFromFile { id: String, title: String },
    /// The task's id changed; its record moves.
    Renumbered {
        from: String,
        to: String,
        title: String,
    },
    /// No leaf of tasks.md is this task any more; its record moves to `orphaned_tasks`.
    Orphaned {
        id: String,
        title: String,
        status: String,
    },
    /// The leaf of the record's id is another task (another title or check): the
    /// record, which carries a completion, moves to `orphaned_tasks`; the leaf runs
    /// (unticked first when `ticked`).
    Another {
        id: String,
        title: String,
        status: String,
        /// How the leaf differs, one clause.
        why: String,
        ticked: bool,
    },
}

impl Repair {
    /// The kind, as recorded in the state.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Repair::Tick { .. } => "ticked",
            Repair::Untick { .. } => "unticked",
            Repair::CompletedFromFile { .. } => "completed_from_file",
            Repair::Renumbered { .. } => "renumbered",
            Repair::Orphaned { .. } => "orphaned",
            Repair::Another { .. } => "another_task",
        }
    }

    /// The task id the repair leaves in place (the new id of a renumbered task).
    pub(crate) fn task(&self) -> &str {
        match self {
            Repair::Tick { id }
            | Repair::Untick { id, .. }
            | Repair::CompletedFromFile { id, .. }
            | Repair::Orphaned { id, .. }
            | Repair::Another { id, .. } => id,
            Repair::Renumbered { to, .. } => to,
        }
    }

    /// One line saying what disagreed and what was done.
    pub(crate) fn describe(&self, spec: &str, file: &Path) -> String {
        let file = file.display();
        match self {
            Repair::Tick { id } => format!(
                "repaired: task {id} is completed in the state but was not ticked in `{file}`; ticked it (it does not run again)"
            ),
            Repair::Untick {
                id,
                status,
                attempts,
            } => format!(
                "repaired: task {id} was ticked in `{file}` but the state records {attempts} attempt(s) that did not complete ({status}); unticked it, it runs again (to skip it instead: `qw workflow-reset {spec}`, then tick it)"
            ),
            Repair::CompletedFromFile { id, .. } => format!(
                "repaired: task {id} is ticked in `{file}` and the state records no attempt of it; recorded it as completed by hand (it does not run)"
            ),
            Repair::Renumbered { from, to, title } => format!(
                "repaired: task {from} \"{title}\" is task {to} in `{file}` now; moved its state record to {to}"
            ),
            Repair::Orphaned { id, title, status } => format!(
                "repaired: task {id} \"{title}\" ({status}) is no longer a task of `{file}`; moved its state record to `{ORPHANED_KEY}` of spec `{spec}`"
            ),
            Repair::Another {
                id,
                title,
                status,
                why,
                ticked,
            } => format!(
                "repaired: task {id} of `{file}` is not the task the state recorded {status} as task {id} (\"{}\"): {why}; its completion is not carried over — moved that record to `{ORPHANED_KEY}` of spec `{spec}`, {}task {id} runs",
                crate::fmt::one_line(title, 80),
                if *ticked { "unticked it, and " } else { "and " }
            ),
        }
    }
}

fn norm(title: &str) -> String {
    crate::fmt::fold_whitespace(title)
}

/// Every disagreement between the leaves of `list` and the state's `tasks` of the spec,
/// with its repair (see the module header for the rules). Renumberings and orphans come
/// first, then the boxes to change in file order.
pub(crate) fn plan(list: &TaskList, tasks: &BTreeMap<String, state::Task>) -> Vec<Repair> {
    if tasks.is_empty() {
        return Vec::new();
    }
    let leaves = list.leaves();
    let (owner, matched) = owners(list, tasks);
    let matched: HashSet<&str> = matched.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    let mut another: HashSet<&str> = HashSet::new();
    for (sid, e) in tasks {
        if matched.contains(sid.as_str()) {
            continue;
        }
        // The leaf of its id, owned by no record, differs from it: another task.
        if let Some(t) = leaves.iter().find(|t| &t.id == sid)
            && !owner.contains_key(sid)
            && let Some(why) = other_task(e, t)
        {
            another.insert(&t.id);
            out.push(Repair::Another {
                id: sid.clone(),
                title: e.description.clone(),
                status: e.status.to_string(),
                why,
                ticked: t.checked,
            });
        } else {
            out.push(Repair::Orphaned {
                id: sid.clone(),
                title: e.description.clone(),
                status: e.status.to_string(),
            });
        }
    }
    for t in &leaves {
        if let Some(sid) = owner.get(&t.id)
            && sid != &t.id
        {
            out.push(Repair::Renumbered {
                from: sid.clone(),
                to: t.id.clone(),
                title: t.title.clone(),
            });
        }
    }
    for t in &leaves {
        if another.contains(t.id.as_str()) {
            // Its tick, if any, was the other task's: unticked with the record's move.
            continue;
        }
        let entry = owner.get(&t.id).and_then(|sid| tasks.get(sid));
        let completed = entry.is_some_and(|e| e.status == TaskStatus::Completed);
        match entry {
            Some(_) if completed && !t.checked => out.push(Repair::Tick { id: t.id.clone() }),
            Some(e) if !completed && t.checked && e.attempts > 0 => out.push(Repair::Untick {
                id: t.id.clone(),
                status: e.status.to_string(),
                attempts: e.attempts,
            }),
            _ if !completed && t.checked => out.push(Repair::CompletedFromFile {
                id: t.id.clone(),
                title: t.title.clone(),
            }),
            _ => {}
        }
    }
    out
}

/// Which state record is each leaf's (leaf id → state key), by the renumbering rules of
/// the module header, and the state keys some leaf owns. Status shows a leaf with its
/// owner's record, so a task inserted or renumbered since is never shown with another
/// task's completion (rev8a F2).
pub(crate) fn owners(
    list: &TaskList,
    tasks: &BTreeMap<String, state::Task>,
) -> (HashMap<String, String>, HashSet<String>) {
    let leaves = list.leaves();
    let leaf_title: HashMap<&str, String> = leaves
        .iter()
        .map(|t| (t.id.as_str(), norm(&t.title)))
        .collect();
    // Leaf id → the state id whose record it is.
    let mut owner: HashMap<String, String> = HashMap::new();
    let mut matched: HashSet<&str> = HashSet::new();
    let leaf_check: HashMap<&str, Option<&str>> = leaves
        .iter()
        .map(|t| (t.id.as_str(), t.verify.as_deref()))
        .collect();
    // A completion goes only to a leaf with the check it passed (a merge-pending record
    // with another check is the scheduler's: it runs the task from the saved branch).
    let check_fits = |e: &state::Task, leaf: &str| {
        e.status != TaskStatus::Completed
            || recorded_check(e).is_none_or(|c| Some(c) == leaf_check.get(leaf).copied())
    };
    // 1. Same id and same title (or no title recorded).
    for (sid, e) in tasks {
        let title = norm(&e.description);
        if let Some(lt) = leaf_title.get(sid.as_str())
            && (title.is_empty() || &title == lt)
            && check_fits(e, sid)
        {
            owner.insert(sid.clone(), sid.clone());
            matched.insert(sid);
        }
    }
    // 2. The same title under another id, when unambiguous on both sides.
    let mut state_titles: HashMap<String, usize> = HashMap::new();
    for (sid, e) in tasks {
        if !matched.contains(sid.as_str()) && !norm(&e.description).is_empty() {
            *state_titles.entry(norm(&e.description)).or_default() += 1;
        }
    }
    let mut free_leaves: HashMap<&str, Vec<&str>> = HashMap::new();
    for t in &leaves {
        if !owner.contains_key(&t.id) {
            free_leaves
                .entry(leaf_title[t.id.as_str()].as_str())
                .or_default()
                .push(&t.id);
        }
    }
    for (sid, e) in tasks {
        let title = norm(&e.description);
        if matched.contains(sid.as_str()) || state_titles.get(&title) != Some(&1) {
            continue;
        }
        if let Some([leaf]) = free_leaves.get(title.as_str()).map(Vec::as_slice)
            && check_fits(e, leaf)
        {
            owner.insert((*leaf).to_owned(), sid.clone());
            matched.insert(sid);
        }
    }
    // 3. Same id, retitled — unless the record carries a completion: then the leaf is
    // another task (see `other_task`).
    for (sid, e) in tasks {
        if !matched.contains(sid.as_str())
            && leaf_title.contains_key(sid.as_str())
            && !owner.contains_key(sid)
            && !carries_completion(e)
        {
            owner.insert(sid.clone(), sid.clone());
            matched.insert(sid);
        }
    }

    let matched = matched.into_iter().map(str::to_owned).collect();
    (owner, matched)
}

/// Whether a state record carries a completion a leaf would inherit: completed, or its
/// checked work saved with only the merge missing (merged, it completes the leaf).
fn carries_completion(e: &state::Task) -> bool {
    e.status == TaskStatus::Completed || e.merge_pending.is_some()
}

/// The `_Verify:_` a record says its last attempt ran with: `Some(None)` for none,
/// `None` when it does not say (a record of an older qw, a task ticked by hand).
fn recorded_check(e: &state::Task) -> Option<Option<&str>> {
    match e.extra.get(VERIFY_KEY)? {
        serde_json::Value::Null => Some(None),
        serde_json::Value::String(c) => Some(Some(c.as_str())),
        _ => None,
    }
}

/// Why the leaf `t` of a record's id is another task than the record's, when the record
/// carries a completion: another title, or (completed) another `_Verify:_` than its
/// attempt ran with. `None`: nothing says so — nor for a record of a tick by hand whose
/// leaf is ticked: the tick is the user's word, whatever the title.
fn other_task(e: &state::Task, t: &crate::spec::tasks::Task) -> Option<String> {
    if !carries_completion(e) || (ticked_by_hand(e) && t.checked) {
        return None;
    }
    let was = norm(&e.description);
    if !was.is_empty() && was != norm(&t.title) {
        return Some(format!(
            "it is \"{}\" now (tasks.md generated again, or the task retitled)",
            crate::fmt::one_line(&t.title, 80)
        ));
    }
    match recorded_check(e) {
        Some(c) if e.status == TaskStatus::Completed && c != t.verify.as_deref() => Some(format!(
            "its _Verify:_ is {} now, and that record's attempt ran with {}",
            shown_check(t.verify.as_deref()),
            shown_check(c)
        )),
        _ => None,
    }
}

/// A `_Verify:_` command as a line shows it.
fn shown_check(check: Option<&str>) -> String {
    check.map_or_else(|| "no check".to_owned(), |c| format!("`{c}`"))
}

/// Apply the state side of `repairs` to the spec's entry (`name` is the spec's name).
/// Ticks and unticks change only the file; nothing is dropped: moved records keep every
/// field.
pub(crate) fn apply(spec: &mut state::Spec, name: &str, repairs: &[Repair]) {
    let now = Timestamp::now();
    let mut moved: HashMap<String, state::Task> = HashMap::new();
    for r in repairs {
        if let Repair::Renumbered { from: id, .. }
        | Repair::Orphaned { id, .. }
        | Repair::Another { id, .. } = r
            && let Some(e) = spec.tasks.remove(id)
        {
            moved.insert(id.clone(), e);
        }
    }
    let mut orphans: Vec<(String, state::Task)> = Vec::new();
    for r in repairs {
        match r {
            Repair::Renumbered { from, to, .. } => {
                let Some(mut e) = moved.remove(from) else {
                    continue;
                };
                e.id = to.clone();
                e.extra.insert("renumbered_from".into(), json!(from));
                if let Some(occupant) = spec.tasks.insert(to.clone(), e) {
                    // Not reachable through `plan`; kept rather than overwritten.
                    orphans.push((to.clone(), occupant));
                }
            }
            Repair::Orphaned { id, .. } | Repair::Another { id, .. } => {
                if let Some(e) = moved.remove(id) {
                    orphans.push((id.clone(), e));
                }
            }
            Repair::CompletedFromFile { id, title } => {
                let e = spec.tasks.entry(id.clone()).or_default();
                e.id = id.clone();
                e.spec_name = name.to_owned();
                if e.description.is_empty() {
                    e.description = title.clone();
                }
                e.status = TaskStatus::Completed;
                e.completed_at = Some(now.clone());
                e.error = None;
                e.extra.insert("completed_by".into(), json!("tasks.md"));
            }
            Repair::Tick { .. } | Repair::Untick { .. } => {}
        }
    }
    if orphans.is_empty() {
        return;
    }
    let kept = spec.extra.entry(ORPHANED_KEY).or_insert_with(|| json!({}));
    if !kept.is_object() {
        // Not ours to drop: keep whatever was there under the new map.
        let old = kept.take();
        *kept = json!({ "_previous": old });
    }
    if let Some(map) = kept.as_object_mut() {
        for (id, e) in orphans {
            let mut key = id.clone();
            let mut n = 1;
            while map.contains_key(&key) {
                n += 1;
                key = format!("{id}~{n}");
            }
            let mut value = serde_json::to_value(&e).unwrap_or_else(|_| json!({"id": id}));
            if let Some(obj) = value.as_object_mut() {
                obj.insert("orphaned_at".into(), json!(now));
            }
            map.insert(key, value);
        }
    }
}

/// Reconcile the spec's state with its `tasks.md` (if both exist), repair and report.
/// Called by the runner under the spec's workflow lock, before the run touches tasks.
pub(crate) fn at_start(
    store: &StateStore,
    spec: &Spec,
    events: &Events<'_>,
) -> Result<Vec<Repair>, WorkflowError> {
    let path = spec.tasks_path();
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let list = super::runner::load_tasks(spec)?;
    let name = spec.name();
    // Most starts agree: look first, write only when something disagrees.
    let known = store.load()?;
    let Some(entry) = known.specifications.get(name) else {
        return Ok(Vec::new());
    };
    if plan(&list, &entry.tasks).is_empty() {
        return Ok(Vec::new());
    }
    let repairs = store.update(|s| {
        let Some(entry) = s.specifications.get_mut(name) else {
            return Vec::new();
        };
        let repairs = plan(&list, &entry.tasks);
        if repairs.is_empty() {
            return repairs;
        }
        apply(entry, name, &repairs);
        let done = entry
            .tasks
            .values()
            .filter(|t| t.status == TaskStatus::Completed)
            .count();
        let leaves = list.leaves().len();
        if leaves > 0 {
            entry.progress_percentage = done.min(leaves) as f64 * 100.0 / leaves as f64;
        }
        let listed: Vec<serde_json::Value> = repairs
            .iter()
            .map(|r| {
                json!({"repair": r.kind(), "task": r.task(), "message": r.describe(name, &path)})
            })
            .collect();
        s.record_error(
            "reconcile",
            &format!(
                "the state and `{}` disagreed on {} task(s); repaired (the state is the record)",
                path.display(),
                repairs.len()
            ),
            json!({"spec": name, "file": path.display().to_string(), "repairs": listed}),
        );
        repairs
    })?;
    let ids = |want: fn(&Repair) -> bool| -> Vec<String> {
        repairs
            .iter()
            .filter(|r| want(r))
            .map(|r| r.task().to_owned())
            .collect()
    };
    let ticks = ids(|r| matches!(r, Repair::Tick { .. }));
    let unticks = ids(|r| {
        matches!(
            r,
            Repair::Untick { .. } | Repair::Another { ticked: true, .. }
        )
    });
    if !ticks.is_empty() {
        crate::spec::tasks::tick_file_many(&path, &ticks)?;
    }
    if !unticks.is_empty() {
        crate::spec::tasks::untick_file_many(&path, &unticks)?;
    }
    tracing::error!(
        target: crate::logging::RECORDED_ERRORS,
        spec = %name,
        component = %"reconcile",
        file = %path.display(),
        repairs = repairs.len(),
        "the state and `{}` disagreed on {} task(s); repaired (the state is the record)",
        path.display(),
        repairs.len()
    );
    for r in &repairs {
        let message = r.describe(name, &path);
        events.emit(super::events::EventKind::Repaired {
            task: r.task(),
            repair: r.kind(),
            message: &message,
        })?;
    }
    Ok(repairs)
}

/// After the tasks ran: a tick qw made in `tasks.md` that is gone again (a `git stash`,
/// a `git checkout` of the file or an editor's old copy took it while the run went on)
/// is put back from the state, the record, and said — so the run does not end
/// "completed" with the task unticked until the next start repairs it. Only ticks, and
/// only when nothing else disagrees (a renumbered or deleted task waits for the next
/// start, whose reconcile handles it whole); a `tasks.md` that does not parse is left
/// to the next start too.
pub(crate) fn ticks_taken(
    store: &StateStore,
    spec: &Spec,
    events: &Events<'_>,
) -> Result<(), WorkflowError> {
    let path = spec.tasks_path();
    if !path.is_file() {
        return Ok(());
    }
    let Ok(list) = super::runner::load_tasks(spec) else {
        return Ok(());
    };
    let known = store.load()?;
    let Some(entry) = known.specifications.get(spec.name()) else {
        return Ok(());
    };
    let repairs = plan(&list, &entry.tasks);
    if repairs.iter().any(|r| {
        matches!(
            r,
            Repair::Renumbered { .. } | Repair::Orphaned { .. } | Repair::Another { .. }
        )
    }) {
        return Ok(());
    }
    let ticks: Vec<String> = repairs
        .iter()
        .filter_map(|r| match r {
            Repair::Tick { id } => Some(id.clone()),
            _ => None,
        })
        .collect();
    if ticks.is_empty() {
        return Ok(());
    }
    crate::spec::tasks::tick_file_many(&path, &ticks)?;
    for id in &ticks {
        let message = format!(
            "repaired: task {id} is completed, but its tick in `{}` was taken while the run went on (a `git stash`, a `git checkout` of the file, an editor); ticked it again (the state is the record)",
            path.display()
        );
        events.emit(super::events::EventKind::Repaired {
            task: id,
            repair: "ticked",
            message: &message,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, title: &str, status: TaskStatus, attempts: u32) -> (String, state::Task) {
        (
            id.to_owned(),
            state::Task {
                id: id.to_owned(),
                spec_name: "demo".into(),
                status,
                description: title.to_owned(),
                attempts,
                cost_usd: Some(0.5),
                session_id: Some(format!("s-{id}")),
                ..Default::default()
            },
        )
    }

    fn tasks(list: &[(&str, &str, TaskStatus, u32)]) -> BTreeMap<String, state::Task> {
        list.iter()
            .map(|(i, t, s, a)| task(i, t, s.clone(), *a))
            .collect()
    }

    use TaskStatus::{Completed, Failed, Pending};

    #[test]
    fn agreeing_sides_need_nothing_and_an_unknown_spec_is_not_reconciled() {
        let list = TaskList::parse("- [x] 1. A\n- [ ] 2. B\n").unwrap();
        let st = tasks(&[("1", "A", Completed, 1), ("2", "B", Pending, 0)]);
        assert!(plan(&list, &st).is_empty());
        assert!(plan(&list, &BTreeMap::new()).is_empty());
    }

    #[test]
    fn completed_but_unticked_is_ticked() {
        let list = TaskList::parse("- [x] 1. A\n- [ ] 2. B\n- [ ] 3. C\n").unwrap();
        let st = tasks(&[
            ("1", "A", Completed, 1),
            ("2", "B", Completed, 1),
            ("3", "C", Pending, 0),
        ]);
        assert_eq!(plan(&list, &st), [Repair::Tick { id: "2".into() }]);
    }

    #[test]
    fn a_tick_against_a_recorded_attempt_loses_and_a_tick_alone_wins() {
        let list = TaskList::parse("- [x] 1. A\n- [x] 2. B\n- [x] 3. C\n").unwrap();
        let st = tasks(&[("1", "A", Failed, 2), ("2", "B", Pending, 0)]);
        assert_eq!(
            plan(&list, &st),
            [
                Repair::Untick {
                    id: "1".into(),
                    status: "failed".into(),
                    attempts: 2
                },
                Repair::CompletedFromFile {
                    id: "2".into(),
                    title: "B".into()
                },
                Repair::CompletedFromFile {
                    id: "3".into(),
                    title: "C".into()
                },
            ]
        );
        let mut spec = state::Spec {
            tasks: st,
            ..Default::default()
        };
        let repairs = plan(&list, &spec.tasks);
        apply(&mut spec, "demo", &repairs);
        assert_eq!(spec.tasks["1"].status, Failed, "the state's failure stands");
        for id in ["2", "3"] {
            assert_eq!(spec.tasks[id].status, Completed);
            assert_eq!(spec.tasks[id].extra["completed_by"], "tasks.md");
        }
        assert_eq!(spec.tasks["3"].description, "C");
    }

    #[test]
    fn an_inserted_task_renumbers_the_following_ones_and_moves_their_records() {
        let list = TaskList::parse("- [x] 1. A\n- [ ] 2. New\n- [x] 3. B\n- [ ] 4. C\n").unwrap();
        let st = tasks(&[
            ("1", "A", Completed, 1),
            ("2", "B", Completed, 1),
            ("3", "C", Failed, 3),
        ]);
        let repairs = plan(&list, &st);
        assert_eq!(
            repairs,
            [
                Repair::Renumbered {
                    from: "2".into(),
                    to: "3".into(),
                    title: "B".into()
                },
                Repair::Renumbered {
                    from: "3".into(),
                    to: "4".into(),
                    title: "C".into()
                },
            ]
        );
        let mut spec = state::Spec {
            tasks: st,
            ..Default::default()
        };
        apply(&mut spec, "demo", &repairs);
        let keys: Vec<&str> = spec.tasks.keys().map(String::as_str).collect();
        assert_eq!(keys, ["1", "3", "4"], "task 2 (New) is new: no record yet");
        assert_eq!(spec.tasks["3"].session_id.as_deref(), Some("s-2"));
        assert_eq!(spec.tasks["3"].id, "3");
        assert_eq!(spec.tasks["3"].extra["renumbered_from"], "2");
        assert_eq!(spec.tasks["4"].attempts, 3);
        assert_eq!(spec.tasks["4"].status, Failed);
    }

    #[test]
    fn swapped_ids_swap_records_and_an_unticked_renumbered_completion_is_ticked() {
        let list = TaskList::parse("- [ ] 1. B\n- [x] 2. A\n").unwrap();
        let st = tasks(&[("1", "A", Completed, 1), ("2", "B", Completed, 1)]);
        let repairs = plan(&list, &st);
        assert!(repairs.contains(&Repair::Renumbered {
            from: "1".into(),
            to: "2".into(),
            title: "A".into()
        }));
        assert!(repairs.contains(&Repair::Tick { id: "1".into() }));
        let mut spec = state::Spec {
            tasks: st,
            ..Default::default()
        };
        apply(&mut spec, "demo", &repairs);
        assert_eq!(spec.tasks["1"].session_id.as_deref(), Some("s-2"));
        assert_eq!(spec.tasks["2"].session_id.as_deref(), Some("s-1"));
    }

    #[test]
    fn a_retitled_task_keeps_its_id_unless_it_carries_a_completion_and_an_ambiguous_title_does_not_move()
     {
        let list = TaskList::parse(
            "- [x] 1. A, better said\n- [ ] 2. Same\n- [ ] 3. Same\n- [x] 4. D now\n",
        )
        .unwrap();
        let st = tasks(&[
            ("1", "A", Completed, 1),
            ("4", "D", Failed, 2),
            ("9", "Same", Completed, 1),
        ]);
        let repairs = plan(&list, &st);
        assert_eq!(
            repairs,
            [
                Repair::Another {
                    id: "1".into(),
                    title: "A".into(),
                    status: "completed".into(),
                    why: "it is \"A, better said\" now (tasks.md generated again, or the task retitled)".into(),
                    ticked: true,
                },
                Repair::Orphaned {
                    id: "9".into(),
                    title: "Same".into(),
                    status: "completed".into()
                },
                // A failed task retitled is the same task: its tick loses to its attempts.
                Repair::Untick {
                    id: "4".into(),
                    status: "failed".into(),
                    attempts: 2
                },
            ]
        );
        let mut spec = state::Spec {
            tasks: st,
            ..Default::default()
        };
        apply(&mut spec, "demo", &repairs);
        assert!(!spec.tasks.contains_key("1"), "task 1 is new: no record");
        assert_eq!(spec.extra[ORPHANED_KEY]["1"]["session_id"], "s-1");
        assert_eq!(spec.tasks["4"].session_id.as_deref(), Some("s-4"));
    }

    #[test]
    fn a_completion_goes_only_to_a_leaf_with_the_check_it_ran_with() {
        let list = TaskList::parse(
            "- [x] 1. A\n  - _Verify: `new`_\n- [ ] 2. B\n  - _Verify: `b`_\n- [ ] 3. C2\n- [ ] 4. D\n- [ ] 5. E\n",
        )
        .unwrap();
        let mut st = tasks(&[
            ("1", "A", Completed, 1),
            ("2", "B", Completed, 1),
            ("3", "C", Pending, 1),
            ("4", "D", Completed, 1),
            ("5", "E", Pending, 1),
        ]);
        let check = |st: &mut BTreeMap<String, state::Task>, id: &str, c: serde_json::Value| {
            st.get_mut(id).unwrap().extra.insert(VERIFY_KEY.into(), c);
        };
        check(&mut st, "1", json!("old"));
        check(&mut st, "2", json!("b"));
        // Merge-pending and retitled: its saved work is another task's. Merge-pending
        // with another check (5): the scheduler's to run from its branch (rev8b F13).
        for id in ["3", "5"] {
            check(&mut st, id, json!("c"));
            st.get_mut(id).unwrap().merge_pending = Some(state::MergePending {
                branch: format!("qw/demo/{id}"),
                tip: "0".repeat(40),
                check: Some("c".into()),
            });
        }
        // No check recorded (an older qw): compared by title alone.
        let repairs = plan(&list, &st);
        assert_eq!(
            repairs,
            [
                Repair::Another {
                    id: "1".into(),
                    title: "A".into(),
                    status: "completed".into(),
                    why: "its _Verify:_ is `new` now, and that record's attempt ran with `old`"
                        .into(),
                    ticked: true,
                },
                Repair::Another {
                    id: "3".into(),
                    title: "C".into(),
                    status: "pending".into(),
                    why: "it is \"C2\" now (tasks.md generated again, or the task retitled)".into(),
                    ticked: false,
                },
                Repair::Tick { id: "2".into() },
                Repair::Tick { id: "4".into() },
            ]
        );
    }

    #[test]
    fn a_gone_task_moves_whole_to_orphaned_tasks_and_never_overwrites_one() {
        let list = TaskList::parse("- [x] 1. A\n").unwrap();
        let st = tasks(&[("1", "A", Completed, 1), ("2", "B", Failed, 2)]);
        let mut spec = state::Spec {
            tasks: st.clone(),
            ..Default::default()
        };
        spec.extra
            .insert(ORPHANED_KEY.into(), json!({"2": {"id": "2"}}));
        let repairs = plan(&list, &st);
        assert_eq!(
            repairs,
            [Repair::Orphaned {
                id: "2".into(),
                title: "B".into(),
                status: "failed".into()
            }]
        );
        apply(&mut spec, "demo", &repairs);
        assert!(!spec.tasks.contains_key("2"));
        let kept = &spec.extra[ORPHANED_KEY];
        assert_eq!(kept["2"], json!({"id": "2"}), "the earlier orphan stays");
        assert_eq!(kept["2~2"]["attempts"], 2);
        assert_eq!(kept["2~2"]["cost_usd"], 0.5);
        assert_eq!(kept["2~2"]["session_id"], "s-2");
        assert!(kept["2~2"]["orphaned_at"].is_string());
    }

    #[test]
    fn a_task_that_became_a_parent_is_orphaned_and_its_children_are_new() {
        let list = TaskList::parse("- [ ] 1. A\n  - [ ] 1.1. A1\n").unwrap();
        let st = tasks(&[("1", "A", Completed, 1)]);
        assert_eq!(
            plan(&list, &st),
            [Repair::Orphaned {
                id: "1".into(),
                title: "A".into(),
                status: "completed".into()
            }]
        );
    }

    #[test]
    fn messages_are_one_line_and_name_the_file() {
        let file = Path::new("/p/.claude/specs/demo/tasks.md");
        for r in [
            Repair::Tick { id: "2".into() },
            Repair::Untick {
                id: "2".into(),
                status: "failed".into(),
                attempts: 1,
            },
            Repair::CompletedFromFile {
                id: "2".into(),
                title: "B".into(),
            },
            Repair::Renumbered {
                from: "2".into(),
                to: "3".into(),
                title: "B".into(),
            },
            Repair::Orphaned {
                id: "2".into(),
                title: "B".into(),
                status: "failed".into(),
            },
            Repair::Another {
                id: "2".into(),
                title: "B".into(),
                status: "completed".into(),
                why: "it is \"C\" now".into(),
                ticked: true,
            },
        ] {
            let m = r.describe("demo", file);
            assert!(
                !m.contains('\n') && m.contains("tasks.md") && m.contains('2'),
                "{m}"
            );
        }
    }
}
