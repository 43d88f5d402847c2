//! The agent's metrics about itself: per-program kernel run statistics.

use std::collections::HashMap;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProgramLabels {
    pub program: String,
}

#[derive(Clone, Default)]
pub struct ProgramMetrics {
    runs: Family<ProgramLabels, Counter>,
    run_nanos: Family<ProgramLabels, Counter>,
    seen: HashMap<String, (u64, u64)>,
}

impl ProgramMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
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

    /// Takes the kernel's cumulative (program, runs, ns) and exports the increase.
    pub fn update(&mut self, stats: &[(String, u64, u64)]) {
        for (program, runs, nanos) in stats {
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
