//! Supervision overhead on a real Claude Code run, and what a resumed retry saves.
//! Run by `scripts/bench-claude` against the scripted Messages API of the tests
//! (`tests/it/support/messages_api.rs`): no network, no key.
//!
//! 1. Wall time of `qw exec -- claude -p … --output-format stream-json --verbose` beside
//!    the same `claude -p …` alone, interleaved pairs in the same run (the order within a
//!    pair alternates); medians and their ratio (goal ≤ 1.05×).
//! 2. A task's first run reads a big file, writes one, and is stopped while the model
//!    hangs; then its retry runs once fresh (qw's full prompt: the work is redone) and
//!    once resumed (`--resume` with qw's short resume prompt: the work is kept). Input
//!    tokens as the server counts them (4 bytes a token), per retry.
//!
//! Usage: bench_claude QW CLAUDE [PAIRS]

#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark prints its figures
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

#[path = "../tests/it/support/messages_api.rs"]
#[allow(dead_code, unreachable_pub)]
mod messages_api;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use messages_api::{MessagesApi, Model, Step};
use quantumwala::agent::{self, Job, Phase, TaskJob};
use quantumwala::project::Project;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A command running `argv` against `api` with `home` as HOME, in `cwd`, the machine's
/// own `ANTHROPIC_*`/`CLAUDE*` variables removed.
fn command(argv: &[&str], api: &MessagesApi, home: &Path, cwd: &Path) -> Command {
    let mut c = Command::new(argv[0]);
    c.args(&argv[1..]).current_dir(cwd);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("ANTHROPIC_") || k.starts_with("CLAUDE") {
            c.env_remove(k.as_ref());
        }
    }
    for (k, v) in api.claude_env(home) {
        c.env(k, v);
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn timed(mut c: Command) -> Res<f64> {
    let t = Instant::now();
    let status = c.status()?;
    if !status.success() {
        return Err(format!("{c:?} failed: {status}").into());
    }
    Ok(t.elapsed().as_secs_f64())
}

/// One `claude -p PROMPT` (plus `extra`), stdout to `out`; stopped with SIGTERM to its
/// process group once `stop_when` holds. Returns the session id of its stream.
#[allow(clippy::too_many_arguments)]
fn run_claude(
    claude: &str,
    prompt: &str,
    extra: &[&str],
    api: &MessagesApi,
    home: &Path,
    cwd: &Path,
    out: &Path,
    stop_when: Option<&dyn Fn() -> bool>,
) -> Res<Option<String>> {
    use std::os::unix::process::CommandExt;
    let mut argv = vec![claude, "-p", prompt];
    argv.extend_from_slice(extra);
    argv.extend(["--output-format", "stream-json", "--verbose"]);
    argv.extend(["--permission-mode", "acceptEdits"]);
    let mut c = command(&argv, api, home, cwd);
    c.stdout(std::fs::File::create(out)?);
    c.process_group(0);
    let mut child = c.spawn()?;
    if let Some(stop) = stop_when {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop() && Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The group the child leads (its pid), never anything found by name.
        let pgid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGTERM);
    }
    child.wait()?;
    let stream = std::fs::read(out)?;
    Ok(agent::events::read_activity(&stream).session_id)
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let (qw, claude) = match (args.get(1), args.get(2)) {
        (Some(q), Some(c)) => (q.clone(), c.clone()),
        _ => return Err("usage: bench_claude QW CLAUDE [PAIRS]".into()),
    };
    let pairs: usize = args.get(3).map_or(Ok(20), |s| s.parse())?;
    let work = tempfile::tempdir()?;
    let home = work.path().join("home");
    let proj = work.path().join("p");
    std::fs::create_dir_all(&home)?;
    std::fs::create_dir_all(proj.join(".claude/specs/bench"))?;

    // 1. Overhead of supervision.
    let api = MessagesApi::start(Model::new().otherwise([Step::text("ok")]));
    let plain = [
        claude.as_str(),
        "-p",
        "Say ok.",
        "--output-format",
        "stream-json",
        "--verbose",
    ];
    let mut supervised = vec![qw.as_str(), "exec", "--no-record", "--"];
    supervised.extend_from_slice(&plain);
    // Warm up (first start reads the 400 MB binary from disk).
    timed(command(&plain, &api, &home, &proj))?;
    let (mut bare, mut sup) = (Vec::new(), Vec::new());
    for i in 0..pairs {
        if i % 2 == 0 {
            bare.push(timed(command(&plain, &api, &home, &proj))?);
            sup.push(timed(command(&supervised, &api, &home, &proj))?);
        } else {
            sup.push(timed(command(&supervised, &api, &home, &proj))?);
            bare.push(timed(command(&plain, &api, &home, &proj))?);
        }
    }
    let (mb, ms) = (median(bare.clone()), median(sup.clone()));
    let (tb, ts): (f64, f64) = (bare.iter().sum(), sup.iter().sum());
    println!("claude -p alone (reference): median {mb:.3} s over {pairs} runs");
    println!("qw exec -- claude -p:        median {ms:.3} s over {pairs} runs");
    println!(
        "ratio: {:.3}x of medians, {:.3}x of totals (goal <= 1.05x)",
        ms / mb,
        ts / tb
    );
    drop(api);

    // 2. A resumed retry against a fresh one.
    let big: String = (0..2000)
        .map(|i| format!("line {i:05}: the quick brown fox jumps over the lazy dog\n"))
        .collect();
    std::fs::write(proj.join("notes.txt"), &big)?;
    let project = Project::at(&proj);
    let job = Job {
        phase: Phase::Implementation,
        spec: "bench".into(),
        description: "Summarise notes.txt into summary.txt".into(),
        project_root: proj.clone(),
        workdir: proj.clone(),
        spec_dir: proj.join(".claude/specs/bench"),
        task: Some(TaskJob {
            id: "1".into(),
            title: "Summarise notes.txt".into(),
            details: vec!["Read notes.txt and write summary.txt".into()],
            verify: None,
            requirements: vec![],
        }),
        run_dir: work.path().join("run"),
        env: vec![],
    };
    let full = agent::prompt::build(&job, &project);
    let short = agent::prompt::resume(&job, "timed_out: the run took longer than 1800 s");
    let api = MessagesApi::start(
        Model::new()
            .when(
                agent::prompt::RESUME_HEADER,
                [Step::text("summary.txt is written; done.")],
            )
            .when(
                "FIRST RUN",
                [
                    Step::bash("cat notes.txt"),
                    Step::write("summary.txt", "foxes and dogs\n"),
                    Step::Hang,
                ],
            )
            .otherwise([
                Step::bash("cat notes.txt"),
                Step::write("summary.txt", "foxes and dogs\n"),
                Step::text("Wrote summary.txt."),
            ]),
    );
    let first_prompt = format!("FIRST RUN\n{full}");
    let session = run_claude(
        &claude,
        &first_prompt,
        &[],
        &api,
        &home,
        &proj,
        &work.path().join("first.jsonl"),
        Some(&|| api.messages().len() >= 3),
    )?
    .ok_or("the first run named no session")?;
    let before = api.input_tokens();
    let n_before = api.messages().len();
    run_claude(
        &claude,
        &full,
        &[],
        &api,
        &home,
        &proj,
        &work.path().join("fresh.jsonl"),
        None,
    )?;
    let fresh = api.input_tokens() - before;
    let fresh_requests = api.messages().len() - n_before;
    let before = api.input_tokens();
    let n_before = api.messages().len();
    run_claude(
        &claude,
        &short,
        &["--resume", &session],
        &api,
        &home,
        &proj,
        &work.path().join("resumed.jsonl"),
        None,
    )?;
    let resumed = api.input_tokens() - before;
    let resumed_requests = api.messages().len() - n_before;
    println!(
        "retry after a stopped run (it had read a {} KB file and written one):",
        big.len() / 1024
    );
    println!("  fresh (reference): {fresh} input tokens in {fresh_requests} requests");
    println!("  resumed:           {resumed} input tokens in {resumed_requests} requests");
    println!(
        "  resumed/fresh: {:.2}x ({:.0}% saved)",
        resumed as f64 / fresh as f64,
        100.0 * (1.0 - resumed as f64 / fresh as f64)
    );
    Ok(())
}
