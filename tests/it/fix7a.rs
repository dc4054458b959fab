//! rev6a's findings H1, H2, M1, M2, L1 and L3, each reproduced and tried in other
//! shapes: qw never reads, writes or deletes outside the project through a link a
//! repository can commit, and never deletes what it did not make.
//! - H1: a `.claude/runs` link (the workflow's run pruning), and names in a real
//!   `.claude/runs/` that are not qw's run folders;
//! - H2: links at `.claude/backups`, `backups/state`, `backups/workflows`
//!   (`state-backup --clean`), and names there that qw did not make;
//! - M2: a `.claude/logs` link (every command's log), `.claude` itself as a link (the
//!   user's: followed; a committed one out of the project: refused);
//! - M1: a hard link at an append target (`next_command.failed.txt`, the daily log);
//! - L1: the log fallback directory belonging to someone else, a link, or open to all;
//! - L3: a file-size limit (`ulimit -f`) ends with a line naming the file, not SIGXFSZ.
//!
//! Every command runs under [`bounded`]: a hang fails the test (after 90 s, killing the
//! command's process group) instead of hanging the suite.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use crate::support::*;

/// Run `cmd` in a process group of its own; if it has not ended after 90 s, kill the
/// group and fail: qw hung.
fn bounded(mut cmd: Command) -> Output {
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pgid = i32::try_from(child.id()).unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let dog = std::thread::spawn(move || match rx.recv_timeout(Duration::from_secs(90)) {
        Err(mpsc::RecvTimeoutError::Timeout) => {
            kill_group(pgid, 9);
            true
        }
        _ => false,
    });
    let out = child.wait_with_output().unwrap();
    let _ = tx.send(());
    assert!(!dog.join().unwrap(), "qw hung: {cmd:?}");
    out
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn diag(o: &Output) -> String {
    format!(
        "status: {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    )
}

/// Set the modification time of `path` (a file or a folder) `secs` seconds into the past.
fn age(path: &Path, secs: u64) {
    let t = SystemTime::now() - Duration::from_secs(secs);
    std::fs::File::open(path).unwrap().set_modified(t).unwrap();
}

/// Every name in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A project ready for an offline workflow of `demo` that keeps `keep` run folders.
fn workflow_project(keep: u32) -> TestProject {
    let p = TestProject::new();
    keep_runs(&p, keep);
    p
}

/// Settings of `p` (made with `.claude/`) that admit every run and keep `keep` run folders.
fn keep_runs(p: &TestProject, keep: u32) {
    p.write(
        ".claude/settings.local.json",
        &format!(
            r#"{{"resource_limits": {{"max_load": 1000, "max_memory": 1.0, "high_impact_load": 1000}}, "quantumwala": {{"keep_runs": {keep}}}}}"#
        ),
    );
}

fn offline_workflow(p: &TestProject) -> Output {
    bounded(p.qw(&[
        "workflow-auto",
        "demo",
        "x",
        "--agent",
        "offline",
        "--isolate",
        "none",
    ]))
}

/// A folder of the user's beside the project, with work in it, all two hours old.
fn victim(root: &Path) -> PathBuf {
    let v = root.join("victim");
    std::fs::create_dir_all(v.join("alpha/src")).unwrap();
    std::fs::create_dir_all(v.join("beta")).unwrap();
    std::fs::write(v.join("alpha/src/lib.rs"), "precious\n").unwrap();
    for p in ["alpha/src/lib.rs", "alpha/src", "alpha", "beta"] {
        age(&v.join(p), 7200);
    }
    v
}

// ---------------------------------------------------------------------------------------
// H1: the workflow's run pruning.

#[test]
fn fix7a_h1_a_linked_runs_folder_is_refused_and_nothing_behind_it_is_touched() {
    // rev6a's reproduction: `.claude/runs -> ../../victim`, keep_runs 1.
    let outer = tempfile::tempdir().unwrap();
    let v = victim(outer.path());
    let p = TestProject {
        dir: tempfile::tempdir_in(outer.path()).unwrap(),
    };
    keep_runs(&p, 1);
    symlink("../../victim", p.claude().join("runs")).unwrap();
    assert!(p.claude().join("runs/alpha").is_dir(), "the link works");
    let out = offline_workflow(&p);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    let err = stderr(&out);
    assert!(
        err.contains(".claude/runs`") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(
        names(&v),
        ["alpha", "beta"],
        "nothing made or removed there"
    );
    assert_eq!(
        std::fs::read_to_string(v.join("alpha/src/lib.rs")).unwrap(),
        "precious\n"
    );
    // Other shapes: an absolute link, and `workflow-continue`, `logs`, `status`.
    std::fs::remove_file(p.claude().join("runs")).unwrap();
    symlink(&v, p.claude().join("runs")).unwrap();
    for args in [
        &["workflow-continue", "demo", "--agent", "offline"][..],
        &["logs", "demo"],
        &["status"],
    ] {
        let out = bounded(p.qw(args));
        assert_eq!(code(&out), 2, "{args:?}: {}", diag(&out));
        assert!(stderr(&out).contains("symbolic link"), "{}", diag(&out));
    }
    assert_eq!(names(&v), ["alpha", "beta"]);
}

#[test]
fn fix7a_h1_pruning_removes_only_qw_run_folders_and_says_what_it_left() {
    let p = workflow_project(1);
    let runs = p.claude().join("runs");
    // Old folders that are not qw's run folders, and two old run folders of qw's.
    for name in [
        "alpha",
        "20200101T000000000-notes",
        "20200101T000000000-demo-design-a1-zzzzzz",
        "20200101T000000000-demo-design-a1-00000a",
        "20200101T000000001-other-task-1-a1-00000b",
    ] {
        std::fs::create_dir_all(runs.join(name)).unwrap();
        std::fs::write(runs.join(name).join("stdout.json"), "{}").unwrap();
        age(&runs.join(name).join("stdout.json"), 7200);
        age(&runs.join(name), 7200);
    }
    // A link named as a run folder: never followed, never counted as one.
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(outside.path().join("keep")).unwrap();
    symlink(
        outside.path(),
        runs.join("20200101T000000000-demo-tasks-a1-00000c"),
    )
    .unwrap();
    let out = offline_workflow(&p);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let left = names(&runs);
    for kept in [
        "alpha",
        "20200101T000000000-notes",
        "20200101T000000000-demo-design-a1-zzzzzz",
        "20200101T000000000-demo-tasks-a1-00000c",
    ] {
        assert!(left.contains(&kept.to_owned()), "{kept} removed: {left:?}");
    }
    for gone in [
        "20200101T000000000-demo-design-a1-00000a",
        "20200101T000000001-other-task-1-a1-00000b",
    ] {
        assert!(!left.contains(&gone.to_owned()), "{gone} kept: {left:?}");
    }
    assert!(outside.path().join("keep").is_dir());
    let err = stderr(&out);
    assert!(
        err.contains("left 4 entries") && err.contains("alpha"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// H2: `state-backup --clean`.

/// The folder of the user's of rev6a's H2, aged 60 days.
fn h2_victim(root: &Path) -> PathBuf {
    let v = root.join("victim");
    for d in ["projA/src", "projB", "projB_old", "notes_2024"] {
        std::fs::create_dir_all(v.join(d)).unwrap();
    }
    std::fs::write(v.join("projA/src/main.rs"), "work\n").unwrap();
    for d in ["projA", "projB", "projB_old", "notes_2024"] {
        age(&v.join(d), 60 * 86_400);
    }
    v
}

#[test]
fn fix7a_h2_clean_never_deletes_through_a_link_under_backups() {
    let outer = tempfile::tempdir().unwrap();
    let v = h2_victim(outer.path());
    let p = TestProject {
        dir: tempfile::tempdir_in(outer.path()).unwrap(),
    };
    std::fs::create_dir_all(p.claude().join("backups")).unwrap();
    // rev6a's reproduction: a relative link at `backups/workflows`.
    symlink("../../../victim", p.claude().join("backups/workflows")).unwrap();
    assert!(p.claude().join("backups/workflows/projB").is_dir());
    let out = bounded(p.qw(&["state-backup"]));
    assert_eq!(code(&out), 2, "{}", diag(&out));
    let out = bounded(p.qw(&["state-backup", "--clean", "--days", "30"]));
    assert_eq!(code(&out), 2, "{}", diag(&out));
    let err = stderr(&out);
    assert!(
        err.contains("backups/workflows`") && err.contains("symbolic link"),
        "{err}"
    );
    let all = ["notes_2024", "projA", "projB", "projB_old"];
    assert_eq!(names(&v), all);
    // Other shapes: `backups/state` a link to old JSON files, `backups` itself a link.
    std::fs::remove_file(p.claude().join("backups/workflows")).unwrap();
    let jsons = outer.path().join("jsons");
    std::fs::create_dir_all(&jsons).unwrap();
    for n in ["a.json", "b.json", "state_backup_20200101_000000.json"] {
        std::fs::write(jsons.join(n), "{}").unwrap();
        age(&jsons.join(n), 60 * 86_400);
    }
    symlink(&jsons, p.claude().join("backups/state")).unwrap();
    let out = bounded(p.qw(&["state-backup", "--clean", "--days", "1"]));
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert_eq!(names(&jsons).len(), 3);
    std::fs::remove_file(p.claude().join("backups/state")).unwrap();
    std::fs::remove_dir(p.claude().join("backups")).unwrap();
    symlink(outer.path(), p.claude().join("backups")).unwrap();
    std::fs::create_dir_all(outer.path().join("workflows/demo_20200101_000000")).unwrap();
    std::fs::create_dir_all(outer.path().join("workflows/demo_20200102_000000")).unwrap();
    age(
        &outer.path().join("workflows/demo_20200101_000000"),
        60 * 86_400,
    );
    age(
        &outer.path().join("workflows/demo_20200102_000000"),
        60 * 86_400,
    );
    for args in [
        &["state-backup", "--clean", "--days", "1"][..],
        &["state-backup", "--list"],
        &["state-backup", "b1"],
    ] {
        let out = bounded(p.qw(args));
        assert_eq!(code(&out), 2, "{args:?}: {}", diag(&out));
        assert!(stderr(&out).contains("backups`"), "{}", diag(&out));
    }
    assert_eq!(names(&outer.path().join("workflows")).len(), 2);
    assert_eq!(names(&v), all);
    assert!(
        !outer.path().join("state").exists(),
        "no backup written there"
    );
}

#[test]
fn fix7a_h2_clean_deletes_only_what_qw_names_and_says_what_it_left() {
    let p = TestProject::new();
    assert_eq!(code(&bounded(p.qw(&["state-backup", "mine"]))), 0);
    let state = p.claude().join("backups/state");
    let work = p.claude().join("backups/workflows");
    std::fs::create_dir_all(&work).unwrap();
    let outside = tempfile::tempdir().unwrap();
    let precious = outside.path().join("precious.json");
    std::fs::write(&precious, "{}").unwrap();
    std::fs::write(state.join("notes.txt"), "x").unwrap();
    std::fs::write(state.join("has space.json"), "{}").unwrap();
    std::fs::write(state.join("state_backup_20200101_000000.json"), "{}").unwrap();
    symlink(&precious, state.join("linked.json")).unwrap();
    for d in [
        "projB",
        "projB_old",
        "demo_20200101_000000",
        "demo_20200102_000000",
        "demo_20200102_000000_2",
    ] {
        std::fs::create_dir_all(work.join(d)).unwrap();
    }
    std::fs::write(work.join("demo_20200103_000000"), "a file, not a copy").unwrap();
    for n in [
        "notes.txt",
        "has space.json",
        "state_backup_20200101_000000.json",
    ] {
        age(&state.join(n), 60 * 86_400);
    }
    age(&state.join("mine.json"), 59 * 86_400);
    for d in [
        "projB",
        "projB_old",
        "demo_20200101_000000",
        "demo_20200102_000000",
    ] {
        age(&work.join(d), 60 * 86_400);
    }
    age(&work.join("demo_20200102_000000_2"), 59 * 86_400);
    let out = bounded(p.qw(&["state-backup", "--clean", "--days", "30"]));
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(
        names(&state),
        ["has space.json", "linked.json", "mine.json", "notes.txt"],
        "{}",
        diag(&out)
    );
    assert_eq!(
        names(&work),
        [
            "demo_20200102_000000_2",
            "demo_20200103_000000",
            "projB",
            "projB_old"
        ],
        "{}",
        diag(&out)
    );
    assert!(precious.exists());
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("left "))
        .unwrap_or_else(|| panic!("no `left …` line: {text}"));
    for n in [
        "has space.json",
        "linked.json",
        "notes.txt",
        "projB_old",
        "demo_20200103_000000",
    ] {
        assert!(line.contains(n), "{n} not named: {line}");
    }
}

// ---------------------------------------------------------------------------------------
// M2: `.claude/logs` and `.claude` itself.

#[test]
fn fix7a_m2_a_linked_logs_folder_is_never_written() {
    let p = TestProject::new();
    let outdir = tempfile::tempdir().unwrap();
    symlink(outdir.path(), p.claude().join("logs")).unwrap();
    // rev6a's reproduction (`exec`, which runs whatever the project holds, logs its exit).
    for args in [&["exec", "--", "true"][..], &["exec", "--", "false"]] {
        let out = bounded(p.qw(args));
        assert!(code(&out) <= 1, "{}", diag(&out));
    }
    assert!(
        names(outdir.path()).is_empty(),
        "{:?}",
        names(outdir.path())
    );
    // Old logs there are never pruned through the link either; other commands refuse.
    for day in 1..=20 {
        std::fs::write(outdir.path().join(format!("qw-2020-01-{day:02}.log")), "x").unwrap();
    }
    let out = bounded(p.qw(&["status"]));
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert!(stderr(&out).contains(".claude/logs`"), "{}", diag(&out));
    let out = bounded(p.qw(&["exec", "--", "false"]));
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(stderr(&out).contains("symbolic link"), "{}", diag(&out));
    assert_eq!(names(outdir.path()).len(), 20);
}

#[test]
fn fix7a_m2_a_claude_link_of_the_user_s_is_followed_a_committed_one_out_of_the_project_is_not() {
    // The user's own link (dotfiles): followed.
    let p = TestProject::bare();
    let dotfiles = tempfile::tempdir().unwrap();
    symlink(dotfiles.path(), p.path().join(".claude")).unwrap();
    let out = bounded(p.qw(&["state-backup", "b1"]));
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(dotfiles.path().join("backups/state/b1.json").is_file());
    // Committed to the repository and pointing out of it: refused, nothing written.
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .arg("-C")
            .arg(p.path())
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {}", diag(&o));
    };
    git(&["init", "-q"]);
    git(&["add", ".claude"]);
    let out = bounded(p.qw(&["state-backup", "b2"]));
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert!(
        stderr(&out).contains("the repository commits it"),
        "{}",
        diag(&out)
    );
    assert!(!dotfiles.path().join("backups/state/b2.json").exists());
    // A committed link inside the project (a monorepo's shared folder) is followed.
    std::fs::remove_file(p.path().join(".claude")).unwrap();
    std::fs::create_dir_all(p.path().join("shared/claude")).unwrap();
    symlink("shared/claude", p.path().join(".claude")).unwrap();
    git(&["add", "-A"]);
    let out = bounded(p.qw(&["state-backup", "b3"]));
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(
        p.path()
            .join("shared/claude/backups/state/b3.json")
            .is_file()
    );
}

// ---------------------------------------------------------------------------------------
// M1: hard links at append targets.

#[test]
fn fix7a_m1_a_hard_link_at_the_failed_suggestion_record_is_never_appended_to() {
    // rev6a's reproduction.
    let outer = tempfile::tempdir().unwrap();
    let rc = outer.path().join("fake_bashrc");
    std::fs::write(&rc, "ORIG\n").unwrap();
    let p = TestProject {
        dir: tempfile::tempdir_in(outer.path()).unwrap(),
    };
    std::fs::create_dir_all(p.claude()).unwrap();
    std::fs::hard_link(&rc, p.claude().join("next_command.failed.txt")).unwrap();
    let pwned = outer.path().join("PWNED");
    p.write(
        ".claude/next_command.txt",
        &format!("/status $(touch {})", pwned.display()),
    );
    let out = bounded(p.qw(&["consume", "--once"]));
    assert_ne!(code(&out), 0, "{}", diag(&out));
    assert!(stderr(&out).contains("hard links"), "{}", diag(&out));
    assert_eq!(std::fs::read_to_string(&rc).unwrap(), "ORIG\n");
    assert!(!pwned.exists());
    // Another shape: today's daily log hard-linked to a file of the user's.
    let log = p.claude().join("logs").join(format!(
        "qw-{}.log",
        chrono::Local::now().format("%Y-%m-%d")
    ));
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&log);
    std::fs::hard_link(&rc, &log).unwrap();
    let out = bounded(p.qw(&["exec", "--env", "TOKEN=s3cret", "--", "false"]));
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(stderr(&out).contains("hard links"), "{}", diag(&out));
    assert_eq!(std::fs::read_to_string(&rc).unwrap(), "ORIG\n");
}

#[test]
fn fix7a_m1_a_hard_link_at_a_lock_file_is_never_overwritten() {
    // rev6a's reproduction: the state lock hard-linked to a file of the user's.
    let outer = tempfile::tempdir().unwrap();
    let notes = outer.path().join("notes.txt");
    std::fs::write(&notes, "precious line 1\nprecious line 2\n").unwrap();
    let p = workflow_project(100);
    std::fs::hard_link(&notes, p.claude().join("unified_state.json.lock")).unwrap();
    let out = bounded(p.qw(&["exec", "--", "true"]));
    assert_eq!(code(&out), 0, "{}", diag(&out));
    // Other shapes: a workflow (state lock) and a backup (state lock), each refused naming it.
    let out = offline_workflow(&p);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(stderr(&out).contains("hard links"), "{}", diag(&out));
    let out = bounded(p.qw(&["state-backup", "b1"]));
    assert_ne!(code(&out), 0, "{}", diag(&out));
    assert!(
        stderr(&out).contains("unified_state.json.lock"),
        "{}",
        diag(&out)
    );
    // The workflow lock of a spec.
    std::fs::remove_file(p.claude().join("unified_state.json.lock")).unwrap();
    std::fs::create_dir_all(p.claude().join("runs")).unwrap();
    let _ = std::fs::remove_file(p.claude().join("runs/.demo.workflow.lock"));
    std::fs::hard_link(&notes, p.claude().join("runs/.demo.workflow.lock")).unwrap();
    let out = offline_workflow(&p);
    assert_ne!(code(&out), 0, "{}", diag(&out));
    assert!(stderr(&out).contains("hard links"), "{}", diag(&out));
    assert_eq!(
        std::fs::read_to_string(&notes).unwrap(),
        "precious line 1\nprecious line 2\n"
    );
}

// ---------------------------------------------------------------------------------------
// L1: the log fallback directory.

/// A project whose daily log cannot be written (a FIFO at today's file), so logging falls
/// back to `$TMPDIR/qw-logs-<uid>/`, with `TMPDIR` at `tmp`.
fn falling_back(tmp: &Path) -> (TestProject, Command) {
    let p = TestProject::new();
    let log = p.claude().join("logs").join(format!(
        "qw-{}.log",
        chrono::Local::now().format("%Y-%m-%d")
    ));
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    nix::unistd::mkfifo(&log, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let mut cmd = p.qw(&["exec", "--env", "TOKEN=s3cret", "--", "false"]);
    cmd.env("TMPDIR", tmp);
    (p, cmd)
}

fn fallback_of(tmp: &Path) -> PathBuf {
    tmp.join(format!("qw-logs-{}", nix::unistd::getuid()))
}

#[test]
fn fix7a_l1_the_log_fallback_is_private_and_only_ever_the_user_s_own() {
    // A fresh fallback is made 0700.
    let tmp = tempfile::tempdir().unwrap();
    let (_p, cmd) = falling_back(tmp.path());
    let out = bounded(cmd);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let fb = fallback_of(tmp.path());
    let meta = std::fs::symlink_metadata(&fb).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o700, "{}", diag(&out));
    // One of ours left open to all (0777) is made 0700 again.
    std::fs::set_permissions(&fb, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (_p, cmd) = falling_back(tmp.path());
    assert_eq!(code(&bounded(cmd)), 1);
    assert_eq!(std::fs::metadata(&fb).unwrap().mode() & 0o777, 0o700);
    // A link there is not followed: logs go to stderr only.
    let tmp2 = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    symlink(elsewhere.path(), fallback_of(tmp2.path())).unwrap();
    let (_p, cmd) = falling_back(tmp2.path());
    let out = bounded(cmd);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(stderr(&out).contains("stderr only"), "{}", diag(&out));
    assert!(names(elsewhere.path()).is_empty());
    // rev6a's reproduction: another user made it first (only root can set that up here).
    let tmp3 = tempfile::tempdir().unwrap();
    let theirs = fallback_of(tmp3.path());
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o777)).unwrap();
    if std::os::unix::fs::chown(&theirs, Some(4242), Some(4242)).is_err() {
        eprintln!("skipping the other-user shape: not root");
        return;
    }
    let (_p, cmd) = falling_back(tmp3.path());
    let out = bounded(cmd);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(
        stderr(&out).contains("stderr only") && stderr(&out).contains("uid 4242"),
        "{}",
        diag(&out)
    );
    assert!(names(&theirs).is_empty(), "{:?}", names(&theirs));
}

// ---------------------------------------------------------------------------------------
// L3: a file-size limit.

/// `qw ARGS…` in `p` under `ulimit -f blocks` (1 KiB blocks).
fn limited(p: &TestProject, blocks: u32, args: &[&str]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -f {blocks} && exec \"$0\" \"$@\""))
        .arg(qw_bin())
        .arg("-C")
        .arg(p.path())
        .args(args)
        .env("QW_RUNTIME_DIR", p.path().join(".qw-runtime"))
        .env_remove("QW_RUN_ID");
    bounded(cmd)
}

#[test]
fn fix7a_l3_a_file_size_limit_ends_with_a_line_naming_the_file() {
    // rev6a's reproduction: a workflow under `ulimit -f 8`.
    let p = workflow_project(100);
    let out = limited(
        &p,
        8,
        &[
            "workflow-auto",
            "demo",
            "x",
            "--agent",
            "offline",
            "--isolate",
            "none",
        ],
    );
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(out.status.signal(), None, "{}", diag(&out));
    assert!(code(&out) != 0, "{}", diag(&out));
    assert!(stderr(&out).contains("too large"), "{}", diag(&out));
    // Another shape: a state backup bigger than the limit names the backup file.
    let big = TestProject::new();
    assert_eq!(code(&bounded(big.qw(&["state-backup", "first"]))), 0);
    let state = big.claude().join("unified_state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["padding_for_the_test"] = serde_json::Value::String("x".repeat(64 * 1024));
    std::fs::write(&state, serde_json::to_string(&v).unwrap()).unwrap();
    let out = limited(&big, 16, &["state-backup", "second"]);
    assert_eq!(out.status.signal(), None, "{}", diag(&out));
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let err = stderr(&out);
    assert!(err.contains("too large") && err.contains("second"), "{err}");
    assert!(!big.claude().join("backups/state/second.json").exists());
}
