//! A cgroup v1 cgroup's figures: cpuacct, cpu and memory hierarchies, in the
//! files and units cAdvisor uses.

use super::{
    files::Dir,
    stats::{CgroupStats, MemoryFiles, count_lines, parse_u64, pick, procs, read_memory},
};

/// `USER_HZ`: the unit of v1's cpuacct.stat.
const USER_HZ: f64 = 100.0;
/// A v1 memory limit at or above this means "no limit".
const V1_UNLIMITED: u64 = 1 << 62;

/// Where v1 keeps memory figures.
const MEMORY: MemoryFiles = MemoryFiles {
    stat_keys: ["total_inactive_file", "total_rss", "total_cache"],
    usage: "memory.usage_in_bytes",
    events: "memory.oom_control",
};

/// A v1 cgroup's figures and its first process.
pub(super) fn stats(
    cpuacct: &Dir,
    cpu: &Dir,
    memory: &Dir,
    oom: bool,
) -> Option<(CgroupStats, Option<u32>)> {
    let (processes, first) = cpuacct.with("cgroup.procs", procs)?;
    let [user, system] = cpuacct
        .with("cpuacct.stat", |t| pick(t, ["user", "system"]))
        .unwrap_or_default();
    let [periods, throttled, throttled_ns] = cpu
        .with("cpu.stat", |t| {
            pick(t, ["nr_periods", "nr_throttled", "throttled_time"])
        })
        .unwrap_or_default();
    let mem = read_memory(memory, &MEMORY, oom);
    // Periods are counted only under a CPU quota (see v2).
    let (periods, throttled, throttled_ns) = match periods {
        Some(p) if p > 0 => (periods, throttled, throttled_ns),
        _ => (None, None, None),
    };
    let stats = CgroupStats {
        cpu_usage_seconds: cpuacct
            .with("cpuacct.usage", parse_u64)
            .flatten()
            .map(|ns| ns as f64 / 1e9),
        cpu_user_seconds: user.map(|t| t as f64 / USER_HZ),
        cpu_system_seconds: system.map(|t| t as f64 / USER_HZ),
        cfs_periods: periods,
        cfs_throttled_periods: throttled,
        cfs_throttled_seconds: throttled_ns.map(|ns| ns as f64 / 1e9),
        memory_usage_bytes: mem.usage,
        memory_working_set_bytes: mem.working_set,
        memory_rss_bytes: mem.rss,
        memory_cache_bytes: mem.cache,
        memory_limit_bytes: memory
            .with("memory.limit_in_bytes", parse_u64)
            .flatten()
            .map(|l| if l >= V1_UNLIMITED { 0 } else { l }),
        processes: Some(processes),
        oom_kills: mem.oom_kills,
        threads: cpuacct.with("tasks", count_lines),
        ..CgroupStats::default()
    };
    Some((stats, first))
}
