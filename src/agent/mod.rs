//! Agents: turning one phase or task of a spec into a command to run, and judging the run.
//!
//! Owns: the [`Agent`] trait and its three implementations ([`ClaudeAgent`],
//! [`CommandAgent`], [`OfflineAgent`]), prompts ([`prompt`]), outcome classification
//! ([`outcome`]), Claude Code's event stream ([`events`]: live activity and readable
//! lines), permission refusals and their way out ([`permissions`]), and spec documents
//! delivered as answers ([`document`]).
//! Must not: supervise processes (that is [`crate::exec`]), schedule tasks or write the
//! state (that is the workflow). [`run_job`] glues one job through an [`Executor`] for
//! callers that want it; it writes the prompt file and, for a document phase, the
//! document the agent answered with.
//!
//! Flow for one job: the caller creates `.claude/runs/<run-id>/`, calls
//! [`Agent::command`], runs it with stdout → the command's
//! [`AgentCommand::stdout_name`] (`events.jsonl` for claude) and stderr → `stderr.log`
//! (files, never only a pipe: piped JSON can be cut at 64 KiB), then [`judge`] turns the
//! report and the captured bytes into an [`outcome::AgentRun`] ([`Agent::classify`],
//! then [`document::settle`] for a document phase).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::exec::{Cancel, ExecSpec, Executor, Output, Program};
use crate::project::Project;

pub mod captured;
pub(crate) mod claude;
pub(crate) mod command;
pub(crate) mod document;
pub mod events;
pub mod offline;
pub mod outcome;
pub(crate) mod permissions;
pub mod prompt;
pub mod runs;

pub use claude::ClaudeAgent;
pub use command::CommandAgent;
pub use offline::OfflineAgent;
pub use outcome::{AgentRun, ClassifyInput, ErrorCause, Outcome};

/// A workflow phase an agent can be asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Write `requirements.md`.
    Requirements,
    /// Write `design.md`.
    Design,
    /// Write `tasks.md`.
    Tasks,
    /// Do one task of `tasks.md`.
    Implementation,
    /// Check the finished work against the spec.
    Validation,
}

impl Phase {
    /// Every phase, in workflow order.
    pub const ALL: [Phase; 5] = [
        Phase::Requirements,
        Phase::Design,
        Phase::Tasks,
        Phase::Implementation,
        Phase::Validation,
    ];

    /// The snake_case name used in prompts, placeholders and `--phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Requirements => "requirements",
            Phase::Design => "design",
            Phase::Tasks => "tasks",
            Phase::Implementation => "implementation",
            Phase::Validation => "validation",
        }
    }

    /// The spec document this phase writes (`requirements.md`, `design.md`, `tasks.md`).
    pub fn document(self) -> Option<&'static str> {
        match self {
            Phase::Requirements => Some("requirements.md"),
            Phase::Design => Some("design.md"),
            Phase::Tasks => Some("tasks.md"),
            Phase::Implementation | Phase::Validation => None,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Phase, String> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown phase `{s}`; expected one of requirements, design, tasks, implementation, validation"
                )
            })
    }
}

/// The task an implementation job is about (a leaf of `tasks.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskJob {
    /// The task id exactly as written (`2.1`).
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its sub-bullets, without the `- ` and without the `_Requirements:_`-style lines.
    pub details: Vec<String>,
    /// Its `_Verify:_` command, as written between the backticks.
    pub verify: Option<String>,
    /// Its `_Requirements:_` references.
    pub requirements: Vec<String>,
}

/// One unit of agent work: a phase of a spec, or one task of it.
#[derive(Debug, Clone)]
pub struct Job {
    /// What to do.
    pub phase: Phase,
    /// The spec name (validated).
    pub spec: String,
    /// The spec's description.
    pub description: String,
    /// The project root.
    pub project_root: PathBuf,
    /// Where the agent runs (the project root, or a task's worktree).
    pub workdir: PathBuf,
    /// `.claude/specs/<spec>/`.
    pub spec_dir: PathBuf,
    /// The task, for [`Phase::Implementation`].
    pub task: Option<TaskJob>,
    /// `.claude/runs/<run-id>/`, created by the caller.
    pub run_dir: PathBuf,
    /// Extra environment for the agent (and the task's `_Verify:_`), e.g.
    /// `QW_WORKTREE` and `QW_TASK_PORT`.
    pub env: Vec<(OsString, OsString)>,
}

impl Job {
    /// `run_dir/prompt.md`: where the prompt is written before the agent starts.
    pub fn prompt_file(&self) -> PathBuf {
        self.run_dir.join("prompt.md")
    }
    /// `run_dir/stderr.log`: the agent's captured stderr.
    pub fn stderr_file(&self) -> PathBuf {
        self.run_dir.join("stderr.log")
    }
    /// The document this job must produce, if its phase writes one.
    pub fn expected_document(&self) -> Option<PathBuf> {
        self.phase.document().map(|d| self.spec_dir.join(d))
    }
    /// The task id, or "" when the job is not about a task.
    pub fn task_id(&self) -> &str {
        self.task.as_ref().map_or("", |t| t.id.as_str())
    }
    /// What a batch scheduler calls this job: `qw/<spec>/<task id>`, or
    /// `qw/<spec>/<phase>` for a document or validation phase.
    pub fn scheduler_name(&self) -> String {
        let what = match &self.task {
            Some(t) => t.id.as_str(),
            None => self.phase.as_str(),
        };
        format!("qw/{}/{what}", self.spec)
    }
}

/// What to run for one job: an argv (never a shell string), its environment and cwd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCommand {
    /// The program and its arguments.
    pub program: Program,
    /// Extra environment variables.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory.
    pub cwd: PathBuf,
    /// The file in the run folder that captures stdout: `events.jsonl` (claude's event
    /// stream), `stdout.json` (offline: one result object), `stdout.log` (a command
    /// agent's plain text). [`runs::output_file`] finds it again.
    pub stdout_name: &'static str,
}

impl AgentCommand {
    /// Where this command's stdout is captured for `job`.
    pub fn stdout_file(&self, job: &Job) -> PathBuf {
        job.run_dir.join(self.stdout_name)
    }

    /// An [`ExecSpec`] for this command with stdout/stderr captured to the job's run
    /// directory, stdin from /dev/null and the project set for sweeps. The caller adds
    /// timeout, grace and stall timeout.
    pub fn to_exec_spec(&self, job: &Job) -> ExecSpec {
        let mut spec = ExecSpec::new(self.program.clone());
        spec.cwd = Some(self.cwd.clone());
        spec.env = self.env.clone();
        spec.stdout = Output::File(self.stdout_file(job));
        spec.stderr = Output::File(job.stderr_file());
        spec.null_stdin = true;
        spec.project = Some(job.project_root.clone());
        spec.name = Some(job.scheduler_name());
        spec
    }
}

/// Environment every agent gets, so scripts can tell which job they are doing.
fn job_env(job: &Job) -> Vec<(OsString, OsString)> {
    vec![
        ("QW_SPEC".into(), job.spec.clone().into()),
        ("QW_PHASE".into(), job.phase.as_str().into()),
        ("QW_TASK_ID".into(), job.task_id().into()),
        ("QW_PROMPT_FILE".into(), job.prompt_file().into_os_string()),
    ]
    .into_iter()
    .chain(job.env.iter().cloned())
    .collect()
}

/// How [`AgentError::NotFound`] says where `program` was looked for: a path is itself
/// the place, a bare name is looked up on PATH.
fn not_found_where(program: &str) -> &'static str {
    if program.contains('/') {
        "does not exist or is not an executable file"
    } else {
        "was not found on PATH"
    }
}

/// Errors building an agent or its command. Each names the value; [`UserError::hints`]
/// says what to do instead.
///
/// [`UserError::hints`]: crate::exit::UserError::hints
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent program is not on PATH (a name), or is no executable file (a path).
    #[error("`{program}` {}", not_found_where(.program))]
    NotFound {
        /// The program looked for.
        program: String,
    },
    /// The `--agent-cmd` template is empty.
    #[error("--agent-cmd is empty")]
    EmptyTemplate,
    /// The `--agent-cmd` template cannot be split into words.
    #[error("--agent-cmd `{template}` cannot be split into words ({reason})")]
    BadQuotes {
        /// The template.
        template: String,
        /// shell-words' description.
        reason: String,
    },
    /// The template names a placeholder qw does not know.
    #[error("--agent-cmd `{template}` uses unknown placeholder `{{{name}}}`")]
    UnknownPlaceholder {
        /// The template.
        template: String,
        /// The placeholder name.
        name: String,
    },
    /// The prompt is too large to pass as one argument.
    #[error("the prompt for spec `{spec}` ({bytes} bytes) is too large to pass as an argument")]
    PromptTooLarge {
        /// The spec.
        spec: String,
        /// Its size.
        bytes: usize,
    },
    /// An implementation job came without its task.
    #[error("the {phase} job for spec `{spec}` has no task; this is a bug in the caller")]
    MissingTask {
        /// The phase.
        phase: Phase,
        /// The spec.
        spec: String,
    },
    /// A resume was asked of an agent that has no sessions.
    #[error("the {agent} agent cannot resume a session")]
    CannotResume {
        /// The agent's name.
        agent: &'static str,
    },
    /// A session id that is not one (it goes into argv after `--resume`).
    #[error(
        "`{}` is not a session id (Claude Code's are UUIDs)",
        shown_session(id)
    )]
    BadSession {
        /// The value given.
        id: String,
    },
    /// Writing the prompt or reading the captured output failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The executor failed (not the agent).
    #[error("{0}")]
    Exec(#[from] crate::exec::ExecError),
}

impl crate::exit::UserError for AgentError {
    fn exit_code(&self) -> i32 {
        match self {
            AgentError::NotFound { .. }
            | AgentError::EmptyTemplate
            | AgentError::BadQuotes { .. }
            | AgentError::UnknownPlaceholder { .. }
            | AgentError::PromptTooLarge { .. } => crate::exit::USAGE,
            AgentError::MissingTask { .. }
            | AgentError::CannotResume { .. }
            | AgentError::BadSession { .. }
            | AgentError::Io(_)
            | AgentError::Exec(_) => crate::exit::FAILED,
        }
    }

    fn hints(&self) -> Vec<String> {
        let hint = match self {
            AgentError::NotFound { .. } => {
                "install it, or use `--agent offline` (built in, needs nothing installed) or `--agent-cmd 'PROG {prompt_file}'`"
            }
            AgentError::EmptyTemplate => {
                "give a command such as `--agent-cmd 'my-agent --prompt-file {prompt_file}'`"
            }
            AgentError::BadQuotes { .. } => "check its quotes",
            AgentError::UnknownPlaceholder { .. } => {
                "known placeholders: {prompt} {prompt_file} {task_id} {spec} {phase}"
            }
            AgentError::PromptTooLarge { .. } => {
                "shorten the steering or spec documents, or use `--agent-cmd` with {prompt_file}"
            }
            AgentError::CannotResume { .. } | AgentError::BadSession { .. } => "run the job fresh",
            AgentError::MissingTask { .. } | AgentError::Io(_) | AgentError::Exec(_) => {
                return Vec::new();
            }
        };
        vec![hint.to_owned()]
    }
}

/// A session id as Claude Code makes them: a UUID, 8-4-4-4-12 hexadecimal digits
/// (`40499eed-3697-4376-8424-4e652ae596e8`). Nothing else is recorded or resumed.
pub fn is_session_id(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A session id as shown in a note: one line, control characters escaped, cut short
/// (the value may be anything a stream wrote).
pub fn shown_session(id: &str) -> String {
    crate::fmt::one_line(id, 60)
}

/// An AI coding agent (or a stand-in) that qw can run for a job.
pub trait Agent: Send + Sync {
    /// Short name for logs, state and reports (`claude`, `command`, `offline`).
    fn name(&self) -> &'static str;

    /// Whether the agent changes code. One that does not (`offline`) cannot make a
    /// failed `_Verify:_` pass by trying again, so such a failure is not retried.
    fn writes_code(&self) -> bool {
        true
    }

    /// The command that does `job`, given the prompt [`prompt::build`] made for it.
    fn command(&self, job: &Job, prompt: &str) -> Result<AgentCommand, AgentError>;

    /// Whether `id` can be a session of this agent, to record and resume: Claude Code's
    /// are UUIDs ([`is_session_id`]). A stream can name anything (a hostile or broken
    /// one, `--dangerously-skip-permissions`): such an id is ignored, never passed on.
    fn accepts_session(&self, id: &str) -> bool {
        is_session_id(id)
    }

    /// The command that continues the earlier session `session_id` of this agent for
    /// `job`, with the short `prompt` of [`prompt::resume`]. None: this agent has no
    /// sessions (the caller runs the job fresh).
    fn resume_command(
        &self,
        _job: &Job,
        _session_id: &str,
        _prompt: &str,
    ) -> Option<Result<AgentCommand, AgentError>> {
        None
    }

    /// Check up front that the agent can run at all (program on PATH), so a workflow
    /// fails with one clear error before any state changes.
    fn check(&self) -> Result<(), AgentError> {
        Ok(())
    }

    /// Judge a finished run by its report and output alone. The default is
    /// [`outcome::classify`] (a JSON result object is required); [`CommandAgent`] also
    /// accepts plain-text output. Documents are settled afterwards ([`judge`]).
    fn classify(&self, _job: &Job, input: &ClassifyInput<'_>) -> AgentRun {
        outcome::classify(input)
    }

    /// The spec document the agent answered with, if its answer holds one; `Err` says
    /// why an answer there is cannot be taken (too large). The default reads the final
    /// result text leniently ([`document::extract`]).
    fn answered_document(
        &self,
        run: &AgentRun,
        _stdout: &captured::Captured,
    ) -> Result<Option<String>, String> {
        Ok(run
            .result_text
            .as_deref()
            .and_then(|t| document::extract(t, false)))
    }
}

/// Judge a finished run: [`Agent::classify`], then for a document phase
/// [`document::settle`] (the file the agent wrote, else the document it answered with,
/// written by qw). `before`: the document was present before the agent ran.
pub fn judge(agent: &dyn Agent, job: &Job, input: &ClassifyInput<'_>, before: bool) -> AgentRun {
    let run = agent.classify(job, input);
    if job.expected_document().is_none() || !run.outcome.is_success() {
        return run;
    }
    let stdout = input.stdout.as_captured();
    let answer = agent.answered_document(&run, &stdout);
    document::settle(job, run, answer, before, &stdout)
}
/// Limits for one agent run.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    /// Wall-clock limit.
    pub timeout: Option<Duration>,
    /// SIGTERM → SIGKILL grace.
    pub grace: Duration,
    /// Silence-and-idle limit.
    pub stall_timeout: Option<Duration>,
}

impl Default for RunLimits {
    fn default() -> RunLimits {
        RunLimits {
            timeout: Some(Duration::from_secs(1800)),
            grace: crate::exec::DEFAULT_GRACE,
            stall_timeout: Some(Duration::from_secs(600)),
        }
    }
}

/// How many trailing stderr lines go into the evidence and [`ClassifyInput::stderr_tail`].
pub const STDERR_TAIL_LINES: usize = 20;

/// How a run starts: a fresh conversation, or the continuation of an earlier session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start<'a> {
    /// The full prompt of [`prompt::build`].
    Fresh,
    /// `--resume session_id` with the short prompt of [`prompt::resume`].
    Resume {
        /// The session to continue (an earlier run's [`AgentRun::session_id`]).
        session_id: &'a str,
        /// Why the earlier run stopped, said to the agent (e.g. its outcome's evidence).
        why: &'a str,
    },
}

/// Run one job start to finish: build the prompt, write it to `run_dir/prompt.md`, run
/// the agent through `executor` with output captured in `run_dir`, and classify.
/// Does not run `_Verify:_` and does not touch the state.
pub fn run_job(
    agent: &dyn Agent,
    job: &Job,
    project: &Project,
    executor: &dyn Executor,
    limits: RunLimits,
    cancel: &Cancel,
) -> Result<(AgentRun, crate::exec::ExecReport), AgentError> {
    run_job_as(agent, job, Start::Fresh, project, executor, limits, cancel)
}

/// [`run_job`], fresh or continuing an earlier session ([`Start::Resume`]; an agent
/// without sessions answers [`AgentError::CannotResume`]). A resumed run whose session
/// is gone ends as `agent_error` with cause `no_session`: run it fresh then.
pub fn run_job_as(
    agent: &dyn Agent,
    job: &Job,
    start: Start<'_>,
    project: &Project,
    executor: &dyn Executor,
    limits: RunLimits,
    cancel: &Cancel,
) -> Result<(AgentRun, crate::exec::ExecReport), AgentError> {
    let prompt = match start {
        Start::Fresh => prompt::build(job, project),
        Start::Resume { why, .. } => prompt::resume(job, why),
    };
    // A NUL (in a task title, a document) cannot be passed in an argument (`-p PROMPT`,
    // `{prompt}`): the run would fail to start. It means nothing in a prompt: shown as
    // `\u{0}`, in the prompt file too, the task runs.
    let prompt = if prompt.contains('\0') {
        prompt.replace('\0', "\\u{0}")
    } else {
        prompt
    };
    crate::fs::create_dir_all(&job.run_dir)?;
    // Evidence for the run, read by the agent right away; never through a planted link.
    crate::fs::write_generated(&job.prompt_file(), prompt.as_bytes())?;
    let command =
        match start {
            Start::Fresh => agent.command(job, &prompt)?,
            Start::Resume { session_id, .. } => agent
                .resume_command(job, session_id, &prompt)
                .ok_or(AgentError::CannotResume {
                agent: agent.name(),
            })??,
        };
    let mut spec = command.to_exec_spec(job);
    spec.report_file = Some(job.run_dir.join(FINISHED_REPORT));
    spec.timeout = limits.timeout;
    spec.grace = limits.grace;
    spec.stall_timeout = limits.stall_timeout;
    // claude's stream-json: an event is the sign of life, not the CLI's own CPU or I/O.
    spec.stall_on_events = command.stdout_name == "events.jsonl";
    let before = job
        .expected_document()
        .is_some_and(|d| document::present(&d));
    let report = executor.run(&spec, cancel)?;
    // Bounded: a line over `events::MAX_LINE_BYTES` is left out as it is read, and of a
    // long output only its tail is held (see `captured`), so judging a run (also right
    // after Ctrl-C) stays quick and small whatever the agent printed.
    let stdout = captured::Captured::read(&command.stdout_file(job))?;
    let oversized = stdout.oversized();
    let stderr = crate::fs::read_tail_regular(&job.stderr_file(), 16 * 1024)?;
    let stderr_tail = outcome::tail_lines(&stderr, STDERR_TAIL_LINES);
    let mut run = judge(
        agent,
        job,
        &ClassifyInput {
            report: &report,
            stdout: &stdout,
            stderr_tail: &stderr_tail,
            phase: job.phase,
            user_cancelled: cancel.pending().is_some() || report.interrupted_by.is_some(),
        },
        before,
    );
    // The stream's last line was too long even to read back (a `result` carrying an
    // answer over READ_BACK_BYTES): the run said something qw cannot take, and a rerun
    // would say it again. Not "without its result".
    if matches!(
        run.outcome,
        Outcome::Truncated { .. } | Outcome::NoResult { .. }
    ) && let Some((file, bytes)) = stdout.unread_last_line()
        && usize::try_from(bytes).map_or(true, |b| b > captured::READ_BACK_BYTES)
    {
        run.outcome = Outcome::AgentError {
            cause: ErrorCause::TooLarge,
            exit_code: report.exit_code,
        };
        run.evidence = format!(
            "the agent's last output line is {bytes} bytes, more than the {} qw reads back (its answer is in `{}`); not retried: the same run would answer the same; have the agent write its work to files",
            captured::READ_BACK_BYTES,
            file.display()
        );
        return Ok((run, report));
    }
    if oversized > 0 {
        run.evidence = format!(
            "{} ({oversized} stdout line(s) over {} bytes skipped)",
            run.evidence,
            events::MAX_LINE_BYTES
        );
    }
    Ok((run, report))
}

/// The supervisor's report of an agent run, in its run folder (see
/// [`crate::exec::ExecSpec::report_file`]).
pub const FINISHED_REPORT: &str = "exec-report.json";

/// The verdict on a run in `job.run_dir` that ended after the qw waiting for it was
/// killed (its supervisor, orphaned, ran it to the end and left its report there):
/// judged exactly as [`run_job_as`] judges a run it waited for. `None` when the folder
/// holds no readable report (the run was cut off, or made by an older qw) or no output.
pub fn judge_finished(agent: &dyn Agent, job: &Job) -> Option<AgentRun> {
    let text = crate::fs::read_regular_text(&job.run_dir.join(FINISHED_REPORT), 16 << 20).ok()?;
    let report: crate::exec::ExecReport = serde_json::from_str(&text).ok()?;
    let stdout = captured::Captured::read(&runs::output_file(&job.run_dir)?).ok()?;
    let stderr = crate::fs::read_tail_regular(&job.stderr_file(), 16 * 1024).unwrap_or_default();
    let stderr_tail = outcome::tail_lines(&stderr, STDERR_TAIL_LINES);
    Some(judge(
        agent,
        job,
        &ClassifyInput {
            report: &report,
            stdout: &stdout,
            stderr_tail: &stderr_tail,
            phase: job.phase,
            user_cancelled: report.interrupted_by.is_some(),
        },
        false,
    ))
}

/// The last `max` bytes of `bytes`.
pub fn tail_bytes(bytes: &[u8], max: usize) -> &[u8] {
    &bytes[bytes.len().saturating_sub(max)..]
}

/// Look `program` up like `execvp` would: a name with `/` is checked as a path, anything
/// else in each `PATH` directory. Returns the executable found.
pub fn find_program(program: &std::ffi::OsStr) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let as_path = Path::new(program);
    if program.as_encoded_bytes().contains(&b'/') {
        return is_exec(as_path).then(|| as_path.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_exec(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_round_trip_through_their_names() {
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse::<Phase>().unwrap(), p);
            assert_eq!(
                serde_json::to_value(p).unwrap(),
                serde_json::json!(p.as_str())
            );
        }
        assert!("Design".parse::<Phase>().is_err());
        assert_eq!(Phase::Tasks.document(), Some("tasks.md"));
        assert_eq!(Phase::Implementation.document(), None);
    }

    #[test]
    fn a_document_phase_is_delivered_by_a_write_or_an_answer() {
        let dir = tempfile::tempdir().unwrap();
        let job = Job {
            phase: Phase::Design,
            spec: "s".into(),
            description: "d".into(),
            project_root: dir.path().into(),
            workdir: dir.path().into(),
            spec_dir: dir.path().join("spec"),
            task: None,
            run_dir: dir.path().join("run"),
            env: Vec::new(),
        };
        let report = crate::exec::ExecReport {
            duration_ms: 5,
            ..crate::exec::ExecReport::new("r")
        };
        let judged = |stdout: &str| {
            judge(
                &ClaudeAgent::new(),
                &job,
                &ClassifyInput {
                    report: &report,
                    stdout: &captured::Captured::from(stdout),
                    stderr_tail: "",
                    phase: Phase::Design,
                    user_cancelled: false,
                },
                false,
            )
        };
        let said_done = r##"{"type":"result","is_error":false,"result":"Done, I wrote it."}"##;
        let denied = r##"{"type":"result","is_error":false,"result":"Done.","permission_denials":[{"tool_name":"Write","tool_input":{"file_path":"/p/.claude/specs/s/design.md"}}]}"##;
        let answered = r##"{"type":"result","is_error":false,"result":"Here it is.\n\n# Design\n\n## Overview\n","permission_denials":[{"tool_name":"Write"}]}"##;
        let run = judged(said_done);
        assert_eq!(run.outcome, Outcome::NoResult { exit_code: 0 });
        assert!(run.evidence.contains("neither wrote"), "{}", run.evidence);
        let run = judged(denied);
        document::assert_refused_sensitive_write(&run);
        assert!(!job.spec_dir.join("design.md").exists());
        let run = judged(answered);
        assert_eq!(run.outcome, Outcome::Succeeded, "{}", run.evidence);
        assert_eq!(
            crate::fs::read_to_string(job.spec_dir.join("design.md")).unwrap(),
            "# Design\n\n## Overview\n"
        );
        // Written by the agent: accepted as it is, even when a write was refused.
        crate::fs::write(job.spec_dir.join("design.md"), "# Mine").unwrap();
        assert_eq!(judged(denied).outcome, Outcome::Succeeded);
        assert_eq!(
            crate::fs::read_to_string(job.spec_dir.join("design.md")).unwrap(),
            "# Mine"
        );
    }

    #[test]
    fn not_found_says_path_only_for_a_bare_name() {
        let e = |p: &str| {
            AgentError::NotFound {
                program: p.to_owned(),
            }
            .to_string()
        };
        assert_eq!(e("claude"), "`claude` was not found on PATH");
        assert_eq!(
            e("/opt/agent/run"),
            "`/opt/agent/run` does not exist or is not an executable file"
        );
        assert_eq!(
            e("./agent"),
            "`./agent` does not exist or is not an executable file"
        );
    }

    #[test]
    fn find_program_checks_the_exec_bit() {
        assert!(find_program("sh".as_ref()).is_some());
        assert!(find_program("qw-no-such-program-xyz".as_ref()).is_none());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("plain");
        crate::fs::write(&f, "x").unwrap();
        assert!(find_program(f.as_os_str()).is_none());
    }
}
