//! The completion report, `.claude/specs/NAME/report.md`: how the workflow ended, each
//! task with its attempts, duration, cost and outcome, and why anything failed.

use std::fmt::Write as _;
use std::time::Duration;

use super::events::Ending;
use crate::agent::outcome::AgentRun;
use crate::spec::tasks::TaskList;
use crate::state::{Phase, TaskStatus, UnifiedState};

/// What the report is made from.
pub(crate) struct ReportInput<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub ending: &'a Ending,
    pub state: &'a UnifiedState,
    pub tasks: Option<&'a TaskList>,
    pub failure: Option<&'a (Phase, AgentRun)>,
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
        Ending::Paused(reason) => format!(
            "**Paused** ({reason}){}. Run `qw workflow-continue {}` to resume.",
            reason.resets_at().map(|u| format!(" until {u}")).unwrap_or_default(),
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
