//! node-exporter's families, under its names and help (dashboards query
//! them as node-exporter's): CPU, load, network devices, pressure (PSI),
//! filesystems and disks as constant families ([`NODE_FAMILIES`]), and the
//! families whose names node-exporter builds from what the kernel lists
//! (meminfo fields, SNMP counters, sockstat keys) as patterns
//! ([`NODE_PATTERNS`]).

use super::{MetricDesc, MetricPattern};

pub const NODE_CPU_SECONDS: MetricDesc = MetricDesc {
    name: "node_cpu_seconds",
    help: "Seconds the CPUs spent in each mode.",
    unit: Some("s"),
};

pub const NODE_LOAD1: MetricDesc = MetricDesc {
    name: "node_load1",
    help: "1m load average.",
    unit: Some("{task}"),
};

pub const NODE_LOAD5: MetricDesc = MetricDesc {
    name: "node_load5",
    help: "5m load average.",
    unit: Some("{task}"),
};

pub const NODE_LOAD15: MetricDesc = MetricDesc {
    name: "node_load15",
    help: "15m load average.",
    unit: Some("{task}"),
};

pub const NODE_NETWORK_RECEIVE_BYTES: MetricDesc = MetricDesc {
    name: "node_network_receive_bytes",
    help: "Network device statistic receive_bytes.",
    unit: Some("By"),
};

pub const NODE_NETWORK_RECEIVE_PACKETS: MetricDesc = MetricDesc {
    name: "node_network_receive_packets",
    help: "Network device statistic receive_packets.",
    unit: Some("{packet}"),
};

pub const NODE_NETWORK_RECEIVE_ERRS: MetricDesc = MetricDesc {
    name: "node_network_receive_errs",
    help: "Network device statistic receive_errs.",
    unit: Some("{error}"),
};

pub const NODE_NETWORK_RECEIVE_DROP: MetricDesc = MetricDesc {
    name: "node_network_receive_drop",
    help: "Network device statistic receive_drop.",
    unit: Some("{packet}"),
};

pub const NODE_NETWORK_TRANSMIT_BYTES: MetricDesc = MetricDesc {
    name: "node_network_transmit_bytes",
    help: "Network device statistic transmit_bytes.",
    unit: Some("By"),
};

pub const NODE_NETWORK_TRANSMIT_PACKETS: MetricDesc = MetricDesc {
    name: "node_network_transmit_packets",
    help: "Network device statistic transmit_packets.",
    unit: Some("{packet}"),
};

pub const NODE_NETWORK_TRANSMIT_ERRS: MetricDesc = MetricDesc {
    name: "node_network_transmit_errs",
    help: "Network device statistic transmit_errs.",
    unit: Some("{error}"),
};

pub const NODE_NETWORK_TRANSMIT_DROP: MetricDesc = MetricDesc {
    name: "node_network_transmit_drop",
    help: "Network device statistic transmit_drop.",
    unit: Some("{packet}"),
};

pub const NODE_PRESSURE_CPU_WAITING_SECONDS: MetricDesc = MetricDesc {
    name: "node_pressure_cpu_waiting_seconds",
    help: "Total time in seconds that processes have waited for CPU time",
    unit: Some("s"),
};

pub const NODE_PRESSURE_IO_WAITING_SECONDS: MetricDesc = MetricDesc {
    name: "node_pressure_io_waiting_seconds",
    help: "Total time in seconds that processes have waited due to IO congestion",
    unit: Some("s"),
};

pub const NODE_PRESSURE_IO_STALLED_SECONDS: MetricDesc = MetricDesc {
    name: "node_pressure_io_stalled_seconds",
    help: "Total time in seconds no process could make progress due to IO congestion",
    unit: Some("s"),
};

pub const NODE_PRESSURE_MEMORY_WAITING_SECONDS: MetricDesc = MetricDesc {
    name: "node_pressure_memory_waiting_seconds",
    help: "Total time in seconds that processes have waited for memory",
    unit: Some("s"),
};

pub const NODE_PRESSURE_MEMORY_STALLED_SECONDS: MetricDesc = MetricDesc {
    name: "node_pressure_memory_stalled_seconds",
    help: "Total time in seconds no process could make progress due to memory congestion",
    unit: Some("s"),
};

pub const NODE_FILESYSTEM_SIZE_BYTES: MetricDesc = MetricDesc {
    name: "node_filesystem_size_bytes",
    help: "Filesystem size in bytes.",
    unit: Some("By"),
};

pub const NODE_FILESYSTEM_FREE_BYTES: MetricDesc = MetricDesc {
    name: "node_filesystem_free_bytes",
    help: "Filesystem free space in bytes.",
    unit: Some("By"),
};

pub const NODE_FILESYSTEM_AVAIL_BYTES: MetricDesc = MetricDesc {
    name: "node_filesystem_avail_bytes",
    help: "Filesystem space available to non-root users in bytes.",
    unit: Some("By"),
};

pub const NODE_FILESYSTEM_FILES: MetricDesc = MetricDesc {
    name: "node_filesystem_files",
    help: "Filesystem total file nodes.",
    unit: Some("{inode}"),
};

pub const NODE_FILESYSTEM_FILES_FREE: MetricDesc = MetricDesc {
    name: "node_filesystem_files_free",
    help: "Filesystem total free file nodes.",
    unit: Some("{inode}"),
};

/// 1 when mounted read-only, else 0: a state, no unit.
pub const NODE_FILESYSTEM_READONLY: MetricDesc = MetricDesc {
    name: "node_filesystem_readonly",
    help: "Filesystem read-only status.",
    unit: None,
};

/// 1 when statfs failed, else 0: a state, no unit.
pub const NODE_FILESYSTEM_DEVICE_ERROR: MetricDesc = MetricDesc {
    name: "node_filesystem_device_error",
    help: "Whether an error occurred while getting statistics for the given device.",
    unit: None,
};

pub const NODE_DISK_READS_COMPLETED: MetricDesc = MetricDesc {
    name: "node_disk_reads_completed",
    help: "The total number of reads completed successfully.",
    unit: Some("{read}"),
};

pub const NODE_DISK_READS_MERGED: MetricDesc = MetricDesc {
    name: "node_disk_reads_merged",
    help: "The total number of reads merged.",
    unit: Some("{read}"),
};

pub const NODE_DISK_READ_BYTES: MetricDesc = MetricDesc {
    name: "node_disk_read_bytes",
    help: "The total number of bytes read successfully.",
    unit: Some("By"),
};

pub const NODE_DISK_READ_TIME_SECONDS: MetricDesc = MetricDesc {
    name: "node_disk_read_time_seconds",
    help: "The total number of seconds spent by all reads.",
    unit: Some("s"),
};

pub const NODE_DISK_WRITES_COMPLETED: MetricDesc = MetricDesc {
    name: "node_disk_writes_completed",
    help: "The total number of writes completed successfully.",
    unit: Some("{write}"),
};

pub const NODE_DISK_WRITES_MERGED: MetricDesc = MetricDesc {
    name: "node_disk_writes_merged",
    help: "The number of writes merged.",
    unit: Some("{write}"),
};

pub const NODE_DISK_WRITTEN_BYTES: MetricDesc = MetricDesc {
    name: "node_disk_written_bytes",
    help: "The total number of bytes written successfully.",
    unit: Some("By"),
};

pub const NODE_DISK_WRITE_TIME_SECONDS: MetricDesc = MetricDesc {
    name: "node_disk_write_time_seconds",
    help: "This is the total number of seconds spent by all writes.",
    unit: Some("s"),
};

pub const NODE_DISK_IO_TIME_SECONDS: MetricDesc = MetricDesc {
    name: "node_disk_io_time_seconds",
    help: "Total seconds spent doing I/Os.",
    unit: Some("s"),
};

pub const NODE_DISK_IO_TIME_WEIGHTED_SECONDS: MetricDesc = MetricDesc {
    name: "node_disk_io_time_weighted_seconds",
    help: "The weighted # of seconds spent doing I/Os.",
    unit: Some("s"),
};

pub const NODE_DISK_DISCARDS_COMPLETED: MetricDesc = MetricDesc {
    name: "node_disk_discards_completed",
    help: "The total number of discards completed successfully.",
    unit: Some("{discard}"),
};

pub const NODE_DISK_DISCARDS_MERGED: MetricDesc = MetricDesc {
    name: "node_disk_discards_merged",
    help: "The total number of discards merged.",
    unit: Some("{discard}"),
};

pub const NODE_DISK_DISCARDED_SECTORS: MetricDesc = MetricDesc {
    name: "node_disk_discarded_sectors",
    help: "The total number of sectors discarded successfully.",
    unit: Some("{sector}"),
};

pub const NODE_DISK_DISCARD_TIME_SECONDS: MetricDesc = MetricDesc {
    name: "node_disk_discard_time_seconds",
    help: "This is the total number of seconds spent by all discards.",
    unit: Some("s"),
};

pub const NODE_DISK_FLUSH_REQUESTS: MetricDesc = MetricDesc {
    name: "node_disk_flush_requests",
    help: "The total number of flush requests completed successfully",
    unit: Some("{request}"),
};

pub const NODE_DISK_FLUSH_REQUESTS_TIME_SECONDS: MetricDesc = MetricDesc {
    name: "node_disk_flush_requests_time_seconds",
    help: "This is the total number of seconds spent by all flush requests.",
    unit: Some("s"),
};

pub const NODE_DISK_IO_NOW: MetricDesc = MetricDesc {
    name: "node_disk_io_now",
    help: "The number of I/Os currently in progress.",
    unit: Some("{operation}"),
};

/// node-exporter's constant families.
pub const NODE_FAMILIES: &[MetricDesc] = &[
    NODE_CPU_SECONDS,
    NODE_LOAD1,
    NODE_LOAD5,
    NODE_LOAD15,
    NODE_NETWORK_RECEIVE_BYTES,
    NODE_NETWORK_RECEIVE_PACKETS,
    NODE_NETWORK_RECEIVE_ERRS,
    NODE_NETWORK_RECEIVE_DROP,
    NODE_NETWORK_TRANSMIT_BYTES,
    NODE_NETWORK_TRANSMIT_PACKETS,
    NODE_NETWORK_TRANSMIT_ERRS,
    NODE_NETWORK_TRANSMIT_DROP,
    NODE_PRESSURE_CPU_WAITING_SECONDS,
    NODE_PRESSURE_IO_WAITING_SECONDS,
    NODE_PRESSURE_IO_STALLED_SECONDS,
    NODE_PRESSURE_MEMORY_WAITING_SECONDS,
    NODE_PRESSURE_MEMORY_STALLED_SECONDS,
    NODE_FILESYSTEM_SIZE_BYTES,
    NODE_FILESYSTEM_FREE_BYTES,
    NODE_FILESYSTEM_AVAIL_BYTES,
    NODE_FILESYSTEM_FILES,
    NODE_FILESYSTEM_FILES_FREE,
    NODE_FILESYSTEM_READONLY,
    NODE_FILESYSTEM_DEVICE_ERROR,
    NODE_DISK_READS_COMPLETED,
    NODE_DISK_READS_MERGED,
    NODE_DISK_READ_BYTES,
    NODE_DISK_READ_TIME_SECONDS,
    NODE_DISK_WRITES_COMPLETED,
    NODE_DISK_WRITES_MERGED,
    NODE_DISK_WRITTEN_BYTES,
    NODE_DISK_WRITE_TIME_SECONDS,
    NODE_DISK_IO_TIME_SECONDS,
    NODE_DISK_IO_TIME_WEIGHTED_SECONDS,
    NODE_DISK_DISCARDS_COMPLETED,
    NODE_DISK_DISCARDS_MERGED,
    NODE_DISK_DISCARDED_SECTORS,
    NODE_DISK_DISCARD_TIME_SECONDS,
    NODE_DISK_FLUSH_REQUESTS,
    NODE_DISK_FLUSH_REQUESTS_TIME_SECONDS,
    NODE_DISK_IO_NOW,
];

/// `node_memory_{field}_bytes`, one family per /proc/meminfo field
/// (`MemTotal`, `Cached`, …), in bytes.
pub const NODE_MEMORY: MetricPattern = MetricPattern {
    prefix: "node_memory_",
    suffix: "_bytes",
    help: "Memory information field {}_bytes.",
    unit: Some("By"),
};

/// `node_netstat_{proto}_{key}`, one family per SNMP counter of
/// /proc/net/snmp, /proc/net/netstat and /proc/net/snmp6 (`Tcp`,
/// `ActiveOpens`). No unit: the counters count segments, datagrams,
/// messages, octets, … by key.
pub const NODE_NETSTAT: MetricPattern = MetricPattern {
    prefix: "node_netstat_",
    suffix: "",
    help: "Statistic {}{}.",
    unit: None,
};

/// `node_sockstat_{proto}_{key}`, one family per field of
/// /proc/net/sockstat and sockstat6 (`TCP`, `inuse`). No unit: by key, the
/// value counts sockets (`inuse`, `orphan`, `tw`, `alloc`, `used`), pages
/// (`mem`) or bytes (`FRAG` `memory`).
pub const NODE_SOCKSTAT: MetricPattern = MetricPattern {
    prefix: "node_sockstat_",
    suffix: "",
    help: "Number of {}_{} sockets in state.",
    unit: None,
};

/// `node_sockstat_{proto}_mem_bytes`: a protocol's `mem` pages, in bytes.
pub const NODE_SOCKSTAT_MEM_BYTES: MetricPattern = MetricPattern {
    prefix: "node_sockstat_",
    suffix: "_mem_bytes",
    help: "Number of {}_mem_bytes sockets in state.",
    unit: Some("By"),
};

/// node-exporter's generated families.
pub const NODE_PATTERNS: &[MetricPattern] = &[
    NODE_MEMORY,
    NODE_NETSTAT,
    NODE_SOCKSTAT,
    NODE_SOCKSTAT_MEM_BYTES,
];
