//! The execution trace: every workflow event as one `tracing` line, which the daily log
//! file in `.claude/logs/` keeps (CONTRACT §7).
//!
//! Owns: the wording and the fields of the trace lines of a workflow run. Every line
//! starts its fields with `spec=NAME`, and a task's lines go on with `task=ID`, so
//! `grep 'spec=NAME task=ID'` finds one task's history. Values are written with
//! `Display` (no quotes) and never hold a space where a grep would need them whole.
//! Must not: fail the run — writing the log is the logging layer's problem, which falls
//! back and keeps going — nor decide anything.

use super::EventSink;
use crate::logging::{RECORDED_ERRORS, TRACE};
use crate::workflow::WorkflowError;
use crate::workflow::events::{Event, EventKind, Unit};
use tracing::field::display;

/// The trace reader of one run of `spec` with `agent`.
#[derive(Debug, Clone)]
pub(crate) struct Trace {
    spec: String,
    agent: &'static str,
}

impl Trace {
    /// A reader for a run of `spec` by `agent`.
    pub(crate) fn new(spec: &str, agent: &'static str) -> Trace {
        Trace {
            spec: spec.to_owned(),
            agent,
        }
    }
}

/// The task id of a task unit (a document unit has none: the field is left out).
fn task_of<'a>(unit: &Unit<'a>) -> Option<&'a str> {
    unit.task().map(|t| t.id.as_str())
}

/// The run id: the name of the run folder `.claude/runs/<run-id>/`.
fn run_id(dir: &std::path::Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl EventSink for Trace {
    fn event(&self, event: &Event<'_>) -> Result<(), WorkflowError> {
        let spec = display(&self.spec);
        match &event.kind {
            EventKind::RunStarted {
                description,
                options,
                ..
            } => {
                tracing::info!(target: TRACE, spec = %spec, agent = %self.agent, "workflow started");
                tracing::debug!(target: TRACE, spec = %spec, description, options = ?options, "workflow options");
            }
            EventKind::SpecReady { steering } => {
                tracing::debug!(target: TRACE, spec = %spec, steering, "spec ready");
            }
            EventKind::PhaseStarted { phase } => {
                tracing::info!(target: TRACE, spec = %spec, phase = %phase, "phase started");
            }
            EventKind::PhaseFinished {
                phase,
                result,
                detail,
            } => {
                tracing::info!(
                    target: TRACE,
                    spec = %spec,
                    phase = %phase,
                    result = %result.as_str(),
                    detail = %detail,
                    "phase finished"
                );
            }
            EventKind::TasksPlanned { leaves, completed } => {
                tracing::info!(
                    target: TRACE,
                    spec = %spec,
                    tasks = leaves.len(),
                    done_before = completed.len(),
                    "tasks planned"
                );
                for t in leaves.iter() {
                    tracing::debug!(
                    target: TRACE,
                        spec = %spec,
                        task = %t.id,
                        done_before = completed.contains(&t.id),
                        title = %t.title,
                        "task planned"
                    );
                }
            }
            EventKind::TaskListInvalid { error } => {
                tracing::error!(
                    target: RECORDED_ERRORS,
                    spec = %spec,
                    component = %"workflow",
                    phase = %"task_generation",
                    "task list invalid: {error}"
                );
            }
            EventKind::AdmissionWaiting { unit, why } => {
                tracing::info!(
                    target: TRACE,
                    spec = %spec,
                    task = task_of(unit).map(display),
                    phase = %unit.phase(),
                    why = %why,
                    "waiting for admission"
                );
            }
            EventKind::AttemptStarted {
                unit,
                attempt,
                run_dir,
                ..
            } => {
                tracing::info!(
                    target: TRACE,
                    spec = %spec,
                    task = task_of(unit).map(display),
                    attempt,
                    agent = %self.agent,
                    run_id = %run_id(run_dir),
                    phase = %unit.phase(),
                    "attempt started"
                );
            }
            EventKind::AttemptFinished {
                unit,
                attempt,
                run,
                run_dir,
                will_retry,
            } => {
                tracing::info!(
                    target: TRACE,
                    spec = %spec,
                    task = task_of(unit).map(display),
                    attempt,
                    agent = %self.agent,
                    run_id = %run_id(run_dir),
                    outcome = %run.outcome.as_str(),
                    exit_code = run.exit_code,
                    duration_s = %format_args!("{:.3}", run.duration_ms as f64 / 1000.0),
                    cost_usd = %format_args!("{:.4}", run.cost_usd),
                    turns = run.num_turns,
                    will_retry,
                    phase = %unit.phase(),
                    "attempt finished"
                );
                if !run.outcome.is_success() {
                    tracing::error!(
                        target: RECORDED_ERRORS,
                        spec = %spec,
                        task = task_of(unit).map(display),
                        attempt,
                        run_id = %run_id(run_dir),
                        component = %"workflow",
                        phase = %unit.label(),
                        exit_code = run.exit_code,
                        will_retry,
                        "{}: {}",
                        run.outcome.as_str(),
                        run.evidence
                    );
                } else if !run.evidence.is_empty() {
                    tracing::debug!(
                    target: TRACE,
                        spec = %spec,
                        task = task_of(unit).map(display),
                        attempt,
                        evidence = %run.evidence,
                        "attempt evidence"
                    );
                }
            }
            EventKind::AttemptNotStarted {
                unit,
                attempt,
                refused,
                run,
            } => {
                tracing::info!(
                    target: TRACE,
                    spec = %spec,
                    task = task_of(unit).map(display),
                    attempt,
                    agent = %self.agent,
                    refused_by = %refused.component(),
                    outcome = %run.outcome.as_str(),
                    duration_s = 0,
                    cost_usd = 0,
                    reason = %run.evidence,
                    phase = %unit.phase(),
                    "attempt not started"
                );
                tracing::error!(
                    target: RECORDED_ERRORS,
                    spec = %spec,
                    task = task_of(unit).map(display),
                    attempt,
                    component = %refused.component(),
                    phase = %unit.label(),
                    "{}: {}",
                    run.outcome.as_str(),
                    run.evidence
                );
            }
            EventKind::TasksBlocked { blocked } => {
                for b in blocked.iter() {
                    tracing::info!(
                    target: TRACE,
                        spec = %spec,
                        task = %b.id,
                        because = %b.because,
                        "task blocked"
                    );
                }
            }
            EventKind::Stopping { reason, .. } => {
                tracing::info!(target: TRACE, spec = %spec, reason = %reason, "stopping new work");
            }
            EventKind::Repaired {
                task,
                repair,
                message,
            } => {
                tracing::info!(
                    target: TRACE,
                    spec = %spec,
                    task = %task,
                    component = %"reconcile",
                    repair = %repair,
                    "{message}"
                );
            }
            EventKind::TickedByHand { task, message, .. } => {
                tracing::info!(
                    target: TRACE,
                    spec = %spec,
                    task = %task,
                    component = %"reconcile",
                    repair = %"ticked_by_hand",
                    "{message}"
                );
            }
            EventKind::ProcessesEnded {
                unit,
                run_dir,
                of,
                leftovers,
                unkillable,
            } => {
                for l in leftovers.iter() {
                    tracing::info!(
                        target: TRACE,
                        spec = %spec,
                        task = task_of(unit).map(display),
                        run_id = %run_id(run_dir),
                        of = %of,
                        pid = l.pid,
                        command = %l.command,
                        phase = %unit.phase(),
                        "ended a leftover process"
                    );
                }
                for l in unkillable.iter() {
                    tracing::error!(
                        target: RECORDED_ERRORS,
                        spec = %spec,
                        task = task_of(unit).map(display),
                        run_id = %run_id(run_dir),
                        component = %"exec",
                        of = %of,
                        pid = l.pid,
                        command = %l.command,
                        "a process of the run is still alive after SIGKILL (blocked in the kernel)"
                    );
                }
            }
            EventKind::Note { message } => {
                tracing::info!(target: TRACE, spec = %spec, "{message}");
            }
            EventKind::MergePending {
                task, branch, tip, ..
            } => {
                tracing::info!(
                    target: TRACE,
                    spec = %spec,
                    task = %task,
                    branch = %branch,
                    tip = %tip,
                    "saved checked work, merge pending"
                );
            }
            EventKind::Finished { summary } => {
                tracing::info!(
                    target: TRACE,
                    spec = %spec,
                    agent = %summary.agent.as_str(),
                    ending = %summary.ending.as_str(),
                    completed = summary.completed,
                    total = summary.total,
                    cost_usd = %format_args!("{:.4}", summary.cost_usd),
                    failed = %summary.failed.join(","),
                    blocked = %summary.blocked.join(","),
                    "workflow finished"
                );
            }
        }
        Ok(())
    }
}
