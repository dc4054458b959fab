//! `qw state-backup`: create, list, restore and clean state backups.

use clap::Args;

use super::{CmdResult, Ctx};

/// Arguments of `qw state-backup`.
#[derive(Debug, Args)]
pub struct StateBackupArgs {
    /// Backup name (default `state_backup_<YYYYmmdd_HHMMSS>`).
    pub name: Option<String>,
    /// List backups (name, time, size, phase summary).
    #[arg(long, conflicts_with_all = ["restore", "clean", "name"])]
    pub list: bool,
    /// Restore a backup (the current state is backed up first).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["clean", "name"])]
    pub restore: Option<String>,
    /// Delete backups older than `--days` (never the newest).
    #[arg(long, requires = "days", conflicts_with = "name")]
    pub clean: bool,
    /// Age in days for `--clean`.
    #[arg(long, value_name = "N")]
    pub days: Option<u32>,
}

/// Run `qw state-backup`.
pub fn run(_ctx: &Ctx, _args: StateBackupArgs) -> CmdResult {
    super::not_built("state-backup")
}
