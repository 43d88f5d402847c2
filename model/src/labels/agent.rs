//! Label sets of the agent's metrics about itself: its kernel programs, its
//! series budgets, and the reasons its exporters retry or drop.

use prometheus_client::encoding::EncodeLabelSet;

/// `osprey_bpf_program_runs_total` and
/// `osprey_bpf_map_memory_bytes`, `osprey_bpf_map_entries_max`: per map.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct MapLabels {
    pub map: String,
}

/// `osprey_bpf_program_run_time_nanoseconds_total`: per kernel program.
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

/// `osprey_metric_series_folded_total`: the family whose series budget
/// folded a new series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct FoldedLabels {
    pub metric: &'static str,
}

/// `osprey_series`: a family under a series budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SeriesFamilyLabels {
    pub family: &'static str,
}

/// `osprey_otlp_retries_total`, `osprey_otlp_dropped_batches_total`,
/// `osprey_otlp_dropped_data_points_total` and
/// `osprey_http_spans_dropped_total`: why an export was retried or dropped
/// (`queue_full`, `rejected`, `timeout`, …; each family's help lists its
/// reasons).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ExportReasonLabels {
    pub reason: &'static str,
}
