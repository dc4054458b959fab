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

It also cancels (`scancel`) your Slurm jobs submitted from this host by a qw that is no
longer alive (their comment names it), and waits until they have ended. Slurm is asked
only when qw has submitted jobs from this project (or, outside a project, from this
user's cache) before, or with --slurm. The automatic sweep does that only for jobs of
the project whose owner left a record.

Example:
  qw sweep --project-only --grace 2")]
pub struct SweepArgs {
    /// Only orphans started in this project.
    #[arg(long)]
    pub project_only: bool,
    /// Ask Slurm for orphaned qw jobs even if qw never submitted from here.
    #[arg(long)]
    pub slurm: bool,
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(long, value_name = "SECS", value_parser = super::args::parse_secs, default_value = "5")]
    pub grace: Duration,
}

/// Run `qw sweep`.
pub(crate) fn run(ctx: &Ctx, args: SweepArgs) -> CmdResult {
    let scope = args.project_only.then(|| ctx.project.root());
    let report = exec::sweep::sweep(scope, args.grace);
    let (state_dir, _) = super::executor::dirs(&ctx.project);
    let jobs = exec::slurm::sweep::sweep_jobs(
        Some(state_dir.as_path()),
        scope,
        true,
        args.slurm,
        exec::slurm::sweep::SWEEP_WAIT,
    );
    if let Some(e) = &jobs.error {
        crate::diag!("qw: warning: could not sweep Slurm jobs: {e}");
    }
    if ctx.global.json {
        let mut value = serde_json::to_value(&report).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert(
                "slurm_jobs_cancelled".into(),
                serde_json::to_value(&jobs.cancelled).unwrap_or_default(),
            );
        }
        outln!("{value}")?;
        return Ok(0);
    }
    if report.killed.is_empty() && jobs.cancelled.is_empty() && !ctx.global.quiet {
        outln!("no orphaned processes")?;
    }
    for l in &report.killed {
        outln!("ended {} {}", l.pid, l.command)?;
    }
    if report.count > report.killed.len() {
        outln!("ended {} more", report.count - report.killed.len())?;
    }
    for j in &jobs.cancelled {
        outln!("cancelled Slurm job {} {} ({})", j.job_id, j.name, j.state)?;
    }
    Ok(0)
}
