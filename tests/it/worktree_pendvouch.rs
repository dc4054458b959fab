//! rev8b F1, F4, F5, F6, F10, F13: a merge-pending record (`<common>/qw-pending/<spec>/<id>`)
//! is anyone's to write; only the marker qw writes in the task's state entry before it
//! (branch, tip, check) vouches for it. A record of a task that never ran, is blocked, or
//! whose qw its agent killed, or one naming another branch, merges and completes nothing;
//! qw's own refusals at the merge (staged changes) only merge on the next run; the half
//! merge a killed qw left is aborted only while untouched; a conflicted branch moved onto
//! the target's history is not "merged by hand"; a check changed since the work passed it
//! is run before anything is merged.

use std::path::PathBuf;

use crate::support::auto::{auto_demo as auto, continue_demo as cont, demo_args};
use crate::support::moves::{gate, has, open_gate, tasks, work};
use crate::support::*;
use crate::worktree::Repo;

/// Shell, run by an agent: write the record of task `id` naming `branch` at `tip`
/// (shell words), as qw writes it.
fn plant(id: &str, branch: &str, tip: &str) -> String {
    format!(
        "C=\"$(git rev-parse --git-common-dir)\"\nmkdir -p \"$C/qw-pending/demo\"\nprintf 'tip %s\\nbranch %s\\nsubject qw(demo): merge task {id} Task {id} (succeeded)\\n' {tip} {branch} > \"$C/qw-pending/demo/{id}\"\n"
    )
}

fn ticked(r: &Repo, id: &str) -> bool {
    r.read(".claude/specs/demo/tasks.md")
        .contains(&format!("- [x] {id}. "))
}

/// F1, blocked task and another branch: task 2 depends on task 1 (whose agent fails)
/// and its check is `false`; task 3's agent parks a branch at its base (an ancestor of
/// `main`) and records it as task 2's merged work. After task 1 is fixed, the continue
/// neither completes nor ticks task 2: its agent and check run, and the check fails.
#[test]
fn worktree_pendvouch_record_of_a_blocked_task_naming_another_branch_completes_nothing() {
    let r = Repo::new(
        "- [ ] 1. Task 1\n- [ ] 2. Task 2\n  - _Depends: 1_\n  - _Verify: `false`_\n- [ ] 3. Task 3\n",
    );
    r.action("1", "exit 1\n");
    r.action(
        "3",
        &format!(
            "git branch parking HEAD\n{}{}",
            plant("2", "parking", "\"$(git rev-parse HEAD)\""),
            work("3")
        ),
    );
    let out = auto(&r, "2");
    assert_eq!(r.f.task("1")["outcome"], "agent_error", "{}", diag(&out));
    assert!(
        r.root().join(".git/qw-pending/demo/2").is_file(),
        "{}",
        diag(&out)
    );
    r.action("1", &work("1"));
    let out = cont(&r, "2");
    let text = diag(&out);
    assert!(text.contains("ignored a merge-pending record"), "{text}");
    assert!(
        !text.contains("qw was stopped after merging task 2"),
        "{text}"
    );
    assert_eq!(r.runs_of("2"), 1, "{text}");
    assert_ne!(r.f.task("2")["status"], "completed", "{text}");
    assert_eq!(r.f.task("2")["outcome"], "verify_failed", "{text}");
    assert!(!ticked(&r, "2"), "{text}");
    assert_ne!(code(&out), 0, "{text}");
    r.assert_no_process();
}

/// F1, a task that never ran (pending, not blocked): with `--parallel 1 --fail-fast`
/// task 1's agent (which fails) commits work of its own, points `qw/demo/2` at it and
/// records it as task 2's saved work; task 2 (check `false`) never starts. After task 1 is
/// fixed, the continue runs task 2's agent and check; the planted commit never reaches
/// `main`.
#[test]
fn worktree_pendvouch_record_of_a_task_that_never_ran_is_ignored() {
    let r = Repo::new("- [ ] 1. Task 1\n- [ ] 2. Task 2\n  - _Verify: `false`_\n");
    r.action(
        "1",
        &format!(
            "git checkout -q --detach\necho evil > evil.txt\ngit add evil.txt\ngit commit -qm evil\nT=$(git rev-parse HEAD)\ngit checkout -q -\ngit branch qw/demo/2 $T\n{}exit 1\n",
            plant("2", "qw/demo/2", "$T")
        ),
    );
    r.action("2", &work("2"));
    let cmd = r.agent_cmd();
    let mut a = demo_args("workflow-auto", &cmd, "1");
    a.push("--fail-fast");
    let out = r.run(&a);
    assert_eq!(r.f.task("1")["outcome"], "agent_error", "{}", diag(&out));
    assert_eq!(r.runs_of("2"), 0, "{}", diag(&out));
    assert!(
        r.root().join(".git/qw-pending/demo/2").is_file(),
        "{}",
        diag(&out)
    );
    r.action("1", &work("1"));
    let out = cont(&r, "1");
    let text = diag(&out);
    assert!(text.contains("ignored a merge-pending record"), "{text}");
    assert!(!text.contains("merging it now"), "{text}");
    assert_eq!(r.runs_of("2"), 1, "task 2's agent never ran: {text}");
    assert_eq!(r.f.task("2")["outcome"], "verify_failed", "{text}");
    assert!(!has(&r, "main", "evil.txt"), "{text}");
    r.assert_no_process();
}

/// F1, qw SIGKILLed by its agent: task 1's agent commits work its check fails, records it
/// as merge-pending and kills the qw running it. The continue runs task 1 with its check
/// (the finished run is judged): nothing of it reaches `main`.
#[test]
fn worktree_pendvouch_record_of_an_agent_that_killed_its_qw_merges_nothing() {
    let r = Repo::new(&format!(
        "- [ ] 1. Task 1\n  - _Verify: `test -f f1.txt`_\n{}",
        "- [ ] 2. Task 2\n"
    ));
    r.action(
        "1",
        &format!(
            "echo unchecked > evil.txt\ngit add evil.txt\ngit commit -qm evil\n{}p=$$\nwhile [ \"$p\" -gt 1 ]; do p=$(awk '{{print $4}}' /proc/$p/stat); if tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -q workflow-auto; then kill -9 $p; break; fi; done\n",
            plant("1", "qw/demo/1", "\"$(git rev-parse HEAD)\"")
        ),
    );
    r.action("2", &work("2"));
    let out = auto(&r, "1");
    assert!(
        r.root().join(".git/qw-pending/demo/1").is_file(),
        "{}",
        diag(&out)
    );
    assert_ne!(r.f.task("1")["status"], "completed", "{}", diag(&out));
    let out = cont(&r, "1");
    let text = diag(&out);
    assert!(text.contains("ignored a merge-pending record"), "{text}");
    assert!(!text.contains("merging it now"), "{text}");
    assert_ne!(r.f.task("1")["status"], "completed", "{text}");
    assert!(!has(&r, "main", "evil.txt"), "{text}");
    r.assert_no_process();
}

/// F4: the agent's own words in the error ("does not run again" in the path it moves its
/// worktree to) vouch for nothing.
#[test]
fn worktree_pendvouch_agents_words_in_the_error_vouch_for_nothing() {
    let r = Repo::new("- [ ] 1. Task 1\n  - _Verify: `test -f f1.txt`_\n- [ ] 2. Task 2\n");
    let to = r.aux.path().join("moved does not run again");
    r.action(
        "1",
        &format!(
            "echo unchecked > evil.txt\ngit add evil.txt\ngit commit -qm evil\n{}W=$PWD\ncd /\ngit -C \"$W\" worktree unlock \"$W\" 2>/dev/null || true\ngit -C \"$W\" worktree move \"$W\" '{}'\n",
            plant("1", "qw/demo/1", "\"$(git rev-parse HEAD)\""),
            to.display()
        ),
    );
    r.action("2", &work("2"));
    let out = auto(&r, "2");
    let t = r.f.task("1");
    assert_eq!(t["outcome"], "workspace_error", "{}", diag(&out));
    assert!(
        t["error"]
            .as_str()
            .unwrap_or_default()
            .contains("does not run again"),
        "{t}"
    );
    let out = cont(&r, "2");
    let text = diag(&out);
    assert!(!text.contains("merging it now"), "{text}");
    assert_ne!(r.f.task("1")["status"], "completed", "{text}");
    assert!(!has(&r, "main", "evil.txt"), "{text}");
    r.assert_no_process();
}

/// F10: changes the user stages in the main worktree while task 1 runs refuse its merge;
/// after the user commits them, the continue only merges task 1 (its agent ran once).
#[test]
fn worktree_pendvouch_staged_changes_refused_at_the_merge_then_only_merged() {
    let r = Repo::new(&tasks(2));
    std::fs::write(r.root().join("user.txt"), "mine\n").unwrap();
    r.git(&["add", "user.txt"]);
    r.git(&["commit", "-qm", "user.txt"]);
    r.action("1", &format!("{}{}", gate(&r, "staged"), work("1")));
    // Task 2 stands for the user: stages an edit in the main worktree, then lets task 1
    // finish.
    r.action(
        "2",
        &format!(
            "echo more >> \"$MAIN/user.txt\"\ngit -C \"$MAIN\" add user.txt\n{}{}",
            open_gate(&r, "staged"),
            work("2")
        ),
    );
    let out = auto(&r, "2");
    let text = diag(&out);
    let t = r.f.task("1");
    assert_eq!(t["outcome"], "workspace_error", "{text}");
    assert!(
        t["error"].as_str().unwrap_or_default().contains("staged"),
        "{t}"
    );
    assert!(r.root().join(".git/qw-pending/demo/1").is_file(), "{text}");
    assert_eq!(r.f.task("1")["merge_pending"]["branch"], "qw/demo/1", "{t}");
    r.git(&["commit", "-qm", "the user's staged edit"]);
    let out = cont(&r, "2");
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(!text.contains("ignored a merge-pending record"), "{text}");
    assert!(text.contains("merging it now"), "{text}");
    assert_eq!(r.runs_of("1"), 1, "task 1's agent ran again: {text}");
    assert_eq!(r.runs_of("2"), 1, "task 2's agent ran again: {text}");
    assert!(has(&r, "main", "f1.txt"), "{text}");
    assert!(has(&r, "main", "f2.txt"), "{text}");
    assert!(r.f.task("1").get("merge_pending").is_none(), "{text}");
    r.assert_no_process();
}

/// The git the tests run (the first `git` on the test's PATH).
fn real_git() -> PathBuf {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| PathBuf::from(d).join("git"))
        .find(|p| p.is_file())
        .expect("git on PATH")
}

/// A `git` in the project's `bin/` (first on qw's PATH) that SIGKILLs qw right after
/// qw's own merge of task `id` failed (conflicted) the first time: the merge is left
/// half done, as a qw killed mid-merge leaves it.
fn kill_after_conflicting_merge(r: &Repo, id: &str) {
    let flag = r.aux.path().join("killed");
    let script = format!(
        "#!/bin/sh\ncase \"$*\" in\n  *\"merge --no-ff\"*\"merge task {id} \"*)\n    {git} \"$@\"; rc=$?\n    if [ $rc -ne 0 ] && [ ! -e {flag} ]; then : > {flag}; kill -KILL \"$PPID\"; fi\n    exit $rc ;;\nesac\nexec {git} \"$@\"\n",
        flag = flag.display(),
        git = real_git().display()
    );
    r.f.p.script("bin/git", &script);
    r.git(&["add", "bin/git"]);
    r.git(&["commit", "-qm", "git that stands for a kill"]);
}

/// Tasks 1 and 2 both write shared.txt; task 2 merges after task 1, conflicts, and qw is
/// killed in the middle of that merge (its marker and record written).
fn killed_mid_merge() -> Repo {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        "echo one > shared.txt\ngit add shared.txt\ngit commit -qm s1\n",
    );
    r.action(
        "2",
        "echo two > shared.txt\ngit add shared.txt\ngit commit -qm s2\nn=0; until git -C \"$MAIN\" log --format=%s main | grep -qx s1; do [ $n -lt 1800 ] || break; sleep 0.05; n=$((n+1)); done\n",
    );
    kill_after_conflicting_merge(&r, "2");
    let out = auto(&r, "2");
    assert!(r.aux.path().join("killed").exists(), "{}", diag(&out));
    assert!(
        r.git_ok(&["rev-parse", "-q", "--verify", "MERGE_HEAD"]),
        "the kill did not land mid-merge: {}",
        diag(&out)
    );
    r
}

/// F5: the user resolves the conflict a killed qw left and stages it (or only edits the
/// file): the continue leaves that merge as it is, refuses in one line saying what to
/// do, and the resolution is still there; committing it makes the task done.
#[test]
fn worktree_pendvouch_users_resolution_of_a_killed_qws_merge_is_kept() {
    for stage in [true, false] {
        let r = killed_mid_merge();
        std::fs::write(r.root().join("shared.txt"), "one\ntwo\nresolved by hand\n").unwrap();
        if stage {
            r.git(&["add", "shared.txt"]);
        }
        let out = cont(&r, "2");
        let text = diag(&out);
        assert_eq!(code(&out), 2, "stage {stage}: {text}");
        assert!(!text.contains("undid that merge"), "stage {stage}: {text}");
        assert!(
            text.contains("commit your resolution"),
            "stage {stage}: {text}"
        );
        assert!(
            r.git_ok(&["rev-parse", "-q", "--verify", "MERGE_HEAD"]),
            "stage {stage}: the merge was aborted: {text}"
        );
        assert_eq!(
            r.read("shared.txt"),
            "one\ntwo\nresolved by hand\n",
            "stage {stage}: {text}"
        );
        if stage {
            assert_eq!(
                r.git(&["diff", "--cached", "--name-only"]).trim(),
                "shared.txt",
                "{text}"
            );
            // The way on: commit the resolution; the task is then done, not run again.
            r.git(&["commit", "-q", "--no-edit"]);
            let out = cont(&r, "2");
            let text = diag(&out);
            assert_eq!(code(&out), 0, "{text}");
            assert_eq!(r.runs_of("2"), 1, "{text}");
            assert_eq!(r.f.task("2")["status"], "completed", "{text}");
        }
        r.assert_no_process();
    }
}

/// F5, the other shape: the conflict untouched is still undone and merged again (no
/// agent), as before.
#[test]
fn worktree_pendvouch_untouched_conflict_of_a_killed_qw_is_undone_and_retried() {
    let r = killed_mid_merge();
    let out = cont(&r, "2");
    let text = diag(&out);
    assert!(text.contains("undid that merge"), "{text}");
    assert_eq!(r.runs_of("2"), 1, "{text}");
    assert_eq!(r.f.task("2")["outcome"], "merge_conflict", "{text}");
    r.assert_no_half_done_git();
    assert_eq!(r.read("shared.txt"), "one\n");
    r.assert_no_process();
}

/// F6: a conflicted task's branch moved onto the target's history (its root commit, or
/// `main`'s tip) is not "merged by hand": put back where qw left it, the task stays
/// conflicted, its work kept.
#[test]
fn worktree_pendvouch_conflicted_branch_moved_onto_main_is_not_merged_by_hand() {
    for onto in ["root", "main"] {
        let r = Repo::new(&tasks(2));
        r.action(
            "1",
            "echo one > shared.txt\ngit add shared.txt\ngit commit -qm s1\n",
        );
        r.action(
            "2",
            "echo two > shared.txt\necho precious > only2.txt\ngit add -A\ngit commit -qm s2\nn=0; until git -C \"$MAIN\" log --format=%s main | grep -qx s1; do [ $n -lt 1800 ] || break; sleep 0.05; n=$((n+1)); done\n",
        );
        let out = auto(&r, "2");
        assert_eq!(r.f.task("2")["outcome"], "merge_conflict", "{}", diag(&out));
        let left = r.git(&["rev-parse", "qw/demo/2"]).trim().to_owned();
        let to = match onto {
            "root" => r.git(&["rev-list", "--max-parents=0", "main"]),
            _ => r.git(&["rev-parse", "main"]),
        };
        r.git(&["branch", "-f", "qw/demo/2", to.lines().next().unwrap()]);
        let out = cont(&r, "2");
        let text = diag(&out);
        assert!(
            !text.contains("merged into the target by hand"),
            "{onto}: {text}"
        );
        assert_ne!(r.f.task("2")["status"], "completed", "{onto}: {text}");
        assert!(!ticked(&r, "2"), "{onto}: {text}");
        // Put back where qw left it (the task then resumed from there and conflicted
        // again): its work is on the branch, not on `main`.
        assert!(
            text.contains(&format!("qw put it back at {}", &left[..10])),
            "{onto}: not put back: {text}"
        );
        assert_eq!(r.f.task("2")["outcome"], "merge_conflict", "{onto}: {text}");
        assert!(has(&r, "qw/demo/2", "only2.txt"), "{onto}: {text}");
        assert!(!has(&r, "main", "only2.txt"), "{onto}: {text}");
        r.assert_no_process();
    }
}

/// F13: the user tightens task 1's check after its merge was left pending (an untracked
/// file of theirs in the way): the saved work, which fails the current check, is not
/// merged; the task runs again and the current check decides.
#[test]
fn worktree_pendvouch_check_changed_since_the_work_passed_it_is_run() {
    let r = Repo::new("- [ ] 1. Task 1\n  - _Verify: `test -f notes.txt`_\n");
    r.action(
        "1",
        "echo half-done > notes.txt\ngit add notes.txt\ngit commit -qm half || true\n",
    );
    std::fs::write(r.root().join("notes.txt"), "the user's notes\n").unwrap();
    let cmd = r.agent_cmd();
    let mut a = demo_args("workflow-auto", &cmd, "2");
    a.push("--allow-dirty");
    let out = r.run(&a);
    let text = diag(&out);
    assert_eq!(r.f.task("1")["outcome"], "workspace_error", "{text}");
    assert_eq!(
        r.f.task("1")["merge_pending"]["check"],
        "test -f notes.txt",
        "{text}"
    );
    std::fs::remove_file(r.root().join("notes.txt")).unwrap();
    let tasks_md = r.root().join(".claude/specs/demo/tasks.md");
    let was = std::fs::read_to_string(&tasks_md).unwrap();
    std::fs::write(
        &tasks_md,
        was.replace("test -f notes.txt", "grep -q complete notes.txt"),
    )
    .unwrap();
    let out = cont(&r, "2");
    let text = diag(&out);
    assert!(text.contains("changed since that work passed it"), "{text}");
    assert!(!text.contains("merging it now"), "{text}");
    assert_eq!(r.f.task("1")["outcome"], "verify_failed", "{text}");
    assert!(!has(&r, "main", "notes.txt"), "{text}");
    r.assert_no_process();
}
