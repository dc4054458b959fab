//! A run's captured stdout as the outcome classifier reads it, in bounded memory
//! whatever the agent printed.
//!
//! Owns: reading the stdout file once in [`runs::CHUNK`]s through [`BoundedLines`] (a
//! line over [`MAX_LINE_BYTES`] is left out as it streams past), keeping its last whole
//! lines ([`Captured::tail`], at least [`TAIL_BYTES`] of them) and, of the lines before
//! the tail, only what the classifier asks of them: the last JSON object, the last
//! `result` object, whether anything was not blank. Facts that need every line (the
//! event count, refusal messages, session, tokens) are read again from the file line by
//! line ([`Captured::for_each_line`]), still bounded. Output up to twice the tail's size
//! is held whole, and judged exactly as before.
//! Must not: judge anything (that is [`super::outcome`]).

use std::borrow::Cow;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::events::{self, BoundedLines, Line, MAX_LINE_BYTES};
use super::outcome::{Parsed, parse_last_object};
use super::runs;

/// The tail kept of a long output: at least this many bytes of its last whole lines (and
/// at most this plus one line). Output up to twice this is held whole.
pub const TAIL_BYTES: usize = MAX_LINE_BYTES;

/// The longest last line read back from the file when it was over [`MAX_LINE_BYTES`]
/// (a `result` line carrying a long answer): twice the longest document qw reads.
pub const READ_BACK_BYTES: usize = 2 * crate::spec::MAX_DOCUMENT_BYTES;

/// An agent's stdout for the classifier: all of it when short, else its last lines plus
/// what the lines before them said.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    tail: Vec<u8>,
    /// The least kept of a long output ([`TAIL_BYTES`] but in tests).
    keep: usize,
    len: usize,
    oversized: u64,
    before: Option<Before>,
    /// The file read (none for bytes held in memory).
    path: Option<PathBuf>,
    /// Bytes of the file passed so far, left-out lines included.
    pos: u64,
    /// The last line left out (offset in the file, length), while no line holding more
    /// than blanks came after it.
    last_oversized: Option<(u64, u64)>,
    /// That line read back at the end, when it is a `result` object of at most
    /// [`READ_BACK_BYTES`]: the stream's last word, whatever its size.
    read_back: Option<Map<String, Value>>,
}

/// What the lines before the tail said (an output longer than the tail).
#[derive(Debug, Clone)]
struct Before {
    /// The file, read again for facts that need every line.
    path: PathBuf,
    /// The last line that starts (after blanks) with `{`, and its parse when it is an
    /// object.
    last_object: Option<Map<String, Value>>,
    /// The last one-line object whose `type` is `result`.
    last_result: Option<Map<String, Value>>,
    /// Some line held more than blanks.
    nonblank: bool,
}

impl From<&[u8]> for Captured {
    /// An output held whole in memory (tests, short outputs).
    fn from(bytes: &[u8]) -> Captured {
        Captured {
            tail: bytes.to_vec(),
            keep: TAIL_BYTES,
            len: bytes.len(),
            oversized: 0,
            before: None,
            ..Captured::default()
        }
    }
}

impl<const N: usize> From<&[u8; N]> for Captured {
    fn from(bytes: &[u8; N]) -> Captured {
        Captured::from(&bytes[..])
    }
}

impl From<&str> for Captured {
    fn from(text: &str) -> Captured {
        Captured::from(text.as_bytes())
    }
}

impl Captured {
    /// Read the captured stdout at `path` (a missing file reads as empty). Lines over
    /// [`MAX_LINE_BYTES`] are left out (counted in [`Captured::oversized`]).
    pub fn read(path: &Path) -> io::Result<Captured> {
        Captured::read_keeping(path, TAIL_BYTES)
    }

    /// [`Captured::read`] keeping a tail of at least `keep` bytes (tests).
    fn read_keeping(path: &Path, keep: usize) -> io::Result<Captured> {
        let mut out = Captured {
            keep,
            path: Some(path.to_path_buf()),
            ..Captured::default()
        };
        let open_tail = match read_lines(path, |line| out.take(line, path)) {
            Ok(open) => open,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Captured::default()),
            Err(e) => return Err(e),
        };
        if open_tail && out.tail.last() == Some(&b'\n') {
            // A last line without its newline stays so (a stream cut mid-line).
            out.tail.pop();
            out.len -= 1;
        }
        out.read_back_last_line();
        Ok(out)
    }

    /// Read the last line back from the file when it was left out for its size and is
    /// not too long to hold: if it is a `result` object it is no longer counted as left
    /// out, and [`Captured::last_object`] answers it.
    fn read_back_last_line(&mut self) {
        use std::io::{Read, Seek, SeekFrom};
        let (Some(path), Some((offset, len))) = (&self.path, self.last_oversized) else {
            return;
        };
        if usize::try_from(len).map_or(true, |l| l > READ_BACK_BYTES) {
            return;
        }
        let Ok(mut file) = crate::fs::open_regular(path) else {
            return;
        };
        let mut line = Vec::new();
        if file.seek(SeekFrom::Start(offset)).is_err()
            || (&mut file).take(len).read_to_end(&mut line).is_err()
        {
            return;
        }
        if let Parsed::Object(map) = parse_last_object(&line)
            && is_result(&map)
        {
            self.read_back = Some(map);
            self.oversized -= 1;
            self.last_oversized = None;
        }
    }

    /// The file and size of the last line, when it was left out for its size and not
    /// read back (over [`READ_BACK_BYTES`], or not a `result`) and nothing but blanks
    /// came after it.
    pub fn unread_last_line(&self) -> Option<(&Path, u64)> {
        Some((self.path.as_deref()?, self.last_oversized?.1))
    }

    /// The file this output was read from (none for bytes held in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn take(&mut self, line: Line<'_>, path: &Path) {
        match line {
            Line::Whole(l) => {
                self.pos += l.len() as u64 + 1;
                if l.iter().any(|b| !b.is_ascii_whitespace()) {
                    self.last_oversized = None;
                }
                self.tail.extend_from_slice(l);
                self.tail.push(b'\n');
                self.len += l.len() + 1;
                if self.tail.len() > 2 * self.keep {
                    self.shed(path);
                }
            }
            Line::Oversized(n) => {
                self.oversized += 1;
                self.last_oversized = Some((self.pos, n));
                self.pos += n + 1;
            }
        }
    }

    /// Move the oldest lines out of the tail, keeping at least `keep` bytes, and note
    /// what they said.
    fn shed(&mut self, path: &Path) {
        let excess = self.tail.len() - self.keep;
        // After the last newline within the excess: whole lines go, at least `keep` stay.
        let Some(nl) = self.tail[..excess].iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let cut = nl + 1;
        let before = self.before.get_or_insert_with(|| Before {
            path: path.to_path_buf(),
            last_object: None,
            last_result: None,
            nonblank: false,
        });
        let mut last_object_line: Option<&[u8]> = None;
        for line in self.tail[..nl].split(|&b| b == b'\n') {
            let start = line.iter().position(|b| !b.is_ascii_whitespace());
            let Some(start) = start else { continue };
            before.nonblank = true;
            if line[start] != b'{' {
                continue;
            }
            last_object_line = Some(line);
            if line.windows(8).any(|w| w == b"\"result\"")
                && let Parsed::Object(map) = parse_last_object(line)
                && is_result(&map)
            {
                before.last_result = Some(map);
            }
        }
        if let Some(line) = last_object_line {
            // The last object line of this batch; parsed once, not every line.
            before.last_object = match parse_last_object(line) {
                Parsed::Object(map) => Some(map),
                _ => before.last_object.take(),
            };
        }
        self.tail.drain(..cut);
    }

    /// The last whole lines (all of the output when [`Captured::is_whole`]).
    pub fn tail(&self) -> &[u8] {
        &self.tail
    }

    /// Bytes of the output, lines over [`MAX_LINE_BYTES`] not counted.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there was no output (or only lines left out).
    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.read_back.is_none()
    }

    /// Lines over [`MAX_LINE_BYTES`] left out.
    pub fn oversized(&self) -> u64 {
        self.oversized
    }

    /// The whole output, when it is held whole (short enough).
    pub fn whole(&self) -> Option<&[u8]> {
        self.before.is_none().then_some(self.tail.as_slice())
    }

    /// True when [`Captured::tail`] is all of it.
    pub fn is_whole(&self) -> bool {
        self.before.is_none()
    }

    /// [`parse_last_object`] of the whole output: of the tail, completed by what the
    /// lines before it held (a `result` object before the tail wins over a later
    /// non-result one; with no object in the tail, the last one before it).
    pub fn last_object(&self) -> Parsed {
        // A `result` line read back from the file came after every other line.
        if let Some(map) = &self.read_back {
            return Parsed::Object(map.clone());
        }
        let parsed = parse_last_object(&self.tail);
        let Some(before) = &self.before else {
            return parsed;
        };
        match parsed {
            Parsed::Truncated => Parsed::Truncated,
            Parsed::Object(map) if is_result(&map) => Parsed::Object(map),
            Parsed::Object(map) => Parsed::Object(before.last_result.clone().unwrap_or(map)),
            Parsed::Empty | Parsed::NotJson => {
                match before.last_result.clone().or(before.last_object.clone()) {
                    Some(map) => Parsed::Object(map),
                    None if parsed == Parsed::Empty && !before.nonblank => Parsed::Empty,
                    None => Parsed::NotJson,
                }
            }
        }
    }

    /// Every line of the output in order (without newlines; lines over
    /// [`MAX_LINE_BYTES`] left out), as `split(b'\n')` of the whole would give them. A
    /// long output is read again from its file, in bounded memory; if it cannot be, the
    /// tail's lines.
    pub fn for_each_line(&self, mut each: impl FnMut(&[u8])) {
        let Some(before) = &self.before else {
            self.tail.split(|&b| b == b'\n').for_each(each);
            return;
        };
        if reread(&before.path, &mut each).is_err() {
            self.tail.split(|&b| b == b'\n').for_each(each);
        }
    }

    /// The activity of the whole stream ([`events::read_activity`] of it).
    pub fn activity(&self) -> events::Activity {
        if self.before.is_none() {
            return events::read_activity(&self.tail);
        }
        let mut reader = events::EventReader::new();
        self.for_each_line(|line| {
            reader.feed(line, None);
            reader.feed(b"\n", None);
        });
        reader.finish(None);
        reader.activity().clone()
    }
}

/// What a [`super::outcome::ClassifyInput`]'s stdout can be: a [`Captured`] output
/// (what a run reads), or bytes held whole (`Vec<u8>`, a byte string).
pub trait AsCaptured: std::fmt::Debug {
    /// The output as the classifier reads it.
    fn as_captured(&self) -> Cow<'_, Captured>;
}

impl AsCaptured for Captured {
    fn as_captured(&self) -> Cow<'_, Captured> {
        Cow::Borrowed(self)
    }
}

impl AsCaptured for [u8] {
    fn as_captured(&self) -> Cow<'_, Captured> {
        Cow::Owned(Captured::from(self))
    }
}

impl AsCaptured for Vec<u8> {
    fn as_captured(&self) -> Cow<'_, Captured> {
        Cow::Owned(Captured::from(self.as_slice()))
    }
}

impl<const N: usize> AsCaptured for [u8; N] {
    fn as_captured(&self) -> Cow<'_, Captured> {
        Cow::Owned(Captured::from(&self[..]))
    }
}

impl AsCaptured for str {
    fn as_captured(&self) -> Cow<'_, Captured> {
        Cow::Owned(Captured::from(self))
    }
}

fn is_result(map: &Map<String, Value>) -> bool {
    map.get("type").and_then(Value::as_str) == Some("result")
}

/// Read `path` again, line by line, leaving out lines over [`MAX_LINE_BYTES`].
fn reread(path: &Path, each: &mut impl FnMut(&[u8])) -> io::Result<()> {
    read_lines(path, |line| {
        if let Line::Whole(l) = line {
            each(l);
        }
    })
    .map(drop)
}

/// Read the regular file at `path` in [`runs::CHUNK`]s, handing `take` each line
/// ([`BoundedLines`]: one over [`MAX_LINE_BYTES`] as [`Line::Oversized`]), in bounded
/// memory. `true` when the file ends inside a line that was taken whole (no newline after
/// it).
fn read_lines(path: &Path, mut take: impl FnMut(Line<'_>)) -> io::Result<bool> {
    use std::io::Read;
    let mut file = crate::fs::open_regular(path)?;
    let mut lines = BoundedLines::default();
    let mut buf = vec![0u8; runs::CHUNK];
    let mut ends_open = false;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        ends_open = buf[n - 1] != b'\n';
        lines.push(&buf[..n], &mut take);
    }
    let open_tail = ends_open && !lines.skipping();
    lines.finish(&mut take);
    Ok(open_tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &[u8]) -> PathBuf {
        let p = dir.join("events.jsonl");
        crate::fs::write(&p, text).unwrap();
        p
    }

    const EVENT: &str = r#"{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"hello hello hello"}]}}"#;

    #[test]
    fn a_long_stream_keeps_a_bounded_tail_and_judges_like_the_whole() {
        let dir = tempfile::tempdir().unwrap();
        const KEEP: usize = 4096;
        let read =
            |text: &str| Captured::read_keeping(&write(dir.path(), text.as_bytes()), KEEP).unwrap();
        let n = 3 * KEEP / EVENT.len();
        let mut text = String::from(
            "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s1\",\"cwd\":\"/p\"}\n",
        );
        for _ in 0..n {
            text.push_str(EVENT);
            text.push('\n');
        }
        let result = r#"{"type":"result","subtype":"success","is_error":false,"result":"ok"}"#;
        text.push_str(result);
        text.push('\n');
        let c = read(&text);
        assert!(!c.is_whole());
        assert!(c.tail().len() <= 2 * KEEP, "{}", c.tail().len());
        assert!(c.tail().len() >= KEEP);
        assert_eq!(c.len(), text.len());
        let whole = Captured::from(text.as_bytes());
        assert_eq!(c.last_object(), whole.last_object());
        let mut lines = (0, 0);
        c.for_each_line(|_| lines.0 += 1);
        whole.for_each_line(|_| lines.1 += 1);
        assert_eq!(
            lines.0 + 1,
            lines.1,
            "split of the whole ends with an empty piece"
        );
        assert_eq!(c.activity().session_id.as_deref(), Some("s1"));
        assert_eq!(c.activity().turns, whole.activity().turns);

        // A result before the tail wins over later non-result objects; an output that
        // ends inside an object is truncated; a tail with no object falls back.
        let mut early = String::from(result);
        early.push('\n');
        for _ in 0..n {
            early.push_str(EVENT);
            early.push('\n');
        }
        let c = read(&early);
        assert_eq!(
            c.last_object(),
            Captured::from(early.as_bytes()).last_object()
        );
        assert!(matches!(c.last_object(), Parsed::Object(m) if m["result"] == "ok"));
        let mut cut = early.clone();
        cut.push_str("{\"type\":\"res");
        let c = read(&cut);
        assert_eq!(c.last_object(), Parsed::Truncated);
        let mut plain = early.clone();
        for _ in 0..n {
            plain.push_str("plain text line of a log, not json at all, long enough\n");
        }
        let c = read(&plain);
        assert!(!c.is_whole());
        assert_eq!(
            c.last_object(),
            Captured::from(plain.as_bytes()).last_object()
        );
    }

    #[test]
    fn a_short_output_is_held_whole_and_an_open_last_line_stays_open() {
        let dir = tempfile::tempdir().unwrap();
        let c = Captured::read(&write(dir.path(), b"a\nb")).unwrap();
        assert_eq!(c.whole(), Some(&b"a\nb"[..]));
        assert_eq!(c.len(), 3);
        let c = Captured::read(&dir.path().join("none")).unwrap();
        assert!(c.is_empty() && c.is_whole());
        assert_eq!(c.last_object(), Parsed::Empty);
    }
}
