//! `--executor local|slurm` and `--slurm-arg`, shared by `exec`, `workflow-auto` and
//! `workflow-continue`, resolved against the settings `quantumwala.executor`,
//! `quantumwala.slurm.args`, `quantumwala.slurm.export` and
//! `quantumwala.slurm.poll_interval_s` (CONTRACT §11).
//!
//! Flags win over settings; `--slurm-arg`s come after the configured args, so for sbatch
//! (last occurrence wins) they refine them.
//
// NOTE(settings): these keys are read here, by string key, until the typed `QwSettings`
// lands on main; then they move there and this file only merges flags over them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::admission::policy::Limits;
use crate::exec::slurm::{DEFAULT_POLL, SlurmConfig};
use crate::project::Project;
use crate::settings::{Settings, SettingsError};

/// Where jobs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// On this machine, each job under its own `qw exec` supervisor.
    #[default]
    Local,
    /// Each job is one Slurm batch job running `qw exec` on a node.
    Slurm,
}

impl ExecutorKind {
    /// `local` or `slurm`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::Local => "local",
            ExecutorKind::Slurm => "slurm",
        }
    }
}

/// The executor flags.
#[derive(Debug, Clone, Default, Args)]
pub struct ExecutorArgs {
    /// Where jobs run: `local` (this machine) or `slurm` (one Slurm batch job each).
    /// Default: the setting `quantumwala.executor`, else local.
    #[arg(long, value_enum, value_name = "KIND")]
    pub executor: Option<ExecutorKind>,
    /// An sbatch option for every Slurm job, whole (repeatable), e.g.
    /// `--slurm-arg=--partition=debug`; added after `quantumwala.slurm.args`.
    #[arg(long = "slurm-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub slurm_args: Vec<String>,
}

/// The executor settings of a project.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutorSettings {
    /// `quantumwala.executor`.
    pub kind: Option<ExecutorKind>,
    /// `quantumwala.slurm.args`.
    pub args: Vec<String>,
    /// `quantumwala.slurm.export`.
    pub export: Vec<String>,
    /// `quantumwala.slurm.poll_interval_s`.
    pub poll_interval: Option<Duration>,
}

impl ExecutorSettings {
    /// Read the keys from `settings` (file `path`, for errors).
    pub fn from_settings(
        settings: &Settings,
        path: &std::path::Path,
    ) -> Result<ExecutorSettings, SettingsError> {
        let bad = |key: &str, value: &Value, reason: &str| SettingsError::BadValue {
            path: path.to_path_buf(),
            key: key.to_owned(),
            value: value.to_string(),
            reason: reason.to_owned(),
        };
        let mut out = ExecutorSettings::default();
        let Some(q) = settings.section("quantumwala") else {
            return Ok(out);
        };
        if let Some(v) = q.get("executor").filter(|v| !v.is_null()) {
            out.kind = Some(match v.as_str() {
                Some("local") => ExecutorKind::Local,
                Some("slurm") => ExecutorKind::Slurm,
                _ => {
                    return Err(bad(
                        "quantumwala.executor",
                        v,
                        "expected \"local\" or \"slurm\"",
                    ));
                }
            });
        }
        let Some(slurm) = q.get("slurm").filter(|v| !v.is_null()) else {
            return Ok(out);
        };
        let Some(slurm) = slurm.as_object() else {
            return Err(bad("quantumwala.slurm", slurm, "expected an object"));
        };
        let strings = |key: &str| -> Result<Vec<String>, SettingsError> {
            let dotted = format!("quantumwala.slurm.{key}");
            match slurm.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| bad(&dotted, i, "expected a list of strings"))
                    })
                    .collect(),
                Some(other) => Err(bad(&dotted, other, "expected a list of strings")),
            }
        };
        out.args = strings("args")?;
        out.export = strings("export")?;
        if let Some(v) = slurm.get("poll_interval_s").filter(|v| !v.is_null()) {
            let secs = v
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.05 && *s <= 3600.0)
                .ok_or_else(|| {
                    bad(
                        "quantumwala.slurm.poll_interval_s",
                        v,
                        "expected seconds from 0.05 to 3600",
                    )
                })?;
            out.poll_interval = Some(Duration::from_secs_f64(secs));
        }
        Ok(out)
    }
}

/// The resolved choice.
#[derive(Debug, Clone)]
pub struct ExecutorChoice {
    /// Which backend.
    pub kind: ExecutorKind,
    /// Its configuration, under `slurm`.
    pub slurm: Option<SlurmConfig>,
}

/// Resolve flags over the project's settings. Errors are settings errors (bad value:
/// exit 2) or a bad `--slurm-arg`.
pub fn resolve(project: &Project, args: &ExecutorArgs) -> Result<ExecutorChoice, SettingsError> {
    let path = project.settings_file();
    let settings = Settings::load(&path)?;
    let configured = ExecutorSettings::from_settings(&settings, &path)?;
    let kind = args.executor.or(configured.kind).unwrap_or_default();
    if kind == ExecutorKind::Local {
        return Ok(ExecutorChoice { kind, slurm: None });
    }
    let limits = Limits::from_settings(&settings, &path)?;
    let (state_dir, runs_dir) = dirs(project);
    let mut slurm_args = configured.args;
    slurm_args.extend(args.slurm_args.iter().cloned());
    Ok(ExecutorChoice {
        kind,
        slurm: Some(SlurmConfig {
            args: slurm_args,
            export: configured.export,
            pending_timeout: limits.acquire_timeout,
            poll_interval: configured.poll_interval.unwrap_or(DEFAULT_POLL),
            state_dir,
            runs_dir,
        }),
    })
}

/// The owner-record and run folders: the project's `.claude/slurm` and `.claude/runs`;
/// outside a project, `quantumwala/slurm` in the user's cache directory (home folders are
/// shared on clusters).
pub fn dirs(project: &Project) -> (PathBuf, PathBuf) {
    if project.exists() {
        return SlurmConfig::for_project_dirs(&project.claude_dir());
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("quantumwala")
        .join("slurm");
    (cache.clone(), cache.join("runs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ExecutorSettings, SettingsError> {
        let p = std::path::Path::new("/p/.claude/settings.local.json");
        ExecutorSettings::from_settings(&Settings::parse(p, json).unwrap(), p)
    }

    #[test]
    fn settings_are_read_and_bad_values_name_their_key() {
        assert_eq!(parse("{}").unwrap(), ExecutorSettings::default());
        let s = parse(
            r#"{"quantumwala": {"executor": "slurm", "slurm": {"args": ["--partition=debug"],
                "export": ["AWS_*"], "poll_interval_s": 0.25}}}"#,
        )
        .unwrap();
        assert_eq!(s.kind, Some(ExecutorKind::Slurm));
        assert_eq!(s.args, vec!["--partition=debug"]);
        assert_eq!(s.export, vec!["AWS_*"]);
        assert_eq!(s.poll_interval, Some(Duration::from_millis(250)));
        for (json, key) in [
            (
                r#"{"quantumwala": {"executor": "k8s"}}"#,
                "quantumwala.executor",
            ),
            (r#"{"quantumwala": {"slurm": []}}"#, "quantumwala.slurm"),
            (
                r#"{"quantumwala": {"slurm": {"args": "--partition=x"}}}"#,
                "quantumwala.slurm.args",
            ),
            (
                r#"{"quantumwala": {"slurm": {"args": [1]}}}"#,
                "quantumwala.slurm.args",
            ),
            (
                r#"{"quantumwala": {"slurm": {"poll_interval_s": 0}}}"#,
                "quantumwala.slurm.poll_interval_s",
            ),
        ] {
            let e = parse(json).unwrap_err().to_string();
            assert!(e.contains(key), "{json}: {e}");
            assert!(e.contains("settings.local.json"), "{e}");
        }
    }
}
