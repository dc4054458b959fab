//! Issue 14's leftovers after the eighth session: a workflow of a spec that never ran
//! starting during `state-backup --restore` (it has no lock file for the restore to
//! find), what a deep file that is not JSON is called, and the swapped `--report-file`.
//!
//! Every command runs under [`bounded`] or a process group killed when the test ends.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::support::guarded::{GatedRun, bounded, gated_project};
use crate::support::*;

/// A spawned qw in a process group of its own, killed when dropped.
struct Spawned {
    child: Child,
    pid: i32,
}

impl Spawned {
    fn start(mut cmd: std::process::Command, stdout: Stdio, stderr: File) -> Spawned {
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = cmd.spawn().unwrap();
        Spawned {
            pid: i32::try_from(child.id()).unwrap(),
            child,
        }
    }

    /// Its exit code, waiting at most 90 s (then it is killed and the test fails).
    fn code(&mut self) -> i32 {
        let ended = wait_until(Duration::from_secs(90), || {
            self.child.try_wait().unwrap().is_some()
        });
        assert!(ended, "qw (pid {}) hung", self.pid);
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        kill_group(self.pid, 9);
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// A restore and a workflow of a never-run spec.

#[test]
fn fix6n_a_never_run_specs_workflow_waits_for_a_restore_and_loses_nothing() {
    let (p, agent_cmd) = gated_project();
    assert_eq!(code(&bounded(p.qw(&["exec", "--", "true"]))), 0);
    assert_eq!(code(&bounded(p.qw(&["state-backup", "b0"]))), 0);
    // `fresh` never ran: no `.fresh.workflow.lock` exists for the restore to find.
    p.write(".claude/specs/fresh/requirements.md", "# R\n\n1. y\n");
    p.write(".claude/specs/fresh/design.md", "# D\n\ny\n");
    p.write(".claude/specs/fresh/tasks.md", "- [ ] 1. Only\n");
    let root = p.path().display().to_string();
    let fresh_agent = p.script(
        "bin/fresh-agent",
        &format!("#!/bin/sh\ntouch '{root}/fresh-ran-'\"$1\"\necho done\n"),
    );
    assert!(!p.claude().join("runs/.fresh.workflow.lock").exists());

    // A workflow runs; a restore waits for it, holding the restore lock.
    let mut demo = GatedRun::start(&p, &agent_cmd, Stdio::null());
    let restore_err = p.path().join("restore.err");
    let mut restore_cmd = p.qw(&["--json", "state-backup", "--restore", "b0", "--wait"]);
    restore_cmd.env("QW_LOCK_TIMEOUT", "0");
    let mut restore = Spawned::start(
        restore_cmd,
        Stdio::from(File::create(p.path().join("restore.out")).unwrap()),
        File::create(&restore_err).unwrap(),
    );
    assert!(
        wait_until(Duration::from_secs(60), || read(&restore_err)
            .contains("waiting for the workflow of spec `demo`")),
        "the restore never waited for `demo`: {}",
        read(&restore_err)
    );

    // The never-run spec's workflow starts now: it must wait for the restore, saying so,
    // and run none of its tasks meanwhile.
    let fresh_err = p.path().join("fresh.err");
    let mut fresh = Spawned::start(
        p.qw(&[
            "workflow-auto",
            "fresh",
            "f",
            "--agent-cmd",
            &format!("{} {{task_id}}", fresh_agent.display()),
            "--isolate",
            "none",
        ]),
        Stdio::null(),
        File::create(&fresh_err).unwrap(),
    );
    let ran = p.path().join("fresh-ran-1");
    assert!(
        wait_until(Duration::from_secs(60), || ran.exists()
            || read(&fresh_err).contains("state restore")),
        "the workflow of `fresh` neither ran nor waited: {}",
        read(&fresh_err)
    );
    assert!(
        !ran.exists(),
        "the workflow of `fresh` ran its task during the restore: {}",
        read(&fresh_err)
    );
    let said = read(&fresh_err);
    assert!(
        said.contains("waiting for a state restore (`qw state-backup --restore`) to end")
            && said.contains(".state-restore.lock")
            && said.contains(&format!("pid {}", restore.pid)),
        "{said}"
    );

    // The gate opens: `demo` ends, the restore runs, then `fresh` runs its task.
    std::fs::write(p.path().join("gate"), "").unwrap();
    let status = demo.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the workflow of `demo` failed");
    assert_eq!(restore.code(), 0, "{}", read(&restore_err));
    assert_eq!(fresh.code(), 0, "{}", read(&fresh_err));
    assert!(ran.exists());
    // The state saved before the restore never saw `fresh`: the restore came first …
    let out = read(&p.path().join("restore.out"));
    let report: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&read(std::path::Path::new(
        report["previous_saved_to"].as_str().unwrap(),
    )))
    .unwrap();
    assert!(saved["specifications"].get("fresh").is_none(), "{saved}");
    // … and what `fresh` completed after it is in the state and ticked in its tasks.md.
    let state: serde_json::Value =
        serde_json::from_str(&p.read(".claude/unified_state.json")).unwrap();
    assert_eq!(
        state["specifications"]["fresh"]["tasks"]["1"]["status"], "completed",
        "{state}"
    );
    assert_eq!(p.read(".claude/specs/fresh/tasks.md"), "- [x] 1. Only\n");
}
