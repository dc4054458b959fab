//! [`SlurmExecutor`]: each job is one Slurm batch job whose only process is `qw exec`.
//!
//! Owns: submitting (`sbatch`), watching (`squeue`, one call for all jobs in flight),
//! cancelling (`scancel`), the owner records that let a sweep cancel the jobs of a killed
//! `qw`, and turning a Slurm end state into an [`ExecReport`].
//! Must not: know about specs, tasks or the state file; run anything but Slurm's client
//! commands locally.
//!
//! Why `sbatch` (and qw's own polling) rather than `srun` or `sbatch --wait`:
//! - `srun` keeps a live connection from the compute node back to the submitting process
//!   (its I/O and step messages): it fails where nodes cannot reach the login host, and the
//!   job's life is tied to that process and its network. A batch job needs neither.
//! - `sbatch --wait` polls the controller itself at 2, 8, 32 s… intervals: a trivial task
//!   would cost tens of seconds, and a thousand waiting `sbatch` processes would each poll.
//! - With `sbatch --parsable` the job id is known the moment the job exists, so it is
//!   recorded (with the owner's cookie in the job's comment) before the job can start.
//!   One poller per executor asks `squeue` about every job in flight in one call, and the
//!   report `qw exec` writes into the run folder says at once when a job is done.
//!
//! Ending a job: a pending job is `scancel`led. A running one gets the caller's signal on
//! its batch step only (`scancel --batch --signal=…`), which is the `qw exec` supervisor:
//! it forwards the signal to the agent's tree and escalates to SIGKILL after the grace, as
//! on a local machine. Once it has reported (the tree is gone) the job is `scancel`led
//! whole, which the `qw exec` waits for (see [`CANCEL_FILE`]), so Slurm's record of the
//! job says CANCELLED rather than FAILED. If the job is still there after grace +
//! [`CANCEL_MARGIN`], it is `scancel`led outright. `run` returns only when Slurm says the
//! job has ended.

pub(crate) mod queue;
pub(crate) mod submit;
pub(crate) mod sweep;

use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use self::queue::{JobState, Poller, QueueEntry, Seen};
use super::{Cancel, ExecError, ExecReport, ExecSpec, Executor, Output};

/// Added to timeout + grace for Slurm's own time limit (the outer bound).
pub const TIME_MARGIN: Duration = Duration::from_secs(60);
/// After a forwarded signal, how long past the grace the job may take to end before it is
/// cancelled outright.
pub const CANCEL_MARGIN: Duration = Duration::from_secs(10);
/// How long after `qw exec` on the node reported a job is taken as ended although Slurm
/// cannot be asked.
const UNREACHABLE_AFTER_REPORT: Duration = Duration::from_secs(60);
/// Default interval between two `squeue` calls.
pub const DEFAULT_POLL: Duration = Duration::from_millis(500);

/// The script, environment file and report of a job, in its run folder.
pub const SCRIPT_FILE: &str = "slurm-job.sh";
/// See [`SCRIPT_FILE`].
pub const ENV_FILE: &str = "slurm-env";
/// See [`SCRIPT_FILE`].
pub const REPORT_FILE: &str = "exec-report.json";
/// Made in the run folder before a signal is forwarded to a job's `qw exec`: it tells it
/// to wait, once it has ended the tree and reported, for the whole job to be cancelled.
pub const CANCEL_FILE: &str = "cancel-requested";

/// How the Slurm backend is set up (flags and settings, resolved by the caller).
#[derive(Debug, Clone)]
pub struct SlurmConfig {
    /// Extra `sbatch` options (`--partition=…`, `--account=…`, `--qos=…`, `--gres=…`).
    pub args: Vec<String>,
    /// Extra environment variables to pass (names, or prefixes ending in `*`).
    pub export: Vec<String>,
    /// A job still pending after this long is cancelled and reported as an error.
    pub pending_timeout: Duration,
    /// Interval between two `squeue` calls.
    pub poll_interval: Duration,
    /// Where owner records live (`.claude/slurm` in a project).
    pub state_dir: PathBuf,
    /// Where run folders are made for runs whose output is not captured to a file
    /// (`.claude/runs` in a project). Must be on a filesystem the nodes share.
    pub runs_dir: PathBuf,
}

impl SlurmConfig {
    /// The folders a project uses: `.claude/slurm` and `.claude/runs`.
    pub fn for_project_dirs(claude_dir: &Path) -> (PathBuf, PathBuf) {
        (claude_dir.join("slurm"), claude_dir.join("runs"))
    }
}

/// Slurm's verdict on a job, kept in the [`ExecReport`] of every Slurm run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerVerdict {
    /// `slurm`.
    pub scheduler: String,
    /// The job id.
    pub job_id: String,
    /// The job name (`qw/<spec>/<task>`).
    pub job_name: String,
    /// The end state as Slurm names it (`COMPLETED`, `TIMEOUT`, `CANCELLED`, …), or
    /// `UNKNOWN` when Slurm no longer remembers the job.
    pub state: String,
    /// Slurm's reason, if it gave one.
    #[serde(default)]
    pub reason: Option<String>,
    /// The node(s) the job ran on.
    #[serde(default)]
    pub nodes: Option<String>,
    /// The partition.
    #[serde(default)]
    pub partition: Option<String>,
    /// Slurm's `ExitCode=` of the batch script (`code:signal`), if known.
    #[serde(default)]
    pub exit_code: Option<String>,
    /// Time the job spent pending, in milliseconds.
    #[serde(default)]
    pub pending_ms: u64,
    /// The job was submitted by a `qw` that was killed and taken over by this one; its
    /// original run folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted_from: Option<PathBuf>,
}

/// What a Slurm end state means for the run, whatever the program printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerEnd {
    /// The job ran to its end (COMPLETED, FAILED): the program's own result counts.
    Ran,
    /// Slurm's time limit (TIMEOUT, DEADLINE).
    TimeLimit,
    /// Someone cancelled the job (CANCELLED).
    Cancelled,
    /// The node failed or the job was preempted (NODE_FAIL, PREEMPTED, BOOT_FAIL):
    /// nothing is wrong with the program; another attempt may succeed.
    Lost,
    /// The job exceeded its memory (OUT_OF_MEMORY).
    OutOfMemory,
}

impl SchedulerVerdict {
    /// The meaning of the end state.
    pub fn end(&self) -> SchedulerEnd {
        match self.state.as_str() {
            "TIMEOUT" | "DEADLINE" => SchedulerEnd::TimeLimit,
            "CANCELLED" => SchedulerEnd::Cancelled,
            "NODE_FAIL" | "PREEMPTED" | "BOOT_FAIL" | "REVOKED" | "UNKNOWN" => SchedulerEnd::Lost,
            "OUT_OF_MEMORY" => SchedulerEnd::OutOfMemory,
            _ => SchedulerEnd::Ran,
        }
    }

    /// One line for evidence: `Slurm job 42 (qw/demo/1) TIMEOUT on node vm`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "Slurm job {} ({}) {}",
            self.job_id, self.job_name, self.state
        );
        if let Some(r) = &self.reason {
            s.push_str(&format!(" ({r})"));
        }
        if let Some(n) = &self.nodes {
            s.push_str(&format!(" on node {n}"));
        }
        s
    }
}

/// Runs jobs as Slurm batch jobs (see the module docs).
#[derive(Debug)]
pub struct SlurmExecutor {
    qw: PathBuf,
    cookie: String,
    host: String,
    config: SlurmConfig,
    poller: Poller,
    /// Jobs of a killed qw taken over by [`SlurmExecutor::adopt_orphans`], by job name:
    /// `run` waits for one of these instead of submitting its work again.
    adopted: std::sync::Mutex<std::collections::HashMap<String, Adopted>>,
}

/// A job of a killed `qw` that an executor took over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopted {
    /// The job id.
    pub job_id: String,
    /// The job name (`qw/<spec>/<task>`).
    pub name: String,
    /// Its run folder (the job's working directory).
    pub run_dir: PathBuf,
    /// Its state when taken over.
    pub state: String,
}

impl SlurmExecutor {
    /// An executor that starts `qw` (absolute path, the same on the nodes) inside jobs.
    /// Fails if the user's `--slurm-arg`s are unusable.
    pub fn new(
        qw: impl Into<PathBuf>,
        mut config: SlurmConfig,
    ) -> Result<SlurmExecutor, ExecError> {
        config.args = submit::check_user_args(&config.args).map_err(ExecError::Usage)?;
        let poller = Poller::new(config.poll_interval);
        Ok(SlurmExecutor {
            qw: qw.into(),
            cookie: super::RunId::new_for_self()?.to_string(),
            host: sweep::hostname(),
            config,
            poller,
            adopted: std::sync::Mutex::default(),
        })
    }

    /// Use the running executable (which must be `qw`).
    pub fn current(config: SlurmConfig) -> Result<SlurmExecutor, ExecError> {
        SlurmExecutor::new(std::env::current_exe()?, config)
    }

    /// This executor's owner cookie (in every job's comment).
    pub fn cookie(&self) -> &str {
        &self.cookie
    }

    /// Check before any real work that the cluster answers, that a node sees `dir` (the
    /// project: a shared filesystem) and runs this `qw`: one tiny job. The error says
    /// which of them failed.
    pub fn check_shared(&self, dir: &Path, cancel: &Cancel) -> Result<(), ExecError> {
        let run_dir = new_run_dir(&self.config.runs_dir, "slurm-check")?;
        let mut spec = ExecSpec::new(super::Program::Exec {
            program: self.qw.clone().into_os_string(),
            args: vec!["--version".into()],
        });
        spec.cwd = Some(dir.to_path_buf());
        spec.stdout = Output::File(run_dir.join("stdout.log"));
        spec.stderr = Output::File(run_dir.join("stderr.log"));
        spec.null_stdin = true;
        spec.timeout = Some(Duration::from_secs(60));
        spec.grace = Duration::from_secs(1);
        spec.name = Some("qw/check/shared-filesystem".into());
        let report = match self.run(&spec, cancel) {
            Err(ExecError::NotShared {
                job_id, node, log, ..
            }) => {
                return Err(ExecError::NotShared {
                    job_id,
                    node,
                    dir: dir.to_path_buf(),
                    project: true,
                    log,
                });
            }
            other => other?,
        };
        let out =
            crate::fs::read_regular_text(&run_dir.join("stdout.log"), 1 << 20).unwrap_or_default();
        if report.exit_code != 0 || !out.contains(env!("CARGO_PKG_VERSION")) {
            return Err(ExecError::Scheduler(format!(
                "the check job ran `{} --version` in `{}` on a node and it exited {}; see `{}`",
                self.qw.display(),
                dir.display(),
                report.exit_code,
                run_dir.display()
            )));
        }
        let _ = crate::fs::remove_dir_all(&run_dir);
        Ok(())
    }

    /// Take over the jobs that a killed `qw` (a dead owner on this host) left for runs
    /// whose name starts with `name_prefix` and whose run folder is under `project`:
    /// running or pending ones (their comment is rewritten to name this executor, so a
    /// sweep leaves them alone) and ones that ended while nobody watched (Slurm still
    /// remembers them for MinJobAge). A later `run` of a spec with the same name waits for
    /// the job and takes its result instead of running the work a second time. Of several
    /// jobs with one name only the newest is kept; older active ones are cancelled. A
    /// newest job that was cancelled (by `qw sweep`, say) or lost with its node is not
    /// taken: its work runs again.
    pub fn adopt_orphans(
        &self,
        project: &Path,
        name_prefix: &str,
    ) -> Result<Vec<Adopted>, ExecError> {
        let text = queue::run_tool(
            "squeue",
            &[
                "--me",
                "--noheader",
                "--states=all",
                &format!("--format={}", queue::SQUEUE_FORMAT),
            ],
        )
        .map_err(ExecError::Scheduler)?;
        let mut rows: Vec<queue::QueueRow> = queue::parse_squeue(&text)
            .into_iter()
            .filter(|r| {
                submit::parse_owner_comment(&r.comment).is_some_and(|(h, cookie)| {
                    h == self.host
                        && cookie != self.cookie
                        && super::RunId::parse(cookie).is_some_and(|id| !id.owner_alive())
                })
            })
            .filter(|r| {
                r.name.starts_with(name_prefix) && Path::new(&r.workdir).starts_with(project)
            })
            .collect();
        // Newest first (job ids grow), so the first of each name is the one kept.
        rows.sort_by_key(|r| std::cmp::Reverse(r.entry.id.parse::<u64>().unwrap_or(0)));
        let mut taken = Vec::new();
        let mut map = self
            .adopted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut seen = std::collections::HashSet::new();
        for r in rows {
            let active = !r.entry.state.is_ended();
            if !seen.insert(r.name.clone()) || map.contains_key(&r.name) {
                if active {
                    scancel(&r.entry.id, None);
                }
                continue;
            }
            // The newest job of the name ended with nothing worth taking: cancelled (by
            // `qw sweep`, or by hand) or lost with its node. The work runs again.
            if !active && !left_a_result(r.entry.state.name()) {
                continue;
            }
            if active {
                crate::fs::create_dir_all(crate::fs::parent_dir(&self.owner_file()))?;
                self.record(&r.entry.id)?;
                let comment = submit::owner_comment(&self.host, &self.cookie);
                queue::run_tool(
                    "scontrol",
                    &[
                        "update",
                        &format!("JobId={}", r.entry.id),
                        &format!("Comment={comment}"),
                    ],
                )
                .map_err(ExecError::Scheduler)?;
            }
            let a = Adopted {
                job_id: r.entry.id.clone(),
                name: r.name.clone(),
                run_dir: PathBuf::from(&r.workdir),
                state: r.entry.state.name().to_owned(),
            };
            tracing::info!(job = %a.job_id, name = %a.name, state = %a.state, "took over a Slurm job of a killed qw");
            map.insert(r.name, a.clone());
            taken.push(a);
        }
        Ok(taken)
    }

    /// Wait for an adopted job, then copy its captured output into the files `spec` asks
    /// for (the new attempt's run folder), so the caller reads it as usual.
    fn run_adopted(
        &self,
        spec: &ExecSpec,
        a: Adopted,
        cancel: &Cancel,
    ) -> Result<ExecReport, ExecError> {
        let dir = a.run_dir.clone();
        // Where the job writes its output is in its script (`--stdout-file`…): not
        // always in its run folder (a verify job's `verify.log` is in the folder of the
        // agent's run, its own being a subfolder). Failing that, the same file name in
        // the run folder.
        let written = crate::fs::read_regular_text(&dir.join(SCRIPT_FILE), 1 << 20)
            .map(|text| submit::captured_files(&text))
            .unwrap_or_default();
        let old = |o: &Output, default: &str, from_script: Option<PathBuf>| {
            from_script.unwrap_or_else(|| match o {
                Output::File(p) => dir.join(p.file_name().unwrap_or_else(|| default.as_ref())),
                _ => dir.join(default),
            })
        };
        let files = RunFiles {
            script: dir.join(SCRIPT_FILE),
            env: dir.join(ENV_FILE),
            report: dir.join(REPORT_FILE),
            stdout: old(&spec.stdout, "stdout.log", written.0),
            stderr: old(&spec.stderr, "stderr.log", written.1),
            dir: dir.clone(),
        };
        let mut report = self.wait(spec, &files, &a.job_id, Instant::now(), cancel)?;
        for (out, from) in [(&spec.stdout, &files.stdout), (&spec.stderr, &files.stderr)] {
            if let Output::File(to) = out
                && to != from
                && from.exists()
            {
                crate::fs::copy(from, to)?;
            }
        }
        if let Some(v) = report.scheduler.as_mut() {
            v.adopted_from = Some(dir);
        }
        Ok(report)
    }

    fn owner_file(&self) -> PathBuf {
        sweep::owner_file(&self.config.state_dir, &self.host, &self.cookie)
    }

    /// Note a job under this executor's owner record (append; the record's existence is
    /// what lets an automatic sweep know it must ask Slurm).
    fn record(&self, job_id: &str) -> Result<(), ExecError> {
        let path = self.owner_file();
        let mut f = crate::fs::open_append(&path)?;
        f.write_all(format!("{job_id}\n").as_bytes())?;
        Ok(())
    }

    fn submit(&self, spec: &ExecSpec, files: &RunFiles) -> Result<String, ExecError> {
        let mut exec_args: Vec<OsString> = Vec::new();
        exec_args.extend(
            // `--executor local`: the project's settings may say slurm; on the node the
            // job must run right there.
            [
                "--quiet",
                "--no-record",
                "--no-sweep",
                "--executor",
                "local",
            ]
            .into_iter()
            .map(OsString::from),
        );
        exec_args.push("--report-file".into());
        exec_args.push(files.report.clone().into_os_string());
        exec_args.push("--env-file".into());
        exec_args.push(files.env.clone().into_os_string());
        exec_args.push("--linger-if".into());
        exec_args.push(files.dir.join(CANCEL_FILE).into_os_string());
        exec_args.push("--grace".into());
        exec_args.push(secs(spec.grace).into());
        if let Some(t) = spec.timeout {
            exec_args.push("--timeout".into());
            exec_args.push(secs(t).into());
        }
        if let Some(t) = spec.stall_timeout {
            exec_args.push("--stall-timeout".into());
            exec_args.push(secs(t).into());
            if spec.stall_on_events {
                exec_args.push("--stall-on-events".into());
            }
        }
        // Locally a run without a cwd inherits qw's; the job would start in its run
        // folder instead, so qw's own directory is passed explicitly.
        if let Some(dir) = spec.cwd.clone().or_else(|| std::env::current_dir().ok()) {
            exec_args.push("--cwd".into());
            exec_args.push(dir.into_os_string());
        }
        exec_args.push("--stdout-file".into());
        exec_args.push(files.stdout.clone().into_os_string());
        exec_args.push("--stderr-file".into());
        exec_args.push(files.stderr.clone().into_os_string());
        if let Some(id) = &spec.run_id {
            exec_args.push("--run-id".into());
            exec_args.push(id.into());
        }
        if let Some(project) = &spec.project {
            // qw's global `--project` (-C): `QW_PROJECT` for the agent, as locally.
            exec_args.push("--project".into());
            exec_args.push(project.clone().into_os_string());
        }
        exec_args.push("--".into());
        exec_args.extend(spec.program.to_argv());

        let env = submit::job_env(std::env::vars_os(), &self.config.export, &spec.env);
        write_private(&files.env, &submit::env_file_bytes(&env))?;
        let script = submit::script(&submit::ScriptSpec {
            qw: &self.qw,
            run_dir: &files.dir,
            script: &files.script,
            exec_args,
        });
        crate::fs::write(&files.script, script.as_bytes())?;

        let name = submit::job_name(spec.name.as_deref().unwrap_or("qw/exec"));
        let comment = submit::owner_comment(&self.host, &self.cookie);
        let time_minutes = spec
            .timeout
            .map(|t| submit::time_limit_minutes(t, spec.grace, TIME_MARGIN));
        let args = submit::sbatch_args(&submit::SbatchSpec {
            name: &name,
            comment: &comment,
            run_dir: &files.dir,
            time_minutes,
            user_args: &self.config.args,
            script: &files.script,
        });
        // The owner record exists before the job does: a qw killed right after sbatch
        // still leaves a record that tells the next sweep to look for its jobs.
        crate::fs::create_dir_all(crate::fs::parent_dir(&self.owner_file()))?;
        crate::fs::open_append(&self.owner_file())?;
        let out = std::process::Command::new("sbatch")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    ExecError::Scheduler(
                        "`sbatch` was not found on PATH: --executor slurm needs Slurm's client commands (or use --executor local)".into(),
                    )
                } else {
                    ExecError::Scheduler(format!("cannot run `sbatch`: {e}"))
                }
            })?;
        if !out.status.success() {
            let _ = crate::fs::remove_file(&files.env);
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(ExecError::Scheduler(format!(
                "sbatch refused the job `{name}`: {}",
                err.trim().lines().last().unwrap_or("no message")
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        // `--parsable` prints `id` or `id;cluster`.
        let id = text
            .trim()
            .split(';')
            .next()
            .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '_'))
            .ok_or_else(|| {
                ExecError::Scheduler(format!("sbatch printed no job id: `{}`", text.trim()))
            })?
            .to_owned();
        self.record(&id)?;
        tracing::info!(job = %id, name = %name, dir = %files.dir.display(), "submitted Slurm job");
        Ok(id)
    }
}

impl Drop for SlurmExecutor {
    fn drop(&mut self) {
        // Jobs taken over that no `run` asked for (their work was not run again: done,
        // or the workflow stopped first) must not run on unattended.
        let unused = std::mem::take(
            &mut *self
                .adopted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for a in unused.values() {
            if !JobState::parse(&a.state).is_ended() {
                tracing::info!(job = %a.job_id, name = %a.name, "cancelling a Slurm job taken over but not used");
                scancel(&a.job_id, None);
            }
        }
        // Every `run` returns only after its job ended: nothing of ours is in the queue,
        // so the owner record has nothing left to tell a sweep.
        let _ = crate::fs::remove_file(self.owner_file());
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// Write a file only the owner can read (the job's environment may hold API keys).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ExecError> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    let _ = crate::fs::remove_file(path);
    let mut f = crate::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    Ok(())
}

/// Where one job's files go.
#[derive(Debug, Clone)]
struct RunFiles {
    dir: PathBuf,
    script: PathBuf,
    env: PathBuf,
    report: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl RunFiles {
    /// The run folder is the folder of the captured stdout (the agent's run folder), else
    /// a new one under `runs_dir`. If the folder already holds a job's script, a fresh
    /// subfolder keeps the two jobs apart.
    fn for_spec(spec: &ExecSpec, runs_dir: &Path) -> Result<RunFiles, ExecError> {
        let captured = |o: &Output| match o {
            Output::File(p) => Some(p.clone()),
            _ => None,
        };
        let mut dir = match captured(&spec.stdout).or_else(|| captured(&spec.stderr)) {
            Some(p) => crate::fs::parent_dir(&p),
            None => new_run_dir(runs_dir, "exec")?,
        };
        crate::fs::create_dir_all(&dir)?;
        if dir.join(SCRIPT_FILE).exists() {
            // Only the new folder is made: a link already there is never followed.
            dir = dir.join(format!("slurm-{}", crate::random::hex(3)?));
            fs_err::create_dir(&dir)?;
        }
        let file_or = |o: &Output, name: &str| match o {
            Output::File(p) => p.clone(),
            Output::Null => PathBuf::from("/dev/null"),
            Output::Inherit => dir.join(name),
        };
        Ok(RunFiles {
            script: dir.join(SCRIPT_FILE),
            env: dir.join(ENV_FILE),
            report: dir.join(REPORT_FILE),
            stdout: file_or(&spec.stdout, "stdout.log"),
            stderr: file_or(&spec.stderr, "stderr.log"),
            dir,
        })
    }
}

/// A fresh, uniquely named folder `<stamp>-<label>-<hex>` under `runs_dir`, made as every
/// run folder of qw's is (`agent::runs`): `runs_dir`'s own folder is created as `mkdir -p`
/// would (`.claude` may be a link the user made), `runs_dir` itself and the new folder
/// without following a link — a symbolic link, a FIFO or a file at `runs_dir` is refused
/// with one line naming it, and nothing is made where it points.
fn new_run_dir(runs_dir: &Path, label: &str) -> Result<PathBuf, ExecError> {
    let (Some(parent), Some(name)) = (runs_dir.parent(), runs_dir.file_name()) else {
        return Err(ExecError::Scheduler(format!(
            "`{}` cannot hold run folders: it names no folder",
            runs_dir.display()
        )));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let dir = crate::fs::NoFollowDir::create(parent, Path::new(name))?;
    Ok(crate::agent::runs::unique_dir(&dir, label)?)
}

/// Copies a growing file to our stdout or stderr (for runs whose output is inherited).
struct Tail {
    path: PathBuf,
    pos: u64,
    to_stderr: bool,
}

impl Tail {
    fn pump(&mut self) {
        let Ok(mut f) = crate::fs::open_regular(&self.path) else {
            return;
        };
        if f.seek(SeekFrom::Start(self.pos)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if let Ok(n) = f.read_to_end(&mut buf) {
            self.pos += n as u64;
            if n > 0 {
                let _ = if self.to_stderr {
                    std::io::stderr().write_all(&buf)
                } else {
                    let mut out = std::io::stdout();
                    out.write_all(&buf).and_then(|()| out.flush())
                };
            }
        }
    }
}

/// What the wait loop learnt about the job.
#[derive(Debug, Default)]
struct Watch {
    last: Option<QueueEntry>,
    first_running: Option<Instant>,
    forwarded: Option<(Instant, i32)>,
    hard_cancelled: bool,
    cancelled_whole: bool,
}

impl Executor for SlurmExecutor {
    fn schedules(&self) -> bool {
        true
    }

    /// [`SlurmExecutor::check_shared`] (a node sees `dir` and runs this `qw`), then
    /// [`SlurmExecutor::adopt_orphans`]. Nothing is told here: a job taken over matters
    /// only if a `run` uses it (its report then carries
    /// [`SchedulerVerdict::adopted_from`]); the jobs of work already done are not.
    fn prepare(
        &self,
        dir: &Path,
        name_prefix: &str,
        cancel: &Cancel,
    ) -> Result<Vec<String>, ExecError> {
        self.check_shared(dir, cancel)?;
        let taken = self.adopt_orphans(dir, name_prefix)?;
        tracing::debug!(jobs = taken.len(), "Slurm jobs of a killed qw taken over");
        Ok(Vec::new())
    }

    fn run(&self, spec: &ExecSpec, cancel: &Cancel) -> Result<ExecReport, ExecError> {
        let adopted = spec.name.as_ref().and_then(|n| {
            self.adopted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(n)
        });
        if let Some(a) = adopted {
            return self.run_adopted(spec, a, cancel);
        }
        let started = Instant::now();
        let files = RunFiles::for_spec(spec, &self.config.runs_dir)?;
        let result = self
            .submit(spec, &files)
            .and_then(|id| self.wait(spec, &files, &id, started, cancel));
        // Normally `qw exec` on the node deleted it already; not if the job never ran.
        let _ = crate::fs::remove_file(&files.env);
        result
    }
}

impl SlurmExecutor {
    fn wait(
        &self,
        spec: &ExecSpec,
        files: &RunFiles,
        id: &str,
        started: Instant,
        cancel: &Cancel,
    ) -> Result<ExecReport, ExecError> {
        let mut tails: Vec<Tail> = [
            (&spec.stdout, &files.stdout, false),
            (&spec.stderr, &files.stderr, true),
        ]
        .into_iter()
        .filter(|(o, _, _)| matches!(o, Output::Inherit))
        .map(|(_, p, to_stderr)| Tail {
            path: p.clone(),
            pos: 0,
            to_stderr,
        })
        .collect();
        self.poller.watch(id);
        let mut w = Watch::default();
        let mut generation = 0;
        let mut reported_at: Option<Instant> = None;
        let end: Option<QueueEntry> = loop {
            let (seen, g, err) = self.poller.wait(id, generation, Duration::from_millis(25));
            generation = g;
            // Slurm does not answer, but `qw exec` on the node has reported: the run is
            // over. Do not wait forever for a controller that may be down for hours.
            match (&err, reported_at) {
                (Some(e), Some(at)) if at.elapsed() > UNREACHABLE_AFTER_REPORT => {
                    tracing::warn!(
                        "Slurm does not answer ({e}); taking job {id} as ended from its report"
                    );
                    break w.last.take();
                }
                _ => {}
            }
            match seen {
                Seen::Unknown => {}
                Seen::Gone => break w.last.take(),
                Seen::Row(entry) => {
                    if w.last.as_ref().is_none_or(|l| l.state != entry.state) {
                        tracing::debug!(job = %id, state = entry.state.name(), reason = ?entry.reason, "Slurm job state");
                    }
                    if entry.state.is_ended() {
                        break Some(entry);
                    }
                    if !matches!(entry.state, JobState::Pending) && w.first_running.is_none() {
                        w.first_running = Some(Instant::now());
                    }
                    w.last = Some(entry);
                }
            }
            for t in &mut tails {
                t.pump();
            }
            // The report appears the moment `qw exec` on the node is done: ask again now
            // rather than at the next interval.
            if reported_at.is_none() && files.report.exists() {
                tracing::debug!(job = %id, "qw exec on the node reported");
                reported_at = Some(Instant::now());
            }
            if reported_at.is_some() {
                self.poller.kick();
            }
            let pending = w
                .last
                .as_ref()
                .is_none_or(|e| matches!(e.state, JobState::Pending));
            if let Some(sig) = cancel.pending()
                && w.forwarded.is_none()
            {
                w.forwarded = Some((Instant::now(), sig));
                // `qw exec` on the node deletes the env file once its signal handlers are
                // in place. Before that the job may be pending, or running by Slurm's
                // account while the node is still launching it (a signal sent then is
                // dropped): cancel it whole, which is safe at any point since `qw exec`
                // ends its tree on the SIGTERM that brings.
                if files.env.exists() {
                    scancel(id, None);
                } else {
                    // `qw exec` ends the tree on the signal, reports, then waits for the
                    // job to be cancelled whole (below), so Slurm records CANCELLED.
                    if let Err(e) = crate::fs::write(files.dir.join(CANCEL_FILE), b"") {
                        tracing::warn!("{e}");
                    }
                    scancel(id, Some(sig));
                }
            }
            // The tree is gone (the report says so): cancel the job whole, once.
            if w.forwarded.is_some() && reported_at.is_some() && !w.cancelled_whole {
                w.cancelled_whole = true;
                // It may have ended meanwhile (Slurm then says so): nothing to warn about.
                if let Err(e) = queue::run_tool("scancel", &[id]) {
                    tracing::debug!("{e}");
                }
            }
            if let Some((at, _)) = w.forwarded
                && !w.hard_cancelled
                && at.elapsed() > spec.grace + CANCEL_MARGIN
            {
                w.hard_cancelled = true;
                scancel(id, None);
            }
            if pending
                && w.forwarded.is_none()
                && started.elapsed() > self.config.pending_timeout
                && let Some(entry) = &w.last
            {
                scancel(id, None);
                self.wait_gone(id);
                self.poller.unwatch(id);
                return Err(ExecError::Pending {
                    job_id: id.to_owned(),
                    name: submit::job_name(spec.name.as_deref().unwrap_or("qw/exec")),
                    partition: entry.partition.clone(),
                    reason: entry.reason.clone().unwrap_or_else(|| "none given".into()),
                    waited: started.elapsed(),
                });
            }
        };
        self.poller.unwatch(id);
        for t in &mut tails {
            t.pump();
        }
        let pending_ms = w
            .first_running
            .map_or_else(|| started.elapsed(), |t| t.duration_since(started))
            .as_millis();
        self.finish(
            spec,
            files,
            id,
            end,
            u64::try_from(pending_ms).unwrap_or(u64::MAX),
            w.forwarded.map(|(_, s)| s),
        )
    }

    /// Poll until Slurm says `id` ended (bounded: a minute past KillWait-sized delays).
    fn wait_gone(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            match queue::query(&[id.to_owned()]) {
                Ok(rows) => {
                    if rows.iter().all(|r| r.entry.state.is_ended()) {
                        return;
                    }
                }
                Err(e) => tracing::warn!("waiting for Slurm job {id} to end: {e}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Build the report of an ended job: the inner `qw exec` report when there is one,
    /// corrected by Slurm's verdict; otherwise a report made from the verdict alone.
    fn finish(
        &self,
        spec: &ExecSpec,
        files: &RunFiles,
        id: &str,
        end: Option<QueueEntry>,
        pending_ms: u64,
        forwarded: Option<i32>,
    ) -> Result<ExecReport, ExecError> {
        let detail = queue::detail(id).unwrap_or_default();
        let state = detail
            .state
            .clone()
            .or_else(|| end.as_ref().map(|e| e.state.name().to_owned()))
            .map(|s| JobState::parse(&s).name().to_owned())
            .unwrap_or_else(|| "UNKNOWN".to_owned());
        let verdict = SchedulerVerdict {
            scheduler: "slurm".into(),
            job_id: id.to_owned(),
            job_name: submit::job_name(spec.name.as_deref().unwrap_or("qw/exec")),
            state,
            reason: detail.reason.clone(),
            nodes: detail
                .nodes
                .clone()
                .or_else(|| end.as_ref().and_then(|e| e.nodes.clone())),
            partition: detail
                .partition
                .clone()
                .or_else(|| end.as_ref().map(|e| e.partition.clone())),
            exit_code: detail.exit_code.map(|(c, s)| format!("{c}:{s}")),
            pending_ms,
            adopted_from: None,
        };
        let inner: Option<ExecReport> = crate::fs::read_regular_text(&files.report, 16 << 20)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let node = verdict.nodes.clone().unwrap_or_else(|| "?".into());
        let mut report = match inner {
            Some(r) => r,
            None => {
                // No report: `qw exec` never ran to its end on the node.
                let code = detail.exit_code.map(|(c, _)| c);
                if code == Some(submit::EXIT_NOT_SHARED)
                    || verdict.reason.as_deref() == Some("JobLaunchFailure")
                {
                    let log = files.dir.join(submit::SLURM_OUT);
                    return Err(ExecError::NotShared {
                        job_id: id.to_owned(),
                        node,
                        dir: files.dir.clone(),
                        project: false,
                        log: log.is_file().then_some(log),
                    });
                }
                if code == Some(submit::EXIT_NO_QW) {
                    return Err(ExecError::Scheduler(format!(
                        "Slurm job {id}: node {node} has no executable `{}`; install qw at the same path on the nodes (or on the shared filesystem)",
                        self.qw.display()
                    )));
                }
                let mut r = ExecReport::new(String::new());
                match verdict.end() {
                    SchedulerEnd::TimeLimit => {
                        r.timed_out = true;
                        r.exit_code = crate::exit::EXEC_TIMED_OUT;
                    }
                    SchedulerEnd::Cancelled => {
                        r.interrupted_by = forwarded;
                        r.exit_code = crate::exit::EXEC_SIGNAL_BASE + forwarded.unwrap_or(15);
                    }
                    SchedulerEnd::OutOfMemory => {
                        r.signal = Some(9);
                        r.exit_code = crate::exit::EXEC_SIGNAL_BASE + 9;
                    }
                    SchedulerEnd::Lost | SchedulerEnd::Ran => {
                        r.exit_code = crate::exit::EXEC_FAILED;
                        if verdict.end() == SchedulerEnd::Ran {
                            r.spawn_error = Some(format!(
                                "{} without a report from `qw exec` (exit {}); see `{}`",
                                verdict.describe(),
                                verdict.exit_code.as_deref().unwrap_or("?"),
                                files.dir.join(submit::SLURM_OUT).display()
                            ));
                        }
                    }
                }
                r
            }
        };
        // Slurm's verdict explains what the supervisor saw: its time limit arrives as a
        // SIGTERM that `qw exec` would call an interruption.
        match verdict.end() {
            SchedulerEnd::TimeLimit => {
                report.timed_out = true;
                report.interrupted_by = None;
                report.exit_code = crate::exit::EXEC_TIMED_OUT;
            }
            SchedulerEnd::Cancelled if report.interrupted_by.is_none() => {
                report.interrupted_by = forwarded.or(Some(15));
            }
            _ => {}
        }
        if forwarded.is_some() && report.interrupted_by.is_none() {
            report.interrupted_by = forwarded;
        }
        report.admission_wait_ms = pending_ms;
        report.scheduler = Some(verdict);
        Ok(report)
    }
}

/// Whether a job that ended in `state` (Slurm's name) ran its program to an end worth
/// taking over: not when it was cancelled or lost with its node.
fn left_a_result(state: &str) -> bool {
    let verdict = SchedulerVerdict {
        scheduler: "slurm".into(),
        job_id: String::new(),
        job_name: String::new(),
        state: state.to_owned(),
        reason: None,
        nodes: None,
        partition: None,
        exit_code: None,
        pending_ms: 0,
        adopted_from: None,
    };
    !matches!(verdict.end(), SchedulerEnd::Cancelled | SchedulerEnd::Lost)
}

/// `scancel` a job: with a signal, only its batch step (our `qw exec`) gets it; without,
/// the whole job is cancelled. Failures are logged: the wait loop sees the outcome.
fn scancel(id: &str, signal: Option<i32>) {
    let mut args: Vec<String> = Vec::new();
    if let Some(sig) = signal {
        args.push("--batch".into());
        args.push(format!("--signal={sig}"));
    }
    args.push(id.to_owned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Err(e) = queue::run_tool("scancel", &refs) {
        tracing::warn!("{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::new_run_dir;

    /// A link, a FIFO or a file put at the runs folder: refused with one line naming it,
    /// nothing made where a link points; a real folder (or none yet) gets a fresh run folder.
    #[test]
    fn a_run_folder_is_never_made_through_a_link_or_over_a_non_folder() {
        let dir = tempfile::tempdir().unwrap();
        let claude = dir.path().join(".claude");
        let runs = claude.join("runs");
        let victim = dir.path().join("victim");
        crate::fs::create_dir_all(&victim).unwrap();
        crate::fs::create_dir_all(&claude).unwrap();

        std::os::unix::fs::symlink(&victim, &runs).unwrap();
        let e = new_run_dir(&runs, "exec").unwrap_err().to_string();
        assert!(
            e.contains("symbolic link") && e.contains(&*runs.to_string_lossy()),
            "{e}"
        );
        assert_eq!(
            crate::fs::read_dir(&victim).unwrap().count(),
            0,
            "made through the link"
        );
        crate::fs::remove_file(&runs).unwrap();

        nix::unistd::mkfifo(&runs, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = new_run_dir(&runs, "exec").unwrap_err().to_string();
        assert!(
            e.contains("a FIFO, not a directory") && !e.contains("os error"),
            "{e}"
        );
        crate::fs::remove_file(&runs).unwrap();

        crate::fs::write(&runs, b"x").unwrap();
        let e = new_run_dir(&runs, "exec").unwrap_err().to_string();
        assert!(e.contains("a regular file, not a directory"), "{e}");
        crate::fs::remove_file(&runs).unwrap();

        let made = new_run_dir(&runs, "exec").unwrap();
        assert!(
            made.is_dir() && made.starts_with(&runs),
            "{}",
            made.display()
        );
        let again = new_run_dir(&runs, "exec").unwrap();
        assert_ne!(made, again);
    }
}
