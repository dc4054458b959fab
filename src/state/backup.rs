//! State backups in `.claude/backups/state/`: list, restore, clean (CONTRACT §5).
//!
//! Creating one is [`StateStore::backup`](super::StateStore::backup). Backups are whole
//! copies of the state file; quarantined corrupt files (`corrupted_*.json`) live in the
//! same folder, are listed, and are never restored automatically.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Local};
use serde::Serialize;

use super::StateError;
use super::schema::UnifiedState;
use super::store::{StateStore, parse, read_state_file};
use crate::names::{NameKind, validate};
use crate::project::Project;

/// Prefix of quarantined corrupt state files.
pub(crate) const CORRUPTED_PREFIX: &str = "corrupted_";

/// One backup file.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BackupInfo {
    /// Name without `.json` (what `--restore` takes).
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// When it was written.
    pub modified: DateTime<Local>,
    /// Size in bytes.
    pub size: u64,
    /// Whether it holds a valid state.
    pub valid: bool,
    /// Where the workflow stood (`user-auth: implementation (1 spec)`), or why it is invalid.
    pub summary: String,
}

/// `YYYYmmdd_HHMMSS` for now, local time.
pub(crate) fn stamp() -> String {
    Local::now().format("%Y%m%d_%H%M%S").to_string()
}

/// `dir/base.ext`, or `dir/base_2.ext`, `_3`, … if taken.
pub(crate) fn unique_path(dir: &Path, base: &str, ext: &str) -> PathBuf {
    let dotted = |s: String| {
        if ext.is_empty() {
            s
        } else {
            format!("{s}.{ext}")
        }
    };
    let first = dir.join(dotted(base.to_owned()));
    if !first.exists() {
        return first;
    }
    (2u32..)
        .map(|n| dir.join(dotted(format!("{base}_{n}"))))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// `name` without a trailing `.json`.
pub(crate) fn strip_json(name: &str) -> &str {
    name.strip_suffix(".json").unwrap_or(name)
}

fn modified(path: &Path) -> Result<SystemTime, StateError> {
    Ok(crate::fs::metadata(path)?.modified()?)
}

/// Every `*.json` file in `dir` with its modification time, newest first (ties: by name,
/// later first). A missing folder has none.
fn json_files(dir: &Path) -> Result<Vec<(PathBuf, SystemTime)>, StateError> {
    let entries = match crate::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") && path.is_file() {
            let t = modified(&path)?;
            out.push((path, t));
        }
    }
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    Ok(out)
}

/// The newest backup in `dir` that is a valid state (quarantined files excluded): its
/// path, bytes and parsed state.
pub(crate) fn newest_valid(
    dir: &Path,
) -> Result<Option<(PathBuf, Vec<u8>, UnifiedState)>, StateError> {
    for (path, _) in json_files(dir)? {
        if file_name(&path).starts_with(CORRUPTED_PREFIX) {
            continue;
        }
        let Ok(bytes) = read_state_file(&path) else {
            continue;
        };
        if let Ok(Ok(state)) = parse(&path, &bytes) {
            return Ok(Some((path, bytes, state)));
        }
    }
    Ok(None)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every backup, newest first.
pub(crate) fn list(project: &Project) -> Result<Vec<BackupInfo>, StateError> {
    let mut out = Vec::new();
    for (path, t) in json_files(&project.state_backups_dir())? {
        let bytes = match read_state_file(&path) {
            Ok(b) => b,
            // A backup that is not a regular file or too big is listed as invalid.
            Err(e) if crate::fs::is_refused(&e) => {
                out.push(BackupInfo {
                    name: strip_json(&file_name(&path)).to_owned(),
                    modified: DateTime::<Local>::from(t),
                    size: crate::fs::metadata(&path).map_or(0, |m| m.len()),
                    path,
                    valid: false,
                    summary: format!("invalid: {e}"),
                });
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let (valid, summary) = match parse(&path, &bytes) {
            Ok(Ok(s)) => (true, s.phase_summary()),
            Ok(Err(reason)) => (false, format!("invalid: {reason}")),
            Err(e) => (false, e.to_string()),
        };
        out.push(BackupInfo {
            name: strip_json(&file_name(&path)).to_owned(),
            modified: DateTime::<Local>::from(t),
            size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            path,
            valid,
            summary,
        });
    }
    Ok(out)
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RestoreReport {
    /// The backup that is now the state.
    pub restored: PathBuf,
    /// Where the state that was replaced went (`None` if there was none).
    pub previous_saved_to: Option<PathBuf>,
}

/// Make backup `name` (`.json` optional) the state, after backing up the current state.
/// A missing or invalid backup changes nothing.
pub(crate) fn restore(store: &StateStore, name: &str) -> Result<RestoreReport, StateError> {
    let name = strip_json(name);
    validate(NameKind::Backup, name)?;
    let dir = store.project().state_backups_dir();
    let path = dir.join(format!("{name}.json"));
    if !path.is_file() {
        return Err(StateError::BackupNotFound {
            name: name.to_owned(),
            dir,
        });
    }
    let bytes = match read_state_file(&path) {
        Ok(b) => b,
        Err(e) if crate::fs::is_refused(&e) => {
            return Err(StateError::InvalidBackup {
                path,
                reason: e.to_string(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    if let Err(reason) = parse(&path, &bytes)? {
        return Err(StateError::InvalidBackup { path, reason });
    }
    let lock = store.lock()?;
    let previous = store.backup_locked(&lock, None, "pre_restore")?;
    store.write_bytes_locked(&lock, &bytes)?;
    Ok(RestoreReport {
        restored: path,
        previous_saved_to: previous,
    })
}

/// Days `--clean` keeps when `--days` is not given.
pub(crate) const DEFAULT_CLEAN_DAYS: u32 = 7;

/// What a clean did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CleanReport {
    /// Files deleted.
    pub removed: Vec<PathBuf>,
    /// Backups left.
    pub kept: usize,
    /// Spec-folder copies (`backups/workflows/<spec>_<time>/`) deleted.
    pub removed_workflows: Vec<PathBuf>,
    /// Spec-folder copies left.
    pub kept_workflows: usize,
}

/// Delete state backups and spec-folder copies of hard resets older than `days` days; the
/// newest state backup is always kept, and so is the newest copy of each spec.
pub(crate) fn clean(project: &Project, days: u32) -> Result<CleanReport, StateError> {
    let cutoff = SystemTime::now()
        .checked_sub(Duration::from_secs(u64::from(days) * 86_400))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let files = json_files(&project.state_backups_dir())?;
    let mut removed = Vec::new();
    let mut kept = 0;
    for (i, (path, t)) in files.into_iter().enumerate() {
        if i > 0 && t < cutoff {
            crate::fs::remove_file(&path)?;
            removed.push(path);
        } else {
            kept += 1;
        }
    }
    if !removed.is_empty() {
        crate::fs::sync_dir(&project.state_backups_dir())?;
    }
    let (removed_workflows, kept_workflows) =
        clean_workflow_copies(&project.workflow_backups_dir(), cutoff)?;
    Ok(CleanReport {
        removed,
        kept,
        removed_workflows,
        kept_workflows,
    })
}

/// The spec a hard-reset copy belongs to: `user-auth_20261128_173305` (or `…_2`) →
/// `user-auth` (spec names are kebab-case, so the first `_` ends the name).
fn copy_spec(folder: &str) -> &str {
    folder.split('_').next().unwrap_or(folder)
}

/// Remove copies in `dir` older than `cutoff`, keeping the newest copy of each spec.
fn clean_workflow_copies(
    dir: &Path,
    cutoff: SystemTime,
) -> Result<(Vec<PathBuf>, usize), StateError> {
    let entries = match crate::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e.into()),
    };
    let mut copies = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            let path = entry.path();
            let t = modified(&path)?;
            copies.push((path, t));
        }
    }
    copies.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let mut seen = std::collections::HashSet::new();
    let (mut removed, mut kept) = (Vec::new(), 0);
    for (path, t) in copies {
        let name = file_name(&path);
        let newest_of_spec = seen.insert(copy_spec(&name).to_owned());
        if !newest_of_spec && t < cutoff {
            crate::fs::remove_dir_all(&path)?;
            removed.push(path);
        } else {
            kept += 1;
        }
    }
    if !removed.is_empty() {
        crate::fs::sync_dir(dir)?;
    }
    Ok((removed, kept))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn unique_path_adds_a_counter() {
        let dir = tempfile::tempdir().unwrap();
        let a = unique_path(dir.path(), "x", "json");
        assert_eq!(a, dir.path().join("x.json"));
        std::fs::write(&a, "").unwrap();
        let b = unique_path(dir.path(), "x", "json");
        assert_eq!(b, dir.path().join("x_2.json"));
    }

    #[test]
    fn clean_keeps_the_newest_even_when_old() {
        let dir = tempfile::tempdir().unwrap();
        let p = Project::at(dir.path());
        let b = p.state_backups_dir();
        std::fs::create_dir_all(&b).unwrap();
        let old = SystemTime::now() - Duration::from_secs(10 * 86_400);
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            let f = b.join(format!("{n}.json"));
            std::fs::write(&f, "{}").unwrap();
            let t = old + Duration::from_secs(u64::try_from(i).unwrap() * 60);
            std::fs::File::options()
                .write(true)
                .open(&f)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        let r = clean(&p, 5).unwrap();
        assert_eq!(r.removed.len(), 2);
        assert_eq!(r.kept, 1);
        assert!(b.join("c.json").exists());
    }

    #[test]
    fn clean_prunes_old_spec_copies_keeping_each_specs_newest() {
        let dir = tempfile::tempdir().unwrap();
        let p = Project::at(dir.path());
        let w = p.workflow_backups_dir();
        let old = SystemTime::now() - Duration::from_secs(10 * 86_400);
        let make = |name: &str, age: u64| {
            let d = w.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("tasks.md"), "x").unwrap();
            std::fs::File::open(&d)
                .unwrap()
                .set_modified(old + Duration::from_secs(age))
                .unwrap();
        };
        make("a_20260101_000000", 0);
        make("a_20260101_000000_2", 60);
        make("a_20260102_000000", 120);
        make("b-c_20260101_000000", 0);
        std::fs::create_dir_all(w.join("fresh_20991231_000000")).unwrap();
        std::fs::create_dir_all(w.join("fresh_20991231_000001")).unwrap();
        let r = clean(&p, 7).unwrap();
        let mut gone: Vec<_> = r
            .removed_workflows
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        gone.sort();
        assert_eq!(gone, ["a_20260101_000000", "a_20260101_000000_2"]);
        assert_eq!(r.kept_workflows, 4);
        assert!(w.join("a_20260102_000000/tasks.md").exists());
        assert!(
            w.join("b-c_20260101_000000").exists(),
            "a spec's only copy stays"
        );
        assert_eq!(copy_spec("user-auth_20261128_173305_2"), "user-auth");
    }
}
