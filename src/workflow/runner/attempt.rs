//! The attempt loop: the one path every agent run takes (documents, tasks, validation).
//!
//! Per attempt: a pending signal stops it, a cost ceiling refuses it, admission admits
//! it (the slot is held for the run), the agent runs through the [`Executor`](crate::exec::Executor), a
//! successful task's `_Verify:_` runs and its worktree is merged, and the result is told
//! as an event. Retryable outcomes are retried up to `--attempts`, unless work is
//! stopping; a usage limit or a cost ceiling stops new work.
//!
//! Resumed sessions: a run that was stopped rather than wrong (see [`resumable`]) left
//! a conversation worth continuing. Its retry — in this loop, or in a later
//! `workflow-continue` that finds the task's last outcome and session in the state —
//! runs with [`Start::Resume`] (`--resume ID` and the short prompt), unless
//! `Options::fresh`. A task left `in_progress` by a `qw` that was killed (no outcome of
//! its last run: the run folder's stream has no result) continues the session that
//! run's `events.jsonl` names. A session the agent no longer has is run fresh at once,
//! in a run folder of its own (both runs' files are kept), said in a note and in the
//! attempt's evidence; an agent without sessions always runs fresh. Session ids are
//! checked where they are recorded and where they are used ([`Agent::accepts_session`]:
//! Claude Code's are UUIDs): one that is not is ignored with a note, and the run that
//! would have resumed it runs fresh.
//!
//! [`Agent::accepts_session`]: crate::agent::Agent::accepts_session

use std::cell::RefCell;
use std::ffi::OsString;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::context::Run;
use crate::agent::outcome::{AgentRun, ErrorCause, Outcome};
use crate::agent::{self, AgentError, Job, RunLimits, Start, TaskJob};
use crate::exec::{ExecReport, ExecSpec, Output, Program};
use crate::spec::tasks::Task;
use crate::workflow::WorkflowError;
use crate::workflow::events::{EventKind, Refused, StopReason, Unit};

/// Where a unit's agent works and the extra environment that says so.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    /// The project's root, or the task's worktree.
    pub workdir: PathBuf,
    /// Extra environment for the agent and `_Verify:_` (`QW_WORKTREE`, `QW_TASK_PORT`).
    pub env: Vec<(OsString, OsString)>,
}

impl Place {
    /// The project's own tree, no extra environment.
    pub(crate) fn project(run: &Run<'_>) -> Place {
        Place {
            workdir: run.project.root().to_path_buf(),
            env: Vec::new(),
        }
    }
}

/// Run `unit` up to `--attempts` times (retrying only retryable outcomes). Returns the
/// last attempt's run; `Err` only when an event could not be recorded.
pub(crate) fn attempts(
    run: &Run<'_>,
    unit: Unit<'_>,
    place: &Place,
) -> Result<AgentRun, WorkflowError> {
    let budget_key = match unit {
        Unit::Task(t) => t.id.clone(),
        Unit::Document(p) => format!("phase:{p}"),
    };
    let max = run.options.attempts.max(1);
    let mut attempt = 0;
    // A run a killed qw left, finished by its orphaned supervisor: judged and used.
    let mut adopt = finished_cut_off(run, unit, place)?;
    let mut resume = match adopt {
        Some(_) => None,
        None => earlier_session(run, unit)?,
    };
    loop {
        attempt += 1;
        if let Some(sig) = run.stop.signal() {
            return Ok(AgentRun::from_outcome(
                Outcome::KilledByUser { signal: Some(sig) },
                "interrupted before the attempt started",
            ));
        }
        if let Err(outcome) = run.budget.start(&budget_key) {
            let mut r = AgentRun::from_outcome(outcome, "");
            let reason = StopReason::for_run(&r);
            r.evidence = reason
                .as_ref()
                .map_or_else(|| r.outcome.to_string(), ToString::to_string);
            if let Some(reason) = reason {
                run.request_stop(reason)?;
            }
            run.events.emit(EventKind::AttemptNotStarted {
                unit,
                attempt,
                refused: Refused::CostCeiling,
                run: &r,
            })?;
            return Ok(r);
        }
        let slot = match admit(run, unit) {
            Ok(slot) => slot,
            Err(Admit::Refused(outcome, why)) => {
                let _ = run.budget.finish(&budget_key, 0.0);
                return not_started(run, unit, attempt, Refused::Admission, outcome, why);
            }
            Err(Admit::Event(e)) => {
                let _ = run.budget.finish(&budget_key, 0.0);
                return Err(e);
            }
        };
        // A signal that came after the slot was granted (admission's own check) and
        // before anything started: nothing starts, the slot goes back, no attempt counts.
        if adopt.is_none()
            && let Some(sig) = run.stop.signal()
        {
            drop(slot);
            let _ = run.budget.finish(&budget_key, 0.0);
            return not_started(
                run,
                unit,
                attempt,
                Refused::Admission,
                Outcome::KilledByUser { signal: Some(sig) },
                "interrupted after admission, before the agent started: the agent was not started"
                    .to_owned(),
            );
        }
        let adopted = adopt.take();
        let run_dir = match &adopted {
            Some((dir, _)) => dir.clone(),
            None => agent::runs::create(run.project, run.name, &run_label(unit, attempt))?,
        };
        let mut job = job(run, unit, place, run_dir.clone());
        // Programs of the task (an agent's own `qw exec --admit`) run under its slot.
        if let Some(slot) = &slot {
            job.env.push((
                crate::admission::SLOT_ENV.into(),
                slot.slot().to_string().into(),
            ));
        }
        let system_stats = match (unit, run.resource_monitoring) {
            (Unit::Task(_), true) => {
                match crate::admission::probes::Probes::read().system_stats_json() {
                    serde_json::Value::Object(map) => Some(map),
                    _ => None,
                }
            }
            _ => None,
        };
        run.events.emit(EventKind::AttemptStarted {
            unit,
            attempt,
            run_dir: &run_dir,
            system_stats,
            resumes: resume.as_ref().map(|r| r.session_id.as_str()),
        })?;
        let started = Instant::now();
        let result = match adopted {
            Some((_, finished)) => adopted_attempt(run, unit, &mut job, attempt, finished),
            None => one_attempt(run, unit, &mut job, attempt, resume.as_ref()),
        };
        drop(slot);
        // The run the attempt ended in (a fresh run after a gone session has its own).
        let run_dir = job.run_dir.clone();
        let duration = started.elapsed();
        // The agent could not be prepared or judged, or the task's merge failed: this
        // attempt failed, the workflow goes on.
        let mut r = result.unwrap_or_else(|e| {
            AgentRun::from_outcome(
                Outcome::AgentError {
                    cause: ErrorCause::NotStarted,
                    exit_code: 0,
                },
                crate::exit::with_hints(&e),
            )
        });
        if r.duration_ms == 0 {
            r.duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        }
        if let Some(bad) = r.session_id.take_if(|id| !run.agent.accepts_session(id)) {
            note(
                run,
                unit,
                format!(
                    "ignored session id `{}` the agent reported: not a session id (Claude Code's are UUIDs); a retry of this run runs fresh",
                    agent::shown_session(&bad)
                ),
            )?;
        }
        if let Some(crossed) = run.budget.finish(&budget_key, r.cost_usd) {
            // Said at once and kept with the run; the work stays (it is done and paid
            // for), and the next run is refused by the ceiling: the workflow pauses.
            note(run, unit, format!("warning: {crossed}; no new run starts"))?;
            r.evidence = format!("{}; {crossed}", r.evidence);
        }
        // An agent that writes no code cannot change what its task's check sees: its
        // verify failure (or its own report that it cannot do the task) would recur.
        let same_again = !run.agent.writes_code()
            && matches!(
                r.outcome,
                Outcome::VerifyFailed { .. }
                    | Outcome::AgentError {
                        cause: ErrorCause::Reported,
                        ..
                    }
            );
        if same_again && attempt < max {
            r.evidence = format!(
                "{}; not retried: the {} agent writes no code, so another attempt would run the same check",
                r.evidence,
                run.agent.name()
            );
        }
        let will_retry = !r.outcome.is_success()
            && r.outcome.is_retryable()
            && !same_again
            && attempt < max
            && !run.stop.is_stopping();
        run.events.emit(EventKind::AttemptFinished {
            unit,
            attempt,
            run: &r,
            run_dir: &run_dir,
            will_retry,
        })?;
        if let Some(reason) = StopReason::for_run(&r) {
            run.request_stop(reason)?;
        }
        if !will_retry {
            return Ok(r);
        }
        resume = session_to_resume(run, &r);
        run.cancel.sleep(run.options.retry_delay());
    }
}

/// The task's last run, when a `qw` that was killed left it (no outcome recorded since
/// it started) and its orphaned supervisor ran it to the end with a successful result:
/// its folder and its verdict, judged as any run is (rev5a L5). The `_Verify:_`, the
/// checks of the worktree and the merge then run as after any agent run. A run that
/// ended otherwise (or that qw cannot judge: no report, an older qw's) runs again.
fn finished_cut_off(
    run: &Run<'_>,
    unit: Unit<'_>,
    place: &Place,
) -> Result<Option<(PathBuf, AgentRun)>, WorkflowError> {
    let Unit::Task(task) = unit else {
        return Ok(None);
    };
    let Some(entry) = earlier_entry(run, task) else {
        return Ok(None);
    };
    if entry.outcome.is_some() {
        return Ok(None);
    }
    let Some(id) = entry.run_id.as_deref() else {
        return Ok(None);
    };
    let Some(dir) = agent::runs::run_dir(run.project, id) else {
        return Ok(None);
    };
    let Some(r) = agent::judge_finished(run.agent, &job(run, unit, place, dir.clone())) else {
        return Ok(None);
    };
    if !r.outcome.is_success() {
        return Ok(None);
    }
    note(
        run,
        unit,
        format!(
            "its agent's run {id} finished after the qw running it was killed ({}); that result is used, the agent does not run again",
            r.evidence
        ),
    )?;
    Ok(Some((dir, r)))
}

/// [`one_attempt`] with the agent's run already over: `finished` (see
/// [`finished_cut_off`]) is taken as its result, then the worktree's checks, the task's
/// `_Verify:_` and the merge run as usual.
fn adopted_attempt(
    run: &Run<'_>,
    unit: Unit<'_>,
    job: &mut Job,
    attempt: u32,
    finished: AgentRun,
) -> Result<AgentRun, WorkflowError> {
    let reports: Reports = RefCell::default();
    let given = RefCell::new(Some(finished));
    let run_as = |_: &Job, _: Start<'_>| match given.borrow_mut().take() {
        Some(r) => Ok((r, None)),
        None => Err(AgentError::CannotResume {
            agent: run.agent.name(),
        }),
    };
    let r = one_attempt_runs(run, unit, job, attempt, None, &run_as, &reports);
    tell_processes_ended(run, unit, reports)?;
    r
}

/// An earlier session the next run continues, and why its last run stopped.
#[derive(Debug, Clone)]
struct Resume {
    session_id: String,
    why: String,
}

/// Outcomes (by name, as the state keeps them) after which a retry continues the
/// run's session: the agent was stopped (a usage limit, the stall watchdog, the time
/// limit, its turn limit, a signal), not wrong, so what it read and did is worth keeping.
pub(crate) fn resumable(outcome: &str) -> bool {
    matches!(
        outcome,
        "usage_limited" | "stalled" | "timed_out" | "max_turns" | "killed_by_user"
    )
}

/// The session the retry of `r` continues (None: a fresh run).
fn session_to_resume(run: &Run<'_>, r: &AgentRun) -> Option<Resume> {
    if run.options.fresh || !resumable(r.outcome.as_str()) {
        return None;
    }
    Some(Resume {
        session_id: r.session_id.clone()?,
        why: format!("{}: {}", r.outcome, r.evidence),
    })
}

/// The state entry of `task` before its first attempt in this run: from the
/// implementation phase's one reading ([`Run::earlier`]) when there is one, else read
/// from the file. None: no entry, or a state that cannot be read.
fn earlier_entry(run: &Run<'_>, task: &Task) -> Option<crate::state::Task> {
    let earlier = run
        .earlier
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    match earlier {
        Some(tasks) => tasks.get(&task.id).cloned(),
        None => run
            .store
            .load()
            .ok()?
            .specifications
            .get(run.name)?
            .tasks
            .get(&task.id)
            .cloned(),
    }
}

/// The session a task's first attempt in this workflow run continues: the one its last
/// run (of an earlier `qw` invocation) left, when that run was stopped (see
/// [`resumable`]) — as the state records it, or, for a task left `in_progress` by a
/// `qw` that was killed (no outcome recorded since its last run started, and that run's
/// stream has no result), as that run's `events.jsonl` names it. A session id that is
/// not one is ignored with a note (the run is fresh).
fn earlier_session(run: &Run<'_>, unit: Unit<'_>) -> Result<Option<Resume>, WorkflowError> {
    let Unit::Task(task) = unit else {
        return Ok(None);
    };
    if run.options.fresh {
        return Ok(None);
    }
    // An unreadable state only costs the resume: the run starts fresh.
    let Some(entry) = earlier_entry(run, task) else {
        return Ok(None);
    };
    // No outcome: its last run started and never ended on record (`workflow-continue`
    // has already set such a task back to pending).
    let cut_off = entry
        .outcome
        .is_none()
        .then(|| cut_off_run(run, entry.run_id.as_deref()?))
        .flatten();
    let (session, why) = match (cut_off, entry.outcome.as_deref()) {
        (Some((run_id, session)), _) => (
            session,
            format!("qw was killed while you worked (run {run_id}); your run was cut off mid-way"),
        ),
        (None, Some(outcome)) if resumable(outcome) => match &entry.session_id {
            Some(id) => (
                id.clone(),
                entry.error.clone().unwrap_or_else(|| outcome.to_owned()),
            ),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    if !run.agent.accepts_session(&session) {
        note(
            run,
            unit,
            format!(
                "the recorded session id `{}` is not a session id (Claude Code's are UUIDs); running fresh",
                agent::shown_session(&session)
            ),
        )?;
        return Ok(None);
    }
    Ok(Some(Resume {
        session_id: session,
        why,
    }))
}

/// Run `run_id` (a task's last run, as the state names it) when it was cut off — its
/// stream has no result: the `qw` running it was killed — and names a session:
/// `(run id, session id)`. The stream is read bounded (see [`agent::runs::Follow`]).
fn cut_off_run(run: &Run<'_>, run_id: &str) -> Option<(String, String)> {
    let activity = agent::runs::read_activity(run.project, run_id)?;
    if activity.finished {
        return None;
    }
    Some((run_id.to_owned(), activity.session_id?))
}

/// Tell a note about `unit`.
fn note(run: &Run<'_>, unit: Unit<'_>, what: String) -> Result<(), WorkflowError> {
    run.events.emit(EventKind::Note {
        message: match unit {
            Unit::Task(t) => format!("task {}: {what}", t.id),
            Unit::Document(p) => format!("{p}: {what}"),
        },
    })
}

/// Why [`admit`] did not return a slot.
enum Admit {
    /// Not admitted (gave up waiting, interrupted, or admission failed): the outcome
    /// (`not_admitted`, or `killed_by_user` for a signal) and why.
    Refused(Outcome, String),
    /// Telling that the unit waits failed.
    Event(WorkflowError),
}

/// Wait for resource admission (if configured); the slot is held until dropped, and
/// says what runs in it (`task 5`), so this workflow's waiting tasks name it.
fn admit(run: &Run<'_>, unit: Unit<'_>) -> Result<Option<crate::admission::SlotGuard>, Admit> {
    let Some(admission) = &run.admission else {
        return Ok(None);
    };
    let mut told: Option<(Instant, bool)> = None;
    let mut failed: Option<WorkflowError> = None;
    let slot = admission.acquire(crate::admission::Impact::Normal, |waiting| {
        // Say why once, then at most every 30 s (or when it starts or stops waiting only
        // behind this workflow's own tasks): the observed load changes on every poll and
        // must not flood the output.
        if told.is_none_or(|(t, untimed): (Instant, bool)| {
            t.elapsed() >= Duration::from_secs(30) || untimed != waiting.untimed
        }) {
            told = Some((Instant::now(), waiting.untimed));
            if let Err(e) = run.events.emit(EventKind::AdmissionWaiting {
                unit,
                why: waiting.to_string(),
            }) {
                failed = Some(e);
                return ControlFlow::Break(());
            }
        }
        if run.stop.signal().is_some() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    match (slot, failed) {
        (_, Some(e)) => Err(Admit::Event(e)),
        // A stop asked while it waited (a signal to qw's pid frees the sibling's slot
        // as it stops it, so the slot can come before the wait looks at the token): a
        // wait never turns into a start once a stop is asked; the slot goes back.
        (Ok(slot), None) if run.stop.signal().is_some() => {
            drop(slot);
            Err(Admit::Refused(
                Outcome::KilledByUser {
                    signal: run.stop.signal(),
                },
                "interrupted while waiting for admission: the stop came as a slot did; the agent was not started".to_owned(),
            ))
        }
        (Ok(mut slot), None) => {
            slot.set_note(&match unit {
                Unit::Task(t) => format!("task {}", t.id),
                Unit::Document(p) => p.to_string(),
            });
            Ok(Some(slot))
        }
        (Err(e), None) => match run.stop.signal() {
            Some(signal) => Err(Admit::Refused(
                Outcome::KilledByUser {
                    signal: Some(signal),
                },
                format!("interrupted while waiting for admission: {e}"),
            )),
            None => Err(Admit::Refused(
                Outcome::NotAdmitted,
                format!(
                    "{e}; no agent ran (not counted as an attempt); `qw workflow-continue {}` runs it",
                    run.name
                ),
            )),
        },
    }
}

/// The run-folder label of an attempt: `task-<id>-a<n>` or `<phase>-a<n>`.
fn run_label(unit: Unit<'_>, attempt: u32) -> String {
    match unit {
        Unit::Task(t) => format!("task-{}-a{attempt}", t.id),
        Unit::Document(p) => format!("{p}-a{attempt}"),
    }
}

/// The agent job for one attempt of `unit`, working in `place`.
fn job(run: &Run<'_>, unit: Unit<'_>, place: &Place, run_dir: PathBuf) -> Job {
    Job {
        phase: unit.agent_phase(),
        spec: run.name.to_owned(),
        description: run.description.clone(),
        project_root: run.project.root().to_path_buf(),
        workdir: place.workdir.clone(),
        // In a worktree, through its link to the main tree's folder, so the prompt names
        // it relative to where the agent works.
        spec_dir: if place.workdir == run.project.root() {
            run.spec.dir().to_path_buf()
        } else {
            place.workdir.join(".claude").join("specs").join(run.name)
        },
        task: unit.task().map(task_job),
        run_dir,
        env: place.env.clone(),
    }
}

/// A task whose agent's checked work an earlier run saved on `branch`, and whose merge
/// only is missing (`worktree/pending.rs`): one attempt that runs no agent and no
/// `_Verify:_` — it merges the saved branch (from the task's worktree, resumed from it,
/// through every check of an ordinary merge) and is recorded like any attempt.
pub(crate) fn merge_saved(
    run: &Run<'_>,
    task: &Task,
    branch: &str,
) -> Result<AgentRun, WorkflowError> {
    let unit = Unit::Task(task);
    if let Some(sig) = run.stop.signal() {
        return Ok(AgentRun::from_outcome(
            Outcome::KilledByUser { signal: Some(sig) },
            "interrupted before the merge of its saved work started",
        ));
    }
    let attempt = 1;
    let run_dir = agent::runs::create(run.project, run.name, &run_label(unit, attempt))?;
    note(
        run,
        unit,
        format!(
            "its agent's checked work was saved on `{branch}` by an earlier run that could not merge it; merging it now (its agent does not run again)"
        ),
    )?;
    run.events.emit(EventKind::AttemptStarted {
        unit,
        attempt,
        run_dir: &run_dir,
        system_stats: None,
        resumes: None,
    })?;
    let mut r = AgentRun::from_outcome(
        Outcome::Succeeded,
        format!(
            "its agent's checked work saved on `{branch}` by an earlier run, merged without running the agent again"
        ),
    );
    run.space.integrate(&task_job(task), &mut r, run.events)?;
    run.events.emit(EventKind::AttemptFinished {
        unit,
        attempt,
        run: &r,
        run_dir: &run_dir,
        will_retry: false,
    })?;
    Ok(r)
}

/// Record an attempt whose agent never started (not admitted, no worktree) with
/// `outcome` (`not_admitted`, `killed_by_user`, `workspace_error`, …) and the reason.
pub(crate) fn not_started(
    run: &Run<'_>,
    unit: Unit<'_>,
    attempt: u32,
    refused: Refused,
    outcome: Outcome,
    why: String,
) -> Result<AgentRun, WorkflowError> {
    let r = AgentRun::from_outcome(outcome, why);
    run.events.emit(EventKind::AttemptNotStarted {
        unit,
        attempt,
        refused,
        run: &r,
    })?;
    Ok(r)
}

/// Run the agent once (continuing `resume`'s session if given) and, if it succeeded,
/// the task's `_Verify:_` command. A resume whose session is gone runs fresh in a new run
/// folder (`job.run_dir` then names it), so the failed resume's files are kept.
fn one_attempt(
    run: &Run<'_>,
    unit: Unit<'_>,
    job: &mut Job,
    attempt: u32,
    resume: Option<&Resume>,
) -> Result<AgentRun, WorkflowError> {
    let limits = RunLimits {
        timeout: run.options.task_timeout(),
        grace: run.options.grace(),
        stall_timeout: run.options.stall_timeout(),
    };
    // What the supervisor reports of each run (leftover processes it ended), told as
    // events once the attempt's runs are over.
    let reports: Reports = RefCell::default();
    let run_as = |job: &Job, start: Start<'_>| {
        // The last look before the job is spawned (the attempt's start was recorded
        // meanwhile, which may have waited for the state lock): a signal that came since
        // starts nothing. (One that comes later is forwarded to the job, whose supervisor
        // looks once more before it spawns the agent.)
        if let Some(sig) = run.stop.signal() {
            return Ok((
                AgentRun::from_outcome(
                    Outcome::KilledByUser { signal: Some(sig) },
                    "interrupted before the agent started: the agent was not started",
                ),
                None,
            ));
        }
        let (r, report) = agent::run_job_as(
            run.agent,
            job,
            start,
            run.project,
            run.executor,
            limits,
            run.stop.jobs(),
        )?;
        let takeover = tell_takeover(run, unit, &report);
        reports
            .borrow_mut()
            .push(("agent", job.run_dir.clone(), report));
        if let Err(e) = takeover {
            return Ok((r, Some(e)));
        }
        Ok::<_, AgentError>((r, None))
    };
    let r = one_attempt_runs(run, unit, job, attempt, resume, &run_as, &reports);
    tell_processes_ended(run, unit, reports)?;
    r
}

/// The exec reports of an attempt's runs, by what ran (`agent`, `verify`) and its folder.
type Reports = RefCell<Vec<(&'static str, PathBuf, ExecReport)>>;

/// Tells the processes each supervised run of `unit` had to end (leftovers, unkillable
/// ones); runs that left none are not told.
fn tell_processes_ended(
    run: &Run<'_>,
    unit: Unit<'_>,
    reports: Reports,
) -> Result<(), WorkflowError> {
    for (of, run_dir, report) in reports.into_inner() {
        if report.leftovers.is_empty() && report.unkillable.is_empty() {
            continue;
        }
        run.events.emit(EventKind::ProcessesEnded {
            unit,
            run_dir: &run_dir,
            of,
            leftovers: &report.leftovers,
            unkillable: &report.unkillable,
        })?;
    }
    Ok(())
}

/// Runs the agent; a takeover that could not be told comes back beside the run.
type RunAs<'f> =
    dyn Fn(&Job, Start<'_>) -> Result<(AgentRun, Option<WorkflowError>), AgentError> + 'f;

/// An event that could not be told ends the attempt as an error, like any other.
fn told((r, failed): (AgentRun, Option<WorkflowError>)) -> Result<AgentRun, WorkflowError> {
    match failed {
        Some(e) => Err(e),
        None => Ok(r),
    }
}

/// The runs of [`one_attempt`]: the agent (`run_as`), then the task's verify.
fn one_attempt_runs(
    run: &Run<'_>,
    unit: Unit<'_>,
    job: &mut Job,
    attempt: u32,
    resume: Option<&Resume>,
    run_as: &RunAs<'_>,
    reports: &Reports,
) -> Result<AgentRun, WorkflowError> {
    let mut r = match resume {
        None => told(run_as(job, Start::Fresh)?)?,
        Some(resume) => {
            let start = Start::Resume {
                session_id: &resume.session_id,
                why: &resume.why,
            };
            match run_as(job, start) {
                // This agent has no sessions: the retry is a fresh run.
                Err(AgentError::CannotResume { .. }) => told(run_as(job, Start::Fresh)?)?,
                // Checked before, so only an agent that disagrees with itself: fresh.
                Err(e @ AgentError::BadSession { .. }) => {
                    note(run, unit, format!("{e}; running fresh"))?;
                    told(run_as(job, Start::Fresh)?)?
                }
                Ok((r, None))
                    if matches!(
                        r.outcome,
                        Outcome::AgentError {
                            cause: ErrorCause::NoSession,
                            ..
                        }
                    ) && run.stop.signal().is_none() =>
                {
                    // A run folder of its own: the failed resume's prompt, stream and
                    // stderr stay as they were.
                    let failed = run_id(&job.run_dir);
                    job.run_dir =
                        agent::runs::create(run.project, run.name, &run_label(unit, attempt))?;
                    let gone = format!(
                        "session {} is gone (run {failed}); ran fresh in run {}",
                        resume.session_id,
                        run_id(&job.run_dir)
                    );
                    note(run, unit, gone.clone())?;
                    let mut fresh = told(run_as(job, Start::Fresh)?)?;
                    fresh.cost_usd += r.cost_usd;
                    fresh.evidence = format!("{gone}; {}", fresh.evidence);
                    fresh
                }
                other => told(other?)?,
            }
        }
    };
    // Jobs cancelled because the workflow stops (`--fail-fast`, a cost ceiling under a
    // batch scheduler): say why; a verify job is not started then, so the task does not
    // count as done and workflow-continue runs it again.
    if let Some(reason) = run.stop.reason().filter(|_| run.stop.cancelled_jobs()) {
        let why = format!("cancelled because the workflow is stopping: {reason}");
        if matches!(r.outcome, Outcome::KilledByUser { .. }) {
            r.evidence = format!("{why}; {}", r.evidence);
            return Ok(r);
        }
        if r.outcome.is_success() && job.task.as_ref().is_some_and(|t| t.verify.is_some()) {
            r.outcome = Outcome::KilledByUser {
                signal: run.stop.jobs().pending(),
            };
            r.evidence = format!("{why}, before its _Verify:_ command ran");
            return Ok(r);
        }
    }
    // Work the agent left where qw does not merge from (the stash, a deleted worktree):
    // said, and the task not counted as done.
    if let Some(task) = &job.task {
        run.space.after_agent(task, &mut r, run.events);
    }
    if r.outcome.is_success()
        && let Some(verify) = job.task.as_ref().and_then(|t| t.verify.as_deref())
        && let Err((code, evidence)) = run_verify(run, unit, job, verify, reports)?
    {
        if r.denials.is_empty() {
            r.outcome = Outcome::VerifyFailed { exit_code: code };
            r.evidence = evidence;
        } else {
            // The agent was refused a command and its check then failed: the refusal is
            // the likely cause, and a retry meets the same refusal (rev11b F4). Keep the
            // refusal and its way out in the evidence, never retried.
            let how = refusal_note(&r.evidence).unwrap_or_else(|| {
                agent::permissions::explain(&r.denials, &std::collections::HashMap::new(), None)
            });
            r.outcome = Outcome::PermissionDenied {
                tools: agent::outcome::denied_tools(&r.denials),
            };
            r.evidence = format!("{evidence}, after a refused command: {how}");
        }
    }
    // In a task worktree: commit and merge before the task counts as completed.
    if r.outcome.is_success()
        && let Some(task) = &job.task
    {
        run.space.integrate(task, &mut r, run.events)?;
    }
    Ok(r)
}

/// The refusal note an agent's success evidence carries (`… (note: HOW)`), if any.
fn refusal_note(evidence: &str) -> Option<String> {
    let at = evidence.rfind(" (note: ")?;
    let rest = &evidence[at + " (note: ".len()..];
    Some(rest.strip_suffix(')').unwrap_or(rest).to_owned())
}

/// The run id (folder name) of a run folder.
fn run_id(dir: &std::path::Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Tell that `report`'s job was one a killed `qw` left and this run took over (waited
/// for it and used its result instead of running the work again), if it was.
fn tell_takeover(
    run: &Run<'_>,
    unit: Unit<'_>,
    report: &crate::exec::ExecReport,
) -> Result<(), WorkflowError> {
    let Some(v) = report
        .scheduler
        .as_ref()
        .filter(|v| v.adopted_from.is_some())
    else {
        return Ok(());
    };
    let what = match unit {
        Unit::Task(t) => format!("task {}", t.id),
        Unit::Document(p) => p.to_string(),
    };
    run.events.emit(EventKind::Note {
        message: format!(
            "{what}: took over Slurm job {} `{}` of a qw that was killed ({}): its result is used, the work was not run again",
            v.job_id, v.job_name, v.state
        ),
    })
}

/// Run the `_Verify:_` of a task ticked by hand once, in the project's tree and a run
/// folder of its own (`task-<id>-hand`), through the same supervised path as a task's
/// check after its agent. Ok(Ok(run folder)): passed; Ok(Err((run folder, evidence))):
/// failed; Err: an event could not be told or the run folder not made.
pub(crate) fn verify_hand_tick(
    run: &Run<'_>,
    task: &Task,
    verify: &str,
) -> Result<Result<PathBuf, (PathBuf, String)>, WorkflowError> {
    let unit = Unit::Task(task);
    let run_dir = agent::runs::create(run.project, run.name, &format!("task-{}-hand", task.id))?;
    let job = job(run, unit, &Place::project(run), run_dir.clone());
    let reports: Reports = RefCell::default();
    let result = run_verify(run, unit, &job, verify, &reports)?;
    tell_processes_ended(run, unit, reports)?;
    Ok(result
        .map(|()| run_dir.clone())
        .map_err(|(_, e)| (run_dir, e)))
}

/// Run a `_Verify:_` command as argv (no shell) in the job's workdir. Inner Err: exit
/// code (None if it could not run) and one line of evidence; outer Err: an event could
/// not be told.
fn run_verify(
    run: &Run<'_>,
    unit: Unit<'_>,
    job: &Job,
    verify: &str,
    reports: &Reports,
) -> Result<Result<(), (Option<i32>, String)>, WorkflowError> {
    let argv = match crate::validate::validate_argv_text(verify) {
        Ok(argv) => argv,
        Err(e) => {
            return Ok(Err((
                None,
                format!("verify command `{verify}` refused: {e}"),
            )));
        }
    };
    let Some(program) = Program::argv(argv) else {
        return Ok(Err((None, "verify command is empty".into())));
    };
    let log = job.run_dir.join("verify.log");
    let mut spec = ExecSpec::new(program);
    spec.cwd = Some(job.workdir.clone());
    spec.stdout = Output::File(log.clone());
    spec.stderr = Output::File(log.clone());
    spec.null_stdin = true;
    spec.timeout = run.options.task_timeout();
    spec.grace = run.options.grace();
    spec.project = Some(run.project.root().to_path_buf());
    // Under Slurm its own job, on a node like the agent's: it runs the project's own
    // checks (builds, tests), which belong where the work is done, not on the submit host.
    spec.name = Some(format!("{}/verify", job.scheduler_name()));
    spec.env = vec![
        ("QW_SPEC".into(), run.name.into()),
        ("QW_TASK_ID".into(), job.task_id().into()),
    ];
    spec.env.extend(job.env.iter().cloned());
    let report = match run.executor.run(&spec, run.stop.jobs()) {
        Ok(report) => report,
        Err(e) => {
            return Ok(Err((
                None,
                format!("verify command `{verify}` could not run: {e}"),
            )));
        }
    };
    reports
        .borrow_mut()
        .push(("verify", job.run_dir.clone(), report.clone()));
    tell_takeover(run, unit, &report)?;
    if report.exit_code == 0 {
        return Ok(Ok(()));
    }
    // Only the end is shown: read only the end (a regular file, never a FIFO).
    let output = crate::fs::read_tail_regular(&log, 4096).unwrap_or_default();
    let tail = crate::agent::outcome::tail_lines(&output, 3);
    let why = if report.timed_out {
        "timed out".to_owned()
    } else if let Some(e) = &report.spawn_error {
        e.clone()
    } else {
        format!("exit {}", report.exit_code)
    };
    Ok(Err((
        Some(report.exit_code),
        format!(
            "verify `{verify}` failed ({why}): {}",
            tail.replace('\n', " | ")
        ),
    )))
}

/// The [`TaskJob`] for a tasks.md task.
pub(crate) fn task_job(t: &Task) -> TaskJob {
    TaskJob {
        id: t.id.clone(),
        title: t.title.clone(),
        details: t.details.clone(),
        verify: t.verify.clone(),
        requirements: t.requirements.clone(),
    }
}
