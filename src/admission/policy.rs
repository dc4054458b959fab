//! The admission policy: a pure function of (probes, limits, impact), and the limits it
//! reads from `.claude/settings.local.json` `resource_limits`.
//!
//! Nothing here reads the machine or takes a lock; `decide` is tested with numbers.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Impact;
use super::probes::Probes;
use crate::settings::{Settings, SettingsError};

/// The settings section that holds the limits.
pub const SECTION: &str = "resource_limits";

/// Admission limits. Defaults are the original system's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    /// Refuse when 1-minute load ÷ usable CPUs is above this.
    pub max_load: f64,
    /// Refuse when the fraction of memory in use is above this (0–1).
    pub max_memory: f64,
    /// Refuse a high-impact request when load ÷ CPUs is above this.
    pub high_impact_load: f64,
    /// At most this many admitted tasks at once across all qw processes of the user.
    pub max_concurrent: usize,
    /// Give up waiting for admission after this long.
    #[serde(rename = "acquire_timeout_s", serialize_with = "secs")]
    pub acquire_timeout: Duration,
    /// Refuse when CPU PSI `some avg10` (percent) is above this; off unless set.
    pub max_cpu_pressure: Option<f64>,
    /// Refuse when memory PSI `some avg10` (percent) is above this; off unless set.
    pub max_memory_pressure: Option<f64>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_load: 0.85,
            max_memory: 0.80,
            high_impact_load: 0.6,
            max_concurrent: 8,
            acquire_timeout: Duration::from_secs(300),
            max_cpu_pressure: None,
            max_memory_pressure: None,
        }
    }
}

/// The keys `resource_limits` may hold.
pub const KEYS: [&str; 7] = [
    "max_load",
    "max_memory",
    "high_impact_load",
    "max_concurrent",
    "acquire_timeout_s",
    "max_cpu_pressure",
    "max_memory_pressure",
];

/// Largest accepted `max_concurrent` (one lock file per slot).
pub const MAX_SLOTS: usize = 1024;

impl Limits {
    /// The limits in `settings` (`resource_limits`), defaults for keys not set.
    /// `path` names the file in errors. A wrong type or range → [`SettingsError::BadValue`].
    pub fn from_settings(settings: &Settings, path: &Path) -> Result<Limits, SettingsError> {
        let mut limits = Limits::default();
        let section = match settings.root.get(SECTION) {
            None | Some(Value::Null) => return Ok(limits),
            Some(Value::Object(map)) => map,
            Some(other) => {
                return Err(bad(path, SECTION, other, "expected an object of limits"));
            }
        };
        for (key, value) in section {
            let dotted = format!("{SECTION}.{key}");
            let number = || {
                value
                    .as_f64()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| bad(path, &dotted, value, "expected a number >= 0"))
            };
            let fraction = || {
                value
                    .as_f64()
                    .filter(|v| (0.0..=1.0).contains(v))
                    .ok_or_else(|| bad(path, &dotted, value, "expected a fraction from 0 to 1"))
            };
            let percent = || {
                value
                    .as_f64()
                    .filter(|v| (0.0..=100.0).contains(v))
                    .ok_or_else(|| bad(path, &dotted, value, "expected a percentage from 0 to 100"))
            };
            match key.as_str() {
                "max_load" => limits.max_load = number()?,
                "max_memory" => limits.max_memory = fraction()?,
                "high_impact_load" => limits.high_impact_load = number()?,
                "max_concurrent" => {
                    limits.max_concurrent = value
                        .as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|n| (1..=MAX_SLOTS).contains(n))
                        .ok_or_else(|| {
                            bad(
                                path,
                                &dotted,
                                value,
                                "expected a whole number from 1 to 1024",
                            )
                        })?;
                }
                "acquire_timeout_s" => {
                    limits.acquire_timeout = Duration::try_from_secs_f64(number()?)
                        .map_err(|_| bad(path, &dotted, value, "too large"))?;
                }
                "max_cpu_pressure" => limits.max_cpu_pressure = Some(percent()?),
                "max_memory_pressure" => limits.max_memory_pressure = Some(percent()?),
                _ => tracing::warn!(
                    "ignoring unknown key `{dotted}` in `{}` (known: {})",
                    path.display(),
                    KEYS.join(", ")
                ),
            }
        }
        Ok(limits)
    }
}

fn bad(path: &Path, key: &str, value: &Value, reason: &str) -> SettingsError {
    SettingsError::BadValue {
        path: path.to_path_buf(),
        key: key.to_owned(),
        value: value.to_string(),
        reason: reason.to_owned(),
    }
}

/// A limit that can hold a request back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// Load per usable CPU above `max_load`.
    MaxLoad,
    /// Memory in use above `max_memory`.
    MaxMemory,
    /// A high-impact request while load per CPU is above `high_impact_load`.
    HighImpactLoad,
    /// CPU pressure above `max_cpu_pressure`.
    MaxCpuPressure,
    /// Memory pressure above `max_memory_pressure`.
    MaxMemoryPressure,
    /// Every slot taken (`max_concurrent`); decided by the slots, not by [`decide`].
    MaxConcurrent,
}

impl Limit {
    /// The settings key, as the user writes it.
    pub fn key(self) -> &'static str {
        match self {
            Limit::MaxLoad => "max_load",
            Limit::MaxMemory => "max_memory",
            Limit::HighImpactLoad => "high_impact_load",
            Limit::MaxCpuPressure => "max_cpu_pressure",
            Limit::MaxMemoryPressure => "max_memory_pressure",
            Limit::MaxConcurrent => "max_concurrent",
        }
    }

    /// What the observed value measures.
    fn observed_what(self) -> &'static str {
        match self {
            Limit::MaxLoad | Limit::HighImpactLoad => "load per CPU",
            Limit::MaxMemory => "memory in use",
            Limit::MaxCpuPressure => "CPU pressure",
            Limit::MaxMemoryPressure => "memory pressure",
            Limit::MaxConcurrent => "slots in use",
        }
    }
}

/// Why a request is held back: which limit, its configured value, what was observed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    /// The limit that blocked.
    pub limit: Limit,
    /// Its configured value.
    pub configured: f64,
    /// The observed value it was compared with.
    pub observed: f64,
}

impl Refusal {
    /// How far over the limit the observation is.
    pub fn excess(&self) -> f64 {
        self.observed - self.configured
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.limit {
            Limit::MaxConcurrent => write!(
                f,
                "max_concurrent = {} reached ({} slots in use)",
                self.configured, self.observed
            ),
            Limit::MaxMemory => write!(
                f,
                "{} = {:.2} exceeded ({} {:.2}, over by {:.2})",
                self.limit.key(),
                self.configured,
                self.limit.observed_what(),
                self.observed,
                self.excess()
            ),
            _ => write!(
                f,
                "{} = {} exceeded ({} {:.2}, over by {:.2})",
                self.limit.key(),
                self.configured,
                self.limit.observed_what(),
                self.observed,
                self.excess()
            ),
        }
    }
}

/// The policy's answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// The machine can take the request now.
    Admit,
    /// Not now.
    Refuse(Refusal),
}

impl Decision {
    /// True for [`Decision::Admit`].
    pub fn is_admit(&self) -> bool {
        matches!(self, Decision::Admit)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Admit => f.write_str("admit"),
            Decision::Refuse(r) => write!(f, "refuse: {r}"),
        }
    }
}

/// Estimated CPU above which a request counts as high impact (the original's).
pub const HIGH_IMPACT_CPU: f64 = 0.3;

/// Decide whether a request of `impact` may start now. Strictly-above comparisons: a value
/// equal to its limit is admitted. Probes that could not be read never block.
pub fn decide(probes: &Probes, limits: &Limits, impact: Impact) -> Decision {
    let load = probes.load_per_cpu();
    let checks = [
        (Limit::MaxLoad, Some(limits.max_load), load),
        (
            Limit::MaxMemory,
            Some(limits.max_memory),
            probes.memory_used(),
        ),
        (
            Limit::HighImpactLoad,
            (impact.estimated_cpu() > HIGH_IMPACT_CPU).then_some(limits.high_impact_load),
            load,
        ),
        (
            Limit::MaxCpuPressure,
            limits.max_cpu_pressure,
            probes.cpu_pressure,
        ),
        (
            Limit::MaxMemoryPressure,
            limits.max_memory_pressure,
            probes.memory_pressure,
        ),
    ];
    for (limit, configured, observed) in checks {
        if let (Some(configured), Some(observed)) = (configured, observed)
            && observed > configured
        {
            return Decision::Refuse(Refusal {
                limit,
                configured,
                observed,
            });
        }
    }
    Decision::Admit
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::probes::{CpuSource, LoadAvg, Memory};

    fn probes(load: Option<f64>, mem: Option<f64>) -> Probes {
        Probes {
            load_avg: load.map(|one| LoadAvg {
                one: one * 4.0,
                five: 0.0,
                fifteen: 0.0,
            }),
            usable_cpus: 4.0,
            cpu_source: CpuSource::Affinity,
            memory: Memory {
                host_used: mem,
                cgroup_used: None,
                cgroup_limit_bytes: None,
                total_bytes: None,
                available_bytes: None,
            },
            cpu_pressure: Some(20.0),
            memory_pressure: Some(5.0),
        }
    }

    fn refused(limit: Limit) -> Option<Limit> {
        Some(limit)
    }

    #[test]
    fn every_threshold_edge_with_default_limits() {
        use Impact::{High, Low, Normal};
        use Limit::{HighImpactLoad, MaxLoad, MaxMemory};
        let l = Limits::default();
        // (load per CPU, memory used, impact) → the limit that blocks, if any.
        type Row = (Option<f64>, Option<f64>, Impact, Option<Limit>);
        let table: &[Row] = &[
            (Some(0.85), Some(0.5), Normal, None),
            (Some(0.8501), Some(0.5), Normal, refused(MaxLoad)),
            (Some(0.8499), Some(0.5), Normal, None),
            (Some(0.85), Some(0.5), Low, None),
            (Some(2.0), Some(0.5), Low, refused(MaxLoad)),
            (Some(0.1), Some(0.80), Normal, None),
            (Some(0.1), Some(0.8001), Normal, refused(MaxMemory)),
            (Some(0.1), Some(0.7999), Low, None),
            (Some(0.1), Some(1.0), Low, refused(MaxMemory)),
            (Some(0.6), Some(0.5), High, None),
            (Some(0.6001), Some(0.5), High, refused(HighImpactLoad)),
            (Some(0.5999), Some(0.5), High, None),
            (Some(0.6001), Some(0.5), Normal, None),
            (Some(0.6001), Some(0.5), Low, None),
            // Combinations: load is checked first, then memory, then impact.
            (Some(0.9), Some(0.9), Normal, refused(MaxLoad)),
            (Some(0.9), Some(0.9), High, refused(MaxLoad)),
            (Some(0.7), Some(0.9), High, refused(MaxMemory)),
            (Some(0.7), Some(0.5), High, refused(HighImpactLoad)),
            // Unreadable probes never block.
            (None, Some(0.5), High, None),
            (None, None, High, None),
            (Some(0.5), None, High, None),
            (None, Some(0.81), Low, refused(MaxMemory)),
        ];
        for (i, &(load, mem, impact, want)) in table.iter().enumerate() {
            let got = match decide(&probes(load, mem), &l, impact) {
                Decision::Admit => None,
                Decision::Refuse(r) => Some(r.limit),
            };
            assert_eq!(got, want, "row {i}: load {load:?} mem {mem:?} {impact:?}");
        }
    }

    #[test]
    fn refusal_names_limit_value_and_excess() {
        let d = decide(
            &probes(Some(1.25), Some(0.5)),
            &Limits::default(),
            Impact::Normal,
        );
        let Decision::Refuse(r) = d else {
            panic!("{d:?}")
        };
        assert_eq!(r.limit, Limit::MaxLoad);
        assert_eq!(r.configured, 0.85);
        assert!((r.observed - 1.25).abs() < 1e-9);
        assert!((r.excess() - 0.40).abs() < 1e-9);
        let text = d.to_string();
        assert!(text.contains("max_load = 0.85"), "{text}");
        assert!(text.contains("1.25"), "{text}");
    }

    #[test]
    fn zero_max_load_refuses_any_load_and_pressure_limits_are_opt_in() {
        let zero = Limits {
            max_load: 0.0,
            ..Limits::default()
        };
        assert!(!decide(&probes(Some(0.01), Some(0.1)), &zero, Impact::Low).is_admit());
        let p = probes(Some(0.1), Some(0.1));
        assert!(decide(&p, &Limits::default(), Impact::Low).is_admit());
        let psi = Limits {
            max_cpu_pressure: Some(20.0),
            max_memory_pressure: Some(4.9),
            ..Limits::default()
        };
        // CPU pressure equal to its limit passes; memory pressure above blocks.
        match decide(&p, &psi, Impact::Low) {
            Decision::Refuse(r) => assert_eq!(r.limit, Limit::MaxMemoryPressure),
            d => panic!("{d:?}"),
        }
    }

    fn parse(text: &str) -> Result<Limits, SettingsError> {
        let s = Settings::parse(Path::new("s.json"), text).unwrap();
        Limits::from_settings(&s, Path::new("s.json"))
    }

    #[test]
    fn limits_from_settings_defaults_and_overrides() {
        assert_eq!(parse("{}").unwrap(), Limits::default());
        let l = parse(
            r#"{"permissions": {}, "resource_limits": {"max_load": 1000, "max_memory": 1.0,
               "max_concurrent": 3, "acquire_timeout_s": 1.5, "high_impact_load": 0}}"#,
        )
        .unwrap();
        assert_eq!(l.max_load, 1000.0);
        assert_eq!(l.max_memory, 1.0);
        assert_eq!(l.max_concurrent, 3);
        assert_eq!(l.acquire_timeout, Duration::from_millis(1500));
        assert_eq!(l.high_impact_load, 0.0);
    }

    #[test]
    fn bad_limit_values_name_key_and_value() {
        for (text, key, value) in [
            (
                r#"{"resource_limits": {"max_load": "high"}}"#,
                "resource_limits.max_load",
                "\"high\"",
            ),
            (
                r#"{"resource_limits": {"max_load": -1}}"#,
                "resource_limits.max_load",
                "-1",
            ),
            (
                r#"{"resource_limits": {"max_memory": 1.5}}"#,
                "resource_limits.max_memory",
                "1.5",
            ),
            (
                r#"{"resource_limits": {"max_concurrent": 0}}"#,
                "resource_limits.max_concurrent",
                "0",
            ),
            (
                r#"{"resource_limits": {"max_concurrent": 2.5}}"#,
                "resource_limits.max_concurrent",
                "2.5",
            ),
            (
                r#"{"resource_limits": {"acquire_timeout_s": null}}"#,
                "resource_limits.acquire_timeout_s",
                "null",
            ),
            (r#"{"resource_limits": 5}"#, "resource_limits", "5"),
        ] {
            match parse(text) {
                Err(SettingsError::BadValue {
                    key: k, value: v, ..
                }) => {
                    assert_eq!((k.as_str(), v.as_str()), (key, value), "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
