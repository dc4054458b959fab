//! `--executor local|slurm` and `--slurm-arg`, shared by `exec`, `workflow-auto` and
//! `workflow-continue` (CONTRACT §11). They are resolved over the settings
//! `quantumwala.executor` and `quantumwala.slurm.*` (typed in `crate::settings`) by
//! `cli::resolve::executor`: flags win; `--slurm-arg`s come after the configured args, so
//! for sbatch (last occurrence wins) they refine them.

use std::path::PathBuf;

use clap::Args;

pub(crate) use crate::exec::ExecutorKind;
use crate::exec::slurm::SlurmConfig;
use crate::project::Project;

/// The executor flags.
#[derive(Debug, Clone, Default, Args)]
pub struct ExecutorArgs {
    /// Where jobs run: `local` (this machine) or `slurm` (one Slurm batch job each).
    /// Default: the setting `quantumwala.executor`, else local.
    #[arg(long, value_enum, value_name = "KIND")]
    pub executor: Option<ExecutorKind>,
    /// An sbatch option for every Slurm job, whole (repeatable), e.g.
    /// `--slurm-arg=--partition=debug`; added after `quantumwala.slurm.args`.
    #[arg(long = "slurm-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub slurm_args: Vec<String>,
}

/// The resolved choice.
#[derive(Debug, Clone)]
pub(crate) struct ExecutorChoice {
    /// The Slurm configuration when the backend is Slurm; `None`: this machine.
    pub slurm: Option<SlurmConfig>,
}

/// The owner-record and run folders: the project's `.claude/slurm` and `.claude/runs`;
/// outside a project, `quantumwala/slurm` in the user's cache directory (home folders are
/// shared on clusters).
pub(crate) fn dirs(project: &Project) -> (PathBuf, PathBuf) {
    if project.exists() {
        return SlurmConfig::for_project_dirs(&project.claude_dir());
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("quantumwala")
        .join("slurm");
    (cache.clone(), cache.join("runs"))
}
