//! The one read model of the state: what `qw status`, `qw spec-status` and the dashboard
//! show, computed from a loaded [`UnifiedState`] (and, for one spec, its `tasks.md`; for
//! running tasks, the activity read from their event streams; for the timeline, the
//! spec's run folders): pure functions returning serializable views.
//!
//! Owns: task counts, progress, the last error of a spec, cost and token sums, elapsed
//! times, phase and task timings, running tasks with their live activity, the timeline of
//! a spec's runs, the next step to suggest, and reading a state that does not match the
//! schema as far as it can ([`lenient_state`]). Must not: read or write files, print, or
//! lock the state — callers load once and hand the state (and what they read from run
//! folders) in, so a 10 000-task state is parsed once and walked once. Formatting for
//! people is [`crate::fmt`].

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Local, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::agent::events::{Activity, LastTool};
use crate::agent::runs::{RunFolder, RunUnit};
use crate::fmt::{compare_task_ids, seconds_between};
use crate::spec::Documents;
use crate::spec::tasks::TaskList;
use crate::state::{
    self, ErrorRecord, Phase, TaskStatus, Timestamp, UnifiedState, schema::CompletedPhase,
};

use super::Options;

/// The activity of runs so far, by run id (see [`running_run_ids`]).
pub(crate) type Activities = HashMap<String, Activity>;

/// What an overview needs besides the state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inputs<'a> {
    /// The time elapsed times are measured to.
    pub now: DateTime<Local>,
    /// Include phase and task timings (dev mode `performance_profiling`).
    pub profiling: bool,
    /// The activity of running tasks' runs, read by the caller.
    pub activity: &'a Activities,
}

/// `qw status`: every spec in the state plus project-wide figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Overview {
    /// The spec the workflow last worked on.
    pub current_spec: Option<String>,
    /// The project-wide phase.
    pub global_phase: String,
    /// Every spec, by name.
    pub specs: Vec<SpecStatus>,
    /// Task ids running now (`agents.active_tasks`).
    pub active_tasks: Vec<String>,
    /// Commands recorded (`commands.total_executed`).
    pub total_executed: state::Count,
    /// Task attempts ever run (`resources.total_tasks_executed`).
    pub tasks_executed: state::Count,
    /// Agent runs ever (`agents.total_executions`).
    pub agent_runs: state::Count,
    /// Most tasks ever running at once (`resources.peak_concurrent_tasks`).
    pub peak_concurrency: state::Count,
    /// Whether timings are included (dev mode `performance_profiling`).
    pub performance_profiling: bool,
}

/// One spec's line in `qw status`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SpecStatus {
    /// The spec name.
    pub name: String,
    /// What it is about.
    pub description: String,
    /// Its current phase.
    pub phase: String,
    /// Its tasks by status.
    pub tasks: TaskCounts,
    /// Completed tasks in percent (the state's own figure when it has no tasks).
    pub progress_percentage: f64,
    /// USD spent on its agent runs (`cost_usd`).
    pub cost_usd: f64,
    /// Tokens used by its tasks.
    pub tokens: Tokens,
    /// Paused (usage limit or budget) until then, if paused.
    pub paused_until: Option<crate::state::ResetAt>,
    /// Its task ids that are in `agents.active_tasks` and in progress.
    pub running: Vec<String>,
    /// The same tasks with what they are doing (the agent's live activity).
    pub running_tasks: Vec<RunningTask>,
    /// Its pending tasks waiting for admission in a running workflow.
    pub waiting_tasks: Vec<WaitingTask>,
    /// When it was created.
    pub created_at: Option<Timestamp>,
    /// Seconds from its creation to now (to its last completed phase once complete).
    pub elapsed_seconds: Option<f64>,
    /// The newest error that concerns it.
    pub last_error: Option<LastError>,
    /// The command to run next, if any.
    pub next_step: Option<String>,
    /// Phase and task timings (only with dev mode `performance_profiling`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
}

/// A task waiting for admission: what holds it back, since when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct WaitingTask {
    /// Task id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// What holds it back (the limits, the queue).
    pub why: String,
    /// When the wait began.
    pub since: Option<Timestamp>,
}

/// A task running now and what its agent is doing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct RunningTask {
    /// Task id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// The agent running it.
    pub agent: Option<String>,
    /// Its attempt.
    pub attempt: u32,
    /// When this attempt started.
    pub started_at: Option<Timestamp>,
    /// Seconds since then.
    pub elapsed_seconds: Option<f64>,
    /// The limit one run has (`--task-timeout`), when known; None: none or unknown.
    pub timeout_seconds: Option<f64>,
    /// Its run folder under `.claude/runs/`.
    pub run_id: Option<String>,
    /// Model turns so far (None: no event read yet, or an agent without an event stream).
    pub turns: Option<u64>,
    /// The last tool call and what it acted on.
    pub last_tool: Option<LastTool>,
    /// When the agent's last event happened (RFC 3339).
    pub last_event_at: Option<String>,
    /// Seconds since that event: a working agent keeps this small.
    pub seconds_since_last_event: Option<f64>,
    /// Tokens so far.
    pub tokens: Option<LiveTokens>,
    /// USD so far (known from the final result only).
    pub cost_usd: Option<f64>,
    /// The agent's session id.
    pub session_id: Option<String>,
    /// An API retry the agent waits on, if any.
    pub retrying: Option<String>,
}

/// Tokens of a run so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct LiveTokens {
    /// Uncached input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Tokens written to the prompt cache.
    pub cache_creation: u64,
    /// Tokens read from the prompt cache.
    pub cache_read: u64,
    /// All of them.
    pub total: u64,
}

/// Task counts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct TaskCounts {
    /// All tasks.
    pub total: usize,
    /// `pending`
    pub pending: usize,
    /// `in_progress`
    pub in_progress: usize,
    /// `completed`
    pub completed: usize,
    /// `failed`
    pub failed: usize,
    /// `blocked`
    pub blocked: usize,
    /// Any status qw does not know.
    pub other: usize,
}

impl TaskCounts {
    fn add(&mut self, status: &TaskStatus) {
        self.total += 1;
        match status {
            TaskStatus::Pending => self.pending += 1,
            TaskStatus::InProgress => self.in_progress += 1,
            TaskStatus::Completed => self.completed += 1,
            TaskStatus::Failed => self.failed += 1,
            TaskStatus::Blocked => self.blocked += 1,
            TaskStatus::Other(_) => self.other += 1,
        }
    }

    /// Completed share in percent; `None` without tasks.
    pub(crate) fn percent(&self) -> Option<f64> {
        (self.total > 0).then(|| self.completed as f64 * 100.0 / self.total as f64)
    }
}

/// Token sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Tokens {
    /// Input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Both.
    pub total: u64,
}

impl Tokens {
    fn add(&mut self, t: &state::Task) {
        self.input += t.input_tokens.unwrap_or(0);
        self.output += t.output_tokens.unwrap_or(0);
        self.total = self.input + self.output;
    }
}

/// The newest error of a spec.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LastError {
    /// When.
    pub timestamp: Option<Timestamp>,
    /// Which part of qw (or the original system) reported it.
    pub component: String,
    /// The message.
    pub error: String,
    /// The task it concerns, if the context names one.
    pub task: Option<String>,
}

/// Timings from the state's timestamps.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Timings {
    /// Completed phases in the order they completed.
    pub phases: Vec<PhaseTiming>,
    /// Tasks in id order.
    pub tasks: Vec<TaskTiming>,
    /// Sum of the tasks' `duration_seconds`.
    pub task_seconds_total: f64,
}

/// One completed phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PhaseTiming {
    /// The phase.
    pub phase: String,
    /// When it completed.
    pub completed_at: Option<Timestamp>,
    /// Seconds since the previous phase completed (for the first: since the spec was
    /// created); `None` when a timestamp is missing.
    pub seconds: Option<f64>,
}

/// One task's last attempt.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TaskTiming {
    /// Task id.
    pub id: String,
    /// Its status.
    pub status: String,
    /// Attempts made.
    pub attempts: u32,
    /// Duration of the last attempt.
    pub duration_seconds: Option<f64>,
}

/// `qw spec-status NAME`: one spec in detail.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SpecDetail {
    /// The spec name.
    pub name: String,
    /// What it is about (empty when the state has no entry).
    pub description: String,
    /// Its current phase (`spec_creation` when the state has no entry).
    pub phase: String,
    /// Whether the state has an entry for it.
    pub in_state: bool,
    /// Which documents exist.
    pub documents: Documents,
    /// Counts over the tasks listed below.
    pub counts: TaskCounts,
    /// Completed tasks in percent.
    pub progress_percentage: f64,
    /// USD spent.
    pub cost_usd: f64,
    /// Tokens used.
    pub tokens: Tokens,
    /// Paused until, if paused.
    pub paused_until: Option<crate::state::ResetAt>,
    /// The newest error that concerns it.
    pub last_error: Option<LastError>,
    /// The command to run next, if any.
    pub next_step: Option<String>,
    /// Completed phases with their times.
    pub phases: Vec<PhaseTiming>,
    /// Why tasks.md could not be read, if it could not.
    pub tasks_error: Option<String>,
    /// Every leaf task of tasks.md in file order, then tasks only the state knows.
    pub tasks: Vec<TaskDetail>,
}

/// One task of `qw spec-status`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TaskDetail {
    /// Task id.
    pub id: String,
    /// Title (from tasks.md, else the state's description).
    pub title: String,
    /// Status in the state; for a task the state does not know, `completed` when ticked
    /// in tasks.md, else `pending`.
    pub status: String,
    /// Whether tasks.md has it ticked (`None`: not in tasks.md).
    pub checked: Option<bool>,
    /// Whether the state has an entry for it.
    pub in_state: bool,
    /// Attempts made.
    pub attempts: u32,
    /// Duration of the last attempt.
    pub duration_seconds: Option<f64>,
    /// USD spent on it.
    pub cost_usd: Option<f64>,
    /// Outcome of the last run.
    pub outcome: Option<String>,
    /// The last error.
    pub error: Option<String>,
    /// Its own `_Depends:` ids.
    pub depends: Vec<String>,
    /// Its last run folder under `.claude/runs/`.
    pub run_id: Option<String>,
}

impl TaskDetail {
    /// How the task was completed by hand ("ticked by hand, not run by qw" or "ticked by
    /// hand, verified by qw"), if it was: a tick in `tasks.md`, not a run of qw.
    pub(crate) fn by_hand(&self) -> Option<&str> {
        use crate::workflow::reconcile::{BY_HAND, BY_HAND_VERIFIED};
        self.outcome
            .as_deref()
            .filter(|o| *o == BY_HAND || *o == BY_HAND_VERIFIED)
    }
}

/// Compute `qw status` (and the dashboard's overview) from a loaded state.
pub(crate) fn overview(state: &UnifiedState, inputs: &Inputs<'_>) -> Overview {
    let active: HashSet<&str> = state
        .agents
        .active_tasks
        .iter()
        .map(String::as_str)
        .collect();
    let specs = state
        .specifications
        .iter()
        .map(|(name, spec)| spec_status(state, name, spec, &active, inputs))
        .collect();
    Overview {
        current_spec: state.workflow.current_spec.clone(),
        global_phase: state.workflow.global_phase.to_string(),
        specs,
        active_tasks: state.agents.active_tasks.clone(),
        total_executed: state.commands.total_executed.clone(),
        tasks_executed: state.resources.total_tasks_executed.clone(),
        agent_runs: state.agents.total_executions.clone(),
        peak_concurrency: state.resources.peak_concurrent_tasks.clone(),
        performance_profiling: inputs.profiling,
    }
}

/// Whether a task counts as running: in progress and listed in `agents.active_tasks`
/// (a task left `in_progress` by a killed workflow is not running).
fn is_running(t: &state::Task, id: &str, active: &HashSet<&str>) -> bool {
    t.status == TaskStatus::InProgress && active.contains(id)
}

/// The run ids of every running task: the runs whose activity [`overview`] shows.
pub(crate) fn running_run_ids(state: &UnifiedState) -> Vec<String> {
    let active: HashSet<&str> = state
        .agents
        .active_tasks
        .iter()
        .map(String::as_str)
        .collect();
    state
        .specifications
        .values()
        .flat_map(|s| s.tasks.iter())
        .filter(|(k, t)| is_running(t, task_id(k, t), &active))
        .filter_map(|(_, t)| t.run_id.clone())
        .collect()
}

fn spec_status(
    state: &UnifiedState,
    name: &str,
    spec: &state::Spec,
    active: &HashSet<&str>,
    inputs: &Inputs<'_>,
) -> SpecStatus {
    let mut counts = TaskCounts::default();
    let mut tokens = Tokens::default();
    let mut running = Vec::new();
    let mut waiting = Vec::new();
    let mut task_cost = 0.0;
    for (key, t) in &spec.tasks {
        counts.add(&t.status);
        tokens.add(t);
        task_cost += t.cost_usd.unwrap_or(0.0);
        let id = task_id(key, t);
        if is_running(t, id, active) {
            running.push(running_task(spec, id, t, inputs));
        } else if t.status == state::TaskStatus::Pending
            && let Some(w) = &t.waiting_for_admission
        {
            waiting.push(WaitingTask {
                id: id.to_owned(),
                title: t.description.clone(),
                why: w.why.clone(),
                since: w.since.clone(),
            });
        }
    }
    running.sort_by(|a, b| compare_task_ids(&a.id, &b.id));
    waiting.sort_by(|a, b| compare_task_ids(&a.id, &b.id));
    let last_error = last_error(state, name);
    let timings = inputs.profiling.then(|| timings(spec));
    SpecStatus {
        name: name.to_owned(),
        description: spec.description.clone(),
        phase: spec.current_phase.to_string(),
        tasks: counts,
        progress_percentage: counts.percent().unwrap_or(spec.progress_percentage),
        // Phases cost too, so the spec's own sum is the larger one when qw wrote it; a
        // state that only has task costs still shows them.
        cost_usd: if spec.cost_usd > 0.0 {
            spec.cost_usd
        } else {
            task_cost
        },
        tokens,
        paused_until: spec.paused_until.clone(),
        running: running.iter().map(|r| r.id.clone()).collect(),
        running_tasks: running,
        waiting_tasks: waiting,
        created_at: spec.created_at.clone(),
        elapsed_seconds: elapsed(spec, inputs.now),
        next_step: next_step(name, Some(spec), &counts, last_error.is_some()),
        last_error,
        timings,
    }
}

/// Seconds from the spec's creation to now, or to its last completed phase once complete.
fn elapsed(spec: &state::Spec, now: DateTime<Local>) -> Option<f64> {
    let start = spec.created_at.as_ref()?.as_datetime()?;
    let end = if spec.current_phase == Phase::Complete {
        spec.completed_phases
            .iter()
            .filter_map(|p| p.completed_at.as_ref()?.as_datetime())
            .max()?
    } else {
        now.fixed_offset()
    };
    Some(seconds_between(&start, &end))
}

/// The limit one run of `t` has: the task's own `timeout_seconds`, else the workflow's
/// `--task-timeout` (0 means none).
fn task_timeout(spec: &state::Spec, t: &state::Task) -> Option<f64> {
    let own = t.extra.get("timeout_seconds").and_then(Value::as_f64);
    let options = || {
        let saved = spec.workflow_options.as_ref()?;
        Some(Options::from_saved(saved).ok()?.task_timeout_s)
    };
    own.or_else(options).filter(|s| *s > 0.0)
}

fn running_task(spec: &state::Spec, id: &str, t: &state::Task, inputs: &Inputs<'_>) -> RunningTask {
    let started = t.started_at.as_ref().and_then(Timestamp::as_datetime);
    let activity = t
        .run_id
        .as_ref()
        .and_then(|r| inputs.activity.get(r))
        .filter(|a| a.events > 0);
    let last_event = activity
        .and_then(|a| a.last_event_at.as_deref())
        .and_then(Timestamp::parse)
        .and_then(|t| t.as_datetime());
    RunningTask {
        id: id.to_owned(),
        title: t.description.clone(),
        agent: t.agent.clone(),
        attempt: t.attempts,
        started_at: t.started_at.clone(),
        elapsed_seconds: started.map(|s| seconds_between(&s, &inputs.now)),
        timeout_seconds: task_timeout(spec, t),
        run_id: t.run_id.clone(),
        turns: activity.map(|a| a.turns),
        last_tool: activity.and_then(|a| a.last_tool.clone()),
        last_event_at: activity.and_then(|a| a.last_event_at.clone()),
        seconds_since_last_event: last_event.map(|e| seconds_between(&e, &inputs.now)),
        tokens: activity.map(|a| LiveTokens {
            input: a.tokens.input,
            output: a.tokens.output,
            cache_creation: a.tokens.cache_creation,
            cache_read: a.tokens.cache_read,
            total: a.tokens.total(),
        }),
        cost_usd: activity.and_then(|a| a.cost_usd),
        session_id: activity.and_then(|a| a.session_id.clone()),
        retrying: activity.and_then(|a| a.retrying.clone()),
    }
}

/// The id a task is shown under: its `id`, else its key in the map.
fn task_id<'a>(key: &'a str, t: &'a state::Task) -> &'a str {
    if t.id.is_empty() { key } else { &t.id }
}

/// The newest entry of `errors` that concerns `spec`.
pub(crate) fn last_error(state: &UnifiedState, spec: &str) -> Option<LastError> {
    state
        .errors
        .iter()
        .rev()
        .find(|e| e.concerns_spec(spec))
        .map(to_last_error)
}

fn to_last_error(e: &ErrorRecord) -> LastError {
    let task = ["task", "task_id"].iter().find_map(|k| {
        e.context.get(*k).and_then(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    });
    LastError {
        timestamp: e.timestamp.clone(),
        component: e.component.clone(),
        error: e.error.clone(),
        task,
    }
}

/// What to run next: nothing when complete; `workflow-auto` for a spec whose workflow
/// never started; else `workflow-continue`, with `workflow-reset` when something failed.
pub(crate) fn next_step(
    name: &str,
    spec: Option<&state::Spec>,
    counts: &TaskCounts,
    has_error: bool,
) -> Option<String> {
    let Some(spec) = spec else {
        return Some(format!("qw workflow-auto {name} \"DESCRIPTION\""));
    };
    if spec.current_phase == Phase::Complete {
        return None;
    }
    let started = spec.workflow_options.is_some() || !spec.tasks.is_empty();
    if !started {
        let desc = if spec.description.is_empty() {
            "\"DESCRIPTION\"".to_owned()
        } else {
            shell_words::quote(&spec.description).into_owned()
        };
        return Some(format!("qw workflow-auto {name} {desc}"));
    }
    let continue_ = format!("qw workflow-continue {name}");
    if counts.failed + counts.blocked > 0 || (has_error && counts.completed < counts.total) {
        Some(format!("{continue_} (or qw workflow-reset {name})"))
    } else {
        Some(continue_)
    }
}

/// While another qw holds `name`'s workflow lock, [`next_step`] would suggest a command
/// that is refused (rev11b L1): say who runs it instead. `None` when nothing holds it (or
/// the lock cannot be read: the state's own suggestion stands).
pub(crate) fn running_step(project: &crate::project::Project, name: &str) -> Option<String> {
    let holder = crate::fs::LockedFile::probe(project.workflow_lock_file(name))
        .ok()
        .flatten()?;
    let who = holder
        .pid
        .map_or_else(|| "another qw".to_owned(), |pid| format!("qw pid {pid}"));
    Some(format!(
        "nothing while its workflow runs ({who}); `qw logs {name} --follow` follows it"
    ))
}

/// Phase timings in completion order and task durations in id order.
pub(crate) fn timings(spec: &state::Spec) -> Timings {
    let mut tasks: Vec<TaskTiming> = spec
        .tasks
        .iter()
        .map(|(key, t)| TaskTiming {
            id: task_id(key, t).to_owned(),
            status: t.status.to_string(),
            attempts: t.attempts,
            duration_seconds: t.duration_seconds,
        })
        .collect();
    tasks.sort_by(|a, b| compare_task_ids(&a.id, &b.id));
    let task_seconds_total = tasks.iter().filter_map(|t| t.duration_seconds).sum();
    Timings {
        phases: phase_timings(spec),
        tasks,
        task_seconds_total,
    }
}

/// Completed phases sorted by completion time (entries without a time keep their place
/// at the end); each one's seconds since the previous one (or since `created_at`).
pub(crate) fn phase_timings(spec: &state::Spec) -> Vec<PhaseTiming> {
    let mut phases: Vec<&CompletedPhase> = spec.completed_phases.iter().collect();
    phases.sort_by_key(|p| {
        (
            p.completed_at
                .as_ref()
                .and_then(Timestamp::as_datetime)
                .is_none(),
            p.completed_at.as_ref().and_then(Timestamp::as_datetime),
        )
    });
    let mut previous = spec.created_at.as_ref().and_then(Timestamp::as_datetime);
    phases
        .into_iter()
        .map(|p| {
            let at = p.completed_at.as_ref().and_then(Timestamp::as_datetime);
            let seconds = match (previous, at) {
                (Some(a), Some(b)) => Some(seconds_between(&a, &b)),
                _ => None,
            };
            if at.is_some() {
                previous = at;
            }
            PhaseTiming {
                phase: p.phase.to_string(),
                completed_at: p.completed_at.clone(),
                seconds,
            }
        })
        .collect()
}

/// Compute `qw spec-status NAME`. `tasks` is the parsed tasks.md (`Err` holds why it
/// could not be read).
pub(crate) fn spec_detail(
    state: &UnifiedState,
    name: &str,
    documents: Documents,
    tasks: Result<Option<&TaskList>, String>,
) -> SpecDetail {
    let spec = state.specifications.get(name);
    let (list, tasks_error) = match tasks {
        Ok(l) => (l, None),
        Err(e) => (None, Some(e)),
    };
    let mut rows = Vec::new();
    // State keys shown with a leaf of tasks.md.
    let mut shown: HashSet<String> = HashSet::new();
    if let Some(list) = list {
        // Each leaf with the record reconcile gives it (renumbered, retitled), never with
        // another task's record that merely has its id now (rev8a F2).
        let owner = match spec {
            Some(s) => {
                let (owner, owned) = crate::workflow::reconcile::owners(list, &s.tasks);
                shown = owned;
                owner
            }
            None => HashMap::new(),
        };
        for leaf in list.leaves() {
            let st = owner
                .get(&leaf.id)
                .and_then(|key| spec.and_then(|s| s.tasks.get(key)));
            let status = match st {
                Some(t) => t.status.to_string(),
                None if leaf.checked => TaskStatus::Completed.to_string(),
                None => TaskStatus::Pending.to_string(),
            };
            rows.push(detail_row(
                &leaf.id,
                &leaf.title,
                status,
                Some(leaf.checked),
                st,
                leaf.depends.clone(),
            ));
        }
    }
    if let Some(s) = spec {
        let mut extra: Vec<(&str, &state::Task)> = s
            .tasks
            .iter()
            .filter(|(k, _)| !shown.contains(*k))
            .map(|(k, t)| (task_id(k, t), t))
            .collect();
        extra.sort_by(|a, b| compare_task_ids(a.0, b.0));
        for (id, t) in extra {
            rows.push(detail_row(
                id,
                &t.description,
                t.status.to_string(),
                None,
                Some(t),
                Vec::new(),
            ));
        }
    }
    let mut counts = TaskCounts::default();
    let mut tokens = Tokens::default();
    for r in &rows {
        counts.add(&TaskStatus::parse(&r.status));
    }
    if let Some(s) = spec {
        for t in s.tasks.values() {
            tokens.add(t);
        }
    }
    let last_error = last_error(state, name);
    SpecDetail {
        name: name.to_owned(),
        description: spec.map(|s| s.description.clone()).unwrap_or_default(),
        phase: spec.map_or_else(
            || Phase::SpecCreation.to_string(),
            |s| s.current_phase.to_string(),
        ),
        in_state: spec.is_some(),
        documents,
        counts,
        progress_percentage: counts
            .percent()
            .unwrap_or_else(|| spec.map_or(0.0, |s| s.progress_percentage)),
        cost_usd: spec.map_or(0.0, |s| s.cost_usd),
        tokens,
        paused_until: spec.and_then(|s| s.paused_until.clone()),
        next_step: next_step(name, spec, &counts, last_error.is_some()),
        last_error,
        phases: spec.map(phase_timings).unwrap_or_default(),
        tasks_error,
        tasks: rows,
    }
}

fn detail_row(
    id: &str,
    title: &str,
    status: String,
    checked: Option<bool>,
    st: Option<&state::Task>,
    depends: Vec<String>,
) -> TaskDetail {
    TaskDetail {
        id: id.to_owned(),
        title: title.to_owned(),
        status,
        checked,
        in_state: st.is_some(),
        attempts: st.map_or(0, |t| t.attempts),
        duration_seconds: st.and_then(|t| t.duration_seconds),
        cost_usd: st.and_then(|t| t.cost_usd),
        outcome: match st {
            Some(t) if let Some(label) = crate::workflow::reconcile::hand_label(t) => {
                Some(label.to_owned())
            }
            Some(t) => t.outcome.clone(),
            // Ticked in tasks.md, unknown to the state: nobody ran it.
            None if checked == Some(true) => Some(crate::workflow::reconcile::BY_HAND.to_owned()),
            None => None,
        },
        error: st.and_then(|t| t.error.clone()),
        depends,
        run_id: st.and_then(|t| t.run_id.clone()),
    }
}

/// Read a state that may not match the schema as far as it goes: the typed parse when
/// it succeeds, else section by section, spec by spec and task by task, keeping every
/// field that parses. Returns the state and the JSON paths of what had to be left out
/// (empty when the typed parse succeeded). `Err` only when the top level is no object.
pub(crate) fn lenient_state(v: &Value) -> Result<(UnifiedState, Vec<String>), String> {
    let Value::Object(top) = v else {
        return Err("the top level is not a JSON object".to_owned());
    };
    if let Ok(s) = serde_json::from_value::<UnifiedState>(v.clone()) {
        return Ok((s, Vec::new()));
    }
    let mut problems = Vec::new();
    let mut top = top.clone();
    let specs = top.remove("specifications");
    let errors = top.remove("errors");
    // Each section on its own, so one bad field costs that field only.
    let mut section = |key: &str| -> Option<Map<String, Value>> {
        match top.remove(key) {
            Some(Value::Object(m)) => Some(m),
            None | Some(Value::Null) => None,
            Some(_) => {
                problems.push(key.to_owned());
                None
            }
        }
    };
    let (session, workflow, agents, resources, commands) = (
        section("session"),
        section("workflow"),
        section("agents"),
        section("resources"),
        section("commands"),
    );
    let mut state: UnifiedState = lenient_object(top, "", &mut problems);
    if let Some(m) = session {
        state.session = lenient_object(m, "session", &mut problems);
    }
    if let Some(m) = workflow {
        state.workflow = lenient_object(m, "workflow", &mut problems);
    }
    if let Some(m) = agents {
        state.agents = lenient_object(m, "agents", &mut problems);
    }
    if let Some(m) = resources {
        state.resources = lenient_object(m, "resources", &mut problems);
    }
    if let Some(m) = commands {
        state.commands = lenient_object(m, "commands", &mut problems);
    }
    match specs {
        Some(Value::Object(specs)) => {
            for (name, spec) in specs {
                let path = format!("specifications.{name}");
                match spec {
                    Value::Object(spec) => {
                        let spec = lenient_spec(spec, &path, &mut problems);
                        state.specifications.insert(name, spec);
                    }
                    Value::Null => {}
                    _ => problems.push(path),
                }
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => problems.push("specifications".to_owned()),
    }
    match errors {
        Some(Value::Array(errors)) => {
            for (i, e) in errors.into_iter().enumerate() {
                match e {
                    Value::Object(m) => {
                        state
                            .errors
                            .push(lenient_object(m, &format!("errors.{i}"), &mut problems))
                    }
                    _ => problems.push(format!("errors.{i}")),
                }
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => problems.push("errors".to_owned()),
    }
    Ok((state, problems))
}

/// One spec, leniently: its tasks (a map by id, or a list of tasks with `id`s) and
/// completed phases one by one, then its other fields.
fn lenient_spec(
    mut spec: Map<String, Value>,
    path: &str,
    problems: &mut Vec<String>,
) -> state::Spec {
    let tasks = spec.remove("tasks");
    let phases = spec.remove("completed_phases");
    let mut out: state::Spec = lenient_object(spec, path, problems);
    let entries: Vec<(String, Value)> = match tasks {
        Some(Value::Object(m)) => m.into_iter().collect(),
        Some(Value::Array(a)) => a
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let id = match t.get("id") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => i.to_string(),
                };
                (id, t)
            })
            .collect(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            problems.push(format!("{path}.tasks"));
            Vec::new()
        }
    };
    for (id, t) in entries {
        let tpath = format!("{path}.tasks.{id}");
        match t {
            Value::Object(m) => {
                let mut task: state::Task = lenient_object(m, &tpath, problems);
                if task.id.is_empty() {
                    task.id.clone_from(&id);
                }
                out.tasks.insert(id, task);
            }
            _ => problems.push(tpath),
        }
    }
    match phases {
        Some(Value::Array(a)) => {
            for (i, p) in a.into_iter().enumerate() {
                match p {
                    Value::Object(m) => out.completed_phases.push(lenient_object(
                        m,
                        &format!("{path}.completed_phases.{i}"),
                        problems,
                    )),
                    _ => problems.push(format!("{path}.completed_phases.{i}")),
                }
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => problems.push(format!("{path}.completed_phases")),
    }
    out
}

/// Parse an object as `T`, leaving out each field that makes the parse fail (its path is
/// added to `problems`).
fn lenient_object<T>(map: Map<String, Value>, path: &str, problems: &mut Vec<String>) -> T
where
    T: serde::de::DeserializeOwned + Default,
{
    if let Ok(t) = serde_json::from_value(Value::Object(map.clone())) {
        return t;
    }
    let mut kept = Map::new();
    for (k, v) in map {
        kept.insert(k.clone(), v);
        if serde_json::from_value::<T>(Value::Object(kept.clone())).is_err() {
            kept.remove(&k);
            problems.push(if path.is_empty() {
                k
            } else {
                format!("{path}.{k}")
            });
        }
    }
    serde_json::from_value(Value::Object(kept)).unwrap_or_default()
}

/// What a stretch of a run's time was spent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Stage {
    /// Waiting to run again after a failed attempt (retry delay, then admission).
    Queued,
    /// Admitted; the run is being prepared (run folder, prompt).
    Admitted,
    /// The agent is working.
    Running,
    /// The task's `_Verify:_` command runs.
    Verifying,
    /// The work is being committed and merged (from the end of the checks to the task's
    /// completion).
    Merging,
}

impl Stage {
    /// The name used in the JSON and as a CSS class.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Admitted => "admitted",
            Stage::Running => "running",
            Stage::Verifying => "verifying",
            Stage::Merging => "merging",
        }
    }
}

/// How a run ended (or that it has not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum RunEnd {
    /// Still going.
    Running,
    /// It succeeded: a task completed (merged when it ran in a worktree), a phase
    /// completed.
    Completed,
    /// It failed, with the outcome when known (`timed_out`, `verify_failed`, …).
    Failed {
        /// The outcome.
        outcome: Option<String>,
    },
    /// It was stopped before it finished (interrupted, paused), or nothing says how it
    /// ended.
    Stopped {
        /// The outcome, when known.
        outcome: Option<String>,
    },
}

impl RunEnd {
    /// The name used as a CSS class.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            RunEnd::Running => "running",
            RunEnd::Completed => "completed",
            RunEnd::Failed { .. } => "failed",
            RunEnd::Stopped { .. } => "stopped",
        }
    }
}

/// A stretch of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Segment {
    /// What it was.
    pub stage: Stage,
    /// From.
    pub from: DateTime<Utc>,
    /// To.
    pub to: DateTime<Utc>,
}

/// One run on the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct TimelineRun {
    /// The run folder name.
    pub run_id: String,
    /// The task id, for a task's run.
    pub task: Option<String>,
    /// The phase (`requirements`, …), for a document or validation run.
    pub phase: Option<String>,
    /// The attempt (0: unknown).
    pub attempt: u32,
    /// Its stretches, in order and contiguous.
    pub segments: Vec<Segment>,
    /// How it ended.
    pub end: RunEnd,
}

impl TimelineRun {
    /// `2.1 #2`, `design #1`.
    pub(crate) fn label(&self) -> String {
        let what = self
            .task
            .as_deref()
            .or(self.phase.as_deref())
            .unwrap_or("?");
        if self.attempt > 0 {
            format!("{what} #{}", self.attempt)
        } else {
            what.to_owned()
        }
    }

    /// When it started (its first stretch; queued time included).
    pub(crate) fn start(&self) -> Option<DateTime<Utc>> {
        self.segments.first().map(|s| s.from)
    }

    /// When it ended, or now for a run still going.
    pub(crate) fn finish(&self) -> Option<DateTime<Utc>> {
        self.segments.last().map(|s| s.to)
    }
}

/// A spec's runs in parallel lanes: runs that overlap in time are in different lanes,
/// so the number of lanes is the most that ran at once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Timeline {
    /// The earliest start.
    pub start: DateTime<Utc>,
    /// The latest end (now while something runs).
    pub end: DateTime<Utc>,
    /// The lanes, each in time order.
    pub lanes: Vec<Vec<TimelineRun>>,
}

/// The state's phase for a run folder's phase label.
fn state_phase(label: &str) -> Phase {
    match label {
        "requirements" => Phase::RequirementsGeneration,
        "design" => Phase::DesignCreation,
        "tasks" => Phase::TaskGeneration,
        other => Phase::parse(other),
    }
}

/// The outcome an error record gives for run `id` (errors name the run folder).
fn outcome_of_run(errors: &[ErrorRecord], id: &str) -> Option<Option<String>> {
    errors.iter().rev().find_map(|e| {
        let dir = e.context.get("run_dir")?.as_str()?;
        let named = dir == id || dir.ends_with(&format!("/{id}"));
        named.then(|| {
            e.context
                .get("outcome")
                .and_then(|o| o.get("kind").or(Some(o)))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
    })
}

/// The timeline of spec `name` from its run folders (oldest first, as
/// [`crate::agent::runs::list`] gives them), its state entry and the state's errors.
/// None when it has no runs.
///
/// What disk says and what it does not: a run folder is made right after admission (its
/// name's stamp), the prompt is written just before the agent starts, the captured output
/// and `verify.log` are last written when the agent and the check end, and a completed
/// task's `completed_at` follows its merge. How long a first attempt waited for its
/// dependencies and for admission is not recorded, so only retries show a queued stretch.
pub(crate) fn timeline(
    state: &UnifiedState,
    name: &str,
    runs: &[RunFolder],
    now: DateTime<Utc>,
) -> Option<Timeline> {
    let spec = state.specifications.get(name);
    let active: HashSet<&str> = state
        .agents
        .active_tasks
        .iter()
        .map(String::as_str)
        .collect();
    let mut previous_end: HashMap<&RunUnit, DateTime<Utc>> = HashMap::new();
    let mut out: Vec<TimelineRun> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let later_attempt = runs[i + 1..].iter().any(|x| x.unit == r.unit);
        let failed_by_error = outcome_of_run(&state.errors, &r.id);
        let (end, done_at) = match &r.unit {
            RunUnit::Task(id) => {
                let task = spec.and_then(|s| {
                    s.tasks.get(id).or_else(|| {
                        s.tasks
                            .iter()
                            .find(|(k, t)| task_id(k, t) == id)
                            .map(|(_, t)| t)
                    })
                });
                match task {
                    Some(t) if t.run_id.as_deref() == Some(r.id.as_str()) => {
                        let outcome = t.outcome.clone();
                        match &t.status {
                            TaskStatus::Completed => (
                                RunEnd::Completed,
                                t.completed_at.as_ref().and_then(Timestamp::as_datetime),
                            ),
                            TaskStatus::InProgress if is_running(t, id, &active) => {
                                (RunEnd::Running, None)
                            }
                            TaskStatus::Failed | TaskStatus::Blocked => {
                                (RunEnd::Failed { outcome }, None)
                            }
                            _ => match failed_by_error {
                                Some(o) => (
                                    RunEnd::Failed {
                                        outcome: o.or(outcome),
                                    },
                                    None,
                                ),
                                None => (RunEnd::Stopped { outcome }, None),
                            },
                        }
                    }
                    _ => match failed_by_error {
                        Some(outcome) => (RunEnd::Failed { outcome }, None),
                        None if later_attempt => (RunEnd::Failed { outcome: None }, None),
                        None => (RunEnd::Stopped { outcome: None }, None),
                    },
                }
            }
            RunUnit::Phase(p) => {
                let phase = state_phase(p);
                let completed =
                    spec.and_then(|s| s.completed_phases.iter().find(|c| c.phase == phase));
                if let Some(outcome) = failed_by_error {
                    (RunEnd::Failed { outcome }, None)
                } else if later_attempt {
                    (RunEnd::Failed { outcome: None }, None)
                } else if let Some(c) = completed {
                    (
                        RunEnd::Completed,
                        c.completed_at.as_ref().and_then(Timestamp::as_datetime),
                    )
                } else if spec.is_some_and(|s| s.current_phase == phase) {
                    (RunEnd::Running, None)
                } else {
                    (RunEnd::Stopped { outcome: None }, None)
                }
            }
        };
        let mut segments = Vec::new();
        let mut push = |stage: Stage, from: DateTime<Utc>, to: DateTime<Utc>| {
            if to > from {
                segments.push(Segment { stage, from, to });
            }
        };
        if let Some(prev) = previous_end.get(&r.unit) {
            push(Stage::Queued, *prev, r.created_at);
        }
        let agent_from = r
            .prompt_at
            .filter(|p| *p >= r.created_at)
            .unwrap_or(r.created_at);
        push(Stage::Admitted, r.created_at, agent_from);
        let running = end == RunEnd::Running;
        let agent_to = if running && r.verify_at.is_none() {
            now
        } else {
            r.output_at.unwrap_or(agent_from).max(agent_from)
        };
        push(Stage::Running, agent_from, agent_to);
        let mut last = agent_to;
        if let Some(v) = r.verify_at.filter(|v| *v > agent_to) {
            push(Stage::Verifying, agent_to, v);
            last = v;
        }
        if running && last < now && r.verify_at.is_some() {
            push(Stage::Merging, last, now);
            last = now;
        }
        if let (RunEnd::Completed, Some(done), RunUnit::Task(_)) = (&end, done_at, &r.unit) {
            let done = done.with_timezone(&Utc);
            push(Stage::Merging, last, done);
            last = last.max(done);
        }
        if segments.is_empty() {
            // A run that has not started its agent yet still gets a sliver.
            segments.push(Segment {
                stage: if running {
                    Stage::Running
                } else {
                    Stage::Admitted
                },
                from: r.created_at,
                to: if running {
                    now.max(r.created_at)
                } else {
                    r.created_at
                },
            });
        }
        previous_end.insert(&r.unit, last);
        let (task, phase) = match &r.unit {
            RunUnit::Task(id) => (Some(id.clone()), None),
            RunUnit::Phase(p) => (None, Some(p.clone())),
        };
        out.push(TimelineRun {
            run_id: r.id.clone(),
            task,
            phase,
            attempt: r.attempt,
            segments,
            end,
        });
    }
    let start = out.iter().filter_map(TimelineRun::start).min()?;
    let end = out
        .iter()
        .filter_map(TimelineRun::finish)
        .max()
        .unwrap_or(start)
        .max(start);
    out.sort_by_key(|r| (r.start(), r.finish()));
    let mut lanes: Vec<Vec<TimelineRun>> = Vec::new();
    for run in out {
        let from = run.start();
        match lanes
            .iter_mut()
            .find(|lane| lane.last().and_then(TimelineRun::finish) <= from)
        {
            Some(lane) => lane.push(run),
            None => lanes.push(vec![run]),
        }
    }
    Some(Timeline { start, end, lanes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Local> {
        Timestamp::parse("2026-01-01T12:00:00+00:00")
            .and_then(|t| t.as_datetime())
            .unwrap()
            .with_timezone(&Local)
    }

    fn inputs(profiling: bool, activity: &Activities) -> Inputs<'_> {
        Inputs {
            now: now(),
            profiling,
            activity,
        }
    }

    fn state() -> UnifiedState {
        serde_json::from_value(json!({
            "specifications": {
                "a": {
                    "name": "a", "description": "Alpha", "current_phase": "implementation",
                    "created_at": "2026-01-01T10:00:00+00:00",
                    "cost_usd": 1.5,
                    "workflow_options": {},
                    "completed_phases": [
                        {"phase": "design_creation", "completed_at": "2026-01-01T10:05:00+00:00"},
                        {"phase": "requirements_generation", "completed_at": "2026-01-01T10:01:30+00:00"},
                        {"phase": "task_generation"}
                    ],
                    "tasks": {
                        "10": {"id": "10", "status": "failed", "duration_seconds": 3.0, "attempts": 3,
                               "input_tokens": 10, "output_tokens": 5},
                        "2": {"id": "2", "status": "completed", "duration_seconds": 1.5, "attempts": 1,
                              "input_tokens": 100, "output_tokens": 50},
                        "1.1": {"id": "1.1", "status": "in_progress"},
                        "3": {"id": "3", "status": "skipped"}
                    }
                },
                "b": {"name": "b", "description": "Beta's \"thing\"", "current_phase": "requirements_generation"},
                "c": {"name": "c", "current_phase": "complete"}
            },
            "agents": {"active_tasks": ["1.1", "9"]},
            "resources": {"peak_concurrent_tasks": 4, "total_tasks_executed": 7},
            "commands": {"total_executed": 12},
            "errors": [
                {"component": "x", "error": "old", "context": {"spec": "a", "task": "10"}},
                {"component": "y", "error": "other spec", "context": {"spec": "b"}},
                {"component": "z", "error": "newest for a", "context": {"command": "/spec-implement a 10", "task_id": 10}},
                {"component": "w", "error": "unrelated", "context": {"spec": "ab"}}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn overview_counts_sums_and_picks_the_newest_error() {
        let o = overview(&state(), &inputs(false, &Activities::new()));
        assert_eq!(o.specs.len(), 3);
        assert_eq!(
            (&o.total_executed, &o.tasks_executed, &o.peak_concurrency),
            (&12.into(), &7.into(), &4.into())
        );
        let a = &o.specs[0];
        assert_eq!(
            a.tasks,
            TaskCounts {
                total: 4,
                pending: 0,
                in_progress: 1,
                completed: 1,
                failed: 1,
                blocked: 0,
                other: 1
            }
        );
        assert_eq!(a.progress_percentage, 25.0);
        assert_eq!(
            a.tokens,
            Tokens {
                input: 110,
                output: 55,
                total: 165
            }
        );
        assert_eq!(a.running, ["1.1"]);
        let e = a.last_error.as_ref().unwrap();
        assert_eq!(
            (e.error.as_str(), e.task.as_deref()),
            ("newest for a", Some("10"))
        );
        assert_eq!(
            a.next_step.as_deref(),
            Some("qw workflow-continue a (or qw workflow-reset a)")
        );
        assert!(a.timings.is_none());
        let b = &o.specs[1];
        assert_eq!(b.last_error.as_ref().unwrap().error, "other spec");
        assert_eq!(
            b.next_step.as_deref(),
            Some("qw workflow-auto b 'Beta'\\''s \"thing\"'")
        );
        assert_eq!(o.specs[2].next_step, None, "a complete spec needs nothing");
        assert!(o.specs[2].last_error.is_none());
        let v = serde_json::to_value(&o).unwrap();
        assert!(v["specs"][0].get("timings").is_none());
    }

    #[test]
    fn timings_follow_completion_order_and_ids_sort_naturally() {
        let o = overview(&state(), &inputs(true, &Activities::new()));
        let t = o.specs[0].timings.as_ref().unwrap();
        let phases: Vec<(&str, Option<f64>)> = t
            .phases
            .iter()
            .map(|p| (p.phase.as_str(), p.seconds))
            .collect();
        assert_eq!(
            phases,
            [
                ("requirements_generation", Some(90.0)),
                ("design_creation", Some(210.0)),
                ("task_generation", None)
            ]
        );
        let ids: Vec<&str> = t.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["1.1", "2", "3", "10"]);
        assert_eq!(t.task_seconds_total, 4.5);
    }

    #[test]
    fn detail_lists_tasks_md_leaves_in_order_then_state_only_tasks() {
        let md = "- [ ] 1. Parent\n  - [x] 1.1. Child\n  - [ ] 1.2. Other\n    - _Depends: 1.1_\n- [ ] 2. Two\n";
        let list = TaskList::parse(md).unwrap();
        let d = spec_detail(&state(), "a", Documents::default(), Ok(Some(&list)));
        let rows: Vec<(&str, &str, bool)> = d
            .tasks
            .iter()
            .map(|t| (t.id.as_str(), t.status.as_str(), t.in_state))
            .collect();
        assert_eq!(
            rows,
            [
                ("1.1", "in_progress", true),
                ("1.2", "pending", false),
                ("2", "completed", true),
                ("3", "skipped", true),
                ("10", "failed", true)
            ]
        );
        assert_eq!(d.tasks[1].depends, ["1.1"]);
        assert_eq!(d.tasks[0].checked, Some(true));
        assert_eq!(d.tasks[3].checked, None);
        assert_eq!(d.counts.total, 5);
        assert_eq!(d.counts.completed, 1);
        assert_eq!(d.progress_percentage, 20.0);

        let unknown = spec_detail(&state(), "new", Documents::default(), Err("bad".into()));
        assert!(!unknown.in_state);
        assert_eq!(unknown.phase, "spec_creation");
        assert_eq!(unknown.tasks_error.as_deref(), Some("bad"));
        assert_eq!(
            unknown.next_step.as_deref(),
            Some("qw workflow-auto new \"DESCRIPTION\"")
        );
    }

    const PYTHON: &str = include_str!("../../tests/fixtures/python_unified_state.json");
    const STREAM: &str = include_str!("../../tests/fixtures/claude_stream_json_write.jsonl");

    fn parse(v: Value) -> UnifiedState {
        serde_json::from_value(v).unwrap()
    }

    /// One row of the read-model table: what a state's first spec looks like.
    #[derive(Debug, PartialEq)]
    struct Row {
        total: usize,
        completed: usize,
        progress: i64,
        cost_millis: i64,
        tokens: u64,
        running: Vec<String>,
        elapsed: Option<i64>,
    }

    fn row(o: &Overview) -> Row {
        let s = &o.specs[0];
        #[allow(clippy::cast_possible_truncation)]
        Row {
            total: s.tasks.total,
            completed: s.tasks.completed,
            progress: s.progress_percentage.round() as i64,
            cost_millis: (s.cost_usd * 1000.0).round() as i64,
            tokens: s.tokens.total,
            running: s.running.clone(),
            elapsed: s.elapsed_seconds.map(|e| e.round() as i64),
        }
    }

    #[test]
    fn table_of_states_to_overview() {
        let python: Value = serde_json::from_str(PYTHON).unwrap();
        let python_now = Timestamp::parse("2025-08-05T14:00:00")
            .unwrap()
            .as_datetime()
            .unwrap()
            .with_timezone(&Local);
        let cases: Vec<(&str, Value, DateTime<Local>, Row)> = vec![
            (
                // created 09:13:02.004411, now 14:00:00; stored 33.3 % agrees with 1 of 3.
                "the Python fixture",
                python,
                python_now,
                Row {
                    total: 3,
                    completed: 1,
                    progress: 33,
                    cost_millis: 0,
                    tokens: 0,
                    running: vec!["1.1".into()],
                    elapsed: Some(17_218),
                },
            ),
            (
                // The stored percentage is stale: the counts win.
                "stale stored progress",
                json!({"specifications": {"s": {"progress_percentage": 90.0, "tasks": {
                    "1": {"status": "completed"}, "2": {"status": "pending"}}}}}),
                now(),
                Row {
                    total: 2,
                    completed: 1,
                    progress: 50,
                    cost_millis: 0,
                    tokens: 0,
                    running: vec![],
                    elapsed: None,
                },
            ),
            (
                // No tasks yet: the stored figure is all there is.
                "no tasks, stored progress",
                json!({"specifications": {"s": {"progress_percentage": 12.0,
                    "created_at": "2026-01-01T11:00:00+00:00"}}}),
                now(),
                Row {
                    total: 0,
                    completed: 0,
                    progress: 12,
                    cost_millis: 0,
                    tokens: 0,
                    running: vec![],
                    elapsed: Some(3600),
                },
            ),
            (
                // Task costs only (a hand-written state): summed. Complete: elapsed ends
                // at the last completed phase.
                "complete, task costs only",
                json!({"specifications": {"s": {"current_phase": "complete",
                    "created_at": "2026-01-01T10:00:00+00:00",
                    "completed_phases": [{"phase": "complete", "completed_at": "2026-01-01T10:10:00+00:00"}],
                    "tasks": {"1": {"status": "completed", "cost_usd": 0.25, "input_tokens": 1000, "output_tokens": 500},
                              "2": {"status": "completed", "cost_usd": 0.5, "input_tokens": 200}}}}}),
                now(),
                Row {
                    total: 2,
                    completed: 2,
                    progress: 100,
                    cost_millis: 750,
                    tokens: 1700,
                    running: vec![],
                    elapsed: Some(600),
                },
            ),
            (
                // The spec's own cost includes its phases: it wins over the tasks' sum.
                // In progress but not in active_tasks (a killed workflow): not running.
                "spec cost and a stale in_progress",
                json!({"agents": {"active_tasks": ["2"]},
                       "specifications": {"s": {"cost_usd": 2.0, "tasks": {
                    "1": {"status": "in_progress", "cost_usd": 0.5},
                    "2": {"status": "in_progress"}}}}}),
                now(),
                Row {
                    total: 2,
                    completed: 0,
                    progress: 0,
                    cost_millis: 2000,
                    tokens: 0,
                    running: vec!["2".into()],
                    elapsed: None,
                },
            ),
        ];
        let none = Activities::new();
        for (what, v, now, want) in cases {
            let state = parse(v);
            let o = overview(
                &state,
                &Inputs {
                    now,
                    profiling: false,
                    activity: &none,
                },
            );
            assert_eq!(row(&o), want, "{what}");
        }
    }

    #[test]
    fn a_running_task_shows_the_activity_of_a_partial_stream() {
        // Three whole lines and half of the fourth: the agent wrote a file and is
        // mid-answer; no result yet, so no cost.
        let lines: Vec<&str> = STREAM.lines().collect();
        let partial = format!(
            "{}\n{}\n{}\n{}",
            lines[0],
            lines[1],
            lines[2],
            &lines[3][..40]
        );
        let mut reader = crate::agent::events::EventReader::new();
        reader.feed(partial.as_bytes(), None);
        let mut activity = Activities::new();
        activity.insert("RUN-1".into(), reader.activity().clone());
        let state = parse(json!({
            "agents": {"active_tasks": ["2.1"]},
            "specifications": {"s": {
                "workflow_options": {"agent": "claude", "parallel": 2, "task_timeout_s": 600.0,
                                     "grace_s": 5.0, "attempts": 3, "retry_delay_s": 5.0},
                "tasks": {"2.1": {"id": "2.1", "status": "in_progress", "description": "Write hello",
                                  "agent": "claude", "attempts": 2, "run_id": "RUN-1",
                                  "started_at": "2026-01-01T11:59:00+00:00"}}}}
        }));
        let o = overview(&state, &inputs(false, &activity));
        let r = &o.specs[0].running_tasks[0];
        assert_eq!((r.id.as_str(), r.attempt), ("2.1", 2));
        assert_eq!(r.elapsed_seconds, Some(60.0));
        assert_eq!(r.timeout_seconds, Some(600.0));
        assert_eq!(r.turns, Some(1));
        let tool = r.last_tool.as_ref().unwrap();
        assert_eq!(tool.name, "Write");
        assert_eq!(tool.target.as_deref(), Some("/home/dev/project/hello.txt"));
        assert!(
            r.last_event_at
                .as_deref()
                .is_some_and(|t| t.starts_with("2026-12-01T16:54")),
            "{r:?}"
        );
        assert_eq!(
            r.tokens.map(|t| (t.input, t.output, t.total)),
            Some((1000, 1, 1001))
        );
        assert_eq!(r.cost_usd, None);
        assert!(
            r.session_id
                .as_deref()
                .is_some_and(|s| s.starts_with("40499eed"))
        );
        let v = serde_json::to_value(&o).unwrap();
        let j = &v["specs"][0]["running_tasks"][0];
        for key in ["turns", "last_tool", "last_event_at", "tokens", "cost_usd"] {
            assert!(j.get(key).is_some(), "{key} in {j}");
        }
        assert_eq!(j["last_tool"]["target"], "/home/dev/project/hello.txt");
        // A run whose stream has nothing yet: the task is listed without activity.
        let o = overview(&state, &inputs(false, &Activities::new()));
        let r = &o.specs[0].running_tasks[0];
        assert_eq!((r.turns, r.last_tool.as_ref()), (None, None));
        assert_eq!(running_run_ids(&state), ["RUN-1"]);
    }

    #[test]
    fn lenient_state_keeps_everything_that_parses() {
        let v = json!({
            "workflow": 5,
            "agents": {"active_tasks": ["1"], "total_executions": "many"},
            "specifications": {
                "a": {"description": "Alpha", "cost_usd": {"no": 1},
                      "tasks": [{"id": "1", "status": "in_progress", "attempts": "three"},
                                {"id": 2, "status": "completed"}, "junk"],
                      "completed_phases": [{"phase": "design_creation"}, 7]},
                "b": "not a spec"
            },
            "errors": [{"error": "kept", "component": "x"}, {"error": ["no"]}]
        });
        assert!(serde_json::from_value::<UnifiedState>(v.clone()).is_err());
        let (s, problems) = lenient_state(&v).unwrap();
        let a = &s.specifications["a"];
        assert_eq!(a.description, "Alpha");
        assert_eq!(a.tasks["1"].status, TaskStatus::InProgress);
        assert_eq!(a.tasks["2"].status, TaskStatus::Completed);
        assert_eq!(a.completed_phases.len(), 1);
        assert_eq!(s.agents.active_tasks, ["1"]);
        assert_eq!(s.errors.len(), 2, "the second keeps its other fields");
        assert_eq!(s.errors[0].error, "kept");
        assert_eq!(
            problems,
            [
                "workflow",
                "agents.total_executions",
                "specifications.a.cost_usd",
                "specifications.a.tasks.1.attempts",
                "specifications.a.tasks.2.id",
                "specifications.a.tasks.2",
                "specifications.a.completed_phases.1",
                "specifications.b",
                "errors.1.error"
            ]
        );
        let o = overview(&s, &inputs(false, &Activities::new()));
        assert_eq!(o.specs[0].running, ["1"]);
        assert_eq!(
            lenient_state(&json!([1])).unwrap_err(),
            "the top level is not a JSON object"
        );
        let (_, none) = lenient_state(&serde_json::from_str(PYTHON).unwrap()).unwrap();
        assert!(none.is_empty());
    }

    fn at(s: &str) -> DateTime<Utc> {
        Timestamp::parse(s)
            .unwrap()
            .as_datetime()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn folder(id: &str, unit: RunUnit, attempt: u32, times: [Option<&str>; 4]) -> RunFolder {
        RunFolder {
            id: id.into(),
            unit,
            attempt,
            created_at: at(times[0].unwrap()),
            prompt_at: times[1].map(at),
            output_at: times[2].map(at),
            verify_at: times[3].map(at),
        }
    }

    #[test]
    fn timeline_lanes_stages_and_ends() {
        let t = |id: &str| RunUnit::Task(id.into());
        let runs = vec![
            folder(
                "r-design",
                RunUnit::Phase("design".into()),
                1,
                [
                    Some("2026-01-01T10:00:00Z"),
                    Some("2026-01-01T10:00:01Z"),
                    Some("2026-01-01T10:01:00Z"),
                    None,
                ],
            ),
            // Task 1: first attempt failed (an error names its folder), retried.
            folder(
                "r-1a",
                t("1"),
                1,
                [
                    Some("2026-01-01T10:02:00Z"),
                    Some("2026-01-01T10:02:01Z"),
                    Some("2026-01-01T10:03:00Z"),
                    Some("2026-01-01T10:03:10Z"),
                ],
            ),
            // Task 2 runs alongside task 1: a second lane.
            folder(
                "r-2a",
                t("2"),
                1,
                [
                    Some("2026-01-01T10:02:30Z"),
                    Some("2026-01-01T10:02:31Z"),
                    None,
                    None,
                ],
            ),
            folder(
                "r-1b",
                t("1"),
                2,
                [
                    Some("2026-01-01T10:03:20Z"),
                    Some("2026-01-01T10:03:21Z"),
                    Some("2026-01-01T10:04:00Z"),
                    Some("2026-01-01T10:04:30Z"),
                ],
            ),
        ];
        let state = parse(json!({
            "agents": {"active_tasks": ["2"]},
            "specifications": {"s": {"current_phase": "implementation",
                "completed_phases": [{"phase": "design_creation", "completed_at": "2026-01-01T10:01:05Z"}],
                "tasks": {
                    "1": {"id": "1", "status": "completed", "run_id": "r-1b", "completed_at": "2026-01-01T10:04:40Z"},
                    "2": {"id": "2", "status": "in_progress", "run_id": "r-2a"}}}},
            "errors": [{"component": "workflow", "error": "verify failed",
                        "context": {"spec": "s", "run_dir": "/p/.claude/runs/r-1a",
                                    "outcome": {"kind": "verify_failed", "exit_code": 1}}}]
        }));
        let now = at("2026-01-01T10:05:00Z");
        let tl = timeline(&state, "s", &runs, now).unwrap();
        assert_eq!(tl.start, at("2026-01-01T10:00:00Z"));
        assert_eq!(tl.end, now, "something runs: the timeline reaches now");
        let lanes: Vec<Vec<String>> = tl
            .lanes
            .iter()
            .map(|l| l.iter().map(TimelineRun::label).collect())
            .collect();
        assert_eq!(lanes, [vec!["design #1", "1 #1", "1 #2"], vec!["2 #1"]]);
        let run = |id: &str| tl.lanes.iter().flatten().find(|r| r.run_id == id).unwrap();
        let stages =
            |id: &str| -> Vec<&str> { run(id).segments.iter().map(|s| s.stage.as_str()).collect() };
        assert_eq!(run("r-design").end, RunEnd::Completed);
        assert_eq!(
            run("r-1a").end,
            RunEnd::Failed {
                outcome: Some("verify_failed".into())
            }
        );
        assert_eq!(stages("r-1a"), ["admitted", "running", "verifying"]);
        assert_eq!(
            stages("r-1b"),
            ["queued", "admitted", "running", "verifying", "merging"]
        );
        assert_eq!(
            run("r-1b").segments[0].from,
            at("2026-01-01T10:03:10Z"),
            "queued from the failed attempt's end"
        );
        assert_eq!(
            run("r-1b").finish(),
            Some(at("2026-01-01T10:04:40Z")),
            "merged at completion"
        );
        assert_eq!(run("r-1b").end, RunEnd::Completed);
        assert_eq!(run("r-2a").end, RunEnd::Running);
        assert_eq!(run("r-2a").finish(), Some(now));
        assert!(timeline(&state, "s", &[], now).is_none());
    }
}
