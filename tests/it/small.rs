//! Small findings of the rev8a review (F3 rest, F7) and Slurm's run folder, each as a
//! class with several shapes: `spec-create`, `state-backup` and `dev-mode on` stop on a
//! signal while waiting for the state lock (128+N, nothing changed, no empty spec folder);
//! a number qw reads as a tag is shown as the file holds it; a BOM and hard links survive
//! rewrites; `consume` does not retry "Not logged in"; a non-folder where qw keeps its
//! folders is one line naming it (exit 2).

use std::os::unix::fs::MetadataExt as _;
use std::process::Stdio;

use crate::locks::{StoppedHolder, interrupted_while_waiting, state_lock, state_of};
use crate::support::*;

/// A state written by a previous qw command (so there is one to back up and restore).
fn with_state(p: &TestProject) -> String {
    let out = p.run(&["spec-create", "first", "The first spec"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    p.read(".claude/unified_state.json")
}

#[test]
fn spec_create_stopped_while_waiting_for_the_state_lock_leaves_no_folder() {
    let p = TestProject::new();
    let state = with_state(&p);
    interrupted_while_waiting(
        &p,
        &["spec-create", "second", "Another spec"],
        &state_lock(&p),
        &state_of(&p),
    );
    assert!(
        !p.claude().join("specs/second").exists(),
        "an empty spec folder is left"
    );
    assert_eq!(p.read(".claude/unified_state.json"), state, "state changed");
}

#[test]
fn spec_create_that_cannot_record_its_spec_takes_the_folder_back() {
    let p = TestProject::new();
    let state = with_state(&p);
    // Shape 1: the lock stays held past QW_LOCK_TIMEOUT.
    {
        let _holder = StoppedHolder::new(&state_lock(&p));
        let out = p
            .qw(&["spec-create", "timed", "Times out"])
            .env("QW_LOCK_TIMEOUT", "0.5")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("gave up after"), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("spec `timed` was not created"),
            "{}",
            stderr(&out)
        );
        assert!(!p.claude().join("specs/timed").exists());
    }
    // Shape 2: the lock file is a FIFO (it cannot serve as a lock).
    let lock = state_lock(&p);
    std::fs::remove_file(&lock).unwrap();
    nix::unistd::mkfifo(&lock, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let out = p.run(&["spec-create", "fifo", "Lock is a FIFO"]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("spec `fifo` was not created"),
        "{}",
        stderr(&out)
    );
    assert!(!p.claude().join("specs/fifo").exists());
    assert_eq!(p.read(".claude/unified_state.json"), state);
}

#[test]
fn state_backup_create_and_restore_stop_on_each_signal_while_waiting() {
    let p = TestProject::new();
    with_state(&p);
    let out = p.run(&["state-backup", "kept"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let state = p.read(".claude/unified_state.json");
    let backups = p.claude().join("backups/state");
    let before = std::fs::read_dir(&backups).unwrap().count();
    interrupted_while_waiting(
        &p,
        &["state-backup", "mine"],
        &state_lock(&p),
        &state_of(&p),
    );
    interrupted_while_waiting(
        &p,
        &["state-backup", "--restore", "kept"],
        &state_lock(&p),
        &state_of(&p),
    );
    assert_eq!(
        std::fs::read_dir(&backups).unwrap().count(),
        before,
        "a backup was written"
    );
    assert_eq!(p.read(".claude/unified_state.json"), state, "state changed");
}

#[test]
fn dev_mode_on_stopped_while_waiting_for_its_backup_leaves_the_settings_alone() {
    let p = TestProject::new();
    with_state(&p);
    let settings = "{\n  \"mine\": 1\n}\n";
    p.write(".claude/settings.local.json", settings);
    interrupted_while_waiting(&p, &["dev-mode", "on"], &state_lock(&p), &state_of(&p));
    assert_eq!(p.read(".claude/settings.local.json"), settings);
    // Without the holder it goes through: settings written, state backed up.
    let out = p.run(&["dev-mode", "on"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        p.read(".claude/settings.local.json")
            .contains("\"enabled\": true")
    );
}

/// A state a Python writer left: numbers serde_json cannot hold where qw wants a `u32`.
#[test]
fn a_quarantine_message_shows_the_number_as_the_file_holds_it() {
    for (token, field) in [
        ("123456789012345678901234567890", "attempts"),
        ("NaN", "attempts"),
        ("-Infinity", "schema_version"),
    ] {
        let p = TestProject::new();
        let text = if field == "schema_version" {
            format!(r#"{{"schema_version": {token}}}"#)
        } else {
            format!(
                r#"{{"schema_version": 1, "specifications": {{"a": {{"tasks": {{"1": {{"{field}": {token}}}}}}}}}}}"#
            )
        };
        p.write(".claude/unified_state.json", &text);
        let out = p.run(&["status"]);
        let err = stderr(&out);
        assert!(err.contains("was corrupt"), "{token}: {err}");
        assert!(err.contains(&format!("number {token}")), "{token}: {err}");
        assert!(
            !err.contains("qw-num") && !err.contains("\\0") && !err.contains('\0'),
            "{token}: an internal marker is shown: {err}"
        );
    }
}

#[test]
fn a_byte_order_mark_survives_a_rewrite_of_the_state_and_of_the_settings() {
    let p = TestProject::new();
    with_state(&p);
    // The state: written by Windows with a BOM; the next command's rewrite keeps it.
    let state = p.claude().join("unified_state.json");
    let mut bytes = "\u{feff}".as_bytes().to_vec();
    bytes.extend(std::fs::read(&state).unwrap());
    std::fs::write(&state, &bytes).unwrap();
    let out = p.run(&["spec-create", "second", "Another"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let after = std::fs::read(&state).unwrap();
    assert!(
        after.starts_with("\u{feff}{".as_bytes()),
        "state lost its BOM"
    );
    assert!(String::from_utf8_lossy(&after).contains("\"second\""));
    // The settings: `dev-mode on` rewrites them.
    p.write(".claude/settings.local.json", "\u{feff}{\"mine\": 1}\n");
    let out = p.run(&["dev-mode", "on"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let settings = p.read(".claude/settings.local.json");
    assert!(settings.starts_with("\u{feff}{"), "{settings:?}");
    assert!(settings.contains("\"enabled\": true"), "{settings}");
}

#[test]
fn rewrites_keep_hard_links_of_the_settings_and_of_the_state() {
    let p = TestProject::new();
    with_state(&p);
    let keep = p.path().join("keep");
    std::fs::create_dir_all(&keep).unwrap();
    for (rel, args) in [
        (".claude/settings.local.json", vec!["dev-mode", "on"]),
        (
            ".claude/unified_state.json",
            vec!["spec-create", "linked", "Linked"],
        ),
    ] {
        let path = p.path().join(rel);
        if !path.exists() {
            p.write(rel, "{}\n");
        }
        let other = keep.join(path.file_name().unwrap());
        std::fs::hard_link(&path, &other).unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        let out = p.run(&args);
        assert_eq!(out.status.code(), Some(0), "{rel}: {}", stderr(&out));
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            ino,
            "{rel}: link broken"
        );
        assert_eq!(
            std::fs::read(&other).unwrap(),
            std::fs::read(&path).unwrap(),
            "{rel}: the other name kept the old contents"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().nlink(), 2, "{rel}");
    }
    assert!(
        p.read(".claude/settings.local.json")
            .contains("\"enabled\": true")
    );
    assert!(p.read(".claude/unified_state.json").contains("\"linked\""));
    let strays: Vec<_> = std::fs::read_dir(p.claude())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("before-write") || n.contains(".tmp"))
        .collect();
    assert!(strays.is_empty(), "{strays:?}");
}

/// Admission that never holds a run back on a busy test machine.
const PERMISSIVE: &str =
    r#"{"resource_limits": {"max_load": 1000, "max_memory": 1.0, "high_impact_load": 1000}}"#;

#[test]
fn consume_does_not_retry_claude_when_it_is_not_logged_in() {
    let fixture = include_str!("../fixtures/claude_result_not_logged_in.json");
    // Shape 1: the result on stdout (`--output-format json`); shape 2: the refusal on
    // stderr (an expired key); shape 3 (control): any other failure is retried.
    let shapes = [
        (format!("echo '{}'", fixture.trim()), 1, true),
        (
            "echo 'Invalid API key · Please run /login' >&2".to_owned(),
            1,
            true,
        ),
        ("echo 'overloaded, try later' >&2".to_owned(), 3, false),
    ];
    for (say, calls, login) in shapes {
        let p = TestProject::new();
        p.write(".claude/settings.local.json", PERMISSIVE);
        let log = p.path().join("calls.txt");
        p.script(
            "bin/claude",
            &format!("#!/bin/sh\necho x >> '{}'\n{say}\nexit 1\n", log.display()),
        );
        p.write(".claude/next_command.txt", "/spec-execute 1 demo\n");
        let out = p
            .qw(&["consume", "--once", "--retry-delay", "0.1"])
            .env("PATH", path_with(&p.path().join("bin")))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{say}: {}", stderr(&out));
        let n = std::fs::read_to_string(&log).unwrap().lines().count();
        assert_eq!(n, calls, "{say}: attempts");
        let failed = p.read(".claude/next_command.failed.txt");
        assert_eq!(failed.contains("claude /login"), login, "{say}: {failed}");
        assert!(!p.claude().join("next_command.txt").exists());
    }
}

#[test]
fn a_non_folder_where_qw_keeps_its_folders_is_one_line_exit_2() {
    // Where, and whether a FIFO (else a regular file) is put there.
    let shapes = [
        ("backups", true, "a FIFO"),
        ("backups/state", false, "a regular file"),
        ("runs", true, "a FIFO"),
    ];
    for (rel, fifo, kind) in shapes {
        let p = TestProject::new();
        with_state(&p);
        let path = p.claude().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = std::fs::remove_dir_all(&path);
        if fifo {
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        } else {
            std::fs::write(&path, "x").unwrap();
        }
        for args in [
            vec!["state-backup"],
            vec!["state-backup", "--list"],
            vec!["workflow-reset", "first", "--hard", "--yes"],
            vec!["status"],
        ] {
            let out = p.run(&args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{rel} {args:?}: {err}");
            assert!(
                err.contains(&format!("`{}` is {kind}, not a directory", path.display())),
                "{rel} {args:?}: {err}"
            );
            assert!(!err.contains("os error"), "{rel} {args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{rel} {args:?}: {err}");
        }
        assert!(p.claude().join("specs/first").is_dir(), "{rel}: reset ran");
    }
}
