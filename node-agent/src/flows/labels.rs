//! Label sets of the flow metrics, built from kernel flow keys.

use osprey_abi::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use std::fmt::Write as _;

use super::enrich::FlowIdentity;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    ICMPv4,
    ICMPv6,
    Other,
}

impl EncodeLabelValue for Protocol {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl Protocol {
    pub fn from_number(protocol: u8) -> Self {
        match protocol {
            PROTO_TCP => Self::Tcp,
            PROTO_UDP => Self::Udp,
            PROTO_ICMP => Self::ICMPv4,
            PROTO_ICMPV6 => Self::ICMPv6,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::ICMPv4 => "ICMPv4",
            Self::ICMPv6 => "ICMPv6",
            Self::Other => "Other",
        }
    }
}

/// Where the packet was seen, from the point of view of the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }
}

impl EncodeLabelValue for Direction {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// Labels of `osprey_flow_bytes_total` / `osprey_flow_packets_total`.
/// For ICMP the ports carry type (source) and code (destination).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, EncodeLabelSet)]
pub struct FlowLabels {
    pub source_ip: String,
    pub source_port: u16,
    pub destination_ip: String,
    pub destination_port: u16,
    pub protocol: Protocol,
    pub direction: Direction,
}

impl osprey_model::Foldable for FlowLabels {
    fn overflow(&self) -> Self {
        Self {
            source_ip: osprey_model::OVERFLOW.to_owned(),
            source_port: 0,
            destination_ip: osprey_model::OVERFLOW.to_owned(),
            destination_port: 0,
            protocol: self.protocol,
            direction: self.direction,
        }
    }

    fn is_overflow(&self) -> bool {
        self.source_ip == osprey_model::OVERFLOW
    }
}

impl From<&FlowIdentity> for FlowLabels {
    fn from(flow: &FlowIdentity) -> Self {
        Self {
            source_ip: flow.source.ip.to_string(),
            source_port: flow.source.port,
            destination_ip: flow.destination.ip.to_string(),
            destination_port: flow.destination.port,
            protocol: flow.protocol,
            direction: flow.direction,
        }
    }
}

/// Keeps a client's ephemeral port out of the per-flow metric families: one
/// series per (client, server, server port) instead of one per connection.
/// A TCP or UDP port inside the local port range (ip_local_port_range) whose
/// peer port is outside it is taken for the client's and labelled 0; when
/// both or neither are inside, both are kept. Flow records keep both.
#[derive(Debug, Clone, Default)]
pub struct PortFold {
    ephemeral: Option<std::ops::RangeInclusive<u16>>,
}

impl PortFold {
    /// Folds ports in `range`.
    pub fn ephemeral(range: std::ops::RangeInclusive<u16>) -> Self {
        Self {
            ephemeral: Some(range),
        }
    }

    /// This host's local port range (Linux's default when unreadable).
    pub fn host() -> Self {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|t| {
                let mut it = t.split_whitespace().map(|v| v.parse::<u16>().ok());
                Some(it.next()??..=it.next()??)
            })
            .unwrap_or(32768..=60999);
        Self::ephemeral(range)
    }

    /// The metric labels of a flow.
    pub fn labels(&self, flow: &FlowIdentity) -> FlowLabels {
        let mut l = FlowLabels::from(flow);
        if let Some(r) = &self.ephemeral
            && matches!(l.protocol, Protocol::Tcp | Protocol::Udp)
        {
            match (r.contains(&l.source_port), r.contains(&l.destination_port)) {
                (true, false) => l.source_port = 0,
                (false, true) => l.destination_port = 0,
                _ => {}
            }
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::enrich::Enricher;
    use osprey_abi::{DIR_EGRESS, DIR_INGRESS, FAMILY_V4, FAMILY_V6, FlowKey};
    use std::net::Ipv6Addr;

    fn folded(fold: &PortFold, key: &FlowKey) -> FlowLabels {
        fold.labels(&Enricher::default().flow(key))
    }

    #[test]
    fn the_clients_ephemeral_port_folds_to_zero() {
        let fold = PortFold::ephemeral(32768..=60999);
        let mut key = FlowKey {
            src_addr: osprey_abi::addr_words(&[10, 0, 0, 1]),
            dst_addr: osprey_abi::addr_words(&[10, 0, 0, 2]),
            src_port: 40000,
            dst_port: 443,
            family: FAMILY_V4,
            protocol: PROTO_TCP,
            ..FlowKey::default()
        };
        assert_eq!(
            (
                folded(&fold, &key).source_port,
                folded(&fold, &key).destination_port
            ),
            (0, 443)
        );
        (key.src_port, key.dst_port) = (443, 40000);
        assert_eq!(folded(&fold, &key).destination_port, 0);
        assert_eq!(folded(&fold, &key).source_port, 443);
        // Both inside or both outside: kept.
        (key.src_port, key.dst_port) = (40000, 50000);
        assert_eq!(folded(&fold, &key).source_port, 40000);
        (key.src_port, key.dst_port) = (53, 80);
        assert_eq!(folded(&fold, &key).source_port, 53);
        // ICMP's "ports" are type and code.
        (key.protocol, key.src_port) = (PROTO_ICMP, 40000);
        assert_eq!(folded(&fold, &key).source_port, 40000);
        assert_eq!(
            folded(&PortFold::default(), &key),
            FlowLabels::from(&Enricher::default().flow(&key))
        );
    }

    #[test]
    fn v4_and_v6_keys_render_as_addresses() {
        let mut key = FlowKey {
            src_addr: osprey_abi::addr_words(&[10, 0, 0, 1]),
            dst_addr: osprey_abi::addr_words(&[10, 0, 0, 2]),
            cgroup_id: 7,
            src_port: 40000,
            dst_port: 80,
            family: FAMILY_V4,
            protocol: PROTO_TCP,
            direction: DIR_INGRESS,
            _pad: 0,
        };
        let labels = folded(&PortFold::default(), &key);
        assert_eq!(labels.source_ip, "10.0.0.1");
        assert_eq!(labels.destination_ip, "10.0.0.2");
        assert_eq!(labels.direction, Direction::Ingress);
        assert_eq!(labels.protocol, Protocol::Tcp);

        key.family = FAMILY_V6;
        key.protocol = PROTO_ICMPV6;
        key.direction = DIR_EGRESS;
        key.src_addr = osprey_abi::addr_words(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        let labels = folded(&PortFold::default(), &key);
        assert_eq!(labels.source_ip, "fd00::1");
        assert_eq!(labels.protocol, Protocol::ICMPv6);
        assert_eq!(labels.direction, Direction::Egress);
    }
}
