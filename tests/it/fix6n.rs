//! Issue 14's leftovers after the eighth session: a workflow of a spec that never ran
//! starting during `state-backup --restore` (it has no lock file for the restore to
//! find); strings in the state that spell a number tag (rev5a L1); what a deep file that
//! is not JSON is called; the supervisor's `--report-file` swapped for a FIFO or a link
//! (rev5a H3's supervisor shape, fixed by fix5a, untested until now: these pass on the
//! code before this branch too).
//!
//! Every command runs under [`bounded`] or a process group killed when the test ends.

use std::fs::File;
use std::os::unix::fs::FileTypeExt as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::support::guarded::*;
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
    write_spec(&p, "fresh", Some("- [ ] 1. Only\n"));
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

    // Another never-run spec, with a short lock limit: it gives up, naming the restore,
    // having run nothing and recorded nothing.
    write_spec(&p, "other", Some("- [ ] 1. Only\n"));
    let mut other = p.qw(&[
        "workflow-auto",
        "other",
        "o",
        "--agent-cmd",
        &format!("{} other-{{task_id}}", fresh_agent.display()),
        "--isolate",
        "none",
    ]);
    other.env("QW_LOCK_TIMEOUT", "1");
    let out = bounded(other);
    assert_eq!(code(&out), 1, "{}", diag(&out));
    assert!(
        stderr(&out).contains("a state restore (`qw state-backup --restore`) to end")
            && stderr(&out).contains(&format!("pid {}", restore.pid)),
        "{}",
        diag(&out)
    );
    assert!(!p.path().join("fresh-ran-other-1").exists());

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
    assert!(state["specifications"].get("other").is_none(), "{state}");
    assert_eq!(p.read(".claude/specs/other/tasks.md"), "- [ ] 1. Only\n");
}

// ---------------------------------------------------------------------------------------
// What qw carries through the state: strings spelling its tags, deep text that is not JSON.

/// rev5a L1: a string starting with NUL + `qw-num:` (the tag marker of old) or
/// `qw-raw:` turned into a number (or a container) on the state's next write.
#[test]
fn fix6n_strings_spelling_a_number_tag_stay_strings_on_rewrite() {
    let p = TestProject::new();
    assert_eq!(code(&bounded(p.qw(&["exec", "--", "true"]))), 0);
    let state = p.claude().join("unified_state.json");
    let strings =
        r#"["\u0000qw-num:12", "\u0000qw-num:NaN", "\u0000qw-raw:5b5d", "\u0000\u0071w-num:7"]"#;
    let text = with_member(&std::fs::read_to_string(&state).unwrap(), "notes", strings);
    std::fs::write(&state, &text).unwrap();
    // A write of the state (exec records its run), then another.
    for _ in 0..2 {
        let out = bounded(p.qw(&["exec", "--", "true"]));
        assert_eq!(code(&out), 0, "{}", diag(&out));
        assert!(!stderr(&out).contains("corrupt"), "{}", diag(&out));
    }
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(
        after["notes"],
        serde_json::json!([
            "\u{0}qw-num:12",
            "\u{0}qw-num:NaN",
            "\u{0}qw-raw:5b5d",
            "\u{0}qw-num:7"
        ]),
        "{after}"
    );
    assert_eq!(after["commands"]["total_executed"], 3, "{after}");
}

/// A deep container that is not JSON: the quarantine line says where and that it is not
/// JSON, not serde_json's "recursion limit exceeded"; settings likewise.
#[test]
fn fix6n_a_deep_file_that_is_not_json_is_named_where_it_breaks() {
    let p = TestProject::new();
    assert_eq!(code(&bounded(p.qw(&["exec", "--", "true"]))), 0);
    let state = p.claude().join("unified_state.json");
    let broken = format!("{}[1 2]{}", "[".repeat(300), "]".repeat(300));
    let text = with_member(&std::fs::read_to_string(&state).unwrap(), "x", &broken);
    let line = text.lines().position(|l| l.contains("[1 2]")).unwrap() + 1;
    let column = text.lines().nth(line - 1).unwrap().find("2]").unwrap() + 1;
    std::fs::write(&state, &text).unwrap();
    let out = bounded(p.qw(&["status"]));
    assert_eq!(code(&out), 0, "{}", diag(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "not valid JSON: unexpected `2` at line {line} column {column}"
        )) && !err.contains("recursion limit"),
        "{err}"
    );

    // Settings, cut off 300 levels down: refused with the place, nothing overwritten.
    let settings = format!("{{\n  \"tool\": {}", "[".repeat(300));
    p.write(".claude/settings.local.json", &settings);
    let out = bounded(p.qw(&["dev-mode", "on"]));
    assert_eq!(code(&out), 2, "{}", diag(&out));
    let err = stderr(&out);
    assert!(
        err.contains("is not valid JSON (line 2, column 311): not valid JSON: the text ends inside a list or object")
            && !err.contains("recursion limit"),
        "{err}"
    );
    assert_eq!(p.read(".claude/settings.local.json"), settings);
}

// ---------------------------------------------------------------------------------------
// The supervisor's `--report-file` swapped for a FIFO or a symlink before it is written.

/// `qw exec --report-file PATH` where PATH is a FIFO or a link: a FIFO is refused (no
/// hang), a link is replaced by the report and its target left as it was.
#[test]
fn fix6n_exec_refuses_a_fifo_report_file_and_never_writes_through_a_link() {
    let p = TestProject::new();
    let fifo = p.path().join("report.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let out = bounded(p.qw(&[
        "exec",
        "--report-file",
        fifo.to_str().unwrap(),
        "--",
        "true",
    ]));
    assert_eq!(code(&out), 125, "{}", diag(&out));
    assert!(
        stderr(&out).contains(&format!(
            "`{}` is not a regular file; qw will not replace it",
            fifo.display()
        )),
        "{}",
        diag(&out)
    );
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let victim = p.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let link = p.path().join("report.link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let out = bounded(p.qw(&[
        "exec",
        "--report-file",
        link.to_str().unwrap(),
        "--",
        "true",
    ]));
    assert_eq!(code(&out), 0, "{}", diag(&out));
    assert_eq!(read(&victim), "precious\n");
    // The link was replaced by the report.
    assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
    let report: serde_json::Value = serde_json::from_str(&read(&link)).unwrap();
    assert!(report.is_object(), "{report}");
}

/// rev5a H3's supervisor shape: the agent finds its supervisor's `--report-file` in
/// `/proc/$PPID/cmdline` and swaps it before exiting.
#[test]
fn fix6n_an_agent_that_swaps_its_supervisors_report_file_hangs_nothing() {
    for (shape, swap) in [
        ("fifo", "mkfifo \"$rf\""),
        ("victim", "ln -s \"$VICTIM\" \"$rf\""),
        ("dev-zero", "ln -s /dev/zero \"$rf\""),
    ] {
        let (p, _) = gated_project();
        let victim = p.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        p.write(".claude/specs/demo/tasks.md", "- [ ] 1. One\n");
        let agent = p.script(
            "bin/swapper",
            &format!(
                "#!/bin/sh\nrf=$(tr '\\0' '\\n' < /proc/$PPID/cmdline | sed -n '/^--report-file$/{{n;p}}')\n[ -n \"$rf\" ] || exit 3\nrm -f \"$rf\"\n{swap}\necho done\n"
            ),
        );
        let mut cmd = p.qw(&[
            "workflow-auto",
            "demo",
            "d",
            "--agent-cmd",
            &format!("{} {{task_id}}", agent.display()),
            "--isolate",
            "none",
            "--attempts",
            "1",
        ]);
        cmd.env("VICTIM", &victim);
        let out = bounded(cmd);
        assert_eq!(read(&victim), "precious\n", "{shape}");
        let state: serde_json::Value =
            serde_json::from_str(&p.read(".claude/unified_state.json")).unwrap();
        let task = &state["specifications"]["demo"]["tasks"]["1"];
        if shape == "fifo" {
            // Refused on both sides: the supervisor will not write into it, the workflow
            // will not read from it; the task fails naming it, nothing hangs.
            assert_eq!(code(&out), 1, "{shape}: {}", diag(&out));
            assert!(
                stderr(&out).contains("report.json` is not a regular file; qw will not replace it"),
                "{}",
                diag(&out)
            );
            assert_eq!(task["outcome"], "agent_error", "{task}");
            let error = task["error"].as_str().unwrap();
            assert!(
                error.contains("report.json` is a FIFO, not a regular file"),
                "{error}"
            );
        } else {
            // A link: the supervisor renames its report over it; the workflow reads that.
            assert_eq!(code(&out), 0, "{shape}: {}", diag(&out));
            assert_eq!(task["status"], "completed", "{shape}: {task}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// rev5a: a `_Verify:_` command printing hundreds of MB cost the offline agent its whole
// output in RAM (`Command::output`), passing (310 MB) or failing (484 MB, and all of it
// copied to its stderr).

#[test]
fn fix6n_a_verify_printing_100_mb_costs_the_offline_agent_no_memory() {
    for (exit, ends) in [(0, "completed"), (1, "failed")] {
        let p = spec_project(
            "s",
            Some(&format!(
                "- [ ] 1. one\n  - _Verify: `sh -c 'yes abcdefghijklmnopqrstuvwxyz | head -c 100000000; echo the-last-line; exit {exit}'`_\n"
            )),
        );
        let out = offline_run(&p, "s");
        assert_eq!(code(&out), exit, "{}", diag(&out));
        let state: serde_json::Value =
            serde_json::from_str(&p.read(".claude/unified_state.json")).unwrap();
        let task = &state["specifications"]["s"]["tasks"]["1"];
        assert_eq!(task["status"], ends, "{task}");
        if exit != 0 {
            // The failure still names the end of the output; the agent's stderr holds
            // only the end, after a note of what was left out.
            assert!(
                task["error"].as_str().unwrap().contains("the-last-line"),
                "{task}"
            );
            let run = std::fs::read_dir(p.claude().join("runs"))
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|d| d.to_string_lossy().contains("-task-1-"))
                .unwrap();
            let said = std::fs::metadata(run.join("stderr.log")).unwrap().len();
            assert!(said < 1 << 20, "stderr.log is {said} bytes");
            let said = read(&run.join("stderr.log"));
            assert!(
                said.contains("bytes before these left out]") && said.contains("the-last-line"),
                "{}",
                &said[..said.len().min(500)]
            );
        }
    }
    // Under nextest (this test alone in its process): no process it started, qw's
    // included, grew with the output.
    if let Some(rss_mib) = children_max_rss_mib() {
        assert!(rss_mib < 48, "a process grew to {rss_mib} MiB");
    }
}
