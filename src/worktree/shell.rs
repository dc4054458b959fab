//! Words of the commands qw prints for the user to run (`git stash store -m …`,
//! `git switch …`, `git restore --source=…`): one quoting rule for all of them.
//! Must not: run anything (qw itself runs git as argv, never through a shell).

use std::borrow::Cow;

/// `s` as one word for a POSIX shell, bash or zsh, as a printed command holds it:
/// unchanged when every byte is one no shell gives a meaning to (letters, digits and
/// `-_./@+:,`, and `=` after the first byte: zsh expands a leading `=cmd`), else in
/// single quotes (a `'` inside as `'\''`). Names may hold `$(…)`, backquotes, spaces,
/// newlines, `!` (bash's history expansion), `{a,b}`, `*` or `~`; none of them is
/// expanded, whatever shell the user pastes the command into.
pub fn quote(s: &str) -> Cow<'_, str> {
    let plain = |(i, b): (usize, u8)| {
        b.is_ascii_alphanumeric() || b"-_./@+:,".contains(&b) || (b == b'=' && i > 0)
    };
    if !s.is_empty() && s.bytes().enumerate().all(plain) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("'{}'", s.replace('\'', r"'\''")))
    }
}

/// `qw workflow-continue <spec>`, the spec quoted: every printed way on names its spec
/// (two workflows can run in one repository).
pub(crate) fn continue_cmd(spec: &str) -> String {
    format!("qw workflow-continue {}", quote(spec))
}

/// [`continue_cmd`] of the spec a task branch (`qw/<spec>/<id>`) belongs to.
pub(crate) fn continue_of(branch: &str) -> String {
    super::parse_branch(branch).map_or_else(
        || "qw workflow-continue".to_owned(),
        |(spec, _)| continue_cmd(spec),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names as git allows them and stash messages as users write them.
    const HOSTILE: &[&str] = &[
        "",
        "main",
        "qw/demo/1",
        "refs/heads/x@y+z:w,v",
        "a=b",
        "=ls",
        "-n",
        "it's",
        "''",
        "a b\tc",
        "x$(touch${IFS}PWNED)",
        "`touch PWNED`",
        "a\nb\n",
        "!!",
        "{a,b}",
        "*",
        "~",
        "~root",
        "a\\b",
        "\"q\"",
        "#c",
        "é ü",
        ":(top,literal)src/a b.txt",
        "On main: it's $HOME `x`",
    ];

    #[test]
    fn plain_words_are_left_as_they_are_and_others_single_quoted() {
        assert_eq!(quote("qw/demo/1"), "qw/demo/1");
        assert_eq!(quote("refs/heads/x@y+z:w,v"), "refs/heads/x@y+z:w,v");
        assert!(matches!(quote("main"), Cow::Borrowed(_)));
        assert_eq!(quote("a=b"), "a=b");
        assert_eq!(quote("=ls"), "'=ls'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("!!"), "'!!'");
        assert_eq!(quote("{a,b}"), "'{a,b}'");
        assert_eq!(quote("é"), "'é'");
    }

    /// Each word, quoted and printed back by `sh`, comes back byte for byte, and runs
    /// nothing (no file appears).
    #[test]
    fn quoted_words_come_back_through_sh_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        for s in HOSTILE {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf '%s' {}", quote(s)))
                .current_dir(dir.path())
                .env("HOME", dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{s:?}: {out:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), *s, "{s:?}");
        }
        let left: Vec<_> = crate::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert!(left.is_empty(), "a quoted word ran code: {left:?}");
    }
}
