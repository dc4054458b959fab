//! rev6a M3, M6, M5, M4, L2, L4, L5, L6 (fix7c).
//!
//! M3: a stop asked (a signal to qw's own pid) ends every admission wait and starts
//! nothing new: a task waiting its turn stays `pending` (`killed_by_user`, no attempt
//! counted, no agent started), whatever signal and whatever it waited for.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

/// The test-only stand-in for `/proc` read by the admission probes.
const PROC_ENV: &str = "QW_TEST_PROC_DIR";

/// A fake `/proc`: 1-minute load 1000 (above every load limit on any machine), a
/// quarter of memory in use.
fn busy_proc(p: &TestProject) -> PathBuf {
    p.write(
        "fake-proc/loadavg",
        "1000.00 900.00 800.00 1001/3000 4242\n",
    );
    p.write(
        "fake-proc/meminfo",
        "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:   12000000 kB\n",
    );
    p.path().join("fake-proc")
}

/// A flow whose documents exist (only tasks run), with `tasks_md` and `settings`.
fn flow(tasks_md: &str, settings: &str) -> Flow {
    let f = Flow::new(tasks_md);
    f.p.write(".claude/settings.local.json", settings);
    for (doc, text) in [
        ("requirements.md", "# R\n\n1. It works.\n"),
        ("design.md", "# D\n\nSimple.\n"),
        ("tasks.md", tasks_md),
    ] {
        f.p.write(&format!(".claude/specs/demo/{doc}"), text);
    }
    f
}

/// Tickets of waiters in the project's admission queue.
fn queued(p: &TestProject) -> usize {
    std::fs::read_dir(p.path().join(".qw-runtime/queue"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("q-"))
                .count()
        })
        .unwrap_or(0)
}

/// Start `workflow-auto` with `--parallel parallel` (under the fake `/proc` if given),
/// wait until one task's agent runs and `waiters` tasks wait for admission, send `sig`
/// to qw's pid alone (not its group), and check that no waiter was started.
fn stop_while_waiting(f: &Flow, fake: Option<&Path>, parallel: &str, waiters: usize, sig: i32) {
    let mut c = f.cmd(&[
        "workflow-auto",
        "demo",
        "A demo feature",
        "--agent",
        "claude",
        "--parallel",
        parallel,
        "--task-timeout",
        "120",
    ]);
    if let Some(fake) = fake {
        c.env(PROC_ENV, fake);
    }
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let ready = wait_until(Duration::from_secs(60), || {
        f.runs_of("1") + f.runs_of("2") + f.runs_of("3") == 1 && queued(&f.p) >= waiters
    });
    if !ready {
        sigkill(&mut child);
        panic!("never one task running and {waiters} waiting: {:?}", f.log());
    }
    unsafe_kill(pid, sig);
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 128 + sig, "{}", diag(&out));
    let started: Vec<_> = f
        .log()
        .into_iter()
        .filter(|(k, p, _, _)| k == "start" && p == "implementation")
        .collect();
    assert_eq!(
        started.len(),
        1,
        "a task waiting for admission was started after the stop: {started:?}\n{}",
        diag(&out)
    );
    let ran = &started[0].2;
    let err = stderr(&out);
    let tasks = f.state()["specifications"]["demo"]["tasks"].clone();
    let mut waited = 0;
    for (id, t) in tasks.as_object().unwrap() {
        if id == ran {
            continue;
        }
        waited += 1;
        assert_eq!(t["status"], "pending", "task {id}: {t}\n{err}");
        assert_eq!(t["attempts"], 0, "an attempt counted for task {id}: {t}\n{err}");
        assert_eq!(t["outcome"], "killed_by_user", "task {id}: {t}");
        assert!(
            t["error"]
                .as_str()
                .unwrap()
                .contains("interrupted while waiting for admission"),
            "{t}"
        );
        assert!(!err.contains(&format!("> {id} ")), "task {id} was started: {err}");
    }
    assert_eq!(waited, waiters, "{tasks}");
}

/// The review's reproduction (busy machine, a sibling waiting its turn behind the
/// workflow's own running task), for each of SIGINT, SIGTERM and SIGHUP to qw's pid.
#[test]
fn fix7c_m3_a_signal_to_qws_pid_starts_no_task_waiting_its_turn() {
    for sig in [2, 15, 1] {
        let mut f = flow(
            "# Tasks\n\n- [ ] 1. One\n- [ ] 2. Two\n",
            r#"{"resource_limits": {"max_memory": 1.0}}"#,
        );
        f.set("FAKE_SLEEP", "60");
        let fake = busy_proc(&f.p);
        stop_while_waiting(&f, Some(&fake), "2", 1, sig);
    }
}

/// Other shapes: an idle machine where the one slot (`max_concurrent` 1) is held by the
/// workflow's own task and two siblings wait for it (SIGTERM, SIGINT).
#[test]
fn fix7c_m3_two_waiters_for_the_one_slot_are_never_started_after_a_stop() {
    for sig in [15, 2] {
        let mut f = flow(
            "# Tasks\n\n- [ ] 1. One\n- [ ] 2. Two\n- [ ] 3. Three\n",
            r#"{"resource_limits": {"max_load": 1000, "high_impact_load": 1000, "max_memory": 1.0,
                "max_concurrent": 1}}"#,
        );
        f.set("FAKE_SLEEP", "60");
        stop_while_waiting(&f, None, "3", 2, sig);
    }
}
