//! `qw logs SPEC [TASK] [--follow]`: a run's agent events as readable lines (the session
//! start, assistant text, one line per tool call and per result, the final summary), or
//! the captured output of an agent without an event stream. The rendering is
//! [`crate::agent::events::render`], the one the dashboard's run page uses.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use super::out::{self, outln};
use super::{CliError, CmdResult, Ctx};
use crate::agent::events::{BoundedLines, Line, LineKind, RenderOptions, render};
use crate::agent::runs::{self, Follow, RunUnit};
use crate::names::{self, NameKind};

/// Arguments of `qw logs`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Shows the newest run of the spec (of TASK, when given; any run with --run): what the
agent said, each tool
call with its target (`→ Write src/lib.rs`) and its answer (`← ok`, `← error`,
`← denied`), API retries, and the final summary (outcome, turns, tokens, cost) with any
refused permission. Runs live in .claude/runs/RUN/ (events.jsonl for claude); the other
runs of the task are named on stderr (a retry, a resume and the fresh run after a gone
session each have their own). An event line over 4 MiB is skipped with a note of its
size, and long assistant text is cut (it says so).

--follow keeps reading while the run writes and ends when it ends (its final result, or
no workflow of the spec is running any more). --json prints one object per line:
{\"run_id\", \"at\", \"kind\", \"text\"}.

Exit: 0 shown; 1 the spec has no run (yet) or a file could not be read; 2 bad spec name, or no such spec (neither its folder nor a state entry).

Examples:
  qw logs my-feature 2.1
  qw logs my-feature 2.1 --follow
  qw logs my-feature --run 20261201T120000000-my-feature-task-2.1-a1-0a1b2c
  qw logs my-feature --json | jq -r 'select(.kind == \"tool\") | .text'")]
pub struct LogsArgs {
    /// The spec.
    pub spec: String,
    /// A task id of its tasks.md (default: the spec's newest run, any phase or task).
    pub task: Option<String>,
    /// Show this run (a folder name under .claude/runs/) instead of the newest.
    #[arg(long, value_name = "RUN", conflicts_with = "task")]
    pub run: Option<String>,
    /// Keep printing while the run goes on; end when it ends.
    #[arg(short, long)]
    pub follow: bool,
}

/// How often `--follow` reads the stream.
const POLL: Duration = Duration::from_millis(200);
/// How often `--follow` checks that a workflow still runs the spec.
const ALIVE_CHECK: Duration = Duration::from_secs(1);

/// Run `qw logs`.
pub(crate) fn run(ctx: &Ctx, args: LogsArgs) -> CmdResult {
    names::validate(NameKind::Spec, &args.spec).map_err(|e| CliError::from_user(&e))?;
    let dir = match &args.run {
        Some(id) => given_run(&ctx.project, &args.spec, id)?,
        None => newest_run(&ctx.project, &args.spec, args.task.as_deref())?,
    };
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !ctx.global.json {
        crate::diag!("run {id}");
    }
    let mut printer = Printer {
        json: ctx.global.json,
        run_id: id,
        opts: RenderOptions {
            times: true,
            ..RenderOptions::default()
        },
    };
    let lock = ctx.project.workflow_lock_file(&args.spec);
    // Without handlers a signal simply ends the command, which is as good here.
    let cancel = crate::exec::Cancel::on_signals().unwrap_or_else(|_| crate::exec::Cancel::new());
    let mut follow: Option<Follow> = None;
    let mut raw_offset = 0u64;
    let mut alive_checked = Instant::now();
    loop {
        let output = runs::output_file(&dir);
        let finished = match &output {
            Some(path) if path.file_name().is_some_and(|n| n == "events.jsonl") => {
                let f = follow.get_or_insert_with(|| Follow::new(path));
                let records = f.poll().map_err(|e| read_error(path, &e))?;
                for rec in &records {
                    printer.record(rec)?;
                }
                f.activity().finished
            }
            Some(path) => {
                raw_offset = print_raw(path, raw_offset)?;
                false
            }
            None => false,
        };
        if finished || !args.follow {
            break;
        }
        if cancel.pending().is_some() {
            break;
        }
        // A run without its result ends when no workflow of the spec runs any more
        // (killed, interrupted, or an agent without an event stream that exited).
        if alive_checked.elapsed() >= ALIVE_CHECK {
            alive_checked = Instant::now();
            if !matches!(crate::fs::LockedFile::probe(&lock), Ok(Some(_))) {
                if let Some(f) = follow.as_mut() {
                    let _ = f.poll();
                    for rec in &f.finish() {
                        printer.record(rec)?;
                    }
                }
                if let Some(path) = output.filter(|p| !p.ends_with("events.jsonl")) {
                    print_raw(&path, raw_offset)?;
                }
                break;
            }
        }
        std::thread::sleep(POLL);
    }
    if !args.follow
        && let Some(f) = follow.as_mut()
        && f.activity().finished
    {
        // Nothing more will come; a last line without a newline is part of the log.
        for rec in &f.finish() {
            printer.record(rec)?;
        }
    }
    Ok(0)
}

/// Run `id` of `spec`, checked to be one of its run folders.
fn given_run(project: &crate::project::Project, spec: &str, id: &str) -> Result<PathBuf, CliError> {
    let dir = runs::run_dir(project, id)
        .filter(|_| runs::parse_run_name(id, spec).is_some())
        .ok_or_else(|| {
            CliError::usage(format!(
                "`{}` is not a run of spec `{spec}` (a folder name under `{}`)",
                crate::fmt::one_line(id, 80),
                project.runs_dir().display()
            ))
        })?;
    if !dir.is_dir() {
        return Err(CliError::failed(format!(
            "no run `{id}` in `{}`",
            project.runs_dir().display()
        )));
    }
    Ok(dir)
}

/// The newest run folder of `spec` (of `task` when given); the other runs of the task
/// are named on stderr (a retry, a resumed run and the fresh run after a gone session
/// each have a folder of their own).
fn newest_run(
    project: &crate::project::Project,
    spec: &str,
    task: Option<&str>,
) -> Result<PathBuf, CliError> {
    let all = runs::list(project, spec).map_err(|e| read_error(&project.runs_dir(), &e))?;
    let mut mine = all
        .iter()
        .rev()
        .filter(|r| task.is_none_or(|t| r.unit == RunUnit::Task(t.to_owned())));
    let newest = mine.next();
    if let (Some(t), Some(_)) = (task, newest) {
        let earlier: Vec<&str> = mine.map(|r| r.id.as_str()).collect();
        if !earlier.is_empty() {
            crate::diag!(
                "earlier runs of task {t} (newest first; `--run RUN` shows one): {}",
                earlier.join(", ")
            );
        }
    }
    match newest.and_then(|r| runs::run_dir(project, &r.id)) {
        Some(dir) => Ok(dir),
        None => {
            // A spec that does not exist is bad input (exit 2, as `spec-status`); one
            // that exists but has no run yet is not.
            let known = !all.is_empty()
                || project.spec_dir(spec).exists()
                || crate::state::StateStore::new(project)
                    .load()
                    .map_or(true, |s| s.specifications.contains_key(spec));
            if !known {
                return Err(crate::state::StateError::SpecNotFound {
                    name: spec.to_owned(),
                    dir: project.spec_dir(spec),
                }
                .into());
            }
            let what = match task {
                Some(t) => format!("task {t} of spec `{spec}`"),
                None => format!("spec `{spec}`"),
            };
            Err(CliError::failed(format!(
                "no run of {what} in `{}`",
                project.runs_dir().display()
            ))
            .hint(format!(
                "`qw spec-status {spec}` shows its tasks and their state"
            )))
        }
    }
}

fn read_error(path: &Path, e: &std::io::Error) -> CliError {
    CliError::failed(format!("cannot read `{}`: {e}", path.display()))
}

/// Print what a plain captured output gained since `offset`; the new offset. Read in
/// chunks: a line over [`crate::agent::events::MAX_LINE_BYTES`] is not printed, a note
/// with its size is.
fn print_raw(path: &Path, offset: u64) -> Result<u64, CliError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = crate::fs::open_regular(path).map_err(|e| read_error(path, &e))?;
    let len = file.metadata().map_err(|e| read_error(path, &e))?.len();
    if len <= offset {
        return Ok(offset.min(len));
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| read_error(path, &e))?;
    let mut lines = BoundedLines::default();
    let mut failed = None;
    let mut show = |line: Line<'_>| {
        let text = match line {
            Line::Whole(l) => String::from_utf8_lossy(l).into_owned(),
            Line::Oversized(n) => format!(
                "(skipped a line of {n} bytes: over the {} byte limit)",
                crate::agent::events::MAX_LINE_BYTES
            ),
        };
        if failed.is_none()
            && let Err(e) = outln!("{}", crate::fmt::printable(&text))
        {
            failed = Some(e);
        }
    };
    let mut buf = vec![0u8; runs::CHUNK];
    let mut read = 0u64;
    while read < len - offset {
        let want = usize::try_from(len - offset - read)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = file
            .read(&mut buf[..want])
            .map_err(|e| read_error(path, &e))?;
        if n == 0 {
            break;
        }
        read += n as u64;
        lines.push(&buf[..n], &mut show);
    }
    // The rest of an unfinished last line is shown as it is (plain output has no
    // records to wait for).
    lines.finish(&mut show);
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(offset + read)
}

/// Turns records into lines on stdout.
struct Printer {
    json: bool,
    run_id: String,
    opts: RenderOptions,
}

impl Printer {
    fn record(&mut self, rec: &crate::agent::events::Record) -> Result<(), CliError> {
        let at = rec.timestamp.clone();
        let json = self.json;
        if json {
            // The time goes in its own field.
            self.opts.times = false;
        }
        for text in render(rec, &mut self.opts) {
            if json {
                let line = serde_json::json!({
                    "run_id": self.run_id,
                    "at": at,
                    "kind": LineKind::of(&text).as_str(),
                    "text": text,
                });
                outln!("{line}")?;
            } else {
                outln!("{}", crate::fmt::printable(&text))?;
            }
        }
        std::io::stdout().flush().map_err(out::write_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_lines_get_their_kind() {
        let kind = |l: &str| LineKind::of(l).as_str();
        assert_eq!(kind("→ Write hello.txt"), "tool");
        assert_eq!(kind("  ↳ ← ok: File created"), "tool_ok");
        assert_eq!(kind("← denied: no"), "tool_error");
        assert_eq!(kind("Here is the plan."), "text");
        assert_eq!(
            kind("(skipped an event line of 5 bytes: over the 4 byte limit)"),
            "other"
        );
    }
}
