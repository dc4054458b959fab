//! Who is blamed when one of qw's own git steps fails (rev1 L6): Ctrl-C during qw's
//! save, merge or worktree creation (the signal reaches qw's git child too), an agent's
//! `git config core.bare true`, a stale `.lock` file an agent's killed git left.
//!
//! Each test asserts the task's record (interrupted, or failed naming the setting or
//! file — never "qw's git step failed, not the agent"), that the printed fix works when
//! run as printed, and that `qw workflow-continue` then merges every task.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use crate::support::moves::{follow_in_sh, once, printed, tasks, work};
use crate::support::*;
use crate::worktree::{HARNESS_TIMEOUT, Repo, bounded};

/// The git the tests run (the first `git` on the test's PATH).
fn real_git() -> PathBuf {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| PathBuf::from(d).join("git"))
        .find(|p| p.is_file())
        .expect("git on PATH")
}

/// A `git` in the project's `bin/` (first on qw's PATH) that, the first time its
/// arguments match the shell pattern `pattern`, sends SIGINT to qw's process group —
/// itself included, as a terminal's Ctrl-C does — instead of running git. Committed,
/// so the main worktree stays clean.
fn interrupt_git_at(r: &Repo, pattern: &str) {
    let flag = r.aux.path().join("interrupted");
    let script = format!(
        "#!/bin/sh\ncase \"$*\" in\n  {pattern})\n    if [ ! -e {flag} ]; then\n      : > {flag}\n      pg=$(cut -d' ' -f5 /proc/$PPID/stat)\n      [ \"$pg\" = \"$PPID\" ] && kill -INT \"-$pg\"\n      exit 130\n    fi ;;\nesac\nexec {git} \"$@\"\n",
        flag = flag.display(),
        git = real_git().display()
    );
    r.f.p.script("bin/git", &script);
    r.git(&["add", "bin/git"]);
    r.git(&["commit", "-qm", "git that stands for a Ctrl-C"]);
}

/// `workflow-auto` with one task at a time, in a process group of its own (what a
/// shell gives a foreground job), bounded by the harness timeout.
fn auto_in_own_group(r: &Repo) -> std::process::Output {
    let agent = r.agent_cmd();
    let mut cmd = r.f.cmd(&[
        "workflow-auto",
        "demo",
        "A demo feature",
        "--retry-delay",
        "0.1",
        "--task-timeout",
        "60",
        "--attempts",
        "1",
        "--parallel",
        "1",
        "--isolate",
        "worktree",
        "--agent-cmd",
        &agent,
    ]);
    cmd.process_group(0);
    bounded(cmd, HARNESS_TIMEOUT)
}

/// Ctrl-C while qw's git step `pattern` runs for task `id`: the task is not failed, its
/// work is kept, and `workflow-continue` merges everything.
fn interrupted_at(pattern: &str, id: &str) {
    let r = Repo::new(&tasks(2));
    r.action("1", "echo 1 > f1.txt\n");
    r.action("2", &work("2"));
    interrupt_git_at(&r, pattern);
    let out = auto_in_own_group(&r);
    assert_ne!(code(&out), 0, "{}", diag(&out));
    assert!(r.aux.path().join("interrupted").exists(), "{}", diag(&out));
    let t = r.f.task(id);
    assert_ne!(t["outcome"], "workspace_error", "{t}");
    assert_ne!(t["status"], "failed", "{t}");
    let text = format!("{t}{}", diag(&out));
    assert!(!text.contains("not the agent"), "{text}");
    assert!(text.contains("SIGINT"), "{text}");
    let out = r.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
}

#[test]
fn worktree_ctrl_c_during_qws_merge_is_an_interruption() {
    interrupted_at("*\"merge --no-ff\"*\"merge task 1 \"*", "1");
}

#[test]
fn worktree_ctrl_c_during_qws_save_is_an_interruption() {
    interrupted_at("*\"update-ref -m qw: the task's result\"*", "1");
}

#[test]
fn worktree_ctrl_c_while_qw_makes_a_worktree_is_an_interruption() {
    interrupted_at("*\"worktree add\"*demo-2*", "2");
}

#[test]
fn worktree_agents_core_bare_is_named_with_its_fix() {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        &format!(
            "echo 1 > f1.txt\n{}",
            once(&r, "bare", "git config core.bare true")
        ),
    );
    r.action("2", &work("2"));
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let t = r.f.task("1");
    let err = t["error"].as_str().unwrap_or_default().to_owned();
    // Since rev6b G11 the shared config an agent changed is put back as soon as qw
    // sees it (before its next git step), and the task's line names the key.
    assert!(err.contains("`core.bare`"), "{t}");
    assert!(!err.contains("not the agent"), "{t}");
    assert_eq!(
        r.git(&["config", "--type=bool", "core.bare"]).trim(),
        "false"
    );
    let out = r.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
}

#[test]
fn worktree_stale_ref_lock_left_by_an_agent_is_named_with_its_fix() {
    let r = Repo::new(&tasks(2));
    // The worktree's own HEAD.lock: stale once its agent is gone, so qw clears it.
    r.action(
        "1",
        "echo 1 > f1.txt\ntouch \"$(git rev-parse --git-dir)/HEAD.lock\"\n",
    );
    // The target's ref lock: git will not merge into `main` while it is there.
    r.action(
        "2",
        &format!(
            "echo 2 > f2.txt\n{}",
            once(
                &r,
                "lock",
                "touch \"$(git rev-parse --git-common-dir)/refs/heads/main.lock\""
            )
        ),
    );
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(r.f.task("1")["status"], "completed", "{}", r.f.task("1"));
    let t = r.f.task("2");
    let err = t["error"].as_str().unwrap_or_default().to_owned();
    assert!(err.contains("refs/heads/main.lock"), "{t}");
    assert!(!err.contains("not the agent"), "{t}");
    let fix = printed(&err, "rm -- ");
    follow_in_sh(&r, &fix);
    let out = r.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
}
