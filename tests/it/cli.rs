//! The command line as a whole: help texts, exit codes of usage errors.

use crate::support::*;

const COMMANDS: &[&str] = &[
    "sweep",
    "state-backup",
    "workflow-reset",
    "resources",
    "init",
    "spec-create",
    "spec-list",
    "spec-status",
    "status",
    "workflow-auto",
    "workflow-continue",
    "dev-mode",
    "suggest",
    "consume",
    "dashboard",
    "worktrees",
    "completions",
];

#[test]
fn every_help_documents_exit_codes() {
    let p = TestProject::bare();
    for cmd in COMMANDS {
        for flag in ["--help", "-h"] {
            let out = p.run(&[cmd, flag]);
            assert_eq!(out.status.code(), Some(0), "{cmd} {flag}");
            let text = stdout(&out);
            assert!(
                text.contains("Exit codes: 0 success") && text.contains("2 bad input"),
                "{cmd} {flag}:\n{text}"
            );
        }
    }
    for cmd in COMMANDS.iter().chain(&["exec"]) {
        let text = stdout(&p.run(&[cmd, "--help"]));
        assert!(
            text.contains("Example"),
            "{cmd} --help has no example:\n{text}"
        );
    }
    let exec = stdout(&p.run(&["exec", "--help"]));
    assert!(exec.contains("124") && exec.contains("125"), "{exec}");
}

#[test]
fn unknown_commands_and_flags_exit_2_but_exec_misuse_exits_125() {
    let p = TestProject::bare();
    assert_eq!(p.run(&["no-such-command"]).status.code(), Some(2));
    assert_eq!(p.run(&["status", "--no-such-flag"]).status.code(), Some(2));
    assert_eq!(
        p.run(&["exec", "--no-such-flag", "--", "true"])
            .status
            .code(),
        Some(125)
    );
}

/// `qw ARGS…` run inside `p` without the `-C` that `TestProject::qw` adds.
fn qw_in(p: &TestProject) -> std::process::Command {
    let mut c = std::process::Command::new(qw_bin());
    c.current_dir(p.path());
    c.env("QW_RUNTIME_DIR", p.path().join(".qw-runtime"));
    c.env_remove("QW_RUN_ID");
    c
}

#[test]
fn exec_misuse_is_told_by_the_subcommand_not_by_any_word_exec() {
    let p = TestProject::bare();
    std::fs::create_dir(p.path().join("exec")).unwrap();
    let code = |args: &[&str]| {
        let out = qw_in(&p).args(args).output().unwrap();
        assert!(!stderr(&out).trim().is_empty(), "{args:?}: no message");
        out.status.code()
    };
    // `exec` is the subcommand: misuse exits 125 (GNU timeout's convention).
    assert_eq!(code(&["exec", "--bogus"]), Some(125));
    assert_eq!(
        code(&["--json", "exec", "--bogus", "--", "true"]),
        Some(125)
    );
    assert_eq!(
        code(&["-v", "exec", "--timeout", "x", "--", "true"]),
        Some(125)
    );
    assert_eq!(code(&["--project", "exec", "exec", "--bogus"]), Some(125));
    // `exec` is an argument of another subcommand or an option's value: exit 2.
    assert_eq!(code(&["spec-create", "exec", "x", "--bogus"]), Some(2));
    assert_eq!(code(&["workflow-auto", "exec", "d", "--bogus"]), Some(2));
    assert_eq!(code(&["--json", "spec-status", "exec", "--bogus"]), Some(2));
    assert_eq!(code(&["-C", "exec", "status", "--bogus"]), Some(2));
    assert_eq!(code(&["-Cexec", "status", "--bogus"]), Some(2));
    assert_eq!(code(&["--project=exec", "status", "--bogus"]), Some(2));
    assert_eq!(code(&["help", "exec", "--bogus"]), Some(2));
}

#[test]
fn exec_fast_path_and_clap_give_the_same_run() {
    // The fast path (common shapes) and clap (a spelling it leaves to clap, `-vC DIR`)
    // must run the program the same way and report the same fields.
    let p = TestProject::bare();
    let dir = p.path().to_str().unwrap().to_owned();
    let fast = qw_in(&p)
        .args([
            "-C",
            &dir,
            "--json",
            "exec",
            "--timeout=5",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .output()
        .unwrap();
    let slow = qw_in(&p)
        .args([
            "-qC",
            &dir,
            "exec",
            "--json",
            "--timeout",
            "5",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .output()
        .unwrap();
    for out in [&fast, &slow] {
        assert_eq!(out.status.code(), Some(3), "{}", stderr(out));
        let report = last_json(out);
        assert_eq!(report["exit_code"], 3);
        assert_eq!(report["timed_out"], false);
    }
}
