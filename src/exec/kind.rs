//! [`ExecutorKind`]: the name of an [`Executor`](super::Executor) backend, as flags
//! (`--executor`), settings (`quantumwala.executor`) and saved options spell it.

use serde::{Deserialize, Serialize};

/// Where jobs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// On this machine, each job under its own `qw exec` supervisor.
    #[default]
    Local,
    /// Each job is one Slurm batch job running `qw exec` on a node.
    Slurm,
}

impl ExecutorKind {
    /// Every kind with its name.
    pub const ALL: [(&'static str, ExecutorKind); 2] = [
        ("local", ExecutorKind::Local),
        ("slurm", ExecutorKind::Slurm),
    ];

    /// `local` or `slurm`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::Local => "local",
            ExecutorKind::Slurm => "slurm",
        }
    }
}
