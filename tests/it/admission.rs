//! Resource admission: machine-wide slots across real `qw` processes, timeouts naming the
//! blocking limit, `qw resources`, and settings errors.
//!
//! Every test uses its own `QW_RUNTIME_DIR` (set by `TestProject::qw`), so tests never
//! share slots with each other or with the real machine.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Limits that admit whatever the machine's real load is (tests run on busy machines).
fn generous(max_concurrent: usize) -> String {
    format!(
        r#"{{"permissions": {{"allow": []}}, "resource_limits": {{"max_load": 1000, "max_memory": 1.0,
  "high_impact_load": 1000, "max_concurrent": {max_concurrent}, "acquire_timeout_s": 60}}}}"#
    )
}

fn spawn(p: &TestProject, args: &[&str]) -> Child {
    p.qw(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The test-only stand-in for `/proc` read by the admission probes.
const PROC_ENV: &str = "QW_TEST_PROC_DIR";

/// A fake `/proc` for the probes showing a machine far above every load limit on any
/// number of CPUs (1-minute load 1000, a full run queue, CPU pressure 95 %) with memory to
/// spare (25 % used). The 1-minute load of a real machine cannot be raised that far
/// within a test; busy loops ([`BusyLoops`]) make the CPUs really busy beside it.
fn loaded_proc(p: &TestProject) -> std::path::PathBuf {
    p.write(
        "fake-proc/loadavg",
        "1000.00 1000.00 1000.00 1001/3000 4242\n",
    );
    p.write(
        "fake-proc/meminfo",
        "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:   12000000 kB\n",
    );
    p.write(
        "fake-proc/pressure/cpu",
        "some avg10=95.00 avg60=90.00 avg300=80.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    );
    p.write(
        "fake-proc/pressure/memory",
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    );
    p.path().join("fake-proc")
}

/// `qw exec --admit -- sleep 30` under the fake load: admitted at once (nothing runs),
/// it holds a slot until killed. Returns when its program runs.
fn hold_a_slot(p: &TestProject, marker: &str, fake: &std::path::Path) -> Child {
    let env = format!("QW_TEST_MARKER={marker}");
    let holder = p
        .qw(&["exec", "--admit", "--env", &env, "--", "sleep", "30"])
        .env(PROC_ENV, fake)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || {
            pids_with_env("QW_TEST_MARKER", marker)
                .into_iter()
                .any(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| c.starts_with(b"sleep\0"))
                })
        }),
        "the slot holder never started"
    );
    holder
}

/// A program's stderr sent to a file, to read while it runs.
fn stderr_file(p: &TestProject, name: &str) -> (std::path::PathBuf, std::fs::File) {
    let path = p.path().join(name);
    let f = std::fs::File::create(&path).unwrap();
    (path, f)
}

/// A file that shows whether a program ran, and the `sh -c` script that writes it.
fn start_marker(p: &TestProject) -> (std::path::PathBuf, String) {
    let started = p.path().join("started");
    let script = format!("echo ok > '{}'", started.display());
    (started, script)
}

fn queued_tickets(p: &TestProject) -> usize {
    std::fs::read_dir(p.path().join(".qw-runtime/queue"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("q-"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn admission_twelve_execs_never_exceed_max_concurrent() {
    let p = TestProject::new();
    p.write(".claude/settings.local.json", &generous(3));
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let env = format!("QW_TEST_MARKER={m}");
    let mut children: Vec<Child> = (0..12)
        .map(|_| {
            spawn(
                &p,
                &[
                    "--json", "exec", "--admit", "--env", &env, "--", "sleep", "0.5",
                ],
            )
        })
        .collect();

    // Sample the live `sleep` children (only they carry the marker) until all qw exit.
    let mut max_seen = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        max_seen = max_seen.max(pids_with_env("QW_TEST_MARKER", &m).len());
        if children.iter_mut().all(|c| c.try_wait().unwrap().is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    assert!(
        max_seen <= 3,
        "{max_seen} children alive at once with max_concurrent 3"
    );
    assert!(
        max_seen >= 2,
        "admission never let tasks run in parallel ({max_seen})"
    );
    let mut waited = Vec::new();
    for o in &outputs {
        assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(o));
        waited.push(last_json(o)["admission_wait_ms"].as_u64().unwrap());
    }
    // 12 runs of 0.5 s through 3 slots: some must have waited for at least one round.
    assert!(
        waited.iter().any(|&w| w >= 400),
        "nobody waited for a slot: {waited:?}"
    );
}

#[test]
fn admission_waiter_gets_slot_of_sigkilled_holder_within_a_second() {
    let p = TestProject::new();
    p.write(".claude/settings.local.json", &generous(1));
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let env = format!("QW_TEST_MARKER={m}");
    let mut holder = spawn(&p, &["exec", "--admit", "--env", &env, "--", "sleep", "30"]);
    assert!(
        wait_until(Duration::from_secs(20), || !pids_with_env(
            "QW_TEST_MARKER",
            &m
        )
        .is_empty()),
        "the holder's program never started"
    );
    let started = p.path().join("waiter-started");
    let script = format!("echo ok > '{}'", started.display());
    let waiter = spawn(
        &p,
        &["exec", "--admit", "--env", &env, "--", "sh", "-c", &script],
    );
    assert!(
        wait_until(Duration::from_secs(20), || queued_tickets(&p) == 1),
        "the waiter never queued"
    );
    assert!(
        !started.exists(),
        "the waiter ran while the only slot was held"
    );

    let holder_pid = i32::try_from(holder.id()).unwrap();
    unsafe_kill(holder_pid, 9);
    let killed_at = Instant::now();
    holder.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || started.exists()),
        "the waiter never got the slot"
    );
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(1), "slot freed after {took:?}");
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
}

#[test]
fn admission_memory_limit_holds_with_nothing_running_and_every_limit_is_named() {
    let p = TestProject::new();
    // Any memory use refuses (a machine never uses none). The load limit is exceeded
    // too, but with no qw task running the progress guarantee waives it: only memory
    // blocks and only memory is named.
    p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"max_load": 0, "max_memory": 0, "acquire_timeout_s": 1}}"#,
    );
    let (started, script) = start_marker(&p);
    let t = Instant::now();
    let out = p.run(&["exec", "--admit", "--", "sh", "-c", &script]);
    let took = t.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "stderr: {err}");
    assert!(err.contains("(max_memory)"), "{err}");
    assert!(
        !err.contains("(max_load)"),
        "the load limit is waived: {err}"
    );
    assert!(err.contains("no qw task running"), "{err}");
    // How long past the limit it noticed depends on the machine's load: not asserted.
    assert!(
        err.contains("gave up waiting for admission after ")
            && err.contains("s (resource_limits.acquire_timeout_s)"),
        "{err}"
    );
    assert!(err.contains("not started"), "{err}");
    assert!(err.contains("`resource_limits.max_memory`"), "{err}");
    assert!(took >= Duration::from_secs(1), "gave up early: {took:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        !started.exists(),
        "the program ran although admission refused"
    );
    assert_eq!(queued_tickets(&p), 0, "the ticket was left in the queue");

    // With one qw task running, the load limits hold again: every limit is named.
    let fake = loaded_proc(&p);
    p.write(".claude/settings.local.json", "{}");
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let mut holder = hold_a_slot(&p, &m, &fake);
    // The fake machine uses 25 % of its memory.
    p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"max_memory": 0.2, "max_concurrent": 1, "acquire_timeout_s": 300}}"#,
    );
    let out = p
        .qw(&[
            "exec",
            "--admit=high",
            "--admit-timeout",
            "0.3",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .env(PROC_ENV, &fake)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "stderr: {err}");
    for named in [
        "(max_load)",
        "(high_impact_load)",
        "(max_memory)",
        "1 of 1 slots in use (max_concurrent)",
        "1 qw task running",
        "(--admit-timeout)",
    ] {
        assert!(err.contains(named), "{named} missing: {err}");
    }
    assert!(!started.exists());
    unsafe_kill(i32::try_from(holder.id()).unwrap(), 15);
    holder.wait().unwrap();
}

#[test]
fn admission_corrupt_or_bad_settings_exit_2_and_stay_untouched() {
    let p = TestProject::new();
    let corrupt = "{\n  \"resource_limits\": {\"max_load\": 0.9,\n  oops\n}\n";
    let path = p.write(".claude/settings.local.json", corrupt);
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();

    let out = p.run(&["resources"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("settings.local.json") && err.contains("line 3"),
        "{err}"
    );

    let started = p.path().join("started");
    let script = format!("echo ok > '{}'", started.display());
    let out = p.run(&["exec", "--admit", "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(!started.exists());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), corrupt);
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        before
    );

    let bad = r#"{"resource_limits": {"max_concurrent": "many"}}"#;
    p.write(".claude/settings.local.json", bad);
    let out = p.run(&["resources"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("resource_limits.max_concurrent") && err.contains("\"many\""),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), bad);

    // A bad `--admit` value with valid settings names the value.
    p.write(".claude/settings.local.json", "{}");
    let out = p.run(&["exec", "--admit=huge", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("`huge`"), "{}", stderr(&out));
}

#[test]
fn admission_resources_shows_holder_pid_limits_and_decisions() {
    let p = TestProject::new();
    p.write(".claude/settings.local.json", &generous(2));
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let env = format!("QW_TEST_MARKER={m}");
    let mut holder = spawn(
        &p,
        &["exec", "--admit=high", "--env", &env, "--", "sleep", "30"],
    );
    assert!(wait_until(Duration::from_secs(20), || !pids_with_env(
        "QW_TEST_MARKER",
        &m
    )
    .is_empty()));
    let holder_pid = i64::from(holder.id());

    let out = p.run(&["--json", "resources"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let in_use = v["slots"]["in_use"].as_array().unwrap();
    assert_eq!(in_use.len(), 1, "{v}");
    assert_eq!(in_use[0]["pid"].as_i64(), Some(holder_pid));
    assert_eq!(v["limits"]["max_concurrent"], 2);
    assert_eq!(v["limits"]["max_load"], 1000.0);
    assert_eq!(v["limits_source"]["max_concurrent"], "settings");
    assert_eq!(v["limits_source"]["max_memory_pressure"], "default");
    for impact in ["low", "normal", "high"] {
        assert_eq!(v["decisions"][impact]["decision"], "admit", "{v}");
    }
    assert!(v["probes"]["usable_cpus"].as_f64().unwrap() >= 1.0);

    let out = p.run(&["resources"]);
    let text = stdout(&out);
    assert!(text.contains(&format!("pid {holder_pid}")), "{text}");
    assert!(text.contains("1 of 2 in use"), "{text}");

    unsafe_kill(i32::try_from(holder.id()).unwrap(), 15);
    holder.wait().unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&p.run(&["--json", "resources"]))).unwrap();
    assert_eq!(v["slots"]["in_use"].as_array().unwrap().len(), 0, "{v}");
}

#[test]
fn admission_signal_while_waiting_stops_without_starting() {
    let p = TestProject::new();
    // Nothing is admitted: this waits until the signal.
    p.refuse_admission(60);
    let (started, script) = start_marker(&p);
    let waiter = spawn(&p, &["exec", "--admit", "--", "sh", "-c", &script]);
    assert!(
        wait_until(Duration::from_secs(20), || queued_tickets(&p) == 1),
        "the waiter never queued"
    );
    let t = Instant::now();
    unsafe_kill(i32::try_from(waiter.id()).unwrap(), 15);
    let out = waiter.wait_with_output().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(out.status.code(), Some(128 + 15), "{}", stderr(&out));
    assert!(stderr(&out).contains("not started"), "{}", stderr(&out));
    assert!(!started.exists());
    assert_eq!(queued_tickets(&p), 0, "the ticket was left in the queue");
}

#[test]
fn admission_admit_timeout_overrides_acquire_timeout_and_never_starts() {
    let p = TestProject::new();
    // The settings would wait 300 s; the flag caps this run at half a second.
    p.refuse_admission(300);
    let (started, script) = start_marker(&p);
    let t = Instant::now();
    let out = p.run(&[
        "exec",
        "--admit",
        "--admit-timeout",
        "0.5",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let took = t.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "stderr: {err}");
    assert!(err.contains("max_memory"), "{err}");
    assert!(
        err.contains("gave up waiting for admission after ") && err.contains("s (--admit-timeout)"),
        "{err}"
    );
    assert!(err.contains("not started"), "{err}");
    assert!(
        err.contains("--admit-timeout"),
        "hint names the flag: {err}"
    );
    assert!(
        took >= Duration::from_millis(500),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        !started.exists(),
        "the program ran although admission refused"
    );
    assert_eq!(queued_tickets(&p), 0, "the ticket was left in the queue");

    // Without --admit there is nothing to wait for: a usage error (125 under exec).
    let out = p.run(&["exec", "--admit-timeout", "1", "--", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("--admit"), "{}", stderr(&out));
}

#[test]
fn admission_loaded_machine_starts_exec_and_workflow_at_once_when_no_qw_task_runs() {
    let p = TestProject::new();
    let fake = loaded_proc(&p);
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let _busy = BusyLoops::start(&m);
    // Default limits; a short acquire timeout, so a wait for the load (which the fake
    // `/proc` keeps at 1000 forever) fails the test instead of passing slowly.
    p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"acquire_timeout_s": 20}}"#,
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(
        &p.qw(&["--json", "resources"])
            .env(PROC_ENV, &fake)
            .output()
            .unwrap(),
    ))
    .unwrap();
    for impact in ["low", "normal", "high"] {
        let d = &v["decisions"][impact];
        assert_eq!(d["decision"], "admit", "{v}");
        assert_eq!(d["waived"][0]["limit"], "max_load", "{v}");
    }
    assert!(v["probes"]["load_per_cpu"].as_f64().unwrap() > 1.0, "{v}");

    for impact in ["--admit", "--admit=high"] {
        let out = p
            .qw(&["exec", impact, "--", "true"])
            .env(PROC_ENV, &fake)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            !stderr(&out).contains("waiting for admission"),
            "{}",
            stderr(&out)
        );
    }

    let out = p
        .qw(&[
            "workflow-auto",
            "hello",
            "Greet the user",
            "--agent",
            "offline",
        ])
        .env(PROC_ENV, &fake)
        .output()
        .unwrap();
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("workflow completed"), "{all}");
    // The first phase started without waiting: nothing else was running.
    assert!(!all.contains("requirements: waiting"), "{all}");
    assert_eq!(queued_tickets(&p), 0);
}

#[test]
fn admission_loaded_machine_waits_while_a_slot_is_held_then_starts() {
    let p = TestProject::new();
    let fake = loaded_proc(&p);
    p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"acquire_timeout_s": 120}}"#,
    );
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let _busy = BusyLoops::start(&m);

    // `qw exec --admit` waits while another process holds a slot, and says why.
    let mut holder = hold_a_slot(&p, &m, &fake);
    let started = p.path().join("started");
    let script = format!("echo ok > '{}'", started.display());
    let (err_path, err_file) = stderr_file(&p, "exec.stderr");
    let mut waiter = p
        .qw(&["exec", "--admit", "--", "sh", "-c", &script])
        .env(PROC_ENV, &fake)
        .stdout(Stdio::null())
        .stderr(err_file)
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || {
            std::fs::read_to_string(&err_path).is_ok_and(|e| e.contains("giving up in"))
        }),
        "no waiting line: {:?}",
        std::fs::read_to_string(&err_path)
    );
    assert!(!started.exists(), "it started while a slot was held");
    let line = std::fs::read_to_string(&err_path).unwrap();
    for part in [
        "qw: waiting for admission (normal impact): load ",
        "/CPU > 0.85 (max_load); 1 qw task running, held by qw pid ",
        "; giving up in ",
        "(resource_limits.acquire_timeout_s)",
    ] {
        assert!(line.contains(part), "{part:?} not in {line}");
    }
    unsafe_kill(i32::try_from(holder.id()).unwrap(), 15);
    holder.wait().unwrap();
    assert_eq!(waiter.wait().unwrap().code(), Some(0));
    assert!(started.exists(), "it never started once the slot was free");
    let lines = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(
        lines.matches("waiting for admission").count(),
        1,
        "the waiting line is not repeated on every poll: {lines}"
    );

    // So does `workflow-auto`: no agent runs while the slot is held.
    let mut holder = hold_a_slot(&p, &m, &fake);
    let (err_path, err_file) = stderr_file(&p, "workflow.stderr");
    let mut flow = p
        .qw(&[
            "workflow-auto",
            "hello",
            "Greet the user",
            "--agent",
            "offline",
        ])
        .env(PROC_ENV, &fake)
        .stdout(Stdio::null())
        .stderr(err_file)
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || {
            std::fs::read_to_string(&err_path)
                .is_ok_and(|e| e.contains("requirements: waiting for admission"))
        }),
        "no waiting line: {:?}",
        std::fs::read_to_string(&err_path)
    );
    let runs = p.path().join(".claude/runs");
    // Run folders are named `<stamp>-<spec>-<label>-<hex>`; `qw exec` above left its own.
    let no_runs = || {
        std::fs::read_dir(&runs).map_or(true, |d| {
            !d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains("-hello-"))
        })
    };
    assert!(no_runs(), "an agent started while the slot was held");
    assert!(flow.try_wait().unwrap().is_none());
    unsafe_kill(i32::try_from(holder.id()).unwrap(), 15);
    holder.wait().unwrap();
    let status = flow.wait().unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!no_runs(), "{err}");
}

#[test]
fn admission_waiters_that_all_see_nothing_running_start_one_at_a_time() {
    let p = TestProject::new();
    let fake = loaded_proc(&p);
    p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"acquire_timeout_s": 120}}"#,
    );
    // Each program takes a directory as a mutex: a second one running at the same time
    // finds it taken and exits 99.
    let excl = p.path().join("excl");
    let script = format!(
        "mkdir '{0}' || exit 99; sleep 0.3; rmdir '{0}'",
        excl.display()
    );
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let env = format!("QW_TEST_MARKER={m}");
    let children: Vec<Child> = (0..4)
        .map(|_| {
            p.qw(&["exec", "--admit", "--env", &env, "--", "sh", "-c", &script])
                .env(PROC_ENV, &fake)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "two ran at once, or one never ran: {}",
            stderr(&out)
        );
    }
    assert_eq!(queued_tickets(&p), 0);
}

/// A request queued behind another qw's request says so — how many wait ahead, their
/// pids, what the first waits for, and who holds the slots — never "no qw task running"
/// as if nothing held it back.
#[test]
fn admission_queued_request_names_the_requests_ahead_and_the_slots() {
    let p = TestProject::new();
    // Memory refuses even with nothing running, so the first request waits at the head.
    p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"max_memory": 0, "max_concurrent": 3, "acquire_timeout_s": 60}}"#,
    );
    let mut head = spawn(&p, &["exec", "--admit", "--", "true"]);
    let head_pid = head.id();
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            unsafe_kill(i32::try_from(self.0).unwrap(), 9);
        }
    }
    let _kill = Kill(head_pid);
    assert!(
        wait_until(Duration::from_secs(20), || queued_tickets(&p) == 1),
        "the first request never queued"
    );
    let out = p.run(&["exec", "--admit", "--admit-timeout", "1", "--", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let err = stderr(&out);
    let want = format!(
        "queued behind 1 waiting request (qw pid {head_pid}), which waits for memory in use"
    );
    assert!(err.contains(&want), "{err}");
    assert!(
        err.contains("(max_memory); no slot in use (0 of 3)"),
        "{err}"
    );
    assert!(!err.contains("no qw task running"), "{err}");
    unsafe_kill(i32::try_from(head_pid).unwrap(), 15);
    head.wait().unwrap();
}
