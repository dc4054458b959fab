//! The command validator seen through `qw suggest`: accepted suggestions are written,
//! refused ones exit 2 with the reason and leave no file.

use crate::support::*;

const CASES: &[(&str, bool)] = &[
    ("/workflow-continue user-auth", true),
    ("qw workflow-continue user-auth", true),
    (
        "/workflow-auto reformat-output -- \"--output-format json on every platform\"",
        true,
    ),
    (
        "/workflow-auto reformat-output \"add --output-format json on every platform\"",
        true,
    ),
    // qw itself would take the description for an unknown option: refused now, not later.
    (
        "/workflow-auto reformat-output \"--output-format json on every platform\"",
        false,
    ),
    ("/sweep --project-only", true),
    ("/workflow-auto x d --agent offline -vC /other", false),
    ("qw -vC /other status", false),
    ("/status --project=/other", false),
    ("/status -C=/other", false),
    ("/spec-status a-b", true),
    ("/spec-requirements user-auth", true),
    ("/workflow-continue x; rm -rf /", false),
    ("/workflow-continue x && echo hi", false),
    ("/workflow-continue x | sh", false),
    ("/workflow-continue `id`", false),
    ("/workflow-continue $(id)", false),
    ("/status > out", false),
    ("rm -rf /", false),
    ("/exec -- sh", false),
    ("/not-a-command", false),
];

#[test]
fn validate_suggest_table_through_the_cli() {
    let p = TestProject::new();
    let file = p.claude().join("next_command.txt");
    for (text, ok) in CASES {
        let _ = std::fs::remove_file(&file);
        let out = p.run(&["suggest", text]);
        if *ok {
            assert_eq!(out.status.code(), Some(0), "{text}: {}", stderr(&out));
            assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{text}\n"));
        } else {
            assert_eq!(out.status.code(), Some(2), "{text} accepted");
            assert!(
                stderr(&out).contains("refused suggestion"),
                "{}",
                stderr(&out)
            );
            assert!(!file.exists(), "{text} was written");
        }
    }
}

#[test]
fn validate_reason_names_the_character_and_position() {
    let p = TestProject::new();
    let out = p.run(&["suggest", "/status; reboot"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`;` at character 8"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn validate_overlong_and_nul_input_is_refused() {
    let p = TestProject::new();
    let long = format!("/spec-status {}", "a".repeat(5000));
    let out = p.run(&["suggest", &long]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("limit"), "{}", stderr(&out));
    // NUL cannot travel in argv; it can in the file consume reads.
    p.write(".claude/next_command.txt", "/status\0x");
    let out = p.run(&["consume", "--once"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("NUL"), "{}", stderr(&out));
}
