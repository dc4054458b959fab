//! The agent layer end to end: the offline agent through `qw offline-agent`, and a fake
//! `claude` on PATH, each run through `LocalExecutor` (real `qw exec` supervisors) and
//! classified.

use std::ffi::OsString;
use std::time::Duration;

use quantumwala::agent::offline::checkboxes;
use quantumwala::agent::{
    self, Agent, AgentRun, ClassifyInput, ClaudeAgent, CommandAgent, ErrorCause, Job, OfflineAgent,
    Outcome, Phase, RunLimits, TaskJob,
};
use quantumwala::exec::{Cancel, ExecReport, Executor, LocalExecutor};
use quantumwala::project::Project;

use crate::support::*;

const NOT_LOGGED_IN: &str = include_str!("../fixtures/claude_result_not_logged_in.json");

fn job(p: &TestProject, phase: Phase, run: &str) -> Job {
    let root = p.path().to_path_buf();
    Job {
        phase,
        spec: "greeter".into(),
        description: "Greet users by name".into(),
        project_root: root.clone(),
        workdir: root.clone(),
        spec_dir: root.join(".claude/specs/greeter"),
        task: None,
        run_dir: root.join(".claude/runs").join(run),
        env: Vec::new(),
    }
}

fn task(id: &str, verify: Option<&str>) -> Option<TaskJob> {
    Some(TaskJob {
        id: id.into(),
        title: format!("task {id}"),
        details: vec![],
        verify: verify.map(str::to_owned),
        requirements: vec!["1.1".into()],
    })
}

fn limits(timeout: f64, stall: Option<f64>) -> RunLimits {
    RunLimits {
        timeout: Some(Duration::from_secs_f64(timeout)),
        grace: Duration::from_millis(500),
        stall_timeout: stall.map(Duration::from_secs_f64),
    }
}

fn offline(p: &TestProject, j: &Job) -> AgentRun {
    let (run, report) = agent::run_job(
        &OfflineAgent::new(qw_bin()),
        j,
        &Project::at(p.path()),
        &LocalExecutor::new(qw_bin()).unwrap(),
        limits(30.0, None),
        &Cancel::new(),
    )
    .unwrap();
    assert!(cookie_pids(&report.run_id).is_empty());
    run
}

#[test]
fn agent_offline_writes_each_document_and_never_claims_undone_work() {
    let p = TestProject::new();
    for (i, phase) in [Phase::Requirements, Phase::Design, Phase::Tasks]
        .into_iter()
        .enumerate()
    {
        let j = job(&p, phase, &format!("doc{i}"));
        let run = offline(&p, &j);
        assert_eq!(run.outcome, Outcome::Succeeded, "{phase}: {}", run.evidence);
        assert!(run.structured && run.cost_usd == 0.0);
        assert!(j.prompt_file().is_file(), "prompt captured");
        assert!(
            j.run_dir.join("stdout.json").is_file(),
            "stdout captured to a file"
        );
        let doc = p.read(&format!(
            ".claude/specs/greeter/{}",
            phase.document().unwrap()
        ));
        assert!(doc.contains("Greet users by name"), "{doc}");
    }
    let req = p.read(".claude/specs/greeter/requirements.md");
    assert!(req.contains("#### Acceptance Criteria") && req.contains("WHEN"));
    let design = p.read(".claude/specs/greeter/design.md");
    for section in ["## Overview", "## Error Handling", "## Testing Strategy"] {
        assert!(design.contains(section), "{section}");
    }
    let tasks = p.read(".claude/specs/greeter/tasks.md");
    let boxes = checkboxes(&tasks);
    assert!(
        boxes.len() >= 3 && boxes.iter().all(|(_, done)| !done),
        "{tasks}"
    );
    assert_eq!(tasks.matches("_Verify: `").count(), boxes.len());
    assert_eq!(tasks.matches("_Requirements: ").count(), boxes.len());

    // A document that exists is never overwritten.
    p.write(".claude/specs/greeter/design.md", "# My own design\n");
    let run = offline(&p, &job(&p, Phase::Design, "again"));
    assert!(run.outcome.is_success());
    assert_eq!(
        p.read(".claude/specs/greeter/design.md"),
        "# My own design\n"
    );
    p.write(".claude/specs/greeter/design.md", &design);

    // Implementation: each generated verify command passes, so the task is verified.
    for line in tasks
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- _Verify: `"))
    {
        let mut j = job(&p, Phase::Implementation, "impl-ok");
        j.task = task("2", Some(line.trim_end_matches("`_")));
        std::fs::remove_dir_all(&j.run_dir).ok();
        let run = offline(&p, &j);
        assert_eq!(run.outcome, Outcome::Succeeded, "{}", run.evidence);
        assert!(
            run.result_text
                .unwrap()
                .contains("verified; no change needed")
        );
    }

    // A failing verify (`verify_failed`, with its exit code), or none at all (an agent
    // error): reported as not done, exit 1.
    for (name, verify, want) in [
        (
            "impl-fail",
            Some("test -s no-such-file"),
            Outcome::VerifyFailed { exit_code: Some(1) },
        ),
        (
            "impl-none",
            None,
            Outcome::AgentError {
                cause: ErrorCause::Reported,
                exit_code: 1,
            },
        ),
    ] {
        let mut j = job(&p, Phase::Implementation, name);
        j.task = task("3", verify);
        let run = offline(&p, &j);
        assert_eq!(run.outcome, want, "{name}: {}", run.evidence);
        assert!(
            run.evidence.contains("cannot implement task 3"),
            "{}",
            run.evidence
        );
    }

    // Validation fails while tasks are open, passes once all are ticked.
    let run = offline(&p, &job(&p, Phase::Validation, "val1"));
    assert_eq!(run.outcome.as_str(), "agent_error", "{}", run.evidence);
    assert!(
        run.evidence.contains("VALIDATION: FAIL"),
        "{}",
        run.evidence
    );
    p.write(
        ".claude/specs/greeter/tasks.md",
        &tasks.replace("- [ ]", "- [x]"),
    );
    let run = offline(&p, &job(&p, Phase::Validation, "val2"));
    assert_eq!(run.outcome, Outcome::Succeeded, "{}", run.evidence);
    assert!(run.result_text.unwrap().starts_with("VALIDATION: PASS"));
}

#[test]
fn agent_offline_cli_rejects_bad_input_and_writes_nothing() {
    let p = TestProject::new();
    let o = p.run(&["offline-agent", "--phase", "tasks", "--spec", "../x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("invalid spec name"), "{}", stderr(&o));
    let o = p.run(&["offline-agent", "--phase", "build", "--spec", "x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown phase `build`"),
        "{}",
        stderr(&o)
    );
    assert!(!p.claude().join("specs").exists());

    // Implementation with a failing verify prints one is_error result and exits 1.
    let o = p.run(&[
        "offline-agent",
        "--phase",
        "implementation",
        "--spec",
        "x",
        "--task-id",
        "1",
        "--verify",
        "false",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v = last_json(&o);
    assert_eq!(v["is_error"], true);
    assert_eq!(v["type"], "result");
    assert_eq!(stdout(&o).lines().count(), 1);
}

/// A fake `claude` in its own PATH directory. Modes (env `FAKE_MODE`): `success` writes
/// the file the prompt names and prints a result; `not_logged_in` prints the real CLI's
/// not-logged-in object and exits 1; `hang` leaves a setsid grandchild and a
/// TERM-ignoring child and sleeps; `big` prints a 100 KiB result; `stall` prints once and
/// sleeps; `chatty` prints a line every 0.2 s for 3 s, then a result.
fn fake_claude(p: &TestProject) -> std::path::PathBuf {
    p.write(".fake/not_logged_in.json", NOT_LOGGED_IN);
    p.script(
        ".fake/bin/claude",
        r#"#!/bin/sh
[ "$1" = "-p" ] && [ "$3" = "--output-format" ] && [ "$4" = "stream-json" ] && [ "$5" = "--verbose" ] || { echo "bad argv: $*" >&2; exit 64; }
prompt="$2"
here="$(dirname "$0")/.."
result() { printf '{"type":"result","subtype":"success","is_error":false,"result":"%s","total_cost_usd":0.4,"num_turns":3,"session_id":"fake-1","usage":{"input_tokens":100,"output_tokens":50}}\n' "$1"; }
case "$FAKE_MODE" in
success)
  file=$(printf '%s\n' "$prompt" | sed -n 's/^qw saves your answer as `\([^`]*\)`.*/\1/p' | head -n 1)
  [ -n "$file" ] || { echo "no file named in the prompt" >&2; exit 65; }
  mkdir -p "$(dirname "$file")" && printf '# written by fake claude\n' > "$file"
  result "wrote $file" ;;
not_logged_in) cat "$here/not_logged_in.json"; exit 1 ;;
hang)
  echo "thinking..."
  setsid sleep 300 &
  sh -c 'trap "" TERM; sleep 300' &
  sleep 300 ;;
big) result "$(head -c 102400 /dev/zero | tr '\0' x)" ;;
stall) echo "starting"; exec sleep 300 ;;
chatty)
  i=0; while [ $i -lt 15 ]; do echo "tick $i" >&2; sleep 0.2; i=$((i+1)); done
  result "done after ticking" ;;
empty) exit 0 ;;
cut) printf '{"type":"result","subtype":"success","is_error":false,"result":"half' ;;
error_success) printf '{"type":"result","subtype":"success","is_error":true,"result":"API Error: 529 overloaded"}\n' ;;
usage) printf '{"type":"result","subtype":"success","is_error":true,"result":"Claude AI usage limit reached|1754406000"}\n'; exit 1 ;;
max_turns) printf '{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":30,"total_cost_usd":1.5}\n'; exit 1 ;;
denied) printf '{"type":"result","subtype":"success","is_error":true,"result":"could not write","permission_denials":[{"tool_name":"Write"}]}\n'; exit 1 ;;
segv) echo "about to crash" >&2; kill -SEGV $$ ;;
*) echo "unknown FAKE_MODE" >&2; exit 66 ;;
esac
"#,
    )
}

/// Run `agent` for `j` like the workflow does, with extra environment (the fake's PATH).
fn run_with_env(
    agent: &dyn Agent,
    j: &Job,
    env: Vec<(OsString, OsString)>,
    lim: RunLimits,
) -> (AgentRun, ExecReport) {
    let prompt = agent::prompt::build(j, &Project::at(&j.project_root));
    std::fs::create_dir_all(&j.run_dir).unwrap();
    std::fs::write(j.prompt_file(), &prompt).unwrap();
    let command = agent.command(j, &prompt).unwrap();
    let mut spec = command.to_exec_spec(j);
    spec.env.extend(env);
    spec.timeout = lim.timeout;
    spec.grace = lim.grace;
    spec.stall_timeout = lim.stall_timeout;
    let report = LocalExecutor::new(qw_bin())
        .unwrap()
        .run(&spec, &Cancel::new())
        .unwrap();
    let stdout = std::fs::read(command.stdout_file(j)).unwrap_or_default();
    let stderr = std::fs::read(j.stderr_file()).unwrap_or_default();
    let tail = agent::outcome::tail_lines(&stderr, 20);
    let run = agent::judge(
        agent,
        j,
        &ClassifyInput {
            report: &report,
            stdout: &stdout,
            stderr_tail: &tail,
            phase: j.phase,
            user_cancelled: false,
        },
        false,
    );
    (run, report)
}

fn fake_env(p: &TestProject, mode: &str, marker: &str) -> Vec<(OsString, OsString)> {
    let path = path_with(&p.path().join(".fake/bin"));
    vec![
        ("PATH".into(), path.into()),
        ("FAKE_MODE".into(), mode.into()),
        ("QW_TEST_MARKER".into(), marker.into()),
    ]
}

#[test]
fn agent_fake_claude_success_login_and_big_result() {
    let p = TestProject::new();
    fake_claude(&p);
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let claude = ClaudeAgent::new();

    let j = job(&p, Phase::Design, "c-ok");
    let (run, report) = run_with_env(&claude, &j, fake_env(&p, "success", &m), limits(30.0, None));
    assert_eq!(run.outcome, Outcome::Succeeded, "{}", run.evidence);
    assert!((run.cost_usd - 0.4).abs() < 1e-9);
    assert_eq!(
        (run.num_turns, run.input_tokens, run.output_tokens),
        (3, 100, 50)
    );
    assert_eq!(run.session_id.as_deref(), Some("fake-1"));
    assert_eq!(
        p.read(".claude/specs/greeter/design.md"),
        "# written by fake claude\n"
    );
    assert!(cookie_pids(&report.run_id).is_empty());

    let j = job(&p, Phase::Requirements, "c-login");
    let (run, _) = run_with_env(
        &claude,
        &j,
        fake_env(&p, "not_logged_in", &m),
        limits(30.0, None),
    );
    assert_eq!(
        run.outcome,
        Outcome::AgentError {
            cause: ErrorCause::Login,
            exit_code: 1
        },
        "{}",
        run.evidence
    );
    assert!(!run.outcome.is_retryable());
    assert!(run.evidence.contains("Not logged in"), "{}", run.evidence);

    // 100 KiB of valid JSON goes through a file, so it is never cut at 64 KiB.
    let j = job(&p, Phase::Implementation, "c-big");
    let mut j = j;
    j.task = task("1", None);
    let (run, _) = run_with_env(&claude, &j, fake_env(&p, "big", &m), limits(30.0, None));
    assert_eq!(run.outcome, Outcome::Succeeded, "{}", run.evidence);
    assert_eq!(run.result_text.unwrap().len(), 102_400);
}

#[test]
fn agent_fake_claude_hang_is_timed_out_and_nothing_survives() {
    let p = TestProject::new();
    fake_claude(&p);
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let j = job(&p, Phase::Requirements, "c-hang");
    let (run, report) = run_with_env(
        &ClaudeAgent::new(),
        &j,
        fake_env(&p, "hang", &m),
        limits(1.0, None),
    );
    assert_eq!(
        run.outcome,
        Outcome::TimedOut { escalated: true },
        "{}",
        run.evidence
    );
    assert!(run.outcome.is_retryable());
    assert!(report.duration_ms < 10_000, "{report:?}");
    assert!(cookie_pids(&report.run_id).is_empty());
    assert!(pids_with_env("QW_TEST_MARKER", &m).is_empty());
}

#[test]
fn agent_stall_watchdog_ends_silent_runs_but_not_chatty_ones() {
    let p = TestProject::new();
    fake_claude(&p);
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let j = job(&p, Phase::Requirements, "c-stall");
    let (run, report) = run_with_env(
        &ClaudeAgent::new(),
        &j,
        fake_env(&p, "stall", &m),
        limits(30.0, Some(1.0)),
    );
    assert_eq!(run.outcome.as_str(), "stalled", "{}", run.evidence);
    assert!(report.duration_ms < 15_000, "{report:?}");
    assert!(cookie_pids(&report.run_id).is_empty());

    let mut j = job(&p, Phase::Implementation, "c-chatty");
    j.task = task("1", None);
    let (run, _) = run_with_env(
        &ClaudeAgent::new(),
        &j,
        fake_env(&p, "chatty", &m),
        limits(30.0, Some(1.0)),
    );
    assert_eq!(run.outcome, Outcome::Succeeded, "{}", run.evidence);
}

#[test]
fn agent_missing_claude_and_command_agent() {
    let claude = ClaudeAgent {
        program: "/nonexistent/claude".into(),
        extra_args: vec![],
    };
    let err = claude.check().unwrap_err();
    assert!(err.to_string().contains("/nonexistent/claude"), "{err}");
    let hints = quantumwala::exit::UserError::hints(&err).join(" ");
    assert!(hints.contains("--agent offline"), "{hints}");

    // Started anyway: a not-found program is a non-retryable agent_error, not a crash.
    let p = TestProject::new();
    let j = job(&p, Phase::Design, "missing");
    let (run, _) = run_with_env(&claude, &j, vec![], limits(10.0, None));
    assert_eq!(
        run.outcome,
        Outcome::AgentError {
            cause: ErrorCause::NotStarted,
            exit_code: 127
        },
        "{}",
        run.evidence
    );
    assert!(!run.outcome.is_retryable());

    // A command agent with plain-text output: judged by exit code and the document.
    let script = p.script(
        "agent.sh",
        "#!/bin/sh\n# $1 = prompt file, $2 = spec, $3 = phase\ntest -s \"$1\" || exit 9\nmkdir -p .claude/specs/$2 && echo \"# $3\" > .claude/specs/$2/$3.md\necho wrote it\n",
    );
    let template = format!("{} {{prompt_file}} {{spec}} {{phase}}", script.display());
    let agent = CommandAgent::parse(&template).unwrap();
    agent.check().unwrap();
    let j = job(&p, Phase::Design, "cmd");
    let (run, _) = run_with_env(&agent, &j, vec![], limits(10.0, None));
    assert_eq!(run.outcome, Outcome::Succeeded, "{}", run.evidence);
    assert!(!run.structured);
    assert_eq!(p.read(".claude/specs/greeter/design.md"), "# design\n");
    assert!(j.run_dir.join("stdout.log").is_file());
}

#[test]
fn agent_fake_claude_every_failure_gets_its_own_outcome() {
    let p = TestProject::new();
    fake_claude(&p);
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let cases = [
        ("empty", "no_result", true),
        ("cut", "truncated", true),
        ("error_success", "agent_error", true),
        ("usage", "usage_limited", false),
        ("max_turns", "max_turns", false),
        ("denied", "permission_denied", false),
        ("segv", "crashed", true),
    ];
    for (mode, want, retryable) in cases {
        let mut j = job(&p, Phase::Implementation, &format!("mode-{mode}"));
        j.task = task("1", None);
        let (run, report) = run_with_env(
            &ClaudeAgent::new(),
            &j,
            fake_env(&p, mode, &m),
            limits(30.0, None),
        );
        assert_eq!(run.outcome.as_str(), want, "{mode}: {}", run.evidence);
        assert_eq!(run.outcome.is_retryable(), retryable, "{mode}");
        assert!(!run.evidence.is_empty() && !run.evidence.contains('\n'));
        assert!(cookie_pids(&report.run_id).is_empty());
        if mode == "usage" {
            assert!(run.outcome.pauses_workflow());
            assert!(
                run.resets_at
                    .as_ref()
                    .unwrap()
                    .to_string()
                    .starts_with("2025-08-05T")
            );
        }
        if mode == "max_turns" {
            assert!((run.cost_usd - 1.5).abs() < 1e-9, "cost still counted");
        }
    }
}
