//! rev5a's findings H1, H2, M1, M3 and M4, each reproduced and tried in another shape:
//! a FIFO or a symlink at today's log file (H1) and symlinks at files qw generates —
//! `report.md`, `next_command.txt`, a state backup (H2); suggestions that would lift the
//! grace, the retry delay, the tasks at once or dev mode (M1); `state-backup --restore`
//! while a workflow runs (M3); a valid state or settings file nested deeper than
//! serde_json's 128 levels (M4).
//!
//! Every command runs under [`bounded`]: a hang fails the test (after 90 s, killing the
//! command's process group) instead of hanging the suite.

use std::path::Path;
use std::process::Stdio;

use crate::support::guarded::*;
use crate::support::*;

/// Today's daily log file of `p`, as qw names it (local date).
fn todays_log(p: &TestProject) -> std::path::PathBuf {
    p.claude().join("logs").join(format!(
        "qw-{}.log",
        chrono::Local::now().format("%Y-%m-%d")
    ))
}

fn mkfifo(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

// ---------------------------------------------------------------------------------------
// H1: today's log file.

#[test]
fn fix5a_a_fifo_at_todays_log_hangs_no_command_and_logging_falls_back() {
    let p = TestProject::new();
    let log = todays_log(&p);
    mkfifo(&log);
    // rev5a's reproduction: `exec` logs its finish line (exit 1 is logged).
    let out = bounded(p.qw(&["exec", "--", "false"]));
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let err = stderr(&out);
    assert!(
        err.contains("is a FIFO") && err.contains("logging to"),
        "{err}"
    );
    // Another shape: a command that times out its child logs more (the ending, the kill).
    let out = bounded(p.qw(&[
        "exec",
        "--timeout",
        "0.2",
        "--grace",
        "0.1",
        "--",
        "sleep",
        "30",
    ]));
    assert_eq!(code(&out), 124, "{}", diag(&out));
    assert!(stderr(&out).contains("is a FIFO"), "{}", diag(&out));
    // The FIFO is left as it was (qw neither opened it for good nor replaced it).
    use std::os::unix::fs::FileTypeExt as _;
    assert!(
        std::fs::symlink_metadata(&log)
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn fix5a_a_symlink_at_todays_log_is_never_written_through() {
    let p = TestProject::new();
    let outside = tempfile::tempdir().unwrap();
    let rc = outside.path().join("bashrc");
    std::fs::write(&rc, "# my shell rc\n").unwrap();
    let log = todays_log(&p);
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&rc, &log).unwrap();
    let out = bounded(p.qw(&["exec", "--", "false"]));
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(stderr(&out).contains("symbolic link"), "{}", diag(&out));
    assert_eq!(std::fs::read_to_string(&rc).unwrap(), "# my shell rc\n");
    // A dangling link: its target is not created either.
    std::fs::remove_file(&log).unwrap();
    let nowhere = outside.path().join("created-by-qw");
    std::os::unix::fs::symlink(&nowhere, &log).unwrap();
    let out = bounded(p.qw(&["exec", "--", "false"]));
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(!nowhere.exists(), "qw created the link's target");
}

// ---------------------------------------------------------------------------------------
// H2: files qw generates are never written through a symlink.

#[test]
fn fix5a_suggest_replaces_a_symlink_at_next_command_and_leaves_its_target() {
    let p = TestProject::new();
    let outside = tempfile::tempdir().unwrap();
    let precious = outside.path().join("precious");
    std::fs::write(&precious, "precious\n").unwrap();
    let next = p.claude().join("next_command.txt");
    std::os::unix::fs::symlink(&precious, &next).unwrap();
    let out = bounded(p.qw(&["suggest", "/status"]));
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious\n");
    assert!(!std::fs::symlink_metadata(&next).unwrap().is_symlink());
    assert_eq!(p.read(".claude/next_command.txt"), "/status\n");
    // A dangling link, relative: nothing is created where it points.
    std::fs::remove_file(&next).unwrap();
    std::os::unix::fs::symlink("../made-by-qw", &next).unwrap();
    let out = bounded(p.qw(&["suggest", "/spec-list"]));
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(!p.path().join("made-by-qw").exists());
    assert_eq!(p.read(".claude/next_command.txt"), "/spec-list\n");
}

#[test]
fn fix5a_the_workflow_report_replaces_a_symlink_and_leaves_its_target() {
    let p = spec_project("demo", Some("- [ ] 1. One\n  - _Verify: `true`_\n"));
    let outside = tempfile::tempdir().unwrap();
    let rc = outside.path().join("bashrc");
    std::fs::write(&rc, "alias ll='ls -l'\n").unwrap();
    let report = p.claude().join("specs/demo/report.md");
    std::os::unix::fs::symlink(&rc, &report).unwrap();
    let out = bounded(p.qw(&[
        "workflow-auto",
        "demo",
        "touch /tmp/PWNED",
        "--agent",
        "offline",
        "--isolate",
        "none",
    ]));
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(std::fs::read_to_string(&rc).unwrap(), "alias ll='ls -l'\n");
    assert!(!std::fs::symlink_metadata(&report).unwrap().is_symlink());
    assert!(
        p.read(".claude/specs/demo/report.md")
            .contains("Workflow report"),
        "{}",
        p.read(".claude/specs/demo/report.md")
    );
}

#[test]
fn fix5a_a_named_backup_never_writes_through_a_planted_link() {
    let p = TestProject::new();
    assert_eq!(code(&bounded(p.qw(&["exec", "--", "true"]))), 0);
    let dir = p.claude().join("backups/state");
    std::fs::create_dir_all(&dir).unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("hook");
    std::os::unix::fs::symlink(&target, dir.join("b1.json")).unwrap();
    let out = bounded(p.qw(&["state-backup", "b1"]));
    assert_ne!(code(&out), 0, "{}", diag(&out));
    assert!(stderr(&out).contains("b1.json"), "{}", diag(&out));
    assert!(!target.exists(), "the backup was written through the link");
    // An unplanted name works as before.
    let out = bounded(p.qw(&["state-backup", "b2"]));
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(dir.join("b2.json").is_file());
}

// ---------------------------------------------------------------------------------------
// M1: suggestions may not lift limits only the user sets.

#[test]
fn fix5a_suggestions_may_not_set_grace_retry_delay_parallel_or_dev_mode() {
    let p = TestProject::new();
    let timeout = bounded(p.qw(&["suggest", "/workflow-continue g --task-timeout 1"]));
    assert_eq!(code(&timeout), 2, "{}", diag(&timeout));
    // The same refusal, word for word, as for --task-timeout.
    let why = stderr(&timeout);
    let why = why
        .lines()
        .find_map(|l| l.split_once("cannot be given in a suggestion: "))
        .map(|(_, w)| w.to_owned())
        .unwrap_or_else(|| panic!("{why}"));
    for (text, option) in [
        ("/workflow-continue g --grace 999999", "--grace"),
        ("qw workflow-continue g --grace=1", "--grace"),
        (
            "/workflow-auto g d --agent offline --retry-delay 3000",
            "--retry-delay",
        ),
        ("/workflow-continue g --parallel 100000", "--parallel"),
        ("/sweep --project-only --grace 99999", "--grace"),
    ] {
        let out = bounded(p.qw(&["suggest", text]));
        assert_eq!(code(&out), 2, "{text}: {}", diag(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "option `{option}` cannot be given in a suggestion: {why}"
            )),
            "{text}: {err}"
        );
        assert!(!p.claude().join("next_command.txt").exists(), "{text}");
    }
    for text in ["/dev-mode off", "/dev-mode on", "qw -q dev-mode off"] {
        let out = bounded(p.qw(&["suggest", text]));
        assert_eq!(code(&out), 2, "{text}: {}", diag(&out));
        assert!(
            stderr(&out).contains("cannot be run from a suggestion")
                && stderr(&out).contains("only you change"),
            "{text}: {}",
            diag(&out)
        );
    }
    let out = bounded(p.qw(&["suggest", "/dev-mode status"]));
    assert_eq!(code(&out), 0, "{}", diag(&out));
}

#[test]
fn fix5a_consume_refuses_a_planted_dev_mode_off_and_leaves_the_settings() {
    let p = TestProject::new();
    p.write(
        ".claude/settings.local.json",
        "{\n  \"development_mode\": {\n    \"enabled\": true\n  }\n}\n",
    );
    let before = p.read(".claude/settings.local.json");
    for text in ["/dev-mode off", "/workflow-continue g --grace 999999"] {
        p.write(".claude/next_command.txt", &format!("{text}\n"));
        let out = bounded(p.qw(&["consume", "--once"]));
        assert_eq!(code(&out), 2, "{text}: {}", diag(&out));
        assert!(!p.claude().join("next_command.txt").exists(), "{text}");
        let failed = p.read(".claude/next_command.failed.txt");
        assert!(failed.contains(text), "{failed}");
    }
    assert_eq!(p.read(".claude/settings.local.json"), before);
}

// ---------------------------------------------------------------------------------------
// M3: state-backup --restore while a workflow runs.

#[test]
fn fix5a_restore_refuses_or_waits_while_a_workflow_runs() {
    let (p, agent_cmd) = gated_project();
    assert_eq!(code(&bounded(p.qw(&["exec", "--", "true"]))), 0);
    assert_eq!(code(&bounded(p.qw(&["state-backup", "b0"]))), 0);
    let mut wf = GatedRun::start(&p, &agent_cmd, Stdio::null());
    let wf_pid = wf.pid;

    // rev5a's reproduction: refused, naming the spec and the pid; the state untouched.
    let state_before = std::fs::read(p.claude().join("unified_state.json")).unwrap();
    for args in [
        &["state-backup", "--restore", "b0"][..],
        &["state-backup", "--restore", "b0.json"],
    ] {
        let out = bounded(p.qw(args));
        assert_eq!(code(&out), 2, "{args:?}: {}", diag(&out));
        let err = stderr(&out);
        assert!(
            err.contains("`demo`") && err.contains(&format!("pid {wf_pid}")),
            "{args:?}: {err}"
        );
        assert!(err.contains("--restore b0 --wait"), "{err}");
        assert!(!err.contains('\n') || err.lines().next().unwrap().contains("running"));
    }
    assert_eq!(
        std::fs::read(p.claude().join("unified_state.json")).unwrap(),
        state_before
    );
    let pre_restores = |p: &TestProject| {
        std::fs::read_dir(p.claude().join("backups/state"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("pre_restore"))
            .count()
    };
    assert_eq!(pre_restores(&p), 0, "a refused restore backed up nothing");

    // --wait with a short lock timeout gives up, naming the holder.
    let mut short = p.qw(&["state-backup", "--restore", "b0", "--wait"]);
    short.env("QW_LOCK_TIMEOUT", "1");
    let out = bounded(short);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(
        stderr(&out).contains(&format!("pid {wf_pid}")),
        "{}",
        diag(&out)
    );

    // --wait without a limit: restores once the workflow is done, never in its middle.
    let mut waiting = p.qw(&["--json", "state-backup", "--restore", "b0", "--wait"]);
    waiting.env("QW_LOCK_TIMEOUT", "0");
    let waiter = std::thread::spawn(move || bounded(waiting));
    std::fs::write(p.path().join("gate"), "").unwrap();
    let status = wf.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the workflow failed");
    let out = waiter.join().unwrap();
    assert_eq!(code(&out), 0, "{}", diag(&out));
    // The state saved before the restore holds both tasks completed: the restore came after.
    let saved = last_json(&out)["previous_saved_to"]
        .as_str()
        .unwrap()
        .to_owned();
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(saved).unwrap()).unwrap();
    let tasks = &saved["specifications"]["demo"]["tasks"];
    for id in ["1", "2"] {
        assert_eq!(tasks[id]["status"], "completed", "{saved}");
    }

    // Another shape: the workflow's lock file stays after it ended; with nothing running
    // a restore goes ahead at once.
    let out = bounded(p.qw(&["state-backup", "--restore", "b0"]));
    assert_eq!(code(&out), 0, "{}", diag(&out));
}

// ---------------------------------------------------------------------------------------
// M4: JSON nested deeper than serde_json's recursion limit.

/// `n` nested arrays, written as Python's `json.dumps(indent=2)` writes them, or compact
/// (`json.dumps`; indented, 10 000 levels would be 100 MB of spaces).
fn deep_arrays(n: usize, indented: bool) -> String {
    if !indented {
        return format!("{}{}", "[".repeat(n), "]".repeat(n));
    }
    let mut s = String::new();
    for d in 0..n {
        s.push('[');
        if d + 1 < n {
            s.push('\n');
            s.push_str(&" ".repeat(2 * (d + 2)));
        }
    }
    for d in (0..n).rev() {
        if d + 1 < n {
            s.push('\n');
            s.push_str(&" ".repeat(2 * (d + 1)));
        }
        s.push(']');
    }
    s
}

/// `n` nested objects on one line, with a big number and a string holding brackets at the
/// bottom, and Python's tokens when `python` (the state's dialect; settings are JSON).
fn deep_objects(n: usize, python: bool) -> String {
    let mut s = String::new();
    for _ in 0..n {
        s.push_str("{\"a\": ");
    }
    if python {
        s.push_str("[NaN, -Infinity, ");
    } else {
        s.push_str("[1.50, ");
    }
    s.push_str("123456789012345678901234567890, \"x\\\"]}\"]");
    s.push_str(&"}".repeat(n));
    s
}

#[test]
fn fix5a_a_deep_valid_state_is_read_kept_and_written_back_byte_for_byte() {
    for (what, deep) in [
        ("200 arrays, indented", deep_arrays(200, true)),
        ("10 000 arrays", deep_arrays(10_000, false)),
        ("300 objects", deep_objects(300, true)),
    ] {
        let p = TestProject::new();
        assert_eq!(code(&bounded(p.qw(&["exec", "--", "true"]))), 0);
        let state = p.claude().join("unified_state.json");
        let text = with_member(
            &std::fs::read_to_string(&state).unwrap(),
            "python_extra",
            &deep,
        );
        std::fs::write(&state, &text).unwrap();
        // rev5a's reproduction: a read-only `status` quarantined it.
        let out = bounded(p.qw(&["status"]));
        assert_eq!(code(&out), 0, "{what}: {}", diag(&out));
        assert!(!stderr(&out).contains("corrupt"), "{what}: {}", diag(&out));
        assert_eq!(std::fs::read_to_string(&state).unwrap(), text, "{what}");
        assert!(!p.claude().join("backups/state").exists(), "{what}");
        // A write keeps the deep member, and records the run.
        let out = bounded(p.qw(&["exec", "--", "true"]));
        assert_eq!(code(&out), 0, "{what}: {}", diag(&out));
        let after = std::fs::read_to_string(&state).unwrap();
        assert!(after.contains("\"total_executed\": 2"), "{what}");
        let squeeze = |t: &str| t.split_whitespace().collect::<String>();
        assert!(
            squeeze(&after).contains(&format!("\"python_extra\":{}", squeeze(&deep))),
            "{what}"
        );
        // Written as Python indents (and as qw writes), byte for byte; and a file qw wrote
        // keeps its bytes on the next write.
        if what.contains("indented") {
            assert!(
                after.contains(&format!("\"python_extra\": {deep}\n")),
                "{what}"
            );
        }
        let out = bounded(p.qw(&["exec", "--", "true"]));
        assert_eq!(code(&out), 0, "{what}: {}", diag(&out));
        let again = std::fs::read_to_string(&state).unwrap();
        let member = |t: &str| t[t.find("\"python_extra\"").unwrap()..].to_owned();
        assert_eq!(member(&again), member(&after), "{what}");
        assert!(again.contains("\"total_executed\": 3"), "{what}");
    }
}

#[test]
fn fix5a_a_deep_state_that_is_not_json_is_still_quarantined() {
    let p = TestProject::new();
    assert_eq!(code(&bounded(p.qw(&["exec", "--", "true"]))), 0);
    let state = p.claude().join("unified_state.json");
    // 300 levels with a missing comma at the bottom.
    let broken = format!("{}[1 2]{}", "[".repeat(300), "]".repeat(300));
    let text = with_member(&std::fs::read_to_string(&state).unwrap(), "x", &broken);
    std::fs::write(&state, &text).unwrap();
    let out = bounded(p.qw(&["status"]));
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(stderr(&out).contains("corrupt"), "{}", diag(&out));
    assert!(
        std::fs::read_dir(p.claude().join("backups/state"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("corrupted_"))
    );
}

#[test]
fn fix5a_deep_valid_settings_are_edited_and_keep_their_bytes() {
    let p = TestProject::new();
    let deep = deep_objects(10_000, false);
    let text = format!("{{\n  \"tool\": {deep}\n}}\n");
    p.write(".claude/settings.local.json", &text);
    let out = bounded(p.qw(&["dev-mode", "on"]));
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let after = p.read(".claude/settings.local.json");
    assert!(
        after.contains(&format!("\"tool\": {deep}")),
        "deep member changed"
    );
    assert!(
        after.contains("\"enabled\": true"),
        "{}",
        &after[after.len() - 300..]
    );
    let out = bounded(p.qw(&["dev-mode", "status"]));
    assert_eq!(code(&out), 0, "{}", diag(&out));
}

// ---------------------------------------------------------------------------------------
// H3: an agent that swaps its own run folder's captured output for a FIFO (or a link to
// `/dev/zero`) before it exits.

#[test]
fn fix5a_an_agent_that_swaps_its_output_for_a_fifo_or_dev_zero_hangs_nothing() {
    for (shape, swap) in [
        ("fifo", "mkfifo \"$f\""),
        ("dev-zero", "ln -s /dev/zero \"$f\""),
    ] {
        let p = spec_project("s", Some("- [ ] 1. Only\n"));
        let agent = p.script(
            "bin/swap-agent",
            &format!(
                "#!/bin/sh\nd=$(dirname \"$QW_PROMPT_FILE\")\nprintf '{{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"ok\"}}\\n'\nfor f in \"$d\"/stdout.log \"$d\"/events.jsonl \"$d\"/stderr.log; do [ -e \"$f\" ] && rm -f \"$f\" && {swap}; done\nexit 0\n"
            ),
        );
        let out = bounded(p.qw(&[
            "workflow-auto",
            "s",
            "d",
            "--agent-cmd",
            &format!("{} {{task_id}}", agent.display()),
            "--attempts",
            "1",
            "--isolate",
            "none",
        ]));
        // The run is not taken for a success, and the swapped file is named.
        assert_eq!(code(&out), 1, "{shape}: {}", diag(&out));
        assert!(
            diag(&out).contains("stdout.log` is a"),
            "{shape}: {}",
            diag(&out)
        );
        assert_eq!(p.read(".claude/specs/s/tasks.md"), "- [ ] 1. Only\n");
        // The workflow lock was let go: `workflow-continue` is not refused as running.
        let out = bounded(p.qw(&["workflow-continue", "s", "--dry-run"]));
        assert_eq!(code(&out), 0, "{shape}: {}", diag(&out));
    }
}

// ---------------------------------------------------------------------------------------
// L3: a suggestion file that starts with a byte-order mark.

#[test]
fn fix5a_a_suggestion_with_a_byte_order_mark_runs() {
    let p = TestProject::new();
    for (i, text) in [
        "\u{feff}/spec-create bom-one d\n",
        "\u{feff}  qw spec-create bom-two d",
    ]
    .iter()
    .enumerate()
    {
        p.write(".claude/next_command.txt", text);
        let out = bounded(p.qw(&["consume", "--once"]));
        assert_eq!(code(&out), 0, "{i}: {}", diag(&out));
        assert!(!p.claude().join("next_command.txt").exists(), "{i}");
        assert!(!p.claude().join("next_command.failed.txt").exists(), "{i}");
    }
    assert!(p.claude().join("specs/bom-one").is_dir());
    assert!(p.claude().join("specs/bom-two").is_dir());
}

// ---------------------------------------------------------------------------------------
// L2: settings the command will not touch exit 2, saying what to do.

#[test]
fn fix5a_settings_qw_cannot_replace_exit_2_saying_what_to_do() {
    use std::os::unix::fs::PermissionsExt as _;
    if nix::unistd::geteuid().is_root() {
        // Root writes a 0444 file anyway (access(2) says so): only the link shapes apply.
        eprintln!("note: running as root; the read-only shape checks the mode bits only");
    }
    // Read-only.
    let p = TestProject::new();
    let settings = p.write(".claude/settings.local.json", "{}\n");
    std::fs::set_permissions(&settings, std::fs::Permissions::from_mode(0o444)).unwrap();
    let out = bounded(p.qw(&["dev-mode", "on"]));
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert!(stderr(&out).contains("chmod u+w"), "{}", diag(&out));
    assert_eq!(p.read(".claude/settings.local.json"), "{}\n");
    // A symlink loop.
    let p = TestProject::new();
    let a = p.claude().join("settings.local.json");
    let b = p.claude().join("other.json");
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    let out = bounded(p.qw(&["dev-mode", "on"]));
    assert_eq!(code(&out), 2, "{}", diag(&out));
    // A dangling link into a folder that does not exist.
    let p = TestProject::new();
    let nowhere = p.path().join("no-such-folder/settings.json");
    std::os::unix::fs::symlink(&nowhere, p.claude().join("settings.local.json")).unwrap();
    let out = bounded(p.qw(&["dev-mode", "on"]));
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert!(
        stderr(&out).contains("remove the link") && stderr(&out).contains("no-such-folder"),
        "{}",
        diag(&out)
    );
    assert!(!p.path().join("no-such-folder").exists());
}
