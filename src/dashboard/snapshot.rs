//! What the dashboard shows, as data: the state as last read (typed, through the one read
//! model in [`crate::workflow::status`]), the live activity of running tasks, the log
//! tail — and reading them: the state file without any lock (writers replace it
//! atomically by rename, so a read sees an old or a new file, never a mix) and the tail
//! of today's log.
//!
//! Owns: the data every page renders from ([`Frame`], [`StateRead`], [`LogTail`]) and
//! the reads that fill it. Must not: render HTML (that is `view`, which depends on this
//! module and never the other way round).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Local};
use maud::Markup;

use crate::state::UnifiedState;
use crate::workflow::status::{self, Overview};

/// The outcome of reading the state file once.
#[derive(Debug, Clone)]
pub(crate) enum StateRead {
    /// The state, as the schema reads it.
    Ok(Arc<UnifiedState>),
    /// A JSON object that does not match the schema: what could be read of it, and why
    /// the rest could not.
    Partial {
        path: PathBuf,
        state: Arc<UnifiedState>,
        error: String,
    },
    /// No file (yet).
    Missing { path: PathBuf },
    /// Unreadable, not JSON, or not an object.
    Corrupt { path: PathBuf, error: String },
}

impl StateRead {
    /// The state this read gives, if any.
    pub(crate) fn state(&self) -> Option<&Arc<UnifiedState>> {
        match self {
            StateRead::Ok(s) | StateRead::Partial { state: s, .. } => Some(s),
            StateRead::Missing { .. } | StateRead::Corrupt { .. } => None,
        }
    }
}

/// The last lines of today's log, or why there are none.
#[derive(Debug, Clone)]
pub(crate) enum LogTail {
    /// Lines from `file` (a name inside `.claude/logs/`).
    Lines { file: String, lines: Vec<String> },
    /// No log file for today.
    None,
}

/// One published view of the world: what every page and event stream renders from.
#[derive(Debug)]
pub(crate) struct Frame {
    /// Increases with every publication (file change, new agent events, refresh).
    pub seq: u64,
    /// The state as last read.
    pub state: StateRead,
    /// The last state that could be read, shown (marked stale) while the file is corrupt.
    pub last_good: Option<Arc<UnifiedState>>,
    /// When the state was read; elapsed times on every page are measured to it.
    pub read_at: DateTime<Local>,
    /// The read model of the shown state (`None` when there is no state to show).
    pub overview: Option<Arc<Overview>>,
    /// The overview page's live fragment, rendered once per frame for every client.
    pub overview_html: Markup,
}

impl Frame {
    /// The state to show: the one read now, else the last good one.
    pub(crate) fn shown_state(&self) -> Option<&Arc<UnifiedState>> {
        self.state.state().or(self.last_good.as_ref())
    }
}

/// Parse state bytes: the typed schema; else, for any JSON object, what can be read of
/// it ([`status::lenient_state`]). Read as the state store reads it (a BOM, Python's
/// `NaN`/`Infinity`, numbers of any size).
pub(crate) fn parse_state(path: &Path, bytes: &[u8]) -> StateRead {
    let corrupt = |error: String| StateRead::Corrupt {
        path: path.to_path_buf(),
        error,
    };
    let text = match crate::jsontext::python_text(bytes) {
        Ok(text) => text,
        Err(why) => return corrupt(why),
    };
    let error = match serde_json::from_str::<UnifiedState>(&text) {
        Ok(s) => return StateRead::Ok(Arc::new(s)),
        Err(e) => e,
    };
    let value = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => v,
        Err(e) => {
            let original = std::str::from_utf8(bytes).map(crate::jsontext::strip_bom);
            let why = crate::jsontext::refusal(
                original.unwrap_or_default(),
                crate::jsontext::Dialect::Python,
                &e,
            );
            return corrupt(format!(
                "invalid JSON at line {} column {}",
                why.line, why.column
            ));
        }
    };
    match status::lenient_state(&value) {
        Ok((state, problems)) => {
            let left_out = if problems.is_empty() {
                String::new()
            } else {
                let shown: Vec<String> =
                    problems.iter().take(5).map(|p| format!("`{p}`")).collect();
                let more = problems.len().saturating_sub(5);
                format!(
                    "; left out: {}{}",
                    shown.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                )
            };
            StateRead::Partial {
                path: path.to_path_buf(),
                state: Arc::new(state),
                error: format!("it does not match the state schema ({error}){left_out}"),
            }
        }
        Err(e) => corrupt(e),
    }
}

/// Read the state file's bytes; `Ok(None)` when it does not exist.
pub(crate) fn read_state_bytes(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match crate::state::read_state_file(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// How many log lines the overview shows.
const LOG_LINES: usize = 40;
/// How much of the end of the log file is read to find them.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// The last `max_bytes` of a file as text (lossy), with the first, cut line dropped when
/// the file is longer; None when it cannot be read.
pub(crate) fn file_tail(path: &Path, max_bytes: u64) -> Option<(String, bool)> {
    let mut f = crate::fs::open_regular(path).ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let start = meta.len().saturating_sub(max_bytes);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = Vec::new();
    f.take(max_bytes).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    if start > 0 {
        let rest = text.split_once('\n').map_or("", |(_, r)| r).to_owned();
        Some((rest, true))
    } else {
        Some((text, false))
    }
}

/// The last lines of today's log in `logs_dir`: the newest file whose name carries today's
/// date (`YYYY-MM-DD` or `YYYYMMDD`), read from its last 64 KiB only.
pub(crate) fn log_tail(logs_dir: &Path, today: DateTime<Local>) -> LogTail {
    let dashed = today.format("%Y-%m-%d").to_string();
    let plain = today.format("%Y%m%d").to_string();
    let Ok(entries) = crate::fs::read_dir(logs_dir) else {
        return LogTail::None;
    };
    let newest = entries
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.contains(&dashed) || n.contains(&plain)
        })
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            m.is_file().then(|| (m.modified().ok(), e.path()))
        })
        .max();
    let Some((_, path)) = newest else {
        return LogTail::None;
    };
    let Some((text, _)) = file_tail(&path, LOG_TAIL_BYTES) else {
        return LogTail::None;
    };
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(LOG_LINES);
    LogTail::Lines {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        lines: lines[from..].iter().map(|l| (*l).to_owned()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_partial_and_corrupt_reads() {
        let p = Path::new("s.json");
        assert!(matches!(parse_state(p, b"{}"), StateRead::Ok(_)));
        assert!(matches!(
            parse_state(p, b"[1]"),
            StateRead::Corrupt { ref error, .. } if error.contains("not a JSON object")
        ));
        // As the state store reads it: a BOM, Python's NaN/Infinity, a count beyond u64.
        match parse_state(
            p,
            "\u{feff}{\"a\": NaN, \"b\": [Infinity], \"commands\": {\"total_executed\": 12345678901234567890123}}"
                .as_bytes(),
        ) {
            StateRead::Ok(s) => assert_eq!(
                s.commands.total_executed.to_string(),
                "12345678901234567890123"
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_state(p, b"{\"a\": \"\xff\"}"),
            StateRead::Corrupt { .. }
        ));
        match parse_state(p, b"{\n  \"a\": ,\n}") {
            StateRead::Corrupt { error, .. } => assert!(error.contains("line 2"), "{error}"),
            other => panic!("{other:?}"),
        }
        let partial =
            br#"{"specifications": {"s": {"tasks": {"1": {"status": "failed", "attempts": "x"}}}}}"#;
        match parse_state(p, partial) {
            StateRead::Partial { state, error, .. } => {
                assert_eq!(
                    state.specifications["s"].tasks["1"].status.as_str(),
                    "failed"
                );
                assert!(
                    error.contains("`specifications.s.tasks.1.attempts`"),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn log_tail_reads_todays_file_only_and_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let now = Local::now();
        let today = dir
            .path()
            .join(format!("qw-{}.log", now.format("%Y-%m-%d")));
        let body: String = (0..100).map(|i| format!("line {i}\n")).collect();
        crate::fs::write(&today, body).unwrap();
        crate::fs::write(dir.path().join("qw-1999-01-01.log"), "old\n").unwrap();
        match log_tail(dir.path(), now) {
            LogTail::Lines { lines, file } => {
                assert_eq!(lines.len(), LOG_LINES);
                assert_eq!(lines.last().unwrap(), "line 99");
                assert!(file.starts_with("qw-"));
            }
            LogTail::None => panic!("no tail"),
        }
        assert!(matches!(
            log_tail(&dir.path().join("missing"), now),
            LogTail::None
        ));
    }

    #[test]
    fn file_tail_drops_the_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.log");
        crate::fs::write(&f, "aaaa\nbbbb\ncccc\n").unwrap();
        assert_eq!(
            file_tail(&f, 100),
            Some(("aaaa\nbbbb\ncccc\n".into(), false))
        );
        assert_eq!(file_tail(&f, 8), Some(("cccc\n".into(), true)));
        assert_eq!(file_tail(&dir.path().join("none"), 8), None);
    }
}
