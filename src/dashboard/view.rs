//! HTML rendering: pure functions from a [`Frame`] (the one read model of the state, see
//! [`crate::workflow::status`]) and a run's log to pages and live fragments.
//!
//! Templating is maud: markup is Rust code checked by the compiler, every `&str`,
//! `String` or `Display` value spliced into it is escaped, and fragments compose as
//! typed [`Markup`] values, so nesting needs no "safe" marker. Chosen over askama
//! because a page here is a dozen small composed fragments (tables, bars, the SVG
//! timeline) that are easier to keep correct as functions than as template files glued
//! with `|safe`. The only way around escaping is [`PreEscaped`], used in exactly one
//! place: [`markdown`], whose output has every raw HTML block turned into text.
//!
//! Nothing in this module reads files or the clock: callers pass the frame (whose
//! `read_at` is "now" for elapsed times), the log tail, the gauges and the run log.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::Gauges;
use super::run_log::{RunLog, StepKind};
use super::snapshot::{Frame, LogTail, StateRead};
use crate::agent::runs::RunUnit;
use crate::fmt::{clock, duration_or_dash, local_time, one_line, tokens, usd};
use crate::state::{TaskStatus, UnifiedState};
use crate::workflow::status::{
    self, RunEnd, RunningTask, SpecStatus, Stage, TaskCounts, Timeline, TimelineRun,
};

/// Percent-encode a path segment (spec names are validated, but task ids and run ids from
/// a hand-edited state are not).
pub(crate) fn url_segment(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The link to a run's page.
pub(crate) fn run_href(spec: &str, run_id: &str) -> String {
    format!("/spec/{}/run/{}", url_segment(spec), url_segment(run_id))
}

/// A horizontal bar drawn in SVG (no inline styles, so the page's CSP can forbid them):
/// `fraction` filled, an optional limit marker.
fn bar(fraction: Option<f64>, limit: Option<f64>, class: &str) -> Markup {
    let pct = |f: f64| (f.clamp(0.0, 1.0) * 100.0 * 10.0).round() / 10.0;
    html! {
        svg class={ "bar " (class) } viewBox="0 0 100 8" preserveAspectRatio="none" role="img" {
            rect class="track" x="0" y="0" width="100" height="8" {}
            @if let Some(f) = fraction {
                rect class=(if limit.is_some_and(|l| f > l) { "fill over" } else { "fill" })
                    x="0" y="0" width=(pct(f)) height="8" {}
            }
            @if let Some(l) = limit {
                line class="limit" x1=(pct(l)) y1="0" x2=(pct(l)) y2="8" {}
            }
        }
    }
}

/// The banner explaining why the shown state may be stale, partial or absent.
fn banner(frame: &Frame) -> Option<Markup> {
    let stale = frame.last_good.is_some();
    match &frame.state {
        StateRead::Ok(_) => None,
        StateRead::Missing { path } => Some(html! {
            div.banner #banner role="alert" {
                "No state file at " code { (path.display()) } " yet: run " code { "qw init" }
                " or " code { "qw spec-create" } "; this page updates when it appears."
            }
        }),
        StateRead::Partial { path, error, .. } => Some(html! {
            div.banner #banner role="alert" {
                "The state file " code { (path.display()) } " cannot be read in full: "
                (error) ". Showing what could be read; the next " code { "qw" }
                " command that writes the state moves it to " code { ".claude/backups/state/" }
                " and restores the newest valid backup."
            }
        }),
        StateRead::Corrupt { path, error } => Some(html! {
            div.banner #banner role="alert" {
                "The state file " code { (path.display()) } " cannot be read: " (error)
                ". The next " code { "qw" } " command moves it to "
                code { ".claude/backups/state/" } " and restores the newest backup (or "
                code { "qw state-backup --restore NAME" } ")."
                @if stale { " Showing the last readable state." }
            }
        }),
    }
}

fn updated(frame: &Frame) -> Markup {
    html! {
        p.updated {
            "Updated at " time { (frame.read_at.format("%H:%M:%S")) } " · update #" (frame.seq)
        }
    }
}

fn counts(c: &TaskCounts) -> Markup {
    let named = [
        ("pending", c.pending),
        ("in_progress", c.in_progress),
        ("completed", c.completed),
        ("failed", c.failed),
        ("blocked", c.blocked),
        ("other", c.other),
    ];
    html! {
        @for (status, n) in named {
            @if n > 0 {
                span class={ "count st-" (status) } title=(status) { (status) " " (n) } " "
            }
        }
        @if c.total == 0 { "no tasks yet" }
    }
}

fn progress(s: &SpecStatus) -> Markup {
    html! {
        (bar(Some(s.progress_percentage / 100.0), None, "progress"))
        " " (format!("{:.0}%", s.progress_percentage))
    }
}

/// Everything the overview needs besides the frame.
pub(crate) struct OverviewInputs<'a> {
    pub gauges: &'a Gauges,
    pub log_tail: &'a LogTail,
}

/// The live part of the overview page (replaced as a whole on every server-sent event).
pub(crate) fn overview_fragment(frame: &Frame, inputs: &OverviewInputs<'_>) -> Markup {
    let overview = frame.overview.as_deref();
    let specs = overview.map_or(&[][..], |o| &o.specs[..]);
    html! {
        @if let Some(b) = banner(frame) { (b) }
        (updated(frame))
        @if let Some(o) = overview {
            p.workflow {
                "Current spec " strong { (o.current_spec.as_deref().unwrap_or("–")) }
                " · global phase " strong { (o.global_phase) }
            }
        }
        section #specs {
            h2 { "Specs" }
            @if specs.is_empty() {
                p.empty { "No specs yet." }
            } @else {
                table {
                    thead { tr { th { "Spec" } th { "Phase" } th { "Progress" } th { "Tasks" }
                                 th { "Elapsed" } th { "Cost" } th { "Tokens" } } }
                    tbody {
                        @for s in specs {
                            tr id={ "spec-" (s.name) } {
                                td {
                                    a href={ "/spec/" (url_segment(&s.name)) } { (s.name) }
                                    @if !s.description.is_empty() { div.desc { (s.description) } }
                                    @if let Some(p) = &s.paused_until { div.paused { "paused until " (p) } }
                                }
                                td.phase { (s.phase) }
                                td.progress { (progress(s)) }
                                td { (counts(&s.tasks)) }
                                td { (duration_or_dash(s.elapsed_seconds)) }
                                td { (usd(s.cost_usd)) }
                                td { (tokens(s.tokens.total)) }
                            }
                        }
                    }
                }
            }
        }
        (running_section(specs))
        (gauges_section(inputs.gauges))
        (errors_section(frame.shown_state().map(AsRef::as_ref)))
        (log_section(inputs.log_tail))
    }
}

/// What a running task's agent is doing, in one line of HTML.
fn activity_line(r: &RunningTask) -> Markup {
    html! {
        span.activity {
            @if let Some(n) = r.turns { span.turns { (n) " turn" @if n != 1 { "s" } } " · " }
            @if let Some(t) = &r.last_tool {
                span.tool { "→ " (t.name) @if let Some(target) = &t.target { " " code { (one_line(target, 80)) } } }
                " · "
            }
            @if let Some(s) = r.seconds_since_last_event {
                span.since { "last event " (duration_or_dash(Some(s.max(0.0)))) " ago" } " · "
            }
            @if let Some(t) = r.tokens { (tokens(t.total)) " tokens" }
            @if let Some(c) = r.cost_usd { " · " (usd(c)) }
            @if let Some(retry) = &r.retrying { " · " span.retry { (retry) } }
            @if r.turns.is_none() { span.empty { "no agent event yet" } }
        }
    }
}

fn running_section(specs: &[SpecStatus]) -> Markup {
    let rows: Vec<(&SpecStatus, &RunningTask)> = specs
        .iter()
        .flat_map(|s| s.running_tasks.iter().map(move |r| (s, r)))
        .collect();
    html! {
        section #running {
            h2 { "Running tasks" }
            @if rows.is_empty() {
                p.empty { "Nothing running." }
            } @else {
                table {
                    thead { tr { th { "Spec" } th { "Task" } th { "Title" } th { "Agent" }
                                 th { "Elapsed / timeout" } th { "Activity" } } }
                    tbody {
                        @for (s, r) in rows {
                            tr id={ "running-" (s.name) "-" (r.id) } {
                                td { a href={ "/spec/" (url_segment(&s.name)) } { (s.name) } }
                                td {
                                    @if let Some(run) = &r.run_id {
                                        a href=(run_href(&s.name, run)) { (r.id) }
                                    } @else { (r.id) }
                                }
                                td { (r.title) }
                                td { (r.agent.as_deref().unwrap_or("–")) }
                                td {
                                    @if let (Some(e), Some(l)) = (r.elapsed_seconds, r.timeout_seconds) {
                                        (bar(Some(e / l), Some(1.0), "timeout")) " "
                                    }
                                    (duration_or_dash(r.elapsed_seconds)) " / "
                                    (r.timeout_seconds.map_or_else(|| "no limit".to_owned(), |t| duration_or_dash(Some(t))))
                                }
                                td { (activity_line(r)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn gauge_row(label: &str, value: Option<f64>, limit: Option<f64>, id: &str) -> Markup {
    html! {
        tr id={ "gauge-" (id) } {
            th { (label) }
            td { (bar(value, limit, "gauge")) }
            td.value {
                (value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}")))
                @if let Some(l) = limit { (format!(" (limit {l:.2})")) }
            }
        }
    }
}

fn gauges_section(g: &Gauges) -> Markup {
    html! {
        section #gauges {
            h2 { "Admission" }
            table {
                (gauge_row("Load per CPU", g.load_per_cpu, g.limit_load_per_cpu, "load"))
                (gauge_row("Memory in use", g.memory, g.limit_memory, "memory"))
                (gauge_row("CPU pressure (PSI avg10)", g.psi_cpu, None, "psi-cpu"))
                (gauge_row("Memory pressure (PSI avg10)", g.psi_memory, None, "psi-memory"))
                tr #gauge-slots {
                    th { "Slots in use" }
                    td colspan="2" {
                        @match (g.slots_used, g.slots_max) {
                            (Some(u), Some(m)) => {
                                (bar(Some(if m == 0 { 1.0 } else { f64::from(u) / f64::from(m) }), Some(1.0), "gauge"))
                                span.value { (u) " / " (m) }
                            }
                            (Some(u), None) => { (u) " / n/a" }
                            (None, Some(m)) => { "n/a / " (m) }
                            (None, None) => { "n/a" }
                        }
                    }
                }
            }
        }
    }
}

fn errors_section(state: Option<&UnifiedState>) -> Markup {
    let errors: Vec<_> = state
        .map(|s| s.errors.iter().rev().take(10).collect())
        .unwrap_or_default();
    html! {
        section #errors {
            h2 { "Recent errors" }
            @if errors.is_empty() {
                p.empty { "No errors recorded." }
            } @else {
                table {
                    thead { tr { th { "Time" } th { "Component" } th { "Error" } th { "Context" } } }
                    tbody {
                        @for e in errors {
                            @let context = match &e.context {
                                serde_json::Value::Null => String::new(),
                                serde_json::Value::String(s) => s.clone(),
                                v => v.to_string(),
                            };
                            tr {
                                td { (e.timestamp.as_ref().map(local_time).unwrap_or_default()) }
                                td { (e.component) }
                                td.error { (e.error) }
                                td { code { (context.chars().take(400).collect::<String>()) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn log_section(tail: &LogTail) -> Markup {
    html! {
        section #log {
            @match tail {
                LogTail::None => {
                    h2 { "Today's log" }
                    p.empty { "No log file for today in " code { ".claude/logs/" } "." }
                }
                LogTail::Lines { file, lines } => {
                    h2 { "Today's log " small { (file) } }
                    pre { (lines.join("\n")) }
                }
            }
        }
    }
}

/// The live part of a spec page: summary, task table and timeline.
pub(crate) fn spec_fragment(frame: &Frame, name: &str, timeline: Option<&Timeline>) -> Markup {
    let spec = frame
        .overview
        .as_deref()
        .and_then(|o| o.specs.iter().find(|s| s.name == name));
    let state = frame.shown_state();
    html! {
        @if let Some(b) = banner(frame) { (b) }
        @match (spec, state) {
            (Some(s), Some(state)) => {
                (updated(frame))
                table.summary {
                    tr { th { "Phase" } td.phase { (s.phase) } }
                    tr { th { "Progress" } td { (progress(s)) } }
                    tr { th { "Tasks" } td { (counts(&s.tasks)) } }
                    tr { th { "Elapsed" } td { (duration_or_dash(s.elapsed_seconds)) } }
                    tr { th { "Cost" } td { (usd(s.cost_usd)) } }
                    tr { th { "Tokens" } td { (tokens(s.tokens.total)) } }
                    @if let Some(p) = &s.paused_until { tr { th { "Paused until" } td { (p) } } }
                }
                (task_table(state, s))
                section #timeline {
                    h2 { "Timeline" }
                    @match timeline {
                        Some(t) => { (timeline_svg(t, name)) (legend()) }
                        None => { p.empty { "No runs recorded in " code { ".claude/runs/" } " yet." } }
                    }
                }
            }
            _ => {
                p.empty #no-spec { "No spec " code { (name) } " in the state (yet)." }
            }
        }
    }
}

fn task_table(state: &UnifiedState, s: &SpecStatus) -> Markup {
    let detail = status::spec_detail(state, &s.name, crate::spec::Documents::default(), Ok(None));
    html! {
        h2 { "Tasks" }
        @if detail.tasks.is_empty() {
            p.empty { "No tasks yet." }
        } @else {
            table #tasks {
                thead { tr { th { "Id" } th { "Title" } th { "Status" } th { "Attempts" }
                             th { "Duration" } th { "Cost" } th { "Run" } th { "Last error" } } }
                tbody {
                    @for t in &detail.tasks {
                        @let running = s.running_tasks.iter().find(|r| r.id == t.id);
                        @let duration = running.and_then(|r| r.elapsed_seconds).or(t.duration_seconds);
                        @let error = match (&t.outcome, &t.error) {
                            (Some(o), Some(e)) if !e.starts_with(o.as_str()) && o != "success" => format!("{o}: {e}"),
                            (_, Some(e)) => e.clone(),
                            (Some(o), None) if t.status == TaskStatus::Failed.as_str() || t.status == TaskStatus::Blocked.as_str() => o.clone(),
                            _ => String::new(),
                        };
                        tr id={ "task-" (t.id) } class={ "st-" (t.status) } data-status=(t.status) {
                            td { (t.id) }
                            td { (t.title) }
                            td.status {
                                (t.status)
                                @if let Some(how) = t.by_hand() { br; span.by-hand { (how) } }
                                @if let Some(r) = running { br; (activity_line(r)) }
                            }
                            td { (t.attempts) }
                            td { (duration_or_dash(duration)) }
                            td { (t.cost_usd.map_or_else(|| "–".to_owned(), usd)) }
                            td {
                                @if let Some(run) = &t.run_id {
                                    a.run href=(run_href(&s.name, run)) { "events" }
                                } @else { "–" }
                            }
                            td.error { (error) }
                        }
                    }
                }
            }
        }
    }
}

/// Timeline geometry, in SVG user units.
const TL_WIDTH: f64 = 1000.0;
const TL_AXIS: f64 = 18.0;
const TL_LANE: f64 = 22.0;
const TL_BAR: f64 = 16.0;

/// Tick spacing for a span: the smallest of a few round steps that gives at most 8 ticks.
fn tick_step(span_secs: f64) -> i64 {
    const STEPS: [i64; 14] = [
        1, 5, 10, 15, 30, 60, 300, 600, 900, 1800, 3600, 7200, 21_600, 86_400,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span_secs / (*s as f64) <= 8.0)
        .unwrap_or(86_400 * ((span_secs / 86_400.0 / 8.0).ceil().max(1.0) as i64))
}

/// A tick's label, as precise as its step needs: `10:05:30`, `10:05`, `01-02 10:00`, `01-02`.
fn tick_label(at: DateTime<Utc>, step: i64, span_secs: f64) -> String {
    let local = at.with_timezone(&chrono::Local);
    let format = if step >= 86_400 {
        "%m-%d"
    } else if span_secs > 86_400.0 {
        "%m-%d %H:%M"
    } else if step >= 60 {
        "%H:%M"
    } else {
        "%H:%M:%S"
    };
    local.format(format).to_string()
}

/// The spec's runs as a Gantt chart in parallel lanes, drawn on the server: each bar is a
/// run (a link to its page, with a tooltip), split into its stages, capped by how it
/// ended. Works without JavaScript; the live fragment swaps it like everything else.
pub(crate) fn timeline_svg(t: &Timeline, spec: &str) -> Markup {
    let span = (t.end - t.start).num_milliseconds().max(1000) as f64 / 1000.0;
    let x = |at: DateTime<Utc>| -> f64 {
        let secs = (at - t.start).num_milliseconds() as f64 / 1000.0;
        (((secs / span) * (TL_WIDTH - 2.0) + 1.0).clamp(0.0, TL_WIDTH) * 10.0).round() / 10.0
    };
    let height = TL_AXIS + TL_LANE * t.lanes.len() as f64 + 4.0;
    let step = tick_step(span);
    let first_tick = {
        let s = t.start.timestamp();
        (s + step - 1).div_euclid(step) * step
    };
    let ticks: Vec<DateTime<Utc>> = (0..)
        .map(|i| first_tick + i * step)
        .map_while(|s| DateTime::from_timestamp(s, 0).filter(|d| *d <= t.end))
        .collect();
    html! {
        svg.timeline viewBox={ "0 0 " (TL_WIDTH) " " (height) } role="img"
            aria-label={ "Timeline of " (spec) "'s runs in " (t.lanes.len()) " lanes" } {
            @for tick in &ticks {
                line.tick x1=(x(*tick)) y1=(TL_AXIS - 4.0) x2=(x(*tick)) y2=(height) {}
                text.tick x=(x(*tick) + 2.0) y=(TL_AXIS - 6.0) { (tick_label(*tick, step, span)) }
            }
            @for (lane, runs) in t.lanes.iter().enumerate() {
                @let y = TL_AXIS + TL_LANE * lane as f64 + (TL_LANE - TL_BAR) / 2.0;
                @for run in runs {
                    (timeline_run(run, spec, y, &x))
                }
            }
        }
    }
}

fn timeline_run(run: &TimelineRun, spec: &str, y: f64, x: &dyn Fn(DateTime<Utc>) -> f64) -> Markup {
    let (Some(start), Some(finish)) = (run.start(), run.finish()) else {
        return html! {};
    };
    let (x0, x1) = (x(start), x(finish).max(x(start) + 2.0));
    let mut tip = format!("{} — {}", run.label(), end_text(&run.end));
    for s in &run.segments {
        let secs = (s.to - s.from).num_milliseconds() as f64 / 1000.0;
        tip.push_str(&format!(
            "\n{} {} ({})",
            s.stage.as_str(),
            clock(&s.from),
            duration_or_dash(Some(secs))
        ));
    }
    html! {
        a href=(run_href(spec, &run.run_id)) {
            g class={ "run end-" (run.end.as_str()) } data-run=(run.run_id) {
                title { (tip) }
                @for s in &run.segments {
                    @let (a, b) = (x(s.from), x(s.to));
                    rect class={ "seg " (s.stage.as_str()) } x=(a) y=(y) width=(((b - a).max(1.0) * 10.0).round() / 10.0) height=(TL_BAR) {}
                }
                rect class="cap" x=((x1 - 3.0).max(x0)) y=(y) width="3" height=(TL_BAR) {}
                @if x1 - x0 > 44.0 {
                    text.label x=(x0 + 3.0) y=(y + TL_BAR - 4.0) { (run.label()) }
                }
            }
        }
    }
}

fn end_text(end: &RunEnd) -> String {
    match end {
        RunEnd::Running => "running".into(),
        RunEnd::Completed => "completed".into(),
        RunEnd::Failed { outcome } => match outcome {
            Some(o) => format!("failed ({o})"),
            None => "failed".into(),
        },
        RunEnd::Stopped { outcome } => match outcome {
            Some(o) => format!("stopped ({o})"),
            None => "stopped".into(),
        },
    }
}

fn legend() -> Markup {
    let stages = [
        (Stage::Queued, "queued (retry)"),
        (Stage::Admitted, "admitted"),
        (Stage::Running, "agent running"),
        (Stage::Verifying, "verifying"),
        (Stage::Merging, "merging"),
    ];
    html! {
        p.legend {
            @for (s, text) in stages {
                span class={ "key seg-" (s.as_str()) } {} " " (text) " "
            }
            "· end: "
            @for e in ["completed", "failed", "stopped", "running"] {
                span class={ "key end-" (e) } {} " " (e) " "
            }
        }
    }
}

/// What a run page shows besides its log.
pub(crate) struct RunInfo<'a> {
    pub spec: &'a str,
    pub run_id: &'a str,
    pub unit: &'a RunUnit,
    pub attempt: u32,
    /// How it ended, from the timeline (None: not known).
    pub end: Option<&'a RunEnd>,
}

/// The live part of a run page: what the agent did, step by step.
pub(crate) fn run_fragment(info: &RunInfo<'_>, log: &RunLog, frame_seq: u64) -> Markup {
    let a = log.activity();
    html! {
        p.updated { "Update #" (frame_seq) @if let Some(at) = &a.last_event_at { " · last event " (crate::fmt::local_time_text(at)) } }
        table.summary #run-summary {
            tr { th { "State" } td class={ "end-" (info.end.map_or("unknown", RunEnd::as_str)) } {
                (info.end.map_or_else(|| "unknown".to_owned(), end_text)) } }
            @if let Some(s) = &a.session_id { tr { th { "Session" } td { code { (s) } } } }
            @if let Some(m) = &a.model { tr { th { "Model" } td { (m) } } }
            tr { th { "Turns" } td #run-turns { (a.turns) } }
            tr { th { "Tool calls" } td { (a.tool_calls) } }
            @if let Some(t) = &a.last_tool {
                tr { th { "Last tool" } td #run-last-tool { (t.name) @if let Some(target) = &t.target { " " code { (target) } } } }
            }
            tr { th { "Tokens" } td { (tokens(a.tokens.total())) " (" (a.tokens.input) " in, " (a.tokens.output) " out, "
                (a.tokens.cache_read) " cache read, " (a.tokens.cache_creation) " cache written)" } }
            tr { th { "Cost" } td { (a.cost_usd.map_or_else(|| "– (known at the end)".to_owned(), usd)) } }
            @if let Some(r) = &a.retrying { tr { th { "Waiting" } td.retry { (r) } } }
            @if a.garbled > 0 { tr { th { "Unreadable lines" } td { (a.garbled) } } }
        }
        h2 { "Steps" }
        @if log.dropped() > 0 {
            p.empty { (log.dropped()) " earlier lines not shown." }
        }
        @if log.steps().is_empty() && log.raw().is_none() {
            p.empty #no-steps { "The agent has written nothing yet." }
        }
        @if !log.steps().is_empty() {
            ol.steps #steps {
                @for s in log.steps() {
                    li class=(step_class(s.kind)) {
                        @if let Some(t) = &s.at { time { (t) } " " }
                        (s.text)
                    }
                }
            }
        }
        @if let Some(raw) = log.raw() {
            pre.output #output { (raw) }
        }
    }
}

fn step_class(k: StepKind) -> &'static str {
    match k {
        StepKind::Start => "step start",
        StepKind::Text => "step text",
        StepKind::Tool => "step tool",
        StepKind::ToolOk => "step result ok",
        StepKind::ToolError => "step result error",
        StepKind::Retry => "step retry",
        StepKind::Result => "step final",
        StepKind::Other => "step",
    }
}

/// The fixed part of a run page: what ran, and its prompt and other captured files.
pub(crate) fn run_header(info: &RunInfo<'_>, files: &[(&str, Option<String>)]) -> Markup {
    let what = match info.unit {
        RunUnit::Task(id) => format!("task {id}"),
        RunUnit::Phase(p) => format!("{p} phase"),
    };
    html! {
        p.crumbs {
            a href={ "/spec/" (url_segment(info.spec)) } { (info.spec) } " / " (what)
            @if info.attempt > 0 { ", attempt " (info.attempt) }
            " " small { code { (info.run_id) } }
        }
        @for (name, text) in files {
            @if let Some(t) = text {
                details { summary { code { (name) } } pre { (t) } }
            }
        }
    }
}

/// Spec documents the spec page links to: (URL segment, file names tried in order).
pub(crate) const DOCUMENTS: [(&str, &[&str]); 4] = [
    ("requirements", &["requirements.md"]),
    ("design", &["design.md"]),
    ("tasks", &["tasks.md"]),
    (
        "report",
        &[
            "report.md",
            "completion_report.md",
            "completion-report.md",
            "COMPLETION_REPORT.md",
        ],
    ),
];

/// Render Markdown with every raw HTML block or span shown as text and every link to a
/// scheme other than http(s)/mailto (or a relative one) disarmed, so a spec document can
/// never inject script into the page. The one use of [`PreEscaped`] in the dashboard:
/// pulldown-cmark escapes the text it writes, and no raw HTML reaches it.
pub(crate) fn markdown(src: &str) -> Markup {
    use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, html};
    fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
        let lower = url.trim().to_ascii_lowercase();
        let scheme_end = lower.find(':');
        let slash = lower.find(['/', '?', '#']);
        let has_scheme = match (scheme_end, slash) {
            (Some(c), Some(s)) => c < s,
            (Some(_), None) => true,
            _ => false,
        };
        if !has_scheme
            || lower.starts_with("http:")
            || lower.starts_with("https:")
            || lower.starts_with("mailto:")
        {
            url
        } else {
            CowStr::Borrowed("#")
        }
    }
    let parser = Parser::new_ext(
        src,
        Options::ENABLE_TABLES | Options::ENABLE_TASKLISTS | Options::ENABLE_STRIKETHROUGH,
    )
    .map(|ev| match ev {
        Event::Html(s) | Event::InlineHtml(s) => Event::Text(s),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Image {
            link_type,
            dest_url: safe_url(dest_url),
            title,
            id,
        }),
        other => other,
    });
    let mut out = String::with_capacity(src.len() * 2);
    html::push_html(&mut out, parser);
    PreEscaped(out)
}

/// A whole page: head, navigation, `body`. `live_src` is the event stream that keeps the
/// `#live` element current; without JavaScript, `reload_secs` reloads the page instead.
pub(crate) fn page(
    title: &str,
    live_src: Option<&str>,
    reload_secs: Option<u32>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · qw dashboard" }
                link rel="stylesheet" href="/assets/style.css";
                script src="/assets/app.js" defer {}
                @if let Some(s) = reload_secs {
                    noscript { meta http-equiv="refresh" content=(s); }
                }
            }
            body data-live=[live_src] {
                header {
                    a.home href="/" { "qw dashboard" }
                    span.conn #conn title="live updates" {}
                }
                main { (body) }
            }
        }
    }
}

/// A small error page body: a title and a message.
pub(crate) fn error_body(title: &str, message: Markup) -> Markup {
    html! { h1 { (title) } p { (message) } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::Arc;

    use chrono::Local;

    use crate::state::Timestamp;
    use crate::workflow::status::{Activities, Inputs};

    fn fixture() -> UnifiedState {
        serde_json::from_str(include_str!(
            "../../tests/fixtures/python_unified_state.json"
        ))
        .unwrap()
    }

    fn now() -> DateTime<Local> {
        Timestamp::parse("2025-08-05T14:00:00")
            .unwrap()
            .as_datetime()
            .unwrap()
            .with_timezone(&Local)
    }

    fn frame(state: StateRead, last_good: Option<UnifiedState>) -> Frame {
        let last_good = last_good.map(Arc::new);
        let shown = state.state().cloned().or_else(|| last_good.clone());
        let none = Activities::new();
        let overview = shown.map(|s| {
            Arc::new(status::overview(
                &s,
                &Inputs {
                    now: now(),
                    profiling: false,
                    activity: &none,
                },
            ))
        });
        Frame {
            seq: 7,
            state,
            last_good,
            read_at: now(),
            overview,
            overview_html: html! {},
        }
    }

    #[test]
    fn overview_shows_specs_running_tasks_errors_and_escapes_state_strings() {
        let mut state = fixture();
        state
            .specifications
            .get_mut("user-auth")
            .unwrap()
            .description = "<img src=x onerror=alert(1)>".into();
        let g = Gauges {
            load_per_cpu: Some(0.42),
            limit_load_per_cpu: Some(0.85),
            ..Gauges::default()
        };
        let tail = LogTail::Lines {
            file: "qw-2025-08-05.log".into(),
            lines: vec!["<b>hi</b>".into()],
        };
        let html = overview_fragment(
            &frame(StateRead::Ok(Arc::new(state)), None),
            &OverviewInputs {
                gauges: &g,
                log_tail: &tail,
            },
        )
        .into_string();
        assert!(html.contains("href=\"/spec/user-auth\""), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!html.contains("<img"));
        assert!(html.contains("id=\"running-user-auth-1.1\""));
        assert!(html.contains("Add password hashing"));
        assert!(html.contains("no agent event yet"));
        assert!(html.contains("Timeout after 300s"));
        assert!(html.contains("0.42 (limit 0.85)"));
        assert!(html.contains("class=\"limit\" x1=\"85\""));
        assert!(html.contains("&lt;b&gt;hi&lt;/b&gt;"));
        assert!(html.contains("<td class=\"value\">n/a</td>"));
        assert!(!html.contains("id=\"banner\""));
        // 09:13:02 → 14:00:00 and 1 of 3 done, as `qw status` says.
        assert!(html.contains("4h 46m"), "{html}");
        assert!(html.contains("33%"));
    }

    #[test]
    fn corrupt_and_partial_states_show_a_banner_and_what_can_be_read() {
        let f = frame(
            StateRead::Corrupt {
                path: PathBuf::from("/p/.claude/unified_state.json"),
                error: "expected value at line 1 column 1".into(),
            },
            Some(fixture()),
        );
        let html = spec_fragment(&f, "user-auth", None).into_string();
        assert!(html.contains("id=\"banner\""));
        assert!(html.contains("line 1 column 1"));
        assert!(html.contains("id=\"task-1.1\""));
        assert!(html.contains("Showing the last readable state"));
        let partial = frame(
            StateRead::Partial {
                path: PathBuf::from("/p/s.json"),
                state: Arc::new(fixture()),
                error: "it does not match <the> schema".into(),
            },
            None,
        );
        let html = spec_fragment(&partial, "user-auth", None).into_string();
        assert!(html.contains("cannot be read in full: it does not match &lt;the&gt; schema"));
        assert!(html.contains("id=\"task-10\""));
        let missing = frame(
            StateRead::Missing {
                path: PathBuf::from("/p/.claude/unified_state.json"),
            },
            None,
        );
        let html = spec_fragment(&missing, "user-auth", None).into_string();
        assert!(html.contains("id=\"banner\"") && html.contains("No state file"));
        assert!(html.contains("id=\"no-spec\""));
    }

    #[test]
    fn spec_fragment_lists_tasks_in_id_order_with_status() {
        let f = frame(StateRead::Ok(Arc::new(fixture())), None);
        let html = spec_fragment(&f, "user-auth", None).into_string();
        let a = html.find("id=\"task-1\"").unwrap();
        let b = html.find("id=\"task-1.1\"").unwrap();
        let c = html.find("id=\"task-10\"").unwrap();
        assert!(a < b && b < c);
        assert!(
            html.contains("id=\"task-1.1\" class=\"st-in_progress\" data-status=\"in_progress\"")
        );
        assert!(html.contains("8m 30s"), "{html}");
        assert!(html.contains("No runs recorded"));
    }

    #[test]
    fn a_task_ticked_by_hand_says_so_in_its_row() {
        let mut state = fixture();
        let spec = state.specifications.get_mut("user-auth").unwrap();
        let mut ids = spec.tasks.keys().cloned();
        let (plain, verified) = (ids.next().unwrap(), ids.next().unwrap());
        for id in [&plain, &verified] {
            let t = spec.tasks.get_mut(id).unwrap();
            t.status = TaskStatus::Completed;
            t.attempts = 0;
            t.extra
                .insert("completed_by".into(), serde_json::json!("tasks.md"));
        }
        spec.tasks.get_mut(&verified).unwrap().extra.insert(
            "verified_by_qw".into(),
            serde_json::json!({"command": "true", "run": "r1"}),
        );
        let f = frame(StateRead::Ok(Arc::new(state)), None);
        let html = spec_fragment(&f, "user-auth", None).into_string();
        let row = |id: &str| {
            let start = html.find(&format!("id=\"task-{id}\"")).unwrap();
            let end = html[start..].find("</tr>").unwrap() + start;
            html[start..end].to_owned()
        };
        let plain_row = row(&plain);
        assert!(
            plain_row.contains("<span class=\"by-hand\">ticked by hand, not run by qw</span>"),
            "{plain_row}"
        );
        let verified_row = row(&verified);
        assert!(
            verified_row.contains("<span class=\"by-hand\">ticked by hand, verified by qw</span>"),
            "{verified_row}"
        );
        // A task qw ran says nothing of the kind.
        let other = spec_fragment(
            &frame(StateRead::Ok(Arc::new(fixture())), None),
            "user-auth",
            None,
        )
        .into_string();
        assert!(!other.contains("by-hand"), "{other}");
    }

    #[test]
    fn timeline_svg_draws_lanes_stages_links_and_ticks() {
        let at = |s: &str| {
            Timestamp::parse(s)
                .unwrap()
                .as_datetime()
                .unwrap()
                .with_timezone(&Utc)
        };
        let seg = |stage, a: &str, b: &str| status::Segment {
            stage,
            from: at(a),
            to: at(b),
        };
        let t = Timeline {
            start: at("2026-01-01T10:00:00Z"),
            end: at("2026-01-01T10:10:00Z"),
            lanes: vec![
                vec![TimelineRun {
                    run_id: "r<1>".into(),
                    task: Some("1".into()),
                    phase: None,
                    attempt: 1,
                    segments: vec![
                        seg(
                            Stage::Running,
                            "2026-01-01T10:00:00Z",
                            "2026-01-01T10:05:00Z",
                        ),
                        seg(
                            Stage::Verifying,
                            "2026-01-01T10:05:00Z",
                            "2026-01-01T10:06:00Z",
                        ),
                    ],
                    end: RunEnd::Failed {
                        outcome: Some("verify_failed".into()),
                    },
                }],
                vec![TimelineRun {
                    run_id: "r2".into(),
                    task: Some("2".into()),
                    phase: None,
                    attempt: 1,
                    segments: vec![seg(
                        Stage::Running,
                        "2026-01-01T10:02:00Z",
                        "2026-01-01T10:10:00Z",
                    )],
                    end: RunEnd::Running,
                }],
            ],
        };
        let svg = timeline_svg(&t, "s").into_string();
        assert!(
            svg.starts_with("<svg class=\"timeline\" viewBox=\"0 0 1000 66\""),
            "{svg}"
        );
        assert!(
            svg.contains("href=\"/spec/s/run/r%3C1%3E\""),
            "run ids are encoded: {svg}"
        );
        assert!(svg.contains("class=\"run end-failed\""));
        assert!(svg.contains("class=\"run end-running\""));
        assert!(svg.contains("class=\"seg verifying\" x=\"500\""), "{svg}");
        assert!(svg.contains("failed (verify_failed)"));
        assert!(svg.contains(">1 #1</text>"));
        // Ten minutes: a tick every 5 minutes (the smallest round step with at most 8).
        assert_eq!(svg.matches("class=\"tick\" x1").count(), 3, "{svg}");
        // SVG elements are closed, so the HTML parser does not nest them.
        assert_eq!(svg.matches("<rect").count(), svg.matches("</rect>").count());
        assert!(!svg.contains("r<1>"));
    }

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(tick_step(7.0), 1);
        assert_eq!(tick_step(600.0), 300);
        assert_eq!(tick_step(3.0 * 3600.0), 1800);
        assert_eq!(tick_step(30.0 * 86_400.0), 4 * 86_400);
    }

    #[test]
    fn markdown_never_passes_raw_html_or_script_links() {
        let html = markdown(
            "# Title\n\n<script>alert(1)</script>\n\nHi <b onclick=x>there</b> [a](javascript:alert(1)) [b](https://example.com) [c](design.md) ![i](data:text/html,x)\n",
        )
        .into_string();
        assert!(html.contains("<h1>Title</h1>"));
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<b "), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(!html.contains("data:text"), "{html}");
        assert!(html.contains("href=\"https://example.com\""));
        assert!(html.contains("href=\"design.md\""));
    }

    #[test]
    fn bars_clamp_and_mark_limits() {
        let b = bar(Some(1.5), Some(0.8), "gauge").into_string();
        assert!(b.contains("width=\"100\"") && b.contains("fill over") && b.contains("x1=\"80\""));
        let b = bar(None, None, "gauge").into_string();
        assert!(!b.contains("fill"));
    }

    #[test]
    fn pages_escape_titles_and_reload_without_script() {
        let p = page(
            "<x>",
            Some("/events?spec=a&b"),
            Some(5),
            html! { p { "hi" } },
        )
        .into_string();
        assert!(p.starts_with("<!DOCTYPE html>"));
        assert!(p.contains("<title>&lt;x&gt; · qw dashboard</title>"));
        assert!(p.contains("data-live=\"/events?spec=a&amp;b\""));
        assert!(p.contains("<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>"));
    }
}
