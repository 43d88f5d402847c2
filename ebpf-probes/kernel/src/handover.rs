//! A self-test of the drain's hand-over, never attached: a test test-runs
//! `handover_probe` while the drain flips the flow maps. It reads which map
//! is active, spins for a millisecond or two — a program the hypervisor
//! descheduled mid-run — and only then adds one packet of the marker flow
//! (`osprey_abi::handover_key`, its port the index it read) to that map,
//! through the flow programs' own merge. A drain that waited for every
//! program that read the old index finds the packet in the map it drained.

use aya_ebpf::{
    helpers::{bpf_jiffies64, bpf_ktime_get_ns},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use osprey_abi::{FlowStats, handover_key};

use crate::{flows::merge, shared::first_map_active};

/// Clock reads in the spin (≈ 20–40 ns each). The verifier walks every
/// iteration, so the loop has no early exit: one path, not one per step.
const SPIN_STEPS: u32 = 50_000;

#[raw_tracepoint]
pub fn handover_probe(_ctx: RawTracePointContext) -> i32 {
    let first = first_map_active();
    let mut clock = 0u64;
    for _ in 0..SPIN_STEPS {
        // SAFETY: a helper without arguments.
        clock ^= unsafe { bpf_ktime_get_ns() };
    }
    core::hint::black_box(clock);
    // SAFETY: as above.
    let now = unsafe { bpf_jiffies64() };
    let delta = FlowStats {
        bytes: 1,
        packets: 1,
        first_seen: now,
        last_seen: now,
        ..FlowStats::default()
    };
    merge(first, &handover_key(if first { 0 } else { 1 }), &delta);
    0
}
