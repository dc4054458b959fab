//! The `command` agent: a user's argv template, e.g.
//! `--agent-cmd 'my-agent --prompt-file {prompt_file} --task {task_id}'`.
//!
//! The template is split into words once, when parsed (shell-words rules, so quotes
//! work); placeholders are substituted inside each word at run time and never re-split,
//! so a prompt full of quotes and `;` stays one argument and no shell ever sees it.
//!
//! Judging: if stdout holds a JSON result object (Claude-style, also a `stream-json`
//! event stream) it is judged exactly like `claude`. Plain-text (or empty) stdout,
//! captured in `stdout.log`, is judged by the exit code: non-zero is an `agent_error`;
//! exit 0 counts as success with `structured: false` — for implementation/validation the
//! caller's `_Verify:_` then decides, and a document phase still needs its document.
//!
//! Documents: a command agent may write the document, or print it. Plain stdout supplies
//! the document only when the whole of it (trimmed) is the document — it starts with a
//! Markdown heading, optionally inside one ```` ```markdown ```` fence — because a
//! command's stdout may just as well be its log; a tasks list must also parse. A JSON
//! result's text is read as leniently as claude's answer.

use super::captured::Captured;
use super::outcome::{self, ErrorCause, Outcome, Parsed};
use super::{Agent, AgentCommand, AgentError, AgentRun, ClassifyInput, Job, job_env};
use crate::exec::Program;

/// A placeholder a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    Prompt,
    PromptFile,
    TaskId,
    Spec,
    Phase,
}

impl Placeholder {
    fn from_name(name: &str) -> Option<Placeholder> {
        Some(match name {
            "prompt" => Placeholder::Prompt,
            "prompt_file" => Placeholder::PromptFile,
            "task_id" => Placeholder::TaskId,
            "spec" => Placeholder::Spec,
            "phase" => Placeholder::Phase,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Slot(Placeholder),
}

/// A parsed `--agent-cmd` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandAgent {
    template: String,
    words: Vec<Vec<Piece>>,
}

impl CommandAgent {
    /// Split `template` into argv words and check its placeholders.
    pub fn parse(template: &str) -> Result<CommandAgent, AgentError> {
        let split = shell_words::split(template).map_err(|e| AgentError::BadQuotes {
            template: template.to_owned(),
            reason: e.to_string(),
        })?;
        if split.is_empty() {
            return Err(AgentError::EmptyTemplate);
        }
        let words = split
            .iter()
            .map(|w| pieces(w, template))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CommandAgent {
            template: template.to_owned(),
            words,
        })
    }

    /// The template as given.
    pub fn template(&self) -> &str {
        &self.template
    }

    fn argv(&self, job: &Job, prompt: &str) -> Vec<String> {
        let prompt_file = job.prompt_file().to_string_lossy().into_owned();
        self.words
            .iter()
            .map(|word| {
                word.iter()
                    .map(|piece| match piece {
                        Piece::Text(t) => t.as_str(),
                        Piece::Slot(Placeholder::Prompt) => prompt,
                        Piece::Slot(Placeholder::PromptFile) => prompt_file.as_str(),
                        Piece::Slot(Placeholder::TaskId) => job.task_id(),
                        Piece::Slot(Placeholder::Spec) => job.spec.as_str(),
                        Piece::Slot(Placeholder::Phase) => job.phase.as_str(),
                    })
                    .collect()
            })
            .collect()
    }
}

/// Split one word into literal text and `{placeholder}`s. A brace group that is not a
/// lowercase identifier (`{}`, `{"a":1}`) is literal text.
fn pieces(word: &str, template: &str) -> Result<Vec<Piece>, AgentError> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = word;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        if name.is_empty() || !after[name_len..].starts_with('}') {
            text.push_str(&rest[..=open]);
            rest = after;
            continue;
        }
        let slot = Placeholder::from_name(name).ok_or_else(|| AgentError::UnknownPlaceholder {
            template: template.to_owned(),
            name: name.to_owned(),
        })?;
        text.push_str(&rest[..open]);
        if !text.is_empty() {
            out.push(Piece::Text(std::mem::take(&mut text)));
        }
        out.push(Piece::Slot(slot));
        rest = &after[name_len + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() || out.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

impl Agent for CommandAgent {
    fn name(&self) -> &'static str {
        "command"
    }

    fn command(&self, job: &Job, prompt: &str) -> Result<AgentCommand, AgentError> {
        let program = Program::argv(self.argv(job, prompt)).ok_or(AgentError::EmptyTemplate)?;
        Ok(AgentCommand {
            program,
            env: job_env(job),
            cwd: job.workdir.clone(),
            stdout_name: "stdout.log",
        })
    }

    /// The program must exist when it is a fixed word (not a placeholder).
    fn check(&self) -> Result<(), AgentError> {
        match self.words.first().map(Vec::as_slice) {
            Some([Piece::Text(program)]) => super::find_program(program.as_ref())
                .map(|_| ())
                .ok_or_else(|| AgentError::NotFound {
                    program: program.clone(),
                }),
            _ => Ok(()),
        }
    }

    fn classify(&self, _job: &Job, input: &ClassifyInput<'_>) -> AgentRun {
        let run = outcome::classify(input);
        let stdout = input.stdout.as_captured();
        let plain = matches!(stdout.last_object(), Parsed::Empty | Parsed::NotJson);
        if !plain || !matches!(run.outcome, Outcome::NoResult { .. }) {
            return run;
        }
        let exit_code = input.report.exit_code;
        let mut run = run;
        run.structured = false;
        let tail = outcome::tail_lines(stdout.tail(), 1);
        run.result_text = (!tail.is_empty()).then_some(tail);
        if exit_code != 0 {
            run.outcome = Outcome::AgentError {
                cause: ErrorCause::Reported,
                exit_code,
            };
            run.evidence = match input
                .stderr_tail
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
            {
                Some(line) => format!("exit {exit_code}; stderr: {}", line.trim()),
                None => format!("exit {exit_code} with no JSON result and no stderr"),
            };
            return run;
        }
        run.outcome = Outcome::Succeeded;
        run.evidence = if input.phase.document().is_some() {
            "exit 0 (plain-text output)".to_owned()
        } else {
            "exit 0 (plain-text output; judged by exit code and the task's verify)".to_owned()
        };
        run
    }

    /// A JSON result's text leniently; plain stdout only when all of it is the document.
    fn answered_document(
        &self,
        run: &AgentRun,
        stdout: &Captured,
    ) -> Result<Option<String>, String> {
        if run.structured {
            return Ok(run
                .result_text
                .as_deref()
                .and_then(|t| super::document::extract(t, false)));
        }
        // A plain answer is the document only when all of stdout is: held whole when
        // short, else read again from its file up to the longest document qw reads.
        if let Some(whole) = stdout.whole() {
            return Ok(super::document::extract(
                &String::from_utf8_lossy(whole),
                true,
            ));
        }
        let Some(path) = stdout.path() else {
            return Ok(None);
        };
        let max = crate::spec::MAX_DOCUMENT_BYTES;
        match crate::fs::read_regular(path, max) {
            Ok(crate::fs::Bounded::Whole(bytes)) => Ok(super::document::extract(
                &String::from_utf8_lossy(&bytes),
                true,
            )),
            Ok(crate::fs::Bounded::TooBig { len, .. }) => Err(format!(
                "the agent answered {len} bytes; qw takes a document answer of at most {max} bytes ({} MiB): it is in `{}`; not retried (the same run would answer the same): have the agent write the file, or shorten it",
                max >> 20,
                path.display()
            )),
            Err(e) => Err(format!("could not read the agent's answer again: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Phase, TaskJob};
    use super::*;
    use crate::exec::ExecReport;

    fn job(dir: &std::path::Path, phase: Phase) -> Job {
        Job {
            phase,
            spec: "greeter".into(),
            description: "d".into(),
            project_root: dir.to_path_buf(),
            workdir: dir.to_path_buf(),
            spec_dir: dir.join("spec"),
            task: Some(TaskJob {
                id: "2.1".into(),
                title: "t".into(),
                details: vec![],
                verify: None,
                requirements: vec![],
            }),
            run_dir: dir.join("run"),
            env: Vec::new(),
        }
    }

    fn argv(agent: &CommandAgent, job: &Job, prompt: &str) -> Vec<String> {
        agent
            .command(job, prompt)
            .unwrap()
            .program
            .to_argv()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn placeholders_are_substituted_inside_words_without_resplitting() {
        let dir = tempfile::tempdir().unwrap();
        let j = job(dir.path(), Phase::Implementation);
        let agent = CommandAgent::parse(
            r#"my-agent --file={prompt_file} "task {task_id}" {spec}/{phase} {prompt} '{"raw":1}' {}"#,
        )
        .unwrap();
        let got = argv(&agent, &j, "say \"hi\"; rm -rf /");
        let pf = j.prompt_file().to_string_lossy().into_owned();
        assert_eq!(
            got,
            [
                "my-agent".to_owned(),
                format!("--file={pf}"),
                "task 2.1".into(),
                "greeter/implementation".into(),
                "say \"hi\"; rm -rf /".into(),
                r#"{"raw":1}"#.into(),
                "{}".into(),
            ]
        );
    }

    #[test]
    fn bad_templates_are_refused_with_clear_errors() {
        let e = CommandAgent::parse("").unwrap_err().to_string();
        assert!(e.contains("--agent-cmd is empty"), "{e}");
        let e = CommandAgent::parse("   ").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let err = CommandAgent::parse("agent 'unbalanced").unwrap_err();
        let e = err.to_string();
        assert!(e.contains("cannot be split") && e.contains("quote"), "{e}");
        let hints = crate::exit::UserError::hints(&err);
        assert_eq!(hints, ["check its quotes"]);
        let e = CommandAgent::parse("agent {promt}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown placeholder `{promt}`"), "{e}");
        let e = CommandAgent::parse("qw-no-such-agent-xyz {prompt}")
            .unwrap()
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("`qw-no-such-agent-xyz` was not found"), "{e}");
        assert!(CommandAgent::parse("sh -c true").unwrap().check().is_ok());
    }

    fn report(exit_code: i32) -> ExecReport {
        ExecReport {
            exit_code,
            duration_ms: 10,
            ..ExecReport::new("r")
        }
    }

    fn judge(agent: &CommandAgent, job: &Job, exit: i32, stdout: &str) -> AgentRun {
        super::super::judge(
            agent,
            job,
            &ClassifyInput {
                report: &report(exit),
                stdout: &Captured::from(stdout),
                stderr_tail: "boom",
                phase: job.phase,
                user_cancelled: false,
            },
            false,
        )
    }

    #[test]
    fn plain_text_output_is_judged_by_exit_code_and_document() {
        let dir = tempfile::tempdir().unwrap();
        let agent = CommandAgent::parse("agent {prompt_file}").unwrap();
        let design = job(dir.path(), Phase::Design);
        let run = judge(&agent, &design, 0, "wrote it\n");
        assert_eq!(run.outcome.as_str(), "no_result", "{}", run.evidence);
        assert!(run.evidence.contains("neither wrote"), "{}", run.evidence);
        // Logs around a document are not a document: plain stdout must be all of it.
        let run = judge(&agent, &design, 0, "starting\n# Design\n\ndone\n");
        assert_eq!(run.outcome.as_str(), "no_result", "{}", run.evidence);
        assert!(!design.spec_dir.join("design.md").exists());
        // Stdout that is the document: qw writes it.
        let run = judge(&agent, &design, 0, "# Design\n\n## Overview\n\nSmall.\n");
        assert_eq!(run.outcome, Outcome::Succeeded, "{}", run.evidence);
        assert!(!run.structured);
        assert_eq!(
            crate::fs::read_to_string(design.spec_dir.join("design.md")).unwrap(),
            "# Design\n\n## Overview\n\nSmall.\n"
        );
        // A document the agent wrote itself.
        crate::fs::write(design.spec_dir.join("design.md"), "# Design").unwrap();
        let run = judge(&agent, &design, 0, "wrote it\n");
        assert_eq!(run.outcome, Outcome::Succeeded);
        assert!(!run.structured);

        let imp = job(dir.path(), Phase::Implementation);
        assert_eq!(judge(&agent, &imp, 0, "").outcome, Outcome::Succeeded);
        let run = judge(&agent, &imp, 3, "oops");
        assert_eq!(run.outcome.as_str(), "agent_error");
        assert!(
            run.evidence.contains("exit 3; stderr: boom"),
            "{}",
            run.evidence
        );

        // A JSON result is judged like claude's: is_error wins over exit 0.
        let json = r#"{"type":"result","is_error":true,"result":"nope"}"#;
        assert_eq!(judge(&agent, &imp, 0, json).outcome.as_str(), "agent_error");
        let json = r#"{"type":"result","is_error":false,"result":"ok","total_cost_usd":0.4}"#;
        let run = judge(&agent, &imp, 0, json);
        assert!(run.structured && run.outcome.is_success());
        assert!((run.cost_usd - 0.4).abs() < 1e-9);
    }
}
