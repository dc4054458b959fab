//! Test scaffolding: a temporary project, the `qw` binary, fake programs, process checks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Path of the `qw` binary under test: cargo's, or `QW_TEST_BIN` when set (the
/// statically linked release build of `scripts/build-release`, say).
pub fn qw_bin() -> PathBuf {
    std::env::var_os("QW_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_qw")))
}

/// A temporary project directory (with `.claude/` unless made `bare`).
pub struct TestProject {
    pub dir: tempfile::TempDir,
}

impl TestProject {
    /// A project with an empty `.claude/`.
    pub fn new() -> TestProject {
        let p = TestProject::bare();
        std::fs::create_dir_all(p.path().join(".claude")).unwrap();
        p
    }

    /// A plain directory, no `.claude/`.
    pub fn bare() -> TestProject {
        TestProject {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn claude(&self) -> PathBuf {
        self.path().join(".claude")
    }

    /// `qw -C <project> ARGS…`, ready to run.
    pub fn qw(&self, args: &[&str]) -> Command {
        let mut c = Command::new(qw_bin());
        c.arg("-C").arg(self.path()).args(args);
        c.env("QW_RUNTIME_DIR", self.path().join(".qw-runtime"));
        c.env_remove("QW_RUN_ID");
        c
    }

    /// Run `qw` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.qw(args).output().unwrap()
    }

    /// Write a file relative to the project root (parents created).
    pub fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// Write an executable script relative to the project root.
    pub fn script(&self, rel: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.write(rel, body);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// Settings under which admission refuses every run, waiting at most
    /// `acquire_timeout_s`: a memory limit of 0 holds even with no qw task running (load
    /// limits would be waived then).
    pub fn refuse_admission(&self, acquire_timeout_s: u32) {
        self.write(
            ".claude/settings.local.json",
            &format!(
                r#"{{"resource_limits": {{"max_memory": 0, "acquire_timeout_s": {acquire_timeout_s}}}}}"#
            ),
        );
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap()
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The last line of stdout parsed as JSON.
pub fn last_json(o: &Output) -> serde_json::Value {
    let out = stdout(o);
    let line = out.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Processes (thread-group ids) any live thread of which holds `NAME=value` in its
/// environment. Per thread, because a zombie thread-group leader whose other threads run
/// (its main thread called `pthread_exit`) is alive and has an empty `environ` of its own.
pub fn pids_with_env(name: &str, value: &str) -> Vec<i32> {
    let needle = format!("{name}={value}");
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(tasks) = std::fs::read_dir(entry.path().join("task")) else {
            continue;
        };
        let marked = tasks.flatten().any(|t| {
            let live = std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, r)| r.trim().chars().next())
                    .is_some_and(|c| !matches!(c, 'Z' | 'X' | 'x'))
            });
            live && std::fs::read(t.path().join("environ"))
                .is_ok_and(|e| e.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()))
        });
        if marked {
            out.push(pid);
        }
    }
    out
}

/// Live processes carrying the run cookie.
pub fn cookie_pids(run_id: &str) -> Vec<i32> {
    pids_with_env("QW_RUN_ID", run_id)
}

/// A unique marker for a test, put in the environment of everything it starts so the
/// test can find (and clean up) its processes without killing by name.
pub fn marker() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "qwtest-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Kills every process carrying the marker when dropped (cleanup even if a test fails).
pub struct MarkerGuard(pub String);

impl Drop for MarkerGuard {
    fn drop(&mut self) {
        for pid in pids_with_env("QW_TEST_MARKER", &self.0) {
            unsafe_kill(pid, 9);
        }
    }
}

/// Send a signal to one process. Refuses pids <= 1: a negative or zero pid would reach
/// a whole process group, and `-1` every process on the machine (procps `kill -9 -N`
/// reads `-N` as "all processes" — it must never be used here).
pub fn unsafe_kill(pid: i32, sig: i32) {
    assert!(
        pid > 1,
        "refusing to signal pid {pid}: only single processes are signalled"
    );
    let Ok(sig) = nix::sys::signal::Signal::try_from(sig) else {
        return;
    };
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// A `PATH` with `dir` first, then the inherited one (fake programs shadow real ones).
pub fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// SIGKILL `child` (it cleans nothing up) and reap it.
pub fn sigkill(child: &mut std::process::Child) {
    unsafe_kill(child.id() as i32, 9);
    child.wait().unwrap();
}

/// Send a signal to a process group led by `pgid` (must be > 1).
pub fn kill_group(pgid: i32, sig: i32) {
    assert!(pgid > 1, "refusing to signal process group {pgid}");
    let Ok(sig) = nix::sys::signal::Signal::try_from(sig) else {
        return;
    };
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), sig);
}

/// The environment of a test's git commands: a fixed identity, no user or system
/// configuration.
pub const GIT_ENV: &[(&str, &str)] = &[
    ("GIT_AUTHOR_NAME", "Test"),
    ("GIT_AUTHOR_EMAIL", "test@example.com"),
    ("GIT_COMMITTER_NAME", "Test"),
    ("GIT_COMMITTER_EMAIL", "test@example.com"),
    ("GIT_CONFIG_GLOBAL", "/dev/null"),
    ("GIT_CONFIG_NOSYSTEM", "1"),
];

/// One busy loop per usable CPU (load for admission to see), ended by pid when
/// dropped; they carry the test's marker, so its `MarkerGuard` ends them if this drop
/// never runs.
pub struct BusyLoops(Vec<std::process::Child>);

impl BusyLoops {
    pub fn start(marker: &str) -> BusyLoops {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        BusyLoops(
            (0..cpus)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .env("QW_TEST_MARKER", marker)
                        .stdin(std::process::Stdio::null())
                        .spawn()
                        .unwrap()
                })
                .collect(),
        )
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        for c in &mut self.0 {
            unsafe_kill(i32::try_from(c.id()).unwrap(), 9);
            let _ = c.wait();
        }
    }
}

/// Poll `cond` until true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

pub mod auto;
pub mod claude_cli;
pub mod flow;
pub mod guarded;
pub mod messages_api;
pub mod moves;

pub use flow::{Flow, THREE, code, diag, fake_sid};

/// The largest resident set (MiB) of any child this test process waited for, when the
/// test runs alone in its process (nextest: `NEXTEST_RUN_ID` is set), so it is the
/// biggest process the test started. None under `cargo test`, where every test's
/// children count.
pub fn children_max_rss_mib() -> Option<i64> {
    std::env::var_os("NEXTEST_RUN_ID")?;
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .ok()
        .map(|u| u.max_rss() / 1024)
}

/// Append `n` bytes of `byte` to `path` without a newline, in 1 MiB writes.
pub fn append_filler(path: &Path, n: usize, byte: u8) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let chunk = vec![byte; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len());
        f.write_all(&chunk[..k]).unwrap();
        left -= k;
    }
}
