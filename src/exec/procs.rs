//! A snapshot of the process table, read from `/proc` (Linux only).
//!
//! Parsing is separated from reading so the parsers are tested on fixed strings.
//! Reads that fail because a process exited mid-scan are not errors: the process is
//! simply absent from the snapshot.

use std::path::Path;

use super::cookie::{COOKIE_VAR, PROJECT_VAR};

/// One process as seen in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// Process id.
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// Process group id.
    pub pgid: i32,
    /// State letter (`R`, `S`, `Z`, …).
    pub state: char,
    /// Start time in clock ticks since boot: with `pid` it names a process uniquely.
    pub start_time: u64,
    /// User + system CPU time in clock ticks.
    pub cpu_ticks: u64,
    /// `comm` (the executable name, at most 15 bytes).
    pub comm: String,
    /// `QW_RUN_ID` from the initial environment, if readable and present.
    pub cookie: Option<String>,
    /// `QW_PROJECT` from the initial environment, if present.
    pub project: Option<String>,
}

impl ProcInfo {
    /// True for zombies and dead processes: they hold no resources but a pid.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// The fields of `/proc/PID/stat` that qw uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Process id.
    pub pid: i32,
    /// `comm`.
    pub comm: String,
    /// State letter.
    pub state: char,
    /// Parent pid.
    pub ppid: i32,
    /// Process group.
    pub pgid: i32,
    /// utime + stime, clock ticks.
    pub cpu_ticks: u64,
    /// Start time, clock ticks since boot.
    pub start_time: u64,
}

/// Parse `/proc/PID/stat`. `comm` may contain spaces and parentheses, so the fields are
/// split after the *last* `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let field = |n: usize| rest.get(n - 3).copied();
    let state = field(3)?.chars().next()?;
    let ppid = field(4)?.parse().ok()?;
    let pgid = field(5)?.parse().ok()?;
    let utime: u64 = field(14)?.parse().ok()?;
    let stime: u64 = field(15)?.parse().ok()?;
    let start_time = field(22)?.parse().ok()?;
    Some(Stat {
        pid,
        comm,
        state,
        ppid,
        pgid,
        cpu_ticks: utime + stime,
        start_time,
    })
}

/// Find `NAME=value` in a NUL-separated environment block.
pub fn environ_var<'a>(environ: &'a [u8], name: &str) -> Option<&'a str> {
    environ
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(name.as_bytes()))
        .find_map(|rest| rest.strip_prefix(b"="))
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Read one process; `None` if it vanished or is unreadable.
#[allow(clippy::disallowed_methods)] // vanished processes are expected: no path in errors needed
pub fn read_proc(pid: i32) -> Option<ProcInfo> {
    let dir = Path::new("/proc").join(pid.to_string());
    let stat = parse_stat(&std::fs::read_to_string(dir.join("stat")).ok()?)?;
    let environ = std::fs::read(dir.join("environ")).unwrap_or_default();
    Some(ProcInfo {
        pid: stat.pid,
        ppid: stat.ppid,
        pgid: stat.pgid,
        state: stat.state,
        start_time: stat.start_time,
        cpu_ticks: stat.cpu_ticks,
        comm: stat.comm,
        cookie: environ_var(&environ, COOKIE_VAR).map(str::to_owned),
        project: environ_var(&environ, PROJECT_VAR).map(str::to_owned),
    })
}

/// Every process of the current user that is visible in `/proc`.
#[allow(clippy::disallowed_methods)] // /proc entries come and go; unreadable ones are skipped
pub fn snapshot() -> Vec<ProcInfo> {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::geteuid().as_raw();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let meta = e.metadata().ok()?;
            (meta.uid() == uid).then_some(pid)
        })
        .filter_map(read_proc)
        .collect()
}

/// The command line of a process, for warnings (`comm` if unreadable).
#[allow(clippy::disallowed_methods)]
pub fn command_line(pid: i32, comm: &str) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    if words.is_empty() {
        comm.to_owned()
    } else {
        let line = words.join(" ");
        if line.len() > 120 {
            let mut cut = 117;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}...", &line[..cut])
        } else {
            line
        }
    }
}

/// Start time (ticks since boot) of `pid`, if it is alive (zombies count as dead).
#[allow(clippy::disallowed_methods)]
pub fn start_time_of(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
        .filter(|s| !matches!(s.state, 'Z' | 'X' | 'x'))
        .map(|s| s.start_time)
}

/// `pid` and every ancestor of it up to pid 1.
pub fn ancestors_of(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut cur = pid;
    while cur > 1 && out.len() < 4096 {
        #[allow(clippy::disallowed_methods)]
        let Some(stat) = std::fs::read_to_string(format!("/proc/{cur}/stat"))
            .ok()
            .and_then(|t| parse_stat(&t))
        else {
            break;
        };
        cur = stat.ppid;
        out.push(cur);
    }
    out
}

/// Processes in `procs` that descend from `root` (not including `root`).
pub fn descendants(procs: &[ProcInfo], root: i32) -> Vec<&ProcInfo> {
    let mut out: Vec<&ProcInfo> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for p in procs.iter().filter(|p| p.ppid == parent) {
            if p.pid != root && !out.iter().any(|q| q.pid == p.pid) {
                out.push(p);
                frontier.push(p.pid);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (my (weird) prog) S 4000 4242 4000 0 -1 4194560 120 0 0 0 7 3 0 0 20 0 1 0 987654 10000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn parses_stat_with_parentheses_in_comm() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "my (weird) prog");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 4000);
        assert_eq!(s.pgid, 4242);
        assert_eq!(s.cpu_ticks, 10);
        assert_eq!(s.start_time, 987654);
    }

    #[test]
    fn rejects_garbage_stat() {
        assert!(parse_stat("").is_none());
        assert!(parse_stat("12 (x) S").is_none());
    }

    #[test]
    fn finds_environment_variables_exactly() {
        let env = b"PATH=/bin\0QW_RUN_ID_X=no\0QW_RUN_ID=abc.1\0QW_PROJECT=/p\0";
        assert_eq!(environ_var(env, "QW_RUN_ID"), Some("abc.1"));
        assert_eq!(environ_var(env, "QW_PROJECT"), Some("/p"));
        assert_eq!(environ_var(env, "HOME"), None);
        assert_eq!(environ_var(b"", "QW_RUN_ID"), None);
    }

    #[test]
    fn walks_descendants() {
        let p = |pid, ppid| ProcInfo {
            pid,
            ppid,
            pgid: pid,
            state: 'S',
            start_time: 1,
            cpu_ticks: 0,
            comm: String::new(),
            cookie: None,
            project: None,
        };
        let procs = vec![p(1, 0), p(10, 1), p(11, 10), p(12, 11), p(20, 1), p(13, 10)];
        let mut d: Vec<i32> = descendants(&procs, 10).iter().map(|p| p.pid).collect();
        d.sort();
        assert_eq!(d, vec![11, 12, 13]);
    }

    #[test]
    fn snapshot_sees_this_process() {
        let me = std::process::id() as i32;
        assert!(snapshot().iter().any(|p| p.pid == me));
    }
}
