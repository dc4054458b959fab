//! `.claude/settings.local.json`: the Claude Code project settings file that qw shares with
//! the user and with Claude Code itself.
//!
//! qw reads its own keys (`development_mode`, `resource_limits`, `quantumwala`) and, when it
//! writes, changes only those: every other key keeps its value and its position
//! (serde_json `preserve_order`). A file that is not valid JSON is never overwritten.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Errors reading or writing the settings file.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file exists but is not valid JSON; it is left untouched.
    #[error(
        "`{path}` is not valid JSON (line {line}, column {column}): {message}; fix or remove it — qw will not overwrite it"
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
        /// The offending value as JSON.
        value: String,
        /// What is expected instead.
        reason: String,
    },
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The parsed settings file, keys in their original order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// The whole top-level object.
    pub root: Map<String, Value>,
}

impl Settings {
    /// Load `path`; a missing file is an empty object.
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        let text = match crate::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(e) => return Err(e.into()),
        };
        Self::parse(path, &text)
    }

    /// Parse settings text; `path` is used in error messages only.
    pub fn parse(path: &Path, text: &str) -> Result<Settings, SettingsError> {
        if text.trim().is_empty() {
            return Ok(Settings::default());
        }
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(root)) => Ok(Settings { root }),
            Ok(_) => Err(SettingsError::NotAnObject {
                path: path.to_path_buf(),
            }),
            Err(e) => Err(SettingsError::Corrupt {
                path: path.to_path_buf(),
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            }),
        }
    }

    /// A top-level section as an object, if present and an object.
    pub fn section(&self, key: &str) -> Option<&Map<String, Value>> {
        self.root.get(key).and_then(Value::as_object)
    }

    /// Write the settings back durably (pretty JSON, trailing newline).
    pub fn save(&self, path: &Path) -> Result<(), SettingsError> {
        let mut text = serde_json::to_string_pretty(&Value::Object(self.root.clone()))
            .map_err(io::Error::other)?;
        text.push('\n');
        if let Some(dir) = path.parent() {
            crate::fs::create_dir_all(dir)?;
        }
        crate::fs::write_durable(path, text.as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_settings_report_line_and_column() {
        let err = Settings::parse(Path::new("s.json"), "{\n  \"a\": 1,\n  oops\n}").unwrap_err();
        match err {
            SettingsError::Corrupt { line, .. } => assert_eq!(line, 3),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn keeps_key_order() {
        let text = r#"{"z": 1, "a": {"y": 2, "b": 3}, "m": [1]}"#;
        let s = Settings::parse(Path::new("s.json"), text).unwrap();
        let keys: Vec<_> = s.root.keys().cloned().collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }
}
