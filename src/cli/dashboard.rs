//! `qw dashboard`: the live local web view.

use clap::Args;

use super::{CmdResult, Ctx};

/// Arguments of `qw dashboard`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Port (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address to bind (loopback by default).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Open the page in a browser.
    #[arg(long)]
    pub open: bool,
    /// Allow state-changing actions from the page (backup, soft reset).
    #[arg(long)]
    pub allow_actions: bool,
}

/// Run `qw dashboard`.
pub fn run(_ctx: &Ctx, _args: DashboardArgs) -> CmdResult {
    super::not_built("dashboard")
}
