//! The completion report, `.claude/specs/NAME/report.md`: how the workflow ended, each
//! task with its attempts, duration, cost and outcome, and why anything failed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::events::Ending;
use super::{AgentKind, Options};
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
    /// Dev mode `enhanced_error_reporting`: `.claude/runs/`, to give each failed task its
    /// run folder and the tail of its stderr.
    pub runs_dir: Option<PathBuf>,
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
        Ending::Completed => match completed_with_warnings(spec) {
            0 => "**Completed.** Every task completed and validation passed.".to_owned(),
            n => format!(
                "**Completed, with warnings.** Every task completed and validation passed, but {n} task(s) completed with warnings (see Warnings below): not everything their agents did is merged."
            ),
        },
        Ending::Failed => "**Failed.** Some work did not complete; see below. Fix the cause, then run `qw workflow-continue NAME` (completed tasks are not run again) or `qw workflow-reset NAME`.".replace("NAME", input.name),
        Ending::Paused(reason) => format!(
            "**Paused** ({reason}){}. Run `{}`{} to resume.",
            reason.resets_at().map(|u| format!(" until {u}")).unwrap_or_default(),
            crate::worktree::continue_cmd(input.name),
            if matches!(reason, super::events::StopReason::CostCeiling { .. }) {
                " after raising the limit"
            } else {
                ""
            }
        ),
        Ending::Interrupted(sig) => format!(
            "**Interrupted** by signal {sig}. Run `{}` to resume.",
            crate::worktree::continue_cmd(input.name)
        ),
        Ending::NotAdmitted(n) => format!(
            "**Incomplete.** Nothing failed, but {n} task(s) were not admitted: the machine stayed busy past `resource_limits.acquire_timeout_s` (see below). Run `{}` to run them.",
            crate::worktree::continue_cmd(input.name)
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
        for id in &order {
            let Some(t) = spec.tasks.get(id) else {
                continue;
            };
            let why = match (&t.status, &t.error, &t.outcome) {
                _ if let Some(label) = crate::workflow::reconcile::hand_label(t) => {
                    label.to_owned()
                }
                (TaskStatus::Completed, _, _) => {
                    match warnings(t.evidence.as_deref().unwrap_or_default()).len() {
                        0 => "succeeded".to_owned(),
                        n => format!("succeeded, with {n} warning(s) (below)"),
                    }
                }
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
        warnings_section(&mut out, spec, &order);
        if let Some(runs) = &input.runs_dir {
            failed_details(&mut out, spec, runs);
        }
    }
    out
}

/// The warnings a task's evidence holds (each `; warning: …` part, up to a following
/// `; note: …`): what went wrong beside a success (a repository its agent nested that
/// the merge left out, the shared stash).
fn warnings(evidence: &str) -> Vec<&str> {
    evidence
        .split("; warning: ")
        .skip(1)
        .map(|w| w.split("; note: ").next().unwrap_or(w).trim())
        .filter(|w| !w.is_empty())
        .collect()
}

/// How many completed tasks of the spec hold warnings.
pub(crate) fn completed_with_warnings(spec: Option<&crate::state::Spec>) -> usize {
    spec.map_or(0, |s| {
        s.tasks
            .values()
            .filter(|t| t.status == TaskStatus::Completed)
            .filter(|t| !warnings(t.evidence.as_deref().unwrap_or_default()).is_empty())
            .count()
    })
}

/// `## Warnings`: each completed task's warnings in full (a cell would cut the command
/// a warning names).
fn warnings_section(out: &mut String, spec: &crate::state::Spec, order: &[String]) {
    let mut first = true;
    for id in order {
        let Some(t) = spec.tasks.get(id) else {
            continue;
        };
        if t.status != TaskStatus::Completed {
            continue;
        }
        for w in warnings(t.evidence.as_deref().unwrap_or_default()) {
            if first {
                let _ = writeln!(out, "\n## Warnings\n");
                first = false;
            }
            let _ = writeln!(
                out,
                "- task {id}: {}",
                w.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
    }
}

/// Lines of a failed run's stderr shown with `enhanced_error_reporting`.
const STDERR_TAIL_LINES: usize = 20;

/// `enhanced_error_reporting`: each task that did not complete, with its whole error, its
/// run folder and the last lines of the agent's stderr.
fn failed_details(out: &mut String, spec: &crate::state::Spec, runs: &Path) {
    let failed: Vec<_> = spec
        .tasks
        .values()
        .filter(|t| matches!(t.status, TaskStatus::Failed | TaskStatus::Blocked))
        .collect();
    if failed.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n## Failed tasks in detail (enhanced_error_reporting)\n"
    );
    for t in failed {
        let _ = writeln!(
            out,
            "### {} — {}{}\n",
            t.id,
            t.status,
            t.outcome
                .as_deref()
                .map(|o| format!(" (`{o}`)"))
                .unwrap_or_default()
        );
        if let Some(e) = &t.error {
            let _ = writeln!(out, "Error: {}\n", e.trim());
        }
        let Some(run_id) = &t.run_id else {
            let _ = writeln!(out, "No run was recorded for this task.\n");
            continue;
        };
        let dir = runs.join(run_id);
        let _ = writeln!(out, "Run folder: `{}`\n", dir.display());
        let stderr = dir.join("stderr.log");
        // Only the end is shown, so only the end is read (and never from a FIFO).
        let read = crate::fs::open_regular(&stderr)
            .and_then(|_| crate::fs::read_tail_regular(&stderr, 64 * 1024))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        match read {
            Ok(text) if !text.trim().is_empty() => {
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..];
                let _ = writeln!(
                    out,
                    "Last {} line(s) of `stderr.log`:\n\n```text\n{}\n```\n",
                    tail.len(),
                    tail.join("\n").replace("```", "` ` `")
                );
            }
            Ok(_) => {
                let _ = writeln!(out, "`stderr.log` is empty.\n");
            }
            Err(e) => {
                let _ = writeln!(out, "`stderr.log` cannot be read: {e}\n");
            }
        }
    }
}

/// The agent the workflow ran with, as saved in the spec's options.
fn agent_of(input: &ReportInput<'_>) -> Option<&'static str> {
    let saved = input
        .state
        .specifications
        .get(input.name)?
        .workflow_options
        .as_ref()?;
    Some(Options::from_saved(saved).ok()?.agent.as_str())
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

/// `s` folded to one line, its control characters (escape sequences an agent or
/// tasks.md put there) shown escaped, as on the terminal, cut at 300 characters.
fn one_line(s: &str) -> String {
    let line = crate::fmt::escaped_line(&crate::fmt::fold_whitespace(s)).into_owned();
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
            runs_dir: None,
        }
    }

    fn state_with_agent(agent: AgentKind) -> UnifiedState {
        let mut state = UnifiedState::new();
        let mut spec = Spec {
            name: "demo".into(),
            ..Spec::default()
        };
        let options = Options {
            agent,
            ..Options::default()
        };
        spec.workflow_options = Some(options.saved().unwrap());
        state.specifications.insert("demo".into(), spec);
        state
    }

    #[test]
    fn the_report_names_the_agent_and_an_offline_run_says_no_code_was_written() {
        let tasks = TaskList::parse("- [ ] 1. A\n  - _Verify: `test -f x`_\n- [ ] 2. B\n").unwrap();
        let ending = Ending::Completed;
        for (agent, offline) in [
            (AgentKind::Offline, true),
            (AgentKind::Claude, false),
            (AgentKind::Command, false),
        ] {
            let state = state_with_agent(agent);
            let text = render(&input_for(&state, Some(&tasks), &ending));
            let agent = agent.as_str();
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

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod enhanced_tests {
    use super::*;
    use crate::state::{Spec, Task};

    #[test]
    fn enhanced_error_reporting_adds_each_failed_tasks_run_folder_and_stderr_tail() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("r1");
        std::fs::create_dir_all(&run).unwrap();
        let stderr: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        std::fs::write(run.join("stderr.log"), stderr).unwrap();
        let mut state = UnifiedState::new();
        let mut spec = Spec {
            name: "demo".into(),
            ..Spec::default()
        };
        for (id, status, run_id) in [
            ("1", TaskStatus::Failed, Some("r1")),
            ("2", TaskStatus::Completed, None),
            ("3", TaskStatus::Blocked, None),
        ] {
            spec.tasks.insert(
                id.into(),
                Task {
                    id: id.into(),
                    status,
                    error: Some(format!("boom {id}")),
                    run_id: run_id.map(Into::into),
                    ..Task::default()
                },
            );
        }
        state.specifications.insert("demo".into(), spec);
        let ending = Ending::Failed;
        let mut input = ReportInput {
            name: "demo",
            description: "",
            ending: &ending,
            state: &state,
            tasks: None,
            failure: None,
            duration: Duration::from_secs(1),
            cost_this_run: 0.0,
            runs_dir: None,
        };
        let plain = render(&input);
        assert!(!plain.contains("in detail"), "{plain}");
        input.runs_dir = Some(dir.path().to_path_buf());
        let text = render(&input);
        assert!(text.contains("### 1 — failed"), "{text}");
        assert!(
            text.contains(&format!("Run folder: `{}`", run.display())),
            "{text}"
        );
        assert!(text.contains("line 30\n```"), "{text}");
        assert!(
            text.contains("line 11\n") && !text.contains("line 10\n"),
            "{text}"
        );
        assert!(text.contains("### 3 — blocked"), "{text}");
        assert!(text.contains("No run was recorded"), "{text}");
        assert!(!text.contains("### 2"), "{text}");
    }
}
