//! Supervise one program in *this* process: the engine behind `qw exec`.
//!
//! The supervisor becomes a child subreaper (Linux), starts the program in a new process
//! group with the run cookie in its environment, and polls: the child's exit, pending
//! signals (forwarded to the tree), the timeout and the stall watchdog. It reaps with
//! `waitpid(-1)` and takes any child of this process for a member of the run (ending the
//! run waits until it has none), so the calling process must not run other children
//! concurrently.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::cookie::{COOKIE_VAR, PROJECT_VAR, RunId};
use super::tree::{Ending, Tree};
use super::{Cancel, ExecError, ExecReport, ExecSpec, Output};
use crate::exit;

/// How the direct child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChildEnd {
    Exited(i32),
    Signaled(i32),
}

/// Run `spec` to completion and report. Never leaves a process of the run alive.
pub(crate) fn supervise(spec: &ExecSpec, cancel: &Cancel) -> Result<ExecReport, ExecError> {
    let started = Instant::now();
    become_subreaper();
    let run_id = match &spec.run_id {
        Some(id) => id.clone(),
        None => RunId::new_for_self()?.to_string(),
    };
    let mut report = ExecReport::new(run_id.clone());

    let mut command = build_command(spec, &run_id)?;
    // A stop asked before the program starts (a workflow's signal forwarded as this job
    // was being spawned): it is not started at all.
    if let Some(sig) = cancel.pending() {
        report.interrupted_by = Some(sig);
        report.exit_code = exit::EXEC_SIGNAL_BASE + sig;
        report.duration_ms = millis(started.elapsed());
        return Ok(report);
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            report.exit_code = match e.kind() {
                io::ErrorKind::NotFound => exit::EXEC_NOT_FOUND,
                _ => exit::EXEC_NOT_EXECUTABLE,
            };
            let program = spec.program.to_argv()[0].to_string_lossy().into_owned();
            let why = if std::path::Path::new(&program).is_dir() {
                "it is a directory".to_owned()
            } else {
                e.to_string()
            };
            report.spawn_error = Some(format!("cannot run `{program}`: {why}"));
            report.duration_ms = millis(started.elapsed());
            return Ok(report);
        }
    };
    let child_pid = child.id() as i32;
    // `child` is never waited on through std: we reap with waitpid(-1) ourselves.
    drop(child);

    let tree = Tree::new(
        child_pid,
        run_id,
        SUBREAPER.load(std::sync::atomic::Ordering::Relaxed),
    );
    let deadline = spec.timeout.map(|t| started + t);
    let mut end: Option<ChildEnd> = None;
    let mut watchdog = spec.stall_timeout.map(|limit| Watchdog::new(limit, spec));
    let wakeup = Wakeup::new();

    // Phase 1: wait for the child, a signal, the deadline or a stall.
    let ending: Option<Ending> = loop {
        let t = Instant::now();
        reap(child_pid, &mut end);
        if t.elapsed() > Duration::from_millis(20) {
            tracing::debug!("phase 1: reap took {:?}", t.elapsed());
        }
        if end.is_some() {
            break None;
        }
        if let Some(sig) = cancel.take() {
            report.interrupted_by = Some(sig);
            let first = Signal::try_from(sig).unwrap_or(Signal::SIGTERM);
            break Some(
                tree.terminate(first, spec.grace, cancel, &mut || reap(child_pid, &mut end)),
            );
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            report.timed_out = true;
            tracing::debug!(
                "timed out {:?} after the deadline",
                deadline.map(|d| d.elapsed())
            );
            break Some(
                tree.terminate(Signal::SIGTERM, spec.grace, cancel, &mut || {
                    reap(child_pid, &mut end)
                }),
            );
        }
        if let Some(w) = watchdog.as_mut()
            && w.stalled(&tree)
        {
            report.stalled = true;
            break Some(
                tree.terminate(Signal::SIGTERM, spec.grace, cancel, &mut || {
                    reap(child_pid, &mut end)
                }),
            );
        }
        wakeup.wait(Duration::from_millis(20));
    };

    match ending {
        Some(ending) => {
            report.escalated_to_kill = ending.escalated;
            report.processes_ended = ending.count;
            report.unkillable = ending.unkillable;
        }
        None => {
            // Phase 2: the child exited by itself; end whatever it left behind.
            if has_leftovers(&tree) {
                let ending = tree.terminate(Signal::SIGTERM, spec.grace, cancel, &mut || {
                    reap(child_pid, &mut end)
                });
                report.escalated_to_kill = ending.escalated;
                report.leftovers_killed = ending.count;
                report.processes_ended = ending.count;
                report.leftovers = ending.signalled;
                report.unkillable = ending.unkillable;
            }
        }
    }
    // The child is dead by now; collect its status if the loops above did not.
    while end.is_none() {
        match waitpid(Pid::from_raw(child_pid), None) {
            Ok(status) => record(status, child_pid, &mut end),
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    reap(child_pid, &mut end);

    report.signal = match end {
        Some(ChildEnd::Signaled(s)) => Some(s),
        _ => None,
    };
    report.exit_code = if report.timed_out || report.stalled {
        exit::EXEC_TIMED_OUT
    } else {
        match end {
            Some(ChildEnd::Exited(code)) => code,
            Some(ChildEnd::Signaled(s)) => exit::EXEC_SIGNAL_BASE + s,
            None => exit::EXEC_FAILED,
        }
    };
    report.duration_ms = millis(started.elapsed());
    Ok(report)
}

fn build_command(spec: &ExecSpec, run_id: &str) -> Result<Command, ExecError> {
    let argv = spec.program.to_argv();
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    command.process_group(0);
    command.env(COOKIE_VAR, run_id);
    if let Some(project) = &spec.project {
        command.env(PROJECT_VAR, project);
    }
    for (k, v) in &spec.env {
        command.env(k, v);
    }
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    if spec.null_stdin {
        command.stdin(Stdio::null());
    }
    command.stdout(stdio_for(&spec.stdout)?);
    command.stderr(stdio_for(&spec.stderr)?);
    Ok(command)
}

fn stdio_for(out: &Output) -> Result<Stdio, ExecError> {
    Ok(match out {
        Output::Inherit => Stdio::inherit(),
        Output::Null => Stdio::null(),
        // A run's captured output, under `.claude/runs/`: never through a symlink planted
        // there, never blocking on a FIFO.
        Output::File(path) => Stdio::from(crate::fs::open_append(path)?),
    })
}

#[cfg(target_os = "linux")]
fn become_subreaper() {
    // Orphaned descendants (setsid, double fork) are re-parented to us instead of init,
    // so they stay in the tree we scan. Failure only weakens tracking to the cookie.
    match nix::sys::prctl::set_child_subreaper(true) {
        Ok(()) => SUBREAPER.store(true, std::sync::atomic::Ordering::Relaxed),
        Err(e) => tracing::warn!("cannot become a child subreaper ({e}); tracking by cookie only"),
    }
}

#[cfg(not(target_os = "linux"))]
fn become_subreaper() {}

/// Collect every exited child without blocking; remember the direct child's status.
/// Returns the pids that died of a signal.
fn reap(child: i32, end: &mut Option<ChildEnd>) -> Vec<i32> {
    let mut signalled = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return signalled,
            Ok(status) => {
                if let WaitStatus::Signaled(pid, _, _) = status {
                    signalled.push(pid.as_raw());
                }
                record(status, child, end);
            }
        }
    }
}

fn record(status: WaitStatus, child: i32, end: &mut Option<ChildEnd>) {
    match status {
        WaitStatus::Exited(pid, code) if pid.as_raw() == child => {
            *end = Some(ChildEnd::Exited(code));
        }
        WaitStatus::Signaled(pid, sig, _) if pid.as_raw() == child => {
            *end = Some(ChildEnd::Signaled(sig as i32));
        }
        _ => {}
    }
}

/// Are any processes of the run still alive after the direct child exited?
fn has_leftovers(tree: &Tree) -> bool {
    // As a subreaper we are the parent of every descendant that outlived its own parent:
    // a child of ours is a leftover, and with none the only possible members would be
    // cookie carriers outside our subtree, which cannot arise while we are alive.
    if tree.may_hide_members() {
        return true;
    }
    !SUBREAPER.load(std::sync::atomic::Ordering::Relaxed) && !tree.members().is_empty()
}

/// Whether `become_subreaper` succeeded (the fast path above relies on it).
static SUBREAPER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Wakes the supervision loop as soon as a child exits or a signal arrives, instead of
/// sleeping a fixed interval: SIGCHLD (and the forwarded signals) write to a socket pair.
struct Wakeup {
    reader: Option<std::os::unix::net::UnixStream>,
    ids: Vec<signal_hook::SigId>,
}

impl Wakeup {
    fn new() -> Wakeup {
        let Ok((reader, writer)) = std::os::unix::net::UnixStream::pair() else {
            return Wakeup {
                reader: None,
                ids: Vec::new(),
            };
        };
        let _ = reader.set_nonblocking(true);
        let _ = writer.set_nonblocking(true);
        let mut ids = Vec::new();
        for sig in [
            signal_hook::consts::SIGCHLD,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ] {
            if let Ok(w) = writer.try_clone()
                && let Ok(id) = signal_hook::low_level::pipe::register(sig, w)
            {
                ids.push(id);
            }
        }
        Wakeup {
            reader: Some(reader),
            ids,
        }
    }

    /// Block until a registered signal arrives or `max` passes.
    fn wait(&self, max: Duration) {
        use std::io::Read;
        use std::os::fd::AsFd;
        let Some(reader) = &self.reader else {
            std::thread::sleep(max);
            return;
        };
        let ms = u16::try_from(max.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [nix::poll::PollFd::new(
            reader.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
        let mut buf = [0u8; 64];
        while matches!((&*reader).read(&mut buf), Ok(n) if n > 0) {}
    }
}

impl Drop for Wakeup {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Ends a run that shows no sign of life for `limit`.
///
/// Signs of life, sampled every quarter of the limit (at most every 0.5 s): CPU time of
/// any member; bytes any member passed to `read`/`write`-like calls (`rchar`/`wchar` of
/// `/proc/PID/io`, which count output wherever it goes — a file, a pipe, a terminal, a
/// socket); a process appearing or exiting; growth of the output files. A member
/// blocked in a write (its reader is slow or paused) is waiting, not stalled.
struct Watchdog {
    limit: Duration,
    files: Vec<std::path::PathBuf>,
    last_sample: Option<Sample>,
    last_activity: Instant,
    next_check: Instant,
    /// [`ExecSpec::stall_on_events`]: the program's own CPU and I/O are not life.
    on_events: bool,
}

/// What the watchdog compares between two samples.
#[derive(Debug, PartialEq, Eq)]
struct Sample {
    /// Bytes in the output files.
    bytes: u64,
    /// Per member.
    members: Vec<MemberSample>,
}

/// One member in a [`Sample`].
#[derive(Debug, PartialEq, Eq)]
struct MemberSample {
    pid: i32,
    start_time: u64,
    cpu_ticks: u64,
    /// `(rchar, wchar)`, if readable.
    io: Option<(u64, u64)>,
}

impl Watchdog {
    fn new(limit: Duration, spec: &ExecSpec) -> Watchdog {
        let files = [&spec.stdout, &spec.stderr]
            .into_iter()
            .filter_map(|o| match o {
                Output::File(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        Watchdog {
            limit,
            files,
            last_sample: None,
            last_activity: Instant::now(),
            on_events: spec.stall_on_events,
            // The first sample waits a little: short runs never pay for a /proc scan.
            next_check: Instant::now() + Self::period(limit),
        }
    }

    fn period(limit: Duration) -> Duration {
        (limit / 4).min(Duration::from_millis(500))
    }

    fn stalled(&mut self, tree: &Tree) -> bool {
        let now = Instant::now();
        if now < self.next_check {
            return false;
        }
        self.next_check = now + Self::period(self.limit);
        let bytes: u64 = self
            .files
            .iter()
            .filter_map(|p| p.metadata().ok())
            .map(|m| m.len())
            .sum();
        let members = tree.members();
        let writing = members.iter().any(|m| blocked_writing(m.pid));
        let sample = Sample {
            bytes,
            members: members
                .iter()
                .map(|m| MemberSample {
                    pid: m.pid,
                    start_time: m.start_time,
                    cpu_ticks: m.cpu_ticks,
                    io: io_of(m.pid),
                })
                .collect(),
        };
        let alive = if self.on_events {
            sample.bytes != self.last_sample.as_ref().map_or(u64::MAX, |s| s.bytes)
                || tools_busy(self.last_sample.as_ref(), &sample, tree.child)
        } else {
            self.last_sample.as_ref() != Some(&sample)
        };
        if writing || alive {
            self.last_sample = Some(sample);
            self.last_activity = now;
            return false;
        }
        now.duration_since(self.last_activity) >= self.limit
    }
}

/// Whether a process below the program (`leader`) — a tool it runs — used CPU or did
/// I/O since `before`: one seen before whose counters moved, or a new one that used CPU
/// (a new process's I/O counters hold its start-up reads, which are no sign of work).
fn tools_busy(before: Option<&Sample>, now: &Sample, leader: i32) -> bool {
    now.members.iter().filter(|m| m.pid != leader).any(|m| {
        match before.and_then(|b| {
            b.members
                .iter()
                .find(|o| o.pid == m.pid && o.start_time == m.start_time)
        }) {
            Some(old) => old.cpu_ticks != m.cpu_ticks || old.io != m.io,
            None => m.cpu_ticks > 0,
        }
    })
}

#[cfg(target_os = "linux")]
fn blocked_writing(pid: i32) -> bool {
    super::procs::blocked_writing(pid)
}

#[cfg(not(target_os = "linux"))]
fn blocked_writing(_pid: i32) -> bool {
    false
}

#[cfg(target_os = "linux")]
fn io_of(pid: i32) -> Option<(u64, u64)> {
    super::procs::read_io(pid)
}

#[cfg(not(target_os = "linux"))]
fn io_of(_pid: i32) -> Option<(u64, u64)> {
    None
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
