//! The real Claude Code CLI, its model replaced by the scripted Messages API of
//! `support::messages_api`: the agent layer (event stream, documents answered as text,
//! refusals, API errors) and whole workflows in each permission mode.
//!
//! Skipped with a printed reason when `claude` is not installed, unless
//! `QW_REQUIRE_REAL_CLAUDE=1` (CI), then failed. What the CLI does in each mode is
//! written down in `docs/CLAUDE_CODE.md`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use quantumwala::agent::events::{self, Event, RenderOptions};
use quantumwala::agent::{
    self, ClaudeAgent, ErrorCause, Job, Outcome, Phase, RunLimits, Start, TaskJob,
};
use quantumwala::exec::{Cancel, LocalExecutor};
use quantumwala::project::Project;
use serde_json::Value;

use crate::support::claude_cli::{ClaudeCli, claude_cli};
use crate::support::messages_api::{self, Gate, MessagesApi, Model, Step};
use crate::support::*;

const ACCEPT: [&str; 2] = ["--permission-mode", "acceptEdits"];

const ACCEPT_EDITS: [&str; 2] = ["--claude-arg=--permission-mode", "--claude-arg=acceptEdits"];

/// A project with permissive admission (the suite loads the machine) and a HOME for the
/// CLI inside it.
fn project() -> TestProject {
    let p = TestProject::new();
    p.write(
        ".claude/settings.local.json",
        r#"{"resource_limits": {"max_load": 1000, "max_memory": 1.0, "high_impact_load": 1000}}"#,
    );
    std::fs::create_dir_all(p.path().join(".home")).unwrap();
    p
}

fn home(p: &TestProject) -> PathBuf {
    p.path().join(".home")
}

fn job(p: &TestProject, phase: Phase, run: &str) -> Job {
    let root = p.path().to_path_buf();
    Job {
        phase,
        spec: "demo".into(),
        description: "A greeting".into(),
        project_root: root.clone(),
        workdir: root.clone(),
        spec_dir: root.join(".claude/specs/demo"),
        task: None,
        run_dir: root.join(".claude/runs").join(run),
        env: Vec::new(),
    }
}

/// Run one job with the real CLI through `agent::run_job` (real `qw exec` supervisor).
fn run_job(
    cli: &ClaudeCli,
    api: &MessagesApi,
    p: &TestProject,
    j: Job,
    extra: &[&str],
    marker: &str,
) -> (agent::AgentRun, Job, quantumwala::exec::ExecReport) {
    run_job_as(cli, api, p, j, extra, marker, Start::Fresh, &Cancel::new())
}

#[allow(clippy::too_many_arguments)]
fn run_job_as(
    cli: &ClaudeCli,
    api: &MessagesApi,
    p: &TestProject,
    mut j: Job,
    extra: &[&str],
    marker: &str,
    start: Start<'_>,
    cancel: &Cancel,
) -> (agent::AgentRun, Job, quantumwala::exec::ExecReport) {
    let claude = ClaudeAgent {
        program: cli.program.clone().into_os_string(),
        extra_args: extra.iter().map(|s| (*s).to_owned()).collect(),
    };
    j.env = api
        .claude_env(&home(p))
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    j.env.push(("QW_TEST_MARKER".into(), marker.into()));
    let (run, report) = agent::run_job_as(
        &claude,
        &j,
        start,
        &Project::at(p.path()),
        &LocalExecutor::new(qw_bin()).unwrap(),
        RunLimits {
            timeout: Some(Duration::from_secs(120)),
            grace: Duration::from_secs(2),
            stall_timeout: None,
        },
        cancel,
    )
    .unwrap();
    assert!(cookie_pids(&report.run_id).is_empty(), "a process survived");
    (run, j, report)
}

fn events_of(j: &Job) -> Vec<u8> {
    std::fs::read(j.run_dir.join("events.jsonl")).unwrap()
}

#[test]
fn claude_real_document_answered_after_a_refused_write_in_accept_edits() {
    let Some(cli) = claude_cli("claude_real_document_answered_after_a_refused_write") else {
        return;
    };
    let p = project();
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    // The agent tries to write the document under .claude/ (refused in headless mode as
    // a sensitive file), then answers with it as qw asks.
    let api = MessagesApi::start(Model::new().when(
        "in the requirements phase",
        [
            Step::write(
                ".claude/specs/demo/requirements.md",
                messages_api::REQUIREMENTS,
            ),
            Step::text(format!(
                "I could not write the file, so here it is:\n\n{}",
                messages_api::REQUIREMENTS
            )),
        ],
    ));
    let (run, j, _) = run_job(
        cli,
        &api,
        &p,
        job(&p, Phase::Requirements, "req"),
        &["--permission-mode", "acceptEdits"],
        &m,
    );
    assert_eq!(run.outcome, Outcome::Succeeded, "{}", run.evidence);
    assert!(
        run.evidence.contains("its own write was refused") && run.evidence.contains("qw wrote"),
        "{}",
        run.evidence
    );
    assert_eq!(
        p.read(".claude/specs/demo/requirements.md"),
        messages_api::REQUIREMENTS,
        "the preamble is not part of the document"
    );
    assert_eq!(run.denials.len(), 1, "{:?}", run.denials);
    assert_eq!(run.denials[0].tool, "Write");
    assert!(run.num_turns >= 2 && run.cost_usd > 0.0, "{run:?}");

    // The stream is kept as events.jsonl and reads as the live activity would.
    let stream = events_of(&j);
    let activity = events::read_activity(&stream);
    assert!(activity.finished && activity.garbled == 0, "{activity:?}");
    assert_eq!(activity.session_id, run.session_id);
    assert_eq!(activity.permission_mode.as_deref(), Some("acceptEdits"));
    assert_eq!(activity.turns, 2);
    let last = activity.last_tool.unwrap();
    assert_eq!(last.name, "Write");
    assert!(
        last.target
            .unwrap()
            .ends_with(".claude/specs/demo/requirements.md")
    );
    let mut opts = RenderOptions::default();
    let mut reader = events::EventReader::new();
    let lines: Vec<String> = reader
        .feed(&stream, None)
        .iter()
        .flat_map(|r| events::render(r, &mut opts))
        .collect();
    let text = lines.join("\n");
    assert!(
        text.contains("→ Write .claude/specs/demo/requirements.md"),
        "{text}"
    );
    assert!(
        text.contains("← denied: Claude requested permissions"),
        "{text}"
    );
    assert!(text.contains("result: success"), "{text}");

    // The CLI called nothing but the Messages API, and the second call carried the
    // refusal back to the model.
    let requests = api.requests();
    assert!(
        requests.iter().all(|r| r.is_message()),
        "{:?}",
        requests.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert_eq!(requests.len(), 2);
    let convo = requests[1].conversation().join("\n");
    assert!(convo.contains("sensitive file"), "{convo}");
    assert!(requests[0].prompt().contains("in the requirements phase"));
}

#[test]
fn claude_real_api_errors_are_usage_limited_and_agent_error() {
    let Some(cli) = claude_cli("claude_real_api_errors_are_usage_limited_and_agent_error") else {
        return;
    };
    let p = project();
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let api = MessagesApi::start(
        Model::new()
            .when("Implement task 1 only", [Step::rate_limited()])
            .when("Implement task 2 only", [Step::overloaded()]),
    );
    let task = |id: &str| TaskJob {
        id: id.into(),
        title: format!("task {id}"),
        details: vec![],
        verify: None,
        requirements: vec![],
    };
    let mut j = job(&p, Phase::Implementation, "limited");
    j.task = Some(task("1"));
    let (run, j, _) = run_job(cli, &api, &p, j, &[], &m);
    assert_eq!(run.outcome, Outcome::UsageLimited, "{}", run.evidence);
    assert!(run.outcome.pauses_workflow());
    assert!(run.evidence.contains("429"), "{}", run.evidence);
    assert!(events::read_activity(&events_of(&j)).finished);

    let mut j = job(&p, Phase::Implementation, "overloaded");
    j.task = Some(task("2"));
    let (run, j, _) = run_job(cli, &api, &p, j, &[], &m);
    assert_eq!(
        run.outcome,
        Outcome::AgentError {
            cause: ErrorCause::Reported,
            exit_code: 1
        },
        "{}",
        run.evidence
    );
    assert!(run.outcome.is_retryable());
    assert!(run.evidence.contains("529"), "{}", run.evidence);
    // Claude Code retried on its own before giving up; the stream says so.
    let retries = events::EventReader::new()
        .feed(&events_of(&j), None)
        .iter()
        .flat_map(|r| r.events.clone())
        .filter(|e| {
            matches!(
                e,
                Event::ApiRetry {
                    status: Some(529),
                    ..
                }
            )
        })
        .count();
    assert!(retries >= 1, "no api_retry event");
    let overloaded_calls = api
        .prompts()
        .iter()
        .filter(|p| p.contains("Implement task 2 only"))
        .count();
    assert_eq!(overloaded_calls, retries + 1);
}

/// `qw workflow-auto demo …` with the real CLI, as the current user or (when `as_user`
/// is set) through `setpriv` as that uid.
struct Flow {
    p: TestProject,
    api: MessagesApi,
    marker: String,
    _guard: MarkerGuard,
}

impl Flow {
    fn new(model: Model) -> Flow {
        let m = marker();
        Flow {
            p: project(),
            api: MessagesApi::start(model),
            marker: m.clone(),
            _guard: MarkerGuard(m),
        }
    }

    fn command(&self, cli: &ClaudeCli, args: &[&str], as_user: Option<&OtherUser>) -> Command {
        let mut all = vec![
            "workflow-auto",
            "demo",
            "A greeting file",
            "--agent",
            "claude",
            "--parallel",
            "1",
            "--retry-delay",
            "0.1",
        ];
        all.extend_from_slice(args);
        let mut c = match as_user {
            None => self.p.qw(&all),
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={}", user.uid))
                    .arg(format!("--regid={}", user.uid))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(&user.qw)
                    .arg("-C")
                    .arg(self.p.path())
                    .args(&all)
                    .env("QW_RUNTIME_DIR", self.p.path().join(".qw-runtime"))
                    .env_remove("QW_RUN_ID");
                c
            }
        };
        cli.configure(&mut c, &self.api, &home(&self.p));
        c.env("QW_TEST_MARKER", &self.marker);
        c
    }

    /// Task 1 writes hello.txt, then its answer is held (a slow model) until `gate`
    /// opens; resumed, it only has to say it is done.
    fn hello_then_held(gate: &Gate) -> Flow {
        Flow::new(
            Model::new()
                .when(
                    agent::prompt::RESUME_HEADER,
                    [Step::text(
                        "hello.txt is already written; the task is done.",
                    )],
                )
                .when(
                    "Implement task 1 only",
                    [
                        Step::write("hello.txt", "hello\n"),
                        Step::held(gate, Step::text("Wrote hello.txt.")),
                    ],
                )
                .workflow_rules(),
        )
    }

    /// The workflow of [`hello_then_held`](Self::hello_then_held), started in the
    /// background with edits accepted.
    fn start_hello(&self, cli: &ClaudeCli) -> std::process::Child {
        let mut args = ACCEPT_EDITS.to_vec();
        args.extend(["--task-timeout", "120"]);
        self.command(cli, &args, None).spawn().unwrap()
    }

    /// hello.txt is written and the model holds task 1's next answer (the stream names
    /// the tool call before Claude Code has run it, so the second request is the proof).
    fn hello_written_and_held(&self) -> bool {
        self.p.path().join("hello.txt").exists()
            && self
                .api
                .prompts()
                .iter()
                .filter(|p| p.contains("Implement task 1 only"))
                .count()
                >= 2
    }

    /// `qw workflow-continue demo` with the real CLI.
    fn continue_workflow(&self, cli: &ClaudeCli) -> Output {
        let mut c = self.p.qw(&["workflow-continue", "demo"]);
        cli.configure(&mut c, &self.api, &home(&self.p));
        c.env("QW_TEST_MARKER", &self.marker);
        c.output().unwrap()
    }

    /// The first request after the first `before` ones that resumes a session.
    fn resumed_request(&self, before: usize) -> messages_api::Recorded {
        self.api
            .messages()
            .into_iter()
            .skip(before)
            .find(|m| m.prompt().contains(agent::prompt::RESUME_HEADER))
            .expect("no resumed request")
    }

    fn run(&self, cli: &ClaudeCli, args: &[&str], as_user: Option<&OtherUser>) -> Output {
        let out = self.command(cli, args, as_user).output().unwrap();
        assert!(
            pids_with_env("QW_TEST_MARKER", &self.marker).is_empty(),
            "a process of the workflow survived it"
        );
        out
    }

    fn state(&self) -> Value {
        serde_json::from_str(&self.p.read(".claude/unified_state.json")).unwrap()
    }

    fn run_dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.p.path().join(".claude/runs"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        v.sort();
        v
    }
}

fn diag(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    )
}

/// What a completed workflow with the workflow model leaves behind.
fn assert_completed(f: &Flow, out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", diag(out));
    let spec = f.p.path().join(".claude/specs/demo");
    let read = |name: &str| std::fs::read_to_string(spec.join(name)).unwrap();
    assert_eq!(read("requirements.md"), messages_api::REQUIREMENTS);
    assert_eq!(read("design.md"), messages_api::DESIGN);
    assert!(read("tasks.md").contains("- [x] 1. Write the greeting file"));
    assert_eq!(
        f.p.read("hello.txt"),
        "hello\n",
        "written by the agent's Write"
    );
    let state = f.state();
    let s = &state["specifications"]["demo"];
    assert_eq!(s["current_phase"], "complete", "{s:#}");
    let t = &s["tasks"]["1"];
    assert_eq!(t["status"], "completed", "{t:#}");
    assert!(
        t["session_id"].as_str().is_some_and(agent::is_session_id),
        "{t:#}"
    );
    assert!(t["cost_usd"].as_f64().unwrap() > 0.0);
    // Each run kept its event stream, each stream ended with its result.
    let dirs = f.run_dirs();
    assert_eq!(dirs.len(), 5, "{dirs:?}");
    for d in &dirs {
        let a = events::read_activity(&std::fs::read(d.join("events.jsonl")).unwrap());
        assert!(
            a.finished && a.is_error == Some(false),
            "{}: {a:?}",
            d.display()
        );
    }
    // The model saw each phase once, validation last.
    let prompts = f.api.prompts();
    for phase in [
        "requirements",
        "design",
        "tasks",
        "implementation",
        "validation",
    ] {
        assert!(
            prompts
                .iter()
                .any(|p| p.contains(&format!("in the {phase} phase"))),
            "{phase}"
        );
    }
}

#[test]
fn claude_real_workflow_accept_edits() {
    let Some(cli) = claude_cli("claude_real_workflow_accept_edits") else {
        return;
    };
    // Root in CI: bypassPermissions is refused there, acceptEdits is the way.
    let f = Flow::new(Model::workflow());
    let mut args = ACCEPT_EDITS.to_vec();
    args.extend(["--task-timeout", "120"]);
    let out = f.run(cli, &args, None);
    assert_completed(&f, &out);
}

/// Another user to run the workflow as, and a copy of `qw` that user can start.
struct OtherUser {
    uid: u32,
    qw: PathBuf,
    _dir: tempfile::TempDir,
}

/// Another user to run as, when this process may switch to it (root with `setpriv`), and
/// the CLI and `qw` are usable by it; `None` when already not root; else why not.
///
/// `qw` is run from a copy in a world-readable temporary directory: the build directory
/// may sit inside a private one (a clone under `mktemp -d`, mode 0700), where the user
/// cannot start the `qw exec` children the workflow spawns from its own path. The probe
/// starts each program through `env`, as that user's own processes will (`setpriv`'s
/// own exec was seen to succeed where the user's could not).
fn other_user(cli: &ClaudeCli) -> Result<Option<OtherUser>, String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None); // Already not root: run as ourselves.
    }
    let uid = 65534; // nobody
    let dir = tempfile::Builder::new()
        .prefix("qw-bin-")
        .tempdir()
        .map_err(|e| format!("cannot make a directory for a copy of qw: {e}"))?;
    let qw = dir.path().join("qw");
    std::fs::copy(qw_bin(), &qw).map_err(|e| format!("cannot copy qw: {e}"))?;
    for path in [dir.path(), qw.as_path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    }
    let probe = |program: &Path| {
        Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups")
            .arg("--")
            .arg("env")
            .arg(program)
            .arg("--version")
            .env("HOME", "/tmp")
            .output()
    };
    for program in [qw.clone(), cli.program.clone()] {
        match probe(&program) {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Err(format!(
                    "uid {uid} cannot run `{}`: {}",
                    program.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
            Err(e) => return Err(format!("cannot run setpriv: {e}")),
        }
    }
    Ok(Some(OtherUser { uid, qw, _dir: dir }))
}

fn chown_tree(dir: &Path, uid: u32) {
    std::os::unix::fs::chown(dir, Some(uid), Some(uid)).unwrap();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        if e.file_type().unwrap().is_dir() {
            chown_tree(&path, uid);
        } else {
            std::os::unix::fs::lchown(&path, Some(uid), Some(uid)).unwrap();
        }
    }
}

#[test]
fn claude_real_workflow_bypass_permissions_as_non_root() {
    let Some(cli) = claude_cli("claude_real_workflow_bypass_permissions_as_non_root") else {
        return;
    };
    let as_user = match other_user(cli) {
        Ok(u) => u,
        Err(why) => {
            eprintln!("SKIPPED claude_real_workflow_bypass_permissions_as_non_root: {why}");
            return;
        }
    };
    // With every permission, the agent may also write the documents itself: the
    // requirements are written with Write (accepted as they are), the rest answered.
    let f = Flow::new(
        Model::new()
            .when(
                "in the requirements phase",
                [
                    Step::write(
                        ".claude/specs/demo/requirements.md",
                        messages_api::REQUIREMENTS,
                    ),
                    Step::text("Wrote the requirements."),
                ],
            )
            .workflow_rules(),
    );
    if let Some(user) = &as_user {
        chown_tree(f.p.path(), user.uid);
    }
    let out = f.run(
        cli,
        &[
            "--claude-arg=--permission-mode",
            "--claude-arg=bypassPermissions",
            "--task-timeout",
            "120",
        ],
        as_user.as_ref(),
    );
    assert_completed(&f, &out);
    let first = std::fs::read_to_string(f.run_dirs()[0].join("events.jsonl")).unwrap();
    assert!(first.contains("\"permissionMode\":\"bypassPermissions\""));
}

#[test]
fn claude_real_bypass_permissions_as_root_is_refused_with_its_reason() {
    let Some(cli) = claude_cli("claude_real_bypass_permissions_as_root_is_refused") else {
        return;
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED claude_real_bypass_permissions_as_root_is_refused: not root");
        return;
    }
    let p = project();
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let api = MessagesApi::start(Model::workflow());
    let (run, _, _) = run_job(
        cli,
        &api,
        &p,
        job(&p, Phase::Requirements, "bypass-root"),
        &["--permission-mode", "bypassPermissions"],
        &m,
    );
    assert_eq!(
        run.outcome,
        Outcome::AgentError {
            cause: ErrorCause::Arguments,
            exit_code: 1
        },
        "{}",
        run.evidence
    );
    assert!(!run.outcome.is_retryable());
    for part in [
        "cannot be used with root/sudo privileges",
        "run qw as a non-root user",
        "--claude-arg=--permission-mode --claude-arg=acceptEdits",
    ] {
        assert!(run.evidence.contains(part), "{part}: {}", run.evidence);
    }
    assert!(api.requests().is_empty(), "refused before any API call");
}

#[test]
fn claude_real_workflow_without_permission_flag_names_tool_path_and_fix() {
    let Some(cli) = claude_cli("claude_real_workflow_without_permission_flag") else {
        return;
    };
    let f = Flow::new(Model::workflow());
    // Requirements and design in place (fewer CLI runs); tasks.md is answered as text.
    f.p.write(
        ".claude/specs/demo/requirements.md",
        messages_api::REQUIREMENTS,
    );
    f.p.write(".claude/specs/demo/design.md", messages_api::DESIGN);
    let out = f.run(cli, &["--task-timeout", "120"], None);
    assert_eq!(out.status.code(), Some(1), "{}", diag(&out));
    // The document never needed a permission: it was answered as text.
    let spec = f.p.path().join(".claude/specs/demo");
    assert_eq!(
        std::fs::read_to_string(spec.join("tasks.md")).unwrap(),
        messages_api::TASKS
    );
    assert!(!f.p.path().join("hello.txt").exists());
    let state = f.state();
    let t = &state["specifications"]["demo"]["tasks"]["1"];
    assert_eq!(t["status"], "failed", "{t:#}");
    assert_eq!(t["outcome"], "permission_denied", "{t:#}");
    assert_eq!(
        t["attempts"], 1,
        "not retried: the same flags would be refused again"
    );
    let error = t["error"].as_str().unwrap();
    for part in [
        "Claude Code refused Write `hello.txt`",
        "--claude-arg=--permission-mode --claude-arg=acceptEdits",
        "`permissions.allow` in `.claude/settings.local.json`",
        "refuses it as root",
    ] {
        assert!(error.contains(part), "{part}: {error}");
    }
    // The user sees it without opening the state.
    let shown = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        shown.contains("Claude Code refused Write `hello.txt`"),
        "{shown}"
    );
    let report = f.p.read(".claude/specs/demo/report.md");
    assert!(report.contains("permission_denied"), "{report}");
}

#[test]
fn claude_real_hanging_model_is_killed_at_the_task_timeout() {
    let Some(cli) = claude_cli("claude_real_hanging_model_is_killed_at_the_task_timeout") else {
        return;
    };
    let f = Flow::new(Model::new().when("Implement task 1 only", [Step::Hang]));
    // Documents in place: only the task runs.
    f.p.write(
        ".claude/specs/demo/requirements.md",
        messages_api::REQUIREMENTS,
    );
    f.p.write(".claude/specs/demo/design.md", messages_api::DESIGN);
    f.p.write(".claude/specs/demo/tasks.md", messages_api::TASKS);
    // The limit must leave the CLI time to start and reach the model, which takes
    // seconds on a loaded machine: measure one answer now, under the same load.
    let started = std::time::Instant::now();
    let mut ping = Command::new(&cli.program);
    ping.args(["-p", "ping", "--output-format", "stream-json", "--verbose"])
        .current_dir(f.p.path());
    cli.configure(&mut ping, &f.api, &home(&f.p));
    assert!(ping.output().unwrap().status.success());
    let limit = format!("{:.1}", 2.0 * started.elapsed().as_secs_f64() + 3.0);
    let mut args = ACCEPT_EDITS.to_vec();
    args.extend(["--task-timeout", &limit, "--grace", "2", "--attempts", "1"]);
    let out = f.run(cli, &args, None);
    assert_eq!(out.status.code(), Some(1), "{}", diag(&out));
    let state = f.state();
    let t = &state["specifications"]["demo"]["tasks"]["1"];
    assert_eq!(t["outcome"], "timed_out", "{t:#}");
    // It was really waiting on the model, and it had started its stream.
    assert!(
        f.api
            .prompts()
            .iter()
            .any(|p| p.contains("Implement task 1 only"))
    );
    let dirs = f.run_dirs();
    let a = events::read_activity(&std::fs::read(dirs[0].join("events.jsonl")).unwrap());
    assert!(!a.finished && a.session_id.is_some(), "{a:?}");
}

#[test]
fn claude_real_interrupted_task_resumes_its_session() {
    let Some(cli) = claude_cli("claude_real_interrupted_task_resumes_its_session") else {
        return;
    };
    let p = project();
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    // The first run writes hello.txt, then the model hangs until the run is stopped;
    // the resumed run only has to say it is done.
    let api = MessagesApi::start(
        Model::new()
            .when(
                agent::prompt::RESUME_HEADER,
                [Step::text(
                    "hello.txt is already written; the task is done.",
                )],
            )
            .when(
                "Implement task 1 only",
                [Step::write("hello.txt", "hello\n"), Step::Hang],
            ),
    );
    let mut j = job(&p, Phase::Implementation, "first");
    j.task = Some(TaskJob {
        id: "1".into(),
        title: "Write the greeting file".into(),
        details: vec![],
        verify: Some("test -s hello.txt".into()),
        requirements: vec![],
    });
    let cancel = Cancel::new();
    let (first, _, _) = std::thread::scope(|scope| {
        // Stop the run (as Ctrl-C would) once the model is hanging on its second turn.
        scope.spawn(|| {
            assert!(
                wait_until(Duration::from_secs(100), || api.messages().len() >= 2),
                "the second turn never came"
            );
            cancel.request(15);
        });
        run_job_as(cli, &api, &p, j.clone(), &ACCEPT, &m, Start::Fresh, &cancel)
    });
    assert_eq!(
        first.outcome.as_str(),
        "killed_by_user",
        "{}",
        first.evidence
    );
    assert_eq!(p.read("hello.txt"), "hello\n");
    let session = first
        .session_id
        .clone()
        .expect("a stopped run records its session");
    assert!(first.num_turns >= 1, "{first:?}");

    let before = api.messages().len();
    let mut again = j.clone();
    again.run_dir = p.path().join(".claude/runs/second");
    let (second, again, _) = run_job_as(
        cli,
        &api,
        &p,
        again,
        &ACCEPT,
        &m,
        Start::Resume {
            session_id: &session,
            why: &first.evidence,
        },
        &Cancel::new(),
    );
    assert_eq!(second.outcome, Outcome::Succeeded, "{}", second.evidence);
    assert_eq!(second.session_id.as_deref(), Some(session.as_str()));
    // The server saw the earlier conversation: the first prompt, the Write and its
    // result, then the short resume prompt saying why.
    let resumed = &api.messages()[before];
    let convo = resumed.conversation().join("\n");
    assert!(convo.contains("Implement task 1 only"), "{convo}");
    assert!(convo.contains("tool_use Write"), "{convo}");
    assert!(convo.contains("File created successfully"), "{convo}");
    let prompt = resumed.prompt();
    assert!(prompt.contains(agent::prompt::RESUME_HEADER), "{prompt}");
    assert!(prompt.contains("stopped on request"), "{prompt}");
    assert!(
        std::fs::read_to_string(again.prompt_file())
            .unwrap()
            .starts_with(agent::prompt::RESUME_HEADER)
    );
    // Its cost is its own, not the session's.
    let stream = std::fs::read_to_string(again.run_dir.join("events.jsonl")).unwrap();
    let result: Value = serde_json::from_str(stream.lines().last().unwrap()).unwrap();
    let session_total = result["total_cost_usd"].as_f64().unwrap();
    assert!(
        second.cost_usd > 0.0 && second.cost_usd < session_total,
        "{second:?} vs {session_total}"
    );

    // A session that does not exist: said so, not retried (the caller runs fresh).
    let mut gone = j.clone();
    gone.run_dir = p.path().join(".claude/runs/gone");
    let (run, _, _) = run_job_as(
        cli,
        &api,
        &p,
        gone,
        &ACCEPT,
        &m,
        Start::Resume {
            session_id: "00000000-0000-4000-8000-000000000000",
            why: "test",
        },
        &Cancel::new(),
    );
    assert_eq!(
        run.outcome,
        Outcome::AgentError {
            cause: ErrorCause::NoSession,
            exit_code: 1
        },
        "{}",
        run.evidence
    );
}

#[test]
fn claude_real_live_activity_shows_while_an_answer_is_pending() {
    let Some(cli) = claude_cli("claude_real_live_activity_shows_while_an_answer_is_pending") else {
        return;
    };
    let p = project();
    let m = marker();
    let _guard = MarkerGuard(m.clone());
    let gate = Gate::new();
    let api = MessagesApi::start(Model::new().when(
        "Implement task 1 only",
        [
            Step::write("hello.txt", "hello\n"),
            Step::held(&gate, Step::text("Wrote hello.txt.")),
        ],
    ));
    let mut j = job(&p, Phase::Implementation, "live");
    j.task = Some(TaskJob {
        id: "1".into(),
        title: "Write the greeting file".into(),
        details: vec![],
        verify: None,
        requirements: vec![],
    });
    let events_file = j.run_dir.join("events.jsonl");
    let run = std::thread::scope(|scope| {
        let running = scope.spawn(|| run_job(cli, &api, &p, j.clone(), &ACCEPT, &m).0);
        // While the model holds its second answer, the stream already tells what the
        // agent did: its session, one tool call and its target, and no result yet.
        let mut follow = agent::runs::Follow::new(&events_file);
        let seen = wait_until(Duration::from_secs(100), || {
            follow.poll().unwrap();
            api.messages().len() >= 2 && follow.activity().last_tool.is_some()
        });
        let live = follow.activity().clone();
        gate.open();
        let run = running.join().unwrap();
        assert!(seen, "no live activity: {live:?}");
        assert!(!live.finished && live.cost_usd.is_none(), "{live:?}");
        assert!(
            live.session_id.is_some() && live.last_event_at.is_some(),
            "{live:?}"
        );
        let tool = live.last_tool.clone().unwrap();
        assert_eq!(tool.name, "Write");
        assert!(tool.target.unwrap().ends_with("/hello.txt"));
        assert!(live.turns >= 1 && live.tokens.input > 0, "{live:?}");
        // The rest arrives on the next poll.
        follow.poll().unwrap();
        assert!(follow.activity().finished && follow.activity().cost_usd.is_some());
        run
    });
    assert_eq!(run.outcome, Outcome::Succeeded, "{}", run.evidence);
}

/// `qw status --json`'s running task, once it names a last tool; polled while the
/// workflow runs (None after `timeout`).
fn live_task(p: &TestProject, timeout: Duration) -> Option<Value> {
    let mut found = None;
    wait_until(timeout, || {
        let out = p.run(&["status", "--json"]);
        let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) else {
            return false;
        };
        let task = v["specs"][0]["running_tasks"][0].clone();
        if task["last_tool"].is_object() {
            found = Some(task);
        }
        found.is_some()
    });
    found
}

#[test]
fn claude_real_workflow_live_status_then_interrupt_and_continue_resumes_the_session() {
    let Some(cli) = claude_cli(
        "claude_real_workflow_live_status_then_interrupt_and_continue_resumes_the_session",
    ) else {
        return;
    };
    let gate = Gate::new();
    // Task 1 writes hello.txt, then its answer is held (a slow model) until the test
    // interrupts the workflow; resumed, it only has to say it is done.
    let f = Flow::hello_then_held(&gate);
    let mut child = f.start_hello(cli);
    let pid = i32::try_from(child.id()).unwrap();
    let live = live_task(&f.p, Duration::from_secs(150));
    // Stop it once the Write was done and the model holds its next answer (the stream
    // names the tool call before Claude Code has run it).
    let held = wait_until(Duration::from_secs(60), || f.hello_written_and_held());
    // Ctrl-C, as a user would (the workflow forwards it to the agent's tree).
    unsafe_kill(pid, 2);
    let ended = wait_until(Duration::from_secs(60), || {
        child.try_wait().unwrap().is_some()
    });
    if !ended {
        unsafe_kill(pid, 9);
    }
    let status = child.wait().unwrap();
    gate.open();
    assert!(ended, "the workflow did not end on SIGINT");
    assert!(
        held,
        "the task never wrote hello.txt and waited on its next answer"
    );
    assert!(
        pids_with_env("QW_TEST_MARKER", &f.marker).is_empty(),
        "a process of the workflow survived it"
    );
    let live = live.expect("qw status --json never showed the running task's tool call");
    assert_eq!(live["id"], "1", "{live:#}");
    assert_eq!(live["last_tool"]["name"], "Write", "{live:#}");
    assert!(
        live["last_tool"]["target"]
            .as_str()
            .is_some_and(|t| t.ends_with("hello.txt")),
        "{live:#}"
    );
    assert!(live["turns"].as_u64().unwrap() >= 1, "{live:#}");
    assert!(live["last_event_at"].is_string(), "{live:#}");
    assert!(live["tokens"]["input"].as_u64().unwrap() > 0, "{live:#}");
    assert!(live["cost_usd"].is_null(), "no result yet: {live:#}");
    assert_eq!(status.code(), Some(130), "interrupted by SIGINT");

    let t = f.state()["specifications"]["demo"]["tasks"]["1"].clone();
    assert_eq!(t["outcome"], "killed_by_user", "{t:#}");
    let session = t["session_id"]
        .as_str()
        .expect("the stopped run's session")
        .to_owned();

    // workflow-continue resumes the session: the model sees the earlier conversation.
    let before = f.api.messages().len();
    let out = f.continue_workflow(cli);
    assert_eq!(out.status.code(), Some(0), "{}", diag(&out));
    assert!(
        stderr(&out).contains(&format!("resuming session {session}")),
        "{}",
        diag(&out)
    );
    let resumed = f.resumed_request(before);
    let convo = resumed.conversation().join("\n");
    assert!(convo.contains("Implement task 1 only"), "{convo}");
    assert!(convo.contains("tool_use Write"), "{convo}");
    let state = f.state();
    let t = &state["specifications"]["demo"]["tasks"]["1"];
    assert_eq!(t["status"], "completed", "{t:#}");
    // The state keeps the session the last run reported. Claude Code 2.1.332 kept the id
    // when the stopped run was idle between turns (the agent-level test), but named a new
    // one here, where the run was stopped in the middle of a streamed answer — the
    // conversation was carried over all the same (above).
    let last_run = f
        .run_dirs()
        .into_iter()
        .rfind(|d| d.to_string_lossy().contains("-task-1-"))
        .unwrap();
    let last = events::read_activity(&std::fs::read(last_run.join("events.jsonl")).unwrap());
    assert_eq!(
        t["session_id"].as_str(),
        last.session_id.as_deref(),
        "{t:#}"
    );
    // Costs add up: the task's is the sum of its runs' own shares, the spec's is every
    // run's, and the ledger has the same.
    let run_costs: Vec<f64> = f
        .run_dirs()
        .iter()
        .filter(|d| d.to_string_lossy().contains("-task-1-"))
        .map(|d| {
            let bytes = std::fs::read(d.join("events.jsonl")).unwrap_or_default();
            events::read_activity(&bytes).cost_usd.unwrap_or(0.0)
        })
        .collect();
    assert_eq!(run_costs.len(), 2, "{run_costs:?} {t:#} {}", diag(&out));
    let task_cost = t["cost_usd"].as_f64().unwrap();
    assert!(task_cost > 0.0, "{t:#}");
    // A resumed run's result reports the whole session; the task counts its own share.
    assert!(
        task_cost <= run_costs.iter().sum::<f64>() + 1e-9,
        "{task_cost} {run_costs:?}"
    );
    let spec_cost = state["specifications"]["demo"]["cost_usd"]
        .as_f64()
        .unwrap();
    let ledger: f64 = state["cost_ledger"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_f64)
        .sum();
    assert!((ledger - spec_cost).abs() < 1e-9, "{ledger} vs {spec_cost}");
    assert!(spec_cost >= task_cost, "{spec_cost} vs {task_cost}");
    // `qw logs` shows the resumed run.
    let logs = f.p.run(&["logs", "demo", "1"]);
    assert!(
        stdout(&logs).contains("hello.txt is already written"),
        "{}",
        stdout(&logs)
    );
}

#[test]
fn claude_real_task_of_a_killed_qw_resumes_from_its_cut_off_stream() {
    let Some(cli) = claude_cli("claude_real_task_of_a_killed_qw_resumes_from_its_cut_off_stream")
    else {
        return;
    };
    let gate = Gate::new();
    // As above, but qw is SIGKILLed while the model holds its answer: no outcome is
    // recorded, only the run's events.jsonl knows the session.
    let f = Flow::hello_then_held(&gate);
    let mut child = f.start_hello(cli);
    let pid = i32::try_from(child.id()).unwrap();
    let held = wait_until(Duration::from_secs(150), || f.hello_written_and_held());
    unsafe_kill(pid, 9);
    child.wait().unwrap();
    assert!(
        held,
        "the task never wrote hello.txt and waited on its next answer"
    );
    let t = f.state()["specifications"]["demo"]["tasks"]["1"].clone();
    assert_eq!(t["status"], "in_progress", "{t:#}");
    assert!(t["outcome"].is_null(), "{t:#}");
    let cut = f
        .run_dirs()
        .into_iter()
        .rfind(|d| d.to_string_lossy().contains("-task-1-"))
        .unwrap();
    let session = events::read_activity(&std::fs::read(cut.join("events.jsonl")).unwrap())
        .session_id
        .expect("the cut-off stream names its session");
    assert!(agent::is_session_id(&session), "{session}");

    // workflow-continue ends the orphaned CLI (the sweep) and resumes that session: the
    // model sees the earlier conversation.
    let before = f.api.messages().len();
    let out = f.continue_workflow(cli);
    gate.open();
    assert_eq!(out.status.code(), Some(0), "{}", diag(&out));
    assert!(
        stderr(&out).contains(&format!("resuming session {session}")),
        "{}",
        diag(&out)
    );
    let resumed = f.resumed_request(before);
    assert!(
        resumed.prompt().contains("qw was killed while you worked"),
        "{}",
        resumed.prompt()
    );
    let convo = resumed.conversation().join("\n");
    assert!(convo.contains("Implement task 1 only"), "{convo}");
    assert!(convo.contains("tool_use Write"), "{convo}");
    assert_eq!(
        f.state()["specifications"]["demo"]["tasks"]["1"]["status"],
        "completed"
    );
    assert!(
        pids_with_env("QW_TEST_MARKER", &f.marker).is_empty(),
        "a process of the killed workflow survived"
    );
}
