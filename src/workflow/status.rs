//! What `qw status` and `qw spec-status` report, computed from a loaded state (and, for
//! one spec, its `tasks.md`): pure functions returning serializable views.
//!
//! Owns: task counts, progress, the last error of a spec, cost and token sums, phase and
//! task timings, and the next step to suggest. Must not: read or write files, print, or
//! lock the state — the CLI loads once and hands the state in, so a 10 000-task state is
//! parsed once and walked once.

use std::cmp::Ordering;
use std::collections::HashSet;

use serde::Serialize;

use crate::spec::Documents;
use crate::spec::tasks::TaskList;
use crate::state::{
    self, ErrorRecord, Phase, TaskStatus, Timestamp, UnifiedState, schema::CompletedPhase,
};

use super::OPTIONS_KEY;

/// `qw status`: every spec in the state plus project-wide figures.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
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
pub struct SpecStatus {
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
    pub paused_until: Option<String>,
    /// Its task ids that are in `agents.active_tasks` and in progress.
    pub running: Vec<String>,
    /// The newest error that concerns it.
    pub last_error: Option<LastError>,
    /// The command to run next, if any.
    pub next_step: Option<String>,
    /// Phase and task timings (only with dev mode `performance_profiling`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
}

/// Task counts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TaskCounts {
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
    pub fn percent(&self) -> Option<f64> {
        (self.total > 0).then(|| self.completed as f64 * 100.0 / self.total as f64)
    }
}

/// Token sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tokens {
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
pub struct LastError {
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
pub struct Timings {
    /// Completed phases in the order they completed.
    pub phases: Vec<PhaseTiming>,
    /// Tasks in id order.
    pub tasks: Vec<TaskTiming>,
    /// Sum of the tasks' `duration_seconds`.
    pub task_seconds_total: f64,
}

/// One completed phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseTiming {
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
pub struct TaskTiming {
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
pub struct SpecDetail {
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
    pub paused_until: Option<String>,
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
pub struct TaskDetail {
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
}

/// Compute `qw status` from a loaded state.
pub fn overview(state: &UnifiedState, profiling: bool) -> Overview {
    let active: HashSet<&str> = state
        .agents
        .active_tasks
        .iter()
        .map(String::as_str)
        .collect();
    let specs = state
        .specifications
        .iter()
        .map(|(name, spec)| spec_status(state, name, spec, &active, profiling))
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
        performance_profiling: profiling,
    }
}

fn spec_status(
    state: &UnifiedState,
    name: &str,
    spec: &state::Spec,
    active: &HashSet<&str>,
    profiling: bool,
) -> SpecStatus {
    let mut counts = TaskCounts::default();
    let mut tokens = Tokens::default();
    let mut running = Vec::new();
    for (key, t) in &spec.tasks {
        counts.add(&t.status);
        tokens.add(t);
        let id = task_id(key, t);
        if t.status == TaskStatus::InProgress && active.contains(id) {
            running.push(id.to_owned());
        }
    }
    running.sort_by(|a, b| compare_ids(a, b));
    let last_error = last_error(state, name);
    let timings = profiling.then(|| timings(spec));
    SpecStatus {
        name: name.to_owned(),
        description: spec.description.clone(),
        phase: spec.current_phase.to_string(),
        tasks: counts,
        progress_percentage: counts.percent().unwrap_or(spec.progress_percentage),
        cost_usd: spec.cost_usd,
        tokens,
        paused_until: spec.paused_until.clone(),
        running,
        next_step: next_step(name, Some(spec), &counts, last_error.is_some()),
        last_error,
        timings,
    }
}

/// The id a task is shown under: its `id`, else its key in the map.
fn task_id<'a>(key: &'a str, t: &'a state::Task) -> &'a str {
    if t.id.is_empty() { key } else { &t.id }
}

/// The newest entry of `errors` that concerns `spec`.
pub fn last_error(state: &UnifiedState, spec: &str) -> Option<LastError> {
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
pub fn next_step(
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
    let started = spec.extra.contains_key(OPTIONS_KEY) || !spec.tasks.is_empty();
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

/// Phase timings in completion order and task durations in id order.
pub fn timings(spec: &state::Spec) -> Timings {
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
    tasks.sort_by(|a, b| compare_ids(&a.id, &b.id));
    let task_seconds_total = tasks.iter().filter_map(|t| t.duration_seconds).sum();
    Timings {
        phases: phase_timings(spec),
        tasks,
        task_seconds_total,
    }
}

/// Completed phases sorted by completion time (entries without a time keep their place
/// at the end); each one's seconds since the previous one (or since `created_at`).
pub fn phase_timings(spec: &state::Spec) -> Vec<PhaseTiming> {
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
                (Some(a), Some(b)) => Some((b - a).num_microseconds().unwrap_or(0) as f64 / 1e6),
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
pub fn spec_detail(
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
    let by_id = |id: &str| -> Option<&state::Task> {
        let s = spec?;
        s.tasks.get(id).or_else(|| {
            s.tasks
                .iter()
                .find(|(k, t)| task_id(k, t) == id)
                .map(|(_, t)| t)
        })
    };
    let mut rows = Vec::new();
    let mut shown: HashSet<String> = HashSet::new();
    if let Some(list) = list {
        for leaf in list.leaves() {
            let st = by_id(&leaf.id);
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
            shown.insert(leaf.id.clone());
        }
    }
    if let Some(s) = spec {
        let mut extra: Vec<(&str, &state::Task)> = s
            .tasks
            .iter()
            .map(|(k, t)| (task_id(k, t), t))
            .filter(|(id, _)| !shown.contains(*id))
            .collect();
        extra.sort_by(|a, b| compare_ids(a.0, b.0));
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
        outcome: st.and_then(|t| t.outcome.clone()),
        error: st.and_then(|t| t.error.clone()),
        depends,
    }
}

/// Order task ids as people read them: `1 < 1.1 < 1.2 < 2 < 10`. Numeric segments
/// compare as numbers, others as text.
pub fn compare_ids(a: &str, b: &str) -> Ordering {
    let mut x = a.split('.');
    let mut y = b.split('.');
    loop {
        match (x.next(), y.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => {
                let o = match (p.parse::<u64>(), q.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => p.cmp(q),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let o = overview(&state(), false);
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
        let o = overview(&state(), true);
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
    fn compare_ids_is_natural() {
        let mut ids = vec!["10", "2", "1.10", "1.2", "1", "b", "a", "1.a"];
        ids.sort_by(|a, b| compare_ids(a, b));
        assert_eq!(ids, ["1", "1.2", "1.10", "1.a", "2", "10", "a", "b"]);
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
}
