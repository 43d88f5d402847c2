//! HTTP/1.x without a proxy: the flow programs hand every TCP segment with
//! payload to `capture`, which looks at its first eight payload bytes and,
//! only when they start a request line (a method and a space) or a status
//! line (`HTTP/1.`), copies the first `HTTP_CAPTURE_BYTES` of the payload
//! into a ring buffer with the flow and a kernel timestamp (a record as long
//! as what it copied, see `payload`). Userspace parses
//! the header block and pairs requests with responses per connection.
//!
//! The test costs one load (direct when the payload is in the linear area,
//! `bpf_skb_load_bytes` of 8 bytes otherwise) and a few compares.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_ktime_get_ns, bpf_skb_load_bytes},
    macros::map,
    maps::{PerCpuArray, RingBuf},
    programs::SkBuffContext,
};
use osprey_abi::{DIR_EGRESS, FlowKey, HTTP_PAYLOAD_MAX, HttpEvent};

use crate::{offsets, payload::capture};

/// Payload bytes copied per start, at most `HTTP_PAYLOAD_MAX`; 0 turns HTTP
/// off (set at load from the agent's `http_capture_bytes`).
#[unsafe(no_mangle)]
static HTTP_CAPTURE_BYTES: u32 = 0;

/// 2 MiB of kernel memory (mapped twice by the reader, so 4 MiB of its
/// RSS): 25 ms of records (5× the agent's poll) at ~500k records/s of ~120
/// bytes (a small request or response) before `WAKE_AT` is reached.
#[map]
static HTTP_EVENTS: RingBuf = RingBuf::with_byte_size(2 * 1024 * 1024, 0);

/// Where a record is filled before it is sent (see `payload`).
#[map]
static HTTP_SCRATCH: PerCpuArray<HttpEvent> = PerCpuArray::with_max_entries(1, 0);

/// Userspace reads the ring on its own timer (every `HTTP_POLL` in the
/// agent) and is woken only once this much is waiting, when the timer is
/// too slow for the rate: a wake-up (an IRQ work item, a self-IPI, which in
/// a VM is an exit) costs several times the rest of a record's work. Woken
/// at 256 KiB, the bench's requests cost +2.2 µs each in the kernel; at ¾ of
/// the ring, +0.2–0.4 µs (`cargo xtask bench --only http`).
const WAKE_AT: u64 = 1536 * 1024;

/// The shortest start: `GET / HTTP/1.1\r\n` (a status line is longer).
const MIN_START: usize = 16;

/// (pattern, mask) over the first eight payload bytes, little-endian: the
/// request methods of RFC 9110 followed by a space, and `HTTP/1.`.
const STARTS: [(u64, u64); 10] = [
    word(b"GET "),
    word(b"POST "),
    word(b"PUT "),
    word(b"HEAD "),
    word(b"DELETE "),
    word(b"PATCH "),
    word(b"OPTIONS "),
    word(b"CONNECT "),
    word(b"TRACE "),
    word(b"HTTP/1."),
];

const fn word(prefix: &[u8]) -> (u64, u64) {
    let (mut pattern, mut mask, mut i) = (0u64, 0u64, 0);
    while i < prefix.len() {
        pattern |= (prefix[i] as u64) << (8 * i);
        mask |= 0xff << (8 * i);
        i += 1;
    }
    (pattern, mask)
}

#[inline(always)]
fn is_start(first: u64) -> bool {
    let mut i = 0;
    while i < STARTS.len() {
        let (pattern, mask) = STARTS[i];
        if first & mask == pattern {
            return true;
        }
        i += 1;
    }
    false
}

/// When the socket layer saw the segment, in CLOCK_MONOTONIC ns. A segment
/// TCP sends already carries it: `__tcp_transmit_skb` stamps every segment
/// with its departure time (`skb->tstamp`, from the socket's clock, which
/// `tcp_write_xmit` refreshes just before), in the same call chain as the
/// egress hook. Reading it instead of `bpf_ktime_get_ns` saves the clock
/// read (≈ 25 ns here, a TSC read behind a seqcount) on half the starts. An
/// ingress `tstamp` is wall-clock time or 0, so ingress reads the clock.
#[inline(always)]
fn seen_at(ctx: &SkBuffContext, flow: &FlowKey) -> u64 {
    // SAFETY: a context field read (rewritten by the verifier); a helper
    // without arguments.
    unsafe {
        let sent = if flow.direction == DIR_EGRESS {
            (*ctx.skb.skb).tstamp
        } else {
            0
        };
        if sent != 0 { sent } else { bpf_ktime_get_ns() }
    }
}

/// Looks at the TCP payload that starts at `offset`; copies it when it
/// starts an HTTP request or response.
#[inline(always)]
pub fn capture(ctx: &SkBuffContext, flow: &FlowKey, offset: usize) {
    let cap = offsets::get(&HTTP_CAPTURE_BYTES);
    if cap == 0 {
        return;
    }
    let available = (ctx.len() as usize).saturating_sub(offset);
    if available < MIN_START {
        return;
    }
    let mut first = 0u64;
    // SAFETY: context field reads; a packet read bounds-checked against
    // data_end (the verifier checks it too), else a helper copy into a local.
    unsafe {
        let skb = &*ctx.skb.skb;
        let (start, end) = (skb.data as usize, skb.data_end as usize);
        if start + offset + 8 <= end {
            first = core::ptr::read_unaligned((start + offset) as *const u64);
        } else if bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            offset as u32,
            (&raw mut first).cast(),
            8,
        ) != 0
        {
            return;
        }
    }
    if !is_start(first) {
        return;
    }
    let flags = if HTTP_EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= WAKE_AT {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    capture!(
        ctx,
        HTTP_EVENTS,
        HTTP_SCRATCH,
        HttpEvent,
        HTTP_PAYLOAD_MAX,
        flow,
        seen_at(ctx, flow),
        offset,
        available,
        cap,
        flags as u64,
        |loss| loss.http_ring_full += 1
    );
}
