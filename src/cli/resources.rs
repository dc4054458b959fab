//! `qw resources`: probes, limits, slots in use and the decision per impact class.

use clap::Args;

use super::{CmdResult, Ctx};

/// Arguments of `qw resources`.
#[derive(Debug, Args)]
pub struct ResourcesArgs {}

/// Run `qw resources`.
pub fn run(_ctx: &Ctx, _args: ResourcesArgs) -> CmdResult {
    super::not_built("resources")
}
