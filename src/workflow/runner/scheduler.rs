//! The implementation phase: run the leaf tasks of `tasks.md` as a dependency graph, up
//! to `--parallel` at once, one thread per running task.
//!
//! A task starts when every leaf it depends on has completed. A task whose dependency
//! failed is `blocked`. After a final failure with `--fail-fast`, or a pause (usage
//! limit, cost ceiling), or a signal, no new task starts; running ones finish (a signal
//! is forwarded to them by the executor; under a batch scheduler `--fail-fast` and a
//! cost ceiling cancel them too, see `Stop`).
//!
//! Before it plans, every leaf ticked by hand (ticked in `tasks.md`, completed by no run
//! of qw) is told once, and its `_Verify:_`, if any, runs once: a failure unticks it and
//! it runs as a normal task.

use std::collections::HashSet;
use std::sync::mpsc;

use super::attempt::{Place, attempts, merge_saved, task_job};
use super::context::Run;
use crate::agent::outcome::{AgentRun, Outcome};
use crate::spec::tasks::{Task, TaskList};
use crate::state::TaskStatus;
use crate::workflow::WorkflowError;
use crate::workflow::events::{Blocked, EventKind, StopReason, Unit};
use crate::workflow::isolation;

/// What the implementation phase achieved.
#[derive(Debug, Default, Clone)]
pub(crate) struct TasksOutcome {
    /// Leaf tasks completed (including those completed before this run).
    pub completed: usize,
    /// Leaf tasks in tasks.md.
    pub total: usize,
    /// Tasks that ended failed in this run.
    pub failed: Vec<String>,
    /// Tasks blocked by a failed dependency.
    pub blocked: Vec<String>,
}

/// Run every runnable leaf task.
pub(crate) fn run_tasks(run: &Run<'_>, tasks: &TaskList) -> Result<TasksOutcome, WorkflowError> {
    let leaves = tasks.leaves();
    let state = run.store.load()?;
    let in_state = state.specifications.get(run.name);
    let mut completed: HashSet<String> = tasks.checked_leaves();
    for t in &leaves {
        if let Some(st) = in_state.and_then(|s| s.tasks.get(&t.id)) {
            if st.status == TaskStatus::Completed {
                completed.insert(t.id.clone());
            }
            if let Some(cost) = st.cost_usd {
                run.budget.seed_task(&t.id, cost);
            }
        }
    }
    // Each task's first attempt reads its earlier runs from this one reading.
    *run.earlier.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::sync::Arc::new(
        in_state.map(|s| s.tasks.clone()).unwrap_or_default(),
    ));
    merged_by_hand(run, &leaves, in_state, &mut completed)?;
    check_hand_ticks(run, &leaves, in_state, &mut completed)?;
    run.events.emit(EventKind::TasksPlanned {
        leaves: &leaves,
        completed: &completed,
    })?;

    let mut failed: HashSet<String> = HashSet::new();
    // Ended without failing and without completing (not admitted): not started again in
    // this run; `workflow-continue` runs them.
    let mut left: HashSet<String> = HashSet::new();
    let mut running: HashSet<String> = HashSet::new();
    let parallel = run.options.parallel.max(1);
    std::thread::scope(|scope| -> Result<(), WorkflowError> {
        let (tx, rx) = mpsc::channel::<(String, Result<AgentRun, WorkflowError>)>();
        loop {
            if !run.stop.is_stopping() {
                for t in tasks.ready(&completed) {
                    if running.len() >= parallel {
                        break;
                    }
                    if running.contains(&t.id) || failed.contains(&t.id) || left.contains(&t.id) {
                        continue;
                    }
                    running.insert(t.id.clone());
                    let tx = tx.clone();
                    let task: Task = t.clone();
                    scope.spawn(move || {
                        let result = run_one(run, &task);
                        let _ = tx.send((task.id.clone(), result));
                    });
                }
            }
            if running.is_empty() {
                break;
            }
            let Ok((id, result)) = rx.recv() else { break };
            running.remove(&id);
            let r = result?;
            if r.outcome.is_success() {
                completed.insert(id);
            } else if counts_as_failed(&r.outcome) {
                failed.insert(id.clone());
                if run.options.fail_fast {
                    run.request_stop(StopReason::FailFast { task: id })?;
                }
            } else {
                left.insert(id);
            }
        }
        Ok(())
    })?;

    // Before the report: a tick of this run taken from the file meanwhile is put back.
    crate::workflow::reconcile::ticks_taken(&run.store, &run.spec, run.events)?;
    let blocked = blocked_by(tasks, &completed, &failed);
    if !blocked.is_empty() {
        run.events
            .emit(EventKind::TasksBlocked { blocked: &blocked })?;
    }
    let mut failed: Vec<String> = failed.into_iter().collect();
    failed.sort();
    Ok(TasksOutcome {
        completed: leaves.iter().filter(|t| completed.contains(&t.id)).count(),
        total: leaves.len(),
        failed,
        blocked: blocked.into_iter().map(|b| b.id).collect(),
    })
}

/// A task whose merge conflicted in an earlier run, and whose branch the user has since
/// merged into the target by hand (as qw advised): done, not to be run again. It is
/// ticked in `tasks.md` and recorded completed, and said so.
fn merged_by_hand(
    run: &Run<'_>,
    leaves: &[&Task],
    in_state: Option<&crate::state::Spec>,
    completed: &mut HashSet<String>,
) -> Result<(), WorkflowError> {
    use crate::workflow::events::HandCheck;
    let path = run.spec.tasks_path();
    for t in leaves {
        if completed.contains(&t.id) {
            // Recorded completed: a pending merge left of it says nothing any more.
            run.space.forget_pending(&t.id);
            continue;
        }
        // qw merged the task's saved work and was stopped before recording it.
        if let Some(branch) = run.space.merged_not_recorded(&t.id) {
            crate::spec::tasks::tick_file_many(&path, std::slice::from_ref(&t.id))?;
            completed.insert(t.id.clone());
            let message = format!(
                "repaired: qw was stopped after merging task {} (branch `{branch}`) and before recording it; the target holds its work, so it is ticked in `{}` and recorded completed (its agent does not run again)",
                t.id,
                path.display()
            );
            run.events.emit(EventKind::TickedByHand {
                task: &t.id,
                check: HandCheck::NoCheck,
                message: &message,
            })?;
            run.space.forget_pending(&t.id);
            continue;
        }
        let conflicted = in_state
            .and_then(|s| s.tasks.get(&t.id))
            .is_some_and(|st| st.outcome.as_deref() == Some("merge_conflict"));
        if !conflicted {
            continue;
        }
        let Some(branch) = run.space.merged_by_hand(&t.id) else {
            continue;
        };
        crate::spec::tasks::tick_file_many(&path, std::slice::from_ref(&t.id))?;
        completed.insert(t.id.clone());
        let message = format!(
            "repaired: task {} conflicted in an earlier run and its branch `{branch}` has since been merged into the target by hand; ticked it in `{}` and recorded it completed (it does not run again)",
            t.id,
            path.display()
        );
        run.events.emit(EventKind::TickedByHand {
            task: &t.id,
            check: HandCheck::NoCheck,
            message: &message,
        })?;
    }
    Ok(())
}

/// Tell every leaf ticked by hand (ticked in `tasks.md`, completed by no run of qw) once,
/// and run its `_Verify:_` once if it has one: passed → it stays completed, verified by
/// qw; failed → it is unticked in the file (byte-exact) and runs as a normal task. A
/// check cut short by a signal changes nothing (it runs again next time).
fn check_hand_ticks(
    run: &Run<'_>,
    leaves: &[&Task],
    in_state: Option<&crate::state::Spec>,
    completed: &mut HashSet<String>,
) -> Result<(), WorkflowError> {
    use crate::workflow::events::HandCheck;
    use crate::workflow::reconcile::{BY_HAND, BY_HAND_VERIFIED, VERIFIED_KEY, ticked_by_hand};
    let path = run.spec.tasks_path();
    let file = path.display();
    for t in leaves.iter().filter(|t| t.checked) {
        let st = in_state.and_then(|s| s.tasks.get(&t.id));
        // Unknown to the state as completed: a first run of a hand-written tasks.md.
        let first = !st.is_some_and(|st| st.status == TaskStatus::Completed);
        let unverified =
            st.is_some_and(|st| ticked_by_hand(st) && !st.extra.contains_key(VERIFIED_KEY));
        if !first && !unverified {
            continue;
        }
        let id = t.id.as_str();
        let Some(verify) = t.verify.as_deref() else {
            if first {
                let message = format!(
                    "repaired: task {id} is ticked in `{file}` and the state records no run of it; recorded it completed: {BY_HAND} (it has no _Verify:_ check to run; it does not run)"
                );
                run.events.emit(EventKind::TickedByHand {
                    task: id,
                    check: HandCheck::NoCheck,
                    message: &message,
                })?;
            }
            continue;
        };
        if run.stop.is_stopping() {
            return Ok(());
        }
        match super::attempt::verify_hand_tick(run, t, verify)? {
            Ok(dir) => {
                let message = format!(
                    "repaired: task {id} is ticked in `{file}` and no run of qw completed it; its _Verify:_ `{verify}` passed; recorded it completed: {BY_HAND_VERIFIED} (it does not run)"
                );
                run.events.emit(EventKind::TickedByHand {
                    task: id,
                    check: HandCheck::Passed {
                        command: verify,
                        run_dir: &dir,
                    },
                    message: &message,
                })?;
            }
            // Cut short by a signal: not the check's verdict.
            Err(_) if run.stop.signal().is_some() => return Ok(()),
            Err((dir, evidence)) => {
                crate::spec::tasks::untick_file_many(&path, std::slice::from_ref(&t.id))?;
                completed.remove(id);
                let message = format!(
                    "repaired: task {id} is ticked in `{file}` but its _Verify:_ `{verify}` failed ({evidence}); unticked it, it runs as a normal task"
                );
                run.events.emit(EventKind::TickedByHand {
                    task: id,
                    check: HandCheck::Failed {
                        command: verify,
                        run_dir: &dir,
                        evidence: &evidence,
                    },
                    message: &message,
                })?;
            }
        }
    }
    Ok(())
}

/// A task that ended so failed for good (its dependents are blocked). Stopped, paused,
/// refused-by-budget and not-admitted tasks are not: they run again on
/// `workflow-continue`.
fn counts_as_failed(outcome: &Outcome) -> bool {
    !matches!(
        outcome,
        Outcome::KilledByUser { .. }
            | Outcome::BudgetExceeded { .. }
            | Outcome::UsageLimited
            | Outcome::NotAdmitted
    )
}

fn run_one(run: &Run<'_>, task: &Task) -> Result<AgentRun, WorkflowError> {
    // Its own worktree (or the project's tree), created once for all its attempts.
    let place = match run.space.enter(&task.id, run.events) {
        Ok((workdir, env)) => Place { workdir, env },
        // A worktree that cannot be made fails this task (`workspace_error`), not the
        // whole workflow.
        Err(e) => return isolation::prepare_failed(run.events, run.name, task, e),
    };
    // Its checked work is saved from an earlier run and only the merge is missing.
    let r = match run.space.merge_pending(&task.id) {
        Some((branch, check)) if check == task.verify => merge_saved(run, task, &branch)?,
        Some((branch, check)) => {
            // The user changed its check since the saved work passed it (rev8b F13): that
            // work is not merged on the strength of the old one. The task runs again, its
            // agent resuming from the saved branch, and the current check decides.
            run.space.forget_pending(&task.id);
            run.events.note(format!(
                "task {}: its checked work is saved on `{branch}`, but its `_Verify:_` changed since that work passed it ({} then, {} now); it is not merged without the current check: the task runs again from that branch, with its agent and the current check",
                task.id,
                shown_check(check.as_deref()),
                shown_check(task.verify.as_deref())
            ))?;
            attempts(run, Unit::Task(task), &place)?
        }
        None => attempts(run, Unit::Task(task), &place)?,
    };
    run.space.leave(&task_job(task), &r, run.events)?;
    Ok(r)
}

/// A `_Verify:_` command as a line shows it.
fn shown_check(check: Option<&str>) -> String {
    match check {
        Some(c) => format!("`{c}`"),
        None => "no check".to_owned(),
    }
}

/// Leaves that wait (directly or not) on a failed task, each with the dependency that
/// did not complete, in file order.
fn blocked_by(
    tasks: &TaskList,
    completed: &HashSet<String>,
    failed: &HashSet<String>,
) -> Vec<Blocked> {
    let mut blocked: Vec<Blocked> = Vec::new();
    for t in tasks.leaves() {
        if completed.contains(&t.id) || failed.contains(&t.id) {
            continue;
        }
        let culprit = tasks
            .leaf_dependencies(&t.id)
            .into_iter()
            .find(|d| failed.contains(&d.id) || blocked.iter().any(|b| b.id == d.id));
        if let Some(d) = culprit {
            blocked.push(Blocked {
                id: t.id.clone(),
                because: d.id.clone(),
            });
        }
    }
    blocked
}
