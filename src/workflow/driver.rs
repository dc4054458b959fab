//! The phase driver: steering check → spec creation → requirements → design → tasks →
//! implementation → validation → report, each recorded in `completed_phases`.
//!
//! Finished work is never redone: a phase whose document exists (written by an earlier
//! run, or by the user) is skipped, and tasks completed in the state or ticked in
//! `tasks.md` are not run again (after `reconcile` made the two agree).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::budget::Budget;
use super::isolation::{self, TaskSpace};
use super::progress::{Event, Progress};
use super::{AgentKind, OPTIONS_KEY, Options, WorkflowError, report, scheduler};
use crate::admission::Admission;
use crate::agent::outcome::{AgentRun, Outcome};
use crate::agent::{self, Agent, Job, Phase as AgentPhase, RunLimits, TaskJob};
use crate::exec::{Cancel, ExecSpec, Executor, LocalExecutor, Output, Program};
use crate::fs::LockedFile;
use crate::project::Project;
use crate::spec::Spec;
use crate::spec::tasks::TaskList;
use crate::state::{self, CompletedPhase, Phase, StateStore, TaskStatus, Timestamp, UnifiedState};

/// How a workflow run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// Every task completed and validation passed.
    Completed,
    /// Some work failed; the report says which and why.
    Failed,
    /// A usage limit or a cost ceiling stopped new work; `workflow-continue` resumes.
    Paused {
        /// Why.
        reason: String,
        /// When a usage limit resets, if known.
        until: Option<String>,
    },
    /// A signal stopped the run; its number.
    Interrupted(i32),
}

impl Ending {
    /// The word used in events and reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            Ending::Completed => "completed",
            Ending::Failed => "failed",
            Ending::Paused { .. } => "paused",
            Ending::Interrupted(_) => "interrupted",
        }
    }
}

/// The result of [`Workflow::run`].
#[derive(Debug, Clone)]
pub struct Summary {
    /// How it ended.
    pub ending: Ending,
    /// Completed leaf tasks.
    pub completed: usize,
    /// All leaf tasks.
    pub total: usize,
    /// USD spent in this run.
    pub cost_usd: f64,
    /// The report written.
    pub report: Option<PathBuf>,
    /// Tasks that failed in this run.
    pub failed: Vec<String>,
    /// Tasks blocked by a failed dependency.
    pub blocked: Vec<String>,
}

/// One workflow run for one spec.
#[derive(Debug)]
pub struct Workflow {
    /// The project.
    pub project: Project,
    /// The project's settings, read once by the caller.
    pub settings: crate::settings::QwSettings,
    /// The spec name (validated in [`Workflow::run`]).
    pub name: String,
    /// The description (for a new spec; an existing spec keeps its own if this is empty).
    pub description: String,
    /// How to run.
    pub options: Options,
    /// The `qw` binary (supervisor and offline agent).
    pub qw: PathBuf,
    /// Only print what would run.
    pub dry_run: bool,
    /// Events as JSON lines on stdout.
    pub json: bool,
    /// No progress output.
    pub quiet: bool,
}

/// Everything the phases and the scheduler share while a workflow runs.
pub(crate) struct Run<'a> {
    pub project: &'a Project,
    pub store: StateStore,
    /// Batches the task threads' state updates (see `commit.rs`).
    pub commit: super::commit::Committer,
    pub spec: Spec,
    pub name: &'a str,
    pub description: String,
    pub options: &'a Options,
    pub agent: &'a dyn Agent,
    pub executor: &'a dyn Executor,
    pub admission: Option<Admission>,
    pub budget: Budget,
    pub cancel: &'a Cancel,
    pub progress: &'a Progress,
    /// Set when no new work may start (fail-fast, pause, interrupt).
    pub stop: AtomicBool,
    /// Why work was paused (usage limit, budget), if it was.
    pub pause: Mutex<Option<(String, Option<String>)>>,
    /// Ticks tasks.md, batching the ticks of tasks that finish together.
    pub ticker: super::commit::Ticker,
    /// Record a `system_stats` snapshot with each task (dev mode `resource_monitoring`).
    pub resource_monitoring: bool,
    /// Where tasks work: their own git worktrees, or the project's tree.
    pub space: TaskSpace,
}

impl Workflow {
    /// Run (or resume) the workflow. Bad input is reported before anything is written.
    pub fn run(self, cancel: &Cancel) -> Result<Summary, WorkflowError> {
        let spec = Spec::new(&self.project, &self.name).map_err(input)?;
        let agent = build_agent(&self.options, &self.qw)?;
        agent.check().map_err(input)?;
        if self.options.parallel == 0 {
            return Err(WorkflowError::Input("--parallel must be at least 1".into()));
        }
        if spec.tasks_path().is_file() {
            load_tasks(&spec)?;
        }
        let admission = Admission::from_settings(&self.settings);
        let dev = &self.settings.development_mode;
        let store = StateStore::new(&self.project).with_cancel(cancel);

        // Refusals (no git, dirty tree) come before anything is written.
        let plan = isolation::plan(&self.project, &self.name, &self.options)?;
        let progress = Progress::new(self.json, self.quiet);
        if self.dry_run {
            return dry_run(&self, &spec, &progress);
        }

        crate::fs::create_dir_all(spec.dir())?;
        let _lock = lock_workflow(&self.project, &self.name)?;
        let swept = crate::exec::sweep::sweep(Some(self.project.root()), self.options.grace());
        if !swept.killed.is_empty() {
            progress.emit(Event::Note {
                message: format!(
                    "ended {} process(es) orphaned by an earlier qw that was killed",
                    swept.killed.len()
                ),
            });
        }
        if store.path().is_file() {
            store.backup_before(&format!("workflow_{}", self.name))?;
        }
        // Before the statuses are reset for the run: the record says what to repair.
        super::reconcile::at_start(&store, &spec, &progress)?;
        let spent_today = start_in_state(&store, &self, &spec)?;
        let space = TaskSpace::start(&self.project, &self.name, plan, &progress, cancel)?;

        let per_day = self.settings.quantumwala.daily_budget_usd;
        let description = self.description_in_state(&spec)?;
        if !self.description.trim().is_empty() && description != self.description {
            progress.emit(Event::Note {
                message: format!(
                    "spec `{}` already exists and keeps its description \"{description}\"; to start over with a new one run `qw workflow-reset {} --hard`",
                    self.name, self.name
                ),
            });
        }
        let executor = LocalExecutor::new(&self.qw);
        let run = Run {
            project: &self.project,
            commit: super::commit::Committer::start(store.clone()),
            ticker: super::commit::Ticker::start(spec.tasks_path()),
            store,
            description,
            spec,
            name: &self.name,
            options: &self.options,
            agent: agent.as_ref(),
            executor: &executor,
            admission: Some(admission),
            budget: Budget::new(
                self.options.max_cost_per_task,
                self.options.max_cost_per_run,
                per_day,
                spent_today,
            ),
            cancel,
            progress: &progress,
            stop: AtomicBool::new(false),
            pause: Mutex::new(None),
            resource_monitoring: dev.resource_monitoring(),
            space,
        };
        let started = Instant::now();
        let summary = drive(&run, &progress, started);
        progress.finish();
        let keep = agent::runs::keep_from_settings(&self.settings);
        if let Err(e) = agent::runs::prune(&self.project, keep) {
            tracing::warn!(
                "could not prune old runs in `{}`: {e}",
                self.project.runs_dir().display()
            );
        }
        let summary = summary?;
        progress.emit(Event::Finished {
            result: summary.ending.as_str().to_owned(),
            completed: summary.completed,
            total: summary.total,
            cost_usd: summary.cost_usd,
            report: summary.report.as_ref().map(|p| p.display().to_string()),
        });
        Ok(summary)
    }

    fn description_in_state(&self, spec: &Spec) -> Result<String, WorkflowError> {
        let state = StateStore::new(&self.project).load()?;
        Ok(state
            .specifications
            .get(spec.name())
            .map(|s| s.description.clone())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| self.description.clone()))
    }
}

/// Run the phases in order; always writes the report once the implementation phase
/// was reached or a phase failed.
fn drive(run: &Run<'_>, progress: &Progress, started: Instant) -> Result<Summary, WorkflowError> {
    let mut summary = Summary {
        ending: Ending::Completed,
        completed: 0,
        total: 0,
        cost_usd: 0.0,
        report: None,
        failed: Vec::new(),
        blocked: Vec::new(),
    };
    steering_and_creation(run)?;
    let documents = [
        (AgentPhase::Requirements, Phase::RequirementsGeneration),
        (AgentPhase::Design, Phase::DesignCreation),
        (AgentPhase::Tasks, Phase::TaskGeneration),
    ];
    let mut failure: Option<(String, AgentRun)> = None;
    for (aphase, sphase) in documents {
        if let Some(run_failed) = document_phase(run, aphase, sphase.clone())? {
            failure = Some((sphase.to_string(), run_failed));
            break;
        }
    }

    let mut outcome = scheduler::TasksOutcome::default();
    if failure.is_none() {
        let tasks = match load_tasks(&run.spec) {
            Ok(t) => t,
            Err(e) => {
                // The agent wrote a tasks.md that does not parse: the work failed.
                let evidence = e.to_string();
                record_error(
                    run,
                    "workflow",
                    &evidence,
                    json!({"phase": "task_generation"}),
                );
                failure = Some((
                    "task_generation".into(),
                    AgentRun::from_outcome(Outcome::NoResult { exit_code: 0 }, evidence),
                ));
                TaskList::parse("").map_err(input)?
            }
        };
        if failure.is_none() {
            set_phase(run, Phase::Implementation)?;
            run.progress.emit(Event::PhaseStarted {
                phase: Phase::Implementation.to_string(),
            });
            outcome = scheduler::run_tasks(run, &tasks, progress)?;
            let all_done = outcome.completed == outcome.total;
            run.progress.emit(Event::PhaseFinished {
                phase: Phase::Implementation.to_string(),
                outcome: if all_done { "succeeded" } else { "incomplete" }.into(),
                detail: format!("{}/{} tasks completed", outcome.completed, outcome.total),
            });
            if all_done {
                complete_phase(run, Phase::Implementation)?;
                if let Some(run_failed) =
                    document_phase(run, AgentPhase::Validation, Phase::Validation)?
                {
                    failure = Some(("validation".into(), run_failed));
                }
            }
        }
    }
    summary.completed = outcome.completed;
    summary.total = outcome.total;
    summary.failed = outcome.failed.clone();
    summary.blocked = outcome.blocked.clone();

    let pause = run.pause.lock().ok().and_then(|p| p.clone());
    summary.ending = if let Some(sig) = run.cancel.pending() {
        Ending::Interrupted(sig)
    } else if let Some((reason, until)) = pause {
        Ending::Paused { reason, until }
    } else if failure.is_some() || outcome.completed < outcome.total {
        Ending::Failed
    } else {
        Ending::Completed
    };
    summary.cost_usd = run.budget.spent();

    let state = run.store.load()?;
    let report_path = run.spec.report_path();
    let text = report::render(&report::ReportInput {
        name: run.name,
        description: &run.description,
        ending: &summary.ending,
        state: &state,
        tasks: load_tasks(&run.spec).ok().as_ref(),
        failure: failure.as_ref(),
        duration: started.elapsed(),
        cost_this_run: summary.cost_usd,
    });
    crate::fs::write_durable(&report_path, text.as_bytes())?;
    summary.report = Some(report_path);
    if summary.ending == Ending::Completed {
        complete_phase(run, Phase::Complete)?;
    }
    if let Ending::Paused { until, .. } = &summary.ending {
        let until = until.clone();
        run.store.update(|s| {
            if let Some(spec) = s.specifications.get_mut(run.name) {
                spec.paused_until = until.or_else(|| Some("unknown".into()));
            }
        })?;
    }
    Ok(summary)
}

/// Record the steering check and spec creation.
fn steering_and_creation(run: &Run<'_>) -> Result<(), WorkflowError> {
    let steering = run.project.steering_dir();
    let has_steering = ["product.md", "tech.md", "structure.md"]
        .iter()
        .any(|f| steering.join(f).is_file());
    if has_steering {
        complete_phase(run, Phase::SteeringSetup)?;
    } else {
        run.progress.emit(Event::Note {
            message: "no steering documents in .claude/steering/ (run `qw init` to create templates); continuing without them".into(),
        });
    }
    complete_phase(run, Phase::SpecCreation)
}

/// Produce one document (or run validation). Returns the failing run if it failed.
fn document_phase(
    run: &Run<'_>,
    aphase: AgentPhase,
    sphase: Phase,
) -> Result<Option<AgentRun>, WorkflowError> {
    let done_in_state = run
        .store
        .load()?
        .specifications
        .get(run.name)
        .is_some_and(|s| s.completed_phases.iter().any(|c| c.phase == sphase));
    let doc = aphase.document().map(|d| run.spec.dir().join(d));
    let doc_present = doc
        .as_ref()
        .is_some_and(|p| p.metadata().is_ok_and(|m| m.len() > 0));
    if doc_present || (doc.is_none() && done_in_state) {
        run.progress.emit(Event::PhaseFinished {
            phase: sphase.to_string(),
            outcome: "skipped".into(),
            detail: if doc_present {
                format!(
                    "`{}` already exists",
                    doc.as_ref()
                        .map(|d| d.display().to_string())
                        .unwrap_or_default()
                )
            } else {
                "already completed".into()
            },
        });
        if !done_in_state {
            complete_phase(run, sphase)?;
        }
        return Ok(None);
    }
    if run.stop.load(Ordering::SeqCst) || run.cancel.pending().is_some() {
        return Ok(Some(AgentRun::from_outcome(
            Outcome::KilledByUser {
                signal: run.cancel.pending(),
            },
            "stopped before this phase started",
        )));
    }
    set_phase(run, sphase.clone())?;
    run.progress.emit(Event::PhaseStarted {
        phase: sphase.to_string(),
    });
    let label = aphase.as_str();
    let last = attempts(run, label, None, |run_dir| Job {
        phase: aphase,
        spec: run.name.to_owned(),
        description: run.description.clone(),
        project_root: run.project.root().to_path_buf(),
        workdir: run.project.root().to_path_buf(),
        spec_dir: run.spec.dir().to_path_buf(),
        task: None,
        run_dir,
        env: Vec::new(),
    })?;
    let ok = last.outcome.is_success();
    run.progress.emit(Event::PhaseFinished {
        phase: sphase.to_string(),
        outcome: last.outcome.as_str().into(),
        detail: if ok {
            String::new()
        } else {
            last.evidence.clone()
        },
    });
    if ok {
        complete_phase(run, sphase)?;
        Ok(None)
    } else {
        Ok(Some(last))
    }
}

/// Run a job up to `options.attempts` times (retrying only retryable outcomes), with
/// budget, admission, state records and progress events. `task` is the state task id
/// for implementation jobs. Returns the last attempt's run.
pub(crate) fn attempts(
    run: &Run<'_>,
    label: &str,
    task: Option<&crate::spec::tasks::Task>,
    make_job: impl Fn(PathBuf) -> Job,
) -> Result<AgentRun, WorkflowError> {
    let budget_key = task.map_or_else(|| format!("phase:{label}"), |t| t.id.clone());
    let max = run.options.attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        if let Some(sig) = run.cancel.pending() {
            return Ok(AgentRun::from_outcome(
                Outcome::KilledByUser { signal: Some(sig) },
                "interrupted before the attempt started",
            ));
        }
        if let Err(outcome) = run.budget.start(&budget_key) {
            let evidence = budget_evidence(&outcome).unwrap_or_else(|| outcome.to_string());
            let r = AgentRun::from_outcome(outcome, evidence);
            pause(run, &r);
            run.store.update(|s| {
                if let Some(t) = task {
                    let entry = spec_entry(s, run.name).tasks.entry(t.id.clone()).or_default();
                    entry.outcome = Some(r.outcome.as_str().to_owned());
                    entry.error = Some(format!("{}: {}", r.outcome, r.evidence));
                    entry.status = TaskStatus::Pending;
                }
                s.record_error(
                    "budget",
                    &r.evidence,
                    json!({"spec": run.name, "phase": label, "task": task.map(|t| &t.id), "outcome": r.outcome}),
                );
            })?;
            match task {
                Some(t) => run.progress.emit(Event::TaskSkipped {
                    id: t.id.clone(),
                    reason: format!("{}: {}", r.outcome, r.evidence),
                }),
                None => run.progress.emit(Event::Note {
                    message: format!("{label}: {}", r.evidence),
                }),
            }
            return Ok(r);
        }
        let mut told: Option<Instant> = None;
        let slot = match &run.admission {
            Some(a) => match a.acquire(crate::admission::Impact::Normal, |waiting| {
                // Say why once, then at most every 30 s: the observed load changes on
                // every poll and must not flood the output.
                if told.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(30)) {
                    run.progress.emit(Event::Note {
                        message: format!(
                            "{label}{}: waiting for admission: {waiting}",
                            task.map(|t| format!(" {}", t.id)).unwrap_or_default()
                        ),
                    });
                    told = Some(Instant::now());
                }
                if run.cancel.pending().is_some() {
                    std::ops::ControlFlow::Break(())
                } else {
                    std::ops::ControlFlow::Continue(())
                }
            }) {
                Ok(slot) => Some(slot),
                Err(e) => {
                    run.budget.finish(&budget_key, 0.0);
                    let why = format!("not admitted: {e}");
                    return not_started(run, label, task, attempt, "admission", &why);
                }
            },
            None => None,
        };
        let run_dir = agent::runs::create(run.project, run.name, &run_label(label, task, attempt))?;
        let job = make_job(run_dir.clone());
        if let Some(t) = task {
            task_started(run, t, attempt, &run_dir)?;
        }
        let started = Instant::now();
        let mut result = one_attempt(run, &job);
        drop(slot);
        let duration = started.elapsed();
        let mut r = match result.as_mut() {
            Ok(r) => r.clone(),
            Err(e) => AgentRun::from_outcome(
                Outcome::AgentError {
                    cause: crate::agent::outcome::ErrorCause::NotStarted,
                    exit_code: 0,
                },
                e.to_string(),
            ),
        };
        if r.duration_ms == 0 {
            r.duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        }
        run.budget.finish(&budget_key, r.cost_usd);
        let stopping = run.stop.load(Ordering::SeqCst) || run.cancel.pending().is_some();
        let will_retry =
            !r.outcome.is_success() && r.outcome.is_retryable() && attempt < max && !stopping;
        record_attempt(run, label, task, attempt, &r, &run_dir, will_retry)?;
        if task.is_some() {
            run.progress.emit(Event::TaskFinished {
                id: task.map(|t| t.id.clone()).unwrap_or_default(),
                outcome: r.outcome.as_str().into(),
                attempt,
                duration_ms: r.duration_ms,
                cost_usd: r.cost_usd,
                evidence: r.evidence.clone(),
                will_retry,
            });
        } else if !r.outcome.is_success() {
            run.progress.emit(Event::Note {
                message: format!(
                    "{label} attempt {attempt}: {} — {}{}",
                    r.outcome,
                    r.evidence,
                    if will_retry { " (retrying)" } else { "" }
                ),
            });
        }
        if r.outcome.pauses_workflow() {
            pause(run, &r);
        }
        if !will_retry {
            return Ok(r);
        }
        run.cancel.sleep(run.options.retry_delay());
    }
}

fn run_label(label: &str, task: Option<&crate::spec::tasks::Task>, attempt: u32) -> String {
    match task {
        Some(t) => format!("task-{}-a{attempt}", t.id),
        None => format!("{label}-a{attempt}"),
    }
}

fn budget_evidence(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::BudgetExceeded {
            limit,
            limit_usd,
            spent_usd,
        } => Some(format!(
            "the {limit} cost ceiling of ${limit_usd:.2} would be crossed (${spent_usd:.2} spent); raise it and run `qw workflow-continue`"
        )),
        _ => None,
    }
}

/// Stop new work and remember why (usage limit or budget).
fn pause(run: &Run<'_>, r: &AgentRun) {
    run.stop.store(true, Ordering::SeqCst);
    if let Ok(mut p) = run.pause.lock()
        && p.is_none()
    {
        *p = Some((r.evidence.clone(), r.resets_at.clone()));
    }
}

/// Run the agent once and, if it succeeded, the task's `_Verify:_` command.
fn one_attempt(run: &Run<'_>, job: &Job) -> Result<AgentRun, WorkflowError> {
    let limits = RunLimits {
        timeout: run.options.task_timeout(),
        grace: run.options.grace(),
        stall_timeout: run.options.stall_timeout(),
    };
    let (mut r, _report) = agent::run_job(
        run.agent,
        job,
        run.project,
        run.executor,
        limits,
        run.cancel,
    )
    .map_err(|e| WorkflowError::Input(e.to_string()))?;
    if r.outcome.is_success()
        && let Some(verify) = job.task.as_ref().and_then(|t| t.verify.as_deref())
        && let Err((code, evidence)) = run_verify(run, job, verify)
    {
        r.outcome = Outcome::VerifyFailed { exit_code: code };
        r.evidence = evidence;
    }
    // In a task worktree: commit and merge before the task counts as completed.
    if r.outcome.is_success()
        && let Some(task) = &job.task
    {
        run.space.integrate(task, &mut r, run.progress)?;
    }
    Ok(r)
}

/// Run a `_Verify:_` command as argv (no shell) in the job's workdir. Err: exit code
/// (None if it could not run) and one line of evidence.
pub(crate) fn run_verify(
    run: &Run<'_>,
    job: &Job,
    verify: &str,
) -> Result<(), (Option<i32>, String)> {
    let argv = crate::validate::validate_argv_text(verify)
        .map_err(|e| (None, format!("verify command `{verify}` refused: {e}")))?;
    let Some(program) = Program::argv(argv) else {
        return Err((None, "verify command is empty".into()));
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
    spec.env = vec![
        ("QW_SPEC".into(), run.name.into()),
        ("QW_TASK_ID".into(), job.task_id().into()),
    ];
    spec.env.extend(job.env.iter().cloned());
    let report = run.executor.run(&spec, run.cancel).map_err(|e| {
        (
            None,
            format!("verify command `{verify}` could not run: {e}"),
        )
    })?;
    if report.exit_code == 0 {
        return Ok(());
    }
    let output = crate::fs::read(&log).unwrap_or_default();
    let tail = crate::agent::outcome::tail_lines(agent::tail_bytes(&output, 4096), 3);
    let why = if report.timed_out {
        "timed out".to_owned()
    } else if let Some(e) = &report.spawn_error {
        e.clone()
    } else {
        format!("exit {}", report.exit_code)
    };
    Err((
        Some(report.exit_code),
        format!(
            "verify `{verify}` failed ({why}): {}",
            tail.replace('\n', " | ")
        ),
    ))
}

/// Record an attempt whose agent never started (not admitted, no worktree): the task
/// is `failed` with `agent_error` (not started) and the reason, which is also recorded
/// in `errors` under `component`.
pub(crate) fn not_started(
    run: &Run<'_>,
    label: &str,
    task: Option<&crate::spec::tasks::Task>,
    attempt: u32,
    component: &str,
    why: &str,
) -> Result<AgentRun, WorkflowError> {
    let r = AgentRun::from_outcome(
        Outcome::AgentError {
            cause: crate::agent::outcome::ErrorCause::NotStarted,
            exit_code: 0,
        },
        why,
    );
    run.store.update(|s| {
        if let Some(t) = task {
            let entry = spec_entry(s, run.name)
                .tasks
                .entry(t.id.clone())
                .or_default();
            entry.status = TaskStatus::Failed;
            entry.outcome = Some(r.outcome.as_str().to_owned());
            entry.error = Some(format!("{}: {why}", r.outcome));
        }
        s.record_error(
            component,
            why,
            json!({"spec": run.name, "task": task.map(|t| &t.id), "phase": label}),
        );
    })?;
    if let Some(t) = task {
        run.progress.emit(Event::TaskFinished {
            id: t.id.clone(),
            outcome: r.outcome.as_str().into(),
            attempt,
            duration_ms: 0,
            cost_usd: 0.0,
            evidence: why.to_owned(),
            will_retry: false,
        });
    }
    Ok(r)
}

/// Mark a task in progress for a new attempt.
fn task_started(
    run: &Run<'_>,
    t: &crate::spec::tasks::Task,
    attempt: u32,
    run_dir: &Path,
) -> Result<(), WorkflowError> {
    let agent_name = run.agent.name();
    let run_id = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let stats = run
        .resource_monitoring
        .then(|| crate::admission::probes::Probes::read().system_stats_json());
    let (name, id, title) = (run.name.to_owned(), t.id.clone(), t.title.clone());
    run.commit.update(move |s| {
        let spec = spec_entry(s, &name);
        let task = spec.tasks.entry(id.clone()).or_default();
        task.id = id.clone();
        task.spec_name = name.clone();
        task.description = title;
        task.status = TaskStatus::InProgress;
        task.agent = Some(agent_name.to_owned());
        task.attempts = task.attempts.max(attempt - 1) + 1;
        task.started_at = Some(Timestamp::now());
        task.completed_at = None;
        task.run_id = run_id;
        if !s.agents.active_tasks.contains(&id) {
            s.agents.active_tasks.push(id);
        }
        let running = s.agents.active_tasks.len() as u64;
        s.resources.peak_concurrent_tasks.raise_to(running);
        if let Some(serde_json::Value::Object(map)) = stats {
            s.resources.system_stats = map;
        }
    })?;
    run.progress.emit(Event::TaskStarted {
        id: t.id.clone(),
        title: t.title.clone(),
        attempt,
    });
    Ok(())
}

/// Record one finished attempt: cost, tokens, outcome, status, errors, agent stats.
fn record_attempt(
    run: &Run<'_>,
    label: &str,
    task: Option<&crate::spec::tasks::Task>,
    attempt: u32,
    r: &AgentRun,
    run_dir: &Path,
    will_retry: bool,
) -> Result<(), WorkflowError> {
    let agent_name = run.agent.name();
    let ok = r.outcome.is_success();
    let today = chrono::Local::now().format("%Y-%m-%d").to_string();
    let (name, label) = (run.name.to_owned(), label.to_owned());
    let task_id = task.map(|t| t.id.clone());
    let run_dir = run_dir.display().to_string();
    let r = r.clone();
    run.commit.update(move |s| {
        let spec = spec_entry(s, &name);
        spec.cost_usd += r.cost_usd;
        if let Some(id) = &task_id {
            let entry = spec.tasks.entry(id.clone()).or_default();
            *entry.cost_usd.get_or_insert(0.0) += r.cost_usd;
            *entry.input_tokens.get_or_insert(0) += r.input_tokens;
            *entry.output_tokens.get_or_insert(0) += r.output_tokens;
            *entry.num_turns.get_or_insert(0) += r.num_turns;
            if r.session_id.is_some() {
                entry.session_id = r.session_id.clone();
            }
            entry.outcome = Some(r.outcome.as_str().to_owned());
            entry.duration_seconds = Some(r.duration_ms as f64 / 1000.0);
            entry.extra.insert("evidence".into(), json!(r.evidence));
            if ok {
                entry.status = TaskStatus::Completed;
                entry.completed_at = Some(Timestamp::now());
                entry.error = None;
            } else {
                entry.status = match r.outcome {
                    Outcome::KilledByUser { .. } => TaskStatus::Pending,
                    _ if will_retry => TaskStatus::InProgress,
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
            s.agents.active_tasks.retain(|a| a != id);
            s.resources.total_tasks_executed += 1;
        }
        if !ok {
            s.record_error(
                "workflow",
                &format!("{}: {}", r.outcome, r.evidence),
                json!({
                    "spec": name,
                    "phase": label,
                    "task": task_id,
                    "attempt": attempt,
                    "exit_code": r.exit_code,
                    "outcome": r.outcome,
                    "duration_ms": r.duration_ms,
                    "run_dir": run_dir,
                    "will_retry": will_retry,
                }),
            );
        }
        let perf = s
            .agents
            .performance
            .entry(agent_name.to_owned())
            .or_default();
        perf.executions += 1;
        if !r.outcome.counts_against_agent() {
            perf.successes += 1;
        } else {
            perf.failures += 1;
        }
        perf.total_duration += r.duration_ms as f64 / 1000.0;
        perf.average_duration = perf.total_duration / perf.executions.as_f64();
        perf.last_execution = Some(Timestamp::now());
        s.agents.total_executions += 1;
        if r.cost_usd > 0.0 {
            let ledger = s.extra.entry("cost_ledger").or_insert_with(|| json!({}));
            if let Some(map) = ledger.as_object_mut() {
                let day = map.entry(today).or_insert(json!(0.0));
                *day = json!(day.as_f64().unwrap_or(0.0) + r.cost_usd);
            }
        }
    })?;
    if ok && let Some(t) = task {
        run.ticker.tick(&t.id)?;
    }
    Ok(())
}

/// The state entry of a spec, created if missing.
pub(crate) fn spec_entry<'s>(s: &'s mut UnifiedState, name: &str) -> &'s mut state::Spec {
    let spec = s.specifications.entry(name.to_owned()).or_default();
    if spec.name.is_empty() {
        spec.name = name.to_owned();
        spec.created_at = Some(Timestamp::now());
    }
    spec
}

fn set_phase(run: &Run<'_>, phase: Phase) -> Result<(), WorkflowError> {
    run.store.update(|s| {
        s.workflow.current_spec = Some(run.name.to_owned());
        s.workflow.global_phase = phase.clone();
        spec_entry(s, run.name).current_phase = phase;
    })?;
    Ok(())
}

fn complete_phase(run: &Run<'_>, phase: Phase) -> Result<(), WorkflowError> {
    run.store.update(|s| {
        let spec = spec_entry(s, run.name);
        if !spec.completed_phases.iter().any(|c| c.phase == phase) {
            spec.completed_phases.push(CompletedPhase {
                phase: phase.clone(),
                completed_at: Some(Timestamp::now()),
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
        let rel = |f: &str| format!(".claude/specs/{}/{f}", run.name);
        files
            .requirements
            .get_or_insert_with(|| rel("requirements.md"));
        files.design.get_or_insert_with(|| rel("design.md"));
        files.tasks.get_or_insert_with(|| rel("tasks.md"));
        s.workflow.global_phase = spec.current_phase.clone();
    })?;
    Ok(())
}

pub(crate) fn record_error(
    run: &Run<'_>,
    component: &str,
    error: &str,
    context: serde_json::Value,
) {
    if let Err(e) = run
        .store
        .update(|s| s.record_error(component, error, context))
    {
        tracing::warn!("could not record an error in the state: {e}");
    }
}

/// Create or refresh the spec's entry: description, options, resumable tasks. Returns
/// what was spent today before this run (for the daily ceiling).
fn start_in_state(store: &StateStore, w: &Workflow, spec: &Spec) -> Result<f64, WorkflowError> {
    let options =
        serde_json::to_value(&w.options).map_err(|e| WorkflowError::Input(e.to_string()))?;
    let today = chrono::Local::now().format("%Y-%m-%d").to_string();
    let spent = store.update(|s| {
        s.workflow.current_spec = Some(spec.name().to_owned());
        s.workflow.auto_progression = true;
        let entry = spec_entry(s, spec.name());
        if entry.description.is_empty() {
            entry.description = w.description.clone();
        }
        entry.extra.insert(OPTIONS_KEY.into(), options);
        if let serde_json::Value::Object(map) =
            crate::admission::probes::Probes::read().system_stats_json()
        {
            s.resources.system_stats = map;
        }
        let entry = spec_entry(s, spec.name());
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
        s.extra
            .get("cost_ledger")
            .and_then(|l| l.get(&today))
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    })?;
    Ok(spent)
}

/// Parse and validate the spec's tasks.md, including every `_Verify:_` command.
pub(crate) fn load_tasks(spec: &Spec) -> Result<TaskList, WorkflowError> {
    let path = spec.tasks_path();
    let text = crate::spec::tasks::read_text(&path).map_err(super::reconcile::tasks_error)?;
    let list =
        TaskList::parse(&text).map_err(|e| WorkflowError::Input(e.in_file(&path).to_string()))?;
    for t in list.tasks() {
        if let Some(v) = &t.verify
            && let Err(e) = crate::validate::validate_argv_text(v)
        {
            return Err(WorkflowError::Input(format!(
                "`{}` line {}: task {} has a _Verify:_ command qw will not run: {e}; write it as plain argv, or explicitly as `sh -c '…'`",
                path.display(),
                t.line,
                t.id
            )));
        }
    }
    Ok(list)
}

fn lock_workflow(project: &Project, name: &str) -> Result<LockedFile, WorkflowError> {
    crate::fs::create_dir_all(project.runs_dir())?;
    let path = project.workflow_lock_file(name);
    match LockedFile::try_acquire(&path)? {
        Some(lock) => Ok(lock),
        None => Err(WorkflowError::Busy {
            spec: name.to_owned(),
            holder: Box::new(
                LockedFile::probe(&path)
                    .ok()
                    .flatten()
                    .unwrap_or_else(crate::fs::Holder::unknown),
            ),
            lock: path,
        }),
    }
}

/// Build the agent the options ask for.
pub(crate) fn build_agent(options: &Options, qw: &Path) -> Result<Box<dyn Agent>, WorkflowError> {
    Ok(match options.agent {
        AgentKind::Claude => Box::new(agent::ClaudeAgent {
            program: "claude".into(),
            extra_args: options.claude_args.clone(),
        }),
        AgentKind::Command => {
            let template = options.agent_cmd.as_deref().ok_or_else(|| {
                WorkflowError::Input(
                    "--agent command needs --agent-cmd 'PROGRAM ARGS… {prompt_file}'".into(),
                )
            })?;
            Box::new(agent::CommandAgent::parse(template).map_err(input)?)
        }
        AgentKind::Offline => Box::new(agent::OfflineAgent::new(qw)),
    })
}

fn dry_run(w: &Workflow, spec: &Spec, progress: &Progress) -> Result<Summary, WorkflowError> {
    let note = |m: String| progress.emit(Event::Note { message: m });
    note(format!(
        "dry run of spec `{}` with the {} agent, {} task(s) at once; nothing is started or written",
        w.name,
        w.options.agent.as_str(),
        w.options.parallel
    ));
    for (phase, doc) in [
        ("requirements_generation", spec.requirements_path()),
        ("design_creation", spec.design_path()),
        ("task_generation", spec.tasks_path()),
    ] {
        let state = if doc.is_file() {
            "exists, skipped"
        } else {
            "would run the agent"
        };
        note(format!("{phase}: `{}` {state}", doc.display()));
    }
    let mut total = 0;
    let mut completed = 0;
    if spec.tasks_path().is_file() {
        let tasks = load_tasks(spec)?;
        let done: HashSet<String> = tasks.checked_leaves();
        for t in tasks.leaf_order() {
            total += 1;
            let deps: Vec<&str> = tasks
                .leaf_dependencies(&t.id)
                .iter()
                .map(|d| d.id.as_str())
                .collect();
            let status = if done.contains(&t.id) {
                completed += 1;
                "done".to_owned()
            } else {
                "would run".to_owned()
            };
            let mut line = format!("task {} {} — {status}", t.id, t.title);
            if !deps.is_empty() {
                line.push_str(&format!(" after {}", deps.join(", ")));
            }
            if let Some(v) = &t.verify {
                line.push_str(&format!("; verify: {v}"));
            }
            note(line);
        }
    } else {
        note("implementation: tasks.md does not exist yet; its tasks are known after task_generation".into());
    }
    Ok(Summary {
        ending: Ending::Completed,
        completed,
        total,
        cost_usd: 0.0,
        report: None,
        failed: Vec::new(),
        blocked: Vec::new(),
    })
}

fn input(e: impl std::fmt::Display) -> WorkflowError {
    WorkflowError::Input(e.to_string())
}

/// The [`TaskJob`] for a tasks.md task.
pub(crate) fn task_job(t: &crate::spec::tasks::Task) -> TaskJob {
    TaskJob {
        id: t.id.clone(),
        title: t.title.clone(),
        details: t.details.clone(),
        verify: t.verify.clone(),
        requirements: t.requirements.clone(),
    }
}
