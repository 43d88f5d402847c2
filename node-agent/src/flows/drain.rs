//! Stage 1: drain the kernel flow maps.
//!
//! The kernel writes into the active one of two maps. Each drain flips
//! `ACTIVE_FLOW_MAP`, waits out an RCU grace period (`kernel::grace`: every
//! program that picked the old map has finished), then reads and deletes
//! every entry of the now idle map. Nothing else writes to it, so every
//! packet is counted exactly once.

use std::{
    collections::HashMap,
    sync::mpsc::{Receiver, RecvTimeoutError},
    time::Duration,
};

use aya::maps::MapError;
use osprey_abi::{ConnKey, DropKey, FlowKey, FlowLoss, FlowStats};
use osprey_model::labels::{LossLabels, LossReason};

use tracing::warn;

use super::{
    empty::{drain_map, drain_shared},
    metrics::FlowMetrics,
    slots::drain_slots,
};
use crate::kernel::{maps::FlowMap, probes::FlowMaps};

/// Where no RCU grace period can be waited for (no map-in-map): a program
/// that loaded the old index finishes in microseconds unless its vCPU is
/// descheduled, so this is ample but not exact.
const FLIP_GRACE: Duration = Duration::from_millis(5);

/// A drain that emptied nothing. Once the maps are flipped a drain always
/// yields its batch; what failed after that is counted in the batch's
/// `read_errors`.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("cannot switch the active flow map")]
    Flip(#[source] MapError),
}

/// One flow's counters over one drain interval, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowDelta {
    pub key: FlowKey,
    /// Its `first_seen` / `last_seen` are the kernel's tick counts.
    pub stats: FlowStats,
    /// CLOCK_MONOTONIC (ns) of the first and the last packet, to a tick.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
}

impl FlowDelta {
    /// A delta whose times the drain has yet to convert.
    fn new(key: FlowKey, stats: FlowStats) -> Self {
        Self {
            key,
            stats,
            ..Self::default()
        }
    }
}

/// What one drain produced.
#[derive(Debug, Default)]
pub struct FlowBatch {
    pub flows: Vec<FlowDelta>,
    /// Packets the kernel dropped, per (flow, reason), over the interval.
    pub drops: Vec<(DropKey, u64)>,
    /// TCP retransmissions per flow over the interval.
    pub retransmits: Vec<(FlowKey, u64)>,
    /// TCP connection outcomes over the interval.
    pub connections: Vec<(ConnKey, u64)>,
    /// Cumulative loss counters since the probes were loaded (summed over
    /// CPUs); the last ones read when this drain could not read them.
    pub loss: FlowLoss,
    /// Reads and deletes that failed (should stay 0): map entries, slots or
    /// loss counters left in the kernel for the next drain (or, where the
    /// kernel failed mid-batch, lost with it).
    pub read_errors: u64,
}

impl FlowBatch {
    /// Empties the batch and keeps its buffers, for the next drain.
    pub fn clear(&mut self) {
        self.flows.clear();
        self.drops.clear();
        self.retransmits.clear();
        self.connections.clear();
        self.loss = FlowLoss::default();
        self.read_errors = 0;
    }

    /// The flows' packets and bytes.
    fn totals(&self) -> (u64, u64) {
        self.flows
            .iter()
            .fold((0, 0), |(p, b), f| (p + f.stats.packets, b + f.stats.bytes))
    }
}

pub struct FlowDrainer {
    maps: FlowMaps,
    active: u32,
    /// The loss counters last read, for a drain that cannot read them.
    loss: FlowLoss,
    /// The flow map's entries, read before the slots are merged in: one
    /// buffer kept from drain to drain.
    raw: Vec<(FlowKey, FlowStats)>,
    /// Batches the aggregator has applied, sent back emptied: each drain
    /// fills one, so a steady flow rate allocates nothing per drain (and
    /// gives no pages back that the next drain would fault in again).
    recycled: Option<Receiver<FlowBatch>>,
}

impl FlowDrainer {
    pub fn new(maps: FlowMaps) -> Self {
        Self {
            maps,
            active: 0,
            loss: FlowLoss::default(),
            raw: Vec::new(),
            recycled: None,
        }
    }

    /// Fills the batches that come back on `recycled` instead of new ones.
    pub fn recycling(mut self, recycled: Receiver<FlowBatch>) -> Self {
        self.recycled = Some(recycled);
        self
    }

    /// An applied batch, emptied, or a new one.
    fn empty_batch(&self) -> FlowBatch {
        let mut batch = self
            .recycled
            .as_ref()
            .and_then(|r| r.try_recv().ok())
            .unwrap_or_default();
        batch.clear();
        batch
    }

    /// The drain thread: drains every `interval` and sends each batch to
    /// `batches`, until `stop` gets a message or its sender is dropped; then
    /// drains once more, so the last interval is sent too, and returns. A
    /// batch that cannot be sent (the receiver gone) is counted as lost.
    pub fn run(
        mut self,
        interval: Duration,
        stop: &Receiver<()>,
        batches: &tokio::sync::mpsc::Sender<FlowBatch>,
        metrics: &FlowMetrics,
    ) {
        let send = |batch| batches.blocking_send(batch).map_err(|e| Box::new(e.0));
        drain_loop(|| self.drain(), interval, stop, send, metrics);
    }

    /// Flips the maps and drains the one the kernel was writing into. Only a
    /// failed flip (nothing drained) is an error.
    pub fn drain(&mut self) -> Result<FlowBatch, DrainError> {
        let idle = self.active;
        self.maps
            .active
            .set(0, 1 - idle, 0)
            .map_err(DrainError::Flip)?;
        self.active = 1 - idle;
        let waited = self.maps.grace.as_ref().map(|g| g.wait());
        if !matches!(waited, Some(Ok(()))) {
            if let Some(Err(e)) = waited {
                warn!(error = %e, "cannot wait for an RCU grace period; sleeping instead");
            }
            std::thread::sleep(FLIP_GRACE);
        }

        let mut batch = self.empty_batch();
        let mut errors = 0;
        let raw = std::mem::take(&mut self.raw);
        let raw = match &mut self.maps.flows[idle as usize] {
            FlowMap::Shared(map) => drain_shared(map, &mut errors, raw),
            FlowMap::PerCpu(map) => drain_map(map, &mut errors, sum_stats, raw),
        };
        let slots = drain_slots(&mut self.maps.slots, idle, &mut errors);
        merge_flows(&raw, slots, &mut batch.flows);
        self.raw = raw;
        if let Err(e) = self.maps.clock.refresh() {
            warn!(error = %e, "flow times use the previous clock sample");
        }
        for flow in &mut batch.flows {
            flow.first_seen_ns = self.maps.clock.mono_ns(flow.stats.first_seen);
            flow.last_seen_ns = self.maps.clock.mono_ns(flow.stats.last_seen);
        }
        let i = idle as usize;
        batch.drops = drain_shared(&mut self.maps.drops[i], &mut errors, batch.drops);
        batch.retransmits = drain_shared(
            &mut self.maps.retransmits[i],
            &mut errors,
            batch.retransmits,
        );
        batch.connections = drain_shared(
            &mut self.maps.connections[i],
            &mut errors,
            batch.connections,
        );
        batch.read_errors = errors;
        let loss = self.maps.loss.get(&0, 0).map(|l| sum_loss(l.iter()));
        batch.loss = latest_loss(loss, &mut self.loss, &mut batch.read_errors);
        Ok(batch)
    }
}

/// `FlowDrainer::run`'s loop, over any `drain`.
fn drain_loop(
    mut drain: impl FnMut() -> Result<FlowBatch, DrainError>,
    interval: Duration,
    stop: &Receiver<()>,
    mut send: impl FnMut(FlowBatch) -> Result<(), Box<FlowBatch>>,
    metrics: &FlowMetrics,
) {
    loop {
        let last = !matches!(stop.recv_timeout(interval), Err(RecvTimeoutError::Timeout));
        match drain() {
            Ok(batch) => {
                if let Err(batch) = send(batch) {
                    count_lost(metrics, &batch);
                    return;
                }
            }
            Err(e) => {
                metrics.drain_errors.inc();
                warn!(error = %e, "flow drain failed");
            }
        }
        if last {
            return;
        }
    }
}

/// A batch drained out of the kernel that will never be applied: a drain
/// error, its flows' packets and bytes lost for reason `drain_error`.
fn count_lost(metrics: &FlowMetrics, batch: &FlowBatch) {
    let (packets, bytes) = batch.totals();
    let labels = LossLabels {
        reason: LossReason::DrainError,
    };
    metrics.lost_packets.get_or_create(&labels).inc_by(packets);
    metrics.lost_bytes.get_or_create(&labels).inc_by(bytes);
    metrics.drain_errors.inc();
    warn!(
        packets,
        bytes, "a drained flow batch found no aggregator; counted as lost"
    );
}

/// This drain's loss counters, or, when they cannot be read, the last ones
/// read (they are cumulative: the next read catches up, none counted twice).
fn latest_loss(
    read: Result<FlowLoss, MapError>,
    last: &mut FlowLoss,
    errors: &mut u64,
) -> FlowLoss {
    match read {
        Ok(loss) => *last = loss,
        Err(e) => {
            warn!(error = %e, "cannot read the flow loss counters; the next drain will");
            *errors += 1;
        }
    }
    *last
}

/// The map's flows with the slots' added, into `out`: one delta per flow.
/// Only the slots (a few per CPU) are indexed, not the map's flows.
fn merge_flows(
    flows: &[(FlowKey, FlowStats)],
    slots: Vec<(FlowKey, FlowStats)>,
    out: &mut Vec<FlowDelta>,
) {
    let mut by_key: HashMap<FlowKey, FlowStats> = HashMap::with_capacity(slots.len());
    // Two CPUs' slots can hold the same flow.
    for (key, stats) in slots {
        by_key
            .entry(key)
            .and_modify(|s| *s = sum_stats(&[*s, stats]))
            .or_insert(stats);
    }
    let mut slots = by_key;
    out.reserve(flows.len() + slots.len());
    for &(key, stats) in flows {
        let stats = match slots.remove(&key) {
            Some(slot) => sum_stats(&[stats, slot]),
            None => stats,
        };
        out.push(FlowDelta::new(key, stats));
    }
    out.extend(
        slots
            .into_iter()
            .map(|(key, stats)| FlowDelta::new(key, stats)),
    );
}

/// Sums per-CPU stats: counters add, first seen is the earliest, last seen
/// the latest; the smoothed RTT is the one read last.
pub fn sum_stats(per_cpu: &[FlowStats]) -> FlowStats {
    let srtt_us = per_cpu
        .iter()
        .filter(|s| s.srtt_us != 0)
        .max_by_key(|s| s.srtt_read)
        .map_or(0, |s| s.srtt_us);
    let sum = per_cpu.iter().fold(FlowStats::default(), |acc, s| {
        if s.packets == 0 {
            return acc;
        }
        FlowStats {
            bytes: acc.bytes + s.bytes,
            packets: acc.packets + s.packets,
            // 0 is "never stamped" (a CPU's zeroed value), not the earliest.
            first_seen: match (acc.first_seen, s.first_seen) {
                (0, t) | (t, 0) => t,
                (a, b) => a.min(b),
            },
            last_seen: acc.last_seen.max(s.last_seen),
            tcp_flags: acc.tcp_flags | s.tcp_flags,
            syn: acc.syn + s.syn,
            syn_ack: acc.syn_ack + s.syn_ack,
            fin: acc.fin + s.fin,
            rst: acc.rst + s.rst,
            srtt_us: 0,
            srtt_read: 0,
        }
    });
    FlowStats { srtt_us, ..sum }
}

fn sum_loss<'a>(per_cpu: impl Iterator<Item = &'a FlowLoss>) -> FlowLoss {
    per_cpu.fold(FlowLoss::default(), |acc, l| FlowLoss {
        map_full_packets: acc.map_full_packets + l.map_full_packets,
        map_full_bytes: acc.map_full_bytes + l.map_full_bytes,
        unparsed_packets: acc.unparsed_packets + l.unparsed_packets,
        drop_map_full: acc.drop_map_full + l.drop_map_full,
        retransmit_map_full: acc.retransmit_map_full + l.retransmit_map_full,
        conn_map_full: acc.conn_map_full + l.conn_map_full,
        dns_ring_full: acc.dns_ring_full + l.dns_ring_full,
        http_ring_full: acc.http_ring_full + l.http_ring_full,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(bytes: u64, packets: u64, first: u64, last: u64, flags: u32) -> FlowStats {
        FlowStats {
            bytes,
            packets,
            first_seen: first,
            last_seen: last,
            tcp_flags: flags,
            syn: u32::from(flags == 0x02),
            ..FlowStats::default()
        }
    }

    #[test]
    fn slot_flows_merge_with_the_map_flows() {
        let key = |port| FlowKey {
            src_port: port,
            ..FlowKey::default()
        };
        let mut merged = Vec::new();
        merge_flows(
            &[(key(1), stats(100, 2, 50, 60, 0x02))],
            vec![
                (key(1), stats(40, 1, 40, 90, 0x10)),
                (key(2), stats(7, 1, 70, 70, 0)),
                (key(1), stats(10, 1, 80, 80, 0x01)),
            ],
            &mut merged,
        );
        let mut got: Vec<(u16, u64, u64, u64, u64, u32)> = merged
            .iter()
            .map(|d| {
                let s = d.stats;
                (
                    d.key.src_port,
                    s.bytes,
                    s.packets,
                    s.first_seen,
                    s.last_seen,
                    s.tcp_flags,
                )
            })
            .collect();
        got.sort();
        assert_eq!(got, vec![(1, 150, 4, 40, 90, 0x13), (2, 7, 1, 70, 70, 0)]);
    }

    #[test]
    fn a_cpu_that_never_stamped_first_seen_does_not_erase_it() {
        // Inserted on CPU 0; CPU 1's value started zeroed and only had
        // packets added (first seen 0): the flow's first seen is CPU 0's,
        // whichever CPU comes first.
        let inserted = stats(100, 2, 50, 60, 0);
        let added = stats(60, 3, 0, 70, 0);
        for cpus in [[inserted, added], [added, inserted]] {
            let sum = sum_stats(&cpus);
            assert_eq!((sum.packets, sum.first_seen, sum.last_seen), (5, 50, 70));
        }
    }

    #[test]
    fn per_cpu_values_sum_and_idle_cpus_are_ignored() {
        let cpus = [
            FlowStats {
                srtt_us: 500,
                srtt_read: 60,
                ..stats(100, 2, 50, 60, 0x02)
            },
            FlowStats::default(),
            FlowStats {
                srtt_us: 700,
                srtt_read: 90,
                ..stats(40, 1, 20, 90, 0x10)
            },
            stats(10, 1, 30, 95, 0x10),
        ];
        let sum = sum_stats(&cpus);
        assert_eq!(
            (sum.bytes, sum.packets, sum.first_seen, sum.last_seen),
            (150, 4, 20, 95)
        );
        assert_eq!((sum.tcp_flags, sum.syn), (0x12, 1));
        assert_eq!(sum.srtt_us, 700, "the one read last");
    }

    #[test]
    fn unread_loss_counters_repeat_the_last_ones() {
        let mut last = FlowLoss::default();
        let mut errors = 0;
        let read = FlowLoss {
            map_full_packets: 4,
            ..FlowLoss::default()
        };
        assert_eq!(latest_loss(Ok(read), &mut last, &mut errors), read);
        // Not zeros: the aggregator exports the increase of cumulative
        // counters, and zeros would count all of them again next time.
        let failed = latest_loss(Err(MapError::KeyNotFound), &mut last, &mut errors);
        assert_eq!((failed, errors), (read, 1));
    }

    fn one_flow(packets: u64, bytes: u64) -> FlowBatch {
        FlowBatch {
            flows: vec![FlowDelta::new(
                FlowKey::default(),
                stats(bytes, packets, 1, 1, 0),
            )],
            ..FlowBatch::default()
        }
    }

    fn lost(metrics: &FlowMetrics) -> (u64, u64) {
        let labels = LossLabels {
            reason: LossReason::DrainError,
        };
        (
            metrics.lost_packets.get_or_create(&labels).get(),
            metrics.lost_bytes.get_or_create(&labels).get(),
        )
    }

    #[test]
    fn stopping_drains_once_more_and_sends_that_batch() {
        let metrics = FlowMetrics::default();
        let (stop, stop_rx) = std::sync::mpsc::channel();
        let mut drains = 0;
        let mut sent = Vec::new();
        drain_loop(
            || {
                drains += 1;
                Ok(one_flow(drains, 0))
            },
            Duration::from_millis(1),
            &stop_rx,
            |batch| {
                sent.push(batch.flows[0].stats.packets);
                if sent.len() == 2 {
                    stop.send(()).unwrap();
                }
                Ok(())
            },
            &metrics,
        );
        assert_eq!(sent, vec![1, 2, 3], "the drain after the stop is sent");
        assert_eq!((lost(&metrics), metrics.drain_errors.get()), ((0, 0), 0));

        // A dropped sender stops it too, a long interval notwithstanding.
        let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
        drop(stop);
        let mut sent = 0;
        drain_loop(
            || Ok(one_flow(1, 1)),
            Duration::from_secs(3600),
            &stop_rx,
            |_| {
                sent += 1;
                Ok(())
            },
            &metrics,
        );
        assert_eq!(sent, 1);
    }

    #[test]
    fn a_batch_nobody_takes_is_counted_lost_and_a_failed_flip_as_an_error() {
        let metrics = FlowMetrics::default();
        let (_stop, stop_rx) = std::sync::mpsc::channel::<()>();
        let mut calls = 0;
        drain_loop(
            || {
                calls += 1;
                if calls == 1 {
                    Err(DrainError::Flip(MapError::KeyNotFound))
                } else {
                    Ok(one_flow(3, 300))
                }
            },
            Duration::from_millis(1),
            &stop_rx,
            |batch| Err(Box::new(batch)),
            &metrics,
        );
        assert_eq!(calls, 2, "no drain after the receiver is gone");
        assert_eq!(lost(&metrics), (3, 300));
        assert_eq!(metrics.drain_errors.get(), 2);
    }
}
