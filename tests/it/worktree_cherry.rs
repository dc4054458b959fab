//! A task's result holding copies of another task's unmerged commits (rev6b G9): task 2
//! commits and fails (its branch kept, unmerged); task 1's agent copies task 2's
//! commit(s) — cherry-pick, `cherry-pick -x`, `rebase --onto`, `format-patch | am`,
//! `cherry-pick -n` then its own commit, `merge --squash` — and passes. The copy has a
//! new id, so the ancestry check does not see it; task 1 must still be refused, naming
//! task 2's branch, and `main` must not get task 2's work.
//!
//! Also what is not a copy: an unrelated change, a pick of a sibling's commit that
//! merged first, a sibling copying task 1's own commit. And a copy of a sibling still
//! running: refused until the sibling merged, then merged by `workflow-continue`.
//! Tasks wait for each other with flag files, not time.

use crate::support::moves::{follow_in_sh, gate, has, once, open_gate, printed, tasks, work};
use crate::support::*;
use crate::worktree::Repo;

fn evidence(r: &Repo, id: &str) -> String {
    r.f.task(id)["evidence"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Task 2 commits bad2.txt (and bad2b.txt with `two`, as a second commit), then fails
/// once task 1 is done; task 1 commits f1.txt, then copies task 2's work with `copy`.
fn copied_in(copy: &str, two: bool) -> Repo {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        &format!(
            "{}echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1\n{copy}\n{}",
            gate(&r, "2-committed"),
            open_gate(&r, "1-done")
        ),
    );
    let second = if two {
        "echo bad > bad2b.txt\ngit add bad2b.txt\ngit commit -qm bad2b\n"
    } else {
        ""
    };
    r.action(
        "2",
        &format!(
            "echo bad > bad2.txt\ngit add bad2.txt\ngit commit -qm bad2\n{second}{}{}exit 1\n",
            open_gate(&r, "2-committed"),
            gate(&r, "1-done")
        ),
    );
    r
}

/// Task 1 is refused `workspace_error` naming task 2's branch; nothing of either task is
/// on `main`; each branch holds its own work; the printed remake keeps only f1.txt.
fn assert_copy_refused(r: &Repo) -> String {
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(
        r.f.task("1")["outcome"],
        "workspace_error",
        "{}",
        diag(&out)
    );
    assert_eq!(r.f.task("2")["outcome"], "agent_error");
    let ev = evidence(r, "1");
    assert!(
        ev.contains("copies commits of another task that qw has not merged")
            && ev.contains("of task 2 (task branch `qw/demo/2`)"),
        "{ev}"
    );
    for f in ["bad2.txt", "bad2b.txt"] {
        assert!(
            !has(r, "main", f),
            "task 2's failed work ({f}) reached main"
        );
    }
    assert!(!has(r, "main", "f1.txt"));
    assert!(has(r, "qw/demo/1", "f1.txt"));
    assert!(has(r, "qw/demo/2", "bad2.txt"), "{:?}", r.branches());
    // The printed command keeps only task 1's own commit, not its copy.
    let cmd = printed(&ev, "git worktree add");
    follow_in_sh(r, &cmd);
    assert_eq!(r.git(&["symbolic-ref", "--short", "HEAD"]).trim(), "main");
    assert!(has(r, "qw/demo/1", "f1.txt"));
    assert!(!has(r, "qw/demo/1", "bad2.txt"), "{cmd}");
    r.assert_no_process();
    ev
}

#[test]
fn worktree_cherry_pick_of_a_failed_siblings_commit_is_refused() {
    // The reproduction.
    let r = copied_in("git cherry-pick qw/demo/2", false);
    let ev = assert_copy_refused(&r);
    assert!(ev.contains("is a copy of"), "{ev}");
    assert!(
        ev.contains("git branch -D") || ev.contains("once `qw/demo/2`"),
        "{ev}"
    );
}

#[test]
fn worktree_cherry_pick_x_of_a_siblings_commit_is_refused() {
    assert_copy_refused(&copied_in("git cherry-pick -x qw/demo/2", false));
}

#[test]
fn worktree_cherry_rebase_onto_of_a_siblings_commits_is_refused() {
    // Task 2's two commits replayed onto task 1's branch.
    assert_copy_refused(&copied_in(
        "tip=$(git rev-parse HEAD)\ngit -c advice.detachedHead=false checkout -q --detach qw/demo/2\ngit rebase -q --onto \"$tip\" main\ngit checkout -q -B qw/demo/1",
        true,
    ));
}

#[test]
fn worktree_cherry_format_patch_and_am_of_a_siblings_commit_is_refused() {
    assert_copy_refused(&copied_in(
        "git format-patch -1 --stdout qw/demo/2 | git am -q",
        false,
    ));
}

#[test]
fn worktree_cherry_pick_no_commit_then_own_commit_is_refused() {
    // A new commit of task 1's (new author date), the same change.
    assert_copy_refused(&copied_in(
        "sleep 1.1\ngit cherry-pick -n qw/demo/2\ngit commit -qm 'my own work'",
        false,
    ));
}

#[test]
fn worktree_cherry_squash_of_a_siblings_commits_is_refused() {
    let r = copied_in(
        "git merge -q --squash qw/demo/2\ngit commit -qm 'squashed'",
        true,
    );
    let ev = assert_copy_refused(&r);
    assert!(ev.contains("the 2 commits"), "{ev}");
}

#[test]
fn worktree_cherry_unrelated_change_merges() {
    // Task 2 fails with its commit on its branch; task 1's own work merges.
    let r = copied_in(
        "echo 1b > f1b.txt\ngit add f1b.txt\ngit commit -qm f1b",
        false,
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(r.f.task("1")["status"], "completed", "{}", diag(&out));
    assert!(has(&r, "main", "f1.txt") && has(&r, "main", "f1b.txt"));
    assert!(!has(&r, "main", "bad2.txt"));
    r.assert_no_process();
}

#[test]
fn worktree_cherry_pick_of_a_commit_main_already_has_merges() {
    // Task 2 passes and merges first; task 1 then picks task 2's commit from main.
    let r = Repo::new(&tasks(2));
    let wait_main = "n=0; while ! git cat-file -e main:f2.txt 2>/dev/null && [ $n -lt 1800 ]; do sleep 0.05; n=$((n+1)); done\n";
    r.action(
        "1",
        &format!("{}{wait_main}git cherry-pick main^2\n", work("1")),
    );
    r.action("2", &work("2"));
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(r.f.task("1")["status"], "completed", "{}", diag(&out));
    assert!(has(&r, "main", "f1.txt") && has(&r, "main", "f2.txt"));
    r.assert_no_process();
}

#[test]
fn worktree_cherry_sibling_copying_task_1s_commit_does_not_refuse_task_1() {
    // Task 2 copies task 1's commit and fails: task 1 made the change first (an earlier
    // second, or the same one with task 2's made by `cherry-pick`), so its merge goes on.
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        &format!(
            "{}{}{}",
            work("1"),
            open_gate(&r, "1-committed"),
            gate(&r, "2-copied")
        ),
    );
    r.action(
        "2",
        &format!(
            "{}git cherry-pick qw/demo/1\n{}exit 1\n",
            gate(&r, "1-committed"),
            open_gate(&r, "2-copied")
        ),
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(r.f.task("1")["status"], "completed", "{}", diag(&out));
    assert_eq!(r.f.task("2")["outcome"], "agent_error");
    assert!(has(&r, "main", "f1.txt"));
    r.assert_no_process();
}

#[test]
fn worktree_cherry_copy_of_a_running_sibling_merges_after_the_sibling() {
    // Task 2 is still running when task 1 (which copied its commit) is checked: refused,
    // as a merge of its branch would be. Task 2 then passes and merges; the next
    // `workflow-continue` merges task 1, its copy now a change `main` has.
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        &once(
            &r,
            "1",
            &format!(
                "{}{}git cherry-pick qw/demo/2\n",
                gate(&r, "2-committed"),
                work("1")
            ),
        ),
    );
    let state = r.root().join(".claude/unified_state.json");
    r.action(
        "2",
        &format!(
            "{}{}n=0; while ! grep -q workspace_error {} && [ $n -lt 1800 ]; do sleep 0.05; n=$((n+1)); done\n",
            work("2"),
            open_gate(&r, "2-committed"),
            state.display()
        ),
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(
        r.f.task("1")["outcome"],
        "workspace_error",
        "{}",
        diag(&out)
    );
    assert!(evidence(&r, "1").contains("of task 2 (task branch `qw/demo/2`)"));
    assert_eq!(r.f.task("2")["status"], "completed", "{}", diag(&out));
    assert!(has(&r, "main", "f2.txt") && !has(&r, "main", "f1.txt"));
    let cont = r.run(&[
        "workflow-continue",
        "demo",
        "--retry-delay",
        "0.1",
        "--agent-cmd",
        &r.agent_cmd(),
    ]);
    assert_eq!(code(&cont), 0, "{}", diag(&cont));
    assert_eq!(r.f.task("1")["status"], "completed", "{}", diag(&cont));
    assert!(has(&r, "main", "f1.txt") && has(&r, "main", "f2.txt"));
    r.assert_no_process();
}
