//! [`LockedFile`]: the one cross-process lock of qw (state, workflow of a spec, consumed
//! suggestion, repository lock, admission slots and queue), modelled on uv's
//! `uv-fs/src/locked_file.rs`.
//!
//! A lock is an exclusive `flock` on a regular file. It belongs to the open file, so
//! dropping the guard — or the process dying, even by SIGKILL — releases it, and a
//! crashed holder never leaves a lock behind.
//!
//! Who holds it: right after locking, the holder writes one JSON line into the lock file
//! (pid, process start time, command line, since when, an optional note). The lock file
//! carries nothing else, and a record is only believed while the file is locked, so a
//! stale record of a finished holder is never shown. On Linux the kernel's own table
//! (`/proc/locks`) names the locking pid, so [`LockedFile::probe`] neither takes the lock
//! (a probe must not make a concurrent [`LockedFile::try_acquire`] fail) nor trusts a
//! record the current holder has not yet overwritten.
//!
//! Waiting ([`LockedFile::acquire`]) blocks in a helper thread (the kernel hands the lock
//! over the moment it is free) while the caller watches a [`Cancel`] and a
//! [`LockTimeout`], so the wait can be interrupted and bounded; after a second it says
//! once what it waits for and who holds it.
//!
//! Must not: know what the locked resource is; callers name it for messages.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, Utc};
use fs_err::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use serde::{Deserialize, Serialize};

use crate::cancel::Cancel;

/// The environment variable bounding waits for qw's own locks, in seconds (0: no limit).
pub(crate) const TIMEOUT_VAR: &str = "QW_LOCK_TIMEOUT";
/// How long a wait lasts when [`TIMEOUT_VAR`] is not set (as uv's `UV_LOCK_TIMEOUT`).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// After this long a waiter says what it waits for and who holds it.
const SAY_AFTER: Duration = Duration::from_secs(1);
/// A waiter that was already asked to stop when it began (it is recording how a run
/// ended) keeps trying this long: a lock held for a normal write is free by then.
const PATIENCE_AFTER_STOP: Duration = Duration::from_secs(1);
/// How often a waiter looks at its cancel token and its time limit.
const TICK: Duration = Duration::from_millis(20);
/// A record longer than this is not read (the lock file is not ours to trust blindly).
const MAX_RECORD: usize = 4096;
/// The longest command line a holder records.
const MAX_COMMAND: usize = 300;

/// How long [`LockedFile::acquire`] may wait, and how a user changes that (for the hint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockTimeout {
    /// The longest wait; `None` waits until the lock is free or the wait is interrupted.
    pub limit: Option<Duration>,
    /// One hint line saying how to raise or remove the limit.
    pub how_to_raise: String,
}

impl LockTimeout {
    /// A limit and the hint that tells how to change it.
    pub fn new(limit: Option<Duration>, how_to_raise: impl Into<String>) -> LockTimeout {
        LockTimeout {
            limit,
            how_to_raise: how_to_raise.into(),
        }
    }

    /// The limit for qw's own locks: `QW_LOCK_TIMEOUT` seconds (decimals allowed, 0 = no
    /// limit), else [`DEFAULT_TIMEOUT`]. A value that is not a number is ignored with a
    /// warning naming it. Read once per process.
    pub fn from_env() -> LockTimeout {
        static FROM_ENV: std::sync::OnceLock<LockTimeout> = std::sync::OnceLock::new();
        FROM_ENV.get_or_init(LockTimeout::read_env).clone()
    }

    fn read_env() -> LockTimeout {
        let raw = std::env::var_os(TIMEOUT_VAR);
        let limit = match raw.as_deref().map(|v| v.to_string_lossy()) {
            None => Some(DEFAULT_TIMEOUT),
            Some(v) => parse_timeout(&v).unwrap_or_else(|| {
                tracing::warn!(
                    "ignoring {TIMEOUT_VAR}=`{v}`: not a number of seconds; waiting at most {}",
                    secs(DEFAULT_TIMEOUT)
                );
                Some(DEFAULT_TIMEOUT)
            }),
        };
        LockTimeout::new(
            limit,
            format!("to wait longer, set {TIMEOUT_VAR}=SECONDS (0 waits without a limit)"),
        )
    }
}

/// `"30"`, `"2.5"` → a limit; `"0"` → no limit; anything else → `None`.
fn parse_timeout(v: &str) -> Option<Option<Duration>> {
    let s: f64 = v.trim().parse().ok()?;
    if !s.is_finite() || s < 0.0 {
        return None;
    }
    if s == 0.0 {
        return Some(None);
    }
    Duration::try_from_secs_f64(s).ok().map(Some)
}

/// Whether the holding process runs, is stopped, or is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessState {
    /// Alive and not stopped.
    Running,
    /// Stopped (SIGSTOP, Ctrl-Z, a debugger): it will hold the lock until resumed or ended.
    Stopped,
    /// The process that took the lock has exited; something it started still holds the
    /// lock file open.
    Exited,
    /// Nothing could be learned (no `/proc`, another user's process).
    Unknown,
}

/// Who holds a lock, as far as it can be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// The process that took the lock; `None` when nothing names it.
    pub pid: Option<i32>,
    /// Its command line.
    pub command: Option<String>,
    /// When it took the lock.
    pub since: Option<DateTime<Utc>>,
    /// Whether it runs.
    pub state: ProcessState,
    /// What it wrote with [`LockedFile::set_note`] (e.g. why it waits).
    pub note: Option<String>,
}

impl Holder {
    /// A holder nothing is known about.
    pub fn unknown() -> Holder {
        Holder {
            pid: None,
            command: None,
            since: None,
            state: ProcessState::Unknown,
            note: None,
        }
    }

    /// Hint lines that help a user get the lock free (`path` is the lock file).
    pub fn hints(&self, path: &Path) -> Vec<String> {
        let path = path.display();
        match (self.pid, self.state) {
            (Some(pid), ProcessState::Stopped) => vec![format!(
                "pid {pid} is stopped: `kill -CONT {pid}` resumes it; ending it (`kill {pid}`) releases the lock"
            )],
            (Some(pid), ProcessState::Running) => vec![format!(
                "if pid {pid} is stuck, end it (`kill {pid}`): the lock is released when it exits"
            )],
            (Some(pid), ProcessState::Exited) => vec![format!(
                "pid {pid} has exited, but a process it started keeps `{path}` open; `fuser -v {path}` names it"
            )],
            _ => vec![format!("`fuser -v {path}` names the process holding it")],
        }
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(pid) = self.pid else {
            return f.write_str("an unidentified process");
        };
        write!(f, "pid {pid}")?;
        let state = match self.state {
            ProcessState::Running | ProcessState::Unknown => None,
            ProcessState::Stopped => Some("stopped"),
            ProcessState::Exited => Some("exited, its lock kept by a process it started"),
        };
        match (&self.command, state) {
            (Some(c), Some(s)) => write!(f, " ({c}; {s})")?,
            (Some(c), None) => write!(f, " ({c})")?,
            (None, Some(s)) => write!(f, " ({s})")?,
            (None, None) => {}
        }
        if let Some(since) = self.since {
            let local = since.with_timezone(&Local);
            if local.date_naive() == Local::now().date_naive() {
                write!(f, " since {}", local.format("%H:%M:%S"))?;
            } else {
                write!(f, " since {}", local.format("%Y-%m-%d %H:%M:%S"))?;
            }
        }
        if let Some(note) = &self.note {
            write!(f, ": {note}")?;
        }
        Ok(())
    }
}

/// Failures to take a lock. Every message names the lock file.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Opening or creating the lock file failed (the message names the path).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// Something other than a regular file (a FIFO, a directory) is at the lock's path.
    #[error("`{}` is not a regular file, so it cannot serve as a lock", path.display())]
    NotAFile {
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file has more than one hard link: the holder record written into it would
    /// overwrite the file it is linked to (`ln ~/notes.txt .claude/unified_state.json.lock`).
    #[error(
        "`{}` has {links} hard links, so it cannot serve as a lock: qw writes its holder into a lock file, which would overwrite the file linked to it",
        path.display()
    )]
    HardLinked {
        /// The lock file.
        path: PathBuf,
        /// How many names the file has.
        links: u64,
    },
    /// The lock operation itself failed (a file system without `flock`, say).
    #[error("failed to lock `{}`: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The lock stayed held for the whole time limit.
    #[error(
        "gave up after {} waiting for {resource} (`{}`), held by {holder}",
        secs(*waited),
        path.display()
    )]
    Timeout {
        /// What the lock protects ("the state of project `/p`").
        resource: String,
        /// The lock file.
        path: PathBuf,
        /// How long it waited.
        waited: Duration,
        /// Who held it when the wait ended.
        holder: Box<Holder>,
        /// How to raise the limit.
        how_to_raise: String,
    },
    /// A signal asked this process to stop while it waited.
    #[error(
        "interrupted by signal {signal} while waiting for {resource} (`{}`), held by {holder}",
        path.display()
    )]
    Interrupted {
        /// The signal.
        signal: i32,
        /// What the lock protects.
        resource: String,
        /// The lock file.
        path: PathBuf,
        /// Who held it.
        holder: Box<Holder>,
    },
}

impl LockError {
    /// The signal that interrupted the wait, if that is what happened.
    pub fn interrupted(&self) -> Option<i32> {
        match self {
            LockError::Interrupted { signal, .. } => Some(*signal),
            _ => None,
        }
    }

    /// Who held the lock when the wait ended (timeouts and interruptions).
    pub fn holder(&self) -> Option<&Holder> {
        match self {
            LockError::Timeout { holder, .. } | LockError::Interrupted { holder, .. } => {
                Some(holder)
            }
            _ => None,
        }
    }

    /// Hint lines: how to raise the limit, and how to get the holder out of the way.
    pub fn hints(&self) -> Vec<String> {
        match self {
            LockError::Timeout {
                path,
                holder,
                how_to_raise,
                ..
            } => {
                let mut h = vec![how_to_raise.clone()];
                h.extend(holder.hints(path));
                h
            }
            LockError::Interrupted { path, holder, .. } => holder.hints(path),
            LockError::NotAFile { path } | LockError::HardLinked { path, .. } => vec![format!(
                "move `{}` out of the way; qw recreates it as a regular file",
                path.display()
            )],
            LockError::Lock { .. } => {
                vec!["keep the project on a local file system that supports `flock`".into()]
            }
            LockError::Io(_) => Vec::new(),
        }
    }
}

impl From<LockError> for io::Error {
    fn from(e: LockError) -> io::Error {
        match e {
            LockError::Io(e) => e,
            other => io::Error::other(other),
        }
    }
}

/// What a holder writes into its lock file (one JSON line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    pid: i32,
    /// Start time of the process (clock ticks since boot): tells a reused pid apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start: Option<u64>,
    since: DateTime<Utc>,
    #[serde(default)]
    command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

impl Record {
    /// This process, from now on.
    fn mine(note: Option<String>) -> Record {
        let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        let (start, command) = own_identity();
        Record {
            pid,
            start,
            since: Utc::now(),
            command,
            note,
        }
    }

    fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// The first line of a lock file, if it is a record (a torn or foreign one is not).
    fn parse(bytes: &[u8]) -> Option<Record> {
        let line = bytes.split(|&b| b == b'\n').next()?;
        serde_json::from_slice(line).ok()
    }
}

/// An exclusive lock on a file, released when dropped (or when the process dies).
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockedFile {
    file: fs_err::File,
    /// False when the file could only be opened read-only, or its content is the
    /// caller's ([`LockOptions::unrecorded`]): the holder is not recorded.
    writable: bool,
    record: Record,
}

/// How [`LockedFile::acquire_with`] and [`LockedFile::try_acquire_with`] take a lock.
#[derive(Default, Clone, Copy)]
pub struct LockOptions<'a> {
    /// Write no holder record: the file's content is left to the caller (a queue ticket
    /// carries its own data), and a lock taken on a hot path costs no write.
    pub unrecorded: bool,
    /// Recorded with the holder from the start (as [`LockedFile::set_note`] would).
    pub note: Option<&'a str>,
    /// Where the one line "waiting for …, held by …" goes after a second of waiting
    /// (default: a `tracing` warning, on stderr and in the log).
    pub on_wait: Option<&'a dyn Fn(&str)>,
}

impl fmt::Debug for LockOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockOptions")
            .field("unrecorded", &self.unrecorded)
            .field("note", &self.note)
            .field("on_wait", &self.on_wait.is_some())
            .finish()
    }
}

/// What [`LockedFile::peek`] saw in a held lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peek {
    /// The file's first bytes (at most 4 KiB).
    pub content: Vec<u8>,
}

impl Peek {
    /// The holder's pid as its record says (or as a bare number, the format older qw
    /// versions wrote into slot files); `None` while it has not written yet.
    pub fn pid(&self) -> Option<i32> {
        Record::parse(&self.content)
            .map(|r| r.pid)
            .or_else(|| std::str::from_utf8(&self.content).ok()?.trim().parse().ok())
    }

    /// The note its holder recorded ([`LockedFile::set_note`]), if any.
    pub fn note(&self) -> Option<String> {
        Record::parse(&self.content).and_then(|r| r.note)
    }
}

impl LockedFile {
    /// Wait until the exclusive lock on `path` (created if missing) is ours.
    ///
    /// `resource` names what the lock protects, for messages ("the state of project
    /// `/p`"). The wait ends with [`LockError::Timeout`] after `timeout.limit`, and with
    /// [`LockError::Interrupted`] as soon as `cancel` is triggered — or, when it already
    /// was at the start (a caller recording how an interrupted run ended), after a
    /// second more of trying. A free lock is taken whatever `cancel` says. After a second
    /// of waiting it says once, on stderr and in the log (`tracing` warning), what it
    /// waits for and who holds it.
    pub fn acquire(
        path: impl AsRef<Path>,
        resource: impl fmt::Display,
        timeout: &LockTimeout,
        cancel: &Cancel,
    ) -> Result<LockedFile, LockError> {
        LockedFile::acquire_with(path, resource, timeout, cancel, LockOptions::default())
    }

    /// [`acquire`](Self::acquire), taken as `options` say (no record, a first note,
    /// where the waiting line goes).
    pub fn acquire_with(
        path: impl AsRef<Path>,
        resource: impl fmt::Display,
        timeout: &LockTimeout,
        cancel: &Cancel,
        options: LockOptions<'_>,
    ) -> Result<LockedFile, LockError> {
        let path = path.as_ref();
        let (file, writable) = open_for_lock(path)?;
        if try_lock(&file)? {
            return Ok(LockedFile::locked(file, writable, options));
        }
        let patience = if cancel.pending().is_some() {
            PATIENCE_AFTER_STOP
        } else {
            Duration::ZERO
        };
        let granted = wait_in_thread(&file)?;
        let started = Instant::now();
        let mut said = false;
        let mut stop_seen: Option<(i32, Instant)> = None;
        loop {
            let tick = timeout
                .limit
                .map_or(TICK, |l| TICK.min(l.saturating_sub(started.elapsed())));
            match granted.recv_timeout(tick) {
                Ok(Ok(())) => {
                    if said {
                        tracing::info!("got {resource} after {}", secs(started.elapsed()));
                    }
                    return Ok(LockedFile::locked(file, writable, options));
                }
                Ok(Err(source)) => {
                    return Err(LockError::Lock {
                        path: path.to_path_buf(),
                        source,
                    });
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(LockError::Lock {
                        path: path.to_path_buf(),
                        source: io::Error::other("the thread waiting for the lock ended"),
                    });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Some(signal) = cancel.pending() {
                let (signal, seen) = *stop_seen.get_or_insert((signal, Instant::now()));
                if seen.elapsed() >= patience {
                    return Err(LockError::Interrupted {
                        signal,
                        resource: resource.to_string(),
                        path: path.to_path_buf(),
                        holder: Box::new(current_holder(&file)),
                    });
                }
            }
            let waited = started.elapsed();
            if let Some(limit) = timeout.limit
                && waited >= limit
            {
                return Err(LockError::Timeout {
                    resource: resource.to_string(),
                    path: path.to_path_buf(),
                    waited,
                    holder: Box::new(current_holder(&file)),
                    how_to_raise: timeout.how_to_raise.clone(),
                });
            }
            if !said && waited >= SAY_AFTER {
                said = true;
                let holder = current_holder(&file);
                let line = format!(
                    "waiting for {resource} (`{}`), held by {holder}",
                    path.display()
                );
                match options.on_wait {
                    Some(on_wait) => on_wait(&line),
                    None => tracing::warn!("{line}"),
                }
            }
        }
    }

    /// Take the lock on `path` (created if missing) if nobody holds it; `None` if
    /// someone does. Never waits, so many files can be tried in turn.
    pub fn try_acquire(path: impl AsRef<Path>) -> Result<Option<LockedFile>, LockError> {
        LockedFile::try_acquire_with(path, LockOptions::default())
    }

    /// [`try_acquire`](Self::try_acquire), taken as `options` say.
    pub fn try_acquire_with(
        path: impl AsRef<Path>,
        options: LockOptions<'_>,
    ) -> Result<Option<LockedFile>, LockError> {
        let (file, writable) = open_for_lock(path.as_ref())?;
        Ok(try_lock(&file)?.then(|| LockedFile::locked(file, writable, options)))
    }

    /// Create `tmp`, which must not exist yet, lock it, and rename it to `path`: the
    /// file appears at `path` already locked, with no holder record (its content is the
    /// caller's), so a queue ticket made this way is never mistaken for the ticket of a
    /// dead waiter. A failed rename leaves `tmp` behind for the caller to clear.
    pub fn create_locked_as(tmp: &Path, path: &Path) -> Result<LockedFile, LockError> {
        let file = fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(tmp)?;
        if !try_lock(&file)? {
            return Err(LockError::Lock {
                path: tmp.to_path_buf(),
                source: io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "a file this process just created is locked by another",
                ),
            });
        }
        crate::fs::rename(tmp, path)?;
        let (file, _) = file.into_parts();
        let options = LockOptions {
            unrecorded: true,
            ..LockOptions::default()
        };
        Ok(LockedFile::locked(
            fs_err::File::from_parts(file, path),
            false,
            options,
        ))
    }

    /// Replace the content of a lock file taken without a record (in place, then cut to
    /// length). Best effort, as a note is: a failed write keeps the lock.
    pub fn write_content(&mut self, bytes: &[u8]) {
        let written = self
            .file
            .write_all_at(bytes, 0)
            .and_then(|()| self.file.set_len(bytes.len() as u64));
        if let Err(e) = written {
            tracing::debug!("could not write a lock file: {e}");
        }
    }

    /// A cheap look at `path` for callers that scan many lock files at every poll (the
    /// admission slots and queue): `None` when it is free or missing, else its first
    /// bytes. Unlike [`probe`](Self::probe) it reads no kernel table and no process, but
    /// takes a shared lock for an instant, so a concurrent [`try_acquire`](Self::try_acquire)
    /// may fail then: use it only where such a caller tries again.
    pub fn peek(path: impl AsRef<Path>) -> Result<Option<Peek>, LockError> {
        let path = path.as_ref();
        let Some(file) = open_to_look(path)? else {
            return Ok(None);
        };
        match file.file().try_lock_shared() {
            Ok(()) => {
                let _ = file.file().unlock();
                Ok(None)
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut buf = vec![0u8; MAX_RECORD];
                let n = file.read_at(&mut buf, 0).unwrap_or(0);
                buf.truncate(n);
                Ok(Some(Peek { content: buf }))
            }
            Err(std::fs::TryLockError::Error(source)) => Err(LockError::Lock {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Who holds the lock on `path`, without taking it; `None` when it is free (or the
    /// file does not exist).
    pub fn probe(path: impl AsRef<Path>) -> Result<Option<Holder>, LockError> {
        let path = path.as_ref();
        let Some(file) = open_to_look(path)? else {
            return Ok(None);
        };
        check_regular(&file)?;
        holder_of(&file)
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Record a note beside this holder (shown to waiters and by [`probe`](Self::probe)),
    /// or clear it with `None`. Best effort: a lock file that cannot be written keeps
    /// the lock, without the note.
    pub fn set_note(&mut self, note: Option<&str>) {
        self.record.note = note.map(str::to_owned);
        self.write_record();
    }

    fn locked(file: fs_err::File, writable: bool, options: LockOptions<'_>) -> LockedFile {
        let mut locked = LockedFile {
            file,
            writable: writable && !options.unrecorded,
            record: Record::mine(options.note.map(str::to_owned)),
        };
        locked.write_record();
        locked
    }

    /// Overwrite the record in place, then cut the file to its length (truncating to 0
    /// first would make ext4 flush the file on close, which costs milliseconds).
    fn write_record(&mut self) {
        if !self.writable {
            return;
        }
        let line = self.record.to_line();
        let written = self
            .file
            .write_all_at(&line, 0)
            .and_then(|()| self.file.set_len(line.len() as u64));
        if let Err(e) = written {
            tracing::debug!("could not record the holder of a lock: {e}");
        }
    }
}

impl Drop for LockedFile {
    fn drop(&mut self) {
        // Closing the file releases the lock anyway; unlocking first makes it explicit.
        let _ = self.file.file().unlock();
    }
}

/// Block in a thread of its own until the lock of `file`'s open file description is
/// granted, and report on the returned channel. The kernel wakes a blocked `flock` the
/// moment the holder lets go, which polling could not match; the caller stays free to
/// give up. The thread locks a duplicate descriptor of the same open file, so the lock
/// it gets is the caller's; if the caller gave up meanwhile, the thread's descriptor is
/// the last one and closing it releases the lock at once.
fn wait_in_thread(file: &fs_err::File) -> Result<mpsc::Receiver<io::Result<()>>, LockError> {
    let waiter = file.try_clone()?;
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("qw-lock-wait".into())
        .spawn(move || {
            let result = loop {
                match waiter.file().lock() {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other,
                }
            };
            let _ = tx.send(result);
        })
        .map_err(|e| crate::fs::with_path(e, "start a thread to wait for", file.path()))?;
    Ok(rx)
}

/// Open (creating if missing) for locking: read-write so the holder can be recorded,
/// read-only when the file is someone else's. Non-blocking, so a FIFO planted at the path
/// cannot hang the open; never through a symlink (`O_NOFOLLOW`: a link planted at a lock
/// or slot path would have the holder record written into its target); anything but a
/// regular file is refused.
fn open_for_lock(path: &Path) -> Result<(fs_err::File, bool), LockError> {
    let rw = fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
        .open(path);
    let (file, writable) = match rw {
        Ok(f) => (f, true),
        // O_NOFOLLOW's ELOOP (fs_err wraps the OS error, so ask the path itself).
        Err(_) if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink()) => {
            return Err(LockError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied && path.exists() => {
            let ro = fs_err::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
                .open(path)?;
            (ro, false)
        }
        Err(e) => return Err(e.into()),
    };
    check_regular(&file)?;
    if writable {
        use std::os::unix::fs::MetadataExt as _;
        let links = file.metadata()?.nlink();
        if links > 1 {
            return Err(LockError::HardLinked {
                path: path.to_path_buf(),
                links,
            });
        }
    }
    Ok((file, writable))
}

/// `path` opened to look at its lock without taking it ([`LockedFile::peek`],
/// [`LockedFile::probe`]): read-only, never blocking on a FIFO; `None` when missing.
fn open_to_look(path: &Path) -> Result<Option<fs_err::File>, LockError> {
    match fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn check_regular(file: &fs_err::File) -> Result<(), LockError> {
    if file.metadata()?.is_file() {
        Ok(())
    } else {
        Err(LockError::NotAFile {
            path: file.path().to_path_buf(),
        })
    }
}

/// True if the exclusive lock was taken, false if someone else holds it.
fn try_lock(file: &fs_err::File) -> Result<bool, LockError> {
    match file.file().try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(source)) => Err(LockError::Lock {
            path: file.path().to_path_buf(),
            source,
        }),
    }
}

/// Who holds the lock of the open `file` a waiter could not take (unknown if it cannot
/// be told, or was released meanwhile).
fn current_holder(file: &fs_err::File) -> Holder {
    holder_of(file)
        .ok()
        .flatten()
        .unwrap_or_else(Holder::unknown)
}

/// Who holds the lock of the open `file`, if anyone does.
fn holder_of(file: &fs_err::File) -> Result<Option<Holder>, LockError> {
    let Some(kernel_pid) = locker(file)? else {
        return Ok(None);
    };
    let mut buf = vec![0u8; MAX_RECORD];
    let n = file.read_at(&mut buf, 0).unwrap_or(0);
    let record = Record::parse(&buf[..n]);
    Ok(Some(describe(kernel_pid, record)))
}

/// Put together what the kernel and the record say. A record naming another pid than
/// the kernel's was left by an earlier holder (the current one has not written yet).
fn describe(kernel_pid: Option<i32>, record: Option<Record>) -> Holder {
    let record = record.filter(|r| kernel_pid.is_none_or(|k| k == r.pid));
    let Some(pid) = kernel_pid.or(record.as_ref().map(|r| r.pid)) else {
        return Holder::unknown();
    };
    let (state, start, live_command) = inspect(pid);
    let recorded_start = record.as_ref().and_then(|r| r.start);
    // Same pid, another start time: the recorded process is gone and the pid reused.
    let state = match (start, recorded_start) {
        (Some(now), Some(then)) if now != then => ProcessState::Exited,
        _ => state,
    };
    Holder {
        pid: Some(pid),
        command: record
            .as_ref()
            .map(|r| r.command.clone())
            .filter(|c| !c.is_empty())
            .or(live_command),
        since: record.as_ref().map(|r| r.since),
        state,
        note: record.and_then(|r| r.note),
    }
}

/// `Some(pid?)` if `file` is locked (with the locking pid when the kernel tells it),
/// `None` if it is free. Never takes the lock where the kernel's table can be read.
fn locker(file: &fs_err::File) -> Result<Option<Option<i32>>, LockError> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt as _;
        #[allow(clippy::disallowed_methods)] // a missing /proc falls back below
        if let Ok(table) = std::fs::read_to_string("/proc/locks") {
            let meta = file.metadata()?;
            let dev = meta.dev();
            let id = FileId {
                major: nix::sys::stat::major(dev),
                minor: nix::sys::stat::minor(dev),
                inode: meta.ino(),
            };
            return Ok(flock_holder(&table, id));
        }
    }
    // No kernel table: a shared lock tells whether an exclusive one is held.
    match file.file().try_lock_shared() {
        Ok(()) => {
            let _ = file.file().unlock();
            Ok(None)
        }
        Err(std::fs::TryLockError::WouldBlock) => Ok(Some(None)),
        Err(std::fs::TryLockError::Error(source)) => Err(LockError::Lock {
            path: file.path().to_path_buf(),
            source,
        }),
    }
}

/// A file as `/proc/locks` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    major: u64,
    minor: u64,
    inode: u64,
}

/// Find the granted `flock` on `id` in the text of `/proc/locks`: `Some(pid)` if one is
/// held (`pid` `None` when the kernel shows 0: a process in another pid namespace),
/// `None` if the file is not locked. Entries marked `->` are waiters, not holders. A
/// file system that reports another device number in `stat` than in the table (btrfs
/// subvolumes) is matched by inode alone.
fn flock_holder(table: &str, id: FileId) -> Option<Option<i32>> {
    let mut inode_only = None;
    for line in table.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [_, "FLOCK", _, _, pid, file, ..] = words.as_slice() else {
            continue;
        };
        let mut parts = file.split(':');
        let (Some(major), Some(minor), Some(inode)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if inode.parse::<u64>().ok() != Some(id.inode) {
            continue;
        }
        let pid = pid.parse::<i32>().ok().filter(|p| *p > 0);
        let same_dev = u64::from_str_radix(major, 16).ok() == Some(id.major)
            && u64::from_str_radix(minor, 16).ok() == Some(id.minor);
        if same_dev {
            return Some(pid);
        }
        inode_only.get_or_insert(pid);
    }
    inode_only
}

/// This process's start time and command line (quoted as a shell would need it, at most
/// [`MAX_COMMAND`] bytes), read once.
fn own_identity() -> (Option<u64>, String) {
    static OWN: std::sync::OnceLock<(Option<u64>, String)> = std::sync::OnceLock::new();
    OWN.get_or_init(|| {
        let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        let (_, start, _) = inspect(pid);
        let words: Vec<String> = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut command = shell_words::join(words);
        if command.len() > MAX_COMMAND {
            let mut cut = MAX_COMMAND - 3;
            while !command.is_char_boundary(cut) {
                cut -= 1;
            }
            command.truncate(cut);
            command.push_str("...");
        }
        (start, command)
    })
    .clone()
}

/// Whether process `pid` runs, is stopped or is gone, as a lock's holder would be told
/// (polled while waiting: reads `/proc/<pid>/stat` only, not the command line).
#[cfg(target_os = "linux")]
pub fn process_state(pid: i32) -> ProcessState {
    match stat_of(pid) {
        Ok(stat) => state_of(&stat),
        Err(state) => state,
    }
}

/// [`process_state`] where `/proc` is not there.
#[cfg(not(target_os = "linux"))]
pub fn process_state(pid: i32) -> ProcessState {
    inspect(pid).0
}

/// A process's state, start time and command line, as far as `/proc` tells.
#[cfg(target_os = "linux")]
fn inspect(pid: i32) -> (ProcessState, Option<u64>, Option<String>) {
    match stat_of(pid) {
        Ok(stat) => {
            let command = Some(crate::exec::procs::command_line(pid, &stat.comm));
            (state_of(&stat), Some(stat.start_time), command)
        }
        Err(state) => (state, None, None),
    }
}

/// `/proc/<pid>/stat` parsed, or what a missing one says of the process.
#[cfg(target_os = "linux")]
fn stat_of(pid: i32) -> Result<crate::exec::procs::Stat, ProcessState> {
    #[allow(clippy::disallowed_methods)] // a vanished process is an answer, not an error
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| crate::exec::procs::parse_stat(&t))
        .ok_or_else(
            || match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
                Err(nix::errno::Errno::ESRCH) => ProcessState::Exited,
                _ => ProcessState::Unknown,
            },
        )
}

#[cfg(target_os = "linux")]
fn state_of(stat: &crate::exec::procs::Stat) -> ProcessState {
    match stat.state {
        'T' | 't' => ProcessState::Stopped,
        'Z' | 'X' | 'x' => ProcessState::Exited,
        _ => ProcessState::Running,
    }
}

/// A process's state, as far as `kill(pid, 0)` tells.
#[cfg(not(target_os = "linux"))]
fn inspect(pid: i32) -> (ProcessState, Option<u64>, Option<String>) {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => (ProcessState::Unknown, None, None),
        Err(_) => (ProcessState::Exited, None, None),
    }
}

/// `300s`, `1.5s`.
fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s:.1}s")
    }
}

/// Test support: a lock on a fresh `s.lock`, held while `acquire` waits for it in a
/// thread that a stop request with `signal` must end.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
pub(crate) fn stopped_wait<T: Send, E: Send>(
    signal: i32,
    acquire: fn(&Path, &Cancel) -> Result<T, E>,
) -> StoppedWait<E> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.lock");
    let held = LockedFile::try_acquire(&path).unwrap().unwrap();
    let cancel = Cancel::new();
    let err = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| acquire(&path, &cancel));
        // Let the wait begin (a request made before it is honoured too, after a grace).
        std::thread::sleep(Duration::from_millis(30));
        cancel.request(signal);
        match waiter.join().unwrap() {
            Ok(_) => panic!("the wait for a held lock ended without an error"),
            Err(e) => e,
        }
    });
    StoppedWait {
        _dir: dir,
        path,
        _held: held,
        cancel,
        err,
    }
}

/// What [`stopped_wait`] leaves: the lock is still held while this lives.
#[cfg(test)]
pub(crate) struct StoppedWait<E> {
    _dir: tempfile::TempDir,
    /// The lock file.
    pub path: PathBuf,
    _held: LockedFile,
    /// The token the stop was requested on.
    pub cancel: Cancel,
    /// The error the wait ended with.
    pub err: E,
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn my_pid() -> i32 {
        i32::try_from(std::process::id()).unwrap()
    }

    fn short(limit: Duration) -> LockTimeout {
        LockTimeout::new(Some(limit), "raise it with --patience")
    }

    #[test]
    fn timeout_names_the_resource_the_path_the_holder_and_how_to_raise_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        let _held = LockedFile::try_acquire(&path).unwrap().unwrap();
        let err = LockedFile::acquire(
            &path,
            "the state of project `/p`",
            &short(Duration::from_millis(30)),
            &Cancel::new(),
        )
        .unwrap_err();
        let LockError::Timeout { waited, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(*waited >= Duration::from_millis(30), "{waited:?}");
        let msg = err.to_string();
        assert!(msg.starts_with("gave up after"), "{msg}");
        assert!(msg.contains("the state of project `/p`"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("held by pid {}", my_pid())), "{msg}");
        assert!(
            !msg.contains("--patience"),
            "hints are not in the message: {msg}"
        );
        let hints = err.hints();
        assert_eq!(hints[0], "raise it with --patience");
        assert!(
            hints[1].contains(&format!("kill {}", my_pid())),
            "{hints:?}"
        );
        assert_eq!(err.holder().and_then(|h| h.pid), Some(my_pid()));
        assert_eq!(err.interrupted(), None);
    }

    #[test]
    fn a_stop_request_ends_the_wait_with_its_signal() {
        // `stopped` keeps the folder and the lock until the end of the test.
        let stopped = stopped_wait(15, |path, cancel| {
            LockedFile::acquire(path, "the thing", &LockTimeout::new(None, ""), cancel)
        });
        let StoppedWait {
            path, cancel, err, ..
        } = &stopped;
        assert_eq!(err.interrupted(), Some(15), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("interrupted by signal 15 while waiting for the thing"),
            "{msg}"
        );
        assert!(msg.contains(&format!("held by pid {}", my_pid())), "{msg}");
        assert_eq!(
            cancel.pending(),
            Some(15),
            "the request stays for the caller"
        );

        // Already asked to stop when the wait begins: still gives up (after a grace).
        let err = LockedFile::acquire(path, "the thing", &LockTimeout::new(None, ""), cancel)
            .unwrap_err();
        assert_eq!(err.interrupted(), Some(15), "{err:?}");
    }

    #[test]
    fn a_waiter_gets_the_lock_when_it_is_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        let held = LockedFile::try_acquire(&path).unwrap().unwrap();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                LockedFile::acquire(&path, "x", &LockTimeout::new(None, ""), &Cancel::new())
            })
        };
        std::thread::sleep(Duration::from_millis(30));
        drop(held);
        let lock = waiter.join().unwrap().unwrap();
        let holder = LockedFile::probe(&path).unwrap().unwrap();
        assert_eq!(holder.pid, Some(my_pid()));
        assert!(
            LockedFile::try_acquire(&path).unwrap().is_none(),
            "the waiter holds it"
        );
        drop(lock);
        assert!(LockedFile::try_acquire(&path).unwrap().is_some());
    }

    #[test]
    fn a_waiter_that_gave_up_does_not_keep_the_lock_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        let held = LockedFile::try_acquire(&path).unwrap().unwrap();
        let err = LockedFile::acquire(
            &path,
            "x",
            &short(Duration::from_millis(20)),
            &Cancel::new(),
        );
        assert!(matches!(err, Err(LockError::Timeout { .. })), "{err:?}");
        drop(held);
        // Its helper thread may take the lock for a moment; it must let it go.
        let start = Instant::now();
        let again = loop {
            if let Some(l) = LockedFile::try_acquire(&path).unwrap() {
                break Some(l);
            }
            if start.elapsed() > Duration::from_secs(30) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(again.is_some(), "the abandoned wait kept the lock");
    }

    #[test]
    fn a_free_lock_is_taken_even_after_a_stop_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        let cancel = Cancel::new();
        cancel.request(2);
        let lock = LockedFile::acquire(&path, "x", &short(Duration::ZERO), &cancel).unwrap();
        assert_eq!(lock.path(), path);
    }

    #[test]
    fn the_holder_is_recorded_and_probed_without_taking_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        assert_eq!(
            LockedFile::probe(&path).unwrap(),
            None,
            "missing file: free"
        );
        let before = Utc::now();
        let mut lock = LockedFile::try_acquire(&path).unwrap().unwrap();
        let holder = LockedFile::probe(&path).unwrap().expect("held");
        assert_eq!(holder.pid, Some(my_pid()));
        assert_eq!(holder.state, ProcessState::Running);
        let since = holder.since.expect("since recorded");
        assert!(since >= before - chrono::Duration::seconds(1), "{since}");
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_string_lossy();
        let command = holder.command.clone().unwrap();
        assert!(command.contains(&name[..name.len().min(15)]), "{command}");
        assert!(
            holder
                .to_string()
                .starts_with(&format!("pid {} (", my_pid())),
            "{holder}"
        );

        lock.set_note(Some("waiting for load ≤ 4"));
        let holder = LockedFile::probe(&path).unwrap().unwrap();
        assert_eq!(holder.note.as_deref(), Some("waiting for load ≤ 4"));
        assert!(
            holder.to_string().ends_with(": waiting for load ≤ 4"),
            "{holder}"
        );
        lock.set_note(None);
        assert_eq!(LockedFile::probe(&path).unwrap().unwrap().note, None);
        // The file holds exactly one record line.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text:?}");
        // Probing never took the lock: the holder is still the only one.
        assert!(LockedFile::try_acquire(&path).unwrap().is_none());
    }

    #[test]
    fn dropping_the_guard_releases_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        let first = LockedFile::try_acquire(&path).unwrap().unwrap();
        assert!(
            LockedFile::try_acquire(&path).unwrap().is_none(),
            "exclusive"
        );
        drop(first);
        assert_eq!(
            LockedFile::probe(&path).unwrap(),
            None,
            "a stale record is not a holder"
        );
        let again = LockedFile::acquire(&path, "x", &short(Duration::ZERO), &Cancel::new());
        assert!(again.is_ok(), "{again:?}");
    }

    #[test]
    fn options_leave_the_content_to_the_caller_note_from_the_start_and_route_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        std::fs::write(&path, b"caller's data").unwrap();
        let unrecorded = LockOptions {
            unrecorded: true,
            ..LockOptions::default()
        };
        let mut bare = LockedFile::try_acquire_with(&path, unrecorded)
            .unwrap()
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"caller's data", "no record");
        bare.write_content(b"[1]");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"[1]",
            "replaced, cut to length"
        );
        bare.set_note(Some("ignored"));
        assert_eq!(std::fs::read(&path).unwrap(), b"[1]", "no note either");
        assert_eq!(
            LockedFile::probe(&path).unwrap().unwrap().pid,
            Some(my_pid())
        );

        // The waiting line goes where the caller says, once, naming the holder.
        let said = std::sync::Mutex::new(Vec::<String>::new());
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let on_wait = |m: &str| said.lock().unwrap().push(m.to_owned());
                let options = LockOptions {
                    note: Some("merging task 2"),
                    on_wait: Some(&on_wait),
                    ..LockOptions::default()
                };
                LockedFile::acquire_with(
                    &path,
                    "the thing",
                    &LockTimeout::new(None, ""),
                    &Cancel::new(),
                    options,
                )
            });
            let start = Instant::now();
            while said.lock().unwrap().is_empty() && start.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(bare);
            let got = waiter.join().unwrap().unwrap();
            let holder = LockedFile::probe(got.path()).unwrap().unwrap();
            assert_eq!(holder.note.as_deref(), Some("merging task 2"));
        });
        let said = said.into_inner().unwrap();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].starts_with("waiting for the thing (`"), "{said:?}");
        assert!(
            said[0].contains(&format!("held by pid {}", my_pid())),
            "{said:?}"
        );
    }

    #[test]
    fn peek_tells_held_from_free_and_reads_the_pid_of_either_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slot-0000");
        assert_eq!(LockedFile::peek(&path).unwrap(), None, "missing: free");
        let held = LockedFile::try_acquire(&path).unwrap().unwrap();
        let peek = LockedFile::peek(&path).unwrap().expect("held");
        assert_eq!(peek.pid(), Some(my_pid()));
        drop(held);
        assert_eq!(
            LockedFile::peek(&path).unwrap(),
            None,
            "a stale record is free"
        );
        let old = Peek {
            content: b"4242       \n".to_vec(),
        };
        assert_eq!(old.pid(), Some(4242), "older qw wrote a bare pid");
        assert_eq!(
            Peek {
                content: Vec::new()
            }
            .pid(),
            None
        );
    }

    #[test]
    fn a_file_created_locked_appears_locked_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, path) = (dir.path().join(".new-1"), dir.path().join("q-1"));
        let mut ticket = LockedFile::create_locked_as(&tmp, &path).unwrap();
        assert!(!tmp.exists());
        assert_eq!(ticket.path(), path);
        assert!(
            LockedFile::peek(&path).unwrap().is_some(),
            "held under its new name"
        );
        ticket.write_content(b"why");
        assert_eq!(LockedFile::peek(&path).unwrap().unwrap().content, b"why");
        let err = LockedFile::create_locked_as(&tmp, &path);
        drop(ticket);
        std::fs::write(&tmp, b"").unwrap();
        let err2 = LockedFile::create_locked_as(&tmp, &path).unwrap_err();
        assert!(err.is_ok(), "a fresh tmp may replace a name: {err:?}");
        assert!(
            err2.to_string().contains(".new-1"),
            "tmp must be new: {err2}"
        );
    }

    #[test]
    fn many_files_can_be_tried_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        let slot = |i: usize| dir.path().join(format!("slot-{i:04}"));
        let taken: Vec<LockedFile> = (0..3)
            .filter_map(|i| LockedFile::try_acquire(slot(i)).unwrap())
            .collect();
        assert_eq!(taken.len(), 3);
        let free: Vec<usize> = (0..4)
            .filter(|i| LockedFile::try_acquire(slot(*i)).unwrap().is_some())
            .collect();
        assert_eq!(free, vec![3]);
        let pids: Vec<Option<i32>> = (0..3)
            .map(|i| LockedFile::probe(slot(i)).unwrap().unwrap().pid)
            .collect();
        assert_eq!(pids, vec![Some(my_pid()); 3]);
    }

    #[test]
    fn special_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.lock");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        for err in [
            LockedFile::try_acquire(&fifo).unwrap_err(),
            LockedFile::probe(&fifo).unwrap_err(),
        ] {
            assert!(matches!(err, LockError::NotAFile { .. }), "{err:?}");
            assert!(err.to_string().contains("fifo.lock"), "{err}");
        }
        let err = LockedFile::try_acquire(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
        // A symlink is never followed: its target is not written, dangling or not.
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("slot-0000");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let dangling = dir.path().join("slot-0001");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        for path in [&link, &dangling] {
            let err = LockedFile::try_acquire(path).unwrap_err();
            assert!(matches!(err, LockError::NotAFile { .. }), "{err:?}");
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(!dir.path().join("nowhere").exists());
        // Nor is a hard link written: the file linked to it keeps its contents.
        let hard = dir.path().join("state.lock");
        std::fs::hard_link(&target, &hard).unwrap();
        let err = LockedFile::try_acquire(&hard).unwrap_err();
        assert!(
            matches!(err, LockError::HardLinked { links: 2, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("state.lock"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }

    #[test]
    fn proc_locks_lines_name_the_granted_holder() {
        let table = "\
1: POSIX  ADVISORY  WRITE 77 fe:00:42 0 EOF
2: FLOCK  ADVISORY  WRITE 1234 fe:00:42 0 EOF
2: -> FLOCK  ADVISORY  WRITE 999 fe:00:42 0 EOF
3: FLOCK  ADVISORY  WRITE 555 08:11:43 0 EOF
4: FLOCK  ADVISORY  WRITE 0 08:11:44 0 EOF
5: FLOCK  ADVISORY  WRITE 666 00:2d:45 0 EOF
";
        let id = |major, minor, inode| FileId {
            major,
            minor,
            inode,
        };
        assert_eq!(flock_holder(table, id(0xfe, 0, 42)), Some(Some(1234)));
        assert_eq!(flock_holder(table, id(8, 0x11, 43)), Some(Some(555)));
        assert_eq!(
            flock_holder(table, id(8, 0x11, 44)),
            Some(None),
            "pid 0: unknown"
        );
        assert_eq!(
            flock_holder(table, id(0, 0x2e, 45)),
            Some(Some(666)),
            "inode alone"
        );
        assert_eq!(flock_holder(table, id(0xfe, 0, 46)), None, "not locked");
        assert_eq!(flock_holder("", id(0xfe, 0, 42)), None);
    }

    #[test]
    fn a_record_of_another_pid_is_not_believed() {
        let rec = Record {
            pid: 1,
            start: None,
            since: Utc::now(),
            command: "old holder".into(),
            note: Some("old".into()),
        };
        let h = describe(Some(my_pid()), Some(rec.clone()));
        assert_eq!(h.pid, Some(my_pid()));
        assert_eq!(h.note, None);
        assert_eq!(h.since, None);
        assert_ne!(h.command.as_deref(), Some("old holder"));
        // Same pid, other start time: the recorded process is gone.
        let mut mine = rec;
        mine.pid = my_pid();
        mine.start = Some(1);
        assert_eq!(
            describe(Some(my_pid()), Some(mine)).state,
            ProcessState::Exited
        );
        assert_eq!(describe(None, None), Holder::unknown());
        assert_eq!(Holder::unknown().to_string(), "an unidentified process");
    }

    #[test]
    fn records_round_trip_and_torn_ones_are_ignored() {
        let r = Record::mine(Some("n".into()));
        let line = r.to_line();
        assert_eq!(Record::parse(&line), Some(r.clone()));
        let mut longer_old = line.clone();
        longer_old.extend_from_slice(b"tail of an older, longer record}\n");
        assert_eq!(
            Record::parse(&longer_old),
            Some(r),
            "only the first line counts"
        );
        assert_eq!(Record::parse(&line[..line.len() / 2]), None);
        assert_eq!(Record::parse(b""), None);
    }

    #[test]
    fn timeouts_from_the_environment_value() {
        assert_eq!(parse_timeout("30"), Some(Some(Duration::from_secs(30))));
        assert_eq!(
            parse_timeout(" 2.5 "),
            Some(Some(Duration::from_millis(2500)))
        );
        assert_eq!(parse_timeout("0"), Some(None));
        for bad in ["", "-1", "abc", "nan", "inf", "1e400"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    /// Env var naming the lock file a child helper must hold.
    const CHILD_LOCK: &str = "QW_TEST_LOCKED_FILE_CHILD";

    /// Run as a child process by the test below: take the lock, say so, wait to be killed.
    #[test]
    #[ignore = "helper: run as a child process by released_when_the_holder_dies"]
    #[allow(clippy::print_stdout)] // the parent test reads this line from the child
    fn child_holds_the_lock_until_killed() {
        let Some(path) = std::env::var_os(CHILD_LOCK) else {
            return;
        };
        let _lock = LockedFile::try_acquire(PathBuf::from(path))
            .unwrap()
            .unwrap();
        println!("locked");
        std::thread::sleep(Duration::from_secs(120));
    }

    /// Kills the child by pid when the test ends, even by panic.
    struct Child(std::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn released_when_the_holder_dies_and_a_stopped_holder_is_named() {
        use nix::sys::signal::{Signal, kill};
        use std::io::BufRead as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lock");
        let mut child = Child(
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "fs::locked_file::tests::child_holds_the_lock_until_killed",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_LOCK, &path)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let pid = i32::try_from(child.0.id()).unwrap();
        let mut out = std::io::BufReader::new(child.0.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("locked") {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "the child ended early"
            );
        }
        let holder = LockedFile::probe(&path)
            .unwrap()
            .expect("held by the child");
        assert_eq!(holder.pid, Some(pid));
        assert!(holder.since.is_some(), "{holder:?}");

        let nix_pid = nix::unistd::Pid::from_raw(pid);
        kill(nix_pid, Signal::SIGSTOP).unwrap();
        let stopped = (0..500).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            LockedFile::probe(&path).unwrap().unwrap().state == ProcessState::Stopped
        });
        kill(nix_pid, Signal::SIGCONT).unwrap();
        assert!(stopped, "a stopped holder is reported as stopped");

        kill(nix_pid, Signal::SIGKILL).unwrap();
        child.0.wait().unwrap();
        assert_eq!(LockedFile::probe(&path).unwrap(), None);
        let lock = LockedFile::acquire(&path, "x", &short(Duration::ZERO), &Cancel::new());
        assert!(lock.is_ok(), "a SIGKILLed holder leaves no lock: {lock:?}");
    }
}
