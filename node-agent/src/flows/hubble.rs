//! Hubble's flow-derived metric families, with Hubble's names, labels and
//! meaning: `hubble_flows_processed_total`, `hubble_tcp_flags_total`,
//! `hubble_icmp_total`. One Hubble flow event is one packet at an observation
//! point; here the observation points are socket ingress and egress.

use osprey_abi::{FAMILY_V4, FlowStats, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP};
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::{
    context::{ContextLabels, Contexts},
    drain::FlowDelta,
    labels::{Direction, FlowLabels, Protocol},
};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowsProcessedLabels {
    pub context: ContextLabels,
    pub protocol: Protocol,
    pub r#type: &'static str,
    pub subtype: &'static str,
    pub verdict: &'static str,
}
crate::labels_with_context!(FlowsProcessedLabels { protocol => "protocol", r#type => "type", subtype => "subtype", verdict => "verdict" });

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TcpFlagLabels {
    pub context: ContextLabels,
    pub flag: &'static str,
    pub family: &'static str,
}
crate::labels_with_context!(TcpFlagLabels { flag => "flag", family => "family" });

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IcmpLabels {
    pub context: ContextLabels,
    pub family: &'static str,
    pub r#type: String,
}
crate::labels_with_context!(IcmpLabels { family => "family", r#type => "type" });

#[derive(Clone, Default)]
pub struct HubbleFlowMetrics {
    pub flows_processed: Family<FlowsProcessedLabels, Counter>,
    pub tcp_flags: Family<TcpFlagLabels, Counter>,
    pub icmp: Family<IcmpLabels, Counter>,
    pub contexts: Contexts,
}

fn family_name(family: u8) -> &'static str {
    if family == FAMILY_V4 { "IPv4" } else { "IPv6" }
}

/// Hubble's names for the ICMP types it reports; others by number.
fn icmp_type(family: u8, t: u16) -> String {
    let name = match (family == FAMILY_V4, t) {
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

impl HubbleFlowMetrics {
    pub fn register(registry: &mut Registry, contexts: Contexts) -> Self {
        let m = Self {
            contexts,
            ..Self::default()
        };
        registry.register(
            "hubble_flows_processed",
            "Flow events (packets at an observation point) processed, as Hubble counts them",
            m.flows_processed.clone(),
        );
        registry.register(
            "hubble_tcp_flags",
            "TCP packets by flag (SYN, SYN-ACK, FIN, RST)",
            m.tcp_flags.clone(),
        );
        registry.register(
            "hubble_icmp",
            "ICMP and ICMPv6 packets by family and type",
            m.icmp.clone(),
        );
        m
    }

    pub fn observe(&self, delta: &FlowDelta, labels: &FlowLabels) {
        let s: &FlowStats = &delta.stats;
        let context = self.context_of(labels);
        let subtype = match labels.direction {
            Direction::Ingress => "to-endpoint",
            Direction::Egress => "from-endpoint",
        };
        self.flows_processed
            .get_or_create(&FlowsProcessedLabels {
                context: context.clone(),
                protocol: labels.protocol,
                r#type: "Trace",
                subtype,
                verdict: "FORWARDED",
            })
            .inc_by(s.packets);
        let family = family_name(delta.key.family);
        match delta.key.protocol {
            PROTO_TCP => {
                for (flag, n) in [
                    ("SYN", s.syn),
                    ("SYN-ACK", s.syn_ack),
                    ("FIN", s.fin),
                    ("RST", s.rst),
                ] {
                    if n > 0 {
                        self.tcp_flags
                            .get_or_create(&TcpFlagLabels {
                                context: context.clone(),
                                flag,
                                family,
                            })
                            .inc_by(u64::from(n));
                    }
                }
            }
            PROTO_ICMP | PROTO_ICMPV6 => {
                self.icmp
                    .get_or_create(&IcmpLabels {
                        context,
                        family,
                        r#type: icmp_type(delta.key.family, delta.key.src_port),
                    })
                    .inc_by(s.packets);
            }
            _ => {}
        }
    }

    /// The context labels of a flow.
    pub fn context_of(&self, labels: &FlowLabels) -> ContextLabels {
        self.contexts
            .labels(&labels.source_ip, &labels.destination_ip)
    }

    /// Drops are flow events too, with verdict DROPPED.
    pub fn observe_drops(&self, context: ContextLabels, protocol: Protocol, count: u64) {
        self.flows_processed
            .get_or_create(&FlowsProcessedLabels {
                context,
                protocol,
                r#type: "Drop",
                subtype: "",
                verdict: "DROPPED",
            })
            .inc_by(count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use osprey_abi::{DIR_EGRESS, FAMILY_V6, FlowKey, addr_words};

    #[test]
    fn counts_flags_icmp_types_and_processed_flows_under_hubble_names() {
        let mut registry = Registry::default();
        let m = HubbleFlowMetrics::register(&mut registry, Contexts::default());
        let key = |protocol, family, src_port| FlowKey {
            src_addr: addr_words(&[10, 0, 0, 1]),
            dst_addr: addr_words(&[10, 0, 0, 2]),
            cgroup_id: 0,
            src_port,
            dst_port: 0,
            family,
            protocol,
            direction: DIR_EGRESS,
            _pad: 0,
        };
        let tcp = FlowDelta {
            key: key(PROTO_TCP, FAMILY_V4, 80),
            stats: FlowStats {
                packets: 10,
                syn: 1,
                fin: 1,
                ..FlowStats::default()
            },
            ..FlowDelta::default()
        };
        let ping6 = FlowDelta {
            key: key(PROTO_ICMPV6, FAMILY_V6, 128),
            stats: FlowStats {
                packets: 3,
                ..FlowStats::default()
            },
            ..FlowDelta::default()
        };
        for d in [&tcp, &ping6] {
            m.observe(d, &FlowLabels::from(&d.key));
        }
        let text = crate::test_support::exposition(&registry);
        for line in [
            "hubble_tcp_flags_total{flag=\"SYN\",family=\"IPv4\"} 1",
            "hubble_tcp_flags_total{flag=\"FIN\",family=\"IPv4\"} 1",
            "hubble_icmp_total{family=\"IPv6\",type=\"EchoRequest\"} 3",
            "hubble_flows_processed_total{protocol=\"TCP\",type=\"Trace\",subtype=\"from-endpoint\",verdict=\"FORWARDED\"} 10",
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
        assert!(!text.contains("flag=\"RST\""));
    }
}
