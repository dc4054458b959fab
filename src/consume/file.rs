//! The suggestion file: read bounded, judged as text, removed only when unchanged.

use std::path::Path;

use chrono::{DateTime, FixedOffset};

use super::ConsumeError;
use crate::fs::Bounded;

/// The most `consume` reads of a suggestion: a command line, not a document.
pub(crate) const MAX_SUGGESTION_BYTES: usize = 4096;

/// How much of a suggestion messages and `next_command.failed.txt` quote.
const QUOTE_BYTES: usize = 200;

/// `text` escaped for one line, cut after 200 bytes (saying how long it was).
pub(crate) fn quote(text: &str) -> String {
    if text.len() <= QUOTE_BYTES {
        return text.escape_default().to_string();
    }
    let mut end = QUOTE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", text[..end].escape_default(), text.len())
}

/// What is at the suggestion's path.
pub(super) enum Read {
    /// Nothing (any more).
    Gone,
    /// Something no `qw suggest` writes (a FIFO, a directory, a symlink): why.
    NotAFile(std::io::Error),
    /// A regular file, read up to [`MAX_SUGGESTION_BYTES`].
    Seen(Bounded),
}

/// Read the suggestion: only a regular file, never more than a suggestion can be (a
/// FIFO there must not hang us, a symlink to /dev/zero must not eat the memory).
pub(super) fn read(path: &Path) -> Result<Read, ConsumeError> {
    match crate::fs::read_regular(path, MAX_SUGGESTION_BYTES) {
        Ok(b) => Ok(Read::Seen(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Read::Gone),
        Err(e) if crate::fs::is_refused(&e) => Ok(Read::NotAFile(e)),
        Err(e) => Err(e.into()),
    }
}

/// The suggestion's text, trimmed; or, when it is too long or not UTF-8, what to show of
/// it and why it is refused.
pub(super) fn text_of(seen: &Bounded) -> Result<String, (String, String)> {
    match seen {
        Bounded::TooBig { len, head } => Err((
            quote(&String::from_utf8_lossy(head)),
            format!(
                "the suggestion is {len} bytes, over the {MAX_SUGGESTION_BYTES}-byte limit of a command"
            ),
        )),
        Bounded::Whole(bytes) => match std::str::from_utf8(bytes) {
            // A byte-order mark (an editor's, or Python's `utf-8-sig`) is not part of the
            // command, as the state reader skips it too.
            Ok(t) => Ok(crate::jsontext::strip_bom(t).trim().to_owned()),
            Err(_) => Err((
                quote(&String::from_utf8_lossy(bytes)),
                "the suggestion is not valid UTF-8 text".to_owned(),
            )),
        },
    }
}

/// One record of `next_command.failed.txt`: the command, then why and when.
pub(super) fn failure_record(text: &str, reason: &str, now: &DateTime<FixedOffset>) -> String {
    // One line each, escaped: the text is the agent's, and the file is read by people.
    format!(
        "{}\n# failed at {}: {}\n",
        crate::fmt::escaped_line(text),
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        crate::fmt::escaped_line(reason)
    )
}

/// Delete the suggestion file unless someone wrote a new suggestion meanwhile (what is
/// there now differs from what was read: `qw suggest` replaces the file by rename).
pub(super) fn remove_if_unchanged(path: &Path, original: &Bounded) -> Result<(), ConsumeError> {
    match crate::fs::read_regular(path, MAX_SUGGESTION_BYTES) {
        Ok(now) if &now == original => Ok(crate::fs::remove_file(path)?),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        // Replaced by something that is not a file: the next round deals with it.
        Err(e) if crate::fs::is_refused(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Remove what is at `path` without following it: a FIFO, socket or symlink is unlinked,
/// a directory removed only when empty (else an error naming it).
pub(super) fn remove_entry(path: &Path) -> Result<(), ConsumeError> {
    let is_dir = crate::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    let removed = if is_dir {
        fs_err::remove_dir(path)
    } else {
        crate::fs::remove_file(path)
    };
    match removed {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ConsumeError::NotRemovable {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_one_line_and_cut_on_a_character() {
        assert_eq!(quote("qw status"), "qw status");
        assert_eq!(quote("a\nb\t\u{1b}[2J"), "a\\nb\\t\\u{1b}[2J");
        let long = "é".repeat(150); // 300 bytes
        let q = quote(&long);
        assert!(q.ends_with("… (300 bytes)"), "{q}");
        assert!(q.starts_with(&"\\u{e9}".repeat(100)), "{q}");
    }

    #[test]
    fn text_is_trimmed_and_long_or_binary_suggestions_are_refused_with_what_to_show() {
        let whole = |b: &[u8]| Bounded::Whole(b.to_vec());
        assert_eq!(text_of(&whole(b"  qw status \n")).unwrap(), "qw status");
        let (shown, why) = text_of(&whole(b"qw \xff\n")).unwrap_err();
        assert_eq!(shown, "qw \u{fffd}\\n".replace('\u{fffd}', "\\u{fffd}"));
        assert_eq!(why, "the suggestion is not valid UTF-8 text");
        let big = Bounded::TooBig {
            len: 5000,
            head: b"qw".to_vec(),
        };
        let (shown, why) = text_of(&big).unwrap_err();
        assert_eq!(shown, "qw");
        assert_eq!(
            why,
            "the suggestion is 5000 bytes, over the 4096-byte limit of a command"
        );
    }

    #[test]
    fn a_failure_record_is_the_command_then_a_comment_with_when_and_why() {
        let at = DateTime::parse_from_rfc3339("2026-12-02T01:02:03+01:00").unwrap();
        assert_eq!(
            failure_record("qw x", "refused: no", &at),
            "qw x\n# failed at 2026-12-02T01:02:03+01:00: refused: no\n"
        );
    }

    #[test]
    fn a_suggestion_replaced_meanwhile_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("next_command.txt");
        std::fs::write(&path, "qw status\n").unwrap();
        let Read::Seen(seen) = read(&path).unwrap() else {
            panic!("a regular file")
        };
        std::fs::write(&path, "qw spec-list\n").unwrap();
        remove_if_unchanged(&path, &seen).unwrap();
        assert!(path.exists(), "a new suggestion is not deleted");
        let Read::Seen(seen) = read(&path).unwrap() else {
            panic!("a regular file")
        };
        remove_if_unchanged(&path, &seen).unwrap();
        assert!(!path.exists());
        assert!(matches!(read(&path).unwrap(), Read::Gone));
        remove_if_unchanged(&path, &seen).unwrap();
    }

    #[test]
    fn entries_that_are_not_files_are_removed_without_following_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("next_command.txt");
        let target = dir.path().join("precious-fifo");
        nix::unistd::mkfifo(&target, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(matches!(read(&path).unwrap(), Read::NotAFile(_)));
        remove_entry(&path).unwrap();
        assert!(
            !path.exists() && target.exists(),
            "the link went, not its target"
        );
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("x"), "").unwrap();
        let err = remove_entry(&path).unwrap_err();
        assert_eq!(crate::exit::UserError::exit_code(&err), crate::exit::USAGE);
        assert!(err.to_string().contains("remove it yourself"), "{err}");
        std::fs::remove_file(path.join("x")).unwrap();
        remove_entry(&path).unwrap();
        assert!(!path.exists(), "an empty directory is removed");
    }
}
