//! `osprey_tcp_connections_total{source_ip,destination_ip,destination_port,outcome}`:
//! TCP connection outcomes per socket (local → remote, local port dropped).

use osprey_model::catalogue::OSPREY_TCP_CONNECTIONS;
use std::time::Instant;

use osprey_abi::{CONN_ERROR, CONN_ESTABLISHED, CONN_REFUSED, CONN_RESET, CONN_TIMEOUT};
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use osprey_model::SeriesStore;
use osprey_model::labels::ConnLabels;

use super::{FlowHandler, Limits};
use crate::flows::enrich::EnrichedBatch;

/// The `outcome` label of a kernel connection outcome.
pub fn outcome_name(outcome: u32) -> &'static str {
    match outcome {
        CONN_ESTABLISHED => "established",
        CONN_REFUSED => "refused",
        CONN_TIMEOUT => "timeout",
        CONN_RESET => "reset",
        CONN_ERROR => "error",
        _ => "unknown",
    }
}

pub struct ConnAggregator {
    series: SeriesStore<ConnLabels, Family<ConnLabels, Counter>>,
}

impl ConnAggregator {
    pub fn register(registry: &mut Registry, limits: &Limits) -> Self {
        let family = Family::<ConnLabels, Counter>::default();
        OSPREY_TCP_CONNECTIONS.register(registry, family.clone());
        Self {
            series: limits.store(family, OSPREY_TCP_CONNECTIONS.name),
        }
    }
}

impl FlowHandler for ConnAggregator {
    fn handle(&mut self, batch: &EnrichedBatch, now: Instant) {
        for (flow, outcome, count) in &batch.connections {
            let labels = ConnLabels {
                source_ip: flow.source.ip.into(),
                destination_ip: flow.destination.ip.into(),
                destination_port: flow.destination.port,
                outcome: outcome_name(*outcome),
            };
            self.series.record(labels, now, |counter, ()| {
                counter.inc_by(*count);
            });
        }
        self.series.expire(now);
    }
}
