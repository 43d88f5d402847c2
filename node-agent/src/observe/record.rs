//! Flow records built from drained kernel keys: the agent's side of the
//! wire types in `osprey_model::record`.

use std::time::SystemTime;

use osprey_abi::{DropKey, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
pub use osprey_model::record::{DnsInfo, FlowFilter, FlowRecord, Verdict};

use crate::{
    flows::{drain::FlowDelta, labels::FlowLabels},
    pods::PodIndex,
};

/// RFC 3339 wall-clock time of a kernel CLOCK_MONOTONIC timestamp (the
/// probes use `bpf_ktime_get_coarse_ns`), or None for 0. Never later than
/// `not_after` (the record's own time): the wall clock may be slewed between
/// the two readings.
fn wall_clock(mono_ns: u64, not_after: SystemTime) -> Option<String> {
    if mono_ns == 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let now_mono = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    let age = std::time::Duration::from_nanos(now_mono.saturating_sub(mono_ns));
    let at = SystemTime::now().checked_sub(age)?.min(not_after);
    Some(humantime::format_rfc3339_millis(at).to_string())
}

fn flag_names(flags: u32) -> Vec<String> {
    [
        (TCP_SYN, "SYN"),
        (TCP_ACK, "ACK"),
        (TCP_FIN, "FIN"),
        (TCP_RST, "RST"),
        (0x08, "PSH"),
    ]
    .iter()
    .filter(|(bit, _)| flags & bit != 0)
    .map(|(_, name)| (*name).to_owned())
    .collect()
}

/// Names the pods that own the source and destination addresses.
pub fn with_pods(mut record: FlowRecord, pods: &PodIndex) -> FlowRecord {
    if pods.is_empty() {
        return record;
    }
    if let Some(p) = pods.by_ip_str(&record.source_ip) {
        record.source_namespace = Some(p.namespace.clone());
        record.source_pod = Some(p.name.clone());
    }
    if let Some(p) = pods.by_ip_str(&record.destination_ip) {
        record.destination_namespace = Some(p.namespace.clone());
        record.destination_pod = Some(p.name.clone());
    }
    record
}

fn of_flow(l: FlowLabels, verdict: Verdict, packets: u64, time: SystemTime) -> FlowRecord {
    FlowRecord::new(
        time,
        verdict,
        l.protocol.as_str(),
        (l.source_ip, l.source_port),
        (l.destination_ip, l.destination_port),
        packets,
    )
}

/// One flow over one drain interval, as the socket saw it.
pub fn forwarded(delta: &FlowDelta, time: SystemTime) -> FlowRecord {
    let l = FlowLabels::from(&delta.key);
    let direction = l.direction.as_str().to_owned();
    FlowRecord {
        traffic_direction: Some(direction),
        bytes: delta.stats.bytes,
        first_seen: wall_clock(delta.first_seen_ns, time),
        last_seen: wall_clock(delta.last_seen_ns, time),
        tcp_flags: flag_names(delta.stats.tcp_flags),
        ..of_flow(l, Verdict::Forwarded, delta.stats.packets, time)
    }
}

/// The packets of one flow the kernel dropped for one reason.
pub fn dropped(key: &DropKey, reason: String, packets: u64, time: SystemTime) -> FlowRecord {
    FlowRecord {
        drop_reason: Some(reason),
        ..of_flow(FlowLabels::from(&key.flow), Verdict::Dropped, packets, time)
    }
}
