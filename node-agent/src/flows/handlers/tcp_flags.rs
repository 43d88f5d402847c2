//! `hubble_tcp_flags_total`: TCP packets by flag (SYN, SYN-ACK, FIN, RST).

use osprey_model::catalogue::HUBBLE_TCP_FLAGS;
use std::time::Instant;

use osprey_abi::PROTO_TCP;
use osprey_model::labels::TcpFlagLabels;
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::{FlowHandler, family_name};
use crate::flows::{context::Contexts, enrich::EnrichedBatch};

pub struct TcpFlags {
    family: Family<TcpFlagLabels, Counter>,
    contexts: Contexts,
}

impl TcpFlags {
    pub fn register(registry: &mut Registry, contexts: Contexts) -> Self {
        let family = Family::default();
        HUBBLE_TCP_FLAGS.register(registry, family.clone());
        Self { family, contexts }
    }
}

impl FlowHandler for TcpFlags {
    fn handle(&mut self, batch: &EnrichedBatch, _now: Instant) {
        for (flow, delta) in &batch.flows {
            if flow.protocol_number != PROTO_TCP {
                continue;
            }
            let s = &delta.stats;
            let context = self.contexts.labels(flow);
            for (flag, n) in [
                ("SYN", s.syn),
                ("SYN-ACK", s.syn_ack),
                ("FIN", s.fin),
                ("RST", s.rst),
            ] {
                if n > 0 {
                    self.family
                        .get_or_create(&TcpFlagLabels {
                            context: context.clone(),
                            flag,
                            family: family_name(flow.v4),
                        })
                        .inc_by(u64::from(n));
                }
            }
        }
    }
}
