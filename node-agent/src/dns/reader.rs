//! Reads DNS events from the kernel ring buffer, woken by the kernel through
//! `AsyncFd` (no polling), and hands them to the tracker over a bounded
//! channel. A full channel drops the event and counts it.

use aya::maps::{MapData, RingBuf};
use osprey_abi::DnsEvent;
use prometheus_client::metrics::counter::Counter;
use tokio::{io::unix::AsyncFd, sync::mpsc};
use tracing::warn;

pub async fn run(ring: RingBuf<MapData>, tx: mpsc::Sender<DnsEvent>, lost: Counter) {
    // SAFETY: the ring buffer owns its map fd and keeps it open, unreplaced,
    // for as long as the AsyncFd owns the ring buffer.
    let mut fd = match unsafe {
        AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE)
    } {
        Ok(fd) => fd,
        Err(e) => {
            warn!(error = %e.into_parts().1, "DNS ring buffer cannot be polled; DNS metrics are off");
            return;
        }
    };
    loop {
        let mut guard = match fd.readable_mut().await {
            Ok(guard) => guard,
            Err(e) => {
                warn!(error = %e, "DNS ring buffer poll failed; DNS metrics are off");
                return;
            }
        };
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            if item.len() < std::mem::size_of::<DnsEvent>() {
                lost.inc();
                continue;
            }
            // SAFETY: the kernel wrote a whole DnsEvent (size checked above);
            // read_unaligned copes with the ring's 8-byte alignment.
            let event: DnsEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            if tx.try_send(event).is_err() {
                lost.inc();
            }
        }
        guard.clear_ready();
    }
}
