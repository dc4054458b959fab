//! Integration tests: one binary (links once), one module per capability.

// Tests may panic on setup failures and use std::fs directly.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod agent;
mod consume;
mod devmode;
mod admission;
mod dashboard;
mod exec;
mod init;
mod spec;
mod state;
mod support;
mod validate;
