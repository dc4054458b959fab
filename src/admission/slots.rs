//! Machine-wide admission slots and the first-come-first-served queue in front of them.
//!
//! Owns the runtime directory (`QW_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/quantumwala`, else
//! `/tmp/quantumwala-<uid>`). Must not decide policy: it counts the slots in use and asks
//! [`decide`], which applies every limit, `max_concurrent` and the progress guarantee.
//!
//! Layout, all coordination by `flock` (which the kernel drops when a process dies, so a
//! crashed holder frees its slot and its place in the queue at once):
//! - `slots/slot-NNNN`: one file per slot, a [`LockedFile`] (its holder's record names
//!   its pid). A slot is in use exactly while its file is locked.
//! - `queue/q-<seq>-<pid>-<nonce>`: one ticket per waiter, locked by its owner. `seq`
//!   is assigned under `queue/.seq.lock` as one more than the highest ticket present,
//!   so tickets sort by arrival. Only the waiter with no live ticket before it (the
//!   head) decides and may take a slot; the others poll. As only a head takes slots, the
//!   count of slots in use it decides on cannot grow before it takes one: that makes the
//!   progress guarantee ("no qw task running → start whatever the load") race-free
//!   across processes. The head writes why it waits into its ticket so every waiter can
//!   tell the user the real blocking limits.
//!
//! Slot files are never deleted (deleting a lock file races with another process that
//! has it open); dead tickets are deleted by whoever finds them unlocked. Every lock here
//! is a [`LockedFile`]; the queue's seq lock and the tickets carry no holder record (a
//! ticket's content is its head's reasons), and every poll looks at the files with
//! [`LockedFile::peek`], which reads no `/proc`: the hot path stays a few syscalls.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::policy::{Decision, Limit, Limits, Refusal, decide};
use super::probes::Probes;
use super::{AdmissionError, GiveUp, Impact, Waiting};
use crate::cancel::Cancel;
use crate::fs::{self, LockOptions, LockTimeout, LockedFile};

/// First poll interval while waiting; doubles up to [`MAX_POLL`].
const MIN_POLL: Duration = Duration::from_millis(10);
/// Longest poll interval: bounds how late a freed slot is noticed.
const MAX_POLL: Duration = Duration::from_millis(200);

/// The machine-wide slots in one runtime directory.
#[derive(Debug, Clone)]
pub struct Slots {
    dir: PathBuf,
}

/// A slot in use and the pid of the process holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotHolder {
    /// Slot index.
    pub slot: usize,
    /// The holder's pid (None while it is still writing it).
    pub pid: Option<i32>,
    /// What the holder runs in it, as it said ([`SlotGuard::set_note`]): `task 5`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// An admitted task's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct SlotGuard {
    slot: usize,
    lock: LockedFile,
}

impl SlotGuard {
    /// The slot index held.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// Say what runs in this slot (`task 5`): waiters of the same process name it.
    pub fn set_note(&mut self, note: &str) {
        self.lock.set_note(Some(note));
    }
}

/// Whether `pid` is a (strict) ancestor of this process: its chain of parents, read from
/// `/proc/PID/stat`, reaches it. A re-parented process's chain runs through its
/// subreaper (qw's supervisor), which is still below the workflow holding the slot.
fn is_ancestor(pid: i32) -> bool {
    let mut at = i32::try_from(std::process::id()).unwrap_or(0);
    // A chain is short; the bound only guards against a loop in what /proc says.
    for _ in 0..4096 {
        let Some(parent) = crate::exec::procs::read_stat(at).map(|s| s.ppid) else {
            return false;
        };
        if parent == pid {
            return true;
        }
        if parent <= 1 {
            return false;
        }
        at = parent;
    }
    false
}

/// The default runtime directory: `QW_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/quantumwala`,
/// else `/tmp/quantumwala-<uid>`.
pub(crate) fn default_runtime_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("QW_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("quantumwala");
    }
    let uid = nix::unistd::geteuid().as_raw();
    std::env::temp_dir().join(format!("quantumwala-{uid}"))
}

impl Slots {
    /// Slots kept under `runtime_dir` (created on first acquire).
    pub fn new(runtime_dir: impl Into<PathBuf>) -> Slots {
        Slots {
            dir: runtime_dir.into(),
        }
    }

    /// Slots in [`default_runtime_dir`].
    pub fn system() -> Slots {
        Slots::new(default_runtime_dir())
    }

    /// The runtime directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn slots_dir(&self) -> PathBuf {
        self.dir.join("slots")
    }

    fn queue_dir(&self) -> PathBuf {
        self.dir.join("queue")
    }

    /// Slot `slot` when it is held by an ancestor of this process (the workflow whose
    /// task runs this `qw`), with its holder; `None` for a free slot, a slot held by
    /// anyone else, or one whose holder is still writing its pid.
    pub fn held_by_ancestor(&self, slot: usize) -> Option<SlotHolder> {
        let holder = self.in_use().into_iter().find(|h| h.slot == slot)?;
        let pid = holder.pid?;
        is_ancestor(pid).then_some(holder)
    }

    /// Slots currently held, with their holders' pids, by slot index.
    pub fn in_use(&self) -> Vec<SlotHolder> {
        let mut out: Vec<SlotHolder> = list(&self.slots_dir())
            .into_iter()
            .filter_map(|(name, path)| {
                let slot = name.strip_prefix("slot-")?.parse().ok()?;
                // Only a regular file is a slot: never follow a planted symlink.
                if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                    return None;
                }
                let held = LockedFile::peek(&path).ok()??;
                Some(SlotHolder {
                    slot,
                    pid: held.pid(),
                    note: held.note(),
                })
            })
            .collect();
        out.sort_by_key(|h| h.slot);
        out
    }

    /// Pids of the processes waiting in the queue, first come first.
    pub fn queued(&self) -> Vec<i32> {
        self.live_tickets()
            .into_iter()
            .filter_map(|t| t.pid)
            .collect()
    }

    /// Wait until the policy admits a request of `impact` (with fresh probes and the
    /// count of slots in use on every poll) and a slot is free, first come first served
    /// across every process using this directory. `on_wait` hears why on every poll;
    /// returning `Break` stops waiting ([`AdmissionError::Cancelled`]). Gives up after
    /// `give_up` (a [`Duration`] means `resource_limits.acquire_timeout_s`).
    pub fn acquire(
        &self,
        limits: &Limits,
        impact: Impact,
        give_up: impl Into<GiveUp>,
        on_wait: impl FnMut(&Waiting) -> ControlFlow<()>,
    ) -> Result<SlotGuard, AdmissionError> {
        self.acquire_with(limits, impact, give_up, Probes::read, on_wait)
    }

    /// [`Slots::acquire`] with the probes taken from `probe` (tests and benchmarks).
    ///
    /// Only the head of the queue decides and takes a slot, and slots are only ever taken
    /// by a head, so the count of slots in use it passes to [`decide`] cannot grow
    /// between the count and the take: two waiters never both see zero running and both
    /// start under the progress guarantee.
    pub fn acquire_with(
        &self,
        limits: &Limits,
        impact: Impact,
        give_up: impl Into<GiveUp>,
        mut probe: impl FnMut() -> Probes,
        mut on_wait: impl FnMut(&Waiting) -> ControlFlow<()>,
    ) -> Result<SlotGuard, AdmissionError> {
        let give_up = give_up.into();
        let start = Instant::now();
        self.prepare()?;
        let mut ticket = self.enqueue()?;
        let mut poll = MIN_POLL;
        let mut last_ahead = usize::MAX;
        let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        // Time that counts toward the give-up: not the time spent waiting only behind
        // this process's own tasks (see `GiveUp::untimed_behind_own`).
        let mut counted = Duration::ZERO;
        let (mut last, mut untimed) = (start, false);
        loop {
            let (ahead_pids, ahead, head_reasons) = self.ahead_of(&ticket);
            let in_use = self.in_use();
            let running = in_use.len();
            let blocked_by = if ahead == 0 {
                let reasons = match decide(&probe(), limits, impact, running) {
                    Decision::Refuse { refusals } => refusals,
                    Decision::Admit { .. } => match self.take_free_slot(limits.max_concurrent)? {
                        Some(guard) => return Ok(guard),
                        // Every free-looking slot was momentarily locked by a reader
                        // (`qw resources`, the dashboard): try again on the next poll.
                        None => vec![Refusal {
                            limit: Limit::MaxConcurrent,
                            configured: limits.max_concurrent as f64,
                            observed: running as f64,
                        }],
                    },
                };
                ticket.publish(&reasons);
                reasons
            } else {
                head_reasons
            };
            let now = Instant::now();
            if !untimed {
                counted += now.saturating_duration_since(last);
            }
            last = now;
            let mine = |pid: Option<i32>| give_up.untimed_behind_own && pid == Some(me);
            let own: Vec<String> = in_use
                .iter()
                .filter(|h| mine(h.pid))
                .map(|h| h.note.clone().unwrap_or_else(|| "a task".to_owned()))
                .collect();
            let holders: Vec<i32> = in_use
                .iter()
                .filter(|h| !mine(h.pid))
                .filter_map(|h| h.pid)
                .collect();
            let own_ahead = ahead_pids.iter().filter(|&&p| mine(Some(p))).count();
            let ahead_pids: Vec<i32> = ahead_pids.into_iter().filter(|&p| !mine(Some(p))).collect();
            // Waiting only behind this process's own tasks, for limits that their end
            // lifts (load, waived once nothing runs; the slots they hold): its turn comes.
            untimed = !own.is_empty()
                && own.len() == running
                && own_ahead == ahead
                && blocked_by
                    .iter()
                    .all(|r| r.limit.is_load() || r.limit == Limit::MaxConcurrent);
            let waiting = Waiting {
                ahead,
                ahead_pids,
                own_ahead,
                stopped: holders
                    .iter()
                    .copied()
                    .filter(|&p| fs::process_state(p) == fs::ProcessState::Stopped)
                    .collect(),
                holders,
                own,
                untimed,
                max_concurrent: limits.max_concurrent,
                blocked_by,
                running,
                give_up_in: give_up.after.saturating_sub(counted),
                timeout_setting: give_up.setting,
            };
            if !untimed && counted >= give_up.after {
                return Err(AdmissionError::TimedOut {
                    waited: counted,
                    waiting: Box::new(waiting),
                });
            }
            if on_wait(&waiting).is_break() {
                return Err(AdmissionError::Cancelled);
            }
            if ahead < last_ahead {
                poll = MIN_POLL;
            }
            last_ahead = ahead;
            let nap = if untimed {
                poll
            } else {
                poll.min(give_up.after - counted)
            };
            std::thread::sleep(nap);
            poll = (poll * 2).min(MAX_POLL);
        }
    }

    /// Create the runtime directory (private to the user) and its subdirectories.
    fn prepare(&self) -> Result<(), AdmissionError> {
        for dir in [self.slots_dir(), self.queue_dir()] {
            if dir.is_dir() {
                continue;
            }
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| fs::with_path(e, "create the runtime directory", &dir))?;
        }
        check_owner(&self.dir)
    }

    /// Take a ticket at the end of the queue.
    fn enqueue(&self) -> Result<Ticket, AdmissionError> {
        let queue = self.queue_dir();
        // Held for a directory listing and a rename: no record, no limit, not interrupted.
        let unrecorded = LockOptions {
            unrecorded: true,
            ..LockOptions::default()
        };
        let seq_lock = LockedFile::acquire_with(
            queue.join(".seq.lock"),
            "the admission queue",
            &LockTimeout::new(None, ""),
            &Cancel::new(),
            unrecorded,
        )
        .map_err(std::io::Error::from)?;
        let mut max_seq = 0u64;
        for (name, path) in list(&queue) {
            if let Some(seq) = ticket_seq(&name) {
                max_seq = max_seq.max(seq);
            } else if name.starts_with(".new-") {
                // Tickets are only created under the seq lock we hold: this one was left
                // by a process that died while creating it.
                let _ = fs::remove_file(&path);
            }
        }
        let pid = std::process::id();
        let nonce = crate::random::hex(4)?;
        let tmp = queue.join(format!(".new-{pid}-{nonce}"));
        let path = queue.join(format!("q-{:016}-{pid}-{nonce}", max_seq + 1));
        // The ticket becomes visible already locked, so nobody mistakes it for a dead one.
        let lock = LockedFile::create_locked_as(&tmp, &path).map_err(std::io::Error::from)?;
        drop(seq_lock);
        Ok(Ticket {
            seq: max_seq + 1,
            path,
            lock,
            published: None,
        })
    }

    /// Live tickets in arrival order (dead ones are removed on the way).
    fn live_tickets(&self) -> Vec<TicketInfo> {
        let mut out: Vec<TicketInfo> = list(&self.queue_dir())
            .into_iter()
            .filter_map(|(name, path)| {
                let seq = ticket_seq(&name)?;
                let Some(held) = LockedFile::peek(&path).ok()? else {
                    let _ = fs::remove_file(&path);
                    return None;
                };
                Some(TicketInfo {
                    seq,
                    pid: name.split('-').nth(2).and_then(|p| p.parse().ok()),
                    reasons: serde_json::from_slice(&held.content).unwrap_or_default(),
                })
            })
            .collect();
        out.sort_by_key(|t| t.seq);
        out
    }

    /// The pids of the live waiters that arrived before `me` (first in line first), how
    /// many they are, and why the first of them waits.
    fn ahead_of(&self, me: &Ticket) -> (Vec<i32>, usize, Vec<Refusal>) {
        let mut before: Vec<TicketInfo> = self
            .live_tickets()
            .into_iter()
            .filter(|t| t.seq < me.seq)
            .collect();
        let n = before.len();
        let pids = before.iter().filter_map(|t| t.pid).collect();
        let reasons = if before.is_empty() {
            Vec::new()
        } else {
            before.swap_remove(0).reasons
        };
        (pids, n, reasons)
    }

    /// Lock a free slot among the first `max` usable ones (`None` when none could be
    /// locked). The caller, the head of the queue, has already checked the count against
    /// `max`. Something else than a regular file at a slot's name (a directory, a FIFO, a
    /// symlink — never followed) is skipped with one warning naming it, and the next
    /// name takes its place: the slots in use are what limits, not their names.
    fn take_free_slot(&self, max: usize) -> Result<Option<SlotGuard>, AdmissionError> {
        let dir = self.slots_dir();
        let mut usable = 0;
        let mut slot = 0;
        while usable < max {
            let path = dir.join(format!("slot-{slot:04}"));
            if let Some(why) = not_a_slot(&path) {
                warn_once(&path, why);
            } else {
                usable += 1;
                match LockedFile::try_acquire(&path) {
                    Ok(Some(lock)) => return Ok(Some(SlotGuard { slot, lock })),
                    Ok(None) => {}
                    // Swapped for something else between the look and the open.
                    Err(_) if not_a_slot(&path).is_some() => {}
                    Err(e) => return Err(std::io::Error::from(e).into()),
                }
            }
            slot += 1;
        }
        Ok(None)
    }
}

/// This waiter's place in the queue; dropping it leaves the queue.
struct Ticket {
    seq: u64,
    path: PathBuf,
    lock: LockedFile,
    /// The limits last written and when (observed values change on every poll: they are
    /// rewritten only every [`REPUBLISH`]).
    published: Option<(Vec<Limit>, Instant)>,
}

/// How stale the observed values in a head's ticket may get.
const REPUBLISH: Duration = Duration::from_secs(2);

impl Ticket {
    /// Tell the waiters behind why the head waits (when the limits change, and every
    /// [`REPUBLISH`] for fresh observed values).
    fn publish(&mut self, reasons: &[Refusal]) {
        let limits: Vec<Limit> = reasons.iter().map(|r| r.limit).collect();
        if let Some((last, at)) = &self.published
            && *last == limits
            && at.elapsed() < REPUBLISH
        {
            return;
        }
        if let Ok(text) = serde_json::to_vec(reasons) {
            self.lock.write_content(&text);
        }
        self.published = Some((limits, Instant::now()));
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Removed while still locked (the lock goes with the field, after this), so no
        // other waiter removes a successor's ticket of the same name.
        let _ = fs::remove_file(&self.path);
    }
}

struct TicketInfo {
    seq: u64,
    pid: Option<i32>,
    reasons: Vec<Refusal>,
}

/// What is wrong with the entry at a slot's path, if it is there and is no regular file.
fn not_a_slot(path: &Path) -> Option<&'static str> {
    let t = fs::symlink_metadata(path).ok()?.file_type();
    use std::os::unix::fs::FileTypeExt as _;
    if t.is_file() {
        None
    } else if t.is_symlink() {
        Some("a symbolic link")
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else {
        Some("not a regular file")
    }
}

/// One warning per process for each unusable slot entry.
fn warn_once(path: &Path, what: &str) {
    static WARNED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let Ok(mut warned) = WARNED.lock() else {
        return;
    };
    if warned.iter().any(|p| p == path) {
        return;
    }
    warned.push(path.to_path_buf());
    tracing::warn!(
        "admission slot `{}` is {what}, not a slot file: skipped (remove it)",
        path.display()
    );
}

fn ticket_seq(name: &str) -> Option<u64> {
    name.strip_prefix("q-")?.split('-').next()?.parse().ok()
}

/// File names and paths in `dir` (empty if it cannot be read).
fn list(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect()
}

/// Refuse a runtime directory another user owns: they could hold our slots or read pids.
fn check_owner(dir: &Path) -> Result<(), AdmissionError> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(dir)?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(AdmissionError::RuntimeDir {
            path: dir.to_path_buf(),
            reason: format!("it belongs to uid {}, not to you (uid {me})", meta.uid()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::probes::{CpuSource, LoadAvg, Memory};
    use std::sync::mpsc;

    fn idle() -> Probes {
        Probes {
            load_avg: None,
            running: None,
            usable_cpus: 1.0,
            cpu_source: CpuSource::Affinity,
            memory: Memory {
                host_used: None,
                cgroup_used: None,
                cgroup_limit_bytes: None,
                total_bytes: None,
                available_bytes: None,
            },
            cpu_pressure: None,
            memory_pressure: None,
        }
    }

    fn limits(n: usize) -> Limits {
        Limits {
            max_concurrent: n,
            ..Limits::default()
        }
    }

    fn go(_: &Waiting) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }

    #[test]
    fn at_most_n_slots_and_drop_frees_one() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path());
        let l = limits(2);
        let a = slots
            .acquire_with(&l, Impact::Normal, Duration::ZERO, idle, go)
            .unwrap();
        let b = slots
            .acquire_with(&l, Impact::Normal, Duration::ZERO, idle, go)
            .unwrap();
        assert_ne!(a.slot(), b.slot());
        let pid = i32::try_from(std::process::id()).unwrap();
        let held = slots.in_use();
        assert_eq!(held.len(), 2);
        assert!(held.iter().all(|h| h.pid == Some(pid)));
        let err = slots
            .acquire_with(&l, Impact::Normal, Duration::from_millis(50), idle, go)
            .unwrap_err();
        match err {
            AdmissionError::TimedOut { waiting, .. } => {
                let r = &waiting.blocked_by;
                assert_eq!(r.len(), 1, "{r:?}");
                assert_eq!(r[0].limit, Limit::MaxConcurrent);
                assert_eq!((r[0].configured, r[0].observed), (2.0, 2.0));
                assert_eq!(waiting.running, 2);
            }
            other => panic!("{other:?}"),
        }
        drop(a);
        assert_eq!(slots.in_use().len(), 1);
        let c = slots
            .acquire_with(&l, Impact::Normal, Duration::ZERO, idle, go)
            .unwrap();
        assert_eq!(slots.in_use().len(), 2);
        drop((b, c));
        assert!(slots.in_use().is_empty());
        assert!(slots.queued().is_empty(), "tickets are removed");
    }

    #[test]
    fn refusal_by_probes_names_the_limit_and_cancel_stops() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path());
        let l = Limits {
            max_memory: 0.5,
            ..limits(4)
        };
        let busy = || {
            let mut p = idle();
            p.memory.host_used = Some(0.9);
            p
        };
        let mut calls = 0;
        let err = slots
            .acquire_with(&l, Impact::Low, Duration::from_secs(60), busy, |w| {
                assert_eq!(w.blocked_by.len(), 1);
                assert_eq!(w.blocked_by[0].limit, Limit::MaxMemory);
                calls += 1;
                if calls == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap_err();
        assert!(matches!(err, AdmissionError::Cancelled), "{err:?}");
        assert!(slots.in_use().is_empty());
    }

    #[test]
    fn waiters_are_served_in_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path());
        let l = limits(1);
        let first = slots
            .acquire_with(&l, Impact::Normal, Duration::ZERO, idle, go)
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        for name in ["a", "b", "c"] {
            let (s, l, tx) = (slots.clone(), l.clone(), tx.clone());
            let before = slots.queued().len();
            threads.push(std::thread::spawn(move || {
                let g = s
                    .acquire_with(&l, Impact::Normal, Duration::from_secs(20), idle, go)
                    .unwrap();
                tx.send(name).unwrap();
                std::thread::sleep(Duration::from_millis(20));
                drop(g);
            }));
            // Let this waiter take its ticket before the next one arrives.
            let deadline = Instant::now() + Duration::from_secs(10);
            while slots.queued().len() == before && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        assert_eq!(slots.queued().len(), 3);
        drop(first);
        for t in threads {
            t.join().unwrap();
        }
        let order: Vec<&str> = rx.try_iter().collect();
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[test]
    fn a_queued_waiter_reports_why_the_head_waits() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path());
        let l = limits(1);
        let _held = slots
            .acquire_with(&l, Impact::Normal, Duration::ZERO, idle, go)
            .unwrap();
        let s2 = slots.clone();
        let l2 = l.clone();
        let head = std::thread::spawn(move || {
            s2.acquire_with(&l2, Impact::Normal, Duration::from_millis(1500), idle, go)
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while slots.queued().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let err = slots
            .acquire_with(&l, Impact::Normal, Duration::from_millis(400), idle, go)
            .unwrap_err();
        match &err {
            AdmissionError::TimedOut { waiting, .. } => {
                assert_eq!(waiting.ahead, 1);
                let me = i32::try_from(std::process::id()).unwrap();
                assert_eq!(waiting.ahead_pids, [me]);
                assert_eq!(waiting.holders, [me]);
                assert_eq!(waiting.max_concurrent, 1);
                assert_eq!(waiting.blocked_by.len(), 1);
                assert_eq!(waiting.blocked_by[0].limit, Limit::MaxConcurrent);
                assert_eq!(waiting.running, 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("max_concurrent"), "{err}");
        assert!(head.join().unwrap().is_err());
    }

    /// A machine far above every load limit, with memory to spare.
    fn overloaded() -> Probes {
        let mut p = idle();
        p.load_avg = Some(LoadAvg {
            one: 3.0,
            five: 3.0,
            fifteen: 3.0,
        });
        p.running = Some(4);
        p.cpu_pressure = Some(90.0);
        p.memory.host_used = Some(0.3);
        p
    }

    #[test]
    fn loaded_machine_runs_one_task_at_a_time_never_two_and_never_none() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path());
        let l = limits(8);
        // Nothing running: admitted at once whatever the load (the progress guarantee).
        let first = slots
            .acquire_with(&l, Impact::High, Duration::ZERO, overloaded, go)
            .unwrap();
        // One running: the load limits hold again, and the refusal names each one.
        let err = slots
            .acquire_with(&l, Impact::High, Duration::from_millis(50), overloaded, go)
            .unwrap_err();
        match &err {
            AdmissionError::TimedOut { waiting, .. } => {
                let limits: Vec<Limit> = waiting.blocked_by.iter().map(|r| r.limit).collect();
                assert_eq!(limits, [Limit::MaxLoad, Limit::HighImpactLoad]);
                assert_eq!(waiting.running, 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("1 qw task running"), "{err}");
        drop(first);

        // Six waiters released together, each holding its slot a moment: each one sees
        // zero running at some point, but only the head may act on it, so they run one
        // at a time, and every one of them runs. Slow probes (read between the count and
        // the take) widen the window a second decider would need.
        let slow = || {
            std::thread::sleep(Duration::from_millis(5));
            overloaded()
        };
        let now = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let gate = std::sync::Arc::new(std::sync::Barrier::new(6));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (s, l) = (slots.clone(), l.clone());
                let (now, most, gate) = (now.clone(), most.clone(), gate.clone());
                std::thread::spawn(move || {
                    use std::sync::atomic::Ordering::SeqCst;
                    gate.wait();
                    let g =
                        s.acquire_with(&l, Impact::Normal, Duration::from_secs(60), slow, go)?;
                    let n = now.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(n, SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    now.fetch_sub(1, SeqCst);
                    drop(g);
                    Ok::<(), AdmissionError>(())
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(slots.in_use().is_empty());
        assert!(slots.queued().is_empty());
    }

    #[test]
    fn memory_limits_hold_even_with_nothing_running() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path());
        let full = || {
            let mut p = overloaded();
            p.memory.host_used = Some(0.95);
            p
        };
        let err = slots
            .acquire_with(&limits(8), Impact::Low, Duration::from_millis(30), full, go)
            .unwrap_err();
        match &err {
            AdmissionError::TimedOut { waiting, .. } => {
                let limits: Vec<Limit> = waiting.blocked_by.iter().map(|r| r.limit).collect();
                assert_eq!(
                    limits,
                    [Limit::MaxMemory],
                    "the load is waived, memory is not"
                );
                assert_eq!(waiting.running, 0);
            }
            other => panic!("{other:?}"),
        }
        assert!(slots.in_use().is_empty());
    }

    #[test]
    fn runtime_dir_resolution_prefers_qw_runtime_dir() {
        // Only reads the environment of this process; QW_RUNTIME_DIR is not set by
        // cargo, so the fallback must end in quantumwala or quantumwala-<uid>.
        let d = default_runtime_dir();
        if std::env::var_os("QW_RUNTIME_DIR").is_none() {
            let name = d.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with("quantumwala"), "{}", d.display());
        }
    }
}
