//! One cgroup's figures as cgroupfs gives them, and the text formats the v1
//! and v2 readers share.

use super::files::Dir;

/// One cgroup's usage. Absent values are None (a controller not enabled there).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupStats {
    pub cpu_usage_seconds: Option<f64>,
    pub cpu_user_seconds: Option<f64>,
    pub cpu_system_seconds: Option<f64>,
    pub cfs_periods: Option<u64>,
    pub cfs_throttled_periods: Option<u64>,
    pub cfs_throttled_seconds: Option<f64>,
    pub memory_usage_bytes: Option<u64>,
    pub memory_working_set_bytes: Option<u64>,
    pub memory_rss_bytes: Option<u64>,
    pub memory_cache_bytes: Option<u64>,
    /// 0 when unlimited, as cAdvisor reports it.
    pub memory_limit_bytes: Option<u64>,
    pub processes: Option<u64>,
    /// OOM kills in this cgroup (v1 memory.oom_control / v2 memory.events `oom_kill`).
    pub oom_kills: Option<u64>,
    pub threads: Option<u64>,
    /// PSI totals, seconds: (some, full) of cpu, memory, io.
    pub pressure: Pressure,
    /// v2 io.stat per device ("major:minor"), when the io controller is on.
    pub io: Vec<IoStat>,
    /// Interfaces of the cgroup's network namespace, when it is not the host's.
    pub network: Vec<NetDev>,
}

/// Pressure stall totals of one cgroup, seconds (`some` = waiting, `full` = stalled).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pressure {
    pub cpu: Option<(f64, Option<f64>)>,
    pub memory: Option<(f64, Option<f64>)>,
    pub io: Option<(f64, Option<f64>)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoStat {
    pub device: String,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetDev {
    pub interface: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

pub(super) fn parse_u64(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The values of `keys` in `key value` lines (cpu.stat, memory.stat,
/// cpuacct.stat), in one pass and without allocating.
pub(super) fn pick<const N: usize>(text: &str, keys: [&str; N]) -> [Option<u64>; N] {
    let mut out = [None; N];
    for line in text.lines() {
        let Some((k, v)) = line.split_once(' ') else {
            continue;
        };
        if let Some(i) = keys.iter().position(|want| *want == k) {
            out[i] = v.trim().parse().ok();
        }
    }
    out
}

/// (number of lines, first line as a pid) of cgroup.procs.
pub(super) fn procs(text: &str) -> (u64, Option<u32>) {
    let first = text.lines().next().and_then(|l| l.trim().parse().ok());
    (text.lines().count() as u64, first)
}

pub(super) fn count_lines(text: &str) -> u64 {
    text.lines().count() as u64
}

/// `some avg10=… total=<µs>` / `full …` lines of a PSI file.
fn psi(text: &str) -> Option<(f64, Option<f64>)> {
    let total = |kind: &str| {
        text.lines()
            .find(|l| l.starts_with(kind))?
            .split_whitespace()
            .find_map(|f| f.strip_prefix("total="))?
            .parse::<u64>()
            .ok()
            .map(|us| us as f64 / 1e6)
    };
    Some((total("some")?, total("full")))
}

/// The PSI files of a v2 directory.
pub(super) fn pressure(dir: &Dir) -> Pressure {
    Pressure {
        cpu: dir.with("cpu.pressure", psi).flatten(),
        memory: dir.with("memory.pressure", psi).flatten(),
        io: dir.with("io.pressure", psi).flatten(),
    }
}

/// Where a memory controller keeps its figures (v1 and v2 name them apart).
pub(super) struct MemoryFiles {
    /// memory.stat's (inactive file, rss, cache) keys.
    pub stat_keys: [&'static str; 3],
    pub usage: &'static str,
    /// The file counting `oom_kill`.
    pub events: &'static str,
}

/// A cgroup's memory figures in bytes, and its OOM kills.
pub(super) struct Memory {
    pub usage: Option<u64>,
    pub working_set: Option<u64>,
    pub rss: Option<u64>,
    pub cache: Option<u64>,
    pub oom_kills: Option<u64>,
}

/// Reads memory.stat, the usage and (when `oom`) the OOM kills.
pub(super) fn read_memory(dir: &Dir, files: &MemoryFiles, oom: bool) -> Memory {
    let [inactive, rss, cache] = dir
        .with("memory.stat", |t| pick(t, files.stat_keys))
        .unwrap_or_default();
    let usage = dir.with(files.usage, parse_u64).flatten();
    let [oom_kills] = oom
        .then(|| dir.with(files.events, |t| pick(t, ["oom_kill"])))
        .flatten()
        .unwrap_or_default();
    Memory {
        usage,
        working_set: usage.map(|u| u.saturating_sub(inactive.unwrap_or(0))),
        rss,
        cache,
        oom_kills,
    }
}
