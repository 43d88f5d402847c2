//! TCP smoothed RTT from sock_ops (root cgroup): each socket asks for RTT
//! callbacks once established; every callback adds the socket's smoothed RTT
//! to a log2 histogram and to its flow's sum. The sock_ops context is stable
//! ABI: no offsets needed.

use aya_ebpf::{
    bindings::{
        BPF_NOEXIST, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB,
        BPF_SOCK_OPS_RTT_CB, BPF_SOCK_OPS_RTT_CB_FLAG,
    },
    macros::{map, sock_ops},
    maps::{PerCpuArray, PerCpuHashMap},
    programs::SockOpsContext,
};
use osprey_abi::{
    DEFAULT_EVENT_MAP_ENTRIES, DIR_EGRESS, FAMILY_V4, FAMILY_V6, FlowKey, PROTO_TCP, RTT_BUCKETS,
    RTT_COUNT_INDEX, RTT_SUM_INDEX, RttSum,
};

use crate::shared::{count_loss, first_map_active};

/// Per flow (local → remote, egress view): the sum and count of smoothed-RTT samples.
#[map]
static FLOW_RTT_0: PerCpuHashMap<FlowKey, RttSum> =
    PerCpuHashMap::with_max_entries(DEFAULT_EVENT_MAP_ENTRIES, 0);

#[map]
static FLOW_RTT_1: PerCpuHashMap<FlowKey, RttSum> =
    PerCpuHashMap::with_max_entries(DEFAULT_EVENT_MAP_ENTRIES, 0);

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
    record_flow(ctx, srtt_us);
}

#[inline(always)]
fn record_flow(ctx: &SockOpsContext, srtt_us: u64) {
    let family = ctx.family() as u8;
    if family != FAMILY_V4 && family != FAMILY_V6 {
        return;
    }
    // Load every address field at its fixed offset first and choose between
    // the values afterwards: the verifier rejects a context pointer that the
    // compiler would otherwise pick between the v4 and v6 fields.
    // SAFETY: context field reads, rewritten by the verifier.
    let (l4, r4, l6, r6) = unsafe {
        let ops = ctx.ops;
        (
            core::ptr::read_volatile(&raw const (*ops).local_ip4),
            core::ptr::read_volatile(&raw const (*ops).remote_ip4),
            [
                core::ptr::read_volatile(&raw const (*ops).local_ip6[0]),
                core::ptr::read_volatile(&raw const (*ops).local_ip6[1]),
                core::ptr::read_volatile(&raw const (*ops).local_ip6[2]),
                core::ptr::read_volatile(&raw const (*ops).local_ip6[3]),
            ],
            [
                core::ptr::read_volatile(&raw const (*ops).remote_ip6[0]),
                core::ptr::read_volatile(&raw const (*ops).remote_ip6[1]),
                core::ptr::read_volatile(&raw const (*ops).remote_ip6[2]),
                core::ptr::read_volatile(&raw const (*ops).remote_ip6[3]),
            ],
        )
    };
    let (src_addr, dst_addr) = if family == FAMILY_V4 {
        ([l4, 0, 0, 0], [r4, 0, 0, 0])
    } else {
        (l6, r6)
    };
    let key = FlowKey {
        src_addr,
        dst_addr,
        cgroup_id: 0,
        src_port: ctx.local_port() as u16,
        // remote_port holds the port in network order in its upper 16 bits.
        dst_port: u16::from_be((ctx.remote_port() >> 16) as u16),
        family,
        protocol: PROTO_TCP,
        direction: DIR_EGRESS,
        _pad: 0,
    };
    let map = if first_map_active() {
        &FLOW_RTT_0
    } else {
        &FLOW_RTT_1
    };
    if let Some(v) = map.get_ptr_mut(&key) {
        // SAFETY: per-CPU value; only this CPU writes it.
        unsafe {
            (*v).sum_us += srtt_us;
            (*v).samples += 1;
        }
        return;
    }
    let fresh = RttSum {
        sum_us: srtt_us,
        samples: 1,
    };
    if map.insert(&key, &fresh, BPF_NOEXIST as u64).is_err() && map.get_ptr(&key).is_none() {
        count_loss(|loss| loss.rtt_map_full += 1);
    }
}
