//! The set of processes that belong to one run, and ending them: SIGTERM (plus SIGCONT so
//! stopped processes can act on it), a grace period, then SIGKILL to every survivor.
//!
//! On Linux a process belongs to the run if it descends from the supervisor, which is a
//! child subreaper: `setsid()`-ed and double-forked descendants are re-parented to it, so
//! following parent links from `/proc/PID/stat` finds them all. Once seen, a process stays
//! a member until it is gone, and so do the children it forks. Only when the supervisor
//! could not become a subreaper does membership also rest on the run cookie in the
//! environment (the orphan sweep always uses the cookie). Elsewhere only the child's
//! process group can be signalled.
//!
//! A scan of `/proc` is not atomic: a tree that keeps moving (each generation forks and
//! exits, `setsid()`s again) can fork between the directory listing and the read of a
//! member, so a scan can come back empty while a process of the run is alive. Three
//! rules make that harmless:
//! - an empty scan ends the run only when the supervisor has no children left: as a
//!   subreaper, every descendant stays below it ([`Tree::may_hide_members`]);
//! - while members may hide, the hunt looks at the pids handed out since the last look
//!   (`/proc/sys/kernel/ns_last_pid`), a handful of reads, so it keeps pace with a tree
//!   that forks every millisecond; full scans in between catch older ones;
//! - members are signalled as soon as they are identified, not at the end of a scan, and
//!   a process with a fatal signal pending cannot complete a fork.
//!
//! cgroups would make this atomic (`cgroup.kill`), but moving a process into a cgroup costs
//! about 0.2 ms per move on the machines measured, which `qw exec -- true` cannot afford
//! beside GNU timeout; and qw must work where it may not create one.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Cancel, Leftover};

/// Processes named in a report's list; more are counted, not listed (a fork bomb would
/// otherwise print thousands of lines).
const MAX_LISTED: usize = 64;

/// How long SIGKILL is repeated at processes that do not die (blocked in the kernel, in
/// uninterruptible sleep) before the supervisor gives up on them and says so.
const UNKILLABLE_AFTER: Duration = Duration::from_secs(10);

/// Looks at new pids before the next full scan, while members may hide.
const HUNT_ROUNDS: usize = 200;

/// One run's process tree.
#[derive(Debug)]
pub(crate) struct Tree {
    /// The supervising process (never signalled).
    pub supervisor: i32,
    /// The direct child; it leads its own process group.
    pub child: i32,
    /// The run cookie every member inherits.
    pub cookie: String,
    /// The supervisor is a child subreaper: while it has children, a member may be alive.
    subreaper: bool,
    /// What the scans remember between calls.
    seen: std::cell::RefCell<Seen>,
}

/// What the scans of one tree remember.
#[derive(Debug, Default)]
struct Seen {
    /// Start time (clock ticks since boot) of the supervisor: every member is younger.
    since: Option<u64>,
    /// Every member seen and not yet gone: pid → start time.
    known: HashMap<i32, u64>,
    /// `ns_last_pid` when the last look began: later pids may be missing from it.
    looked_upto: Option<i32>,
    /// The kernel's `pid_max`.
    pid_max: i32,
}

/// A live member of a tree.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub pid: i32,
    pub start_time: u64,
    pub cpu_ticks: u64,
    pub comm: String,
}

/// How an escalation went.
#[derive(Debug, Default)]
pub(crate) struct Ending {
    /// SIGKILL was needed.
    pub escalated: bool,
    /// How many processes were ended: signalled one by one, or reaped after dying of a
    /// signal (the process-group signal reaches some before any scan sees them).
    pub count: usize,
    /// The first processes signalled one by one (at most [`MAX_LISTED`]), with their
    /// command lines.
    pub signalled: Vec<Leftover>,
    /// Processes still alive after SIGKILL was repeated for [`UNKILLABLE_AFTER`].
    pub unkillable: Vec<Leftover>,
}

/// What [`Tree::terminate`] asks of its caller on every round: collect exited children
/// and say which of them died of a signal.
pub(crate) type Reap<'a> = &'a mut dyn FnMut() -> Vec<i32>;

impl Tree {
    /// The tree of the run `cookie` whose direct child is `child`, supervised by this
    /// process; `subreaper` says whether this process is a child subreaper.
    pub(super) fn new(child: i32, cookie: String, subreaper: bool) -> Tree {
        Tree {
            supervisor: std::process::id() as i32,
            child,
            cookie,
            subreaper,
            seen: std::cell::RefCell::new(Seen::default()),
        }
    }

    /// Live (non-zombie) members, the supervisor excluded.
    pub(super) fn members(&self) -> Vec<Member> {
        let mut out = Vec::new();
        self.scan(&mut |m| out.push(m.clone()));
        out
    }

    /// True while some member may be alive although a scan did not see it: the supervisor
    /// is a subreaper and still has children (live, or exited and not yet reaped). Does
    /// not reap.
    #[cfg(target_os = "linux")]
    pub(super) fn may_hide_members(&self) -> bool {
        use nix::sys::wait::{Id, WaitPidFlag, waitid};
        self.subreaper
            && !matches!(
                waitid(
                    Id::All,
                    WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT
                ),
                Err(nix::errno::Errno::ECHILD)
            )
    }

    /// Without a subreaper nothing is hidden from the process-group check.
    #[cfg(not(target_os = "linux"))]
    pub fn may_hide_members(&self) -> bool {
        false
    }

    /// Scan all of `/proc`; call `found` for each live member as soon as it is identified.
    /// True if any was found.
    #[cfg(target_os = "linux")]
    fn scan(&self, found: &mut dyn FnMut(&Member)) -> bool {
        use super::procs;
        let mut seen = self.seen.borrow_mut();
        if seen.since.is_none() {
            seen.since = Some(procs::start_time_of(self.supervisor).unwrap_or(0));
            seen.pid_max = procs::pid_max();
        }
        let upto = procs::last_pid();
        let any = self.examine(&mut seen, procs::pids(), true, found);
        seen.looked_upto = upto;
        any
    }

    /// Look only at the pids handed out since the last look. True if a member was found;
    /// false also when there were too many to look at (the next full scan will).
    #[cfg(target_os = "linux")]
    fn probe(&self, found: &mut dyn FnMut(&Member)) -> bool {
        use super::procs;
        let mut seen = self.seen.borrow_mut();
        let (Some(from), Some(to)) = (seen.looked_upto, procs::last_pid()) else {
            return false;
        };
        let Some(pids) = procs::pids_between(from, to, seen.pid_max, 4096) else {
            seen.looked_upto = None;
            return false;
        };
        seen.looked_upto = Some(to);
        self.examine(&mut seen, pids, false, found)
    }

    /// Identify the members among `pids`. A process is one if it is known (same pid and
    /// start time), its parent is the supervisor or a known member, or — without a
    /// subreaper — it carries the cookie. `complete`: `pids` is all of `/proc`, so known
    /// members missing from it are gone.
    #[cfg(target_os = "linux")]
    fn examine(
        &self,
        seen: &mut Seen,
        pids: Vec<i32>,
        complete: bool,
        found: &mut dyn FnMut(&Member),
    ) -> bool {
        use super::procs;
        let since = seen.since.unwrap_or(0);
        let known = &mut seen.known;
        let mut any = false;
        // Younger than the supervisor, alive, not identified: decided once every parent
        // in `pids` has been looked at.
        let mut undecided: Vec<procs::Stat> = Vec::new();
        let mut alive: HashSet<i32> = HashSet::new();
        for pid in pids {
            if pid == self.supervisor {
                continue;
            }
            let Some(stat) = procs::read_stat(pid) else {
                continue;
            };
            if known.get(&pid).is_some_and(|&t| t != stat.start_time) {
                known.remove(&pid); // the pid was reused by another process
            }
            if stat.start_time < since || matches!(stat.state, 'Z' | 'X' | 'x') {
                continue;
            }
            let member = known.contains_key(&pid)
                || stat.ppid == self.supervisor
                || known
                    .get(&stat.ppid)
                    .is_some_and(|&parent_start| parent_start <= stat.start_time)
                || (!self.subreaper
                    && procs::read_cookie(pid).as_deref() == Some(self.cookie.as_str()));
            if member {
                known.insert(pid, stat.start_time);
                alive.insert(pid);
                any = true;
                found(&member_of(stat));
            } else {
                undecided.push(stat);
            }
        }
        // A parent listed after its child (pids wrap around) makes the child a member too.
        loop {
            let (members, rest): (Vec<_>, Vec<_>) =
                undecided.into_iter().partition(|s| alive.contains(&s.ppid));
            undecided = rest;
            if members.is_empty() {
                break;
            }
            for stat in members {
                known.insert(stat.pid, stat.start_time);
                alive.insert(stat.pid);
                any = true;
                found(&member_of(stat));
            }
        }
        if complete {
            // Forget members that are gone: a later process may reuse the pid.
            known.retain(|pid, _| alive.contains(pid));
        }
        any
    }

    /// Without `/proc`, the child's process group stands for the whole tree.
    #[cfg(not(target_os = "linux"))]
    fn scan(&self, found: &mut dyn FnMut(&Member)) -> bool {
        let alive = kill(Pid::from_raw(-self.child), None).is_ok();
        if alive {
            found(&Member {
                pid: -self.child,
                start_time: 0,
                cpu_ticks: 0,
                comm: "process group".into(),
            });
        }
        alive
    }

    #[cfg(not(target_os = "linux"))]
    fn probe(&self, _found: &mut dyn FnMut(&Member)) -> bool {
        false
    }

    /// A scan found nothing although members may hide: look at new pids for a while
    /// (and reap), until one is found or none can hide any more.
    fn hunt(&self, found: &mut dyn FnMut(&Member), reap: Reap<'_>, ended: &mut HashSet<i32>) {
        for _ in 0..HUNT_ROUNDS {
            if self.probe(found) {
                return;
            }
            ended.extend(reap());
            if !self.may_hide_members() {
                return;
            }
            std::thread::yield_now();
        }
    }

    /// Send `first` to every member, and to every member that appears, until none is left
    /// or `grace` has passed; then SIGKILL every member until none is left. A scan that
    /// finds nothing ends this only when no member can be hiding ([`Tree::may_hide_members`]).
    /// `reap` is called on every round so exited children are collected. A new request on
    /// `cancel` during the grace skips to SIGKILL.
    pub(super) fn terminate(
        &self,
        first: Signal,
        grace: Duration,
        cancel: &Cancel,
        reap: Reap<'_>,
    ) -> Ending {
        let deadline = Instant::now() + grace;
        let mut ending = Ending::default();
        let mut signalled: HashSet<(i32, u64)> = HashSet::new();
        // Pids that died of a signal while we were ending the tree.
        let mut ended: HashSet<i32> = HashSet::new();
        let mut group_signalled = false;
        let mut on_member = |m: &Member| {
            if signalled.insert((m.pid, m.start_time)) {
                ending.record(m); // before the signal: a dying process has no command line
                let _ = kill(Pid::from_raw(m.pid), first);
                let _ = kill(Pid::from_raw(m.pid), Signal::SIGCONT);
            }
        };
        loop {
            ended.extend(reap());
            let any = self.scan(&mut on_member);
            if !group_signalled {
                // The group signal reaches members forked between the scan and the kills.
                let _ = kill(Pid::from_raw(-self.child), first);
                let _ = kill(Pid::from_raw(-self.child), Signal::SIGCONT);
                group_signalled = true;
            }
            if !any && !self.may_hide_members() {
                break;
            }
            if Instant::now() >= deadline || cancel.take().is_some() {
                self.kill_all(&mut ending, &mut signalled, reap, &mut ended);
                break;
            }
            if any {
                // Give the signalled ones time to act on it.
                std::thread::sleep(Duration::from_millis(10));
            } else {
                self.hunt(&mut on_member, reap, &mut ended);
            }
        }
        ended.extend(reap());
        ended.remove(&self.child);
        let individually: HashSet<i32> = signalled.iter().map(|&(pid, _)| pid).collect();
        ending.count = individually.union(&ended).count();
        ending
    }

    /// SIGKILL every member until none is left (or only ones that cannot die are).
    fn kill_all(
        &self,
        ending: &mut Ending,
        signalled: &mut HashSet<(i32, u64)>,
        reap: Reap<'_>,
        ended: &mut HashSet<i32>,
    ) {
        let mut first_killed: HashMap<(i32, u64), Instant> = HashMap::new();
        let live: std::cell::RefCell<Vec<Member>> = std::cell::RefCell::new(Vec::new());
        let mut on_member = |m: &Member| {
            let _ = kill(Pid::from_raw(m.pid), Signal::SIGKILL);
            ending.escalated = true;
            if signalled.insert((m.pid, m.start_time)) {
                ending.record(m);
            }
            live.borrow_mut().push(m.clone());
        };
        loop {
            ended.extend(reap());
            self.scan(&mut on_member);
            // The group signal reaches members forked since the scan.
            let _ = kill(Pid::from_raw(-self.child), Signal::SIGKILL);
            if live.borrow().is_empty() {
                if !self.may_hide_members() {
                    return;
                }
                self.hunt(&mut on_member, reap, ended);
            }
            let now_live = std::mem::take(&mut *live.borrow_mut());
            if now_live.is_empty() {
                continue;
            }
            let now = Instant::now();
            let mut lingering = true;
            let mut old = true;
            for m in &now_live {
                let since = *first_killed.entry((m.pid, m.start_time)).or_insert(now);
                lingering &= now.duration_since(since) >= UNKILLABLE_AFTER;
                old &= now.duration_since(since) >= Duration::from_millis(50);
            }
            if lingering {
                ending.unkillable = now_live
                    .iter()
                    .take(MAX_LISTED)
                    .map(|m| Leftover {
                        pid: m.pid,
                        command: command_of(m),
                    })
                    .collect();
                return;
            }
            // Give the killed ones a moment to die before looking again; look less often
            // at ones that outlived their SIGKILL (blocked in the kernel).
            std::thread::sleep(Duration::from_millis(if old { 20 } else { 1 }));
        }
    }
}

impl Ending {
    fn record(&mut self, m: &Member) {
        if self.signalled.len() < MAX_LISTED {
            self.signalled.push(Leftover {
                pid: m.pid,
                command: command_of(m),
            });
        }
    }
}

#[cfg(target_os = "linux")]
fn member_of(stat: super::procs::Stat) -> Member {
    Member {
        pid: stat.pid,
        start_time: stat.start_time,
        cpu_ticks: stat.cpu_ticks,
        comm: stat.comm,
    }
}

#[cfg(target_os = "linux")]
fn command_of(m: &Member) -> String {
    super::procs::command_line(m.pid, &m.comm)
}

#[cfg(not(target_os = "linux"))]
fn command_of(m: &Member) -> String {
    m.comm.clone()
}
