//! `qw resources`: probes, limits, slots in use and the decision per impact class; and the
//! admission wait `qw exec --admit` performs before it starts its program.

use std::ops::ControlFlow;
use std::time::Instant;

use clap::Args;
use serde_json::{Value, json};

use super::out::outln;
use super::{CliError, CmdResult, Ctx};
use crate::admission::policy::LoadBasis;
use crate::admission::{
    AdmissionError, Decision, Impact, Probes, SlotGuard, WaitNotice, Waiting, decide, load_figure,
    policy,
};
use crate::exec::Cancel;
use crate::exit;
use crate::settings::{LimitSettings, LimitSource};

/// Arguments of `qw resources`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Limits come from `resource_limits` in .claude/settings.local.json (max_load, max_memory,
high_impact_load, max_concurrent, acquire_timeout_s, max_cpu_pressure, max_memory_pressure);
keys not set there use dev mode's (max_concurrent 4, max_load 0.70, max_memory 0.60) while
development_mode.enabled is true, else the defaults; each limit shows its source (settings
file, dev mode, default). `qw init` writes no limits, so every limit you did not choose
follows dev mode. Slots are shared by every qw process of the user
through the runtime directory ($QW_RUNTIME_DIR, else $XDG_RUNTIME_DIR/quantumwala, else
/tmp/quantumwala-<uid>). With no slot in use, one task may start whatever the load (the
memory limits still hold). The load compared with max_load is the 1-minute average per
CPU, or the run queue now when it is lower and CPU pressure (PSI) is at most 10 %.

When Slurm's commands are on PATH and qw has submitted jobs from this project (or, outside
a project, from this user's cache), the report ends with your qw jobs in Slurm's queue
(`squeue --me`, jobs whose comment marks them as qw's): id, name, state, pending reason,
node and time used. Local admission does not gate those jobs; Slurm schedules them.

Exit status: 0 report printed; 2 the settings file is not valid JSON or holds a bad limit.

Example:
  qw resources --json")]
pub struct ResourcesArgs {}

/// Run `qw resources`.
pub(crate) fn run(ctx: &Ctx, _args: ResourcesArgs) -> CmdResult {
    let settings = ctx.settings()?;
    let admission = super::resolve::admission(settings, None);
    let probes = Probes::read();
    let in_use = admission.slots.in_use();
    let queued = admission.slots.queued();
    let decisions: Vec<(Impact, Decision)> = Impact::ALL
        .into_iter()
        .map(|i| (i, decide(&probes, &admission.limits, i, in_use.len())))
        .collect();
    let slurm_jobs = slurm_jobs(&super::executor::dirs(&ctx.project).0);
    if settings.development_mode.enabled() && settings.resource_limits.is_old_init_defaults() {
        crate::diag!("{}", super::dev_mode::OLD_INIT_LIMITS_WARNING);
    }

    if ctx.global.json {
        let limits = serde_json::to_value(&admission.limits).unwrap_or(Value::Null);
        let source: serde_json::Map<String, Value> = LimitSettings::KEYS
            .iter()
            .map(|k| {
                let from = serde_json::to_value(settings.limit_source(k)).unwrap_or(Value::Null);
                ((*k).to_owned(), from)
            })
            .collect();
        let out = json!({
            "probes": {
                "load_avg": probes.load_avg,
                "running": probes.running,
                "usable_cpus": probes.usable_cpus,
                "cpu_source": probes.cpu_source,
                "load_per_cpu": probes.load_per_cpu(),
                "memory_used": probes.memory_used(),
                "memory": probes.memory,
                "cpu_pressure": probes.cpu_pressure,
                "memory_pressure": probes.memory_pressure,
            },
            "load_figure": load_figure(&probes),
            "limits": limits,
            "limits_source": source,
            "settings_file": admission.settings_path,
            "slots": {
                "runtime_dir": admission.slots.dir(),
                "max": admission.limits.max_concurrent,
                "in_use": in_use,
                "queued_pids": queued,
            },
            "decisions": decisions.iter().map(|(i, d)| (i.as_str().to_owned(), serde_json::to_value(d).unwrap_or(Value::Null))).collect::<serde_json::Map<_, _>>(),
            "system_stats": probes.system_stats_json(),
            "slurm_jobs": match &slurm_jobs {
                SlurmJobs::Unavailable => Value::Null,
                SlurmJobs::Error(e) => json!({"error": e}),
                SlurmJobs::Rows(rows) => Value::Array(rows.iter().map(|r| json!({
                    "job_id": r.entry.id,
                    "name": r.name,
                    "state": r.entry.state.name(),
                    "reason": r.entry.reason,
                    "nodes": r.entry.nodes,
                    "elapsed": r.entry.elapsed,
                    "partition": r.entry.partition,
                })).collect()),
            },
        });
        outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default())?;
        return Ok(exit::SUCCESS);
    }

    let l = &admission.limits;
    let opt =
        |v: Option<f64>, digits: usize| v.map_or("unknown".to_owned(), |v| format!("{v:.digits$}"));
    let mut rows: Vec<(String, String)> = Vec::new();
    let load = probes.load_avg.map_or("unknown".to_owned(), |a| {
        format!("{:.2} {:.2} {:.2}", a.one, a.five, a.fifteen)
    });
    rows.push(("load average".into(), load));
    rows.push((
        "usable CPUs".into(),
        format!(
            "{} ({})",
            trim(probes.usable_cpus),
            match probes.cpu_source {
                crate::admission::probes::CpuSource::Affinity => "affinity mask",
                crate::admission::probes::CpuSource::CgroupQuota => "cgroup cpu quota",
            }
        ),
    ));
    rows.push(("load per CPU".into(), opt(probes.load_per_cpu(), 2)));
    rows.push((
        "run queue now".into(),
        probes.running.map_or("unknown".to_owned(), |r| {
            // The reader (this process) is in the queue too.
            format!("{} task(s) besides qw resources", r.saturating_sub(1))
        }),
    ));
    rows.push((
        "load for limits".into(),
        load_figure(&probes).map_or("unknown (never blocks)".to_owned(), |f| {
            format!(
                "{:.2} per CPU ({})",
                f.per_cpu,
                match f.basis {
                    LoadBasis::OneMinuteAverage => "1-minute average".to_owned(),
                    LoadBasis::RunQueue => format!(
                        "run queue now: CPU pressure is at most {}, so the load average is stale",
                        trim(policy::CALM_CPU_PRESSURE)
                    ),
                }
            )
        }),
    ));
    let mut mem = opt(probes.memory_used(), 2);
    if let Some(limit) = probes.memory.cgroup_limit_bytes {
        mem.push_str(&format!(" (cgroup limit {} MiB)", limit / (1024 * 1024)));
    }
    rows.push(("memory in use".into(), mem));
    rows.push((
        "cpu pressure".into(),
        opt(probes.cpu_pressure, 2).replace("unknown", "n/a"),
    ));
    rows.push((
        "memory pressure".into(),
        opt(probes.memory_pressure, 2).replace("unknown", "n/a"),
    ));
    let src = |k: &str| match settings.limit_source(k) {
        LimitSource::Settings => "  (settings file)",
        LimitSource::DevMode => "  (dev mode)",
        LimitSource::Default => "  (default)",
    };
    let off = |v: Option<f64>| v.map_or("off".to_owned(), trim);
    for (key, value) in [
        ("max_load", trim(l.max_load)),
        ("max_memory", trim(l.max_memory)),
        ("high_impact_load", trim(l.high_impact_load)),
        ("max_concurrent", l.max_concurrent.to_string()),
        ("acquire_timeout_s", trim(l.acquire_timeout.as_secs_f64())),
        ("max_cpu_pressure", off(l.max_cpu_pressure)),
        ("max_memory_pressure", off(l.max_memory_pressure)),
    ] {
        rows.push((key.into(), format!("{value}{}", src(key))));
    }
    let holders: Vec<String> = in_use
        .iter()
        .map(|h| {
            format!(
                "#{} pid {}",
                h.slot,
                h.pid.map_or("?".into(), |p| p.to_string())
            )
        })
        .collect();
    let mut slots = format!("{} of {} in use", in_use.len(), l.max_concurrent);
    if !holders.is_empty() {
        slots.push_str(&format!(": {}", holders.join(", ")));
    }
    rows.push(("slots".into(), slots));
    rows.push(("queue".into(), format!("{} waiting", queued.len())));
    for (impact, d) in &decisions {
        rows.push((format!("decision {impact}"), d.to_string()));
    }
    rows.push((
        "settings file".into(),
        admission.settings_path.display().to_string(),
    ));
    rows.push((
        "runtime dir".into(),
        admission.slots.dir().display().to_string(),
    ));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        outln!("{k:<width$}  {v}")?;
    }
    match slurm_jobs {
        SlurmJobs::Unavailable => {}
        SlurmJobs::Error(e) => outln!("slurm jobs: cannot ask Slurm: {e}")?,
        SlurmJobs::Rows(rows) if rows.is_empty() => {
            outln!("slurm jobs: none of qw's in the queue")?
        }
        SlurmJobs::Rows(rows) => {
            outln!("slurm jobs ({}):", rows.len())?;
            let table: Vec<[String; 6]> = rows
                .iter()
                .map(|r| {
                    let state = r.entry.state.name().to_owned();
                    let why = match (&r.entry.reason, &r.entry.state) {
                        (Some(reason), crate::exec::slurm::queue::JobState::Pending) => {
                            format!("({reason})")
                        }
                        _ => String::new(),
                    };
                    [
                        r.entry.id.clone(),
                        r.name.clone(),
                        state,
                        why,
                        r.entry.nodes.clone().unwrap_or_else(|| "-".into()),
                        r.entry.elapsed.clone(),
                    ]
                })
                .collect();
            let head = ["JOBID", "NAME", "STATE", "REASON", "NODE", "ELAPSED"].map(String::from);
            let mut widths = [0usize; 6];
            for row in std::iter::once(&head).chain(table.iter()) {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.len());
                }
            }
            for row in std::iter::once(&head).chain(table.iter()) {
                let line: Vec<String> = row
                    .iter()
                    .zip(widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                outln!("  {}", line.join("  ").trim_end())?;
            }
        }
    }
    Ok(exit::SUCCESS)
}

/// The user's qw jobs in Slurm's queue, when Slurm is there and qw used it from here.
enum SlurmJobs {
    Unavailable,
    Error(String),
    Rows(Vec<crate::exec::slurm::queue::QueueRow>),
}

fn slurm_jobs(state_dir: &std::path::Path) -> SlurmJobs {
    use crate::exec::slurm::sweep;
    if !sweep::used_from(state_dir) || !sweep::slurm_available() {
        return SlurmJobs::Unavailable;
    }
    match sweep::qw_jobs() {
        Ok(rows) => SlurmJobs::Rows(rows),
        Err(e) => SlurmJobs::Error(e),
    }
}

/// A number without trailing zeros (`0.85`, `8`, `300`).
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `qw exec --admit[=IMPACT]`: wait for admission before the program starts. Returns the
/// slot (held until the run ends) and the milliseconds spent waiting. `impact` is None
/// without `--admit`; `timeout` (`--admit-timeout`) replaces `acquire_timeout_s`. Stops
/// waiting (exit 128+N) when `cancel` receives a signal.
pub(crate) fn admit_for_exec(
    ctx: &Ctx,
    impact: Option<&str>,
    timeout: Option<std::time::Duration>,
    cancel: &Cancel,
) -> Result<(Option<SlotGuard>, u64), CliError> {
    let Some(impact) = impact else {
        return Ok((None, 0));
    };
    let impact: Impact = impact
        .parse()
        .map_err(|e: crate::admission::ImpactError| CliError::usage(format!("--admit: {e}")))?;
    // Unreadable or bad settings: qw failed, not the program (exit 125).
    let settings = ctx.settings().map_err(|mut e| {
        e.code = exit::EXEC_FAILED;
        e
    })?;
    let admission = super::resolve::admission(settings, timeout);
    // Inside a task its workflow admitted (an agent's own `qw exec --admit -- cargo
    // test`): the task's slot covers it; waiting would wait for its own ancestor.
    if let Some(holder) = admission.held_for_this_process() {
        tracing::info!(
            slot = holder.slot,
            holder = ?holder.pid,
            "admission: runs under the slot of the task it belongs to"
        );
        return Ok((None, 0));
    }
    let start = Instant::now();
    let quiet = ctx.global.quiet;
    let mut notice = WaitNotice::default();
    let result = admission.acquire(impact, |w: &Waiting| {
        if cancel.pending().is_some() {
            return ControlFlow::Break(());
        }
        if !quiet && notice.due(w) {
            crate::diag!("qw: waiting for admission ({impact} impact): {w}");
        }
        ControlFlow::Continue(())
    });
    let waited = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(guard) => Ok((Some(guard), waited)),
        Err(AdmissionError::Cancelled) => {
            let sig = cancel.pending().unwrap_or(2);
            Err(CliError::with_code(
                exit::EXEC_SIGNAL_BASE + sig,
                format!(
                    "received signal {sig} while waiting for admission; the program was not started"
                ),
            ))
        }
        Err(e @ AdmissionError::TimedOut { .. }) => {
            let keys: Vec<String> = match &e {
                AdmissionError::TimedOut { waiting, .. } => waiting
                    .blocked_by
                    .iter()
                    .map(|r| format!("`resource_limits.{}`", r.limit.key()))
                    .collect(),
                _ => Vec::new(),
            };
            let mut err = CliError::with_code(
                exit::EXEC_FAILED,
                format!("{e}; the program was not started"),
            );
            if !keys.is_empty() {
                let wait = if timeout.is_some() {
                    "`--admit-timeout`"
                } else {
                    "`acquire_timeout_s`"
                };
                err = err.hint(format!(
                    "raise {} (or {wait}) in `{}`, or retry when the machine is less busy",
                    keys.join(", "),
                    admission.settings_path.display()
                ));
            }
            Err(err)
        }
        Err(e) => Err(CliError::with_code(exit::EXEC_FAILED, e.to_string())
            .hint("set QW_RUNTIME_DIR to a directory you own to keep admission slots elsewhere")),
    }
}
