//! `qw suggest` and `qw consume`: the safe hand-off of the next command.

use clap::Args;

use super::{CmdResult, Ctx};

/// Arguments of `qw suggest`.
#[derive(Debug, Args)]
pub struct SuggestArgs {
    /// The command, e.g. "/workflow-continue user-auth".
    pub command: String,
}

/// Arguments of `qw consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Consume the current suggestion once and exit (default).
    #[arg(long, conflicts_with = "watch")]
    pub once: bool,
    /// Keep watching for new suggestions until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// Print counts of consumed, failed and rejected suggestions.
    #[arg(long)]
    pub stats: bool,
}

/// Run `qw suggest`.
pub fn run_suggest(_ctx: &Ctx, _args: SuggestArgs) -> CmdResult {
    super::not_built("suggest")
}
/// Run `qw consume`.
pub fn run_consume(_ctx: &Ctx, _args: ConsumeArgs) -> CmdResult {
    super::not_built("consume")
}
