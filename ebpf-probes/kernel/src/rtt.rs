//! TCP smoothed RTT from sock_ops (root cgroup): each socket asks for RTT
//! callbacks once established; every callback adds the socket's smoothed RTT
//! to a log2 histogram. The sock_ops context is stable ABI: no offsets needed.

use aya_ebpf::{
    bindings::{
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB,
        BPF_SOCK_OPS_RTT_CB, BPF_SOCK_OPS_RTT_CB_FLAG,
    },
    macros::{map, sock_ops},
    maps::PerCpuArray,
    programs::SockOpsContext,
};
use osprey_abi::{RTT_BUCKETS, RTT_COUNT_INDEX, RTT_SUM_INDEX};

/// Buckets, then the sum in µs, then the count (see `osprey_abi::RTT_*`).
#[map]
static RTT_HISTOGRAM: PerCpuArray<u64> = PerCpuArray::with_max_entries(RTT_BUCKETS + 2, 0);

#[sock_ops]
pub fn tcp_rtt(ctx: SockOpsContext) -> u32 {
    match ctx.op() {
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB | BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB => {
            let _ = ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_RTT_CB_FLAG) as i32);
        }
        BPF_SOCK_OPS_RTT_CB => record(&ctx),
        _ => {}
    }
    1
}

#[inline(always)]
fn record(ctx: &SockOpsContext) {
    // tcp_sock.srtt_us holds 8 × the smoothed RTT in µs.
    // SAFETY: context field read, rewritten by the verifier.
    let srtt_us = unsafe { (*ctx.ops).srtt_us } as u64 >> 3;
    let bucket = if srtt_us == 0 {
        0
    } else {
        (63 - srtt_us.leading_zeros()).min(RTT_BUCKETS - 1)
    };
    for (index, add) in [(bucket, 1), (RTT_SUM_INDEX, srtt_us), (RTT_COUNT_INDEX, 1)] {
        if let Some(v) = RTT_HISTOGRAM.get_ptr_mut(index) {
            // SAFETY: per-CPU value; only this CPU writes it.
            unsafe { *v += add };
        }
    }
}
