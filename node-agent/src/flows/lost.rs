//! `hubble_lost_events_total{source}`: Hubble's one family for flow events
//! lost on the way, read at scrape time from Osprey's own loss counters
//! (which keep the detail):
//! - `perf_event_ring_buffer`: lost in the kernel — packets of new flows
//!   that found the flow map full, drop / retransmit / connection events that
//!   found their map full, DNS messages that found the ring buffer full;
//! - `observer_events_queue`: DNS events lost in the channel to the tracker;
//! - `hubble_ring_buffer`: flow records a live follower (`observe --follow`,
//!   the flow log) missed because it fell behind.

use osprey_model::{
    catalogue::HUBBLE_LOST_EVENTS,
    labels::{LossLabels, LossReason, LostEventsLabels, LostEventsSource, ProbeLabels},
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::{MetricType, counter::Counter, family::Family},
};

/// The probes whose lost events `osprey_probe_lost_events_total` counts.
const PROBES: [&str; 4] = ["drops", "retransmits", "connections", "dns"];

#[derive(Debug, Clone)]
pub struct HubbleLostEvents {
    pub flow_lost_packets: Family<LossLabels, Counter>,
    pub probe_lost_events: Family<ProbeLabels, Counter>,
    pub dns_queue: Counter,
    pub followers: Counter,
}

impl HubbleLostEvents {
    fn kernel(&self) -> u64 {
        let map_full = self
            .flow_lost_packets
            .get(&LossLabels {
                reason: LossReason::MapFull,
            })
            .map_or(0, |c| c.get());
        let probes: u64 = PROBES
            .iter()
            .filter_map(|probe| self.probe_lost_events.get(&ProbeLabels { probe }))
            .map(|c| c.get())
            .sum();
        map_full + probes
    }
}

impl Collector for HubbleLostEvents {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = HUBBLE_LOST_EVENTS.encode_descriptor(&mut encoder, MetricType::Counter)?;
        for (source, value) in [
            (LostEventsSource::PerfEventRingBuffer, self.kernel()),
            (LostEventsSource::ObserverEventsQueue, self.dns_queue.get()),
            (LostEventsSource::HubbleRingBuffer, self.followers.get()),
        ] {
            family
                .encode_family(&LostEventsLabels { source })?
                .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_kernel_losses_per_source() {
        let lost = HubbleLostEvents {
            flow_lost_packets: Family::default(),
            probe_lost_events: Family::default(),
            dns_queue: Counter::default(),
            followers: Counter::default(),
        };
        lost.flow_lost_packets
            .get_or_create(&LossLabels {
                reason: LossReason::MapFull,
            })
            .inc_by(5);
        lost.flow_lost_packets
            .get_or_create(&LossLabels {
                reason: LossReason::Unparsed,
            })
            .inc_by(100);
        lost.probe_lost_events
            .get_or_create(&ProbeLabels { probe: "dns" })
            .inc_by(2);
        lost.followers.inc_by(7);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(lost));
        let text = crate::test_support::exposition(&registry);
        for want in [
            "hubble_lost_events_total{source=\"perf_event_ring_buffer\"} 7",
            "hubble_lost_events_total{source=\"observer_events_queue\"} 0",
            "hubble_lost_events_total{source=\"hubble_ring_buffer\"} 7",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }
}
