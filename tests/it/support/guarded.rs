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

/// Write spec `spec`'s requirements and design (one line each) and, when given, its
/// tasks.md.
pub fn write_spec(p: &TestProject, spec: &str, tasks: Option<&str>) {
    p.write(
        &format!(".claude/specs/{spec}/requirements.md"),
        "# R\n\n1. x\n",
    );
    p.write(&format!(".claude/specs/{spec}/design.md"), "# D\n\nx\n");
    if let Some(tasks) = tasks {
        p.write(&format!(".claude/specs/{spec}/tasks.md"), tasks);
    }
}

/// A [`permissive`] project with spec `spec` ([`write_spec`]).
pub fn spec_project(spec: &str, tasks: Option<&str>) -> TestProject {
    let p = TestProject::new();
    permissive(&p);
    write_spec(&p, spec, tasks);
    p
}

/// `qw workflow-auto SPEC d --agent offline --isolate none --attempts 1`, [`bounded`].
pub fn offline_run(p: &TestProject, spec: &str) -> Output {
    bounded(p.qw(&[
        "workflow-auto",
        spec,
        "d",
        "--agent",
        "offline",
        "--isolate",
        "none",
        "--attempts",
        "1",
    ]))
}

/// `text` (a JSON object) with `"key": member` added as its last member.
pub fn with_member(text: &str, key: &str, member: &str) -> String {
    let end = text.rfind('}').unwrap();
    format!("{},\n  \"{key}\": {member}\n}}\n", text[..end].trim_end())
}

/// A project whose spec `demo` has its documents (tasks 1 and 2), and an agent command
/// that says it started (`started-<task>`) and then waits for the file `gate` before
/// succeeding.
pub fn gated_project() -> (TestProject, String) {
    let p = spec_project("demo", Some("- [ ] 1. One\n- [ ] 2. Two\n"));
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
