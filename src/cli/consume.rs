//! `qw suggest` and `qw consume`: arguments and printing. The consumer itself (validate,
//! run through `qw exec` with retries, delete or move aside) is [`crate::consume`].

use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::dev_mode::say;
use super::{CliError, CmdResult, Ctx};
use crate::consume::{Consumer, Options, Outcome, Stats, Watching, quote};
use crate::exec::Cancel;
use crate::exit;
use crate::validate;

pub(crate) use crate::consume::MAX_SUGGESTION_BYTES;

/// Arguments of `qw suggest`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
The command must be a known qw or slash command without shell metacharacters; it is
checked now and again when consumed. The file is replaced atomically.

Examples:
  qw suggest \"/workflow-continue user-auth\"
  qw suggest \"qw spec-status user-auth\"")]
pub struct SuggestArgs {
    /// The command, e.g. "/workflow-continue user-auth".
    pub command: String,
}

/// Arguments of `qw consume`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Runs `.claude/next_command.txt` through `qw exec`: qw's own commands as a qw child (whose
tasks are admitted one by one), other slash commands admitted (`--admit --admit-timeout 60`)
as `claude -p \"/cmd args\" --output-format json`. A suggestion is at most 4 KiB. Up to 3 attempts,
5 s apart; on success the file is deleted, after the last failure (or when the command is
refused) it moves to `.claude/next_command.failed.txt` with the reason.
Exit: 0 consumed or nothing to do (and always after --watch is stopped by Ctrl-C/SIGTERM/SIGHUP),
1 the command failed, 2 the command was refused.

Examples:
  qw consume --once
  qw consume --watch --stats")]
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
    /// Attempts before giving up.
    #[arg(long, hide = true, default_value_t = 3, env = "QW_CONSUME_ATTEMPTS",
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub attempts: u32,
    /// Seconds between attempts.
    #[arg(long, hide = true, default_value = "5", env = "QW_CONSUME_RETRY_DELAY",
          value_parser = super::args::parse_secs, value_name = "SECS")]
    pub retry_delay: Duration,
    /// Do not use file notifications; poll instead (what happens where they fail).
    #[arg(long, hide = true, env = "QW_CONSUME_POLL_ONLY")]
    pub poll_only: bool,
}

/// Run `qw suggest`.
pub(crate) fn run_suggest(ctx: &Ctx, args: SuggestArgs) -> CmdResult {
    let text = args.command.trim();
    if text.len() > MAX_SUGGESTION_BYTES {
        return Err(CliError::usage(format!(
            "refused suggestion `{}`: it is {} bytes, over the {MAX_SUGGESTION_BYTES}-byte limit of a command",
            quote(text),
            text.len()
        )));
    }
    let suggestion = validate::validate_suggestion(text).map_err(|r| {
        CliError::usage(format!("refused suggestion `{}`: {r}", quote(text)))
            .hint("suggest a qw or slash command such as \"/workflow-continue NAME\"")
    })?;
    let path = ctx.project.next_command_file();
    crate::fs::create_dir_all(ctx.project.claude_dir())
        .and_then(|()| crate::fs::write_generated(&path, format!("{text}\n").as_bytes()))
        .map_err(|e| CliError::failed(e.to_string()))?;
    tracing::info!(command = %suggestion, "suggestion written");
    if ctx.global.json {
        say!(
            "{}",
            json!({"file": path.display().to_string(), "command": text, "runs": suggestion.to_string()})
        );
    } else if !ctx.global.quiet {
        say!("wrote {}: {text}", path.display());
    }
    Ok(exit::SUCCESS)
}

/// Run `qw consume`.
pub(crate) fn run_consume(ctx: &Ctx, args: ConsumeArgs) -> CmdResult {
    let cancel = Cancel::on_signals()
        .map_err(|e| CliError::failed(format!("cannot install signal handlers: {e}")))?;
    let options = Options {
        attempts: args.attempts,
        retry_delay: args.retry_delay,
        command_validation: ctx
            .settings()
            .map_or(true, |st| st.development_mode.command_validation()),
        stdout_to_stderr: ctx.global.json,
    };
    let signals = cancel.clone();
    let consumer = Consumer::new(&ctx.project, options, cancel);
    let mut stats = Stats::default();
    if args.watch {
        let started = |how: Watching| {
            if !ctx.global.quiet {
                crate::diag!(
                    "qw: watching `{}` ({}); Ctrl-C stops",
                    ctx.project.next_command_file().display(),
                    match how {
                        Watching::Notifications => "file notifications",
                        Watching::Polling => "polling",
                    }
                );
            }
        };
        consumer.watch(args.poll_only, started, |outcome| {
            stats.count(outcome);
            report(ctx, &args, outcome);
        })?;
        print_stats(ctx, &args, stats);
        return Ok(exit::SUCCESS);
    }
    let outcome = consumer.consume_one()?;
    stats.count(&outcome);
    report(ctx, &args, &outcome);
    print_stats(ctx, &args, stats);
    let failed_file = ctx.project.next_command_failed_file();
    match outcome {
        Outcome::Nothing | Outcome::Consumed { .. } => Ok(exit::SUCCESS),
        Outcome::Failed { command, reason } => Err(CliError::failed(format!(
            "suggestion `{command}` failed: {reason}"
        ))
        .hint(format!(
            "it was moved to `{}`; fix the cause, then `qw suggest` it again",
            failed_file.display()
        ))),
        Outcome::Rejected { command, reason } => Err(CliError::usage(format!(
            "refused suggestion `{command}`: {reason}"
        ))
        .hint(format!(
            "nothing was run; it was moved to `{}`",
            failed_file.display()
        ))),
        // Ctrl-C exits 130 (128+N) like every other interrupted wait or run of qw.
        Outcome::Interrupted { command, .. } => {
            let sig = signals.pending().unwrap_or(nix::libc::SIGINT);
            Err(CliError::with_code(
                exit::EXEC_SIGNAL_BASE + sig,
                format!(
                    "interrupted by signal {sig} before `{command}` was done; the suggestion was left in place"
                ),
            ))
        }
    }
}

/// Print one outcome (a line, or a JSON object with `--json`).
fn report(ctx: &Ctx, args: &ConsumeArgs, o: &Outcome) {
    if let Outcome::Interrupted {
        waiting: Some(why), ..
    } = o
    {
        // Another consumer held the suggestion: say what the wait was for.
        crate::diag!("qw: {why}");
    }
    if ctx.global.json {
        let v = match o {
            Outcome::Nothing if args.watch => return,
            Outcome::Nothing => json!({"outcome": "nothing"}),
            Outcome::Consumed { command, attempts } => {
                json!({"outcome": "consumed", "command": command, "attempts": attempts})
            }
            Outcome::Failed { command, reason } => {
                json!({"outcome": "failed", "command": command, "reason": reason})
            }
            Outcome::Rejected { command, reason } => {
                json!({"outcome": "rejected", "command": command, "reason": reason})
            }
            Outcome::Interrupted { command, .. } => {
                json!({"outcome": "interrupted", "command": command})
            }
        };
        say!("{v}");
        return;
    }
    if ctx.global.quiet {
        return;
    }
    let failed = ctx.project.next_command_failed_file();
    match o {
        Outcome::Nothing if args.watch => {}
        Outcome::Nothing => say!(
            "no suggestion in {}",
            ctx.project.next_command_file().display()
        ),
        Outcome::Consumed { command, attempts } => {
            say!("consumed: {command} (attempt {attempts})");
        }
        Outcome::Failed { command, reason } => {
            say!("failed: {command}: {reason}; moved to {}", failed.display())
        }
        Outcome::Rejected { command, reason } => say!(
            "rejected: {command}: {reason}; moved to {}",
            failed.display()
        ),
        Outcome::Interrupted { command, .. } => say!("interrupted: {command} (left in place)"),
    }
}

fn print_stats(ctx: &Ctx, args: &ConsumeArgs, stats: Stats) {
    if !args.stats {
        return;
    }
    if ctx.global.json {
        say!("{}", json!({"stats": stats}));
    } else {
        say!(
            "consumed: {}  failed: {}  rejected: {}",
            stats.consumed,
            stats.failed,
            stats.rejected
        );
    }
}
