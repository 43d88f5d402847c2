//! The agent's metrics about itself: per-program kernel run statistics.

use std::collections::HashMap;

use crate::kernel::probes::ProgramStats;

use osprey_model::{
    catalogue::{
        OSPREY_BPF_PROGRAM_INFO, OSPREY_BPF_PROGRAM_RUN_TIME_NANOSECONDS, OSPREY_BPF_PROGRAM_RUNS,
    },
    labels::{ProgramInfoLabels, ProgramLabels},
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
    seen: HashMap<String, (u64, u64)>,
}

impl ProgramMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        OSPREY_BPF_PROGRAM_INFO.register(registry, m.info.clone());
        OSPREY_BPF_PROGRAM_RUNS.register(registry, m.runs.clone());
        OSPREY_BPF_PROGRAM_RUN_TIME_NANOSECONDS.register(registry, m.run_nanos.clone());
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
