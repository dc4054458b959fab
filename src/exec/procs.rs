//! A snapshot of the process table, read from `/proc` (Linux only).
//!
//! Parsing is separated from reading so the parsers are tested on fixed strings.
//! Reads that fail because a process exited mid-scan are not errors: the process is
//! simply absent from the snapshot.

use super::cookie::{COOKIE_VAR, PROJECT_VAR};

/// One process as seen in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcInfo {
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
    pub(crate) fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// The fields of `/proc/PID/stat` that qw uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stat {
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
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_owned();
    // Fields 3 (state) to 22 (start time), in order; the ~30 after them are not read (a
    // sweep parses every process's stat).
    let mut fields = text.get(close + 1..)?.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    // Fields 6..=13 skipped: the 8th field after pgid is utime (14).
    let utime: u64 = fields.nth(8)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // Fields 16..=21 skipped.
    let start_time = fields.nth(6)?.parse().ok()?;
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
pub(crate) fn environ_var<'a>(environ: &'a [u8], name: &str) -> Option<&'a str> {
    environ
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(name.as_bytes()))
        .find_map(|rest| rest.strip_prefix(b"="))
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Read one process; `None` if it vanished or is unreadable.
pub(crate) fn read_proc(pid: i32) -> Option<ProcInfo> {
    let stat = read_stat(pid)?;
    let environ = read_proc_file(&format!("/proc/{pid}/environ"), 8192).unwrap_or_default();
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

/// Every pid listed in `/proc` now (processes only, not threads).
#[allow(clippy::disallowed_methods)] // /proc entries come and go; unreadable ones are skipped
pub(crate) fn pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Read a small `/proc` file whole, in as few system calls as possible: `/proc` files
/// report a size of 0, so a generic reader starts with tiny reads and grows; this one
/// reads into a buffer of `hint` bytes (growing only if the file is larger).
#[allow(clippy::disallowed_methods)] // vanished processes are expected: no path in errors needed
fn read_proc_file(path: &str, hint: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut buf = vec![0u8; hint];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
        // A seq_file hands over a short file in one read; ask again only when full.
        if len < buf.len() {
            break;
        }
    }
    buf.truncate(len);
    Some(buf)
}

/// [`read_proc_file`] as text.
fn read_proc_text(path: &str, hint: usize) -> Option<String> {
    String::from_utf8(read_proc_file(path, hint)?).ok()
}

/// `/proc/PID/stat` of one process; `None` if it is gone.
pub(crate) fn read_stat(pid: i32) -> Option<Stat> {
    let raw = read_proc_file(&format!("/proc/{pid}/stat"), 1024)?;
    parse_stat(std::str::from_utf8(&raw).ok()?)
}

/// The run cookie (`QW_RUN_ID`) in a process's initial environment, if readable.
pub(crate) fn read_cookie(pid: i32) -> Option<String> {
    let environ = read_proc_file(&format!("/proc/{pid}/environ"), 8192)?;
    environ_var(&environ, COOKIE_VAR).map(str::to_owned)
}

/// The pid most recently handed out in this pid namespace (`/proc/sys/kernel/ns_last_pid`).
pub(crate) fn last_pid() -> Option<i32> {
    let raw = read_proc_file("/proc/sys/kernel/ns_last_pid", 32)?;
    std::str::from_utf8(&raw).ok()?.trim().parse().ok()
}

/// The largest pid plus one (`/proc/sys/kernel/pid_max`); 4 194 304 if unreadable.
pub(crate) fn pid_max() -> i32 {
    read_proc_file("/proc/sys/kernel/pid_max", 32)
        .and_then(|raw| std::str::from_utf8(&raw).ok()?.trim().parse().ok())
        .unwrap_or(4_194_304)
}

/// The pids handed out after `after` up to `last`, in order, wrapping past `pid_max` to
/// the lowest pids the kernel reuses (from 300); `None` when there are more than `cap`.
pub(crate) fn pids_between(after: i32, last: i32, pid_max: i32, cap: usize) -> Option<Vec<i32>> {
    const FIRST_REUSED: i32 = 300;
    let count = |lo: i32, hi: i32| usize::try_from(hi - lo).unwrap_or(0);
    if last >= after {
        return (count(after, last) <= cap).then(|| (after + 1..=last).collect());
    }
    let low = if last >= FIRST_REUSED {
        FIRST_REUSED
    } else {
        1
    };
    (count(after + 1, pid_max) + count(low, last + 1) <= cap)
        .then(|| (after + 1..pid_max).chain(low..=last).collect())
}

/// Bytes a process has passed to `read`-like and `write`-like calls on anything (files,
/// pipes, terminals, sockets): `(rchar, wchar)` of `/proc/PID/io`.
pub(crate) fn parse_io(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    Some((field("rchar:")?, field("wchar:")?))
}

/// [`parse_io`] of a live process; `None` if it is gone or unreadable.
pub(crate) fn read_io(pid: i32) -> Option<(u64, u64)> {
    parse_io(&read_proc_text(&format!("/proc/{pid}/io"), 512)?)
}

/// Whether a `/proc/PID/syscall` line shows a process inside a call that writes (`write`,
/// `writev`, `pwrite`, `sendto`, `sendmsg`, `sendfile`, `splice`…): a sleeping process in
/// one is waiting for its reader, not idle.
pub(crate) fn in_write_call(syscall_line: &str) -> bool {
    use nix::libc;
    let Some(nr) = syscall_line
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<libc::c_long>().ok())
    else {
        return false; // "running", or "-1 …" (not in a system call)
    };
    [
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_pwrite64,
        libc::SYS_pwritev,
        libc::SYS_sendto,
        libc::SYS_sendmsg,
        libc::SYS_sendmmsg,
        libc::SYS_sendfile,
        libc::SYS_splice,
        libc::SYS_tee,
        libc::SYS_vmsplice,
        libc::SYS_copy_file_range,
    ]
    .contains(&nr)
}

/// Whether a process is blocked in a call that writes (see [`in_write_call`]); where
/// `/proc/PID/syscall` is unreadable, the kernel function it sleeps in (`wchan`) tells.
pub(crate) fn blocked_writing(pid: i32) -> bool {
    if let Some(line) = read_proc_text(&format!("/proc/{pid}/syscall"), 256) {
        return in_write_call(&line);
    }
    read_proc_text(&format!("/proc/{pid}/wchan"), 128).is_some_and(|w| {
        w.contains("pipe_write") || w.contains("tty_write") || w.contains("sendmsg")
    })
}

/// Every process of the current user that is visible in `/proc`.
#[allow(clippy::disallowed_methods)] // /proc entries come and go; unreadable ones are skipped
pub(crate) fn snapshot() -> Vec<ProcInfo> {
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
pub(crate) fn command_line(pid: i32, comm: &str) -> String {
    let raw = read_proc_file(&format!("/proc/{pid}/cmdline"), 1024).unwrap_or_default();
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
pub(crate) fn start_time_of(pid: i32) -> Option<u64> {
    read_stat(pid)
        .filter(|s| !matches!(s.state, 'Z' | 'X' | 'x'))
        .map(|s| s.start_time)
}

/// `pid` and every ancestor of it up to pid 1.
pub(crate) fn ancestors_of(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut cur = pid;
    while cur > 1 && out.len() < 4096 {
        let Some(stat) = read_stat(cur) else {
            break;
        };
        cur = stat.ppid;
        out.push(cur);
    }
    out
}

#[cfg(test)]
/// Processes in `procs` that descend from `root` (not including `root`).
pub(crate) fn descendants(procs: &[ProcInfo], root: i32) -> Vec<&ProcInfo> {
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
    fn lists_the_pids_handed_out_since_a_look() {
        assert_eq!(pids_between(10, 13, 100, 10), Some(vec![11, 12, 13]));
        assert_eq!(pids_between(10, 10, 100, 10), Some(vec![]));
        assert_eq!(pids_between(10, 30, 100, 10), None);
        // Wrapped past pid_max: the tail, then the reused low pids (from 300).
        assert_eq!(
            pids_between(997, 301, 1000, 10),
            Some(vec![998, 999, 300, 301])
        );
        assert_eq!(pids_between(97, 2, 100, 10), Some(vec![98, 99, 1, 2]));
        assert_eq!(pids_between(990, 305, 1000, 10), None);
    }

    #[test]
    fn parses_io_counters() {
        let io = "rchar: 6976\nwchar: 65536\nsyscr: 10\nsyscw: 8\nread_bytes: 4096\n";
        assert_eq!(parse_io(io), Some((6976, 65536)));
        assert_eq!(parse_io("rchar: 1\n"), None);
        assert_eq!(parse_io(""), None);
    }

    #[test]
    fn tells_write_calls_from_others() {
        use nix::libc;
        let line = |nr: libc::c_long| format!("{nr} 0x1 0x5581 0x10000 0x0 0x0 0x0 0x7ffd 0x7f12");
        assert!(in_write_call(&line(libc::SYS_write)));
        assert!(in_write_call(&line(libc::SYS_writev)));
        assert!(in_write_call(&line(libc::SYS_sendmsg)));
        assert!(!in_write_call(&line(libc::SYS_read)));
        assert!(!in_write_call(&line(libc::SYS_nanosleep)));
        assert!(!in_write_call(&line(libc::SYS_wait4)));
        assert!(!in_write_call("running"));
        assert!(!in_write_call("-1 0x7ffd 0x7f12"));
        assert!(!in_write_call(""));
    }

    #[test]
    fn reads_this_process_by_pid() {
        let me = std::process::id() as i32;
        assert!(pids().contains(&me));
        assert_eq!(read_stat(me).map(|s| s.pid), Some(me));
        assert!(read_io(me).is_some());
        assert!(last_pid().is_some_and(|p| p > 0));
        assert!(pid_max() > me);
    }

    #[test]
    fn snapshot_sees_this_process() {
        let me = std::process::id() as i32;
        assert!(snapshot().iter().any(|p| p.pid == me));
    }
}
