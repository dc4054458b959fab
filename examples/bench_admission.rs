//! Cost of one admission decision with fresh probes and of a slot acquire/release round
//! trip, beside the cost of reading `/proc/loadavg` alone. Run by `scripts/bench-admission`.

use std::ops::ControlFlow;
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
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
        std::hint::black_box(decide(&Probes::read(), &Limits::default(), Impact::High));
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
