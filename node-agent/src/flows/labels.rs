//! Label sets of the flow metrics, built from kernel flow keys.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use osprey_abi::{DIR_EGRESS, FAMILY_V4, FlowKey, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use std::fmt::Write as _;

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

impl super::budget::Foldable for FlowLabels {
    fn overflow(&self) -> Self {
        Self {
            source_ip: super::budget::OVERFLOW.to_owned(),
            source_port: 0,
            destination_ip: super::budget::OVERFLOW.to_owned(),
            destination_port: 0,
            protocol: self.protocol,
            direction: self.direction,
        }
    }

    fn is_overflow(&self) -> bool {
        self.source_ip == super::budget::OVERFLOW
    }
}

impl From<&FlowKey> for FlowLabels {
    fn from(key: &FlowKey) -> Self {
        Self {
            source_ip: ip(key.family, &key.src_addr).to_string(),
            source_port: key.src_port,
            destination_ip: ip(key.family, &key.dst_addr).to_string(),
            destination_port: key.dst_port,
            protocol: Protocol::from_number(key.protocol),
            direction: if key.direction == DIR_EGRESS {
                Direction::Egress
            } else {
                Direction::Ingress
            },
        }
    }
}

fn ip(family: u8, addr: &[u32; 4]) -> IpAddr {
    let octets = osprey_abi::addr_octets(addr);
    if family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(octets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use osprey_abi::{DIR_INGRESS, FAMILY_V6};

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
        let labels = FlowLabels::from(&key);
        assert_eq!(labels.source_ip, "10.0.0.1");
        assert_eq!(labels.destination_ip, "10.0.0.2");
        assert_eq!(labels.direction, Direction::Ingress);
        assert_eq!(labels.protocol, Protocol::Tcp);

        key.family = FAMILY_V6;
        key.protocol = PROTO_ICMPV6;
        key.direction = DIR_EGRESS;
        key.src_addr = osprey_abi::addr_words(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        let labels = FlowLabels::from(&key);
        assert_eq!(labels.source_ip, "fd00::1");
        assert_eq!(labels.protocol, Protocol::ICMPv6);
        assert_eq!(labels.direction, Direction::Egress);
    }
}
