//! [`QwSettings`]: qw's own keys of the settings file, read once and typed.
//!
//! Every key is an `Option`: `None` means "not set". Ranges are checked here, so a bad value
//! is one error naming the dotted key, the value and the file, whichever command reads it.
//! What a value means for a command — CLI flag over setting over default — is decided in
//! one place, `cli::resolve`.
//!
//! Adding a key (say `quantumwala.worktree_root`):
//! 1. a field in [`QwSection`]: `pub worktree_root: Option<PathBuf>`;
//! 2. one line in `QwSection::read`: `worktree_root: s.get("worktree_root", read::path)?`
//!    with a checker from [`read`] (or a new one there); a nested object is a
//!    `s.section("name")?` read like `quantumwala.slurm` (`SlurmSettings::read`);
//! 3. resolve it against its flag in `cli::resolve` (flag > setting > default);
//! 4. a row in the README's settings table and a unit test of a bad value.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::dev_mode::{DEV_FLAGS, DEV_ON_FLAGS, DevFlag, DevMode, FlagSource, dev_flag_default};
use super::{SettingsError, SettingsFile};
use crate::exec::ExecutorKind;
use crate::jsontext;

/// Top-level section qw owns for its own options and bookkeeping.
pub(crate) const QW_SECTION: &str = "quantumwala";

/// qw's keys of `.claude/settings.local.json`, typed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct QwSettings {
    /// The file they were read from (it may not exist: then nothing is set).
    pub path: PathBuf,
    /// `resource_limits`: admission limits.
    pub resource_limits: LimitSettings,
    /// `development_mode`: the flags, each with its source.
    pub development_mode: DevMode,
    /// `quantumwala`: qw's own options.
    pub quantumwala: QwSection,
    /// Keys inside qw's sections that qw does not know (dotted): ignored, kept in the file.
    pub unknown_keys: Vec<String>,
}

/// `resource_limits` as set in the file (`None`: not set, the default applies).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitSettings {
    /// `max_load`: load per usable CPU (≥ 0).
    pub max_load: Option<f64>,
    /// `max_memory`: fraction of memory in use (0–1).
    pub max_memory: Option<f64>,
    /// `high_impact_load`: load per CPU above which high-impact requests wait (≥ 0).
    pub high_impact_load: Option<f64>,
    /// `max_concurrent`: admitted tasks at once across the user's qw processes (1–1024).
    pub max_concurrent: Option<usize>,
    /// `acquire_timeout_s`: how long to wait for admission (seconds ≥ 0).
    pub acquire_timeout: Option<Duration>,
    /// `max_cpu_pressure`: CPU PSI `some avg10`, percent (0–100).
    pub max_cpu_pressure: Option<f64>,
    /// `max_memory_pressure`: memory PSI `some avg10`, percent (0–100).
    pub max_memory_pressure: Option<f64>,
}

impl LimitSettings {
    /// The section's name.
    pub const SECTION: &'static str = "resource_limits";
    /// The keys it may hold.
    pub const KEYS: [&'static str; 7] = [
        "max_load",
        "max_memory",
        "high_impact_load",
        "max_concurrent",
        "acquire_timeout_s",
        "max_cpu_pressure",
        "max_memory_pressure",
    ];
    /// Largest `max_concurrent` (one lock file per slot).
    pub const MAX_CONCURRENT: usize = 1024;

    /// What an older `qw init` wrote into every project: qw's defaults, written as if
    /// the user had chosen them (so `dev-mode on` tightened none of them). qw no longer
    /// writes them; [`LimitSettings::is_old_init_defaults`] recognises the block.
    pub const OLD_INIT_DEFAULTS: LimitSettings = LimitSettings {
        max_load: Some(0.85),
        max_memory: Some(0.80),
        high_impact_load: Some(0.6),
        max_concurrent: Some(8),
        acquire_timeout: Some(Duration::from_secs(300)),
        max_cpu_pressure: None,
        max_memory_pressure: None,
    };

    /// These are exactly the five defaults an older `qw init` wrote, nothing more or
    /// less: most likely never chosen by the user.
    pub fn is_old_init_defaults(&self) -> bool {
        *self == Self::OLD_INIT_DEFAULTS
    }

    /// Whether `key` (one of [`KEYS`](Self::KEYS)) is set in the file.
    pub fn is_set(&self, key: &str) -> bool {
        match key {
            "max_load" => self.max_load.is_some(),
            "max_memory" => self.max_memory.is_some(),
            "high_impact_load" => self.high_impact_load.is_some(),
            "max_concurrent" => self.max_concurrent.is_some(),
            "acquire_timeout_s" => self.acquire_timeout.is_some(),
            "max_cpu_pressure" => self.max_cpu_pressure.is_some(),
            "max_memory_pressure" => self.max_memory_pressure.is_some(),
            _ => false,
        }
    }

    fn read(s: &mut Section<'_>) -> Result<LimitSettings, SettingsError> {
        Ok(LimitSettings {
            max_load: s.get("max_load", read::non_negative)?,
            max_memory: s.get("max_memory", read::fraction)?,
            high_impact_load: s.get("high_impact_load", read::non_negative)?,
            max_concurrent: s.get("max_concurrent", read::whole(1, Self::MAX_CONCURRENT))?,
            acquire_timeout: s.get("acquire_timeout_s", read::seconds)?,
            max_cpu_pressure: s.get("max_cpu_pressure", read::percent)?,
            max_memory_pressure: s.get("max_memory_pressure", read::percent)?,
        })
    }
}

/// `quantumwala`: qw's own options (`None`: not set).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QwSection {
    /// `keep_runs`: run folders kept in `.claude/runs/` (≥ 1; default 100).
    pub keep_runs: Option<usize>,
    /// `stall_timeout_s`: the default `--stall-timeout` of workflows (0 = off).
    pub stall_timeout: Option<Duration>,
    /// `daily_budget_usd`: USD all workflows of the project may spend per day (≥ 0).
    pub daily_budget_usd: Option<f64>,
    /// `dev_mode_previous`: the flag values from before `dev-mode on` (written by qw).
    pub dev_mode_previous: Option<Map<String, Value>>,
    /// `claude_permissions`: how Claude Code's permissions meet `claude -p`, a note
    /// `qw init` writes for the user (qw never acts on it).
    pub claude_permissions: Option<String>,
    /// `executor`: where jobs run, `local` or `slurm` (the default of `--executor`).
    pub executor: Option<ExecutorKind>,
    /// `slurm`: the Slurm executor's options.
    pub slurm: SlurmSettings,
    /// `worktree_root`: where task worktrees go (a directory path; relative to the
    /// project).
    pub worktree_root: Option<String>,
}

/// `quantumwala.slurm` (CONTRACT §11).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlurmSettings {
    /// `args`: sbatch options for every job, whole (`--partition=debug`); `--slurm-arg`s
    /// come after them.
    pub args: Option<Vec<String>>,
    /// `export`: environment variables passed to jobs (names, or prefixes ending in `*`).
    pub export: Option<Vec<String>>,
    /// `poll_interval_s`: time between two `squeue` calls (0.05–3600 s).
    pub poll_interval: Option<Duration>,
}

impl SlurmSettings {
    fn read(s: &mut Section<'_>) -> Result<SlurmSettings, SettingsError> {
        Ok(SlurmSettings {
            args: s.get("args", read::texts)?,
            export: s.get("export", read::env_names)?,
            poll_interval: s.get("poll_interval_s", read::seconds_between(0.05, 3600.0))?,
        })
    }
}

impl QwSection {
    fn read(s: &mut Section<'_>, unknown: &mut Vec<String>) -> Result<QwSection, SettingsError> {
        Ok(QwSection {
            keep_runs: s.get("keep_runs", read::whole(1, usize::MAX))?,
            stall_timeout: s.get("stall_timeout_s", read::seconds)?,
            daily_budget_usd: s.get("daily_budget_usd", read::non_negative)?,
            dev_mode_previous: s.get(super::DEV_PREVIOUS_KEY, read::object)?,
            claude_permissions: s.get("claude_permissions", read::text)?,
            executor: s.get("executor", read::choice(&ExecutorKind::ALL))?,
            slurm: {
                let mut slurm = s.section("slurm")?;
                let read = SlurmSettings::read(&mut slurm)?;
                slurm.finish(unknown);
                read
            },
            worktree_root: s.get("worktree_root", read::text)?,
        })
    }
}

impl QwSettings {
    /// Read and check `path`; a missing file sets nothing.
    pub fn load(path: &Path) -> Result<QwSettings, SettingsError> {
        SettingsFile::load(path)?.typed()
    }

    /// Nothing set: every default.
    pub fn defaults(path: &Path) -> QwSettings {
        QwSettings {
            path: path.to_path_buf(),
            resource_limits: LimitSettings::default(),
            development_mode: DevMode::default(),
            quantumwala: QwSection::default(),
            unknown_keys: Vec::new(),
        }
    }

    /// Type the parsed top level of `path`.
    pub(crate) fn from_root(
        path: &Path,
        root: &Map<String, Value>,
    ) -> Result<QwSettings, SettingsError> {
        let mut unknown_keys = Vec::new();

        let mut s = Section::top(path, root, LimitSettings::SECTION)?;
        let resource_limits = LimitSettings::read(&mut s)?;
        s.finish(&mut unknown_keys);

        let mut s = Section::top(path, root, "development_mode")?;
        let mut set = Vec::with_capacity(DEV_FLAGS.len());
        for name in DEV_FLAGS {
            set.push((name, s.get(name, read::boolean)?));
        }
        // A flag the file does not set follows dev mode: on while it is on, for the flags
        // `dev-mode on` governs; else qw's default.
        let enabled = set
            .iter()
            .find(|(n, _)| *n == "enabled")
            .and_then(|(_, v)| *v)
            .unwrap_or_else(|| dev_flag_default("enabled"));
        let flags = set
            .into_iter()
            .map(|(name, value)| match value {
                Some(value) => DevFlag {
                    name,
                    value,
                    source: FlagSource::Settings,
                },
                None if enabled && DEV_ON_FLAGS.contains(&name) => DevFlag {
                    name,
                    value: true,
                    source: FlagSource::DevMode,
                },
                None => DevFlag {
                    name,
                    value: dev_flag_default(name),
                    source: FlagSource::Default,
                },
            })
            .collect();
        for retired in super::dev_mode::RETIRED_DEV_FLAGS {
            s.known.push(retired);
        }
        s.finish(&mut unknown_keys);

        let mut s = Section::top(path, root, QW_SECTION)?;
        let quantumwala = QwSection::read(&mut s, &mut unknown_keys)?;
        s.finish(&mut unknown_keys);

        Ok(QwSettings {
            path: path.to_path_buf(),
            resource_limits,
            development_mode: DevMode { flags },
            quantumwala,
            unknown_keys,
        })
    }
}

/// Where an admission limit comes from (CLI > user setting > dev mode > default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// Set in `resource_limits` of the settings file.
    Settings,
    /// Not set; dev mode is on and tightens it.
    DevMode,
    /// qw's default.
    Default,
}

impl QwSettings {
    /// The limits in force before qw's defaults: what the user set in `resource_limits`,
    /// and — while dev mode is on — dev mode's tighter values for `max_concurrent`,
    /// `max_load` and `max_memory` where the user set nothing. Nothing is written: turning
    /// dev mode off brings the defaults back by itself, and the user's values are never
    /// touched.
    pub fn limits(&self) -> LimitSettings {
        let mut l = self.resource_limits.clone();
        if self.development_mode.enabled() {
            l.max_concurrent = l
                .max_concurrent
                .or(Some(super::dev_mode::DEV_MAX_CONCURRENT));
            l.max_load = l.max_load.or(Some(super::dev_mode::DEV_MAX_LOAD));
            l.max_memory = l.max_memory.or(Some(super::dev_mode::DEV_MAX_MEMORY));
        }
        l
    }

    /// Where limit `key` (one of [`LimitSettings::KEYS`]) comes from.
    pub fn limit_source(&self, key: &str) -> LimitSource {
        if self.resource_limits.is_set(key) {
            LimitSource::Settings
        } else if self.limits().is_set(key) {
            LimitSource::DevMode
        } else {
            LimitSource::Default
        }
    }

    /// Attempts per task when `--attempts` is not given: one retry in dev mode, else
    /// `None` (qw's default).
    pub fn dev_attempts(&self) -> Option<u32> {
        self.development_mode
            .enabled()
            .then_some(super::dev_mode::DEV_ATTEMPTS)
    }
}

/// One object of the settings file being read: remembers which keys were asked for, so
/// the rest can be reported as unknown.
pub(crate) struct Section<'a> {
    file: &'a Path,
    /// Dotted name, e.g. `quantumwala.slurm`.
    prefix: String,
    map: Option<&'a Map<String, Value>>,
    known: Vec<&'static str>,
}

impl<'a> Section<'a> {
    fn top(
        file: &'a Path,
        root: &'a Map<String, Value>,
        name: &str,
    ) -> Result<Section<'a>, SettingsError> {
        Section::open(file, name.to_owned(), root.get(name))
    }

    fn open(
        file: &'a Path,
        prefix: String,
        value: Option<&'a Value>,
    ) -> Result<Section<'a>, SettingsError> {
        let map = match value {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(other) => return Err(bad(file, &prefix, other, "expected a JSON object")),
        };
        Ok(Section {
            file,
            prefix,
            map,
            known: Vec::new(),
        })
    }

    /// The value of `key` through `read`; `None` when absent or `null`. A value `read`
    /// refuses is [`SettingsError::BadValue`] naming the dotted key, the value and the file.
    pub(crate) fn get<T>(
        &mut self,
        key: &'static str,
        read: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Result<Option<T>, SettingsError> {
        self.known.push(key);
        match self.map.and_then(|m| m.get(key)) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => read(v)
                .map(Some)
                .map_err(|reason| bad(self.file, &format!("{}.{key}", self.prefix), v, &reason)),
        }
    }

    /// A nested object (`quantumwala.slurm`); absent or `null` reads as empty.
    pub(crate) fn section(&mut self, key: &'static str) -> Result<Section<'a>, SettingsError> {
        self.known.push(key);
        let value = self.map.and_then(|m| m.get(key));
        Section::open(self.file, format!("{}.{key}", self.prefix), value)
    }

    /// Add the keys present but never asked for to `unknown` (dotted).
    pub(crate) fn finish(self, unknown: &mut Vec<String>) {
        let Some(map) = self.map else { return };
        for key in map.keys() {
            if !self.known.contains(&key.as_str()) {
                unknown.push(format!("{}.{key}", self.prefix));
            }
        }
    }
}

fn bad(file: &Path, key: &str, value: &Value, reason: &str) -> SettingsError {
    SettingsError::BadValue {
        path: file.to_path_buf(),
        key: key.to_owned(),
        value: jsontext::display(value),
        reason: reason.to_owned(),
    }
}

/// Readers for [`Section::get`]: each checks one kind of value and says what it expected.
pub(crate) mod read {
    use std::time::Duration;

    use serde_json::{Map, Value};

    fn finite(v: &Value) -> Option<f64> {
        v.as_f64().filter(|x| x.is_finite())
    }

    /// A number ≥ 0.
    pub(crate) fn non_negative(v: &Value) -> Result<f64, String> {
        finite(v)
            .filter(|x| *x >= 0.0)
            .ok_or_else(|| "expected a number >= 0".into())
    }

    /// A number from 0 to 1.
    pub(crate) fn fraction(v: &Value) -> Result<f64, String> {
        finite(v)
            .filter(|x| (0.0..=1.0).contains(x))
            .ok_or_else(|| "expected a fraction from 0 to 1".into())
    }

    /// A list of environment variable names, or prefixes ending in `*` (`AWS_*`): a
    /// pattern that matches every name (`*`) or a `NAME=value` is refused, so the whole
    /// login environment never reaches a job by accident.
    pub(crate) fn env_names(v: &Value) -> Result<Vec<String>, String> {
        let names = texts(v)?;
        for n in &names {
            let stem = n.strip_suffix('*').unwrap_or(n);
            let valid = stem
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "expected variable names or prefixes ending in `*` (e.g. `AWS_*`), not `{n}` (a pattern matching every variable would pass the whole login environment to jobs)"
                ));
            }
        }
        Ok(names)
    }

    /// A number from 0 to 100.
    pub(crate) fn percent(v: &Value) -> Result<f64, String> {
        finite(v)
            .filter(|x| (0.0..=100.0).contains(x))
            .ok_or_else(|| "expected a percentage from 0 to 100".into())
    }

    /// A whole number from `min` to `max`.
    pub(crate) fn whole(min: usize, max: usize) -> impl FnOnce(&Value) -> Result<usize, String> {
        move |v| {
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    if max == usize::MAX {
                        format!("expected a whole number >= {min}")
                    } else {
                        format!("expected a whole number from {min} to {max}")
                    }
                })
        }
    }

    /// Seconds ≥ 0 (decimals allowed).
    pub(crate) fn seconds(v: &Value) -> Result<Duration, String> {
        let secs = non_negative(v).map_err(|_| "expected a number of seconds >= 0".to_owned())?;
        Duration::try_from_secs_f64(secs).map_err(|_| "too large".into())
    }

    /// `true` or `false`.
    pub(crate) fn boolean(v: &Value) -> Result<bool, String> {
        v.as_bool().ok_or_else(|| "expected true or false".into())
    }

    /// A JSON object.
    pub(crate) fn object(v: &Value) -> Result<Map<String, Value>, String> {
        v.as_object()
            .cloned()
            .ok_or_else(|| "expected a JSON object".into())
    }

    /// A string.
    pub(crate) fn text(v: &Value) -> Result<String, String> {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| "expected a string".into())
    }

    /// A list of strings.
    pub(crate) fn texts(v: &Value) -> Result<Vec<String>, String> {
        v.as_array()
            .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_owned)).collect())
            .ok_or_else(|| "expected a list of strings".into())
    }

    /// Seconds from `min` to `max`.
    pub(crate) fn seconds_between(
        min: f64,
        max: f64,
    ) -> impl FnOnce(&Value) -> Result<Duration, String> {
        move |v| {
            finite(v)
                .filter(|x| (min..=max).contains(x))
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("expected seconds from {min} to {max}"))
        }
    }

    /// One of the names in `choices`, as its value.
    pub(crate) fn choice<T: Copy>(
        choices: &'static [(&'static str, T)],
    ) -> impl FnOnce(&Value) -> Result<T, String> {
        move |v| {
            v.as_str()
                .and_then(|s| choices.iter().find(|(name, _)| *name == s))
                .map(|(_, t)| *t)
                .ok_or_else(|| {
                    let names: Vec<String> =
                        choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
                    format!("expected {}", names.join(" or "))
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<QwSettings, SettingsError> {
        SettingsFile::parse(Path::new("/p/.claude/settings.local.json"), text)?.typed()
    }

    #[test]
    fn nothing_set_is_all_defaults() {
        let s = parse("{}").unwrap();
        assert_eq!(s.resource_limits, LimitSettings::default());
        assert_eq!(s.quantumwala, QwSection::default());
        assert_eq!(s.development_mode, DevMode::default());
        assert!(s.unknown_keys.is_empty());
        let s = parse(r#"{"resource_limits": null, "quantumwala": {"keep_runs": null}}"#).unwrap();
        assert_eq!(s.quantumwala.keep_runs, None);
    }

    #[test]
    fn every_key_is_read() {
        let s = parse(
            r#"{"resource_limits": {"max_load": 2, "max_memory": 0.5, "high_impact_load": 0.25,
                "max_concurrent": 3, "acquire_timeout_s": 1.5, "max_cpu_pressure": 40,
                "max_memory_pressure": 30},
               "development_mode": {"enabled": true, "fail_fast": false},
               "quantumwala": {"keep_runs": 7, "stall_timeout_s": 0, "daily_budget_usd": 2.50,
                "dev_mode_previous": {"enabled": false}}}"#,
        )
        .unwrap();
        let l = &s.resource_limits;
        assert_eq!(
            (
                l.max_load,
                l.max_memory,
                l.high_impact_load,
                l.max_concurrent
            ),
            (Some(2.0), Some(0.5), Some(0.25), Some(3))
        );
        assert_eq!(l.acquire_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(
            (l.max_cpu_pressure, l.max_memory_pressure),
            (Some(40.0), Some(30.0))
        );
        for key in LimitSettings::KEYS {
            assert!(l.is_set(key), "{key}");
        }
        assert!(!l.is_set("nope"));
        let q = &s.quantumwala;
        assert_eq!(q.keep_runs, Some(7));
        assert_eq!(q.stall_timeout, Some(Duration::ZERO));
        assert_eq!(q.daily_budget_usd, Some(2.5));
        assert!(q.dev_mode_previous.is_some());
        let dm = &s.development_mode;
        assert!(dm.enabled() && !dm.fail_fast());
        let ff = dm.flags.iter().find(|f| f.name == "fail_fast").unwrap();
        assert_eq!(ff.source, FlagSource::Settings);
        let cp = dm
            .flags
            .iter()
            .find(|f| f.name == "confirmation_prompts")
            .unwrap();
        assert_eq!((cp.value, cp.source), (true, FlagSource::Default));
    }

    #[test]
    fn bad_values_name_key_value_and_file_in_each_section() {
        for (text, key, value) in [
            (
                r#"{"resource_limits": {"max_load": -1}}"#,
                "resource_limits.max_load",
                "-1",
            ),
            (
                r#"{"resource_limits": {"max_memory": 1.5}}"#,
                "resource_limits.max_memory",
                "1.5",
            ),
            (
                r#"{"resource_limits": {"max_concurrent": 0}}"#,
                "resource_limits.max_concurrent",
                "0",
            ),
            (
                r#"{"resource_limits": {"max_concurrent": 2.5}}"#,
                "resource_limits.max_concurrent",
                "2.5",
            ),
            (
                r#"{"resource_limits": {"max_concurrent": 12345678901234567890123}}"#,
                "resource_limits.max_concurrent",
                "12345678901234567890123",
            ),
            (
                r#"{"resource_limits": {"acquire_timeout_s": "5"}}"#,
                "resource_limits.acquire_timeout_s",
                "\"5\"",
            ),
            (
                r#"{"resource_limits": {"max_load": 1e400}}"#,
                "resource_limits.max_load",
                "1e400",
            ),
            (
                r#"{"resource_limits": {"max_cpu_pressure": 101}}"#,
                "resource_limits.max_cpu_pressure",
                "101",
            ),
            (
                r#"{"resource_limits": {"max_memory_pressure": true}}"#,
                "resource_limits.max_memory_pressure",
                "true",
            ),
            (r#"{"resource_limits": [1]}"#, "resource_limits", "[1]"),
            (
                r#"{"development_mode": {"auto_backup": "yes"}}"#,
                "development_mode.auto_backup",
                "\"yes\"",
            ),
            (r#"{"development_mode": true}"#, "development_mode", "true"),
            (
                r#"{"quantumwala": {"keep_runs": 0}}"#,
                "quantumwala.keep_runs",
                "0",
            ),
            (
                r#"{"quantumwala": {"stall_timeout_s": -5}}"#,
                "quantumwala.stall_timeout_s",
                "-5",
            ),
            (
                r#"{"quantumwala": {"daily_budget_usd": "ten"}}"#,
                "quantumwala.daily_budget_usd",
                "\"ten\"",
            ),
            (
                r#"{"quantumwala": {"dev_mode_previous": 1}}"#,
                "quantumwala.dev_mode_previous",
                "1",
            ),
            (r#"{"quantumwala": "on"}"#, "quantumwala", "\"on\""),
            (
                r#"{"quantumwala": {"executor": "k8s"}}"#,
                "quantumwala.executor",
                "\"k8s\"",
            ),
            (
                r#"{"quantumwala": {"slurm": []}}"#,
                "quantumwala.slurm",
                "[]",
            ),
            (
                r#"{"quantumwala": {"slurm": {"args": "--partition=x"}}}"#,
                "quantumwala.slurm.args",
                "\"--partition=x\"",
            ),
            (
                r#"{"quantumwala": {"slurm": {"export": [1]}}}"#,
                "quantumwala.slurm.export",
                "[1]",
            ),
            (
                r#"{"quantumwala": {"slurm": {"export": ["*"]}}}"#,
                "quantumwala.slurm.export",
                "[\"*\"]",
            ),
            (
                r#"{"quantumwala": {"slurm": {"export": ["PATH=/evil"]}}}"#,
                "quantumwala.slurm.export",
                "[\"PATH=/evil\"]",
            ),
            (
                r#"{"quantumwala": {"slurm": {"poll_interval_s": 0}}}"#,
                "quantumwala.slurm.poll_interval_s",
                "0",
            ),
        ] {
            let err = parse(text).unwrap_err();
            let SettingsError::BadValue {
                key: k, value: v, ..
            } = &err
            else {
                panic!("{text}: {err:?}");
            };
            assert_eq!((k.as_str(), v.as_str()), (key, value), "{text}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("`{key}` = {value}"))
                    && msg.contains("/p/.claude/settings.local.json")
                    && msg.contains("expected"),
                "{msg}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_listed_not_refused() {
        let s = parse(
            r#"{"resource_limits": {"max_lod": 1}, "development_mode": {"colour": true},
               "quantumwala": {"future_key": [1]}, "permissions": {"allow": []}}"#,
        )
        .unwrap();
        assert_eq!(
            s.unknown_keys,
            [
                "resource_limits.max_lod",
                "development_mode.colour",
                "quantumwala.future_key"
            ]
        );
    }

    #[test]
    fn executor_and_slurm_are_read_and_nested_unknown_keys_listed() {
        let s = parse(
            r#"{"quantumwala": {"executor": "slurm", "slurm": {"args": ["--partition=debug"],
                "export": ["AWS_*"], "poll_interval_s": 0.25, "x": 1}}}"#,
        )
        .unwrap();
        let q = &s.quantumwala;
        assert_eq!(q.executor, Some(ExecutorKind::Slurm));
        assert_eq!(q.slurm.args, Some(vec!["--partition=debug".to_owned()]));
        assert_eq!(q.slurm.export, Some(vec!["AWS_*".to_owned()]));
        assert_eq!(q.slurm.poll_interval, Some(Duration::from_millis(250)));
        assert_eq!(s.unknown_keys, ["quantumwala.slurm.x"]);
        let s = parse(r#"{"quantumwala": {"executor": "local", "slurm": null}}"#).unwrap();
        assert_eq!(s.quantumwala.executor, Some(ExecutorKind::Local));
        assert_eq!(s.quantumwala.slurm, SlurmSettings::default());
    }
}
