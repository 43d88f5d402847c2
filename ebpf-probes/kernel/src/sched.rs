//! Run-queue latency per cgroup from the scheduler's tracepoints: how long a
//! task waited for a CPU after it was woken (`sched_wakeup`,
//! `sched_wakeup_new`) or preempted (`sched_switch` with a runnable `prev`).
//!
//! `sched_switch` runs on behalf of the outgoing task, so the cgroup of the
//! incoming one is not at hand there without reading task_struct. Its wait is
//! parked in `RUNQ_PENDING` instead and charged the next time that task is
//! switched out, when it is `current` and `bpf_get_current_cgroup_id` names
//! its cgroup: tracepoints and stable helpers only, no kernel structs.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_cgroup_id, bpf_ktime_get_ns},
    macros::{map, tracepoint},
    maps::{HashMap, PerCpuHashMap},
    programs::TracePointContext,
};
use osprey_abi::{DEFAULT_CGROUP_MAP_ENTRIES, DEFAULT_RUNQ_TASK_ENTRIES, RUNQ_BUCKETS, RunqHist};

use crate::{
    offsets::{self, SW_NEXT_PID, SW_PREV_PID, SW_PREV_STATE, WAKEUP_PID},
    shared::count_resource_loss,
};

/// pid → when it became runnable (ns).
#[map]
static RUNQ_START: HashMap<u32, u64> = HashMap::with_max_entries(DEFAULT_RUNQ_TASK_ENTRIES, 0);

/// pid → how long it waited before its current run (ns), until it is switched out.
#[map]
static RUNQ_PENDING: HashMap<u32, u64> = HashMap::with_max_entries(DEFAULT_RUNQ_TASK_ENTRIES, 0);

/// cgroup v2 id → histogram of waits.
#[map]
static RUNQ_LATENCY: PerCpuHashMap<u64, RunqHist> =
    PerCpuHashMap::with_max_entries(DEFAULT_CGROUP_MAP_ENTRIES, 0);

/// `prev_state` of a task switched out while still runnable: 0 (it yielded)
/// or TASK_REPORT_MAX (0x100, it was preempted); any of the low 8 bits set
/// means it sleeps, stopped or exited.
const SLEEPING_STATES: i64 = 0xff;

#[tracepoint]
pub fn sched_wakeup(ctx: TracePointContext) -> u32 {
    woken(&ctx);
    0
}

#[tracepoint]
pub fn sched_wakeup_new(ctx: TracePointContext) -> u32 {
    woken(&ctx);
    0
}

#[inline(always)]
fn woken(ctx: &TracePointContext) {
    // SAFETY: offset from this kernel's tracepoint format.
    let Ok(pid) = (unsafe { ctx.read_at::<u32>(offsets::get(&WAKEUP_PID)) }) else {
        return;
    };
    if pid != 0 {
        runnable(pid, unsafe { bpf_ktime_get_ns() });
    }
}

#[inline(always)]
fn runnable(pid: u32, now: u64) {
    if RUNQ_START.insert(&pid, &now, 0).is_err() {
        count_resource_loss(|loss| loss.runq_start_full += 1);
    }
}

#[tracepoint]
pub fn sched_switch(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from this kernel's tracepoint format.
    let fields = unsafe {
        (
            ctx.read_at::<u32>(offsets::get(&SW_PREV_PID)),
            ctx.read_at::<i64>(offsets::get(&SW_PREV_STATE)),
            ctx.read_at::<u32>(offsets::get(&SW_NEXT_PID)),
        )
    };
    let (Ok(prev), Ok(prev_state), Ok(next)) = fields else {
        return 0;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    if prev != 0 {
        // `prev` is still current: charge its last wait to its cgroup.
        if let Some(wait) = unsafe { RUNQ_PENDING.get(&prev) } {
            let wait = *wait;
            let _ = RUNQ_PENDING.remove(&prev);
            charge(unsafe { bpf_get_current_cgroup_id() }, wait);
        }
        if prev_state & SLEEPING_STATES == 0 {
            runnable(prev, now);
        }
    }
    if next != 0 {
        if let Some(start) = unsafe { RUNQ_START.get(&next) } {
            let wait = now.saturating_sub(*start);
            let _ = RUNQ_START.remove(&next);
            let _ = RUNQ_PENDING.insert(&next, &wait, 0);
        }
    }
    0
}

#[inline(always)]
fn charge(cgroup_id: u64, wait_ns: u64) {
    let us = wait_ns / 1000;
    let bucket = if us == 0 {
        0
    } else {
        ((63 - us.leading_zeros()) as usize).min(RUNQ_BUCKETS - 1)
    };
    if let Some(h) = RUNQ_LATENCY.get_ptr_mut(&cgroup_id) {
        // SAFETY: per-CPU value; only this CPU writes it.
        unsafe { add(&mut *h, bucket, wait_ns) };
        return;
    }
    let mut fresh = RunqHist {
        buckets: [0; RUNQ_BUCKETS],
        sum_ns: 0,
        count: 0,
    };
    add(&mut fresh, bucket, wait_ns);
    if RUNQ_LATENCY
        .insert(&cgroup_id, &fresh, BPF_NOEXIST as u64)
        .is_err()
    {
        match RUNQ_LATENCY.get_ptr_mut(&cgroup_id) {
            // SAFETY: as above.
            Some(h) => unsafe { add(&mut *h, bucket, wait_ns) },
            None => count_resource_loss(|loss| loss.runq_hist_full += 1),
        }
    }
}

#[inline(always)]
fn add(h: &mut RunqHist, bucket: usize, wait_ns: u64) {
    if let Some(b) = h.buckets.get_mut(bucket) {
        *b += 1;
    }
    h.sum_ns += wait_ns;
    h.count += 1;
}
