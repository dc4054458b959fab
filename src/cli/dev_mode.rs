//! `qw dev-mode on|off|status`: the `development_mode` block of `.claude/settings.local.json`.

use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use super::{CliError, CmdResult, Ctx};

/// `println!` that ignores a closed stdout (`qw dev-mode status | head -1`) instead of
/// panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
use crate::admission::Limits;
use crate::project::Project;
use crate::settings::{DevMode, FlagSource, LimitSource, QwSettings, dev_flag_effect};
use crate::state::{StateError, StateStore};
pub(crate) use say;

/// What to do with dev mode.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DevModeAction {
    /// Turn development mode on.
    On,
    /// Turn it off, restoring the previous values.
    Off,
    /// Show every flag and where its value comes from.
    Status,
}

/// Arguments of `qw dev-mode`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
`on` writes `enabled: true` into development_mode. While dev mode is on, verbose_logging
(debug-level logs in .claude/logs/), resource_monitoring, auto_backup (a state backup right
now), performance_profiling, enhanced_error_reporting, command_validation and
state_monitoring are on unless the file sets them: nothing is written for those, and a
flag the file sets to false is set to true and remembered (under
quantumwala.dev_mode_previous). `off` writes `enabled: false` and puts back what `on`
remembered. fail_fast and confirmation_prompts are never changed by on/off. Every other
key of the settings file keeps its bytes.
While dev mode is on, the limits you did not set in resource_limits tighten (4 tasks at
once, load 0.70, memory 0.60) and tasks get one retry unless --attempts says otherwise;
nothing is written for that, so `off` brings the defaults back and your values stay. A
resource_limits block holding exactly the defaults an older `qw init` wrote counts as
yours: dev mode then tightens none of it and says so (`qw init` removes such a block).
`status` shows each flag's effect (`+` in force, `-` not), where its value comes from
(settings file, dev mode, default) and the limits with their source.
The original's debug_hooks is retired (hooks run inside Claude Code, not qw): a file that
holds it keeps it, unread.
A settings file that is not valid JSON is never overwritten (exit 2).
`on` takes its automatic backup before it writes the settings: a signal while it waits for
the state lock ends it with 128+N and the settings unchanged.

Examples:
  qw dev-mode on
  qw dev-mode status --json
  qw dev-mode off")]
pub struct DevModeArgs {
    /// on, off or status.
    pub action: DevModeAction,
}

/// Run `qw dev-mode`.
pub(crate) fn run(ctx: &Ctx, args: DevModeArgs) -> CmdResult {
    let path = ctx.project.settings_file();
    tracing::debug!(settings = %path.display(), action = ?args.action, "dev-mode");
    let mut file = ctx.settings_file()?.clone();
    let was_on = ctx.settings()?.development_mode.enabled();
    let (mode, note) = match args.action {
        DevModeAction::Status => (ctx.settings()?.development_mode.clone(), None),
        DevModeAction::On => {
            let mode = file.dev_mode_on()?;
            // The backup first (it may wait for the state lock; a signal then ends the
            // command with 128+N and the settings unchanged), the settings after it.
            let note = if mode.auto_backup() && !was_on {
                crate::cancel::Cancel::on_signals()
                    .map_err(|e| CliError::failed(format!("cannot handle signals: {e}")))?;
                auto_backup(&ctx.project)
            } else {
                Ok(None)
            };
            if let Err(e) = &note
                && e.code > crate::exit::EXEC_SIGNAL_BASE
            {
                let err = CliError::with_code(
                    e.code,
                    format!(
                        "{}; development mode was not turned on, nothing was changed",
                        e.message
                    ),
                );
                return Err(e.hints.iter().cloned().fold(err, CliError::hint));
            }
            file.save()?;
            tracing::info!(settings = %path.display(), "development mode turned on");
            (mode, note?)
        }
        DevModeAction::Off => {
            let mode = file.dev_mode_off()?;
            file.save()?;
            tracing::info!(settings = %path.display(), "development mode turned off");
            (mode, None)
        }
    };
    let limits = dev_limits(ctx.settings()?, &mode);
    if mode.enabled() && ctx.settings()?.resource_limits.is_old_init_defaults() {
        crate::diag!("{OLD_INIT_LIMITS_WARNING}");
    }
    if ctx.global.json {
        let previous = file.typed()?.quantumwala.dev_mode_previous;
        say!(
            "{}",
            to_json(&mode, &limits, previous.as_ref(), &path, note.as_deref())
        );
    } else if !ctx.global.quiet || matches!(args.action, DevModeAction::Status) {
        print_human(&mode, &limits, &path, note.as_deref());
    }
    Ok(0)
}

fn to_json(
    mode: &DevMode,
    limits: &[DevLimit],
    previous: Option<&serde_json::Map<String, Value>>,
    path: &std::path::Path,
    note: Option<&str>,
) -> Value {
    let flags: serde_json::Map<String, Value> = mode
        .flags
        .iter()
        .map(|f| {
            (
                f.name.to_owned(),
                json!({"value": f.value, "source": f.source}),
            )
        })
        .collect();
    json!({
        "enabled": mode.enabled(),
        "settings_file": path.display().to_string(),
        "flags": flags,
        "limits": limits.iter().map(|l| (l.key.to_owned(), json!({"value": l.value, "source": l.source}))).collect::<serde_json::Map<_, _>>(),
        "previous": previous,
        "backup": note,
    })
}

/// Said while dev mode is on over a `resource_limits` block an older `qw init` wrote.
pub(crate) const OLD_INIT_LIMITS_WARNING: &str = "qw: warning: resource_limits in .claude/settings.local.json holds exactly the defaults an older `qw init` wrote; they count as your limits, so dev mode tightens none of them\n  hint: run `qw init` to remove that block (or delete it yourself); keep it if you chose those values";

/// One limit dev mode governs, with its effective value and where it comes from.
pub(crate) struct DevLimit {
    key: &'static str,
    value: String,
    source: LimitSource,
}

/// The limits dev mode tightens (and the attempts per task), as they resolve with `mode`
/// in force over the user's `resource_limits`.
fn dev_limits(settings: &QwSettings, mode: &DevMode) -> Vec<DevLimit> {
    let settings = QwSettings {
        development_mode: mode.clone(),
        ..settings.clone()
    };
    let limits = Limits::from_settings(&settings.limits());
    let attempts = settings.dev_attempts();
    vec![
        DevLimit {
            key: "max_concurrent",
            value: limits.max_concurrent.to_string(),
            source: settings.limit_source("max_concurrent"),
        },
        DevLimit {
            key: "max_load",
            value: format!("{:.2}", limits.max_load),
            source: settings.limit_source("max_load"),
        },
        DevLimit {
            key: "max_memory",
            value: format!("{:.2}", limits.max_memory),
            source: settings.limit_source("max_memory"),
        },
        DevLimit {
            key: "attempts",
            value: attempts
                .unwrap_or(crate::workflow::Options::default().attempts)
                .to_string(),
            source: if attempts.is_some() {
                LimitSource::DevMode
            } else {
                LimitSource::Default
            },
        },
    ]
}

fn print_human(mode: &DevMode, limits: &[DevLimit], path: &std::path::Path, note: Option<&str>) {
    say!(
        "development mode: {} ({})",
        if mode.enabled() { "on" } else { "off" },
        path.display()
    );
    for f in &mode.flags {
        let source = match f.source {
            FlagSource::Settings => "(settings file)",
            FlagSource::DevMode => "(dev mode)",
            FlagSource::Default => "(default)",
        };
        // What the flag does when true; `-` marks an effect not in force.
        let mark = if f.value { "+" } else { "-" };
        say!(
            "  {:<26} {:<5}  {source:<15} {mark} {}",
            f.name,
            f.value,
            dev_flag_effect(f.name)
        );
    }
    let shown: Vec<String> = limits
        .iter()
        .map(|l| {
            let from = match l.source {
                LimitSource::Settings => "settings file",
                LimitSource::DevMode => "dev mode",
                LimitSource::Default => "default",
            };
            format!("{} {} ({from})", l.key, l.value)
        })
        .collect();
    say!("  limits: {}", shown.join(", "));
    if let Some(note) = note {
        say!("{note}");
    }
}

/// The `auto_backup` of `dev-mode on`: back up the state as `qw state-backup` would
/// (under the state lock, a corrupt state repaired first). Returns a line for the user,
/// or None when there is no state yet.
fn auto_backup(project: &Project) -> Result<Option<String>, CliError> {
    // Nothing to lose yet (`qw state-backup` would write the initial state first).
    if !project.state_file().exists() {
        return Ok(None);
    }
    let target = match StateStore::new(project).backup(None) {
        Ok(p) => p,
        Err(StateError::NoState { .. }) => return Ok(None),
        Err(e) if e.interrupted().is_some() => return Err(CliError::from(e)),
        Err(e) => {
            return Err(CliError::from(e)
                .hint("dev mode is on; run `qw state-backup` once the problem is fixed"));
        }
    };
    Ok(Some(format!(
        "auto_backup: state backed up to {}",
        target.display()
    )))
}
