//! Data on stdout, written so that a reader who stops early (`qw … | head -1`) ends the
//! command quietly instead of making it panic.
//!
//! `println!` panics when stdout is a closed pipe (Rust ignores SIGPIPE, so the write
//! fails with `EPIPE`). These helpers return [`CliError::stdout_closed`] instead, which
//! `main` turns into a silent exit 0, as ripgrep does: the reader has what it wanted.
//! Other write errors (a full disk behind a redirect) are real failures and say so.

use std::fmt::Display;
use std::io::{self, Write};

use super::CliError;

/// Write `text` and a newline to stdout.
pub(crate) fn line(text: impl Display) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}").map_err(write_error)
}

/// Write `bytes` to stdout as they are, then flush.
pub(crate) fn bytes(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(write_error)
}

/// Map a failed stdout write: a closed pipe is a quiet stop, anything else an error.
pub(crate) fn write_error(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CliError::stdout_closed()
    } else {
        CliError::failed(format!("cannot write to stdout: {e}"))
            .hint("check where stdout is redirected (a full disk?)")
    }
}

/// `println!` through [`line`](fn@line): `outln!("{x}")?` in a function returning `CliError`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::out::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_is_a_quiet_stop_and_other_errors_fail() {
        let closed = write_error(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(closed.is_stdout_closed());
        let full = write_error(io::Error::other("No space left on device"));
        assert!(!full.is_stdout_closed());
        assert_eq!(full.code, crate::exit::FAILED);
        assert!(full.message.contains("No space left"), "{}", full.message);
    }
}
