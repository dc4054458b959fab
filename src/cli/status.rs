//! `qw status`: every spec's phase, tasks, progress, cost and last error, what each
//! running task's agent is doing, plus project-wide figures. The numbers come from
//! [`crate::workflow::status`] (the same read model the dashboard shows); this file only
//! loads the state once, reads the running tasks' event streams, and formats.

use std::fmt::Write as _;
use std::io::Write as _;

use clap::Args;

use super::{CliError, CmdResult, Ctx};
use crate::fmt::{duration, local_time, one_line, tokens, usd};
use crate::project::Project;
use crate::state::{StateStore, UnifiedState};
use crate::workflow::status::{
    self, Activities, Inputs, LastError, Overview, PhaseTiming, RunningTask, SpecStatus, Timings,
};

/// Arguments of `qw status`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Reads .claude/unified_state.json (a corrupt file is quarantined and the newest valid backup
restored, with a warning). Exit 0 whatever the specs' state; 1 only when the state cannot
be read. Running tasks show what their agent is doing, read from the run's event stream
(.claude/runs/RUN/events.jsonl): turns, the last tool call and its target, time since the
last event, tokens and cost so far. With dev mode `performance_profiling` on, per-phase
timings and per-task durations are included; with `state_monitoring` on, the state file's
size, last update, last writer (the state lock's holder line) and backups.

Examples:
  qw status
  qw status --json | jq '.specs[] | {name, phase, progress_percentage}'
  qw status --json | jq '.specs[].running_tasks[] | {id, turns, last_tool}'")]
pub struct StatusArgs {}

/// Run `qw status`.
pub(crate) fn run(ctx: &Ctx, _args: StatusArgs) -> CmdResult {
    let state = StateStore::new(&ctx.project).load()?;
    let dev = &ctx.settings()?.development_mode;
    let profiling = dev.performance_profiling();
    let activity = activities(&ctx.project, &state);
    let mut overview = status::overview(
        &state,
        &Inputs {
            now: chrono::Local::now(),
            profiling,
            activity: &activity,
        },
    );
    for s in &mut overview.specs {
        if let Some(step) = status::running_step(&ctx.project, &s.name) {
            s.next_step = Some(step);
        }
    }
    let health = dev
        .state_monitoring()
        .then(|| state_health(&ctx.project, &state));
    if ctx.global.json {
        let mut value = serde_json::to_value(&overview)
            .map_err(|e| CliError::failed(format!("cannot serialize the status: {e}")))?;
        if let Some(h) = &health {
            value["state_file"] = serde_json::to_value(h)
                .map_err(|e| CliError::failed(format!("cannot serialize the status: {e}")))?;
        }
        let text = serde_json::to_string(&value)
            .map_err(|e| CliError::failed(format!("cannot serialize the status: {e}")))?;
        // Counts beyond u64 (kept from the original's files) print as the bare number.
        let mut text = crate::jsontext::untag(text);
        text.push('\n');
        write_stdout(&text)?;
        return Ok(0);
    }
    if overview.specs.is_empty() {
        write_stdout(&format!(
            "no specs in `{}`\n",
            ctx.project.state_file().display()
        ))?;
        if !ctx.global.quiet {
            crate::diag!(
                "hint: start one with `qw workflow-auto NAME \"DESCRIPTION\"` or `qw spec-create NAME \"DESCRIPTION\"`"
            );
        }
        if let Some(h) = &health {
            write_stdout(&format!("{}\n", health_line(h)))?;
        }
        return Ok(0);
    }
    let mut text = render(&overview);
    if let Some(h) = &health {
        text.push_str(&health_line(h));
        text.push('\n');
    }
    write_stdout(&text)?;
    Ok(0)
}

/// The activity of every running task's run so far, read once from its event stream.
pub(crate) fn activities(project: &Project, state: &UnifiedState) -> Activities {
    status::running_run_ids(state)
        .into_iter()
        .filter_map(|id| {
            let a = crate::agent::runs::read_activity(project, &id)?;
            Some((id, a))
        })
        .collect()
}

/// What `state_monitoring` shows about `.claude/unified_state.json`.
#[derive(Debug, serde::Serialize)]
struct StateHealth {
    path: std::path::PathBuf,
    /// Size in bytes (`None`: no state file yet).
    size: Option<u64>,
    /// `session.last_updated`.
    last_updated: Option<String>,
    /// The state lock file's line naming its last holder.
    last_writer: Option<String>,
    /// Backups in `.claude/backups/state/`.
    backups: usize,
    /// The newest of them.
    newest_backup: Option<String>,
}

fn state_health(project: &Project, state: &UnifiedState) -> StateHealth {
    let path = project.state_file();
    let size = crate::fs::metadata(&path).ok().map(|m| m.len());
    let last_writer = crate::fs::read_regular_text(&project.state_lock_file(), 4096)
        .ok()
        .map(|t| one_line(&t, 200))
        .filter(|t| !t.is_empty());
    let backups = crate::state::backup::list(project).unwrap_or_default();
    StateHealth {
        path,
        size,
        last_updated: state.session.last_updated.as_ref().map(local_time),
        last_writer,
        backups: backups.len(),
        newest_backup: backups.first().map(|b| b.name.clone()),
    }
}

/// `state: `/p/.claude/unified_state.json` 3822 bytes, updated …; last writer: …; 4 backup(s), newest `x``
fn health_line(h: &StateHealth) -> String {
    let mut line = format!("state: `{}`", h.path.display());
    match h.size {
        Some(n) => {
            let _ = write!(line, " {n} bytes");
        }
        None => line.push_str(" not written yet"),
    }
    if let Some(t) = &h.last_updated {
        let _ = write!(line, ", updated {t}");
    }
    if let Some(w) = &h.last_writer {
        let _ = write!(line, "; last writer: {w}");
    }
    let _ = write!(line, "; {} backup(s)", h.backups);
    if let Some(n) = &h.newest_backup {
        let _ = write!(line, ", newest `{n}`");
    }
    line
}

/// The human table and notes.
fn render(o: &Overview) -> String {
    let header = [
        "SPEC", "PHASE", "DONE", "PROGRESS", "FAILED", "BLOCKED", "RUNNING", "COST", "TOKENS",
    ];
    let rows: Vec<[String; 9]> = o
        .specs
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                match &s.paused_until {
                    Some(until) => format!("{} (paused until {until})", s.phase),
                    None => s.phase.clone(),
                },
                format!("{}/{}", s.tasks.completed, s.tasks.total),
                format!("{:.0}%", s.progress_percentage),
                s.tasks.failed.to_string(),
                s.tasks.blocked.to_string(),
                s.running.len().to_string(),
                usd(s.cost_usd),
                s.tokens.total.to_string(),
            ]
        })
        .collect();
    let mut out = String::new();
    table(&mut out, &header, &rows);
    let indent = o.specs.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let mut notes = String::new();
    for s in &o.specs {
        spec_notes(&mut notes, s, indent);
    }
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes);
    }
    let _ = write!(
        out,
        "\noverall: {} command(s) recorded, {} task run(s), peak {} at once",
        o.total_executed, o.tasks_executed, o.peak_concurrency
    );
    if o.active_tasks.is_empty() {
        out.push_str("; nothing running\n");
    } else {
        let _ = writeln!(out, "; running now: {}", o.active_tasks.join(", "));
    }
    out
}

fn spec_notes(out: &mut String, s: &SpecStatus, indent: usize) {
    let mut lead = s.name.as_str();
    let mut line = |out: &mut String, text: &str| {
        let _ = writeln!(out, "{lead:<indent$}  {text}");
        lead = "";
    };
    if let Some(e) = &s.last_error {
        line(out, &format!("last error {}", error_line(e)));
    }
    for r in &s.running_tasks {
        line(out, &running_line(r));
    }
    for w in &s.waiting_tasks {
        let since = w
            .since
            .as_ref()
            .map(|t| format!(" since {}", local_time(t)))
            .unwrap_or_default();
        line(
            out,
            &format!(
                "waiting {} for admission{since}: {}",
                one_line(&w.id, 40),
                one_line(&w.why, 300)
            ),
        );
    }
    if let Some(next) = &s.next_step {
        line(out, &format!("next: {next}"));
    }
    if let Some(t) = &s.timings {
        if !t.phases.is_empty() {
            line(out, &format!("phases: {}", phases_line(&t.phases)));
        }
        if let Some(tasks) = tasks_line(t) {
            line(out, &format!("tasks: {tasks}"));
        }
    }
}

/// `running 2.1 (attempt 1, 4m 10s): 7 turns · → Edit src/lib.rs · last event 3.2s ago · 12.3k tokens`
pub(crate) fn running_line(r: &RunningTask) -> String {
    let mut head = format!("running {}", r.id);
    let mut about = Vec::new();
    if r.attempt > 1 {
        about.push(format!("attempt {}", r.attempt));
    }
    if let Some(e) = r.elapsed_seconds {
        about.push(match r.timeout_seconds {
            Some(t) => format!("{} of {}", duration(e), duration(t)),
            None => duration(e),
        });
    }
    if !about.is_empty() {
        let _ = write!(head, " ({})", about.join(", "));
    }
    let mut parts = Vec::new();
    if let Some(n) = r.turns {
        parts.push(format!("{n} turn{}", if n == 1 { "" } else { "s" }));
    }
    if let Some(t) = &r.last_tool {
        parts.push(match &t.target {
            Some(target) => format!("→ {} {}", t.name, one_line(target, 60)),
            None => format!("→ {}", t.name),
        });
    }
    if let Some(s) = r.seconds_since_last_event {
        parts.push(format!("last event {} ago", duration(s.max(0.0))));
    }
    if let Some(t) = r.tokens {
        parts.push(format!("{} tokens", tokens(t.total)));
    }
    if let Some(c) = r.cost_usd {
        parts.push(usd(c));
    }
    if let Some(retry) = &r.retrying {
        parts.push(retry.clone());
    }
    if parts.is_empty() {
        head.push_str(": no agent event yet");
    } else {
        let _ = write!(head, ": {}", parts.join(" · "));
    }
    head
}

/// `2025-08-05 12:05:00 real_executor (task 10): Timeout after 300s`
pub(crate) fn error_line(e: &LastError) -> String {
    let mut s = String::new();
    if let Some(t) = &e.timestamp {
        let _ = write!(s, "{} ", local_time(t));
    }
    s.push_str(if e.component.is_empty() {
        "?"
    } else {
        &e.component
    });
    if let Some(task) = &e.task {
        let _ = write!(s, " (task {task})");
    }
    let _ = write!(s, ": {}", one_line(&e.error, 200));
    s
}

/// `requirements_generation 1m 30s, design_creation 3m 30s`
pub(crate) fn phases_line(phases: &[PhaseTiming]) -> String {
    phases
        .iter()
        .map(|p| match p.seconds {
            Some(secs) => format!("{} {}", p.phase, duration(secs)),
            None => format!("{} ?", p.phase),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `3 timed, 4.5s in all; slowest 10 3.0s, 2 1.5s`
fn tasks_line(t: &Timings) -> Option<String> {
    let mut timed: Vec<(&str, f64)> = t
        .tasks
        .iter()
        .filter_map(|x| x.duration_seconds.map(|d| (x.id.as_str(), d)))
        .collect();
    if timed.is_empty() {
        return None;
    }
    timed.sort_by(|a, b| b.1.total_cmp(&a.1));
    let slowest: Vec<String> = timed
        .iter()
        .take(5)
        .map(|(id, d)| format!("{id} {}", duration(*d)))
        .collect();
    Some(format!(
        "{} timed, {} in all, mean {}; slowest {}",
        timed.len(),
        duration(t.task_seconds_total),
        duration(t.task_seconds_total / timed.len() as f64),
        slowest.join(", ")
    ))
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub(crate) fn table<const N: usize>(out: &mut String, header: &[&str; N], rows: &[[String; N]]) {
    let mut width = [0usize; N];
    for (i, h) in header.iter().enumerate() {
        width[i] = h.chars().count();
    }
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                let pad = width[i] - c.chars().count();
                s.push_str(c);
                s.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
}

/// Write to stdout; a closed pipe (`qw status | head -1`) is not an error.
pub(crate) fn write_stdout(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::failed(format!("cannot write to stdout: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut out = String::new();
        table(
            &mut out,
            &["A", "BB", "C"],
            &[
                ["long".into(), "x".into(), "1".into()],
                ["s".into(), "yyy".into(), "2".into()],
            ],
        );
        assert_eq!(out, "A     BB   C\nlong  x    1\ns     yyy  2\n");
    }
}
