//! `osprey_probe_lost_events_total{probe}`: events a probe could not record
//! because its kernel map (or ring buffer) was full. The kernel's counters
//! are cumulative; their increase is exported.

use osprey_model::catalogue::OSPREY_PROBE_LOST_EVENTS;
use std::time::Instant;

use osprey_abi::FlowLoss;
use osprey_model::labels::ProbeLabels;
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::FlowHandler;
use crate::flows::enrich::EnrichedBatch;

pub struct ProbeLoss {
    family: Family<ProbeLabels, Counter>,
    seen: FlowLoss,
}

impl ProbeLoss {
    pub fn register(registry: &mut Registry) -> Self {
        let family = Family::default();
        OSPREY_PROBE_LOST_EVENTS.register(registry, family.clone());
        Self {
            family,
            seen: FlowLoss::default(),
        }
    }

    /// The family, for `hubble_lost_events_total` (read at scrape time).
    pub fn family(&self) -> Family<ProbeLabels, Counter> {
        self.family.clone()
    }
}

impl FlowHandler for ProbeLoss {
    fn handle(&mut self, batch: &EnrichedBatch, _now: Instant) {
        let (loss, seen) = (&batch.loss, self.seen);
        for (probe, now_count, before) in [
            ("drops", loss.drop_map_full, seen.drop_map_full),
            (
                "retransmits",
                loss.retransmit_map_full,
                seen.retransmit_map_full,
            ),
            ("connections", loss.conn_map_full, seen.conn_map_full),
            ("dns", loss.dns_ring_full, seen.dns_ring_full),
            ("http", loss.http_ring_full, seen.http_ring_full),
        ] {
            self.family
                .get_or_create(&ProbeLabels { probe })
                .inc_by(now_count.saturating_sub(before));
        }
        self.seen = batch.loss;
    }
}
