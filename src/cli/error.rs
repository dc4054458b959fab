//! The CLI's error: a message, hints and an exit code, made from any library error
//! through [`UserError`] (one `From`), so `main.rs` prints every error the same way.

use crate::exit::{self, UserError};

/// A failure to report to the user: message, optional hints, exit code.
#[derive(Debug)]
pub struct CliError {
    /// The process exit code.
    pub code: i32,
    /// One line naming what failed and where.
    pub message: String,
    /// Suggestions for the next step, printed as `hint:` lines.
    pub hints: Vec<String>,
}

impl CliError {
    /// Bad input or usage (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: exit::USAGE,
            message: message.into(),
            hints: Vec::new(),
        }
    }
    /// The work failed (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        CliError {
            code: exit::FAILED,
            message: message.into(),
            hints: Vec::new(),
        }
    }
    /// Any exit code.
    pub fn with_code(code: i32, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
            hints: Vec::new(),
        }
    }
    /// Stdout was closed by its reader (`qw … | head -1`): stop, exit 0, print nothing.
    pub fn stdout_closed() -> Self {
        CliError {
            code: exit::SUCCESS,
            message: String::new(),
            hints: Vec::new(),
        }
    }
    /// True for [`CliError::stdout_closed`]: `main` exits 0 without a message.
    pub fn is_stdout_closed(&self) -> bool {
        self.code == exit::SUCCESS
    }
    /// Add a `hint:` line.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// The `qw: error:` line and its `  hint:` lines as `main` prints them: each one line,
    /// control characters escaped (`\n`, `\u{1b}`), since a message quotes outside text —
    /// a path, a spec or task name, a command — that must neither break the line nor
    /// drive the terminal.
    pub fn lines(&self) -> Vec<String> {
        std::iter::once(format!(
            "qw: error: {}",
            crate::fmt::escaped_line(&self.message)
        ))
        .chain(
            self.hints
                .iter()
                .map(|h| format!("  hint: {}", crate::fmt::escaped_line(h))),
        )
        .collect()
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl CliError {
    /// The CLI error of a library error kept by reference (the `From` takes it by value).
    pub fn from_user(e: &dyn UserError) -> Self {
        CliError {
            code: e.exit_code(),
            message: e.to_string(),
            hints: e.hints(),
        }
    }
}

impl<E: UserError> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::from_user(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_lines_escape_control_characters_of_quoted_text() {
        let e = CliError::failed("cannot read `/p/a\nb\u{1b}[2J/tasks.md`: \0")
            .hint("edit `x\ry`\tthen run it");
        let lines = e.lines();
        assert_eq!(
            lines,
            vec![
                "qw: error: cannot read `/p/a\\nb\\u{1b}[2J/tasks.md`: \\u{0}".to_owned(),
                "  hint: edit `x\\ry`\\tthen run it".to_owned(),
            ]
        );
        assert!(lines.iter().all(|l| !l.chars().any(char::is_control)));
    }
    use crate::state::StateError;

    #[test]
    fn a_library_error_brings_its_exit_code_and_hints() {
        let e = CliError::from(StateError::BackupNotFound {
            name: "x".into(),
            dir: "/p/.claude/backups/state".into(),
        });
        assert_eq!(e.code, exit::USAGE);
        assert!(e.message.contains("no backup `x`"), "{}", e.message);
        assert_eq!(
            e.hints,
            ["see the available backups with `qw state-backup --list`"]
        );
        let io = CliError::from(StateError::Io(std::io::Error::other("disk full")));
        assert_eq!(io.code, exit::FAILED);
        assert_eq!(io.hints.len(), 1);
    }
}
