//! Find and end processes orphaned by a `qw` that died without cleaning up (SIGKILL,
//! power loss of the terminal, OOM killer).
//!
//! A process is an orphan when its `QW_RUN_ID` cookie names an owner that is no longer
//! alive. Neither the calling process nor any of its ancestors is ever touched.

use std::path::Path;
use std::time::{Duration, Instant};

use super::Leftover;

/// What a sweep ended.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct SweepReport {
    /// Every orphan that was signalled.
    pub killed: Vec<Leftover>,
    /// The distinct run ids they belonged to.
    pub runs: Vec<String>,
    /// Some orphan needed SIGKILL.
    pub escalated_to_kill: bool,
}

/// End every orphan of this user; with `project`, only orphans started in that project.
#[cfg(target_os = "linux")]
pub(crate) fn sweep(project: Option<&Path>, grace: Duration) -> SweepReport {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    use super::cookie::RunId;
    use super::procs;

    let protected = procs::ancestors_of(std::process::id() as i32);
    let project = project.map(|p| p.to_string_lossy().into_owned());
    let orphans = || {
        procs::snapshot()
            .into_iter()
            .filter(|p| !p.is_dead() && !protected.contains(&p.pid))
            .filter(|p| match (&project, &p.project) {
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => false,
                (None, _) => true,
            })
            .filter(|p| {
                p.cookie
                    .as_deref()
                    .and_then(RunId::parse)
                    .is_some_and(|id| !id.owner_alive())
            })
            .collect::<Vec<_>>()
    };

    let mut report = SweepReport::default();
    let first = orphans();
    if first.is_empty() {
        return report;
    }
    for p in &first {
        let command = procs::command_line(p.pid, &p.comm);
        tracing::info!(
            pid = p.pid,
            command = %command,
            run_id = p.cookie.as_deref().unwrap_or(""),
            "sweep ended an orphaned process"
        );
        report.killed.push(Leftover {
            pid: p.pid,
            command,
        });
        if let Some(c) = &p.cookie
            && !report.runs.contains(c)
        {
            report.runs.push(c.clone());
        }
        let _ = kill(Pid::from_raw(p.pid), Signal::SIGTERM);
        let _ = kill(Pid::from_raw(p.pid), Signal::SIGCONT);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if orphans().is_empty() {
            return report;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..500 {
        let left = orphans();
        if left.is_empty() {
            break;
        }
        report.escalated_to_kill = true;
        for p in left {
            let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    report
}

/// Without `/proc` orphans cannot be found by cookie; nothing is done.
#[cfg(not(target_os = "linux"))]
pub fn sweep(_project: Option<&Path>, _grace: Duration) -> SweepReport {
    SweepReport::default()
}
