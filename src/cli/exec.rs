//! `qw exec`: run a program as a supervised process tree (CONTRACT §2).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::args::{self, parse_secs};
use super::{CliError, CmdResult, Ctx, GlobalArgs};
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
    /// The stdout is an agent's event stream: for the stall watch only its growth and
    /// the program's child processes count as life (used by qw's own executor; without
    /// `--stall-timeout` it does nothing).
    #[arg(long, hide = true)]
    pub stall_on_events: bool,
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
    /// After a run ended by a signal, if FILE exists, wait (at most 10 s) for one more
    /// signal before exiting. Used inside Slurm jobs: the submitting qw that forwarded the
    /// signal then cancels the job whole, so Slurm records it CANCELLED, not FAILED.
    #[arg(long, hide = true, value_name = "FILE")]
    pub linger_if: Option<PathBuf>,
    /// Where the program runs.
    #[command(flatten)]
    pub executor: super::executor::ExecutorArgs,
    /// The program and its arguments (never run through a shell).
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    pub argv: Vec<OsString>,
}

impl ExecArgs {
    /// Parse `qw exec`'s arguments (`args[i..]`, from the first one after `exec` through
    /// `-- PROGRAM…`) without clap, global options interleaved as clap allows them.
    ///
    /// The fast path of `qw exec`, which is benchmarked against GNU timeout: building the
    /// whole clap tree costs more than the rest of a short run. It takes only the shapes
    /// clap accepts with the same result (a test compares both on generated argvs) and
    /// returns `None` for anything else — help, unknown or repeated options, values that
    /// do not parse — so that clap parses it and prints its own error or help.
    pub fn parse_fast(
        args: &[OsString],
        mut i: usize,
        global: &mut GlobalArgs,
    ) -> Option<ExecArgs> {
        let mut a = ExecArgs {
            timeout: None,
            grace: parse_secs("5").ok()?,
            stall_timeout: None,
            stall_on_events: false,
            cwd: None,
            admit: None,
            admit_timeout: None,
            no_record: false,
            no_sweep: false,
            report_file: None,
            stdout_file: None,
            stderr_file: None,
            run_id: None,
            env: Vec::new(),
            env_file: None,
            linger_if: None,
            executor: Default::default(),
            argv: Vec::new(),
        };
        let mut grace_given = false;
        // Global options after `exec`: clap lets them override the ones before it, so
        // those given on both sides are left to clap.
        let mut after = GlobalArgs::default();
        while let Some(arg) = args.get(i) {
            if arg == "--" {
                a.argv = args[i + 1..].to_vec();
                let complete =
                    !a.argv.is_empty() && (a.admit.is_some() || a.admit_timeout.is_none());
                return (complete && merge_globals(global, after)).then_some(a);
            }
            if args::take_global(args, &mut i, &mut after)? {
                continue;
            }
            let body = arg.to_str()?.strip_prefix("--")?;
            let (name, inline) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            i += 1;
            let mut value = || fast_value(args, &mut i, inline);
            let secs = |v: OsString| parse_secs(v.to_str()?).ok();
            match name {
                "timeout" => once(&mut a.timeout, secs(value()?)?)?,
                "grace" if !grace_given => {
                    grace_given = true;
                    a.grace = secs(value()?)?;
                }
                "stall-timeout" => once(&mut a.stall_timeout, secs(value()?)?)?,
                "admit-timeout" => once(&mut a.admit_timeout, secs(value()?)?)?,
                "cwd" => once(&mut a.cwd, value()?.into())?,
                "report-file" => once(&mut a.report_file, value()?.into())?,
                "stdout-file" => once(&mut a.stdout_file, value()?.into())?,
                "stderr-file" => once(&mut a.stderr_file, value()?.into())?,
                "run-id" => once(&mut a.run_id, value()?.into_string().ok()?)?,
                "env" => a.env.push(value()?),
                "env-file" => once(&mut a.env_file, value()?.into())?,
                "linger-if" => once(&mut a.linger_if, value()?.into())?,
                "executor" => {
                    let kind = clap::ValueEnum::from_str(value()?.to_str()?, false).ok()?;
                    once(&mut a.executor.executor, kind)?;
                }
                "slurm-arg" => a.executor.slurm_args.push(value()?.into_string().ok()?),
                // `require_equals`: `--admit` alone means normal, a value needs `=`.
                "admit" if inline != Some("") => {
                    once(&mut a.admit, inline.unwrap_or("normal").to_owned())?;
                }
                "no-record" if inline.is_none() && !a.no_record => a.no_record = true,
                "no-sweep" if inline.is_none() && !a.no_sweep => a.no_sweep = true,
                "stall-on-events" if inline.is_none() && !a.stall_on_events => {
                    a.stall_on_events = true;
                }
                _ => return None,
            }
        }
        None
    }
}

/// An option's value: after `=`, or the next argument unless it looks like an option.
/// Empty values are left to clap.
fn fast_value(args: &[OsString], i: &mut usize, inline: Option<&str>) -> Option<OsString> {
    let value = match inline {
        Some(v) => OsString::from(v),
        None => {
            let v = args.get(*i)?;
            if v.as_encoded_bytes().starts_with(b"-") {
                return None;
            }
            *i += 1;
            v.clone()
        }
    };
    (!value.is_empty()).then_some(value)
}

/// Add the global options given after `exec` to those given before it; false when both
/// sides give the same one (or `-q` meets `-v`).
fn merge_globals(before: &mut GlobalArgs, after: GlobalArgs) -> bool {
    let both = (before.project.is_some() && after.project.is_some())
        || (before.json && after.json)
        || ((before.verbose > 0 || before.quiet) && (after.verbose > 0 || after.quiet));
    if both {
        return false;
    }
    before.project = before.project.take().or(after.project);
    before.json |= after.json;
    before.verbose += after.verbose;
    before.quiet |= after.quiet;
    true
}

/// Set an option given at most once (clap rejects a repeat).
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

/// Run `qw exec`.
pub(crate) fn run(ctx: &Ctx, args: ExecArgs) -> CmdResult {
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
        stall_on_events: args.stall_on_events,
        run_id: args.run_id.clone(),
        project: in_project.then(|| ctx.project.root().to_path_buf()),
        name: None,
        report_file: None,
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
    trace_report(&report, &spec);
    // Recording waits for the state lock; a signal during that wait (the holder may be
    // stopped) ends qw at once with 128+N, after the report below is out.
    let mut interrupted = None;
    if in_project
        && !args.no_record
        && let Err(e) = record(&ctx.project, &args.argv, report.exit_code == 0, &cancel)
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
        crate::fs::write_generated(path, &json)
            .map_err(|e| CliError::with_code(exit::EXEC_FAILED, e.to_string()))?;
    }
    // The submitting qw forwarded the signal and will cancel the job whole once it sees
    // the report: wait for that (its signal) rather than end the job as FAILED first.
    if report.interrupted_by.is_some()
        && let Some(marker) = &args.linger_if
        && marker.exists()
    {
        cancel.sleep(exec::slurm::CANCEL_MARGIN);
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

/// Record the run in the state, once no `qw state-backup --restore` runs: a record written
/// between a restore's look for running work and its write would be dropped by it. A run
/// that is a step of a qw workflow (`QW_SPEC` set: a task's agent or `_Verify:_` command)
/// does not wait — a `--restore --wait` holds the gate while it waits for that very
/// workflow, which waits for this step.
fn record(
    project: &crate::project::Project,
    argv: &[std::ffi::OsString],
    success: bool,
    cancel: &Cancel,
) -> Result<(), crate::state::StateError> {
    let _gate = if std::env::var_os("QW_SPEC").is_some() {
        None
    } else {
        Some(
            crate::state::lock::wait_out_restore(project, cancel)
                .map_err(crate::state::StateError::Lock)?,
        )
    };
    crate::state::record_exec(project, argv, success)
}

/// The trace of a run in `.claude/logs/`: the program and how it ended, then one line
/// per process the supervisor ended (pid and command). Nothing is formatted unless a
/// layer takes info (inside a project).
fn trace_report(report: &ExecReport, spec: &ExecSpec) {
    let outcome = if report.spawn_error.is_some() {
        "spawn_failed"
    } else if report.timed_out {
        "timed_out"
    } else if report.stalled {
        "stalled"
    } else if report.interrupted_by.is_some() {
        "interrupted"
    } else if report.signal.is_some() {
        "signalled"
    } else {
        "exited"
    };
    tracing::info!(
        run_id = %report.run_id,
        program = %spec.program.display(),
        outcome = %outcome,
        exit = report.exit_code,
        signal = report.signal,
        duration_s = %format_args!("{:.3}", report.duration_ms as f64 / 1000.0),
        admission_wait_s = %format_args!("{:.3}", report.admission_wait_ms as f64 / 1000.0),
        leftovers_killed = report.leftovers_killed,
        processes_ended = report.processes_ended,
        escalated_to_kill = report.escalated_to_kill,
        "exec finished"
    );
    if let Some(err) = &report.spawn_error {
        tracing::error!(target: crate::logging::RECORDED_ERRORS, run_id = %report.run_id, component = %"exec", "{err}");
    }
    for l in &report.leftovers {
        tracing::info!(run_id = %report.run_id, pid = l.pid, command = %l.command, "exec ended a leftover process");
    }
    for l in &report.unkillable {
        tracing::info!(run_id = %report.run_id, pid = l.pid, command = %l.command, "exec could not end a process");
    }
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
    let bytes = crate::fs::read_regular_whole(path, 16 << 20)
        .map_err(|e| CliError::with_code(exit::EXEC_FAILED, e.to_string()))?;
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
    let ended = processes(report.processes_ended);
    if report.timed_out {
        let limit = spec.timeout.map(|t| t.as_secs_f64()).unwrap_or_default();
        crate::diag!("qw: timed out after {limit}s; ended the process tree ({ended}) with {how}");
    } else if report.stalled {
        let limit = spec
            .stall_timeout
            .map(|t| t.as_secs_f64())
            .unwrap_or_default();
        let what = if spec.stall_on_events {
            "no new output and no child process at work"
        } else {
            "no output and no CPU use"
        };
        crate::diag!(
            "qw: {what} for {limit}s (stalled); ended the process tree ({ended}) with {how}"
        );
    } else if let Some(sig) = report.interrupted_by {
        let then = if report.escalated_to_kill {
            ", then SIGKILL after the grace"
        } else {
            ""
        };
        crate::diag!(
            "qw: received signal {sig}; forwarded it to the process tree and ended it ({ended}{then})"
        );
    }
    if !report.leftovers.is_empty() {
        let mut list: Vec<String> = report
            .leftovers
            .iter()
            .map(|l| format!("{} ({})", l.pid, l.command))
            .collect();
        let more = report
            .leftovers_killed
            .saturating_sub(report.leftovers.len());
        if more > 0 {
            list.push(format!("and {more} more"));
        }
        crate::diag!(
            "qw: warning: the program left {} process(es) running; terminated them: {}",
            report.leftovers_killed.max(report.leftovers.len()),
            list.join(", ")
        );
    }
    if !report.unkillable.is_empty() {
        let list: Vec<String> = report
            .unkillable
            .iter()
            .map(|l| format!("{} ({})", l.pid, l.command))
            .collect();
        crate::diag!(
            "qw: warning: {} process(es) of the run did not end after SIGKILL (blocked in the kernel, or no longer seen as a member); qw gave up on them: {}",
            report.unkillable.len(),
            list.join(", ")
        );
    }
}

/// `1 process`, `7 processes`.
fn processes(n: usize) -> String {
    if n == 1 {
        "1 process".to_owned()
    } else {
        format!("{n} processes")
    }
}

/// Warn about Slurm jobs an automatic sweep cancelled.
pub(crate) fn report_slurm_sweep(report: &exec::slurm::sweep::SlurmSweep) {
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
pub(crate) fn report_sweep(report: &exec::sweep::SweepReport) {
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
        report.count,
        list.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use clap::Parser;
    use proptest::prelude::*;

    use crate::cli::{Cli, parse_exec_fast};

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn by_clap(args: &[OsString]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once(OsString::from("qw")).chain(args.iter().cloned()))
    }

    /// The fast path either declines or agrees with clap exactly.
    fn agrees(args: &[OsString]) -> Result<(), String> {
        let Some(fast) = parse_exec_fast(args) else {
            return Ok(());
        };
        match by_clap(args) {
            Ok(slow) if format!("{slow:?}") == format!("{fast:?}") => Ok(()),
            Ok(slow) => Err(format!("{args:?}: fast {fast:?} but clap {slow:?}")),
            Err(e) => Err(format!(
                "{args:?}: fast accepted {fast:?}, clap refused: {e}"
            )),
        }
    }

    #[test]
    fn common_shapes_take_the_fast_path_and_agree_with_clap() {
        for shape in [
            &["exec", "--", "true"][..],
            &["exec", "--timeout", "10", "--", "sleep", "1"],
            &[
                "exec",
                "--timeout=1.5m",
                "--grace=0.5",
                "--json",
                "--",
                "a",
                "--",
                "-b",
            ],
            &["-C", "/tmp", "--json", "exec", "--no-record", "--", "x"],
            &["-q", "exec", "--admit", "--admit-timeout", "3", "--", "x"],
            &["-vv", "exec", "--admit=low", "--", "x"],
            &["exec", "--admit=low", "-v", "-C", "d", "--", "x"],
            &[
                "--project=/p",
                "exec",
                "--stall-timeout",
                "2",
                "--cwd",
                "d",
                "--",
                "x",
            ],
            &[
                "exec",
                "--no-sweep",
                "--report-file",
                "r",
                "--stdout-file",
                "o",
                "--stderr-file=e",
                "--run-id",
                "1.2.ab",
                "--env",
                "A=1",
                "--env=B=2",
                "--",
                "x",
            ],
        ] {
            let args = os(shape);
            assert!(
                parse_exec_fast(&args).is_some(),
                "{shape:?} left the fast path"
            );
            agrees(&args).unwrap();
        }
    }

    #[test]
    fn other_shapes_are_left_to_clap() {
        for shape in [
            &["exec", "true"][..],
            &["exec", "--"],
            &["exec", "--help"],
            &["exec", "-h", "--", "x"],
            &["help", "exec"],
            &["exec", "--bogus", "--", "x"],
            &["exec", "--timeout", "-1", "--", "x"],
            &["exec", "--timeout", "abc", "--", "x"],
            &["exec", "--timeout", "1", "--timeout", "2", "--", "x"],
            &["exec", "--admit-timeout", "3", "--", "x"],
            &["exec", "--admit=", "--", "x"],
            &["exec", "--admit", "low", "--", "x"],
            &["exec", "--no-record=yes", "--", "x"],
            &["exec", "--cwd=", "--", "x"],
            &["--json", "exec", "--json", "--", "x"],
            &["-vv", "exec", "-v", "--", "x"],
            &["-q", "exec", "-v", "--", "x"],
            &["-C", "a", "exec", "-C", "b", "--", "x"],
            &["spec-create", "exec", "x"],
            &["-C", "exec"],
        ] {
            assert!(
                parse_exec_fast(&os(shape)).is_none(),
                "{shape:?} took the fast path"
            );
        }
    }

    #[test]
    fn every_exec_option_has_a_fast_path() {
        use clap::Args;
        let command = super::ExecArgs::augment_args(clap::Command::new("exec"));
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else {
                continue;
            };
            let mut args = os(&["exec"]);
            let flag = format!("--{long}");
            match long {
                "admit" => args.push("--admit=high".into()),
                "admit-timeout" => args.extend(os(&["--admit", &flag, "7"])),
                _ if !arg.get_action().takes_values() => args.push(flag.clone().into()),
                _ if long.contains("timeout") || long == "grace" => {
                    args.extend(os(&[&flag, "2.5"]))
                }
                "env" => args.extend(os(&[&flag, "K=V"])),
                "executor" => args.extend(os(&[&flag, "local"])),
                _ => args.extend(os(&[&flag, "value"])),
            }
            args.extend(os(&["--", "prog"]));
            assert!(
                parse_exec_fast(&args).is_some(),
                "`qw exec {flag}` has no fast path: teach `ExecArgs::parse_fast` the new option \
                 (or `qw exec` with it pays for building the whole clap tree)"
            );
            agrees(&args).unwrap();
        }
    }

    const WORDS: &[&str] = &[
        "exec",
        "--",
        "true",
        "-C",
        "dir",
        "-Cdir",
        "-C=dir",
        "--project",
        "--project=dir",
        "--json",
        "-v",
        "-vv",
        "-q",
        "-vq",
        "--verbose",
        "--quiet",
        "--timeout",
        "1",
        "2.5",
        "90s",
        "-1",
        "--timeout=3",
        "--timeout=",
        "--grace",
        "--grace=0",
        "--stall-timeout",
        "--cwd",
        "/tmp",
        "--cwd=/x",
        "--admit",
        "--admit=low",
        "--admit=",
        "--admit-timeout",
        "--admit-timeout=4",
        "--no-record",
        "--no-sweep",
        "--no-record=1",
        "--report-file",
        "--stdout-file",
        "--stderr-file=e",
        "--run-id",
        "id",
        "--env",
        "A=1",
        "--env=B=2",
        "",
        "-x",
        "--bogus",
        "-h",
        "--help",
        "help",
        "status",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(600))]
        #[test]
        fn fast_path_never_disagrees_with_clap(
            pre in proptest::collection::vec(proptest::sample::select(WORDS), 0..4),
            mid in proptest::collection::vec(proptest::sample::select(WORDS), 0..8),
            tail in proptest::collection::vec(proptest::sample::select(WORDS), 0..3),
            with_exec in any::<bool>(),
            with_dashes in any::<bool>(),
        ) {
            let mut args: Vec<&str> = pre;
            if with_exec { args.push("exec"); }
            args.extend(mid);
            if with_dashes { args.push("--"); }
            args.extend(tail);
            let result = agrees(&os(&args));
            prop_assert!(result.is_ok(), "{}", result.unwrap_err());
        }

        #[test]
        fn well_formed_runs_agree_with_clap(
            pre in proptest::collection::vec(proptest::sample::select(GLOBAL_UNITS), 0..3),
            mid in proptest::collection::vec(proptest::sample::select(EXEC_UNITS), 0..6),
            program in proptest::collection::vec(proptest::sample::select(WORDS), 1..4),
        ) {
            let mut args: Vec<&str> = pre.concat();
            args.push("exec");
            args.extend(mid.concat());
            args.push("--");
            args.extend(program);
            let result = agrees(&os(&args));
            prop_assert!(result.is_ok(), "{}", result.unwrap_err());
        }
    }

    const GLOBAL_UNITS: &[&[&str]] = &[
        &["-C", "d"],
        &["-Cd"],
        &["--project=d"],
        &["--project", "d"],
        &["--json"],
        &["-v"],
        &["-vv"],
        &["--verbose"],
        &["-q"],
        &["--quiet"],
    ];

    const EXEC_UNITS: &[&[&str]] = &[
        &["--timeout", "1"],
        &["--timeout=2.5m"],
        &["--grace", "0"],
        &["--grace=1s"],
        &["--stall-timeout", "3"],
        &["--cwd", "/tmp"],
        &["--cwd=x y"],
        &["--admit"],
        &["--admit=high"],
        &["--admit-timeout", "9"],
        &["--no-record"],
        &["--no-sweep"],
        &["--report-file", "r"],
        &["--stdout-file=o"],
        &["--stderr-file", "e"],
        &["--run-id", "1.2.a"],
        &["--env", "A=1"],
        &["--env=B="],
        &["--json"],
        &["-v"],
        &["-C", "e"],
    ];

    #[test]
    fn well_formed_runs_mostly_take_the_fast_path() {
        // Guards the generator above: most of what it makes must reach the comparison.
        let mut fast = 0;
        for (i, unit) in EXEC_UNITS.iter().enumerate() {
            let other = EXEC_UNITS[(i + 1) % EXEC_UNITS.len()];
            let args: Vec<&str> = [&["exec"][..], unit, other, &["--", "x"]].concat();
            fast += usize::from(parse_exec_fast(&os(&args)).is_some());
            agrees(&os(&args)).unwrap();
        }
        assert!(
            fast * 4 >= EXEC_UNITS.len() * 3,
            "{fast} of {}",
            EXEC_UNITS.len()
        );
    }
}
