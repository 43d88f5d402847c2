//! One reader for every kernel ring buffer (DNS events, OOM kills, HTTP
//! starts): woken by the kernel through `AsyncFd` (or polled, for a ring
//! whose programs rarely wake it), it decodes each record as a `T` and hands
//! every wake-up's records to a sink. A record too short to be a `T`
//! ([`Record::decode`] gives `None`) is counted in `malformed`.

use aya::{
    Pod,
    maps::{MapData, RingBuf},
};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{Interest, unix::AsyncFd};
use tracing::warn;

/// A kernel ring record as userspace keeps it.
pub trait Record: Sized {
    /// The record in `bytes`, or `None` if they are too short to hold one.
    fn decode(bytes: &[u8]) -> Option<Self>;
}

impl Record for osprey_abi::OomEvent {
    fn decode(bytes: &[u8]) -> Option<Self> {
        decode_pod(bytes, std::mem::size_of::<Self>())
    }
}

/// Sent cut after its captured bytes: only the fixed part must be there.
impl Record for osprey_abi::DnsEvent {
    fn decode(bytes: &[u8]) -> Option<Self> {
        decode_pod(bytes, std::mem::offset_of!(Self, payload))
    }
}

/// Records handed to the sink at a time: a ring read after a long poll
/// holds many.
pub const CHUNK: usize = 256;

/// Reads `ring` until its fd fails, passing each wake-up's records to
/// `sink`; `what` names the ring in warnings.
pub async fn read<T: Record>(
    what: &'static str,
    ring: RingBuf<MapData>,
    malformed: Counter,
    mut sink: impl FnMut(Vec<T>),
) {
    read_polling(what, ring, malformed, None, move |records| {
        sink(records);
        std::future::ready(())
    })
    .await
}

/// How often a ring whose programs rarely wake its reader is read: every
/// `busy` while records keep coming, backing off (doubling) to `idle` while
/// none do, so that an idle agent does not poll 200 times a second.
#[derive(Debug, Clone, Copy)]
pub struct Poll {
    pub busy: std::time::Duration,
    pub idle: std::time::Duration,
}

/// As [`read`], and also on a [`Poll`] timer without a wake-up: for a ring
/// whose programs wake userspace only once much is waiting. Records go to the
/// sink [`CHUNK`] at a time, and the ring is read on only once the sink's
/// future is done: a slow consumer leaves records in the ring (where a full
/// ring is counted by the programs), not in memory.
pub async fn read_polling<T: Record, F: Future<Output = ()>>(
    what: &'static str,
    ring: RingBuf<MapData>,
    malformed: Counter,
    poll: Option<Poll>,
    mut sink: impl FnMut(Vec<T>) -> F,
) {
    let idle = std::time::Duration::from_secs(3600);
    let every = |e: std::time::Duration| {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + e, e);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    };
    let mut period = poll.map_or(idle, |p| p.busy);
    let mut tick = every(period);
    // SAFETY: the ring buffer owns its map fd and keeps it open, unreplaced,
    // for as long as the AsyncFd owns the ring buffer.
    let mut fd = match unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) } {
        Ok(fd) => fd,
        Err(e) => {
            warn!(ring = what, error = %e.into_parts().1, "ring buffer cannot be polled; its events are off");
            return;
        }
    };
    loop {
        tokio::select! {
            ready = fd.readable_mut() => match ready {
                // Cleared before the ring is read to its end: a record
                // written meanwhile makes it ready again.
                Ok(mut guard) => guard.clear_ready(),
                Err(e) => {
                    warn!(ring = what, error = %e, "ring buffer poll failed; its events are off");
                    return;
                }
            },
            _ = tick.tick(), if poll.is_some() => {}
        }
        let mut read = false;
        loop {
            let (records, emptied) = drain(fd.get_mut(), &malformed);
            if !records.is_empty() {
                read = true;
                sink(records).await;
            }
            if emptied {
                break;
            }
        }
        if let Some(p) = poll {
            let next = if read {
                p.busy
            } else {
                (period * 2).min(p.idle)
            };
            if next != period {
                period = next;
                tick = every(period);
            }
        }
    }
}

/// Up to [`CHUNK`] records from the ring, and whether it was read to its end.
fn drain<T: Record>(ring: &mut RingBuf<MapData>, malformed: &Counter) -> (Vec<T>, bool) {
    let mut records = Vec::with_capacity(CHUNK.min(64));
    while records.len() < CHUNK {
        let Some(item) = ring.next() else {
            return (records, true);
        };
        records.extend(T::decode(&item).or_else(|| {
            malformed.inc();
            None
        }));
    }
    (records, false)
}

/// `bytes` as a `T`, if they hold at least `min_len` of it; bytes past the
/// record read as zeros.
pub fn decode_pod<T: Pod>(bytes: &[u8], min_len: usize) -> Option<T> {
    if bytes.len() < min_len {
        return None;
    }
    let len = bytes.len().min(std::mem::size_of::<T>());
    // SAFETY: T is plain data (Pod), so all zeros is a T and so is any byte
    // pattern copied over its first `len` bytes; the copy stays within both.
    unsafe {
        let mut out: T = std::mem::zeroed();
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), (&raw mut out).cast::<u8>(), len);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_whole_records_only() {
        // SAFETY: an all-zero OomEvent is a valid one (plain integers).
        let mut event: osprey_abi::OomEvent = unsafe { std::mem::zeroed() };
        event.trigger_cgroup_id = 42;
        // SAFETY: viewing a Pod value as its bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&raw const event).cast::<u8>(),
                std::mem::size_of::<osprey_abi::OomEvent>(),
            )
        };
        let got = osprey_abi::OomEvent::decode(bytes).unwrap();
        assert_eq!(got.trigger_cgroup_id, 42);
        assert!(osprey_abi::OomEvent::decode(&bytes[1..]).is_none());
    }

    #[test]
    fn payload_records_may_end_after_their_captured_bytes() {
        use osprey_abi::DnsEvent;
        let fixed = std::mem::offset_of!(DnsEvent, payload);
        let mut bytes = vec![0u8; fixed + 5];
        bytes[fixed - 4..fixed].copy_from_slice(&5u32.to_ne_bytes()); // captured
        bytes[fixed..].copy_from_slice(b"\x12\x34\x01\x00\x00");
        let got = DnsEvent::decode(&bytes).unwrap();
        assert_eq!(got.captured, 5);
        assert_eq!(&got.payload[..6], b"\x12\x34\x01\x00\x00\0");
        assert!(DnsEvent::decode(&bytes[..fixed - 1]).is_none());
    }
}
