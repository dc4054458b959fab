//! rev7 R1/R4: a merge-pending record (`<common>/qw-pending/<spec>/<id>`) lives in the
//! shared git directory, which every agent can write. A record for a task the state says
//! failed its check or its agent is not qw's: the task runs again with its check, and its
//! unchecked work never reaches `main`; a record naming git's own merge subject never
//! makes qw abort the user's merge by hand.

use crate::support::moves::{cont, has, in_worktrees, tasks, work};
use crate::support::*;
use crate::worktree::Repo;

/// What an agent (or anyone) can write: a record claiming `branch` at `tip` only waits
/// to be merged.
fn forge(r: &Repo, id: &str, tip: &str, subject: &str) {
    let dir = r.root().join(".git/qw-pending/demo");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(id),
        format!("tip {tip}\nbranch qw/demo/{id}\nsubject {subject}\n"),
    )
    .unwrap();
}

#[test]
fn worktree_rev7_forged_pending_record_of_a_failed_check_is_ignored() {
    let r = Repo::new("- [ ] 1. Task 1\n  - _Verify: `test -f ok1.txt`_\n- [ ] 2. Task 2\n");
    // The agent's own forgery, written from its worktree after committing its work.
    r.action(
        "1",
        "echo unchecked > bad1.txt\ngit add bad1.txt\ngit commit -qm bad1\nC=\"$(git rev-parse --git-common-dir)\"\nmkdir -p \"$C/qw-pending/demo\"\nprintf 'tip %s\\nbranch qw/demo/1\\nsubject qw(demo): merge task 1 Task 1 (succeeded)\\n' \"$(git rev-parse HEAD)\" > \"$C/qw-pending/demo/1\"\n",
    );
    r.action("2", &work("2"));
    let out = r.auto(&in_worktrees("2"));
    assert_eq!(r.f.task("1")["outcome"], "verify_failed", "{}", diag(&out));
    let out = cont(&r, &in_worktrees("2"));
    let text = diag(&out);
    assert!(text.contains("ignored a merge-pending record"), "{text}");
    assert!(!text.contains("merging it now"), "{text}");
    assert_ne!(r.f.task("1")["status"], "completed", "{text}");
    assert!(
        !has(&r, "main", "bad1.txt"),
        "unchecked work reached main: {text}"
    );
    assert!(has(&r, "main", "f2.txt"), "{text}");
    r.assert_no_process();
}

#[test]
fn worktree_rev7_forged_record_of_a_branch_moved_onto_main_repairs_nothing() {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        "echo w > w1.txt\ngit add w1.txt\ngit commit -qm w1\nexit 1\n",
    );
    r.action("2", &work("2"));
    let out = r.auto(&in_worktrees("2"));
    assert_eq!(r.f.task("1")["outcome"], "agent_error", "{}", diag(&out));
    // Moved onto main, with a record saying main already holds it.
    let main = r.git(&["rev-parse", "main"]);
    let main = main.trim();
    r.git(&["branch", "-f", "qw/demo/1", main]);
    forge(&r, "1", main, "qw(demo): merge task 1 Task 1 (succeeded)");
    let out = cont(&r, &in_worktrees("2"));
    let text = diag(&out);
    assert!(!text.contains("repaired: qw was stopped"), "{text}");
    assert!(text.contains("ignored a merge-pending record"), "{text}");
    assert_ne!(r.f.task("1")["status"], "completed", "{text}");
    r.assert_no_process();
}

#[test]
fn worktree_rev7_record_with_gits_own_subject_never_aborts_the_users_merge() {
    let mut r = Repo::new(&tasks(2));
    // The continue waits for the user's merge before any agent (rev7 R8), then refuses.
    r.f.set("QW_MAIN_WAIT_S", "1");
    r.action(
        "1",
        "echo one > shared.txt\ngit add shared.txt\ngit commit -qm s1\n",
    );
    r.action(
        "2",
        "echo two > shared.txt\ngit add shared.txt\ngit commit -qm s2\n",
    );
    let out = r.auto(&in_worktrees("2"));
    let conflicted = ["1", "2"]
        .into_iter()
        .find(|id| r.f.task(id)["outcome"] == "merge_conflict")
        .unwrap_or_else(|| panic!("no conflict: {}", diag(&out)));
    let branch = format!("qw/demo/{conflicted}");
    // The user merges by hand, as advised; the conflict stays for them to resolve.
    let _ = r.git_cmd(r.root(), &["merge", &branch]);
    let head = r.git(&["rev-parse", "MERGE_HEAD"]);
    let tip = r.git(&["rev-parse", &branch]);
    forge(
        &r,
        conflicted,
        tip.trim(),
        &format!("Merge branch '{branch}'"),
    );
    let out = cont(&r, &in_worktrees("2"));
    let text = diag(&out);
    assert!(!text.contains("git merge --abort`):"), "{text}");
    assert_eq!(r.git(&["rev-parse", "MERGE_HEAD"]), head, "{text}");
    r.assert_no_process();
}

/// rev7 R2: the agent weakens its own check and deletes (or rewrites) the run's record
/// of the checks: the run still says the check changed (it compares with what it read,
/// not with the file), and the next run is refused; the half-done work never reaches
/// `main`.
#[test]
fn worktree_rev7_weakened_check_sticks_not_when_the_record_is_deleted() {
    for tamper in ["rm -f", "echo '{}' >"] {
        let r = Repo::new("- [ ] 1. Task 1\n  - _Verify: `test -f ok1.txt`_\n- [ ] 2. Task 2\n");
        r.action(
            "1",
            &format!(
                "echo half > half1.txt\nsed -i 's/test -f ok1.txt/true/' .claude/specs/demo/tasks.md\n{tamper} \"$MAIN/.claude/runs/.demo.checks.json\"\n"
            ),
        );
        r.action("2", &work("2"));
        let out = r.auto(&in_worktrees("2"));
        let text = diag(&out);
        assert!(
            text.contains("task 1's _Verify:_ `test -f ok1.txt` → `true`"),
            "{tamper}: the run says the check changed: {text}"
        );
        let out = cont(&r, &in_worktrees("2"));
        assert_eq!(code(&out), 2, "{tamper}: {}", diag(&out));
        assert!(!has(&r, "main", "half1.txt"), "{tamper}: {}", diag(&out));
        r.assert_no_process();
    }
}

/// rev7 R10: task 1's merged `git rm`, then task 2's squash onto `main` (`git reset
/// --soft main` from its stale index) would bring the file back: refused naming it, and
/// the continue merges task 2's own work without it.
#[test]
fn worktree_rev7_squash_bringing_back_a_file_a_sibling_deleted_is_refused() {
    let r = Repo::new(&tasks(2));
    std::fs::create_dir_all(r.root().join("src")).unwrap();
    std::fs::write(r.root().join("src/keep.txt"), "keep\n").unwrap();
    r.git(&["add", "src/keep.txt"]);
    r.git(&["commit", "-qm", "keep"]);
    r.action(
        "1",
        "git rm -q src/keep.txt\ngit commit -qm 't1 removes keep.txt'\n",
    );
    r.action(
        "2",
        &crate::support::moves::once(
            &r,
            "2",
            &format!(
                "echo 2 > f2.txt\ngit add -A\ngit commit -qm t2\n{}git reset -q --soft main\ngit commit -qm 'squash onto main'\n",
                "n=0; until git -C \"$MAIN\" log --format=%s main | grep -q 'merge task 1 '; do [ $n -lt 1800 ] || break; sleep 0.05; n=$((n+1)); done\n"
            ),
        ),
    );
    let out = r.auto(&in_worktrees("2"));
    let text = diag(&out);
    assert!(
        !has(&r, "main", "src/keep.txt"),
        "a deleted file came back: {text}"
    );
    assert!(text.contains("brought back after it was deleted"), "{text}");
    let out = cont(&r, &in_worktrees("2"));
    let text = diag(&out);
    assert!(!has(&r, "main", "src/keep.txt"), "{text}");
    assert!(has(&r, "main", "f2.txt"), "{text}");
    r.assert_no_process();
}

/// rev7 R5: a file the user commits on `main` while the task runs (here made through
/// `$MAIN`, which is the main worktree's: the user's) is a gain too — the agent's squash
/// onto `main` from a stale index would delete it: refused naming it; it stays.
#[test]
fn worktree_rev7_squash_deleting_the_users_commit_of_the_run_is_refused() {
    let r = Repo::new(&tasks(1));
    r.action(
        "1",
        &crate::support::moves::once(
            &r,
            "1",
            "mkdir pkg2\necho y=2 > pkg2/mod.py\ngit add -A\ngit commit -qm pkg2\n(cd \"$MAIN\" && echo mine > user.txt && git add user.txt && git commit -qm 'user adds user.txt')\ngit reset -q --soft main\ngit commit -qm 'squash onto main'\n",
        ),
    );
    let out = r.auto(&in_worktrees("2"));
    let text = diag(&out);
    assert!(
        has(&r, "main", "user.txt"),
        "the user's file was deleted: {text}"
    );
    assert!(text.contains("`user.txt` (deleted"), "{text}");
    let out = cont(&r, &in_worktrees("2"));
    let text = diag(&out);
    assert!(has(&r, "main", "user.txt"), "{text}");
    assert!(has(&r, "main", "pkg2/mod.py"), "{text}");
    r.assert_no_process();
}
