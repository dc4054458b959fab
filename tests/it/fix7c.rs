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
        panic!(
            "never one task running and {waiters} waiting: {:?}",
            f.log()
        );
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
        assert_eq!(
            t["attempts"], 0,
            "an attempt counted for task {id}: {t}\n{err}"
        );
        assert_eq!(t["outcome"], "killed_by_user", "task {id}: {t}");
        assert!(
            t["error"]
                .as_str()
                .unwrap()
                .contains("interrupted while waiting for admission"),
            "{t}"
        );
        assert!(
            !err.contains(&format!("> {id} ")),
            "task {id} was started: {err}"
        );
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

// M6: text an agent or tasks.md wrote reaches the terminal escaped, on one line.

/// No raw control character (ESC, BEL, CR, NUL, …) in `text` but newlines.
fn assert_no_raw_controls(text: &str) {
    let bad: Vec<_> = text
        .char_indices()
        .filter(|(_, c)| c.is_control() && *c != '\n')
        .collect();
    assert!(bad.is_empty(), "raw control characters {bad:?} in:\n{text}");
}

/// The review's reproduction (an OSC 52 clipboard write and a clear-screen in a title)
/// and other shapes: a carriage return that would overwrite the line, a NUL (which also
/// broke the task: "nul byte found in provided data"). Every progress line and the
/// report show them escaped, and every task runs.
#[test]
fn fix7c_m6_task_titles_with_escapes_are_escaped_and_a_nul_title_runs() {
    let tasks = "# Tasks\n\n- [ ] 1. Evil \u{1b}]52;c;ZWNobyBwd25lZA==\u{7} \u{1b}[2J title\n\
                 - [ ] 2. Back\rworkflow completed: 9/9\n\
                 - [ ] 3. Nul \u{0} inside\n";
    let f = flow(
        tasks,
        r#"{"resource_limits": {"max_load": 1000, "high_impact_load": 1000, "max_memory": 1.0}}"#,
    );
    let out = f.auto(&["--agent", "claude"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_no_raw_controls(&err);
    assert_no_raw_controls(&stdout(&out));
    assert!(
        err.contains("> 1 Evil \\u{1b}]52;c;ZWNobyBwd25lZA==\\u{7} \\u{1b}[2J title"),
        "{err}"
    );
    assert!(err.contains("> 2 Back\\rworkflow completed: 9/9"), "{err}");
    assert!(err.contains("> 3 Nul \\u{0} inside"), "{err}");
    for id in ["1", "2", "3"] {
        let t = f.task(id);
        assert_eq!(t["status"], "completed", "task {id}: {t}\n{err}");
    }
    assert_eq!(f.runs_of("3"), 1);
    assert_no_raw_controls(&f.p.read(".claude/specs/demo/report.md"));
}

/// A fake `claude` whose implementation run ends `is_error` with a final message
/// carrying escape sequences and a line break that would print a fake line.
const EVIL_CLAUDE: &str = r#"#!/bin/sh
if [ "$QW_PHASE" != implementation ]; then
  printf '{"type":"result","subtype":"success","is_error":false,"result":"done","session_id":"00000000-0000-4000-8000-000000000000"}\n'
  exit 0
fi
printf '{"type":"result","subtype":"success","is_error":true,"num_turns":1,"result":"bad \\u001b]52;c;ZWNobyBwd25lZA==\\u0007 \\u001b[2J\\u001b[32mworkflow completed: 1/1\\n  ok 7 forged in 0.1s\\r\\u0000","session_id":"00000000-0000-4000-8000-000000000001","total_cost_usd":0}\n'
exit 0
"#;

/// The agent's own final message in the `FAILED` line, the report's failure and the
/// `--json` lines: escaped, one line, nothing forged.
#[test]
fn fix7c_m6_the_agents_final_message_is_escaped_in_failed_lines() {
    let f = flow(
        "# Tasks\n\n- [ ] 1. Only\n",
        r#"{"resource_limits": {"max_load": 1000, "high_impact_load": 1000, "max_memory": 1.0}}"#,
    );
    f.p.script("bin/claude", EVIL_CLAUDE);
    let out = f.auto(&["--agent", "claude", "--attempts", "1"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_no_raw_controls(&err);
    assert!(
        !err.lines().any(|l| l.starts_with("  ok 7")),
        "a forged line: {err}"
    );
    let failed = err
        .lines()
        .find(|l| l.starts_with("  FAILED 1 agent_error"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        failed.contains(
            "bad \\u{1b}]52;c;ZWNobyBwd25lZA==\\u{7} \\u{1b}[2J\\u{1b}[32mworkflow completed"
        ),
        "{failed}"
    );
    assert_no_raw_controls(&f.p.read(".claude/specs/demo/report.md"));
    // The same run in JSON mode: JSON escapes every control character.
    let f = flow(
        "# Tasks\n\n- [ ] 1. Only\n",
        r#"{"resource_limits": {"max_load": 1000, "high_impact_load": 1000, "max_memory": 1.0}}"#,
    );
    f.p.script("bin/claude", EVIL_CLAUDE);
    let out = f
        .cmd(&[
            "--json",
            "workflow-auto",
            "demo",
            "A demo feature",
            "--agent",
            "claude",
            "--attempts",
            "1",
        ])
        .output()
        .unwrap();
    assert_no_raw_controls(&stdout(&out));
    assert_no_raw_controls(&stderr(&out));
}

// M5: a task's own `qw exec --admit` runs under the slot its workflow holds for it.

/// The review's reproduction (a busy machine; the agent runs `qw exec --admit` inside
/// its task, also from a `setsid` child) and the task's `_Verify:_` command doing the
/// same: each runs at once under the task's slot, where it used to wait for its own
/// workflow and give up (125).
#[test]
fn fix7c_m5_a_tasks_own_nested_admit_runs_under_its_slot() {
    let qw = qw_bin();
    let tasks = format!(
        "# Tasks\n\n- [ ] 1. One\n  - _Verify: `{} exec --admit -- true`_\n",
        qw.display()
    );
    let f = flow(
        &tasks,
        r#"{"resource_limits": {"max_memory": 1.0, "acquire_timeout_s": 2}}"#,
    );
    let fake = busy_proc(&f.p);
    let agent = f.p.script(
        "agent.sh",
        &format!(
            "#!/bin/sh\nif [ \"$QW_PHASE\" = implementation ]; then\n\
             '{q}' exec --admit -- echo nested-ran || exit 7\n\
             setsid '{q}' exec --admit=high -- echo setsid-ran || exit 8\n\
             fi\nexit 0\n",
            q = qw.display()
        ),
    );
    let template = format!("{} {{prompt_file}}", agent.display());
    let out = f
        .cmd(&[
            "workflow-auto",
            "demo",
            "A demo feature",
            "--agent",
            "command",
            "--agent-cmd",
            &template,
            "--attempts",
            "1",
        ])
        .env(PROC_ENV, &fake)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let t = f.task("1");
    assert_eq!(t["status"], "completed", "{t}");
    let run = f
        .path()
        .join(".claude/runs")
        .join(t["run_id"].as_str().unwrap());
    let stdout_log = std::fs::read_to_string(run.join("stdout.log")).unwrap();
    assert!(
        stdout_log.contains("nested-ran") && stdout_log.contains("setsid-ran"),
        "{stdout_log}"
    );
    let stderr_log = std::fs::read_to_string(run.join("stderr.log")).unwrap_or_default();
    assert!(!stderr_log.contains("gave up"), "{stderr_log}");
}

/// The slot's number copied into a process that is not the holder's descendant counts
/// for nothing: it waits like any stranger (and gives up, 125), the program not run.
#[test]
fn fix7c_m5_a_slot_number_in_a_strangers_environment_is_not_a_pass() {
    let p = TestProject::new();
    p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"max_memory": 1.0}}"#,
    );
    let fake = busy_proc(&p);
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let mut holder = p
        .qw(&["exec", "--admit", "--", "sleep", "60"])
        .env(PROC_ENV, &fake)
        .env("QW_TEST_MARKER", &m)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || {
            pids_with_env("QW_TEST_MARKER", &m).into_iter().any(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.starts_with(b"sleep\0"))
            })
        }),
        "the slot holder never started"
    );
    let marker_file = p.path().join("ran");
    let out = p
        .qw(&[
            "exec",
            "--admit",
            "--admit-timeout",
            "1",
            "--",
            "touch",
            marker_file.to_str().unwrap(),
        ])
        .env(PROC_ENV, &fake)
        .env("QW_ADMISSION_SLOT", "0")
        .output()
        .unwrap();
    unsafe_kill(i32::try_from(holder.id()).unwrap(), 15);
    holder.wait().unwrap();
    assert_eq!(code(&out), 125, "{}", diag(&out));
    assert!(
        stderr(&out).contains("gave up waiting for admission"),
        "{}",
        diag(&out)
    );
    assert!(!marker_file.exists(), "the program ran without admission");
}

// M4: an answer too long for the bounded reader is taken, or said to be too large — never
// "no answer", and never run again for the same result.

/// A command agent answering with its requirements on stdout: `LINES` numbered lines.
const BIG_ANSWER: &str = r#"#!/bin/sh
echo "$QW_PHASE" >> "$BIG_LOG"
if [ "$QW_PHASE" = requirements ]; then
  printf '# Requirements Document\n\n'
  yes '1. The system shall do this thing well enough, every time.' | head -n "$LINES"
fi
exit 0
"#;

/// Runs of `phase` the fake agent logged.
fn phase_runs(log: &Path, phase: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == phase)
        .count()
}

/// A project whose design and tasks exist: only the requirements phase asks the agent.
fn requirements_only(f: &Flow) {
    std::fs::remove_file(f.path().join(".claude/specs/demo/requirements.md")).unwrap();
}

/// The review's reproduction (a 12 MB answer, over the 8 MiB held whole): taken as the
/// document, in one run; and a 36 MB one (over the 16 MiB qw reads of any document):
/// `agent_error` saying the answer is too large, naming the limit and the file, not
/// retried.
#[test]
fn fix7c_m4_a_long_plain_document_answer_is_taken_or_called_too_large_once() {
    for (lines, taken) in [("200000", true), ("600000", false)] {
        let mut f = flow(
            "# Tasks\n\n- [ ] 1. One\n",
            r#"{"resource_limits": {"max_load": 1000, "high_impact_load": 1000, "max_memory": 1.0}}"#,
        );
        requirements_only(&f);
        let agent = f.p.script("big.sh", BIG_ANSWER);
        let log = f.path().join("big.log");
        f.set("BIG_LOG", log.to_str().unwrap()).set("LINES", lines);
        let template = format!("{} {{prompt_file}}", agent.display());
        let out = f.auto(&["--agent", "command", "--agent-cmd", &template]);
        let err = stderr(&out);
        assert_eq!(phase_runs(&log, "requirements"), 1, "{}", diag(&out));
        assert!(!err.contains("neither wrote"), "{err}");
        let doc = f.path().join(".claude/specs/demo/requirements.md");
        if taken {
            let len = std::fs::metadata(&doc).unwrap().len();
            assert!(len > 8 << 20, "{len}");
            assert!(err.contains("requirements_generation: succeeded"), "{err}");
        } else {
            assert!(!doc.exists());
            assert!(
                err.contains("requirements_generation: agent_error — the agent answered ")
                    && err.contains("qw takes a document answer of at most 16777216 bytes")
                    && err.contains("stdout.log`")
                    && err.contains("not retried"),
                "{err}"
            );
            assert_ne!(code(&out), 0);
        }
    }
}

/// A fake `claude` whose requirements run answers with the document in one `result` line
/// of about 6 MB (over the 4 MiB a line is read in memory).
const BIG_RESULT: &str = r##"#!/bin/sh
echo "$QW_PHASE" >> "$BIG_LOG"
if [ "$QW_PHASE" = requirements ]; then
  printf '{"type":"system","subtype":"init","session_id":"00000000-0000-4000-8000-000000000000"}\n'
  printf '{"type":"result","subtype":"success","is_error":false,"num_turns":1,"total_cost_usd":0.5,"session_id":"00000000-0000-4000-8000-000000000000","result":"# Requirements Document\\n\\n'
  yes '1. The system shall do this thing.\n' | head -n 160000 | tr -d '\n'
  printf '"}\n'
  exit 0
fi
printf '{"type":"result","subtype":"success","is_error":false,"result":"done","session_id":"00000000-0000-4000-8000-000000000000"}\n'
"##;

/// Claude's `result` line over 4 MiB is read back from the file: the document is
/// written and the run succeeds with its cost, once — not "without its `result`".
#[test]
fn fix7c_m4_a_claude_result_line_over_the_line_limit_is_read_back() {
    let mut f = flow(
        "# Tasks\n\n- [ ] 1. One\n",
        r#"{"resource_limits": {"max_load": 1000, "high_impact_load": 1000, "max_memory": 1.0}}"#,
    );
    requirements_only(&f);
    f.p.script("bin/claude", BIG_RESULT);
    let log = f.path().join("big.log");
    f.set("BIG_LOG", log.to_str().unwrap());
    let out = f.auto(&["--agent", "claude"]);
    let err = stderr(&out);
    assert_eq!(phase_runs(&log, "requirements"), 1, "{}", diag(&out));
    assert!(!err.contains("without its `result`"), "{err}");
    assert!(err.contains("requirements_generation: succeeded"), "{err}");
    let doc = f.p.read(".claude/specs/demo/requirements.md");
    assert!(
        doc.starts_with("# Requirements Document\n\n1. The system"),
        "{}",
        &doc[..80]
    );
    assert!(doc.len() > 4 << 20, "{}", doc.len());
    assert_eq!(code(&out), 0, "{}", diag(&out));
}

// L5: nothing failed, tasks not admitted: "incomplete", exit 3.

/// The give-up with nothing of its own running (memory short, a limit nothing waives):
/// both independent tasks are not admitted; the run says so and exits 3 (resumable),
/// not "workflow failed" with 1; `--json` says `incomplete`; then, with the machine
/// free, `workflow-continue` runs them.
#[test]
fn fix7c_l5_only_not_admitted_tasks_end_incomplete_with_exit_3() {
    let f = flow("# Tasks\n\n- [ ] 1. One\n- [ ] 2. Two\n", "{}");
    f.p.refuse_admission(1);
    let out = f.auto(&["--agent", "claude"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 3, "{}", diag(&out));
    assert!(f.log().is_empty(), "an agent ran without admission");
    let last = stdout(&out);
    assert!(
        last.contains("workflow incomplete: 0/2 tasks completed"),
        "{}",
        diag(&out)
    );
    assert!(!last.contains("workflow failed"), "{last}");
    assert!(
        err.contains("2 task(s) not admitted") && err.contains("qw workflow-continue demo"),
        "{err}"
    );
    let report = f.p.read(".claude/specs/demo/report.md");
    assert!(
        report.contains("**Incomplete.** Nothing failed"),
        "{report}"
    );
    // JSON: the finished line's result.
    let out = f
        .cmd(&["--json", "workflow-continue", "demo"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", diag(&out));
    assert_eq!(last_json(&out)["result"], "incomplete", "{}", diag(&out));
    // The machine free: `workflow-continue` runs them.
    f.p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"max_load": 1000, "high_impact_load": 1000, "max_memory": 1.0}}"#,
    );
    let out = f.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(f.task("1")["status"], "completed");
    assert_eq!(f.task("2")["status"], "completed");
}

/// The other side: a task that fails for good (not logged in) still ends the run
/// "failed", exit 1.
#[test]
fn fix7c_l5_a_real_failure_still_ends_failed() {
    let mut f = flow("# Tasks\n\n- [ ] 1. One\n", "{}");
    f.set("FAKE_LOGIN", "1");
    let out = f.auto(&["--agent", "claude"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(stdout(&out).contains("workflow failed"), "{}", diag(&out));
}

// L6: a report that cannot be written: the outcome is told, one line says what to do.

#[test]
fn fix7c_l6_a_directory_at_report_md_is_named_with_the_way_on() {
    for planted in ["dir", "fifo"] {
        let f = flow(
            "# Tasks\n\n- [ ] 1. One\n",
            r#"{"resource_limits": {"max_load": 1000, "high_impact_load": 1000, "max_memory": 1.0}}"#,
        );
        let report = f.path().join(".claude/specs/demo/report.md");
        match planted {
            "dir" => {
                std::fs::create_dir_all(report.join("x")).unwrap();
            }
            _ => {
                nix::unistd::mkfifo(&report, nix::sys::stat::Mode::from_bits_truncate(0o644))
                    .unwrap();
            }
        }
        let out = f.auto(&["--agent", "claude"]);
        let err = stderr(&out);
        assert_eq!(code(&out), 1, "{planted}: {}", diag(&out));
        assert!(
            stdout(&out).contains("workflow completed: 1/1 tasks completed"),
            "{planted}: {}",
            diag(&out)
        );
        assert!(
            err.contains("warning: the report was not written: `")
                && err.contains("report.md` is not a regular file")
                && err.contains("then `qw workflow-continue demo` writes it"),
            "{planted}: {err}"
        );
        assert!(!err.contains("qw: error"), "{err}");
        // Done as the line says: the report is written, exit 0.
        if report.is_dir() {
            std::fs::remove_dir_all(&report).unwrap();
        } else {
            std::fs::remove_file(&report).unwrap();
        }
        let out = f.run(&["workflow-continue", "demo"]);
        assert_eq!(code(&out), 0, "{planted}: {}", diag(&out));
        assert!(report.is_file());
    }
}

// L2: `qw logs` of a spec that does not exist is bad input (2); of one with no run, 1.

#[test]
fn fix7c_l2_logs_of_a_missing_spec_exits_2_and_of_a_spec_without_runs_1() {
    let p = TestProject::new();
    let out = p.run(&["logs", "nope"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert!(stderr(&out).contains("no spec `nope`"), "{}", diag(&out));
    let out = p.run(&["logs", "nope", "3"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert_eq!(code(&p.run(&["spec-create", "real", "A spec"])), 0);
    let out = p.run(&["logs", "real"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(
        stderr(&out).contains("no run of spec `real`"),
        "{}",
        diag(&out)
    );
}

// L4: `qw status` shows the tasks waiting for admission.

/// While a sibling waits its turn on a busy machine, `status` names it, why and since
/// when (text and `--json`); once the run ended, it no longer does. Two shapes: the
/// busy machine (load) and the one slot (`max_concurrent` 1) with two waiters.
#[test]
fn fix7c_l4_status_shows_tasks_waiting_for_admission() {
    for (busy, parallel, waiters, settings) in [
        (true, "2", 1, r#"{"resource_limits": {"max_memory": 1.0}}"#),
        (
            false,
            "3",
            2,
            r#"{"resource_limits": {"max_load": 1000, "high_impact_load": 1000, "max_memory": 1.0, "max_concurrent": 1}}"#,
        ),
    ] {
        let mut f = flow(
            "# Tasks\n\n- [ ] 1. One\n- [ ] 2. Two\n- [ ] 3. Three\n",
            settings,
        );
        f.set("FAKE_SLEEP", "60");
        let fake = busy_proc(&f.p);
        let mut c = f.cmd(&[
            "workflow-auto",
            "demo",
            "A demo feature",
            "--agent",
            "claude",
            "--parallel",
            parallel,
        ]);
        if busy {
            c.env(PROC_ENV, &fake);
        }
        let mut child = c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        // What holds a waiter back: first the queue, then the limit once it heads it.
        let why = if busy {
            "(max_load)"
        } else {
            "(max_concurrent)"
        };
        let mut shown = String::new();
        let seen = wait_until(Duration::from_secs(60), || {
            let out = f.run(&["status"]);
            shown = stdout(&out);
            shown.matches(" for admission since ").count() == waiters && shown.contains(why)
        });
        let json = f.run(&["--json", "status"]);
        unsafe_kill(pid, 15);
        let _ = child.wait();
        assert!(seen, "{shown}");
        let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
        let waiting = v["specs"][0]["waiting_tasks"].as_array().unwrap().clone();
        assert!(!waiting.is_empty(), "{v}");
        assert!(
            waiting
                .iter()
                .any(|w| w["why"].as_str().unwrap().contains(why)),
            "{v}"
        );
        for w in &waiting {
            assert!(w["since"].is_string(), "{w}");
        }
        // The run over: nobody waits.
        let after = stdout(&f.run(&["status"]));
        assert!(!after.contains(" for admission since "), "{after}");
    }
}
