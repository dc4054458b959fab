//! Resource admission (CONTRACT §4): agents start only when the machine can take them, and
//! at most `max_concurrent` run at once across every `qw` process of the user.
//!
//! Owns: the probes ([`probes`]), the pure policy ([`policy::decide`]) and the
//! machine-wide slots with their first-come-first-served queue ([`slots`]).
//! Must not: read or write the unified state — callers record what was admitted, using
//! [`probes::Probes::system_stats_json`] for the snapshot.

use std::fmt;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::Serialize;

pub(crate) mod policy;
pub mod probes;
pub(crate) mod slots;

pub use policy::{Decision, Limit, Limits, Refusal, decide, load_figure};
pub use probes::Probes;
pub use slots::{SlotGuard, SlotHolder, Slots};

use crate::settings::QwSettings;

/// How much CPU a request is expected to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    /// Light work (formatting, a quick check).
    Low,
    /// An ordinary agent task.
    Normal,
    /// Heavy work (builds, test suites): also held back while load is above
    /// `high_impact_load`.
    High,
}

impl Impact {
    /// Every impact class, lightest first.
    pub const ALL: [Impact; 3] = [Impact::Low, Impact::Normal, Impact::High];

    /// Estimated share of one CPU; above [`policy::HIGH_IMPACT_CPU`] (0.3) is high impact.
    pub fn estimated_cpu(self) -> f64 {
        match self {
            Impact::Low => 0.1,
            Impact::Normal => 0.25,
            Impact::High => 0.5,
        }
    }

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Impact::Low => "low",
            Impact::Normal => "normal",
            Impact::High => "high",
        }
    }
}

impl fmt::Display for Impact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An impact name that is not `low`, `normal` or `high`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid impact `{0}`: expected low, normal or high")]
pub struct ImpactError(pub String);

impl FromStr for Impact {
    type Err = ImpactError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Impact::Low),
            "normal" => Ok(Impact::Normal),
            "high" => Ok(Impact::High),
            other => Err(ImpactError(other.to_owned())),
        }
    }
}

/// The settings key that bounds a wait unless a flag replaces it.
pub const ACQUIRE_TIMEOUT_SETTING: &str = "resource_limits.acquire_timeout_s";

/// How long a wait may last, and what set that (named in the waiting line and the error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiveUp {
    /// Give up after this long.
    pub after: Duration,
    /// The setting or flag it comes from (`resource_limits.acquire_timeout_s`,
    /// `--admit-timeout`).
    pub setting: &'static str,
    /// Time spent waiting only behind this process's own tasks does not count (a
    /// workflow's task waits its turn behind its siblings: on a busy machine one task
    /// runs at a time, and the next must not give up meanwhile). The slots this
    /// process holds are named by their notes, "of this workflow".
    pub untimed_behind_own: bool,
}

impl From<Duration> for GiveUp {
    /// A wait bounded by `resource_limits.acquire_timeout_s`.
    fn from(after: Duration) -> GiveUp {
        GiveUp {
            after,
            setting: ACQUIRE_TIMEOUT_SETTING,
            untimed_behind_own: false,
        }
    }
}

/// Why a request is still waiting: its place in the queue, the limits that block (its
/// own when it is first in line, else the first waiter's, when known), how many qw tasks
/// are running and how long until it gives up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Waiting {
    /// Live waiters that arrived earlier.
    pub ahead: usize,
    /// The pids of those earlier waiters, first in line first (where known), but this
    /// workflow's own (counted in `own_ahead`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ahead_pids: Vec<i32>,
    /// Earlier waiters that are this workflow's own tasks (see [`GiveUp::untimed_behind_own`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub own_ahead: usize,
    /// The pids of the processes holding the slots in use (where known), but this
    /// workflow's own tasks (in `own`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<i32>,
    /// The slots this workflow's own tasks hold, each named as its holder said
    /// (`task 5`; see [`GiveUp::untimed_behind_own`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub own: Vec<String>,
    /// It waits only behind this workflow's own tasks: its turn comes when they end,
    /// and the wait has no time limit meanwhile.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub untimed: bool,
    /// Those of the holders that are stopped (SIGSTOP, Ctrl-Z): they keep their slot
    /// until resumed or ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stopped: Vec<i32>,
    /// `max_concurrent`: how many slots there are.
    pub max_concurrent: usize,
    /// Every limit holding the queue back (empty when not known yet).
    pub blocked_by: Vec<Refusal>,
    /// qw tasks admitted and running (slots in use across the user's `qw` processes).
    pub running: usize,
    /// Time left before giving up.
    #[serde(serialize_with = "policy_secs")]
    pub give_up_in: Duration,
    /// What set the time limit.
    pub timeout_setting: &'static str,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn policy_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Waiting {
    /// What it waits for and how many qw tasks run, without the time left:
    /// `load 1.72/CPU > 0.85 (max_load); 2 qw tasks running`.
    ///
    /// Queued behind other requests, it says so first, with their pids and what the
    /// first of them waits for, then who holds the slots:
    /// `queued behind 1 waiting request (qw pid 4242), which waits for memory …; no slot
    /// in use (0 of 8)`.
    pub fn reason(&self) -> String {
        if self.ahead > 0 {
            return self.queued_reason();
        }
        let what = if self.blocked_by.is_empty() {
            "a free slot".to_owned()
        } else {
            policy::describe(&self.blocked_by)
        };
        let running = match self.running {
            0 => "no qw task running".to_owned(),
            1 => "1 qw task running".to_owned(),
            n => format!("{n} qw tasks running"),
        };
        format!("{what}; {running}{}", self.held_by())
    }

    /// `, held by qw pid 7 (stopped)`, `, held by task 5 of this workflow`: who holds
    /// the slots in use; empty when unknown.
    fn held_by(&self) -> String {
        if self.running == 0 || (self.holders.is_empty() && self.own.is_empty()) {
            return String::new();
        }
        let mut parts = Vec::new();
        if !self.own.is_empty() {
            parts.push(format!("{} of this workflow", and_list(&self.own)));
        }
        if !self.holders.is_empty() {
            let mut held = format!("qw {}", pid_list(&self.holders));
            let stopped: Vec<i32> = self
                .holders
                .iter()
                .copied()
                .filter(|p| self.stopped.contains(p))
                .collect();
            match stopped.as_slice() {
                [] => {}
                _ if self.holders.len() == 1 => held.push_str(" (stopped)"),
                some => held.push_str(&format!(" ({} stopped)", pid_list(some))),
            }
            parts.push(held);
        }
        format!(", held by {}", parts.join(" and "))
    }

    fn queued_reason(&self) -> String {
        let n = self.ahead;
        let requests = if n == 1 { "request" } else { "requests" };
        let mut who = Vec::new();
        if self.own_ahead > 0 {
            who.push(format!("{} of this workflow", self.own_ahead));
        }
        if !self.ahead_pids.is_empty() {
            who.push(format!("qw {}", pid_list(&self.ahead_pids)));
        }
        let pids = if who.is_empty() {
            String::new()
        } else {
            format!(" ({})", who.join(", "))
        };
        let first = if n == 1 { "which" } else { "the first" };
        let waits = if self.blocked_by.is_empty() {
            format!("{first} is being admitted")
        } else {
            format!("{first} waits for {}", policy::describe(&self.blocked_by))
        };
        let slots = match self.running {
            0 => format!("no slot in use (0 of {})", self.max_concurrent),
            k => format!(
                "{k} of {} slot(s) in use{}",
                self.max_concurrent,
                self.held_by()
            ),
        };
        format!("queued behind {n} waiting {requests}{pids}, {waits}; {slots}")
    }
}

/// `task 5`, `task 5 and task 6`, `task 5, task 6, task 7 and 2 more`.
fn and_list(names: &[String]) -> String {
    const SHOWN: usize = 3;
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        _ if names.len() <= SHOWN => format!(
            "{} and {}",
            names[..names.len() - 1].join(", "),
            names[names.len() - 1]
        ),
        _ => format!(
            "{} and {} more",
            names[..SHOWN].join(", "),
            names.len() - SHOWN
        ),
    }
}

/// `pid 12` or `pids 12, 13, 14 and 2 more` (at most three named); empty for none.
fn pid_list(pids: &[i32]) -> String {
    const SHOWN: usize = 3;
    match pids {
        [] => String::new(),
        [one] => format!("pid {one}"),
        _ => {
            let named: Vec<String> = pids.iter().take(SHOWN).map(i32::to_string).collect();
            let more = pids.len().saturating_sub(SHOWN);
            if more > 0 {
                format!("pids {} and {more} more", named.join(", "))
            } else {
                format!("pids {}", named.join(", "))
            }
        }
    }
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.untimed {
            return write!(
                f,
                "{}; it waits its turn behind this workflow's own task(s), with no time limit",
                self.reason()
            );
        }
        write!(
            f,
            "{}; giving up in {} ({})",
            self.reason(),
            human_duration(self.give_up_in),
            self.timeout_setting
        )
    }
}

/// `4m58s`, `59s`, `1h2m`, `0.4s`: a time left, rounded for people.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 10_000 {
        let tenths = ms.div_ceil(100);
        return if tenths.is_multiple_of(10) {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        };
    }
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

/// When to show the waiting line: the first time, again when what blocks changes (at
/// most every [`WaitNotice::MIN_GAP`]: a load that hovers at its limit must not flood the
/// output), and every [`WaitNotice::EVERY`] regardless, so the time left stays current.
#[derive(Debug, Default)]
pub struct WaitNotice {
    last: Option<(Instant, Vec<Limit>, bool)>,
}

impl WaitNotice {
    /// Shortest gap between two lines.
    pub const MIN_GAP: Duration = Duration::from_secs(5);
    /// Longest gap between two lines.
    pub const EVERY: Duration = Duration::from_secs(30);

    /// Whether `w` should be shown now.
    pub fn due(&mut self, w: &Waiting) -> bool {
        self.due_at(w, Instant::now())
    }

    /// [`WaitNotice::due`] at a given instant (tests).
    pub fn due_at(&mut self, w: &Waiting, now: Instant) -> bool {
        let key = (
            w.blocked_by.iter().map(|r| r.limit).collect::<Vec<_>>(),
            w.ahead > 0,
        );
        let due = match &self.last {
            None => true,
            Some((at, limits, queued)) => {
                let gap = now.saturating_duration_since(*at);
                gap >= Self::EVERY || (gap >= Self::MIN_GAP && (limits, queued) != (&key.0, &key.1))
            }
        };
        if due {
            self.last = Some((now, key.0, key.1));
        }
        due
    }
}

/// Failures of admission.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// The wait exceeded the timeout.
    #[error("gave up waiting for admission after {:.1}s ({}): {}", waited.as_secs_f64(), waiting.timeout_setting, waiting.reason())]
    TimedOut {
        /// How long it waited.
        waited: Duration,
        /// Why it was still waiting (boxed: it lists pids).
        waiting: Box<Waiting>,
    },
    /// The caller stopped the wait.
    #[error("stopped waiting for admission")]
    Cancelled,
    /// The runtime directory cannot be used.
    #[error("cannot use runtime directory `{}`: {reason}", path.display())]
    RuntimeDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Reading or writing a slot or queue file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Admission for one project: its limits (from its settings) and the user's slots.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The limits in force.
    pub limits: Limits,
    /// The settings file they were read from (it may not exist: then all defaults).
    pub settings_path: PathBuf,
    /// The machine-wide slots.
    pub slots: Slots,
    /// What set `limits.acquire_timeout` ([`ACQUIRE_TIMEOUT_SETTING`] unless a flag did).
    pub timeout_setting: &'static str,
    /// See [`GiveUp::untimed_behind_own`]: set by a workflow, whose tasks are this
    /// process's slots.
    pub untimed_behind_own: bool,
}

/// The environment variable an admitted task's programs get: the index of the slot its
/// workflow holds for it. A `qw exec --admit` inside the task whose ancestor holds that
/// slot runs under it ([`Admission::held_for_this_process`]) instead of waiting for its
/// own workflow.
pub const SLOT_ENV: &str = "QW_ADMISSION_SLOT";

impl Admission {
    /// The slot named by [`SLOT_ENV`] when an ancestor of this process holds it: this
    /// process runs inside a task already admitted (an agent's own `qw exec --admit`),
    /// so it is counted as that task. A value that names no slot, or one held by a
    /// process that is not an ancestor (copied into another environment), gives `None`.
    pub fn held_for_this_process(&self) -> Option<SlotHolder> {
        let slot = std::env::var(SLOT_ENV).ok()?.trim().parse().ok()?;
        self.slots.held_by_ancestor(slot)
    }

    /// The limits `settings` sets — the user's, then dev mode's (`QwSettings::limits`) —
    /// with defaults for the rest; slots in the default runtime directory.
    pub fn from_settings(settings: &QwSettings) -> Admission {
        Admission {
            limits: Limits::from_settings(&settings.limits()),
            settings_path: settings.path.clone(),
            slots: Slots::system(),
            timeout_setting: ACQUIRE_TIMEOUT_SETTING,
            untimed_behind_own: false,
        }
    }

    /// Wait (up to `acquire_timeout_s`) for admission of a request of `impact`.
    pub fn acquire(
        &self,
        impact: Impact,
        mut on_wait: impl FnMut(&Waiting) -> ControlFlow<()>,
    ) -> Result<SlotGuard, AdmissionError> {
        let give_up = GiveUp {
            after: self.limits.acquire_timeout,
            setting: self.timeout_setting,
            untimed_behind_own: self.untimed_behind_own,
        };
        let started = Instant::now();
        // The trace: a line when the wait starts and whenever what it waits for changes
        // (not on every poll), then the decision with how long it took.
        let mut waiting_for: Option<(bool, Vec<Limit>)> = None;
        let result = self
            .slots
            .acquire(&self.limits, impact, give_up, |w: &Waiting| {
                let key = (w.ahead > 0, w.blocked_by.iter().map(|r| r.limit).collect());
                if waiting_for.as_ref() != Some(&key) {
                    tracing::info!(impact = ?impact, "admission waiting for {w}");
                    waiting_for = Some(key);
                }
                on_wait(w)
            });
        let waited_s = format_args!("{:.3}", started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => tracing::info!(impact = ?impact, waited_s = %waited_s, "admission granted"),
            Err(e) => {
                tracing::info!(impact = ?impact, waited_s = %waited_s, "admission refused: {e}")
            }
        }
        result
    }

    /// The decision for `impact` right now, from fresh probes and the slots in use (no
    /// slot is taken).
    pub fn decide_now(&self, impact: Impact) -> Decision {
        decide(
            &Probes::read(),
            &self.limits,
            impact,
            self.slots.in_use().len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(ahead: usize, blocked_by: &[Limit], running: usize, left_ms: u64) -> Waiting {
        Waiting {
            ahead,
            blocked_by: blocked_by
                .iter()
                .map(|&limit| Refusal {
                    limit,
                    configured: 0.85,
                    observed: 1.72,
                })
                .collect(),
            running,
            ahead_pids: Vec::new(),
            own_ahead: 0,
            holders: Vec::new(),
            own: Vec::new(),
            untimed: false,
            stopped: Vec::new(),
            max_concurrent: 8,
            give_up_in: Duration::from_millis(left_ms),
            timeout_setting: ACQUIRE_TIMEOUT_SETTING,
        }
    }

    #[test]
    fn waiting_line_says_what_it_waits_for_and_when_it_gives_up() {
        let w = waiting(0, &[Limit::MaxLoad, Limit::MaxMemory], 2, 298_000);
        assert_eq!(
            w.to_string(),
            "load 1.72/CPU > 0.85 (max_load) and memory in use 1.72 > 0.85 (max_memory); \
             2 qw tasks running; giving up in 4m58s (resource_limits.acquire_timeout_s)"
        );
        let w = Waiting {
            ahead_pids: vec![11, 12, 13, 14],
            holders: vec![7],
            ..waiting(4, &[Limit::MaxLoad], 1, 59_500)
        };
        assert_eq!(
            w.to_string(),
            "queued behind 4 waiting requests (qw pids 11, 12, 13 and 1 more), the first waits \
             for load 1.72/CPU > 0.85 (max_load); 1 of 8 slot(s) in use, held by qw pid 7; \
             giving up in 1m00s (resource_limits.acquire_timeout_s)"
        );
        // First in line: the slots' holders are named, a stopped one said to be.
        let w = Waiting {
            holders: vec![7],
            stopped: vec![7],
            ..waiting(0, &[], 1, 10_000)
        };
        assert_eq!(
            w.reason(),
            "a free slot; 1 qw task running, held by qw pid 7 (stopped)"
        );
        let w = Waiting {
            holders: vec![7, 8],
            stopped: vec![8],
            ..waiting(0, &[], 2, 10_000)
        };
        assert!(
            w.reason()
                .ends_with("2 qw tasks running, held by qw pids 7, 8 (pid 8 stopped)"),
            "{w}"
        );
        // Queued behind another qw's request while no task runs: never "no qw task
        // running" alone, which reads as if nothing held it back.
        let w = Waiting {
            ahead_pids: vec![4242],
            ..waiting(1, &[Limit::MaxMemory], 0, 10_000)
        };
        assert_eq!(
            w.to_string(),
            "queued behind 1 waiting request (qw pid 4242), which waits for memory in use \
             1.72 > 0.85 (max_memory); no slot in use (0 of 8); giving up in 10s \
             (resource_limits.acquire_timeout_s)"
        );
        let w = Waiting {
            ahead_pids: vec![4242],
            ..waiting(1, &[], 0, 10_000)
        };
        assert!(
            w.reason()
                .starts_with("queued behind 1 waiting request (qw pid 4242), which is being admitted; no slot in use"),
            "{w}"
        );
        let w = Waiting {
            timeout_setting: "--admit-timeout",
            ..waiting(0, &[], 0, 400)
        };
        assert_eq!(
            w.to_string(),
            "a free slot; no qw task running; giving up in 0.4s (--admit-timeout)"
        );
        let err = AdmissionError::TimedOut {
            waited: Duration::from_millis(1000),
            waiting: Box::new(waiting(0, &[Limit::MaxLoad], 1, 0)),
        };
        assert_eq!(
            err.to_string(),
            "gave up waiting for admission after 1.0s (resource_limits.acquire_timeout_s): \
             load 1.72/CPU > 0.85 (max_load); 1 qw task running"
        );
    }

    #[test]
    fn waiting_behind_its_own_workflow_names_the_task_and_has_no_time_limit() {
        let w = Waiting {
            own: vec!["task 5".into()],
            untimed: true,
            ..waiting(0, &[Limit::MaxLoad], 1, 0)
        };
        assert_eq!(
            w.to_string(),
            "load 1.72/CPU > 0.85 (max_load); 1 qw task running, held by task 5 of this \
             workflow; it waits its turn behind this workflow's own task(s), with no time limit"
        );
        // Mixed: its own and another qw's; queued behind a sibling and another qw.
        let w = Waiting {
            own: vec!["task 5".into(), "task 6".into()],
            holders: vec![7],
            own_ahead: 1,
            ahead_pids: vec![8],
            ..waiting(2, &[Limit::MaxConcurrent], 3, 10_000)
        };
        assert_eq!(
            w.to_string(),
            "queued behind 2 waiting requests (1 of this workflow, qw pid 8), the first waits \
             for 1.72 of 0.85 slots in use (max_concurrent); 3 of 8 slot(s) in use, held by \
             task 5 and task 6 of this workflow and qw pid 7; giving up in 10s \
             (resource_limits.acquire_timeout_s)"
        );
    }

    #[test]
    fn human_durations() {
        for (ms, want) in [
            (0, "0s"),
            (1, "0.1s"),
            (400, "0.4s"),
            (1000, "1s"),
            (9_950, "10s"),
            (10_000, "10s"),
            (59_001, "1m00s"),
            (298_000, "4m58s"),
            (300_000, "5m00s"),
            (3_720_000, "1h02m"),
        ] {
            assert_eq!(human_duration(Duration::from_millis(ms)), want, "{ms} ms");
        }
    }

    #[test]
    fn wait_notice_prints_once_then_on_change_or_periodically() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let load = waiting(0, &[Limit::MaxLoad], 1, 1000);
        let both = waiting(0, &[Limit::MaxLoad, Limit::MaxMemory], 1, 1000);
        let queued = waiting(2, &[Limit::MaxLoad], 1, 1000);
        let mut n = WaitNotice::default();
        assert!(n.due_at(&load, at(0)), "the first line is shown");
        // The same reason (the observed load changes every poll) is not repeated…
        assert!(!n.due_at(&load, at(1)));
        assert!(!n.due_at(&load, at(29)));
        // …until the periodic line.
        assert!(n.due_at(&load, at(30)));
        // A change is shown, but not sooner than 5 s after the last line.
        assert!(!n.due_at(&both, at(33)));
        assert!(n.due_at(&both, at(35)));
        assert!(!n.due_at(&load, at(36)));
        assert!(n.due_at(&queued, at(41)));
        assert!(!n.due_at(&queued, at(70)));
        assert!(n.due_at(&queued, at(71)));
    }

    #[test]
    fn impact_parses_and_maps_to_estimated_cpu() {
        assert_eq!("low".parse::<Impact>(), Ok(Impact::Low));
        assert_eq!("high".parse::<Impact>(), Ok(Impact::High));
        let err = "huge".parse::<Impact>().unwrap_err();
        assert!(err.to_string().contains("`huge`"));
        let high: Vec<Impact> = Impact::ALL
            .into_iter()
            .filter(|i| i.estimated_cpu() > policy::HIGH_IMPACT_CPU)
            .collect();
        assert_eq!(high, [Impact::High]);
    }
}
