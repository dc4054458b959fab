//! The `offline` agent: built in, needs nothing installed, and never claims work it did
//! not do.
//!
//! [`OfflineAgent`] only builds the command `qw offline-agent …`; the work happens in
//! that child process ([`perform`]), so an offline run goes through exactly the same
//! supervision, capture and classification as `claude`.
//!
//! What it can do: write requirements, design and tasks documents from templates filled
//! with the description (an existing non-empty document is kept, never overwritten);
//! for an implementation task, run the task's `_Verify:_` command and report success only
//! if it passes; for validation, check that every task in `tasks.md` is ticked. What it
//! cannot do — write code — it reports as an error, with the agents that can.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Agent, AgentCommand, AgentError, Job, Phase, job_env};
use crate::exec::Program;

/// Runs `qw offline-agent` as the agent process.
#[derive(Debug, Clone)]
pub struct OfflineAgent {
    /// The `qw` binary to run (usually the current executable).
    pub qw: PathBuf,
}

impl OfflineAgent {
    /// Use the given `qw` binary.
    pub fn new(qw: impl Into<PathBuf>) -> OfflineAgent {
        OfflineAgent { qw: qw.into() }
    }
}

fn flag(name: &str, value: impl Into<OsString>) -> OsString {
    let mut s = OsString::from(format!("--{name}="));
    s.push(value.into());
    s
}

impl Agent for OfflineAgent {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn writes_code(&self) -> bool {
        false
    }

    /// As [`outcome::classify`](super::outcome::classify), but a task whose `_Verify:_`
    /// ran and failed is `verify_failed` (with its exit code), not an agent error.
    fn classify(&self, _job: &Job, input: &super::ClassifyInput<'_>) -> super::outcome::AgentRun {
        let mut run = super::outcome::classify(input);
        if matches!(run.outcome, super::outcome::Outcome::AgentError { .. })
            && let Some(failed) = verify_failed(input.stdout.as_captured().tail())
        {
            run.outcome = super::outcome::Outcome::VerifyFailed { exit_code: failed };
        }
        run
    }

    fn command(&self, job: &Job, _prompt: &str) -> Result<AgentCommand, AgentError> {
        let mut argv: Vec<OsString> = vec![
            self.qw.clone().into_os_string(),
            "--quiet".into(),
            flag("project", job.project_root.clone()),
            "offline-agent".into(),
            flag("phase", job.phase.as_str()),
            flag("spec", job.spec.clone()),
            flag("spec-dir", job.spec_dir.clone()),
            flag("description", job.description.clone()),
            flag("prompt-file", job.prompt_file()),
        ];
        if job.phase == Phase::Implementation {
            let task = job.task.as_ref().ok_or_else(|| AgentError::MissingTask {
                phase: job.phase,
                spec: job.spec.clone(),
            })?;
            argv.push(flag("task-id", task.id.clone()));
            if let Some(v) = &task.verify {
                argv.push(flag("verify", v.clone()));
            }
        }
        let program = Program::argv(argv).ok_or(AgentError::EmptyTemplate)?;
        Ok(AgentCommand {
            program,
            env: job_env(job),
            cwd: job.workdir.clone(),
            stdout_name: "stdout.json",
        })
    }
}

/// The verify exit code an offline result object reports under [`VERIFY_FAILED_KEY`]
/// (`Some(None)`: it ran and was killed), from the last JSON line of `stdout`.
fn verify_failed(stdout: &[u8]) -> Option<Option<i32>> {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let failed = v.get(VERIFY_FAILED_KEY)?.as_object()?;
    Some(
        failed
            .get("exit_code")
            .and_then(serde_json::Value::as_i64)
            .and_then(|c| i32::try_from(c).ok()),
    )
}

/// What `qw offline-agent` was asked to do.
#[derive(Debug, Clone)]
pub struct OfflineRequest {
    /// The phase.
    pub phase: Phase,
    /// The spec name.
    pub spec: String,
    /// `.claude/specs/<spec>/`.
    pub spec_dir: PathBuf,
    /// The project root (verify paths in generated tasks are relative to it).
    pub project_root: PathBuf,
    /// The spec's description.
    pub description: String,
    /// The task, for implementation.
    pub task_id: Option<String>,
    /// The task's `_Verify:_` command, for implementation.
    pub verify: Option<String>,
    /// The prompt file the caller wrote; it must exist when given.
    pub prompt_file: Option<PathBuf>,
}

/// What the offline agent did: an error flag and a truthful message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineResult {
    /// True when it could not do what was asked.
    pub is_error: bool,
    /// What it did, or why it could not.
    pub message: String,
    /// The task's `_Verify:_` command ran and failed: its exit code (None when it could
    /// not run or was killed). qw records the task `verify_failed`, and does not retry
    /// it: the offline agent writes no code, so another attempt runs the same check.
    pub verify_failed: Option<Option<i32>>,
}

impl OfflineResult {
    fn ok(message: impl Into<String>) -> OfflineResult {
        OfflineResult {
            is_error: false,
            message: message.into(),
            verify_failed: None,
        }
    }
    fn err(message: impl Into<String>) -> OfflineResult {
        OfflineResult {
            is_error: true,
            message: message.into(),
            verify_failed: None,
        }
    }

    /// The Claude-style result object printed on stdout.
    pub fn to_json(&self, duration_ms: u64) -> serde_json::Value {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        serde_json::json!({
            "type": "result",
            "subtype": if self.is_error { "error_during_execution" } else { "success" },
            "is_error": self.is_error,
            "result": self.message,
            "duration_ms": duration_ms,
            "num_turns": 1,
            // Shaped like Claude Code's (a UUID), so it is recorded like one.
            "session_id": format!("{:08x}-0000-4000-8000-{nanos:012x}", std::process::id()),
            "total_cost_usd": 0,
            "usage": {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0
            },
            "agent": "offline",
            VERIFY_FAILED_KEY: self.verify_failed.map(|code| serde_json::json!({"exit_code": code})),
        })
    }
}

/// Do the job, in the current process and working directory.
pub fn perform(req: &OfflineRequest) -> OfflineResult {
    if let Some(pf) = &req.prompt_file
        && !pf.is_file()
    {
        return OfflineResult::err(format!(
            "the prompt file `{}` does not exist; the caller must write it before starting the agent",
            pf.display()
        ));
    }
    match req.phase {
        Phase::Requirements | Phase::Design | Phase::Tasks => write_document(req),
        Phase::Implementation => implement(req),
        Phase::Validation => validate(req),
    }
}

fn write_document(req: &OfflineRequest) -> OfflineResult {
    let Some(name) = req.phase.document() else {
        return OfflineResult::err("this phase writes no document");
    };
    let path = req.spec_dir.join(name);
    if path.metadata().is_ok_and(|m| m.is_file() && m.len() > 0) {
        return OfflineResult::ok(format!(
            "kept the existing `{}`; the offline agent never overwrites a document",
            path.display()
        ));
    }
    let text = match req.phase {
        Phase::Requirements => requirements_template(&req.spec, &req.description),
        Phase::Design => design_template(&req.spec, &req.description),
        _ => tasks_template(&req.spec, &req.description, &rel_spec_dir(req)),
    };
    let written = crate::fs::create_dir_all(&req.spec_dir)
        .and_then(|()| crate::fs::write_durable(&path, text.as_bytes()));
    match written {
        Ok(()) => OfflineResult::ok(format!(
            "wrote `{}` from the offline template (filled with the description only; review it)",
            path.display()
        )),
        Err(e) => OfflineResult::err(format!("could not write the document: {e}")),
    }
}

/// The spec folder as generated verify commands name it: relative to the project root.
fn rel_spec_dir(req: &OfflineRequest) -> String {
    let rel = req
        .spec_dir
        .strip_prefix(&req.project_root)
        .unwrap_or(&req.spec_dir);
    rel.to_string_lossy().into_owned()
}

fn implement(req: &OfflineRequest) -> OfflineResult {
    let id = req.task_id.as_deref().unwrap_or("?");
    let Some(verify) = req.verify.as_deref().filter(|v| !v.trim().is_empty()) else {
        return OfflineResult::err(format!(
            "the offline agent cannot implement task {id} (it writes no code and the task has no `_Verify:_` command to check); use --agent claude or --agent-cmd"
        ));
    };
    match run_verify(verify, Path::new(".")) {
        Ok(()) => OfflineResult::ok(format!(
            "task {id}: verified; no change needed (`{verify}` exited 0)"
        )),
        Err(failed) => OfflineResult {
            verify_failed: failed.ran.then_some(failed.code),
            ..OfflineResult::err(format!(
                "the offline agent cannot implement task {id}: its verify command {}; it writes no code — use --agent claude or --agent-cmd",
                failed.why
            ))
        },
    }
}

/// The key of the result object that says the task's `_Verify:_` ran and failed.
pub const VERIFY_FAILED_KEY: &str = "qw_verify_failed";

/// Why a verify command did not pass.
#[derive(Debug)]
struct VerifyFailure {
    /// It ran (false: it could not be split, used shell syntax, or could not start).
    ran: bool,
    /// Its exit code, when it exited.
    code: Option<i32>,
    /// One line: the command, how it ended and the tail of its output.
    why: String,
}

impl From<String> for VerifyFailure {
    fn from(why: String) -> VerifyFailure {
        VerifyFailure {
            ran: false,
            code: None,
            why,
        }
    }
}

/// Characters that only mean something to a shell; verify commands run as plain argv.
const SHELL_SYNTAX: &[&str] = &["&&", "||", "|", ";", ">", "<", "$(", "`"];

/// How much of the end of each stream of a verify command the offline agent keeps. A test
/// suite may print hundreds of MB: the whole output is in the workflow's own `verify.log`
/// (written by its supervisor, on disk), so here only the end is held, in bounded memory.
const VERIFY_TAIL_BYTES: usize = 64 << 10;

/// The last `keep` bytes `from` gives until its end (fewer when it gives fewer), and how
/// many bytes it gave in all; never more than about `2 × keep` held at once.
fn tail_of(mut from: impl std::io::Read, keep: usize) -> (Vec<u8>, u64) {
    let mut tail = Vec::with_capacity(keep.min(1 << 20));
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        total += n as u64;
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 2 * keep {
            tail.drain(..tail.len() - keep);
        }
    }
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
    }
    (tail, total)
}

/// `tail` as shown: whole, or after a note of how much came before it.
fn shown(tail: &[u8], total: u64) -> String {
    let text = String::from_utf8_lossy(tail);
    let before = total.saturating_sub(tail.len() as u64);
    if before == 0 {
        text.into_owned()
    } else {
        format!("[{before} bytes before these left out]\n{text}")
    }
}

/// Run a verify command as argv in `cwd`; `Err` says why it did not pass. The end of a
/// failed one's output (the last [`VERIFY_TAIL_BYTES`] of each stream) goes to this
/// process's stderr, which qw keeps in the run folder.
fn run_verify(verify: &str, cwd: &Path) -> Result<(), VerifyFailure> {
    let words =
        shell_words::split(verify).map_err(|e| format!("`{verify}` cannot be split ({e})"))?;
    if let Some(sym) = words
        .iter()
        .flat_map(|w| SHELL_SYNTAX.iter().filter(move |s| w.as_str() == **s))
        .next()
    {
        return Err(format!(
            "`{verify}` uses shell syntax `{sym}`, but verify commands run as plain arguments"
        )
        .into());
    }
    let Some((program, args)) = words.split_first() else {
        return Err("is empty".to_owned().into());
    };
    let could_not = |e: std::io::Error| format!("`{verify}` could not be run ({e})");
    let mut child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| VerifyFailure::from(could_not(e)))?;
    // Both pipes drained at once (a command filling one while we wait on the other would
    // block), each keeping only its end.
    let stderr = child.stderr.take();
    let stderr = std::thread::spawn(move || {
        stderr.map_or_else(Default::default, |p| tail_of(p, VERIFY_TAIL_BYTES))
    });
    let (out_tail, out_total) = child
        .stdout
        .take()
        .map_or_else(Default::default, |p| tail_of(p, VERIFY_TAIL_BYTES));
    let (err_tail, err_total) = stderr.join().unwrap_or_default();
    let status = child
        .wait()
        .map_err(|e| VerifyFailure::from(could_not(e)))?;
    if status.success() {
        return Ok(());
    }
    crate::diag!(
        "verify `{verify}` failed; its output:\n{}{}",
        shown(&out_tail, out_total),
        shown(&err_tail, err_total)
    );
    let mut tail = super::outcome::tail_lines(&err_tail, 5);
    if tail.is_empty() {
        tail = super::outcome::tail_lines(&out_tail, 5);
    }
    let tail = tail
        .lines()
        .map(crate::fmt::fold_whitespace)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    let status_word = match status.code() {
        Some(c) => format!("exited {c}"),
        None => "was killed by a signal".to_owned(),
    };
    Err(VerifyFailure {
        ran: true,
        code: status.code(),
        why: if tail.is_empty() {
            format!("`{verify}` {status_word}")
        } else {
            format!("`{verify}` {status_word} ({tail})")
        },
    })
}

fn validate(req: &OfflineRequest) -> OfflineResult {
    let mut problems = Vec::new();
    for doc in ["requirements.md", "design.md"] {
        let p = req.spec_dir.join(doc);
        if !p.metadata().is_ok_and(|m| m.len() > 0) {
            problems.push(format!("`{}` is missing or empty", p.display()));
        }
    }
    let tasks_path = req.spec_dir.join("tasks.md");
    let text = match crate::spec::read_document(&req.project_root, &tasks_path) {
        Ok(t) => t,
        Err(e) => return OfflineResult::err(format!("VALIDATION: FAIL — {e}")),
    };
    let boxes = checkboxes(&text);
    if boxes.is_empty() {
        problems.push(format!("`{}` lists no tasks", tasks_path.display()));
    }
    let open: Vec<&str> = boxes
        .iter()
        .filter(|(_, done)| !done)
        .map(|(id, _)| id.as_str())
        .collect();
    if !open.is_empty() {
        let shown: Vec<&str> = open.iter().take(10).copied().collect();
        let more = if open.len() > 10 { ", …" } else { "" };
        problems.push(format!(
            "{} of {} tasks are not ticked: {}{more}",
            open.len(),
            boxes.len(),
            shown.join(", ")
        ));
    }
    if problems.is_empty() {
        OfflineResult::ok(format!(
            "VALIDATION: PASS — all {} tasks are ticked and the spec documents exist (the offline agent checks no more than that)",
            boxes.len()
        ))
    } else {
        OfflineResult::err(format!("VALIDATION: FAIL — {}", problems.join("; ")))
    }
}

/// `(id, ticked)` for every `- [ ] ID. Title` line (any indentation).
pub fn checkboxes(text: &str) -> Vec<(String, bool)> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix("- [")?;
            let mut chars = rest.chars();
            let mark = chars.next()?;
            let rest = chars.as_str().strip_prefix("] ")?;
            let id = rest.split_whitespace().next()?.trim_end_matches('.');
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return None;
            }
            match mark {
                ' ' => Some((id.to_owned(), false)),
                'x' | 'X' => Some((id.to_owned(), true)),
                _ => None,
            }
        })
        .collect()
}

fn first_line(description: &str) -> String {
    let line = description.lines().find(|l| !l.trim().is_empty());
    let line = line.unwrap_or("the feature").trim();
    line.trim_end_matches('.').to_owned()
}

/// EARS-style requirements filled with the description.
pub fn requirements_template(spec: &str, description: &str) -> String {
    let what = first_line(description);
    format!(
        "# Requirements Document

## Introduction

{description}

This document was written by qw's offline agent from the description of `{spec}` alone.
Review and refine it before relying on it.

## Requirements

### Requirement 1

**User Story:** As a user, I want {what}, so that I can rely on it in my work.

#### Acceptance Criteria

1. WHEN the feature is used as described THEN the system SHALL {what}.
2. WHEN the feature completes THEN the system SHALL report what it did.
3. IF the feature cannot complete THEN the system SHALL say so and SHALL NOT report success.

### Requirement 2

**User Story:** As a maintainer, I want clear errors, so that I can fix problems quickly.

#### Acceptance Criteria

1. IF an input is invalid THEN the system SHALL reject it with an error naming the input and the next step.
2. WHEN an error occurs THEN the system SHALL leave existing data unchanged.

### Requirement 3

**User Story:** As a maintainer, I want the behaviour tested, so that regressions are caught.

#### Acceptance Criteria

1. WHEN the test suite runs THEN it SHALL cover every acceptance criterion above.
",
        description = description.trim()
    )
}

/// A design skeleton filled with the description.
pub fn design_template(spec: &str, description: &str) -> String {
    let what = first_line(description);
    format!(
        "# Design Document

## Overview

{description}

Written by qw's offline agent for `{spec}` from the description and the requirements
template; name concrete files and types before implementing.

## Architecture

A single component provides the feature ({what}); callers reach it through one entry
point and receive either a result or an error that names its cause.

## Components and Interfaces

- Entry point: validates its input (Requirement 2.1) and performs the work (Requirement 1.1).
- Reporter: tells the caller what was done (Requirement 1.2) or why not (Requirement 1.3).

## Data Models

Inputs and results are plain values; nothing is persisted unless the requirements say so.

## Error Handling

Invalid input is rejected before any change is made, with an error naming the input and
the next step (Requirements 2.1, 2.2). A failure is never reported as success (Requirement 1.3).

## Testing Strategy

Unit tests for each acceptance criterion, and one end-to-end test of the entry point
(Requirement 3.1).
",
        description = description.trim()
    )
}

/// A tasks.md the offline agent can honestly complete: each task is a check with a
/// `_Verify:_` command (plain argv, relative to the project root).
pub fn tasks_template(spec: &str, description: &str, spec_dir: &str) -> String {
    let dir = shell_words::quote(spec_dir);
    format!(
        "# Implementation Plan

The offline agent writes no code, so every task below is a check it can verify by
itself. Replace them with real coding tasks (or rerun with `--agent claude`) to build
`{spec}`: {what}.

- [ ] 1. Confirm the requirements document is in place
  - `{spec_dir}/requirements.md` exists and is not empty
  - _Requirements: 1.1, 1.2, 1.3_
  - _Verify: `test -s {dir}/requirements.md`_
- [ ] 2. Confirm the design covers error handling
  - The design has an Error Handling section
  - _Requirements: 2.1, 2.2_
  - _Depends: 1_
  - _Verify: `grep -q -i \"error handling\" {dir}/design.md`_
- [ ] 3. Confirm the design has a testing strategy
  - The design has a Testing Strategy section
  - _Requirements: 3.1_
  - _Depends: 1_
  - _Verify: `grep -q -i \"testing strategy\" {dir}/design.md`_
",
        what = first_line(description)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkboxes_read_ids_and_ticks() {
        let text = "# Plan\n- [ ] 1. A\n  - detail\n- [x] 1.1. B\n  - [X] 10 C\n- [ ] not a task\n- [?] 2. odd\n";
        assert_eq!(
            checkboxes(text),
            vec![
                ("1".to_owned(), false),
                ("1.1".to_owned(), true),
                ("10".to_owned(), true)
            ]
        );
    }

    #[test]
    fn generated_tasks_have_runnable_verify_commands() {
        let text = tasks_template("greeter", "Greet users", ".claude/specs/greeter");
        let boxes = checkboxes(&text);
        assert_eq!(boxes.len(), 3);
        let verifies: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- _Verify: `"))
            .map(|l| l.trim_end_matches("`_"))
            .collect();
        assert_eq!(verifies.len(), 3);
        for v in verifies {
            let words = shell_words::split(v).unwrap();
            assert!(words.len() >= 3, "{v}");
            assert!(!SHELL_SYNTAX.iter().any(|s| v.contains(s)), "{v}");
        }
        // The verify commands pass against the generated documents.
        let dir = tempfile::tempdir().unwrap();
        let spec_dir = dir.path().join(".claude/specs/greeter");
        crate::fs::create_dir_all(&spec_dir).unwrap();
        crate::fs::write(
            spec_dir.join("requirements.md"),
            requirements_template("greeter", "x"),
        )
        .unwrap();
        crate::fs::write(spec_dir.join("design.md"), design_template("greeter", "x")).unwrap();
        for line in text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- _Verify: `"))
        {
            run_verify(line.trim_end_matches("`_"), dir.path()).unwrap();
        }
    }

    #[test]
    fn verify_refuses_shell_syntax_and_reports_failures() {
        let cwd = Path::new(".");
        assert!(run_verify("true", cwd).is_ok());
        let e = run_verify("true && false", cwd).unwrap_err();
        assert!(e.why.contains("shell syntax `&&`") && !e.ran, "{e:?}");
        let e = run_verify("sh -c 'echo nope >&2; exit 4'", cwd).unwrap_err();
        assert!(
            e.why.contains("exited 4") && e.why.contains("nope"),
            "{e:?}"
        );
        assert_eq!((e.ran, e.code), (true, Some(4)));
        let e = run_verify("qw-no-such-verify-xyz", cwd).unwrap_err().why;
        assert!(e.contains("could not be run"), "{e}");
        // Much output on both streams: the end of each is what is said.
        let e = run_verify(
            "sh -c 'yes out | head -c 1000000; yes err | head -c 1000000 >&2; echo last-err >&2; exit 3'",
            cwd,
        )
        .unwrap_err();
        assert!(
            e.why.contains("exited 3") && e.why.contains("last-err"),
            "{e:?}"
        );
    }

    #[test]
    fn a_verify_commands_output_is_held_by_its_end_only() {
        let ten_mib = std::io::Read::take(std::io::repeat(b'x'), 10 << 20);
        let (tail, total) = tail_of(std::io::Read::chain(ten_mib, &b"\nend\n"[..]), 1000);
        assert_eq!(total, (10 << 20) + 5);
        assert_eq!(tail.len(), 1000);
        assert!(tail.ends_with(b"x\nend\n"));
        assert!(tail.capacity() < 1 << 20, "{}", tail.capacity());
        let (tail, total) = tail_of(&b"short"[..], 1000);
        assert_eq!((tail.as_slice(), total), (&b"short"[..], 5));
        assert_eq!(shown(b"short", 5), "short");
        assert_eq!(shown(b"end", 10), "[7 bytes before these left out]\nend");
    }
}
