//! `qw worktrees [--prune]`.

use clap::Args;

use super::{CmdResult, Ctx};

/// Arguments of `qw worktrees`.
#[derive(Debug, Args)]
pub struct WorktreesArgs {
    /// Remove orphaned worktrees (keeps branches with unmerged commits).
    #[arg(long)]
    pub prune: bool,
}

/// Run `qw worktrees`.
pub fn run(_ctx: &Ctx, _args: WorktreesArgs) -> CmdResult {
    super::not_built("worktrees")
}
