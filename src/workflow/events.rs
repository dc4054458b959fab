//! The vocabulary of a running workflow: what happened ([`Event`], [`EventKind`]), to
//! which unit of work ([`Unit`]), why work stops ([`StopReason`]) and how a run ended
//! ([`Ending`], [`Summary`]).
//!
//! Owns: these types and their wording. Must not: do anything with them — the runner
//! emits events, the reporters (the recorder, the progress display, …) read them, and
//! no reader's needs shape the runner beyond what an event carries.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, SubsecRound};
use serde::Serialize;
use serde_json::{Map, Value};

use super::Options;
use crate::agent::Phase as AgentPhase;
use crate::agent::outcome::{AgentRun, Outcome};
use crate::spec::tasks::Task;
use crate::state::Phase;

/// One thing that happened in a workflow run.
#[derive(Debug, Clone)]
pub(crate) struct Event<'a> {
    /// When it happened (local time, to the microsecond, like the state's timestamps).
    pub at: DateTime<FixedOffset>,
    /// What happened.
    pub kind: EventKind<'a>,
}

impl<'a> Event<'a> {
    /// `kind`, happening now.
    pub(crate) fn now(kind: EventKind<'a>) -> Event<'a> {
        Event {
            at: chrono::Local::now().trunc_subsecs(6).fixed_offset(),
            kind,
        }
    }
}

/// What happened. In the order a run produces them: `RunStarted`, `SpecReady`, per
/// phase `PhaseStarted` … `PhaseFinished` (skipped phases only finish), in between per
/// unit `AttemptStarted` → `AttemptFinished` (repeated while `will_retry`) or
/// `AttemptNotStarted`, for the implementation `TasksPlanned` first and `TasksBlocked`
/// last, and `Finished` once the report is written. `Stopping`, `AdmissionWaiting` and
/// `Note` may come at any time. Task threads emit concurrently, so the events of two
/// tasks interleave; the events of one unit are in order.
#[derive(Debug, Clone)]
pub(crate) enum EventKind<'a> {
    /// A workflow run starts (the workflow lock is held, the state backed up).
    RunStarted {
        /// The spec's description.
        description: &'a str,
        /// The options of this run (saved so `workflow-continue` resumes alike).
        options: &'a Options,
        /// A `system_stats` snapshot of the machine.
        system_stats: Option<Map<String, Value>>,
    },
    /// The spec exists; `steering` tells whether steering documents were found.
    SpecReady {
        /// `.claude/steering/` holds product, tech or structure documents.
        steering: bool,
    },
    /// A phase starts its work.
    PhaseStarted {
        /// The phase.
        phase: Phase,
    },
    /// A phase ended (or was skipped: its work was done before).
    PhaseFinished {
        /// The phase.
        phase: Phase,
        /// How.
        result: PhaseResult<'a>,
        /// One line of detail (empty when there is nothing to add).
        detail: String,
    },
    /// The implementation phase knows its leaf tasks and which are already done.
    TasksPlanned {
        /// Every leaf of tasks.md, in file order.
        leaves: &'a [&'a Task],
        /// The ids completed before this run (ticked in the file or in the state).
        completed: &'a HashSet<String>,
    },
    /// The tasks.md the agent wrote does not parse: the task generation failed.
    TaskListInvalid {
        /// Why, naming the file.
        error: &'a str,
    },
    /// A unit waits for resource admission (at most every 30 s).
    AdmissionWaiting {
        /// The unit.
        unit: Unit<'a>,
        /// The limit that holds it back.
        why: String,
    },
    /// An agent run starts.
    AttemptStarted {
        /// The unit.
        unit: Unit<'a>,
        /// 1-based attempt.
        attempt: u32,
        /// `.claude/runs/<run-id>/`, where its prompt and output go.
        run_dir: &'a Path,
        /// A `system_stats` snapshot (dev mode `resource_monitoring`, tasks only).
        system_stats: Option<Map<String, Value>>,
        /// The agent session this run continues (`--resume`), None for a fresh one.
        resumes: Option<&'a str>,
    },
    /// An agent run (and the task's `_Verify:_`, and its merge) ended.
    AttemptFinished {
        /// The unit.
        unit: Unit<'a>,
        /// Which attempt.
        attempt: u32,
        /// What the run did, cost and why it ended so.
        run: &'a AgentRun,
        /// Its run folder.
        run_dir: &'a Path,
        /// Another attempt follows.
        will_retry: bool,
    },
    /// An attempt whose agent never ran.
    AttemptNotStarted {
        /// The unit.
        unit: Unit<'a>,
        /// Which attempt (0 when the task could not even be prepared).
        attempt: u32,
        /// What refused it.
        refused: Refused,
        /// The outcome recorded for it, with the reason as evidence.
        run: &'a AgentRun,
    },
    /// Leaves that wait on a failed task will not run.
    TasksBlocked {
        /// Each blocked leaf with the dependency that did not complete.
        blocked: &'a [Blocked],
    },
    /// New work stops. Running work finishes, unless `cancels_running`.
    Stopping {
        /// Why.
        reason: &'a StopReason,
        /// The running jobs are cancelled (a signal; under a batch scheduler also
        /// `--fail-fast` and a cost ceiling: see [`StopReason::cancels_submitted`]).
        cancels_running: bool,
    },
    /// Reconcile repaired a disagreement between the state and `tasks.md` (one event
    /// per repair; the state's `errors` holds one entry listing them).
    Repaired {
        /// The task concerned.
        task: &'a str,
        /// What was done: `ticked`, `unticked`, `renumbered`, ….
        repair: &'static str,
        /// The whole sentence, naming the file.
        message: &'a str,
    },
    /// A leaf ticked in `tasks.md` that no run of qw completed (ticked by hand), told once
    /// per task before [`EventKind::TasksPlanned`]: on a first run, and when its
    /// `_Verify:_` ran (once) to check the tick.
    TickedByHand {
        /// The task.
        task: &'a str,
        /// What its `_Verify:_` said, if it has one.
        check: HandCheck<'a>,
        /// The whole sentence, naming the file.
        message: &'a str,
    },
    /// The supervisor of an agent run or a `_Verify:_` ended processes the run left
    /// behind (or could not end them).
    ProcessesEnded {
        /// The unit.
        unit: Unit<'a>,
        /// The attempt's run folder.
        run_dir: &'a Path,
        /// `agent` or `verify`.
        of: &'static str,
        /// The processes ended, with their command lines.
        leftovers: &'a [crate::exec::Leftover],
        /// Processes still alive after SIGKILL was repeated (blocked in the kernel).
        unkillable: &'a [crate::exec::Leftover],
    },
    /// qw saved a task's checked work on its branch and is about to write the
    /// merge-pending record of it (`worktree/pending.rs`): recorded in the task's state
    /// entry first, which is what vouches for the record (the git directory is any
    /// agent's to write).
    MergePending {
        /// The task.
        task: &'a str,
        /// Its branch.
        branch: &'a str,
        /// The saved tip.
        tip: &'a str,
        /// The `_Verify:_` command the work passed.
        check: Option<&'a str>,
    },
    /// Anything else worth a line.
    Note {
        /// The message.
        message: String,
    },
    /// The run ended and its report is written.
    Finished {
        /// How it ended.
        summary: &'a Summary,
    },
}

/// A unit of agent work: what one attempt is about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unit<'a> {
    /// A phase of the spec: requirements, design, tasks (each writes its document) or
    /// validation.
    Document(AgentPhase),
    /// One leaf task of tasks.md (the implementation phase).
    Task(&'a Task),
}

impl<'a> Unit<'a> {
    /// The phase the agent is asked to do.
    pub(crate) fn agent_phase(&self) -> AgentPhase {
        match self {
            Unit::Document(p) => *p,
            Unit::Task(_) => AgentPhase::Implementation,
        }
    }

    /// The workflow phase it belongs to.
    pub(crate) fn phase(&self) -> Phase {
        state_phase(self.agent_phase())
    }

    /// The task, for a task unit.
    pub(crate) fn task(&self) -> Option<&'a Task> {
        match self {
            Unit::Task(t) => Some(t),
            Unit::Document(_) => None,
        }
    }

    /// The agent phase's name (`requirements`, …, `implementation`): run-folder labels,
    /// the `phase` of error records.
    pub(crate) fn label(&self) -> &'static str {
        self.agent_phase().as_str()
    }
}

/// The workflow phase of an agent phase.
pub(crate) fn state_phase(p: AgentPhase) -> Phase {
    match p {
        AgentPhase::Requirements => Phase::RequirementsGeneration,
        AgentPhase::Design => Phase::DesignCreation,
        AgentPhase::Tasks => Phase::TaskGeneration,
        AgentPhase::Implementation => Phase::Implementation,
        AgentPhase::Validation => Phase::Validation,
    }
}

/// How a phase ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PhaseResult<'a> {
    /// Its work was done before: the document exists, or the state records it complete.
    Skipped,
    /// Its document was written, every task completed, or validation passed.
    Succeeded,
    /// The implementation ended with tasks not completed.
    Incomplete,
    /// Its agent's last attempt ended with this (unsuccessful) outcome.
    Failed(&'a Outcome),
}

impl PhaseResult<'_> {
    /// `skipped`, `succeeded`, `incomplete` or the outcome's name.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            PhaseResult::Skipped => "skipped",
            PhaseResult::Succeeded => "succeeded",
            PhaseResult::Incomplete => "incomplete",
            PhaseResult::Failed(o) => o.as_str(),
        }
    }
}

/// What kept an attempt's agent from running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A cost ceiling would be crossed (the run pauses; the task stays pending).
    CostCeiling,
    /// Resource admission did not admit it in time (`not_admitted`: the task stays
    /// pending for `workflow-continue`), or a signal stopped the wait.
    Admission,
    /// The task's worktree could not be made (`workspace_error`: the task fails), or a
    /// signal stopped the wait for it (`killed_by_user`: the task stays pending).
    Worktree,
}

impl Refused {
    /// The `component` of the error record.
    pub(crate) fn component(self) -> &'static str {
        match self {
            Refused::CostCeiling => "budget",
            Refused::Admission => "admission",
            Refused::Worktree => "worktree",
        }
    }
}

/// A leaf that will not run because a task it depends on did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blocked {
    /// The blocked leaf.
    pub id: String,
    /// The dependency (failed, or itself blocked) it waits on.
    pub because: String,
}

/// Why no new work may start. Ordered by [`StopReason::severity`], as nextest's
/// `CancelReason`: when several apply, the most severe one decides how the run ends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum StopReason {
    /// `--fail-fast`: a task failed for good.
    FailFast {
        /// The task that failed.
        task: String,
    },
    /// A cost ceiling would be crossed (resumable after raising it).
    CostCeiling {
        /// Which ceiling (`per_task`, `per_run`, `daily`).
        limit: String,
        /// The ceiling in USD.
        limit_usd: f64,
        /// What was spent against it.
        spent_usd: f64,
        /// What the refused run (and the runs in flight) were expected to cost.
        expected_usd: f64,
    },
    /// The agent hit a usage limit (resumable, after the reset if one is known).
    UsageLimit {
        /// What the agent said.
        evidence: String,
        /// When the limit resets, if known (RFC 3339 when qw could compute it).
        resets_at: Option<crate::state::ResetAt>,
    },
    /// A signal (SIGINT, SIGTERM, SIGHUP) reached qw.
    Signal {
        /// Its number.
        signal: i32,
    },
}

/// How severe a [`StopReason`] is; a more severe reason replaces a less severe one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Severity {
    /// Running work finishes (is cancelled under a batch scheduler); the run fails.
    FailFast,
    /// Running work finishes (a cost ceiling cancels it under a batch scheduler); the
    /// run pauses (exit 3, resumable).
    Pause,
    /// Running work is stopped; the run is interrupted.
    Signal,
}

impl StopReason {
    /// How severe it is. Reasons of equal severity do not replace each other (the first
    /// pause is the one reported).
    pub(crate) fn severity(&self) -> Severity {
        match self {
            StopReason::FailFast { .. } => Severity::FailFast,
            StopReason::CostCeiling { .. } | StopReason::UsageLimit { .. } => Severity::Pause,
            StopReason::Signal { .. } => Severity::Signal,
        }
    }

    /// Whether work already handed to the executor is cancelled too, not only new work
    /// held back. A signal always. Under a batch scheduler (`scheduled`: jobs may still
    /// wait in its queue and hold a shared cluster's allocations) also `--fail-fast` and
    /// a cost ceiling, whose point is to spend no more; on this machine running work
    /// finishes, as the contract says. A usage limit never: the running agents meet it
    /// themselves, or finish.
    pub(crate) fn cancels_submitted(&self, scheduled: bool) -> bool {
        match self {
            StopReason::Signal { .. } => true,
            StopReason::FailFast { .. } | StopReason::CostCeiling { .. } => scheduled,
            StopReason::UsageLimit { .. } => false,
        }
    }

    /// The pause an agent run's outcome asks for (usage limit, cost ceiling), if any.
    pub(crate) fn for_run(run: &AgentRun) -> Option<StopReason> {
        match &run.outcome {
            Outcome::UsageLimited => Some(StopReason::UsageLimit {
                evidence: run.evidence.clone(),
                resets_at: run.resets_at.clone(),
            }),
            Outcome::BudgetExceeded {
                limit,
                limit_usd,
                spent_usd,
                expected_usd,
            } => Some(StopReason::CostCeiling {
                limit: limit.clone(),
                limit_usd: *limit_usd,
                spent_usd: *spent_usd,
                expected_usd: *expected_usd,
            }),
            _ => None,
        }
    }

    /// When a usage limit resets, if this is one and the time is known.
    pub(crate) fn resets_at(&self) -> Option<&crate::state::ResetAt> {
        match self {
            StopReason::UsageLimit { resets_at, .. } => resets_at.as_ref(),
            _ => None,
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::FailFast { task } => {
                write!(f, "--fail-fast: task {task} failed")
            }
            StopReason::CostCeiling {
                limit,
                limit_usd,
                spent_usd,
                expected_usd,
            } => {
                let name = ceiling_name(limit);
                if *limit_usd <= 0.0 {
                    write!(
                        f,
                        "the {name} cost ceiling is ${limit_usd:.2}: no run may start"
                    )
                } else {
                    // Name what the check added up (rev11b F1): "$0.00 spent … would be
                    // crossed" alone read false when the expected cost did the crossing.
                    write!(
                        f,
                        "expected ${expected_usd:.2} (largest run so far) + ${spent_usd:.2} spent would cross the {name} cost ceiling of ${limit_usd:.2}"
                    )
                }
            }
            StopReason::UsageLimit { evidence, .. } => f.write_str(evidence),
            StopReason::Signal { signal } => write!(f, "signal {signal}"),
        }
    }
}

/// A ceiling's name as the user's flag spells it (`per_task` → `per-task`).
pub(crate) fn ceiling_name(limit: &str) -> String {
    limit.replace('_', "-")
}

/// How a workflow run ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ending {
    /// Every task completed and validation passed.
    Completed,
    /// Some work failed; the report says which and why.
    Failed,
    /// A usage limit or a cost ceiling stopped new work; `workflow-continue` resumes.
    Paused(StopReason),
    /// A signal stopped the run; its number.
    Interrupted(i32),
    /// Nothing failed, but this many tasks were not admitted (the machine stayed busy
    /// past `acquire_timeout_s`); `workflow-continue` runs them. Exit 3, like a pause.
    NotAdmitted(usize),
}

impl Ending {
    /// The word used in events and reports.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Ending::Completed => "completed",
            Ending::Failed => "failed",
            Ending::Paused(_) => "paused",
            Ending::Interrupted(_) => "interrupted",
            Ending::NotAdmitted(_) => "incomplete",
        }
    }

    /// The ending decided by the most severe stop reason, else by whether all work was
    /// done.
    pub(crate) fn decide(stop: Option<StopReason>, all_done: bool) -> Ending {
        match stop {
            Some(StopReason::Signal { signal }) => Ending::Interrupted(signal),
            Some(reason) if reason.severity() == Severity::Pause => Ending::Paused(reason),
            _ if all_done => Ending::Completed,
            _ => Ending::Failed,
        }
    }
}

/// The result of a workflow run.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
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
    /// The agent that did the work.
    pub agent: super::AgentKind,
    /// Completed tasks whose success came with warnings (work the merge left out).
    pub with_warnings: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage() -> StopReason {
        StopReason::UsageLimit {
            evidence: "limit".into(),
            resets_at: Some(crate::state::ResetAt::parse("2030-01-01T00:00:00+00:00")),
        }
    }

    #[test]
    fn the_most_severe_reason_decides_the_ending() {
        let fail_fast = StopReason::FailFast { task: "1".into() };
        assert!(fail_fast.severity() < usage().severity());
        assert!(usage().severity() < StopReason::Signal { signal: 2 }.severity());
        assert_eq!(Ending::decide(Some(fail_fast), false), Ending::Failed);
        assert_eq!(Ending::decide(None, true), Ending::Completed);
        assert_eq!(Ending::decide(None, false), Ending::Failed);
        assert_eq!(
            Ending::decide(Some(usage()), false),
            Ending::Paused(usage())
        );
        assert_eq!(
            Ending::decide(Some(StopReason::Signal { signal: 15 }), true),
            Ending::Interrupted(15)
        );
    }

    #[test]
    fn pausing_outcomes_become_stop_reasons_with_their_wording() {
        let mut run = AgentRun::from_outcome(Outcome::UsageLimited, "limit hit");
        run.resets_at = Some(crate::state::ResetAt::parse("soon"));
        let reason = StopReason::for_run(&run).unwrap();
        assert_eq!(
            reason.resets_at(),
            Some(&crate::state::ResetAt::Text("soon".into()))
        );
        assert_eq!(reason.to_string(), "limit hit");
        let ceiling = AgentRun::from_outcome(
            Outcome::BudgetExceeded {
                limit: "per_run".into(),
                limit_usd: 1.0,
                spent_usd: 0.8,
                expected_usd: 0.4,
            },
            "",
        );
        assert_eq!(
            StopReason::for_run(&ceiling).unwrap().to_string(),
            "expected $0.40 (largest run so far) + $0.80 spent would cross the per-run cost ceiling of $1.00"
        );
        let failed = AgentRun::from_outcome(Outcome::NoResult { exit_code: 1 }, "");
        assert_eq!(StopReason::for_run(&failed), None);
    }
}

/// What a hand-ticked task's `_Verify:_` said when qw ran it once to check the tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum HandCheck<'a> {
    /// The task has no `_Verify:_`: the tick is taken as the user's word.
    NoCheck,
    /// The check passed: the task stays completed, verified by qw.
    Passed {
        /// The `_Verify:_` command.
        command: &'a str,
        /// The run folder holding its `verify.log`.
        run_dir: &'a Path,
    },
    /// The check failed: the task is unticked and runs as a normal task.
    Failed {
        /// The `_Verify:_` command.
        command: &'a str,
        /// The run folder holding its `verify.log`.
        run_dir: &'a Path,
        /// One line: why it failed.
        evidence: &'a str,
    },
}
