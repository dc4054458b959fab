//! What `qw` writes to the terminal: diagnostics as plain `qw: warning: …` lines (no
//! colour when stderr is not a terminal), and quiet exits when stdout is closed early.

use crate::support::*;

#[test]
fn output_state_warning_is_a_plain_qw_warning_line_naming_both_files() {
    let p = TestProject::new();
    p.write(".claude/unified_state.json", "{ this is not json");
    let o = p.run(&["state-backup", "after-repair"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let raw = o.stderr.clone();
    assert!(
        !raw.contains(&0x1b),
        "escape bytes on a piped stderr: {:?}",
        String::from_utf8_lossy(&raw)
    );
    let err = stderr(&o);
    let warning = err
        .lines()
        .find(|l| l.starts_with("qw: warning: "))
        .unwrap_or_else(|| panic!("no `qw: warning:` line: {err:?}"));
    assert!(
        !err.contains(" WARN "),
        "tracing's own level format: {err:?}"
    );
    assert!(warning.contains(".claude/unified_state.json"), "{warning}");
    let quarantined: Vec<String> = std::fs::read_dir(p.claude().join("backups/state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("corrupted_"))
        .collect();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(warning.contains(&quarantined[0]), "{warning}");

    // The listing sees both files.
    let o = p.run(&["state-backup", "--list"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let list = stdout(&o);
    assert!(list.contains("after-repair"), "{list}");
    assert!(
        list.contains(&quarantined[0].replace(".json", "")),
        "{list}"
    );
}

/// Run `qw ARGS` with stdout a pipe whose reading end is already closed, so every write
/// fails with EPIPE (what `qw … | head -1` does once `head` has its line).
fn run_with_closed_stdout(p: &TestProject, args: &[&str]) -> std::process::Output {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    p.qw(args)
        .stdout(std::process::Stdio::from(write))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn output_closed_stdout_ends_commands_quietly_with_exit_0() {
    let p = TestProject::new();
    // A recorded run creates the state that backups copy.
    assert!(p.run(&["exec", "--", "true"]).status.success());
    assert!(p.run(&["state-backup", "one"]).status.success());
    assert!(
        p.run(&["spec-create", "user-auth", "Log in"])
            .status
            .success()
    );
    let cases: &[&[&str]] = &[
        &["completions", "bash"],
        &["state-backup", "--list"],
        &["--json", "state-backup", "--list"],
        &["state-backup", "two"],
        &["resources"],
        &["--json", "resources"],
        &["sweep", "--project-only"],
        &["spec-list"],
        &["--json", "spec-list"],
        &["init"],
        &["--json", "init"],
    ];
    for args in cases {
        let o = run_with_closed_stdout(&p, args);
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} said something: {err}");
    }
    // The action itself happened; only its report was lost.
    assert!(p.claude().join("backups/state/two.json").exists());

    // `qw exec --json` keeps the program's exit status when its report cannot be written.
    let o = run_with_closed_stdout(&p, &["--json", "exec", "--", "sh", "-c", "exit 3"]);
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

#[test]
fn output_head_1_reads_the_first_line_and_qw_exits_0() {
    let p = TestProject::new();
    assert!(p.run(&["exec", "--", "true"]).status.success());
    for i in 0..5 {
        assert!(p.run(&["state-backup", &format!("b{i}")]).status.success());
    }
    for cmd in ["completions bash", "state-backup --list"] {
        let script = format!(
            "'{}' -C '{}' {cmd} | head -1; echo \"rc=${{PIPESTATUS[0]}}\" >&2",
            qw_bin().display(),
            p.path().display()
        );
        let o = std::process::Command::new("bash")
            .args(["-c", &script])
            .env("QW_RUNTIME_DIR", p.path().join(".qw-runtime"))
            .output()
            .unwrap();
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{cmd}: {err}");
        assert!(err.contains("rc=0"), "{cmd}: {err}");
        assert_eq!(stdout(&o).lines().count(), 1, "{cmd}: {}", stdout(&o));
    }
}
