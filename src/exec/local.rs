//! [`LocalExecutor`]: each job is supervised by its own `qw exec` child process.
//!
//! Why a child and not a thread: the supervisor must be a child subreaper and reap with
//! `waitpid(-1)`, which only works when it owns the process. One supervisor per job also
//! keeps jobs isolated: a job that misbehaves cannot disturb another job's bookkeeping.
//! The supervisor runs in its own process group, so a Ctrl-C at the terminal reaches only
//! the caller, which forwards it through [`Cancel`].

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Cancel, ExecError, ExecReport, ExecSpec, Executor, Output};

/// Runs jobs on this machine through `qw exec` supervisor processes.
///
/// Every supervisor carries this executor's own cookie (owned by the calling process),
/// so if the caller is SIGKILLed the supervisors are orphans that the next sweep ends —
/// and each of them, on SIGTERM, ends its job's tree.
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    qw: PathBuf,
    cookie: String,
}

impl LocalExecutor {
    /// Use the given `qw` binary as the supervisor (fails only when the OS gives no
    /// random bytes for its cookie).
    pub fn new(qw: impl Into<PathBuf>) -> std::io::Result<LocalExecutor> {
        Ok(LocalExecutor {
            qw: qw.into(),
            cookie: super::RunId::new_for_self()?.to_string(),
        })
    }

    /// Use the running executable (which must be `qw`).
    pub fn current() -> std::io::Result<LocalExecutor> {
        LocalExecutor::new(std::env::current_exe()?)
    }

    fn command(&self, spec: &ExecSpec, report: &Path) -> Command {
        let mut c = Command::new(&self.qw);
        c.env(super::cookie::COOKIE_VAR, &self.cookie);
        if let Some(project) = &spec.project {
            c.arg("-C").arg(project);
            c.env(super::cookie::PROJECT_VAR, project);
        }
        c.arg("--quiet")
            .arg("exec")
            .arg("--no-record")
            .arg("--no-sweep")
            // The project's settings may choose slurm; a supervisor runs here.
            .args(["--executor", "local"]);
        c.arg("--report-file").arg(report);
        c.arg("--grace").arg(secs(spec.grace));
        if let Some(t) = spec.timeout {
            c.arg("--timeout").arg(secs(t));
        }
        if let Some(t) = spec.stall_timeout {
            c.arg("--stall-timeout").arg(secs(t));
            if spec.stall_on_events {
                c.arg("--stall-on-events");
            }
        }
        if let Some(dir) = &spec.cwd {
            c.arg("--cwd").arg(dir);
        }
        for (flag, out) in [
            ("--stdout-file", &spec.stdout),
            ("--stderr-file", &spec.stderr),
        ] {
            if let Output::File(p) = out {
                c.arg(flag).arg(p);
            }
        }
        if matches!(spec.stdout, Output::Null) {
            c.stdout(Stdio::null());
        }
        if matches!(spec.stderr, Output::Null) {
            c.stderr(Stdio::null());
        }
        if spec.null_stdin {
            c.stdin(Stdio::null());
        }
        if let Some(id) = &spec.run_id {
            c.arg("--run-id").arg(id);
        }
        for (k, v) in &spec.env {
            let mut pair = OsString::from(k);
            pair.push("=");
            pair.push(v);
            c.arg("--env").arg(pair);
        }
        c.arg("--");
        c.args(spec.program.to_argv());
        c.process_group(0);
        c
    }
}

/// Wait for `child` — started in a process group of its own, so a terminal's Ctrl-C
/// reaches only the caller — to end, forwarding the first stop request of `cancel` to it.
/// The token is observed, never consumed (many jobs may share it); the child does its
/// own escalation (grace, then SIGKILL). A waiter thread blocks in `wait()`, so the end
/// is seen at once; this thread wakes every 25 ms only to look at the token. `None` when
/// the waiter thread vanished without an answer.
pub fn wait_forwarding(
    mut child: std::process::Child,
    cancel: &Cancel,
) -> Option<std::io::Result<std::process::ExitStatus>> {
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let mut forwarded = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(25)) {
            Ok(status) => return Some(status),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
        }
        if !forwarded && let Some(sig) = cancel.pending() {
            forwarded = true;
            let sig = Signal::try_from(sig).unwrap_or(Signal::SIGTERM);
            let _ = kill(pid, sig);
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

impl Executor for LocalExecutor {
    fn run(&self, spec: &ExecSpec, cancel: &Cancel) -> Result<ExecReport, ExecError> {
        let dir = tempfile::tempdir()?;
        let report_path = spec
            .report_file
            .clone()
            .unwrap_or_else(|| dir.path().join("report.json"));
        // A report left by an earlier run in the same place is not this run's.
        if spec.report_file.is_some() {
            let _ = crate::fs::remove_file(&report_path);
        }
        let child = self.command(spec, &report_path).spawn().map_err(|e| {
            ExecError::Supervisor(format!("cannot start `{}`: {e}", self.qw.display()))
        })?;
        let status = wait_forwarding(child, cancel).ok_or_else(|| {
            ExecError::Supervisor("lost track of the supervisor process".into())
        })??;
        // The run folder is reachable by the program it ran: read only a regular file,
        // and no more than any report can be.
        let text = crate::fs::read_regular_text(&report_path, 16 << 20).map_err(|e| {
            ExecError::Supervisor(format!(
                "supervisor exited with {status} and no report: {e}"
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| {
            ExecError::Supervisor(format!("unreadable report from the supervisor: {e}"))
        })
    }
}
