//! A cgroup v1 cgroup's figures: cpuacct, cpu and memory hierarchies, in the
//! files and units cAdvisor uses.

use super::{
    files::Dir,
    stats::{CgroupStats, count_lines, parse_u64, pick, procs},
};

/// `USER_HZ`: the unit of v1's cpuacct.stat.
const USER_HZ: f64 = 100.0;
/// A v1 memory limit at or above this means "no limit".
const V1_UNLIMITED: u64 = 1 << 62;

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
    let [inactive, rss, cache] = memory
        .with("memory.stat", |t| {
            pick(t, ["total_inactive_file", "total_rss", "total_cache"])
        })
        .unwrap_or_default();
    let usage = memory.with("memory.usage_in_bytes", parse_u64).flatten();
    let [oom_kills] = oom
        .then(|| memory.with("memory.oom_control", |t| pick(t, ["oom_kill"])))
        .flatten()
        .unwrap_or_default();
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
        memory_usage_bytes: usage,
        memory_working_set_bytes: usage.map(|u| u.saturating_sub(inactive.unwrap_or(0))),
        memory_rss_bytes: rss,
        memory_cache_bytes: cache,
        memory_limit_bytes: memory
            .with("memory.limit_in_bytes", parse_u64)
            .flatten()
            .map(|l| if l >= V1_UNLIMITED { 0 } else { l }),
        processes: Some(processes),
        oom_kills,
        threads: cpuacct.with("tasks", count_lines),
        ..CgroupStats::default()
    };
    Some((stats, first))
}
