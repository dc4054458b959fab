//! Reading Slurm's queue: job states, the parsers for `squeue`/`scontrol`/`sacct` output,
//! and the [`Poller`] that asks `squeue` about every job in flight with one call.
//!
//! Text formats, not `--json`: the JSON layout changes with every Slurm release (its
//! data_parser plugin version), while `squeue --format` fields have been stable for a
//! decade. Every field qw reads is free of the separator `|` except the last one.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A Slurm job's state as `squeue %T` / `scontrol JobState=` print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobState {
    /// Waiting for resources, its begin time, a dependency, a hold…
    Pending,
    /// Running (also CONFIGURING, SUSPENDED, SIGNALING, STAGE_OUT…: alive).
    Active(String),
    /// Ended; processes may still be being killed.
    Completing,
    /// Ended: COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, PREEMPTED,
    /// OUT_OF_MEMORY, BOOT_FAIL, DEADLINE… (the name as Slurm wrote it).
    Ended(String),
}

impl JobState {
    /// Parse Slurm's state name (`CANCELLED by 0` is accepted as `CANCELLED`).
    pub(crate) fn parse(text: &str) -> JobState {
        let name = text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_end_matches('+')
            .to_ascii_uppercase();
        match name.as_str() {
            "PENDING" | "PD" => JobState::Pending,
            "COMPLETING" | "CG" => JobState::Completing,
            "COMPLETED" | "CANCELLED" | "FAILED" | "TIMEOUT" | "NODE_FAIL" | "PREEMPTED"
            | "OUT_OF_MEMORY" | "BOOT_FAIL" | "DEADLINE" | "REVOKED" | "SPECIAL_EXIT" => {
                JobState::Ended(name)
            }
            _ => JobState::Active(name),
        }
    }

    /// The job will not run any more and its processes are gone.
    pub(crate) fn is_ended(&self) -> bool {
        matches!(self, JobState::Ended(_))
    }

    /// Slurm's name for it.
    pub(crate) fn name(&self) -> &str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Completing => "COMPLETING",
            JobState::Active(s) | JobState::Ended(s) => s,
        }
    }
}

/// One job as the queue shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueEntry {
    /// The job id.
    pub id: String,
    /// Its state.
    pub state: JobState,
    /// Why it is pending (or `None`).
    pub reason: Option<String>,
    /// The node(s) it runs or ran on.
    pub nodes: Option<String>,
    /// Time used, as Slurm prints it (`1:02`, `1-02:03:04`).
    pub elapsed: String,
    /// Its partition.
    pub partition: String,
}

/// The `squeue --format` for [`parse_squeue`]; `%Z` (the working directory) is last
/// because it is the only field that may contain the separator.
pub(crate) const SQUEUE_FORMAT: &str = "%i|%T|%r|%N|%M|%P|%j|%k|%Z";

/// One row of [`SQUEUE_FORMAT`] output, with the fields only listings need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueRow {
    /// State, reason, node, time used, partition.
    pub entry: QueueEntry,
    /// The job name (`qw/<spec>/<task>` for qw's jobs).
    pub name: String,
    /// The job's comment (qw writes its owner there).
    pub comment: String,
    /// The job's working directory (for qw's jobs: the run folder).
    pub workdir: String,
}

/// Parse `squeue --noheader --format=SQUEUE_FORMAT` output; malformed lines are skipped.
pub(crate) fn parse_squeue(text: &str) -> Vec<QueueRow> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.splitn(9, '|').collect();
            if f.len() < 9 || f[0].trim().is_empty() {
                return None;
            }
            let none_if = |s: &str| {
                let s = s.trim();
                (!s.is_empty() && s != "None" && s != "(null)" && s != "n/a").then(|| s.to_owned())
            };
            Some(QueueRow {
                entry: QueueEntry {
                    id: f[0].trim().to_owned(),
                    state: JobState::parse(f[1]),
                    reason: none_if(f[2]),
                    nodes: none_if(f[3]),
                    elapsed: f[4].trim().to_owned(),
                    partition: f[5].trim().to_owned(),
                },
                name: f[6].trim().to_owned(),
                comment: none_if(f[7]).unwrap_or_default(),
                workdir: f[8].trim_end_matches(['\r', '\n']).to_owned(),
            })
        })
        .collect()
}

/// What `scontrol show job -o` (or `sacct`) says about an ended job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct JobDetail {
    /// `JobState=`.
    pub state: Option<String>,
    /// `Reason=` (`None` when Slurm says `None`).
    pub reason: Option<String>,
    /// `ExitCode=` as `code:signal`.
    pub exit_code: Option<(i32, i32)>,
    /// `NodeList=`.
    pub nodes: Option<String>,
    /// `Partition=`.
    pub partition: Option<String>,
}

/// Parse one `scontrol show job -o` line (`Key=Value` words).
pub(crate) fn parse_scontrol(text: &str) -> JobDetail {
    let mut d = JobDetail::default();
    let value = |v: &str| (!v.is_empty() && v != "None" && v != "(null)").then(|| v.to_owned());
    for word in text.split_whitespace() {
        let Some((k, v)) = word.split_once('=') else {
            continue;
        };
        match k {
            "JobState" if d.state.is_none() => d.state = value(v),
            "Reason" if d.reason.is_none() => d.reason = value(v),
            "ExitCode" if d.exit_code.is_none() => d.exit_code = parse_exit_code(v),
            "NodeList" if d.nodes.is_none() => d.nodes = value(v),
            "Partition" if d.partition.is_none() => d.partition = value(v),
            _ => {}
        }
    }
    d
}

/// Parse `sacct -n -P -X -o State,ExitCode,NodeList,Reason,Partition` (first line).
pub(crate) fn parse_sacct(text: &str) -> Option<JobDetail> {
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    let f: Vec<&str> = line.split('|').collect();
    let value = |i: usize| {
        f.get(i)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty() && *s != "None")
            .map(str::to_owned)
    };
    Some(JobDetail {
        state: value(0).map(|s| JobState::parse(&s).name().to_owned()),
        exit_code: value(1).as_deref().and_then(parse_exit_code),
        nodes: value(2),
        reason: value(3),
        partition: value(4),
    })
}

fn parse_exit_code(v: &str) -> Option<(i32, i32)> {
    let (code, sig) = v.split_once(':')?;
    Some((code.parse().ok()?, sig.parse().ok()?))
}

/// Run a Slurm command and return its stdout; the error is one line naming the command.
pub(crate) fn run_tool(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("`{program}` was not found on PATH (Slurm's client commands are needed for --executor slurm)")
            } else {
                format!("cannot run `{program}`: {e}")
            }
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        Err(format!(
            "`{program} {}` failed ({}){}",
            args.join(" "),
            out.status,
            if err.is_empty() {
                String::new()
            } else {
                format!(": {}", err.lines().last().unwrap_or(err))
            }
        ))
    }
}

/// The queue rows for `ids` (any state Slurm still remembers). Jobs Slurm has forgotten
/// are simply absent.
pub(crate) fn query(ids: &[String]) -> Result<Vec<QueueRow>, String> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let jobs = ids.join(",");
    match run_tool(
        "squeue",
        &[
            "--noheader",
            "--states=all",
            &format!("--jobs={jobs}"),
            &format!("--format={SQUEUE_FORMAT}"),
        ],
    ) {
        Ok(text) => Ok(parse_squeue(&text)),
        // Every id unknown (purged after MinJobAge): squeue fails instead of printing nothing.
        Err(e) if e.contains("Invalid job id") => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The details of an ended job: `scontrol show job`, else `sacct` (clusters with
/// accounting remember jobs longer than MinJobAge), else nothing.
pub(crate) fn detail(id: &str) -> Option<JobDetail> {
    if let Ok(text) = run_tool("scontrol", &["show", "job", "-o", id]) {
        let d = parse_scontrol(&text);
        if d.state.is_some() {
            return Some(d);
        }
    }
    let text = run_tool(
        "sacct",
        &[
            "-n",
            "-P",
            "-X",
            "-j",
            id,
            "-o",
            "State,ExitCode,NodeList,Reason,Partition",
        ],
    )
    .ok()?;
    parse_sacct(&text)
}

/// Asks `squeue` about every watched job in one call, every `interval` or at once when
/// kicked, from one background thread; waiters read the latest answer.
///
/// One call per interval whatever the number of jobs: a thousand agents in flight cost
/// slurmctld the same two RPCs a second as one (docs/SCALING.md).
#[derive(Debug, Clone)]
pub(crate) struct Poller {
    shared: Arc<(Mutex<PollState>, Condvar)>,
    interval: Duration,
}

#[derive(Debug, Default)]
struct PollState {
    /// Watched jobs and their last known row (`None`: not seen yet).
    jobs: HashMap<String, Seen>,
    /// A waiter wants a fresh answer now.
    kicked: bool,
    /// Bumped after every answer.
    generation: u64,
    /// The poll thread is alive.
    running: bool,
    /// The last query error, if the last query failed.
    error: Option<String>,
}

/// What the poller knows about one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Not answered yet.
    Unknown,
    /// In the queue, as this row says.
    Row(QueueEntry),
    /// Absent from an answer after it had been seen: Slurm forgot it (it ended).
    Gone,
}

/// How long [`Poller::unwatch`] waits for the poll thread's last `squeue` call.
const UNWATCH_WAIT: Duration = Duration::from_secs(60);

/// Shortest time between two queries, even when kicked repeatedly.
const MIN_GAP: Duration = Duration::from_millis(50);

impl Poller {
    /// A poller that queries every `interval`.
    pub(crate) fn new(interval: Duration) -> Poller {
        Poller {
            shared: Arc::new((Mutex::new(PollState::default()), Condvar::new())),
            interval,
        }
    }

    /// Wait for a notification while `waiting` holds of the state, until `deadline`;
    /// true when the deadline came first.
    fn wait_while<'a>(
        &'a self,
        mut st: MutexGuard<'a, PollState>,
        deadline: Instant,
        waiting: impl Fn(&PollState) -> bool,
    ) -> (MutexGuard<'a, PollState>, bool) {
        while waiting(&st) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (st, true);
            }
            st = self
                .shared
                .1
                .wait_timeout(st, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        (st, false)
    }

    fn lock(&self) -> MutexGuard<'_, PollState> {
        self.shared
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Start watching `id` (and the poll thread, if it is not running).
    pub(crate) fn watch(&self, id: &str) {
        let mut st = self.lock();
        st.jobs.insert(id.to_owned(), Seen::Unknown);
        st.kicked = true;
        if !st.running {
            st.running = true;
            let poller = self.clone();
            std::thread::spawn(move || poller.thread());
        }
        self.shared.1.notify_all();
    }

    /// Stop watching `id`. When it was the last job watched, wait for the poll thread to
    /// end (at most the `squeue` call in flight): a `qw` that returns, and may exit, right
    /// after must leave no `squeue` of its own running behind it.
    pub(crate) fn unwatch(&self, id: &str) {
        let mut st = self.lock();
        st.jobs.remove(id);
        if !st.jobs.is_empty() {
            return;
        }
        self.shared.1.notify_all();
        // Bounded: a `squeue` that hangs on an unreachable controller is not waited out.
        let deadline = Instant::now() + UNWATCH_WAIT;
        let (_st, timed_out) = self.wait_while(st, deadline, |st| st.running && st.jobs.is_empty());
        if timed_out {
            tracing::warn!("the Slurm poll thread is still asking `squeue`; not waiting for it");
        }
    }

    /// Ask for a fresh answer as soon as possible.
    pub(crate) fn kick(&self) {
        let mut st = self.lock();
        st.kicked = true;
        self.shared.1.notify_all();
    }

    /// Wait up to `max` for an answer newer than `generation`; return what is known about
    /// `id`, the current generation and the last query error.
    pub(crate) fn wait(
        &self,
        id: &str,
        generation: u64,
        max: Duration,
    ) -> (Seen, u64, Option<String>) {
        let st = self.lock();
        let deadline = Instant::now() + max;
        let (st, _) = self.wait_while(st, deadline, |st| st.generation == generation);
        let seen = st.jobs.get(id).cloned().unwrap_or(Seen::Gone);
        (seen, st.generation, st.error.clone())
    }

    fn thread(&self) {
        let mut last = Instant::now() - self.interval;
        loop {
            let ids: Vec<String> = {
                let mut st = self.lock();
                loop {
                    if st.jobs.is_empty() {
                        st.running = false;
                        self.shared.1.notify_all();
                        return;
                    }
                    let due = last + if st.kicked { MIN_GAP } else { self.interval };
                    let now = Instant::now();
                    if now >= due {
                        break;
                    }
                    st = self
                        .shared
                        .1
                        .wait_timeout(st, due - now)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                st.kicked = false;
                st.jobs.keys().cloned().collect()
            };
            last = Instant::now();
            let answer = query(&ids);
            let mut st = self.lock();
            match answer {
                Ok(rows) => {
                    st.error = None;
                    let mut by_id: HashMap<String, QueueEntry> = rows
                        .into_iter()
                        .map(|r| (r.entry.id.clone(), r.entry))
                        .collect();
                    for id in ids {
                        if let Some(seen) = st.jobs.get_mut(&id) {
                            *seen = match by_id.remove(&id) {
                                Some(entry) => Seen::Row(entry),
                                None => Seen::Gone,
                            };
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("asking Slurm about jobs {}: {e}", ids.join(","));
                    st.error = Some(e);
                }
            }
            st.generation += 1;
            self.shared.1.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_into_pending_active_and_ended() {
        assert_eq!(JobState::parse("PENDING"), JobState::Pending);
        assert_eq!(JobState::parse("COMPLETING"), JobState::Completing);
        assert_eq!(
            JobState::parse("RUNNING"),
            JobState::Active("RUNNING".into())
        );
        assert_eq!(
            JobState::parse("CANCELLED by 0"),
            JobState::Ended("CANCELLED".into())
        );
        assert_eq!(
            JobState::parse("CANCELLED+"),
            JobState::Ended("CANCELLED".into())
        );
        for s in [
            "COMPLETED",
            "FAILED",
            "TIMEOUT",
            "NODE_FAIL",
            "PREEMPTED",
            "OUT_OF_MEMORY",
        ] {
            assert!(JobState::parse(s).is_ended(), "{s}");
        }
        for s in [
            "RUNNING",
            "SUSPENDED",
            "CONFIGURING",
            "COMPLETING",
            "PENDING",
        ] {
            assert!(!JobState::parse(s).is_ended(), "{s}");
        }
    }

    #[test]
    fn squeue_rows_keep_a_workdir_with_the_separator_and_skip_junk() {
        let text = "\
17|PENDING|BeginTime||0:00|qw|qw/demo/1.2|qw:vm:1.2.ab|/p/.claude/runs/x\n\
18|RUNNING|None|vm|1:02|qw|qw/demo/2|qw:vm:1.2.ab|/p/odd|dir\n\
garbage\n\
19|COMPLETED|None|vm|0:01|debug|wrap|(null)|/tmp\n";
        let rows = parse_squeue(text);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].entry.state, JobState::Pending);
        assert_eq!(rows[0].entry.reason.as_deref(), Some("BeginTime"));
        assert_eq!(rows[0].entry.nodes, None);
        assert_eq!(rows[0].name, "qw/demo/1.2");
        assert_eq!(rows[1].entry.reason, None);
        assert_eq!(rows[1].entry.nodes.as_deref(), Some("vm"));
        assert_eq!(rows[1].workdir, "/p/odd|dir");
        assert_eq!(rows[1].entry.elapsed, "1:02");
        assert_eq!(rows[2].comment, "");
        assert_eq!(rows[2].entry.partition, "debug");
    }

    #[test]
    fn scontrol_and_sacct_details() {
        let line = "JobId=14 JobName=wrap UserId=root(0) JobState=FAILED Reason=JobLaunchFailure \
                    Dependency=(null) ExitCode=0:53 Partition=qw NodeList=vm BatchHost=vm";
        let d = parse_scontrol(line);
        assert_eq!(d.state.as_deref(), Some("FAILED"));
        assert_eq!(d.reason.as_deref(), Some("JobLaunchFailure"));
        assert_eq!(d.exit_code, Some((0, 53)));
        assert_eq!(d.nodes.as_deref(), Some("vm"));
        assert_eq!(d.partition.as_deref(), Some("qw"));
        let d = parse_scontrol("JobId=3 JobState=COMPLETED Reason=None ExitCode=0:0");
        assert_eq!(d.reason, None);

        let d = parse_sacct("CANCELLED by 0|0:15|node7|None|gpu\n").unwrap();
        assert_eq!(d.state.as_deref(), Some("CANCELLED"));
        assert_eq!(d.exit_code, Some((0, 15)));
        assert_eq!(d.nodes.as_deref(), Some("node7"));
        assert_eq!(d.reason, None);
        assert_eq!(d.partition.as_deref(), Some("gpu"));
        assert_eq!(parse_sacct("\n"), None);
    }
}
