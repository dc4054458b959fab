//! The execution trace in `.claude/logs/` (CONTRACT §7): commands with their arguments
//! and exit, phases, task attempts greppable by `spec=NAME task=ID`, processes ended by
//! `qw exec`, and the one-time fallback notice.

use std::time::Duration;

use crate::support::*;

/// Every daily log file of the project, concatenated in date order.
fn log_text(p: &TestProject) -> String {
    let mut files: Vec<_> = std::fs::read_dir(p.claude().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect()
}

/// The lines of `text` that hold every one of `parts`.
fn lines_with<'a>(text: &'a str, parts: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .collect()
}

/// The value of `key=` in a trace line (up to the next space).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!(" {key}=");
    let at = line.find(&pat)? + pat.len();
    line[at..].split(' ').next()
}

const PHASES: [&str; 5] = [
    "requirements_generation",
    "design_creation",
    "task_generation",
    "implementation",
    "validation",
];

/// Run the offline workflow for spec `demo` and return the log.
fn offline_workflow(p: &TestProject) -> String {
    let out = p.run(&["workflow-auto", "demo", "Say hello", "--agent", "offline"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    log_text(p)
}

#[test]
fn trace_workflow_logs_phases_and_each_task_attempt_greppable_by_spec_and_task() {
    let p = TestProject::new();
    let log = offline_workflow(&p);

    // The command, quoted, and its exit.
    let started = lines_with(&log, &["command started", "workflow-auto demo 'Say hello'"]);
    assert_eq!(started.len(), 1, "{log}");
    let pid = field(started[0], "pid").unwrap();
    let ended = lines_with(&log, &["command ended", &format!("pid={pid} exit=0")]);
    assert_eq!(ended.len(), 1, "{log}");

    for phase in PHASES {
        for what in ["phase started", "phase finished"] {
            let want = format!("spec=demo phase={phase}");
            assert_eq!(
                lines_with(&log, &[what, &want]).len(),
                1,
                "{what} {phase}:\n{log}"
            );
        }
    }

    let planned = lines_with(&log, &["tasks planned spec=demo"]);
    assert_eq!(planned.len(), 1, "{log}");
    let tasks: usize = field(planned[0], "tasks").unwrap().parse().unwrap();
    assert!(tasks >= 1, "{log}");
    for id in 1..=tasks {
        let key = format!("spec=demo task={id} ");
        let started = lines_with(&log, &["attempt started", &key]);
        assert_eq!(started.len(), 1, "task {id}:\n{log}");
        let finished = lines_with(&log, &["attempt finished", &key]);
        assert_eq!(finished.len(), 1, "task {id}:\n{log}");
        let line = finished[0];
        assert_eq!(field(line, "attempt"), Some("1"), "{line}");
        assert_eq!(field(line, "agent"), Some("offline"), "{line}");
        assert_eq!(field(line, "outcome"), Some("succeeded"), "{line}");
        let run_id = field(line, "run_id").unwrap();
        assert_eq!(field(started[0], "run_id"), Some(run_id), "{log}");
        assert!(
            p.claude().join("runs").join(run_id).is_dir(),
            "run id {run_id} names no run folder"
        );
        let secs: f64 = field(line, "duration_s").unwrap().parse().unwrap();
        assert!(secs >= 0.0, "{line}");
        let cost: f64 = field(line, "cost_usd").unwrap().parse().unwrap();
        assert_eq!(cost, 0.0, "the offline agent costs nothing: {line}");
        // One task's whole history is one grep.
        assert!(lines_with(&log, &[&key]).len() >= 2, "{log}");
    }
    // The documents' attempts carry their phase and no task.
    let req = lines_with(&log, &["attempt finished", "phase=requirements_generation"]);
    assert_eq!(req.len(), 1, "{log}");
    assert_eq!(field(req[0], "task"), None, "{}", req[0]);
    // Admission decisions, and the run's end.
    assert!(
        lines_with(&log, &["admission granted", "waited_s="]).len() >= PHASES.len(),
        "{log}"
    );
    assert_eq!(
        lines_with(&log, &["workflow finished spec=demo", "ending=completed"]).len(),
        1,
        "{log}"
    );
    // Info level only outside dev mode; one line per event.
    assert!(!log.contains(" DEBUG "), "{log}");
    assert!(
        log.lines()
            .all(|l| l.starts_with(|c: char| c.is_ascii_digit())),
        "a line that is not an event:\n{log}"
    );
}

#[test]
fn trace_dev_mode_adds_debug_lines() {
    let p = TestProject::new();
    assert_eq!(p.run(&["dev-mode", "on"]).status.code(), Some(0));
    let log = offline_workflow(&p);
    assert!(
        !lines_with(&log, &[" DEBUG ", "task planned spec=demo task=1 "]).is_empty(),
        "{log}"
    );
    assert!(
        !lines_with(&log, &[" DEBUG ", "workflow options spec=demo"]).is_empty(),
        "{log}"
    );
    // The info lines are all still there.
    assert_eq!(
        lines_with(&log, &["attempt finished", "spec=demo task=1 "]).len(),
        1,
        "{log}"
    );
}

#[test]
fn trace_exec_logs_its_command_exit_and_the_processes_it_ended() {
    let p = TestProject::new();
    let mark = marker();
    let _guard = MarkerGuard(mark.clone());
    // The direct child leaves a `setsid` grandchild behind: the supervisor ends it.
    let out = p
        .qw(&[
            "exec",
            "--grace",
            "2",
            "--",
            "sh",
            "-c",
            // Exits once the grandchild runs `sleep` (else it may be ended while
            // still `setsid`, and named so), at most about 5 s.
            "setsid sleep 37 & p=$!; n=0; while [ \"$(cat /proc/$p/comm 2>/dev/null)\" != sleep ] && [ $n -lt 500 ]; do sleep 0.01; n=$((n+1)); done; exit 3",
        ])
        .env("QW_TEST_MARKER", &mark)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let log = log_text(&p);

    let started = lines_with(&log, &["command started", "exec --grace 2 -- sh -c"]);
    assert_eq!(started.len(), 1, "{log}");
    assert!(
        started[0].contains("'setsid sleep 37 & p=$!;"),
        "argv not quoted: {}",
        started[0]
    );
    let pid = field(started[0], "pid").unwrap();
    assert_eq!(
        lines_with(&log, &["command ended", &format!("pid={pid} exit=3")]).len(),
        1,
        "{log}"
    );
    let finished = lines_with(&log, &["exec finished", "outcome=exited", "exit=3"]);
    assert_eq!(finished.len(), 1, "{log}");
    assert!(finished[0].contains("program=sh -c"), "{}", finished[0]);
    assert_eq!(field(finished[0], "leftovers_killed"), Some("1"), "{log}");

    let ended = lines_with(&log, &["exec ended a leftover process", "sleep 37"]);
    assert_eq!(ended.len(), 1, "{log}");
    let leftover: i32 = field(ended[0], "pid").unwrap().parse().unwrap();
    assert!(leftover > 1);
    assert!(
        wait_until(Duration::from_secs(5), || !std::path::Path::new(&format!(
            "/proc/{leftover}"
        ))
        .exists()
            || std::fs::read_to_string(format!("/proc/{leftover}/stat"))
                .is_ok_and(|s| s.contains(") Z "))),
        "the leftover {leftover} is still alive"
    );
}

#[test]
fn trace_exec_outside_a_project_writes_no_log() {
    let p = TestProject::bare();
    let tmp = p.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = p
        .qw(&["exec", "--", "true"])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!p.claude().exists());
    // Not even the fallback.
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn trace_unwritable_logs_give_one_notice_and_the_command_succeeds() {
    let p = TestProject::new();
    let tmp = p.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    // A file where `.claude/logs/` should be cannot be written, even by root.
    p.write(".claude/logs", "not a directory");
    let out = p
        .qw(&["exec", "--", "sh", "-c", "exit 0"])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    // The command's first event (its start) already meets the failure: one notice.
    assert_eq!(err.matches("cannot write logs").count(), 1, "{err}");
    // The trace went on in the fallback file.
    let dir = std::fs::read_dir(&tmp)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains("command started"), "{text}");
    assert!(text.contains("command ended"), "{text}");

    // A whole workflow likewise: still one notice, and it completes.
    let out = p
        .qw(&["workflow-auto", "demo", "Say hello", "--agent", "offline"])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).matches("cannot write logs").count(),
        1,
        "{}",
        stderr(&out)
    );
}

/// Write a spec whose documents exist, with `tasks_md` as its task list.
fn spec_with_tasks(p: &TestProject, spec: &str, tasks_md: &str) {
    for (doc, text) in [
        ("requirements.md", "# R\n"),
        ("design.md", "# D\n"),
        ("tasks.md", tasks_md),
    ] {
        p.write(&format!(".claude/specs/{spec}/{doc}"), text);
    }
}

/// Reconcile's repairs are in the trace, each greppable by spec and task with what was
/// repaired, and the error it records in the state is a recorded-error line too.
#[test]
fn trace_logs_reconcile_repairs_and_their_recorded_error() {
    let p = TestProject::new();
    let md =
        "- [ ] 1. Fails\n  - _Verify: `test -e fixed`_\n- [ ] 2. Passes\n  - _Verify: `true`_\n";
    spec_with_tasks(&p, "rec", md);
    let out = p.run(&["workflow-auto", "rec", "Reconcile me", "--agent", "offline"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // A tick against a recorded failed attempt: reconcile unticks it; task 2 is completed
    // in the state: its box is unticked by hand, and reconcile ticks it again.
    let path = p.claude().join("specs/rec/tasks.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .replace("- [ ] 1. Fails", "- [x] 1. Fails")
        .replace("- [x] 2. Passes", "- [ ] 2. Passes");
    std::fs::write(&path, text).unwrap();
    p.write("fixed", "");
    let out = p.run(&["workflow-continue", "rec", "--agent", "offline"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = log_text(&p);
    for (task, repair) in [("1", "unticked"), ("2", "ticked")] {
        let lines = lines_with(
            &log,
            &[&format!("spec=rec task={task} "), "component=reconcile"],
        );
        assert_eq!(lines.len(), 1, "task {task}:\n{log}");
        assert_eq!(field(lines[0], "repair"), Some(repair), "{}", lines[0]);
        assert!(lines[0].contains("repaired: task"), "{}", lines[0]);
    }
    let errors = lines_with(
        &log,
        &[" ERROR ", "spec=rec", "component=reconcile", "repairs=2"],
    );
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains("disagreed on 2 task(s)"),
        "{}",
        errors[0]
    );
    // One line per repair: not also an untargeted copy, nor a plain note.
    assert_eq!(lines_with(&log, &["repaired: task 1 "]).len(), 1, "{log}");
}

/// Processes a workflow's agent run or `_Verify:_` left behind are ended by the
/// supervisor, and the trace names each (pid and command), as `qw exec` does.
#[test]
fn trace_logs_the_leftover_processes_ended_inside_a_workflow() {
    let p = TestProject::new();
    let mark = marker();
    let _guard = MarkerGuard(mark.clone());
    // The offline agent runs the verify itself, then qw runs it: both leave a `setsid`
    // grandchild behind.
    let md = "- [ ] 1. Leaves a process\n  - _Verify: `sh -c 'setsid sleep 39 >/dev/null 2>&1 & exit 0'`_\n";
    spec_with_tasks(&p, "left", md);
    let out = p
        .qw(&[
            "workflow-auto",
            "left",
            "Leftovers",
            "--agent",
            "offline",
            "--grace",
            "2",
        ])
        .env("QW_TEST_MARKER", &mark)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = log_text(&p);
    let finished = lines_with(&log, &["attempt finished", "spec=left task=1 "]);
    assert_eq!(finished.len(), 1, "{log}");
    let run_id = field(finished[0], "run_id").unwrap();
    for of in ["agent", "verify"] {
        let ended = lines_with(
            &log,
            &[
                "ended a leftover process",
                "spec=left task=1 ",
                &format!("of={of} "),
                "sleep 39",
            ],
        );
        assert_eq!(ended.len(), 1, "{of}:\n{log}");
        assert_eq!(field(ended[0], "run_id"), Some(run_id), "{}", ended[0]);
        let pid: i32 = field(ended[0], "pid").unwrap().parse().unwrap();
        assert!(pid > 1);
    }
    assert!(
        wait_until(Duration::from_secs(10), || pids_with_env(
            "QW_TEST_MARKER",
            &mark
        )
        .is_empty()),
        "a leftover is still alive"
    );
}
