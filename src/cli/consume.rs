//! `qw suggest` and `qw consume`: the safe hand-off of the next command.
//!
//! Claude Code (or a person) writes one command into `.claude/next_command.txt`; `qw
//! consume` validates it ([`crate::validate::validate_suggestion`]), runs it through `qw
//! exec` (qw's own commands as a `qw` child that admits its own tasks, other slash
//! commands admitted, through `claude -p`), retries it, and then deletes it — or, after the last failure or when it is
//! refused, moves it to `.claude/next_command.failed.txt` with the reason, so nothing is
//! retried forever.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::dev_mode::say;
use super::{CliError, CmdResult, Ctx};
use crate::exec::Cancel;
use crate::exit;
use crate::fs::{LockTimeout, LockedFile};
use crate::logging::{self, ErrorContext};
use crate::project::Project;
use crate::state::StateStore;
use crate::validate::{self, Suggestion};

/// Arguments of `qw suggest`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
The command must be a known qw or slash command without shell metacharacters; it is
checked now and again when consumed. The file is replaced atomically.

Examples:
  qw suggest \"/workflow-continue user-auth\"
  qw suggest \"qw spec-status user-auth\"")]
pub struct SuggestArgs {
    /// The command, e.g. "/workflow-continue user-auth".
    pub command: String,
}

/// Arguments of `qw consume`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Runs `.claude/next_command.txt` through `qw exec`: qw's own commands as a qw child (whose
tasks are admitted one by one), other slash commands admitted (`--admit --admit-timeout 60`)
as `claude -p \"/cmd args\" --output-format json`. A suggestion is at most 4 KiB. Up to 3 attempts,
5 s apart; on success the file is deleted, after the last failure (or when the command is
refused) it moves to `.claude/next_command.failed.txt` with the reason.
Exit: 0 consumed or nothing to do (and always after --watch is stopped by Ctrl-C/SIGTERM/SIGHUP),
1 the command failed, 2 the command was refused.

Examples:
  qw consume --once
  qw consume --watch --stats")]
pub struct ConsumeArgs {
    /// Consume the current suggestion once and exit (default).
    #[arg(long, conflicts_with = "watch")]
    pub once: bool,
    /// Keep watching for new suggestions until Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// Print counts of consumed, failed and rejected suggestions.
    #[arg(long)]
    pub stats: bool,
    /// Attempts before giving up.
    #[arg(long, hide = true, default_value_t = 3, env = "QW_CONSUME_ATTEMPTS",
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub attempts: u32,
    /// Seconds between attempts.
    #[arg(long, hide = true, default_value = "5", env = "QW_CONSUME_RETRY_DELAY",
          value_parser = super::args::parse_secs, value_name = "SECS")]
    pub retry_delay: Duration,
    /// Do not use file notifications; poll instead (what happens where they fail).
    #[arg(long, hide = true, env = "QW_CONSUME_POLL_ONLY")]
    pub poll_only: bool,
}

/// Run `qw suggest`.
pub fn run_suggest(ctx: &Ctx, args: SuggestArgs) -> CmdResult {
    let text = args.command.trim();
    if text.len() > MAX_SUGGESTION_BYTES {
        return Err(CliError::usage(format!(
            "refused suggestion `{}`: it is {} bytes, over the {MAX_SUGGESTION_BYTES}-byte limit of a command",
            quote(text),
            text.len()
        )));
    }
    let suggestion = validate::validate_suggestion(text).map_err(|r| {
        CliError::usage(format!("refused suggestion `{}`: {r}", quote(text)))
            .hint("suggest a qw or slash command such as \"/workflow-continue NAME\"")
    })?;
    let path = ctx.project.next_command_file();
    crate::fs::create_dir_all(ctx.project.claude_dir())
        .and_then(|()| crate::fs::write_durable(&path, format!("{text}\n").as_bytes()))
        .map_err(|e| CliError::failed(e.to_string()))?;
    tracing::info!(command = %suggestion, "suggestion written");
    if ctx.global.json {
        say!(
            "{}",
            json!({"file": path.display().to_string(), "command": text, "runs": suggestion.to_string()})
        );
    } else if !ctx.global.quiet {
        say!("wrote {}: {text}", path.display());
    }
    Ok(exit::SUCCESS)
}

/// What happened to one suggestion.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// No suggestion file.
    Nothing,
    /// Ran successfully; the file was deleted.
    Consumed { command: String, attempts: u32 },
    /// Ran and failed (or could not run); moved to the failed file.
    Failed { command: String, reason: String },
    /// Refused by validation; moved to the failed file.
    Rejected { command: String, reason: String },
    /// A signal arrived first; the file was left in place.
    Interrupted { command: String },
}

/// Counts for `--stats`.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
struct Stats {
    consumed: u32,
    failed: u32,
    rejected: u32,
}

/// Run `qw consume`.
pub fn run_consume(ctx: &Ctx, args: ConsumeArgs) -> CmdResult {
    let cancel = Cancel::on_signals()
        .map_err(|e| CliError::failed(format!("cannot install signal handlers: {e}")))?;
    let consumer = Consumer {
        ctx,
        args: &args,
        cancel,
    };
    let mut stats = Stats::default();
    if args.watch {
        consumer.watch(&mut stats)?;
        consumer.print_stats(stats);
        return Ok(exit::SUCCESS);
    }
    let outcome = consumer.consume_one()?;
    stats.count(&outcome);
    consumer.report(&outcome);
    consumer.print_stats(stats);
    let failed_file = ctx.project.next_command_failed_file();
    match outcome {
        Outcome::Nothing | Outcome::Consumed { .. } => Ok(exit::SUCCESS),
        Outcome::Failed { command, reason } => Err(CliError::failed(format!(
            "suggestion `{command}` failed: {reason}"
        ))
        .hint(format!(
            "it was moved to `{}`; fix the cause, then `qw suggest` it again",
            failed_file.display()
        ))),
        Outcome::Rejected { command, reason } => Err(CliError::usage(format!(
            "refused suggestion `{command}`: {reason}"
        ))
        .hint(format!(
            "nothing was run; it was moved to `{}`",
            failed_file.display()
        ))),
        Outcome::Interrupted { command } => Err(CliError::failed(format!(
            "interrupted before `{command}` was done; the suggestion was left in place"
        ))),
    }
}

impl Stats {
    fn count(&mut self, o: &Outcome) {
        match o {
            Outcome::Consumed { .. } => self.consumed += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Rejected { .. } => self.rejected += 1,
            Outcome::Nothing | Outcome::Interrupted { .. } => {}
        }
    }
}

struct Consumer<'a> {
    ctx: &'a Ctx,
    args: &'a ConsumeArgs,
    /// Set by SIGINT, SIGTERM and SIGHUP: the signal that asked us to stop.
    cancel: Cancel,
}

impl Consumer<'_> {
    fn stopping(&self) -> Option<i32> {
        self.cancel.pending()
    }

    /// Watch `.claude/` for suggestions until a signal arrives.
    fn watch(&self, stats: &mut Stats) -> Result<(), CliError> {
        let dir = self.ctx.project.claude_dir();
        crate::fs::create_dir_all(&dir).map_err(|e| CliError::failed(e.to_string()))?;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let watcher = if self.args.poll_only {
            None
        } else {
            start_watcher(&dir, tx)
        };
        // With notifications a slow poll only backs them up; without, polling is all.
        let poll = if watcher.is_some() {
            Duration::from_secs(5)
        } else {
            Duration::from_millis(500)
        };
        if !self.ctx.global.quiet {
            crate::diag!(
                "qw: watching `{}` ({}); Ctrl-C stops",
                self.ctx.project.next_command_file().display(),
                if watcher.is_some() {
                    "file notifications"
                } else {
                    "polling"
                }
            );
        }
        let mut last_check: Option<Instant> = None;
        let mut dirty = true;
        while self.stopping().is_none() {
            if dirty || last_check.is_none_or(|t| t.elapsed() >= poll) {
                dirty = false;
                last_check = Some(Instant::now());
                let outcome = self.consume_one()?;
                stats.count(&outcome);
                self.report(&outcome);
                if matches!(outcome, Outcome::Interrupted { .. }) {
                    break;
                }
            }
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(()) => {
                    while rx.try_recv().is_ok() {}
                    dirty = true;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
            }
        }
        drop(watcher);
        Ok(())
    }

    /// Take the current suggestion through validate → run with retries → delete or move.
    fn consume_one(&self) -> Result<Outcome, CliError> {
        let project = &self.ctx.project;
        let path = project.next_command_file();
        if !path.exists() {
            return Ok(Outcome::Nothing);
        }
        // Exclusive, so two consumers never run the same suggestion; released on drop.
        let lock_path = project.claude_dir().join("next_command.lock");
        let resource = format!("the suggestion of project `{}`", project.root().display());
        let _lock =
            match LockedFile::acquire(&lock_path, resource, &LockTimeout::from_env(), &self.cancel)
            {
                Ok(lock) => lock,
                Err(e) if e.interrupted().is_some() => {
                    // Another consumer holds it; the suggestion stays for later.
                    crate::diag!("qw: {e}");
                    let text = match crate::fs::read_regular(&path, MAX_SUGGESTION_BYTES) {
                        Ok(crate::fs::Bounded::Whole(b)) => {
                            String::from_utf8_lossy(&b).into_owned()
                        }
                        _ => String::new(),
                    };
                    return Ok(Outcome::Interrupted {
                        command: quote(text.trim()),
                    });
                }
                Err(e) => {
                    return Err(e
                        .hints()
                        .into_iter()
                        .fold(CliError::failed(e.to_string()), CliError::hint));
                }
            };
        // Only a regular file, never more than a suggestion can be: a FIFO there must not
        // hang us, a symlink to /dev/zero must not eat the memory.
        let seen = match crate::fs::read_regular(&path, MAX_SUGGESTION_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Nothing),
            Err(e) if crate::fs::is_refused(&e) => {
                // Not a file anyone could have suggested with `qw suggest`: remove the
                // entry (never what a symlink points to) so a watcher does not trip over it
                // forever; a directory is removed only when empty.
                let reason = format!("refused: {e}");
                self.record_failure("(not a regular file)", &reason, None, None)?;
                remove_entry(&path)?;
                return Ok(Outcome::Rejected {
                    command: path.display().to_string(),
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(CliError::failed(e.to_string())),
        };
        let bytes = match &seen {
            crate::fs::Bounded::Whole(b) => b.clone(),
            crate::fs::Bounded::TooBig { len, head } => {
                let shown = quote(&String::from_utf8_lossy(head));
                let reason = format!(
                    "the suggestion is {len} bytes, over the {MAX_SUGGESTION_BYTES}-byte limit of a command"
                );
                self.record_failure(&shown, &format!("refused: {reason}"), None, None)?;
                remove_if_unchanged(&path, &seen)?;
                return Ok(Outcome::Rejected {
                    command: shown,
                    reason,
                });
            }
        };
        let original = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                // Not text: refuse it like any other bad suggestion, and move it aside so
                // a watcher does not trip over it forever.
                let shown = quote(&String::from_utf8_lossy(e.as_bytes()));
                let reason = "the suggestion is not valid UTF-8 text".to_owned();
                self.record_failure(&shown, &format!("refused: {reason}"), None, None)?;
                remove_if_unchanged(&path, &seen)?;
                return Ok(Outcome::Rejected {
                    command: shown,
                    reason,
                });
            }
        };
        let text = original.trim().to_owned();
        let shown = quote(&text);
        let suggestion = match validate::validate_suggestion(&text) {
            Ok(s) => s,
            Err(r) => {
                let reason = format!("refused: {r}");
                self.give_up(&seen, &text, &reason, None, None)?;
                return Ok(Outcome::Rejected {
                    command: shown,
                    reason: r.to_string(),
                });
            }
        };
        if let Some(r) = self.check_arguments(&suggestion) {
            let reason = format!("refused: {r}");
            self.give_up(&seen, &text, &reason, None, None)?;
            return Ok(Outcome::Rejected {
                command: shown,
                reason,
            });
        }
        let argv = match self.argv_for(&suggestion) {
            Ok(a) => a,
            Err(reason) => {
                self.give_up(&seen, &text, &reason, None, None)?;
                return Ok(Outcome::Failed {
                    command: shown,
                    reason,
                });
            }
        };
        let attempts = self.args.attempts;
        let mut last = String::new();
        for attempt in 1..=attempts {
            tracing::info!(command = %suggestion, attempt, "consuming suggestion");
            let code = match self.run_attempt(&argv) {
                Ok(code) => code,
                Err(e) => return Err(CliError::failed(e)),
            };
            if self.stopping().is_some() {
                return Ok(Outcome::Interrupted { command: shown });
            }
            if code == 0 {
                remove_if_unchanged(&path, &seen)?;
                return Ok(Outcome::Consumed {
                    command: shown,
                    attempts: attempt,
                });
            }
            last = format!("`{suggestion}` exited with {code}");
            let context = ErrorContext {
                command: Some("consume".into()),
                attempt: Some(attempt),
                exit_code: Some(code),
                ..ErrorContext::default()
            };
            logging::record_error(project, "consume", &last, &context);
            // Not found / not executable will not change by waiting.
            if code == exit::EXEC_NOT_FOUND || code == exit::EXEC_NOT_EXECUTABLE {
                last = format!("{last} (not retried: the program could not be started)");
                let reason = format!("{last} on attempt {attempt}");
                self.give_up(&seen, &text, &reason, Some(attempt), Some(code))?;
                return Ok(Outcome::Failed {
                    command: shown,
                    reason,
                });
            }
            if attempt < attempts && !self.sleep(self.args.retry_delay) {
                return Ok(Outcome::Interrupted { command: shown });
            }
        }
        let reason = format!("{last} on each of {attempts} attempt(s)");
        self.give_up(&seen, &text, &reason, Some(attempts), None)?;
        Ok(Outcome::Failed {
            command: shown,
            reason,
        })
    }

    /// `development_mode.command_validation` (on by default): a qw command that acts on an
    /// existing spec (`workflow-continue`, `workflow-reset`, `spec-status`) is checked
    /// against the project before it runs, so a suggestion naming a spec that does not
    /// exist is refused once instead of failing on every attempt. The safety checks of
    /// `validate_suggestion` (which parse the arguments with qw's own definitions) run
    /// whatever this flag says.
    fn check_arguments(&self, s: &Suggestion) -> Option<String> {
        let on = self
            .ctx
            .settings()
            .map_or(true, |st| st.development_mode.command_validation());
        let Suggestion::Qw { command, spec, .. } = s else {
            return None;
        };
        if !on {
            return None;
        }
        let state = StateStore::new(&self.ctx.project).load().ok();
        let in_state = |name: &str| {
            state
                .as_ref()
                .is_some_and(|st| st.specifications.contains_key(name))
        };
        missing_spec(&self.ctx.project, command, spec.as_deref(), in_state)
    }

    /// The argv that runs a suggestion through `qw exec --admit`.
    fn argv_for(&self, s: &Suggestion) -> Result<Vec<OsString>, String> {
        let qw = std::env::current_exe()
            .map_err(|e| format!("cannot find the running qw executable: {e}"))?;
        let root = self.ctx.project.root().as_os_str().to_owned();
        let mut argv: Vec<OsString> =
            vec![qw.clone().into(), "-C".into(), root.clone(), "exec".into()];
        // qw's own commands are not admitted as one task: the work inside them is (each
        // workflow task takes its own slot while it runs). Admitting `qw workflow-auto`
        // as a whole would hold a slot for its whole life, and deadlock it against its own
        // tasks at `max_concurrent: 1`.
        if matches!(s, Suggestion::Slash { .. }) {
            argv.extend(
                // CONTRACT §7: consume waits at most 60 s for admission per attempt.
                ["--admit=normal", "--admit-timeout", "60"].map(OsString::from),
            );
        }
        argv.extend(["--no-record", "--"].map(OsString::from));
        match s {
            Suggestion::Qw { args, .. } => {
                argv.extend([qw.into(), "-C".into(), root]);
                argv.extend(args.iter().map(OsString::from));
            }
            Suggestion::Slash { .. } => {
                if find_in_path("claude").is_none() {
                    return Err(format!(
                        "`{}` needs Claude Code, but `claude` is not on PATH; install it or run the command yourself",
                        s.slash_text()
                    ));
                }
                argv.extend(
                    ["claude", "-p", &s.slash_text(), "--output-format", "json"]
                        .map(OsString::from),
                );
            }
        }
        Ok(argv)
    }

    /// Run one attempt to completion, forwarding a stop signal to it. Returns its exit code.
    fn run_attempt(&self, argv: &[OsString]) -> Result<i32, String> {
        use std::os::unix::process::CommandExt as _;
        let Some((program, rest)) = argv.split_first() else {
            return Err("empty command".into());
        };
        let mut child = Command::new(program)
            .args(rest)
            .current_dir(self.ctx.project.root())
            .stdin(Stdio::null())
            // With --json, stdout carries only qw's own JSON: the command's output goes to stderr.
            .stdout(if self.ctx.global.json {
                use std::os::fd::AsFd as _;
                std::io::stderr()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_or_else(|_| Stdio::null(), Stdio::from)
            } else {
                Stdio::inherit()
            })
            // Own process group: a terminal Ctrl-C reaches only us and is forwarded once;
            // reaching `qw exec` twice would make it skip the grace.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", program.to_string_lossy()))?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let mut forwarded = false;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    use std::os::unix::process::ExitStatusExt;
                    return Ok(status
                        .code()
                        .or_else(|| status.signal().map(|s| exit::EXEC_SIGNAL_BASE + s))
                        .unwrap_or(1));
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(format!(
                        "cannot wait for `{}`: {e}",
                        program.to_string_lossy()
                    ));
                }
            }
            if let Some(sig) = self.stopping()
                && !forwarded
            {
                forwarded = true;
                let sig =
                    nix::sys::signal::Signal::try_from(sig).unwrap_or(nix::sys::signal::SIGTERM);
                let _ = nix::sys::signal::kill(pid, sig);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sleep, waking early for a stop signal. False if stopped.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stopping().is_some() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20).min(d));
        }
        self.stopping().is_none()
    }

    /// Move the suggestion to the failed file with its reason, and record the error.
    fn give_up(
        &self,
        original: &crate::fs::Bounded,
        text: &str,
        reason: &str,
        attempt: Option<u32>,
        exit_code: Option<i32>,
    ) -> Result<(), CliError> {
        self.record_failure(text, reason, attempt, exit_code)?;
        remove_if_unchanged(&self.ctx.project.next_command_file(), original)
    }

    /// Append the failed suggestion and why to `next_command.failed.txt` (earlier records
    /// are kept) and record the error.
    fn record_failure(
        &self,
        text: &str,
        reason: &str,
        attempt: Option<u32>,
        exit_code: Option<i32>,
    ) -> Result<(), CliError> {
        let project = &self.ctx.project;
        let failed = project.next_command_failed_file();
        // One append: the earlier records are never read (the file may be huge, or not a
        // file at all) nor rewritten.
        let record = format!(
            "{text}\n# failed at {}: {reason}\n",
            chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
        );
        crate::fs::append_regular(&failed, record.as_bytes())
            .map_err(|e| CliError::failed(e.to_string()))?;
        let context = ErrorContext {
            command: Some("consume".into()),
            attempt,
            exit_code,
            ..ErrorContext::default()
        };
        logging::record_error(project, "consume", reason, &context);
        Ok(())
    }

    fn report(&self, o: &Outcome) {
        if self.ctx.global.json {
            let v = match o {
                Outcome::Nothing if self.args.watch => return,
                Outcome::Nothing => json!({"outcome": "nothing"}),
                Outcome::Consumed { command, attempts } => {
                    json!({"outcome": "consumed", "command": command, "attempts": attempts})
                }
                Outcome::Failed { command, reason } => {
                    json!({"outcome": "failed", "command": command, "reason": reason})
                }
                Outcome::Rejected { command, reason } => {
                    json!({"outcome": "rejected", "command": command, "reason": reason})
                }
                Outcome::Interrupted { command } => {
                    json!({"outcome": "interrupted", "command": command})
                }
            };
            say!("{v}");
            return;
        }
        if self.ctx.global.quiet {
            return;
        }
        let failed = self.ctx.project.next_command_failed_file();
        let mut out = std::io::stdout().lock();
        let _ = match o {
            Outcome::Nothing if self.args.watch => Ok(()),
            Outcome::Nothing => writeln!(
                out,
                "no suggestion in {}",
                self.ctx.project.next_command_file().display()
            ),
            Outcome::Consumed { command, attempts } => {
                writeln!(out, "consumed: {command} (attempt {attempts})")
            }
            Outcome::Failed { command, reason } => writeln!(
                out,
                "failed: {command}: {reason}; moved to {}",
                failed.display()
            ),
            Outcome::Rejected { command, reason } => writeln!(
                out,
                "rejected: {command}: {reason}; moved to {}",
                failed.display()
            ),
            Outcome::Interrupted { command } => {
                writeln!(out, "interrupted: {command} (left in place)")
            }
        };
    }

    fn print_stats(&self, stats: Stats) {
        if !self.args.stats {
            return;
        }
        if self.ctx.global.json {
            say!("{}", json!({"stats": stats}));
        } else {
            say!(
                "consumed: {}  failed: {}  rejected: {}",
                stats.consumed,
                stats.failed,
                stats.rejected
            );
        }
    }
}

/// Start a file watcher on `dir` that pings `tx` on any change; None if unavailable.
fn start_watcher(
    dir: &Path,
    tx: std::sync::mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let handler = move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = tx.send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("file notifications unavailable ({e}); polling instead");
            return None;
        }
    };
    match watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            tracing::warn!("cannot watch `{}` ({e}); polling instead", dir.display());
            None
        }
    }
}

/// The most `consume` reads of a suggestion: a command line, not a document.
pub const MAX_SUGGESTION_BYTES: usize = 4096;

/// How much of a suggestion messages and `next_command.failed.txt` quote.
const QUOTE_BYTES: usize = 200;

/// `text` escaped for one line, cut after [`QUOTE_BYTES`] (saying how long it was).
fn quote(text: &str) -> String {
    if text.len() <= QUOTE_BYTES {
        return text.escape_default().to_string();
    }
    let mut end = QUOTE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", text[..end].escape_default(), text.len())
}

/// Commands that act on a spec that must already exist.
const NEEDS_EXISTING_SPEC: [&str; 3] = ["workflow-continue", "workflow-reset", "spec-status"];

/// Why a qw `command` naming `spec` would fail for want of it, if it would: the spec is
/// neither in the state (`in_state`) nor a folder under `.claude/specs/`.
pub(crate) fn missing_spec(
    project: &Project,
    command: &str,
    spec: Option<&str>,
    in_state: impl Fn(&str) -> bool,
) -> Option<String> {
    let spec = spec?;
    if !NEEDS_EXISTING_SPEC.contains(&command) || in_state(spec) || project.spec_dir(spec).is_dir()
    {
        return None;
    }
    Some(format!(
        "`qw {command}` names spec `{spec}`, which does not exist (not in the state, no `{}`) (development_mode.command_validation)",
        project.spec_dir(spec).display()
    ))
}

/// Delete the suggestion file unless someone wrote a new suggestion meanwhile (what is
/// there now differs from what was read: `qw suggest` replaces the file by rename).
fn remove_if_unchanged(path: &Path, original: &crate::fs::Bounded) -> Result<(), CliError> {
    match crate::fs::read_regular(path, MAX_SUGGESTION_BYTES) {
        Ok(now) if &now == original => {
            crate::fs::remove_file(path).map_err(|e| CliError::failed(e.to_string()))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        // Replaced by something that is not a file: the next round deals with it.
        Err(e) if crate::fs::is_refused(&e) => Ok(()),
        Err(e) => Err(CliError::failed(e.to_string())),
    }
}

/// Remove what is at `path` without following it: a FIFO, socket or symlink is unlinked,
/// a directory removed only when empty (else an error naming it).
fn remove_entry(path: &Path) -> Result<(), CliError> {
    let is_dir = crate::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    let removed = if is_dir {
        fs_err::remove_dir(path)
    } else {
        crate::fs::remove_file(path)
    };
    match removed {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::usage(format!(
            "`{}` is not a suggestion file and cannot be removed ({e}); remove it yourself",
            path.display()
        ))),
    }
}

/// The first executable file called `name` on PATH.
fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            crate::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod command_validation_tests {
    use super::*;

    #[test]
    fn a_command_on_a_missing_spec_is_caught_and_others_pass() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::at(dir.path());
        std::fs::create_dir_all(project.spec_dir("on-disk")).unwrap();
        let in_state = |n: &str| n == "in-state";
        for (command, spec, missing) in [
            ("workflow-continue", Some("nope"), true),
            ("workflow-reset", Some("nope"), true),
            ("spec-status", Some("nope"), true),
            ("workflow-continue", Some("on-disk"), false),
            ("workflow-reset", Some("in-state"), false),
            ("workflow-continue", None, false),
            ("workflow-auto", Some("nope"), false),
            ("spec-create", Some("nope"), false),
        ] {
            let r = missing_spec(&project, command, spec, in_state);
            assert_eq!(r.is_some(), missing, "{command} {spec:?}: {r:?}");
        }
    }
}
