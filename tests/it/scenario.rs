//! The seed's Quick Start and Daily Development Workflow, command by command, in a fresh
//! temporary project: each exit code and what each command leaves on disk (state,
//! backups, ticked tasks, report).
//!
//! Run three ways: on the machine as it is; while every CPU is kept busy by busy loops
//! this test starts and ends by pid (default limits: the progress guarantee must let it
//! finish); and in a git repository whose `.gitignore` lists `.claude/`, with
//! `--parallel 3`. Every command is bounded by a generous harness timeout (its whole
//! process group is killed past it); nothing asserts on speed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::support::*;

/// How long one command may take before the harness gives up on it. Far above what any
/// step needs on a loaded 2-CPU machine: it only turns a hang into a failure.
const HARNESS_TIMEOUT: Duration = Duration::from_secs(300);

/// The project the scenario runs in, and how it runs `qw`.
struct Scenario {
    p: TestProject,
    /// Where commands' stdout and stderr go (outside the project and its repository).
    scratch: tempfile::TempDir,
    marker: String,
    /// Extra flags for `workflow-auto` (`--parallel 3`).
    run_flags: Vec<&'static str>,
    git: bool,
}

impl Scenario {
    fn new(marker: &str, git: bool, run_flags: Vec<&'static str>) -> Scenario {
        // A fresh project: no `.claude/` at all, as a new user has.
        let s = Scenario {
            p: TestProject::bare(),
            scratch: tempfile::tempdir().unwrap(),
            marker: marker.to_owned(),
            run_flags,
            git,
        };
        if git {
            s.p.write(".gitignore", ".claude/\n.qw-runtime/\n");
            s.p.write("README.md", "# demo\n");
            s.git(&["init", "-q", "-b", "main"]);
            s.git(&["add", "-A"]);
            s.git(&["commit", "-q", "-m", "init"]);
        }
        s
    }

    fn git(&self, args: &[&str]) -> String {
        let mut c = Command::new("git");
        c.arg("-C").arg(self.p.path()).args(args);
        for (k, v) in GIT_ENV {
            c.env(k, v);
        }
        let out = bounded(c, self.scratch.path());
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
        stdout(&out)
    }

    /// `qw ARGS…` bounded by [`HARNESS_TIMEOUT`].
    fn qw(&self, args: &[&str]) -> Output {
        let mut c = self.p.qw(args);
        c.env("QW_TEST_MARKER", &self.marker);
        if self.git {
            for (k, v) in GIT_ENV {
                c.env(k, v);
            }
        }
        bounded(c, self.scratch.path())
    }

    /// `qw ARGS…`, asserting its exit code; returns stdout and stderr together.
    fn step(&self, args: &[&str], code: i32) -> String {
        let out = self.qw(args);
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(code), "qw {args:?}:\n{all}");
        all
    }

    fn claude(&self) -> PathBuf {
        self.p.claude()
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_str(&self.p.read(".claude/unified_state.json")).unwrap()
    }

    fn backups(&self, prefix: &str) -> Vec<String> {
        names_in(&self.claude().join("backups/state"))
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect()
    }

    /// `workflow-auto NAME DESC --agent offline` plus the scenario's flags; asserts the
    /// whole workflow completed and left its documents, ticks and report.
    fn workflow_auto(&self, name: &str) {
        let mut args = vec!["workflow-auto", name, "Test feature for the scenario"];
        args.extend(["--agent", "offline"]);
        args.extend(self.run_flags.iter().copied());
        let all = self.step(&args, 0);
        self.assert_completed(name, &all);
    }

    fn assert_completed(&self, name: &str, all: &str) {
        assert!(
            all.contains("workflow completed: 3/3 tasks completed by the offline agent"),
            "{all}"
        );
        let spec = format!(".claude/specs/{name}");
        for doc in ["requirements.md", "design.md", "tasks.md", "report.md"] {
            assert!(
                self.p.path().join(&spec).join(doc).is_file(),
                "{doc} missing:\n{all}"
            );
        }
        let tasks = self.p.read(&format!("{spec}/tasks.md"));
        assert!(!tasks.contains("- [ ]"), "a task is not ticked:\n{tasks}");
        assert_eq!(tasks.matches("- [x]").count(), 3, "{tasks}");
        let report = self.p.read(&format!("{spec}/report.md"));
        assert!(report.contains("| agent | offline |"), "{report}");
        assert!(report.contains("**No code was written.**"), "{report}");
        let state = self.state();
        let s = &state["specifications"][name];
        assert_eq!(s["current_phase"], "complete", "{s}");
        for id in ["1", "2", "3"] {
            assert_eq!(s["tasks"][id]["status"], "completed", "{s}");
        }
        assert_eq!(state["workflow"]["global_phase"], "complete");
    }
}

/// Run `c` with stdout and stderr in files (no pipe can fill up), in a process group of
/// its own; past [`HARNESS_TIMEOUT`] the whole group is killed and the test fails.
fn bounded(mut c: Command, scratch: &Path) -> Output {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    std::fs::create_dir_all(scratch).unwrap();
    let out_path = scratch.join("stdout");
    let err_path = scratch.join("stderr");
    c.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0);
    let mut child = c.spawn().unwrap();
    let pgid = i32::try_from(child.id()).unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HARNESS_TIMEOUT {
            kill_group(pgid, 9);
            let _ = child.wait();
            panic!(
                "{c:?} still ran after {HARNESS_TIMEOUT:?} (the harness limit); stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status: std::process::ExitStatus::from_raw(status.into_raw()),
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn age(path: &Path, days: u64) {
    let t = SystemTime::now() - Duration::from_secs(days * 86_400);
    std::fs::File::open(path).unwrap().set_modified(t).unwrap();
}

/// The seed's Quick Start, then its Daily Development Workflow.
fn quick_start_and_daily_workflow(s: &Scenario) {
    // --- Quick Start ---
    // 1. `qw dev-mode on`: dev mode in a project that has nothing yet.
    let all = s.step(&["dev-mode", "on"], 0);
    assert!(all.contains("development mode: on"), "{all}");
    let settings: serde_json::Value =
        serde_json::from_str(&s.p.read(".claude/settings.local.json")).unwrap();
    assert_eq!(settings["development_mode"]["enabled"], true);
    let all = s.step(&["dev-mode", "status"], 0);
    assert!(all.contains("max_concurrent 4 (dev mode)"), "{all}");

    // 2. `qw state-backup "pre-testing-backup"`: no state yet, so the initial state is
    //    written and backed up.
    s.step(&["state-backup", "pre-testing-backup"], 0);
    assert!(s.claude().join("unified_state.json").is_file());
    let backup = s.claude().join("backups/state/pre-testing-backup.json");
    let initial: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&backup).unwrap()).unwrap();
    assert_eq!(initial["specifications"], serde_json::json!({}));

    // 3. `qw workflow-auto test-feature …`: the whole workflow, with dev mode's
    //    auto_backup before each phase.
    s.workflow_auto("test-feature");
    let before_phase = s.backups("pre_test-feature_");
    for phase in ["requirements_generation", "implementation", "validation"] {
        assert!(
            before_phase.iter().any(|n| n.contains(phase)),
            "no auto_backup before {phase}: {before_phase:?}"
        );
    }

    // A suggestion naming the spec is pending when the spec is hard-reset.
    s.step(&["suggest", "/workflow-continue test-feature"], 0);

    // 4. `qw workflow-reset test-feature --hard`: the spec folder copied to backups,
    //    generated documents removed, phase and global phase back to design.
    let all = s.step(&["workflow-reset", "test-feature", "--hard", "--yes"], 0);
    let spec = s.p.path().join(".claude/specs/test-feature");
    assert!(spec.join("requirements.md").is_file());
    for gone in ["design.md", "tasks.md", "report.md"] {
        assert!(!spec.join(gone).exists(), "{gone} still there:\n{all}");
    }
    let copies = names_in(&s.claude().join("backups/workflows"));
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(
        s.claude()
            .join("backups/workflows")
            .join(&copies[0])
            .join("tasks.md")
            .is_file()
    );
    let state = s.state();
    assert_eq!(
        state["specifications"]["test-feature"]["current_phase"],
        "design_creation"
    );
    assert_eq!(state["workflow"]["global_phase"], "design_creation");
    assert!(!s.claude().join("next_command.txt").exists(), "{all}");
    assert!(
        s.p.read(".claude/next_command.failed.txt")
            .contains("/workflow-continue test-feature"),
    );

    // 5. `qw state-backup --restore "pre-testing-backup.json"`: back to before the test.
    s.step(&["state-backup", "--restore", "pre-testing-backup.json"], 0);
    assert_eq!(s.state()["specifications"], serde_json::json!({}));
    assert_eq!(s.backups("pre_restore_").len(), 1);

    // 6. `qw dev-mode off`.
    s.step(&["dev-mode", "off"], 0);
    let settings: serde_json::Value =
        serde_json::from_str(&s.p.read(".claude/settings.local.json")).unwrap();
    assert_eq!(settings["development_mode"]["enabled"], false);
    let all = s.step(&["dev-mode", "status"], 0);
    assert!(all.contains("max_concurrent 8 (default)"), "{all}");

    // --- Daily Development Workflow ---
    // Nothing unfinished: `workflow-continue` without a name says so (exit 2).
    let all = s.step(&["workflow-continue"], 2);
    assert!(all.contains("no unfinished workflow"), "{all}");

    // Start a feature, reset it, and continue it without naming it.
    s.workflow_auto("daily-feature");
    s.step(&["workflow-reset", "daily-feature", "--hard", "--yes"], 0);
    let all = s.step(&["workflow-continue"], 0);
    assert!(all.contains("continuing `daily-feature`"), "{all}");
    s.assert_completed("daily-feature", &all);

    // Two unfinished specs: listed, exit 2, nothing run.
    s.step(&["spec-create", "next-a", "First next feature"], 0);
    s.step(&["spec-create", "next-b", "Second next feature"], 0);
    let all = s.step(&["workflow-continue"], 2);
    assert!(
        all.contains("2 unfinished workflows") && all.contains("next-a") && all.contains("next-b"),
        "{all}"
    );

    // Status, a named backup, the list.
    s.step(&["status"], 0);
    s.step(&["state-backup", "before-refactor"], 0);
    let all = s.step(&["state-backup", "--list"], 0);
    assert!(all.contains("before-refactor"), "{all}");

    // `--clean` (7 days): old backups and old spec copies go, the newest of each stay.
    let state_dir = s.claude().join("backups/state");
    let all_backups = names_in(&state_dir);
    for n in &all_backups {
        if n != "before-refactor.json" {
            age(&state_dir.join(n), 30);
        }
    }
    let wf = s.claude().join("backups/workflows");
    let copies = names_in(&wf);
    assert_eq!(copies.len(), 2, "{copies:?}");
    // An older copy of daily-feature, from a reset long ago.
    let older = wf.join("daily-feature_20200101_000000");
    std::fs::create_dir_all(&older).unwrap();
    std::fs::write(older.join("tasks.md"), "- [ ] 1. Old\n").unwrap();
    age(&older, 40);
    for c in &copies {
        age(&wf.join(c), 30);
    }
    let all = s.step(&["state-backup", "--clean"], 0);
    assert_eq!(names_in(&state_dir), ["before-refactor.json"], "{all}");
    assert_eq!(
        names_in(&wf),
        copies,
        "the newest copy of each spec is kept:\n{all}"
    );
}

#[test]
fn scenario_quick_start_and_daily_workflow() {
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let s = Scenario::new(&m, false, Vec::new());
    quick_start_and_daily_workflow(&s);
}

#[test]
fn scenario_on_a_machine_whose_cpus_are_all_busy() {
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let _busy = BusyLoops::start(&m);
    // Default limits: the busy loops push the load above them, and the progress guarantee
    // (nothing of qw's running: one task may start) must carry every step through.
    let s = Scenario::new(&m, false, Vec::new());
    quick_start_and_daily_workflow(&s);
}

#[test]
fn scenario_in_a_git_repository_that_ignores_claude_with_parallel_3() {
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let s = Scenario::new(&m, true, vec!["--parallel", "3"]);
    quick_start_and_daily_workflow(&s);
    // The work was merged back; no task worktree or branch is left behind.
    let branches = s.git(&["branch", "--list", "qw/*"]);
    assert!(branches.trim().is_empty(), "{branches}");
    let status = s.git(&["status", "--porcelain"]);
    assert!(status.trim().is_empty(), "{status}");
}
