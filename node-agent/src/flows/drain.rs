//! Stage 1: drain the kernel flow maps.
//!
//! The kernel writes into the active one of two maps. Each drain flips
//! `ACTIVE_FLOW_MAP`, waits for programs that already picked the old map to
//! finish, then reads and deletes every entry of the now idle map. Nothing
//! else writes to it, so every packet is counted exactly once.

use std::time::Duration;

use std::collections::HashMap;

use aya::maps::{MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues};
use osprey_abi::{
    ConnKey, DIR_EGRESS, DIR_INGRESS, DropKey, FlowKey, FlowLoss, FlowSlots, FlowStats, flow_slot,
};

use tracing::warn;

use crate::kernel::probes::FlowMaps;

/// A program that loaded the old index finishes in microseconds; this is ample.
const FLIP_GRACE: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("cannot switch the active flow map")]
    Flip(#[source] MapError),
    #[error("cannot read the loss counters")]
    Loss(#[source] MapError),
    #[error("cannot read or clear the per-CPU flow slots")]
    Slots(#[source] MapError),
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
    /// Cumulative loss counters since the probes were loaded (summed over CPUs).
    pub loss: FlowLoss,
    /// Entries that vanished between listing and reading (should stay 0).
    pub read_errors: u64,
}

pub struct FlowDrainer {
    maps: FlowMaps,
    active: u32,
}

impl FlowDrainer {
    pub fn new(maps: FlowMaps) -> Self {
        Self { maps, active: 0 }
    }

    /// Flips the maps and drains the one the kernel was writing into.
    pub fn drain(&mut self) -> Result<FlowBatch, DrainError> {
        let idle = self.active;
        self.active = 1 - self.active;
        self.maps
            .active
            .set(0, self.active, 0)
            .map_err(DrainError::Flip)?;
        std::thread::sleep(FLIP_GRACE);

        let mut batch = FlowBatch::default();
        let flows = drain_map(
            &mut self.maps.flows[idle as usize],
            &mut batch.read_errors,
            sum_stats,
        );
        let slots = drain_slots(&mut self.maps.slots, idle).map_err(DrainError::Slots)?;
        batch.flows = merge_flows(flows, slots);
        if let Err(e) = self.maps.clock.refresh() {
            warn!(error = %e, "flow times use the previous clock sample");
        }
        for flow in &mut batch.flows {
            flow.first_seen_ns = self.maps.clock.mono_ns(flow.stats.first_seen);
            flow.last_seen_ns = self.maps.clock.mono_ns(flow.stats.last_seen);
        }
        batch.drops = drain_map(
            &mut self.maps.drops[idle as usize],
            &mut batch.read_errors,
            sum_counts,
        );
        batch.retransmits = drain_map(
            &mut self.maps.retransmits[idle as usize],
            &mut batch.read_errors,
            sum_counts,
        );
        batch.connections = drain_map(
            &mut self.maps.connections[idle as usize],
            &mut batch.read_errors,
            sum_counts,
        );
        let loss = self.maps.loss.get(&0, 0).map_err(DrainError::Loss)?;
        batch.loss = sum_loss(loss.iter());
        Ok(batch)
    }
}

/// Reads the idle map index's per-CPU slots (the last flow of each CPU and
/// direction, not yet in the map) and clears them.
fn drain_slots(
    slots: &mut PerCpuArray<MapData, FlowSlots>,
    idle: u32,
) -> Result<Vec<(FlowKey, FlowStats)>, MapError> {
    let mut out = Vec::new();
    for direction in [DIR_INGRESS, DIR_EGRESS] {
        let index = flow_slot(idle, direction);
        let per_cpu = slots.get(&index, 0)?;
        let cpus = per_cpu.len();
        out.extend(
            per_cpu
                .iter()
                .flat_map(|s| s.ways.iter())
                .filter(|s| s.used != 0)
                .map(|s| (s.key, s.stats)),
        );
        let empty = PerCpuValues::try_from(vec![FlowSlots::default(); cpus])?;
        slots.set(index, empty, 0)?;
    }
    Ok(out)
}

/// The map's flows with the slots' added: one delta per flow.
fn merge_flows(
    flows: Vec<(FlowKey, FlowStats)>,
    slots: Vec<(FlowKey, FlowStats)>,
) -> Vec<FlowDelta> {
    if slots.is_empty() {
        return flows
            .into_iter()
            .map(|(key, stats)| FlowDelta::new(key, stats))
            .collect();
    }
    let mut by_key: HashMap<FlowKey, FlowStats> = flows.into_iter().collect();
    for (key, stats) in slots {
        by_key
            .entry(key)
            .and_modify(|s| *s = sum_stats(&[*s, stats]))
            .or_insert(stats);
    }
    by_key
        .into_iter()
        .map(|(key, stats)| FlowDelta::new(key, stats))
        .collect()
}

/// Reads and deletes every entry of a per-CPU map, folding each entry's
/// per-CPU values with `fold`. Nothing writes to the idle map, so read and
/// delete lose nothing. In a few batch calls where the kernel has them;
/// else key by key, where an entry that cannot be read or removed is
/// counted in `errors` (one that stays is read again next time round).
fn drain_map<K: aya::Pod, V: aya::Pod>(
    map: &mut PerCpuHashMap<MapData, K, V>,
    errors: &mut u64,
    fold: impl Fn(&[V]) -> V,
) -> Vec<(K, V)> {
    use aya::maps::IterableMap;
    use std::os::fd::AsFd;
    static NO_BATCH: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !NO_BATCH.load(std::sync::atomic::Ordering::Relaxed)
        && let Ok(cpus) = aya::util::nr_cpus()
    {
        match crate::kernel::batch::drain_per_cpu_hash(map.map().fd().as_fd(), cpus, &fold) {
            Ok(out) => return out,
            Err(e) => {
                warn!(error = %e, "no batch map operations in this kernel: draining key by key");
                NO_BATCH.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    let keys: Vec<K> = map.keys().filter_map(Result::ok).collect();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        match map.get(&key, 0) {
            Ok(per_cpu) => out.push((key, fold(&per_cpu))),
            Err(_) => *errors += 1,
        }
        if map.remove(&key).is_err() {
            *errors += 1;
        }
    }
    out
}

fn sum_counts(cpus: &[u64]) -> u64 {
    cpus.iter().sum()
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
            first_seen: if acc.first_seen == 0 {
                s.first_seen
            } else {
                acc.first_seen.min(s.first_seen)
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
        let merged = merge_flows(
            vec![(key(1), stats(100, 2, 50, 60, 0x02))],
            vec![
                (key(1), stats(40, 1, 40, 90, 0x10)),
                (key(2), stats(7, 1, 70, 70, 0)),
                (key(1), stats(10, 1, 80, 80, 0x01)),
            ],
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
}
