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
pub mod cancel;
pub mod cli;
pub mod consume;
pub mod dashboard;
pub mod exec;
pub mod exit;
pub mod fmt;
pub mod fs;
pub(crate) mod jsontext;
pub mod logging;
pub mod names;
pub mod project;
pub mod random;
pub mod settings;
pub mod spec;
pub mod state;
pub mod validate;
pub mod workflow;
pub mod worktree;
