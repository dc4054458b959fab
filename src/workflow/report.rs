//! The completion report, `.claude/specs/NAME/report.md`: how the workflow ended, each
//! task with its attempts, duration, cost and outcome, and why anything failed.

use std::fmt::Write as _;
use std::time::Duration;

use super::driver::Ending;
use super::{AgentKind, OPTIONS_KEY};
use crate::agent::outcome::AgentRun;
use crate::spec::tasks::TaskList;
use crate::state::{TaskStatus, UnifiedState};

/// What the report is made from.
pub(crate) struct ReportInput<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub ending: &'a Ending,
    pub state: &'a UnifiedState,
    pub tasks: Option<&'a TaskList>,
    pub failure: Option<&'a (String, AgentRun)>,
    pub duration: Duration,
    pub cost_this_run: f64,
}

/// Render the report as Markdown.
pub(crate) fn render(input: &ReportInput<'_>) -> String {
    let mut out = String::new();
    let spec = input.state.specifications.get(input.name);
    let _ = writeln!(out, "# Workflow report: {}\n", input.name);
    if !input.description.is_empty() {
        let _ = writeln!(out, "{}\n", input.description);
    }
    let verdict = match input.ending {
        Ending::Completed => "**Completed.** Every task completed and validation passed.".to_owned(),
        Ending::Failed => "**Failed.** Some work did not complete; see below. Fix the cause, then run `qw workflow-continue NAME` (completed tasks are not run again) or `qw workflow-reset NAME`.".replace("NAME", input.name),
        Ending::Paused { reason, until } => format!(
            "**Paused** ({reason}){}. Run `qw workflow-continue {}` to resume.",
            until.as_ref().map(|u| format!(" until {u}")).unwrap_or_default(),
            input.name
        ),
        Ending::Interrupted(sig) => format!(
            "**Interrupted** by signal {sig}. Run `qw workflow-continue {}` to resume.",
            input.name
        ),
    };
    let _ = writeln!(out, "{verdict}\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| generated | {} |", chrono::Local::now().to_rfc3339());
    let _ = writeln!(
        out,
        "| this run | {:.1} s, ${:.4} |",
        input.duration.as_secs_f64(),
        input.cost_this_run
    );
    let agent = agent_of(input);
    let _ = writeln!(out, "| agent | {} |", agent.unwrap_or("unknown"));
    if let Some(spec) = spec {
        let _ = writeln!(out, "| phase | {} |", spec.current_phase);
        let _ = writeln!(out, "| progress | {:.0}% |", spec.progress_percentage);
        let _ = writeln!(out, "| total cost | ${:.4} |", spec.cost_usd);
    }
    if let Some((phase, run)) = input.failure {
        let _ = writeln!(
            out,
            "\n## Failure\n\nPhase `{phase}` ended `{}`: {}\n",
            run.outcome,
            one_line(&run.evidence)
        );
    }
    if agent == Some(AgentKind::Offline.as_str()) {
        offline_section(&mut out, input.tasks);
    }
    if let Some(spec) = spec {
        if !spec.completed_phases.is_empty() {
            let _ = writeln!(out, "\n## Phases\n");
            for p in &spec.completed_phases {
                let when = p
                    .completed_at
                    .as_ref()
                    .and_then(|t| t.as_datetime())
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                let _ = writeln!(out, "- {} — {when}", p.phase);
            }
        }
        let _ = writeln!(out, "\n## Tasks\n");
        let _ = writeln!(
            out,
            "| id | title | status | attempts | duration | cost | outcome / why |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        let order: Vec<String> = match input.tasks {
            Some(list) => list.leaves().iter().map(|t| t.id.clone()).collect(),
            None => spec.tasks.keys().cloned().collect(),
        };
        for id in order {
            let Some(t) = spec.tasks.get(&id) else {
                continue;
            };
            let why = match (&t.status, &t.error, &t.outcome) {
                (TaskStatus::Completed, _, _) => "succeeded".to_owned(),
                (_, Some(e), _) => one_line(e),
                (_, None, Some(o)) => o.clone(),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                cell(&t.id),
                cell(&t.description),
                t.status,
                t.attempts,
                t.duration_seconds
                    .map(|d| format!("{d:.1} s"))
                    .unwrap_or_default(),
                t.cost_usd.map(|c| format!("${c:.4}")).unwrap_or_default(),
                cell(&why)
            );
        }
    }
    out
}

/// The agent the workflow ran with, as saved in the spec's options.
fn agent_of<'a>(input: &'a ReportInput<'_>) -> Option<&'a str> {
    input
        .state
        .specifications
        .get(input.name)?
        .extra
        .get(OPTIONS_KEY)?
        .get("agent")?
        .as_str()
}

/// What the offline agent did, plainly: no code, template documents, and the checks its
/// tasks ran (a task passes only on its `_Verify:_` command).
fn offline_section(out: &mut String, tasks: Option<&TaskList>) {
    let _ = writeln!(
        out,
        "\n## What the offline agent did\n\n\
         **No code was written.** The offline agent is built into qw: it filled the \
         requirements, design and tasks documents from templates and the description, and \
         for each task it only ran the task's `_Verify:_` check (a task without one \
         fails). Run the workflow with `--agent claude` (or `--agent command`) to have the \
         tasks implemented.\n"
    );
    let leaves = tasks.map(TaskList::leaves).unwrap_or_default();
    if leaves.is_empty() {
        let _ = writeln!(out, "No task ran.");
        return;
    }
    let _ = writeln!(out, "The check each task ran (its `_Verify:_` command):\n");
    for t in leaves {
        match &t.verify {
            Some(cmd) => {
                let _ = writeln!(out, "- {}: `{}`", t.id, cmd.replace('`', "'"));
            }
            None => {
                let _ = writeln!(out, "- {}: no `_Verify:_` check (the task fails)", t.id);
            }
        }
    }
}

fn one_line(s: &str) -> String {
    let line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 300 {
        let cut: String = line.chars().take(297).collect();
        format!("{cut}...")
    } else {
        line
    }
}

fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Spec;

    fn input_for<'a>(
        state: &'a UnifiedState,
        tasks: Option<&'a TaskList>,
        ending: &'a Ending,
    ) -> ReportInput<'a> {
        ReportInput {
            name: "demo",
            description: "d",
            ending,
            state,
            tasks,
            failure: None,
            duration: Duration::from_secs(1),
            cost_this_run: 0.0,
        }
    }

    fn state_with_agent(agent: &str) -> UnifiedState {
        let mut state = UnifiedState::new();
        let mut spec = Spec {
            name: "demo".into(),
            ..Spec::default()
        };
        spec.extra
            .insert(OPTIONS_KEY.into(), serde_json::json!({ "agent": agent }));
        state.specifications.insert("demo".into(), spec);
        state
    }

    #[test]
    fn the_report_names_the_agent_and_an_offline_run_says_no_code_was_written() {
        let tasks = TaskList::parse(
            "- [ ] 1. A\n  - _Verify: `test -f x`_\n- [ ] 2. B\n",
        )
        .unwrap();
        let ending = Ending::Completed;
        for (agent, offline) in [("offline", true), ("claude", false), ("command", false)] {
            let state = state_with_agent(agent);
            let text = render(&input_for(&state, Some(&tasks), &ending));
            assert!(text.contains(&format!("| agent | {agent} |")), "{text}");
            assert_eq!(text.contains("**No code was written.**"), offline, "{text}");
            assert_eq!(text.contains("- 1: `test -f x`"), offline, "{text}");
            assert_eq!(
                text.contains("- 2: no `_Verify:_` check (the task fails)"),
                offline,
                "{text}"
            );
        }
        let unknown = render(&input_for(&UnifiedState::new(), None, &ending));
        assert!(unknown.contains("| agent | unknown |"), "{unknown}");
    }
}
