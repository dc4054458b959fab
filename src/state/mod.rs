//! The unified state: `.claude/unified_state.json` (CONTRACT §3) and its recovery (§5).
//!
//! Owns: the typed schema ([`schema`]), timestamps and numbers that read the original
//! Python files ([`timestamp`], [`number`]: `NaN`, `Infinity`, integers of any size), the cross-process lock ([`lock`]), lock-free reads and locked durable
//! writes ([`StateStore`]), backups ([`backup`]) and workflow resets ([`reset`]).
//! Must not: run processes, print (warnings go through `tracing`), or parse CLI flags.
//!
//! Every change is one call: `store.update(|s| …)` — lock, read, apply, durable write.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;

pub(crate) mod backup;
pub(crate) mod lock;
pub(crate) mod number;
pub(crate) mod reset;
pub(crate) mod schema;
mod store;
pub(crate) mod timestamp;

pub use lock::StateLock;
pub use number::Count;
pub use schema::{
    AdmissionWait, AgentPerformance, Agents, CommandRecord, Commands, CompletedPhase, CostLedger,
    ErrorRecord, MergePending, Phase, Resources, Session, Spec, SpecFiles, Task, TaskStatus,
    UnifiedState, Workflow, WorkflowOptions,
};
pub(crate) use store::read_state_file;
pub use store::{MAX_STATE_BYTES, StateStore};
pub use timestamp::{ResetAt, Timestamp};

use crate::project::Project;

/// Errors of the state layer. Every message names the file or value involved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing a file failed (the message names the path).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The write lock could not be taken: the lock file is unusable, or the wait timed
    /// out or was interrupted (the message names the holder).
    #[error(transparent)]
    Lock(crate::fs::LockError),
    /// The state could not be turned into JSON (a non-finite number, say).
    #[error("failed to serialize the state: {0}")]
    Serialize(serde_json::Error),
    /// The file was written by a newer qw; it is left alone.
    #[error("`{path}` has schema_version {found}, newer than this qw understands (1)")]
    NewerSchema {
        /// The state file.
        path: PathBuf,
        /// Its version.
        found: u64,
    },
    /// A spec or backup name was refused.
    #[error(transparent)]
    Name(#[from] crate::names::NameError),
    /// `--restore NAME` names no backup.
    #[error("no backup `{name}` in `{dir}`")]
    BackupNotFound {
        /// The name asked for.
        name: String,
        /// The backups folder.
        dir: PathBuf,
    },
    /// A backup with that name exists already.
    #[error("backup `{path}` already exists")]
    BackupExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The backup to restore is not a valid state.
    #[error("backup `{path}` is not a valid state ({reason}); the current state was left as it is")]
    InvalidBackup {
        /// The backup.
        path: PathBuf,
        /// The parse or check error.
        reason: String,
    },
    /// There is no state file to back up.
    #[error("there is no state to back up: `{path}` does not exist")]
    NoState {
        /// The state file.
        path: PathBuf,
    },
    /// A soft reset of a spec whose every task is completed: it has nothing to reset
    /// (completed tasks are kept), and refuses rather than pretend.
    #[error(
        "spec `{name}` is completed ({tasks} task(s) done): a soft reset sets only in_progress, failed and blocked tasks back to pending and keeps completed ones, so it has nothing to reset; nothing was changed"
    )]
    NothingToReset {
        /// The spec name.
        name: String,
        /// Its tasks, all completed.
        tasks: usize,
    },
    /// The spec exists neither in the state nor as a folder.
    #[error("no spec `{name}`: `{dir}` does not exist and the state has no entry for it")]
    SpecNotFound {
        /// The spec name.
        name: String,
        /// Where its folder would be.
        dir: PathBuf,
    },
}

impl StateError {
    /// True when the user asked for something impossible (exit 2) rather than the work
    /// failing (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            StateError::Name(_)
                | StateError::BackupNotFound { .. }
                | StateError::BackupExists { .. }
                | StateError::SpecNotFound { .. }
                | StateError::NothingToReset { .. }
        ) || matches!(self, StateError::Io(e) if crate::fs::is_refused(e))
    }

    /// The signal that interrupted a wait for the lock, if that is what happened.
    pub fn interrupted(&self) -> Option<i32> {
        match self {
            StateError::Lock(e) => e.interrupted(),
            _ => None,
        }
    }

    /// Every hint line to show (a lock error's hints name its holder).
    pub fn hints(&self) -> Vec<String> {
        match self {
            StateError::Lock(e) => e.hints(),
            StateError::NothingToReset { name, .. } => vec![
                format!(
                    "to run it again from a new design and task list: `qw workflow-reset {name} --hard --yes` (the spec folder is copied to backups first)"
                ),
                format!("to see its tasks: `qw spec-status {name}`"),
            ],
            other => other.hint().map(str::to_owned).into_iter().collect(),
        }
    }

    /// The next step to suggest (lock errors have several: see [`hints`](Self::hints)).
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            StateError::Io(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                "make `.claude/` writable for this user; the previous state is intact"
            }
            StateError::Io(e) if crate::fs::is_refused(e) => {
                "replace it with a regular file, or restore a backup with `qw state-backup --restore NAME`"
            }
            StateError::Io(_) => {
                "check free disk space and permissions of `.claude/`; the previous state is intact"
            }
            StateError::Lock(_) => return None,
            StateError::NewerSchema { .. } => {
                "upgrade qw, or restore an older backup with `qw state-backup --restore NAME`"
            }
            StateError::Name(_) => {
                "names match [A-Za-z0-9][A-Za-z0-9._-]{0,99}; specs are kebab-case"
            }
            StateError::BackupNotFound { .. } => {
                "see the available backups with `qw state-backup --list`"
            }
            StateError::BackupExists { .. } => {
                "choose another name, or omit it for a timestamped one"
            }
            StateError::InvalidBackup { .. } => "pick another backup from `qw state-backup --list`",
            StateError::NoState { .. } => {
                "the state is created by the first `qw` command that records something"
            }
            StateError::SpecNotFound { .. } => "see the specs with `qw spec-list`",
            StateError::NothingToReset { .. } => {
                "a hard reset (`--hard`) regenerates its design and tasks"
            }
            StateError::Serialize(_) => return None,
        })
    }
}

impl crate::exit::UserError for StateError {
    fn exit_code(&self) -> i32 {
        // A wait for the lock ended by SIGINT, SIGTERM or SIGHUP: the documented 128+N.
        match self.interrupted() {
            Some(sig) => crate::exit::EXEC_SIGNAL_BASE + sig,
            None => crate::exit::usage_or_failed(self.is_usage()),
        }
    }

    fn hints(&self) -> Vec<String> {
        StateError::hints(self)
    }
}

/// Record one `qw exec` run in the project's state (`commands.total_executed` and
/// `recent_commands`).
pub fn record_exec(project: &Project, argv: &[OsString], success: bool) -> Result<(), StateError> {
    let words: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let command = shell_words::join(words);
    StateStore::new(project).update(|s| s.record_command(&command, success))
}
