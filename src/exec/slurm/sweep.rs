//! Cancelling the Slurm jobs of a `qw` that died without cancelling them (SIGKILL), and
//! listing the user's qw jobs.
//!
//! Every job carries its owner in its comment: `qw:<submit host>:<cookie>`, the cookie
//! naming the submitting `qw` process (pid and start time) as for local runs. A job whose
//! owner is not alive on the submit host is an orphan. Liveness can only be judged on the
//! submit host, so a sweep never touches jobs submitted from another host.
//!
//! Asking Slurm costs an RPC, so the automatic sweep at the start of a project command
//! asks only when an owner record exists: each executor creates
//! `<state dir>/owners/<host>-<cookie>` before its first submission and removes it when it
//! is dropped, so a record left behind by a dead owner is the sign of possible orphans.
//! `qw sweep` asks Slurm in any case.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::queue::{self, QueueRow, SQUEUE_FORMAT};
use super::submit::parse_owner_comment;
use crate::exec::RunId;

/// How long a sweep waits for cancelled jobs to end.
pub(crate) const SWEEP_WAIT: Duration = Duration::from_secs(60);

/// This machine's host name (as the owner comment records it).
pub(crate) fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The owner record of the executor with `cookie` on `host`.
pub(crate) fn owner_file(state_dir: &Path, host: &str, cookie: &str) -> PathBuf {
    state_dir.join("owners").join(format!("{host}-{cookie}"))
}

/// A job a sweep cancelled.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct CancelledJob {
    /// The job id.
    pub job_id: String,
    /// Its name (`qw/<spec>/<task>`).
    pub name: String,
    /// Its state when found.
    pub state: String,
    /// The dead owner's cookie.
    pub owner: String,
}

/// What a Slurm sweep did.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct SlurmSweep {
    /// The jobs cancelled.
    pub cancelled: Vec<CancelledJob>,
    /// Slurm could not be asked (the reason); owner records are kept for the next sweep.
    pub error: Option<String>,
}

/// The user's active jobs whose comment marks them as qw's.
pub(crate) fn qw_jobs() -> Result<Vec<QueueRow>, String> {
    let text = queue::run_tool(
        "squeue",
        &["--me", "--noheader", &format!("--format={SQUEUE_FORMAT}")],
    )?;
    Ok(queue::parse_squeue(&text)
        .into_iter()
        .filter(|r| parse_owner_comment(&r.comment).is_some())
        .collect())
}

/// Is `squeue` on PATH?
pub(crate) fn slurm_available() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("squeue").is_file()))
}

/// Has qw submitted Slurm jobs with owner records under `state_dir` (its `owners/` folder,
/// created before the first submission, is there)? Slurm is asked only then: asking a
/// controller that is down costs seconds.
pub(crate) fn used_from(state_dir: &Path) -> bool {
    state_dir.join("owners").is_dir()
}

/// Dead owners recorded under `state_dir` (records of this host only).
fn dead_owner_records(state_dir: &Path, host: &str) -> Vec<(PathBuf, String)> {
    let Ok(entries) = crate::fs::read_dir(state_dir.join("owners")) else {
        return Vec::new();
    };
    let prefix = format!("{host}-");
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let cookie = name.strip_prefix(&prefix)?.to_owned();
            let id = RunId::parse(&cookie)?;
            (!id.owner_alive()).then(|| (e.path(), cookie))
        })
        .collect()
}

/// Cancel orphaned qw jobs and wait (up to `wait`) until Slurm says they ended.
///
/// - `state_dir`: the project's owner records. With `all_owners` false, Slurm is asked
///   only if a dead owner left a record there, and only those owners' jobs are cancelled
///   (the automatic sweep). With `all_owners` true (`qw sweep`), every orphaned qw job of
///   this user from this host is cancelled, limited to jobs whose working directory is
///   under `project` when one is given.
/// - Slurm is asked at all only when a dead owner left a record, when qw has submitted
///   from `state_dir` before (its `owners/` folder exists), or when `force` is set: a
///   machine with Slurm's commands installed but unused by qw (or a controller that is
///   down) costs `qw sweep` nothing.
pub(crate) fn sweep_jobs(
    state_dir: Option<&Path>,
    project: Option<&Path>,
    all_owners: bool,
    force: bool,
    wait: Duration,
) -> SlurmSweep {
    let host = hostname();
    let records = state_dir
        .map(|d| dead_owner_records(d, &host))
        .unwrap_or_default();
    let mut out = SlurmSweep::default();
    let used_here = state_dir.is_some_and(used_from);
    if records.is_empty() && !(all_owners && (used_here || force) && slurm_available()) {
        return out;
    }
    let rows = match qw_jobs() {
        Ok(rows) => rows,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    let dead: Vec<&str> = records.iter().map(|(_, c)| c.as_str()).collect();
    let orphans: Vec<QueueRow> = rows
        .into_iter()
        .filter(|r| {
            let Some((h, cookie)) = parse_owner_comment(&r.comment) else {
                return false;
            };
            if h != host || r.entry.state.is_ended() {
                return false;
            }
            if dead.contains(&cookie) {
                return true;
            }
            all_owners
                && RunId::parse(cookie).is_some_and(|id| !id.owner_alive())
                && project.is_none_or(|p| Path::new(&r.workdir).starts_with(p))
        })
        .collect();
    if !orphans.is_empty() {
        let ids: Vec<&str> = orphans.iter().map(|r| r.entry.id.as_str()).collect();
        if let Err(e) = queue::run_tool("scancel", &ids) {
            out.error = Some(e);
        }
        let want: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match queue::query(&want) {
                Ok(rows) if rows.iter().all(|r| r.entry.state.is_ended()) => break,
                Ok(_) => {}
                Err(e) => {
                    out.error = Some(e);
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        out.cancelled = orphans
            .into_iter()
            .map(|r| CancelledJob {
                owner: parse_owner_comment(&r.comment)
                    .map(|(_, c)| c.to_owned())
                    .unwrap_or_default(),
                job_id: r.entry.id,
                name: r.name,
                state: r.entry.state.name().to_owned(),
            })
            .collect();
    }
    if out.error.is_none() {
        for (path, _) in records {
            let _ = crate::fs::remove_file(path);
        }
    }
    out
}
