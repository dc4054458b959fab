//! Run by `scripts/bench-admission`, in two parts:
//! - without arguments: the cost of one admission decision with fresh probes and of a slot
//!   acquire/release round trip, beside the cost of reading `/proc/loadavg` alone;
//! - `--workflow BEFORE_QW AFTER_QW`: the time from `qw workflow-auto … --agent offline`
//!   starting to its first agent starting, on a machine whose load per CPU is above 1
//!   (made here by busy loops, started and ended by pid), for a reference binary and the
//!   current one: once while the loops still run, once right after they end (the load
//!   average still shows them, as after a build).
#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark prints its figures

use std::error::Error;
use std::ops::ControlFlow;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quantumwala::admission::probes::parse_loadavg;
use quantumwala::admission::{Impact, Limits, Probes, Slots, decide};

/// Median and mean of `n` timed calls, in microseconds.
fn time(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..n / 10 {
        f();
    }
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    v.sort_by(f64::total_cmp);
    (v[n / 2], v.iter().sum::<f64>() / n as f64)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => micro(),
        [flag, before, after] if flag == "--workflow" => {
            workflow_start(Path::new(before), Path::new(after))
        }
        _ => Err("usage: bench_admission [--workflow BEFORE_QW AFTER_QW]".into()),
    }
}

fn micro() -> Result<(), Box<dyn Error>> {
    let n = 2000;
    let generous = Limits {
        max_load: 1e9,
        max_memory: 1.0,
        high_impact_load: 1e9,
        ..Limits::default()
    };
    let reference = time(n, || {
        let text = quantumwala::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        std::hint::black_box(parse_loadavg(&text));
    });
    let probes = time(n, || {
        std::hint::black_box(Probes::read());
    });
    let decision = time(n, || {
        std::hint::black_box(decide(&Probes::read(), &Limits::default(), Impact::High, 0));
    });
    let dir = tempfile::tempdir()?;
    let slots = Slots::new(dir.path());
    let fixed = Probes::read();
    let go = |_: &_| ControlFlow::Continue(());
    let round_trip = time(n / 4, || {
        let g = slots.acquire_with(
            &generous,
            Impact::Normal,
            Duration::ZERO,
            || fixed.clone(),
            go,
        );
        drop(std::hint::black_box(g));
    });
    let full = time(n / 4, || {
        let g = slots.acquire(&generous, Impact::Normal, Duration::ZERO, go);
        drop(std::hint::black_box(g));
    });
    let ratio = |x: (f64, f64)| x.0 / reference.0;
    println!("operation                                   median µs   mean µs   × loadavg read");
    for (name, t) in [
        ("read /proc/loadavg (reference)", reference),
        ("Probes::read (all probes)", probes),
        ("decision with fresh probes", decision),
        ("slot acquire+release (fixed probes)", round_trip),
        ("slot acquire+release with fresh probes", full),
    ] {
        println!("{name:<42} {:>9.1} {:>9.1} {:>14.1}", t.0, t.1, ratio(t));
    }
    let goal = if decision.0 < 1000.0 { "met" } else { "MISSED" };
    println!("goal: one decision with fresh probes < 1 ms: {goal}");
    Ok(())
}

/// Busy loops (`sh -c 'while :; do :; done'`), ended by pid when dropped.
struct BusyLoops(Vec<Child>);

impl BusyLoops {
    fn start(n: usize) -> Result<BusyLoops, Box<dyn Error>> {
        let mut loops = BusyLoops(Vec::new());
        for _ in 0..n {
            loops.0.push(
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .spawn()?,
            );
        }
        Ok(loops)
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One `workflow-auto` run: seconds to its first agent start (or to giving up).
struct FirstStart {
    secs: f64,
    started: bool,
    load_at_start: f64,
    first_wait_line: Option<String>,
}

impl FirstStart {
    fn show(&self) -> String {
        if self.started {
            format!("{:.2} s", self.secs)
        } else {
            format!(">= {:.1} s (never started)", self.secs)
        }
    }
}

fn load_per_cpu() -> f64 {
    Probes::read().load_per_cpu().unwrap_or(0.0)
}

/// Run `qw workflow-auto` in a fresh project with a private runtime directory and the
/// default limits (`acquire_timeout_s` = `cap`), and time its first agent start: the first
/// run folder under `.claude/runs/`, which the workflow creates right after admission
/// (see `attempts()` in `src/workflow/runner/attempt.rs`).
fn first_start(qw: &Path, cap: Duration) -> Result<FirstStart, Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let settings = dir.path().join(".claude/settings.local.json");
    quantumwala::fs::create_dir_all(dir.path().join(".claude"))?;
    quantumwala::fs::write(
        &settings,
        format!(
            r#"{{"resource_limits": {{"acquire_timeout_s": {}}}}}"#,
            cap.as_secs_f64()
        ),
    )?;
    let log = dir.path().join("stderr.log");
    let runs = dir.path().join(".claude/runs");
    let load_at_start = load_per_cpu();
    let t0 = Instant::now();
    let mut child = Command::new(qw)
        .arg("-C")
        .arg(dir.path())
        .args([
            "workflow-auto",
            "bench-start",
            "Greet the user by name",
            "--agent",
            "offline",
        ])
        .env("QW_RUNTIME_DIR", dir.path().join("runtime"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(quantumwala::fs::File::create(&log)?.into_parts().0)
        .spawn()?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
    let mut started = false;
    loop {
        // Run folders are `<stamp>-<spec>-<label>-<hex>`; `.claude/runs/` also holds the
        // workflow's lock file, made before admission.
        let agent_ran = quantumwala::fs::read_dir(&runs).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains("-bench-start-"))
        });
        if agent_ran {
            started = true;
            break;
        }
        if child.try_wait()?.is_some() || t0.elapsed() > cap + Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let secs = t0.elapsed().as_secs_f64();
    // Let the workflow end on its own (it is quick once admitted), else stop it.
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            child.wait()?;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let first_wait_line = quantumwala::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .find(|l| l.contains("waiting for admission"))
        .map(|l| l.trim().to_owned());
    Ok(FirstStart {
        secs,
        started,
        load_at_start,
        first_wait_line,
    })
}

fn ratio(before: &FirstStart, after: &FirstStart) -> String {
    let r = before.secs / after.secs.max(1e-3);
    if before.started {
        format!("{r:.0}x")
    } else {
        format!(">= {r:.0}x")
    }
}

fn workflow_start(before: &Path, after: &Path) -> Result<(), Box<dyn Error>> {
    let cap = Duration::from_secs_f64(
        std::env::var("QW_BENCH_CAP")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60.0),
    );
    let label = std::env::var("QW_BENCH_BEFORE_LABEL").unwrap_or_else(|_| "before".into());
    let cpus = std::thread::available_parallelism()?.get();
    let loops = BusyLoops::start(2 * cpus)?;
    println!(
        "==> {} busy loops on {cpus} CPU(s); waiting until the 1-minute load passes 1 per CPU",
        2 * cpus
    );
    let t = Instant::now();
    while load_per_cpu() <= 1.0 {
        if t.elapsed() > Duration::from_secs(300) {
            return Err("the load per CPU did not rise above 1 within 300 s".into());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "    load per CPU {:.2} after {:.0} s",
        load_per_cpu(),
        t.elapsed().as_secs_f64()
    );
    let mut rows = Vec::new();
    println!("==> while the busy loops run (each run gives up after {cap:?})");
    let a = first_start(after, cap)?;
    let b = first_start(before, cap)?;
    rows.push(("busy loops running", b, a));
    drop(loops);
    println!("==> right after the busy loops end (the 1-minute average still shows them)");
    let a = first_start(after, cap)?;
    let b = first_start(before, cap)?;
    rows.push(("busy loops just ended", b, a));

    println!();
    println!("time from `workflow-auto … --agent offline` start to its first agent start");
    println!(
        "{:<24} {:>10} {:>28} {:>12} {:>9}",
        "machine", "load/CPU", label, "current", "ratio"
    );
    let mut met = true;
    for (name, b, a) in &rows {
        println!(
            "{name:<24} {:>10.2} {:>28} {:>12} {:>9}",
            a.load_at_start,
            b.show(),
            a.show(),
            ratio(b, a)
        );
        met &= a.started && a.secs < 2.0;
    }
    for (name, b, a) in &rows {
        for (who, r) in [(label.as_str(), b), ("current", a)] {
            if let Some(line) = &r.first_wait_line {
                println!("{name}, {who}: {line}");
            }
        }
    }
    let goal = if met { "met" } else { "MISSED" };
    println!("goal: first agent start < 2 s on a machine loaded above 1 per CPU: {goal}");
    Ok(())
}
