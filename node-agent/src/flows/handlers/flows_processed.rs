//! `hubble_flows_processed_total`: flow events (packets at an observation
//! point) as Hubble counts them. Here the observation points are socket
//! ingress and egress; drops are flow events too, with verdict DROPPED.

use osprey_model::catalogue::HUBBLE_FLOWS_PROCESSED;
use std::time::Instant;

use osprey_model::labels::{Direction, FlowsProcessedLabels};
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::FlowHandler;
use crate::flows::{context::Contexts, enrich::EnrichedBatch};

pub struct FlowsProcessed {
    family: Family<FlowsProcessedLabels, Counter>,
    contexts: Contexts,
}

impl FlowsProcessed {
    pub fn register(registry: &mut Registry, contexts: Contexts) -> Self {
        let family = Family::default();
        HUBBLE_FLOWS_PROCESSED.register(registry, family.clone());
        Self { family, contexts }
    }
}

impl FlowHandler for FlowsProcessed {
    fn handle(&mut self, batch: &EnrichedBatch, _now: Instant) {
        for (flow, delta) in &batch.flows {
            let subtype = match flow.direction {
                Direction::Ingress => "to-endpoint",
                Direction::Egress => "from-endpoint",
            };
            self.family
                .get_or_create(&FlowsProcessedLabels {
                    context: self.contexts.labels(flow),
                    protocol: flow.protocol,
                    r#type: "Trace",
                    subtype,
                    verdict: "FORWARDED",
                })
                .inc_by(delta.stats.packets);
        }
        for drop in batch.drops.iter().filter(|d| !d.ignored) {
            self.family
                .get_or_create(&FlowsProcessedLabels {
                    context: self.contexts.labels(&drop.flow),
                    protocol: drop.flow.protocol,
                    r#type: "Drop",
                    subtype: "",
                    verdict: "DROPPED",
                })
                .inc_by(drop.packets);
        }
    }
}
