//! A scripted Anthropic Messages API for the real Claude Code CLI, so tests drive the
//! real `claude` without the network or a key.
//!
//! Point the CLI at it with [`MessagesApi::claude_env`] (`ANTHROPIC_BASE_URL`, a dummy
//! `ANTHROPIC_API_KEY`, `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`, a temporary `HOME`).
//! Claude Code 2.1.332 then calls nothing but `POST /v1/messages?beta=true` (streaming);
//! `POST /v1/messages/count_tokens` and non-streaming calls are answered too, and every
//! request — whatever its path — is recorded.
//!
//! The "model" is a [`Model`]: rules over the conversation. The *prompt* of a request is
//! the text of its last user message that carries no tool result (the `-p` prompt, or the
//! prompt of a resumed session); the first rule whose text the prompt contains answers.
//! Its [`Step`]s are played one per assistant turn: the step index is the number of
//! assistant messages after the prompt, so `[Step::write(..), Step::text(..)]` makes the
//! agent call Write, then — once Claude Code sent the tool result back — answer. After
//! the last step the model says "Done." (a turn never repeats a tool call forever).
//!
//! ```ignore
//! let api = MessagesApi::start(
//!     Model::new()
//!         .when("in the requirements phase", [Step::text("# Requirements Document\n…")])
//!         .when("Implement task 1 only", [Step::write("hello.txt", "hello\n"), Step::text("Wrote it.")])
//!         .when("HANG", [Step::Hang]),
//! );
//! // … run claude with api.claude_env(&home) …
//! assert!(api.prompts().iter().any(|p| p.contains("requirements phase")));
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};

/// What the model does in one assistant turn.
#[derive(Debug, Clone)]
pub enum Step {
    /// Answer with text and end the turn.
    Text(String),
    /// Call the Write tool; a relative path is taken from the session's working
    /// directory (read from the system prompt).
    Write {
        /// The file.
        path: String,
        /// Its contents.
        content: String,
    },
    /// Call the Bash tool.
    Bash(String),
    /// Never answer (the request stays open until the server stops).
    Hang,
    /// Send the start of the message at once, the rest after the delay.
    Slow(Duration, Box<Step>),
    /// Send the start of the message at once, the rest when the test opens the gate
    /// (an answer that is slow for exactly as long as a test needs).
    Held(Gate, Box<Step>),
    /// Answer with an HTTP error (`{"type":"error","error":{type, message}}`).
    Error {
        /// The HTTP status.
        status: u16,
        /// The error type (`rate_limit_error`, `overloaded_error`, …).
        kind: String,
        /// The message.
        message: String,
        /// `retry-after` seconds, if sent. Claude Code gives up at once on a 429 whose
        /// wait is long, and retries with backoff (`system`/`api_retry` events) otherwise.
        retry_after: Option<u64>,
    },
}

impl Step {
    /// Answer with `text`.
    pub fn text(text: impl Into<String>) -> Step {
        Step::Text(text.into())
    }
    /// Call Write.
    pub fn write(path: impl Into<String>, content: impl Into<String>) -> Step {
        Step::Write {
            path: path.into(),
            content: content.into(),
        }
    }
    /// Call Bash.
    pub fn bash(command: impl Into<String>) -> Step {
        Step::Bash(command.into())
    }
    /// `step`, but its content only after `delay`.
    pub fn slow(delay: Duration, step: Step) -> Step {
        Step::Slow(delay, Box::new(step))
    }
    /// `step`, but its content only once `gate` is open.
    pub fn held(gate: &Gate, step: Step) -> Step {
        Step::Held(gate.clone(), Box::new(step))
    }
    /// HTTP 429, a usage/rate limit that resets in an hour (`retry-after: 3600`).
    pub fn rate_limited() -> Step {
        Step::Error {
            status: 429,
            kind: "rate_limit_error".into(),
            message: "This request would exceed your account's rate limit. Please try again later."
                .into(),
            retry_after: Some(3600),
        }
    }
    /// HTTP 529, the API is overloaded.
    pub fn overloaded() -> Step {
        Step::Error {
            status: 529,
            kind: "overloaded_error".into(),
            message: "Overloaded".into(),
            retry_after: None,
        }
    }
}

/// Holds a [`Step::Held`] answer until [`Gate::open`].
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<std::sync::atomic::AtomicBool>);

impl Gate {
    /// A closed gate.
    pub fn new() -> Gate {
        Gate::default()
    }
    /// Let held answers through.
    pub fn open(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn is_open(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// When a held or slow answer goes on.
#[derive(Debug, Clone)]
enum Wait {
    Delay(Duration),
    Gate(Gate),
}

impl Wait {
    async fn done(&self) {
        match self {
            Wait::Delay(d) => tokio::time::sleep(*d).await,
            Wait::Gate(g) => {
                while !g.is_open() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    needle: Option<String>,
    steps: Vec<Step>,
}

/// The scripted model: rules over the conversation (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct Model {
    rules: Vec<Rule>,
}

/// Documents the workflow model answers with by default.
pub const REQUIREMENTS: &str = "# Requirements Document\n\n## Introduction\n\nA greeting file.\n\n### Requirement 1\n\n**User Story:** As a user, I want a greeting file, so that I feel welcome.\n\n#### Acceptance Criteria\n\n1. WHEN the task runs THEN the system SHALL write `hello.txt` containing `hello`.\n";
/// See [`REQUIREMENTS`].
pub const DESIGN: &str = "# Design Document\n\n## Overview\n\nOne file, `hello.txt`.\n\n## Architecture\n\nNone.\n\n## Components and Interfaces\n\nNone.\n\n## Data Models\n\nNone.\n\n## Error Handling\n\nNone.\n\n## Testing Strategy\n\n`test -s hello.txt`.\n";
/// See [`REQUIREMENTS`]: one task that writes `hello.txt`, verified.
pub const TASKS: &str = "# Implementation Plan\n\n- [ ] 1. Write the greeting file\n  - Create `hello.txt` containing `hello`\n  - _Requirements: 1.1_\n  - _Verify: `test -s hello.txt`_\n";

impl Model {
    /// A model that only ever says "Done.".
    pub fn new() -> Model {
        Model::default()
    }

    /// When the prompt contains `needle`, play `steps`.
    pub fn when(mut self, needle: &str, steps: impl IntoIterator<Item = Step>) -> Model {
        self.rules.push(Rule {
            needle: Some(needle.to_owned()),
            steps: steps.into_iter().collect(),
        });
        self
    }

    /// When no rule matched, play `steps`.
    pub fn otherwise(mut self, steps: impl IntoIterator<Item = Step>) -> Model {
        self.rules.push(Rule {
            needle: None,
            steps: steps.into_iter().collect(),
        });
        self
    }

    /// A model for a whole qw workflow: documents answered as text ([`REQUIREMENTS`],
    /// [`DESIGN`], [`TASKS`]), task 1 writes `hello.txt` with Write, validation passes.
    /// Rules added afterwards come after these; add earlier ones with [`Model::when`]
    /// on [`Model::new`] and then call [`Model::workflow_rules`].
    pub fn workflow() -> Model {
        Model::new().workflow_rules()
    }

    /// Add the [`Model::workflow`] rules.
    pub fn workflow_rules(self) -> Model {
        self.when("in the requirements phase", [Step::text(REQUIREMENTS)])
            .when("in the design phase", [Step::text(DESIGN)])
            .when("in the tasks phase", [Step::text(TASKS)])
            .when(
                "Implement task 1 only",
                [
                    Step::write("hello.txt", "hello\n"),
                    Step::text("Wrote hello.txt."),
                ],
            )
            .when(
                "in the validation phase",
                [Step::text(
                    "VALIDATION: PASS — hello.txt holds the greeting.",
                )],
            )
    }

    fn step(&self, prompt: &str, index: usize) -> Step {
        let rule = self.rules.iter().find(|r| match &r.needle {
            Some(n) => prompt.contains(n.as_str()),
            None => true,
        });
        rule.and_then(|r| r.steps.get(index).cloned())
            .unwrap_or_else(|| Step::text("Done."))
    }
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `POST`, `GET`, …
    pub method: String,
    /// The path and query (`/v1/messages?beta=true`).
    pub path: String,
    /// The JSON body (Null when none or not JSON).
    pub body: Value,
    /// The input tokens the server counted for it (about 4 bytes a token).
    pub input_tokens: u64,
    /// When it arrived.
    pub at: Instant,
}

impl Recorded {
    /// A `POST /v1/messages` call (not `count_tokens`).
    pub fn is_message(&self) -> bool {
        self.method == "POST"
            && self.path.starts_with("/v1/messages")
            && !self.path.contains("count_tokens")
    }

    /// The prompt (see the module doc).
    pub fn prompt(&self) -> String {
        prompt_of(&self.body).0
    }

    /// Every text and tool call of the conversation, one string each, in order
    /// (`user: …`, `assistant: …`, `tool_use Write …`, `tool_result …`).
    pub fn conversation(&self) -> Vec<String> {
        let mut out = Vec::new();
        for m in messages(&self.body) {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("?");
            for b in blocks(m) {
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => out.push(format!(
                        "{role}: {}",
                        b.get("text").and_then(Value::as_str).unwrap_or("")
                    )),
                    Some("tool_use") => out.push(format!(
                        "tool_use {} {}",
                        b.get("name").and_then(Value::as_str).unwrap_or("?"),
                        b.get("input").cloned().unwrap_or(Value::Null)
                    )),
                    Some("tool_result") => out.push(format!(
                        "tool_result {}",
                        b.get("content").cloned().unwrap_or(Value::Null)
                    )),
                    _ => {}
                }
            }
        }
        out
    }
}

struct Shared {
    model: Model,
    log: Mutex<Vec<Recorded>>,
    ids: AtomicU64,
}

/// The server: started on a loopback port, stopped (open requests dropped) on drop.
pub struct MessagesApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MessagesApi {
    /// Start serving `model` on 127.0.0.1 (a free port).
    pub fn start(model: Model) -> MessagesApi {
        let shared = Arc::new(Shared {
            model,
            log: Mutex::new(Vec::new()),
            ids: AtomicU64::new(0),
        });
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let app =
                    axum::Router::new().fallback(move |method: Method, uri: Uri, body: Bytes| {
                        let state = state.clone();
                        async move { handle(state, method, uri, body).await }
                    });
                tokio::select! {
                    _ = async { axum::serve(listener, app).await } => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every open (hanging) request.
        });
        MessagesApi {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The environment that points Claude Code at this server with `home` as its HOME
    /// (its sessions live there: a resumed run needs the same one).
    pub fn claude_env(&self, home: &Path) -> Vec<(String, String)> {
        vec![
            ("ANTHROPIC_BASE_URL".into(), self.url()),
            (
                "ANTHROPIC_API_KEY".into(),
                "sk-ant-test-not-a-real-key".into(),
            ),
            (
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
                "1".into(),
            ),
            ("DISABLE_AUTOUPDATER".into(), "1".into()),
            // Any truthy IS_SANDBOX makes Claude Code retry a 529 ten times with backoff
            // (minutes), and IS_SANDBOX=1 lets bypassPermissions run as root: tests
            // must not inherit the machine's (docs/CLAUDE_CODE.md). Empty means unset.
            ("IS_SANDBOX".into(), String::new()),
            ("HOME".into(), home.display().to_string()),
        ]
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The `POST /v1/messages` requests.
    pub fn messages(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::is_message)
            .collect()
    }

    /// The prompt of each message request.
    pub fn prompts(&self) -> Vec<String> {
        self.messages().iter().map(Recorded::prompt).collect()
    }

    /// Input tokens of all message requests (as the server counts them).
    pub fn input_tokens(&self) -> u64 {
        self.messages().iter().map(|r| r.input_tokens).sum()
    }
}

impl Drop for MessagesApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn messages(body: &Value) -> impl Iterator<Item = &Value> {
    body.get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn blocks(message: &Value) -> Vec<Value> {
    match message.get("content") {
        Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

/// The prompt and the number of assistant messages after it.
fn prompt_of(body: &Value) -> (String, usize) {
    let msgs: Vec<&Value> = messages(body).collect();
    let mut after = 0;
    for m in msgs.iter().rev() {
        match m.get("role").and_then(Value::as_str) {
            Some("assistant") => after += 1,
            Some("user") => {
                let bs = blocks(m);
                let tool_result = bs
                    .iter()
                    .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"));
                if !tool_result {
                    let text: Vec<&str> = bs
                        .iter()
                        .filter_map(|b| b.get("text").and_then(Value::as_str))
                        .collect();
                    return (text.join("\n"), after);
                }
            }
            _ => {}
        }
    }
    (String::new(), after)
}

/// The session's working directory, from Claude Code's environment section.
fn cwd_of(body: &Value) -> Option<String> {
    let text = body.to_string();
    let marker = "Primary working directory: ";
    let start = text.find(marker)? + marker.len();
    let rest = &text[start..];
    let end = rest.find("\\n").or_else(|| rest.find('"'))?;
    Some(rest[..end].to_owned())
}

fn estimate_tokens(body: &Value) -> u64 {
    let size = body.get("messages").map_or(0, |m| m.to_string().len())
        + body.get("system").map_or(0, |s| s.to_string().len());
    (size as u64 / 4).max(1)
}

fn json_response(status: u16, value: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(value.to_string()))
        .unwrap()
}

async fn handle(shared: Arc<Shared>, method: Method, uri: Uri, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let input_tokens = estimate_tokens(&body);
    let rec = Recorded {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |p| p.to_string()),
        body: body.clone(),
        input_tokens,
        at: Instant::now(),
    };
    let is_message = rec.is_message();
    let is_count = rec.path.contains("count_tokens");
    shared.log.lock().unwrap().push(rec);
    if is_count {
        return json_response(200, &json!({"input_tokens": input_tokens}));
    }
    if !is_message {
        return json_response(
            404,
            &json!({"type": "error", "error": {"type": "not_found_error", "message": "not scripted"}}),
        );
    }
    let (prompt, index) = prompt_of(&body);
    let step = shared.model.step(&prompt, index);
    let (delay, step) = match step {
        Step::Slow(d, inner) => (Some(Wait::Delay(d)), *inner),
        Step::Held(g, inner) => (Some(Wait::Gate(g)), *inner),
        other => (None, other),
    };
    let n = shared.ids.fetch_add(1, Ordering::SeqCst) + 1;
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-scripted")
        .to_owned();
    let block = match step {
        Step::Hang => return std::future::pending::<Response>().await,
        Step::Error {
            status,
            kind,
            message,
            retry_after,
        } => {
            let mut r = json_response(
                status,
                &json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_scripted"}),
            );
            if let Some(secs) = retry_after {
                r.headers_mut()
                    .insert("retry-after", secs.to_string().parse().unwrap());
            }
            return r;
        }
        Step::Text(text) => json!({"type": "text", "text": text}),
        Step::Write { path, content } => {
            let path = if Path::new(&path).is_absolute() {
                path
            } else {
                match cwd_of(&body) {
                    Some(cwd) => Path::new(&cwd).join(&path).display().to_string(),
                    None => path,
                }
            };
            json!({"type": "tool_use", "id": format!("toolu_{n:04}"), "name": "Write",
                   "input": {"file_path": path, "content": content}})
        }
        Step::Bash(command) => json!({"type": "tool_use", "id": format!("toolu_{n:04}"),
                   "name": "Bash", "input": {"command": command, "description": "Run a command"}}),
        Step::Slow(..) | Step::Held(..) => json!({"type": "text", "text": "Done."}),
    };
    let is_tool = block["type"] == "tool_use";
    let output_tokens = (block.to_string().len() as u64 / 4).max(1);
    let stop_reason = if is_tool { "tool_use" } else { "end_turn" };
    let id = format!("msg_{n:04}");
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        if let Some(w) = &delay {
            w.done().await;
        }
        return json_response(
            200,
            &json!({"id": id, "type": "message", "role": "assistant", "model": model,
                    "content": [block], "stop_reason": stop_reason, "stop_sequence": null,
                    "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}),
        );
    }
    let start = json!({"type": "message_start", "message": {"id": id, "type": "message",
        "role": "assistant", "model": model, "content": [], "stop_reason": null,
        "stop_sequence": null, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}});
    let mut rest = Vec::new();
    if is_tool {
        let mut empty = block.clone();
        empty["input"] = json!({});
        rest.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": empty}),
        ));
        rest.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": block["input"].to_string()}}),
        ));
    } else {
        rest.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ));
        rest.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": block["text"]}}),
        ));
    }
    rest.push((
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    rest.push((
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": output_tokens}}),
    ));
    rest.push(("message_stop", json!({"type": "message_stop"})));

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let sse =
            |name: &str, data: &Value| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
        if tx.send(sse("message_start", &start)).await.is_err() {
            return;
        }
        if let Some(w) = &delay {
            w.done().await;
        }
        for (name, data) in rest {
            if tx.send(sse(name, &data)).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<Bytes, std::convert::Infallible>(chunk), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap()
}
