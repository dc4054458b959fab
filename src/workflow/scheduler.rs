//! The implementation phase: run the leaf tasks of `tasks.md` as a dependency graph, up
//! to `--parallel` at once, one thread per running task.
//!
//! A task starts when every leaf it depends on has completed. A task whose dependency
//! failed is `blocked`. After a final failure with `--fail-fast`, or a pause (usage
//! limit, cost ceiling), or a signal, no new task starts; running ones finish (a signal
//! is forwarded to them by the executor).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use serde_json::json;

use super::WorkflowError;
use super::driver::{Run, attempts, spec_entry, task_job};
use super::progress::{Event, Progress};
use crate::agent::outcome::AgentRun;
use crate::agent::{Job, Phase as AgentPhase};
use crate::spec::tasks::{Task, TaskList};
use crate::state::TaskStatus;

/// What the implementation phase achieved.
#[derive(Debug, Default, Clone)]
pub struct TasksOutcome {
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
pub(crate) fn run_tasks(
    run: &Run<'_>,
    tasks: &TaskList,
    progress: &Progress,
) -> Result<TasksOutcome, WorkflowError> {
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
    sync_tasks(run, &leaves, &completed)?;
    progress.plan(leaves.len(), completed.len());

    let mut failed: HashSet<String> = HashSet::new();
    let mut running: HashSet<String> = HashSet::new();
    let parallel = run.options.parallel.max(1);
    std::thread::scope(|scope| -> Result<(), WorkflowError> {
        let (tx, rx) = mpsc::channel::<(String, Result<AgentRun, WorkflowError>)>();
        loop {
            let may_start = !run.stop.load(Ordering::SeqCst) && run.cancel.pending().is_none();
            if may_start {
                for t in tasks.ready(&completed) {
                    if running.len() >= parallel {
                        break;
                    }
                    if running.contains(&t.id) || failed.contains(&t.id) {
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
            } else if !matches!(
                r.outcome,
                crate::agent::outcome::Outcome::KilledByUser { .. }
                    | crate::agent::outcome::Outcome::BudgetExceeded { .. }
                    | crate::agent::outcome::Outcome::UsageLimited
            ) {
                failed.insert(id);
                if run.options.fail_fast {
                    run.stop.store(true, Ordering::SeqCst);
                    progress.emit(Event::Note {
                        message: "--fail-fast: no new task starts; running ones finish".into(),
                    });
                }
            }
        }
        Ok(())
    })?;

    let blocked = block_dependents(run, tasks, &completed, &failed)?;
    let mut failed: Vec<String> = failed.into_iter().collect();
    failed.sort();
    Ok(TasksOutcome {
        completed: leaves.iter().filter(|t| completed.contains(&t.id)).count(),
        total: leaves.len(),
        failed,
        blocked,
    })
}

fn run_one(run: &Run<'_>, task: &Task) -> Result<AgentRun, WorkflowError> {
    // Its own worktree (or the project's tree), created once for all its attempts.
    let (workdir, env) = match run.space.enter(&task.id, run.progress) {
        Ok(entered) => entered,
        // A worktree that cannot be made fails this task (`workspace_error`), not the
        // whole workflow.
        Err(e) => return super::isolation::prepare_failed(run, task, e),
    };
    let r = attempts(run, "implementation", Some(task), |run_dir| Job {
        phase: AgentPhase::Implementation,
        spec: run.name.to_owned(),
        description: run.description.clone(),
        project_root: run.project.root().to_path_buf(),
        workdir: workdir.clone(),
        // In a worktree, through its link to the main tree's folder, so the prompt names
        // it relative to where the agent works.
        spec_dir: if workdir == run.project.root() {
            run.spec.dir().to_path_buf()
        } else {
            workdir.join(".claude").join("specs").join(run.name)
        },
        task: Some(task_job(task)),
        run_dir,
        env: env.clone(),
    })?;
    run.space.leave(&task_job(task), &r, run.progress)?;
    Ok(r)
}

/// Make sure every leaf has a state entry; ticks in the file count as completed.
fn sync_tasks(
    run: &Run<'_>,
    leaves: &[&Task],
    completed: &HashSet<String>,
) -> Result<(), WorkflowError> {
    run.store.update(|s| {
        let spec = spec_entry(s, run.name);
        for t in leaves {
            let entry = spec.tasks.entry(t.id.clone()).or_default();
            entry.id = t.id.clone();
            entry.spec_name = run.name.to_owned();
            if entry.description.is_empty() {
                entry.description = t.title.clone();
            }
            if completed.contains(&t.id) {
                entry.status = TaskStatus::Completed;
            }
        }
        let done = leaves.iter().filter(|t| completed.contains(&t.id)).count();
        if !leaves.is_empty() {
            spec.progress_percentage = done as f64 * 100.0 / leaves.len() as f64;
        }
    })?;
    Ok(())
}

/// Mark leaves that wait (directly or not) on a failed task as blocked.
fn block_dependents(
    run: &Run<'_>,
    tasks: &TaskList,
    completed: &HashSet<String>,
    failed: &HashSet<String>,
) -> Result<Vec<String>, WorkflowError> {
    let mut blocked: Vec<(String, String)> = Vec::new();
    for t in tasks.leaves() {
        if completed.contains(&t.id) || failed.contains(&t.id) {
            continue;
        }
        let culprit = tasks
            .leaf_dependencies(&t.id)
            .into_iter()
            .find(|d| failed.contains(&d.id) || blocked.iter().any(|(b, _)| b == &d.id));
        if let Some(d) = culprit {
            blocked.push((t.id.clone(), d.id.clone()));
        }
    }
    if blocked.is_empty() {
        return Ok(Vec::new());
    }
    run.store.update(|s| {
        let spec = spec_entry(s, run.name);
        for (id, because) in &blocked {
            if let Some(entry) = spec.tasks.get_mut(id) {
                entry.status = TaskStatus::Blocked;
                entry.error = Some(format!("blocked: depends on task {because}, which did not complete"));
            }
        }
        s.record_error(
            "workflow",
            &format!("{} task(s) blocked by failed dependencies", blocked.len()),
            json!({"spec": run.name, "blocked": blocked.iter().map(|(i, _)| i).collect::<Vec<_>>()}),
        );
    })?;
    for (id, because) in &blocked {
        run.progress.emit(Event::TaskSkipped {
            id: id.clone(),
            reason: format!("depends on {because}, which did not complete"),
        });
    }
    Ok(blocked.into_iter().map(|(id, _)| id).collect())
}
