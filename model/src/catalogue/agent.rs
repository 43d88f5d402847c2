//! The agent's metrics about itself: its kernel programs, its series
//! budgets, its record streams (flow records, resource events) and their
//! followers, the flow log, the pod watch and the OTLP push.

use super::MetricDesc;

pub const OSPREY_BPF_MAP_MEMORY_BYTES: MetricDesc = MetricDesc {
    name: "osprey_bpf_map_memory_bytes",
    help: "Kernel memory of each eBPF map of this agent (memlock in its fdinfo, charged to the agent's memory cgroup), at this host's possible CPUs",
    unit: Some("By"),
};

pub const OSPREY_BPF_MAPS_MEMORY_BYTES: MetricDesc = MetricDesc {
    name: "osprey_bpf_maps_memory_bytes",
    help: "Kernel memory of all eBPF maps of this agent (memlock in their fdinfo, charged to the agent's memory cgroup), at this host's possible CPUs",
    unit: Some("By"),
};

pub const OSPREY_BPF_MAP_ENTRIES_MAX: MetricDesc = MetricDesc {
    name: "osprey_bpf_map_entries_max",
    help: "Maximum entries of each eBPF map of this agent (bytes for a ring buffer)",
    unit: None,
};

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

pub const OSPREY_BPF_PROGRAM_MISSED_RUNS: MetricDesc = MetricDesc {
    name: "osprey_bpf_program_missed_runs",
    help: "Runs of each kernel program the kernel skipped because another tracing program was running on that CPU: events the program never saw",
    unit: Some("{run}"),
};

pub const OSPREY_BPF_PROGRAM_RUN_TIME_NANOSECONDS: MetricDesc = MetricDesc {
    name: "osprey_bpf_program_run_time_nanoseconds",
    help: "Time spent in each kernel program, from the kernel's own statistics",
    unit: Some("ns"),
};

pub const OSPREY_SERIES: MetricDesc = MetricDesc {
    name: "osprey_series",
    help: "Live label sets of each family under a series budget (what series_budget bounds; a histogram's label set is one set of buckets)",
    unit: Some("{series}"),
};

pub const OSPREY_METRIC_SERIES_FOLDED: MetricDesc = MetricDesc {
    name: "osprey_metric_series_folded",
    help: "New series folded into the overflow series because their family hit its series budget",
    unit: Some("{series}"),
};

pub const OSPREY_OBSERVE_LOST_RECORDS: MetricDesc = MetricDesc {
    name: "osprey_observe_lost_records",
    help: "Flow records a live follower (observe --follow, flow log) missed because it fell behind",
    unit: Some("{record}"),
};

pub const OSPREY_FLOW_LOG_WRITE_ERRORS: MetricDesc = MetricDesc {
    name: "osprey_flow_log_write_errors",
    help: "Flow records the flow log (flow_log) could not write: each is lost to the log",
    unit: Some("{record}"),
};

pub const OSPREY_HTTP_UNAUTHENTICATED_REQUESTS: MetricDesc = MetricDesc {
    name: "osprey_http_unauthenticated_requests",
    help: "Requests to the agent's endpoints answered 401: no client certificate (tls_client_ca_file)",
    unit: Some("{request}"),
};

pub const OSPREY_EVENTS_LOST_RECORDS: MetricDesc = MetricDesc {
    name: "osprey_events_lost_records",
    help: "Resource events a live follower (events --follow) missed because it fell behind",
    unit: Some("{record}"),
};

pub const OSPREY_OOM_EVENTS_MALFORMED: MetricDesc = MetricDesc {
    name: "osprey_oom_events_malformed",
    help: "OOM ring buffer records too short to be an OomEvent",
    unit: Some("{record}"),
};

pub const OSPREY_KUBERNETES_PODS: MetricDesc = MetricDesc {
    name: "osprey_kubernetes_pods",
    help: "Pods known from the Kubernetes API (this node's, or the cluster's: see pod_scope)",
    unit: Some("{pod}"),
};

pub const OSPREY_KUBERNETES_SERVICES: MetricDesc = MetricDesc {
    name: "osprey_kubernetes_services",
    help: "Services with a cluster address known from the Kubernetes API",
    unit: Some("{service}"),
};

pub const OSPREY_KUBERNETES_NODES: MetricDesc = MetricDesc {
    name: "osprey_kubernetes_nodes",
    help: "Nodes known from the Kubernetes API",
    unit: Some("{node}"),
};

pub const OSPREY_KUBERNETES_WATCH_ERRORS: MetricDesc = MetricDesc {
    name: "osprey_kubernetes_watch_errors",
    help: "Errors of the pod watch (each is retried with backoff; pods keep their last known identity meanwhile)",
    unit: Some("{error}"),
};

pub const OSPREY_OTLP_SENT_BATCHES: MetricDesc = MetricDesc {
    name: "osprey_otlp_sent_batches",
    help: "OTLP export requests the endpoint accepted",
    unit: Some("{batch}"),
};

pub const OSPREY_OTLP_SENT_DATA_POINTS: MetricDesc = MetricDesc {
    name: "osprey_otlp_sent_data_points",
    help: "Data points the OTLP endpoint accepted",
    unit: Some("{data_point}"),
};

pub const OSPREY_OTLP_RETRIES: MetricDesc = MetricDesc {
    name: "osprey_otlp_retries",
    help: "OTLP export attempts retried, by reason (connection, timeout, unavailable, 429, 5xx)",
    unit: Some("{batch}"),
};

pub const OSPREY_OTLP_DROPPED_BATCHES: MetricDesc = MetricDesc {
    name: "osprey_otlp_dropped_batches",
    help: "OTLP export requests dropped, by reason (queue_full, rejected, partial_success, shutdown)",
    unit: Some("{batch}"),
};

pub const OSPREY_OTLP_DROPPED_DATA_POINTS: MetricDesc = MetricDesc {
    name: "osprey_otlp_dropped_data_points",
    help: "Data points dropped, by reason (as osprey_otlp_dropped_batches)",
    unit: Some("{data_point}"),
};

pub const OSPREY_OTLP_QUEUE_BATCHES: MetricDesc = MetricDesc {
    name: "osprey_otlp_queue_batches",
    help: "OTLP export requests waiting to be sent",
    unit: Some("{batch}"),
};

pub const OSPREY_OTLP_QUEUE_BYTES: MetricDesc = MetricDesc {
    name: "osprey_otlp_queue_bytes",
    help: "Bytes of OTLP export requests waiting to be sent",
    unit: Some("By"),
};

/// The agent's metrics about itself.
pub const AGENT_FAMILIES: &[MetricDesc] = &[
    OSPREY_BPF_MAPS_MEMORY_BYTES,
    OSPREY_BPF_MAP_MEMORY_BYTES,
    OSPREY_BPF_MAP_ENTRIES_MAX,
    OSPREY_BPF_PROGRAM_INFO,
    OSPREY_BPF_PROGRAM_RUNS,
    OSPREY_BPF_PROGRAM_MISSED_RUNS,
    OSPREY_BPF_PROGRAM_RUN_TIME_NANOSECONDS,
    OSPREY_METRIC_SERIES_FOLDED,
    OSPREY_SERIES,
    OSPREY_OBSERVE_LOST_RECORDS,
    OSPREY_FLOW_LOG_WRITE_ERRORS,
    OSPREY_HTTP_UNAUTHENTICATED_REQUESTS,
    OSPREY_EVENTS_LOST_RECORDS,
    OSPREY_OOM_EVENTS_MALFORMED,
    OSPREY_KUBERNETES_PODS,
    OSPREY_KUBERNETES_SERVICES,
    OSPREY_KUBERNETES_NODES,
    OSPREY_KUBERNETES_WATCH_ERRORS,
    OSPREY_OTLP_SENT_BATCHES,
    OSPREY_OTLP_SENT_DATA_POINTS,
    OSPREY_OTLP_RETRIES,
    OSPREY_OTLP_DROPPED_BATCHES,
    OSPREY_OTLP_DROPPED_DATA_POINTS,
    OSPREY_OTLP_QUEUE_BATCHES,
    OSPREY_OTLP_QUEUE_BYTES,
];
