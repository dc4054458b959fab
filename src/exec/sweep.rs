//! Find and end processes orphaned by a `qw` that died without cleaning up (SIGKILL,
//! power loss of the terminal, OOM killer).
//!
//! A process is an orphan when its `QW_RUN_ID` cookie names an owner that is no longer
//! alive, or when its parent is an orphan the sweep has found (and stopped, so the child
//! is still its). Neither the calling process nor any of its ancestors is ever touched.
//!
//! The orphans of a dead owner have no parent in common to walk from, and a tree that
//! keeps moving (each generation forks and exits) is never all in one pass over `/proc`.
//! So every orphan is signalled as soon as it is read; each pass is followed by a look at
//! the pids handed out since it began (`/proc/sys/kernel/ns_last_pid`), where every hop
//! lands; to end them, each is stopped as read (SIGSTOP: it can fork no more, and its
//! children stay its) and killed at the end of the pass, and passes repeat until several
//! in a row find nothing.

use std::path::Path;
#[cfg(not(target_os = "linux"))]
use std::time::Duration;
#[cfg(target_os = "linux")]
use std::time::{Duration, Instant};

use super::Leftover;

/// Orphans listed in a report; more are counted, not listed.
const MAX_LISTED: usize = 64;

/// Passes in a row that must find nothing before a sweep believes no orphan is left.
#[cfg(target_os = "linux")]
const QUIET_PASSES: u32 = 3;

/// A sweep gives up on orphans that outlive SIGKILL (blocked in the kernel) when nothing
/// new was found for this long.
#[cfg(target_os = "linux")]
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// At most this many new pids are looked at in one window.
#[cfg(target_os = "linux")]
const WINDOW_CAP: usize = 16_384;

/// What a sweep ended.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct SweepReport {
    /// The first orphans that were signalled (at most 64), with their command lines.
    pub killed: Vec<Leftover>,
    /// How many orphans were signalled in all.
    pub count: usize,
    /// The distinct run ids they belonged to.
    pub runs: Vec<String>,
    /// Some orphan needed SIGKILL.
    pub escalated_to_kill: bool,
}

/// An orphan as read.
#[cfg(target_os = "linux")]
#[derive(Clone)]
struct Orphan {
    pid: i32,
    /// It leads its process group: a group a process of the run made, which only its
    /// descendants can join. Signalling the group reaches a child forked an instant ago,
    /// before it is seen (or `setsid()`s away).
    leads_group: bool,
    start_time: u64,
    comm: String,
    cookie: Option<String>,
}

/// What the passes of one sweep remember.
#[cfg(target_os = "linux")]
struct Finder {
    /// This process and its ancestors: never touched.
    protected: Vec<i32>,
    /// Only orphans started in this project (its `QW_PROJECT`), if set.
    project: Option<String>,
    /// Cookie → whether its owner is dead.
    orphaned: std::collections::HashMap<String, bool>,
    /// Orphans found and not yet seen gone: pid → start time.
    known: std::collections::HashMap<i32, u64>,
    /// `ns_last_pid` when the last look began.
    looked_upto: Option<i32>,
    /// The kernel's `pid_max`.
    pid_max: i32,
}

#[cfg(target_os = "linux")]
impl Finder {
    fn new(project: Option<&Path>) -> Finder {
        use super::procs;
        Finder {
            protected: procs::ancestors_of(std::process::id() as i32),
            project: project.map(|p| p.to_string_lossy().into_owned()),
            orphaned: std::collections::HashMap::new(),
            known: std::collections::HashMap::new(),
            looked_upto: None,
            pid_max: procs::pid_max(),
        }
    }

    /// `pid` if it is a live orphan. `maybe_thread`: it came from a window of new pids,
    /// which also holds threads.
    fn check(&mut self, pid: i32, maybe_thread: bool) -> Option<Orphan> {
        use super::cookie::{COOKIE_VAR, PROJECT_VAR, RunId};
        use super::procs;
        if self.protected.contains(&pid) {
            return None;
        }
        // Most processes carry no cookie: read the environment first, the stat after.
        let environ = procs::read_environ(pid);
        let env_var = |name| {
            environ
                .as_deref()
                .and_then(|e| procs::environ_var(e, name))
                .map(str::to_owned)
        };
        let cookie = env_var(COOKIE_VAR);
        if cookie.is_none() && self.known.is_empty() {
            return None;
        }
        let stat = procs::read_stat(pid)?;
        if !stat.alive() {
            return None;
        }
        let known = |p: i32, start: u64| self.known.get(&p) == Some(&start);
        let by_parent = known(pid, stat.start_time)
            || self.known.contains_key(&stat.ppid)
                && procs::read_stat(stat.ppid)
                    .is_some_and(|parent| known(parent.pid, parent.start_time));
        let mut by_cookie = || {
            let in_scope = match (&self.project, env_var(PROJECT_VAR)) {
                (Some(want), Some(have)) => *want == have,
                (Some(_), None) => false,
                (None, _) => true,
            };
            in_scope
                && cookie.as_deref().is_some_and(|c| {
                    *self
                        .orphaned
                        .entry(c.to_owned())
                        .or_insert_with(|| RunId::parse(c).is_some_and(|id| !id.owner_alive()))
                })
        };
        if !(by_parent || by_cookie()) {
            return None;
        }
        if maybe_thread && !procs::is_process(pid) {
            return None;
        }
        self.known.insert(pid, stat.start_time);
        Some(Orphan {
            pid,
            leads_group: stat.pgid == pid,
            start_time: stat.start_time,
            comm: stat.comm,
            cookie,
        })
    }

    /// One pass over `/proc`, then the pids handed out since it began; `act` on each
    /// orphan as it is read. True if any was found.
    fn pass(&mut self, act: &mut dyn FnMut(&Orphan)) -> bool {
        use super::procs;
        let upto = procs::last_pid();
        let mut listed = std::collections::HashSet::new();
        let mut any = false;
        for pid in procs::pids() {
            listed.insert(pid);
            if let Some(o) = self.check(pid, false) {
                act(&o);
                any = true;
            }
        }
        // Forget what is gone: a later process may reuse the pid.
        self.known.retain(|pid, _| listed.contains(pid));
        self.looked_upto = upto;
        any | self.chase(act)
    }

    /// Look at the pids handed out since the last look, again while that finds orphans
    /// (a hop lands in the next window). True if any was found.
    fn chase(&mut self, act: &mut dyn FnMut(&Orphan)) -> bool {
        use super::procs;
        let mut any = false;
        for _ in 0..1000 {
            let (Some(from), Some(to)) = (self.looked_upto, procs::last_pid()) else {
                return any;
            };
            let Some(pids) = procs::pids_between(from, to, self.pid_max, WINDOW_CAP) else {
                return any; // too many: the next pass sees them
            };
            self.looked_upto = Some(to);
            let mut found = false;
            for pid in pids {
                if let Some(o) = self.check(pid, true) {
                    act(&o);
                    found = true;
                }
            }
            any |= found;
            if !found {
                return any;
            }
        }
        any
    }
}

#[cfg(target_os = "linux")]
impl SweepReport {
    /// Count and list `o` the first time it is met (before it is signalled: a dying
    /// process has no command line).
    fn note(&mut self, seen: &mut std::collections::HashSet<(i32, u64)>, o: &Orphan) {
        if !seen.insert((o.pid, o.start_time)) {
            return;
        }
        self.count += 1;
        if let Some(c) = &o.cookie
            && !self.runs.contains(c)
        {
            self.runs.push(c.clone());
        }
        if self.killed.len() < MAX_LISTED {
            let command = super::procs::command_line(o.pid, &o.comm);
            tracing::info!(
                pid = o.pid,
                command = %command,
                run_id = o.cookie.as_deref().unwrap_or(""),
                "sweep ended an orphaned process"
            );
            self.killed.push(Leftover {
                pid: o.pid,
                command,
            });
        }
    }
}

/// End every orphan of this user; with `project`, only orphans started in that project.
/// SIGTERM (and SIGCONT) first, to each orphan as it is found, for up to `grace` or until
/// none is seen for a while; then SIGSTOP as found and SIGKILL at the end of each round,
/// until several quiet stretches in a row find none. A stretch is [`STRETCH`] (and at
/// least [`STRETCH_LOOKS`] looks) of looking at the new pids, where every hop lands,
/// closed by a full pass.
#[cfg(target_os = "linux")]
pub(crate) fn sweep(project: Option<&Path>, grace: Duration) -> SweepReport {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    // The orphan, and the group it leads.
    let signal = |o: &Orphan, s: Signal| {
        let _ = kill(Pid::from_raw(o.pid), s);
        if o.leads_group && o.pid > 1 {
            let _ = kill(Pid::from_raw(-o.pid), s);
        }
    };
    let mut finder = Finder::new(project);
    let mut report = SweepReport::default();
    let mut seen = std::collections::HashSet::new();
    let mut term = |report: &mut SweepReport, o: &Orphan| {
        if !seen.contains(&(o.pid, o.start_time)) {
            report.note(&mut seen, o);
            signal(o, Signal::SIGTERM);
            signal(o, Signal::SIGCONT);
        }
    };
    // The one pass every automatic sweep pays for (`qw exec` in a project).
    if !finder.pass(&mut |o| term(&mut report, o)) {
        return report;
    }
    let deadline = Instant::now() + grace;
    let mut quiet = Quiet::new();
    while Instant::now() < deadline && !quiet.settled() {
        std::thread::sleep(Duration::from_millis(2));
        let any = finder.chase(&mut |o| term(&mut report, o));
        quiet.after_look(any, || finder.pass(&mut |o| term(&mut report, o)));
    }
    // Whether or not the grace was needed: stop and kill whatever is still found, and
    // look until several stretches in a row find nothing (a hopper that ignores SIGTERM
    // can hide from a few looks).
    let mut seen = std::mem::take(&mut seen);
    let mut quiet = Quiet::new();
    let mut last_new = Instant::now();
    let mut stopped: Vec<Orphan> = Vec::new();
    while !quiet.settled() && last_new.elapsed() < GIVE_UP_AFTER {
        let before = report.count;
        let mut stop = |o: &Orphan| {
            report.note(&mut seen, o);
            signal(o, Signal::SIGSTOP);
            stopped.push(o.clone());
        };
        let any = finder.chase(&mut stop);
        quiet.after_look(any, || finder.pass(&mut stop));
        for o in stopped.drain(..) {
            signal(&o, Signal::SIGKILL);
            report.escalated_to_kill = true;
        }
        if report.count > before {
            last_new = Instant::now();
        }
        // No sleep, no yield: on a loaded machine either puts the sweep at the back of
        // the queue, and it looks again long after the hopper moved on.
    }
    report
}

/// How long a quiet stretch of a sweep watches the new pids before its closing pass, and
/// how many looks it takes at least (on a loaded machine the time passes while the sweep
/// waits for a CPU, not looking).
#[cfg(target_os = "linux")]
const STRETCH: Duration = Duration::from_millis(50);
#[cfg(target_os = "linux")]
const STRETCH_LOOKS: u32 = 100;

/// Counts the quiet stretches of a sweep: a stretch is quiet when neither its looks at
/// new pids nor its closing full pass found an orphan.
#[cfg(target_os = "linux")]
struct Quiet {
    stretches: u32,
    found: bool,
    began: Instant,
    looks: u32,
}

#[cfg(target_os = "linux")]
impl Quiet {
    fn new() -> Quiet {
        Quiet {
            stretches: 0,
            found: false,
            began: Instant::now(),
            looks: 0,
        }
    }

    /// After a look that found orphans (`any`) or not; closes the stretch with `pass`
    /// when it has lasted [`STRETCH`].
    fn after_look(&mut self, any: bool, pass: impl FnOnce() -> bool) {
        self.found |= any;
        self.looks += 1;
        if self.began.elapsed() < STRETCH || self.looks < STRETCH_LOOKS {
            return;
        }
        self.found |= pass();
        self.stretches = if self.found { 0 } else { self.stretches + 1 };
        self.found = false;
        self.began = Instant::now();
        self.looks = 0;
    }

    /// Enough quiet stretches in a row.
    fn settled(&self) -> bool {
        self.stretches >= QUIET_PASSES
    }
}

/// Without `/proc` orphans cannot be found by cookie; nothing is done.
#[cfg(not(target_os = "linux"))]
pub fn sweep(_project: Option<&Path>, _grace: Duration) -> SweepReport {
    SweepReport::default()
}
