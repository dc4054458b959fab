//! What the phases, the scheduler and the attempt loop share while a workflow runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::admission::Admission;
use crate::agent::Agent;
use crate::exec::{Cancel, Executor};
use crate::project::Project;
use crate::spec::Spec;
use crate::state::StateStore;
use crate::workflow::budget::Budget;
use crate::workflow::events::{EventKind, StopReason};
use crate::workflow::isolation::TaskSpace;
use crate::workflow::reporter::Events;
use crate::workflow::{Options, WorkflowError};

use super::stop::Stop;

/// One running workflow. Every dependency that does work is injected (the agent, the
/// executor, admission), so tests and other backends plug in here.
pub(crate) struct Run<'a> {
    /// The project.
    pub project: &'a Project,
    /// The state, for reading what earlier runs did. Nothing here writes it: every
    /// change is an event, written by the recorder.
    pub store: StateStore,
    /// The spec.
    pub spec: Spec,
    /// The spec's name.
    pub name: &'a str,
    /// The spec's description (for prompts and the report).
    pub description: String,
    /// How to run.
    pub options: &'a Options,
    /// Who does the work.
    pub agent: &'a dyn Agent,
    /// Where agent runs and `_Verify:_` commands are supervised.
    pub executor: &'a dyn Executor,
    /// Resource admission (None: every run is admitted at once).
    pub admission: Option<Admission>,
    /// Cost ceilings.
    pub budget: Budget,
    /// The signal token, forwarded to every supervised run.
    pub cancel: &'a Cancel,
    /// Where everything that happens is told.
    pub events: &'a Events<'a>,
    /// Whether new work may start, and if not why.
    pub stop: Stop<'a>,
    /// Record a `system_stats` snapshot with each task (dev mode `resource_monitoring`).
    pub resource_monitoring: bool,
    /// The dev-mode flags (`auto_backup`, `enhanced_error_reporting`; see `dev.rs`).
    pub dev: crate::settings::DevMode,
    /// Where tasks work: their own git worktrees, or the project's tree.
    pub space: TaskSpace,
    /// The `_Verify:_` checks its implementation phase read (`checks::open`), which the
    /// run's end compares tasks.md with (`checks::close`).
    pub checks: crate::workflow::checks::Opened,
    /// The spec's task entries in the state as the implementation phase read them before
    /// its first task (`scheduler::run_tasks`): what a task's first attempt asks of its
    /// earlier runs (a cut-off run to adopt, a session to resume), read once for all
    /// tasks instead of parsing the whole state once per task. None: read the file.
    pub earlier: std::sync::Mutex<Option<Arc<BTreeMap<String, crate::state::Task>>>>,
}

impl Run<'_> {
    /// Stop new work for `reason` (the most severe reason wins) and say so.
    pub(crate) fn request_stop(&self, reason: StopReason) -> Result<(), WorkflowError> {
        self.stop.request(reason.clone());
        self.events.emit(EventKind::Stopping {
            reason: &reason,
            cancels_running: self.stop.cancels(&reason),
        })
    }
}
