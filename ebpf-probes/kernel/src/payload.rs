//! The records DNS and HTTP hand to userspace share one layout (`ts_ns`,
//! `flow`, `payload_len`, `captured`, `payload`): one way to fill and send
//! them.
//!
//! A record is sent cut after its `captured` payload bytes, not at its
//! type's full size: a 60-byte HTTP request then takes ~110 bytes of ring
//! instead of ~1.1 KiB. That keeps the ring's working set (and the cache
//! lines the producer takes back from the reading CPU) ~10× smaller. The
//! record is filled in a per-CPU scratch value (the BPF stack is 512 bytes)
//! and copied with `bpf_ringbuf_output`, whose size may vary; reserve's may
//! not.

/// Fills this CPU's `$scratch` `$event` with the timestamp `$ts` (kernel
/// CLOCK_MONOTONIC ns), `$flow`,
/// and the first `$limit` (≤ `$max`) of the `$available` payload bytes at
/// `$offset`, then sends it cut after the copied bytes to `$ring` with
/// `$flags`. Evaluates to whether it was sent: nothing to copy or a failed
/// copy send nothing; a full ring is counted by `$full`, a closure over
/// `FlowLoss`.
macro_rules! capture {
    ($ctx:expr, $ring:expr, $scratch:expr, $event:ty, $max:expr, $flow:expr, $ts:expr, $offset:expr, $available:expr, $limit:expr, $flags:expr, $full:expr) => {{
        let copy = ($available).min($limit).min($max) as u64;
        // Hidden from LLVM so that both bound checks below stay, which the
        // verifier needs to see the length is in [1, $max].
        // SAFETY: a read of a local.
        let copy = unsafe { core::ptr::read_volatile(&copy) };
        match $scratch.get_ptr_mut(0) {
            Some(event) if copy != 0 && copy <= $max as u64 => {
                // SAFETY: this CPU's value of a per-CPU array, sized for the
                // event; nothing else runs on this CPU meanwhile.
                let rc = unsafe {
                    (*event).ts_ns = $ts;
                    (*event).flow = *$flow;
                    (*event).payload_len = $available as u32;
                    (*event).captured = copy as u32;
                    aya_ebpf::helpers::bpf_skb_load_bytes(
                        $ctx.skb.skb as *const _,
                        $offset as u32,
                        (&raw mut (*event).payload).cast(),
                        copy as u32,
                    )
                };
                if rc != 0 {
                    false
                } else {
                    let len = core::mem::offset_of!($event, payload) + copy as usize;
                    // SAFETY: `len` is within the scratch value (copy ≤ $max).
                    let bytes = unsafe { core::slice::from_raw_parts(event.cast::<u8>(), len) };
                    match $ring.output::<[u8]>(bytes, $flags) {
                        Ok(()) => true,
                        Err(_) => {
                            $crate::shared::count_loss($full);
                            false
                        }
                    }
                }
            }
            _ => false,
        }
    }};
}
pub(crate) use capture;
