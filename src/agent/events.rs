//! Claude Code's event stream: what `claude -p … --output-format stream-json --verbose`
//! prints, one JSON object per line, kept in a run's `events.jsonl`.
//!
//! Owns: parsing one line into a [`Record`] of typed [`Event`]s (leniently: real lines
//! carry many more fields than the ones read here), the live [`Activity`] of a run read
//! incrementally from a stream that may be partial and still growing ([`EventReader`]),
//! and rendering records as readable lines ([`render`]) for `qw logs` and the dashboard,
//! with the one classifier of rendered lines ([`LineKind`]) both use.
//! Bounded: a line longer than [`MAX_LINE_BYTES`] is never buffered whole — it is
//! skipped as it streams past and stands as one [`Event::Oversized`] note saying its size
//! ([`BoundedLines`]); rendered text is cut at [`MAX_RENDERED_CHARS`] per line and
//! [`MAX_RENDERED_LINES`] per message, saying so.
//! Must not: read files, know about processes or judge the run's outcome (that is
//! [`super::outcome`], which reads the final `result` event). Callers pass bytes in.
//!
//! The shapes, as Claude Code 2.1.332 prints them (see `docs/CLAUDE_CODE.md`):
//! `{"type":"system","subtype":"init","session_id","cwd","model","permissionMode",…}`;
//! `{"type":"assistant","message":{"id","content":[text | tool_use | thinking],"usage"},
//! "timestamp",…}` — one line per content block, several lines sharing a message id;
//! `{"type":"user","message":{"content":[tool_result]},"timestamp",…}`;
//! `{"type":"system","subtype":"api_retry","attempt","max_retries","retry_delay_ms",
//! "error_status","error"}`; and last `{"type":"result",…}` (the object that
//! `--output-format json` prints alone).

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Tokens counted so far (input includes neither cache field).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tokens {
    /// Uncached input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Tokens written to the prompt cache.
    pub cache_creation: u64,
    /// Tokens read from the prompt cache.
    pub cache_read: u64,
}

impl Tokens {
    fn from_usage(usage: &Value) -> Tokens {
        let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
        Tokens {
            input: n("input_tokens"),
            output: n("output_tokens"),
            cache_creation: n("cache_creation_input_tokens"),
            cache_read: n("cache_read_input_tokens"),
        }
    }

    fn add(&mut self, other: Tokens) {
        self.input += other.input;
        self.output += other.output;
        self.cache_creation += other.cache_creation;
        self.cache_read += other.cache_read;
    }

    /// All tokens, input (cached or not) and output.
    pub fn total(&self) -> u64 {
        self.input + self.output + self.cache_creation + self.cache_read
    }
}

/// A tool call the agent made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    /// The tool-use id (`toolu_…`), which its result refers to.
    pub id: String,
    /// The tool (`Write`, `Bash`, `Read`, …).
    pub name: String,
    /// What it acts on: a file path, a command, a pattern, a URL (see [`tool_target`]).
    pub target: Option<String>,
    /// The whole input, as the model sent it.
    pub input: Value,
}

/// One permission Claude Code refused (the result's `permission_denials`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    /// The tool (`Write`, `Bash`, …).
    pub tool: String,
    /// What it would have acted on (see [`tool_target`]).
    pub target: Option<String>,
    /// The tool-use id, to find Claude Code's message in the stream.
    pub tool_use_id: Option<String>,
}

impl Denial {
    /// The refused call would have changed files (`Write`, `Edit`, `MultiEdit`,
    /// `NotebookEdit`): work the agent may claim is then not on disk. A refused command
    /// or fetch changed nothing by itself.
    pub fn changes_files(&self) -> bool {
        matches!(
            self.tool.as_str(),
            "Write" | "Edit" | "MultiEdit" | "NotebookEdit"
        )
    }
}

/// The final `result` event, as far as it is read here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultEvent {
    /// `is_error` (None when missing).
    pub is_error: Option<bool>,
    /// `subtype` (`success`, `error_max_turns`, …; never trusted alone).
    pub subtype: Option<String>,
    /// `num_turns`.
    pub num_turns: Option<u64>,
    /// USD this run cost (see [`run_cost_usd`]).
    pub cost_usd: Option<f64>,
    /// `duration_ms`.
    pub duration_ms: Option<u64>,
    /// The final text (`result`).
    pub text: Option<String>,
    /// Tokens of this run (`usage`).
    pub tokens: Tokens,
    /// `permission_denials`.
    pub denials: Vec<Denial>,
}

/// One thing that happened, from one line of the stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The session started (`system`/`init`).
    Init {
        /// The session id.
        session_id: Option<String>,
        /// The model.
        model: Option<String>,
        /// The working directory.
        cwd: Option<String>,
        /// The permission mode (`default`, `acceptEdits`, `bypassPermissions`, …).
        permission_mode: Option<String>,
        /// Claude Code's version.
        version: Option<String>,
    },
    /// Assistant text.
    Text {
        /// The text.
        text: String,
    },
    /// The model thought (the text is not kept: it may be omitted or long).
    Thinking,
    /// A tool call.
    ToolUse(ToolCall),
    /// A tool's answer.
    ToolResult {
        /// The call it answers.
        tool_use_id: String,
        /// The tool failed or was refused.
        is_error: bool,
        /// Claude Code refused the call (permission).
        denied: bool,
        /// The answer as text.
        text: String,
    },
    /// Claude Code retries an API call (`system`/`api_retry`).
    ApiRetry {
        /// This attempt.
        attempt: u64,
        /// Its limit.
        max_retries: u64,
        /// The wait before it.
        delay_ms: u64,
        /// The HTTP status that caused it.
        status: Option<u64>,
        /// The error kind (`overloaded`, …).
        error: Option<String>,
    },
    /// The run's final result.
    Result(ResultEvent),
    /// A line longer than [`MAX_LINE_BYTES`], skipped unread (qw's note, not Claude's).
    Oversized {
        /// The line's length in bytes (without its newline).
        bytes: u64,
    },
    /// Anything else (`system`/`compact_boundary`, new event types): kept by name.
    Other {
        /// `type` and `subtype` joined by `/`.
        kind: String,
    },
}

/// One line of the stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// `type` (`system`, `assistant`, `user`, `result`, …).
    pub kind: String,
    /// The line's `timestamp`, as written (RFC 3339), if it has one.
    pub timestamp: Option<String>,
    /// The session id the line names.
    pub session_id: Option<String>,
    /// For `assistant` lines: the API message id (lines of one message share it).
    pub message_id: Option<String>,
    /// For `assistant` lines: that message's usage.
    pub usage: Option<Tokens>,
    /// Set for lines of a sub-agent (the `Task` tool call they belong to).
    pub parent_tool_use_id: Option<String>,
    /// What happened.
    pub events: Vec<Event>,
}

/// A line that is not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a JSON event: `{snippet}`")]
pub struct Garbled {
    /// The start of the line.
    pub snippet: String,
}

/// Parse one line of the stream. Blank lines are `Ok(None)`.
pub fn parse_line(line: &[u8]) -> Result<Option<Record>, Garbled> {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(trimmed) {
        Ok(Value::Object(map)) => Ok(Some(record(&map))),
        _ => Err(Garbled {
            snippet: crate::fmt::clip(&String::from_utf8_lossy(trimmed), 80),
        }),
    }
}

/// Turn one stream object into a [`Record`].
pub fn record(map: &Map<String, Value>) -> Record {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let kind = s(map.get("type")).unwrap_or_default();
    let subtype = s(map.get("subtype"));
    let message = map.get("message");
    let mut rec = Record {
        kind: kind.clone(),
        timestamp: s(map.get("timestamp")),
        session_id: s(map.get("session_id")),
        message_id: None,
        usage: None,
        parent_tool_use_id: s(map.get("parent_tool_use_id")),
        events: Vec::new(),
    };
    match (kind.as_str(), subtype.as_deref()) {
        ("system", Some("init")) => rec.events.push(Event::Init {
            session_id: s(map.get("session_id")),
            model: s(map.get("model")),
            cwd: s(map.get("cwd")),
            permission_mode: s(map.get("permissionMode")),
            version: s(map.get("claude_code_version")),
        }),
        ("system", Some("api_retry")) => {
            let n = |k: &str| map.get(k).and_then(Value::as_u64);
            rec.events.push(Event::ApiRetry {
                attempt: n("attempt").unwrap_or(0),
                max_retries: n("max_retries").unwrap_or(0),
                delay_ms: n("retry_delay_ms").unwrap_or(0),
                status: n("error_status"),
                error: s(map.get("error")),
            });
        }
        ("assistant", _) => {
            rec.message_id = s(message.and_then(|m| m.get("id")));
            rec.usage = message.and_then(|m| m.get("usage")).map(Tokens::from_usage);
            for block in content(message) {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let text = s(block.get("text")).unwrap_or_default();
                        if !text.trim().is_empty() {
                            rec.events.push(Event::Text { text });
                        }
                    }
                    Some("thinking" | "redacted_thinking") => rec.events.push(Event::Thinking),
                    Some("tool_use" | "server_tool_use") => {
                        let name = s(block.get("name")).unwrap_or_default();
                        let input = block.get("input").cloned().unwrap_or(Value::Null);
                        rec.events.push(Event::ToolUse(ToolCall {
                            id: s(block.get("id")).unwrap_or_default(),
                            target: tool_target(&name, &input),
                            name,
                            input,
                        }));
                    }
                    _ => {}
                }
            }
        }
        ("user", _) => {
            let denied_ids = denied_ids(map);
            for block in content(message) {
                if block.get("type").and_then(Value::as_str) != Some("tool_result") {
                    continue;
                }
                let id = s(block.get("tool_use_id")).unwrap_or_default();
                rec.events.push(Event::ToolResult {
                    is_error: block.get("is_error").and_then(Value::as_bool) == Some(true),
                    denied: denied_ids.contains(&id),
                    text: result_text(block.get("content")),
                    tool_use_id: id,
                });
            }
        }
        ("result", _) => rec.events.push(Event::Result(result_event(map))),
        _ => rec.events.push(Event::Other {
            kind: match subtype {
                Some(sub) => format!("{kind}/{sub}"),
                None => kind.clone(),
            },
        }),
    }
    rec
}

fn content(message: Option<&Value>) -> impl Iterator<Item = &Map<String, Value>> {
    message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

/// Tool-use ids that Claude Code refused (`tool_result_meta[].permission_decision`).
fn denied_ids(map: &Map<String, Value>) -> HashSet<String> {
    map.get("tool_result_meta")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| {
            m.pointer("/permission_decision/decision")
                .and_then(Value::as_str)
                == Some("reject")
                || m.get("non_execution_kind").and_then(Value::as_str) == Some("user-rejected")
        })
        .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// A tool result's content (a string, or a list of text blocks) as one text.
fn result_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// What a tool call acts on, for one-line summaries: the file of `Write`, `Edit`, `Read`;
/// the command of `Bash`; the pattern of `Grep`/`Glob`; the URL or query of web tools;
/// the description of a sub-agent; else the first short string field.
pub fn tool_target(name: &str, input: &Value) -> Option<String> {
    let field = |k: &str| input.get(k).and_then(Value::as_str).map(str::to_owned);
    let keys: &[&str] = match name {
        "Write" | "Edit" | "MultiEdit" | "Read" => &["file_path", "path"],
        "NotebookEdit" | "NotebookRead" => &["notebook_path", "file_path"],
        "Bash" | "BashOutput" => &["command"],
        "Grep" | "Glob" => &["pattern"],
        "WebFetch" => &["url"],
        "WebSearch" => &["query"],
        "Task" | "Agent" => &["description", "prompt"],
        "Skill" => &["skill", "command"],
        _ => &[],
    };
    if let Some(t) = keys.iter().find_map(|k| field(k)) {
        return Some(match (name, field("path")) {
            ("Grep" | "Glob", Some(path)) => format!("{t} in {path}"),
            _ => t,
        });
    }
    if name == "TodoWrite" {
        let n = input
            .get("todos")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        return Some(format!("{n} item(s)"));
    }
    input
        .as_object()?
        .values()
        .find_map(|v| v.as_str().filter(|s| s.len() <= 200).map(str::to_owned))
}

/// The USD one run cost. On a resumed session Claude Code's `total_cost_usd` (and
/// `modelUsage`) add up the whole session; `model_usage_since_last_result` holds this
/// run's share, so it wins when present. Older output only has `cost_usd`.
pub fn run_cost_usd(map: &Map<String, Value>) -> Option<f64> {
    let finite = |v: Option<&Value>| v.and_then(Value::as_f64).filter(|x| x.is_finite());
    let since = map
        .get("model_usage_since_last_result")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
        .map(|models| {
            models
                .values()
                .filter_map(|m| finite(m.get("costUSD")))
                .sum::<f64>()
        });
    since
        .or_else(|| finite(map.get("total_cost_usd")))
        .or_else(|| finite(map.get("cost_usd")))
        .map(|c| c.max(0.0))
}

/// The `permission_denials` of a result object (strings or objects, leniently).
pub fn denials(map: &Map<String, Value>) -> Vec<Denial> {
    let Some(Value::Array(items)) = map.get("permission_denials") else {
        return Vec::new();
    };
    items
        .iter()
        .map(|d| match d {
            Value::Object(o) => {
                let tool = o
                    .get("tool_name")
                    .or_else(|| o.get("tool"))
                    .and_then(Value::as_str)
                    .unwrap_or("unknown tool")
                    .to_owned();
                let input = o.get("tool_input").cloned().unwrap_or(Value::Null);
                Denial {
                    target: tool_target(&tool, &input),
                    tool,
                    tool_use_id: o
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                }
            }
            Value::String(s) => Denial {
                tool: s.clone(),
                target: None,
                tool_use_id: None,
            },
            other => Denial {
                tool: other.to_string(),
                target: None,
                tool_use_id: None,
            },
        })
        .collect()
}

fn result_event(map: &Map<String, Value>) -> ResultEvent {
    ResultEvent {
        is_error: map.get("is_error").and_then(Value::as_bool),
        subtype: map
            .get("subtype")
            .and_then(Value::as_str)
            .map(str::to_owned),
        num_turns: map.get("num_turns").and_then(Value::as_u64),
        cost_usd: run_cost_usd(map),
        duration_ms: map.get("duration_ms").and_then(Value::as_u64),
        text: map.get("result").and_then(Value::as_str).map(str::to_owned),
        tokens: map.get("usage").map(Tokens::from_usage).unwrap_or_default(),
        denials: denials(map),
    }
}

/// The last tool call: its name and target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastTool {
    /// The tool.
    pub name: String,
    /// What it acts on.
    pub target: Option<String>,
}

/// What an agent has done so far, from its event stream. Everything is "so far": a
/// run still going has no result yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Activity {
    /// The session id (from the first line that names one).
    pub session_id: Option<String>,
    /// The model.
    pub model: Option<String>,
    /// The permission mode Claude Code runs in.
    pub permission_mode: Option<String>,
    /// Model turns: API messages the assistant sent (the result's `num_turns` once known).
    pub turns: u64,
    /// The last tool call.
    pub last_tool: Option<LastTool>,
    /// Tool calls made.
    pub tool_calls: u64,
    /// The time of the last event: its own `timestamp`, else when the caller read it.
    pub last_event_at: Option<String>,
    /// Tokens so far (per API message while running; the result's usage at the end).
    pub tokens: Tokens,
    /// USD so far: known only from the final result (the stream carries no running cost).
    pub cost_usd: Option<f64>,
    /// Events read.
    pub events: u64,
    /// Lines that were not JSON objects (skipped).
    pub garbled: u64,
    /// Lines over [`MAX_LINE_BYTES`] (skipped unread).
    pub oversized: u64,
    /// An API retry Claude Code is waiting on (cleared by the next event).
    pub retrying: Option<String>,
    /// The result arrived.
    pub finished: bool,
    /// The result's `is_error`.
    pub is_error: Option<bool>,
}

impl Activity {
    /// Take one record into account; `observed_at` stands in for lines without a timestamp.
    pub fn apply(&mut self, rec: &Record, observed_at: Option<&str>, seen: &mut HashSet<String>) {
        self.events += 1;
        if self.session_id.is_none() {
            self.session_id.clone_from(&rec.session_id);
        }
        if let Some(at) = rec.timestamp.as_deref().or(observed_at) {
            self.last_event_at = Some(at.to_owned());
        }
        if rec.kind == "assistant"
            && let Some(id) = &rec.message_id
            && seen.insert(id.clone())
        {
            self.turns += 1;
            if let Some(u) = rec.usage {
                self.tokens.add(u);
            }
        }
        self.retrying = None;
        for ev in &rec.events {
            match ev {
                Event::Init {
                    session_id,
                    model,
                    permission_mode,
                    ..
                } => {
                    if session_id.is_some() {
                        self.session_id.clone_from(session_id);
                    }
                    self.model.clone_from(model);
                    self.permission_mode.clone_from(permission_mode);
                }
                Event::ToolUse(call) => {
                    self.tool_calls += 1;
                    self.last_tool = Some(LastTool {
                        name: call.name.clone(),
                        target: call.target.clone(),
                    });
                }
                Event::ApiRetry {
                    attempt,
                    max_retries,
                    status,
                    error,
                    ..
                } => {
                    self.retrying = Some(format!(
                        "API retry {attempt}/{max_retries}{}",
                        retry_cause(*status, error.as_deref())
                    ));
                }
                Event::Result(r) => {
                    self.finished = true;
                    self.is_error = r.is_error;
                    self.cost_usd = r.cost_usd;
                    if r.tokens != Tokens::default() {
                        self.tokens = r.tokens;
                    }
                    if let Some(n) = r.num_turns {
                        self.turns = n;
                    }
                }
                Event::Oversized { .. } => self.oversized += 1,
                Event::Text { .. }
                | Event::Thinking
                | Event::ToolResult { .. }
                | Event::Other { .. } => {}
            }
        }
    }
}

/// The longest event line read: a longer one is skipped as it streams past (never held
/// whole) and stands as one [`Event::Oversized`] note. Claude Code's lines are small
/// except a `Write` of a big file or a long answer; 4 MiB keeps those.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// One line out of [`BoundedLines`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A whole line (without its newline), at most the limit long.
    Whole(&'a [u8]),
    /// A line over the limit, skipped: its length in bytes (without its newline).
    Oversized(u64),
}

/// Splits a byte stream into lines, holding at most `max` bytes of an unfinished line:
/// a longer line is dropped as it streams past and reported once, with its size, when
/// its newline (or the end) comes.
#[derive(Debug, Clone)]
pub struct BoundedLines {
    max: usize,
    pending: Vec<u8>,
    /// Bytes of an over-long line skipped so far (the line has not ended yet).
    skipping: Option<u64>,
}

impl Default for BoundedLines {
    fn default() -> BoundedLines {
        BoundedLines::new(MAX_LINE_BYTES)
    }
}

impl BoundedLines {
    /// Lines of at most `max` bytes.
    pub fn new(max: usize) -> BoundedLines {
        BoundedLines {
            max,
            pending: Vec::new(),
            skipping: None,
        }
    }

    /// Bytes of an unfinished last line held (at most the limit).
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// True while inside an over-long line.
    pub fn skipping(&self) -> bool {
        self.skipping.is_some()
    }

    /// Take the next bytes; `each` gets every line they complete.
    pub fn push(&mut self, mut bytes: &[u8], mut each: impl FnMut(Line<'_>)) {
        while !bytes.is_empty() {
            let nl = bytes.iter().position(|&b| b == b'\n');
            if let Some(skipped) = self.skipping {
                match nl {
                    None => {
                        self.skipping = Some(skipped + bytes.len() as u64);
                        return;
                    }
                    Some(i) => {
                        self.skipping = None;
                        each(Line::Oversized(skipped + i as u64));
                        bytes = &bytes[i + 1..];
                        continue;
                    }
                }
            }
            let part = nl.unwrap_or(bytes.len());
            if self.pending.len() + part > self.max {
                let skipped = (self.pending.len() + part) as u64;
                // Free the buffer: a huge line must not keep its memory either.
                self.pending = Vec::new();
                match nl {
                    None => {
                        self.skipping = Some(skipped);
                        return;
                    }
                    Some(i) => {
                        each(Line::Oversized(skipped));
                        bytes = &bytes[i + 1..];
                        continue;
                    }
                }
            }
            self.pending.extend_from_slice(&bytes[..part]);
            match nl {
                None => return,
                Some(i) => {
                    each(Line::Whole(&self.pending));
                    self.pending.clear();
                    bytes = &bytes[i + 1..];
                }
            }
        }
    }

    /// The stream ended: its last line, if it had no newline.
    pub fn finish(&mut self, mut each: impl FnMut(Line<'_>)) {
        if let Some(skipped) = self.skipping.take() {
            each(Line::Oversized(skipped));
        } else if !self.pending.is_empty() {
            each(Line::Whole(&self.pending));
        }
        self.pending = Vec::new();
    }
}

/// Reads a stream incrementally: feed it the bytes appended since the last call (read
/// the file from [`EventReader::offset`]); a partial last line waits for the rest, and a
/// line over [`MAX_LINE_BYTES`] is skipped ([`Event::Oversized`]) without being held.
#[derive(Debug, Clone, Default)]
pub struct EventReader {
    lines: BoundedLines,
    offset: u64,
    activity: Activity,
    seen: HashSet<String>,
}

impl EventReader {
    /// A reader at the start of a stream.
    pub fn new() -> EventReader {
        EventReader::default()
    }

    /// A reader that skips lines over `max` bytes (tests; [`MAX_LINE_BYTES`] otherwise).
    pub fn with_max_line(max: usize) -> EventReader {
        EventReader {
            lines: BoundedLines::new(max),
            ..EventReader::default()
        }
    }

    /// Bytes fed so far: where to read the file on from.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The activity so far.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// Bytes of an unfinished last line (a stream cut here never got its end); at most
    /// [`MAX_LINE_BYTES`] — an over-long line is not held.
    pub fn pending(&self) -> &[u8] {
        self.lines.pending()
    }

    /// Take the next bytes of the stream; returns the records of the lines they complete
    /// (garbled lines are counted in [`Activity::garbled`] and skipped; an over-long line
    /// is one [`Event::Oversized`] record).
    /// `observed_at` (RFC 3339) stands in for lines that carry no timestamp.
    pub fn feed(&mut self, bytes: &[u8], observed_at: Option<&str>) -> Vec<Record> {
        self.offset += bytes.len() as u64;
        let mut out = Vec::new();
        let (activity, seen) = (&mut self.activity, &mut self.seen);
        self.lines.push(bytes, |line| {
            take_line(line, observed_at, activity, seen, &mut out);
        });
        out
    }

    /// The stream is complete (the writer is gone): a last line without its newline is
    /// read if it parses, else counted as garbled.
    pub fn finish(&mut self, observed_at: Option<&str>) -> Vec<Record> {
        let mut out = Vec::new();
        let (activity, seen) = (&mut self.activity, &mut self.seen);
        self.lines.finish(|line| {
            take_line(line, observed_at, activity, seen, &mut out);
        });
        out
    }
}

fn take_line(
    line: Line<'_>,
    observed_at: Option<&str>,
    activity: &mut Activity,
    seen: &mut HashSet<String>,
    out: &mut Vec<Record>,
) {
    let rec = match line {
        Line::Oversized(bytes) => Record {
            kind: "oversized".into(),
            timestamp: None,
            session_id: None,
            message_id: None,
            usage: None,
            parent_tool_use_id: None,
            events: vec![Event::Oversized { bytes }],
        },
        Line::Whole(l) => match parse_line(l) {
            Ok(Some(rec)) => rec,
            Ok(None) => return,
            Err(_) => {
                activity.garbled += 1;
                return;
            }
        },
    };
    activity.apply(&rec, observed_at, seen);
    out.push(rec);
}

/// The activity of a whole stream at once (a finished run's `events.jsonl`).
pub fn read_activity(bytes: &[u8]) -> Activity {
    let mut r = EventReader::new();
    r.feed(bytes, None);
    r.finish(None);
    r.activity
}

/// How [`render`] shows records.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Paths inside this directory are shown relative to it (the session's cwd).
    pub cwd: Option<std::path::PathBuf>,
    /// Prefix each line with the record's time (`HH:MM:SS`), when it has one.
    pub times: bool,
    /// At most this many lines of one assistant text (0: no limit).
    pub max_text_lines: usize,
}

/// A record as readable lines: the session start, assistant text, one line per tool call
/// and per tool result, API retries, and the final summary with any denied permission.
/// A rendering of [`Event::Init`] also sets `opts.cwd` when unset, so later paths
/// are shown relative to the session's directory.
pub fn render(rec: &Record, opts: &mut RenderOptions) -> Vec<String> {
    let mut lines = Vec::new();
    let prefix = {
        let mut p = String::new();
        if opts.times
            && let Some(t) = rec.timestamp.as_deref().and_then(clock)
        {
            p.push_str(&format!("[{t}] "));
        }
        if rec.parent_tool_use_id.is_some() {
            p.push_str("  ↳ ");
        }
        p
    };
    for ev in &rec.events {
        match ev {
            Event::Init {
                session_id,
                model,
                cwd,
                permission_mode,
                version,
            } => {
                if opts.cwd.is_none() {
                    opts.cwd = cwd.as_ref().map(Into::into);
                }
                let parts: Vec<String> = [
                    session_id.as_ref().map(|s| format!("session {s}")),
                    model.clone(),
                    permission_mode.as_ref().map(|m| format!("mode {m}")),
                    cwd.clone(),
                    version.as_ref().map(|v| format!("Claude Code {v}")),
                ]
                .into_iter()
                .flatten()
                .map(|p| one_line(&p, 200))
                .collect();
                lines.push(format!("{prefix}started: {}", parts.join(" · ")));
            }
            Event::Text { text } => {
                let limit = match opts.max_text_lines {
                    0 => MAX_RENDERED_LINES,
                    n => n.min(MAX_RENDERED_LINES),
                };
                let mut all = text.trim().lines();
                for (i, l) in all.by_ref().take(limit).enumerate() {
                    let head = if i == 0 { "assistant: " } else { "  " };
                    lines.push(format!("{prefix}{head}{}", cut(l, MAX_RENDERED_CHARS)));
                }
                let more = all.count();
                if more > 0 {
                    lines.push(format!("{prefix}  … ({more} more lines)"));
                }
            }
            Event::Thinking => lines.push(format!("{prefix}(thinking)")),
            Event::ToolUse(call) => {
                let target = call
                    .target
                    .as_deref()
                    .map(|t| format!(" {}", one_line(&shown(t, opts.cwd.as_deref()), 200)))
                    .unwrap_or_default();
                let extra = match (call.name.as_str(), call.input.get("content")) {
                    ("Write", Some(Value::String(c))) => format!(" ({} bytes)", c.len()),
                    _ => String::new(),
                };
                lines.push(format!(
                    "{prefix}→ {}{target}{extra}",
                    one_line(&call.name, 80)
                ));
            }
            Event::ToolResult {
                is_error,
                denied,
                text,
                ..
            } => {
                let word = if *denied {
                    "denied"
                } else if *is_error {
                    "error"
                } else {
                    "ok"
                };
                let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                let more = text.lines().filter(|l| !l.trim().is_empty()).count();
                let more = if more > 1 {
                    format!(" (+{} lines)", more - 1)
                } else {
                    String::new()
                };
                lines.push(format!("{prefix}← {word}: {}{more}", one_line(first, 160)));
            }
            Event::ApiRetry {
                attempt,
                max_retries,
                delay_ms,
                status,
                error,
            } => lines.push(format!(
                "{prefix}API retry {attempt}/{max_retries} in {:.1}s{}",
                *delay_ms as f64 / 1000.0,
                retry_cause(*status, error.as_deref())
            )),
            Event::Result(r) => {
                let word = match r.is_error {
                    Some(false) => "success".to_owned(),
                    Some(true) => format!("error ({})", r.subtype.as_deref().unwrap_or("?")),
                    None => "unknown (no is_error)".to_owned(),
                };
                let mut parts = vec![format!("result: {word}")];
                if let Some(n) = r.num_turns {
                    parts.push(format!("{n} turn(s)"));
                }
                if let Some(c) = r.cost_usd {
                    parts.push(format!("${c:.4}"));
                }
                parts.push(format!(
                    "{} in / {} out tokens",
                    r.tokens.input + r.tokens.cache_creation + r.tokens.cache_read,
                    r.tokens.output
                ));
                if let Some(ms) = r.duration_ms {
                    parts.push(format!("{:.1}s", ms as f64 / 1000.0));
                }
                lines.push(format!("{prefix}{}", parts.join(" · ")));
                for d in &r.denials {
                    let target = d
                        .target
                        .as_deref()
                        .map(|t| format!(" {}", one_line(&shown(t, opts.cwd.as_deref()), 200)))
                        .unwrap_or_default();
                    lines.push(format!("{prefix}  permission denied: {}{target}", d.tool));
                }
                if r.is_error == Some(true)
                    && let Some(t) = &r.text
                {
                    lines.push(format!("{prefix}  {}", one_line(t, 300)));
                }
            }
            Event::Oversized { bytes } => lines.push(format!(
                "{prefix}(skipped an event line of {} bytes: over the {} byte limit)",
                bytes, MAX_LINE_BYTES
            )),
            Event::Other { .. } => {}
        }
    }
    lines
}

/// At most this many characters of one line of assistant text are rendered.
pub const MAX_RENDERED_CHARS: usize = 2000;
/// At most this many lines of one assistant text are rendered.
pub const MAX_RENDERED_LINES: usize = 1000;

/// `line` cut at `max` characters, saying how long it was.
fn cut(line: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match line.char_indices().nth(max) {
        None => line.into(),
        Some((at, _)) => format!(
            "{}… (truncated: {} chars)",
            &line[..at],
            line.chars().count()
        )
        .into(),
    }
}

/// What a rendered line (of [`render`]) is: the one classifier of `qw logs --json`'s
/// `kind` and the dashboard run page's styling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// The session started.
    Start,
    /// Assistant text.
    Text,
    /// A tool call.
    Tool,
    /// A tool answered.
    ToolOk,
    /// A tool failed or was refused.
    ToolError,
    /// An API retry.
    Retry,
    /// The final result and its notes.
    Result,
    /// Anything else (thinking, a skipped line).
    Other,
}

impl LineKind {
    /// Classify a line [`render`] made (without the time prefix of
    /// [`RenderOptions::times`]).
    pub fn of(line: &str) -> LineKind {
        let l = line.trim_start().trim_start_matches('↳').trim_start();
        if l.starts_with("started:") {
            LineKind::Start
        } else if l.starts_with('→') {
            LineKind::Tool
        } else if l.starts_with("← ok") {
            LineKind::ToolOk
        } else if l.starts_with('←') {
            LineKind::ToolError
        } else if l.starts_with("API retry") {
            LineKind::Retry
        } else if l.starts_with("result:") || l.starts_with("permission denied") {
            LineKind::Result
        } else if l.starts_with("(thinking)") || l.starts_with("(skipped an event line") {
            LineKind::Other
        } else {
            LineKind::Text
        }
    }

    /// The name `qw logs --json` prints (`start`, `text`, `tool`, `tool_ok`,
    /// `tool_error`, `retry`, `result`, `other`).
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Start => "start",
            LineKind::Text => "text",
            LineKind::Tool => "tool",
            LineKind::ToolOk => "tool_ok",
            LineKind::ToolError => "tool_error",
            LineKind::Retry => "retry",
            LineKind::Result => "result",
            LineKind::Other => "other",
        }
    }
}

/// A path inside `cwd` shown relative to it; anything else unchanged.
fn shown(target: &str, cwd: Option<&Path>) -> String {
    match cwd {
        Some(cwd) => Path::new(target)
            .strip_prefix(cwd)
            .ok()
            .filter(|rel| !rel.as_os_str().is_empty())
            .map_or_else(|| target.to_owned(), |rel| rel.display().to_string()),
        None => target.to_owned(),
    }
}

/// `HH:MM:SS` of an RFC 3339 time, in local time.
fn clock(ts: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(ts).ok()?;
    Some(
        t.with_timezone(&chrono::Local)
            .format("%H:%M:%S")
            .to_string(),
    )
}

/// Why the API call is retried, as a suffix: ` after 529 (overloaded)`.
fn retry_cause(status: Option<u64>, error: Option<&str>) -> String {
    let status = status.map(|s| format!(" after {s}")).unwrap_or_default();
    let error = error.map(|e| format!(" ({e})")).unwrap_or_default();
    format!("{status}{error}")
}

fn one_line(text: &str, max: usize) -> String {
    crate::fmt::clip(&crate::fmt::fold_whitespace(text), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = include_str!("../../tests/fixtures/claude_stream_json_write.jsonl");
    const DENIED: &str = include_str!("../../tests/fixtures/claude_result_permission_denied.json");

    fn records(text: &str) -> Vec<Record> {
        let mut r = EventReader::new();
        let mut out = r.feed(text.as_bytes(), None);
        out.extend(r.finish(None));
        out
    }

    #[test]
    fn the_fixture_stream_reads_as_init_write_result_text_and_result() {
        let recs = records(STREAM);
        let kinds: Vec<&str> = recs.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["system", "assistant", "user", "assistant", "result"]
        );
        let Event::ToolUse(call) = &recs[1].events[0] else {
            panic!("{:?}", recs[1]);
        };
        assert_eq!(call.name, "Write");
        assert_eq!(call.target.as_deref(), Some("/home/dev/project/hello.txt"));
        assert!(matches!(
            &recs[2].events[0],
            Event::ToolResult { is_error: false, denied: false, text, .. } if text.starts_with("File created")
        ));
        let Event::Result(res) = &recs[4].events[0] else {
            panic!()
        };
        assert_eq!(res.is_error, Some(false));
        assert_eq!(res.num_turns, Some(2));
        assert_eq!(res.cost_usd, Some(0.01));
        assert_eq!(res.tokens.input, 2000);
        assert_eq!(
            res.text.as_deref(),
            Some("Done. I wrote the file as asked.")
        );

        let a = read_activity(STREAM.as_bytes());
        assert_eq!(
            a.session_id.as_deref(),
            Some("40499eed-3697-4376-8424-4e652ae596e8")
        );
        assert_eq!(a.permission_mode.as_deref(), Some("acceptEdits"));
        assert_eq!(a.turns, 2);
        assert_eq!(
            a.last_tool,
            Some(LastTool {
                name: "Write".into(),
                target: Some("/home/dev/project/hello.txt".into())
            })
        );
        assert_eq!(a.tool_calls, 1);
        assert_eq!(a.last_event_at.as_deref(), Some("2026-12-01T16:54:53.552Z"));
        assert!(a.finished && a.is_error == Some(false));
        assert_eq!(a.cost_usd, Some(0.01));
        assert_eq!((a.tokens.input, a.tokens.output), (2000, 100));
        assert_eq!(a.events, 5);
        assert_eq!(a.garbled, 0);
    }

    #[test]
    fn activity_while_running_counts_messages_and_has_no_cost_yet() {
        // Everything before the result: two API messages, one tool call.
        let running: String = STREAM.lines().take(4).map(|l| format!("{l}\n")).collect();
        let a = read_activity(running.as_bytes());
        assert!(!a.finished);
        assert_eq!(a.turns, 2);
        assert_eq!(a.cost_usd, None, "no running cost in the stream");
        assert_eq!((a.tokens.input, a.tokens.output), (2000, 2));
        assert_eq!(a.last_tool.as_ref().map(|t| t.name.as_str()), Some("Write"));
    }

    #[test]
    fn byte_by_byte_feeding_equals_reading_at_once() {
        let whole = read_activity(STREAM.as_bytes());
        let mut r = EventReader::new();
        let mut recs = 0;
        for b in STREAM.as_bytes() {
            recs += r.feed(std::slice::from_ref(b), None).len();
        }
        recs += r.finish(None).len();
        assert_eq!(recs, 5);
        assert_eq!(r.activity(), &whole);
        assert_eq!(r.offset(), STREAM.len() as u64);
    }

    #[test]
    fn a_cut_stream_keeps_the_partial_line_pending_and_garbage_is_counted() {
        let cut = &STREAM[..STREAM.len() - 40];
        let mut r = EventReader::new();
        let recs = r.feed(cut.as_bytes(), Some("2030-01-01T00:00:00Z"));
        assert_eq!(recs.len(), 4, "the result line is incomplete");
        assert!(!r.pending().is_empty());
        assert!(!r.activity().finished);
        // The rest arrives later: the result completes.
        let recs = r.feed(&STREAM.as_bytes()[cut.len()..], None);
        assert_eq!(recs.len(), 1);
        assert!(r.activity().finished);

        let garbled = format!("not json at all\n{{\"type\":\"assistant\"\n{STREAM}[1,2]\n");
        let a = read_activity(garbled.as_bytes());
        assert_eq!(a.garbled, 3, "plain text, a broken object, an array");
        assert!(a.finished && a.turns == 2);

        // A stream cut mid-line and never finished: the fragment is garbled.
        let mut r = EventReader::new();
        r.feed(cut.as_bytes(), None);
        assert!(r.finish(None).is_empty());
        assert_eq!(r.activity().garbled, 1);
        assert!(!r.activity().finished);
        assert_eq!(read_activity(b"").events, 0);
    }

    #[test]
    fn lines_without_timestamp_take_the_observed_time() {
        let mut r = EventReader::new();
        r.feed(
            b"{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s\"}\n",
            Some("2030-01-01T00:00:00Z"),
        );
        assert_eq!(
            r.activity().last_event_at.as_deref(),
            Some("2030-01-01T00:00:00Z")
        );
        assert_eq!(r.activity().session_id.as_deref(), Some("s"));
    }

    #[test]
    fn api_retries_and_denials_are_read() {
        let retry = r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":592,"error_status":529,"error":"overloaded","session_id":"s"}"#;
        let a = read_activity(format!("{retry}\n").as_bytes());
        assert_eq!(
            a.retrying.as_deref(),
            Some("API retry 1/10 after 529 (overloaded)")
        );
        let map: Map<String, Value> = serde_json::from_str(DENIED).unwrap();
        let d = denials(&map);
        assert_eq!(
            d,
            [Denial {
                tool: "Write".into(),
                target: Some("/home/dev/project/.claude/specs/demo/requirements.md".into()),
                tool_use_id: Some("toolu_0003".into()),
            }]
        );
        let denied_result = r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","content":"Claude requested permissions to edit /p/.claude/x which is a sensitive file.","is_error":true,"tool_use_id":"toolu_0013"}]},"tool_result_meta":[{"id":"toolu_0013","non_execution_kind":"user-rejected","permission_decision":{"decision":"reject","source":"config"}}]}"#;
        let rec = parse_line(denied_result.as_bytes()).unwrap().unwrap();
        assert!(matches!(
            &rec.events[0],
            Event::ToolResult {
                denied: true,
                is_error: true,
                ..
            }
        ));
    }

    #[test]
    fn resumed_runs_cost_only_their_own_share() {
        let resumed = serde_json::json!({
            "type": "result", "is_error": false, "total_cost_usd": 0.0126,
            "model_usage_since_last_result": {"m": {"costUSD": 0.0042}}
        });
        assert_eq!(run_cost_usd(resumed.as_object().unwrap()), Some(0.0042));
        let plain = serde_json::json!({"total_cost_usd": 0.5});
        assert_eq!(run_cost_usd(plain.as_object().unwrap()), Some(0.5));
        let old = serde_json::json!({"cost_usd": 0.25});
        assert_eq!(run_cost_usd(old.as_object().unwrap()), Some(0.25));
        assert_eq!(run_cost_usd(&Map::new()), None);
    }

    #[test]
    fn targets_of_common_tools() {
        let t = |name: &str, input: Value| tool_target(name, &input);
        assert_eq!(
            t(
                "Bash",
                serde_json::json!({"command": "cargo test", "description": "x"})
            )
            .as_deref(),
            Some("cargo test")
        );
        assert_eq!(
            t(
                "Grep",
                serde_json::json!({"pattern": "fn main", "path": "src"})
            )
            .as_deref(),
            Some("fn main in src")
        );
        assert_eq!(
            t(
                "Edit",
                serde_json::json!({"file_path": "/a/b.rs", "old_string": "x"})
            )
            .as_deref(),
            Some("/a/b.rs")
        );
        assert_eq!(
            t("TodoWrite", serde_json::json!({"todos": [1, 2]})).as_deref(),
            Some("2 item(s)")
        );
        assert_eq!(
            t("Mystery", serde_json::json!({"n": 1, "what": "thing"})).as_deref(),
            Some("thing")
        );
        assert_eq!(t("Mystery", Value::Null), None);
    }

    #[test]
    fn rendering_the_fixture_gives_one_line_per_step() {
        let mut opts = RenderOptions::default();
        let lines: Vec<String> = records(STREAM)
            .iter()
            .flat_map(|r| render(r, &mut opts))
            .collect();
        assert_eq!(lines.len(), 5, "{lines:#?}");
        assert!(
            lines[0].starts_with("started: session 40499eed"),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("mode acceptEdits"));
        assert_eq!(
            lines[1], "→ Write hello.txt (10 bytes)",
            "relative to the cwd"
        );
        assert!(lines[2].starts_with("← ok: File created successfully"));
        assert_eq!(lines[3], "assistant: Done. I wrote the file as asked.");
        assert_eq!(
            lines[4],
            "result: success · 2 turn(s) · $0.0100 · 2000 in / 100 out tokens · 0.1s"
        );

        let denied = format!("{}\n", DENIED.replace('\n', ""));
        let lines: Vec<String> = records(&denied)
            .iter()
            .flat_map(|r| render(r, &mut RenderOptions::default()))
            .collect();
        assert_eq!(
            lines[1],
            "  permission denied: Write /home/dev/project/.claude/specs/demo/requirements.md"
        );

        let long = serde_json::json!({"type":"assistant","message":{"id":"m","content":[{"type":"text","text":"a\nb\nc\nd"}]},"timestamp":"2026-12-01T16:54:53.552Z"});
        let rec = record(long.as_object().unwrap());
        let mut opts = RenderOptions {
            max_text_lines: 2,
            times: true,
            ..RenderOptions::default()
        };
        let lines = render(&rec, &mut opts);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with('[') && lines[0].ends_with("] assistant: a"));
        assert!(lines[2].ends_with("… (2 more lines)"));
    }

    #[test]
    fn an_over_long_line_is_skipped_as_it_streams_and_noted_with_its_size() {
        let lines: Vec<&str> = STREAM.lines().collect();
        let huge = format!(
            "{{\"type\":\"assistant\",\"x\":\"{}\"}}",
            "a".repeat(20_000)
        );
        // Fed in small pieces: the huge line never sits whole in the reader.
        let whole = format!("{}\n{huge}\n{}\n", lines[0], lines[1..].join("\n"));
        let mut r = EventReader::with_max_line(8192);
        let mut recs = Vec::new();
        let mut held = 0;
        for piece in whole.as_bytes().chunks(100) {
            recs.extend(r.feed(piece, None));
            held = held.max(r.pending().len());
        }
        recs.extend(r.finish(None));
        assert!(held <= 8192, "held {held} bytes of one line");
        let kinds: Vec<&str> = recs.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "system",
                "oversized",
                "assistant",
                "user",
                "assistant",
                "result"
            ]
        );
        assert_eq!(
            recs[1].events,
            [Event::Oversized {
                bytes: huge.len() as u64
            }]
        );
        let a = r.activity();
        assert_eq!((a.oversized, a.garbled), (1, 0));
        assert!(
            a.finished && a.turns == 2,
            "the lines after it are read: {a:?}"
        );
        let shown = render(&recs[1], &mut RenderOptions::default());
        assert_eq!(
            shown,
            [format!(
                "(skipped an event line of {} bytes: over the {MAX_LINE_BYTES} byte limit)",
                huge.len()
            )]
        );
        assert_eq!(LineKind::of(&shown[0]), LineKind::Other);

        // One piece holding it all, a line just at the limit, and a huge unfinished
        // last line (the writer still going, then gone).
        let mut r = EventReader::with_max_line(10);
        let recs = r.feed(
            b"0123456789\n0123456789A\n{}\nxxxxxxxxxxxxxxxxxxxxxxxx",
            None,
        );
        assert_eq!(recs.len(), 2, "{recs:?}");
        assert_eq!(recs[0].events, [Event::Oversized { bytes: 11 }]);
        assert_eq!(
            r.activity().garbled,
            1,
            "the 10-byte line is read (not JSON)"
        );
        assert!(
            r.pending().is_empty(),
            "the unfinished huge line is not held"
        );
        r.feed(b"yyyy", None);
        let last = r.finish(None);
        assert_eq!(last[0].events, [Event::Oversized { bytes: 28 }]);
    }

    #[test]
    fn long_assistant_text_is_cut_and_says_so() {
        let text = format!("{}\nsecond", "x".repeat(3 * MAX_RENDERED_CHARS));
        let rec = record(
            serde_json::json!({"type":"assistant","message":{"id":"m","content":[
                {"type":"text","text": text}]}})
            .as_object()
            .unwrap(),
        );
        let lines = render(&rec, &mut RenderOptions::default());
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].len() < MAX_RENDERED_CHARS + 100,
            "{}",
            lines[0].len()
        );
        assert!(
            lines[0].ends_with(&format!("… (truncated: {} chars)", 3 * MAX_RENDERED_CHARS)),
            "{}",
            &lines[0][lines[0].len() - 60..]
        );
        assert_eq!(lines[1], "  second");
        let many = (0..MAX_RENDERED_LINES + 5)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        let rec = record(
            serde_json::json!({"type":"assistant","message":{"id":"m","content":[
                {"type":"text","text": many}]}})
            .as_object()
            .unwrap(),
        );
        let lines = render(&rec, &mut RenderOptions::default());
        assert_eq!(lines.len(), MAX_RENDERED_LINES + 1);
        assert_eq!(lines.last().unwrap(), "  … (5 more lines)");
    }
}
