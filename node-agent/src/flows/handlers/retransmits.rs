//! `osprey_tcp_retransmits_total`: TCP retransmissions per flow, as the
//! retransmitting socket sees it (tcp:tcp_retransmit_skb).

use osprey_model::catalogue::OSPREY_TCP_RETRANSMITS;
use std::time::Instant;

use osprey_model::SeriesStore;
use osprey_model::exemplar::{self, LastTrace, TracedCounter};
use osprey_model::labels::RetransmitLabels;
use prometheus_client::{metrics::family::Family, registry::Registry};

use super::{FlowHandler, Limits};
use crate::flows::{enrich::EnrichedBatch, labels::PortFold};

pub struct Retransmits {
    series: SeriesStore<RetransmitLabels, Family<RetransmitLabels, TracedCounter>, LastTrace>,
    ports: PortFold,
}

impl Retransmits {
    pub fn register(registry: &mut Registry, ports: PortFold, limits: &Limits) -> Self {
        let family = Family::default();
        OSPREY_TCP_RETRANSMITS.register(registry, family.clone());
        Self {
            series: limits.store(family, OSPREY_TCP_RETRANSMITS.name),
            ports,
        }
    }
}

impl FlowHandler for Retransmits {
    fn handle(&mut self, batch: &EnrichedBatch, now: Instant) {
        for (identity, count) in &batch.retransmits {
            let flow = self.ports.labels(identity);
            let labels = RetransmitLabels {
                source_ip: flow.source_ip,
                source_port: flow.source_port,
                destination_ip: flow.destination_ip,
                destination_port: flow.destination_port,
            };
            self.series.record(labels, now, |counter, last| {
                exemplar::inc(counter, *count, identity.trace.as_ref(), last);
            });
        }
        self.series.expire(now);
    }
}
