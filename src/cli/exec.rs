//! `qw exec`: run a program as a supervised process tree (CONTRACT §2).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{CliError, CmdResult, Ctx};
use crate::exec::{self, Cancel, ExecReport, ExecSpec, Output, Program};
use crate::exit;

/// Arguments of `qw exec`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Exit status: the program's own code; 124 if it timed out (or stalled); 125 if qw failed
or was misused (also when --admit gave up waiting: the program was not started); 126 if the program could not be executed; 127 if it was not found;
128+N if it died of signal N.

Under --executor slurm the program runs as one Slurm batch job (`qw/exec/<program>`) whose
only process is `qw exec` on a node, so the same promise holds there; its output is copied
here as it is written. The project must be on a filesystem the nodes share. A job still
pending after `resource_limits.acquire_timeout_s` is cancelled (exit 125, naming the
partition and Slurm's reason); --admit does not apply (Slurm schedules).

Example:
  qw exec --timeout 600 --grace 5 -- claude -p \"fix the build\" --output-format json
  qw exec --executor slurm --slurm-arg=--partition=debug --timeout 60 -- make test")]
pub struct ExecArgs {
    /// Time limit in seconds (decimals allowed). Without it, or 0, no limit.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "5")]
    pub grace: Duration,
    /// End the run if it writes nothing and uses no CPU for this many seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub stall_timeout: Option<Duration>,
    /// Working directory for the program.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Wait for resource admission before starting (impact: low, normal or high).
    #[arg(long, value_name = "IMPACT", num_args = 0..=1, default_missing_value = "normal",
          require_equals = true)]
    pub admit: Option<String>,
    /// Give up waiting for admission after SECS (default: `resource_limits.acquire_timeout_s`).
    #[arg(long, value_name = "SECS", value_parser = parse_secs, requires = "admit")]
    pub admit_timeout: Option<Duration>,
    /// Do not record this run in the project's state.
    #[arg(long)]
    pub no_record: bool,
    /// Do not sweep orphaned runs of this project first.
    #[arg(long, hide = true)]
    pub no_sweep: bool,
    /// Write the JSON report to this file (used by qw's own executor).
    #[arg(long, hide = true, value_name = "FILE")]
    pub report_file: Option<PathBuf>,
    /// Append the program's stdout to this file instead of inheriting it.
    #[arg(long, hide = true, value_name = "FILE")]
    pub stdout_file: Option<PathBuf>,
    /// Append the program's stderr to this file instead of inheriting it.
    #[arg(long, hide = true, value_name = "FILE")]
    pub stderr_file: Option<PathBuf>,
    /// Use this run id as the cookie.
    #[arg(long, hide = true, value_name = "ID")]
    pub run_id: Option<String>,
    /// Extra environment variable for the program (NAME=VALUE).
    #[arg(long, hide = true, value_name = "NAME=VALUE")]
    pub env: Vec<OsString>,
    /// More variables for the program from FILE (NAME=VALUE entries separated by NUL);
    /// the file is deleted once read (it may hold API keys). Used inside Slurm jobs.
    #[arg(long, hide = true, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Where the program runs.
    #[command(flatten)]
    pub executor: super::executor::ExecutorArgs,
    /// The program and its arguments (never run through a shell).
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    pub argv: Vec<OsString>,
}

/// Parse a non-negative, finite duration: seconds with decimals (`1`, `0.5`), or with a
/// GNU `timeout` suffix `s`, `m`, `h` or `d` (`90s`, `1.5m`, `2h`).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (number, scale) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1.0),
        Some((i, 'm')) => (&t[..i], 60.0),
        Some((i, 'h')) => (&t[..i], 3600.0),
        Some((i, 'd')) => (&t[..i], 86400.0),
        _ => (t, 1.0),
    };
    let v: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds (e.g. 30, 2.5, 90s, 5m, 1h)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{s}` must be a non-negative number of seconds"));
    }
    Duration::try_from_secs_f64(v * scale).map_err(|_| format!("`{s}` is too large"))
}

/// Run `qw exec`.
pub fn run(ctx: &Ctx, args: ExecArgs) -> CmdResult {
    let program = Program::argv(args.argv.iter().cloned()).ok_or_else(|| {
        CliError::usage("no program given; usage: qw exec [OPTIONS] -- PROGRAM [ARGS...]")
    })?;
    if let Some(dir) = &args.cwd
        && !dir.is_dir()
    {
        return Err(CliError::usage(format!(
            "--cwd `{}` is not a directory",
            dir.display()
        )));
    }
    let mut env = Vec::new();
    for pair in &args.env {
        let text = pair.to_string_lossy();
        let Some((k, v)) = text.split_once('=') else {
            return Err(CliError::usage(format!("--env `{text}` is not NAME=VALUE")));
        };
        env.push((OsString::from(k), OsString::from(v)));
    }
    let in_project = ctx.project.exists();
    // Unreadable or bad settings: qw failed, not the program (exit 125).
    let choice = super::resolve::executor(ctx, &args.executor).map_err(|mut e| {
        e.code = exit::EXEC_FAILED;
        e
    })?;
    if in_project && !args.no_sweep {
        report_sweep(&exec::sweep::sweep(
            Some(ctx.project.root()),
            exec::DEFAULT_GRACE,
        ));
        let (state_dir, _) = super::executor::dirs(&ctx.project);
        report_slurm_sweep(&exec::slurm::sweep::sweep_jobs(
            Some(&state_dir),
            Some(ctx.project.root()),
            false,
            false,
            exec::slurm::sweep::SWEEP_WAIT,
        ));
    }

    let cancel = Cancel::on_signals().map_err(|e| {
        CliError::with_code(
            exit::EXEC_FAILED,
            format!("cannot install signal handlers: {e}"),
        )
    })?;
    // Read (and delete) the env file only now that signals are handled: a Slurm executor
    // takes its disappearance as the sign that this process can take a forwarded signal.
    if let Some(path) = &args.env_file {
        let mut from_file = read_env_file(path)?;
        from_file.append(&mut env);
        env = from_file;
    }

    let spec = ExecSpec {
        program,
        cwd: args.cwd.clone(),
        env,
        stdout: args
            .stdout_file
            .clone()
            .map_or(Output::Inherit, Output::File),
        stderr: args
            .stderr_file
            .clone()
            .map_or(Output::Inherit, Output::File),
        null_stdin: false,
        // As with GNU timeout, a limit of 0 disables the limit.
        timeout: args.timeout.filter(|t| !t.is_zero()),
        grace: args.grace,
        stall_timeout: args.stall_timeout,
        run_id: args.run_id.clone(),
        project: in_project.then(|| ctx.project.root().to_path_buf()),
        name: None,
    };
    let report = match choice.slurm {
        Some(config) => {
            if args.admit.is_some() && !ctx.global.quiet {
                crate::diag!(
                    "qw: warning: --admit does not apply under --executor slurm: Slurm schedules the job"
                );
            }
            run_on_slurm(spec.clone(), config, &cancel)?
        }
        None => {
            // Held until the run ends; dropping it frees the admission slot.
            let (_slot, admission_wait_ms) = super::resources::admit_for_exec(
                ctx,
                args.admit.as_deref(),
                args.admit_timeout,
                &cancel,
            )?;
            let mut report = exec::supervisor::supervise(&spec, &cancel)
                .map_err(|e| CliError::with_code(exit::EXEC_FAILED, e.to_string()))?;
            report.admission_wait_ms = admission_wait_ms;
            report
        }
    };
    explain(&report, &spec, ctx.global.quiet);
    // Recording waits for the state lock; a signal during that wait (the holder may be
    // stopped) ends qw at once with 128+N, after the report below is out.
    let mut interrupted = None;
    if in_project
        && !args.no_record
        && let Err(e) = crate::state::record_exec(&ctx.project, &args.argv, report.exit_code == 0)
    {
        match e.interrupted() {
            Some(sig) => interrupted = Some((sig, e)),
            None => {
                crate::diag!("qw: warning: this run was not recorded in the state: {e}");
                for hint in e.hints() {
                    crate::diag!("  hint: {hint}");
                }
            }
        }
    }

    if let Some(path) = &args.report_file {
        let json = serde_json::to_vec(&report)
            .map_err(|e| CliError::with_code(exit::EXEC_FAILED, e.to_string()))?;
        // A hand-off to the parent that reads it as soon as we exit: no fsync needed.
        crate::fs::write(path, &json)
            .map_err(|e| CliError::with_code(exit::EXEC_FAILED, e.to_string()))?;
    }
    // A closed stdout loses only the report; the exit status stays the program's.
    if ctx.global.json
        && let Err(e) = super::out::line(serde_json::to_string(&report).unwrap_or_default())
        && !e.is_stdout_closed()
    {
        crate::diag!("qw: warning: {}", e.message);
    }
    if let Some((sig, e)) = interrupted {
        return Err(e.hints().into_iter().fold(
            CliError::with_code(
                exit::EXEC_SIGNAL_BASE + sig,
                format!(
                    "{e}; the run (exit {}) was not recorded in the state",
                    report.exit_code
                ),
            ),
            CliError::hint,
        ));
    }
    Ok(report.exit_code)
}

/// Run `spec` as one Slurm job (`qw/exec/<program>`).
fn run_on_slurm(
    mut spec: ExecSpec,
    config: exec::slurm::SlurmConfig,
    cancel: &Cancel,
) -> Result<ExecReport, CliError> {
    use exec::Executor as _;
    let program = spec.program.to_argv()[0].clone();
    let base = std::path::Path::new(&program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    spec.name = Some(format!("qw/exec/{base}"));
    let failed = |e: exec::ExecError| CliError::with_code(exit::EXEC_FAILED, e.to_string());
    let executor = exec::SlurmExecutor::current(config).map_err(failed)?;
    executor.run(&spec, cancel).map_err(failed)
}

/// Read `--env-file` (NUL-separated NAME=VALUE) and delete it.
fn read_env_file(path: &std::path::Path) -> Result<Vec<(OsString, OsString)>, CliError> {
    use std::os::unix::ffi::OsStrExt;
    let bytes =
        crate::fs::read(path).map_err(|e| CliError::with_code(exit::EXEC_FAILED, e.to_string()))?;
    // Read once, then gone: the values may be secrets.
    let _ = crate::fs::remove_file(path);
    let mut env = Vec::new();
    for entry in bytes.split(|&b| b == 0).filter(|e| !e.is_empty()) {
        let Some(eq) = entry.iter().position(|&b| b == b'=') else {
            return Err(CliError::with_code(
                exit::EXEC_FAILED,
                format!("`{}` holds an entry that is not NAME=VALUE", path.display()),
            ));
        };
        env.push((
            std::ffi::OsStr::from_bytes(&entry[..eq]).to_owned(),
            std::ffi::OsStr::from_bytes(&entry[eq + 1..]).to_owned(),
        ));
    }
    Ok(env)
}

/// Tell the user on stderr what happened besides the program's own output.
fn explain(report: &ExecReport, spec: &ExecSpec, quiet: bool) {
    if let Some(err) = &report.spawn_error {
        crate::diag!("qw: error: {err}");
        return;
    }
    if quiet {
        return;
    }
    if let Some(v) = &report.scheduler
        && v.end() != exec::slurm::SchedulerEnd::Ran
    {
        crate::diag!("qw: {}", v.describe());
    }
    let how = if report.escalated_to_kill {
        "SIGTERM, then SIGKILL after the grace"
    } else {
        "SIGTERM"
    };
    if report.timed_out {
        let limit = spec.timeout.map(|t| t.as_secs_f64()).unwrap_or_default();
        crate::diag!("qw: timed out after {limit}s; ended the process tree with {how}");
    } else if report.stalled {
        let limit = spec
            .stall_timeout
            .map(|t| t.as_secs_f64())
            .unwrap_or_default();
        crate::diag!(
            "qw: no output and no CPU use for {limit}s (stalled); ended the process tree with {how}"
        );
    } else if let Some(sig) = report.interrupted_by {
        crate::diag!("qw: received signal {sig}; forwarded it to the process tree");
    }
    if !report.leftovers.is_empty() {
        let list: Vec<String> = report
            .leftovers
            .iter()
            .map(|l| format!("{} ({})", l.pid, l.command))
            .collect();
        crate::diag!(
            "qw: warning: the program left {} process(es) running; terminated them: {}",
            report.leftovers.len(),
            list.join(", ")
        );
    }
}

/// Warn about Slurm jobs an automatic sweep cancelled.
pub fn report_slurm_sweep(report: &exec::slurm::sweep::SlurmSweep) {
    if let Some(e) = &report.error {
        crate::diag!("qw: warning: could not sweep the Slurm jobs of a killed qw: {e}");
    }
    if report.cancelled.is_empty() {
        return;
    }
    let list: Vec<String> = report
        .cancelled
        .iter()
        .map(|j| format!("{} ({})", j.job_id, j.name))
        .collect();
    crate::diag!(
        "qw: warning: cancelled {} Slurm job(s) of a qw that was killed: {}",
        report.cancelled.len(),
        list.join(", ")
    );
}

/// Warn about orphans an automatic sweep ended.
pub fn report_sweep(report: &exec::sweep::SweepReport) {
    if report.killed.is_empty() {
        return;
    }
    let list: Vec<String> = report
        .killed
        .iter()
        .map(|l| format!("{} ({})", l.pid, l.command))
        .collect();
    crate::diag!(
        "qw: warning: ended {} process(es) orphaned by a qw that was killed: {}",
        report.killed.len(),
        list.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_or_gnu_suffixes() {
        let ok = |s: &str| parse_secs(s).unwrap().as_secs_f64();
        assert_eq!(ok("1"), 1.0);
        assert_eq!(ok("0.5"), 0.5);
        assert_eq!(ok("90s"), 90.0);
        assert_eq!(ok("1.5m"), 90.0);
        assert_eq!(ok("2h"), 7200.0);
        assert_eq!(ok("1d"), 86400.0);
        for bad in ["", "s", "-1", "abc", "nan", "inf", "1x", "1.5.2", "-2m"] {
            assert!(parse_secs(bad).is_err(), "{bad:?} accepted");
        }
    }
}
