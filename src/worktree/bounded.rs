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
//! A git still running after `unblock::GRACE` is freed of a named pipe made while it ran
//! (rev9 N10, see [`super::unblock`]), said in its output.
//! Must not: end a git that finished (its pid is not signalled once it was reaped).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::unblock::GRACE;
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

/// What [`output`] ran.
pub(crate) struct Ran {
    /// The output, the reason qw ended it or what it freed it of at the end of stderr.
    pub(crate) out: Output,
    /// The named pipes taken away while it ran (see [`super::unblock::release`]).
    pub(crate) released: Vec<PathBuf>,
    /// It was ended while it waited to open a named pipe.
    pub(crate) on_fifo: bool,
}

/// Run `cmd` (its stdout and stderr captured) to its end, within the bound; `input`,
/// when given, is its stdin (else the command's own stdin setting stands); `work`, the
/// task worktree it works in, looked at with the watched places when it is slow.
pub(crate) fn output(
    cmd: Command,
    input: Option<Vec<u8>>,
    work: Option<&Path>,
) -> std::io::Result<Ran> {
    let work = work.map(Path::to_path_buf);
    let release = move || super::unblock::release(work.as_deref());
    output_within(cmd, input, limit(), Box::new(release))
}

fn output_within(
    mut cmd: Command,
    input: Option<Vec<u8>>,
    limit: Duration,
    release: Box<dyn FnMut() -> Vec<PathBuf> + Send>,
) -> std::io::Result<Ran> {
    use std::process::Stdio;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    // In qw's process group, as before: a Ctrl-C at the terminal reaches git too.
    let mut child = cmd.spawn()?;
    // Written from another thread: git answers while it reads, so a big input against
    // a full stdout pipe would wait for good. A git that never reads and is ended by
    // the bound closes its end: the write fails and the thread ends.
    let writer = input.map(|bytes| {
        let stdin = child.stdin.take();
        std::thread::spawn(move || {
            use std::io::Write;
            if let Some(mut s) = stdin {
                let _ = s.write_all(&bytes);
            }
        })
    });
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    // `true` once the child was waited for: nothing is signalled after that.
    let done = Arc::new((Mutex::new(false), Condvar::new()));
    let ended: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let fifo = Arc::new(Mutex::new(false));
    let pid_raw = child.id();
    let watch = {
        let done = Arc::clone(&done);
        let ended = Arc::clone(&ended);
        let fifo_seen = Arc::clone(&fifo);
        let mut release = release;
        std::thread::spawn(move || {
            let mut released: Vec<PathBuf> = Vec::new();
            let start = Instant::now();
            let mut probe = GRACE;
            let mut seen: Option<String> = None;
            let mut signalled: Option<Instant> = None;
            let mut termed: Option<Instant> = None;
            let (lock, cv) = &*done;
            let mut finished = lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            loop {
                if *finished {
                    return released;
                }
                let (g, _) = cv
                    .wait_timeout(finished, Duration::from_millis(250))
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                finished = g;
                if *finished {
                    return released;
                }
                // Slow: a FIFO made while it ran may hold it in `open()`: released where
                // it is found; one no longer there (removed while git waited on it)
                // cannot be, and git is ended, saying so (rev9 N10).
                let mut on_fifo = None;
                if start.elapsed() > probe && termed.is_none() {
                    probe = start.elapsed() + GRACE;
                    released.extend(release());
                    on_fifo = super::unblock::waiting_on_fifo(pid_raw, &mut seen);
                }
                if signalled.is_none() && crate::cancel::Cancel::process().pending().is_some() {
                    signalled = Some(Instant::now());
                }
                let why = if let Some(what) = on_fifo {
                    *fifo_seen
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
                    Some(format!(
                        "qw ended this git: it waited to open {what}, a named pipe made while it ran (by an agent?), where git would have waited for good"
                    ))
                } else if start.elapsed() > limit {
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
    let mut released = watch.join().unwrap_or_default();
    released.sort();
    released.dedup();
    if let Some(w) = writer {
        let _ = w.join();
    }
    let mut out = out?;
    if !released.is_empty() {
        out.stderr.extend_from_slice(
            format!("\n{}\n", super::unblock::released_line(&released)).as_bytes(),
        );
    }
    if let Some(why) = ended
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        out.stderr
            .extend_from_slice(format!("\n{why}\n").as_bytes());
    }
    let on_fifo = *fifo
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok(Ran {
        out,
        released,
        on_fifo,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Box<dyn FnMut() -> Vec<PathBuf> + Send> {
        Box::new(Vec::new)
    }

    #[test]
    fn a_slow_child_is_freed_of_what_release_finds_and_says_so() {
        // Blocks in `open()` of a FIFO, as git on an agent's `<git dir>/HEAD`.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("HEAD");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let mut cmd = Command::new("cat");
        cmd.arg(&fifo);
        let (dirs, work) = (
            std::collections::BTreeSet::from([dir.path().to_path_buf()]),
            std::collections::BTreeSet::new(),
        );
        let release = Box::new(move || super::super::unblock::release_in(&dirs, &work));
        let out = output_within(cmd, None, Duration::from_secs(120), release).unwrap();
        assert!(out.out.status.success(), "{out:?}", out = out.out);
        assert_eq!(out.released, vec![fifo.clone()]);
        assert!(fifo.symlink_metadata().is_err());
        let stderr = String::from_utf8_lossy(&out.out.stderr);
        assert!(
            stderr.contains("HEAD") && stderr.contains("qw removed"),
            "{stderr}"
        );
        assert!(!stderr.contains("qw ended this git"), "{stderr}");
    }

    #[test]
    fn a_child_past_its_bound_is_ended_and_says_why() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let start = Instant::now();
        let out = output_within(cmd, None, Duration::from_secs(1), none())
            .unwrap()
            .out;
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("qw ended this git"));
    }

    #[test]
    fn a_child_within_its_bound_is_untouched() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2"]);
        let out = output_within(cmd, None, Duration::from_secs(60), none())
            .unwrap()
            .out;
        assert!(out.status.success());
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    /// Far more than a pipe holds (64 KiB on Linux), both ways at once.
    fn big_input() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect()
    }

    #[test]
    fn stdin_bigger_than_a_pipe_round_trips() {
        let input = big_input();
        assert!(input.len() > 1 << 20);
        let out = output_within(
            Command::new("cat"),
            Some(input.clone()),
            Duration::from_secs(60),
            none(),
        )
        .unwrap()
        .out;
        assert!(out.status.success());
        assert_eq!(out.stdout.len(), input.len());
        assert!(out.stdout == input);
    }

    #[test]
    fn a_child_that_never_reads_its_stdin_is_ended_by_the_bound() {
        // Never reads, never exits: the writer blocks on the full pipe until the bound
        // ends the child.
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let start = Instant::now();
        let out = output_within(cmd, Some(big_input()), Duration::from_secs(1), none())
            .unwrap()
            .out;
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("qw ended this git"));
    }
}
