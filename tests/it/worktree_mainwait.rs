//! The user's main worktree while qw runs (issue 14, rev7 R8, R11 and a leftover):
//!
//! - R8: a stale `index.lock` (or a merge the user left half done) in the main worktree
//!   when a workflow starts is waited for before any agent starts — said at once, naming
//!   the file — not found at the first merge after every agent ran; past the wait the
//!   run ends with exit 2 and the `rm` hint, no agent having run; Ctrl-C ends the wait.
//! - R11: the user committing in the main worktree while tasks merge (`git add` then
//!   `git commit`, `git commit -a`) fails no task, and every commit of theirs is kept.
//! - A merge by hand of another workflow's branch in the very second qw left that branch
//!   is told by the position in the main worktree's HEAD reflog, not by whole seconds.
//!
//! The agent writes a line to the agent log when it starts (see `worktree.rs`), so "no
//! agent ran" is read there.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::auto::{auto_args, auto_demo as auto, continue_demo, demo_args};
use crate::support::moves::{once, record, tasks, work};
use crate::support::*;
use crate::worktree::{HARNESS_TIMEOUT, Repo, bounded};

/// `workflow-auto` in the background (its own process group), its output in a file the
/// test reads while it runs.
fn start(r: &Repo, parallel: &str) -> (Child, PathBuf) {
    let cmd = r.agent_cmd();
    let a = demo_args("workflow-auto", &cmd, parallel);
    let out = r.aux.path().join("run.out");
    let file = std::fs::File::create(&out).unwrap();
    let mut c: Command = r.f.cmd(&a);
    c.stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null())
        .process_group(0);
    (c.spawn().unwrap(), out)
}

/// Wait (bounded: a minute, for a line said at once or after a second) until `file`
/// holds `text`; its text. Never said: the background qw (its process group) is ended
/// and the test fails.
fn wait_for_text(child: &mut Child, file: &Path, text: &str) -> String {
    let t0 = Instant::now();
    loop {
        let s = std::fs::read_to_string(file).unwrap_or_default();
        if s.contains(text) {
            return s;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            kill_group(child.id() as i32, 9);
            let _ = child.wait();
            panic!("never printed `{text}`: {s}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A stale `index.lock` in the main worktree (as a crashed git leaves it), a minute old.
fn stale_lock(r: &Repo) -> PathBuf {
    let lock = r.root().join(".git/index.lock");
    std::fs::write(&lock, "").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(old)
        .unwrap();
    lock
}

// ---- R8: the main worktree unusable when the run starts ----

/// A stale `index.lock` at the start: said at once, naming the file, its age and that
/// no git runs there; no agent starts while it is there; removed (by the user, after
/// ~2 s), the run goes on and completes.
#[test]
fn mainwait_stale_index_lock_at_start_is_waited_for_before_any_agent() {
    let r = Repo::new(&tasks(2));
    r.action("1", &work("1"));
    r.action("2", &work("2"));
    let lock = stale_lock(&r);
    let (mut child, out) = start(&r, "2");
    let text = wait_for_text(&mut child, &out, "qw starts no agent");
    assert!(text.contains(&format!("`{}`", lock.display())), "{text}");
    assert!(text.contains("1 min old"), "{text}");
    assert!(text.contains("no git process runs in"), "{text}");
    assert!(text.contains("rm -- "), "{text}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(r.runs().is_empty(), "an agent started: {:?}", r.runs());
    assert!(lock.exists(), "qw removed the user's lock");
    std::fs::remove_file(&lock).unwrap();
    let rc = finish(child);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(rc, Some(0), "{text}");
    assert_eq!(r.runs_of("1"), 1);
    assert_eq!(r.runs_of("2"), 1);
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
}

/// Past the wait (`QW_MAIN_WAIT_S=2`): exit 2, the line and the `rm` hint, no agent ran,
/// the lock left where it is. The same at `workflow-continue` (task 2 failed in a first
/// run): its agent does not run again while the lock is there.
#[test]
fn mainwait_stale_index_lock_past_the_wait_exits_2_and_runs_no_agent() {
    let mut r = Repo::new(&tasks(2));
    r.f.set("QW_MAIN_WAIT_S", "2");
    r.action("1", &work("1"));
    r.action("2", "exit 1\n");
    let lock = stale_lock(&r);
    let out = auto(&r, "2");
    let err = stderr(&out);
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert!(
        err.contains("for longer than qw waits (2 s, `QW_MAIN_WAIT_S`)")
            && err.contains("qw did not start workflow `demo` (no agent ran)"),
        "{err}"
    );
    assert!(err.contains(&format!("`{}`", lock.display())), "{err}");
    assert!(
        err.contains(&format!(
            "hint: if no git is running there, remove it: `rm -- {}`",
            lock.display()
        )),
        "{err}"
    );
    assert!(r.runs().is_empty(), "an agent ran: {:?}", r.runs());
    assert!(lock.exists(), "qw removed the user's lock");
    std::fs::remove_file(&lock).unwrap();
    let out = auto(&r, "2");
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(r.runs_of("2"), 1);
    let lock = stale_lock(&r);
    let out = continue_demo(&r, "2");
    assert_eq!(code(&out), 2, "{}", diag(&out));
    assert!(stderr(&out).contains("rm -- "), "{}", diag(&out));
    assert_eq!(r.runs_of("2"), 1, "task 2's agent ran again");
    std::fs::remove_file(&lock).unwrap();
    r.action("2", &work("2"));
    let out = continue_demo(&r, "2");
    assert_eq!(code(&out), 0, "{}", diag(&out));
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
}

/// Ctrl-C (SIGINT to qw) while it waits at the start: it ends at once with 130 (not
/// after the 600 s wait), no agent ran, the lock is left.
#[test]
fn mainwait_ctrl_c_during_the_start_wait_ends_it() {
    let r = Repo::new(&tasks(2));
    r.action("1", &work("1"));
    r.action("2", &work("2"));
    let lock = stale_lock(&r);
    let (mut child, out) = start(&r, "2");
    wait_for_text(&mut child, &out, "qw starts no agent");
    unsafe_kill(child.id() as i32, 2);
    let rc = finish(child);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(rc, Some(130), "{text}");
    assert!(text.contains("a signal ended the wait"), "{text}");
    assert!(r.runs().is_empty(), "an agent ran: {:?}", r.runs());
    assert!(lock.exists());
    r.assert_no_process();
}

/// A merge the user left half done (conflicted) at the start: waited for, said at once
/// naming `MERGE_HEAD` and how to finish it; once the user commits it, the run goes on;
/// their merge is kept.
#[test]
fn mainwait_users_unfinished_merge_at_start_is_waited_for() {
    let r = Repo::new(&tasks(2));
    r.action("1", &work("1"));
    r.action("2", &work("2"));
    r.git(&["switch", "-q", "-c", "side"]);
    std::fs::write(r.root().join("shared.txt"), "side\n").unwrap();
    r.git(&["commit", "-qam", "side"]);
    r.git(&["switch", "-q", "main"]);
    std::fs::write(r.root().join("shared.txt"), "main\n").unwrap();
    r.git(&["commit", "-qam", "main"]);
    assert!(!r.git_ok(&["merge", "-q", "side"]), "the merge conflicts");
    let (mut child, out) = start(&r, "2");
    let text = wait_for_text(&mut child, &out, "qw starts no agent");
    assert!(
        text.contains("in the middle of a merge that qw did not start")
            && text.contains("MERGE_HEAD")
            && text.contains("git merge --abort"),
        "{text}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(r.runs().is_empty(), "an agent started: {:?}", r.runs());
    std::fs::write(r.root().join("shared.txt"), "both\n").unwrap();
    r.git(&["add", "shared.txt"]);
    r.git(&["commit", "-q", "--no-edit"]);
    let rc = finish(child);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(rc, Some(0), "{text}");
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
    assert!(r.git_ok(&["merge-base", "--is-ancestor", "side", "main"]));
    assert_eq!(r.git(&["show", "main:shared.txt"]), "both\n");
}

// ---- R11: the user committing in the main worktree while tasks merge ----

/// The user's git, as the user runs it: tried again while another git (qw's merge) holds
/// the index, as a person would.
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
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Commit a line to `user.txt` in the main worktree until `stop` (at most `max` times),
/// each turn one of the user's shapes: `git add` then `git commit`, or `git commit -a`.
/// The subjects of the commits made.
fn user_commits(
    root: PathBuf,
    env: Vec<(String, String)>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    max: usize,
) -> Vec<String> {
    use std::io::Write;
    let mut made = Vec::new();
    let mut i = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) && i < max {
        i += 1;
        let mut f = std::fs::File::options()
            .append(true)
            .open(root.join("user.txt"))
            .unwrap();
        writeln!(f, "u{i}").unwrap();
        drop(f);
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
        std::thread::sleep(Duration::from_millis(150));
    }
    made
}

/// The user commits in the main worktree in a loop (`git add` + `git commit`, `git
/// commit -a`) while six tasks, two at a time, finish and merge: no task fails, every
/// agent ran once, every task's work and every one of the user's commits is on `main`.
#[test]
fn mainwait_users_commits_while_tasks_merge_fail_no_task_and_are_all_kept() {
    let r = Repo::new(&tasks(6));
    r.f.p.write("user.txt", "u0\n");
    r.git(&["add", "user.txt"]);
    r.git(&["commit", "-qm", "user 0"]);
    for i in 1..=6 {
        let id = i.to_string();
        r.action(&id, &format!("sleep 0.3\n{}", work(&id)));
    }
    let (child, out) = start(&r, "2");
    let t0 = Instant::now();
    while r.runs().is_empty() {
        assert!(t0.elapsed() < HARNESS_TIMEOUT, "the agents never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let user = {
        let root = r.root().to_path_buf();
        let env = r.git_env_pairs().to_vec();
        let stop = stop.clone();
        std::thread::spawn(move || user_commits(root, env, stop, 400))
    };
    let rc = finish(child);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let made = user.join().unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(rc, Some(0), "{text}");
    assert!(made.len() > 5, "the user made only {} commits", made.len());
    for i in 1..=6 {
        let id = i.to_string();
        assert_eq!(r.f.task(&id)["status"], "completed", "task {id}: {text}");
        assert_eq!(r.runs_of(&id), 1, "task {id}'s agent ran again");
    }
    let log = r.git(&["log", "--format=%s", "main"]);
    for s in &made {
        assert!(log.lines().any(|l| l == s), "`{s}` was lost: {log}");
    }
    // (Their file's lines are not compared: qw's `git merge` reads HEAD and the index
    // before it locks, and `git commit` moves HEAD before it renames its index, so a
    // commit between them can make the merge set back a line not yet committed. Open:
    // `mainrace.rs` compares them over twenty rounds, ignored until it is fixed.)
    r.assert_all_merged(&["f1.txt", "f2.txt", "f3.txt", "f4.txt", "f5.txt", "f6.txt"]);
}

// ---- A merge by hand in the very second qw left the branch ----

/// Workflow `other`'s task 1 conflicted (its branch kept for a merge by hand); while
/// `demo` runs, the user merges it by hand in the main worktree, and qw's record of where
/// it left that branch bears the very second of the user's merge (its time set to the
/// merge commit's, as when both land in one second). Told by the position in the HEAD
/// reflog, it is the user's merge made after qw left the branch: nothing is refused.
/// (By whole seconds the tie was taken as made while the task ran, and refused.)
#[test]
fn mainwait_users_merge_by_hand_in_the_second_qw_left_the_branch_is_no_move() {
    let r = Repo::new(&tasks(2));
    r.f.p.write(".claude/specs/other/requirements.md", "# R\n");
    r.f.p.write(".claude/specs/other/design.md", "# D\n");
    r.f.p.write(".claude/specs/other/tasks.md", &tasks(1));
    r.git(&["add", "-A"]);
    r.git(&["commit", "-q", "-m", "spec other"]);
    r.action(
        "other-1",
        "echo one > shared.txt\ngit commit -qam s1\necho two > \"$MAIN/shared.txt\"\ngit -C \"$MAIN\" commit -qam user-two\n",
    );
    let cmd = r.agent_cmd();
    let out = bounded(
        r.f.cmd(&auto_args(
            "workflow-auto",
            &["other", "Other"],
            &cmd,
            &["--parallel", "2", "--task-timeout", "60"],
        )),
        HARNESS_TIMEOUT,
    );
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert_eq!(r.task_in("other", "1")["outcome"], "merge_conflict");
    let left = r.root().join(".git/qw-left/other/1");
    assert!(left.is_file());
    r.action(
        "demo-1",
        &format!(
            "{}{}",
            work("1"),
            once(
                &r,
                "by-hand",
                &format!(
                    "git -C \"$MAIN\" merge -q qw/other/1 || true\necho both > \"$MAIN/shared.txt\"\ngit -C \"$MAIN\" add shared.txt\ngit -C \"$MAIN\" commit -qm resolved --no-edit\ntouch -d \"@$(git -C \"$MAIN\" log -1 --format=%ct)\" {}",
                    left.display()
                )
            )
        ),
    );
    r.action("demo-2", &work("2"));
    let out = r.auto(&["--parallel", "1", "--isolate", "worktree"]);
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert!(
        !diag(&out).contains("target branch `main` was moved"),
        "{}",
        diag(&out)
    );
    assert!(!record(&r).exists(), "a refusal was recorded");
    r.assert_all_merged(&["f1.txt", "f2.txt"]);
    assert_eq!(r.git(&["show", "main:shared.txt"]), "both\n");
}
