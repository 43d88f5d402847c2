//! The metric catalogue: each family's name, help and unit, as dashboards
//! query them and `tests/golden/catalogue.txt` pins them, for the flow
//! pipeline ([`FLOW_FAMILIES`]), DNS ([`DNS_FAMILIES`]), HTTP
//! ([`HTTP_FAMILIES`]) and the agent's
//! metrics about itself ([`AGENT_FAMILIES`]). The agent registers these
//! families through their descriptions, so `/metrics` and the OTLP rendering
//! of the same registry carry exactly these names; their label sets are in
//! [`labels`](crate::labels). (The node and cgroup families keep
//! node-exporter's and cAdvisor's names in the agent's `resources` tables.)

use prometheus_client::registry::{Metric, Registry};

/// A metric family's name (without `_total`: the encoder adds it to
/// counters), help and unit.
///
/// `unit` is the family's UCUM unit as OTLP carries it (`Metric.unit`), in
/// OpenTelemetry's conventions: `By` for bytes, `s` / `ns` for time, and a
/// `{thing}` annotation for a count of things (`{packet}`, `{query}`); `None`
/// where nothing is measured (an info family). It is for OTLP only: the
/// OpenMetrics exposition does not show it (families register without a
/// unit, so names and metadata stay as dashboards know them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDesc {
    pub name: &'static str,
    pub help: &'static str,
    pub unit: Option<&'static str>,
}

impl MetricDesc {
    pub fn register(&self, registry: &mut Registry, metric: impl Metric) {
        registry.register(self.name, self.help, metric);
    }
}

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
           (drop_reasons_ignored): counted here only, not in hubble_drop_total, \
           osprey_flow_drops_total or the flow records",
    unit: Some("{packet}"),
};

/// Every family of the flow pipeline.
pub const FLOW_FAMILIES: &[MetricDesc] = &[
    OSPREY_TCP_CONNECTIONS,
    HUBBLE_DROP,
    OSPREY_FLOW_DROPS,
    HUBBLE_FLOWS_PROCESSED,
    HUBBLE_ICMP,
    OSPREY_PROBE_LOST_EVENTS,
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

pub const HTTP_SERVER_REQUEST_DURATION_SECONDS: MetricDesc = MetricDesc {
    name: "http_server_request_duration_seconds",
    help: "Duration of HTTP server requests, from the request's first segment entering the server socket to the response's first segment leaving it",
    unit: Some("s"),
};

pub const HTTP_CLIENT_REQUEST_DURATION_SECONDS: MetricDesc = MetricDesc {
    name: "http_client_request_duration_seconds",
    help: "Duration of HTTP client requests, from the request's first segment leaving the client socket to the response's first segment entering it",
    unit: Some("s"),
};

pub const HUBBLE_HTTP_REQUESTS: MetricDesc = MetricDesc {
    name: "hubble_http_requests",
    help: "HTTP requests, by method, protocol and reporter (the end that saw them)",
    unit: Some("{request}"),
};

pub const HUBBLE_HTTP_RESPONSES: MetricDesc = MetricDesc {
    name: "hubble_http_responses",
    help: "HTTP responses, by the request's method, status and reporter",
    unit: Some("{response}"),
};

pub const HUBBLE_HTTP_REQUEST_DURATION_SECONDS: MetricDesc = MetricDesc {
    name: "hubble_http_request_duration_seconds",
    help: "HTTP request duration (request start to response start), by method and reporter",
    unit: Some("s"),
};

pub const OSPREY_HTTP_UNPARSED: MetricDesc = MetricDesc {
    name: "osprey_http_unparsed",
    help: "HTTP starts (or parts of them) not understood, by reason; none is attributed to another request",
    unit: Some("{event}"),
};

pub const OSPREY_HTTP_UNANSWERED_REQUESTS: MetricDesc = MetricDesc {
    name: "osprey_http_unanswered_requests",
    help: "HTTP requests without a response within the answer timeout, or left when their connection's queue was full",
    unit: Some("{request}"),
};

pub const OSPREY_HTTP_LOST_EVENTS: MetricDesc = MetricDesc {
    name: "osprey_http_lost_events",
    help: "HTTP ring buffer records too short to parse (a full ring is osprey_probe_lost_events_total{probe=\"http\"})",
    unit: Some("{event}"),
};

pub const OSPREY_HTTP_SPANS_SENT: MetricDesc = MetricDesc {
    name: "osprey_http_spans_sent",
    help: "Spans of HTTP requests the OTLP endpoint accepted",
    unit: Some("{span}"),
};

pub const OSPREY_HTTP_SPANS_DROPPED: MetricDesc = MetricDesc {
    name: "osprey_http_spans_dropped",
    help: "Spans of HTTP requests dropped, by reason (queue_full, rejected, unavailable)",
    unit: Some("{span}"),
};

pub const OSPREY_HTTP_SPANS_RETRIES: MetricDesc = MetricDesc {
    name: "osprey_http_spans_retries",
    help: "Span batches sent again after a retryable failure",
    unit: Some("{batch}"),
};

/// The HTTP families.
pub const HTTP_FAMILIES: &[MetricDesc] = &[
    HTTP_SERVER_REQUEST_DURATION_SECONDS,
    HTTP_CLIENT_REQUEST_DURATION_SECONDS,
    HUBBLE_HTTP_REQUESTS,
    HUBBLE_HTTP_RESPONSES,
    HUBBLE_HTTP_REQUEST_DURATION_SECONDS,
    OSPREY_HTTP_UNPARSED,
    OSPREY_HTTP_UNANSWERED_REQUESTS,
    OSPREY_HTTP_LOST_EVENTS,
    OSPREY_HTTP_SPANS_SENT,
    OSPREY_HTTP_SPANS_DROPPED,
    OSPREY_HTTP_SPANS_RETRIES,
];

pub const OSPREY_BPF_PROGRAM_INFO: MetricDesc = MetricDesc {
    name: "osprey_bpf_program_info",
    help: "Kernel programs loaded by this agent, with their kernel ids",
    unit: None,
};

pub const OSPREY_BPF_PROGRAM_RUNS: MetricDesc = MetricDesc {
    name: "osprey_bpf_program_runs",
    help: "Runs of each kernel program (counted while kernel BPF stats are enabled)",
    unit: Some("{run}"),
};

pub const OSPREY_BPF_PROGRAM_RUN_TIME_NANOSECONDS: MetricDesc = MetricDesc {
    name: "osprey_bpf_program_run_time_nanoseconds",
    help: "Time spent in each kernel program, from the kernel's own statistics",
    unit: Some("ns"),
};

/// The agent's metrics about itself.
pub const AGENT_FAMILIES: &[MetricDesc] = &[
    OSPREY_BPF_PROGRAM_INFO,
    OSPREY_BPF_PROGRAM_RUNS,
    OSPREY_BPF_PROGRAM_RUN_TIME_NANOSECONDS,
];

/// Every list of the catalogue.
pub const CATALOGUE: &[&[MetricDesc]] =
    &[FLOW_FAMILIES, DNS_FAMILIES, HTTP_FAMILIES, AGENT_FAMILIES];

/// The catalogue's description of the family named `name`: its bare name, or
/// the name as exposed (a counter's carries `_total`, as the OTLP rendering's
/// names do).
pub fn describe(name: &str) -> Option<&'static MetricDesc> {
    let find = |n: &str| {
        CATALOGUE
            .iter()
            .flat_map(|l| l.iter())
            .find(|d| d.name == n)
    };
    find(name).or_else(|| find(name.strip_suffix("_total")?))
}

/// The UCUM unit of the family named `name` (bare or exposed), if the
/// catalogue has the family and gives it a unit.
pub fn unit_of(name: &str) -> Option<&'static str> {
    describe(name)?.unit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_bare() {
        let all: Vec<_> = CATALOGUE.iter().flat_map(|l| l.iter()).collect();
        let mut names: Vec<_> = all.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert!(names.iter().all(|n| !n.ends_with("_total")));
    }

    #[test]
    fn units_are_found_by_bare_and_exposed_names() {
        assert_eq!(unit_of("osprey_flow_bytes"), Some("By"));
        assert_eq!(unit_of("osprey_flow_bytes_total"), Some("By"));
        assert_eq!(unit_of("osprey_tcp_rtt_seconds"), Some("s"));
        assert_eq!(unit_of("hubble_dns_queries_total"), Some("{query}"));
        assert_eq!(unit_of("osprey_dns_latency_seconds"), Some("s"));
        assert_eq!(
            unit_of("osprey_bpf_program_run_time_nanoseconds_total"),
            Some("ns")
        );
        // In the catalogue without a unit; not in the catalogue.
        assert_eq!(unit_of("osprey_bpf_program_info"), None);
        assert!(describe("osprey_bpf_program_info").is_some());
        assert_eq!(unit_of("node_cpu_seconds_total"), None);
        assert_eq!(unit_of("_total"), None);
    }

    /// A seconds family's unit is seconds, a bytes family's bytes: the unit
    /// agrees with the suffix dashboards read.
    #[test]
    fn units_agree_with_name_suffixes() {
        for d in CATALOGUE.iter().flat_map(|l| l.iter()) {
            let want = if d.name.ends_with("_seconds") {
                Some("s")
            } else if d.name.ends_with("_nanoseconds") {
                Some("ns")
            } else if d.name.ends_with("_bytes") {
                Some("By")
            } else {
                continue;
            };
            assert_eq!(d.unit, want, "{}", d.name);
        }
    }
}
