//! Running agent processes so that they can never outlive their limits.
//!
//! Owns: process trees, signals, timeouts, stall detection and the orphan sweep.
//! Must not: know about specs, tasks or the state file — callers record results.
//!
//! Two layers:
//! - [`supervisor::supervise`] runs one program *in this process* as a supervised tree
//!   (child subreaper, run cookie, TERM → grace → KILL). It reaps with `waitpid(-1)`, so a
//!   process that uses it must not run other children at the same time; `qw exec` is
//!   exactly such a process.
//! - [`Executor`] is the trait callers use. [`LocalExecutor`] runs each job through a
//!   `qw exec` child process, so many jobs can be supervised at once from one workflow
//!   and each supervisor has the subreaper role to itself. [`SlurmExecutor`] runs each
//!   job as a Slurm batch job whose only process is `qw exec` on the node. Other backends
//!   (Windows Job Objects, Kubernetes Jobs) implement the same trait.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) mod cookie;
mod kind;
mod local;
#[cfg(target_os = "linux")]
pub(crate) mod procs;
pub mod slurm;
pub(crate) mod supervisor;
pub(crate) mod sweep;
mod tree;

pub use crate::cancel::Cancel;
pub use cookie::RunId;
pub use kind::ExecutorKind;
pub use local::{LocalExecutor, wait_forwarding};
pub use slurm::{SchedulerVerdict, SlurmExecutor};

/// What to run: an argv, or — only when a user explicitly wrote one — a shell command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A program and its arguments, executed directly (no shell).
    Exec {
        /// The program (looked up in `PATH` if it has no `/`).
        program: OsString,
        /// Its arguments.
        args: Vec<OsString>,
    },
    /// A shell command the user wrote, run visibly as `sh -c COMMAND`.
    Shell(String),
}

impl Program {
    /// An argv program; the first element is the program.
    pub fn argv<I, S>(argv: I) -> Option<Program>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut it = argv.into_iter().map(Into::into);
        let program = it.next()?;
        Some(Program::Exec {
            program,
            args: it.collect(),
        })
    }

    /// The argv that will actually be executed.
    pub fn to_argv(&self) -> Vec<OsString> {
        match self {
            Program::Exec { program, args } => std::iter::once(program.clone())
                .chain(args.iter().cloned())
                .collect(),
            Program::Shell(cmd) => vec!["sh".into(), "-c".into(), cmd.into()],
        }
    }

    /// A readable one-line rendering (for logs and the state's `recent_commands`).
    pub fn display(&self) -> String {
        match self {
            Program::Shell(cmd) => format!("sh -c {}", shell_words::quote(cmd)),
            Program::Exec { .. } => {
                let words: Vec<String> = self
                    .to_argv()
                    .iter()
                    .map(|w| w.to_string_lossy().into_owned())
                    .collect();
                shell_words::join(words)
            }
        }
    }
}

/// Where a child's output goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Output {
    /// Share qw's own stdout/stderr.
    #[default]
    Inherit,
    /// Discard.
    Null,
    /// Append to a file (created if missing). Captured to a file rather than a pipe, so
    /// a reader never truncates it and a held pipe never blocks qw.
    File(PathBuf),
}

/// Everything needed to run one supervised job.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// What to run.
    pub program: Program,
    /// Working directory (default: inherited).
    pub cwd: Option<PathBuf>,
    /// Extra environment variables.
    pub env: Vec<(OsString, OsString)>,
    /// Where stdout goes.
    pub stdout: Output,
    /// Where stderr goes.
    pub stderr: Output,
    /// Connect stdin to /dev/null instead of inheriting it.
    pub null_stdin: bool,
    /// Wall-clock limit (None: none).
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// End the run if it writes no output and uses no CPU for this long (see also
    /// [`ExecSpec::stall_on_events`]).
    pub stall_timeout: Option<Duration>,
    /// The stdout is an agent's event stream (claude's stream-json): for the stall
    /// watch, life is the stream growing or a *tool* (a process below the program) using
    /// CPU or doing I/O; the program's own CPU and I/O are not (the claude CLI keeps
    /// using both while it waits on an API call that never answers, rev11b F2).
    pub stall_on_events: bool,
    /// Run id to use (default: a fresh one owned by the supervisor).
    pub run_id: Option<String>,
    /// Project root, exported as `QW_PROJECT` so automatic sweeps stay inside a project.
    pub project: Option<PathBuf>,
    /// What the job is, for schedulers that show it (`qw/<spec>/<task>`).
    pub name: Option<String>,
    /// Where the local supervisor writes its report (default: a private temporary
    /// folder). An agent run's is its run folder, so a later qw can judge and use the
    /// result of a run that finished after the qw waiting for it was killed.
    pub report_file: Option<PathBuf>,
}

/// Default grace between SIGTERM and SIGKILL (the original system's).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

impl ExecSpec {
    /// A spec with defaults: inherit stdio, no timeout, 5 s grace.
    pub fn new(program: Program) -> ExecSpec {
        ExecSpec {
            program,
            cwd: None,
            env: Vec::new(),
            stdout: Output::Inherit,
            stderr: Output::Inherit,
            null_stdin: false,
            timeout: None,
            grace: DEFAULT_GRACE,
            stall_timeout: None,
            stall_on_events: false,
            run_id: None,
            project: None,
            name: None,
            report_file: None,
        }
    }
}

/// A process that was still alive when its run ended and had to be terminated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leftover {
    /// Its pid.
    pub pid: i32,
    /// Its command line.
    pub command: String,
}

/// How a supervised run ended. Serialized as `qw exec --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecReport {
    /// The exit code `qw exec` returns (GNU timeout conventions).
    pub exit_code: i32,
    /// The signal that ended the direct child, if any.
    pub signal: Option<i32>,
    /// The wall-clock limit was reached.
    pub timed_out: bool,
    /// The run was ended because it was silent and idle for the stall timeout.
    #[serde(default)]
    pub stalled: bool,
    /// A signal sent to qw (SIGINT, SIGTERM, SIGHUP) ended the run; its number.
    #[serde(default)]
    pub interrupted_by: Option<i32>,
    /// Some process survived SIGTERM past the grace and SIGKILL was sent (to a member,
    /// or to the direct child's process group while it had one).
    pub escalated_to_kill: bool,
    /// Wall-clock duration of the run in milliseconds.
    pub duration_ms: u64,
    /// How many leftover processes (alive after the direct child ended by itself) were
    /// terminated. Zero when qw ended the run (timeout, stall, signal to qw): see
    /// [`processes_ended`](ExecReport::processes_ended) for those.
    pub leftovers_killed: usize,
    /// How many processes of the run qw ended, however the run ended: each member it
    /// signalled (SIGTERM or the forwarded signal, then SIGKILL), plus each one the
    /// process-group signal ended before a look saw it. The direct child counts when it
    /// was still running when the ending began (timeout, stall, signal to qw); when it had
    /// exited by itself this equals [`leftovers_killed`](ExecReport::leftovers_killed).
    /// Zero when nothing was left to end.
    #[serde(default)]
    pub processes_ended: usize,
    /// The leftovers, with their command lines (the first 64); one the process-group
    /// signal ended before a look saw it is listed by pid, without its command line.
    #[serde(default)]
    pub leftovers: Vec<Leftover>,
    /// Processes of the run still alive after SIGKILL was repeated for 10 s (blocked in
    /// the kernel, where no signal reaches them), or — when for 10 s no look found a
    /// member although qw still had children — those children, with their state: the
    /// one case where `qw exec` returns with a process of the run left, and says so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unkillable: Vec<Leftover>,
    /// The program could not be started: why.
    #[serde(default)]
    pub spawn_error: Option<String>,
    /// The run's cookie.
    pub run_id: String,
    /// Time spent waiting for resource admission (or, under a batch scheduler, pending
    /// in its queue) before starting, in milliseconds.
    #[serde(default)]
    pub admission_wait_ms: u64,
    /// The batch scheduler's verdict on the job (Slurm runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<SchedulerVerdict>,
}

impl ExecReport {
    /// A report for run `run_id` that says nothing happened yet: exit 0, no signal, no
    /// timeout, no leftovers, zero duration. Fill in what is known.
    pub fn new(run_id: impl Into<String>) -> ExecReport {
        ExecReport {
            exit_code: 0,
            signal: None,
            timed_out: false,
            stalled: false,
            interrupted_by: None,
            escalated_to_kill: false,
            duration_ms: 0,
            leftovers_killed: 0,
            processes_ended: 0,
            leftovers: Vec::new(),
            unkillable: Vec::new(),
            spawn_error: None,
            run_id: run_id.into(),
            admission_wait_ms: 0,
            scheduler: None,
        }
    }
}

/// Failures of the executor itself (not of the program it ran).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A required file or pipe could not be set up.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The supervising process failed or reported nonsense.
    #[error("the supervisor failed: {0}")]
    Supervisor(String),
    /// The executor was configured with something it cannot use (a bad `--slurm-arg`).
    #[error("{0}")]
    Usage(String),
    /// The batch scheduler refused, lost or could not run the job.
    #[error("{0}")]
    Scheduler(String),
    /// A node could not use a folder qw put the job in: the project is not on a
    /// filesystem the nodes share (at the same path). `project`: `dir` is the project
    /// itself (the check before a workflow), not one run's folder.
    #[error(
        "{}: the project must be on a filesystem the Slurm nodes share, mounted at the same path as here{}",
        if *project {
            format!("no Slurm node sees the project `{}` (the check job {job_id} could not use it on node {node})", dir.display())
        } else {
            format!("Slurm job {job_id} could not use `{}` on node {node}", dir.display())
        },
        log.as_ref().map(|l| format!(" (see `{}`)", l.display())).unwrap_or_default()
    )]
    NotShared {
        /// The job id.
        job_id: String,
        /// The node it was sent to (`?` if unknown).
        node: String,
        /// The folder the node could not use.
        dir: std::path::PathBuf,
        /// `dir` is the project.
        project: bool,
        /// What Slurm wrote about the job, when it is readable here.
        log: Option<std::path::PathBuf>,
    },
    /// The job stayed pending in the scheduler's queue past the acquire timeout; it was
    /// cancelled and never ran.
    #[error(
        "Slurm job {job_id} (`{name}`) was still pending after {}s in partition `{partition}` (reason: {reason}); cancelled it. Check the partition and `--slurm-arg`s, or raise `resource_limits.acquire_timeout_s`",
        waited.as_secs()
    )]
    Pending {
        /// The job id.
        job_id: String,
        /// The job name.
        name: String,
        /// The partition it waited in.
        partition: String,
        /// Slurm's pending reason (`Resources`, `Priority`, `BeginTime`, `QOSMaxJobsPerUserLimit`…).
        reason: String,
        /// How long it waited.
        waited: Duration,
    },
}

/// Runs jobs as supervised process trees. Implementations must guarantee that when `run`
/// returns, no process of the job is left alive.
pub trait Executor: Send + Sync {
    /// Run one job to completion (or timeout, stall, cancellation) and report how it ended.
    fn run(&self, spec: &ExecSpec, cancel: &Cancel) -> Result<ExecReport, ExecError>;

    /// True when a batch scheduler decides where and when jobs run (Slurm): local
    /// admission must not gate them, and jobs handed to it may still be waiting in its
    /// queue, so stopping a batch of work cancels them too.
    fn schedules(&self) -> bool {
        false
    }

    /// Before a batch of related jobs (a workflow) whose names start with `name_prefix`
    /// and who work in `dir`: check that the backend can run them there, and take over
    /// the jobs of such names that a killed `qw` left running, so a later [`run`] of the
    /// same name waits for that job instead of running the work a second time. Returns
    /// one line per thing worth telling the user.
    ///
    /// [`run`]: Executor::run
    fn prepare(
        &self,
        _dir: &std::path::Path,
        _name_prefix: &str,
        _cancel: &Cancel,
    ) -> Result<Vec<String>, ExecError> {
        Ok(Vec::new())
    }
}
