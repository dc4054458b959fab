//! Readers of the workflow's events (nextest's `reporter/`): the runner emits
//! [`Event`]s, and every reader here consumes the same stream.
//!
//! Owns: the [`EventSink`] trait, the fan-out [`Events`], the one [`Recorder`] that
//! turns events into state changes (`unified_state.json`, ticks in `tasks.md`), the
//! progress display, and the execution trace in `.claude/logs/` ([`Trace`]).
//! Must not: decide anything about the run — readers never stop, retry or schedule
//! work — nor read the state to find out what happened (the event says it).
//!
//! Adding a reader (a trace log, a live-activity view) is one `impl EventSink` and one
//! entry in the list given to [`Events::new`] in `runner::Workflow::run_with`.

use super::WorkflowError;
use super::events::{Event, EventKind};

pub(crate) mod commit;
pub(crate) mod progress;
mod recorder;
mod trace;

pub(crate) use recorder::Recorder;
pub(crate) use trace::Trace;

/// A reader of workflow events.
///
/// Called on the thread that emitted the event (task threads emit concurrently), after
/// the readers before it in the list. An `Err` stops the workflow: only a failure that
/// must stop it may return one (the recorder's state write). A display or log writer
/// deals with its own failures (a closed pipe, a full disk) and returns `Ok`.
pub(super) trait EventSink: Sync {
    /// Take one event.
    fn event(&self, event: &Event<'_>) -> Result<(), WorkflowError>;
}

/// A closure is a reader: `&|e: &Event<'_>| …`.
impl<F> EventSink for F
where
    F: Fn(&Event<'_>) + Sync,
{
    fn event(&self, event: &Event<'_>) -> Result<(), WorkflowError> {
        self(event);
        Ok(())
    }
}

/// The readers of one run, in order: the recorder first (so a reader that looks at the
/// state sees the event's change on disk), then the others.
pub(crate) struct Events<'a> {
    sinks: Vec<&'a dyn EventSink>,
}

impl<'a> Events<'a> {
    /// Events go to `sinks`, in this order.
    pub(crate) fn new(sinks: Vec<&'a dyn EventSink>) -> Events<'a> {
        Events { sinks }
    }

    /// Stamp `kind` with the time and hand it to every reader; stops at the first error.
    pub(crate) fn emit(&self, kind: EventKind<'_>) -> Result<(), WorkflowError> {
        self.event(&Event::now(kind))
    }

    /// Emit a [`EventKind::Note`].
    pub(crate) fn note(&self, message: impl Into<String>) -> Result<(), WorkflowError> {
        self.emit(EventKind::Note {
            message: message.into(),
        })
    }
}

impl EventSink for Events<'_> {
    fn event(&self, event: &Event<'_>) -> Result<(), WorkflowError> {
        self.sinks.iter().try_for_each(|s| s.event(event))
    }
}
