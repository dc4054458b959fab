//! The target side under a fourth hostile review (rev4) and what rev3 left: the user's
//! ordinary git on `main` while tasks run — a `git pull` or `git merge <branch>` that
//! fast-forwards, then an agent that syncs with `main` (F10); a merge of the branch qw
//! kept and named in a note (F7); two workflows in one repository (rev3 M9); every
//! printed `qw workflow-continue` naming its spec and every line told once (rev3 L4,
//! L6); a renamed target while the main worktree is detached. Each refusal's printed
//! commands are run as printed, then `workflow-continue`, which must be accepted.

use crate::support::moves::*;
use crate::support::*;
use crate::worktree::{HARNESS_TIMEOUT, Repo, bounded};

fn cont(r: &Repo, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["workflow-continue", "demo", "--retry-delay", "0.1"];
    args.extend_from_slice(extra);
    r.run(&args)
}

/// The whole output of a qw command.
fn text(out: &std::process::Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

/// No refusal anywhere: exit 0, no "moved", no record.
fn assert_no_refusal(r: &Repo, out: &std::process::Output) {
    assert_eq!(code(out), 0, "{}", diag(out));
    assert!(
        !text(out).contains("target branch `main` was moved"),
        "{}",
        diag(out)
    );
    assert!(!record(r).exists(), "a refusal was recorded");
}

// ---------------------------------------------------------------------------------
// F10: a fast-forward of `main` by the user, then an agent that syncs with `main`.
// ---------------------------------------------------------------------------------

/// While tasks 1 and 2 run, `user` moves `main` in the main worktree (from task 1's
/// script, as the user would from a shell); task 2's agent then runs `sync` (merges or
/// rebases onto `main`). Nothing is refused; every task's file and `extra` are merged;
/// no task ran twice.
fn user_moves_main_then_agent_syncs(r: &Repo, user: &str, sync: &str, extra: &[&str]) {
    r.action(
        "1",
        &format!(
            "{user}\n{}{}{}",
            open_gate(r, "user"),
            gate(r, "synced"),
            work("1")
        ),
    );
    r.action(
        "2",
        &format!(
            "{}{}{sync}\n{}",
            work("2"),
            gate(r, "user"),
            open_gate(r, "synced")
        ),
    );
    r.action("3", &work("3"));
    let out = r.auto(&["--parallel", "2"]);
    assert_no_refusal(r, &out);
    let mut all = files(3);
    all.extend(extra.iter().map(|s| (*s).to_owned()));
    r.assert_all_merged(&as_strs(&all));
    for i in ["1", "2", "3"] {
        assert_eq!(r.runs_of(i), 1, "task {i}");
        assert_eq!(r.f.task(i)["status"], "completed");
    }
}

/// rev4 F10's reproduction: `git pull --ff-only` brings a commit made elsewhere; task 2
/// then merges `main`.
#[test]
fn tgt4_pull_fast_forward_then_an_agents_merge_of_main_is_no_move() {
    let r = Repo::new(&tasks(3));
    let up = upstream_with_a_new_commit(&r);
    user_moves_main_then_agent_syncs(
        &r,
        "git -C \"$MAIN\" pull -q --ff-only",
        "git merge -q --no-edit main",
        &["upstream.txt"],
    );
    assert!(r.git_ok(&["merge-base", "--is-ancestor", &up, "main"]));
}

/// The same pull, and the agent rebases onto `main` instead.
#[test]
fn tgt4_pull_fast_forward_then_an_agents_rebase_on_main_is_no_move() {
    let r = Repo::new(&tasks(3));
    let up = upstream_with_a_new_commit(&r);
    user_moves_main_then_agent_syncs(
        &r,
        "git -C \"$MAIN\" pull -q --ff-only",
        "git rebase -q main",
        &["upstream.txt"],
    );
    assert!(r.git_ok(&["merge-base", "--is-ancestor", &up, "main"]));
}

/// The user's pull, then an agent that merges `main` and moves `main` onto its own
/// result (`update-ref` from its worktree): refused, and the way back keeps the pull on
/// `main` (back to the pulled commit, not to before it); followed, the continue is
/// accepted and finishes.
#[test]
fn tgt4_restore_hint_after_a_pull_and_an_agents_move_keeps_the_pull() {
    let r = Repo::new(&tasks(3));
    let up = upstream_with_a_new_commit(&r);
    r.action(
        "1",
        &format!(
            "{}{}{}{}",
            once(&r, "pull", "git -C \"$MAIN\" pull -q --ff-only"),
            open_gate(&r, "user"),
            gate(&r, "synced"),
            work("1")
        ),
    );
    r.action(
        "2",
        &format!(
            "{}{}{}{}",
            work("2"),
            gate(&r, "user"),
            once(
                &r,
                "move",
                "git merge -q --no-edit main\ngit update-ref refs/heads/main HEAD"
            ),
            open_gate(&r, "synced")
        ),
    );
    r.action("3", &work("3"));
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let line = refusal_line(&cont(&r, &[]));
    // What `main` holds when the hint is followed is kept first (rev5b F14).
    let printed = all_printed(&line);
    assert_eq!(printed.len(), 2, "{line}");
    assert!(
        printed[0].starts_with("git branch qw-kept/") && printed[0].ends_with(" main"),
        "{line}"
    );
    assert_eq!(
        printed[1],
        format!("git update-ref refs/heads/main {up}"),
        "{line}"
    );
    for c in all_printed(&line) {
        follow(&r, &c);
    }
    let out = cont(&r, &["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let mut all = files(3);
    all.push("upstream.txt".into());
    assert_merged_keeping_the_users_changes(&r, &as_strs(&all));
    assert!(r.git_ok(&["merge-base", "--is-ancestor", &up, "main"]));
}

/// The pull and the agent's merge of `main` with the refs in reftable tables (the main
/// worktree's HEAD log read through git).
#[test]
fn tgt4_reftable_pull_fast_forward_then_an_agents_merge_of_main_is_no_move() {
    let r = Repo::reftable(&tasks(3));
    assert!(r.root().join(".git/reftable").is_dir());
    let up = upstream_with_a_new_commit(&r);
    user_moves_main_then_agent_syncs(
        &r,
        "git -C \"$MAIN\" pull -q --ff-only",
        "git merge -q --no-edit main",
        &["upstream.txt"],
    );
    assert!(r.git_ok(&["merge-base", "--is-ancestor", &up, "main"]));
}

/// `git merge feature` that fast-forwards, `feature` committed in a clone of the user's
/// and fetched (not made in the main worktree, nor in a task's); task 2 merges `main`.
#[test]
fn tgt4_merge_of_a_feature_branch_that_fast_forwards_then_an_agents_merge_is_no_move() {
    let r = Repo::new(&tasks(3));
    // `feature` made in a clone of the user's, fetched: no commit of it is made in the
    // main worktree.
    let mine = r.aux.path().join("mine");
    let out = r.git_cmd(
        r.aux.path(),
        &[
            "clone",
            "-q",
            r.root().to_str().unwrap(),
            mine.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", diag(&out));
    let user = format!(
        "echo feat > {m}/feat.txt\ngit -C {m} add feat.txt\ngit -C {m} commit -qm feature\ngit -C \"$MAIN\" fetch -q {m} HEAD:feature\ngit -C \"$MAIN\" merge -q --ff-only feature",
        m = mine.display()
    );
    user_moves_main_then_agent_syncs(&r, &user, "git merge -q --no-edit main", &["feat.txt"]);
    let log = r.git(&["log", "-g", "--format=%gs", "HEAD"]);
    assert!(log.contains("merge feature: Fast-forward"), "{log}");
}

/// A guard of the class: an agent that fast-forwards `main` onto its own branch (its
/// worktree made the commit) is still refused, and the printed way back is accepted by
/// the next continue.
#[test]
fn tgt4_agents_fast_forward_of_main_onto_its_own_commit_is_still_refused() {
    let r = Repo::new(&tasks(3));
    r.action("1", &work("1"));
    r.action(
        "2",
        &format!(
            "{}{}",
            work("2"),
            once(&r, "ff", "git -C \"$MAIN\" merge -q --ff-only qw/demo/2")
        ),
    );
    r.action("3", &work("3"));
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let t2 = r.f.task("2");
    let err = t2["error"].as_str().unwrap().to_owned();
    assert!(
        err.contains("holds commits of task branch `qw/demo/2`")
            && err.contains("qw workflow-continue demo"),
        "{err}"
    );
    for c in all_printed(&err) {
        follow(&r, &c);
    }
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_merged_keeping_the_users_changes(&r, &as_strs(&files(3)));
}

// ---------------------------------------------------------------------------------
// F7: the user merges the `qw/<spec>/<id>@<sha>` branch qw named, while the run goes on.
// ---------------------------------------------------------------------------------

/// Shell, run as task 2's agent in its second run: merge (with `how`, in the main
/// worktree, as the user following qw's note while the run goes on) the kept branch
/// `qw/demo/2@…` qw made when it set the user's resolution aside, and write its name to
/// `kept-branch` (`none` when qw set nothing aside).
fn merge_kept_branch(r: &Repo, how: &str) -> String {
    let saved = r.aux.path().join("kept-branch");
    format!(
        "k=$(git -C \"$MAIN\" for-each-ref --format='%(refname:short)' 'refs/heads/qw/demo/2@*' | head -n 1)\nif [ -n \"$k\" ]; then echo \"$k\" > {s}; git -C \"$MAIN\" {how} \"$k\"; else echo none > {s}; fi\n",
        s = saved.display()
    )
}

/// rev4 F4's set-up (task 2 conflicts; the user resolves it on the task branch in the
/// main worktree), then `workflow-continue`, during which the user merges the kept
/// branch with `how`. Nothing is refused, the resolution is on `main`, every task's
/// file is merged.
fn kept_branch_merged_mid_run(how: &str) {
    let r = Repo::new(&tasks(3));
    r.action(
        "1",
        &once(&r, "s1", "echo one > shared.txt\ngit commit -qam s1"),
    );
    // Task 2 ends after task 1 is merged: its merge surely conflicts.
    r.action(
        "2",
        &format!(
            "if [ ! -e {flag} ]; then\ntouch {flag}\necho two > shared.txt\ngit commit -qam s2\nn=0; until [ \"$(git -C \"$MAIN\" show main:shared.txt)\" = one ] || [ $n -gt 1800 ]; do sleep 0.05; n=$((n+1)); done\nelse\n{}fi\n",
            merge_kept_branch(&r, how),
            flag = r.aux.path().join("done-s2").display()
        ),
    );
    r.action("3", &work("3"));
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(r.f.task("2")["outcome"], "merge_conflict");
    // The user resolves it on the task branch, in the main worktree.
    r.git(&["switch", "-q", "qw/demo/2"]);
    assert!(!r.git_ok(&["merge", "-q", "main"]));
    std::fs::write(r.root().join("shared.txt"), "resolved\n").unwrap();
    r.git(&["add", "shared.txt"]);
    r.git(&["commit", "-qm", "resolve on the task branch"]);
    r.git(&["switch", "-q", "main"]);
    let out = cont(&r, &["--parallel", "2"]);
    assert_no_refusal(&r, &out);
    // qw set the resolution aside on a kept branch, which the user merged mid-run (when
    // qw takes the user's resolution as the task's own, nothing is set aside to merge).
    let kept = std::fs::read_to_string(r.aux.path().join("kept-branch")).unwrap();
    assert!(
        kept.starts_with("qw/demo/2@")
            || (kept.trim() == "none" && !text(&out).contains("qw/demo/2@")),
        "{kept}"
    );
    assert_eq!(r.git(&["show", "main:shared.txt"]), "resolved\n");
    assert_merged_keeping_the_users_changes(&r, &["f3.txt"]);
    assert_eq!(r.f.task("2")["status"], "completed");
}

/// rev4 F7's reproduction: `git merge --no-edit` of the kept branch (here a fast-forward:
/// the resolution holds `main`).
#[test]
fn tgt4_users_merge_of_the_kept_branch_qw_named_mid_run_is_accepted() {
    kept_branch_merged_mid_run("merge -q --no-edit");
}

/// The same kept branch merged with `--no-ff` (a merge commit of the user's).
#[test]
fn tgt4_users_no_ff_merge_of_the_kept_branch_mid_run_is_accepted() {
    kept_branch_merged_mid_run("merge -q --no-ff --no-edit");
}

/// A guard: an agent that names a branch of its own commit like qw's kept branches
/// (`qw/demo/2@<sha7>`) and merges it into `main` is refused all the same (its running
/// worktree made the commit), and the printed way back is accepted by the next continue.
#[test]
fn tgt4_agents_own_commit_named_like_a_kept_branch_and_merged_is_refused() {
    let r = Repo::new(&tasks(3));
    r.action("1", &work("1"));
    r.action(
        "2",
        &work_then_once(
            &r,
            "2",
            "forge",
            "k=\"qw/demo/2@$(git rev-parse --short=7 HEAD)\"\ngit branch \"$k\" HEAD\ngit -C \"$MAIN\" merge -q --no-edit \"$k\""
        ),
    );
    r.action("3", &work("3"));
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let err = r.f.task("2")["error"].as_str().unwrap().to_owned();
    assert!(
        err.contains("holds commits of task branch `qw/demo/2`"),
        "{err}"
    );
    for c in all_printed(&err) {
        follow(&r, &c);
    }
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_merged_keeping_the_users_changes(&r, &as_strs(&files(3)));
}

// ---------------------------------------------------------------------------------
// rev3 M9: two workflows in one repository.
// ---------------------------------------------------------------------------------

/// Workflow `other` runs; once its task 2 committed (`obad.txt`), workflow `demo` runs
/// to its end, where `demo1` is task 1's script after that commit; `other`'s tasks end
/// only then (task 2 failing). `(demo's output, other's output)`.
fn two_workflows(r: &Repo, demo1: &str) -> (std::process::Output, std::process::Output) {
    add_spec(r, "other", 2);
    r.action("demo-1", &format!("{}{demo1}", work("1")));
    r.action("demo-2", &work("2"));
    r.action(
        "other-1",
        &format!("echo o1 > o1.txt\n{}", gate(r, "demo-done")),
    );
    r.action(
        "other-2",
        &format!(
            "echo bad > obad.txt\ngit add obad.txt\ngit commit -qm obad\n{}{}exit 1",
            open_gate(r, "obad"),
            gate(r, "demo-done")
        ),
    );
    let flag = r.aux.path().join("gate-obad");
    let done = r.aux.path().join("gate-demo-done");
    std::thread::scope(|s| {
        let other = s.spawn(|| bounded(auto_spec(r, "other", "2"), HARNESS_TIMEOUT));
        let demo = s.spawn(|| {
            assert!(
                wait_until(std::time::Duration::from_secs(90), || flag.exists()),
                "other's task 2 never committed"
            );
            let out = bounded(auto_spec(r, "demo", "2"), HARNESS_TIMEOUT);
            std::fs::write(&done, "").unwrap();
            out
        });
        (demo.join().unwrap(), other.join().unwrap())
    })
}

/// rev3 M9's reproduction: an agent of `demo` merges `other`'s unmerged task branch into
/// its own. `demo` refuses that result (another workflow's task, named); `other` is not
/// refused; `obad.txt` never reaches `main`; nothing of `demo`'s
/// completed merges is taken off; `workflow-continue demo` then finishes `demo`.
#[test]
fn tgt4_agent_merging_another_workflows_task_branch_is_refused_in_its_own_workflow() {
    let r = Repo::new(&tasks(2));
    let (demo, other) = two_workflows(&r, &once(&r, "take", "git merge -q --no-edit qw/other/2"));
    assert_eq!(code(&demo), 1, "demo: {}", diag(&demo));
    let t1 = r.f.task("1");
    assert_eq!(t1["outcome"], "workspace_error", "{t1}");
    let err = t1["error"].as_str().unwrap().to_owned();
    assert!(
        err.contains("brings in commits of another task")
            && err.contains("task branch `qw/other/2`"),
        "{err}"
    );
    assert_eq!(r.f.task("2")["status"], "completed");
    // `other`: task 1 merged, task 2 failed by its agent; no move refused.
    assert_eq!(code(&other), 1, "other: {}", diag(&other));
    assert!(
        !text(&other).contains("target branch `main` was moved"),
        "{}",
        diag(&other)
    );
    assert_eq!(r.task_in("other", "1")["status"], "completed");
    assert_eq!(r.task_in("other", "2")["outcome"], "agent_error");
    assert!(!r.root().join(".git/qw-refused-moves/other").exists());
    assert!(!r.git_ok(&["cat-file", "-e", "main:obad.txt"]));
    assert!(r.git_ok(&["cat-file", "-e", "main:o1.txt"]));
    assert!(r.git_ok(&["cat-file", "-e", "main:f2.txt"]));
    // demo's way on: the task run again from the target (the printed way that keeps
    // its own commits is `owned.rs`/`cross.rs`'s, tested with them).
    r.git(&["branch", "-D", "qw/demo/1"]);
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt", "o1.txt"]);
    assert!(!r.git_ok(&["cat-file", "-e", "main:obad.txt"]));
}

/// The other shape: `demo`'s agent merges `other`'s unmerged task branch into `main`
/// itself, after qw merged `demo`'s task 2. Both workflows see the move (it brings in a
/// task's commits, whatever the spec); the printed way back takes nothing qw merged off
/// `main` (task 2's merge stays), and each workflow's `workflow-continue` is accepted
/// after it.
#[test]
fn tgt4_agent_merging_another_workflows_task_into_main_is_a_move_for_both() {
    let r = Repo::new(&tasks(2));
    let (demo, other) = two_workflows(
        &r,
        &once(
            &r,
            "into-main",
            // Until qw's merge of task 2 is over: git moves `main` before it removes
            // MERGE_HEAD, and a merge started in between is refused.
            "n=0; until { git -C \"$MAIN\" cat-file -e main:f2.txt && ! git -C \"$MAIN\" rev-parse -q --verify MERGE_HEAD; } >/dev/null 2>&1 || [ $n -gt 1800 ]; do sleep 0.05; n=$((n+1)); done\ngit -C \"$MAIN\" merge -q --no-edit qw/other/2",
        ),
    );
    assert_eq!(code(&demo), 1, "demo: {}", diag(&demo));
    assert_eq!(code(&other), 1, "other: {}", diag(&other));
    assert_eq!(r.f.task("2")["status"], "completed");
    let demo_err = r.f.task("1")["error"].as_str().unwrap().to_owned();
    let other_err = r.task_in("other", "1")["error"]
        .as_str()
        .unwrap()
        .to_owned();
    for err in [&demo_err, &other_err] {
        assert!(
            err.contains("holds commits of task branch `qw/other/2`"),
            "{err}"
        );
    }
    assert!(demo_err.contains("qw workflow-continue demo"), "{demo_err}");
    assert!(
        other_err.contains("qw workflow-continue other"),
        "{other_err}"
    );
    for c in all_printed(&demo_err) {
        follow(&r, &c);
    }
    // qw's merge of task 2, made before the move, is still on `main`.
    assert!(r.git_ok(&["cat-file", "-e", "main:f2.txt"]));
    assert!(!r.git_ok(&["cat-file", "-e", "main:obad.txt"]));
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let mut args = vec!["workflow-continue", "other", "--retry-delay", "0.1"];
    args.extend(["--parallel", "2"]);
    let out = r.run(&args);
    // Task 2 of `other` fails again by its own agent; task 1 is merged.
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(
        !text(&out).contains("target branch `main` was moved"),
        "{}",
        diag(&out)
    );
    assert_eq!(r.task_in("other", "1")["status"], "completed");
    assert_eq!(r.task_in("other", "2")["outcome"], "agent_error");
    for f in ["f1.txt", "f2.txt", "o1.txt"] {
        assert!(r.git_ok(&["cat-file", "-e", &format!("main:{f}")]), "{f}");
    }
    assert!(!r.git_ok(&["cat-file", "-e", "main:obad.txt"]));
}

/// A guard of the other direction: workflow `other`'s task conflicted (its run over,
/// its branch kept for a merge by hand); the user merges it by hand, as `other` said,
/// while `demo` runs. `demo` now looks at every workflow's task branches, and still
/// takes that merge as the user's: nothing is refused, both are on `main`.
#[test]
fn tgt4_users_merge_by_hand_of_another_workflows_conflicted_task_is_no_move() {
    let r = Repo::new(&tasks(2));
    add_spec(&r, "other", 1);
    r.action(
        "other-1",
        "echo one > shared.txt\ngit commit -qam s1\necho two > \"$MAIN/shared.txt\"\ngit -C \"$MAIN\" commit -qam user-two\n",
    );
    let out = bounded(auto_spec(&r, "other", "2"), HARNESS_TIMEOUT);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(r.task_in("other", "1")["outcome"], "merge_conflict");
    // A user reads `other`'s line before following it: a merge in the very second qw
    // left the branch is taken as made while its task ran (reflog times are whole
    // seconds; see worktree_fix5o's F14 tests for that side).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // demo's task 1 is where the user merges `qw/other/1` by hand and resolves it.
    r.action(
        "demo-1",
        &work_then_once(
            &r,
            "1",
            "by-hand",
            "git -C \"$MAIN\" merge -q qw/other/1 || true\necho both > \"$MAIN/shared.txt\"\ngit -C \"$MAIN\" add shared.txt\ngit -C \"$MAIN\" commit -qm resolved --no-edit"
        ),
    );
    r.action("demo-2", &work("2"));
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_no_refusal(&r, &out);
    r.assert_all_merged(&as_strs(&files(2)));
    assert_eq!(r.git(&["show", "main:shared.txt"]), "both\n");
}

// ---------------------------------------------------------------------------------
// rev3 L6: a line is told once.
// ---------------------------------------------------------------------------------

/// A repository the agent made in its worktree keeps the worktree: that line is printed
/// once, not once as `qw: warning:` and again as the run's note.
#[test]
fn tgt4_kept_worktree_line_is_told_once() {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        &format!(
            "{}git init -q inner\necho i > inner/i.txt\ngit -C inner add i.txt\ngit -C inner commit -qm inner-work\n",
            work("1")
        ),
    );
    r.action("2", &work("2"));
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let all = text(&out);
    let lines: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("kept the worktree"))
        .collect();
    assert_eq!(lines.len(), 1, "{all}");
    assert!(!lines[0].contains("warning: task 1"), "{all}");
}

// ---------------------------------------------------------------------------------
// A renamed target while the main worktree is detached (the last note's leftover).
// ---------------------------------------------------------------------------------

/// Task 2 (of 3) runs `mv` once after its work: refused, told as a rename; the printed
/// commands followed, `workflow-continue` finishes with everything merged. The line.
fn renamed_and_detached(r: &Repo, mv: &str) -> String {
    r.action("1", &work("1"));
    r.action("2", &format!("{}{}", work("2"), once(r, "move", mv)));
    r.action("3", &work("3"));
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let err = r.f.task("2")["error"].as_str().unwrap().to_owned();
    assert!(
        err.contains("renamed to `other`") && err.contains("detached HEAD"),
        "{err}"
    );
    assert_eq!(r.runs_of("3"), 0, "a task started on a moved target");
    for c in all_printed(&err) {
        follow(r, &c);
    }
    let out = cont(r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_merged_keeping_the_users_changes(r, &as_strs(&files(3)));
    assert!(!r.git_ok(&["rev-parse", "-q", "--verify", "refs/heads/other"]));
    err
}

#[test]
fn tgt4_target_renamed_while_the_main_worktree_is_detached_is_a_rename() {
    let r = Repo::new(&tasks(3));
    let err = renamed_and_detached(
        &r,
        "git -C \"$MAIN\" switch -q --detach\ngit branch -m main other",
    );
    assert_eq!(
        all_printed(&err),
        vec![
            "git branch -m other main".to_owned(),
            "git switch main".to_owned()
        ],
        "{err}"
    );
}

/// No reflog to say it was a rename (`core.logAllRefUpdates=false`, the log gone), and a
/// commit of the user's on the detached HEAD: "renamed or deleted", the commit kept on a
/// branch first.
#[test]
fn tgt4_target_renamed_with_no_reflog_and_a_commit_on_the_detached_head_is_kept() {
    let r = Repo::new(&tasks(3));
    let err = renamed_and_detached(
        &r,
        "git -C \"$MAIN\" config core.logAllRefUpdates false\nrm -f \"$(git rev-parse --git-common-dir)/logs/refs/heads/main\"\ngit -C \"$MAIN\" switch -q --detach\ngit branch -m main other\necho u > \"$MAIN/user.txt\"\ngit -C \"$MAIN\" add user.txt\ngit -C \"$MAIN\" commit -qm user",
    );
    assert!(err.contains("renamed to `other` or deleted"), "{err}");
    let user = sha(&r, ":/^user");
    let cmds = all_printed(&err);
    assert_eq!(
        cmds[0],
        format!("git branch qw-kept/{} {user}", &user[..10]),
        "{err}"
    );
    assert_kept(&r, &user);
}

// ---------------------------------------------------------------------------------
// rev3 L4: every printed `qw workflow-continue` names its spec.
// ---------------------------------------------------------------------------------

/// A worktree moved by its agent (`git worktree move`) and one whose files and `.git`
/// its agent deleted: each task's line names `qw workflow-continue demo`, and running
/// it finishes the workflow.
#[test]
fn tgt4_moved_or_deleted_worktree_lines_name_the_spec_to_continue() {
    let r = Repo::new(&tasks(3));
    let moved = r.aux.path().join("moved1");
    r.action(
        "1",
        &work_then_once(
            &r,
            "1",
            "mv1",
            &format!(
                "git worktree unlock \"$PWD\"\ngit worktree move \"$PWD\" {}",
                moved.display()
            ),
        ),
    );
    r.action(
        "2",
        &format!("{}{}", once(&r, "wipe2", "rm -rf -- * .[!.]*"), work("2")),
    );
    r.action("3", &work("3"));
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    for (i, what) in [
        ("1", "goes on from that branch"),
        ("2", "runs the task again"),
    ] {
        let t = r.f.task(i);
        assert_eq!(t["outcome"], "workspace_error", "{t}");
        let err = t["error"].as_str().unwrap();
        assert!(
            err.contains(&format!("`qw workflow-continue demo` {what}")),
            "{err}"
        );
    }
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_merged_keeping_the_users_changes(&r, &as_strs(&files(3)));
}
