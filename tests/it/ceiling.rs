//! Honest outcomes at the edges (rev11b F1, F4, F5, L1): a run that crosses its cost
//! ceiling says so and the refusal that follows names what it added up; a `_Verify:_`
//! failure after a refused command is `permission_denied`, with the refusal, not
//! retried; a second start on a running spec exits 2 and `status` does not suggest it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::flow::{Flow, code, diag};
use crate::support::*;

const TWO: &str = "# Tasks\n\n- [ ] 1. First\n- [ ] 2. Second\n  - _Depends: 1_\n";

#[test]
fn a_run_over_its_per_task_ceiling_is_said_and_the_refusal_names_the_expected_cost() {
    let mut f = Flow::new(TWO);
    f.set("FAKE_COST_IMPL", "3.00");
    let out = f.auto(&["--agent", "claude", "--max-cost-per-task", "1"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 3, "{}", diag(&out));
    assert!(
        err.contains("cost $3.00 crossed the per-task ceiling $1.00"),
        "the crossing is said at once: {}",
        diag(&out)
    );
    let t1 = f.task("1");
    assert_eq!(t1["status"], "completed", "its work is done: {t1}");
    assert!(
        t1["evidence"]
            .as_str()
            .is_some_and(|e| e.contains("cost $3.00 crossed the per-task ceiling $1.00")),
        "{t1}"
    );
    assert_eq!(f.runs_of("2"), 0, "no new work after the crossing");
    assert!(
        err.contains("expected $3.00 (largest run so far) + $0.00 spent would cross the per-task cost ceiling of $1.00"),
        "the refusal names what it added up: {}",
        diag(&out)
    );
    assert!(!err.contains("would be crossed ($"), "{}", diag(&out));
}

#[test]
fn a_run_over_the_per_run_ceiling_is_said() {
    let mut f = Flow::new(TWO);
    f.set("FAKE_COST_IMPL", "16.00");
    let out = f.auto(&["--agent", "claude", "--max-cost-per-run", "5"]);
    assert_eq!(code(&out), 3, "{}", diag(&out));
    assert!(
        stderr(&out).contains("cost $16.00 crossed the per-run ceiling $5.00"),
        "{}",
        diag(&out)
    );
}

/// The fake claude, but task 1's implementation run is refused a Bash command (the
/// result lists it in `permission_denials`, `is_error` false) and writes nothing.
fn with_refused_bash(f: &Flow) {
    let bin = f.path().join("bin");
    std::fs::rename(bin.join("claude"), bin.join("claude.real")).unwrap();
    f.p.script(
        "bin/claude",
        r#"#!/bin/sh
if [ "$QW_PHASE" = implementation ] && [ "$QW_TASK_ID" = 1 ]; then
  [ -n "$FAKE_LOG" ] && echo "start implementation 1 $(date +%s%3N)" >> "$FAKE_LOG"
  echo '{"type":"result","subtype":"success","is_error":false,"num_turns":2,"result":"I could not run the command.","session_id":"00000000-0000-4000-8000-000000000001","total_cost_usd":0,"permission_denials":[{"tool_name":"Bash","tool_use_id":"t1","tool_input":{"command":"npm install"}}]}'
  exit 0
fi
exec "$(dirname "$0")/claude.real" "$@"
"#,
    );
}

#[test]
fn a_verify_failure_after_a_refused_command_is_permission_denied_and_not_retried() {
    let f = Flow::new(
        "# Tasks\n\n- [ ] 1. Install\n  - _Verify: `test -s hello.txt`_\n- [ ] 2. Second\n",
    );
    with_refused_bash(&f);
    let out = f.auto(&["--agent", "claude", "--attempts", "3", "--parallel", "1"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(
        f.runs_of("1"),
        1,
        "a retry meets the same refusal: {}",
        diag(&out)
    );
    let t1 = f.task("1");
    assert_eq!(t1["outcome"], "permission_denied", "{t1}");
    let ev = t1["evidence"].as_str().unwrap_or_default();
    assert!(
        ev.contains("test -s hello.txt"),
        "the verify is named: {t1}"
    );
    assert!(ev.contains("Bash"), "the refused tool is named: {t1}");
    assert!(ev.contains("npm"), "the refused command is named: {t1}");
    assert!(ev.contains("permissions.allow"), "the way out: {t1}");
    let report = f.p.read(".claude/specs/demo/report.md");
    assert!(
        report.contains("npm"),
        "the report keeps the refusal:\n{report}"
    );
}

#[test]
fn a_second_start_on_a_running_spec_exits_2_and_status_does_not_suggest_it() {
    let mut f = Flow::new(TWO);
    f.set("FAKE_SLOW", "1").set("FAKE_SLOW_SECS", "4");
    let mut child = f
        .cmd(&[
            "workflow-auto",
            "demo",
            "A demo feature",
            "--agent",
            "claude",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until task 1 runs (its workflow lock held), at most 60 s.
    let start = Instant::now();
    let mut status = String::new();
    while start.elapsed() < Duration::from_secs(60) {
        status = stdout(&f.run(&["status"]));
        if status.contains("running 1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let auto = f.run(&[
        "workflow-auto",
        "demo",
        "A demo feature",
        "--agent",
        "claude",
    ]);
    let cont = f.run(&["workflow-continue", "demo"]);
    let spec_status = stdout(&f.run(&["spec-status", "demo"]));
    let done = child.wait().unwrap();
    assert!(status.contains("running 1"), "{status}");
    assert_eq!(code(&auto), 2, "nothing was started: {}", diag(&auto));
    assert!(stderr(&auto).contains("already running"), "{}", diag(&auto));
    assert_eq!(code(&cont), 2, "nothing was started: {}", diag(&cont));
    assert!(
        !status.contains("next: qw workflow-continue demo"),
        "a command that would be refused: {status}"
    );
    assert!(
        status.contains("next: nothing while its workflow runs (qw pid"),
        "{status}"
    );
    assert!(
        spec_status.contains("nothing while its workflow runs"),
        "{spec_status}"
    );
    assert!(done.success(), "the first workflow completes");
}
