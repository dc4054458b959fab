//! The admission policy: a pure function of (probes, limits, impact, qw tasks running),
//! and the limits it reads from `.claude/settings.local.json` `resource_limits`.
//!
//! Nothing here reads the machine or takes a lock; `decide` is tested with numbers. The
//! rules (progress guarantee, the load figure) are documented on [`decide`] and
//! [`load_figure`].

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Impact;
use super::probes::Probes;
use crate::settings::LimitSettings;

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

impl Limits {
    /// The limits `settings` sets (`resource_limits`, already checked when the settings
    /// were read), the defaults for the rest.
    pub fn from_settings(settings: &LimitSettings) -> Limits {
        let d = Limits::default();
        Limits {
            max_load: settings.max_load.unwrap_or(d.max_load),
            max_memory: settings.max_memory.unwrap_or(d.max_memory),
            high_impact_load: settings.high_impact_load.unwrap_or(d.high_impact_load),
            max_concurrent: settings.max_concurrent.unwrap_or(d.max_concurrent),
            acquire_timeout: settings.acquire_timeout.unwrap_or(d.acquire_timeout),
            max_cpu_pressure: settings.max_cpu_pressure.or(d.max_cpu_pressure),
            max_memory_pressure: settings.max_memory_pressure.or(d.max_memory_pressure),
        }
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
    /// `max_concurrent` qw tasks already running.
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

    /// True for the limits on CPU load (`max_load`, `high_impact_load`,
    /// `max_cpu_pressure`): the ones the progress guarantee waives when no qw task is
    /// running. Memory limits and `max_concurrent` always hold.
    pub fn is_load(self) -> bool {
        matches!(
            self,
            Limit::MaxLoad | Limit::HighImpactLoad | Limit::MaxCpuPressure
        )
    }
}

/// A limit exceeded: which, its configured value, what was observed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    /// The limit exceeded.
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
        let (cfg, obs, key) = (self.configured, self.observed, self.limit.key());
        match self.limit {
            Limit::MaxLoad => write!(f, "load {obs:.2}/CPU > {cfg} ({key})"),
            Limit::HighImpactLoad => {
                write!(
                    f,
                    "load {obs:.2}/CPU > {cfg} for a high-impact task ({key})"
                )
            }
            Limit::MaxMemory => write!(f, "memory in use {obs:.2} > {cfg:.2} ({key})"),
            Limit::MaxCpuPressure => write!(f, "CPU pressure {obs:.1}% > {cfg}% ({key})"),
            Limit::MaxMemoryPressure => write!(f, "memory pressure {obs:.1}% > {cfg}% ({key})"),
            Limit::MaxConcurrent => write!(f, "{obs} of {cfg} slots in use ({key})"),
        }
    }
}

/// Every refusal in `list`, joined with "and" (`load 1.72/CPU > 0.85 (max_load) and …`).
pub(crate) fn describe(list: &[Refusal]) -> String {
    list.iter()
        .map(Refusal::to_string)
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The policy's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// The machine can take the request now.
    Admit {
        /// Load limits exceeded but waived by the progress guarantee (no qw task running).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        waived: Vec<Refusal>,
    },
    /// Not now: every limit that blocks, in the order load, memory, high impact, CPU
    /// pressure, memory pressure, `max_concurrent`.
    Refuse {
        /// The limits exceeded (never empty).
        refusals: Vec<Refusal>,
    },
}

impl Decision {
    /// True for [`Decision::Admit`].
    pub fn is_admit(&self) -> bool {
        matches!(self, Decision::Admit { .. })
    }

    /// The limits that block (empty when admitted).
    pub fn refusals(&self) -> &[Refusal] {
        match self {
            Decision::Admit { .. } => &[],
            Decision::Refuse { refusals } => refusals,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Admit { waived } if waived.is_empty() => f.write_str("admit"),
            Decision::Admit { waived } => write!(
                f,
                "admit (no qw task running, so {} is waived)",
                describe(waived)
            ),
            Decision::Refuse { refusals } => write!(f, "refuse: {}", describe(refusals)),
        }
    }
}

/// Estimated CPU above which a request counts as high impact (the original's).
pub(crate) const HIGH_IMPACT_CPU: f64 = 0.3;

/// CPU pressure (PSI `some avg10`, percent) at or below which the run queue may stand in
/// for the 1-minute load average: the CPUs had a runnable task waiting for them less than
/// one second in the last ten.
pub(crate) const CALM_CPU_PRESSURE: f64 = 10.0;

/// What the load figure is measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBasis {
    /// The 1-minute load average.
    OneMinuteAverage,
    /// The run queue right now, trusted because CPU pressure is calm.
    RunQueue,
}

/// The load per CPU that `max_load` and `high_impact_load` limit, and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LoadFigure {
    /// Load per usable CPU.
    pub per_cpu: f64,
    /// Its source.
    pub basis: LoadBasis,
}

/// The load per usable CPU the policy compares with `max_load` and `high_impact_load`.
///
/// Normally the 1-minute load average ÷ usable CPUs. That average is a minute of the past:
/// it keeps a machine "busy" for about a minute after the work is gone. So when CPU
/// pressure (`/proc/pressure/cpu` `some avg10`) is known and at most
/// [`CALM_CPU_PRESSURE`] — no task waited for a CPU more than 10 % of the last 10 s — the
/// run queue right now (`/proc/loadavg` 4th field, minus the process reading it) ÷ usable
/// CPUs is used instead, when it is lower. The run queue never raises the figure, and
/// without PSI (old kernels, `psi=0`) the 1-minute average is used alone: one instant of
/// the run queue is too noisy to trust without the 10-second pressure window beside it.
/// `None` when the load average cannot be read (then it never blocks).
pub fn load_figure(probes: &Probes) -> Option<LoadFigure> {
    let average = probes.load_per_cpu()?;
    let now = match (probes.running, probes.cpu_pressure) {
        (Some(running), Some(psi)) if psi <= CALM_CPU_PRESSURE => {
            Some(f64::from(running.saturating_sub(1)) / probes.usable_cpus)
        }
        _ => None,
    };
    Some(match now {
        Some(now) if now < average => LoadFigure {
            per_cpu: now,
            basis: LoadBasis::RunQueue,
        },
        _ => LoadFigure {
            per_cpu: average,
            basis: LoadBasis::OneMinuteAverage,
        },
    })
}

/// Whether `high_impact_load` applies to a request of `impact`.
fn is_high_impact(impact: Impact) -> bool {
    impact.estimated_cpu() > HIGH_IMPACT_CPU
}

/// Decide whether a request of `impact` may start now, with `running` qw tasks already
/// admitted and running (slots in use across every `qw` process of the user).
///
/// Every limit is checked and every one exceeded is named, in the order: `max_load` and
/// `high_impact_load` (against [`load_figure`]), `max_memory`, `max_cpu_pressure`,
/// `max_memory_pressure`, `max_concurrent` (`running >= max_concurrent`). Comparisons are
/// strictly above: a value equal to its limit is admitted. Probes that could not be read
/// never block.
///
/// **Progress guarantee** (as GNU make's `--load-average`): when `running` is 0, the load
/// limits ([`Limit::is_load`]) are waived — a loaded machine runs one qw task at a time
/// instead of stalling; the memory limits still hold. The slots make this race-free:
/// only the head of the queue decides and takes a slot, so two waiters never both see
/// zero running and both start.
pub fn decide(probes: &Probes, limits: &Limits, impact: Impact, running: usize) -> Decision {
    let load = load_figure(probes).map(|l| l.per_cpu);
    let high = is_high_impact(impact);
    let checks = [
        (Limit::MaxLoad, Some(limits.max_load), load),
        (
            Limit::HighImpactLoad,
            high.then_some(limits.high_impact_load),
            load,
        ),
        (
            Limit::MaxMemory,
            Some(limits.max_memory),
            probes.memory_used(),
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
    let mut exceeded: Vec<Refusal> = checks
        .into_iter()
        .filter_map(|(limit, configured, observed)| {
            let (configured, observed) = (configured?, observed?);
            (observed > configured).then_some(Refusal {
                limit,
                configured,
                observed,
            })
        })
        .collect();
    if running >= limits.max_concurrent {
        exceeded.push(Refusal {
            limit: Limit::MaxConcurrent,
            configured: limits.max_concurrent as f64,
            observed: running as f64,
        });
    }
    let (waived, refusals) = if running == 0 {
        exceeded.into_iter().partition(|r| r.limit.is_load())
    } else {
        (Vec::new(), exceeded)
    };
    if refusals.is_empty() {
        Decision::Admit { waived }
    } else {
        Decision::Refuse { refusals }
    }
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
            // A full run queue: with calm pressure it would not lower the figure anyway.
            running: Some(64),
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

    fn limits_of(d: &Decision) -> Vec<Limit> {
        d.refusals().iter().map(|r| r.limit).collect()
    }

    #[test]
    fn every_threshold_edge_with_default_limits() {
        use Impact::{High, Low, Normal};
        use Limit::{HighImpactLoad, MaxLoad, MaxMemory};
        let l = Limits::default();
        // (load per CPU, memory used, impact) → the limits that block, with one qw task
        // running (so the progress guarantee does not apply).
        type Row = (Option<f64>, Option<f64>, Impact, &'static [Limit]);
        let table: &[Row] = &[
            (Some(0.85), Some(0.5), Normal, &[]),
            (Some(0.8501), Some(0.5), Normal, &[MaxLoad]),
            (Some(0.8499), Some(0.5), Normal, &[]),
            (Some(0.85), Some(0.5), Low, &[]),
            (Some(2.0), Some(0.5), Low, &[MaxLoad]),
            (Some(0.1), Some(0.80), Normal, &[]),
            (Some(0.1), Some(0.8001), Normal, &[MaxMemory]),
            (Some(0.1), Some(0.7999), Low, &[]),
            (Some(0.1), Some(1.0), Low, &[MaxMemory]),
            (Some(0.6), Some(0.5), High, &[]),
            (Some(0.6001), Some(0.5), High, &[HighImpactLoad]),
            (Some(0.5999), Some(0.5), High, &[]),
            (Some(0.6001), Some(0.5), Normal, &[]),
            (Some(0.6001), Some(0.5), Low, &[]),
            // Every limit exceeded is named, not only the first.
            (Some(0.9), Some(0.9), Normal, &[MaxLoad, MaxMemory]),
            (
                Some(0.9),
                Some(0.9),
                High,
                &[MaxLoad, HighImpactLoad, MaxMemory],
            ),
            (Some(0.9), Some(0.5), High, &[MaxLoad, HighImpactLoad]),
            (Some(0.7), Some(0.9), High, &[HighImpactLoad, MaxMemory]),
            (Some(0.7), Some(0.5), High, &[HighImpactLoad]),
            // Unreadable probes never block.
            (None, Some(0.5), High, &[]),
            (None, None, High, &[]),
            (Some(0.5), None, High, &[]),
            (None, Some(0.81), Low, &[MaxMemory]),
        ];
        for (i, &(load, mem, impact, want)) in table.iter().enumerate() {
            let d = decide(&probes(load, mem), &l, impact, 1);
            assert_eq!(
                limits_of(&d),
                want,
                "row {i}: load {load:?} mem {mem:?} {impact:?}"
            );
            assert_eq!(d.is_admit(), want.is_empty(), "row {i}");
        }
    }

    #[test]
    fn progress_guarantee_waives_load_limits_only_when_no_task_runs() {
        use Limit::{HighImpactLoad, MaxCpuPressure, MaxLoad, MaxMemory, MaxMemoryPressure};
        let psi = Limits {
            max_cpu_pressure: Some(10.0),
            max_memory_pressure: Some(4.0),
            ..Limits::default()
        };
        let l = Limits::default();
        // Overloaded, memory fine, nothing running: admitted, the waived limits named.
        let d = decide(&probes(Some(3.0), Some(0.5)), &l, Impact::High, 0);
        assert_eq!(
            d,
            Decision::Admit {
                waived: vec![
                    Refusal {
                        limit: MaxLoad,
                        configured: 0.85,
                        observed: 3.0
                    },
                    Refusal {
                        limit: HighImpactLoad,
                        configured: 0.6,
                        observed: 3.0
                    },
                ]
            }
        );
        assert!(
            d.to_string().starts_with("admit (no qw task running"),
            "{d}"
        );
        // One task running: the same load refuses.
        let d = decide(&probes(Some(3.0), Some(0.5)), &l, Impact::High, 1);
        assert_eq!(limits_of(&d), [MaxLoad, HighImpactLoad]);
        // Memory still holds with nothing running, and only memory is named then (the
        // load would be waived the moment memory frees up).
        let d = decide(&probes(Some(3.0), Some(0.81)), &l, Impact::Normal, 0);
        assert_eq!(limits_of(&d), [MaxMemory]);
        // CPU pressure counts as load (waived); memory pressure as memory (holds).
        let d = decide(&probes(Some(3.0), Some(0.5)), &psi, Impact::Low, 0);
        assert_eq!(limits_of(&d), [MaxMemoryPressure]);
        let d = decide(&probes(Some(3.0), Some(0.5)), &psi, Impact::Low, 1);
        assert_eq!(limits_of(&d), [MaxLoad, MaxCpuPressure, MaxMemoryPressure]);
        let calm_mem = Limits {
            max_memory_pressure: Some(5.0),
            ..psi
        };
        match decide(&probes(Some(3.0), Some(0.5)), &calm_mem, Impact::Low, 0) {
            Decision::Admit { waived } => {
                let w: Vec<Limit> = waived.iter().map(|r| r.limit).collect();
                assert_eq!(w, [MaxLoad, MaxCpuPressure]);
            }
            d => panic!("{d:?}"),
        }
        // An idle machine with nothing running: a plain admit, nothing waived.
        let d = decide(&probes(Some(0.1), Some(0.1)), &l, Impact::High, 0);
        assert_eq!(d, Decision::Admit { waived: vec![] });
        assert_eq!(d.to_string(), "admit");
    }

    #[test]
    fn max_concurrent_counts_running_tasks_and_is_never_waived() {
        let two = Limits {
            max_concurrent: 2,
            ..Limits::default()
        };
        let idle = probes(Some(0.1), Some(0.1));
        assert!(decide(&idle, &two, Impact::Normal, 1).is_admit());
        let d = decide(&idle, &two, Impact::Normal, 2);
        assert_eq!(limits_of(&d), [Limit::MaxConcurrent]);
        assert_eq!(
            d.to_string(),
            "refuse: 2 of 2 slots in use (max_concurrent)"
        );
        assert_eq!(
            limits_of(&decide(&idle, &two, Impact::Normal, 5)),
            [Limit::MaxConcurrent]
        );
        let busy = probes(Some(2.0), Some(0.9));
        assert_eq!(
            limits_of(&decide(&busy, &two, Impact::Normal, 2)),
            [Limit::MaxLoad, Limit::MaxMemory, Limit::MaxConcurrent]
        );
        // A limit of 1 with nothing running: the guarantee's single task is admitted.
        let one = Limits {
            max_concurrent: 1,
            ..Limits::default()
        };
        assert!(decide(&busy_mem_ok(), &one, Impact::Normal, 0).is_admit());
        assert_eq!(
            limits_of(&decide(&busy_mem_ok(), &one, Impact::Normal, 1)),
            [Limit::MaxLoad, Limit::MaxConcurrent]
        );
    }

    fn busy_mem_ok() -> Probes {
        probes(Some(2.0), Some(0.5))
    }

    #[test]
    fn refusal_names_limit_value_and_observation() {
        let d = decide(
            &probes(Some(1.25), Some(0.83)),
            &Limits::default(),
            Impact::Normal,
            2,
        );
        let r = d.refusals();
        assert_eq!(r.len(), 2, "{d:?}");
        assert_eq!(r[0].limit, Limit::MaxLoad);
        assert_eq!(r[0].configured, 0.85);
        assert!((r[0].observed - 1.25).abs() < 1e-9);
        assert!((r[0].excess() - 0.40).abs() < 1e-9);
        assert_eq!(
            d.to_string(),
            "refuse: load 1.25/CPU > 0.85 (max_load) and memory in use 0.83 > 0.80 (max_memory)"
        );
    }

    #[test]
    fn zero_max_load_refuses_any_load_and_pressure_limits_are_opt_in() {
        let zero = Limits {
            max_load: 0.0,
            ..Limits::default()
        };
        assert!(!decide(&probes(Some(0.01), Some(0.1)), &zero, Impact::Low, 1).is_admit());
        let p = probes(Some(0.1), Some(0.1));
        assert!(decide(&p, &Limits::default(), Impact::Low, 1).is_admit());
        let psi = Limits {
            max_cpu_pressure: Some(20.0),
            max_memory_pressure: Some(4.9),
            ..Limits::default()
        };
        // CPU pressure equal to its limit passes; memory pressure above blocks.
        let d = decide(&p, &psi, Impact::Low, 1);
        assert_eq!(limits_of(&d), [Limit::MaxMemoryPressure]);
        assert!(d.to_string().contains("memory pressure 5.0% > 4.9%"), "{d}");
    }

    /// Probes on 4 CPUs with a 1-minute load per CPU, a run queue (the reader included)
    /// and a CPU pressure.
    fn queue(avg: f64, running: Option<u32>, psi: Option<f64>) -> Probes {
        Probes {
            running,
            cpu_pressure: psi,
            ..probes(Some(avg), Some(0.1))
        }
    }

    #[test]
    fn calm_pressure_lets_the_run_queue_show_the_load_is_gone() {
        use LoadBasis::{OneMinuteAverage, RunQueue};
        // (1-min load per CPU, run queue incl. reader, CPU PSI) → (figure, basis).
        type Row = (f64, Option<u32>, Option<f64>, f64, LoadBasis);
        let table: &[Row] = &[
            // A build just ended: the average is still high, the queue holds only the
            // reader and nothing waited for a CPU → the load is gone.
            (1.8, Some(1), Some(0.0), 0.0, RunQueue),
            (1.8, Some(3), Some(2.5), 0.5, RunQueue),
            // Pressure at the edge is calm; just above it is not.
            (1.8, Some(3), Some(10.0), 0.5, RunQueue),
            (1.8, Some(3), Some(10.01), 1.8, OneMinuteAverage),
            // Busy loops on every CPU: the queue is as high as the average, or higher.
            (1.0, Some(5), Some(1.0), 1.0, OneMinuteAverage),
            (1.2, Some(9), Some(1.0), 1.2, OneMinuteAverage),
            // The run queue never raises the figure.
            (0.1, Some(40), Some(0.0), 0.1, OneMinuteAverage),
            // Without PSI or without the queue: the average alone.
            (1.8, Some(1), None, 1.8, OneMinuteAverage),
            (1.8, None, Some(0.0), 1.8, OneMinuteAverage),
            // A queue of 0 (never reported, as the reader runs) is not an underflow.
            (1.8, Some(0), Some(0.0), 0.0, RunQueue),
        ];
        for (i, &(avg, running, psi, want, basis)) in table.iter().enumerate() {
            let f = load_figure(&queue(avg, running, psi)).unwrap();
            assert!(
                (f.per_cpu - want).abs() < 1e-9 && f.basis == basis,
                "row {i}: {f:?}, want {want} {basis:?}"
            );
        }
        // No load average: no figure at all, whatever the queue says.
        let mut p = queue(1.0, Some(1), Some(0.0));
        p.load_avg = None;
        assert_eq!(load_figure(&p), None);
        // And the decision follows the figure: gone load admits with a task running.
        let l = Limits::default();
        assert!(decide(&queue(1.8, Some(3), Some(2.0)), &l, Impact::Normal, 1).is_admit());
        let d = decide(&queue(1.8, Some(3), Some(40.0)), &l, Impact::Normal, 1);
        assert_eq!(limits_of(&d), [Limit::MaxLoad]);
        // A half-full queue is still above a tight high-impact limit.
        let tight = Limits {
            high_impact_load: 0.2,
            ..l
        };
        let d = decide(&queue(1.8, Some(3), Some(2.0)), &tight, Impact::High, 1);
        assert_eq!(limits_of(&d), [Limit::HighImpactLoad]);
    }

    #[test]
    fn decisions_serialize_with_every_refusal() {
        let d = decide(
            &probes(Some(2.0), Some(0.9)),
            &Limits::default(),
            Impact::Low,
            1,
        );
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["decision"], "refuse");
        assert_eq!(v["refusals"][0]["limit"], "max_load");
        assert_eq!(v["refusals"][1]["limit"], "max_memory");
        let v = serde_json::to_value(Decision::Admit { waived: vec![] }).unwrap();
        assert_eq!(v, serde_json::json!({"decision": "admit"}));
    }

    #[test]
    fn limits_serialize_with_the_timeout_in_seconds() {
        let l = Limits {
            acquire_timeout: Duration::from_millis(1500),
            max_cpu_pressure: Some(40.0),
            ..Limits::default()
        };
        assert_eq!(
            serde_json::to_value(&l).unwrap(),
            serde_json::json!({"max_load": 0.85, "max_memory": 0.80, "high_impact_load": 0.6,
                "max_concurrent": 8, "acquire_timeout_s": 1.5, "max_cpu_pressure": 40.0,
                "max_memory_pressure": null})
        );
    }

    fn parse(text: &str) -> Limits {
        let file = crate::settings::SettingsFile::parse(std::path::Path::new("s.json"), text);
        Limits::from_settings(&file.unwrap().typed().unwrap().resource_limits)
    }

    #[test]
    fn limits_from_settings_defaults_and_overrides() {
        assert_eq!(parse("{}"), Limits::default());
        assert_eq!(parse(r#"{"resource_limits": {}}"#), Limits::default());
        let l = parse(
            r#"{"permissions": {}, "resource_limits": {"max_load": 1000, "max_memory": 1.0,
               "max_concurrent": 3, "acquire_timeout_s": 1.5, "high_impact_load": 0,
               "max_cpu_pressure": 12.5, "max_memory_pressure": 7}}"#,
        );
        assert_eq!(
            l,
            Limits {
                max_load: 1000.0,
                max_memory: 1.0,
                high_impact_load: 0.0,
                max_concurrent: 3,
                acquire_timeout: Duration::from_millis(1500),
                max_cpu_pressure: Some(12.5),
                max_memory_pressure: Some(7.0),
            }
        );
        // Each key on its own replaces only its own default.
        let one = parse(r#"{"resource_limits": {"max_memory_pressure": 9}}"#);
        assert_eq!(
            one,
            Limits {
                max_memory_pressure: Some(9.0),
                ..Limits::default()
            }
        );
    }
}
