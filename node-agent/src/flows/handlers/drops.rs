//! Drops with the kernel's reason: `hubble_drop_total` (Hubble's labels and
//! context options), `osprey_flow_drops_total` (the flow the dropped packet
//! belonged to), and `osprey_drops_ignored_total` (reasons the config
//! ignores: counted there only).

use osprey_model::catalogue::{HUBBLE_DROP, OSPREY_DROPS_IGNORED, OSPREY_FLOW_DROPS};
use std::time::Instant;

use osprey_model::SeriesStore;
use osprey_model::exemplar::{self, LastTrace, TracedCounter};
use osprey_model::labels::{DropLabels, HubbleDropLabels, ReasonLabels};
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::{FlowHandler, Limits};
use crate::flows::{context::Contexts, enrich::EnrichedBatch, labels::PortFold};

pub struct Drops {
    hubble: SeriesStore<HubbleDropLabels, Family<HubbleDropLabels, TracedCounter>>,
    flows: SeriesStore<DropLabels, Family<DropLabels, TracedCounter>, LastTrace>,
    ignored: Family<ReasonLabels, Counter>,
    contexts: Contexts,
    ports: PortFold,
}

impl Drops {
    pub fn register(
        registry: &mut Registry,
        contexts: Contexts,
        ports: PortFold,
        limits: &Limits,
    ) -> Self {
        let hubble = Family::default();
        HUBBLE_DROP.register(registry, hubble.clone());
        let flows = Family::default();
        OSPREY_FLOW_DROPS.register(registry, flows.clone());
        let ignored = Family::default();
        OSPREY_DROPS_IGNORED.register(registry, ignored.clone());
        Self {
            hubble: limits.store(hubble, HUBBLE_DROP.name),
            flows: limits.store(flows, OSPREY_FLOW_DROPS.name),
            ignored,
            contexts,
            ports,
        }
    }
}

impl FlowHandler for Drops {
    fn handle(&mut self, batch: &EnrichedBatch, now: Instant) {
        for drop in &batch.drops {
            let count = drop.packets;
            if drop.ignored {
                self.ignored
                    .get_or_create(&ReasonLabels {
                        reason: drop.reason.clone(),
                        location: drop.location.to_string(),
                    })
                    .inc_by(count);
                continue;
            }
            let flow = self.ports.labels(&drop.flow);
            // Hubble's family keeps no series state: its exemplar is the
            // latest counted drop's trace, none if that had none.
            let at = drop
                .flow
                .trace
                .as_ref()
                .map(|_| std::time::SystemTime::now());
            let hubble = HubbleDropLabels {
                context: self.contexts.labels(&drop.flow),
                reason: drop.reason.clone(),
                protocol: flow.protocol,
            };
            self.hubble.record(hubble, now, |c, ()| {
                c.inc_by(count, drop.flow.trace.clone(), at);
            });
            let labels = DropLabels {
                source_ip: flow.source_ip,
                source_port: flow.source_port,
                destination_ip: flow.destination_ip,
                destination_port: flow.destination_port,
                protocol: flow.protocol,
                reason: drop.reason.clone(),
            };
            self.flows.record(labels, now, |counter, last| {
                exemplar::inc(counter, count, drop.flow.trace.as_ref(), last);
            });
        }
        self.flows.expire(now);
        self.hubble.expire(now);
    }
}
