//! Drops with the kernel's reason: `hubble_drop_total` (Hubble's labels and
//! context options), `osprey_flow_drops_total` (the flow the dropped packet
//! belonged to), and `osprey_drops_ignored_total` (reasons the config
//! ignores: counted there only).

use osprey_model::catalogue::{HUBBLE_DROP, OSPREY_DROPS_IGNORED, OSPREY_FLOW_DROPS};
use std::time::{Duration, Instant};

use osprey_model::{BudgetMetrics, Foldable, OVERFLOW, SeriesBudget, SeriesStore};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::FlowHandler;
use crate::flows::{
    context::{ContextLabels, Contexts},
    enrich::EnrichedBatch,
    labels::{PortFold, Protocol},
};

/// `hubble_drop_total` labels, as Hubble's drop handler has them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HubbleDropLabels {
    pub context: ContextLabels,
    pub reason: String,
    pub protocol: Protocol,
}
crate::labels_with_context!(HubbleDropLabels { reason => "reason", protocol => "protocol" });

/// `osprey_flow_drops_total`: the flow the dropped packet belonged to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DropLabels {
    pub source_ip: String,
    pub source_port: u16,
    pub destination_ip: String,
    pub destination_port: u16,
    pub protocol: Protocol,
    pub reason: String,
}

impl Foldable for DropLabels {
    fn overflow(&self) -> Self {
        Self {
            source_ip: OVERFLOW.to_owned(),
            source_port: 0,
            destination_ip: OVERFLOW.to_owned(),
            destination_port: 0,
            protocol: self.protocol,
            reason: self.reason.clone(),
        }
    }

    fn is_overflow(&self) -> bool {
        self.source_ip == OVERFLOW
    }
}

/// `osprey_drops_ignored_total`: drops whose reason the config ignores.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

pub struct Drops {
    hubble: Family<HubbleDropLabels, Counter>,
    flows: SeriesStore<DropLabels, Family<DropLabels, Counter>>,
    ignored: Family<ReasonLabels, Counter>,
    contexts: Contexts,
    ports: PortFold,
}

impl Drops {
    pub fn register(
        registry: &mut Registry,
        contexts: Contexts,
        ports: PortFold,
        idle_ttl: Duration,
        series_budget: usize,
        budgets: &BudgetMetrics,
    ) -> Self {
        let hubble = Family::default();
        HUBBLE_DROP.register(registry, hubble.clone());
        let flows = Family::default();
        OSPREY_FLOW_DROPS.register(registry, flows.clone());
        let ignored = Family::default();
        OSPREY_DROPS_IGNORED.register(registry, ignored.clone());
        Self {
            hubble,
            flows: SeriesStore::new(
                flows,
                SeriesBudget::new("osprey_flow_drops", series_budget, budgets),
                idle_ttl,
            ),
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
                    })
                    .inc_by(count);
                continue;
            }
            let flow = self.ports.labels(&drop.flow);
            self.hubble
                .get_or_create(&HubbleDropLabels {
                    context: self.contexts.labels(&drop.flow),
                    reason: drop.reason.clone(),
                    protocol: flow.protocol,
                })
                .inc_by(count);
            let labels = DropLabels {
                source_ip: flow.source_ip,
                source_port: flow.source_port,
                destination_ip: flow.destination_ip,
                destination_port: flow.destination_port,
                protocol: flow.protocol,
                reason: drop.reason.clone(),
            };
            self.flows.record(labels, now, |family, labels, ()| {
                family.get_or_create(labels).inc_by(count);
            });
        }
        self.flows.expire(now);
    }
}
