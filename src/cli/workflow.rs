//! `qw workflow-auto` and `qw workflow-continue`.

use std::time::Duration;

use clap::Args;

use super::{CliError, CmdResult, Ctx};
use crate::exec::{Cancel, Executor, LocalExecutor, SlurmExecutor};
use crate::exit;
use crate::state::StateStore;
use crate::workflow::progress::finished_line;
use crate::workflow::{AgentKind, Ending, Isolation, Options, Workflow};

/// Options shared by `workflow-auto` and `workflow-continue` (on `continue` each one
/// overrides what the workflow was started with).
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Agent: claude (`claude -p … --output-format json`), command (`--agent-cmd`), or offline (built in).
    #[arg(long, value_enum)]
    pub agent: Option<AgentKind>,
    /// Argv template for the command agent; placeholders {prompt} {prompt_file} {task_id} {spec} {phase}.
    #[arg(long, value_name = "TEMPLATE")]
    pub agent_cmd: Option<String>,
    /// Extra argument passed to `claude` (repeatable), e.g. --claude-arg=--permission-mode --claude-arg=acceptEdits.
    #[arg(long = "claude-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub claude_args: Vec<String>,
    /// Tasks at once (default: `resource_limits.max_concurrent`, 8).
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Seconds one agent run or verify command may take (default 1800; 0 = no limit).
    #[arg(long, value_name = "SECS", value_parser = super::args::parse_secs)]
    pub task_timeout: Option<Duration>,
    /// Seconds between SIGTERM and SIGKILL (default 5).
    #[arg(long, value_name = "SECS", value_parser = super::args::parse_secs)]
    pub grace: Option<Duration>,
    /// End a run that writes nothing and uses no CPU for this long (default 600; 0 = off).
    #[arg(long, value_name = "SECS", value_parser = super::args::parse_secs)]
    pub stall_timeout: Option<Duration>,
    /// Attempts per task (default 3).
    #[arg(long, value_name = "N")]
    pub attempts: Option<u32>,
    /// Seconds between attempts (default 5).
    #[arg(long, value_name = "SECS", value_parser = super::args::parse_secs)]
    pub retry_delay: Option<Duration>,
    /// Stop starting new tasks at the first final failure.
    #[arg(long)]
    pub fail_fast: bool,
    /// Show what would run; start and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// USD ceiling per task (all attempts).
    #[arg(long, value_name = "USD")]
    pub max_cost_per_task: Option<f64>,
    /// USD ceiling for this workflow run.
    #[arg(long, value_name = "USD")]
    pub max_cost_per_run: Option<f64>,
    /// On a usage limit, wait for the reset and go on instead of pausing (exit 3).
    #[arg(long)]
    pub wait_for_reset: bool,
    /// Isolation of parallel tasks: auto, worktree or none.
    #[arg(long, value_enum)]
    pub isolate: Option<Isolation>,
    /// Allow a dirty git working tree (it is snapshotted first).
    #[arg(long)]
    pub allow_dirty: bool,
    /// Start each agent run as a new conversation instead of continuing the Claude
    /// session of the task's stopped run (`--resume`).
    #[arg(long)]
    pub fresh: bool,
    /// Where jobs run (on `continue`: default the executor the workflow started with).
    #[command(flatten)]
    pub executor: super::executor::ExecutorArgs,
}

/// Arguments of `qw workflow-auto`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Runs every phase: steering check, spec creation, requirements, design, tasks,
implementation (tasks.md as a dependency graph, each task admitted, supervised, verified
and retried), validation, and writes .claude/specs/NAME/report.md.

Exit: 0 every task completed; 1 some work failed; 2 bad input; 3 paused (usage limit or
cost ceiling) or incomplete (nothing failed, tasks not admitted on a busy machine) —
`qw workflow-continue NAME` resumes; 128+N interrupted by signal N.

Permissions: the claude agent runs `claude -p`, headless, so Claude Code refuses what is
not allowed up front (qw reports permission_denied with the tool, target and way out).
Spec documents need no permission (the agent answers with them and qw writes them);
tasks do: --claude-arg=--permission-mode --claude-arg=acceptEdits lets the agent edit
files, commands need allow rules such as \"Bash(cargo test:*)\" in permissions.allow of
.claude/settings.local.json; bypassPermissions allows everything but Claude Code refuses
it as root.

Examples:
  qw workflow-auto user-auth \"Email and password login\" --agent offline --parallel 4
  qw workflow-auto user-auth \"Email and password login\" \\
     --claude-arg=--permission-mode --claude-arg=acceptEdits")]
pub struct WorkflowAutoArgs {
    /// Spec name (kebab-case).
    pub name: String,
    /// What the feature is.
    pub description: String,
    /// How to run.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Arguments of `qw workflow-continue`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Resumes with the options the workflow was started with (agent, executor and
--slurm-args included); flags given here override them. Processes orphaned by a killed
qw are ended, interrupted tasks run again, completed tasks never do. Under Slurm, jobs a
killed qw left running for this spec are waited for, not run again. Without NAME it
resumes the only unfinished workflow; when there are several (or none) it lists them and
exits 2.

Examples:
  qw workflow-continue
  qw workflow-continue user-auth --max-cost-per-run 5")]
pub struct WorkflowContinueArgs {
    /// Spec name (default: the only unfinished workflow).
    pub name: Option<String>,
    /// Overrides.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Run `qw workflow-auto`.
pub(crate) fn run_auto(ctx: &Ctx, args: WorkflowAutoArgs) -> CmdResult {
    crate::names::validate(crate::names::NameKind::Spec, &args.name)?;
    if args.description.trim().is_empty() {
        return Err(CliError::usage(
            "the description is empty; say what the feature is",
        ));
    }
    let options = super::resolve::workflow_options(&args.run, None, ctx.settings()?)?;
    drive(
        ctx,
        &args.name,
        &args.description,
        options,
        args.run.dry_run,
    )
}

/// Run `qw workflow-continue`.
pub(crate) fn run_continue(ctx: &Ctx, args: WorkflowContinueArgs) -> CmdResult {
    if let Some(name) = &args.name {
        crate::names::validate(crate::names::NameKind::Spec, name)?;
    }
    let state = StateStore::new(&ctx.project).load()?;
    let name = match args.name.clone() {
        Some(n) => n,
        None => only_unfinished(ctx, &state)?,
    };
    let args = WorkflowContinueArgs {
        name: Some(name.clone()),
        ..args
    };
    let Some(spec) = state.specifications.get(&name) else {
        return Err(CliError::usage(format!(
            "spec `{name}` has no workflow in `{}`",
            ctx.project.state_file().display()
        ))
        .hint(format!(
            "start one with `qw workflow-auto {name} \"DESCRIPTION\"`"
        )));
    };
    let args_name = name;
    let saved = match &spec.workflow_options {
        Some(saved) => Some(Options::from_saved(saved).map_err(|e| {
            CliError::usage(format!(
                "the saved options of spec `{args_name}` in the state cannot be read ({e}); give them as flags"
            ))
        })?),
        None => None,
    };
    let description = spec.description.clone();
    let options = super::resolve::workflow_options(&args.run, saved, ctx.settings()?)?;
    drive(ctx, &args_name, &description, options, args.run.dry_run)
}

/// The spec `workflow-continue` without a name resumes: the only one whose workflow is
/// not complete. None or several: a usage error listing them (name and phase).
fn only_unfinished(ctx: &Ctx, state: &crate::state::UnifiedState) -> Result<String, CliError> {
    let unfinished: Vec<(String, String)> = state
        .specifications
        .iter()
        .filter(|(_, s)| s.current_phase != crate::state::Phase::Complete)
        .map(|(n, s)| (n.clone(), s.current_phase.to_string()))
        .collect();
    match unfinished.as_slice() {
        [(one, _)] => {
            crate::diag!("qw: continuing `{one}`, the only unfinished workflow");
            Ok(one.clone())
        }
        [] => Err(CliError::usage(format!(
            "no unfinished workflow in `{}` to continue",
            ctx.project.state_file().display()
        ))
        .hint("start one with `qw workflow-auto NAME \"DESCRIPTION\"`")),
        several => {
            let list: Vec<String> = several
                .iter()
                .map(|(n, phase)| format!("{n} ({phase})"))
                .collect();
            Err(CliError::usage(format!(
                "{} unfinished workflows: {}; say which one to continue",
                several.len(),
                list.join(", ")
            ))
            .hint(format!("qw workflow-continue {}", several[0].0)))
        }
    }
}

fn drive(ctx: &Ctx, name: &str, description: &str, options: Options, dry_run: bool) -> CmdResult {
    let qw = std::env::current_exe()
        .map_err(|e| CliError::failed(format!("cannot find the qw executable: {e}")))?;
    let cancel = Cancel::on_signals()
        .map_err(|e| CliError::failed(format!("cannot install signal handlers: {e}")))?;
    let executor: Box<dyn Executor> = match super::resolve::workflow_executor(ctx, &options)?.slurm
    {
        None => Box::new(LocalExecutor::new(&qw).map_err(|e| CliError::failed(e.to_string()))?),
        Some(config) => {
            Box::new(SlurmExecutor::new(&qw, config).map_err(|e| CliError::usage(e.to_string()))?)
        }
    };
    loop {
        let workflow = Workflow {
            project: ctx.project.clone(),
            settings: ctx.settings()?.clone(),
            name: name.to_owned(),
            description: description.to_owned(),
            options: options.clone(),
            qw: qw.clone(),
            dry_run,
            json: ctx.global.json,
            quiet: ctx.global.quiet,
        };
        let summary = workflow.run_with(&cancel, executor.as_ref())?;
        if !ctx.global.json && !dry_run {
            super::out::line(finished_line(&summary))?;
        }
        return Ok(match summary.ending {
            // Its report could not be written (said above, with the way on): the work
            // is done, one of its outputs is not.
            Ending::Completed if !dry_run && summary.report.is_none() => exit::FAILED,
            Ending::Completed => exit::SUCCESS,
            Ending::Failed => exit::FAILED,
            Ending::Interrupted(sig) => exit::EXEC_SIGNAL_BASE + sig,
            // Resumable, nothing failed: the pause code.
            Ending::NotAdmitted(n) => {
                crate::diag!(
                    "qw: incomplete: {n} task(s) not admitted (the machine stayed busy); nothing failed; run them with `qw workflow-continue {name}`"
                );
                exit::PAUSED
            }
            Ending::Paused(reason) => {
                let until = reason.resets_at();
                if options.wait_for_reset
                    && let Some(wait) = until
                        .and_then(crate::state::ResetAt::as_datetime)
                        .map(until_from_now)
                {
                    crate::diag!(
                        "qw: paused ({reason}); waiting {:.0}s for the reset (--wait-for-reset)",
                        wait.as_secs_f64()
                    );
                    if cancel.sleep(wait) {
                        continue;
                    }
                    return Ok(exit::PAUSED);
                }
                crate::diag!(
                    "qw: paused: {reason}; resume with `qw workflow-continue {name}`{}",
                    if until.is_some() {
                        ""
                    } else {
                        " after raising the limit"
                    }
                );
                exit::PAUSED
            }
        });
    }
}

fn until_from_now(t: chrono::DateTime<chrono::FixedOffset>) -> Duration {
    let secs = (t.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds();
    Duration::from_millis(u64::try_from(secs.max(0)).unwrap_or(0))
}
