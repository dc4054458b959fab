//! A bound on every git qw runs (rev9 N2, N4).
//!
//! Owns: running one git child to its end, or ending it when it runs far longer than any
//! git of qw's does — `QW_GIT_TIMEOUT_S` (600 s), or 30 s after a signal asked qw to stop
//! (a save after Ctrl-C still gets its time; a git that never returns does not keep qw
//! forever). git blocks for good in `open()` on a FIFO where it reads a file (a task
//! worktree's `<git dir>/HEAD`, the shared `packed-refs`, a `.gitignore` in the spec
//! folder an agent reached through qw's link): qw waited with it, holding the repository
//! lock, and only a SIGKILL ended it. Ended: SIGTERM (git removes its lock files), then
//! SIGKILL after 2 s; the output says why, so the caller's error names it. (A git blocked
//! in `open()` has no children; one whose filter's children hold its pipes would still
//! wait for them.)
//! Must not: end a git that finished (its pid is not signalled once it was reaped).

use std::process::{Command, Output};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The environment variable bounding one git of qw's, in seconds.
pub(crate) const GIT_TIMEOUT_ENV: &str = "QW_GIT_TIMEOUT_S";
/// How long a git may still run once a signal asked qw to stop.
const AFTER_SIGNAL: Duration = Duration::from_secs(30);

fn limit() -> Duration {
    let secs = std::env::var(GIT_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(600);
    Duration::from_secs(secs)
}

/// Run `cmd` (its stdout and stderr captured) to its end, within the bound.
pub(crate) fn output(cmd: Command) -> std::io::Result<Output> {
    output_within(cmd, limit())
}

fn output_within(mut cmd: Command, limit: Duration) -> std::io::Result<Output> {
    use std::process::Stdio;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // In qw's process group, as before: a Ctrl-C at the terminal reaches git too.
    let child = cmd.spawn()?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    // `true` once the child was waited for: nothing is signalled after that.
    let done = Arc::new((Mutex::new(false), Condvar::new()));
    let ended: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let watch = {
        let done = Arc::clone(&done);
        let ended = Arc::clone(&ended);
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut signalled: Option<Instant> = None;
            let mut termed: Option<Instant> = None;
            let (lock, cv) = &*done;
            let mut finished = lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            loop {
                if *finished {
                    return;
                }
                let (g, _) = cv
                    .wait_timeout(finished, Duration::from_millis(250))
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                finished = g;
                if *finished {
                    return;
                }
                if signalled.is_none() && crate::cancel::Cancel::process().pending().is_some() {
                    signalled = Some(Instant::now());
                }
                let why = if start.elapsed() > limit {
                    Some(format!(
                        "qw ended this git after {} s (`{GIT_TIMEOUT_ENV}`): no git of qw's runs that long unless it is blocked (a FIFO or device where git reads a file?)",
                        limit.as_secs()
                    ))
                } else if signalled.is_some_and(|t| t.elapsed() > AFTER_SIGNAL) {
                    Some(format!(
                        "qw ended this git {} s after it was asked to stop",
                        AFTER_SIGNAL.as_secs()
                    ))
                } else {
                    None
                };
                match (termed, why) {
                    (None, Some(why)) => {
                        *ended
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                        termed = Some(Instant::now());
                    }
                    (Some(t), _) if t.elapsed() > Duration::from_secs(2) => {
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    }
                    _ => {}
                }
            }
        })
    };
    let out = child.wait_with_output();
    {
        let (lock, cv) = &*done;
        *lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        cv.notify_all();
    }
    let _ = watch.join();
    let mut out = out?;
    if let Some(why) = ended
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        out.stderr
            .extend_from_slice(format!("\n{why}\n").as_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_past_its_bound_is_ended_and_says_why() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let start = Instant::now();
        let out = output_within(cmd, Duration::from_secs(1)).unwrap();
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("qw ended this git"));
    }

    #[test]
    fn a_child_within_its_bound_is_untouched() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2"]);
        let out = output_within(cmd, Duration::from_secs(60)).unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }
}
