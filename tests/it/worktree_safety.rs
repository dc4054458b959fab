//! Task worktrees that never lose work (CONTRACT §10; issues 13.2, 14.3, 14.4, 14.6,
//! 15.2): every repository layout, two workflows in one repository at once, agents that
//! move branches, agents that break their worktree, failures of qw's own git step.
//!
//! Each test asserts that nothing is lost (every task's file on `main`), nothing is left
//! half done (no merge in progress, no unmerged path, no stale `index.lock`), nothing
//! hangs (every qw run is bounded by a generous harness timeout) and no process is left.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::moves::{add_spec, tasks};
use crate::support::*;
use crate::worktree::{HARNESS_TIMEOUT, Layout, Repo, Root, bounded};

/// Task `i` writes `src/t<i>.txt` (and `src/t<i>.tmp`, ignored only in the nested layout).
fn write_files(r: &Repo, n: usize) -> Vec<String> {
    for i in 1..=n {
        r.action(
            &i.to_string(),
            &format!(
                "mkdir -p src\necho {i} > src/t{i}.txt\necho junk > src/t{i}.tmp\nsleep 0.{}\n",
                i % 4
            ),
        );
    }
    (1..=n).map(|i| format!("src/t{i}.txt")).collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// No symlink (the spec link qw puts in worktrees) was ever merged into `main`.
fn assert_no_symlink_on_main(r: &Repo) {
    let tree = r.git(&["ls-tree", "-r", "main"]);
    assert!(
        !tree.lines().any(|l| l.starts_with("120000")),
        "a symlink reached main:\n{tree}"
    );
    let spec = r.root().join(".claude/specs/demo");
    let meta = std::fs::symlink_metadata(&spec).unwrap();
    assert!(meta.is_dir(), "the spec folder is no longer a directory");
    assert_eq!(r.read(".claude/specs/demo/design.md"), "# Design\n");
}

fn layout_runs_parallel_3_and_loses_nothing(layout: Layout) {
    let r = Repo::build(&tasks(6), layout, Root::Aux);
    let files = write_files(&r, 6);
    let out = r.auto(&["--parallel", "3", "--attempts", "3"]);
    assert_eq!(code(&out), 0, "{layout:?}: {}", diag(&out));
    for i in 1..=6 {
        let t = r.f.task(&i.to_string());
        assert_eq!(t["status"], "completed", "{layout:?}: {t}");
        assert_eq!(
            r.runs_of(&i.to_string()),
            1,
            "{layout:?}: task {i} ran again"
        );
    }
    r.assert_all_merged(&refs(&files));
    assert!(r.branches().is_empty(), "{:?}", r.branches());
    assert_eq!(r.f.tasks_md().matches("- [x]").count(), 6);
    assert_no_symlink_on_main(&r);
    // No task commit touched the spec folder, tracked or not.
    let touched = r.git(&["log", "--format=%s", "main", "--", ".claude/specs"]);
    let expected = match layout {
        Layout::Tracked | Layout::SpecsTracked => "init\n",
        _ => "",
    };
    assert_eq!(touched, expected, "{layout:?}");
    if layout == Layout::Nested {
        assert!(
            !r.git_ok(&["cat-file", "-e", "main:src/t1.tmp"]),
            "an ignored file was committed"
        );
    }
}

#[test]
fn worktree_layout_claude_tracked() {
    layout_runs_parallel_3_and_loses_nothing(Layout::Tracked);
}

#[test]
fn worktree_layout_claude_ignored() {
    layout_runs_parallel_3_and_loses_nothing(Layout::Ignored);
}

#[test]
fn worktree_layout_specs_tracked_on_purpose() {
    layout_runs_parallel_3_and_loses_nothing(Layout::SpecsTracked);
}

#[test]
fn worktree_layout_nested_gitignores() {
    layout_runs_parallel_3_and_loses_nothing(Layout::Nested);
}

#[test]
fn worktree_layout_global_excludes_file() {
    layout_runs_parallel_3_and_loses_nothing(Layout::GlobalExcludes);
}

#[test]
fn worktree_layout_info_exclude() {
    layout_runs_parallel_3_and_loses_nothing(Layout::InfoExclude);
}

#[test]
fn worktree_offline_agent_in_a_repository_that_ignores_claude() {
    // The offline agent writes no code: it runs each task's check, here one that needs
    // the spec link in the worktree to resolve although `.claude/` is ignored.
    let checked: String = (1..=4)
        .map(|i| {
            format!("- [ ] {i}. Task {i}\n  - _Verify: `test -s .claude/specs/demo/design.md`_\n")
        })
        .collect();
    let r = Repo::build(&checked, Layout::Ignored, Root::Aux);
    let out = r.run(&[
        "workflow-auto",
        "demo",
        "A demo feature",
        "--agent",
        "offline",
        "--parallel",
        "3",
    ]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    for i in 1..=4 {
        let t = r.f.task(&i.to_string());
        assert_eq!(t["status"], "completed", "{t}");
    }
    r.assert_all_merged(&[]);
    assert!(r.branches().is_empty(), "{:?}", r.branches());
}

/// Removes a directory qw made outside the test's temp dirs, however the test ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn worktree_default_root_is_beside_the_repository_never_under_claude() {
    let r = Repo::build(&tasks(3), Layout::Ignored, Root::Default);
    let top = r.root().canonicalize().unwrap();
    let name = top
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches('.')
        .to_owned();
    let beside = top.parent().unwrap().join(format!("{name}.qw-worktrees"));
    let _cleanup = RemoveOnDrop(beside.clone());
    let files = write_files(&r, 3);
    let out = r.auto(&["--parallel", "3"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(
        diag(&out).contains("beside the repository"),
        "{}",
        diag(&out)
    );
    let runs = r.runs();
    assert_eq!(runs.len(), 3, "{runs:?}");
    for (task, pwd, wt, _) in &runs {
        assert_eq!(
            Path::new(pwd),
            beside.join(format!("demo-{task}")),
            "{runs:?}"
        );
        assert!(!pwd.contains(".claude") && !wt.contains(".claude"), "{pwd}");
    }
    // The container goes with its last worktree.
    assert!(!beside.exists(), "{} is left", beside.display());
    r.assert_all_merged(&refs(&files));
}

#[test]
fn worktree_root_setting_is_used_and_bad_values_are_refused() {
    let r = Repo::new(&tasks(2));
    let files = write_files(&r, 2);
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(
        diag(&out).contains("quantumwala.worktree_root"),
        "{}",
        diag(&out)
    );
    let root = r.aux.path().join("wt").canonicalize().unwrap();
    for (_, pwd, _, _) in r.runs() {
        assert!(Path::new(&pwd).starts_with(&root), "{pwd}");
    }
    r.assert_all_merged(&refs(&files));

    let settings = r.root().join(".claude/settings.local.json");
    let bad = |value: serde_json::Value| {
        let text = serde_json::json!({
            "resource_limits": {"max_load": 1000, "max_memory": 1.0},
            "quantumwala": {"worktree_root": value}
        });
        std::fs::write(&settings, text.to_string()).unwrap();
    };
    bad(serde_json::json!(5));
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert!(stderr(&out).contains("worktree_root"), "{}", diag(&out));
    let out = r.run(&["worktrees"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    bad(serde_json::json!(".claude/wt"));
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert!(stderr(&out).contains(".claude"), "{}", diag(&out));
}

#[test]
fn worktree_leftovers_under_the_old_root_are_resumed_and_pruned() {
    let r = Repo::new(&tasks(2));
    let legacy = |n: &str| r.root().join(format!(".claude/worktrees/demo-{n}"));
    for n in ["1", "9"] {
        let p = legacy(n).display().to_string();
        r.git(&[
            "worktree",
            "add",
            "-q",
            "-b",
            &format!("qw/demo/{n}"),
            &p,
            "main",
        ]);
    }
    // Task 1 left a commit and uncommitted work in the old place; 9 left nothing.
    std::fs::write(legacy("1").join("one.txt"), "one\n").unwrap();
    assert!(
        r.git_cmd(&legacy("1"), &["add", "one.txt"])
            .status
            .success()
    );
    assert!(
        r.git_cmd(&legacy("1"), &["commit", "-q", "-m", "one"])
            .status
            .success()
    );
    std::fs::write(legacy("1").join("one-more.txt"), "more\n").unwrap();
    let out = r.run(&["--json", "worktrees"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let listed = last_json(&out)["worktrees"].to_string();
    assert!(listed.contains(".claude/worktrees/demo-1"), "{listed}");

    r.action(
        "1",
        "test -f one.txt\ntest -f one-more.txt\necho 1 > src-1.txt\n",
    );
    r.action("2", "echo 2 > src-2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(diag(&out).contains("resuming"), "{}", diag(&out));
    // Task 1 resumed its old work in the new place.
    for (task, pwd, _, _) in r.runs() {
        assert!(!pwd.contains(".claude"), "task {task} ran in {pwd}");
    }
    r.assert_all_merged(&["one.txt", "one-more.txt", "src-1.txt", "src-2.txt"]);
    assert!(r.legacy_dirs().is_empty(), "{:?}", r.legacy_dirs());
    assert!(r.branches().is_empty(), "{:?}", r.branches());
}

#[test]
fn worktree_foreign_merge_in_main_is_never_aborted_and_is_a_workspace_error() {
    let mut r = Repo::new(&tasks(3));
    // qw waits for a merge it did not start (fix6m): one second here, then gives up.
    r.f.set("QW_MAIN_WAIT_S", "1");
    // A branch the user merges by hand while the workflow runs.
    r.git(&["switch", "-q", "-c", "side"]);
    r.f.p.write("side.txt", "side\n");
    r.git(&["add", "side.txt"]);
    r.git(&["commit", "-q", "-m", "side"]);
    r.git(&["switch", "-q", "main"]);
    let side = r.git(&["rev-parse", "side"]).trim().to_owned();
    let flag = r.aux.path().join("merging");
    r.action(
        "1",
        &format!(
            "echo 1 > f1.txt\ngit -C \"$MAIN\" merge -q --no-commit --no-ff side || true\ntouch {}\n",
            flag.display()
        ),
    );
    for i in 2..=3 {
        r.action(
            &i.to_string(),
            &format!(
                "n=0; while [ ! -e {} ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done\necho {i} > f{i}.txt\n",
                flag.display()
            ),
        );
    }
    let out = r.auto(&["--parallel", "3", "--attempts", "3"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    for i in ["1", "2", "3"] {
        let t = r.f.task(i);
        assert_eq!(t["status"], "failed", "{t}");
        assert_eq!(t["outcome"], "workspace_error", "{t}");
        let err = t["error"].as_str().unwrap();
        assert!(
            err.contains("did not start") && err.contains("for longer than qw waits"),
            "{err}"
        );
        assert_eq!(r.runs_of(i), 1, "a workspace error is not retried");
        assert_eq!(
            r.git(&["show", &format!("qw/demo/{i}:f{i}.txt")]),
            format!("{i}\n"),
            "the work is kept on its branch"
        );
    }
    // The user's merge is exactly as they left it.
    assert_eq!(r.git(&["rev-parse", "MERGE_HEAD"]).trim(), side);
    assert!(
        r.git(&["diff", "--cached", "--name-only"])
            .contains("side.txt")
    );
    // Visible in the report and `qw status`, and not charged to the agent.
    let report = r.f.p.read(".claude/specs/demo/report.md");
    assert!(report.contains("workspace_error"), "{report}");
    let status = r.run(&["status"]);
    assert!(
        stdout(&status).contains("workspace_error"),
        "{}",
        diag(&status)
    );
    let perf = &r.f.state()["agents"]["performance"]["command"];
    assert_eq!(perf["failures"], 0, "{perf}");

    // The user concludes their merge; the workflow then finishes, losing nothing.
    r.git(&["commit", "-q", "-m", "merge side"]);
    let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt", "f3.txt", "side.txt"]);
    assert!(r.branches().is_empty(), "{:?}", r.branches());
}

#[test]
fn worktree_rebase_left_in_progress_is_a_workspace_error_and_keeps_everything() {
    let r = Repo::build(&tasks(2), Layout::Ignored, Root::Aux);
    r.action(
        "1",
        "echo mine > shared.txt\ngit commit -qam mine\ngit switch -q --detach HEAD~1\necho theirs > shared.txt\ngit commit -qam theirs\ngit rebase -q qw/demo/1 >/dev/null 2>&1 || true\ntest -d \"$(git rev-parse --git-path rebase-merge)\"\n",
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "2", "--attempts", "3"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let t = r.f.task("1");
    assert_eq!(t["outcome"], "workspace_error", "{t}");
    let err = t["error"].as_str().unwrap();
    assert!(
        err.contains("a rebase in progress") && err.contains("rebase --abort"),
        "{err}"
    );
    assert_eq!(r.runs_of("1"), 1, "not retried");
    // Everything is kept as the agent left it (rev5b F4): the worktree, its rebase in
    // progress, the task's branch at the agent's own commit; no conflict markers saved.
    let wt = r.worktree_dirs();
    assert_eq!(wt.len(), 1, "{wt:?}");
    assert!(
        r.git_cmd(&wt[0], &["status"])
            .stdout
            .windows(6)
            .any(|w| w == b"rebase")
    );
    assert_eq!(r.git(&["show", "qw/demo/1:shared.txt"]), "mine\n");
    assert_eq!(r.f.task("2")["status"], "completed");
    assert_eq!(r.read("shared.txt"), "base\n");
    r.assert_no_half_done_git();
    r.assert_no_process();
}

#[test]
fn worktree_agent_branch_moves_are_merged_from_head_and_files() {
    agent_branch_moves(Layout::Tracked);
}

#[test]
fn worktree_agent_branch_moves_with_claude_ignored() {
    agent_branch_moves(Layout::Ignored);
}

#[test]
fn worktree_agent_branch_moves_with_specs_tracked_on_purpose() {
    agent_branch_moves(Layout::SpecsTracked);
}

fn agent_branch_moves(layout: Layout) {
    let r = Repo::build(&tasks(7), layout, Root::Aux);
    let root_commit = "$(git rev-list --max-parents=0 HEAD)";
    // switch -c + commit
    r.action(
        "1",
        "git switch -q -c feature/x\necho 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1\n",
    );
    // detached HEAD + commit of everything (the spec link included)
    r.action(
        "2",
        "git switch -q --detach\necho 2 > f2.txt\ngit add -A\ngit commit -qm f2\n",
    );
    // a rebase onto the first commit
    r.action(
        "3",
        &format!("echo 3 > f3.txt\ngit add f3.txt\ngit commit -qm f3\ngit rebase -q --onto {root_commit} HEAD~1\n"),
    );
    // reset --hard to an older commit, then new work
    r.action(
        "4",
        &format!("echo lost > f4-lost.txt\ngit add f4-lost.txt\ngit commit -qm lost\ngit reset -q --hard {root_commit}\necho 4 > f4.txt\n"),
    );
    // commit on another branch, switch back, leave uncommitted edits
    r.action(
        "5",
        "git switch -q -c side5\necho s > side5.txt\ngit add side5.txt\ngit commit -qm side5\ngit switch -q qw/demo/5\necho 5 > f5.txt\n",
    );
    // delete the qw branch after moving off it
    r.action(
        "6",
        "git switch -q -c mine6\necho 6 > f6.txt\ngit add f6.txt\ngit commit -qm f6\ngit branch -q -D qw/demo/6\n",
    );
    // delete the qw branch while on it
    r.action(
        "7",
        "echo 7 > f7.txt\ngit add f7.txt\ngit commit -qm f7\ngit update-ref -d refs/heads/qw/demo/7\n",
    );
    let out = r.auto(&["--parallel", "3"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    for i in 1..=7 {
        let t = r.f.task(&i.to_string());
        assert_eq!(t["status"], "completed", "{t}");
    }
    let files: Vec<String> = (1..=7).map(|i| format!("f{i}.txt")).collect();
    let mut all = refs(&files);
    all.extend(["second.txt", "src/keep.txt"]);
    r.assert_all_merged(&all);
    assert_eq!(r.read("shared.txt"), "base\n");
    assert_no_symlink_on_main(&r);
    let expected = if layout == Layout::Ignored {
        ""
    } else {
        "init\n"
    };
    assert_eq!(
        r.git(&["log", "--format=%s", "main", "--", ".claude/specs"]),
        expected,
        "{layout:?}"
    );
    // The side branch is named in task 5's evidence; the commit a reset left behind is
    // kept on a branch of task 4.
    let ev5 = r.f.task("5")["evidence"].to_string();
    assert!(ev5.contains("side5"), "{ev5}");
    assert!(!r.git_ok(&["cat-file", "-e", "main:side5.txt"]));
    let kept: Vec<String> = r.branches();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].starts_with("qw/demo/4@"), "{kept:?}");
    assert_eq!(
        r.git(&["show", &format!("{}:f4-lost.txt", kept[0])]),
        "lost\n"
    );
    let listed = last_json(&r.run(&["--json", "worktrees"]))["worktrees"].to_string();
    assert!(
        listed.contains("qw/demo/4@") && listed.contains("unmerged"),
        "{listed}"
    );
    // The agents' own branches are left as they were.
    for b in ["feature/x", "side5", "mine6"] {
        assert!(r.git_ok(&["rev-parse", "-q", "--verify", b]), "{b}");
    }
}

#[test]
fn worktree_broken_by_its_agent_is_saved_removed_and_reported() {
    broken_by_agent(Layout::Tracked);
}

#[test]
fn worktree_broken_by_its_agent_with_claude_ignored() {
    broken_by_agent(Layout::Ignored);
}

fn broken_by_agent(layout: Layout) {
    let r = Repo::build(&tasks(4), layout, Root::Aux);
    // `.git` deleted
    r.action("1", "echo 1 > f1.txt\nrm .git\n");
    // the whole directory deleted (after committing; once): the task fails naming it,
    // its commit kept on its branch (see also worktree_moves)
    let gone = r.aux.path().join("gone-2");
    r.action(
        "2",
        &format!(
            "echo 2 > f2.txt\ngit add f2.txt\ngit commit -qm f2 || true\nif [ ! -e {g} ]; then\ntouch {g}\nd=$(pwd -P)\ncd /\nrm -rf \"$d\"\nfi\n",
            g = gone.display()
        ),
    );
    // made read-only
    r.action("3", "echo 3 > f3.txt\nchmod -R a-w .\n");
    // `.git` replaced by a directory (a repository of its own)
    r.action("4", "echo 4 > f4.txt\nrm .git\ngit init -q .\n");
    let out = r.auto(&["--parallel", "3"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(r.f.p.path().join(".claude/specs/demo/report.md").is_file());
    for i in [1, 3, 4] {
        assert_eq!(r.f.task(&i.to_string())["status"], "completed");
    }
    let t2 = r.f.task("2");
    assert_eq!(t2["status"], "failed", "{t2}");
    let err = t2["error"].as_str().unwrap();
    assert!(
        err.contains("of task 2 was deleted while the task ran") && err.contains("`qw/demo/2`"),
        "{err}"
    );
    assert_eq!(r.git(&["show", "qw/demo/2:f2.txt"]), "2\n");
    let out = r.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt", "f3.txt", "f4.txt"]);
    assert!(r.branches().is_empty(), "{:?}", r.branches());
    assert!(
        !diag(&out).contains("is not a working tree"),
        "{}",
        diag(&out)
    );
}

#[test]
fn worktree_broken_leftover_of_a_killed_run_does_not_wedge_the_spec() {
    let r = Repo::new(&tasks(2));
    let flag = r.aux.path().join("slow");
    std::fs::write(&flag, "").unwrap();
    r.action(
        "1",
        &format!(
            "echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1 || true\necho more > f1-more.txt\nif [ -e {} ]; then sleep 120; fi\n",
            flag.display()
        ),
    );
    r.action("2", "echo 2 > f2.txt\n");
    let mut child = r.start_two_at_once("200");
    let wt1 = || r.container().unwrap_or_default().join("demo-1");
    assert!(
        wait_until(std::time::Duration::from_secs(90), || wt1()
            .join("f1-more.txt")
            .is_file()),
        "task 1 never started: {:?}",
        r.runs()
    );
    sigkill(&mut child);
    // The leftover is broken: its `.git` is gone.
    std::fs::remove_file(wt1().join(".git")).unwrap();
    std::fs::remove_file(&flag).unwrap();
    let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(diag(&out).contains("broken"), "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f1-more.txt", "f2.txt"]);
    assert!(r.branches().is_empty(), "{:?}", r.branches());
    let out = r.run(&["worktrees"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
}

/// `chattr +i` works here (root on a file system that supports it), so a worktree that
/// cannot be removed can be made.
fn immutable_files_work(dir: &Path) -> bool {
    let probe = dir.join("probe");
    std::fs::write(&probe, "").unwrap();
    let ok = Command::new("chattr")
        .arg("+i")
        .arg(&probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        let _ = Command::new("chattr").arg("-i").arg(&probe).output();
    }
    let _ = std::fs::remove_file(&probe);
    ok
}

/// Lifts `chattr +i` from files under a directory, however the test ends.
struct Unfreeze(PathBuf);

impl Drop for Unfreeze {
    fn drop(&mut self) {
        let _ = Command::new("chattr")
            .arg("-R")
            .arg("-i")
            .arg(&self.0)
            .output();
    }
}

#[test]
fn worktree_that_cannot_be_removed_is_a_warning_and_the_run_goes_on() {
    let r = Repo::new(&tasks(2));
    if !immutable_files_work(r.aux.path()) {
        println!("skipped: `chattr +i` is not available here (needs root and ext4/xfs)");
        return;
    }
    let _unfreeze = Unfreeze(r.aux.path().join("wt"));
    r.action("1", "echo 1 > f1.txt\ntouch stuck\nchattr +i stuck\n");
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(diag(&out).contains("could not remove"), "{}", diag(&out));
    assert!(r.f.p.path().join(".claude/specs/demo/report.md").is_file());
    for f in ["f1.txt", "f2.txt", "stuck"] {
        assert!(r.git_ok(&["cat-file", "-e", &format!("main:{f}")]), "{f}");
    }
    r.assert_no_half_done_git();
    assert_eq!(r.registered_worktrees(), 1);
    assert!(r.branches().is_empty(), "{:?}", r.branches());
    // Later commands go on and name what is left.
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(stderr(&out).contains("left"), "{}", diag(&out));
    let out = r.run(&["workflow-continue", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_no_process();
}

fn auto_spec(r: &Repo, spec: &str) -> Command {
    let cmd = r.agent_cmd();
    r.f.cmd(&[
        "workflow-auto",
        spec,
        "Two at once",
        "--agent-cmd",
        &cmd,
        "--attempts",
        "1",
        "--parallel",
        "3",
        "--task-timeout",
        "60",
        "--retry-delay",
        "0.1",
    ])
}

#[test]
fn worktree_two_workflows_in_one_repository_at_once_lose_nothing() {
    // Six tasks a spec, three at a time each: two waves per spec, both specs' merges
    // interleaving in one main worktree (24 tasks took minutes on a loaded machine
    // and asserted no more: every merge is under the one repository lock).
    const N: usize = 6;
    let r = Repo::new(&tasks(1));
    let mut files = Vec::new();
    let flag = |s: &str| {
        r.aux
            .path()
            .join(format!("started-{s}"))
            .display()
            .to_string()
    };
    for (spec, other) in [("alpha", "beta"), ("beta", "alpha")] {
        add_spec(&r, spec, N);
        for i in 1..=N {
            // Each spec's first task waits for the other's: both workflows surely have
            // tasks in flight at once, however loaded the machine.
            let meet = if i == 1 {
                format!(
                    "touch {}\nn=0; while [ ! -e {} ] && [ $n -lt 900 ]; do sleep 0.1; n=$((n+1)); done\n",
                    flag(spec),
                    flag(other)
                )
            } else {
                String::new()
            };
            r.action(
                &format!("{spec}-{i}"),
                &format!(
                    "{meet}mkdir -p {spec}\necho {i} > {spec}/t{i}.txt\nsleep 0.{}\n",
                    i % 3
                ),
            );
            files.push(format!("{spec}/t{i}.txt"));
        }
    }
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| bounded(auto_spec(&r, "alpha"), HARNESS_TIMEOUT));
        let b = s.spawn(|| bounded(auto_spec(&r, "beta"), HARNESS_TIMEOUT));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(code(&a), 0, "alpha: {}", diag(&a));
    assert_eq!(code(&b), 0, "beta: {}", diag(&b));
    for spec in ["alpha", "beta"] {
        for i in 1..=N {
            let t = r.task_in(spec, &i.to_string());
            assert_eq!(t["status"], "completed", "{spec} {i}: {t}");
        }
        assert_eq!(
            r.runs_in(spec).len(),
            N,
            "{spec}: a task ran twice or not at all"
        );
    }
    r.assert_all_merged(&refs(&files));
    assert!(r.branches().is_empty(), "{:?}", r.branches());
    let merges = r.git(&["rev-list", "--count", "--merges", "main"]);
    assert_eq!(merges.trim(), (2 * N).to_string(), "one merge per task");
}

#[test]
fn worktree_two_workflows_conflicting_keep_main_clean_and_the_loser_branch() {
    let r = Repo::new(&tasks(1));
    // Both tasks have their worktrees (from the same commit) before either writes.
    let flag = |s: &str| {
        r.aux
            .path()
            .join(format!("started-{s}"))
            .display()
            .to_string()
    };
    for (spec, other) in [("alpha", "beta"), ("beta", "alpha")] {
        add_spec(&r, spec, 1);
        r.action(
            &format!("{spec}-1"),
            &format!(
                "touch {}\nn=0; while [ ! -e {} ] && [ $n -lt 900 ]; do sleep 0.1; n=$((n+1)); done\necho {spec} > shared.txt\n",
                flag(spec),
                flag(other)
            ),
        );
    }
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| bounded(auto_spec(&r, "alpha"), HARNESS_TIMEOUT));
        let b = s.spawn(|| bounded(auto_spec(&r, "beta"), HARNESS_TIMEOUT));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (ta, tb) = (r.task_in("alpha", "1"), r.task_in("beta", "1"));
    let (winner, loser) = if ta["status"] == "completed" {
        ("alpha", "beta")
    } else {
        ("beta", "alpha")
    };
    assert_eq!(r.task_in(winner, "1")["status"], "completed", "{ta} {tb}");
    assert_eq!(
        r.task_in(loser, "1")["outcome"],
        "merge_conflict",
        "{ta} {tb}"
    );
    assert_eq!(code(if winner == "alpha" { &a } else { &b }), 0);
    assert_eq!(code(if loser == "alpha" { &a } else { &b }), 1);
    assert_eq!(r.read("shared.txt"), format!("{winner}\n"));
    let kept = format!("qw/{loser}/1");
    assert_eq!(r.branches(), vec![kept.clone()]);
    assert_eq!(
        r.git(&["show", &format!("{kept}:shared.txt")]),
        format!("{loser}\n")
    );
    r.assert_no_half_done_git();
    assert!(r.worktree_dirs().is_empty(), "{:?}", r.worktree_dirs());
    r.assert_no_process();
}
