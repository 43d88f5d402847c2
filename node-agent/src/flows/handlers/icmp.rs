//! `hubble_icmp_total`: ICMP and ICMPv6 packets by family and type, with
//! Hubble's names for the types it reports.

use osprey_model::catalogue::HUBBLE_ICMP;
use std::time::Instant;

use osprey_abi::{PROTO_ICMP, PROTO_ICMPV6};
use osprey_model::SeriesStore;
use osprey_model::labels::IcmpLabels;
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::{FlowHandler, Limits, counter_store, family_name};
use crate::flows::{context::Contexts, enrich::EnrichedBatch};

/// Hubble's names for the ICMP types it reports; others by number.
fn icmp_type(v4: bool, t: u16) -> String {
    let name = match (v4, t) {
        (true, 0) | (false, 129) => "EchoReply",
        (true, 8) | (false, 128) => "EchoRequest",
        (true, 3) | (false, 1) => "DestinationUnreachable",
        (true, 11) | (false, 3) => "TimeExceeded",
        (true, 5) => "Redirect",
        (false, 2) => "PacketTooBig",
        (false, 133) => "RouterSolicitation",
        (false, 134) => "RouterAdvertisement",
        (false, 135) => "NeighborSolicitation",
        (false, 136) => "NeighborAdvertisement",
        _ => return t.to_string(),
    };
    name.to_owned()
}

pub struct Icmp {
    family: SeriesStore<IcmpLabels, Family<IcmpLabels, Counter>>,
    contexts: Contexts,
}

impl Icmp {
    pub fn register(registry: &mut Registry, contexts: Contexts, limits: &Limits) -> Self {
        Self {
            family: counter_store(registry, &HUBBLE_ICMP, limits),
            contexts,
        }
    }
}

impl FlowHandler for Icmp {
    fn handle(&mut self, batch: &EnrichedBatch, now: Instant) {
        for (flow, delta) in &batch.flows {
            if !matches!(flow.protocol_number, PROTO_ICMP | PROTO_ICMPV6) {
                continue;
            }
            self.family.record(
                IcmpLabels {
                    context: self.contexts.labels(flow),
                    family: family_name(flow.v4),
                    // The flow key's source "port" is the ICMP type.
                    r#type: icmp_type(flow.v4, flow.source.port),
                },
                now,
                |c, ()| {
                    c.inc_by(delta.stats.packets);
                },
            );
        }
        self.family.expire(now);
    }
}
