//! `.claude/settings.local.json`: the Claude Code project settings file that qw shares with
//! the user and with Claude Code itself.
//!
//! Owns: reading qw's own keys — `resource_limits`, `development_mode`, `quantumwala` —
//! once, into the typed [`QwSettings`] (a bad value is an error naming the key, the value
//! and the file), and writing those keys back. A write is a byte-level splice of the values
//! qw changes ([`SettingsFile`]): every other byte — other keys, numbers as written,
//! duplicate keys, layout, CRLF, a BOM — is kept, and the file is replaced through a
//! symlink, keeping its mode (`crate::fs::write_durable`). A file that is not valid JSON is
//! never overwritten.
//!
//! Must not: decide what a setting means for a command (that is `cli::resolve`: CLI flag >
//! setting > default), or touch keys it does not own.

mod dev_mode;
mod file;
mod splice;
mod typed;

use std::io;
use std::path::PathBuf;

pub(crate) use dev_mode::{DEV_PREVIOUS_KEY, DevMode, FlagSource, dev_flag_effect};
pub(crate) use file::SettingsFile;
pub(crate) use typed::{LimitSettings, LimitSource, QW_SECTION, QwSettings};

/// Errors reading or writing the settings file.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file exists but is not valid JSON; it is left untouched.
    #[error(
        "`{path}` is not valid JSON (line {line}, column {column}): {message}; qw will not overwrite it"
    )]
    Corrupt {
        /// The settings file.
        path: PathBuf,
        /// 1-based line of the parse error.
        line: usize,
        /// 1-based column of the parse error.
        column: usize,
        /// serde_json's description.
        message: String,
    },
    /// The top level is valid JSON but not an object.
    #[error("`{path}` must hold a JSON object at the top level; qw will not overwrite it")]
    NotAnObject {
        /// The settings file.
        path: PathBuf,
    },
    /// A key qw owns holds a value of the wrong type or range.
    #[error("invalid value in `{path}`: `{key}` = {value}: {reason}")]
    BadValue {
        /// The settings file.
        path: PathBuf,
        /// Dotted key, e.g. `resource_limits.max_load`.
        key: String,
        /// The offending value as JSON (big numbers as written).
        value: String,
        /// What is expected instead.
        reason: String,
    },
    /// qw could not edit the file in place (it was left untouched).
    #[error("cannot edit `{path}` in place: {reason}; it was left untouched")]
    Edit {
        /// The settings file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The most qw reads of a settings file.
pub(crate) const MAX_SETTINGS_BYTES: usize = 16 << 20;

impl SettingsError {
    /// True when the file's contents are at fault (exit 2), not the disk: also when it is
    /// not a regular file or is too big ([`crate::fs::is_refused`]).
    pub fn is_usage(&self) -> bool {
        match self {
            SettingsError::Io(e) => crate::fs::is_refused(e),
            _ => true,
        }
    }

    /// The next step to suggest.
    pub fn hint(&self) -> Option<String> {
        match self {
            SettingsError::Corrupt { .. } => Some("fix or remove the file".into()),
            SettingsError::BadValue { key, .. } => Some(format!(
                "fix or remove `{key}`; the README's settings table lists qw's keys and their ranges"
            )),
            _ => None,
        }
    }
}

impl crate::exit::UserError for SettingsError {
    fn exit_code(&self) -> i32 {
        crate::exit::usage_or_failed(self.is_usage())
    }

    fn hints(&self) -> Vec<String> {
        self.hint().into_iter().collect()
    }
}
