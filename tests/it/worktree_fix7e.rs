//! Review rev6b G14, G5, G7/G15, G19: an agent's edit of a task's `_Verify:_` (its own or
//! a sibling's, through the spec link or the main tree's path) is never the check a later
//! run uses; a squash onto the target that would delete what a sibling merged is refused
//! naming the paths; the user's own commits in the main worktree mid-run are the user's;
//! the user's ignored Claude Code files are in each task worktree.

use crate::support::moves::once;
use crate::support::*;
use crate::worktree::Repo;

/// `qw workflow-continue demo` with the test agent, one attempt.
fn cont(r: &Repo, extra: &[&str]) -> std::process::Output {
    let cmd = r.agent_cmd();
    let mut args = vec![
        "workflow-continue",
        "demo",
        "--retry-delay",
        "0.1",
        "--task-timeout",
        "60",
        "--attempts",
        "1",
        "--agent-cmd",
        cmd.as_str(),
    ];
    args.extend_from_slice(extra);
    r.run(&args)
}

fn on_main(r: &Repo, file: &str) -> bool {
    r.git_ok(&["cat-file", "-e", &format!("main:{file}")])
}

/// Two tasks, each with a check: task 1 needs `ok1.txt`, task 2 `f2.txt`.
const CHECKED: &str = "- [ ] 1. Task 1\n  - _Verify: `test -f ok1.txt`_\n- [ ] 2. Task 2\n  - _Verify: `test -f f2.txt`_\n";

/// The run after an agent changed a check: refused (exit 2) naming the task, the check
/// the user wrote and the agent's; nothing merged; deleting nothing, putting the check
/// back lets the next run check the work with the user's check.
fn assert_refused_then_checked_as_written(r: &Repo, task: &str, was: &str, now: &str) {
    let out = cont(r, &["--parallel", "2"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("task {task}'s _Verify:_ `{was}` → `{now}`")),
        "{err}"
    );
    assert!(err.contains(".demo.checks.json"), "{err}");
    assert!(!on_main(r, "half1.txt"), "unchecked work merged");
    // Refused again while the change stays.
    assert_eq!(code(&cont(r, &["--parallel", "2"])), 2);
    // Put back: the work is checked with the user's check again (and still fails).
    let text = r.read(".claude/specs/demo/tasks.md").replace(now, was);
    std::fs::write(r.root().join(".claude/specs/demo/tasks.md"), text).unwrap();
    let out = cont(r, &["--parallel", "2"]);
    assert!(
        stdout(&out).contains(&format!("verify `{was}` failed"))
            || stderr(&out).contains(&format!("verify `{was}` failed")),
        "{}",
        diag(&out)
    );
    assert!(!on_main(r, "half1.txt"), "unchecked work merged");
    r.assert_no_process();
}

#[test]
fn worktree_fix7e_g14_own_check_weakened_through_the_spec_link_is_refused_next_run() {
    let r = Repo::new(CHECKED);
    r.action(
        "1",
        &once(
            &r,
            "1",
            "echo half > half1.txt\nsed -i 's/test -f ok1.txt/true/' .claude/specs/demo/tasks.md\n",
        ),
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("verify `test -f ok1.txt` failed"), "{all}");
    assert!(
        all.contains("task 1's _Verify:_ `test -f ok1.txt` → `true`"),
        "the run says the check changed: {all}"
    );
    assert_refused_then_checked_as_written(&r, "1", "test -f ok1.txt", "true");
}

#[test]
fn worktree_fix7e_g14_sibling_check_weakened_through_the_main_path_is_not_used() {
    // Task 1's agent weakens task 2's check by the main tree's absolute path, before
    // task 2 runs (task 2 depends on it): this run checks task 2 with the user's check,
    // and the next run is refused.
    let md = "- [ ] 1. Task 1\n  - _Verify: `test -f f1.txt`_\n- [ ] 2. Task 2\n  - _Depends: 1_\n  - _Verify: `test -f ok2.txt`_\n";
    let r = Repo::new(md);
    r.action(
        "1",
        "echo 1 > f1.txt\nsed -i 's/test -f ok2.txt/true/' \"$MAIN/.claude/specs/demo/tasks.md\"\n",
    );
    r.action("2", "echo half > half1.txt\n");
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("verify `test -f ok2.txt` failed"), "{all}");
    assert!(on_main(&r, "f1.txt"));
    assert_refused_then_checked_as_written(&r, "2", "test -f ok2.txt", "true");
}

#[test]
fn worktree_fix7e_g14_check_removed_in_the_shared_tree_and_the_users_own_change() {
    // --isolate none: the agent deletes its own check line; the next run is refused;
    // the user takes the change by deleting the record (it was theirs).
    let r = Repo::new(CHECKED);
    r.action(
        "1",
        "echo half > half1.txt\nsed -i '/test -f ok1.txt/d' .claude/specs/demo/tasks.md\n",
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--isolate", "none"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let out = cont(&r, &["--isolate", "none"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert!(
        stderr(&out).contains("task 1's _Verify:_ `test -f ok1.txt` → (no check)"),
        "{}",
        diag(&out)
    );
    std::fs::remove_file(r.root().join(".claude/runs/.demo.checks.json")).unwrap();
    let out = cont(&r, &["--isolate", "none"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_no_process();
}
