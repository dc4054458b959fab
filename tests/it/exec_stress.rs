//! `qw exec` against process trees that keep moving (CONTRACT §2): each generation starts
//! the next one and exits, `setsid()`s, double-forks, ignores SIGTERM, drops the cookie,
//! or multiplies. Run 20 times under a timeout and 20 times under a normal exit of the
//! direct child; after every run no process of it may be alive, and `qw exec` must
//! have returned (bounded by a generous harness timeout, never a timed assertion).
//!
//! This test process makes itself a child subreaper, so that whatever escapes a run comes
//! back to it instead of to init (which may never reap it), and its guard hunts the
//! escapees by marker — repeatedly, since a single pass cannot catch a hopper.

use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::*;

/// `hop.sh MODE [DEPTH]`: a tree that never holds still.
const HOPPER: &str = r#"#!/bin/sh
mode=$1
depth=${2:-0}
case $mode in
  chain) "$0" chain & ;;
  setsid) setsid "$0" setsid & ;;
  double) ( "$0" double & ) ;;
  noterm) trap '' TERM; setsid "$0" noterm & ;;
  nocookie) env -u QW_RUN_ID setsid "$0" nocookie & ;;
  bomb)
    if [ "$depth" -lt 4 ]; then
      setsid "$0" bomb $((depth + 1)) &
      setsid "$0" bomb $((depth + 1)) &
    else
      trap '' TERM
      exec sleep 60
    fi ;;
esac
exit 0
"#;

/// The hopping patterns: fork+exit chains, `setsid` on each hop, double-fork hops, a
/// hopper that ignores SIGTERM, one that drops the run cookie (found only as a
/// descendant), and a fork bomb bounded by a depth counter whose leaves ignore SIGTERM.
const MODES: &[&str] = &["chain", "setsid", "double", "noterm", "nocookie", "bomb"];

/// How long one run may take before the harness calls it a hang.
const HARNESS_LIMIT: Duration = Duration::from_secs(120);

/// Runs at once (the machine has two cores; hoppers keep them busy).
const WORKERS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    /// The direct child sleeps; `--timeout` ends the run.
    Timeout,
    /// The direct child starts the hopper and exits at once.
    Exit,
}

/// Ends, on drop, every process carrying a marker — stopping them first so none can fork
/// between the scan and the kill, and looking again until several scans find nothing —
/// and reaps what came back to this (subreaper) process.
struct Hunt(Vec<String>);

impl Drop for Hunt {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut quiet = 0;
        while quiet < 5 && Instant::now() < deadline {
            let pids: Vec<i32> = self
                .0
                .iter()
                .flat_map(|m| pids_with_env("QW_TEST_MARKER", m))
                .collect();
            for &pid in &pids {
                unsafe_kill(pid, 19); // SIGSTOP
            }
            for &pid in &pids {
                unsafe_kill(pid, 9);
            }
            reap_all();
            quiet = if pids.is_empty() { quiet + 1 } else { 0 };
            std::thread::sleep(Duration::from_millis(5));
        }
        reap_all();
    }
}

fn reap_all() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    while let Ok(status) = waitpid(nix::unistd::Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// One run: its outcome, or what went wrong.
fn run_one(
    p: &TestProject,
    hopper: &str,
    mode: &str,
    end: End,
    marker: &str,
) -> Result<(), String> {
    let script = match end {
        End::Timeout => r#""$0" "$1" & exec sleep 60"#,
        End::Exit => r#""$0" "$1" & exit 0"#,
    };
    let mut args = vec!["exec", "--json", "--grace", "0.3"];
    if end == End::Timeout {
        args.extend(["--timeout", "0.5"]);
    }
    args.extend(["--", "sh", "-c", script, hopper, mode]);
    let mut cmd = p.qw(&args);
    cmd.env("QW_TEST_MARKER", marker)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > HARNESS_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{mode} {end:?}: qw exec did not return"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Checked at once: `qw exec` promises nothing of the run is alive when it returns.
    let survivors = pids_with_env("QW_TEST_MARKER", marker);
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        use std::io::Read;
        let _ = stdout.read_to_string(&mut out);
    }
    let report: serde_json::Value = out
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| format!("{mode} {end:?}: no JSON report ({status}): {out}"))?;
    let run_id = report["run_id"].as_str().unwrap_or_default();
    let by_cookie = cookie_pids(run_id);
    if !survivors.is_empty() || !by_cookie.is_empty() {
        return Err(format!(
            "{mode} {end:?}: survivors {survivors:?} (by cookie {by_cookie:?}); report {report}"
        ));
    }
    let expected = match end {
        End::Timeout => 124,
        End::Exit => 0,
    };
    if status.code() != Some(expected) {
        return Err(format!("{mode} {end:?}: exit {status}, report {report}"));
    }
    if end == End::Exit && report["leftovers_killed"].as_u64().unwrap_or(0) == 0 {
        return Err(format!(
            "{mode} {end:?}: the hopper was not counted: {report}"
        ));
    }
    Ok(())
}

#[test]
fn hopping_trees_never_outlive_qw_exec() {
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let p = TestProject::bare();
    let hopper = p.script("hop.sh", HOPPER);
    let hopper = hopper.to_str().unwrap().to_owned();
    let jobs: Vec<(usize, &str, End)> = (0..20)
        .flat_map(|i| {
            let mode = MODES[i % MODES.len()];
            [(2 * i, mode, End::Timeout), (2 * i + 1, mode, End::Exit)]
        })
        .collect();
    let markers: Vec<String> = jobs.iter().map(|_| marker()).collect();
    let _hunt = Hunt(markers.clone());
    let queue = Mutex::new(jobs);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                loop {
                    let Some((n, mode, end)) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    if let Err(e) = run_one(&p, &hopper, mode, end, &markers[n]) {
                        failures.lock().unwrap().push(e);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of 40 runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
