//! `qw init`: scaffold `.claude/` without overwriting anything the user changed.

use clap::Args;

use super::{CmdResult, Ctx};

/// Arguments of `qw init`.
#[derive(Debug, Args)]
pub struct InitArgs {}

/// Run `qw init`.
pub fn run(_ctx: &Ctx, _args: InitArgs) -> CmdResult {
    super::not_built("init")
}
