//! Run folders: `.claude/runs/<run-id>/` holding one agent run's `prompt.md`, its
//! captured stdout (`events.jsonl` for claude — the event stream; `stdout.json` for
//! offline; `stdout.log` for a command agent; see [`output_file`]), `stderr.log`,
//! `verify.log`, and a rejected document (`<name>.rejected`) if any; and pruning old ones.
//!
//! A run id is `<UTC start, YYYYmmddTHHMMSSmmm>-<spec>-<label>-<random>`, so names sort by
//! start time and say what ran. Pruning keeps the newest `keep` folders (setting
//! `quantumwala.keep_runs`, default [`DEFAULT_KEEP`]) and never removes a folder touched
//! in the last [`BUSY_WINDOW`], so a long run of another `qw` process is not pulled from
//! under it.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::project::Project;
use crate::settings::QwSettings;

/// Run folders kept when the settings say nothing.
pub const DEFAULT_KEEP: usize = 100;
/// A folder modified this recently may belong to a live run and is never pruned.
pub const BUSY_WINDOW: Duration = Duration::from_secs(3600);

/// Create a fresh run folder for `spec` and `label` (a phase name or `task-2.1`).
pub fn create(project: &Project, spec: &str, label: &str) -> io::Result<PathBuf> {
    let dir = project.runs_dir();
    crate::fs::create_dir_all(&dir)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%3f");
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    for _ in 0..16 {
        let mut nonce = [0u8; 3];
        getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
        let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.join(format!("{stamp}-{}-{}-{hex}", clean(spec), clean(label)));
        match fs_err::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "could not create a unique run folder in `{}`",
        dir.display()
    )))
}

/// Names of a run's captured stdout, by agent: claude's event stream, the offline
/// agent's result object, a command agent's text. Older runs may hold `stdout.json`
/// from claude (before the event stream): it is one result object, read the same way.
pub const OUTPUT_NAMES: [&str; 3] = ["events.jsonl", "stdout.json", "stdout.log"];

/// The run's captured stdout, whichever agent wrote it; None when there is none (yet).
pub fn output_file(run_dir: &Path) -> Option<PathBuf> {
    OUTPUT_NAMES
        .iter()
        .map(|n| run_dir.join(n))
        .find(|p| p.is_file())
}

/// Follows a run's event stream while it grows (for `qw status`, `qw logs --follow`,
/// the dashboard): each [`Follow::poll`] reads what was appended since the last one.
/// A file that shrank (replaced) is read again from its start.
#[derive(Debug)]
pub struct Follow {
    path: PathBuf,
    reader: super::events::EventReader,
}

impl Follow {
    /// Follow `path` (usually [`output_file`] of a run folder); it may not exist yet.
    pub fn new(path: impl Into<PathBuf>) -> Follow {
        Follow {
            path: path.into(),
            reader: super::events::EventReader::new(),
        }
    }

    /// Read what was appended; the records of the lines it completed. A missing file
    /// is no error (the agent has not started writing).
    pub fn poll(&mut self) -> io::Result<Vec<super::events::Record>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = match crate::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if meta.len() < self.reader.offset() {
            self.reader = super::events::EventReader::new();
        }
        let observed = meta
            .modified()
            .ok()
            .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339());
        file.seek(SeekFrom::Start(self.reader.offset()))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(self.reader.feed(&bytes, observed.as_deref()))
    }

    /// The activity so far.
    pub fn activity(&self) -> &super::events::Activity {
        self.reader.activity()
    }

    /// The writer is gone: read a last line that has no newline.
    pub fn finish(&mut self) -> Vec<super::events::Record> {
        self.reader.finish(None)
    }
}

/// `quantumwala.keep_runs` from the settings (checked to be ≥ 1), else [`DEFAULT_KEEP`].
pub fn keep_from_settings(settings: &QwSettings) -> usize {
    settings.quantumwala.keep_runs.unwrap_or(DEFAULT_KEEP)
}

/// Remove all but the newest `keep` run folders (skipping busy ones); returns what was
/// removed. A missing `.claude/runs/` is not an error.
pub fn prune(project: &Project, keep: usize) -> io::Result<Vec<PathBuf>> {
    prune_dir(&project.runs_dir(), keep, SystemTime::now())
}

fn prune_dir(dir: &Path, keep: usize, now: SystemTime) -> io::Result<Vec<PathBuf>> {
    let entries = match crate::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut runs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    runs.sort();
    let excess = runs.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for run in runs.into_iter().take(excess) {
        if busy(&run, now) {
            continue;
        }
        crate::fs::remove_dir_all(&run)?;
        removed.push(run);
    }
    Ok(removed)
}

/// Was the folder or anything directly in it modified within [`BUSY_WINDOW`]?
fn busy(dir: &Path, now: SystemTime) -> bool {
    let recent = |p: &Path| {
        p.metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).unwrap_or_default() < BUSY_WINDOW)
    };
    if recent(dir) {
        return true;
    }
    crate::fs::read_dir(dir)
        .map(|entries| entries.flatten().any(|e| recent(&e.path())))
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_makes_unique_sortable_folders() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::at(dir.path());
        let a = create(&project, "greeter", "task-2.1").unwrap();
        let b = create(&project, "greeter", "task-2.1").unwrap();
        assert_ne!(a, b);
        assert!(a.is_dir() && b.is_dir());
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.contains("-greeter-task-2.1-"), "{name}");
        assert!(a.starts_with(project.runs_dir()));
    }

    #[test]
    fn prune_keeps_the_newest_and_busy_folders() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "20250101T000000000-a",
            "20250102T000000000-b",
            "20250103T000000000-c",
        ] {
            crate::fs::create_dir_all(dir.path().join(name)).unwrap();
            crate::fs::write(dir.path().join(name).join("stdout.json"), "{}").unwrap();
        }
        // Everything was just written, so it is all busy now.
        assert!(
            prune_dir(dir.path(), 1, SystemTime::now())
                .unwrap()
                .is_empty()
        );
        // Two hours later the two oldest go.
        let later = SystemTime::now() + Duration::from_secs(7200);
        let removed = prune_dir(dir.path(), 1, later).unwrap();
        let names: Vec<_> = removed
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["20250101T000000000-a", "20250102T000000000-b"]);
        assert!(dir.path().join("20250103T000000000-c").is_dir());
        assert!(
            prune_dir(&dir.path().join("missing"), 1, later)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn follow_reads_a_growing_stream_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut f = Follow::new(&path);
        assert!(f.poll().unwrap().is_empty(), "not there yet");
        let stream = include_str!("../../tests/fixtures/claude_stream_json_write.jsonl");
        let (a, b) = stream.split_at(stream.len() / 2);
        crate::fs::write(&path, a).unwrap();
        let first = f.poll().unwrap().len();
        assert!(!f.activity().finished);
        assert!(f.activity().last_event_at.is_some());
        let mut file = crate::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, b.as_bytes()).unwrap();
        let second = f.poll().unwrap().len();
        assert_eq!(first + second, 5);
        assert!(f.activity().finished && f.activity().turns == 2);
        // Replaced by a shorter file: read from the start again.
        crate::fs::write(&path, stream.lines().next().unwrap().to_owned() + "\n").unwrap();
        assert_eq!(f.poll().unwrap().len(), 1);
        assert!(!f.activity().finished);
    }

    #[test]
    fn output_file_finds_each_agent_s_capture() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(output_file(dir.path()), None);
        crate::fs::write(dir.path().join("stdout.log"), "x").unwrap();
        assert_eq!(output_file(dir.path()), Some(dir.path().join("stdout.log")));
        crate::fs::write(dir.path().join("events.jsonl"), "{}").unwrap();
        assert_eq!(
            output_file(dir.path()),
            Some(dir.path().join("events.jsonl"))
        );
    }

    #[test]
    fn keep_runs_comes_from_settings() {
        let s = |text: &str| {
            crate::settings::SettingsFile::parse(Path::new("s"), text)
                .unwrap()
                .typed()
        };
        assert_eq!(
            keep_from_settings(&s(r#"{"quantumwala":{"keep_runs":7}}"#).unwrap()),
            7
        );
        assert!(s(r#"{"quantumwala":{"keep_runs":0}}"#).is_err());
        assert_eq!(keep_from_settings(&s("{}").unwrap()), DEFAULT_KEEP);
    }
}
