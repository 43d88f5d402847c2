//! One reader for every kernel ring buffer (DNS events, OOM kills, and the
//! HTTP records to come): woken by the kernel through `AsyncFd` (no polling),
//! it decodes each record as a `T` and hands every wake-up's records to a
//! sink. A record too short to be a `T` is counted in `malformed`.

use aya::{
    Pod,
    maps::{MapData, RingBuf},
};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{Interest, unix::AsyncFd};
use tracing::warn;

/// Reads `ring` until its fd fails, passing each wake-up's records to
/// `sink`; `what` names the ring in warnings.
pub async fn read<T: Pod>(
    what: &'static str,
    ring: RingBuf<MapData>,
    malformed: Counter,
    sink: impl FnMut(Vec<T>),
) {
    read_polling(what, ring, malformed, None, sink).await
}

/// As [`read`], and also every `poll` without a wake-up: for a ring whose
/// programs wake userspace only once much is waiting.
pub async fn read_polling<T: Pod>(
    what: &'static str,
    ring: RingBuf<MapData>,
    malformed: Counter,
    poll: Option<std::time::Duration>,
    mut sink: impl FnMut(Vec<T>),
) {
    let mut tick = tokio::time::interval(poll.unwrap_or(std::time::Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
        let records = tokio::select! {
            ready = fd.readable_mut() => {
                let mut guard = match ready {
                    Ok(guard) => guard,
                    Err(e) => {
                        warn!(ring = what, error = %e, "ring buffer poll failed; its events are off");
                        return;
                    }
                };
                let records = drain(guard.get_inner_mut(), &malformed);
                guard.clear_ready();
                records
            }
            _ = tick.tick(), if poll.is_some() => drain(fd.get_mut(), &malformed),
        };
        if !records.is_empty() {
            sink(records);
        }
    }
}

fn drain<T: Pod>(ring: &mut RingBuf<MapData>, malformed: &Counter) -> Vec<T> {
    let mut records = Vec::new();
    while let Some(item) = ring.next() {
        records.extend(decode::<T>(&item).or_else(|| {
            malformed.inc();
            None
        }));
    }
    records
}

/// `bytes` as a `T`, if it holds a whole one.
pub fn decode<T: Pod>(bytes: &[u8]) -> Option<T> {
    // SAFETY: T is plain data (Pod) and `bytes` holds at least size_of::<T>()
    // bytes; read_unaligned copes with the ring's 8-byte alignment.
    (bytes.len() >= std::mem::size_of::<T>())
        .then(|| unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
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
        let got: osprey_abi::OomEvent = decode(bytes).unwrap();
        assert_eq!(got.trigger_cgroup_id, 42);
        assert!(decode::<osprey_abi::OomEvent>(&bytes[1..]).is_none());
    }
}
