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
use std::time::Duration;

use serde::Serialize;

pub mod policy;
pub mod probes;
pub mod slots;

pub use policy::{Decision, Limit, Limits, Refusal, decide};
pub use probes::Probes;
pub use slots::{SlotGuard, SlotHolder, Slots};

use crate::project::Project;
use crate::settings::{Settings, SettingsError};

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

/// Why a request is still waiting: its place in the queue and the limit that blocks
/// (its own when it is first in line, else the first waiter's, when known).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Waiting {
    /// Live waiters that arrived earlier.
    pub ahead: usize,
    /// The limit holding the queue back.
    pub blocked_by: Option<Refusal>,
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ahead, &self.blocked_by) {
            (0, Some(r)) => write!(f, "{r}"),
            (0, None) => f.write_str("waiting for a slot"),
            (n, Some(r)) => write!(
                f,
                "queued behind {n} earlier request(s); the first waits because {r}"
            ),
            (n, None) => write!(f, "queued behind {n} earlier request(s)"),
        }
    }
}

/// Failures of admission.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// The wait exceeded the timeout.
    #[error("gave up waiting for admission after {:.1}s: {waiting}", waited.as_secs_f64())]
    TimedOut {
        /// How long it waited.
        waited: Duration,
        /// Why it was still waiting.
        waiting: Waiting,
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
}

impl Admission {
    /// Load the project's `resource_limits`; slots in the default runtime directory.
    pub fn for_project(project: &Project) -> Result<Admission, SettingsError> {
        let settings_path = project.settings_file();
        let settings = Settings::load(&settings_path)?;
        let limits = Limits::from_settings(&settings, &settings_path)?;
        Ok(Admission {
            limits,
            settings_path,
            slots: Slots::system(),
        })
    }

    /// Wait (up to `acquire_timeout_s`) for admission of a request of `impact`.
    pub fn acquire(
        &self,
        impact: Impact,
        on_wait: impl FnMut(&Waiting) -> ControlFlow<()>,
    ) -> Result<SlotGuard, AdmissionError> {
        self.slots
            .acquire(&self.limits, impact, self.limits.acquire_timeout, on_wait)
    }

    /// The decision for `impact` right now, from fresh probes (no slot is taken).
    pub fn decide_now(&self, impact: Impact) -> Decision {
        decide(&Probes::read(), &self.limits, impact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
