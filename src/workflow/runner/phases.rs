//! The phase order: steering check → spec creation → requirements → design → tasks →
//! implementation → validation → report.
//!
//! Finished work is never redone: a phase whose document exists as a non-empty regular
//! file (written by an earlier run, or by the user) is skipped, and tasks completed in the
//! state or ticked in `tasks.md` are not run again.

use std::time::Instant;

use super::attempt::{Place, attempts};
use super::context::Run;
use super::scheduler;
use crate::agent::Phase as AgentPhase;
use crate::agent::outcome::{AgentRun, Outcome};
use crate::spec::Spec;
use crate::spec::tasks::TaskList;
use crate::state::Phase;
use crate::workflow::events::{Ending, EventKind, PhaseResult, Summary, Unit, state_phase};
use crate::workflow::{WorkflowError, report};

/// Run the phases in order; always writes the report once the implementation phase
/// was reached or a phase failed, then emits [`EventKind::Finished`].
pub(crate) fn drive(run: &Run<'_>, started: Instant) -> Result<Summary, WorkflowError> {
    let steering = run.project.steering_dir();
    let has_steering = ["product.md", "tech.md", "structure.md"]
        .iter()
        .any(|f| steering.join(f).is_file());
    run.events.emit(EventKind::SpecReady {
        steering: has_steering,
    })?;
    let mut failure: Option<(Phase, AgentRun)> = None;
    for phase in [
        AgentPhase::Requirements,
        AgentPhase::Design,
        AgentPhase::Tasks,
    ] {
        if let Some(run_failed) = document_phase(run, phase)? {
            failure = Some((state_phase(phase), run_failed));
            break;
        }
    }

    let mut outcome = scheduler::TasksOutcome::default();
    if failure.is_none() {
        match load_tasks(&run.spec) {
            Err(e) => {
                // The agent wrote a tasks.md that does not parse: the work failed.
                let evidence = e.to_string();
                run.events
                    .emit(EventKind::TaskListInvalid { error: &evidence })?;
                failure = Some((
                    Phase::TaskGeneration,
                    AgentRun::from_outcome(Outcome::NoResult { exit_code: 0 }, evidence),
                ));
            }
            Ok(tasks) => {
                crate::workflow::checks::open(run.project, run.name, &tasks, &run.checks)?;
                crate::workflow::dev::backup_before_phase(
                    &run.store,
                    run.dev.auto_backup(),
                    run.name,
                    &Phase::Implementation,
                );
                run.events.emit(EventKind::PhaseStarted {
                    phase: Phase::Implementation,
                })?;
                outcome = scheduler::run_tasks(run, &tasks)?;
                let all_done = outcome.completed == outcome.total;
                run.events.emit(EventKind::PhaseFinished {
                    phase: Phase::Implementation,
                    result: if all_done {
                        PhaseResult::Succeeded
                    } else {
                        PhaseResult::Incomplete
                    },
                    detail: format!("{}/{} tasks completed", outcome.completed, outcome.total),
                })?;
                if all_done && let Some(run_failed) = document_phase(run, AgentPhase::Validation)? {
                    failure = Some((Phase::Validation, run_failed));
                }
            }
        }
    }

    let ending = Ending::decide(
        run.stop.reason(),
        failure.is_none() && outcome.completed == outcome.total,
    );
    let cost_usd = run.budget.spent();
    let state = run.store.load()?;
    // Nothing failed, nothing was blocked by a failure: the tasks left were only not
    // admitted. That is no failure of the work.
    let not_admitted = state.specifications.get(run.name).map_or(0, |s| {
        s.tasks
            .values()
            .filter(|t| {
                t.status == crate::state::TaskStatus::Pending
                    && t.outcome.as_deref() == Some(Outcome::NotAdmitted.as_str())
            })
            .count()
    });
    let ending = match ending {
        Ending::Failed
            if failure.is_none()
                && outcome.failed.is_empty()
                && outcome.blocked.is_empty()
                && not_admitted > 0 =>
        {
            Ending::NotAdmitted(not_admitted)
        }
        e => e,
    };
    let report_path = run.spec.report_path();
    let text = report::render(&report::ReportInput {
        name: run.name,
        description: &run.description,
        ending: &ending,
        state: &state,
        tasks: load_tasks(&run.spec).ok().as_ref(),
        failure: failure.as_ref(),
        duration: started.elapsed(),
        cost_this_run: cost_usd,
        runs_dir: run
            .dev
            .enhanced_error_reporting()
            .then(|| run.project.runs_dir()),
    });
    // The run's outcome is told whatever happens to its report: a report that cannot be
    // written (a directory planted at `report.md`, a full disk) is a warning naming the
    // path and what to do, and the summary names no report.
    let report = match crate::fs::write_generated(&report_path, text.as_bytes()) {
        Ok(()) => Some(report_path),
        Err(e) => {
            run.events.emit(EventKind::Note {
                message: format!(
                    "warning: the report was not written: {e}; move it away or fix it, then `{}` writes it",
                    crate::worktree::continue_cmd(run.name)
                ),
            })?;
            None
        }
    };
    let with_warnings = report::completed_with_warnings(state.specifications.get(run.name));
    let summary = Summary {
        ending,
        completed: outcome.completed,
        total: outcome.total,
        cost_usd,
        report,
        failed: outcome.failed,
        blocked: outcome.blocked,
        agent: run.options.agent,
        with_warnings,
    };
    run.events.emit(EventKind::Finished { summary: &summary })?;
    Ok(summary)
}

/// Produce one document (or run validation). Returns the failing run if it failed.
fn document_phase(run: &Run<'_>, aphase: AgentPhase) -> Result<Option<AgentRun>, WorkflowError> {
    let phase = state_phase(aphase);
    // Done, and (for validation, which has no document) not outdated by a task that
    // completed after it: new tasks added and run since are validated again.
    let done_in_state = run
        .store
        .load()?
        .specifications
        .get(run.name)
        .is_some_and(|s| {
            s.completed_phases
                .iter()
                .filter(|c| c.phase == phase)
                .any(|c| {
                    let at = c.completed_at.as_ref().and_then(|t| t.as_datetime());
                    !s.tasks.values().any(|t| {
                        match (at, t.completed_at.as_ref().and_then(|t| t.as_datetime())) {
                            (Some(phase_at), Some(task_at)) => task_at > phase_at,
                            _ => false,
                        }
                    })
                })
        });
    let doc = aphase.document().map(|d| run.spec.dir().join(d));
    // Only a non-empty regular file exists (a directory has a size too).
    let doc_present = doc.as_deref().is_some_and(crate::agent::document::present);
    if doc_present || (doc.is_none() && done_in_state) {
        run.events.emit(EventKind::PhaseFinished {
            phase,
            result: PhaseResult::Skipped,
            detail: match &doc {
                Some(d) if doc_present => format!("`{}` already exists", d.display()),
                _ => "already completed".into(),
            },
        })?;
        return Ok(None);
    }
    if run.stop.is_stopping() {
        return Ok(Some(AgentRun::from_outcome(
            Outcome::KilledByUser {
                signal: run.stop.signal(),
            },
            "stopped before this phase started",
        )));
    }
    crate::workflow::dev::backup_before_phase(&run.store, run.dev.auto_backup(), run.name, &phase);
    run.events.emit(EventKind::PhaseStarted {
        phase: phase.clone(),
    })?;
    let last = attempts(run, Unit::Document(aphase), &Place::project(run))?;
    let ok = last.outcome.is_success();
    run.events.emit(EventKind::PhaseFinished {
        phase,
        result: if ok {
            PhaseResult::Succeeded
        } else {
            PhaseResult::Failed(&last.outcome)
        },
        detail: if ok {
            String::new()
        } else {
            last.evidence.clone()
        },
    })?;
    Ok((!ok).then_some(last))
}

/// Parse and validate the spec's tasks.md, including every `_Verify:_` command.
pub(crate) fn load_tasks(spec: &Spec) -> Result<TaskList, WorkflowError> {
    load_tasks_at(&spec.tasks_path())
}

/// [`load_tasks`] of the tasks.md at `path`.
pub(crate) fn load_tasks_at(path: &std::path::Path) -> Result<TaskList, WorkflowError> {
    let path = path.to_path_buf();
    let text = crate::spec::tasks::read_text(&path)?;
    let list = TaskList::parse(&text).map_err(|e| e.in_file(&path))?;
    for t in list.tasks() {
        if let Some(v) = &t.verify
            && let Err(e) = crate::validate::validate_argv_text(v)
        {
            return Err(WorkflowError::Verify {
                path,
                line: t.line,
                task: t.id.clone(),
                reason: e.to_string(),
            });
        }
    }
    Ok(list)
}
