//! One run's log as a run page shows it: the agent's event stream read incrementally
//! (`agent::runs::Follow`) and rendered step by step (`agent::events::render`), or the
//! tail of a plain captured output for agents without an event stream.
//!
//! Owns: following one run folder's output for one viewer, bounded in memory. Must not:
//! render HTML (that is `view`) or know about the state.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crate::agent::events::{Activity, RenderOptions, render};
use crate::agent::runs::{Follow, output_file};

/// Steps kept for one viewer; older ones are counted, not kept.
const MAX_STEPS: usize = 2000;
/// How much of a plain output is shown.
const RAW_TAIL_BYTES: u64 = 64 * 1024;

/// What a step is, for styling: the one classifier `qw logs --json` uses too.
pub(crate) use crate::agent::events::LineKind as StepKind;

/// One rendered line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    /// The local time of day of its event, when the event has one.
    pub at: Option<String>,
    /// What it is.
    pub kind: StepKind,
    /// The line.
    pub text: String,
}

/// A run's log for one viewer.
#[derive(Debug)]
pub(crate) struct RunLog {
    dir: PathBuf,
    follow: Option<Follow>,
    opts: RenderOptions,
    steps: VecDeque<Step>,
    dropped: usize,
    raw: Option<String>,
    empty: Activity,
}

impl RunLog {
    /// Follow the run in `dir` (nothing is read until [`RunLog::poll`]).
    pub(crate) fn new(dir: &Path) -> RunLog {
        RunLog {
            dir: dir.to_path_buf(),
            follow: None,
            opts: RenderOptions {
                max_text_lines: 40,
                ..RenderOptions::default()
            },
            steps: VecDeque::new(),
            dropped: 0,
            raw: None,
            empty: Activity::default(),
        }
    }

    /// Read what the run wrote since the last poll; true when there is something new.
    pub(crate) fn poll(&mut self) -> bool {
        let Some(path) = output_file(&self.dir) else {
            return false;
        };
        if path.file_name().is_some_and(|n| n == "events.jsonl") {
            let follow = self.follow.get_or_insert_with(|| Follow::new(&path));
            let records = follow.poll().unwrap_or_default();
            for rec in &records {
                let at = rec
                    .timestamp
                    .as_deref()
                    .and_then(crate::state::Timestamp::parse)
                    .and_then(|t| t.as_datetime())
                    .map(|t| crate::fmt::clock(&t));
                for text in render(rec, &mut self.opts) {
                    if self.steps.len() == MAX_STEPS {
                        self.steps.pop_front();
                        self.dropped += 1;
                    }
                    self.steps.push_back(Step {
                        at: at.clone(),
                        kind: StepKind::of(&text),
                        text,
                    });
                }
            }
            !records.is_empty()
        } else {
            let raw = super::snapshot::file_tail(&path, RAW_TAIL_BYTES).map(|(t, _)| t);
            let changed = raw != self.raw;
            self.raw = raw;
            changed
        }
    }

    /// The rendered steps, oldest first.
    pub(crate) fn steps(&self) -> &VecDeque<Step> {
        &self.steps
    }

    /// Steps no longer kept.
    pub(crate) fn dropped(&self) -> usize {
        self.dropped
    }

    /// The tail of a plain output (an agent without an event stream).
    pub(crate) fn raw(&self) -> Option<&str> {
        self.raw.as_deref()
    }

    /// The agent's activity so far (empty without an event stream).
    pub(crate) fn activity(&self) -> &Activity {
        self.follow.as_ref().map_or(&self.empty, Follow::activity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = include_str!("../../tests/fixtures/claude_stream_json_write.jsonl");

    #[test]
    fn follows_a_growing_stream_step_by_step() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RunLog::new(dir.path());
        assert!(!log.poll(), "nothing written yet");
        let lines: Vec<&str> = STREAM.lines().collect();
        let path = dir.path().join("events.jsonl");
        crate::fs::write(
            &path,
            format!("{}\n{}\n{}", lines[0], lines[1], &lines[2][..30]),
        )
        .unwrap();
        assert!(log.poll());
        let kinds: Vec<StepKind> = log.steps().iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [StepKind::Start, StepKind::Tool]);
        assert!(log.steps()[1].text.contains("Write"), "{:?}", log.steps());
        assert_eq!(log.activity().turns, 1);
        crate::fs::write(&path, STREAM).unwrap();
        assert!(log.poll());
        let kinds: Vec<StepKind> = log.steps().iter().map(|s| s.kind).collect();
        assert_eq!(kinds.last(), Some(&StepKind::Result), "{:?}", log.steps());
        assert!(kinds.contains(&StepKind::ToolOk) && kinds.contains(&StepKind::Text));
        assert!(log.activity().finished);
        assert!(!log.poll(), "nothing new");
    }

    #[test]
    fn plain_output_is_shown_as_its_tail() {
        let dir = tempfile::tempdir().unwrap();
        crate::fs::write(dir.path().join("stdout.log"), "hello <world>\n").unwrap();
        let mut log = RunLog::new(dir.path());
        assert!(log.poll());
        assert_eq!(log.raw(), Some("hello <world>\n"));
        assert!(log.steps().is_empty());
        assert!(!log.poll());
    }

    #[test]
    fn an_over_long_line_is_one_step_saying_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let first = STREAM.lines().next().unwrap();
        let huge = crate::agent::events::MAX_LINE_BYTES + 1;
        crate::fs::write(&path, format!("{first}\n{}\n", "y".repeat(huge))).unwrap();
        let mut log = RunLog::new(dir.path());
        assert!(log.poll());
        let last = log.steps().back().unwrap();
        assert_eq!(last.kind, StepKind::Other);
        assert!(
            last.text
                .contains(&format!("skipped an event line of {huge} bytes")),
            "{}",
            last.text
        );
    }
}
