//! Issue 14's smaller leftovers found by the ninth session's reviews: `workflow-reset`
//! and `qw exec` wait out a state restore as a workflow start does; a hard reset leaves
//! no merge-pending record of the spec behind; `qw: error:` lines quote outside text
//! escaped; a NUL in a `_Verify:_` command is refused where it is written; stash hints
//! for entries with untracked files; prune messages for squash-merged branches.
//!
//! Every command runs under [`bounded`] or a process group killed when the test ends.

use std::io::BufRead as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use quantumwala::fs::LockedFile;

use crate::support::flow::{code, diag};
use crate::support::guarded::*;
use crate::support::*;

/// Generous bound on every wait of these tests.
const PATIENCE: Duration = Duration::from_secs(60);

/// A foreign process holding `path` locked (`flock -F`: the lock stays with the pid that
/// took it), as a `qw state-backup --restore` waiting for a workflow would. Killed by pid
/// on drop or [`release`](Holder::release).
struct Holder {
    child: Child,
}

impl Holder {
    fn new(path: &Path) -> Holder {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let child = Command::new("flock")
            .args(["-F", "-x"])
            .arg(path)
            .args(["sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("flock(1) from util-linux");
        let holder = Holder { child };
        let pid = i32::try_from(holder.child.id()).unwrap();
        assert!(
            wait_until(PATIENCE, || LockedFile::probe(path)
                .unwrap()
                .and_then(|h| h.pid)
                == Some(pid)),
            "flock never took `{}`",
            path.display()
        );
        holder
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn release(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `qw` in a process group of its own with piped stderr, read line by line; the group
/// is killed when dropped.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// Wait for a stderr line containing `needle`.
    fn expect_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; stderr so far: {:#?}", self.seen),
            }
        }
    }

    /// Wait for the exit (bounded): its code (-1 for a signal) and the whole stderr.
    fn finish(mut self) -> (i32, String) {
        let ended = wait_until(PATIENCE, || self.child.try_wait().unwrap().is_some());
        assert!(ended, "qw did not end; stderr: {:#?}", self.seen);
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.code().unwrap_or(-1), self.seen.join("\n"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        kill_group(self.pid(), 9);
        let _ = self.child.wait();
    }
}

fn restore_lock(p: &TestProject) -> PathBuf {
    p.claude().join("runs/.state-restore.lock")
}

/// A project whose spec `demo` ran to the end with the offline agent.
fn finished_demo() -> TestProject {
    let p = spec_project(
        "demo",
        Some("- [ ] 1. One\n  - _Verify: `true`_\n- [ ] 2. Two\n  - _Verify: `true`_\n"),
    );
    let out = offline_run(&p, "demo");
    assert_eq!(code(&out), 0, "{}", diag(&out));
    p
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// 1. `workflow-reset` and `qw exec` wait out a state restore.

#[test]
fn edges_reset_waits_for_a_restore_then_resets() {
    let p = finished_demo();
    let tasks = p.claude().join("specs/demo/tasks.md");
    let state = p.claude().join("unified_state.json");
    for args in [
        &["workflow-reset", "demo", "--hard", "--yes"][..],
        // A spec with no folder and no workflow lock: only its record in the state.
        &["workflow-reset", "ghost"],
    ] {
        let holder = Holder::new(&restore_lock(&p));
        let before = read(&state);
        let mut qw = Running::start(p.qw(args));
        let line = qw.expect_line("waiting for");
        assert!(
            line.contains("a state restore (`qw state-backup --restore`) to end")
                && line.contains(".state-restore.lock")
                && line.contains(&format!("held by pid {}", holder.pid())),
            "{args:?}: {line}"
        );
        assert_eq!(
            read(&state),
            before,
            "{args:?}: the state changed during the wait"
        );
        assert!(
            tasks.exists() || args[1] == "ghost",
            "{args:?}: files removed"
        );
        holder.release();
        let (rc, err) = qw.finish();
        if args[1] == "demo" {
            assert_eq!(rc, 0, "{args:?}: {err}");
            assert!(!tasks.exists(), "the hard reset did not run: {err}");
        } else {
            // Reset after the wait, and refused as before: a spec the state lacks.
            assert_eq!(rc, 2, "{args:?}: {err}");
            assert!(err.contains("ghost"), "{err}");
        }
    }
}

#[test]
fn edges_reset_interrupted_waiting_for_a_restore_exits_128_plus_n_and_changes_nothing() {
    let p = finished_demo();
    let tasks = p.claude().join("specs/demo/tasks.md");
    let state = p.claude().join("unified_state.json");
    let holder = Holder::new(&restore_lock(&p));
    for (args, sig) in [
        (&["workflow-reset", "demo", "--hard", "--yes"][..], 2),
        (&["workflow-reset", "demo", "--hard", "--yes"], 15),
        (&["workflow-reset", "demo", "--wait"], 2),
        (&["workflow-reset", "demo", "--hard", "--yes"], 1),
    ] {
        let before = read(&state);
        let backups = std::fs::read_dir(p.claude().join("backups/state"))
            .map(|d| d.count())
            .unwrap_or(0);
        let mut qw = Running::start(p.qw(args));
        qw.expect_line("waiting for a state restore");
        unsafe_kill(qw.pid(), sig);
        let (rc, err) = qw.finish();
        assert_eq!(rc, 128 + sig, "{args:?} signal {sig}: {err}");
        assert!(
            err.contains(&format!(
                "interrupted by signal {sig} while waiting for a state restore"
            )),
            "{err}"
        );
        assert_eq!(read(&state), before, "{args:?}: state changed");
        assert!(tasks.exists(), "{args:?}: tasks.md removed");
        assert_eq!(
            std::fs::read_dir(p.claude().join("backups/state"))
                .map(|d| d.count())
                .unwrap_or(0),
            backups,
            "{args:?}: a backup was written"
        );
    }
    holder.release();
}

#[test]
fn edges_exec_records_after_a_restore_ends_and_a_workflow_step_does_not_wait() {
    let p = TestProject::new();
    let total = |p: &TestProject| -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&read(&p.claude().join("unified_state.json"))).unwrap();
        v["commands"]["total_executed"].as_u64().unwrap()
    };
    assert_eq!(code(&bounded(p.qw(&["exec", "--", "true"]))), 0);
    assert_eq!(total(&p), 1);

    let holder = Holder::new(&restore_lock(&p));
    // A step of a workflow (its agent or `_Verify:_` command) records at once: a restore
    // waiting for that workflow must not wait for it crosswise.
    let mut step = p.qw(&["exec", "--", "true"]);
    step.env("QW_SPEC", "demo");
    let out = bounded(step);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(total(&p), 2);

    let mut qw = Running::start(p.qw(&["exec", "--", "true"]));
    let line = qw.expect_line("waiting for");
    assert!(line.contains("a state restore"), "{line}");
    assert_eq!(total(&p), 2, "recorded during the restore");
    holder.release();
    let (rc, err) = qw.finish();
    assert_eq!(rc, 0, "{err}");
    assert_eq!(total(&p), 3, "not recorded after the restore: {err}");

    // Interrupted during that wait: 128+N, the run not recorded.
    let holder = Holder::new(&restore_lock(&p));
    let mut qw = Running::start(p.qw(&["exec", "--", "true"]));
    qw.expect_line("waiting for a state restore");
    unsafe_kill(qw.pid(), 15);
    let (rc, err) = qw.finish();
    assert_eq!(rc, 143, "{err}");
    assert!(err.contains("was not recorded"), "{err}");
    assert_eq!(total(&p), 3);
    holder.release();
}

// ---------------------------------------------------------------------------------------
// 2. A workflow interrupted while waiting for the restore lock exits 128+N.

#[test]
fn edges_workflow_interrupted_waiting_for_a_restore_exits_128_plus_n() {
    // A run whose task failed, for `workflow-continue` to resume.
    let p = spec_project("demo", Some("- [ ] 1. One\n  - _Verify: `false`_\n"));
    assert_eq!(code(&offline_run(&p, "demo")), 1);
    let holder = Holder::new(&restore_lock(&p));
    let auto = [
        "workflow-auto",
        "demo",
        "d",
        "--agent",
        "offline",
        "--isolate",
        "none",
    ];
    for (args, sig) in [
        (&auto[..], 2),
        (&auto[..], 15),
        (&["workflow-continue", "demo"][..], 2),
        (&["workflow-continue", "demo"][..], 15),
    ] {
        let mut qw = Running::start(p.qw(args));
        qw.expect_line("waiting for a state restore");
        unsafe_kill(qw.pid(), sig);
        let (rc, err) = qw.finish();
        assert_eq!(rc, 128 + sig, "{args:?} signal {sig}: {err}");
        assert!(err.contains("interrupted by signal"), "{err}");
        assert!(
            !read(&p.claude().join("specs/demo/tasks.md")).contains("[x]"),
            "{args:?}: a task ran"
        );
    }
    holder.release();
}

// ---------------------------------------------------------------------------------------
// 3. A hard reset leaves no merge-pending record of the spec for a later run to take.

#[test]
fn edges_hard_reset_drops_the_specs_merge_pending_records() {
    use crate::worktree::Repo;
    let r = Repo::new("# Tasks\n\n- [ ] 1. One\n");
    r.action("1", "echo one > f1.txt\n");
    let out = r.auto(&[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let common = r.root().join(".git");
    // An old task 1's saved work whose merge was pending, its branch checked out in a
    // worktree of the user's (so the hard reset leaves the branch as it is); and a record
    // of another spec, which the reset of `demo` must keep.
    let hold = r.aux.path().join("hold");
    r.git(&["branch", "qw/demo/1", "main"]);
    r.git(&[
        "worktree",
        "add",
        "-q",
        &hold.display().to_string(),
        "qw/demo/1",
    ]);
    std::fs::write(hold.join("stale.txt"), "old work\n").unwrap();
    r.git_cmd(&hold, &["add", "stale.txt"]);
    r.git_cmd(&hold, &["commit", "-q", "-m", "old task 1"]);
    let tip = r.git(&["rev-parse", "qw/demo/1"]).trim().to_owned();
    let record = |spec: &str| {
        format!("tip {tip}\nbranch qw/{spec}/1\nsubject qw({spec}): merge task 1 One (succeeded)\n")
    };
    std::fs::create_dir_all(common.join("qw-pending/demo")).unwrap();
    std::fs::write(common.join("qw-pending/demo/1"), record("demo")).unwrap();
    std::fs::create_dir_all(common.join("qw-pending/other")).unwrap();
    std::fs::write(common.join("qw-pending/other/1"), record("other")).unwrap();

    let out = r.run(&["workflow-reset", "demo", "--hard", "--yes"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(
        !common.join("qw-pending/demo").exists(),
        "the reset spec's record is left: {}",
        diag(&out)
    );
    assert_eq!(read(&common.join("qw-pending/other/1")), record("other"));

    // The spec's new task 1 — new documents, same id — is not the old task: its old work
    // is never merged as the new task's.
    r.f.p.write(".claude/specs/demo/design.md", "# Design\n");
    r.f.p.write(
        ".claude/specs/demo/tasks.md",
        "# Tasks\n\n- [ ] 1. Another\n",
    );
    let runs = r.runs_of("1");
    let first = r.auto(&[]);
    // The run refuses to take the branch from the user's worktree and says how to free
    // it; done so, the next run must not take the old record for the new task's.
    r.git_cmd(&hold, &["switch", "-q", "--detach"]);
    let out = r.run(&["workflow-continue", "demo"]);
    assert!(
        !r.git_ok(&["cat-file", "-e", "main:stale.txt"]),
        "the old task's work was merged as the new task's: {}\n{}",
        diag(&first),
        diag(&out)
    );
    assert!(
        !diag(&out).contains("does not run again") && r.runs_of("1") > runs,
        "the new task 1's agent did not run: {}\n{}",
        diag(&first),
        diag(&out)
    );
    r.git(&["worktree", "remove", "--force", &hold.display().to_string()]);
}

// ---------------------------------------------------------------------------------------
// 4. `qw: error:` lines quote outside text escaped.

/// Every stderr line is a `qw: error:` or `  hint:` line without a control character.
fn error_lines_are_clean(out: &std::process::Output, what: &str) {
    let err = stderr(out);
    assert!(err.starts_with("qw: error: "), "{what}: {err:?}");
    for line in err.lines() {
        assert!(
            line.starts_with("qw: error: ") || line.starts_with("  hint: "),
            "{what}: a line of its own: {err:?}"
        );
        assert!(
            !line.chars().any(char::is_control),
            "{what}: a raw control character: {err:?}"
        );
    }
    assert!(
        err.contains("\\n") && err.contains("\\u{1b}[2J"),
        "{what}: {err:?}"
    );
}

#[test]
fn edges_error_lines_escape_newlines_and_terminal_sequences() {
    const NASTY: &str = "a\nqw: error: forged\x1b[2J";
    // A project folder that does not exist.
    let base = tempfile::tempdir().unwrap();
    let missing = base.path().join(NASTY);
    let out = bounded({
        let mut c = Command::new(qw_bin());
        c.arg("-C").arg(&missing).arg("status");
        c
    });
    assert_eq!(code(&out), 2, "{}", diag(&out));
    error_lines_are_clean(&out, "missing -C folder");
    // A project whose path has them: the error names a file in it.
    let dir = base.path().join(NASTY);
    std::fs::create_dir_all(dir.join(".claude")).unwrap();
    let out = bounded({
        let mut c = Command::new(qw_bin());
        c.arg("-C")
            .arg(&dir)
            .args(["state-backup", "--restore", "nope"]);
        c
    });
    assert_ne!(code(&out), 0, "{}", diag(&out));
    error_lines_are_clean(&out, "backup folder");
    // A spec name with them (refused by its name check, quoted escaped).
    let p = TestProject::new();
    let out = bounded(p.qw(&["workflow-reset", NASTY]));
    assert_eq!(code(&out), 2, "{}", diag(&out));
    error_lines_are_clean(&out, "spec name");
}

// ---------------------------------------------------------------------------------------
// 5. A NUL in a `_Verify:_` command is refused where it is written.

#[test]
fn edges_a_nul_in_a_verify_command_is_refused_naming_its_line() {
    for (tasks, line) in [
        ("# T\n\n- [ ] 1. One\n  - _Verify: `echo a\0b`_\n", 4),
        ("- [ ] 1. One\n- [ ] 2. Two\n  - *Verify: true\0x*\n", 3),
        (
            "- [ ] 1. One\n  - _Verify: ``sh -c 'echo `x\0`'``_\n- [ ] 2. Two\n",
            2,
        ),
    ] {
        let p = spec_project("demo", Some(tasks));
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
            assert_eq!(code(&out), 2, "{tasks:?} {args:?}: {}", diag(&out));
            let err = stderr(&out);
            assert!(
                err.contains("tasks.md`: ")
                    && err.contains(&format!("line {line}: task `"))
                    && err.contains("NUL byte"),
                "{tasks:?}: {err}"
            );
            assert_eq!(
                err.lines().filter(|l| l.contains("error:")).count(),
                1,
                "{err}"
            );
            assert!(!p.claude().join("specs/demo/report.md").exists());
        }
    }
}

// ---------------------------------------------------------------------------------------
// 7. The way back a stash entry's line gives works for an entry with untracked files.

#[test]
fn edges_a_stash_entry_with_untracked_files_comes_back_as_told() {
    use crate::support::moves::once;
    use crate::worktree::Repo;
    // The agent stashes its work with `-u`: untracked files (one in a new folder), with
    // and without a change to a tracked file; in its worktree `-u` takes qw's spec link
    // along, which the main worktree has as a folder.
    for tracked in [true, false] {
        let r = Repo::new("- [ ] 1. One\n- [ ] 2. Two\n");
        let change = if tracked {
            "echo changed >> shared.txt\n"
        } else {
            ""
        };
        r.action(
            "1",
            &format!(
                "echo 1 > f1.txt\nmkdir -p d && echo n > d/n1.txt\n{change}{}",
                once(&r, "s1", "git stash -q -u\n")
            ),
        );
        r.action("2", "echo 2 > f2.txt\n");
        let out = r.auto(&["--parallel", "2"]);
        assert_eq!(code(&out), 1, "{}", diag(&out));
        let err = r.f.task("1")["error"].as_str().unwrap_or("").to_owned();
        let commit = r.git(&["rev-parse", "stash@{0}"]).trim().to_owned();
        assert!(err.contains(&commit[..12]), "{err}");
        // The way back the line names, run where the user is: the main worktree.
        let at = err
            .find("— `")
            .unwrap_or_else(|| panic!("no command: {err}"))
            + "— `".len();
        let command = &err[at..at + err[at..].find('`').unwrap()];
        let apply = Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(r.root())
            .output()
            .unwrap();
        assert!(
            apply.status.success(),
            "{command}: {}\n{err}",
            String::from_utf8_lossy(&apply.stderr)
        );
        assert_eq!(read(&r.root().join("f1.txt")), "1\n", "{command}");
        assert_eq!(read(&r.root().join("d/n1.txt")), "n\n", "{command}");
        assert_eq!(
            read(&r.root().join("shared.txt")).ends_with("changed\n"),
            tracked,
            "{command}"
        );
        assert!(
            !std::fs::symlink_metadata(r.root().join(".claude/specs/demo"))
                .unwrap()
                .is_symlink(),
            "the spec folder was replaced by the link"
        );
        assert_eq!(
            r.git(&["stash", "list"]).lines().count(),
            1,
            "the entry stays"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 7. A kept task branch whose changes the target holds by a squash merge or a
//    cherry-pick is not to be merged again.

#[test]
fn edges_prune_does_not_advise_merging_a_branch_the_target_holds_by_squash() {
    use crate::worktree::Repo;
    for (how, by) in [
        ("squash", &["worktrees", "--prune"][..]),
        ("cherry-pick", &["worktrees", "--prune"][..]),
        ("squash", &["workflow-reset", "demo"][..]),
    ] {
        let r = Repo::new("- [ ] 1. One\n  - _Verify: `false`_\n");
        r.action("1", "echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm one\n");
        let out = r.auto(&[]);
        assert_eq!(code(&out), 1, "{}", diag(&out));
        assert!(
            r.branches().contains(&"qw/demo/1".to_owned()),
            "{:?}",
            r.branches()
        );
        let out = r.run(&["worktrees", "--prune"]);
        assert_eq!(code(&out), 0, "{}", diag(&out));
        assert!(
            stderr(&out).contains("merge it (`git merge qw/demo/1`)"),
            "before the squash: {}",
            diag(&out)
        );
        match how {
            "squash" => {
                r.git(&["merge", "-q", "--squash", "qw/demo/1"]);
                r.git(&["commit", "-q", "-m", "task 1, squashed"]);
            }
            _ => {
                // `main` moved on first, so the pick is a commit of its own.
                r.f.p.write("mine.txt", "the user's\n");
                r.git(&["add", "mine.txt"]);
                r.git(&["commit", "-q", "-m", "mine"]);
                r.git(&["cherry-pick", "qw/demo/1"]);
            }
        }
        let out = r.run(by);
        assert_eq!(code(&out), 0, "{how} {by:?}: {}", diag(&out));
        let err = stderr(&out);
        assert!(
            err.contains("kept branch `qw/demo/1`")
                && err.contains("already holds all their changes"),
            "{how} {by:?}: {}",
            diag(&out)
        );
        assert!(
            !err.contains("git merge"),
            "{how} {by:?}: tells to merge: {err}"
        );
        assert!(
            r.branches().contains(&"qw/demo/1".to_owned()),
            "the branch stays"
        );
    }
}
