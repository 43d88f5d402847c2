//! The records DNS and HTTP hand to userspace share one layout (`ts_ns`,
//! `flow`, `payload_len`, `captured`, `payload`): one way to fill them.

/// Reserves a `$event` in `$ring` and fills it with a kernel timestamp,
/// `$flow`, and the first `$limit` (≤ `$max`) of the `$available` payload
/// bytes at `$offset`. Evaluates to the filled entry, for the caller to
/// submit, or None: nothing to copy, the copy failed (entry discarded), or
/// the ring was full (counted by `$full`, a closure over `FlowLoss`).
macro_rules! capture {
    ($ctx:expr, $ring:expr, $event:ty, $max:expr, $flow:expr, $offset:expr, $available:expr, $limit:expr, $full:expr) => {{
        let copy = ($available).min($limit).min($max) as u64;
        // Hidden from LLVM so that both bound checks below stay, which the
        // verifier needs to see the length is in [1, $max].
        // SAFETY: a read of a local.
        let copy = unsafe { core::ptr::read_volatile(&copy) };
        if copy == 0 || copy > $max as u64 {
            None
        } else {
            match $ring.reserve::<$event>(0) {
                None => {
                    $crate::shared::count_loss($full);
                    None
                }
                Some(mut entry) => {
                    let event = entry.as_mut_ptr();
                    // SAFETY: the entry is reserved for us and sized for the event.
                    let rc = unsafe {
                        (*event).ts_ns = aya_ebpf::helpers::bpf_ktime_get_ns();
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
                        entry.discard(0);
                        None
                    } else {
                        Some(entry)
                    }
                }
            }
        }
    }};
}
pub(crate) use capture;
