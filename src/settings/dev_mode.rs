//! `development_mode`: the ten flags, their defaults, sources and effects, and `dev-mode
//! on/off` as edits of the settings file. `debug_hooks`, the original's eleventh flag, is
//! retired ([`RETIRED_DEV_FLAGS`]): qw runs no hooks of its own.

use serde_json::{Map, Value};

use super::typed::QW_SECTION;
use super::{SettingsError, SettingsFile};

/// The `development_mode` flags, in the order qw writes them.
pub(crate) const DEV_FLAGS: [&str; 10] = [
    "enabled",
    "verbose_logging",
    "fail_fast",
    "resource_monitoring",
    "auto_backup",
    "confirmation_prompts",
    "performance_profiling",
    "enhanced_error_reporting",
    "command_validation",
    "state_monitoring",
];

/// Flags of the original that qw no longer lists: a file that holds one keeps it as it is,
/// qw ignores it without a warning, and `dev-mode` neither writes nor shows it.
/// `debug_hooks`: hooks are Claude Code's — they run inside `claude`, not in qw, so qw has
/// nothing to debug; Claude Code's own `--debug hooks` (through `--claude-arg`) shows them.
pub(crate) const RETIRED_DEV_FLAGS: [&str; 1] = ["debug_hooks"];

/// The value a flag has when the settings file does not set it.
pub(crate) fn dev_flag_default(flag: &str) -> bool {
    matches!(flag, "confirmation_prompts" | "command_validation")
}

/// Flags that are on while dev mode is on, unless the file sets them (`qw dev-mode on`
/// then sets a false one to true and `off` puts the false back). `fail_fast` and
/// `confirmation_prompts` are left alone: they change what a workflow does, not what it
/// reports.
pub(crate) const DEV_ON_FLAGS: [&str; 8] = [
    "enabled",
    "verbose_logging",
    "resource_monitoring",
    "auto_backup",
    "performance_profiling",
    "enhanced_error_reporting",
    "command_validation",
    "state_monitoring",
];

/// What each flag does when true, as `qw dev-mode status` shows it.
pub(crate) fn dev_flag_effect(flag: &str) -> &'static str {
    match flag {
        "enabled" => {
            "limits you did not set tighten: 4 tasks at once, load 0.70, memory 0.60, 1 retry"
        }
        "verbose_logging" => "debug-level lines in .claude/logs/",
        "fail_fast" => "workflows start nothing new after the first failed task (--fail-fast)",
        "resource_monitoring" => {
            "each task's state records a system_stats snapshot taken as it starts"
        }
        "auto_backup" => "the state is backed up at dev-mode on and before each workflow phase",
        "confirmation_prompts" => "workflow-reset --hard asks on a terminal (off: never asks)",
        "performance_profiling" => "qw status shows phase timings and task durations",
        "enhanced_error_reporting" => {
            "report.md gives each failed task its run folder and the tail of its stderr"
        }
        "command_validation" => "qw consume refuses a suggestion naming a spec that does not exist",
        "state_monitoring" => "qw status shows the state file's size, age, last writer, backups",
        _ => "",
    }
}

/// The admission limits dev mode sets when the user did not set them
/// (`resource_limits.max_concurrent`, `max_load`, `max_memory`), as the original did.
pub(crate) const DEV_MAX_CONCURRENT: usize = 4;
/// `resource_limits.max_load` in dev mode.
pub(crate) const DEV_MAX_LOAD: f64 = 0.70;
/// `resource_limits.max_memory` in dev mode.
pub(crate) const DEV_MAX_MEMORY: f64 = 0.60;
/// Attempts per task in dev mode (one retry), when `--attempts` is not given.
pub(crate) const DEV_ATTEMPTS: u32 = 2;

/// Key under [`QW_SECTION`] holding the flag values from before `dev-mode on`.
pub(crate) const DEV_PREVIOUS_KEY: &str = "dev_mode_previous";

/// Where a flag's effective value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagSource {
    /// Set in `.claude/settings.local.json`.
    Settings,
    /// Not set, and dev mode is on: on, as `dev-mode on` promises.
    DevMode,
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
    /// Every flag in [`DEV_FLAGS`] order.
    pub flags: Vec<DevFlag>,
}

impl Default for DevMode {
    /// Nothing set: every flag at its default.
    fn default() -> Self {
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
    /// Ask on a terminal before destructive steps (`workflow-reset --hard`).
    pub fn confirmation_prompts(&self) -> bool {
        self.get("confirmation_prompts")
    }
    /// Report failed tasks with their run folder and stderr tail.
    pub fn enhanced_error_reporting(&self) -> bool {
        self.get("enhanced_error_reporting")
    }
    /// Check a suggested qw command's arguments before `consume` runs it.
    pub fn command_validation(&self) -> bool {
        self.get("command_validation")
    }
    /// Show the state file's health in `qw status`.
    pub fn state_monitoring(&self) -> bool {
        self.get("state_monitoring")
    }
    /// Stop a workflow at the first failed task (the default of `--fail-fast`).
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
}

impl SettingsFile {
    /// Turn dev mode on: write `enabled: true`, and — for each flag of [`DEV_ON_FLAGS`]
    /// the file sets to false — set it to true, remembering the false (flags the file
    /// does not set follow dev mode by themselves, so nothing is written for them). Only
    /// those keys change; every other byte of the file stays as it was. A second `on`
    /// keeps what the first remembered.
    pub fn dev_mode_on(&mut self) -> Result<DevMode, SettingsError> {
        let current = self.typed()?;
        let mut remembered = current
            .quantumwala
            .dev_mode_previous
            .clone()
            .unwrap_or_default();
        let block = self.dev_block();
        let mut flipped = false;
        for flag in DEV_ON_FLAGS.into_iter().filter(|f| *f != "enabled") {
            if let Some(Value::Bool(false)) = block.get(flag) {
                remembered
                    .entry(flag.to_owned())
                    .or_insert(Value::Bool(false));
                self.set(&["development_mode", flag], Value::Bool(true))?;
                flipped = true;
            }
        }
        if block.get("enabled") != Some(&Value::Bool(true)) {
            self.set(&["development_mode", "enabled"], Value::Bool(true))?;
        }
        if flipped {
            self.set(&[QW_SECTION, DEV_PREVIOUS_KEY], Value::Object(remembered))?;
        }
        Ok(self.typed()?.development_mode)
    }

    /// Turn dev mode off: write `enabled: false` and put back the values `dev-mode on`
    /// remembered, for the keys still in the block (an older qw remembered every flag:
    /// those present get their value back, none is added). The remembered values are then
    /// dropped (and `quantumwala` with them if nothing else is in it). Flags the file
    /// sets and `on` did not change keep their value: they are the user's.
    pub fn dev_mode_off(&mut self) -> Result<DevMode, SettingsError> {
        let current = self.typed()?;
        let block = self.dev_block();
        if let Some(prev) = &current.quantumwala.dev_mode_previous {
            for name in DEV_FLAGS.into_iter().filter(|f| *f != "enabled") {
                if let Some(Value::Bool(b)) = prev.get(name)
                    && let Some(now) = block.get(name)
                    && now != &Value::Bool(*b)
                {
                    self.set(&["development_mode", name], Value::Bool(*b))?;
                }
            }
        }
        if block.get("enabled") != Some(&Value::Bool(false)) {
            self.set(&["development_mode", "enabled"], Value::Bool(false))?;
        }
        self.remove(&[QW_SECTION, DEV_PREVIOUS_KEY])?;
        if self
            .root()
            .get(QW_SECTION)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
        {
            self.remove(&[QW_SECTION])?;
        }
        Ok(self.typed()?.development_mode)
    }

    /// The `development_mode` object as the file holds it (empty when absent).
    fn dev_block(&self) -> Map<String, Value> {
        self.root()
            .get("development_mode")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn fixture() -> SettingsFile {
        let text = r#"{"permissions": {"allow": ["Bash(ls)"]}, "hooks": {}, "development_mode": {"fail_fast": true, "verbose_logging": false}, "env": {"A": "1"}}"#;
        SettingsFile::parse(Path::new("s.json"), text).unwrap()
    }

    #[test]
    fn dev_mode_on_then_off_writes_only_the_keys_it_owns_and_restores_bytes() {
        let before = fixture();
        let mut s = before.clone();
        let on = s.dev_mode_on().unwrap();
        assert!(on.enabled() && on.verbose_logging() && on.fail_fast() && on.auto_backup());
        // The file set verbose_logging false: flipped; every other flag follows dev mode
        // unwritten.
        let dm_keys = |s: &SettingsFile| -> Vec<String> {
            s.root()["development_mode"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(dm_keys(&s), ["fail_fast", "verbose_logging", "enabled"]);
        let auto = on.flags.iter().find(|f| f.name == "auto_backup").unwrap();
        assert_eq!(auto.source, FlagSource::DevMode);
        // A second `on` must not overwrite the remembered values with dev-mode ones.
        s.dev_mode_on().unwrap();
        let off = s.dev_mode_off().unwrap();
        assert!(!off.enabled() && !off.verbose_logging() && off.fail_fast());
        assert!(!off.auto_backup());
        assert!(s.root().get(QW_SECTION).is_none());
        let keys: Vec<_> = s.root().keys().cloned().collect();
        assert_eq!(keys, ["permissions", "hooks", "development_mode", "env"]);
        assert_eq!(dm_keys(&s), ["fail_fast", "verbose_logging", "enabled"]);
        assert_eq!(
            s.text(),
            before.text().replace(
                "\"verbose_logging\": false}",
                "\"verbose_logging\": false, \"enabled\": false}"
            )
        );
    }

    #[test]
    fn a_hand_written_block_keeps_its_keys_and_bytes() {
        let text = "{\n  \"development_mode\": {\n    \"enabled\": false,\n    \"fail_fast\": true\n  }\n}\n";
        let mut s = SettingsFile::parse(Path::new("s.json"), text).unwrap();
        s.dev_mode_on().unwrap();
        assert_eq!(s.text(), text.replace("false", "true"));
        s.dev_mode_off().unwrap();
        assert_eq!(s.text(), text);
    }

    #[test]
    fn an_older_qws_remembered_values_are_restored_for_the_keys_present() {
        // What `dev-mode on` of an older qw left: every flag written, every value remembered.
        let mut s = SettingsFile::parse(
            Path::new("s.json"),
            r#"{"development_mode": {"enabled": true, "verbose_logging": true, "fail_fast": false}, "quantumwala": {"dev_mode_previous": {"enabled": false, "verbose_logging": false, "fail_fast": false, "auto_backup": false}}}"#,
        )
        .unwrap();
        let off = s.dev_mode_off().unwrap();
        assert!(!off.enabled() && !off.verbose_logging() && !off.fail_fast());
        assert_eq!(
            s.text(),
            r#"{"development_mode": {"enabled": false, "verbose_logging": false, "fail_fast": false}}"#
        );
    }

    #[test]
    fn off_without_on_keeps_the_flags_the_file_sets() {
        let mut s = SettingsFile::parse(
            Path::new("s.json"),
            r#"{"development_mode": {"enabled": true, "verbose_logging": true, "fail_fast": true}}"#,
        )
        .unwrap();
        let off = s.dev_mode_off().unwrap();
        // Set by the user, not by `on`: theirs to keep.
        assert!(!off.enabled() && off.verbose_logging() && off.fail_fast());
        assert!(!off.auto_backup());
    }

    #[test]
    fn unknown_keys_in_qw_sections_are_ignored_and_kept() {
        let text = "{\n  \"development_mode\": {\n    \"colour\": \"blue\",\n    \"enabled\": false\n  },\n  \"quantumwala\": {\"future\": [1.50, 12345678901234567890123]},\n  \"resource_limits\": {\"max_lod\": 2}\n}\n";
        let mut s = SettingsFile::parse(Path::new("s.json"), text).unwrap();
        assert_eq!(s.typed().unwrap().unknown_keys.len(), 3);
        s.dev_mode_on().unwrap();
        for kept in [
            "\"colour\": \"blue\",\n    \"enabled\": true\n",
            "{\"future\": [1.50, 12345678901234567890123]},",
            "\"resource_limits\": {\"max_lod\": 2}",
        ] {
            assert!(s.text().contains(kept), "{kept}:\n{}", s.text());
        }
        s.dev_mode_off().unwrap();
        assert!(
            s.text()
                .contains("\"quantumwala\": {\"future\": [1.50, 12345678901234567890123]},"),
            "{}",
            s.text()
        );
    }

    #[test]
    fn other_quantumwala_keys_keep_their_bytes() {
        let text = "{\n  \"quantumwala\": {\n    \"daily_budget_usd\": 2.50\n  },\n  \"development_mode\": {\n    \"verbose_logging\": false\n  }\n}\n";
        let mut s = SettingsFile::parse(Path::new("s.json"), text).unwrap();
        s.dev_mode_on().unwrap();
        assert!(
            s.text()
                .contains("\"daily_budget_usd\": 2.50,\n    \"dev_mode_previous\": {\n"),
            "{}",
            s.text()
        );
        s.dev_mode_off().unwrap();
        assert_eq!(
            s.text(),
            text.replace("false\n  }", "false,\n    \"enabled\": false\n  }")
        );
    }
}
