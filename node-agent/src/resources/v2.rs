//! A cgroup v2 cgroup's figures: one directory of the unified hierarchy, in
//! the files and units cAdvisor uses.

use super::{
    files::Dir,
    stats::{CgroupStats, IoStat, MemoryFiles, count_lines, pick, pressure, procs, read_memory},
};

/// Where v2 keeps memory figures.
const MEMORY: MemoryFiles = MemoryFiles {
    stat_keys: ["inactive_file", "anon", "file"],
    usage: "memory.current",
    events: "memory.events",
};

/// A v2 cgroup's figures and its first process.
pub(super) fn stats(dir: &Dir, oom: bool) -> Option<(CgroupStats, Option<u32>)> {
    let (processes, first) = dir.with("cgroup.procs", procs)?;
    let [
        usage_us,
        user_us,
        system_us,
        periods,
        throttled,
        throttled_us,
    ] = dir
        .with("cpu.stat", |t| {
            pick(
                t,
                [
                    "usage_usec",
                    "user_usec",
                    "system_usec",
                    "nr_periods",
                    "nr_throttled",
                    "throttled_usec",
                ],
            )
        })
        .unwrap_or_default();
    let mem = read_memory(dir, &MEMORY, oom);
    let secs = |us: Option<u64>| us.map(|v| v as f64 / 1e6);
    // The kernel counts periods only under a CPU quota (cpu.max): without
    // one they stay 0, and cAdvisor publishes them only for a quota too.
    let (periods, throttled, throttled_us) = match periods {
        Some(p) if p > 0 => (periods, throttled, throttled_us),
        _ => (None, None, None),
    };
    let stats = CgroupStats {
        cpu_usage_seconds: secs(usage_us),
        cpu_user_seconds: secs(user_us),
        cpu_system_seconds: secs(system_us),
        cfs_periods: periods,
        cfs_throttled_periods: throttled,
        cfs_throttled_seconds: secs(throttled_us),
        memory_usage_bytes: mem.usage,
        memory_working_set_bytes: mem.working_set,
        memory_rss_bytes: mem.rss,
        memory_cache_bytes: mem.cache,
        // "max" (unlimited) is 0, as cAdvisor reports it.
        memory_limit_bytes: dir.with("memory.max", |t| t.trim().parse().unwrap_or(0)),
        processes: Some(processes),
        oom_kills: mem.oom_kills,
        threads: dir.with("cgroup.threads", count_lines),
        pressure: pressure(dir),
        io: dir.with("io.stat", io_stat).unwrap_or_default(),
        network: Vec::new(),
    };
    Some((stats, first))
}

/// v2 io.stat: `MAJ:MIN rbytes=… wbytes=… rios=… wios=… …` per device.
fn io_stat(text: &str) -> Vec<IoStat> {
    text.lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let mut s = IoStat {
                device: fields.next()?.to_owned(),
                ..IoStat::default()
            };
            for f in fields {
                let (k, v) = f.split_once('=')?;
                let v = v.parse().unwrap_or(0);
                match k {
                    "rbytes" => s.read_bytes = v,
                    "wbytes" => s.write_bytes = v,
                    "rios" => s.reads = v,
                    "wios" => s.writes = v,
                    _ => {}
                }
            }
            Some(s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::files::{FileBudget, scratch_dir};
    use super::*;

    #[test]
    fn reads_psi_and_io_stat() {
        let root = scratch_dir("psi");
        std::fs::write(root.join("cgroup.procs"), "").unwrap();
        std::fs::write(
            root.join("cpu.pressure"),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=2500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=500000\n",
        )
        .unwrap();
        std::fs::write(
            root.join("io.stat"),
            "254:0 rbytes=4096 wbytes=1048576 rios=1 wios=16 dbytes=0 dios=0\n",
        )
        .unwrap();
        let s = stats(&Dir::open(&root, &FileBudget::new(0)), true)
            .unwrap_or_default()
            .0;
        assert_eq!(s.pressure.cpu, Some((2.5, Some(0.5))));
        assert_eq!(
            s.io,
            vec![IoStat {
                device: "254:0".into(),
                read_bytes: 4096,
                write_bytes: 1048576,
                reads: 1,
                writes: 16
            }]
        );
        let _ = std::fs::remove_dir_all(root);
    }
}
