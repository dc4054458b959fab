//! Leftovers of the fourth round (res5): a task branch moved back to an earlier commit of
//! the task's own is resumed from there (its dropped commits kept); the line saying a
//! task resumes is told once; `qw worktrees` lists a task branch checked out in a
//! worktree qw did not make; a submodule left out of a merge is said in the task's
//! outcome; `qw-kept/` records are pruned with their branches; continue commands name
//! their spec; and two paths that had no test (a task worktree with no `qw-packs` file,
//! an older qw's merge in another workflow).
//!
//! Each test asserts where the work is (on `main`, on a named branch, kept and not
//! dangling) and that no process is left.

use std::path::Path;

use crate::support::moves::{assert_kept, cont, git_in, once, sha, task_dir, tasks};
use crate::support::*;
use crate::worktree::Repo;

fn has(r: &Repo, rev: &str, file: &str) -> bool {
    r.git_ok(&["cat-file", "-e", &format!("{rev}:{file}")])
}

/// The lines of `text` that say task `id` resumes.
fn resume_lines<'a>(text: &'a str, id: &str) -> Vec<&'a str> {
    let task = format!("task {id}");
    text.lines()
        .filter(|l| l.contains(&task) && l.contains("resum"))
        .collect()
}

/// Task 1 commits a.txt (A) then b.txt (B) and fails once; its branch is kept at B.
fn failed_with_two_commits() -> Repo {
    let r = Repo::new(&tasks(1));
    r.action(
        "1",
        &once(
            &r,
            "ab",
            "echo a > a.txt\ngit add a.txt\ngit commit -qm A\necho b > b.txt\ngit add b.txt\ngit commit -qm B\nexit 1",
        ),
    );
    let out = r.auto(&[]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(has(&r, "qw/demo/1", "b.txt"), "{}", diag(&out));
    r
}

/// After the user moved task 1's branch back to A: the continue resumes from A (a.txt
/// merged, b.txt not), says so once, and keeps B on a branch it names.
fn assert_resumed_from_the_earlier_commit(r: &Repo, a: &str, b: &str) {
    let out = cont(r, &[]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert_eq!(r.f.task("1")["status"], "completed", "{text}");
    assert!(has(r, "main", "a.txt"), "{text}");
    assert!(
        !has(r, "main", "b.txt"),
        "the dropped commit was merged: {text}"
    );
    let lines = resume_lines(&text, "1");
    assert_eq!(lines.len(), 1, "{text}");
    let kept = format!("qw/demo/1@{}", &b[..7]);
    assert!(
        lines[0].contains(&format!("resumes from {}", &a[..10])),
        "{text}"
    );
    assert!(lines[0].contains(&format!("`{kept}`")), "{text}");
    assert!(lines[0].contains("earlier commit"), "{text}");
    assert!(!text.contains("not task 1's"), "{text}");
    assert_eq!(sha(r, &kept), b);
    assert_kept(r, b);
    r.assert_no_process();
}

#[test]
fn worktree_res5_branch_moved_back_to_an_earlier_own_commit_resumes_from_it() {
    // `git branch -f qw/demo/1 qw/demo/1~1`: the old code put the branch back at B
    // without a word and merged b.txt.
    let r = failed_with_two_commits();
    let b = sha(&r, "qw/demo/1");
    r.git(&["branch", "-f", "qw/demo/1", "qw/demo/1~1"]);
    let a = sha(&r, "qw/demo/1");
    assert_resumed_from_the_earlier_commit(&r, &a, &b);
}

#[test]
fn worktree_res5_reset_hard_of_the_task_branch_in_the_main_worktree_resumes_from_it() {
    // The other shape: `git reset --hard HEAD~1` on the branch, checked out in the main
    // worktree, then back to main.
    let r = failed_with_two_commits();
    let b = sha(&r, "qw/demo/1");
    r.git(&["switch", "-q", "qw/demo/1"]);
    r.git(&["reset", "-q", "--hard", "HEAD~1"]);
    r.git(&["switch", "-q", "main"]);
    let a = sha(&r, "qw/demo/1");
    assert_resumed_from_the_earlier_commit(&r, &a, &b);
}

#[test]
fn worktree_res5_branch_moved_back_to_the_target_is_still_put_back() {
    // A tip with nothing of the task's (moved back onto `main`: an agent's `branch -f`)
    // is no earlier commit of its own: qw's tip is put back and merged. The old code
    // deleted the branch as merged when the workflow started (B only in reflogs) and
    // recorded the task completed with none of its work.
    let r = failed_with_two_commits();
    r.git(&["branch", "-f", "qw/demo/1", "main"]);
    let out = cont(&r, &[]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(
        has(&r, "main", "a.txt") && has(&r, "main", "b.txt"),
        "{text}"
    );
    let lines = resume_lines(&text, "1");
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("put it back"), "{text}");
    r.assert_no_process();
}

#[test]
fn worktree_res5_resuming_is_said_once_per_task() {
    // The user's fix on two failed tasks' branches: each task said "resumes from them"
    // and then "resuming the unmerged work" again.
    let r = Repo::new(&tasks(2));
    for id in ["1", "2"] {
        r.action(
            id,
            &once(
                &r,
                id,
                &format!("echo {id} > f{id}.txt\ngit add f{id}.txt\ngit commit -qm f{id}\nexit 1"),
            ),
        );
    }
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    for id in ["1", "2"] {
        r.git(&["switch", "-q", &format!("qw/demo/{id}")]);
        std::fs::write(r.root().join(format!("fix{id}.txt")), "fix\n").unwrap();
        r.git(&["add", "-A"]);
        r.git(&["commit", "-qm", "fix"]);
    }
    r.git(&["switch", "-q", "main"]);
    let out = cont(&r, &[]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    for id in ["1", "2"] {
        let lines = resume_lines(&text, id);
        assert_eq!(lines.len(), 1, "task {id}: {text}");
        assert!(lines[0].contains("taken as task"), "{text}");
        assert!(has(&r, "main", &format!("fix{id}.txt")), "{text}");
    }
    r.assert_no_process();
}

#[test]
fn worktree_res5_worktrees_lists_a_task_branch_checked_out_elsewhere_and_prune_keeps_it() {
    // `git worktree add ../elsewhere qw/demo/2` of a failed task's branch: the old code
    // listed "no qw worktrees or branches".
    let r = Repo::new(&tasks(2));
    r.action("1", &crate::support::moves::work("1"));
    r.action(
        "2",
        "echo 2 > f2.txt\ngit add f2.txt\ngit commit -qm f2\nexit 1\n",
    );
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(has(&r, "qw/demo/2", "f2.txt"), "{}", diag(&out));
    let f2 = sha(&r, "qw/demo/2");
    let elsewhere = r.aux.path().join("elsewhere");
    let p = elsewhere.display().to_string();
    r.git(&["worktree", "add", "-q", &p, "qw/demo/2"]);
    for args in [&["worktrees"][..], &["worktrees", "--spec", "demo"][..]] {
        let out = r.run(args);
        let text = diag(&out);
        assert_eq!(code(&out), 0, "{text}");
        assert!(!text.contains("no qw worktrees"), "{text}");
        let line = stdout(&out)
            .lines()
            .find(|l| l.contains("qw/demo/2"))
            .unwrap_or_else(|| panic!("qw/demo/2 not listed: {text}"))
            .to_owned();
        assert!(line.contains("elsewhere"), "{line}");
        assert!(line.contains(&p), "{line}");
        assert!(line.contains("1 unmerged commit(s)"), "{line}");
        assert!(line.contains("qw did not make"), "{line}");
    }
    // Another spec's listing does not show it.
    let out = r.run(&["worktrees", "--spec", "other"]);
    assert!(!stdout(&out).contains("qw/demo/2"), "{}", diag(&out));
    let out = r.run(&["--json", "worktrees"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let e = v["worktrees"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["branch"] == "qw/demo/2")
        .cloned()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(e["state"], "elsewhere", "{v}");
    assert_eq!(e["path"], p.as_str(), "{v}");
    // --prune leaves it alone, and says where it is and how to free it.
    let out = r.run(&["worktrees", "--prune"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(text.contains("left `qw/demo/2` alone"), "{text}");
    assert!(
        text.contains(&format!("git -C {p} switch --detach")),
        "{text}"
    );
    assert_eq!(sha(&r, "qw/demo/2"), f2, "{text}");
    assert!(elsewhere.join("f2.txt").is_file(), "{text}");
    assert_eq!(
        git_in(&r, &elsewhere, &["symbolic-ref", "--short", "HEAD"]),
        "qw/demo/2"
    );
    // Its directory gone: still listed and kept, and the prune says `git worktree prune`.
    std::fs::remove_dir_all(&elsewhere).unwrap();
    let out = r.run(&["worktrees", "--prune"]);
    let text = diag(&out);
    assert!(text.contains("`git worktree prune`"), "{text}");
    assert_eq!(sha(&r, "qw/demo/2"), f2, "{text}");
    // And `workflow-reset --hard` of the spec keeps it too.
    r.git(&["worktree", "prune"]);
    r.git(&["worktree", "add", "-q", &p, "qw/demo/2"]);
    let out = r.run(&["workflow-reset", "demo", "--hard", "--yes"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(text.contains("left `qw/demo/2` alone"), "{text}");
    assert_eq!(sha(&r, "qw/demo/2"), f2, "{text}");
    assert!(elsewhere.join("f2.txt").is_file(), "{text}");
    r.assert_no_process();
}

#[test]
fn worktree_res5_submodule_left_out_of_the_merge_is_a_warning_of_the_task() {
    // Task 1's agent runs `git submodule add` and commits; task 2's makes a repository
    // of its own (no remote). The old code recorded both `succeeded` with nothing in
    // their outcome, and the report said every task completed as if all was merged.
    let r = Repo::new(&tasks(3));
    let lib = r.aux.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    git_in(&r, &lib, &["init", "-q"]);
    std::fs::write(lib.join("l.txt"), "l\n").unwrap();
    git_in(&r, &lib, &["add", "l.txt"]);
    git_in(&r, &lib, &["commit", "-qm", "lib"]);
    r.action(
        "1",
        &format!(
            "echo 1 > f1.txt\ngit -c protocol.file.allow=always submodule --quiet add {} vendor/lib\ngit add f1.txt\ngit commit -qm sub\n",
            lib.display()
        ),
    );
    r.action(
        "2",
        "mkdir inner\ncd inner\ngit init -q\necho x > x.txt\ngit add x.txt\ngit commit -qm inner\ncd ..\necho 2 > f2.txt\n",
    );
    r.action("3", &crate::support::moves::work("3"));
    let out = r.auto(&["--parallel", "2"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    for id in ["1", "2", "3"] {
        assert_eq!(r.f.task(id)["status"], "completed", "{text}");
        assert!(has(&r, "main", &format!("f{id}.txt")), "{text}");
    }
    // The run's last line does not claim a clean success either.
    assert!(
        stdout(&out).contains(
            "3/3 tasks completed by the command agent (2 with warnings: not all they did was merged; see the report)"
        ),
        "{text}"
    );
    assert!(
        !r.git(&["ls-tree", "-r", "main"]).contains("160000"),
        "{text}"
    );
    // Task 1: its outcome says it, the run says it once, the command is given.
    let ev1 = r.f.task("1")["evidence"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(ev1.contains("; warning: `vendor/lib`"), "{ev1}");
    assert!(ev1.contains("was not merged"), "{ev1}");
    let warned: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("warning: `vendor/lib`"))
        .collect();
    assert_eq!(warned.len(), 1, "{text}");
    assert!(warned[0].contains("task 1:"), "{text}");
    assert!(
        text.contains("ok 1 succeeded") && text.contains("with 1 warning(s)"),
        "{text}"
    );
    // Task 2: no remote, said so.
    let ev2 = r.f.task("2")["evidence"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(ev2.contains("; warning: `inner`"), "{ev2}");
    assert!(ev2.contains("no remote"), "{ev2}");
    // Task 3 did nothing of the kind.
    let ev3 = r.f.task("3")["evidence"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!ev3.contains("warning"), "{ev3}");
    // The report does not say all was merged.
    let report = r.read(".claude/specs/demo/report.md");
    assert!(report.contains("**Completed, with warnings.**"), "{report}");
    assert!(
        report.contains("2 task(s) completed with warnings"),
        "{report}"
    );
    assert!(report.contains("## Warnings"), "{report}");
    assert!(report.contains("- task 1: `vendor/lib`"), "{report}");
    assert!(report.contains("succeeded, with 1 warning(s)"), "{report}");
    // The printed command, run as printed, adds the submodule in the main worktree.
    let cmd = crate::support::moves::printed(warned[0], "git -C");
    assert!(cmd.contains("submodule add"), "{cmd}");
    crate::support::moves::follow_in_sh(&r, &cmd);
    let staged = r.git(&["ls-files", "-s", "vendor/lib"]);
    assert!(staged.starts_with("160000"), "{staged}");
    assert!(r.read(".gitmodules").contains("path = vendor/lib"));
    // The agent's copy is still where the line says (the worktree was kept).
    assert!(task_dir(&r, "1").join("vendor/lib/l.txt").is_file());
    r.assert_no_process();
}

#[test]
fn worktree_res5_projects_own_submodule_warns_only_when_the_agent_changed_it() {
    // The project has a submodule. Task 1 initialises it and leaves it as recorded (no
    // warning); task 2 commits in it: its change is not merged, and the warning says so
    // without a `submodule add` (the project has it already).
    let r = Repo::new(&tasks(2));
    let lib = r.aux.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    git_in(&r, &lib, &["init", "-q"]);
    std::fs::write(lib.join("l.txt"), "l\n").unwrap();
    git_in(&r, &lib, &["add", "l.txt"]);
    git_in(&r, &lib, &["commit", "-qm", "lib"]);
    let l = lib.display().to_string();
    r.git(&[
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        &l,
        "vendor/lib",
    ]);
    r.git(&["commit", "-qm", "sub"]);
    let init = "git -c protocol.file.allow=always submodule update -q --init\n";
    r.action("1", &format!("{init}echo 1 > f1.txt\n"));
    r.action(
        "2",
        &format!("{init}echo m > vendor/lib/m.txt\ngit -C vendor/lib add m.txt\ngit -C vendor/lib commit -qm SUBWORK\necho 2 > f2.txt\n"),
    );
    let out = r.auto(&["--parallel", "2"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    let ev1 = r.f.task("1")["evidence"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!ev1.contains("warning"), "{ev1}");
    let ev2 = r.f.task("2")["evidence"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        ev2.contains("; warning: `vendor/lib` (the project's own submodule"),
        "{ev2}"
    );
    assert!(!ev2.contains("submodule add"), "{ev2}");
    let report = r.read(".claude/specs/demo/report.md");
    assert!(
        report.contains("1 task(s) completed with warnings"),
        "{report}"
    );
    assert!(
        has(&r, "main", "f1.txt") && has(&r, "main", "f2.txt"),
        "{text}"
    );
    // The agent's commit in the submodule is kept with the worktree.
    let d = task_dir(&r, "2").join("vendor/lib");
    assert_eq!(git_in(&r, &d, &["log", "-1", "--format=%s"]), "SUBWORK");
    r.assert_no_process();
}

/// The kept-branch records qw holds for spec `demo` (`.git/qw-kept/demo/<id>@<sha>`).
fn kept_records(r: &Repo) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(r.root().join(".git/qw-kept/demo"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn worktree_res5_prune_forgets_the_records_of_kept_branches_gone_or_merged() {
    // Three tasks each commit and fail; a commit made nowhere a log tells (`commit-tree`
    // + `update-ref`) is put on each branch; the continue sets each aside on
    // `qw/demo/<id>@<sha7>`, with a record. The old code never removed a record.
    let r = Repo::new(&tasks(3));
    for id in ["1", "2", "3"] {
        r.action(
            id,
            &once(
                &r,
                id,
                &format!("echo {id} > f{id}.txt\ngit add f{id}.txt\ngit commit -qm f{id}\nexit 1"),
            ),
        );
    }
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let mut kept = Vec::new();
    for id in ["1", "2", "3"] {
        let b = format!("qw/demo/{id}");
        let tip = sha(&r, &b);
        let tree = sha(&r, &format!("{b}^{{tree}}"));
        let sneaked = r
            .git(&[
                "commit-tree",
                &tree,
                "-p",
                &tip,
                "-m",
                &format!("sneaked {id}"),
            ])
            .trim()
            .to_owned();
        r.git(&["update-ref", &format!("refs/heads/{b}"), &sneaked]);
        kept.push(format!("{b}@{}", &sneaked[..7]));
    }
    let out = cont(&r, &[]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let names: Vec<String> = kept
        .iter()
        .map(|k| k["qw/demo/".len()..].to_owned())
        .collect();
    assert_eq!(kept_records(&r), names, "{}", diag(&out));
    // Every kept branch holds unmerged work: nothing forgotten.
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(kept_records(&r), names, "{}", diag(&out));
    // One deleted by the user, one merged: their records go; the third stays.
    r.git(&["branch", "-D", &kept[0]]);
    r.git(&["merge", "-q", "--no-edit", &kept[1]]);
    let out = r.run(&["worktrees", "--prune"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert_eq!(kept_records(&r), names[2..].to_vec(), "{text}");
    assert!(
        text.contains("forgot qw's record of 2 kept branch(es)"),
        "{text}"
    );
    assert!(
        sha(&r, &kept[2]).len() == 40,
        "the unmerged kept branch is kept"
    );
    // `workflow-reset --hard` of the spec does the same for the last once it is gone.
    r.git(&["branch", "-D", &kept[2]]);
    let out = r.run(&["workflow-reset", "demo", "--hard", "--yes"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(kept_records(&r).is_empty(), "{}", diag(&out));
    r.assert_no_process();
}

/// Every `qw workflow-continue` in `text` names the spec `demo`.
fn assert_continue_names_the_spec(text: &str) {
    let mut rest = text;
    let mut seen = 0;
    while let Some(i) = rest.find("qw workflow-continue") {
        let after = &rest[i + "qw workflow-continue".len()..];
        assert!(
            after.starts_with(" demo"),
            "a continue without its spec: {text}"
        );
        seen += 1;
        rest = after;
    }
    assert!(seen > 0, "no continue command at all: {text}");
}

#[test]
fn workflow_res5_cost_ceiling_lines_name_the_spec_in_their_continue() {
    // The ceiling's own words said "raise it and run `qw workflow-continue`" (no spec),
    // in the paused line and in the report.
    let md = "- [ ] 1. One\n- [ ] 2. Two\n  - _Depends: 1_\n- [ ] 3. Three\n  - _Depends: 2_\n";
    let mut f = Flow::new(md);
    f.set("FAKE_COST_IMPL", "0.40");
    let out = f.auto(&["--agent", "claude", "--max-cost-per-run", "1.00"]);
    assert_eq!(code(&out), 3, "{}", diag(&out));
    let err = stderr(&out);
    assert!(err.contains("cost ceiling of $1.00"), "{err}");
    assert_continue_names_the_spec(&err);
    let report = std::fs::read_to_string(f.path().join(".claude/specs/demo/report.md")).unwrap();
    assert!(report.contains("after raising the limit"), "{report}");
    assert_continue_names_the_spec(&report);
}

#[test]
fn cli_res5_help_exit_codes_name_the_spec_and_follow_the_contract() {
    let p = TestProject::bare();
    let top = stdout(&p.run(&["--help"]));
    for line in [
        "  0    success",
        "  1    the work failed",
        "  2    bad input or usage",
        "  3    workflow paused",
        "128+N",
    ] {
        assert!(top.contains(line), "{line}: {top}");
    }
    assert!(top.contains("`qw workflow-continue NAME`"), "{top}");
    assert!(!top.contains("workflow-continue`"), "{top}");
    let auto = stdout(&p.run(&["workflow-auto", "--help"]));
    assert!(
        auto.contains("Exit: 0 every task completed; 1 some work failed; 2 bad input; 3 paused"),
        "{auto}"
    );
    assert!(
        auto.contains("`qw workflow-continue NAME` resumes"),
        "{auto}"
    );
}

#[test]
fn worktree_res5_lost_commit_found_without_qw_packs_by_the_idx_time() {
    // A task worktree with no `qw-packs` file (as an older qw made it: the agent removes
    // it here): the packs written since its start are told by their `.idx` time. The
    // agent's commit, left behind, repacked and its reflogs expired, is found and kept;
    // the pack the repository had before is not read.
    let mut r = Repo::new(&tasks(1));
    r.f.set("QW_LOG", "debug");
    r.git(&["gc", "-q"]);
    let old: Vec<String> = std::fs::read_dir(r.root().join(".git/objects/pack"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".idx")
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(old.len(), 1, "{old:?}");
    r.action(
        "1",
        "rm \"$(git rev-parse --git-dir)/qw-packs\"\necho L > lost.txt\ngit add lost.txt\ngit commit -qm LOSTWORK\ngit reset -q --hard HEAD~1\ngit repack -q -d\ngit reflog expire --expire=now --all\necho 1 > f1.txt\n",
    );
    let out = r.auto(&["--parallel", "2", "--isolate", "worktree"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(
        !r.root().join(".git/worktrees/demo-1/qw-packs").exists(),
        "the shape: no qw-packs"
    );
    const READS: &str = "lost: reading the objects of ";
    assert!(text.contains(READS), "no new pack read: {text}");
    assert!(
        !text.contains(&format!("{READS}{}", old[0])),
        "the old pack was read: {text}"
    );
    let at = text
        .find("kept on branch `qw/demo/1@")
        .unwrap_or_else(|| panic!("LOSTWORK not kept: {text}"));
    let rest = &text[at + "kept on branch `".len()..];
    let kept = &rest[..rest.find('`').unwrap()];
    assert_eq!(
        r.git(&["log", "-1", "--format=%s", kept]).trim(),
        "LOSTWORK"
    );
    assert!(has(&r, "main", "f1.txt"));
    r.assert_no_process();
}

/// Another workflow's task 1 as its qw (an older one, in another process) runs it: a
/// worktree qw made (its lock reason and marker) on `qw/other/1`, where its agent
/// committed `o1.txt`. Returns the commit.
fn other_workflows_task(r: &Repo) -> String {
    let dir = r.aux.path().join("other-1");
    let d = dir.display().to_string();
    r.git(&[
        "worktree",
        "add",
        "-q",
        "--lock",
        "--reason",
        "qw: workflow other task 1 (pid 1)",
        "-b",
        "qw/other/1",
        &d,
        "main",
    ]);
    let admin = git_in(r, &dir, &["rev-parse", "--absolute-git-dir"]);
    std::fs::write(Path::new(&admin).join("qw-task"), "other\n1\n").unwrap();
    std::fs::write(dir.join("o1.txt"), "o1\n").unwrap();
    git_in(r, &dir, &["add", "o1.txt"]);
    git_in(r, &dir, &["commit", "-qm", "o1"]);
    sha(r, "qw/other/1")
}

#[test]
fn worktree_res5_another_workflows_qw_merge_mid_run_is_no_move() {
    // While `demo` runs, another workflow's qw merges its task branch into `main` as qw
    // does — by commit id (reflog `merge <40-hex>: …`) with the subject `qw(other):
    // merge task …` — and notes the merge in `<common>/qw-merges/<merge>` (spec, branch,
    // tip), as every qw since rev5b F7 does. Demo's check of its target accepts it: the
    // run completes, both merged. (The same merge without the note — an older qw, or an
    // agent typing qw's subject — is refused: worktree_fix5o's F7 tests.)
    let r = Repo::new(&tasks(2));
    let o1 = other_workflows_task(&r);
    let merges = r.root().join(".git/qw-merges");
    r.action(
        "1",
        &format!(
            "{}{}",
            once(
                &r,
                "othermerge",
                &format!(
                    "git -C \"$MAIN\" merge -q --no-ff -m 'qw(other): merge task 1 Task 1 (succeeded)' {o1}\n\
                     mkdir -p {m}\n\
                     printf 'other\\nqw/other/1\\n{o1}\\n' > {m}/$(git -C \"$MAIN\" rev-parse HEAD)\n",
                    m = merges.display()
                )
            ),
            crate::support::moves::work("1")
        ),
    );
    r.action("2", &crate::support::moves::work("2"));
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    let reflog = r.git(&["reflog", "show", "--format=%gs", "main"]);
    assert!(
        reflog.contains(&format!("merge {o1}:")),
        "the shape: {reflog}"
    );
    assert!(!text.contains("was moved"), "{text}");
    for f in ["o1.txt", "f1.txt", "f2.txt"] {
        assert!(has(&r, "main", f), "{f}: {text}");
    }
    assert!(!r.root().join(".git/qw-refused-moves/demo").exists());
    r.assert_no_process();
}

#[test]
fn worktree_res5_a_task_branch_merged_by_name_with_qws_subject_is_still_a_move() {
    // The other side: the same merge typed by name (`git merge qw/other/1`, reflog
    // `merge qw/other/1: …`) while that task's worktree runs is no qw's, whatever its
    // subject says: refused as a move.
    let r = Repo::new(&tasks(2));
    other_workflows_task(&r);
    r.action(
        "1",
        &format!(
            "{}{}",
            once(
                &r,
                "othermerge",
                "git -C \"$MAIN\" merge -q --no-ff -m 'qw(other): merge task 1 Task 1 (succeeded)' qw/other/1"
            ),
            crate::support::moves::work("1")
        ),
    );
    r.action("2", &crate::support::moves::work("2"));
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    let text = diag(&out);
    assert_ne!(code(&out), 0, "{text}");
    assert!(text.contains("was moved"), "{text}");
    assert!(
        r.root().join(".git/qw-refused-moves/demo").exists(),
        "{text}"
    );
    r.assert_no_process();
}
