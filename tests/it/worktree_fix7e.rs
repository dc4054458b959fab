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

/// Shell: wait (at most about 90 s) until `main` holds `file` (another task merged).
fn wait_for_on_main(file: &str) -> String {
    format!(
        "n=0; until git -C \"$MAIN\" cat-file -e main:{file} 2>/dev/null || [ $n -ge 1800 ]; do sleep 0.05; n=$((n+1)); done\n"
    )
}

/// G5's end: task 2 refused naming what it would undo, nothing of task 1's gone from
/// `main`; the continue merges task 2 with task 1's work kept.
fn assert_undo_refused_then_merged(r: &Repo, out: &std::process::Output, paths: &[&str]) {
    let all = format!("{}{}", stdout(out), stderr(out));
    assert_eq!(code(out), 1, "{}", diag(out));
    assert!(
        all.contains("task 2's result would undo what `main` gained while it ran"),
        "{all}"
    );
    for p in paths {
        assert!(all.contains(&format!("`{p}`")), "{p} not named: {all}");
    }
    assert!(all.contains("qw(demo): merge task 1"), "{all}");
    let task1 = r.read("f1.txt");
    let out = cont(r, &["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(r.read("f1.txt"), task1);
    r.assert_all_merged(&["f1.txt", "pkg1/__init__.py", "pkg1/mod.py", "f2.txt"]);
    assert_eq!(
        r.git(&["show", "main:shared.txt"]).trim(),
        "one",
        "task 1's change of shared.txt kept"
    );
}

fn g5_repo(squash: &str) -> Repo {
    let r = Repo::new(&crate::support::moves::tasks(2));
    r.action(
        "1",
        "mkdir pkg1\n: > pkg1/__init__.py\necho x=1 > pkg1/mod.py\necho 1 > f1.txt\necho one > shared.txt\ngit add -A\ngit commit -qm pkg1\n",
    );
    r.action(
        "2",
        &once(
            &r,
            "2",
            &format!(
                ": > i2.py\necho 2 > f2.txt\ngit add -A\ngit commit -qm f2\n{}{squash}",
                wait_for_on_main("f1.txt")
            ),
        ),
    );
    r
}

#[test]
fn worktree_fix7e_g5_soft_reset_squash_onto_main_after_a_sibling_merged_is_refused() {
    let r = g5_repo("git reset -q --soft main\ngit commit -qm 'squash onto main'\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_undo_refused_then_merged(
        &r,
        &out,
        &["pkg1/__init__.py", "pkg1/mod.py", "shared.txt"],
    );
}

#[test]
fn worktree_fix7e_g5_mixed_reset_squash_is_refused_the_same_way() {
    let r = g5_repo("git reset -q main\ngit add -A\ngit commit -qm 'squash onto main'\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_undo_refused_then_merged(&r, &out, &["pkg1/mod.py", "shared.txt"]);
}

#[test]
fn worktree_fix7e_g5_merge_of_main_then_a_revert_of_the_siblings_files_is_refused() {
    // Not a squash: the agent merges `main`, then takes back task 1's change of
    // shared.txt and deletes its pkg1/ (its history holds task 1's merge).
    let r = g5_repo(
        "git merge -q --no-edit main\ngit checkout HEAD~1 -- shared.txt\ngit rm -rq pkg1\ngit commit -qm 'undo'\n",
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_undo_refused_then_merged(&r, &out, &["pkg1/mod.py", "shared.txt"]);
}
