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
                // serde_json appends " at line L column C"; the message already says it.
                message: e
                    .to_string()
                    .split(" at line ")
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
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

/// The eleven `development_mode` flags, in the order qw writes them.
pub const DEV_FLAGS: [&str; 11] = [
    "enabled",
    "verbose_logging",
    "fail_fast",
    "debug_hooks",
    "resource_monitoring",
    "auto_backup",
    "confirmation_prompts",
    "performance_profiling",
    "enhanced_error_reporting",
    "command_validation",
    "state_monitoring",
];

/// The value a flag has when the settings file does not set it.
pub fn dev_flag_default(flag: &str) -> bool {
    matches!(flag, "confirmation_prompts" | "command_validation")
}

/// Flags `qw dev-mode on` sets to true. `fail_fast` and `confirmation_prompts` are left
/// alone: they change what a workflow does, not what it reports.
pub const DEV_ON_FLAGS: [&str; 9] = [
    "enabled",
    "verbose_logging",
    "debug_hooks",
    "resource_monitoring",
    "auto_backup",
    "performance_profiling",
    "enhanced_error_reporting",
    "command_validation",
    "state_monitoring",
];

/// Top-level section qw owns for its own bookkeeping.
pub const QW_SECTION: &str = "quantumwala";
/// Key under [`QW_SECTION`] holding the flag values from before `dev-mode on`.
pub const DEV_PREVIOUS_KEY: &str = "dev_mode_previous";

/// Where a flag's effective value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagSource {
    /// Set in `.claude/settings.local.json`.
    Settings,
    /// Not set: qw's built-in default.
    Default,
}

/// One flag's effective value and its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DevFlag {
    /// The flag's name, e.g. `verbose_logging`.
    pub name: &'static str,
    /// Its effective value.
    pub value: bool,
    /// Where the value comes from.
    pub source: FlagSource,
}

/// The effective `development_mode` settings: every flag with its value and source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevMode {
    /// All eleven flags in [`DEV_FLAGS`] order.
    pub flags: Vec<DevFlag>,
}

impl DevMode {
    /// The effective value of `flag` (false for an unknown name).
    pub fn get(&self, flag: &str) -> bool {
        self.flags
            .iter()
            .find(|f| f.name == flag)
            .is_some_and(|f| f.value)
    }
    /// Development mode is on.
    pub fn enabled(&self) -> bool {
        self.get("enabled")
    }
    /// Debug-level file logs.
    pub fn verbose_logging(&self) -> bool {
        self.get("verbose_logging")
    }
    /// Per-phase and per-task timings in reports and `qw status`.
    pub fn performance_profiling(&self) -> bool {
        self.get("performance_profiling")
    }
    /// Record a `system_stats` snapshot with each task.
    pub fn resource_monitoring(&self) -> bool {
        self.get("resource_monitoring")
    }
    /// Take a state backup when dev mode is switched on.
    pub fn auto_backup(&self) -> bool {
        self.get("auto_backup")
    }
    /// Stop a workflow at the first failed task.
    pub fn fail_fast(&self) -> bool {
        self.get("fail_fast")
    }

    /// The effective flags as `{name: value}`, in [`DEV_FLAGS`] order.
    pub fn values(&self) -> Map<String, Value> {
        self.flags
            .iter()
            .map(|f| (f.name.to_owned(), Value::Bool(f.value)))
            .collect()
    }

    /// Read a project's dev mode cheaply; any problem (missing, corrupt) gives defaults.
    /// For callers that must not fail, such as logging initialisation.
    pub fn load_lenient(path: &Path) -> DevMode {
        Settings::load(path)
            .and_then(|s| s.dev_mode(path))
            .unwrap_or_else(|_| Settings::default().dev_mode_unchecked())
    }
}

impl Settings {
    /// The effective `development_mode` flags. A flag holding a non-boolean is an error
    /// naming it; `path` is used in error messages only.
    pub fn dev_mode(&self, path: &Path) -> Result<DevMode, SettingsError> {
        let block = match self.root.get("development_mode") {
            None => None,
            Some(Value::Object(m)) => Some(m),
            Some(other) => {
                return Err(SettingsError::BadValue {
                    path: path.to_path_buf(),
                    key: "development_mode".into(),
                    value: other.to_string(),
                    reason: "expected an object of true/false flags".into(),
                });
            }
        };
        let mut flags = Vec::with_capacity(DEV_FLAGS.len());
        for name in DEV_FLAGS {
            let flag = match block.and_then(|b| b.get(name)) {
                None | Some(Value::Null) => DevFlag {
                    name,
                    value: dev_flag_default(name),
                    source: FlagSource::Default,
                },
                Some(Value::Bool(b)) => DevFlag {
                    name,
                    value: *b,
                    source: FlagSource::Settings,
                },
                Some(other) => {
                    return Err(SettingsError::BadValue {
                        path: path.to_path_buf(),
                        key: format!("development_mode.{name}"),
                        value: other.to_string(),
                        reason: "expected true or false".into(),
                    });
                }
            };
            flags.push(flag);
        }
        Ok(DevMode { flags })
    }

    fn dev_mode_unchecked(&self) -> DevMode {
        DevMode {
            flags: DEV_FLAGS
                .iter()
                .map(|&name| DevFlag {
                    name,
                    value: dev_flag_default(name),
                    source: FlagSource::Default,
                })
                .collect(),
        }
    }

    /// The flag values saved by the last `dev-mode on`, if any.
    pub fn dev_mode_previous(&self) -> Option<&Map<String, Value>> {
        self.section(QW_SECTION)
            .and_then(|q| q.get(DEV_PREVIOUS_KEY))
            .and_then(Value::as_object)
    }

    /// Turn dev mode on: remember the current effective flags (unless dev mode is already
    /// on and they are remembered), then set [`DEV_ON_FLAGS`] to true. Every flag is
    /// written explicitly; keys already in the block keep their position.
    pub fn dev_mode_on(&mut self, path: &Path) -> Result<DevMode, SettingsError> {
        let current = self.dev_mode(path)?;
        let remember = !(current.enabled() && self.dev_mode_previous().is_some());
        let mut values = current.values();
        for flag in DEV_ON_FLAGS {
            values.insert(flag.into(), Value::Bool(true));
        }
        self.write_dev_block(&values, path)?;
        if remember {
            let section = self.section_mut(QW_SECTION, path)?;
            section.insert(DEV_PREVIOUS_KEY.into(), Value::Object(current.values()));
        }
        self.dev_mode(path)
    }

    /// Turn dev mode off: restore the values remembered by `dev-mode on` (with `enabled`
    /// false), or — when none are remembered — set `enabled` and the flags `on` turns on
    /// back to their defaults. The remembered values are then dropped.
    pub fn dev_mode_off(&mut self, path: &Path) -> Result<DevMode, SettingsError> {
        let current = self.dev_mode(path)?;
        let mut values = current.values();
        match self.dev_mode_previous().cloned() {
            Some(prev) => {
                for name in DEV_FLAGS {
                    if let Some(Value::Bool(b)) = prev.get(name) {
                        values.insert(name.into(), Value::Bool(*b));
                    }
                }
            }
            None => {
                for flag in DEV_ON_FLAGS {
                    values.insert(flag.into(), Value::Bool(dev_flag_default(flag)));
                }
            }
        }
        values.insert("enabled".into(), Value::Bool(false));
        self.write_dev_block(&values, path)?;
        if let Some(Value::Object(q)) = self.root.get_mut(QW_SECTION) {
            q.remove(DEV_PREVIOUS_KEY);
            if q.is_empty() {
                self.root.remove(QW_SECTION);
            }
        }
        self.dev_mode(path)
    }

    fn write_dev_block(
        &mut self,
        values: &Map<String, Value>,
        path: &Path,
    ) -> Result<(), SettingsError> {
        let block = self.section_mut("development_mode", path)?;
        for name in DEV_FLAGS {
            if let Some(v) = values.get(name) {
                block.insert(name.into(), v.clone());
            }
        }
        Ok(())
    }

    /// A top-level object section, created (at the end) when missing.
    fn section_mut(
        &mut self,
        key: &str,
        path: &Path,
    ) -> Result<&mut Map<String, Value>, SettingsError> {
        let entry = self
            .root
            .entry(key.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        match entry {
            Value::Object(m) => Ok(m),
            other => Err(SettingsError::BadValue {
                path: path.to_path_buf(),
                key: key.to_owned(),
                value: other.to_string(),
                reason: "expected a JSON object".into(),
            }),
        }
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

    fn fixture() -> Settings {
        let text = r#"{"permissions": {"allow": ["Bash(ls)"]}, "hooks": {}, "development_mode": {"fail_fast": true, "verbose_logging": false}, "env": {"A": "1"}}"#;
        Settings::parse(Path::new("s.json"), text).unwrap()
    }

    #[test]
    fn dev_mode_reports_sources() {
        let p = Path::new("s.json");
        let dm = fixture().dev_mode(p).unwrap();
        assert_eq!(dm.flags.len(), 11);
        let ff = dm.flags.iter().find(|f| f.name == "fail_fast").unwrap();
        assert_eq!((ff.value, ff.source), (true, FlagSource::Settings));
        let cp = dm
            .flags
            .iter()
            .find(|f| f.name == "confirmation_prompts")
            .unwrap();
        assert_eq!((cp.value, cp.source), (true, FlagSource::Default));
    }

    #[test]
    fn dev_mode_on_then_off_restores_previous_values_and_order() {
        let p = Path::new("s.json");
        let before = fixture();
        let mut s = before.clone();
        let on = s.dev_mode_on(p).unwrap();
        assert!(on.enabled() && on.verbose_logging() && on.fail_fast());
        // A second `on` must not overwrite the remembered values with dev-mode ones.
        s.dev_mode_on(p).unwrap();
        let off = s.dev_mode_off(p).unwrap();
        assert!(!off.enabled() && !off.verbose_logging() && off.fail_fast());
        assert!(!off.auto_backup());
        assert!(s.section(QW_SECTION).is_none());
        let keys: Vec<_> = s.root.keys().cloned().collect();
        assert_eq!(keys, ["permissions", "hooks", "development_mode", "env"]);
        let dm_keys: Vec<_> = s
            .section("development_mode")
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(&dm_keys[..2], ["fail_fast", "verbose_logging"]);
        assert_eq!(dm_keys.len(), 11);
        assert_eq!(s.root["permissions"], before.root["permissions"]);
    }

    #[test]
    fn off_without_on_turns_dev_flags_to_defaults() {
        let p = Path::new("s.json");
        let mut s = Settings::parse(p, r#"{"development_mode": {"enabled": true, "verbose_logging": true, "fail_fast": true}}"#).unwrap();
        let off = s.dev_mode_off(p).unwrap();
        assert!(!off.enabled() && !off.verbose_logging() && off.fail_fast());
    }

    #[test]
    fn non_boolean_flag_is_an_error_naming_it() {
        let p = Path::new("s.json");
        let s = Settings::parse(p, r#"{"development_mode": {"auto_backup": "yes"}}"#).unwrap();
        let err = s.dev_mode(p).unwrap_err().to_string();
        assert!(err.contains("development_mode.auto_backup"), "{err}");
    }
}
