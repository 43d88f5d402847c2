//! TCP connection outcomes from `sock:inet_sock_set_state`: established,
//! refused (RST to a SYN), timed out, reset, or another error. The reason of a
//! failed connect is the socket's `sk_err` (offset from BTF), which the kernel
//! sets before it moves the socket to CLOSE.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use osprey_abi::{
    CONN_ERROR, CONN_ESTABLISHED, CONN_REFUSED, CONN_RESET, CONN_TIMEOUT, ConnKey,
    DEFAULT_EVENT_MAP_ENTRIES, FAMILY_V4, FAMILY_V6, FlowKey, PROTO_TCP,
};

use crate::{
    offsets::{
        self, OFF_SOCK_SK_ERR, OFF_SS_DADDR, OFF_SS_DADDR_V6, OFF_SS_DPORT, OFF_SS_FAMILY,
        OFF_SS_NEWSTATE, OFF_SS_OLDSTATE, OFF_SS_PROTOCOL, OFF_SS_SADDR, OFF_SS_SADDR_V6,
        OFF_SS_SKADDR,
    },
    shared::{add_count, first_map_active},
};

const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_CLOSE: i32 = 7;
const TCP_CLOSE_WAIT: i32 = 8;
const ETIMEDOUT: i32 = 110;
const ECONNREFUSED: i32 = 111;

#[map]
static CONNECTIONS_0: HashMap<ConnKey, u64> =
    HashMap::with_max_entries(DEFAULT_EVENT_MAP_ENTRIES, 0);

#[map]
static CONNECTIONS_1: HashMap<ConnKey, u64> =
    HashMap::with_max_entries(DEFAULT_EVENT_MAP_ENTRIES, 0);

#[tracepoint]
pub fn tcp_state(ctx: TracePointContext) -> u32 {
    let _ = try_tcp_state(&ctx);
    0
}

#[inline(always)]
fn try_tcp_state(ctx: &TracePointContext) -> Result<(), i64> {
    // SAFETY: offsets come from this kernel's tracepoint format and BTF.
    unsafe {
        if ctx.read_at::<u16>(offsets::get(&OFF_SS_PROTOCOL))? != PROTO_TCP as u16 {
            return Ok(());
        }
        let old = ctx.read_at::<i32>(offsets::get(&OFF_SS_OLDSTATE))?;
        let new = ctx.read_at::<i32>(offsets::get(&OFF_SS_NEWSTATE))?;
        let outcome = match (old, new) {
            (TCP_SYN_SENT, TCP_ESTABLISHED) => CONN_ESTABLISHED,
            (TCP_SYN_SENT, TCP_CLOSE) => {
                let sk = ctx.read_at::<u64>(offsets::get(&OFF_SS_SKADDR))?;
                let err: i32 = bpf_probe_read_kernel(
                    (sk as usize + offsets::get(&OFF_SOCK_SK_ERR)) as *const i32,
                )?;
                match err {
                    ECONNREFUSED => CONN_REFUSED,
                    ETIMEDOUT => CONN_TIMEOUT,
                    _ => CONN_ERROR,
                }
            }
            (TCP_ESTABLISHED | TCP_CLOSE_WAIT, TCP_CLOSE) => CONN_RESET,
            _ => return Ok(()),
        };
        let family = ctx.read_at::<u16>(offsets::get(&OFF_SS_FAMILY))? as u8;
        let (src_addr, dst_addr) = if family == FAMILY_V4 {
            (
                [ctx.read_at::<u32>(offsets::get(&OFF_SS_SADDR))?, 0, 0, 0],
                [ctx.read_at::<u32>(offsets::get(&OFF_SS_DADDR))?, 0, 0, 0],
            )
        } else if family == FAMILY_V6 {
            (
                ctx.read_at::<[u32; 4]>(offsets::get(&OFF_SS_SADDR_V6))?,
                ctx.read_at::<[u32; 4]>(offsets::get(&OFF_SS_DADDR_V6))?,
            )
        } else {
            return Ok(());
        };
        let key = ConnKey {
            flow: FlowKey {
                src_addr,
                dst_addr,
                cgroup_id: 0,
                src_port: 0,
                dst_port: ctx.read_at::<u16>(offsets::get(&OFF_SS_DPORT))?,
                family,
                protocol: PROTO_TCP,
                direction: 0,
                _pad: 0,
            },
            outcome,
            _pad: 0,
        };
        let map = if first_map_active() {
            &CONNECTIONS_0
        } else {
            &CONNECTIONS_1
        };
        add_count(map, &key, 1, |loss| loss.conn_map_full += 1);
    }
    Ok(())
}
