//! How a running workflow shows progress: a live view on a terminal (indicatif: an
//! overall bar and one line per running task), plain lines when stderr is not a
//! terminal, or one JSON object per line on stdout with `--json`. A reader of the
//! event stream: each [`Event`] becomes zero or more [`Line`]s.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::EventSink;
use crate::agent::events::Activity;
use crate::agent::outcome::Outcome;
use crate::agent::runs::Follow;
use crate::state::Phase;
use crate::workflow::WorkflowError;
use crate::workflow::events::{Event, EventKind, PhaseResult, Refused, StopReason, Summary, Unit};

/// One line of progress output: what `--json` prints as one object and a terminal as
/// one line of text. Its field names and values are a user-facing format (`workflow-auto
/// --json`), kept as they were when events were strings: add fields, never rename them.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Line<'a> {
    /// A phase started.
    PhaseStarted {
        /// The phase (`requirements_generation`, …).
        phase: &'a Phase,
    },
    /// A phase ended.
    PhaseFinished {
        /// The phase.
        phase: &'a Phase,
        /// `succeeded`, `skipped`, `incomplete` or the failing outcome.
        #[serde(serialize_with = "result_name")]
        outcome: PhaseResult<'a>,
        /// One line of detail.
        detail: &'a str,
    },
    /// The implementation phase knows its task count.
    TasksPlanned {
        /// Leaf tasks in tasks.md.
        total: usize,
        /// Already completed before this run.
        completed: usize,
    },
    /// An agent started on a task.
    TaskStarted {
        /// Task id.
        id: &'a str,
        /// Its title.
        title: &'a str,
        /// 1-based attempt.
        attempt: u32,
        /// The agent session this run continues (`--resume`); absent for a fresh run.
        #[serde(skip_serializing_if = "Option::is_none")]
        resumes: Option<&'a str>,
    },
    /// A task's attempt ended.
    TaskFinished {
        /// Task id.
        id: &'a str,
        /// Outcome name.
        #[serde(serialize_with = "outcome_name")]
        outcome: &'a Outcome,
        /// Which attempt.
        attempt: u32,
        /// Wall time of the attempt.
        duration_ms: u64,
        /// What the attempt cost.
        cost_usd: f64,
        /// Why, in one line.
        evidence: &'a str,
        /// Another attempt follows.
        will_retry: bool,
    },
    /// A task will not run because a dependency failed or work was stopped.
    TaskSkipped {
        /// Task id.
        id: &'a str,
        /// Why.
        reason: String,
    },
    /// Anything else worth a line.
    Note {
        /// The message.
        message: Cow<'a, str>,
    },
    /// The workflow ended.
    Finished {
        /// `completed`, `failed`, `paused` or `interrupted`.
        result: &'a str,
        /// Completed leaf tasks.
        completed: usize,
        /// All leaf tasks.
        total: usize,
        /// USD spent in this run.
        cost_usd: f64,
        /// The report file, if written.
        report: Option<String>,
        /// The agent that did the work (`claude`, `command`, `offline`).
        agent: &'a str,
        /// Completed tasks whose success came with warnings.
        with_warnings: usize,
    },
}

/// The lines an event shows as (most one, some none, a blocked set one per task).
pub(crate) fn lines<'a>(event: &'a Event<'_>) -> Vec<Line<'a>> {
    let note = |message: String| {
        vec![Line::Note {
            message: Cow::Owned(message),
        }]
    };
    match &event.kind {
        EventKind::RunStarted { .. } | EventKind::TaskListInvalid { .. } => Vec::new(),
        EventKind::SpecReady { steering: true } => Vec::new(),
        EventKind::SpecReady { steering: false } => note(
            "no steering documents in .claude/steering/ (run `qw init` to create templates); continuing without them".into(),
        ),
        EventKind::PhaseStarted { phase } => vec![Line::PhaseStarted { phase }],
        EventKind::PhaseFinished {
            phase,
            result,
            detail,
        } => vec![Line::PhaseFinished {
            phase,
            outcome: *result,
            detail,
        }],
        EventKind::TasksPlanned { leaves, completed } => vec![Line::TasksPlanned {
            total: leaves.len(),
            completed: completed.len(),
        }],
        EventKind::AdmissionWaiting { unit, why } => note(format!(
            "{}{}: waiting for admission: {why}",
            unit.label(),
            unit.task().map(|t| format!(" {}", t.id)).unwrap_or_default()
        )),
        EventKind::AttemptStarted {
            unit: Unit::Task(t),
            attempt,
            resumes,
            ..
        } => vec![Line::TaskStarted {
            id: &t.id,
            title: &t.title,
            attempt: *attempt,
            resumes: *resumes,
        }],
        EventKind::AttemptStarted { .. } => Vec::new(),
        EventKind::AttemptFinished {
            unit: Unit::Task(t),
            attempt,
            run,
            will_retry,
            ..
        } => vec![Line::TaskFinished {
            id: &t.id,
            outcome: &run.outcome,
            attempt: *attempt,
            duration_ms: run.duration_ms,
            cost_usd: run.cost_usd,
            evidence: &run.evidence,
            will_retry: *will_retry,
        }],
        EventKind::AttemptFinished {
            unit: Unit::Document(phase),
            attempt,
            run,
            will_retry,
            ..
        } => {
            if run.outcome.is_success() {
                return Vec::new();
            }
            note(format!(
                "{phase} attempt {attempt}: {} — {}{}",
                run.outcome,
                run.evidence,
                if *will_retry { " (retrying)" } else { "" }
            ))
        }
        EventKind::AttemptNotStarted {
            unit,
            attempt,
            refused,
            run,
        } => match (unit, refused) {
            (Unit::Task(t), Refused::CostCeiling | Refused::Admission) => vec![Line::TaskSkipped {
                id: &t.id,
                reason: format!("{}: {}", run.outcome, run.evidence),
            }],
            (Unit::Document(phase), Refused::CostCeiling) => {
                note(format!("{phase}: {}", run.evidence))
            }
            (Unit::Task(t), Refused::Worktree) => vec![Line::TaskFinished {
                id: &t.id,
                outcome: &run.outcome,
                attempt: *attempt,
                duration_ms: 0,
                cost_usd: 0.0,
                evidence: &run.evidence,
                will_retry: false,
            }],
            (Unit::Document(_), Refused::Admission | Refused::Worktree) => Vec::new(),
        },
        EventKind::TasksBlocked { blocked } => blocked
            .iter()
            .map(|b| Line::TaskSkipped {
                id: &b.id,
                reason: format!("depends on {}, which did not complete", b.because),
            })
            .collect(),
        EventKind::Stopping {
            reason: StopReason::FailFast { .. },
            cancels_running: false,
        } => note("--fail-fast: no new task starts; running ones finish".into()),
        // Under a batch scheduler the jobs in flight are cancelled (`scancel`): say so.
        EventKind::Stopping {
            reason: StopReason::FailFast { .. },
            cancels_running: true,
        } => note("--fail-fast: no new task starts; the running jobs are cancelled".into()),
        EventKind::Stopping {
            reason: reason @ StopReason::CostCeiling { .. },
            cancels_running: true,
        } => note(format!(
            "cost ceiling: no new task starts; the running jobs are cancelled ({reason}; the workflow resumes once it is raised)"
        )),
        EventKind::Stopping { .. }
        | EventKind::ProcessesEnded { .. }
        | EventKind::MergePending { .. } => Vec::new(),
        EventKind::Repaired { message, .. } | EventKind::TickedByHand { message, .. } => {
            vec![Line::Note {
                message: Cow::Borrowed(message),
            }]
        }
        EventKind::Note { message } => vec![Line::Note {
            message: Cow::Borrowed(message),
        }],
        EventKind::Finished { summary } => vec![finished(summary)],
    }
}

fn result_name<S: serde::Serializer>(r: &PhaseResult<'_>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.as_str())
}

fn outcome_name<S: serde::Serializer>(o: &&Outcome, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(o.as_str())
}

fn finished(summary: &Summary) -> Line<'_> {
    Line::Finished {
        result: summary.ending.as_str(),
        completed: summary.completed,
        total: summary.total,
        cost_usd: summary.cost_usd,
        report: summary.report.as_ref().map(|p| p.display().to_string()),
        agent: summary.agent.as_str(),
        with_warnings: summary.with_warnings,
    }
}

/// The line printed on stdout when a workflow ends (outside `--json`).
pub(crate) fn finished_line(summary: &Summary) -> String {
    plain_line(&finished(summary))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Live,
    Plain,
    Json,
    Quiet,
}

/// A running task's line in the live view and the event stream that feeds it.
struct Watched {
    bar: ProgressBar,
    /// `ID TITLE (attempt N)`.
    base: String,
    follow: Follow,
}

/// The running tasks the live view follows, and the thread's stop flag.
#[derive(Default)]
struct Watch {
    tasks: Mutex<HashMap<String, Watched>>,
    stop: AtomicBool,
}

/// How often the live view reads running tasks' event streams.
const WATCH_EVERY: Duration = Duration::from_millis(500);

impl Watch {
    /// Read what each running task's agent did since the last look and show its last
    /// tool call on the task's line.
    fn refresh(&self) {
        let Ok(mut tasks) = self.tasks.lock() else {
            return;
        };
        for w in tasks.values_mut() {
            // An unreadable stream only costs the detail on the line.
            if matches!(w.follow.poll(), Ok(ref r) if !r.is_empty())
                && let Some(note) = activity_note(w.follow.activity())
            {
                w.bar.set_message(format!("{} · {note}", w.base));
            }
        }
    }
}

/// What a running agent is doing, for its progress line: the turn and the last tool call
/// with its target (`turn 3 · → Write src/lib.rs`), or an API retry it waits on.
pub(crate) fn activity_note(a: &Activity) -> Option<String> {
    if let Some(retry) = &a.retrying {
        return Some(format!("API retry: {}", crate::fmt::one_line(retry, 60)));
    }
    let tool = a.last_tool.as_ref()?;
    let mut note = format!("turn {} · → {}", a.turns.max(1), tool.name);
    if let Some(target) = &tool.target {
        note.push(' ');
        note.push_str(&crate::fmt::one_line(target, 60));
    }
    Some(note)
}

/// Renders events. Shared by the scheduler's threads.
pub(crate) struct Progress {
    mode: Mode,
    multi: Option<MultiProgress>,
    overall: Mutex<Option<ProgressBar>>,
    running: Mutex<HashMap<String, ProgressBar>>,
    /// Live mode: running tasks' event streams, read by a thread of their own.
    watch: Arc<Watch>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("mode", &self.mode)
            .finish()
    }
}

impl Progress {
    /// Choose the rendering: JSON lines, quiet, a live view on a terminal, else plain.
    pub(crate) fn new(json: bool, quiet: bool) -> Progress {
        let mode = if json {
            Mode::Json
        } else if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Live
        } else {
            Mode::Plain
        };
        let multi = (mode == Mode::Live)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let watch = Arc::new(Watch::default());
        if mode == Mode::Live {
            let watch = Arc::clone(&watch);
            // Detached: it ends at the next look after `finish` (or drop) sets the flag.
            let _ = std::thread::Builder::new()
                .name("qw-progress-watch".into())
                .spawn(move || {
                    while !watch.stop.load(Ordering::Relaxed) {
                        std::thread::sleep(WATCH_EVERY);
                        watch.refresh();
                    }
                });
        }
        Progress {
            mode,
            multi,
            overall: Mutex::new(None),
            running: Mutex::new(HashMap::new()),
            watch,
        }
    }

    /// Live mode: follow a task's event stream from its start to show its last tool call.
    fn watch_task(&self, event: &Event<'_>) {
        let EventKind::AttemptStarted {
            unit: Unit::Task(t),
            run_dir,
            ..
        } = &event.kind
        else {
            return;
        };
        let bar = self
            .running
            .lock()
            .ok()
            .and_then(|r| r.get(t.id.as_str()).cloned());
        if let (Some(bar), Ok(mut tasks)) = (bar, self.watch.tasks.lock()) {
            tasks.insert(
                t.id.clone(),
                Watched {
                    base: bar.message(),
                    bar,
                    follow: Follow::new(run_dir.join("events.jsonl")),
                },
            );
        }
    }

    /// Show one line.
    pub(crate) fn show(&self, line: &Line<'_>) {
        // Outside JSON mode the final summary is data: the CLI prints it on stdout.
        if self.mode != Mode::Json && matches!(line, Line::Finished { .. }) {
            return;
        }
        match self.mode {
            Mode::Quiet => {}
            Mode::Json => {
                if let Ok(text) = serde_json::to_string(line) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{text}");
                    let _ = out.flush();
                }
            }
            Mode::Plain => crate::diag!("{}", plain_line(line)),
            Mode::Live => self.live(line),
        }
    }

    fn live(&self, line: &Line<'_>) {
        let Some(multi) = &self.multi else { return };
        match line {
            Line::TasksPlanned { total, completed } => self.plan(multi, *total, *completed),
            Line::TaskStarted { id, .. } => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {elapsed:>4} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(task_line(line));
                bar.enable_steady_tick(Duration::from_millis(120));
                if let Ok(mut running) = self.running.lock() {
                    running.insert((*id).to_owned(), bar);
                }
            }
            Line::TaskFinished { id, outcome, .. } => {
                if let Ok(mut tasks) = self.watch.tasks.lock() {
                    tasks.remove(*id);
                }
                if let Ok(mut running) = self.running.lock()
                    && let Some(bar) = running.remove(*id)
                {
                    bar.finish_and_clear();
                    multi.remove(&bar);
                }
                let _ = multi.println(plain_line(line));
                if outcome.is_success()
                    && let Ok(o) = self.overall.lock()
                    && let Some(o) = o.as_ref()
                {
                    o.inc(1);
                }
            }
            _ => {
                let _ = multi.println(plain_line(line));
            }
        }
    }

    /// Start the overall bar.
    fn plan(&self, multi: &MultiProgress, total: usize, completed: usize) {
        let bar = multi.add(ProgressBar::new(total as u64));
        bar.set_style(
            ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} tasks  {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(completed as u64);
        if let Ok(mut o) = self.overall.lock() {
            *o = Some(bar);
        }
    }

    /// Remove the live view (before the final summary is printed).
    pub(crate) fn finish(&self) {
        self.watch.stop.store(true, Ordering::Relaxed);
        if let Ok(o) = self.overall.lock()
            && let Some(o) = o.as_ref()
        {
            o.finish_and_clear();
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }
}

/// `ID TITLE`, with the attempt and the session it resumes when there is one.
fn task_line(line: &Line<'_>) -> String {
    let Line::TaskStarted {
        id,
        title,
        attempt,
        resumes,
    } = line
    else {
        return String::new();
    };
    let mut text = format!("{id} {}", crate::fmt::escaped_line(title));
    match (*attempt > 1, resumes) {
        (true, Some(s)) => text.push_str(&format!(" (attempt {attempt}, resuming session {s})")),
        (true, None) => text.push_str(&format!(" (attempt {attempt})")),
        (false, Some(s)) => text.push_str(&format!(" (resuming session {s})")),
        (false, None) => {}
    }
    text
}

/// The text rendering of a line: one line, whatever the agent or tasks.md put in the
/// text it quotes (titles, evidence, notes) — every control character shown escaped
/// ([`crate::fmt::escaped_line`]), so no escape sequence or line break reaches the
/// terminal raw.
pub(crate) fn plain_line(line: &Line<'_>) -> String {
    crate::fmt::escaped_line(&unescaped_line(line)).into_owned()
}

/// [`plain_line`] before its control characters are escaped.
fn unescaped_line(line: &Line<'_>) -> String {
    match line {
        Line::PhaseStarted { phase } => format!("==> {phase}"),
        Line::PhaseFinished {
            phase,
            outcome,
            detail,
        } => {
            let outcome = outcome.as_str();
            if detail.is_empty() {
                format!("    {phase}: {outcome}")
            } else {
                format!("    {phase}: {outcome} — {detail}")
            }
        }
        Line::TasksPlanned { total, completed } => {
            format!("    {total} task(s), {completed} already completed")
        }
        Line::TaskStarted { .. } => format!("  > {}", task_line(line)),
        Line::TaskFinished {
            id,
            outcome,
            attempt,
            duration_ms,
            cost_usd,
            evidence,
            will_retry,
        } => {
            let secs = *duration_ms as f64 / 1000.0;
            let mark = match outcome {
                Outcome::Succeeded => "ok",
                Outcome::KilledByUser { .. } => "stopped",
                _ => "FAILED",
            };
            let mut line = format!("  {mark} {id} {outcome} in {secs:.1}s");
            if *cost_usd > 0.0 {
                line.push_str(&format!(" (${cost_usd:.4})"));
            }
            if outcome.is_success() {
                let n = evidence.matches("; warning: ").count();
                if n > 0 {
                    line.push_str(&format!(
                        ", with {n} warning(s) (above): not all it did may be merged"
                    ));
                }
            } else {
                line.push_str(&format!(" [attempt {attempt}] {evidence}"));
                if *will_retry {
                    line.push_str(" — retrying");
                }
            }
            line
        }
        Line::TaskSkipped { id, reason } => format!("  -- {id} skipped: {reason}"),
        Line::Note { message } => format!("    {message}"),
        Line::Finished {
            result,
            completed,
            total,
            cost_usd,
            report,
            agent,
            with_warnings,
        } => {
            let mut line = format!(
                "workflow {result}: {completed}/{total} tasks completed by the {agent} agent"
            );
            if *with_warnings > 0 {
                line.push_str(&format!(
                    " ({with_warnings} with warnings: not all they did was merged; see the report)"
                ));
            }
            if *agent == crate::workflow::AgentKind::Offline.as_str() {
                line.push_str(" (templates and checks only, no code written)");
            }
            if *cost_usd > 0.0 {
                line.push_str(&format!(", ${cost_usd:.4} spent"));
            }
            if let Some(r) = report {
                line.push_str(&format!("; report: {r}"));
            }
            line
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.watch.stop.store(true, Ordering::Relaxed);
    }
}

impl EventSink for Progress {
    fn event(&self, event: &Event<'_>) -> Result<(), WorkflowError> {
        for line in lines(event) {
            self.show(&line);
        }
        if self.mode == Mode::Live {
            self.watch_task(event);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::events::LastTool;

    #[test]
    fn a_running_task_shows_its_last_tool_call_or_its_api_retry() {
        let mut a = Activity::default();
        assert_eq!(activity_note(&a), None, "nothing done yet");
        a.turns = 3;
        a.last_tool = Some(LastTool {
            name: "Write".into(),
            target: Some("src/lib.rs".into()),
        });
        assert_eq!(
            activity_note(&a).as_deref(),
            Some("turn 3 · → Write src/lib.rs")
        );
        a.retrying = Some("529 overloaded, attempt 2 of 10".into());
        assert_eq!(
            activity_note(&a).as_deref(),
            Some("API retry: 529 overloaded, attempt 2 of 10")
        );
    }

    #[test]
    fn a_task_line_says_which_session_it_resumes() {
        let line = Line::TaskStarted {
            id: "2.1",
            title: "Parse",
            attempt: 2,
            resumes: Some("s-1"),
        };
        assert_eq!(
            plain_line(&line),
            "  > 2.1 Parse (attempt 2, resuming session s-1)"
        );
        let json = serde_json::to_value(&line).unwrap();
        assert_eq!(json["resumes"], "s-1");
        let fresh = Line::TaskStarted {
            id: "1",
            title: "T",
            attempt: 1,
            resumes: None,
        };
        assert!(
            serde_json::to_value(&fresh)
                .unwrap()
                .get("resumes")
                .is_none()
        );
    }
}
