//! `qw workflow-auto` / `workflow-continue` with a fake `claude` on PATH that behaves like
//! the real CLI: reads `-p PROMPT`, writes the document its phase asks for, prints one
//! JSON result, and can be told to hang, fail, cost money or hit a usage limit.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

#[test]
fn workflow_full_run_with_fake_claude_writes_everything_and_sums_cost() {
    let mut f = Flow::new(THREE);
    f.set("FAKE_COST_IMPL", "0.25").set("FAKE_COST_DOC", "0.05");
    let out = f.auto(&["--agent", "claude"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    for doc in ["requirements.md", "design.md", "tasks.md", "report.md"] {
        assert!(
            f.path().join(".claude/specs/demo").join(doc).is_file(),
            "{doc}"
        );
    }
    let md = f.tasks_md();
    assert_eq!(md.matches("- [x]").count(), 3, "{md}");
    let s = f.state();
    let spec = &s["specifications"]["demo"];
    // 3 documents + validation at $0.05, 3 tasks at $0.25.
    let cost = spec["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.95).abs() < 1e-6, "cost {cost}");
    assert_eq!(spec["current_phase"], "complete");
    let phases: Vec<&str> = spec["completed_phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    for p in [
        "spec_creation",
        "requirements_generation",
        "design_creation",
        "task_generation",
        "implementation",
        "validation",
        "complete",
    ] {
        assert!(phases.contains(&p), "{p} missing from {phases:?}");
    }
    let t1 = &spec["tasks"]["1"];
    assert_eq!(t1["status"], "completed");
    assert_eq!(t1["attempts"], 1);
    assert_eq!(t1["session_id"], fake_sid("fake", "1"));
    assert_eq!(t1["input_tokens"], 100);
    let report = f.p.read(".claude/specs/demo/report.md");
    assert!(report.contains("Completed"), "{report}");
    assert!(report.contains("$0.9500"), "{report}");
    assert!(
        report.contains("| 2 | Second | completed | 1 |"),
        "{report}"
    );
    // Every run's output was captured to files.
    let runs = std::fs::read_dir(f.path().join(".claude/runs"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("events.jsonl").is_file())
        .count();
    assert_eq!(runs, 7);
}

#[test]
fn workflow_diamond_respects_dependencies_and_parallel_limit() {
    let md = "- [ ] 1. Base\n- [ ] 2. Left\n  - _Depends: 1_\n- [ ] 3. Right\n  - _Depends: 1_\n- [ ] 4. Top\n  - _Depends: 2, 3_\n- [ ] 5. Free\n- [ ] 6. Free too\n";
    let mut f = Flow::new(md);
    f.set("FAKE_SLEEP", "0.4");
    let out = f.auto(&["--agent", "claude", "--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let log: Vec<_> = f
        .log()
        .into_iter()
        .filter(|(_, p, _, _)| p == "implementation")
        .collect();
    let at = |kind: &str, id: &str| {
        log.iter()
            .find(|(k, _, t, _)| k == kind && t == id)
            .map(|(_, _, _, ms)| *ms)
            .unwrap_or_else(|| panic!("no {kind} for {id}: {log:?}"))
    };
    assert!(at("end", "1") <= at("start", "2"));
    assert!(at("end", "1") <= at("start", "3"));
    assert!(at("end", "2") <= at("start", "4"));
    assert!(at("end", "3") <= at("start", "4"));
    let mut running = 0;
    let mut peak = 0;
    let mut events: Vec<(u64, i32)> = log
        .iter()
        .map(|(k, _, _, ms)| (*ms, if k == "start" { 1 } else { -1 }))
        .collect();
    events.sort_by_key(|&(ms, d)| (ms, d));
    for (_, d) in events {
        running += d;
        peak = peak.max(running);
    }
    assert!(peak <= 2, "peak {peak}: {log:?}");
    assert_eq!(peak, 2, "never ran two at once: {log:?}");
}

#[test]
fn workflow_hanging_task_is_killed_retried_then_failed_others_complete() {
    let mut f = Flow::new(THREE);
    f.set("FAKE_HANG", "3");
    let start = Instant::now();
    let out = f.run(&[
        "workflow-auto",
        "demo",
        "A demo feature",
        "--retry-delay",
        "0.1",
        "--agent",
        "claude",
        "--task-timeout",
        "1",
        "--grace",
        "0.5",
        "--attempts",
        "2",
    ]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(f.runs_of("3"), 2);
    let t3 = f.task("3");
    assert_eq!(t3["status"], "failed");
    assert_eq!(t3["outcome"], "timed_out");
    assert_eq!(t3["attempts"], 2);
    assert_eq!(f.task("1")["status"], "completed");
    assert_eq!(f.task("2")["status"], "completed");
    // The sleeping agent and its setsid grandchild are gone.
    assert!(pids_with_env("QW_TEST_MARKER", &f.guard.0).is_empty());
    let errors = f.state()["errors"].as_array().unwrap().clone();
    let e = errors
        .iter()
        .find(|e| e["context"]["task"] == "3")
        .expect("error recorded");
    assert!(e["error"].as_str().unwrap().contains("timed_out"));
    assert!(e["context"]["attempt"].as_u64().is_some());
    let report = f.p.read(".claude/specs/demo/report.md");
    assert!(report.contains("timed_out"), "{report}");
}

#[test]
fn workflow_task_failing_twice_then_succeeding_completes_on_third_attempt() {
    let mut f = Flow::new(THREE);
    f.set("FAKE_FAIL", "2:2");
    let out = f.auto(&["--agent", "claude"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(f.runs_of("2"), 3);
    let t2 = f.task("2");
    assert_eq!(t2["status"], "completed");
    assert_eq!(t2["attempts"], 3);
}

#[test]
fn workflow_failing_verify_leaves_the_task_unticked() {
    let md = "- [ ] 1. Passes\n  - _Verify: `true`_\n- [ ] 2. Fails verify\n  - _Verify: `test -e no-such-file`_\n";
    let f = Flow::new(md);
    let out = f.auto(&["--agent", "claude", "--attempts", "1"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let md = f.tasks_md();
    assert!(md.contains("- [x] 1. Passes"), "{md}");
    assert!(md.contains("- [ ] 2. Fails verify"), "{md}");
    let t2 = f.task("2");
    assert_eq!(t2["status"], "failed");
    assert_eq!(t2["outcome"], "verify_failed");
    assert!(
        t2["error"].as_str().unwrap().contains("no-such-file"),
        "{t2}"
    );
}

#[test]
fn workflow_ids_compare_exactly_when_ticking() {
    let md = "- [ ] 1. Parent\n  - [ ] 1.1. Child one\n  - [ ] 1.2. Child two\n    - _Verify: `false`_\n- [ ] 10. Ten\n  - _Verify: `false`_\n";
    let f = Flow::new(md);
    let out = f.auto(&["--agent", "claude", "--attempts", "1"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let after = f.tasks_md();
    // Exactly one byte changed: the checkbox of 1.1.
    let diff: Vec<usize> = md
        .bytes()
        .zip(after.bytes())
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(md.len(), after.len());
    assert_eq!(diff.len(), 1, "{after}");
    assert!(after.contains("- [x] 1.1. Child one"));
    assert!(after.contains("- [ ] 1. Parent") && after.contains("- [ ] 10. Ten"));
    assert_eq!(f.task("1.1")["status"], "completed");
    assert_eq!(f.task("10")["status"], "failed");
    assert!(f.task("1").is_null(), "a parent is not a task to run");
}

#[test]
fn workflow_killed_mid_run_then_continue_never_redoes_completed_tasks() {
    let md =
        "- [ ] 1. Fast\n- [ ] 2. Slow\n  - _Depends: 1_\n- [ ] 3. After slow\n  - _Depends: 2_\n";
    let mut f = Flow::new(md);
    f.set("FAKE_SLOW", "2").set("FAKE_SLOW_SECS", "30");
    let mut child = f.start_auto(&["--agent", "claude", "--task-timeout", "60"]);
    assert!(
        wait_until(Duration::from_secs(20), || f.runs_of("2") == 1),
        "task 2 never started: {:?}",
        f.log()
    );
    sigkill(&mut child);
    // The slow agent outlives the killed workflow until someone sweeps.
    assert_eq!(f.task("2")["status"], "in_progress");

    // `continue` must not wait 30 s for the old slow run: it is swept, then rerun fast.
    f.env.retain(|(k, _)| k != "FAKE_SLOW");
    let out = f.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(f.runs_of("1"), 1, "task 1 ran again: {:?}", f.log());
    assert_eq!(f.runs_of("2"), 2);
    assert_eq!(f.runs_of("3"), 1);
    // Its cut-off run (no outcome in the state) is continued, not started over.
    assert_eq!(f.resumed_of("2"), ["", fake_sid("fake", "2").as_str()]);
    assert!(diag(&out).contains("orphaned"), "{}", diag(&out));
    assert_eq!(f.task("3")["status"], "completed");
    // Nothing of the killed run is left.
    assert!(pids_with_env("QW_TEST_MARKER", &f.guard.0).is_empty());
}

#[test]
fn workflow_bad_input_exits_2_and_writes_nothing() {
    let f = Flow::new(THREE);
    let claude_dir = f.p.claude();
    let before: Vec<_> = std::fs::read_dir(&claude_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();

    // No claude on PATH (a PATH of one empty folder: the real CLI may be installed).
    let mut c =
        f.p.qw(&["workflow-auto", "demo", "A demo", "--agent", "claude"]);
    c.env("PATH", f.path().join("no-such-bin"));
    let out = c.output().unwrap();
    assert_eq!(code(&out), 2, "{}", diag(&out));
    let err = stderr(&out);
    assert!(
        err.contains("claude") && err.contains("--agent offline"),
        "{err}"
    );

    for args in [
        vec!["workflow-auto", "../x", "desc", "--agent", "offline"],
        vec!["workflow-auto", "a/b", "desc", "--agent", "offline"],
        vec!["workflow-auto", "", "desc", "--agent", "offline"],
        vec![
            "workflow-auto",
            "demo",
            "desc",
            "--agent-cmd",
            "prog 'unbalanced",
        ],
        vec![
            "workflow-auto",
            "demo",
            "desc",
            "--agent-cmd",
            "prog {nope}",
        ],
        vec!["workflow-auto", "demo", "desc", "--agent", "command"],
        vec!["workflow-auto", "demo", "desc", "--parallel", "0"],
        vec!["workflow-continue", "never-started"],
    ] {
        let out = f.run(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", diag(&out));
        assert!(stderr(&out).contains("error:"), "{args:?}: {}", diag(&out));
    }
    let after: Vec<_> = std::fs::read_dir(&claude_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(before, after, "bad input wrote into .claude/");
    assert!(!f.path().join("x").exists());

    // A cyclic tasks.md already in place: refused before any agent runs, naming the line.
    f.p.write(
        ".claude/specs/demo/tasks.md",
        "- [ ] 1. A\n  - _Depends: 2_\n- [ ] 2. B\n  - _Depends: 1_\n",
    );
    let out = f.run(&["workflow-auto", "demo", "desc", "--agent", "claude"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert!(stderr(&out).contains("line"), "{}", diag(&out));
    assert!(f.log().is_empty(), "an agent ran");
    assert!(!f.path().join(".claude/unified_state.json").exists());
}

#[test]
fn workflow_sigint_stops_everything_and_continue_finishes() {
    let mut f = Flow::new(THREE);
    f.set("FAKE_SLOW", "1").set("FAKE_SLOW_SECS", "30");
    let mut child = f.start_auto(&["--agent", "claude"]);
    assert!(wait_until(Duration::from_secs(20), || f.runs_of("1") == 1));
    let start = Instant::now();
    unsafe_kill(child.id() as i32, 2);
    let status = child.wait().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(status.code(), Some(130));
    assert!(pids_with_env("QW_TEST_MARKER", &f.guard.0).is_empty());
    assert_eq!(f.task("1")["status"], "pending");
}

#[test]
fn workflow_sigint_is_prompt_whatever_the_event_stream_holds() {
    // The agent writes 64 MiB on one line and hangs: Ctrl-C still ends the workflow,
    // judging the run never holds that line, and continue can run the task again.
    let mut f = Flow::new(THREE);
    let huge: usize = 64 << 20;
    f.set("FAKE_HUGE", "1")
        .set("FAKE_HUGE_BYTES", &huge.to_string());
    let mut child = f.start_auto_keeping_stderr(&["--agent", "claude"]);
    let events = || {
        std::fs::read_dir(f.path().join(".claude/runs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("-task-1-"))
            .map(|e| e.path().join("events.jsonl"))
            .find(|p| p.metadata().is_ok_and(|m| m.len() >= huge as u64))
    };
    let written = wait_until(Duration::from_secs(120), || events().is_some());
    unsafe_kill(child.id() as i32, 2);
    let ended = wait_until(Duration::from_secs(60), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        unsafe_kill(child.id() as i32, 9);
    }
    let out = child.wait_with_output().unwrap();
    assert!(written, "the fake agent never wrote its huge line");
    assert!(ended, "the workflow did not end after SIGINT");
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(pids_with_env("QW_TEST_MARKER", &f.guard.0).is_empty());
    let t = f.task("1");
    assert_eq!(t["status"], "pending", "{t}");
    assert!(
        t["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("1 stdout line(s) over 4194304 bytes skipped")),
        "{t}"
    );
    let rss_mib = children_max_rss_mib().unwrap_or(0);
    assert!(rss_mib < 48, "a process grew to {rss_mib} MiB");
}

#[test]
fn workflow_cost_ceiling_stops_new_work_and_continue_resumes() {
    let md = "- [ ] 1. One\n- [ ] 2. Two\n  - _Depends: 1_\n- [ ] 3. Three\n  - _Depends: 2_\n";
    let mut f = Flow::new(md);
    f.set("FAKE_COST_IMPL", "0.40");
    let out = f.auto(&["--agent", "claude", "--max-cost-per-run", "1.00"]);
    assert_eq!(code(&out), 3, "{}", diag(&out));
    assert_eq!(f.runs_of("1"), 1);
    assert_eq!(f.runs_of("2"), 1);
    assert_eq!(f.runs_of("3"), 0, "the third task started");
    let t3 = f.task("3");
    assert_eq!(t3["outcome"], "budget_exceeded");
    assert!(stderr(&out).contains("workflow-continue"), "{}", diag(&out));

    let out = f.run(&["workflow-continue", "demo", "--max-cost-per-run", "5"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(f.runs_of("1"), 1);
    assert_eq!(f.runs_of("2"), 1);
    assert_eq!(f.runs_of("3"), 1);
    let cost = f.state()["specifications"]["demo"]["cost_usd"]
        .as_f64()
        .unwrap();
    assert!((cost - 1.20).abs() < 1e-6, "{cost}");
}

#[test]
fn workflow_usage_limit_pauses_with_paused_until_and_continue_resumes() {
    let mut f = Flow::new(THREE);
    let flag = f.path().join("limited");
    std::fs::write(&flag, "").unwrap();
    f.set("FAKE_LIMIT", "1")
        .set("FAKE_LIMIT_FILE", &flag.display().to_string());
    let out = f.auto(&["--agent", "claude"]);
    assert_eq!(code(&out), 3, "{}", diag(&out));
    assert_eq!(f.runs_of("1"), 1, "usage limits are not retried");
    let spec = &f.state()["specifications"]["demo"];
    let until = spec["paused_until"].as_str().unwrap().to_owned();
    assert!(until.starts_with("20"), "{until}");
    assert_eq!(f.task("1")["outcome"], "usage_limited");

    std::fs::remove_file(&flag).unwrap();
    let out = f.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(f.state()["specifications"]["demo"]["paused_until"].is_null());
}

#[test]
fn workflow_continue_resumes_the_limited_session_and_adds_up_its_costs() {
    for fresh in [false, true] {
        let mut f = Flow::new(THREE);
        let flag = f.path().join("limited");
        std::fs::write(&flag, "").unwrap();
        f.set("FAKE_LIMIT", "1")
            .set("FAKE_LIMIT_FILE", &flag.display().to_string())
            .set("FAKE_COST_LIMIT", "0.25")
            .set("FAKE_COST_IMPL", "0.5");
        let out = f.auto(&["--agent", "claude"]);
        assert_eq!(code(&out), 3, "{}", diag(&out));
        let limited = fake_sid("limited", "1");
        assert_eq!(f.task("1")["session_id"], limited.as_str());

        std::fs::remove_file(&flag).unwrap();
        let mut args = vec!["workflow-continue", "demo", "--json"];
        if fresh {
            args.push("--fresh");
        }
        let out = f.run(&args);
        assert_eq!(code(&out), 0, "{}", diag(&out));
        let expected = if fresh { "" } else { limited.as_str() };
        assert_eq!(f.resumed_of("1"), ["", expected], "fresh: {fresh}");
        let started: Vec<Value> = stdout(&out)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == "task_started" && v["id"] == "1")
            .collect();
        assert_eq!(started.len(), 1, "{}", diag(&out));
        assert_eq!(
            started[0].get("resumes").and_then(Value::as_str),
            (!fresh).then_some(limited.as_str()),
            "{}",
            diag(&out)
        );
        // Both runs' costs: the task, the spec, and the day's ledger.
        let t = f.task("1");
        assert_eq!(t["status"], "completed");
        assert!((t["cost_usd"].as_f64().unwrap() - 0.75).abs() < 1e-9, "{t}");
        assert_eq!(
            t["session_id"],
            fake_sid("fake", "1"),
            "the last run's session"
        );
        let state = f.state();
        let spec_cost = state["specifications"]["demo"]["cost_usd"]
            .as_f64()
            .unwrap();
        assert!(
            (spec_cost - 1.75).abs() < 1e-9,
            "0.25 + 3 × 0.5: {spec_cost}"
        );
        let ledger: f64 = state["cost_ledger"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(Value::as_f64)
            .sum();
        assert!((ledger - 1.75).abs() < 1e-9, "{ledger}");
        let report = f.p.read(".claude/specs/demo/report.md");
        assert!(report.contains("0.75"), "{report}");
    }
}

/// A task stopped by a usage limit: (the flow, the limit flag file). `sid` overrides
/// the session its result names.
fn limited(sid: Option<&str>) -> (Flow, PathBuf) {
    let mut f = Flow::new(THREE);
    let flag = f.path().join("limited");
    std::fs::write(&flag, "").unwrap();
    f.set("FAKE_LIMIT", "1")
        .set("FAKE_LIMIT_FILE", &flag.display().to_string());
    if let Some(sid) = sid {
        f.set("FAKE_SID", &format!("1:{sid}"));
    }
    let out = f.auto(&["--agent", "claude"]);
    assert_eq!(code(&out), 3, "{}", diag(&out));
    (f, flag)
}

#[test]
fn workflow_ignores_a_session_id_that_is_not_one_and_continue_runs_fresh() {
    let (f, flag) = limited(Some("--dangerously-skip-permissions"));
    let t = f.task("1");
    assert!(t["session_id"].is_null(), "recorded: {t}");
    std::fs::remove_file(&flag).unwrap();
    let out = f.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(
        f.resumed_of("1"),
        ["", ""],
        "never passed on, never resumed"
    );
    assert_eq!(f.task("1")["status"], "completed");

    // One already in the state (an older qw, a hand edit): continue runs fresh, saying so.
    let (f, flag) = limited(None);
    let state = f.p.read(".claude/unified_state.json");
    let sid = fake_sid("limited", "1");
    assert!(state.contains(&sid));
    f.p.write(
        ".claude/unified_state.json",
        &state.replace(&sid, "--dangerously-skip-permissions"),
    );
    std::fs::remove_file(&flag).unwrap();
    let out = f.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(
        diag(&out).contains("is not a session id (Claude Code's are UUIDs); running fresh"),
        "{}",
        diag(&out)
    );
    assert_eq!(f.resumed_of("1"), ["", ""]);
    assert_eq!(f.task("1")["status"], "completed");
}

#[test]
fn workflow_reset_forgets_the_session_continue_would_resume() {
    let (f, flag) = limited(None);
    std::fs::remove_file(&flag).unwrap();
    let out = f.run(&["workflow-reset", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let t = f.task("1");
    assert!(t["session_id"].is_null() && t["outcome"].is_null(), "{t}");
    let out = f.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(f.resumed_of("1"), ["", ""], "the reset session was resumed");
}

#[test]
fn workflow_gone_session_runs_fresh_in_a_run_folder_of_its_own() {
    let (mut f, flag) = limited(None);
    std::fs::remove_file(&flag).unwrap();
    f.set("FAKE_GONE", "1");
    let out = f.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let sid = fake_sid("limited", "1");
    assert_eq!(f.resumed_of("1"), ["", sid.as_str(), ""]);
    assert!(
        diag(&out).contains(&format!("session {sid} is gone")),
        "{}",
        diag(&out)
    );
    // The limited run, the failed resume and the fresh run: three folders, each with
    // its own prompt and stream.
    let mut runs: Vec<String> = std::fs::read_dir(f.path().join(".claude/runs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-task-1-"))
        .collect();
    runs.sort();
    assert_eq!(runs.len(), 3, "{runs:?}");
    let prompt = |id: &str| f.p.read(&format!(".claude/runs/{id}/prompt.md"));
    assert!(
        prompt(&runs[1]).contains("was stopped"),
        "{}",
        prompt(&runs[1])
    );
    assert!(!prompt(&runs[2]).contains("was stopped"));
    assert!(
        f.p.read(&format!(".claude/runs/{}/stderr.log", runs[1]))
            .contains("No conversation found")
    );
    assert_eq!(
        f.task("1")["run_id"],
        runs[2].as_str(),
        "the run the attempt ended in"
    );
    // `qw logs` shows the newest and names the others; --run shows any of them.
    let out = f.run(&["logs", "demo", "1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(stderr(&out).contains(&runs[2]), "{}", diag(&out));
    assert!(
        stderr(&out).contains(&runs[0]) && stderr(&out).contains(&runs[1]),
        "{}",
        diag(&out)
    );
    let out = f.run(&["logs", "demo", "--run", &runs[0]]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(
        stdout(&out).contains(&format!("started: session {sid}")),
        "{}",
        diag(&out)
    );
    let out = f.run(&["logs", "demo", "--run", "../../etc"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
}

#[test]
fn workflow_non_retryable_outcomes_are_not_retried() {
    let mut f = Flow::new(THREE);
    f.set("FAKE_LOGIN", "1");
    let out = f.auto(&["--agent", "claude", "--attempts", "3"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(f.runs_of("1"), 1);
    assert_eq!(f.task("1")["outcome"], "agent_error");
    // Its dependents are blocked, the independent task completed.
    assert_eq!(f.task("2")["status"], "blocked");
    assert_eq!(f.task("3")["status"], "completed");
}

#[test]
fn workflow_fail_fast_starts_nothing_after_a_failure() {
    let md = "- [ ] 1. Fails\n  - _Verify: `false`_\n- [ ] 2. Later\n  - _Depends: 1_\n- [ ] 3. Independent but later\n  - _Depends: 4_\n- [ ] 4. Slow\n";
    // The flag, or dev mode's `fail_fast` setting (its default when no flag is given).
    for from_settings in [false, true] {
        let mut f = Flow::new(md);
        f.set("FAKE_SLOW", "4").set("FAKE_SLOW_SECS", "1");
        let mut args = vec!["--agent", "claude", "--attempts", "1", "--parallel", "2"];
        if from_settings {
            f.p.write(
                ".claude/settings.local.json",
                r#"{"resource_limits": {"max_load": 1000, "max_memory": 1.0, "high_impact_load": 1000},
                    "development_mode": {"fail_fast": true}}"#,
            );
        } else {
            args.push("--fail-fast");
        }
        let out = f.auto(&args);
        assert_eq!(code(&out), 1, "{}", diag(&out));
        assert_eq!(f.runs_of("4"), 1, "the running task finished");
        assert_eq!(
            f.runs_of("3"),
            0,
            "a new task started after the failure (settings: {from_settings})"
        );
    }
}

#[test]
fn workflow_offline_agent_completes_and_reports_in_json() {
    let f = Flow::new(THREE);
    let out = f.run(&[
        "--json",
        "workflow-auto",
        "offline-demo",
        "Say hello",
        "--agent",
        "offline",
    ]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let last = last_json(&out);
    assert_eq!(last["event"], "finished");
    assert_eq!(last["result"], "completed");
    assert!(last["total"].as_u64().unwrap() >= 1);
    assert_eq!(last["completed"], last["total"]);
    for line in stdout(&out).lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    assert!(f.log().is_empty(), "the fake claude ran");
}

/// The offline agent writes no code: a task whose `_Verify:_` fails cannot pass on a
/// second try. One attempt (whatever `--attempts` says), recorded `verify_failed` with the
/// verify's exit code and output; the output is kept whole in the run folder.
#[test]
fn workflow_offline_verify_failure_is_not_retried_and_keeps_the_output() {
    let md = "- [ ] 1. Never passes\n  - _Verify: `false`_\n- [ ] 2. Says why\n  - _Verify: `sh -c 'echo expected-42-got-41 >&2; exit 4'`_\n- [ ] 3. Passes\n  - _Verify: `true`_\n";
    let f = Flow::new(md);
    for (doc, text) in [
        ("requirements.md", "# R\n"),
        ("design.md", "# D\n"),
        ("tasks.md", md),
    ] {
        f.p.write(&format!(".claude/specs/demo/{doc}"), text);
    }
    let out = f.auto(&["--agent", "offline", "--attempts", "3"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let all = diag(&out);
    assert!(!all.contains("retrying"), "{all}");
    assert!(!all.contains("attempt 2"), "{all}");
    for (id, says) in [
        ("1", "`false` exited 1"),
        ("2", "exited 4 (expected-42-got-41)"),
    ] {
        let t = f.task(id);
        assert_eq!(t["status"], "failed", "{t}");
        assert_eq!(t["outcome"], "verify_failed", "{t}");
        assert_eq!(t["attempts"], 1, "{t}");
        let err = t["error"].as_str().unwrap();
        assert!(err.contains(says), "{id}: {err}");
        assert!(err.contains("not retried"), "{id}: {err}");
        // Exactly one run folder, whose stderr holds the verify's output.
        let runs: Vec<_> = std::fs::read_dir(f.p.claude().join("runs"))
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .contains(&format!("-demo-task-{id}-"))
            })
            .collect();
        assert_eq!(runs.len(), 1, "task {id}: {runs:?}");
        if id == "2" {
            let kept: String = std::fs::read_dir(runs[0].path())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().contains("stderr"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect();
            assert!(kept.contains("expected-42-got-41"), "{kept}");
        }
    }
    assert_eq!(f.task("3")["status"], "completed");
    assert!(f.log().is_empty(), "the fake claude ran");
}

#[test]
fn workflow_dry_run_starts_and_writes_nothing() {
    let f = Flow::new(THREE);
    f.p.write(".claude/specs/demo/tasks.md", THREE);
    let out = f.run(&[
        "workflow-auto",
        "demo",
        "desc",
        "--agent",
        "claude",
        "--dry-run",
    ]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(stderr(&out).contains("task 2 Second"), "{}", diag(&out));
    assert!(f.log().is_empty());
    assert!(!f.path().join(".claude/unified_state.json").exists());
}

#[test]
fn workflow_task_refused_by_admission_stays_pending_with_the_limit_named() {
    let f = Flow::new(THREE);
    f.p.refuse_admission(1);
    for (doc, text) in [
        ("requirements.md", "# R\n"),
        ("design.md", "# D\n"),
        ("tasks.md", "- [ ] 1. Only\n"),
    ] {
        f.p.write(&format!(".claude/specs/demo/{doc}"), text);
    }
    let out = f.auto(&["--agent", "claude"]);
    // Nothing failed: "incomplete", the resumable exit 3 (rev6a L5).
    assert_eq!(code(&out), 3, "{}", diag(&out));
    assert!(f.log().is_empty(), "an agent ran without admission");
    let t1 = f.task("1");
    // No agent ran: not failed, left for `workflow-continue` (rev5a M2).
    assert_eq!(t1["status"], "pending", "{t1}");
    assert_eq!(t1["outcome"], "not_admitted", "{t1}");
    assert!(t1["error"].as_str().unwrap().contains("max_memory"), "{t1}");
}

/// Issue 14 item 7: a tick changes one byte of tasks.md, not its mode nor its symlink.
#[test]
fn workflow_tick_keeps_the_mode_and_the_symlink_of_tasks_md() {
    use std::os::unix::fs::PermissionsExt;
    for (link, perm) in [("relative", 0o664), ("absolute", 0o644), ("none", 0o600)] {
        let f = Flow::new(THREE);
        let spec_dir = f.path().join(".claude/specs/demo");
        std::fs::create_dir_all(&spec_dir).unwrap();
        let in_spec = spec_dir.join("tasks.md");
        let real = f.path().join("plans/tasks.md");
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        let target = if link == "none" { &in_spec } else { &real };
        let text = THREE.replace('\n', "\r\n");
        std::fs::write(target, &text).unwrap();
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(perm)).unwrap();
        match link {
            "relative" => std::os::unix::fs::symlink("../../../plans/tasks.md", &in_spec).unwrap(),
            "absolute" => std::os::unix::fs::symlink(&real, &in_spec).unwrap(),
            _ => {}
        }
        let out = f.auto(&["--agent", "claude"]);
        assert_eq!(code(&out), 0, "{link}: {}", diag(&out));
        let is_link = std::fs::symlink_metadata(&in_spec)
            .unwrap()
            .file_type()
            .is_symlink();
        assert_eq!(is_link, link != "none", "{link}");
        let after = std::fs::read_to_string(target).unwrap();
        assert_eq!(after, text.replace("- [ ]", "- [x]"), "{link}");
        let m = std::fs::metadata(target).unwrap().permissions().mode() & 0o7777;
        assert_eq!(m, perm, "{link}");
    }
}
