//! The flow label sets of the metric catalogue (`osprey_model::labels`),
//! built from the agent's flows: the protocol of a kernel key, a flow's
//! labels, and the folds of a client's ephemeral port and of IPv6 link
//! addresses.

use osprey_abi::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use osprey_model::labels::{Address, FlowLabels, Protocol};

use super::enrich::FlowIdentity;

/// The `protocol` label of a kernel flow key's IP protocol number.
pub fn protocol(number: u8) -> Protocol {
    match number {
        PROTO_TCP => Protocol::Tcp,
        PROTO_UDP => Protocol::Udp,
        PROTO_ICMP => Protocol::ICMPv4,
        PROTO_ICMPV6 => Protocol::ICMPv6,
        _ => Protocol::Other,
    }
}

impl From<&FlowIdentity> for FlowLabels {
    fn from(flow: &FlowIdentity) -> Self {
        Self {
            source_ip: Address::endpoint(flow.source.ip),
            source_port: flow.source.port,
            destination_ip: Address::endpoint(flow.destination.ip),
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
    use osprey_model::labels::Direction;
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

    /// A veth's router solicitation: its link-local source and the routers'
    /// group are named by their ranges; a unique local or global address,
    /// and every IPv4 one (169.254.20.10 is NodeLocal DNSCache's), as is.
    #[test]
    fn ipv6_link_local_and_multicast_addresses_are_labelled_by_their_range() {
        let v6 = |a: &str| osprey_abi::addr_words(&a.parse::<Ipv6Addr>().unwrap().octets());
        let mut key = FlowKey {
            src_addr: v6("fe80::fc12:fbff:fefc:3a6e"),
            dst_addr: v6("ff02::2"),
            src_port: 133,
            family: FAMILY_V6,
            protocol: PROTO_ICMPV6,
            direction: DIR_EGRESS,
            ..FlowKey::default()
        };
        let labels = folded(&PortFold::default(), &key);
        assert_eq!(labels.source_ip, "fe80::/10");
        assert_eq!(labels.destination_ip, "ff00::/8");
        assert_eq!(labels.source_port, 133);
        (key.src_addr, key.dst_addr) = (v6("fd00::1"), v6("2001:db8::2"));
        let labels = folded(&PortFold::default(), &key);
        assert_eq!(labels.source_ip, "fd00::1");
        assert_eq!(labels.destination_ip, "2001:db8::2");
        key.family = FAMILY_V4;
        key.src_addr = osprey_abi::addr_words(&[169, 254, 20, 10]);
        key.dst_addr = osprey_abi::addr_words(&[224, 0, 0, 251]);
        let labels = folded(&PortFold::default(), &key);
        assert_eq!(labels.source_ip, "169.254.20.10");
        assert_eq!(labels.destination_ip, "224.0.0.251");
    }
}
