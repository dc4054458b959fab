//! rev6b G12, G13, G17 (and G3, G4, G6): task worktrees, `qw/` branches and qw's records
//! of them belong to the repository, not to the checkout qw runs in. Nothing removes a
//! task worktree whose workflow or agent is alive, from whichever checkout (or from
//! inside a task worktree) it is asked; a killed qw's agents are ended before their
//! worktrees go; the same spec does not run in two checkouts at once, and a branch a run
//! onto one target left is not resumed by a run onto another; "merged" means merged into
//! the target branch.
//!
//! Each test ends the processes it starts (by pid / process group) and asserts that no
//! process of it is left.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::moves::{cont, gate, has, open_gate, sha, task_dir, tasks};
use crate::support::*;
use crate::worktree::{HARNESS_TIMEOUT, Repo, bounded};

/// A second checkout of the repository, on a new branch `feature` (`git worktree add`).
fn feature_checkout(r: &Repo) -> PathBuf {
    let dir = r.aux.path().join("proj feature");
    r.git(&[
        "worktree",
        "add",
        "-q",
        "-b",
        "feature",
        &dir.display().to_string(),
    ]);
    dir
}

/// `qw -C <dir> <args>` with the test's environment.
fn qw_in(r: &Repo, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(qw_bin());
    c.arg("-C").arg(dir).args(args);
    for (k, v) in &r.f.env {
        c.env(k, v);
    }
    c.env("PATH", path_with(&dir.join("bin")))
        .env("MAIN", dir)
        .env("QW_RUNTIME_DIR", dir.join(".qw-runtime"))
        .env_remove("QW_RUN_ID")
        .stdin(Stdio::null());
    c
}

fn auto_args(r: &Repo) -> Vec<String> {
    [
        "workflow-auto",
        "demo",
        "A demo feature",
        "--retry-delay",
        "0.1",
        "--task-timeout",
        "120",
        "--attempts",
        "1",
        "--parallel",
        "2",
        "--agent-cmd",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([r.agent_cmd()])
    .collect()
}

/// `workflow-auto` in `dir`, in the background, in a process group of its own, its
/// output in files under the test's temp dir (`name.out`, `name.err`).
fn start_in(r: &Repo, dir: &Path, name: &str) -> Child {
    let args = auto_args(r);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = qw_in(r, dir, &args);
    let out = std::fs::File::create(r.aux.path().join(format!("{name}.out"))).unwrap();
    let err = std::fs::File::create(r.aux.path().join(format!("{name}.err"))).unwrap();
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    c.stdout(out).stderr(err).spawn().unwrap()
}

/// Wait for a run started by [`start_in`]; its exit code and output. A run still going
/// after the harness limit is killed (its group) and fails the test.
fn finish(r: &Repo, mut child: Child, name: &str) -> (i32, String) {
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > HARNESS_TIMEOUT {
            kill_group(child.id() as i32, 9);
            let _ = child.wait();
            panic!("qw hung: still running after {HARNESS_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |ext: &str| {
        std::fs::read_to_string(r.aux.path().join(format!("{name}.{ext}"))).unwrap_or_default()
    };
    (
        status.code().unwrap_or(-1),
        format!("{}{}", read("out"), read("err")),
    )
}

/// Wait (bounded) until the flag files `started-<id>` of every task in `ids` exist.
fn wait_started(r: &Repo, ids: &[&str]) {
    let all = || {
        ids.iter()
            .all(|i| r.aux.path().join(format!("started-{i}")).exists())
    };
    assert!(
        wait_until(Duration::from_secs(120), all),
        "the agents did not start"
    );
}

/// Task `i`: writes `f<i>.txt`, says it started, waits for the gate `go`, then writes
/// `f<i>b.txt` (what it writes after a prune must not be lost).
fn slow_task(r: &Repo, i: &str) -> String {
    format!(
        "echo {i} > f{i}.txt\ntouch {}\n{}echo {i}b > f{i}b.txt\n",
        r.aux.path().join(format!("started-{i}")).display(),
        gate(r, "go")
    )
}

fn text(o: &Output) -> String {
    diag(o)
}

// ---------------------------------------------------------------- G13

#[test]
fn worktree_fix7d_prune_in_another_checkout_leaves_a_running_workflows_worktrees() {
    // rev6b lw4.sh: `qw worktrees --prune` in the user's `feature` checkout removed
    // both running task worktrees of the main checkout's workflow under their agents.
    let r = Repo::new(&tasks(2));
    let feature = feature_checkout(&r);
    r.action("1", &slow_task(&r, "1"));
    r.action("2", &slow_task(&r, "2"));
    let child = start_in(&r, r.root(), "main");
    wait_started(&r, &["1", "2"]);
    let listed = bounded(qw_in(&r, &feature, &["worktrees"]), HARNESS_TIMEOUT);
    let pruned = bounded(
        qw_in(&r, &feature, &["worktrees", "--prune"]),
        HARNESS_TIMEOUT,
    );
    // From inside a task worktree, the same.
    let inside = bounded(
        qw_in(&r, &task_dir(&r, "1"), &["worktrees", "--prune"]),
        HARNESS_TIMEOUT,
    );
    let dirs_after = [task_dir(&r, "1").is_dir(), task_dir(&r, "2").is_dir()];
    std::fs::write(r.aux.path().join("gate-go"), "").unwrap();
    let (rc, run) = finish(&r, child, "main");
    assert_eq!(code(&pruned), 0, "{}", text(&pruned));
    for (out, what) in [(&pruned, "feature checkout"), (&inside, "task worktree")] {
        let t = text(out);
        for b in ["qw/demo/1", "qw/demo/2"] {
            assert!(
                t.contains(&format!("left `{b}` alone: its workflow runs (pid")),
                "{what}: {t}"
            );
        }
        assert!(!t.contains("removed worktree"), "{what}: {t}");
    }
    let l = stdout(&listed);
    assert_eq!(
        l.lines().filter(|x| x.contains(" locked ")).count(),
        2,
        "{l}"
    );
    assert!(!l.contains("orphaned"), "{l}");
    assert_eq!(dirs_after, [true, true]);
    assert_eq!(rc, 0, "{run}");
    for f in ["f1.txt", "f1b.txt", "f2.txt", "f2b.txt"] {
        assert!(has(&r, "main", f), "{f} not merged: {run}");
    }
    r.assert_no_process();
}

#[test]
fn worktree_fix7d_prune_by_an_agent_from_inside_its_worktree_leaves_the_run_alone() {
    // rev6b lw6.sh: task 1's agent runs `qw worktrees --prune` in its own worktree
    // (whose `.claude/` has no workflow lock): both worktrees were removed, 0/2.
    let r = Repo::new(&tasks(2));
    let prune_out = r.aux.path().join("prune1.out");
    r.action(
        "1",
        &format!(
            "echo 1 > f1.txt\n{}\n{} worktrees --prune > {} 2>&1 || true\n{}echo 1b > f1b.txt\n",
            format_args!(
                "n=0; while [ ! -e {} ] && [ $n -lt 1800 ]; do sleep 0.05; n=$((n+1)); done",
                r.aux.path().join("started-2").display()
            ),
            qw_bin().display(),
            prune_out.display(),
            open_gate(&r, "go"),
        ),
    );
    r.action("2", &slow_task(&r, "2"));
    let out = r.auto(&["--parallel", "2"]);
    let t = text(&out);
    let p = std::fs::read_to_string(&prune_out).unwrap_or_default();
    assert_eq!(code(&out), 0, "{t}\n{p}");
    assert!(p.contains("left `qw/demo/2` alone"), "{p}");
    assert!(!p.contains("removed worktree"), "{p}");
    for f in ["f1.txt", "f1b.txt", "f2.txt", "f2b.txt"] {
        assert!(has(&r, "main", f), "{f} not merged: {t}\n{p}");
    }
    r.assert_no_process();
}

#[test]
fn worktree_fix7d_hard_reset_in_another_checkout_is_refused_while_the_spec_runs() {
    // rev6b lw5.sh: the reset pruned the running worktrees and renamed the running
    // branches; the run then said task 1 "held no commit" although it had one.
    let r = Repo::new(&tasks(2));
    let feature = feature_checkout(&r);
    r.action(
        "1",
        &format!(
            "echo 1 > f1.txt\ngit add f1.txt\ngit commit -qm f1\ntouch {}\n{}echo 1b > f1b.txt\n",
            r.aux.path().join("started-1").display(),
            gate(&r, "go")
        ),
    );
    r.action("2", &slow_task(&r, "2"));
    let child = start_in(&r, r.root(), "main");
    wait_started(&r, &["1", "2"]);
    let reset = bounded(
        qw_in(&r, &feature, &["workflow-reset", "demo", "--hard", "--yes"]),
        HARNESS_TIMEOUT,
    );
    let branches = r.branches();
    std::fs::write(r.aux.path().join("gate-go"), "").unwrap();
    let (rc, run) = finish(&r, child, "main");
    let t = text(&reset);
    assert_eq!(code(&reset), 2, "{t}");
    assert!(
        t.contains("is running in another checkout of this repository (pid"),
        "{t}"
    );
    assert!(
        branches.iter().all(|b| !b.contains('@')),
        "{branches:?}: {t}"
    );
    // Nothing of the feature checkout's spec was touched either.
    assert!(feature.join(".claude/specs/demo/tasks.md").is_file());
    assert_eq!(rc, 0, "{run}");
    for f in ["f1.txt", "f1b.txt", "f2.txt", "f2b.txt"] {
        assert!(has(&r, "main", f), "{f} not merged: {run}");
    }
    r.assert_no_process();
}

// ---------------------------------------------------------------- G17

/// Start a run whose agents write `f<i>.txt` and then wait (gate `go`); SIGKILL qw's
/// process group once both started: the agents (each in its `qw exec`'s group) live on.
fn killed_with_agents_alive(r: &Repo) -> [PathBuf; 2] {
    r.action("1", &slow_task(r, "1"));
    r.action("2", &slow_task(r, "2"));
    let mut child = start_in(r, r.root(), "main");
    wait_started(r, &["1", "2"]);
    kill_group(child.id() as i32, 9);
    let _ = child.wait();
    for id in ["1", "2"] {
        let dir = task_dir(r, id).display().to_string();
        assert!(
            !pids_with_env("QW_WORKTREE", &dir).is_empty(),
            "task {id}'s agent did not outlive qw"
        );
    }
    [task_dir(r, "1"), task_dir(r, "2")]
}

/// The agents are gone, the worktrees removed, each branch holding what its agent wrote.
fn assert_agents_ended_and_work_saved(r: &Repo, dirs: &[PathBuf; 2], t: &str) {
    for (id, dir) in ["1", "2"].into_iter().zip(dirs) {
        assert!(
            pids_with_env("QW_WORKTREE", &dir.display().to_string()).is_empty(),
            "task {id}'s agent still runs: {t}"
        );
        assert!(!dir.exists(), "{t}");
        assert!(
            t.contains(&format!("task {id}'s agent that a killed qw left running")),
            "{t}"
        );
    }
    // What the agents wrote before they were ended is on their branches; nothing they
    // could write after is lost (they no longer run).
    assert!(r.git_ok(&["cat-file", "-e", "qw/demo/1:f1.txt"]), "{t}");
    assert!(r.git_ok(&["cat-file", "-e", "qw/demo/2:f2.txt"]), "{t}");
    r.assert_no_process();
}

#[test]
fn worktree_fix7d_prune_after_qw_was_killed_ends_its_agents_first() {
    // rev6b ok1.sh: `--prune` removed the worktrees under the live agents.
    let r = Repo::new(&tasks(2));
    let dirs = killed_with_agents_alive(&r);
    let listed = r.run(&["worktrees"]);
    let l = stdout(&listed);
    assert_eq!(
        l.lines()
            .filter(|x| x.contains(" locked ") && x.contains("its task's agent still runs"))
            .count(),
        2,
        "{l}"
    );
    let out = r.run(&["worktrees", "--prune"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_agents_ended_and_work_saved(&r, &dirs, &text(&out));
}

#[test]
fn worktree_fix7d_prune_from_another_checkout_after_qw_was_killed_ends_its_agents() {
    // The other door: the prune runs in the `feature` checkout, whose project is not the
    // one the agents were started for.
    let r = Repo::new(&tasks(2));
    let feature = feature_checkout(&r);
    let dirs = killed_with_agents_alive(&r);
    let out = bounded(
        qw_in(&r, &feature, &["worktrees", "--prune"]),
        HARNESS_TIMEOUT,
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_agents_ended_and_work_saved(&r, &dirs, &text(&out));
}

#[test]
fn worktree_fix7d_soft_reset_after_qw_was_killed_ends_its_agents_first() {
    // `workflow-reset` prunes the spec's worktrees the same way.
    let r = Repo::new(&tasks(2));
    let dirs = killed_with_agents_alive(&r);
    let out = r.run(&["workflow-reset", "demo"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_agents_ended_and_work_saved(&r, &dirs, &text(&out));
}

// ---------------------------------------------------------------- G12

#[test]
fn worktree_fix7d_same_spec_in_a_second_checkout_is_refused_while_the_first_runs() {
    // rev6b lw2.sh: the feature checkout's run took over the main run's running
    // worktrees, committed their half-written files; a continue merged the feature
    // run's work into main.
    let r = Repo::new(&tasks(2));
    let feature = feature_checkout(&r);
    r.action("1", &slow_task(&r, "1"));
    r.action("2", &slow_task(&r, "2"));
    let child = start_in(&r, r.root(), "main");
    wait_started(&r, &["1", "2"]);
    let second = start_in(&r, &feature, "feature");
    let (rc2, t2) = finish(&r, second, "feature");
    std::fs::write(r.aux.path().join("gate-go"), "").unwrap();
    let (rc, run) = finish(&r, child, "main");
    assert_eq!(rc2, 2, "nothing was started (rev11b F5): {t2}");
    assert!(
        t2.contains("another qw is already running the workflow of spec `demo`"),
        "{t2}"
    );
    assert!(t2.contains("in the checkout `"), "{t2}");
    assert_eq!(rc, 0, "{run}");
    assert!(!run.contains("left by an earlier run"), "{run}");
    for f in ["f1.txt", "f1b.txt", "f2.txt", "f2b.txt"] {
        assert!(has(&r, "main", f), "{f} not merged: {run}");
    }
    // The feature checkout's run ran no agent and changed nothing of `feature`.
    assert_eq!(r.runs().len(), 2, "{:?}", r.runs());
    assert_eq!(sha(&r, "feature"), sha(&r, "main~2"));
    r.assert_no_process();
}

/// Task 1 of a run in the main checkout commits `m1.txt` and fails: its branch is kept.
fn failed_onto_main(r: &Repo) -> String {
    r.action(
        "1",
        "echo main-attempt > m1.txt\ngit add m1.txt\ngit commit -qm 'attempt against main'\nexit 1\n",
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(r.git_ok(&["cat-file", "-e", "qw/demo/1:m1.txt"]));
    sha(r, "qw/demo/1")
}

/// Task 1 now writes `fix1.txt`; `workflow-continue` in the main checkout succeeds and
/// `main` gets task 1's earlier attempt (`m1.txt`). What it said.
fn fixed_and_continued(r: &Repo) -> String {
    r.action("1", "echo fixed > fix1.txt\n");
    let out = cont(r, &[]);
    let c = text(&out);
    assert_eq!(code(&out), 0, "{c}");
    assert!(has(r, "main", "m1.txt"), "{c}");
    c
}

/// The refusal of task 1 in a run onto `target`: not started, the branch untouched, and
/// the continue in the main checkout then resumes and merges it into `main`.
fn assert_refused_then_resumed_onto_main(r: &Repo, out: &Output, kept: &str, target: &str) {
    let t = text(out);
    assert!(
        t.contains("task 1 was not started: its branch `qw/demo/1` holds the work of a run of `demo` onto `main`"),
        "{t}"
    );
    assert!(!t.contains("resuming the unmerged work"), "{t}");
    assert!(
        !has(r, target, "m1.txt"),
        "{target} got main's attempt: {t}"
    );
    assert_eq!(sha(r, "qw/demo/1"), kept, "{t}");
    let c = fixed_and_continued(r);
    assert!(has(r, "main", "fix1.txt"), "{c}");
    r.assert_no_process();
}

#[test]
fn worktree_fix7d_a_run_in_another_checkout_does_not_resume_a_branch_made_onto_main() {
    // rev6b lw8.sh: the feature checkout's first run of `demo` resumed the main run's
    // failed attempt and merged m1.txt into `feature`.
    let r = Repo::new(&tasks(2));
    let feature = feature_checkout(&r);
    let kept = failed_onto_main(&r);
    r.action("1", "echo feat1 > feat1.txt\n");
    r.action("2", "echo feat2 > feat2.txt\n");
    let args = auto_args(&r);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = bounded(qw_in(&r, &feature, &args), HARNESS_TIMEOUT);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(has(&r, "feature", "feat2.txt"), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("in the checkout `{}`", r.root().display())),
        "{}",
        text(&out)
    );
    assert_refused_then_resumed_onto_main(&r, &out, &kept, "feature");
}

#[test]
fn worktree_fix7d_the_same_checkout_switched_to_another_branch_does_not_resume_it() {
    // The other shape: the user switches the main checkout to `other` and continues.
    let r = Repo::new(&tasks(2));
    let kept = failed_onto_main(&r);
    r.git(&["switch", "-q", "-c", "other"]);
    r.action("1", "echo other1 > other1.txt\n");
    let out = r.run(&[
        "workflow-continue",
        "demo",
        "--retry-delay",
        "0.1",
        "--attempts",
        "1",
        "--agent-cmd",
        &r.agent_cmd(),
    ]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("(in this checkout)"), "{}", text(&out));
    r.git(&["switch", "-q", "main"]);
    assert_refused_then_resumed_onto_main(&r, &out, &kept, "other");
}

#[test]
fn worktree_fix7d_hard_reset_in_another_checkout_leaves_that_checkouts_branches() {
    // A hard reset of `demo` in the feature checkout set the main run's kept branch
    // aside (and forgot qw's records of it): that run's continue then lost its resume.
    let r = Repo::new(&tasks(2));
    let feature = feature_checkout(&r);
    let kept = failed_onto_main(&r);
    let reset = bounded(
        qw_in(&r, &feature, &["workflow-reset", "demo", "--hard", "--yes"]),
        HARNESS_TIMEOUT,
    );
    let t = text(&reset);
    assert_eq!(code(&reset), 0, "{t}");
    assert!(
        t.contains("left branch `qw/demo/1` as it is: a run of `demo` onto `main`"),
        "{t}"
    );
    assert_eq!(sha(&r, "qw/demo/1"), kept, "{t}");
    let c = fixed_and_continued(&r);
    assert!(c.contains("resum"), "{c}");
    r.assert_no_process();
}

// ---------------------------------------------------------------- G3, G4, G6

/// Task 2 commits `f2.txt` ("task 2 work") and fails; task 3's agent then runs `move`
/// (a move of task 2's kept branch). One task at a time, in worktrees. The commit.
fn kept_branch_moved(r: &Repo, mv: &str) -> String {
    r.action(
        "2",
        &crate::support::moves::once(
            r,
            "t2",
            "echo work2 > f2.txt\ngit add f2.txt\ngit commit -qm 'task 2 work'\nexit 1",
        ),
    );
    r.action("1", "echo 1 > f1.txt\n");
    r.action("3", &format!("echo 3 > f3.txt\n{mv}\n"));
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let work = r
        .git(&["log", "-g", "--format=%H %s", "refs/heads/qw/demo/2"])
        .lines()
        .find(|l| l.ends_with(" task 2 work"))
        .map(|l| l[..40].to_owned())
        .expect("task 2's commit in its branch's reflog");
    assert_ne!(sha(r, "qw/demo/2"), work, "the move did not happen");
    work
}

/// `commit` is held by a branch (not only by a reflog), one named like qw's kept ones.
fn assert_on_a_branch(r: &Repo, commit: &str, t: &str) {
    let on = r.git(&[
        "for-each-ref",
        "--format=%(refname:short)",
        "--contains",
        commit,
        "refs/heads/",
    ]);
    assert!(
        on.lines().any(|b| b.starts_with("qw/demo/2")),
        "{commit} is on no branch but {on:?}: {t}"
    );
}

#[test]
fn worktree_fix7d_hard_reset_sets_aside_qws_tip_of_a_branch_moved_onto_main() {
    // rev6b h2.sh: the reset set the moved tip (main's own commit) aside and forgot
    // qw's record; `--prune` deleted it "as merged"; "task 2 work" was dangling.
    let r = Repo::new(&tasks(3));
    let work = kept_branch_moved(&r, "git branch -f qw/demo/2 main");
    let reset = r.run(&["workflow-reset", "demo", "--hard", "--yes"]);
    let t = text(&reset);
    assert_eq!(code(&reset), 0, "{t}");
    let kept = format!("qw/demo/2@{}", &work[..7]);
    assert!(t.contains(&format!("`{kept}`")), "{t}");
    assert!(t.contains("moved off qw's tip"), "{t}");
    let prune = r.run(&["worktrees", "--prune"]);
    let p = text(&prune);
    assert!(
        !p.contains(&format!("deleted merged branch `{kept}`")),
        "{p}"
    );
    assert_eq!(sha(&r, &kept), work, "{t}\n{p}");
    assert_on_a_branch(&r, &work, &p);
    r.assert_no_process();
}

#[test]
fn worktree_fix7d_hard_reset_keeps_both_qws_tip_and_a_commit_put_on_the_moved_branch() {
    // The other shape: the branch moved onto main and given a commit of its own there
    // (`commit-tree` + `update-ref`): both the task's work and that commit are kept.
    let r = Repo::new(&tasks(3));
    let work = kept_branch_moved(
        &r,
        "c=$(git commit-tree -p main -m extra 'main^{tree}')\ngit update-ref refs/heads/qw/demo/2 \"$c\"",
    );
    let extra = sha(&r, "qw/demo/2");
    let reset = r.run(&["workflow-reset", "demo", "--hard", "--yes"]);
    let t = text(&reset);
    assert_eq!(code(&reset), 0, "{t}");
    let prune = r.run(&["worktrees", "--prune"]);
    let p = text(&prune);
    assert_on_a_branch(&r, &work, &format!("{t}\n{p}"));
    assert_on_a_branch(&r, &extra, &format!("{t}\n{p}"));
    assert!(
        t.contains(&format!("`qw/demo/2@{}`", &work[..7]))
            && t.contains(&format!("`qw/demo/2@{}`", &extra[..7])),
        "{t}"
    );
    r.assert_no_process();
}

#[test]
fn worktree_fix7d_a_kept_branch_moved_onto_main_is_unmerged_and_continue_merges_it() {
    // rev6b h3.sh: `qw worktrees` said `merged`, `--prune` advised `git branch -D`.
    let r = Repo::new(&tasks(3));
    let work = kept_branch_moved(&r, "git branch -f qw/demo/2 main");
    let listed = r.run(&["worktrees"]);
    let l = stdout(&listed);
    let row = l
        .lines()
        .find(|x| x.contains("qw/demo/2 "))
        .unwrap_or_default()
        .to_owned();
    assert!(row.contains(" unmerged "), "{l}");
    assert!(row.contains("moved off qw's tip"), "{l}");
    let prune = r.run(&["worktrees", "--prune"]);
    let p = text(&prune);
    assert!(!p.contains("git branch -D qw/demo/2`"), "{p}");
    assert!(
        p.contains(&format!("`git branch -f qw/demo/2 {work}`")),
        "{p}"
    );
    assert!(
        p.contains("`qw workflow-continue demo` puts it back"),
        "{p}"
    );
    // As the line says: the continue puts it back and merges the task's work.
    let cont = r.run(&[
        "workflow-continue",
        "demo",
        "--retry-delay",
        "0.1",
        "--attempts",
        "1",
        "--agent-cmd",
        &r.agent_cmd(),
    ]);
    let c = text(&cont);
    assert_eq!(code(&cont), 0, "{c}");
    assert!(has(&r, "main", "f2.txt"), "{c}");
    r.assert_no_process();
}

#[test]
fn worktree_fix7d_a_kept_branch_moved_back_onto_an_older_main_commit_is_not_merged() {
    // The other shape: moved onto an older commit of `main` (`main~1`).
    let r = Repo::new(&tasks(3));
    let work = kept_branch_moved(&r, "git branch -f qw/demo/2 main~1");
    let prune = r.run(&["worktrees", "--prune"]);
    let p = text(&prune);
    assert!(!p.contains("deleted merged branch `qw/demo/2`"), "{p}");
    assert!(p.contains("moved off the tip qw left it at"), "{p}");
    // qw's record of its tip is still there: the branch is put back when its task runs.
    assert!(
        std::fs::read_to_string(r.root().join(".git/qw-left/demo/2"))
            .is_ok_and(|s| s.trim() == work),
        "{p}"
    );
    r.assert_no_process();
}

/// Task 1 commits `a1.txt` ("t1 real work") then resets it away and writes `f1.txt`:
/// that commit is kept on `qw/demo/1@<sha7>`. Returns the branch and the commit.
fn set_aside_by_a_reset(r: &Repo) -> (String, String) {
    r.action(
        "1",
        "echo a > a1.txt\ngit add a1.txt\ngit commit -qm 't1 real work'\ngit reset -q --hard HEAD~1\necho 1 > f1.txt\n",
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    // The agent did its work again after the reset (`f1.txt`): merged, the reset-away
    // commit kept on the `@` branch and said (only an empty result fails, rev11a F1).
    assert_eq!(code(&out), 0, "{}", text(&out));
    let kept = r
        .branches()
        .into_iter()
        .find(|b| b.starts_with("qw/demo/1@"))
        .unwrap_or_else(|| panic!("no kept branch: {}", text(&out)));
    let commit = sha(r, &kept);
    (kept, commit)
}

#[test]
fn worktree_fix7d_prune_with_head_detached_at_a_kept_branch_keeps_it() {
    // rev6b pr2.sh: the user looks at what qw kept (`git checkout --detach <it>`) and
    // prunes: the branch was deleted "as merged" (an ancestor of the detached HEAD).
    let r = Repo::new(&tasks(2));
    let (kept, commit) = set_aside_by_a_reset(&r);
    r.git(&["checkout", "-q", "--detach", &kept]);
    let prune = r.run(&["worktrees", "--prune"]);
    let p = text(&prune);
    r.git(&["switch", "-q", "main"]);
    assert!(
        !p.contains(&format!("deleted merged branch `{kept}`")),
        "{p}"
    );
    assert!(!p.contains("forgot qw's record"), "{p}");
    assert_eq!(sha(&r, &kept), commit, "{p}");
    r.assert_no_process();
}

#[test]
fn worktree_fix7d_a_failed_tasks_branch_with_head_detached_on_it_is_listed_unmerged() {
    // rev6b pr1.sh: listed `merged` (HEAD held it); the prune kept it only because the
    // task had not completed.
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        "echo bad > bad1.txt\ngit add bad1.txt\ngit commit -qm 't1 work'\nexit 1\n",
    );
    r.action("2", "echo 2 > f2.txt\n");
    let out = r.auto(&["--parallel", "2"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let tip = sha(&r, "qw/demo/1");
    r.git(&["checkout", "-q", "--detach", "qw/demo/1"]);
    let listed = r.run(&["worktrees"]);
    let prune = r.run(&["worktrees", "--prune"]);
    r.git(&["switch", "-q", "main"]);
    let l = stdout(&listed);
    let row = l
        .lines()
        .find(|x| x.contains("qw/demo/1 "))
        .unwrap_or_default()
        .to_owned();
    assert!(
        row.contains(" unmerged ") && row.contains("(1 unmerged commit(s))"),
        "{l}"
    );
    assert!(!text(&prune).contains("HEAD holds it"), "{}", text(&prune));
    assert_eq!(sha(&r, "qw/demo/1"), tip);
    r.assert_no_process();
}
