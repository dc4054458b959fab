//! The one place where a command-line flag, a setting and a default meet: the flag wins,
//! then the setting (`.claude/settings.local.json`, read once and typed by
//! `crate::settings`), then qw's default. (uv's `crates/uv/src/settings.rs` is the model.)
//!
//! | value | flag | setting | default |
//! |---|---|---|---|
//! | admission limits | `--admit-timeout` (exec) | `resource_limits.*` | dev mode's, then the original's |
//! | tasks at once | `--parallel` | `resource_limits.max_concurrent` | 4 in dev mode, else 8 |
//! | attempts per task | `--attempts` | | 2 in dev mode, else 3 |
//! | stall timeout | `--stall-timeout` | `quantumwala.stall_timeout_s` | 600 s |
//! | fail-fast | `--fail-fast` | `development_mode.fail_fast` | off |
//! | executor | `--executor` | `quantumwala.executor` | local |
//! | sbatch options | `--slurm-arg` (after the setting's) | `quantumwala.slurm.args` | none |
//! | Slurm poll, export, pending limit | | `quantumwala.slurm.*`, `resource_limits.acquire_timeout_s` | 0.5 s, none, 300 s |
//!
//! Dev mode (`development_mode.enabled`) is a layer between the user's settings and qw's
//! defaults (`QwSettings::limits`): it tightens only what the user did not set, and
//! `dev-mode off` brings the defaults back without touching the user's values.
//!
//! `workflow-continue` puts the options the workflow was started with between the flags
//! and the settings: they were resolved when it started. So it keeps the executor the
//! workflow started with (saved as `executor` in its options) and its `--slurm-arg`s;
//! the rest of the Slurm configuration is read from the settings each run.

use std::time::Duration;

use super::executor::{self, ExecutorArgs, ExecutorChoice, ExecutorKind};
use super::workflow::RunArgs;
use super::{CliError, Ctx};
use crate::admission::{Admission, Limits};
use crate::exec::slurm::{DEFAULT_POLL, SlurmConfig};
use crate::project::Project;
use crate::settings::QwSettings;
use crate::workflow::{AgentKind, Options};

/// Admission limits: `admit_timeout` (`qw exec --admit-timeout`) > `resource_limits` >
/// defaults; slots in the user's runtime directory.
pub(crate) fn admission(settings: &QwSettings, admit_timeout: Option<Duration>) -> Admission {
    let mut admission = Admission::from_settings(settings);
    if let Some(t) = admit_timeout {
        admission.limits.acquire_timeout = t;
        admission.timeout_setting = "--admit-timeout";
    }
    admission
}

/// The executor: `--executor` > `quantumwala.executor` > local; under Slurm its options.
/// The settings are read only when the flags leave something to them, so
/// `--executor local` works whatever the settings file holds.
pub(crate) fn executor(ctx: &Ctx, args: &ExecutorArgs) -> Result<ExecutorChoice, CliError> {
    let settings = match args.executor {
        Some(ExecutorKind::Local) => None,
        _ => Some(ctx.settings()?),
    };
    Ok(executor_from(&ctx.project, args, settings))
}

/// A workflow's executor: the kind its options hold (resolved by [`workflow_options`]:
/// `--executor` > the saved options > `quantumwala.executor` > local), configured from the
/// settings as they are now, with the workflow's `--slurm-arg`s after the configured ones.
pub(crate) fn workflow_executor(ctx: &Ctx, options: &Options) -> Result<ExecutorChoice, CliError> {
    let args = ExecutorArgs {
        executor: Some(options.executor),
        slurm_args: options.slurm_args.clone(),
    };
    executor(ctx, &args)
}

fn executor_from(
    project: &Project,
    args: &ExecutorArgs,
    settings: Option<&QwSettings>,
) -> ExecutorChoice {
    let kind = executor_kind(args, settings);
    let Some(settings) = settings.filter(|_| kind == ExecutorKind::Slurm) else {
        return ExecutorChoice { slurm: None };
    };
    let configured = &settings.quantumwala.slurm;
    let mut slurm_args = configured.args.clone().unwrap_or_default();
    slurm_args.extend(args.slurm_args.iter().cloned());
    let (state_dir, runs_dir) = executor::dirs(project);
    ExecutorChoice {
        slurm: Some(SlurmConfig {
            args: slurm_args,
            export: configured.export.clone().unwrap_or_default(),
            pending_timeout: Limits::from_settings(&settings.limits()).acquire_timeout,
            poll_interval: configured.poll_interval.unwrap_or(DEFAULT_POLL),
            state_dir,
            runs_dir,
        }),
    }
}

/// `--executor` > `quantumwala.executor` > local.
fn executor_kind(args: &ExecutorArgs, settings: Option<&QwSettings>) -> ExecutorKind {
    args.executor
        .or_else(|| settings.and_then(|s| s.quantumwala.executor))
        .unwrap_or_default()
}

/// Workflow options: the flags in `args` > `saved` (the options a continued workflow was
/// started with) > `settings` > defaults.
pub(crate) fn workflow_options(
    args: &RunArgs,
    saved: Option<Options>,
    settings: &QwSettings,
) -> Result<Options, CliError> {
    let base = saved.unwrap_or_else(|| workflow_defaults(settings));
    apply(base, args)
}

/// The options a new workflow starts from: the settings, else qw's defaults.
fn workflow_defaults(settings: &QwSettings) -> Options {
    let d = Options::default();
    let limits = Limits::from_settings(&settings.limits());
    Options {
        parallel: limits.max_concurrent.max(1),
        attempts: settings.dev_attempts().unwrap_or(d.attempts),
        stall_timeout_s: match settings.quantumwala.stall_timeout {
            // 0 turns the watchdog off.
            Some(t) => (!t.is_zero()).then_some(t.as_secs_f64()),
            None => d.stall_timeout_s,
        },
        fail_fast: settings.development_mode.fail_fast(),
        executor: executor_kind(&ExecutorArgs::default(), Some(settings)),
        ..d
    }
}

/// Lay the flags given on the command line over `o`.
fn apply(mut o: Options, a: &RunArgs) -> Result<Options, CliError> {
    if let Some(cmd) = &a.agent_cmd {
        o.agent_cmd = Some(cmd.clone());
        if a.agent.is_none() {
            o.agent = AgentKind::Command;
        }
    }
    if let Some(agent) = a.agent {
        o.agent = agent;
    }
    if o.agent == AgentKind::Command && o.agent_cmd.is_none() {
        return Err(CliError::usage(
            "--agent command needs --agent-cmd 'PROGRAM ARGS… {prompt_file}'",
        ));
    }
    if !a.claude_args.is_empty() {
        o.claude_args = a.claude_args.clone();
    }
    if let Some(p) = a.parallel {
        if p == 0 {
            return Err(CliError::usage("--parallel must be at least 1"));
        }
        o.parallel = p;
    }
    if let Some(t) = a.task_timeout {
        o.task_timeout_s = t.as_secs_f64();
    }
    if let Some(g) = a.grace {
        o.grace_s = g.as_secs_f64();
    }
    if let Some(s) = a.stall_timeout {
        o.stall_timeout_s = (!s.is_zero()).then_some(s.as_secs_f64());
    }
    if let Some(n) = a.attempts {
        if n == 0 {
            return Err(CliError::usage("--attempts must be at least 1"));
        }
        o.attempts = n;
    }
    if let Some(d) = a.retry_delay {
        o.retry_delay_s = d.as_secs_f64();
    }
    for (flag, v) in [
        ("--max-cost-per-task", a.max_cost_per_task),
        ("--max-cost-per-run", a.max_cost_per_run),
    ] {
        if let Some(v) = v
            && (!v.is_finite() || v < 0.0)
        {
            return Err(CliError::usage(format!(
                "{flag} `{v}` must be a non-negative number of USD"
            )));
        }
    }
    if a.max_cost_per_task.is_some() {
        o.max_cost_per_task = a.max_cost_per_task;
    }
    if a.max_cost_per_run.is_some() {
        o.max_cost_per_run = a.max_cost_per_run;
    }
    o.fail_fast |= a.fail_fast;
    o.wait_for_reset |= a.wait_for_reset;
    o.allow_dirty |= a.allow_dirty;
    o.fresh = a.fresh;
    if let Some(i) = a.isolate {
        o.isolate = i;
    }
    if let Some(kind) = a.executor.executor {
        o.executor = kind;
    }
    if !a.executor.slurm_args.is_empty() {
        crate::exec::slurm::submit::check_user_args(&a.executor.slurm_args)
            .map_err(CliError::usage)?;
        o.slurm_args = a.executor.slurm_args.clone();
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::settings::SettingsFile;

    fn settings(text: &str) -> QwSettings {
        SettingsFile::parse(Path::new("s.json"), text)
            .unwrap()
            .typed()
            .unwrap()
    }

    const SET: &str = r#"{"resource_limits": {"max_concurrent": 3, "acquire_timeout_s": 7},
        "development_mode": {"fail_fast": true},
        "quantumwala": {"stall_timeout_s": 42}}"#;

    #[test]
    fn defaults_when_nothing_is_set() {
        let o = workflow_options(&RunArgs::default(), None, &settings("{}")).unwrap();
        let d = Options::default();
        assert_eq!(o.parallel, Limits::default().max_concurrent);
        assert_eq!(o.stall_timeout_s, d.stall_timeout_s);
        assert!(!o.fail_fast);
        assert_eq!(o.attempts, d.attempts);
        let a = admission(&settings("{}"), None);
        assert_eq!(a.limits, Limits::default());
    }

    #[test]
    fn settings_over_defaults() {
        let s = settings(SET);
        let o = workflow_options(&RunArgs::default(), None, &s).unwrap();
        assert_eq!(o.parallel, 3);
        assert_eq!(o.stall_timeout_s, Some(42.0));
        assert!(o.fail_fast);
        assert_eq!(
            admission(&s, None).limits.acquire_timeout,
            Duration::from_secs(7)
        );
        let off = settings(r#"{"quantumwala": {"stall_timeout_s": 0}}"#);
        let o = workflow_options(&RunArgs::default(), None, &off).unwrap();
        assert_eq!(o.stall_timeout_s, None);
    }

    #[test]
    fn flags_over_settings() {
        let s = settings(SET);
        let args = RunArgs {
            parallel: Some(5),
            stall_timeout: Some(Duration::from_secs(9)),
            ..RunArgs::default()
        };
        let o = workflow_options(&args, None, &s).unwrap();
        assert_eq!((o.parallel, o.stall_timeout_s), (5, Some(9.0)));
        let args = RunArgs {
            stall_timeout: Some(Duration::ZERO),
            ..RunArgs::default()
        };
        assert_eq!(
            workflow_options(&args, None, &s).unwrap().stall_timeout_s,
            None
        );
        let a = admission(&s, Some(Duration::from_millis(250)));
        assert_eq!(a.limits.acquire_timeout, Duration::from_millis(250));
        assert_eq!(a.limits.max_concurrent, 3);
        let args = RunArgs {
            fail_fast: true,
            ..RunArgs::default()
        };
        assert!(
            workflow_options(&args, None, &settings("{}"))
                .unwrap()
                .fail_fast
        );
    }

    #[test]
    fn saved_options_over_settings_and_flags_over_saved() {
        let s = settings(SET);
        let saved = Options {
            parallel: 2,
            stall_timeout_s: None,
            ..Options::default()
        };
        let o = workflow_options(&RunArgs::default(), Some(saved.clone()), &s).unwrap();
        assert_eq!(
            (o.parallel, o.stall_timeout_s, o.fail_fast),
            (2, None, false)
        );
        let args = RunArgs {
            parallel: Some(6),
            ..RunArgs::default()
        };
        assert_eq!(
            workflow_options(&args, Some(saved), &s).unwrap().parallel,
            6
        );
    }

    #[test]
    fn executor_flags_over_settings_over_local() {
        let project = Project::at(Path::new("/p"));
        let none = ExecutorArgs::default();
        let local = executor_from(&project, &none, Some(&settings("{}")));
        assert!(local.slurm.is_none(), "local: no Slurm configuration");

        let s = settings(
            r#"{"resource_limits": {"acquire_timeout_s": 12},
                "quantumwala": {"executor": "slurm", "slurm": {"args": ["--partition=debug"],
                "export": ["AWS_*"], "poll_interval_s": 2}}}"#,
        );
        let slurm = executor_from(&project, &none, Some(&s));
        let c = slurm.slurm.unwrap();
        assert_eq!(c.args, ["--partition=debug"]);
        assert_eq!(c.export, ["AWS_*"]);
        assert_eq!(c.poll_interval, Duration::from_secs(2));
        assert_eq!(c.pending_timeout, Duration::from_secs(12));

        // Flags: --executor wins, --slurm-arg comes after the configured args.
        let args = ExecutorArgs {
            executor: Some(ExecutorKind::Local),
            slurm_args: Vec::new(),
        };
        assert!(executor_from(&project, &args, Some(&s)).slurm.is_none());
        let args = ExecutorArgs {
            executor: Some(ExecutorKind::Slurm),
            slurm_args: vec!["--partition=gpu".into()],
        };
        let c = executor_from(&project, &args, Some(&settings("{}")))
            .slurm
            .unwrap();
        assert_eq!(c.args, ["--partition=gpu"]);
        assert_eq!(c.poll_interval, DEFAULT_POLL);
        assert_eq!(c.pending_timeout, Limits::default().acquire_timeout);
        let c = executor_from(&project, &args, Some(&s)).slurm.unwrap();
        assert_eq!(c.args, ["--partition=debug", "--partition=gpu"]);
        // `--executor local` needs no settings at all.
        let args = ExecutorArgs {
            executor: Some(ExecutorKind::Local),
            slurm_args: Vec::new(),
        };
        assert!(executor_from(&project, &args, None).slurm.is_none());
    }

    #[test]
    fn dev_mode_tightens_only_the_limits_the_user_did_not_set() {
        let d = Limits::default();
        let o = Options::default();
        // (settings, CLI --parallel/--attempts) → (tasks at once, load, memory, attempts, parallel)
        type Case<'a> = (&'a str, Option<usize>, Option<u32>, Want);
        type Want = (usize, f64, f64, u32, usize);
        let cases: [Case<'_>; 5] = [
            (
                "{}",
                None,
                None,
                (
                    d.max_concurrent,
                    d.max_load,
                    d.max_memory,
                    o.attempts,
                    d.max_concurrent,
                ),
            ),
            (
                r#"{"development_mode": {"enabled": true}}"#,
                None,
                None,
                (4, 0.70, 0.60, 2, 4),
            ),
            (
                r#"{"development_mode": {"enabled": true}, "resource_limits": {"max_load": 0.9, "max_concurrent": 6}}"#,
                None,
                None,
                (6, 0.9, 0.60, 2, 6),
            ),
            (
                r#"{"development_mode": {"enabled": true}}"#,
                Some(7),
                Some(5),
                (4, 0.70, 0.60, 5, 7),
            ),
            // Off again (the flags stay in the file): the defaults are back, the user's value stays.
            (
                r#"{"development_mode": {"enabled": false}, "resource_limits": {"max_memory": 0.5}}"#,
                None,
                None,
                (
                    d.max_concurrent,
                    d.max_load,
                    0.5,
                    o.attempts,
                    d.max_concurrent,
                ),
            ),
        ];
        for (text, parallel, attempts, want) in cases {
            let s = settings(text);
            let l = admission(&s, None).limits;
            let args = RunArgs {
                parallel,
                attempts,
                ..RunArgs::default()
            };
            let w = workflow_options(&args, None, &s).unwrap();
            assert_eq!(
                (
                    l.max_concurrent,
                    l.max_load,
                    l.max_memory,
                    w.attempts,
                    w.parallel
                ),
                want,
                "{text} {parallel:?} {attempts:?}"
            );
        }
        let s = settings(
            r#"{"development_mode": {"enabled": true}, "resource_limits": {"max_load": 0.9}}"#,
        );
        use crate::settings::LimitSource;
        assert_eq!(s.limit_source("max_load"), LimitSource::Settings);
        assert_eq!(s.limit_source("max_memory"), LimitSource::DevMode);
        assert_eq!(s.limit_source("acquire_timeout_s"), LimitSource::Default);
    }

    #[test]
    fn a_workflows_executor_is_flag_then_saved_then_setting_then_local() {
        let slurm_set = settings(r#"{"quantumwala": {"executor": "slurm"}}"#);
        let none = RunArgs::default();
        let fresh = |s: &QwSettings| workflow_options(&none, None, s).unwrap();
        assert_eq!(fresh(&settings("{}")).executor, ExecutorKind::Local);
        assert_eq!(fresh(&slurm_set).executor, ExecutorKind::Slurm);
        let flag = |kind, args: &[&str]| RunArgs {
            executor: ExecutorArgs {
                executor: kind,
                slurm_args: args.iter().map(|a| (*a).to_owned()).collect(),
            },
            ..RunArgs::default()
        };
        let o = workflow_options(&flag(Some(ExecutorKind::Local), &[]), None, &slurm_set).unwrap();
        assert_eq!(
            o.executor,
            ExecutorKind::Local,
            "the flag beats the setting"
        );
        // Started under slurm with a --slurm-arg: continue keeps both, whatever the
        // setting says now; new --slurm-args replace the saved ones.
        let started = workflow_options(
            &flag(Some(ExecutorKind::Slurm), &["--partition=debug"]),
            None,
            &settings("{}"),
        )
        .unwrap();
        let json = serde_json::to_value(&started).unwrap();
        let saved: Options = serde_json::from_value(json).unwrap();
        let cont = workflow_options(&none, Some(saved.clone()), &settings("{}")).unwrap();
        assert_eq!(cont.executor, ExecutorKind::Slurm);
        assert_eq!(cont.slurm_args, ["--partition=debug"]);
        let cont =
            workflow_options(&flag(None, &["--qos=low"]), Some(saved.clone()), &slurm_set).unwrap();
        assert_eq!(cont.slurm_args, ["--qos=low"]);
        let cont = workflow_options(
            &flag(Some(ExecutorKind::Local), &[]),
            Some(saved),
            &slurm_set,
        )
        .unwrap();
        assert_eq!(cont.executor, ExecutorKind::Local);
        // Options saved before the executor existed: local.
        let old: Options = serde_json::from_value(serde_json::json!({
            "agent": "offline", "parallel": 2, "task_timeout_s": 10.0, "grace_s": 1.0,
            "attempts": 1, "retry_delay_s": 0.0
        }))
        .unwrap();
        assert_eq!(
            workflow_options(&none, Some(old), &slurm_set)
                .unwrap()
                .executor,
            ExecutorKind::Local
        );
        // A --slurm-arg qw sets itself is bad input.
        let err = workflow_options(&flag(None, &["--job-name=x"]), None, &slurm_set).unwrap_err();
        assert_eq!(err.code, crate::exit::USAGE, "{}", err.message);
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        let s = settings("{}");
        for args in [
            RunArgs {
                parallel: Some(0),
                ..RunArgs::default()
            },
            RunArgs {
                attempts: Some(0),
                ..RunArgs::default()
            },
            RunArgs {
                max_cost_per_run: Some(-1.0),
                ..RunArgs::default()
            },
            RunArgs {
                agent: Some(AgentKind::Command),
                ..RunArgs::default()
            },
        ] {
            let err = workflow_options(&args, None, &s).unwrap_err();
            assert_eq!(err.code, crate::exit::USAGE, "{}", err.message);
        }
    }
}
