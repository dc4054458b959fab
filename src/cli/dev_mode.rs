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
use crate::project::Project;
use crate::settings::{DevMode, FlagSource};
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
`on` sets enabled, verbose_logging (debug-level logs in .claude/logs/), debug_hooks,
resource_monitoring, auto_backup (a state backup right now), performance_profiling,
enhanced_error_reporting, command_validation and state_monitoring to true, remembering the
values they had; `off` restores those values. fail_fast and confirmation_prompts are
never changed by on/off. Every other key of the settings file is kept as it was.
A settings file that is not valid JSON is never overwritten (exit 2).

Examples:
  qw dev-mode on
  qw dev-mode status --json
  qw dev-mode off")]
pub struct DevModeArgs {
    /// on, off or status.
    pub action: DevModeAction,
}

/// Run `qw dev-mode`.
pub fn run(ctx: &Ctx, args: DevModeArgs) -> CmdResult {
    let path = ctx.project.settings_file();
    tracing::debug!(settings = %path.display(), action = ?args.action, "dev-mode");
    let mut file = ctx.settings_file()?.clone();
    let was_on = ctx.settings()?.development_mode.enabled();
    let (mode, note) = match args.action {
        DevModeAction::Status => (ctx.settings()?.development_mode.clone(), None),
        DevModeAction::On => {
            let mode = file.dev_mode_on()?;
            file.save()?;
            tracing::info!(settings = %path.display(), "development mode turned on");
            let note = if mode.auto_backup() && !was_on {
                auto_backup(&ctx.project)?
            } else {
                None
            };
            (mode, note)
        }
        DevModeAction::Off => {
            let mode = file.dev_mode_off()?;
            file.save()?;
            tracing::info!(settings = %path.display(), "development mode turned off");
            (mode, None)
        }
    };
    if ctx.global.json {
        let previous = file.typed()?.quantumwala.dev_mode_previous;
        say!(
            "{}",
            to_json(&mode, previous.as_ref(), &path, note.as_deref())
        );
    } else if !ctx.global.quiet || matches!(args.action, DevModeAction::Status) {
        print_human(&mode, &path, note.as_deref());
    }
    Ok(0)
}

fn to_json(
    mode: &DevMode,
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
        "previous": previous,
        "backup": note,
    })
}

fn print_human(mode: &DevMode, path: &std::path::Path, note: Option<&str>) {
    say!(
        "development mode: {} ({})",
        if mode.enabled() { "on" } else { "off" },
        path.display()
    );
    for f in &mode.flags {
        let source = match f.source {
            FlagSource::Settings => "settings file".to_owned(),
            FlagSource::Default => "default".to_owned(),
        };
        say!("  {:<26} {:<5}  ({source})", f.name, f.value);
    }
    if let Some(note) = note {
        say!("{note}");
    }
}

/// The `auto_backup` of `dev-mode on`: back up the state as `qw state-backup` would
/// (under the state lock, a corrupt state repaired first). Returns a line for the user,
/// or None when there is no state yet.
fn auto_backup(project: &Project) -> Result<Option<String>, CliError> {
    let target = match StateStore::new(project).backup(None) {
        Ok(p) => p,
        Err(StateError::NoState { .. }) => return Ok(None),
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
