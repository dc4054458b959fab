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
