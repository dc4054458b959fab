//! The consumer of suggestions: the safe hand-off of the next command.
//!
//! Claude Code (or a person) writes one command into `.claude/next_command.txt` (`qw
//! suggest`); the [`Consumer`] validates it ([`crate::validate::validate_suggestion`]),
//! runs it through `qw exec` (qw's own commands as a `qw` child that admits its own
//! tasks, other slash commands admitted, through `claude -p`), retries it, and then
//! deletes it — or, after the last failure or when it is refused, moves it to
//! `.claude/next_command.failed.txt` with the reason, so nothing is retried forever.
//!
//! Owns: the suggestion files and their lock (`.claude/next_command.lock`, a
//! [`LockedFile`]), the attempt loop, the watch loop. Built on [`Cancel`] (signals,
//! interruptible sleeps), [`crate::exec::wait_forwarding`] (the child `qw exec` and the
//! forwarded stop) and [`crate::agent::find_program`] (PATH lookup).
//! Must not: print (the CLI reports each [`Outcome`]) or parse arguments.

mod file;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cancel::Cancel;
use crate::exit;
use crate::fs::{Bounded, LockError, LockTimeout, LockedFile};
use crate::logging::{self, ErrorContext};
use crate::project::Project;
use crate::state::StateStore;
use crate::validate::{self, Suggestion};

pub(crate) use file::{MAX_SUGGESTION_BYTES, quote};

/// How a [`Consumer`] runs suggestions.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Attempts before giving up.
    pub attempts: u32,
    /// Time between attempts.
    pub retry_delay: Duration,
    /// `development_mode.command_validation`: check that a qw command's spec exists
    /// before running it (see [`missing_spec`]).
    pub command_validation: bool,
    /// Send the command's stdout to stderr (qw's stdout carries only its own JSON).
    pub stdout_to_stderr: bool,
}

/// What happened to one suggestion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// No suggestion file.
    Nothing,
    /// Ran successfully; the file was deleted.
    Consumed {
        /// The command, quoted for one line.
        command: String,
        /// The attempt that succeeded.
        attempts: u32,
    },
    /// Ran and failed (or could not run); moved to the failed file.
    Failed {
        /// The command, quoted for one line.
        command: String,
        /// Why.
        reason: String,
    },
    /// Refused by validation; moved to the failed file.
    Rejected {
        /// The command, quoted for one line.
        command: String,
        /// Why.
        reason: String,
    },
    /// A signal arrived first; the file was left in place.
    Interrupted {
        /// The command, quoted for one line.
        command: String,
        /// What was interrupted, when it was the wait for another consumer's lock.
        waiting: Option<String>,
    },
}

/// Counts for `--stats`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Stats {
    /// Suggestions run successfully.
    pub consumed: u32,
    /// Suggestions that failed.
    pub failed: u32,
    /// Suggestions refused.
    pub rejected: u32,
}

impl Stats {
    /// Count one outcome.
    pub(crate) fn count(&mut self, o: &Outcome) {
        match o {
            Outcome::Consumed { .. } => self.consumed += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Rejected { .. } => self.rejected += 1,
            Outcome::Nothing | Outcome::Interrupted { .. } => {}
        }
    }
}

/// Failures of the consumer itself (not of the command it ran).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsumeError {
    /// I/O on a named path.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The suggestion's lock could not be taken.
    #[error(transparent)]
    Lock(Box<LockError>),
    /// The command could not be started or waited for.
    #[error("{0}")]
    Run(String),
    /// Something that is not a suggestion file is in its place and cannot be removed.
    #[error("`{}` is not a suggestion file and cannot be removed ({source}); remove it yourself", path.display())]
    NotRemovable {
        /// The suggestion's path.
        path: PathBuf,
        /// Why removing it failed.
        source: std::io::Error,
    },
}

impl exit::UserError for ConsumeError {
    fn exit_code(&self) -> i32 {
        match self {
            ConsumeError::NotRemovable { .. } => exit::USAGE,
            ConsumeError::Io(_) | ConsumeError::Lock(_) | ConsumeError::Run(_) => exit::FAILED,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            ConsumeError::Lock(e) => e.hints(),
            _ => Vec::new(),
        }
    }
}

/// Consumes the suggestions of one project.
#[derive(Debug)]
pub(crate) struct Consumer<'a> {
    project: &'a Project,
    options: Options,
    /// Set by SIGINT, SIGTERM and SIGHUP: the signal that asked us to stop.
    cancel: Cancel,
}

/// How [`Consumer::watch`] learns of new suggestions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watching {
    /// File notifications, backed up by a slow poll.
    Notifications,
    /// Polling only (asked for, or notifications are unavailable).
    Polling,
}

impl<'a> Consumer<'a> {
    /// A consumer of `project`'s suggestions that stops when `cancel` is set.
    pub(crate) fn new(project: &'a Project, options: Options, cancel: Cancel) -> Consumer<'a> {
        Consumer {
            project,
            options,
            cancel,
        }
    }

    /// Watch `.claude/` for suggestions until a signal arrives, consuming each one and
    /// handing its outcome to `on_outcome`. `started` hears how it watches, once.
    pub(crate) fn watch(
        &self,
        poll_only: bool,
        started: impl FnOnce(Watching),
        mut on_outcome: impl FnMut(&Outcome),
    ) -> Result<(), ConsumeError> {
        let dir = self.project.claude_dir();
        crate::fs::create_dir_all(&dir)?;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let watcher = if poll_only {
            None
        } else {
            start_watcher(&dir, tx)
        };
        // With notifications a slow poll only backs them up; without, polling is all.
        let (poll, how) = if watcher.is_some() {
            (Duration::from_secs(5), Watching::Notifications)
        } else {
            (Duration::from_millis(500), Watching::Polling)
        };
        started(how);
        let mut last_check: Option<Instant> = None;
        let mut dirty = true;
        while self.cancel.pending().is_none() {
            if dirty || last_check.is_none_or(|t| t.elapsed() >= poll) {
                dirty = false;
                last_check = Some(Instant::now());
                let outcome = self.consume_one()?;
                on_outcome(&outcome);
                if matches!(outcome, Outcome::Interrupted { .. }) {
                    break;
                }
            }
            if rx.recv_timeout(Duration::from_millis(200)).is_ok() {
                while rx.try_recv().is_ok() {}
                dirty = true;
            }
        }
        drop(watcher);
        Ok(())
    }

    /// Take the current suggestion through validate → run with retries → delete or move.
    pub(crate) fn consume_one(&self) -> Result<Outcome, ConsumeError> {
        let project = self.project;
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
                    let text = match crate::fs::read_regular(&path, MAX_SUGGESTION_BYTES) {
                        Ok(Bounded::Whole(b)) => String::from_utf8_lossy(&b).into_owned(),
                        _ => String::new(),
                    };
                    return Ok(Outcome::Interrupted {
                        command: quote(text.trim()),
                        waiting: Some(e.to_string()),
                    });
                }
                Err(e) => return Err(ConsumeError::Lock(Box::new(e))),
            };
        let seen = match file::read(&path)? {
            file::Read::Gone => return Ok(Outcome::Nothing),
            file::Read::NotAFile(e) => {
                // Not a file anyone could have suggested with `qw suggest`: remove the
                // entry (never what a symlink points to) so a watcher does not trip over it
                // forever; a directory is removed only when empty.
                let reason = format!("refused: {e}");
                self.record_failure("(not a regular file)", &reason, None, None)?;
                file::remove_entry(&path)?;
                return Ok(Outcome::Rejected {
                    command: path.display().to_string(),
                    reason: e.to_string(),
                });
            }
            file::Read::Seen(seen) => seen,
        };
        let text = match file::text_of(&seen) {
            Ok(text) => text,
            Err((shown, reason)) => {
                // Too long or not text: refuse it like any other bad suggestion, and move
                // it aside so a watcher does not trip over it forever.
                self.record_failure(&shown, &format!("refused: {reason}"), None, None)?;
                file::remove_if_unchanged(&path, &seen)?;
                return Ok(Outcome::Rejected {
                    command: shown,
                    reason,
                });
            }
        };
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
        let argv = std::env::current_exe()
            .map_err(|e| format!("cannot find the running qw executable: {e}"))
            .and_then(|qw| {
                let claude = matches!(suggestion, Suggestion::Slash { .. })
                    && crate::agent::find_program("claude".as_ref()).is_some();
                argv_for(&qw, project.root(), &suggestion, claude)
            });
        let argv = match argv {
            Ok(a) => a,
            Err(reason) => {
                self.give_up(&seen, &text, &reason, None, None)?;
                return Ok(Outcome::Failed {
                    command: shown,
                    reason,
                });
            }
        };
        let attempts = self.options.attempts;
        let mut last = String::new();
        for attempt in 1..=attempts {
            tracing::info!(command = %suggestion, attempt, "consuming suggestion");
            let slash = matches!(suggestion, Suggestion::Slash { .. });
            let (code, said) = self.run_attempt(&argv, slash)?;
            if self.cancel.pending().is_some() {
                return Ok(Outcome::Interrupted {
                    command: shown,
                    waiting: None,
                });
            }
            if code == 0 {
                file::remove_if_unchanged(&path, &seen)?;
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
            let not_retried = if never_starts(code) {
                Some("the program could not be started")
            } else if slash && crate::agent::outcome::is_login_error(&said) {
                // Claude Code's "Not logged in · Please run /login": the same on every try.
                Some("Claude Code is not logged in; run `claude /login`, then suggest it again")
            } else if code == exit::USAGE && matches!(suggestion, Suggestion::Qw { .. }) {
                // qw's exit 2 is bad input (a name, a flag, a file to fix): the same again.
                Some("qw refused its input, which a retry would not change")
            } else {
                None
            };
            if let Some(why) = not_retried {
                last = format!("{last} (not retried: {why})");
                let reason = format!("{last} on attempt {attempt}");
                self.give_up(&seen, &text, &reason, Some(attempt), Some(code))?;
                return Ok(Outcome::Failed {
                    command: shown,
                    reason,
                });
            }
            if attempt < attempts && !self.cancel.sleep(self.options.retry_delay) {
                return Ok(Outcome::Interrupted {
                    command: shown,
                    waiting: None,
                });
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
    /// existing spec is checked against the project before it runs, so a suggestion
    /// naming a spec that does not exist is refused once instead of failing on every
    /// attempt. The safety checks of `validate_suggestion` (which parse the arguments
    /// with qw's own definitions) run whatever this flag says.
    fn check_arguments(&self, s: &Suggestion) -> Option<String> {
        let Suggestion::Qw { command, spec, .. } = s else {
            return None;
        };
        if !self.options.command_validation {
            return None;
        }
        let state = StateStore::new(self.project).load().ok();
        let in_state = |name: &str| {
            state
                .as_ref()
                .is_some_and(|st| st.specifications.contains_key(name))
        };
        missing_spec(self.project, command, spec.as_deref(), in_state)
    }

    /// Run one attempt to completion, forwarding a stop signal to it. Returns its exit code
    /// and, when `capture` (Claude Code's output), the last [`CAPTURED_TAIL`] bytes of what
    /// it wrote on stdout and stderr — passed on as it comes, and kept so that a failure no
    /// retry can mend (not logged in) is told from one that may pass next time.
    fn run_attempt(&self, argv: &[OsString], capture: bool) -> Result<(i32, String), ConsumeError> {
        use std::os::unix::process::CommandExt as _;
        let Some((program, rest)) = argv.split_first() else {
            return Err(ConsumeError::Run("empty command".into()));
        };
        let out_to_stderr = self.options.stdout_to_stderr;
        let mut child = Command::new(program)
            .args(rest)
            .current_dir(self.project.root())
            .stdin(Stdio::null())
            .stdout(if capture {
                Stdio::piped()
            } else if out_to_stderr {
                use std::os::fd::AsFd as _;
                std::io::stderr()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_or_else(|_| Stdio::null(), Stdio::from)
            } else {
                Stdio::inherit()
            })
            .stderr(if capture {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            // Own process group: a terminal Ctrl-C reaches only us and is forwarded once;
            // reaching `qw exec` twice would make it skip the grace.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                ConsumeError::Run(format!("cannot start `{}`: {e}", program.to_string_lossy()))
            })?;
        let tail = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut pumps = 0;
        if let Some(out) = child.stdout.take() {
            pumps += 1;
            pass_on(out, out_to_stderr, &tail, done_tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            pumps += 1;
            pass_on(err, true, &tail, done_tx);
        }
        let cannot_wait = |e: &dyn std::fmt::Display| {
            ConsumeError::Run(format!(
                "cannot wait for `{}`: {e}",
                program.to_string_lossy()
            ))
        };
        let status = crate::exec::wait_forwarding(child, &self.cancel)
            .ok_or_else(|| cannot_wait(&"lost track of it"))?
            .map_err(|e| cannot_wait(&e))?;
        // The pipes end with the attempt (`qw exec` ends its whole tree); a descendant that
        // escaped it and keeps one open is not waited for beyond a moment.
        let until = Instant::now() + Duration::from_secs(2);
        for _ in 0..pumps {
            if done_rx
                .recv_timeout(until.saturating_duration_since(Instant::now()))
                .is_err()
            {
                break;
            }
        }
        let tail = tail
            .lock()
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .unwrap_or_default();
        Ok((exit_code(status), tail))
    }

    /// Move the suggestion to the failed file with its reason, and record the error.
    fn give_up(
        &self,
        original: &Bounded,
        text: &str,
        reason: &str,
        attempt: Option<u32>,
        exit_code: Option<i32>,
    ) -> Result<(), ConsumeError> {
        self.record_failure(text, reason, attempt, exit_code)?;
        file::remove_if_unchanged(&self.project.next_command_file(), original)
    }

    /// Append the failed suggestion and why to `next_command.failed.txt` (earlier records
    /// are kept) and record the error.
    fn record_failure(
        &self,
        text: &str,
        reason: &str,
        attempt: Option<u32>,
        exit_code: Option<i32>,
    ) -> Result<(), ConsumeError> {
        let project = self.project;
        // One append: the earlier records are never read (the file may be huge, or not a
        // file at all) nor rewritten.
        let record = file::failure_record(text, reason, &chrono::Local::now().fixed_offset());
        crate::fs::append_regular(&project.next_command_failed_file(), record.as_bytes())?;
        let context = ErrorContext {
            command: Some("consume".into()),
            attempt,
            exit_code,
            ..ErrorContext::default()
        };
        logging::record_error(project, "consume", reason, &context);
        Ok(())
    }
}

/// How much of an attempt's output is kept to classify its failure.
const CAPTURED_TAIL: usize = 16 * 1024;

/// Copy `from` to stderr (or stdout) as it comes, keeping the last [`CAPTURED_TAIL`]
/// bytes in `tail`; `done` is told at the end of the stream.
fn pass_on(
    mut from: impl std::io::Read + Send + 'static,
    to_stderr: bool,
    tail: &std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    done: std::sync::mpsc::Sender<()>,
) {
    use std::io::Write as _;
    let tail = std::sync::Arc::clone(tail);
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let chunk = buf.get(..n).unwrap_or_default();
            let _ = if to_stderr {
                std::io::stderr().write_all(chunk)
            } else {
                let mut out = std::io::stdout().lock();
                out.write_all(chunk).and_then(|()| out.flush())
            };
            if let Ok(mut t) = tail.lock() {
                t.extend_from_slice(chunk);
                let over = t.len().saturating_sub(CAPTURED_TAIL);
                t.drain(..over);
            }
        }
        let _ = done.send(());
    });
}

/// Exit codes that waiting will not change: the program was not found or not executable.
fn never_starts(code: i32) -> bool {
    code == exit::EXEC_NOT_FOUND || code == exit::EXEC_NOT_EXECUTABLE
}

/// The exit code of a finished attempt (128+N for a signal, as `qw exec` reports it).
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| exit::EXEC_SIGNAL_BASE + s))
        .unwrap_or(1)
}

/// The argv that runs suggestion `s` of the project at `root` through `qw exec` (`qw`
/// is the running executable; `claude_found` whether `claude` is on PATH).
fn argv_for(
    qw: &Path,
    root: &Path,
    s: &Suggestion,
    claude_found: bool,
) -> Result<Vec<OsString>, String> {
    let root = root.as_os_str().to_owned();
    let mut argv: Vec<OsString> = vec![qw.into(), "-C".into(), root.clone(), "exec".into()];
    // qw's own commands are not admitted as one task: the work inside them is (each
    // workflow task takes its own slot while it runs). Admitting `qw workflow-auto` as a
    // whole would hold a slot for its whole life, and deadlock it against its own tasks
    // at `max_concurrent: 1`.
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
            if !claude_found {
                return Err(format!(
                    "`{}` needs Claude Code, but `claude` is not on PATH; install it or run the command yourself",
                    s.slash_text()
                ));
            }
            argv.extend(
                ["claude", "-p", &s.slash_text(), "--output-format", "json"].map(OsString::from),
            );
        }
    }
    Ok(argv)
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

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
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
        let r = missing_spec(&project, "spec-status", Some("nope"), in_state).unwrap();
        assert!(r.contains("`qw spec-status` names spec `nope`"), "{r}");
        assert!(r.ends_with("(development_mode.command_validation)"), "{r}");
    }

    fn words(argv: &[OsString]) -> Vec<&str> {
        argv.iter().map(|a| a.to_str().unwrap()).collect()
    }

    #[test]
    fn qw_commands_run_unadmitted_in_the_project_and_slash_commands_admitted_through_claude() {
        let (qw, root) = (Path::new("/bin/qw"), Path::new("/p"));
        let own = validate::validate_suggestion("qw spec-status user-auth").unwrap();
        let argv = argv_for(qw, root, &own, false).unwrap();
        assert_eq!(
            words(&argv),
            [
                "/bin/qw",
                "-C",
                "/p",
                "exec",
                "--no-record",
                "--",
                "/bin/qw",
                "-C",
                "/p",
                "spec-status",
                "user-auth"
            ],
            "a qw command admits its own tasks, and needs no claude"
        );
        let slash = validate::validate_suggestion("/spec-design user-auth").unwrap();
        let argv = argv_for(qw, root, &slash, true).unwrap();
        assert_eq!(
            words(&argv),
            [
                "/bin/qw",
                "-C",
                "/p",
                "exec",
                "--admit=normal",
                "--admit-timeout",
                "60",
                "--no-record",
                "--",
                "claude",
                "-p",
                "/spec-design user-auth",
                "--output-format",
                "json"
            ]
        );
        let err = argv_for(qw, root, &slash, false).unwrap_err();
        assert!(
            err.starts_with("`/spec-design user-auth` needs Claude Code"),
            "{err}"
        );
    }

    #[test]
    fn only_a_program_that_cannot_start_is_not_retried() {
        assert!(never_starts(exit::EXEC_NOT_FOUND));
        assert!(never_starts(exit::EXEC_NOT_EXECUTABLE));
        for code in [
            1,
            2,
            exit::EXEC_TIMED_OUT,
            exit::EXEC_FAILED,
            exit::EXEC_SIGNAL_BASE + 15,
        ] {
            assert!(!never_starts(code), "{code}");
        }
    }

    #[test]
    fn exit_codes_of_attempts_follow_qw_exec() {
        use std::os::unix::process::ExitStatusExt;
        let exited = |code: i32| std::process::ExitStatus::from_raw(code << 8);
        assert_eq!(exit_code(exited(0)), 0);
        assert_eq!(exit_code(exited(3)), 3);
        let killed = std::process::ExitStatus::from_raw(9);
        assert_eq!(exit_code(killed), exit::EXEC_SIGNAL_BASE + 9);
    }

    #[test]
    fn stats_count_what_ended_and_not_what_was_left() {
        let mut stats = Stats::default();
        let cmd = || "c".to_owned();
        for o in [
            Outcome::Nothing,
            Outcome::Consumed {
                command: cmd(),
                attempts: 2,
            },
            Outcome::Failed {
                command: cmd(),
                reason: cmd(),
            },
            Outcome::Rejected {
                command: cmd(),
                reason: cmd(),
            },
            Outcome::Rejected {
                command: cmd(),
                reason: cmd(),
            },
            Outcome::Interrupted {
                command: cmd(),
                waiting: None,
            },
        ] {
            stats.count(&o);
        }
        assert_eq!(
            stats,
            Stats {
                consumed: 1,
                failed: 1,
                rejected: 2
            }
        );
    }

    #[test]
    fn a_stop_ends_a_running_attempt_and_is_seen_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::at(dir.path());
        let cancel = Cancel::new();
        let options = Options {
            attempts: 1,
            retry_delay: Duration::ZERO,
            command_validation: true,
            stdout_to_stderr: false,
        };
        let consumer = Consumer::new(&project, options, cancel.clone());
        let argv: Vec<OsString> = ["sleep", "60"].map(OsString::from).to_vec();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            cancel.request(15);
        });
        let (code, _) = consumer.run_attempt(&argv, true).unwrap();
        stopper.join().unwrap();
        assert_eq!(code, exit::EXEC_SIGNAL_BASE + 15, "SIGTERM was forwarded");
        let err = consumer
            .run_attempt(&[OsString::from("/nonexistent/program")], false)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot start `/nonexistent/program`"),
            "{err}"
        );
    }
}
