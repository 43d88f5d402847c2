//! DNS over UDP/53 and TCP/53 without a proxy: the flow programs hand every
//! packet to or from port 53 to `capture`, which copies its payload (up to
//! 512 bytes: a UDP message, or TCP's 2-byte length and the message) into a
//! ring buffer; userspace parses it and pairs queries with answers.

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_skb_load_bytes},
    macros::map,
    maps::RingBuf,
    programs::SkBuffContext,
};
use osprey_abi::{DNS_PAYLOAD_MAX, DnsEvent, FlowKey};

use crate::shared::count_loss;

pub const DNS_PORT: u16 = 53;

#[map]
static DNS_EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Copies the payload that starts at `offset` (after the UDP or TCP header).
#[inline(always)]
pub fn capture(ctx: &SkBuffContext, flow: &FlowKey, offset: usize) {
    let available = (ctx.len() as usize).saturating_sub(offset);
    if available == 0 {
        return;
    }
    let copy = available.min(DNS_PAYLOAD_MAX) as u64;
    // Hide the value from LLVM so that it keeps both bound checks below,
    // which the verifier needs to see the length is in [1, DNS_PAYLOAD_MAX].
    // SAFETY: a read of a local.
    let copy = unsafe { core::ptr::read_volatile(&copy) };
    if copy == 0 || copy > DNS_PAYLOAD_MAX as u64 {
        return;
    }
    let Some(mut entry) = DNS_EVENTS.reserve::<DnsEvent>(0) else {
        count_loss(|loss| loss.dns_ring_full += 1);
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: the entry is reserved for us and sized for a DnsEvent.
    unsafe {
        (*event).ts_ns = bpf_ktime_get_ns();
        (*event).flow = *flow;
        (*event).payload_len = available as u32;
        let rc = bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            offset as u32,
            (&raw mut (*event).payload).cast(),
            copy as u32,
        );
        if rc != 0 {
            entry.discard(0);
            return;
        }
        (*event).captured = copy as u32;
    }
    entry.submit(0);
}
