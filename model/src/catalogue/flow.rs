//! The flow pipeline's families: Hubble's flow families, and Osprey's per
//! flow, per drop, per connection and loss families.

use super::MetricDesc;

pub const OSPREY_TCP_CONNECTIONS: MetricDesc = MetricDesc {
    name: "osprey_tcp_connections",
    help: "TCP connection outcomes (established, refused, timeout, reset, error) per socket, local to remote",
    unit: Some("{connection}"),
};

pub const HUBBLE_DROP: MetricDesc = MetricDesc {
    name: "hubble_drop",
    help: "Packets dropped by the kernel, by drop reason (enum skb_drop_reason) and protocol",
    unit: Some("{packet}"),
};

pub const OSPREY_FLOW_DROPS: MetricDesc = MetricDesc {
    name: "osprey_flow_drops",
    help: "Packets dropped by the kernel per flow and drop reason",
    unit: Some("{packet}"),
};

pub const HUBBLE_FLOWS_PROCESSED: MetricDesc = MetricDesc {
    name: "hubble_flows_processed",
    help: "Flow events (packets at an observation point) processed, as Hubble counts them",
    unit: Some("{flow}"),
};

pub const HUBBLE_ICMP: MetricDesc = MetricDesc {
    name: "hubble_icmp",
    help: "ICMP and ICMPv6 packets by family and type",
    unit: Some("{packet}"),
};

pub const OSPREY_PROBE_LOST_EVENTS: MetricDesc = MetricDesc {
    name: "osprey_probe_lost_events",
    help: "Events a probe could not record because its kernel map was full",
    unit: Some("{event}"),
};

pub const OSPREY_TCP_RETRANSMITS: MetricDesc = MetricDesc {
    name: "osprey_tcp_retransmits",
    help: "TCP retransmissions per flow (tcp:tcp_retransmit_skb)",
    unit: Some("{segment}"),
};

pub const OSPREY_TCP_RTT_SECONDS: MetricDesc = MetricDesc {
    name: "osprey_tcp_rtt_seconds",
    help: "Smoothed RTT of each TCP socket that sent in a drain interval (one sample per socket and interval), log2 buckets",
    unit: Some("s"),
};

pub const HUBBLE_TCP_FLAGS: MetricDesc = MetricDesc {
    name: "hubble_tcp_flags",
    help: "TCP packets by flag (SYN, SYN-ACK, FIN, RST)",
    unit: Some("{packet}"),
};

pub const OSPREY_FLOW_BYTES: MetricDesc = MetricDesc {
    name: "osprey_flow_bytes",
    help: "L3 bytes (IP headers included) per flow and direction, counted at the socket layer",
    unit: Some("By"),
};

pub const OSPREY_FLOW_PACKETS: MetricDesc = MetricDesc {
    name: "osprey_flow_packets",
    help: "Packets per flow and direction (GSO super-packets count as their segments)",
    unit: Some("{packet}"),
};

pub const OSPREY_FLOW_LOST_PACKETS: MetricDesc = MetricDesc {
    name: "osprey_flow_lost_packets",
    help: "Packets the flow probe could not account to a flow, by reason",
    unit: Some("{packet}"),
};

pub const OSPREY_FLOW_LOST_BYTES: MetricDesc = MetricDesc {
    name: "osprey_flow_lost_bytes",
    help: "Bytes of packets the flow probe could not account to a flow, by reason",
    unit: Some("By"),
};

pub const OSPREY_FLOW_SERIES: MetricDesc = MetricDesc {
    name: "osprey_flow_series",
    help: "Flow series currently exposed",
    unit: Some("{series}"),
};

pub const OSPREY_FLOW_SERIES_EXPIRED: MetricDesc = MetricDesc {
    name: "osprey_flow_series_expired",
    help: "Flow series removed after their idle TTL",
    unit: Some("{series}"),
};

pub const OSPREY_FLOW_MAP_DRAINS: MetricDesc = MetricDesc {
    name: "osprey_flow_map_drains",
    help: "Drains of the kernel flow maps",
    unit: Some("{drain}"),
};

pub const OSPREY_FLOW_MAP_DRAIN_ERRORS: MetricDesc = MetricDesc {
    name: "osprey_flow_map_drain_errors",
    help: "Failed drains or flow entries that could not be read or removed",
    unit: Some("{error}"),
};

pub const OSPREY_DROPS_IGNORED: MetricDesc = MetricDesc {
    name: "osprey_drops_ignored",
    help: "Packets the kernel freed with a drop reason the config ignores \
           (drop_reasons_ignored), by reason and the kernel function that freed \
           them (unless drop_locations_counted names it): counted here only, not in \
           hubble_drop_total, osprey_flow_drops_total or the flow log",
    unit: Some("{packet}"),
};

pub const HUBBLE_LOST_EVENTS: MetricDesc = MetricDesc {
    name: "hubble_lost_events",
    help: "Flow events lost (kernel maps and ring buffers, event queue, live followers)",
    unit: Some("{event}"),
};

/// Every family of the flow pipeline.
pub const FLOW_FAMILIES: &[MetricDesc] = &[
    OSPREY_TCP_CONNECTIONS,
    HUBBLE_DROP,
    OSPREY_FLOW_DROPS,
    HUBBLE_FLOWS_PROCESSED,
    HUBBLE_ICMP,
    OSPREY_PROBE_LOST_EVENTS,
    HUBBLE_LOST_EVENTS,
    OSPREY_DROPS_IGNORED,
    OSPREY_TCP_RETRANSMITS,
    OSPREY_TCP_RTT_SECONDS,
    HUBBLE_TCP_FLAGS,
    OSPREY_FLOW_BYTES,
    OSPREY_FLOW_PACKETS,
    OSPREY_FLOW_LOST_PACKETS,
    OSPREY_FLOW_LOST_BYTES,
    OSPREY_FLOW_SERIES,
    OSPREY_FLOW_SERIES_EXPIRED,
    OSPREY_FLOW_MAP_DRAINS,
    OSPREY_FLOW_MAP_DRAIN_ERRORS,
];
