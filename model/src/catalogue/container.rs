//! cAdvisor's per-cgroup families, under its names and help (dashboards
//! query them as the kubelet's cAdvisor endpoint serves them), the
//! run-queue latency histogram the sched probes add, and the cgroup
//! collector's own counters.

use super::MetricDesc;

pub const CONTAINER_CPU_USAGE_SECONDS: MetricDesc = MetricDesc {
    name: "container_cpu_usage_seconds",
    help: "Cumulative cpu time consumed",
    unit: Some("s"),
};

pub const CONTAINER_CPU_USER_SECONDS: MetricDesc = MetricDesc {
    name: "container_cpu_user_seconds",
    help: "Cumulative user cpu time consumed",
    unit: Some("s"),
};

pub const CONTAINER_CPU_SYSTEM_SECONDS: MetricDesc = MetricDesc {
    name: "container_cpu_system_seconds",
    help: "Cumulative system cpu time consumed",
    unit: Some("s"),
};

pub const CONTAINER_CPU_CFS_PERIODS: MetricDesc = MetricDesc {
    name: "container_cpu_cfs_periods",
    help: "Number of elapsed enforcement period intervals",
    unit: Some("{period}"),
};

pub const CONTAINER_CPU_CFS_THROTTLED_PERIODS: MetricDesc = MetricDesc {
    name: "container_cpu_cfs_throttled_periods",
    help: "Number of throttled period intervals",
    unit: Some("{period}"),
};

pub const CONTAINER_CPU_CFS_THROTTLED_SECONDS: MetricDesc = MetricDesc {
    name: "container_cpu_cfs_throttled_seconds",
    help: "Total time duration the container has been throttled",
    unit: Some("s"),
};

pub const CONTAINER_MEMORY_USAGE_BYTES: MetricDesc = MetricDesc {
    name: "container_memory_usage_bytes",
    help: "Current memory usage in bytes, including all memory regardless of when it was accessed",
    unit: Some("By"),
};

pub const CONTAINER_MEMORY_WORKING_SET_BYTES: MetricDesc = MetricDesc {
    name: "container_memory_working_set_bytes",
    help: "Current working set in bytes",
    unit: Some("By"),
};

/// In bytes, but without a unit: cAdvisor's name has no `_bytes`, and
/// Prometheus' OTLP translation would add one to a `By` family, so pushed
/// series would not be the ones dashboards query.
pub const CONTAINER_MEMORY_RSS: MetricDesc = MetricDesc {
    name: "container_memory_rss",
    help: "Size of RSS in bytes",
    unit: None,
};

/// In bytes, without a unit (see [`CONTAINER_MEMORY_RSS`]).
pub const CONTAINER_MEMORY_CACHE: MetricDesc = MetricDesc {
    name: "container_memory_cache",
    help: "Number of bytes of page cache memory",
    unit: None,
};

pub const CONTAINER_SPEC_MEMORY_LIMIT_BYTES: MetricDesc = MetricDesc {
    name: "container_spec_memory_limit_bytes",
    help: "Memory limit for the container",
    unit: Some("By"),
};

pub const CONTAINER_PROCESSES: MetricDesc = MetricDesc {
    name: "container_processes",
    help: "Number of processes running inside the container",
    unit: Some("{process}"),
};

pub const CONTAINER_THREADS: MetricDesc = MetricDesc {
    name: "container_threads",
    help: "Number of threads running inside the container",
    unit: Some("{thread}"),
};

pub const CONTAINER_PRESSURE_CPU_WAITING_SECONDS: MetricDesc = MetricDesc {
    name: "container_pressure_cpu_waiting_seconds",
    help: "Total time duration tasks in the container have waited due to CPU congestion",
    unit: Some("s"),
};

pub const CONTAINER_PRESSURE_CPU_STALLED_SECONDS: MetricDesc = MetricDesc {
    name: "container_pressure_cpu_stalled_seconds",
    help: "Total time duration no tasks in the container could make progress due to CPU congestion",
    unit: Some("s"),
};

pub const CONTAINER_PRESSURE_MEMORY_WAITING_SECONDS: MetricDesc = MetricDesc {
    name: "container_pressure_memory_waiting_seconds",
    help: "Total time duration tasks in the container have waited due to memory congestion",
    unit: Some("s"),
};

pub const CONTAINER_PRESSURE_MEMORY_STALLED_SECONDS: MetricDesc = MetricDesc {
    name: "container_pressure_memory_stalled_seconds",
    help: "Total time duration no tasks in the container could make progress due to memory congestion",
    unit: Some("s"),
};

pub const CONTAINER_PRESSURE_IO_WAITING_SECONDS: MetricDesc = MetricDesc {
    name: "container_pressure_io_waiting_seconds",
    help: "Total time duration tasks in the container have waited due to IO congestion",
    unit: Some("s"),
};

pub const CONTAINER_PRESSURE_IO_STALLED_SECONDS: MetricDesc = MetricDesc {
    name: "container_pressure_io_stalled_seconds",
    help: "Total time duration no tasks in the container could make progress due to IO congestion",
    unit: Some("s"),
};

pub const CONTAINER_NETWORK_RECEIVE_BYTES: MetricDesc = MetricDesc {
    name: "container_network_receive_bytes",
    help: "Cumulative count of bytes received",
    unit: Some("By"),
};

pub const CONTAINER_NETWORK_RECEIVE_PACKETS: MetricDesc = MetricDesc {
    name: "container_network_receive_packets",
    help: "Cumulative count of packets received",
    unit: Some("{packet}"),
};

pub const CONTAINER_NETWORK_RECEIVE_PACKETS_DROPPED: MetricDesc = MetricDesc {
    name: "container_network_receive_packets_dropped",
    help: "Cumulative count of packets dropped while receiving",
    unit: Some("{packet}"),
};

pub const CONTAINER_NETWORK_RECEIVE_ERRORS: MetricDesc = MetricDesc {
    name: "container_network_receive_errors",
    help: "Cumulative count of errors encountered while receiving",
    unit: Some("{error}"),
};

pub const CONTAINER_NETWORK_TRANSMIT_BYTES: MetricDesc = MetricDesc {
    name: "container_network_transmit_bytes",
    help: "Cumulative count of bytes transmitted",
    unit: Some("By"),
};

pub const CONTAINER_NETWORK_TRANSMIT_PACKETS: MetricDesc = MetricDesc {
    name: "container_network_transmit_packets",
    help: "Cumulative count of packets transmitted",
    unit: Some("{packet}"),
};

pub const CONTAINER_NETWORK_TRANSMIT_PACKETS_DROPPED: MetricDesc = MetricDesc {
    name: "container_network_transmit_packets_dropped",
    help: "Cumulative count of packets dropped while transmitting",
    unit: Some("{packet}"),
};

pub const CONTAINER_NETWORK_TRANSMIT_ERRORS: MetricDesc = MetricDesc {
    name: "container_network_transmit_errors",
    help: "Cumulative count of errors encountered while transmitting",
    unit: Some("{error}"),
};

pub const CONTAINER_FS_READS_BYTES: MetricDesc = MetricDesc {
    name: "container_fs_reads_bytes",
    help: "Cumulative count of bytes read",
    unit: Some("By"),
};

pub const CONTAINER_FS_WRITES_BYTES: MetricDesc = MetricDesc {
    name: "container_fs_writes_bytes",
    help: "Cumulative count of bytes written",
    unit: Some("By"),
};

pub const CONTAINER_FS_READS: MetricDesc = MetricDesc {
    name: "container_fs_reads",
    help: "Cumulative count of reads completed",
    unit: Some("{read}"),
};

pub const CONTAINER_FS_WRITES: MetricDesc = MetricDesc {
    name: "container_fs_writes",
    help: "Cumulative count of writes completed",
    unit: Some("{write}"),
};

pub const CONTAINER_OOM_EVENTS: MetricDesc = MetricDesc {
    name: "container_oom_events",
    help: "Count of out of memory events observed for the container",
    unit: Some("{event}"),
};

/// Osprey's, under cAdvisor's prefix: from the sched probes.
pub const CONTAINER_CPU_RUNQUEUE_LATENCY_SECONDS: MetricDesc = MetricDesc {
    name: "container_cpu_runqueue_latency_seconds",
    help: "Time the container's tasks waited for a CPU after becoming runnable (eBPF sched tracepoints)",
    unit: Some("s"),
};

pub const OSPREY_CGROUP_OPEN_FILES: MetricDesc = MetricDesc {
    name: "osprey_cgroup_open_files",
    help: "Cgroup files kept open between scrapes (see cgroup_open_files)",
    unit: Some("{file}"),
};

pub const OSPREY_RESOURCE_PROBE_LOST: MetricDesc = MetricDesc {
    name: "osprey_resource_probe_lost",
    help: "Events the resource probes could not account, by reason (a kernel map or ring buffer was full)",
    unit: Some("{event}"),
};

/// Every per-cgroup family, and the cgroup collector's own.
pub const CONTAINER_FAMILIES: &[MetricDesc] = &[
    CONTAINER_CPU_USAGE_SECONDS,
    CONTAINER_CPU_USER_SECONDS,
    CONTAINER_CPU_SYSTEM_SECONDS,
    CONTAINER_CPU_CFS_PERIODS,
    CONTAINER_CPU_CFS_THROTTLED_PERIODS,
    CONTAINER_CPU_CFS_THROTTLED_SECONDS,
    CONTAINER_MEMORY_USAGE_BYTES,
    CONTAINER_MEMORY_WORKING_SET_BYTES,
    CONTAINER_MEMORY_RSS,
    CONTAINER_MEMORY_CACHE,
    CONTAINER_SPEC_MEMORY_LIMIT_BYTES,
    CONTAINER_PROCESSES,
    CONTAINER_THREADS,
    CONTAINER_PRESSURE_CPU_WAITING_SECONDS,
    CONTAINER_PRESSURE_CPU_STALLED_SECONDS,
    CONTAINER_PRESSURE_MEMORY_WAITING_SECONDS,
    CONTAINER_PRESSURE_MEMORY_STALLED_SECONDS,
    CONTAINER_PRESSURE_IO_WAITING_SECONDS,
    CONTAINER_PRESSURE_IO_STALLED_SECONDS,
    CONTAINER_NETWORK_RECEIVE_BYTES,
    CONTAINER_NETWORK_RECEIVE_PACKETS,
    CONTAINER_NETWORK_RECEIVE_PACKETS_DROPPED,
    CONTAINER_NETWORK_RECEIVE_ERRORS,
    CONTAINER_NETWORK_TRANSMIT_BYTES,
    CONTAINER_NETWORK_TRANSMIT_PACKETS,
    CONTAINER_NETWORK_TRANSMIT_PACKETS_DROPPED,
    CONTAINER_NETWORK_TRANSMIT_ERRORS,
    CONTAINER_FS_READS_BYTES,
    CONTAINER_FS_WRITES_BYTES,
    CONTAINER_FS_READS,
    CONTAINER_FS_WRITES,
    CONTAINER_OOM_EVENTS,
    CONTAINER_CPU_RUNQUEUE_LATENCY_SECONDS,
    OSPREY_CGROUP_OPEN_FILES,
    OSPREY_RESOURCE_PROBE_LOST,
];
