//! `qw dev-mode on|off|status`.

use clap::{Args, ValueEnum};

use super::{CmdResult, Ctx};

/// What to do with dev mode.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DevModeAction {
    /// Turn development mode on.
    On,
    /// Turn it off, restoring the previous values.
    Off,
    /// Show every flag and where its value comes from.
    Status,
}

/// Arguments of `qw dev-mode`.
#[derive(Debug, Args)]
pub struct DevModeArgs {
    /// on, off or status.
    pub action: DevModeAction,
}

/// Run `qw dev-mode`.
pub fn run(_ctx: &Ctx, _args: DevModeArgs) -> CmdResult {
    super::not_built("dev-mode")
}
