//! Flow records built from drained kernel keys: the agent's side of the
//! wire types in `osprey_model::record`.

use std::time::SystemTime;

use osprey_abi::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
pub use osprey_model::record::{DnsInfo, FlowFilter, FlowRecord, Verdict};

use crate::flows::{
    drain::FlowDelta,
    enrich::{Drop, EnrichedBatch, FlowIdentity, Peer},
};

/// Kernel CLOCK_MONOTONIC timestamps (the probes use
/// `bpf_ktime_get_coarse_ns`) as wall-clock times, from one reading of both
/// clocks taken when a batch becomes records (two clock reads per record
/// were 2 % of the agent's CPU at 10k flows/s).
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    /// The records' own time.
    time: SystemTime,
    /// CLOCK_MONOTONIC (ns) read beside `SystemTime::now()`.
    mono_ns: u64,
    now: SystemTime,
}

impl WallClock {
    pub fn at(time: SystemTime) -> Self {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        Self {
            time,
            mono_ns: ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
            now: SystemTime::now(),
        }
    }

    /// RFC 3339 time of a CLOCK_MONOTONIC timestamp, or None for 0. Never
    /// later than the record's own time: the wall clock may be slewed
    /// between the two readings.
    fn rfc3339(&self, mono_ns: u64) -> Option<String> {
        if mono_ns == 0 {
            return None;
        }
        let age = std::time::Duration::from_nanos(self.mono_ns.saturating_sub(mono_ns));
        let at = self.now.checked_sub(age)?.min(self.time);
        Some(humantime::format_rfc3339_millis(at).to_string())
    }
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

/// Names the pods of both ends, as enrichment found them.
pub fn with_peers(mut record: FlowRecord, source: &Peer, destination: &Peer) -> FlowRecord {
    if let Some(p) = &source.pod {
        record.source_namespace = Some(p.namespace.clone());
        record.source_pod = Some(p.name.clone());
    }
    if let Some(p) = &destination.pod {
        record.destination_namespace = Some(p.namespace.clone());
        record.destination_pod = Some(p.name.clone());
    }
    if let Some(s) = &destination.service {
        record.destination_service = Some(s.key());
    }
    record
}

fn of_flow(flow: &FlowIdentity, verdict: Verdict, packets: u64, time: SystemTime) -> FlowRecord {
    let record = FlowRecord::new(
        time,
        verdict,
        flow.protocol.as_str(),
        (flow.source.ip.to_string(), flow.source.port),
        (flow.destination.ip.to_string(), flow.destination.port),
        packets,
    );
    with_peers(record, &flow.source, &flow.destination)
}

/// One flow over one drain interval, as the socket saw it.
pub fn forwarded(flow: &FlowIdentity, delta: &FlowDelta, clock: &WallClock) -> FlowRecord {
    let time = clock.time;
    FlowRecord {
        traffic_direction: Some(flow.direction.as_str().to_owned()),
        bytes: delta.stats.bytes,
        first_seen: clock.rfc3339(delta.first_seen_ns),
        last_seen: clock.rfc3339(delta.last_seen_ns),
        tcp_flags: flag_names(delta.stats.tcp_flags),
        // The socket's smoothed RTT, last read in the interval.
        rtt_us: (delta.stats.srtt_us != 0).then_some(u64::from(delta.stats.srtt_us)),
        ..of_flow(flow, Verdict::Forwarded, delta.stats.packets, time)
    }
}

/// The packets of one flow the kernel dropped for one reason.
pub fn dropped(drop: &Drop, time: SystemTime) -> FlowRecord {
    FlowRecord {
        drop_reason: Some(drop.reason.clone()),
        drop_ignored: drop.ignored,
        drop_location: Some(drop.location.to_string()),
        ..of_flow(&drop.flow, Verdict::Dropped, drop.packets, time)
    }
}

/// The batch as flow records: one per flow, one per dropped (flow, reason);
/// at most the last `limit` of them, drops kept before flows (a batch can
/// hold more than the hub keeps: the rest would be built to be thrown
/// away). A drop whose reason the config ignores is marked so: only a
/// filter naming its reason shows it, and the flow log leaves it out.
pub fn records(
    batch: &EnrichedBatch,
    time: SystemTime,
    limit: usize,
) -> impl Iterator<Item = FlowRecord> + '_ {
    let clock = WallClock::at(time);
    let skip = (batch.flows.len() + batch.drops.len()).saturating_sub(limit);
    let flows = batch.flows[skip.min(batch.flows.len())..]
        .iter()
        .map(move |(flow, delta)| forwarded(flow, delta, &clock));
    let drops = batch.drops[skip.saturating_sub(batch.flows.len())..]
        .iter()
        .map(move |d| dropped(d, time));
    flows.chain(drops)
}

/// `records`, collected.
pub fn of_batch(batch: &EnrichedBatch, time: SystemTime, limit: usize) -> Vec<FlowRecord> {
    records(batch, time, limit).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use osprey_abi::PROTO_UDP;

    use super::*;
    use crate::{
        flows::enrich::Enricher,
        test_support::{db_pod, drops_of, v4_flow},
    };

    #[test]
    fn drop_records_name_enriched_pods_and_mark_ignored_reasons() {
        let (enricher, _) = Enricher::new(
            db_pod(),
            BTreeMap::from([
                (12, "NETFILTER_DROP".to_owned()),
                (3, "SOCKET_CLOSE".to_owned()),
            ]),
        )
        .ignoring(&["SOCKET_CLOSE".to_owned()]);
        let flow = v4_flow([10, 0, 0, 1], 4000, [10, 0, 0, 2], 53, PROTO_UDP);
        let batch = enricher.batch(drops_of(flow, &[(12, 7), (3, 4), (99, 1)]));
        let records = of_batch(&batch, SystemTime::now(), 10);
        let got: Vec<_> = records
            .iter()
            .map(|r| (r.drop_reason.as_deref().unwrap(), r.packets, r.drop_ignored))
            .collect();
        assert_eq!(
            got,
            [
                ("NETFILTER_DROP", 7, false),
                ("SOCKET_CLOSE", 4, true),
                ("UNKNOWN_99", 1, false)
            ]
        );
        // Only a filter that names the ignored reason shows its record.
        let shown = |f: &FlowFilter| -> Vec<_> {
            records
                .iter()
                .filter(|r| f.matches(r))
                .map(|r| r.drop_reason.as_deref().unwrap())
                .collect()
        };
        assert_eq!(
            shown(&FlowFilter::default()),
            ["NETFILTER_DROP", "UNKNOWN_99"]
        );
        let asked = FlowFilter {
            drop_reason: Some("socket_close".into()),
            ..Default::default()
        };
        assert_eq!(shown(&asked), ["SOCKET_CLOSE"]);
        assert_eq!(records[0].verdict, Verdict::Dropped);
        assert_eq!(records[0].destination_pod.as_deref(), Some("db-0"));
        assert_eq!(records[0].destination_namespace.as_deref(), Some("shop"));
        assert_eq!(records[0].source_pod, None);
        assert_eq!(
            (records[0].source_ip.as_str(), records[0].destination_port),
            ("10.0.0.1", 53)
        );
    }
}
