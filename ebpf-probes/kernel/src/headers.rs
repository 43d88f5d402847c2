//! Parsing of L3/L4 headers from a socket buffer whose data starts at the
//! network header (cgroup_skb). Each header is fetched with a single
//! `bpf_skb_load_bytes` call (two per packet), so the verifier never sees
//! direct packet access and the helper cost stays low.

use aya_ebpf::programs::SkBuffContext;
use osprey_abi::{FAMILY_V4, FAMILY_V6, FlowKey, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;

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

#[inline(always)]
pub fn parse(ctx: &SkBuffContext) -> Result<Parsed, Unparsed> {
    let proto = u16::from_be(ctx.skb.protocol() as u16);
    let mut key = FlowKey {
        src_addr: [0; 16],
        dst_addr: [0; 16],
        cgroup_id: 0,
        src_port: 0,
        dst_port: 0,
        family: 0,
        protocol: 0,
        direction: 0,
        _pad: 0,
    };
    let l4_offset = match proto {
        ETH_P_IP => {
            let ip: [u8; 20] = ctx.load(0).map_err(|_| Unparsed)?;
            key.family = FAMILY_V4;
            key.protocol = ip[9];
            key.src_addr[..4].copy_from_slice(&ip[12..16]);
            key.dst_addr[..4].copy_from_slice(&ip[16..20]);
            // Non-first fragments carry no L4 header.
            if u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0 {
                return Ok(Parsed {
                    key,
                    tcp_flags: 0,
                    header_len: 0,
                });
            }
            ((ip[0] & 0x0f) as usize) * 4
        }
        ETH_P_IPV6 => {
            let ip: [u8; 40] = ctx.load(0).map_err(|_| Unparsed)?;
            key.family = FAMILY_V6;
            key.protocol = ip[6];
            key.src_addr.copy_from_slice(&ip[8..24]);
            key.dst_addr.copy_from_slice(&ip[24..40]);
            40
        }
        _ => return Err(Unparsed),
    };
    let mut tcp_flags = 0;
    let mut header_len = 0;
    match key.protocol {
        PROTO_TCP => {
            // Ports (0..4), data offset (12, high nibble), flags (13).
            let tcp: [u8; 14] = ctx.load(l4_offset).map_err(|_| Unparsed)?;
            key.src_port = u16::from_be_bytes([tcp[0], tcp[1]]);
            key.dst_port = u16::from_be_bytes([tcp[2], tcp[3]]);
            tcp_flags = tcp[13] as u32;
            header_len = (l4_offset + ((tcp[12] >> 4) as usize) * 4) as u32;
        }
        PROTO_UDP => {
            let udp: [u8; 4] = ctx.load(l4_offset).map_err(|_| Unparsed)?;
            key.src_port = u16::from_be_bytes([udp[0], udp[1]]);
            key.dst_port = u16::from_be_bytes([udp[2], udp[3]]);
            header_len = (l4_offset + 8) as u32;
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            let type_code: [u8; 2] = ctx.load(l4_offset).map_err(|_| Unparsed)?;
            key.src_port = type_code[0] as u16;
            key.dst_port = type_code[1] as u16;
        }
        _ => {}
    }
    Ok(Parsed {
        key,
        tcp_flags,
        header_len,
    })
}
