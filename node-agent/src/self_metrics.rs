//! The agent's metrics about itself: per-program kernel run statistics and
//! per-map kernel memory.

use std::collections::HashMap;

use crate::kernel::{map_memory::MapFootprint, probes::ProgramStats};

use osprey_model::{
    catalogue::{
        OSPREY_BPF_MAP_ENTRIES_MAX, OSPREY_BPF_MAP_MEMORY_BYTES, OSPREY_BPF_MAPS_MEMORY_BYTES,
        OSPREY_BPF_PROGRAM_INFO, OSPREY_BPF_PROGRAM_MISSED_RUNS,
        OSPREY_BPF_PROGRAM_RUN_TIME_NANOSECONDS, OSPREY_BPF_PROGRAM_RUNS,
    },
    labels::{MapLabels, ProgramInfoLabels, ProgramLabels},
};
use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Default)]
pub struct ProgramMetrics {
    info: Family<ProgramInfoLabels, Gauge>,
    runs: Family<ProgramLabels, Counter>,
    run_nanos: Family<ProgramLabels, Counter>,
    missed: Family<ProgramLabels, Counter>,
    /// The kernel's cumulative runs, run time and missed runs at the last
    /// update.
    seen: HashMap<String, (u64, u64, u64)>,
    /// The kernel keeps run statistics (`bpf_stats`): without them runs and
    /// run time stay 0, series that would only say nothing ran.
    run_stats: bool,
}

impl ProgramMetrics {
    /// `run_stats`: whether the kernel keeps run statistics (`bpf_stats`);
    /// without them only `osprey_bpf_program_info` and the missed runs
    /// (which the kernel always counts) have series.
    pub fn register(registry: &mut Registry, run_stats: bool) -> Self {
        let m = Self {
            run_stats,
            ..Self::default()
        };
        OSPREY_BPF_PROGRAM_INFO.register(registry, m.info.clone());
        OSPREY_BPF_PROGRAM_RUNS.register(registry, m.runs.clone());
        OSPREY_BPF_PROGRAM_RUN_TIME_NANOSECONDS.register(registry, m.run_nanos.clone());
        OSPREY_BPF_PROGRAM_MISSED_RUNS.register(registry, m.missed.clone());
        m
    }

    /// Takes the kernel's cumulative statistics and exports the increase.
    pub fn update(&mut self, stats: &[ProgramStats]) {
        for ProgramStats {
            name: program,
            id,
            runs,
            run_time_ns: nanos,
            missed_runs: missed,
        } in stats
        {
            self.info
                .get_or_create(&ProgramInfoLabels {
                    program: program.clone(),
                    id: *id,
                })
                .set(1);
            let (seen_runs, seen_nanos, seen_missed) =
                self.seen.get(program).copied().unwrap_or_default();
            self.seen.insert(program.clone(), (*runs, *nanos, *missed));
            let labels = ProgramLabels {
                program: program.clone(),
            };
            self.missed
                .get_or_create(&labels)
                .inc_by(missed.saturating_sub(seen_missed));
            if !self.run_stats {
                continue;
            }
            self.runs
                .get_or_create(&labels)
                .inc_by(runs.saturating_sub(seen_runs));
            self.run_nanos
                .get_or_create(&labels)
                .inc_by(nanos.saturating_sub(seen_nanos));
        }
    }
}

/// `osprey_bpf_maps_memory_bytes`, and with `details` each map's
/// `osprey_bpf_map_memory_bytes{map}` and `osprey_bpf_map_entries_max{map}`:
/// fixed once the probes are loaded, so set once.
pub fn register_maps(registry: &mut Registry, maps: &[MapFootprint], details: bool) {
    // None when maps cannot be looked up (least privilege): no total of 0.
    if maps.is_empty() {
        return;
    }
    let total = Gauge::<i64>::default();
    total.set(maps.iter().map(|m| m.memory_bytes as i64).sum());
    OSPREY_BPF_MAPS_MEMORY_BYTES.register(registry, total);
    if !details {
        return;
    }
    let memory = Family::<MapLabels, Gauge>::default();
    let entries = Family::<MapLabels, Gauge>::default();
    for m in maps {
        let labels = MapLabels {
            map: m.name.clone(),
        };
        memory.get_or_create(&labels).set(m.memory_bytes as i64);
        entries.get_or_create(&labels).set(i64::from(m.max_entries));
    }
    OSPREY_BPF_MAP_MEMORY_BYTES.register(registry, memory);
    OSPREY_BPF_MAP_ENTRIES_MAX.register(registry, entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(runs: u64) -> Vec<ProgramStats> {
        vec![ProgramStats {
            name: "flow_egress".into(),
            id: 7,
            runs,
            run_time_ns: runs * 50,
            missed_runs: runs / 5,
        }]
    }

    #[test]
    fn run_counters_have_series_only_while_the_kernel_keeps_statistics() {
        let mut off = Registry::default();
        let mut metrics = ProgramMetrics::register(&mut off, false);
        metrics.update(&stats(0));
        let text = crate::test_support::exposition(&off);
        assert!(text.contains("osprey_bpf_program_info{program=\"flow_egress\",id=\"7\"} 1"));
        assert!(!text.contains("osprey_bpf_program_runs_total{"), "{text}");
        metrics.update(&stats(10));
        let text = crate::test_support::exposition(&off);
        assert!(
            text.contains("osprey_bpf_program_missed_runs_total{program=\"flow_egress\"} 2"),
            "the kernel counts missed runs without bpf_stats: {text}"
        );

        let mut on = Registry::default();
        let mut metrics = ProgramMetrics::register(&mut on, true);
        metrics.update(&stats(10));
        metrics.update(&stats(25));
        let text = crate::test_support::exposition(&on);
        assert!(
            text.contains("osprey_bpf_program_runs_total{program=\"flow_egress\"} 25"),
            "{text}"
        );
        assert!(
            text.contains(
                "osprey_bpf_program_run_time_nanoseconds_total{program=\"flow_egress\"} 1250"
            ),
            "{text}"
        );
        assert!(
            text.contains("osprey_bpf_program_missed_runs_total{program=\"flow_egress\"} 5"),
            "{text}"
        );
    }
}
