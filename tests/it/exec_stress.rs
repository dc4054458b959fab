//! `qw exec` against process trees that keep moving (CONTRACT §2): each generation starts
//! the next one and exits, `setsid()`s, double-forks, ignores SIGTERM, drops the cookie,
//! or multiplies. Run 20 times under a timeout and 20 times under a normal exit of the
//! direct child, interrupted with Ctrl-C, and left behind by a SIGKILLed `qw` for the
//! sweep; after every run no process of it may be alive, and `qw` must have returned
//! (bounded by a generous harness timeout, never a timed assertion). How long `qw` took
//! is printed (`--no-capture` shows it), not asserted.
//!
//! This test process makes itself a child subreaper, so that whatever escapes a run comes
//! back to it instead of to init (which may never reap it), and its guard hunts the
//! escapees by marker — repeatedly, since a single pass cannot catch a hopper. And every
//! hopper ends by itself once the test process is gone: a test the harness kills on its
//! timeout cannot leave a fork loop running.

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::*;

/// `hop.sh MODE [DEPTH]`: a tree that never holds still. Each generation first checks
/// that the test which started it is still alive — same pid, same start time
/// (`QW_TEST_PID`, `QW_TEST_START`) — and exits if not; then, if `QW_TEST_HOPS` names a
/// file, adds a byte to it (a scan of `/proc` cannot be trusted to see a hopper; the
/// file shows it runs).
const HOPPER: &str = r#"#!/bin/sh
guard() {
  { read -r st < "/proc/$QW_TEST_PID/stat"; } 2>/dev/null || exit 0
  st=${st##*) }
  set -- $st
  [ "$1" != Z ] && [ "${20}" = "$QW_TEST_START" ] || exit 0
}
guard
[ -z "$QW_TEST_HOPS" ] || printf . >> "$QW_TEST_HOPS"
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

/// Put in `cmd`'s environment the marker and what the hopper's guard checks: this test
/// process's pid and start time.
fn guarded(cmd: &mut Command, marker: &str) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    cmd.env("QW_TEST_MARKER", marker)
        .env("QW_TEST_PID", std::process::id().to_string())
        .env("QW_TEST_START", fields[19]);
}

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

/// Whether a process this test started (or adopted: it is a subreaper) is still alive,
/// after reaping the dead. Exact where it counts: every survivor of a run comes back to
/// this process. `None` outside nextest, where other tests share the process.
fn children_alive() -> Option<bool> {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    std::env::var_os("NEXTEST_RUN_ID")?;
    reap_all();
    Some(!matches!(
        waitid(
            Id::All,
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT
        ),
        Err(nix::errno::Errno::ECHILD)
    ))
}

fn reap_all() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    while let Ok(status) = waitpid(nix::unistd::Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Wait for `child` (at most [`HARNESS_LIMIT`], then kill it and say so).
fn wait_bounded(
    child: &mut std::process::Child,
    what: &str,
) -> Result<std::process::ExitStatus, String> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status);
        }
        if started.elapsed() > HARNESS_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what}: qw did not return"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The argv after `qw exec [OPTIONS]`: a direct child that starts the hopper and either
/// sleeps or exits.
fn program<'a>(hopper: &'a str, mode: &'a str, sleep: bool) -> [&'a str; 6] {
    let script = if sleep {
        r#""$0" "$1" & exec sleep 60"#
    } else {
        r#""$0" "$1" & exit 0"#
    };
    ["--", "sh", "-c", script, hopper, mode]
}

/// One run: how long `qw exec` took, or what went wrong.
fn run_one(
    p: &TestProject,
    hopper: &str,
    mode: &str,
    end: End,
    marker: &str,
) -> Result<Duration, String> {
    let mut args = vec!["exec", "--json", "--grace", "0.3"];
    if end == End::Timeout {
        args.extend(["--timeout", "0.5"]);
    }
    args.extend(program(hopper, mode, end == End::Timeout));
    let mut cmd = p.qw(&args);
    guarded(&mut cmd, marker);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let status = wait_bounded(&mut child, &format!("{mode} {end:?}"))?;
    let took = started.elapsed();
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
    Ok(took)
}

/// `label: n runs, median … ms, max … ms` of `times` (milliseconds).
fn figures(label: &str, times: &mut [u128]) -> String {
    times.sort_unstable();
    let median = times.get(times.len() / 2).copied().unwrap_or(0);
    let max = times.last().copied().unwrap_or(0);
    format!(
        "{label}: {} runs, median {median} ms, max {max} ms",
        times.len()
    )
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
    let times = Mutex::new((Vec::new(), Vec::new()));
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                loop {
                    let Some((n, mode, end)) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    match run_one(&p, &hopper, mode, end, &markers[n]) {
                        Ok(took) => {
                            let mut t = times.lock().unwrap();
                            match end {
                                // Beyond the timeout.
                                End::Timeout => t.0.push(took.as_millis().saturating_sub(500)),
                                End::Exit => t.1.push(took.as_millis()),
                            }
                        }
                        Err(e) => failures.lock().unwrap().push(e),
                    }
                }
            });
        }
    });
    // Every run has returned: whatever survived one would be this process's child.
    let stray = children_alive();
    let (mut timeouts, mut exits) = times.into_inner().unwrap();
    eprintln!(
        "hopping trees: {}; {}",
        figures(
            "timeout 0.5 s (grace 0.3 s), qw returned after the timeout by",
            &mut timeouts
        ),
        figures("normal exit, qw returned after", &mut exits)
    );
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of 40 runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_ne!(stray, Some(true), "a process of some run is still alive");
}

/// Start `qw exec [extra] -- …` on a hopping tree in `p`, whose direct child sleeps, and
/// wait until the hopper runs (panics if it never does).
fn start_hopping(
    p: &TestProject,
    hopper: &str,
    mode: &str,
    marker: &str,
    extra: &[&str],
) -> std::process::Child {
    let mut args = vec!["exec"];
    args.extend_from_slice(extra);
    args.extend(program(hopper, mode, true));
    let mut cmd = p.qw(&args);
    guarded(&mut cmd, marker);
    let hops = p.path().join(format!("hops-{marker}"));
    cmd.env("QW_TEST_HOPS", &hops)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().unwrap();
    // Ten generations (or nodes of the bomb) have run.
    assert!(
        wait_until(Duration::from_secs(60), || hops_in(&hops) >= 10),
        "{mode}: the hopper never started"
    );
    child
}

/// How many generations of a hopper have run, by its `QW_TEST_HOPS` file.
fn hops_in(file: &std::path::Path) -> u64 {
    std::fs::metadata(file).map_or(0, |m| m.len())
}

/// Shapes a sweep can find after the supervisor is gone: every generation keeps the
/// cookie. (A hopper that drops the cookie and has left the dead supervisor's subtree is
/// the documented limit of the mechanism: nothing names it as part of the run.)
const SWEEPABLE: &[&str] = &["chain", "setsid", "double", "noterm", "bomb"];

#[test]
fn sweep_ends_hopping_trees_a_sigkilled_qw_left_behind() {
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let markers: Vec<String> = (0..2 * SWEEPABLE.len()).map(|_| marker()).collect();
    let _hunt = Hunt(markers.clone());
    let mut times = Vec::new();
    let mut failures = Vec::new();
    for (i, mode) in SWEEPABLE.iter().cycle().take(markers.len()).enumerate() {
        let marker = &markers[i];
        // A project of its own: the sweep is scoped to it.
        let p = TestProject::new();
        let hopper = p.script("hop.sh", HOPPER);
        let mut qw = start_hopping(&p, hopper.to_str().unwrap(), mode, marker, &["--no-record"]);
        sigkill(&mut qw);
        // The owner is gone; its tree lives on (the sleeping child at least).
        assert!(
            !pids_with_env("QW_TEST_MARKER", marker).is_empty(),
            "{mode}: nothing was left to sweep"
        );
        let started = Instant::now();
        let mut sweep = p.qw(&["sweep", "--project-only", "--grace", "0.3"]);
        let mut sweep = sweep.stdout(Stdio::null()).spawn().unwrap();
        let status = match wait_bounded(&mut sweep, &format!("sweep {mode}")) {
            Ok(s) => s,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        times.push(started.elapsed().as_millis());
        let survivors = pids_with_env("QW_TEST_MARKER", marker);
        let stray = children_alive();
        if !survivors.is_empty() || stray == Some(true) || status.code() != Some(0) {
            failures.push(format!(
                "{mode}: sweep exit {status}, survivors {survivors:?} (some alive: {stray:?})"
            ));
        }
        reap_all();
    }
    eprintln!(
        "{}",
        figures("sweep of hopping orphans, grace 0.3 s", &mut times)
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ctrl_c_during_a_hopping_run_ends_the_whole_tree() {
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let p = TestProject::bare();
    let hopper = p.script("hop.sh", HOPPER);
    let hopper = hopper.to_str().unwrap();
    let markers: Vec<String> = (0..2 * MODES.len()).map(|_| marker()).collect();
    let _hunt = Hunt(markers.clone());
    let mut times = Vec::new();
    let mut failures = Vec::new();
    for (i, mode) in MODES.iter().cycle().take(markers.len()).enumerate() {
        let marker = &markers[i];
        let mut qw = start_hopping(&p, hopper, mode, marker, &["--grace", "0.3"]);
        let started = Instant::now();
        unsafe_kill(qw.id() as i32, 2);
        let status = match wait_bounded(&mut qw, &format!("Ctrl-C {mode}")) {
            Ok(s) => s,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        times.push(started.elapsed().as_millis());
        // Checked at once: nothing of the run may outlive qw.
        let survivors = pids_with_env("QW_TEST_MARKER", marker);
        let stray = children_alive();
        // The sleeping child dies of the forwarded SIGINT, or of SIGKILL after the grace.
        if !survivors.is_empty() || stray == Some(true) || !matches!(status.code(), Some(130 | 137))
        {
            failures.push(format!(
                "{mode}: exit {status}, survivors {survivors:?} (some alive: {stray:?})"
            ));
        }
        reap_all();
    }
    eprintln!(
        "{}",
        figures("Ctrl-C to a hopping run, grace 0.3 s", &mut times)
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_hopper_stops_by_itself_once_its_test_is_gone() {
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let p = TestProject::bare();
    let hopper = p.script("hop.sh", HOPPER);
    let marker = marker();
    let _hunt = Hunt(vec![marker.clone()]);
    // A stand-in for the test process: the hopper's guard watches it instead.
    let mut stand_in = Command::new("sleep").arg("600").spawn().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", stand_in.id())).unwrap();
    let start = stat
        .rsplit_once(") ")
        .unwrap()
        .1
        .split(' ')
        .nth(19)
        .unwrap()
        .to_owned();
    let hops = p.path().join("hops");
    let mut cmd = Command::new(&hopper);
    cmd.arg("setsid")
        .env("QW_TEST_HOPS", &hops)
        .env("QW_TEST_MARKER", &marker)
        .env("QW_TEST_PID", stand_in.id().to_string())
        .env("QW_TEST_START", start)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut first = cmd.spawn().unwrap();
    let _ = first.wait();
    assert!(
        wait_until(Duration::from_secs(60), || hops_in(&hops) >= 10),
        "the hopper did not run while its test was alive"
    );
    unsafe_kill(stand_in.id() as i32, 9);
    stand_in.wait().unwrap();
    // Gone: this process (a subreaper, the hoppers come back to it) has no child left,
    // or — outside nextest — the hop count stood still for a second. Bounded only so a
    // broken guard fails instead of hanging; not a timed assertion.
    let gone = || {
        children_alive().map_or_else(
            || {
                let before = hops_in(&hops);
                std::thread::sleep(Duration::from_secs(1));
                hops_in(&hops) == before
            },
            |alive| !alive,
        )
    };
    assert!(
        wait_until(Duration::from_secs(30), gone),
        "the hopper outlived its test: {:?}",
        pids_with_env("QW_TEST_MARKER", &marker)
    );
}

/// `zl GUARD MODE`: a process whose main thread exits (`pthread_exit`) while four other
/// threads run, so `/proc` shows it as a zombie (`Z`) with live threads and an empty
/// `/proc/PID/environ`. It ignores SIGTERM (and, past its first fork, SIGINT), forks, `setsid()`s and forks again; with
/// MODE `wait` the first process stays (ignoring SIGTERM) until the end, so `--timeout`
/// ends the run; otherwise it exits at once. Every thread and the waiting process end by
/// themselves once the file GUARD is gone or after 60 s, so nothing outlives a failed test.
const ZOMBIE_LEADER_C: &str = r#"
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static const char *guard;
static time_t until;
static void idle(void) {
  while (access(guard, F_OK) == 0 && time(NULL) < until) usleep(50000);
}
static void *spin(void *arg) { (void)arg; idle(); return NULL; }
int main(int argc, char **argv) {
  if (argc < 3) return 2;
  guard = argv[1];
  until = time(NULL) + 60;
  signal(SIGTERM, SIG_IGN);
  if (fork()) {
    if (strcmp(argv[2], "wait") == 0) idle();
    exit(0);
  }
  setsid();
  signal(SIGINT, SIG_IGN);
  if (fork()) exit(0);
  pthread_t t;
  for (int i = 0; i < 4; i++) pthread_create(&t, NULL, spin, NULL);
  pthread_exit(NULL);
}
"#;

/// Build the zombie-leader program into `dir`; `None` (with the reason printed) where no
/// C compiler is installed.
fn build_zombie_leader(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let src = dir.join("zl.c");
    let bin = dir.join("zl");
    std::fs::write(&src, ZOMBIE_LEADER_C).unwrap();
    match Command::new("cc")
        .args(["-pthread", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
    {
        Ok(s) if s.success() => Some(bin),
        Ok(s) => panic!("cc failed to build the zombie-leader program: {s}"),
        Err(e) => {
            println!("skipped: no C compiler (cc: {e})");
            None
        }
    }
}

/// Kills every process marked with `marker` on drop (by pid), and removes the guard
/// file so the threads end by themselves too.
struct ZlGuard {
    marker: String,
    guard: std::path::PathBuf,
}

impl Drop for ZlGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.guard);
        for pid in pids_with_env("QW_TEST_MARKER", &self.marker) {
            unsafe_kill(pid, 9);
        }
    }
}

/// `qw exec` of the zombie-leader program in a fresh project, tagged with a marker.
fn zombie_leader_run(
    p: &TestProject,
    bin: &std::path::Path,
    mode: &str,
    extra: &[&str],
) -> (Command, ZlGuard) {
    let m = marker();
    let guard = p.path().join(format!("guard-{m}"));
    std::fs::write(&guard, "").unwrap();
    let mut args = vec!["exec", "--json", "--no-record"];
    args.extend_from_slice(extra);
    args.push("--");
    let mut c = p.qw(&args);
    c.arg(bin).arg(&guard).arg(mode);
    c.env("QW_TEST_MARKER", &m).stdin(Stdio::null());
    (c, ZlGuard { marker: m, guard })
}

/// Wait until a zombie leader with live threads carries the marker.
fn wait_for_zombie_leader(marker: &str) -> i32 {
    let mut found = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            found = pids_with_env("QW_TEST_MARKER", marker)
                .into_iter()
                .find(|&pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
                });
            found.is_some()
        }),
        "no zombie leader with live threads appeared"
    );
    found.unwrap()
}

/// Run `c` to its end, bounded by [`HARNESS_LIMIT`] (killed by pid past it: a hang).
fn output_bounded(mut c: Command) -> std::process::Output {
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(HARNESS_LIMIT) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            unsafe_kill(pid, 9);
            panic!("qw exec hung on a zombie leader with live threads");
        }
    }
}

#[test]
fn zombie_leader_with_live_threads_is_ended_under_timeout() {
    let p = TestProject::bare();
    let Some(bin) = build_zombie_leader(p.path()) else {
        return;
    };
    let (c, guard) = zombie_leader_run(&p, &bin, "wait", &["--timeout", "1", "--grace", "0.5"]);
    let out = output_bounded(c);
    let report = last_json(&out);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert_eq!(report["timed_out"], true);
    // The direct child ignores SIGTERM: SIGKILL ended it, and the report says so.
    assert_eq!(report["escalated_to_kill"], true, "{report}");
    assert!(!stderr(&out).contains("with SIGTERM\n"), "{}", stderr(&out));
    assert!(
        report["unkillable"].as_array().is_none_or(Vec::is_empty),
        "{report}"
    );
    let left = pids_with_env("QW_TEST_MARKER", &guard.marker);
    assert!(left.is_empty(), "survivors: {left:?}");
}

#[test]
fn zombie_leader_with_live_threads_is_ended_after_a_normal_exit() {
    let p = TestProject::bare();
    let Some(bin) = build_zombie_leader(p.path()) else {
        return;
    };
    let (c, guard) = zombie_leader_run(&p, &bin, "exit", &["--grace", "0.5"]);
    let out = output_bounded(c);
    let report = last_json(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // It ignores SIGTERM: it took SIGKILL, and it is named among the leftovers.
    assert_eq!(report["escalated_to_kill"], true, "{report}");
    let listed = report["leftovers"].as_array().unwrap();
    let count = report["leftovers_killed"].as_u64().unwrap();
    assert!(count >= 1, "{report}");
    assert_eq!(listed.len() as u64, count.min(64), "{report}");
    assert!(
        listed
            .iter()
            .any(|l| l["command"].as_str().unwrap_or("").contains("zl")),
        "{report}"
    );
    assert!(
        report["unkillable"].as_array().is_none_or(Vec::is_empty),
        "{report}"
    );
    assert!(stderr(&out).contains("left"), "{}", stderr(&out));
    let left = pids_with_env("QW_TEST_MARKER", &guard.marker);
    assert!(left.is_empty(), "survivors: {left:?}");
}

#[test]
fn ctrl_c_ends_a_zombie_leader_with_live_threads() {
    let p = TestProject::bare();
    let Some(bin) = build_zombie_leader(p.path()) else {
        return;
    };
    let (mut c, guard) = zombie_leader_run(&p, &bin, "wait", &["--grace", "0.5"]);
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let qw = child.id() as i32;
    wait_for_zombie_leader(&guard.marker);
    unsafe_kill(qw, 2);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(HARNESS_LIMIT) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            unsafe_kill(qw, 9);
            panic!("qw exec hung after Ctrl-C on a zombie leader with live threads");
        }
    };
    let report = last_json(&out);
    // The forwarded SIGINT ends the direct child (130, or 137 if SIGKILL came first);
    // the zombie leader ignores SIGINT, so SIGKILL ended it, and the report says so.
    let code = out.status.code().unwrap();
    assert!(code == 130 || code == 137, "exit {code}: {}", stderr(&out));
    assert_eq!(report["escalated_to_kill"], true, "{report}");
    let left = pids_with_env("QW_TEST_MARKER", &guard.marker);
    assert!(left.is_empty(), "survivors: {left:?}");
}

#[test]
fn sweep_ends_a_zombie_leader_a_sigkilled_qw_left_behind() {
    let p = TestProject::new();
    let Some(bin) = build_zombie_leader(p.path()) else {
        return;
    };
    let (mut c, guard) = zombie_leader_run(&p, &bin, "wait", &[]);
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let leader = wait_for_zombie_leader(&guard.marker);
    sigkill(&mut child);
    assert!(pids_with_env("QW_TEST_MARKER", &guard.marker).contains(&leader));
    let mut sweep = p.qw(&["exec", "--no-record", "--", "true"]);
    sweep.stdin(Stdio::null());
    let out = output_bounded(sweep);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The sweep ran before `true`: the orphans, the zombie leader's threads among them,
    // are gone.
    let left = pids_with_env("QW_TEST_MARKER", &guard.marker);
    assert!(left.is_empty(), "survivors: {left:?}");
}
