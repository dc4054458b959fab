//! HTML rendering of the unified state: pure functions from a JSON value (read leniently)
//! to escaped HTML fragments and pages.
//!
//! Every string that comes from the state, a file or the user is escaped here; nothing in
//! this module reads files or the clock (callers pass `now`, the log tail, the gauges).

use std::cmp::Ordering;
use std::fmt::Write as _;

use chrono::{DateTime, Local, NaiveDateTime, TimeZone};
use serde_json::Value;

use super::Gauges;
use super::snapshot::{Frame, StateRead};

/// Task statuses in display order (CONTRACT §3), then anything else under "other".
pub(crate) const STATUSES: [&str; 5] = ["pending", "in_progress", "completed", "failed", "blocked"];

/// HTML-escape text for element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Percent-encode a path segment (spec names are validated, but task ids and names from a
/// hand-edited state are not).
pub(crate) fn url_segment(s: &str) -> String {
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

/// A string field, or a number/bool shown as text (the Python system wrote `default=str`).
fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A numeric field, accepting numbers written as strings.
fn num(v: &Value, key: &str) -> Option<f64> {
    match v.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Parse a state timestamp: RFC 3339, or the Python system's naive ISO form (local time).
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Local>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Local));
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()?;
    Local.from_local_datetime(&naive).earliest()
}

fn time_at(v: &Value, key: &str) -> Option<DateTime<Local>> {
    v.get(key).and_then(Value::as_str).and_then(parse_time)
}

/// `1h 02m`, `3m 05s`, `42s`.
pub(crate) fn fmt_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "–".to_owned();
    }
    // Display only: whole seconds are enough and the value is finite and non-negative.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn fmt_cost(c: Option<f64>) -> String {
    c.map_or_else(|| "–".to_owned(), |c| format!("${c:.2}"))
}

fn fmt_tokens(t: Option<f64>) -> String {
    match t {
        None => "–".to_owned(),
        Some(t) if t >= 1_000_000.0 => format!("{:.1}M", t / 1_000_000.0),
        Some(t) if t >= 1_000.0 => format!("{:.1}k", t / 1_000.0),
        Some(t) => format!("{t:.0}"),
    }
}

/// Compare task ids segment by segment, numerically where both segments are numbers, so
/// `1 < 1.1 < 2 < 10` (ids compare exactly: `1` is not `1.1`).
pub(crate) fn cmp_task_ids(a: &str, b: &str) -> Ordering {
    let mut xs = a.split('.');
    let mut ys = b.split('.');
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let o = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(p), Ok(q)) => p.cmp(&q),
                    _ => x.cmp(y),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// A horizontal bar drawn in SVG (no inline styles, so the page's CSP can forbid them):
/// `fraction` filled, an optional limit marker.
fn bar(fraction: Option<f64>, limit: Option<f64>, class: &str) -> String {
    let mut out = format!(
        "<svg class=\"bar {class}\" viewBox=\"0 0 100 8\" preserveAspectRatio=\"none\" role=\"img\"><rect class=\"track\" x=\"0\" y=\"0\" width=\"100\" height=\"8\"/>"
    );
    if let Some(f) = fraction {
        let w = (f.clamp(0.0, 1.0) * 100.0 * 10.0).round() / 10.0;
        let over = limit.is_some_and(|l| f > l);
        let fill = if over { "fill over" } else { "fill" };
        let _ = write!(
            out,
            "<rect class=\"{fill}\" x=\"0\" y=\"0\" width=\"{w}\" height=\"8\"/>"
        );
    }
    if let Some(l) = limit {
        let x = (l.clamp(0.0, 1.0) * 100.0 * 10.0).round() / 10.0;
        let _ = write!(
            out,
            "<line class=\"limit\" x1=\"{x}\" y1=\"0\" x2=\"{x}\" y2=\"8\"/>"
        );
    }
    out.push_str("</svg>");
    out
}

/// What the dashboard shows of one spec, read leniently from its JSON.
pub(crate) struct SpecSummary {
    pub name: String,
    pub description: Option<String>,
    pub phase: String,
    pub progress: f64,
    pub counts: Vec<(String, usize)>,
    pub total: usize,
    pub elapsed: Option<f64>,
    pub cost: Option<f64>,
    pub tokens: Option<f64>,
    pub paused_until: Option<String>,
}

impl SpecSummary {
    pub(crate) fn of(name: &str, spec: &Value, now: DateTime<Local>) -> SpecSummary {
        let tasks = tasks_of(spec);
        let mut counts: Vec<(String, usize)> =
            STATUSES.iter().map(|s| ((*s).to_owned(), 0)).collect();
        let mut other = 0;
        let mut task_cost = None::<f64>;
        let mut tokens = None::<f64>;
        for (_, t) in &tasks {
            let status = t.get("status").and_then(Value::as_str).unwrap_or("");
            match counts.iter_mut().find(|(s, _)| s == status) {
                Some((_, n)) => *n += 1,
                None => other += 1,
            }
            if let Some(c) = num(t, "cost_usd") {
                *task_cost.get_or_insert(0.0) += c;
            }
            for key in ["input_tokens", "output_tokens"] {
                if let Some(n) = num(t, key) {
                    *tokens.get_or_insert(0.0) += n;
                }
            }
        }
        if other > 0 {
            counts.push(("other".to_owned(), other));
        }
        let completed = counts
            .iter()
            .find(|(s, _)| s == "completed")
            .map_or(0, |(_, n)| *n);
        let total = tasks.len();
        let phase = text(spec, "current_phase").unwrap_or_else(|| "unknown".to_owned());
        // Precision loss only matters past 2^52 tasks.
        #[allow(clippy::cast_precision_loss)]
        let computed = if total == 0 {
            if phase == "complete" { 100.0 } else { 0.0 }
        } else {
            completed as f64 * 100.0 / total as f64
        };
        let progress = num(spec, "progress_percentage").unwrap_or(computed);
        let started = time_at(spec, "created_at");
        let finished = if phase == "complete" {
            spec.get("completed_phases")
                .and_then(Value::as_array)
                .and_then(|p| p.iter().filter_map(|p| time_at(p, "completed_at")).max())
        } else {
            None
        };
        let elapsed = started.map(|s| {
            let end = finished.unwrap_or(now);
            // Milliseconds to seconds for display.
            #[allow(clippy::cast_precision_loss)]
            let secs = (end - s).num_milliseconds() as f64 / 1000.0;
            secs
        });
        SpecSummary {
            name: name.to_owned(),
            description: text(spec, "description"),
            phase,
            progress,
            counts,
            total,
            elapsed,
            cost: num(spec, "cost_usd").or(task_cost),
            tokens,
            paused_until: text(spec, "paused_until"),
        }
    }

    fn counts_html(&self) -> String {
        let mut out = String::new();
        for (status, n) in &self.counts {
            if *n > 0 {
                let _ = write!(
                    out,
                    "<span class=\"count st-{s}\" title=\"{s}\">{s} {n}</span> ",
                    s = esc(status)
                );
            }
        }
        if self.total == 0 {
            out.push_str("no tasks yet");
        }
        out
    }
}

/// The tasks of a spec, sorted by id.
fn tasks_of(spec: &Value) -> Vec<(String, &Value)> {
    let mut tasks: Vec<(String, &Value)> = match spec.get("tasks") {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, t)| (text(t, "id").unwrap_or_else(|| i.to_string()), t))
            .collect(),
        _ => Vec::new(),
    };
    tasks.sort_by(|a, b| cmp_task_ids(&a.0, &b.0));
    tasks
}

/// The specs of a state, sorted by name.
fn specs_of(state: &Value) -> Vec<(&str, &Value)> {
    let mut specs: Vec<(&str, &Value)> = match state.get("specifications") {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.as_str(), v)).collect(),
        _ => Vec::new(),
    };
    specs.sort_by(|a, b| a.0.cmp(b.0));
    specs
}

/// The state to display and the banner (if any) explaining why it may be stale or absent.
fn state_and_banner(frame: &Frame) -> (Option<&Value>, String) {
    match &frame.state {
        StateRead::Ok(v) => (Some(v.as_ref()), String::new()),
        StateRead::Missing { path } => (
            None,
            format!(
                "<div class=\"banner\" id=\"banner\" role=\"alert\">No state file at <code>{}</code> yet: run <code>qw init</code> or <code>qw spec-create</code>; this page updates when it appears.</div>",
                esc(&path.display().to_string())
            ),
        ),
        StateRead::Corrupt { path, error } => {
            let stale = if frame.last_good.is_some() {
                " Showing the last readable state."
            } else {
                ""
            };
            (
                frame.last_good.as_deref(),
                format!(
                    "<div class=\"banner\" id=\"banner\" role=\"alert\">The state file <code>{}</code> cannot be read: {}. The next <code>qw</code> command moves it to <code>.claude/backups/state/</code> and restores the newest backup (or <code>qw state-backup --restore NAME</code>).{stale}</div>",
                    esc(&path.display().to_string()),
                    esc(error)
                ),
            )
        }
    }
}

/// Everything the overview needs besides the frame.
pub(crate) struct OverviewInputs<'a> {
    pub gauges: &'a Gauges,
    pub log_tail: &'a LogTail,
    pub now: DateTime<Local>,
}

/// The last lines of today's log, or why there are none.
pub(crate) enum LogTail {
    /// Lines from `file` (a name inside `.claude/logs/`).
    Lines { file: String, lines: Vec<String> },
    /// No log file for today.
    None,
}

/// The live part of the overview page (replaced as a whole on every server-sent event).
pub(crate) fn overview_fragment(frame: &Frame, inputs: &OverviewInputs<'_>) -> String {
    let (state, banner) = state_and_banner(frame);
    let empty = Value::Null;
    let state = state.unwrap_or(&empty);
    let now = inputs.now;
    let mut out = banner;
    let _ = write!(
        out,
        "<p class=\"updated\">Updated at <time>{}</time> · update #{}</p>",
        frame.read_at.format("%H:%M:%S"),
        frame.seq
    );

    if let Some(w) = state.get("workflow") {
        let current = text(w, "current_spec").unwrap_or_else(|| "–".to_owned());
        let phase = text(w, "global_phase").unwrap_or_else(|| "–".to_owned());
        let _ = write!(
            out,
            "<p class=\"workflow\">Current spec <strong>{}</strong> · global phase <strong>{}</strong></p>",
            esc(&current),
            esc(&phase)
        );
    }

    // Specs.
    out.push_str("<section id=\"specs\"><h2>Specs</h2>");
    let specs = specs_of(state);
    if specs.is_empty() {
        out.push_str("<p class=\"empty\">No specs yet.</p>");
    } else {
        out.push_str("<table><thead><tr><th>Spec</th><th>Phase</th><th>Progress</th><th>Tasks</th><th>Elapsed</th><th>Cost</th><th>Tokens</th></tr></thead><tbody>");
        for (name, spec) in &specs {
            let s = SpecSummary::of(name, spec, now);
            let desc = s
                .description
                .as_deref()
                .map(|d| format!("<div class=\"desc\">{}</div>", esc(d)))
                .unwrap_or_default();
            let paused = s
                .paused_until
                .as_deref()
                .map(|p| format!("<div class=\"paused\">paused until {}</div>", esc(p)))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr id=\"spec-{id}\"><td><a href=\"/spec/{url}\">{id}</a>{desc}{paused}</td><td class=\"phase\">{phase}</td><td class=\"progress\">{bar} {pct:.0}%</td><td>{counts}</td><td>{elapsed}</td><td>{cost}</td><td>{tokens}</td></tr>",
                id = esc(&s.name),
                url = url_segment(&s.name),
                phase = esc(&s.phase),
                bar = bar(Some(s.progress / 100.0), None, "progress"),
                pct = s.progress,
                counts = s.counts_html(),
                elapsed = s.elapsed.map_or_else(|| "–".to_owned(), fmt_duration),
                cost = fmt_cost(s.cost),
                tokens = fmt_tokens(s.tokens),
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");

    out.push_str(&running_tasks(state, now));
    out.push_str(&gauges_html(inputs.gauges));
    out.push_str(&errors_html(state));
    out.push_str(&log_html(inputs.log_tail));
    out
}

/// The timeout a task runs under, wherever the writer put it.
fn task_timeout(state: &Value, spec: &Value, task: &Value) -> Option<f64> {
    num(task, "timeout_seconds")
        .or_else(|| num(task, "timeout"))
        .or_else(|| num(spec, "task_timeout"))
        .or_else(|| spec.get("options").and_then(|o| num(o, "task_timeout")))
        .or_else(|| state.get("workflow").and_then(|w| num(w, "task_timeout")))
}

fn running_tasks(state: &Value, now: DateTime<Local>) -> String {
    let mut rows = String::new();
    for (spec_name, spec) in specs_of(state) {
        for (id, t) in tasks_of(spec) {
            if t.get("status").and_then(Value::as_str) != Some("in_progress") {
                continue;
            }
            #[allow(clippy::cast_precision_loss)]
            let elapsed =
                time_at(t, "started_at").map(|s| (now - s).num_milliseconds() as f64 / 1000.0);
            let timeout = task_timeout(state, spec, t);
            let gauge = match (elapsed, timeout) {
                (Some(e), Some(l)) if l > 0.0 => bar(Some(e / l), Some(1.0), "timeout"),
                _ => String::new(),
            };
            let _ = write!(
                rows,
                "<tr id=\"running-{sid}-{tid}\"><td><a href=\"/spec/{surl}\">{sid}</a></td><td>{tid}</td><td>{title}</td><td>{agent}</td><td>{gauge} {elapsed} / {timeout}</td></tr>",
                sid = esc(spec_name),
                surl = url_segment(spec_name),
                tid = esc(&id),
                title = esc(&task_title(t)),
                agent = esc(&text(t, "agent").unwrap_or_else(|| "–".to_owned())),
                elapsed = elapsed.map_or_else(|| "–".to_owned(), fmt_duration),
                timeout = timeout.map_or_else(|| "no limit".to_owned(), fmt_duration),
            );
        }
    }
    let mut out = String::from("<section id=\"running\"><h2>Running tasks</h2>");
    if rows.is_empty() {
        out.push_str("<p class=\"empty\">Nothing running.</p>");
    } else {
        let _ = write!(
            out,
            "<table><thead><tr><th>Spec</th><th>Task</th><th>Title</th><th>Agent</th><th>Elapsed / timeout</th></tr></thead><tbody>{rows}</tbody></table>"
        );
    }
    out.push_str("</section>");
    out
}

fn task_title(t: &Value) -> String {
    text(t, "title")
        .or_else(|| text(t, "description"))
        .unwrap_or_default()
}

fn gauge_row(label: &str, value: Option<f64>, limit: Option<f64>, id: &str) -> String {
    let shown = value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"));
    let lim = limit.map_or_else(String::new, |l| format!(" (limit {l:.2})"));
    format!(
        "<tr id=\"gauge-{id}\"><th>{label}</th><td>{bar}</td><td class=\"value\">{shown}{lim}</td></tr>",
        bar = bar(value, limit, "gauge"),
    )
}

fn gauges_html(g: &Gauges) -> String {
    let mut out = String::from("<section id=\"gauges\"><h2>Admission</h2><table>");
    out.push_str(&gauge_row(
        "Load per CPU",
        g.load_per_cpu,
        g.limit_load_per_cpu,
        "load",
    ));
    out.push_str(&gauge_row(
        "Memory in use",
        g.memory,
        g.limit_memory,
        "memory",
    ));
    out.push_str(&gauge_row(
        "CPU pressure (PSI avg10)",
        g.psi_cpu,
        None,
        "psi-cpu",
    ));
    out.push_str(&gauge_row(
        "Memory pressure (PSI avg10)",
        g.psi_memory,
        None,
        "psi-memory",
    ));
    let slots = match (g.slots_used, g.slots_max) {
        (Some(u), Some(m)) => {
            let frac = if m == 0 {
                1.0
            } else {
                f64::from(u) / f64::from(m)
            };
            format!(
                "{}<span class=\"value\">{u} / {m}</span>",
                bar(Some(frac), Some(1.0), "gauge")
            )
        }
        (Some(u), None) => format!("{u} / n/a"),
        (None, Some(m)) => format!("n/a / {m}"),
        (None, None) => "n/a".to_owned(),
    };
    let _ = write!(
        out,
        "<tr id=\"gauge-slots\"><th>Slots in use</th><td colspan=\"2\">{slots}</td></tr></table></section>"
    );
    out
}

fn errors_html(state: &Value) -> String {
    let mut out = String::from("<section id=\"errors\"><h2>Recent errors</h2>");
    let errors: Vec<&Value> = state
        .get("errors")
        .and_then(Value::as_array)
        .map(|a| a.iter().rev().take(10).collect())
        .unwrap_or_default();
    if errors.is_empty() {
        out.push_str("<p class=\"empty\">No errors recorded.</p></section>");
        return out;
    }
    out.push_str("<table><thead><tr><th>Time</th><th>Component</th><th>Error</th><th>Context</th></tr></thead><tbody>");
    for e in errors {
        let context = match e.get("context") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        };
        let context: String = context.chars().take(400).collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"error\">{}</td><td><code>{}</code></td></tr>",
            esc(&text(e, "timestamp").unwrap_or_default()),
            esc(&text(e, "component").unwrap_or_default()),
            esc(&text(e, "error").unwrap_or_else(|| e.to_string())),
            esc(&context)
        );
    }
    out.push_str("</tbody></table></section>");
    out
}

fn log_html(tail: &LogTail) -> String {
    match tail {
        LogTail::None => "<section id=\"log\"><h2>Today's log</h2><p class=\"empty\">No log file for today in <code>.claude/logs/</code>.</p></section>".to_owned(),
        LogTail::Lines { file, lines } => {
            let body: Vec<String> = lines.iter().map(|l| esc(l)).collect();
            format!(
                "<section id=\"log\"><h2>Today's log <small>{}</small></h2><pre>{}</pre></section>",
                esc(file),
                body.join("\n")
            )
        }
    }
}

/// The live part of a spec page: summary and task table.
pub(crate) fn spec_fragment(frame: &Frame, name: &str, now: DateTime<Local>) -> String {
    let (state, banner) = state_and_banner(frame);
    let mut out = banner;
    let spec = state
        .and_then(|s| s.get("specifications"))
        .and_then(|s| s.get(name));
    let Some(spec) = spec else {
        let _ = write!(
            out,
            "<p class=\"empty\" id=\"no-spec\">No spec <code>{}</code> in the state (yet).</p>",
            esc(name)
        );
        return out;
    };
    let s = SpecSummary::of(name, spec, now);
    let _ = write!(
        out,
        "<p class=\"updated\">Updated at <time>{}</time> · update #{}</p>",
        frame.read_at.format("%H:%M:%S"),
        frame.seq
    );
    let _ = write!(
        out,
        "<table class=\"summary\"><tr><th>Phase</th><td class=\"phase\">{phase}</td></tr><tr><th>Progress</th><td>{bar} {pct:.0}%</td></tr><tr><th>Tasks</th><td>{counts}</td></tr><tr><th>Elapsed</th><td>{elapsed}</td></tr><tr><th>Cost</th><td>{cost}</td></tr><tr><th>Tokens</th><td>{tokens}</td></tr>{paused}</table>",
        phase = esc(&s.phase),
        bar = bar(Some(s.progress / 100.0), None, "progress"),
        pct = s.progress,
        counts = s.counts_html(),
        elapsed = s.elapsed.map_or_else(|| "–".to_owned(), fmt_duration),
        cost = fmt_cost(s.cost),
        tokens = fmt_tokens(s.tokens),
        paused = s
            .paused_until
            .as_deref()
            .map(|p| format!("<tr><th>Paused until</th><td>{}</td></tr>", esc(p)))
            .unwrap_or_default(),
    );
    out.push_str("<h2>Tasks</h2>");
    let tasks = tasks_of(spec);
    if tasks.is_empty() {
        out.push_str("<p class=\"empty\">No tasks yet.</p>");
        return out;
    }
    out.push_str("<table id=\"tasks\"><thead><tr><th>Id</th><th>Title</th><th>Status</th><th>Attempts</th><th>Duration</th><th>Cost</th><th>Last error</th></tr></thead><tbody>");
    for (id, t) in tasks {
        let status = text(t, "status").unwrap_or_else(|| "unknown".to_owned());
        #[allow(clippy::cast_precision_loss)]
        let duration = num(t, "duration_seconds").or_else(|| {
            if status == "in_progress" {
                time_at(t, "started_at").map(|s| (now - s).num_milliseconds() as f64 / 1000.0)
            } else {
                None
            }
        });
        let cost = num(t, "cost_usd");
        let error = match (text(t, "outcome"), text(t, "error")) {
            (Some(o), Some(e)) if o != "success" => format!("{o}: {e}"),
            (None, Some(e)) | (Some(_), Some(e)) => e,
            (Some(o), None) if status == "failed" || status == "blocked" => o,
            _ => String::new(),
        };
        let _ = write!(
            out,
            "<tr id=\"task-{id}\" class=\"st-{st}\" data-status=\"{st}\"><td>{id}</td><td>{title}</td><td class=\"status\">{st}</td><td>{attempts}</td><td>{duration}</td><td>{cost}</td><td class=\"error\">{error}</td></tr>",
            id = esc(&id),
            st = esc(&status),
            title = esc(&task_title(t)),
            attempts = esc(&text(t, "attempts").unwrap_or_else(|| "–".to_owned())),
            duration = duration.map_or_else(|| "–".to_owned(), fmt_duration),
            cost = fmt_cost(cost),
            error = esc(&error),
        );
    }
    out.push_str("</tbody></table>");
    out
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

/// Render Markdown to HTML with every raw HTML block or span shown as text and every link
/// to a scheme other than http(s)/mailto (or a relative one) disarmed, so a spec document
/// can never inject script into the page.
pub(crate) fn markdown(src: &str) -> String {
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
    out
}

/// A whole page: head, navigation, `body` (already escaped HTML).
pub(crate) fn page(title: &str, live_src: Option<&str>, body: &str) -> String {
    let live = live_src
        .map(|src| format!(" data-live=\"{}\"", esc(src)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title} · qw dashboard</title><link rel=\"stylesheet\" href=\"/assets/style.css\"><script src=\"/assets/app.js\" defer></script></head><body{live}><header><a class=\"home\" href=\"/\">qw dashboard</a><span id=\"conn\" class=\"conn\" title=\"live updates\"></span></header><main>{body}</main></body></html>",
        title = esc(title),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::Arc;

    fn fixture() -> Value {
        serde_json::from_str(include_str!(
            "../../tests/fixtures/python_unified_state.json"
        ))
        .unwrap()
    }

    fn frame(state: StateRead, last_good: Option<Value>) -> Frame {
        Frame {
            seq: 7,
            state,
            last_good: last_good.map(Arc::new),
            read_at: Local::now(),
            overview: String::new(),
        }
    }

    fn now() -> DateTime<Local> {
        parse_time("2025-08-05T14:00:00").unwrap()
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }

    #[test]
    fn task_ids_sort_numerically_per_segment() {
        let mut ids = vec!["10", "1.1", "2", "1", "1.10", "1.2"];
        ids.sort_by(|a, b| cmp_task_ids(a, b));
        assert_eq!(ids, ["1", "1.1", "1.2", "1.10", "2", "10"]);
    }

    #[test]
    fn python_fixture_summary() {
        let state = fixture();
        let spec = &state["specifications"]["user-auth"];
        let s = SpecSummary::of("user-auth", spec, now());
        assert_eq!(s.phase, "implementation");
        assert_eq!(s.total, 3);
        assert!((s.progress - 33.333).abs() < 0.01);
        let count = |st: &str| s.counts.iter().find(|(k, _)| k == st).unwrap().1;
        assert_eq!(
            (count("completed"), count("in_progress"), count("failed")),
            (1, 1, 1)
        );
        // created 09:13:02.004411, now 14:00:00
        let e = s.elapsed.unwrap();
        assert!((e - 17_217.995).abs() < 0.01, "{e}");
        assert_eq!(s.cost, None);
    }

    #[test]
    fn costs_and_tokens_add_up_over_tasks_unless_the_spec_has_its_own() {
        let spec = serde_json::json!({"tasks": {
            "1": {"status": "completed", "cost_usd": 0.25, "input_tokens": 1000, "output_tokens": 500},
            "2": {"status": "completed", "cost_usd": "0.5", "input_tokens": 200}
        }});
        let s = SpecSummary::of("x", &spec, now());
        assert_eq!(s.cost, Some(0.75));
        assert_eq!(s.tokens, Some(1700.0));
        assert!((s.progress - 100.0).abs() < 1e-9);
        let mut spec = spec;
        spec["cost_usd"] = serde_json::json!(2.0);
        assert_eq!(SpecSummary::of("x", &spec, now()).cost, Some(2.0));
    }

    #[test]
    fn overview_shows_specs_running_tasks_errors_and_escapes_state_strings() {
        let mut state = fixture();
        state["specifications"]["user-auth"]["description"] =
            Value::String("<img src=x onerror=alert(1)>".into());
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
                now: now(),
            },
        );
        assert!(html.contains("href=\"/spec/user-auth\""), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!html.contains("<img"));
        assert!(html.contains("id=\"running-user-auth-1.1\""));
        assert!(html.contains("Add password hashing"));
        assert!(html.contains("Timeout after 300s"));
        assert!(html.contains("0.42 (limit 0.85)"));
        assert!(html.contains("class=\"limit\" x1=\"85\""));
        assert!(html.contains("&lt;b&gt;hi&lt;/b&gt;"));
        // Unset gauges say so.
        assert!(html.contains("<td class=\"value\">n/a</td>"));
        assert!(!html.contains("id=\"banner\""));
    }

    #[test]
    fn corrupt_state_shows_banner_and_last_good_data() {
        let f = frame(
            StateRead::Corrupt {
                path: PathBuf::from("/p/.claude/unified_state.json"),
                error: "expected value at line 1 column 1".into(),
            },
            Some(fixture()),
        );
        let html = spec_fragment(&f, "user-auth", now());
        assert!(html.contains("id=\"banner\""));
        assert!(html.contains("line 1 column 1"));
        assert!(html.contains("id=\"task-1.1\""));
        let missing = frame(
            StateRead::Missing {
                path: PathBuf::from("/p/.claude/unified_state.json"),
            },
            None,
        );
        let html = spec_fragment(&missing, "user-auth", now());
        assert!(html.contains("id=\"banner\"") && html.contains("No state file"));
    }

    #[test]
    fn spec_fragment_lists_tasks_in_id_order_with_status() {
        let f = frame(StateRead::Ok(Arc::new(fixture())), None);
        let html = spec_fragment(&f, "user-auth", now());
        let a = html.find("id=\"task-1\"").unwrap();
        let b = html.find("id=\"task-1.1\"").unwrap();
        let c = html.find("id=\"task-10\"").unwrap();
        assert!(a < b && b < c);
        assert!(
            html.contains("id=\"task-1.1\" class=\"st-in_progress\" data-status=\"in_progress\"")
        );
        assert!(html.contains("8m 30s"), "{html}");
    }

    #[test]
    fn markdown_never_passes_raw_html_or_script_links() {
        let html = markdown(
            "# Title\n\n<script>alert(1)</script>\n\nHi <b onclick=x>there</b> [a](javascript:alert(1)) [b](https://example.com) [c](design.md) ![i](data:text/html,x)\n",
        );
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
        let b = bar(Some(1.5), Some(0.8), "gauge");
        assert!(b.contains("width=\"100\"") && b.contains("fill over") && b.contains("x1=\"80\""));
        let b = bar(None, None, "gauge");
        assert!(!b.contains("fill"));
    }
}
