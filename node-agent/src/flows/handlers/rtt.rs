//! `osprey_tcp_rtt_seconds`: the smoothed RTT of every TCP socket that sent
//! in a drain interval, one sample per socket and interval, in log2 buckets.
//! The flow programs read each packet's socket RTT (`tcp_sock.srtt_us`) into
//! its flow; the histogram is built here from the drained flows.

use osprey_model::catalogue::OSPREY_TCP_RTT_SECONDS;
use std::sync::{Arc, Mutex};

use osprey_abi::{DIR_EGRESS, PROTO_TCP};
use prometheus_client::{
    encoding::{EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{MetricType, TypedMetric},
    registry::Registry,
};

use super::FlowHandler;
use crate::flows::enrich::EnrichedBatch;

/// Buckets: bucket `i` counts smoothed RTTs in [2^i, 2^(i+1)) µs (bucket 0
/// also holds 0–1 µs); the last one is open-ended.
pub const RTT_BUCKETS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttSnapshot {
    /// `buckets[i]`: samples in [2^i, 2^(i+1)) µs.
    pub buckets: [u64; RTT_BUCKETS],
    pub sum_us: u64,
    pub count: u64,
}

impl Default for RttSnapshot {
    fn default() -> Self {
        Self {
            buckets: [0; RTT_BUCKETS],
            sum_us: 0,
            count: 0,
        }
    }
}

impl RttSnapshot {
    fn observe(&mut self, srtt_us: u64) {
        let bucket = if srtt_us == 0 {
            0
        } else {
            (63 - srtt_us.leading_zeros() as usize).min(RTT_BUCKETS - 1)
        };
        self.buckets[bucket] += 1;
        self.sum_us += srtt_us;
        self.count += 1;
    }
}

#[derive(Debug, Clone, Default)]
pub struct RttHistogram(Arc<Mutex<RttSnapshot>>);

impl RttHistogram {
    pub fn register(registry: &mut Registry) -> Self {
        let h = Self::default();
        OSPREY_TCP_RTT_SECONDS.register(registry, h.clone());
        h
    }
}

impl FlowHandler for RttHistogram {
    /// One sample per sending TCP socket of the batch: its egress flow's RTT.
    fn handle(&mut self, batch: &EnrichedBatch, _now: std::time::Instant) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (_, f) in &batch.flows {
            if f.key.protocol == PROTO_TCP && f.key.direction == DIR_EGRESS && f.stats.srtt_us != 0
            {
                s.observe(u64::from(f.stats.srtt_us));
            }
        }
    }
}

impl TypedMetric for RttHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for RttHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let s = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Upper bound of bucket i is 2^(i+1) µs; the last one is +Inf.
        let mut buckets: Vec<(f64, u64)> = s
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| ((1u64 << (i + 1)) as f64 / 1e6, *n))
            .collect();
        if let Some(last) = buckets.last_mut() {
            last.0 = f64::INFINITY;
        }
        encoder.encode_histogram::<NoLabelSet>(s.sum_us as f64 / 1e6, s.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
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
