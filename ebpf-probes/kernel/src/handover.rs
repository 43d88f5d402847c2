//! A self-test of the drain's hand-over, never attached: a test test-runs
//! `handover_probe` while the drain flips the flow maps. It reads which map
//! is active and says so in `HANDOVER_PICKED`, then holds that map — a
//! program the hypervisor descheduled mid-run — until it sees the active
//! index change (or `WAIT_NS` passes), holds it `HOLD_NS` more, and
//! only then adds one packet of the marker flow (`osprey_abi::handover_key`:
//! the index it read, and whether it saw the flip) to that map, through the
//! flow programs' own merge. A drain that waited for every program that read
//! the old index finds the packet in the map it drained.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_jiffies64, bpf_ktime_get_ns, bpf_loop},
    macros::{map, raw_tracepoint},
    maps::Array,
    programs::RawTracePointContext,
};
use osprey_abi::{FlowStats, handover_key};

use crate::{flows::merge, shared::first_map_active};

/// Index 0: the kernel time at which `handover_probe` read the active index
/// (0 until then; the test clears it before each run).
#[map]
static HANDOVER_PICKED: Array<u64> = Array::with_max_entries(1, 0);

/// The longest the program waits for the flip: a test that never flips
/// still gets its run back.
const WAIT_NS: u64 = 200_000_000;

/// `bpf_loop`'s most iterations (the kernel's `BPF_MAX_LOOPS`).
const MAX_LOOPS: u32 = 1 << 23;

/// How long the program still holds the map after it saw the flip: far
/// longer than a drain that did not wait for it takes to read the map.
const HOLD_NS: u64 = 2_000_000;

/// What `wait_for_flip` reads and writes between iterations.
#[repr(C)]
struct Wait {
    first: u32,
    held: u32,
    deadline: u64,
}

/// One `bpf_loop` step: stops when the active index is no longer the one
/// picked (and says so), or at the deadline.
#[inline(never)]
extern "C" fn wait_for_flip(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `Wait` on `handover_probe`'s stack it passed to
    // bpf_loop, which outlives the loop.
    let wait = unsafe { &mut *ctx.cast::<Wait>() };
    if first_map_active() as u32 != wait.first {
        wait.held = 1;
        return 1;
    }
    // SAFETY: a helper without arguments.
    i64::from(unsafe { bpf_ktime_get_ns() } > wait.deadline)
}

/// One `bpf_loop` step: stops once the kernel clock passes `*ctx`.
#[inline(never)]
extern "C" fn hold_until(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is a u64 on `handover_probe`'s stack (as above).
    let until = unsafe { *ctx.cast::<u64>() };
    // SAFETY: a helper without arguments.
    i64::from(unsafe { bpf_ktime_get_ns() } > until)
}

#[raw_tracepoint]
pub fn handover_probe(_ctx: RawTracePointContext) -> i32 {
    let first = first_map_active();
    // SAFETY: a helper without arguments.
    let picked = unsafe { bpf_ktime_get_ns() };
    if let Some(slot) = HANDOVER_PICKED.get_ptr_mut(0) {
        // SAFETY: an array map's value, valid while the program runs.
        unsafe { *slot = picked };
    }
    let mut wait = Wait {
        first: first as u32,
        held: 0,
        deadline: picked + WAIT_NS,
    };
    // SAFETY: a static callback and a context on this stack, which the
    // loop's calls do not outlive.
    unsafe {
        bpf_loop(
            MAX_LOOPS,
            wait_for_flip as *mut c_void,
            (&raw mut wait).cast(),
            0,
        )
    };
    // SAFETY: a helper without arguments.
    let mut until = unsafe { bpf_ktime_get_ns() } + HOLD_NS;
    // SAFETY: as above.
    unsafe {
        bpf_loop(
            MAX_LOOPS,
            hold_until as *mut c_void,
            (&raw mut until).cast(),
            0,
        )
    };
    // SAFETY: as above.
    let now = unsafe { bpf_jiffies64() };
    let delta = FlowStats {
        bytes: 1,
        packets: 1,
        first_seen: now,
        last_seen: now,
        ..FlowStats::default()
    };
    let index = if first { 0 } else { 1 };
    merge(first, &handover_key(index, wait.held != 0), &delta);
    0
}
