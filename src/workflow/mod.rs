//! The spec-driven workflow: phases from requirements to report, and the task graph.
//!
//! Owns: the order of phases, running tasks from `tasks.md` through agents (each under
//! admission, supervised by an [`crate::exec::Executor`], with retries and cost
//! ceilings), recording every step in the unified state, and the completion report.
//! Must not: parse command-line flags (that is `cli::workflow`) or supervise processes
//! itself (that is `exec`).
//!
//! Shape (nextest's `runner/` and `reporter/`): `runner/` does the work and emits
//! [`events::Event`]s; `reporter/` holds their readers — the recorder (the only writer
//! of the state and of ticks in tasks.md) and the progress display. `events.rs` is the
//! vocabulary both sides share; neither side imports the other's internals.

use std::time::Duration;

use serde::{Deserialize, Serialize};

mod budget;
mod checks;
mod dev;
mod error;
pub(crate) mod events;
mod isolation;
mod reconcile;
mod report;
mod reporter;
mod runner;
pub(crate) mod status;

pub(crate) use checks::forget as forget_checks_record;
pub(crate) use error::WorkflowError;
pub(crate) use events::Ending;
pub(crate) use isolation::IsolationError;
pub(crate) use reporter::progress;
pub(crate) use runner::Workflow;

/// Which agent does the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// `claude -p PROMPT --output-format json`.
    Claude,
    /// A user argv template given with `--agent-cmd`.
    Command,
    /// The built-in offline agent (templates; verifies, never claims work it did not do).
    Offline,
}

impl AgentKind {
    /// The name used in the state and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::Claude => "claude",
            AgentKind::Command => "command",
            AgentKind::Offline => "offline",
        }
    }
}

/// How a workflow runs. Saved in the spec's state so `workflow-continue` resumes with
/// the same options (flags given to `continue` override them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Options {
    /// The agent.
    pub agent: AgentKind,
    /// The argv template for [`AgentKind::Command`].
    #[serde(default)]
    pub agent_cmd: Option<String>,
    /// Extra arguments for `claude` (e.g. `--permission-mode acceptEdits`).
    #[serde(default)]
    pub claude_args: Vec<String>,
    /// Tasks at once.
    pub parallel: usize,
    /// Seconds one agent run (or verify command) may take.
    pub task_timeout_s: f64,
    /// Seconds between SIGTERM and SIGKILL.
    pub grace_s: f64,
    /// Seconds of silence and no CPU after which a run is `stalled` (None: off).
    #[serde(default)]
    pub stall_timeout_s: Option<f64>,
    /// Attempts per task (and per document phase).
    pub attempts: u32,
    /// Seconds between attempts.
    pub retry_delay_s: f64,
    /// Stop starting new tasks at the first final failure.
    #[serde(default)]
    pub fail_fast: bool,
    /// USD ceiling for one task (all its attempts).
    #[serde(default)]
    pub max_cost_per_task: Option<f64>,
    /// USD ceiling for this workflow run.
    #[serde(default)]
    pub max_cost_per_run: Option<f64>,
    /// On a usage limit, sleep until the reset and go on instead of pausing.
    #[serde(default)]
    pub wait_for_reset: bool,
    /// Use one git worktree per running task.
    #[serde(default)]
    pub isolate: Isolation,
    /// Run in a dirty git tree (after snapshotting it).
    #[serde(default)]
    pub allow_dirty: bool,
    /// Start every agent run as a new conversation: never continue an earlier Claude
    /// session (`--resume`). For this invocation only: never saved.
    #[serde(default, skip_serializing)]
    pub fresh: bool,
    /// Where jobs run (`--executor`, else `quantumwala.executor`), kept so
    /// `workflow-continue` uses the executor the workflow started with.
    #[serde(default)]
    pub executor: crate::exec::ExecutorKind,
    /// The `--slurm-arg`s given (they come after `quantumwala.slurm.args`, which is read
    /// afresh each run).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slurm_args: Vec<String>,
}

/// How parallel tasks are isolated from each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Worktrees when the project is a git repository and more than one task runs at once.
    #[default]
    Auto,
    /// One git worktree per running task.
    Worktree,
    /// Every task in the project's own tree.
    None,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            agent: AgentKind::Claude,
            agent_cmd: None,
            claude_args: Vec::new(),
            parallel: 4,
            task_timeout_s: 1800.0,
            grace_s: 5.0,
            stall_timeout_s: Some(600.0),
            attempts: 3,
            retry_delay_s: 5.0,
            fail_fast: false,
            max_cost_per_task: None,
            max_cost_per_run: None,
            wait_for_reset: false,
            isolate: Isolation::Auto,
            allow_dirty: false,
            fresh: false,
            executor: crate::exec::ExecutorKind::Local,
            slurm_args: Vec::new(),
        }
    }
}

impl Options {
    /// The options as a spec's state entry keeps them (`workflow_options`).
    pub(crate) fn saved(&self) -> Result<crate::state::WorkflowOptions, serde_json::Error> {
        serde_json::from_value(serde_json::to_value(self)?)
    }

    /// The options a spec's state entry kept (`fresh` is never saved: false).
    pub(crate) fn from_saved(
        saved: &crate::state::WorkflowOptions,
    ) -> Result<Options, serde_json::Error> {
        serde_json::from_value(serde_json::Value::Object(saved.members.clone()))
    }

    /// The per-run timeout (0 = no limit, as with GNU timeout).
    pub(crate) fn task_timeout(&self) -> Option<Duration> {
        (self.task_timeout_s > 0.0).then(|| Duration::from_secs_f64(self.task_timeout_s))
    }
    /// The grace.
    pub(crate) fn grace(&self) -> Duration {
        Duration::from_secs_f64(self.grace_s.max(0.0))
    }
    /// The stall timeout.
    pub(crate) fn stall_timeout(&self) -> Option<Duration> {
        self.stall_timeout_s
            .filter(|s| *s > 0.0)
            .map(Duration::from_secs_f64)
    }
    /// The delay between attempts.
    pub(crate) fn retry_delay(&self) -> Duration {
        Duration::from_secs_f64(self.retry_delay_s.max(0.0))
    }
}
