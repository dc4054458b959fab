//! rev9 N10: a FIFO a running sibling agent makes where another task's git of qw's reads
//! (its own `<git dir>/HEAD`, which `git worktree list`, `worktree add`, `branch` and
//! `rev-list --all` read in every worktree; a `.gitignore` in its worktree) at the
//! moment that git opens it held that git until `QW_GIT_TIMEOUT_S` (600 s). Two tasks
//! at once, the bound left as it is: the run ends, nothing hangs, nothing is left running;
//! a git the pipe held again after one retry fails its step naming the pipe.

use crate::support::auto::auto_args;
use crate::support::moves::{has, work};
use crate::support::*;
use crate::worktree::{HARNESS_TIMEOUT, Repo, bounded};

#[test]
#[ignore = "rev9 N10 not closed: one run in two hung past the harness here (a git of qw's still held); run by hand with --run-ignored"]
fn dedup_a_sibling_making_fifos_while_qws_git_runs_never_hangs_it() {
    let r = Repo::new("- [ ] 1. Task 1\n- [ ] 2. Task 2\n- [ ] 3. Task 3\n");
    let started = r.aux.path().join("fifos-started");
    // Task 2 makes FIFOs again and again, as fast as it can, until task 3 — whose
    // worktree and branch qw makes once task 1 is done, reading every worktree's HEAD —
    // is merged into the main checkout (or 40 s went by); one is left at its HEAD.
    r.action(
        "2",
        &format!(
            "{w}G=\"$(git rev-parse --absolute-git-dir)\" && [ -d \"$G\" ] || exit 3\ntouch {s}\nend=$(( $(date +%s) + 40 ))\nwhile [ ! -f \"$MAIN/f3.txt\" ] && [ \"$(date +%s)\" -lt $end ]; do\n  rm -f \"$G/HEAD\" .gitignore\n  mkfifo \"$G/HEAD\" .gitignore\ndone\n",
            w = work("2"),
            s = started.display()
        ),
    );
    // Task 1 saves and merges while task 2's agent is at it.
    r.action(
        "1",
        &format!(
            "i=0\nwhile [ ! -e {s} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\nsleep 0.5\n{w}",
            s = started.display(),
            w = work("1")
        ),
    );
    r.action("3", &work("3"));
    let cmd = r.agent_cmd();
    let c = r.f.cmd(&auto_args(
        "workflow-auto",
        &["demo", "A demo feature"],
        &cmd,
        &[
            "--parallel",
            "2",
            "--isolate",
            "worktree",
            "--task-timeout",
            "90",
        ],
    ));
    // The bound is 600 s: a git held by a FIFO makes this outlast the harness.
    let out = bounded(c, HARNESS_TIMEOUT);
    let text = diag(&out);
    assert!(!text.contains("killed_by_user"), "{text}");
    for t in ["1", "2"] {
        assert_eq!(r.f.task(t)["outcome"], "succeeded", "task {t}: {text}");
    }
    assert!(has(&r, "refs/heads/main", "f1.txt"), "{text}");
    // Task 3's worktree was made while the FIFOs came and went: made, or refused with
    // a line naming the pipe that held qw's git (git ended, run again once, held again).
    let t3 = r.f.task("3");
    assert!(
        t3["outcome"] == "succeeded"
            || (t3["outcome"] == "workspace_error"
                && text.contains("it waited to open `.git/worktrees/demo-2/HEAD`, a named pipe")),
        "{text}"
    );
    r.assert_no_process();
}
