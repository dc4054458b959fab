//! What the machine can take right now: load per usable CPU, memory in use, pressure.
//!
//! Parsing is separated from reading: the `parse_*` functions take file contents and are
//! tested on fixed strings (cgroup v1 and v2, `max` values, missing PSI). [`Probes::read`]
//! reads the real files and never fails: whatever cannot be read is `None`, and the policy
//! then does not block on it.
//!
//! Test-only: `QW_TEST_PROC_DIR` makes [`Probes::read`] take `loadavg`, `meminfo`,
//! `pressure/*` and `self/cgroup` from that directory instead of `/proc`, so integration
//! tests can show `qw` a load average that busy loops could not raise within a test.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

/// The three load averages of `/proc/loadavg`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LoadAvg {
    /// 1-minute load average.
    pub one: f64,
    /// 5-minute load average.
    pub five: f64,
    /// 15-minute load average.
    pub fifteen: f64,
}

/// The two `/proc/meminfo` fields the memory probe uses, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total: u64,
    /// `MemAvailable`.
    pub available: u64,
}

/// A CPU bandwidth limit (`cpu.max` or `cpu.cfs_quota_us`/`cpu.cfs_period_us`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuota {
    /// Microseconds of CPU time allowed per period.
    pub quota_us: u64,
    /// The period in microseconds.
    pub period_us: u64,
}

impl CpuQuota {
    /// How many CPUs' worth of time the limit allows (may be fractional).
    pub fn cpus(&self) -> f64 {
        self.quota_us as f64 / self.period_us as f64
    }
}

/// One line of `/proc/self/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupEntry {
    /// Hierarchy id (`0` for the cgroup v2 unified hierarchy).
    pub hierarchy: u32,
    /// Controllers of a v1 hierarchy (`cpu,cpuacct`); empty for v2.
    pub controllers: Vec<String>,
    /// The cgroup path inside the hierarchy, starting with `/`.
    pub path: String,
}

/// Parse `/proc/loadavg` (`0.52 0.58 0.59 1/467 12345`).
pub fn parse_loadavg(text: &str) -> Option<LoadAvg> {
    let mut it = text.split_whitespace().map(|w| w.parse::<f64>().ok());
    let (one, five, fifteen) = (it.next()??, it.next()??, it.next()??);
    [one, five, fifteen]
        .iter()
        .all(|v| v.is_finite() && *v >= 0.0)
        .then_some(LoadAvg { one, five, fifteen })
}

/// Parse the runnable-task count of `/proc/loadavg` (the `8` of its 4th field `8/467`):
/// kernel scheduling entities running or waiting for a CPU right now, the reader included.
pub fn parse_running(text: &str) -> Option<u32> {
    text.split_whitespace()
        .nth(3)?
        .split_once('/')?
        .0
        .parse()
        .ok()
}

/// Parse `/proc/meminfo`; needs `MemTotal` and `MemAvailable` (kernels since 3.14).
pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let mut total = None;
    let mut available = None;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match key.trim() {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            _ => continue,
        };
        let mut words = rest.split_whitespace();
        let n: u64 = words.next()?.parse().ok()?;
        let scale = match words.next() {
            Some("kB") => 1024,
            None => 1,
            Some(_) => return None,
        };
        *slot = Some(n.checked_mul(scale)?);
    }
    let (total, available) = (total?, available?);
    (total > 0).then_some(MemInfo { total, available })
}

/// Parse cgroup v2 `cpu.max` (`max 100000` → no limit, `200000 100000` → 2 CPUs).
pub fn parse_cpu_max(text: &str) -> Option<CpuQuota> {
    let mut it = text.split_whitespace();
    let quota = it.next()?;
    let period: u64 = it.next().map_or(Some(100_000), |p| p.parse().ok())?;
    if quota == "max" || period == 0 {
        return None;
    }
    let quota_us = quota.parse().ok()?;
    (quota_us > 0).then_some(CpuQuota {
        quota_us,
        period_us: period,
    })
}

/// Parse cgroup v1 `cpu.cfs_quota_us` + `cpu.cfs_period_us` (`-1` → no limit).
pub fn parse_cfs_quota(quota: &str, period: &str) -> Option<CpuQuota> {
    let quota_us: i64 = quota.trim().parse().ok()?;
    let period_us: u64 = period.trim().parse().ok()?;
    (quota_us > 0 && period_us > 0).then_some(CpuQuota {
        quota_us: quota_us.unsigned_abs(),
        period_us,
    })
}

/// Parse a memory limit: cgroup v2 `memory.max` (`max` → no limit) or cgroup v1
/// `memory.limit_in_bytes` (a huge page-rounded `i64::MAX` → no limit).
pub fn parse_memory_max(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        return None;
    }
    let n: u64 = t.parse().ok()?;
    // v1 reports "unlimited" as i64::MAX rounded down to a page; treat anything beyond
    // 2^60 bytes (1 EiB) as no limit.
    (n > 0 && n < (1 << 60)).then_some(n)
}

/// Parse a byte counter such as `memory.current` or `memory.usage_in_bytes`.
pub fn parse_bytes(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Parse the `inactive_file` (v2) or `total_inactive_file` (v1) line of `memory.stat`:
/// page cache the kernel reclaims first, which `memory.current` counts but which is not
/// memory pressure (what `docker stats` subtracts too).
pub fn parse_inactive_file(memory_stat: &str) -> Option<u64> {
    let mut plain = None;
    for line in memory_stat.lines() {
        let mut it = line.split_whitespace();
        match (it.next(), it.next()) {
            (Some("total_inactive_file"), Some(n)) => return n.parse().ok(),
            (Some("inactive_file"), Some(n)) => plain = n.parse().ok(),
            _ => {}
        }
    }
    plain
}

/// Parse `some avg10` from a `/proc/pressure/{cpu,memory}` file (a percentage, 0–100).
pub fn parse_psi(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    let value = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("avg10="))?
        .parse::<f64>()
        .ok()?;
    (value.is_finite() && value >= 0.0).then_some(value)
}

/// Parse `/proc/self/cgroup` (`0::/user.slice/…` for v2, `4:memory:/docker/…` for v1).
pub fn parse_proc_cgroup(text: &str) -> Vec<CgroupEntry> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.splitn(3, ':');
            let hierarchy = it.next()?.parse().ok()?;
            let controllers = it
                .next()?
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect();
            let path = it.next()?.to_owned();
            Some(CgroupEntry {
                hierarchy,
                controllers,
                path,
            })
        })
        .collect()
}

/// Memory in use: the machine's and, when a cgroup limit is set, the cgroup's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Memory {
    /// 1 − MemAvailable/MemTotal.
    pub host_used: Option<f64>,
    /// Tightest cgroup `memory.current`/`memory.max` (page cache it can drop excluded).
    pub cgroup_used: Option<f64>,
    /// The cgroup limit that fraction is measured against, in bytes.
    pub cgroup_limit_bytes: Option<u64>,
    /// `MemTotal` in bytes.
    pub total_bytes: Option<u64>,
    /// `MemAvailable` in bytes.
    pub available_bytes: Option<u64>,
}

impl Memory {
    /// The fraction the policy uses: the tighter (higher) of the host and cgroup figures.
    pub fn used(&self) -> Option<f64> {
        match (self.host_used, self.cgroup_used) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Where the usable-CPU count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuSource {
    /// The scheduler affinity mask (or the OS's processor count).
    Affinity,
    /// A cgroup CPU bandwidth limit, tighter than the affinity mask.
    CgroupQuota,
}

/// One snapshot of every probe. Fields that could not be read are `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Probes {
    /// `/proc/loadavg`.
    pub load_avg: Option<LoadAvg>,
    /// Tasks runnable right now, the process reading the probes included
    /// (`/proc/loadavg` 4th field): the instantaneous run-queue length.
    pub running: Option<u32>,
    /// CPUs this process may use: min(affinity mask, cgroup quota); at least 1 when known.
    pub usable_cpus: f64,
    /// What limited `usable_cpus`.
    pub cpu_source: CpuSource,
    /// Memory in use.
    pub memory: Memory,
    /// CPU PSI `some avg10` (percent), where the kernel provides it.
    pub cpu_pressure: Option<f64>,
    /// Memory PSI `some avg10` (percent), where the kernel provides it.
    pub memory_pressure: Option<f64>,
}

impl Probes {
    /// 1-minute load average divided by usable CPUs. `max_load` limits
    /// [`super::policy::load_figure`], which is this figure unless the run queue and CPU
    /// pressure show the load has already gone.
    pub fn load_per_cpu(&self) -> Option<f64> {
        self.load_avg.map(|l| l.one / self.usable_cpus)
    }

    /// Memory in use as a fraction 0–1: the figure `max_memory` limits.
    pub fn memory_used(&self) -> Option<f64> {
        self.memory.used()
    }

    /// Read every probe from this machine. Never fails: unreadable sources are `None`.
    pub fn read() -> Probes {
        Probes::read_from(&Sources::system())
    }

    /// Read every probe from the given file locations (tests point them at fixtures).
    pub fn read_from(src: &Sources) -> Probes {
        let text = |p: &Path| crate::fs::read_to_string(p).ok();
        let loadavg = text(&src.proc.join("loadavg"));
        let load_avg = loadavg.as_deref().and_then(parse_loadavg);
        let running = loadavg.as_deref().and_then(parse_running);
        let host = text(&src.proc.join("meminfo")).and_then(|t| parse_meminfo(&t));
        let cgroups = text(&src.proc.join("self/cgroup"))
            .map(|t| parse_proc_cgroup(&t))
            .unwrap_or_default();
        let dirs = CgroupDirs::locate(&src.cgroup_root, &cgroups);

        let affinity = src.affinity_cpus.unwrap_or_else(affinity_cpus).max(1) as f64;
        let quota = dirs.cpu_quota();
        let (usable_cpus, cpu_source) = match quota {
            Some(q) if q < affinity => (q.max(0.01), CpuSource::CgroupQuota),
            _ => (affinity, CpuSource::Affinity),
        };
        let cgroup_mem = dirs.memory_use();
        let memory = Memory {
            host_used: host.map(|m| 1.0 - (m.available.min(m.total) as f64 / m.total as f64)),
            cgroup_used: cgroup_mem.map(|(used, _)| used),
            cgroup_limit_bytes: cgroup_mem.map(|(_, limit)| limit),
            total_bytes: host.map(|m| m.total),
            available_bytes: host.map(|m| m.available),
        };
        let psi =
            |name: &str| text(&src.proc.join("pressure").join(name)).and_then(|t| parse_psi(&t));
        Probes {
            load_avg,
            running,
            usable_cpus,
            cpu_source,
            memory,
            cpu_pressure: psi("cpu"),
            memory_pressure: psi("memory"),
        }
    }

    /// The state's `resources.system_stats` object (the original's keys plus ours).
    pub fn system_stats_json(&self) -> Value {
        let round = |v: f64| (v * 10.0).round() / 10.0;
        json!({
            "cpu_percent": self.load_per_cpu().map(|l| round((l * 100.0).min(100.0))),
            "memory_percent": self.memory_used().map(|m| round(m * 100.0)),
            "load_average": self.load_avg.map(|l| l.one),
            "load_per_cpu": self.load_per_cpu(),
            "usable_cpus": self.usable_cpus,
            "cpu_pressure": self.cpu_pressure,
            "memory_pressure": self.memory_pressure,
            "timestamp": chrono::Local::now().naive_local().format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        })
    }
}

/// Test-only: a directory standing in for `/proc` (see the module header).
pub const TEST_PROC_ENV: &str = "QW_TEST_PROC_DIR";

/// Where the probe files live: `/proc` and `/sys/fs/cgroup` on a real machine.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The proc file system.
    pub proc: PathBuf,
    /// The cgroup file system root.
    pub cgroup_root: PathBuf,
    /// CPUs in the affinity mask; `None` asks the OS.
    pub affinity_cpus: Option<usize>,
}

impl Sources {
    /// The real machine's files (`/proc` replaced by `QW_TEST_PROC_DIR` when set: tests only).
    pub fn system() -> Sources {
        let proc = std::env::var_os(TEST_PROC_ENV)
            .filter(|d| !d.is_empty())
            .map_or_else(|| PathBuf::from("/proc"), PathBuf::from);
        Sources {
            proc,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            affinity_cpus: None,
        }
    }
}

/// CPUs in this process's affinity mask (all online CPUs where that cannot be read).
fn affinity_cpus() -> usize {
    #[cfg(target_os = "linux")]
    {
        if let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
            let n = (0..nix::sched::CpuSet::count())
                .filter(|&i| set.is_set(i).unwrap_or(false))
                .count();
            if n > 0 {
                return n;
            }
        }
    }
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The cgroup directories (leaf first, then its ancestors) that hold this process's limits.
#[derive(Debug, Default)]
struct CgroupDirs {
    /// cgroup v2: one hierarchy for everything.
    v2: Vec<PathBuf>,
    /// cgroup v1 `cpu` controller.
    v1_cpu: Vec<PathBuf>,
    /// cgroup v1 `memory` controller.
    v1_memory: Vec<PathBuf>,
}

impl CgroupDirs {
    fn locate(root: &Path, entries: &[CgroupEntry]) -> CgroupDirs {
        let mut dirs = CgroupDirs::default();
        for e in entries {
            if e.hierarchy == 0 && e.controllers.is_empty() {
                // A hybrid system mounts an empty v2 hierarchy at `unified/`; only a
                // pure v2 mount at the root has controllers.
                if root.join("cgroup.controllers").is_file() {
                    dirs.v2 = chain(root, &e.path);
                }
            } else if e.controllers.iter().any(|c| c == "cpu") {
                dirs.v1_cpu = chain(&v1_mount(root, &e.controllers, "cpu"), &e.path);
            } else if e.controllers.iter().any(|c| c == "memory") {
                dirs.v1_memory = chain(&v1_mount(root, &e.controllers, "memory"), &e.path);
            }
        }
        dirs
    }

    /// The tightest CPU quota of the leaf and its ancestors, in CPUs.
    fn cpu_quota(&self) -> Option<f64> {
        let text = |p: PathBuf| crate::fs::read_to_string(p).ok();
        let v2 = self
            .v2
            .iter()
            .filter_map(|d| text(d.join("cpu.max")).and_then(|t| parse_cpu_max(&t)));
        let v1 = self.v1_cpu.iter().filter_map(|d| {
            parse_cfs_quota(
                &text(d.join("cpu.cfs_quota_us"))?,
                &text(d.join("cpu.cfs_period_us"))?,
            )
        });
        v2.chain(v1).map(|q| q.cpus()).reduce(f64::min)
    }

    /// The highest used/limit fraction over the leaf and its ancestors that have a
    /// memory limit, with that limit.
    fn memory_use(&self) -> Option<(f64, u64)> {
        let text = |p: PathBuf| crate::fs::read_to_string(p).ok();
        let level = |d: &PathBuf, max: &str, current: &str| {
            let limit = parse_memory_max(&text(d.join(max))?)?;
            let current = parse_bytes(&text(d.join(current))?)?;
            let inactive = text(d.join("memory.stat"))
                .and_then(|t| parse_inactive_file(&t))
                .unwrap_or(0);
            let used = current.saturating_sub(inactive) as f64 / limit as f64;
            Some((used.min(1.0), limit))
        };
        let v2 = self
            .v2
            .iter()
            .filter_map(|d| level(d, "memory.max", "memory.current"));
        let v1 = self
            .v1_memory
            .iter()
            .filter_map(|d| level(d, "memory.limit_in_bytes", "memory.usage_in_bytes"));
        v2.chain(v1).reduce(|a, b| if b.0 > a.0 { b } else { a })
    }
}

/// Where a v1 controller is mounted: `cpu,cpuacct/` or, failing that, `cpu/`.
fn v1_mount(root: &Path, controllers: &[String], want: &str) -> PathBuf {
    let joined = root.join(controllers.join(","));
    if joined.is_dir() {
        joined
    } else {
        root.join(want)
    }
}

/// `base/path` and each ancestor up to `base`. A container with its own cgroup namespace
/// shows `/` (or a path that does not exist inside it): then only `base` itself.
fn chain(base: &Path, path: &str) -> Vec<PathBuf> {
    let leaf = base.join(path.trim_start_matches('/'));
    if !leaf.is_dir() {
        return vec![base.to_path_buf()];
    }
    leaf.ancestors()
        .take_while(|d| d.starts_with(base))
        .map(Path::to_path_buf)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       16384000 kB\nMemFree:         1000000 kB\nMemAvailable:    4096000 kB\nBuffers:          200000 kB\n";

    #[test]
    fn loadavg_parses_and_rejects_garbage() {
        let l = parse_loadavg("0.52 0.58 0.59 1/467 12345\n").unwrap();
        assert_eq!((l.one, l.five, l.fifteen), (0.52, 0.58, 0.59));
        assert_eq!(parse_running("0.52 0.58 0.59 7/467 12345\n"), Some(7));
        assert_eq!(parse_running("0.52 0.58 0.59"), None);
        assert_eq!(parse_running("0.52 0.58 0.59 x/467 1"), None);
        assert_eq!(parse_running("0.52 0.58 0.59 467 1"), None);
        assert_eq!(parse_loadavg(""), None);
        assert_eq!(parse_loadavg("0.5 x 0.1 1/2 3"), None);
        assert_eq!(parse_loadavg("NaN 0 0 1/2 3"), None);
    }

    #[test]
    fn meminfo_reads_total_and_available_in_bytes() {
        let m = parse_meminfo(MEMINFO).unwrap();
        assert_eq!(m.total, 16_384_000 * 1024);
        assert_eq!(m.available, 4_096_000 * 1024);
        // Old kernels without MemAvailable, and empty files, give nothing.
        assert_eq!(parse_meminfo("MemTotal: 100 kB\nMemFree: 50 kB\n"), None);
        assert_eq!(parse_meminfo("MemTotal: 0 kB\nMemAvailable: 0 kB\n"), None);
        assert_eq!(parse_meminfo(""), None);
    }

    #[test]
    fn cpu_max_v2_and_cfs_quota_v1() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        let q = parse_cpu_max("200000 100000\n").unwrap();
        assert_eq!(q.cpus(), 2.0);
        assert_eq!(parse_cpu_max("50000 100000").unwrap().cpus(), 0.5);
        assert_eq!(parse_cpu_max("garbage"), None);
        assert_eq!(parse_cfs_quota("-1\n", "100000\n"), None);
        assert_eq!(parse_cfs_quota("150000\n", "100000\n").unwrap().cpus(), 1.5);
    }

    #[test]
    fn memory_max_handles_max_and_v1_unlimited() {
        assert_eq!(parse_memory_max("max\n"), None);
        assert_eq!(parse_memory_max("1073741824\n"), Some(1 << 30));
        assert_eq!(parse_memory_max("9223372036854771712\n"), None);
        assert_eq!(parse_bytes("2650112\n"), Some(2_650_112));
        let stat = "cache 100\ninactive_file 16384\ntotal_inactive_file 32768\n";
        assert_eq!(parse_inactive_file(stat), Some(32768));
        assert_eq!(parse_inactive_file("anon 5\ninactive_file 7\n"), Some(7));
    }

    #[test]
    fn psi_some_avg10_present_and_absent() {
        let text = "some avg10=12.61 avg60=1.44 avg300=2.12 total=14435308\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(parse_psi(text), Some(12.61));
        assert_eq!(
            parse_psi("full avg10=3.00 avg60=0 avg300=0 total=0\n"),
            None
        );
        assert_eq!(parse_psi(""), None);
    }

    #[test]
    fn proc_self_cgroup_v1_and_v2() {
        let v1 = "4:memory:/process_api/a15f\n1:cpu,cpuacct:/\n0::/\n";
        let e = parse_proc_cgroup(v1);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].controllers, ["memory"]);
        assert_eq!(e[0].path, "/process_api/a15f");
        assert_eq!(e[1].controllers, ["cpu", "cpuacct"]);
        assert!(e[2].controllers.is_empty());
    }

    /// A fake machine: `proc/` and `cgroup/` under a temp dir.
    fn machine(files: &[(&str, &str)]) -> (tempfile::TempDir, Sources) {
        let dir = tempfile::tempdir().unwrap();
        for (rel, body) in files {
            let p = dir.path().join(rel);
            crate::fs::create_dir_all(p.parent().unwrap()).unwrap();
            crate::fs::write(&p, body).unwrap();
        }
        let src = Sources {
            proc: dir.path().join("proc"),
            cgroup_root: dir.path().join("cgroup"),
            affinity_cpus: Some(64),
        };
        (dir, src)
    }

    #[test]
    fn container_with_two_cpus_of_64_and_a_memory_limit() {
        let (_d, src) = machine(&[
            ("proc/loadavg", "3.00 2.00 1.00 1/100 42\n"),
            ("proc/meminfo", MEMINFO),
            ("proc/self/cgroup", "0::/ctr\n"),
            ("cgroup/cgroup.controllers", "cpu memory\n"),
            ("cgroup/ctr/cpu.max", "200000 100000\n"),
            ("cgroup/ctr/memory.max", "1000\n"),
            ("cgroup/ctr/memory.current", "900\n"),
            ("cgroup/ctr/memory.stat", "anon 800\ninactive_file 50\n"),
            (
                "proc/pressure/cpu",
                "some avg10=4.50 avg60=0 avg300=0 total=1\n",
            ),
        ]);
        let p = Probes::read_from(&src);
        assert_eq!(p.usable_cpus, 2.0);
        assert_eq!(p.cpu_source, CpuSource::CgroupQuota);
        assert_eq!(p.load_per_cpu(), Some(1.5));
        assert_eq!(p.running, Some(1));
        // Host: 75 % used; cgroup: (900 - 50) / 1000 = 85 % → the tighter wins.
        assert!((p.memory.host_used.unwrap() - 0.75).abs() < 1e-9);
        assert!((p.memory_used().unwrap() - 0.85).abs() < 1e-9);
        assert_eq!(p.cpu_pressure, Some(4.5));
        assert_eq!(p.memory_pressure, None);
        let stats = p.system_stats_json();
        assert_eq!(stats["cpu_percent"], 100.0);
        assert_eq!(stats["memory_percent"], 85.0);
        assert_eq!(stats["load_average"], 3.0);
    }

    #[test]
    fn cgroup_v1_unlimited_and_nothing_readable() {
        let (_d, src) = machine(&[
            ("proc/loadavg", "1.00 1.00 1.00 1/100 42\n"),
            ("proc/self/cgroup", "4:memory:/a\n2:cpu,cpuacct:/\n0::/\n"),
            (
                "cgroup/memory/a/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            ("cgroup/memory/a/memory.usage_in_bytes", "5000\n"),
            ("cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n"),
            ("cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n"),
        ]);
        let p = Probes::read_from(&src);
        assert_eq!(p.usable_cpus, 64.0);
        assert_eq!(p.cpu_source, CpuSource::Affinity);
        assert_eq!(p.memory_used(), None);

        let (_d, src) = machine(&[]);
        let p = Probes::read_from(&src);
        assert_eq!(p.load_per_cpu(), None);
        assert_eq!(p.memory_used(), None);
        assert_eq!(p.cpu_pressure, None);
    }

    #[test]
    fn cgroup_v1_limit_on_a_parent_applies() {
        let (_d, src) = machine(&[
            ("proc/self/cgroup", "4:memory:/a/b\n3:cpu:/a/b\n"),
            ("cgroup/memory/a/memory.limit_in_bytes", "1000\n"),
            ("cgroup/memory/a/memory.usage_in_bytes", "500\n"),
            (
                "cgroup/memory/a/b/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            ("cgroup/memory/a/b/memory.usage_in_bytes", "100\n"),
            ("cgroup/cpu/a/cpu.cfs_quota_us", "50000\n"),
            ("cgroup/cpu/a/cpu.cfs_period_us", "100000\n"),
            ("cgroup/cpu/a/b/cpu.cfs_quota_us", "-1\n"),
            ("cgroup/cpu/a/b/cpu.cfs_period_us", "100000\n"),
        ]);
        let p = Probes::read_from(&src);
        assert_eq!(p.usable_cpus, 0.5);
        assert_eq!(p.memory.cgroup_limit_bytes, Some(1000));
        assert_eq!(p.memory_used(), Some(0.5));
    }

    #[test]
    fn real_machine_read_never_fails() {
        let p = Probes::read();
        assert!(p.usable_cpus > 0.0);
        if cfg!(target_os = "linux") {
            assert!(p.load_per_cpu().is_some());
            assert!(p.memory_used().is_some_and(|m| (0.0..=1.0).contains(&m)));
        }
    }
}
