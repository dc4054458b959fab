//! Task worktrees (CONTRACT §10) on real git repositories made by the tests, with a
//! command agent (`--agent-cmd`) that runs a per-task action script in its cwd (the
//! task's worktree) and logs where it ran. The harness here is shared with
//! `worktree_safety` (layouts, two workflows at once, agents moving branches, broken
//! worktrees).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// The agent: `agent TASK PHASE`. Only implementation does anything: it logs
/// `SPEC TASK PWD QW_WORKTREE QW_TASK_PORT` to $AGENT_LOG, then runs $ACTIONS/SPEC-TASK
/// (else $ACTIONS/TASK) with sh.
const AGENT: &str = r#"#!/bin/sh
task="$1"; phase="$2"
[ "$phase" = implementation ] || exit 0
echo "$QW_SPEC $task $(pwd -P) $QW_WORKTREE $QW_TASK_PORT" >> "$AGENT_LOG"
if [ -f "$ACTIONS/$QW_SPEC-$task" ]; then sh -e "$ACTIONS/$QW_SPEC-$task" || exit 1
elif [ -f "$ACTIONS/$task" ]; then sh -e "$ACTIONS/$task" || exit 1; fi
echo "did task $task"
"#;

/// How a test repository treats `.claude/` (CONTRACT §10: every layout works the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `.claude/` committed like any folder.
    Tracked,
    /// `.claude/` in `.gitignore`.
    Ignored,
    /// `.claude/*` ignored but `!.claude/specs/` tracked on purpose.
    SpecsTracked,
    /// Nested `.gitignore` files: `.claude/.gitignore` ignores everything in it,
    /// `src/.gitignore` ignores `*.tmp`.
    Nested,
    /// `.claude/` in a global excludes file (`core.excludesFile`).
    GlobalExcludes,
    /// `.claude/` in `.git/info/exclude`.
    InfoExclude,
}

/// Where the test's task worktrees go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Root {
    /// `quantumwala.worktree_root` = `<aux>/wt`: everything stays in the test's temp dirs.
    Aux,
    /// No setting: the default, beside the repository.
    Default,
}

/// A git project: Flow's permissive settings, spec documents in place (so only the
/// implementation and validation phases run), the agent, everything committed on `main`.
pub(crate) struct Repo {
    pub(crate) f: Flow,
    /// Outside the repository: the agent log, the action scripts, the worktree root.
    pub(crate) aux: tempfile::TempDir,
    /// The environment of every git command (the test's and qw's).
    git_env: Vec<(String, String)>,
}

/// Generous bound on one qw command: a hang fails the test instead of the suite.
pub(crate) const HARNESS_TIMEOUT: Duration = Duration::from_secs(240);

impl Repo {
    pub(crate) fn new(tasks_md: &str) -> Repo {
        Repo::build(tasks_md, Layout::Tracked, Root::Aux)
    }

    pub(crate) fn build(tasks_md: &str, layout: Layout, root: Root) -> Repo {
        Repo::build_with_env(tasks_md, layout, root, &[])
    }

    /// [`Repo::new`] with the refs kept in reftable tables (`git init
    /// --ref-format=reftable`: no `.git/logs` files).
    pub(crate) fn reftable(tasks_md: &str) -> Repo {
        Repo::build_with_env(
            tasks_md,
            Layout::Tracked,
            Root::Aux,
            &[("GIT_DEFAULT_REF_FORMAT", "reftable")],
        )
    }

    /// [`Repo::build`] with `env` added to every git command (the test's and qw's).
    pub(crate) fn build_with_env(
        tasks_md: &str,
        layout: Layout,
        root: Root,
        env: &[(&str, &str)],
    ) -> Repo {
        let mut f = Flow::new(tasks_md);
        let aux = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(aux.path().join("actions")).unwrap();
        let mut git_env: Vec<(String, String)> = GIT_ENV
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        git_env.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        if layout == Layout::GlobalExcludes {
            let excludes = aux.path().join("global-excludes");
            std::fs::write(&excludes, ".claude/\n").unwrap();
            let config = aux.path().join("gitconfig");
            std::fs::write(
                &config,
                format!("[core]\n\texcludesFile = {}\n", excludes.display()),
            )
            .unwrap();
            git_env.push(("GIT_CONFIG_GLOBAL".into(), config.display().to_string()));
        }
        for (k, v) in &git_env {
            f.set(k, v);
        }
        f.set(
            "AGENT_LOG",
            &aux.path().join("agent.log").display().to_string(),
        );
        f.set("ACTIONS", &aux.path().join("actions").display().to_string());
        let main = f.path().display().to_string();
        f.set("MAIN", &main);
        let mut settings = serde_json::json!({
            "resource_limits": {"max_load": 1000, "max_memory": 1.0, "high_impact_load": 1000}
        });
        if root == Root::Aux {
            settings["quantumwala"] =
                serde_json::json!({"worktree_root": aux.path().join("wt").display().to_string()});
        }
        f.p.write(".claude/settings.local.json", &settings.to_string());
        f.p.script("bin/agent", AGENT);
        f.p.write(".claude/specs/demo/requirements.md", "# Requirements\n");
        f.p.write(".claude/specs/demo/design.md", "# Design\n");
        f.p.write(".claude/specs/demo/tasks.md", tasks_md);
        f.p.write("shared.txt", "base\n");
        f.p.write("src/keep.txt", "kept\n");
        let ignore = match layout {
            Layout::Ignored => ".qw-runtime/\nfake.log*\n.claude/\n",
            Layout::SpecsTracked => ".qw-runtime/\nfake.log*\n.claude/*\n!.claude/specs/\n",
            _ => ".qw-runtime/\nfake.log*\n",
        };
        f.p.write(".gitignore", ignore);
        if layout == Layout::Nested {
            f.p.write(".claude/.gitignore", "*\n");
            f.p.write("src/.gitignore", "*.tmp\n");
        }
        let r = Repo { f, aux, git_env };
        r.git(&["init", "-q", "-b", "main"]);
        if layout == Layout::InfoExclude {
            let ex = r.root().join(".git/info/exclude");
            let mut text = std::fs::read_to_string(&ex).unwrap_or_default();
            text.push_str(".claude/\n");
            std::fs::write(&ex, text).unwrap();
        }
        r.git(&["add", "-A"]);
        r.git(&["commit", "-q", "-m", "init"]);
        // A second commit, so tasks can reset or rebase onto an older one.
        r.f.p.write("second.txt", "second\n");
        r.git(&["add", "second.txt"]);
        r.git(&["commit", "-q", "-m", "second"]);
        r
    }

    pub(crate) fn root(&self) -> &Path {
        self.f.path()
    }

    /// Where qw puts this repository's task worktrees (the container).
    pub(crate) fn container(&self) -> Option<PathBuf> {
        let wt = self.aux.path().join("wt");
        match std::fs::read_dir(&wt) {
            Ok(rd) => rd.flatten().map(|e| e.path()).next(),
            Err(_) => None,
        }
    }

    pub(crate) fn git_cmd(&self, dir: &Path, args: &[&str]) -> Output {
        let mut c = Command::new("git");
        c.arg("-C").arg(dir).args(args).stdin(Stdio::null());
        for (k, v) in &self.git_env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    /// Run git in the project; panics unless it succeeds; stdout.
    pub(crate) fn git(&self, args: &[&str]) -> String {
        let out = self.git_cmd(self.root(), args);
        assert!(out.status.success(), "git {args:?}: {}", diag(&out));
        stdout(&out)
    }

    /// The environment of every git command (the test's and qw's).
    pub(crate) fn git_env_pairs(&self) -> &[(String, String)] {
        &self.git_env
    }

    pub(crate) fn git_ok(&self, args: &[&str]) -> bool {
        self.git_cmd(self.root(), args).status.success()
    }

    /// The action task `id` performs (a sh script run in its cwd, `sh -e`).
    pub(crate) fn action(&self, id: &str, script: &str) {
        std::fs::write(self.aux.path().join("actions").join(id), script).unwrap();
    }

    pub(crate) fn agent_cmd(&self) -> String {
        format!(
            "{} {{task_id}} {{phase}}",
            self.root().join("bin/agent").display()
        )
    }

    pub(crate) fn auto(&self, extra: &[&str]) -> Output {
        let cmd = self.agent_cmd();
        let mut args = vec![
            "workflow-auto",
            "demo",
            "A demo feature",
            "--retry-delay",
            "0.1",
            "--task-timeout",
            "60",
            "--agent-cmd",
            cmd.as_str(),
        ];
        if !extra.contains(&"--attempts") {
            args.extend(["--attempts", "1"]);
        }
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// The workflow with the agent command, one attempt, two tasks at once and
    /// `task_timeout` seconds per run, in the background (the test kills it).
    pub(crate) fn start_two_at_once(&self, task_timeout: &str) -> std::process::Child {
        let cmd = self.agent_cmd();
        self.f.start_auto(&[
            "--agent-cmd",
            &cmd,
            "--attempts",
            "1",
            "--parallel",
            "2",
            "--task-timeout",
            task_timeout,
        ])
    }

    /// Run qw to completion, bounded by [`HARNESS_TIMEOUT`].
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        bounded(self.f.cmd(args), HARNESS_TIMEOUT)
    }

    /// Agent log lines: (task, pwd, QW_WORKTREE, QW_TASK_PORT) of spec `demo`.
    pub(crate) fn runs(&self) -> Vec<(String, String, String, String)> {
        self.runs_in("demo")
    }

    pub(crate) fn runs_in(&self, spec: &str) -> Vec<(String, String, String, String)> {
        std::fs::read_to_string(self.aux.path().join("agent.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let w: Vec<String> = l.split(' ').map(str::to_owned).collect();
                (w.first().map(String::as_str) == Some(spec)).then(|| {
                    (
                        w.get(1).cloned().unwrap_or_default(),
                        w.get(2).cloned().unwrap_or_default(),
                        w.get(3).cloned().unwrap_or_default(),
                        w.get(4).cloned().unwrap_or_default(),
                    )
                })
            })
            .collect()
    }

    pub(crate) fn runs_of(&self, id: &str) -> usize {
        self.runs().iter().filter(|r| r.0 == id).count()
    }

    pub(crate) fn branches(&self) -> Vec<String> {
        self.git(&[
            "for-each-ref",
            "--format=%(refname:short)",
            "refs/heads/qw/",
        ])
        .lines()
        .map(str::to_owned)
        .collect()
    }

    /// Entries of the worktree container (empty when it is gone).
    pub(crate) fn worktree_dirs(&self) -> Vec<PathBuf> {
        match self.container() {
            Some(c) => std::fs::read_dir(c)
                .map(|rd| rd.flatten().map(|e| e.path()).collect())
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }

    pub(crate) fn legacy_dirs(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.root().join(".claude/worktrees")) {
            Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    pub(crate) fn registered_worktrees(&self) -> usize {
        self.git(&["worktree", "list", "--porcelain"])
            .lines()
            .filter(|l| l.starts_with("worktree "))
            .count()
    }

    pub(crate) fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// A task's state entry in `spec`.
    pub(crate) fn task_in(&self, spec: &str, id: &str) -> serde_json::Value {
        self.f.state()["specifications"][spec]["tasks"][id].clone()
    }

    /// Nothing lost, nothing half done: every file is on `main` and in the working
    /// tree, no merge in progress, no unmerged path, no stale `index.lock`, nothing of
    /// qw's left registered or on disk, no process of the test alive.
    pub(crate) fn assert_all_merged(&self, files: &[&str]) {
        for f in files {
            assert!(
                self.git_ok(&["cat-file", "-e", &format!("main:{f}")]),
                "`{f}` is not on main: {}",
                self.git(&["log", "--stat", "--format=%s", "main"])
            );
            assert!(
                self.root().join(f).is_file(),
                "`{f}` is not in the working tree"
            );
        }
        self.assert_no_half_done_git();
        assert_eq!(
            self.registered_worktrees(),
            1,
            "{}",
            self.git(&["worktree", "list"])
        );
        assert!(
            self.worktree_dirs().is_empty(),
            "{:?}",
            self.worktree_dirs()
        );
        self.assert_no_process();
    }

    /// No process the test started (qw, agents, their children) is alive.
    pub(crate) fn assert_no_process(&self) {
        assert!(
            pids_with_env("QW_TEST_MARKER", &self.f.guard.0).is_empty(),
            "processes of the test are still alive"
        );
    }

    pub(crate) fn assert_no_half_done_git(&self) {
        assert!(
            !self.git_ok(&["rev-parse", "-q", "--verify", "MERGE_HEAD"]),
            "main is left mid-merge"
        );
        assert_eq!(
            self.git(&["diff", "--name-only", "--diff-filter=U"]),
            "",
            "unmerged paths on main"
        );
        assert!(
            !self.root().join(".git/index.lock").exists(),
            "a stale index.lock is left"
        );
        // Nothing qw did shows as a change outside `.claude/`.
        let status = self.git(&["status", "--porcelain"]);
        assert!(
            status.lines().all(|l| l[3..].starts_with(".claude/")),
            "{status}"
        );
    }
}

/// Run `cmd` to completion with its output in files (no pipe can fill), killing it and
/// failing the test if it takes longer than `limit`.
pub(crate) fn bounded(mut cmd: Command, limit: Duration) -> Output {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    cmd.stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .stdin(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            unsafe_kill(child.id() as i32, 9);
            let _ = child.wait();
            panic!("qw hung: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |mut f: std::fs::File| {
        use std::io::{Read, Seek};
        let mut v = Vec::new();
        f.rewind().unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    };
    Output {
        status,
        stdout: read(out),
        stderr: read(err),
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
    let root = r.aux.path().join("wt").canonicalize().unwrap();
    for (task, pwd, wt, port) in &runs {
        assert!(
            Path::new(pwd).starts_with(&root),
            "{pwd} not in {}",
            root.display()
        );
        assert!(pwd.ends_with(&format!("/demo-{task}")), "{pwd}");
        assert!(!pwd.contains(".claude"), "{pwd}");
        assert!(wt.ends_with(&format!("demo-{task}")), "{wt}");
        assert!(port.parse::<u16>().unwrap() > 0);
    }
    assert_ne!(runs[0].3, runs[1].3, "two tasks got the same port");
    // The container goes with its last worktree.
    assert_eq!(r.container(), None);
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
    let mut child = r.start_two_at_once("120");
    let wt2 = || r.container().unwrap_or_default().join("demo-2");
    assert!(
        wait_until(Duration::from_secs(60), || {
            wt2().join("two.txt").is_file() && r.f.task("3")["status"] == "completed"
        }),
        "task 2 never wrote its partial work or task 3 never completed: {:?}",
        r.runs()
    );
    sigkill(&mut child);
    assert!(wt2().join("two.txt").is_file());

    std::fs::remove_file(&flag).unwrap();
    let out = r.run(&["workflow-continue", "demo", "--retry-delay", "0.1"]);
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
fn worktree_prune_of_the_old_root_removes_orphans_and_keeps_unmerged_branches() {
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
    let out = r.run(&["--json", "worktrees"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let v = last_json(&out);
    let states: Vec<&str> = v["worktrees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["locked"; 4], "{v}");
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(r.legacy_dirs().len(), 3);
    drop(held);

    let out = r.run(&["--json", "worktrees"]);
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

    let out = r.run(&["--json", "worktrees", "--prune"]);
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
    assert!(r.legacy_dirs().is_empty(), "{:?}", r.legacy_dirs());
    assert_eq!(
        r.registered_worktrees(),
        1,
        "stale git worktree entries remain"
    );
    assert_eq!(r.branches(), vec!["qw/demo/2", "qw/demo/3"]);
    assert_eq!(r.git(&["show", "qw/demo/2:two.txt"]), "two\n");
    assert_eq!(r.git(&["show", "qw/demo/3:three.txt"]), "three\n");
    // The listing now shows the kept branches as unmerged.
    let v = last_json(&r.run(&["--json", "worktrees"]));
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
    let out = r.run(&["workflow-reset", "demo"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(r.legacy_dirs().is_empty(), "{:?}", r.legacy_dirs());
    assert_eq!(r.branches(), vec!["qw/demo/2", "qw/demo/3"]);
}

#[test]
fn worktree_that_cannot_be_made_fails_only_its_task_as_workspace_error() {
    let r = Repo::new(TWO);
    r.action("2", "echo two > two.txt\n");
    // Task 1's branch is checked out in a worktree of the user's: qw must not take it.
    let mine = r.aux.path().join("users-own");
    r.git(&[
        "worktree",
        "add",
        "-q",
        "-b",
        "qw/demo/1",
        &mine.display().to_string(),
        "main",
    ]);
    let out = r.auto(&["--parallel", "2", "--attempts", "3"]);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(
        r.runs_of("1"),
        0,
        "the agent never ran for a worktree never made"
    );
    assert_eq!(r.read("two.txt"), "two\n");
    let t1 = r.f.task("1");
    assert_eq!(t1["status"], "failed", "{t1}");
    assert_eq!(t1["outcome"], "workspace_error", "{t1}");
    let err = t1["error"].as_str().unwrap();
    // Named with the command that frees the branch (rev1 L3), not blamed on qw's git.
    assert!(
        err.contains("was not started") && err.contains("users-own"),
        "{err}"
    );
    assert!(err.contains("switch --detach"), "{err}");
    assert_eq!(r.f.task("2")["status"], "completed");
    // The user's worktree is untouched.
    assert!(mine.join("shared.txt").is_file());
    assert!(r.git(&["worktree", "list"]).contains("users-own"));
    let report = r.f.p.read(".claude/specs/demo/report.md");
    assert!(report.contains("workspace_error"), "{report}");
}
