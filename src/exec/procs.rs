//! Processes as read from `/proc` (Linux only): the listing, the pids handed out lately,
//! and the few files of one process that qw reads.
//!
//! Parsing is separated from reading so the parsers are tested on fixed strings.
//! Reads that fail because a process exited mid-scan are not errors: the process is
//! simply absent.

use super::cookie::COOKIE_VAR;

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
    /// Number of threads (field 20); a zombie thread-group leader still counts itself.
    pub threads: i64,
}

impl Stat {
    /// Whether the process is alive: not dead, and not a zombie, except a zombie
    /// thread-group leader whose other threads still run (its main thread called
    /// `pthread_exit`): `kill(pid)` still reaches them, and its children are its.
    pub(crate) fn alive(&self) -> bool {
        match self.state {
            'X' | 'x' => false,
            'Z' => self.threads > 1,
            _ => true,
        }
    }
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
    // Fields 16..=19 skipped; 20 is the thread count, 21 skipped.
    let threads = fields.nth(4)?.parse().ok()?;
    let start_time = fields.nth(1)?.parse().ok()?;
    Some(Stat {
        pid,
        comm,
        state,
        ppid,
        pgid,
        cpu_ticks: utime + stime,
        start_time,
        threads,
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

/// The pids listed in `/proc` (processes only, not threads), read lazily: a caller that
/// acts on each pid as it comes sees the listing a chunk at a time, not as it was when
/// the scan began.
#[allow(clippy::disallowed_methods)] // /proc entries come and go; unreadable ones are skipped
pub(crate) fn pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
}

/// The children of `pid`, from `/proc/PID/task/*/children` (every thread's); `None`
/// where the kernel has no such file (built without `CONFIG_PROC_CHILDREN`) or `pid` is
/// gone. Cheap and exact at the moment of the read: the orphans a subreaper adopted are
/// listed there.
#[allow(clippy::disallowed_methods)] // /proc entries come and go; unreadable ones are skipped
pub(crate) fn children(pid: i32) -> Option<Vec<i32>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut out = Vec::new();
    let mut any = false;
    for task in tasks.flatten() {
        let path = task.path().join("children");
        let Some(raw) = path.to_str().and_then(|p| read_proc_file(p, 256)) else {
            continue;
        };
        any = true;
        out.extend(parse_children(&raw));
    }
    any.then_some(out)
}

/// Parse a `children` file: pids separated by spaces.
pub(crate) fn parse_children(raw: &[u8]) -> impl Iterator<Item = i32> + '_ {
    raw.split(|b| b.is_ascii_whitespace())
        .filter_map(|w| std::str::from_utf8(w).ok()?.parse().ok())
}

/// Whether `pid` names a process (a thread-group leader) rather than another thread of
/// one: `/proc/TID/stat` answers for any thread, and a thread's parent is its process's.
pub(crate) fn is_process(pid: i32) -> bool {
    read_proc_text(&format!("/proc/{pid}/status"), 2048).is_some_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Tgid:"))
            .and_then(|v| v.trim().parse::<i32>().ok())
            == Some(pid)
    })
}

/// The raw initial environment of `pid`, if readable. A zombie thread-group leader whose
/// other threads run (see [`Stat::alive`]) has an empty `/proc/PID/environ`: its live
/// threads' `/proc/PID/task/TID/environ` are read instead.
#[allow(clippy::disallowed_methods)] // /proc entries come and go; unreadable ones are skipped
pub(crate) fn read_environ(pid: i32) -> Option<Vec<u8>> {
    let own = read_proc_file(&format!("/proc/{pid}/environ"), 8192);
    if own.as_ref().is_some_and(|e| !e.is_empty()) {
        return own;
    }
    // Empty (a kernel thread, or a leader gone before its threads) or unreadable: only
    // a zombie leader with live threads is worth a look at its tasks.
    if !read_stat(pid).is_some_and(|s| s.state == 'Z' && s.alive()) {
        return own;
    }
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks
        .flatten()
        .filter_map(|t| read_proc_file(t.path().join("environ").to_str()?, 8192))
        .find(|e| !e.is_empty())
        .or(own)
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
    let environ = read_environ(pid)?;
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

/// Sort `pids` newest first: `last` (the pid handed out last) first, then down to the
/// oldest, wrapping past `pid_max` (the pids above `last` were handed out before the
/// counter wrapped, so they are older than those below it).
pub(crate) fn newest_first(pids: &mut [i32], last: i32, pid_max: i32) {
    let max = pid_max.max(last.saturating_add(1)).max(1);
    pids.sort_unstable_by_key(|&pid| (i64::from(last) - i64::from(pid)).rem_euclid(i64::from(max)));
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
    read_stat(pid).filter(Stat::alive).map(|s| s.start_time)
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
        assert_eq!(s.threads, 1);
        assert!(s.alive());
    }

    #[test]
    fn a_zombie_leader_with_live_threads_is_alive() {
        let with = |state: char, threads: i64| Stat {
            state,
            threads,
            ..parse_stat(STAT).unwrap()
        };
        assert!(with('Z', 5).alive());
        assert!(!with('Z', 1).alive());
        assert!(!with('X', 5).alive());
        assert!(with('S', 1).alive());
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
    fn sorts_pids_newest_first_across_a_wrap() {
        let mut pids = vec![1, 5, 300, 301, 998, 999, 7];
        newest_first(&mut pids, 301, 1000);
        assert_eq!(pids, vec![301, 300, 7, 5, 1, 999, 998]);
        let mut pids = vec![3, 10, 11, 12];
        newest_first(&mut pids, 12, 100);
        assert_eq!(pids, vec![12, 11, 10, 3]);
    }

    #[test]
    fn parses_children_files() {
        assert_eq!(
            parse_children(b"12 345 6 ").collect::<Vec<_>>(),
            [12, 345, 6]
        );
        assert_eq!(parse_children(b"").count(), 0);
    }

    #[test]
    fn lists_children_where_the_kernel_can() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Absent from this kernel, or present and exact.
        if let Some(kids) = children(std::process::id() as i32) {
            assert!(kids.contains(&pid), "{kids:?} lacks {pid}");
        }
        let _ = child.kill();
        let _ = child.wait();
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
        assert!(pids().any(|p| p == me));
        assert!(is_process(me));
        let tid = std::thread::spawn(|| nix::unistd::gettid().as_raw())
            .join()
            .unwrap();
        // A thread's /proc entry answers, but it is not a process (it may be gone by
        // now, which is not a process either).
        assert!(!is_process(tid));
        assert_eq!(read_stat(me).map(|s| s.pid), Some(me));
        assert!(read_io(me).is_some());
        assert!(last_pid().is_some_and(|p| p > 0));
        assert!(pid_max() > me);
    }
}
