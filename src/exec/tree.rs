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
//! member, so a scan can come back empty while a process of the run is alive. So:
//! - an empty look ends the run only when the supervisor has no children left: as a
//!   subreaper, every descendant stays below it ([`Tree::may_hide_members`]);
//! - one full scan starts the ending; after it each round looks only at the supervisor's
//!   children and theirs (`/proc/PID/task/*/children`, where the kernel has it) and at
//!   the pids handed out since the last look (`/proc/sys/kernel/ns_last_pid`): every
//!   process born since is in those windows, so a hop cannot slip between two looks,
//!   and a round costs a few reads however many processes the machine runs. Full scans
//!   come back only when a window grew too large or, rarely, as a backstop;
//! - a process is a member if its chain of parents reaches the supervisor, so the order
//!   in which a look meets parent and child does not matter;
//! - members are signalled as soon as they are identified, not at the end of a look. To
//!   end them, SIGSTOP first: a process with a signal pending cannot complete a fork, and
//!   a stopped one forks nothing and keeps its children below it; SIGKILL follows at the
//!   end of the round.
//!
//! cgroups would make this atomic (`cgroup.kill`), but moving a process into a cgroup costs
//! about 0.2 ms per move on the machines measured, which `qw exec -- true` cannot afford
//! beside GNU timeout; qw must work where it may not create one; and moving members at
//! kill time would not contain what they forked just before the move, which the looks
//! above must find anyway.
//!
//! A wide tree that keeps moving (a hundred processes hopping at once) makes every look
//! slow: each `setsid()` starts a scheduler autogroup, so the supervisor gets about one
//! share in a hundred of the CPU (lowering the members' priority does not help across
//! autogroups), and a listing of `/proc` is stale by the time it is read. So a full scan
//! reads the newest pids first (the hoppers: stopped as soon as met in the kill phase,
//! each one stopped gives the CPU back), and no look of the grace outlasts the grace
//! (the kill phase starts with a full scan anyway). `QW_LOG=debug` says where an ending's time went.

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

/// At most this many new pids are looked at in one window; more, and a full scan is
/// cheaper (most of them are gone and fail fast, but not that many).
const WINDOW_CAP: usize = 16_384;

/// How deep the chain of parents of one process is followed before giving up on it.
const MAX_DEPTH: usize = 64;

/// While the looks find nothing although members may hide, a full scan comes back after
/// this long, then twice as long each time, up to [`RESCAN_MAX`].
const RESCAN_FIRST: Duration = Duration::from_millis(10);
const RESCAN_MAX: Duration = Duration::from_millis(500);

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

/// What the looks at one tree remember.
#[derive(Debug, Default)]
struct Seen {
    /// Start time (clock ticks since boot) of the supervisor: every member is younger.
    since: Option<u64>,
    /// Every member seen and not yet gone: pid → start time.
    known: HashMap<i32, u64>,
    /// Processes younger than the supervisor that are not members (nor ever will be: a
    /// process is re-parented only within its ancestors): pid → start time.
    strangers: HashMap<i32, u64>,
    /// `ns_last_pid` when the last look began: later pids may be missing from it.
    looked_upto: Option<i32>,
    /// The kernel's `pid_max`.
    pid_max: i32,
    /// Whether `/proc/PID/task/*/children` exists (`None`: not tried yet).
    children_file: Option<bool>,
}

/// A live member of a tree.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub pid: i32,
    /// It leads its process group (one a member made, by `setsid()` or `setpgid()`):
    /// signalling the group reaches a child it forked an instant ago, not yet seen.
    pub leads_group: bool,
    pub start_time: u64,
    pub cpu_ticks: u64,
    pub comm: String,
}

/// How an escalation went.
#[derive(Debug, Default)]
pub(crate) struct Ending {
    /// SIGKILL was sent: to a member, or to the child's process group while it had one.
    pub escalated: bool,
    /// How many processes were ended: signalled one by one, or reaped after dying of a
    /// signal (the process-group signal reaches some before any scan sees them). The
    /// direct child counts if it was still running.
    pub count: usize,
    /// The first processes signalled one by one (at most [`MAX_LISTED`]), with their
    /// command lines.
    pub signalled: Vec<Leftover>,
    /// Processes still alive after SIGKILL was repeated for [`UNKILLABLE_AFTER`]; or,
    /// when no look found a member for that long while the supervisor still had
    /// children, those children (with their state).
    pub unkillable: Vec<Leftover>,
}

/// What [`Tree::terminate`] asks of its caller on every round: collect exited children
/// and say which of them died of a signal.
pub(crate) type Reap<'a> = &'a mut dyn FnMut() -> Vec<i32>;

/// When the next backstop full scan is due.
struct Rescan {
    next: Instant,
    gap: Duration,
}

impl Rescan {
    fn new() -> Rescan {
        Rescan {
            next: Instant::now() + RESCAN_FIRST,
            gap: RESCAN_FIRST,
        }
    }

    /// A look found members: the backstop can wait again.
    fn progress(&mut self) {
        self.gap = RESCAN_FIRST;
        self.next = Instant::now() + self.gap;
    }

    /// True (and the next one is scheduled) when a backstop scan is due.
    fn due(&mut self) -> bool {
        let now = Instant::now();
        if now < self.next {
            return false;
        }
        self.gap = (self.gap * 2).min(RESCAN_MAX);
        self.next = now + self.gap;
        true
    }
}

/// The kill phase's bookkeeping: members stopped this round (killed at its end) and
/// members killed, with when they were first killed.
struct Killer<'a> {
    ending: &'a mut Ending,
    signalled: &'a mut HashSet<(i32, u64)>,
    stopped: Vec<Member>,
    dying: HashMap<(i32, u64), (Member, Instant)>,
}

impl Killer<'_> {
    /// SIGSTOP a member not yet stopped: it can fork no more, and its children stay its.
    fn stop(&mut self, m: &Member) {
        let key = (m.pid, m.start_time);
        if self.dying.contains_key(&key) || self.stopped.iter().any(|s| s.pid == m.pid) {
            return;
        }
        signal(m, Signal::SIGSTOP);
        if self.signalled.insert(key) {
            self.ending.record(m); // while stopped it still has a command line
        }
        self.stopped.push(m.clone());
    }

    /// SIGKILL what this round stopped. True if there was any.
    fn kill_stopped(&mut self) -> bool {
        let now = Instant::now();
        let any = !self.stopped.is_empty();
        for m in self.stopped.drain(..) {
            signal(&m, Signal::SIGKILL);
            self.ending.escalated = true;
            self.dying.entry((m.pid, m.start_time)).or_insert((m, now));
        }
        any
    }

    /// Forget the killed members that are gone, SIGKILL the others again. True if some
    /// are still alive.
    fn recheck(&mut self) -> bool {
        self.dying.retain(|&(pid, start), _| alive_as(pid, start));
        for &(pid, _) in self.dying.keys() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        !self.dying.is_empty()
    }

    /// The killed members that outlived their first SIGKILL by [`UNKILLABLE_AFTER`], if
    /// every one still alive did.
    fn unkillable(&self) -> Option<Vec<Leftover>> {
        let now = Instant::now();
        let all_old = !self.dying.is_empty()
            && self
                .dying
                .values()
                .all(|(_, since)| now.duration_since(*since) >= UNKILLABLE_AFTER);
        all_old.then(|| {
            self.dying
                .values()
                .take(MAX_LISTED)
                .map(|(m, _)| Leftover {
                    pid: m.pid,
                    command: command_of(m),
                })
                .collect()
        })
    }
}

/// Send `sig` to a member, and to the process group it leads.
fn signal(m: &Member, sig: Signal) {
    let _ = kill(Pid::from_raw(m.pid), sig);
    if m.leads_group && m.pid > 1 {
        let _ = kill(Pid::from_raw(-m.pid), sig);
    }
}

/// Whether the process `pid` that started at `start` is alive (not a zombie).
#[cfg(target_os = "linux")]
fn alive_as(pid: i32, start: u64) -> bool {
    super::procs::read_stat(pid).is_some_and(|s| s.start_time == start && s.alive())
}

#[cfg(not(target_os = "linux"))]
fn alive_as(pid: i32, _start: u64) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

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

    /// No member is left: the supervisor (a subreaper) has no children, or — without a
    /// subreaper — the last full scan (`found_any`) found none.
    fn settled(&self, found_any: bool) -> bool {
        if self.subreaper {
            !self.may_hide_members()
        } else {
            !found_any
        }
    }

    /// The first sight of `Seen`: the supervisor's start time and `pid_max`.
    #[cfg(target_os = "linux")]
    fn init(&self, seen: &mut Seen) {
        if seen.since.is_none() {
            seen.since = Some(super::procs::start_time_of(self.supervisor).unwrap_or(0));
            seen.pid_max = super::procs::pid_max();
        }
    }

    /// Scan all of `/proc`; call `found` for each live member as soon as it is identified.
    /// True if any was found.
    fn scan(&self, found: &mut dyn FnMut(&Member)) -> bool {
        self.scan_until(found, None).unwrap_or(true)
    }

    /// [`Tree::scan`], newest pids first: a tree that keeps moving is in the pids handed
    /// out last, so its members are met (and stopped, in the kill phase: each one stopped
    /// is one fewer process taking the CPU from this scan) before the machine's older
    /// processes are read. `None` when `until` passed before the scan was done (a tree
    /// that keeps the CPU busy makes a full scan slow; the grace must not wait for it).
    #[cfg(target_os = "linux")]
    fn scan_until(&self, found: &mut dyn FnMut(&Member), until: Option<Instant>) -> Option<bool> {
        use super::procs;
        let mut seen = self.seen.borrow_mut();
        self.init(&mut seen);
        let upto = procs::last_pid();
        let mut pids: Vec<i32> = procs::pids().collect();
        if let Some(last) = upto {
            procs::newest_first(&mut pids, last, seen.pid_max);
        }
        let mut any = false;
        for (i, &pid) in pids.iter().enumerate() {
            if i > 0 && until.is_some_and(|u| Instant::now() >= u) {
                return None;
            }
            any |= self.examine(&mut seen, pid, false, found);
        }
        // Forget what is gone: a later process may reuse the pid.
        let listed: HashSet<i32> = pids.into_iter().collect();
        seen.known.retain(|pid, _| listed.contains(pid));
        seen.strangers.retain(|pid, _| listed.contains(pid));
        seen.looked_upto = upto;
        Some(any)
    }

    /// One round's look, cheap whatever the size of the machine: the supervisor's
    /// descendants by their `children` files (where the kernel has them), then the pids
    /// handed out since the last look; a full scan when there were too many of those,
    /// when the backstop is due, or without a subreaper. True if a member was found, or
    /// if `until` passed before the look was done (the grace is over: the kill phase
    /// starts with a full scan, so what this look left unread is read there).
    fn look(
        &self,
        found: &mut dyn FnMut(&Member),
        rescan: &mut Rescan,
        until: Option<Instant>,
    ) -> bool {
        let scan = |found: &mut dyn FnMut(&Member)| self.scan_until(found, until).unwrap_or(true);
        if !self.subreaper {
            return scan(found);
        }
        let walked = self.walk(found).unwrap_or(false);
        let any = match self.probe(found, until) {
            Some(any) => walked | any,
            None => {
                rescan.progress();
                return scan(found) | walked;
            }
        };
        if any {
            rescan.progress();
            any
        } else if rescan.due() {
            scan(found)
        } else {
            false
        }
    }

    /// Call `found` for the supervisor's descendants, read from the `children` files:
    /// each before its children are read, so a member `found` stops has no child
    /// missing from its list. `None` where the kernel has no such files.
    #[cfg(target_os = "linux")]
    fn walk(&self, found: &mut dyn FnMut(&Member)) -> Option<bool> {
        use super::procs;
        let mut seen = self.seen.borrow_mut();
        if seen.children_file == Some(false) {
            return None;
        }
        self.init(&mut seen);
        let Some(mut frontier) = procs::children(self.supervisor) else {
            seen.children_file = Some(false);
            return None;
        };
        seen.children_file = Some(true);
        let mut visited: HashSet<i32> = HashSet::new();
        let mut any = false;
        while let Some(pid) = frontier.pop() {
            if !visited.insert(pid) || visited.len() > 1 << 20 {
                continue;
            }
            let Some(stat) = procs::read_stat(pid) else {
                continue;
            };
            if !stat.alive() {
                continue;
            }
            seen.known.insert(pid, stat.start_time);
            any = true;
            found(&member_of(stat));
            frontier.extend(procs::children(pid).unwrap_or_default());
        }
        Some(any)
    }

    #[cfg(not(target_os = "linux"))]
    fn walk(&self, _found: &mut dyn FnMut(&Member)) -> Option<bool> {
        None
    }

    /// Look only at the pids handed out since the last look. Whether a member was found;
    /// `None` when there were too many to look at (a full scan is due).
    /// `Some(true)` when `until` passed before the window was read.
    #[cfg(target_os = "linux")]
    fn probe(&self, found: &mut dyn FnMut(&Member), until: Option<Instant>) -> Option<bool> {
        use super::procs;
        let mut seen = self.seen.borrow_mut();
        let (Some(from), Some(to)) = (seen.looked_upto, procs::last_pid()) else {
            return None;
        };
        let pids = procs::pids_between(from, to, seen.pid_max, WINDOW_CAP)?;
        seen.looked_upto = Some(to);
        let mut any = false;
        for (i, pid) in pids.into_iter().enumerate() {
            if i > 0 && until.is_some_and(|u| Instant::now() >= u) {
                return Some(true);
            }
            any |= self.examine(&mut seen, pid, true, found);
        }
        Some(any)
    }

    #[cfg(target_os = "linux")]
    fn examine(
        &self,
        seen: &mut Seen,
        pid: i32,
        maybe_thread: bool,
        found: &mut dyn FnMut(&Member),
    ) -> bool {
        let mut members = Vec::new();
        self.classify(seen, pid, maybe_thread, &mut members);
        for m in &members {
            found(m);
        }
        !members.is_empty()
    }

    /// Decide whether `pid` (alive, not a zombie) is a member: it is one if it is known
    /// (same pid and start time), if its chain of parents reaches the supervisor or a
    /// known member, or — without a subreaper — if it or one of those parents carries
    /// the cookie. Pushes onto `out` the members met on the way, oldest first, `pid`
    /// last. `maybe_thread`: `pid` came from a window of new pids and may be a thread.
    #[cfg(target_os = "linux")]
    fn classify(&self, seen: &mut Seen, pid: i32, maybe_thread: bool, out: &mut Vec<Member>) {
        use super::procs;
        if pid == self.supervisor {
            return;
        }
        let since = seen.since.unwrap_or(0);
        // A parent that vanishes mid-walk has handed its children to the supervisor (or
        // to another reaper) already: reading again gives the new parent.
        for _attempt in 0..4 {
            let Some(first) = procs::read_stat(pid) else {
                return;
            };
            let mut chain: Vec<procs::Stat> = Vec::new();
            let mut cur = first;
            let verdict = loop {
                if cur.start_time < since || !cur.alive() {
                    break Some(false);
                }
                match seen.known.get(&cur.pid) {
                    Some(&t) if t == cur.start_time => break Some(true),
                    Some(_) => {
                        seen.known.remove(&cur.pid); // the pid was reused
                    }
                    None => {}
                }
                match seen.strangers.get(&cur.pid) {
                    Some(&t) if t == cur.start_time => break Some(false),
                    Some(_) => {
                        seen.strangers.remove(&cur.pid);
                    }
                    None => {}
                }
                let ppid = cur.ppid;
                let start = cur.start_time;
                let carries_cookie = !self.subreaper
                    && procs::read_cookie(cur.pid).as_deref() == Some(self.cookie.as_str());
                chain.push(cur);
                if ppid == self.supervisor || carries_cookie {
                    break Some(true);
                }
                if ppid <= 1 {
                    break Some(false);
                }
                if chain.len() >= MAX_DEPTH {
                    break None;
                }
                match procs::read_stat(ppid) {
                    Some(parent) if parent.start_time <= start && parent.alive() => {
                        cur = parent;
                    }
                    _ => break None, // the parent is gone: read again
                }
            };
            let Some(member) = verdict else {
                continue;
            };
            let is_thread = maybe_thread
                && chain.first().is_some_and(|s| s.pid == pid)
                && !procs::is_process(pid);
            if member {
                for (i, stat) in chain.into_iter().enumerate().rev() {
                    if i == 0 && is_thread {
                        // A thread of a member: its process is the member.
                        seen.strangers.insert(stat.pid, stat.start_time);
                        continue;
                    }
                    seen.known.insert(stat.pid, stat.start_time);
                    out.push(member_of(stat));
                }
                // `pid` itself was known: it is still a member to report.
                if out.last().is_none_or(|m| m.pid != pid)
                    && !is_thread
                    && let Some(stat) = procs::read_stat(pid)
                    && seen.known.get(&pid) == Some(&stat.start_time)
                {
                    out.push(member_of(stat));
                }
            } else {
                if seen.strangers.len() > 1 << 16 {
                    seen.strangers.clear();
                }
                for stat in chain {
                    seen.strangers.insert(stat.pid, stat.start_time);
                }
            }
            return;
        }
    }

    /// Without `/proc`, the child's process group stands for the whole tree.
    #[cfg(not(target_os = "linux"))]
    fn scan_until(&self, found: &mut dyn FnMut(&Member), _until: Option<Instant>) -> Option<bool> {
        let alive = kill(Pid::from_raw(-self.child), None).is_ok();
        if alive {
            found(&Member {
                pid: -self.child,
                leads_group: false,
                start_time: 0,
                cpu_ticks: 0,
                comm: "process group".into(),
            });
        }
        Some(alive)
    }

    #[cfg(not(target_os = "linux"))]
    fn probe(&self, _found: &mut dyn FnMut(&Member), _until: Option<Instant>) -> Option<bool> {
        None
    }

    /// Send `first` to every member, and to every member that appears, until none is left
    /// or `grace` has passed; then stop and kill every member until none is left. A look
    /// that finds nothing ends this only when no member can be hiding
    /// ([`Tree::may_hide_members`]). `reap` is called on every round so exited children
    /// are collected. A new request on `cancel` during the grace skips to SIGKILL.
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
        let mut on_member = |m: &Member| {
            if signalled.insert((m.pid, m.start_time)) {
                ending.record(m); // before the signal: a dying process has no command line
                signal(m, first);
                signal(m, Signal::SIGCONT);
            }
        };
        let t_start = Instant::now();
        // Cut short when the grace is over: the kill phase scans again anyway.
        let first_scan = self.scan_until(&mut on_member, Some(deadline));
        tracing::debug!("ending: first scan took {:?}", t_start.elapsed());
        let mut any = first_scan.unwrap_or(true);
        // The group signal reaches members forked between the scan and the kills.
        let _ = kill(Pid::from_raw(-self.child), first);
        let _ = kill(Pid::from_raw(-self.child), Signal::SIGCONT);
        let mut rescan = Rescan::new();
        let mut rounds = 0u32;
        let mut reaping = Duration::ZERO;
        let mut looking = Duration::ZERO;
        let escalate = loop {
            rounds += 1;
            let t = Instant::now();
            ended.extend(reap());
            reaping += t.elapsed();
            if self.settled(any) {
                break false;
            }
            if Instant::now() >= deadline || cancel.take().is_some() {
                break true;
            }
            // Give the signalled ones time to act on it; a hop lands in the next window.
            std::thread::sleep(Duration::from_millis(if self.subreaper { 1 } else { 10 }));
            let t = Instant::now();
            any = self.look(&mut on_member, &mut rescan, Some(deadline));
            looking += t.elapsed();
        };
        tracing::debug!(
            "ending: grace phase {:?} ({rounds} rounds, reaping {reaping:?}, looking {looking:?}), {} signalled",
            t_start.elapsed(),
            signalled.len()
        );
        if escalate {
            let t = Instant::now();
            self.kill_all(&mut ending, &mut signalled, reap, &mut ended);
            tracing::debug!("ending: kill phase {:?}", t.elapsed());
        }
        ended.extend(reap());
        let individually: HashSet<i32> = signalled.iter().map(|&(pid, _)| pid).collect();
        // Counted, so listed: a process the group signal ended before a look saw it is
        // named by its pid alone (its command line went with it).
        let mut unnamed: Vec<i32> = ended.difference(&individually).copied().collect();
        unnamed.sort_unstable();
        for pid in unnamed {
            if ending.signalled.len() < MAX_LISTED {
                ending.signalled.push(Leftover {
                    pid,
                    command: "(ended by the process-group signal before it was seen)".into(),
                });
            }
        }
        ending.count = individually.union(&ended).count();
        ending
    }

    /// The supervisor's children (pid, command line and state), at most [`MAX_LISTED`]:
    /// what is left when the looks find no member although some child remains.
    #[cfg(target_os = "linux")]
    fn remaining_children(&self) -> Vec<Leftover> {
        use super::procs;
        procs::pids()
            .filter_map(procs::read_stat)
            .filter(|s| s.ppid == self.supervisor)
            .take(MAX_LISTED)
            .map(|s| Leftover {
                pid: s.pid,
                command: format!(
                    "{} [state {}, {} thread(s)]",
                    procs::command_line(s.pid, &s.comm),
                    s.state,
                    s.threads
                ),
            })
            .collect()
    }

    #[cfg(not(target_os = "linux"))]
    fn remaining_children(&self) -> Vec<Leftover> {
        Vec::new()
    }

    /// Stop and kill every member until none is left (or only ones that cannot die are).
    /// Each round stops the members it finds as it finds them, then kills them.
    fn kill_all(
        &self,
        ending: &mut Ending,
        signalled: &mut HashSet<(i32, u64)>,
        reap: Reap<'_>,
        ended: &mut HashSet<i32>,
    ) {
        let mut killer = Killer {
            ending,
            signalled,
            stopped: Vec::new(),
            dying: HashMap::new(),
        };
        let t0 = Instant::now();
        let mut any = self.scan(&mut |m| killer.stop(m));
        tracing::debug!(
            "kill: first scan {:?}, {} stopped",
            t0.elapsed(),
            killer.stopped.len()
        );
        // The group signal reaches members forked since the scan.
        if kill(Pid::from_raw(-self.child), Signal::SIGKILL).is_ok() {
            killer.ending.escalated = true;
        }
        let mut rescan = Rescan::new();
        let mut last_check = Instant::now();
        // When a member was last stopped and killed: the looks may keep finding nothing
        // while the supervisor still has a child they cannot see as a member.
        let mut last_kill = Instant::now();
        let (mut rounds, mut reaping, mut looking, mut kills) =
            (0u32, Duration::ZERO, Duration::ZERO, 0usize);
        loop {
            rounds += 1;
            kills += killer.stopped.len();
            let killed = killer.kill_stopped();
            if killed {
                last_kill = Instant::now();
            }
            let t = Instant::now();
            ended.extend(reap());
            reaping += t.elapsed();
            if self.settled(any) {
                tracing::debug!(
                    "kill: settled after {:?}: {rounds} rounds, {kills} killed, reaping {reaping:?}, looking {looking:?}, last kill {:?} ago",
                    t0.elapsed(),
                    last_kill.elapsed()
                );
                return;
            }
            if !killed {
                // Nothing new: look at the killed ones now and then; give up on ones that
                // outlive SIGKILL (blocked in the kernel) after a while, and on children
                // of the supervisor that no look finds (never loop forever).
                if last_check.elapsed() >= Duration::from_millis(5) {
                    last_check = Instant::now();
                    if killer.recheck() {
                        if let Some(left) = killer.unkillable() {
                            killer.ending.unkillable = left;
                            return;
                        }
                    } else if last_kill.elapsed() >= UNKILLABLE_AFTER {
                        killer.ending.unkillable = self.remaining_children();
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let t = Instant::now();
            any = self.look(&mut |m| killer.stop(m), &mut rescan, None);
            looking += t.elapsed();
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
        leads_group: stat.pgid == stat.pid,
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A scan given a moment already past stops after the first pid (the grace's first
    /// scan must not outlast the grace), and says so; without one it reads every pid.
    #[test]
    fn a_scan_stops_when_its_moment_has_passed() {
        let tree = Tree::new(std::process::id() as i32, "no-such-cookie".into(), true);
        let mut met = 0;
        let cut = tree.scan_until(&mut |_| met += 1, Some(Instant::now()));
        assert_eq!(cut, None);
        assert!(
            tree.seen.borrow().looked_upto.is_none(),
            "no window starts from it"
        );
        assert!(tree.scan_until(&mut |_| met += 1, None).is_some());
        assert!(tree.seen.borrow().looked_upto.is_some());
    }
}
