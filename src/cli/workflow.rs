//! `qw workflow-auto` and `qw workflow-continue`.

use clap::Args;

use super::{CmdResult, Ctx};

/// Arguments of `qw workflow-auto`.
#[derive(Debug, Args)]
pub struct WorkflowAutoArgs {
    /// Spec name (kebab-case).
    pub name: String,
    /// What the feature is.
    pub description: String,
}

/// Arguments of `qw workflow-continue`.
#[derive(Debug, Args)]
pub struct WorkflowContinueArgs {
    /// Spec name.
    pub name: String,
}

/// Run `qw workflow-auto`.
pub fn run_auto(_ctx: &Ctx, _args: WorkflowAutoArgs) -> CmdResult {
    super::not_built("workflow-auto")
}
/// Run `qw workflow-continue`.
pub fn run_continue(_ctx: &Ctx, _args: WorkflowContinueArgs) -> CmdResult {
    super::not_built("workflow-continue")
}
