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

/// `.claude/backups/<which>/`, opened without following a link at `backups` or below
/// (a link there is an error naming it: nothing is read or deleted through one). `None`
/// when it does not exist.
fn open_backups(
    project: &Project,
    which: &str,
) -> Result<Option<crate::fs::NoFollowDir>, StateError> {
    Ok(crate::fs::NoFollowDir::open(
        &project.claude_dir(),
        &Path::new("backups").join(which),
    )?)
}

/// A `*.json` file in the state backups folder.
struct JsonFile {
    /// Its path as the user knows it (for messages and reports).
    path: PathBuf,
    /// Its path through the opened folder (for reading and removing).
    via: PathBuf,
    name: std::ffi::OsString,
    modified: SystemTime,
}

/// The state backups folder as [`json_files`] found it.
struct Listing {
    /// The folder, opened (`None` when there is none).
    dir: Option<crate::fs::NoFollowDir>,
    /// Its backups, newest first.
    files: Vec<JsonFile>,
    /// Its other entries.
    others: Vec<PathBuf>,
}

/// Every `*.json` regular file in the state backups folder with its modification time,
/// newest first (ties: by name, later first), and the entries that are not: links
/// (never followed), folders, files of other names. A missing folder has none.
fn json_files(project: &Project) -> Result<Listing, StateError> {
    let Some(dir) = open_backups(project, "state")? else {
        return Ok(Listing {
            dir: None,
            files: Vec::new(),
            others: Vec::new(),
        });
    };
    let mut out = Vec::new();
    let mut others = Vec::new();
    for entry in dir.entries()? {
        let path = dir.shown().join(&entry.name);
        let backup_name = entry
            .name
            .to_str()
            .and_then(|n| n.strip_suffix(".json"))
            .is_some_and(|n| validate(NameKind::Backup, n).is_ok());
        match entry.modified {
            Some(modified) if backup_name && entry.file_type.is_file() => out.push(JsonFile {
                path,
                via: dir.join(&entry.name),
                name: entry.name,
                modified,
            }),
            _ => others.push(path),
        }
    }
    out.sort_by(|a, b| {
        b.modified
            .cmp(&a.modified)
            .then_with(|| b.path.cmp(&a.path))
    });
    others.sort();
    Ok(Listing {
        dir: Some(dir),
        files: out,
        others,
    })
}

/// The newest backup in the project's state backups folder that is a valid state
/// (quarantined files excluded): its path, bytes and parsed state.
pub(crate) fn newest_valid(
    project: &Project,
) -> Result<Option<(PathBuf, Vec<u8>, UnifiedState)>, StateError> {
    for f in json_files(project)?.files {
        if file_name(&f.path).starts_with(CORRUPTED_PREFIX) {
            continue;
        }
        let Ok(bytes) = read_state_file(&f.via) else {
            continue;
        };
        if let Ok(Ok(state)) = parse(&f.path, &bytes) {
            return Ok(Some((f.path, bytes, state)));
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
    let files = json_files(project)?.files;
    // Read by the path the user knows, so a refusal names it: the folder was just opened
    // without following a link, and the entry is a regular file.
    for JsonFile {
        path, modified: t, ..
    } in files
    {
        let bytes = match read_state_file(&path) {
            Ok(b) => b,
            // A backup too big to read (or swapped for something else since the listing) is
            // listed as invalid.
            Err(e) if crate::fs::is_refused(&e) => {
                out.push(BackupInfo {
                    name: strip_json(&file_name(&path)).to_owned(),
                    modified: DateTime::<Local>::from(t),
                    size: crate::fs::symlink_metadata(&path).map_or(0, |m| m.len()),
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
    /// Entries of the two folders qw did not make (other names, links, files where a
    /// folder belongs): never deleted, however old.
    pub skipped: Vec<PathBuf>,
}

/// Delete state backups and spec-folder copies of hard resets older than `days` days; the
/// newest state backup is always kept, and so is the newest copy of each spec. Only what
/// qw names so is deleted (`NAME.json` regular files in `backups/state/`,
/// `<spec>_<YYYYmmdd_HHMMSS>[_N]` folders in `backups/workflows/`); a link at
/// `backups`, `backups/state` or `backups/workflows` is an error naming it, and nothing
/// is deleted through one.
pub(crate) fn clean(project: &Project, days: u32) -> Result<CleanReport, StateError> {
    let cutoff = SystemTime::now()
        .checked_sub(Duration::from_secs(u64::from(days) * 86_400))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    // Both folders are opened (and a link refused) before anything is deleted.
    let Listing {
        dir,
        files,
        others: mut skipped,
    } = json_files(project)?;
    let copies = open_backups(project, "workflows")?;
    let mut removed = Vec::new();
    let mut kept = 0;
    if let Some(dir) = &dir {
        for (i, f) in files.into_iter().enumerate() {
            if i > 0 && f.modified < cutoff {
                dir.remove_file(&f.name)?;
                removed.push(f.path);
            } else {
                kept += 1;
            }
        }
        if !removed.is_empty() {
            dir.sync()?;
        }
    }
    let (removed_workflows, kept_workflows) = match &copies {
        Some(copies) => clean_workflow_copies(copies, cutoff, &mut skipped)?,
        None => (Vec::new(), 0),
    };
    Ok(CleanReport {
        removed,
        kept,
        removed_workflows,
        kept_workflows,
        skipped,
    })
}

/// The spec a hard-reset copy belongs to: `user-auth_20261128_173305` (or `…_2`) →
/// `user-auth` (spec names are kebab-case, so the first `_` ends the name).
fn copy_spec(folder: &str) -> &str {
    folder.split('_').next().unwrap_or(folder)
}

/// Whether `folder` is named as a hard reset names its copy:
/// `<spec>_<YYYYmmdd>_<HHMMSS>`, or with `_N` (N ≥ 2) when that was taken.
fn is_copy_name(folder: &str) -> bool {
    let mut parts = folder.split('_');
    let (Some(spec), Some(date), Some(time)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let counter_ok = match (parts.next(), parts.next()) {
        (None, _) => true,
        (Some(n), None) => n.parse::<u32>().is_ok_and(|n| n >= 2) && !n.starts_with('0'),
        _ => false,
    };
    counter_ok
        && validate(NameKind::Spec, spec).is_ok()
        && chrono::NaiveDateTime::parse_from_str(&format!("{date}_{time}"), "%Y%m%d_%H%M%S").is_ok()
        && date.len() == 8
        && time.len() == 6
}

/// Remove copies in `dir` older than `cutoff`, keeping the newest copy of each spec; what
/// is not a copy qw made goes to `skipped`.
fn clean_workflow_copies(
    dir: &crate::fs::NoFollowDir,
    cutoff: SystemTime,
    skipped: &mut Vec<PathBuf>,
) -> Result<(Vec<PathBuf>, usize), StateError> {
    let mut copies = Vec::new();
    let mut others = Vec::new();
    for entry in dir.entries()? {
        let path = dir.shown().join(&entry.name);
        match (entry.name.to_str(), entry.modified) {
            (Some(name), Some(t)) if entry.file_type.is_dir() && is_copy_name(name) => {
                copies.push((name.to_owned(), path, t));
            }
            _ => others.push(path),
        }
    }
    others.sort();
    skipped.extend(others);
    copies.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| b.0.cmp(&a.0)));
    let mut seen = std::collections::HashSet::new();
    let (mut removed, mut kept) = (Vec::new(), 0);
    for (name, path, t) in copies {
        let newest_of_spec = seen.insert(copy_spec(&name).to_owned());
        if !newest_of_spec && t < cutoff {
            dir.remove_dir_all(std::ffi::OsStr::new(&name))?;
            removed.push(path);
        } else {
            kept += 1;
        }
    }
    if !removed.is_empty() {
        dir.sync()?;
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
