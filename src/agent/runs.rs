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
    // Never through a link at `.claude/runs` (refused, naming it), even one made after
    // the command checked.
    let dir = crate::fs::NoFollowDir::create(&project.claude_dir(), Path::new("runs"))?;
    unique_dir(&dir, &format!("{}-{}", clean(spec), clean(label)))
}

/// A fresh folder `<stamp>-<label>-<hex>` made inside the opened `dir` (never through a
/// link put in place of `dir` meanwhile); its path as the user knows it.
pub(crate) fn unique_dir(dir: &crate::fs::NoFollowDir, label: &str) -> io::Result<PathBuf> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%3f");
    for _ in 0..16 {
        let hex = crate::random::hex(3)?;
        let name = format!("{stamp}-{label}-{hex}");
        match dir.create_dir(std::ffi::OsStr::new(&name)) {
            Ok(path) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "could not create a unique run folder in `{}`",
        dir.shown().display()
    )))
}

/// A spec name or label as it appears in a run folder name.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
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

/// How much of a stream [`Follow::poll`] and [`super::captured::Captured::read`] read at once.
pub const CHUNK: usize = 1 << 20;

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
    /// is no error (the agent has not started writing). Reads in [`CHUNK`]s up to the
    /// length the file had when the poll began, so memory stays bounded whatever the
    /// file holds (a line over [`super::events::MAX_LINE_BYTES`] is skipped as it is
    /// read, see [`super::events::EventReader`]).
    pub fn poll(&mut self) -> io::Result<Vec<super::events::Record>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = match crate::fs::open_regular(&self.path) {
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
        let mut left = meta.len().saturating_sub(self.reader.offset());
        let mut buf = vec![0u8; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
        let mut out = Vec::new();
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            left -= n as u64;
            out.extend(self.reader.feed(&buf[..n], observed.as_deref()));
        }
        Ok(out)
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

/// What a run is for, from its folder name's label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RunUnit {
    /// A task of `tasks.md` (label `task-<id>`).
    Task(String),
    /// A document or validation phase (label `requirements`, `design`, `tasks`,
    /// `validation`, …).
    Phase(String),
}

/// A run folder of one spec, as found on disk: what the workflow's timeline is drawn
/// from. Times are file modification times, read once.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFolder {
    /// The folder name (the run id).
    pub id: String,
    /// What ran.
    pub unit: RunUnit,
    /// The attempt (`-a<N>` in the label); 0 when the name has none.
    pub attempt: u32,
    /// When the folder was made (its name's stamp): right after admission.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When the prompt was written: the agent starts right after.
    pub prompt_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The last write to the captured stdout (the agent's last output).
    pub output_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The last write to `verify.log`: the `_Verify:_` command's end.
    pub verify_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Whether `id` can name a run folder: one plain path component of the characters run
/// ids are made of, so a run id read from the state or a URL never leaves `.claude/runs/`.
pub fn is_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// The folder of run `id`, if `id` is a valid run id ([`is_run_id`]).
pub fn run_dir(project: &Project, id: &str) -> Option<PathBuf> {
    is_run_id(id).then(|| project.runs_dir().join(id))
}

/// Parse a run folder name made by [`create`] for `spec`: `(unit, attempt, created_at)`.
/// None when the name is not one of `spec`'s runs.
pub fn parse_run_name(
    name: &str,
    spec: &str,
) -> Option<(RunUnit, u32, chrono::DateTime<chrono::Utc>)> {
    use chrono::TimeZone;
    let (stamp, rest) = name.split_at_checked(18)?;
    let created = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%3f").ok()?;
    let rest = rest.strip_prefix('-')?.strip_prefix(&clean(spec))?;
    let rest = rest.strip_prefix('-')?;
    let (label, hex) = rest.rsplit_once('-')?;
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (label, attempt) = match label.rsplit_once("-a") {
        Some((l, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (l, n.parse().ok()?)
        }
        _ => (label, 0),
    };
    let unit = match label.strip_prefix("task-") {
        Some(id) if !id.is_empty() => RunUnit::Task(id.to_owned()),
        Some(_) => return None,
        None if !label.is_empty() && !label.contains('-') => RunUnit::Phase(label.to_owned()),
        None => return None,
    };
    Some((unit, attempt, chrono::Utc.from_utc_datetime(&created)))
}

/// Every run folder of `spec`, oldest first. A missing `.claude/runs/` is no error;
/// folders whose names do not parse are skipped.
pub fn list(project: &Project, spec: &str) -> io::Result<Vec<RunFolder>> {
    let entries = match crate::fs::read_dir(project.runs_dir()) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mtime = |p: &Path| -> Option<chrono::DateTime<chrono::Utc>> {
        let m = crate::fs::symlink_metadata(p).ok()?;
        m.is_file().then(|| m.modified().ok().map(Into::into))?
    };
    let mut out: Vec<RunFolder> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (unit, attempt, created_at) = parse_run_name(&name, spec)?;
            let dir = e.path();
            if !dir.is_dir() {
                return None;
            }
            Some(RunFolder {
                id: name,
                unit,
                attempt,
                created_at,
                prompt_at: mtime(&dir.join("prompt.md")),
                output_at: OUTPUT_NAMES.iter().find_map(|n| mtime(&dir.join(n))),
                verify_at: mtime(&dir.join("verify.log")),
            })
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// The activity of a run so far, read once from its captured stdout (a partial last
/// line is left for later; a stream that is not claude's gives an empty activity).
/// None when the run id is invalid or the run wrote nothing yet.
pub fn read_activity(project: &Project, id: &str) -> Option<super::events::Activity> {
    let dir = run_dir(project, id)?;
    let mut follow = Follow::new(output_file(&dir)?);
    follow.poll().ok()?;
    Some(follow.activity().clone())
}

/// `quantumwala.keep_runs` from the settings (checked to be ≥ 1), else [`DEFAULT_KEEP`].
pub fn keep_from_settings(settings: &QwSettings) -> usize {
    settings.quantumwala.keep_runs.unwrap_or(DEFAULT_KEEP)
}

/// Remove all but the newest `keep` run folders (skipping busy ones); returns what was
/// removed. A missing `.claude/runs/` is not an error; one that is a symbolic link (or
/// below one) is, naming it: nothing is deleted through a link. Only entries named as
/// [`create`] names them ([`is_run_folder_name`]) that are real directories are ever
/// removed; anything else there is left alone and named in one warning.
pub fn prune(project: &Project, keep: usize) -> io::Result<Vec<PathBuf>> {
    prune_dir(
        &project.claude_dir(),
        Path::new("runs"),
        keep,
        SystemTime::now(),
    )
}

/// Whether `name` is a run folder's name as [`create`] makes it, for any spec:
/// `<YYYYmmddTHHMMSSmmm>-<spec>-<label>-<6 hex>`.
pub fn is_run_folder_name(name: &str) -> bool {
    let Some((stamp, rest)) = name.split_at_checked(18) else {
        return false;
    };
    if chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%3f").is_err() {
        return false;
    }
    let Some((middle, hex)) = rest.strip_prefix('-').and_then(|r| r.rsplit_once('-')) else {
        return false;
    };
    let Some((spec, label)) = middle.split_once('-') else {
        return false;
    };
    is_run_id(name)
        && !spec.is_empty()
        && !label.is_empty()
        && hex.len() == 6
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

fn prune_dir(base: &Path, rel: &Path, keep: usize, now: SystemTime) -> io::Result<Vec<PathBuf>> {
    let Some(dir) = crate::fs::NoFollowDir::open(base, rel)? else {
        return Ok(Vec::new());
    };
    let mut runs = Vec::new();
    let mut foreign = Vec::new();
    for entry in dir.entries()? {
        let name = entry.name.to_string_lossy().into_owned();
        // qw's own files beside the run folders (its locks, a run's record of its checks).
        let own = Project::is_own_runs_file(&name);
        if is_run_folder_name(&name) && entry.file_type.is_dir() {
            runs.push(entry.name);
        } else if !(own && entry.file_type.is_file()) {
            foreign.push(name);
        }
    }
    runs.sort();
    let excess = runs.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for run in runs.into_iter().take(excess) {
        if busy(&dir.join(&run), now) {
            continue;
        }
        dir.remove_dir_all(&run)?;
        removed.push(dir.shown().join(run));
    }
    if !foreign.is_empty() {
        foreign.sort();
        tracing::warn!(
            "left {} entr{} in `{}` alone (not qw run folders, which are the only ones qw prunes): {}",
            foreign.len(),
            if foreign.len() == 1 { "y" } else { "ies" },
            dir.shown().display(),
            crate::fmt::escaped_line(&foreign.join(", "))
        );
    }
    Ok(removed)
}

/// Was the folder or anything directly in it modified within [`BUSY_WINDOW`]?
fn busy(dir: &Path, now: SystemTime) -> bool {
    let recent = |p: &Path| {
        std::fs::symlink_metadata(p)
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
        let runs = dir.path().join("runs");
        let names = [
            "20250101T000000000-a-design-a1-000001",
            "20250102T000000000-b-task-1-a1-00000a",
            "20250103T000000000-c-tasks-a2-abcdef",
        ];
        for name in names {
            crate::fs::create_dir_all(runs.join(name)).unwrap();
            crate::fs::write(runs.join(name).join("stdout.json"), "{}").unwrap();
        }
        // Not qw's: never removed, however old.
        crate::fs::create_dir_all(runs.join("20240101T000000000-notes")).unwrap();
        crate::fs::create_dir_all(runs.join("alpha")).unwrap();
        crate::fs::write(runs.join(".demo.workflow.lock"), "").unwrap();
        crate::fs::write(runs.join(".state-restore.lock"), "").unwrap();
        crate::fs::write(runs.join(".demo.checks.json"), "{}").unwrap();
        let rel = Path::new("runs");
        // Everything was just written, so it is all busy now.
        assert!(
            prune_dir(dir.path(), rel, 1, SystemTime::now())
                .unwrap()
                .is_empty()
        );
        // Two hours later the two oldest go.
        let later = SystemTime::now() + Duration::from_secs(7200);
        let removed = prune_dir(dir.path(), rel, 1, later).unwrap();
        let got: Vec<_> = removed
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(got, names[..2]);
        assert!(runs.join(names[2]).is_dir());
        assert!(runs.join("alpha").is_dir() && runs.join("20240101T000000000-notes").is_dir());
        assert!(
            prune_dir(dir.path(), Path::new("missing"), 1, later)
                .unwrap()
                .is_empty()
        );
        // A linked runs folder is refused, its target untouched.
        let linked = dir.path().join("linked");
        crate::fs::create_dir_all(&linked).unwrap();
        std::os::unix::fs::symlink(&runs, linked.join("runs")).unwrap();
        let e = prune_dir(&linked, rel, 0, later).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(runs.join(names[2]).is_dir());
        // Nor is a run folder made through it (a link planted after the command's check).
        let project = Project::at(dir.path().join("p"));
        crate::fs::create_dir_all(project.claude_dir()).unwrap();
        std::os::unix::fs::symlink(&runs, project.runs_dir()).unwrap();
        let e = create(&project, "demo", "design-a1").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(crate::fs::read_dir(&runs).unwrap().count(), 6);
    }

    #[test]
    fn run_folder_names_are_recognised_for_any_spec() {
        assert!(is_run_folder_name(
            "20260101T100203004-greeter-task-2.1-a3-0a1b2c"
        ));
        assert!(is_run_folder_name(
            "20260101T100203004-my-spec-design-a1-ffffff"
        ));
        for bad in [
            "alpha",
            "20260101T100203004-greeter-0a1b2c",
            "20260101T100203004-greeter-task-1-a1-zzzzzz",
            "2026010XT100203004-greeter-task-1-a1-0a1b2c",
            "20260101T100203004-greeter-task-1-a1-0a1b2c/..",
        ] {
            assert!(!is_run_folder_name(bad), "{bad}");
        }
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

    #[test]
    fn run_names_parse_back_for_their_spec_only() {
        let u = |id: &str| RunUnit::Task(id.into());
        let (unit, attempt, at) =
            parse_run_name("20260101T100203004-greeter-task-2.1-a3-0a1b2c", "greeter").unwrap();
        assert_eq!((unit, attempt), (u("2.1"), 3));
        assert_eq!(at.to_rfc3339(), "2026-01-01T10:02:03.004+00:00");
        let (unit, attempt, _) =
            parse_run_name("20260101T100203004-my-spec-design-a1-ffffff", "my-spec").unwrap();
        assert_eq!((unit, attempt), (RunUnit::Phase("design".into()), 1));
        // Older names without an attempt.
        let (unit, attempt, _) =
            parse_run_name("20260101T100203004-greeter-task-7-abcdef", "greeter").unwrap();
        assert_eq!((unit, attempt), (u("7"), 0));
        for (name, spec) in [
            ("20260101T100203004-greeter-task-2.1-a3-0a1b2c", "greet"),
            ("20260101T100203004-greeter-task-2.1-a3-0a1b2c", "other"),
            ("20260101T100203004-greeter-task-2.1-a3-zzzzzz", "greeter"),
            ("2026010XT100203004-greeter-task-2.1-a3-0a1b2c", "greeter"),
            ("20260101T100203004-greeter-task--a3-0a1b2c", "greeter"),
            ("20260101T100203004-greeter-some-thing-a1-0a1b2c", "greeter"),
            ("short", "greeter"),
        ] {
            assert_eq!(parse_run_name(name, spec), None, "{name} for {spec}");
        }
        assert!(is_run_id("20260101T100203004-greeter-task-2.1-a3-0a1b2c"));
        for bad in ["", "..", ".hidden", "a/b", "a b", "ü"] {
            assert!(!is_run_id(bad), "{bad}");
        }
    }

    #[test]
    fn list_finds_a_spec_s_runs_with_their_file_times() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::at(dir.path());
        let a = create(&project, "greeter", "task-1-a1").unwrap();
        let b = create(&project, "greeter", "design-a1").unwrap();
        create(&project, "other", "task-1-a1").unwrap();
        crate::fs::write(a.join("prompt.md"), "p").unwrap();
        crate::fs::write(a.join("events.jsonl"), "{}\n").unwrap();
        crate::fs::write(a.join("verify.log"), "ok").unwrap();
        let runs = list(&project, "greeter").unwrap();
        assert_eq!(runs.len(), 2);
        let ra = runs.iter().find(|r| a.ends_with(&r.id)).unwrap();
        assert_eq!(ra.unit, RunUnit::Task("1".into()));
        assert!(ra.prompt_at.is_some() && ra.output_at.is_some() && ra.verify_at.is_some());
        let rb = runs.iter().find(|r| b.ends_with(&r.id)).unwrap();
        assert_eq!(rb.unit, RunUnit::Phase("design".into()));
        assert_eq!((rb.prompt_at, rb.output_at), (None, None));
        assert!(
            list(&Project::at(dir.path().join("none")), "greeter")
                .unwrap()
                .is_empty()
        );
        assert_eq!(read_activity(&project, "../etc"), None);
        let act = read_activity(&project, &ra.id).unwrap();
        assert_eq!(act.events, 1);
    }

    #[test]
    fn reading_a_huge_line_holds_none_of_it() {
        use crate::agent::events::{Event, MAX_LINE_BYTES};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let init = r#"{"type":"system","subtype":"init","session_id":"s"}"#;
        let huge = MAX_LINE_BYTES + 3 * CHUNK + 17;
        let mut bytes = format!("{init}\n").into_bytes();
        bytes.extend(std::iter::repeat_n(b'x', huge));
        crate::fs::write(&path, &bytes).unwrap();
        // Followed while the huge line is still being written: not held, not noted yet.
        let mut follow = Follow::new(&path);
        let recs = follow.poll().unwrap();
        assert_eq!(recs.len(), 1);
        assert!(follow.reader.pending().is_empty());
        assert_eq!(follow.activity().session_id.as_deref(), Some("s"));
        // It ends; the next line is read, the huge one noted with its size.
        bytes.extend(format!("\n{init}\n").as_bytes());
        crate::fs::write(&path, &bytes).unwrap();
        let recs = follow.poll().unwrap();
        assert_eq!(
            recs.len(),
            2,
            "{:?}",
            recs.iter().map(|r| &r.kind).collect::<Vec<_>>()
        );
        assert_eq!(recs[0].events, [Event::Oversized { bytes: huge as u64 }]);
        assert_eq!(follow.activity().oversized, 1);

        // The classifier's read leaves it out.
        let out = super::super::captured::Captured::read(&path).unwrap();
        assert_eq!(out.oversized(), 1);
        assert_eq!(out.whole(), Some(format!("{init}\n{init}\n").as_bytes()));
        // A stream cut in the middle of a normal last line keeps it (no newline added).
        crate::fs::write(&path, format!("{init}\n{{\"type\":\"res")).unwrap();
        let out = super::super::captured::Captured::read(&path).unwrap();
        assert_eq!(
            (out.whole(), out.oversized()),
            (Some(format!("{init}\n{{\"type\":\"res").as_bytes()), 0)
        );
        let none = super::super::captured::Captured::read(&dir.path().join("none")).unwrap();
        assert_eq!((none.whole(), none.oversized()), (Some(&b""[..]), 0));
    }
}
