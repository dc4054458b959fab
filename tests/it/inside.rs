//! rev11a F2: a qw command run inside a task worktree (by the task's agent, or by a user
//! who `cd`s there) acts on the workflow's project, not on the worktree's own copy of
//! `.claude/`: `qw suggest`'s hand-off reaches the project (in a repository tracking
//! `.claude/` the task used to fail `workspace_error` "result changes
//! `.claude/next_command.txt`"; in one ignoring it the suggestion was silently lost),
//! `qw exec`'s record lands in the project's state, and `qw status` sees the running
//! workflow.

use crate::support::moves::{has, work};
use crate::support::*;
use crate::worktree::{Layout, Repo, Root};

/// Task 1 does its work, then runs `qw ARGS` in its worktree, its output kept in `out`.
fn work_then_qw(r: &Repo, args: &str, out: &str) {
    let script = format!(
        "{}'{}' {args} > '{out}' 2>&1\n",
        work("1"),
        qw_bin().display()
    );
    r.action("1", &script);
    r.action("2", &work("2"));
}

fn suggest_reaches_the_project(layout: Layout) {
    let r = Repo::build("- [ ] 1. Task 1\n- [ ] 2. Task 2\n", layout, Root::Default);
    let said = r.aux.path().join("suggest.out");
    work_then_qw(
        &r,
        "suggest '/spec-status demo'",
        &said.display().to_string(),
    );
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    let text = diag(&out);
    let said = std::fs::read_to_string(&said).unwrap_or_default();
    assert!(out.status.success(), "{text}\nsuggest said: {said}");
    assert_eq!(r.f.task("1")["status"], "completed", "{text}");
    let next = r.root().join(".claude/next_command.txt");
    assert_eq!(
        std::fs::read_to_string(&next)
            .unwrap_or_else(|e| panic!("{}: {e}\nsuggest said: {said}\n{text}", next.display()))
            .trim(),
        "/spec-status demo"
    );
    // Nothing of it went through the merge.
    assert!(!has(&r, "main", ".claude/next_command.txt"), "{text}");
    assert!(
        has(&r, "main", "f1.txt") && has(&r, "main", "f2.txt"),
        "{text}"
    );
    r.assert_no_process();
}

#[test]
fn inside_suggest_from_a_task_reaches_the_project_where_claude_is_tracked() {
    suggest_reaches_the_project(Layout::Tracked);
}

#[test]
fn inside_suggest_from_a_task_reaches_the_project_where_claude_is_ignored() {
    suggest_reaches_the_project(Layout::Ignored);
}

#[test]
fn inside_exec_from_a_task_is_recorded_in_the_projects_state() {
    let r = Repo::build(
        "- [ ] 1. Task 1\n- [ ] 2. Task 2\n",
        Layout::Tracked,
        Root::Aux,
    );
    let said = r.aux.path().join("exec.out");
    work_then_qw(
        &r,
        "exec -- echo marker-inside",
        &said.display().to_string(),
    );
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    let text = diag(&out);
    let said = std::fs::read_to_string(&said).unwrap_or_default();
    assert!(out.status.success(), "{text}\nexec said: {said}");
    assert!(said.contains("marker-inside"), "{said}");
    let state = std::fs::read_to_string(r.root().join(".claude/unified_state.json")).unwrap();
    assert!(
        state.contains("marker-inside"),
        "the project's state does not hold the task's `qw exec`: {said}\n{text}"
    );
    assert!(!has(&r, "main", ".claude/unified_state.json"), "{text}");
    r.assert_no_process();
}

#[test]
fn inside_status_from_a_task_shows_the_running_workflow() {
    let r = Repo::build("- [ ] 1. Task 1\n", Layout::Tracked, Root::Aux);
    let said = r.aux.path().join("status.out");
    let script = format!(
        "{}'{}' status > '{}' 2>&1\n",
        work("1"),
        qw_bin().display(),
        said.display()
    );
    r.action("1", &script);
    let out = r.auto(&["--isolate", "worktree"]);
    let text = diag(&out);
    assert!(out.status.success(), "{text}");
    let said = std::fs::read_to_string(&said).unwrap();
    assert!(!said.contains("no specs"), "{said}");
    assert!(said.contains("demo"), "{said}");
    r.assert_no_process();
}

// rev11b F2: `--stall-timeout` never fired for the real claude CLI, whose own process
// keeps using CPU and doing small reads and writes while it waits on an API call that
// never answers. For claude's event stream the sign of life is a new event, or a tool
// (a process below the CLI) at work.

/// A program that prints one event, then keeps its own process lightly busy (writing a
/// file, never stdout) and prints nothing more — the hung CLI's shape. With `tool`, it
/// first runs a child that writes a file for ~3 s (a tool at work), then exits 0.
fn hung_cli(dir: &std::path::Path, tool: bool) -> String {
    let fifo = dir.join("fifo");
    let _ = std::process::Command::new("mkfifo").arg(&fifo).status();
    let beat = dir.join("beat");
    let lead = format!(
        "echo '{{\"type\":\"system\",\"subtype\":\"init\"}}'\nexec 3<>'{}'\n",
        fifo.display()
    );
    if tool {
        format!(
            "{lead}bash -c 'exec 3<>\"{f}\"; for i in $(seq 30); do echo $i > \"{b}.tool\"; read -t 0.1 -u 3 x; done'\necho '{{\"type\":\"result\"}}'\n",
            f = fifo.display(),
            b = beat.display()
        )
    } else {
        format!(
            "{lead}i=0; while :; do i=$((i+1)); echo $i > '{}'; read -t 0.05 -u 3 x; done\n",
            beat.display()
        )
    }
}

fn exec_json(p: &TestProject, args: &[&str]) -> (std::process::Output, serde_json::Value) {
    let mut all = vec!["exec", "--json", "--no-record", "--grace", "0.5"];
    all.extend_from_slice(args);
    let out = p.run(&all);
    let report = last_json(&out);
    (out, report)
}

#[test]
fn inside_stall_on_events_ends_a_cli_busy_with_itself_but_silent() {
    let p = TestProject::bare();
    let events = p.path().join("events.jsonl");
    let script = hung_cli(p.path(), false);
    let (out, r) = exec_json(
        &p,
        &[
            "--stall-timeout",
            "2",
            "--stall-on-events",
            "--timeout",
            "60",
            "--stdout-file",
            events.to_str().unwrap(),
            "--",
            "bash",
            "-c",
            &script,
        ],
    );
    assert_eq!(out.status.code(), Some(124), "{r}\n{}", diag(&out));
    assert_eq!(r["stalled"], true, "{r}");
    assert_eq!(r["timed_out"], false, "{r}");
    assert!(cookie_pids(r["run_id"].as_str().unwrap()).is_empty());

    // The generic watchdog (any other command) still counts the program's own work.
    let (out, r) = exec_json(
        &p,
        &[
            "--stall-timeout",
            "2",
            "--timeout",
            "5",
            "--stdout-file",
            events.to_str().unwrap(),
            "--",
            "bash",
            "-c",
            &script,
        ],
    );
    assert_eq!(out.status.code(), Some(124), "{r}");
    assert_eq!(r["stalled"], false, "{r}");
    assert_eq!(r["timed_out"], true, "{r}");
    assert!(cookie_pids(r["run_id"].as_str().unwrap()).is_empty());
}

#[test]
fn inside_stall_on_events_keeps_a_cli_whose_tool_works_or_that_emits_events() {
    let p = TestProject::bare();
    let events = p.path().join("events.jsonl");
    let script = hung_cli(p.path(), true);
    let (out, r) = exec_json(
        &p,
        &[
            "--stall-timeout",
            "1.5",
            "--stall-on-events",
            "--timeout",
            "60",
            "--stdout-file",
            events.to_str().unwrap(),
            "--",
            "bash",
            "-c",
            &script,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{r}\n{}", diag(&out));
    assert_eq!(r["stalled"], false, "{r}");

    let chatty = "for i in $(seq 12); do echo '{\"type\":\"assistant\"}'; sleep 0.3; done";
    let (out, r) = exec_json(
        &p,
        &[
            "--stall-timeout",
            "1.5",
            "--stall-on-events",
            "--timeout",
            "60",
            "--stdout-file",
            events.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            chatty,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{r}");
    assert_eq!(r["stalled"], false, "{r}");
}

/// The claude agent's runs watch their event stream: a fake `claude` that prints one
/// event and then only keeps itself busy ends `stalled` at the stall limit, not at the
/// run's timeout.
#[test]
fn inside_a_claude_run_silent_in_its_stream_is_stalled() {
    use quantumwala::agent::{self, ClaudeAgent, Job, Phase, RunLimits};
    use quantumwala::exec::{Cancel, LocalExecutor};
    use quantumwala::project::Project;
    use std::time::Duration;

    let p = TestProject::new();
    let script = format!("#!/bin/bash\n{}", hung_cli(p.path(), false));
    p.script(".fake/bin/claude", &script);
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let root = p.path().to_path_buf();
    let j = Job {
        phase: Phase::Requirements,
        spec: "greeter".into(),
        description: "Greet users".into(),
        project_root: root.clone(),
        workdir: root.clone(),
        spec_dir: root.join(".claude/specs/greeter"),
        task: None,
        run_dir: root.join(".claude/runs").join("hung"),
        env: vec![
            ("PATH".into(), path_with(&root.join(".fake/bin")).into()),
            ("QW_TEST_MARKER".into(), m.clone().into()),
        ],
    };
    let (run, report) = agent::run_job(
        &ClaudeAgent::new(),
        &j,
        &Project::at(p.path()),
        &LocalExecutor::new(qw_bin()).unwrap(),
        RunLimits {
            timeout: Some(Duration::from_secs(90)),
            grace: Duration::from_millis(500),
            stall_timeout: Some(Duration::from_secs(2)),
        },
        &Cancel::new(),
    )
    .unwrap();
    assert_eq!(run.outcome.as_str(), "stalled", "{}", run.evidence);
    assert!(report.stalled && !report.timed_out, "{report:?}");
    assert!(cookie_pids(&report.run_id).is_empty());
    assert!(pids_with_env("QW_TEST_MARKER", &m).is_empty());
}
