//! Issue 14 item 5: the state and tasks.md are reconciled on every start and resume
//! (the state is the record), each repair goes through the normal durable paths and is
//! reported, and nothing is lost.

use serde_json::Value;

use crate::support::*;

/// Put a wrapper in front of the fake `claude`: when the implementation of task
/// `$BREAK_AT` runs, it appends a line that makes tasks.md unparseable (a duplicate id),
/// so the tick after it fails.
fn with_breaking_agent(f: &mut Flow, at: &str) {
    let bin = f.path().join("bin");
    std::fs::rename(bin.join("claude"), bin.join("claude-real")).unwrap();
    f.p.script(
        "bin/claude",
        r#"#!/bin/sh
if [ "$QW_PHASE" = implementation ] && [ "$QW_TASK_ID" = "$BREAK_AT" ]; then
  printf -- '- [ ] 1. A duplicate id\n' >> ".claude/specs/$QW_SPEC/tasks.md"
fi
exec "$(dirname "$0")/claude-real" "$@"
"#,
    );
    f.set("BREAK_AT", at);
}

fn reconcile_errors(state: &Value) -> Vec<Value> {
    state["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["component"] == "reconcile")
        .cloned()
        .collect()
}

fn repairs_of(state: &Value) -> Vec<(String, String)> {
    reconcile_errors(state)
        .iter()
        .flat_map(|e| e["context"]["repairs"].as_array().unwrap().clone())
        .map(|r| {
            (
                r["repair"].as_str().unwrap().to_owned(),
                r["task"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn repair_lines(out: &std::process::Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.contains("repaired:"))
        .map(str::to_owned)
        .collect()
}

fn no_process_left(f: &Flow) {
    assert!(
        pids_with_env("QW_TEST_MARKER", &f.guard.0).is_empty(),
        "a process of the test outlived qw"
    );
}

/// The reproduction: the tick after task 2 fails because tasks.md was edited into a
/// parse error mid-run. Task 2 is completed in the state and unticked in the file.
/// `workflow-continue` on the still-broken file refuses (exit 2, file and line, nothing
/// changed); once the file is fixed it ticks task 2 without running it again.
#[test]
fn reconcile_a_tick_lost_to_a_mid_run_parse_error_is_restored_on_continue() {
    let mut f = Flow::new(THREE);
    with_breaking_agent(&mut f, "2");
    let out = f.auto(&["--agent", "claude", "--parallel", "1"]);
    assert_ne!(code(&out), 0, "{}", diag(&out));
    assert_eq!(f.task("2")["status"], "completed", "{}", diag(&out));
    let broken = f.tasks_md();
    assert!(broken.contains("- [ ] 2. Second"), "{broken}");
    assert!(broken.contains("- [x] 1. First"), "{broken}");
    no_process_left(&f);

    // Still broken: one line naming the file and the line, exit 2, nothing written.
    let state_before = f.p.read(".claude/unified_state.json");
    let out = f.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    let err = stderr(&out);
    let dup_line = broken.lines().count();
    assert!(
        err.contains("tasks.md") && err.contains(&format!("line {dup_line}")),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(f.p.read(".claude/unified_state.json"), state_before);
    assert_eq!(f.tasks_md(), broken);

    // Fixed by hand (the extra line removed): continue repairs and finishes.
    let fixed = broken.replace("- [ ] 1. A duplicate id\n", "");
    f.p.write(".claude/specs/demo/tasks.md", &fixed);
    f.set("BREAK_AT", "none");
    let out = f.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let lines = repair_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("task 2") && lines[0].contains("ticked"),
        "{lines:?}"
    );
    let md = f.tasks_md();
    assert_eq!(
        md,
        fixed.replace("- [ ]", "- [x]"),
        "only the boxes changed"
    );
    assert_eq!(f.runs_of("2"), 1, "a completed task never runs again");
    assert_eq!(f.runs_of("1"), 1);
    assert_eq!(f.runs_of("3"), 1);
    let state = f.state();
    assert_eq!(repairs_of(&state), [("ticked".into(), "2".into())]);
    for id in ["1", "2", "3"] {
        assert_eq!(f.task(id)["status"], "completed", "{id}");
    }
    assert_eq!(
        f.task("2")["session_id"],
        fake_sid("fake", "2"),
        "the record is kept"
    );

    // Agreeing sides: the next start repairs nothing and records nothing.
    let out = f.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(repair_lines(&out).is_empty(), "{}", diag(&out));
    assert_eq!(reconcile_errors(&f.state()).len(), 1);
    no_process_left(&f);
}

/// A task inserted in the middle renumbers the ones after it: their records (status,
/// attempts, session) follow their titles, the new task runs, the completed one does not,
/// and a task ticked by hand that the state never ran counts as done.
#[test]
fn reconcile_renumbered_tasks_keep_their_records_and_a_hand_tick_is_kept() {
    let mut f = Flow::new(THREE);
    f.set("FAKE_FAIL", "3:5");
    let out = f.auto(&["--agent", "claude", "--parallel", "1", "--attempts", "1"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(f.task("3")["status"], "failed");
    assert_eq!(f.runs_of("3"), 1);

    let edited = "# Tasks\n\n- [x] 1. First\n  - do it\n  - _Requirements: 1_\n- [ ] 2. Inserted\n- [x] 3. Second\n  - _Depends: 1_\n- [ ] 4. Third\n- [x] 5. Done by hand\n";
    f.p.write(".claude/specs/demo/tasks.md", edited);
    let out = f.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let lines = repair_lines(&out);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("task 2 \"Second\" is task 3")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("task 3 \"Third\" is task 4")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("task 5") && l.contains("by hand")),
        "{lines:?}"
    );
    let mut repairs = repairs_of(&f.state());
    repairs.sort();
    assert_eq!(
        repairs,
        [
            ("completed_from_file".to_owned(), "5".to_owned()),
            ("renumbered".into(), "3".into()),
            ("renumbered".into(), "4".into()),
        ]
    );
    // Second (now 3) did not run again; Inserted (2) and Third (now 4) ran once here.
    assert_eq!(f.runs_of("3"), 1, "only the first run's Third");
    assert_eq!(f.runs_of("2"), 2, "Second in the first run, Inserted now");
    assert_eq!(f.runs_of("4"), 1);
    assert_eq!(f.runs_of("5"), 0, "ticked by hand: not run");
    let second = f.task("3");
    assert_eq!(second["description"], "Second");
    assert_eq!(second["session_id"], fake_sid("fake", "2"));
    assert_eq!(second["renumbered_from"], "2");
    let third = f.task("4");
    assert_eq!(third["status"], "completed");
    assert_eq!(third["attempts"], 2, "its failed attempt is kept: {third}");
    assert_eq!(third["renumbered_from"], "3");
    assert_eq!(f.task("5")["completed_by"], "tasks.md");
    assert_eq!(f.task("2")["description"], "Inserted");
    assert_eq!(f.tasks_md(), edited.replace("- [ ]", "- [x]"));
    no_process_left(&f);
}

/// A completed task deleted from tasks.md keeps its record under `orphaned_tasks`; a
/// failed task ticked behind qw's back (as a misbehaving agent would) is unticked and
/// runs again. The repairs write through the symlink and keep the file's mode.
#[test]
fn reconcile_a_deleted_task_is_kept_aside_and_a_contradicted_tick_is_undone() {
    use std::os::unix::fs::PermissionsExt;
    let mut f = Flow::new(THREE);
    f.set("FAKE_FAIL", "3:1");
    let out = f.auto(&["--agent", "claude", "--parallel", "1", "--attempts", "1"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(f.task("3")["status"], "failed");

    // Task 2 deleted, task 3 ticked; tasks.md is now a symlink to a 0640 file.
    let edited = "# Tasks\n\n- [x] 1. First\n  - do it\n  - _Requirements: 1_\n- [x] 3. Third\n";
    let real = f.p.write("plans/tasks.md", edited);
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    let in_spec = f.path().join(".claude/specs/demo/tasks.md");
    std::fs::remove_file(&in_spec).unwrap();
    std::os::unix::fs::symlink("../../../plans/tasks.md", &in_spec).unwrap();

    let out = f.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let lines = repair_lines(&out);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("task 2 \"Second\"") && l.contains("orphaned_tasks")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("task 3") && l.contains("unticked")),
        "{lines:?}"
    );
    assert_eq!(f.runs_of("3"), 2, "the contradicted tick did not skip it");
    assert_eq!(f.runs_of("2"), 1);
    let state = f.state();
    let spec = &state["specifications"]["demo"];
    assert!(spec["tasks"].get("2").is_none(), "{spec}");
    let kept = &spec["orphaned_tasks"]["2"];
    assert_eq!(kept["status"], "completed", "{kept}");
    assert_eq!(kept["session_id"], fake_sid("fake", "2"), "{kept}");
    assert_eq!(f.task("3")["status"], "completed");
    assert_eq!(spec["progress_percentage"], 100.0, "{spec}");
    // Unticked by the repair, ticked again by the run: the same bytes, same file.
    assert!(
        std::fs::symlink_metadata(&in_spec)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&real).unwrap(), edited);
    let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640);
    let mut repairs = repairs_of(&state);
    repairs.sort();
    assert_eq!(
        repairs,
        [
            ("orphaned".to_owned(), "2".to_owned()),
            ("unticked".into(), "3".into())
        ]
    );
    no_process_left(&f);
}

/// A tasks.md that is not UTF-8 at resume is bad input like a parse error: exit 2, one
/// line naming the file and the line, and neither the state nor the file is touched.
#[test]
fn reconcile_a_tasks_md_that_is_not_utf8_is_refused_before_anything_changes() {
    let f = Flow::new(THREE);
    let out = f.auto(&["--agent", "claude", "--parallel", "1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let path = f.path().join(".claude/specs/demo/tasks.md");
    let mut bytes = std::fs::read(&path).unwrap();
    let third = bytes.windows(5).position(|w| w == b"Third").unwrap();
    bytes[third] = 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let line = bytes[..third].iter().filter(|b| **b == b'\n').count() + 1;
    let state_before = f.p.read(".claude/unified_state.json");
    let out = f.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    let err = stderr(&out);
    assert!(
        err.contains("tasks.md") && err.contains(&format!("line {line},")) && err.contains("UTF-8"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(f.p.read(".claude/unified_state.json"), state_before);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    no_process_left(&f);
}

/// A task ticked in tasks.md that qw never ran is never presented as run and verified:
/// the state records `completed_by: "tasks.md"` with no attempt, and `spec-status` and
/// the report say "ticked by hand, not run by qw". Two shapes: a hand-written tasks.md
/// with a tick before the first run, and a ticked task added before a continue (said in
/// a `repaired:` line) — after which validation runs again, as tasks completed after it.
#[test]
fn a_task_ticked_by_hand_is_never_shown_as_run_by_qw() {
    const BY_HAND: &str = "ticked by hand, not run by qw";
    let p = TestProject::new();
    p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"max_load": 1000, "max_memory": 1.0, "high_impact_load": 1000}}"#,
    );
    p.write(".claude/specs/demo/requirements.md", "# R\n\n1. x\n");
    p.write(".claude/specs/demo/design.md", "# D\n\nx\n");
    p.write(
        ".claude/specs/demo/tasks.md",
        "# Tasks\n\n- [ ] 1. Run me\n  - _Verify: `true`_\n- [x] 2. Done by hand\n",
    );
    let auto = [
        "workflow-auto",
        "demo",
        "d",
        "--agent",
        "offline",
        "--isolate",
        "none",
    ];
    let out = p.run(&auto);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    // The first run says what it took from the file, as a resume's repair does.
    let repaired = repair_lines(&out);
    assert!(
        repaired.len() == 1
            && repaired[0].contains("task 2 is ticked in")
            && repaired[0].contains(BY_HAND),
        "{}",
        stderr(&out)
    );
    let state: Value =
        serde_json::from_slice(&std::fs::read(p.claude().join("unified_state.json")).unwrap())
            .unwrap();
    let t2 = &state["specifications"]["demo"]["tasks"]["2"];
    assert_eq!(t2["status"], "completed", "{t2}");
    assert_eq!(t2["completed_by"], "tasks.md", "{t2}");
    assert_eq!(t2["attempts"].as_u64().unwrap_or(0), 0, "{t2}");
    let t1 = &state["specifications"]["demo"]["tasks"]["1"];
    assert!(t1.get("completed_by").is_none(), "{t1}");
    let report = p.read(".claude/specs/demo/report.md");
    let row2 = report.lines().find(|l| l.starts_with("| 2 |")).unwrap();
    assert!(
        row2.contains(BY_HAND) && !row2.contains("succeeded"),
        "{row2}"
    );
    let row1 = report.lines().find(|l| l.starts_with("| 1 |")).unwrap();
    assert!(row1.contains("succeeded"), "{row1}");
    let status = p.run(&["spec-status", "demo"]);
    let line2 = stdout(&status)
        .lines()
        .find(|l| l.trim_start().starts_with("2 ") && l.contains("Done by hand"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{}", diag(&status)));
    assert!(line2.contains(BY_HAND), "{line2}");

    // Shape 2: before a continue, a new task and a ticked one are added.
    let tasks = p.claude().join("specs/demo/tasks.md");
    let mut text = std::fs::read_to_string(&tasks).unwrap();
    text.push_str("- [ ] 3. New work\n  - _Verify: `true`_\n- [x] 4. Also by hand\n");
    std::fs::write(&tasks, &text).unwrap();
    let out = p.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let err = stderr(&out);
    assert!(
        repair_lines(&out)
            .iter()
            .any(|l| l.contains("task 4") && l.contains("completed by hand")),
        "{err}"
    );
    assert!(
        !err.contains("validation: skipped"),
        "validation must run again after new tasks completed: {err}"
    );
    assert!(err.contains("validation: succeeded"), "{err}");
    let report = p.read(".claude/specs/demo/report.md");
    let row4 = report.lines().find(|l| l.starts_with("| 4 |")).unwrap();
    assert!(row4.contains(BY_HAND), "{row4}");
    let row3 = report.lines().find(|l| l.starts_with("| 3 |")).unwrap();
    assert!(row3.contains("succeeded"), "{row3}");
    // Every tick stays where it was, the new task ticked by its run.
    let after = std::fs::read_to_string(&tasks).unwrap();
    assert_eq!(
        after,
        text.replace("- [ ] 3. New work", "- [x] 3. New work")
    );
}

/// A hand-ticked task's `_Verify:_` runs once, on the first run: passed → completed,
/// "ticked by hand, verified by qw" with the run's evidence; failed → unticked in the
/// file (one line says so) and run as a normal task. A task without a check is taken at
/// the user's word. Nothing is checked twice.
#[test]
fn a_hand_ticked_task_with_a_check_is_verified_once_or_unticked_and_run() {
    const BY_HAND: &str = "ticked by hand, not run by qw";
    const VERIFIED: &str = "ticked by hand, verified by qw";
    let p = TestProject::new();
    p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"max_load": 1000, "max_memory": 1.0, "high_impact_load": 1000}}"#,
    );
    p.write(".claude/specs/demo/requirements.md", "# R\n\n1. x\n");
    p.write(".claude/specs/demo/design.md", "# D\n\nx\n");
    // Fails the first time it runs (the hand tick is wrong), passes after (the task's run).
    p.script(
        "check.sh",
        "#!/bin/sh\nif [ -f once ]; then exit 0; fi\n: > once\necho 'not done yet' >&2\nexit 1\n",
    );
    // Counts its runs: it must run once only.
    p.script("count.sh", "#!/bin/sh\necho x >> count.log\n");
    let text = "# Tasks\n\n- [x] 1. Checked and true\n  - _Verify: `./count.sh`_\n- [x] 2. Ticked too early\n  - _Verify: `./check.sh`_\n- [x] 3. No check\n";
    let tasks = p.write(".claude/specs/demo/tasks.md", text);
    let auto = [
        "workflow-auto",
        "demo",
        "d",
        "--agent",
        "offline",
        "--isolate",
        "none",
    ];
    let out = p.run(&auto);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let err = stderr(&out);
    let repaired = repair_lines(&out);
    let line = |id: &str| {
        repaired
            .iter()
            .find(|l| l.contains(&format!("task {id} ")))
            .cloned()
            .unwrap_or_else(|| panic!("no repaired line for task {id}: {err}"))
    };
    let l1 = line("1");
    assert!(l1.contains("passed") && l1.contains(VERIFIED), "{l1}");
    let l2 = line("2");
    assert!(
        l2.contains("failed") && l2.contains("not done yet") && l2.contains("unticked it"),
        "{l2}"
    );
    let l3 = line("3");
    assert!(l3.contains(BY_HAND), "{l3}");
    assert_eq!(repaired.len(), 3, "{err}");
    assert_eq!(p.read("count.log"), "x\n", "task 1's check runs once");

    let state: Value =
        serde_json::from_slice(&std::fs::read(p.claude().join("unified_state.json")).unwrap())
            .unwrap();
    let tasks_of = &state["specifications"]["demo"]["tasks"];
    let t1 = &tasks_of["1"];
    assert_eq!(t1["status"], "completed", "{t1}");
    assert_eq!(t1["completed_by"], "tasks.md", "{t1}");
    assert_eq!(t1["attempts"].as_u64().unwrap_or(0), 0, "{t1}");
    assert_eq!(t1["verified_by_qw"]["command"], "./count.sh", "{t1}");
    let run = t1["verified_by_qw"]["run"].as_str().unwrap();
    assert!(
        p.claude()
            .join("runs")
            .join(run)
            .join("verify.log")
            .is_file(),
        "{t1}"
    );
    // Unticked, then run like any task: its own run completed it.
    let t2 = &tasks_of["2"];
    assert_eq!(t2["status"], "completed", "{t2}");
    assert!(t2.get("completed_by").is_none(), "{t2}");
    assert_eq!(t2["attempts"], 1, "{t2}");
    assert!(
        t2["hand_tick_verify_failed"]["evidence"]
            .as_str()
            .unwrap()
            .contains("not done yet"),
        "{t2}"
    );
    let t3 = &tasks_of["3"];
    assert_eq!(t3["completed_by"], "tasks.md", "{t3}");
    assert!(t3.get("verified_by_qw").is_none(), "{t3}");
    // Task 2 was unticked byte-exactly and ticked again by its run.
    assert_eq!(std::fs::read_to_string(&tasks).unwrap(), text);

    let report = p.read(".claude/specs/demo/report.md");
    let row = |id: &str| {
        report
            .lines()
            .find(|l| l.starts_with(&format!("| {id} |")))
            .unwrap()
            .to_owned()
    };
    assert!(row("1").contains(VERIFIED), "{}", row("1"));
    assert!(
        row("2").contains("succeeded") && !row("2").contains("by hand"),
        "{}",
        row("2")
    );
    assert!(row("3").contains(BY_HAND), "{}", row("3"));
    let status = p.run(&["spec-status", "demo"]);
    let s1 = stdout(&status)
        .lines()
        .find(|l| l.trim_start().starts_with("1 ") && l.contains("Checked and true"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{}", diag(&status)));
    assert!(s1.contains(VERIFIED), "{s1}");

    // A continue checks nothing again and repairs nothing.
    let out = p.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(repair_lines(&out).is_empty(), "{}", stderr(&out));
    assert_eq!(p.read("count.log"), "x\n", "task 1's check runs once");
}
