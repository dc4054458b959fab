//! Reading what the dashboard shows: the state file (without any lock — writers replace it
//! atomically by rename, so a read sees an old or a new file, never a mix) and the tail of
//! today's log.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Local};
use serde_json::Value;

use super::view::LogTail;

/// The outcome of reading the state file once.
#[derive(Debug, Clone)]
pub(crate) enum StateRead {
    /// A JSON object.
    Ok(Arc<Value>),
    /// No file (yet).
    Missing { path: PathBuf },
    /// Unreadable, not JSON, or not an object.
    Corrupt { path: PathBuf, error: String },
}

/// One published view of the world: what every page and event stream renders from.
#[derive(Debug)]
pub(crate) struct Frame {
    /// Increases with every publication (file change or periodic refresh).
    pub seq: u64,
    /// The state as last read.
    pub state: StateRead,
    /// The last state that parsed, shown (marked stale) while the file is corrupt.
    pub last_good: Option<Arc<Value>>,
    /// When the state was read.
    pub read_at: DateTime<Local>,
    /// The overview's live fragment, rendered once per frame for every client.
    pub overview: String,
}

/// Parse state bytes leniently: any JSON object is accepted, missing keys are fine. Read as
/// the state store reads it (a BOM, Python's `NaN`/`Infinity`, numbers of any size); such
/// tokens show as the nearest number, or as text (`NaN`).
pub(crate) fn parse_state(path: &Path, bytes: &[u8]) -> StateRead {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return StateRead::Corrupt {
            path: path.to_path_buf(),
            error: "not UTF-8 text".to_owned(),
        };
    };
    let text = crate::jsontext::tag_numbers(
        crate::jsontext::strip_bom(text),
        crate::jsontext::Dialect::Python,
    );
    match serde_json::from_str::<Value>(&text) {
        Ok(mut v @ Value::Object(_)) => {
            crate::jsontext::untag_value(&mut v);
            StateRead::Ok(Arc::new(v))
        }
        Ok(_) => StateRead::Corrupt {
            path: path.to_path_buf(),
            error: "the top level is not a JSON object".to_owned(),
        },
        Err(e) => StateRead::Corrupt {
            path: path.to_path_buf(),
            error: format!("invalid JSON at line {} column {}", e.line(), e.column()),
        },
    }
}

/// Read the state file's bytes; `Ok(None)` when it does not exist.
pub(crate) fn read_state_bytes(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match crate::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// How many log lines the overview shows.
const LOG_LINES: usize = 40;
/// How much of the end of the log file is read to find them.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

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
    let Ok(mut f) = crate::fs::File::open(&path) else {
        return LogTail::None;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return LogTail::None;
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return LogTail::None;
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        // The first line was cut by the seek.
        lines.remove(0);
    }
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
    fn lenient_parse_reports_line_and_column() {
        let p = Path::new("s.json");
        assert!(matches!(parse_state(p, b"{}"), StateRead::Ok(_)));
        assert!(matches!(
            parse_state(p, b"[1]"),
            StateRead::Corrupt { ref error, .. } if error.contains("not a JSON object")
        ));
        match parse_state(
            p,
            "\u{feff}{\"a\": NaN, \"b\": [Infinity, 12345678901234567890123]}".as_bytes(),
        ) {
            StateRead::Ok(v) => assert_eq!(
                *v,
                serde_json::json!({"a": "NaN", "b": ["Infinity", 1.2345678901234568e22]})
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
}
