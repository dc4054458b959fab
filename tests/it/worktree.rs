//! Task worktrees (CONTRACT §10) on real git repositories made by the tests, with a
//! command agent (`--agent-cmd`) that runs a per-task action script in its cwd (the
//! task's worktree) and logs where it ran.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;
use crate::workflow::{Flow, code, diag};

/// The agent: `agent TASK PHASE`. Only implementation does anything: it logs
/// `TASK PWD QW_WORKTREE QW_TASK_PORT` to $AGENT_LOG, then runs $ACTIONS/TASK with sh.
const AGENT: &str = r#"#!/bin/sh
task="$1"; phase="$2"
[ "$phase" = implementation ] || exit 0
echo "$task $(pwd -P) $QW_WORKTREE $QW_TASK_PORT" >> "$AGENT_LOG"
if [ -f "$ACTIONS/$task" ]; then sh "$ACTIONS/$task" || exit 1; fi
echo "did task $task"
"#;

/// A git project: Flow's permissive settings, spec documents in place (so only the
/// implementation and validation phases run), the agent, everything committed on `main`.
struct Repo {
    f: Flow,
    /// Outside the repository: the agent log and the action scripts.
    aux: tempfile::TempDir,
}

const GIT_ENV: &[(&str, &str)] = &[
    ("GIT_AUTHOR_NAME", "Test"),
    ("GIT_AUTHOR_EMAIL", "test@example.com"),
    ("GIT_COMMITTER_NAME", "Test"),
    ("GIT_COMMITTER_EMAIL", "test@example.com"),
    ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
];

impl Repo {
    fn new(tasks_md: &str) -> Repo {
        let mut f = Flow::new(tasks_md);
        let aux = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(aux.path().join("actions")).unwrap();
        for (k, v) in GIT_ENV {
            f.set(k, v);
        }
        f.set(
            "AGENT_LOG",
            &aux.path().join("agent.log").display().to_string(),
        );
        f.set("ACTIONS", &aux.path().join("actions").display().to_string());
        f.p.script("bin/agent", AGENT);
        f.p.write(".claude/specs/demo/requirements.md", "# Requirements\n");
        f.p.write(".claude/specs/demo/design.md", "# Design\n");
        f.p.write(".claude/specs/demo/tasks.md", tasks_md);
        f.p.write(".gitignore", ".qw-runtime/\nfake.log*\n");
        f.p.write("shared.txt", "base\n");
        let r = Repo { f, aux };
        r.git(&["init", "-q", "-b", "main"]);
        r.git(&["add", "-A"]);
        r.git(&["commit", "-q", "-m", "init"]);
        r
    }

    fn root(&self) -> &Path {
        self.f.path()
    }

    fn git_cmd(&self, dir: &Path, args: &[&str]) -> std::process::Output {
        let mut c = Command::new("git");
        c.arg("-C").arg(dir).args(args).stdin(Stdio::null());
        for (k, v) in GIT_ENV {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    /// Run git in the project; panics unless it succeeds; stdout.
    fn git(&self, args: &[&str]) -> String {
        let out = self.git_cmd(self.root(), args);
        assert!(out.status.success(), "git {args:?}: {}", diag(&out));
        stdout(&out)
    }

    fn git_ok(&self, args: &[&str]) -> bool {
        self.git_cmd(self.root(), args).status.success()
    }

    /// The action task `id` performs (a sh script run in its cwd).
    fn action(&self, id: &str, script: &str) {
        std::fs::write(self.aux.path().join("actions").join(id), script).unwrap();
    }

    fn agent_cmd(&self) -> String {
        format!(
            "{} {{task_id}} {{phase}}",
            self.root().join("bin/agent").display()
        )
    }

    fn auto(&self, extra: &[&str]) -> std::process::Output {
        let cmd = self.agent_cmd();
        let mut args = vec!["--agent-cmd", cmd.as_str(), "--attempts", "1"];
        args.extend_from_slice(extra);
        self.f.auto(&args)
    }

    /// Agent log lines: (task, pwd, QW_WORKTREE, QW_TASK_PORT).
    fn runs(&self) -> Vec<(String, String, String, String)> {
        std::fs::read_to_string(self.aux.path().join("agent.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let w: Vec<String> = l.split(' ').map(str::to_owned).collect();
                (
                    w[0].clone(),
                    w.get(1).cloned().unwrap_or_default(),
                    w.get(2).cloned().unwrap_or_default(),
                    w.get(3).cloned().unwrap_or_default(),
                )
            })
            .collect()
    }

    fn runs_of(&self, id: &str) -> usize {
        self.runs().iter().filter(|r| r.0 == id).count()
    }

    fn branches(&self) -> Vec<String> {
        self.git(&[
            "for-each-ref",
            "--format=%(refname:short)",
            "refs/heads/qw/",
        ])
        .lines()
        .map(str::to_owned)
        .collect()
    }

    fn worktree_dirs(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.root().join(".claude/worktrees")) {
            Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn registered_worktrees(&self) -> usize {
        self.git(&["worktree", "list", "--porcelain"])
            .lines()
            .filter(|l| l.starts_with("worktree "))
            .count()
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }
}

const TWO: &str = "- [ ] 1. First\n- [ ] 2. Second\n";

#[test]
fn worktree_two_parallel_tasks_on_different_files_both_merge() {
    let r = Repo::new(TWO);
    r.action("1", "sleep 0.5; echo one > one.txt\n");
    r.action("2", "sleep 0.5; echo two > two.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(r.read("one.txt"), "one\n");
    assert_eq!(r.read("two.txt"), "two\n");
    let log = r.git(&["log", "--format=%s", "main"]);
    for id in ["1 First", "2 Second"] {
        assert!(
            log.contains(&format!("qw(demo): task {id} — succeeded")),
            "{log}"
        );
        assert!(log.contains(&format!("qw(demo): merge task {id}")), "{log}");
    }
    // Each ran in its own worktree, with its own port; nothing is left behind.
    let runs = r.runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    for (task, pwd, wt, port) in &runs {
        assert!(
            pwd.ends_with(&format!(".claude/worktrees/demo-{task}")),
            "{pwd}"
        );
        assert!(wt.ends_with(&format!("demo-{task}")), "{wt}");
        assert!(port.parse::<u16>().unwrap() > 0);
    }
    assert_ne!(runs[0].3, runs[1].3, "two tasks got the same port");
    assert!(r.worktree_dirs().is_empty(), "{:?}", r.worktree_dirs());
    assert!(r.branches().is_empty(), "{:?}", r.branches());
    assert_eq!(r.registered_worktrees(), 1);
    // Ticks happen in the main tree, whose spec folder survived the links removed with
    // the worktrees.
    assert_eq!(r.f.tasks_md().matches("- [x]").count(), 2);
    // qw's runtime files are excluded from git; only the ticked spec files show.
    let status = r.git(&["status", "--porcelain"]);
    assert!(
        status.lines().all(|l| l.contains(".claude/specs/demo/")),
        "{status}"
    );
}

#[test]
fn worktree_same_line_conflict_keeps_branch_and_independent_tasks_go_on() {
    let r = Repo::new("- [ ] 1. One\n- [ ] 2. Two\n- [ ] 3. Other\n");
    r.action("1", "sleep 0.5; echo one > shared.txt\n");
    r.action("2", "sleep 0.5; echo two > shared.txt\n");
    r.action("3", "sleep 1.5; echo three > three.txt\n");
    let out = r.auto(&["--parallel", "3"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    let (t1, t2) = (r.f.task("1"), r.f.task("2"));
    let (winner, loser) = if t1["status"] == "completed" {
        ("1", "2")
    } else {
        ("2", "1")
    };
    let lost = r.f.task(loser);
    assert_eq!(r.f.task(winner)["status"], "completed", "{t1} {t2}");
    assert_eq!(lost["status"], "failed", "{lost}");
    assert_eq!(lost["outcome"], "merge_conflict", "{lost}");
    assert!(
        lost["error"].as_str().unwrap().contains("shared.txt"),
        "{lost}"
    );
    assert_eq!(r.runs_of(loser), 1, "merge conflicts are not retried");
    assert_eq!(
        r.read("shared.txt"),
        if winner == "1" { "one\n" } else { "two\n" }
    );
    // The conflicting work is kept on its branch; the main tree is not mid-merge.
    let branch = format!("qw/demo/{loser}");
    assert_eq!(r.branches(), vec![branch.clone()]);
    let kept = r.git(&["show", &format!("{branch}:shared.txt")]);
    assert_eq!(kept, if loser == "1" { "one\n" } else { "two\n" });
    assert!(!r.git_ok(&["rev-parse", "-q", "--verify", "MERGE_HEAD"]));
    assert!(!r.git(&["status", "--porcelain"]).contains("shared.txt"));
    // The independent task completed.
    assert_eq!(r.f.task("3")["status"], "completed");
    assert_eq!(r.read("three.txt"), "three\n");
    assert!(r.worktree_dirs().is_empty(), "{:?}", r.worktree_dirs());
    let report = r.f.p.read(".claude/specs/demo/report.md");
    assert!(report.contains("merge_conflict"), "{report}");
}

#[test]
fn worktree_dependent_task_starts_from_its_dependency() {
    let r =
        Repo::new("- [ ] 1. A\n- [ ] 2. B\n  - _Depends: 1_\n  - _Verify: `test -s b-saw.txt`_\n");
    r.action("1", "echo from-a > a.txt\n");
    r.action("2", "cat a.txt > b-saw.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(r.read("b-saw.txt"), "from-a\n");
    let runs = r.runs();
    assert!(runs[1].1.ends_with("demo-2"), "{runs:?}");
}

#[test]
fn worktree_dirty_tree_is_refused_and_allow_dirty_snapshots_it() {
    let r = Repo::new(TWO);
    r.action("1", "echo one > one.txt\n");
    r.f.p.write("shared.txt", "my uncommitted edit\n");
    r.f.p.write("notes.txt", "untracked notes\n");
    let exclude = r.root().join(".git/info/exclude");
    let exclude_before = std::fs::read_to_string(&exclude).unwrap_or_default();
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    let err = stderr(&out);
    assert!(err.contains("uncommitted changes"), "{err}");
    assert!(
        err.contains("shared.txt") && err.contains("--allow-dirty"),
        "{err}"
    );
    // Nothing changed: no agent ran, no state, no branch, the edits are as they were.
    assert!(r.runs().is_empty());
    assert!(!r.root().join(".claude/unified_state.json").exists());
    assert!(r.branches().is_empty());
    assert_eq!(r.read("shared.txt"), "my uncommitted edit\n");
    assert_eq!(
        std::fs::read_to_string(&exclude).unwrap_or_default(),
        exclude_before
    );

    let out = r.auto(&["--parallel", "2", "--allow-dirty"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let branches = r.branches();
    assert_eq!(branches.len(), 1, "{branches:?}");
    assert!(branches[0].starts_with("qw/demo/snapshot-"), "{branches:?}");
    let snap = &branches[0];
    assert_eq!(
        r.git(&["show", &format!("{snap}:shared.txt")]),
        "my uncommitted edit\n"
    );
    assert_eq!(
        r.git(&["show", &format!("{snap}:notes.txt")]),
        "untracked notes\n"
    );
    // The working tree still holds the user's edits; the task was merged beside them.
    assert_eq!(r.read("shared.txt"), "my uncommitted edit\n");
    assert_eq!(r.read("notes.txt"), "untracked notes\n");
    assert_eq!(r.read("one.txt"), "one\n");
    assert_eq!(r.git(&["show", "HEAD:shared.txt"]), "base\n");
}

#[test]
fn worktree_isolation_needs_git_and_none_works_without() {
    let f = Flow::new(TWO);
    f.p.write(".claude/specs/demo/requirements.md", "# R\n");
    f.p.write(".claude/specs/demo/design.md", "# D\n");
    f.p.write(".claude/specs/demo/tasks.md", TWO);
    let out = f.auto(&["--agent", "claude", "--isolate", "worktree"]);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert!(stderr(&out).contains("needs git"), "{}", diag(&out));
    assert!(!f.path().join(".claude/unified_state.json").exists());
    let out = f.auto(&["--agent", "claude", "--isolate", "none", "--parallel", "2"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
}

#[test]
fn worktree_sigkilled_run_resumes_leftover_worktree_without_losing_work() {
    let r = Repo::new("- [ ] 1. Fast\n- [ ] 2. Slow\n- [ ] 3. After fast\n  - _Depends: 1_\n");
    let flag = r.aux.path().join("slow");
    std::fs::write(&flag, "").unwrap();
    r.action("1", "echo one > one.txt\n");
    r.action(
        "2",
        &format!(
            "if [ -f two.txt ]; then cp two.txt two-saw.txt; else echo partial > two.txt; fi\n\
             if [ -e {} ]; then sleep 60; fi\necho done > two-done.txt\n",
            flag.display()
        ),
    );
    r.action("3", "sleep 0.3; echo three > three.txt\n");
    let cmd = r.agent_cmd();
    let mut child =
        r.f.cmd(&[
            "workflow-auto",
            "demo",
            "A demo feature",
            "--agent-cmd",
            &cmd,
            "--attempts",
            "1",
            "--parallel",
            "2",
            "--task-timeout",
            "120",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let wt2 = r.root().join(".claude/worktrees/demo-2");
    assert!(
        wait_until(Duration::from_secs(30), || {
            wt2.join("two.txt").is_file() && r.f.task("3")["status"] == "completed"
        }),
        "task 2 never wrote its partial work or task 3 never completed: {:?}",
        r.runs()
    );
    unsafe_kill(child.id() as i32, 9);
    child.wait().unwrap();
    assert!(wt2.join("two.txt").is_file());

    std::fs::remove_file(&flag).unwrap();
    let out =
        r.f.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    // Completed tasks were not redone; task 2 resumed on its partial work.
    assert_eq!(r.runs_of("1"), 1, "{:?}", r.runs());
    assert_eq!(r.runs_of("3"), 1, "{:?}", r.runs());
    assert_eq!(r.runs_of("2"), 2, "{:?}", r.runs());
    assert_eq!(r.read("two-saw.txt"), "partial\n");
    assert_eq!(r.read("two-done.txt"), "done\n");
    assert_eq!(r.read("one.txt"), "one\n");
    assert_eq!(r.read("three.txt"), "three\n");
    assert!(diag(&out).contains("resuming"), "{}", diag(&out));
    assert!(r.worktree_dirs().is_empty(), "{:?}", r.worktree_dirs());
    assert!(r.branches().is_empty(), "{:?}", r.branches());
    assert_eq!(r.registered_worktrees(), 1);
    assert!(pids_with_env("QW_TEST_MARKER", &r.f.guard.0).is_empty());
}

#[test]
fn worktree_prune_removes_orphans_and_keeps_unmerged_branches() {
    let r = Repo::new(TWO);
    let wt = |n: &str| r.root().join(format!(".claude/worktrees/demo-{n}"));
    for n in ["1", "2", "3", "4"] {
        let p = wt(n).display().to_string();
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
    // 2: a commit of its own; 3: uncommitted work; 4: its directory vanished.
    std::fs::write(wt("2").join("two.txt"), "two\n").unwrap();
    r.git_cmd(&wt("2"), &["add", "two.txt"]);
    assert!(
        r.git_cmd(&wt("2"), &["commit", "-q", "-m", "two"])
            .status
            .success()
    );
    std::fs::write(wt("3").join("three.txt"), "three\n").unwrap();
    std::fs::remove_dir_all(wt("4")).unwrap();

    // While a workflow of the spec holds its lock, nothing is touched.
    let lock_path = r.root().join(".claude/runs/.demo.workflow.lock");
    std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let held = std::fs::File::create(&lock_path).unwrap();
    held.try_lock().unwrap();
    let out = r.f.run(&["--json", "worktrees"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let v = last_json(&out);
    let states: Vec<&str> = v["worktrees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["locked"; 4], "{v}");
    let out = r.f.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(r.worktree_dirs().len(), 3);
    drop(held);

    let out = r.f.run(&["--json", "worktrees"]);
    let v = last_json(&out);
    let e3 = v["worktrees"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["task"] == "3")
        .unwrap()
        .clone();
    assert_eq!(e3["state"], "orphaned", "{v}");
    assert_eq!(e3["uncommitted_changes"], true, "{v}");

    let out = r.f.run(&["--json", "worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let pruned = last_json(&out)["pruned"].clone();
    assert_eq!(
        pruned["kept_branches"][0]["branch"], "qw/demo/2",
        "{pruned}"
    );
    assert_eq!(
        pruned["kept_branches"][0]["unmerged_commits"], 1,
        "{pruned}"
    );
    assert_eq!(
        pruned["salvaged"],
        serde_json::json!(["qw/demo/3"]),
        "{pruned}"
    );
    let err = stderr(&out);
    assert!(err.contains("kept branch `qw/demo/2`"), "{err}");
    assert!(err.contains("kept branch `qw/demo/3`"), "{err}");
    assert!(r.worktree_dirs().is_empty(), "{:?}", r.worktree_dirs());
    assert_eq!(
        r.registered_worktrees(),
        1,
        "stale git worktree entries remain"
    );
    assert_eq!(r.branches(), vec!["qw/demo/2", "qw/demo/3"]);
    assert_eq!(r.git(&["show", "qw/demo/2:two.txt"]), "two\n");
    assert_eq!(r.git(&["show", "qw/demo/3:three.txt"]), "three\n");
    // The listing now shows the kept branches as unmerged.
    let v = last_json(&r.f.run(&["--json", "worktrees"]));
    let states: Vec<&str> = v["worktrees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["unmerged", "unmerged"], "{v}");

    // workflow-reset prunes the spec's worktrees too.
    let p = wt("5").display().to_string();
    r.git(&["worktree", "add", "-q", "-b", "qw/demo/5", &p, "main"]);
    r.f.p.write(".claude/unified_state.json", "{}");
    let out = r.f.run(&["workflow-reset", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(r.worktree_dirs().is_empty(), "{:?}", r.worktree_dirs());
    assert_eq!(r.branches(), vec!["qw/demo/2", "qw/demo/3"]);
}

#[test]
fn worktree_that_cannot_be_made_fails_only_its_task() {
    let r = Repo::new(TWO);
    r.action("2", "echo two > two.txt\n");
    // A plain file where task 1's worktree would go.
    std::fs::create_dir_all(r.root().join(".claude/worktrees")).unwrap();
    std::fs::write(r.root().join(".claude/worktrees/demo-1"), "in the way\n").unwrap();
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(r.runs_of("1"), 0);
    assert_eq!(r.read("two.txt"), "two\n");
    let t1 = r.f.task("1");
    assert_eq!(t1["status"], "failed", "{t1}");
    assert!(t1["error"].as_str().unwrap().contains("worktree"), "{t1}");
    assert_eq!(r.f.task("2")["status"], "completed");
    assert_eq!(r.read(".claude/worktrees/demo-1"), "in the way\n");
}
