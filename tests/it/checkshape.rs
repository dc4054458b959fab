//! Reviews rev8b F2, F7, F12 and rev8a F2: an agent (or a mid-run edit) can neither
//! weaken nor dodge the task list's checks — renumbering a task, giving it a subtask,
//! deleting it or the whole tasks.md is refused at the next start like a changed check,
//! never carried over by reconcile — a tick is never written on another task's row, and
//! a failed task's stashed work popped and edited further by a sibling never reaches the
//! target under the sibling's success.

use crate::support::moves::once;
use crate::support::*;
use crate::worktree::Repo;

const TASKS: &str = ".claude/specs/demo/tasks.md";
const RECORD: &str = ".claude/runs/.demo.checks.json";

/// Task 1 passes; task 2's check never passes (its agent does not write `ok2.txt`).
const HARD: &str = "- [ ] 1. Task 1\n  - _Verify: `test -f f1.txt`_\n- [ ] 2. Task 2\n  - _Verify: `test -f ok2.txt`_\n";

/// `qw workflow-continue demo` with the test agent, one attempt.
fn cont(r: &Repo) -> std::process::Output {
    let cmd = r.agent_cmd();
    r.run(&[
        "workflow-continue",
        "demo",
        "--retry-delay",
        "0.1",
        "--task-timeout",
        "60",
        "--attempts",
        "1",
        "--parallel",
        "2",
        "--agent-cmd",
        cmd.as_str(),
    ])
}

fn all(out: &std::process::Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

/// Shell: rewrite tasks.md through the spec link with python-free `sed`/`cat`.
fn rewrite(script: &str) -> String {
    format!("echo 1 > f1.txt\n{script}\n")
}

/// Run 1: task 1's agent changes the list's shape (`edit`), task 2 fails its check. The
/// run warns naming `said`; the next run is refused (exit 2) naming it, task 2's record
/// stays task 2's (reconcile did not carry it anywhere), nothing of task 2 completed;
/// tasks.md put back, the next run checks task 2 with the check the user wrote.
fn assert_shape_change_refused(edit: &str, said: &[&str]) {
    let r = Repo::new(HARD);
    let original = r.read(TASKS);
    r.action("1", &once(&r, "1", &rewrite(edit)));
    r.action("2", "echo half > half2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let text = all(&out);
    assert!(text.contains("verify `test -f ok2.txt` failed"), "{text}");
    for s in said {
        assert!(text.contains(s), "run 1 does not say {s:?}: {text}");
    }
    assert!(r.root().join(RECORD).is_file(), "the record stays");

    let out = cont(&r);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    let err = stderr(&out);
    for s in said {
        assert!(err.contains(s), "the refusal does not say {s:?}: {err}");
    }
    assert!(err.contains(".demo.checks.json"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("error")).count(),
        1,
        "one line: {err}"
    );
    // Nothing repaired, nothing completed that never passed its check.
    assert_eq!(r.f.task("2")["status"], "failed", "{}", r.f.state());
    let tasks = &r.f.state()["specifications"]["demo"]["tasks"];
    for (id, t) in tasks.as_object().unwrap() {
        if id != "1" {
            assert_ne!(t["status"], "completed", "task {id}: {}", r.f.state());
        }
    }
    assert!(!r.git_ok(&["cat-file", "-e", "main:half2.txt"]));
    // Refused again while the change stays.
    assert_eq!(code(&cont(&r)), 2);

    // Put back: task 2 runs again with the user's check (and fails it again).
    std::fs::write(r.root().join(TASKS), &original).unwrap();
    let out = cont(&r);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(
        all(&out).contains("verify `test -f ok2.txt` failed"),
        "{}",
        diag(&out)
    );
    assert!(!r.git_ok(&["cat-file", "-e", "main:half2.txt"]));
    r.assert_no_process();
}

#[test]
fn checkshape_renumbered_task_with_a_weaker_check_is_refused_not_carried_over() {
    // rev8b F2 (f2.sh): 2 → 4 with `true` for a check.
    assert_shape_change_refused(
        "sed -i 's/^- \\[ \\] 2\\. Task 2$/- [ ] 4. Task 2/; s/test -f ok2.txt/true/' .claude/specs/demo/tasks.md",
        &["task 2 \"Task 2\" is gone", "task 4 \"Task 2\" was added"],
    );
}

#[test]
fn checkshape_renumbered_task_keeping_its_check_is_refused_too() {
    // Another shape: the check untouched, only the id — reconcile would carry task 2's
    // failure to 4 and the next run would start afresh there.
    assert_shape_change_refused(
        "sed -i 's/^- \\[ \\] 2\\. Task 2$/- [ ] 7. Task 2/' .claude/specs/demo/tasks.md",
        &["task 2 \"Task 2\" is gone", "task 7 \"Task 2\" was added"],
    );
}

#[test]
fn checkshape_subtask_added_under_a_task_is_refused() {
    // rev8b F2 (f2b.sh): task 2 becomes a parent; its check would never run again.
    assert_shape_change_refused(
        "printf '  - [ ] 2.1. Two part\\n    - _Verify: `true`_\\n' >> .claude/specs/demo/tasks.md",
        &["task 2 has subtasks now", "task 2.1 \"Two part\" was added"],
    );
}

#[test]
fn checkshape_task_deleted_is_refused() {
    assert_shape_change_refused(
        "sed -i '/Task 2/d; /ok2.txt/d' .claude/specs/demo/tasks.md",
        &["task 2 \"Task 2\" is gone"],
    );
}

#[test]
fn checkshape_dependency_removed_is_refused() {
    // Task 2 waits for task 1; the agent drops the dependency.
    let md = "- [ ] 1. Task 1\n  - _Verify: `test -f f1.txt`_\n- [ ] 2. Task 2\n  - _Depends: 1_\n  - _Verify: `test -f ok2.txt`_\n";
    let r = Repo::new(md);
    r.action(
        "1",
        &rewrite("sed -i '/_Depends: 1_/d' .claude/specs/demo/tasks.md"),
    );
    r.action("2", "echo half > half2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(
        all(&out).contains("task 2's _Depends:_ 1 → (none)"),
        "{}",
        diag(&out)
    );
    let out = cont(&r);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert!(
        stderr(&out).contains("task 2's _Depends:_ 1 → (none)"),
        "{}",
        diag(&out)
    );
    r.assert_no_process();
}

#[test]
fn checkshape_tasks_md_deleted_is_said_and_refused_not_regenerated() {
    // rev8b F12 (f13.sh): task 1's agent deletes tasks.md through the spec link.
    let r = Repo::new(HARD);
    let original = r.read(TASKS);
    r.action(
        "1",
        &once(&r, "1", &rewrite("rm -f .claude/specs/demo/tasks.md")),
    );
    r.action("2", "echo half > half2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_ne!(code(&out), 0, "{}", diag(&out));
    let text = all(&out);
    assert!(
        text.contains("tasks.md` was deleted while this run went on"),
        "the run says what happened: {text}"
    );
    assert!(
        !text.contains("failed to inspect"),
        "not a bare I/O error: {text}"
    );
    assert!(r.root().join(RECORD).is_file(), "the record stays");

    let out = cont(&r);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    let err = stderr(&out);
    assert!(err.contains("tasks.md` was deleted"), "{err}");
    assert!(err.contains(".demo.checks.json"), "{err}");
    assert_eq!(
        err.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "one line: {err}"
    );
    assert!(
        !r.root().join(TASKS).exists(),
        "no new task list generated over the user's"
    );
    assert_ne!(r.f.task("2")["status"], "completed");
    assert!(r.root().join(RECORD).is_file(), "the record is not dropped");

    // Put back: the next run goes on with the user's list and check.
    std::fs::write(r.root().join(TASKS), &original).unwrap();
    let out = cont(&r);
    assert!(
        all(&out).contains("verify `test -f ok2.txt` failed"),
        "{}",
        diag(&out)
    );
    assert!(
        r.read(TASKS).contains("- [x] 1. Task 1"),
        "task 1's completion is ticked on its own row"
    );
    r.assert_no_process();
}

#[test]
fn checkshape_hard_reset_forgets_the_record_of_a_deleted_task_list() {
    // The user's own way to start over: `workflow-reset --hard` removes tasks.md and
    // the record with it, so the next run generates a new list.
    let r = Repo::new(HARD);
    r.action(
        "1",
        &once(&r, "1", &rewrite("rm -f .claude/specs/demo/tasks.md")),
    );
    let _ = r.auto(&["--parallel", "2"]);
    assert!(r.root().join(RECORD).is_file());
    let out = r.run(&["workflow-reset", "demo", "--hard", "--yes"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(!r.root().join(RECORD).exists(), "{}", diag(&out));
    assert!(stdout(&out).contains(".demo.checks.json"), "{}", diag(&out));
}

#[test]
fn checkshape_task_inserted_at_the_top_mid_run_never_shows_a_task_completed_that_never_ran() {
    // rev8a F2: while the run goes on, task 1's agent inserts a task at the top and
    // renumbers the others. qw ticks by id and title: no tick lands on another task's
    // row, and status never shows the new task completed.
    let md = "- [ ] 1. Task 1\n  - _Verify: `test -f f1.txt`_\n- [ ] 2. Task 2\n  - _Verify: `test -f f2.txt`_\n- [ ] 3. Task 3\n  - _Verify: `test -f f3.txt`_\n";
    let renumbered = "- [ ] 1. Brand new first task\n  - _Verify: `test -f new.txt`_\n- [ ] 2. Task 1\n  - _Verify: `test -f f1.txt`_\n- [ ] 3. Task 2\n  - _Verify: `test -f f2.txt`_\n- [ ] 4. Task 3\n  - _Verify: `test -f f3.txt`_\n";
    let r = Repo::new(md);
    let file = r.aux.path().join("renumbered.md");
    std::fs::write(&file, renumbered).unwrap();
    r.action(
        "1",
        &format!(
            "echo 1 > f1.txt\ncat {} > .claude/specs/demo/tasks.md\n",
            file.display()
        ),
    );
    r.action("2", "echo 2 > f2.txt\n");
    r.action("3", "echo 3 > f3.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    let text = all(&out);
    assert!(text.contains("its tick is not written there"), "{text}");
    let now = r.read(TASKS);
    assert!(
        now.contains("- [ ] 1. Brand new first task"),
        "a tick on another task's row: {now}"
    );
    for row in ["- [ ] 3. Task 2", "- [ ] 4. Task 3"] {
        assert!(now.contains(row), "{row}: {now}");
    }
    // Status: the new task is pending; the ones that ran are completed under their rows.
    let out = r.run(&["--json", "spec-status", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rows = v["tasks"].as_array().unwrap();
    let status = |title: &str| -> String {
        rows.iter()
            .find(|t| t["title"] == title)
            .unwrap_or_else(|| panic!("{title}: {v}"))["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(status("Brand new first task"), "pending", "{v}");
    for t in ["Task 1", "Task 2", "Task 3"] {
        assert_eq!(status(t), "completed", "{t}: {v}");
    }
    // The next run is refused (the list changed) until the record goes; then reconcile
    // follows the titles and only the new task runs.
    assert_eq!(code(&cont(&r)), 2);
    std::fs::remove_file(r.root().join(RECORD)).unwrap();
    r.action("1", "echo new > new.txt\n");
    let out = cont(&r);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let now = r.read(TASKS);
    assert_eq!(now.matches("- [x]").count(), 4, "{now}");
    r.assert_no_process();
}

/// Shell: wait (bounded: two minutes, then fail the agent) until `cond` holds.
fn wait_for(cond: &str) -> String {
    format!("n=0\nuntil {cond}; do n=$((n+1)); [ $n -lt 1200 ] || exit 1; sleep 0.1; done\n")
}

/// rev8b F7 (t8.sh): task 1 stashes its work (and fails for it); task 2 pops the entry
/// and edits the popped file further (`then`: also commits): task 2 is refused for
/// another task's entry, the entry's changes are taken out of its work and the entry is
/// back in the stash; nothing of task 1's reaches `main`.
fn assert_sibling_pop_then_edit_refused(then: &str) {
    let r = Repo::new(&crate::support::moves::tasks(2));
    let wt1 = format!("{}/wt/*/demo-1", r.aux.path().display());
    r.action(
        "1",
        &once(
            &r,
            "s1",
            "echo task1 change > f1.txt\ngit stash push -q -u -- f1.txt\n",
        ),
    );
    r.action(
        "2",
        &once(
            &r,
            "s2",
            &format!(
                "{}git stash pop -q\necho TASK 2 OWN WORK >> f1.txt\necho 2 > f2.txt\n{then}",
                wait_for(&format!(
                    "git stash list | grep -q qw/demo/1 && ! ls -d {wt1} >/dev/null 2>&1"
                ))
            ),
        ),
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let e2 = format!(
        "{} {}",
        r.f.task("2")["error"].as_str().unwrap_or(""),
        r.f.task("2")["evidence"].as_str().unwrap_or("")
    );
    assert_eq!(r.f.task("1")["outcome"], "workspace_error");
    assert_eq!(r.f.task("2")["outcome"], "workspace_error", "{e2}");
    assert!(e2.contains("another task's stash entry"), "{e2}");
    assert!(
        !r.git_ok(&["cat-file", "-e", "main:f1.txt"]),
        "task 1's stashed work reached main: {}",
        r.git(&["show", "main:f1.txt"])
    );
    let stash = r.git(&["stash", "list"]);
    assert!(stash.contains("qw/demo/1"), "back in the stash: {stash}");
    r.assert_no_process();
    // Task 1's agent, run again, does its work; task 2 runs again from its own work.
    r.action("1", "echo 1 > f1.txt\n");
    let out = cont(&r);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
    assert!(!r.read("f1.txt").contains("task1 change"));
}

#[test]
fn checkshape_sibling_pops_a_failed_tasks_stash_and_edits_further_uncommitted() {
    assert_sibling_pop_then_edit_refused("");
}

#[test]
fn checkshape_sibling_pops_a_failed_tasks_stash_and_commits_it_with_more() {
    assert_sibling_pop_then_edit_refused("git add -A\ngit commit -qm 'task 2 work'\n");
}
