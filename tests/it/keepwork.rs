//! An agent that throws its work away is never reported completed (issue 14 item 4's
//! class; rev11a F1, L3; rev11b F3, F6).
//!
//! With task worktrees: commits the agent made and then dropped from its result (a
//! `reset --hard`, a rebase leaving them out) fail the task `workspace_error` naming the
//! `qw/<spec>/<id>@<sha>` branch they are kept on; a plain `commit --amend` keeps nothing
//! and warns of nothing. In the shared tree (`--parallel 1`, `--isolate none`): an agent
//! that switches the user's branch, detaches HEAD or resets the branch under completed
//! work fails its task naming the branch and the commit to recover, and no task starts
//! after it; an agent that commits forward (or amends its own commit) is fine.

use crate::support::moves::{has, sha, tasks, work};
use crate::support::*;
use crate::worktree::Repo;

/// The commit then a move that drops it from the task's result.
fn dropped_in_worktree(name: &str, mv: &str) {
    let r = Repo::new(&tasks(2));
    r.action("1", &format!("{}{mv}\n", work("1")));
    r.action("2", &work("2"));
    let out = r.auto(&[
        "--parallel",
        "2",
        "--isolate",
        "worktree",
        "--attempts",
        "2",
    ]);
    assert_eq!(code(&out), 1, "{name}: {}", diag(&out));
    let t = r.f.task("1");
    assert_eq!(t["status"], "failed", "{name}: {t}");
    assert_eq!(t["outcome"], "workspace_error", "{name}: {t}");
    let err = t["error"].as_str().unwrap();
    let kept: String = err
        .split('`')
        .find(|s| s.starts_with("qw/demo/1@"))
        .unwrap_or_else(|| panic!("{name}: no kept branch named: {err}"))
        .to_owned();
    assert!(err.contains(&format!("git merge {kept}")), "{name}: {err}");
    assert!(has(&r, &kept, "f1.txt"), "{name}: the work is on {kept}");
    assert!(!has(&r, "main", "f1.txt"), "{name}: nothing merged");
    assert_eq!(r.runs_of("1"), 1, "{name}: not retried blindly");
    // The other task is unaffected.
    assert_eq!(r.f.task("2")["status"], "completed", "{name}");
    assert!(has(&r, "main", "f2.txt"), "{name}");
    r.assert_no_process();
}

#[test]
fn an_agent_that_resets_away_its_commit_fails_naming_the_kept_branch() {
    dropped_in_worktree("reset", "git reset -q --hard HEAD~1");
    dropped_in_worktree(
        "reset two",
        "echo x > extra1.txt\ngit add extra1.txt\ngit commit -qm extra\ngit reset -q --hard HEAD~2",
    );
}

#[test]
fn an_agent_whose_rebase_drops_its_commit_fails_naming_the_kept_branch() {
    dropped_in_worktree(
        "rebase",
        "git commit -q --allow-empty -m e1\ngit rebase -q --onto HEAD~2 HEAD~1",
    );
}

#[test]
fn a_plain_amend_keeps_no_at_branch_and_warns_of_nothing() {
    let r = Repo::new(&tasks(2));
    for i in ["1", "2"] {
        // `git add -A` as agents do (it takes qw's spec link in too).
        r.action(
            i,
            &format!(
                "echo {i} > f{i}.txt\ngit add -A\ngit commit -qm f{i}\necho more >> f{i}.txt\ngit commit -qa --amend -m amended\n"
            ),
        );
    }
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains("outside its result"), "{text}");
    assert!(
        !r.branches().iter().any(|b| b.contains('@')),
        "{:?}",
        r.branches()
    );
    for i in ["1", "2"] {
        assert_eq!(r.f.task(i)["status"], "completed");
        assert_eq!(
            r.git(&["show", &format!("main:f{i}.txt")]),
            format!("{i}\nmore\n")
        );
    }
}

/// The user's checkout: on `main`?
fn on_branch(r: &Repo) -> String {
    r.git(&["symbolic-ref", "-q", "--short", "HEAD"])
        .trim()
        .to_owned()
}

/// Shared tree: task 3's agent commits, then resets `main` two commits back (erasing
/// tasks 1's and 2's commits from it).
#[test]
fn shared_tree_an_agent_resetting_the_users_branch_fails_and_keeps_the_tip() {
    for args in [
        &["--parallel", "1", "--attempts", "2"][..],
        &["--isolate", "none", "--parallel", "1", "--attempts", "2"][..],
    ] {
        let r = Repo::new(&tasks(3));
        r.action("1", &work("1"));
        r.action("2", &work("2"));
        r.action("3", &format!("{}git reset -q --hard HEAD~2\n", work("3")));
        let out = r.auto(args);
        assert_eq!(code(&out), 1, "{args:?}: {}", diag(&out));
        let t = r.f.task("3");
        assert_eq!(t["outcome"], "workspace_error", "{args:?}: {t}");
        let err = t["error"].as_str().unwrap();
        assert!(err.contains("`main`"), "{args:?}: {err}");
        assert!(err.contains("qw-kept/demo/3"), "{args:?}: {err}");
        assert!(err.contains("git merge qw-kept/demo/3"), "{args:?}: {err}");
        // Tasks 1's and 2's work is kept there.
        assert!(has(&r, "qw-kept/demo/3", "f1.txt"), "{args:?}");
        assert!(has(&r, "qw-kept/demo/3", "f2.txt"), "{args:?}");
        assert_eq!(r.runs_of("3"), 1, "{args:?}: not retried");
        r.assert_no_process();
    }
}

/// Shared tree: the agent leaves the user on another branch, or on a detached HEAD.
fn shared_switched(name: &str, mv: &str, says: &str) {
    let r = Repo::new(&tasks(3));
    r.action(
        "1",
        &format!(
            "{}{mv}\necho x > x1.txt\ngit add x1.txt\ngit commit -qm x\n",
            work("1")
        ),
    );
    r.action("2", &work("2"));
    r.action("3", &work("3"));
    let out = r.auto(&["--isolate", "none", "--parallel", "1", "--attempts", "2"]);
    assert_eq!(code(&out), 1, "{name}: {}", diag(&out));
    assert_eq!(r.runs_of("1"), 1, "{name}: not retried");
    let t = r.f.task("1");
    assert_eq!(t["outcome"], "workspace_error", "{name}: {t}");
    let err = t["error"].as_str().unwrap();
    assert!(
        err.contains(says) && err.contains("`main`"),
        "{name}: {err}"
    );
    assert!(err.contains("git switch main"), "{name}: {err}");
    // No task starts on the moved tree.
    assert_eq!(r.runs_of("2"), 0, "{name}");
    assert_eq!(r.runs_of("3"), 0, "{name}");
    assert_ne!(r.f.task("2")["status"], "completed", "{name}");
    r.assert_no_process();
}

#[test]
fn shared_tree_an_agent_switching_the_users_branch_fails_and_stops_the_run() {
    shared_switched("switch -c", "git switch -q -c feature/x", "`feature/x`");
    shared_switched("detach", "git checkout -q --detach", "detached HEAD");
}

/// Committing forward, or amending its own commit, in the shared tree is fine.
#[test]
fn shared_tree_an_agent_committing_forward_or_amending_completes() {
    let r = Repo::new(&tasks(3));
    r.action("1", &work("1"));
    r.action(
        "2",
        &format!(
            "{}echo more >> f2.txt\ngit commit -qa --amend -m amended\n",
            work("2")
        ),
    );
    r.action("3", &work("3"));
    let before = sha(&r, "main");
    let out = r.auto(&["--parallel", "1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    for i in ["1", "2", "3"] {
        assert_eq!(r.f.task(i)["status"], "completed", "{i}");
        assert!(has(&r, "main", &format!("f{i}.txt")), "{i}");
    }
    assert_eq!(on_branch(&r), "main");
    assert!(r.git_ok(&["merge-base", "--is-ancestor", &before, "main"]));
    assert!(!r.git_ok(&["rev-parse", "-q", "--verify", "refs/heads/qw-kept/demo/2"]));
}
