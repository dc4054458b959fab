//! A task branch moved by the user or by the task's own git is the task's (rev4 F3, F4,
//! F5, F9; rev3 M1, M1b): qw's own hint that rewrites a task branch, followed, is
//! accepted by the next `workflow-continue`; a conflict resolved on the task branch in
//! the main worktree is resumed and merged; a task's own commits after qw was killed and
//! its worktree removed by hand are resumed; branches an older qw left (no record) are
//! adopted when their reflog shows qw made them.
//!
//! Each test asserts that nothing is lost, that nothing is set aside as foreign (no
//! `qw/demo/<id>@<sha>` branch) where the move was the user's, that printed commands
//! are run as printed, and that no process is left.

use std::time::Duration;

use crate::support::moves::{
    assert_kept, follow, follow_in_sh, gate, once, open_gate, printed, sha, tasks, work,
};
use crate::support::*;
use crate::worktree::Repo;

/// Whether `rev` exists and holds `file` (false while the branch does not exist yet).
fn has(r: &Repo, rev: &str, file: &str) -> bool {
    r.git_ok(&["cat-file", "-e", &format!("{rev}:{file}")])
}

fn evidence(r: &Repo, id: &str) -> String {
    r.f.task(id)["evidence"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// No branch of spec `demo` was set aside as foreign.
fn assert_nothing_set_aside(r: &Repo, text: &str) {
    let at: Vec<String> = r
        .branches()
        .into_iter()
        .filter(|b| b.contains('@'))
        .collect();
    assert!(at.is_empty(), "{at:?}: {text}");
    assert!(!text.contains("not task"), "{text}");
}

fn cont(r: &Repo) -> std::process::Output {
    let cmd = r.agent_cmd();
    r.run(&[
        "workflow-continue",
        "demo",
        "--retry-delay",
        "0.1",
        "--attempts",
        "1",
        "--agent-cmd",
        &cmd,
    ])
}

/// Task 2 commits bad2.txt (and task 3 bad3.txt when `three`), then fails once task 1
/// is done; task 1 commits f1.txt, then `bring`s their work into its result (once: a
/// rerun does nothing). Run: task 1 is refused for bringing in another task's commits.
fn brought_in(three: bool, bring: &str) -> Repo {
    let n = if three { 3 } else { 2 };
    let r = Repo::new(&tasks(n));
    let waits: String = (2..=n)
        .map(|i| gate(&r, &format!("{i}-committed")))
        .collect();
    // A rerun from the target (its branch deleted) does the plain work again.
    let flag = r.aux.path().join("done-bring1");
    r.action(
        "1",
        &format!(
            "if [ ! -e {f} ]; then\ntouch {f}\n{waits}echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1\n{bring}\n{}else\n[ -e f1.txt ] || {{ echo 1 > f1.txt; git add f1.txt; git commit -qm f1; }}\nfi\n",
            open_gate(&r, "1-done"),
            f = flag.display()
        ),
    );
    for i in 2..=n {
        r.action(
            &i.to_string(),
            &format!(
                "if [ ! -e bad{i}.txt ]; then echo bad > bad{i}.txt; git add bad{i}.txt; git commit -qm bad{i}; fi\n{}{}exit 1\n",
                open_gate(&r, &format!("{i}-committed")),
                gate(&r, "1-done")
            ),
        );
    }
    let out = r.auto(&["--parallel", &n.to_string()]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(
        r.f.task("1")["outcome"],
        "workspace_error",
        "{}",
        diag(&out)
    );
    let ev = evidence(&r, "1");
    assert!(ev.contains("brings in commits of another task"), "{ev}");
    assert!(!has(&r, "main", "f1.txt"));
    r
}

/// After the user's fix of task 1's branch: `workflow-continue` takes the branch as
/// task 1's (no set-aside, no second refusal), merges f1.txt and none of the failed
/// siblings' files; and a second continue does not loop on task 1.
fn assert_fix_taken(r: &Repo, siblings: &[&str]) {
    let out = cont(r);
    let text = diag(&out);
    assert_eq!(r.f.task("1")["status"], "completed", "{text}");
    assert!(text.contains("taken as task 1's"), "{text}");
    assert!(has(r, "main", "f1.txt"), "{text}");
    for s in siblings {
        assert!(!has(r, "main", s), "{s} reached main: {text}");
        // The failed sibling's work is still on its branch.
        let b = format!("qw/demo/{}", &s[3..4]);
        assert!(has(r, &b, s), "{b}: {text}");
    }
    assert_nothing_set_aside(r, &text);
    assert!(!text.contains("brings in commits"), "{text}");
    assert_eq!(
        r.git(&["symbolic-ref", "--short", "HEAD"]).trim(),
        "main",
        "{text}"
    );
    r.assert_no_process();
}

#[test]
fn worktree_own4_printed_hint_keeps_only_its_own_commits_and_is_accepted() {
    // rev4 F3 / rev3 M1: the agent rebased onto a sibling's branch. The printed
    // command, run as printed with the main worktree dirty, neither switches nor touches
    // the main worktree, and the next continue takes its result.
    let r = brought_in(false, "git rebase -q qw/demo/2");
    let ev = evidence(&r, "1");
    let cmd = printed(&ev, "git worktree add");
    assert!(ev.contains("qw workflow-continue demo"), "{ev}");
    std::fs::write(r.root().join("shared.txt"), "user's edit\n").unwrap();
    follow_in_sh(&r, &cmd);
    assert_eq!(r.read("shared.txt"), "user's edit\n");
    assert_eq!(r.git(&["symbolic-ref", "--short", "HEAD"]).trim(), "main");
    assert!(has(&r, "qw/demo/1", "f1.txt") && !has(&r, "qw/demo/1", "bad2.txt"));
    assert_eq!(r.registered_worktrees(), 1, "{cmd}");
    r.git(&["checkout", "-q", "--", "shared.txt"]);
    assert_fix_taken(&r, &["bad2.txt"]);
}

#[test]
fn worktree_own4_printed_hint_with_two_siblings_merged_keeps_neither() {
    // rev3 M1b: an octopus merge of two siblings; the old hint kept one of them.
    let r = brought_in(true, "git merge -q --no-edit qw/demo/2 qw/demo/3");
    let ev = evidence(&r, "1");
    assert!(
        ev.contains("`qw/demo/2`") && ev.contains("`qw/demo/3`"),
        "{ev}"
    );
    follow_in_sh(&r, &printed(&ev, "git worktree add"));
    for s in ["bad2.txt", "bad3.txt"] {
        assert!(!has(&r, "qw/demo/1", s), "{s}");
    }
    assert_fix_taken(&r, &["bad2.txt", "bad3.txt"]);
}

#[test]
fn worktree_own4_users_rebase_of_the_task_branch_in_the_main_worktree_is_accepted() {
    // rev4 F3 as reproduced: the old hint (`git rebase --onto main <sib> qw/demo/1` in
    // the main worktree), then back to main.
    let r = brought_in(false, "git rebase -q qw/demo/2");
    let bad2 = sha(&r, "qw/demo/2");
    r.git(&["rebase", "-q", "--onto", "main", &bad2, "qw/demo/1"]);
    r.git(&["switch", "-q", "main"]);
    assert_fix_taken(&r, &["bad2.txt"]);
}

#[test]
fn worktree_own4_users_branch_f_to_a_cherry_pick_is_accepted() {
    // rev4 F3, `git branch -f` shape: the user remakes the branch on main by hand.
    let r = brought_in(false, "git rebase -q qw/demo/2");
    let f1 = sha(&r, "qw/demo/1");
    r.git(&["switch", "-q", "--detach", "main"]);
    r.git(&["cherry-pick", &f1]);
    r.git(&["branch", "-f", "qw/demo/1", "HEAD"]);
    r.git(&["switch", "-q", "main"]);
    assert_fix_taken(&r, &["bad2.txt"]);
}

#[test]
fn worktree_own4_main_worktree_left_on_the_task_branch_is_told_to_switch_back() {
    // rev3 M1: the rebase left the main worktree on `qw/demo/1`; the refusal names
    // `git switch main` (not a new branch), and followed, the run goes on.
    let r = brought_in(false, "git rebase -q qw/demo/2");
    let bad2 = sha(&r, "qw/demo/2");
    r.git(&["rebase", "-q", "--onto", "main", &bad2, "qw/demo/1"]);
    let out = cont(&r);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    let text = diag(&out);
    let fix = printed(&text, "git switch");
    assert_eq!(fix, "git switch main", "{text}");
    follow(&r, &fix);
    assert_fix_taken(&r, &["bad2.txt"]);
}

#[test]
fn worktree_own4_printed_hint_without_own_commits_reruns_the_task() {
    // The agent took the sibling's branch over (`reset --hard` onto it): its result
    // holds no commit of its own, so the way on deletes the branch and the task runs
    // again from the target; the f1 commit it left behind stays kept.
    let r = brought_in(false, "git reset -q --hard qw/demo/2");
    let ev = evidence(&r, "1");
    let cmd = printed(&ev, "git branch -D");
    assert!(ev.contains("qw workflow-continue demo"), "{ev}");
    follow(&r, &cmd);
    let out = cont(&r);
    let text = diag(&out);
    assert_eq!(r.f.task("1")["status"], "completed", "{text}");
    assert!(has(&r, "main", "f1.txt"), "{text}");
    assert!(!has(&r, "main", "bad2.txt"), "{text}");
    assert!(has(&r, "qw/demo/2", "bad2.txt"), "{text}");
    // The first run's f1 commit, left behind by the reset, is on a branch.
    let dangling = r.git(&["fsck", "--no-reflogs", "--no-progress", "--dangling"]);
    for c in dangling
        .lines()
        .filter_map(|l| l.strip_prefix("dangling commit "))
    {
        let subject = r.git(&["log", "-1", "--format=%s", c.trim()]);
        assert_ne!(subject.trim(), "f1", "{dangling}: {:?}", r.branches());
    }
    r.assert_no_process();
}

/// Tasks 1 and 2 change shared.txt: task 2 (the later) conflicts; run.
fn conflicted() -> Repo {
    conflicted_in(Repo::new(&tasks(3)))
}

fn conflicted_in(r: Repo) -> Repo {
    r.action(
        "1",
        &once(
            &r,
            "s1",
            &format!(
                "echo one > shared.txt\ngit commit -qam s1\n{}",
                open_gate(&r, "1")
            ),
        ),
    );
    r.action(
        "2",
        &once(
            &r,
            "s2",
            &format!(
                "{}sleep 0.3\necho two > shared.txt\ngit commit -qam s2\n",
                gate(&r, "1")
            ),
        ),
    );
    r.action("3", &work("3"));
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(r.f.task("2")["outcome"], "merge_conflict", "{}", diag(&out));
    assert_eq!(r.read("shared.txt"), "one\n");
    r
}

/// The resolution on the task branch is resumed and merged, said, nothing set aside.
fn assert_resolution_merged(r: &Repo) {
    let out = cont(r);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(text.contains("taken as task 2's"), "{text}");
    assert_eq!(r.read("shared.txt"), "resolved\n", "{text}");
    assert_nothing_set_aside(r, &text);
    r.assert_all_merged(&["f3.txt"]);
}

#[test]
fn worktree_own4_conflict_resolved_by_merging_on_the_task_branch_is_merged() {
    // rev4 F4 as reproduced.
    let r = conflicted();
    r.git(&["switch", "-q", "qw/demo/2"]);
    assert!(!r.git_ok(&["merge", "-q", "main"]));
    std::fs::write(r.root().join("shared.txt"), "resolved\n").unwrap();
    r.git(&["add", "shared.txt"]);
    r.git(&["commit", "-qm", "resolve on the task branch"]);
    r.git(&["switch", "-q", "main"]);
    assert_resolution_merged(&r);
}

#[test]
fn worktree_own4_conflict_resolved_on_the_task_branch_is_merged_with_reftable() {
    // rev4 F4 with the refs in reftable tables: the logs are read through git.
    let r = Repo::reftable(&tasks(3));
    assert_eq!(
        r.git(&["rev-parse", "--show-ref-format"]).trim(),
        "reftable"
    );
    let r = conflicted_in(r);
    r.git(&["switch", "-q", "qw/demo/2"]);
    assert!(!r.git_ok(&["merge", "-q", "main"]));
    std::fs::write(r.root().join("shared.txt"), "resolved\n").unwrap();
    r.git(&["commit", "-qam", "resolve on the task branch"]);
    r.git(&["switch", "-q", "main"]);
    assert_resolution_merged(&r);
}

#[test]
fn worktree_own4_descendant_made_nowhere_is_still_set_aside() {
    // The other side of the rule: a commit on top of qw's tip that no log says was
    // made (`commit-tree` + `update-ref`, an agent's way round) is not the task's.
    let r = conflicted();
    let tree = r.git(&["rev-parse", "main^{tree}"]);
    let tip = sha(&r, "qw/demo/2");
    let out = r.git_cmd(
        r.root(),
        &["commit-tree", tree.trim(), "-p", &tip, "-m", "sneaked"],
    );
    assert!(out.status.success(), "{}", diag(&out));
    let sneaked = stdout(&out).trim().to_owned();
    r.git(&["update-ref", "refs/heads/qw/demo/2", &sneaked]);
    let out = cont(&r);
    let text = diag(&out);
    assert!(text.contains("moved since qw left it"), "{text}");
    assert!(text.contains("back where qw left it"), "{text}");
    assert!(!text.contains("taken as task 2's"), "{text}");
    assert_eq!(r.f.task("2")["outcome"], "merge_conflict", "{text}");
    assert_kept(&r, &sneaked);
    assert!(!r.git_ok(&["merge-base", "--is-ancestor", &sneaked, "main"]));
    r.assert_no_process();
}

#[test]
fn worktree_own4_conflict_resolved_by_rebasing_the_task_branch_is_merged() {
    // rev4 F4, another shape: the task branch rebased onto main, the conflict resolved
    // in the rebase (`rebase --continue`), from the main worktree.
    let r = conflicted();
    let out = r.git_cmd(
        r.root(),
        &["rebase", "-q", "--autostash", "main", "qw/demo/2"],
    );
    assert!(!out.status.success(), "{}", diag(&out));
    assert!(diag(&out).contains("CONFLICT"), "{}", diag(&out));
    std::fs::write(r.root().join("shared.txt"), "resolved\n").unwrap();
    r.git(&["add", "shared.txt"]);
    let out = r.git_cmd(
        r.root(),
        &["-c", "core.editor=true", "rebase", "--continue"],
    );
    assert!(out.status.success(), "{}", diag(&out));
    r.git(&["switch", "-q", "main"]);
    assert_resolution_merged(&r);
}

/// Task 1 commits c1.txt and waits; qw is SIGKILLed, the agent let go; `remove` then
/// deletes task 1's worktree by hand. Continue resumes task 1 from its own commit.
fn killed_then_removed(remove: &dyn Fn(&Repo, &std::path::Path)) {
    let r = Repo::new(&tasks(2));
    let hold = r.aux.path().join("hold");
    std::fs::write(&hold, "").unwrap();
    r.action(
        "1",
        &format!(
            "if [ ! -e c1.txt ]; then echo c > c1.txt; git add c1.txt; git commit -qm 'c1 work'; fi\nwhile [ -e {} ]; do sleep 0.05; done\n{}",
            hold.display(),
            work("1")
        ),
    );
    r.action("2", &work("2"));
    let mut child = r.start_two_at_once("120");
    assert!(
        wait_until(Duration::from_secs(60), || has(&r, "qw/demo/1", "c1.txt")),
        "task 1 never committed: {:?}",
        r.runs()
    );
    let wt1 = r.container().unwrap().join("demo-1");
    sigkill(&mut child);
    std::fs::remove_file(&hold).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || pids_with_env(
            "QW_TEST_MARKER",
            &r.f.guard.0
        )
        .is_empty()),
        "the agent did not end"
    );
    remove(&r, &wt1);
    assert!(!wt1.exists());
    let out = cont(&r);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(text.contains("taken as task 1's"), "{text}");
    assert_nothing_set_aside(&r, &text);
    r.assert_all_merged(&["c1.txt", "f1.txt", "f2.txt"]);
}

#[test]
fn worktree_own4_own_commits_after_a_kill_and_a_worktree_remove_are_resumed() {
    // rev4 F9 as reproduced: `git worktree unlock` + `remove --force`.
    killed_then_removed(&|r, w| {
        let p = w.display().to_string();
        r.git(&["worktree", "unlock", &p]);
        r.git(&["worktree", "remove", "--force", &p]);
    });
}

#[test]
fn worktree_own4_own_commits_after_a_kill_and_rm_rf_plus_prune_are_resumed() {
    // rev4 F9, another shape: the directory deleted, then git told to forget it.
    killed_then_removed(&|r, w| {
        let p = w.display().to_string();
        std::fs::remove_dir_all(w).unwrap();
        r.git(&["worktree", "unlock", &p]);
        r.git(&["worktree", "prune"]);
    });
}

#[test]
fn worktree_own4_branch_an_older_qw_left_is_resumed() {
    // rev4 F5 as reproduced: no `qw-left/` record at all (a repository an older qw ran
    // in): the branch its reflog says qw made is resumed, its commit merged.
    let r = Repo::new(&tasks(3));
    r.action("1", &work("1"));
    r.action(
        "2",
        &format!(
            "{}{}",
            work("2"),
            once(&r, "fail2", "echo 2u > f2u.txt\nexit 1")
        ),
    );
    r.action("3", "exit 1\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    std::fs::remove_dir_all(r.root().join(".git/qw-left")).unwrap();
    // Task 3's branch was made by someone else, with a commit of its own.
    r.git(&["branch", "qw/demo/3", "main"]);
    r.git(&["switch", "-q", "--detach", "main"]);
    std::fs::write(r.root().join("x3.txt"), "x\n").unwrap();
    r.git(&["add", "x3.txt"]);
    r.git(&["commit", "-qm", "x3"]);
    let x3 = sha(&r, "HEAD");
    r.git(&["update-ref", "refs/heads/qw/demo/3", &x3]);
    r.git(&["switch", "-q", "main"]);
    r.action("3", &work("3"));
    let out = cont(&r);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(text.contains("taken as task 2's"), "{text}");
    r.assert_all_merged(&["f1.txt", "f2.txt", "f2u.txt", "f3.txt"]);
    // The other is set aside, said as made before this qw's record or by someone else.
    assert!(text.contains("made by someone other than qw"), "{text}");
    assert!(!has(&r, "main", "x3.txt"), "{text}");
    assert_kept(&r, &x3);
}
