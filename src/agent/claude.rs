//! The `claude` agent: `claude -p PROMPT --output-format stream-json --verbose …`, argv
//! only, no shell. The event stream (one JSON object per line, the final `result` last)
//! is captured in the run folder as `events.jsonl`: [`super::events`] reads the live
//! activity from it while the agent works, [`super::outcome`] judges the final result.

use std::ffi::OsString;

use super::{Agent, AgentCommand, AgentError, Job, job_env};
use crate::exec::Program;

/// Linux refuses a single argument longer than 128 KiB (`MAX_ARG_STRLEN`).
const MAX_PROMPT_ARG: usize = 128 * 1024 - 1;

/// Runs Claude Code in print mode with its event stream on stdout.
#[derive(Debug, Clone)]
pub struct ClaudeAgent {
    /// The program (default `claude`, looked up in PATH).
    pub program: OsString,
    /// Extra arguments after `--verbose` (e.g. `--max-turns 30`,
    /// `--permission-mode acceptEdits`).
    pub extra_args: Vec<String>,
}

impl Default for ClaudeAgent {
    fn default() -> ClaudeAgent {
        ClaudeAgent {
            program: "claude".into(),
            extra_args: Vec::new(),
        }
    }
}

impl ClaudeAgent {
    /// `claude` from PATH with no extra arguments.
    pub fn new() -> ClaudeAgent {
        ClaudeAgent::default()
    }

    /// The program's path, or [`AgentError::NotFound`] suggesting the other agents.
    pub fn check_available(&self) -> Result<std::path::PathBuf, AgentError> {
        super::find_program(&self.program).ok_or_else(|| AgentError::NotFound {
            program: self.program.to_string_lossy().into_owned(),
        })
    }
}

impl ClaudeAgent {
    /// `claude -p PROMPT [--resume ID] --output-format stream-json --verbose EXTRA…`.
    fn argv(
        &self,
        job: &Job,
        prompt: &str,
        resume: Option<&str>,
    ) -> Result<AgentCommand, AgentError> {
        if prompt.len() > MAX_PROMPT_ARG {
            return Err(AgentError::PromptTooLarge {
                spec: job.spec.clone(),
                bytes: prompt.len(),
            });
        }
        let mut argv: Vec<OsString> = vec![self.program.clone(), "-p".into(), prompt.into()];
        if let Some(id) = resume {
            argv.push("--resume".into());
            argv.push(id.into());
        }
        argv.extend([
            "--output-format".into(),
            "stream-json".into(),
            // Claude Code refuses stream-json in print mode without it.
            "--verbose".into(),
        ]);
        argv.extend(self.extra_args.iter().map(OsString::from));
        let program = Program::argv(argv).ok_or(AgentError::EmptyTemplate)?;
        Ok(AgentCommand {
            program,
            env: job_env(job),
            cwd: job.workdir.clone(),
            stdout_name: "events.jsonl",
        })
    }
}

impl Agent for ClaudeAgent {
    fn name(&self) -> &'static str {
        "claude"
    }

    fn command(&self, job: &Job, prompt: &str) -> Result<AgentCommand, AgentError> {
        self.argv(job, prompt, None)
    }

    fn resume_command(
        &self,
        job: &Job,
        session_id: &str,
        prompt: &str,
    ) -> Option<Result<AgentCommand, AgentError>> {
        if !super::is_session_id(session_id) {
            return Some(Err(AgentError::BadSession {
                id: session_id.to_owned(),
            }));
        }
        Some(self.argv(job, prompt, Some(session_id)))
    }

    fn check(&self) -> Result<(), AgentError> {
        self.check_available().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Phase;
    use super::*;

    fn job() -> Job {
        Job {
            phase: Phase::Design,
            spec: "s".into(),
            description: "d".into(),
            project_root: "/p".into(),
            workdir: "/p".into(),
            spec_dir: "/p/.claude/specs/s".into(),
            task: None,
            run_dir: "/p/.claude/runs/r".into(),
            env: Vec::new(),
        }
    }

    fn claude_with(extra_args: &[&str]) -> ClaudeAgent {
        ClaudeAgent {
            program: "claude".into(),
            extra_args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    fn argv_of(c: &AgentCommand) -> Vec<String> {
        c.program
            .to_argv()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn argv_is_print_mode_stream_json_with_extra_args() {
        let agent = claude_with(&["--max-turns", "30"]);
        let c = agent.command(&job(), "do it; rm -rf / $(x)").unwrap();
        let argv = argv_of(&c);
        assert_eq!(
            argv,
            [
                "claude",
                "-p",
                "do it; rm -rf / $(x)",
                "--output-format",
                "stream-json",
                "--verbose",
                "--max-turns",
                "30"
            ]
        );
        assert_eq!(c.cwd, std::path::PathBuf::from("/p"));
        assert_eq!(
            c.stdout_file(&job()),
            std::path::PathBuf::from("/p/.claude/runs/r/events.jsonl")
        );
    }

    #[test]
    fn resume_puts_the_session_before_the_output_flags() {
        let agent = claude_with(&["--permission-mode", "acceptEdits"]);
        let c = agent
            .resume_command(&job(), "5c1d3b0e-8f7a-4b52-9c3d-0123456789ab", "go on")
            .unwrap()
            .unwrap();
        let argv = argv_of(&c);
        assert_eq!(
            argv,
            [
                "claude",
                "-p",
                "go on",
                "--resume",
                "5c1d3b0e-8f7a-4b52-9c3d-0123456789ab",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-mode",
                "acceptEdits"
            ]
        );
        for bad in [
            "",
            "--dangerously-skip-permissions",
            "a b",
            "x;y",
            "5c1d3b0e-8f7a-4b52",
            "5c1d3b0e-8f7a-4b52-9c3d-0123456789ag",
            "-5c1d3b0-8f7a-4b52-9c3d-0123456789ab",
        ] {
            assert!(
                matches!(
                    agent.resume_command(&job(), bad, "p"),
                    Some(Err(AgentError::BadSession { .. }))
                ),
                "{bad:?}"
            );
        }
        let offline = super::super::OfflineAgent::new("qw");
        assert!(offline.resume_command(&job(), "abc", "p").is_none());
    }

    #[test]
    fn missing_program_suggests_other_agents() {
        let agent = ClaudeAgent {
            program: "qw-no-such-claude".into(),
            extra_args: vec![],
        };
        let err = agent.check().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`qw-no-such-claude` was not found on PATH"),
            "{msg}"
        );
        let hints = crate::exit::UserError::hints(&err).join(" ");
        assert!(
            hints.contains("--agent offline") && hints.contains("--agent-cmd"),
            "{hints}"
        );
    }

    #[test]
    fn oversized_prompt_is_refused() {
        let big = "x".repeat(MAX_PROMPT_ARG + 1);
        assert!(matches!(
            ClaudeAgent::new().command(&job(), &big),
            Err(AgentError::PromptTooLarge { .. })
        ));
    }
}
