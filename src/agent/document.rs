//! Spec documents an agent delivers: a file it wrote, or the document as its answer.
//!
//! Owns: deciding whether a requirements, design or tasks run produced its document and
//! writing it when the agent answered with it instead of writing it (Claude Code refuses
//! writes under `.claude/` in headless mode, so qw never depends on that permission);
//! the shape check (a Markdown heading for requirements and design; for `tasks.md`, a
//! list that parses, with at least one task and `_Verify:_` commands qw will run).
//! Must not: run agents, judge anything but the document, or touch the state.
//!
//! Order: a file the agent wrote in this run that passes the check wins ("a Write it
//! made anyway is accepted"); else the document in the final answer, written with
//! [`crate::fs::write_durable`]; a file that fails the check is moved into the run folder
//! (`<name>.rejected`) so a later `workflow-continue` does not take it for finished work.
//! A document that existed before the run is never touched.

use std::path::Path;

use super::outcome::{AgentRun, Outcome, denied_tools, explain};
use super::{Job, Phase};
use crate::spec::tasks::TaskList;

/// Check a document's text for its phase; the error says what is wrong.
pub(crate) fn check(phase: Phase, text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("it is empty".into());
    }
    match phase {
        Phase::Tasks => {
            let list = TaskList::parse(text).map_err(|e| e.to_string())?;
            if list.tasks().is_empty() {
                return Err("it holds no task (expected lines such as `- [ ] 1. Title`)".into());
            }
            for t in list.tasks() {
                if let Some(v) = &t.verify
                    && let Err(e) = crate::validate::validate_argv_text(v)
                {
                    return Err(format!(
                        "line {}: task {} has a _Verify:_ command qw will not run: {e}",
                        t.line, t.id
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Is `line` a Markdown ATX heading (`#` to `######`, then a space)?
fn is_heading(line: &str) -> bool {
    let hashes = line.chars().take_while(|&c| c == '#').count();
    (1..=6).contains(&hashes) && line[hashes..].starts_with([' ', '\t'])
}

/// The document inside an answer, or None when it holds none.
///
/// `strict` (plain stdout of a command agent): the whole answer must be the document,
/// starting with a heading (optionally wrapped in one ```` ```markdown ```` fence).
/// Lenient (a model's final message): also a ```` ```markdown ```` block inside the
/// answer, or everything from the first heading on, so a sentence of preamble does not
/// end up in the document.
pub(crate) fn extract(answer: &str, strict: bool) -> Option<String> {
    let trimmed = answer.trim();
    let unfenced = unfence(trimmed).unwrap_or(trimmed);
    let first = unfenced.lines().next().unwrap_or("");
    if is_heading(first) {
        return Some(finish(unfenced));
    }
    if strict {
        return None;
    }
    if let Some(block) = markdown_block(trimmed)
        && block.lines().next().is_some_and(is_heading)
    {
        return Some(finish(block));
    }
    let mut offset = 0;
    for line in unfenced.split_inclusive('\n') {
        if is_heading(line.trim_end()) {
            return Some(finish(&unfenced[offset..]));
        }
        offset += line.len();
    }
    None
}

/// The inside of an answer that is one fenced block and nothing else.
fn unfence(text: &str) -> Option<&str> {
    let first_nl = text.find('\n')?;
    let opening = text[..first_nl].trim();
    let info = opening.strip_prefix("```")?.trim();
    if !(info.is_empty() || info == "markdown" || info == "md") {
        return None;
    }
    let body = text[first_nl + 1..].trim_end().strip_suffix("```")?;
    // A fence inside would mean several blocks, not one wrapping the whole answer.
    (!info.is_empty() || !body.lines().any(|l| l.trim_start().starts_with("```"))).then_some(body)
}

/// The first ```` ```markdown ```` (or `md`) block inside `text`.
fn markdown_block(text: &str) -> Option<&str> {
    let mut offset = 0;
    let mut start: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        match start {
            None if t == "```markdown" || t == "```md" => start = Some(offset + line.len()),
            Some(s) if t == "```" => return Some(&text[s..offset]),
            _ => {}
        }
        offset += line.len();
    }
    None
}

fn finish(text: &str) -> String {
    let mut s = text.trim().to_owned();
    s.push('\n');
    s
}

/// Does `path` hold a non-empty regular file?
pub(crate) fn present(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file() && m.len() > 0)
}

/// Settle a finished document run (see the module doc). `before`: the document was
/// present before the agent ran. `answer`: the document the agent answered with, if any
/// (see [`super::Agent::answered_document`]). Writes the document or moves a bad one
/// aside; I/O failures become the run's evidence (`agent_error`).
pub(crate) fn settle(
    job: &Job,
    mut run: AgentRun,
    answer: Result<Option<String>, String>,
    before: bool,
    stdout: &super::captured::Captured,
) -> AgentRun {
    let Some(doc) = job.expected_document() else {
        return run;
    };
    if !run.outcome.is_success() || before {
        return run;
    }
    let name = job.phase.document().unwrap_or("document");
    let shown = doc.display();
    let mut problems: Vec<String> = Vec::new();
    if present(&doc) {
        let written =
            crate::spec::read_document(&job.project_root, &doc).map_err(|e| e.to_string());
        match written.and_then(|text| check(job.phase, &text)) {
            Ok(()) => return run,
            Err(e) => problems.push(format!("the `{name}` it wrote is not valid: {e}")),
        }
    }
    let (answer, too_large) = match answer {
        Ok(a) => (a, None),
        Err(why) => (None, Some(why)),
    };
    let answered = answer.map(|text| check(job.phase, &text).map(|()| text));
    match answered {
        Some(Ok(text)) => {
            if let Err(e) = set_aside(&doc, job)
                .and_then(|()| crate::fs::create_dir_all(crate::fs::parent_dir(&doc)))
                .and_then(|()| crate::fs::write_durable(&doc, text.as_bytes()))
            {
                return failed(run, format!("could not write `{shown}`: {e}"));
            }
            let refused = if run.denials.is_empty() {
                String::new()
            } else {
                " (its own write was refused)".to_owned()
            };
            run.evidence = format!(
                "{}; the agent answered with the document{refused} and qw wrote `{shown}`",
                run.evidence
            );
            return run;
        }
        Some(Err(e)) => problems.push(format!("its answer is not a valid `{name}`: {e}")),
        None => {}
    }
    if let Err(e) = set_aside(&doc, job) {
        return failed(
            run,
            format!("could not move the invalid `{shown}` aside: {e}"),
        );
    }
    // An answer too large to take: say so, and the same run is not run again.
    if let Some(why) = too_large.filter(|_| problems.is_empty()) {
        run.outcome = Outcome::AgentError {
            cause: super::ErrorCause::TooLarge,
            exit_code: run.exit_code,
        };
        run.evidence = why;
        return run;
    }
    if problems.is_empty() && !run.denials.is_empty() {
        let tools = denied_tools(&run.denials);
        run.evidence = format!(
            "the agent neither wrote `{shown}` nor answered with it: {}",
            explain(&run.denials, stdout)
        );
        run.outcome = Outcome::PermissionDenied { tools };
        return run;
    }
    run.outcome = Outcome::NoResult {
        exit_code: run.exit_code,
    };
    run.evidence = if problems.is_empty() {
        format!(
            "the agent reported success but neither wrote `{shown}` nor answered with the document"
        )
    } else {
        problems.join("; ")
    };
    run
}

/// Move an agent-written document that failed its check to `run_dir/<name>.rejected`.
fn set_aside(doc: &Path, job: &Job) -> std::io::Result<()> {
    if doc.symlink_metadata().is_err() {
        return Ok(());
    }
    let name = doc
        .file_name()
        .map_or_else(|| "document".into(), |n| n.to_string_lossy().into_owned());
    crate::fs::create_dir_all(&job.run_dir)?;
    crate::fs::rename(doc, job.run_dir.join(format!("{name}.rejected")))
}

fn failed(mut run: AgentRun, evidence: String) -> AgentRun {
    run.outcome = Outcome::AgentError {
        cause: super::ErrorCause::Reported,
        exit_code: run.exit_code,
    };
    run.evidence = evidence;
    run
}

/// Test support: `run` ended `permission_denied` on `Write`, its evidence calling the
/// refused document a sensitive file (Claude Code's word for `.claude/`).
#[cfg(test)]
pub(crate) fn assert_refused_sensitive_write(run: &AgentRun) {
    assert_eq!(
        run.outcome,
        Outcome::PermissionDenied {
            tools: vec!["Write".into()]
        }
    );
    assert!(
        run.evidence.contains("(a sensitive file)"),
        "{}",
        run.evidence
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASKS: &str = "# Implementation Plan\n\n- [ ] 1. Do it\n  - _Verify: `true`_\n";

    #[test]
    fn documents_are_found_in_answers() {
        let doc = "# Requirements Document\n\n## Introduction\n\nHi.";
        assert_eq!(extract(doc, true).as_deref(), Some(&*format!("{doc}\n")));
        let fenced = format!("```markdown\n{doc}\n```");
        assert_eq!(
            extract(&fenced, true).as_deref(),
            Some(&*format!("{doc}\n"))
        );
        let preamble = format!("Here is the document:\n\n{doc}");
        assert_eq!(extract(&preamble, true), None, "strict: whole answer only");
        assert_eq!(
            extract(&preamble, false).as_deref(),
            Some(&*format!("{doc}\n"))
        );
        let inside = format!("Here it is:\n\n```markdown\n{doc}\n```\n\nAnything else?");
        assert_eq!(
            extract(&inside, false).as_deref(),
            Some(&*format!("{doc}\n"))
        );
        assert_eq!(extract("Done. I wrote the file as asked.", false), None);
        assert_eq!(extract("#hashtag is not a heading", false), None);
        assert_eq!(extract("", false), None);
        // Code blocks inside a design survive, and `#[derive]` is no heading.
        let design = "# Design\n\n```rust\n#[derive(Debug)]\nstruct A;\n```\n";
        assert_eq!(extract(design, true).as_deref(), Some(design));
        assert_eq!(extract("```rust\n#[derive(Debug)]\n```", false), None);
    }

    #[test]
    fn tasks_must_parse_and_hold_a_runnable_task() {
        assert!(check(Phase::Tasks, TASKS).is_ok());
        let e = check(Phase::Tasks, "# Plan\n\nNothing yet.\n").unwrap_err();
        assert!(e.contains("no task"), "{e}");
        let e = check(Phase::Tasks, "- [ ] 1. A\n- [ ] 1. B\n").unwrap_err();
        assert!(e.contains('1'), "{e}");
        let e = check(Phase::Tasks, "- [ ] 1. A\n  - _Verify: `a && b`_\n").unwrap_err();
        assert!(e.contains("_Verify:_"), "{e}");
        assert!(check(Phase::Design, "# Design\n").is_ok());
        assert!(check(Phase::Design, " \n").is_err());
    }

    fn job(dir: &Path, phase: Phase) -> Job {
        Job {
            phase,
            spec: "s".into(),
            description: "d".into(),
            project_root: dir.into(),
            workdir: dir.into(),
            spec_dir: dir.join(".claude/specs/s"),
            task: None,
            run_dir: dir.join("run"),
            env: Vec::new(),
        }
    }

    fn ok_run() -> AgentRun {
        AgentRun::from_outcome(Outcome::Succeeded, "exit 0, is_error false: done")
    }

    #[test]
    fn settling_writes_answers_keeps_writes_and_sets_bad_files_aside() {
        let dir = tempfile::tempdir().unwrap();
        let j = job(dir.path(), Phase::Tasks);
        let path = j.spec_dir.join("tasks.md");

        // Answered: qw writes it.
        let run = settle(
            &j,
            ok_run(),
            Ok(Some(TASKS.into())),
            false,
            &Default::default(),
        );
        assert_eq!(run.outcome, Outcome::Succeeded, "{}", run.evidence);
        assert!(run.evidence.contains("qw wrote"), "{}", run.evidence);
        assert_eq!(crate::fs::read_to_string(&path).unwrap(), TASKS);

        // Written by the agent and valid: kept, the answer ignored.
        crate::fs::write(&path, "- [ ] 7. Mine\n").unwrap();
        let run = settle(
            &j,
            ok_run(),
            Ok(Some(TASKS.into())),
            false,
            &Default::default(),
        );
        assert!(run.outcome.is_success());
        assert_eq!(crate::fs::read_to_string(&path).unwrap(), "- [ ] 7. Mine\n");

        // Written but invalid, valid answer: the answer replaces it, the bad one kept aside.
        crate::fs::write(&path, "- [ ] 1. A\n- [ ] 1. B\n").unwrap();
        let run = settle(
            &j,
            ok_run(),
            Ok(Some(TASKS.into())),
            false,
            &Default::default(),
        );
        assert!(run.outcome.is_success(), "{}", run.evidence);
        assert_eq!(crate::fs::read_to_string(&path).unwrap(), TASKS);
        assert!(j.run_dir.join("tasks.md.rejected").is_file());

        // Invalid both ways: no_result with the parse error, and no tasks.md left behind.
        crate::fs::write(&path, "- [ ] 1. A\n- [ ] 1. B\n").unwrap();
        let run = settle(
            &j,
            ok_run(),
            Ok(Some("# Plan\n\nsoon\n".into())),
            false,
            &Default::default(),
        );
        assert_eq!(run.outcome, Outcome::NoResult { exit_code: 0 });
        assert!(run.evidence.contains("not valid"), "{}", run.evidence);
        assert!(run.evidence.contains("no task"), "{}", run.evidence);
        assert!(!path.exists());

        // Present before the run: untouched, whatever the answer.
        crate::fs::write(&path, "user's own\n").unwrap();
        let run = settle(
            &j,
            ok_run(),
            Ok(Some(TASKS.into())),
            true,
            &Default::default(),
        );
        assert!(run.outcome.is_success());
        assert_eq!(crate::fs::read_to_string(&path).unwrap(), "user's own\n");

        // A failed run is not settled.
        crate::fs::remove_file(&path).unwrap();
        let failed = AgentRun::from_outcome(Outcome::UsageLimited, "limit");
        let run = settle(
            &j,
            failed,
            Ok(Some(TASKS.into())),
            false,
            &Default::default(),
        );
        assert_eq!(run.outcome, Outcome::UsageLimited);
        assert!(!path.exists());
    }

    #[test]
    fn nothing_delivered_is_no_result_or_permission_denied_with_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let j = job(dir.path(), Phase::Requirements);
        let run = settle(&j, ok_run(), Ok(None), false, &Default::default());
        assert_eq!(run.outcome, Outcome::NoResult { exit_code: 0 });
        assert!(run.evidence.contains("neither wrote"), "{}", run.evidence);

        let mut denied = ok_run();
        denied.denials = vec![super::super::events::Denial {
            tool: "Write".into(),
            target: Some(j.spec_dir.join("requirements.md").display().to_string()),
            tool_use_id: None,
        }];
        let run = settle(&j, denied, Ok(None), false, &Default::default());
        assert_refused_sensitive_write(&run);
    }
}
