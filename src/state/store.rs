//! [`StateStore`]: lock-free reads and locked, durable read-modify-write of the state.
//!
//! Every change goes through [`StateStore::update`]: lock → read → apply → write a unique
//! temp file → fsync → rename → fsync the directory (`crate::fs::write_durable`). A file
//! that fails to parse or validate is quarantined and replaced by the newest valid backup,
//! with one warning saying what the restore rolled back (the backup's age, task statuses).

use std::io;
use std::path::{Path, PathBuf};

use super::StateError;
use super::backup;
use super::lock::StateLock;
use super::schema::{SCHEMA_VERSION, UnifiedState};
use super::timestamp::Timestamp;
use crate::cancel::Cancel;
use crate::project::Project;

/// The most qw reads of a state or backup file (a bigger one is treated as corrupt): far
/// above any real state (10 000 tasks take a few MB), far below what would exhaust memory.
pub const MAX_STATE_BYTES: usize = 256 << 20;

/// Read a state or backup file: only a regular file (never a FIFO, a device or a symlink
/// to one: those are refused with an error naming what they are, see
/// [`crate::fs::read_regular`]), never more than [`MAX_STATE_BYTES`].
pub(crate) fn read_state_file(path: &Path) -> io::Result<Vec<u8>> {
    crate::fs::read_regular_whole(path, MAX_STATE_BYTES)
}

/// Prefix of the temp files `write_durable` creates beside the state.
const TEMP_PREFIX: &str = ".unified_state.json.tmp";

/// Access to one project's `.claude/unified_state.json`.
#[derive(Debug, Clone)]
pub struct StateStore {
    project: Project,
    /// Ends a wait for the lock (by default the process's signal token).
    cancel: Cancel,
    /// The last state this store wrote and the exact bytes it wrote (see
    /// [`StateStore::remembering`]); `None` in a store that does not remember.
    last: Option<std::sync::Arc<std::sync::Mutex<Option<Written>>>>,
}

/// A state as this store wrote it: the bytes on disk and the state they render.
#[derive(Debug)]
struct Written {
    bytes: Vec<u8>,
    state: UnifiedState,
}

/// What reading the file found.
enum Read {
    Missing,
    Valid(Box<UnifiedState>),
    Corrupt(String),
}

impl StateStore {
    /// The store of `project` (nothing is read yet). Waits for the lock end on the
    /// process's signals ([`Cancel::process`]).
    pub fn new(project: &Project) -> StateStore {
        StateStore {
            project: project.clone(),
            cancel: Cancel::process(),
            last: None,
        }
    }

    /// The same store, remembering the state it last wrote with the bytes it wrote: an
    /// update that finds the file still holding exactly those bytes (compared in full,
    /// under the lock) applies its change to the remembered state instead of parsing the
    /// file again. Any other content — another process's write, a restore, an edit by
    /// hand — is parsed as always, so no change is lost. For the one writer that updates
    /// a large state many times (the workflow's group-commit writer): parsing is most of
    /// an update's cost on a state of thousands of tasks.
    pub fn remembering(mut self) -> StateStore {
        self.last = Some(std::sync::Arc::default());
        self
    }

    /// The same store, its waits for the lock ended by `cancel` instead.
    pub fn with_cancel(mut self, cancel: &Cancel) -> StateStore {
        self.cancel = cancel.clone();
        self
    }

    /// The project.
    pub fn project(&self) -> &Project {
        &self.project
    }

    /// `.claude/unified_state.json`
    pub fn path(&self) -> PathBuf {
        self.project.state_file()
    }

    /// Read the state without locking. A missing file is a fresh (unwritten) state; a
    /// corrupt one is quarantined and replaced (under the lock) by the newest valid backup,
    /// with a warning naming both files.
    pub fn load(&self) -> Result<UnifiedState, StateError> {
        match self.read()? {
            Read::Missing => Ok(UnifiedState::new()),
            Read::Valid(s) => Ok(*s),
            Read::Corrupt(_) => {
                let lock = self.lock()?;
                self.load_locked(&lock)
            }
        }
    }

    /// Take the exclusive write lock, waiting while another process holds it (up to
    /// `QW_LOCK_TIMEOUT`, and only until this store's cancel token asks to stop).
    pub fn lock(&self) -> Result<StateLock, StateError> {
        let dir = self.project.claude_dir();
        crate::fs::create_dir_all(&dir)?;
        let resource = format!("the state of project `{}`", self.project.root().display());
        StateLock::acquire(&self.project.state_lock_file(), &resource, &self.cancel)
    }

    /// Apply `f` to the current state and write the result durably, all under the lock.
    /// Returns what `f` returns.
    pub fn update<R>(&self, f: impl FnOnce(&mut UnifiedState) -> R) -> Result<R, StateError> {
        self.try_update(|s| Ok::<R, std::convert::Infallible>(f(s)))
            .map(|r| match r {
                Ok(v) => v,
                Err(never) => match never {},
            })
    }

    /// Like [`update`](Self::update), but writes only when `f` returns `Ok`.
    pub fn try_update<R, E>(
        &self,
        f: impl FnOnce(&mut UnifiedState) -> Result<R, E>,
    ) -> Result<Result<R, E>, StateError> {
        let Some(last) = &self.last else {
            let lock = self.lock()?;
            let mut state = self.load_locked(&lock)?;
            let out = f(&mut state);
            if out.is_ok() {
                self.write_locked(&lock, &mut state)?;
            }
            return Ok(out);
        };
        let lock = self.lock()?;
        // Taken out: on any error or a change not written, nothing is remembered (the
        // state may be half changed), and the next update parses the file.
        let remembered = last.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut state = match remembered {
            Some(w) if self.still_on_disk(&w.bytes) => w.state,
            _ => self.load_locked(&lock)?,
        };
        let out = f(&mut state);
        if out.is_ok() {
            let bytes = self.write_locked(&lock, &mut state)?;
            *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Written { bytes, state });
        }
        Ok(out)
    }

    /// Does the state file hold exactly `bytes` (the caller holds the lock)?
    fn still_on_disk(&self, bytes: &[u8]) -> bool {
        matches!(
            crate::fs::read_regular(&self.path(), MAX_STATE_BYTES),
            Ok(crate::fs::Bounded::Whole(b)) if b == bytes
        )
    }

    /// Copy the current state to `.claude/backups/state/NAME.json` (default
    /// `state_backup_<YYYYmmdd_HHMMSS>`). A corrupt state is repaired first; a project
    /// without a state gets its initial state written first, so the backup always exists
    /// (the seed's Quick Start backs up a fresh project before its first workflow).
    pub fn backup(&self, name: Option<&str>) -> Result<PathBuf, StateError> {
        // Refuse bad names before the lock creates anything.
        if let Some(n) = name {
            crate::names::validate(crate::names::NameKind::Backup, backup::strip_json(n))?;
            let taken = self
                .project
                .state_backups_dir()
                .join(format!("{}.json", backup::strip_json(n)));
            if taken.exists() {
                return Err(StateError::BackupExists { path: taken });
            }
        }
        let lock = self.lock()?;
        let mut state = self.load_locked(&lock)?;
        if !self.path().exists() {
            self.write_locked(&lock, &mut state)?;
        }
        match self.backup_locked(&lock, name, "state_backup")? {
            Some(p) => Ok(p),
            None => Err(StateError::NoState { path: self.path() }),
        }
    }

    /// The automatic backup before a risky operation: `pre_<operation>_<ts>.json`.
    /// `None` when there is no state yet (nothing to lose).
    pub fn backup_before(&self, operation: &str) -> Result<Option<PathBuf>, StateError> {
        let prefix = format!("pre_{operation}");
        crate::names::validate(crate::names::NameKind::Backup, &prefix)?;
        if !self.path().exists() {
            return Ok(None);
        }
        let lock = self.lock()?;
        self.backup_locked(&lock, None, &prefix)
    }

    /// Back up the file as it is on disk (the caller holds the lock). `None` when there is
    /// no state file yet. Without `name`, `<prefix>_<timestamp>` is used (made unique).
    pub(crate) fn backup_locked(
        &self,
        _lock: &StateLock,
        name: Option<&str>,
        prefix: &str,
    ) -> Result<Option<PathBuf>, StateError> {
        let bytes = match read_state_file(&self.path()) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let dir = self.project.state_backups_dir();
        // Never through a link at `backups` or `backups/state` (refused, naming it).
        crate::fs::NoFollowDir::create(&self.project.claude_dir(), Path::new("backups/state"))?;
        let dest = match name {
            Some(n) => {
                let n = backup::strip_json(n);
                crate::names::validate(crate::names::NameKind::Backup, n)?;
                let p = dir.join(format!("{n}.json"));
                if std::fs::symlink_metadata(&p).is_ok() {
                    return Err(StateError::BackupExists { path: p });
                }
                p
            }
            None => backup::unique_path(&dir, &format!("{prefix}_{}", backup::stamp()), "json"),
        };
        crate::fs::write_generated(&dest, &bytes)?;
        Ok(Some(dest))
    }

    /// Read the state while holding the lock, repairing a corrupt file.
    pub(crate) fn load_locked(&self, lock: &StateLock) -> Result<UnifiedState, StateError> {
        match self.read()? {
            Read::Missing => Ok(UnifiedState::new()),
            Read::Valid(s) => Ok(*s),
            Read::Corrupt(reason) => self.repair_locked(lock, &reason),
        }
    }

    /// Write `state` durably (the caller holds the lock), stamping `last_updated`;
    /// returns the bytes written.
    pub(crate) fn write_locked(
        &self,
        _lock: &StateLock,
        state: &mut UnifiedState,
    ) -> Result<Vec<u8>, StateError> {
        state.schema_version = SCHEMA_VERSION;
        state.session.last_updated = Some(Timestamp::now());
        let mut bytes = render(state)?;
        // A file that began with a UTF-8 byte-order mark (written on Windows) keeps it.
        if self.starts_with_bom() {
            bytes = [crate::jsontext::BOM.to_string().as_bytes(), &bytes].concat();
        }
        self.remove_stale_temps();
        crate::fs::write_durable(&self.path(), &bytes)?;
        Ok(bytes)
    }

    /// Write raw bytes as the state (restore), the caller holding the lock.
    pub(crate) fn write_bytes_locked(
        &self,
        _lock: &StateLock,
        bytes: &[u8],
    ) -> Result<(), StateError> {
        self.remove_stale_temps();
        crate::fs::write_durable(&self.path(), bytes)?;
        Ok(())
    }

    /// Whether the state file on disk starts with a UTF-8 byte-order mark (false when
    /// there is none, or it cannot be read: a rewrite then writes none).
    fn starts_with_bom(&self) -> bool {
        use std::io::Read as _;
        let Ok(file) = crate::fs::open_regular(&self.path()) else {
            return false;
        };
        let mut head = Vec::with_capacity(3);
        file.take(3).read_to_end(&mut head).is_ok()
            && head == crate::jsontext::BOM.to_string().as_bytes()
    }

    /// A writer killed between creating its temp file and renaming it leaves the temp
    /// behind. Every writer holds the lock, so while we hold it any such file is stale.
    fn remove_stale_temps(&self) {
        let Ok(entries) = crate::fs::read_dir(self.project.claude_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let _ = crate::fs::remove_file(entry.path());
            }
        }
    }

    fn read(&self) -> Result<Read, StateError> {
        let path = self.path();
        let bytes = match crate::fs::read_regular(&path, MAX_STATE_BYTES) {
            Ok(crate::fs::Bounded::Whole(b)) => b,
            Ok(crate::fs::Bounded::TooBig { len, .. }) => {
                return Ok(Read::Corrupt(format!(
                    "it is {len} bytes, more than the {MAX_STATE_BYTES} qw reads of a state"
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Read::Missing),
            Err(e) => return Err(e.into()),
        };
        match parse(&path, &bytes)? {
            Ok(s) => Ok(Read::Valid(Box::new(s))),
            Err(reason) => Ok(Read::Corrupt(reason)),
        }
    }

    /// Move the bad file to `backups/state/corrupted_<ts>.json`, restore the newest valid
    /// backup (else start fresh), and warn naming both files.
    fn repair_locked(&self, lock: &StateLock, reason: &str) -> Result<UnifiedState, StateError> {
        // Another process may have repaired it while we waited for the lock.
        if let Read::Valid(s) = self.read()? {
            return Ok(*s);
        }
        let path = self.path();
        let dir = self.project.state_backups_dir();
        // Never through a link at `backups` or `backups/state` (refused, naming it).
        crate::fs::NoFollowDir::create(&self.project.claude_dir(), Path::new("backups/state"))?;
        let quarantine =
            backup::unique_path(&dir, &format!("corrupted_{}", backup::stamp()), "json");
        crate::fs::rename(&path, &quarantine)?;
        crate::fs::sync_dir(&dir)?;
        crate::fs::sync_dir(&self.project.claude_dir())?;
        match backup::newest_valid(&self.project)? {
            Some((from, bytes, state)) => {
                self.write_bytes_locked(lock, &bytes)?;
                tracing::warn!(
                    "`{}` was corrupt ({reason}); moved it to `{}` and restored the newest valid backup `{}`; {}",
                    path.display(),
                    quarantine.display(),
                    from.display(),
                    what_the_restore_loses(&quarantine, &from, &state)
                );
                Ok(state)
            }
            None => {
                let mut state = UnifiedState::new();
                self.write_locked(lock, &mut state)?;
                tracing::warn!(
                    "`{}` was corrupt ({reason}); moved it to `{}` and started a fresh state (no valid backup in `{}`)",
                    path.display(),
                    quarantine.display(),
                    dir.display()
                );
                Ok(state)
            }
        }
    }
}

/// What a restore of `backup` (parsed: `restored`) over the corrupt file now at
/// `corrupt` rolled back, for the one warning line: when the backup was written and how
/// much older it is, and — when the corrupt file is still JSON — the tasks whose status
/// went back and the specs it held that the backup does not.
fn what_the_restore_loses(corrupt: &Path, backup: &Path, restored: &UnifiedState) -> String {
    let when = |p: &Path| {
        crate::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .map(chrono::DateTime::<chrono::Utc>::from)
    };
    let (backup_at, corrupt_at) = (when(backup), when(corrupt));
    let mut out = match backup_at {
        Some(at) => format!(
            "the backup is from {}",
            crate::fmt::local_time(&Timestamp::At(at.fixed_offset()))
        ),
        None => "the backup's time is unknown".to_owned(),
    };
    if let (Some(b), Some(c)) = (backup_at, corrupt_at) {
        let secs = crate::fmt::seconds_between(&b, &c);
        if secs >= 1.0 {
            out.push_str(&format!(
                ", {} older than the corrupt file: changes made after it are lost",
                crate::fmt::duration(secs)
            ));
        }
    }
    match rolled_back(corrupt, restored) {
        None => out.push_str(
            "; the corrupt file is not JSON, so what it held beyond the backup cannot be told",
        ),
        Some(went_back) if went_back.is_empty() => {
            out.push_str("; no task status differs from what the corrupt file still shows");
        }
        Some(went_back) => {
            const SHOWN: usize = 5;
            let more = went_back.len().saturating_sub(SHOWN);
            let mut list = went_back
                .into_iter()
                .take(SHOWN)
                .collect::<Vec<_>>()
                .join(", ");
            if more > 0 {
                list.push_str(&format!(" and {more} more"));
            }
            out.push_str(&format!("; rolled back: {list}"));
        }
    }
    out
}

/// Best effort, from a corrupt file that still parses as JSON (`None` when it does not): `spec/task was → now`
/// for each task whose status differs in `restored`, and the specs `restored` lacks.
fn rolled_back(corrupt: &Path, restored: &UnifiedState) -> Option<Vec<String>> {
    let bytes = read_state_file(corrupt).ok()?;
    // Read as the store reads a state: a file Python wrote with `NaN` is still JSON here.
    let text = crate::jsontext::python_text(&bytes).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let Some(specs) = value.get("specifications").and_then(|v| v.as_object()) else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    for (name, spec) in specs {
        let Some(now) = restored.specifications.get(name) else {
            out.push(format!("spec `{name}` (not in the backup)"));
            continue;
        };
        let Some(tasks) = spec.get("tasks").and_then(|v| v.as_object()) else {
            continue;
        };
        let mut ids: Vec<&String> = tasks.keys().collect();
        ids.sort_by(|a, b| crate::fmt::compare_task_ids(a, b));
        for id in ids {
            let Some(was) = tasks[id].get("status").and_then(|v| v.as_str()) else {
                continue;
            };
            let is = now
                .tasks
                .get(id)
                .and_then(|t| serde_json::to_value(&t.status).ok())
                .and_then(|v| v.as_str().map(str::to_owned));
            match is {
                Some(is) if is == was => {}
                Some(is) => out.push(format!("{name}/{id} {was} → {is}")),
                None => out.push(format!("{name}/{id} {was} → not in the backup")),
            }
        }
    }
    Some(out)
}

/// Parse and check state bytes. `Ok(Err(reason))` means corrupt; `Err` is reserved for a
/// file from a newer qw, which must not be quarantined.
///
/// Read as the original Python system reads it: a UTF-8 BOM is skipped, and `NaN`,
/// `Infinity`, `-Infinity` and numbers beyond serde_json's range are accepted (and kept
/// verbatim on rewrite, see `crate::jsontext`).
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Result<UnifiedState, String>, StateError> {
    let text = match crate::jsontext::python_text(bytes) {
        Ok(text) => text,
        Err(why) => return Ok(Err(why)),
    };
    match serde_json::from_str::<UnifiedState>(&text) {
        Ok(s) if u64::from(s.schema_version) > u64::from(SCHEMA_VERSION) => {
            Err(StateError::NewerSchema {
                path: path.to_path_buf(),
                found: u64::from(s.schema_version),
            })
        }
        Ok(s) => Ok(s.check().map(|()| s)),
        Err(e) => {
            // A newer format may not fit this schema; recognise it rather than quarantine it.
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(found) = v.get("schema_version").and_then(serde_json::Value::as_u64)
                && found > u64::from(SCHEMA_VERSION)
            {
                return Err(StateError::NewerSchema {
                    path: path.to_path_buf(),
                    found,
                });
            }
            // serde_json's message, "at line L column C" (named, not "recursion limit
            // exceeded", when a deep container is not JSON).
            let original = std::str::from_utf8(bytes).map(crate::jsontext::strip_bom);
            Ok(Err(crate::jsontext::refusal(
                original.unwrap_or_default(),
                crate::jsontext::Dialect::Python,
                &e,
            )
            .to_string()))
        }
    }
}

/// The bytes of the state file for `state`: pretty JSON and a newline.
fn render(state: &UnifiedState) -> Result<Vec<u8>, StateError> {
    let text = serde_json::to_string_pretty(state).map_err(StateError::Serialize)?;
    // Tokens the original wrote (NaN, Infinity, integers of any size) go back verbatim.
    let mut bytes = crate::jsontext::untag(text).into_bytes();
    bytes.push(b'\n');
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn project() -> (tempfile::TempDir, Project) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".claude")).unwrap();
        let p = Project::at(dir.path());
        (dir, p)
    }

    #[test]
    fn a_byte_order_mark_is_kept_on_rewrite_and_none_is_added() {
        let (_d, p) = project();
        let store = StateStore::new(&p);
        store.update(|s| s.record_command("a", true)).unwrap();
        let plain = std::fs::read(store.path()).unwrap();
        assert!(plain.starts_with(b"{"), "no BOM is added");
        let mut with_bom = "\u{feff}".as_bytes().to_vec();
        with_bom.extend_from_slice(&plain);
        std::fs::write(store.path(), &with_bom).unwrap();
        store.update(|s| s.record_command("b", true)).unwrap();
        let after = std::fs::read(store.path()).unwrap();
        assert!(after.starts_with("\u{feff}{".as_bytes()), "BOM dropped");
        assert_eq!(store.load().unwrap().commands.total_executed, 2);
    }

    #[test]
    fn a_remembering_store_loses_no_other_writers_change() {
        let (_d, p) = project();
        let remembering = StateStore::new(&p).remembering();
        let other = StateStore::new(&p);
        let count = || StateStore::new(&p).load().unwrap().commands.total_executed;
        remembering.update(|s| s.record_command("a", true)).unwrap();
        remembering.update(|s| s.record_command("b", true)).unwrap();
        // Another process's write (a new file by rename) between two of its updates.
        other.update(|s| s.record_command("c", true)).unwrap();
        remembering.update(|s| s.record_command("d", true)).unwrap();
        assert_eq!(count(), 4);
        // An edit in place of the same length (same inode, maybe the same mtime).
        let path = p.state_file();
        let text = std::fs::read_to_string(&path).unwrap();
        let edited = text.replacen("\"total_executed\": 4", "\"total_executed\": 7", 1);
        assert_ne!(edited, text);
        assert_eq!(edited.len(), text.len());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, edited.as_bytes()))
            .unwrap();
        remembering.update(|s| s.record_command("e", true)).unwrap();
        assert_eq!(count(), 8);
        // A change it did not write is not remembered: the next update reads the file.
        remembering
            .try_update(|s| {
                s.commands.total_executed += 50;
                Err::<(), ()>(())
            })
            .unwrap()
            .unwrap_err();
        remembering.update(|s| s.record_command("f", true)).unwrap();
        assert_eq!(count(), 9);
    }

    #[test]
    fn update_creates_then_changes_the_file() {
        let (_d, p) = project();
        let store = StateStore::new(&p);
        assert!(!store.path().exists());
        let n = store
            .update(|s| {
                s.record_command("a", true);
                s.commands.total_executed.clone()
            })
            .unwrap();
        assert_eq!(n, 1);
        store.update(|s| s.record_command("b", false)).unwrap();
        let s = store.load().unwrap();
        assert_eq!(s.commands.total_executed, 2);
        assert_eq!(s.schema_version, 1);
    }

    #[test]
    fn try_update_error_writes_nothing() {
        let (_d, p) = project();
        let store = StateStore::new(&p);
        store.update(|s| s.record_command("a", true)).unwrap();
        let before = std::fs::read(store.path()).unwrap();
        let r = store
            .try_update(|s| {
                s.record_command("b", true);
                Err::<(), _>("no")
            })
            .unwrap();
        assert!(r.is_err());
        assert_eq!(std::fs::read(store.path()).unwrap(), before);
    }

    #[test]
    fn stale_temp_files_are_removed_by_the_next_write() {
        let (_d, p) = project();
        let store = StateStore::new(&p);
        let stale = p.claude_dir().join(".unified_state.json.tmpXYZ");
        std::fs::write(&stale, "{half").unwrap();
        let other = p.claude_dir().join(".settings.local.json.tmpABC");
        std::fs::write(&other, "x").unwrap();
        store.update(|_| ()).unwrap();
        assert!(!stale.exists());
        assert!(
            other.exists(),
            "only the state's own temp files are touched"
        );
    }

    #[test]
    fn backup_before_names_the_operation_and_skips_missing_state() {
        let (_d, p) = project();
        let store = StateStore::new(&p);
        assert_eq!(store.backup_before("workflow-auto").unwrap(), None);
        store.update(|s| s.record_command("a", true)).unwrap();
        let b = store.backup_before("workflow-auto").unwrap().unwrap();
        let name = b.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("pre_workflow-auto_2"), "{name}");
        assert_eq!(
            std::fs::read(&b).unwrap(),
            std::fs::read(store.path()).unwrap()
        );
        assert!(store.backup_before("../x").is_err());
    }

    #[test]
    fn newer_schema_is_refused_not_quarantined() {
        let (_d, p) = project();
        let store = StateStore::new(&p);
        std::fs::write(
            store.path(),
            r#"{"schema_version": 7, "specifications": 3}"#,
        )
        .unwrap();
        let err = store.load().unwrap_err();
        assert!(
            matches!(err, StateError::NewerSchema { found: 7, .. }),
            "{err}"
        );
        assert!(store.path().exists());
        assert!(!p.state_backups_dir().exists());
    }

    #[test]
    fn corrupt_file_is_quarantined_and_fresh_state_started_without_backups() {
        let (_d, p) = project();
        let store = StateStore::new(&p);
        std::fs::write(store.path(), "{\"commands\": {\"total_exec").unwrap();
        let s = store.load().unwrap();
        assert_eq!(s.commands.total_executed, 0);
        let names: Vec<String> = std::fs::read_dir(p.state_backups_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(names[0].starts_with("corrupted_"), "{names:?}");
        let kept = std::fs::read_to_string(p.state_backups_dir().join(&names[0])).unwrap();
        assert_eq!(
            kept, "{\"commands\": {\"total_exec",
            "bad bytes kept verbatim"
        );
        // The fresh state was written, so the next read is clean.
        assert!(matches!(store.read().unwrap(), Read::Valid(_)));
    }

    fn reparse(name: &str, bytes: &[u8]) -> UnifiedState {
        parse(Path::new(name), bytes).unwrap().unwrap()
    }

    /// A state written by qw before its own keys (`cost_ledger`, `workflow_options`,
    /// `system_stats`, `evidence`) were typed: it reads into the typed fields and
    /// rewrites byte for byte (unknown keys first, as qw appended its own after them).
    #[test]
    fn a_state_written_by_an_earlier_qw_rewrites_byte_for_byte() {
        let written = include_str!("../../tests/fixtures/qw_unified_state.json");
        let s = reparse("qw_unified_state.json", written.as_bytes());
        let ledger = s.cost_ledger.as_ref().expect("cost_ledger is typed");
        assert_eq!(ledger.days.len(), 1);
        let spent: f64 = ledger.days.keys().map(|d| ledger.spent_on(d)).sum();
        assert!((spent - 1.25).abs() < 1e-9, "0.25 + 0.5 + 0.5: {spent}");
        let demo = &s.specifications["demo"];
        let options = demo
            .workflow_options
            .as_ref()
            .expect("workflow_options is typed");
        assert_eq!(options.members["parallel"], 2);
        assert_eq!(
            demo.tasks["1"].evidence.as_deref(),
            Some("exit 0, is_error false: Done.")
        );
        assert!(demo.tasks["1"].system_stats.is_some());
        assert!(demo.tasks["2"].system_stats.is_none());
        let t10 = &s.specifications["user-auth"].tasks["10"];
        assert_eq!(
            t10.extra["timeout_seconds"], 900,
            "the original's key stays unknown"
        );
        assert!(s.extra.contains_key("custom_extension"));
        assert!(!s.extra.contains_key("cost_ledger"), "{:?}", s.extra.keys());
        assert!(!demo.extra.contains_key("workflow_options"));
        assert!(!demo.tasks["1"].extra.contains_key("evidence"));

        let again = render(&s).unwrap();
        assert_eq!(String::from_utf8(again).unwrap(), written);
    }

    /// Unknown keys inside qw's own maps survive a rewrite, and a value of the ledger
    /// that is no number is kept and counts as nothing spent.
    #[test]
    fn unknown_members_of_qw_maps_survive_a_rewrite() {
        let text = r#"{"cost_ledger": {"2026-01-02": 1.5, "note": "by hand"},
            "specifications": {"a": {"workflow_options": {"agent": "claude", "future": [1]},
                "tasks": {"1": {"evidence": "why", "system_stats": {"x": 1}}}}}}"#;
        let s = reparse("s.json", text.as_bytes());
        let ledger = s.cost_ledger.as_ref().unwrap();
        assert_eq!(ledger.spent_on("2026-01-02"), 1.5);
        assert_eq!(ledger.spent_on("note"), 0.0);
        assert_eq!(ledger.spent_on("2026-01-03"), 0.0);
        let back = render(&s).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&back).unwrap();
        assert_eq!(v["cost_ledger"]["note"], "by hand");
        assert_eq!(v["specifications"]["a"]["workflow_options"]["future"][0], 1);
        assert_eq!(v["specifications"]["a"]["tasks"]["1"]["evidence"], "why");
        assert_eq!(
            v["specifications"]["a"]["tasks"]["1"]["system_stats"]["x"],
            1
        );
        assert!(v["specifications"]["a"].get("cost_ledger").is_none());
    }

    /// The original system's files rewrite to a fixed point: the second rewrite is the
    /// first (timestamps and numbers are normalised once, keys never move or vanish).
    #[test]
    fn the_original_systems_files_rewrite_to_a_fixed_point() {
        for (name, text) in [
            (
                "python_unified_state.json",
                include_str!("../../tests/fixtures/python_unified_state.json"),
            ),
            (
                "python_unified_state_nan.json",
                include_str!("../../tests/fixtures/python_unified_state_nan.json"),
            ),
        ] {
            let first = render(&reparse(name, text.as_bytes())).unwrap();
            let second = render(&reparse(name, &first)).unwrap();
            assert_eq!(
                String::from_utf8(first).unwrap(),
                String::from_utf8(second).unwrap(),
                "{name}"
            );
        }
    }

    /// What a restore rolls back is read from the corrupt file as the store reads
    /// states: Python's `NaN`, big integers and a BOM do not make it "not JSON".
    #[test]
    fn rolled_back_reads_the_corrupt_file_as_python_wrote_it() {
        let dir = tempfile::tempdir().unwrap();
        let restored = reparse(
            "backup.json",
            br#"{"specifications": {"a": {"tasks": {"1": {"status": "pending"}, "2": {"status": "completed"}}}}}"#,
        );
        let corrupt = dir.path().join("corrupt.json");
        std::fs::write(
            &corrupt,
            "\u{feff}{\"specifications\": {\"a\": {\"tasks\": {\"1\": {\"status\": \"completed\", \"cost\": NaN}, \"2\": {\"status\": \"completed\", \"n\": 123456789012345678901234}}}, \"b\": {\"x\": Infinity}}}",
        )
        .unwrap();
        assert_eq!(
            rolled_back(&corrupt, &restored).unwrap(),
            ["a/1 completed → pending", "spec `b` (not in the backup)"]
        );
        std::fs::write(&corrupt, "{\"specifications\": {\"a\": nope").unwrap();
        assert_eq!(rolled_back(&corrupt, &restored), None, "not JSON at all");
    }

    #[test]
    fn cost_ledger_adds_per_day_and_keeps_day_order() {
        let mut ledger = crate::state::CostLedger::default();
        ledger.add("2026-01-02", 0.5);
        ledger.add("2026-01-01", 0.25);
        ledger.add("2026-01-02", 0.25);
        assert_eq!(ledger.spent_on("2026-01-02"), 0.75);
        let days: Vec<&String> = ledger.days.keys().collect();
        assert_eq!(days, ["2026-01-02", "2026-01-01"], "as first written");
    }
}
