//! Packets the kernel drops (`skb:kfree_skb`), with the kernel's reason, on
//! their flow. The tracepoint's field offsets and the `sk_buff` member
//! offsets come from the running kernel (tracefs format, BTF) at load time.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{map, tracepoint},
    maps::HashMap,
    programs::TracePointContext,
};
use osprey_abi::{
    DEFAULT_EVENT_MAP_ENTRIES, DropKey, FAMILY_V4, FAMILY_V6, FlowKey, PROTO_ICMP, PROTO_ICMPV6,
    PROTO_TCP, PROTO_UDP,
};

use crate::{
    net::{ETH_P_IP, ETH_P_IPV6, Ipv4Hdr, Ipv6Hdr, Ports},
    offsets::{
        self, DROP_LOCATION, DROP_PROTOCOL, DROP_REASON, DROP_SKBADDR, SKB_HEAD, SKB_NETWORK_HEADER,
    },
    shared::{add_count, first_map_active},
};

#[map]
static DROPS_0: HashMap<DropKey, u64> = HashMap::with_max_entries(DEFAULT_EVENT_MAP_ENTRIES, 0);

#[map]
static DROPS_1: HashMap<DropKey, u64> = HashMap::with_max_entries(DEFAULT_EVENT_MAP_ENTRIES, 0);

#[tracepoint]
pub fn skb_drop(ctx: TracePointContext) -> u32 {
    let _ = try_skb_drop(&ctx);
    0
}

#[inline(always)]
fn try_skb_drop(ctx: &TracePointContext) -> Result<(), i64> {
    // SAFETY: offsets come from this kernel's tracepoint format.
    let (skb, reason, protocol, location) = unsafe {
        (
            ctx.read_at::<u64>(offsets::get(&DROP_SKBADDR))?,
            ctx.read_at::<u32>(offsets::get(&DROP_REASON))?,
            ctx.read_at::<u16>(offsets::get(&DROP_PROTOCOL))?,
            ctx.read_at::<u64>(offsets::get(&DROP_LOCATION))?,
        )
    };
    let flow = flow_of(skb, protocol).unwrap_or_default();
    let key = DropKey {
        flow,
        reason,
        _pad: 0,
        location,
    };
    let map = if first_map_active() {
        &DROPS_0
    } else {
        &DROPS_1
    };
    add_count(map, &key, 1, |loss| loss.drop_map_full += 1);
    Ok(())
}

/// The flow of a dropped skb, read from its network header in kernel memory.
#[inline(always)]
fn flow_of(skb: u64, ethertype: u16) -> Result<FlowKey, i64> {
    // SAFETY: bpf_probe_read_kernel tolerates any address; offsets from BTF.
    unsafe {
        let head: u64 =
            bpf_probe_read_kernel((skb as usize + offsets::get(&SKB_HEAD)) as *const u64)?;
        let nh: u16 = bpf_probe_read_kernel(
            (skb as usize + offsets::get(&SKB_NETWORK_HEADER)) as *const u16,
        )?;
        if nh == 0xffff {
            return Err(-1); // network header not set
        }
        let l3 = head as usize + nh as usize;
        let (family, protocol, src_addr, dst_addr, l4) = match ethertype {
            ETH_P_IP => {
                let ip: Ipv4Hdr = bpf_probe_read_kernel(l3 as *const Ipv4Hdr)?;
                let l4 = if u16::from_be(ip.frag_off) & 0x1fff != 0 {
                    0
                } else {
                    l3 + (ip.ver_ihl & 0x0f) as usize * 4
                };
                (
                    FAMILY_V4,
                    ip.protocol,
                    [ip.saddr, 0, 0, 0],
                    [ip.daddr, 0, 0, 0],
                    l4,
                )
            }
            ETH_P_IPV6 => {
                let ip: Ipv6Hdr = bpf_probe_read_kernel(l3 as *const Ipv6Hdr)?;
                (FAMILY_V6, ip.nexthdr, ip.saddr, ip.daddr, l3 + 40)
            }
            _ => return Err(-1),
        };
        let (mut src_port, mut dst_port) = (0, 0);
        if l4 != 0 {
            match protocol {
                PROTO_TCP | PROTO_UDP => {
                    let ports: Ports = bpf_probe_read_kernel(l4 as *const Ports)?;
                    src_port = u16::from_be(ports.source);
                    dst_port = u16::from_be(ports.dest);
                }
                PROTO_ICMP | PROTO_ICMPV6 => {
                    let type_code: [u8; 2] = bpf_probe_read_kernel(l4 as *const [u8; 2])?;
                    src_port = type_code[0] as u16;
                    dst_port = type_code[1] as u16;
                }
                _ => {}
            }
        }
        Ok(FlowKey {
            src_addr,
            dst_addr,
            cgroup_id: 0,
            src_port,
            dst_port,
            family,
            protocol,
            direction: 0,
            _pad: 0,
        })
    }
}
