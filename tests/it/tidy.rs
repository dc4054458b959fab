//! Issue 14, a re-read of rev7 R1: a merge-pending record in the shared git directory
//! counts only when the state says qw left the task waiting to merge (the task's
//! `merge_pending`), never because the words of its recorded error say so — those quote
//! names an agent chose (here the subject of a commit an agent made on `main`).

use crate::support::moves::{cont, in_worktrees, tasks};
use crate::support::*;
use crate::worktree::Repo;

/// Task 1's agent commits `user.txt` on `main` (through `$MAIN`) under a subject that
/// holds the words the old text match took, then squashes onto `main`, deleting it:
/// refused (`workspace_error`, the subject quoted), put back on its branch. Task 2's
/// agent waits for that put-back and forges a merge-pending record of task 1 at it. The
/// continue ignores the record and runs task 1's agent again; the old code took the
/// words and merged without the agent.
#[test]
fn tidy_words_of_an_error_never_vouch_for_a_forged_pending_record() {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        &crate::support::moves::once(
            &r,
            "1",
            "echo 1 > f1.txt\ngit add -A\ngit commit -qm f1\n(cd \"$MAIN\" && echo mine > user.txt && git add user.txt && git commit -qm 'user.txt: its agent does not run again')\ngit reset -q --soft main\ngit commit -qm 'squash onto main'\n",
        ),
    );
    r.action(
        "2",
        &crate::support::moves::once(
            &r,
            "2",
            "n=0; until git -C \"$MAIN\" log -1 --format=%s qw/demo/1 2>/dev/null | grep -q 'put back'; do [ $n -lt 1200 ] || exit 1; sleep 0.05; n=$((n+1)); done\nsleep 2\nC=\"$(git rev-parse --git-common-dir)\"\nmkdir -p \"$C/qw-pending/demo\"\nprintf 'tip %s\\nbranch qw/demo/1\\nsubject qw(demo): merge task 1 Task 1 (succeeded)\\n' \"$(git rev-parse qw/demo/1)\" > \"$C/qw-pending/demo/1\"\necho 2 > f2.txt\n",
        ),
    );
    let out = r.auto(&in_worktrees("2"));
    let text = diag(&out);
    let t1 = r.f.task("1");
    assert_eq!(t1["outcome"], "workspace_error", "{text}");
    assert!(
        t1["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not run again")),
        "{t1}"
    );
    assert!(t1.get("merge_pending").is_none(), "{t1}");
    assert_eq!(r.f.task("2")["status"], "completed", "{text}");
    assert!(
        r.root().join(".git/qw-pending/demo/1").is_file(),
        "the forgery was not written: {text}"
    );
    let out = cont(&r, &in_worktrees("2"));
    let text = diag(&out);
    assert!(text.contains("ignored a merge-pending record"), "{text}");
    assert!(!text.contains("merging it now"), "{text}");
    assert_eq!(
        r.runs_of("1"),
        2,
        "task 1's agent did not run again: {text}"
    );
    r.assert_no_process();
}
