//! The agent's metrics about itself: per-program kernel run statistics.

use std::collections::HashMap;

use crate::kernel::probes::ProgramStats;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProgramLabels {
    pub program: String,
}

/// Labels of `osprey_bpf_program_info`: the kernel's id of each loaded program,
/// so an operator (or a test) can find it with `bpftool prog show id N`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProgramInfoLabels {
    pub program: String,
    pub id: u32,
}

#[derive(Clone, Default)]
pub struct ProgramMetrics {
    info: Family<ProgramInfoLabels, Gauge>,
    runs: Family<ProgramLabels, Counter>,
    run_nanos: Family<ProgramLabels, Counter>,
    seen: HashMap<String, (u64, u64)>,
}

impl ProgramMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "osprey_bpf_program_info",
            "Kernel programs loaded by this agent, with their kernel ids",
            m.info.clone(),
        );
        registry.register(
            "osprey_bpf_program_runs",
            "Runs of each kernel program (counted while kernel BPF stats are enabled)",
            m.runs.clone(),
        );
        registry.register(
            "osprey_bpf_program_run_time_nanoseconds",
            "Time spent in each kernel program, from the kernel's own statistics",
            m.run_nanos.clone(),
        );
        m
    }

    /// Takes the kernel's cumulative statistics and exports the increase.
    pub fn update(&mut self, stats: &[ProgramStats]) {
        for ProgramStats {
            name: program,
            id,
            runs,
            run_time_ns: nanos,
        } in stats
        {
            self.info
                .get_or_create(&ProgramInfoLabels {
                    program: program.clone(),
                    id: *id,
                })
                .set(1);
            let (seen_runs, seen_nanos) = self.seen.get(program).copied().unwrap_or_default();
            let labels = ProgramLabels {
                program: program.clone(),
            };
            self.runs
                .get_or_create(&labels)
                .inc_by(runs.saturating_sub(seen_runs));
            self.run_nanos
                .get_or_create(&labels)
                .inc_by(nanos.saturating_sub(seen_nanos));
            self.seen.insert(program.clone(), (*runs, *nanos));
        }
    }
}
