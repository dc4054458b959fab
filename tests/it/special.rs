//! Issue 14 items 11–13 and the lower-severity items: special files planted where qw
//! reads (the state, `next_command.txt`, settings, tasks.md, a spec folder a hard reset
//! copies) are refused or skipped without blocking — FIFO, symlink to `/dev/zero`,
//! directory, socket; bytes that are not UTF-8 exit 2 naming the line; a huge suggestion
//! is quoted, not echoed; `workflow-reset` refuses (or `--wait`s for) a running workflow
//! of its spec; a workflow run through `consume` does not hold an admission slot.
//!
//! Every command runs under [`bounded`]: a hang fails the test (after a generous 90 s,
//! killing the command's process group) instead of hanging the suite.

use std::path::Path;
use std::process::Stdio;

use crate::support::guarded::*;
use crate::support::*;

/// What gets planted where qw expects a regular file.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Fifo,
    DevZero,
    Dir,
    Socket,
}

const SHAPES: [Shape; 4] = [Shape::Fifo, Shape::DevZero, Shape::Dir, Shape::Socket];

impl Shape {
    /// How qw's error names it.
    fn named(self) -> &'static str {
        match self {
            Shape::Fifo => "a FIFO",
            Shape::DevZero => "a character device",
            Shape::Dir => "a directory",
            Shape::Socket => "a socket",
        }
    }

    fn plant(self, path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        match self {
            Shape::Fifo => {
                nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
            }
            Shape::DevZero => std::os::unix::fs::symlink("/dev/zero", path).unwrap(),
            Shape::Dir => std::fs::create_dir(path).unwrap(),
            // The socket file stays after the listener is dropped; nobody accepts on it.
            Shape::Socket => drop(std::os::unix::net::UnixListener::bind(path).unwrap()),
        }
    }
}

#[test]
fn special_files_as_the_state_are_refused_without_blocking() {
    for shape in SHAPES {
        let p = TestProject::new();
        let state = p.claude().join("unified_state.json");
        shape.plant(&state);
        let out = bounded(p.qw(&["status"]));
        assert_eq!(code(&out), 2, "{shape:?}: {}", diag(&out));
        let err = stderr(&out);
        assert!(
            err.contains("unified_state.json") && err.contains(shape.named()),
            "{shape:?}: {err}"
        );
        // `exec` runs its program and only warns that the run was not recorded.
        let out = bounded(p.qw(&["exec", "--", "true"]));
        assert_eq!(code(&out), 0, "{shape:?}: {}", diag(&out));
        assert!(
            stderr(&out).contains("not recorded"),
            "{shape:?}: {}",
            diag(&out)
        );
        // Nothing was replaced: what was planted is still there.
        assert!(std::fs::symlink_metadata(&state).is_ok(), "{shape:?}");
    }
}

#[test]
fn special_suggestions_are_refused_removed_and_never_followed() {
    for shape in SHAPES {
        let p = TestProject::new();
        let path = p.claude().join("next_command.txt");
        shape.plant(&path);
        let out = bounded(p.qw(&["consume", "--once"]));
        assert_eq!(code(&out), 2, "{shape:?}: {}", diag(&out));
        assert!(
            stderr(&out).contains(shape.named()),
            "{shape:?}: {}",
            diag(&out)
        );
        assert!(
            std::fs::symlink_metadata(&path).is_err(),
            "{shape:?}: the entry is still there"
        );
        let failed = p.read(".claude/next_command.failed.txt");
        assert!(failed.contains(shape.named()), "{shape:?}: {failed}");
        // Consuming again finds nothing to do.
        let out = bounded(p.qw(&["consume", "--once"]));
        assert_eq!(code(&out), 0, "{shape:?}: {}", diag(&out));
    }
    assert!(Path::new("/dev/zero").exists());
}

#[test]
fn huge_suggestions_are_quoted_briefly_everywhere() {
    // 30 MB on one line, a valid command followed by junk, and many short lines.
    let one_line = format!("/spec-status {}", "a".repeat(30 << 20));
    let lines = "/spec-status demo\n".repeat(10_000);
    for text in [one_line.as_str(), lines.as_str()] {
        let p = TestProject::new();
        p.write(".claude/next_command.txt", text);
        let out = bounded(p.qw(&["consume", "--once"]));
        assert_eq!(code(&out), 2, "{}", diag(&out));
        assert!(
            stdout(&out).len() + stderr(&out).len() < 2048,
            "{}",
            diag(&out)
        );
        assert!(stderr(&out).contains("4096-byte limit"), "{}", diag(&out));
        let failed = p.read(".claude/next_command.failed.txt");
        assert!(
            failed.len() < 1024,
            "{} bytes in the failed file",
            failed.len()
        );
        assert!(!p.claude().join("next_command.txt").exists());
    }
    // `suggest` refuses to write one in the first place.
    let p = TestProject::new();
    let long = format!("/spec-status {}", "a".repeat(100_000));
    let out = bounded(p.qw(&["suggest", &long]));
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert!(stderr(&out).len() < 1024, "{}", diag(&out));
    assert!(stderr(&out).contains("4096-byte limit"), "{}", diag(&out));
    assert!(!p.claude().join("next_command.txt").exists());
}

#[test]
fn special_or_non_utf8_settings_exit_2_naming_the_file() {
    for shape in SHAPES {
        let p = TestProject::new();
        shape.plant(&p.claude().join("settings.local.json"));
        for args in [
            &["dev-mode", "status"][..],
            &["dev-mode", "on"],
            &["resources"],
        ] {
            let out = bounded(p.qw(args));
            assert_eq!(code(&out), 2, "{shape:?} {args:?}: {}", diag(&out));
            let err = stderr(&out);
            assert!(
                err.contains("settings.local.json") && err.contains(shape.named()),
                "{shape:?} {args:?}: {err}"
            );
        }
    }
    let p = TestProject::new();
    let settings = p.claude().join("settings.local.json");
    std::fs::write(&settings, b"{\n  \"a\": 1,\n  \"b\": \"caf\xe9\"\n}\n").unwrap();
    let before = std::fs::read(&settings).unwrap();
    for args in [&["dev-mode", "on"][..], &["dev-mode", "status"]] {
        let out = bounded(p.qw(args));
        assert_eq!(code(&out), 2, "{args:?}: {}", diag(&out));
        let err = stderr(&out);
        // 1-based line, column and byte, counted as for tasks.md below.
        assert!(
            err.contains("settings.local.json")
                && err.contains("line 3, column 12")
                && err.contains("byte 24 of the file"),
            "{args:?}: {err}"
        );
        assert_eq!(
            err.lines().filter(|l| l.contains("error:")).count(),
            1,
            "{err}"
        );
    }
    assert_eq!(
        std::fs::read(&settings).unwrap(),
        before,
        "the file was changed"
    );
}

#[test]
fn special_or_non_utf8_tasks_md_exit_2_naming_the_file() {
    for shape in SHAPES {
        let p = spec_project("demo", None);
        let tasks = p.claude().join("specs/demo/tasks.md");
        shape.plant(&tasks);
        // spec-status shows every spec it can: the bad file is named on its line.
        let out = bounded(p.qw(&["spec-status", "demo"]));
        assert_eq!(code(&out), 0, "{shape:?}: {}", diag(&out));
        assert!(
            stdout(&out)
                .lines()
                .any(|l| l.contains("tasks.md") && l.contains(shape.named())),
            "{shape:?}: {}",
            diag(&out)
        );
        // The workflow never waits on it, never replaces it, and names it.
        let out = offline_run(&p, "demo");
        assert_eq!(code(&out), 2, "{shape:?}: {}", diag(&out));
        let err = stderr(&out);
        assert!(
            err.contains("tasks.md") && err.contains(shape.named()),
            "{shape:?}: {err}"
        );
        assert!(
            !p.claude().join("specs/demo/report.md").exists(),
            "{shape:?}: a report claims a run"
        );
        assert!(
            !std::fs::symlink_metadata(&tasks).unwrap().is_file(),
            "{shape:?}: replaced"
        );
    }
    let p = spec_project("demo", None);
    let tasks = p.claude().join("specs/demo/tasks.md");
    std::fs::write(&tasks, b"- [ ] 1. One\n- [ ] 2. Tw\xf6\n").unwrap();
    let out = bounded(p.qw(&["spec-status", "demo"]));
    assert_eq!(code(&out), 0, "{}", diag(&out));
    // Every message names the bad byte the same way, 1-based (the `\xf6` is the 25th byte
    // of the file, the 12th of line 2): spec-status's reading and the workflow's parse.
    const AT: &str = "line 2, column 12 (byte 25 of the file)";
    assert!(stdout(&out).contains(AT), "{}", diag(&out));
    for args in [
        &[
            "workflow-auto",
            "demo",
            "d",
            "--agent",
            "offline",
            "--isolate",
            "none",
        ][..],
        &[
            "workflow-auto",
            "demo",
            "d",
            "--agent",
            "offline",
            "--dry-run",
        ],
    ] {
        let out = bounded(p.qw(args));
        assert_eq!(code(&out), 2, "{args:?}: {}", diag(&out));
        let err = stderr(&out);
        assert!(
            err.contains("tasks.md") && err.contains(AT),
            "{args:?}: {err}"
        );
        assert_eq!(
            err.lines().filter(|l| l.contains("error:")).count(),
            1,
            "{err}"
        );
    }
    assert_eq!(
        std::fs::read(&tasks).unwrap(),
        b"- [ ] 1. One\n- [ ] 2. Tw\xf6\n"
    );
}

#[test]
fn hard_reset_skips_special_files_in_the_spec_folder_without_blocking() {
    let p = TestProject::new();
    let spec = p.claude().join("specs/demo");
    p.write(".claude/specs/demo/requirements.md", "# R\n");
    p.write(".claude/specs/demo/design.md", "# D\n");
    p.write(".claude/specs/demo/tasks.md", "- [ ] 1. One\n");
    p.write(".claude/specs/demo/notes/keep.md", "mine\n");
    Shape::Fifo.plant(&spec.join("pipe"));
    Shape::Fifo.plant(&spec.join("notes/deeper-pipe"));
    Shape::Socket.plant(&spec.join("sock"));
    Shape::DevZero.plant(&spec.join("zero"));
    let out = bounded(p.qw(&["workflow-reset", "demo", "--hard", "--yes"]));
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = stdout(&out);
    for skipped in ["pipe", "deeper-pipe", "sock"] {
        assert!(
            text.lines()
                .any(|l| l.contains("not copied") && l.contains(skipped)),
            "{skipped}: {text}"
        );
    }
    let backups: Vec<_> = std::fs::read_dir(p.claude().join("backups/workflows"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let b = &backups[0];
    assert_eq!(
        std::fs::read_to_string(b.join("tasks.md")).unwrap(),
        "- [ ] 1. One\n"
    );
    assert_eq!(
        std::fs::read_to_string(b.join("notes/keep.md")).unwrap(),
        "mine\n"
    );
    assert_eq!(
        std::fs::read_link(b.join("zero")).unwrap(),
        Path::new("/dev/zero")
    );
    assert!(!b.join("pipe").exists() && !b.join("sock").exists());
    assert!(!spec.join("tasks.md").exists() && spec.join("requirements.md").exists());
    // The state lock was released: another command gets it at once.
    let out = bounded(p.qw(&["status"]));
    assert_eq!(code(&out), 0, "{}", diag(&out));
}

#[test]
fn workflow_reset_refuses_or_waits_while_the_workflow_runs() {
    let (p, agent_cmd) = gated_project();
    let mut wf = GatedRun::start(&p, &agent_cmd, Stdio::piped());
    let wf_pid = wf.pid;

    // Soft and hard: refused, naming the workflow's pid; nothing touched.
    for args in [
        &["workflow-reset", "demo"][..],
        &["workflow-reset", "demo", "--hard", "--yes"],
    ] {
        let out = bounded(p.qw(args));
        assert_eq!(code(&out), 2, "{args:?}: {}", diag(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("pid {wf_pid}")), "{args:?}: {err}");
        assert!(err.contains("--wait"), "{err}");
    }
    assert!(p.claude().join("specs/demo/tasks.md").exists());
    assert!(!p.claude().join("backups/workflows").exists());

    // --wait with a short lock timeout gives up, naming the holder.
    let mut short = p.qw(&["workflow-reset", "demo", "--wait"]);
    short.env("QW_LOCK_TIMEOUT", "1");
    let out = bounded(short);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(
        stderr(&out).contains(&format!("pid {wf_pid}")),
        "{}",
        diag(&out)
    );

    // --wait without a limit: runs once the workflow is done, never in the middle of it.
    let mut waiting = p.qw(&["workflow-reset", "demo", "--hard", "--yes", "--wait"]);
    waiting.env("QW_LOCK_TIMEOUT", "0");
    let waiter = std::thread::spawn(move || bounded(waiting));
    std::fs::write(p.path().join("gate"), "").unwrap();
    let status = wf.child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "the workflow failed: the reset ran under it?"
    );
    let out = waiter.join().unwrap();
    assert_eq!(code(&out), 0, "{}", diag(&out));
    // The backup holds the finished tasks.md (both ticked): the reset came after.
    let backups: Vec<_> = std::fs::read_dir(p.claude().join("backups/workflows"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(backups.len(), 1);
    let ticked = std::fs::read_to_string(backups[0].join("tasks.md")).unwrap();
    assert_eq!(ticked, "- [x] 1. One\n- [x] 2. Two\n");
    assert!(!p.claude().join("specs/demo/tasks.md").exists());
}

#[test]
fn a_workflow_run_by_consume_does_not_hold_a_slot_at_max_concurrent_1() {
    let p = TestProject::new();
    p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"max_load": 1000, "max_memory": 1.0, "high_impact_load": 1000, "max_concurrent": 1, "acquire_timeout_s": 20}}"#,
    );
    write_spec(
        &p,
        "demo",
        Some("- [ ] 1. One\n  - _Verify: `true`_\n- [ ] 2. Two\n  - _Verify: `true`_\n"),
    );
    for suggestion in [
        "/workflow-auto demo d --agent offline",
        "qw workflow-continue demo --agent offline",
    ] {
        p.write(".claude/next_command.txt", &format!("{suggestion}\n"));
        let out = bounded(p.qw(&["consume", "--once", "--attempts", "1"]));
        assert_eq!(code(&out), 0, "{suggestion}: {}", diag(&out));
        assert!(!p.claude().join("next_command.txt").exists());
    }
    assert_eq!(
        p.read(".claude/specs/demo/tasks.md"),
        "- [x] 1. One\n  - _Verify: `true`_\n- [x] 2. Two\n  - _Verify: `true`_\n"
    );
}

/// What can sit where a spec document goes and is no document (issue 14 follow-up).
#[derive(Debug, Clone, Copy)]
enum NotADocument {
    Dir,
    Fifo,
    Dangling,
}

impl NotADocument {
    fn plant(self, path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        match self {
            NotADocument::Dir => std::fs::create_dir(path).unwrap(),
            NotADocument::Fifo => {
                nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
            }
            NotADocument::Dangling => {
                std::os::unix::fs::symlink(path.with_extension("gone"), path).unwrap();
            }
        }
    }

    fn named(self) -> &'static str {
        match self {
            NotADocument::Dir => "is a directory",
            NotADocument::Fifo => "is a FIFO",
            NotADocument::Dangling => "which does not exist",
        }
    }
}

/// A directory, a FIFO or a dangling symlink at `tasks.md`, `requirements.md` or
/// `design.md` is never a document that "already exists": `workflow-auto` and
/// `workflow-continue` exit 2 with one line naming the path and what is there, before
/// anything is written (no state, no report, no other document, the state's bytes kept).
#[test]
fn a_document_path_that_is_no_regular_file_exits_2_before_anything_is_written() {
    let cases = [
        ("tasks.md", NotADocument::Dir),
        ("tasks.md", NotADocument::Fifo),
        ("tasks.md", NotADocument::Dangling),
        ("requirements.md", NotADocument::Dir),
        ("design.md", NotADocument::Fifo),
        ("design.md", NotADocument::Dangling),
    ];
    let auto = [
        "workflow-auto",
        "demo",
        "d",
        "--agent",
        "offline",
        "--isolate",
        "none",
    ];
    for (doc, shape) in cases {
        let p = TestProject::new();
        permissive(&p);
        let path = p.claude().join("specs/demo").join(doc);
        shape.plant(&path);
        let out = bounded(p.qw(&auto));
        assert_eq!(code(&out), 2, "{doc} {shape:?}: {}", diag(&out));
        let err = stderr(&out);
        let errors: Vec<&str> = err.lines().filter(|l| l.contains("error:")).collect();
        assert_eq!(errors.len(), 1, "{doc} {shape:?}: {err}");
        assert!(
            errors[0].contains(&format!("`{}`", path.display()))
                && errors[0].contains(shape.named()),
            "{doc} {shape:?}: {err}"
        );
        assert!(!err.contains("already exists"), "{doc} {shape:?}: {err}");
        let mut left: Vec<String> = std::fs::read_dir(p.claude().join("specs/demo"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec![doc.to_owned()], "{doc} {shape:?}: written");
        assert!(
            !p.claude().join("unified_state.json").exists(),
            "{doc} {shape:?}: a state claims progress"
        );
    }

    // After a finished run: the resume refuses too and keeps the state's bytes.
    let p = TestProject::new();
    permissive(&p);
    let out = bounded(p.qw(&auto));
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let state = std::fs::read(p.claude().join("unified_state.json")).unwrap();
    let tasks = p.claude().join("specs/demo/tasks.md");
    std::fs::remove_file(&tasks).unwrap();
    std::fs::create_dir(&tasks).unwrap();
    let out = bounded(p.qw(&["workflow-continue", "demo"]));
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert!(
        stderr(&out).contains("tasks.md` is a directory"),
        "{}",
        diag(&out)
    );
    assert_eq!(
        std::fs::read(p.claude().join("unified_state.json")).unwrap(),
        state,
        "the state changed"
    );
}
