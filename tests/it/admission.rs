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
fn admission_refusing_limits_time_out_naming_max_load_and_never_start() {
    let p = TestProject::new();
    // Any load above 0 refuses; a machine running this test suite is never at 0.00.
    p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"max_load": 0, "acquire_timeout_s": 1}}"#,
    );
    let started = p.path().join("started");
    let script = format!("echo ok > '{}'", started.display());
    let t = Instant::now();
    let out = p.run(&["exec", "--admit", "--", "sh", "-c", &script]);
    let took = t.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "stderr: {err}");
    assert!(err.contains("max_load"), "{err}");
    assert!(err.contains("not started"), "{err}");
    assert!(took >= Duration::from_secs(1), "gave up early: {took:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(
        !started.exists(),
        "the program ran although admission refused"
    );
    assert_eq!(queued_tickets(&p), 0, "the ticket was left in the queue");
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
    p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"max_load": 0, "acquire_timeout_s": 60}}"#,
    );
    let started = p.path().join("started");
    let script = format!("echo ok > '{}'", started.display());
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
    p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"max_load": 0, "acquire_timeout_s": 300}}"#,
    );
    let started = p.path().join("started");
    let script = format!("echo ok > '{}'", started.display());
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
    assert!(err.contains("max_load"), "{err}");
    assert!(err.contains("after 0.5s"), "{err}");
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
