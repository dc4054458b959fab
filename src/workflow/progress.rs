//! How a running workflow reports progress: a live view on a terminal (indicatif: an
//! overall bar and one line per running task), plain lines when stderr is not a
//! terminal, or one JSON object per line on stdout with `--json`.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// Something that happened in a workflow.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A phase started.
    PhaseStarted {
        /// The phase (`requirements_generation`, …).
        phase: String,
    },
    /// A phase ended.
    PhaseFinished {
        /// The phase.
        phase: String,
        /// `succeeded`, `skipped` or the failing outcome.
        outcome: String,
        /// One line of detail.
        detail: String,
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
        id: String,
        /// Its title.
        title: String,
        /// 1-based attempt.
        attempt: u32,
    },
    /// A task's attempt ended.
    TaskFinished {
        /// Task id.
        id: String,
        /// Outcome name.
        outcome: String,
        /// Which attempt.
        attempt: u32,
        /// Wall time of the attempt.
        duration_ms: u64,
        /// What the attempt cost.
        cost_usd: f64,
        /// Why, in one line.
        evidence: String,
        /// Another attempt follows.
        will_retry: bool,
    },
    /// A task will not run because a dependency failed or work was stopped.
    TaskSkipped {
        /// Task id.
        id: String,
        /// Why.
        reason: String,
    },
    /// Anything else worth a line.
    Note {
        /// The message.
        message: String,
    },
    /// The workflow ended.
    Finished {
        /// `completed`, `failed`, `paused` or `interrupted`.
        result: String,
        /// Completed leaf tasks.
        completed: usize,
        /// All leaf tasks.
        total: usize,
        /// USD spent in this run.
        cost_usd: f64,
        /// The report file, if written.
        report: Option<String>,
        /// The agent that did the work (`claude`, `command`, `offline`).
        agent: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Live,
    Plain,
    Json,
    Quiet,
}

/// Renders [`Event`]s. Shared by the scheduler's threads.
pub struct Progress {
    mode: Mode,
    multi: Option<MultiProgress>,
    overall: Mutex<Option<ProgressBar>>,
    running: Mutex<HashMap<String, ProgressBar>>,
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
    pub fn new(json: bool, quiet: bool) -> Progress {
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
        Progress {
            mode,
            multi,
            overall: Mutex::new(None),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Report one event.
    pub fn emit(&self, event: Event) {
        // Outside JSON mode the final summary is data: the CLI prints it on stdout.
        if self.mode != Mode::Json && matches!(event, Event::Finished { .. }) {
            return;
        }
        match self.mode {
            Mode::Quiet => {}
            Mode::Json => {
                if let Ok(line) = serde_json::to_string(&event) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
            }
            Mode::Plain => {
                if let Some(line) = plain_line(&event) {
                    crate::diag!("{line}");
                }
            }
            Mode::Live => self.live(&event),
        }
    }

    fn live(&self, event: &Event) {
        let Some(multi) = &self.multi else { return };
        match event {
            Event::TasksPlanned { .. } => {}
            Event::TaskStarted { id, title, attempt } => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {elapsed:>4} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                let again = if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                bar.set_message(format!("{id} {title}{again}"));
                bar.enable_steady_tick(Duration::from_millis(120));
                if let Ok(mut running) = self.running.lock() {
                    running.insert(id.clone(), bar);
                }
            }
            Event::TaskFinished { id, .. } => {
                if let Ok(mut running) = self.running.lock()
                    && let Some(bar) = running.remove(id)
                {
                    bar.finish_and_clear();
                    multi.remove(&bar);
                }
                if let Some(line) = plain_line(event) {
                    let _ = multi.println(line);
                }
                if matches!(event, Event::TaskFinished { outcome, .. } if outcome == "succeeded")
                    && let Ok(o) = self.overall.lock()
                    && let Some(o) = o.as_ref()
                {
                    o.inc(1);
                }
            }
            _ => {
                if let Some(line) = plain_line(event) {
                    let _ = multi.println(line);
                }
            }
        }
    }

    /// Start the overall bar (live mode only).
    pub fn plan(&self, total: usize, completed: usize) {
        self.emit(Event::TasksPlanned { total, completed });
        if let Some(multi) = &self.multi {
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
    }

    /// Remove the live view (before the final summary is printed).
    pub fn finish(&self) {
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

/// The one-line rendering of an event (None: not worth a line).
pub fn plain_line(event: &Event) -> Option<String> {
    Some(match event {
        Event::PhaseStarted { phase } => format!("==> {phase}"),
        Event::PhaseFinished {
            phase,
            outcome,
            detail,
        } => {
            if detail.is_empty() {
                format!("    {phase}: {outcome}")
            } else {
                format!("    {phase}: {outcome} — {detail}")
            }
        }
        Event::TasksPlanned { total, completed } => {
            format!("    {total} task(s), {completed} already completed")
        }
        Event::TaskStarted { id, title, attempt } => {
            if *attempt > 1 {
                format!("  > {id} {title} (attempt {attempt})")
            } else {
                format!("  > {id} {title}")
            }
        }
        Event::TaskFinished {
            id,
            outcome,
            attempt,
            duration_ms,
            cost_usd,
            evidence,
            will_retry,
        } => {
            let secs = *duration_ms as f64 / 1000.0;
            let mark = match outcome.as_str() {
                "succeeded" => "ok",
                "killed_by_user" => "stopped",
                _ => "FAILED",
            };
            let mut line = format!("  {mark} {id} {outcome} in {secs:.1}s");
            if *cost_usd > 0.0 {
                line.push_str(&format!(" (${cost_usd:.4})"));
            }
            if outcome != "succeeded" {
                line.push_str(&format!(" [attempt {attempt}] {evidence}"));
                if *will_retry {
                    line.push_str(" — retrying");
                }
            }
            line
        }
        Event::TaskSkipped { id, reason } => format!("  -- {id} skipped: {reason}"),
        Event::Note { message } => format!("    {message}"),
        Event::Finished {
            result,
            completed,
            total,
            cost_usd,
            report,
            agent,
        } => {
            let mut line = format!(
                "workflow {result}: {completed}/{total} tasks completed by the {agent} agent"
            );
            if agent == super::AgentKind::Offline.as_str() {
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
    })
}
