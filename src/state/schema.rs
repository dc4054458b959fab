//! The typed schema of `.claude/unified_state.json` (CONTRACT §3), `schema_version` 1.
//!
//! Every field has a default so files written by the original Python system (missing
//! keys, naive timestamps, `NaN`/`Infinity`, integers of any size: see `number`) load; every struct keeps the keys it does not know in `extra`
//! so a rewrite never drops them. Phase and status values qw does not know are kept as
//! `Other(..)` rather than failing the load.
//!
//! qw's own additions to the original format (`cost_ledger`, a spec's
//! `workflow_options`, a task's `system_stats`, `evidence` and `merge_pending`) are typed
//! fields too, each skipped when absent so the file stays schema 1. They are declared
//! after `extra`, so they are written after the unknown keys, where qw appended them when
//! it kept them in `extra`: a file written by an earlier qw rewrites byte for byte
//! (unless another tool added keys after qw's, or qw's reconcile keys, still in `extra`,
//! came first: then only the order of keys differs).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::number::{Count, ser_f64, ser_opt_f64};
use super::timestamp::Timestamp;

/// The schema version qw writes.
pub(crate) const SCHEMA_VERSION: u32 = 1;
/// How many errors the state keeps (the newest).
pub(crate) const MAX_ERRORS: usize = 100;
/// How many recent commands the state keeps (the newest).
pub(crate) const MAX_RECENT_COMMANDS: usize = 20;

/// Unknown keys of a JSON object, kept verbatim.
pub(crate) type Extra = Map<String, Value>;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value written by another tool that qw does not know; kept as is.
            Other(String),
        }

        impl $name {
            /// The known values, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as written in the state file.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                }
            }

            /// Parse a value; unknown text becomes `Other`.
            pub fn parse(s: &str) -> $name {
                match s {
                    $($text => $name::$variant,)+
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok($name::parse(&s))
            }
        }
    };
}

string_enum!(
    /// A workflow phase, in workflow order.
    Phase {
        /// Project set-up.
        Initialization = "initialization",
        /// Steering documents.
        SteeringSetup = "steering_setup",
        /// The spec was created.
        SpecCreation = "spec_creation",
        /// `requirements.md` is being written.
        RequirementsGeneration = "requirements_generation",
        /// `design.md` is being written.
        DesignCreation = "design_creation",
        /// `tasks.md` is being written.
        TaskGeneration = "task_generation",
        /// Tasks are being run.
        Implementation = "implementation",
        /// The result is being checked.
        Validation = "validation",
        /// Done.
        Complete = "complete",
    }
);

impl Phase {
    /// Position in the workflow order; `None` for unknown phases.
    pub fn index(&self) -> Option<usize> {
        Phase::ALL.iter().position(|p| p == self)
    }

    /// The phase after this one (`complete` stays `complete`); `None` for unknown phases.
    pub fn next(&self) -> Option<Phase> {
        let i = self.index()?;
        Some(Phase::ALL.get(i + 1).unwrap_or(&Phase::Complete).clone())
    }
}

#[allow(clippy::derivable_impls)]
impl Default for Phase {
    fn default() -> Self {
        Phase::Initialization
    }
}

string_enum!(
    /// The status of one task.
    TaskStatus {
        /// Not started (or reset).
        Pending = "pending",
        /// Running now.
        InProgress = "in_progress",
        /// Finished and verified.
        Completed = "completed",
        /// Failed (see `error` and `outcome`).
        Failed = "failed",
        /// Cannot run (a dependency failed or is missing).
        Blocked = "blocked",
    }
);

#[allow(clippy::derivable_impls)]
impl Default for TaskStatus {
    fn default() -> Self {
        TaskStatus::Pending
    }
}

/// The whole state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnifiedState {
    /// Format version; files without it (the original's) are version 1.
    #[serde(default = "schema_version_one")]
    pub schema_version: u32,
    /// When the state was started and last written.
    #[serde(default, deserialize_with = "null_default")]
    pub session: Session,
    /// The project-wide workflow position.
    #[serde(default, deserialize_with = "null_default")]
    pub workflow: Workflow,
    /// Every spec, by name.
    #[serde(default, deserialize_with = "null_default")]
    pub specifications: BTreeMap<String, Spec>,
    /// Agent statistics.
    #[serde(default, deserialize_with = "null_default")]
    pub agents: Agents,
    /// Resource statistics.
    #[serde(default, deserialize_with = "null_default")]
    pub resources: Resources,
    /// The last [`MAX_ERRORS`] errors, oldest first.
    #[serde(default, deserialize_with = "null_default")]
    pub errors: Vec<ErrorRecord>,
    /// Command statistics.
    #[serde(default, deserialize_with = "null_default")]
    pub commands: Commands,
    /// Unknown top-level keys.
    #[serde(flatten)]
    pub extra: Extra,
    /// USD spent on agent runs per local day (qw's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_ledger: Option<CostLedger>,
}

fn schema_version_one() -> u32 {
    SCHEMA_VERSION
}

/// `session`
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Session {
    /// When the state was first written.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// When the state was last written.
    #[serde(default)]
    pub last_updated: Option<Timestamp>,
    /// Version of the tool that started the state.
    #[serde(default)]
    pub version: Option<String>,
    /// Unknown keys.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `workflow`
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Workflow {
    /// The spec the workflow works on.
    #[serde(default)]
    pub current_spec: Option<String>,
    /// The project-wide phase.
    #[serde(default, deserialize_with = "null_default")]
    pub global_phase: Phase,
    /// Whether phases advance automatically.
    #[serde(default, deserialize_with = "null_default")]
    pub auto_progression: bool,
    /// Unknown keys.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One entry of `specifications`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Spec {
    /// The spec name (also its key).
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// What the spec is about.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// Where its workflow stands.
    #[serde(default, deserialize_with = "null_default")]
    pub current_phase: Phase,
    /// When it was created.
    #[serde(default)]
    pub created_at: Option<Timestamp>,
    /// Its tasks, by id (ids compare exactly: `1` is not `1.1`).
    #[serde(default, deserialize_with = "null_default")]
    pub tasks: BTreeMap<String, Task>,
    /// Phases finished so far, in the order they finished.
    #[serde(default, deserialize_with = "null_default")]
    pub completed_phases: Vec<CompletedPhase>,
    /// Share of tasks completed, 0–100.
    #[serde(default, deserialize_with = "lenient_f64", serialize_with = "ser_f64")]
    pub progress_percentage: f64,
    /// Paths of its documents.
    #[serde(default, deserialize_with = "null_default")]
    pub files: SpecFiles,
    /// Money spent on agent runs for this spec, in US dollars.
    #[serde(default, deserialize_with = "lenient_f64", serialize_with = "ser_f64")]
    pub cost_usd: f64,
    /// Paused (usage limit or budget) until this time, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<super::ResetAt>,
    /// Unknown keys.
    #[serde(flatten)]
    pub extra: Extra,
    /// The options its workflow was started with (qw's; written on `RunStarted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_options: Option<WorkflowOptions>,
}

/// One entry of a spec's `completed_phases`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CompletedPhase {
    /// The phase.
    #[serde(default, deserialize_with = "null_default")]
    pub phase: Phase,
    /// When it completed.
    #[serde(default)]
    pub completed_at: Option<Timestamp>,
    /// Unknown keys.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A spec's `files`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SpecFiles {
    /// Path of `requirements.md`.
    #[serde(default)]
    pub requirements: Option<String>,
    /// Path of `design.md`.
    #[serde(default)]
    pub design: Option<String>,
    /// Path of `tasks.md`.
    #[serde(default)]
    pub tasks: Option<String>,
    /// Unknown keys.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One task of a spec.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Task {
    /// Task id as in `tasks.md` (`2.1`).
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    /// The spec it belongs to.
    #[serde(default, deserialize_with = "null_default")]
    pub spec_name: String,
    /// Where it stands.
    #[serde(default, deserialize_with = "null_default")]
    pub status: TaskStatus,
    /// The agent (role) that runs it.
    #[serde(default)]
    pub agent: Option<String>,
    /// Its title.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// When its last attempt started.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// When it completed (or finally failed).
    #[serde(default)]
    pub completed_at: Option<Timestamp>,
    /// The last error message.
    #[serde(default)]
    pub error: Option<String>,
    /// Duration of the last attempt.
    #[serde(
        default,
        deserialize_with = "lenient_opt_f64",
        serialize_with = "ser_opt_f64"
    )]
    pub duration_seconds: Option<f64>,
    /// Attempts made so far.
    #[serde(default, deserialize_with = "null_default")]
    pub attempts: u32,
    /// Outcome of the last run (CONTRACT §9), e.g. `timed_out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Agent cost in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Input tokens used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Output tokens used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Agent turns used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_turns: Option<u32>,
    /// The agent's session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The qw run id (folder under `.claude/runs/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Unknown keys.
    #[serde(flatten)]
    pub extra: Extra,
    /// The machine as its last attempt started (dev mode `resource_monitoring`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_stats: Option<Map<String, Value>>,
    /// The one-line evidence of its last run's outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// While it waits for admission in a running workflow: why, and since when (cleared
    /// when it starts, is not admitted, or the run ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for_admission: Option<AdmissionWait>,
    /// Written by qw before it writes a merge-pending record in the git directory (which
    /// any agent can write; `worktree/pending.rs`): the branch and tip holding the task's
    /// checked work and the check it passed. The only voucher for such a record; cleared
    /// when the task's next attempt starts or ends otherwise. A value of another shape
    /// reads as none (the task then runs again: the safe side).
    #[serde(
        default,
        deserialize_with = "lenient_merge_pending",
        skip_serializing_if = "Option::is_none"
    )]
    pub merge_pending: Option<MergePending>,
}

/// What qw left merge-pending of a task ([`Task::merge_pending`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MergePending {
    /// The task branch (`qw/<spec>/<id>`).
    pub branch: String,
    /// The saved tip qw merges.
    pub tip: String,
    /// The task's `_Verify:_` command the work passed (none: it had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

/// [`Task::merge_pending`] of any other shape (an earlier qw's bare branch name, `null`)
/// is none: such a record is not vouched for, and the task runs again.
fn lenient_merge_pending<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<MergePending>, D::Error> {
    Ok(serde_json::from_value(Value::deserialize(d)?).ok())
}

/// A task's wait for admission ([`Task::waiting_for_admission`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AdmissionWait {
    /// What holds it back (the limits, the queue), as the run's progress line says.
    #[serde(default, deserialize_with = "null_default")]
    pub why: String,
    /// When the wait began.
    #[serde(default)]
    pub since: Option<Timestamp>,
}

/// The top-level `cost_ledger`: USD spent on agent runs per local day (`YYYY-MM-DD`),
/// read by the daily cost ceiling. Days are kept in file order; a value that is no
/// number is kept as written and counts as nothing spent.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CostLedger {
    /// Day → USD.
    #[serde(flatten)]
    pub days: Extra,
}

impl CostLedger {
    /// USD spent on `day` (`YYYY-MM-DD`); 0 when not recorded.
    pub fn spent_on(&self, day: &str) -> f64 {
        self.days.get(day).and_then(Value::as_f64).unwrap_or(0.0)
    }

    /// Add `usd` to `day`.
    pub fn add(&mut self, day: &str, usd: f64) {
        let total = self.spent_on(day) + usd;
        self.days.insert(day.to_owned(), Value::from(total));
    }
}

/// A spec's `workflow_options`: how its workflow was started, so `workflow-continue`
/// resumes alike. The state keeps the members as written; their meaning is
/// `workflow::Options`, which reads and writes them (`Options::from_saved`, `saved`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WorkflowOptions {
    /// The options, by name, in the order written.
    #[serde(flatten)]
    pub members: Extra,
}

/// `agents`
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Agents {
    /// Statistics per agent.
    #[serde(default, deserialize_with = "null_default")]
    pub performance: BTreeMap<String, AgentPerformance>,
    /// Ids of tasks running now.
    #[serde(default, deserialize_with = "null_default")]
    pub active_tasks: Vec<String>,
    /// Agent runs ever.
    #[serde(default, deserialize_with = "null_default")]
    pub total_executions: Count,
    /// Unknown keys.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One agent's statistics.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AgentPerformance {
    /// Runs.
    #[serde(default, deserialize_with = "null_default")]
    pub executions: Count,
    /// Successful runs.
    #[serde(default, deserialize_with = "null_default")]
    pub successes: Count,
    /// Failed runs.
    #[serde(default, deserialize_with = "null_default")]
    pub failures: Count,
    /// Seconds spent in all runs.
    #[serde(default, deserialize_with = "lenient_f64", serialize_with = "ser_f64")]
    pub total_duration: f64,
    /// Seconds per run.
    #[serde(default, deserialize_with = "lenient_f64", serialize_with = "ser_f64")]
    pub average_duration: f64,
    /// When it last ran.
    #[serde(default)]
    pub last_execution: Option<Timestamp>,
    /// Unknown keys.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `resources`
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Resources {
    /// Most tasks ever running at once.
    #[serde(default, deserialize_with = "null_default")]
    pub peak_concurrent_tasks: Count,
    /// Tasks ever run.
    #[serde(default, deserialize_with = "null_default")]
    pub total_tasks_executed: Count,
    /// The last probe values (free-form).
    #[serde(default, deserialize_with = "null_default")]
    pub system_stats: Map<String, Value>,
    /// Unknown keys.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One entry of `errors`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// When it happened.
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// Which part of the system reported it.
    #[serde(default, deserialize_with = "null_default")]
    pub component: String,
    /// The message.
    #[serde(default, deserialize_with = "null_default")]
    pub error: String,
    /// Free-form details; `spec` (or `spec_name`) ties it to a spec.
    #[serde(default, deserialize_with = "null_default")]
    pub context: Value,
    /// Unknown keys.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ErrorRecord {
    /// True when this error belongs to `spec`: its context names the spec (`spec` or
    /// `spec_name`), or its `command` has the spec name as a word (the original's
    /// `/spec-implement user-auth 10`).
    pub fn concerns_spec(&self, spec: &str) -> bool {
        let Some(ctx) = self.context.as_object() else {
            return false;
        };
        let named = ["spec", "spec_name"]
            .iter()
            .any(|k| ctx.get(*k).and_then(Value::as_str) == Some(spec));
        let in_command = ctx.get("command").and_then(Value::as_str).is_some_and(|c| {
            c.split(|ch: char| ch.is_whitespace() || ch == '"' || ch == '\'')
                .any(|w| w == spec)
        });
        named || in_command
    }
}

/// `commands`
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Commands {
    /// Commands ever recorded.
    #[serde(default, deserialize_with = "null_default")]
    pub total_executed: Count,
    /// The last [`MAX_RECENT_COMMANDS`], oldest first.
    #[serde(default, deserialize_with = "null_default")]
    pub recent_commands: Vec<CommandRecord>,
    /// Unknown keys.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One entry of `recent_commands`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CommandRecord {
    /// The command line.
    #[serde(default, deserialize_with = "null_default")]
    pub command: String,
    /// When it ran.
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
    /// Whether it succeeded.
    #[serde(default, deserialize_with = "null_default")]
    pub success: bool,
    /// Unknown keys.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for UnifiedState {
    fn default() -> Self {
        UnifiedState::new()
    }
}

impl UnifiedState {
    /// A fresh state, started now.
    pub fn new() -> UnifiedState {
        let now = Timestamp::now();
        UnifiedState {
            schema_version: SCHEMA_VERSION,
            session: Session {
                started_at: Some(now.clone()),
                last_updated: Some(now),
                version: Some(format!("qw {}", env!("CARGO_PKG_VERSION"))),
                extra: Extra::new(),
            },
            workflow: Workflow::default(),
            specifications: BTreeMap::new(),
            agents: Agents::default(),
            resources: Resources::default(),
            errors: Vec::new(),
            commands: Commands::default(),
            extra: Extra::new(),
            cost_ledger: None,
        }
    }

    /// Append an error, keeping the last [`MAX_ERRORS`].
    pub fn record_error(&mut self, component: &str, error: &str, context: Value) {
        self.errors.push(ErrorRecord {
            timestamp: Some(Timestamp::now()),
            component: component.to_owned(),
            error: error.to_owned(),
            context,
            extra: Extra::new(),
        });
        trim_front(&mut self.errors, MAX_ERRORS);
    }

    /// Count a command and append it to the recent ones, keeping the last
    /// [`MAX_RECENT_COMMANDS`].
    pub fn record_command(&mut self, command: &str, success: bool) {
        self.commands.total_executed += 1;
        self.commands.recent_commands.push(CommandRecord {
            command: command.to_owned(),
            timestamp: Some(Timestamp::now()),
            success,
            extra: Extra::new(),
        });
        trim_front(&mut self.commands.recent_commands, MAX_RECENT_COMMANDS);
    }

    /// Structure checks serde cannot express; a failure means the file is corrupt.
    pub fn check(&self) -> Result<(), String> {
        // Non-finite floats are not checked: the original wrote `NaN` and `Infinity`, and
        // they are kept as they are.
        if self.schema_version == 0 {
            return Err("`schema_version` is 0".into());
        }
        Ok(())
    }

    /// One line about where the workflow stands, e.g. `user-auth: implementation (2 specs)`.
    pub fn phase_summary(&self) -> String {
        let specs = self.specifications.len();
        let current = self
            .workflow
            .current_spec
            .as_deref()
            .and_then(|n| self.specifications.get(n).map(|s| (n, s)));
        match current {
            Some((name, spec)) => format!(
                "{name}: {} ({specs} spec{})",
                spec.current_phase,
                if specs == 1 { "" } else { "s" }
            ),
            None => format!(
                "{} ({specs} spec{})",
                self.workflow.global_phase,
                if specs == 1 { "" } else { "s" }
            ),
        }
    }
}

/// `null` where a value belongs means "not set": use the default instead of failing.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A number of seconds as the original may have written it: a number, `null`, a numeric
/// string, or a Python `timedelta` through `default=str` (`0:05:00`, `1 day, 2:00:00.5`).
fn lenient_opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => Ok(n.as_f64()),
        Value::String(s) => match crate::jsontext::token_of(&s) {
            // NaN, Infinity, or a number too large for serde_json (see `number`).
            Some(token) => crate::jsontext::token_f64(token)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("`{token}` is not a number"))),
            None => parse_seconds(&s).map(Some).ok_or_else(|| {
                serde::de::Error::custom(format!("`{s}` is not a number of seconds"))
            }),
        },
        other => Err(serde::de::Error::custom(format!(
            "expected a number of seconds, found {other}"
        ))),
    }
}

fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(lenient_opt_f64(d)?.unwrap_or_default())
}

/// Seconds from `12.5`, `0:05:00`, `2:03:04.250000` or `3 days, 1:00:00`.
fn parse_seconds(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return Some(v);
    }
    let (days, clock) = match s.split_once(", ") {
        Some((d, c)) => {
            let n = d.split_whitespace().next()?.parse::<f64>().ok()?;
            (n, c)
        }
        None => (0.0, s),
    };
    let mut parts = clock.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let sec: f64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(days * 86_400.0 + h * 3600.0 + m * 60.0 + sec)
}

/// Drop the oldest entries of `v` until at most `keep` are left.
fn trim_front<T>(v: &mut Vec<T>, keep: usize) {
    let excess = v.len().saturating_sub(keep);
    v.drain(..excess);
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn phases_order_and_next() {
        assert_eq!(Phase::TaskGeneration.next(), Some(Phase::Implementation));
        assert_eq!(Phase::Complete.next(), Some(Phase::Complete));
        assert_eq!(Phase::parse("weird").next(), None);
        assert_eq!(Phase::ALL.len(), 9);
    }

    #[test]
    fn unknown_enum_values_and_keys_survive() {
        let json = r#"{"id":"1","status":"skipped","flavour":"x","attempts":2}"#;
        let t: Task = serde_json::from_str(json).unwrap();
        assert_eq!(t.status, TaskStatus::Other("skipped".into()));
        assert_eq!(t.extra.get("flavour"), Some(&Value::from("x")));
        let back = serde_json::to_value(&t).unwrap();
        assert_eq!(back["status"], "skipped");
        assert_eq!(back["flavour"], "x");
        assert!(back.get("outcome").is_none(), "None extras are skipped");
    }

    #[test]
    fn python_nulls_and_timedeltas_load() {
        let json = r#"{
            "workflow": null,
            "errors": null,
            "specifications": {"a": {"name": null, "description": null, "tasks": {
                "1": {"id": "1", "status": "failed", "duration_seconds": "0:05:00.5"},
                "2": {"id": "2", "duration_seconds": "1 day, 1:00:00"},
                "3": {"id": "3", "duration_seconds": "12.5"}
            }, "progress_percentage": null}},
            "agents": {"performance": {"dev": {"total_duration": "0:00:30", "executions": 2}}}
        }"#;
        let s: UnifiedState = serde_json::from_str(json).unwrap();
        let t = &s.specifications["a"].tasks;
        assert_eq!(t["1"].duration_seconds, Some(300.5));
        assert_eq!(t["2"].duration_seconds, Some(90_000.0));
        assert_eq!(t["3"].duration_seconds, Some(12.5));
        assert_eq!(s.agents.performance["dev"].total_duration, 30.0);
        assert!(s.errors.is_empty());
        assert_eq!(s.workflow.global_phase, Phase::Initialization);
        let bad = r#"{"specifications": {"a": {"tasks": {"1": {"duration_seconds": "soon"}}}}}"#;
        assert!(serde_json::from_str::<UnifiedState>(bad).is_err());
    }

    #[test]
    fn lists_are_bounded() {
        let mut s = UnifiedState::new();
        for i in 0..150 {
            s.record_error("c", &format!("e{i}"), Value::Null);
        }
        for i in 0..30 {
            s.record_command(&format!("c{i}"), i % 2 == 0);
        }
        assert_eq!(s.errors.len(), MAX_ERRORS);
        assert_eq!(s.errors[0].error, "e50");
        assert_eq!(s.commands.total_executed, 30);
        assert_eq!(s.commands.recent_commands.len(), MAX_RECENT_COMMANDS);
        assert_eq!(s.commands.recent_commands[0].command, "c10");
    }

    #[test]
    fn errors_concern_specs_by_context() {
        let e = |ctx: Value| ErrorRecord {
            context: ctx,
            ..ErrorRecord::default()
        };
        assert!(e(serde_json::json!({"spec": "a"})).concerns_spec("a"));
        assert!(e(serde_json::json!({"command": "/spec-implement a 10"})).concerns_spec("a"));
        assert!(!e(serde_json::json!({"command": "/spec-implement ab 10"})).concerns_spec("a"));
        assert!(!e(Value::Null).concerns_spec("a"));
        // The original's other key, and a command that quotes the name either way.
        assert!(e(serde_json::json!({"spec_name": "a"})).concerns_spec("a"));
        assert!(!e(serde_json::json!({"spec_name": "b"})).concerns_spec("a"));
        assert!(e(serde_json::json!({"command": "/spec-implement \"a\" 10"})).concerns_spec("a"));
        assert!(e(serde_json::json!({"command": "run 'a'"})).concerns_spec("a"));
        assert!(e(serde_json::json!({"command": "run\ta"})).concerns_spec("a"));
        assert!(!e(serde_json::json!({"command": "/spec-implement a-b 10"})).concerns_spec("a"));
    }

    #[test]
    fn a_file_without_a_version_is_version_one_and_version_zero_is_corrupt() {
        let s: UnifiedState = serde_json::from_str("{}").unwrap();
        assert_eq!(s.schema_version, 1);
        assert_eq!(s.check(), Ok(()));
        let zero: UnifiedState = serde_json::from_str(r#"{"schema_version": 0}"#).unwrap();
        assert_eq!(zero.check(), Err("`schema_version` is 0".to_owned()));
        let two: UnifiedState = serde_json::from_str(r#"{"schema_version": 2}"#).unwrap();
        assert_eq!(two.check(), Ok(()));
    }

    #[test]
    fn the_phase_summary_names_the_current_spec_or_the_global_phase() {
        let mut s = UnifiedState::new();
        assert_eq!(s.phase_summary(), "initialization (0 specs)");
        let spec = Spec {
            current_phase: Phase::Implementation,
            ..Spec::default()
        };
        s.specifications.insert("user-auth".into(), spec.clone());
        s.workflow.global_phase = Phase::Validation;
        assert_eq!(s.phase_summary(), "validation (1 spec)");
        s.workflow.current_spec = Some("user-auth".into());
        assert_eq!(s.phase_summary(), "user-auth: implementation (1 spec)");
        s.specifications.insert("billing".into(), spec);
        assert_eq!(s.phase_summary(), "user-auth: implementation (2 specs)");
        // A current spec the file does not hold: the global phase.
        s.workflow.current_spec = Some("gone".into());
        assert_eq!(s.phase_summary(), "validation (2 specs)");
    }

    #[test]
    fn trimming_keeps_the_newest_whatever_the_excess() {
        let mut v: Vec<u32> = (0..10).collect();
        trim_front(&mut v, 3);
        assert_eq!(v, [7, 8, 9]);
        trim_front(&mut v, 3);
        assert_eq!(v, [7, 8, 9]);
        trim_front(&mut v, 5);
        assert_eq!(v, [7, 8, 9]);
    }

    #[test]
    fn every_phase_knows_its_place() {
        for (i, p) in Phase::ALL.iter().enumerate() {
            assert_eq!(p.index(), Some(i), "{p}");
        }
        assert_eq!(Phase::Initialization.next(), Some(Phase::SteeringSetup));
        assert_eq!(Phase::Validation.next(), Some(Phase::Complete));
        assert_eq!(Phase::parse("weird").index(), None);
    }
}
