//! rev4's findings on a task branch moved from outside its worktree, resumed tasks and
//! the stash (F1, F6, F8, F11): qw's hints never merge a commit made on a moved tip with
//! the worktree's old index, a resumed task's own deletions and renames are merged, the
//! safety net leaves a branch that `workflow-continue` finishes, and stash warnings are
//! said only of entries that are gone for real, to the task that made them.
//!
//! Every refusal's way on is followed as printed (the `git merge` each hint names, the
//! `qw workflow-continue` it names), and then the target must hold every task's work.
//! Tasks wait for each other with flag files, not time.

use crate::support::moves::{files_of, gate, has, once, open_gate, tasks};
use crate::support::*;
use crate::worktree::Repo;

fn evidence(r: &Repo, id: &str) -> String {
    r.f.task(id)["evidence"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `workflow-continue demo` with the test agent, one attempt, `extra` added.
fn cont(r: &Repo, extra: &[&str]) -> std::process::Output {
    let cmd = r.agent_cmd();
    let mut args = vec![
        "workflow-continue",
        "demo",
        "--retry-delay",
        "0.1",
        "--attempts",
        "1",
        "--agent-cmd",
        cmd.as_str(),
    ];
    args.extend_from_slice(extra);
    r.run(&args)
}

/// Every `git merge <rev>` printed in `text` (the revision as printed).
fn merges_printed(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("`git merge ") {
        let cmd = &rest[at + 1..];
        let end = cmd.find('`').unwrap_or(cmd.len());
        if let Some(rev) = cmd[..end].split(' ').next_back() {
            out.push(rev.trim_matches('\'').to_owned());
        }
        rest = &cmd[end..];
    }
    out
}

/// No `git merge` printed in `text` would delete from `main` any of `files` (its
/// changes from where it meets `main`); each is then run in the main worktree and
/// `main` still holds them.
fn printed_merges_keep(r: &Repo, text: &str, files: &[&str]) {
    for rev in merges_printed(text) {
        if !r.git_ok(&["rev-parse", "-q", "--verify", &format!("{rev}^{{commit}}")]) {
            continue;
        }
        let deleted = r.git(&[
            "diff",
            "--name-only",
            "--diff-filter=D",
            &format!("main...{rev}"),
        ]);
        for f in files {
            assert!(
                !deleted.lines().any(|l| l == *f),
                "`git merge {rev}` deletes {f}: {text}"
            );
        }
        let out = r.git_cmd(r.root(), &["merge", "-q", "--no-edit", &rev]);
        assert!(out.status.success(), "git merge {rev}: {}", diag(&out));
        for f in files {
            assert!(has(r, "main", f), "{f} gone after `git merge {rev}`");
        }
    }
}

/// Shell: wait until task 1's f1.txt is merged into main (so task 2 is checked after).
fn merged_1() -> String {
    "while ! git -C \"$MAIN\" cat-file -e main:f1.txt 2>/dev/null; do sleep 0.05; done\n".to_owned()
}

/// Task 1 commits f1.txt (and `also1`, a change to a file task 2 has too) and points
/// task 2's branch at it once task 2 committed f2.txt; task 2's agent then runs
/// `after` on the moved tip with its old index.
fn moved_then(r: &Repo, also1: &str, after: &str) {
    r.action(
        "1",
        &once(
            r,
            "1",
            &format!(
                "{}echo 1 > f1.txt\n{also1}git add f1.txt\ngit commit -qm f1\ngit update-ref refs/heads/qw/demo/2 HEAD\n{}",
                gate(r, "2-committed"),
                open_gate(r, "1-moved")
            ),
        ),
    );
    r.action(
        "2",
        &once(
            r,
            "2",
            &format!(
                "echo 2 > f2.txt\ngit add f2.txt\ngit commit -qm f2\n{}{}{after}\n{}",
                open_gate(r, "2-committed"),
                gate(r, "1-moved"),
                merged_1()
            ),
        ),
    );
}

/// Task 2 is refused naming the move; no printed `git merge` deletes `keep` from
/// main (each is followed); `qw workflow-continue demo` then completes and main holds
/// `keep` and `want`.
fn assert_refused_then_continued(
    r: &Repo,
    out: &std::process::Output,
    keep: &[&str],
    want: &[&str],
) {
    assert_eq!(code(out), 1, "{}", diag(out));
    assert_eq!(r.f.task("1")["status"], "completed", "{}", diag(out));
    assert_eq!(r.f.task("2")["outcome"], "workspace_error", "{}", diag(out));
    let ev = evidence(r, "2");
    assert!(
        ev.contains("branch `qw/demo/2` was moved while the task ran, not from its worktree"),
        "{ev}"
    );
    // The quote names the act that moved the branch, not the worktree's own commit.
    assert!(!ev.contains("reflog says `commit: f2b`"), "{ev}");
    printed_merges_keep(r, &diag(out), keep);
    let c = cont(r, &[]);
    assert_eq!(code(&c), 0, "{}", diag(&c));
    printed_merges_keep(r, &diag(&c), keep);
    for f in keep.iter().chain(want) {
        assert!(has(r, "main", f), "{f} on main: {:?}", files_of(r, "main"));
    }
    // `qw worktrees --prune` advice: followed too.
    let p = r.run(&["worktrees", "--prune"]);
    printed_merges_keep(r, &diag(&p), keep);
    r.assert_no_process();
}

#[test]
fn worktree_cross4_commit_on_the_moved_tip_is_never_offered_for_a_merge() {
    // rev4 F1, the reproduction: task 2 commits f2b.txt on the moved tip; the hint
    // used to say `git merge qw/demo/2@<f2b>`, which deletes task 1's f1.txt.
    let r = Repo::new(&tasks(2));
    moved_then(
        &r,
        "",
        "echo 2b > f2b.txt\ngit add f2b.txt\ngit commit -qm f2b",
    );
    let out = r.auto(&["--parallel", "2"]);
    let ev = evidence(&r, "2");
    assert!(
        ev.contains("with the index it had before the move") && ev.contains("`f1.txt`"),
        "{ev}"
    );
    assert_refused_then_continued(
        &r,
        &out,
        &["f1.txt", "second.txt", "shared.txt"],
        &["f2.txt", "f2b.txt"],
    );
}

#[test]
fn worktree_cross4_commits_on_the_moved_tip_keep_a_siblings_change_to_a_shared_file() {
    // Task 1's moved-in commit also changes shared.txt; task 2 commits twice on the
    // moved tip, checking its branch out between (its commits revert shared.txt):
    // nothing printed or merged takes task 1's change back.
    let r = Repo::new(&tasks(2));
    moved_then(
        &r,
        "echo one > shared.txt\ngit add shared.txt\n",
        "echo 2u > f2u.txt\ngit add f2u.txt\ngit commit -qm f2u\ngit checkout -q qw/demo/2\necho 2b > f2b.txt\ngit add f2b.txt\ngit commit -qm f2b",
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_refused_then_continued(
        &r,
        &out,
        &["f1.txt", "second.txt"],
        &["f2.txt", "f2u.txt", "f2b.txt"],
    );
    assert_eq!(r.git(&["show", "main:shared.txt"]).trim(), "one");
}

#[test]
fn worktree_cross4_reftable_commit_on_the_moved_tip_is_caught_and_continue_finishes() {
    // rev4 F8: with reftable the reflog has no old values; the move shows in the
    // commit's parent. Continue finishes; no files-backend logs are written (rev3 L8).
    let r = Repo::reftable(&tasks(2));
    moved_then(
        &r,
        "",
        "echo 2b > f2b.txt\ngit add f2b.txt\ngit commit -qm f2b",
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_refused_then_continued(
        &r,
        &out,
        &["f1.txt", "second.txt", "shared.txt"],
        &["f2.txt", "f2b.txt"],
    );
    let common = r.git(&["rev-parse", "--git-common-dir"]);
    let logs = r.root().join(common.trim()).join("logs");
    assert!(
        !logs.exists(),
        "{} written in a reftable repository",
        logs.display()
    );
}

/// Task 1 moves task 2's branch with a bare `update-ref` run in task 2's worktree (its
/// HEAD reflog shows no jump): only the safety net sees it.
fn moved_through_its_worktree(r: &Repo) {
    r.action(
        "1",
        &once(
            r,
            "1",
            &format!(
                "{}echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1\nw2=$(git worktree list --porcelain | grep -B2 'branch refs/heads/qw/demo/2$' | head -n1 | cut -d' ' -f2-)\ngit -C \"$w2\" update-ref refs/heads/qw/demo/2 \"$(git rev-parse HEAD)\"\n{}",
                gate(r, "2-committed"),
                open_gate(r, "1-moved")
            ),
        ),
    );
    r.action(
        "2",
        &once(
            r,
            "2",
            &format!(
                "echo 2 > f2.txt\ngit add f2.txt\ngit commit -qm f2\necho 2u > f2u.txt\n{}{}{}",
                open_gate(r, "2-committed"),
                gate(r, "1-moved"),
                merged_1()
            ),
        ),
    );
}

/// The safety net refused task 2 and named `qw workflow-continue demo`; running it
/// finishes (once, not refused again), nothing of task 1's is deleted.
fn assert_net_then_continued(r: &Repo) {
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(r.f.task("1")["status"], "completed", "{}", diag(&out));
    let ev = evidence(r, "2");
    assert!(
        ev.contains("deletes `f1.txt` from `main`, which its worktree never held"),
        "{ev}"
    );
    assert!(ev.contains("`qw workflow-continue demo`"), "{ev}");
    assert!(has(r, "qw/demo/2", "f1.txt"), "put back on the kept branch");
    assert!(has(r, "qw/demo/2", "f2u.txt"));
    printed_merges_keep(r, &diag(&out), &["f1.txt"]);
    let c = cont(r, &[]);
    assert_eq!(code(&c), 0, "{}", diag(&c));
    for f in ["f1.txt", "f2.txt", "f2u.txt", "second.txt", "shared.txt"] {
        assert!(has(r, "main", f), "{f} on main: {:?}", files_of(r, "main"));
    }
    r.assert_no_process();
}

#[test]
fn worktree_cross4_safety_net_refusal_is_finished_by_the_continue_it_names() {
    // rev4 F8: the net used to leave `qw/demo/2` as the commit deleting f1.txt, so
    // every continue was refused again.
    let r = Repo::new(&tasks(2));
    moved_through_its_worktree(&r);
    assert_net_then_continued(&r);
}

#[test]
fn worktree_cross4_reftable_safety_net_refusal_is_finished_by_continue() {
    let r = Repo::reftable(&tasks(2));
    moved_through_its_worktree(&r);
    assert_net_then_continued(&r);
}

/// Task 2's first run does `first` (a deletion or a rename, committed) and fails;
/// task 1 merges f1.txt meanwhile; `workflow-continue` resumes task 2 (plain work
/// f2.txt) and merges it: `gone` is off main, `present` on it.
fn resumed(first: &str, extra: &[&str], gone: &[&str], present: &[&str]) {
    let r = Repo::new(&tasks(2));
    r.action("1", "echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1\n");
    r.action("2", &once(&r, "2", first));
    let cmd = r.agent_cmd();
    let mut args = vec![
        "workflow-auto",
        "demo",
        "A demo feature",
        "--retry-delay",
        "0.1",
        "--attempts",
        "1",
        "--parallel",
        "2",
        "--agent-cmd",
        cmd.as_str(),
    ];
    args.extend_from_slice(extra);
    let out = r.run(&args);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_ne!(r.f.task("2")["status"], "completed", "{}", diag(&out));
    assert!(
        r.branches().iter().any(|b| b == "qw/demo/2"),
        "{}",
        diag(&out)
    );
    r.action("2", "echo 2 > f2.txt\n");
    let c = cont(&r, &["--parallel", "2"]);
    assert_eq!(code(&c), 0, "{}", diag(&c));
    assert!(
        diag(&c).contains("resuming the unmerged work"),
        "{}",
        diag(&c)
    );
    assert!(!diag(&c).contains("never held"), "{}", diag(&c));
    for f in present {
        assert!(
            has(&r, "main", f),
            "{f} on main: {:?}",
            files_of(&r, "main")
        );
    }
    for f in gone {
        assert!(!has(&r, "main", f), "{f} still on main");
    }
    r.assert_no_process();
}

#[test]
fn worktree_cross4_resumed_task_that_deleted_a_file_is_merged() {
    // rev4 F6, the reproduction.
    resumed(
        "git rm -q second.txt\ngit commit -qm 'drop second'\nexit 1\n",
        &["--task-timeout", "60"],
        &["second.txt"],
        &["f1.txt", "f2.txt", "shared.txt"],
    );
}

#[test]
fn worktree_cross4_resumed_task_that_renamed_a_file_is_merged() {
    resumed(
        "git mv second.txt moved.txt\ngit commit -qm 'move second'\nexit 1\n",
        &["--task-timeout", "60"],
        &["second.txt"],
        &["moved.txt", "f1.txt", "f2.txt"],
    );
}

#[test]
fn worktree_cross4_timed_out_task_that_deleted_a_file_is_resumed_and_merged() {
    // The deletion is left uncommitted when the task times out: qw saves it.
    resumed(
        "git rm -q src/keep.txt\necho t > t2.txt\nsleep 30\n",
        &["--task-timeout", "2"],
        &["src/keep.txt"],
        &["t2.txt", "f1.txt", "f2.txt", "second.txt"],
    );
}

/// No warning says a stash entry is gone / dropped (all were popped).
fn assert_no_gone_warning(text: &str) {
    for needle in [
        "dropped on purpose",
        "is gone from the stash",
        "git stash store",
    ] {
        assert!(!text.contains(needle), "{needle}: {text}");
    }
}

#[test]
fn worktree_cross4_stash_popped_then_refined_is_not_called_dropped() {
    // rev4 F11, the reproduction, plus a task that really drops an entry (still told).
    let r = Repo::new(&tasks(4));
    r.action(
        "1",
        "echo first >> shared.txt\ngit stash -q\ngit stash pop -q\nsed -i s/first/better/ shared.txt\n",
    );
    r.action(
        "2",
        "echo n > n2.txt\ngit add n2.txt\ngit stash -q\ngit stash pop -q\necho n2 > n2.txt\n",
    );
    r.action(
        "3",
        "printf 'a\\nb\\n' > n3.txt\ngit add n3.txt\ngit stash -q\ngit rebase -q main\ngit stash pop -q\ngit commit -qm n3\nprintf 'a\\nc\\n' > n3.txt\ngit commit -qam n3b\n",
    );
    r.action(
        "4",
        "echo junk >> src/keep.txt\ngit stash -q\ngit stash drop -q\necho 4 > f4.txt\n",
    );
    let out = r.auto(&["--parallel", "3"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = diag(&out);
    let told: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("dropped on purpose") || l.contains("is gone from the stash"))
        .collect();
    assert_eq!(told.len(), 1, "{text}");
    assert!(
        told[0].contains("task 4's agent stashed changes (src/keep.txt)"),
        "{text}"
    );
    assert!(r.git(&["show", "main:shared.txt"]).contains("better"));
    assert_eq!(r.git(&["show", "main:n2.txt"]).trim(), "n2");
    assert_eq!(r.git(&["show", "main:n3.txt"]), "a\nc\n");
    r.assert_no_process();
}

#[test]
fn worktree_cross4_a_siblings_stash_and_pop_is_not_told_to_another_task() {
    // Task 1 stashes while tasks 2 and 3 run; task 2's check lists the entry; task 1
    // then pops it into its own worktree; task 3's check used to warn that task 1's
    // entry "is gone from the stash since task 3 started".
    let r = Repo::new(&tasks(3));
    r.action(
        "1",
        &format!(
            "echo mine >> shared.txt\ngit stash -q\n{}while ! git -C \"$MAIN\" cat-file -e main:f2.txt 2>/dev/null; do sleep 0.05; done\ngit stash pop -q\necho more >> shared.txt\n{}",
            open_gate(&r, "1-stashed"),
            open_gate(&r, "1-popped")
        ),
    );
    r.action("2", &format!("{}echo 2 > f2.txt\n", gate(&r, "1-stashed")));
    r.action("3", &format!("{}echo 3 > f3.txt\n", gate(&r, "1-popped")));
    let out = r.auto(&["--parallel", "3"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_no_gone_warning(&diag(&out));
    let shared = r.git(&["show", "main:shared.txt"]);
    assert!(
        shared.contains("mine") && shared.contains("more"),
        "{shared}"
    );
    for f in ["f2.txt", "f3.txt"] {
        assert!(has(&r, "main", f), "{f}");
    }
    r.assert_no_process();
}

#[test]
fn worktree_cross4_reftable_stash_and_pop_after_the_move_is_caught() {
    // With reftable the stash's `reset: moving to HEAD` lands on the moved tip.
    let r = Repo::reftable(&tasks(2));
    moved_then(&r, "", "echo 2u > f2u.txt\ngit stash -q\ngit stash pop -q");
    let out = r.auto(&["--parallel", "2"]);
    assert_refused_then_continued(
        &r,
        &out,
        &["f1.txt", "second.txt", "shared.txt"],
        &["f2.txt", "f2u.txt"],
    );
}
