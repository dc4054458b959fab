//! [`WorkflowError`]: what stops a workflow before or outside the work itself. A
//! failed task is no error (it is an outcome in the state and the report); these are
//! bad input found before anything is written, and failures of the state, the disk or
//! git underneath.

use std::path::PathBuf;
use std::sync::Arc;

use crate::exit::{self, UserError};

/// Failures that stop a workflow before or outside the work itself.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkflowError {
    /// The spec name is not valid.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// The agent cannot be used (program missing, bad `--agent-cmd`), or preparing or
    /// judging one of its runs failed.
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    /// `--agent command` was asked for without a template.
    #[error("--agent command needs --agent-cmd 'PROGRAM ARGS… {{prompt_file}}'")]
    NoAgentCmd,
    /// `--parallel 0`.
    #[error("--parallel must be at least 1")]
    NoParallelism,
    /// The spec's tasks.md cannot be read or does not parse.
    #[error(transparent)]
    Tasks(#[from] crate::spec::tasks::TasksError),
    /// A task's `_Verify:_` command is one qw will not run.
    #[error(
        "`{}` line {line}: task {task} has a _Verify:_ command qw will not run: {reason}",
        path.display()
    )]
    Verify {
        /// The tasks.md file.
        path: PathBuf,
        /// The task's line.
        line: usize,
        /// The task id.
        task: String,
        /// Why it is refused.
        reason: String,
    },
    /// A task's `_Verify:_` in tasks.md is not the one a run recorded: changed while a run
    /// went on (by an agent, through the spec link or the main tree's path).
    #[error(
        "`{}`: {changes}, changed {when}; qw runs only the tasks and checks you wrote: put them back (`git diff -- {}` shows the change if tasks.md is tracked), or, if the change is yours, delete `{}`",
        tasks.display(), tasks.display(), record.display()
    )]
    ChecksChanged {
        /// The tasks.md file.
        tasks: PathBuf,
        /// `task 1's _Verify:_ `a` → `b`, …`.
        changes: String,
        /// When it was changed.
        when: &'static str,
        /// The record to delete to take the change.
        record: PathBuf,
    },
    /// tasks.md is gone, and a run recorded the list it read from it: deleted while a run
    /// went on (by an agent, through the spec link or the main tree's path).
    #[error(
        "`{}` was deleted {when}; qw does not generate a new task list over the one a run was using: put it back (`git checkout -- {}` if it is tracked, or from `.claude/backups/`), or, if the deletion is yours, delete `{}`",
        tasks.display(), tasks.display(), record.display()
    )]
    TasksDeleted {
        /// The tasks.md file.
        tasks: PathBuf,
        /// When it was deleted.
        when: &'static str,
        /// The record to delete to take the deletion.
        record: PathBuf,
    },
    /// The settings file cannot be read or holds a bad value.
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    /// Task worktrees were asked for (or needed) but cannot be used here.
    #[error(transparent)]
    Isolation(#[from] super::IsolationError),
    /// The state could not be read or written.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A batched state write failed (shared by every change in the batch).
    #[error(transparent)]
    Record(Arc<crate::state::StateError>),
    /// A batched tick of tasks.md failed.
    #[error(transparent)]
    Tick(Arc<crate::spec::tasks::TasksError>),
    /// The thread that writes the state or tasks.md is gone (it panicked).
    #[error("the workflow's {0} writer stopped")]
    WriterGone(&'static str),
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A git command for task worktrees failed.
    #[error(transparent)]
    Git(#[from] crate::worktree::WorktreeError),
    /// The options could not be turned into JSON for the state.
    #[error("failed to serialize the workflow options: {0}")]
    Options(#[source] serde_json::Error),
    /// A lock file could not be used.
    #[error(transparent)]
    Lock(#[from] crate::fs::LockError),
    /// The executor cannot run the workflow's jobs (Slurm: no node sees the project, the
    /// cluster does not answer).
    #[error("{0}")]
    Executor(#[source] crate::exec::ExecError),
    /// Another qw is running this spec's workflow.
    #[error(
        "another qw is already running the workflow of spec `{spec}` (lock `{}` held by {holder})",
        lock.display()
    )]
    Busy {
        /// The spec.
        spec: String,
        /// The lock file.
        lock: PathBuf,
        /// Who holds it.
        holder: Box<crate::fs::Holder>,
    },
}

impl UserError for WorkflowError {
    fn exit_code(&self) -> i32 {
        match self {
            WorkflowError::Spec(
                crate::spec::SpecError::Io(_)
                | crate::spec::SpecError::Tasks(crate::spec::tasks::TasksError::Io(_)),
            ) => exit::FAILED,
            WorkflowError::Spec(_)
            | WorkflowError::NoAgentCmd
            | WorkflowError::NoParallelism
            | WorkflowError::Verify { .. }
            | WorkflowError::ChecksChanged { .. }
            | WorkflowError::TasksDeleted { .. }
            | WorkflowError::Isolation(_) => exit::USAGE,
            WorkflowError::Tasks(e) => match e {
                // Not a regular file, too big: bad input, not a broken disk.
                crate::spec::tasks::TasksError::Io(e) if crate::fs::is_refused(e) => exit::USAGE,
                crate::spec::tasks::TasksError::Io(_) => exit::FAILED,
                _ => exit::USAGE,
            },
            WorkflowError::Agent(e) => e.exit_code(),
            WorkflowError::Settings(e) => e.exit_code(),
            // Interrupted while waiting for the state lock: the documented 128+N.
            WorkflowError::State(e) => state_exit_code(e),
            WorkflowError::Record(e) => state_exit_code(e),
            // Interrupted while waiting for a lock of its own (the restore lock, taken at
            // every start): 128+N like every interrupted wait, whoever maps the error.
            WorkflowError::Lock(e) => e
                .interrupted()
                .map_or(exit::FAILED, |sig| exit::EXEC_SIGNAL_BASE + sig),
            WorkflowError::Git(e) => e.exit_code(),
            // A tasks.md (or other input file) that is not a regular file, too big or not
            // UTF-8.
            WorkflowError::Io(e) if crate::fs::is_refused(e) => exit::USAGE,
            WorkflowError::Tick(_)
            | WorkflowError::WriterGone(_)
            | WorkflowError::Io(_)
            | WorkflowError::Options(_)
            | WorkflowError::Executor(_) => exit::FAILED,
            // Another qw runs this spec's workflow: nothing was started, nothing failed —
            // exit 2 like `workflow-reset` refusing the same (rev11b F5); 1 would tell a
            // script the running workflow's tasks failed.
            WorkflowError::Busy { .. } => exit::USAGE,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            WorkflowError::Agent(e) => e.hints(),
            WorkflowError::Settings(e) => e.hints(),
            WorkflowError::Isolation(e) => e.hints(),
            WorkflowError::State(e) => e.hints(),
            WorkflowError::Record(e) => e.hints(),
            WorkflowError::Git(e) => e.hints(),
            WorkflowError::Verify { .. } => {
                vec!["write it as plain argv, or explicitly as `sh -c '…'`".into()]
            }
            WorkflowError::Lock(e) => e.hints(),
            WorkflowError::Busy { lock, holder, .. } => {
                std::iter::once("wait for it, or stop it".to_owned())
                    .chain(holder.hints(lock))
                    .collect()
            }
            _ => Vec::new(),
        }
    }
}

/// A state error's exit code, 128+N when a signal ended the wait for the state lock.
fn state_exit_code(e: &crate::state::StateError) -> i32 {
    e.interrupted()
        .map_or_else(|| e.exit_code(), |sig| exit::EXEC_SIGNAL_BASE + sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_wait_ended_by_a_signal_exits_128_plus_n() {
        for sig in [1, 2, 15] {
            let err = crate::fs::locked_file::stopped_wait(sig, |path, cancel| {
                crate::fs::LockedFile::acquire(
                    path,
                    "a state restore (`qw state-backup --restore`) to end",
                    &crate::fs::LockTimeout::new(None, ""),
                    cancel,
                )
                .map_err(WorkflowError::from)
            })
            .err;
            assert_eq!(err.exit_code(), exit::EXEC_SIGNAL_BASE + sig, "{err}");
        }
        let other = WorkflowError::from(crate::fs::LockError::from(std::io::Error::other("x")));
        assert_eq!(other.exit_code(), exit::FAILED);
    }

    #[test]
    fn input_errors_exit_2_and_failures_exit_1_with_the_hints_of_their_source() {
        let missing = WorkflowError::from(crate::agent::AgentError::NotFound {
            program: "claude".into(),
        });
        assert_eq!(missing.exit_code(), exit::USAGE);
        assert!(missing.hints()[0].contains("--agent offline"));
        let io = WorkflowError::from(crate::agent::AgentError::Io(std::io::Error::other("full")));
        assert_eq!(io.exit_code(), exit::FAILED, "an I/O error is no bad input");
        let state = WorkflowError::from(crate::state::StateError::Io(std::io::Error::other("x")));
        assert_eq!(state.exit_code(), exit::FAILED);
        assert!(state.hints()[0].contains("previous state is intact"));
        let busy = WorkflowError::Busy {
            spec: "demo".into(),
            lock: "/p/.claude/runs/.demo.workflow.lock".into(),
            holder: Box::new(crate::fs::Holder::unknown()),
        };
        assert_eq!(busy.exit_code(), exit::USAGE, "nothing was started");
        assert!(
            !busy.to_string().contains("wait"),
            "the hint is not in the message"
        );
        let hints = busy.hints();
        assert_eq!(hints[0], "wait for it, or stop it");
        assert!(
            hints[1].contains("fuser -v"),
            "the holder's hint follows: {hints:?}"
        );
    }
}
