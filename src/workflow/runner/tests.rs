//! The attempt loop and the scheduler with a fake [`Executor`] and a fake [`Agent`]:
//! no process is started, every agent run is scripted, and the assertions look at
//! what the runner told (events), what it ran (executor calls) and what the recorder
//! made of it (the state and `tasks.md`).

use std::collections::VecDeque;
use std::sync::Mutex;

use super::attempt::{Place, attempts};
use super::context::Run;
use super::scheduler::run_tasks;
use super::stop::Stop;
use crate::agent::outcome::{AgentRun, ClassifyInput, ErrorCause, Outcome};
use crate::agent::{Agent, AgentCommand, AgentError, Job};
use crate::exec::{Cancel, ExecError, ExecReport, ExecSpec, Executor, Output, Program};
use crate::project::Project;
use crate::spec::Spec;
use crate::spec::tasks::TaskList;
use crate::state::{StateStore, TaskStatus, UnifiedState};
use crate::workflow::Options;
use crate::workflow::budget::Budget;
use crate::workflow::events::{Event, EventKind, StopReason, Unit};
use crate::workflow::isolation::TaskSpace;
use crate::workflow::reporter::{EventSink, Events, Recorder};

const SPEC: &str = "demo";
const AGENT: &str = "fake-agent";

/// What the fake executor does for the next agent run.
#[derive(Debug, Clone)]
enum Step {
    /// The agent ends with this run (its stdout carries it to the fake agent).
    Ends(Box<AgentRun>),
    /// Signal N reaches qw while the agent runs; the supervisor forwards it.
    Signal(i32),
}

/// Task 1 of the spec in `state`, created if missing, pending.
fn pending_task_one(state: &mut UnifiedState) -> &mut crate::state::Task {
    let spec = state.specifications.entry(SPEC.into()).or_default();
    let task = spec.tasks.entry("1".into()).or_default();
    task.id = "1".into();
    task.status = TaskStatus::Pending;
    task
}

fn ends(outcome: Outcome) -> Step {
    Step::Ends(Box::new(AgentRun::from_outcome(outcome, "scripted")))
}

/// A run of session `session` that ends with `outcome` and costs `usd`.
fn in_session(outcome: Outcome, session: &str, usd: f64) -> Step {
    let mut r = AgentRun::from_outcome(outcome, "scripted");
    r.session_id = Some(session.into());
    r.cost_usd = usd;
    Step::Ends(Box::new(r))
}

fn costs(outcome: Outcome, usd: f64) -> Step {
    let mut r = AgentRun::from_outcome(outcome, "scripted");
    r.cost_usd = usd;
    Step::Ends(Box::new(r))
}

/// Runs nothing: agent runs follow the script, `_Verify:_` commands exit `verify_exit`.
struct FakeExecutor {
    /// The process's signal token (a signal reaches qw there, not the job's own token).
    process: Cancel,
    script: Mutex<VecDeque<Step>>,
    verify_exit: i32,
    calls: Mutex<Vec<String>>,
    /// The prompt of each agent run.
    prompts: Mutex<Vec<String>>,
}

impl Executor for FakeExecutor {
    fn run(&self, spec: &ExecSpec, cancel: &Cancel) -> Result<ExecReport, ExecError> {
        let argv: Vec<String> = spec
            .program
            .to_argv()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut report = ExecReport::new("fake");
        if argv[0] != AGENT {
            self.calls
                .lock()
                .unwrap()
                .push(format!("verify {}", argv.join(" ")));
            report.exit_code = self.verify_exit;
            return Ok(report);
        }
        let mut call = vec!["agent".to_owned()];
        call.extend(argv[1..].iter().cloned());
        self.calls.lock().unwrap().push(call.join(" "));
        if let Output::File(path) = &spec.stdout {
            let prompt = path.with_file_name("prompt.md");
            let prompt = crate::fs::read_to_string(&prompt).unwrap_or_default();
            self.prompts.lock().unwrap().push(prompt);
        }
        let step = self.script.lock().unwrap().pop_front();
        let stdout = match step {
            Some(Step::Ends(run)) => serde_json::to_vec(&run).unwrap(),
            Some(Step::Signal(sig)) => {
                self.process.request(sig);
                if cancel.pending() != Some(sig) {
                    return Err(ExecError::Supervisor(
                        "the job's token did not see the signal".into(),
                    ));
                }
                report.interrupted_by = Some(sig);
                report.exit_code = 128 + sig;
                Vec::new()
            }
            // Not a panic: a panicking task thread would leave the scheduler waiting.
            None => {
                return Err(ExecError::Supervisor(
                    "the agent ran more often than scripted".into(),
                ));
            }
        };
        if let Output::File(path) = &spec.stdout {
            crate::fs::write(path, stdout).unwrap();
        }
        Ok(report)
    }
}

/// Judges a run by the scripted [`AgentRun`] on its stdout; stopped runs are stopped.
struct FakeAgent;

impl Agent for FakeAgent {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn command(&self, job: &Job, _prompt: &str) -> Result<AgentCommand, AgentError> {
        Ok(AgentCommand {
            program: Program::argv([AGENT]).unwrap(),
            env: Vec::new(),
            cwd: job.workdir.clone(),
            stdout_name: "stdout.json",
        })
    }

    /// Any id that cannot read as a flag (the scripted ids are short, `s-1`).
    fn accepts_session(&self, id: &str) -> bool {
        !id.is_empty() && !id.starts_with('-')
    }

    fn resume_command(
        &self,
        job: &Job,
        session_id: &str,
        _prompt: &str,
    ) -> Option<Result<AgentCommand, AgentError>> {
        Some(Ok(AgentCommand {
            program: Program::argv([AGENT, "--resume", session_id]).unwrap(),
            env: Vec::new(),
            cwd: job.workdir.clone(),
            stdout_name: "stdout.json",
        }))
    }

    fn classify(&self, _job: &Job, input: &ClassifyInput<'_>) -> AgentRun {
        if input.user_cancelled {
            return AgentRun::from_outcome(
                Outcome::KilledByUser {
                    signal: input.report.interrupted_by,
                },
                "stopped",
            );
        }
        serde_json::from_slice(input.stdout.as_captured().tail()).unwrap()
    }
}

/// A scenario: tasks.md, options, the script, and what happens before the run.
struct Scenario {
    tasks_md: &'static str,
    options: Options,
    script: Vec<Step>,
    verify_exit: i32,
    signal_before: Option<i32>,
    /// A signal sent as the first event whose line starts with the text is told (the
    /// recorder has seen it: the state was written).
    signal_at_event: Option<(&'static str, i32)>,
    stop_before: Option<StopReason>,
    /// Task 1's last run in an earlier `qw` invocation: its outcome and session.
    earlier: Option<(&'static str, &'static str)>,
    /// Task 1 left `in_progress` by a killed `qw`: its run folder's `events.jsonl`
    /// (no outcome in the state).
    cut_off: Option<&'static str>,
}

impl Scenario {
    fn new(tasks_md: &'static str, script: Vec<Step>) -> Scenario {
        Scenario {
            tasks_md,
            options: Options {
                attempts: 3,
                retry_delay_s: 0.0,
                parallel: 1,
                ..Options::default()
            },
            script,
            verify_exit: 0,
            signal_before: None,
            signal_at_event: None,
            stop_before: None,
            earlier: None,
            cut_off: None,
        }
    }
}

/// What a scenario did.
struct Seen<T> {
    result: T,
    /// `agent` / `verify ARGV`, in order.
    calls: Vec<String>,
    /// One line per event (see [`describe`]).
    events: Vec<String>,
    state: UnifiedState,
    tasks_md: String,
    stop: Option<StopReason>,
    script_left: usize,
    prompts: Vec<String>,
    /// The run folders at the end, oldest first: each with the names of its files.
    runs: Vec<(String, Vec<String>)>,
}

/// The run id of the run a killed `qw` left (see [`Scenario::cut_off`]).
const CUT_RUN: &str = "20260101T100000000-demo-task-1-a1-abcdef";

/// Run `f` on a [`Run`] wired to the fakes, a real recorder in a temporary project,
/// and an event collector.
fn scenario<T>(s: Scenario, f: impl FnOnce(&Run<'_>, &TaskList) -> T) -> Seen<T> {
    let dir = tempfile::tempdir().unwrap();
    let project = Project::at(dir.path());
    let spec = Spec::new(&project, SPEC).unwrap();
    crate::fs::create_dir_all(spec.dir()).unwrap();
    crate::fs::write(spec.tasks_path(), s.tasks_md).unwrap();
    let tasks = TaskList::parse(s.tasks_md).unwrap();
    let cancel = Cancel::new();
    let executor = FakeExecutor {
        process: cancel.clone(),
        script: Mutex::new(s.script.into()),
        verify_exit: s.verify_exit,
        calls: Mutex::new(Vec::new()),
        prompts: Mutex::new(Vec::new()),
    };
    if let Some(sig) = s.signal_before {
        cancel.request(sig);
    }
    let store = StateStore::new(&project);
    if let Some((outcome, session)) = s.earlier {
        store
            .update(|state| {
                let task = pending_task_one(state);
                task.outcome = Some(outcome.into());
                task.session_id = Some(session.into());
                task.error = Some(format!("{outcome}: earlier run stopped"));
                task.cost_usd = Some(1.0);
            })
            .unwrap();
    }
    if let Some(events) = s.cut_off {
        let dir = project.runs_dir().join(CUT_RUN);
        crate::fs::create_dir_all(&dir).unwrap();
        crate::fs::write(dir.join("events.jsonl"), events).unwrap();
        store
            .update(|state| {
                // What `workflow-continue` makes of it before it runs tasks.
                let task = pending_task_one(state);
                task.attempts = 1;
                task.run_id = Some(CUT_RUN.into());
            })
            .unwrap();
    }
    let seen = Mutex::new(Vec::new());
    let collect = |e: &Event<'_>| {
        let line = describe(e);
        if let Some((prefix, sig)) = s.signal_at_event
            && line.starts_with(prefix)
            && cancel.pending().is_none()
        {
            cancel.request(sig);
        }
        seen.lock().unwrap().push(line);
    };
    let (result, stop) = {
        let recorder = Recorder::start(store.clone(), SPEC, "fake", spec.tasks_path());
        let events = Events::new(vec![&recorder, &collect as &dyn EventSink]);
        let run = Run {
            project: &project,
            store: store.clone(),
            spec,
            name: SPEC,
            description: "A demo".into(),
            options: &s.options,
            agent: &FakeAgent,
            executor: &executor,
            admission: None,
            budget: Budget::new(
                s.options.max_cost_per_task,
                s.options.max_cost_per_run,
                None,
                0.0,
            ),
            cancel: &cancel,
            events: &events,
            stop: Stop::new(&cancel, false),
            resource_monitoring: false,
            dev: crate::settings::DevMode::default(),
            space: TaskSpace::shared(&project, SPEC),
            checks: crate::workflow::checks::Opened::default(),
            earlier: std::sync::Mutex::default(),
        };
        if let Some(reason) = s.stop_before {
            run.stop.request(reason);
        }
        let result = f(&run, &tasks);
        (result, run.stop.reason())
    };
    let tasks_md = crate::fs::read_to_string(project.spec_dir(SPEC).join("tasks.md")).unwrap();
    let mut runs: Vec<(String, Vec<String>)> = crate::fs::read_dir(project.runs_dir())
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let mut files: Vec<String> = crate::fs::read_dir(e.path())
                        .unwrap()
                        .flatten()
                        .map(|f| f.file_name().to_string_lossy().into_owned())
                        .collect();
                    files.sort();
                    (e.file_name().to_string_lossy().into_owned(), files)
                })
                .collect()
        })
        .unwrap_or_default();
    runs.sort();
    Seen {
        result,
        calls: executor.calls.into_inner().unwrap(),
        events: seen.into_inner().unwrap(),
        state: store.load().unwrap(),
        tasks_md,
        stop,
        script_left: executor.script.into_inner().unwrap().len(),
        prompts: executor.prompts.into_inner().unwrap(),
        runs,
    }
}

/// One task, attempted through [`attempts`].
fn attempt_task(s: Scenario) -> Seen<AgentRun> {
    scenario(s, |run, tasks| {
        let task = tasks.leaves()[0];
        attempts(run, Unit::Task(task), &Place::project(run)).unwrap()
    })
}

/// A short line per event: `kind unit details`.
fn describe(e: &Event<'_>) -> String {
    let unit = |u: &Unit<'_>| match u {
        Unit::Task(t) => format!("task {}", t.id),
        Unit::Document(p) => p.to_string(),
    };
    match &e.kind {
        EventKind::AttemptStarted {
            unit: u,
            attempt,
            resumes,
            ..
        } => match resumes {
            Some(s) => format!("started {} a{attempt} resumes {s}", unit(u)),
            None => format!("started {} a{attempt}", unit(u)),
        },
        EventKind::AttemptFinished {
            unit: u,
            attempt,
            run,
            will_retry,
            ..
        } => format!(
            "finished {} a{attempt} {}{}",
            unit(u),
            run.outcome,
            if *will_retry { " retry" } else { "" }
        ),
        EventKind::AttemptNotStarted {
            unit: u, refused, ..
        } => format!("not started {} {refused:?}", unit(u)),
        EventKind::Stopping { reason, .. } => format!("stopping {reason}"),
        EventKind::Note { message } => format!("note {message}"),
        EventKind::Repaired { task, repair, .. } => format!("repaired {task} {repair}"),
        EventKind::TickedByHand { task, check, .. } => format!("by hand {task} {check:?}"),
        EventKind::ProcessesEnded { leftovers, of, .. } => {
            format!("ended {} of {of}", leftovers.len())
        }
        EventKind::TasksPlanned { leaves, completed } => {
            format!("planned {}/{}", completed.len(), leaves.len())
        }
        EventKind::TasksBlocked { blocked } => format!(
            "blocked {}",
            blocked
                .iter()
                .map(|b| format!("{}<{}", b.id, b.because))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => format!("{other:?}"),
    }
}

fn task_status(state: &UnifiedState, id: &str) -> TaskStatus {
    state.specifications[SPEC].tasks[id].status.clone()
}

const ONE: &str = "- [ ] 1. Only task\n";

#[test]
fn success_at_the_first_attempt_completes_and_ticks_the_task() {
    let seen = attempt_task(Scenario::new(ONE, vec![costs(Outcome::Succeeded, 0.25)]));
    assert_eq!(seen.result.outcome, Outcome::Succeeded);
    assert_eq!(seen.calls, ["agent"]);
    assert_eq!(
        seen.events,
        ["started task 1 a1", "finished task 1 a1 succeeded"]
    );
    let task = &seen.state.specifications[SPEC].tasks["1"];
    assert_eq!(task.status, TaskStatus::Completed);
    assert_eq!(task.attempts, 1);
    assert_eq!(task.cost_usd, Some(0.25));
    assert_eq!(seen.tasks_md, "- [x] 1. Only task\n");
    assert_eq!(seen.stop, None);
}

#[test]
fn a_retryable_outcome_is_retried_up_to_the_limit() {
    let timed_out = || ends(Outcome::TimedOut { escalated: false });
    let seen = attempt_task(Scenario::new(
        ONE,
        vec![timed_out(), timed_out(), timed_out()],
    ));
    assert_eq!(seen.result.outcome, Outcome::TimedOut { escalated: false });
    assert_eq!(seen.calls, ["agent", "agent", "agent"]);
    assert_eq!(
        seen.events,
        [
            "started task 1 a1",
            "finished task 1 a1 timed_out retry",
            "started task 1 a2",
            "finished task 1 a2 timed_out retry",
            "started task 1 a3",
            "finished task 1 a3 timed_out",
        ]
    );
    assert_eq!(task_status(&seen.state, "1"), TaskStatus::Failed);
    assert_eq!(seen.state.specifications[SPEC].tasks["1"].attempts, 3);
    assert_eq!(seen.tasks_md, ONE, "a failed task is not ticked");
}

#[test]
fn every_retryable_outcome_gets_another_attempt_that_can_succeed() {
    for outcome in [
        Outcome::TimedOut { escalated: true },
        Outcome::Stalled { escalated: false },
        Outcome::Crashed { signal: 11 },
        Outcome::NoResult { exit_code: 1 },
        Outcome::Truncated { bytes: 10 },
        Outcome::AgentError {
            cause: ErrorCause::Reported,
            exit_code: 1,
        },
    ] {
        let seen = attempt_task(Scenario::new(
            ONE,
            vec![ends(outcome.clone()), ends(Outcome::Succeeded)],
        ));
        assert_eq!(seen.result.outcome, Outcome::Succeeded, "{outcome}");
        assert_eq!(seen.calls, ["agent", "agent"], "{outcome}");
        assert_eq!(task_status(&seen.state, "1"), TaskStatus::Completed);
    }
}

#[test]
fn a_non_retryable_outcome_is_not_retried() {
    for outcome in [
        Outcome::MaxTurns { turns: Some(30) },
        Outcome::PermissionDenied {
            tools: vec!["Write".into()],
        },
        Outcome::AgentError {
            cause: ErrorCause::Login,
            exit_code: 1,
        },
        Outcome::AgentError {
            cause: ErrorCause::NotStarted,
            exit_code: 127,
        },
        Outcome::MergeConflict {
            paths: vec!["a.rs".into()],
        },
    ] {
        let seen = attempt_task(Scenario::new(ONE, vec![ends(outcome.clone())]));
        assert_eq!(seen.result.outcome, outcome);
        assert_eq!(seen.calls, ["agent"], "{outcome} was retried");
        assert_eq!(
            task_status(&seen.state, "1"),
            TaskStatus::Failed,
            "{outcome}"
        );
        assert_eq!(seen.stop, None, "{outcome} stopped other work");
    }
}

#[test]
fn a_usage_limit_pauses_new_work_and_leaves_the_task_pending() {
    let mut limited = AgentRun::from_outcome(Outcome::UsageLimited, "usage limit reached");
    limited.resets_at = Some(crate::state::ResetAt::parse("2030-01-01T00:00:00+00:00"));
    let seen = attempt_task(Scenario::new(ONE, vec![Step::Ends(Box::new(limited))]));
    assert_eq!(seen.calls, ["agent"]);
    assert_eq!(
        seen.stop,
        Some(StopReason::UsageLimit {
            evidence: "usage limit reached".into(),
            resets_at: Some(crate::state::ResetAt::parse("2030-01-01T00:00:00+00:00")),
        })
    );
    assert_eq!(
        seen.events.last().map(String::as_str),
        Some("stopping usage limit reached")
    );
    assert_eq!(task_status(&seen.state, "1"), TaskStatus::Pending);
}

#[test]
fn a_failing_verify_fails_the_attempt_and_is_retried() {
    let md = "- [ ] 1. Verified\n  - _Verify: `cargo test --quiet`_\n";
    let mut s = Scenario::new(md, vec![ends(Outcome::Succeeded), ends(Outcome::Succeeded)]);
    s.options.attempts = 2;
    s.verify_exit = 1;
    let seen = attempt_task(s);
    assert_eq!(
        seen.result.outcome,
        Outcome::VerifyFailed { exit_code: Some(1) }
    );
    assert!(
        seen.result.evidence.contains("cargo test --quiet"),
        "{}",
        seen.result.evidence
    );
    assert_eq!(
        seen.calls,
        [
            "agent",
            "verify cargo test --quiet",
            "agent",
            "verify cargo test --quiet"
        ]
    );
    assert_eq!(task_status(&seen.state, "1"), TaskStatus::Failed);
    assert_eq!(seen.tasks_md, md);
}

#[test]
fn a_passing_verify_completes_the_task() {
    let md = "- [ ] 1. Verified\n  - _Verify: `true`_\n";
    let seen = attempt_task(Scenario::new(md, vec![ends(Outcome::Succeeded)]));
    assert_eq!(seen.calls, ["agent", "verify true"]);
    assert_eq!(task_status(&seen.state, "1"), TaskStatus::Completed);
}

#[test]
fn a_signal_before_the_attempt_starts_nothing() {
    let mut s = Scenario::new(ONE, vec![ends(Outcome::Succeeded)]);
    s.signal_before = Some(2);
    let seen = attempt_task(s);
    assert_eq!(
        seen.result.outcome,
        Outcome::KilledByUser { signal: Some(2) }
    );
    assert!(seen.calls.is_empty());
    assert!(seen.events.is_empty(), "{:?}", seen.events);
    assert_eq!(seen.stop, Some(StopReason::Signal { signal: 2 }));
    assert_eq!(seen.script_left, 1);
}

#[test]
fn a_signal_after_the_attempt_is_recorded_started_spawns_nothing() {
    // The window between the admission's last look and the job's spawn: the attempt's
    // start is recorded (the state written, perhaps after a wait for its lock), then the
    // signal comes. The agent is never spawned.
    for sig in [2, 15] {
        let mut s = Scenario::new(ONE, vec![ends(Outcome::Succeeded)]);
        s.signal_at_event = Some(("started task 1", sig));
        let seen = attempt_task(s);
        assert_eq!(
            seen.result.outcome,
            Outcome::KilledByUser { signal: Some(sig) }
        );
        assert!(
            seen.result.evidence.contains("not started"),
            "{}",
            seen.result.evidence
        );
        assert!(seen.calls.is_empty(), "spawned: {:?}", seen.calls);
        assert_eq!(seen.script_left, 1);
        assert_eq!(
            seen.events,
            ["started task 1 a1", "finished task 1 a1 killed_by_user"]
        );
        assert_eq!(task_status(&seen.state, "1"), TaskStatus::Pending);
    }
}

#[test]
fn a_signal_during_the_attempt_ends_it_without_retry() {
    let seen = attempt_task(Scenario::new(
        ONE,
        vec![Step::Signal(15), ends(Outcome::Succeeded)],
    ));
    assert_eq!(
        seen.result.outcome,
        Outcome::KilledByUser { signal: Some(15) }
    );
    assert_eq!(seen.calls, ["agent"]);
    assert_eq!(
        seen.events,
        ["started task 1 a1", "finished task 1 a1 killed_by_user"]
    );
    assert_eq!(seen.stop, Some(StopReason::Signal { signal: 15 }));
    assert_eq!(
        task_status(&seen.state, "1"),
        TaskStatus::Pending,
        "runs again on continue"
    );
}

#[test]
fn a_stop_for_another_reason_lets_the_attempt_run_but_not_retry() {
    let mut s = Scenario::new(ONE, vec![ends(Outcome::NoResult { exit_code: 1 })]);
    s.stop_before = Some(StopReason::FailFast { task: "9".into() });
    let seen = attempt_task(s);
    assert_eq!(seen.calls, ["agent"]);
    assert_eq!(seen.events[1], "finished task 1 a1 no_result");
    assert_eq!(task_status(&seen.state, "1"), TaskStatus::Failed);
}

#[test]
fn a_zero_cost_ceiling_refuses_before_the_agent_starts() {
    let mut s = Scenario::new(ONE, vec![ends(Outcome::Succeeded)]);
    s.options.max_cost_per_run = Some(0.0);
    let seen = attempt_task(s);
    assert!(matches!(
        seen.result.outcome,
        Outcome::BudgetExceeded { ref limit, .. } if limit == "per_run"
    ));
    assert!(seen.calls.is_empty());
    let reason = seen.stop.unwrap();
    assert!(
        matches!(reason, StopReason::CostCeiling { .. }),
        "{reason:?}"
    );
    assert_eq!(seen.result.evidence, reason.to_string());
    assert_eq!(
        seen.events,
        [
            format!("stopping {reason}"),
            "not started task 1 CostCeiling".to_owned()
        ]
    );
    assert_eq!(task_status(&seen.state, "1"), TaskStatus::Pending);
    assert_eq!(seen.state.errors[0].component, "budget");
}

#[test]
fn the_cost_ceiling_refuses_a_retry_that_would_cross_it() {
    let mut s = Scenario::new(
        ONE,
        vec![
            costs(Outcome::NoResult { exit_code: 1 }, 0.4),
            ends(Outcome::Succeeded),
        ],
    );
    s.options.max_cost_per_task = Some(0.5);
    let seen = attempt_task(s);
    assert!(matches!(
        seen.result.outcome,
        Outcome::BudgetExceeded { ref limit, .. } if limit == "per_task"
    ));
    assert_eq!(seen.calls, ["agent"], "the second run would cost 0.8 > 0.5");
    assert_eq!(
        seen.state.specifications[SPEC].tasks["1"].cost_usd,
        Some(0.4)
    );
    assert!(matches!(seen.stop, Some(StopReason::CostCeiling { .. })));
}

#[test]
fn a_document_attempt_has_no_task_in_the_state() {
    let seen = scenario(
        Scenario::new(ONE, vec![costs(Outcome::Succeeded, 0.1)]),
        |run, _| {
            // Validation writes no document, so the fake agent need not write one.
            let unit = Unit::Document(crate::agent::Phase::Validation);
            attempts(run, unit, &Place::project(run)).unwrap()
        },
    );
    assert_eq!(seen.result.outcome, Outcome::Succeeded);
    assert_eq!(
        seen.events,
        ["started validation a1", "finished validation a1 succeeded"]
    );
    let spec = &seen.state.specifications[SPEC];
    assert!(spec.tasks.is_empty());
    assert_eq!(spec.cost_usd, 0.1);
    assert_eq!(seen.tasks_md, ONE, "a document run ticks nothing");
}

const GRAPH: &str = "- [ ] 1. Fails\n- [ ] 2. Independent\n- [ ] 3. After one\n  - _Depends: 1_\n- [ ] 4. After three\n  - _Depends: 3_\n";

#[test]
fn fail_fast_starts_nothing_after_a_final_failure_and_blocks_dependents() {
    let mut s = Scenario::new(GRAPH, vec![ends(Outcome::NoResult { exit_code: 1 })]);
    s.options.attempts = 1;
    s.options.fail_fast = true;
    let seen = scenario(s, |run, tasks| run_tasks(run, tasks).unwrap());
    assert_eq!(seen.calls, ["agent"], "task 2 started after the failure");
    assert_eq!(seen.stop, Some(StopReason::FailFast { task: "1".into() }));
    assert_eq!(seen.result.failed, ["1"]);
    assert_eq!(seen.result.blocked, ["3", "4"]);
    assert_eq!(
        seen.events,
        [
            "planned 0/4",
            "started task 1 a1",
            "finished task 1 a1 no_result",
            "stopping --fail-fast: task 1 failed",
            "blocked 3<1,4<3",
        ]
    );
    assert_eq!(task_status(&seen.state, "2"), TaskStatus::Pending);
    assert_eq!(task_status(&seen.state, "4"), TaskStatus::Blocked);
}

#[test]
fn without_fail_fast_independent_tasks_go_on_and_done_tasks_are_not_rerun() {
    let md = "- [x] 0. Done before\n- [ ] 1. Fails\n- [ ] 2. Independent\n- [ ] 3. After one\n  - _Depends: 1_\n";
    let mut s = Scenario::new(
        md,
        vec![
            ends(Outcome::NoResult { exit_code: 1 }),
            ends(Outcome::Succeeded),
        ],
    );
    s.options.attempts = 1;
    let seen = scenario(s, |run, tasks| run_tasks(run, tasks).unwrap());
    assert_eq!(seen.calls, ["agent", "agent"]);
    assert_eq!((seen.result.completed, seen.result.total), (2, 4));
    assert_eq!(seen.result.blocked, ["3"]);
    assert_eq!(seen.stop, None);
    assert_eq!(task_status(&seen.state, "0"), TaskStatus::Completed);
    assert_eq!(task_status(&seen.state, "2"), TaskStatus::Completed);
    assert!(seen.tasks_md.contains("- [x] 2. Independent"));
}

#[test]
fn a_pause_stops_new_tasks_without_failing_or_blocking_anything() {
    let mut s = Scenario::new(GRAPH, vec![ends(Outcome::UsageLimited)]);
    s.options.attempts = 1;
    let seen = scenario(s, |run, tasks| run_tasks(run, tasks).unwrap());
    assert_eq!(seen.calls, ["agent"]);
    assert!(seen.result.failed.is_empty());
    assert!(seen.result.blocked.is_empty());
    assert!(matches!(seen.stop, Some(StopReason::UsageLimit { .. })));
    assert_eq!(task_status(&seen.state, "1"), TaskStatus::Pending);
}

#[test]
fn a_retry_after_a_stopped_run_continues_its_session() {
    for outcome in [
        Outcome::TimedOut { escalated: false },
        Outcome::Stalled { escalated: true },
    ] {
        let seen = attempt_task(Scenario::new(
            ONE,
            vec![
                in_session(outcome.clone(), "s-1", 0.25),
                in_session(Outcome::Succeeded, "s-1", 0.5),
            ],
        ));
        assert_eq!(seen.result.outcome, Outcome::Succeeded, "{outcome}");
        assert_eq!(seen.calls, ["agent", "agent --resume s-1"], "{outcome}");
        assert!(
            seen.prompts[1].starts_with(crate::agent::prompt::RESUME_HEADER),
            "{}",
            seen.prompts[1]
        );
        assert!(
            seen.prompts[1].contains(&format!("{outcome}: scripted")),
            "the resume prompt says why: {}",
            seen.prompts[1]
        );
        let task = &seen.state.specifications[SPEC].tasks["1"];
        assert_eq!(task.session_id.as_deref(), Some("s-1"));
        assert_eq!(task.cost_usd, Some(0.75), "both runs' costs add up");
        assert_eq!(seen.state.specifications[SPEC].cost_usd, 0.75);
        let ledger: f64 = seen
            .state
            .cost_ledger
            .as_ref()
            .unwrap()
            .days
            .values()
            .filter_map(serde_json::Value::as_f64)
            .sum();
        assert_eq!(ledger, 0.75);
    }
}

#[test]
fn a_retry_after_a_run_that_was_wrong_starts_fresh() {
    let seen = attempt_task(Scenario::new(
        ONE,
        vec![
            in_session(Outcome::NoResult { exit_code: 1 }, "s-1", 0.0),
            in_session(Outcome::Succeeded, "s-2", 0.0),
        ],
    ));
    assert_eq!(seen.calls, ["agent", "agent"]);
    assert!(!seen.prompts[1].starts_with(crate::agent::prompt::RESUME_HEADER));
    assert_eq!(
        seen.state.specifications[SPEC].tasks["1"]
            .session_id
            .as_deref(),
        Some("s-2")
    );
}

#[test]
fn fresh_never_resumes() {
    let mut s = Scenario::new(
        ONE,
        vec![
            in_session(Outcome::TimedOut { escalated: false }, "s-1", 0.0),
            in_session(Outcome::Succeeded, "s-2", 0.0),
        ],
    );
    s.options.fresh = true;
    s.earlier = Some(("usage_limited", "s-0"));
    let seen = attempt_task(s);
    assert_eq!(seen.calls, ["agent", "agent"]);
    assert!(
        seen.events.iter().all(|e| !e.contains("resum")),
        "{:?}",
        seen.events
    );
}

#[test]
fn continue_resumes_the_session_every_stopped_outcome_left() {
    for outcome in [
        "usage_limited",
        "stalled",
        "timed_out",
        "max_turns",
        "killed_by_user",
    ] {
        let mut s = Scenario::new(ONE, vec![in_session(Outcome::Succeeded, "s-0", 0.5)]);
        s.earlier = Some((outcome, "s-0"));
        let seen = attempt_task(s);
        assert_eq!(seen.calls, ["agent --resume s-0"], "{outcome}");
        assert!(
            seen.prompts[0].contains(&format!("{outcome}: earlier run stopped")),
            "{outcome}: {}",
            seen.prompts[0]
        );
        assert_eq!(seen.events[0], "started task 1 a1 resumes s-0", "{outcome}");
        let task = &seen.state.specifications[SPEC].tasks["1"];
        assert_eq!(task.status, TaskStatus::Completed);
        assert_eq!(
            task.cost_usd,
            Some(1.5),
            "the earlier run's 1.0 and this 0.5"
        );
    }
    // A run that was wrong, not stopped, leaves nothing to continue.
    let mut s = Scenario::new(ONE, vec![ends(Outcome::Succeeded)]);
    s.earlier = Some(("verify_failed", "s-0"));
    assert_eq!(attempt_task(s).calls, ["agent"]);
}

#[test]
fn a_gone_session_runs_fresh_and_says_so() {
    let mut s = Scenario::new(
        ONE,
        vec![
            in_session(
                Outcome::AgentError {
                    cause: ErrorCause::NoSession,
                    exit_code: 1,
                },
                "s-0",
                0.0,
            ),
            in_session(Outcome::Succeeded, "s-9", 0.25),
        ],
    );
    s.earlier = Some(("killed_by_user", "s-0"));
    let seen = attempt_task(s);
    assert_eq!(seen.calls, ["agent --resume s-0", "agent"]);
    assert_eq!(seen.result.outcome, Outcome::Succeeded);
    // Two run folders, each with its own prompt and output: the fresh run did not
    // overwrite the failed resume's files.
    assert_eq!(seen.runs.len(), 2, "{:?}", seen.runs);
    for (id, files) in &seen.runs {
        assert!(id.contains("-task-1-a1-"), "{id}");
        assert_eq!(files, &["prompt.md", "stdout.json"], "{id}");
    }
    let (failed, fresh) = (&seen.runs[0].0, &seen.runs[1].0);
    let gone = format!("session s-0 is gone (run {failed}); ran fresh in run {fresh}");
    assert!(
        seen.result.evidence.starts_with(&gone),
        "{}",
        seen.result.evidence
    );
    assert!(
        seen.events
            .iter()
            .any(|e| e == &format!("note task 1: {gone}")),
        "{:?}",
        seen.events
    );
    let task = &seen.state.specifications[SPEC].tasks["1"];
    assert_eq!(task.session_id.as_deref(), Some("s-9"));
    assert_eq!(task.attempts, 1, "one attempt, two runs");
    assert_eq!(
        task.run_id.as_deref(),
        Some(fresh.as_str()),
        "the run it ended in"
    );
}

#[test]
fn a_session_id_that_is_not_one_is_ignored_and_the_retry_runs_fresh() {
    // Reported by the run (a hostile or broken stream): not recorded, not resumed.
    let seen = attempt_task(Scenario::new(
        ONE,
        vec![
            in_session(
                Outcome::TimedOut { escalated: false },
                "--dangerously-skip-permissions",
                0.0,
            ),
            in_session(Outcome::Succeeded, "s-2", 0.0),
        ],
    ));
    assert_eq!(seen.result.outcome, Outcome::Succeeded);
    assert_eq!(seen.calls, ["agent", "agent"], "no --resume");
    assert!(
        seen.events.iter().any(|e| e.starts_with(
            "note task 1: ignored session id `--dangerously-skip-permissions` the agent reported"
        ) && e.ends_with("a retry of this run runs fresh")),
        "{:?}",
        seen.events
    );
    assert_eq!(
        seen.state.specifications[SPEC].tasks["1"]
            .session_id
            .as_deref(),
        Some("s-2")
    );
    let only_bad = attempt_task(Scenario::new(
        ONE,
        vec![in_session(
            Outcome::NoResult { exit_code: 1 },
            "--dangerously-skip-permissions",
            0.0,
        )],
    ));
    assert_eq!(
        only_bad.state.specifications[SPEC].tasks["1"].session_id,
        None
    );

    // Recorded earlier (an old state, a hand edit): continue runs fresh, saying so.
    let mut s = Scenario::new(ONE, vec![in_session(Outcome::Succeeded, "s-1", 0.0)]);
    s.earlier = Some(("usage_limited", "--dangerously-skip-permissions"));
    let seen = attempt_task(s);
    assert_eq!(seen.result.outcome, Outcome::Succeeded, "not agent_error");
    assert_eq!(seen.calls, ["agent"]);
    assert!(
        seen.events.iter().any(|e| e
            == "note task 1: the recorded session id `--dangerously-skip-permissions` is not a session id (Claude Code's are UUIDs); running fresh"),
        "{:?}",
        seen.events
    );
    assert!(!seen.prompts[0].starts_with(crate::agent::prompt::RESUME_HEADER));
}

#[test]
fn a_task_a_killed_qw_left_in_progress_resumes_the_session_of_its_cut_off_run() {
    let cut = "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s-7\"}\n{\"type\":\"assistant\",\"message\":{\"id\":\"m1\",\"content\":[{\"type\":\"text\",\"text\":\"working\"}]}}\n";
    let mut s = Scenario::new(ONE, vec![in_session(Outcome::Succeeded, "s-7", 0.0)]);
    s.cut_off = Some(cut);
    let seen = attempt_task(s);
    assert_eq!(seen.calls, ["agent --resume s-7"]);
    assert_eq!(seen.events[0], "started task 1 a1 resumes s-7");
    assert!(
        seen.prompts[0].starts_with(crate::agent::prompt::RESUME_HEADER)
            && seen.prompts[0].contains(&format!("qw was killed while you worked (run {CUT_RUN})")),
        "{}",
        seen.prompts[0]
    );
    assert_eq!(task_status(&seen.state, "1"), TaskStatus::Completed);

    // --fresh: a new conversation.
    let mut s = Scenario::new(ONE, vec![ends(Outcome::Succeeded)]);
    s.cut_off = Some(cut);
    s.options.fresh = true;
    assert_eq!(attempt_task(s).calls, ["agent"]);

    // A run that finished (its result is there) was not cut off: the outcome decides,
    // and there is none.
    let finished =
        format!("{cut}{{\"type\":\"result\",\"is_error\":true,\"session_id\":\"s-7\"}}\n");
    let mut s = Scenario::new(ONE, vec![ends(Outcome::Succeeded)]);
    s.cut_off = Some(Box::leak(finished.into_boxed_str()));
    assert_eq!(attempt_task(s).calls, ["agent"]);

    // An outcome on record belongs to the last run: it decides (a run that was wrong
    // is not continued, whatever its stream holds).
    let mut s = Scenario::new(ONE, vec![ends(Outcome::Succeeded)]);
    s.cut_off = Some(cut);
    s.earlier = Some(("no_result", "s-7"));
    assert_eq!(attempt_task(s).calls, ["agent"]);

    // A cut-off stream naming something that is not a session id: fresh, said so.
    let mut s = Scenario::new(ONE, vec![ends(Outcome::Succeeded)]);
    s.cut_off = Some(
        "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"--dangerously-skip-permissions\"}\n",
    );
    let seen = attempt_task(s);
    assert_eq!(seen.calls, ["agent"]);
    assert!(
        seen.events
            .iter()
            .any(|e| e.contains("is not a session id")),
        "{:?}",
        seen.events
    );
}
