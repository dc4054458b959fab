//! Waiting on qw's locks (issue 14 item 10): a lock held by a stopped process makes
//! `qw exec` and `qw workflow-auto` wait, and SIGINT, SIGTERM or SIGHUP ends the wait at
//! once with 128+N, after a line that names what is awaited and who holds it. Every wait
//! alike: the state lock, the repository (merge) lock, an admission slot (whose line
//! names the holders and says which are stopped), `consume` waiting for its lock or
//! running a suggestion; planted non-files at slot names are skipped, never followed.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use quantumwala::fs::{LockedFile, ProcessState};

use crate::support::{TestProject, marker, pids_with_env, unsafe_kill};

/// Generous bound on every wait of these tests (a loaded machine is slow, never this slow).
const PATIENCE: Duration = Duration::from_secs(60);

/// A foreign process holding `path` locked (`flock -F`: the lock stays with the pid
/// that took it), stopped with SIGSTOP like a suspended `qw`. Killed by pid on drop.
pub(crate) struct StoppedHolder {
    child: Child,
}

impl StoppedHolder {
    pub(crate) fn new(path: &Path) -> StoppedHolder {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let child = Command::new("flock")
            .args(["-F", "-x"])
            .arg(path)
            .args(["sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("flock(1) from util-linux");
        let holder = StoppedHolder { child };
        let pid = holder.pid();
        assert!(
            wait_for(|| LockedFile::probe(path).unwrap().and_then(|h| h.pid) == Some(pid)),
            "flock never took `{}`",
            path.display()
        );
        unsafe_kill(pid, nix::sys::signal::Signal::SIGSTOP as i32);
        assert!(wait_for(|| {
            LockedFile::probe(path).unwrap().map(|h| h.state) == Some(ProcessState::Stopped)
        }));
        holder
    }

    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }
}

impl Drop for StoppedHolder {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A `qw` started with piped stderr, read line by line in a thread.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// Wait for a stderr line containing `needle`.
    fn expect_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; stderr so far: {:#?}", self.seen),
            }
        }
    }

    /// Wait for the exit (bounded), then return its code and the whole stderr.
    fn finish(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("qw did not stop; stderr: {:#?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.code(), self.seen.join("\n"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

const SIGNALS: [(i32, &str); 3] = [(2, "SIGINT"), (15, "SIGTERM"), (1, "SIGHUP")];

/// Start `args` in `p` while `lock` is held by a stopped process, wait for the waiting
/// line, send `sig`: the command ends with 128+sig naming the holder, leaving nothing.
pub(crate) fn interrupted_while_waiting(p: &TestProject, args: &[&str], lock: &Path, what: &str) {
    interrupted_while_waiting_with(p, args, lock, what, true);
}

/// [`interrupted_while_waiting`]; `hint`: the error also says how to resume the holder.
fn interrupted_while_waiting_with(
    p: &TestProject,
    args: &[&str],
    lock: &Path,
    what: &str,
    hint: bool,
) {
    let holder = StoppedHolder::new(lock);
    for (sig, name) in SIGNALS {
        let mark = marker();
        let mut cmd = p.qw(args);
        cmd.env("QW_TEST_MARKER", &mark)
            .env_remove("QW_LOCK_TIMEOUT");
        let mut qw = Running::start(cmd);
        let waiting = qw.expect_line("waiting for");
        assert!(waiting.contains(what), "{name}: {waiting}");
        assert!(
            waiting.contains(&lock.display().to_string()),
            "{name}: names the lock file: {waiting}"
        );
        assert!(
            waiting.contains(&format!("held by pid {}", holder.pid()))
                && waiting.contains("stopped"),
            "{name}: names the stopped holder: {waiting}"
        );
        unsafe_kill(qw.pid(), sig);
        let (code, err) = qw.finish();
        assert_eq!(code, Some(128 + sig), "{name}: {err}");
        assert!(
            err.contains(&format!(
                "interrupted by signal {sig} while waiting for {what}"
            )),
            "{name}: {err}"
        );
        assert!(
            !hint || err.contains(&format!("kill -CONT {}", holder.pid())),
            "{name}: hint: {err}"
        );
        assert_eq!(
            pids_with_env("QW_TEST_MARKER", &mark),
            Vec::<i32>::new(),
            "{name}: a process of the interrupted qw is left"
        );
        assert_eq!(
            LockedFile::probe(lock).unwrap().and_then(|h| h.pid),
            Some(holder.pid()),
            "the holder keeps its lock"
        );
    }
}

pub(crate) fn state_lock(p: &TestProject) -> PathBuf {
    p.claude().join("unified_state.json.lock")
}

pub(crate) fn state_of(p: &TestProject) -> String {
    format!("the state of project `{}`", p.path().display())
}

#[test]
fn exec_waiting_for_the_state_lock_stops_on_each_signal() {
    let p = TestProject::new();
    let state = p.write(".claude/unified_state.json", "{}\n");
    interrupted_while_waiting(&p, &["exec", "--", "true"], &state_lock(&p), &state_of(&p));
    assert_eq!(
        std::fs::read_to_string(state).unwrap(),
        "{}\n",
        "state untouched"
    );
}

#[test]
fn workflow_waiting_for_the_state_lock_stops_on_each_signal() {
    let p = TestProject::new();
    interrupted_while_waiting(
        &p,
        &["workflow-auto", "demo", "A demo", "--agent", "offline"],
        &state_lock(&p),
        &state_of(&p),
    );
    assert!(
        !p.claude().join("unified_state.json").exists(),
        "nothing recorded"
    );
    // The interrupted runs left the spec's workflow lock free.
    let spec_lock = p.claude().join("runs/.demo.workflow.lock");
    assert_eq!(LockedFile::probe(spec_lock).unwrap(), None);
}

#[test]
fn consume_waiting_for_the_suggestion_lock_stops_and_keeps_the_suggestion() {
    let p = TestProject::new();
    let suggestion = p.write(".claude/next_command.txt", "/spec-list\n");
    let lock = p.claude().join("next_command.lock");
    let holder = StoppedHolder::new(&lock);
    let mut qw = Running::start(p.qw(&["consume", "--once"]));
    let waiting = qw.expect_line("waiting for the suggestion of project");
    assert!(
        waiting.contains(&format!("held by pid {}", holder.pid())),
        "{waiting}"
    );
    unsafe_kill(qw.pid(), 15);
    let (code, err) = qw.finish();
    // 128+N like every other interrupted wait (it exited 1).
    assert_eq!(code, Some(143), "{err}");
    assert!(
        err.contains("interrupted by signal 15 while waiting for the suggestion"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(suggestion).unwrap(),
        "/spec-list\n",
        "left in place"
    );
}

/// Two workflows of one spec: the second fails at once, naming the first's pid and
/// command; the first (waiting on a stopped state holder) still stops on a signal.
#[test]
fn a_second_workflow_of_a_spec_fails_at_once_naming_the_first() {
    let p = TestProject::new();
    let _holder = StoppedHolder::new(&state_lock(&p));
    let mark = marker();
    let mut cmd = p.qw(&["workflow-auto", "demo", "A demo", "--agent", "offline"]);
    cmd.env("QW_TEST_MARKER", &mark);
    let mut first = Running::start(cmd);
    // Waiting for the state means it holds the workflow lock already.
    first.expect_line("waiting for");
    let spec_lock = p.claude().join("runs/.demo.workflow.lock");
    let held = LockedFile::probe(&spec_lock)
        .unwrap()
        .expect("the first holds the spec");
    assert_eq!(held.pid, Some(first.pid()));
    assert!(held.since.is_some(), "{held:?}");

    let second = p
        .qw(&["workflow-auto", "demo", "A demo", "--agent", "offline"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr).into_owned();
    assert_eq!(
        second.status.code(),
        Some(2),
        "nothing was started (rev11b F5): {err}"
    );
    assert!(
        err.contains("already running the workflow of spec `demo`"),
        "{err}"
    );
    assert!(
        err.contains(&format!("held by pid {}", first.pid())),
        "{err}"
    );
    assert!(
        err.contains("workflow-auto demo"),
        "names the command: {err}"
    );
    assert!(err.contains(" since "), "{err}");
    assert!(
        err.contains(&format!("kill {}", first.pid())),
        "hint: {err}"
    );

    unsafe_kill(first.pid(), 2);
    let (code, err) = first.finish();
    assert_eq!(code, Some(130), "{err}");
    assert!(pids_with_env("QW_TEST_MARKER", &mark).is_empty());
    assert_eq!(
        LockedFile::probe(&spec_lock).unwrap(),
        None,
        "released at exit"
    );
}

/// With a limit, a wait on a stopped holder gives up by itself (no signal needed), with
/// the documented failure, the holder named, and how to raise the limit.
#[test]
fn a_lock_wait_gives_up_after_qw_lock_timeout() {
    let p = TestProject::new();
    p.write(".claude/unified_state.json", "{}\n");
    let holder = StoppedHolder::new(&state_lock(&p));
    let out = p
        .qw(&["state-backup", "snap"])
        .env("QW_LOCK_TIMEOUT", "0.2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("gave up after"), "{err}");
    assert!(err.contains(&state_of(&p)), "{err}");
    assert!(
        err.contains(&format!("held by pid {}", holder.pid())),
        "{err}"
    );
    assert!(
        err.contains("hint: to wait longer, set QW_LOCK_TIMEOUT"),
        "{err}"
    );
    assert!(
        err.contains(&format!("kill -CONT {}", holder.pid())),
        "{err}"
    );
}

/// `qw consume` running a suggestion (whose command waits on a stopped state holder):
/// SIGINT is forwarded, and consume exits 130 like every interrupted wait, the
/// suggestion kept, no process left.
#[test]
fn consume_running_a_suggestion_exits_130_on_sigint() {
    let p = TestProject::new();
    let suggestion = p.write(".claude/next_command.txt", "/spec-create foo \"x\"\n");
    let _holder = StoppedHolder::new(&state_lock(&p));
    let mark = marker();
    let mut cmd = p.qw(&["consume", "--once"]);
    cmd.env("QW_TEST_MARKER", &mark);
    let mut qw = Running::start(cmd);
    qw.expect_line(&format!("waiting for {}", state_of(&p)));
    unsafe_kill(qw.pid(), 2);
    let (code, err) = qw.finish();
    assert_eq!(code, Some(130), "{err}");
    assert!(
        err.contains("interrupted by signal 2 before `/spec-create foo"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(suggestion).unwrap(),
        "/spec-create foo \"x\"\n",
        "left in place"
    );
    assert!(pids_with_env("QW_TEST_MARKER", &mark).is_empty());
}

/// The repository (merge) lock held by a stopped process: a workflow with task worktrees
/// waits on it and stops on each signal with 128+N (it exited 1), naming the lock.
#[test]
fn workflow_waiting_for_the_repository_lock_stops_on_each_signal() {
    let p = TestProject::new();
    p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"max_load": 1000, "max_memory": 1.0, "high_impact_load": 1000}}"#,
    );
    p.write(".gitignore", ".qw-runtime/\n.claude/\n");
    p.write("README", "x\n");
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "init",
        ],
    ] {
        let ok = Command::new("git")
            .arg("-C")
            .arg(p.path())
            .args(args)
            .status()
            .unwrap();
        assert!(ok.success(), "git {args:?}");
    }
    interrupted_while_waiting_with(
        &p,
        &[
            "workflow-auto",
            "demo",
            "A demo",
            "--agent",
            "offline",
            "--parallel",
            "2",
        ],
        &p.path().join(".git/qw-worktrees.lock"),
        "the repository lock",
        true,
    );
}

/// Settings for the admission tests: one slot, no probe limit in the way.
fn one_slot(p: &TestProject) {
    p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"max_concurrent": 1, "max_load": 1000, "max_memory": 1.0, "high_impact_load": 1000}}"#,
    );
}

/// `qw exec --admit` waiting for the one slot, held by another `qw exec --admit` that is
/// stopped: its line names the holder's pid and says it is stopped; each signal ends the
/// wait with 128+N, saying what it waited for; nothing is started, nothing is left.
#[test]
fn exec_waiting_for_a_slot_names_the_stopped_holder_and_stops_on_each_signal() {
    let p = TestProject::new();
    one_slot(&p);
    let mark = marker();
    let _cleanup = crate::support::MarkerGuard(mark.clone());
    let mut cmd = p.qw(&["exec", "--admit", "--no-record", "--", "sleep", "600"]);
    cmd.env("QW_TEST_MARKER", &mark)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut holder = cmd.spawn().unwrap();
    let holder_pid = i32::try_from(holder.id()).unwrap();
    let slot = p.path().join(".qw-runtime/slots/slot-0000");
    assert!(
        wait_for(
            || LockedFile::probe(&slot).ok().flatten().and_then(|h| h.pid) == Some(holder_pid)
        ),
        "the holder never took the slot"
    );
    unsafe_kill(holder_pid, nix::sys::signal::Signal::SIGSTOP as i32);
    assert!(wait_for(|| {
        LockedFile::probe(&slot).unwrap().map(|h| h.state) == Some(ProcessState::Stopped)
    }));
    for (sig, name) in SIGNALS {
        let started = p.path().join(format!("started-{sig}"));
        let waiter_mark = marker();
        let mut cmd = p.qw(&["exec", "--admit", "--no-record", "--", "touch"]);
        cmd.arg(&started).env("QW_TEST_MARKER", &waiter_mark);
        let mut qw = Running::start(cmd);
        let line = qw.expect_line("waiting for admission");
        assert!(
            line.contains(&format!("held by qw pid {holder_pid} (stopped)")),
            "{name}: {line}"
        );
        unsafe_kill(qw.pid(), sig);
        let (code, err) = qw.finish();
        assert_eq!(code, Some(128 + sig), "{name}: {err}");
        assert!(
            err.contains(&format!("signal {sig} while waiting for admission")),
            "{name}: {err}"
        );
        assert!(!started.exists(), "{name}: the program ran");
        assert!(pids_with_env("QW_TEST_MARKER", &waiter_mark).is_empty());
    }
    // Resume the holder and end it by pid: it ends its tree and gives the slot back.
    unsafe_kill(holder_pid, nix::sys::signal::Signal::SIGCONT as i32);
    unsafe_kill(holder_pid, 15);
    let status = holder.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    assert!(wait_for(
        || pids_with_env("QW_TEST_MARKER", &mark).is_empty()
    ));
}

/// A directory, a FIFO or a symlink (to a file of the user's) planted at slot names is
/// skipped with one warning naming each path — never followed, never a failure — and
/// admission takes the next slot file; with a real holder of that one, the waiter still
/// waits for it (the limit is the slots in use, not their names).
#[test]
fn unusable_slot_entries_are_skipped_with_a_warning_and_never_followed() {
    let p = TestProject::new();
    one_slot(&p);
    let slots = p.path().join(".qw-runtime/slots");
    std::fs::create_dir_all(slots.join("slot-0000")).unwrap();
    nix::unistd::mkfifo(
        &slots.join("slot-0001"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let target = p.write("precious.txt", "precious\n");
    std::os::unix::fs::symlink(&target, slots.join("slot-0002")).unwrap();
    for _ in 0..2 {
        let out = p
            .qw(&["exec", "--admit", "--no-record", "--", "true"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{err}");
        for (name, what) in [
            ("slot-0000", "a directory"),
            ("slot-0001", "a FIFO"),
            ("slot-0002", "a symbolic link"),
        ] {
            let lines: Vec<&str> = err
                .lines()
                .filter(|l| l.contains(&slots.join(name).display().to_string()))
                .collect();
            assert_eq!(lines.len(), 1, "{name}: {err}");
            assert!(lines[0].contains(what), "{name}: {err}");
        }
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    assert!(
        slots.join("slot-0003").is_file(),
        "the next name is the slot"
    );
    assert!(
        std::fs::symlink_metadata(slots.join("slot-0002"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // The one usable slot held by a stopped process: a waiter waits (and stops on
    // SIGINT with 130), it does not take a second slot past the planted entries.
    let _holder = StoppedHolder::new(&slots.join("slot-0003"));
    let mut qw = Running::start(p.qw(&["exec", "--admit", "--no-record", "--", "true"]));
    qw.expect_line("waiting for admission");
    unsafe_kill(qw.pid(), 2);
    let (code, err) = qw.finish();
    assert_eq!(code, Some(130), "{err}");
    assert!(!slots.join("slot-0004").exists(), "{err}");
}
