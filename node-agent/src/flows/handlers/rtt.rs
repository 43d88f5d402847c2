//! `osprey_tcp_rtt_seconds`: the smoothed RTT of every TCP socket that sent
//! in a drain interval, one sample per socket and interval, in log2 buckets.
//! The flow programs read each packet's socket RTT (`tcp_sock.srtt_us`) into
//! its flow; the histogram is built here from the drained flows.

use osprey_model::catalogue::OSPREY_TCP_RTT_SECONDS;
use osprey_model::exemplar::TracedHistogram;

use osprey_abi::{DIR_EGRESS, PROTO_TCP};
use prometheus_client::registry::Registry;

use super::FlowHandler;
use crate::flows::enrich::EnrichedBatch;

/// Buckets: bucket `i` counts smoothed RTTs up to 2^(i+1) µs (2 µs to
/// ≈ 4.2 s, then +Inf): 23 buckets, a factor of two apart. A smoothed RTT
/// beyond seconds is a path that is down, not one to resolve (the kernel
/// caps its retransmission timeout at 120 s).
pub const RTT_BUCKETS: usize = 23;

/// The histogram, whose buckets carry the trace most recently seen on a
/// connection they counted.
#[derive(Debug, Clone)]
pub struct RttHistogram(TracedHistogram);

impl Default for RttHistogram {
    fn default() -> Self {
        Self(TracedHistogram::new(
            (1..RTT_BUCKETS).map(|i| (1u64 << i) as f64 / 1e6),
        ))
    }
}

impl RttHistogram {
    pub fn register(registry: &mut Registry) -> Self {
        let h = Self::default();
        OSPREY_TCP_RTT_SECONDS.register(registry, h.0.clone());
        h
    }
}

impl FlowHandler for RttHistogram {
    /// One sample per sending TCP socket of the batch: its egress flow's RTT.
    fn handle(&mut self, batch: &EnrichedBatch, _now: std::time::Instant) {
        for (identity, f) in &batch.flows {
            if f.key.protocol == PROTO_TCP && f.key.direction == DIR_EGRESS && f.stats.srtt_us != 0
            {
                let at = identity
                    .trace
                    .as_ref()
                    .map(|_| std::time::SystemTime::now());
                self.0
                    .observe(f64::from(f.stats.srtt_us) / 1e6, identity.trace.clone(), at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sample_per_sending_tcp_socket_in_power_of_two_buckets() {
        use crate::flows::{
            drain::{FlowBatch, FlowDelta},
            enrich::Enricher,
        };
        use osprey_abi::{DIR_INGRESS, FlowKey, FlowStats, PROTO_UDP};
        let mut registry = Registry::default();
        let mut h = RttHistogram::register(&mut registry);
        let flow = |protocol, direction, srtt_us| FlowDelta {
            key: FlowKey {
                protocol,
                direction,
                ..FlowKey::default()
            },
            stats: FlowStats {
                srtt_us,
                ..FlowStats::default()
            },
            ..FlowDelta::default()
        };
        let flows = vec![
            flow(PROTO_TCP, DIR_EGRESS, 100), // 64..128 µs
            flow(PROTO_TCP, DIR_EGRESS, 100),
            flow(PROTO_TCP, DIR_EGRESS, 100),
            flow(PROTO_TCP, DIR_EGRESS, 1500), // 1024..2048 µs
            flow(PROTO_TCP, DIR_EGRESS, 0),    // no RTT measured: no sample
            flow(PROTO_TCP, DIR_INGRESS, 900), // the same socket's other direction
            flow(PROTO_UDP, DIR_EGRESS, 7),
        ];
        let batch = Enricher::default().batch(FlowBatch {
            flows,
            ..FlowBatch::default()
        });
        h.handle(&batch, std::time::Instant::now());
        let text = crate::test_support::exposition(&registry);
        assert!(
            text.contains("osprey_tcp_rtt_seconds_bucket{le=\"0.000128\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("osprey_tcp_rtt_seconds_bucket{le=\"0.002048\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("osprey_tcp_rtt_seconds_bucket{le=\"+Inf\"} 4"),
            "{text}"
        );
        assert!(text.contains("osprey_tcp_rtt_seconds_count 4"), "{text}");
        assert!(text.contains("osprey_tcp_rtt_seconds_sum 0.0018"), "{text}");
    }
}
