//! Truthful classification of one agent run (CONTRACT §9).
//!
//! Owns: turning an [`ExecReport`] plus the captured stdout/stderr into exactly one
//! [`Outcome`] with a one-line evidence, and the cost, tokens and turns the run reported.
//! Must not: run processes, read files or write state — callers pass the bytes in.
//!
//! Rules, in order: the caller cancelled → `killed_by_user`; a batch scheduler's verdict
//! (Slurm: NODE_FAIL/PREEMPTED/BOOT_FAIL → `lost`, OUT_OF_MEMORY → `crashed` with signal 9,
//! TIMEOUT → `timed_out`, CANCELLED → `killed_by_user`); a signal reached the supervisor →
//! `killed_by_user`; the time limit → `timed_out`; the stall watchdog → `stalled`; the
//! program could not be started → `agent_error`; the child died of a signal → `crashed`.
//! Otherwise the final result is the last `result` object on stdout (the last line of a
//! `stream-json` event stream, or the one object `--output-format json` prints; any
//! last JSON object when none says `"type": "result"`): it is judged by the exit code
//! and `is_error`, never by `subtype` (Claude Code prints `is_error: true` beside
//! `subtype: "success"` when nobody is logged in). Stdout that ends mid-object, or an
//! event stream that ends before its `result`, is `truncated`; empty or non-JSON stdout
//! is `no_result`. A refused edit (`permission_denials` naming `Write`, `Edit`, …) fails
//! an implementation or validation run even when `is_error` is false — the work the agent
//! claims is not on disk; a refused command (`Bash`, a fetch) is only noted in the
//! evidence, and the task's `_Verify:_` judges the work — if that check then fails, the
//! workflow makes the task `permission_denied` (a retry meets the same refusal) with the
//! verify's failure and the refusal in one evidence. Either way the evidence names each
//! refusal and the way out ([`super::permissions`]); for a document phase the document
//! decides ([`super::document`]).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Phase;
use super::captured::{AsCaptured, Captured};
use super::events::{self, Denial};
use crate::exec::ExecReport;
use crate::fmt::{clip, fold_whitespace};
use crate::state::ResetAt;

/// How one agent run ended. Exactly one per run; serialized as
/// `{"kind": "timed_out", "escalated": false}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Exit 0, a parsable result with `is_error` false (and, for tasks, verify passed).
    Succeeded,
    /// The wall-clock limit ended the run.
    TimedOut {
        /// SIGKILL was needed after the grace.
        escalated: bool,
    },
    /// No output and no CPU use for the stall timeout; ended like a timeout.
    Stalled {
        /// SIGKILL was needed after the grace.
        escalated: bool,
    },
    /// The user (or the workflow on the user's behalf) stopped the run.
    KilledByUser {
        /// The signal forwarded to the tree, if known.
        signal: Option<i32>,
    },
    /// The agent died of a signal nobody sent on purpose.
    Crashed {
        /// The signal number.
        signal: i32,
    },
    /// The batch scheduler lost the run: its node failed or it was preempted (Slurm
    /// NODE_FAIL, PREEMPTED, BOOT_FAIL). Nothing is known to be wrong with the agent.
    Lost {
        /// The scheduler's state name.
        state: String,
    },
    /// Nothing usable on stdout: empty, not JSON, or JSON that is not a result.
    NoResult {
        /// The agent's exit code.
        exit_code: i32,
    },
    /// Stdout starts a JSON result but ends mid-object.
    Truncated {
        /// How many bytes stdout held.
        bytes: usize,
    },
    /// The agent reported an error (or could not be started).
    AgentError {
        /// What kind of error, which decides whether a retry can help.
        cause: ErrorCause,
        /// The agent's exit code.
        exit_code: i32,
    },
    /// The agent ran out of turns (`subtype: error_max_turns`).
    MaxTurns {
        /// Turns used, when reported.
        turns: Option<u32>,
    },
    /// The agent failed because tools were denied (`permission_denials`).
    PermissionDenied {
        /// The denied tool names.
        tools: Vec<String>,
    },
    /// A usage or rate limit stopped the agent; the workflow pauses.
    UsageLimited,
    /// Resource admission did not admit the run before it gave up waiting
    /// (`resource_limits.acquire_timeout_s`): no agent ran, nothing was tried. The task
    /// stays pending; `workflow-continue` runs it.
    NotAdmitted,
    /// A cost ceiling would be crossed; the workflow stops (resumable).
    BudgetExceeded {
        /// Which ceiling (`per_task`, `per_run`, `daily`).
        limit: String,
        /// The ceiling in USD.
        limit_usd: f64,
        /// What was spent against it.
        spent_usd: f64,
        /// What the refused run (and the runs in flight) were expected to cost: the
        /// largest run so far in this workflow.
        #[serde(default)]
        expected_usd: f64,
    },
    /// The agent said it succeeded but the task's `_Verify:_` command failed.
    VerifyFailed {
        /// The verify command's exit code (None: it could not be started or was killed).
        exit_code: Option<i32>,
    },
    /// Merging the task's worktree branch conflicted (CONTRACT §10).
    MergeConflict {
        /// The conflicting paths.
        paths: Vec<String>,
    },
    /// One of qw's own git steps for the task's worktree failed (CONTRACT §10): not the
    /// agent's failure, so never retried as one; the work is kept on the task's branch.
    WorkspaceError {
        /// Which step.
        step: WorkspaceStep,
    },
}

/// Which of qw's git steps failed for [`Outcome::WorkspaceError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkspaceStep {
    /// Making (or reusing) the task's worktree, before the agent ran.
    Prepare,
    /// Saving what the worktree holds on the task's branch.
    Commit,
    /// Merging the branch into the integration branch.
    Merge,
}

/// Why an agent reported an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCause {
    /// Not logged in / bad credentials: retrying cannot help.
    Login,
    /// The agent program could not be started (not found, not executable).
    NotStarted,
    /// Any other error the agent reported (API overloaded, tool failure, exit code ≠ 0).
    Reported,
    /// The agent refused its command line (an unknown flag, `bypassPermissions` as
    /// root): retrying cannot help.
    Arguments,
    /// A resumed run named a session the agent does not have (`--resume ID`): the
    /// same resume cannot help; start a fresh run instead.
    NoSession,
    /// The agent's answer is larger than qw takes (a document answer over
    /// [`crate::spec::MAX_DOCUMENT_BYTES`], a last line over
    /// [`super::captured::READ_BACK_BYTES`]): the same run would give the same answer.
    TooLarge,
}

impl Outcome {
    /// The snake_case name (`timed_out`, …), as stored in the state and the report.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::TimedOut { .. } => "timed_out",
            Outcome::Stalled { .. } => "stalled",
            Outcome::KilledByUser { .. } => "killed_by_user",
            Outcome::Crashed { .. } => "crashed",
            Outcome::Lost { .. } => "lost",
            Outcome::NoResult { .. } => "no_result",
            Outcome::Truncated { .. } => "truncated",
            Outcome::AgentError { .. } => "agent_error",
            Outcome::MaxTurns { .. } => "max_turns",
            Outcome::PermissionDenied { .. } => "permission_denied",
            Outcome::UsageLimited => "usage_limited",
            Outcome::NotAdmitted => "not_admitted",
            Outcome::BudgetExceeded { .. } => "budget_exceeded",
            Outcome::VerifyFailed { .. } => "verify_failed",
            Outcome::MergeConflict { .. } => "merge_conflict",
            Outcome::WorkspaceError { .. } => "workspace_error",
        }
    }

    /// True only for [`Outcome::Succeeded`].
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Succeeded)
    }

    /// Can another attempt plausibly succeed without spending money or time for nothing?
    ///
    /// Retried: `timed_out`, `stalled`, `crashed`, `lost`, `no_result`, `truncated`, a reported
    /// `agent_error` (e.g. API overloaded) and `verify_failed` (the agent gets another
    /// go). Never: `budget_exceeded`, `not_admitted`, `permission_denied`,
    /// `usage_limited`, a login or start-up `agent_error`, `max_turns` (the same limit
    /// would be hit again),
    /// `killed_by_user`, `merge_conflict`, `workspace_error` (the agent did its part).
    pub fn is_retryable(&self) -> bool {
        match self {
            Outcome::TimedOut { .. }
            | Outcome::Stalled { .. }
            | Outcome::Crashed { .. }
            | Outcome::Lost { .. }
            | Outcome::NoResult { .. }
            | Outcome::Truncated { .. }
            | Outcome::VerifyFailed { .. } => true,
            Outcome::AgentError { cause, .. } => *cause == ErrorCause::Reported,
            Outcome::Succeeded
            | Outcome::KilledByUser { .. }
            | Outcome::MaxTurns { .. }
            | Outcome::PermissionDenied { .. }
            | Outcome::UsageLimited
            | Outcome::NotAdmitted
            | Outcome::BudgetExceeded { .. }
            | Outcome::MergeConflict { .. }
            | Outcome::WorkspaceError { .. } => false,
        }
    }

    /// Does this outcome count against the agent (its performance record)? Not when it
    /// succeeded, nor when qw's own workspace step failed after it did, nor when it
    /// never ran (not admitted).
    pub fn counts_against_agent(&self) -> bool {
        !matches!(
            self,
            Outcome::Succeeded | Outcome::WorkspaceError { .. } | Outcome::NotAdmitted
        )
    }

    /// Should the workflow pause (exit 3, resumable) rather than fail?
    pub fn pauses_workflow(&self) -> bool {
        matches!(self, Outcome::UsageLimited | Outcome::BudgetExceeded { .. })
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything known about one finished agent run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRun {
    /// How it ended.
    pub outcome: Outcome,
    /// One line saying why this outcome (exit code, flag, message, stderr line).
    pub evidence: String,
    /// The result text the agent printed (`result`), if any.
    pub result_text: Option<String>,
    /// USD this run cost (see [`events::run_cost_usd`]; 0 when unknown).
    pub cost_usd: f64,
    /// Input tokens (`usage.input_tokens`).
    pub input_tokens: u64,
    /// Output tokens (`usage.output_tokens`).
    pub output_tokens: u64,
    /// Tokens written to the prompt cache (`usage.cache_creation_input_tokens`).
    pub cache_creation_tokens: u64,
    /// Tokens read from the prompt cache (`usage.cache_read_input_tokens`).
    pub cache_read_tokens: u64,
    /// Turns used (`num_turns`).
    pub num_turns: u32,
    /// The agent's session id, to resume or inspect the conversation.
    pub session_id: Option<String>,
    /// When a usage limit resets: RFC 3339 when qw could compute it, else as the agent
    /// wrote it; None when unknown.
    pub resets_at: Option<ResetAt>,
    /// True when stdout held a JSON result object; false for a command agent that
    /// printed plain text (then only its exit code and the caller's checks count).
    pub structured: bool,
    /// The agent's exit code as `qw exec` reported it.
    pub exit_code: i32,
    /// Wall-clock duration in milliseconds.
    pub duration_ms: u64,
    /// Permissions the agent was refused (`permission_denials`), whatever the outcome.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denials: Vec<Denial>,
    /// Set by the workflow's worktree step, never by an agent: the task branch on which
    /// qw saved this run's checked work and left only its merge missing (the agent does
    /// not run again). The recorder keeps it as the task's `merge_pending` in the state,
    /// which is what vouches for the git directory's pending record (rev7 R1).
    #[serde(skip)]
    pub merge_pending: Option<String>,
}

impl AgentRun {
    /// A run with this outcome and evidence and nothing else known (for outcomes the
    /// caller decides, such as `budget_exceeded` before an agent starts).
    pub fn from_outcome(outcome: Outcome, evidence: impl Into<String>) -> AgentRun {
        AgentRun {
            outcome,
            evidence: evidence.into(),
            result_text: None,
            cost_usd: 0.0,
            input_tokens: 0,
            output_tokens: 0,
            cache_creation_tokens: 0,
            cache_read_tokens: 0,
            num_turns: 0,
            session_id: None,
            resets_at: None,
            structured: false,
            exit_code: 0,
            duration_ms: 0,
            denials: Vec::new(),
            merge_pending: None,
        }
    }
}

/// What [`classify`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct ClassifyInput<'a> {
    /// How the supervised process ended.
    pub report: &'a ExecReport,
    /// What the agent wrote to stdout (the run's `events.jsonl` for claude): a
    /// [`Captured`] output, held bounded, or bytes held whole.
    pub stdout: &'a dyn AsCaptured,
    /// The last lines of stderr (see [`tail_lines`]).
    pub stderr_tail: &'a str,
    /// The phase the run was for.
    pub phase: Phase,
    /// The caller asked the run to stop.
    pub user_cancelled: bool,
}

/// What the stdout held.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Nothing but whitespace.
    Empty,
    /// Text that holds no JSON object.
    NotJson,
    /// A JSON object started and the output ended inside it.
    Truncated,
    /// The last complete JSON object.
    Object(serde_json::Map<String, Value>),
}

/// Find the final JSON object in `stdout`, leniently: log lines before it, several objects
/// (stream mode), and text after it are all accepted. The last object whose `type` is
/// `result` wins; without one, the last object.
pub fn parse_last_object(stdout: &[u8]) -> Parsed {
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Parsed::Empty;
    }
    let mut last: Option<serde_json::Map<String, Value>> = None;
    let mut last_result: Option<serde_json::Map<String, Value>> = None;
    let mut pos = next_object_start(stdout, 0);
    while let Some(start) = pos {
        let mut stream =
            serde_json::Deserializer::from_slice(&stdout[start..]).into_iter::<Value>();
        let mut resume = start + 1;
        loop {
            match stream.next() {
                Some(Ok(value)) => {
                    resume = start + stream.byte_offset();
                    if let Value::Object(map) = value {
                        if map.get("type").and_then(Value::as_str) == Some("result") {
                            last_result = Some(map.clone());
                        }
                        last = Some(map);
                    }
                }
                Some(Err(e)) if e.is_eof() => {
                    // The output ends inside a value: whatever came before, the final
                    // result never arrived whole.
                    return Parsed::Truncated;
                }
                Some(Err(_)) | None => break,
            }
        }
        // `resume` is past `start`: after the last value read, or one byte on.
        pos = next_object_start(stdout, resume);
    }
    match last_result.or(last) {
        Some(map) => Parsed::Object(map),
        None => Parsed::NotJson,
    }
}

/// Event types of Claude Code's stream that come before its `result`.
const STREAM_TYPES: &[&str] = &["system", "assistant", "user", "stream_event"];

fn is_stream_event(map: &serde_json::Map<String, Value>) -> bool {
    map.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| STREAM_TYPES.contains(&t))
}

/// Session, turns and tokens of a stream that has no result (yet).
fn fill_from_stream(run: &mut AgentRun, stdout: &Captured) {
    let a = stdout.activity();
    run.session_id = a.session_id;
    run.num_turns = u32::try_from(a.turns).unwrap_or(u32::MAX);
    run.input_tokens = a.tokens.input;
    run.output_tokens = a.tokens.output;
    run.cache_creation_tokens = a.tokens.cache_creation;
    run.cache_read_tokens = a.tokens.cache_read;
}

/// What the event stream says beyond the result: refusal messages by tool-use id, the
/// session's working directory, how many events it held and what the last one did.
#[derive(Debug, Default)]
struct StreamFacts {
    messages: HashMap<String, String>,
    cwd: Option<PathBuf>,
    events: usize,
    last: Option<String>,
}

fn stream_facts(stdout: &Captured) -> StreamFacts {
    let mut facts = StreamFacts::default();
    stdout.for_each_line(|line| {
        let Ok(Some(rec)) = events::parse_line(line) else {
            return;
        };
        facts.events += 1;
        for ev in &rec.events {
            match ev {
                events::Event::Init { cwd: Some(cwd), .. } => facts.cwd = Some(cwd.into()),
                events::Event::ToolResult {
                    tool_use_id, text, ..
                } => {
                    facts.messages.insert(tool_use_id.clone(), text.clone());
                }
                _ => {}
            }
        }
        let mut opts = events::RenderOptions {
            cwd: facts.cwd.clone(),
            max_text_lines: 1,
            ..events::RenderOptions::default()
        };
        if let Some(line) = events::render(&rec, &mut opts).into_iter().last() {
            facts.last = Some(line);
        }
    });
    facts
}

/// The next `{` at or after `from` that begins a line (after optional blanks).
fn next_object_start(bytes: &[u8], from: usize) -> Option<usize> {
    // Whether everything between the last newline and `i` is blank.
    let mut blank_so_far = bytes[..from.min(bytes.len())]
        .iter()
        .rev()
        .take_while(|&&b| b != b'\n')
        .all(|&b| b == b' ' || b == b'\t');
    for (i, &b) in bytes.iter().enumerate().skip(from) {
        match b {
            b'{' if blank_so_far => return Some(i),
            b'\n' => blank_so_far = true,
            b' ' | b'\t' => {}
            _ => blank_so_far = false,
        }
    }
    None
}

/// The last `n` lines of `bytes` (lossy UTF-8), for evidence and error reports.
pub fn tail_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.len().saturating_sub(n);
    lines[from..].join("\n")
}

/// Classify a finished run. Pure: same input, same answer.
pub fn classify(input: &ClassifyInput<'_>) -> AgentRun {
    let report = input.report;
    let mut run = AgentRun::from_outcome(Outcome::Succeeded, String::new());
    run.exit_code = report.exit_code;
    run.duration_ms = report.duration_ms;
    let stdout = input.stdout.as_captured();
    let stdout: &Captured = &stdout;
    let parsed = stdout.last_object();
    match &parsed {
        Parsed::Object(map) if !is_stream_event(map) => fill_from_result(&mut run, map),
        // No result (cut, killed, still an event stream): what the stream tells so far,
        // so a stopped run still records its session (to resume) and its turns.
        _ => fill_from_stream(&mut run, stdout),
    }

    // Supervisor verdicts come first: they explain any output that follows. The caller's
    // own cancel first of all; then a batch scheduler's, which explains what the
    // supervisor on the node saw (Slurm's time limit reaches it as a SIGTERM).
    if !input.user_cancelled
        && let Some(run) = scheduler_verdict(&run, report)
    {
        return run;
    }
    if input.user_cancelled || report.interrupted_by.is_some() {
        let by = report
            .interrupted_by
            .map_or_else(|| "the caller".to_owned(), |s| format!("signal {s}"));
        return with(
            run,
            Outcome::KilledByUser {
                signal: report.interrupted_by,
            },
            format!("stopped on request ({by}) after {}", secs(report)),
        );
    }
    if report.timed_out {
        let escalated = report.escalated_to_kill;
        return with(
            run,
            Outcome::TimedOut { escalated },
            format!(
                "timed out after {}; process tree ended with {}",
                secs(report),
                ending(escalated)
            ),
        );
    }
    if report.stalled {
        let escalated = report.escalated_to_kill;
        return with(
            run,
            Outcome::Stalled { escalated },
            format!(
                "no new output (for claude: no new event and no tool at work) for the stall timeout (after {}); process tree ended with {}",
                secs(report),
                ending(escalated)
            ),
        );
    }
    if let Some(err) = &report.spawn_error {
        return with(
            run,
            Outcome::AgentError {
                cause: ErrorCause::NotStarted,
                exit_code: report.exit_code,
            },
            fold_whitespace(err),
        );
    }
    if let Some(signal) = report.signal {
        return with(
            run,
            Outcome::Crashed { signal },
            format!(
                "the agent died of signal {signal}{}",
                last_line_hint(input.stderr_tail)
            ),
        );
    }

    let exit_code = report.exit_code;
    match parsed {
        Parsed::Object(map) if is_stream_event(&map) => {
            // An event stream that never got its result: the agent was cut off.
            let facts = stream_facts(stdout);
            let bytes = stdout.len();
            let last = facts
                .last
                .map(|l| format!("; last: {}", clip(&fold_whitespace(&l), 160)))
                .unwrap_or_default();
            with(
                run,
                Outcome::Truncated { bytes },
                format!(
                    "the event stream ends after {} event(s) without its `result` (exit {exit_code}){last}{}",
                    facts.events,
                    last_line_hint(input.stderr_tail)
                ),
            )
        }
        Parsed::Object(map) => judge_result(run, &map, input),
        Parsed::Truncated => {
            let bytes = stdout.len();
            with(
                run,
                Outcome::Truncated { bytes },
                format!("stdout ends inside a JSON object after {bytes} bytes (exit {exit_code})"),
            )
        }
        Parsed::Empty | Parsed::NotJson => {
            let what = if parsed == Parsed::Empty {
                "empty stdout".to_owned()
            } else {
                format!(
                    "stdout is not JSON: `{}`",
                    clip(&tail_lines(stdout.tail(), 1), 120)
                )
            };
            if exit_code != 0 {
                if let Some(why) = no_session(input.stderr_tail) {
                    return with(
                        run,
                        Outcome::AgentError {
                            cause: ErrorCause::NoSession,
                            exit_code,
                        },
                        why,
                    );
                }
                if let Some(why) = refused_arguments(input.stderr_tail) {
                    return with(
                        run,
                        Outcome::AgentError {
                            cause: ErrorCause::Arguments,
                            exit_code,
                        },
                        why,
                    );
                }
                if let Some(resets) = usage_limit(input.stderr_tail) {
                    run.resets_at = resets;
                    return with(
                        run,
                        Outcome::UsageLimited,
                        format!("exit {exit_code}: {}", fold_whitespace(input.stderr_tail)),
                    );
                }
                if is_login_error(input.stderr_tail) {
                    return with(
                        run,
                        Outcome::AgentError {
                            cause: ErrorCause::Login,
                            exit_code,
                        },
                        format!("exit {exit_code}: {}", fold_whitespace(input.stderr_tail)),
                    );
                }
            }
            with(
                run,
                Outcome::NoResult { exit_code },
                format!(
                    "exit {exit_code} with {what}{}",
                    last_line_hint(input.stderr_tail)
                ),
            )
        }
    }
}

/// Judge a parsed result object by exit code and `is_error`.
fn judge_result(
    mut run: AgentRun,
    map: &serde_json::Map<String, Value>,
    input: &ClassifyInput<'_>,
) -> AgentRun {
    let exit_code = input.report.exit_code;
    let kind = map.get("type").and_then(Value::as_str);
    let is_result = match kind {
        Some(t) => t == "result",
        None => map.contains_key("is_error") || map.contains_key("result"),
    };
    if !is_result {
        return with(
            run,
            Outcome::NoResult { exit_code },
            format!(
                "exit {exit_code}; the last JSON object on stdout is not a result (type `{}`)",
                kind.unwrap_or("?")
            ),
        );
    }
    run.structured = true;
    let is_error = map.get("is_error").and_then(Value::as_bool);
    let text = run.result_text.clone().unwrap_or_default();
    let failed = is_error == Some(true) || exit_code != 0;
    if !failed {
        if is_error.is_none() {
            // A result without `is_error` cannot prove success; exit 0 alone is not enough.
            return with(
                run,
                Outcome::NoResult { exit_code },
                "exit 0 but the result object has no `is_error` field".to_owned(),
            );
        }
        if input.phase.document().is_none() && run.denials.iter().any(Denial::changes_files) {
            // The agent went on after a refused edit: the work it claims is not on disk.
            let tools = denied_tools(&run.denials);
            let how = explain(&run.denials, &input.stdout.as_captured());
            return with(
                run,
                Outcome::PermissionDenied { tools },
                format!("exit 0, is_error false, but {how}"),
            );
        }
        let summary = clip(&fold_whitespace(&text), 160);
        let mut evidence = format!("exit 0, is_error false: {summary}");
        if !run.denials.is_empty() {
            // A refused command (a test run, a fetch) did not change the work; the
            // task's `_Verify:_` judges it. Say so, with the way out, but do not fail.
            let how = explain(&run.denials, &input.stdout.as_captured());
            evidence.push_str(&format!(" (note: {how})"));
        }
        return with(run, Outcome::Succeeded, evidence);
    }

    let why = if is_error == Some(true) {
        format!("exit {exit_code}, is_error true")
    } else {
        format!("exit {exit_code} although is_error is false")
    };
    if map.get("subtype").and_then(Value::as_str) == Some("error_max_turns") {
        let turns = Some(run.num_turns).filter(|&t| t > 0);
        return with(
            run,
            Outcome::MaxTurns { turns },
            format!("{why}: the agent hit its turn limit (subtype error_max_turns)"),
        );
    }
    let api_status = map.get("api_error_status").and_then(Value::as_u64);
    let limit_text = format!("{text}\n{}", input.stderr_tail);
    if let Some(resets) = usage_limit(&limit_text) {
        run.resets_at = resets;
        return with(
            run,
            Outcome::UsageLimited,
            format!("{why}: {}", clip(&fold_whitespace(&limit_text), 160)),
        );
    }
    if api_status == Some(429) {
        return with(
            run,
            Outcome::UsageLimited,
            format!("{why}: API error 429 (rate limited)"),
        );
    }
    if !run.denials.is_empty() {
        let tools = denied_tools(&run.denials);
        let how = explain(&run.denials, &input.stdout.as_captured());
        return with(
            run,
            Outcome::PermissionDenied { tools },
            format!("{why}: {how}"),
        );
    }
    if let Some(why) = no_session(&limit_text) {
        return with(
            run,
            Outcome::AgentError {
                cause: ErrorCause::NoSession,
                exit_code,
            },
            why,
        );
    }
    let cause = if is_login_error(&limit_text) {
        ErrorCause::Login
    } else {
        ErrorCause::Reported
    };
    let detail = if text.trim().is_empty() {
        fold_whitespace(input.stderr_tail)
    } else {
        fold_whitespace(&text)
    };
    let detail = if detail.is_empty() {
        "no message".to_owned()
    } else {
        clip(&detail, 200)
    };
    with(
        run,
        Outcome::AgentError { cause, exit_code },
        format!("{why}: {detail}"),
    )
}

/// The outcome a batch scheduler's end state decides, if it decides one.
fn scheduler_verdict(run: &AgentRun, report: &ExecReport) -> Option<AgentRun> {
    use crate::exec::slurm::SchedulerEnd;
    let v = report.scheduler.as_ref()?;
    let run = run.clone();
    Some(match v.end() {
        SchedulerEnd::Ran => return None,
        SchedulerEnd::Lost => with(
            run,
            Outcome::Lost {
                state: v.state.clone(),
            },
            format!(
                "{}: the scheduler lost the run; another attempt may succeed",
                v.describe()
            ),
        ),
        SchedulerEnd::OutOfMemory => with(
            run,
            Outcome::Crashed { signal: 9 },
            format!(
                "{}: the job exceeded its memory; ask for more with `--slurm-arg=--mem=…`",
                v.describe()
            ),
        ),
        SchedulerEnd::TimeLimit => with(
            run,
            Outcome::TimedOut {
                escalated: report.escalated_to_kill,
            },
            format!("{}: Slurm's time limit ended the job", v.describe()),
        ),
        SchedulerEnd::Cancelled => with(
            run,
            Outcome::KilledByUser {
                signal: report.interrupted_by,
            },
            format!(
                "{}: cancelled outside qw (scancel or an administrator)",
                v.describe()
            ),
        ),
    })
}

fn with(mut run: AgentRun, outcome: Outcome, evidence: String) -> AgentRun {
    run.outcome = outcome;
    run.evidence = evidence;
    run
}

/// Copy the accounting fields of a result object (lenient: missing or odd → 0/None).
fn fill_from_result(run: &mut AgentRun, map: &serde_json::Map<String, Value>) {
    run.cost_usd = events::run_cost_usd(map).unwrap_or(0.0);
    run.denials = events::denials(map);
    let usage = map.get("usage");
    let tokens = |key: &str| {
        usage
            .and_then(|u| u.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    run.input_tokens = tokens("input_tokens");
    run.output_tokens = tokens("output_tokens");
    run.cache_creation_tokens = tokens("cache_creation_input_tokens");
    run.cache_read_tokens = tokens("cache_read_input_tokens");
    run.num_turns = map
        .get("num_turns")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    run.session_id = map
        .get("session_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    run.result_text = map.get("result").and_then(Value::as_str).map(str::to_owned);
}

/// The refused tools' names, each once, in order.
pub(crate) fn denied_tools(denials: &[Denial]) -> Vec<String> {
    let mut tools: Vec<String> = Vec::new();
    for d in denials {
        if !tools.contains(&d.tool) {
            tools.push(d.tool.clone());
        }
    }
    tools
}

/// The refusals and the way out, using what the event stream tells (messages, cwd).
pub(crate) fn explain(denials: &[Denial], stdout: &Captured) -> String {
    let facts = stream_facts(stdout);
    super::permissions::explain(denials, &facts.messages, facts.cwd.as_deref())
}

/// `--resume ID` naming a session Claude Code does not have.
fn no_session(text: &str) -> Option<String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.contains("No conversation found with session ID"))?;
    Some(format!(
        "{}; the session cannot be resumed (run fresh)",
        clip(line, 200)
    ))
}

/// Claude Code refusing its own command line: what it said and what to do.
fn refused_arguments(stderr_tail: &str) -> Option<String> {
    let line = stderr_tail.lines().map(str::trim).find(|l| {
        l.contains("cannot be used with root/sudo privileges")
            || l.starts_with("error: unknown option")
            || l.starts_with("error: option '")
            || l.starts_with("error: missing required argument")
            || l.starts_with("Error: When using --print")
    })?;
    let line = clip(line, 200);
    Some(if line.contains("root/sudo") {
        format!(
            "Claude Code refuses `--permission-mode bypassPermissions` as root ({line}); run qw as a non-root user, or pass `{}` instead",
            super::permissions::ACCEPT_EDITS
        )
    } else {
        format!("Claude Code refused its arguments ({line}); check the `--claude-arg` values")
    })
}

/// Does `text` (Claude Code's output) say it is not logged in or its credentials were
/// refused? Retrying cannot help then.
pub(crate) fn is_login_error(text: &str) -> bool {
    let t = text.to_lowercase();
    [
        "not logged in",
        "/login",
        "invalid api key",
        "authentication_error",
        "authentication failed",
        "oauth token has expired",
        "please log in",
    ]
    .iter()
    .any(|p| t.contains(p))
}

/// Does `text` report a usage or rate limit? `Some(resets_at)` if so (the inner value is
/// None when no reset time is given).
pub fn usage_limit(text: &str) -> Option<Option<ResetAt>> {
    let lower = text.to_lowercase();
    let plain = [
        "usage limit",
        "rate limit",
        "rate_limit",
        "hit your limit",
        "too many requests",
        "api error: 429",
    ]
    .iter()
    .any(|p| lower.contains(p));
    // "limit reached" alone is too broad (a context or turn limit is no usage limit):
    // require the words Claude Code puts beside its usage-limit notices.
    let reached = lower.contains("limit reached")
        && ["reset", "session", "hour", "weekly", "|"]
            .iter()
            .any(|w| lower.contains(w));
    let limited = plain || reached;
    if !limited {
        return None;
    }
    Some(reset_time(text))
}

/// The reset time of a usage-limit message: `…limit reached|1746280800` (epoch seconds)
/// or `resets at 2025-08-05T15:00:00Z` / `resets 3pm` / `resets at 15:00`. Clock times
/// without a zone are taken as local time, next occurrence; a named zone qw cannot
/// convert leaves the time as written.
fn reset_time(text: &str) -> Option<ResetAt> {
    if let Some((_, after)) = text.split_once('|') {
        let digits: String = after
            .trim()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(epoch) = digits.parse::<i64>()
            && let Some(t) = chrono::DateTime::from_timestamp(epoch, 0)
        {
            return Some(ResetAt::At(t.fixed_offset()));
        }
    }
    let lower = text.to_lowercase();
    let idx = lower.find("resets")?;
    let rest = text[idx + "resets".len()..].trim_start();
    let rest = rest
        .strip_prefix("at ")
        .or_else(|| rest.strip_prefix("At "))
        .unwrap_or(rest)
        .trim_start();
    let word: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ')' && *c != ',' && *c != '.')
        .collect();
    let trailing = rest[word.len()..].trim();
    if word.is_empty() {
        return None;
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&word) {
        return Some(ResetAt::At(t));
    }
    let utc = trailing.to_lowercase().starts_with("(utc");
    let named_zone = trailing.starts_with('(') && !utc;
    if !named_zone && let Some((h, m)) = parse_clock(&word) {
        let at = if utc {
            next_clock_time(chrono::Utc::now(), h, m)
        } else {
            next_clock_time(chrono::Local::now(), h, m)
        };
        return Some(ResetAt::At(at?));
    }
    Some(ResetAt::Text(
        format!("{word} {trailing}").trim().to_owned(),
    ))
}

/// The first time after `now` that the clock in `now`'s zone shows `h:m`: later today, or
/// tomorrow.
fn next_clock_time<Tz: chrono::TimeZone>(
    now: chrono::DateTime<Tz>,
    h: u32,
    m: u32,
) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    let today = now.date_naive().and_hms_opt(h, m, 0)?;
    let mut at = today.and_local_timezone(now.timezone()).earliest()?;
    if at <= now {
        at += chrono::Duration::days(1);
    }
    Some(at.fixed_offset())
}

/// `3pm`, `3:30pm`, `15:00`, `11am` → (hour, minute).
fn parse_clock(word: &str) -> Option<(u32, u32)> {
    let w = word.to_lowercase();
    let (body, offset) = if let Some(b) = w.strip_suffix("pm") {
        (b, Some(12))
    } else if let Some(b) = w.strip_suffix("am") {
        (b, Some(0))
    } else {
        (w.as_str(), None)
    };
    let (h, m) = match body.split_once(':') {
        Some((h, m)) => (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?),
        None if offset.is_some() => (body.parse::<u32>().ok()?, 0),
        None => return None,
    };
    let h = match offset {
        Some(add) if (1..=12).contains(&h) => h % 12 + add,
        Some(_) => return None,
        None => h,
    };
    (h < 24 && m < 60).then_some((h, m))
}

fn secs(report: &ExecReport) -> String {
    format!("{:.1}s", report.duration_ms as f64 / 1000.0)
}

fn ending(escalated: bool) -> &'static str {
    if escalated {
        "SIGTERM then SIGKILL"
    } else {
        "SIGTERM"
    }
}

fn last_line_hint(stderr_tail: &str) -> String {
    match stderr_tail.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => format!("; stderr: {}", clip(line.trim(), 160)),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUCCESS: &str = include_str!("../../tests/fixtures/claude_result_success.json");
    const MAX_TURNS: &str = include_str!("../../tests/fixtures/claude_result_error.json");
    const NOT_LOGGED_IN: &str =
        include_str!("../../tests/fixtures/claude_result_not_logged_in.json");
    const STREAM: &str = include_str!("../../tests/fixtures/claude_stream_json_write.jsonl");
    const DENIED: &str = include_str!("../../tests/fixtures/claude_result_permission_denied.json");

    fn report(exit_code: i32) -> ExecReport {
        ExecReport {
            exit_code,
            duration_ms: 1500,
            ..ExecReport::new("1.2.abc")
        }
    }

    fn run_with(report: &ExecReport, stdout: &str, stderr: &str) -> AgentRun {
        classify(&ClassifyInput {
            report,
            stdout: &Captured::from(stdout),
            stderr_tail: stderr,
            phase: Phase::Implementation,
            user_cancelled: false,
        })
    }

    fn result_json(is_error: bool, subtype: &str, result: &str) -> String {
        serde_json::json!({
            "type": "result", "subtype": subtype, "is_error": is_error,
            "result": result, "total_cost_usd": 0.25, "num_turns": 2,
            "session_id": "s-1", "usage": {"input_tokens": 10, "output_tokens": 20}
        })
        .to_string()
    }

    fn slurm(state: &str, inner: ExecReport) -> ExecReport {
        ExecReport {
            scheduler: Some(crate::exec::SchedulerVerdict {
                scheduler: "slurm".into(),
                job_id: "42".into(),
                job_name: "qw/demo/1".into(),
                state: state.into(),
                reason: None,
                nodes: Some("node7".into()),
                partition: Some("debug".into()),
                exit_code: None,
                pending_ms: 0,
                adopted_from: None,
            }),
            ..inner
        }
    }

    #[test]
    fn slurm_end_states_decide_before_the_supervisor_report() {
        let ok = result_json(false, "success", "done");
        // Slurm's time limit reaches `qw exec` as a SIGTERM: still timed_out.
        let term = ExecReport {
            interrupted_by: Some(15),
            ..report(143)
        };
        let cases = [
            ("TIMEOUT", term.clone(), "timed_out"),
            ("DEADLINE", report(124), "timed_out"),
            ("CANCELLED", term.clone(), "killed_by_user"),
            ("CANCELLED", report(0), "killed_by_user"),
            ("NODE_FAIL", report(125), "lost"),
            ("PREEMPTED", term.clone(), "lost"),
            ("BOOT_FAIL", report(125), "lost"),
            ("OUT_OF_MEMORY", report(137), "crashed"),
            ("COMPLETED", report(0), "succeeded"),
            ("FAILED", report(1), "agent_error"),
        ];
        for (state, inner, want) in cases {
            let r = slurm(state, inner);
            let run = run_with(&r, &ok, "");
            assert_eq!(run.outcome.as_str(), want, "{state}: {}", run.evidence);
            if want != "succeeded" && want != "agent_error" {
                assert!(
                    run.evidence.contains("Slurm job 42"),
                    "{state}: {}",
                    run.evidence
                );
                assert!(run.evidence.contains(state), "{state}: {}", run.evidence);
            }
        }
        assert!(
            run_with(&slurm("NODE_FAIL", report(125)), "", "")
                .outcome
                .is_retryable()
        );
        assert!(
            run_with(&slurm("OUT_OF_MEMORY", report(137)), "", "")
                .evidence
                .contains("--mem")
        );
        // The caller's own cancel wins over whatever Slurm says.
        let run = classify(&ClassifyInput {
            report: &slurm("TIMEOUT", report(143)),
            stdout: b"",
            stderr_tail: "",
            phase: Phase::Implementation,
            user_cancelled: true,
        });
        assert_eq!(run.outcome.as_str(), "killed_by_user");
    }

    #[test]
    fn classify_table() {
        let timed_out = ExecReport {
            timed_out: true,
            exit_code: 124,
            escalated_to_kill: true,
            ..report(124)
        };
        let stalled = ExecReport {
            stalled: true,
            ..report(124)
        };
        let interrupted = ExecReport {
            interrupted_by: Some(2),
            ..report(130)
        };
        let crashed = ExecReport {
            signal: Some(11),
            ..report(139)
        };
        let not_found = ExecReport {
            spawn_error: Some("cannot run `claude`: No such file or directory".into()),
            ..report(127)
        };
        let denied = serde_json::json!({
            "type": "result", "subtype": "success", "is_error": true,
            "result": "I could not write the file.",
            "permission_denials": [{"tool_name": "Write", "tool_use_id": "x", "tool_input": {}}]
        })
        .to_string();
        let limited = serde_json::json!({
            "type": "result", "subtype": "success", "is_error": true,
            "result": "Claude AI usage limit reached|1754406000"
        })
        .to_string();
        let rate_429 = serde_json::json!({
            "type": "result", "subtype": "success", "is_error": true,
            "result": "API Error", "api_error_status": 429
        })
        .to_string();
        let ok = result_json(false, "success", "done");
        let err_success = result_json(true, "success", "API Error: 529 overloaded");
        let cut = &SUCCESS[..SUCCESS.len() / 2];
        let stream_cut: String = STREAM.lines().take(3).map(|l| format!("{l}\n")).collect();
        let stream_mid = &STREAM[..STREAM.len() - 100];
        let init_only = STREAM.lines().next().unwrap();
        let stream_denied = STREAM.replace(
            "\"permission_denials\":[]",
            "\"permission_denials\":[{\"tool_name\":\"Bash\",\"tool_use_id\":\"t\",\"tool_input\":{\"command\":\"cargo test\"}}]",
        );
        let stream_denied_edit = STREAM.replace(
            "\"permission_denials\":[]",
            "\"permission_denials\":[{\"tool_name\":\"Edit\",\"tool_use_id\":\"t\",\"tool_input\":{\"file_path\":\"src/lib.rs\"}}]",
        );
        let r0 = report(0);
        let r1 = report(1);
        let cases: Vec<(&str, &ExecReport, &str, &str, &str)> = vec![
            ("fixture success", &r0, SUCCESS, "", "succeeded"),
            ("hand-made success", &r0, &ok, "", "succeeded"),
            ("fixture max turns", &r1, MAX_TURNS, "", "max_turns"),
            ("not logged in", &r1, NOT_LOGGED_IN, "", "agent_error"),
            (
                "is_error beside subtype success",
                &r0,
                &err_success,
                "",
                "agent_error",
            ),
            ("exit 1 with is_error false", &r1, &ok, "", "agent_error"),
            ("exit 0 empty stdout", &r0, "", "", "no_result"),
            ("exit 0 whitespace stdout", &r0, " \n\n", "", "no_result"),
            ("exit 0 plain text", &r0, "All done!\n", "", "no_result"),
            ("exit 0 json cut mid-object", &r0, cut, "", "truncated"),
            (
                "not a result object",
                &r0,
                "{\"kind\":\"report\"}\n",
                "",
                "no_result",
            ),
            (
                "stream cut before its result",
                &r0,
                &stream_cut,
                "",
                "truncated",
            ),
            ("stream cut mid-line", &r1, stream_mid, "", "truncated"),
            ("only the init event", &r1, init_only, "", "truncated"),
            ("whole stream", &r0, STREAM, "", "succeeded"),
            (
                "stream with a refused command, is_error false",
                &r0,
                &stream_denied,
                "",
                "succeeded",
            ),
            (
                "stream with a refused edit, is_error false",
                &r0,
                &stream_denied_edit,
                "",
                "permission_denied",
            ),
            ("timed out", &timed_out, "", "", "timed_out"),
            ("stalled", &stalled, "partial", "", "stalled"),
            ("interrupted", &interrupted, SUCCESS, "", "killed_by_user"),
            ("crashed", &crashed, "", "Segmentation fault", "crashed"),
            ("not found", &not_found, "", "", "agent_error"),
            ("permission denied", &r1, &denied, "", "permission_denied"),
            ("usage limit epoch", &r1, &limited, "", "usage_limited"),
            ("http 429", &r1, &rate_429, "", "usage_limited"),
            (
                "usage limit only on stderr",
                &r1,
                "",
                "Error: usage limit reached, resets at 2030-01-01T10:00:00Z",
                "usage_limited",
            ),
            (
                "bypassPermissions as root",
                &r1,
                "",
                "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons",
                "agent_error",
            ),
            (
                "unknown flag",
                &r1,
                "",
                "error: unknown option '--bogus'",
                "agent_error",
            ),
            (
                "login on stderr",
                &r1,
                "",
                "Invalid API key · Please run /login",
                "agent_error",
            ),
        ];
        for (name, rep, stdout, stderr, want) in cases {
            let run = run_with(rep, stdout, stderr);
            assert_eq!(run.outcome.as_str(), want, "{name}: {run:?}");
            assert!(!run.evidence.is_empty(), "{name}: no evidence");
            assert!(!run.evidence.contains('\n'), "{name}: evidence spans lines");
        }
    }

    #[test]
    fn success_fixture_carries_accounting() {
        let run = run_with(&report(0), SUCCESS, "");
        assert_eq!(run.outcome, Outcome::Succeeded);
        assert!((run.cost_usd - 0.1834).abs() < 1e-9);
        assert_eq!(run.input_tokens, 1834);
        assert_eq!(run.output_tokens, 2210);
        assert_eq!(run.cache_creation_tokens, 6120);
        assert_eq!(run.cache_read_tokens, 48211);
        assert_eq!(run.num_turns, 7);
        assert_eq!(
            run.session_id.as_deref(),
            Some("5c1d3b0e-8f7a-4b52-9a55-0b7f1e9a2c11")
        );
        assert!(run.structured);
        assert!(run.result_text.unwrap().contains("greeter"));
    }

    #[test]
    fn not_logged_in_is_a_login_error_and_not_retryable() {
        let run = run_with(&report(1), NOT_LOGGED_IN, "");
        assert_eq!(
            run.outcome,
            Outcome::AgentError {
                cause: ErrorCause::Login,
                exit_code: 1
            }
        );
        assert!(!run.outcome.is_retryable());
        assert!(run.evidence.contains("Not logged in"), "{}", run.evidence);
        // Even with exit 0 the is_error flag wins over subtype "success".
        let run = run_with(&report(0), NOT_LOGGED_IN, "");
        assert_eq!(run.outcome.as_str(), "agent_error");
    }

    #[test]
    fn a_stopped_stream_still_records_its_session_and_turns() {
        let cut: String = STREAM.lines().take(3).map(|l| format!("{l}\n")).collect();
        let timed_out = ExecReport {
            timed_out: true,
            ..report(124)
        };
        let run = run_with(&timed_out, &cut, "");
        assert_eq!(run.outcome.as_str(), "timed_out");
        assert_eq!(
            run.session_id.as_deref(),
            Some("40499eed-3697-4376-8424-4e652ae596e8")
        );
        assert_eq!((run.num_turns, run.input_tokens), (1, 1000));
        assert_eq!(run.cost_usd, 0.0, "no cost before the result");
    }

    #[test]
    fn a_resume_of_a_missing_session_says_so() {
        let stdout = r#"{"type":"result","subtype":"error_during_execution","is_error":true,"num_turns":0,"session_id":"00000000-0000-4000-8000-000000000000","total_cost_usd":0}"#;
        let run = run_with(
            &report(1),
            stdout,
            "No conversation found with session ID: 00000000-0000-4000-8000-000000000000",
        );
        assert_eq!(
            run.outcome,
            Outcome::AgentError {
                cause: ErrorCause::NoSession,
                exit_code: 1
            }
        );
        assert!(!run.outcome.is_retryable());
        assert!(run.evidence.contains("run fresh"), "{}", run.evidence);
    }

    #[test]
    fn refused_arguments_say_what_to_do_and_are_not_retried() {
        let run = run_with(
            &report(1),
            "",
            "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons",
        );
        assert_eq!(
            run.outcome,
            Outcome::AgentError {
                cause: ErrorCause::Arguments,
                exit_code: 1
            }
        );
        assert!(!run.outcome.is_retryable());
        assert!(run.evidence.contains("non-root user"), "{}", run.evidence);
        assert!(run.evidence.contains("acceptEdits"), "{}", run.evidence);
        let run = run_with(&report(1), "", "error: unknown option '--bogus'");
        assert!(run.evidence.contains("--claude-arg"), "{}", run.evidence);
        // Each way Claude Code's argument parser says no.
        for stderr in [
            "error: option '--max-turns <turns>' argument 'many' is invalid.",
            "error: missing required argument 'prompt'",
            "Error: When using --print, --output-format=stream-json requires --verbose",
        ] {
            let run = run_with(&report(1), "", &format!("starting\n  {stderr}\n"));
            assert_eq!(
                run.outcome,
                Outcome::AgentError {
                    cause: ErrorCause::Arguments,
                    exit_code: 1
                },
                "{stderr}"
            );
            assert!(
                run.evidence
                    .starts_with(&format!("Claude Code refused its arguments ({stderr})")),
                "{}",
                run.evidence
            );
        }
    }

    #[test]
    fn cost_falls_back_to_cost_usd() {
        let old = r#"{"type":"result","is_error":false,"result":"ok","cost_usd":0.5}"#;
        let run = run_with(&report(0), old, "");
        assert!((run.cost_usd - 0.5).abs() < 1e-9);
    }

    #[test]
    fn big_valid_result_is_not_truncated() {
        let big = "x".repeat(100 * 1024);
        let json = result_json(false, "success", &big);
        assert!(json.len() > 100 * 1024);
        let run = run_with(&report(0), &json, "");
        assert_eq!(run.outcome, Outcome::Succeeded, "{}", run.evidence);
        assert_eq!(run.result_text.unwrap().len(), big.len());
        // Cut at 64 KiB, as a pipe reader might: truncated, not success.
        let run = run_with(&report(0), &json[..65536], "");
        assert_eq!(
            run.outcome,
            Outcome::Truncated { bytes: 65536 },
            "{}",
            run.evidence
        );
    }

    #[test]
    fn last_object_wins_and_noise_is_ignored() {
        let stream = format!(
            "warning: something\n{{\"type\":\"system\",\"subtype\":\"init\"}}\n{}\ntrailing log line\n",
            result_json(false, "success", "ok")
        );
        let run = run_with(&report(0), &stream, "");
        assert_eq!(run.outcome, Outcome::Succeeded, "{}", run.evidence);
        // A later error result overrides an earlier success.
        let two = format!(
            "{}\n{}",
            result_json(false, "success", "ok"),
            result_json(true, "success", "boom")
        );
        assert_eq!(
            run_with(&report(0), &two, "").outcome.as_str(),
            "agent_error"
        );
        // Pretty-printed JSON parses too.
        let pretty = serde_json::to_string_pretty(
            &serde_json::from_str::<Value>(&result_json(false, "success", "ok")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            run_with(&report(0), &pretty, "").outcome,
            Outcome::Succeeded
        );
    }

    #[test]
    fn success_text_mentioning_rate_limits_is_still_success() {
        let json = result_json(false, "success", "Implemented the rate limit middleware");
        assert_eq!(run_with(&report(0), &json, "").outcome, Outcome::Succeeded);
    }

    #[test]
    fn usage_limit_reset_times() {
        let run = run_with(
            &report(1),
            &result_json(true, "success", "Claude AI usage limit reached|1754406000"),
            "",
        );
        let at = run.resets_at.and_then(|r| r.as_datetime()).unwrap();
        assert_eq!(at.timestamp(), 1_754_406_000);
        assert_eq!(
            reset_time("5-hour limit reached ∙ resets at 2030-01-01T10:00:00Z")
                .map(|r| r.to_string())
                .as_deref(),
            Some("2030-01-01T10:00:00+00:00")
        );
        let local = reset_time("You've hit your limit · resets 3pm").unwrap();
        let t = local.as_datetime().unwrap();
        assert!(t > chrono::Local::now(), "{local}");
        assert_eq!(
            reset_time("limit reached ∙ resets 3pm (Europe/Berlin)"),
            Some(ResetAt::Text("3pm (Europe/Berlin)".into()))
        );
        assert_eq!(reset_time("rate limit exceeded"), None);
        assert_eq!(
            usage_limit("Context limit reached; compact the conversation"),
            None
        );
        assert!(usage_limit("5-hour limit reached ∙ resets 3pm").is_some());
        assert!(usage_limit("Session limit reached").is_some());
        assert_eq!(parse_clock("3:30pm"), Some((15, 30)));
        assert_eq!(parse_clock("12am"), Some((0, 0)));
        assert_eq!(parse_clock("15:00"), Some((15, 0)));
        assert_eq!(parse_clock("13pm"), None);
    }

    #[test]
    fn retry_policy() {
        let yes = [
            Outcome::TimedOut { escalated: false },
            Outcome::Stalled { escalated: true },
            Outcome::Crashed { signal: 9 },
            Outcome::NoResult { exit_code: 0 },
            Outcome::Truncated { bytes: 10 },
            Outcome::VerifyFailed { exit_code: Some(1) },
            Outcome::AgentError {
                cause: ErrorCause::Reported,
                exit_code: 1,
            },
        ];
        let no = [
            Outcome::Succeeded,
            Outcome::UsageLimited,
            Outcome::BudgetExceeded {
                limit: "per_run".into(),
                limit_usd: 1.0,
                spent_usd: 0.8,
                expected_usd: 0.0,
            },
            Outcome::PermissionDenied { tools: vec![] },
            Outcome::AgentError {
                cause: ErrorCause::Login,
                exit_code: 1,
            },
            Outcome::AgentError {
                cause: ErrorCause::NotStarted,
                exit_code: 127,
            },
            Outcome::AgentError {
                cause: ErrorCause::Arguments,
                exit_code: 1,
            },
            Outcome::AgentError {
                cause: ErrorCause::NoSession,
                exit_code: 1,
            },
            Outcome::MaxTurns { turns: Some(30) },
            Outcome::KilledByUser { signal: Some(2) },
            Outcome::MergeConflict { paths: vec![] },
            Outcome::WorkspaceError {
                step: WorkspaceStep::Commit,
            },
            Outcome::NotAdmitted,
        ];
        for o in yes {
            assert!(o.is_retryable(), "{o}");
        }
        for o in no {
            assert!(!o.is_retryable(), "{o}");
        }
    }

    #[test]
    fn outcome_serializes_with_snake_case_kind() {
        let v = serde_json::to_value(Outcome::TimedOut { escalated: true }).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"kind": "timed_out", "escalated": true})
        );
        let v = serde_json::to_value(Outcome::UsageLimited).unwrap();
        assert_eq!(v, serde_json::json!({"kind": "usage_limited"}));
        let back: Outcome = serde_json::from_value(v).unwrap();
        assert_eq!(back, Outcome::UsageLimited);
        let w = Outcome::WorkspaceError {
            step: WorkspaceStep::Merge,
        };
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"kind": "workspace_error", "step": "merge"})
        );
        assert!(!w.counts_against_agent());
        assert!(Outcome::MergeConflict { paths: vec![] }.counts_against_agent());
    }

    #[test]
    fn max_turns_carries_the_turns_used_when_reported() {
        let run = run_with(
            &report(1),
            &result_json(true, "error_max_turns", "stopped"),
            "",
        );
        assert_eq!(run.outcome, Outcome::MaxTurns { turns: Some(2) });
        assert!(run.evidence.contains("turn limit"), "{}", run.evidence);
        let unreported = serde_json::json!({
            "type": "result", "subtype": "error_max_turns", "is_error": true, "result": "x"
        })
        .to_string();
        let run = run_with(&report(1), &unreported, "");
        assert_eq!(run.outcome, Outcome::MaxTurns { turns: None });
    }

    #[test]
    fn evidence_says_how_long_and_the_last_stderr_line_that_says_something() {
        let timed_out = ExecReport {
            timed_out: true,
            ..report(124)
        };
        let run = run_with(&timed_out, "", "");
        assert_eq!(
            run.evidence,
            "timed out after 1.5s; process tree ended with SIGTERM"
        );
        let crashed = ExecReport {
            signal: Some(11),
            ..report(139)
        };
        let run = run_with(&crashed, "", "warming up\nsegfault at 0x0\n  \n\n");
        assert_eq!(
            run.evidence,
            "the agent died of signal 11; stderr: segfault at 0x0"
        );
        let run = run_with(&crashed, "", " \n");
        assert_eq!(run.evidence, "the agent died of signal 11");
    }

    #[test]
    fn the_tail_is_the_last_lines_that_say_something() {
        let text = b"first\n\nsecond\n   \nthird\n\n\t\n";
        assert_eq!(tail_lines(text, 2), "second\nthird");
        assert_eq!(tail_lines(text, 1), "third");
        assert_eq!(tail_lines(text, 9), "first\nsecond\nthird");
        assert_eq!(tail_lines(b"\n \n", 3), "");
        assert_eq!(tail_lines(b"only", 0), "");
    }

    #[test]
    fn every_outcome_displays_as_its_stored_kind() {
        let all = [
            Outcome::Succeeded,
            Outcome::TimedOut { escalated: false },
            Outcome::Stalled { escalated: true },
            Outcome::KilledByUser { signal: Some(2) },
            Outcome::Crashed { signal: 11 },
            Outcome::Lost {
                state: "NODE_FAIL".into(),
            },
            Outcome::NoResult { exit_code: 0 },
            Outcome::Truncated { bytes: 3 },
            Outcome::AgentError {
                cause: ErrorCause::Reported,
                exit_code: 1,
            },
            Outcome::MaxTurns { turns: Some(4) },
            Outcome::PermissionDenied {
                tools: vec!["Write".into()],
            },
            Outcome::UsageLimited,
            Outcome::NotAdmitted,
            Outcome::BudgetExceeded {
                limit: "daily".into(),
                limit_usd: 1.0,
                spent_usd: 2.0,
                expected_usd: 0.0,
            },
            Outcome::VerifyFailed { exit_code: None },
            Outcome::MergeConflict { paths: vec![] },
            Outcome::WorkspaceError {
                step: WorkspaceStep::Commit,
            },
        ];
        for outcome in all {
            let kind = serde_json::to_value(&outcome).unwrap()["kind"].clone();
            assert_eq!(kind, serde_json::json!(outcome.as_str()), "{outcome:?}");
            // What the progress display, the report and the state's `error` print.
            assert_eq!(outcome.to_string(), outcome.as_str(), "{outcome:?}");
            assert_eq!(format!("[{outcome}]"), format!("[{}]", outcome.as_str()));
        }
    }

    #[test]
    fn the_stream_is_judged_by_its_result_with_the_run_s_own_cost() {
        let run = run_with(&report(0), STREAM, "");
        assert_eq!(run.outcome, Outcome::Succeeded, "{}", run.evidence);
        assert_eq!(
            run.session_id.as_deref(),
            Some("40499eed-3697-4376-8424-4e652ae596e8")
        );
        assert!((run.cost_usd - 0.01).abs() < 1e-9);
        assert_eq!((run.num_turns, run.input_tokens), (2, 2000));
        // A resumed session reports the whole session in total_cost_usd.
        let resumed = STREAM.replace("\"total_cost_usd\":0.01", "\"total_cost_usd\":0.05");
        let run = run_with(&report(0), &resumed, "");
        assert!((run.cost_usd - 0.01).abs() < 1e-9, "{}", run.cost_usd);
        // Cut before the result: truncated, and the evidence says what it did last.
        let cut: String = STREAM.lines().take(4).map(|l| format!("{l}\n")).collect();
        let run = run_with(&report(0), &cut, "");
        assert_eq!(run.outcome.as_str(), "truncated");
        assert!(
            run.evidence
                .contains("after 4 event(s) without its `result`"),
            "{}",
            run.evidence
        );
        assert!(
            run.evidence.contains("assistant: Done."),
            "{}",
            run.evidence
        );
    }

    #[test]
    fn objects_start_only_at_the_start_of_a_line() {
        assert_eq!(next_object_start(b"{", 0), Some(0));
        assert_eq!(next_object_start(b"", 0), None);
        assert_eq!(next_object_start(b" \t{", 0), Some(2));
        assert_eq!(next_object_start(b"log: {\n {", 0), Some(8));
        // Resuming mid-line: only blanks since the line began make a start.
        assert_eq!(next_object_start(b"  {", 2), Some(2));
        assert_eq!(next_object_start(b"\t{", 1), Some(1));
        assert_eq!(next_object_start(b"x{", 1), None);
        assert_eq!(next_object_start(b"x {", 2), None);
        assert_eq!(next_object_start(b"{}{", 1), None);
        assert_eq!(next_object_start(b"{}\n{", 1), Some(3));
    }

    #[test]
    fn a_line_that_is_not_json_is_skipped_and_a_brace_inside_a_line_starts_nothing() {
        let ok = result_json(false, "success", "ok");
        let text = format!("{{oops}}\n{ok}\n");
        assert!(
            matches!(parse_last_object(text.as_bytes()), Parsed::Object(m) if m["result"] == "ok")
        );
        assert_eq!(run_with(&report(0), &text, "").outcome, Outcome::Succeeded);
        let inner = format!("{{{ok}}}\n");
        assert_eq!(parse_last_object(inner.as_bytes()), Parsed::NotJson);
        assert_eq!(parse_last_object(b"{oops}\n"), Parsed::NotJson);
        // Two values on one line are both read; the result wins over what follows it.
        let two = format!("{ok} {{\"type\":\"note\"}}\n");
        assert!(
            matches!(parse_last_object(two.as_bytes()), Parsed::Object(m) if m["result"] == "ok")
        );
    }

    #[test]
    fn evidence_names_what_stdout_held_and_how_the_result_read() {
        let (r0, r1) = (report(0), report(1));
        let ev = |r: &ExecReport, out: &str| run_with(r, out, "").evidence;
        assert_eq!(ev(&r0, ""), "exit 0 with empty stdout");
        assert_eq!(
            ev(&r0, "All done!\n"),
            "exit 0 with stdout is not JSON: `All done!`"
        );
        let ok = result_json(false, "success", "done");
        assert_eq!(ev(&r0, &ok), "exit 0, is_error false: done");
        assert_eq!(ev(&r1, &ok), "exit 1 although is_error is false: done");
        assert_eq!(
            ev(
                &r0,
                &result_json(true, "success", "API Error: 529 overloaded")
            ),
            "exit 0, is_error true: API Error: 529 overloaded"
        );
        // Without `type`, `is_error` or `result` alone makes an object a result.
        let run = run_with(&r1, r#"{"is_error": true}"#, "");
        assert_eq!(
            run.outcome,
            Outcome::AgentError {
                cause: ErrorCause::Reported,
                exit_code: 1
            }
        );
        assert_eq!(run.evidence, "exit 1, is_error true: no message");
        let run = run_with(&r1, r#"{"result": "half done"}"#, "");
        assert_eq!(run.evidence, "exit 1 although is_error is false: half done");
        assert_eq!(
            ev(&r0, r#"{"result": "done"}"#),
            "exit 0 but the result object has no `is_error` field"
        );
        // A refused command is noted beside a success; a plain success has no note.
        let denied = STREAM.replace(
            "\"permission_denials\":[]",
            "\"permission_denials\":[{\"tool_name\":\"Bash\",\"tool_use_id\":\"t\",\"tool_input\":{\"command\":\"cargo test\"}}]",
        );
        let run = run_with(&r0, &denied, "");
        assert_eq!(run.outcome, Outcome::Succeeded);
        assert!(run.evidence.contains(" (note: "), "{}", run.evidence);
        assert!(!ev(&r0, STREAM).contains("(note:"));
    }

    #[test]
    fn a_cut_stream_says_what_it_did_last_with_paths_relative_to_the_session() {
        let cut: String = STREAM.lines().take(2).map(|l| format!("{l}\n")).collect();
        let run = run_with(&report(0), &cut, "");
        assert_eq!(
            run.evidence,
            "the event stream ends after 2 event(s) without its `result` (exit 0); last: → Write hello.txt (10 bytes)"
        );
        // One line of the last text, then how much more there was.
        let cut: String = STREAM
            .lines()
            .take(4)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .replace("Done.", "Done.\\nMore.\\nEven more.");
        let run = run_with(&report(0), &cut, "");
        assert!(
            run.evidence.ends_with("; last: … (2 more lines)"),
            "{}",
            run.evidence
        );
    }

    #[test]
    fn the_callers_cancel_is_killed_by_user_without_a_signal() {
        let run = classify(&ClassifyInput {
            report: &report(0),
            stdout: &Captured::from(SUCCESS),
            stderr_tail: "",
            phase: Phase::Implementation,
            user_cancelled: true,
        });
        assert_eq!(run.outcome, Outcome::KilledByUser { signal: None });
        assert_eq!(run.evidence, "stopped on request (the caller) after 1.5s");
    }

    #[test]
    fn only_usage_limits_and_budgets_pause_and_only_success_succeeds() {
        let budget = Outcome::BudgetExceeded {
            limit: "daily".into(),
            limit_usd: 5.0,
            spent_usd: 5.5,
            expected_usd: 0.0,
        };
        assert!(Outcome::UsageLimited.pauses_workflow() && budget.pauses_workflow());
        for o in [
            Outcome::Succeeded,
            Outcome::MaxTurns { turns: None },
            Outcome::KilledByUser { signal: None },
        ] {
            assert!(!o.pauses_workflow(), "{o}");
        }
        assert!(Outcome::Succeeded.is_success());
        assert!(!Outcome::UsageLimited.is_success() && !budget.is_success());
        assert!(!Outcome::Succeeded.counts_against_agent());
    }

    #[test]
    fn each_refused_tool_is_named_once() {
        let d = |tool: &str| Denial {
            tool: tool.into(),
            target: None,
            tool_use_id: None,
        };
        assert_eq!(
            denied_tools(&[d("Write"), d("Bash"), d("Write")]),
            ["Write", "Bash"]
        );
        assert!(denied_tools(&[]).is_empty());
    }

    #[test]
    fn clock_times_are_checked_and_the_next_one_is_meant() {
        assert_eq!(parse_clock("15"), None);
        assert_eq!(parse_clock("23:59"), Some((23, 59)));
        assert_eq!(parse_clock("24:00"), None);
        assert_eq!(parse_clock("25:00"), None);
        assert_eq!(parse_clock("10:60"), None);
        assert_eq!(parse_clock("11am"), Some((11, 0)));
        assert_eq!(parse_clock("12pm"), Some((12, 0)));
        // A clock time two hours ahead is today's (or tonight's); one two hours ago is
        // tomorrow's.
        use chrono::Timelike;
        let now = chrono::Local::now();
        for (shift, ahead) in [(2, 2), (-2, 22)] {
            let clock = now + chrono::Duration::hours(shift);
            let text = format!(
                "usage limit reached, resets {:02}:{:02}",
                clock.hour(),
                clock.minute()
            );
            let at = usage_limit(&text)
                .flatten()
                .and_then(|r| r.as_datetime())
                .unwrap();
            let want = now + chrono::Duration::hours(ahead);
            assert!(
                (at - want.fixed_offset()).num_seconds().abs() <= 60,
                "{text}: {at}"
            );
        }
        // `(UTC)` is a zone qw converts: the time is UTC's, not the machine's.
        let at = reset_time("limit reached · resets 3pm (UTC)")
            .and_then(|r| r.as_datetime())
            .unwrap();
        assert_eq!(
            (at.offset().local_minus_utc(), at.hour(), at.minute()),
            (0, 15, 0)
        );
    }

    #[test]
    fn the_refusal_message_in_the_stream_tells_a_sensitive_file() {
        // Not under `.claude/`, so only Claude Code's own message says why it refused.
        let stream = STREAM
            .replace(
                "\"permission_denials\":[]",
                "\"permission_denials\":[{\"tool_name\":\"Write\",\"tool_use_id\":\"toolu_0001\",\"tool_input\":{\"file_path\":\"/home/dev/project/hello.txt\"}}]",
            )
            .replace(
                "File created successfully at",
                "Claude requested permissions to edit a sensitive file at",
            );
        let run = run_with(&report(0), &stream, "");
        assert_eq!(run.outcome.as_str(), "permission_denied");
        assert!(
            run.evidence
                .contains("Claude Code refused Write `hello.txt` (a sensitive file);"),
            "{}",
            run.evidence
        );
    }

    #[test]
    fn refusals_name_tool_target_and_way_out() {
        // The fixture: acceptEdits, a write under .claude/ refused, is_error false.
        let mut input = ClassifyInput {
            report: &report(0),
            stdout: &Captured::from(DENIED),
            stderr_tail: "",
            phase: Phase::Implementation,
            user_cancelled: false,
        };
        let run = classify(&input);
        assert_eq!(
            run.outcome,
            Outcome::PermissionDenied {
                tools: vec!["Write".into()]
            }
        );
        assert!(!run.outcome.is_retryable());
        for part in [
            "Write `/home/dev/project/.claude/specs/demo/requirements.md` (a sensitive file)",
            "bypassPermissions",
            "refuses it as root",
        ] {
            assert!(run.evidence.contains(part), "{part}: {}", run.evidence);
        }
        assert_eq!(run.denials.len(), 1);
        // For a document phase the document decides (see `document::settle`).
        input.phase = Phase::Requirements;
        assert_eq!(classify(&input).outcome, Outcome::Succeeded);
        // With the stream, the session's cwd shortens paths and the refusal text counts.
        let stream = STREAM
            .replace(
                "\"permission_denials\":[]",
                "\"permission_denials\":[{\"tool_name\":\"Write\",\"tool_use_id\":\"toolu_0001\",\"tool_input\":{\"file_path\":\"/home/dev/project/hello.txt\"}}]",
            )
            .replace("File created successfully at", "Claude requested permissions to write to");
        let run = run_with(&report(0), &stream, "");
        assert_eq!(run.outcome.as_str(), "permission_denied");
        assert!(
            run.evidence
                .contains("Claude Code refused Write `hello.txt`;"),
            "{}",
            run.evidence
        );
        assert!(
            run.evidence
                .contains("--claude-arg=--permission-mode --claude-arg=acceptEdits"),
            "{}",
            run.evidence
        );
    }
}
