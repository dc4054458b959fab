//! Two lost-work races (the eleventh session's `mainrace`):
//!
//! - The user committing in a tight loop in the main worktree while qw merges task
//!   results: their commits *and their uncommitted edits* survive, every time (ignored
//!   while the race is open: run it with
//!   `cargo nextest run --run-ignored only -E 'test(/mainrace_users/)'`).
//! - A completion is carried by reconcile only to the same task: tasks.md generated
//!   again, a task retitled with its checks record deleted, a check changed since the
//!   task passed — the task runs, one line says why.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::moves::{tasks, work};
use crate::support::*;
use crate::worktree::{HARNESS_TIMEOUT, Repo};

/// `workflow-auto` in the background (its own process group), its output in a file.
fn start(r: &Repo, parallel: &str) -> (Child, PathBuf) {
    let cmd = r.agent_cmd();
    let a = [
        "workflow-auto",
        "demo",
        "A demo feature",
        "--retry-delay",
        "0.1",
        "--task-timeout",
        "60",
        "--attempts",
        "1",
        "--parallel",
        parallel,
        "--isolate",
        "worktree",
        "--agent-cmd",
        &cmd,
    ];
    let out = r.aux.path().join("run.out");
    let file = std::fs::File::create(&out).unwrap();
    let mut c: Command = r.f.cmd(&a);
    c.stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null())
        .process_group(0);
    (c.spawn().unwrap(), out)
}

/// Wait (bounded) for the background qw to end; its exit code (`None`: a signal).
fn finish(mut child: Child) -> Option<i32> {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if t0.elapsed() > HARNESS_TIMEOUT {
            kill_group(child.id() as i32, 9);
            let _ = child.wait();
            panic!("qw hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The user's git, as the user runs it: tried again while another git holds the index.
fn user_git(root: &Path, env: &[(String, String)], args: &[&str]) -> bool {
    for _ in 0..200 {
        let mut c = Command::new("git");
        c.arg("-C").arg(root).args(args).stdin(Stdio::null());
        c.stdout(Stdio::null()).stderr(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        if c.status().is_ok_and(|s| s.success()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Append a line to `user.txt` and commit it, in a tight loop until `stop`: `git add` +
/// `git commit`, `git commit -a`, alternately. `written` counts the lines appended
/// (`u1`…); the subjects of the commits made are returned.
fn user_commits(
    root: PathBuf,
    env: Vec<(String, String)>,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
) -> Vec<String> {
    use std::io::Write;
    let mut made = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) && i < 2000 {
        i += 1;
        let mut f = std::fs::File::options()
            .append(true)
            .open(root.join("user.txt"))
            .unwrap();
        writeln!(f, "u{i}").unwrap();
        drop(f);
        written.store(i, Ordering::SeqCst);
        let subject = format!("user {i}");
        let ok = if i % 2 == 0 {
            user_git(&root, &env, &["add", "user.txt"])
                && user_git(&root, &env, &["commit", "-q", "-m", &subject])
        } else {
            user_git(&root, &env, &["commit", "-q", "-a", "-m", &subject])
        };
        if ok {
            made.push(subject);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    made
}

/// One round: `n` tasks, two at a time, merged while the user commits in a tight loop.
/// `Err(why)` when something of the user's was lost.
fn one_round(n: usize) -> Result<(), String> {
    let r = Repo::new(&tasks(n));
    r.f.p.write("user.txt", "u0\n");
    r.git(&["add", "user.txt"]);
    r.git(&["commit", "-qm", "user 0"]);
    for i in 1..=n {
        let id = i.to_string();
        r.action(&id, &format!("sleep 0.2\n{}", work(&id)));
    }
    let (child, out) = start(&r, "2");
    let t0 = Instant::now();
    while r.runs().is_empty() {
        assert!(t0.elapsed() < HARNESS_TIMEOUT, "the agents never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let user = {
        let root = r.root().to_path_buf();
        let env = r.git_env_pairs().to_vec();
        let (stop, written) = (stop.clone(), written.clone());
        std::thread::spawn(move || user_commits(root, env, stop, written))
    };
    let rc = finish(child);
    stop.store(true, Ordering::SeqCst);
    let made = user.join().unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let reflog: String = r
        .git(&["reflog", "-n", "80", "--format=%h %gs"])
        .lines()
        .filter(|l| !l.contains("commit: user"))
        .map(|l| format!("{l}\n"))
        .collect();
    if rc != Some(0) {
        return Err(format!("qw exited {rc:?}: {text}\n{reflog}"));
    }
    for i in 1..=n {
        let id = i.to_string();
        if r.f.task(&id)["status"] != "completed" {
            return Err(format!("task {id} not completed: {text}"));
        }
    }
    let log = r.git(&["log", "--format=%s", "main"]);
    for s in &made {
        if !log.lines().any(|l| l == s) {
            return Err(format!("`{s}` was lost: {log}"));
        }
    }
    let file = std::fs::read_to_string(r.root().join("user.txt")).unwrap();
    let want: String = (0..=written.load(Ordering::SeqCst))
        .map(|i| format!("u{i}\n"))
        .collect();
    if file != want {
        return Err(format!(
            "the user's file lost lines: {file:?}, written {want:?}\n{text}\n{reflog}"
        ));
    }
    r.assert_all_merged(
        &(1..=n)
            .map(|i| format!("f{i}.txt"))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    Ok(())
}

/// The user commits in a tight loop in the main worktree (`git add` + `git commit`, `git
/// commit -a`) while qw merges tasks, twenty rounds: no task fails, every commit of
/// theirs is kept, and their file holds every line they wrote — committed or not.
#[test]
#[ignore = "open race: loses an uncommitted line in about 1 round of 4 (qw holding the main index for its merges, branch mainrace-lock, brought it to 1 in 20 but leaves the lock after a SIGKILL); see the mainrace report of the eleventh session"]
fn mainrace_users_uncommitted_edits_survive_merges_in_every_round() {
    let rounds: usize = std::env::var("QW_TEST_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut failed = Vec::new();
    for round in 0..rounds {
        if let Err(why) = one_round(3) {
            eprintln!("round {round}: {why}");
            failed.push(round);
        }
    }
    assert!(
        failed.is_empty(),
        "rounds {failed:?} of {rounds} lost the user's work"
    );
}

// ---- A completion carried by id to another task (checkshape's leftover) ----

const TASKS: &str = ".claude/specs/demo/tasks.md";
const RECORD: &str = ".claude/runs/.demo.checks.json";

/// `qw workflow-continue demo` with the test agent, one attempt, one task at a time.
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
        "1",
        "--agent-cmd",
        cmd.as_str(),
    ])
}

fn all(out: &std::process::Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

/// The one line that says task `id`'s record is another task's, and why.
fn another_line(text: &str, id: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains(&format!("task {id} of `"))
                && l.contains("is not the task the state recorded")
        })
        .collect();
    assert_eq!(lines.len(), 1, "one line for task {id}: {text}");
    lines[0].to_owned()
}

/// tasks.md deleted between runs and written again (as the task phase generates it) with
/// another task 1 and the same task 2: the new task 1 runs — its id's old completion is
/// not carried to it, said in one line, the old record kept under `orphaned_tasks` — and
/// task 2, the same title and check, keeps its completion.
#[test]
fn mainrace_tasks_md_generated_again_runs_a_new_task_of_an_old_id() {
    let r = Repo::new(
        "- [ ] 1. Parse the config\n- [ ] 2. Write the docs\n  - _Verify: `test -f f2.txt`_\n",
    );
    r.action("1", &work("1"));
    r.action("2", &work("2"));
    let out = r.auto(&["--parallel", "1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!((r.runs_of("1"), r.runs_of("2")), (1, 1));

    std::fs::remove_file(r.root().join(TASKS)).unwrap();
    std::fs::write(
        r.root().join(TASKS),
        "- [ ] 1. Add the cache\n- [ ] 2. Write the docs\n  - _Verify: `test -f f2.txt`_\n",
    )
    .unwrap();
    r.action(
        "1",
        "echo cache > cache.txt\ngit add cache.txt\ngit commit -qm cache\n",
    );
    let out = cont(&r);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = all(&out);
    assert_eq!(r.runs_of("1"), 2, "the new task 1 never ran: {text}");
    assert_eq!(r.runs_of("2"), 1, "task 2 is the same task: {text}");
    let line = another_line(&text, "1");
    assert!(
        line.contains("\"Parse the config\"") && line.contains("\"Add the cache\""),
        "{line}"
    );
    let spec = &r.f.state()["specifications"]["demo"];
    assert_eq!(
        spec["orphaned_tasks"]["1"]["description"],
        "Parse the config"
    );
    assert_eq!(spec["tasks"]["1"]["description"], "Add the cache");
    assert_eq!(spec["tasks"]["1"]["status"], "completed");
    assert!(r.read(TASKS).contains("- [x] 1. Add the cache"));
    r.assert_all_merged(&["f1.txt", "f2.txt", "cache.txt"]);
}

/// The checks record a run kept (an agent retitled task 2 mid-run) deleted by the user,
/// as its refusal says to when the change is theirs: task 2, completed by the run under
/// its old title, is not completed under the new one — it runs.
#[test]
fn mainrace_checks_record_deleted_and_task_retitled_runs_it() {
    let r = Repo::new("- [ ] 1. Task 1\n- [ ] 2. Task 2\n");
    r.action(
        "1",
        &format!(
            "{}sed -i 's/2. Task 2/2. Task 2, now the migration/' .claude/specs/demo/tasks.md\n",
            work("1")
        ),
    );
    r.action("2", &work("2"));
    let out = r.auto(&["--parallel", "1"]);
    assert_eq!(r.f.task("2")["status"], "completed", "{}", diag(&out));
    assert!(r.root().join(RECORD).is_file(), "{}", diag(&out));
    let out = cont(&r);
    assert_eq!(
        code(&out),
        2,
        "refused while the record stays: {}",
        diag(&out)
    );
    std::fs::remove_file(r.root().join(RECORD)).unwrap();

    r.action("1", &work("1"));
    let out = cont(&r);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = all(&out);
    assert_eq!(r.runs_of("2"), 2, "retitled task 2 never ran: {text}");
    assert_eq!(r.runs_of("1"), 1, "{text}");
    assert!(another_line(&text, "2").contains("\"Task 2, now the migration\""));
    assert!(r.read(TASKS).contains("- [x] 2. Task 2, now the migration"));
}

/// The same title with another `_Verify:_` since the task passed its old one (no record
/// kept: the change is the user's, between runs): the task runs with the current check.
/// Unchanged, nothing runs again.
#[test]
fn mainrace_changed_check_of_a_completed_task_runs_it_with_the_new_check() {
    let r = Repo::new("- [ ] 1. Task 1\n  - _Verify: `test -f f1.txt`_\n- [ ] 2. Task 2\n");
    r.action("1", &format!("{}echo g > g1.txt\n", work("1")));
    r.action("2", &work("2"));
    let out = r.auto(&["--parallel", "1"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let out = cont(&r);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!((r.runs_of("1"), r.runs_of("2")), (1, 1), "{}", diag(&out));
    assert!(!all(&out).contains("is not the task"), "{}", diag(&out));

    let text = r.read(TASKS).replace("test -f f1.txt", "test -f g1.txt");
    std::fs::write(r.root().join(TASKS), text).unwrap();
    let out = cont(&r);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let text = all(&out);
    assert_eq!(
        r.runs_of("1"),
        2,
        "task 1 was not run with its new check: {text}"
    );
    assert_eq!(r.runs_of("2"), 1, "{text}");
    let line = another_line(&text, "1");
    assert!(
        line.contains("`test -f g1.txt`") && line.contains("`test -f f1.txt`"),
        "{line}"
    );
    assert!(text.contains("test -f g1.txt"), "{text}");
}
