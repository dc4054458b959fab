//! `qw sweep`: end process trees orphaned by a `qw` that was killed.

use std::time::Duration;

use clap::Args;

use super::out::outln;
use super::{CmdResult, Ctx};
use crate::exec;

/// Arguments of `qw sweep`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Finds every process of yours whose QW_RUN_ID cookie names a qw that is no longer alive
and ends it (SIGTERM, grace, SIGKILL). Runs automatically, scoped to the project, at the
start of `qw exec` and the workflow commands.

Example:
  qw sweep --project-only --grace 2")]
pub struct SweepArgs {
    /// Only orphans started in this project.
    #[arg(long)]
    pub project_only: bool,
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(long, value_name = "SECS", value_parser = super::exec::parse_secs, default_value = "5")]
    pub grace: Duration,
}

/// Run `qw sweep`.
pub fn run(ctx: &Ctx, args: SweepArgs) -> CmdResult {
    let scope = args.project_only.then(|| ctx.project.root());
    let report = exec::sweep::sweep(scope, args.grace);
    if ctx.global.json {
        outln!("{}", serde_json::to_string(&report).unwrap_or_default())?;
    } else if report.killed.is_empty() {
        if !ctx.global.quiet {
            outln!("no orphaned processes")?;
        }
    } else {
        for l in &report.killed {
            outln!("ended {} {}", l.pid, l.command)?;
        }
    }
    Ok(0)
}
