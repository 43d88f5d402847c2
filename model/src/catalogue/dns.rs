//! The DNS families.

use super::MetricDesc;

pub const HUBBLE_DNS_QUERIES: MetricDesc = MetricDesc {
    name: "hubble_dns_queries",
    help: "DNS queries sent by client sockets",
    unit: Some("{query}"),
};

pub const HUBBLE_DNS_RESPONSES: MetricDesc = MetricDesc {
    name: "hubble_dns_responses",
    help: "DNS responses received by client sockets",
    unit: Some("{response}"),
};

pub const OSPREY_DNS_LATENCY_SECONDS: MetricDesc = MetricDesc {
    name: "osprey_dns_latency_seconds",
    help: "Time from a DNS query leaving the client socket to its answer arriving",
    unit: Some("s"),
};

pub const OSPREY_DNS_UNANSWERED_QUERIES: MetricDesc = MetricDesc {
    name: "osprey_dns_unanswered_queries",
    help: "DNS queries with no answer within 10 s",
    unit: Some("{query}"),
};

pub const OSPREY_DNS_MALFORMED_PACKETS: MetricDesc = MetricDesc {
    name: "osprey_dns_malformed_packets",
    help: "Packets to or from port 53 that are not DNS messages",
    unit: Some("{packet}"),
};

pub const OSPREY_DNS_LOST_EVENTS: MetricDesc = MetricDesc {
    name: "osprey_dns_lost_events",
    help: "DNS events lost between the kernel ring buffer and the tracker",
    unit: Some("{event}"),
};

/// Every DNS family.
pub const DNS_FAMILIES: &[MetricDesc] = &[
    HUBBLE_DNS_QUERIES,
    HUBBLE_DNS_RESPONSES,
    OSPREY_DNS_LATENCY_SECONDS,
    OSPREY_DNS_UNANSWERED_QUERIES,
    OSPREY_DNS_MALFORMED_PACKETS,
    OSPREY_DNS_LOST_EVENTS,
];
