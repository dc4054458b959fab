//! `qw exec`: real process trees, adversarial children, exit codes.
//!
//! Every test tags what it starts with a unique `QW_TEST_MARKER` so a `MarkerGuard` can
//! kill leftovers by pid even when an assertion fails, and asserts that no process with
//! the run's cookie survives.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// `qw exec` inside `p`, tagged with a fresh marker.
fn exec_cmd(p: &TestProject, args: &[&str]) -> (Command, MarkerGuard) {
    let m = marker();
    let mut c = p.qw(&["exec"]);
    c.args(args);
    c.env("QW_TEST_MARKER", &m);
    (c, MarkerGuard(m))
}

/// Run to completion, returning output, JSON report and wall time.
fn run_json(p: &TestProject, args: &[&str]) -> (std::process::Output, serde_json::Value, Duration) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (mut c, _guard) = exec_cmd(p, &all);
    let start = Instant::now();
    let out = c.output().unwrap();
    let took = start.elapsed();
    let report = last_json(&out);
    (out, report, took)
}

fn run_id(report: &serde_json::Value) -> String {
    report["run_id"].as_str().unwrap().to_owned()
}

#[test]
fn exit_codes_follow_gnu_timeout() {
    let p = TestProject::bare();
    let code = |args: &[&str]| p.run(args).status.code();
    assert_eq!(code(&["exec", "--", "true"]), Some(0));
    assert_eq!(code(&["exec", "--", "sh", "-c", "exit 3"]), Some(3));
    assert_eq!(
        code(&["exec", "--timeout", "0.2", "--", "sleep", "5"]),
        Some(124)
    );
    // 0 disables the limit, as with GNU timeout.
    assert_eq!(
        code(&["exec", "--timeout", "0", "--", "sleep", "0.3"]),
        Some(0)
    );
    assert_eq!(code(&["exec", "--", "/"]), Some(126));
    let not_exec = p.write("plain.txt", "not a program\n");
    assert_eq!(code(&["exec", "--", not_exec.to_str().unwrap()]), Some(126));
    assert_eq!(code(&["exec", "--", "qw-no-such-program-xyz"]), Some(127));
    assert_eq!(code(&["exec", "--", "sh", "-c", "kill -9 $$"]), Some(137));
}

#[test]
fn json_report_has_the_contract_fields() {
    let p = TestProject::bare();
    let (out, r, _) = run_json(&p, &["--", "sh", "-c", "echo hello; exit 4"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(stdout(&out).starts_with("hello\n"), "{}", stdout(&out));
    for key in [
        "exit_code",
        "signal",
        "timed_out",
        "escalated_to_kill",
        "duration_ms",
        "leftovers_killed",
    ] {
        assert!(r.get(key).is_some(), "missing {key} in {r}");
    }
    assert_eq!(r["exit_code"], 4);
    assert_eq!(r["timed_out"], false);
    assert_eq!(r["leftovers_killed"], 0);
    // Nothing was left to end: the program exited by itself and alone.
    assert_eq!(r["processes_ended"], 0, "{r}");
}

#[test]
fn term_ignoring_shell_is_killed_after_grace() {
    let p = TestProject::bare();
    let (out, r, took) = run_json(
        &p,
        &[
            "--timeout",
            "0.5",
            "--grace",
            "0.5",
            "--",
            "sh",
            "-c",
            "trap '' TERM; sleep 30",
        ],
    );
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert_eq!(r["timed_out"], true);
    assert_eq!(r["escalated_to_kill"], true);
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(cookie_pids(&run_id(&r)).is_empty());
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));
}

#[test]
fn setsid_grandchild_does_not_escape() {
    let p = TestProject::bare();
    let (out, r, took) = run_json(
        &p,
        &[
            "--timeout",
            "0.5",
            "--grace",
            "2",
            "--",
            "sh",
            "-c",
            "setsid sleep 30 & sleep 30",
        ],
    );
    assert_eq!(out.status.code(), Some(124));
    // Both sleeps die on SIGTERM: no need to wait for the grace.
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(cookie_pids(&run_id(&r)).is_empty());
}

#[test]
fn double_forked_daemon_is_ended_when_child_exits() {
    let p = TestProject::bare();
    // The daemon setsid()s, double-forks, ignores TERM and closes nothing.
    let (out, r, took) = run_json(
        &p,
        &[
            "--grace",
            "0.5",
            "--",
            "sh",
            "-c",
            "( trap '' TERM; setsid sh -c 'trap \"\" TERM; sleep 30' & ) ; exit 0",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(r["leftovers_killed"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["escalated_to_kill"], true);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(cookie_pids(&run_id(&r)).is_empty());
}

#[test]
fn leftover_holding_the_pipe_does_not_hang_qw() {
    let p = TestProject::bare();
    // `output()` reads stdout to EOF: if the leftover sleep kept the pipe open, this hangs.
    let (out, r, took) = run_json(&p, &["--", "sh", "-c", "sleep 300 & exit 0"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(r["leftovers_killed"], 1, "{r}");
    // The program exited by itself: what qw ended is the leftover alone.
    assert_eq!(r["processes_ended"], 1, "{r}");
    let leftover_pid = r["leftovers"][0]["pid"].as_i64().unwrap();
    let err = stderr(&out);
    assert!(
        err.contains("warning")
            && err.contains(&leftover_pid.to_string())
            && err.contains("sleep 300"),
        "{err}"
    );
    assert!(cookie_pids(&run_id(&r)).is_empty());
}

#[test]
fn five_deep_fork_chain_ignoring_term_dies_on_time() {
    let p = TestProject::bare();
    let chain = p.script(
        "chain.sh",
        "#!/bin/sh\ntrap '' TERM\nd=${1:-5}\nif [ \"$d\" -gt 0 ]; then \"$0\" $((d - 1)) & fi\nwhile :; do sleep 1; done\n",
    );
    let (out, r, took) = run_json(
        &p,
        &[
            "--timeout",
            "1",
            "--grace",
            "1",
            "--",
            chain.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(124));
    assert_eq!(r["escalated_to_kill"], true);
    // timeout + grace = 2 s; contract: back within ~0.3 s of that (slack for a busy box).
    assert!(took < Duration::from_millis(3500), "took {took:?}");
    assert!(cookie_pids(&run_id(&r)).is_empty());
}

/// Spawn `qw exec` in the background with a program that writes its cookie to a file,
/// and wait until the tree is up. Returns (child, guard, run id).
fn spawn_background(
    p: &TestProject,
    extra: &[&str],
    script: &str,
) -> (std::process::Child, MarkerGuard, String) {
    let cookie_file = p.path().join("cookie.txt");
    let body = format!(
        "echo \"$QW_RUN_ID\" > '{}'; {script}",
        cookie_file.display()
    );
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--", "sh", "-c", &body]);
    let (mut c, guard) = exec_cmd(p, &args);
    let child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&cookie_file).is_ok_and(|s| s.ends_with('\n'))
    }));
    let id = std::fs::read_to_string(&cookie_file)
        .unwrap()
        .trim()
        .to_owned();
    // Let the background processes start.
    assert!(wait_until(Duration::from_secs(5), || cookie_pids(&id)
        .len()
        >= 2));
    (child, guard, id)
}

#[test]
fn sigint_to_qw_ends_the_whole_tree() {
    let p = TestProject::bare();
    let (mut child, _guard, id) =
        spawn_background(&p, &["--grace", "0.5"], "setsid sleep 30 & sleep 30 & wait");
    let start = Instant::now();
    unsafe_kill(child.id() as i32, 2);
    let status = child.wait().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    // The shell died of the forwarded SIGINT (or SIGKILL after the grace).
    let code = status.code().unwrap();
    assert!(code == 130 || code == 137, "exit {code}");
    assert!(
        cookie_pids(&id).is_empty(),
        "survivors: {:?}",
        cookie_pids(&id)
    );
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("signal 2"), "{err}");
}

/// A shell that starts three sleeps (one in a session of its own), then writes `ready`
/// and waits: once `ready` exists the run is exactly four processes, the shell included.
/// The sleeps ignore SIGINT (background jobs of a shell without job control do).
fn four_process_tree(ready: &std::path::Path) -> String {
    format!(
        "sleep 60 & sleep 60 & setsid sleep 60 & : > '{}'; wait",
        ready.display()
    )
}

#[test]
fn timeout_reports_how_many_processes_it_ended() {
    let p = TestProject::bare();
    let ready = p.path().join("ready");
    let tree = four_process_tree(&ready);
    let (out, r, _) = run_json(
        &p,
        &["--timeout", "2", "--grace", "0.5", "--", "sh", "-c", &tree],
    );
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(cookie_pids(&run_id(&r)).is_empty());
    let ended = r["processes_ended"].as_u64().unwrap();
    if ready.exists() {
        // Every process was started before the limit: the count is exact.
        assert_eq!(ended, 4, "{r}");
    } else {
        // A very slow machine: the shell had not forked them all yet.
        assert!((1..=4).contains(&ended), "{r}");
    }
    // Not leftovers: the program did not exit by itself.
    assert_eq!(r["leftovers_killed"], 0, "{r}");
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "timed out after 2s; ended the process tree ({ended} processes) with SIGTERM"
        )),
        "{err}"
    );
}

#[test]
fn sigint_reports_how_many_processes_it_ended() {
    let p = TestProject::bare();
    let ready = p.path().join("ready");
    let tree = four_process_tree(&ready);
    let (mut c, _guard) = exec_cmd(&p, &["--json", "--grace", "0.5", "--", "sh", "-c", &tree]);
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || ready.exists()));
    unsafe_kill(child.id() as i32, 2);
    let out = child.wait_with_output().unwrap();
    let r = last_json(&out);
    assert!(cookie_pids(&run_id(&r)).is_empty());
    assert_eq!(r["interrupted_by"], 2, "{r}");
    // The shell and its three sleeps, all running when the signal came.
    assert_eq!(r["processes_ended"], 4, "{r}");
    assert_eq!(r["leftovers_killed"], 0, "{r}");
    // The sleeps ignore the forwarded SIGINT: only SIGKILL ends them.
    assert_eq!(r["escalated_to_kill"], true, "{r}");
    let err = stderr(&out);
    assert!(
        err.contains(
            "received signal 2; forwarded it to the process tree and ended it (4 processes, then SIGKILL after the grace)"
        ),
        "{err}"
    );
}

#[test]
fn sigterm_and_sighup_are_forwarded_too() {
    for sig in [15, 1] {
        let p = TestProject::bare();
        let (mut child, _guard, id) = spawn_background(&p, &["--grace", "0.5"], "sleep 30 & wait");
        unsafe_kill(child.id() as i32, sig);
        let status = child.wait().unwrap();
        assert!(status.code().is_some());
        assert!(cookie_pids(&id).is_empty(), "signal {sig}: survivors");
    }
}

#[test]
fn sweep_ends_orphans_of_a_killed_qw() {
    let p = TestProject::new();
    let (mut child, _guard, id) = spawn_background(
        &p,
        &["--no-record"],
        "trap '' TERM; setsid sleep 30 & sleep 30 & wait",
    );
    sigkill(&mut child);
    // The owner is gone; its tree lives on.
    assert!(!cookie_pids(&id).is_empty());
    let out = p.run(&["sweep", "--project-only", "--grace", "0.5"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        cookie_pids(&id).is_empty(),
        "survivors: {:?}",
        cookie_pids(&id)
    );
    assert!(stdout(&out).contains("ended"), "{}", stdout(&out));
}

#[test]
fn next_exec_in_the_project_sweeps_orphans_by_itself() {
    let p = TestProject::new();
    let (mut child, _guard, id) = spawn_background(&p, &["--no-record"], "sleep 30 & wait");
    sigkill(&mut child);
    assert!(!cookie_pids(&id).is_empty());
    let out = p.run(&["exec", "--no-record", "--", "true"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(cookie_pids(&id).is_empty());
    assert!(stderr(&out).contains("orphaned"), "{}", stderr(&out));
}

#[test]
fn sweep_leaves_live_runs_alone() {
    let p = TestProject::new();
    let (mut child, _guard, id) = spawn_background(&p, &["--no-record"], "sleep 30 & wait");
    let out = p.run(&["sweep", "--project-only"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!cookie_pids(&id).is_empty(), "a live run was swept");
    unsafe_kill(child.id() as i32, 15);
    child.wait().unwrap();
    assert!(cookie_pids(&id).is_empty());
}

#[test]
fn bad_input_exits_125_and_starts_nothing() {
    let p = TestProject::bare();
    let marker = p.path().join("started");
    let touch = format!("touch {}", marker.display());
    let cases: Vec<Vec<&str>> = vec![
        vec!["exec"],
        vec!["exec", "--"],
        vec!["exec", "--bogus", "--", "sh", "-c", &touch],
        vec!["exec", "--timeout", "-1", "--", "sh", "-c", &touch],
        vec!["exec", "--timeout=-1", "--", "sh", "-c", &touch],
        vec!["exec", "--timeout", "abc", "--", "sh", "-c", &touch],
        vec!["exec", "--grace", "nan", "--", "sh", "-c", &touch],
        vec!["exec", "--timeout", "inf", "--", "sh", "-c", &touch],
        vec!["exec", "--cwd", "/no/such/dir", "--", "sh", "-c", &touch],
    ];
    for args in cases {
        let out = p.run(&args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(!err.trim().is_empty(), "{args:?}: no message");
        assert!(!marker.exists(), "{args:?} started the program");
    }
}

#[test]
fn cwd_and_argv_are_passed_verbatim() {
    let p = TestProject::bare();
    let sub = p.path().join("sub dir");
    std::fs::create_dir_all(&sub).unwrap();
    let out = p.run(&[
        "exec",
        "--cwd",
        sub.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "pwd; printf '%s|' \"$@\"",
        "x",
        "a b",
        "$(c)",
        ";d",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("sub dir"), "{text}");
    assert!(text.contains("a b|$(c)|;d|"), "{text}");
}

#[test]
fn stall_timeout_ends_a_silent_idle_run_but_not_a_busy_one() {
    let p = TestProject::bare();
    let (out, r, _) = run_json(
        &p,
        &[
            "--stall-timeout",
            "1",
            "--grace",
            "0.5",
            "--",
            "sh",
            "-c",
            "echo once; sleep 30",
        ],
    );
    assert_eq!(out.status.code(), Some(124));
    assert_eq!(r["stalled"], true);
    assert!(cookie_pids(&run_id(&r)).is_empty());

    let out_file = p.path().join("out.log");
    let (out, r, _) = run_json(
        &p,
        &[
            "--stall-timeout",
            "1",
            "--stdout-file",
            out_file.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6; do echo tick; sleep 0.4; done",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{r}");
    assert_eq!(r["stalled"], false);
    assert_eq!(
        std::fs::read_to_string(out_file).unwrap().lines().count(),
        6
    );
}

/// `commands` of the project's state: (total_executed, [(command, success)]).
fn recorded(p: &TestProject) -> (u64, Vec<(String, bool)>) {
    let v: serde_json::Value = serde_json::from_str(&p.read(".claude/unified_state.json")).unwrap();
    let recent = v["commands"]["recent_commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["command"].as_str().unwrap().to_owned(),
                c["success"].as_bool().unwrap(),
            )
        })
        .collect();
    (v["commands"]["total_executed"].as_u64().unwrap(), recent)
}

#[test]
fn exec_records_success_by_exit_code_and_supervisors_record_nothing() {
    let p = TestProject::new();
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let env = format!("QW_TEST_MARKER={m}");
    let runs: [(&[&str], i32); 4] = [
        (&["--", "true"], 0),
        (&["--", "sh", "-c", "exit 3"], 3),
        (&["--timeout", "0.2", "--", "sleep", "5"], 124),
        (&["--", "/nonexistent/program"], 127),
    ];
    for (args, code) in runs {
        let mut all = vec!["exec", "--env", &env];
        all.extend_from_slice(args);
        let o = p.run(&all);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
    }
    let (total, recent) = recorded(&p);
    assert_eq!(total, 4, "{recent:?}");
    assert_eq!(
        recent,
        [
            ("true".to_owned(), true),
            ("sh -c 'exit 3'".to_owned(), false),
            ("sleep 5".to_owned(), false),
            ("/nonexistent/program".to_owned(), false),
        ]
    );

    // `--no-record` and the workflow's executor (supervisors get `--no-record`) add nothing.
    let o = p.run(&["exec", "--no-record", "--", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let executor = quantumwala::exec::LocalExecutor::new(qw_bin()).unwrap();
    for argv in [["true"].as_slice(), ["sh", "-c", "exit 5"].as_slice()] {
        let mut spec = quantumwala::exec::ExecSpec::new(
            quantumwala::exec::Program::argv(argv.iter().copied()).unwrap(),
        );
        spec.project = Some(p.path().to_path_buf());
        spec.env
            .push(("QW_TEST_MARKER".into(), std::ffi::OsString::from(&m)));
        let report =
            quantumwala::exec::Executor::run(&executor, &spec, &quantumwala::exec::Cancel::new())
                .unwrap();
        assert_eq!(report.exit_code, if argv[0] == "true" { 0 } else { 5 });
    }
    assert_eq!(recorded(&p).0, 4, "supervised runs were recorded");
}

/// `qw exec` options for a stall watchdog of `stall` seconds under a limit of `timeout`
/// (grace 0.5 s), then `argv`.
fn stall_watched<'a>(stall: &'a str, timeout: &'a str, argv: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec![
        "--stall-timeout",
        stall,
        "--timeout",
        timeout,
        "--grace",
        "0.5",
        "--",
    ];
    all.extend_from_slice(argv);
    all
}

/// All of a child's stdout, to its end.
fn read_all(mut out: std::process::ChildStdout) -> String {
    let mut s = String::new();
    out.read_to_string(&mut s).unwrap();
    s
}

/// Run `qw exec --json ARGS…` with stdout read by `read_stdout` (a pipe, like `| cat`) and
/// stderr sent to `stderr`; returns the exit code and the report.
fn run_piped(
    p: &TestProject,
    args: &[&str],
    stderr: Stdio,
    read_stdout: impl FnOnce(std::process::ChildStdout) -> String,
) -> (Option<i32>, serde_json::Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (mut c, _guard) = exec_cmd(p, &all);
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(stderr)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let out = read_stdout(child.stdout.take().unwrap());
    let status = child.wait().unwrap();
    let line = out.lines().last().unwrap_or_default().to_owned();
    let report = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {out}"));
    (status.code(), report)
}

#[test]
fn stall_watchdog_counts_output_into_a_pipe_as_activity() {
    // The reproduction: a busy program whose output goes into a pipe (`… | cat`). The
    // wall-clock limit ends it; the watchdog must not.
    let p = TestProject::bare();
    let (code, r) = run_piped(
        &p,
        &stall_watched(
            "1.5",
            "5",
            &["sh", "-c", "while :; do echo tick; sleep 0.5; done"],
        ),
        Stdio::null(),
        read_all,
    );
    assert_eq!(code, Some(124), "{r}");
    assert_eq!(r["timed_out"], true, "{r}");
    assert_eq!(
        r["stalled"], false,
        "ended as stalled although it printed: {r}"
    );
    assert!(cookie_pids(&run_id(&r)).is_empty());
}

#[test]
fn stall_watchdog_counts_output_of_one_quiet_process_into_a_pipe() {
    // One process, no children coming and going, almost no CPU: only the bytes it
    // writes into the pipe show that it is alive.
    let p = TestProject::bare();
    let (code, r) = run_piped(
        &p,
        &stall_watched(
            "1.5",
            "5",
            &[
                "perl",
                "-e",
                "$| = 1; while (1) { print qq(tick\n); select(undef, undef, undef, 0.4) }",
            ],
        ),
        Stdio::null(),
        read_all,
    );
    assert_eq!(code, Some(124), "{r}");
    assert_eq!(
        r["stalled"], false,
        "ended as stalled although it printed: {r}"
    );
}

#[test]
fn stall_watchdog_leaves_a_writer_blocked_on_a_slow_reader_alone() {
    // `yes` fills the pipe and then waits in write() for a reader that takes a byte every
    // 0.7 s: no CPU, no bytes written for seconds — waiting, not stalled.
    let p = TestProject::bare();
    let (code, r) = run_piped(
        &p,
        &stall_watched("1", "4", &["yes"]),
        Stdio::null(),
        |mut out| {
            let started = Instant::now();
            let mut byte = [0u8; 1];
            while started.elapsed() < Duration::from_secs(3) {
                std::thread::sleep(Duration::from_millis(700));
                if out.read(&mut byte).unwrap_or(0) == 0 {
                    break;
                }
            }
            // Then drain to the end, where the report is.
            let mut rest = Vec::new();
            out.read_to_end(&mut rest).unwrap();
            String::from_utf8_lossy(&rest).into_owned()
        },
    );
    assert_eq!(code, Some(124), "{r}");
    assert_eq!(
        r["stalled"], false,
        "a writer waiting for its reader was ended: {r}"
    );
    assert_eq!(r["timed_out"], true, "{r}");
}

#[test]
fn stall_watchdog_counts_writes_to_an_inherited_file_stderr() {
    // No terminal, no --stderr-file: stderr is a plain file qw inherited. Writes to it are
    // activity even though qw does not know the file.
    let p = TestProject::bare();
    let log = p.path().join("stderr.log");
    let file = std::fs::File::create(&log).unwrap();
    let (code, r) = run_piped(
        &p,
        &stall_watched(
            "1.5",
            "4",
            &[
                "perl",
                "-e",
                "while (1) { print STDERR qq(tick\n); select(undef, undef, undef, 0.4) }",
            ],
        ),
        Stdio::from(file),
        read_all,
    );
    assert_eq!(code, Some(124), "{r}");
    assert_eq!(r["stalled"], false, "{r}");
    assert!(std::fs::read_to_string(&log).unwrap().contains("tick"));
}

#[test]
fn stall_watchdog_still_ends_a_reader_waiting_for_input_that_never_comes() {
    // Blocked in read() on a pipe nobody writes to (qw's stdin, held open by the test):
    // no output, no CPU — a true stall, and it must still be detected.
    let p = TestProject::bare();
    let (mut c, _guard) = exec_cmd(
        &p,
        &[
            "--json",
            "--stall-timeout",
            "1",
            "--grace",
            "0.5",
            "--",
            "sh",
            "-c",
            "read line; echo never",
        ],
    );
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _stdin = child.stdin.take();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.wait().unwrap();
    let r: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(status.code(), Some(124), "{r}");
    assert_eq!(r["stalled"], true, "{r}");
    assert!(!out.contains("never"));
    assert!(cookie_pids(&run_id(&r)).is_empty());
}
