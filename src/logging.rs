//! Diagnostics: `tracing` to stderr (and, inside a project, to `.claude/logs/`).
//!
//! A logging failure never fails a command.

use tracing_subscriber::EnvFilter;

/// Terminal verbosity chosen by `-v`/`-q`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// `-q`: errors only.
    Quiet,
    /// Default: warnings and errors.
    Normal,
    /// `-v`: info.
    Verbose,
    /// `-vv`: debug.
    Debug,
}

/// Install the global subscriber. Safe to call once; later calls are ignored.
pub fn init(verbosity: Verbosity) {
    let level = match verbosity {
        Verbosity::Quiet => "error",
        Verbosity::Normal => "warn",
        Verbosity::Verbose => "info",
        Verbosity::Debug => "debug",
    };
    let filter = EnvFilter::try_from_env("QW_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}
