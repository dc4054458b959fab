//! "The agent's checked work is saved on its branch; only the merge is missing" (rev5b
//! F5, F6, F10, F12, F19): qw killed right after its own merge (before recording it) or
//! in the middle of its own conflicting merge, the user's own uncommitted edit or
//! untracked file in the way of a merge, the user merging by hand as advised while the
//! run goes on, a short `git switch` elsewhere in the main worktree. In each, the task's
//! agent never runs again: `workflow-continue` records the merge or only merges; a
//! busy main worktree is waited for.
//!
//! The kill windows are reproduced with a `git` wrapper in the project's `bin/` (first on
//! qw's PATH) that SIGKILLs qw — by its pid — right after qw's merge of a task returned.
//! Each test asserts where the work is, how often each agent ran, and that no process
//! is left.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::moves::{
    cont, gate, in_worktrees, once, open_gate, printed, spec_args, tasks, work,
};
use crate::support::*;
use crate::worktree::{HARNESS_TIMEOUT, Repo};

/// The git the tests run (the first `git` on the test's PATH).
fn real_git() -> PathBuf {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| PathBuf::from(d).join("git"))
        .find(|p| p.is_file())
        .expect("git on PATH")
}

/// A `git` in the project's `bin/` that runs git and then, the first time qw's own merge
/// of task `id` ended with an exit status matching `rc` (`0` or `[!0]*`, a shell
/// pattern), SIGKILLs qw (its parent, by pid) before qw can record or undo anything.
/// Committed, so the main worktree stays clean.
fn kill_after_merge(r: &Repo, id: &str, rc: &str) {
    let flag = r.aux.path().join("killed");
    let script = format!(
        "#!/bin/sh\ncase \"$*\" in\n  *\"merge --no-ff\"*\"merge task {id} \"*)\n    {git} \"$@\"; rc=$?\n    case \"$rc\" in {rc})\n      if [ ! -e {flag} ]; then : > {flag}; kill -KILL \"$PPID\"; fi ;;\n    esac\n    exit $rc ;;\nesac\nexec {git} \"$@\"\n",
        flag = flag.display(),
        git = real_git().display()
    );
    r.f.p.script("bin/git", &script);
    r.git(&["add", "bin/git"]);
    r.git(&["commit", "-qm", "git that stands for a kill"]);
}

/// `workflow-continue` (`parallel` tasks at once) succeeds without running task `id`'s
/// agent again (its one run was before); what it said.
fn continued_without_rerun(r: &Repo, parallel: &str, id: &str) -> String {
    let out = cont(r, &in_worktrees(parallel));
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert_eq!(r.runs_of(id), 1, "task {id}'s agent ran again: {text}");
    text
}

/// `workflow-auto` in the background, its output in a file the test can read while it
/// runs.
fn start(r: &Repo, parallel: &str) -> (Child, PathBuf) {
    let cmd = r.agent_cmd();
    let a = spec_args("workflow-auto", "demo", &cmd, &in_worktrees(parallel));
    let out = r.aux.path().join("run.out");
    let file = std::fs::File::create(&out).unwrap();
    let mut c: Command = r.f.cmd(&a);
    c.stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null())
        .process_group(0);
    (c.spawn().unwrap(), out)
}

/// Wait (bounded by the harness timeout) until `file` holds `text`.
fn wait_for_text(file: &Path, text: &str) {
    let t0 = Instant::now();
    loop {
        let s = std::fs::read_to_string(file).unwrap_or_default();
        if s.contains(text) {
            return;
        }
        assert!(
            t0.elapsed() < HARNESS_TIMEOUT,
            "never printed `{text}`: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait (bounded by the harness timeout) until `n` agents of spec `demo` have started.
fn wait_for_runs(r: &Repo, n: usize) {
    let t0 = Instant::now();
    while r.runs().len() < n {
        assert!(t0.elapsed() < HARNESS_TIMEOUT, "the agents never started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait (bounded) for the background qw to end; its exit code.
fn finish(mut child: Child) -> Option<i32> {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if t0.elapsed() > HARNESS_TIMEOUT {
            unsafe_kill(child.id() as i32, 9);
            let _ = child.wait();
            panic!("qw hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Shell: wait (at most about 90 s) until `main` holds a commit with subject `s`, so
/// this task's merge comes after that one.
fn after_merge_of(s: &str) -> String {
    format!(
        "n=0; until git -C \"$MAIN\" log --format=%s main | grep -qx {s}; do [ $n -lt 1800 ] || break; sleep 0.05; n=$((n+1)); done\n"
    )
}

fn count(r: &Repo, rev_file: &str, line: &str) -> usize {
    r.git(&["show", rev_file])
        .lines()
        .filter(|l| *l == line)
        .count()
}

// ---- F10: killed right after qw's own merge, before recording it ----

/// Task 1 appends to shared.txt; qw is SIGKILLed right after it merged task 1. The
/// continue records task 1 completed (one line says so), does not run its agent again
/// (the line is on `main` once), and merges task 2.
#[test]
fn worktree_fix6m_killed_after_its_merge_is_recorded_not_run_again() {
    let r = Repo::new(&tasks(2));
    r.action("1", "echo appended-by-1 >> shared.txt\n");
    r.action("2", &work("2"));
    kill_after_merge(&r, "1", "0");
    let out = r.auto(&in_worktrees("1"));
    assert!(r.aux.path().join("killed").exists(), "{}", diag(&out));
    assert_eq!(count(&r, "main:shared.txt", "appended-by-1"), 1);
    let text = continued_without_rerun(&r, "1", "1");
    assert_eq!(count(&r, "main:shared.txt", "appended-by-1"), 1);
    assert!(
        text.contains("qw was stopped after merging task 1"),
        "{text}"
    );
    assert_eq!(r.f.task("1")["status"], "completed");
    assert!(r.read(".claude/specs/demo/tasks.md").contains("- [x] 1."));
    r.assert_all_merged(&["f2.txt"]);
}

/// Two tasks at once: qw is SIGKILLed right after merging task 2 while task 1's agent
/// still waits. The continue records task 2 (its agent not run again) and runs task 1
/// (cut off, so it runs again).
#[test]
fn worktree_fix6m_killed_after_merging_one_of_two_running() {
    let r = Repo::new(&tasks(2));
    // Task 1's first run waits until the continue's sweep ends it (a gate nobody opens:
    // opening it right before the continue raced the orphaned run's end — its commit,
    // its report — against the continue's sweep and look at it); its second run works.
    r.action(
        "1",
        &format!("{}{}", once(&r, "1", &gate(&r, "never")), work("1")),
    );
    r.action("2", &work("2"));
    kill_after_merge(&r, "2", "0");
    let out = r.auto(&in_worktrees("2"));
    assert!(r.aux.path().join("killed").exists(), "{}", diag(&out));
    let text = continued_without_rerun(&r, "2", "2");
    assert_eq!(r.runs_of("1"), 2, "task 1 was cut off: {text}");
    assert!(
        text.contains("qw was stopped after merging task 2"),
        "{text}"
    );
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
}

// ---- F5: killed in the middle of qw's own conflicting merge ----

/// Tasks 1 and 2 both write shared.txt; task 2's merge conflicts and qw is SIGKILLed
/// before it could abort it (MERGE_HEAD, the conflict staged). The continue undoes qw's
/// own half-merge itself, says so, merges task 2's saved branch again without its agent
/// (conflicting again, with the by-hand advice), and the advice works.
#[test]
fn worktree_fix6m_killed_in_its_own_conflicting_merge_undoes_it() {
    let r = Repo::new(&tasks(2));
    r.action("1", "echo one > shared.txt\ngit commit -qam s1\n");
    r.action(
        "2",
        &format!(
            "echo two > shared.txt\ngit commit -qam s2\necho more2 > m2.txt\n{}",
            after_merge_of("s1")
        ),
    );
    kill_after_merge(&r, "2", "[!0]*");
    let out = r.auto(&in_worktrees("2"));
    assert!(r.aux.path().join("killed").exists(), "{}", diag(&out));
    assert!(
        r.git_ok(&["rev-parse", "-q", "--verify", "MERGE_HEAD"]),
        "the kill did not land mid-merge"
    );
    let out = cont(&r, &in_worktrees("2"));
    let text = diag(&out);
    assert_eq!(code(&out), 1, "{text}");
    assert!(text.contains("git merge --abort"), "{text}");
    assert!(
        text.contains("its own merge of task branch `qw/demo/2`"),
        "{text}"
    );
    assert!(!text.contains("staged changes"), "{text}");
    assert_eq!(r.runs_of("2"), 1, "task 2's agent ran again: {text}");
    assert_eq!(r.f.task("2")["outcome"], "merge_conflict");
    r.assert_no_half_done_git();
    assert_eq!(r.read("shared.txt"), "one\n");
    // The advice, followed.
    let _ = r.git_cmd(r.root(), &["merge", "qw/demo/2"]);
    std::fs::write(r.root().join("shared.txt"), "resolved\n").unwrap();
    r.git(&["add", "shared.txt"]);
    r.git(&["commit", "-qm", "resolve by hand"]);
    let out = cont(&r, &in_worktrees("2"));
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(r.runs_of("2"), 1);
    r.assert_all_merged(&["m2.txt"]);
}

/// The same kill, then the user aborts it and merges the same branch by hand (git's own
/// message): that merge is the user's, and qw never aborts it — the continue refuses
/// naming the staged changes, and MERGE_HEAD is still there.
#[test]
fn worktree_fix6m_never_aborts_the_users_merge_of_the_same_branch() {
    let mut r = Repo::new(&tasks(2));
    // The continue waits for the user's merge before any agent (rev7 R8), then refuses.
    r.f.set("QW_MAIN_WAIT_S", "1");
    r.action("1", "echo one > shared.txt\ngit commit -qam s1\n");
    r.action(
        "2",
        &format!(
            "echo two > shared.txt\ngit commit -qam s2\n{}",
            after_merge_of("s1")
        ),
    );
    kill_after_merge(&r, "2", "[!0]*");
    let out = r.auto(&in_worktrees("2"));
    assert!(r.aux.path().join("killed").exists(), "{}", diag(&out));
    r.git(&["merge", "--abort"]);
    let _ = r.git_cmd(r.root(), &["merge", "qw/demo/2"]);
    let head = r.git(&["rev-parse", "MERGE_HEAD"]);
    let out = cont(&r, &in_worktrees("2"));
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert!(
        !diag(&out).contains("git merge --abort`):"),
        "{}",
        diag(&out)
    );
    assert_eq!(r.git(&["rev-parse", "MERGE_HEAD"]), head);
    r.assert_no_process();
}

// ---- F12: the user's own file in the way of a merge ----

/// While task 1 (which appends to shared.txt) runs, shared.txt is edited in the main
/// worktree (task 2's script stands for the user). Task 1's merge is refused by git: a
/// `workspace_error` whose one line names the file and the way on — not a
/// `merge_conflict` — and after `git stash` the continue merges task 1 without its agent.
#[test]
fn worktree_fix6m_users_edit_in_the_way_is_merge_pending() {
    let r = Repo::new(&tasks(2));
    r.action(
        "1",
        &format!("echo one >> shared.txt\n{}", gate(&r, "edited")),
    );
    r.action(
        "2",
        &format!(
            "echo mine >> \"$MAIN/shared.txt\"\n{}{}",
            work("2"),
            open_gate(&r, "edited")
        ),
    );
    let out = r.auto(&in_worktrees("2"));
    let text = diag(&out);
    assert_eq!(code(&out), 1, "{text}");
    let t = r.f.task("1");
    assert_eq!(t["outcome"], "workspace_error", "{t}");
    let why = t["error"].as_str().unwrap_or_default().to_owned() + &text;
    assert!(why.contains("`shared.txt`"), "{why}");
    assert!(why.contains("commit or stash it"), "{why}");
    assert!(why.contains("qw workflow-continue demo"), "{why}");
    r.git(&["stash", "-q"]);
    let text = continued_without_rerun(&r, "2", "1");
    assert!(text.contains("its agent does not run again"), "{text}");
    assert_eq!(count(&r, "main:shared.txt", "one"), 1);
    r.assert_all_merged(&["f2.txt"]);
}

/// The same with an untracked file in the way of the file task 1 adds.
#[test]
fn worktree_fix6m_users_untracked_file_in_the_way_is_merge_pending() {
    let r = Repo::new(&tasks(2));
    r.action("1", &format!("echo new > new.txt\n{}", gate(&r, "placed")));
    r.action(
        "2",
        &format!(
            "echo mine > \"$MAIN/new.txt\"\n{}{}",
            work("2"),
            open_gate(&r, "placed")
        ),
    );
    let out = r.auto(&in_worktrees("2"));
    let text = diag(&out);
    assert_eq!(code(&out), 1, "{text}");
    let t = r.f.task("1");
    assert_eq!(t["outcome"], "workspace_error", "{t}");
    let why = t["error"].as_str().unwrap_or_default().to_owned() + &text;
    assert!(why.contains("untracked file `new.txt`"), "{why}");
    std::fs::remove_file(r.root().join("new.txt")).unwrap();
    continued_without_rerun(&r, "2", "1");
    r.assert_all_merged(&["new.txt", "f2.txt"]);
}

// ---- F6, F19: the main worktree busy for a moment ----

/// Task 2 (or 1, whichever merges second) conflicts; the user merges it by hand at once
/// (as advised, the command qw printed) and takes a while
/// to resolve it. Tasks 3 and 4 finish meanwhile: they wait (said), and are merged once
/// the user committed — not failed, their agents run once.
#[test]
fn worktree_fix6m_waits_for_the_users_merge_by_hand() {
    let r = Repo::new(&tasks(4));
    r.action("1", "echo one > shared.txt\ngit commit -qam s1\n");
    r.action(
        "2",
        "echo two > shared.txt\ngit commit -qam s2\nsleep 0.5\n",
    );
    r.action("3", &format!("{}{}", gate(&r, "go"), work("3")));
    r.action("4", &format!("{}{}", gate(&r, "go"), work("4")));
    let (child, out) = start(&r, "4");
    wait_for_text(&out, "merge it by hand");
    // The one of tasks 1 and 2 that merged second conflicted: the command qw printed.
    let advice = printed(&std::fs::read_to_string(&out).unwrap(), "git merge qw/");
    let branch = advice.trim_start_matches("git merge ").to_owned();
    // As a user would: again when another git held the index for a moment.
    let t0 = Instant::now();
    while !r.git_ok(&["rev-parse", "-q", "--verify", "MERGE_HEAD"]) {
        let m = r.git_cmd(r.root(), &["merge", &branch]);
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the merge by hand never started: {} {} {}",
            diag(&m),
            r.git(&["status"]),
            r.git(&["log", "--oneline", "--graph", "--all"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(r.aux.path().join("gate-go"), "").unwrap();
    wait_for_text(&out, "`QW_MAIN_WAIT_S`) before merging task");
    std::fs::write(r.root().join("shared.txt"), "resolved\n").unwrap();
    r.git(&["add", "shared.txt"]);
    r.git(&["commit", "-qm", "resolve by hand"]);
    let rc = finish(child);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(rc, Some(1), "{text}");
    for id in ["3", "4"] {
        assert_eq!(r.f.task(id)["status"], "completed", "{text}");
        assert_eq!(r.runs_of(id), 1);
    }
    assert!(text.contains("in the middle of a merge"), "{text}");
    let out = cont(&r, &in_worktrees("4"));
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(r.runs_of("3"), 1);
    r.assert_all_merged(&["f3.txt", "f4.txt"]);
}

/// A short `git switch` to another branch in the main worktree while tasks finish:
/// they wait for it to come back (said, `main` not called moved) and are merged.
#[test]
fn worktree_fix6m_waits_for_a_short_switch_elsewhere() {
    let r = Repo::new(&tasks(2));
    r.git(&["branch", "feature"]);
    r.action("1", &format!("{}{}", gate(&r, "go"), work("1")));
    r.action("2", &format!("{}{}", gate(&r, "go"), work("2")));
    let (child, out) = start(&r, "2");
    wait_for_runs(&r, 2);
    r.git(&["switch", "-q", "feature"]);
    std::fs::write(r.aux.path().join("gate-go"), "").unwrap();
    wait_for_text(&out, "`QW_MAIN_WAIT_S`) before merging task");
    r.git(&["switch", "-q", "main"]);
    let rc = finish(child);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(rc, Some(0), "{text}");
    assert!(
        text.contains("is on branch `feature`, not on `main`"),
        "{text}"
    );
    assert!(!text.contains("was moved"), "{text}");
    assert_eq!(r.runs_of("1"), 1);
    assert_eq!(r.runs_of("2"), 1);
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
}

/// With the wait bounded to one second (`QW_MAIN_WAIT_S=1`) and the main worktree left
/// on another branch: the tasks end "saved, merge pending" (their line says the continue
/// merges them), and once the user is back on `main` the continue only merges them.
#[test]
fn worktree_fix6m_past_the_wait_the_merge_stays_pending() {
    let mut r = Repo::new(&tasks(2));
    r.f.set("QW_MAIN_WAIT_S", "1");
    r.git(&["branch", "feature"]);
    r.action("1", &format!("{}{}", gate(&r, "go"), work("1")));
    r.action("2", &format!("{}{}", gate(&r, "go"), work("2")));
    let (child, out) = start(&r, "2");
    wait_for_runs(&r, 2);
    r.git(&["switch", "-q", "feature"]);
    std::fs::write(r.aux.path().join("gate-go"), "").unwrap();
    let rc = finish(child);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(rc, Some(1), "{text}");
    assert!(text.contains("for longer than qw waits"), "{text}");
    assert_eq!(r.f.task("1")["outcome"], "workspace_error");
    r.git(&["switch", "-q", "main"]);
    let out = cont(&r, &in_worktrees("2"));
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(r.runs_of("1"), 1, "{}", diag(&out));
    assert_eq!(r.runs_of("2"), 1, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
}

// ---- rev5a L5: a run a killed qw left, finished by its orphaned supervisor ----

/// Every `exec-report.json` under the project's `.claude/` (the supervisor's reports).
fn finished_reports(r: &Repo) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name().is_some_and(|n| n == "exec-report.json") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&r.root().join(".claude"), &mut out);
    out
}

/// qw is SIGKILLed (by pid) while task 1's agent waits; the agent then finishes — its
/// supervisor, orphaned, leaves the report in the run folder. `script` is what it does
/// after the gate. Returns after the report is there.
fn killed_then_finished(r: &Repo, script: &str) {
    r.action("1", &format!("{}{script}", gate(r, "late")));
    r.action("2", &work("2"));
    let (mut child, _out) = start(r, "2");
    wait_for_runs(r, 2);
    sigkill(&mut child);
    std::fs::write(r.aux.path().join("gate-late"), "").unwrap();
    let t0 = Instant::now();
    while finished_reports(r).len() < 2 {
        assert!(
            t0.elapsed() < HARNESS_TIMEOUT,
            "the orphaned run never finished: {:?}",
            finished_reports(r)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The finished run succeeded: the continue judges it and uses it — the agent does not
/// run again (said), its work is merged once.
#[test]
fn worktree_fix6m_finished_run_of_a_killed_qw_is_used() {
    let r = Repo::new(&tasks(2));
    killed_then_finished(&r, "echo late-by-1 >> shared.txt\n");
    let text = continued_without_rerun(&r, "2", "1");
    assert!(
        text.contains("finished after the qw running it was killed"),
        "{text}"
    );
    assert_eq!(count(&r, "main:shared.txt", "late-by-1"), 1);
    r.assert_all_merged(&["f2.txt"]);
}

/// The finished run failed (exit 1): not used — the task runs again, and its second
/// run's work is merged.
#[test]
fn worktree_fix6m_failed_finished_run_of_a_killed_qw_runs_again() {
    let r = Repo::new(&tasks(2));
    let flag = r.aux.path().join("failed-once");
    killed_then_finished(
        &r,
        &format!(
            "if [ ! -e {f} ]; then touch {f}; exit 1; fi\necho 1 > f1.txt\n",
            f = flag.display()
        ),
    );
    let out = cont(&r, &in_worktrees("2"));
    let text = diag(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert_eq!(r.runs_of("1"), 2, "{text}");
    assert!(!text.contains("task 1: its agent's run"), "{text}");
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
}
