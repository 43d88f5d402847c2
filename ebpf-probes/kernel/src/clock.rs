//! The kernel's clocks side by side, on demand: userspace runs
//! `clock_sample` with `BPF_PROG_TEST_RUN` (it is never attached) and reads
//! `CLOCK`, a tick count and CLOCK_MONOTONIC taken together, to turn the
//! flows' tick counts into time. A raw tracepoint program: its test run
//! takes no packet (an skb-based one would free a test skb through
//! `kfree_skb`, which the drop probe would count as a drop).

use aya_ebpf::{
    helpers::{bpf_jiffies64, bpf_ktime_get_ns},
    macros::{map, raw_tracepoint},
    maps::Array,
    programs::RawTracePointContext,
};
use osprey_abi::ClockSample;

#[map]
static CLOCK: Array<ClockSample> = Array::with_max_entries(1, 0);

#[raw_tracepoint]
pub fn clock_sample(_ctx: RawTracePointContext) -> i32 {
    if let Some(sample) = CLOCK.get_ptr_mut(0) {
        // SAFETY: helpers without arguments; an array value, valid.
        unsafe {
            (*sample).jiffies = bpf_jiffies64();
            (*sample).mono_ns = bpf_ktime_get_ns();
        }
    }
    0
}
