//! The recorder: the one reader that turns events into state changes.
//!
//! Every change a workflow makes to `.claude/unified_state.json` and every tick in
//! `tasks.md` is written here, from an [`Event`], through the group-commit writers of
//! `commit.rs` (so tasks finishing together share one durable write). [`change`] is the
//! pure core: an event in, the closure that changes a state out.

use std::path::PathBuf;

use serde_json::{Map, Value, json};

use super::EventSink;
use super::commit::{Change, Committer, Ticker};
use crate::agent::outcome::{AgentRun, Outcome};
use crate::state::{self, CompletedPhase, Phase, StateStore, TaskStatus, Timestamp, UnifiedState};
use crate::workflow::WorkflowError;
use crate::workflow::events::{
    Blocked, Ending, Event, EventKind, HandCheck, PhaseResult, Refused, Summary, Unit,
};

/// Writes the events of one spec's run to the state and its `tasks.md`.
pub(crate) struct Recorder {
    spec: String,
    agent: &'static str,
    commit: Committer,
    ticker: Ticker,
}

impl Recorder {
    /// Record for `spec` (runs by `agent`), ticking `tasks_file`.
    pub(crate) fn start(
        store: StateStore,
        spec: &str,
        agent: &'static str,
        tasks_file: PathBuf,
    ) -> Recorder {
        Recorder {
            spec: spec.to_owned(),
            agent,
            commit: Committer::start(store),
            ticker: Ticker::start(tasks_file),
        }
    }
}

impl EventSink for Recorder {
    /// Returns once the change is durable, so readers after it see it on disk.
    fn event(&self, event: &Event<'_>) -> Result<(), WorkflowError> {
        if let Some(change) = change(&self.spec, self.agent, event)? {
            self.commit.update(change)?;
        }
        if let EventKind::AttemptFinished {
            unit: Unit::Task(t),
            run,
            ..
        } = &event.kind
            && run.outcome.is_success()
        {
            self.ticker.tick(&t.id, &t.title)?;
        }
        Ok(())
    }
}

/// Apply `event` (of a run of `spec` by `agent`) to `state`; true if anything changed.
#[cfg(test)]
pub(crate) fn apply(
    state: &mut UnifiedState,
    spec: &str,
    agent: &str,
    event: &Event<'_>,
) -> Result<bool, WorkflowError> {
    Ok(match change(spec, agent, event)? {
        Some(change) => change(state),
        None => false,
    })
}

/// What `event` changes in the state, as an owned closure for the writer thread (None:
/// nothing). The closure returns false when it found nothing to change.
fn change(spec: &str, agent: &str, event: &Event<'_>) -> Result<Option<Change>, WorkflowError> {
    let name = spec.to_owned();
    let agent = agent.to_owned();
    let at = Timestamp::At(event.at);
    let change: Change = match &event.kind {
        EventKind::RunStarted {
            description,
            options,
            system_stats,
        } => {
            let options = options.saved().map_err(WorkflowError::Options)?;
            let description = (*description).to_owned();
            let stats = system_stats.clone();
            Box::new(move |s| {
                run_started(s, &name, &description, options, stats, &at);
                true
            })
        }
        EventKind::SpecReady { steering } => {
            let steering = *steering;
            Box::new(move |s| {
                if steering {
                    complete_phase(s, &name, Phase::SteeringSetup, &at);
                }
                complete_phase(s, &name, Phase::SpecCreation, &at);
                true
            })
        }
        EventKind::PhaseStarted { phase } => {
            let phase = phase.clone();
            Box::new(move |s| {
                s.workflow.current_spec = Some(name.clone());
                s.workflow.global_phase = phase.clone();
                spec_entry(s, &name, &at).current_phase = phase;
                true
            })
        }
        EventKind::PhaseFinished { phase, result, .. } => {
            let phase = phase.clone();
            match result {
                PhaseResult::Succeeded => Box::new(move |s| {
                    complete_phase(s, &name, phase, &at);
                    true
                }),
                // Done by an earlier run (or the user): recorded once, never again.
                PhaseResult::Skipped => Box::new(move |s| {
                    let recorded = s
                        .specifications
                        .get(&name)
                        .is_some_and(|e| e.completed_phases.iter().any(|c| c.phase == phase));
                    if !recorded {
                        complete_phase(s, &name, phase, &at);
                    }
                    !recorded
                }),
                PhaseResult::Incomplete | PhaseResult::Failed(_) => return Ok(None),
            }
        }
        EventKind::TasksPlanned { leaves, completed } => {
            let leaves: Vec<(String, String, bool)> = leaves
                .iter()
                .map(|t| (t.id.clone(), t.title.clone(), completed.contains(&t.id)))
                .collect();
            Box::new(move |s| {
                tasks_planned(s, &name, &leaves, &at);
                true
            })
        }
        EventKind::TickedByHand { task, check, .. } => {
            let id = (*task).to_owned();
            // NoCheck: `TasksPlanned` records the tick (completed_by tasks.md).
            let (passed, record) = match check {
                HandCheck::NoCheck => return Ok(None),
                HandCheck::Passed { command, run_dir } => (
                    true,
                    serde_json::json!({
                        "command": command,
                        "run": run_dir.file_name().map(|n| n.to_string_lossy().into_owned()),
                        "at": at,
                    }),
                ),
                HandCheck::Failed {
                    command,
                    run_dir,
                    evidence,
                } => (
                    false,
                    serde_json::json!({
                        "command": command,
                        "run": run_dir.file_name().map(|n| n.to_string_lossy().into_owned()),
                        "at": at,
                        "evidence": evidence,
                    }),
                ),
            };
            Box::new(move |s| {
                let spec = spec_entry(s, &name, &at);
                let entry = spec.tasks.entry(id.clone()).or_default();
                entry.id = id.clone();
                entry.spec_name = name.clone();
                if passed {
                    entry.status = TaskStatus::Completed;
                    entry.completed_at.get_or_insert_with(|| at.clone());
                    entry
                        .extra
                        .insert("completed_by".into(), serde_json::json!("tasks.md"));
                    entry.extra.insert(
                        crate::workflow::reconcile::VERIFIED_KEY.into(),
                        record.clone(),
                    );
                } else {
                    // Unticked: it runs as a normal task; the failed check is kept.
                    if crate::workflow::reconcile::ticked_by_hand(entry) {
                        entry.status = TaskStatus::Pending;
                        entry.completed_at = None;
                    }
                    entry.extra.remove("completed_by");
                    entry
                        .extra
                        .insert("hand_tick_verify_failed".into(), record.clone());
                }
                true
            })
        }
        EventKind::TaskListInvalid { error } => {
            let error = (*error).to_owned();
            Box::new(move |s| {
                s.record_error("workflow", &error, json!({"phase": "task_generation"}));
                true
            })
        }
        EventKind::AttemptStarted {
            unit: Unit::Task(t),
            attempt,
            run_dir,
            system_stats,
            ..
        } => {
            let started = AttemptStart {
                id: t.id.clone(),
                title: t.title.clone(),
                verify: t.verify.clone(),
                attempt: *attempt,
                run_id: run_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned()),
                system_stats: system_stats.clone(),
            };
            Box::new(move |s| {
                attempt_started(s, &name, &agent, started, &at);
                true
            })
        }
        EventKind::AttemptFinished {
            unit,
            attempt,
            run,
            run_dir,
            will_retry,
        } => {
            let finished = AttemptEnd {
                label: unit.label(),
                task: unit.task().map(|t| t.id.clone()),
                attempt: *attempt,
                run: (*run).clone(),
                run_dir: run_dir.display().to_string(),
                will_retry: *will_retry,
            };
            Box::new(move |s| {
                attempt_finished(s, &name, &agent, finished, &at);
                true
            })
        }
        EventKind::AttemptNotStarted {
            unit, refused, run, ..
        } => {
            let (label, task, refused) =
                (unit.label(), unit.task().map(|t| t.id.clone()), *refused);
            let run = (*run).clone();
            Box::new(move |s| {
                not_started(s, &name, label, task, refused, &run, &at);
                true
            })
        }
        EventKind::TasksBlocked { blocked } => {
            let blocked = blocked.to_vec();
            Box::new(move |s| {
                tasks_blocked(s, &name, &blocked, &at);
                true
            })
        }
        EventKind::Finished { summary } => match run_finished(summary) {
            Some(end) => Box::new(move |s| {
                end_waits(s, &name);
                match end {
                    RunEnd::Completed => complete_phase(s, &name, Phase::Complete, &at),
                    RunEnd::Paused { until } => {
                        if let Some(spec) = s.specifications.get_mut(&name) {
                            spec.paused_until = Some(until);
                        }
                    }
                }
                true
            }),
            None => Box::new(move |s| end_waits(s, &name)),
        },
        EventKind::AdmissionWaiting {
            unit: Unit::Task(t),
            why,
        } => {
            let (id, title, why) = (t.id.clone(), t.title.clone(), why.clone());
            Box::new(move |s| {
                let task = spec_entry(s, &name, &at)
                    .tasks
                    .entry(id.clone())
                    .or_default();
                if task.id.is_empty() {
                    task.id = id;
                    task.spec_name = name.clone();
                    task.description = title;
                }
                let since = task
                    .waiting_for_admission
                    .take()
                    .and_then(|w| w.since)
                    .unwrap_or_else(|| at.clone());
                task.waiting_for_admission = Some(state::AdmissionWait {
                    why,
                    since: Some(since),
                });
                true
            })
        }
        EventKind::MergePending {
            task,
            branch,
            tip,
            check,
        } => {
            let id = (*task).to_owned();
            let marker = state::MergePending {
                branch: (*branch).to_owned(),
                tip: (*tip).to_owned(),
                check: check.map(str::to_owned),
            };
            Box::new(move |s| {
                let task = spec_entry(s, &name, &at)
                    .tasks
                    .entry(id.clone())
                    .or_default();
                if task.id.is_empty() {
                    task.id = id;
                    task.spec_name = name.clone();
                }
                task.merge_pending = Some(marker);
                true
            })
        }
        EventKind::AttemptStarted {
            unit: Unit::Document(_),
            ..
        }
        | EventKind::AdmissionWaiting { .. }
        | EventKind::Stopping { .. }
        | EventKind::Repaired { .. }
        | EventKind::ProcessesEnded { .. }
        | EventKind::Note { .. } => return Ok(None),
    };
    Ok(Some(change))
}

/// No task of spec `name` waits for admission any more (its run ended). True when one
/// did (the state changed).
fn end_waits(s: &mut UnifiedState, name: &str) -> bool {
    let Some(spec) = s.specifications.get_mut(name) else {
        return false;
    };
    let mut changed = false;
    for t in spec.tasks.values_mut() {
        changed |= t.waiting_for_admission.take().is_some();
    }
    changed
}

/// The state entry of a spec, created if missing.
fn spec_entry<'s>(s: &'s mut UnifiedState, name: &str, at: &Timestamp) -> &'s mut state::Spec {
    let spec = s.specifications.entry(name.to_owned()).or_default();
    if spec.name.is_empty() {
        spec.name = name.to_owned();
        spec.created_at = Some(at.clone());
    }
    spec
}

/// Refresh the spec's entry for a new run: description, options, resumable tasks.
fn run_started(
    s: &mut UnifiedState,
    name: &str,
    description: &str,
    options: state::WorkflowOptions,
    stats: Option<Map<String, Value>>,
    at: &Timestamp,
) {
    s.workflow.current_spec = Some(name.to_owned());
    s.workflow.auto_progression = true;
    let entry = spec_entry(s, name, at);
    if entry.description.is_empty() {
        entry.description = description.to_owned();
    }
    entry.workflow_options = Some(options);
    if let Some(map) = stats {
        s.resources.system_stats = map;
    }
    let entry = spec_entry(s, name, at);
    entry.paused_until = None;
    for task in entry.tasks.values_mut() {
        // Interrupted (qw killed), failed, blocked: run again; completed: never.
        if matches!(
            task.status,
            TaskStatus::InProgress | TaskStatus::Failed | TaskStatus::Blocked
        ) {
            task.status = TaskStatus::Pending;
        }
    }
    let running: Vec<String> = entry.tasks.keys().cloned().collect();
    s.agents.active_tasks.retain(|id| !running.contains(id));
}

/// Record `phase` as completed and move the spec's current phase past it.
fn complete_phase(s: &mut UnifiedState, name: &str, phase: Phase, at: &Timestamp) {
    let spec = spec_entry(s, name, at);
    if !spec.completed_phases.iter().any(|c| c.phase == phase) {
        spec.completed_phases.push(CompletedPhase {
            phase: phase.clone(),
            completed_at: Some(at.clone()),
            extra: Default::default(),
        });
    }
    let next = phase.next().unwrap_or(Phase::Complete);
    if phase == Phase::Complete {
        spec.current_phase = Phase::Complete;
        spec.paused_until = None;
    } else if spec.current_phase.index() <= phase.index() {
        spec.current_phase = next;
    }
    let files = &mut spec.files;
    let rel = |f: &str| format!(".claude/specs/{name}/{f}");
    files
        .requirements
        .get_or_insert_with(|| rel("requirements.md"));
    files.design.get_or_insert_with(|| rel("design.md"));
    files.tasks.get_or_insert_with(|| rel("tasks.md"));
    s.workflow.global_phase = spec.current_phase.clone();
}

/// Every leaf gets a state entry; ticks in the file count as completed.
fn tasks_planned(
    s: &mut UnifiedState,
    name: &str,
    leaves: &[(String, String, bool)],
    at: &Timestamp,
) {
    let spec = spec_entry(s, name, at);
    for (id, title, done) in leaves {
        let entry = spec.tasks.entry(id.clone()).or_default();
        entry.id = id.clone();
        entry.spec_name = name.to_owned();
        if entry.description.is_empty() {
            entry.description = title.clone();
        }
        if *done && entry.status != TaskStatus::Completed {
            // Ticked in tasks.md with no completion recorded: the user's word, never
            // presented as a run qw made and verified.
            entry.status = TaskStatus::Completed;
            if entry.attempts == 0 {
                entry
                    .extra
                    .insert("completed_by".into(), serde_json::json!("tasks.md"));
            }
        }
    }
    let done = leaves.iter().filter(|(_, _, done)| *done).count();
    if !leaves.is_empty() {
        spec.progress_percentage = done as f64 * 100.0 / leaves.len() as f64;
    }
}

struct AttemptStart {
    id: String,
    title: String,
    /// Its `_Verify:_` as the run read it: with the title, what says a later list's task
    /// of the same id is this one (see `reconcile::other_task`).
    verify: Option<String>,
    attempt: u32,
    run_id: Option<String>,
    system_stats: Option<Map<String, Value>>,
}

/// A task is in progress for a new attempt.
fn attempt_started(s: &mut UnifiedState, name: &str, agent: &str, a: AttemptStart, at: &Timestamp) {
    let spec = spec_entry(s, name, at);
    let task = spec.tasks.entry(a.id.clone()).or_default();
    task.id = a.id.clone();
    task.spec_name = name.to_owned();
    task.description = a.title;
    task.extra.insert(
        crate::workflow::reconcile::VERIFY_KEY.into(),
        serde_json::json!(a.verify),
    );
    task.status = TaskStatus::InProgress;
    task.waiting_for_admission = None;
    task.agent = Some(agent.to_owned());
    task.attempts = task.attempts.max(a.attempt - 1) + 1;
    task.started_at = Some(at.clone());
    task.completed_at = None;
    // The outcome is the last run's: none while this one goes (a task a killed qw left
    // without one was cut off mid-run, and is resumed from its run's stream).
    task.outcome = None;
    // It runs again: what an earlier attempt left merge-pending vouches for nothing now
    // (a merge of saved work writes it again before its record).
    task.merge_pending = None;
    task.run_id = a.run_id;
    if let Some(map) = &a.system_stats {
        // Dev mode `resource_monitoring`: the machine as this task started.
        task.system_stats = Some(map.clone());
    }
    if !s.agents.active_tasks.contains(&a.id) {
        s.agents.active_tasks.push(a.id);
    }
    let running = s.agents.active_tasks.len() as u64;
    s.resources.peak_concurrent_tasks.raise_to(running);
    if let Some(map) = a.system_stats {
        s.resources.system_stats = map;
    }
}

struct AttemptEnd {
    label: &'static str,
    task: Option<String>,
    attempt: u32,
    run: AgentRun,
    run_dir: String,
    will_retry: bool,
}

/// One finished attempt: cost, tokens, outcome, status, errors, agent stats.
fn attempt_finished(s: &mut UnifiedState, name: &str, agent: &str, a: AttemptEnd, at: &Timestamp) {
    let r = &a.run;
    let ok = r.outcome.is_success();
    let spec = spec_entry(s, name, at);
    spec.cost_usd += r.cost_usd;
    if let Some(id) = &a.task {
        let entry = spec.tasks.entry(id.clone()).or_default();
        *entry.cost_usd.get_or_insert(0.0) += r.cost_usd;
        *entry.input_tokens.get_or_insert(0) += r.input_tokens;
        *entry.output_tokens.get_or_insert(0) += r.output_tokens;
        *entry.num_turns.get_or_insert(0) += r.num_turns;
        if r.session_id.is_some() {
            entry.session_id = r.session_id.clone();
        }
        // The run the attempt ended in: after a gone session, its fresh run's folder.
        if let Some(run_id) = std::path::Path::new(&a.run_dir).file_name() {
            entry.run_id = Some(run_id.to_string_lossy().into_owned());
        }
        entry.outcome = Some(r.outcome.as_str().to_owned());
        entry.duration_seconds = Some(r.duration_ms as f64 / 1000.0);
        entry.evidence = Some(r.evidence.clone());
        // Kept only while this attempt left the same branch merge-pending (written by
        // `EventKind::MergePending` before the record); cleared otherwise.
        if r.merge_pending.is_none()
            || entry.merge_pending.as_ref().map(|m| &m.branch) != r.merge_pending.as_ref()
        {
            entry.merge_pending = None;
        }
        if ok {
            entry.status = TaskStatus::Completed;
            entry.completed_at = Some(at.clone());
            entry.error = None;
        } else {
            entry.status = match r.outcome {
                Outcome::KilledByUser { .. } => TaskStatus::Pending,
                _ if a.will_retry => TaskStatus::InProgress,
                Outcome::BudgetExceeded { .. } | Outcome::UsageLimited => TaskStatus::Pending,
                _ => TaskStatus::Failed,
            };
            entry.error = Some(format!("{}: {}", r.outcome, r.evidence));
        }
        let (done, total) = (
            spec.tasks
                .values()
                .filter(|t| t.status == TaskStatus::Completed)
                .count(),
            spec.tasks.len(),
        );
        if total > 0 {
            spec.progress_percentage = done as f64 * 100.0 / total as f64;
        }
        s.agents.active_tasks.retain(|t| t != id);
        s.resources.total_tasks_executed += 1;
    }
    if !ok {
        s.record_error(
            "workflow",
            &format!("{}: {}", r.outcome, r.evidence),
            json!({
                "spec": name,
                "phase": a.label,
                "task": a.task,
                "attempt": a.attempt,
                "exit_code": r.exit_code,
                "outcome": r.outcome,
                "duration_ms": r.duration_ms,
                "run_dir": a.run_dir,
                "will_retry": a.will_retry,
            }),
        );
    }
    let perf = s.agents.performance.entry(agent.to_owned()).or_default();
    perf.executions += 1;
    // qw's own workspace step failing after the agent did its part is not held
    // against the agent.
    if !r.outcome.counts_against_agent() {
        perf.successes += 1;
    } else {
        perf.failures += 1;
    }
    perf.total_duration += r.duration_ms as f64 / 1000.0;
    perf.average_duration = perf.total_duration / perf.executions.as_f64();
    perf.last_execution = Some(at.clone());
    s.agents.total_executions += 1;
    if r.cost_usd > 0.0 {
        let today = match at {
            Timestamp::At(t) => t.format("%Y-%m-%d").to_string(),
            Timestamp::Other(_) => chrono::Local::now().format("%Y-%m-%d").to_string(),
        };
        s.cost_ledger
            .get_or_insert_with(Default::default)
            .add(&today, r.cost_usd);
    }
}

/// An attempt whose agent never ran: a cost ceiling (the run pauses) or admission that
/// gave up waiting (`not_admitted`) leaves its task pending, for `workflow-continue`; a
/// worktree that cannot be made fails it.
fn not_started(
    s: &mut UnifiedState,
    name: &str,
    label: &str,
    task: Option<String>,
    refused: Refused,
    r: &AgentRun,
    at: &Timestamp,
) {
    if let Some(id) = &task {
        let entry = spec_entry(s, name, at).tasks.entry(id.clone()).or_default();
        entry.waiting_for_admission = None;
        entry.outcome = Some(r.outcome.as_str().to_owned());
        entry.error = Some(format!("{}: {}", r.outcome, r.evidence));
        entry.status = match (refused, &r.outcome) {
            (Refused::CostCeiling | Refused::Admission, _) => TaskStatus::Pending,
            // Interrupted while waiting to make the worktree: it runs on `continue`.
            (Refused::Worktree, Outcome::KilledByUser { .. }) => TaskStatus::Pending,
            (Refused::Worktree, _) => TaskStatus::Failed,
        };
    }
    let context = match refused {
        Refused::CostCeiling => {
            json!({"spec": name, "phase": label, "task": task, "outcome": r.outcome})
        }
        Refused::Admission => {
            json!({"spec": name, "task": task, "phase": label})
        }
        Refused::Worktree => {
            json!({"spec": name, "task": task, "phase": label, "outcome": r.outcome})
        }
    };
    let message = match refused {
        Refused::Worktree => format!("{}: {}", r.outcome, r.evidence),
        Refused::CostCeiling | Refused::Admission => r.evidence.clone(),
    };
    s.record_error(refused.component(), &message, context);
}

/// Leaves that wait on a failed task are blocked.
fn tasks_blocked(s: &mut UnifiedState, name: &str, blocked: &[Blocked], at: &Timestamp) {
    let spec = spec_entry(s, name, at);
    for b in blocked {
        if let Some(entry) = spec.tasks.get_mut(&b.id) {
            entry.status = TaskStatus::Blocked;
            entry.error = Some(format!(
                "blocked: depends on task {}, which did not complete",
                b.because
            ));
        }
    }
    s.record_error(
        "workflow",
        &format!("{} task(s) blocked by failed dependencies", blocked.len()),
        json!({"spec": name, "blocked": blocked.iter().map(|b| &b.id).collect::<Vec<_>>()}),
    );
}

enum RunEnd {
    Completed,
    Paused { until: crate::state::ResetAt },
}

/// What the end of a run records: `complete`, or when a pause ends.
fn run_finished(summary: &Summary) -> Option<RunEnd> {
    match &summary.ending {
        Ending::Completed => Some(RunEnd::Completed),
        Ending::Paused(reason) => Some(RunEnd::Paused {
            until: reason
                .resets_at()
                .cloned()
                .unwrap_or_else(|| crate::state::ResetAt::Text("unknown".into())),
        }),
        Ending::Failed | Ending::Interrupted(_) | Ending::NotAdmitted(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use super::*;
    use crate::agent::Phase as AgentPhase;
    use crate::spec::tasks::Task;
    use crate::workflow::Options;
    use crate::workflow::events::{StopReason, Summary};

    const SPEC: &str = "demo";

    fn apply_all(state: &mut UnifiedState, kinds: Vec<EventKind<'_>>) -> Vec<bool> {
        kinds
            .into_iter()
            .map(|k| apply(state, SPEC, "claude", &Event::now(k)).unwrap())
            .collect()
    }

    fn task(state: &UnifiedState, id: &str) -> state::Task {
        state.specifications[SPEC].tasks[id].clone()
    }

    fn ran(outcome: Outcome, cost: f64) -> AgentRun {
        let mut r = AgentRun::from_outcome(outcome, "why");
        r.cost_usd = cost;
        r.input_tokens = 10;
        r.duration_ms = 1500;
        r
    }

    fn started<'a>(unit: Unit<'a>, attempt: u32) -> EventKind<'a> {
        EventKind::AttemptStarted {
            unit,
            attempt,
            run_dir: Path::new("/p/.claude/runs/run-1"),
            system_stats: None,
            resumes: None,
        }
    }

    fn finished<'a>(unit: Unit<'a>, attempt: u32, run: &'a AgentRun, retry: bool) -> EventKind<'a> {
        EventKind::AttemptFinished {
            unit,
            attempt,
            run,
            run_dir: Path::new("/p/.claude/runs/run-1"),
            will_retry: retry,
        }
    }

    #[test]
    fn a_task_left_merge_pending_is_marked_before_its_record_until_it_runs_again() {
        let t1 = Task::new("1", "First");
        let tip = "a".repeat(40);
        let mut pending = ran(
            Outcome::WorkspaceError {
                step: crate::agent::outcome::WorkspaceStep::Merge,
            },
            0.0,
        );
        pending.merge_pending = Some("qw/demo/1".into());
        let mut s = UnifiedState::default();
        apply_all(
            &mut s,
            vec![
                started(Unit::Task(&t1), 1),
                EventKind::MergePending {
                    task: "1",
                    branch: "qw/demo/1",
                    tip: &tip,
                    check: Some("test -f x"),
                },
            ],
        );
        // Written before the record, while the attempt goes on (qw may be killed next).
        let want = state::MergePending {
            branch: "qw/demo/1".into(),
            tip: tip.clone(),
            check: Some("test -f x".into()),
        };
        assert_eq!(task(&s, "1").merge_pending.as_ref(), Some(&want));
        apply_all(&mut s, vec![finished(Unit::Task(&t1), 1, &pending, false)]);
        assert_eq!(task(&s, "1").merge_pending.as_ref(), Some(&want));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json["specifications"][SPEC]["tasks"]["1"]["merge_pending"]["tip"],
            tip.as_str()
        );
        // It runs again: cleared at its start, and stays so when it ends otherwise.
        apply_all(&mut s, vec![started(Unit::Task(&t1), 2)]);
        assert_eq!(task(&s, "1").merge_pending, None);
        let failed = ran(Outcome::VerifyFailed { exit_code: Some(1) }, 0.0);
        apply_all(&mut s, vec![finished(Unit::Task(&t1), 2, &failed, false)]);
        assert_eq!(task(&s, "1").merge_pending, None);
        let json = serde_json::to_value(&s).unwrap();
        assert!(
            json["specifications"][SPEC]["tasks"]["1"]
                .get("merge_pending")
                .is_none()
        );
        // A marker written, then the merge conflicted (no longer pending): cleared.
        apply_all(
            &mut s,
            vec![
                started(Unit::Task(&t1), 3),
                EventKind::MergePending {
                    task: "1",
                    branch: "qw/demo/1",
                    tip: &tip,
                    check: None,
                },
                finished(
                    Unit::Task(&t1),
                    3,
                    &ran(Outcome::MergeConflict { paths: vec![] }, 0.0),
                    false,
                ),
            ],
        );
        assert_eq!(task(&s, "1").merge_pending, None);
    }

    #[test]
    fn a_merge_pending_marker_of_another_shape_reads_as_none() {
        for v in [
            serde_json::json!("qw/demo/1"),
            serde_json::json!(null),
            serde_json::json!({"branch": "qw/demo/1"}),
        ] {
            let t: state::Task =
                serde_json::from_value(serde_json::json!({"id": "1", "merge_pending": v})).unwrap();
            assert_eq!(t.merge_pending, None, "{v}");
        }
    }

    #[test]
    fn a_retried_task_is_in_progress_then_completed_with_its_costs_summed() {
        let (t1, t2) = (Task::new("1", "First"), Task::new("2", "Second"));
        let leaves = [&t1, &t2];
        let done = HashSet::new();
        let timed_out = ran(Outcome::TimedOut { escalated: false }, 0.25);
        let ok = ran(Outcome::Succeeded, 0.5);
        let mut s = UnifiedState::default();
        apply_all(
            &mut s,
            vec![
                EventKind::TasksPlanned {
                    leaves: &leaves,
                    completed: &done,
                },
                started(Unit::Task(&t1), 1),
            ],
        );
        assert_eq!(task(&s, "1").status, TaskStatus::InProgress);
        assert_eq!(task(&s, "1").run_id.as_deref(), Some("run-1"));
        assert_eq!(task(&s, "2").status, TaskStatus::Pending);
        assert_eq!(s.agents.active_tasks, ["1"]);

        apply_all(&mut s, vec![finished(Unit::Task(&t1), 1, &timed_out, true)]);
        let t = task(&s, "1");
        assert_eq!(t.status, TaskStatus::InProgress, "another attempt follows");
        assert_eq!(t.outcome.as_deref(), Some("timed_out"));
        assert!(s.agents.active_tasks.is_empty());
        let e = s.errors.last().unwrap();
        assert_eq!(e.context["will_retry"], true);
        assert_eq!(e.context["attempt"], 1);

        apply_all(
            &mut s,
            vec![
                started(Unit::Task(&t1), 2),
                finished(Unit::Task(&t1), 2, &ok, false),
            ],
        );
        let t = task(&s, "1");
        assert_eq!(t.status, TaskStatus::Completed);
        assert_eq!(t.attempts, 2);
        assert_eq!(t.error, None);
        assert!(t.completed_at.is_some());
        assert_eq!(t.cost_usd, Some(0.75));
        assert_eq!(t.input_tokens, Some(20));
        let spec = &s.specifications[SPEC];
        assert_eq!(spec.cost_usd, 0.75);
        assert_eq!(spec.progress_percentage, 50.0);
        let perf = &s.agents.performance["claude"];
        assert_eq!(
            (
                perf.executions.get(),
                perf.successes.get(),
                perf.failures.get()
            ),
            (Some(2), Some(1), Some(1))
        );
        assert_eq!(s.resources.total_tasks_executed, 2);
        assert_eq!(s.errors.len(), 1, "a success records no error");
        let ledger = s.cost_ledger.as_ref().unwrap();
        assert_eq!(ledger.days.values().next().unwrap().as_f64(), Some(0.75));
    }

    #[test]
    fn each_final_outcome_leaves_the_task_in_its_status() {
        let t = Task::new("1", "Only");
        for (outcome, status) in [
            (Outcome::NoResult { exit_code: 1 }, TaskStatus::Failed),
            (
                Outcome::VerifyFailed { exit_code: Some(1) },
                TaskStatus::Failed,
            ),
            (
                Outcome::KilledByUser { signal: Some(2) },
                TaskStatus::Pending,
            ),
            (Outcome::UsageLimited, TaskStatus::Pending),
        ] {
            let r = ran(outcome.clone(), 0.0);
            let mut s = UnifiedState::default();
            apply_all(
                &mut s,
                vec![
                    started(Unit::Task(&t), 1),
                    finished(Unit::Task(&t), 1, &r, false),
                ],
            );
            assert_eq!(task(&s, "1").status, status, "{outcome}");
            assert_eq!(
                task(&s, "1").error.as_deref(),
                Some(format!("{outcome}: why").as_str())
            );
        }
    }

    #[test]
    fn a_document_attempt_counts_for_the_agent_and_the_spec_but_has_no_task() {
        let r = ran(Outcome::NoResult { exit_code: 1 }, 0.1);
        let unit = Unit::Document(AgentPhase::Design);
        let mut s = UnifiedState::default();
        let changed = apply_all(&mut s, vec![started(unit, 1), finished(unit, 1, &r, true)]);
        assert_eq!(changed, [false, true], "a document start changes nothing");
        assert!(s.specifications[SPEC].tasks.is_empty());
        assert_eq!(s.specifications[SPEC].cost_usd, 0.1);
        assert_eq!(s.errors[0].context["phase"], "design");
        assert_eq!(s.errors[0].context["task"], serde_json::Value::Null);
        assert_eq!(s.resources.total_tasks_executed, 0);
    }

    #[test]
    fn a_skipped_phase_is_recorded_once() {
        let mut s = UnifiedState::default();
        let skipped = || EventKind::PhaseFinished {
            phase: Phase::RequirementsGeneration,
            result: PhaseResult::Skipped,
            detail: String::new(),
        };
        assert_eq!(apply_all(&mut s, vec![skipped(), skipped()]), [true, false]);
        let spec = &s.specifications[SPEC];
        assert_eq!(spec.completed_phases.len(), 1);
        assert_eq!(spec.current_phase, Phase::DesignCreation);
        let failed = Outcome::NoResult { exit_code: 1 };
        let kinds = vec![
            EventKind::PhaseStarted {
                phase: Phase::DesignCreation,
            },
            EventKind::PhaseFinished {
                phase: Phase::DesignCreation,
                result: PhaseResult::Failed(&failed),
                detail: String::new(),
            },
        ];
        assert_eq!(apply_all(&mut s, kinds), [true, false]);
        assert_eq!(s.workflow.global_phase, Phase::DesignCreation);
        assert_eq!(s.specifications[SPEC].completed_phases.len(), 1);
    }

    #[test]
    fn refusals_record_the_component_and_leave_the_task_pending() {
        let t = Task::new("1", "Only");
        let ceiling = AgentRun::from_outcome(
            Outcome::BudgetExceeded {
                limit: "per_run".into(),
                limit_usd: 1.0,
                spent_usd: 1.0,
                expected_usd: 0.0,
            },
            "ceiling",
        );
        let refused = AgentRun::from_outcome(Outcome::NotAdmitted, "not admitted: max_memory");
        for (why, run, status, component) in [
            (
                Refused::CostCeiling,
                &ceiling,
                TaskStatus::Pending,
                "budget",
            ),
            (
                Refused::Admission,
                &refused,
                TaskStatus::Pending,
                "admission",
            ),
        ] {
            let mut s = UnifiedState::default();
            apply_all(
                &mut s,
                vec![EventKind::AttemptNotStarted {
                    unit: Unit::Task(&t),
                    attempt: 1,
                    refused: why,
                    run,
                }],
            );
            assert_eq!(task(&s, "1").status, status);
            assert_eq!(s.errors[0].component, component);
            assert_eq!(s.errors[0].error, run.evidence);
            assert_eq!(s.agents.total_executions, 0, "no agent ran");
        }
    }

    #[test]
    fn a_worktree_not_prepared_fails_its_task_or_leaves_it_pending_when_interrupted() {
        let t = Task::new("1", "Only");
        let workspace = AgentRun::from_outcome(
            Outcome::WorkspaceError {
                step: crate::agent::outcome::WorkspaceStep::Prepare,
            },
            "qw's git step failed (preparing the task's worktree)",
        );
        let interrupted =
            AgentRun::from_outcome(Outcome::KilledByUser { signal: None }, "interrupted");
        for (run, status) in [
            (&workspace, TaskStatus::Failed),
            (&interrupted, TaskStatus::Pending),
        ] {
            let mut s = UnifiedState::default();
            apply_all(
                &mut s,
                vec![EventKind::AttemptNotStarted {
                    unit: Unit::Task(&t),
                    attempt: 0,
                    refused: Refused::Worktree,
                    run,
                }],
            );
            let entry = task(&s, "1");
            assert_eq!(entry.status, status);
            assert_eq!(entry.outcome.as_deref(), Some(run.outcome.as_str()));
            let said = format!("{}: {}", run.outcome, run.evidence);
            assert_eq!(entry.error.as_deref(), Some(said.as_str()));
            assert_eq!(s.errors[0].component, "worktree");
            assert_eq!(s.errors[0].error, said);
            assert_eq!(s.errors[0].context["outcome"]["kind"], run.outcome.as_str());
            assert_eq!(s.agents.total_executions, 0, "no agent ran");
        }
    }

    #[test]
    fn a_workspace_error_after_the_agent_succeeded_does_not_count_against_it() {
        let t = Task::new("1", "Only");
        let run = ran(
            Outcome::WorkspaceError {
                step: crate::agent::outcome::WorkspaceStep::Merge,
            },
            0.1,
        );
        let mut s = UnifiedState::default();
        apply_all(
            &mut s,
            vec![
                started(Unit::Task(&t), 1),
                finished(Unit::Task(&t), 1, &run, false),
            ],
        );
        assert_eq!(task(&s, "1").status, TaskStatus::Failed);
        let perf = &s.agents.performance["claude"];
        assert_eq!(
            (perf.successes.get(), perf.failures.get()),
            (Some(1), Some(0)),
            "qw's git step failed, not the agent"
        );
    }

    #[test]
    fn blocked_tasks_share_one_error_record() {
        let (t1, t2, t3) = (
            Task::new("1", "A"),
            Task::new("2", "B"),
            Task::new("3", "C"),
        );
        let leaves = [&t1, &t2, &t3];
        let done = HashSet::new();
        let blocked = [
            Blocked {
                id: "2".into(),
                because: "1".into(),
            },
            Blocked {
                id: "3".into(),
                because: "2".into(),
            },
        ];
        let mut s = UnifiedState::default();
        apply_all(
            &mut s,
            vec![
                EventKind::TasksPlanned {
                    leaves: &leaves,
                    completed: &done,
                },
                EventKind::TasksBlocked { blocked: &blocked },
            ],
        );
        assert_eq!(task(&s, "3").status, TaskStatus::Blocked);
        assert!(task(&s, "3").error.unwrap().contains("task 2"));
        assert_eq!(s.errors.len(), 1);
        assert_eq!(
            s.errors[0].context["blocked"],
            serde_json::json!(["2", "3"])
        );
    }

    #[test]
    fn a_new_run_makes_unfinished_tasks_pending_and_keeps_completed_ones() {
        let mut s = UnifiedState::default();
        let entry = s.specifications.entry(SPEC.into()).or_default();
        entry.paused_until = Some(crate::state::ResetAt::parse("later"));
        for (id, status) in [
            ("1", TaskStatus::Completed),
            ("2", TaskStatus::InProgress),
            ("3", TaskStatus::Failed),
            ("4", TaskStatus::Blocked),
        ] {
            entry.tasks.entry(id.into()).or_default().status = status;
        }
        s.agents.active_tasks = vec!["2".into(), "other-spec-task".into()];
        let options = Options::default();
        apply_all(
            &mut s,
            vec![EventKind::RunStarted {
                description: "A demo",
                options: &options,
                system_stats: None,
            }],
        );
        let spec = &s.specifications[SPEC];
        assert_eq!(spec.description, "A demo");
        assert_eq!(spec.paused_until, None);
        let saved = spec.workflow_options.as_ref().unwrap();
        assert_eq!(Options::from_saved(saved).unwrap(), options);
        let statuses: Vec<_> = ["1", "2", "3", "4"]
            .iter()
            .map(|id| task(&s, id).status)
            .collect();
        assert_eq!(
            statuses,
            [
                TaskStatus::Completed,
                TaskStatus::Pending,
                TaskStatus::Pending,
                TaskStatus::Pending
            ]
        );
        assert_eq!(s.agents.active_tasks, ["other-spec-task"]);
        assert_eq!(s.workflow.current_spec.as_deref(), Some(SPEC));
    }

    #[test]
    fn the_end_of_a_run_records_completion_or_the_pause() {
        let summary = |ending| Summary {
            ending,
            completed: 1,
            total: 1,
            cost_usd: 0.0,
            report: None,
            failed: Vec::new(),
            blocked: Vec::new(),
            agent: crate::workflow::AgentKind::Offline,
            with_warnings: 0,
        };
        let mut s = UnifiedState::default();
        s.specifications.entry(SPEC.into()).or_default();
        let paused = summary(Ending::Paused(StopReason::CostCeiling {
            limit: "daily".into(),
            limit_usd: 1.0,
            spent_usd: 1.0,
            expected_usd: 0.0,
        }));
        apply_all(&mut s, vec![EventKind::Finished { summary: &paused }]);
        assert_eq!(
            s.specifications[SPEC].paused_until,
            Some(crate::state::ResetAt::Text("unknown".into()))
        );
        let done = summary(Ending::Completed);
        apply_all(&mut s, vec![EventKind::Finished { summary: &done }]);
        let spec = &s.specifications[SPEC];
        assert_eq!(spec.current_phase, Phase::Complete);
        assert_eq!(spec.paused_until, None);
        let failed = summary(Ending::Failed);
        assert_eq!(
            apply_all(&mut s, vec![EventKind::Finished { summary: &failed }]),
            [false]
        );
    }
}
