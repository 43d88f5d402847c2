//! Run-queue latency per cgroup from the scheduler's tracepoints: how long a
//! task waited for a CPU after it was woken (`sched_wakeup`,
//! `sched_wakeup_new`) or preempted (`sched_switch` with a runnable `prev`).
//!
//! `sched_switch` runs on behalf of the outgoing task, so the cgroup of the
//! incoming one is not at hand there without reading task_struct. Its wait is
//! parked in its `RUNQ_TASKS` entry instead and charged the next time that
//! task is switched out, when it is `current` and `bpf_get_current_cgroup_id`
//! names its cgroup: tracepoints and stable helpers only, no kernel structs.
//!
//! A task's entry lives from its first wake-up to its exit
//! (`sched_process_exit`) and is updated in place: a wake-up is one hash
//! lookup, a switch two, with no insert or delete (each costs a hash
//! map's element allocation and bucket lock) while the set of tasks holds.

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{map, tracepoint},
    maps::{HashMap, PerCpuHashMap},
    programs::TracePointContext,
};
use osprey_abi::{
    DEFAULT_CGROUP_MAP_ENTRIES, DEFAULT_RUNQ_TASK_ENTRIES, RUNQ_BUCKETS, RunqHist, sched_layout,
};

use crate::{
    offsets::{self, SCHED_LAYOUT_KNOWN, SW_NEXT_PID, SW_PREV_PID, SW_PREV_STATE, WAKEUP_PID},
    shared::count_resource_loss,
};

/// A field of the tracepoint record: a plain load at its offset in
/// `osprey_abi::sched_layout` when the loader found this kernel's layout to
/// be that one (the verifier then knows the branch and drops the other),
/// else a helper read at the offset tracefs gave.
#[inline(always)]
fn field<T: Copy>(ctx: &TracePointContext, fixed: u32, loaded: &'static u32) -> Option<T> {
    if offsets::get(&SCHED_LAYOUT_KNOWN) != 0 {
        // SAFETY: a read of the tracepoint record at a constant offset inside
        // it (the loader checked the layout); the verifier checks the bounds.
        Some(unsafe { *(ctx.as_ptr() as *const u8).add(fixed as usize).cast::<T>() })
    } else {
        // SAFETY: offset from this kernel's tracepoint format.
        unsafe { ctx.read_at::<T>(offsets::get(loaded)) }.ok()
    }
}

/// A task's run-queue state.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RunqTask {
    /// When it became runnable (ns); 0 while it runs or sleeps.
    runnable_since: u64,
    /// How long it waited before its current run (ns), until it is switched
    /// out and charged; 0 when nothing is owed.
    pending_wait: u64,
}

/// pid (thread id) → its run-queue state, from its first wake-up to its exit.
#[map]
static RUNQ_TASKS: HashMap<u32, RunqTask> = HashMap::with_max_entries(DEFAULT_RUNQ_TASK_ENTRIES, 0);

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
    let Some(pid) = field::<u32>(ctx, sched_layout::WAKEUP_PID, &WAKEUP_PID) else {
        return;
    };
    if pid != 0 {
        runnable(pid, unsafe { bpf_ktime_get_ns() });
    }
}

/// Marks `pid` runnable since `now`, keeping a wait it still owes.
#[inline(always)]
fn runnable(pid: u32, now: u64) {
    if let Some(task) = RUNQ_TASKS.get_ptr_mut(&pid) {
        // SAFETY: a map value; a racing update of the same task on another
        // CPU can only make one wait inexact, never unsafe.
        unsafe { (*task).runnable_since = now };
        return;
    }
    track(pid, now);
}

/// A first entry for `pid`, runnable since `now` (its lookup just missed).
#[inline(always)]
fn track(pid: u32, now: u64) {
    let task = RunqTask {
        runnable_since: now,
        pending_wait: 0,
    };
    // EEXIST (inserted meanwhile on another CPU) loses one wake-up, like a full map.
    if RUNQ_TASKS.insert(&pid, &task, BPF_NOEXIST as u64).is_err() {
        count_resource_loss(|loss| loss.runq_start_full += 1);
    }
}

#[tracepoint]
pub fn sched_switch(ctx: TracePointContext) -> u32 {
    let fields = (
        field::<u32>(&ctx, sched_layout::SW_PREV_PID, &SW_PREV_PID),
        field::<i64>(&ctx, sched_layout::SW_PREV_STATE, &SW_PREV_STATE),
        field::<u32>(&ctx, sched_layout::SW_NEXT_PID, &SW_NEXT_PID),
    );
    let (Some(prev), Some(prev_state), Some(next)) = fields else {
        return 0;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    if prev != 0 {
        let preempted = prev_state & SLEEPING_STATES == 0;
        match RUNQ_TASKS.get_ptr_mut(&prev) {
            // SAFETY: a map value (see `runnable`).
            Some(task) => unsafe {
                // `prev` is still current: charge its last wait to its cgroup.
                if (*task).pending_wait != 0 {
                    charge(bpf_get_current_cgroup_id(), (*task).pending_wait);
                    (*task).pending_wait = 0;
                }
                if preempted {
                    (*task).runnable_since = now;
                }
            },
            None if preempted => track(prev, now),
            None => {}
        }
    }
    if next != 0
        && let Some(task) = RUNQ_TASKS.get_ptr_mut(&next)
    {
        // SAFETY: a map value (see `runnable`).
        unsafe {
            let since = (*task).runnable_since;
            if since != 0 {
                // At least 1 ns, so that a wait is owed even if the clock did not move.
                (*task).pending_wait = now.saturating_sub(since).max(1);
                (*task).runnable_since = 0;
            }
        }
    }
    0
}

/// An exiting task's entry goes with it (the tracepoint runs as that task).
#[tracepoint]
pub fn sched_exit(_ctx: TracePointContext) -> u32 {
    let pid = bpf_get_current_pid_tgid() as u32;
    let _ = RUNQ_TASKS.remove(&pid);
    0
}

#[inline(always)]
fn charge(cgroup_id: u64, wait_ns: u64) {
    let us = wait_ns / 1000;
    let bucket = if us == 0 {
        0
    } else {
        // log4 of the wait in µs.
        ((63 - us.leading_zeros()) as usize / 2).min(RUNQ_BUCKETS - 1)
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
