//! Readers of what the runner does: the progress display and the state writes.

pub(crate) mod commit;
pub mod progress;
