//! Diagnostics: `tracing` to stderr and, inside a project, to daily files in `.claude/logs/`.
//!
//! Owns: the global subscriber, the daily log file (`qw-YYYY-MM-DD.log`, local date, last
//! 14 kept), the fallback when that file cannot be written, and recording errors (log
//! and the state's `errors`), and the command's start and exit lines of the execution
//! trace. Must not: fail a command. Every logging problem ends in a one-time notice on
//! stderr (none under `-q`, as qw's own child processes run) and a fallback file in the
//! temp directory, never in an error.
//!
//! Cheap by design: the log file is opened on the first event that reaches it, so a
//! command that logs nothing (`qw exec -- true`) never touches `.claude/logs/`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

use crate::project::Project;

/// The `tracing` target of errors recorded with [`record_error`].
pub const RECORDED_ERRORS: &str = "qw_recorded_error";

/// The `tracing` target of the workflow's trace lines: the log file only (the terminal
/// has the progress display, which says the same).
pub const TRACE: &str = "qw_trace";

/// Daily log files kept in `.claude/logs/`.
pub const KEEP_DAYS: usize = 14;

/// Terminal verbosity chosen by `-v`/`-q`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// `-q`: errors only.
    Quiet,
    /// Default: warnings and errors.
    Normal,
    /// `-v`: info.
    Verbose,
    /// `-vv`: debug.
    Debug,
}

/// Install the global subscriber: stderr at `verbosity` (or `QW_LOG`), plus — when
/// `project` has a `.claude/` — the daily log file at info, or debug when `debug_file`
/// (`development_mode.verbose_logging`). Safe to call once; later calls are ignored.
///
/// The subscriber is built on the first event it may have to handle ([`Lazy`]): a
/// command that logs nothing at its levels (`qw exec -- true` outside a project, which is
/// benchmarked against GNU timeout) never pays for building it.
pub fn init(verbosity: Verbosity, project: &Project, debug_file: bool) {
    QUIET.store(
        verbosity == Verbosity::Quiet,
        std::sync::atomic::Ordering::Relaxed,
    );
    let file_level = project.exists().then_some(if debug_file {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    });
    let env_filter = std::env::var_os("QW_LOG").is_some();
    // The most verbose level any layer takes; with `QW_LOG`, anything.
    let max_level = (!env_filter).then(|| {
        verbosity
            .level()
            .max(file_level.unwrap_or(LevelFilter::OFF))
    });
    let logs_dir = project.logs_dir();
    let _ = Lazy::new(max_level, move || {
        build(verbosity, logs_dir.clone(), file_level)
    })
    .try_init();
}

impl Verbosity {
    /// The most verbose level written to the terminal (without `QW_LOG`).
    fn level(self) -> LevelFilter {
        match self {
            Verbosity::Quiet => LevelFilter::ERROR,
            Verbosity::Normal => LevelFilter::WARN,
            Verbosity::Verbose => LevelFilter::INFO,
            Verbosity::Debug => LevelFilter::DEBUG,
        }
    }
}

/// The subscriber [`init`] installs: the terminal layer, and with `file_level` the daily
/// file in `logs_dir`.
fn build(
    verbosity: Verbosity,
    logs_dir: PathBuf,
    file_level: Option<LevelFilter>,
) -> impl tracing::Subscriber + Send + Sync {
    // Recorded errors reach the user as the command's own message; on the terminal they
    // would only repeat it.
    let filter = EnvFilter::try_from_env("QW_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{},{RECORDED_ERRORS}=off,{TRACE}=off,{COMMAND}=off",
            verbosity.level()
        ))
    });
    let terminal = tracing_subscriber::fmt::layer()
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .event_format(TerminalFormat)
        .with_filter(filter);

    let daily = DailyFile::new(logs_dir);
    let file = file_level.map(|level| {
        tracing_subscriber::fmt::layer()
            .with_writer(daily.clone())
            .with_ansi(false)
            .with_filter(level)
    });
    // Placed first, so the pending start line goes out before the event that needs it.
    let start_first = file_level.map(|level| StartFirst(daily.clone()).with_filter(level));
    tracing_subscriber::registry()
        .with(start_first)
        .with(terminal)
        .with(file)
}

/// A subscriber built by `make` on first use: when the first callsite at or below
/// `max_level` registers, or an event reaches it. Callsites more verbose than `max_level`
/// are never enabled and build nothing (`None`: no level is ruled out).
///
/// `max_level` must be at least as verbose as the built subscriber's own levels; it is
/// the hint `tracing` uses to skip disabled events before they reach any subscriber.
pub(crate) struct Lazy<S, F> {
    max_level: Option<LevelFilter>,
    make: F,
    inner: std::sync::OnceLock<S>,
    /// The dispatcher this subscriber was registered with, told to the built one.
    dispatch: std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
}

impl<S: tracing::Subscriber, F: Fn() -> S> Lazy<S, F> {
    /// A subscriber that calls `make` the first time it is needed.
    pub(crate) fn new(max_level: Option<LevelFilter>, make: F) -> Lazy<S, F> {
        Lazy {
            max_level,
            make,
            inner: std::sync::OnceLock::new(),
            dispatch: std::sync::OnceLock::new(),
        }
    }

    /// The subscriber, built now if it was not yet.
    fn get(&self) -> &S {
        self.inner.get_or_init(|| {
            let inner = (self.make)();
            if let Some(dispatch) = self.dispatch.get().and_then(|d| d.upgrade()) {
                inner.on_register_dispatch(&dispatch);
            }
            inner
        })
    }

    /// True when no layer takes events of `level`, whatever their target.
    fn rules_out(&self, level: tracing::Level) -> bool {
        self.max_level.is_some_and(|max| level > max)
    }
}

impl<S, F> tracing::Subscriber for Lazy<S, F>
where
    S: tracing::Subscriber,
    F: Fn() -> S + 'static,
{
    fn on_register_dispatch(&self, dispatch: &tracing::Dispatch) {
        match self.inner.get() {
            Some(inner) => inner.on_register_dispatch(dispatch),
            None => {
                let _ = self.dispatch.set(dispatch.downgrade());
            }
        }
    }
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if self.rules_out(*metadata.level()) {
            return tracing::subscriber::Interest::never();
        }
        self.get().register_callsite(metadata)
    }
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        !self.rules_out(*metadata.level()) && self.get().enabled(metadata)
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        match self.inner.get() {
            Some(inner) => inner.max_level_hint(),
            None => self.max_level,
        }
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        self.get().new_span(span)
    }
    fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        self.get().record(span, values);
    }
    fn record_follows_from(&self, span: &tracing::span::Id, follows: &tracing::span::Id) {
        self.get().record_follows_from(span, follows);
    }
    fn event_enabled(&self, event: &tracing::Event<'_>) -> bool {
        self.get().event_enabled(event)
    }
    fn event(&self, event: &tracing::Event<'_>) {
        self.get().event(event);
    }
    fn enter(&self, span: &tracing::span::Id) {
        self.get().enter(span);
    }
    fn exit(&self, span: &tracing::span::Id) {
        self.get().exit(span);
    }
    fn clone_span(&self, id: &tracing::span::Id) -> tracing::span::Id {
        self.get().clone_span(id)
    }
    fn try_close(&self, id: tracing::span::Id) -> bool {
        self.get().try_close(id)
    }
    fn current_span(&self) -> tracing_core::span::Current {
        self.get().current_span()
    }
}

/// `-q`: the fallback notice (a warning) is not printed. qw's own child processes (the
/// workflow's `qw exec`, the offline agent) run with `-q`, so a workflow whose log
/// directory fails says so once, not once per child.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The `tracing` target of the command's start and exit lines.
pub const COMMAND: &str = "qw::command";

/// When [`command_started`] was called, for the duration in [`command_ended`].
static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// The command's start line is owed to the log: it goes out just before the first event
/// that reaches the file, or with the exit line.
static START_PENDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Note that the command started. Its line (the command line quoted as a shell would need
/// it, and the pid) is written before the command's first logged event, or with its exit:
/// a command that logs nothing and exits 0 or 2 (usage) leaves the project untouched, as
/// `qw init` run twice or a refused bad input must.
pub fn command_started() {
    let _ = STARTED.set(std::time::Instant::now());
    START_PENDING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Write the owed start line, if it is still owed.
fn emit_start() {
    if START_PENDING.swap(false, std::sync::atomic::Ordering::Relaxed) {
        tracing::info!(
            target: COMMAND,
            pid = std::process::id(),
            argv = %shell_words::join(std::env::args_os().map(|a| a.to_string_lossy().into_owned())),
            "command started"
        );
    }
}

/// The owed start line, formatted as the file layer formats events.
fn start_line() -> String {
    format!(
        "{}  INFO {COMMAND}: command started pid={} argv={}\n",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ"),
        std::process::id(),
        shell_words::join(std::env::args_os().map(|a| a.to_string_lossy().into_owned()))
    )
}

/// The layer that writes the owed start line before the first other event, to the file
/// itself: dispatching an event from inside `on_event` upsets the per-layer filters of
/// the event being handled (it reached the terminal).
struct StartFirst(DailyFile);

impl<S: tracing::Subscriber> Layer<S> for StartFirst {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() != COMMAND
            && START_PENDING.swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            self.0.write_event(start_line().as_bytes());
        }
    }
}

/// Trace how the command ended: its exit code, how long it took, and the error it
/// printed, if any. Nothing when the command logged nothing else and exited 0 or 2.
pub fn command_ended(exit_code: i32, error: Option<&str>) {
    if START_PENDING.load(std::sync::atomic::Ordering::Relaxed)
        && (exit_code == crate::exit::SUCCESS || exit_code == crate::exit::USAGE)
    {
        return;
    }
    emit_start();
    let duration_s = STARTED.get().map_or(0.0, |t| t.elapsed().as_secs_f64());
    let duration_s = format_args!("{duration_s:.3}");
    match error {
        None => tracing::info!(
            target: COMMAND,
            pid = std::process::id(),
            exit = exit_code,
            duration_s = %duration_s,
            "command ended"
        ),
        Some(error) => tracing::info!(
            target: COMMAND,
            pid = std::process::id(),
            exit = exit_code,
            duration_s = %duration_s,
            error = %error,
            "command failed"
        ),
    }
}

/// Terminal lines in the shape of qw's own messages: `qw: warning: …`, `qw: error: …`
/// (`info`, `debug`, `trace` likewise), the event's other fields after the message. The
/// level word is coloured only when the layer writes ANSI (stderr is a terminal).
#[derive(Debug, Clone, Copy)]
pub struct TerminalFormat;

impl TerminalFormat {
    /// The word for `level` in `qw: WORD: …` and its ANSI colour code.
    fn word(level: tracing::Level) -> (&'static str, &'static str) {
        match level {
            tracing::Level::ERROR => ("error", "31"),
            tracing::Level::WARN => ("warning", "33"),
            tracing::Level::INFO => ("info", "32"),
            tracing::Level::DEBUG => ("debug", "34"),
            tracing::Level::TRACE => ("trace", "35"),
        }
    }
}

impl<S, N> FormatEvent<S, N> for TerminalFormat
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let (word, colour) = Self::word(*event.metadata().level());
        if writer.has_ansi_escapes() {
            write!(writer, "qw: \x1b[{colour}m{word}\x1b[0m: ")?;
        } else {
            write!(writer, "qw: {word}: ")?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Today's log file name, e.g. `qw-2025-08-05.log`.
pub fn file_name_for_today() -> String {
    format!("qw-{}.log", chrono::Local::now().format("%Y-%m-%d"))
}

/// Where logs go when the project's log directory cannot be written.
pub fn fallback_dir() -> PathBuf {
    std::env::temp_dir().join(format!("qw-logs-{}", nix::unistd::getuid()))
}

/// The daily log file, opened lazily and shared by every event of this process.
#[derive(Debug, Clone)]
pub struct DailyFile {
    inner: Arc<Mutex<Sink>>,
}

#[derive(Debug)]
struct Sink {
    dir: PathBuf,
    state: SinkState,
}

#[derive(Debug)]
enum SinkState {
    Unopened,
    /// Today's file and its name (a new day opens a new file).
    Open(std::fs::File, String),
    /// The project's log directory failed; events go to this temp file (or nowhere but
    /// the terminal if that failed too). The notice has been printed.
    Fallback(Option<std::fs::File>),
}

impl DailyFile {
    /// A sink writing to `dir/qw-YYYY-MM-DD.log`; nothing is opened until the first write.
    pub fn new(dir: PathBuf) -> DailyFile {
        DailyFile {
            inner: Arc::new(Mutex::new(Sink {
                dir,
                state: SinkState::Unopened,
            })),
        }
    }

    /// Write one formatted event. Never fails: problems switch to the fallback.
    pub fn write_event(&self, buf: &[u8]) {
        let line = one_line_event(buf);
        let Ok(mut sink) = self.inner.lock() else {
            return;
        };
        sink.write_event(&line);
    }

    /// True once the project's log directory failed and the fallback is in use.
    pub fn in_fallback(&self) -> bool {
        self.inner
            .lock()
            .map(|s| matches!(s.state, SinkState::Fallback(_)))
            .unwrap_or(false)
    }
}

/// The longest event line written; longer ones are cut, saying how much was cut.
const MAX_EVENT_BYTES: usize = 4096;

/// An event as exactly one line of at most [`MAX_EVENT_BYTES`]: newlines, carriage
/// returns and other control characters inside it are shown escaped (an argument or an
/// agent's message could otherwise forge a line of its own), and an event holding, say, a
/// whole prompt is cut.
fn one_line_event(buf: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(buf);
    let body = text.strip_suffix('\n').unwrap_or(&text);
    let escaped = crate::fmt::escaped_line(body);
    let mut line = if escaped.len() > MAX_EVENT_BYTES {
        let mut cut = MAX_EVENT_BYTES;
        while !escaped.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}… ({} bytes cut)", &escaped[..cut], escaped.len() - cut)
    } else {
        escaped.into_owned()
    };
    line.push('\n');
    line.into_bytes()
}

impl Sink {
    fn write_event(&mut self, buf: &[u8]) {
        let today = file_name_for_today();
        let stale = match &self.state {
            SinkState::Unopened => true,
            SinkState::Open(_, name) => *name != today,
            SinkState::Fallback(_) => false,
        };
        if stale {
            self.state = match open_daily(&self.dir, &today) {
                Ok(f) => SinkState::Open(f, today),
                Err(e) => fall_back(&self.dir, &e),
            };
        }
        match &mut self.state {
            SinkState::Open(f, _) => {
                if let Err(e) = f.write_all(buf) {
                    self.state = fall_back(&self.dir, &e);
                    if let SinkState::Fallback(Some(f)) = &mut self.state {
                        let _ = f.write_all(buf);
                    }
                }
            }
            SinkState::Fallback(Some(f)) => {
                let _ = f.write_all(buf);
            }
            SinkState::Fallback(None) | SinkState::Unopened => {}
        }
    }
}

/// Open (append) the daily file `name` in the project's log directory `dir`, creating the
/// directory; when the file is new, prune old daily files down to [`KEEP_DAYS`]. Opened as
/// every file qw appends to under `.claude/` ([`crate::fs::open_append`]): a FIFO there
/// cannot hang the command (it is refused, and logging falls back), a symlink is never
/// followed — nor is `dir` itself when it is one (`.claude/logs -> /elsewhere`, which a
/// repository can commit): that is refused too, and logging falls back.
fn open_daily(dir: &Path, name: &str) -> io::Result<std::fs::File> {
    let (parent, leaf) = split_dir(dir);
    let opened = crate::fs::NoFollowDir::create(&parent, &leaf)?;
    let path = dir.join(name);
    let is_new = std::fs::symlink_metadata(&path).is_err();
    let file = crate::fs::open_append(&path)?;
    if is_new {
        prune_opened(&opened, KEEP_DAYS);
    }
    Ok(file)
}

/// `dir` as its parent (followed, whatever it is) and its last component (never followed).
fn split_dir(dir: &Path) -> (PathBuf, PathBuf) {
    match (dir.parent(), dir.file_name()) {
        (Some(_), Some(leaf)) => (crate::fs::parent_dir(dir), PathBuf::from(leaf)),
        _ => (dir.to_path_buf(), PathBuf::new()),
    }
}

/// Delete all but the newest `keep` `qw-YYYY-MM-DD.log` files (names sort by date) in
/// `dir`, never through a link at `dir` and never anything of another name.
pub fn prune(dir: &Path, keep: usize) {
    let (parent, leaf) = split_dir(dir);
    if let Ok(Some(opened)) = crate::fs::NoFollowDir::open(&parent, &leaf) {
        prune_opened(&opened, keep);
    }
}

fn prune_opened(dir: &crate::fs::NoFollowDir, keep: usize) {
    let Ok(entries) = dir.entries() else {
        return;
    };
    let mut logs: Vec<std::ffi::OsString> = entries
        .into_iter()
        .filter(|e| {
            e.file_type.is_file()
                && e.name
                    .to_str()
                    .is_some_and(|n| n.starts_with("qw-") && n.ends_with(".log") && n.len() == 17)
        })
        .map(|e| e.name)
        .collect();
    logs.sort();
    let excess = logs.len().saturating_sub(keep);
    for old in logs.into_iter().take(excess) {
        let _ = dir.remove_file(&old);
    }
}

/// Open today's file in [`fallback_dir`], a directory of this user's alone: created mode
/// 0700; one that is a link, is not a directory or belongs to someone else (another user
/// could have made `/tmp/qw-logs-<uid>` first, to read what qw logs) is refused, and one of
/// ours that others may enter is made 0700 again.
fn open_fallback() -> io::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    let dir = fallback_dir();
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(crate::fs::with_path(e, "create", &dir)),
    }
    let (parent, leaf) = split_dir(&dir);
    let opened = crate::fs::NoFollowDir::open(&parent, &leaf)?
        .ok_or_else(|| crate::fs::with_path(io::ErrorKind::NotFound.into(), "open", &dir))?;
    let meta = std::fs::symlink_metadata(opened.join(std::ffi::OsStr::new(".")))
        .map_err(|e| crate::fs::with_path(e, "inspect", &dir))?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "`{}` belongs to uid {}, not to you (uid {me}); qw does not log into another user's directory",
                dir.display(),
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(
            opened.join(std::ffi::OsStr::new(".")),
            std::fs::Permissions::from_mode(0o700),
        )
        .map_err(|e| crate::fs::with_path(e, "make private (chmod 700)", &dir))?;
    }
    let path = dir.join(file_name_for_today());
    let is_new = std::fs::symlink_metadata(&path).is_err();
    let file = crate::fs::open_append(&path)?;
    if is_new {
        prune_opened(&opened, KEEP_DAYS);
    }
    Ok((path, file))
}

fn fall_back(dir: &Path, err: &io::Error) -> SinkState {
    let (file, target) = match open_fallback() {
        Ok((path, file)) => (Some(file), format!("stderr and `{}`", path.display())),
        Err(e) => (None, format!("stderr only ({e})")),
    };
    if QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        return SinkState::Fallback(file);
    }
    crate::diag!(
        "qw: warning: cannot write logs to `{}` ({err}); logging to {target} instead",
        dir.display()
    );
    SinkState::Fallback(file)
}

/// The writer handed to `tracing_subscriber::fmt` for one event.
#[derive(Debug)]
pub struct EventWriter {
    sink: DailyFile,
    buf: Vec<u8>,
}

impl Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    // One `write` per event, so lines from parallel `qw` processes (O_APPEND) never mix.
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.sink.write_event(&self.buf);
        }
    }
}

impl<'a> MakeWriter<'a> for DailyFile {
    type Writer = EventWriter;
    fn make_writer(&'a self) -> EventWriter {
        EventWriter {
            sink: self.clone(),
            buf: Vec::new(),
        }
    }
}

/// What was going on when an error happened; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ErrorContext {
    /// The qw command (e.g. `consume`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The spec concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
    /// The task id concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Which attempt failed (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The exit code of what failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// Record an error with its component, message and context: in the log, and inside a
/// project in the state's `errors` list (last 100). Never fails: if the state cannot be
/// updated, that is one warning in the log.
pub fn record_error(project: &Project, component: &str, message: &str, context: &ErrorContext) {
    let ctx = serde_json::to_value(context).unwrap_or(serde_json::Value::Null);
    tracing::error!(target: RECORDED_ERRORS, component, context = %ctx, "{message}");
    // Outside a project there is no state to add to, and recording must not create one.
    if !project.exists() {
        return;
    }
    if let Err(e) =
        crate::state::StateStore::new(project).update(|s| s.record_error(component, message, ctx))
    {
        tracing::warn!("could not record the error in the state: {e}");
    }
}

/// The next step to suggest for an error in this context.
pub fn next_step(context: &ErrorContext) -> String {
    match &context.spec {
        Some(spec) => format!(
            "`qw workflow-reset {spec}` sets its failed tasks back to pending; `qw state-backup --list` then `qw state-backup --restore NAME` goes back further"
        ),
        None => {
            "`qw state-backup --list` then `qw state-backup --restore NAME` restores an earlier state"
                .to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tracing::Subscriber as _;

    /// Collects what a test subscriber writes.
    #[derive(Clone, Default)]
    struct Collected(Arc<Mutex<Vec<u8>>>);

    impl Write for Collected {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Run the test `name` of this binary again in a process of its own (`true`), unless
    /// this is that process (`false`: run the test here). `tracing`'s callsites and their
    /// interest are process-global: under `cargo test` a neighbour's `warn!` registering
    /// while a test's dispatcher lives calls that dispatcher's `register_callsite`, so what
    /// a test asserts of "the first callsite it may take" holds only in a process where
    /// its own callsites are the only ones (nextest's way, one process per test).
    fn alone_in_a_process(name: &str) -> bool {
        const ALONE: &str = "QW_TEST_LOGGING_ALONE";
        if std::env::var_os(ALONE).is_some() {
            return false;
        }
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(&exe)
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(ALONE, "1")
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{name} alone in a process: {said}");
        assert!(
            said.contains("1 passed"),
            "{name} did not run alone: {said}"
        );
        true
    }

    #[test]
    fn the_subscriber_is_built_by_the_first_event_it_may_take() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        if alone_in_a_process(
            "logging::tests::the_subscriber_is_built_by_the_first_event_it_may_take",
        ) {
            return;
        }
        let built = Arc::new(AtomicUsize::new(0));
        let out = Collected::default();
        let (b, o) = (built.clone(), out.clone());
        let lazy = Arc::new(Lazy::new(Some(LevelFilter::WARN), move || {
            b.fetch_add(1, Ordering::SeqCst);
            let o = o.clone();
            tracing_subscriber::registry().with(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || o.clone())
                    .with_ansi(false)
                    .event_format(TerminalFormat)
                    .with_filter(LevelFilter::WARN),
            )
        }));
        let dispatch = tracing::Dispatch::new(lazy.clone());
        assert_eq!(lazy.max_level_hint(), Some(LevelFilter::WARN));
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!("below the level");
            tracing::debug!("below the level");
        });
        assert_eq!(built.load(Ordering::SeqCst), 0, "nothing it takes yet");
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::warn!(pid = 7, "taken");
            tracing::error!("taken too");
            tracing::info!("below the level");
        });
        assert_eq!(built.load(Ordering::SeqCst), 1, "built once");
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "qw: warning: taken pid=7\nqw: error: taken too\n");
        assert_eq!(lazy.max_level_hint(), Some(LevelFilter::WARN));
    }

    #[test]
    fn without_a_level_the_first_callsite_builds_the_subscriber() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let built = Arc::new(AtomicUsize::new(0));
        let b = built.clone();
        let lazy = Arc::new(Lazy::new(None, move || {
            b.fetch_add(1, Ordering::SeqCst);
            tracing_subscriber::registry()
        }));
        let dispatch = tracing::Dispatch::new(lazy.clone());
        assert_eq!(lazy.max_level_hint(), None);
        tracing::dispatcher::with_default(&dispatch, || tracing::trace!("anything"));
        assert_eq!(built.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_event_is_one_line_escaped_and_cut() {
        assert_eq!(one_line_event(b"a b\n"), b"a b\n");
        let forged = one_line_event(b"argv=sh -c 'true\n2099-01-01 INFO forged'\n");
        assert_eq!(forged.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(String::from_utf8_lossy(&forged).contains("true\\n2099"));
        let long = one_line_event(&vec![b'x'; 10_000]);
        assert!(long.len() < MAX_EVENT_BYTES + 64);
        assert!(String::from_utf8_lossy(&long).ends_with("bytes cut)\n"));
    }

    #[test]
    fn writes_lazily_into_the_daily_file() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let sink = DailyFile::new(logs.clone());
        assert!(!logs.exists(), "opened before the first event");
        sink.write_event(b"one\n");
        sink.write_event(b"two\n");
        let text = crate::fs::read_to_string(logs.join(file_name_for_today())).unwrap();
        assert_eq!(text, "one\ntwo\n");
        assert!(!sink.in_fallback());
    }

    #[test]
    fn unwritable_dir_switches_to_fallback_without_failing() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file where the directory should be: unwritable even for root.
        let logs = dir.path().join("logs");
        crate::fs::write(&logs, b"not a dir").unwrap();
        let sink = DailyFile::new(logs.join("sub"));
        sink.write_event(b"kept going\n");
        sink.write_event(b"still going\n");
        assert!(sink.in_fallback());
    }

    #[test]
    fn prune_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        for day in 1..=20 {
            let name = format!("qw-2025-01-{day:02}.log");
            crate::fs::write(dir.path().join(name), b"x").unwrap();
        }
        crate::fs::write(dir.path().join("other.txt"), b"x").unwrap();
        prune(dir.path(), KEEP_DAYS);
        let mut names: Vec<String> = crate::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), KEEP_DAYS + 1);
        assert_eq!(names[0], "other.txt");
        assert_eq!(names[1], "qw-2025-01-07.log");
    }

    /// Format one warning with `TerminalFormat`, ANSI on or off.
    fn terminal_line(ansi: bool) -> String {
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = Arc::clone(&buf);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || SharedBuf(Arc::clone(&sink)))
            .with_ansi(ansi)
            .event_format(TerminalFormat)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(path = "a.json", "state was corrupt");
        });
        String::from_utf8(buf.lock().unwrap().clone()).unwrap()
    }

    struct SharedBuf(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedBuf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn terminal_lines_read_qw_warning_and_colour_only_with_ansi() {
        assert_eq!(
            terminal_line(false),
            "qw: warning: state was corrupt path=\"a.json\"\n"
        );
        let coloured = terminal_line(true);
        assert!(
            coloured.starts_with("qw: \x1b[33mwarning\x1b[0m: state was corrupt"),
            "{coloured:?}"
        );
    }

    #[test]
    fn next_step_names_the_reset_command() {
        let ctx = ErrorContext {
            spec: Some("user-auth".into()),
            ..ErrorContext::default()
        };
        assert!(next_step(&ctx).contains("qw workflow-reset user-auth"));
    }
}
