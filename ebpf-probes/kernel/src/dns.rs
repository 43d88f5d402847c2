//! DNS over UDP/53 and TCP/53 without a proxy: the flow programs hand every
//! packet to or from port 53 to `capture`, which copies its payload (up to
//! 512 bytes: a UDP message, or TCP's 2-byte length and the message) into a
//! ring buffer; userspace parses it and pairs queries with answers.

use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, RingBuf},
    programs::SkBuffContext,
};
use osprey_abi::{DNS_PAYLOAD_MAX, DnsEvent, FlowKey};

use crate::payload::capture;

pub const DNS_PORT: u16 = 53;

#[map]
static DNS_EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Where a record is filled before it is sent (see `payload`).
#[map]
static DNS_SCRATCH: PerCpuArray<DnsEvent> = PerCpuArray::with_max_entries(1, 0);

/// Copies the payload that starts at `offset` (after the UDP or TCP header).
#[inline(always)]
pub fn capture(ctx: &SkBuffContext, flow: &FlowKey, offset: usize) {
    let available = (ctx.len() as usize).saturating_sub(offset);
    if available == 0 {
        return;
    }
    capture!(
        ctx,
        DNS_EVENTS,
        DNS_SCRATCH,
        DnsEvent,
        DNS_PAYLOAD_MAX,
        flow,
        aya_ebpf::helpers::bpf_ktime_get_ns(),
        offset,
        available,
        DNS_PAYLOAD_MAX,
        0,
        |loss| loss.dns_ring_full += 1
    );
}
