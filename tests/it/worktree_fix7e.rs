//! Review rev6b G14, G5, G7/G15: an agent's edit of a task's `_Verify:_` (its own or
//! a sibling's, through the spec link or the main tree's path) is never the check a later
//! run uses; a squash onto the target that would delete what a sibling merged is refused
//! naming the paths; the user's own commits in the main worktree mid-run are the user's;
//! the user's ignored Claude Code files are in each task worktree.

use crate::support::moves::{cont, once};
use crate::support::*;
use crate::worktree::Repo;

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
    assert_undo_refused_then_merged(&r, &out, &["pkg1/__init__.py", "pkg1/mod.py", "shared.txt"]);
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

#[test]
fn worktree_fix7e_g15_users_commit_then_a_staged_edit_of_the_same_file_is_staged_work_not_a_move() {
    // The user commits notes.txt in the main worktree mid-run and stages a further
    // edit of it: not "moved, not by qw"; the staged-changes line, and following it
    // (unstage) then continuing merges every task on top of the user's commit.
    let r = Repo::new(&crate::support::moves::tasks(3));
    r.f.p.write("notes.txt", "n\n");
    r.git(&["add", "notes.txt"]);
    r.git(&["commit", "-qm", "notes"]);
    r.action(
        "1",
        &format!(
            "echo 1 > f1.txt\n{}",
            once(
                &r,
                "1",
                "cd \"$MAIN\"\necho a >> notes.txt\ngit commit -qam 'my notes'\necho b >> notes.txt\ngit add notes.txt\n"
            )
        ),
    );
    r.action(
        "2",
        &format!("{}echo 2 > f2.txt\n", wait_for_file_in_main_log()),
    );
    r.action("3", "echo 3 > f3.txt\n");
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!all.contains("not by qw"), "{all}");
    assert!(all.contains("has staged changes (notes.txt)"), "{all}");
    assert!(all.contains("a run then needs `--allow-dirty`"), "{all}");
    let unstage = crate::support::moves::printed(&all, "git restore --staged");
    crate::support::moves::follow(&r, &unstage);
    let out = cont(&r, &["--parallel", "2", "--allow-dirty"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(r.git(&["log", "--format=%s", "main"]).contains("my notes"));
    assert_eq!(r.git(&["show", "main:notes.txt"]), "n\na\n");
    assert_eq!(r.read("notes.txt"), "n\na\nb\n", "the user's edit is kept");
    for f in ["f1.txt", "f2.txt", "f3.txt"] {
        assert!(on_main(&r, f), "{f}");
    }
    r.assert_no_process();
}

/// Shell: wait (at most about 90 s) until the main worktree's HEAD log has "my notes".
fn wait_for_file_in_main_log() -> String {
    "n=0; until git -C \"$MAIN\" log -1 --format=%s main | grep -q 'my notes' || [ $n -ge 1800 ]; do sleep 0.05; n=$((n+1)); done\n".to_owned()
}

#[test]
fn worktree_fix7e_g7_nothing_is_merged_after_a_refusal_and_the_end_says_it_no_longer_stands() {
    // Task 1's agent moves `main` onto an unrelated commit (refused), task 2's agent
    // puts it back. The run merges nothing after the refusal (its printed put-back
    // would otherwise be stale), and its end says the refusal no longer stands; the
    // continue merges everything.
    let r = Repo::new(&crate::support::moves::tasks(3));
    let was = r.git(&["rev-parse", "main"]).trim().to_owned();
    let record = r.root().join(".git/qw-refused-moves/demo");
    r.action(
        "1",
        &once(
            &r,
            "1",
            // Only once task 2 runs: a task started after the move is refused at its
            // start (and never puts `main` back), however late a loaded machine starts it.
            "n=0; until [ -e \"$ACTIONS/../started2\" ] || [ $n -ge 1800 ]; do sleep 0.05; n=$((n+1)); done\necho 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1\ngit update-ref refs/heads/main HEAD\ntouch \"$ACTIONS/../moved\"\n",
        ),
    );
    r.action(
        "2",
        &once(
            &r,
            "2",
            &format!(
                "touch \"$ACTIONS/../started2\"\nn=0; until [ -e {rec} ] || [ $n -ge 1800 ]; do sleep 0.05; n=$((n+1)); done\ngit update-ref refs/heads/main {was}\necho 2 > f2.txt\n",
                rec = record.display()
            ),
        ),
    );
    r.action("3", "echo 3 > f3.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(code(&out), 1, "{all}");
    assert!(all.contains("not by qw"), "{all}");
    assert!(all.contains("no longer stands"), "{all}");
    assert!(
        !on_main(&r, "f2.txt") && !on_main(&r, "f3.txt"),
        "merged after a refusal: {all}"
    );
    let out = cont(&r, &["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt", "f3.txt"]);
}
