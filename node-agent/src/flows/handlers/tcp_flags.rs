//! `hubble_tcp_flags_total`: TCP packets by flag (SYN, SYN-ACK, FIN, RST).

use osprey_model::catalogue::HUBBLE_TCP_FLAGS;
use std::time::Instant;

use osprey_abi::PROTO_TCP;
use osprey_model::SeriesStore;
use osprey_model::labels::TcpFlagLabels;
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::{FlowHandler, Limits, counter_store, family_name};
use crate::flows::{context::Contexts, enrich::EnrichedBatch};

pub struct TcpFlags {
    family: SeriesStore<TcpFlagLabels, Family<TcpFlagLabels, Counter>>,
    contexts: Contexts,
}

impl TcpFlags {
    pub fn register(registry: &mut Registry, contexts: Contexts, limits: &Limits) -> Self {
        Self {
            family: counter_store(registry, &HUBBLE_TCP_FLAGS, limits),
            contexts,
        }
    }
}

impl FlowHandler for TcpFlags {
    fn handle(&mut self, batch: &EnrichedBatch, now: Instant) {
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
                    self.family.record(
                        TcpFlagLabels {
                            context: context.clone(),
                            flag,
                            family: family_name(flow.v4),
                        },
                        now,
                        |c, ()| {
                            c.inc_by(u64::from(n));
                        },
                    );
                }
            }
        }
        self.family.expire(now);
    }
}
