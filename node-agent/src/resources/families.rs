//! cAdvisor's per-cgroup metric families: name, help, type and where each
//! takes its value from.

use prometheus_client::metrics::MetricType;

use super::{
    gather::Io,
    stats::{CgroupStats, NetDev},
};

type Getter = fn(&CgroupStats) -> Option<f64>;

/// (name, help, type, value): cAdvisor's families.
pub(super) const FAMILIES: &[(&str, &str, MetricType, Getter)] = &[
    (
        "container_cpu_usage_seconds",
        "Cumulative cpu time consumed",
        MetricType::Counter,
        |s| s.cpu_usage_seconds,
    ),
    (
        "container_cpu_user_seconds",
        "Cumulative user cpu time consumed",
        MetricType::Counter,
        |s| s.cpu_user_seconds,
    ),
    (
        "container_cpu_system_seconds",
        "Cumulative system cpu time consumed",
        MetricType::Counter,
        |s| s.cpu_system_seconds,
    ),
    (
        "container_cpu_cfs_periods",
        "Number of elapsed enforcement period intervals",
        MetricType::Counter,
        |s| s.cfs_periods.map(|v| v as f64),
    ),
    (
        "container_cpu_cfs_throttled_periods",
        "Number of throttled period intervals",
        MetricType::Counter,
        |s| s.cfs_throttled_periods.map(|v| v as f64),
    ),
    (
        "container_cpu_cfs_throttled_seconds",
        "Total time duration the container has been throttled",
        MetricType::Counter,
        |s| s.cfs_throttled_seconds,
    ),
    (
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        MetricType::Gauge,
        |s| s.memory_usage_bytes.map(|v| v as f64),
    ),
    (
        "container_memory_working_set_bytes",
        "Current working set in bytes",
        MetricType::Gauge,
        |s| s.memory_working_set_bytes.map(|v| v as f64),
    ),
    (
        "container_memory_rss",
        "Size of RSS in bytes",
        MetricType::Gauge,
        |s| s.memory_rss_bytes.map(|v| v as f64),
    ),
    (
        "container_memory_cache",
        "Number of bytes of page cache memory",
        MetricType::Gauge,
        |s| s.memory_cache_bytes.map(|v| v as f64),
    ),
    (
        "container_spec_memory_limit_bytes",
        "Memory limit for the container",
        MetricType::Gauge,
        |s| s.memory_limit_bytes.map(|v| v as f64),
    ),
    (
        "container_processes",
        "Number of processes running inside the container",
        MetricType::Gauge,
        |s| s.processes.map(|v| v as f64),
    ),
    (
        "container_threads",
        "Number of threads running inside the container",
        MetricType::Gauge,
        |s| s.threads.map(|v| v as f64),
    ),
    (
        "container_pressure_cpu_waiting_seconds",
        "Total time duration tasks in the container have waited due to CPU congestion",
        MetricType::Counter,
        |s| s.pressure.cpu.map(|p| p.0),
    ),
    (
        "container_pressure_cpu_stalled_seconds",
        "Total time duration no tasks in the container could make progress due to CPU congestion",
        MetricType::Counter,
        |s| s.pressure.cpu.and_then(|p| p.1),
    ),
    (
        "container_pressure_memory_waiting_seconds",
        "Total time duration tasks in the container have waited due to memory congestion",
        MetricType::Counter,
        |s| s.pressure.memory.map(|p| p.0),
    ),
    (
        "container_pressure_memory_stalled_seconds",
        "Total time duration no tasks in the container could make progress due to memory congestion",
        MetricType::Counter,
        |s| s.pressure.memory.and_then(|p| p.1),
    ),
    (
        "container_pressure_io_waiting_seconds",
        "Total time duration tasks in the container have waited due to IO congestion",
        MetricType::Counter,
        |s| s.pressure.io.map(|p| p.0),
    ),
    (
        "container_pressure_io_stalled_seconds",
        "Total time duration no tasks in the container could make progress due to IO congestion",
        MetricType::Counter,
        |s| s.pressure.io.and_then(|p| p.1),
    ),
];

type NetGetter = fn(&NetDev) -> u64;

/// cAdvisor's per-interface network families.
pub(super) const NETWORK: &[(&str, &str, NetGetter)] = &[
    (
        "container_network_receive_bytes",
        "Cumulative count of bytes received",
        |n| n.rx_bytes,
    ),
    (
        "container_network_receive_packets",
        "Cumulative count of packets received",
        |n| n.rx_packets,
    ),
    (
        "container_network_receive_packets_dropped",
        "Cumulative count of packets dropped while receiving",
        |n| n.rx_dropped,
    ),
    (
        "container_network_receive_errors",
        "Cumulative count of errors encountered while receiving",
        |n| n.rx_errors,
    ),
    (
        "container_network_transmit_bytes",
        "Cumulative count of bytes transmitted",
        |n| n.tx_bytes,
    ),
    (
        "container_network_transmit_packets",
        "Cumulative count of packets transmitted",
        |n| n.tx_packets,
    ),
    (
        "container_network_transmit_packets_dropped",
        "Cumulative count of packets dropped while transmitting",
        |n| n.tx_dropped,
    ),
    (
        "container_network_transmit_errors",
        "Cumulative count of errors encountered while transmitting",
        |n| n.tx_errors,
    ),
];

type IoGetter = fn(&Io) -> u64;

/// cAdvisor's per-device block IO families.
pub(super) const IO: [(&str, &str, IoGetter); 4] = [
    (
        "container_fs_reads_bytes",
        "Cumulative count of bytes read",
        |v| v.read_bytes,
    ),
    (
        "container_fs_writes_bytes",
        "Cumulative count of bytes written",
        |v| v.write_bytes,
    ),
    (
        "container_fs_reads",
        "Cumulative count of reads completed",
        |v| v.reads,
    ),
    (
        "container_fs_writes",
        "Cumulative count of writes completed",
        |v| v.writes,
    ),
];
