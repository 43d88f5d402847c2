//! cAdvisor's per-cgroup metric families: the catalogue's description of
//! each, its type and where it takes its value from.

use osprey_model::catalogue::*;
use prometheus_client::metrics::MetricType;

use super::{
    gather::Io,
    stats::{CgroupStats, NetDev},
};

type Getter = fn(&CgroupStats) -> Option<f64>;

/// (family, type, value): cAdvisor's families.
pub(super) const FAMILIES: &[(&MetricDesc, MetricType, Getter)] = &[
    (&CONTAINER_CPU_USAGE_SECONDS, MetricType::Counter, |s| {
        s.cpu_usage_seconds
    }),
    (&CONTAINER_CPU_USER_SECONDS, MetricType::Counter, |s| {
        s.cpu_user_seconds
    }),
    (&CONTAINER_CPU_SYSTEM_SECONDS, MetricType::Counter, |s| {
        s.cpu_system_seconds
    }),
    (&CONTAINER_CPU_CFS_PERIODS, MetricType::Counter, |s| {
        s.cfs_periods.map(|v| v as f64)
    }),
    (
        &CONTAINER_CPU_CFS_THROTTLED_PERIODS,
        MetricType::Counter,
        |s| s.cfs_throttled_periods.map(|v| v as f64),
    ),
    (
        &CONTAINER_CPU_CFS_THROTTLED_SECONDS,
        MetricType::Counter,
        |s| s.cfs_throttled_seconds,
    ),
    (&CONTAINER_MEMORY_USAGE_BYTES, MetricType::Gauge, |s| {
        s.memory_usage_bytes.map(|v| v as f64)
    }),
    (
        &CONTAINER_MEMORY_WORKING_SET_BYTES,
        MetricType::Gauge,
        |s| s.memory_working_set_bytes.map(|v| v as f64),
    ),
    (&CONTAINER_MEMORY_RSS, MetricType::Gauge, |s| {
        s.memory_rss_bytes.map(|v| v as f64)
    }),
    (&CONTAINER_MEMORY_CACHE, MetricType::Gauge, |s| {
        s.memory_cache_bytes.map(|v| v as f64)
    }),
    (&CONTAINER_SPEC_MEMORY_LIMIT_BYTES, MetricType::Gauge, |s| {
        s.memory_limit_bytes.map(|v| v as f64)
    }),
    (&CONTAINER_PROCESSES, MetricType::Gauge, |s| {
        s.processes.map(|v| v as f64)
    }),
    (&CONTAINER_THREADS, MetricType::Gauge, |s| {
        s.threads.map(|v| v as f64)
    }),
    (
        &CONTAINER_PRESSURE_CPU_WAITING_SECONDS,
        MetricType::Counter,
        |s| s.pressure.cpu.map(|p| p.0),
    ),
    (
        &CONTAINER_PRESSURE_CPU_STALLED_SECONDS,
        MetricType::Counter,
        |s| s.pressure.cpu.and_then(|p| p.1),
    ),
    (
        &CONTAINER_PRESSURE_MEMORY_WAITING_SECONDS,
        MetricType::Counter,
        |s| s.pressure.memory.map(|p| p.0),
    ),
    (
        &CONTAINER_PRESSURE_MEMORY_STALLED_SECONDS,
        MetricType::Counter,
        |s| s.pressure.memory.and_then(|p| p.1),
    ),
    (
        &CONTAINER_PRESSURE_IO_WAITING_SECONDS,
        MetricType::Counter,
        |s| s.pressure.io.map(|p| p.0),
    ),
    (
        &CONTAINER_PRESSURE_IO_STALLED_SECONDS,
        MetricType::Counter,
        |s| s.pressure.io.and_then(|p| p.1),
    ),
];

type NetGetter = fn(&NetDev) -> u64;

/// cAdvisor's per-interface network families.
pub(super) const NETWORK: &[(&MetricDesc, NetGetter)] = &[
    (&CONTAINER_NETWORK_RECEIVE_BYTES, |n| n.rx_bytes),
    (&CONTAINER_NETWORK_RECEIVE_PACKETS, |n| n.rx_packets),
    (&CONTAINER_NETWORK_RECEIVE_PACKETS_DROPPED, |n| n.rx_dropped),
    (&CONTAINER_NETWORK_RECEIVE_ERRORS, |n| n.rx_errors),
    (&CONTAINER_NETWORK_TRANSMIT_BYTES, |n| n.tx_bytes),
    (&CONTAINER_NETWORK_TRANSMIT_PACKETS, |n| n.tx_packets),
    (&CONTAINER_NETWORK_TRANSMIT_PACKETS_DROPPED, |n| {
        n.tx_dropped
    }),
    (&CONTAINER_NETWORK_TRANSMIT_ERRORS, |n| n.tx_errors),
];

type IoGetter = fn(&Io) -> u64;

/// cAdvisor's per-device block IO families.
pub(super) const IO: [(&MetricDesc, IoGetter); 4] = [
    (&CONTAINER_FS_READS_BYTES, |v| v.read_bytes),
    (&CONTAINER_FS_WRITES_BYTES, |v| v.write_bytes),
    (&CONTAINER_FS_READS, |v| v.reads),
    (&CONTAINER_FS_WRITES, |v| v.writes),
];
