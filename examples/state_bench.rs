//! Helper for `scripts/bench-state` (not part of qw): drives the state store, and an
//! unsynchronised write-temp-and-rename loop of the same size as the reference.
//!
//! Usage: `state_bench gen DIR TASKS` · `store DIR N` · `plain DIR N` · `count DIR` ·
//! `load DIR ITER` · `parse DIR ITER`
#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark prints its figures

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use quantumwala::project::Project;
use quantumwala::state::{Phase, Spec, StateStore, Task, TaskStatus, Timestamp, UnifiedState};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("state_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let (Some(mode), Some(dir)) = (args.get(1), args.get(2)) else {
        return Err("usage: state_bench gen|store|plain|count|load|parse DIR [N]".into());
    };
    let n: usize = args
        .get(3)
        .map_or(Ok(0), |s| s.parse())
        .map_err(|e| format!("{e}"))?;
    let project = Project::at(dir);
    let store = StateStore::new(&project);
    match mode.as_str() {
        "gen" => generate(&project, n),
        "store" => {
            for _ in 0..n {
                store
                    .update(|s| s.record_command("bench", true))
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        "plain" => plain(&project.state_file(), n),
        "count" => {
            let s = store.load().map_err(|e| e.to_string())?;
            println!("{}", s.commands.total_executed);
            Ok(())
        }
        "load" => {
            let t = Instant::now();
            for _ in 0..n.max(1) {
                let s = store.load().map_err(|e| e.to_string())?;
                let out = serde_json::to_string(&s).map_err(|e| e.to_string())?;
                std::hint::black_box(out);
            }
            println!(
                "{:.1}",
                t.elapsed().as_secs_f64() * 1000.0 / n.max(1) as f64
            );
            Ok(())
        }
        "parse" => {
            // What reading costs: StateStore::load (read, skip a BOM, tag Python's
            // NaN/Infinity/big integers, parse, check) against the bare serde_json parse
            // of the same bytes, the reference.
            let iter = n.max(1);
            let path = project.state_file();
            let t = Instant::now();
            for _ in 0..iter {
                std::hint::black_box(store.load().map_err(|e| e.to_string())?);
            }
            let load = t.elapsed().as_secs_f64() * 1000.0 / iter as f64;
            let t = Instant::now();
            for _ in 0..iter {
                let bytes = quantumwala::fs::read(&path).map_err(|e| e.to_string())?;
                let s: UnifiedState = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
                std::hint::black_box(s);
            }
            let bare = t.elapsed().as_secs_f64() * 1000.0 / iter as f64;
            println!("{load:.1} {bare:.1} {:.2}", load / bare);
            Ok(())
        }
        other => Err(format!("unknown mode `{other}`")),
    }
}

/// A state with `tasks` tasks spread over 10 specs.
fn generate(project: &Project, tasks: usize) -> Result<(), String> {
    let mut state = UnifiedState::new();
    for i in 0..tasks {
        let spec_name = format!("spec-{}", i % 10);
        let spec = state
            .specifications
            .entry(spec_name.clone())
            .or_insert_with(|| Spec {
                name: spec_name.clone(),
                description: "generated".into(),
                current_phase: Phase::Implementation,
                created_at: Some(Timestamp::now()),
                ..Spec::default()
            });
        let id = format!("{}.{}", i / 10, i % 7);
        spec.tasks.insert(
            format!("{i}"),
            Task {
                id,
                spec_name: spec_name.clone(),
                status: if i % 3 == 0 {
                    TaskStatus::Completed
                } else {
                    TaskStatus::Pending
                },
                agent: Some("developer".into()),
                description: format!("generated task number {i} with a realistic title"),
                started_at: Some(Timestamp::now()),
                completed_at: Some(Timestamp::now()),
                duration_seconds: Some(12.5),
                ..Task::default()
            },
        );
    }
    quantumwala::fs::create_dir_all(project.claude_dir()).map_err(|e| e.to_string())?;
    StateStore::new(project)
        .update(|s| *s = state)
        .map_err(|e| e.to_string())
}

/// The original's way: read, modify, write a temp file, rename — no lock, no fsync.
fn plain(path: &Path, n: usize) -> Result<(), String> {
    let tmp = PathBuf::from(format!("{}.plain{}", path.display(), std::process::id()));
    for _ in 0..n {
        let text = quantumwala::fs::read(path).map_err(|e| e.to_string())?;
        let mut s: UnifiedState = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
        s.record_command("bench", true);
        let bytes = serde_json::to_vec_pretty(&s).map_err(|e| e.to_string())?;
        quantumwala::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
        quantumwala::fs::rename(&tmp, path).map_err(|e| e.to_string())?;
    }
    Ok(())
}
