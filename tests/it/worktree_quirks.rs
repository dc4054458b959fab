//! Repositories that look odd to git's plumbing (rev1 L7, L8): an agent's `git replace`
//! of the target's tip, and a repository whose path holds a newline.
//!
//! Each test asserts that every task's work reaches the target, that what the agent left
//! is named with the command that removes it, and that nothing is half done.

use crate::support::moves::{follow, once, printed, tasks, work};
use crate::support::*;
use crate::worktree::{HARNESS_TIMEOUT, Repo, bounded};

/// Task 2's agent runs `replace` (a shell snippet making a replace ref of `main`'s
/// tip): every task is merged all the same, the ref is named with `git replace -d`,
/// which removes it when run as printed.
fn replaced_by_an_agent(replace: &str) {
    let r = Repo::new(&tasks(3));
    r.action("1", &work("1"));
    r.action(
        "2",
        &format!("{}{}", once(&r, "replace", replace), work("2")),
    );
    r.action("3", &work("3"));
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    for id in ["1", "2", "3"] {
        assert_eq!(r.f.task(id)["status"], "completed", "{}", r.f.task(id));
    }
    assert!(text.contains("a `git replace` ref appeared"), "{text}");
    assert_eq!(r.git(&["for-each-ref", "refs/replace/"]).lines().count(), 1);
    follow(&r, &printed(&text, "git replace -d "));
    assert_eq!(r.git(&["for-each-ref", "refs/replace/"]), "");
    r.assert_all_merged(&["f1.txt", "f2.txt", "f3.txt"]);
    // The history is the one qw made: task 1's merge is in it.
    let log = r.git(&["log", "--format=%s", "main"]);
    assert!(log.contains("qw(demo): merge task 1"), "{log}");
}

#[test]
fn worktree_agents_replace_of_the_targets_tip_merges_every_task() {
    // The reproduction: the tip shown as an empty root commit.
    replaced_by_an_agent(
        "o=$(git commit-tree $(git mktree </dev/null) -m orphan)\ngit replace \"$(git rev-parse main)\" \"$o\"",
    );
}

#[test]
fn worktree_agents_graft_of_the_targets_tip_merges_every_task() {
    // The tip shown with no parent: the history looks cut.
    replaced_by_an_agent("git replace --graft \"$(git rev-parse main)\"");
}

#[test]
fn worktree_repository_path_with_a_newline_runs_its_tasks() {
    let r = Repo::new(&tasks(2));
    r.action("1", &work("1"));
    r.action("2", &work("2"));
    // The same project, cloned where its path holds a newline.
    let dir = r.aux.path().join("new\nline");
    let clone = r.git_cmd(
        r.aux.path(),
        &[
            "clone",
            "-q",
            &r.root().display().to_string(),
            &dir.display().to_string(),
        ],
    );
    assert!(clone.status.success(), "{}", diag(&clone));
    let agent = r.agent_cmd();
    let mut cmd = std::process::Command::new(qw_bin());
    cmd.arg("-C").arg(&dir).args([
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
        "2",
        "--isolate",
        "worktree",
        "--agent-cmd",
        &agent,
    ]);
    for (k, v) in &r.f.env {
        cmd.env(k, v);
    }
    cmd.env("MAIN", &dir)
        .env("QW_RUNTIME_DIR", dir.join(".qw-runtime"))
        .env_remove("QW_RUN_ID");
    let out = bounded(cmd, HARNESS_TIMEOUT);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    for f in ["f1.txt", "f2.txt"] {
        let o = r.git_cmd(&dir, &["cat-file", "-e", &format!("main:{f}")]);
        assert!(o.status.success(), "{f} not on main: {}", diag(&out));
    }
    let status = r.git_cmd(&dir, &["status", "--porcelain"]);
    assert!(
        stdout(&status)
            .lines()
            .all(|l| l[3..].starts_with(".claude/")),
        "{}",
        stdout(&status)
    );
    r.assert_no_process();
}
