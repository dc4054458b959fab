//! Documented exit codes, as constants (nextest's `exit_codes.rs` pattern).
//!
//! `qw exec` follows GNU `timeout`; every other command uses 0/1/2/3.

/// The command did what was asked.
pub const SUCCESS: i32 = 0;
/// The work failed: a task or workflow failed, or a check found a problem.
pub const FAILED: i32 = 1;
/// Bad input or usage: unknown flag, invalid name, corrupt settings the command will not touch.
pub const USAGE: i32 = 2;
/// The workflow is paused (usage limit reached or budget exhausted) and can be resumed.
pub const PAUSED: i32 = 3;

/// `qw exec`: the command timed out (or stalled).
pub const EXEC_TIMED_OUT: i32 = 124;
/// `qw exec`: qw itself failed or was misused (never collides with the child's own 2).
pub const EXEC_FAILED: i32 = 125;
/// `qw exec`: the program was found but could not be executed.
pub const EXEC_NOT_EXECUTABLE: i32 = 126;
/// `qw exec`: the program was not found.
pub const EXEC_NOT_FOUND: i32 = 127;
/// `qw exec`: the child died of signal N → 128 + N.
pub const EXEC_SIGNAL_BASE: i32 = 128;

/// An error a user may see: the documented exit code it means and what to do next.
///
/// Every user-facing error type of the library implements it, and `cli::CliError` is
/// made from any of them (one `From`), so the code and the hints travel with the type
/// instead of being pasted into message strings or guessed at the call site. The
/// message (`Display`) says what failed and where; hints say what to do about it.
pub trait UserError: std::error::Error {
    /// [`USAGE`] for bad input (a name, a flag, a file the user must fix), [`FAILED`]
    /// when the work or the system failed.
    fn exit_code(&self) -> i32;

    /// Next steps, printed after the message as `hint:` lines.
    fn hints(&self) -> Vec<String> {
        Vec::new()
    }
}

/// [`USAGE`] when the error is the user's input to fix, else [`FAILED`]: the
/// [`UserError::exit_code`] of errors that know which they are (`is_usage`).
pub fn usage_or_failed(usage: bool) -> i32 {
    if usage { USAGE } else { FAILED }
}

/// The message followed by its hints on one line (`message; hint; hint`), for places
/// that keep an error as text: the state's evidence, the report.
pub fn with_hints(e: &dyn UserError) -> String {
    std::iter::once(e.to_string())
        .chain(e.hints())
        .collect::<Vec<_>>()
        .join("; ")
}
