//! A task's result crossed with work from outside its worktree (rev1 H1, M1, M5): its
//! branch moved by another task's git while its worktree stayed behind, another task's
//! unmerged commits brought in by a rebase or a merge, history rewritten below the
//! commit the worktree started from.
//!
//! Each test asserts where every piece of work is (the branches the output names hold
//! it), that the target holds nothing unchecked and loses nothing, and that no commit
//! holding work is left dangling. Tasks wait for each other with flag files, not time.

use crate::support::moves::{files_of, gate, has, once, open_gate, tasks};
use crate::support::*;
use crate::worktree::Repo;

/// No commit is left dangling (every commit qw made or the agents made is on a branch;
/// qw's own stash entries of the main worktree, once dropped, do not count, nor an
/// original a rebase replaced by an equivalent commit on a branch).
fn assert_no_dangling_commit(r: &Repo) {
    let out = r.git(&["fsck", "--no-reflogs", "--no-progress", "--dangling"]);
    let dangling: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("dangling commit "))
        .filter(|c| {
            let c = c.trim();
            !r.branches().iter().any(|b| {
                r.git(&["cherry", b, c, &format!("{c}^")])
                    .trim()
                    .starts_with('-')
            })
        })
        .map(|c| r.git(&["log", "-1", "--format=%H %s", c.trim()]))
        .filter(|l| {
            let s = l.split_once(' ').map_or("", |(_, s)| s);
            !["WIP on ", "index on ", "untracked files on ", "On "]
                .iter()
                .any(|p| s.starts_with(p))
        })
        .collect();
    assert!(dangling.is_empty(), "{dangling:?}");
}

/// The branch named in `text` that starts with `prefix` (up to the closing backquote).
fn named(text: &str, prefix: &str) -> String {
    let at = text
        .find(&format!("`{prefix}"))
        .unwrap_or_else(|| panic!("no `{prefix}…` in: {text}"));
    let rest = &text[at + 1..];
    rest[..rest.find('`').unwrap()].to_owned()
}

fn evidence(r: &Repo, id: &str) -> String {
    r.f.task(id)["evidence"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Task 2 commits f2.txt and leaves f2u.txt uncommitted, while `mover` (task 1's
/// action) moves `qw/demo/2` from outside task 2's worktree.
fn moved_under(mover: &str) -> Repo {
    moved_under_then(mover, "")
}

/// [`moved_under`], then task 2's agent runs `after` in its worktree (after the move).
fn moved_under_then(mover: &str, after: &str) -> Repo {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        &once(
            &r,
            "1",
            &format!(
                "{}echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1\n{mover}\n{}",
                gate(&r, "2-committed"),
                open_gate(&r, "1-moved")
            ),
        ),
    );
    r.action(
        "2",
        &once(
            &r,
            "2",
            &format!(
                "echo 2 > f2.txt\ngit add f2.txt\ngit commit -qm f2\necho 2u > f2u.txt\n{}{}{after}\n",
                open_gate(&r, "2-committed"),
                gate(&r, "1-moved")
            ),
        ),
    );
    r
}

/// Task 2 failed `workspace_error` naming the move; its own work (f2.txt, f2u.txt) is on
/// `qw/demo/2` and deletes nothing; `workflow-continue` merges it without deleting
/// anything on main.
fn assert_task_2_kept_and_continued(r: &Repo, out: &std::process::Output) -> String {
    assert_eq!(code(out), 1, "{}", diag(out));
    let t2 = r.f.task("2");
    assert_eq!(t2["outcome"], "workspace_error", "{t2}");
    let ev = evidence(r, "2");
    assert!(
        ev.contains("branch `qw/demo/2` was moved while the task ran, not from its worktree"),
        "{ev}"
    );
    assert!(has(r, "qw/demo/2", "f2.txt") && has(r, "qw/demo/2", "f2u.txt"));
    assert!(!has(r, "main", "f2.txt"), "nothing of task 2 merged");
    // Task 2's result deletes nothing of what its worktree started from.
    let deleted = r.git(&[
        "diff",
        "--name-only",
        "--diff-filter=D",
        "main~0",
        "qw/demo/2",
        "--",
        "second.txt",
        "shared.txt",
    ]);
    assert_eq!(deleted, "");
    assert_no_dangling_commit(r);
    let cont = r.run(&[
        "workflow-continue",
        "demo",
        "--retry-delay",
        "0.1",
        "--agent-cmd",
        &r.agent_cmd(),
    ]);
    assert_eq!(code(&cont), 0, "{}", diag(&cont));
    ev
}

#[test]
fn worktree_cross_branch_moved_by_a_siblings_update_ref_is_not_merged_and_loses_nothing() {
    // The reproduction: task 1 points task 2's branch at its own commit.
    let r = moved_under("git update-ref refs/heads/qw/demo/2 HEAD");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(r.f.task("1")["status"], "completed", "{}", diag(&out));
    assert!(has(&r, "main", "f1.txt"));
    assert_task_2_kept_and_continued(&r, &out);
    for f in ["f1.txt", "f2.txt", "f2u.txt", "second.txt", "shared.txt"] {
        assert!(
            has(&r, "main", f),
            "{f} on main: {:?}",
            files_of(&r, "main")
        );
    }
    r.assert_no_process();
}

/// Task 2's agent runs `after` once task 1 moved its branch: the move is still seen
/// (the worktree's HEAD reflog jumps), task 2's result deletes nothing of task 1's
/// merged work, and `workflow-continue` merges task 2's own work (f2, f2u, `also`).
fn moved_then(after: &str, also: &[&str]) {
    let r = moved_under_then("git update-ref refs/heads/qw/demo/2 HEAD", after);
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(r.f.task("1")["status"], "completed", "{}", diag(&out));
    assert!(has(&r, "main", "f1.txt"), "{}", diag(&out));
    let ev = assert_task_2_kept_and_continued(&r, &out);
    assert!(ev.contains("task 1's worktree"), "who moved it: {ev}");
    for f in ["f1.txt", "f2.txt", "f2u.txt", "second.txt", "shared.txt"]
        .iter()
        .chain(also)
    {
        assert!(
            has(&r, "main", f),
            "{f} on main: {:?}",
            files_of(&r, "main")
        );
    }
    r.assert_no_process();
}

#[test]
fn worktree_cross_commit_after_the_move_is_still_seen() {
    // rev3 H4: the victim's agent commits again on the moved tip.
    moved_then(
        "echo 2b > f2b.txt\ngit add f2b.txt\ngit commit -qm f2b",
        &["f2b.txt"],
    );
}

#[test]
fn worktree_cross_stash_and_pop_after_the_move_is_still_seen() {
    moved_then("git stash -q\ngit stash pop -q", &[]);
}

#[test]
fn worktree_cross_checkout_of_its_own_branch_after_the_move_is_still_seen() {
    moved_then("git checkout -q qw/demo/2", &[]);
}

#[test]
fn worktree_cross_branch_moved_through_its_own_worktree_deletes_nothing_it_never_held() {
    // The safety net: task 1 moves task 2's branch with a bare `update-ref` run in task
    // 2's worktree (so its HEAD reflog shows no jump); task 2's result would delete
    // task 1's merged f1.txt, which task 2's worktree never held: refused, named.
    // Task 2 ends once task 1 is merged: the deletion is of a file on `main` (else its
    // result is refused for bringing in task 1's unmerged commit, a race).
    let r = moved_under_then(
        "w2=$(git worktree list --porcelain | grep -B2 'branch refs/heads/qw/demo/2$' | head -n1 | cut -d' ' -f2-)\ngit -C \"$w2\" update-ref refs/heads/qw/demo/2 \"$(git rev-parse HEAD)\"",
        "while ! git -C \"$MAIN\" cat-file -e main:f1.txt 2>/dev/null; do sleep 0.05; done",
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(r.f.task("1")["status"], "completed", "{}", diag(&out));
    let t2 = r.f.task("2");
    assert_eq!(t2["outcome"], "workspace_error", "{t2}");
    let ev = evidence(&r, "2");
    assert!(
        ev.contains("deletes `f1.txt` from `main`, which its worktree never held"),
        "{ev}"
    );
    assert!(has(&r, "main", "f1.txt"), "{:?}", files_of(&r, "main"));
    assert!(!has(&r, "main", "f2.txt"), "nothing of task 2 merged");
    assert!(has(&r, "qw/demo/2", "f2.txt") && has(&r, "qw/demo/2", "f2u.txt"));
    r.assert_no_process();
}

#[test]
fn worktree_cross_branch_switched_to_from_another_worktree_is_not_merged() {
    // Task 1 checks task 2's branch out in its own worktree and commits there: task 1's
    // result holds task 2's unmerged commit (refused), task 2's branch moved under it.
    // Task 2 ends only once task 1's agent has (its supervisor's report is there), so
    // both branches are where the agents left them when qw saves either task. (Task 2
    // saved while task 1's agent still ran after its move is another case: qw moves
    // `qw/demo/2` back under task 1's worktree, which then reads as task 1's branch
    // moved by task 2's worktree, and `x1.txt` is not on `qw/demo/1`.)
    let r = moved_under_then(
        "git switch -q --ignore-other-worktrees qw/demo/2\necho x > x1.txt\ngit add x1.txt\ngit commit -qm x",
        "n=0; until ls \"$MAIN\"/.claude/runs/*/exec-report.json >/dev/null 2>&1 || [ $n -ge 1800 ]; do sleep 0.05; n=$((n+1)); done",
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(
        r.f.task("1")["outcome"],
        "workspace_error",
        "{}",
        diag(&out)
    );
    let ev1 = evidence(&r, "1");
    assert!(
        ev1.contains("brings in commits of another task") && ev1.contains("`qw/demo/2`"),
        "{ev1}"
    );
    assert!(has(&r, "qw/demo/1", "x1.txt"));
    // rev3 L9: task 2's own commit under task 1's x is not counted as task 1's agent's.
    assert!(
        !diag(&out).contains("2 commit(s) of the agent on branch `qw/demo/2`"),
        "{}",
        diag(&out)
    );
    let ev2 = assert_task_2_kept_and_continued(&r, &out);
    // Task 1's commit the branch was moved to: on task 1's branch when task 1 was saved
    // first, else kept on an `@` branch of task 2 (both hold it).
    if !ev2.contains("is on branch `qw/demo/1`") {
        let at = named(&ev2, "qw/demo/2@");
        assert!(has(&r, &at, "x1.txt"), "{ev2}");
    }
    assert!(
        ev2.contains("task 1's worktree") || ev2.contains("commit: x"),
        "{ev2}"
    );
    assert!(has(&r, "main", "f2.txt") && has(&r, "main", "f2u.txt"));
    // Task 1's work is still on its branch (continue refused it again, or merged it
    // once task 2's commit is on main): never lost.
    let mut revs = r.branches();
    revs.push("main".into());
    assert!(revs.iter().any(|b| has(&r, b, "x1.txt")), "{revs:?}");
    r.assert_no_process();
}

#[test]
fn worktree_cross_branch_moved_to_a_commit_only_there_keeps_that_commit() {
    // The branch is pointed (from the main worktree's git) at a commit nothing else
    // holds: it is kept on an `@` branch, named.
    let r = moved_under(
        "echo g > ghost.txt\ngit add ghost.txt\ng=$(git write-tree)\ngit reset -q ghost.txt\nrm ghost.txt\nc=$(git commit-tree $g -p HEAD -m ghost)\ngit -C \"$MAIN\" update-ref refs/heads/qw/demo/2 $c",
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(r.f.task("1")["status"], "completed", "{}", diag(&out));
    let ev = assert_task_2_kept_and_continued(&r, &out);
    let kept = named(&ev, "qw/demo/2@");
    assert!(has(&r, &kept, "ghost.txt"), "{kept}");
    for f in ["f1.txt", "f2.txt", "f2u.txt", "second.txt"] {
        assert!(has(&r, "main", f), "{f}");
    }
    assert!(!has(&r, "main", "ghost.txt"));
    r.assert_no_process();
}

/// Task 2 commits bad2.txt, then fails once task 1 is done; task 1 brings task 2's
/// commit into its result with `bring`.
fn brought_in(bring: &str) -> Repo {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        &format!(
            "{}echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1\n{bring}\n{}",
            gate(&r, "2-committed"),
            open_gate(&r, "1-done")
        ),
    );
    r.action(
        "2",
        &format!(
            "echo bad > bad2.txt\ngit add bad2.txt\ngit commit -qm bad2\n{}{}exit 1\n",
            open_gate(&r, "2-committed"),
            gate(&r, "1-done")
        ),
    );
    r
}

fn assert_brought_in_refused(r: &Repo) {
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
        ev.contains("brings in commits of another task")
            && ev.contains("(task branch `qw/demo/2`)"),
        "{ev}"
    );
    assert!(
        !has(r, "main", "bad2.txt"),
        "task 2's failed work reached main"
    );
    assert!(!has(r, "main", "f1.txt"));
    assert!(has(r, "qw/demo/1", "f1.txt"));
    assert!(has(r, "qw/demo/2", "bad2.txt"), "{:?}", r.branches());
    assert_no_dangling_commit(r);
    // The printed command keeps only task 1's own commits (rev3 M1: remade in a
    // scratch worktree, not by a rebase that switched the main worktree).
    let cmd = crate::support::moves::printed(&ev, "git worktree add");
    crate::support::moves::follow_in_sh(r, &cmd);
    assert_eq!(r.git(&["symbolic-ref", "--short", "HEAD"]).trim(), "main");
    assert!(has(r, "qw/demo/1", "f1.txt"));
    assert!(!has(r, "qw/demo/1", "bad2.txt"), "{cmd}");
    r.assert_no_process();
}

#[test]
fn worktree_cross_rebase_onto_a_siblings_branch_is_refused() {
    assert_brought_in_refused(&brought_in("git rebase -q qw/demo/2"));
}

#[test]
fn worktree_cross_merge_of_a_siblings_branch_is_refused() {
    assert_brought_in_refused(&brought_in("git merge -q --no-edit qw/demo/2"));
}

/// Task 1 rewrites the commit its worktree started from with `rewrite` (deleting
/// second.txt, which that commit added): the merge cannot take the deletion; it is
/// named with the command that takes it.
fn rewritten_below(rewrite: &str) {
    let r = Repo::new(&tasks(2));
    r.action("1", rewrite);
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let ev = evidence(&r, "1");
    assert!(
        ev.contains("no longer descends from the commit its worktree started from")
            && ev.contains("second.txt"),
        "{ev}"
    );
    assert!(
        diag(&out).contains("git rm -q -- second.txt"),
        "{}",
        diag(&out)
    );
    for f in ["f1.txt", "f2.txt", "second.txt"] {
        assert!(has(&r, "main", f), "{f}");
    }
    assert_no_dangling_commit(&r);
    // The printed command takes the deletion.
    r.git(&["rm", "-q", "--", "second.txt"]);
    r.git(&["commit", "-qm", "take the deletion"]);
    assert!(!has(&r, "main", "second.txt") && has(&r, "main", "f1.txt"));
    r.assert_no_process();
}

#[test]
fn worktree_cross_amend_of_the_start_commit_names_the_dropped_deletion() {
    // The reproduction.
    rewritten_below(
        "git rm -q second.txt\necho 1 > f1.txt\ngit add f1.txt\ngit commit -q --amend -m amended\n",
    );
}

#[test]
fn worktree_cross_soft_reset_past_the_start_then_commit_names_the_dropped_deletion() {
    rewritten_below(
        "git reset -q --soft HEAD~1\ngit rm -q --cached second.txt\nrm second.txt\necho 1 > f1.txt\ngit add f1.txt\ngit commit -qm redo\n",
    );
}

#[test]
fn worktree_cross_rebase_hint_quotes_the_target_name() {
    // rev3 L1: a target branch whose name a shell would run.
    let r = brought_in("git rebase -q qw/demo/2");
    let target = "x$(touch${IFS}PWNED)";
    r.git(&["switch", "-q", "-c", target]);
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let ev = evidence(&r, "1");
    let cmd = &ev[ev
        .find("`git worktree add")
        .unwrap_or_else(|| panic!("{ev}"))
        + 1..];
    let cmd = &cmd[..cmd.find('`').unwrap()];
    assert!(cmd.contains("'x$(touch${IFS}PWNED)'"), "{cmd}");
    let run = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(r.root())
        .output()
        .unwrap();
    assert!(run.status.success(), "{cmd}: {}", diag(&run));
    assert!(!r.root().join("PWNED").exists(), "{cmd} ran a command");
    assert!(has(&r, "qw/demo/1", "f1.txt"));
    assert!(!has(&r, "qw/demo/1", "bad2.txt"), "{cmd}");
    r.assert_no_process();
}

#[test]
fn worktree_cross_note_counts_only_the_commits_its_worktree_made() {
    // rev3 L9: task 1 commits on task 2's branch from its own worktree, then switches
    // back; its note about that commit counts it alone, not task 2's f2 below it.
    let r = moved_under(
        "git switch -q --ignore-other-worktrees qw/demo/2\necho x > x1.txt\ngit add x1.txt\ngit commit -qm x-on-2\ngit switch -q --ignore-other-worktrees qw/demo/1",
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(r.f.task("1")["status"], "completed", "{}", diag(&out));
    let text = diag(&out);
    assert!(
        text.contains("task 1: 1 commit(s) of the agent on branch `qw/demo/2"),
        "{text}"
    );
    assert!(!text.contains("2 commit(s) of the agent"), "{text}");
    assert_task_2_kept_and_continued(&r, &out);
    r.assert_no_process();
}
