//! The per-CPU flow slots: the last flow of each CPU and direction, which
//! the kernel has not moved into the flow map yet. The drain reads and
//! clears the idle map's slots beside the map itself.

use aya::maps::{MapData, MapError, PerCpuArray, PerCpuValues};
use osprey_abi::{DIR_EGRESS, DIR_INGRESS, FlowKey, FlowSlots, FlowStats, flow_slot};
use tracing::warn;

/// The per-CPU flow slots, as the drain reads and clears them.
pub(super) trait Slots {
    /// Every CPU's slots of `index`.
    fn read(&self, index: u32) -> Result<Vec<FlowSlots>, MapError>;
    /// Empties `index` on every one of `cpus` CPUs.
    fn clear(&mut self, index: u32, cpus: usize) -> Result<(), MapError>;
}

impl Slots for PerCpuArray<MapData, FlowSlots> {
    fn read(&self, index: u32) -> Result<Vec<FlowSlots>, MapError> {
        Ok(self.get(&index, 0)?.iter().copied().collect())
    }

    fn clear(&mut self, index: u32, cpus: usize) -> Result<(), MapError> {
        let empty = PerCpuValues::try_from(vec![FlowSlots::default(); cpus])?;
        self.set(index, empty, 0)
    }
}

/// Reads the idle map index's per-CPU slots (the last flow of each CPU and
/// direction, not yet in the map) and clears them. Slots that cannot be
/// read, or cleared once read, are counted in `errors` and left as they are:
/// the kernel moves them to the map or adds to them, and a later drain
/// reads them, counted once.
pub(super) fn drain_slots(
    slots: &mut impl Slots,
    idle: u32,
    errors: &mut u64,
) -> Vec<(FlowKey, FlowStats)> {
    let mut out = Vec::new();
    for direction in [DIR_INGRESS, DIR_EGRESS] {
        let index = flow_slot(idle, direction);
        let cleared = slots
            .read(index)
            .and_then(|per_cpu| slots.clear(index, per_cpu.len()).map(|()| per_cpu));
        match cleared {
            Ok(per_cpu) => out.extend(
                per_cpu
                    .iter()
                    .flat_map(|s| s.ways.iter())
                    .filter(|s| s.used != 0)
                    .map(|s| (s.key, s.stats)),
            ),
            Err(e) => {
                warn!(error = %e, index, "cannot read or clear flow slots; the next drain will");
                *errors += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn stats(packets: u64) -> FlowStats {
        FlowStats {
            bytes: 100 * packets,
            packets,
            first_seen: 1,
            last_seen: 2,
            ..FlowStats::default()
        }
    }

    /// Slots in memory: index → per-CPU slots, and indexes whose read or
    /// clear fails.
    struct FakeSlots {
        slots: HashMap<u32, Vec<FlowSlots>>,
        unreadable: Vec<u32>,
        uncleared: Vec<u32>,
    }

    impl Slots for FakeSlots {
        fn read(&self, index: u32) -> Result<Vec<FlowSlots>, MapError> {
            if self.unreadable.contains(&index) {
                return Err(MapError::KeyNotFound);
            }
            Ok(self.slots[&index].clone())
        }

        fn clear(&mut self, index: u32, cpus: usize) -> Result<(), MapError> {
            if self.uncleared.contains(&index) {
                return Err(MapError::KeyNotFound);
            }
            self.slots.insert(index, vec![FlowSlots::default(); cpus]);
            Ok(())
        }
    }

    fn slots_with(port: u16, packets: u64) -> FlowSlots {
        let mut slots = FlowSlots::default();
        slots.ways[0] = osprey_abi::FlowSlot {
            key: FlowKey {
                src_port: port,
                ..FlowKey::default()
            },
            stats: stats(packets),
            used: 1,
            _pad: 0,
        };
        slots
    }

    fn fake_slots(idle: u32) -> FakeSlots {
        let ingress = flow_slot(idle, DIR_INGRESS);
        let egress = flow_slot(idle, DIR_EGRESS);
        FakeSlots {
            slots: HashMap::from([
                (ingress, vec![slots_with(1, 1), FlowSlots::default()]),
                (egress, vec![FlowSlots::default(), slots_with(2, 3)]),
            ]),
            unreadable: vec![],
            uncleared: vec![],
        }
    }

    /// One drain of `slots`: its flows (port, packets) and the errors counted.
    fn drain_once(slots: &mut FakeSlots, idle: u32) -> (Vec<(u16, u64)>, u64) {
        let mut errors = 0;
        let mut got: Vec<_> = drain_slots(slots, idle, &mut errors)
            .iter()
            .map(|(k, s)| (k.src_port, s.packets))
            .collect();
        got.sort();
        (got, errors)
    }

    #[test]
    fn slots_are_read_and_cleared() {
        let mut slots = fake_slots(1);
        assert_eq!(drain_once(&mut slots, 1), (vec![(1, 1), (2, 3)], 0));
        assert_eq!(drain_once(&mut slots, 1), (vec![], 0), "cleared");
    }

    #[test]
    fn a_slot_failure_keeps_the_other_direction_and_leaves_its_own_for_later() {
        let idle = 0;
        // Unreadable ingress: egress is still delivered.
        let mut slots = FakeSlots {
            unreadable: vec![flow_slot(idle, DIR_INGRESS)],
            ..fake_slots(idle)
        };
        assert_eq!(drain_once(&mut slots, idle), (vec![(2, 3)], 1));
        // Egress read but not cleared: not delivered (it would count twice
        // next time), left whole for the next drain.
        let mut slots = FakeSlots {
            uncleared: vec![flow_slot(idle, DIR_EGRESS)],
            ..fake_slots(idle)
        };
        assert_eq!(drain_once(&mut slots, idle), (vec![(1, 1)], 1));
        slots.uncleared.clear();
        assert_eq!(
            drain_once(&mut slots, idle),
            (vec![(2, 3)], 0),
            "read once, later"
        );
    }
}
