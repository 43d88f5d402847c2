//! `hubble_flows_processed_total`: flow events (packets at an observation
//! point) as Hubble counts them. Here the observation points are socket
//! ingress and egress; drops are flow events too, with verdict DROPPED.

use osprey_model::catalogue::HUBBLE_FLOWS_PROCESSED;
use std::time::Instant;

use osprey_model::SeriesStore;
use osprey_model::labels::{Direction, FlowsProcessedLabels};
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::{FlowHandler, Limits, counter_store};
use crate::flows::{context::Contexts, enrich::EnrichedBatch};

pub struct FlowsProcessed {
    family: SeriesStore<FlowsProcessedLabels, Family<FlowsProcessedLabels, Counter>>,
    contexts: Contexts,
}

impl FlowsProcessed {
    pub fn register(registry: &mut Registry, contexts: Contexts, limits: &Limits) -> Self {
        Self {
            family: counter_store(registry, &HUBBLE_FLOWS_PROCESSED, limits),
            contexts,
        }
    }
}

impl FlowHandler for FlowsProcessed {
    fn handle(&mut self, batch: &EnrichedBatch, now: Instant) {
        for (flow, delta) in &batch.flows {
            let subtype = match flow.direction {
                Direction::Ingress => "to-endpoint",
                Direction::Egress => "from-endpoint",
            };
            self.family.record(
                FlowsProcessedLabels {
                    context: self.contexts.labels(flow),
                    protocol: flow.protocol,
                    r#type: "Trace",
                    subtype,
                    verdict: "FORWARDED",
                },
                now,
                |c, ()| {
                    c.inc_by(delta.stats.packets);
                },
            );
        }
        for drop in batch.drops.iter().filter(|d| !d.ignored) {
            self.family.record(
                FlowsProcessedLabels {
                    context: self.contexts.labels(&drop.flow),
                    protocol: drop.flow.protocol,
                    r#type: "Drop",
                    subtype: "",
                    verdict: "DROPPED",
                },
                now,
                |c, ()| {
                    c.inc_by(drop.packets);
                },
            );
        }
        self.family.expire(now);
    }
}
