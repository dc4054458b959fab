//! `qw workflow-reset`: soft or hard reset of one spec's workflow.

use clap::Args;

use super::{CmdResult, Ctx};

/// Arguments of `qw workflow-reset`.
#[derive(Debug, Args)]
pub struct WorkflowResetArgs {
    /// The spec to reset.
    pub spec: String,
    /// Also remove generated design.md, tasks.md and reports (after copying the folder to backups).
    #[arg(long)]
    pub hard: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Run `qw workflow-reset`.
pub fn run(_ctx: &Ctx, _args: WorkflowResetArgs) -> CmdResult {
    super::not_built("workflow-reset")
}
