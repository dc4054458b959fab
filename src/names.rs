//! Validation of user-supplied names (specs, backups) before they touch the file system.
//!
//! A name becomes a path component, so anything that could escape its folder (`..`, `/`,
//! an absolute path, an empty string) is refused here, before any file is created.

use std::fmt;

/// What kind of name is being checked; used in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A specification name (kebab-case).
    Spec,
    /// A state backup name.
    Backup,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Spec => "spec name",
            NameKind::Backup => "backup name",
        })
    }
}

/// A name that failed validation.
#[derive(Debug, thiserror::Error)]
#[error("invalid {kind} `{name}`: {reason}")]
pub struct NameError {
    /// Which kind of name it was.
    pub kind: NameKind,
    /// The name as given (escaped for display).
    pub name: String,
    /// Why it was refused.
    pub reason: &'static str,
}

impl crate::exit::UserError for NameError {
    fn exit_code(&self) -> i32 {
        crate::exit::USAGE
    }
}

const MAX_LEN: usize = 100;

/// Check a name against `[A-Za-z0-9][A-Za-z0-9._-]{0,99}`; spec names must also be
/// kebab-case (lowercase letters, digits, single hyphens).
pub(crate) fn validate(kind: NameKind, name: &str) -> Result<(), NameError> {
    let fail = |reason| {
        Err(NameError {
            kind,
            name: name.escape_default().to_string(),
            reason,
        })
    };
    let Some(first) = name.chars().next() else {
        return fail("it is empty");
    };
    if name.len() > MAX_LEN {
        return fail("it is longer than 100 characters");
    }
    if name.contains('/') || name.contains('\\') {
        return fail("it contains a path separator");
    }
    if name.contains("..") {
        return fail("it contains `..`");
    }
    if !first.is_ascii_alphanumeric() {
        return fail("it must start with an ASCII letter or digit");
    }
    if name.ends_with('.') {
        return fail("it must not end with `.`");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return fail("only letters, digits, `.`, `_` and `-` are allowed");
    }
    if kind == NameKind::Spec {
        let kebab = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.ends_with('-')
            && !name.contains("--");
        if !kebab {
            return fail("spec names are kebab-case, e.g. `user-auth`");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["user-auth", "a", "v2-login", "x1"] {
            validate(NameKind::Spec, n).unwrap();
        }
        for n in ["state_backup_20250101_120000", "before.upgrade", "B-1"] {
            validate(NameKind::Backup, n).unwrap();
        }
    }

    #[test]
    fn refuses_traversal_and_junk() {
        for n in [
            "",
            "..",
            "../x",
            "a/b",
            "/etc/passwd",
            ".hidden",
            "-flag",
            "a b",
            "a\0b",
            "x..y",
            "é",
        ] {
            assert!(validate(NameKind::Backup, n).is_err(), "{n:?} accepted");
            assert!(validate(NameKind::Spec, n).is_err(), "{n:?} accepted");
        }
        assert!(validate(NameKind::Spec, &"a".repeat(101)).is_err());
        for n in ["User-Auth", "user_auth", "user-", "a--b", "a.b"] {
            assert!(validate(NameKind::Spec, n).is_err(), "{n:?} accepted");
        }
    }
}
