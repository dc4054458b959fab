//! rev5b's findings on worktree isolation (F1, F14, F7, F3): forged task branches and
//! worktrees made during a run are never taken as the user's (F1); a printed put-back
//! never drops what lands on the target after it was printed, and a second workflow
//! refuses an agent's move too (F14); another workflow's merge is told by qw's own
//! record, not by a subject line (F7); `workflow-reset --hard` sets the old tasks'
//! branches aside (F3).
//!
//! Each test is the reproduction of rev5b (or another shape of it) and asserts that
//! the agent's work does not reach `main`, that it is kept on a named branch, and that
//! nothing of the user's is lost.

use crate::support::moves::{
    add_spec, all_printed, assert_kept, auto_spec, cont, cont_spec, follow, gate, has, once,
    open_gate, printed, sha, tasks, work, work_then_once,
};
use crate::support::*;
use crate::worktree::{HARNESS_TIMEOUT, Repo, bounded};

/// The branches set aside as not a task's (`qw/demo/<id>@<sha>`).
fn set_aside(r: &Repo) -> Vec<String> {
    r.branches()
        .into_iter()
        .filter(|b| b.contains('@'))
        .collect()
}

/// The commit whose subject is `subject` (on any ref, or only in a reflog).
fn commit_named(r: &Repo, subject: &str) -> String {
    let out = r.git(&[
        "log",
        "--all",
        "--reflog",
        "-1",
        "--format=%H",
        "--fixed-strings",
        &format!("--grep={subject}"),
    ]);
    assert!(!out.trim().is_empty(), "no commit `{subject}`");
    out.trim().to_owned()
}

/// Task 1's agent does its plain work and, once, `plant` while task 2 runs (task 2
/// waits for it); tasks 2 and 3 do their plain work. The run, two tasks at once.
fn planted_while_2_runs(r: &Repo, plant: &str) -> std::process::Output {
    r.action(
        "1",
        &work_then_once(r, "1", "plant", &format!("{}{plant}", gate(r, "2-runs"))),
    );
    r.action(
        "2",
        &format!("{}{}sleep 1.5\n", open_gate(r, "2-runs"), work("2")),
    );
    r.action("3", &work("3"));
    r.auto(&["--parallel", "2"])
}

// --- F1: a task branch planted by another task's agent is never adopted -------------

/// rev5b F1 as reproduced: task 1's agent makes a worktree of its own, commits there
/// and plants `qw/demo/3` at that commit by its full id (`branch: Created from
/// <full sha>`, the line an older qw's branch has). Task 3 must not adopt it.
#[test]
fn worktree_fix5o_f1_planted_branch_from_an_agents_worktree_is_not_adopted() {
    let r = Repo::new(&tasks(3));
    let evil = r.aux.path().join("evil");
    let out = planted_while_2_runs(
        &r,
        &format!(
            "git worktree add -q --detach {e} main\ncd {e}\necho evil > evil.txt\ngit add evil.txt\ngit commit -qm evil\ngit branch qw/demo/3 $(git rev-parse HEAD)",
            e = evil.display()
        ),
    );
    let text = diag(&out);
    let e = commit_named(&r, "evil");
    assert!(
        !has(&r, "main", "evil.txt"),
        "the planted commit was merged: {text}"
    );
    assert!(!text.contains("left by a qw before"), "{text}");
    assert!(!text.contains("taken as task 3's"), "{text}");
    assert!(
        set_aside(&r).iter().any(|b| b.starts_with("qw/demo/3@")),
        "{:?}: {text}",
        r.branches()
    );
    assert_kept(&r, &e);
    for f in ["f1.txt", "f2.txt", "f3.txt"] {
        assert!(has(&r, "main", f), "{f}: {text}");
    }
}

/// rev5b F1c: the agent's `git worktree add -b qw/demo/3 <dir> <full sha>` and a commit
/// there; the refusal's hint (`switch --detach`) followed, then `workflow-continue`:
/// "kept apart, not merged" holds.
#[test]
fn worktree_fix5o_f1c_kept_apart_holds_when_the_hint_is_followed() {
    let r = Repo::new(&tasks(3));
    let wt = r.aux.path().join("agent s3");
    let out = planted_while_2_runs(
        &r,
        &format!(
            "git worktree add -q '{w}' -b qw/demo/3 $(git rev-parse HEAD)\necho evil > '{w}/evil.txt'\ngit -C '{w}' add evil.txt\ngit -C '{w}' commit -qm evil3",
            w = wt.display()
        ),
    );
    let text = diag(&out);
    assert!(text.contains("kept apart, not merged"), "{text}");
    let e = commit_named(&r, "evil3");
    let hint = printed(&text, "git -C ");
    follow(&r, &hint);
    let out = cont(&r, &["--parallel", "2"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(
        !has(&r, "main", "evil.txt"),
        "merged though kept apart: {text}"
    );
    assert!(has(&r, "main", "f3.txt"), "{text}");
    assert!(text.contains("not task 3's work"), "{text}");
    assert_kept(&r, &e);
}

/// rev5b F1b: an agent's `git -C <main worktree>` switch onto a recorded task branch, a
/// commit there and a switch back, while the run goes on: not the user's fix.
#[test]
fn worktree_fix5o_f1b_main_worktree_commit_during_the_run_is_not_the_users() {
    let r = Repo::new(&tasks(3));
    r.action("1", &work("1"));
    r.action("2", "exit 1\n");
    r.action(
        "3",
        "echo 3 > f3.txt\ngit add f3.txt\ngit commit -qm 'f3 work'\nexit 1\n",
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(r.branches().contains(&"qw/demo/3".to_owned()));
    r.action(
        "2",
        &format!(
            "{}git -C \"$MAIN\" switch -q qw/demo/3\necho evil > \"$MAIN/evil.txt\"\ngit -C \"$MAIN\" add evil.txt\ngit -C \"$MAIN\" commit -qm 'looks like yours'\ngit -C \"$MAIN\" switch -q main\n",
            work("2")
        ),
    );
    r.action("3", &work("3b"));
    let out = cont(&r, &["--parallel", "1", "--isolate", "worktree"]);
    let text = diag(&out);
    let e = commit_named(&r, "looks like yours");
    assert!(!has(&r, "main", "evil.txt"), "{text}");
    assert!(!text.contains("your fix"), "{text}");
    assert!(has(&r, "main", "f2.txt"), "{text}");
    assert_kept(&r, &e);
}

/// Another shape: the planted branch is made with `update-ref` after a `worktree add
/// -b`/commit/`worktree remove` (the worktree is gone; its commit is "on the branch
/// itself", made during the run): not adopted either.
#[test]
fn worktree_fix5o_f1_branch_made_and_worktree_removed_during_the_run_is_not_adopted() {
    let r = Repo::new(&tasks(3));
    let wt = r.aux.path().join("gone");
    let out = planted_while_2_runs(
        &r,
        &format!(
            "git worktree add -q {w} -b qw/demo/3 $(git rev-parse main)\necho evil > {w}/evil.txt\ngit -C {w} add evil.txt\ngit -C {w} commit -qm evil4\ngit worktree remove {w}",
            w = wt.display()
        ),
    );
    let text = diag(&out);
    let e = commit_named(&r, "evil4");
    assert!(!has(&r, "main", "evil.txt"), "{text}");
    assert!(has(&r, "main", "f3.txt"), "{text}");
    assert_kept(&r, &e);
}

// --- F14: two workflows at once; a put-back printed earlier -------------------------

/// rev5b F14 as reproduced: demo's task 1 agent merges its own branch into `main`
/// (`git -C $MAIN merge`); demo refuses and ends. Workflow `other`, running meanwhile,
/// finishes its tasks after that: it must refuse the agent's move too (README), not
/// merge on top of it. Following demo's printed commands then drops nothing.
#[test]
fn worktree_fix5o_f14_other_workflow_refuses_the_agents_move_too() {
    let r = Repo::new(&tasks(2));
    add_spec(&r, "other", 2);
    r.action(
        "demo-1",
        &work_then_once(
            &r,
            "1",
            "merge",
            "git -C \"$MAIN\" merge -q --no-edit qw/demo/1",
        ),
    );
    r.action("demo-2", &work("2"));
    let wait = gate(&r, "demo-done");
    r.action("other-1", &format!("{wait}echo o1 > o1.txt\n"));
    r.action("other-2", &format!("{wait}echo o2 > o2.txt\n"));
    let done = r.aux.path().join("gate-demo-done");
    let (demo, other) = std::thread::scope(|s| {
        let other = s.spawn(|| bounded(auto_spec(&r, "other", "2"), HARNESS_TIMEOUT));
        let demo = s.spawn(|| {
            let out = bounded(auto_spec(&r, "demo", "2"), HARNESS_TIMEOUT);
            std::fs::write(&done, "").unwrap();
            out
        });
        (demo.join().unwrap(), other.join().unwrap())
    });
    let demo_text = diag(&demo);
    let other_text = diag(&other);
    assert_eq!(code(&demo), 1, "{demo_text}");
    assert!(demo_text.contains("was moved"), "{demo_text}");
    // `other` merged nothing on top of the agent's move.
    assert!(
        !has(&r, "main", "o1.txt") && !has(&r, "main", "o2.txt"),
        "other merged on top of the agent's move: {other_text}"
    );
    assert!(other_text.contains("was moved"), "{other_text}");
    // demo's way back, followed as printed, then both workflows go on.
    let err = r.f.task("1")["error"].as_str().unwrap().to_owned();
    let cmds = all_printed(&err);
    assert!(cmds[0].starts_with("git branch qw-kept/"), "{err}");
    for c in &cmds {
        follow(&r, c);
    }
    r.action("demo-1", &work("1"));
    let out = cont_spec(&r, "demo", &["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let out = cont_spec(&r, "other", &["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    for f in ["f1.txt", "f2.txt", "o1.txt", "o2.txt"] {
        assert!(has(&r, "main", f), "{f}");
    }
}

/// rev5b F14, one workflow: the refusal's put-back, followed after the user committed
/// on `main` ("my next-morning work"), keeps that commit (on `qw-kept/…`).
#[test]
fn worktree_fix5o_f14_put_back_followed_later_keeps_the_users_next_commit() {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        &work_then_once(
            &r,
            "1",
            "merge",
            "git -C \"$MAIN\" merge -q --no-edit qw/demo/1",
        ),
    );
    r.action("2", &format!("{}sleep 0.5\n", work("2")));
    let out = r.auto(&["--parallel", "2"]);
    let text = diag(&out);
    assert_eq!(code(&out), 1, "{text}");
    let err = r.f.task("1")["error"].as_str().unwrap().to_owned();
    let cmds = all_printed(&err);
    assert!(cmds.iter().any(|c| c.starts_with("git reset")), "{err}");
    // The next morning: a commit of the user's on `main`, then the printed commands.
    std::fs::write(r.root().join("mine.txt"), "mine\n").unwrap();
    r.git(&["add", "mine.txt"]);
    r.git(&["commit", "-qm", "my next-morning work"]);
    let mine = sha(&r, "HEAD");
    for c in &cmds {
        follow(&r, c);
    }
    assert_kept(&r, &mine);
    r.action("1", &work("1"));
    let out = cont(&r, &["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(has(&r, "main", "f1.txt") && has(&r, "main", "f2.txt"));
    assert_kept(&r, &mine);
}

// --- F7: "another workflow's merge" is qw's note of it, not a subject line ----------

/// Task 1's agent merges failing task 2's branch into `main` with the subject and the
/// full id qw's own merge of another workflow's task has. qw must refuse the move as it
/// does without that subject, and its put-back takes task 2's work off `main`.
fn forged_other_workflow_merge(r: &Repo) {
    r.action(
        "1",
        &format!(
            "{}{}{}",
            gate(r, "2-committed"),
            work("1"),
            once(
                r,
                "forge",
                "S=$(git rev-parse qw/demo/2)\ngit -C \"$MAIN\" merge -q --no-ff -m \"qw(other): merge task 1 Task 1 (succeeded)\" $S"
            )
        ),
    );
    r.action(
        "2",
        &format!(
            "echo bad > bad2.txt\ngit add bad2.txt\ngit commit -qm bad2\n{}sleep 1\nexit 1\n",
            open_gate(r, "2-committed")
        ),
    );
    r.action("3", &work("3"));
    let out = r.auto(&["--parallel", "2"]);
    let text = diag(&out);
    assert_eq!(code(&out), 1, "{text}");
    let t1 = r.f.task("1");
    assert_eq!(t1["outcome"], "workspace_error", "{t1}: {text}");
    let err = t1["error"].as_str().unwrap().to_owned();
    assert!(
        err.contains("was moved") && err.contains("qw/demo/2"),
        "{err}"
    );
    for c in all_printed(&err) {
        follow(r, &c);
    }
    assert!(!has(r, "main", "bad2.txt"), "{err}");
    assert!(r.branches().contains(&"qw/demo/2".to_owned()), "{text}");
}

#[test]
fn worktree_fix5o_f7_forged_other_workflow_merge_subject_is_refused() {
    let r = Repo::new(&tasks(3));
    forged_other_workflow_merge(&r);
}

/// The same, with a spec `other` that exists (its files committed): a subject naming a
/// real spec is no more qw's merge.
#[test]
fn worktree_fix5o_f7_forged_merge_naming_a_real_spec_is_refused() {
    let r = Repo::new(&tasks(3));
    add_spec(&r, "other", 1);
    forged_other_workflow_merge(&r);
}

// --- F3: a hard reset sets the old tasks' branches aside ----------------------------

/// Run the spec once (`first`: the old tasks' scripts), reset it `--hard`, write a new
/// task list with the same ids, and run it again. `(reset's output, second run's)`.
fn hard_reset_then_new_tasks(r: &Repo) -> (String, std::process::Output) {
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let reset = r.run(&["workflow-reset", "demo", "--hard", "--yes"]);
    assert_eq!(code(&reset), 0, "{}", diag(&reset));
    // No record of the old tasks' branches is left.
    assert!(
        !r.root().join(".git/qw-left/demo").exists(),
        "{}",
        diag(&reset)
    );
    r.f.p.write(
        ".claude/specs/demo/tasks.md",
        "- [ ] 1. Totally different task\n- [ ] 2. Another\n",
    );
    r.f.p.write(".claude/specs/demo/design.md", "# Design\n");
    r.action("1", "echo new1 > new1.txt\n");
    r.action("2", "echo new2 > new2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    (diag(&reset), out)
}

/// rev5b F3 as reproduced: both old tasks failed with work on their branches (a commit
/// and uncommitted work; a commit). The new tasks start from `main`, not from them.
#[test]
fn worktree_fix5o_f3_hard_reset_sets_old_task_branches_aside() {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        "echo bad > bad1.txt\ngit add bad1.txt\ngit commit -qm 'bad attempt'\necho wip > wip1.txt\nexit 1\n",
    );
    r.action("2", &format!("{}exit 1\n", work("2")));
    let (reset, out) = hard_reset_then_new_tasks(&r);
    let text = diag(&out);
    assert!(
        reset.contains("set branch `qw/demo/1` aside as `qw/demo/1@"),
        "{reset}"
    );
    assert!(
        reset.contains("set branch `qw/demo/2` aside as `qw/demo/2@"),
        "{reset}"
    );
    assert_eq!(code(&out), 0, "{text}");
    assert!(!text.contains("resuming"), "{text}");
    for f in ["bad1.txt", "wip1.txt", "f2.txt"] {
        assert!(!has(&r, "main", f), "{f} of an old attempt merged: {text}");
    }
    assert!(
        has(&r, "main", "new1.txt") && has(&r, "main", "new2.txt"),
        "{text}"
    );
    let aside = set_aside(&r);
    assert_eq!(aside.len(), 2, "{aside:?}");
    assert!(aside.iter().any(|b| has(&r, b, "bad1.txt")), "{aside:?}");
}

/// Another shape: only task 2 failed, with nothing but uncommitted work (qw saved it on
/// its branch); task 1 completed. The new task 2 does not resume from it.
#[test]
fn worktree_fix5o_f3_hard_reset_sets_aside_a_branch_of_saved_uncommitted_work() {
    let r = Repo::new(&tasks(2));
    r.action("1", &work("1"));
    r.action("2", "echo wip > wip2.txt\nexit 1\n");
    let (reset, out) = hard_reset_then_new_tasks(&r);
    let text = diag(&out);
    assert!(reset.contains("set branch `qw/demo/2` aside"), "{reset}");
    assert_eq!(code(&out), 0, "{text}");
    assert!(!has(&r, "main", "wip2.txt"), "{text}");
    assert!(has(&r, "main", "new2.txt"), "{text}");
    let aside = set_aside(&r);
    assert!(aside.iter().any(|b| has(&r, b, "wip2.txt")), "{aside:?}");
}

// --- F8: `qw worktrees` names the put-back's `qw-kept/` branches --------------------

/// rev5b F8: after a refused run whose put-back was followed (the keep step first), the
/// user's commit is only on `qw-kept/…`: `qw worktrees` names it until it is merged.
#[test]
fn worktree_fix5o_f8_worktrees_lists_kept_branches_until_merged() {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        &work_then_once(
            &r,
            "1",
            "merge",
            "git -C \"$MAIN\" merge -q --no-edit qw/demo/1",
        ),
    );
    r.action("2", &format!("{}sleep 0.5\n", work("2")));
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let err = r.f.task("1")["error"].as_str().unwrap().to_owned();
    std::fs::write(r.root().join("u.txt"), "user\n").unwrap();
    r.git(&["add", "u.txt"]);
    r.git(&["commit", "-qm", "user commit"]);
    for c in all_printed(&err) {
        follow(&r, &c);
    }
    r.action("1", &work("1"));
    let out = cont(&r, &["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(!has(&r, "main", "u.txt"));
    let kept: Vec<String> = r
        .git(&[
            "for-each-ref",
            "--format=%(refname:short)",
            "refs/heads/qw-kept/",
        ])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let out = r.run(&["worktrees"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(
        text.contains(&format!("kept branch `{}`", kept[0])) && text.contains("HEAD lacks"),
        "{text}"
    );
    // Taken as the line says: no longer named.
    r.git(&["merge", "-q", "--no-edit", &kept[0]]);
    let out = r.run(&["worktrees"]);
    assert!(!diag(&out).contains("qw-kept/"), "{}", diag(&out));
}
