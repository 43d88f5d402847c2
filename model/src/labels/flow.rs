//! Label sets of the `osprey_*` flow families: per flow, per dropped flow, per
//! retransmitting flow, per connection outcome, and the loss counters. The
//! per-flow sets fold into their overflow form under a series budget:
//! addresses become `overflow`, ports 0, and the low-cardinality labels stay
//! so totals still add up.

use std::{fmt::Write as _, net::IpAddr};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

use crate::{Foldable, OVERFLOW};

/// The `protocol` label: the transport as Hubble names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    ICMPv4,
    ICMPv6,
    Other,
}

impl Protocol {
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

impl EncodeLabelValue for Protocol {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
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

/// An address label (`source_ip`, `destination_ip`): the address, an IPv6
/// range that names a link rather than an endpoint (`fe80::/10`,
/// `ff00::/8`), or `overflow` in a series folded by its budget. Kept as an address, hashed
/// and compared as one, and written out as text only when rendered: a live
/// series is looked up once per drain, and formatting both addresses of
/// every flow took 5 % of the agent's CPU at 10k flows/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Address {
    Ip(IpAddr),
    /// A range in CIDR notation.
    Range(&'static str),
    Overflow,
}

impl Address {
    /// The address, or its range when it names a link rather than an
    /// endpoint: IPv6 link-local unicast (`fe80::/10`: every interface has
    /// one, a pod's veth pair two, so each pod start would add series of
    /// neighbour discovery) and multicast (`ff00::/8`: a solicited-node
    /// group per address).
    pub fn endpoint(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V6(v6) if v6.is_unicast_link_local() => Self::Range(LINK_LOCAL_V6),
            IpAddr::V6(v6) if v6.is_multicast() => Self::Range(MULTICAST_V6),
            ip => Self::Ip(ip),
        }
    }
}

/// IPv6 link-local unicast, as an [`Address::Range`].
pub const LINK_LOCAL_V6: &str = "fe80::/10";
/// IPv6 multicast, as an [`Address::Range`].
pub const MULTICAST_V6: &str = "ff00::/8";

impl From<IpAddr> for Address {
    fn from(ip: IpAddr) -> Self {
        Self::Ip(ip)
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Range(range) => f.write_str(range),
            Self::Overflow => f.write_str(OVERFLOW),
        }
    }
}

/// As rendered: `"10.0.0.1"`, `"fd00::1"`, `"fe80::/10"` or `"overflow"`.
impl PartialEq<&str> for Address {
    fn eq(&self, other: &&str) -> bool {
        match self {
            Self::Ip(ip) => other.parse::<IpAddr>() == Ok(*ip),
            Self::Range(range) => other == range,
            Self::Overflow => *other == OVERFLOW,
        }
    }
}

impl EncodeLabelValue for Address {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        write!(encoder, "{self}")
    }
}

/// Labels of `osprey_flow_bytes_total` / `osprey_flow_packets_total`.
/// For ICMP the ports carry type (source) and code (destination).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, EncodeLabelSet)]
pub struct FlowLabels {
    pub source_ip: Address,
    pub source_port: u16,
    pub destination_ip: Address,
    pub destination_port: u16,
    pub protocol: Protocol,
    pub direction: Direction,
}

impl Foldable for FlowLabels {
    fn overflow(&self) -> Self {
        Self {
            source_ip: Address::Overflow,
            source_port: 0,
            destination_ip: Address::Overflow,
            destination_port: 0,
            protocol: self.protocol,
            direction: self.direction,
        }
    }

    fn is_overflow(&self) -> bool {
        self.source_ip == Address::Overflow
    }
}

/// `osprey_flow_drops_total`: the flow the dropped packet belonged to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DropLabels {
    pub source_ip: Address,
    pub source_port: u16,
    pub destination_ip: Address,
    pub destination_port: u16,
    pub protocol: Protocol,
    pub reason: String,
}

impl Foldable for DropLabels {
    fn overflow(&self) -> Self {
        Self {
            source_ip: Address::Overflow,
            source_port: 0,
            destination_ip: Address::Overflow,
            destination_port: 0,
            protocol: self.protocol,
            reason: self.reason.clone(),
        }
    }

    fn is_overflow(&self) -> bool {
        self.source_ip == Address::Overflow
    }
}

/// `osprey_drops_ignored_total`: drops whose reason the config ignores, by
/// reason and the kernel function that freed them (a few dozen at most).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
    pub location: String,
}

/// `osprey_tcp_retransmits_total`: the retransmitting flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RetransmitLabels {
    pub source_ip: Address,
    pub source_port: u16,
    pub destination_ip: Address,
    pub destination_port: u16,
}

impl Foldable for RetransmitLabels {
    fn overflow(&self) -> Self {
        Self {
            source_ip: Address::Overflow,
            source_port: 0,
            destination_ip: Address::Overflow,
            destination_port: 0,
        }
    }

    fn is_overflow(&self) -> bool {
        self.source_ip == Address::Overflow
    }
}

/// `osprey_tcp_connections_total`: local → remote (the local port dropped)
/// and the outcome (`established`, `refused`, `timeout`, `reset`, `error`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ConnLabels {
    pub source_ip: Address,
    pub destination_ip: Address,
    pub destination_port: u16,
    pub outcome: &'static str,
}

impl Foldable for ConnLabels {
    fn overflow(&self) -> Self {
        Self {
            source_ip: Address::Overflow,
            destination_ip: Address::Overflow,
            destination_port: 0,
            outcome: self.outcome,
        }
    }

    fn is_overflow(&self) -> bool {
        self.source_ip == Address::Overflow
    }
}

/// `osprey_probe_lost_events_total`: the probe whose kernel map was full.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProbeLabels {
    pub probe: &'static str,
}

/// Why the flow probe could not account a packet to a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LossReason {
    /// A new flow found the kernel flow map full.
    MapFull,
    /// The packet's headers could not be parsed (truncated, unknown family).
    Unparsed,
    /// Drained from the kernel but never applied: the aggregation stage was
    /// gone when the drain sent its batch.
    DrainError,
}

impl EncodeLabelValue for LossReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::MapFull => "map_full",
            Self::Unparsed => "unparsed",
            Self::DrainError => "drain_error",
        })
    }
}

/// `osprey_flow_lost_packets_total` / `osprey_flow_lost_bytes_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LossLabels {
    pub reason: LossReason,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_flow_labels_fold_addresses_and_ports_and_keep_the_rest() {
        let flow = FlowLabels {
            source_ip: Address::Ip([10, 0, 0, 1].into()),
            source_port: 40000,
            destination_ip: Address::Ip([10, 0, 0, 2].into()),
            destination_port: 443,
            protocol: Protocol::Tcp,
            direction: Direction::Egress,
        };
        let folded = flow.overflow();
        assert!(!flow.is_overflow());
        assert!(folded.is_overflow());
        assert_eq!(
            (
                folded.source_ip.to_string().as_str(),
                folded.source_port,
                folded.destination_ip.to_string().as_str(),
                folded.destination_port
            ),
            (OVERFLOW, 0, OVERFLOW, 0)
        );
        assert_eq!(
            (folded.protocol, folded.direction),
            (Protocol::Tcp, Direction::Egress)
        );
        let conn = ConnLabels {
            source_ip: Address::Ip([10, 0, 0, 1].into()),
            destination_ip: Address::Ip([10, 0, 0, 2].into()),
            destination_port: 443,
            outcome: "refused",
        }
        .overflow();
        assert!(conn.is_overflow());
        assert_eq!(conn.outcome, "refused");
    }
}
