//! `qw suggest` / `qw consume`: success, retries into the failed file, injections refused
//! without running anything, `--watch` with notifications and a clean SIGINT exit.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::support::*;

/// Admission limits that admit whatever the real load is: the machine running the tests
/// is shared and often busier than the default `max_load` allows.
const PERMISSIVE: &str =
    r#"{"resource_limits": {"max_load": 1000, "max_memory": 1.0, "high_impact_load": 1000}}"#;

/// A project whose `qw exec --admit` runs are never held back by the machine's load.
fn permissive_project() -> TestProject {
    let p = TestProject::new();
    p.write(".claude/settings.local.json", PERMISSIVE);
    p
}

/// A fake `claude` that records each call in `calls.txt` and exits with `code`.
fn fake_claude(p: &TestProject, code: i32) -> String {
    let calls = p.path().join("calls.txt");
    p.script(
        "bin/claude",
        &format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\necho '{{\"type\":\"result\",\"is_error\":false}}'\nexit {code}\n",
            calls.display()
        ),
    );
    path_with(&p.path().join("bin"))
}

/// `qw consume --once` with `extra` flags in the background, `path` as its PATH and the
/// test's marker; stderr piped for the caller to read.
fn start_consume(p: &TestProject, path: &str, marker: &str, extra: &[&str]) -> Child {
    let mut args = vec!["consume", "--once"];
    args.extend_from_slice(extra);
    p.qw(&args)
        .env("PATH", path)
        .env("QW_TEST_MARKER", marker)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn calls(p: &TestProject) -> Vec<String> {
    std::fs::read_to_string(p.path().join("calls.txt"))
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

#[test]
fn consume_success_runs_qw_command_and_deletes_the_file() {
    let p = permissive_project();
    let s = p.run(&["suggest", "/spec-create from-suggestion 'made by consume'"]);
    assert_eq!(s.status.code(), Some(0), "{}", stderr(&s));
    assert_eq!(
        p.read(".claude/next_command.txt"),
        "/spec-create from-suggestion 'made by consume'\n"
    );
    let out = p.run(&["consume", "--once", "--stats"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!p.claude().join("next_command.txt").exists());
    assert!(!p.claude().join("next_command.failed.txt").exists());
    assert!(p.claude().join("specs/from-suggestion").is_dir());
    assert!(
        stdout(&out).contains("consumed: 1  failed: 0  rejected: 0"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn consume_with_nothing_to_do_succeeds() {
    let p = TestProject::new();
    let out = p.run(&["consume"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("no suggestion"), "{}", stdout(&out));
}

#[test]
fn consume_slash_command_goes_to_claude_and_fails_after_three_attempts() {
    let p = permissive_project();
    let path = fake_claude(&p, 1);
    p.write(".claude/next_command.txt", "/spec-execute 2.1 user-auth\n");
    let mut cmd = p.qw(&["--json", "consume", "--once", "--retry-delay", "0.1"]);
    cmd.env("PATH", &path);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let c = calls(&p);
    assert_eq!(c.len(), 3, "{c:?}");
    assert!(
        c.iter()
            .all(|l| l == "-p /spec-execute 2.1 user-auth --output-format json"),
        "{c:?}"
    );
    assert!(!p.claude().join("next_command.txt").exists());
    let failed = p.read(".claude/next_command.failed.txt");
    assert!(
        failed.starts_with("/spec-execute 2.1 user-auth\n"),
        "{failed}"
    );
    assert!(
        failed.contains("exited with 1 on each of 3 attempt(s)"),
        "{failed}"
    );
    let j = last_json(&out);
    assert_eq!(j["outcome"], "failed");

    // The same command succeeding is consumed on the first attempt.
    let path = fake_claude(&p, 0);
    std::fs::remove_file(p.path().join("calls.txt")).unwrap();
    p.write(".claude/next_command.txt", "/spec-execute 2.1 user-auth\n");
    let mut cmd = p.qw(&["consume", "--once", "--retry-delay", "0.1"]);
    cmd.env("PATH", &path);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(calls(&p).len(), 1);
    assert!(!p.claude().join("next_command.txt").exists());
}

#[test]
fn consume_refuses_injections_without_running_anything() {
    let p = TestProject::new();
    let path = fake_claude(&p, 0);
    let pwned = p.path().join("PWNED");
    let attempts = [
        format!("/dev-mode on; touch {}", pwned.display()),
        format!("/dev-mode on && touch {}", pwned.display()),
        format!("/spec-execute 1 x | touch {}", pwned.display()),
        format!("/spec-execute 1 $(touch {})", pwned.display()),
        format!("/spec-execute 1 `touch {}`", pwned.display()),
        format!("touch {}", pwned.display()),
        "/spec-create x 'rm -rf /'".to_owned(),
        "qw exec -- sh -c true".to_owned(),
    ];
    for text in &attempts {
        p.write(".claude/next_command.txt", text);
        let mut cmd = p.qw(&["consume", "--once", "--retry-delay", "0.1"]);
        cmd.env("PATH", &path);
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}: {}", stderr(&out));
        assert!(!pwned.exists(), "{text} ran");
        assert!(calls(&p).is_empty(), "{text} reached claude");
        assert!(
            !p.claude().join("settings.local.json").exists(),
            "{text} ran dev-mode"
        );
        assert!(!p.claude().join("next_command.txt").exists());
        let failed = p.read(".claude/next_command.failed.txt");
        assert!(failed.contains("refused"), "{failed}");
    }
}

#[test]
fn consume_without_claude_fails_clearly_and_at_once() {
    let p = TestProject::new();
    let empty = p.path().join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    p.write(".claude/next_command.txt", "/spec-design user-auth\n");
    let mut cmd = p.qw(&["consume", "--once"]);
    cmd.env("PATH", &empty);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`claude` is not on PATH"),
        "{}",
        stderr(&out)
    );
    assert!(
        p.read(".claude/next_command.failed.txt")
            .contains("not on PATH")
    );
}

#[test]
fn consume_watch_picks_up_a_new_suggestion_and_exits_on_sigint() {
    watch_scenario(&[], "file notifications");
}

#[test]
fn consume_watch_polling_fallback_picks_up_a_new_suggestion() {
    watch_scenario(&["--poll-only"], "polling");
}

fn watch_scenario(extra: &[&str], mode: &str) {
    let p = permissive_project();
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let out_path = p.path().join("watch.out");
    let err_path = p.path().join("watch.err");
    let mut args = vec!["consume", "--watch", "--stats", "--retry-delay", "0.1"];
    args.extend_from_slice(extra);
    let mut child = p
        .qw(&args)
        .env("QW_TEST_MARKER", &m)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let started = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&err_path).is_ok_and(|t| t.contains("watching"))
    });
    assert!(started, "{}", std::fs::read_to_string(&err_path).unwrap());
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(err.contains(mode), "{err}");

    let s = p.run(&["suggest", "/spec-create watched d"]);
    assert_eq!(s.status.code(), Some(0));
    let consumed = wait_until(Duration::from_secs(30), || {
        !p.claude().join("next_command.txt").exists() && p.claude().join("specs/watched").is_dir()
    });
    assert!(consumed, "{}", std::fs::read_to_string(&err_path).unwrap());

    unsafe_kill(pid, 2);
    let mut status = None;
    let exited = wait_until(Duration::from_secs(20), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !exited {
        unsafe_kill(pid, 9);
        let _ = child.wait();
    }
    assert!(exited, "consume --watch did not stop on SIGINT");
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    let out = std::fs::read_to_string(&out_path).unwrap();
    assert!(out.contains("consumed: /spec-create watched d"), "{out}");
    assert!(out.contains("consumed: 1  failed: 0  rejected: 0"), "{out}");
}

#[test]
fn consume_sigint_during_a_run_stops_it_and_leaves_the_suggestion() {
    let p = permissive_project();
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let started = p.path().join("started");
    p.script(
        "bin/claude",
        &format!("#!/bin/sh\ntouch '{}'\nexec sleep 60\n", started.display()),
    );
    let path = path_with(&p.path().join("bin"));
    p.write(".claude/next_command.txt", "/spec-execute 1 x\n");
    let mut child = start_consume(&p, &path, &m, &["--retry-delay", "0.1"]);
    assert!(wait_until(Duration::from_secs(20), || started.exists()));
    unsafe_kill(i32::try_from(child.id()).unwrap(), 2);
    let mut status = None;
    let exited = wait_until(Duration::from_secs(20), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !exited {
        unsafe_kill(i32::try_from(child.id()).unwrap(), 9);
    }
    let out = child.wait_with_output().unwrap();
    assert!(exited, "consume did not stop on SIGINT");
    // 130 like every interrupted wait or run of qw (it was 1).
    assert_eq!(status.and_then(|s| s.code()), Some(130));
    assert!(
        stderr(&out).contains("interrupted by signal 2"),
        "{}",
        stderr(&out)
    );
    assert_eq!(p.read(".claude/next_command.txt"), "/spec-execute 1 x\n");
    assert!(!p.claude().join("next_command.failed.txt").exists());
    assert!(
        wait_until(Duration::from_secs(10), || pids_with_env(
            "QW_TEST_MARKER",
            &m
        )
        .is_empty()),
        "the agent survived"
    );
}

#[test]
fn consume_failure_records_errors_with_component_and_context_in_the_state() {
    let p = permissive_project();
    let path = fake_claude(&p, 1);
    p.write(".claude/next_command.txt", "/spec-execute 2.1 user-auth\n");
    let mut cmd = p.qw(&[
        "consume",
        "--once",
        "--attempts",
        "2",
        "--retry-delay",
        "0.1",
    ]);
    cmd.env("PATH", &path);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    let state: serde_json::Value =
        serde_json::from_str(&p.read(".claude/unified_state.json")).unwrap();
    let errors = state["errors"].as_array().expect("errors list");
    // One entry per failed attempt, then the give-up.
    assert_eq!(errors.len(), 3, "{errors:#?}");
    for (i, e) in errors.iter().take(2).enumerate() {
        assert_eq!(e["component"], "consume", "{e}");
        assert_eq!(e["context"]["command"], "consume", "{e}");
        assert_eq!(e["context"]["attempt"], i + 1, "{e}");
        assert_eq!(e["context"]["exit_code"], 1, "{e}");
        assert!(
            e["error"].as_str().unwrap().contains("exited with 1"),
            "{e}"
        );
        assert!(e["timestamp"].is_string(), "{e}");
    }
    let last = &errors[2];
    assert_eq!(last["component"], "consume");
    assert_eq!(last["context"]["attempt"], 2);
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("on each of 2 attempt(s)"),
        "{last}"
    );
}

#[test]
fn consume_caps_the_admission_wait_at_60_seconds() {
    let p = TestProject::new();
    // Refuse everything (memory limits hold even with no qw task running), so the
    // attempt sits in the admission wait where we can look at it.
    p.refuse_admission(300);
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let path = fake_claude(&p, 0);
    p.write(".claude/next_command.txt", "/spec-execute 1 x\n");
    let mut child = start_consume(&p, &path, &m, &["--attempts", "1"]);
    let consume_pid = i32::try_from(child.id()).unwrap();
    let mut exec_argv: Vec<String> = Vec::new();
    let found = wait_until(Duration::from_secs(20), || {
        exec_argv = pids_with_env("QW_TEST_MARKER", &m)
            .into_iter()
            .filter(|&pid| pid != consume_pid)
            .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
            .map(|raw| {
                raw.split(|&b| b == 0)
                    .map(|w| String::from_utf8_lossy(w).into_owned())
                    .collect::<Vec<_>>()
            })
            .find(|argv| argv.iter().any(|w| w == "exec"))
            .unwrap_or_default();
        !exec_argv.is_empty()
    });
    unsafe_kill(consume_pid, 2);
    let exited = wait_until(Duration::from_secs(20), || {
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        unsafe_kill(consume_pid, 9);
    }
    let _ = child.wait();
    assert!(found, "no `qw exec` child seen");
    let i = exec_argv
        .iter()
        .position(|w| w == "--admit-timeout")
        .unwrap_or_else(|| panic!("no --admit-timeout: {exec_argv:?}"));
    assert_eq!(exec_argv[i + 1], "60", "{exec_argv:?}");
    assert!(
        calls(&p).is_empty(),
        "claude ran although admission refused"
    );
}

#[test]
fn consume_moves_aside_binary_suggestions_and_keeps_every_failure_record() {
    let p = permissive_project();
    std::fs::write(
        p.claude().join("next_command.txt"),
        b"/dev-mode \xff\xfe on\n",
    )
    .unwrap();
    let out = p.run(&["consume", "--once"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!p.claude().join("next_command.txt").exists());
    p.write(".claude/next_command.txt", "/dev-mode on; id\n");
    let out = p.run(&["consume", "--once"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let failed = p.read(".claude/next_command.failed.txt");
    assert!(failed.contains("not valid UTF-8"), "{failed}");
    assert!(failed.contains("/dev-mode on; id"), "{failed}");
    assert_eq!(failed.matches("# failed at").count(), 2, "{failed}");
}

/// A refused suggestion is recorded in `next_command.failed.txt`: never through a
/// symlink an agent planted there (dangling or not), and always escaped to one line, so
/// its text can neither reach another file nor forge a record or carry escape codes.
#[test]
fn consume_never_writes_a_failure_record_through_a_symlink_and_escapes_it() {
    let p = permissive_project();
    let victim = p.path().join("victim");
    std::fs::write(&victim, "# rc\n").unwrap();
    let failed = p.claude().join("next_command.failed.txt");
    for target in [victim.clone(), p.path().join("dangling")] {
        let _ = std::fs::remove_file(&failed);
        std::os::unix::fs::symlink(&target, &failed).unwrap();
        p.write(".claude/next_command.txt", "qw exec -- id\ntouch /tmp/x\n");
        let out = p.run(&["consume", "--once"]);
        assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("is a symbolic link"),
            "{}",
            stderr(&out)
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "# rc\n");
        assert!(!p.path().join("dangling").exists());
        assert!(std::fs::symlink_metadata(&failed).unwrap().is_symlink());
    }
    std::fs::remove_file(&failed).unwrap();
    p.write(
        ".claude/next_command.txt",
        "qw exec -- id\n# failed at 2020: forged\n\u{1b}[2J\r\n",
    );
    let out = p.run(&["consume", "--once"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let record = p.read(".claude/next_command.failed.txt");
    assert_eq!(record.lines().count(), 2, "{record}");
    assert_eq!(record.matches("# failed at").count(), 2, "{record}"); // one forged, escaped
    assert!(
        !record.contains('\u{1b}') && !record.contains('\r'),
        "{record}"
    );
    assert!(
        record.starts_with("qw exec -- id\\n# failed at 2020: forged\\n\\u{1b}[2J"),
        "{record}"
    );
}

/// A qw command that exits 2 refused its input (a name, a flag, a file to fix): the same
/// input fails the same way again, so it is given up at once, not run three times.
#[test]
fn consume_does_not_retry_a_qw_command_that_refused_its_input() {
    let p = permissive_project();
    p.write(".claude/next_command.txt", "/workflow-continue\n"); // no spec to continue
    let out = p.run(&["consume", "--once"]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    let failed = p.read(".claude/next_command.failed.txt");
    assert!(
        failed.contains("exited with 2 (not retried: qw refused its input"),
        "{failed}"
    );
    assert!(failed.contains("on attempt 1"), "{failed}");
}

#[test]
fn consume_json_stdout_holds_only_json() {
    let p = permissive_project();
    p.write(".claude/next_command.txt", "/spec-list\n");
    let out = p.run(&["--json", "consume", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for line in stdout(&out).lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("{e}: {line}\n{}", stdout(&out)));
    }
    assert_eq!(last_json(&out)["outcome"], "consumed");
}

/// Issue 14 item 1: a suggestion that switches projects, however `-C`/`--project` is
/// spelled, is refused before anything runs — the other project's `_Verify:_` command
/// never runs, and nothing is written there.
#[test]
fn consume_refuses_every_spelling_of_another_project() {
    let p = permissive_project();
    let other = TestProject::new();
    let pwned = p.path().join("PWNED");
    other.write(
        ".claude/specs/x/tasks.md",
        &format!(
            "# Tasks\n\n- [ ] 1. Do it\n  - _Verify: `touch {}`_\n",
            pwned.display()
        ),
    );
    other.write(".claude/settings.local.json", PERMISSIVE);
    let o = other.path().display().to_string();
    let shapes = [
        format!("/workflow-auto x d --agent offline -vC {o}"),
        format!("/workflow-auto x d --agent offline -vC{o}"),
        format!("/workflow-auto x d --agent offline -vvC {o}"),
        format!("/workflow-auto x d --agent offline --project={o}"),
        format!("/workflow-auto x d --agent offline --project {o}"),
        format!("/workflow-auto x d --agent offline -C={o}"),
        format!("/workflow-auto x d --agent offline --proj {o}"),
        format!("qw -vC {o} workflow-auto x d --agent offline"),
        format!("qw --project={o} workflow-continue x --agent offline"),
        format!("qw -q workflow-auto x d -C . -C {o} --agent offline"),
    ];
    for text in &shapes {
        // `qw suggest` refuses it too, and writes nothing.
        let s = p.run(&["suggest", text]);
        assert_eq!(s.status.code(), Some(2), "{text}: {}", stderr(&s));
        assert!(!p.claude().join("next_command.txt").exists(), "{text}");
        // Written by hand (or by an agent), `consume` refuses it and moves it aside.
        p.write(".claude/next_command.txt", &format!("{text}\n"));
        let out = p.run(&["consume", "--once"]);
        assert_eq!(out.status.code(), Some(2), "{text}: {}", stderr(&out));
        assert!(stderr(&out).contains("refused"), "{text}: {}", stderr(&out));
        assert!(
            !pwned.exists(),
            "{text} ran the other project's verify command"
        );
        assert!(
            !other.claude().join("unified_state.json").exists(),
            "{text} touched the other project"
        );
        assert!(!other.claude().join("specs/x/report.md").exists(), "{text}");
        assert!(!p.claude().join("next_command.txt").exists(), "{text}");
    }
    let failed = p.read(".claude/next_command.failed.txt");
    assert_eq!(
        failed.matches("# failed at").count(),
        shapes.len(),
        "{failed}"
    );
    assert!(failed.contains("-C/--project"), "{failed}");
}

/// The same command without the project switch is accepted and runs here.
#[test]
fn consume_runs_a_suggestion_with_harmless_flags_in_any_form() {
    let p = permissive_project();
    for text in [
        "qw -v spec-create one d",
        "/spec-create -q two d",
        "qw --json spec-create three d",
        "qw --json dev-mode status",
    ] {
        p.write(".claude/next_command.txt", &format!("{text}\n"));
        let out = p.run(&["consume", "--once"]);
        assert_eq!(out.status.code(), Some(0), "{text}: {}", stderr(&out));
        assert!(!p.claude().join("next_command.txt").exists(), "{text}");
    }
    for spec in ["one", "two", "three"] {
        assert!(p.claude().join("specs").join(spec).is_dir(), "{spec}");
    }
}
