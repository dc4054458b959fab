//! Task branches qw did not leave where they are (rev1 L2, L3): another task's agent
//! making or moving `qw/<spec>/<id>` ahead of that task, or checking it out in a
//! worktree of its own.
//!
//! Each test asserts that the foreign commits are not merged under the task's name,
//! that they are kept on the branch the output names, that qw's own earlier work on the
//! branch is still resumed, and that the printed way on works when run as printed.

use crate::support::moves::{follow, once, printed, sha, tasks, work};
use crate::support::*;
use crate::worktree::Repo;

/// The branch named in `text` that starts with `prefix` (up to the closing backquote).
fn named(text: &str, prefix: &str) -> String {
    let at = text
        .find(&format!("`{prefix}"))
        .unwrap_or_else(|| panic!("no `{prefix}…` in: {text}"));
    let rest = &text[at + 1..];
    rest[..rest.find('`').unwrap()].to_owned()
}

fn on_main(r: &Repo, file: &str) -> bool {
    r.git_ok(&["cat-file", "-e", &format!("main:{file}")])
}

#[test]
fn worktree_foreign_branch_made_ahead_of_its_task_is_kept_apart_not_merged() {
    let r = Repo::new(&tasks(3));
    let side = r.aux.path().join("side-commit");
    // The reproduction: task 1's agent makes task 2's branch on a commit of its own
    // (`git branch`), and task 3's from the main worktree (`update-ref`) on a commit no
    // worktree ever held; then it leaves both for a result of its own.
    r.action(
        "1",
        &format!(
            "echo x > x1.txt\ngit add x1.txt\ngit commit -qm side1\ngit branch qw/demo/2\necho y > y1.txt\ngit add y1.txt\nt=$(git write-tree)\nc=$(git commit-tree $t -p HEAD -m side3)\necho $c > {}\ngit -C \"$MAIN\" update-ref refs/heads/qw/demo/3 $c\ngit reset -q --hard HEAD~1\n{}",
            side.display(),
            work("1")
        ),
    );
    r.action("2", &work("2"));
    r.action("3", &work("3"));
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    for id in ["1", "2", "3"] {
        assert_eq!(r.f.task(id)["status"], "completed", "{}", r.f.task(id));
    }
    r.assert_all_merged(&["f1.txt", "f2.txt", "f3.txt"]);
    // Neither side commit reached main under another task's name.
    assert!(!on_main(&r, "x1.txt"), "{text}");
    assert!(!on_main(&r, "y1.txt"), "{text}");
    assert!(!text.contains("left by an earlier run"), "{text}");
    // Each is kept on the `@` branch the output names, and said to be foreign.
    assert!(text.contains("made by someone other than qw"), "{text}");
    let at2 = named(&text, "qw/demo/2@");
    let at3 = named(&text, "qw/demo/3@");
    assert!(
        r.git_ok(&["cat-file", "-e", &format!("{at2}:x1.txt")]),
        "{at2}"
    );
    assert!(
        r.git_ok(&["cat-file", "-e", &format!("{at3}:y1.txt")]),
        "{at3}"
    );
    let c3 = std::fs::read_to_string(&side).unwrap();
    assert_eq!(sha(&r, &at3), c3.trim());
    // The printed command takes them when the user wants them.
    let merge = printed(&text, &format!("git merge {at2}"));
    follow(&r, &merge);
    assert!(on_main(&r, "x1.txt"));
}

#[test]
fn worktree_earlier_runs_branch_moved_by_another_agent_resumes_from_where_qw_left_it() {
    let r = Repo::new(&tasks(3));
    r.action("1", &work("1"));
    // Task 2 commits its work, then fails once: qw keeps its branch for the next run.
    r.action(
        "2",
        &format!("{}{}", work("2"), once(&r, "fail2", "exit 1")),
    );
    // Task 3's agent moves that branch onto a side commit of its own (`branch -f`,
    // allowed: no worktree holds it any more), then goes on with its own result.
    r.action(
        "3",
        &format!(
            "{}{}",
            once(
                &r,
                "move3",
                "echo x > x3.txt\ngit add x3.txt\ngit commit -qm side3\ngit branch -f qw/demo/2 HEAD\ngit reset -q --hard HEAD~1"
            ),
            work("3")
        ),
    );
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(r.f.task("2")["outcome"], "agent_error", "{}", r.f.task("2"));
    let out = r.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    assert!(text.contains("moved since qw left it"), "{text}");
    assert!(text.contains("back where qw left it"), "{text}");
    r.assert_all_merged(&["f1.txt", "f2.txt", "f3.txt"]);
    assert!(!on_main(&r, "x3.txt"), "{text}");
    let at = named(&text, "qw/demo/2@");
    assert!(
        r.git_ok(&["cat-file", "-e", &format!("{at}:x3.txt")]),
        "{at}"
    );
    // Task 2 resumed its own commit: run once more, not from scratch (its file came
    // from the first run's commit, which the rerun's `git commit` found unchanged).
    assert_eq!(r.runs_of("2"), 2);
}

/// Task 1's agent checks task 2's branch out in a worktree of its own (in qw's folder),
/// commits there, then `script` does more to it; task 2 fails naming the command that
/// frees the branch; run as printed, `workflow-continue` merges every task's work and
/// keeps the agent's commit apart.
fn held_by_an_agents_worktree(script: &str, fix: &str) -> Repo {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        &format!(
            "{}{}",
            work("1"),
            once(
                &r,
                "add1",
                &format!(
                    "w=\"$(dirname \"$PWD\")/agents2\"\ngit worktree add -q -b qw/demo/2 \"$w\"\necho a > \"$w/a2.txt\"\ngit -C \"$w\" add a2.txt\ngit -C \"$w\" commit -qm a2\n{script}"
                )
            )
        ),
    );
    r.action("2", &work("2"));
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let t = r.f.task("2");
    assert_eq!(t["outcome"], "workspace_error", "{t}");
    let err = t["error"].as_str().unwrap().to_owned();
    assert!(err.contains("which qw did not make"), "{err}");
    assert!(!err.contains("not the agent"), "{err}");
    assert!(!err.contains("move it elsewhere"), "{err}");
    follow(&r, &printed(&err, fix));
    let out = r.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    assert!(on_main(&r, "f1.txt") && on_main(&r, "f2.txt"), "{text}");
    assert!(!on_main(&r, "a2.txt"), "{text}");
    let at = named(&text, "qw/demo/2@");
    assert!(
        r.git_ok(&["cat-file", "-e", &format!("{at}:a2.txt")]),
        "{at}"
    );
    r
}

#[test]
fn worktree_task_branch_in_an_agents_worktree_names_the_command_that_frees_it() {
    // Moved out of qw's folder (rev1: the old message's "move it elsewhere" then failed
    // the same way at the new place).
    let r = held_by_an_agents_worktree(
        "git worktree move \"$w\" \"$(dirname \"$PWD\")/../agents2-moved\"",
        "git -C ",
    );
    // That worktree is still there, detached, with its files.
    let moved = r.container().unwrap().join("../agents2-moved");
    assert!(moved.join("a2.txt").is_file());
    let head = r.git_cmd(&moved, &["symbolic-ref", "-q", "HEAD"]);
    assert!(!head.status.success(), "still on a branch");
}

#[test]
fn worktree_task_branch_in_a_deleted_agents_worktree_names_the_prune() {
    held_by_an_agents_worktree("rm -rf \"$w\"", "git worktree prune");
}
