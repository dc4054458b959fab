//! The set of processes that belong to one run, and ending them: SIGTERM (plus SIGCONT so
//! stopped processes can act on it), a grace period, then SIGKILL to every survivor.
//!
//! On Linux a process belongs to the run if it descends from the supervisor (which is a
//! child subreaper, so `setsid()`-ed and double-forked descendants are re-parented to it)
//! or carries the run's cookie in its environment. Elsewhere only the child's process
//! group can be signalled.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Cancel, Leftover};

/// One run's process tree.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    /// The supervising process (never signalled).
    pub supervisor: i32,
    /// The direct child; it leads its own process group.
    pub child: i32,
    /// The run cookie every member inherits.
    pub cookie: String,
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
    /// Every process that was signalled, with its command line.
    pub signalled: Vec<Leftover>,
}

impl Tree {
    /// Live (non-zombie) members, the supervisor excluded.
    #[cfg(target_os = "linux")]
    pub fn members(&self) -> Vec<Member> {
        let procs = super::procs::snapshot();
        let mut out: Vec<Member> = super::procs::descendants(&procs, self.supervisor)
            .into_iter()
            .chain(
                procs
                    .iter()
                    .filter(|p| p.cookie.as_deref() == Some(self.cookie.as_str())),
            )
            .filter(|p| !p.is_dead() && p.pid != self.supervisor)
            .map(|p| Member {
                pid: p.pid,
                start_time: p.start_time,
                cpu_ticks: p.cpu_ticks,
                comm: p.comm.clone(),
            })
            .collect();
        out.sort_by_key(|m| m.pid);
        out.dedup_by_key(|m| m.pid);
        out
    }

    /// Without `/proc`, the child's process group stands for the whole tree.
    #[cfg(not(target_os = "linux"))]
    pub fn members(&self) -> Vec<Member> {
        if kill(Pid::from_raw(-self.child), None).is_ok() {
            vec![Member {
                pid: -self.child,
                start_time: 0,
                cpu_ticks: 0,
                comm: "process group".into(),
            }]
        } else {
            Vec::new()
        }
    }

    /// Send `first` to every member, wait up to `grace` for all to go, then SIGKILL the
    /// survivors until none is left. `reap` is called while waiting so zombies are
    /// collected. A new request on `cancel` during the grace skips to SIGKILL.
    pub fn terminate(
        &self,
        first: Signal,
        grace: Duration,
        cancel: &Cancel,
        reap: &mut dyn FnMut(),
    ) -> Ending {
        let deadline = Instant::now() + grace;
        let mut ending = Ending::default();
        let mut signalled: HashSet<(i32, u64)> = HashSet::new();
        let mut first_round = true;
        loop {
            reap();
            let live = self.members();
            if live.is_empty() {
                return ending;
            }
            for m in &live {
                if signalled.insert((m.pid, m.start_time)) {
                    ending.signalled.push(Leftover {
                        pid: m.pid,
                        command: command_of(m),
                    });
                    let _ = kill(Pid::from_raw(m.pid), first);
                    let _ = kill(Pid::from_raw(m.pid), Signal::SIGCONT);
                }
            }
            if first_round {
                // The group signal reaches members forked between the scan and the kills.
                let _ = kill(Pid::from_raw(-self.child), first);
                first_round = false;
            }
            if Instant::now() >= deadline || cancel.take().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Kill until a scan finds nothing: a member may fork between scan and kill.
        for _ in 0..1000 {
            let live = self.members();
            if live.is_empty() {
                break;
            }
            ending.escalated = true;
            let _ = kill(Pid::from_raw(-self.child), Signal::SIGKILL);
            for m in &live {
                let _ = kill(Pid::from_raw(m.pid), Signal::SIGKILL);
                if signalled.insert((m.pid, m.start_time)) {
                    ending.signalled.push(Leftover {
                        pid: m.pid,
                        command: command_of(m),
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(2));
            reap();
        }
        ending
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
