//! `qw status`, `qw spec-status` and the state record `qw spec-create` makes.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::*;

const FIXTURE: &str = include_str!("../fixtures/python_unified_state.json");

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set(words: &[&str]) -> BTreeSet<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn json_out(p: &TestProject, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = p.run(&all);
    assert_eq!(code(&out), 0, "{args:?}: {}", diag(&out));
    assert_eq!(
        stdout(&out).lines().count(),
        1,
        "one JSON line: {}",
        diag(&out)
    );
    last_json(&out)
}

fn python_project() -> TestProject {
    let p = TestProject::new();
    p.write(".claude/unified_state.json", FIXTURE);
    p
}

#[test]
fn status_reads_the_python_fixture() {
    let p = python_project();
    let v = json_out(&p, &["status"]);
    assert_eq!(
        keys(&v),
        set(&[
            "current_spec",
            "global_phase",
            "specs",
            "active_tasks",
            "total_executed",
            "tasks_executed",
            "agent_runs",
            "peak_concurrency",
            "performance_profiling"
        ])
    );
    assert_eq!(v["total_executed"], 12);
    assert_eq!(v["tasks_executed"], 5);
    assert_eq!(v["peak_concurrency"], 3);
    assert_eq!(v["active_tasks"], serde_json::json!(["1.1"]));
    assert_eq!(v["performance_profiling"], false);
    let specs = v["specs"].as_array().unwrap();
    assert_eq!(specs.len(), 1);
    let s = &specs[0];
    assert_eq!(
        keys(s),
        set(&[
            "name",
            "description",
            "phase",
            "tasks",
            "progress_percentage",
            "cost_usd",
            "tokens",
            "paused_until",
            "running",
            "running_tasks",
            "waiting_tasks",
            "created_at",
            "elapsed_seconds",
            "last_error",
            "next_step"
        ]),
        "no timings without performance_profiling; fields are only ever added"
    );
    assert_eq!(s["name"], "user-auth");
    assert_eq!(s["phase"], "implementation");
    assert_eq!(
        s["tasks"],
        serde_json::json!({"total": 3, "pending": 0, "in_progress": 1, "completed": 1,
                           "failed": 1, "blocked": 0, "other": 0})
    );
    let pct = s["progress_percentage"].as_f64().unwrap();
    assert!((pct - 100.0 / 3.0).abs() < 1e-9, "{pct}");
    assert_eq!(s["running"], serde_json::json!(["1.1"]));
    // The only error names the spec in its command (`/spec-implement user-auth 10`).
    assert_eq!(s["last_error"]["error"], "Timeout after 300s");
    assert_eq!(s["last_error"]["component"], "real_executor");
    assert_eq!(s["last_error"]["task"], "10");
    assert_eq!(
        s["next_step"],
        "qw workflow-continue user-auth (or qw workflow-reset user-auth)"
    );

    let out = p.run(&["status"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = stdout(&out);
    let row = text
        .lines()
        .find(|l| l.starts_with("user-auth "))
        .unwrap_or_else(|| panic!("{text}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cells[..4],
        ["user-auth", "implementation", "1/3", "33%"],
        "{text}"
    );
    assert!(text.contains("Timeout after 300s"), "{text}");
    assert!(
        text.contains("next: qw workflow-continue user-auth"),
        "{text}"
    );
    assert!(text.contains("peak 3 at once"), "{text}");
    // Reading never rewrites the state.
    assert_eq!(p.read(".claude/unified_state.json"), FIXTURE);
}

#[test]
fn status_includes_timings_when_performance_profiling_is_on() {
    let p = python_project();
    p.write(
        ".claude/settings.local.json",
        r#"{"development_mode": {"enabled": true, "performance_profiling": true}}"#,
    );
    let v = json_out(&p, &["status"]);
    assert_eq!(v["performance_profiling"], true);
    let t = &v["specs"][0]["timings"];
    let phases: Vec<(&str, f64)> = t["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["phase"].as_str().unwrap(), p["seconds"].as_f64().unwrap()))
        .collect();
    // created 09:13:02.004411 → 09:30:00 → 09:45:10.1 → 09:52:33
    let want = [
        ("requirements_generation", 1017.995589),
        ("design_creation", 910.1),
        ("task_generation", 442.9),
    ];
    assert_eq!(phases.len(), 3, "{t}");
    for ((p, s), (wp, ws)) in phases.iter().zip(want) {
        assert_eq!(*p, wp);
        assert!((s - ws).abs() < 1e-6, "{p}: {s} != {ws}");
    }
    let tasks: Vec<(&str, Option<f64>)> = t["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["id"].as_str().unwrap(), x["duration_seconds"].as_f64()))
        .collect();
    assert_eq!(
        tasks,
        [("1", Some(510.499999)), ("1.1", None), ("10", Some(300.0))]
    );
    let out = p.run(&["status"]);
    let text = stdout(&out);
    assert!(
        text.contains("phases: requirements_generation 16m 58s, design_creation 15m 10s"),
        "{text}"
    );
    assert!(text.contains("slowest 1 8m 30s, 10 5m 00s"), "{text}");
}

#[test]
fn status_after_a_real_offline_workflow() {
    let f = Flow::new(THREE);
    let out = f.run(&[
        "workflow-auto",
        "x",
        "d",
        "--agent",
        "offline",
        "--retry-delay",
        "0",
    ]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let v = json_out(&f.p, &["status"]);
    let s = &v["specs"][0];
    assert_eq!(s["name"], "x");
    assert_eq!(s["description"], "d");
    assert_eq!(s["phase"], "complete");
    let total = s["tasks"]["total"].as_u64().unwrap();
    assert!(total >= 1, "{s}");
    assert_eq!(s["tasks"]["completed"].as_u64(), Some(total), "{s}");
    assert_eq!(s["tasks"]["failed"], 0);
    assert_eq!(s["progress_percentage"], 100.0);
    assert!(s["running"].as_array().unwrap().is_empty());
    assert!(
        s["next_step"].is_null(),
        "a complete spec needs nothing: {s}"
    );
    assert!(s["last_error"].is_null(), "{s}");
    assert!(v["tasks_executed"].as_u64().unwrap() >= total);
    assert!(v["peak_concurrency"].as_u64().unwrap() >= 1);
    assert!(v["active_tasks"].as_array().unwrap().is_empty());

    let d = json_out(&f.p, &["spec-status", "x"]);
    assert_eq!(
        keys(&d),
        set(&[
            "name",
            "description",
            "phase",
            "in_state",
            "documents",
            "counts",
            "progress_percentage",
            "cost_usd",
            "tokens",
            "paused_until",
            "last_error",
            "next_step",
            "phases",
            "tasks_error",
            "tasks"
        ])
    );
    assert_eq!(
        d["documents"],
        serde_json::json!({"requirements": true, "design": true, "tasks": true, "report": true})
    );
    let tasks = d["tasks"].as_array().unwrap();
    assert_eq!(tasks.len() as u64, total);
    // In tasks.md order: the ids as the file lists its leaves.
    let md = f.p.read(".claude/specs/x/tasks.md");
    let mut last_line = 0;
    for t in tasks {
        let id = t["id"].as_str().unwrap();
        let at = md
            .find(&format!("] {id}"))
            .unwrap_or_else(|| panic!("{id} not in tasks.md:\n{md}"));
        assert!(at > last_line, "{id} out of order");
        last_line = at;
        assert_eq!(t["status"], "completed", "{t}");
        assert_eq!(t["attempts"], 1, "{t}");
        assert_eq!(t["outcome"], "succeeded", "{t}");
        assert_eq!(t["checked"], true, "{t}");
        assert!(t["duration_seconds"].as_f64().is_some(), "{t}");
    }
    let phases: Vec<&str> = d["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert!(
        phases.contains(&"implementation") && phases.contains(&"complete"),
        "{phases:?}"
    );

    let out = f.p.run(&["spec-status", "x"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = stdout(&out);
    assert!(
        text.contains("documents   requirements design tasks report"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{total}/{total} tasks completed (100%)")),
        "{text}"
    );
    let first = tasks[0]["id"].as_str().unwrap();
    assert!(
        text.lines().any(|l| l.starts_with(&format!("{first} "))
            && l.contains("completed")
            && l.contains("succeeded")),
        "{text}"
    );
}

#[test]
fn spec_status_unknown_or_invalid_name_exits_2() {
    let p = python_project();
    let out = p.run(&["spec-status", "no-such-spec"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert!(stderr(&out).contains("no-such-spec"), "{}", diag(&out));
    assert!(stderr(&out).contains("hint:"), "{}", diag(&out));
    assert!(stdout(&out).is_empty());
    for bad in ["../x", "a/b", ""] {
        let out = p.run(&["spec-status", bad]);
        assert_eq!(code(&out), 2, "{bad:?}: {}", diag(&out));
    }
    // A spec known only to the state (no folder) is shown from the state.
    let d = json_out(&p, &["spec-status", "user-auth"]);
    assert_eq!(d["in_state"], true);
    assert_eq!(d["counts"]["total"], 3);
    let ids: Vec<&str> = d["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1", "1.1", "10"]);
    assert_eq!(d["tasks"][2]["error"], "Timeout after 300s");
    // Without a name: every spec, folders and state entries.
    p.write(
        ".claude/specs/folder-only/tasks.md",
        "- [x] 1. Done\n- [ ] 2. Not yet\n",
    );
    let all = json_out(&p, &["spec-status"]);
    let names: Vec<&str> = all["specs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["folder-only", "user-auth"]);
    let f = &all["specs"][0];
    assert_eq!(f["in_state"], false);
    assert_eq!(f["counts"]["completed"], 1);
    assert_eq!(f["tasks"][1]["status"], "pending");
}

#[test]
fn spec_create_records_the_spec_with_its_description_for_status() {
    let p = TestProject::new();
    let out = p.run(&["spec-create", "user-auth", "Log in with email"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let s: Value = serde_json::from_str(&p.read(".claude/unified_state.json")).unwrap();
    let spec = &s["specifications"]["user-auth"];
    assert_eq!(spec["description"], "Log in with email");
    assert_eq!(spec["current_phase"], "requirements_generation");
    assert_eq!(spec["completed_phases"][0]["phase"], "spec_creation");
    assert!(
        spec["created_at"]
            .as_str()
            .is_some_and(|t| t.starts_with("20"))
    );
    assert_eq!(s["workflow"]["current_spec"], "user-auth");

    let v = json_out(&p, &["status"]);
    let st = &v["specs"][0];
    assert_eq!(st["name"], "user-auth");
    assert_eq!(st["phase"], "requirements_generation");
    assert_eq!(
        st["next_step"],
        "qw workflow-auto user-auth 'Log in with email'"
    );

    // A refused create records nothing.
    let before = p.read(".claude/unified_state.json");
    let out = p.run(&["spec-create", "user-auth", "Again"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    let out = p.run(&["spec-create", "Bad_Name", "x"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert_eq!(p.read(".claude/unified_state.json"), before);
}

#[test]
fn status_of_a_corrupt_or_missing_state_exits_0() {
    let p = TestProject::new();
    let out = p.run(&["status"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(stdout(&out).contains("no specs"), "{}", diag(&out));
    assert!(
        !p.claude().join("unified_state.json").exists(),
        "status wrote a state"
    );
    p.write(".claude/unified_state.json", "{\"specifications\": [");
    let out = p.run(&["--json", "status"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(stderr(&out).contains("corrupt"), "{}", diag(&out));
    assert_eq!(last_json(&out)["specs"], serde_json::json!([]));
    let quarantined = std::fs::read_dir(p.claude().join("backups/state"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("corrupted_"));
    assert!(quarantined);
}

const STREAM: &str = include_str!("../fixtures/claude_stream_json_write.jsonl");

/// A state with task 2.1 of `greeter` running in run folder `run`, whose event stream
/// holds `events` so far.
fn running_project(run: &str, events: &str) -> TestProject {
    let p = TestProject::new();
    p.write(
        ".claude/unified_state.json",
        &serde_json::json!({
            "agents": {"active_tasks": ["2.1"]},
            "specifications": {"greeter": {
                "name": "greeter", "current_phase": "implementation",
                "workflow_options": {"agent": "claude", "parallel": 2, "task_timeout_s": 900.0,
                                     "grace_s": 5.0, "attempts": 3, "retry_delay_s": 5.0},
                "tasks": {"2.1": {"id": "2.1", "status": "in_progress", "description": "Write hello",
                                  "agent": "claude", "attempts": 1, "run_id": run,
                                  "started_at": chrono::Local::now().to_rfc3339()}}}}
        })
        .to_string(),
    );
    p.write(&format!(".claude/runs/{run}/events.jsonl"), events);
    p
}

#[test]
fn status_shows_what_a_running_agent_is_doing_from_a_partial_stream() {
    let run = "20260101T100000000-greeter-task-2.1-a1-abcdef";
    // Two whole events (init, a Write) and half of the tool result: the agent is mid-run.
    let lines: Vec<&str> = STREAM.lines().collect();
    let p = running_project(
        run,
        &format!("{}\n{}\n{}", lines[0], lines[1], &lines[2][..50]),
    );
    let v = json_out(&p, &["status"]);
    let r = &v["specs"][0]["running_tasks"][0];
    assert_eq!(r["id"], "2.1", "{v}");
    assert_eq!(r["run_id"], run);
    assert_eq!(r["turns"], 1);
    assert_eq!(r["last_tool"]["name"], "Write");
    assert_eq!(r["last_tool"]["target"], "/home/dev/project/hello.txt");
    assert_eq!(r["tokens"]["input"], 1000);
    assert_eq!(r["tokens"]["output"], 1);
    assert!(r["cost_usd"].is_null(), "no result yet: {r}");
    assert!(r["last_event_at"].is_string(), "{r}");
    assert_eq!(r["timeout_seconds"], 900.0);
    assert_eq!(v["specs"][0]["running"], serde_json::json!(["2.1"]));

    let out = p.run(&["status"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = stdout(&out);
    assert!(
        text.contains("running 2.1")
            && text.contains("1 turn · → Write /home/dev/project/hello.txt"),
        "{text}"
    );

    // The whole stream: the result gives the cost; a garbled line is skipped.
    let p = running_project(run, &format!("not json\n{STREAM}"));
    let v = json_out(&p, &["status"]);
    let r = &v["specs"][0]["running_tasks"][0];
    assert_eq!(r["cost_usd"], 0.01, "{r}");
    assert_eq!(r["turns"], 2);

    // A run id that tries to leave `.claude/runs/` is not followed.
    let p = running_project("../../etc", "");
    let v = json_out(&p, &["status"]);
    assert!(v["specs"][0]["running_tasks"][0]["turns"].is_null(), "{v}");
}
