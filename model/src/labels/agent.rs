//! Label sets of the agent's metrics about itself (`osprey_bpf_program_*`).

use prometheus_client::encoding::EncodeLabelSet;

/// `osprey_bpf_program_runs_total` and
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
