//! `qw offline-agent` (hidden): the built-in agent, run as a child process like any other.

use clap::Args;

use super::{CmdResult, Ctx};

/// Arguments of the offline agent.
#[derive(Debug, Args)]
pub struct OfflineAgentArgs {}

/// Run the offline agent.
pub fn run(_ctx: &Ctx, _args: OfflineAgentArgs) -> CmdResult {
    super::not_built("offline-agent")
}
