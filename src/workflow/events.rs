//! The vocabulary of a running workflow: why work stops ([`StopReason`]) and how a run
//! ended ([`Ending`], [`Summary`]).
//!
//! Owns: these types and their wording. Must not: do anything with them — the runner
//! produces them, the reporters read them.

use std::path::PathBuf;

use serde::Serialize;

use crate::agent::outcome::{AgentRun, Outcome};

/// Why no new work may start. Ordered by [`StopReason::severity`], as nextest's
/// `CancelReason`: when several apply, the most severe one decides how the run ends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StopReason {
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
    },
    /// The agent hit a usage limit (resumable, after the reset if one is known).
    UsageLimit {
        /// What the agent said.
        evidence: String,
        /// When the limit resets, if known (RFC 3339 when qw could compute it).
        resets_at: Option<String>,
    },
    /// A signal (SIGINT, SIGTERM, SIGHUP) reached qw.
    Signal {
        /// Its number.
        signal: i32,
    },
}

/// How severe a [`StopReason`] is; a more severe reason replaces a less severe one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Running work finishes; the run fails.
    FailFast,
    /// Running work finishes; the run pauses (exit 3, resumable).
    Pause,
    /// Running work is stopped; the run is interrupted.
    Signal,
}

impl StopReason {
    /// How severe it is. Reasons of equal severity do not replace each other (the first
    /// pause is the one reported).
    pub fn severity(&self) -> Severity {
        match self {
            StopReason::FailFast { .. } => Severity::FailFast,
            StopReason::CostCeiling { .. } | StopReason::UsageLimit { .. } => Severity::Pause,
            StopReason::Signal { .. } => Severity::Signal,
        }
    }

    /// The pause an agent run's outcome asks for (usage limit, cost ceiling), if any.
    pub fn for_run(run: &AgentRun) -> Option<StopReason> {
        match &run.outcome {
            Outcome::UsageLimited => Some(StopReason::UsageLimit {
                evidence: run.evidence.clone(),
                resets_at: run.resets_at.clone(),
            }),
            Outcome::BudgetExceeded {
                limit,
                limit_usd,
                spent_usd,
            } => Some(StopReason::CostCeiling {
                limit: limit.clone(),
                limit_usd: *limit_usd,
                spent_usd: *spent_usd,
            }),
            _ => None,
        }
    }

    /// When a usage limit resets, if this is one and the time is known.
    pub fn resets_at(&self) -> Option<&str> {
        match self {
            StopReason::UsageLimit { resets_at, .. } => resets_at.as_deref(),
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
            } => write!(
                f,
                "the {limit} cost ceiling of ${limit_usd:.2} would be crossed (${spent_usd:.2} spent); raise it and run `qw workflow-continue`"
            ),
            StopReason::UsageLimit { evidence, .. } => f.write_str(evidence),
            StopReason::Signal { signal } => write!(f, "signal {signal}"),
        }
    }
}

/// How a workflow run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// Every task completed and validation passed.
    Completed,
    /// Some work failed; the report says which and why.
    Failed,
    /// A usage limit or a cost ceiling stopped new work; `workflow-continue` resumes.
    Paused(StopReason),
    /// A signal stopped the run; its number.
    Interrupted(i32),
}

impl Ending {
    /// The word used in events and reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            Ending::Completed => "completed",
            Ending::Failed => "failed",
            Ending::Paused(_) => "paused",
            Ending::Interrupted(_) => "interrupted",
        }
    }

    /// The ending decided by the most severe stop reason, else by whether all work was
    /// done.
    pub fn decide(stop: Option<StopReason>, all_done: bool) -> Ending {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn usage() -> StopReason {
        StopReason::UsageLimit {
            evidence: "limit".into(),
            resets_at: Some("2030-01-01T00:00:00+00:00".into()),
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
        run.resets_at = Some("soon".into());
        let reason = StopReason::for_run(&run).unwrap();
        assert_eq!(reason.resets_at(), Some("soon"));
        assert_eq!(reason.to_string(), "limit hit");
        let ceiling = AgentRun::from_outcome(
            Outcome::BudgetExceeded {
                limit: "per_run".into(),
                limit_usd: 1.0,
                spent_usd: 0.8,
            },
            "",
        );
        assert_eq!(
            StopReason::for_run(&ceiling).unwrap().to_string(),
            "the per_run cost ceiling of $1.00 would be crossed ($0.80 spent); raise it and run `qw workflow-continue`"
        );
        let failed = AgentRun::from_outcome(Outcome::NoResult { exit_code: 1 }, "");
        assert_eq!(StopReason::for_run(&failed), None);
    }
}
