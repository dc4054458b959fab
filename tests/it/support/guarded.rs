//! Commands bounded so that a hang fails the test, and a workflow held at a gate: the
//! set-up `fix5a`, `special` and `fix6n` share.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{TestProject, kill_group, wait_until};

/// Run `cmd` in a process group of its own; if it has not ended after 90 s, kill the
/// group and fail: qw hung.
pub fn bounded(mut cmd: Command) -> Output {
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pgid = i32::try_from(child.id()).unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let dog = std::thread::spawn(move || match rx.recv_timeout(Duration::from_secs(90)) {
        Err(mpsc::RecvTimeoutError::Timeout) => {
            kill_group(pgid, 9);
            true
        }
        _ => false,
    });
    let out = child.wait_with_output().unwrap();
    let _ = tx.send(());
    assert!(!dog.join().unwrap(), "qw hung: {cmd:?}");
    out
}

/// Settings under which admission never holds a task back (a loaded test machine).
pub fn permissive(p: &TestProject) {
    p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"max_load": 1000, "max_memory": 1.0, "high_impact_load": 1000}}"#,
    );
}

/// A project whose spec `demo` has its documents (tasks 1 and 2), and an agent command
/// that says it started (`started-<task>`) and then waits for the file `gate` before
/// succeeding.
pub fn gated_project() -> (TestProject, String) {
    let p = TestProject::new();
    permissive(&p);
    p.write(".claude/specs/demo/requirements.md", "# R\n\n1. x\n");
    p.write(".claude/specs/demo/design.md", "# D\n\nx\n");
    p.write(
        ".claude/specs/demo/tasks.md",
        "- [ ] 1. One\n- [ ] 2. Two\n",
    );
    let root = p.path().display().to_string();
    let agent = p.script(
        "bin/gated-agent",
        &format!(
            "#!/bin/sh\ntouch '{root}/started-'\"$1\"\ni=0\nwhile [ ! -e '{root}/gate' ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\necho done\n"
        ),
    );
    (p, format!("{} {{task_id}}", agent.display()))
}

/// `qw workflow-auto demo` of a [`gated_project`], one task at a time, without worktrees,
/// in a process group of its own (killed when dropped), started once its task 1 runs.
pub struct GatedRun {
    /// The `qw` process.
    pub child: Child,
    /// Its pid, also its process group.
    pub pid: i32,
}

impl GatedRun {
    /// Start it, its stderr going to `stderr`, and wait until task 1 has started.
    pub fn start(p: &TestProject, agent_cmd: &str, stderr: Stdio) -> GatedRun {
        let mut wf = p.qw(&[
            "workflow-auto",
            "demo",
            "d",
            "--agent-cmd",
            agent_cmd,
            "--isolate",
            "none",
            "--parallel",
            "1",
        ]);
        wf.process_group(0).stdout(Stdio::null()).stderr(stderr);
        let child = wf.spawn().unwrap();
        let run = GatedRun {
            pid: i32::try_from(child.id()).unwrap(),
            child,
        };
        assert!(
            wait_until(Duration::from_secs(60), || p
                .path()
                .join("started-1")
                .exists()),
            "the workflow never started task 1"
        );
        run
    }
}

impl Drop for GatedRun {
    fn drop(&mut self) {
        kill_group(self.pid, 9);
    }
}
