//! `qw logs SPEC [TASK] [--follow] [--json]` over a recorded Claude Code event stream
//! (`tests/fixtures/claude_stream_json_write.jsonl`: init, a Write, its result, a text,
//! the result).

use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use quantumwala::fs::LockedFile;
use serde_json::Value;

use crate::support::*;

const STREAM: &str = include_str!("../fixtures/claude_stream_json_write.jsonl");
const RUN: &str = "20261201T120000000-demo-task-1-a1-0a1b2c";
const OLDER: &str = "20261201T110000000-demo-task-1-a0-0a1b2c";

fn project_with_run(events: &str) -> TestProject {
    let p = TestProject::new();
    p.write(&format!(".claude/runs/{OLDER}/stdout.log"), "older run\n");
    p.write(&format!(".claude/runs/{RUN}/events.jsonl"), events);
    p
}

#[test]
fn logs_renders_the_newest_run_of_a_task_as_readable_lines() {
    let p = project_with_run(STREAM);
    let out = p.run(&["logs", "demo", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("started:"), "{text}");
    assert!(text.contains("→ Write hello.txt"), "{text}");
    assert!(text.contains("← ok"), "{text}");
    assert!(text.contains("Done. I wrote the file as asked."), "{text}");
    assert!(text.contains("result:"), "{text}");
    assert!(!text.contains("older run"), "the newest run only: {text}");
    assert!(stderr(&out).contains(RUN), "{}", stderr(&out));
    // Without a task: the spec's newest run, the same one.
    assert_eq!(stdout(&p.run(&["logs", "demo"])), text);

    let out = p.run(&["logs", "demo", "1", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"start"), "{kinds:?}");
    assert!(
        kinds.contains(&"tool") && kinds.contains(&"tool_ok"),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "result").count(),
        1,
        "{kinds:?}"
    );
    assert!(lines.iter().all(|l| l["run_id"] == RUN));
}

#[test]
fn logs_without_a_run_fails_and_a_bad_name_is_usage() {
    let p = project_with_run(STREAM);
    let out = p.run(&["logs", "demo", "9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no run of task 9 of spec `demo`"),
        "{}",
        stderr(&out)
    );
    // A spec that does not exist (no folder, no state entry, no run) is bad input, as
    // for `spec-status` (rev6a L2).
    let out = p.run(&["logs", "other"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = p.run(&["logs", "../etc"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // A run of an agent without an event stream shows its output.
    std::fs::remove_dir_all(p.path().join(".claude/runs").join(RUN)).unwrap();
    assert_eq!(stdout(&p.run(&["logs", "demo", "1"])), "older run\n");
}

#[test]
fn logs_follow_prints_as_the_run_writes_and_ends_with_it() {
    let lines: Vec<&str> = STREAM.lines().collect();
    let (first, rest) = lines.split_at(2);
    let p = project_with_run(&format!("{}\n", first.join("\n")));
    // A workflow of the spec is running: it holds the spec's lock.
    let lock = LockedFile::try_acquire(p.path().join(".claude/runs/.demo.workflow.lock"))
        .unwrap()
        .unwrap();
    let mut child = p
        .qw(&["logs", "demo", "1", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let events = p.path().join(".claude/runs").join(RUN).join("events.jsonl");
    // Still following after the first lines: nothing ended the run.
    std::thread::sleep(Duration::from_millis(1500));
    let running = child.try_wait().unwrap().is_none();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&events)
        .unwrap();
    for l in rest {
        writeln!(f, "{l}").unwrap();
    }
    drop(f);
    let ended = wait_until(Duration::from_secs(30), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        unsafe_kill(pid, 9);
    }
    let out = child.wait_with_output().unwrap();
    drop(lock);
    assert!(running, "--follow ended before the run did");
    assert!(ended, "--follow did not end with the run's result");
    let text = stdout(&out);
    assert!(text.contains("→ Write hello.txt"), "{text}");
    assert!(text.contains("result:"), "{text}");
}

#[test]
fn logs_follow_ends_when_no_workflow_runs_the_spec() {
    // A run cut before its result (the workflow was killed): nothing holds the lock.
    let lines: Vec<&str> = STREAM.lines().take(2).collect();
    let p = project_with_run(&format!("{}\n", lines.join("\n")));
    let out = p.run(&["logs", "demo", "1", "--follow"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("→ Write hello.txt"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn logs_skips_over_long_lines_without_holding_them_and_cuts_long_text() {
    // The stream of a run that went wrong: a 10 MB assistant line (over the 4 MiB
    // line limit), a 3 MB one-line answer (under it: shown cut), the rest of the run,
    // and then 64 MiB without a newline, still being written when qw reads it.
    let lines: Vec<&str> = STREAM.lines().collect();
    let text_line = |n: usize| {
        serde_json::json!({"type": "assistant", "message": {"id": format!("m{n}"),
            "content": [{"type": "text", "text": "b".repeat(n)}]}})
        .to_string()
    };
    let events = format!(
        "{}\n{}\n{}\n{}\n{}\n",
        lines[0],
        text_line(10_000_000),
        text_line(3_000_000),
        lines[1..].join("\n"),
        "",
    );
    let p = project_with_run(&events);
    let path = p.path().join(".claude/runs").join(RUN).join("events.jsonl");
    append_filler(&path, 64 << 20, b'a');

    let out = p.run(&["logs", "demo", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.len() < 64 * 1024, "{} bytes printed", text.len());
    assert!(
        text.contains("(skipped an event line of 10000"),
        "the 10 MB line is noted with its size: {text:.2000}"
    );
    assert!(text.contains("(truncated: 3000000 chars)"), "{text:.3000}");
    assert!(text.contains("→ Write hello.txt") && text.contains("result:"));
    // The unfinished 64 MiB line is noted too, once the run has its result.
    assert!(
        text.contains(&format!("(skipped an event line of {} bytes", 64 << 20)),
        "{text:.3000}"
    );
    // Nothing held the huge line whole: qw stayed far below its size.
    let rss_mib = children_max_rss_mib().unwrap_or(0);
    assert!(rss_mib < 48, "qw logs grew to {rss_mib} MiB");

    let out = p.run(&["logs", "demo", "1", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let skipped: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["text"].as_str().unwrap().starts_with("(skipped"))
        .collect();
    assert_eq!(skipped.len(), 2, "{}", stdout(&out));
    assert!(skipped.iter().all(|v| v["kind"] == "other"));
}

#[test]
fn logs_of_plain_output_skips_an_over_long_line() {
    let p = project_with_run(STREAM);
    std::fs::remove_dir_all(p.path().join(".claude/runs").join(RUN)).unwrap();
    let path = p.path().join(".claude/runs").join(OLDER).join("stdout.log");
    append_filler(&path, 8 << 20, b'z');
    append_filler(&path, 1, b'\n');
    append_filler(&path, 4, b'y');
    let out = p.run(&["logs", "demo", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "older run\n(skipped a line of {} bytes: over the 4194304 byte limit)\nyyyy\n",
            8 << 20
        )
    );
}
