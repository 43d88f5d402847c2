//! Parsing of L3/L4 headers from a socket buffer whose data starts at the
//! network header (cgroup_skb). Headers are read in place (direct packet
//! access, bounds-checked against `data_end` as the verifier requires) with
//! word-sized loads: no helper calls and few instructions on the hot path.
//! Locally built and socket-delivered packets carry their headers in the
//! linear area.

use core::mem::size_of;

use aya_ebpf::programs::SkBuffContext;
use osprey_abi::{FAMILY_V4, FAMILY_V6, FlowKey, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

use crate::net::{ETH_P_IP, ETH_P_IPV6, Ipv4Hdr, Ipv6Hdr, Ports, TcpHead};

/// The packet's flow key (direction and cgroup still to be filled in), its
/// TCP flags, and the length of its L3+L4 headers (0 if unknown), which a GSO
/// super-packet repeats in every segment on the wire.
pub struct Parsed {
    pub key: FlowKey,
    pub tcp_flags: u32,
    pub header_len: u32,
}

/// Headers could not be read: truncated packet or a family other than IPv4/IPv6.
pub struct Unparsed;

/// The header `T` at `offset` into the packet, if the packet is long enough.
#[inline(always)]
fn at<T>(start: usize, end: usize, offset: usize) -> Result<*const T, Unparsed> {
    if start + offset + size_of::<T>() > end {
        return Err(Unparsed);
    }
    Ok((start + offset) as *const T)
}

#[inline(always)]
pub fn parse(ctx: &SkBuffContext) -> Result<Parsed, Unparsed> {
    // SAFETY: context field reads (rewritten by the verifier) and packet reads
    // bounds-checked against data_end by `at`. x86-64 and arm64 JITs load
    // unaligned words from packets; the verifier allows it on those arches.
    unsafe {
        let skb = &*ctx.skb.skb;
        let (start, end) = (skb.data as usize, skb.data_end as usize);
        let (family, protocol, src_addr, dst_addr, l4_offset) =
            match u16::from_be(skb.protocol as u16) {
                ETH_P_IP => {
                    let ip = at::<Ipv4Hdr>(start, end, 0)?;
                    let l4 = if u16::from_be((*ip).frag_off) & 0x1fff != 0 {
                        0 // a non-first fragment: no L4 header
                    } else {
                        ((*ip).ver_ihl & 0x0f) as usize * 4
                    };
                    (
                        FAMILY_V4,
                        (*ip).protocol,
                        [(*ip).saddr, 0, 0, 0],
                        [(*ip).daddr, 0, 0, 0],
                        l4,
                    )
                }
                ETH_P_IPV6 => {
                    let ip = at::<Ipv6Hdr>(start, end, 0)?;
                    (FAMILY_V6, (*ip).nexthdr, (*ip).saddr, (*ip).daddr, 40)
                }
                _ => return Err(Unparsed),
            };
        let (mut src_port, mut dst_port, mut tcp_flags, mut header_len) = (0, 0, 0, 0);
        if l4_offset != 0 {
            match protocol {
                PROTO_TCP => {
                    let tcp = at::<TcpHead>(start, end, l4_offset)?;
                    src_port = u16::from_be((*tcp).source);
                    dst_port = u16::from_be((*tcp).dest);
                    tcp_flags = (*tcp).flags as u32;
                    header_len = (l4_offset + ((*tcp).doff_res >> 4) as usize * 4) as u32;
                }
                PROTO_UDP => {
                    let udp = at::<Ports>(start, end, l4_offset)?;
                    src_port = u16::from_be((*udp).source);
                    dst_port = u16::from_be((*udp).dest);
                    header_len = (l4_offset + 8) as u32;
                }
                PROTO_ICMP | PROTO_ICMPV6 => {
                    let type_code = at::<[u8; 2]>(start, end, l4_offset)?;
                    src_port = (*type_code)[0] as u16;
                    dst_port = (*type_code)[1] as u16;
                }
                _ => {}
            }
        }
        Ok(Parsed {
            key: FlowKey {
                src_addr,
                dst_addr,
                cgroup_id: 0,
                src_port,
                dst_port,
                family,
                protocol,
                direction: 0,
                _pad: 0,
            },
            tcp_flags,
            header_len,
        })
    }
}
