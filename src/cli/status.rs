//! `qw status`: the whole project's workflow status.

use clap::Args;

use super::{CmdResult, Ctx};

/// Arguments of `qw status`.
#[derive(Debug, Args)]
pub struct StatusArgs {}

/// Run `qw status`.
pub fn run(_ctx: &Ctx, _args: StatusArgs) -> CmdResult {
    super::not_built("status")
}
