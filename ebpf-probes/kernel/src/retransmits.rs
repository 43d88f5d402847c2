//! TCP retransmissions (`tcp:tcp_retransmit_skb`) per flow. The tracepoint
//! carries the 5-tuple itself; its field offsets come from the running
//! kernel's tracefs format at load time.

use aya_ebpf::{
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use osprey_abi::{DEFAULT_EVENT_MAP_ENTRIES, DIR_EGRESS, FAMILY_V4, FAMILY_V6, FlowKey, PROTO_TCP};

use crate::{
    offsets::{
        self, RTX_DADDR, RTX_DADDR_V6, RTX_DPORT, RTX_FAMILY, RTX_SADDR, RTX_SADDR_V6, RTX_SPORT,
    },
    shared::{add_count, first_map_active},
};

#[map]
static RETRANSMITS_0: HashMap<FlowKey, u64> =
    HashMap::with_max_entries(DEFAULT_EVENT_MAP_ENTRIES, 0);

#[map]
static RETRANSMITS_1: HashMap<FlowKey, u64> =
    HashMap::with_max_entries(DEFAULT_EVENT_MAP_ENTRIES, 0);

#[tracepoint]
pub fn tcp_retransmit(ctx: TracePointContext) -> u32 {
    let _ = try_tcp_retransmit(&ctx);
    0
}

#[inline(always)]
fn try_tcp_retransmit(ctx: &TracePointContext) -> Result<(), i64> {
    // SAFETY: offsets come from this kernel's tracepoint format.
    let key = unsafe {
        let family = ctx.read_at::<u16>(offsets::get(&RTX_FAMILY))? as u8;
        let (src_addr, dst_addr) = if family == FAMILY_V4 {
            (
                [ctx.read_at::<u32>(offsets::get(&RTX_SADDR))?, 0, 0, 0],
                [ctx.read_at::<u32>(offsets::get(&RTX_DADDR))?, 0, 0, 0],
            )
        } else if family == FAMILY_V6 {
            (
                ctx.read_at::<[u32; 4]>(offsets::get(&RTX_SADDR_V6))?,
                ctx.read_at::<[u32; 4]>(offsets::get(&RTX_DADDR_V6))?,
            )
        } else {
            return Ok(());
        };
        FlowKey {
            src_addr,
            dst_addr,
            cgroup_id: 0,
            src_port: ctx.read_at::<u16>(offsets::get(&RTX_SPORT))?,
            dst_port: ctx.read_at::<u16>(offsets::get(&RTX_DPORT))?,
            family,
            protocol: PROTO_TCP,
            direction: DIR_EGRESS,
            _pad: 0,
        }
    };
    let map = if first_map_active() {
        &RETRANSMITS_0
    } else {
        &RETRANSMITS_1
    };
    add_count(map, &key, 1, |loss| loss.retransmit_map_full += 1);
    Ok(())
}
