//! Quantumwala (`qw`): a dependable runner for spec-driven AI coding agent workflows.
//!
//! The binary in `src/main.rs` only parses arguments and maps errors to exit codes;
//! everything else lives here so it can be tested without spawning `qw`.
//! See `docs/ARCHITECTURE.md` for the data flow between the modules.

/// `eprintln!` that never panics: a closed stderr (`qw … 2>&1 | head`) must not abort
/// work in progress half way, so diagnostics that cannot be written are dropped.
#[macro_export]
macro_rules! diag {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod admission;
pub mod agent;
pub(crate) mod cancel;
pub mod cli;
pub(crate) mod consume;
pub(crate) mod dashboard;
pub mod exec;
pub mod exit;
pub(crate) mod fmt;
pub mod fs;
pub(crate) mod jsontext;
pub mod logging;
pub(crate) mod names;
pub mod project;
pub(crate) mod random;
pub(crate) mod settings;
pub(crate) mod spec;
pub mod state;
pub(crate) mod validate;
pub(crate) mod workflow;
pub mod worktree;
